"""Build: your own architecture, layer by layer, with shapes checked live; train it; take any run home."""

import dataclasses

import streamlit as st

st.set_page_config(page_title="Build · MNIST Lab", page_icon="🧱", layout="wide")

from labui import catalog, live, resources, visitor  # noqa: E402
from labui.sidebar import sidebar  # noqa: E402
from mnist_core import stack  # noqa: E402
from mnist_core.checkpoints import CheckpointError, validate_name  # noqa: E402
from mnist_core.export import ExportError, check_onnx, onnx_bytes, run_file_makers, script_text  # noqa: E402
from mnist_core.models import REGISTRY, ModelError  # noqa: E402
from mnist_core.presets import PRESETS, preset  # noqa: E402
from mnist_core.reporter import QUEUED  # noqa: E402
from mnist_core.train import ConfigError  # noqa: E402

STACK = "build.stack"  # [(uid, layer text)]: the stack, kept outside widget state so it survives page changes
NEXT_UID = "build.next_uid"
EMPTY = "(empty)"
STARTER = "the starter stack (what this page opens with)"
POOL_KINDS = ("maxpool", "avgpool")


def widget_key(uid: int) -> str:
    return f"build.layer.{uid}"


def new_uid() -> int:
    uid = st.session_state.get(NEXT_UID, 0)
    st.session_state[NEXT_UID] = uid + 1
    return uid


def set_stack(texts) -> None:
    for uid, _ in st.session_state.get(STACK, []):
        st.session_state.pop(widget_key(uid), None)
    st.session_state[STACK] = [(new_uid(), text) for text in texts]


def current() -> list[tuple[int, str]]:
    """The stack, with any edit typed into a layer's box since the last run."""
    if STACK not in st.session_state:
        set_stack(stack.DEFAULT_LAYERS)
    layers = [(uid, st.session_state.get(widget_key(uid), text)) for uid, text in st.session_state[STACK]]
    st.session_state[STACK] = layers
    return layers


def start_options() -> dict[str, str]:
    """Label -> what to start from: an architecture, or the active checkpoint's own settings."""
    options = {STARTER: STARTER, EMPTY: EMPTY}
    active = catalog.active_checkpoint()
    if active is not None:
        options[f"the active checkpoint ({active.name})"] = "active"
    options.update({f"{name}: {REGISTRY[name].summary}": name for name in REGISTRY if name != "stack"})
    return options


def load_start() -> None:
    choice = start_options().get(st.session_state.get("build.start"), EMPTY)
    st.session_state.pop("build.load_error", None)
    try:
        if choice == EMPTY:
            set_stack([])
        elif choice == STARTER:
            set_stack(stack.DEFAULT_LAYERS)
        elif choice == "active":
            meta = catalog.active_checkpoint().meta
            set_stack(stack.stack_of_arch(meta["arch"], meta.get("model_config") or {}))
        else:
            set_stack(stack.stack_of_arch(choice))
    except ModelError as exc:
        st.session_state["build.load_error"] = str(exc)


def move(uid: int, step: int) -> None:
    layers = current()
    i = next(i for i, (u, _) in enumerate(layers) if u == uid)
    j = i + step
    if 0 <= j < len(layers):
        layers[i], layers[j] = layers[j], layers[i]


def remove(uid: int) -> None:
    st.session_state[STACK] = [(u, t) for u, t in current() if u != uid]
    st.session_state.pop(widget_key(uid), None)


def new_layer_text() -> str:
    s = st.session_state
    kind = s["build.add.kind"]
    if kind == "conv":
        return (
            f"conv {s['build.add.channels']} k={s['build.add.kernel']} s={s['build.add.stride']} "
            f"p={s['build.add.padding']}"
        )
    if kind in POOL_KINDS:
        return f"{kind} {s['build.add.window']} s={s['build.add.pool_stride']}"
    if kind == "dropout":
        return f"dropout {s['build.add.p']:g}"
    if kind == "linear":
        return f"linear {s['build.add.width']}"
    return kind


def add_layer() -> None:
    layers = current()
    where = st.session_state.get("build.add.where", "at the end")
    index = len(layers) if where == "at the end" else int(where.split()[-1]) - 1
    layers.insert(index, (new_uid(), new_layer_text()))


