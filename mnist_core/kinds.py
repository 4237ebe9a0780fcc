"""The kinds of long work the lab runs as jobs: what each one checks, runs, reports and returns.

A kind is a name, a prepare step (runs in the web process at submit: validates the config, applies the
host's epoch cap, says what an "epoch" is for this kind), a view (folds the job's events into what its
page draws) and a work function. work(spec, reporter) runs anywhere (a thread of the server, a worker
process, a Ray worker): it loads what it needs itself, cached per process, saves what it produced, and
returns a small picklable dict {"status": done|stopped|failed, "message": ..., plus the kind's result}.
It never raises for an ordinary failure; it says why in the result.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .reporter import DONE, FAILED, STOPPED, Reporter

SMOOTHING = 0.9  # exponential smoothing of the per-batch loss and accuracy curves
RATE_SMOOTHING = 0.8  # exponential smoothing of the step rate behind the ETA, updated about once a second
MAX_CURVE_POINTS = 2000  # per-batch points kept for the live curve; older ones are thinned


def refuse(message: str) -> Exception:
    """The runner's refusal (a host limit), built lazily: the runner imports this module."""
    from .runner import JobRefused

    return JobRefused(message)


def epoch_cap(limits, asked: int, what: str) -> None:
    """Refuse work over MNIST_MAX_EPOCHS, saying what an epoch is for this kind."""
    cap = getattr(limits, "max_epochs", None)
    if cap is not None and asked > cap:
        raise refuse(f"this host allows at most {cap} epochs per run (MNIST_MAX_EPOCHS; {what}); "
                     f"you asked for {asked}")


