"""GAN: a conditional GAN's samples by class and by epoch, training it live, and how good it is."""

import numpy as np
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
import torch

st.set_page_config(page_title="GAN · MNIST Lab", page_icon="🔢", layout="wide")

from labui import state  # noqa: E402
from labui.sidebar import sidebar  # noqa: E402
from mnist_core import gan  # noqa: E402
from mnist_core.checkpoints import CheckpointError  # noqa: E402
from mnist_core.data import tile  # noqa: E402

METRICS_HELP = {
    "conditional accuracy": "The share of generated digits that the best shipped classifier reads as the class "
                            "that was asked for: does the label control the digit?",
    "diversity": "Per class, how spread out the samples are in the classifier's feature space, relative to real "
                 "digits of that class: below 0.5 means the generator draws nearly the same digit every time "
                 "(mode collapse).",
    "Frechet distance": "How far the generated digits' feature distribution is from the real test set's (the "
                        "FID formula, in the classifier's feature space): 0 is indistinguishable; lower is better.",
}


@st.cache_resource(show_spinner=False)
def cached_gan(name: str, modified: float):
    checkpoint = next(c for c in gan.list_gans() if c.name == name)
    return gan.load_gan(checkpoint)


def browse(checkpoint) -> None:
    try:
        generator, grids = cached_gan(checkpoint.name, checkpoint.weights_path.stat().st_mtime)
    except CheckpointError as exc:
        st.error(str(exc))
        return
    c1, c2, c3 = st.columns(3)
    digit = c1.selectbox("Class", ["all", *range(10)], key="gan.class")
    count = c2.slider("Samples per class" if digit == "all" else "Samples", 1, 16 if digit == "all" else 64,
                      8 if digit == "all" else 32, key="gan.count")
    seed = c3.number_input("Noise seed", 0, 10**6, 0, key="gan.seed", help="Change it for new samples.")
    labels = torch.arange(10).repeat_interleave(count) if digit == "all" else torch.full((count,), int(digit))
    images = gan.to_uint8(gan.generate(generator, labels, seed=int(seed)))
    caption = (f"One row per class, {count} samples each" if digit == "all" else f"{count} samples of class {digit}")
    st.image(tile(images, columns=count if digit == "all" else 16), caption=caption, width=min(900, 60 * min(count, 16)))
    if grids is not None and len(grids):
        st.subheader("How it learned, epoch by epoch")
        st.caption("The same fixed noise for every epoch, so each frame differs only by what the generator learned.")
        per_class = checkpoint.config.grid_per_class
        frames = np.stack([tile(g, columns=per_class) for g in grids])
        fig = px.imshow(frames, animation_frame=0, binary_string=True, labels={"animation_frame": "epoch"})
        fig.update_layout(height=520, margin={"l": 0, "r": 0, "t": 10, "b": 0}, xaxis={"visible": False},
                          yaxis={"visible": False})
        for i, step in enumerate(fig.layout.sliders[0].steps):
            step.label = str(i + 1)
        st.plotly_chart(fig, key="gan.epochs")
    st.subheader("Walking through the noise")
    i1, i2, i3 = st.columns(3)
    walk_digit = i1.selectbox("Class", range(10), index=3, key="gan.walk_class")
    seed_a = i2.number_input("From noise seed", 0, 10**6, 1, key="gan.seed_a")
    seed_b = i3.number_input("To noise seed", 0, 10**6, 2, key="gan.seed_b")
    walk = gan.to_uint8(gan.interpolate(generator, int(walk_digit), int(seed_a), int(seed_b), steps=12))
    st.image(tile(walk, columns=12), width=720,
             caption="Straight line between two noise vectors, same class: a smooth change of style means the "
                     "generator learned a continuous space, not a lookup table.")
    st.subheader("Real vs generated")
    mnist = state.device_data().mnist
    cls = int(walk_digit)
    real = mnist.test_images[(mnist.test_labels == cls).nonzero().squeeze(1)[:16]].numpy()
    fake = gan.to_uint8(gan.generate(generator, torch.full((16,), cls), seed=int(seed) + 99))
    left, right = st.columns(2)
    left.image(tile(real, columns=8), caption=f"Real test digits of class {cls}", width=400)
    right.image(tile(fake, columns=8), caption=f"Generated digits of class {cls}", width=400)


