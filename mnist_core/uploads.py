"""A data set of your own: a folder or zip of images, one sub-folder per class, or MNIST-style IDX files, checked
and stored as a data set in MNIST's shape (read by mnist_core.datasets as "own:NAME").

Sources
- a folder, or a zip (a path or an open binary file, e.g. a browser upload), of images in one sub-folder per class:
  cat/001.png, dog/x.jpg. Images may sit deeper inside their class folder (cat/batch1/001.png). A single folder
  wrapping everything (mydata/cat/..., as zipping a folder makes) is looked through. With top-level train/ and
  test/ folders, each holding the class folders, that split is kept; otherwise a seeded, stratified sixth of each
  class is held out as the test split (at least one image per class).
- the four IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
  t10k-labels-idx1-ubyte; gzip'd or raw) in a folder or zip, 28x28 white on black, with an optional classes.txt
  naming the classes one a line (else "0".."k-1").

Images of any size and colour become 28x28 gray, white on black. A light background (median of the border
pixels above 127) is inverted first, and the background level is subtracted so it is black. fit="centre" does
what the Draw page does to a drawing (mnist_core.drawing): crop to the ink, longer side to 20 px, centred by mass
in 28x28, as MNIST's digits were made; an image with no ink is skipped. fit="whole" scales the whole image so its
longer side is 28 and pads it (photos of objects, as Fashion-MNIST).

Limits (module constants; each a parameter of import_dataset and preview), so an upload cannot fill memory or disk:
- MAX_IMAGES = 100,000 images;
- MAX_BYTES = 200 MB: the image (or IDX) files' uncompressed sizes added up;
- MAX_FILE_BYTES = 20 MB per file (a larger one is skipped);
- MAX_PIXELS = 40 million pixels per image (a larger one is skipped; checked from the header, before decoding).
A zip is never extracted to disk: its members are read into memory one at a time, each read in chunks counted
against its declared size and the limits (a declared size can lie: a zip bomb stops at it). A member whose path
climbs out of the zip's folder ("../x.png", "/x.png", "C:x.png") or that is a symbolic link is refused, naming it;
__MACOSX/ and dot files are ignored. Unreadable and non-image files are skipped and listed (dataset.json keeps the
first SKIPPED_KEPT), unless nothing readable is left.

Every problem is an UploadError (a DataError) saying what was wrong and what to do.

A data set NAME is written to <runs folder>/datasets/NAME (the visitor's own in hosted mode): the four gzip'd IDX
files, SHA256SUMS over them and dataset.json describing it, built in a temporary folder beside it and renamed
into place, so a reader finds the whole set or none.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import time
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from . import owners
from .checkpoints import CheckpointError, runs_dir, safe_name
from .data import DataError, parse_idx
from .datasets import DESCRIPTION_FILE, MAX_CLASSES, OWN_FOLDER
from .drawing import BOX, SIZE, fit_box, ink_box, paste_centred, to_grayscale
from .files import (
    move_folder_into_place,
    remove_folder,
    remove_stale_temporary_folders,
    temporary_folder_beside,
    write_bytes_atomic,
    write_json_atomic,
)

MAX_IMAGES = 100_000
MAX_BYTES = 200 * 2**20
MAX_FILE_BYTES = 20 * 2**20
MAX_PIXELS = 40_000_000
MIN_CLASSES = 2
TEST_SHARE = 1 / 6  # MNIST's own split: 10,000 test images to 60,000 training ones
SKIPPED_KEPT = 50  # skipped files listed in dataset.json (the report holds them all)
FITS = ("centre", "whole")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm"}
IMAGE_FORMATS = "PNG, JPEG, GIF, BMP, TIFF, WebP or PGM/PPM/PBM"
IMAGE_KINDS = "PNG, JPEG, GIF, BMP, TIFF, WebP or PNM"
# Every image is first scaled so its longer side is this many pixels: big photos are decoded and searched for ink
# at a modest size (fast), small images are enlarged so drawing.ink_box's minimum of 30 inked pixels means "a
# speck", as it does on the Draw page's canvas, whatever the image's size. 4x MNIST's 28.
WORK_SIZE = 112
LIGHT_BORDER = 127 / 255  # a border (median) lighter than this is a light background: the image is inverted
MIN_CONTRAST = 0.1  # ink less than this above the background is no ink (JPEG noise on a blank page)
CHUNK = 1 << 20
EXIF_ORIENTATION = 0x0112
IDX_FILES = {  # role -> (split, what), each found as train-images-idx3-ubyte, train-images.idx3-ubyte, ... (.gz)
    "train-images": re.compile(r"train-images[-.]idx3-ubyte(\.gz)?"),
    "train-labels": re.compile(r"train-labels[-.]idx1-ubyte(\.gz)?"),
    "t10k-images": re.compile(r"t10k-images[-.]idx3-ubyte(\.gz)?"),
    "t10k-labels": re.compile(r"t10k-labels[-.]idx1-ubyte(\.gz)?"),
}
CLASSES_FILE = "classes.txt"
SUMS_FILE = "SHA256SUMS"
OUTPUT_FILES = {  # (split, what) -> the file name mnist_core.data reads
    ("train", "images"): "train-images-idx3-ubyte.gz",
    ("train", "labels"): "train-labels-idx1-ubyte.gz",
    ("test", "images"): "t10k-images-idx3-ubyte.gz",
    ("test", "labels"): "t10k-labels-idx1-ubyte.gz",
}
EXAMPLE = "put the images of each class in a folder named after the class, e.g. cat/001.png"


class UploadError(DataError):
    """A source that cannot become a data set: what was wrong, and what to do."""


@dataclass(frozen=True)
class Limits:
    max_images: int = MAX_IMAGES
    max_bytes: int = MAX_BYTES
    max_file_bytes: int = MAX_FILE_BYTES
    max_pixels: int = MAX_PIXELS


@dataclass
class ImportReport:
    name: str  # the folder name (checkpoints.safe_name of the title): the data set's key is "own:" + name
    folder: Path
    class_names: list[str]
    train_counts: list[int]  # images per class, in label order
    test_counts: list[int]
    skipped: list[dict]  # {"file": ..., "why": ...}, every one
    seconds: float
    title: str = ""
    source: str = ""  # "folder", "zip" or "idx"

    @property
    def train(self) -> int:
        return sum(self.train_counts)

    @property
    def test(self) -> int:
        return sum(self.test_counts)

    def summary(self) -> str:
        per_class = ", ".join(f"{c} {a}+{b}" for c, a, b in zip(self.class_names, self.train_counts, self.test_counts))
        skipped = f", {len(self.skipped)} file(s) skipped" if self.skipped else ""
        return (
            f"data set {self.name!r}: {len(self.class_names)} classes, {self.train} training and {self.test} test "
            f"images ({per_class}){skipped}, {self.seconds:.1f} s"
        )


# ---------------------------------------------------------------- reading a folder or a zip


@dataclass(frozen=True)
class Entry:
    """One file of a source: its path inside the source, its size (a zip's declared one), how to read it."""

    parts: tuple[str, ...]
    size: int
    handle: object  # a Path (folder) or a ZipInfo (zip)
    is_folder: bool = False  # listed so that an empty class folder is reported, not silently missing

    def inside(self) -> Entry:
        """The same entry one folder down (its path without the first part)."""
        return Entry(self.parts[1:], self.size, self.handle, self.is_folder)

    @property
    def name(self) -> str:
        return "/".join(self.parts)

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.parts[-1]).suffix.lower()


