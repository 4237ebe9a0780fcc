"""Checkpoints: weights in safetensors, everything else in a JSON file beside them. Never pickle.

Two folders are searched: the user's runs (written by training) and the shipped checkpoints
(committed with the project). The shipped names are reserved: a run cannot take one, and a name
that is both (an older run) resolves to the shipped checkpoint.

A save is whole or absent, even under kill -9: every file is first written under a unique temporary
name, then, holding the folder's lock, the files are renamed into place with the JSON last. The JSON
records the SHA-256 of the weights and the history beside it, checked on load, so a checkpoint whose
files do not belong together (a save interrupted on a file system without the lock, a hand edit) is
reported, never loaded with the wrong metadata. Files left by an interrupted save are removed by the
next save into the folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import platform
import re
import shlex
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
import torch.nn as nn

from . import __version__, owners
from .files import (
    StagedFiles,
    link_or_copy_atomic,
    remove_stale_temporaries,
    write_json_atomic,
)
from .models import REGISTRY, build_model, describe
from .probes import ProbeRecord, load_record, record_bytes
from .train import RunResult, TrainConfig

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_DIR = PROJECT_ROOT / "checkpoints"
RUNS_ENV = "MNIST_RUNS_DIR"
# Format 2: the fast architecture's layer order became conv, pool, BatchNorm, ReLU (pool_first). A format-1
# checkpoint of it holds weights of the older order, so reading it names that order in its settings.
FORMAT_VERSION = 2
MAX_NAME = 80
_NAME_OK = re.compile(r"[^A-Za-z0-9._-]+")
ALLOWED_CHARACTERS = "letters A-Z and a-z, digits, '.', '_' and '-'"


class CheckpointError(ValueError):
    """A checkpoint that is missing, damaged, or does not fit the architecture it claims."""


class CheckpointExistsError(CheckpointError):
    """A save would replace an existing run, and replacing was not asked for."""


def shared_runs_dir() -> Path:
    """The server's one runs folder (MNIST_RUNS_DIR or ./runs): every run locally; in hosted mode the visitors'
    folders (owners/) and the server-wide caches (maps, predictions, features), which are alike for all."""
    return Path(os.environ.get(RUNS_ENV) or PROJECT_ROOT / "runs")


def runs_dir() -> Path:
    """Where runs are saved, listed, renamed and deleted: in hosted mode the current visitor's own folder
    (owners.use), else the shared folder."""
    return owners.current() or shared_runs_dir()


# ---------------------------------------------------------------- names


def safe_name(name: str) -> str:
    """A file-name-safe version of a user's name: letters, digits, '.', '_', '-'; never a path."""
    cleaned = _NAME_OK.sub("-", str(name)).strip(".-")[:MAX_NAME]
    if not str(name).strip():
        raise CheckpointError("the name is empty: enter one, using " + ALLOWED_CHARACTERS)
    if not cleaned:
        raise CheckpointError(f"checkpoint name {name!r} has no usable characters; names use {ALLOWED_CHARACTERS}")
    return cleaned


def shipped_names() -> set[str]:
    return {p.stem for p in SHIPPED_DIR.glob("*.json")} if SHIPPED_DIR.is_dir() else set()


def is_reserved(name: str) -> bool:
    """True for the name of a shipped checkpoint (compared without case: 'Best' would read as 'best')."""
    try:
        cleaned = safe_name(name).lower()
    except CheckpointError:
        return False
    return cleaned in {n.lower() for n in shipped_names()}


def validate_name(name: str) -> str:
    """The sanitized name a run would be saved under, or CheckpointError saying what is wrong with it.

    Call it before training: a name refused after training costs the run.
    """
    if not isinstance(name, str):
        raise CheckpointError(f"checkpoint name must be text, got {type(name).__name__}")
    if "\x00" in name:
        raise CheckpointError("checkpoint name contains a NUL character; names use " + ALLOWED_CHARACTERS)
    cleaned = _NAME_OK.sub("-", name).strip(".-")
    if not str(name).strip():
        raise CheckpointError("the name is empty: enter one, using " + ALLOWED_CHARACTERS)
    if not cleaned:
        raise CheckpointError(f"checkpoint name {name!r} has no usable characters; names use {ALLOWED_CHARACTERS}")
    if len(cleaned) > MAX_NAME:
        raise CheckpointError(f"checkpoint name is {len(cleaned)} characters long; at most {MAX_NAME}")
    if is_reserved(cleaned):
        raise CheckpointError(f"{cleaned!r} is the name of a shipped checkpoint; choose another name for your run")
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


