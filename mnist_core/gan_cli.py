"""The command line's `gan` subcommand: train the conditional GAN and save it where the app's GAN page finds it.

    python -m mnist_core gan --variant mlp --epochs 2 --name my-gan

Every GanConfig field is a flag (--g-lr, --label-smoothing, --max-batches, ...); a saved GAN run
records the command that trains it again, and that command runs as printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from .checkpoints import CheckpointError, CheckpointExistsError, list_checkpoints, load
from .data import DataError, load_mnist
from .reporter import Reporter
from .gan import (VARIANTS, GanConfig, GanConfigError, Judge, default_run_name, gan_dir, gan_exists,
                  planned_steps, save_gan, train_gan, validate_gan_name)

PROG = "python -m mnist_core"
FLAG_TYPES = {"int": int, "float": float, "str": str}
HELP = {
    "variant": "mlp: fully connected G and D, fast; dcgan: transposed convolutions, sharper digits",
    "latent": "length of the noise vector", "width": "base channels (dcgan) or 8x hidden units (mlp)",
    "g_lr": "generator learning rate", "d_lr": "discriminator learning rate", "beta1": "Adam beta1 (0.5: DCGAN's)",
    "label_smoothing": "one-sided: real images are labelled 1 - this", "grid_per_class": "fixed-noise samples per "
    "class drawn after every epoch", "max_batches": "stop after this many batches (smoke runs)",
    "max_seconds": "stop after this long, keeping what was learned", "device": "auto, cpu, cuda, cuda:N or mps",
}


def add_gan_parser(sub) -> None:
    p = sub.add_parser("gan", help="train the conditional GAN and save it (runs/gans/, shown on the GAN page)")
    default = GanConfig()
    for f in dataclasses.fields(GanConfig):
        kind = FLAG_TYPES[f.type.split(" ")[0]]  # annotations are strings such as "int | None"
        p.add_argument("--" + f.name.replace("_", "-"), type=kind, default=None,
                       choices=VARIANTS if f.name == "variant" else None,
                       help=f"{HELP.get(f.name, f.name.replace('_', ' '))} (default: {getattr(default, f.name)})")
    p.add_argument("--name", help="run name (default: cgan-DATE-TIME-XXXX)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing GAN run of that name")
    p.add_argument("--judge", metavar="CHECKPOINT",
                   help="classifier that scores the samples (default: the most accurate shipped one)")
    p.add_argument("--no-judge", action="store_true", help="do not score the samples (faster; no quality figures)")
    p.add_argument("--data", type=Path, help="folder of MNIST IDX files (default: $MNIST_DATA_DIR, else bundled)")
    p.add_argument("--quiet", action="store_true", help="no progress line")


def config_from_args(args) -> GanConfig:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(GanConfig) if getattr(args, f.name) is not None}
    return GanConfig(**values)


def best_shipped_classifier() -> str:
    shipped = [i for i in list_checkpoints() if i.source == "shipped" and i.meta.get("test_accuracy") is not None]
    if not shipped:
        raise CheckpointError("no shipped classifier to score the samples with; pass --judge NAME or --no-judge")
    return max(shipped, key=lambda i: i.meta["test_accuracy"]).name


class Progress:
    """A bar on a terminal (tqdm); one line per epoch either way, so a log file stays readable."""

    def __init__(self, total: int, quiet: bool, stream=sys.stderr):
        self.stream, self.quiet = stream, quiet
        self.bar = None
        if not quiet and stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, file=stream, unit="batch", dynamic_ncols=True)

    def __call__(self, kind: str, data: dict) -> None:
        if self.quiet:
            return
        if kind == "step" and self.bar is not None:
            self.bar.update(data["step"] - self.bar.n)
            self.bar.set_postfix_str(f"epoch {data['epoch']} D {data['d_loss']:.3f} G {data['g_loss']:.3f}")
        elif kind == "epoch":
            line = f"epoch {data['epoch']}: step {data['steps']}, {data['elapsed']:.0f} s"
            if "conditional_accuracy" in data:
                line += (f", conditional accuracy {data['conditional_accuracy']:.1%}, lowest class diversity "
                         f"{min(data['diversity']):.2f}, Frechet {data['frechet']:.1f}")
            (self.bar.write if self.bar is not None else lambda t: print(t, file=self.stream, flush=True))(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_gan(args) -> int:
    try:
        config = config_from_args(args)
        config.validate()
        name = validate_gan_name(args.name or default_run_name())
        if gan_exists(name) and not args.overwrite:  # before training: a refusal after it would cost the run
            raise CheckpointExistsError(f"a GAN run named {name!r} already exists; choose another --name or "
                                        "replace it with --overwrite")
        mnist = load_mnist(args.data)
        judge = None if args.no_judge else Judge(load(args.judge or best_shipped_classifier())[0], mnist)
    except (GanConfigError, CheckpointError, DataError) as exc:
        print(f"{PROG} gan: error: {exc}", file=sys.stderr)
        return 2
    progress = Progress(planned_steps(config, len(mnist.train_labels)), args.quiet)
    started = time.perf_counter()
    try:
        result = train_gan(config, mnist, judge, Reporter(progress))
    except KeyboardInterrupt:
        print(f"\n{PROG} gan: interrupted", file=sys.stderr)
        return 130
    finally:
        progress.close()
    if result.status == "failed":
        print(f"{PROG} gan: training failed: {result.message}", file=sys.stderr)
    print(f"{result.status}: {len(result.grids)} epoch(s) drawn, {time.perf_counter() - started:.1f} s"
          + (f" ({result.message})" if result.message and result.status != "failed" else ""))
    if not result.grids:
        print("nothing learned, nothing saved")
        return 1
    extra = {"real_frechet": judge.real_frechet} if judge is not None else None
    try:
        saved = save_gan(result, name, extra=extra, overwrite=args.overwrite)
    except (CheckpointError, OSError) as exc:
        print(f"{PROG} gan: error: could not save: {exc}", file=sys.stderr)
        return 1
    print(f"saved GAN {saved!r} in {gan_dir()}")
    return 0 if result.status != "failed" else 1

