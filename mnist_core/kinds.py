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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .reporter import DONE, FAILED, STOPPED, Reporter

SMOOTHING = 0.9  # exponential smoothing of the per-batch loss and accuracy curves
RATE_SMOOTHING = 0.8  # exponential smoothing of the step rate behind the ETA, updated about once a second
MAX_CURVE_POINTS = 2000  # per-batch points kept for the live curve; older ones are thinned


def refuse(message: str, limit: str) -> Exception:
    """The runner's refusal (a host limit), built lazily: the runner imports this module."""
    from .runner import JobRefused

    return JobRefused(message, limit=limit)


def epoch_cap(limits, asked: int, what: str) -> None:
    """Refuse work over MNIST_MAX_EPOCHS, saying what an epoch is for this kind."""
    cap = getattr(limits, "max_epochs", None)
    if cap is not None and asked > cap:
        raise refuse(
            f"this host allows at most {cap} epochs per run (MNIST_MAX_EPOCHS; {what}); you asked for {asked}",
            "max_epochs",
        )


def seconds_cap(limits, asked: float | None) -> float | None:
    """A run's own seconds cap under the host's MNIST_MAX_RUN_SECONDS (the run then ends cleanly, scored)."""
    cap = getattr(limits, "max_run_seconds", None)
    return asked if cap is None else min(asked or cap, cap)


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


def device_data(device: str = "auto", val_size: int = 0, dataset: str = "mnist"):
    """A data set resident on a device, loaded once per process (and per validation split and version)."""
    from .data import DeviceData
    from .datasets import load, version

    # By folder and version, not by key: two visitors' "own:cats" are two folders, and a set imported
    # again under the same name is a new version.
    key = (device, val_size, version(dataset))
    with _cache_lock:
        if key not in _device_data:
            _device_data[key] = DeviceData(load(dataset), device=device, val_size=val_size)
        return _device_data[key]


def train_size(dataset: str) -> int:
    """The training images of a data set (DataError names a data set that is not there)."""
    from .datasets import info

    return info(dataset).train_size


def _failed(exc: Exception) -> dict:
    return {"status": FAILED, "message": f"{type(exc).__name__}: {exc}"}


# ---------------------------------------------------------------- train


class TrainView:
    """A training run as the Train page draws it: smoothed batch curves, epoch records, a steady ETA."""

    def __init__(self, config: dict):
        from .train import TrainConfig, planned_steps

        train_config = TrainConfig.from_dict(config)
        self.total_steps = planned_steps(train_config, train_size(train_config.dataset) - train_config.val_size)
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

    def snapshot(self) -> TrainView:
        copied = copy.copy(self)
        copied.batch_curve, copied.epochs = list(self.batch_curve), list(self.epochs)
        return copied

    def on_event(self, kind: str, d: dict) -> None:
        if kind == "batch":
            last = self.batch_curve[-1] if self.batch_curve else {"loss": d["loss"], "accuracy": d["accuracy"]}
            self.batch_curve.append(
                {
                    "step": d["step"],
                    "loss": SMOOTHING * last["loss"] + (1 - SMOOTHING) * d["loss"],
                    "raw_loss": d["loss"],
                    "raw_accuracy": d["accuracy"],
                    "accuracy": SMOOTHING * last["accuracy"] + (1 - SMOOTHING) * d["accuracy"],
                }
            )
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
        self.steps_per_s = (
            rate if not self.steps_per_s else RATE_SMOOTHING * self.steps_per_s + (1 - RATE_SMOOTHING) * rate
        )
        self._rate_mark = (elapsed, step)


def prepare_train(config: dict, limits) -> dict:
    """A training config as this host runs it: every setting checked, refused over the epoch cap,
    time-capped when the host has a per-run cap (the run then ends cleanly and is scored)."""
    from .starting import check_starting_point
    from .train import ConfigError, TrainConfig, check_fits_in_memory

    train_config = TrainConfig(**known_fields(TrainConfig, config, ConfigError, "training"))
    epoch_cap(limits, train_config.epochs, "an epoch is one pass over the training images")
    train_config = dataclasses.replace(train_config, max_seconds=seconds_cap(limits, train_config.max_seconds))
    train_config.validate(train_size(train_config.dataset))
    check_starting_point(train_config)
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


