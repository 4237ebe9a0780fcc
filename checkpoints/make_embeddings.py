"""Precompute the maps shipped in checkpoints/embeddings/, so the Embeddings page opens on a map.

    python checkpoints/make_embeddings.py [--dataset mnist|fashion-mnist]

Each is an ordinary cache entry (safetensors coordinates + JSON settings), keyed like the page's.
"""

from __future__ import annotations

import argparse
import sys

from mnist_core import datasets, embed  # noqa: E402
from mnist_core.checkpoints import find, load  # noqa: E402

SHIPPED = [
    embed.EmbedSpec(),  # the page's default: UMAP of 10,000 digits' pixels
    embed.EmbedSpec(method="tsne"),
    embed.EmbedSpec(source="best"),  # the same digits through the best network's features
    embed.EmbedSpec(dataset=datasets.FASHION),  # the same three for Fashion-MNIST, through its shipped CNN
    embed.EmbedSpec(method="tsne", dataset=datasets.FASHION),
    embed.EmbedSpec(source="fashion", dataset=datasets.FASHION),
]


def main() -> int:
    parser = argparse.ArgumentParser(description="Precompute the shipped maps.")
    parser.add_argument("--dataset", choices=(datasets.MNIST, datasets.FASHION), help="only this data set's maps")
    args = parser.parse_args()
    embed.warm_up()  # so the recorded seconds are the map's, not numba's compile time
    out = embed.shipped_cache_dir()
    for spec in SHIPPED:
        if args.dataset and spec.dataset != args.dataset:
            continue
        model, version = None, ""
        if spec.source != "pixels":
            model, version = load(spec.source)[0], embed.file_digest(find(spec.source).weights_path)
        result = embed.compute(spec, datasets.load(spec.dataset), model)
        key = embed.cache_key(spec, version)
        embed.save_cached(result, key, out)
        separation = embed.knn_separation(result.coords, result.labels).accuracy
        print(
            f"{spec.dataset} {spec.method} {spec.source} {spec.points}: {result.seconds:.1f} s, 10-NN accuracy {separation:.3f} -> {key}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
