"""Drawn digits read, and drawings that are no digit refused or flagged, per shipped checkpoint.

    python benchmarks/drawn_digits.py --per-class 100 --per-shape 100 --seed 0

The digits are pen strokes (several styles per class) rendered like a canvas brush at random
sizes, positions and widths, then preprocessed like a real drawing (mnist_core.strokes). The
non-digits (a dot, a filled box, an X, a smiley, a #, random scribbles) go through the same path.
A drawing is "flagged" when the page refuses it before the model (too little ink, a solid blob,
scattered pieces) or the model's reading is unsure; either way the page shows no answer.

Targets: the default checkpoint (the most accurate shipped one) reads >= 90% of the digits
correctly without a flag, and flags >= 90% of every kind of non-digit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from mnist_core.checkpoints import list_checkpoints, load  # noqa: E402
from mnist_core.drawing import predict_all, reading, screen_all  # noqa: E402
from mnist_core.strokes import non_digits, synthetic_drawings  # noqa: E402

TARGET = 0.90


def flagged(model, pixels: np.ndarray, refused: np.ndarray) -> np.ndarray:
    return refused | np.array([reading(p).unsure for p in predict_all(model, pixels)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--per-shape", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    images, labels, _ = synthetic_drawings(args.per_class, args.seed)
    digits, digits_refused = screen_all(images)
    shapes = {name: screen_all(drawn) for name, drawn in non_digits(args.per_shape, args.seed).items()}
    shipped = [i for i in list_checkpoints() if i.source == "shipped"]
    default = max(shipped, key=lambda i: i.meta["test_accuracy"]).name
    print(f"{len(labels)} synthetic drawn digits ({args.per_class} per class), {args.per_shape} of each non-digit, "
          f"seed {args.seed}; targets for the default checkpoint ({default}): digits read >= {TARGET:.0%}, "
          f"every non-digit flagged >= {TARGET:.0%}")
    print(f"refused before any model: digits {digits_refused.mean():.1%}, "
          + ", ".join(f"{name} {refused.mean():.0%}" for name, (_, refused) in shapes.items()))
    print(f"{'checkpoint':<22} {'MNIST':>6} {'correct':>8} {'read':>6} {'flagged':>8}  "
          + " ".join(f"{name:>10}" for name in shapes) + "  (non-digits: share flagged)")
    for info in shipped:
        model, meta = load(info.name)
        probabilities = predict_all(model, digits)
        digit_flags = flagged(model, digits, digits_refused)
        correct = probabilities.argmax(1) == labels
        shape_flags = {name: flagged(model, pixels, refused).mean() for name, (pixels, refused) in shapes.items()}
        mark = " (default)" if info.name == default else ""
        print(f"{info.name + mark:<22} {meta['test_accuracy']:>6.2%} {correct.mean():>8.1%} "
              f"{(correct & ~digit_flags).mean():>6.1%} {digit_flags.mean():>8.1%}  "
              + " ".join(f"{rate:>10.0%}" for rate in shape_flags.values()))
    print("correct: argmax right; read: right and not flagged (what the page shows as an answer); "
          "flagged: digits refused or unsure")
    return 0


if __name__ == "__main__":
    sys.exit(main())
