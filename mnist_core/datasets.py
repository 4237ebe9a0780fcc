"""The data sets a page, a job or the command line can use: MNIST, Fashion-MNIST and the user's own.

Every data set has MNIST's shape (28x28 gray images, white on black, up to 10 classes, train and test splits as
four IDX files), so every architecture, page and job works on each unchanged. A data set is named by a key:
- "mnist": the bundled digits (data/mnist, or $MNIST_DATA_DIR);
- "fashion-mnist": Zalando's clothing images (bundled in data/fashion-mnist, or $FASHION_MNIST_DIR, or Debian's
  dataset-fashion-mnist package), ten classes from "T-shirt/top" to "Ankle boot";
- "own:NAME": a set the user imported (mnist_core.uploads), stored in <runs folder>/datasets/NAME with a
  dataset.json beside its IDX files. In hosted mode the runs folder is the visitor's own, so a visitor's data sets
  are theirs, like their runs.

A checkpoint records the data set it was trained on (Mnist.record()); check_classes() refuses to read a checkpoint on a
data set whose classes are other ones (a digit classifier cannot name clothes).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .checkpoints import runs_dir, safe_name
from .data import BUNDLED_DIR, DIGITS, DataError, Mnist, _load_cached, resolve_data_dir

MNIST = "mnist"
FASHION = "fashion-mnist"
OWN = "own:"
DEFAULT = MNIST
OWN_FOLDER = "datasets"
DESCRIPTION_FILE = "dataset.json"

FASHION_ENV = "FASHION_MNIST_DIR"
FASHION_BUNDLED_DIR = BUNDLED_DIR.parent / "fashion-mnist"
FASHION_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")  # apt-get install dataset-fashion-mnist
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
MAX_CLASSES = 10  # every architecture ends in 10 outputs


@dataclass(frozen=True)
class DatasetInfo:
    """What a data set is, without loading it: its key, its title, its classes, where its files are."""

    key: str
    title: str
    class_names: tuple[str, ...]
    folder: Path
    description: str
    train_size: int
    test_size: int

    @property
    def own(self) -> bool:
        return self.key.startswith(OWN)

    def class_name(self, label: int) -> str:
        return self.class_names[int(label)]


def fashion_dir() -> Path:
    """$FASHION_MNIST_DIR, else the bundled copy, else Debian's package folder."""
    if os.environ.get(FASHION_ENV):
        return Path(os.environ[FASHION_ENV])
    return FASHION_BUNDLED_DIR if FASHION_BUNDLED_DIR.is_dir() else FASHION_DEBIAN_DIR


def own_root() -> Path:
    """The folder of the current owner's imported data sets (the visitor's own in hosted mode)."""
    return runs_dir() / OWN_FOLDER


def _builtin(key: str) -> DatasetInfo:
    if key == MNIST:
        return DatasetInfo(
            MNIST, "MNIST", DIGITS, resolve_data_dir(), "handwritten digits 0-9 (LeCun, Cortes, Burges)", 60_000, 10_000
        )
    return DatasetInfo(
        FASHION,
        "Fashion-MNIST",
        FASHION_CLASSES,
        fashion_dir(),
        "Zalando's photos of clothes, shoes and bags, in MNIST's shape: ten classes, much harder than digits",
        60_000,
        10_000,
    )


def _own(name: str) -> DatasetInfo:
    folder = own_root() / safe_name(name)
    path = folder / DESCRIPTION_FILE
    if not path.is_file():
        raise DataError(
            f"no data set of your own named {name!r}; import one first (the Data page, or "
            "python -m mnist_core dataset import SOURCE --name NAME)"
        )
    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
        names = tuple(str(n) for n in meta["class_names"])
        train, test = int(meta["train"]), int(meta["test"])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"{path}: not a readable description ({type(exc).__name__}); import the data set again"
        ) from None
    if not 2 <= len(names) <= MAX_CLASSES:
        raise DataError(f"{path}: {len(names)} classes; a data set has 2 to {MAX_CLASSES}")
    title = str(meta.get("title") or name)
    return DatasetInfo(OWN + folder.name, title, names, folder, f"your own: {', '.join(names)}", train, test)


def info(key: str) -> DatasetInfo:
    """The data set a key names, or DataError listing what can be named."""
    if key in (MNIST, FASHION):
        return _builtin(key)
    if isinstance(key, str) and key.startswith(OWN) and key[len(OWN) :]:
        return _own(key[len(OWN) :])
    raise DataError(f"unknown data set {key!r}; use {MNIST}, {FASHION} or {OWN}NAME for one you imported")


def available() -> list[DatasetInfo]:
    """MNIST, Fashion-MNIST, then the current owner's imported sets by name (unreadable ones left out)."""
    found = [_builtin(MNIST), _builtin(FASHION)]
    root = own_root()
    if root.is_dir():
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            try:
                found.append(_own(folder.name))
            except DataError:
                continue
    return found


def version(key: str) -> tuple[str, int]:
    """Which files a key names now: the folder, and for a set of your own when it was imported (a set imported
    again under the same name is another version; the reader and the caches key on this)."""
    chosen = info(key)
    stamp = (chosen.folder / DESCRIPTION_FILE).stat().st_mtime_ns if chosen.own else 0
    return str(chosen.folder.resolve()), stamp


def cache_tag(key: str) -> str:
    """What tells a set of your own apart in a server-wide cache: its folder and version ("" for the shipped sets,
    whose keys must not depend on where a machine keeps their files)."""
    if not (isinstance(key, str) and key.startswith(OWN)):
        return ""
    folder, stamp = version(key)
    return f"{folder}@{stamp}"


def load(key: str = DEFAULT) -> Mnist:
    """Load and check a data set once per process and version (the reader caches by folder and version)."""
    chosen = info(key)
    folder, stamp = version(key)
    if chosen.key == MNIST:
        return _load_cached(folder)
    try:
        return _load_cached(folder, chosen.key, chosen.title, chosen.class_names, stamp)
    except DataError as exc:
        if chosen.key == FASHION and not chosen.folder.is_dir():
            raise DataError(
                f"Fashion-MNIST's files are not in {chosen.folder}: restore data/fashion-mnist from a fresh clone, "
                f"apt-get install dataset-fashion-mnist, or set {FASHION_ENV} to a folder of its four IDX files"
            ) from None
        raise exc


def recorded_classes(meta: dict) -> tuple[str, ...]:
    """The classes a checkpoint was trained on; a checkpoint from before data sets were recorded read digits."""
    recorded = meta.get("dataset") or {}
    return tuple(recorded.get("class_names") or DIGITS)


def recorded_title(meta: dict) -> str:
    return (meta.get("dataset") or {}).get("title") or "MNIST"


def same_classes(meta: dict, data: Mnist | DatasetInfo) -> bool:
    return recorded_classes(meta) == tuple(data.class_names)


def check_classes(meta: dict, data: Mnist | DatasetInfo) -> None:
    """DataError when a checkpoint was trained on other classes than the data set's, saying which."""
    if same_classes(meta, data):
        return
    name = meta.get("name") or "this checkpoint"
    trained = recorded_classes(meta)
    raise DataError(
        f"{name!r} was trained on {recorded_title(meta)} ({_classes_text(trained)}), not on {data.title} "
        f"({_classes_text(data.class_names)}); choose a checkpoint trained on {data.title}, or switch the data set "
        f"to {recorded_title(meta)}"
    )


def _classes_text(names) -> str:
    names = list(names)
    return ", ".join(names) if len(names) <= 4 else f"{names[0]}, {names[1]} ... {names[-1]}"
