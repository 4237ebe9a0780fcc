"""Two browsers in hosted mode: each sees the shipped checkpoints plus its own runs, can rename or delete only
its own, and fine-tunes only on its own drawings. Locally (not hosted) the single user's one folder stays.

AppTest has no cookies, so every AppTest is the same browser; the two browsers are made by replacing the one
function that names the browser (labui.visitor.session_id) before each script run."""

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from labui import resources, visitor
from mnist_core import owners
from mnist_core.checkpoints import save
from mnist_core.drawing_store import load_drawings, save_drawing
from mnist_core.reporter import DONE
from mnist_core.train import TrainConfig, fit

ROOT = Path(__file__).resolve().parent.parent
ALICE, BOB = "browser-aaaaaaaaaaaaaaaa", "browser-bbbbbbbbbbbbbbbb"


@pytest.fixture
def as_browser(monkeypatch):
    def switch(who: str) -> None:
        monkeypatch.setattr(visitor, "session_id", lambda: who)

    return switch


def page(path: str) -> AppTest:
    return AppTest.from_file(str(ROOT / path), default_timeout=180)


def alices_run(data, name: str = "alices-run") -> None:
    with owners.use(ALICE):
        save(fit(TrainConfig(arch="mlp", model={"depth": 1, "width": 8}, max_batches=2, record=False), data), name)


def a_drawing() -> np.ndarray:
    pixels = np.zeros((28, 28), np.float32)
    pixels[4:24, 12:16] = 1.0
    return pixels


def active_choices(at: AppTest) -> list:
    return next(s for s in at.selectbox if s.label == "Active checkpoint").options


def test_a_second_browser_cannot_see_rename_delete_or_fine_tune_on_the_firsts_runs(runs, data, monkeypatch, as_browser):
    monkeypatch.setenv("MNIST_HOSTED", "1")
    alices_run(data)
    with owners.use(ALICE):
        save_drawing(a_drawing(), 1)

    as_browser(BOB)
    train = page("pages/3_Train.py").run()
    assert not train.exception, [e.message for e in train.exception]
    picks = train.selectbox(key="train.run_pick").options
    assert "alices-run" not in picks and "best" in picks  # the shipped checkpoints, none of alice's
    assert "alices-run" not in active_choices(train)
    # Bob's rename and delete reach only his own runs: alice's is not there for them to reach.
    train.selectbox(key="train.run_pick").set_value("best").run()
    rename = next(b for b in train.button if b.label == "Rename")
    delete = next(b for b in train.button if b.label == "Delete")
    assert rename.disabled and delete.disabled  # shipped: never his to change

    bob_inspect = page("pages/6_Inspect.py")
    bob_inspect.session_state["active_checkpoint"] = "alices-run"  # even asked for by name
    bob_inspect.run()
    assert not bob_inspect.exception, [e.message for e in bob_inspect.exception]
    assert "alices-run" not in active_choices(bob_inspect)
    assert next(s for s in bob_inspect.selectbox if s.label == "Active checkpoint").value != "alices-run"

    bob_draw = page("pages/7_Draw.py").run()
    assert not bob_draw.exception, [e.message for e in bob_draw.exception]
    assert any("**Your drawings:** 0 saved" in m.value for m in bob_draw.markdown)
    assert bob_draw.button(key="draw.finetune").disabled  # alice's drawing is not his to fine-tune on

    as_browser(ALICE)
    alice_train = page("pages/3_Train.py").run()
    assert "alices-run" in alice_train.selectbox(key="train.run_pick").options
    alice_train.selectbox(key="train.run_pick").set_value("alices-run").run()
    alice_train.text_input(key="train.new_name").set_value("renamed").run()
    next(b for b in alice_train.button if b.label == "Rename").click().run()
    assert not alice_train.exception and not alice_train.error, [e.value for e in alice_train.error]
    assert (runs / "owners" / ALICE / "renamed.json").exists()

    alice_draw = page("pages/7_Draw.py")
    alice_draw.session_state["active_checkpoint"] = "renamed"
    alice_draw.run()
    assert any("**Your drawings:** 1 saved" in m.value for m in alice_draw.markdown)
    alice_draw.button(key="draw.finetune").click().run()
    assert not alice_draw.exception and not alice_draw.error, [e.value for e in alice_draw.error]
    job = resources.runner().latest(ALICE, "train")
    assert job is not None and resources.runner().latest(BOB) is None
    # The page reran on submit: it names the run, and the sidebar (drawn before the button) already shows it.
    assert any(job.name in s.value and "sidebar" in s.value for s in alice_draw.success)
    shown = [m.value for m in alice_draw.sidebar.markdown] + [c.value for c in alice_draw.sidebar.caption]
    assert any(job.name in text for text in shown), shown  # its progress and Stop, or how it ended
    finished = resources.runner().wait(job.id, 240)
    assert finished.status == DONE, finished.message
    assert (runs / "owners" / ALICE / f"{job.name}.json").exists()  # saved into alice's folder, nobody else's

    as_browser(BOB)
    again = page("pages/3_Train.py").run()
    assert all(not name.startswith(("renamed", "alices")) for name in again.selectbox(key="train.run_pick").options)
    assert job.name not in again.selectbox(key="train.run_pick").options
    assert not (runs / "owners" / BOB).exists() or not list((runs / "owners" / BOB).glob("*.json"))


