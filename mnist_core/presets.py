"""Named training recipes: the classic experiments and the benchmark recipes, in one place.

Units: lr is the peak learning rate, rotation in degrees, shift in pixels, epochs are full passes.
"""

from __future__ import annotations

import dataclasses

from .train import TrainConfig

PRESETS: dict[str, tuple[str, TrainConfig]] = {
    "fast": (
        "Reaches 99% test accuracy fastest on a CPU: a small BatchNorm CNN, one epoch, OneCycle.",
        TrainConfig(arch="fast", epochs=1, batch_size=128, optimizer="adam", lr=0.01, schedule="onecycle",
                    label_smoothing=0.1),
    ),
    "tiny_gap_19": (
        "The classic 12k-18k-parameter GAP net: 19 epochs, dropout 0.069, rotation 5 degrees, batch 128.",
        TrainConfig(arch="tiny_gap", model={"dropout": 0.069}, epochs=19, batch_size=128, optimizer="sgd",
                    lr=0.05, momentum=0.9, nesterov=True, schedule="onecycle", rotation=5.0),
    ),
    "best": (
        "Best single-model accuracy: a wider CNN with rotation and shift augmentation, 15 epochs.",
        TrainConfig(arch="cnn", model={"channels": [32, 64, 128], "dropout": 0.1}, epochs=15, batch_size=128,
                    optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4,
                    schedule="onecycle", label_smoothing=0.1, rotation=8.0, shift=2.0),
    ),
    "conv2_fc2": (
        "The pytorch/examples MNIST net (two convs, two FC layers) with its Adadelta recipe.",
        TrainConfig(arch="conv2_fc2", epochs=2, batch_size=64, optimizer="adadelta", lr=1.0, schedule="step",
                    step_size=1, gamma=0.7),
    ),
    "mlp": (
        "A plain two-hidden-layer fully connected net.",
        TrainConfig(arch="mlp", epochs=5, batch_size=128, optimizer="adam", lr=1e-3, schedule="cosine"),
    ),
    "columnet": (
        "ColumNet: five parallel columns (ReLU, tanh, sigmoid, ELU, GELU) of about the MLP's size.",
        TrainConfig(arch="columnet", epochs=5, batch_size=128, optimizer="adam", lr=1e-3, schedule="cosine"),
    ),
    "sparsenet": (
        "Fully connected layers with 10% of their connections, fixed.",
        TrainConfig(arch="sparsenet", epochs=5, batch_size=128, optimizer="adam", lr=1e-3, schedule="cosine"),
    ),
    "cnn": (
        "The classic small CNN: 3x3 convs, BatchNorm after ReLU, max-pool.",
        TrainConfig(arch="cnn", epochs=3, batch_size=128, optimizer="adam", lr=3e-3, schedule="onecycle"),
    ),
    "conv_fc": (
        "One conv layer straight into the output layer.",
        TrainConfig(arch="conv_fc", epochs=3, batch_size=128, optimizer="adam", lr=1e-3, schedule="cosine"),
    ),
}


def preset(name: str) -> TrainConfig:
    """A fresh copy of a preset's config (callers may change it)."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    config = PRESETS[name][1]
    return dataclasses.replace(config, model=dict(config.model))
