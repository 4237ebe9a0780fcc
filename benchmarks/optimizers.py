"""The optimizer comparison on conv2_fc2: seven optimizers, the same initial weights and data order per seed.

    python benchmarks/optimizers.py                      # 5 epochs x 3 seeds on all 60,000 digits
    python benchmarks/optimizers.py --train-subset 6000  # the same on a class-balanced tenth (a CPU's hour)

Each finished run is written to benchmarks/results/optimizers[-subset].json at once, so an interrupted
run resumes where it stopped. Prints a table: test accuracy mean +- std over the seeds, final losses,
wall time. Constant learning rates (no schedule), batch 128: the optimizers' usual defaults
(mnist_core.compare.OPTIMIZER_ARMS).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from mnist_core.compare import OPTIMIZER_ARMS, optimizer_arms, plan  # noqa: E402
from mnist_core.data import DeviceData  # noqa: E402
from mnist_core.files import write_json_atomic  # noqa: E402
from mnist_core.train import TrainConfig, fit  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train-subset", type=int, default=None, help="train on this many digits (default: all)")
    parser.add_argument("--optimizers", nargs="+", default=list(OPTIMIZER_ARMS), choices=list(OPTIMIZER_ARMS))
    args = parser.parse_args()

    base = TrainConfig(
        arch="conv2_fc2",
        epochs=args.epochs,
        batch_size=128,
        schedule="none",
        train_subset=args.train_subset,
        record=False,
    )
    specs = plan(base, optimizer_arms(args.optimizers), args.seeds, "optimizers")
    suffix = f"-subset{args.train_subset}" if args.train_subset else ""
    out = RESULTS / f"optimizers{suffix}.json"
    done = json.loads(out.read_text()) if out.exists() else {}
    data = DeviceData(device="auto")
    for spec in specs:
        key = f"{spec.arm}/{spec.seed}/{spec.config.epochs}"
        if key in done:
            continue
        result = fit(spec.config, data)
        done[key] = {
            "arm": spec.arm,
            "seed": spec.seed,
            "lr": spec.config.lr,
            "status": result.status,
            "seconds": result.seconds,
            "device": result.device,
            "history": result.history,
        }
        write_json_atomic(out, done)  # whole after every run: the next invocation resumes from it
        last = result.history[-1] if result.history else {}
        print(
            f"{spec.arm:13s} seed {spec.seed}: {100 * last.get('test_accuracy', 0):.2f}% in {result.seconds:.0f}s",
            flush=True,
        )
    print_table(done, args)


def print_table(done: dict, args) -> None:
    scope = f"{args.train_subset:,} training digits" if args.train_subset else "all 60,000 training digits"
    print(f"\nconv2_fc2, {args.epochs} epochs on {scope}, batch 128, constant learning rate, seeds {args.seeds}")
    print(
        f"{'optimizer':13s} {'lr':>7s} {'test acc % (mean +- std)':>26s} {'train loss':>11s} {'test loss':>10s} "
        f"{'wall s':>7s}"
    )
    for arm in args.optimizers:
        runs = [r for r in done.values() if r["arm"] == arm and r["history"] and len(r["history"]) == args.epochs]
        if not runs:
            continue
        acc = [100 * r["history"][-1]["test_accuracy"] for r in runs]
        spread = statistics.stdev(acc) if len(acc) > 1 else 0.0
        mean = statistics.fmean
        print(
            f"{arm:13s} {runs[0]['lr']:7g} {mean(acc):19.2f} +- {spread:4.2f} "
            f"{mean(r['history'][-1]['train_loss'] for r in runs):11.4f} "
            f"{mean(r['history'][-1]['test_loss'] for r in runs):10.4f} {mean(r['seconds'] for r in runs):7.0f}"
            f"   ({len(runs)} runs)"
        )


if __name__ == "__main__":
    main()
