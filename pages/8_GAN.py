"""GAN: a conditional GAN's samples by class and by epoch, training it live, and how good it is, on the active data
set (its GANs only, its classes by name)."""

import dataclasses

import numpy as np
import pandas  # noqa: F401  imported whole before any chart: plotly peeks at sys.modules['pandas'], and a

#   half-imported pandas (another thread importing it on a busy server) broke the live charts' fragment
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
import torch

st.set_page_config(page_title="GAN · MNIST Lab", page_icon="🔢", layout="wide")

from labui import live, resources  # noqa: E402
from labui.data_choice import active_dataset, items  # noqa: E402
from labui.sidebar import sidebar  # noqa: E402
from labui.widgets import field_widgets, seed_state  # noqa: E402
from mnist_core import gan  # noqa: E402
from mnist_core.checkpoints import CheckpointError  # noqa: E402
from mnist_core.data import tile  # noqa: E402
from mnist_core.reporter import FAILED  # noqa: E402

METRICS_HELP = {
    "conditional accuracy": "The share of generated digits that the best shipped classifier reads as the class "
    "that was asked for: does the label control the digit?",
    "diversity": "Per class, how spread out the samples are in the classifier's feature space, relative to real "
    "digits of that class: below 0.5 means the generator draws nearly the same digit every time "
    "(mode collapse).",
    "Frechet distance": "How far the generated digits' feature distribution is from the real test set's (the "
    "FID formula, in the classifier's feature space): 0 is indistinguishable; lower is better.",
}


@st.cache_resource(show_spinner=False, max_entries=8)
def cached_gan(path: str, source: str, name: str, modified: float):
    """Keyed by the file too: two visitors' GAN runs may share a name (hosted mode)."""
    checkpoint = next(c for c in gan.list_gans() if c.name == name and c.source == source)
    return gan.load_gan(checkpoint)


SAMPLES_WIDTH = 640  # px at most; narrower screens shrink it (the container never exceeds the page)


def epoch_frames(checkpoint, grids) -> None:
    """The fixed-noise grid after each epoch: an animation when there are several, else the one grid."""
    per_class = checkpoint.config.grid_per_class
    if grids is None or not len(grids):
        st.info(
            "This run stopped before its first grid of samples: the epoch-by-epoch view starts after the "
            "first epoch (or the first stop after at least one batch)."
        )
        return
    st.subheader("How it learned, epoch by epoch")
    if len(grids) == 1:
        steps = checkpoint.epochs[-1].get("steps") if checkpoint.epochs else None
        with st.container(width=SAMPLES_WIDTH):
            st.image(
                tile(grids[0], columns=per_class),
                width="stretch",
                caption="The fixed noise after its only epoch"
                + (f" (step {steps})" if steps else "")
                + ": train longer to see it change.",
            )
        return
    st.caption("The same fixed noise for every epoch, so each frame differs only by what the generator learned.")
    frames = np.stack([tile(g, columns=per_class) for g in grids])
    fig = px.imshow(frames, animation_frame=0, binary_string=True, labels={"animation_frame": "epoch"})
    fig.update_layout(
        height=520, margin={"l": 0, "r": 0, "t": 10, "b": 0}, xaxis={"visible": False}, yaxis={"visible": False}
    )
    for i, step in enumerate(fig.layout.sliders[0].steps if fig.layout.sliders else ()):
        step.label = str(i + 1)
    st.plotly_chart(fig, key="gan.epochs")