class _Skip(Exception):
    """A file left out (not fatal): the reason, as the report lists it."""


def _ignored(part: str) -> bool:
    # Finder's resource forks (__MACOSX/), .DS_Store, ._x.png, .git: never the user's images
    return part.startswith(".") or part == "__MACOSX"


class _Source:
    kind = ""
    label = ""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.bytes_read = 0

    def entries(self) -> list[Entry]:
        raise NotImplementedError

    def _open(self, entry: Entry) -> BinaryIO:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def read(self, entry: Entry) -> bytes:
        """The file's bytes, read in chunks and counted: never more than its (declared) size, the per-file limit
        or what is left of the total, whatever its data inflates to."""
        if entry.size > self.limits.max_file_bytes:
            raise _Skip(f"{_mb(entry.size)}, over the limit of {_mb(self.limits.max_file_bytes)} per file")
        limit = min(entry.size, self.limits.max_file_bytes)
        chunks, count = [], 0
        try:
            with self._open(entry) as stream:
                while chunk := stream.read(min(CHUNK, limit + 1 - count)):
                    count += len(chunk)
                    if count > limit:
                        raise UploadError(self._overflow(entry, limit))
                    chunks.append(chunk)
        except UploadError:
            raise
        except Exception as exc:  # noqa: BLE001 - OSError, BadZipFile (a bad CRC), zlib.error, an unknown
            # compression: each decoder has its own errors, and any of them means this one file is damaged
            raise _Skip(f"could not be read ({_reason(exc)})") from None
        self.bytes_read += count
        if self.bytes_read > self.limits.max_bytes:
            raise UploadError(
                f"{self.label}: more than {_mb(self.limits.max_bytes)} read in all, the limit; "
                "import fewer or smaller images"
            )
        return b"".join(chunks)

    def _overflow(self, entry: Entry, limit: int) -> str:
        return f"{self.label}: {entry.name} grew past its size ({limit:,} bytes) while being read; try again"


class _FolderSource(_Source):
    kind = "folder"

    def __init__(self, path: Path, limits: Limits):
        super().__init__(limits)
        self.path, self.label = path, str(path)
        self.skipped: list[dict] = []

    def entries(self) -> list[Entry]:
        found = []
        root = self.path.resolve()
        for base, folders, names in os.walk(self.path):  # links to folders are not followed
            folders[:] = [f for f in folders if not _ignored(f)]
            relative = Path(base).relative_to(self.path).parts
            found += [Entry((*relative, f), 0, None, is_folder=True) for f in folders]
            for name in names:
                if _ignored(name):
                    continue
                path = Path(base) / name
                parts = (*relative, name)
                if path.is_symlink() and not path.resolve().is_relative_to(root):
                    self.skipped.append(_skip_record("/".join(parts), "a link to a file outside the folder"))
                    continue
                try:
                    size = path.stat().st_size
                except OSError as exc:
                    self.skipped.append(_skip_record("/".join(parts), f"could not be read ({_reason(exc)})"))
                    continue
                found.append(Entry(parts, size, path))
        return found

    def _open(self, entry: Entry) -> BinaryIO:
        return open(entry.handle, "rb")  # noqa: SIM115 (closed by read's with)


