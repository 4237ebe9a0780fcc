"""Checkpoints: weights in safetensors, everything else in a JSON file beside them. Never pickle.

Two folders are searched: the user's runs (written by training) and the shipped checkpoints
(committed with the project). A name resolves to the runs folder first.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
import torch.nn as nn

from . import __version__
from .models import build_model, describe
from .probes import ProbeRecord, load_record, save_record
from .train import RunResult, TrainConfig

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_DIR = PROJECT_ROOT / "checkpoints"
RUNS_ENV = "MNIST_RUNS_DIR"
FORMAT_VERSION = 1
_NAME_OK = re.compile(r"[^A-Za-z0-9._-]+")


class CheckpointError(ValueError):
    """A checkpoint that is missing, damaged, or does not fit the architecture it claims."""


def runs_dir() -> Path:
    return Path(os.environ.get(RUNS_ENV) or PROJECT_ROOT / "runs")


def safe_name(name: str) -> str:
    """A file-name-safe version of a user's name: letters, digits, '.', '_', '-'; never a path."""
    cleaned = _NAME_OK.sub("-", str(name)).strip(".-")[:80]
    if not cleaned:
        raise CheckpointError(f"checkpoint name {name!r} has no usable characters; use letters, digits, '-' or '_'")
    return cleaned


def _paths(directory: Path, name: str) -> tuple[Path, Path]:
    directory = directory.resolve()
    base = (directory / safe_name(name)).resolve()
    if base.parent != directory:  # belt and braces: safe_name already removes separators
        raise CheckpointError(f"checkpoint name {name!r} would leave {directory}")
    # Not with_suffix(): a name such as "run-1.2" would lose its ".2".
    return base.parent / f"{base.name}.safetensors", base.parent / f"{base.name}.json"


def probes_path(weights_path: Path) -> Path:
    # "<name>.safetensors.probes" (a safetensors file): no checkpoint name can produce this path.
    return weights_path.parent / (weights_path.name + ".probes")


def load_probes(info: "CheckpointInfo") -> ProbeRecord | None:
    """The training history recorded with a checkpoint, if it has one."""
    return load_record(probes_path(info.weights_path)) if info.meta.get("probes") else None


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename: a crash leaves the old file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _versions() -> dict:
    return {"mnist_core": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def reproduce_command(config: TrainConfig, name: str | None = None) -> str:
    """The CLI command that trains the same run again."""
    default = TrainConfig()
    parts = ["python -m mnist_core train", f"--arch {config.arch}"]
    for key, value in config.to_dict().items():
        if key in ("arch", "model") or value == getattr(default, key) or value is None:
            continue
        flag = "--" + key.replace("_", "-")
        parts.append(flag if value is True else f"{flag} {value}")
    for key, value in config.model.items():
        text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value
        parts.append(f"--set {shlex.quote(f'{key}={text}')}")  # quoted: a layer list has spaces
    if name:
        parts.append(f"--name {name}")
    return " ".join(parts)


def save(result: RunResult, name: str, directory: Path | None = None, extra: dict | None = None) -> str:
    """Save a run's weights and metadata; returns the (sanitized) name it was saved under."""
    directory = directory or runs_dir()
    name = safe_name(name)
    weights_path, meta_path = _paths(directory, name)
    model = result.model
    card = describe(model)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {
        "format": FORMAT_VERSION,
        "name": name,
        "arch": result.config.arch,
        "model_config": result.config.model,
        "train_config": result.config.to_dict(),
        "seed": result.config.seed,
        "status": result.status,
        "message": result.message,
        "history": result.history,
        "test_accuracy": result.test_accuracy,
        "epochs_done": len(result.history),
        "steps": result.steps,
        "params": card.params,
        "effective_params": card.effective_params,
        "macs": card.macs,
        "train_seconds": round(result.seconds, 2),
        "device": result.device,
        "versions": _versions(),
        "command": reproduce_command(result.config, name),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    if result.probes is not None and len(result.probes):
        meta["probes"] = {"snapshots": len(result.probes), "every": result.probes.every}
    # Weights first, metadata last: a checkpoint counts as present only once its JSON exists.
    _atomic_write(weights_path, lambda tmp: safetensors.torch.save_file(state, tmp, metadata={"name": name}))
    if "probes" in meta:
        _atomic_write(probes_path(weights_path), lambda tmp: save_record(result.probes, Path(tmp)))
    _atomic_write(meta_path, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=1)))
    return name


