"""The command line's job commands: `compare`, `transfer` and `embed` (and the runner path of `gan`).

Each builds a kind's config from its flags and runs it with the job runner as the app does (the same
checks, caps and work function), on worker processes (--backend local, the default), in this process
(--backend threads) or on a Ray cluster (--backend ray; MNIST_RAY_ADDRESS or --ray-address says which).

    python -m mnist_core compare --preset fast --vary optimizer --values SGD,Adam --seeds 0,1 --max-batches 50
    python -m mnist_core transfer --arms frozen,scratch --labels 100 --steps 300
    python -m mnist_core embed --method umap --points 10000
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
from pathlib import Path

from .reporter import DONE, FAILED

PROG = "python -m mnist_core"
BACKENDS = ("local", "threads", "ray")


def add_backend_options(p) -> None:
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="local",
        help="local: a worker process (default); threads: in this process; ray: a Ray cluster",
    )
    p.add_argument(
        "--ray-address", help="the Ray cluster (auto, or host:port; default: $MNIST_RAY_ADDRESS, else a local Ray)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def csv(kind):
    """An argparse type: a comma-separated list of kind."""

    def parse(text: str) -> list:
        try:
            return [kind(part.strip()) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {kind.__name__}, got {text!r}"
            ) from None

    parse.__name__ = f"list of {kind.__name__}"
    return parse


def add_job_parsers(sub) -> None:
    from .compare import BN_POSITIONS, DIMENSIONS, OPTIMIZER_ARMS
    from .embed import EmbedSpec
    from .fields import add_flags
    from .models import REGISTRY
    from .presets import COMPARE_RECIPE_FIELDS, COMPARE_RUN_FIELDS, PRESETS
    from .train import TrainConfig
    from .transfer import ARMS, TransferConfig

    p = sub.add_parser("compare", help="train one base setup with one setting varied, over seeds; save every run")
    p.add_argument("--preset", choices=list(PRESETS), default="fast", help="the base setup (default: fast)")
    p.add_argument("--arch", choices=list(REGISTRY), help="the base architecture (default: the preset's)")
    p.add_argument("--vary", choices=list(DIMENSIONS), default="optimizer", help="the setting to vary")
    p.add_argument(
        "--values",
        type=csv(str),
        help=f"its values, comma-separated (optimizer: {', '.join(OPTIMIZER_ARMS)}; "
        f"arch: {', '.join(REGISTRY)}; bn: {', '.join(BN_POSITIONS)}; depth: numbers of hidden layers)",
    )
    p.add_argument("--seeds", type=csv(int), default=[0], help="seeds, comma-separated (default: 0)")
    # The base setup's settings (default: the preset's), with the Compare page's fields, help and ranges.
    add_flags(p, TrainConfig, COMPARE_RUN_FIELDS + COMPARE_RECIPE_FIELDS)
    p.add_argument("--rate", type=float, help="dropout: the 'on' arm's rate (default 0.25)")
    p.add_argument("--rotation", type=float, help="augmentation: the 'on' arm's rotation in degrees (default 10)")
    p.add_argument("--shift", type=float, help="augmentation: the 'on' arm's shift in pixels (default 2)")
    p.add_argument("--parallel", type=int, default=1, help="runs at once in worker processes (local backends)")
    p.add_argument("--name", help="comparison name; runs are saved as NAME-ARM-sSEED (default: cmp-VARY-DATE-...)")
    p.add_argument("--overwrite", action="store_true", help="replace saved runs of the same names")
    add_backend_options(p)

    p = sub.add_parser("transfer", help="a pretrained backbone with a new head vs training from scratch")
    add_flags(p, TransferConfig)  # every setting but the arms, its help and range from the field
    p.add_argument("--arms", type=csv(str), default=["frozen", "scratch"], help=f"of {', '.join(ARMS)}")
    add_backend_options(p)

    p = sub.add_parser("embed", help="compute a 2-D or 3-D map of the digits into the map cache (the Embeddings page)")
    add_flags(p, EmbedSpec)  # every setting, its help, range and choices from the field
    add_backend_options(p)


class JobBar:
    """A progress bar from a job's "progress" and "stage" events (tqdm, on a terminal only) and, for
    each finished epoch or run, one line that a log file keeps too."""

    def __init__(self, quiet: bool, stream=sys.stderr, line=None):
        self.quiet, self.stream, self.bar, self.line = quiet, stream, None, line

    def __call__(self, name: str, data: dict) -> None:
        if self.quiet:
            return
        if name == "progress" and data.get("total"):
            if self.bar is None:
                from tqdm import tqdm

                # disable=None: the bar shows only on a terminal (no carriage returns in a log or a pipe)
                self.bar = tqdm(
                    total=1000,
                    file=self.stream,
                    disable=None,
                    leave=False,
                    mininterval=0.2,
                    bar_format="{l_bar}{bar}| {elapsed}<{remaining}",
                )
            self.bar.update(round(1000 * min(data["done"] / data["total"], 1.0)) - self.bar.n)
        elif name == "stage" and self.bar is not None:
            self.bar.set_description_str(str(data["stage"])[:40], refresh=False)
        text = self.line(name, data) if self.line is not None else None
        if text:
            if self.bar is not None:
                self.bar.write(text, file=self.stream)  # above the bar (tqdm.write goes to stdout unless told)
            else:
                print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run_job(kind: str, config: dict, args, name: str | None = None, overwrite: bool = False, line=None):
    """Run one job to its end with the runner; (end state, None), or (None, exit code) after one error line."""
    from .runner import JobRefused, RunnerError, run_to_end

    # The runner logs each job's start, end and refusal for a server's log; here the command says it in one line.
    logging.getLogger("mnist_core.runner").addHandler(logging.NullHandler())
    bar = JobBar(args.quiet, line=line)
    try:
        state = run_to_end(
            kind,
            config,
            name=name,
            backend=args.backend,
            on_event=bar,
            overwrite=overwrite,
            ray_address=getattr(args, "ray_address", None),
        )
    except (JobRefused, RunnerError, ValueError) as exc:  # a bad setting, a name taken, a host limit, no Ray
        bar.close()
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return None, 2
    finally:
        bar.close()
    if state.status == FAILED:
        print(f"{PROG} {args.command}: {kind} failed: {state.message}", file=sys.stderr)
    return state, None


def end_code(state) -> int:
    return 0 if state.status == DONE else 1


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def compare_base_from_args(args):
    """The base TrainConfig a parsed `compare` command asks for: the preset, its architecture or --arch, the flags."""
    from .fields import flag_values
    from .presets import COMPARE_RECIPE_FIELDS, COMPARE_RUN_FIELDS, compare_base, preset

    return compare_base(preset(args.preset), args.arch, flag_values(args, COMPARE_RUN_FIELDS + COMPARE_RECIPE_FIELDS))


def cmd_compare(args) -> int:
    base = compare_base_from_args(args).to_dict()
    options = {k: getattr(args, k) for k in ("rate", "rotation", "shift") if getattr(args, k) is not None}
    config = {
        "base": base,
        "dimension": args.vary,
        "values": args.values,
        "options": options,
        "seeds": args.seeds,
        "parallel": args.parallel,
    }

    def line(name, data):
        if name == "run_end":
            return (
                f"run {data['index'] + 1}: {data['status']}, test accuracy {_percent(data.get('test_accuracy'))}, "
                f"{data['seconds']:.1f} s"
            )
        return None

    state, code = run_job("compare", config, args, args.name, args.overwrite, line)
    if state is None:
        return code
    result = state.result or {}
    runs = result.get("runs", [])
    print(f"{'run':40} {'arm':18} {'seed':>5} {'status':15} {'test acc':>9} {'seconds':>8}")
    for run in runs:
        print(
            f"{run['name']:40} {run['arm']:18} {run['seed']:>5} {run['status']:15} "
            f"{_percent(run.get('test_accuracy')):>9} {run['seconds']:>8.1f}"
        )
    for arm in dict.fromkeys(r["arm"] for r in runs):
        scores = [100 * r["test_accuracy"] for r in runs if r["arm"] == arm and r.get("test_accuracy") is not None]
        if scores:
            spread = f" ± {statistics.stdev(scores):.2f}" if len(scores) > 1 else ""
            print(f"{arm}: test accuracy {statistics.fmean(scores):.2f}%{spread} over {len(scores)} seed(s)")
    print(f"{state.status}: {state.message} ({state.seconds:.1f} s on the {args.backend} backend)")
    return end_code(state)


def transfer_config_from_args(args) -> dict:
    """The transfer job's settings: TransferConfig's defaults, the flags given, the arms."""
    import dataclasses

    from .fields import flag_values
    from .transfer import TransferConfig

    names = [f.name for f in dataclasses.fields(TransferConfig) if f.name != "arms"]
    return {**dataclasses.asdict(TransferConfig()), **flag_values(args, names), "arms": args.arms}


def cmd_transfer(args) -> int:
    config = transfer_config_from_args(args)
    state, code = run_job("transfer", config, args)
    if state is None:
        return code
    for arm in (state.result or {}).get("results", []):
        print(
            f"{arm['label']}: test accuracy {_percent(arm['test_accuracy'])}, {arm['labels']} labelled digits, "
            f"{arm['trainable_params']:,} trainable parameters, {arm['seconds']:.1f} s"
            + (f" ({arm['stopped']})" if arm["stopped"] else "")
        )
    print(f"{state.status}: {state.message}")
    return end_code(state)


def embed_config_from_args(args) -> dict:
    """The map's settings: EmbedSpec's defaults, then the flags given."""
    import dataclasses

    from .embed import EmbedSpec
    from .fields import flag_values

    return {**dataclasses.asdict(EmbedSpec()), **flag_values(args, [f.name for f in dataclasses.fields(EmbedSpec)])}


def cmd_embed(args) -> int:
    from .embed import cache_dir

    config = embed_config_from_args(args)
    state, code = run_job("embed", config, args)
    if state is None:
        return code
    print(f"{state.status}: {state.message}")
    if state.status == DONE:
        print(
            f"saved the map in {Path(cache_dir()) / (state.result['key'] + '.safetensors')} "
            "(the Embeddings page shows it)"
        )
    return end_code(state)


def use_data_folder(path: Path | None) -> None:
    """--data: the job's work reads MNIST from MNIST_DATA_DIR, in whichever process it runs."""
    if path is not None:
        os.environ["MNIST_DATA_DIR"] = str(path)
