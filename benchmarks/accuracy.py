"""Train presets over several seeds; print each seed's test accuracy and time beside the target.

    python benchmarks/accuracy.py tiny_gap_19 --seeds 0 1 2 3 4 --target 0.994 --need 3 --jobs 5
    python benchmarks/accuracy.py best --seeds 0 --target 0.996 --ship best
    python benchmarks/accuracy.py fast mlp columnet sparsenet cnn conv_fc conv2_fc2 tiny_gap_19 best \
        --seeds 0 --dataset fashion-mnist

--ship NAME saves the first seed's run into checkpoints/ (how the shipped checkpoints were made).
--dataset trains and tests each recipe on another data set than its own (mnist, fashion-mnist, own:NAME); with
several presets a table ends the output: each recipe's shipped MNIST checkpoint's accuracy beside this run's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import statistics
import sys
from pathlib import Path

import torch

from mnist_core.checkpoints import SHIPPED_DIR, save  # noqa: E402
from mnist_core.data import DeviceData  # noqa: E402
from mnist_core.datasets import MNIST, recorded_title  # noqa: E402
from mnist_core.datasets import info as dataset_info  # noqa: E402
from mnist_core.datasets import load as load_dataset  # noqa: E402
from mnist_core.files import write_json_atomic  # noqa: E402
from mnist_core.models import describe  # noqa: E402
from mnist_core.presets import preset  # noqa: E402
from mnist_core.train import fit  # noqa: E402


def run_seed(
    preset_name: str, seed: int, ship: str | None, jobs: int, dataset: str | None = None, epochs: int | None = None
) -> dict:
    if jobs > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // jobs))
    config = dataclasses.replace(preset(preset_name), seed=seed)
    if dataset:
        config = dataclasses.replace(config, dataset=dataset)
    if epochs:
        config = dataclasses.replace(config, epochs=epochs)
    result = fit(config, DeviceData(load_dataset(config.dataset)))
    card = describe(result.model)
    print(
        f"{preset_name} seed {seed}: {dataset_info(config.dataset).title} test accuracy {result.test_accuracy:.2%} "
        f"in {result.seconds:.0f}s ({config.epochs} epochs, {card.params:,} params, {result.status}, "
        f"{torch.get_num_threads()} threads)",
        flush=True,
    )
    if ship:
        name = save(result, ship, SHIPPED_DIR, extra={"preset": preset_name})
        print(f"  shipped as checkpoints/{name}", flush=True)
    return {
        "preset": preset_name,
        "arch": config.arch,
        "dataset": config.dataset,
        "epochs": config.epochs,
        "seed": seed,
        "test_accuracy": result.test_accuracy,
        "seconds": result.seconds,
        "params": card.params,
        "status": result.status,
        "threads": torch.get_num_threads(),
    }


def shipped_accuracy(preset_name: str) -> tuple[float | None, str]:
    """The test accuracy the shipped checkpoint made with this preset records, and its data set's title: the
    checkpoint whose JSON names the preset, else the one named like it."""
    found = None
    for path in sorted(SHIPPED_DIR.glob("*.json")):
        meta = json.loads(path.read_text())
        if meta.get("preset") == preset_name or (path.stem == preset_name and found is None):
            found = meta
    if found is None:
        return None, ""
    return found.get("test_accuracy"), recorded_title(found)


def table(rows: list[dict], dataset: str) -> str:
    """One line per recipe: its shipped checkpoint's accuracy beside the median of this run's seeds."""
    title = dataset_info(dataset).title
    lines = [
        f"{'recipe':12} {'arch':10} {'params':>9} {'epochs':>6} {'shipped':>8} {title:>14} {'seconds':>8}",
    ]
    for name in dict.fromkeys(r["preset"] for r in rows):
        runs = [r for r in rows if r["preset"] == name]
        accuracy, shipped_on = shipped_accuracy(name)
        shipped = f"{accuracy:.2%}" if accuracy is not None else "-"
        if accuracy is not None and shipped_on != "MNIST":
            shipped += f" ({shipped_on})"
        lines.append(
            f"{name:12} {runs[0]['arch']:10} {runs[0]['params']:>9,} {runs[0]['epochs']:>6} {shipped:>8} "
            f"{statistics.median(r['test_accuracy'] for r in runs):>14.2%} "
            f"{statistics.median(r['seconds'] for r in runs):>8.0f}"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="+", metavar="preset")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--target", type=float, help="test accuracy to reach, a fraction (default: none checked)")
    parser.add_argument("--need", type=int, default=1, help="how many seeds must reach the target")
    parser.add_argument("--dataset", help="train and test on this data set instead of the preset's own")
    parser.add_argument("--epochs", type=int, help="fewer (or more) epochs than the recipe's, for a quick figure")
    parser.add_argument("--ship", help="save the first seed's run into checkpoints/ under this name (one preset)")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--jobs", type=int, default=1, help="seeds trained at once, in separate processes")
    args = parser.parse_args()
    if args.ship and len(args.presets) > 1:
        parser.error("--ship saves one preset's run: name one preset")
    if args.dataset:
        dataset_info(args.dataset)  # an unknown data set is refused before anything trains

    jobs = [
        (name, seed, args.ship if i == 0 else None, args.jobs, args.dataset, args.epochs)
        for name in args.presets
        for i, seed in enumerate(args.seeds)
    ]
    if args.jobs == 1:
        rows = [run_seed(*job) for job in jobs]
    else:
        # Small convs use two cores poorly: separate single-thread processes get more from the machine.
        with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
            rows = pool.starmap(run_seed, jobs)

    hits_ok = True
    for name in args.presets:
        accuracies = [r["test_accuracy"] for r in rows if r["preset"] == name]
        line = f"\n{name}: median {statistics.median(accuracies):.2%}, best {max(accuracies):.2%}; "
        line += f"median time {statistics.median(r['seconds'] for r in rows if r['preset'] == name):.0f}s per run"
        if args.target is not None:
            hits = sum(a >= args.target for a in accuracies)
            hits_ok = hits_ok and hits >= args.need
            line += f"; {hits}/{len(accuracies)} seeds reach {args.target:.2%} (needed {args.need})"
        print(line)
    if len(args.presets) > 1 or args.dataset:
        print("\n" + table(rows, args.dataset or MNIST))
    if args.json:
        write_json_atomic(
            args.json,
            {"presets": args.presets, "dataset": args.dataset, "target": args.target, "runs": rows},
        )
    return 0 if hits_ok else 1


if __name__ == "__main__":
    sys.exit(main())