def run_training(
    config, data, name: str, runs_dir: str | Path | None, overwrite: bool, reporter: Reporter, extra: dict | None = None
) -> dict:
    """fit() with a checkpoint after every scored epoch (marked partial until the run ends) and at the end.

    Raises (ConfigError, CheckpointError) when the start checkpoint or the drawings cannot be read."""
    from .checkpoints import save
    from .starting import load_starting_point
    from .train import fit

    start = load_starting_point(config, data.device)

    saved = {"partial": False, "problem": ""}

    def save_epoch(partial) -> None:
        try:
            save(
                partial,
                name,
                runs_dir,
                extra={**(extra or {}), "partial": True},
                overwrite=overwrite or saved["partial"],
            )
            saved["partial"] = True
        except (OSError, ValueError) as exc:  # the run goes on; the final save says what went wrong
            saved["problem"] = str(exc)

    result = fit(config, data, reporter, model=start.model, drawings=start.drawings, on_epoch_end=save_epoch)
    status, message = train_outcome(result)
    checkpoint = None
    if result.steps and result.model is not None:
        reporter.stage("saving")
        try:
            checkpoint = save(result, name, runs_dir, extra=extra, overwrite=overwrite or saved["partial"])
        except (OSError, ValueError) as exc:
            message += f" (the checkpoint could not be saved: {exc})"
    return {
        "status": status,
        "message": message,
        "checkpoint": checkpoint,
        "train_status": result.status,
        "steps": result.steps,
        "seconds": result.seconds,
        "test_accuracy": result.test_accuracy,
        "history": result.history,
        "device": result.device,
    }


def work_train(spec, reporter: Reporter) -> dict:
    """One training run: MNIST from this process's cache, the checkpoint saved at each epoch end and at the end."""
    from .datasets import info as dataset_info
    from .train import TrainConfig

    try:
        config = TrainConfig.from_dict(spec.config)
        reporter.stage(f"loading {dataset_info(config.dataset).title}")  # "loading MNIST", not the key "mnist"
        data = device_data(config.device, config.val_size, config.dataset)
        name = spec.name or train_name(spec.config, None, False, spec.runs_dir)
        return run_training(config, data, name, spec.runs_dir, spec.overwrite, reporter)
    except Exception as exc:  # noqa: BLE001 - the job ends and says why; the worker takes the next job
        return _failed(exc)


# ---------------------------------------------------------------- compare

EPOCH_OF_A_RUN = "each run's epochs count, one pass over the training images each"


def _compare_plan(config: dict, name: str = "check"):
    from .compare import Arm, plan
    from .train import TrainConfig

    base = TrainConfig.from_dict(config["base"])
    return plan(base, [Arm(**a) for a in config["arms"]], list(config["seeds"]), name)


def prepare_compare(config: dict, limits) -> dict:
    """{"base": a training config, "dimension": what varies, "values": its values (or None for the usual
    ones), "options": {"lrs", "rate", "rotation", "shift"}, "seeds": [...], "parallel": 1}: every run checked."""
    from .compare import DIMENSIONS, CompareError, build_arms
    from .train import ConfigError, TrainConfig

    if not isinstance(config, dict):
        raise CompareError("a comparison config is a mapping of settings")
    unknown = sorted(set(config) - {"base", "dimension", "values", "options", "seeds", "parallel", "arms"})
    if unknown:
        raise CompareError(
            f"unknown comparison setting {unknown[0]!r}; the settings are base, dimension, values, "
            "options, seeds, parallel"
        )
    try:
        base = TrainConfig(**known_fields(TrainConfig, dict(config.get("base") or {}), ConfigError, "training"))
    except ConfigError as exc:
        raise CompareError(f"base setup: {exc}") from None
    epoch_cap(limits, base.epochs, EPOCH_OF_A_RUN)
    base = dataclasses.replace(base, max_seconds=seconds_cap(limits, base.max_seconds))
    dimension = config.get("dimension", "optimizer")
    if dimension not in DIMENSIONS:
        raise CompareError(f"unknown dimension {dimension!r}; choose one of {', '.join(DIMENSIONS)}")
    seeds = config.get("seeds") or [0]
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in seeds):
        raise CompareError(f"seeds are whole numbers (got {seeds})")
    parallel = config.get("parallel", 1)
    if not isinstance(parallel, int) or parallel < 1:
        raise CompareError(f"parallel runs must be at least 1 (got {parallel})")
    if getattr(limits, "max_parallel", None) is not None:  # capped, not refused: the runs are the same, only slower
        parallel = min(parallel, limits.max_parallel)
    arms = build_arms(base, dimension, config.get("values"), **(config.get("options") or {}))
    prepared = {
        "base": base.to_dict(),
        "dimension": dimension,
        "values": config.get("values"),
        "options": dict(config.get("options") or {}),
        "seeds": list(seeds),
        "parallel": parallel,
        "arms": [dataclasses.asdict(a) for a in arms],
    }
    _compare_plan(prepared)  # every run's settings, shapes and memory, before any starts
    return prepared


