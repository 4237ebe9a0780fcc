"""The exported `fast` script, run in full, against the app's `fast` checkpoint.

Exports the shipped `fast` checkpoint as a standalone training script (torch and numpy only), runs
it in a fresh process on the bundled MNIST files (one epoch, its exact recipe and seed), and prints
its test accuracy beside the checkpoint's. Target: within 0.3 points.

    python benchmarks/export_fast.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from mnist_core.checkpoints import find  # noqa: E402
from mnist_core.export import script_text  # noqa: E402

TARGET_POINTS = 0.3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="runs of the script (the same seed each time)")
    args = parser.parse_args()
    info = find("fast")
    app = info.meta["test_accuracy"]
    accuracies, seconds = [], []
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "fast.py"
        script.write_text(script_text(info))
        for _ in range(args.repeats):
            start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, str(script), "--data", str(ROOT / "data" / "mnist")],
                capture_output=True,
                text=True,
                cwd=tmp,
            )
            seconds.append(time.perf_counter() - start)
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                return 1
            accuracies.append(float(re.search(r"test accuracy: ([\d.]+)", done.stdout).group(1)))
    accuracy = statistics.median(accuracies)
    gap = 100 * abs(accuracy - app)
    print(
        f"exported `fast` script, full recipe (1 epoch, seed {info.meta['seed']}): test accuracy "
        f"{accuracy:.2%} (runs: {', '.join(f'{a:.2%}' for a in accuracies)}; median wall time "
        f"{statistics.median(seconds):.1f} s, data loading and torch import included)"
    )
    print(f"app's `fast` checkpoint: {app:.2%}")
    print(
        f"difference {gap:.2f} points; target <= {TARGET_POINTS} points: {'met' if gap <= TARGET_POINTS else 'MISSED'}"
    )
    return 0 if gap <= TARGET_POINTS else 1


if __name__ == "__main__":
    sys.exit(main())
