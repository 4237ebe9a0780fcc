"""MNIST Lab: the entry point (`streamlit run app.py`): the navigation over pages/, and the home page."""

import pandas  # noqa: F401  plotly asks for pandas from fragment threads; a half-imported pandas raises there
import streamlit as st
import torch

st.set_page_config(page_title="MNIST Lab", page_icon="🔢", layout="wide")

from labui import catalog, errors, resources, visitor  # noqa: E402
from labui.data_choice import active_dataset  # noqa: E402
from labui.images import upscale  # noqa: E402
from labui.navigation import app_pages, page_files, page_label, run_in_app  # noqa: E402
from labui.sidebar import hosted_limits, sidebar  # noqa: E402
from mnist_core import readiness  # noqa: E402
from mnist_core.data import tile  # noqa: E402

DESCRIPTIONS = {  # pages/ file -> one line for the home page; a page missing here is still listed, by its name
    "1_Data.py": "The digits: counts, samples by class, pixel statistics, class means and differences.",
    "2_Embeddings.py": "PCA, t-SNE and UMAP maps of the digits, from pixels or a network's features.",
    "3_Train.py": "Pick an architecture and its settings, train it, and watch the curves live.",
    "4_Under_the_hood.py": "Backpropagation by hand: a small graph engine written in NumPy, one training step on a "
    "real digit node by node, every gradient checked against PyTorch's.",
    "5_Build.py": "Stack layers one by one with shapes, parameters and multiply-adds checked as you go, train the "
    "network, or download any checkpoint as a training script, ONNX or its files.",
    "6_Inspect.py": "Look inside a checkpoint: histograms over training, gradient flow, filters, feature maps, "
    "saliency, confusion matrix, calibration, its mistakes.",
    "7_Draw.py": "Draw a digit and watch every model read it, with the preprocessing and the why.",
    "8_GAN.py": "A conditional GAN: its digits class by class and epoch by epoch, trained live, measured.",
    "9_Compare.py": "Vary one setting (optimizer, architecture, BatchNorm, dropout, augmentation, depth) from "
    "identical starting weights, over several seeds, and compare the curves.",
    "10_Transfer.py": "Freeze a pretrained backbone (Fashion-MNIST CNN, EfficientNet-Lite0, torchvision's) and train "
    "a new head on 100, 1,000 or all labelled digits, against training from scratch.",
}


def page_list() -> None:
    """Every page in pages/, a link and its line, two to a row (one on a phone: Streamlit stacks columns)."""
    files = page_files()
    for row in range(0, len(files), 2):
        for column, path in zip(st.columns(2), files[row : row + 2]):
            with column:
                st.page_link(f"pages/{path.name}", label=f"**{page_label(path)}**")
                if path.name in DESCRIPTIONS:
                    st.caption(DESCRIPTIONS[path.name])


@st.cache_resource(show_spinner="Checking MNIST and the shipped checkpoints...")
def ready() -> readiness.Readiness:
    """Checked once per server process, when its first page runs: one line in the server log."""
    status = readiness.check()
    (errors.log.info if status.ok else errors.log.error)(status.line())
    return status


def not_ready(status: readiness.Readiness) -> None:
    st.error("**This installation is missing something.** " + " ".join(f"\n- {p}" for p in status.problems))


def home() -> None:
    sidebar()
    st.title("MNIST Lab")
    st.write(
        "A laboratory for seeing what a neural network does, on the real MNIST digits: train fully connected "
        "nets, parallel-column nets, sparse nets and CNNs with live curves, compare them fairly, transfer what a "
        "network learned elsewhere, build your own layer by layer and take it home, and look inside, down to "
        "backpropagation itself."
    )
    hosted_limits()

    st.subheader("Pages")
    page_list()

    status = ready()
    if not status.ok:
        not_ready(status)
    if not status.mnist_loaded:
        return
    dataset = active_dataset()
    mnist = resources.active_data().mnist
    names = mnist.class_names
    st.subheader(f"The data set: {dataset.title}")
    text, picture = st.columns([1, 1])
    text.write(
        f"{dataset.description[0].upper()}{dataset.description[1:]}: **{len(mnist.train_labels):,}** training and "
        f"**{len(mnist.test_labels):,}** test images, 28 x 28 grey levels; pixel mean {mnist.mean:.4f}, "
        f"std {mnist.std:.4f}. Choose another data set in the sidebar: every page follows."
    )
    counts = torch.bincount(mnist.train_labels, minlength=len(names)).tolist()
    text.caption("Training images per class: " + ", ".join(f"{names[c]}: {n:,}" for c, n in enumerate(counts)))
    present = [c for c in range(len(names)) if counts[c] >= 4]  # a set of one's own may have tiny classes
    first_of_each = [int((mnist.train_labels == c).nonzero()[i]) for i in range(4) for c in present]
    picture.image(
        upscale(tile(mnist.train_images[first_of_each], columns=len(present)), 4),
        width="stretch",
        caption=f"The first four training images of each class: {', '.join(names[c] for c in present)}",
    )
    st.subheader("Checkpoints")  # the full width: the table has nine columns
    infos = catalog.checkpoints()
    if infos:
        st.dataframe(
            catalog.checkpoint_rows(infos),
            hide_index=True,
            width="stretch",
            column_order=[
                "name",
                "data set",
                "source",
                "architecture",
                "params",
                "epochs",
                "test accuracy %",
                "train time s",
                "status",
            ],
        )
    else:
        st.info("No checkpoints yet. Train one on the Train page, or run `python -m mnist_core train --preset fast`.")


errors.apply_error_details()
ready()  # the first run in this server process checks and logs; later runs find the answer cached
page = st.navigation(app_pages(home))


def run_page() -> None:
    visitor.use_owner()  # hosted: this browser's own runs and drawings for the whole page run (the sidebar again)
    run_in_app(page)


errors.run_guarded(page.title, run_page)  # every page's unexpected error: a plain message and a log line
