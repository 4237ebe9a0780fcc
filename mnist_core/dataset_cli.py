"""The command line's `dataset` subcommand: import, list and delete data sets of your own (mnist_core.uploads).

    python -m mnist_core dataset import SOURCE --name NAME [--fit centre|whole] [--overwrite]
    python -m mnist_core dataset list
    python -m mnist_core dataset delete NAME

SOURCE is a folder or a .zip of images in one sub-folder per class (cat/001.png), or of the four IDX files.
A data set imported as NAME is trained on with train --dataset own:NAME.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .checkpoints import CheckpointError
from .data import DataError
from .datasets import available
from .owners import OwnerError
from .uploads import FITS, delete_dataset, import_dataset

PROG = "python -m mnist_core"


def add_dataset_parser(sub) -> None:
    p = sub.add_parser("dataset", help="import, list and delete data sets of your own (runs/datasets/)")
    actions = p.add_subparsers(dest="dataset_command", required=True, parser_class=type(p))
    imp = actions.add_parser("import", help="store a folder or zip of class folders (or IDX files) as a data set")
    imp.add_argument("source", type=Path, help="a folder or .zip: one sub-folder of images per class, or IDX files")
    imp.add_argument("--name", help="the data set's name (default: the source's name); train with --dataset own:NAME")
    imp.add_argument(
        "--fit",
        choices=FITS,
        default="centre",
        help="centre: crop to the ink and centre it, as MNIST's digits (default); whole: the whole image, "
        "scaled and padded (photos of objects)",
    )
    imp.add_argument("--overwrite", action="store_true", help="replace a data set of that name")
    imp.add_argument("--quiet", action="store_true", help="no progress line")
    actions.add_parser("list", help="table of the data sets: name, classes, train and test sizes")
    delete = actions.add_parser("delete", help="delete a data set of your own")
    delete.add_argument("name")


def cmd_dataset(args) -> int:
    try:
        if args.dataset_command == "import":
            return _import(args)
        if args.dataset_command == "delete":
            folder = delete_dataset(args.name)
            print(f"deleted data set {folder.name!r} ({folder})")
            return 0
        return _list()
    except (DataError, CheckpointError, OwnerError) as exc:
        print(f"{PROG} dataset: error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2


def _import(args) -> int:
    name = args.name or args.source.stem
    show = None if args.quiet or not sys.stderr.isatty() else _progress
    report = import_dataset(args.source, name, fit=args.fit, overwrite=args.overwrite, progress=show)
    if show is not None:
        print(file=sys.stderr)
    print(report.summary())
    for record in report.skipped[:10]:
        print(f"  skipped {record['file']}: {record['why']}")
    if len(report.skipped) > 10:
        print(f"  ... and {len(report.skipped) - 10} more (the first 50 are in {report.folder / 'dataset.json'})")
    print(f"saved in {report.folder}; train on it with --dataset own:{report.name}")
    return 0


def _progress(done: int, total: int) -> None:
    print(f"\r{done:,}/{total:,} images", end="", file=sys.stderr, flush=True)


def _list() -> int:
    print(f"{'data set':<28} {'classes':>7} {'train':>7} {'test':>7}  class names")
    for info in available():
        names = ", ".join(info.class_names)
        print(
            f"{info.key:<28} {len(info.class_names):>7} {info.train_size:>7,} {info.test_size:>7,}  "
            f"{names if len(names) <= 60 else names[:57] + '...'}"
        )
    return 0
