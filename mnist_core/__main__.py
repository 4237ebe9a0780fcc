"""Command line: python -m mnist_core train | eval | list | presets | export | gan | compare | transfer | embed | scratch
| dataset.

Every option is checked before training starts, and every refusal is one line and exit status 2:
a run that trained for an hour must not be lost to a bad --out or --name found at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
import uuid
from pathlib import Path

from tqdm import tqdm

from .checkpoints import CheckpointError, CheckpointExistsError, load, runs_dir, save, scan, validate_name
from .data import DataError, DeviceData, load_mnist, pick_device
from .dataset_cli import add_dataset_parser, cmd_dataset
from .datasets import MNIST, check_classes
from .datasets import info as dataset_info
from .datasets import load as load_dataset
from .export_cli import add_export_parser, add_layers_option, apply_layers, cmd_export
from .fields import add_flags, flag_values
from .gan_cli import add_gan_parser, cmd_gan
from .host import problem as host_problem
from .job_cli import add_job_parsers, cmd_compare, cmd_embed, cmd_transfer
from .models import REGISTRY, ModelError, get_architecture
from .presets import PRESETS, preset
from .reporter import NULL_REPORTER, Reporter
from .scratch.cli import add_scratch_parser, cmd_scratch
from .starting import load_starting_point
from .train import MAX_SEED, ConfigError, TrainConfig, evaluate, fit

PROG = "python -m mnist_core"


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad option costs the user one line, not a usage dump."""

    def error(self, message: str):
        # self.prog is "python -m mnist_core" for the top level and "python -m mnist_core train" for a subcommand
        print(f"{PROG}: error: {message} (see {self.prog} --help)", file=sys.stderr)
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


TRAIN_FLAGS = [f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("cli")]


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description="Train, evaluate and list MNIST models.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    train = sub.add_parser("train", help="train a model and save a checkpoint")
    train.add_argument("--preset", choices=list(PRESETS), help="start from a named recipe; other flags override it")
    train.add_argument("--arch", choices=list(REGISTRY), help="architecture (default: cnn, or the preset's)")
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="architecture setting, e.g. --set channels=16,32,64 --set dropout=0.1",
    )
    add_layers_option(train)
    add_flags(train, TrainConfig)  # one flag per TrainConfig field, its help and range from the field
    train.add_argument("--name", help="checkpoint name (default: ARCH-TIMESTAMP)")
    train.add_argument("--overwrite", action="store_true", help="replace an existing run of the same name")
    train.add_argument("--out", type=Path, help="folder to save into (default: runs/, or $MNIST_RUNS_DIR)")
    train.add_argument("--data", type=Path, help="folder of MNIST IDX files (default: $MNIST_DATA_DIR, else bundled)")
    train.add_argument("--download", action="store_true", help="download MNIST through torchvision (needs internet)")
    train.add_argument("--dry-run", action="store_true", help="train 5 batches and save nothing: a smoke test")
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    ev = sub.add_parser("eval", help="test accuracy of a checkpoint")
    ev.add_argument("name")
    ev.add_argument("--data", type=Path, help="folder of MNIST IDX files (default: $MNIST_DATA_DIR, else bundled)")
    ev.add_argument(
        "--dataset", help="mnist, fashion-mnist or own:NAME (default: the data set the checkpoint was trained on)"
    )

    add_export_parser(sub)
    add_gan_parser(sub)
    add_job_parsers(sub)
    add_scratch_parser(sub)
    add_dataset_parser(sub)
    sub.add_parser("list", help="table of the available checkpoints")
    sub.add_parser("presets", help="the named training recipes")
    return parser