def quality_charts(epochs: list[dict], key: str) -> None:
    scored = [e for e in epochs if "conditional_accuracy" in e]
    if not scored:
        return
    x = [e["epoch"] for e in scored]
    c1, c2, c3 = st.columns(3)
    fig = go.Figure(go.Scatter(x=x, y=[e["conditional_accuracy"] for e in scored], mode="lines+markers"))
    fig.update_layout(height=260, title="Conditional accuracy", yaxis={"range": [0, 1], "tickformat": ".0%"},
                      xaxis={"title": "epoch", "dtick": 1}, margin={"t": 40, "b": 10})
    c1.plotly_chart(fig, key=f"{key}.acc")
    fig = go.Figure([go.Scatter(x=x, y=[e["diversity"][c] for e in scored], name=str(c), mode="lines")
                     for c in range(10)])
    fig.add_hline(y=gan.COLLAPSE_BELOW, line_dash="dot", annotation_text=f"collapse below {gan.COLLAPSE_BELOW}")
    fig.update_layout(height=260, title="Diversity per class (real = 1)", xaxis={"title": "epoch", "dtick": 1},
                      margin={"t": 40, "b": 10})
    c2.plotly_chart(fig, key=f"{key}.div")
    fig = go.Figure(go.Scatter(x=x, y=[e["frechet"] for e in scored], mode="lines+markers"))
    fig.update_layout(height=260, title="Frechet distance (lower is better)", xaxis={"title": "epoch", "dtick": 1},
                      margin={"t": 40, "b": 10})
    c3.plotly_chart(fig, key=f"{key}.fd")


def metrics(checkpoint) -> None:
    epochs = checkpoint.meta.get("epochs", [])
    last = next((e for e in reversed(epochs) if "conditional_accuracy" in e), None)
    if last is None:
        st.info("This GAN was trained without the classifier's scores.")
        return
    c1, c2, c3 = st.columns(3)
    c1.metric("Conditional accuracy", f"{last['conditional_accuracy']:.1%}", help=METRICS_HELP["conditional accuracy"])
    c2.metric("Lowest class diversity", f"{min(last['diversity']):.2f}", help=METRICS_HELP["diversity"])
    c3.metric("Frechet distance", f"{last['frechet']:.1f}", help=METRICS_HELP["Frechet distance"])
    reference = checkpoint.meta.get("real_frechet")
    if reference is not None:
        st.caption(f"For scale: real training digits against the real test set score {reference:.1f}.")
    for name, text in METRICS_HELP.items():
        st.markdown(f"- **{name}**: {text}")
    collapsed = [c for c, d in enumerate(last["diversity"]) if d < gan.COLLAPSE_BELOW]
    colours = ["#e45756" if d < gan.COLLAPSE_BELOW else "#4c78a8" for d in last["diversity"]]
    fig = go.Figure(go.Bar(x=list(range(10)), y=last["diversity"], marker_color=colours))
    fig.add_hline(y=gan.COLLAPSE_BELOW, line_dash="dot")
    fig.update_layout(height=260, title="Diversity per class at the last epoch (red = collapsed)",
                      xaxis={"dtick": 1}, margin={"t": 40, "b": 10})
    st.plotly_chart(fig, key="gan.metrics.last_div")
    if collapsed:
        st.warning(f"Mode collapse in class(es) {', '.join(map(str, collapsed))}: the generator draws nearly the "
                   "same digit there.")
    quality_charts(epochs, "gan.metrics")


def settings() -> gan.GanConfig:
    d = gan.GanConfig()
    c1, c2, c3, c4 = st.columns(4)
    values = dict(
        variant=c1.selectbox("Variant", gan.VARIANTS, index=gan.VARIANTS.index(d.variant), key="gan.variant",
                             help="mlp: fully connected G and D, fast. dcgan: transposed convolutions, sharper digits."),
        latent=c2.number_input("Latent size", 1, 512, d.latent, key="gan.latent", help="Length of the noise vector."),
        width=c3.number_input("Width", 4, 256, d.width, key="gan.width", help="Base channels (dcgan) or 8x units (mlp)."),
        epochs=c4.number_input("Epochs", 1, 200, d.epochs, key="gan.epochs_n"),
        g_lr=c1.number_input("G learning rate", 1e-6, 1.0, d.g_lr, format="%g", key="gan.g_lr"),
        d_lr=c2.number_input("D learning rate", 1e-6, 1.0, d.d_lr, format="%g", key="gan.d_lr"),
        beta1=c3.number_input("Adam beta1", 0.0, 0.999, d.beta1, key="gan.beta1", help="0.5 is the DCGAN choice."),
        beta2=c4.number_input("Adam beta2", 0.0, 0.9999, d.beta2, format="%g", key="gan.beta2"),
        batch_size=c1.number_input("Batch size", 1, 60000, d.batch_size, key="gan.batch"),
        label_smoothing=c2.number_input("Label smoothing (real = 1 - this)", 0.0, 0.49, d.label_smoothing,
                                        key="gan.smoothing"),
        seed=c3.number_input("Seed", 0, 10**6, d.seed, key="gan.train_seed"),
    )
    batches = c4.number_input("Stop after N batches (0 = all)", 0, 10**7, 0, key="gan.max_batches")
    return gan.GanConfig(**values, max_batches=int(batches) or None)


