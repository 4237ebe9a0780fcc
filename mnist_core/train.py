"""fit(): one training run, reporting through a Reporter; cancellable; guarded against divergence.

The seed fixes the initial weights, the data order, the augmentation draws and dropout, so two runs
that differ in one setting differ only in that setting.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import fused
from .data import Augment, DeviceData, TensorSplit, balanced_order, standardize
from .fields import check as check_fields
from .fields import setting
from .models import FusingSequential, build_model, describe, get_architecture, make_config
from .probes import ProbeRecord, Recorder, auto_interval
from .reporter import NULL_REPORTER, Reporter

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta")
MOMENTUM_OPTIMIZERS = ("sgd", "rmsprop")  # the optimizers that take the momentum setting
SCHEDULES = ("none", "step", "cosine", "onecycle")
MAX_SEED = 2**32 - 1  # numpy's and most tools' seed range (torch takes more): a run should be reproducible anywhere
MEMORY_HEADROOM = 0.8  # a run may take at most this share of the memory the host has available
DEFAULT_LR = {"sgd": 0.05, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3, "adagrad": 0.01, "adadelta": 1.0}


class ConfigError(ValueError):
    """A training setting that cannot work, said in the user's terms."""


@dataclass
class TrainConfig:
    # Each setting's help, unit, range and choices sit next to it (mnist_core.fields): the Train and Compare
    # pages' widgets, the CLI's flags and validate() are generated from them.
    arch: str = setting("cnn", "The architecture (models.REGISTRY).", ui=False, cli=False)
    dataset: str = setting(
        "mnist",
        "The data set to train and test on: mnist, fashion-mnist or own:NAME for one you imported.",
        label="data set",
        ui=False,
    )
    model: dict = field(default_factory=dict)  # overrides of the architecture's config
    epochs: int = setting(1, "Full passes over the training images.", min=1, max=200)
    # No fixed maximum: validate() holds it to the training images there are (60,000, less validation).
    batch_size: int = setting(128, "Images per optimizer step.", min=1, step=32)
    optimizer: str = setting("adam", "The update rule; each has its usual learning rate.", choices=OPTIMIZERS)
    lr: float = setting(
        1e-3,
        "Peak learning rate when a schedule is used (try 0.001 for Adam, 0.05 for SGD).",
        label="learning rate",
        above=0,
    )
    momentum: float = setting(
        0.9,
        "For SGD and RMSprop only; the onecycle schedule cycles it between 0.85 and 0.95 instead.",
        min=0,
        below=1,
        step=0.05,
        applies={"optimizer": MOMENTUM_OPTIMIZERS},
    )
    nesterov: bool = setting(
        False, "Nesterov momentum: SGD with momentum above 0 only.", applies={"optimizer": ("sgd",)}
    )
    weight_decay: float = setting(
        0.0, "L2 penalty on the weights (decoupled for AdamW).", label="weight decay", min=0, max=1, step=1e-4
    )
    schedule: str = setting(
        "none",
        "step: x gamma every step size epochs; cosine: anneal to 0; onecycle: warm up, then anneal.",
        choices=SCHEDULES,
    )
    step_size: int = setting(
        1,
        "Epochs between decays, for the step schedule.",
        label="step size",
        unit="epochs",
        min=1,
        max=200,
        applies={"schedule": ("step",)},
    )
    gamma: float = setting(
        0.1, "Decay factor of the step schedule.", above=0, max=1, step=0.05, applies={"schedule": ("step",)}
    )
    label_smoothing: float = setting(
        0.0, "Share of each target spread over the other classes.", label="label smoothing", min=0, max=0.5, step=0.05
    )
    grad_clip: float = setting(
        0.0, "Largest gradient norm; 0 = off.", label="gradient clipping", min=0, max=100, step=0.5
    )
    rotation: float = setting(0.0, "Augmentation: largest random rotation.", unit="degrees", min=0, max=45, step=1.0)
    shift: float = setting(0.0, "Augmentation: largest random shift.", unit="pixels", min=0, max=6, step=0.5)
    val_size: int = setting(
        0,
        "Training images held out for validation.",
        label="validation size",
        unit="images",
        min=0,
        max=59_999,
        ui=False,
    )
    train_subset: int | None = setting(
        None,
        "Train on this many training images (class-balanced, the same for every seed).",
        label="training subset",
        unit="images",
        min=10,
        max=60_000,
        optional=True,
        step=1000,
    )
    target_accuracy: float | None = setting(
        None,
        "Stop once test accuracy (a fraction) reaches this, checked each epoch.",
        label="target accuracy",
        above=0,
        max=1,
        optional=True,
        ui=False,
    )
    seed: int = setting(0, "Fixes the initial weights and the data order: same seed, same run.", min=0, max=MAX_SEED)
    device: str = setting("auto", "auto, cpu, cuda or mps.", ui=False)
    max_batches: int | None = setting(
        None,
        "Stop after this many batches: a quick look before a long run.",
        label="max batches",
        title="Stop after N batches",
        min=1,
        max=10**7,
        optional=True,
    )
    max_seconds: float | None = setting(
        None,
        "Stop after this long (a host's per-run cap).",
        label="max seconds",
        unit="seconds",
        above=0,
        optional=True,
        ui=False,
    )
    init_checkpoint: str | None = setting(
        None,
        "Start from this checkpoint's weights (fine-tuning) instead of a seeded init.",
        label="start checkpoint",
        optional=True,
        ui=False,
    )
    drawings_share: float = setting(
        0.0,
        "Share of each batch added from the saved drawings (0 = none).",
        label="drawings share",
        min=0,
        below=1,
        ui=False,
    )
    record: bool = setting(
        True,
        "Weight and gradient histograms, gradient flow and dead units, saved with the checkpoint for the Inspect page.",
    )
    record_every: int | None = setting(
        None,
        "Steps between snapshots; auto (unset) = about 25 per epoch.",
        label="record every",
        unit="steps",
        min=1,
        max=10**6,
        optional=True,
        unset="auto",
    )

    def validate(self, n_train: int = 60_000) -> None:
        get_architecture(self.arch)
        make_config(self.arch, self.model)
        check_fields(self, ConfigError)  # each field's type and range, from its metadata
        # What one field's metadata cannot say: settings that depend on each other or on the data.
        checks = [
            (
                self.batch_size <= n_train - self.val_size,
                f"batch size {self.batch_size} is larger than the {n_train - self.val_size} training images",
            ),
            (
                not self.nesterov or (self.optimizer == "sgd" and self.momentum > 0),
                "Nesterov momentum needs the sgd optimizer with momentum > 0",
            ),
            (self.val_size < n_train, f"validation size must be between 0 and {n_train - 1}"),
            (
                self.train_subset is None or self.train_subset <= n_train - self.val_size,
                f"training subset must be between 10 and {n_train - self.val_size} images (got {self.train_subset})",
            ),
            (
                self.train_subset is None or self.batch_size <= self.train_subset,
                f"batch size {self.batch_size} is larger than the {self.train_subset}-image training subset",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        # The start checkpoint and the drawings are checked by mnist_core.starting: they are in storage, and
        # this module does not read storage (checkpoints and drawings import it).

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


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
    dataset: dict | None = None  # datasets.record() of the data it trained on

    @property
    def test_accuracy(self) -> float | None:
        """The test accuracy of the weights kept, or None when those weights were not scored (a stop, a failure)."""
        if not self.history or self.history[-1]["steps"] != self.steps or self.status == "failed":
            return None
        return self.history[-1]["test_accuracy"]


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


def training_memory_format(config: TrainConfig, device: torch.device) -> torch.memory_format:
    # oneDNN's conv kernels run some nets faster on NHWC tensors on a CPU (see Architecture.channels_last).
    nhwc = device.type == "cpu" and get_architecture(config.arch).channels_last
    return torch.channels_last if nhwc else torch.contiguous_format


def seeded_model(config: TrainConfig, device: torch.device) -> nn.Module:
    """The seeded initial weights (a fine-tune's checkpoint weights come from mnist_core.starting instead)."""
    torch.manual_seed(config.seed)
    return build_model(config.arch, config.model).to(device)


def memory_needed(config: TrainConfig) -> int:
    """Bytes a run needs at its peak, estimated from the model card: each layer's output for a whole
    batch, kept for the backward pass and matched by its gradient, plus weights, gradients and two
    optimizer buffers per weight (Adam's), plus the resident data set (70,000 images as bytes)."""
    card = describe(build_model(config.arch, config.model))
    per_image = sum(math.prod(layer.output_shape) for layer in card.layers)
    activations = 2 * config.batch_size * per_image * 4
    weights = 4 * card.params * 4
    return activations + weights + 70_000 * 28 * 28


def memory_available() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), in bytes; None where the host does not say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_fits_in_memory(config: TrainConfig, available: int | None = None) -> None:
    """Refuse, with the figures, a run this host cannot hold (before it starts, not when it is killed)."""
    available = memory_available() if available is None else available
    if available is None:
        return
    needed = memory_needed(config)
    if needed > MEMORY_HEADROOM * available:
        raise ConfigError(
            f"this run needs about {needed / 2**30:.1f} GB of memory (batch {config.batch_size} through "
            f"{config.arch}) and this host has {available / 2**30:.1f} GB free; lower the batch size "
            "or the layer widths"
        )


class DrawingBatches:
    """Adds a few of the user's saved drawings to every training batch (fine-tuning on drawings).

    drawings: anything with pixels (N, 28, 28, in 0-1) and labels (N,), e.g. a drawings.DrawingSet."""

    def __init__(self, drawings, share: float, batch_size: int, device: torch.device, background: float):
        self.images = standardize(drawings.pixels).unsqueeze(1).to(device)
        self.labels = torch.as_tensor(drawings.labels).to(device)
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
        params = list(params)
        # torch's fused SGD updates every parameter in one call: on a CPU a third of the for-loop's time (tiny_gap:
        # 0.12 against 0.32 ms a step); it runs on CPUs and CUDA GPUs only
        fused = bool(params) and all(
            isinstance(p, torch.Tensor) and p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params
        )
        return torch.optim.SGD(
            params, lr=lr, momentum=config.momentum, nesterov=config.nesterov, weight_decay=wd, fused=fused or None
        )
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=config.momentum, weight_decay=wd)
    cls = {
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
        "adagrad": torch.optim.Adagrad,
        "adadelta": torch.optim.Adadelta,
    }[config.optimizer]
    return cls(params, lr=lr, weight_decay=wd)