def config_from_args(args) -> TrainConfig:
    """The TrainConfig a parsed `train` command asks for: the preset (or the defaults), then the flags."""
    config = preset(args.preset) if args.preset else TrainConfig()
    if args.arch and args.arch != config.arch:
        config = dataclasses.replace(config, arch=args.arch, model={})
    values = flag_values(args, TRAIN_FLAGS)
    config = dataclasses.replace(config, **values)
    config = apply_layers(config, args)
    config.model = model_overrides(config.arch, args.set, config.model)
    if args.dry_run:
        config.max_batches, config.epochs = 5, 1
    return config


def writable_folder(path: Path, option: str = "--out") -> Path:
    """The folder, created if need be, once a file has been written and removed there; else ConfigError."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path} is a file, not a folder; give a folder to save into")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"{option} {path}: cannot save there ({exc.strerror or exc}); give a folder you can write to"
        ) from None
    return path


def check_run_options(args, config: TrainConfig) -> tuple[str, Path | None]:
    """Everything about a train command that can be checked before training: (name, folder to save into)."""
    if not 0 <= config.seed <= MAX_SEED:
        raise ConfigError(f"seed must be a whole number from 0 to {MAX_SEED} (got {config.seed})")
    pick_device(config.device)
    dataset_info(config.dataset)
    if config.dataset != MNIST and (args.data is not None or args.download):
        raise DataError(
            f"--data and --download give MNIST's files, not {config.dataset}'s; drop them (Fashion-MNIST's folder "
            "is $FASHION_MNIST_DIR)"
        )
    if args.dry_run:
        return "", None
    name = validate_name(args.name) if args.name is not None else f"{config.arch}-{time.strftime('%Y%m%d-%H%M%S')}"
    out = writable_folder(args.out if args.out is not None else runs_dir())
    if (out / f"{name}.json").exists() and not args.overwrite:
        raise CheckpointExistsError(
            f"a run named {name!r} already exists in {out}; choose another --name or add --overwrite to replace it"
        )
    return name, out


def save_somewhere(result, name: str, out: Path, overwrite: bool) -> tuple[str, Path, str | None]:
    """Save where asked; if that fails now (disk full, folder gone), save under a unique name in the default
    runs folder, else the temporary folder, so the trained weights are never lost. (name, folder, problem)."""
    try:
        return save(result, name, out, overwrite=overwrite), out, None
    except (OSError, CheckpointError) as exc:
        problem = f"could not save {name!r} in {out} ({getattr(exc, 'strerror', None) or exc})"
    unique = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    for folder in (runs_dir(), Path(tempfile.gettempdir()) / "mnist_core-runs"):
        if folder.resolve() == out.resolve():
            continue
        try:
            return save(result, unique, folder, overwrite=False), folder, problem
        except (OSError, CheckpointError):
            continue
    raise CheckpointError(problem + "; nor in the runs folder or the temporary folder: the run is lost")


class ProgressBar:
    """tqdm's bar on a terminal (tqdm writes no carriage returns to a log or a pipe); an epoch line always."""

    def __init__(self, stream=sys.stderr):
        self.stream, self.bar = stream, None

    def __call__(self, kind: str, d: dict) -> None:
        if kind == "batch":
            if self.bar is None:
                # disable=None: tqdm shows the bar only when the stream is a terminal
                self.bar = tqdm(
                    total=d["steps_per_epoch"],
                    desc=f"epoch {d['epoch']}",
                    file=self.stream,
                    disable=None,
                    leave=False,
                    unit="batch",
                    mininterval=0.2,
                )
            done = (d["step"] - 1) % d["steps_per_epoch"] + 1
            self.bar.update(done - self.bar.n)
            self.bar.set_postfix_str(
                f"loss {d['loss']:.4f} acc {d['accuracy']:6.2%} {d['images_per_s']:,.0f} img/s", refresh=False
            )
        elif kind == "epoch":
            self.close()
            print(
                f"epoch {d['epoch']}: train loss {d['train_loss']:.4f} acc {d['train_accuracy']:.2%}"
                f" | test loss {d['test_loss']:.4f} acc {d['test_accuracy']:.2%} | {d['elapsed']:.1f}s",
                file=self.stream,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def cmd_train(args) -> int:
    config = config_from_args(args)
    name, out = check_run_options(args, config)
    mnist = load_mnist(args.data, download=args.download) if config.dataset == MNIST else load_dataset(config.dataset)
    data = DeviceData(mnist, device=config.device, val_size=config.val_size)
    config.validate(len(mnist.train_labels))
    start = load_starting_point(config, data.device)  # refused here, in one line, like every other option
    progress = None if args.quiet else ProgressBar()
    try:
        result = fit(
            config, data, Reporter(progress) if progress else NULL_REPORTER, model=start.model, drawings=start.drawings
        )
    finally:
        if progress:
            progress.close()
    if result.status == "failed":
        print(f"{PROG}: training failed: {result.message}", file=sys.stderr)
    summary = f"{result.status}: {result.steps} steps in {result.seconds:.1f}s on {result.device}"
    if result.test_accuracy is not None:
        summary += f", test accuracy {result.test_accuracy:.2%}"
    if args.dry_run:
        print(summary + " (dry run: nothing saved)")
        return 0 if result.status != "failed" else 1
    print(summary)
    saved, folder, problem = save_somewhere(result, name, out, args.overwrite)
    if problem:
        print(f"{PROG}: {problem}; saved it as {saved!r} in {folder} instead", file=sys.stderr)
        return 1
    print(f"saved checkpoint {saved!r} in {folder}")
    return 0 if result.status != "failed" else 1


def cmd_eval(args) -> int:
    model, meta = load(args.name)
    key = args.dataset or (meta.get("dataset") or {}).get("name") or MNIST
    mnist = load_mnist(args.data) if key == MNIST else load_dataset(key)
    check_classes(meta, mnist)
    test = evaluate(model, DeviceData(mnist, device="cpu").test)
    print(
        f"{meta['name']}: {meta['arch']}, on {mnist.title}: test accuracy {test['accuracy']:.2%}, "
        f"test loss {test['loss']:.4f}"
    )
    return 0


def cmd_list(_args) -> int:
    rows, unreadable = scan()
    if not rows and not unreadable:
        print("no checkpoints yet: train one with `python -m mnist_core train --preset fast`")
        return 0
    print(f"{'name':32} {'source':8} {'arch':10} {'params':>9} {'epochs':>6} {'test acc':>8} {'time':>8}  status")
    for info in rows:
        m = info.meta
        acc = f"{m['test_accuracy']:.2%}" if m.get("test_accuracy") is not None else "-"
        print(
            f"{info.name:32} {info.source:8} {m['arch']:10} {m.get('params', 0):>9,} {m.get('epochs_done', 0):>6} "
            f"{acc:>8} {m.get('train_seconds', 0):>7.0f}s  {m.get('status', '?')}"
        )
    for bad in unreadable:  # no claimed figures: they are not to be believed until the checkpoint loads
        print(f"{bad.name:32} {bad.source:8} {'?':10} {'-':>9} {'-':>6} {'-':>8} {'-':>8}  unreadable: {bad.reason}")
    return 0


def cmd_presets(_args) -> int:
    for name, (summary, config) in PRESETS.items():
        print(f"{name:12} {config.arch:10} {config.epochs:>3} epochs  {summary}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if (problem := host_problem()) is not None:  # bad MNIST_* settings: refuse to start, in one line
        print(f"{PROG}: error: {problem}", file=sys.stderr)
        return 2
    command = {
        "train": cmd_train,
        "eval": cmd_eval,
        "list": cmd_list,
        "presets": cmd_presets,
        "export": cmd_export,
        "gan": cmd_gan,
        "compare": cmd_compare,
        "transfer": cmd_transfer,
        "embed": cmd_embed,
        "scratch": cmd_scratch,
        "dataset": cmd_dataset,
    }[args.command]
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
