"""Faults in training jobs: any exception ends the job as failed and frees its slot; runs that stop
learning are told apart from runs that learn, with the likely cause, and keep weights that were good;
everything a run needs is checked before it starts."""

import json
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mnist_core.checkpoints import CheckpointError, CheckpointExistsError, file_sha256, load, reproduce_command
from mnist_core.drawing_store import delete_drawing, load_drawings, save_drawing
from mnist_core.reporter import DONE, FAILED
from mnist_core.runner import HostLimits, Runner
from mnist_core.train import ConfigError, TrainConfig, check_fits_in_memory, evaluate, fit, memory_needed

ROOT = Path(__file__).resolve().parent.parent


def compare_kind():
    from mnist_core.kinds import kind

    return kind("compare")


def compare_kind_work(spec):
    from mnist_core.kinds import work_compare
    from mnist_core.reporter import Reporter

    return work_compare(spec, Reporter())


SMALL = {"depth": 1, "width": 32}


def tiny(**changes):
    return TrainConfig(**{"arch": "mlp", "model": SMALL, "record": False, "max_batches": 5, **changes})


@pytest.fixture
def runner(runs):
    """The job runner as a tiny host runs it (threads), one job at a time."""
    made = Runner(HostLimits(max_jobs=1), backend="threads", runs_dir=runs)
    yield made
    made.shutdown()


def run_job(runner, owner, kind, config, name=None, overwrite=False):
    job = runner.submit(owner, kind, config.to_dict() if isinstance(config, TrainConfig) else config, name, overwrite)
    assert runner.wait(job.id, 120).ended, "the job never ended"
    return job


def test_fine_tuning_from_weights_that_do_not_load_fails_and_frees_the_slot(runner, runs):
    base = run_job(runner, "alice", "train", tiny(), "base")
    assert base.status == DONE
    run_job(runner, "alice", "train", tiny(model={"depth": 1, "width": 64}), "wider")
    # base's weights replaced by a wider net's, its recorded hash updated: it is listed, and fails to load
    (runs / "base.safetensors").write_bytes((runs / "wider.safetensors").read_bytes())
    meta = json.loads((runs / "base.json").read_text())
    meta["files"]["weights_sha256"] = file_sha256(runs / "base.safetensors")
    (runs / "base.json").write_text(json.dumps(meta))
    job = run_job(runner, "alice", "train", tiny(init_checkpoint="base"), "tuned")
    assert job.status == FAILED and job.message and job.stage == "done"
    assert runner.running_count() == 0
    other = run_job(runner, "bob", "train", tiny(), "bobs")  # the slot is free for everyone
    assert other.status == DONE, other.message


def test_a_comparison_whose_runs_cannot_start_ends_as_failed_and_frees_the_slot(runner, runs):
    # the arms are checked while a drawing exists; another tab deletes it before the runs start
    save_drawing(np.zeros((28, 28), dtype=np.uint8) + 200, 3)
    vanishing = {
        "base": tiny(drawings_share=0.1).to_dict(),
        "dimension": "optimizer",
        "values": ["SGD", "Adam"],
        "seeds": [0],
    }
    prepared = compare_kind().prepare(vanishing, runner.limits)
    for drawing in list(load_drawings().files):
        delete_drawing(drawing)
    spec = SimpleNamespace(
        id="v", kind="compare", owner="carol", config=prepared, name="vanish", overwrite=False, runs_dir=str(runs)
    )
    result = compare_kind_work(spec)
    assert result["status"] == FAILED and "drawings" in result["message"]  # it says why, it does not hang
    again = run_job(runner, "carol", "compare", {**vanishing, "base": tiny().to_dict()}, "again")
    assert again.status == DONE and [r["status"] for r in again.result["runs"]] == ["finished", "finished"]


