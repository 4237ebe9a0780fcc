"""Pages rendered with Streamlit's AppTest: real scripts, real data, real training."""

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent

PAGES = ["app.py", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "pages").glob("*.py"))]


def page(path: str) -> AppTest:
    return AppTest.from_file(str(ROOT / path), default_timeout=120)


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_without_exceptions(path, runs):
    at = page(path).run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.title


def by_label(widgets, label: str):
    return next(w for w in widgets if w.label == label)


def wait_for_run_end(at: AppTest, timeout: float = 120) -> AppTest:
    deadline = time.time() + timeout
    while time.time() < deadline:
        at.run()
        texts = " ".join(m.value for m in [*at.success, *at.warning, *at.error])
        if "Saved as checkpoint" in texts or "failed" in texts:
            return at
        time.sleep(0.5)
    raise AssertionError("the run did not end in time")


def select_arch(at: AppTest, arch: str) -> AppTest:
    at.selectbox(key="train.arch").set_value(arch).run()
    return at


def test_a_tiny_run_from_the_train_page_makes_a_checkpoint_and_curves(runs):
    at = select_arch(page("pages/3_Train.py").run(), "mlp")
    at.number_input(key="model.mlp.width").set_value(32)
    at.number_input(key="train.max_batches").set_value(30)
    at.text_input(key="train.name").set_value("apptest run")
    at.button[0].click().run()  # the first button on the page is Start
    at = wait_for_run_end(at)
    assert not at.exception
    # the run reached its own batch cap: it is done (green) and says so, it was not stopped
    assert any(
        " done after " in m.value
        and "Reached its 30-batch cap" in m.value
        and "Saved as checkpoint **apptest-run**" in m.value
        for m in at.success
    ), [m.value for m in at.success]
    assert (runs / "apptest-run.safetensors").exists() and (runs / "apptest-run.json").exists()
    assert any(chart.proto.spec for chart in at.get("plotly_chart"))
    table_names = [n for df in at.dataframe if "name" in df.value.columns for n in df.value["name"]]
    assert "apptest-run" in table_names


def test_stop_ends_a_run_and_keeps_it_as_a_stopped_checkpoint(runs):
    at = select_arch(page("pages/3_Train.py").run(), "cnn")
    at.number_input(key="train.epochs").set_value(5)
    at.text_input(key="train.name").set_value("to stop")
    at.button[0].click().run()
    at.button(key="train.stop").click().run()
    at = wait_for_run_end(at, timeout=30)
    assert any("to-stop" in m.value and "stopped" in m.value for m in at.warning)
    assert (runs / "to-stop.json").exists()


def test_bad_settings_are_refused_next_to_the_widget(runs):
    at = page("pages/3_Train.py").run()
    at.number_input(key="train.lr").set_value(0.0).run()
    assert any("learning rate must be a positive number" in e.value for e in at.error)
    start = next(b for b in at.button if b.label == "Start training")
    assert start.disabled
    at.text_input(key="model.cnn.channels").set_value("16, lots").run()
    assert any("whole numbers" in e.value for e in at.error)


def test_preset_fills_in_the_settings(runs):
    at = page("pages/3_Train.py").run()
    at.selectbox(key="train.preset").set_value("tiny_gap_19").run()
    assert at.selectbox(key="train.arch").value == "tiny_gap"
    assert at.number_input(key="train.epochs").value == 19
    assert at.number_input(key="train.rotation").value == 5.0
    assert at.number_input(key="model.tiny_gap.dropout").value == pytest.approx(0.069)
    assert not at.exception


def test_data_page_filters_samples_and_compares_classes(runs):
    at = page("pages/1_Data.py").run()
    by_label(at.selectbox, "Class").set_value(4).run()
    assert any(c.value.startswith("100 train digits of class 4") for c in at.caption)
    by_label(at.selectbox, "Class B").set_value(5).run()
    assert any("Mean of 3 minus mean of 5" in c.value for c in at.caption)
    at.radio[0].set_value("test").run()
    at.number_input[0].set_value(9999).run()
    assert any("Label: **" in m.value for m in at.markdown)
    assert not at.exception


def test_draw_page_scores_every_checkpoint_on_drawings_and_fine_tunes_only_with_some(runs):
    at = page("pages/7_Draw.py").run()
    assert any("Draw a digit on the canvas" in m.value for m in at.info)
    assert at.button(key="draw.finetune").disabled  # no saved drawings yet
    at.button(key="draw.evaluate").click().run()
    table = next(df.value for df in at.dataframe if "synthetic drawings %" in df.value.columns)
    best = table.set_index("checkpoint").loc["best"]
    assert best["synthetic drawings %"] >= 90
    assert len(table) >= 9  # every shipped checkpoint
    assert not at.exception


