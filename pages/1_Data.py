"""Data: the MNIST digits, their counts, pixel statistics, class means and differences."""

import numpy as np
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

st.set_page_config(page_title="Data · MNIST Lab", page_icon="🔢", layout="wide")

from labui import resources  # noqa: E402
from labui.images import digit_grid_html  # noqa: E402
from labui.sidebar import sidebar  # noqa: E402
from mnist_core import explore  # noqa: E402
from mnist_core.data import tile  # noqa: E402

DIGITS = list(range(10))
# A minus B: positive (A has more ink) at the top of the scale. Plotly's "RdBu" runs red to blue from the
# bottom up, which coloured A's ink blue; reversed, red is A's ink as the caption says.
DIFFERENCE_SCALE = "RdBu_r"


@st.cache_data(show_spinner="Computing class statistics...")
def statistics(split: str) -> dict:
    mnist = resources.device_data().mnist
    edges, shares = explore.intensity_histograms(mnist, split)
    return {
        "counts": explore.class_counts(mnist),
        "means": explore.class_means(mnist, split),
        "ink": explore.ink_per_class(mnist, split),
        "edges": edges,
        "shares": shares,
    }


@st.cache_data(max_entries=64, show_spinner=False)
def sample_grid(split: str, digit: int | None, count: int, seed: int) -> tuple[str, int]:
    """The sample grid's HTML and how many digits it shows. Once per server for each choice: every visitor
    opens the same first grid, and its 100 PNG encodings were most of a visit's CPU time (0.8 of 1.2 s)."""
    mnist = resources.device_data().mnist
    images, labels = explore.split_arrays(mnist, split)
    indices = explore.sample_indices(mnist, split, digit, count, seed)
    return digit_grid_html(images[indices].numpy(), titles=[f"#{i}: {int(labels[i])}" for i in indices]), len(indices)


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
mnist = resources.device_data().mnist
split = st.radio("Split", explore.SPLITS, horizontal=True, format_func=str.capitalize)
stats = statistics(split)

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
    fig = go.Figure([go.Bar(name=s, x=DIGITS, y=counts[s]) for s in explore.SPLITS])
    fig.update_layout(
        title="Images per class", barmode="group", height=320, xaxis={"dtick": 1}, margin={"t": 40, "b": 10}
    )
    st.plotly_chart(fig)
with right:
    fig = px.bar(
        x=DIGITS,
        y=100 * stats["ink"],
        labels={"x": "digit", "y": "mean intensity %"},
        title=f"Ink per class ({split}): mean pixel intensity",
    )
    fig.update_layout(height=320, xaxis={"dtick": 1}, margin={"t": 40, "b": 10})
    st.plotly_chart(fig)

st.subheader("Samples")
s1, s2, s3 = st.columns([2, 1, 1])
digit = s1.selectbox("Class", ["all", *DIGITS], help="Show one digit class or all of them.")
count = s2.select_slider("How many", [20, 50, 100, 200], value=100)
if s3.button("Reshuffle"):
    st.session_state["data.seed"] = st.session_state.get("data.seed", 0) + 1
images, labels = explore.split_arrays(mnist, split)
grid, shown = sample_grid(split, None if digit == "all" else digit, count, st.session_state.get("data.seed", 0))
st.html(grid)
st.caption(
    f"{shown} {split} digits"
    + ("" if digit == "all" else f" of class {digit}")
    + ": as many to a row as the screen holds; hover one for its index and label."
)

st.subheader("Look up one digit")
l1, l2 = st.columns([1, 2])
index = l1.number_input(f"Index in the {split} set", 0, len(labels) - 1, 0)
l1.write(f"Label: **{int(labels[index])}**; ink {float(images[index].float().mean()) / 255:.1%}")
l2.plotly_chart(heatmap(images[index].numpy()), key="data.lookup")

st.subheader("Class means and differences")
st.image(
    tile(np.clip(stats["means"], 0, 255).astype(np.uint8), columns=10),
    width="stretch",
    caption="The mean image of each digit, 0 to 9",
)
d1, d2 = st.columns(2)
a = d1.selectbox("Class A", DIGITS, index=3)
b = d2.selectbox("Class B", DIGITS, index=8)
diff = (stats["means"][a] - stats["means"][b]) / 255
st.plotly_chart(heatmap(diff, DIFFERENCE_SCALE, zmid=0.0), key="data.diff")
st.caption(f"Mean of {a} minus mean of {b}: red where {a}s have more ink, blue where {b}s do.")

st.subheader("Pixel intensity per class")
edges = stats["edges"]
fig = go.Figure(
    [go.Scatter(x=(edges[:-1] + edges[1:]) / 2, y=100 * stats["shares"][d], name=str(d), mode="lines") for d in DIGITS]
)
fig.update_layout(
    xaxis_title="pixel value (non-black pixels only)", yaxis_title="% of pixels", height=360, margin={"t": 10, "b": 10}
)
st.plotly_chart(fig)
st.caption("Black pixels (0) are left out: they are most of every image and would flatten the curves.")