def browse(checkpoint) -> None:
    try:
        generator, grids = cached_gan(
            str(checkpoint.weights_path), checkpoint.source, checkpoint.name, checkpoint.weights_path.stat().st_mtime
        )
    except (CheckpointError, OSError, StopIteration) as exc:
        st.error(f"GAN {checkpoint.name!r} cannot be shown: {exc or 'it was deleted or renamed'}")
        return
    if not checkpoint.meta.get("steps") and not checkpoint.epochs:
        st.warning("This run stopped before its first batch: its generator is untrained, so it draws noise.")
    c1, c2, c3 = st.columns(3)
    digit = c1.selectbox(
        "Class", ["all", *range(10)], key="gan.class", format_func=lambda c: c if c == "all" else NAMES[c]
    )
    count = c2.slider(
        "Samples per class" if digit == "all" else "Samples",
        1,
        16 if digit == "all" else 64,
        8 if digit == "all" else 32,
        key="gan.count",
    )
    seed = c3.number_input("Noise seed", 0, 10**6, 0, key="gan.seed", help="Change it for new samples.")
    labels = torch.arange(10).repeat_interleave(count) if digit == "all" else torch.full((count,), int(digit))
    images = gan.tanh_range_to_uint8(gan.generate(generator, labels, seed=int(seed)))
    caption = (
        f"One row per class, {count} samples each: {', '.join(NAMES)}"
        if digit == "all"
        else f"{count} samples of class {NAMES[digit]}"
    )
    columns = count if digit == "all" else 16
    with st.container(width=min(SAMPLES_WIDTH, 60 * min(columns, count) + 40)):
        st.image(tile(images, columns=columns), caption=caption, width="stretch")
    epoch_frames(checkpoint, grids)
    st.subheader("Walking through the noise")
    i1, i2, i3 = st.columns(3)
    walk_digit = i1.selectbox("Class", range(10), index=3, key="gan.walk_class", format_func=NAMES.__getitem__)
    seed_a = i2.number_input("From noise seed", 0, 10**6, 1, key="gan.seed_a")
    seed_b = i3.number_input("To noise seed", 0, 10**6, 2, key="gan.seed_b")
    walk = gan.tanh_range_to_uint8(gan.interpolate(generator, int(walk_digit), int(seed_a), int(seed_b), steps=12))
    st.image(
        tile(walk, columns=12),
        width="stretch",
        caption="Straight line between two noise vectors, same class: a smooth change of style means the "
        "generator learned a continuous space, not a lookup table.",
    )
    st.subheader("Real vs generated")
    mnist = resources.device_data(DATASET.key).mnist
    cls = int(walk_digit)
    real = mnist.test_images[(mnist.test_labels == cls).nonzero().squeeze(1)[:16]].numpy()
    fake = gan.tanh_range_to_uint8(gan.generate(generator, torch.full((16,), cls), seed=int(seed) + 99))
    with st.container(width=2 * SAMPLES_WIDTH):
        left, right = st.columns(2)
        left.image(tile(real, columns=8), caption=f"Real test {ITEMS} of class {NAMES[cls]}", width="stretch")
        right.image(tile(fake, columns=8), caption=f"Generated {ITEMS} of class {NAMES[cls]}", width="stretch")


def manage(checkpoint) -> None:
    """Reproduce command, rename and delete, for the visitor's own runs (shipped GANs stay as they are)."""
    command = checkpoint.meta.get("command")
    if command:
        st.caption(f"Reproduce: `{command}`")
    if checkpoint.source == "shipped":
        st.caption("Shipped GANs cannot be renamed or deleted.")
        return
    with st.expander("Rename or delete this run"):
        c1, c2, c3 = st.columns([3, 1, 1], vertical_alignment="bottom")
        new_name = c1.text_input("New name", key="gan.new_name", placeholder="new name for this run")
        try:
            if c2.button("Rename", key="gan.rename", disabled=not new_name):
                st.session_state["gan.select"] = gan.rename_gan(checkpoint.name, new_name)
                st.rerun()
            if c3.button("Delete", key="gan.delete"):
                gan.delete_gan(checkpoint.name)
                st.session_state.pop("gan.checkpoint", None)
                st.rerun()
        except CheckpointError as exc:
            st.error(str(exc))


def quality_charts(epochs: list[dict], key: str) -> None:
    scored = [e for e in epochs if gan.has_quality(e)]
    if not scored:
        return
    x = [e["epoch"] for e in scored]
    c1, c2, c3 = st.columns(3)
    fig = go.Figure(go.Scatter(x=x, y=[e["conditional_accuracy"] for e in scored], mode="lines+markers"))
    fig.update_layout(
        height=260,
        title="Conditional accuracy",
        yaxis={"range": [0, 1], "tickformat": ".0%"},
        xaxis={"title": "epoch", "dtick": 1},
        margin={"t": 40, "b": 10},
    )
    c1.plotly_chart(fig, key=f"{key}.acc")
    fig = go.Figure(
        [go.Scatter(x=x, y=[e["diversity"][c] for e in scored], name=NAMES[c], mode="lines") for c in range(10)]
    )
    fig.add_hline(y=gan.COLLAPSE_BELOW, line_dash="dot", annotation_text=f"collapse below {gan.COLLAPSE_BELOW}")
    fig.update_layout(
        height=260,
        title="Diversity per class (real = 1)",
        xaxis={"title": "epoch", "dtick": 1},
        margin={"t": 40, "b": 10},
    )
    c2.plotly_chart(fig, key=f"{key}.div")
    fig = go.Figure(go.Scatter(x=x, y=[e["frechet"] for e in scored], mode="lines+markers"))
    fig.update_layout(
        height=260,
        title="Frechet distance (lower is better)",
        xaxis={"title": "epoch", "dtick": 1},
        margin={"t": 40, "b": 10},
    )
    c3.plotly_chart(fig, key=f"{key}.fd")


