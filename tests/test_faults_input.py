"""Fault suite, input: every option of every CLI subcommand with bad values, damaged data files and
SHA256SUMS, hostile names. Each bad input must cost one line on stderr and exit status 2 (never a
traceback), be refused before any training, and leave what was saved earlier as it was.

The CLI runs in-process (main()) on a tiny MNIST-shaped data set, so the suite stays fast; one case runs
the real `python -m mnist_core` to show the same answer from the command line."""

import dataclasses
import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnist_core import __main__ as cli
from mnist_core.checkpoints import save
from mnist_core.data import DataError, read_idx
from mnist_core.train import TrainConfig

ROOT = Path(__file__).resolve().parent.parent


def idx_bytes(array: np.ndarray, dtype_code: int = 0x08) -> bytes:
    header = bytes([0, 0, dtype_code, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def tiny_set(folder: Path, **replace) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (200, 28, 28))),
        "train-labels-idx1-ubyte": idx_bytes(rng.integers(0, 10, 200)),
        "t10k-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (20, 28, 28))),
        "t10k-labels-idx1-ubyte": idx_bytes(rng.integers(0, 10, 20)),
    }
    files.update(replace)
    for name, content in files.items():
        (folder / f"{name}.gz").write_bytes(gzip.compress(content))
    return folder


def earlier_run(runs: Path) -> dict:
    import torch

    from mnist_core.models import build_model
    from mnist_core.train import RunResult

    config = TrainConfig(arch="mlp", model={"width": 16})
    model = build_model("mlp", config.model)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.25)
    save(RunResult(model, config, "finished", [], 1.0, "cpu", steps=1), "earlier")
    return {p.name: p.read_bytes() for p in runs.iterdir()}


def one_line_exit_2(capsys, argv, message):
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, (argv, captured.err)
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("python -m mnist_core: error: "), lines[0]
    assert message in lines[0], lines[0]
    assert "Traceback" not in captured.err and "steps in" not in captured.out  # refused before training
    return lines[0]


NAN_IS_BAD = [f.name for f in dataclasses.fields(TrainConfig) if f.type.startswith("float")]
NEGATIVE_IS_BAD = [f.name for f in dataclasses.fields(TrainConfig) if f.type.startswith("int")]


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


BAD_TRAIN_OPTIONS = (
    [([flag(n), "nan"], "") for n in NAN_IS_BAD]
    + [([flag(n), "-5"], "") for n in NEGATIVE_IS_BAD]
    + [([flag(n), "x"], "invalid") for n in NAN_IS_BAD + NEGATIVE_IS_BAD]
    + [
        (["--seed", "99999999999999999999999"], "seed must be a whole number"),
        (["--optimizer", "bogus"], "invalid choice"),
        (["--schedule", "bogus"], "invalid choice"),
        (["--device", "foo"], "device 'foo' is not a device name"),
        (["--device", "cuda:99"], "device 'cuda:99'"),
        (["--init-checkpoint", "../nope"], "cannot start from checkpoint"),
        (["--preset", "nope"], "invalid choice"),
        (["--arch", "nope"], "invalid choice"),
        (["--set", "width"], "--set takes KEY=VALUE"),
        (["--set", "nonsense=1"], "has no setting"),
        (["--set", "channels=8,8,8,8,8"], "channels: 5 blocks"),
        (["--set", "dropout=nan"], "dropout must be between 0 and 0.9 (got nan)"),
        (["--set", "dropout=2"], "dropout must be between 0 and 0.9 (got 2)"),
        (["--layers", "conv 8 3, flatten, linear 7"], ""),
        (["--name", "..."], "no usable characters"),
        (["--name", "数字"], "no usable characters"),
        (["--name", "x" * 200], "at most 80"),
        (["--name", "best"], "shipped checkpoint"),
        (["--name", "earlier"], "already exists"),
        (["--out", "/proc/self"], "cannot save there"),
        (["--out", "README.md"], "is a file, not a folder"),
        (["--out", "/dev/null/x"], "cannot save there"),
        (["--data", "/nonexistent"], "no such folder"),
        (["--data", "README.md"], "is a file, not a folder"),
        (["--batch-size", "1000"], "larger than the 200 training images"),
        (["--record-every", "0"], "record every"),
        (["--dry-run=1"], "ignored explicit argument"),
        (["--bogus"], "unrecognized arguments"),
    ]
)


@pytest.mark.parametrize(
    "options, message", BAD_TRAIN_OPTIONS, ids=lambda v: " ".join(v)[:40] if isinstance(v, list) else None
)
def test_every_bad_train_option_is_one_line_and_exit_2(runs, tmp_path, capsys, options, message):
    before = earlier_run(runs)
    data = tiny_set(tmp_path / "data")
    argv = ["train", "--arch", "mlp", "--max-batches", "1", "--quiet", "--data", str(data), *options]
    if options[0] == "--set" and "channels" in options[1]:
        argv[2] = "cnn"
    if options[0] == "--data":
        argv = ["train", "--arch", "mlp", "--max-batches", "1", "--quiet", *options]
    one_line_exit_2(capsys, argv, message)
    assert {p.name: p.read_bytes() for p in runs.iterdir()} == before  # nothing earlier lost or changed


