"""Train the conditional GAN shipped in checkpoints/gans/, scored after each epoch by the `best` classifier.

    python checkpoints/make_gan.py --epochs 5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mnist_core.checkpoints import load  # noqa: E402
from mnist_core.data import load_mnist  # noqa: E402
from mnist_core.gan import GanConfig, Judge, save_gan, shipped_gan_dir, train_gan  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="dcgan")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--name", default="cgan")
    args = parser.parse_args()
    mnist = load_mnist()
    judge = Judge(load("best")[0], mnist)

    def report(kind, data):
        if kind == "epoch":
            print(f"epoch {data['epoch']}: {data['elapsed']:.0f} s, conditional accuracy "
                  f"{data['conditional_accuracy']:.1%}, min diversity {min(data['diversity']):.2f}, "
                  f"Frechet {data['frechet']:.1f}", flush=True)

    print(f"torch threads: {torch.get_num_threads()}")
    result = train_gan(GanConfig(variant=args.variant, epochs=args.epochs), mnist, judge, report)
    print(result.status, result.message, f"{result.seconds:.0f} s")
    print(f"Frechet distance of 1,000 real training digits to the test set: {judge.real_frechet:.1f}")
    print("saved", save_gan(result, args.name, shipped_gan_dir(), extra={"real_frechet": judge.real_frechet}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