def compare_runs(config: dict) -> int:
    return len(config["arms"]) * len(config["seeds"])


def compare_name(config: dict, name: str | None, overwrite: bool, runs_dir: str | Path | None) -> str:
    """The comparison's name (its runs are saved as <name>-<arm>-s<seed>), refused when it would replace
    saved runs unless overwrite."""
    from .compare import CompareError, default_name, existing_runs

    name = name or default_name(config["dimension"])
    specs = _compare_plan(config, name)
    taken = [] if overwrite else existing_runs(specs, Path(runs_dir) if runs_dir else None)
    if taken:
        raise CompareError(
            f"saved runs named {', '.join(taken[:3])}{' ...' if len(taken) > 3 else ''} exist "
            "already; choose another comparison name, or allow replacing them"
        )
    return name


class RunView(TrainView):
    """One run of a comparison: a training view plus its status (queued, running, then the run's own end:
    finished, stopped, target_reached or failed), message and checkpoint."""

    def __init__(self, config: dict):
        super().__init__(config)
        self.status, self.message, self.checkpoint = "queued", "", None


class CompareView:
    """A comparison as the Compare page draws it: per run (compare.RunState: spec, job = a RunView, params)."""

    def __init__(self, config: dict):
        from .compare import RunState, count_params

        self.dimension = config["dimension"]
        self.runs = [
            RunState(s, RunView(s.config.to_dict()), count_params(s.config.arch, s.config.model))
            for s in _compare_plan(config)
        ]

    def snapshot(self) -> CompareView:
        copied = copy.copy(self)
        copied.runs = [dataclasses.replace(r, job=r.job.snapshot()) for r in self.runs]
        return copied

    def on_event(self, kind: str, d: dict) -> None:
        if kind == "run":
            job = self.runs[d["index"]].job
            if job.status == "queued":
                job.status = "running"
            job.on_event(d["name"], d["data"])
        elif kind == "run_end":
            job = self.runs[d["index"]].job
            job.status, job.message, job.checkpoint = d["status"], d["message"], d.get("checkpoint")
            job.seconds = d.get("seconds") or job.seconds
            job.warmup_seconds = d.get("warmup", job.warmup_seconds)
            job.stage = "done"


def work_compare(spec, reporter: Reporter) -> dict:
    """Every (arm, seed) run, each saved as <name>-<arm>-s<seed>; on Ray they spread over the cluster."""
    from .compare import run_comparison

    try:
        name = spec.name or compare_name(spec.config, None, False, spec.runs_dir)
        specs = _compare_plan(spec.config, name)
        reporter.stage(f"{len(specs)} runs")
        outcomes = run_comparison(
            specs,
            lambda c: device_data(c.device, dataset=c.dataset),
            reporter,
            spec.runs_dir,
            spec.overwrite,
            spec.config.get("parallel", 1),
        )
    except Exception as exc:  # noqa: BLE001
        return _failed(exc)
    ended = [o["status"] for o in outcomes]
    finished = sum(s in ("finished", "target_reached") for s in ended)
    message = f"{finished} of {len(outcomes)} runs finished"
    if "stopped" in ended:
        message += f", {ended.count('stopped')} stopped"
    if "failed" in ended:
        message += f", {ended.count('failed')} failed"
    status = STOPPED if reporter.stopping or "stopped" in ended else DONE
    if ended.count("failed") == len(ended):
        status = FAILED
        message += f": {outcomes[0]['message']}"
    return {
        "status": status,
        "message": message,
        "name": name,
        "runs": [{"arm": s.arm, "seed": s.seed, "name": s.name, **o} for s, o in zip(specs, outcomes)],
    }


