"""Data: the active data set's images (MNIST's digits by default), their counts, pixel statistics, class means and
differences, each class by its name."""

import io
import math

import numpy as np
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

st.set_page_config(page_title="Data · MNIST Lab", page_icon="🔢", layout="wide")

from labui import live, resources  # noqa: E402
from labui.data_choice import active_dataset, items, set_dataset  # noqa: E402
from labui.images import digit_grid_html  # noqa: E402
from labui.sidebar import sidebar  # noqa: E402
from mnist_core import explore, owners, uploads  # noqa: E402
from mnist_core.data import tile  # noqa: E402
from mnist_core.datasets import MNIST  # noqa: E402
from mnist_core.datasets import available as available_datasets  # noqa: E402
from mnist_core.files import write_bytes_atomic  # noqa: E402
from mnist_core.kinds import staged_upload_path  # noqa: E402
from mnist_core.owners import QuotaExceeded  # noqa: E402
from mnist_core.reporter import DONE, FAILED  # noqa: E402

# A minus B: positive (A has more ink) at the top of the scale. Plotly's "RdBu" runs red to blue from the
# bottom up, which coloured A's ink blue; reversed, red is A's ink as the caption says.
DIFFERENCE_SCALE = "RdBu_r"


@st.cache_data(show_spinner="Computing class statistics...")
def statistics(key: str, version: str, split: str) -> dict:
    """Per class, for the data set's classes only (explore counts up to ten; a set of one's own may have fewer).
    version (the files' SHA-256) keys the cache: a set imported again under its name is another one."""
    mnist = resources.device_data(key).mnist
    n = len(mnist.class_names)
    edges, shares = explore.intensity_histograms(mnist, split)
    return {
        "counts": {s: c[:n] for s, c in explore.class_counts(mnist).items()},
        "means": explore.class_means(mnist, split)[:n],
        "ink": explore.ink_per_class(mnist, split)[:n],
        "edges": edges,
        "shares": shares[:n],
    }


@st.cache_data(max_entries=64, show_spinner=False)
def sample_grid(key: str, version: str, split: str, label: int | None, count: int, seed: int) -> tuple[str, int]:
    """The sample grid's HTML and how many images it shows. Once per server for each choice: every visitor
    opens the same first grid, and its 100 PNG encodings were most of a visit's CPU time (0.8 of 1.2 s)."""
    mnist = resources.device_data(key).mnist
    images, labels = explore.split_arrays(mnist, split)
    indices = explore.sample_indices(mnist, split, label, count, seed)
    titles = [f"#{i}: {mnist.class_names[int(labels[i])]}" for i in indices]
    return digit_grid_html(images[indices].numpy(), titles=titles), len(indices)


FITS = {
    "centre": "centre the ink, as MNIST's digits (drawings, symbols)",
    "whole": "the whole image (photos of objects)",
}


def upload_preview(upload, fit: str):
    """uploads.preview of this upload, once per file and fit (a rerun must not read the zip again)."""
    key = ("data.preview", upload.file_id, fit)
    if key not in st.session_state:
        st.session_state[key] = uploads.preview(io.BytesIO(upload.getvalue()), fit=fit, label="the uploaded zip")
    return st.session_state[key]


def bring_your_own() -> None:
    """Upload a zip of class folders (cat/001.png) or of MNIST's four IDX files, see what it becomes, import it."""
    st.caption(
        f"A zip with one folder of images per class ({uploads.EXAMPLE.split('e.g. ')[-1]}; {uploads.IMAGE_KINDS}), "
        "or the four IDX files with an optional classes.txt. Images become 28x28 gray, white on black. Up to "
        f"{uploads.MAX_IMAGES:,} images and {uploads.MAX_BYTES // 2**20} MB. The set is yours: it appears in the "
        "sidebar's Data set box, and every page can train and test on it."
    )
    if done := st.session_state.pop("data.imported", None):
        st.success(done)
    live.watch("import", import_view)  # polls only while this browser's import runs; its end reruns the page
    delete_own()
    # A new file brings its own name into the Name box (a keyed box otherwise keeps the first file's name).
    upload = st.file_uploader(
        "Zip file", type=["zip"], key="data.upload", on_change=lambda: st.session_state.pop("data.upload_name", None)
    )
    if upload is None:
        return
    c1, c2 = st.columns([1, 2])
    name = c1.text_input("Name", value=upload.name.rsplit(".", 1)[0], key="data.upload_name")
    fit = c2.radio("Fit into 28x28", list(FITS), format_func=FITS.get, horizontal=True, key="data.upload_fit")
    replace = st.checkbox("Replace my data set of this name", key="data.upload_replace")
    try:
        names, grid, counts, skipped = upload_preview(upload, fit)
    except uploads.UploadError as exc:
        st.error(f"This zip cannot become a data set: {exc}")
        return
    st.write(
        f"**{len(names)} classes**, {sum(counts):,} images: " + ", ".join(f"{n}: {c:,}" for n, c in zip(names, counts))
    )
    st.image(
        tile(grid.reshape(-1, 28, 28), columns=grid.shape[1]),
        caption="The first images of each class, one row per class, as they will be stored",
    )
    if skipped:
        st.caption(f"{len(skipped)} file(s) will be skipped, e.g. {skipped[0]['file']}: {skipped[0]['why']}")
    if st.button("Import", type="primary", key="data.import"):
        start_import(upload, name, fit, replace)