def apply_text() -> None:
    text = st.session_state.get("build.text", "")
    try:
        set_stack([layer.text for layer in stack.parse(text)])
        st.session_state.pop("build.text_error", None)
    except ModelError as exc:
        st.session_state["build.text_error"] = str(exc)


# ---------------------------------------------------------------- the builder


def start_from() -> None:
    options = start_options()
    if st.session_state.get("build.start") not in options:
        st.session_state["build.start"] = STARTER  # the stack the page opens with, so the box names what is shown
    c1, c2 = st.columns([4, 1], vertical_alignment="bottom")
    c1.selectbox(
        "Start from",
        list(options),
        key="build.start",
        help="Load replaces the stack with these layers: the starter stack, nothing, a shipped architecture's "
        "(with its default settings) or the active checkpoint's. Parallel columns and sparse layers have no "
        "layer-stack form.",
    )
    c2.button("Load", on_click=visitor.as_visitor(load_start), key="build.load", width="stretch")
    if st.session_state.get("build.load_error"):
        st.error(st.session_state["build.load_error"])


def layer_list(result: stack.StackCheck) -> list[str]:
    """One editable row per layer, with its output shape; returns the texts as edited."""
    layers = current()
    rows = {row.index: row for row in result.rows}
    texts = []
    if not layers:
        st.info("The stack is empty: add layers below, or start from an architecture above.")
    for i, (uid, text) in enumerate(layers, 1):
        key = widget_key(uid)
        if key not in st.session_state:
            st.session_state[key] = text
        c0, c1, c2, c3, c4, c5 = st.columns([0.5, 4, 3, 0.5, 0.5, 0.5], vertical_alignment="center")
        c0.markdown(f"**{i}**")
        value = c1.text_input(
            f"Layer {i}",
            key=key,
            label_visibility="collapsed",
            help="Edit the layer directly, e.g. 'conv 32 3 p=1', 'maxpool 2', 'linear 10'.",
        )
        texts.append(value)
        if i in rows:
            row = rows[i]
            c2.caption(
                f"→ {' x '.join(map(str, row.output_shape))} · {row.params:,} params"
                + (f" · RF {row.receptive_field}" if row.receptive_field else "")
            )
        elif result.error_index == i:
            c2.markdown(":red[**✗ this layer**]")
        c3.button("↑", key=f"build.up.{uid}", on_click=move, args=(uid, -1), disabled=i == 1, help="Move up")
        c4.button(
            "↓", key=f"build.down.{uid}", on_click=move, args=(uid, 1), disabled=i == len(layers), help="Move down"
        )
        c5.button("✕", key=f"build.remove.{uid}", on_click=remove, args=(uid,), help="Remove this layer")
    return texts


def add_form(n_layers: int) -> None:
    st.markdown("**Add a layer**")
    c1, c2, c3, c4, c5, c6 = st.columns([3, 1, 1, 1, 1, 2], vertical_alignment="bottom")
    kind = c1.selectbox(
        "Layer type", list(stack.SETTINGS), key="build.add.kind", format_func=lambda k: f"{k}: {stack.LAYER_HELP[k]}"
    )
    if kind == "conv":
        c2.number_input("Channels", 1, stack.MAX_CHANNELS, 16, key="build.add.channels")
        c3.number_input("Kernel", 1, 28, 3, key="build.add.kernel")
        c4.number_input("Stride", 1, 28, 1, key="build.add.stride")
        c5.number_input("Padding", 0, 14, 1, key="build.add.padding")
    elif kind in POOL_KINDS:
        c2.number_input("Window", 1, 28, 2, key="build.add.window")
        c3.number_input("Stride", 1, 28, 2, key="build.add.pool_stride")
    elif kind == "dropout":
        c2.number_input("p", 0.0, 0.95, 0.25, step=0.05, key="build.add.p")
    elif kind == "linear":
        c2.number_input("Width", 1, stack.MAX_WIDTH, 10, key="build.add.width")
    places = ["at the end", *(f"before layer {i}" for i in range(1, n_layers + 1))]
    if st.session_state.get("build.add.where") not in places:
        st.session_state["build.add.where"] = "at the end"
    c6.selectbox("Where", places, key="build.add.where")
    st.button("Add layer", on_click=add_layer, key="build.add")