@pytest.mark.parametrize(
    "config, cause, kept_accuracy",
    [
        # SGD at lr 1: the MLP learns a little, then falls back to chance (before: "finished" at 10%)
        (
            TrainConfig(arch="mlp", model=SMALL, optimizer="sgd", lr=1.0, max_batches=200, record=False),
            "learning rate",
            0.2,
        ),
        # BatchNorm at lr 1000 (before: a NaN, or a normal-looking run at 10%)
        (TrainConfig(arch="cnn", optimizer="sgd", lr=1000.0, max_batches=150, record=False), "learning rate", 0.0),
        # the largest weight decay the settings allow (1; 1000 is refused before the run) with a learning rate
        # under 10x SGD's usual: the hint names the weight decay, not the learning rate
        (
            TrainConfig(
                arch="mlp", model=SMALL, optimizer="sgd", lr=0.4, weight_decay=1.0, max_batches=150, record=False
            ),
            "weight decay",
            0.0,
        ),
    ],
)
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


def test_names_and_memory_are_checked_before_the_job_starts(runner, runs):
    for bad in ("...", "best"):
        with pytest.raises(CheckpointError):
            runner.submit("dan", "train", tiny().to_dict(), bad)
    assert runner.latest("dan") is None
    run_job(runner, "dan", "train", tiny(), "mine")
    with pytest.raises(CheckpointExistsError, match="exists already"):
        runner.submit("dan", "train", tiny().to_dict(), "mine")
    run_job(runner, "dan", "train", tiny(max_batches=7), "mine", overwrite=True)
    assert load("mine")[1]["steps"] == 7
    with pytest.raises(ConfigError, match=r"needs about \d+\.\d GB"):  # refused at submit, not when killed
        runner.submit("dan", "train", {"arch": "cnn", "model": {"channels": [512, 512, 512]}, "batch_size": 60_000})
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
    return subprocess.run(
        [sys.executable, *args[1:], "--max-batches", "2", "--overwrite"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_recorded_commands_of_train_and_compare_runs_run_as_printed(runner, runs):
    run_job(runner, "erin", "train", tiny(record=False, nesterov=False), "printed")
    comparison = run_job(
        runner,
        "erin",
        "compare",
        {"base": tiny().to_dict(), "dimension": "optimizer", "values": ["SGD", "Adam"], "seeds": [0]},
        "cmp-printed",
    )
    for name in ("printed", comparison.result["runs"][0]["checkpoint"]):
        command = load(name)[1]["command"]
        assert "--no-record" in command and " False" not in command
        done = run_printed(command, runs)
        assert done.returncode == 0, (command, done.stderr[-2000:])
    assert "--no-record" in reproduce_command(tiny())


def test_the_live_view_has_a_running_accuracy_and_a_steady_eta():
    import random

    from labui.charts import training_curves
    from mnist_core.kinds import TrainView

    job = TrainView(TrainConfig().to_dict())  # the start-up before the first batch is not in its elapsed times
    job.total_steps = 1000
    noise, elapsed, errors = random.Random(0), 0.0, []
    for step in range(1, 301):
        elapsed += noise.uniform(0.05, 0.15)  # a busy host: every batch takes 0.05 to 0.15 s, 0.1 s on average
        job.on_event(
            "batch", {"step": step, "epoch": 1, "loss": 2.0, "accuracy": 0.5, "images_per_s": 1.0, "elapsed": elapsed}
        )
        if step >= 30:
            truth = (1000 - step) * 0.1
            errors.append(abs(job.eta_seconds - truth) / truth)
    assert max(errors) < 0.3, max(errors)  # the old ETA counted the start-up: 3x the truth at step 30
    assert all(p["accuracy"] == 0.5 for p in job.batch_curve)  # a smoothed running accuracy from the first step
    fig = training_curves(
        job.batch_curve,
        [{"epoch": 1, "steps": 300, "train_loss": 1.0, "train_accuracy": 0.5, "test_loss": 1.0, "test_accuracy": 0.5}],
    )
    accuracy = [t for t in fig.data if t.name == "batch accuracy (smoothed)"]
    assert accuracy and len(accuracy[0].x) == 300
    assert fig.layout.xaxis.rangemode == "tozero"  # one epoch point is not drawn on an axis from 299 to 301


def test_runs_tables_show_a_sparse_nets_effective_parameter_count(runs):
    from labui.catalog import checkpoint_rows
    from mnist_core.checkpoints import find

    info = find("sparsenet")
    row = checkpoint_rows([info])[0]
    assert row["params"] == info.meta["effective_params"] < info.meta["params"]  # 72,266 of 669,706 weights
