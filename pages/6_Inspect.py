"""Inspect: look inside the active checkpoint: its training history, weights, one image's path, its errors, on
the active data set (whose classes it must have been trained on)."""

import dataclasses

import numpy as np
import plotly.graph_objects as go
import streamlit as st

st.set_page_config(page_title="Inspect · MNIST Lab", page_icon="🔢", layout="wide")

from labui import catalog, resources, shared_results, visitor  # noqa: E402
from labui import inspect_charts as charts  # noqa: E402
from labui.data_choice import active_dataset, items, output_names  # noqa: E402
from labui.images import heat_overlay, map_grid, upscale  # noqa: E402
from labui.sidebar import sidebar  # noqa: E402
from mnist_core import evaluation  # noqa: E402
from mnist_core.checkpoints import CheckpointError, load_probes  # noqa: E402
from mnist_core.data import tile  # noqa: E402
from mnist_core.models import effective_weight, layer_labels  # noqa: E402
from mnist_core.saliency import dense_activations, explain, feature_maps  # noqa: E402

FLOW_NOTE = (
    "**Reading gradient flow.** Healthy: every layer's gradients within an order of magnitude or two "
    "of each other, and updates around 1/1000 of the weights per step. *Vanishing*: the layers near the "
    "input get gradients many orders smaller than those near the output (deep sigmoid/tanh nets), so "
    "they barely learn. *Exploding*: gradients grow step after step, the loss turns to NaN. Dead ReLUs "
    "(units that output 0 for every digit) stop learning for good."
)


WITH_HISTORY = "fast"  # the shipped checkpoint that comes with its recorded training history


def test_outputs(info, dataset) -> np.ndarray:
    bar = st.empty()
    probs = shared_results.test_predictions(
        info,
        progress=lambda share: bar.progress(
            share,
            text=f"Scoring the {dataset.test_size:,} {dataset.title} test images with {info.name}: {share:.0%} "
            "(once per checkpoint version, kept for every visitor)",
        ),
        dataset=dataset.key,
    )
    bar.empty()
    return probs


def recorded_history(info, model):
    """The checkpoint's training history with its layers named in words, or None."""
    record = load_probes(info)
    if record is None or not len(record):
        return None
    labels = layer_labels(model)
    return dataclasses.replace(
        record,
        layers=[labels.get(n.rsplit(".", 1)[0], n).replace(" (layer", " weights (layer", 1) for n in record.layers],
        activations=[labels.get(n, n) for n in record.activations],
    )


def history_tab(info, record) -> None:
    if record is None:
        st.info(
            f"**{info.name}** has no recorded training history (most shipped checkpoints, and runs trained "
            "with recording off, have none; the shipped `fast` has one). Everything on the other tabs works "
            "without it. To record one, train a run on the Train page (recording is on by default), or "
            "`python -m mnist_core train --preset fast --name fast-recorded`, then make it the active checkpoint."
        )
        if info.name != WITH_HISTORY and any(i.name == WITH_HISTORY for i in catalog.usable_checkpoints()):
            st.button(
                f"Make `{WITH_HISTORY}` the active checkpoint: see its recorded history",
                key="inspect.to_fast",
                on_click=visitor.as_visitor(catalog.set_active),
                args=(WITH_HISTORY,),
            )
        return
    st.caption(
        f"{len(record)} snapshot{'' if len(record) == 1 else 's'}, one every {record.every} steps; histogram axes "
        "stay fixed for the whole run, so a distribution that shrinks is seen shrinking."
    )
    c1, c2 = st.columns([1, 2])
    kind = c1.radio("Show", ["weights", "gradients"], horizontal=True, key="inspect.kind")
    layer = c2.selectbox(
        "Layer", range(len(record.layers)), format_func=lambda i: record.layers[i], key="inspect.layer"
    )
    st.plotly_chart(charts.histogram_animation(record, layer, kind), key="inspect.hist")
    st.plotly_chart(charts.histogram_heatmaps(record, kind), key="inspect.heatmaps")
    st.subheader("Gradient flow")
    st.markdown(FLOW_NOTE)
    t = st.select_slider(
        "Step",
        options=range(len(record)),
        value=len(record) - 1,
        format_func=lambda i: str(record.steps[i]),
        key="inspect.flow_step",
    )
    st.plotly_chart(charts.flow_bars(record, t), key="inspect.flow_bars")
    left, right = st.columns(2)
    left.plotly_chart(
        charts.flow_lines(record, record.grad_mean, record.layers, "Mean |gradient| per layer"), key="inspect.flow_mean"
    )
    right.plotly_chart(
        charts.flow_lines(record, record.update_ratio, record.layers, "Update / weight ratio per step", reference=1e-3),
        key="inspect.flow_ratio",
    )
    if record.activations:
        st.plotly_chart(
            charts.flow_lines(
                record,
                record.dead,
                record.activations,
                "Dead units: share that output 0 for the whole batch",
                log=False,
            ),
            key="inspect.dead",
        )


