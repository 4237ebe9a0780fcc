"""The user's own labelled drawings: 28x28 PNGs (as the models see them) plus a JSON list of labels.

Kept in $MNIST_DRAWINGS_DIR, else runs/drawings. Files are validated on every read, so a damaged or
foreign file is reported and skipped, never trusted.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .checkpoints import runs_dir
from .drawing import SIZE

ENV_DIR = "MNIST_DRAWINGS_DIR"
INDEX = "labels.json"


class DrawingSetError(ValueError):
    """A drawing that cannot be saved (bad label or image)."""


def drawings_dir() -> Path:
    return Path(os.environ.get(ENV_DIR) or runs_dir() / "drawings")


def _write_index(directory: Path, entries: list[dict]) -> None:
    tmp = directory / f".{INDEX}.{uuid.uuid4().hex}.tmp"
    tmp.write_text(json.dumps(entries, indent=1))
    os.replace(tmp, directory / INDEX)


def _read_index(directory: Path) -> tuple[list[dict], list[str]]:
    path = directory / INDEX
    if not path.exists():
        return [], []
    try:
        entries = json.loads(path.read_text())
        if not isinstance(entries, list):
            raise ValueError("not a list")
    except ValueError as exc:
        return [], [f"{path}: unreadable label list ({exc}); delete it to start a new set"]
    return entries, []


def save_drawing(pixels: np.ndarray, label: int, directory: Path | None = None) -> str:
    """Store one processed drawing with its label; returns its file name."""
    directory = directory or drawings_dir()
    if not isinstance(label, (int, np.integer)) or not 0 <= int(label) <= 9:
        raise DrawingSetError(f"the label must be a digit 0-9 (got {label!r})")
    pixels = np.asarray(pixels)
    if pixels.shape != (SIZE, SIZE) or not np.isfinite(pixels).all():
        raise DrawingSetError(f"a drawing must be a finite {SIZE}x{SIZE} image (got shape {pixels.shape})")
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{int(label)}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}.png"
    image = Image.fromarray((np.clip(pixels, 0, 1) * 255).round().astype(np.uint8), mode="L")
    tmp = directory / f".{name}.tmp"
    image.save(tmp, format="PNG")
    os.replace(tmp, directory / name)
    entries, _ = _read_index(directory)
    entries.append({"file": name, "label": int(label)})
    _write_index(directory, entries)
    return name


@dataclass
class DrawingSet:
    pixels: np.ndarray  # (N, 28, 28) float in 0-1
    labels: np.ndarray  # (N,) int64
    files: list[str]
    problems: list[str] = field(default_factory=list)  # what was skipped, and why

    def __len__(self) -> int:
        return len(self.labels)


def load_drawings(directory: Path | None = None) -> DrawingSet:
    directory = directory or drawings_dir()
    entries, problems = _read_index(directory)
    pixels, labels, files = [], [], []
    for entry in entries:
        name, label = entry.get("file") if isinstance(entry, dict) else None, entry.get("label") if isinstance(entry, dict) else None
        if not isinstance(name, str) or Path(name).name != name or not isinstance(label, int) or not 0 <= label <= 9:
            problems.append(f"skipped a malformed entry {entry!r}")
            continue
        try:
            with Image.open(directory / name) as image:
                if image.format != "PNG" or image.size != (SIZE, SIZE):
                    raise ValueError(f"not a {SIZE}x{SIZE} PNG")
                array = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            problems.append(f"skipped {name}: {exc}")
            continue
        pixels.append(array)
        labels.append(label)
        files.append(name)
    stacked = np.stack(pixels) if pixels else np.zeros((0, SIZE, SIZE), np.float32)
    return DrawingSet(stacked, np.array(labels, dtype=np.int64), files, problems)


def delete_drawing(name: str, directory: Path | None = None) -> None:
    directory = directory or drawings_dir()
    entries, _ = _read_index(directory)
    _write_index(directory, [e for e in entries if not (isinstance(e, dict) and e.get("file") == name)])
    if Path(name).name == name:
        (directory / name).unlink(missing_ok=True)
