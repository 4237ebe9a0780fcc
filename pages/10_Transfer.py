"""Transfer learning: a pretrained backbone, frozen, with a new head, against the same head trained from scratch."""

import streamlit as st

st.set_page_config(page_title="Transfer · MNIST Lab", page_icon="🔁", layout="wide")

import dataclasses  # noqa: E402

from labui import live, resources  # noqa: E402
from labui.data_choice import active_dataset, items  # noqa: E402
from labui.images import map_grid, upscale  # noqa: E402
from labui.sidebar import sidebar  # noqa: E402
from labui.transfer_charts import transfer_curves  # noqa: E402
from labui.widgets import field_widgets  # noqa: E402
from mnist_core.host import settings as host_settings  # noqa: E402
from mnist_core.reporter import DONE  # noqa: E402
from mnist_core.saliency import feature_maps  # noqa: E402
from mnist_core.transfer import (  # noqa: E402
    ARMS,
    BACKBONES,
    Backbone,
    BackboneUnavailable,
    TransferConfig,
    TransferError,
    arm_result,
    load_backbone,
)

BUDGETS = {100: "100", 1000: "1,000", 10_000: "10,000", 60_000: "all 60,000"}


def key(name: str) -> str:
    return f"transfer.{name}"


@st.cache_resource(max_entries=4, show_spinner="Loading the backbone...")
def backbone_for(name: str) -> Backbone:
    return load_backbone(name, allow_download=False)


def pick_backbone() -> Backbone | None:
    name = st.selectbox(
        "Backbone",
        list(BACKBONES),
        key=key("backbone"),
        format_func=lambda n: f"{BACKBONES[n].label}: {BACKBONES[n].source}",
    )
    problem = st.empty()  # one box: a failed download's message replaces the cache's
    try:
        return backbone_for(name)
    except BackboneUnavailable as exc:
        problem.error(str(exc))
    if not host_settings().downloads:
        st.info(
            "Downloads are off in this hosted demo (MNIST_HOSTED=1): a visitor could otherwise start a "
            "download of up to 528 MB onto the server. Choose a backbone that loads, such as the Fashion-MNIST "
            "CNN; the host can add these weights to the torch hub cache."
        )
        return None
    if st.button("Try to download the ImageNet weights (needs internet)", key=key("download")):
        with st.spinner("Downloading (gives up after 15 s without an answer)..."):
            try:
                load_backbone(name, allow_download=True, timeout_s=15)
                backbone_for.clear()
                st.rerun()
            except BackboneUnavailable as exc:
                problem.error(str(exc))
    return None


def settings(backbone: Backbone) -> TransferConfig:
    c1, c2 = st.columns([1, 3])
    labels = c1.selectbox(
        f"Labelled {ITEMS}",
        list(BUDGETS),
        index=1,
        format_func=BUDGETS.get,
        key=key("labels"),
        help=f"The first n of a class-balanced order: 100 means ten of each class. The same {ITEMS} for every arm.",
    )
    arms = c2.multiselect("Arms", list(ARMS), default=["frozen", "scratch"], format_func=ARMS.get, key=key("arms"))
    # The head's settings: labels, help and ranges from TransferConfig's fields, as the CLI's flags.
    values = field_widgets(TransferConfig, "transfer", ("hidden", "steps", "lr", "batch_size", "seed"), columns=5)
    if "unfrozen" in arms and backbone.info.input_size > 28:
        st.caption(
            f"Unfreezing runs the {backbone.info.label} trunk on every training batch: on a CPU that takes "
            "minutes, not seconds."
        )
    return TransferConfig(backbone=backbone.info.name, dataset=DATASET.key, labels=labels, arms=tuple(arms), **values)


def start(config: TransferConfig) -> None:
    """One transfer run for this browser: a second press while one runs is refused, and the page keeps
    showing (and stopping) the running one."""
    labels = f"{config.labels:,} labels"
    live.submit(
        "transfer",
        {**dataclasses.asdict(config), "arms": list(config.arms)},
        name=f"{BACKBONES[config.backbone].label}, {labels}",
    )


def results_of(snap) -> list:
    """The arms' figures: the run's result once it ended, else the latest the arms reported."""
    if snap.result and snap.result.get("results") is not None:
        return [arm_result(r) for r in snap.result["results"]]
    return list(snap.view.results.values())


