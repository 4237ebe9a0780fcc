"""The user's own labelled drawings: one 28x28 PNG (as the models see it) per drawing.

Kept in $MNIST_DRAWINGS_DIR, else runs/drawings. Each drawing carries its label in its file name,
`<digit>-<date>-<time>-<id>.png`, so there is no shared index that concurrent saves could overwrite
or one damaged file could empty. Sets saved before that kept their labels in a `labels.json`, which
is still read. Files are validated on every read, so a damaged, oversized or foreign file is
reported and skipped, never trusted (and never unpickled: only PNG is decoded).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from . import owners
from .checkpoints import MAX_NAME, runs_dir, validate_name
from .drawing import SIZE
from .files import atomic_write, write_json_atomic

ENV_DIR = "MNIST_DRAWINGS_DIR"
INDEX = "labels.json"  # the label list of sets saved by older versions; read, never written by a save
NAME = re.compile(r"^(?P<label>[0-9])-\d{8}-\d{6}-[0-9a-f]{6,32}\.png$")
MAX_FILE_BYTES = 64 * 1024  # a 28x28 greyscale PNG is well under 2 KB; a larger file is not one of ours
_index_lock = threading.Lock()  # only delete_drawing rewrites the legacy index


class DrawingSetError(ValueError):
    """A drawing that cannot be saved (bad label or image)."""


def drawings_dir() -> Path:
    """$MNIST_DRAWINGS_DIR, else runs/drawings. In hosted mode always the visitor's own folder's drawings/:
    a visitor's drawings are theirs alone, and MNIST_DRAWINGS_DIR is for a single user's (or the CLI's) set."""
    if (own := owners.current()) is not None:
        return own / "drawings"
    return Path(os.environ.get(ENV_DIR) or runs_dir() / "drawings")


def _read_index(directory: Path) -> tuple[dict[str, int], list[str]]:
    """Labels of an older set, by file name (later entries win), and what was wrong with the list."""
    path = directory / INDEX
    if not path.exists():
        return {}, []
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(entries, list):
            raise ValueError("not a list")
    except (OSError, ValueError) as exc:
        return {}, [
            f"{INDEX}: unreadable label list ({exc}); drawings named by their label are still read, "
            f"delete it to silence this"
        ]
    labels, problems = {}, []
    for entry in entries:
        name, label = (entry.get("file"), entry.get("label")) if isinstance(entry, dict) else (None, None)
        if not isinstance(name, str) or Path(name).name != name or type(label) is not int or not 0 <= label <= 9:
            problems.append(f"{INDEX}: skipped a malformed entry {entry!r}")
            continue
        labels[name] = label
    return labels, problems


def save_drawing(pixels: np.ndarray, label: int, directory: Path | None = None) -> str:
    """Store one processed drawing, its label in its name; returns its file name. Safe to call concurrently.

    Raises owners.QuotaExceeded when the visitor's own folder (hosted mode) is full."""
    own_folder = directory is None
    directory = directory or drawings_dir()
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= int(label) <= 9:
        raise DrawingSetError(f"the label must be a digit 0-9 (got {label!r})")
    pixels = np.asarray(pixels)
    if pixels.shape != (SIZE, SIZE) or not np.isfinite(pixels).all():
        raise DrawingSetError(f"a drawing must be a finite {SIZE}x{SIZE} image (got shape {pixels.shape})")
    if own_folder:
        owners.check_current_quota()  # hosted: a visitor at MNIST_OWNER_QUOTA_MB saves no more
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{int(label)}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:12]}.png"
    image = Image.fromarray((np.clip(pixels, 0, 1) * 255).round().astype(np.uint8), mode="L")
    atomic_write(directory / name, lambda tmp: image.save(tmp, format="PNG"))
    return name