def weights_tab(model) -> None:
    params = [(n, p) for n, p in model.named_parameters() if p.dim() >= 2 and n.endswith("weight")]
    labels = layer_labels(model)
    named = lambda n: labels.get(n.rsplit(".", 1)[0], n)  # noqa: E731
    first_name, first = params[0]
    w = effective_weight(model, first_name).cpu().numpy()
    if w.ndim == 4:
        st.image(
            upscale(map_grid(w[:, 0] if w.shape[1] == 1 else w.mean(1), columns=16), 8),
            caption=f"First conv layer, {named(first_name)}: {w.shape[0]} kernels of {w.shape[2]}x{w.shape[3]} "
            "(bright = positive weight, each scaled to its own range)",
        )
    elif w.shape[1] == 784:  # a first layer that reads the pixels: its rows are 28x28 templates
        shown = w[:64].reshape(-1, 28, 28)
        st.image(
            upscale(map_grid(shown, columns=16), 3),
            caption=f"First layer, {named(first_name)}: the first {len(shown)} of {w.shape[0]} units' weights as 28x28 "
            "templates: each unit fires for digits that put ink on its bright pixels",
        )
    else:  # e.g. a built stack that pools before its first linear layer: no 28x28 picture to draw
        st.caption(
            f"First layer, {named(first_name)}: {w.shape[0]} units reading {w.shape[1]} inputs, "
            "not the 784 pixels, so its weights are not drawn as 28x28 templates."
        )
    last_name, _ = params[-1]
    last = effective_weight(model, last_name).cpu().numpy()
    if last.shape[1] == 784:
        st.image(
            upscale(map_grid(last.reshape(-1, 28, 28), columns=10), 4),
            caption=f"Last layer: one 28x28 template per class, {NAMES[0]} to {NAMES[-1]}",
        )
    else:
        limit = float(np.abs(last).max())
        fig = go.Figure(
            go.Heatmap(
                z=last,
                colorscale="RdBu",
                zmin=-limit,
                zmax=limit,
                y=NAMES[: len(last)],
                hovertemplate="class %{y}, feature %{x}: %{z:.3f}<extra></extra>",
            )
        )
        fig.update_layout(
            height=320,
            title=f"Last layer, {named(last_name)}: weight from each feature to each class",
            xaxis={"title": "feature"},
            yaxis={"title": "class", "type": "category"},
            margin={"t": 40, "b": 10},
        )
        st.plotly_chart(fig, key="inspect.last_layer")


def pick_digit(probs: np.ndarray, labels: np.ndarray) -> int:
    how = st.radio(
        f"Pick a test {items(DATASET)[:-1]}", ["by index", "by class", "a mistake"], horizontal=True, key="inspect.how"
    )
    if how == "by index":
        return int(st.number_input("Test index", 0, len(labels) - 1, 0, key="inspect.index"))
    if how == "by class":
        c1, c2 = st.columns(2)
        label = c1.selectbox(
            "Class", range(len(DATASET.class_names)), format_func=NAMES.__getitem__, key="inspect.class"
        )
        members = np.flatnonzero(labels == label)
        nth = c2.number_input(f"Which one (of {len(members)})", 0, len(members) - 1, 0, key="inspect.nth")
        return int(members[nth])
    mistakes = evaluation.confident_mistakes(probs, labels, count=len(labels))
    if not len(mistakes):
        st.info(f"This checkpoint gets every test {items(DATASET)[:-1]} right.")
        return 0
    return int(
        st.selectbox(
            f"Mistake ({len(mistakes)}, most confident first)",
            mistakes,
            key="inspect.mistake",
            format_func=lambda i: (
                f"#{i}: a {NAMES[labels[i]]} read as {NAMES[probs[i].argmax()]} ({probs[i].max():.0%})"
            ),
        )
    )


@st.cache_resource(max_entries=64, show_spinner=False)
def digit_views(version: str, dataset: str, index: int, predicted: int, _model) -> tuple:
    """(method, heat, feature maps, dense activations) of one test image under one weights version: once per
    server, since every visitor opens the same first image; results are only read, so one copy is shared."""
    x = resources.device_data(dataset).test.images[index : index + 1]
    return (*explain(_model, x, predicted), feature_maps(_model, x), dense_activations(_model, x))