class _ZipSource(_Source):
    kind = "zip"

    def __init__(self, source: Path | BinaryIO, label: str, limits: Limits):
        super().__init__(limits)
        self.label = label
        self.skipped: list[dict] = []
        try:
            self.zip = zipfile.ZipFile(source)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise UploadError(
                f"{label}: not a readable zip archive ({_reason(exc)}); zip the folder of class folders again"
            ) from None

    def close(self) -> None:
        self.zip.close()

    def entries(self) -> list[Entry]:
        found = []
        for info in self.zip.infolist():
            name = info.filename
            parts = _safe_member_parts(name, self.label)
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise UploadError(
                    f"{self.label}: member {name!r} is a symbolic link, which could point anywhere on the server; "
                    "zip the files themselves (zip without -y)"
                )
            if not parts or any(_ignored(p) for p in parts):
                continue
            found.append(Entry(parts, info.file_size, info, is_folder=info.is_dir()))
        return found

    def _open(self, entry: Entry) -> BinaryIO:
        return self.zip.open(entry.handle)

    def _overflow(self, entry: Entry, limit: int) -> str:
        return (
            f"{self.label}: member {entry.name} inflates to more than its declared {limit:,} bytes; the zip is "
            "damaged or built to fill memory (a zip bomb): nothing was imported. Zip the images again"
        )


_DRIVE = re.compile(r"[A-Za-z]:")


def _safe_member_parts(name: str, label: str) -> tuple[str, ...]:
    """A zip member's path as parts, or UploadError when it could climb out of the folder it is unpacked in."""
    path = name.replace("\\", "/")  # zips made on Windows may use backslashes
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if path.startswith("/") or _DRIVE.match(path) or ".." in parts or "\0" in path:
        raise UploadError(
            f"{label}: member {name!r} has a path that leads out of the zip's folder (absolute, a drive letter or "
            "'..'); such a zip is refused. Zip the class folders themselves, with paths like cat/001.png"
        )
    return tuple(parts)


def _open_source(source, limits: Limits, label: str | None = None) -> _Source:
    """The source as a folder or a zip, or UploadError saying why it is neither. Messages name it by label
    (default: its path, or an open file's name)."""
    if hasattr(source, "read"):  # an open file, e.g. a browser upload: a zip
        label = label or str(getattr(source, "name", "the uploaded file"))
        size = source.seek(0, os.SEEK_END)
        source.seek(0)
        _check_zip_size(label, size, limits)
        return _ZipSource(source, label, limits)
    path = Path(source)
    label = label or str(path)
    if not path.exists():
        raise UploadError(
            f"{label}: no such file or folder; give a folder of class folders, a .zip of one, or IDX files"
        )
    if path.is_dir():
        folder = _FolderSource(path, limits)
        folder.label = label
        return folder
    if not zipfile.is_zipfile(path):
        raise UploadError(
            f"{label}: a file but not a zip archive; give a folder of class folders or a .zip of one ({EXAMPLE})"
        )
    _check_zip_size(label, path.stat().st_size, limits)
    return _ZipSource(path, label, limits)


def _check_zip_size(label: str, size: int, limits: Limits) -> None:
    # The zip's table of contents is read into memory whole: a huge one could list millions of members.
    if size > limits.max_bytes:
        raise UploadError(
            f"{label}: the zip is {_mb(size)}, over the limit of {_mb(limits.max_bytes)}; import fewer or smaller images"
        )


# ---------------------------------------------------------------- what the source holds


@dataclass
class _Plan:
    """What a source holds, from its listing alone (nothing read yet)."""

    kind: str  # "folder", "zip" or "idx"
    class_names: list[str] = field(default_factory=list)
    # class -> split -> files; split "all" when the source has no train/ and test/ folders
    files: dict[str, dict[str, list[Entry]]] = field(default_factory=dict)
    idx: dict[str, Entry] = field(default_factory=dict)  # role -> entry, for IDX sources
    classes_file: Entry | None = None
    skipped: list[dict] = field(default_factory=list)

    @property
    def presplit(self) -> bool:
        return any("all" not in splits for splits in self.files.values())

    def count(self, name: str) -> int:
        return sum(len(f) for f in self.files[name].values())


