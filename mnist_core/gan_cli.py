"""The command line's `gan` subcommand: train the conditional GAN and save it where the app's GAN page finds it.

    python -m mnist_core gan --variant mlp --epochs 2 --name my-gan

Every GanConfig field is a flag (--g-lr, --label-smoothing, --max-batches, ...); a saved GAN run
records the command that trains it again, and that command runs as printed.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from .checkpoints import CheckpointError, CheckpointExistsError, list_checkpoints
from .datasets import MNIST, same_classes
from .datasets import info as dataset_info
from .fields import add_flags
from .gan import GanConfig, GanConfigError, default_run_name, gan_dir, gan_exists, validate_gan_name

PROG = "python -m mnist_core"


def add_gan_parser(sub) -> None:
    p = sub.add_parser("gan", help="train the conditional GAN and save it (runs/gans/, shown on the GAN page)")
    add_flags(p, GanConfig)  # every GanConfig field, its help and range from the field
    p.add_argument("--name", help="run name (default: cgan-DATE-TIME-XXXX)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing GAN run of that name")
    p.add_argument(
        "--judge",
        metavar="CHECKPOINT",
        help="classifier that scores the samples (default: the most accurate shipped one)",
    )
    p.add_argument("--no-judge", action="store_true", help="do not score the samples (faster; no quality figures)")
    p.add_argument("--data", type=Path, help="folder of MNIST IDX files (default: $MNIST_DATA_DIR, else bundled)")
    p.add_argument(
        "--backend",
        choices=("local", "threads", "ray"),
        default="local",
        help="local: a worker process (default); threads: in this process; ray: a Ray cluster",
    )
    p.add_argument("--ray-address", help="the Ray cluster (auto, or host:port; default: $MNIST_RAY_ADDRESS)")
    p.add_argument("--quiet", action="store_true", help="no progress line")


def config_from_args(args) -> GanConfig:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(GanConfig) if getattr(args, f.name) is not None}
    return GanConfig(**values)


def best_shipped_classifier() -> str:
    """The most accurate shipped classifier of digits (the GAN draws MNIST's digits; fashion names clothes)."""
    digits = dataset_info(MNIST)
    shipped = [
        i
        for i in list_checkpoints()
        if i.source == "shipped" and i.meta.get("test_accuracy") is not None and same_classes(i.meta, digits)
    ]
    if not shipped:
        raise CheckpointError("no shipped classifier to score the samples with; pass --judge NAME or --no-judge")
    return max(shipped, key=lambda i: i.meta["test_accuracy"]).name


def epoch_line(kind: str, data: dict) -> str | None:
    """One line per epoch (kept in a log file too)."""
    if kind != "epoch":
        return None
    line = f"epoch {data['epoch']}: step {data['steps']}, {data['elapsed']:.0f} s"
    if "conditional_accuracy" in data:
        line += (
            f", conditional accuracy {data['conditional_accuracy']:.1%}, lowest class diversity "
            f"{min(data['diversity']):.2f}, Frechet {data['frechet']:.1f}"
        )
    return line


def cmd_gan(args) -> int:
    """Train through the job runner (--backend local: a worker process; threads; ray), as the GAN page does."""
    from .job_cli import run_job, use_data_folder

    try:
        config = dataclasses.asdict(config_from_args(args))
        name = validate_gan_name(args.name or default_run_name())
        if gan_exists(name) and not args.overwrite:  # before training: a refusal after it would cost the run
            raise CheckpointExistsError(
                f"a GAN run named {name!r} already exists; choose another --name or replace it with --overwrite"
            )
    except (GanConfigError, CheckpointError) as exc:
        print(f"{PROG} gan: error: {exc}", file=sys.stderr)
        return 2
    if args.no_judge:
        config["judge"] = None
    elif args.judge:
        config["judge"] = args.judge
    use_data_folder(args.data)
    state, code = run_job("gan", config, args, name, args.overwrite, epoch_line)
    if state is None:
        return code
    result = state.result or {}
    print(
        f"{state.status}: {len(result.get('epochs', []))} epoch(s) drawn, {state.seconds:.1f} s"
        + (f" ({state.message})" if state.message and state.status != "failed" else "")
    )
    if not result.get("saved"):
        print("nothing learned, nothing saved" if state.status != "failed" else "nothing saved")
        return 1
    print(f"saved GAN {result['saved']!r} in {gan_dir()}")
    return 0 if state.status != "failed" else 1