def test_locally_every_browser_shares_the_one_runs_folder(runs, data, monkeypatch, as_browser):
    monkeypatch.delenv("MNIST_HOSTED", raising=False)
    as_browser(ALICE)
    with owners.use(ALICE):  # locally this sets no folder of alice's own
        save(
            fit(TrainConfig(arch="mlp", model={"depth": 1, "width": 8}, max_batches=2, record=False), data),
            "shared-run",
        )
    as_browser(BOB)
    train = page("pages/3_Train.py").run()
    assert not train.exception
    assert "shared-run" in train.selectbox(key="train.run_pick").options
    assert (runs / "shared-run.json").exists() and not (runs / "owners").exists()


def test_deleting_drawings_in_hosted_mode_deletes_the_browsers_own(runs, monkeypatch, as_browser):
    monkeypatch.setenv("MNIST_HOSTED", "1")
    with owners.use(ALICE):
        for label in (1, 2):
            save_drawing(a_drawing(), label)
    as_browser(ALICE)
    draw = page("pages/7_Draw.py").run()
    draw.button(key="draw.delete_latest").click().run()
    assert any("Deleted your latest drawing (labelled 2)" in s.value for s in draw.success)
    with owners.use(ALICE):
        assert list(load_drawings().labels) == [1]
    draw.button(key="draw.delete_all").click().run()
    draw.button(key="draw.delete_all_yes").click().run()
    with owners.use(ALICE):
        assert len(load_drawings()) == 0
    assert not draw.exception


def test_builds_load_of_the_active_checkpoint_reads_the_browsers_own_run(runs, data, monkeypatch, as_browser):
    """Load runs as a button's callback, before the page body: it must still see the visitor's own runs."""
    monkeypatch.setenv("MNIST_HOSTED", "1")
    alices_run(data)
    as_browser(ALICE)
    build = page("pages/5_Build.py")
    build.session_state["active_checkpoint"] = "alices-run"
    build.run()
    mine = next(o for o in build.selectbox(key="build.start").options if "alices-run" in o)
    build.selectbox(key="build.start").set_value(mine).run()
    build.button(key="build.load").click().run()
    assert not build.exception, [e.message for e in build.exception]
    assert not build.error, [e.value for e in build.error]
    assert [text for _, text in build.session_state["build.stack"]] == ["flatten", "linear 8", "relu", "linear 10"]
    assert build.session_state["active_checkpoint"] == "alices-run"
