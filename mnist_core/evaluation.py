"""How a model does on the test set: confusion matrix, per-class accuracy, confident mistakes, calibration."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from .data import TensorSplit


@torch.no_grad()
def test_probabilities(model: nn.Module, split: TensorSplit, batch_size: int = 2000) -> np.ndarray:
    """Softmax outputs (N, 10) for a whole split, in order."""
    model.eval()
    device = next(model.parameters()).device
    return torch.cat([torch.softmax(model(x.to(device)), 1).cpu() for x, _ in split.batches(batch_size)]).numpy()


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
    return Calibration(edges, mean_conf, accuracy, counts, ece)