@dataclass
class CheckpointInfo:
    name: str
    source: str  # "runs" or "shipped"
    meta: dict
    weights_path: Path
    meta_path: Path


def _read_meta(meta_path: Path) -> dict:
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{meta_path}: unreadable metadata ({exc})") from None
    if not isinstance(meta, dict) or "arch" not in meta:
        raise CheckpointError(f"{meta_path}: metadata has no 'arch'; not a checkpoint of this project")
    return meta


def list_checkpoints(directories: dict[str, Path] | None = None) -> list[CheckpointInfo]:
    """Every readable checkpoint, runs first then shipped; damaged ones are skipped."""
    directories = directories or {"runs": runs_dir(), "shipped": SHIPPED_DIR}
    found: list[CheckpointInfo] = []
    for source, directory in directories.items():
        if not directory.is_dir():
            continue
        for meta_path in sorted(directory.glob("*.json")):
            weights_path = meta_path.with_suffix(".safetensors")
            if not weights_path.exists():
                continue
            try:
                meta = _read_meta(meta_path)
            except CheckpointError:
                continue
            found.append(CheckpointInfo(meta_path.stem, source, meta, weights_path, meta_path))
    return found


def find(name: str, directories: dict[str, Path] | None = None) -> CheckpointInfo:
    wanted = safe_name(name)
    for info in list_checkpoints(directories):
        if info.name == wanted:
            return info
    raise CheckpointError(f"no checkpoint named {name!r}; `python -m mnist_core list` shows the available ones")


def load(name: str, expected_arch: str | None = None, device: str | torch.device = "cpu",
         directories: dict[str, Path] | None = None) -> tuple[nn.Module, dict]:
    """Rebuild the model a checkpoint describes and load its weights; returns (model in eval mode, metadata)."""
    info = find(name, directories)
    meta = info.meta
    if expected_arch is not None and meta["arch"] != expected_arch:
        raise CheckpointError(f"checkpoint {info.name!r} is a {meta['arch']} model, not {expected_arch}")
    try:
        model = build_model(meta["arch"], meta.get("model_config") or {})
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {info.name!r}: cannot rebuild {meta['arch']}: {exc}") from None
    try:
        state = safetensors.torch.load_file(str(info.weights_path))
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{info.weights_path}: unreadable weights ({exc})") from None
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong_shape = [k for k in set(expected) & set(state) if expected[k].shape != state[k].shape]
    if missing or unexpected or wrong_shape:
        raise CheckpointError(
            f"checkpoint {info.name!r} does not match architecture {meta['arch']}: "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong_shape[:3]}"
        )
    model.load_state_dict(state)
    return model.to(device).eval(), meta


def delete(name: str) -> None:
    """Delete a user run (shipped checkpoints are part of the project and cannot be deleted here)."""
    info = find(name)
    if info.source != "runs":
        raise CheckpointError(f"{info.name!r} is a shipped checkpoint; only your own runs can be deleted")
    info.meta_path.unlink()
    info.weights_path.unlink(missing_ok=True)
    probes_path(info.weights_path).unlink(missing_ok=True)


def rename(name: str, new_name: str) -> str:
    info = find(name)
    if info.source != "runs":
        raise CheckpointError(f"{info.name!r} is a shipped checkpoint; only your own runs can be renamed")
    new = safe_name(new_name)
    weights_path, meta_path = _paths(info.meta_path.parent, new)
    if meta_path.exists():
        raise CheckpointError(f"a checkpoint named {new!r} already exists; choose another name")
    meta = dict(info.meta, name=new)
    os.replace(info.weights_path, weights_path)
    if probes_path(info.weights_path).exists():
        os.replace(probes_path(info.weights_path), probes_path(weights_path))
    _atomic_write(meta_path, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=1)))
    info.meta_path.unlink()
    return new
