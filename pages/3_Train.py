"""Train: choose an architecture and settings, train on the active data set in the background, watch live curves,
manage runs."""

import dataclasses

import streamlit as st

st.set_page_config(page_title="Train · MNIST Lab", page_icon="🏋️", layout="wide")

from labui import catalog, live, resources, visitor  # noqa: E402
from labui.charts import training_curves  # noqa: E402
from labui.data_choice import active_dataset, set_dataset  # noqa: E402
from labui.sidebar import sidebar  # noqa: E402
from labui.widgets import config_widgets, field_key, field_widgets, seed_state  # noqa: E402
from mnist_core import checkpoints as ckpt  # noqa: E402
from mnist_core.kinds import saved_run_exists  # noqa: E402
from mnist_core.models import REGISTRY, ModelError, build_model, describe, layer_labels  # noqa: E402
from mnist_core.presets import PRESETS, preset  # noqa: E402
from mnist_core.train import DEFAULT_LR, ConfigError, TrainConfig, check_fits_in_memory  # noqa: E402

# The training settings the page shows, in TrainConfig's order; their labels, help and ranges are the fields'.
SETTINGS = [f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("ui")]
PREFIX = "train"


def key(name: str) -> str:
    return field_key(PREFIX, name)


def model_prefix(arch: str) -> str:
    return f"model.{arch}"


def load_preset() -> None:
    name = st.session_state[key("preset")]
    if name not in PRESETS:
        return
    config = preset(name)
    if config.dataset != active_dataset().key:  # a preset is the whole recipe, its data set included
        set_dataset(config.dataset)
    st.session_state[key("arch")] = config.arch
    # Every setting, not only those the preset names: a preset is the whole recipe.
    seed_state(PREFIX, TrainConfig, config.to_dict(), overwrite=True, names=SETTINGS)
    seed_state(model_prefix(config.arch), REGISTRY[config.arch].config_cls, config.model, overwrite=True)


def optimizer_changed() -> None:
    st.session_state[key("lr")] = DEFAULT_LR[st.session_state[key("optimizer")]]


def settings_widgets() -> tuple[TrainConfig, list[str]]:
    st.session_state.setdefault(key("arch"), TrainConfig().arch)
    errors: list[str] = []
    st.selectbox(
        "Start from a preset",
        ["(none)", *PRESETS],
        key=key("preset"),
        on_change=visitor.as_visitor(load_preset),
        format_func=lambda n: n if n not in PRESETS else f"{n}: {PRESETS[n][0]}",
        help="Fills in every setting below with a classic recipe; change anything afterwards.",
    )
    arch = st.selectbox(
        "Architecture", list(REGISTRY), key=key("arch"), format_func=lambda a: f"{a}: {REGISTRY[a].summary}"
    )
    left, right = st.columns(2)
    with left:
        st.markdown(f"**{arch} settings**")
        model_config, model_errors = config_widgets(REGISTRY[arch].config_cls, model_prefix(arch))
        errors += model_errors
    with right:
        st.markdown("**Training settings**")
        st.caption("Changing the optimizer resets the learning rate to that optimizer's usual default.")
        values = field_widgets(TrainConfig, PREFIX, SETTINGS, columns=2, on_change={"optimizer": optimizer_changed})
        dataset = active_dataset()
        if values["batch_size"] > dataset.train_size:  # the box keeps its value for the larger sets
            values["batch_size"] = dataset.train_size
            st.caption(
                f"Batches of {dataset.train_size:,} here: {dataset.title} has {dataset.train_size:,} training images."
            )
    config = TrainConfig(arch=arch, dataset=dataset.key, model=model_config, **values)
    with st.expander("These settings as JSON"):
        st.json(config.to_dict())  # what Start submits: copy it into a script or compare it with a run's
    return config, errors


def model_card(config: TrainConfig) -> None:
    try:
        model = build_model(config.arch, config.model)
        card = describe(model)
    except (ModelError, RuntimeError) as exc:
        st.error(f"This architecture cannot be built with these settings: {exc}")
        return
    cols = st.columns(4)
    cols[0].metric("Parameters", f"{card.params:,}")
    cols[1].metric("Effective parameters", f"{card.effective_params:,}", help="Non-zero weights (sparse nets).")
    cols[2].metric("Multiply-adds per image", f"{card.macs:,}")
    cols[3].metric("Receptive field", f"{card.receptive_field} px" if card.receptive_field else "whole image")
    with st.expander("Layer table"):
        st.dataframe(card.table(layer_labels(model)), hide_index=True, width="stretch")


STAGES = {
    "queued": "starting...",
    "loading MNIST": "loading MNIST...",
    "preparing": "preparing the model and data...",
    "training": "training",
    "evaluating": "scoring on the test set...",
    "saving": "saving the checkpoint...",
}


def start(config: TrainConfig, name: str, overwrite: bool) -> None:
    live.submit("train", config.to_dict(), name or None, overwrite=overwrite)


def name_problems(name: str) -> tuple[list[str], bool]:
    """(errors, exists) for a run name typed by the user, checked before Start, not after training."""
    if not name:
        return [], False
    try:
        cleaned = ckpt.validate_name(name)
    except ckpt.CheckpointError as exc:
        return [str(exc)], False
    return [], saved_run_exists(cleaned)


