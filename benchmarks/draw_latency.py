"""Server-side cost of one drawing: preprocessing + inference per shipped model, p50 and p95.

    python benchmarks/draw_latency.py --repeats 200

The input is what the canvas sends: a 280x280 RGBA array. Saliency and feature maps are timed
separately (they are drawn after the prediction).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch

from mnist_core.checkpoints import list_checkpoints, load  # noqa: E402
from mnist_core.drawing import predict, preprocess, to_input  # noqa: E402
from mnist_core.saliency import explain, feature_maps  # noqa: E402
from mnist_core.strokes import synthetic_drawings  # noqa: E402

TARGET_P95_MS = 50.0


def canvas_like(grey: np.ndarray) -> np.ndarray:
    rgba = np.zeros((*grey.shape, 4), np.uint8)
    rgba[..., :3] = grey[..., None]
    rgba[..., 3] = 255
    return rgba


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    images, _, _ = synthetic_drawings(per_class=max(1, args.repeats // 10), seed=5)
    drawings = [canvas_like(g) for g in images[: args.repeats]]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {len(drawings)} drawings per model; "
        f"target p95 <= {TARGET_P95_MS:.0f} ms for preprocessing + inference"
    )
    print(f"{'checkpoint':<12} {'arch':<10} {'p50 ms':>8} {'p95 ms':>8} {'why p50 ms':>11}  verdict")
    worst = 0.0
    for info in [i for i in list_checkpoints() if i.source == "shipped"]:
        model, meta = load(info.name)
        predict(model, preprocess(drawings[0]).pixels)  # warm-up: first-call allocations
        times, why = [], []
        for rgba in drawings:
            start = time.perf_counter()
            pixels = preprocess(rgba).pixels
            guess = predict(model, pixels)
            times.append(1000 * (time.perf_counter() - start))
        for rgba in drawings[:20]:
            x = to_input(preprocess(rgba).pixels)
            start = time.perf_counter()
            explain(model, x, 0)
            feature_maps(model, x)
            why.append(1000 * (time.perf_counter() - start))
        p95 = percentile(times, 95)
        worst = max(worst, p95)
        print(
            f"{info.name:<12} {meta['arch']:<10} {statistics.median(times):>8.1f} {p95:>8.1f} "
            f"{statistics.median(why):>11.1f}  {'ok' if p95 <= TARGET_P95_MS else 'OVER TARGET'}"
        )
        del guess
    print(
        f"worst p95 {worst:.1f} ms against the {TARGET_P95_MS:.0f} ms target: "
        f"{'met' if worst <= TARGET_P95_MS else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
