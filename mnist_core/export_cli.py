"""The command line's `export` subcommand and the train command's --layers option."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from .models import ModelError
from .stack import texts, validate
from .train import ConfigError, TrainConfig

PROG = "python -m mnist_core"
LAYERS_HELP = (
    'build your own net: a layer stack such as "conv 16 3, relu, bn, pool 2, flatten, linear 10", '
    "or the path of a JSON file holding a list of layers (implies --arch stack)"
)


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # a long layer list is "File name too long"; a NUL byte is a ValueError
        return False


def layers_arg(text: str) -> tuple[str, ...]:
    """--layers: the stack's text, or a JSON file's path; a stack that cannot work is refused naming its layer."""
    spec = text
    if (not any(sep in text for sep in (",", " ")) and text.endswith(".json")) or _is_file(text):
        try:
            spec = json.loads(Path(text).read_text())
        except OSError as exc:
            raise argparse.ArgumentTypeError(f"cannot read {text!r}: {exc.strerror or exc}") from None
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(f"{text!r} is not valid JSON ({exc})") from None
        if isinstance(spec, dict):  # a checkpoint's JSON, or {"layers": [...]}
            spec = (spec.get("model_config") or spec).get("layers", spec)
    try:
        validate(spec)
        return texts(spec)
    except ModelError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_layers_option(train: argparse.ArgumentParser) -> None:
    train.add_argument("--layers", type=layers_arg, metavar="STACK", help=LAYERS_HELP)


def apply_layers(config: TrainConfig, args) -> TrainConfig:
    """The config with --layers applied: the stack architecture with that layer list."""
    if not getattr(args, "layers", None):
        return config
    if args.arch and args.arch != "stack":
        raise ConfigError(f"--layers builds the stack architecture; drop --arch {args.arch}")
    return dataclasses.replace(config, arch="stack", model={"layers": list(args.layers)})


def add_export_parser(sub) -> None:
    from .export import FORMATS

    export = sub.add_parser("export", help="write a checkpoint as a training script, ONNX, or its files")
    export.add_argument("name", help="checkpoint name (see `list`)")
    export.add_argument(
        "--format",
        required=True,
        choices=FORMATS,
        help="script: a standalone PyTorch training script; onnx: the model for onnxruntime and "
        "others; safetensors: a folder with the weights, the run's JSON and its curves as CSV",
    )
    export.add_argument(
        "--out",
        required=True,
        help="file to write (script, onnx; an existing folder gets NAME.py / NAME.onnx) or the "
        "folder to create (safetensors)",
    )
    export.add_argument("--force", action="store_true", help="replace files that exist")
    export.add_argument(
        "--no-check",
        action="store_true",
        help="onnx: skip running the exported model in onnxruntime on the 10,000 test digits",
    )


def cmd_export(args) -> int:
    from .data import DataError, load_mnist
    from .export import ExportError, export

    try:
        test_images = None
        if args.format == "onnx" and not args.no_check:
            mnist = load_mnist()
            test_images = mnist.normalize(mnist.test_images)
        _, summary = export(args.name, args.format, args.out, force=args.force, test_images=test_images)
    except (ExportError, DataError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    print(summary)
    return 0