def make_scheduler(config: TrainConfig, optimizer, steps_per_epoch: int):
    """A per-step scheduler (stepped after every batch), or None."""
    total = config.epochs * steps_per_epoch
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, config.step_size * steps_per_epoch, config.gamma)
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total)
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, config.lr, total_steps=total, cycle_momentum=config.optimizer in MOMENTUM_OPTIMIZERS
        )
    return None


@torch.no_grad()
def evaluate(
    model: nn.Module, split: TensorSplit, batch_size: int = 2000, stop: threading.Event | None = None
) -> dict | None:
    """Mean loss and accuracy of a model on a split, in eval mode; None if stop was set before it ended."""
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for x, y in split.batches(batch_size):
        if stop is not None and stop.is_set():
            model.train(was_training)
            return None
        logits = model(x)
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    model.train(was_training)
    return {"loss": loss_sum / len(split), "accuracy": correct / len(split)}


class _BestWeights:
    """The weights with the lowest smoothed training loss so far, refreshed every few steps.

    "Finite" is not "good": a net at a huge learning rate can sit at a finite loss of 1e30, or at
    chance with BatchNorm hiding the blow-up, so a failed run falls back to its best weights, not its last.
    """

    def __init__(self, model: nn.Module, every: int = 20):
        self.model, self.every = model, every
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.step, self.loss, self._checked = 0, math.inf, 0

    def offer(self, step: int, smoothed_loss: float) -> None:
        if step - self._checked < self.every:
            return
        self._checked = step
        if smoothed_loss < self.loss:
            for k, v in self.model.state_dict().items():
                self.state[k].copy_(v)
            self.step, self.loss = step, smoothed_loss

    def restore(self) -> None:
        self.model.load_state_dict(self.state)


