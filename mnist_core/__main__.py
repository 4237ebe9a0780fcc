"""Command line: python -m mnist_core train | eval | list | presets."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from .checkpoints import CheckpointError, list_checkpoints, load, save
from .data import DataError, DeviceData, load_mnist
from .export_cli import add_export_parser, add_layers_option, apply_layers, cmd_export
from .models import ModelError, get_architecture, REGISTRY
from .presets import PRESETS, preset
from .train import OPTIMIZERS, SCHEDULES, ConfigError, Event, TrainConfig, evaluate, fit

PROG = "python -m mnist_core"


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad option costs the user one line, not a usage dump."""

    def error(self, message: str):
        print(f"{PROG}: error: {message} (see {PROG} {self.prog.split()[-1]} --help)", file=sys.stderr)
        sys.exit(2)


def parse_value(text: str, like):
    """Parse a --set value to the type of the field's default."""
    if isinstance(like, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true or false, got {text!r}")
    if isinstance(like, tuple):
        item = like[0] if like else ""
        return [parse_value(part.strip(), item) for part in text.split(",") if part.strip()]
    return type(like)(text)


def model_overrides(arch: str, assignments: list[str], base: dict) -> dict:
    config_cls = get_architecture(arch).config_cls
    defaults = {f.name: getattr(config_cls(), f.name) for f in dataclasses.fields(config_cls)}
    overrides = dict(base)
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep:
            raise ConfigError(f"--set takes KEY=VALUE, got {assignment!r}")
        if key not in defaults:
            raise ConfigError(f"{arch} has no setting {key!r}; its settings are: {', '.join(defaults)}")
        try:
            overrides[key] = parse_value(text, defaults[key])
        except ValueError as exc:
            raise ConfigError(f"--set {key}: {exc}") from None
    return overrides


FLAG_TYPES = {"int": int, "float": float, "str": str, "bool": bool}
TRAIN_FLAGS = [f for f in dataclasses.fields(TrainConfig) if f.name not in ("arch", "model")]


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description="Train, evaluate and list MNIST models.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    train = sub.add_parser("train", help="train a model and save a checkpoint")
    train.add_argument("--preset", choices=list(PRESETS), help="start from a named recipe; other flags override it")
    train.add_argument("--arch", choices=list(REGISTRY), help="architecture (default: cnn, or the preset's)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="architecture setting, e.g. --set channels=16,32,64 --set dropout=0.1")
    add_layers_option(train)
    for f in TRAIN_FLAGS:
        flag = "--" + f.name.replace("_", "-")
        kind = FLAG_TYPES[f.type.split(" ")[0]]  # annotations are strings such as "float | None"
        if kind is bool:
            train.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        else:
            choices = OPTIMIZERS if f.name == "optimizer" else SCHEDULES if f.name == "schedule" else None
            train.add_argument(flag, type=kind, default=None, choices=choices)
    train.add_argument("--name", help="checkpoint name (default: ARCH-TIMESTAMP)")
    train.add_argument("--out", type=Path, help="folder to save into (default: runs/, or $MNIST_RUNS_DIR)")
    train.add_argument("--data", type=Path, help="folder of MNIST IDX files (default: $MNIST_DATA_DIR, else bundled)")
    train.add_argument("--download", action="store_true", help="download MNIST through torchvision (needs internet)")
    train.add_argument("--dry-run", action="store_true", help="train 5 batches and save nothing: a smoke test")
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    ev = sub.add_parser("eval", help="test accuracy of a checkpoint")
    ev.add_argument("name")
    ev.add_argument("--data", type=Path)

    add_export_parser(sub)
    sub.add_parser("list", help="table of the available checkpoints")
    sub.add_parser("presets", help="the named training recipes")
    return parser


def config_from_args(args) -> TrainConfig:
    config = preset(args.preset) if args.preset else TrainConfig()
    if args.arch and args.arch != config.arch:
        config = dataclasses.replace(config, arch=args.arch, model={})
    values = {f.name: getattr(args, f.name) for f in TRAIN_FLAGS if getattr(args, f.name) is not None}
    config = dataclasses.replace(config, **values)
    config = apply_layers(config, args)
    config.model = model_overrides(config.arch, args.set, config.model)
    if args.dry_run:
        config.max_batches, config.epochs = 5, 1
    return config


class ProgressBar:
    def __init__(self, stream=sys.stderr):
        self.stream, self.last = stream, 0.0

    def __call__(self, event: Event) -> None:
        d = event.data
        if event.kind == "batch" and (time.perf_counter() - self.last > 0.2):
            self.last = time.perf_counter()
            done = (d["step"] - 1) % d["steps_per_epoch"] + 1
            frac = done / d["steps_per_epoch"]
            bar = "#" * int(frac * 20) + "." * (20 - int(frac * 20))
            self.stream.write(f"\repoch {d['epoch']} [{bar}] {frac:4.0%} loss {d['loss']:.4f} "
                              f"acc {d['accuracy']:6.2%} {d['images_per_s']:,.0f} img/s ")
            self.stream.flush()
        elif event.kind == "epoch":
            self.stream.write(f"\repoch {d['epoch']}: train loss {d['train_loss']:.4f} acc {d['train_accuracy']:.2%}"
                              f" | test loss {d['test_loss']:.4f} acc {d['test_accuracy']:.2%}"
                              f" | {d['elapsed']:.1f}s{' ' * 20}\n")


def cmd_train(args) -> int:
    config = config_from_args(args)
    mnist = load_mnist(args.data, download=args.download)
    data = DeviceData(mnist, device=config.device, val_size=config.val_size)
    config.validate(len(mnist.train_labels))
    callbacks = () if args.quiet else (ProgressBar(),)
    result = fit(config, data, callbacks)
    if result.status == "failed":
        print(f"{PROG}: training failed: {result.message}", file=sys.stderr)
    summary = f"{result.status}: {result.steps} steps in {result.seconds:.1f}s on {result.device}"
    if result.test_accuracy is not None:
        summary += f", test accuracy {result.test_accuracy:.2%}"
    if args.dry_run:
        print(summary + " (dry run: nothing saved)")
        return 0 if result.status != "failed" else 1
    print(summary)
    name = args.name or f"{config.arch}-{time.strftime('%Y%m%d-%H%M%S')}"
    saved = save(result, name, args.out)
    print(f"saved checkpoint {saved!r} in {args.out or 'runs/'}")
    return 0 if result.status != "failed" else 1


def cmd_eval(args) -> int:
    model, meta = load(args.name)
    data = DeviceData(load_mnist(args.data), device="cpu")
    test = evaluate(model, data.test)
    print(f"{meta['name']}: {meta['arch']}, test accuracy {test['accuracy']:.2%}, test loss {test['loss']:.4f}")
    return 0


def cmd_list(_args) -> int:
    rows = list_checkpoints()
    if not rows:
        print("no checkpoints yet: train one with `python -m mnist_core train --preset fast`")
        return 0
    print(f"{'name':32} {'source':8} {'arch':10} {'params':>9} {'epochs':>6} {'test acc':>8} {'time':>8}  status")
    for info in rows:
        m = info.meta
        acc = f"{m['test_accuracy']:.2%}" if m.get("test_accuracy") is not None else "-"
        print(f"{info.name:32} {info.source:8} {m['arch']:10} {m.get('params', 0):>9,} {m.get('epochs_done', 0):>6} "
              f"{acc:>8} {m.get('train_seconds', 0):>7.0f}s  {m.get('status', '?')}")
    return 0


def cmd_presets(_args) -> int:
    for name, (summary, config) in PRESETS.items():
        print(f"{name:12} {config.arch:10} {config.epochs:>3} epochs  {summary}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = {"train": cmd_train, "eval": cmd_eval, "list": cmd_list, "presets": cmd_presets,
               "export": cmd_export}[args.command]
    try:
        return command(args)
    except (ConfigError, ModelError, DataError, CheckpointError, KeyError) as exc:
        message = exc.args[0] if exc.args else str(exc)
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
