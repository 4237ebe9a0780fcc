"""Embeddings: PCA, t-SNE and UMAP maps of the active data set's images (MNIST's digits by default), from raw pixels
or the learned features of a network trained on its classes; every class by its name."""

import dataclasses

import numpy as np
import plotly.graph_objects as go
import streamlit as st

st.set_page_config(page_title="Embeddings · MNIST Lab", page_icon="🔢", layout="wide")

from labui import catalog, live, resources, shared_results  # noqa: E402
from labui.data_choice import active_dataset, items  # noqa: E402
from labui.images import upscale  # noqa: E402
from labui.sidebar import sidebar  # noqa: E402
from labui.widgets import field_widgets  # noqa: E402
from mnist_core import embed  # noqa: E402
from mnist_core.data import tile  # noqa: E402
from mnist_core.host import settings as host_settings  # noqa: E402
from mnist_core.reporter import DONE, FAILED  # noqa: E402

METHOD_NAMES = {"pca": "PCA", "tsne": "t-SNE (openTSNE)", "umap": "UMAP"}
COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
PIXELS = "raw pixels"
PREFIX = "emb"


def settings() -> embed.EmbedSpec:
    """The map's settings, widgets generated from EmbedSpec's fields; only the settings the method uses are shown."""
    sources = ["pixels", *[i.name for i in catalog.usable_checkpoints()]]  # networks trained on its classes
    shown = {"method": METHOD_NAMES.get, "source": lambda s: PIXELS if s == "pixels" else s}
    caps = {}
    total = DATASET.train_size + DATASET.test_size
    if total < embed.MAX_POINTS:  # a set of one's own may be smaller than MNIST's 70,000
        caps["points"] = (total, f"{DATASET.title} has {total:,} images.")
    if (cap := host_settings().max_map_points) and cap < total:  # the host's MNIST_MAX_MAP_POINTS (hosted: 10,000)
        caps["points"] = (cap, f"This host maps at most {cap:,} (MNIST_MAX_MAP_POINTS).")
    values = field_widgets(
        embed.EmbedSpec,
        PREFIX,
        ("method", "source", "points", "seed"),
        columns=4,
        options={"source": sources},
        formats=shown,
        caps=caps,
    )
    values |= field_widgets(
        embed.EmbedSpec, PREFIX, embed.METHOD_SETTINGS[values["method"]], columns=4, radio=("dims",)
    )
    return embed.EmbedSpec(dataset=DATASET.key, **values)


def source_version(spec: embed.EmbedSpec) -> str:
    if spec.source == "pixels":
        return ""
    info = next(i for i in catalog.usable_checkpoints() if i.name == spec.source)
    return catalog.weights_digest(info)


def scatter(e: embed.Embedding, highlight: int | None, angle: tuple[float, float] | None = None) -> go.Figure:
    """The map; a 3-D map is drawn either as plotly's 3-D scene (angle None) or seen from `angle`, flat.

    Only a flat (2-D) plotly chart can send a clicked point to the app: plotly's 3-D scenes emit no
    selection, and Streamlit forwards plotly clicks only for hierarchical charts. So the 3-D map is
    clickable as a view turned to an angle, with nearer points drawn larger.
    """
    three_d = e.coords.shape[1] == 3 and angle is None
    xy, depth = (
        embed.turned(e.coords, *angle) if angle is not None and e.coords.shape[1] == 3 else (e.coords[:, :2], None)
    )
    if depth is not None:
        near = (depth - depth.min()) / max(float(np.ptp(depth)), 1e-9)
    traces = []
    for label, name in enumerate(NAMES):
        mask = e.labels == label
        dim = highlight is not None and label != highlight
        common = dict(
            name=name,
            mode="markers",
            customdata=e.indices[mask],
            hovertemplate=f"{name} · #%{{customdata}} · click to see it<extra></extra>",
        )
        size = (2 + 5 * near[mask]) if depth is not None else (2.5 if three_d else 4)
        marker = dict(size=size, color="#d0d0d0" if dim else COLOURS[label], opacity=0.25 if dim else 0.8)
        if three_d:
            traces.append(
                go.Scatter3d(x=e.coords[mask, 0], y=e.coords[mask, 1], z=e.coords[mask, 2], marker=marker, **common)
            )
        else:
            traces.append(go.Scattergl(x=xy[mask, 0], y=xy[mask, 1], marker=marker, **common))
    fig = go.Figure(traces)
    source = e.spec.source if e.spec.source != "pixels" else "raw pixels"
    view = f"<br><sub>seen from turn {angle[0]:.0f}°, tilt {angle[1]:.0f}°</sub>" if depth is not None else ""
    fig.update_layout(
        height=620,
        margin={"l": 0, "r": 0, "t": 50 if view else 30, "b": 0},
        legend={"title": "class", "itemsizing": "constant"},
        title=f"{METHOD_NAMES[e.spec.method]} of {len(e.labels):,} {ITEMS} ({source}){view}",
    )
    if not three_d:
        # No dragmode here: Streamlit then sets clickmode "event+select", so a click selects one point; a
        # figure with dragmode "select" gets clickmode "event" and a click selects nothing.
        fig.update_layout(xaxis={"visible": False}, yaxis={"visible": False})
    return fig


