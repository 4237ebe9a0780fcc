"""Compare: one base setup on the active data set, one varied setting (the data set itself among them), several
seeds; overlaid curves and a table of results."""

import dataclasses
import os

import streamlit as st

st.set_page_config(page_title="Compare · MNIST Lab", page_icon="⚖️", layout="wide")

from labui import live, resources, visitor  # noqa: E402
from labui.compare_charts import arm_curves, live_loss_curves  # noqa: E402
from labui.data_choice import active_dataset, items, set_dataset  # noqa: E402
from labui.sidebar import sidebar  # noqa: E402
from labui.widgets import config_widgets, field_widgets, seed_state  # noqa: E402
from mnist_core import datasets  # noqa: E402
from mnist_core.compare import (  # noqa: E402
    BN_POSITIONS,
    DIMENSIONS,
    OPTIMIZER_ARMS,
    CompareError,
    build_arms,
    default_name,
    existing_runs,
    plan,
    summary_rows,
)
from mnist_core.host import settings as host_settings  # noqa: E402
from mnist_core.models import REGISTRY, ModelError  # noqa: E402
from mnist_core.presets import COMPARE_RECIPE_FIELDS, COMPARE_RUN_FIELDS, PRESETS, compare_base, preset  # noqa: E402
from mnist_core.train import ConfigError, TrainConfig  # noqa: E402


def key(name: str) -> str:
    return f"compare.{name}"


def preset_chosen() -> None:
    """A preset is the whole recipe, its data set included (fashion: Fashion-MNIST), as on the Train page."""
    name = st.session_state[key("preset")]
    if name in PRESETS and preset(name).dataset != active_dataset().key:
        set_dataset(preset(name).dataset)


def base_setup() -> tuple[TrainConfig, list[str]]:
    st.markdown("**Base setup**: every arm uses it, except for the setting you vary.")
    c1, c2 = st.columns(2)
    start = c1.selectbox(
        "Start from",
        ["(defaults)", *PRESETS],
        key=key("preset"),
        help="A preset's architecture and training recipe (and its data set); the fields here override it.",
        on_change=visitor.as_visitor(preset_chosen),
    )
    first = preset(start) if start in PRESETS else TrainConfig(arch="mlp", epochs=1)
    arch = c2.selectbox(
        "Architecture", list(REGISTRY), index=list(REGISTRY).index(first.arch), key=key(f"arch.{start}")
    )
    # Widgets of their own for each starting point, seeded from it: picking a preset shows its values.
    prefix = key(f"base.{start}")
    seed_state(prefix, TrainConfig, first.to_dict(), names=COMPARE_RUN_FIELDS + COMPARE_RECIPE_FIELDS)
    values = field_widgets(TrainConfig, prefix, COMPARE_RUN_FIELDS, columns=4)
    with st.expander(f"Training recipe and {arch} settings"):
        st.caption("Arms that vary one of these (the optimizer, say) override it; everything else comes from here.")
        # Every recipe setting stays: an arm with another optimizer or schedule uses the base's momentum or gamma.
        values |= field_widgets(TrainConfig, prefix, COMPARE_RECIPE_FIELDS, columns=3, hide_inapplicable=False)
        # The active data set (a preset switches to its own); the "dataset" dimension varies it.
        config = dataclasses.replace(compare_base(first, arch, values), dataset=active_dataset().key)
        errors = model_widgets(config, start)
    with st.expander("The base setup as JSON"):
        st.json(config.to_dict())  # what each arm starts from before its one change
    return config, errors


def model_widgets(config: TrainConfig, start: str) -> list[str]:
    """The base's architecture settings, filled from the chosen preset (or the defaults).

    Returns the problems with them, already shown beside their widgets.
    """
    st.markdown(f"**{config.arch} settings**")
    prefix = key(f"model.{start}.{config.arch}")
    seed_state(prefix, REGISTRY[config.arch].config_cls, config.model)
    model, errors = config_widgets(REGISTRY[config.arch].config_cls, prefix)
    if not errors:
        config.model = model
    return errors


