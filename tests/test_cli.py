import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def cli(*args, env_extra=None):
    env = dict(os.environ, PYTHONWARNINGS="ignore", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "mnist_core", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=env)


@pytest.mark.parametrize("args, message", [
    (["train", "--arch", "resnet"], "invalid choice: 'resnet'"),
    (["train", "--lr", "-1"], "learning rate must be a positive number"),
    (["train", "--epochs", "many"], "invalid int value"),
    (["train", "--set", "width"], "--set takes KEY=VALUE"),
    (["train", "--arch", "mlp", "--set", "depth=two"], "--set depth"),
    (["train", "--batch-size", "100000"], "larger than the 60000 training images"),
    (["eval", "no-such-model"], "no checkpoint named 'no-such-model'"),
    (["train", "--data", "/nonexistent"], "no such folder"),
])
def test_bad_options_exit_nonzero_with_one_clear_line(args, message):
    done = cli(*args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert message in lines[0]


def test_dry_run_trains_a_few_batches_and_saves_nothing(tmp_path):
    done = cli("train", "--preset", "fast", "--dry-run", "--quiet", env_extra={"MNIST_RUNS_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert "stopped: 5 steps" in done.stdout and "nothing saved" in done.stdout
    assert not any(tmp_path.iterdir())


def test_train_then_list_then_eval(tmp_path):
    env = {"MNIST_RUNS_DIR": str(tmp_path)}
    done = cli("train", "--arch", "mlp", "--set", "width=64", "--max-batches", "50", "--name", "cli test", env_extra=env)
    assert done.returncode == 0, done.stderr
    assert "saved checkpoint 'cli-test'" in done.stdout
    assert "epoch 1" in done.stderr  # the progress line
    meta = json.loads((tmp_path / "cli-test.json").read_text())
    assert meta["model_config"] == {"width": 64}
    listing = cli("list", env_extra=env)
    assert "cli-test" in listing.stdout and "runs" in listing.stdout
    evaluated = cli("eval", "cli-test", env_extra=env)
    assert evaluated.returncode == 0
    assert f"test accuracy {meta['test_accuracy']:.2%}" in evaluated.stdout
