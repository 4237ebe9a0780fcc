"""MNIST as four validated IDX files held in memory as tensors, served as sliced batches.

The whole data set is 70,000 x 28 x 28 bytes (55 MB), so it lives in memory (on the GPU when
there is one) as bytes and batches are made by indexing, never by per-sample Python work; each batch
is standardized as it is taken (a float32 copy of the set would be 220 MB more).
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import re
import socket
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "data" / "mnist"
ENV_DIR = "MNIST_DATA_DIR"

SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SPLIT_SIZES = {"train": 60_000, "test": 10_000}
IDX_UINT8 = 0x08
# The training pixels' mean and std in 0-1 units, as load_mnist() computes them (a test keeps these
# equal). Inputs that do not come from the data set (a drawing) are standardized with them.
PIXEL_MEAN = 0.1307
PIXEL_STD = 0.3081


# Pixel scalings, each in one place. Classifiers read standardized pixels (mean 0, std 1 over the
# training set); the GAN's generator ends in tanh, so the GAN reads and writes pixels in [-1, 1].


def standardize(pixels01, mean=PIXEL_MEAN, std=PIXEL_STD) -> torch.Tensor:
    """Pixels in 0-1 (any shape) -> float tensor standardized with mean and std (MNIST's by default)."""
    return (torch.as_tensor(pixels01, dtype=torch.float32) - mean) / std


def standardize_uint8(pixels: torch.Tensor, mean: float = PIXEL_MEAN, std: float = PIXEL_STD) -> torch.Tensor:
    """uint8 pixels (any shape) -> standardized float32, as standardize(pixels / 255) gives."""
    # One float copy, then worked in place: the training split as float32 is 188 MB, and a second
    # temporary of that size is what the in-place steps avoid.
    return pixels.to(torch.float32, copy=True).div_(255.0).sub_(mean).div_(std)


def to_tanh_range(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (any shape) -> float in [-1, 1], the range the GAN's tanh output lives in."""
    return pixels.float() / 127.5 - 1


def from_tanh_range(images: torch.Tensor) -> torch.Tensor:
    """Floats in [-1, 1] (the GAN's) -> pixels in 0-1."""
    return (images + 1) / 2


class DataError(ValueError):
    """A data file is missing, damaged or does not belong with the others."""


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzip'd or raw) into a uint8 array, checking its header against its size."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: not a readable gzip file ({exc}); the file is truncated or corrupted") from None
    return parse_idx(raw, path)


def parse_idx(raw: bytes, path: str | Path) -> np.ndarray:
    """An IDX file's bytes (already unzipped) as a uint8 array, checking its header against its size; path names
    it in messages (a file, or a member of an uploaded zip, which is never written to disk)."""
    if len(raw) < 4:
        raise DataError(f"{path}: only {len(raw)} bytes; an IDX file starts with a 4-byte magic number")
    zero, dtype_code, ndim = int.from_bytes(raw[:2], "big"), raw[2], raw[3]
    if zero != 0 or ndim == 0:
        raise DataError(f"{path}: bad magic number {raw[:4].hex()}; this is not an IDX file")
    if dtype_code != IDX_UINT8:
        raise DataError(f"{path}: element type code 0x{dtype_code:02x}; MNIST files hold unsigned bytes (0x08)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: header claims {ndim} dimensions but the file ends after {len(raw)} bytes")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + math.prod(dims)
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "longer than its header says"
        raise DataError(f"{path}: {problem}: header says {dims} = {expected} bytes, file has {len(raw)}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find_file(directory: Path, stem: str) -> Path:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.exists():
            return candidate
    raise DataError(f"{directory}: missing {stem}(.gz); expected the four MNIST IDX files there")


_SUMS_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")


def _read_sums(sums_file: Path) -> dict[str, str]:
    """SHA256SUMS as {file name: digest}, in `sha256sum`'s format, or DataError naming what is wrong."""
    try:
        text = sums_file.read_bytes().decode("utf-8")
    except OSError as exc:
        raise DataError(f"{sums_file}: cannot be read ({exc.strerror or exc}); fix or remove it") from None
    except UnicodeDecodeError:
        raise DataError(
            f"{sums_file}: not UTF-8 text; it must hold lines of '<SHA-256>  <file name>' "
            "as sha256sum writes them: fix or remove it"
        ) from None
    expected = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _SUMS_LINE.fullmatch(line.strip())
        if match is None:
            raise DataError(
                f"{sums_file}: line {number} is not '<64 hex digits>  <file name>' "
                f"({line.strip()[:40]!r}); fix or remove the file"
            )
        expected[match.group(2).strip()] = match.group(1).lower()
    return expected


def _check_sha256(directory: Path, files: list[Path], digests: dict[Path, str]) -> None:
    """Check the files' digests against the folder's SHA256SUMS, if it has one: every file must be listed and match."""
    sums_file = directory / "SHA256SUMS"
    if not sums_file.exists():
        return
    expected = _read_sums(sums_file)
    for path in files:
        if path.name not in expected:
            # A file the sums do not cover is not trusted: e.g. a raw IDX beside sums of the .gz files.
            listed = ", ".join(sorted(expected)) or "nothing"
            raise DataError(
                f"{path}: not listed in {sums_file.name} (it lists {listed}), so it cannot be checked; "
                f"add its line (sha256sum {path.name} >> SHA256SUMS) or use the listed files"
            )
        actual = digests[path]
        if actual != expected[path.name]:
            raise DataError(
                f"{path}: SHA-256 {actual[:12]}... does not match SHA256SUMS ({expected[path.name][:12]}...); "
                "the file is corrupted or was replaced: restore it from a fresh clone"
            )


def _read_split(directory: Path, split: str, n_classes: int, digests: dict[Path, str]) -> tuple[np.ndarray, np.ndarray]:
    image_path, label_path = (_find_file(directory, stem) for stem in SPLIT_FILES[split])
    for path in (image_path, label_path):
        digests[path] = hashlib.sha256(path.read_bytes()).hexdigest()
    _check_sha256(directory, [image_path, label_path], digests)
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{image_path}: images must be N x 28 x 28, found {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{label_path}: labels must be one-dimensional, found {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{image_path} holds {len(images)} images but {label_path} holds {len(labels)} labels")
    if labels.size and labels.max() >= n_classes:
        raise DataError(f"{label_path}: label {int(labels.max())} out of range 0-{n_classes - 1}")
    return images, labels


def resolve_data_dir(path: str | Path | None = None) -> Path:
    """An explicit path wins, then $MNIST_DATA_DIR, then the files bundled with the project."""
    if path is not None:
        return Path(path)
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR])
    return BUNDLED_DIR


def download_mnist(root: str | Path, timeout_s: float = 15.0) -> Path:
    """Fetch MNIST through torchvision into root; returns the folder of raw IDX files."""
    try:  # optional: a CPU-only install has no torchvision, and the bundled files need none
        from torchvision import datasets
    except (ImportError, RuntimeError) as exc:  # RuntimeError: a torchvision built for another torch
        raise DataError(
            f"downloading MNIST needs torchvision, which cannot be imported here ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:120] if str(exc) else 'no detail'}); use the bundled files "
            "(drop --download), set MNIST_DATA_DIR, or pip install torchvision"
        ) from None

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)
    try:
        for train in (True, False):
            datasets.MNIST(str(root), train=train, download=True)
    except Exception as exc:  # torchvision raises RuntimeError / URLError / socket errors
        raise DataError(
            f"could not download MNIST ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); "
            "this machine looks offline: use the bundled files (drop --download) or set MNIST_DATA_DIR"
        ) from None
    finally:
        socket.setdefaulttimeout(previous)
    return Path(root) / "MNIST" / "raw"


DIGITS = tuple(str(d) for d in range(10))


@dataclass(frozen=True, eq=False)
class Mnist:
    """A data set of 28x28 gray images (MNIST's shape): uint8 images (N, 28, 28) and int64 labels, train and test.

    mean and std are the training pixels' statistics in [0, 1] units (0.1307 and 0.3081 for MNIST). name is the
    data set's key (mnist_core.datasets), class_names the label of each class in order, sha256 one digest of its
    four files' digests: what a checkpoint records of the data it was trained on.
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str
    mean: float
    std: float
    name: str = "mnist"
    title: str = "MNIST"
    class_names: tuple[str, ...] = DIGITS
    sha256: str = ""

    def record(self) -> dict:
        """What a checkpoint keeps of the data set it was trained on."""
        return {"name": self.name, "title": self.title, "class_names": list(self.class_names), "sha256": self.sha256}

    def normalize(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 28, 28) -> float (N, 1, 28, 28), standardized with the training set's statistics."""
        return standardize_uint8(images_uint8, self.mean, self.std).unsqueeze(1)


@lru_cache(maxsize=4)
def _load_cached(
    directory: str, name: str = "mnist", title: str = "MNIST", class_names: tuple = DIGITS, version: int = 0
) -> Mnist:
    """version only keys the cache: a data set imported again into the same folder is read anew."""
    path = Path(directory)
    if path.exists() and not path.is_dir():
        raise DataError(f"{path}: is a file, not a folder; point {ENV_DIR} (or --data) at the folder of the IDX files")
    if not path.is_dir():
        raise DataError(f"{path}: no such folder; point {ENV_DIR} (or --data) at the folder of the IDX files")
    digests: dict[Path, str] = {}
    train_images, train_labels = _read_split(path, "train", len(class_names), digests)
    test_images, test_labels = _read_split(path, "test", len(class_names), digests)
    mean, std = _pixel_mean_std(train_images)
    as_tensor = lambda a, dtype: torch.from_numpy(a.copy()).to(dtype)  # noqa: E731 (copy: frombuffer is read-only)
    return Mnist(
        as_tensor(train_images, torch.uint8),
        as_tensor(train_labels, torch.int64),
        as_tensor(test_images, torch.uint8),
        as_tensor(test_labels, torch.int64),
        source=str(path),
        mean=mean,
        std=std,
        name=name,
        title=title,
        class_names=tuple(class_names),
        sha256=hashlib.sha256("".join(digests[p] for p in sorted(digests)).encode()).hexdigest(),
    )


def _pixel_mean_std(images: np.ndarray) -> tuple[float, float]:
    """Mean and std of uint8 pixels in [0, 1] units, exact, from a 256-bin histogram (no float copy of the set).

    Counted a million pixels at a time: bincount widens its input to int64, 8 bytes a pixel (376 MB at once)."""
    flat, counts = images.reshape(-1), np.zeros(256, dtype=np.float64)
    for start in range(0, flat.size, 1 << 20):
        counts += np.bincount(flat[start : start + (1 << 20)], minlength=256)
    values = np.arange(256, dtype=np.float64) / 255.0
    mean = float(counts @ values / counts.sum())
    return mean, float(np.sqrt(counts @ (values - mean) ** 2 / counts.sum()))


def load_mnist(path: str | Path | None = None, download: bool = False) -> Mnist:
    """Load and validate MNIST once per process (explicit path, $MNIST_DATA_DIR, bundled files)."""
    if download:
        root = Path(path) if path is not None else Path(tempfile.gettempdir()) / "mnist_core_download"
        return _load_cached(str(download_mnist(root).resolve()))
    return _load_cached(str(resolve_data_dir(path).resolve()))


DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"


def pick_device(device: str = "auto") -> torch.device:
    """The torch device a setting names ('auto': the GPU if there is one), or DataError saying what is available."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DataError(f"device {device!r} is not a device name; use {DEVICE_CHOICES}") from None
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise DataError(f"device {device!r} asked for, but no CUDA GPU is available; use --device cpu or auto")
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise DataError(f"device {device!r}: this machine has {torch.cuda.device_count()} GPU(s), numbered from 0")
    elif chosen.type == "mps" and not torch.backends.mps.is_available():
        raise DataError(f"device {device!r} asked for, but Apple's MPS is not available here; use cpu or auto")
    elif chosen.type != "cpu":
        raise DataError(f"device {device!r} is not supported; use {DEVICE_CHOICES}")
    return chosen


class StandardizedImages:
    """A split's uint8 digits read as model inputs: indexing standardizes only the rows asked for.

    images[a:b] or images[indices] gives floats (n, 1, 28, 28), images[i] one digit (1, 28, 28), as a
    float tensor of the whole split would, without holding one (70,000 digits as float32 are 220 MB,
    as bytes 55 MB).
    """

    def __init__(self, pixels: torch.Tensor, mean: float, std: float):
        self.pixels, self.mean, self.std = pixels, mean, std

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, key) -> torch.Tensor:
        if isinstance(key, torch.Tensor) and key.device != self.pixels.device:
            key = key.to(self.pixels.device)
        return standardize_uint8(self.pixels[key], self.mean, self.std).unsqueeze(-3)

    @property
    def device(self) -> torch.device:
        return self.pixels.device


class TensorSplit:
    """Images (uint8) and labels of one split, resident on a device, served as standardized batches by slicing."""

    def __init__(self, pixels: torch.Tensor, labels: torch.Tensor, device: torch.device, mean: float, std: float):
        self.pixels = pixels.to(device)  # (N, 28, 28) uint8
        self.images = StandardizedImages(self.pixels, mean, std)
        self.labels = labels.to(device)
        self.device = device
        self.mean, self.std = mean, std
        self.background = (0.0 - mean) / std  # the standardized value of a black pixel: what augmentation pads with

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, indices: torch.Tensor) -> TensorSplit:
        """The images at these indices, as a split of their own."""
        idx = torch.as_tensor(indices, dtype=torch.long).to(self.device)
        return TensorSplit(
            self.pixels.index_select(0, idx), self.labels.index_select(0, idx), self.device, self.mean, self.std
        )

    def batches(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        augment: Augment | None = None,
        augment_generator: torch.Generator | None = None,
    ):
        """Yield (images, labels), images standardized batch by batch; shuffled when a generator is given, else in order.

        Augmentation draws from augment_generator when given, so switching augmentation on or off leaves
        the data order of later epochs unchanged.
        """
        n = len(self)
        order = torch.randperm(n, generator=generator) if generator is not None else None
        for start in range(0, n, batch_size):
            if order is None:
                x, y = self.images[start : start + batch_size], self.labels[start : start + batch_size]
            else:
                idx = order[start : start + batch_size].to(self.device)
                x, y = self.images[idx], self.labels.index_select(0, idx)
            if augment is not None and augment.active:
                x = augment(x, augment_generator or generator, self.background)
            yield x, y


def balanced_order(labels: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """All indices, ordered so that every prefix holds the classes as evenly as possible.

    Each class is shuffled with the seed, then the classes take turns, so the first 100 indices are ten
    of each digit; a label budget of n is simply the first n.
    """
    gen = torch.Generator().manual_seed(seed)
    labels = torch.as_tensor(labels)
    per_class = [torch.nonzero(labels == c).flatten() for c in labels.unique(sorted=True).tolist()]
    per_class = [idx[torch.randperm(len(idx), generator=gen)] for idx in per_class]
    rank = torch.empty(len(labels), dtype=torch.long)
    for idx in per_class:
        rank[idx] = torch.arange(len(idx))  # the turn on which each image comes up within its class
    turn_then_class = rank * 64 + labels  # sort by turn, classes in order within a turn
    return torch.argsort(turn_then_class, stable=True)


@dataclass(frozen=True)
class Augment:
    """Random rotation (degrees) and shift (pixels), drawn per image but applied to a batch at once."""

    rotation: float = 0.0
    shift: float = 0.0

    @property
    def active(self) -> bool:
        return self.rotation > 0 or self.shift > 0

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None, background: float) -> torch.Tensor:
        n, _, h, w = x.shape
        uniform = lambda: torch.rand(n, generator=generator).mul_(2).sub_(1)  # noqa: E731 (in [-1, 1))
        angle = uniform() * math.radians(self.rotation)
        # affine_grid works in [-1, 1] coordinates: one pixel is 2 / size of them.
        tx, ty = uniform() * self.shift * 2 / w, uniform() * self.shift * 2 / h
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1).to(x)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        # Shift so the background is 0 before sampling: grid_sample pads with zeros.
        return F.grid_sample(x - background, grid, align_corners=False, padding_mode="zeros") + background


class DeviceData:
    """Train / validation / test splits of MNIST, resident on one device as bytes, standardized per batch."""

    def __init__(
        self, mnist: Mnist | None = None, device: str | torch.device = "auto", val_size: int = 0, val_seed: int = 0
    ):
        mnist = mnist or load_mnist()
        self.mnist = mnist
        self.device = device if isinstance(device, torch.device) else pick_device(device)
        n_train = len(mnist.train_labels)
        if not 0 <= val_size < n_train:
            raise DataError(f"validation size {val_size} must be between 0 and {n_train - 1}")
        split = lambda images, labels: TensorSplit(images, labels, self.device, mnist.mean, mnist.std)  # noqa: E731
        if val_size:
            order = torch.randperm(n_train, generator=torch.Generator().manual_seed(val_seed))
            train_idx, val_idx = order[val_size:].sort().values, order[:val_size].sort().values
            self.train = split(mnist.train_images[train_idx], mnist.train_labels[train_idx])
            self.val = split(mnist.train_images[val_idx], mnist.train_labels[val_idx])
        else:
            # On the CPU the split shares the loaded bytes (no copy); .to(device) copies to a GPU.
            self.train = split(mnist.train_images, mnist.train_labels)
            self.val = None
        self.test = split(mnist.test_images, mnist.test_labels)


def tile(images: torch.Tensor | np.ndarray, columns: int, pad: int = 2) -> np.ndarray:
    """Lay uint8 digits (N, 28, 28) out as one image, so a grid is one picture, not N widgets."""
    images = np.asarray(images, dtype=np.uint8)
    n, h, w = images.shape
    rows = max(1, math.ceil(n / columns))
    out = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad), 40, dtype=np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        out[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = image
    return out