class _LearningWatch:
    """Tells a run that has stopped learning: at chance after a while, after its smoothed loss went far above
    where it started (a net that blew up and died sits at chance with a tame loss), or after it had learned
    something and lost it. A slow but healthy run (a tiny learning rate) is neither."""

    SMOOTHING = 0.9
    AFTER_STEPS = 50  # a healthy run has left chance well before this
    LOSS_FACTOR = 2.0  # smoothed loss at least this many times the starting loss

    def __init__(self, num_classes: int = 10):
        self.chance = 1.0 / num_classes
        self.loss = self.accuracy = self.start_loss = None
        self.peak_loss = self.peak_accuracy = 0.0

    def update(self, loss: float, accuracy: float) -> None:
        if self.loss is None:
            self.loss, self.accuracy, self.start_loss = loss, accuracy, loss
        else:
            self.loss = self.SMOOTHING * self.loss + (1 - self.SMOOTHING) * loss
            self.accuracy = self.SMOOTHING * self.accuracy + (1 - self.SMOOTHING) * accuracy
        self.peak_loss = max(self.peak_loss, self.loss)
        self.peak_accuracy = max(self.peak_accuracy, self.accuracy)

    def stopped_learning(self, step: int) -> bool:
        return (
            step >= self.AFTER_STEPS
            and self.accuracy < 2 * self.chance
            and (self.peak_loss > self.LOSS_FACTOR * self.start_loss or self.peak_accuracy >= 3 * self.chance)
        )

    def diagnosis(self) -> str:
        now = f"the accuracy is at chance ({self.accuracy:.0%}, smoothed)"
        if self.loss > self.LOSS_FACTOR * self.start_loss:
            return f"{now} and the loss ({self.loss:.3g}) is far above where it started ({self.start_loss:.3g})"
        if self.peak_loss > self.LOSS_FACTOR * self.start_loss:
            return (
                f"{now}: the loss shot up to {self.peak_loss:.3g} (it started at {self.start_loss:.3g}) and the "
                "network never recovered"
            )
        return f"{now}, after it had reached {self.peak_accuracy:.0%}: the updates undid what it had learned"