def delete_own() -> None:
    """Delete one of this browser's data sets (the shipped ones cannot be)."""
    own = [d for d in available_datasets() if d.own]
    if not own:
        return
    with st.expander(f"Your data sets ({len(own)})"):
        c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
        chosen = c1.selectbox("Data set", own, format_func=lambda d: d.title, key="data.own_pick")
        if c2.button("Delete", key="data.own_delete"):
            try:
                uploads.delete_dataset(chosen.folder.name)
            except (uploads.UploadError, OSError) as exc:
                st.error(f"Not deleted: {exc}")
                return
            if active_dataset().key == chosen.key:
                set_dataset(MNIST)
            st.session_state["data.imported"] = f"Deleted your data set {chosen.title!r}."
            st.rerun()


def start_import(upload, name: str, fit: str, replace: bool) -> None:
    """The upload waits in this browser's uploads folder while an import job converts it (out of the page's
    thread: a 100,000-image zip takes a minute); the job removes it when done."""
    staged = staged_upload_path()
    try:
        owners.check_current_quota()
        write_bytes_atomic(staged, upload.getvalue())
    except (QuotaExceeded, OSError) as exc:
        st.error(f"Not imported: {exc}")
        return
    live.submit("import", {"upload": str(staged), "name": name, "fit": fit, "overwrite": replace}, name=name)
    staged.unlink(missing_ok=True)  # reached only when the job was refused (submit reruns the page otherwise)


def import_view(snap) -> None:
    """This browser's latest import: its progress and Stop while it runs; once it is done, the set it made becomes
    the active one (once) and the page reruns so every part of it shows that set."""
    if snap is None:
        return
    if snap.running:
        live.progress_row(snap, "data.import_stop", text=snap.view.stage, share=snap.view.fraction)
        return
    if st.session_state.get("data.import_seen") == snap.id:
        return
    st.session_state["data.import_seen"] = snap.id
    if snap.status == DONE and snap.result and snap.result.get("dataset"):
        set_dataset(snap.result["dataset"])
        st.session_state["data.imported"] = (
            f"{snap.message[:1].upper()}{snap.message[1:]}. It is now the active data set."
        )
        st.rerun()
    elif snap.status == FAILED:
        st.error(f"Not imported: {snap.message}")
    else:
        st.info(snap.message)


def heatmap(image: np.ndarray, colorscale: str = "gray", zmid: float | None = None) -> go.Figure:
    fig = go.Figure(go.Heatmap(z=image[::-1], colorscale=colorscale, zmid=zmid, showscale=zmid is not None))
    fig.update_layout(
        height=320,
        margin={"l": 0, "r": 0, "t": 10, "b": 0},
        xaxis={"visible": False},
        yaxis={"visible": False, "scaleanchor": "x"},
    )
    return fig


sidebar()
st.title("Data")
dataset = active_dataset()
mnist = resources.active_data().mnist
names = list(mnist.class_names)
CLASSES = list(range(len(names)))
st.caption(f"**{dataset.title}**: {dataset.description}. Choose another data set in the sidebar.")
split = st.radio("Split", explore.SPLITS, horizontal=True, format_func=str.capitalize)
stats = statistics(dataset.key, mnist.sha256, split)
# Class names on a categorical axis: "0".."9" stay in their order, and "Sneaker" fits where 7 was.
CLASS_AXIS = {"type": "category", "categoryorder": "array", "categoryarray": names}

