"""Fair comparisons: one base setup, one varied setting, each arm repeated over the same seeds.

Arms differ only in the varied setting. With the same seed and architecture, fit() starts every arm
from the same initial weights and shows it the data in the same order (see train.fit), so a
difference in the curves is the setting's doing. A comparison is one job (kinds "compare"): its runs go
one after another, or in parallel worker processes when the machine has cores or a GPU to spare, or,
when the job runs on Ray, as Ray tasks spread over the cluster.
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from . import owners
from .checkpoints import CheckpointError, safe_name, save, validate_name
from .data import DataError, DeviceData
from .datasets import FASHION, MNIST
from .datasets import info as dataset_info
from .datasets import load as load_dataset
from .kinds import RunView, saved_run_exists
from .models import REGISTRY, build_model, describe, make_config
from .reporter import Reporter
from .starting import check_starting_point, load_starting_point
from .train import TrainConfig, check_fits_in_memory, fit, planned_steps

OPTIMIZER_ARMS: dict[str, dict] = {
    "SGD": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.0, "nesterov": False},
    "SGD+momentum": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "nesterov": False},
    "Adam": {"optimizer": "adam", "lr": 1e-3},
    "AdamW": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.01},  # PyTorch's default decay for AdamW
    "RMSprop": {"optimizer": "rmsprop", "lr": 1e-3, "momentum": 0.0},
    "Adagrad": {"optimizer": "adagrad", "lr": 0.01},
    "Adadelta": {"optimizer": "adadelta", "lr": 1.0},
}
DROPOUT_FIELDS = {
    "mlp": ("dropout",),
    "columnet": ("dropout",),
    "cnn": ("dropout",),
    "conv2_fc2": ("dropout1", "dropout2"),
    "tiny_gap": ("dropout",),
}
BN_POSITIONS = ("after", "before", "none")
ENDED = ("finished", "stopped", "target_reached", "failed")

DIMENSIONS: dict[str, str] = {
    "optimizer": "Optimizer (each with its usual learning rate, which you can change)",
    "arch": "Architecture (each with its default settings)",
    "bn": "BatchNorm before vs after the activation (cnn)",
    "dropout": "Dropout off vs on",
    "augmentation": "Augmentation off vs on (rotation and shift)",
    "depth": "Depth of a fully connected net (hidden layers)",
    "columnet": "ColumNet vs a plain FC net with the same number of parameters",
    "dataset": "Data set: the same architecture and recipe on MNIST vs Fashion-MNIST (or a set of your own)",
}


class CompareError(ValueError):
    """A comparison that cannot be run as asked, said in the user's terms."""


@dataclass
class Arm:
    label: str
    overrides: dict  # TrainConfig fields; "model" holds architecture settings merged over the base's


def optimizer_arms(names: list[str], lrs: dict[str, float] | None = None) -> list[Arm]:
    unknown = [n for n in names if n not in OPTIMIZER_ARMS]
    if unknown:
        raise CompareError(f"unknown optimizer {unknown[0]!r}; choose from {', '.join(OPTIMIZER_ARMS)}")
    lrs = lrs or {}
    return [Arm(n, {**OPTIMIZER_ARMS[n], **({"lr": float(lrs[n])} if n in lrs else {})}) for n in names]


def arch_arms(names: list[str]) -> list[Arm]:
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise CompareError(f"unknown architecture {unknown[0]!r}; choose from {', '.join(REGISTRY)}")
    return [Arm(n, {"arch": n, "model": {}}) for n in names]


def bn_arms(base: TrainConfig, positions: list[str]) -> list[Arm]:
    if base.arch != "cnn":
        raise CompareError(
            f"BatchNorm position can be varied for the cnn architecture, not {base.arch}; "
            "choose cnn as the base architecture"
        )
    bad = [p for p in positions if p not in BN_POSITIONS]
    if bad:
        raise CompareError(f"unknown BatchNorm position {bad[0]!r}; choose from {', '.join(BN_POSITIONS)}")
    return [Arm(f"BN {p}" if p != "none" else "no BN", {"model": {"bn": p}}) for p in positions]