def digit_tab(info, model, probs: np.ndarray, labels: np.ndarray) -> None:
    index = pick_digit(probs, labels)
    data = resources.device_data(DATASET.key)
    pixels = data.mnist.test_images[index].numpy() / 255.0
    predicted = int(probs[index].argmax())
    method, heat, maps, dense = digit_views(catalog.weights_digest(info), DATASET.key, index, predicted, model)
    left, mid, right = st.columns([1, 1, 2])
    left.image(upscale((pixels * 255).astype(np.uint8), 7), caption=f"test #{index}, label {NAMES[labels[index]]}")
    mid.image(heat_overlay(pixels, heat, factor=7), caption=f"Why {NAMES[predicted]}: {method}")
    fig = go.Figure(
        go.Bar(
            x=NAMES,
            y=probs[index],
            marker_color=["#e45756" if d == predicted else "#4c78a8" for d in range(len(NAMES))],
        )
    )
    fig.update_layout(
        height=250,
        title="Output probabilities",
        xaxis={"type": "category"},
        yaxis={"range": [0, 1]},
        margin={"t": 40, "b": 10},
    )
    right.plotly_chart(fig, key="inspect.digit_probs")
    for fm in maps:
        scale = max(1, 84 // fm.maps.shape[1])
        st.image(
            upscale(map_grid(fm.maps, columns=16), scale),
            caption=f"Feature maps, {fm.name}: {fm.maps.shape[0]} channels of {fm.maps.shape[1]}x{fm.maps.shape[2]}",
        )
    if dense:
        cols = st.columns(min(3, len(dense)))
        for i, (name, values) in enumerate(dense):
            fig = go.Figure(go.Bar(y=values, marker_color="#72b7b2"))
            fig.update_layout(
                height=220, title=f"{name}: {len(values)} units", margin={"t": 40, "b": 10}, xaxis={"title": "unit"}
            )
            cols[i % len(cols)].plotly_chart(fig, key=f"inspect.dense.{i}")


def evaluation_tab(info, probs: np.ndarray, labels: np.ndarray) -> None:
    predicted = probs.argmax(1)
    confusion = evaluation.confusion_matrix(labels, predicted)
    images = resources.device_data(DATASET.key).mnist.test_images
    left, right = st.columns([1, 1])
    with left:
        event = st.plotly_chart(
            charts.confusion_figure(confusion, NAMES),
            key="inspect.confusion",
            on_select="rerun",
            selection_mode="points",
        )
    with right:
        points = (event or {}).get("selection", {}).get("points", []) if event else []
        true, read = (int(points[0]["y"]), int(points[0]["x"])) if points else (None, None)
        if true is None:
            st.caption(f"Click a cell of the matrix to see its {items(DATASET)}.")
        else:
            chosen = np.flatnonzero((labels == true) & (predicted == read))
            st.write(
                f"**{len(chosen)}** test {items(DATASET)} of class {NAMES[true]} read as {NAMES[read]}"
                + (" (showing 100)" if len(chosen) > 100 else "")
            )
            if len(chosen):
                st.image(tile(images[chosen[:100]].numpy(), columns=10), width=360)
        accuracy = evaluation.per_class_accuracy(confusion)[: len(DATASET.class_names)]  # its classes only
        st.plotly_chart(
            charts.per_class_figure(accuracy, (predicted == labels).mean(), NAMES[: len(accuracy)]),
            key="inspect.per_class",
        )
    worst = evaluation.confident_mistakes(probs, labels, count=30)
    st.subheader("Most confident mistakes")
    st.image(
        tile(images[worst].numpy(), columns=15),
        width=720,
        caption="  ·  ".join(
            f"#{i}: {NAMES[labels[i]]}→{NAMES[predicted[i]]} ({probs[i].max():.0%})" for i in worst[:15]
        ),
    )
    cal = evaluation.calibration(probs, labels)
    st.plotly_chart(charts.reliability_figure(cal), key="inspect.reliability")
    st.caption(charts.reliability_caption(cal, info.name))


sidebar()
st.title("Inspect")
DATASET = active_dataset()
NAMES = output_names(DATASET)  # a name for each of the ten outputs
info = catalog.active_checkpoint()
if info is None:
    st.warning(
        catalog.none_for(DATASET) if catalog.checkpoints() else "No checkpoint yet: train one on the Train page."
    )
    st.stop()
if (refused := catalog.refusal(info)) is not None:  # never scored on a data set of other classes
    st.error(refused)
    st.stop()
try:
    model, meta = catalog.load_checkpoint(info)
except CheckpointError as exc:
    st.error(f"Checkpoint {info.name} cannot be loaded: {exc}")
    st.stop()
acc = meta.get("test_accuracy")
st.caption(
    f"Active checkpoint **{info.name}**: {meta['arch']}, {meta.get('params', 0):,} parameters, test accuracy {acc:.2%}"
    if acc is not None
    else f"Active checkpoint **{info.name}**"
)
resources.active_data()  # its files read, or what is wrong with them
probs = test_outputs(info, DATASET)
labels = resources.device_data(DATASET.key).mnist.test_labels.numpy()
record = recorded_history(info, model)
# Open where there is something to see: the history when there is one, else the test-set evaluation.
history, weights, digit, errors = st.tabs(
    ["Training history", "Weights", "One digit", "Evaluation"],
    default="Training history" if record is not None else "Evaluation",
)
with history:
    history_tab(info, record)
with weights:
    weights_tab(model)
with digit:
    digit_tab(info, model, probs, labels)
with errors:
    evaluation_tab(info, probs, labels)
