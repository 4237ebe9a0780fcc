"""How a model does on the test set: confusion matrix, per-class accuracy, confident mistakes, calibration."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .data import Mnist, TensorSplit
from .files import atomic_write
from .saliency import private_view


@torch.no_grad()
def test_probabilities(
    model: nn.Module, split: TensorSplit, batch_size: int = 250, progress: Callable[[float], None] | None = None
) -> np.ndarray:
    """Softmax outputs (N, 10) for a whole split, in order; progress(share done) after each batch.

    Small batches keep the peak memory low (a conv net's activations for 2,000 digits are hundreds of MB; the
    shipped conv2_fc2 peaks 172 MB above its start at 500 digits, 94 MB at 250, in the same time);
    the model may be shared with other threads, so it runs through a private view, never switched itself.
    """
    view = private_view(model)
    device = next(model.parameters()).device
    out, done = [], 0
    for x, _ in split.batches(batch_size):
        out.append(torch.softmax(view(x.to(device)), 1).float().cpu())
        done += len(x)
        if progress is not None:
            progress(done / len(split))
    return torch.cat(out).numpy()


def predictions_version(weights_version: str, data: Mnist) -> str:
    """The name of a checkpoint's saved test outputs: its weights' digest on MNIST (as shipped), with the data set's
    digest added on any other (two data sets may share their classes, as an imported set of digits does)."""
    return weights_version if data.name == "mnist" else f"{weights_version}.{data.sha256[:16]}"


def stored_probabilities(folder: Path, version: str, rows: int) -> np.ndarray | None:
    """Test-set outputs saved for this version of a checkpoint's weights, or None when there are none (or the file
    is not a plain (rows, 10) float array: it is then scored again)."""
    try:
        probs = np.load(folder / f"{version}.npy", allow_pickle=False)
    except (OSError, ValueError):
        return None
    ok = probs.shape == (rows, 10) and probs.dtype == np.float32 and np.isfinite(probs).all()
    return probs if ok else None


def store_probabilities(folder: Path, version: str, probs: np.ndarray) -> None:
    """Save beside the runs (best effort: a read-only disk only means scoring again after a restart)."""
    array = np.ascontiguousarray(probs, dtype=np.float32)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would add ".npy" to a temporary's name
            np.save(f, array, allow_pickle=False)

    try:
        atomic_write(folder / f"{version}.npy", write)
    except OSError:
        pass


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int = 10) -> np.ndarray:
    """counts[true, predicted]."""
    return np.bincount(labels * classes + predicted, minlength=classes * classes).reshape(classes, classes)


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    return np.diag(confusion) / np.maximum(confusion.sum(1), 1)


def confident_mistakes(probs: np.ndarray, labels: np.ndarray, count: int = 20) -> np.ndarray:
    """Indices of the wrong answers given with the highest confidence, most confident first."""
    predicted = probs.argmax(1)
    wrong = np.flatnonzero(predicted != labels)
    return wrong[np.argsort(-probs[wrong, predicted[wrong]], kind="stable")][:count]


@dataclass
class Calibration:
    edges: np.ndarray  # (bins + 1,) confidence bin edges
    confidence: np.ndarray  # mean confidence per bin (nan when empty)
    accuracy: np.ndarray  # accuracy per bin (nan when empty)
    counts: np.ndarray
    ece: float  # expected calibration error: sum over bins of share x |accuracy - confidence|
    mean_confidence: float = float("nan")  # over all digits: above accuracy = overconfident, below = underconfident
    accuracy_overall: float = float("nan")


def calibration(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> Calibration:
    confidence, predicted = probs.max(1), probs.argmax(1)
    correct = (predicted == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=confidence, minlength=bins) / counts
        accuracy = np.bincount(which, weights=correct, minlength=bins) / counts
    filled = counts > 0
    ece = float((counts[filled] / len(labels) * np.abs(accuracy[filled] - mean_conf[filled])).sum())
    return Calibration(edges, mean_conf, accuracy, counts, ece, float(confidence.mean()), float(correct.mean()))
