"""What a training run starts from besides its settings: the checkpoint it fine-tunes, the drawings it mixes in.

TrainConfig names them (init_checkpoint, drawings_share: how a run is described and reproduced); this
module reads them from storage for whoever runs it (the train job, a comparison's runs, the CLI), and
train.fit() is handed the result. The trainer itself never reads storage: checkpoints and drawings
import train (TrainConfig, RunResult), so train reading them was an import circle.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .checkpoints import CheckpointError, find, load
from .drawing_store import DrawingSet, load_drawings
from .models import make_config
from .train import ConfigError, TrainConfig


@dataclass
class StartingPoint:
    model: nn.Module | None = None  # the start checkpoint's model; None: fit() seeds a fresh one
    drawings: DrawingSet | None = None  # mixed into each batch when the config's drawings share is above 0


def _check_checkpoint(config: TrainConfig) -> None:
    try:
        meta = find(config.init_checkpoint).meta
    except CheckpointError as exc:
        raise ConfigError(f"cannot start from checkpoint: {exc}") from None
    if meta["arch"] != config.arch:
        raise ConfigError(
            f"checkpoint {config.init_checkpoint!r} is a {meta['arch']} model; "
            f"choose architecture {meta['arch']} to start from it"
        )


def _drawings() -> DrawingSet:
    drawn = load_drawings()
    if not len(drawn):
        raise ConfigError("drawings share is above 0 but there are no saved drawings; save some on the Draw page first")
    return drawn


def check_starting_point(config: TrainConfig) -> None:
    """Refuse (ConfigError), before a run is queued, a start checkpoint that is missing, unreadable or of another
    architecture, and a drawings share with no drawings saved. Checked again when the run loads them."""
    if config.init_checkpoint:
        _check_checkpoint(config)
    if config.drawings_share > 0:
        _drawings()


def load_starting_point(config: TrainConfig, device: str | torch.device = "cpu") -> StartingPoint:
    """The start checkpoint's model and the drawings the config asks for, read now (a job reads them when it
    runs: another tab may have deleted them since it was queued). Raises ConfigError or CheckpointError."""
    model = None
    if config.init_checkpoint:
        _check_checkpoint(config)
        model, meta = load(config.init_checkpoint, expected_arch=config.arch, device=device)
        if config.model and make_config(config.arch, config.model) != make_config(config.arch, meta["model_config"]):
            raise ConfigError(
                f"checkpoint {config.init_checkpoint!r} has model settings {meta['model_config']}, not {config.model}"
            )
        model.train()
    return StartingPoint(model, _drawings() if config.drawings_share > 0 else None)
