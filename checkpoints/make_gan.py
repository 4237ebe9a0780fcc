"""Train a conditional GAN shipped in checkpoints/gans/, scored after each epoch by the `best` classifier.

    python checkpoints/make_gan.py --epochs 15                  # cgan: the lab's GAN
    python checkpoints/make_gan.py --recipe collapse            # cgan-collapsed: a mode-collapse example

The collapse recipe is a small DCGAN with a one-number noise vector, a generator learning rate five
times the discriminator's and no label smoothing: the generator finds one drawing per class that
fools the discriminator and stops varying, so every sample of a class is the same image (the GAN
page's diversity warning shows on it).
"""

from __future__ import annotations

import argparse
import sys

import torch

from mnist_core.checkpoints import load  # noqa: E402
from mnist_core.data import load_mnist  # noqa: E402
from mnist_core.gan import COLLAPSE_RECIPE, GanConfig, Judge, save_gan, shipped_gan_dir, train_gan  # noqa: E402
from mnist_core.reporter import Reporter  # noqa: E402

RECIPES = {
    "default": ("cgan", {}),
    "collapse": ("cgan-collapsed", COLLAPSE_RECIPE),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", choices=list(RECIPES), default="default")
    parser.add_argument("--variant")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--name")
    args = parser.parse_args()
    default_name, settings = RECIPES[args.recipe]
    settings = {**settings, **{k: v for k, v in (("variant", args.variant), ("epochs", args.epochs)) if v is not None}}
    mnist = load_mnist()
    judge = Judge(load("best")[0], mnist)

    def report(kind, data):
        if kind == "epoch":
            print(
                f"epoch {data['epoch']}: {data['elapsed']:.0f} s, conditional accuracy "
                f"{data['conditional_accuracy']:.1%}, diversity per class "
                f"{' '.join(f'{d:.2f}' for d in data['diversity'])}, Frechet {data['frechet']:.1f}",
                flush=True,
            )

    print(f"torch threads: {torch.get_num_threads()}")
    result = train_gan(GanConfig(**settings), mnist, judge, Reporter(report))
    print(result.status, result.message, f"{result.seconds:.0f} s")
    print(f"Frechet distance of 1,000 real training digits to the test set: {judge.real_frechet:.1f}")
    name = args.name or default_name
    print("saved", save_gan(result, name, shipped_gan_dir(), extra={"real_frechet": judge.real_frechet}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