def load_probes(info: CheckpointInfo) -> ProbeRecord | None:
    """The training history recorded with a checkpoint, if it has one."""
    return load_record(probes_path(info.weights_path)) if info.meta.get("probes") else None


_thread_locks: dict[Path, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


@contextlib.contextmanager
def folder_lock(directory: Path):
    """Hold the folder's save lock: other processes (flock) and other threads of this one.

    flock is released by the kernel when a process dies, so a killed save never leaves it taken.
    """
    directory.mkdir(parents=True, exist_ok=True)
    key = directory.resolve()
    with _thread_locks_guard:
        thread_lock = _thread_locks.setdefault(key, threading.Lock())
    with thread_lock:
        fd = os.open(key, os.O_RDONLY)  # the folder itself: no lock file to leave behind
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _versions() -> dict:
    return {
        "mnist_core": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def reproduce_command(config: TrainConfig, name: str | None = None) -> str:
    """The CLI command that trains the same run again."""
    default = TrainConfig()
    parts = ["python -m mnist_core train", f"--arch {config.arch}"]
    for key, value in config.to_dict().items():
        if key in ("arch", "model") or value == getattr(default, key) or value is None:
            continue
        flag = "--" + key.replace("_", "-")
        # Booleans as the CLI parses them (argparse.BooleanOptionalAction): --record / --no-record.
        parts.append(flag if value is True else f"--no-{flag[2:]}" if value is False else f"{flag} {value}")
    for key, value in config.model.items():
        text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value
        parts.append(f"--set {shlex.quote(f'{key}={text}')}")  # quoted: a layer list has spaces
    if name:
        parts.append(f"--name {name}")
    return " ".join(parts)


def _save_step(step: str) -> None:
    """Test hook: MNIST_TEST_SAVE_PAUSE=<step> makes a save stop after that step and wait to be killed.

    The fault suite uses it to kill -9 a real save at each of its steps.
    """
    if os.environ.get("MNIST_TEST_SAVE_PAUSE") == step:
        print(f"paused after {step}", flush=True)
        time.sleep(600)


SAVE_STEPS = (
    "temporaries written",
    "lock taken",
    "old metadata removed",
    "weights renamed",
    "probes renamed",
    "metadata renamed",
)


def _remove_leftovers(directory: Path) -> None:
    """Remove what interrupted saves left: stale temporaries, and weights or histories with no JSON.

    Called with the folder's lock held, so no save is between its renames; weights with no JSON
    then belong to a save that died before its last rename, and never counted as a checkpoint.
    """
    remove_stale_temporaries(directory)
    for pattern, strip in (("*.safetensors", ".safetensors"), ("*.safetensors.probes", ".safetensors.probes")):
        for path in directory.glob(pattern):
            stem = path.name[: -len(strip)]
            if not (directory / f"{stem}.json").exists() and _written_by_save(path):
                path.unlink(missing_ok=True)


def _written_by_save(path: Path) -> bool:
    """True for a safetensors file this module wrote (its header says so); other files are left alone."""
    try:
        with safetensors.safe_open(str(path), "pt") as f:
            return (f.metadata() or {}).get("writer") == "mnist_core.checkpoints"
    except Exception:  # damaged or not safetensors: not ours to judge
        return False


def save(
    result: RunResult, name: str, directory: Path | None = None, extra: dict | None = None, *, overwrite: bool = True
) -> str:
    """Save a run's weights and metadata; returns the (sanitized) name it was saved under.

    overwrite=False raises CheckpointExistsError when a run of that name exists; overwrite=True
    replaces it. Shipped names are refused, except when saving into the shipped folder itself.
    """
    directory = Path(directory or runs_dir())
    shipping = directory.resolve() == SHIPPED_DIR.resolve()
    name = safe_name(name) if shipping else validate_name(name)
    weights_path, meta_path = _paths(directory, name)
    directory = weights_path.parent
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
        "dataset": result.dataset,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    has_probes = result.probes is not None and len(result.probes) > 0
    if has_probes:
        meta["probes"] = {"snapshots": len(result.probes), "every": result.probes.every}
    with StagedFiles() as stage:
        tmp_weights = stage.write(
            weights_path,
            lambda tmp: safetensors.torch.save_file(
                state, tmp, metadata={"name": name, "writer": "mnist_core.checkpoints"}
            ),
        )
        meta["files"] = {"weights_sha256": file_sha256(tmp_weights)}
        if has_probes:
            history = record_bytes(result.probes)
            tmp_probes = stage.write(probes_path(weights_path), lambda tmp: tmp.write_bytes(history))
            meta["files"]["probes_sha256"] = file_sha256(tmp_probes)
        stage.write(meta_path, lambda tmp: tmp.write_text(json.dumps(meta, indent=1)))
        _save_step("temporaries written")
        with folder_lock(directory):
            _save_step("lock taken")
            if meta_path.exists():
                if not overwrite:
                    raise CheckpointExistsError(
                        f"a run named {name!r} already exists; choose another name or replace it (--overwrite)"
                    )
                # From here until the last rename the run is absent, never half old and half new.
                meta_path.unlink()
            _save_step("old metadata removed")
            stage.commit(weights_path)
            _save_step("weights renamed")
            if has_probes:
                stage.commit(probes_path(weights_path))
            else:
                probes_path(weights_path).unlink(missing_ok=True)
            _save_step("probes renamed")
            stage.commit(meta_path)  # the checkpoint exists from this rename on
            _save_step("metadata renamed")
            _remove_leftovers(directory)
    return name


# ---------------------------------------------------------------- reading


@dataclass
class CheckpointInfo:
    name: str
    source: str  # "runs" or "shipped"
    meta: dict
    weights_path: Path
    meta_path: Path


@dataclass
class UnreadableCheckpoint:
    """A checkpoint found on disk that cannot be used, and why; its claimed figures are not shown."""

    name: str
    source: str
    reason: str
    meta_path: Path


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# field -> (check, what it must be); a field may be absent unless listed in _REQUIRED.
_FIELDS = {
    "format": (lambda v: _is_int(v) and 1 <= v <= FORMAT_VERSION, f"a format number 1-{FORMAT_VERSION}"),
    "name": (lambda v: isinstance(v, str), "text"),
    "arch": (lambda v: isinstance(v, str) and v in REGISTRY, "one of " + ", ".join(REGISTRY)),
    "model_config": (lambda v: v is None or isinstance(v, dict), "a mapping of settings"),
    "train_config": (lambda v: v is None or isinstance(v, dict), "a mapping of settings"),
    "seed": (lambda v: v is None or _is_int(v), "a whole number"),
    "status": (lambda v: isinstance(v, str), "text"),
    "message": (lambda v: v is None or isinstance(v, str), "text"),
    "history": (
        lambda v: (
            isinstance(v, list)
            and all(
                isinstance(h, dict) and all(x is None or isinstance(x, bool) or _is_number(x) for x in h.values())
                for h in v
            )
        ),
        "a list of epochs, each a mapping of numbers",
    ),
    "test_accuracy": (lambda v: v is None or (_is_number(v) and 0 <= v <= 1), "a fraction between 0 and 1"),
    "epochs_done": (lambda v: _is_int(v) and v >= 0, "a whole number >= 0"),
    "steps": (lambda v: _is_int(v) and v >= 0, "a whole number >= 0"),
    "params": (lambda v: _is_int(v) and v >= 0, "a whole number >= 0"),
    "effective_params": (lambda v: _is_int(v) and v >= 0, "a whole number >= 0"),
    "macs": (lambda v: _is_int(v) and v >= 0, "a whole number >= 0"),
    "train_seconds": (lambda v: _is_number(v) and v >= 0, "a number of seconds >= 0"),
    "device": (lambda v: isinstance(v, str), "text"),
    "versions": (lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()), "a mapping of text"),
    "command": (lambda v: isinstance(v, str), "text"),
    "created": (lambda v: isinstance(v, str), "text"),
    "dataset": (
        lambda v: (
            v is None
            or (
                isinstance(v, dict)
                and isinstance(v.get("class_names"), list)
                and 2 <= len(v["class_names"]) <= 10
                and all(isinstance(n, str) for n in v["class_names"])
                and all(isinstance(v.get(k, ""), str) for k in ("name", "title", "sha256"))
            )
        ),
        "a mapping with the data set's name, title, class_names (2 to 10) and sha256",
    ),
    "probes": (
        lambda v: v is None or (isinstance(v, dict) and _is_int(v.get("snapshots")) and _is_int(v.get("every"))),
        "a mapping with snapshots and every",
    ),
    "files": (
        lambda v: (
            isinstance(v, dict) and all(isinstance(x, str) and re.fullmatch(r"[0-9a-f]{64}", x) for x in v.values())
        ),
        "a mapping of SHA-256 digests",
    ),
}
_REQUIRED = ("arch",)


def check_meta(meta) -> dict:
    """The metadata if every field it has is of the kind this project writes, else CheckpointError."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"metadata is a {type(meta).__name__}, not a mapping")
    for key in _REQUIRED:
        if key not in meta:
            raise CheckpointError(f"metadata has no {key!r}; not a checkpoint of this project")
    for key, (check, kind) in _FIELDS.items():
        if key in meta and not check(meta[key]):
            raise CheckpointError(f"metadata field {key!r} is {str(meta[key])[:40]!r}; it must be {kind}")
    return meta


def _read_meta(meta_path: Path) -> dict:
    try:
        meta = json.loads(meta_path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{meta_path.name}: unreadable metadata ({str(exc)[:80]})") from None
    try:
        return _upgraded(check_meta(meta))
    except CheckpointError as exc:
        raise CheckpointError(f"{meta_path.name}: {exc}") from None


def _upgraded(meta: dict) -> dict:
    """The metadata of an older format in today's terms."""
    if meta.get("format", 1) < 2 and meta["arch"] == "fast":
        older_order = {"pool_first": False}
        meta["model_config"] = {**older_order, **(meta.get("model_config") or {})}
        if isinstance(meta.get("train_config"), dict):
            meta["train_config"]["model"] = {**older_order, **(meta["train_config"].get("model") or {})}
    return meta


_verified: dict[tuple, str | None] = {}  # (path, size, mtime, inode) of files -> None (good) or the reason
_verified_lock = threading.Lock()


def _file_key(path: Path) -> tuple:
    s = path.stat()
    return (str(path), s.st_size, s.st_mtime_ns, s.st_ino)


def _safetensors_problem(path: Path) -> str | None:
    """Why a file is not a whole safetensors file (header read, sizes summed: no tensor is loaded), or None."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            length = int.from_bytes(head, "little") if len(head) == 8 else -1
            if not 2 <= length <= min(size - 8, 100 * 2**20):
                return "is not a safetensors file (no valid header)"
            header = json.loads(f.read(length).decode("utf-8"))
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (OSError, ValueError, UnicodeDecodeError, TypeError, KeyError, IndexError, AttributeError, RecursionError):
        return "is not a safetensors file (unreadable header)"
    if 8 + length + max(ends, default=0) != size:
        return f"is truncated or padded ({size} bytes; its header describes {8 + length + max(ends, default=0)})"
    return None


def _check_files(meta: dict, weights_path: Path) -> None:
    """The files' hashes against the ones the JSON recorded (older and shipped checkpoints have none).

    Cached on (size, mtime, inode), so the sidebar's listing hashes each run once per process.
    """
    recorded = meta.get("files") or {}
    pairs = [(weights_path, recorded.get("weights_sha256"), "weights")]
    if meta.get("probes"):
        pairs.append((probes_path(weights_path), recorded.get("probes_sha256"), "training history"))
    for path, digest, what in pairs:
        if not path.exists():
            raise CheckpointError(f"its {what} file {path.name} is missing")
        if digest is None:  # older and shipped checkpoints: at least the file must be whole safetensors
            key = _file_key(path) + ("header",)
            with _verified_lock:
                known = key in _verified
            if not known:
                problem = _safetensors_problem(path)
                with _verified_lock:
                    _verified[key] = problem is None
                if problem:
                    raise CheckpointError(f"its {what} file {path.name} {problem}")
            if not _verified[key]:
                raise CheckpointError(f"its {what} file {path.name} is not a whole safetensors file")
            continue
        key = _file_key(path) + (digest,)
        with _verified_lock:
            known = key in _verified
        if not known:
            good = file_sha256(path) == digest
            with _verified_lock:
                _verified[key] = good
        if not _verified[key]:
            raise CheckpointError(
                f"its {what} file does not match the SHA-256 its metadata recorded "
                "(an interrupted save or a changed file); train it again or delete it"
            )


def scan(directories: dict[str, Path] | None = None) -> tuple[list[CheckpointInfo], list[UnreadableCheckpoint]]:
    """Every checkpoint on disk: (the usable ones, runs first then shipped; the unusable ones, with why)."""
    directories = directories or {"runs": runs_dir(), "shipped": SHIPPED_DIR}
    found: list[CheckpointInfo] = []
    broken: list[UnreadableCheckpoint] = []
    for source, directory in directories.items():
        if not directory.is_dir():
            continue
        for meta_path in sorted(directory.glob("*.json")):
            if meta_path.name.startswith("."):
                continue
            weights_path = meta_path.with_suffix(".safetensors")
            try:
                meta = _read_meta(meta_path)
                _check_files(meta, weights_path)
            except CheckpointError as exc:
                reason = str(exc).removeprefix(f"{meta_path.name}: ")
                broken.append(UnreadableCheckpoint(meta_path.stem, source, reason, meta_path))
                continue
            except OSError as exc:
                broken.append(UnreadableCheckpoint(meta_path.stem, source, f"unreadable ({exc.strerror})", meta_path))
                continue
            found.append(CheckpointInfo(meta_path.stem, source, meta, weights_path, meta_path))
    return found, broken


def list_checkpoints(directories: dict[str, Path] | None = None) -> list[CheckpointInfo]:
    """Every usable checkpoint, runs first then shipped; damaged ones are left out (see scan())."""
    return scan(directories)[0]


def find(name: str, directories: dict[str, Path] | None = None) -> CheckpointInfo:
    """The checkpoint of that name; a shipped name means the shipped checkpoint, whatever a run is called."""
    wanted = safe_name(name)
    found, broken = scan(directories)
    matches = [info for info in found if info.name == wanted]
    if matches:
        shipped = [info for info in matches if info.source == "shipped"]
        return (shipped or matches)[0]
    for bad in broken:
        if bad.name == wanted:
            raise CheckpointError(f"checkpoint {wanted!r} cannot be used: {bad.reason}")
    raise CheckpointError(f"no checkpoint named {name!r}; `python -m mnist_core list` shows the available ones")


def load(
    name: str,
    expected_arch: str | None = None,
    device: str | torch.device = "cpu",
    directories: dict[str, Path] | None = None,
) -> tuple[nn.Module, dict]:
    """Rebuild the model a checkpoint describes and load its weights; returns (model in eval mode, metadata)."""
    info = find(name, directories)
    meta = info.meta
    if expected_arch is not None and meta["arch"] != expected_arch:
        raise CheckpointError(f"checkpoint {info.name!r} is a {meta['arch']} model, not {expected_arch}")
    try:
        model = build_model(meta["arch"], meta.get("model_config") or {})
    except (ValueError, TypeError) as exc:
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


def _user_run(name: str, verb: str) -> Path:
    """The JSON path of a user run (not a shipped checkpoint), readable or not."""
    wanted = safe_name(name)
    _, meta_path = _paths(runs_dir(), wanted)
    if not meta_path.exists():
        if (SHIPPED_DIR / f"{wanted}.json").exists():
            raise CheckpointError(f"{wanted!r} is a shipped checkpoint; only your own runs can be {verb}")
        raise CheckpointError(f"no run named {name!r}")
    return meta_path


def delete(name: str) -> None:
    """Delete a user run, readable or damaged (shipped checkpoints are part of the project)."""
    meta_path = _user_run(name, "deleted")
    weights_path = meta_path.with_suffix(".safetensors")
    with folder_lock(meta_path.parent):
        meta_path.unlink(missing_ok=True)  # the JSON first: from here the run is absent
        weights_path.unlink(missing_ok=True)
        probes_path(weights_path).unlink(missing_ok=True)


def rename(name: str, new_name: str) -> str:
    """Rename a user run. Until the new JSON exists the old run is whole; after, the new one is."""
    info = find(name, {"runs": runs_dir()})
    new = validate_name(new_name)
    weights_path, meta_path = _paths(info.meta_path.parent, new)
    with folder_lock(meta_path.parent):
        if meta_path.exists():
            raise CheckpointExistsError(f"a checkpoint named {new!r} already exists; choose another name")
        meta = dict(info.meta, name=new)
        link_or_copy_atomic(info.weights_path, weights_path)
        if probes_path(info.weights_path).exists():
            link_or_copy_atomic(probes_path(info.weights_path), probes_path(weights_path))
        write_json_atomic(meta_path, meta)
        info.meta_path.unlink()
        info.weights_path.unlink(missing_ok=True)
        probes_path(info.weights_path).unlink(missing_ok=True)
    return new
