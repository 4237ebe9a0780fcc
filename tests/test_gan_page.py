"""The GAN page with runs stopped at every point, and managing GAN runs from the page (AppTest)."""

import threading
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from mnist_core import gan
from mnist_core.gan import GanConfig
from mnist_core.reporter import Reporter

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(variant="mlp", width=8)


def page(tab: str | None = None) -> AppTest:
    """The GAN page; only its open tab runs, so a test opens the tab whose widgets it uses."""
    at = AppTest.from_file(str(ROOT / "pages/8_GAN.py"), default_timeout=120)
    if tab is not None:
        at.session_state["gan.tab"] = tab
    return at


def open_tab(at: AppTest, tab: str) -> AppTest:
    at.session_state["gan.tab"] = tab
    return at.run()


def stop_after(steps: int):
    """(stop event, on_event) that sets the stop once `steps` batches are done, as the Stop button does."""
    stop = threading.Event()

    def on_event(kind, data):
        if kind == "step" and data["step"] >= steps:
            stop.set()

    return stop, on_event


@pytest.fixture
def early_runs(runs, mnist):
    """Runs that sort before the shipped GAN, each stopped at a different point, trained for real."""
    first_epoch = gan.train_gan(GanConfig(**TINY, max_batches=3), mnist)  # one grid, never scored
    stop, on_event = stop_after(2)
    stopped = gan.train_gan(GanConfig(**TINY), mnist, reporter=Reporter(on_event, stop))  # a user's Stop mid-epoch
    before_start = threading.Event()
    before_start.set()
    zero = gan.train_gan(GanConfig(**TINY), mnist, reporter=Reporter(stop=before_start))  # stopped before a batch
    assert len(first_epoch.grids) == 1 and not any("frechet" in e for e in first_epoch.epochs)
    assert stopped.status == "stopped" and len(stopped.grids) == 1
    assert zero.status == "stopped" and not zero.grids and not zero.steps
    names = [
        gan.save_gan(first_epoch, "a1-first-epoch"),
        gan.save_gan(stopped, "a2-stopped"),
        gan.save_gan(zero, "a3-zero-steps"),
    ]
    return names


def test_runs_stopped_early_are_browsable_and_the_default_is_the_best_shipped_gan(early_runs):
    at = page().run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.selectbox(key="gan.checkpoint").value == "cgan"  # not whatever name sorts first
    for name in early_runs:
        at.selectbox(key="gan.checkpoint").set_value(name).run()
        assert not at.exception, (name, [e.message for e in at.exception])
        assert any("One row per class" in str(img.proto) for img in at.get("image")), name
        open_tab(at, "Metrics")
        assert any("has no quality figures" in m.value for m in at.info), name
        open_tab(at, "Browse")
    at.selectbox(key="gan.checkpoint").set_value("a3-zero-steps").run()
    assert any("stopped before its first batch" in m.value for m in at.warning)
    assert any("before its first grid" in m.value for m in at.info)


def test_a_run_can_be_renamed_and_deleted_but_a_shipped_gan_cannot(early_runs, runs):
    at = page().run()
    assert not any(b.key == "gan.delete" for b in at.button)  # the default, cgan, is shipped
    assert any("Shipped GANs cannot be renamed or deleted" in c.value for c in at.caption)
    at.selectbox(key="gan.checkpoint").set_value("a1-first-epoch").run()
    assert any("python -m mnist_core gan" in c.value and "--name a1-first-epoch" in c.value for c in at.caption)
    at.text_input(key="gan.new_name").set_value("cgan").run()
    at.button(key="gan.rename").click().run()
    assert any("shipped GAN" in e.value for e in at.error)  # a run may not take a shipped GAN's name
    at.text_input(key="gan.new_name").set_value("renamed run").run()
    at.button(key="gan.rename").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.selectbox(key="gan.checkpoint").value == "renamed-run"
    assert (runs / "gans" / "renamed-run.json").exists() and not (runs / "gans" / "a1-first-epoch.json").exists()
    at.button(key="gan.delete").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert not (runs / "gans" / "renamed-run.json").exists()
    assert not (runs / "gans" / "renamed-run.safetensors").exists()
    assert at.selectbox(key="gan.checkpoint").value == "cgan"


def test_run_names_are_per_visitor_reserved_names_are_refused_and_replacing_asks(early_runs):
    first, second = page("Train").run(), page("Train").run()
    assert first.text_input(key="gan.name").value.startswith("cgan-")
    assert first.text_input(key="gan.name").value != second.text_input(key="gan.name").value
    first.text_input(key="gan.name").set_value("cgan").run()
    assert any("shipped GAN" in e.value for e in first.error)
    assert not any(b.key == "gan.start" for b in first.button)
    first.text_input(key="gan.name").set_value("a2-stopped").run()
    assert first.button(key="gan.start").disabled  # an existing run: Start waits for the confirmation
    first.checkbox(key="gan.overwrite").check().run()
    assert not first.button(key="gan.start").disabled


def test_the_collapse_recipe_fills_the_settings_and_the_collapsed_example_shows_the_warning(runs):
    at = page("Train").run()
    at.button(key="gan.collapse_recipe").click().run()
    assert not at.exception and not at.warning, [w.value for w in at.warning]
    assert at.number_input(key="gan.train.latent").value == gan.COLLAPSE_RECIPE["latent"]
    assert at.number_input(key="gan.train.g_lr").value == gan.COLLAPSE_RECIPE["g_lr"]
    open_tab(at, "Browse").selectbox(key="gan.checkpoint").set_value("cgan-collapsed").run()
    open_tab(at, "Metrics")
    assert not at.exception, [e.message for e in at.exception]
    assert any("Mode collapse in class(es)" in w.value for w in at.warning)


def test_a_run_that_ends_is_picked_under_browse_and_the_next_run_gets_a_new_name(runs):
    at = page("Train").run()
    at.selectbox(key="gan.train.variant").set_value("mlp").run()
    at.number_input(key="gan.train.width").set_value(8).run()
    at.number_input(key="gan.train.max_batches").set_value(3).run()
    at.text_input(key="gan.name").set_value("ends-here").run()
    at.button(key="gan.start").click().run()
    deadline = time.time() + 240
    while not any("Saved as **ends-here**" in m.value for m in at.success):
        assert time.time() < deadline, "the GAN run did not end"
        assert not at.exception, [e.message for e in at.exception]
        time.sleep(1)
        at.run()
    at.run()
    assert (runs / "gans" / "ends-here.safetensors").exists()
    assert at.text_input(key="gan.name").value.startswith("cgan-")
    assert open_tab(at, "Browse").selectbox(key="gan.checkpoint").value == "ends-here"


def test_only_the_open_tab_runs_and_the_pick_survives_a_tab_switch(runs):
    at = page().run()
    assert not any(b.key == "gan.start" for b in at.button)  # the Train tab is closed: its code did not run
    at.selectbox(key="gan.checkpoint").set_value("cgan-collapsed").run()
    open_tab(at, "Metrics")
    assert any("Quality of **cgan-collapsed**" in c.value for c in at.caption)
    assert not any("One row per class" in str(img.proto) for img in at.get("image"))
    open_tab(at, "Train")
    assert any(b.key == "gan.start" for b in at.button)
    open_tab(at, "Browse")
    assert at.selectbox(key="gan.checkpoint").value == "cgan-collapsed"
    assert not at.exception
