"""Descriptive statistics of the data set: what the Data page shows, computed here."""

from __future__ import annotations

import numpy as np
import torch

from .data import Mnist

SPLITS = ("train", "test")


def split_arrays(mnist: Mnist, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose train or test")
    return (mnist.train_images, mnist.train_labels) if split == "train" else (mnist.test_images, mnist.test_labels)


def class_counts(mnist: Mnist) -> dict[str, list[int]]:
    return {split: torch.bincount(split_arrays(mnist, split)[1], minlength=10).tolist() for split in SPLITS}


def class_means(mnist: Mnist, split: str = "train") -> np.ndarray:
    """(10, 28, 28) mean image of each digit, in [0, 255]."""
    images, labels = split_arrays(mnist, split)
    return np.stack([images[labels == d].float().mean(0).numpy() for d in range(10)])


def ink_per_class(mnist: Mnist, split: str = "train") -> np.ndarray:
    """Mean pixel intensity (0-1) of each digit class: how much ink a typical digit uses."""
    images, labels = split_arrays(mnist, split)
    ink = images.float().mean((1, 2)) / 255.0
    return np.array([float(ink[labels == d].mean()) for d in range(10)])


def intensity_histograms(mnist: Mnist, split: str = "train", bins: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Per-class share of non-black pixels in each intensity bin: (edges (bins+1,), shares (10, bins))."""
    images, labels = split_arrays(mnist, split)
    edges = np.linspace(1, 256, bins + 1)  # black (0) is most of every image; it would flatten the rest
    shares = np.zeros((10, bins))
    for d in range(10):
        pixels = images[labels == d].flatten().numpy()
        counts, _ = np.histogram(pixels[pixels > 0], bins=edges)
        shares[d] = counts / max(counts.sum(), 1)
    return edges, shares


def sample_indices(mnist: Mnist, split: str, digit: int | None, count: int, seed: int) -> np.ndarray:
    """count indices into the split, of one digit or any, drawn without replacement by seed."""
    _, labels = split_arrays(mnist, split)
    pool = np.arange(len(labels)) if digit is None else (labels == digit).nonzero().flatten().numpy()
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(pool, size=min(count, len(pool)), replace=False))