def metrics(checkpoint) -> None:
    epochs = checkpoint.epochs
    last = next((e for e in reversed(epochs) if gan.has_quality(e)), None)
    if last is None:
        st.info(
            f"**{checkpoint.name}** has no quality figures: it was trained without the judge, or stopped "
            "before the end of its first epoch (a stop skips the scoring). Train it for a full epoch to see them."
        )
        return
    c1, c2, c3 = st.columns(3)
    c1.metric("Conditional accuracy", f"{last['conditional_accuracy']:.1%}", help=METRICS_HELP["conditional accuracy"])
    c2.metric("Lowest class diversity", f"{min(last['diversity']):.2f}", help=METRICS_HELP["diversity"])
    c3.metric("Frechet distance", f"{last['frechet']:.1f}", help=METRICS_HELP["Frechet distance"])
    reference = checkpoint.meta.get("real_frechet")
    if reference is not None:
        st.caption(f"For scale: real training {ITEMS} against the real test set score {reference:.1f}.")
    for name, text in METRICS_HELP.items():
        st.markdown(f"- **{name}**: {text}")
    collapsed = [c for c, d in enumerate(last["diversity"]) if d < gan.COLLAPSE_BELOW]
    colours = ["#e45756" if d < gan.COLLAPSE_BELOW else "#4c78a8" for d in last["diversity"]]
    fig = go.Figure(go.Bar(x=NAMES, y=last["diversity"], marker_color=colours))
    fig.add_hline(y=gan.COLLAPSE_BELOW, line_dash="dot")
    fig.update_layout(
        height=260,
        title="Diversity per class at the last epoch (red = collapsed)",
        xaxis={"type": "category"},
        margin={"t": 40, "b": 10},
    )
    st.plotly_chart(fig, key="gan.metrics.last_div")
    if collapsed:
        st.warning(
            f"Mode collapse in class(es) {', '.join(NAMES[c] for c in collapsed)}: the generator draws nearly "
            f"the same {ITEMS[:-1]} there."
        )
    quality_charts(epochs, "gan.metrics")


# The training settings the page shows; their labels, help and ranges are GanConfig's fields (as the CLI's).
# Keys of their own ("gan.train.*"): "gan.seed" is the sample browser's noise seed.
PREFIX = "gan.train"
SETTINGS = (
    "variant",
    "latent",
    "width",
    "epochs",
    "g_lr",
    "d_lr",
    "beta1",
    "beta2",
    "batch_size",
    "label_smoothing",
    "seed",
    "max_batches",
)


def use_collapse_recipe() -> None:
    seed_state(PREFIX, gan.GanConfig, gan.COLLAPSE_RECIPE, overwrite=True, names=tuple(gan.COLLAPSE_RECIPE))


def settings() -> gan.GanConfig:
    st.button(
        "Fill in a recipe that collapses",
        key="gan.collapse_recipe",
        on_click=use_collapse_recipe,
        help="A one-number noise vector, a generator learning rate five times the discriminator's and no "
        "label smoothing: the generator soon draws one image per class. Train it (2 epochs), then see "
        "the diversity warning under Metrics; or browse the shipped cgan-collapsed.",
    )
    st.caption(f"Learns to draw **{DATASET.title}** ({', '.join(NAMES)}), the data set chosen in the sidebar.")
    return gan.GanConfig(dataset=DATASET.key, **field_widgets(gan.GanConfig, PREFIX, SETTINGS, columns=4))


def run_view(snap) -> None:
    """This browser's latest GAN run: progress and Stop while it runs, how it ended, its live figures."""
    if snap is None:
        st.info("No GAN run yet in this session.")
        return
    view = snap.view
    if snap.running:
        live.progress_row(snap, "gan.stop", f"{view.stage} · step {view.step} of {view.total_steps}")
    else:
        saved = (snap.result or {}).get("saved")
        text = f"**{snap.name}** {snap.status}" + (f": {live.sentence(snap.message)}" if snap.message else ".")
        if saved:
            text += f" Saved as **{saved}**: it is picked under Browse."
        elif snap.status != FAILED:
            text += " Nothing was saved (no batch was trained)."
        live.ended_box(snap, text)
        if st.session_state.get("gan.ended") != snap.id:  # once per run: the whole page, so Browse lists it
            st.session_state["gan.ended"] = snap.id
            st.session_state["gan.renew_name"] = True
            if saved:
                st.session_state["gan.select"] = saved
            st.rerun()
    if view.steps:
        steps = [s["step"] for s in view.steps]
        left, right = st.columns(2)
        fig = go.Figure(
            [
                go.Scatter(x=steps, y=[s["g_loss"] for s in view.steps], name="G loss"),
                go.Scatter(x=steps, y=[s["d_loss"] for s in view.steps], name="D loss"),
            ]
        )
        fig.update_layout(height=280, title="Losses", xaxis={"title": "step"}, margin={"t": 40, "b": 10})
        left.plotly_chart(fig, key="gan.live.loss")
        fig = go.Figure(
            [
                go.Scatter(x=steps, y=[s["d_real"] for s in view.steps], name="D(real)"),
                go.Scatter(x=steps, y=[s["d_fake"] for s in view.steps], name="D(G(z))"),
            ]
        )
        fig.update_layout(
            height=280,
            title="Discriminator outputs (0.5 = cannot tell)",
            yaxis={"range": [0, 1]},
            xaxis={"title": "step"},
            margin={"t": 40, "b": 10},
        )
        right.plotly_chart(fig, key="gan.live.d")
    if view.grid is not None:
        with st.container(width=420):
            st.image(
                tile(view.grid, columns=view.config.grid_per_class),
                width="stretch",
                caption=f"Fixed-noise grid after epoch {len(view.epochs)}",
            )
    quality_charts(view.epochs, "gan.live")