def dropout_arms(base: TrainConfig, rate: float) -> list[Arm]:
    fields = DROPOUT_FIELDS.get(base.arch)
    if fields is None:
        raise CompareError(f"{base.arch} has no dropout setting; choose one of {', '.join(DROPOUT_FIELDS)}")
    if not 0 < rate < 1:
        raise CompareError(f"the dropout rate for the 'on' arm must be between 0 and 1 (got {rate})")
    return [
        Arm("dropout off", {"model": {f: 0.0 for f in fields}}),
        Arm(f"dropout {rate:g}", {"model": {f: rate for f in fields}}),
    ]


def augmentation_arms(rotation: float, shift: float) -> list[Arm]:
    if rotation <= 0 and shift <= 0:
        raise CompareError("the 'on' arm needs a rotation or a shift above 0")
    return [
        Arm("no augmentation", {"rotation": 0.0, "shift": 0.0}),
        Arm(f"rotate {rotation:g} deg, shift {shift:g} px", {"rotation": rotation, "shift": shift}),
    ]


def depth_arms(base: TrainConfig, depths: list[int]) -> list[Arm]:
    if any(d < 1 or d > 8 for d in depths):
        raise CompareError("hidden layers must be between 1 and 8")
    width = base.model.get("width", make_config("mlp").width) if base.arch == "mlp" else make_config("mlp").width
    return [
        Arm(f"{d} hidden layer{'s' if d > 1 else ''}", {"arch": "mlp", "model": {"depth": d, "width": width}})
        for d in depths
    ]


def count_params(arch: str, model: dict) -> int:
    return describe(build_model(arch, model)).params