def likely_cause(config: TrainConfig) -> str:
    """The setting most likely to blame for a run that blew up, in the learner's terms."""
    usual = DEFAULT_LR[config.optimizer]
    if config.lr >= 10 * usual:
        return (
            f"The learning rate ({config.lr:g}) is probably too high for {config.optimizer} (its usual value "
            f"is {usual:g}); try it 10x lower."
        )
    if config.weight_decay >= 0.1:
        return (
            f"The weight decay ({config.weight_decay:g}) is very large: it pulls every weight to zero faster "
            "than the data can teach them; try 1e-4 or 0."
        )
    if config.momentum >= 0.99 and config.optimizer in MOMENTUM_OPTIMIZERS:
        return f"The momentum ({config.momentum:g}) is very close to 1; try 0.9."
    return (
        f"The learning rate ({config.lr:g}) may be too high for {config.optimizer}; try it 10x lower, "
        "or add gradient clipping."
    )


PROGRESS_EVERY_S = 0.25  # "progress" events at most this often (every batch would double the event traffic)


def fit(
    config: TrainConfig,
    data: DeviceData | None = None,
    reporter: Reporter = NULL_REPORTER,
    model: nn.Module | None = None,
    on_epoch_end: Callable[[RunResult], None] | None = None,
    drawings=None,
) -> RunResult:
    """Train one model. Never raises for a failed run: the result says why it failed.

    What the run starts from comes from the caller, never from storage: model (the seeded init when None;
    the checkpoint's model when config.init_checkpoint is set) and drawings (pixels and labels, when
    config.drawings_share > 0). mnist_core.starting.load_starting_point reads both for a config.

    Events on the reporter: "stage" (preparing, training, evaluating), "progress" (steps done of the
    planned steps), "batch" (loss, accuracy, lr, images/s of each step), "epoch" (each epoch's record),
    "error" (a failed run's reason) and "done" (status, message, seconds). reporter.stop ends the run
    within a batch, keeping what was learned. on_epoch_end(result so far) runs after each scored epoch
    (the job saves its checkpoint there, so a killed worker leaves the last completed epoch).
    """
    if data is None:
        from .datasets import load as load_dataset  # here: datasets reads storage, which imports this module

        data = DeviceData(load_dataset(config.dataset), device=config.device, val_size=config.val_size)
    config.validate(len(data.train) + (len(data.val) if data.val else 0))
    # A run whose settings name a start it was not given would train from a seeded init, or without the
    # drawings, and be saved as if it had not: refused, as a caller's mistake, before anything runs.
    if config.init_checkpoint and model is None:
        raise ConfigError(
            f"the run starts from checkpoint {config.init_checkpoint!r} but fit() was given no model; "
            "load it with mnist_core.starting.load_starting_point"
        )
    if config.drawings_share > 0 and (drawings is None or not len(drawings.labels)):
        raise ConfigError(
            "drawings share is above 0 but fit() was given no drawings; "
            "load them with mnist_core.starting.load_starting_point"
        )
    device = data.device
    stop = reporter.stop

    def emit(kind: str, **payload) -> None:
        reporter.event(kind, payload)

    history: list[dict] = []
    status, message, step = "finished", "", 0
    recorder = None
    start = time.perf_counter()
    # Everything that can fail is inside the try: a run that fails must end as a result, or the job that
    # runs it never frees its slot. (Reading the starting weights and the drawings can fail too: the caller
    # does it, under its own guard.)
    try:
        emit("stage", stage="preparing")
        model = model if model is not None else seeded_model(config, device)
        model.to(device).train()
        fmt = training_memory_format(config, device)
        model.to(memory_format=fmt)

        # Separate generators so that, e.g., adding dropout or augmentation does not change the data order.
        order_gen = torch.Generator().manual_seed(config.seed)
        augment_gen = torch.Generator().manual_seed(config.seed + 2)
        torch.manual_seed(config.seed + 1)  # dropout and other in-model randomness
        train = training_split(config, data)
        augment = Augment(config.rotation, config.shift)
        mixer = (
            DrawingBatches(drawings, config.drawings_share, config.batch_size, device, train.background)
            if config.drawings_share > 0
            else None
        )
        steps_per_epoch = batches_per_epoch(len(train), config.batch_size)
        total_steps = planned_steps(config, len(train))
        optimizer = make_optimizer(config, model.parameters())
        scheduler = make_scheduler(config, optimizer, steps_per_epoch)
        best = _BestWeights(model)
        watch = _LearningWatch()
        recorder = Recorder(model, config.record_every or auto_interval(steps_per_epoch)) if config.record else None
        if device.type == "cpu" and isinstance(model, FusingSequential):
            if not fused.loaded():  # say why the first step waits: the first run on a machine compiles them
                emit("stage", stage="loading the fused kernels (compiled on this machine's first run, about 20 s)")
                fused.available()
        emit("stage", stage="training")
        start = time.perf_counter()
        window_start, window_images, progress_mark = start, 0, 0.0

        def fail(reason: str) -> tuple[str, str]:
            best.restore()
            kept = f"the weights of step {best.step}" if best.step else "the starting weights"
            return "failed", f"{reason}. {likely_cause(config)} The best weights seen ({kept}) were kept."

        for epoch in range(1, config.epochs + 1):
            seen, loss_sum, correct = 0, 0.0, 0
            for x, y in train.batches(config.batch_size, order_gen, augment, augment_gen):
                if mixer is not None:
                    x, y = mixer.mix(x, y, augment_gen, augment)
                if recorder is not None:
                    recorder.before_forward(step + 1)
                logits = model(x.contiguous(memory_format=fmt))
                loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
                loss_value = float(loss.detach())
                if not math.isfinite(loss_value):
                    status, message = fail(
                        f"training diverged at epoch {epoch}, step {step + 1}: the loss became {loss_value}"
                    )
                    break
                batch_correct = int((logits.argmax(1) == y).sum())
                watch.update(loss_value, batch_correct / len(y))
                best.offer(step, watch.loss)
                if watch.stopped_learning(step):
                    status, message = fail(
                        f"training stopped learning at epoch {epoch}, step {step}: {watch.diagnosis()}"
                    )
                    break
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
                seen += len(y)
                loss_sum += loss_value * len(y)
                correct += batch_correct
                window_images += len(y)
                now = time.perf_counter()
                emit(
                    "batch",
                    epoch=epoch,
                    step=step,
                    steps_per_epoch=steps_per_epoch,
                    loss=loss_value,
                    accuracy=batch_correct / len(y),
                    lr=lr,
                    images_per_s=window_images / max(now - window_start, 1e-9),
                    elapsed=now - start,
                )
                if now - progress_mark >= PROGRESS_EVERY_S or step == total_steps:
                    reporter.progress(step, total_steps)
                    progress_mark = now
                if now - window_start > 2.0:  # images/s over the last couple of seconds, not since the start
                    window_start, window_images = now, 0
                if stop.is_set():
                    status, message = "stopped", f"stopped by request at epoch {epoch}, step {step}"
                    break
                if config.max_batches is not None and step >= config.max_batches:
                    status, message = "capped", f"reached its {config.max_batches}-batch cap"
                    break
                if config.max_seconds is not None and now - start >= config.max_seconds:
                    status, message = "stopped", f"stopped after {config.max_seconds:g} s (time cap)"
                    break
            if status == "failed":
                break
            if status == "stopped" and stop.is_set():
                # A stop by request ends now: the full test pass would keep the learner waiting many
                # seconds more (24 s on a busy 2-core box); the weights are kept unscored, as Transfer does.
                message += " (not scored on the test set: the Inspect page scores it)"
                break
            if seen:
                record = {
                    "epoch": epoch,
                    "steps": step,
                    "train_loss": loss_sum / seen,
                    "train_accuracy": correct / seen,
                    "complete": seen == len(train),
                }
                emit("stage", stage="evaluating")
                test = evaluate(model, data.test, stop=stop)
                if test is None:  # Stop pressed while scoring: end now, the weights unscored
                    status, message = (
                        "stopped",
                        (
                            f"stopped by request at epoch {epoch}, step {step}, while scoring "
                            "on the test set (not scored: the Inspect page scores it)"
                        ),
                    )
                    break
                record.update(test_loss=test["loss"], test_accuracy=test["accuracy"])
                if data.val is not None:
                    val = evaluate(model, data.val, stop=stop)
                    if val is None:
                        status, message = (
                            "stopped",
                            (f"stopped by request at epoch {epoch}, step {step}, while scoring on the validation set"),
                        )
                        break
                    record.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
                record["elapsed"] = time.perf_counter() - start
                history.append(record)
                emit("epoch", **record)
                if on_epoch_end is not None:
                    on_epoch_end(
                        RunResult(
                            model,
                            config,
                            "running",
                            list(history),
                            time.perf_counter() - start,
                            str(device),
                            f"epoch {epoch} of {config.epochs} done",
                            step,
                            dataset=data.mnist.record(),
                        )
                    )
                if (
                    status == "finished"
                    and config.target_accuracy is not None
                    and test["accuracy"] >= config.target_accuracy
                ):
                    status = "target_reached"
                    message = f"reached {test['accuracy']:.2%} test accuracy at epoch {epoch}"
                if status == "finished":
                    emit("stage", stage="training")
            if status != "finished":
                break
    except Exception as exc:  # out of memory, weights that do not load... the caller gets a result, not a crash
        status, message = "failed", f"{type(exc).__name__}: {exc}"
        model = model if isinstance(model, nn.Module) else None
    if status == "capped":  # a run that did all it was asked to do finished; it was not stopped
        status = "finished"
    seconds = time.perf_counter() - start
    probes = recorder.close() if recorder is not None else None
    result = RunResult(model, config, status, history, seconds, str(device), message, step, probes, data.mnist.record())
    if status == "failed":
        emit("error", message=message)
    emit("done", status=status, message=message, seconds=seconds, test_accuracy=result.test_accuracy, steps=step)
    return result