def arm_choices(dimension: str) -> tuple[list | None, dict]:
    """(values, options) of the varied setting, as build_arms takes them: the arms are built from these
    again when the comparison is submitted, so what runs is what was checked here."""
    if dimension == "optimizer":
        names = st.multiselect(
            "Optimizers", list(OPTIMIZER_ARMS), default=["SGD", "SGD+momentum", "Adam"], key=key("optimizers")
        )
        rows = [{"optimizer": n, "learning rate": OPTIMIZER_ARMS[n]["lr"]} for n in names]
        edited = st.data_editor(
            rows,
            key=key(f"lrs.{'-'.join(names)}"),
            hide_index=True,
            disabled=["optimizer"],
            column_config={"learning rate": st.column_config.NumberColumn(format="%g", min_value=0.0)},
        )
        lrs = {row["optimizer"]: row["learning rate"] for row in edited}
        bad = [n for n, lr in lrs.items() if not lr or lr <= 0]
        if bad:
            raise CompareError(f"the learning rate of {bad[0]} must be above 0")
        return names, {"lrs": lrs}
    if dimension == "arch":
        return st.multiselect("Architectures", list(REGISTRY), default=["mlp", "cnn"], key=key("archs")), {}
    if dimension == "bn":
        return st.multiselect("BatchNorm positions", BN_POSITIONS, default=["after", "before"], key=key("bn")), {}
    if dimension == "dropout":
        rate = st.number_input("Dropout rate of the 'on' arm", 0.05, 0.9, value=0.25, step=0.05, key=key("rate"))
        return None, {"rate": rate}
    if dimension == "augmentation":
        # The 'on' arm's augmentation: the same fields, labels and ranges as on the Train page.
        seed_state(key("augment"), TrainConfig, {"rotation": 10.0, "shift": 2.0}, names=("rotation", "shift"))
        on = field_widgets(TrainConfig, key("augment"), ("rotation", "shift"), columns=2)
        rotation, shift = on["rotation"], on["shift"]
        return None, {"rotation": rotation, "shift": shift}
    if dimension == "dataset":
        titles = {d.key: d.title for d in datasets.available()}
        chosen = st.multiselect(
            "Data sets",
            list(titles),
            default=[k for k in (datasets.MNIST, datasets.FASHION) if k in titles],
            format_func=titles.get,
            key=key("datasets"),
            help="The same architecture, recipe and seed on each; each run is tested on its own data set's test set.",
        )
        return chosen, {}
    if dimension == "depth":
        depths = st.multiselect("Hidden layers", [1, 2, 3, 4, 5, 6, 7, 8], default=[1, 2, 3, 4, 5], key=key("depths"))
        return sorted(depths), {}
    return None, {}


def run_controls() -> tuple[list[int], int]:
    c1, c2 = st.columns(2)
    repeats = int(
        c1.number_input(
            "Seeds per arm",
            1,
            10,
            value=1,
            key=key("seeds"),
            help="Each arm runs once per seed (0, 1, 2, ...); the table shows mean and spread.",
        )
    )
    cores = os.cpu_count() or 1
    cap = host_settings().max_parallel  # the host's MNIST_MAX_PARALLEL (hosted mode: 1)
    most = max(1, min(cores, cap or cores))
    parallel = int(
        c2.number_input(
            "Runs in parallel",
            1,
            most,
            value=1,
            key=key("parallel"),
            help=f"Worker processes; this machine has {cores} cores"
            f"{' and a GPU' if resources.device_label().startswith('GPU') else ''}. "
            "Parallel runs share them, so one at a time is right for a small CPU."
            + (f" This host trains at most {cap} at once (MNIST_MAX_PARALLEL)." if cap else ""),
        )
    )
    return list(range(repeats)), parallel


