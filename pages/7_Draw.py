"""Draw: draw a digit, see it preprocessed the way MNIST was made, and what every model makes of it.

Draw reads handwritten digits: its canvas, its saved drawings and its synthetic pen strokes are digits, and the
fine-tuning mixes MNIST with them. On a data set whose classes are not the digits 0-9 (Fashion-MNIST, a set of one's
own) it says so and offers to switch back to MNIST, rather than ask a clothes classifier what a drawn 7 is."""

import hashlib

import numpy as np
import plotly.graph_objects as go
import streamlit as st

st.set_page_config(page_title="Draw · MNIST Lab", page_icon="🔢", layout="wide")

from labui import catalog, live  # noqa: E402
from labui.data_choice import active_dataset, reads_digits, set_dataset  # noqa: E402
from labui.images import heat_overlay, map_grid, padded_square, unit_float_to_uint8, upscale  # noqa: E402
from labui.sidebar import sidebar  # noqa: E402
from mnist_core.checkpoints import CheckpointError  # noqa: E402
from mnist_core.data import PIXEL_MEAN, PIXEL_STD, tile  # noqa: E402
from mnist_core.drawing import (  # noqa: E402
    UNSURE_ENTROPY_BITS,
    UNSURE_TOP_PROBABILITY,
    Drawings,
    predict,
    preprocess,
    read_with_each,
    to_input,
)
from mnist_core.drawing_store import (  # noqa: E402
    DrawingSetError,
    delete_drawing,
    fine_tune_name,
    load_drawings,
    save_drawing,
)
from mnist_core.owners import QuotaExceeded  # noqa: E402
from mnist_core.presets import drawings_fine_tune  # noqa: E402
from mnist_core.saliency import explain, feature_maps  # noqa: E402
from mnist_core.strokes import style_test_split  # noqa: E402
from mnist_core.train import ConfigError  # noqa: E402

CANVAS_SIZE = 280
SYNTHETIC_PER_STYLE = 10  # the style-rich test split's first 10 of each style (benchmarks/drawn_digits.py reads 40)


@st.cache_resource(show_spinner="Rendering the synthetic drawn digits...")
def synthetic_inputs() -> Drawings:
    split = style_test_split(SYNTHETIC_PER_STYLE)
    return Drawings.screened(split.images, split.labels, split.styles)


def model_for(info):
    try:
        return catalog.load_checkpoint(info)[0]
    except CheckpointError as exc:
        st.error(f"Checkpoint {info.name} cannot be loaded: {exc}")
        return None


def loaded(infos) -> list:
    """(name, model) of each checkpoint that loads; each one that does not is an error on the page."""
    return [(info.name, model) for info in infos if (model := model_for(info)) is not None]


def probability_chart(probs: np.ndarray, label: int, unsure: bool = False) -> go.Figure:
    # An unsure reading has no answer to highlight: its two guesses are shown alike, in grey-orange.
    top = {label, int(np.argsort(probs)[-2])} if unsure else {label}
    colours = [("#f2a65a" if unsure else "#e45756") if d in top else "#4c78a8" for d in range(10)]
    fig = go.Figure(
        go.Bar(x=list(range(10)), y=probs, marker_color=colours, hovertemplate="digit %{x}: %{y:.1%}<extra></extra>")
    )
    fig.update_layout(
        height=260,
        margin={"l": 0, "r": 0, "t": 30, "b": 0},
        title="Probabilities",
        xaxis={"dtick": 1, "title": "digit"},
        yaxis={"range": [0, 1], "tickformat": ".0%"},
    )
    return fig


def canvas():
    from streamlit_drawable_canvas import st_canvas  # importing it outside a running app raises

    width = st.slider(
        "Brush width",
        8,
        40,
        20,
        key="draw.brush",
        help="MNIST strokes are about a tenth of the digit's height; 15-25 px suits this canvas.",
    )
    result = st_canvas(
        stroke_width=width,
        stroke_color="#FFFFFF",
        background_color="#000000",
        height=CANVAS_SIZE,
        width=CANVAS_SIZE,
        drawing_mode="freedraw",
        update_streamlit=True,
        key=f"draw.canvas.{st.session_state.get('draw.clears', 0)}",
        return_image_data=True,
    )
    if st.button("Clear", key="draw.clear"):
        st.session_state["draw.clears"] = st.session_state.get("draw.clears", 0) + 1
        st.rerun()
    st.caption(
        "White on black, like MNIST. Start strokes below the canvas's top edge (its toolbar sits "
        "there); the toolbar's arrows undo and redo a stroke."
    )
    return None if result is None else result.image_data


