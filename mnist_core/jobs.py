"""Training in the background: one job per session, a global cap on running jobs, stop on request.

A worker thread runs fit() and writes progress into its Job under a lock; the UI only reads
snapshots. Nothing here knows about Streamlit.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
import uuid
from pathlib import Path
from dataclasses import dataclass, field
from typing import Callable, Generic, TypeVar

from .checkpoints import CheckpointExistsError, runs_dir, save, validate_name
from .data import DeviceData
from .host import settings
from .reporter import Reporter
from .runner import HostLimits, JobRefused  # noqa: F401 - HostLimits moved to the runner; kept importable here
from .train import TrainConfig, check_fits_in_memory, fit, planned_steps

SMOOTHING = 0.9  # exponential smoothing of the per-batch loss and accuracy curves
RATE_SMOOTHING = 0.8  # exponential smoothing of the step rate behind the ETA, updated about once a second
MAX_CURVE_POINTS = 2000  # per-batch points kept for the live curve; older ones are thinned


def saved_run_exists(name: str, folder: Path | str | None = None) -> bool:
    """Whether a saved run holds this (sanitised) name, readable or not: saving would replace it."""
    return (Path(folder or runs_dir()) / f"{name}.json").exists()


JobLimitError = JobRefused  # the host's limits do not allow this job now (one refusal type: runner.JobRefused)


OwnedJob = TypeVar("OwnedJob")  # anything with .running and .stop_event


class OwnerSlots(Generic[OwnedJob]):
    """The latest job of each owner, at most max_jobs running at once in this process."""

    def __init__(self, max_jobs: int, error: type[Exception], running_phrase: str, limit_phrase: str):
        self.max_jobs = max_jobs
        self._error, self._running_phrase, self._limit_phrase = error, running_phrase, limit_phrase
        self._jobs: dict[str, OwnedJob] = {}
        self._lock = threading.Lock()

    def latest(self, owner: str) -> OwnedJob | None:
        with self._lock:
            return self._jobs.get(owner)

    def admit(self, owner: str, make: Callable[[], OwnedJob]) -> OwnedJob:
        """Register make()'s job for the owner, unless the owner or the host is busy."""
        with self._lock:
            mine = self._jobs.get(owner)
            if mine is not None and mine.running:
                raise self._error(f"you already have {self._running_phrase}; stop it or wait for it to finish")
            if sum(job.running for job in self._jobs.values()) >= self.max_jobs:
                raise self._error(f"this host {self._limit_phrase.format(self.max_jobs)} at once; try again later")
            self._jobs[owner] = job = make()
        return job

    def stop(self, owner: str) -> None:
        job = self.latest(owner)
        if job is not None:
            job.stop_event.set()


@dataclass
class Job:
    id: str
    owner: str
    name: str
    config: TrainConfig
    status: str = "running"  # running, finished, stopped, target_reached, failed
    message: str = ""
    stage: str = "queued"  # preparing, training, evaluating, saving: what a learner is waiting for
    started: float = field(default_factory=time.time)
    seconds: float = 0.0
    step: int = 0
    total_steps: int = 0
    epoch: int = 0
    images_per_s: float = 0.0
    batch_curve: list[dict] = field(default_factory=list)  # step, loss (smoothed), accuracy
    epochs: list[dict] = field(default_factory=list)
    checkpoint: str | None = None
    overwrite: bool = False  # the user agreed to replace an existing run of this name
    steps_per_s: float = 0.0  # smoothed, so the ETA does not swing with every busy second
    warmup_seconds: float = 0.0  # untimed batches before the run (comparisons time every run warm)
    _rate_mark: tuple[float, int] = (0.0, 0)
    stop_event: threading.Event = field(default_factory=threading.Event, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def stopping(self) -> bool:
        return self.running and self.stop_event.is_set()

    @property
    def eta_seconds(self) -> float | None:
        if not self.step or not self.total_steps or not self.steps_per_s:
            return None
        return (self.total_steps - self.step) / self.steps_per_s

    def snapshot(self) -> "Job":
        """A consistent copy for drawing, taken under the lock."""
        with self.lock:
            copied = copy.copy(self)
            copied.batch_curve, copied.epochs = list(self.batch_curve), list(self.epochs)
        return copied

    def on_event(self, kind: str, d: dict) -> None:
        with self.lock:
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


class JobManager:
    """Process-wide registry of training jobs, shared by all sessions; thread-safe."""

    def __init__(self, limits: HostLimits | None = None, runs_dir=None):
        self.limits = limits or HostLimits.from_env()
        self.runs_dir = runs_dir
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def running_count(self) -> int:
        with self._lock:
            return sum(job.running for job in self._jobs.values())

    def latest(self, owner: str) -> Job | None:
        """The owner's most recent job; another owner's jobs are never returned."""
        with self._lock:
            mine = [job for job in self._jobs.values() if job.owner == owner]
        return max(mine, key=lambda job: job.started) if mine else None

    def run_exists(self, name: str) -> bool:
        return saved_run_exists(name, self.runs_dir)

    def start(self, owner: str, config: TrainConfig, data: DeviceData, name: str | None = None,
              overwrite: bool = False) -> Job:
        """Check everything a run needs before it starts (a refusal after training would cost the run)."""
        config = self.limits.apply(config)
        config.validate(len(data.train) + (len(data.val) if data.val else 0))
        check_fits_in_memory(config)
        if name:
            name = validate_name(name)
            if not overwrite and self.run_exists(name):
                raise CheckpointExistsError(f"a run named {name!r} exists already; choose another name, "
                                            "or allow replacing it")
        else:  # a default name no other visitor's run can take in the same second
            name, overwrite = f"{config.arch}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}", False
        with self._lock:
            if any(job.running and job.owner == owner for job in self._jobs.values()):
                raise JobLimitError("you already have a training run going; stop it or wait for it to finish")
            running = sum(job.running for job in self._jobs.values())
            if running >= self.limits.max_jobs:
                raise JobLimitError(f"this host runs at most {self.limits.max_jobs} training job(s) at once and "
                                    f"{running} is running; try again when it finishes")
            job = Job(uuid.uuid4().hex[:8], owner, name, copy.deepcopy(config), overwrite=overwrite)
            job.total_steps = planned_steps(config, len(data.train))
            self._jobs[job.id] = job
        threading.Thread(target=self._work, args=(job, data), name=f"train-{job.id}", daemon=True).start()
        return job

    def _work(self, job: Job, data: DeviceData) -> None:
        status, message, seconds, checkpoint = "failed", "", 0.0, None
        try:
            result = fit(job.config, data, Reporter(job.on_event, job.stop_event))
            status, message, seconds = result.status, result.message, result.seconds
            if result.steps and result.model is not None:
                job.on_event("stage", {"stage": "saving"})
                try:
                    checkpoint = save(result, job.name, self.runs_dir, overwrite=job.overwrite)
                except (OSError, ValueError) as exc:
                    message += f" (the checkpoint could not be saved: {exc})"
        except Exception as exc:  # whatever happens, the job ends and its slot is free for the next one
            status, message = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            with job.lock:
                job.status, job.message, job.seconds = status, message, seconds or time.time() - job.started
                job.checkpoint, job.stage = checkpoint, "done"

    def stop(self, owner: str) -> bool:
        job = self.latest(owner)
        if job is None or not job.running:
            return False
        job.stop_event.set()
        return True

    def wait(self, job: Job, timeout: float = 60.0) -> bool:
        deadline = time.time() + timeout
        while job.running and time.time() < deadline:
            time.sleep(0.05)
        return not job.running

