"""Exports: a standalone training script that really trains, ONNX that predicts like PyTorch, the run's files."""

import ast
import csv
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch

from mnist_core import checkpoints, export
from mnist_core.data import DeviceData
from mnist_core.models import build_model
from mnist_core.starting import load_starting_point
from mnist_core.train import TrainConfig, fit

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ["fast", "cnn", "tiny_gap", "conv2_fc2", "conv_fc", "mlp", "columnet", "sparsenet"]  # trained from scratch
# best is fine-tuned (from the MNIST-only best, on styled drawings): no standalone script can reproduce it


def test_the_fine_tuned_shipped_best_has_no_script_and_says_why():
    with pytest.raises(
        export.ExportError,
        match="checkpoint 'best' was fine-tuned from an earlier 'best'; .*export its weights or ONNX",
    ):
        export.script_text(checkpoints.find("best"))


def run_script(path: Path, *args, timeout=300):
    return subprocess.run(
        [sys.executable, str(path), "--data", str(ROOT / "data" / "mnist"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=path.parent,
    )


def load_script(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem.replace("-", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_checkpoint_exports_a_script_that_imports_only_torch_and_numpy(name, tmp_path):
    text = export.script_text(checkpoints.find(name))
    imported = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported - {"argparse", "gzip", "math", "time", "pathlib"} == {"numpy", "torch"}
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    meta = checkpoints.find(name).meta
    torch.manual_seed(meta["seed"])
    ours = load_script(path).Net().state_dict()
    torch.manual_seed(meta["seed"])
    theirs = build_model(meta["arch"], meta["model_config"]).state_dict()
    assert ours.keys() == theirs.keys()  # so the exported safetensors file loads into the script's Net
    if name != "conv_fc":  # its builder makes the head first; the script says so
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), "the script must start from the same weights"
    else:
        assert "another order" in text


def test_the_fast_script_trains_for_a_short_recipe_loss_falls_and_accuracy_is_well_above_chance(tmp_path):
    path = tmp_path / "fast.py"
    path.write_text(export.script_text(checkpoints.find("fast")))
    done = run_script(path, "--max-batches", "40", "--log-every", "5", "--save", str(tmp_path / "w.npz"))
    assert done.returncode == 0, done.stderr
    losses = [float(x) for x in re.findall(r"step \d+: loss ([\d.]+)", done.stdout)]
    assert len(losses) == 8 and losses[-1] < 0.7 * losses[0], done.stdout
    accuracy = float(re.search(r"test accuracy: ([\d.]+)", done.stdout).group(1))
    assert accuracy > 0.7, done.stdout  # chance is 0.1
    weights = dict(__import__("numpy").load(tmp_path / "w.npz"))
    assert set(weights) == set(checkpoints.load("fast")[0].state_dict())


def test_a_script_reproduces_its_run_with_every_recipe_option(mnist, runs, tmp_path):
    """A built stack with augmentation, a validation split, a balanced subset, SGD + step decay and clipping:
    the script reaches the accuracy the app's run reached (same weights, same data order, same draws)."""
    config = TrainConfig(
        arch="stack",
        model={
            "layers": [
                "conv 8 3 p=1",
                "relu",
                "bn",
                "maxpool 2",
                "residual",
                "dropout 0.1",
                "maxpool 2",
                "flatten",
                "linear 10",
            ]
        },
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        nesterov=True,
        schedule="step",
        step_size=1,
        gamma=0.5,
        weight_decay=1e-4,
        grad_clip=2.0,
        rotation=8.0,
        shift=1.0,
        label_smoothing=0.1,
        val_size=1000,
        train_subset=2000,
        batch_size=100,
        epochs=2,
        device="cpu",
        record=False,
    )
    result = fit(config, DeviceData(mnist, device="cpu", val_size=config.val_size))
    assert result.status == "finished"
    checkpoints.save(result, "recipe")
    path = tmp_path / "recipe.py"
    path.write_text(export.script_text(checkpoints.find("recipe")))
    done = run_script(path)
    assert done.returncode == 0, done.stderr
    accuracy = float(re.search(r"test accuracy: ([\d.]+)", done.stdout).group(1))
    assert abs(accuracy - result.test_accuracy) <= 0.003, (accuracy, result.test_accuracy)
    train_losses = [float(x) for x in re.findall(r"epoch \d+: train loss ([\d.]+)", done.stdout)]
    assert train_losses == pytest.approx([e["train_loss"] for e in result.history], abs=2e-3)  # the same trajectory
    assert "val loss" in done.stdout


def test_onnx_predicts_the_same_digits_as_pytorch_on_the_whole_test_set(data):
    model, _ = checkpoints.load("tiny_gap")
    check = export.check_onnx(export.onnx_bytes(model), model, data.test.images)
    assert check["total"] == 10_000
    assert check["agree"] == 10_000
    assert check["max_abs_diff"] < 1e-3


def test_onnx_of_a_built_stack_with_a_residual_block_matches_too(data):
    model = build_model(
        "stack", {"layers": ["conv 4 3 p=1", "silu", "residual", "avgpool 2", "flatten", "bn", "linear 10"]}
    ).eval()
    check = export.check_onnx(export.onnx_bytes(model), model, data.test.images[:2000])
    assert check["agree"] == 2000 and check["max_abs_diff"] < 1e-3


def test_the_files_are_the_weights_the_json_and_the_curves():
    info = checkpoints.find("best")
    files = export.run_files(info)
    assert set(files) == {"best.safetensors", "best.json", "best-curves.csv"}
    weights = safetensors.torch.load(files["best.safetensors"])
    state = checkpoints.load("best")[0].state_dict()
    assert all(torch.equal(weights[k], state[k]) for k in state)
    assert json.loads(files["best.json"])["arch"] == "cnn"
    rows = list(csv.DictReader(io.StringIO(files["best-curves.csv"].decode())))
    assert len(rows) == len(info.meta["history"]) >= 1
    assert float(rows[-1]["test_accuracy"]) == info.meta["test_accuracy"]


def cli(*args, env_extra=None):
    env = dict(os.environ, PYTHONWARNINGS="ignore", **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "mnist_core", *args], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env
    )


def test_the_cli_exports_each_format(tmp_path):
    done = cli("export", "fast", "--format", "script", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "fast.py").read_text().startswith("#!/usr/bin/env python3")
    done = cli("export", "fast", "--format", "onnx", "--out", str(tmp_path / "f.onnx"))
    assert done.returncode == 0, done.stderr
    assert "agree on 10,000 of 10,000 test digits" in done.stdout
    done = cli("export", "fast", "--format", "safetensors", "--out", str(tmp_path / "files"))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "files").iterdir()) == [
        "fast-curves.csv",
        "fast.json",
        "fast.safetensors",
    ]


