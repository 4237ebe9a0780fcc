"""Embeddings: PCA, t-SNE and UMAP maps of the digits, from raw pixels or a network's learned features."""

import numpy as np
import plotly.graph_objects as go
import streamlit as st

st.set_page_config(page_title="Embeddings · MNIST Lab", page_icon="🔢", layout="wide")

from labui import state  # noqa: E402
from labui.sidebar import sidebar  # noqa: E402
from mnist_core import embed  # noqa: E402
from mnist_core.checkpoints import CheckpointError  # noqa: E402
from mnist_core.data import tile  # noqa: E402
from mnist_core.tasks import TaskBusyError  # noqa: E402

METHOD_NAMES = {"pca": "PCA", "tsne": "t-SNE (openTSNE)", "umap": "UMAP"}
COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
PIXELS = "raw pixels"


def settings() -> embed.EmbedSpec:
    d = embed.EmbedSpec()
    c1, c2, c3, c4 = st.columns(4)
    method = c1.selectbox("Method", embed.METHODS, index=embed.METHODS.index(d.method), format_func=METHOD_NAMES.get,
                          key="emb.method", help="PCA: linear, global, instant. t-SNE: keeps neighbourhoods, "
                          "distances between clusters mean little. UMAP: neighbourhoods and more of the global shape.")
    infos = state.checkpoints()
    sources = [PIXELS, *[i.name for i in infos]]
    source = c2.selectbox("Input", sources, key="emb.source",
                          help="Raw pixels, or the features a checkpoint computes just before its last layer: "
                               "how a trained network separates digits that overlap in pixel space.")
    points = c3.number_input("Digits (stratified by class)", embed.MIN_POINTS, embed.MAX_POINTS, d.points, step=1000,
                             key="emb.points", help="Drawn from all 70,000 (training + test) in class proportions.")
    seed = c4.number_input("Seed", 0, 10_000, d.seed, key="emb.seed", help="Fixes the subset and the layout.")
    p1, p2, _ = st.columns([1, 1, 2])
    values = dict(method=method, points=int(points), seed=int(seed), source="pixels" if source == PIXELS else source)
    if method == "pca":
        values["dims"] = p1.radio("Dimensions", (2, 3), horizontal=True, key="emb.dims")
    elif method == "tsne":
        values["perplexity"] = p1.number_input(
            "Perplexity", 2.0, 500.0, d.perplexity, key="emb.perplexity",
            help="About how many neighbours each point keeps close. 5-50 is usual; larger shows more global structure.")
        values["iterations"] = p2.number_input("Iterations", 250, 5000, d.iterations, step=250, key="emb.iterations",
                                               help="Optimization steps after the 250 early-exaggeration steps.")
    else:
        values["n_neighbors"] = p1.number_input(
            "n_neighbors", 2, 200, d.n_neighbors, key="emb.neighbors",
            help="Size of the neighbourhood UMAP preserves: small favours local detail, large the global shape.")
        values["min_dist"] = p2.number_input("min_dist", 0.0, 1.0, d.min_dist, step=0.05, key="emb.min_dist",
                                             help="How tightly points may pack: 0 gives tight clumps, 1 even spread.")
    return embed.EmbedSpec(**values)


def source_version(spec: embed.EmbedSpec) -> str:
    if spec.source == "pixels":
        return ""
    info = next(i for i in state.checkpoints() if i.name == spec.source)
    return state.weights_digest(info)


def model_for(spec: embed.EmbedSpec):
    if spec.source == "pixels":
        return None
    info = next(i for i in state.checkpoints() if i.name == spec.source)
    return state.load_checkpoint(info)[0]


def scatter(e: embed.Embedding, highlight: int | None) -> go.Figure:
    three_d = e.coords.shape[1] == 3
    traces = []
    for digit in range(10):
        mask = e.labels == digit
        dim = highlight is not None and digit != highlight
        common = dict(name=str(digit), mode="markers", customdata=e.indices[mask],
                      hovertemplate=f"digit {digit} · #%{{customdata}}<extra></extra>")
        marker = dict(size=2.5 if three_d else 4, color="#d0d0d0" if dim else COLOURS[digit], opacity=0.25 if dim else 0.8)
        if three_d:
            traces.append(go.Scatter3d(x=e.coords[mask, 0], y=e.coords[mask, 1], z=e.coords[mask, 2], marker=marker,
                                       **common))
        else:
            traces.append(go.Scattergl(x=e.coords[mask, 0], y=e.coords[mask, 1], marker=marker, **common))
    fig = go.Figure(traces)
    fig.update_layout(height=620, margin={"l": 0, "r": 0, "t": 30, "b": 0}, legend={"title": "class", "itemsizing": "constant"},
                      title=f"{METHOD_NAMES[e.spec.method]} of {len(e.labels):,} digits ({e.spec.source if e.spec.source != 'pixels' else 'raw pixels'})")
    if not three_d:
        fig.update_layout(dragmode="select", xaxis={"visible": False}, yaxis={"visible": False})
    return fig


def explained_variance(share: np.ndarray) -> go.Figure:
    k = np.arange(1, len(share) + 1)
    fig = go.Figure([go.Bar(x=k, y=share, name="each component"),
                     go.Scatter(x=k, y=np.cumsum(share), name="cumulative", mode="lines+markers")])
    fig.update_layout(height=300, title="Explained variance", xaxis={"title": "principal component"},
                      yaxis={"tickformat": ".0%", "range": [0, 1]}, margin={"t": 40, "b": 0})
    return fig