def card(result: stack.StackCheck) -> None:
    cols = st.columns(4)
    cols[0].metric("Parameters", f"{result.params:,}")
    cols[1].metric("Multiply-adds per image", f"{result.macs:,}")
    rf = result.receptive_field
    cols[2].metric("Receptive field", f"{rf} px" if rf else "whole image" if result.rows else "-")
    out = result.rows[-1].output_shape if result.rows else None
    cols[3].metric("Output", " x ".join(map(str, out)) if out else "-")
    if result.ok:
        st.success("The stack works: it maps a 1 x 28 x 28 digit to 10 class scores.")
    else:
        st.error(result.error)
    if result.rows:
        with st.expander("Layer table"):
            st.dataframe(
                [
                    {
                        "layer": r.index,
                        "what": r.text,
                        "output shape": " x ".join(map(str, r.output_shape)),
                        "params": r.params,
                        "multiply-adds": r.macs,
                        "receptive field": r.receptive_field,
                    }
                    for r in result.rows
                ],
                hide_index=True,
                width="stretch",
            )


def train_section(texts: list[str], ok: bool, text_pending: bool = False) -> None:
    st.subheader("Train it")
    c1, c2, c3, c4 = st.columns([3, 1, 1, 2])
    recipe = c1.selectbox(
        "Recipe",
        list(PRESETS),
        key="build.recipe",
        format_func=lambda n: (
            f"{n}: {PRESETS[n][1].optimizer}, {PRESETS[n][1].schedule}, {PRESETS[n][1].epochs} epoch(s)"
        ),
        help="A named recipe's optimizer, learning rate, schedule, augmentation and label "
        "smoothing. For every setting, open the stack on the Train page.",
    )
    base = preset(recipe)
    # Unbounded number inputs: Streamlit's bounds keep the previous value silently; the config's check names it.
    epochs = c2.number_input("Epochs", value=base.epochs, step=1, key=f"build.epochs.{recipe}")
    max_batches = c3.number_input("Stop after N batches (0 = all)", value=0, step=1, key="build.max_batches")
    name = c4.text_input("Run name (optional)", key="build.name", placeholder="stack-<date>-<time>").strip()
    config = dataclasses.replace(
        base, arch="stack", model={"layers": list(texts)}, epochs=int(epochs), max_batches=int(max_batches) or None
    )
    problems = []
    try:
        if ok:  # a broken stack is already named above
            config.validate()
        if name:
            validate_name(name)
    except (ConfigError, ModelError, CheckpointError) as exc:
        problems.append(str(exc))
    for problem in problems:
        st.error(problem)
    b1, b2 = st.columns(2)
    if b1.button(
        "Start training",
        type="primary",
        disabled=not ok or bool(problems) or text_pending,
        key="build.start_training",
        help="Fix the stack first: the message above says which layer is wrong."
        if not ok
        else "Fix or apply the text under 'Edit the whole stack as text' first: it was not applied."
        if text_pending
        else None,
    ):
        live.submit("train", config.to_dict(), name or None, tag="build")
    job = live.just_submitted("build")
    if job is not None:
        where = "Queued" if job.status == QUEUED else "Training"
        st.success(
            f"{where} **{job.name}** in the background: its live curves are on the Train page, "
            "its progress and Stop in the sidebar."
        )
        st.page_link("pages/3_Train.py", label="Watch it on the Train page", icon="📈")
    if b2.button("Open on the Train page (every setting)", disabled=not ok, key="build.to_train"):
        st.session_state["train.arch"] = "stack"
        st.session_state["model.stack.layers"] = ", ".join(texts)
        st.switch_page("pages/3_Train.py")


# ---------------------------------------------------------------- export


@st.cache_data(max_entries=32, show_spinner=False)
def _script(name: str, modified: float) -> tuple[str | None, str | None, bool]:
    """(script, why there is none, whether that is a fault): a fine-tuned run simply has no from-scratch script."""
    from mnist_core.checkpoints import find

    try:
        return script_text(find(name)), None, False
    except ExportError as exc:
        return None, str(exc), False
    except (CheckpointError, ModelError) as exc:
        return None, str(exc), True


