"""The job kinds: each checks its config at submit, runs its work with one reporter, and returns a plain result."""

import json
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from mnist_core import kinds
from mnist_core.checkpoints import find, load
from mnist_core.jobs import HostLimits
from mnist_core.reporter import DONE, STOPPED, Reporter, collecting_reporter
from mnist_core.train import ConfigError, evaluate

ROOT = Path(__file__).resolve().parent.parent
SMALL = {"arch": "mlp", "model": {"depth": 1, "width": 16}, "record": False}
TWO_EPOCHS = {**SMALL, "train_subset": 500, "batch_size": 100, "epochs": 2}


def spec(kind, config, name=None, runs_dir=None, overwrite=False):
    """What the runner sends to a worker (a JobSpec's fields)."""
    return SimpleNamespace(id="test", kind=kind, owner="me", config=config, name=name, overwrite=overwrite,
                           runs_dir=str(runs_dir) if runs_dir else None)


def test_every_kind_names_its_page_and_its_work_function():
    for name, k in kinds.KINDS.items():
        assert k.name == name and (ROOT / k.page).is_file(), name
        assert callable(kinds.work_function(name)), name
    with pytest.raises(ValueError, match="unknown job kind 'nope'"):
        kinds.kind("nope")


def test_train_prepare_checks_settings_and_applies_the_hosts_caps():
    with pytest.raises(ConfigError, match="unknown training setting 'epoch'"):
        kinds.kind("train").prepare({**SMALL, "epoch": 3}, HostLimits())
    with pytest.raises(ConfigError, match="learning rate"):
        kinds.kind("train").prepare({**SMALL, "lr": -1.0}, HostLimits())
    JobRefused = pytest.importorskip("mnist_core.runner").JobRefused  # until the runner lands

    with pytest.raises(JobRefused, match="at most 2 epochs per run .*MNIST_MAX_EPOCHS.*pass over the training"):
        kinds.kind("train").prepare({**SMALL, "epochs": 3}, HostLimits(max_epochs=2))
    config = kinds.kind("train").prepare({**SMALL, "epochs": 2}, HostLimits(max_epochs=2, max_run_seconds=5.0))
    assert config["epochs"] == 2 and config["max_seconds"] == 5.0


def test_train_view_smooths_curves_and_keeps_a_steady_eta():
    view = kinds.kind("train").view({**SMALL, "epochs": 3, "max_batches": 1000})
    elapsed, step = 0.0, 0
    for second in range(20):  # 10 steps a second, then one second where a page stole the CPU
        rate = 1 if second == 15 else 10
        for _ in range(rate):
            step += 1
            elapsed += 1.0 / rate
            view.on_event("batch", {"step": step, "epoch": 1, "loss": 1.0 if step > 1 else 3.0, "accuracy": 0.5,
                                    "images_per_s": 0.0, "elapsed": elapsed})
    assert view.total_steps == 1000
    assert 60 < view.eta_seconds < 150  # about (1000 - 191) / 10 steps a second, not 809 s at the stall's rate
    assert view.batch_curve[1]["loss"] == pytest.approx(0.9 * 3.0 + 0.1 * 1.0)
    snapshot = view.snapshot()
    view.on_event("epoch", {"epoch": 1, "test_accuracy": 0.9})
    assert snapshot.epochs == [] and view.epochs[-1]["test_accuracy"] == 0.9


def test_train_work_saves_the_run_and_reports_through_one_reporter(runs):
    reporter, events = collecting_reporter()
    result = kinds.work_train(spec("train", {**TWO_EPOCHS}, "kind-run", runs), reporter)
    assert result["status"] == DONE and result["checkpoint"] == "kind-run", result
    names = {name for name, _ in events}
    assert {"stage", "progress", "batch", "epoch"} <= names
    progress = [d for name, d in events if name == "progress"]
    assert progress[-1] == {"done": 10, "total": 10}
    meta = find("kind-run").meta
    assert meta["epochs_done"] == 2 and "partial" not in meta  # the final save replaced the partial one
    json.dumps(result)  # plain values only: it crosses processes


def test_train_work_stops_on_request_keeping_what_was_learned(runs):
    stop = threading.Event()
    reporter = Reporter(lambda name, d: name == "batch" and d["step"] >= 3 and stop.set(), stop)
    result = kinds.work_train(spec("train", {**SMALL, "epochs": 3}, "stopped-run", runs), reporter)
    assert result["status"] == STOPPED and "stopped by request" in result["message"]
    assert result["checkpoint"] == "stopped-run" and result["steps"] <= 4


def test_train_work_fails_with_a_reason_instead_of_raising(runs):
    result = kinds.work_train(spec("train", {**SMALL, "init_checkpoint": "no-such-run"}, "x", runs), Reporter())
    assert result["status"] == "failed" and "no-such-run" in result["message"]


KILLED_SCRIPT = """
import os, sys
sys.path.insert(0, sys.argv[1])
from types import SimpleNamespace
from mnist_core.kinds import work_train
from mnist_core.reporter import Reporter
seen = {"epochs": 0}
def on_event(name, data):
    if name == "epoch":
        seen["epochs"] += 1
    if name == "batch" and seen["epochs"] == 1 and data["step"] == 7:
        os._exit(9)  # the worker dies mid-epoch 2, as under kill -9 or the out-of-memory killer
config = dict(arch="mlp", model={"depth": 1, "width": 16}, record=False, train_subset=500, batch_size=100, epochs=3)
work_train(SimpleNamespace(id="k", kind="train", owner="me", config=config, name="killed", overwrite=False,
                           runs_dir=sys.argv[2]), Reporter(on_event))
"""


def test_a_killed_training_worker_leaves_its_last_completed_epoch_loadable_and_marked_partial(tmp_path, monkeypatch,
                                                                                               data):
    done = subprocess.run([sys.executable, "-c", KILLED_SCRIPT, str(ROOT), str(tmp_path)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 9, done.stderr[-2000:]
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path))
    info = find("killed")
    assert info.meta["partial"] is True and info.meta["epochs_done"] == 1 and info.meta["steps"] == 5
    model, meta = load("killed")
    assert evaluate(model, data.test)["accuracy"] == meta["history"][0]["test_accuracy"]  # epoch 1's weights
