"""Precompute the maps shipped in checkpoints/embeddings/, so the Embeddings page opens on a map.

    python checkpoints/make_embeddings.py

Each is an ordinary cache entry (safetensors coordinates + JSON settings), keyed like the page's.
"""

from __future__ import annotations

import sys

from mnist_core import embed  # noqa: E402
from mnist_core.checkpoints import find, load  # noqa: E402
from mnist_core.data import load_mnist  # noqa: E402

SHIPPED = [
    embed.EmbedSpec(),  # the page's default: UMAP of 10,000 digits' pixels
    embed.EmbedSpec(method="tsne"),
    embed.EmbedSpec(source="best"),  # the same digits through the best network's features
]


def main() -> int:
    mnist = load_mnist()
    embed.warm_up()  # so the recorded seconds are the map's, not numba's compile time
    out = embed.shipped_cache_dir()
    for spec in SHIPPED:
        model, version = None, ""
        if spec.source != "pixels":
            model, version = load(spec.source)[0], embed.file_digest(find(spec.source).weights_path)
        result = embed.compute(spec, mnist, model)
        key = embed.cache_key(spec, version)
        embed.save_cached(result, key, out)
        separation = embed.knn_separation(result.coords, result.labels).accuracy
        print(
            f"{spec.method} {spec.source} {spec.points}: {result.seconds:.1f} s, 10-NN accuracy {separation:.3f} -> {key}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
