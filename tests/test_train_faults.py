"""Faults in training jobs: any exception ends the job as failed and frees its slot; runs that stop
learning are told apart from runs that learn, with the likely cause, and keep weights that were good;
everything a run needs is checked before it starts."""

import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mnist_core import compare
from mnist_core.checkpoints import CheckpointError, CheckpointExistsError, file_sha256, load, reproduce_command
from mnist_core.drawings import delete_drawing, load_drawings, save_drawing
from mnist_core.jobs import HostLimits, JobManager
from mnist_core.train import ConfigError, TrainConfig, check_fits_in_memory, evaluate, fit, memory_needed

ROOT = Path(__file__).resolve().parent.parent
SMALL = {"depth": 1, "width": 32}


def tiny(**changes):
    return TrainConfig(**{"arch": "mlp", "model": SMALL, "record": False, "max_batches": 5, **changes})


def test_fine_tuning_from_weights_that_do_not_load_fails_and_frees_the_slot(data, runs):
    manager = JobManager(HostLimits(max_jobs=1))
    base = manager.start("alice", tiny(), data, "base")
    assert manager.wait(base, 60) and base.status == "finished"
    wider = manager.start("alice", tiny(model={"depth": 1, "width": 64}), data, "wider")
    assert manager.wait(wider, 60)
    # base's weights replaced by a wider net's, its recorded hash updated: it is listed, and fails to load
    (runs / "base.safetensors").write_bytes((runs / "wider.safetensors").read_bytes())
    meta = json.loads((runs / "base.json").read_text())
    meta["files"]["weights_sha256"] = file_sha256(runs / "base.safetensors")
    (runs / "base.json").write_text(json.dumps(meta))
    job = manager.start("alice", tiny(init_checkpoint="base"), data, "tuned")
    assert manager.wait(job, 60), "the job never ended"
    assert job.status == "failed" and job.message and job.stage == "done"
    assert manager.running_count() == 0
    other = manager.start("bob", tiny(), data, "bobs")  # the slot is free for everyone
    assert manager.wait(other, 60) and other.status == "finished", other.message


def test_a_comparison_whose_runs_raise_ends_each_as_failed_and_frees_the_slot(data, runs):
    # the arms are planned while a drawing exists; another tab deletes it before the runs start
    save_drawing(np.zeros((28, 28), dtype=np.uint8) + 200, 3)
    base = tiny(drawings_share=0.1)
    specs = compare.plan(base, compare.optimizer_arms(["SGD", "Adam"]), [0], "vanish")
    for drawing in list(load_drawings().files):
        delete_drawing(drawing)
    jobs = compare.ComparisonJobs(HostLimits(max_jobs=1))
    comparison = jobs.start("carol", "vanish", "optimizer", specs, data)
    deadline = time.time() + 60
    while comparison.running and time.time() < deadline:
        time.sleep(0.1)
    assert not comparison.running
    assert [r.job.status for r in comparison.runs] == ["failed", "failed"]
    assert all("drawings" in r.job.message for r in comparison.runs)
    again = jobs.start("carol", "again", "optimizer", compare.plan(tiny(), compare.optimizer_arms(["SGD", "Adam"]),
                                                                    [0], "again"), data)
    deadline = time.time() + 60
    while again.running and time.time() < deadline:
        time.sleep(0.1)
    assert [r.job.status for r in again.runs] == ["finished", "finished"]


@pytest.mark.parametrize("config, cause, kept_accuracy", [
    # SGD at lr 1: the MLP learns a little, then falls back to chance (before: "finished" at 10%)
    (TrainConfig(arch="mlp", model=SMALL, optimizer="sgd", lr=1.0, max_batches=200, record=False), "learning rate",
     0.2),
    # BatchNorm at lr 1000 (before: a NaN, or a normal-looking run at 10%)
    (TrainConfig(arch="cnn", optimizer="sgd", lr=1000.0, max_batches=150, record=False), "learning rate", 0.0),
    # a usual learning rate with a huge weight decay: the hint names the weight decay, not the learning rate
    (TrainConfig(arch="mlp", model=SMALL, optimizer="sgd", lr=0.05, weight_decay=1000.0, max_batches=150,
                 record=False), "weight decay", 0.0),
])
def test_a_run_that_stops_learning_fails_names_the_cause_and_keeps_good_weights(config, cause, kept_accuracy, data):
    result = fit(config, data)
    assert result.status == "failed", result.message
    diagnosis, hint = result.message.split(". ", 1)
    assert cause in hint, result.message
    kept = evaluate(result.model, data.test)
    assert math.isfinite(kept["loss"]) and kept["loss"] < 10  # before: the kept weights had a test loss of 3.5e30
    assert kept["accuracy"] >= kept_accuracy, (kept, result.message)
    assert result.test_accuracy is None  # the kept weights were not scored as the run's accuracy