def natural_key(name: str) -> list:
    """Sort key putting "2" before "10" and "class2" before "class10" (digit runs compared as numbers)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)] + [name]


def _skip_record(file: str, why: str) -> dict:
    return {"file": file, "why": why}


def _strip_wrapper(entries: list[Entry]) -> list[Entry]:
    """Look through single folders wrapping everything (zipping a folder makes one: mydata/cat/001.png), as
    long as the one folder holds folders or IDX files (a lone folder of images is a one-class set, reported so)."""
    while True:
        tops = {e.parts[0] for e in entries}
        if len(tops) != 1 or any(len(e.parts) == 1 and not e.is_folder for e in entries):
            return entries  # several things at the top, or a file there: this is the top
        inner = [e.inside() for e in entries if len(e.parts) > 1]
        if not any(len(e.parts) > 1 or e.is_folder or _idx_role(e.parts[0]) for e in inner):
            return entries
        entries = inner


def _idx_role(file_name: str) -> str | None:
    return next((role for role, pattern in IDX_FILES.items() if pattern.fullmatch(file_name)), None)


def _plan(source: _Source) -> _Plan:
    entries = _strip_wrapper(source.entries())
    top_files = [e for e in entries if len(e.parts) == 1 and not e.is_folder]
    if any(_idx_role(e.parts[0]) for e in top_files):
        return _plan_idx(source, top_files, entries)
    plan = _Plan(source.kind, skipped=list(getattr(source, "skipped", [])))
    top_files = [e for e in top_files if not e.is_folder]
    for e in top_files:
        plan.skipped.append(_skip_record(e.name, f"not in a class folder ({EXAMPLE})"))
    folders = {e.parts[0] for e in entries if len(e.parts) > 1}
    split_names = {f.lower(): f for f in folders}
    splits = {"train": split_names.get("train"), "test": split_names.get("test")}
    presplit = all(splits.values()) and all(
        any(e.parts[0] == top and len(e.parts) > 2 for e in entries) for top in splits.values()
    )
    for e in entries:
        if presplit:
            split = next((s for s, top in splits.items() if top == e.parts[0]), None)
            if split is None or len(e.parts) == 1:
                if not e.is_folder:
                    plan.skipped.append(_skip_record(e.name, "outside the train/ and test/ folders"))
                continue
            if len(e.parts) == 2 and not e.is_folder:
                plan.skipped.append(_skip_record(e.name, f"not in a class folder inside {e.parts[0]}/"))
                continue
            class_name = e.parts[1]
        elif len(e.parts) == 1 and not e.is_folder:
            continue  # a file at the top: skipped above
        else:
            split, class_name = "all", e.parts[0]
        files = plan.files.setdefault(class_name, {}).setdefault(split, [])
        if e.is_folder:
            continue
        if e.suffix in IMAGE_SUFFIXES:
            files.append(e)
        else:
            why = f"not an image ({e.suffix or 'no extension'}); images are {IMAGE_KINDS} files"
            plan.skipped.append(_skip_record(e.name, why))
    plan.class_names = sorted(plan.files, key=natural_key)
    _check_classes(plan, source, presplit)
    for files in (f for splits in plan.files.values() for f in splits.values()):
        files.sort(key=lambda e: natural_key(e.name))
    _check_totals(source, [e for splits in plan.files.values() for f in splits.values() for e in f])
    return plan


def _check_classes(plan: _Plan, source: _Source, presplit: bool) -> None:
    where = f"{source.label}{' (in train/ and test/)' if presplit else ''}"
    names = plan.class_names
    if not names:
        raise UploadError(f"{where}: found no sub-folders; {EXAMPLE}")
    if len(names) < MIN_CLASSES:
        raise UploadError(
            f"{where}: only one class ({names[0]!r}); a data set needs {MIN_CLASSES} to {MAX_CLASSES} classes, "
            f"each in a folder of its own ({EXAMPLE})"
        )
    if len(names) > MAX_CLASSES:
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        raise UploadError(
            f"{where}: {len(names)} class folders ({shown}); at most {MAX_CLASSES} classes, as every model here "
            f"has {MAX_CLASSES} outputs: merge or leave out some classes"
        )
    for name in names:
        splits = plan.files[name]
        wanted = ("train", "test") if presplit else ("all",)
        for split in wanted:
            if not splits.get(split):
                inside = f"{split}/{name}" if presplit else name
                raise UploadError(
                    f"{where}: class folder {inside!r} holds no images ({IMAGE_KINDS}); add some or remove the folder"
                )


def _check_totals(source: _Source, files: list[Entry]) -> None:
    limits = source.limits
    if len(files) > limits.max_images:
        raise UploadError(
            f"{source.label}: {len(files):,} images, over the limit of {limits.max_images:,}; import a part of them"
        )
    declared = sum(e.size for e in files)  # before reading any: a zip bomb is refused from its table of contents
    if declared > limits.max_bytes:
        raise UploadError(
            f"{source.label}: the images add up to {_mb(declared)} uncompressed, over the limit of "
            f"{_mb(limits.max_bytes)}; import fewer or smaller images"
        )


def _plan_idx(source: _Source, top_files: list[Entry], entries: list[Entry]) -> _Plan:
    plan = _Plan("idx", skipped=list(getattr(source, "skipped", [])))
    for e in top_files:
        role = _idx_role(e.parts[0])
        if role is not None:
            if role in plan.idx:
                raise UploadError(
                    f"{source.label}: two files for {role} ({plan.idx[role].name} and {e.name}); keep one"
                )
            plan.idx[role] = e
        elif e.parts[0].lower() == CLASSES_FILE:
            plan.classes_file = e
        else:
            plan.skipped.append(_skip_record(e.name, "not one of the four IDX files or classes.txt"))
    for e in entries:
        if len(e.parts) > 1 and not e.is_folder:
            plan.skipped.append(_skip_record(e.name, "in a sub-folder of an IDX data set"))
    missing = [f"{role}-idx{3 if 'images' in role else 1}-ubyte" for role in IDX_FILES if role not in plan.idx]
    if missing:
        raise UploadError(
            f"{source.label}: has IDX files but is missing {', '.join(missing)} (.gz or raw); an IDX data set is "
            "the four files train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
            "t10k-labels-idx1-ubyte"
        )
    _check_total_bytes(source, list(plan.idx.values()))
    return plan


def _check_total_bytes(source: _Source, files: list[Entry]) -> None:
    declared = sum(e.size for e in files)
    if declared > source.limits.max_bytes:
        raise UploadError(
            f"{source.label}: the files add up to {_mb(declared)}, over the limit of {_mb(source.limits.max_bytes)}"
        )


# ---------------------------------------------------------------- images to 28x28


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An image file's bytes as gray floats in 0-1 (any colour; transparency over white), its longer side
    WORK_SIZE. _Skip when it is not a readable image or has more than max_pixels pixels."""
    try:
        with warnings.catch_warnings():
            # PIL warns (and past twice its own limit refuses) at open; the size is checked below, before decoding
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > max_pixels:
            raise _Skip(f"{width}x{height} pixels, over the limit of {max_pixels:,} per image")
        if width < 1 or height < 1:
            raise _Skip("an image of no pixels")
        image.draft("RGB", _work_size(width, height))  # JPEG: decoded at a fraction of the size; others ignore it
        if image.getexif().get(EXIF_ORIENTATION, 1) != 1:  # a phone's photo, stored sideways
            image = ImageOps.exif_transpose(image)
        image = _flatten(image)
        size = _work_size(*image.size)
        if image.size != size:
            image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        return to_grayscale(np.asarray(image))
    except _Skip:
        raise
    except Image.UnidentifiedImageError:  # PIL says this for a damaged header too
        raise _Skip(f"not a readable image (damaged, or not in a format this lab reads: {IMAGE_FORMATS})") from None
    except Image.DecompressionBombError:
        raise _Skip(f"not a readable image (over {max_pixels:,} pixels)") from None
    except (OSError, SyntaxError, ValueError, EOFError, TypeError, IndexError, MemoryError) as exc:
        raise _Skip(f"not a readable image (damaged or cut short: {_reason(exc)})") from None


