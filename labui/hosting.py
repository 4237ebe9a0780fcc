"""Whether the app serves the public (MNIST_HOSTED=1) or one developer: read here and nowhere else."""

from __future__ import annotations

import os

TRUE, FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def hosted() -> bool:
    """True when MNIST_HOSTED is 1 (or true/yes/on); unset or 0 means a local, developer's app."""
    value = os.environ.get("MNIST_HOSTED", "").strip().lower()
    if value not in TRUE + FALSE:
        raise ValueError(f"MNIST_HOSTED must be 1 (hosted) or 0 (local), got {os.environ['MNIST_HOSTED']!r}")
    return value in TRUE
