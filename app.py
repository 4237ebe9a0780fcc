"""MNIST Lab: the home page. Run with `streamlit run app.py`; the other pages live in pages/."""

import streamlit as st
import torch

st.set_page_config(page_title="MNIST Lab", page_icon="🔢", layout="wide")

from labui import state  # noqa: E402
from labui.sidebar import sidebar  # noqa: E402
from mnist_core.data import tile  # noqa: E402

PAGES = [  # (file, label, one line) in the order a learner would use them
    ("pages/1_Data.py", "Data", "The digits: counts, samples by class, pixel statistics, class means and differences."),
    ("pages/2_Embeddings.py", "Embeddings", "PCA, t-SNE and UMAP maps of the digits, from pixels or a network's features."),
    ("pages/3_Train.py", "Train", "Pick an architecture and its settings, train it, and watch the curves live."),
    ("pages/4_Inspect.py", "Inspect", "Look inside a checkpoint: histograms over training, gradient flow, filters, "
     "feature maps, saliency, confusion matrix, calibration, its mistakes."),
    ("pages/5_Draw.py", "Draw", "Draw a digit and watch every model read it, with the preprocessing and the why."),
    ("pages/6_GAN.py", "GAN", "A conditional GAN: its digits class by class and epoch by epoch, trained live, measured."),
    ("pages/7_Compare.py", "Compare", "Vary one setting (optimizer, architecture, BatchNorm, dropout, augmentation, "
     "depth) from identical starting weights, over several seeds, and compare the curves."),
    ("pages/8_Transfer.py", "Transfer", "Freeze a pretrained backbone (Fashion-MNIST CNN, EfficientNet-Lite0, "
     "torchvision's) and train a new head on 100, 1,000 or all labelled digits, against training from scratch."),
]

sidebar()
st.title("MNIST Lab")
st.write(
    "A laboratory for seeing what a neural network does, on the real MNIST digits: train fully connected "
    "nets, parallel-column nets, sparse nets and CNNs with live curves, compare them fairly, transfer what a "
    "network learned elsewhere, and look inside."
)

st.subheader("Pages")
for path, label, line in PAGES:
    st.page_link(path, label=f"**{label}**: {line}")

data = state.device_data()
mnist = data.mnist
left, right = st.columns([2, 3])
with left:
    st.subheader("The data set")
    st.write(f"**{len(mnist.train_labels):,}** training and **{len(mnist.test_labels):,}** test images, "
             f"28 x 28 grey levels; pixel mean {mnist.mean:.4f}, std {mnist.std:.4f}.")
    counts = torch.bincount(mnist.train_labels, minlength=10).tolist()
    st.caption("Training images per class: " + ", ".join(f"{d}: {c:,}" for d, c in enumerate(counts)))
    first_of_each = [int((mnist.train_labels == d).nonzero()[i]) for i in range(4) for d in range(10)]
    st.image(tile(mnist.train_images[first_of_each], columns=10), caption="The first four training digits of each class",
             width=420)
with right:
    st.subheader("Checkpoints")
    infos = state.checkpoints()
    if infos:
        st.dataframe(state.checkpoint_rows(infos), hide_index=True, width="stretch",
                     column_order=["name", "source", "architecture", "params", "epochs", "test accuracy %",
                                   "train time s", "status"])
    else:
        st.info("No checkpoints yet. Train one on the Train page, or run `python -m mnist_core train --preset fast`.")