@pytest.mark.parametrize(
    "argv, message",
    [
        (["eval", "../../etc/passwd"], "no checkpoint named"),
        (["eval", "/etc/passwd"], "no checkpoint named"),
        (["eval", "best", "--data", "/nonexistent"], "no such folder"),
        (["eval"], "the following arguments are required: name"),
        (["list", "extra"], "unrecognized arguments"),
        (["presets", "--x"], "unrecognized arguments"),
        (["export", "no-such-run", "--format", "onnx", "--out", "x.onnx"], "no checkpoint named"),
        (["export", "best", "--format", "bogus", "--out", "x"], "invalid choice"),
        (["nonsense"], "invalid choice"),
        ([], "the following arguments are required: command"),
    ],
)
def test_other_subcommands_answer_bad_input_in_one_line(runs, capsys, argv, message):
    before = earlier_run(runs)
    line = one_line_exit_2(capsys, argv, message)
    assert "mnist_core mnist_core" not in line
    assert {p.name: p.read_bytes() for p in runs.iterdir()} == before


def test_list_survives_every_kind_of_damaged_checkpoint(runs, capsys):
    earlier_run(runs)
    (runs / "claims.json").write_text(json.dumps({"arch": "mlp", "test_accuracy": "high"}))
    (runs / "claims.safetensors").write_bytes(b"")
    (runs / "latin.json").write_bytes(b"\xff\xfe")
    (runs / "pickled.json").write_text(json.dumps({"arch": "mlp", "test_accuracy": 0.9999}))
    (runs / "pickled.safetensors").write_bytes(b"\x80\x04\x95" + b"\x00" * 64)
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("claims", "latin", "pickled"):
        line = next(line for line in out.splitlines() if line.startswith(name))
        assert "unreadable" in line and "99.99%" not in line
    assert next(line for line in out.splitlines() if line.startswith("earlier"))


def test_damaged_data_files_are_one_line_each(tmp_path, capsys):
    good = np.zeros((200, 28, 28))
    cases = {
        "truncated": {"train-images-idx3-ubyte": idx_bytes(good)[:-100]},
        "wrong magic": {"train-images-idx3-ubyte": b"\x01\x02" + idx_bytes(good)[2:]},
        "not gzip": None,
    }
    for label, replace in cases.items():
        folder = tiny_set(tmp_path / label.replace(" ", "-"), **(replace or {}))
        if replace is None:
            (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"plain bytes")
        one_line_exit_2(
            capsys,
            ["train", "--data", str(folder), "--max-batches", "1"],
            {"truncated": "truncated", "wrong magic": "bad magic number", "not gzip": "not a readable gzip file"}[
                label
            ],
        )


@pytest.mark.parametrize(
    "sums, message",
    [
        (b"\xff\xfe\x00junk", "not UTF-8 text"),
        (b"nonsense line\n", "line 1 is not"),
        (None, "not listed in SHA256SUMS"),
    ],
)
def test_a_bad_or_partial_sha256sums_is_one_line(tmp_path, capsys, sums, message):
    folder = tiny_set(tmp_path / "data")
    if sums is None:  # sums of the .gz files beside a raw file: the raw one is not trusted
        lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n" for p in sorted(folder.glob("*.gz"))]
        sums = "".join(lines).encode()
        raw = folder / "t10k-labels-idx1-ubyte.gz"
        (folder / "t10k-labels-idx1-ubyte").write_bytes(gzip.decompress(raw.read_bytes()))
        raw.unlink()
    (folder / "SHA256SUMS").write_bytes(sums)
    one_line_exit_2(capsys, ["train", "--data", str(folder), "--max-batches", "1"], message)


def test_idx_reader_refuses_wrong_magic_and_truncation(tmp_path):
    path = tmp_path / "x-idx1-ubyte"
    path.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02")
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)
    path.write_bytes(b"PK\x03\x04rest")
    with pytest.raises(DataError, match="bad magic number"):
        read_idx(path)


def test_the_real_command_line_gives_the_same_one_line_answer(tmp_path):
    env = dict(os.environ, PYTHONWARNINGS="ignore", MNIST_RUNS_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "mnist_core", "train", "--out", "/proc/self", "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "--out /proc/self: cannot save there" in done.stderr


def test_every_page_lists_damaged_checkpoints_as_unreadable_with_the_reason(runs):
    from streamlit.testing.v1 import AppTest

    runs.mkdir(parents=True, exist_ok=True)
    (runs / "claims.json").write_text(json.dumps({"arch": "mlp", "test_accuracy": "high"}))
    (runs / "claims.safetensors").write_bytes(b"")
    (runs / "pickled.json").write_text(json.dumps({"arch": "mlp", "test_accuracy": 0.9999}))
    (runs / "pickled.safetensors").write_bytes(b"\x80\x04\x95" + b"\x00" * 64)
    root = Path(__file__).resolve().parent.parent
    at = AppTest.from_file(str(root / "app.py"), default_timeout=120).run()
    assert not at.exception
    listed = " ".join(c.value for c in at.sidebar.caption)
    assert "**claims** (runs)" in listed and "**pickled** (runs)" in listed
    assert "99.99" not in listed  # the accuracy a damaged JSON claims is never shown
    names = [n for df in at.dataframe if "name" in df.value.columns for n in df.value["name"]]
    assert "claims" not in names and "pickled" not in names  # never offered as usable checkpoints
