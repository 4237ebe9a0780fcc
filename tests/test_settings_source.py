"""One source of truth for the training settings: a preset started from the Train page, the Compare page
and the command line is the same TrainConfig, and a value outside a field's range is refused on every page by
the field's own check, in the same words as the command line."""

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from mnist_core.__main__ import build_parser, config_from_args
from mnist_core.embed import METHODS, EmbeddingError, EmbedSpec
from mnist_core.fields import kind_of, name_of, number, range_text, widget_bounds
from mnist_core.job_cli import compare_base_from_args, embed_config_from_args
from mnist_core.models import make_config
from mnist_core.presets import PRESETS, from_overrides, preset
from mnist_core.train import ConfigError, TrainConfig

ROOT = Path(__file__).resolve().parent.parent
FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def page(path: str) -> AppTest:
    return AppTest.from_file(str(ROOT / path), default_timeout=120)


def resolved(config: TrainConfig) -> TrainConfig:
    """The config with its architecture settings in full: the pages keep only those that differ from the
    architecture's defaults, which builds the same network."""
    return dataclasses.replace(config, model=make_config(config.arch, config.model))


def shown_config(at: AppTest) -> TrainConfig:
    """The config the page would submit, from its 'as JSON' view (the first JSON on the page), resolved."""
    return resolved(TrainConfig(**json.loads(at.json[0].value)))


def outside(f) -> tuple:
    """A value just outside the field's range, and the message its check gives for it."""
    low, high = widget_bounds(f)
    kind = kind_of(f)
    value = kind(high) + (1 if kind is int else 0.5) if high is not None else kind(low) - 1
    return value, f"{name_of(f)} must be {range_text(f)} (got {number(value)})"


def assert_out_of_range_refused(at: AppTest, prefix: str, fields: dict, start: str | None) -> list[str]:
    """Each bounded number widget, one at a time given a value outside its range: the page keeps the value as
    typed, names the problem in an st.error, and offers no Start (Streamlit's own bounds kept the previous value
    and let it train)."""
    checked = []
    keys = [w.key for w in at.number_input if w.key.startswith(prefix) and w.key.removeprefix(prefix) in fields]
    for key in keys:
        f = fields[key.removeprefix(prefix)]
        if widget_bounds(f) == (None, None):
            continue
        before = at.number_input(key=key).value
        value, message = outside(f)
        at.number_input(key=key).set_value(value).run()
        assert not at.exception, key
        assert at.number_input(key=key).value == value, key
        assert any(message in e.value for e in at.error), (key, message, [e.value for e in at.error])
        if start is not None:
            assert all(b.disabled for b in at.button if b.label == start), key
        at.number_input(key=key).set_value(before).run()
        assert not any(message in e.value for e in at.error), key
        checked.append(f.name)
    return checked


def cli_train_config(name: str) -> TrainConfig:
    return resolved(config_from_args(build_parser().parse_args(["train", "--preset", name])))


def test_every_preset_is_the_same_config_from_the_train_page_compare_page_and_cli(runs):
    train = page("pages/3_Train.py").run()
    compare = page("pages/9_Compare.py").run()
    for name in PRESETS:
        want = resolved(preset(name))
        train.selectbox(key="train.preset").set_value(name).run()
        assert not train.exception, name
        assert shown_config(train) == want, name
        assert cli_train_config(name) == want, name
        compare.selectbox(key="compare.preset").set_value(name).run()
        assert not compare.exception, name
        # A comparison records no histograms (a sweep's runs are not worth their disk); all else is the preset.
        assert shown_config(compare) == dataclasses.replace(want, record=False), name
        cli_base = resolved(compare_base_from_args(build_parser().parse_args(["compare", "--preset", name])))
        assert cli_base == dataclasses.replace(want, record=False), name


def test_the_step_schedule_of_conv2_fc2_keeps_its_gamma_everywhere(runs):
    train = page("pages/3_Train.py").run()
    train.selectbox(key="train.preset").set_value("conv2_fc2").run()
    assert train.number_input(key="train.gamma").value == pytest.approx(0.7)
    assert shown_config(train).gamma == pytest.approx(0.7)
    assert cli_train_config("conv2_fc2").gamma == pytest.approx(0.7)


def test_an_empty_optional_number_says_what_it_does_in_its_label(runs):
    """0 in an optional number widget is 'unset': no batch cap, but an automatic snapshot interval, not none."""
    train = page("pages/3_Train.py").run()
    assert train.number_input(key="train.record_every").label == "Record every (steps, 0 = auto)"
    assert train.number_input(key="train.max_batches").label == "Stop after N batches (0 = none)"
    assert train.number_input(key="train.record_every").value == 0 and shown_config(train).record_every is None