def comparison_view(snap) -> None:
    """This browser's latest comparison: progress and Stop while it runs, how it ended, curves and table."""
    if snap is None:
        st.info("No comparison yet in this session: set it up above and press Start.")
        return
    runs = snap.view.runs
    if snap.running:
        ended = sum(r.ended for r in runs)
        total = sum(r.job.total_steps for r in runs)
        live.progress_row(
            snap,
            key("stop"),
            f"{ended}/{len(runs)} runs done",
            share=sum(r.job.step for r in runs) / total if total else 0.0,
        )
    else:
        failed = [r for r in runs if r.job.status == "failed"]
        for run in failed:
            st.error(f"{run.spec.name}: {run.job.message}")
        saved = [r.job.checkpoint for r in runs if r.job.checkpoint]
        text = f"**{snap.name}** {snap.status}: {live.sentence(snap.message)}"
        if saved:
            text += f" Each run is saved as a checkpoint ({', '.join(saved[:4])}{', ...' if len(saved) > 4 else ''})."
        if snap.status != "failed" or not failed:
            live.ended_box(snap, text)
    st.plotly_chart(live_loss_curves(runs), key=key("live"))
    st.plotly_chart(arm_curves(runs), key=key("epochs"))
    st.dataframe(summary_rows(runs), hide_index=True, width="stretch", key=key("table"))
    st.caption(
        "Wall time is each run's training and scoring, timed warm: a few untimed batches of each new setup "
        "run first (warm-up s), so the first arm is not charged with one-off start-up costs."
    )


sidebar()
st.title("Compare")
DATASET = active_dataset()
st.write(
    "Vary one thing and keep everything else fixed. Every arm with the same architecture starts from the "
    f"**same initial weights** and sees the {items(DATASET)} in the **same order** (the seed fixes both), so the "
    "curves differ because of the setting alone. Repeat over several seeds: one run can mislead."
)
st.caption(
    f"Every arm trains on **{DATASET.title}**, the data set chosen in the sidebar, unless you vary the data set."
)
base, base_errors = base_setup()
dimension = st.selectbox("Vary", list(DIMENSIONS), format_func=DIMENSIONS.get, key=key("dimension"))
# A default name of its own for each visitor and dimension, fixed for the session (not one per rerun).
st.session_state.setdefault(key(f"name.{dimension}"), default_name(dimension))
name = st.text_input(
    "Comparison name", key=key(f"name.{dimension}"), help="Each run is saved as a checkpoint named NAME-ARM-sSEED."
)
specs, problem, values, options = [], None, None, {}
try:
    values, options = arm_choices(dimension)
    arms = build_arms(base, dimension, values, **options)
    seeds, parallel = run_controls()
    # Everything is checked here, before Start: settings, each network's shapes, memory, the names.
    specs = plan(base, arms, seeds, name)
except (CompareError, ConfigError, ModelError) as exc:
    problem = str(exc)
    seeds, parallel = [0], 1
if problem:
    st.error(problem)
elif base_errors:
    specs = []  # the architecture settings above say what to fix
    st.error("Fix the architecture settings in the base setup first: " + base_errors[0])
else:
    st.caption(f"{len(specs)} runs: " + ", ".join(dict.fromkeys(s.arm for s in specs)) + f" x seeds {seeds}.")
taken = existing_runs(specs) if specs else []
overwrite = False
if taken:
    overwrite = st.checkbox(
        f"Replace the saved runs {', '.join(taken[:3])}{' ...' if len(taken) > 3 else ''}",
        key=key("overwrite"),
        help="Runs of these names exist; they are replaced as each run ends.",
    )
if st.button("Start comparison", type="primary", disabled=not specs or (bool(taken) and not overwrite)):
    live.submit(
        "compare",
        {
            "base": base.to_dict(),
            "dimension": dimension,
            "values": values,
            "options": options,
            "seeds": seeds,
            "parallel": parallel,
        },
        name,
        overwrite=overwrite,
    )

st.subheader("Results")
live.watch("compare", comparison_view)