def mlp_width_matching(params: int, depth: int) -> int:
    """The hidden width at which an MLP of this depth has the parameter count closest to params."""
    # params(w) = 784w + w + (depth-1)(w^2 + w) + 10w + 10: solve the quadratic, then check its neighbours.
    a, b, c = depth - 1, 784 + 1 + 10 + (depth - 1), 10 - params
    guess = -c / b if a == 0 else (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
    return min(
        range(max(1, int(guess) - 2), int(guess) + 3),
        key=lambda w: abs(count_params("mlp", {"depth": depth, "width": w}) - params),
    )


def columnet_arms(base: TrainConfig) -> list[Arm]:
    model = dict(base.model) if base.arch == "columnet" else {}
    params = count_params("columnet", model)
    depth = make_config("columnet", model).depth
    width = mlp_width_matching(params, depth)
    return [
        Arm("ColumNet", {"arch": "columnet", "model": model}),
        Arm(f"FC {depth}x{width}", {"arch": "mlp", "model": {"depth": depth, "width": width}}),
    ]


def dataset_arms(keys: list[str]) -> list[Arm]:
    """One arm per data set, labelled by its title; a key that names no data set is refused here."""
    try:
        return [Arm(dataset_info(key).title, {"dataset": key}) for key in keys]
    except DataError as exc:
        raise CompareError(str(exc)) from None


def build_arms(base: TrainConfig, dimension: str, values=None, **options) -> list[Arm]:
    """The arms of a comparison along one dimension (see DIMENSIONS); values None means the dimension's default
    values, and an empty list no arms (a visitor who cleared every choice has chosen nothing, not everything)."""

    def chosen(default: list, what: str) -> list:
        if values is not None and not len(values):
            raise CompareError(f"no {what} chosen: choose at least two")
        return list(default if values is None else values)

    if dimension == "optimizer":
        return optimizer_arms(chosen(list(OPTIMIZER_ARMS), "optimizers"), options.get("lrs"))
    if dimension == "arch":
        return arch_arms(chosen(["mlp", "cnn"], "architectures"))
    if dimension == "bn":
        return bn_arms(base, chosen(["after", "before"], "BatchNorm positions"))
    if dimension == "dropout":
        return dropout_arms(base, float(options.get("rate", 0.25)))
    if dimension == "augmentation":
        return augmentation_arms(float(options.get("rotation", 10.0)), float(options.get("shift", 2.0)))
    if dimension == "depth":
        return depth_arms(base, [int(v) for v in chosen([1, 2, 3, 4, 5], "depths")])
    if dimension == "columnet":
        return columnet_arms(base)
    if dimension == "dataset":
        return dataset_arms(chosen([MNIST, FASHION], "data sets"))
    raise CompareError(f"unknown dimension {dimension!r}; choose one of {', '.join(DIMENSIONS)}")


def arm_config(base: TrainConfig, arm: Arm, seed: int) -> TrainConfig:
    overrides = dict(arm.overrides)
    arch = overrides.pop("arch", base.arch)
    model = dict(base.model) if arch == base.arch else {}
    model.update(overrides.pop("model", {}))
    return dataclasses.replace(base, arch=arch, model=model, seed=seed, init_checkpoint=None, **overrides)


@dataclass
class RunSpec:
    arm: str
    seed: int
    config: TrainConfig
    name: str


def plan(base: TrainConfig, arms: list[Arm], seeds: list[int], name: str) -> list[RunSpec]:
    """Every (arm, seed) run, checked before any starts: settings, the network's shapes, memory, names."""
    try:
        name = validate_name(name)
    except CheckpointError as exc:
        raise CompareError(f"comparison name: {exc}") from None
    if len(arms) < 2:
        raise CompareError("a comparison needs at least two arms")
    labels = [a.label for a in arms]
    if len(set(labels)) != len(labels):
        raise CompareError(f"two arms are the same: {', '.join(sorted({x for x in labels if labels.count(x) > 1}))}")
    if not seeds:
        raise CompareError("give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise CompareError("the seeds must differ from each other")
    specs = []
    for arm in arms:
        for seed in seeds:
            config = arm_config(base, arm, seed)
            try:
                config.validate(dataset_info(config.dataset).train_size)  # builds the arch's config too
                check_starting_point(config)
                check_fits_in_memory(config)
                run_name = validate_name(safe_name(f"{name}-{arm.label}-s{seed}"))
            except (ValueError, RuntimeError) as exc:  # RuntimeError: shapes that cannot work
                raise CompareError(f"arm {arm.label!r}: {exc}") from None
            specs.append(RunSpec(arm.label, seed, config, run_name))
    return specs


def existing_runs(specs: list[RunSpec], runs_dir: Path | None = None) -> list[str]:
    """The names of the saved runs a comparison would replace."""
    return [spec.name for spec in specs if saved_run_exists(spec.name, runs_dir)]


def default_name(dimension: str, now: float | None = None) -> str:
    """A comparison name no other visitor's comparison takes: cmp-<what>-<date>-<time>-<random>."""
    return f"cmp-{dimension}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}-{uuid.uuid4().hex[:4]}"


# ---------------------------------------------------------------- results


@dataclass
class RunState:
    spec: RunSpec
    job: RunView  # kinds.RunView: the run's status, message, curves and epochs
    params: int = 0

    @property
    def ended(self) -> bool:
        return self.job.status in ENDED


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summary_rows(runs: list[RunState]) -> list[dict]:
    """One row per arm: test accuracy mean and spread over seeds, final losses, wall time, parameters."""
    rows = []
    for arm in dict.fromkeys(r.spec.arm for r in runs):
        mine = [r.job.snapshot() for r in runs if r.spec.arm == arm]
        done = [j for j in mine if j.epochs]
        acc_mean, acc_std = _mean_std([100 * j.epochs[-1]["test_accuracy"] for j in done])
        rows.append(
            {
                "arm": arm,
                "runs done": f"{sum(j.status in ENDED for j in mine)}/{len(mine)}",
                "test accuracy %": None if acc_mean is None else round(acc_mean, 2),
                "± std": None if acc_std is None else round(acc_std, 2),
                "final train loss": _rounded(_mean_std([j.epochs[-1]["train_loss"] for j in done])[0]),
                "final test loss": _rounded(_mean_std([j.epochs[-1]["test_loss"] for j in done])[0]),
                "wall time s": _rounded(_mean_std([j.seconds for j in mine if j.status in ENDED])[0], 1),
                "warm-up s": _rounded(sum(j.warmup_seconds for j in mine), 1),
                "params": next(r.params for r in runs if r.spec.arm == arm),
            }
        )
    return rows


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def epoch_curves(runs: list[RunState], key: str) -> dict[str, list[tuple[int, float, float]]]:
    """Per arm: (epoch, mean, std) of an epoch metric over the seeds that reached that epoch."""
    curves = {}
    for arm in dict.fromkeys(r.spec.arm for r in runs):
        by_epoch: dict[int, list[float]] = {}
        for r in runs:
            if r.spec.arm == arm:
                for e in r.job.snapshot().epochs:
                    by_epoch.setdefault(e["epoch"], []).append(e[key])
        curves[arm] = [(epoch, *_mean_std(values)) for epoch, values in sorted(by_epoch.items())]
    return curves


# ---------------------------------------------------------------- running


_warmed: set[str] = set()  # the setups this process has run before (kernels chosen, memory allocated)
_warmed_lock = threading.Lock()
WARM_UP_BATCHES = 3


def warm_up(config: TrainConfig, data: DeviceData, stop=None) -> float:
    """A few untimed batches of a setup this process has not run yet; returns the seconds they took.

    The first run of a setup in a process pays one-off costs (kernel choice, memory growth, the first
    test pass) that the runs after it skip: timed as it is, the first arm looked many times slower
    than an identical second one. Every timed run now starts warm, and the warm-up is shown apart.
    """
    key = json.dumps(
        [config.arch, config.model, config.batch_size, config.optimizer, config.device], sort_keys=True, default=str
    )
    with _warmed_lock:
        if key in _warmed:
            return 0.0
    started = time.perf_counter()
    result = fit(
        dataclasses.replace(
            config,
            max_batches=WARM_UP_BATCHES,
            epochs=1,
            record=False,
            target_accuracy=None,
            drawings_share=0.0,
            max_seconds=None,
        ),
        data,
        Reporter(stop=stop),
    )
    if result.status == "finished":  # marked only once really warm: a concurrent twin warms up too (harmless)
        with _warmed_lock:
            _warmed.add(key)
    return time.perf_counter() - started


def _run(spec: RunSpec, data: DeviceData, callback, stop, runs_dir: Path | None, overwrite: bool) -> dict:
    """One run of a comparison, warm-up first; whatever goes wrong ends it as failed, never stuck as running."""
    warm = 0.0
    try:
        start = load_starting_point(spec.config, data.device)  # a run that cannot start is not warmed up
        warm = warm_up(spec.config, data, stop)
        callback("warmup", {"seconds": warm})
        if stop is not None and stop.is_set():
            return {
                "status": "stopped",
                "message": "not started: the comparison was stopped",
                "seconds": 0.0,
                "checkpoint": None,
                "warmup": warm,
            }
        result = fit(spec.config, data, Reporter(callback, stop), model=start.model, drawings=start.drawings)
        return {**_finish(result, spec, runs_dir, overwrite), "warmup": warm}
    except Exception as exc:  # noqa: BLE001 - the run ends, says why, and the comparison goes on
        return {
            "status": "failed",
            "message": f"{type(exc).__name__}: {exc}",
            "seconds": 0.0,
            "checkpoint": None,
            "warmup": warm,
        }


def _finish(result, spec: RunSpec, runs_dir: Path | None, overwrite: bool) -> dict:
    checkpoint = None
    if result.steps and result.model is not None:
        try:
            checkpoint = save(
                result,
                spec.name,
                runs_dir,
                extra={"comparison": {"arm": spec.arm, "seed": spec.seed}},
                overwrite=overwrite,
            )
        except (OSError, ValueError) as exc:
            result.message += f" (the checkpoint could not be saved: {exc})"
    return {
        "status": result.status,
        "message": result.message,
        "seconds": result.seconds,
        "checkpoint": checkpoint,
        "steps": result.steps,
        "test_accuracy": result.test_accuracy,
    }


def _run_in_worker(
    index: int,
    config: dict,
    arm: str,
    seed: int,
    name: str,
    runs_dir: str | None,
    threads: int,
    events,
    stop,
    overwrite: bool,
) -> tuple[int, dict]:
    """A worker process's run: progress goes back through the events queue."""
    torch.set_num_threads(threads)
    spec = RunSpec(arm, seed, TrainConfig.from_dict(config), name)
    try:
        with owners.use_folder(runs_dir):  # a set of your own is in its owner's folder
            data = DeviceData(load_dataset(spec.config.dataset), device=spec.config.device)
    except Exception as exc:  # noqa: BLE001
        return index, {
            "status": "failed",
            "message": f"{type(exc).__name__}: {exc}",
            "seconds": 0.0,
            "checkpoint": None,
            "warmup": 0.0,
        }
    return index, _run(
        spec,
        data,
        lambda kind, data: events.put((index, kind, data)),
        stop,
        Path(runs_dir) if runs_dir else None,
        overwrite,
    )


# ---------------------------------------------------------------- a comparison as one job (kinds.work_compare)


def run_comparison(
    specs: list[RunSpec],
    data_for: Callable[[TrainConfig], DeviceData],
    reporter: Reporter,
    runs_dir: Path | str | None = None,
    overwrite: bool = False,
    parallel: int = 1,
) -> list[dict]:
    """Every run of a comparison, and each run's outcome (status, message, seconds, checkpoint, warmup...).

    data_for(config) gives the data a run in this process trains on (its data set, on its device).

    Inside a Ray task the runs spread over the cluster as Ray tasks; else they go one after another in
    this process, or in `parallel` worker processes. Events on the reporter: ("run", {"index", "name",
    "data"}) carries each run's own events, ("run_end", {"index", **outcome}) its end, and "progress"
    counts the steps of all runs together. reporter.stop stops the run in flight (keeping what it learned)
    and the runs not started yet.
    """
    runs_dir = Path(runs_dir) if runs_dir else None
    totals = [planned_steps(s.config, dataset_info(s.config.dataset).train_size) for s in specs]
    done = [0] * len(specs)
    lock, mark = threading.Lock(), [0.0]
    outcomes: list[dict | None] = [None] * len(specs)

    def forward(index: int, name: str, payload: dict) -> None:
        if name == "done" and "checkpoint" in payload:
            outcomes[index] = payload
            done[index] = max(done[index], payload.get("steps") or 0)
            reporter.event("run_end", {"index": index, **payload})
            reporter.progress(sum(done), sum(totals))
            return
        if name in ("progress", "done", "error"):
            return  # a run's own progress is counted here, over all runs
        reporter.event("run", {"index": index, "name": name, "data": payload})
        if name == "batch":
            with lock:
                done[index] = payload["step"]
                now = time.perf_counter()
                if now - mark[0] < 0.25:
                    return
                mark[0] = now
            reporter.progress(sum(done), sum(totals))

    if _inside_ray_task():
        _runs_on_ray(specs, forward, reporter.stop, runs_dir, overwrite)
    elif parallel > 1 and len(specs) > 1:
        _runs_in_processes(specs, forward, reporter.stop, runs_dir, overwrite, min(parallel, len(specs)))
    else:
        for index, spec in enumerate(specs):
            if reporter.stopping:
                outcome = {
                    "status": "stopped",
                    "message": "not started: the comparison was stopped",
                    "seconds": 0.0,
                    "checkpoint": None,
                }
            else:
                outcome = _run(
                    spec,
                    data_for(spec.config),
                    lambda name, payload, i=index: forward(i, name, payload),
                    reporter.stop,
                    runs_dir,
                    overwrite,
                )
            forward(index, "done", outcome)
    return [
        o or {"status": "failed", "message": "the run ended without a result", "seconds": 0.0, "checkpoint": None}
        for o in outcomes
    ]


def _runs_in_processes(
    specs: list[RunSpec], forward, stop_flag, runs_dir: Path | None, overwrite: bool, parallel: int
) -> None:
    threads = max(1, (os.cpu_count() or 1) // parallel)
    context = multiprocessing.get_context("spawn")  # fork would copy this process's threads and locks
    try:
        with context.Manager() as manager:
            events, stop = manager.Queue(), manager.Event()

            def collect() -> None:
                while (item := events.get()) is not None:
                    forward(*item)

            collector = threading.Thread(target=collect, daemon=True)
            collector.start()
            with ProcessPoolExecutor(parallel, mp_context=context) as pool:
                futures = [
                    pool.submit(
                        _run_in_worker,
                        i,
                        dataclasses.asdict(s.config),
                        s.arm,
                        s.seed,
                        s.name,
                        str(runs_dir) if runs_dir else None,
                        threads,
                        events,
                        stop,
                        overwrite,
                    )
                    for i, s in enumerate(specs)
                ]
                pending = set(range(len(futures)))
                while pending:
                    if stop_flag.is_set():
                        stop.set()
                    for i in list(pending):
                        if futures[i].done():
                            pending.discard(i)
                            try:
                                _, outcome = futures[i].result()
                            except Exception as exc:  # a worker that died; the others go on
                                outcome = {
                                    "status": "failed",
                                    "message": f"{type(exc).__name__}: {exc}",
                                    "seconds": 0.0,
                                    "checkpoint": None,
                                }
                            events.put((i, "done", outcome))
                    time.sleep(0.1)
            events.put(None)
            collector.join(timeout=10)
    except Exception as exc:  # the worker pool could not start; say so on every run
        for i in range(len(specs)):
            forward(
                i,
                "done",
                {
                    "status": "failed",
                    "message": f"parallel runs could not start: {exc}",
                    "seconds": 0.0,
                    "checkpoint": None,
                },
            )


def _inside_ray_task() -> bool:
    """Whether this code runs as a Ray task (the runner's Ray backend): then the runs go to the cluster."""
    import sys

    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return False
    try:
        return ray.get_runtime_context().get_task_id() is not None
    except Exception:  # noqa: BLE001 - an older Ray without the call: run here
        return False


class _RayEvents:
    """A run's events, sent to the comparison's Ray queue a few times a second (one call per event is slow)."""

    def __init__(self, queue, index: int):
        self.queue, self.index, self.buffer, self.sent = queue, index, [], 0.0

    def __call__(self, name: str, data: dict) -> None:
        self.buffer.append((self.index, name, data))
        if time.perf_counter() - self.sent > 0.25:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.queue.put_nowait_batch(self.buffer)
            self.buffer = []
        self.sent = time.perf_counter()


class _RayStopFlag:
    """The comparison's stop flag (a Ray actor), asked at most twice a second."""

    def __init__(self, actor):
        self.actor, self.value, self.asked = actor, False, 0.0

    def is_set(self) -> bool:
        if not self.value and time.perf_counter() - self.asked > 0.5:
            import ray

            self.value, self.asked = bool(ray.get(self.actor.is_set.remote())), time.perf_counter()
        return self.value


def _ray_run(
    index: int, config: dict, arm: str, seed: int, name: str, runs_dir: str | None, queue, flag, overwrite: bool
) -> dict:
    """One run of a comparison as a Ray task; its events go back through the queue."""
    spec = RunSpec(arm, seed, TrainConfig.from_dict(config), name)
    send = _RayEvents(queue, index)
    try:
        with owners.use_folder(runs_dir):  # a set of your own is in its owner's folder
            data = DeviceData(load_dataset(spec.config.dataset), device=spec.config.device)
        outcome = _run(spec, data, send, _RayStopFlag(flag), Path(runs_dir) if runs_dir else None, overwrite)
    except Exception as exc:  # noqa: BLE001
        outcome = {"status": "failed", "message": f"{type(exc).__name__}: {exc}", "seconds": 0.0, "checkpoint": None}
    send.flush()
    return {**outcome, "pid": os.getpid()}


def _runs_on_ray(specs: list[RunSpec], forward, stop_flag, runs_dir: Path | None, overwrite: bool) -> None:
    import ray
    from ray.util.queue import Queue

    @ray.remote(num_cpus=0)
    class StopFlag:
        def __init__(self):
            self.value = False

        def set(self):
            self.value = True

        def is_set(self):
            return self.value

    queue, flag = Queue(), StopFlag.remote()
    task = ray.remote(num_cpus=1)(_ray_run)
    pending = {
        task.remote(
            i,
            dataclasses.asdict(s.config),
            s.arm,
            s.seed,
            s.name,
            str(runs_dir) if runs_dir else None,
            queue,
            flag,
            overwrite,
        ): i
        for i, s in enumerate(specs)
    }
    stopping = False

    def drain() -> None:
        size = queue.qsize()
        if size:
            for item in queue.get_nowait_batch(size):
                forward(*item)

    try:
        while pending:
            if stop_flag.is_set() and not stopping:
                stopping = True
                flag.set.remote()
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.2)
            drain()
            for ref in ready:
                index = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a lost task or node; the other runs go on
                    outcome = {
                        "status": "failed",
                        "message": f"the Ray task of this run failed: {exc}",
                        "seconds": 0.0,
                        "checkpoint": None,
                    }
                drain()
                forward(index, "done", outcome)
    finally:
        for actor in (flag, queue.actor):
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001
                pass