def _work_size(width: int, height: int) -> tuple[int, int]:
    scale = WORK_SIZE / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _flatten(image: Image.Image) -> Image.Image:
    """An "L" or "RGB" image from any mode: 16-bit and float gray scaled to 0-255, transparency over white
    (images with a transparent background are drawn to be seen on white pages)."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        low, high = float(pixels.min()), float(pixels.max())
        scaled = (pixels - low) / (high - low) * 255 if high > low else np.zeros_like(pixels)
        return Image.fromarray(scaled.astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if image.mode in ("L", "RGB"):
        return image
    return image.convert("L" if image.mode in ("1", "P") and _is_gray_palette(image) else "RGB")


def _is_gray_palette(image: Image.Image) -> bool:
    if image.mode == "1":
        return True
    palette = image.getpalette() or []
    return all(palette[i] == palette[i + 1] == palette[i + 2] for i in range(0, len(palette) - 2, 3))


def ink_on_black(gray: np.ndarray) -> np.ndarray:
    """White ink on a black background, in 0-1: a light background inverted, its level subtracted, the ink
    stretched to full white (a pencil on paper is gray, MNIST's ink is white). All black when no ink stands out."""
    border = np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])
    background = float(np.median(border))
    if background > LIGHT_BORDER:
        gray, background = 1.0 - gray, 1.0 - background
    ink = np.clip(gray - background, 0.0, None)
    peak = float(ink.max())
    if peak < MIN_CONTRAST:
        return np.zeros_like(ink)
    return ink / peak