def known_fields(cls, config: dict, error: type[Exception], what: str) -> dict:
    """The config's fields, refusing names the dataclass does not have (a typo must not be ignored)."""
    if not isinstance(config, dict):
        raise error(f"a {what} config is a mapping of settings, not {type(config).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(config) - names)
    if unknown:
        raise error(f"unknown {what} setting {unknown[0]!r}; the settings are {', '.join(sorted(names))}")
    return dict(config)


# ---------------------------------------------------------------- per-process caches

_cache_lock = threading.Lock()
_device_data: dict[tuple, object] = {}


def device_data(device: str = "auto", val_size: int = 0):
    """MNIST resident on a device, loaded once per process (and per validation split)."""
    from .data import DeviceData, load_mnist

    key = (device, val_size)
    with _cache_lock:
        if key not in _device_data:
            _device_data[key] = DeviceData(load_mnist(), device=device, val_size=val_size)
        return _device_data[key]


def _failed(exc: Exception) -> dict:
    return {"status": FAILED, "message": f"{type(exc).__name__}: {exc}"}


# ---------------------------------------------------------------- train


class TrainView:
    """A training run as the Train page draws it: smoothed batch curves, epoch records, a steady ETA."""

    def __init__(self, config: dict):
        from .train import TrainConfig, planned_steps

        train_config = TrainConfig.from_dict(config)
        self.total_steps = planned_steps(train_config, 60_000 - train_config.val_size)
        self.step = self.epoch = 0
        self.seconds = self.images_per_s = self.steps_per_s = self.warmup_seconds = 0.0
        self.stage = "queued"
        self.batch_curve: list[dict] = []  # step, loss and accuracy (smoothed), raw_loss, raw_accuracy
        self.epochs: list[dict] = []
        self._rate_mark = (0.0, 0)

    @property
    def eta_seconds(self) -> float | None:
        if not self.step or not self.total_steps or not self.steps_per_s:
            return None
        return (self.total_steps - self.step) / self.steps_per_s

    def snapshot(self) -> "TrainView":
        copied = copy.copy(self)
        copied.batch_curve, copied.epochs = list(self.batch_curve), list(self.epochs)
        return copied

    def on_event(self, kind: str, d: dict) -> None:
        if kind == "batch":
            last = self.batch_curve[-1] if self.batch_curve else {"loss": d["loss"], "accuracy": d["accuracy"]}
            self.batch_curve.append({"step": d["step"], "loss": SMOOTHING * last["loss"] + (1 - SMOOTHING) * d["loss"],
                                     "raw_loss": d["loss"], "raw_accuracy": d["accuracy"],
                                     "accuracy": SMOOTHING * last["accuracy"] + (1 - SMOOTHING) * d["accuracy"]})
            self._update_rate(d["elapsed"], d["step"])
            if len(self.batch_curve) > MAX_CURVE_POINTS:
                self.batch_curve = self.batch_curve[::2]
            self.step, self.epoch, self.images_per_s = d["step"], d["epoch"], d["images_per_s"]
            self.seconds = d["elapsed"]
        elif kind == "epoch":
            self.epochs.append(dict(d))
        elif kind == "stage":
            self.stage = d["stage"]
        elif kind == "warmup":
            self.warmup_seconds = d["seconds"]

    def _update_rate(self, elapsed: float, step: int) -> None:
        mark_time, mark_step = self._rate_mark
        if elapsed - mark_time < 1.0:
            return
        rate = (step - mark_step) / (elapsed - mark_time)
        self.steps_per_s = rate if not self.steps_per_s else RATE_SMOOTHING * self.steps_per_s + (1 - RATE_SMOOTHING) * rate
        self._rate_mark = (elapsed, step)


def prepare_train(config: dict, limits) -> dict:
    """A training config as this host runs it: every setting checked, refused over the epoch cap,
    time-capped when the host has a per-run cap (the run then ends cleanly and is scored)."""
    from .train import ConfigError, TrainConfig, check_fits_in_memory

    train_config = TrainConfig(**known_fields(TrainConfig, config, ConfigError, "training"))
    epoch_cap(limits, train_config.epochs, "an epoch is one pass over the training images")
    cap = getattr(limits, "max_run_seconds", None)
    if cap is not None:
        train_config = dataclasses.replace(train_config, max_seconds=min(train_config.max_seconds or cap, cap))
    train_config.validate()
    check_fits_in_memory(train_config)
    return train_config.to_dict()


def train_name(config: dict, name: str | None, overwrite: bool, runs_dir: str | Path | None) -> str:
    """The run's checkpoint name, checked before the run starts (a refusal after training would cost the run)."""
    from .checkpoints import CheckpointExistsError, validate_name

    if not name:  # a default name no other visitor's run can take in the same second
        return f"{config.get('arch', 'run')}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
    name = validate_name(name)
    if not overwrite and saved_run_exists(name, runs_dir):
        raise CheckpointExistsError(f"a run named {name!r} exists already; choose another name, or allow replacing it")
    return name


def saved_run_exists(name: str, folder: str | Path | None = None) -> bool:
    """Whether a saved run holds this (sanitised) name, readable or not: saving would replace it."""
    from .checkpoints import runs_dir

    return (Path(folder or runs_dir()) / f"{name}.json").exists()


def train_outcome(result) -> tuple[str, str]:
    """The job status and message of a RunResult ("finished" and "target_reached" are done, with what happened)."""
    if result.status in ("finished", "target_reached"):
        message = result.message
        if not message:
            message = f"trained {result.steps} steps"
            if result.test_accuracy is not None:
                message += f", {result.test_accuracy:.2%} test accuracy"
        return DONE, message
    return (STOPPED if result.status == "stopped" else FAILED), result.message


def run_training(config, data, name: str, runs_dir: str | Path | None, overwrite: bool, reporter: Reporter,
                 extra: dict | None = None) -> dict:
    """fit() with a checkpoint after every scored epoch (marked partial until the run ends) and at the end."""
    from .checkpoints import save
    from .train import fit

    saved = {"partial": False, "problem": ""}

    def save_epoch(partial) -> None:
        try:
            save(partial, name, runs_dir, extra={**(extra or {}), "partial": True},
                 overwrite=overwrite or saved["partial"])
            saved["partial"] = True
        except (OSError, ValueError) as exc:  # the run goes on; the final save says what went wrong
            saved["problem"] = str(exc)

    result = fit(config, data, reporter, on_epoch_end=save_epoch)
    status, message = train_outcome(result)
    checkpoint = None
    if result.steps and result.model is not None:
        reporter.stage("saving")
        try:
            checkpoint = save(result, name, runs_dir, extra=extra, overwrite=overwrite or saved["partial"])
        except (OSError, ValueError) as exc:
            message += f" (the checkpoint could not be saved: {exc})"
    return {"status": status, "message": message, "checkpoint": checkpoint, "train_status": result.status,
            "steps": result.steps, "seconds": result.seconds, "test_accuracy": result.test_accuracy,
            "history": result.history, "device": result.device}


def work_train(spec, reporter: Reporter) -> dict:
    """One training run: MNIST from this process's cache, the checkpoint saved at each epoch end and at the end."""
    from .train import TrainConfig

    try:
        config = TrainConfig.from_dict(spec.config)
        reporter.stage("loading MNIST")
        data = device_data(config.device, config.val_size)
        name = spec.name or train_name(spec.config, None, False, spec.runs_dir)
        return run_training(config, data, name, spec.runs_dir, spec.overwrite, reporter)
    except Exception as exc:  # noqa: BLE001 - the job ends and says why; the worker takes the next job
        return _failed(exc)


# ---------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Kind:
    name: str
    label: str  # in messages: "you already have a training run running"
    page: str  # the page that shows it (the sidebar links to it)
    work: str  # "mnist_core.kinds:work_train": a top-level function(spec, reporter) -> dict
    prepare: Callable[[dict, object], dict]  # (config, HostLimits) -> the config to run; ValueError / JobRefused
    view: Callable[[dict], object]  # config -> an object with on_event(name, data) (and snapshot())
    runs: Callable[[dict], int] = lambda config: 1  # training runs the job holds (compare: arms x seeds)
    epoch: str = ""  # what one "epoch" is for this kind (MNIST_MAX_EPOCHS caps it)
    # (config, name, overwrite, runs_dir) -> the name to save under, checked at submit; None: the kind saves no named file
    settle_name: Callable[[dict, str | None, bool, str | Path | None], str] | None = None


KINDS: dict[str, Kind] = {
    "train": Kind("train", "training run", "pages/3_Train.py", "mnist_core.kinds:work_train", prepare_train,
                  TrainView, epoch="one pass over the training images", settle_name=train_name),
}


def kind(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown job kind {name!r}; the kinds are {', '.join(KINDS)}") from None


def work_function(kind_or_name: Kind | str) -> Callable:
    """The work function of a kind, imported from its dotted path (works in any process)."""
    import importlib

    path = (kind(kind_or_name) if isinstance(kind_or_name, str) else kind_or_name).work
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)
