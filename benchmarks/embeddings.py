"""Time to compute each embedding map on this machine, and a cached revisit.

    python benchmarks/embeddings.py                 # everything: PCA, UMAP and t-SNE on 70,000, default view
    python benchmarks/embeddings.py --only pca umap  # a part

Each figure is printed beside its target. Times include taking the subset and the PCA-50 step
that t-SNE and UMAP start from, not the one-off import of numba-compiled code (reported apart).
"""

from __future__ import annotations

import argparse
import os  # noqa: E402
import sys
import tempfile
import time
from pathlib import Path

from mnist_core.data import load_mnist  # noqa: E402
from mnist_core.embed import (  # noqa: E402
    EmbedSpec,
    all_labels,
    cache_key,
    compute,
    knn_separation,
    load_cached,
    save_cached,
    warm_up,
)

CASES = {  # name -> (spec, target seconds)
    "pca": (EmbedSpec(method="pca", points=70_000), 3.0),
    "default": (EmbedSpec(points=10_000), 20.0),
    "umap": (EmbedSpec(method="umap", points=70_000), 90.0),
    "tsne": (EmbedSpec(method="tsne", points=70_000), 300.0),
}
CACHED_TARGET = 1.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=list(CASES), default=list(CASES))
    args = parser.parse_args()
    mnist = load_mnist()
    print(f"{os.cpu_count()} CPUs; one run per case")
    start = time.perf_counter()
    import openTSNE  # noqa: F401
    import umap  # noqa: F401

    print(f"importing umap-learn and openTSNE (once per process): {time.perf_counter() - start:.1f} s")
    print(f"compiling UMAP's numba code, or loading it from numba's disk cache: {warm_up():.1f} s")
    print(f"{'case':<9} {'method':<6} {'points':>7} {'seconds':>8} {'target':>7}  k-NN acc  verdict")
    cache = Path(tempfile.mkdtemp())
    for name in args.only:
        spec, target = CASES[name]
        embedding = compute(spec, mnist)
        separation = knn_separation(embedding.coords, embedding.labels)
        ok = embedding.seconds <= target
        print(
            f"{name:<9} {spec.method:<6} {spec.points:>7,} {embedding.seconds:>8.1f} {target:>7.0f}  "
            f"{separation.accuracy:>8.3f}  {'ok' if ok else 'OVER TARGET'}",
            flush=True,
        )
        if name == "default":
            key = cache_key(spec)
            save_cached(embedding, key, cache)
            t = time.perf_counter()
            again = load_cached(key, all_labels(mnist), cache)
            separation = knn_separation(again.coords, again.labels)
            seconds = time.perf_counter() - t
            print(
                f"{'cached':<9} {spec.method:<6} {spec.points:>7,} {seconds:>8.2f} {CACHED_TARGET:>7.0f}  "
                f"{separation.accuracy:>8.3f}  {'ok' if seconds <= CACHED_TARGET else 'OVER TARGET'}"
                "  (read from disk + k-NN figure)",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