def preprocessing_steps(pre) -> None:
    cols = st.columns(len(pre.steps))
    for col, (caption, image) in zip(cols, pre.steps):
        col.image(unit_float_to_uint8(padded_square(image)), caption=caption, width=100)


def explanation(model, pixels: np.ndarray, label: int) -> None:
    x = to_input(pixels)
    method, heat = explain(model, x, label)
    left, right = st.columns([1, 2])
    left.image(heat_overlay(pixels, heat), caption=f"Why {label}: {method}", width=196)
    maps = feature_maps(model, x)
    if maps:
        first = maps[0]
        right.image(
            upscale(map_grid(first.maps), 3),
            caption=f"First-layer feature maps: {first.name}, "
            f"{first.maps.shape[0]} channels (bright = strong response)",
        )
    else:
        right.caption(
            "A fully connected net has no feature maps: its first layer sees all 784 pixels at once. "
            "The Inspect page shows its first-layer weights as 28x28 templates."
        )


def comparison(pixels: np.ndarray) -> None:
    infos = catalog.usable_checkpoints()
    names = [i.name for i in infos]
    default = [i.name for i in infos if i.source == "shipped"] or names[:5]
    chosen = st.multiselect("Checkpoints to compare", names, default=default, key="draw.compare")
    meta = {i.name: i.meta for i in infos}
    rows = []
    for read in read_with_each(loaded(i for i in infos if i.name in chosen), pixels):
        p = read.prediction()
        rows.append(
            {
                "checkpoint": read.name,
                "architecture": meta[read.name]["arch"],
                "test accuracy %": round(100 * (meta[read.name].get("test_accuracy") or 0), 2),
                "reading": f"not sure: {p.label} or {p.runner_up}" if p.unsure else str(p.label),
                "confidence %": round(100 * p.confidence, 1),
            }
        )
    if rows:
        st.dataframe(rows, hide_index=True, width="stretch")


def store(pixels: np.ndarray, label: int) -> None:
    """Save the drawing with its label, once: a second click on the same drawing and label says where it is."""
    key = (hashlib.sha256(np.ascontiguousarray(pixels, np.float32).tobytes()).hexdigest(), int(label))
    saved = st.session_state.setdefault("draw.saved", {})
    if key in saved:
        st.info(f"Already saved as {saved[key]}.")
        return
    try:
        saved[key] = save_drawing(pixels, int(label))
        st.success(f"Saved as {saved[key]}, labelled {int(label)}.")
    except (DrawingSetError, QuotaExceeded, OSError) as exc:  # QuotaExceeded: hosted, the visitor's folder is full
        st.error(f"Could not save the drawing: {exc}")


def delete_saved(names: list[str], what: str) -> None:
    deleted = []
    try:
        for name in names:
            delete_drawing(name)
            deleted.append(name)
        result = ("success", f"Deleted {what}.")
    except (DrawingSetError, OSError) as exc:
        result = ("error", f"Could not delete {what}: {exc}")
    # A drawing deleted is no longer "already saved": saving it again must work.
    saved = st.session_state.get("draw.saved", {})
    st.session_state["draw.saved"] = {k: v for k, v in saved.items() if v not in deleted}
    st.session_state["draw.delete_result"] = result  # shown after the rerun, above the updated list