def explained_variance(share: np.ndarray) -> go.Figure:
    k = np.arange(1, len(share) + 1)
    fig = go.Figure(
        [
            go.Bar(x=k, y=share, name="each component"),
            go.Scatter(x=k, y=np.cumsum(share), name="cumulative", mode="lines+markers"),
        ]
    )
    fig.update_layout(
        height=300,
        title="Explained variance",
        xaxis={"title": "principal component"},
        yaxis={"tickformat": ".0%", "range": [0, 1]},
        margin={"t": 40, "b": 0},
    )
    return fig


def separation_panel(e: embed.Embedding) -> None:
    sep = separation(e)
    st.metric(
        f"{sep.k}-NN accuracy in this map",
        f"{sep.accuracy:.1%}",
        help=f"Each {ITEMS[:-1]}'s class voted by its nearest neighbours in the map: how separated the classes "
        f"are, as a number (chance is about {1 / len(NAMES):.0%}).",
    )
    fig = go.Figure(
        go.Bar(
            x=NAMES,
            y=sep.per_class[: len(NAMES)],
            marker_color=COLOURS[: len(NAMES)],
            hovertemplate="class %{x}: %{y:.1%}<extra></extra>",
        )
    )
    fig.update_layout(
        height=260,
        title="Per class",
        xaxis={"type": "category"},
        yaxis={"tickformat": ".0%", "range": [0, 1]},
        margin={"t": 40, "b": 0},
    )
    st.plotly_chart(fig, key="emb.per_class")
    if sep.confusions:
        st.caption("Most mixed-up pairs (true → its neighbours' vote: count)")
        st.dataframe(
            [{"true": NAMES[t], "neighbours say": NAMES[v], ITEMS: n} for t, v, n in sep.confusions[:8]],
            hide_index=True,
            width="stretch",
        )


@st.cache_data(max_entries=32, show_spinner=False)
def _separation(key: str, _coords: np.ndarray, _labels: np.ndarray) -> embed.Separation:
    return embed.knn_separation(_coords, _labels)


def separation(e: embed.Embedding) -> embed.Separation:
    return _separation(st.session_state["emb.key"], e.coords, e.labels)


def selected_ids(event) -> list[int]:
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    return [int(p["customdata"]) for p in points if "customdata" in p][:200]


def selected_digits(ids: list[int]) -> None:
    if not ids:
        st.caption(
            f"Click a point to see that {ITEMS[:-1]} here; the box or lasso tool (top right of the map) picks many."
        )
        return
    mnist = resources.device_data(DATASET.key).mnist
    images = embed.digits(mnist, np.array(ids)).numpy()
    labels = embed.all_labels(mnist)[ids]
    if len(ids) == 1:
        n_train = len(mnist.train_labels)
        split, number = ("training", ids[0]) if ids[0] < n_train else ("test", ids[0] - n_train)
        st.image(upscale(images[0], 8), caption=f"{split} {ITEMS[:-1]} #{number}, label {NAMES[labels[0]]}", width=200)
    else:
        st.image(
            tile(images, columns=10),
            width="stretch",
            caption=f"{len(ids)} selected {ITEMS}; labels: "
            + ", ".join(f"{NAMES[c]}: {int((labels == c).sum())}" for c in range(len(NAMES)) if (labels == c).any()),
        )


def map_label(spec: embed.EmbedSpec) -> str:
    source = "raw pixels" if spec.source == "pixels" else f"{spec.source}'s features"
    return f"{METHOD_NAMES[spec.method]} of {spec.points:,} {ITEMS} ({source})"