c1, c2, c3 = st.columns(3)
c1.metric("Training images", f"{len(mnist.train_labels):,}")
c2.metric("Test images", f"{len(mnist.test_labels):,}")
c3.metric(
    "Pixel mean / std (training set, 0-1)",
    f"{mnist.mean:.4f} / {mnist.std:.4f}",
    help="Computed from the training pixels; every model's input is standardized with them.",
)

left, right = st.columns(2)
with left:
    counts = stats["counts"]
    fig = go.Figure([go.Bar(name=s, x=names, y=counts[s]) for s in explore.SPLITS])
    fig.update_layout(
        title="Images per class", barmode="group", height=320, xaxis=CLASS_AXIS, margin={"t": 40, "b": 10}
    )
    st.plotly_chart(fig)
with right:
    fig = px.bar(
        x=names,
        y=100 * stats["ink"],
        labels={"x": "class", "y": "mean intensity %"},
        title=f"Ink per class ({split}): mean pixel intensity",
    )
    fig.update_layout(height=320, xaxis=CLASS_AXIS, margin={"t": 40, "b": 10})
    st.plotly_chart(fig)

st.subheader("Samples")
s1, s2, s3 = st.columns([2, 1, 1])
label = s1.selectbox(
    "Class", ["all", *CLASSES], format_func=lambda c: c if c == "all" else names[c], help="One class or all of them."
)
count = s2.select_slider("How many", [20, 50, 100, 200], value=100)
if s3.button("Reshuffle"):
    st.session_state["data.seed"] = st.session_state.get("data.seed", 0) + 1
images, labels = explore.split_arrays(mnist, split)
seed = st.session_state.get("data.seed", 0)
grid, shown = sample_grid(dataset.key, mnist.sha256, split, None if label == "all" else label, count, seed)
st.html(grid)
st.caption(
    f"{shown} {split} {items(dataset)}"
    + ("" if label == "all" else f" of class {names[label]}")
    + ": as many to a row as the screen holds; hover one for its index and label."
)

st.subheader(f"Look up one {items(dataset)[:-1]}")
l1, l2 = st.columns([1, 2])
index = l1.number_input(f"Index in the {split} set", 0, len(labels) - 1, 0)
l1.write(f"Label: **{names[int(labels[index])]}**; ink {float(images[index].float().mean()) / 255:.1%}")
l2.plotly_chart(heatmap(images[index].numpy()), key="data.lookup")

st.subheader("Class means and differences")
st.image(
    tile(np.clip(np.nan_to_num(stats["means"]), 0, 255).astype(np.uint8), columns=len(names)),
    width="stretch",
    caption=f"The mean image of each class: {', '.join(names)}",
)
d1, d2 = st.columns(2)
a = d1.selectbox("Class A", CLASSES, index=min(3, len(names) - 2), format_func=names.__getitem__)
b = d2.selectbox("Class B", CLASSES, index=min(8, len(names) - 1), format_func=names.__getitem__)
diff = (stats["means"][a] - stats["means"][b]) / 255
st.plotly_chart(heatmap(diff, DIFFERENCE_SCALE, zmid=0.0), key="data.diff")
st.caption(
    f"Mean of {names[a]} minus mean of {names[b]}: red where class {names[a]} has more ink, "
    f"blue where class {names[b]} does."
)

st.subheader("Pixel intensity per class")
edges = stats["edges"]
fig = go.Figure(
    [
        go.Scatter(
            x=(edges[:-1] + edges[1:]) / 2,
            y=100 * stats["shares"][c],
            name=names[c],
            mode="lines+markers",
            marker_size=3,
        )
        for c in CLASSES
    ]
)
fig.update_layout(
    xaxis_title="pixel value (non-black pixels only)",
    yaxis_title="% of pixels (log scale)",
    yaxis_type="log",
    height=360,
    margin={"t": 10, "b": 10},
)
st.plotly_chart(fig)
brightest = 100 * stats["shares"][:, -1]
st.caption(
    "Black pixels (0) are left out: they are most of every image and would flatten the curves. The y axis is "
    f"logarithmic for the same reason: the brightest bin ({math.ceil(edges[-2])}-255) holds "
    f"{brightest.min():.0f}-{brightest.max():.0f}% of each class's other pixels (a bin with none leaves a gap)."
)

st.subheader("Bring your own data set")
bring_your_own()