@st.cache_data(max_entries=8, show_spinner="Exporting to ONNX and checking it in onnxruntime on the test set...")
def _onnx(name: str, modified: float) -> tuple[bytes | None, str]:
    from mnist_core.checkpoints import load

    data = None
    try:
        model, _ = load(name)
        data = onnx_bytes(model)
        check = check_onnx(data, model, resources.device_data().test.images)
    except (ExportError, CheckpointError) as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own errors: the export is still offered, unchecked
        return data, f"the ONNX file could not be checked in onnxruntime ({type(exc).__name__}: {exc})"
    return data, (
        f"onnxruntime and PyTorch agree on {check['agree']:,} of {check['total']:,} test digits "
        f"(largest logit difference {check['max_abs_diff']:.1e})."
    )


def export_section() -> None:
    st.subheader("Take a run home")
    st.caption(
        "Any checkpoint (shipped, trained or built) as a standalone PyTorch training script (torch and numpy "
        "only: the architecture, the IDX loading, the exact recipe and seed, a test loop), as ONNX, or as its "
        "files. Every chart's toolbar has a camera button that downloads it as a PNG. The same from the "
        "command line: `python -m mnist_core export NAME --format script|onnx|safetensors --out PATH`."
    )
    infos = catalog.checkpoints()
    if not infos:
        st.info("No checkpoints yet.")
        return
    names = [i.name for i in infos]
    active = catalog.active_checkpoint(infos)
    if st.session_state.get("build.export.pick") not in names:
        st.session_state["build.export.pick"] = active.name if active else names[0]
    name = st.selectbox("Checkpoint", names, key="build.export.pick")
    info = next(i for i in infos if i.name == name)
    modified = info.weights_path.stat().st_mtime
    c1, c2, c3 = st.columns(3)
    with c1:
        st.markdown("**Training script**")
        text, error, fault = _script(name, modified)
        if error:
            (st.error if fault else st.info)(error)
        else:
            st.download_button(
                "Download the script (.py)",
                text,
                file_name=f"{name}.py",
                mime="text/x-python",
                key="build.dl.script",
                on_click="ignore",
            )
    with c2:
        st.markdown("**ONNX**")
        if st.session_state.get("build.onnx_for") == (name, modified):
            data, message = _onnx(name, modified)
            if data is None:
                st.error(message)
            else:
                st.caption(message)
                st.download_button(
                    "Download the model (.onnx)",
                    data,
                    file_name=f"{name}.onnx",
                    mime="application/octet-stream",
                    key="build.dl.onnx",
                    on_click="ignore",
                )
        elif st.button("Export to ONNX", key="build.onnx"):
            st.session_state["build.onnx_for"] = (name, modified)
            st.rerun()
    with c3:
        st.markdown("**Files**")
        for i, (file_name, make) in enumerate(run_file_makers(info).items()):  # made when clicked
            st.download_button(file_name, make, file_name=file_name, key=f"build.dl.file{i}", on_click="ignore")


sidebar()
st.title("Build")
st.write(
    "Stack layers into your own network. Each layer's output shape, parameters and receptive field are "
    "checked as you go; a stack that cannot work says which layer is wrong and why."
)
start_from()
result = stack.check([text for _, text in current()])
texts = layer_list(result)
add_form(len(texts))
with st.expander("Edit the whole stack as text"):
    if "build.text" not in st.session_state or st.session_state.get("build.text_synced") != texts:
        st.session_state["build.text"] = ", ".join(texts)
        st.session_state["build.text_synced"] = texts
        st.session_state.pop("build.text_error", None)  # the stack changed another way: the text is its own again
    st.text_area(
        "Layers, separated by commas",
        key="build.text",
        help="e.g. conv 16 3 p=1, relu, bn, maxpool 2, flatten, linear 10. Layers: "
        + ", ".join(f"{k} ({v})" for k, v in stack.LAYER_HELP.items() if v != "activation")
        + "; activations: "
        + ", ".join(k for k, v in stack.LAYER_HELP.items() if v == "activation"),
    )
    st.button("Apply", on_click=apply_text, key="build.apply")
    if text_error := st.session_state.get("build.text_error"):
        st.error(f"{text_error} Not applied: the stack below is still the one before this text.")
st.subheader("Model card")
card(result)
train_section(texts, result.ok, text_pending=bool(text_error))
export_section()
