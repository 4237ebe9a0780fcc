"""fit(): one training run, reporting through callbacks; cancellable; guarded against divergence.

The seed fixes the initial weights, the data order, the augmentation draws and dropout, so two runs
that differ in one setting differ only in that setting.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import Augment, DeviceData, TensorSplit, balanced_order, standardize
from .models import build_model, get_architecture, make_config
from .probes import ProbeRecord, Recorder, auto_interval

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta")
SCHEDULES = ("none", "step", "cosine", "onecycle")
DEFAULT_LR = {"sgd": 0.05, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3, "adagrad": 0.01, "adadelta": 1.0}


class ConfigError(ValueError):
    """A training setting that cannot work, said in the user's terms."""


@dataclass
class TrainConfig:
    arch: str = "cnn"
    model: dict = field(default_factory=dict)  # overrides of the architecture's config
    epochs: int = 1
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 1e-3  # peak learning rate when a schedule is used
    momentum: float = 0.9  # SGD and RMSprop only
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "none"
    step_size: int = 1  # epochs between decays, for the step schedule
    gamma: float = 0.1  # decay factor, for the step schedule
    label_smoothing: float = 0.0
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    rotation: float = 0.0  # augmentation: max rotation in degrees
    shift: float = 0.0  # augmentation: max shift in pixels
    val_size: int = 0  # training images held out for validation
    train_subset: int | None = None  # train on this many training images (class-balanced, the same for every seed)
    target_accuracy: float | None = None  # stop once test accuracy (0-1) reaches this, checked each epoch
    seed: int = 0
    device: str = "auto"
    max_batches: int | None = None  # stop after this many batches (smoke runs)
    max_seconds: float | None = None  # stop after this long (a host's per-run cap)
    init_checkpoint: str | None = None  # start from this checkpoint's weights (fine-tuning) instead of a seeded init
    drawings_share: float = 0.0  # share of each batch added from the user's saved drawings (0 = none)
    record: bool = True  # weight/gradient histograms and gradient flow, stored with the checkpoint
    record_every: int | None = None  # steps between snapshots; None = about 25 per epoch

    def validate(self, n_train: int = 60_000) -> None:
        get_architecture(self.arch)
        make_config(self.arch, self.model)
        checks = [
            (self.epochs >= 1, f"epochs must be at least 1 (got {self.epochs})"),
            (self.batch_size >= 1, f"batch size must be at least 1 (got {self.batch_size})"),
            (self.batch_size <= n_train - self.val_size,
             f"batch size {self.batch_size} is larger than the {n_train - self.val_size} training images"),
            (self.optimizer in OPTIMIZERS, f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}"),
            (self.schedule in SCHEDULES, f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}"),
            (math.isfinite(self.lr) and self.lr > 0, f"learning rate must be a positive number (got {self.lr})"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1) (got {self.momentum})"),
            (not self.nesterov or (self.optimizer == "sgd" and self.momentum > 0),
             "Nesterov momentum needs the sgd optimizer with momentum > 0"),
            (self.weight_decay >= 0, f"weight decay must be >= 0 (got {self.weight_decay})"),
            (self.step_size >= 1, f"step size must be at least 1 epoch (got {self.step_size})"),
            (0 < self.gamma <= 1, f"gamma must be in (0, 1] (got {self.gamma})"),
            (0 <= self.label_smoothing < 1, f"label smoothing must be in [0, 1) (got {self.label_smoothing})"),
            (self.grad_clip >= 0, f"gradient clipping must be >= 0 (got {self.grad_clip})"),
            (0 <= self.rotation <= 180, f"rotation must be between 0 and 180 degrees (got {self.rotation})"),
            (0 <= self.shift <= 14, f"shift must be between 0 and 14 pixels (got {self.shift})"),
            (0 <= self.val_size < n_train, f"validation size must be between 0 and {n_train - 1}"),
            (self.train_subset is None or 10 <= self.train_subset <= n_train - self.val_size,
             f"training subset must be between 10 and {n_train - self.val_size} images (got {self.train_subset})"),
            (self.train_subset is None or self.batch_size <= self.train_subset,
             f"batch size {self.batch_size} is larger than the {self.train_subset}-image training subset"),
            (self.target_accuracy is None or 0 < self.target_accuracy <= 1,
             f"target accuracy is a fraction in (0, 1] (got {self.target_accuracy})"),
            (self.max_batches is None or self.max_batches >= 1, "max batches must be at least 1"),
            (self.max_seconds is None or self.max_seconds > 0, "max seconds must be positive"),
            (self.record_every is None or self.record_every >= 1, "record every must be at least 1 step"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        self._validate_sources()

    def _validate_sources(self) -> None:
        from .checkpoints import CheckpointError, find  # checkpoints imports this module
        from .drawings import load_drawings

        if self.init_checkpoint:
            try:
                meta = find(self.init_checkpoint).meta
            except CheckpointError as exc:
                raise ConfigError(f"cannot start from checkpoint: {exc}") from None
            if meta["arch"] != self.arch:
                raise ConfigError(f"checkpoint {self.init_checkpoint!r} is a {meta['arch']} model; "
                                  f"choose architecture {meta['arch']} to start from it")
        if not 0 <= self.drawings_share < 1:
            raise ConfigError(f"drawings share must be in [0, 1) (got {self.drawings_share})")
        if self.drawings_share > 0 and not len(load_drawings()):
            raise ConfigError("drawings share is above 0 but there are no saved drawings; "
                              "save some on the Draw page first")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


@dataclass
class Event:
    kind: str  # "batch", "epoch", "done" or "error"
    data: dict


@dataclass
class RunResult:
    model: nn.Module
    config: TrainConfig
    status: str  # "finished", "stopped", "target_reached" or "failed"
    history: list[dict]  # one entry per completed epoch
    seconds: float
    device: str
    message: str = ""
    steps: int = 0
    probes: ProbeRecord | None = None  # what the recorder saw, when recording was on

    @property
    def test_accuracy(self) -> float | None:
        return self.history[-1]["test_accuracy"] if self.history else None


def training_split(config: TrainConfig, data: DeviceData) -> TensorSplit:
    """The images a run trains on: all of the training split, or its class-balanced subset."""
    if config.train_subset is None or config.train_subset >= len(data.train):
        return data.train
    return data.train.take(balanced_order(data.train.labels.cpu())[: config.train_subset])


def batches_per_epoch(n_images: int, batch_size: int) -> int:
    return math.ceil(n_images / batch_size)  # the last batch may be short


def planned_steps(config: TrainConfig, n_train: int) -> int:
    """The optimizer steps a run will take if nothing stops it early."""
    full = config.epochs * batches_per_epoch(min(n_train, config.train_subset or n_train), config.batch_size)
    return min(full, config.max_batches or full)


def seeded_model(config: TrainConfig, device: torch.device) -> nn.Module:
    """The run's starting point: the seeded initial weights, or a checkpoint's weights when fine-tuning."""
    if config.init_checkpoint:
        from .checkpoints import load  # checkpoints imports this module

        model, meta = load(config.init_checkpoint, expected_arch=config.arch, device=device)
        if config.model and make_config(config.arch, config.model) != make_config(config.arch, meta["model_config"]):
            raise ConfigError(f"checkpoint {config.init_checkpoint!r} has model settings {meta['model_config']}, "
                              f"not {config.model}")
        return model.train()
    torch.manual_seed(config.seed)
    return build_model(config.arch, config.model).to(device)


class DrawingBatches:
    """Adds a few of the user's saved drawings to every training batch (fine-tuning on drawings)."""

    def __init__(self, share: float, batch_size: int, device: torch.device, background: float):
        from .drawings import load_drawings  # drawings imports checkpoints, which imports this module

        drawn = load_drawings()
        self.images = standardize(drawn.pixels).unsqueeze(1).to(device)
        self.labels = torch.as_tensor(drawn.labels).to(device)
        self.per_batch = max(1, round(batch_size * share))
        self.background = background

    def mix(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator, augment: Augment):
        idx = torch.randint(len(self.labels), (self.per_batch,), generator=generator).to(self.images.device)
        extra = self.images.index_select(0, idx)
        if augment.active:
            extra = augment(extra, generator, self.background)
        return torch.cat([x, extra]), torch.cat([y, self.labels.index_select(0, idx)])


def make_optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    lr, wd = config.lr, config.weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, nesterov=config.nesterov, weight_decay=wd)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=config.momentum, weight_decay=wd)
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "adagrad": torch.optim.Adagrad,
           "adadelta": torch.optim.Adadelta}[config.optimizer]
    return cls(params, lr=lr, weight_decay=wd)