def convert_image(data: bytes, fit: str = "centre", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An image file's bytes as MNIST's 28x28 uint8, white on black (see the module's docstring for fit).
    _Skip (a reason) when it cannot be read or, in centre mode, has no ink."""
    ink = ink_on_black(decode_image(data, max_pixels))
    if fit == "centre":
        box = ink_box(ink)
        if box is None:
            raise _Skip("no ink found: the image is blank or has too little contrast")
        top, bottom, left, right = box
        pixels = paste_centred(fit_box(ink[top:bottom, left:right], BOX))
    else:
        # the whole picture, its longer side 28, centred in the middle of the field (not by mass: a photo's
        # object is where the photographer put it)
        scaled = fit_box(ink, SIZE)
        pixels = np.zeros((SIZE, SIZE), np.float32)
        top, left = (SIZE - scaled.shape[0]) // 2, (SIZE - scaled.shape[1]) // 2
        pixels[top : top + scaled.shape[0], left : left + scaled.shape[1]] = scaled
    return np.round(np.clip(pixels, 0.0, 1.0) * 255).astype(np.uint8)


# ---------------------------------------------------------------- preview and import


def _check_fit(fit: str) -> None:
    if fit not in FITS:
        raise UploadError(f"fit {fit!r} is not one of {', '.join(FITS)}")


def preview(
    source,
    fit: str = "centre",
    per_class: int = 8,
    *,
    max_images: int = MAX_IMAGES,
    max_bytes: int = MAX_BYTES,
    max_file_bytes: int = MAX_FILE_BYTES,
    max_pixels: int = MAX_PIXELS,
    label: str | None = None,
) -> tuple[list[str], np.ndarray, list[int], list[dict]]:
    """What an import would make of a source, cheaply, for a page to show first: (class names, uint8 array
    (k, per_class, 28, 28) of each class's first images converted (black where a class has fewer), images per
    class, skipped files). Only the images shown are read; the rest are counted from the listing. Messages name
    the source by label (default: its path). UploadError for everything import_dataset refuses from the listing alone."""
    _check_fit(fit)
    limits = Limits(max_images, max_bytes, max_file_bytes, max_pixels)
    src = _open_source(source, limits, label)
    try:
        plan = _plan(src)
        if plan.kind == "idx":
            names, splits = _read_idx_set(src, plan)
            images = np.concatenate([splits["train"][0], splits["test"][0]])
            labels = np.concatenate([splits["train"][1], splits["test"][1]])
            grid = np.zeros((len(names), per_class, SIZE, SIZE), np.uint8)
            for label in range(len(names)):
                chosen = images[labels == label][:per_class]
                grid[label, : len(chosen)] = chosen
            counts = [int((labels == label).sum()) for label in range(len(names))]
            return names, grid, counts, plan.skipped
        grid = np.zeros((len(plan.class_names), per_class, SIZE, SIZE), np.uint8)
        skipped = list(plan.skipped)
        for k, name in enumerate(plan.class_names):
            shown, tried = 0, 0
            for entry in (e for files in plan.files[name].values() for e in files):
                if shown == per_class:
                    break
                tried += 1
                try:
                    grid[k, shown] = convert_image(src.read(entry), fit, max_pixels)
                    shown += 1
                except _Skip as why:
                    skipped.append(_skip_record(entry.name, str(why)))
            if not shown and tried == plan.count(name):  # every file of the class read: the import would refuse it
                raise UploadError(_no_usable_images(src.label, name, skipped))
        return plan.class_names, grid, [plan.count(n) for n in plan.class_names], skipped
    finally:
        src.close()


def import_dataset(
    source,
    name: str,
    *,
    fit: str = "centre",
    overwrite: bool = False,
    root: Path | None = None,
    seed: int = 0,
    max_images: int = MAX_IMAGES,
    max_bytes: int = MAX_BYTES,
    max_file_bytes: int = MAX_FILE_BYTES,
    max_pixels: int = MAX_PIXELS,
    progress: Callable[[int, int], None] | None = None,
    label: str | None = None,
) -> ImportReport:
    """Check a source (a folder, a zip path or an open zip file) and store it as the data set `name` in root
    (default <runs folder>/datasets: the current owner's). progress(done, total) is called as images are
    converted; messages name the source by label (default: its path). UploadError (a DataError) for every
    problem, before anything is written."""
    start = time.perf_counter()
    _check_fit(fit)
    folder_name = dataset_folder_name(name)
    root = Path(root) if root is not None else runs_dir() / OWN_FOLDER
    target = root / folder_name
    if target.exists() and not overwrite:  # before the work: a refusal after it would cost the user the wait
        raise UploadError(_exists_message(folder_name))
    limits = Limits(max_images, max_bytes, max_file_bytes, max_pixels)
    src = _open_source(source, limits, label)
    try:
        plan = _plan(src)
        if plan.kind == "idx":
            class_names, splits = _read_idx_set(src, plan)
            skipped = plan.skipped
        else:
            class_names = plan.class_names
            splits, skipped = _convert_images(src, plan, fit, seed, progress)
    finally:
        src.close()
    owners.check_current_quota()  # hosted: a visitor at MNIST_OWNER_QUOTA_MB stores no more
    kind = "idx" if plan.kind == "idx" else src.kind
    description = {
        "name": folder_name,
        "title": str(name),
        "class_names": list(class_names),
        "source": kind,
        "train": len(splits["train"][1]),
        "test": len(splits["test"][1]),
        "skipped": skipped[:SKIPPED_KEPT],
        "skipped_total": len(skipped),
        "fit": fit if kind != "idx" else None,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    _write_dataset(target, splits, description, overwrite)
    counts = {s: [int((labels == k).sum()) for k in range(len(class_names))] for s, (_, labels) in splits.items()}
    return ImportReport(
        folder_name,
        target,
        list(class_names),
        counts["train"],
        counts["test"],
        skipped,
        time.perf_counter() - start,
        title=str(name),
        source=kind,
    )


def dataset_folder_name(name: str) -> str:
    """The folder a data set's name is stored under (checkpoints.safe_name's rules), or UploadError."""
    if not str(name).strip():
        raise UploadError("the data set name is empty: enter one, using letters, digits, '.', '_' and '-'")
    try:
        return safe_name(str(name).strip())
    except CheckpointError:
        raise UploadError(
            f"data set name {name!r} has no usable characters; use letters, digits, '.', '_' and '-'"
        ) from None


def _exists_message(folder_name: str) -> str:
    return (
        f"a data set named {folder_name!r} already exists; choose another name, or replace it "
        "(overwrite=True, --overwrite)"
    )


def _convert_images(
    src: _Source, plan: _Plan, fit: str, seed: int, progress: Callable[[int, int], None] | None
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[dict]]:
    """Every image read and converted, then split: {"train": (images, labels), "test": ...}, and the skipped."""
    skipped = list(plan.skipped)
    total = sum(plan.count(n) for n in plan.class_names)
    done = 0
    converted: dict[str, dict[str, list[np.ndarray]]] = {}
    for name in plan.class_names:
        for split, files in plan.files[name].items():
            kept = converted.setdefault(name, {}).setdefault(split, [])
            for entry in files:
                try:
                    kept.append(convert_image(src.read(entry), fit, src.limits.max_pixels))
                except _Skip as why:
                    skipped.append(_skip_record(entry.name, str(why)))
                done += 1
                if progress is not None and (done % 200 == 0 or done == total):
                    progress(done, total)
    if not any(kept for splits in converted.values() for kept in splits.values()):
        first = f" (first: {skipped[0]['file']}: {skipped[0]['why']})" if skipped else ""
        raise UploadError(f"{src.label}: none of its {total} image files could be used{first}")
    rng = np.random.default_rng(seed)
    chosen: dict[str, list[tuple[np.ndarray, int]]] = {"train": [], "test": []}
    for label, name in enumerate(plan.class_names):
        splits = converted[name]
        if plan.presplit:
            for split in ("train", "test"):
                if not splits[split]:
                    raise UploadError(
                        f"{src.label}: none of the images in {split}/{name} could be used "
                        f"({_first_reason(skipped, name)}); add readable images to it"
                    )
                chosen[split] += [(image, label) for image in splits[split]]
            continue
        images = splits["all"]
        if not images:
            raise UploadError(_no_usable_images(src.label, name, skipped))
        if len(images) < 2:
            raise UploadError(
                f"{src.label}: class {name!r} has only 1 usable image; a class needs at least 2, one to train on "
                "and one to test with: add images to its folder"
            )
        order = rng.permutation(len(images))
        n_test = max(1, round(len(images) * TEST_SHARE))
        chosen["test"] += [(images[i], label) for i in order[:n_test]]
        chosen["train"] += [(images[i], label) for i in order[n_test:]]
    splits_out = {}
    for split, pairs in chosen.items():
        order = rng.permutation(len(pairs))  # classes mixed, as in MNIST's files
        images = np.stack([pairs[i][0] for i in order]) if pairs else np.zeros((0, SIZE, SIZE), np.uint8)
        labels = np.array([pairs[i][1] for i in order], dtype=np.uint8)
        splits_out[split] = (images, labels)
    return splits_out, skipped


def _no_usable_images(label: str, class_name: str, skipped: list[dict]) -> str:
    return (
        f"{label}: none of the images of class {class_name!r} could be used ({_first_reason(skipped, class_name)}); "
        "add readable images to its folder"
    )


def _first_reason(skipped: list[dict], class_name: str) -> str:
    for record in skipped:
        if f"/{class_name}/" in f"/{record['file']}":
            return f"{record['file']}: {record['why']}"
    return "no readable images"


def _read_idx_set(src: _Source, plan: _Plan) -> tuple[list[str], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The four IDX files read and checked (shapes, counts, labels against the classes)."""
    arrays = {}
    for role, entry in plan.idx.items():
        try:
            raw = src.read(entry)
        except _Skip as why:
            raise UploadError(f"{src.label}: {entry.name} {why}") from None
        if entry.suffix == ".gz":
            raw = _gunzip_limited(raw, src.limits.max_bytes, f"{src.label}: {entry.name}")
        try:
            arrays[role] = parse_idx(raw, f"{src.label}: {entry.name}")
        except UploadError:
            raise
        except DataError as exc:  # the loader's own checks (header against size), as an upload's error
            raise UploadError(str(exc)) from None
    splits = {}
    for split, stem in (("train", "train"), ("test", "t10k")):
        images, labels = arrays[f"{stem}-images"], arrays[f"{stem}-labels"]
        where = f"{src.label}: {plan.idx[f'{stem}-images'].name}"
        if images.ndim != 3 or images.shape[1:] != (SIZE, SIZE):
            raise UploadError(
                f"{where}: images are {'x'.join(map(str, images.shape))}, not N x {SIZE} x {SIZE}; convert them to "
                f"{SIZE}x{SIZE} first, or import them as image files in class folders"
            )
        if labels.ndim != 1:
            raise UploadError(f"{src.label}: {plan.idx[f'{stem}-labels'].name}: labels must be one-dimensional")
        if len(images) != len(labels):
            raise UploadError(
                f"{where} holds {len(images):,} images but {plan.idx[f'{stem}-labels'].name} holds "
                f"{len(labels):,} labels; the files do not belong together"
            )
        if len(images) == 0:
            raise UploadError(f"{where}: holds no images")
        splits[split] = (np.ascontiguousarray(images), np.ascontiguousarray(labels))
    count = len(splits["train"][1]) + len(splits["test"][1])
    if count > src.limits.max_images:
        raise UploadError(f"{src.label}: {count:,} images, over the limit of {src.limits.max_images:,}")
    top = int(max(labels.max() for _, labels in splits.values()))
    if plan.classes_file is not None:
        names = _read_class_names(src, plan.classes_file)
    else:
        names = [str(k) for k in range(top + 1)]
    if not MIN_CLASSES <= len(names) <= MAX_CLASSES:
        raise UploadError(
            f"{src.label}: {len(names)} classes; a data set needs {MIN_CLASSES} to {MAX_CLASSES} (labels 0 to "
            f"{MAX_CLASSES - 1}, every model here has {MAX_CLASSES} outputs)"
        )
    for split, (_, labels) in splits.items():
        if int(labels.max()) >= len(names):
            file = plan.idx[f"{'train' if split == 'train' else 't10k'}-labels"].name
            named = f"{CLASSES_FILE} names {len(names)}" if plan.classes_file is not None else f"{len(names)} classes"
            raise UploadError(
                f"{src.label}: {file}: label {int(labels.max())} is out of range ({named}, labels 0-{len(names) - 1})"
            )
    return names, splits


def _read_class_names(src: _Source, entry: Entry) -> list[str]:
    try:
        text = src.read(entry).decode("utf-8-sig")
    except _Skip as why:
        raise UploadError(f"{src.label}: {entry.name} {why}") from None
    except UnicodeDecodeError:
        raise UploadError(f"{src.label}: {entry.name} is not UTF-8 text; write one class name a line") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise UploadError(f"{src.label}: {entry.name} names {', '.join(repeated)} more than once")
    return names


def _gunzip_limited(raw: bytes, limit: int, where: str) -> bytes:
    """A gzip'd file's content, read in chunks and stopped past limit (a small .gz can inflate enormously)."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
            data = stream.read(limit + 1)
    except (OSError, EOFError) as exc:
        raise UploadError(f"{where}: not a readable gzip file ({_reason(exc)})") from None
    if len(data) > limit:
        raise UploadError(f"{where}: inflates to more than {_mb(limit)}, the limit")
    return data


# ---------------------------------------------------------------- writing the data set


def idx_bytes(array: np.ndarray) -> bytes:
    """A uint8 array as an IDX file: magic 0x0000 08 <ndim>, each dimension big-endian, then the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def _write_dataset(target: Path, splits: dict, description: dict, overwrite: bool) -> None:
    """The four IDX files, SHA256SUMS and dataset.json, built in a temporary folder beside target and renamed
    into place: a reader (mnist_core.datasets) finds the whole set or none."""
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporary_folders(target.parent)  # a killed import's leftovers
    staged = temporary_folder_beside(target)
    try:
        sums = []
        for (split, what), file_name in OUTPUT_FILES.items():
            images, labels = splits[split]
            # mtime=0: the same images give the same file, byte for byte, and so the same SHA-256
            data = gzip.compress(idx_bytes(images if what == "images" else labels), compresslevel=6, mtime=0)
            write_bytes_atomic(staged / file_name, data)
            sums.append(f"{hashlib.sha256(data).hexdigest()}  {file_name}\n")
        write_bytes_atomic(staged / SUMS_FILE, "".join(sums).encode())
        write_json_atomic(staged / DESCRIPTION_FILE, description, ensure_ascii=False)
        try:
            move_folder_into_place(staged, target, replace=overwrite)
        except FileExistsError:
            raise UploadError(_exists_message(target.name)) from None
    except BaseException:
        if staged.exists():
            remove_folder(staged)
        raise


def delete_dataset(name: str, root: Path | None = None) -> Path:
    """Remove a data set of your own (whole, never half: renamed aside first); UploadError when there is none."""
    root = Path(root) if root is not None else runs_dir() / OWN_FOLDER
    target = root / dataset_folder_name(name)
    if not (target / DESCRIPTION_FILE).is_file():
        raise UploadError(f"no data set of your own named {name!r} (in {root})")
    remove_folder(target)
    return target


# ---------------------------------------------------------------- small helpers


def _mb(n: int) -> str:
    return f"{n / 2**20:,.1f} MB"


_OBJECT_REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")


def _reason(exc: BaseException) -> str:
    # A library's message may name an in-memory object ("<_io.BytesIO object at 0x7f..>"): no use to a reader.
    return _OBJECT_REPR.sub("the file", str(exc).splitlines()[0])[:160] if str(exc) else "no reason given"
