"""Train a preset over several seeds; print each seed's test accuracy and time beside the target.

    python benchmarks/accuracy.py tiny_gap_19 --seeds 0 1 2 3 4 --target 0.994 --need 3 --jobs 5
    python benchmarks/accuracy.py best --seeds 0 --target 0.996 --ship best

--ship NAME saves the first seed's run into checkpoints/ (how the shipped checkpoints were made).
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import statistics
import sys
from pathlib import Path

import torch

from mnist_core.checkpoints import SHIPPED_DIR, save  # noqa: E402
from mnist_core.data import DeviceData  # noqa: E402
from mnist_core.files import write_json_atomic  # noqa: E402
from mnist_core.models import describe  # noqa: E402
from mnist_core.presets import preset  # noqa: E402
from mnist_core.train import fit  # noqa: E402


def run_seed(preset_name: str, seed: int, ship: str | None, jobs: int) -> dict:
    if jobs > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // jobs))
    config = dataclasses.replace(preset(preset_name), seed=seed)
    result = fit(config, DeviceData())
    card = describe(result.model)
    print(
        f"seed {seed}: test accuracy {result.test_accuracy:.2%} in {result.seconds:.0f}s "
        f"({config.epochs} epochs, {card.params:,} params, {result.status}, {torch.get_num_threads()} threads)",
        flush=True,
    )
    if ship:
        name = save(result, ship, SHIPPED_DIR, extra={"preset": preset_name})
        print(f"  shipped as checkpoints/{name}", flush=True)
    return {
        "seed": seed,
        "test_accuracy": result.test_accuracy,
        "seconds": result.seconds,
        "params": card.params,
        "status": result.status,
        "threads": torch.get_num_threads(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--target", type=float, required=True, help="test accuracy to reach, a fraction")
    parser.add_argument("--need", type=int, default=1, help="how many seeds must reach the target")
    parser.add_argument("--ship", help="save the first seed's run into checkpoints/ under this name")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--jobs", type=int, default=1, help="seeds trained at once, in separate processes")
    args = parser.parse_args()

    jobs = [(args.preset, seed, args.ship if i == 0 else None, args.jobs) for i, seed in enumerate(args.seeds)]
    if args.jobs == 1:
        rows = [run_seed(*job) for job in jobs]
    else:
        # Small convs use two cores poorly: separate single-thread processes get more from the machine.
        with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
            rows = pool.starmap(run_seed, jobs)

    accuracies = [r["test_accuracy"] for r in rows]
    hits = sum(a >= args.target for a in accuracies)
    print(
        f"\n{args.preset}: {hits}/{len(rows)} seeds reach {args.target:.2%} (needed {args.need}); "
        f"median {statistics.median(accuracies):.2%}, best {max(accuracies):.2%}; "
        f"median time {statistics.median(r['seconds'] for r in rows):.0f}s per run"
    )
    if args.json:
        write_json_atomic(args.json, {"preset": args.preset, "target": args.target, "runs": rows})
    return 0 if hits >= args.need else 1


if __name__ == "__main__":
    sys.exit(main())