def separation_panel(e: embed.Embedding) -> None:
    sep = separation(e)
    st.metric(f"{sep.k}-NN accuracy in this map", f"{sep.accuracy:.1%}",
              help="Each digit's class voted by its nearest neighbours in the map: how separated the classes are, "
                   "as a number (chance is about 10%).")
    fig = go.Figure(go.Bar(x=list(range(10)), y=sep.per_class, marker_color=COLOURS,
                           hovertemplate="class %{x}: %{y:.1%}<extra></extra>"))
    fig.update_layout(height=260, title="Per class", xaxis={"dtick": 1}, yaxis={"tickformat": ".0%", "range": [0, 1]},
                      margin={"t": 40, "b": 0})
    st.plotly_chart(fig, key="emb.per_class")
    if sep.confusions:
        st.caption("Most mixed-up pairs (true → its neighbours' vote: count)")
        st.dataframe([{"true": t, "neighbours say": v, "digits": n} for t, v, n in sep.confusions[:8]],
                     hide_index=True, width="stretch")


@st.cache_data(max_entries=32, show_spinner=False)
def _separation(key: str, _coords: np.ndarray, _labels: np.ndarray) -> embed.Separation:
    return embed.knn_separation(_coords, _labels)


def separation(e: embed.Embedding) -> embed.Separation:
    return _separation(st.session_state["emb.key"], e.coords, e.labels)


def selected_digits(event, e: embed.Embedding) -> None:
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    ids = [int(p["customdata"]) for p in points if "customdata" in p][:200]
    if not ids:
        st.caption("Click a point, or drag a box or lasso around some, to see those digits here.")
        return
    mnist = state.device_data().mnist
    images = embed.digits(mnist, np.array(ids)).numpy()
    labels = embed.all_labels(mnist)[ids]
    if len(ids) == 1:
        split, number = ("training", ids[0]) if ids[0] < 60_000 else ("test", ids[0] - 60_000)
        st.image(np.kron(images[0], np.ones((6, 6), np.uint8)), caption=f"{split} digit #{number}, label {labels[0]}")
    else:
        st.image(tile(images, columns=10), caption=f"{len(ids)} selected digits; labels: "
                 + ", ".join(f"{d}: {int((labels == d).sum())}" for d in range(10) if (labels == d).any()))


@st.fragment(run_every=1.0)
def progress_view(key: str) -> None:
    task = state.task_runner().get(key)
    if task is None:
        return
    if task.running:
        st.progress(task.fraction, text=f"{task.label}: {task.stage} · {time_since(task.started)}. "
                                        "You can look at other pages meanwhile; it keeps computing.")
    else:
        st.rerun()  # the whole page, to draw the finished map


def time_since(t: float) -> str:
    import time

    return f"{time.time() - t:.0f} s"


def find_map(spec: embed.EmbedSpec, key: str) -> embed.Embedding | None:
    task = state.task_runner().get(key)
    if task is not None and not task.running and task.result is not None:
        return task.result
    return state.cached_embedding(key)


def start(spec: embed.EmbedSpec, key: str) -> None:
    model = model_for(spec)
    mnist = state.device_data().mnist

    def work(report):
        result = embed.compute(spec, mnist, model, report)
        embed.save_cached(result, key)
        return result

    try:
        state.task_runner().start(key, f"{METHOD_NAMES[spec.method]} of {spec.points:,} digits", work)
    except TaskBusyError as exc:
        st.error(str(exc))


sidebar()
st.title("Embeddings")
st.caption("Each digit is a point in 784 dimensions (one per pixel). These maps squeeze that into 2 or 3 so you "
           "can see which digits a representation keeps apart and which it mixes up.")
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
result = find_map(spec, key)
task = state.task_runner().get(key)
if result is None and task is not None and task.error:
    st.error(f"The map could not be computed: {task.error}")
    state.task_runner().forget(key)
if result is None and spec.method == "pca":
    try:
        with st.spinner("Computing PCA..."):
            result = embed.compute(spec, state.device_data().mnist, model_for(spec))
        embed.save_cached(result, key)
    except (embed.EmbeddingError, CheckpointError) as exc:
        st.error(str(exc))
if result is None:
    if task is not None and task.running:
        progress_view(key)
    else:
        rough = {"tsne": 4.0, "umap": 1.2}[spec.method] * spec.points / 1000
        st.info(f"This map is not computed yet (about {rough:.0f} s on a 2-core CPU; cached afterwards).")
        if st.button("Compute map", type="primary", key="emb.compute"):
            start(spec, key)
            st.rerun()
        running = state.task_runner().running()
        if running:
            st.caption(f"Computing now: {running[0].label} ({running[0].fraction:.0%}).")
else:
    st.caption(f"{'Loaded from the cache' if result.meta.get('cached') else 'Computed'}; computing it took "
               f"{result.seconds:.1f} s.")
    left, right = st.columns([3, 1])
    with left:
        highlight = st.selectbox("Isolate a class", [None, *range(10)], format_func=lambda d: "all" if d is None else str(d),
                                 key="emb.highlight", help="Grey out the others. Clicking a legend entry hides a class; "
                                 "double-clicking shows it alone.")
        event = st.plotly_chart(scatter(result, highlight), key=f"emb.scatter.{key}", on_select="rerun",
                                selection_mode=("points", "box", "lasso"))
        selected_digits(event, result)
    with right:
        separation_panel(result)
    if result.explained_variance is not None:
        st.plotly_chart(explained_variance(result.explained_variance), key="emb.variance")