def make_scheduler(config: TrainConfig, optimizer, steps_per_epoch: int):
    """A per-step scheduler (stepped after every batch), or None."""
    total = config.epochs * steps_per_epoch
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, config.step_size * steps_per_epoch, config.gamma)
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total)
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=total,
                                                   cycle_momentum=config.optimizer in ("sgd", "rmsprop"))
    return None


@torch.no_grad()
def evaluate(model: nn.Module, split: TensorSplit, batch_size: int = 2000) -> dict:
    """Mean loss and accuracy of a model on a split, in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for x, y in split.batches(batch_size):
        logits = model(x)
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    model.train(was_training)
    return {"loss": loss_sum / len(split), "accuracy": correct / len(split)}


class _LastGood:
    """A copy of the weights from a step whose loss was finite, refreshed every few steps."""

    def __init__(self, model: nn.Module, every: int = 20):
        self.model, self.every = model, every
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.step = 0

    def offer(self, step: int) -> None:
        if step - self.step >= self.every:
            for k, v in self.model.state_dict().items():
                self.state[k].copy_(v)
            self.step = step

    def restore(self) -> None:
        self.model.load_state_dict(self.state)


def fit(config: TrainConfig, data: DeviceData | None = None, callbacks: tuple[Callable[[Event], None], ...] = (),
        stop: threading.Event | None = None, model: nn.Module | None = None) -> RunResult:
    """Train one model. Never raises for a failed run: the result says why it failed."""
    data = data or DeviceData(device=config.device, val_size=config.val_size)
    config.validate(len(data.train) + (len(data.val) if data.val else 0))
    device = data.device
    model = model if model is not None else seeded_model(config, device)
    model.to(device).train()
    # oneDNN's conv kernels run some nets faster on NHWC tensors on a CPU (see Architecture.channels_last).
    nhwc = device.type == "cpu" and get_architecture(config.arch).channels_last
    fmt = torch.channels_last if nhwc else torch.contiguous_format
    model.to(memory_format=fmt)

    # Separate generators so that, e.g., adding dropout or augmentation does not change the data order.
    order_gen = torch.Generator().manual_seed(config.seed)
    augment_gen = torch.Generator().manual_seed(config.seed + 2)
    torch.manual_seed(config.seed + 1)  # dropout and other in-model randomness
    train = training_split(config, data)
    augment = Augment(config.rotation, config.shift)
    drawings = (DrawingBatches(config.drawings_share, config.batch_size, device, train.background)
                if config.drawings_share > 0 else None)
    steps_per_epoch = batches_per_epoch(len(train), config.batch_size)
    optimizer = make_optimizer(config, model.parameters())
    scheduler = make_scheduler(config, optimizer, steps_per_epoch)
    last_good = _LastGood(model)
    recorder = Recorder(model, config.record_every or auto_interval(steps_per_epoch)) if config.record else None

    def emit(kind: str, **payload) -> None:
        for callback in callbacks:
            callback(Event(kind, payload))

    history: list[dict] = []
    status, message, step = "finished", "", 0
    start = time.perf_counter()
    window_start, window_images = start, 0
    try:
        for epoch in range(1, config.epochs + 1):
            seen, loss_sum, correct = 0, 0.0, 0
            for x, y in train.batches(config.batch_size, order_gen, augment, augment_gen):
                if drawings is not None:
                    x, y = drawings.mix(x, y, augment_gen, augment)
                if recorder is not None:
                    recorder.before_forward(step + 1)
                logits = model(x.contiguous(memory_format=fmt))
                loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
                loss_value = float(loss.detach())
                if not math.isfinite(loss_value):
                    last_good.restore()
                    status = "failed"
                    message = (f"training diverged at epoch {epoch}, step {step + 1}: the loss became {loss_value}. "
                               f"The learning rate ({config.lr:g}) is probably too high for {config.optimizer}; "
                               f"try it 10x lower. The last good weights (step {last_good.step}) were kept.")
                    break
                last_good.offer(step)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                lr = optimizer.param_groups[0]["lr"]
                if recorder is not None:
                    recorder.before_update(step + 1)
                optimizer.step()
                if recorder is not None:
                    recorder.after_update(step + 1)
                if scheduler is not None and step + 1 < config.epochs * steps_per_epoch:
                    scheduler.step()
                step += 1
                batch_correct = int((logits.argmax(1) == y).sum())
                seen += len(y)
                loss_sum += loss_value * len(y)
                correct += batch_correct
                window_images += len(y)
                now = time.perf_counter()
                emit("batch", epoch=epoch, step=step, steps_per_epoch=steps_per_epoch, loss=loss_value,
                     accuracy=batch_correct / len(y), lr=lr,
                     images_per_s=window_images / max(now - window_start, 1e-9), elapsed=now - start)
                if now - window_start > 2.0:  # images/s over the last couple of seconds, not since the start
                    window_start, window_images = now, 0
                if stop is not None and stop.is_set():
                    status, message = "stopped", f"stopped by request at epoch {epoch}, step {step}"
                    break
                if config.max_batches is not None and step >= config.max_batches:
                    status, message = "stopped", f"stopped after {step} batches (max_batches)"
                    break
                if config.max_seconds is not None and now - start >= config.max_seconds:
                    status, message = "stopped", f"stopped after {config.max_seconds:g} s (time cap)"
                    break
            if status == "failed":
                break
            if seen:
                record = {"epoch": epoch, "steps": step, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
                          "complete": seen == len(train)}
                test = evaluate(model, data.test)
                record.update(test_loss=test["loss"], test_accuracy=test["accuracy"])
                if data.val is not None:
                    val = evaluate(model, data.val)
                    record.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
                record["elapsed"] = time.perf_counter() - start
                history.append(record)
                emit("epoch", **record)
                if (status == "finished" and config.target_accuracy is not None
                        and test["accuracy"] >= config.target_accuracy):
                    status = "target_reached"
                    message = f"reached {test['accuracy']:.2%} test accuracy at epoch {epoch}"
            if status != "finished":
                break
    except Exception as exc:  # out of memory, a bad custom model... the caller gets a result, not a crash
        status, message = "failed", f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - start
    probes = recorder.close() if recorder is not None else None
    result = RunResult(model, config, status, history, seconds, str(device), message, step, probes)
    if status == "failed":
        emit("error", message=message)
    emit("done", status=status, message=message, seconds=seconds, test_accuracy=result.test_accuracy, steps=step)
    return result
