"""Accuracy of every shipped checkpoint on synthetic drawn digits, with errors per class.

    python benchmarks/drawn_digits.py --per-class 100 --seed 0

The drawings are pen strokes (several styles per class) rendered like a canvas brush at random
sizes, positions and widths, then preprocessed like a real drawing (mnist_core.strokes).
Target: the default checkpoint (the most accurate shipped one) reads >= 90% of them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from mnist_core.checkpoints import list_checkpoints, load  # noqa: E402
from mnist_core.drawing import predict_all, preprocess_all, reading, score  # noqa: E402
from mnist_core.strokes import scribbles, synthetic_drawings  # noqa: E402

TARGET = 0.90


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    images, labels, _ = synthetic_drawings(args.per_class, args.seed)
    pixels = preprocess_all(images)
    noise = preprocess_all(scribbles(200, args.seed))
    shipped = [i for i in list_checkpoints() if i.source == "shipped"]
    default = max(shipped, key=lambda i: i.meta["test_accuracy"]).name
    print(f"{len(labels)} synthetic drawings ({args.per_class} per class, seed {args.seed}); "
          f"target: the default checkpoint ({default}) >= {TARGET:.0%}")
    print(f"{'checkpoint':<12} {'MNIST test':>10} {'drawn':>7} {'scribbles flagged':>18}  errors by class (true->read: n)")
    for info in shipped:
        model, meta = load(info.name)
        result = score(predict_all(model, pixels), labels)
        flagged = float(np.mean([reading(p).unsure for p in predict_all(model, noise)]))
        confusions = ", ".join(f"{t}->{r}: {n}" for (t, r), n in sorted(result.confusions.items(), key=lambda kv: -kv[1]))
        mark = " (default)" if info.name == default else ""
        print(f"{info.name + mark:<22} {meta['test_accuracy']:>9.2%} {result.accuracy:>7.1%} {flagged:>18.0%}  "
              f"{confusions or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
