"""Seconds for one training epoch of the GAN page's default cGAN (dcgan), now and at an earlier commit.

Each run is a fresh process training `GanConfig(epochs=1)` on real MNIST (469 batches of 128, the epoch's
fixed-noise grid included, the judge's scoring not). The same epoch at the baseline commit runs from a
temporary `git worktree`, interleaved with the current code's runs so machine noise hits both alike.

    python benchmarks/gan_epoch.py                  # 3 runs of each
    python benchmarks/gan_epoch.py --runs 5 --baseline 99d8a15

Quality after 15 epochs is not measured here: `python checkpoints/make_gan.py --epochs 15 --name NAME`
prints each epoch's conditional accuracy and Frechet distance.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 30.0
BASELINE_COMMIT = "99d8a15"  # before channels-last, the bit-mask dropout and the frozen discriminator in G's step

ONE_EPOCH = """
import json
import mnist_core
from mnist_core.data import load_mnist
from mnist_core.gan import GanConfig, train_gan
result = train_gan(GanConfig(epochs=1, seed={seed}), load_mnist())
epoch = result.epochs[-1]
print(json.dumps({{"seconds": epoch["elapsed"], "steps": epoch["steps"], "status": result.status,
                  "message": result.message, "code": mnist_core.__file__}}))
"""


def one_epoch(code_root: Path, seed: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", ONE_EPOCH.format(seed=seed)],
        cwd=code_root,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise SystemExit(f"the epoch at {code_root} failed: {last}")
    row = json.loads(done.stdout.strip().splitlines()[-1])
    if not Path(row["code"]).resolve().is_relative_to(code_root.resolve()):
        raise SystemExit(f"the run meant for {code_root} imported {row['code']} instead")
    if row["status"] != "finished":
        raise SystemExit(f"the epoch at {code_root} ended {row['status']}: {row['message']}")
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", default=BASELINE_COMMIT, help="git commit to compare with")
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    now, before = [], []
    with tempfile.TemporaryDirectory() as tmp:
        baseline_root = Path(tmp) / "baseline"
        if not args.no_baseline:
            added = subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(baseline_root), args.baseline],
                capture_output=True,
                text=True,
            )
            if added.returncode != 0:
                print(f"cannot check out the baseline {args.baseline}: {added.stderr.strip()}", file=sys.stderr)
                return 2
        try:
            for run in range(args.runs):
                if not args.no_baseline:
                    before.append(one_epoch(baseline_root, seed=run)["seconds"])
                    print(f"run {run + 1}: baseline {args.baseline}: {before[-1]:.1f} s", flush=True)
                now.append(one_epoch(ROOT, seed=run)["seconds"])
                print(f"run {run + 1}: now: {now[-1]:.1f} s", flush=True)
        finally:
            if not args.no_baseline:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline_root)])
    print(f"\none cGAN epoch (dcgan, 469 batches of 128), median of {args.runs} fresh processes:")
    print(f"  now: {statistics.median(now):.1f} s   (target <= {TARGET_SECONDS:.0f} s)")
    if before:
        print(f"  baseline {args.baseline}: {statistics.median(before):.1f} s")
        print(f"  now / baseline: {statistics.median(now) / statistics.median(before):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