# ---------------------------------------------------------------- gan

GAN_EPOCH = "an epoch is one pass of the GAN over the 60,000 training digits"


def _gan_config(config: dict):
    from .gan import GanConfig, GanConfigError

    values = dict(config)
    values.pop("judge", None)
    return GanConfig(**known_fields(GanConfig, values, GanConfigError, "GAN"))


def prepare_gan(config: dict, limits) -> dict:
    """GanConfig's fields, plus "judge": the classifier that scores the samples (a checkpoint name; absent:
    the most accurate shipped one; None: no scoring)."""
    from .checkpoints import find
    from .datasets import check_classes
    from .datasets import info as dataset_info
    from .gan import CLASSES, GanConfigError

    gan_config = _gan_config(config)
    epoch_cap(limits, gan_config.epochs, GAN_EPOCH)
    gan_config = dataclasses.replace(gan_config, max_seconds=seconds_cap(limits, gan_config.max_seconds))
    gan_config.validate()
    data = dataset_info(gan_config.dataset)  # DataError (a ValueError) names a data set that is not there
    if len(data.class_names) != CLASSES:
        raise GanConfigError(
            f"the conditional GAN draws {CLASSES} classes, one row each; {data.title} has {len(data.class_names)}: "
            f"choose a data set of {CLASSES} classes (MNIST, Fashion-MNIST)"
        )
    prepared = dataclasses.asdict(gan_config)
    if "judge" in config:
        prepared["judge"] = config["judge"]
        if config["judge"] is not None:
            check_classes(find(config["judge"]).meta, data)  # CheckpointError names a judge that is not there
    return prepared


def gan_name(config: dict, name: str | None, overwrite: bool, runs_dir: str | Path | None) -> str:
    from .checkpoints import CheckpointExistsError
    from .gan import default_run_name, gan_exists, validate_gan_name

    name = validate_gan_name(name or default_run_name())
    if not overwrite and gan_exists(name):
        raise CheckpointExistsError(
            f"a GAN run named {name!r} already exists; choose another name or confirm that it should be replaced"
        )
    return name


class GanView:
    """A GAN run as the GAN page draws it: decimated losses, epochs' quality figures, the latest grid."""

    def __init__(self, config: dict):
        from .gan import planned_steps

        self.config = _gan_config(config)
        self.total_steps = planned_steps(self.config)
        self.stage, self.step, self.grid = "starting", 0, None
        self.steps: list[dict] = []
        self.epochs: list[dict] = []

    def snapshot(self) -> GanView:
        copied = copy.copy(self)
        copied.steps, copied.epochs = list(self.steps), list(self.epochs)
        return copied

    def on_event(self, kind: str, data: dict) -> None:
        if kind == "stage":
            self.stage = data["stage"]
        elif kind == "step":
            self.step = data["step"]
            if data["step"] % 5 == 1:
                self.steps.append(data)
        elif kind == "epoch":
            self.grid = data["grid"]
            self.epochs.append({k: v for k, v in data.items() if k != "grid"})


_judges: dict[tuple, object] = {}  # (weights file, data set version) -> judge


def gan_judge(name: str | None = None, dataset: str = "mnist"):
    """The classifier that scores GAN samples of a data set, built once per process (by default the most accurate
    shipped one of the data set's classes)."""
    from .checkpoints import find, load
    from .datasets import check_classes, version
    from .datasets import load as load_dataset
    from .gan import Judge
    from .gan_cli import best_shipped_classifier

    name = name or best_shipped_classifier(dataset)
    info = find(name)
    data = load_dataset(dataset)
    check_classes(info.meta, data)
    # By file, not name: two visitors' runs may share a name (hosted mode); and by data set: its real images
    # are the judge's yardstick.
    key = (str(info.weights_path), version(dataset))
    with _cache_lock:
        if key not in _judges:
            _judges[key] = Judge(load(name)[0], data)
        return _judges[key]


