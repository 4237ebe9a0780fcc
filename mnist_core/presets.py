"""Named training recipes: the classic experiments and the benchmark recipes, in one place.

A preset is a named override of TrainConfig's defaults, checked against the fields when this module is
imported: an unknown key or a value out of a field's range is an error here, not a setting silently
ignored on one page. Units are those of the fields (mnist_core/train.py): lr is the peak learning rate,
rotation in degrees, shift in pixels, epochs are full passes.
"""

from __future__ import annotations

import dataclasses

from .fields import check, check_overrides
from .models import make_config
from .train import ConfigError, TrainConfig

RECIPES: dict[str, tuple[str, dict]] = {
    "fast": (
        "Reaches 99% test accuracy fastest on a CPU: a small BatchNorm CNN, one epoch, OneCycle.",
        dict(
            arch="fast", epochs=1, batch_size=128, optimizer="adam", lr=0.01, schedule="onecycle", label_smoothing=0.1
        ),
    ),
    "tiny_gap_19": (
        "The classic 12k-18k-parameter GAP net: 19 epochs, dropout 0.069, rotation 5 degrees, batch 128.",
        dict(
            arch="tiny_gap",
            model={"dropout": 0.069},
            epochs=19,
            batch_size=128,
            optimizer="sgd",
            lr=0.05,
            momentum=0.9,
            nesterov=True,
            schedule="onecycle",
            rotation=5.0,
        ),
    ),
    "best": (
        "Best single-model accuracy: a wider CNN with rotation and shift augmentation, 15 epochs.",
        dict(
            arch="cnn",
            model={"channels": [32, 64, 128], "dropout": 0.1},
            epochs=15,
            batch_size=128,
            optimizer="sgd",
            lr=0.1,
            momentum=0.9,
            nesterov=True,
            weight_decay=5e-4,
            schedule="onecycle",
            label_smoothing=0.1,
            rotation=8.0,
            shift=2.0,
        ),
    ),
    "conv2_fc2": (
        "The pytorch/examples MNIST net (two convs, two FC layers) with its Adadelta recipe.",
        dict(
            arch="conv2_fc2",
            epochs=2,
            batch_size=64,
            optimizer="adadelta",
            lr=1.0,
            schedule="step",
            step_size=1,
            gamma=0.7,
        ),
    ),
    "mlp": (
        "A plain two-hidden-layer fully connected net.",
        dict(arch="mlp", epochs=5, batch_size=128, optimizer="adam", lr=1e-3, schedule="cosine"),
    ),
    "columnet": (
        "ColumNet: five parallel columns (ReLU, tanh, sigmoid, ELU, GELU) of about the MLP's size.",
        dict(arch="columnet", epochs=5, batch_size=128, optimizer="adam", lr=1e-3, schedule="cosine"),
    ),
    "sparsenet": (
        "Fully connected layers with 10% of their connections, fixed.",
        dict(arch="sparsenet", epochs=5, batch_size=128, optimizer="adam", lr=1e-3, schedule="cosine"),
    ),
    "cnn": (
        "The classic small CNN: 3x3 convs, BatchNorm after ReLU, max-pool.",
        dict(arch="cnn", epochs=3, batch_size=128, optimizer="adam", lr=3e-3, schedule="onecycle"),
    ),
    "conv_fc": (
        "One conv layer straight into the output layer.",
        dict(arch="conv_fc", epochs=3, batch_size=128, optimizer="adam", lr=1e-3, schedule="cosine"),
    ),
    "fashion": (
        "Fashion-MNIST's best: best's wider CNN with dropout, Adam, OneCycle, label smoothing, shift 1 px, 8 epochs.",
        dict(
            dataset="fashion-mnist",
            arch="cnn",
            model={"channels": [32, 64, 128], "dropout": 0.1},
            epochs=8,
            batch_size=128,
            optimizer="adam",
            lr=3e-3,
            schedule="onecycle",
            label_smoothing=0.1,
            shift=1.0,
        ),
    ),
    "fashion_fast": (
        "A first Fashion-MNIST result in about 20 s: fast's small BatchNorm CNN, one epoch, OneCycle.",
        dict(
            dataset="fashion-mnist",
            arch="fast",
            epochs=1,
            batch_size=128,
            optimizer="adam",
            lr=0.01,
            schedule="onecycle",
            label_smoothing=0.1,
        ),
    ),
}

# The Draw page's fine-tune on the visitor's drawings: 100 batches of MNIST at a small Adam step, light
# augmentation, a quarter of each batch from the drawings. Applied over the checkpoint's arch and model.
DRAWINGS_FINE_TUNE = dict(
    epochs=1,
    max_batches=100,
    batch_size=128,
    optimizer="adam",
    lr=1e-4,
    rotation=8.0,
    shift=2.0,
    drawings_share=0.25,
    seed=0,
)


def from_overrides(name: str, overrides: dict) -> TrainConfig:
    """TrainConfig's defaults with these overrides, refused (ConfigError) if a key is no field or a value is
    out of its field's range."""
    check_overrides(TrainConfig, overrides, f"preset {name!r}", ConfigError)
    config = TrainConfig(**{k: dict(v) if isinstance(v, dict) else v for k, v in overrides.items()})
    try:
        check(config, ConfigError)
        make_config(config.arch, config.model)
    except ValueError as exc:
        raise ConfigError(f"preset {name!r}: {exc}") from None
    return config


PRESETS: dict[str, tuple[str, TrainConfig]] = {
    name: (summary, from_overrides(name, overrides)) for name, (summary, overrides) in RECIPES.items()
}
from_overrides("drawings fine-tune", DRAWINGS_FINE_TUNE)  # checked at import like the presets


def preset(name: str) -> TrainConfig:
    """A fresh copy of a preset's config (callers may change it)."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    config = PRESETS[name][1]
    return dataclasses.replace(config, model=dict(config.model))


def drawings_fine_tune(arch: str, model: dict, checkpoint: str) -> TrainConfig:
    """The Draw page's fine-tune of a checkpoint on the drawings: its architecture, DRAWINGS_FINE_TUNE's recipe."""
    return dataclasses.replace(
        from_overrides("drawings fine-tune", DRAWINGS_FINE_TUNE),
        arch=arch,
        model=dict(model or {}),
        init_checkpoint=checkpoint,
    )


# The settings a comparison's base setup takes, on the Compare page and as `compare` flags; the rest of
# the base (augmentation, seed, ...) comes from the preset.
COMPARE_RUN_FIELDS = ("epochs", "batch_size", "max_batches", "train_subset")
COMPARE_RECIPE_FIELDS = (
    "optimizer",
    "lr",
    "schedule",
    "momentum",
    "nesterov",
    "weight_decay",
    "label_smoothing",
    "step_size",
    "gamma",
)


def compare_base(start: TrainConfig, arch: str | None = None, values: dict | None = None) -> TrainConfig:
    """A comparison's base: the starting config, another architecture (with its default settings) if asked,
    the given settings, and no histograms (a sweep's many runs are not worth their disk)."""
    config = dataclasses.replace(start, model=dict(start.model))
    if arch and arch != config.arch:
        config = dataclasses.replace(config, arch=arch, model={})
    return dataclasses.replace(config, **(values or {}), record=False)
