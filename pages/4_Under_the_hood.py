"""Under the hood: a neural net built from scratch in NumPy, its graph, one training step node by node
(checked against PyTorch), background training, and what the trained net learned."""

import streamlit as st

st.set_page_config(page_title="Under the hood · MNIST Lab", page_icon="⚙️", layout="wide")

import dataclasses  # noqa: E402

import numpy as np  # noqa: E402
import plotly.express as px  # noqa: E402

from labui import live  # noqa: E402
from labui.sidebar import sidebar  # noqa: E402
from mnist_core.checkpoints import CheckpointError  # noqa: E402
from mnist_core.reporter import FAILED  # noqa: E402
from mnist_core.scratch import ACTIVATIONS, Net, NetConfig, ScratchError, TrainSettings, load_arrays  # noqa: E402
from mnist_core.scratch.walkthrough import features, graph_dot, pca_2d, templates, top_activating, trace_step  # noqa: E402

K = "scratch."  # session-state prefix


@st.cache_resource(show_spinner="Reading MNIST into NumPy...")
def arrays():
    return load_arrays("float32")


def parse_widths(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise ScratchError(f"widths are whole numbers separated by commas, e.g. 32,16 (got {text!r})") from None


def current_net() -> Net | None:
    """The net of the settings above: built (seeded) when they change, kept (with its training) otherwise."""
    c1, c2, c3 = st.columns(3)
    text = c1.text_input(
        "Hidden layer widths",
        "32,16",
        key=K + "widths",
        help="Comma-separated, e.g. 64,32 for two hidden layers; empty for none (logistic regression).",
    )
    activation = c2.selectbox("Activation", list(ACTIVATIONS), key=K + "activation")
    dropout = c3.slider("Dropout", 0.0, 0.5, 0.0, 0.05, key=K + "dropout")
    try:
        config = NetConfig(widths=parse_widths(text), activation=activation, dropout=dropout)
        if any(not 1 <= w <= 512 for w in config.widths) or len(config.widths) > 4:
            raise ScratchError(
                "on this page a net has at most 4 hidden layers of 1 to 512 units each; "
                "train bigger ones with `python -m mnist_core scratch`"
            )
        config.validate()
    except ScratchError as exc:
        st.error(str(exc))
        return None
    key = (config.widths, config.activation, config.dropout)
    if st.session_state.get(K + "net_key") != key:
        st.session_state[K + "net_key"] = key
        st.session_state[K + "net"] = Net(config)
        st.session_state[K + "trained"] = None
        st.session_state[K + "stage"] = 0
    return st.session_state[K + "net"]


def show_array(a: np.ndarray, key: str, diverging: bool = False) -> None:
    """A 28x28 image where the tensor is one, templates for (784, k), a heatmap or bars otherwise."""
    a = np.asarray(a, dtype=np.float64)
    squeezed = a.reshape(-1) if a.ndim == 2 and a.shape[0] == 1 else a
    scale = dict(color_continuous_scale="RdBu_r", color_continuous_midpoint=0.0) if diverging else {}
    if squeezed.ndim == 0:
        st.metric("value", f"{float(squeezed):.6g}")
    elif squeezed.size == 784:
        st.plotly_chart(px.imshow(squeezed.reshape(28, 28), height=300, **scale), key=key)
    elif squeezed.ndim == 2 and squeezed.shape[0] == 784:
        k = min(8, squeezed.shape[1])
        mosaic = np.concatenate([squeezed[:, j].reshape(28, 28) for j in range(k)], axis=1)
        st.plotly_chart(px.imshow(mosaic, height=220, **scale), key=key)
        st.caption(f"The first {k} of {squeezed.shape[1]} columns, each as a 28x28 image (one per unit).")
    elif squeezed.ndim == 1 and squeezed.size <= 64:
        st.plotly_chart(
            px.bar(x=np.arange(squeezed.size), y=squeezed, height=260, labels={"x": "unit", "y": "value"}), key=key
        )
    elif squeezed.ndim == 2:
        st.plotly_chart(px.imshow(squeezed, height=300, aspect="auto", **scale), key=key)
    else:
        st.plotly_chart(px.histogram(squeezed.reshape(-1), nbins=50, height=260), key=key)


def step_through(net: Net, data) -> None:
    c1, c2 = st.columns(2)
    index = int(c1.number_input("Test digit #", 0, len(data.test_y) - 1, 0, key=K + "digit"))
    lr = c2.select_slider("Learning rate of the step", [0.001, 0.01, 0.1, 1.0], 0.01, key=K + "lr")
    label = int(data.test_y[index])
    trace = trace_step(net, data.test_x[index], label, lr)
    from mnist_core.scratch.torch_bridge import torch_gradients  # PyTorch's autograd, for the side-by-side check

    theirs = torch_gradients(net, data.test_x[index : index + 1], data.test_y[index : index + 1])
    stages = (
        [("forward", n) for n in trace.order] + [("backward", n) for n in trace.backward_order] + [("update", None)]
    )
    stage = min(st.session_state.get(K + "stage", 0), len(stages) - 1)
    b1, b2, b3 = st.columns([1, 1, 4], vertical_alignment="center")
    if b1.button("◀ Back", key=K + "back", disabled=stage == 0):
        stage -= 1
    if b2.button("Next ▶", key=K + "next", disabled=stage == len(stages) - 1):
        stage += 1
    st.session_state[K + "stage"] = stage
    phase, name = stages[stage]
    b3.caption(
        f"Step {stage + 1} of {len(stages)}: {phase}{' of ' + name if name else ''}. "
        f"Digit #{index} is a {label}; loss {trace.loss:.4f}."
    )
    if phase == "forward":
        st.subheader(f"Forward: {name} [{trace.kinds[name]}]")
        st.caption("Each node computes its value from its inputs' values, in topological order.")
        show_array(trace.values[name], key=K + f"fwd.{name}")
    elif phase == "backward":
        st.subheader(f"Backward: d loss / d {name}")
        st.caption(
            "Each node passes the gradient it received, times its own local derivative, to its inputs "
            "(the chain rule), in reverse order."
        )
        left, right = st.columns(2)
        with left:
            st.markdown("**This engine**")
            show_array(trace.grads[name], key=K + f"bwd.{name}", diverging=True)
        with right:
            st.markdown("**PyTorch autograd**")
            if name in theirs:
                show_array(theirs[name], key=K + f"torch.{name}", diverging=True)
            else:
                st.caption("The loss itself: its gradient is 1 by definition.")
        if name in theirs:
            diff = float(np.abs(np.asarray(trace.grads[name], np.float64) - theirs[name]).max())
            st.metric("Largest difference to PyTorch", f"{diff:.2e}")
    else:
        st.subheader("Update: w ← w − lr · gradient")
        st.metric(
            "Loss on this digit",
            f"{trace.loss_after:.4f}",
            delta=f"{trace.loss_after - trace.loss:+.4f}",
            delta_color="inverse",
        )
        first = next(iter(trace.updates))
        show_array(trace.updates[first], key=K + "update", diverging=True)
        st.caption(f"The change to {first}; the page's net is not changed by this step.")


def training_view(snap) -> None:
    """This browser's from-scratch run while it is queued or runs: progress, Stop, the loss so far."""
    if snap is None or not snap.running:
        return
    live.progress_row(snap, K + "stop", snap.view.stage, share=snap.view.fraction)
    curve = snap.view.curve
    if curve:
        st.plotly_chart(
            px.line(
                x=[p["step"] for p in curve],
                y=[p["loss"] for p in curve],
                height=250,
                labels={"x": "step", "y": "training loss"},
            ),
            key=K + "live",
        )


def take_ended(snap) -> None:
    """Once per run: its trained net replaces the page's net when the settings above are still the same."""
    if snap is None or not snap.ended or st.session_state.get(K + "taken") == snap.id:
        return
    st.session_state[K + "taken"] = snap.id
    if snap.status == FAILED:
        st.error(f"Training failed: {snap.message}")
        return
    net_config = snap.spec.config["net"]
    key = (tuple(net_config["widths"]), net_config["activation"], net_config["dropout"])
    if snap.result and snap.result.get("net") is not None and key == st.session_state.get(K + "net_key"):
        st.session_state[K + "net"] = snap.result["net"]
        st.session_state[K + "trained"] = {
            "net": snap.result["net"],
            "result": snap.result["result"],
            "settings": TrainSettings(**snap.spec.config["train"]),
            "key": key,
            "curve": snap.view.curve,
        }


def train_section(net: Net, data) -> None:
    snap = live.latest("scratch")
    take_ended(snap)
    if snap is not None and snap.running:
        live.watch("scratch", training_view)  # polls while it runs; its end reruns the page, which takes the net
        return
    c1, c2, c3, c4 = st.columns(4)
    optimizer = c1.selectbox("Optimizer", ["adam", "sgd"], key=K + "opt")
    lr = c2.select_slider("Learning rate", [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1], 1e-3, key=K + "train_lr")
    epochs = int(c3.number_input("Epochs", 1, 5, 1, key=K + "epochs"))
    batch = int(c4.select_slider("Batch size", [32, 64, 128, 256], 128, key=K + "batch"))
    if st.button("Train in the background", type="primary", key=K + "train"):
        settings = TrainSettings(optimizer=optimizer, lr=lr, momentum=0.9, epochs=epochs, batch_size=batch)
        config = net.config  # the same seeded start as the page's net
        live.submit(
            "scratch",
            {
                "net": {**dataclasses.asdict(config), "widths": list(config.widths)},
                "train": dataclasses.asdict(settings),
            },
            name=f"Training {'-'.join(map(str, (784, *config.widths, 10)))} from scratch",
        )
    trained = st.session_state.get(K + "trained")
    if trained:
        result = trained["result"]
        st.success(
            f"Trained ({result.status}): {result.steps} steps in {result.seconds:.0f} s, "
            f"test accuracy {result.test_accuracy:.2%}."
            if result.test_accuracy is not None
            else f"Stopped before the first epoch's end: {result.steps} steps."
        )
        curve = trained["curve"]
        if curve:
            st.plotly_chart(
                px.line(
                    x=[p["step"] for p in curve],
                    y=[p["loss"] for p in curve],
                    height=250,
                    labels={"x": "step", "y": "training loss"},
                ),
                key=K + "curve",
            )


def views(net: Net, data) -> None:
    every = templates(net)
    t = every[:16]
    shown = f"all {len(every)} units" if len(t) == len(every) else f"the first {len(t)} of its {len(every)} units"
    st.markdown(f"**First layer: each unit's weights as a 28x28 template**, {shown} (red: ink there excites the unit)")
    mosaic = np.concatenate(list(t), axis=1) if len(t) else np.zeros((28, 28))
    st.plotly_chart(
        px.imshow(mosaic, color_continuous_scale="RdBu_r", color_continuous_midpoint=0.0, height=200),
        key=K + "templates",
    )
    n = 2000
    f = features(net, data.test_x[:n])
    xy = pca_2d(f)
    st.markdown(f"**Deep features: the last hidden layer of {n:,} test digits, PCA to 2-D, coloured by class**")
    st.plotly_chart(
        px.scatter(
            x=xy[:, 0],
            y=xy[:, 1],
            color=data.test_y[:n].astype(str),
            height=450,
            labels={"x": "PC 1", "y": "PC 2", "color": "digit"},
        ),
        key=K + "pca",
    )
    st.markdown("**The digits that excite each unit most** (first 4 units of the last hidden layer)")
    for unit in range(min(4, f.shape[1])):
        idx = top_activating(f, unit, 8)
        st.image(np.concatenate(list(data.test_images[idx]), axis=1), caption=f"unit {unit}", width=400)


def export_section(net: Net) -> None:
    trained = st.session_state.get(K + "trained")
    if not trained:
        st.caption("Train the net first; then it can be saved as a checkpoint for Draw, Inspect and Embeddings.")
        return
    name = st.text_input("Checkpoint name", "scratch-net", key=K + "name")
    if st.button("Save as checkpoint", key=K + "export"):
        from mnist_core.scratch.torch_bridge import export_checkpoint

        try:
            saved = export_checkpoint(net, trained["result"], trained["settings"], name, overwrite=False)
        except (CheckpointError, OSError) as exc:
            st.error(f"Not saved: {exc}")
        else:
            st.success(f"Saved checkpoint {saved!r}: pick it as the active checkpoint in the sidebar.")


sidebar()
st.title("Under the hood")
st.caption(
    "A neural net written from scratch in NumPy: a graph of nodes, a forward pass, and backpropagation by "
    "the chain rule, each operation with its own local gradient, checked against PyTorch on a real digit."
)
net = current_net()
if net is None:
    st.stop()
data = arrays()
st.caption(f"{'-'.join(map(str, (784, *net.config.widths, 10)))} net, {net.n_params:,} parameters.")
st.header("1. The graph")
st.graphviz_chart(graph_dot(net))
st.header("2. One training step, node by node")
step_through(net, data)
st.header("3. Train it")
train_section(st.session_state[K + "net"], data)
st.header("4. What it learned")
views(st.session_state[K + "net"], data)
st.header("5. Save it")
export_section(st.session_state[K + "net"])