def work_gan(spec, reporter: Reporter) -> dict:
    """A GAN run, its judge loading beside the first batches; saved where the GAN page finds it."""
    from .datasets import load as load_dataset
    from .gan import BackgroundJudge, default_run_name, save_gan_run, train_gan

    try:
        config = _gan_config(spec.config)
        name = spec.name or default_run_name()
        mnist = load_dataset(config.dataset)
        judge = None
        if spec.config.get("judge", "") is not None:
            judge = BackgroundJudge(
                lambda: gan_judge(spec.config.get("judge"), config.dataset),
                reporter.stop,
                on_wait=lambda: reporter.stage(
                    "waiting for the judge (the classifier that scores the samples) to load"
                ),
            )
        result = train_gan(config, mnist, judge, reporter)
        saved, note = None, ""
        if result.grids:
            reporter.stage("saving")
            saved, note = save_gan_run(result, name, judge.loaded if judge is not None else None, spec.overwrite)
    except Exception as exc:  # noqa: BLE001
        return _failed(exc)
    message = f"{result.message} {note}".strip()
    capped = (
        config.max_batches is not None
        and not reporter.stopping
        and result.message.startswith(f"stopped after {config.max_batches} batches")
    )
    status = {"finished": DONE, "failed": FAILED}.get(result.status, DONE if capped else STOPPED)
    if status == DONE and not message:
        message = f"trained {len(result.grids)} epoch(s)"
    return {
        "status": status,
        "message": message,
        "saved": saved,
        "gan_status": result.status,
        "epochs": result.epochs,
        "seconds": result.seconds,
    }


# ---------------------------------------------------------------- transfer

TRANSFER_EPOCH = "an epoch is 60,000 digits shown to an arm: steps x batch size / 60,000"


def _transfer_config(config: dict):
    from .transfer import TransferConfig, TransferError

    values = known_fields(TransferConfig, config, TransferError, "transfer")
    if "arms" in values:
        values["arms"] = tuple(values["arms"])
    return TransferConfig(**values)


def prepare_transfer(config: dict, limits) -> dict:
    import math

    from .datasets import info as dataset_info

    transfer_config = _transfer_config(config)
    transfer_config.validate()
    dataset_info(transfer_config.dataset)  # DataError (a ValueError) names a data set that is not there
    epoch_cap(limits, math.ceil(transfer_config.steps * transfer_config.batch_size / 60_000), TRANSFER_EPOCH)
    if not getattr(limits, "downloads", True) and transfer_config.backbone not in ("fashion_cnn", "efficientnet_lite0"):
        # the work would download weights missing from the torch hub cache: refused here, before any download
        from .transfer import BACKBONES, BackboneUnavailable, _torchvision_parts, hub_weights_path

        label = BACKBONES[transfer_config.backbone].label
        try:
            path = hub_weights_path(_torchvision_parts(transfer_config.backbone)[1].url)
        except BackboneUnavailable as exc:  # no torchvision: its message says what to use instead
            raise refuse(str(exc), "downloads") from None
        if not path.exists():
            raise refuse(
                f"downloads are off on this host (MNIST_HOSTED=1) and {label}'s ImageNet weights are not "
                f"in the torch hub cache ({path}); choose the Fashion-MNIST CNN or EfficientNet-Lite0",
                "downloads",
            )
    return {**dataclasses.asdict(transfer_config), "arms": list(transfer_config.arms)}


class TransferView:
    """A transfer run as the Transfer page draws it: each arm's latest figures (transfer.ArmResult) by arm."""

    def __init__(self, config: dict):
        self.config = _transfer_config(config)
        self.stage, self.fraction = "starting", 0.0
        self.results: dict = {}

    def snapshot(self) -> TransferView:
        copied = copy.copy(self)
        copied.results = dict(self.results)
        return copied

    def on_event(self, kind: str, data: dict) -> None:
        from .transfer import arm_result

        if kind == "stage":
            self.stage = data["stage"]
        elif kind == "progress" and data["total"]:
            self.fraction = data["done"] / data["total"]
        elif kind == "arm":
            self.results[data["arm"]] = arm_result(data["result"])