def delete_buttons(drawn) -> None:
    """In the page body, not in on_click callbacks: a callback runs before sidebar() has made the visitor's own
    folder the current one (hosted mode), so it would look for the drawings in the shared folder."""
    left, right = st.columns(2)
    if left.button(
        "Delete the latest drawing", key="draw.delete_latest", help="Undo a save, for example one with the wrong label."
    ):
        st.session_state.pop("draw.confirm_delete_all", None)
        delete_saved([drawn.files[-1]], f"your latest drawing (labelled {int(drawn.labels[-1])})")
        st.rerun()
    if right.button(f"Delete all {len(drawn)} drawings", key="draw.delete_all"):
        st.session_state["draw.confirm_delete_all"] = True  # cannot be undone: asked once more below
    if st.session_state.get("draw.confirm_delete_all"):
        right.warning(f"Delete all {len(drawn)} of your saved drawings? This cannot be undone.")
        yes, no = right.columns(2)
        if yes.button("Delete them all", key="draw.delete_all_yes"):
            st.session_state.pop("draw.confirm_delete_all")
            delete_saved(list(drawn.files), f"all {len(drawn)} of your drawings")
            st.rerun()
        if no.button("Keep them", key="draw.delete_all_no"):
            st.session_state.pop("draw.confirm_delete_all")
            st.rerun()


def confirm_guess(pixels: np.ndarray, guess) -> None:
    """An unsure reading offers its two best guesses; one click on the right one saves the drawing with it."""
    first, second = guess.label, guess.runner_up
    st.write("Which is it? One click saves your drawing with that label, for evaluating and fine-tuning.")
    cols = st.columns(2)
    clicked = [
        digit
        for col, digit in zip(cols, (first, second))
        if col.button(f"It is a {digit} ({guess.probabilities[digit]:.0%})", key=f"draw.confirm.{digit}")
    ]
    if clicked:
        store(pixels, clicked[0])


def save_example(pixels: np.ndarray, guess: int) -> None:
    cols = st.columns([1, 1, 3])
    label = cols[0].selectbox(
        "It is a",
        list(range(10)),
        index=guess,
        key="draw.label",
        help="The digit you meant; it is stored with the drawing.",
    )
    if cols[1].button("Save as example", key="draw.save"):
        store(pixels, int(label))


def fine_tune(active) -> None:
    meta = active.meta
    config = drawings_fine_tune(meta["arch"], meta.get("model_config") or {}, active.name)  # the core's recipe
    try:
        name = fine_tune_name(active.name)  # unique per click: visitors never replace each other's run
    except (ConfigError, CheckpointError) as exc:
        st.error(str(exc))
        return
    # The page reruns at once, so the sidebar shows the job's progress and Stop while it trains.
    live.submit("train", config.to_dict(), name, tag="draw.finetune")


def drawing_sets(active) -> None:
    drawn = load_drawings()
    for problem in drawn.problems:
        st.warning(problem)
    synthetic = synthetic_inputs()
    st.write(
        f"**Your drawings:** {len(drawn)} saved"
        + (
            " (" + ", ".join(f"{d}: {int((drawn.labels == d).sum())}" for d in range(10)) + ")"
            if len(drawn)
            else ". Draw a digit above, pick its label and press *Save as example*."
        )
    )
    if result := st.session_state.pop("draw.delete_result", None):
        kind, text = result
        (st.error if kind == "error" else st.success)(text)
    if len(drawn):
        st.image(
            tile(unit_float_to_uint8(drawn.pixels[-40:]), columns=20), caption="The latest 40, as the models see them"
        )
        delete_buttons(drawn)
    st.write(
        f"**Synthetic drawn digits:** {len(synthetic)} pen strokes in {len(set(synthetic.groups))} styles "
        "(a flagged 1, a crossed 7, an open 4, a 9 with a straight stem...), rendered like a canvas brush "
        "centred, small in a corner or touching the edges, thin to thick, then preprocessed like a drawing. "
        "No model trains on these."
    )
    if st.button("Evaluate every checkpoint on both sets", key="draw.evaluate"):
        infos = catalog.usable_checkpoints()  # those that read digits
        meta = {i.name: i.meta for i in infos}
        models = loaded(infos)
        yours = Drawings(drawn.pixels, drawn.labels) if len(drawn) else None
        on_yours = {r.name: r for r in read_with_each(models, yours.pixels)} if yours is not None else {}
        rows = []
        for read in read_with_each(models, synthetic.pixels):
            row = {
                "checkpoint": read.name,
                "architecture": meta[read.name]["arch"],
                "MNIST test %": None
                if (tested := meta[read.name].get("test_accuracy")) is None
                else round(100 * tested, 2),
                "synthetic drawings %": round(100 * read.overall(synthetic).accuracy, 1),
            }
            if yours is not None:
                row["your drawings %"] = round(100 * on_yours[read.name].overall(yours).accuracy, 1)
            # Last: a long text that would push any column after it off the screen.
            row["synthetic misreadings by style"] = ", ".join(
                f"{g.name} {g.accuracy:.0%} ({g.top_confusions(1)})" for g in read.by_group(synthetic) if g.accuracy < 1
            )
            rows.append(row)
        st.dataframe(rows, hide_index=True, width="stretch")
    if active is not None and st.button(
        f"Fine-tune {active.name} on your drawings",
        key="draw.finetune",
        disabled=not len(drawn),
        help="Starts from its weights; needs at least one saved drawing.",
    ):
        fine_tune(active)
    if (job := live.just_submitted("draw.finetune")) is not None:
        st.success(
            f"Fine-tuning on MNIST plus your drawings (100 batches, a quarter of each batch from your drawings): "
            f"its progress is in the sidebar and on the Train page; it saves **{job.name}**."
        )