def run_view(snap) -> None:
    """This browser's latest training run: progress and Stop while it runs, how it ended, its curves."""
    if snap is None:
        st.info("No run yet in this session: choose settings above and press Start.")
        return
    view, epochs = snap.view, snap.spec.config["epochs"]
    if snap.running:
        eta = view.eta_seconds
        if view.stage == "training" and view.step:
            text = (
                f"epoch {view.epoch}/{epochs} · step {view.step}/{view.total_steps}"
                f" · {view.images_per_s:,.0f} images/s" + (f" · about {eta:.0f} s left" if eta is not None else "")
            )
        else:
            text = STAGES.get(view.stage, view.stage)
        live.progress_row(snap, "train.stop", text)
    else:
        text = f"**{snap.name}** {snap.status} after {view.seconds or snap.seconds:.1f}s"
        if view.epochs:
            text += f": test accuracy {view.epochs[-1]['test_accuracy']:.2%}"
        text += f". {live.sentence(snap.message)}" if snap.message else "."
        checkpoint = (snap.result or {}).get("checkpoint")
        if checkpoint:
            gone = "" if saved_run_exists(checkpoint) else " (deleted since)"  # one file check, not a scan
            text += f" Saved as checkpoint **{checkpoint}**{gone}."
        live.ended_box(snap, text)
        if st.session_state.get("train.seen_done") != snap.id:  # once: the runs table below shows the new run
            st.session_state["train.seen_done"] = snap.id
            st.session_state["train.select_run"] = checkpoint
    st.plotly_chart(training_curves(view.batch_curve, view.epochs), key="train.curves")


def runs_table() -> None:
    infos = catalog.checkpoints()
    if not infos:
        st.info("No runs yet.")
        return
    st.dataframe(catalog.checkpoint_rows(infos), hide_index=True, width="stretch", key="train.runs")
    names = [i.name for i in infos]
    just_finished = st.session_state.pop("train.select_run", None)
    if just_finished in names:  # show the run that just ended, not whatever was picked before it
        st.session_state["train.run_pick"] = just_finished
    chosen = st.selectbox("Run", names, key="train.run_pick")
    info = next(i for i in infos if i.name == chosen)
    st.caption(f"Reproduce: `{info.meta.get('command', '')}`")
    c1, c2, c3 = st.columns([2, 1, 1])
    new_name = c1.text_input(
        "New name", key="train.new_name", label_visibility="collapsed", placeholder="new name for this run"
    )
    try:
        if c1.button("Rename", disabled=info.source != "runs" or not new_name):
            ckpt.rename(chosen, new_name)
            st.session_state.pop("train.delete_asked", None)
            st.rerun()
        if c2.button("Make active"):
            if (refused := catalog.refusal(info)) is not None:  # the active checkpoint is read on this data set
                st.error(refused)
            else:
                catalog.set_active(chosen)
                st.rerun()
        if st.session_state.get("train.delete_asked") not in (None, chosen):  # asked of another run: not this one
            st.session_state.pop("train.delete_asked")
        if c3.button("Delete", disabled=info.source != "runs"):
            st.session_state["train.delete_asked"] = chosen  # deleting cannot be undone: asked once more below
        if st.session_state.get("train.delete_asked") == chosen:
            st.warning(f"Delete the run **{chosen}** for good? Its weights and history cannot be brought back.")
            yes, no = st.columns([1, 4])
            if yes.button("Delete it", type="primary", key="train.delete_confirm"):
                st.session_state.pop("train.delete_asked")
                ckpt.delete(chosen)
                st.rerun()
            if no.button("Keep it", key="train.delete_cancel"):
                st.session_state.pop("train.delete_asked")
                st.rerun()
    except ckpt.CheckpointError as exc:
        st.error(str(exc))
    if info.source == "shipped":
        st.caption("Shipped checkpoints cannot be renamed or deleted.")


sidebar()
st.title("Train")
dataset = active_dataset()
st.info(
    f"Trains on **{dataset.title}** ({dataset.train_size:,} training images; classes {', '.join(dataset.class_names)}),"
    " the data set chosen in the sidebar. Its test accuracy is measured on its own test set."
)
config, field_errors = settings_widgets()  # each already shown under its field
st.subheader("Model card")
if field_errors:  # the config holds the defaults in place of the bad fields: its card would describe another net
    st.caption("The model card shows once the settings above are valid.")
else:
    model_card(config)

errors = []
try:
    config.validate(len(resources.active_data().train))
    check_fits_in_memory(config)
except (ConfigError, ModelError, RuntimeError) as exc:  # RuntimeError: a stack whose shapes cannot work
    errors.append(str(exc))
for message in dict.fromkeys(errors):
    st.error(message)
run_name = st.text_input(
    "Run name (optional)", key=key("name"), placeholder=f"{config.arch}-<date>-<time>"
).strip()  # only spaces: no name, so the default one
name_errors, name_taken = name_problems(run_name)
for message in name_errors:
    st.error(message)
overwrite = False
if name_taken:
    overwrite = st.checkbox(
        f"Replace the existing run **{run_name}**",
        key=key("overwrite"),
        help="Its weights and history are replaced by this run's when it ends.",
    )
blocked = bool(field_errors or errors or name_errors) or (name_taken and not overwrite)
if st.button("Start training", type="primary", disabled=blocked):
    start(config, run_name, overwrite)

st.subheader("Live")
live.watch("train", run_view)
st.subheader("Runs")
runs_table()