_backbones: dict[str, object] = {}


def backbone(name: str):
    """A pretrained backbone, loaded once per process."""
    from .transfer import load_backbone

    with _cache_lock:
        if name not in _backbones:
            _backbones[name] = load_backbone(name)
        return _backbones[name]


def work_transfer(spec, reporter: Reporter) -> dict:
    from .datasets import load as load_dataset
    from .transfer import run_transfer

    try:
        config = _transfer_config(spec.config)
        reporter.stage(f"loading the {config.backbone} backbone")
        results = run_transfer(
            config,
            load_dataset(config.dataset),
            backbone(config.backbone) if config.arms != ("scratch",) else None,
            reporter,
        )
    except Exception as exc:  # noqa: BLE001 - a backbone that cannot load, a device that is not there...
        return _failed(exc)
    stopped = [r.stopped for r in results if r.stopped]
    scored = ", ".join(f"{r.arm} {r.test_accuracy:.2%}" for r in results if r.test_accuracy is not None)
    message = stopped[0] if stopped else f"test accuracy: {scored}"
    return {
        "status": STOPPED if stopped or reporter.stopping else DONE,
        "message": message,
        "results": [dataclasses.asdict(r) for r in results],
    }


# ---------------------------------------------------------------- embed (a map)

EMBED_EPOCH = "an epoch is 10,000 digits mapped"


def _embed_spec(config: dict):
    from .embed import EmbeddingError, EmbedSpec

    return EmbedSpec(**known_fields(EmbedSpec, config, EmbeddingError, "map"))


def prepare_embed(config: dict, limits) -> dict:
    import math

    from .checkpoints import find
    from .datasets import check_classes
    from .datasets import info as dataset_info
    from .embed import EmbeddingError

    spec = _embed_spec(config)
    spec.validate()
    cap = getattr(limits, "max_map_points", None)
    if cap is not None and spec.points > cap:
        raise refuse(
            f"this host maps at most {cap:,} digits at once (MNIST_MAX_MAP_POINTS); you asked for "
            f"{spec.points:,}: choose {cap:,} or fewer",
            "max_map_points",
        )
    epoch_cap(limits, math.ceil(spec.points / 10_000), EMBED_EPOCH)
    data = dataset_info(spec.dataset)  # DataError (a ValueError) names a data set that is not there
    if spec.points > data.train_size + data.test_size:
        raise EmbeddingError(
            f"{data.title} has {data.train_size + data.test_size:,} images; map at most that many, not {spec.points:,}"
        )
    if spec.source != "pixels":
        check_classes(find(spec.source).meta, data)  # CheckpointError names a source that is not there
    return dataclasses.asdict(spec)


class ProgressView:
    """What a kind with no curves shows while it runs: its stage and the fraction done."""

    def __init__(self, config: dict):
        self.stage, self.fraction = "starting", 0.0

    def snapshot(self) -> ProgressView:
        return copy.copy(self)

    def on_event(self, kind: str, data: dict) -> None:
        if kind == "stage":
            self.stage = data["stage"]
        elif kind == "progress" and data["total"]:
            self.fraction = data["done"] / data["total"]


def work_embed(spec, reporter: Reporter) -> dict:
    """One map, saved in the map cache (under the key the Embeddings page looks for) and returned."""
    from .checkpoints import load
    from .datasets import load as load_dataset
    from .embed import EmbedStopped, cache_key, compute, save_cached, source_version

    try:
        embed_spec = _embed_spec(spec.config)
        reporter.stage("loading")
        model = None if embed_spec.source == "pixels" else load(embed_spec.source)[0]
        key = cache_key(embed_spec, source_version(embed_spec.source))
        result = compute(embed_spec, load_dataset(embed_spec.dataset), model, reporter)
        save_cached(result, key)
    except EmbedStopped as exc:
        return {"status": STOPPED, "message": f"{exc}; nothing was saved"}
    except Exception as exc:  # noqa: BLE001
        return _failed(exc)
    return {
        "status": DONE,
        "message": f"{embed_spec.method} of {embed_spec.points:,} digits in {result.seconds:.1f} s",
        "key": key,
        "coords": result.coords,
        "indices": result.indices,
        "seconds": result.seconds,
        "explained_variance": result.explained_variance,
    }