def digits_only(dataset) -> None:
    """On a data set of other classes: what Draw is for, and one click back to MNIST."""
    st.info(
        f"Draw reads handwritten digits, and the active data set is **{dataset.title}** "
        f"({', '.join(dataset.class_names[:3])}{'...' if len(dataset.class_names) > 3 else ''}): its classifiers were never shown a digit. Switch back to MNIST "
        "to draw; the Inspect page shows how a checkpoint of this data set reads its own test images."
    )
    st.button("Switch to MNIST", key="draw.to_mnist", type="primary", on_click=set_dataset, args=("mnist",))


sidebar()
st.title("Draw a digit")
if not reads_digits(dataset := active_dataset()):
    digits_only(dataset)
    st.stop()
active = catalog.active_checkpoint()
left, right = st.columns([2, 3])
with left:
    image = canvas()
pre = preprocess(image) if image is not None else None
model = model_for(active) if active is not None else None
guess = predict(model, pre.pixels) if model is not None and pre is not None and not pre.empty else None
with right:
    if pre is None or pre.refusal == "empty":
        st.info("Draw a digit on the canvas: the prediction updates after every stroke.")
    elif pre.empty:  # refused before any model: a model would still answer, confidently, about a dot or a blob
        st.warning(pre.message)
        preprocessing_steps(pre)
    elif active is None:
        st.warning("No checkpoint to predict with: train one on the Train page.")
    else:
        st.caption("Preprocessing, as MNIST was made")
        preprocessing_steps(pre)
        st.caption(
            f"Last, the 28x28 pixels (0-1) are standardized with MNIST's training mean {PIXEL_MEAN} and "
            f"std {PIXEL_STD}, exactly as every model saw its training digits."
        )
        if guess is not None and guess.unsure:  # no answer, no big number: two guesses and why
            st.warning(
                f"**{guess.verdict}.** {active.name} gives no answer: its top probability is "
                f"{guess.confidence:.0%} (entropy {guess.entropy_bits:.2f} bits), and it answers only above "
                f"{UNSURE_TOP_PROBABILITY:.0%} and below {UNSURE_ENTROPY_BITS} bits. A scribble, a shape "
                f"that is no digit, or a digit drawn unlike MNIST's."
            )
        elif guess is not None:
            st.success(f"**{active.name}** reads **{guess.label}** ({guess.confidence:.1%}).")
        if guess is not None and guess.unsure:
            confirm_guess(pre.pixels, guess)
        if guess is not None:
            st.plotly_chart(probability_chart(guess.probabilities, guess.label, guess.unsure), key="draw.probs")
if guess is not None:
    st.subheader(f"Why it leans towards {guess.label}" if guess.unsure else "Why")
    explanation(model, pre.pixels, guess.label)
    st.subheader("Every model's reading")
    comparison(pre.pixels)
    save_example(pre.pixels, guess.label)
st.subheader("Drawing sets")
drawing_sets(active)
