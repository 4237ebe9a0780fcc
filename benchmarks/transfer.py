"""Transfer vs scratch at 100 / 1,000 / all 60,000 labelled digits, over several seeds.

    python benchmarks/transfer.py                                  # fashion_cnn and efficientnet_lite0
    python benchmarks/transfer.py --backbones fashion_cnn --seeds 0

Each arm trains 600 Adam steps of batch 128 (lr 1e-3) on the same class-balanced labelled digits and is
scored on the whole test set. Frozen features are cached (runs/features/), so a second run only
trains heads; the first EfficientNet-Lite0 run computes 70,000 digits' features (minutes on a CPU).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from mnist_core.data import load_mnist  # noqa: E402
from mnist_core.files import write_json_atomic  # noqa: E402
from mnist_core.transfer import BACKBONES, TransferConfig, load_backbone, run_transfer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "transfer.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backbones", nargs="+", default=["fashion_cnn", "efficientnet_lite0"], choices=list(BACKBONES)
    )
    parser.add_argument("--labels", type=int, nargs="+", default=[100, 1000, 60_000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=600)
    args = parser.parse_args()
    mnist = load_mnist()
    rows = []
    backbones = {name: load_backbone(name) for name in args.backbones}
    for labels in args.labels:
        for seed in args.seeds:
            runs = [("scratch", None)] + [("frozen", b) for b in args.backbones]
            for arm, name in runs:
                config = TransferConfig(name or args.backbones[0], labels, steps=args.steps, seed=seed, arms=(arm,))
                started = time.perf_counter()
                (result,) = run_transfer(config, mnist, backbones[config.backbone] if name else None)
                rows.append(
                    {
                        "arm": f"{arm} {name}" if name else "scratch (Fashion-CNN architecture)",
                        "labels": labels,
                        "seed": seed,
                        "test_accuracy": result.test_accuracy,
                        "train_seconds": result.seconds,
                        "feature_seconds": result.feature_seconds,
                        "wall_seconds": time.perf_counter() - started,
                    }
                )
                print(
                    f"{labels:>6} labels, seed {seed}, {rows[-1]['arm']:38s}: {100 * result.test_accuracy:6.2f}% "
                    f"(head {result.seconds:.1f}s, features {result.feature_seconds:.0f}s)",
                    flush=True,
                )
    write_json_atomic(RESULTS, rows)
    print(f"\nTest accuracy %, mean +- std over seeds {args.seeds}; {args.steps} steps of batch 128 per arm")
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    print(f"{'labelled digits':>16s} " + " ".join(f"{a:>38s}" for a in arms))
    for labels in args.labels:
        cells = []
        for arm in arms:
            acc = [100 * r["test_accuracy"] for r in rows if r["arm"] == arm and r["labels"] == labels]
            spread = statistics.stdev(acc) if len(acc) > 1 else 0.0
            cells.append(f"{statistics.fmean(acc):7.2f} +- {spread:4.2f}")
        print(f"{labels:>16,} " + " ".join(f"{c:>38s}" for c in cells))


if __name__ == "__main__":
    main()