# ---------------------------------------------------------------- scratch (the Under-the-hood engine)

_arrays: dict[str, object] = {}


def _scratch_configs(config: dict):
    from .scratch.net import NetConfig, ScratchError, TrainSettings

    if not isinstance(config, dict) or set(config) - {"net", "train"}:
        raise ScratchError('a scratch config is {"net": NetConfig settings, "train": TrainSettings settings}')
    net = NetConfig(**known_fields(NetConfig, dict(config.get("net") or {}), ScratchError, "net"))
    settings = TrainSettings(**known_fields(TrainSettings, dict(config.get("train") or {}), ScratchError, "training"))
    return net, settings


def prepare_scratch(config: dict, limits) -> dict:
    net, settings = _scratch_configs(config)
    net.validate()
    settings.validate()
    epoch_cap(limits, settings.epochs, "one pass over the training images")
    return {"net": {**dataclasses.asdict(net), "widths": list(net.widths)}, "train": dataclasses.asdict(settings)}


class ScratchView:
    """The from-scratch engine's run: its loss curve (every reported batch) and epoch records."""

    def __init__(self, config: dict):
        self.stage, self.fraction = "starting", 0.0
        self.curve: list[dict] = []
        self.epochs: list[dict] = []

    def snapshot(self) -> ScratchView:
        copied = copy.copy(self)
        copied.curve, copied.epochs = list(self.curve), list(self.epochs)
        return copied

    def on_event(self, kind: str, data: dict) -> None:
        if kind == "batch":
            self.curve.append(data)
        elif kind == "epoch":
            self.epochs.append(data)
        elif kind == "stage":
            self.stage = data["stage"]
        elif kind == "progress" and data["total"]:
            self.fraction = data["done"] / data["total"]


def work_scratch(spec, reporter: Reporter) -> dict:
    """Train the NumPy engine's net from its seeded start; returns the trained net (picklable NumPy)."""
    from .scratch.net import Net, load_arrays, train

    try:
        net_config, settings = _scratch_configs(spec.config)
        with _cache_lock:
            if net_config.dtype not in _arrays:
                reporter.stage("loading MNIST")
                _arrays[net_config.dtype] = load_arrays(net_config.dtype)
            data = _arrays[net_config.dtype]
        net = Net(net_config)
        reporter.stage("training")
        result = train(net, data, settings, reporter, report_every=20)
    except Exception as exc:  # noqa: BLE001
        return _failed(exc)
    capped = settings.max_batches is not None and result.steps >= settings.max_batches and not reporter.stopping
    status = DONE if result.status == "finished" or capped else STOPPED
    accuracy = f", test accuracy {result.test_accuracy:.2%}" if result.test_accuracy is not None else ""
    return {
        "status": status,
        "message": f"{result.steps} steps in {result.seconds:.1f} s{accuracy}",
        "net": net,
        "result": result,
    }


# ---------------------------------------------------------------- import (a data set of your own)

UPLOADS = "uploads"  # the folder, in the owner's runs folder, where an uploaded file waits for its import job


class ImportStopped(Exception):
    """Stop was pressed while the images were being converted: nothing is written."""


def staged_upload_path(runs_dir: str | Path | None = None) -> Path:
    """A new file in the current owner's uploads folder for an upload to wait in (counted in their quota)."""
    from .checkpoints import runs_dir as current_runs_dir

    return Path(runs_dir or current_runs_dir()) / UPLOADS / f"{uuid.uuid4().hex}.zip"


