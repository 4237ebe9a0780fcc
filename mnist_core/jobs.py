"""Training in the background: one job per session, a global cap on running jobs, stop on request.

A worker thread runs fit() and writes progress into its Job under a lock; the UI only reads
snapshots. Nothing here knows about Streamlit.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Generic, TypeVar

from .checkpoints import save
from .data import DeviceData
from .train import Event, TrainConfig, fit, planned_steps

SMOOTHING = 0.9  # exponential smoothing of the per-batch loss curve
MAX_CURVE_POINTS = 2000  # per-batch points kept for the live curve; older ones are thinned


class JobLimitError(RuntimeError):
    """The host's limits do not allow this job now."""


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
class HostLimits:
    """Limits for a shared host, from the environment: MNIST_MAX_JOBS, MNIST_MAX_EPOCHS, MNIST_MAX_RUN_SECONDS."""

    max_jobs: int = 1
    max_epochs: int | None = None
    max_run_seconds: float | None = None

    @classmethod
    def from_env(cls) -> "HostLimits":
        def number(name, kind):
            value = os.environ.get(name)
            return kind(value) if value else None

        return cls(number("MNIST_MAX_JOBS", int) or 1, number("MNIST_MAX_EPOCHS", int),
                   number("MNIST_MAX_RUN_SECONDS", float))

    def apply(self, config: TrainConfig) -> TrainConfig:
        """The config as this host runs it: refused over the epoch cap, time-capped when there is a cap."""
        if self.max_epochs is not None and config.epochs > self.max_epochs:
            raise JobLimitError(f"this host allows at most {self.max_epochs} epochs per run; "
                                f"you asked for {config.epochs}")
        if self.max_run_seconds is not None:
            cap = min(config.max_seconds or self.max_run_seconds, self.max_run_seconds)
            config = dataclasses.replace(config, max_seconds=cap)
        return config


@dataclass
class Job:
    id: str
    owner: str
    name: str
    config: TrainConfig
    status: str = "running"  # running, finished, stopped, target_reached, failed
    message: str = ""
    started: float = field(default_factory=time.time)
    seconds: float = 0.0
    step: int = 0
    total_steps: int = 0
    epoch: int = 0
    images_per_s: float = 0.0
    batch_curve: list[dict] = field(default_factory=list)  # step, loss (smoothed), accuracy
    epochs: list[dict] = field(default_factory=list)
    checkpoint: str | None = None
    stop_event: threading.Event = field(default_factory=threading.Event, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def eta_seconds(self) -> float | None:
        if not self.step or not self.total_steps:
            return None
        return (time.time() - self.started) * (self.total_steps - self.step) / self.step

    def snapshot(self) -> "Job":
        """A consistent copy for drawing, taken under the lock."""
        with self.lock:
            copied = copy.copy(self)
            copied.batch_curve, copied.epochs = list(self.batch_curve), list(self.epochs)
        return copied

    def on_event(self, event: Event) -> None:
        d = event.data
        with self.lock:
            if event.kind == "batch":
                previous = self.batch_curve[-1]["loss"] if self.batch_curve else d["loss"]
                self.batch_curve.append({"step": d["step"], "loss": SMOOTHING * previous + (1 - SMOOTHING) * d["loss"],
                                         "raw_loss": d["loss"], "accuracy": d["accuracy"]})
                if len(self.batch_curve) > MAX_CURVE_POINTS:
                    self.batch_curve = self.batch_curve[::2]
                self.step, self.epoch, self.images_per_s = d["step"], d["epoch"], d["images_per_s"]
                self.seconds = d["elapsed"]
            elif event.kind == "epoch":
                self.epochs.append(dict(d))


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

    def start(self, owner: str, config: TrainConfig, data: DeviceData, name: str | None = None) -> Job:
        config = self.limits.apply(config)
        config.validate(len(data.train) + (len(data.val) if data.val else 0))
        with self._lock:
            if any(job.running and job.owner == owner for job in self._jobs.values()):
                raise JobLimitError("you already have a training run going; stop it or wait for it to finish")
            running = sum(job.running for job in self._jobs.values())
            if running >= self.limits.max_jobs:
                raise JobLimitError(f"this host runs at most {self.limits.max_jobs} training job(s) at once and "
                                    f"{running} is running; try again when it finishes")
            job = Job(uuid.uuid4().hex[:8], owner, name or f"{config.arch}-{time.strftime('%Y%m%d-%H%M%S')}",
                      copy.deepcopy(config))
            job.total_steps = planned_steps(config, len(data.train))
            self._jobs[job.id] = job
        threading.Thread(target=self._work, args=(job, data), name=f"train-{job.id}", daemon=True).start()
        return job

    def _work(self, job: Job, data: DeviceData) -> None:
        result = fit(job.config, data, callbacks=(job.on_event,), stop=job.stop_event)
        checkpoint = None
        if result.steps:
            try:
                checkpoint = save(result, job.name, self.runs_dir)
            except (OSError, ValueError) as exc:
                result.message += f" (the checkpoint could not be saved: {exc})"
        with job.lock:
            job.status, job.message, job.seconds = result.status, result.message, result.seconds
            job.checkpoint = checkpoint

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