def test_embeddings_page_maps_digits_and_refuses_impossible_parameters(runs):
    at = page("pages/2_Embeddings.py").run()
    at.selectbox(key="emb.method").set_value("pca").run()
    at.number_input(key="emb.points").set_value(1000).run()
    assert any("10-NN accuracy" in m.label for m in at.metric)
    assert any("PCA of 1,000 digits" in str(chart.proto.spec) for chart in at.get("plotly_chart"))
    at.selectbox(key="emb.method").set_value("tsne").run()
    at.number_input(key="emb.perplexity").set_value(400.0).run()
    assert any("perplexity 400 is too large for 1,000 points" in e.value for e in at.error)
    at.number_input(key="emb.perplexity").set_value(30.0).run()
    at.number_input(key="emb.iterations").set_value(250).run()
    at.button(key="emb.compute").click().run()
    deadline = time.time() + 120
    while not any("t-SNE (openTSNE) of 1,000" in str(c.proto.spec) for c in at.get("plotly_chart")):
        assert time.time() < deadline, "the t-SNE map did not appear"
        time.sleep(1)
        at.run()
    assert list((runs / "embeddings").glob("*.safetensors"))  # cached on disk for the next visit
    assert not at.exception


@pytest.mark.parametrize("checkpoint, feature_maps", [("mlp", False), ("best", True)])
def test_inspect_page_shows_a_shipped_checkpoint_without_history(runs, checkpoint, feature_maps):
    at = page("pages/6_Inspect.py")
    at.session_state["active_checkpoint"] = checkpoint
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("has no recorded training history" in m.value and "--preset fast" in m.value for m in at.info)
    specs = " ".join(str(chart.proto.spec) for chart in at.get("plotly_chart"))
    assert "Confusion matrix" in specs and "expected calibration error" in specs
    captions = " ".join(str(img.proto) for img in at.get("image"))
    assert ("Feature maps, conv 1" in captions) == feature_maps
    assert ("28x28 templates" in captions) == (not feature_maps)
    by_label(at.radio, "Pick a test digit").set_value("a mistake").run()
    assert not at.exception


def test_inspect_page_plays_back_a_recorded_run(runs, data):
    from mnist_core.checkpoints import save
    from mnist_core.train import TrainConfig, fit

    save(fit(TrainConfig(arch="cnn", model={"channels": [4, 8]}, max_batches=40, record_every=4), data), "recorded")
    at = page("pages/6_Inspect.py")
    at.session_state["active_checkpoint"] = "recorded"
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    figures = [chart.proto.spec for chart in at.get("plotly_chart")]
    animated = next(f for f in figures if "weights (share of values per bin)" in f)
    assert animated.count('"name":"') >= 10  # one frame per snapshot: steps 4, 8, ..., 40
    assert any("Gradient flow at step 40" in f for f in figures)
    assert any("Dead units" in f for f in figures)


def test_gan_page_browses_the_shipped_gan_by_class(runs):
    at = page("pages/8_GAN.py").run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("One row per class" in str(img.proto) for img in at.get("image"))
    at.selectbox(key="gan.class").set_value(4).run()
    assert any("32 samples of class 4" in str(img.proto) for img in at.get("image"))
    assert not at.metric  # only the open tab runs: Metrics draws nothing until it is opened
    at.session_state["gan.tab"] = "Metrics"
    at.run()
    assert any(m.label == "Conditional accuracy" for m in at.metric)
    assert not any("32 samples of class 4" in str(img.proto) for img in at.get("image"))
    assert not at.exception