def prepare_import(config: dict, limits) -> dict:
    """An import of an uploaded file that waits in the owner's uploads folder: the name and the fit checked,
    a taken name refused unless replacing was asked for, before any image is read."""
    from .checkpoints import runs_dir
    from .datasets import own_root
    from .uploads import FITS, UploadError, dataset_folder_name

    unknown = sorted(set(config) - {"upload", "name", "fit", "overwrite"})
    if unknown:
        raise UploadError(f"unknown import setting {unknown[0]!r}; the settings are fit, name, overwrite, upload")
    upload = Path(str(config.get("upload", ""))).resolve()
    uploads = (runs_dir() / UPLOADS).resolve()
    if upload.parent != uploads or not upload.is_file():
        raise UploadError("the uploaded file is gone (or was never staged here); upload it again")
    folder = dataset_folder_name(config.get("name", ""))
    fit = config.get("fit", "centre")
    if fit not in FITS:
        raise UploadError(f"fit {fit!r} is not one of {', '.join(FITS)}")
    overwrite = bool(config.get("overwrite", False))
    if (own_root() / folder).exists() and not overwrite:
        raise UploadError(f"a data set named {folder!r} already exists; choose another name, or replace it")
    return {"upload": str(upload), "name": str(config["name"]), "fit": fit, "overwrite": overwrite}


def work_import(spec, reporter: Reporter) -> dict:
    """Convert and store the uploaded set (uploads.import_dataset), then remove the upload whatever happened."""
    from .uploads import import_dataset

    upload = Path(spec.config["upload"])

    def progress(done: int, total: int) -> None:
        if reporter.stopping:
            raise ImportStopped(f"stopped after {done:,} of {total:,} images; nothing was stored")
        reporter.progress(done, total, stage=f"converting the images: {done:,} of {total:,}")

    try:
        reporter.stage("reading the upload")
        report = import_dataset(
            upload,
            spec.config["name"],
            fit=spec.config["fit"],
            overwrite=spec.config["overwrite"],
            progress=progress,
            label="the uploaded zip",  # as the Data page's preview says; the staged path is the server's business
        )
    except ImportStopped as exc:
        return {"status": STOPPED, "message": str(exc)}
    except Exception as exc:  # noqa: BLE001 - an upload that cannot become a data set says why
        return _failed(exc)
    finally:
        upload.unlink(missing_ok=True)
    return {"status": DONE, "message": f"imported {report.summary()}", "dataset": f"own:{report.name}"}


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
    "train": Kind(
        "train",
        "training run",
        "pages/3_Train.py",
        "mnist_core.kinds:work_train",
        prepare_train,
        TrainView,
        epoch="one pass over the training images",
        settle_name=train_name,
    ),
    "compare": Kind(
        "compare",
        "comparison",
        "pages/9_Compare.py",
        "mnist_core.kinds:work_compare",
        prepare_compare,
        CompareView,
        runs=compare_runs,
        epoch=EPOCH_OF_A_RUN,
        settle_name=compare_name,
    ),
    "gan": Kind(
        "gan",
        "GAN",
        "pages/8_GAN.py",
        "mnist_core.kinds:work_gan",
        prepare_gan,
        GanView,
        epoch=GAN_EPOCH,
        settle_name=gan_name,
    ),
    "transfer": Kind(
        "transfer",
        "transfer run",
        "pages/10_Transfer.py",
        "mnist_core.kinds:work_transfer",
        prepare_transfer,
        TransferView,
        epoch=TRANSFER_EPOCH,
    ),
    "embed": Kind(
        "embed",
        "map",
        "pages/2_Embeddings.py",
        "mnist_core.kinds:work_embed",
        prepare_embed,
        ProgressView,
        epoch=EMBED_EPOCH,
    ),
    "import": Kind(
        "import",
        "data set import",
        "pages/1_Data.py",
        "mnist_core.kinds:work_import",
        prepare_import,
        ProgressView,
    ),
    "scratch": Kind(
        "scratch",
        "from-scratch training",
        "pages/4_Under_the_hood.py",
        "mnist_core.kinds:work_scratch",
        prepare_scratch,
        ScratchView,
        epoch="one pass over the training images",
    ),
}


def kind(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown job kind {name!r}; the kinds are {', '.join(KINDS)}") from None


def work_function(kind_or_name: Kind | str) -> Callable:
    """The work function of a kind, imported from its dotted path as a worker imports it."""
    from .runner import work_function as imported

    return imported((kind(kind_or_name) if isinstance(kind_or_name, str) else kind_or_name).work)