def train_tab() -> None:
    config = settings()
    if "gan.name" not in st.session_state or st.session_state.pop("gan.renew_name", False):
        st.session_state["gan.name"] = gan.default_run_name()  # a fresh name per visitor and per run
    name = st.text_input("Run name", key="gan.name")
    try:
        config.validate()
        cleaned = gan.validate_gan_name(name)
    except (gan.GanConfigError, CheckpointError) as exc:
        st.error(str(exc))
        return
    replace = False
    if gan.gan_exists(cleaned):
        replace = st.checkbox(
            f"Replace my existing run **{cleaned}** (its weights and figures are lost)", key="gan.overwrite"
        )
    if st.button("Start training", type="primary", key="gan.start", disabled=gan.gan_exists(cleaned) and not replace):
        # The judge (the best shipped classifier) loads inside the job, beside the first batches.
        live.submit("gan", dataclasses.asdict(config), cleaned, overwrite=replace)
    live.watch("gan", run_view)


sidebar()
st.title("Conditional GAN")
DATASET = active_dataset()
ITEMS = items(DATASET)  # "digits", or "images"
# A GAN has ten classes (GanConfig checks it); a set of one's own with fewer is refused when training starts.
NAMES = (list(DATASET.class_names) + [str(i) for i in range(len(DATASET.class_names), 10)])[:10]
st.caption(
    f"A generator learns to draw {'a digit' if ITEMS == 'digits' else 'an image'} of the class you ask for; a "
    "discriminator learns to tell its drawings from real ones, given the same class. Each improves by beating "
    "the other."
)
checkpoints = [c for c in gan.list_gans() if c.config.dataset == DATASET.key]  # the GANs of this data set
by_name = {c.name: c for c in checkpoints}
chosen = None
# Only the open tab runs (on_change="rerun"): Browse's samples and Metrics' charts cost nothing while training.
browse_tab, train, metrics_tab = st.tabs(["Browse", "Train", "Metrics"], key="gan.tab", on_change="rerun")
if checkpoints:
    # The pick lives outside the widget too: a widget's state is dropped on a run that does not draw it (another tab).
    picked, wanted = st.session_state.get("gan.picked"), st.session_state.pop("gan.select", None)
    if wanted in by_name or st.session_state.get("gan.checkpoint") not in by_name:
        picked = wanted if wanted in by_name else picked
        if picked not in by_name:  # first visit, or the run was deleted
            picked = gan.default_gan(checkpoints).name
        st.session_state["gan.checkpoint"] = picked
    st.session_state["gan.picked"] = st.session_state["gan.checkpoint"]
    chosen = by_name[st.session_state["gan.checkpoint"]]
elif browse_tab.open:
    browse_tab.info(f"No GAN trained on {DATASET.title} yet: train one in the Train tab.")
if browse_tab.open and checkpoints:
    with browse_tab:

        def label(n: str) -> str:
            c = by_name[n]
            epochs = f"{len(c.epochs)} epoch{'' if len(c.epochs) == 1 else 's'}"
            return f"{n} ({c.config.variant}, {epochs}{', shipped' if c.source == 'shipped' else ''})"

        chosen = by_name[st.selectbox("GAN checkpoint", list(by_name), key="gan.checkpoint", format_func=label)]
        st.session_state["gan.picked"] = chosen.name
        manage(chosen)
        browse(chosen)
if train.open:
    with train:
        train_tab()
if metrics_tab.open and chosen is not None:
    with metrics_tab:
        st.caption(f"Quality of **{chosen.name}**, the GAN picked under Browse.")
        metrics(chosen)
