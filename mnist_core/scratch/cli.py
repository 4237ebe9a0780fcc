"""The command line's `scratch` subcommand: train a fully connected net with the NumPy engine and save it.

    python -m mnist_core scratch --widths 256,128 --activation relu --optimizer adam --lr 1e-3 \
        --epochs 5 --batch-size 128 --name my-scratch-net

The saved checkpoint is an ordinary `mlp` (or `stack`) one: the app's pages load it like any other.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..reporter import Reporter
from .net import ACTIVATIONS, Net, NetConfig, ScratchError, TrainSettings, load_arrays, train
from .optim import OPTIMIZERS

PROG = "python -m mnist_core"


def widths_type(text: str) -> tuple[int, ...]:
    """'256,128' -> (256, 128); '0' or '' -> () (logistic regression)."""
    try:
        widths = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"widths are whole numbers separated by commas, e.g. 256,128 (got {text!r})"
        ) from None
    return () if widths == (0,) else widths


def add_scratch_parser(sub) -> None:
    p = sub.add_parser("scratch", help="train a fully connected net with the from-scratch NumPy engine and save it")
    d, s = NetConfig(), TrainSettings()
    p.add_argument(
        "--widths",
        type=widths_type,
        default=d.widths,
        help="hidden layer widths, e.g. 256,128 (0: no hidden layer) (default: 256,128)",
    )
    p.add_argument("--activation", choices=list(ACTIVATIONS), default=d.activation)
    p.add_argument("--dropout", type=float, default=d.dropout, help="dropout after each hidden layer")
    p.add_argument("--dtype", choices=["float32", "float64"], default=d.dtype)
    p.add_argument("--optimizer", choices=list(OPTIMIZERS), default=s.optimizer)
    p.add_argument("--lr", type=float, default=s.lr, help=f"learning rate (default: {s.lr})")
    p.add_argument("--momentum", type=float, default=s.momentum, help="sgd momentum (default: 0.9)")
    p.add_argument("--lr-decay", type=float, default=s.lr_decay, help="multiply the rate by this after each epoch")
    p.add_argument("--epochs", type=int, default=s.epochs)
    p.add_argument("--batch-size", type=int, default=s.batch_size)
    p.add_argument("--max-batches", type=int, default=None, help="stop after this many batches (smoke runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", help="checkpoint name (default: scratch-TIMESTAMP)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run of the same name")
    p.add_argument("--out", type=Path, help="folder to save into (default: runs/, or $MNIST_RUNS_DIR)")
    p.add_argument("--data", type=Path, help="folder of MNIST IDX files (default: $MNIST_DATA_DIR, else bundled)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def cmd_scratch(args) -> int:
    """Check every option, train, save. Errors the caller turns into one line and exit 2 are raised."""
    from ..checkpoints import CheckpointExistsError, runs_dir, validate_name
    from ..train import ConfigError
    from .torch_bridge import export_checkpoint

    config = NetConfig(
        widths=args.widths, activation=args.activation, dropout=args.dropout, dtype=args.dtype, seed=args.seed
    )
    settings = TrainSettings(
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr_decay=args.lr_decay,
        seed=args.seed,
        max_batches=args.max_batches,
    )
    try:
        config.validate()
        settings.validate()
    except ScratchError as exc:
        raise ConfigError(str(exc)) from None
    name = validate_name(args.name) if args.name is not None else f"scratch-{time.strftime('%Y%m%d-%H%M%S')}"
    out = args.out if args.out is not None else runs_dir()
    if (out / f"{name}.json").exists() and not args.overwrite:
        raise CheckpointExistsError(
            f"a run named {name!r} already exists in {out}; choose another --name or add --overwrite to replace it"
        )
    data = load_arrays(args.dtype, args.data)
    net = Net(config)
    widths = "-".join(map(str, (784, *config.widths, 10)))
    print(
        f"scratch engine: {widths} {config.activation}, {net.n_params:,} parameters, {settings.optimizer} "
        f"lr {settings.lr:g}, {settings.epochs} epochs of batches of {settings.batch_size}",
        flush=True,
    )

    def progress(kind: str, event: dict) -> None:
        if args.quiet or kind not in ("batch", "epoch"):
            return
        if kind == "batch":
            print(
                f"  epoch {event['epoch']} step {event['step']}: loss {event['loss']:.4f} ({event['fraction']:.0%})",
                file=sys.stderr,
                flush=True,
            )
        else:
            print(
                f"epoch {event['epoch']}: train loss {event['train_loss']:.4f} acc {event['train_accuracy']:.2%}"
                f" | test loss {event['test_loss']:.4f} acc {event['test_accuracy']:.2%} | {event['elapsed']:.1f}s",
                flush=True,
            )

    result = train(net, data, settings, Reporter(progress), report_every=100)
    acc = f", test accuracy {result.test_accuracy:.2%}" if result.test_accuracy is not None else ""
    print(f"{result.status}: {result.steps} steps in {result.seconds:.1f}s{acc}")
    out.mkdir(parents=True, exist_ok=True)
    saved = export_checkpoint(net, result, settings, name, out, overwrite=args.overwrite)
    print(f"saved checkpoint {saved!r} in {out}")
    return 0