def test_a_healthy_tiny_run_is_not_called_stuck(data):
    result = fit(tiny(max_batches=150), data)
    assert result.status == "finished" and "150-batch cap" in result.message


def test_names_and_memory_are_checked_before_the_job_starts(data, runs):
    manager = JobManager(HostLimits())
    for bad in ("...", "", "best"):
        if bad:
            with pytest.raises(CheckpointError):
                manager.start("dan", tiny(), data, bad)
    assert manager.latest("dan") is None
    job = manager.start("dan", tiny(), data, "mine")
    assert manager.wait(job, 60)
    with pytest.raises(CheckpointExistsError, match="exists already"):
        manager.start("dan", tiny(), data, "mine")
    job = manager.start("dan", tiny(max_batches=7), data, "mine", overwrite=True)
    assert manager.wait(job, 60) and load("mine")[1]["steps"] == 7
    huge = TrainConfig(arch="cnn", model={"channels": [512, 512, 512]}, batch_size=60_000)
    needed = memory_needed(huge)
    assert needed > 100 * 2**30  # 60,000 images through 512-channel blocks: hundreds of GB
    with pytest.raises(ConfigError, match=r"needs about \d+\.\d GB"):
        check_fits_in_memory(huge, available=16 * 2**30)
    check_fits_in_memory(tiny(), available=16 * 2**30)


def run_printed(command: str, runs: Path) -> subprocess.CompletedProcess:
    args = shlex.split(command)
    assert args[:3] == ["python", "-m", "mnist_core"]
    env = dict(os.environ, MNIST_RUNS_DIR=str(runs))
    return subprocess.run([sys.executable, *args[1:], "--max-batches", "2", "--overwrite"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_recorded_commands_of_train_and_compare_runs_run_as_printed(data, runs):
    manager = JobManager(HostLimits())
    job = manager.start("erin", tiny(record=False, nesterov=False), data, "printed")
    assert manager.wait(job, 60)
    specs = compare.plan(tiny(), compare.optimizer_arms(["SGD", "Adam"]), [0], "cmp-printed")
    jobs = compare.ComparisonJobs(HostLimits())
    comparison = jobs.start("erin", "cmp-printed", "optimizer", specs, data)
    deadline = time.time() + 60
    while comparison.running and time.time() < deadline:
        time.sleep(0.1)
    for name in ("printed", comparison.runs[0].job.checkpoint):
        command = load(name)[1]["command"]
        assert "--no-record" in command and " False" not in command
        done = run_printed(command, runs)
        assert done.returncode == 0, (command, done.stderr[-2000:])
    assert "--no-record" in reproduce_command(tiny())


def test_the_live_view_has_a_running_accuracy_and_a_steady_eta():
    import random

    from labui.charts import training_curves
    from mnist_core.jobs import Job

    job = Job("id", "me", "run", TrainConfig())
    job.started -= 20  # the job began 20 s ago: loading the data and building the model took that long
    job.total_steps = 1000
    noise, elapsed, errors = random.Random(0), 0.0, []
    for step in range(1, 301):
        elapsed += noise.uniform(0.05, 0.15)  # a busy host: every batch takes 0.05 to 0.15 s, 0.1 s on average
        job.on_event("batch", {"step": step, "epoch": 1, "loss": 2.0, "accuracy": 0.5, "images_per_s": 1.0,
                               "elapsed": elapsed})
        if step >= 30:
            truth = (1000 - step) * 0.1
            errors.append(abs(job.eta_seconds - truth) / truth)
    assert max(errors) < 0.3, max(errors)  # the old ETA counted the start-up: 3x the truth at step 30
    assert all(p["accuracy"] == 0.5 for p in job.batch_curve)  # a smoothed running accuracy from the first step
    fig = training_curves(job.batch_curve, [{"epoch": 1, "steps": 300, "train_loss": 1.0, "train_accuracy": 0.5,
                                             "test_loss": 1.0, "test_accuracy": 0.5}])
    accuracy = [t for t in fig.data if t.name == "batch accuracy (smoothed)"]
    assert accuracy and len(accuracy[0].x) == 300
    assert fig.layout.xaxis.rangemode == "tozero"  # one epoch point is not drawn on an axis from 299 to 301


def test_runs_tables_show_a_sparse_nets_effective_parameter_count(runs):
    from labui.state import checkpoint_rows
    from mnist_core.checkpoints import find

    info = find("sparsenet")
    row = checkpoint_rows([info])[0]
    assert row["params"] == info.meta["effective_params"] < info.meta["params"]  # 72,266 of 669,706 weights