@pytest.fixture
def fine_tuned(runs, data):
    config = TrainConfig(arch="fast", init_checkpoint="fast", max_batches=2, device="cpu", record=False)
    checkpoints.save(fit(config, data, model=load_starting_point(config).model), "tuned")
    return runs


def test_bad_exports_exit_2_with_one_line(tmp_path, fine_tuned):
    (tmp_path / "taken.py").write_text("mine")
    env = {"MNIST_RUNS_DIR": str(fine_tuned)}
    cases = [
        (["nope", "--format", "script", "--out", str(tmp_path / "x.py")], "no checkpoint named 'nope'"),
        (["fast", "--format", "script", "--out", str(tmp_path / ".." / "x.py")], "contains '..'"),
        (["fast", "--format", "onnx", "--out", str(tmp_path / "missing" / "x.onnx")], "does not exist"),
        (["fast", "--format", "script", "--out", str(tmp_path / "taken.py")], "already exists"),
        (["fast", "--format", "pdf", "--out", str(tmp_path / "x.pdf")], "invalid choice: 'pdf'"),
        (["tuned", "--format", "script", "--out", str(tmp_path / "t.py")], "was fine-tuned from 'fast'"),
    ]
    for args, words in cases:
        done = cli("export", *args, env_extra=env)
        assert done.returncode == 2, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], done.stderr
    assert (tmp_path / "taken.py").read_text() == "mine"  # nothing lost
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        done = cli("export", "fast", "--format", "script", "--out", str(locked / "x.py"))
        assert done.returncode == 2 and "no permission" in done.stderr