def run_view(snap) -> None:
    """This browser's latest transfer run: progress and Stop while it runs, how it ended, curves and table."""
    if snap is None:
        st.info("No transfer run yet in this session: choose the settings above and press Train.")
        return
    if snap.running:
        live.progress_row(snap, key("stop"), snap.view.stage, share=snap.view.fraction)
    else:
        live.ended_box(snap, f"**{snap.name}** {snap.status}" + (f": {snap.message}." if snap.message else "."))
    results = results_of(snap)
    if any(r.curve for r in results):
        st.plotly_chart(transfer_curves(results), key=key("curves"))
    if results:
        st.dataframe([row(r) for r in results], hide_index=True, width="stretch", key=key("table"))
        if not snap.running and any(r.stopped and r.test_accuracy is None for r in results):
            st.caption(
                "A stopped arm is not scored on the whole test set"
                + (": its curve above shows its accuracy so far." if any(r.curve for r in results) else ".")
            )
    if snap.status == DONE and results and st.session_state.get(key("logged")) != snap.id:
        st.session_state[key("logged")] = snap.id  # once per run, into this session's table below
        backbone_label = BACKBONES[snap.spec.config["backbone"]].label
        st.session_state.setdefault(key("history"), []).extend({"backbone": backbone_label, **row(r)} for r in results)


def row(result) -> dict:
    return {
        "arm": result.label,
        "labelled digits": result.labels,
        "test accuracy %": None if result.test_accuracy is None else round(100 * result.test_accuracy, 2),
        "final train loss": None if result.train_loss is None else round(result.train_loss, 4),
        "training s": round(result.seconds, 1),
        "feature extraction s": round(result.feature_seconds, 1),
        "trainable params": result.trainable_params,
        "status": result.stopped or "done",
    }


def backbone_maps(backbone: Backbone) -> None:
    mnist = resources.device_data(DATASET.key).mnist
    index = int(st.number_input(f"Test {ITEMS[:-1]}", 0, len(mnist.test_labels) - 1, value=0, key=key("digit")))
    x = backbone.prepare(mnist.test_images[index : index + 1])
    maps = feature_maps(backbone.network, x)
    if not maps:
        st.info("This backbone has no conv layers to show.")
        return
    cols = st.columns([1, 3, 3])
    shown = x[0, 0].cpu().numpy()
    cols[0].image(
        upscale((shown - shown.min()) / max(float(shown.max() - shown.min()), 1e-6), 4),
        caption=f"input ({backbone.info.input_size} px), label {DATASET.class_name(int(mnist.test_labels[index]))}",
    )
    for col, fmap, where in ((cols[1], maps[0], "first"), (cols[2], maps[-1], "last")):
        channels = fmap.maps[:32]
        col.image(
            map_grid(channels, columns=8),
            width="stretch",
            caption=f"{where.capitalize()} conv layer, {fmap.name}: {len(channels)} of {fmap.maps.shape[0]} maps, "
            f"{fmap.maps.shape[1]}x{fmap.maps.shape[2]}",
        )


sidebar()
st.title("Transfer learning")
DATASET = active_dataset()
ITEMS = items(DATASET)  # "digits", or "images"
st.write(
    "Take a network trained on something else, freeze it, and train only a new classifier head on a few "
    f"labelled {ITEMS} of {DATASET.title} (the data set chosen in the sidebar). Its features were learned "
    "elsewhere; do they help when labels are scarce? The baseline trains the Fashion-MNIST CNN's architecture from "
    f"random weights, with the same head, on the same {ITEMS}."
)
resources.active_data()  # its files read, or what is wrong with them
backbone = pick_backbone()
if backbone is not None and DATASET.key == "fashion-mnist" and backbone.info.name.startswith("fashion"):
    st.caption(
        "This backbone was trained on Fashion-MNIST's own training images: here it transfers nothing, it shows "
        "what a head gains from features already fitted to this data."
    )
if backbone is not None:
    config = settings(backbone)
    problem = None
    try:
        config.validate()
    except TransferError as exc:
        problem = str(exc)
        st.error(problem)
    if st.button("Train", type="primary", disabled=problem is not None, key=key("start")):
        start(config)
    st.subheader("This run")
    live.watch("transfer", run_view)
    history = st.session_state.get(key("history"))
    if history:
        st.subheader("All runs in this session")
        st.dataframe(history, hide_index=True, width="stretch", key=key("history_table"))
    st.subheader(f"Inside the {backbone.info.label}")
    backbone_maps(backbone)