def test_compare_page_runs_two_arms_and_tabulates_them(runs):
    at = page("pages/9_Compare.py").run()
    at.number_input(key="compare.base.(defaults).max_batches").set_value(5)
    at.selectbox(key="compare.base.(defaults).optimizer").set_value("sgd")
    at.number_input(key="compare.base.(defaults).lr").set_value(0.05)
    at.number_input(key="compare.model.(defaults).mlp.width").set_value(64)
    at.selectbox(key="compare.dimension").set_value("augmentation").run()
    assert any("2 runs: no augmentation, rotate 10 deg, shift 2 px" in c.value for c in at.caption)
    at.button[0].click().run()  # Start comparison
    deadline = time.time() + 120
    while time.time() < deadline and not any("done" in s.value for s in at.success):
        time.sleep(0.5)
        at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = at.dataframe[-1].value
    assert list(table["arm"]) == ["no augmentation", "rotate 10 deg, shift 2 px"]
    assert (table["runs done"] == "1/1").all()
    saved = list(runs.glob("cmp-augmentation-*-no-augmentation-s0.json"))  # the default name holds date and time
    assert len(saved) == 1 and saved[0].with_suffix(".safetensors").exists()
    meta = json.loads(saved[0].read_text())
    assert meta["train_config"]["optimizer"] == "sgd" and meta["train_config"]["lr"] == 0.05  # the base recipe
    assert meta["model_config"]["width"] == 64


def test_compare_page_refuses_to_start_with_bad_architecture_settings(runs):
    at = page("pages/9_Compare.py").run()
    at.selectbox(key="compare.arch.(defaults)").set_value("cnn").run()
    at.text_input(key="compare.model.(defaults).cnn.channels").set_value("16, x").run()
    assert any("Fix the architecture settings" in e.value for e in at.error)
    assert at.button[0].disabled  # Start comparison
    assert not at.exception


@pytest.mark.parametrize(
    "box, dimension, what",
    [("optimizers", "optimizer", "optimizers"), ("archs", "arch", "architectures"), ("depths", "depth", "depths")],
)
def test_compare_page_with_every_choice_cleared_starts_nothing(runs, box, dimension, what):
    at = page("pages/9_Compare.py").run()
    at.selectbox(key="compare.dimension").set_value(dimension).run()
    at.multiselect(key=f"compare.{box}").set_value([]).run()
    assert [e.value for e in at.error] == [f"no {what} chosen: choose at least two"]
    assert at.button[0].disabled  # Start comparison
    assert not at.exception


def test_compare_page_says_why_a_dimension_does_not_fit_the_base(runs):
    at = page("pages/9_Compare.py").run()
    at.selectbox(key="compare.dimension").set_value("bn").run()
    assert any("BatchNorm position can be varied for the cnn architecture" in e.value for e in at.error)
    assert not at.exception


def test_transfer_page_trains_a_head_and_a_scratch_baseline(runs):
    at = page("pages/10_Transfer.py").run()
    at.selectbox(key="transfer.labels").set_value(100)
    at.number_input(key="transfer.steps").set_value(20).run()
    at.button(key="transfer.start").click().run()
    deadline = time.time() + 240
    while time.time() < deadline and len(at.dataframe) < 2:  # this run's table, then the session's
        time.sleep(1)
        at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = at.dataframe[0].value
    assert table["arm"].str.startswith("transfer: frozen").any() and table["arm"].str.startswith("from scratch").any()
    assert (table["labelled digits"] == 100).all() and (table["test accuracy %"] > 30).all()
    assert not any("A stopped arm" in c.value for c in at.caption)


def test_transfer_page_stops_a_run_on_request(runs):
    at = page("pages/10_Transfer.py").run()
    at.selectbox(key="transfer.labels").set_value(100)
    at.multiselect(key="transfer.arms").set_value(["scratch"])
    at.number_input(key="transfer.steps").set_value(20_000).run()  # minutes of work, unless stopped
    at.button(key="transfer.start").click().run()
    deadline = time.time() + 60
    while time.time() < deadline and not any(b.key == "transfer.stop" for b in at.button):
        time.sleep(0.5)
        at.run()
    at.button(key="transfer.stop").click().run()
    deadline = time.time() + 60
    while time.time() < deadline and not at.warning:
        time.sleep(0.5)
        at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.warning and "stopped at step" in at.warning[0].value
    table = at.dataframe[0].value
    assert table["status"][0].startswith("stopped at step") and table["test accuracy %"].isna().all()
    assert any("A stopped arm is not scored on the whole test set" in c.value for c in at.caption)


def test_transfer_page_explains_a_missing_torchvision_weight(runs, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    at = page("pages/10_Transfer.py").run()
    at.selectbox(key="transfer.backbone").set_value("resnet18").run()
    assert not at.exception
    assert any("ResNet18's ImageNet weights are not in the torch hub cache" in e.value for e in at.error)
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # a closed port: the download fails the way offline does
    at.button(key="transfer.download").click().run()
    assert [e.value for e in at.error if "ImageNet weights" in e.value] == [
        next(e.value for e in at.error if "could not be downloaded" in e.value)
    ]  # the failed download's message replaces the first one, not beside it