def progress_view(snap) -> None:
    """This browser's map while it computes (queued or running), with its Stop."""
    if snap is None or not snap.running:
        return
    live.progress_row(
        snap,
        "emb.stop",
        f"{snap.view.stage} · {snap.seconds:.0f} s. You can look at other pages meanwhile; it keeps computing.",
        share=snap.view.fraction,
    )


def find_map(key: str) -> embed.Embedding | None:
    return shared_results.cached_embedding(key, DATASET.key)


def start(spec: embed.EmbedSpec) -> None:
    """Compute the map in the background, as this browser's job; the reason is shown when it cannot start."""
    live.submit("embed", dataclasses.asdict(spec), name=map_label(spec))


sidebar()
st.title("Embeddings")
DATASET = active_dataset()
NAMES = list(DATASET.class_names)
ITEMS = items(DATASET)  # "digits", or "images"
st.caption(
    f"Each {ITEMS[:-1]} of {DATASET.title} is a point in 784 dimensions (one per pixel). These maps squeeze that "
    f"into 2 or 3 so you can see which {ITEMS} a representation keeps apart and which it mixes up."
)
resources.active_data()  # its files read, or what is wrong with them
if (total := DATASET.train_size + DATASET.test_size) < embed.MIN_POINTS:
    st.error(
        f"{DATASET.title} has {total:,} images; a map needs at least {embed.MIN_POINTS:,}. Import a larger set on "
        "the Data page, or pick MNIST or Fashion-MNIST in the sidebar's Data set box."
    )
    st.stop()
spec = settings()
try:
    spec.validate()
except embed.EmbeddingError as exc:
    st.error(str(exc))
    st.stop()
try:
    key = embed.cache_key(spec, source_version(spec))
except (StopIteration, OSError):
    st.error(f"Checkpoint {spec.source!r} is gone; pick another input.")
    st.stop()
st.session_state["emb.key"] = key
result = find_map(key)
mine = live.latest("embed")  # this browser's latest map job, of these settings or others
this_map = mine is not None and mine.spec.config == dataclasses.asdict(spec)
if result is None and this_map and mine.ended and mine.status != DONE:
    said = f"{mine.name} failed: {mine.message}" if mine.status == FAILED else f"{mine.name}: {mine.message}"
    (st.error if mine.status == FAILED else st.info)(f"{said}. Press Compute map to start it again.")
if result is None and embed.quick(spec):
    try:
        with st.spinner("Computing PCA..."):
            result = embed.compute(spec, resources.device_data(DATASET.key).mnist)
        embed.save_cached(result, key)
    except embed.EmbeddingError as exc:
        st.error(str(exc))
if result is None:
    if not (this_map and mine.running):
        st.info(
            f"This map is not computed yet (about {embed.estimated_seconds(spec):.0f} s on a 2-core CPU; "
            "cached afterwards)."
        )
        if st.button("Compute map", type="primary", key="emb.compute"):
            start(spec)
    live.watch("embed", progress_view)  # polls only while a map of this browser computes; its end reruns the page
else:
    st.caption(
        f"{'Loaded from the cache' if result.meta.get('cached') else 'Computed'}; computing it took "
        f"{result.seconds:.1f} s."
    )
    left, right = st.columns([3, 1])
    with left:
        c1, c2, c3 = st.columns([2, 2, 2])
        highlight = c1.selectbox(
            "Isolate a class",
            [None, *range(len(NAMES))],
            format_func=lambda c: "all" if c is None else NAMES[c],
            key="emb.highlight",
            help="Grey out the others. Clicking a legend entry hides a class; double-clicking shows it alone.",
        )
        angle = None
        if result.coords.shape[1] == 3:
            free = st.toggle(
                "Free rotation (plotly's 3-D scene: drag to turn it; clicking a digit needs the turned view)",
                key="emb.free3d",
            )
            if not free:
                angle = (
                    c2.slider(
                        "Turn",
                        -180,
                        180,
                        30,
                        5,
                        key="emb.turn",
                        help="Spin the cloud about the vertical axis (0, 0 is the 2-D map).",
                    ),
                    c3.slider("Tilt", -90, 90, 20, 5, key="emb.tilt", help="Tip it towards you or away."),
                )
        event = st.plotly_chart(
            scatter(result, highlight, angle),
            key=f"emb.scatter.{key}",
            on_select="rerun",
            selection_mode=("points", "box", "lasso"),
        )
    with right:
        selected_digits(selected_ids(event))
        separation_panel(result)
    if result.explained_variance is not None:
        st.plotly_chart(explained_variance(result.explained_variance), key="emb.variance")