@st.fragment(run_every=1.0)
def live() -> None:
    job = state.gan_jobs().latest(state.session_id())
    if job is None:
        st.info("No GAN run yet in this session.")
        return
    snap = job.snapshot()
    if snap.running:
        top = st.columns([5, 1])
        per_epoch = snap.steps[-1]["steps_per_epoch"] if snap.steps else 1
        top[0].progress(min(snap.step / (per_epoch * snap.config.epochs), 1.0),
                        text=f"**{snap.name}**: step {snap.step} of {per_epoch * snap.config.epochs}")
        if top[1].button("Stop", key="gan.stop"):
            state.gan_jobs().stop(state.session_id())
    else:
        text = f"**{snap.name}** {snap.status}. {snap.message}"
        if snap.saved:
            text += f" Saved as **{snap.saved}**: pick it under Browse."
        (st.error if snap.status == "failed" else st.success)(text)
    if snap.steps:
        steps = [s["step"] for s in snap.steps]
        left, right = st.columns(2)
        fig = go.Figure([go.Scatter(x=steps, y=[s["g_loss"] for s in snap.steps], name="G loss"),
                         go.Scatter(x=steps, y=[s["d_loss"] for s in snap.steps], name="D loss")])
        fig.update_layout(height=280, title="Losses", xaxis={"title": "step"}, margin={"t": 40, "b": 10})
        left.plotly_chart(fig, key="gan.live.loss")
        fig = go.Figure([go.Scatter(x=steps, y=[s["d_real"] for s in snap.steps], name="D(real)"),
                         go.Scatter(x=steps, y=[s["d_fake"] for s in snap.steps], name="D(G(z))")])
        fig.update_layout(height=280, title="Discriminator outputs (0.5 = cannot tell)", yaxis={"range": [0, 1]},
                          xaxis={"title": "step"}, margin={"t": 40, "b": 10})
        right.plotly_chart(fig, key="gan.live.d")
    if snap.grid is not None:
        st.image(tile(snap.grid, columns=snap.config.grid_per_class), width=420,
                 caption=f"Fixed-noise grid after epoch {len(snap.epochs)}")
    quality_charts(snap.epochs, "gan.live")


def train_tab() -> None:
    config = settings()
    name = st.text_input("Run name", "my-cgan", key="gan.name")
    try:
        config.validate()
    except gan.GanConfigError as exc:
        st.error(str(exc))
        return
    if st.button("Start training", type="primary", key="gan.start"):
        try:
            state.gan_jobs().start(state.session_id(), config, state.device_data().mnist, state.gan_judge(), name)
        except (gan.GanConfigError, CheckpointError, ValueError) as exc:
            st.error(str(exc))
    live()


sidebar()
st.title("Conditional GAN")
st.caption("A generator learns to draw a digit of the class you ask for; a discriminator learns to tell its "
           "drawings from real ones, given the same class. Each improves by beating the other.")
checkpoints = gan.list_gans()
browse_tab, train, metrics_tab = st.tabs(["Browse", "Train", "Metrics"])
with browse_tab:
    if not checkpoints:
        st.info("No GAN checkpoint yet: train one in the Train tab.")
    else:
        by_name = {c.name: c for c in checkpoints}
        chosen = st.selectbox("GAN checkpoint", list(by_name), key="gan.checkpoint",
                              format_func=lambda n: f"{n} ({by_name[n].config.variant}, "
                                                    f"{len(by_name[n].meta.get('epochs', []))} epochs"
                                                    f"{', shipped' if by_name[n].source == 'shipped' else ''})")
        browse(by_name[chosen])
with train:
    train_tab()
with metrics_tab:
    if checkpoints:
        names = {c.name: c for c in checkpoints}
        metrics(names.get(st.session_state.get("gan.checkpoint"), checkpoints[0]))