def test_a_value_outside_a_settings_range_is_named_and_not_trained_on_both_pages(runs):
    train = page("pages/3_Train.py").run()
    train.selectbox(key="train.optimizer").set_value("sgd").run()  # momentum shows for SGD and RMSprop only
    train.selectbox(key="train.schedule").set_value("step").run()  # step size and gamma for the step schedule
    checked = assert_out_of_range_refused(train, "train.", FIELDS, "Start training")
    assert {"epochs", "batch_size", "lr", "momentum", "step_size", "gamma", "rotation", "shift", "seed"} <= set(checked)
    train.selectbox(key="train.arch").set_value("mlp").run()
    train.number_input(key="model.mlp.width").set_value(0).run()  # the architecture's own check names it
    assert any("width must be between 8 and 2,048 (got 0)" in e.value for e in train.error)
    assert all(b.disabled for b in train.button if b.label == "Start training")
    compare = page("pages/9_Compare.py").run()
    compare.selectbox(key="compare.dimension").set_value("dropout").run()  # arms of another optimizer bring their lr
    checked = assert_out_of_range_refused(compare, "compare.base.(defaults).", FIELDS, "Start comparison")
    assert {"epochs", "batch_size", "lr", "momentum", "gamma"} <= set(checked)
    compare.selectbox(key="compare.dimension").set_value("augmentation").run()
    assert {"rotation", "shift"} <= set(assert_out_of_range_refused(compare, "compare.augment.", FIELDS, None))


def test_a_preset_with_an_unknown_key_or_a_value_out_of_range_is_refused():
    with pytest.raises(ConfigError, match="preset 'typo': unknown setting 'epoch'"):
        from_overrides("typo", {"arch": "mlp", "epoch": 3})
    with pytest.raises(ConfigError, match="preset 'wild': rotation must be between 0 and 45 degrees"):
        from_overrides("wild", {"arch": "mlp", "rotation": 90.0})
    with pytest.raises(ConfigError, match="has no setting widht"):
        from_overrides("arch typo", {"arch": "mlp", "model": {"widht": 3}})


def test_cli_flags_take_the_fields_ranges():
    args = build_parser().parse_args(["train", "--preset", "conv2_fc2", "--gamma", "1.5"])
    with pytest.raises(ConfigError, match=r"gamma must be in \(0, 1\] \(got 1.5\)"):
        config_from_args(args).validate()


# ---------------------------------------------------------------- the map (embed) settings

EMBED_FIELDS = {f.name: f for f in dataclasses.fields(EmbedSpec)}
NUMERIC_EMBED = [name for name, f in EMBED_FIELDS.items() if "choices" not in f.metadata and kind_of(f) in (int, float)]


def embed_cli_spec(*flags: str) -> EmbedSpec:
    return EmbedSpec(**embed_config_from_args(build_parser().parse_args(["embed", *flags])))


def test_the_embeddings_page_the_embed_flags_and_validate_share_each_settings_range(runs):
    at = page("pages/2_Embeddings.py").run()
    shown = []
    for method in ("pca", "tsne", "umap"):
        at.selectbox(key="emb.method").set_value(method).run()
        assert not at.exception, method
        shown += assert_out_of_range_refused(at, "emb.", EMBED_FIELDS, "Compute map")
    assert set(shown) == set(NUMERIC_EMBED), shown  # every number setting of every method has its widget
    for name in NUMERIC_EMBED:
        f = EMBED_FIELDS[name]
        low, high = (float(b) for b in widget_bounds(f))
        flag = "--" + name.replace("_", "-")
        kind = kind_of(f)
        enough = [] if name == "points" else ["--points", "70000"]  # a perplexity of 500 needs 1,501 points
        for inside in (low, high):
            embed_cli_spec(flag, str(kind(inside)), *enough).validate()
        for outside in (kind(low) - 1, kind(high) + (1 if kind is int else 0.5)):
            with pytest.raises(
                EmbeddingError,
                match=rf"^{re.escape(name_of(f))} must be {re.escape(range_text(f))} "
                rf"\(got {re.escape(number(outside))}\)$",
            ):
                embed_cli_spec(flag, str(outside), *enough).validate()


def test_the_embed_choices_are_the_pages_and_the_flags(runs):
    at = page("pages/2_Embeddings.py").run()
    assert len(at.selectbox(key="emb.method").options) == len(METHODS)
    at.selectbox(key="emb.method").set_value("pca").run()
    assert [int(o) for o in at.radio(key="emb.dims").options] == list(EMBED_FIELDS["dims"].metadata["choices"])
    for method in METHODS:
        assert embed_cli_spec("--method", method).method == method
    with pytest.raises(EmbeddingError, match="^unknown method 'lle'; choose one of pca, tsne, umap$"):
        EmbedSpec(method="lle").validate()


def test_an_out_of_range_map_setting_is_an_error_on_the_page_not_a_traceback(runs):
    at = page("pages/2_Embeddings.py").run()
    at.selectbox(key="emb.method").set_value("tsne").run()
    at.number_input(key="emb.points").set_value(1000).run()
    at.number_input(key="emb.perplexity").set_value(400.0).run()
    assert [e.value for e in at.error] == [
        "perplexity 400 is too large for 1,000 points: it must be at most "
        "(points - 1) / 3 = 333; typical values are 5-50"
    ]
    assert not at.exception


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--bad"], "unrecognized arguments: --bad"),
        (["--points", "500"], "subset size must be between 1,000 and 70,000 (got 500)"),
        (["--min-dist", "1.5"], "min_dist must be between 0 and 1 (got 1.5)"),
        (["--dims", "4"], "argument --dims: invalid choice: 4 (choose from 2, 3)"),
    ],
)
def test_the_embed_command_refuses_a_bad_setting_in_one_line_with_exit_2(flags, message):
    done = subprocess.run(
        [sys.executable, "-m", "mnist_core", "embed", "--backend", "threads", *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