def save_drawing_set(pixels: np.ndarray, labels: np.ndarray, directory: Path) -> list[str]:
    """Store a generated set (e.g. synthetic training drawings) in index order: each file's date-time is
    derived from its index, so load_drawings returns them in that same order on every run (training
    from them is reproducible). Up to 86,400 drawings, one per second of a fixed day."""
    if len(pixels) != len(labels) or len(labels) > 86_400:
        raise DrawingSetError(
            f"a set is at most 86400 drawings with one label each (got {len(pixels)} images, {len(labels)} labels)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    names = []
    for i, (image, label) in enumerate(zip(pixels, labels)):
        if image.shape != (SIZE, SIZE) or not 0 <= int(label) <= 9:
            raise DrawingSetError(f"drawing {i}: a {SIZE}x{SIZE} image labelled 0-9 is expected")
        hours, rest = divmod(i, 3600)
        name = f"{int(label)}-20000101-{hours:02d}{rest // 60:02d}{rest % 60:02d}-{i:06x}.png"
        png = Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8), mode="L")
        atomic_write(directory / name, lambda tmp, png=png: png.save(tmp, format="PNG"))
        names.append(name)
    return names


def fine_tune_name(base: str, now: float | None = None) -> str:
    """A run name for fine-tuning `base` on drawings, unique per click so visitors never replace each other's
    run: `<base>-drawings-<date>-<time>-<id>`. Validated now (CheckpointError), not after training."""
    suffix = f"-drawings-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}-{uuid.uuid4().hex[:4]}"
    return validate_name(base[: MAX_NAME - len(suffix)] + suffix)


@dataclass
class DrawingSet:
    pixels: np.ndarray  # (N, 28, 28) float in 0-1
    labels: np.ndarray  # (N,) int64
    files: list[str]
    problems: list[str] = field(default_factory=list)  # what was skipped, and why

    def __len__(self) -> int:
        return len(self.labels)


def _read_png(path: Path) -> np.ndarray:
    """The 28x28 drawing in 0-1, or ValueError saying why the file is not one."""
    if path.is_symlink() or not path.is_file():
        raise ValueError("not a regular file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ValueError(f"{size / 1024:.0f} KB, far larger than a {SIZE}x{SIZE} drawing")
    try:
        with Image.open(path, formats=["PNG"]) as image:  # reads the header only; nothing is decoded yet
            if image.size != (SIZE, SIZE):
                raise ValueError(f"a {image.size[0]}x{image.size[1]} image, not a {SIZE}x{SIZE} drawing")
            return np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure (bomb, truncation, junk) means "not a drawing"
        raise ValueError(f"not a readable PNG ({type(exc).__name__}: {exc})") from None


def load_drawings(directory: Path | None = None) -> DrawingSet:
    """Every valid drawing, oldest first; everything skipped is listed in problems."""
    directory = directory or drawings_dir()
    legacy, problems = _read_index(directory)
    found: list[tuple[tuple, str, int]] = []  # (sort key, file name, label)
    names = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
    for name in names:
        if name.startswith(".") or name == INDEX:  # a save in progress (or interrupted), or the old index
            continue
        match = NAME.match(name)
        label = int(match["label"]) if match else legacy.get(name)
        if label is None:
            problems.append(f"skipped {name}: not a drawing (drawings are named <digit>-<date>-<time>-<id>.png)")
            continue
        stamp = name[2:17] if match else ""  # the save's date-time; within a second, the file's mtime
        try:
            mtime = (directory / name).lstat().st_mtime_ns
        except OSError:
            continue  # deleted meanwhile
        found.append(((stamp or str(mtime), mtime, name), name, label))
    for name in legacy:
        if not (directory / name).exists():
            problems.append(f"{INDEX} lists {name}, which is missing")
    pixels, labels, files = [], [], []
    for _, name, label in sorted(found):
        try:
            pixels.append(_read_png(directory / name))
        except (OSError, ValueError) as exc:
            problems.append(f"skipped {name}: {exc}")
            continue
        labels.append(label)
        files.append(name)
    stacked = np.stack(pixels) if pixels else np.zeros((0, SIZE, SIZE), np.float32)
    return DrawingSet(stacked, np.array(labels, dtype=np.int64), files, problems)


def delete_drawing(name: str, directory: Path | None = None) -> None:
    directory = directory or drawings_dir()
    if Path(name).name != name or name.startswith("."):
        raise DrawingSetError(f"{name!r} is not a drawing's file name")
    (directory / name).unlink(missing_ok=True)
    with _index_lock:
        legacy, _ = _read_index(directory)
        if name in legacy and (directory / INDEX).exists():
            entries = [{"file": f, "label": label} for f, label in legacy.items() if f != name]
            write_json_atomic(directory / INDEX, entries)
