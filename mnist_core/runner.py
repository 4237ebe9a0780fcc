"""One runner for every long computation: the host's caps in one place, jobs out of the web process.

A job is a kind (mnist_core.kinds), a checked config and an owner. The runner admits it under the
host's limits (a global cap on running jobs, one live job per owner, a cap on a comparison's runs, a
FIFO queue of bounded length; the kind's prepare applies the epoch cap), starts it on a backend, folds
its events into a JobState the pages read by snapshot(), and stops it on request or when it passes the
host's time limit. Backends:

- "processes" (default): a pool of worker processes that import torch once and take jobs one after
  another; events come back through a pipe per worker to a collector thread. A worker that dies
  mid-job fails that job with a plain message and is replaced; the server and other jobs go on.
- "threads": each job in a thread of this process (tests, tiny hosts).
- "ray": each job a Ray task on a local Ray or a cluster (MNIST_RAY_ADDRESS); Ray reuses warm workers;
  events and stop flags go through one light actor the server polls.

Nothing here imports torch or ray at module level: the web process pays only for what it uses.
"""

from __future__ import annotations

import atexit
import copy
import importlib
import logging
import multiprocessing.connection
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import owners
from .host import hosted, settings
from .reporter import ENDED, FAILED, QUEUED, RUNNING, STOPPED, Reporter

log = logging.getLogger("mnist_core.runner")

BACKENDS = ("processes", "threads", "ray")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
RAY_CONNECT_SECONDS = 10.0  # an unreachable Ray address fails within this, never hangs
RAY_START_SECONDS = 120.0  # starting a local Ray (no address) may take this long on a busy machine
WORKER_NICE = 10  # pool workers yield the CPU to the web server's threads
POLL_SECONDS = 0.1  # how often the time limit and Ray jobs' events are looked at
ENDED_KEPT_PER_OWNER = 5  # ended jobs remembered per owner (the newest), so a long-lived server stays small
ENDED_KEPT = 500  # and in all
WORKER_DIED = (
    "the worker running this job ended unexpectedly (killed, or out of memory); the server and other "
    "jobs are fine, and what the job saved before that is kept (a training run keeps its last "
    "completed epoch); start it again, or with a smaller setting"
)
_INTERNAL_EVENTS = ("worker",)  # the runner's own, not passed to the kind's view


class JobRefused(RuntimeError):
    """The host's limits do not allow this job now; the message names the limit."""

    def __init__(self, message: str, limit: str = ""):
        super().__init__(message)
        self.limit = limit


class RunnerError(RuntimeError):
    """The runner cannot work as configured (Ray missing or unreachable); the message says what to do."""


@dataclass
class HostLimits:
    """The host's caps on jobs (MNIST_MAX_JOBS, MNIST_MAX_EPOCHS, MNIST_MAX_RUN_SECONDS,
    MNIST_MAX_COMPARE_RUNS, MNIST_MAX_QUEUED), applied by the runner to every kind."""

    max_jobs: int = 1
    max_epochs: int | None = None
    max_run_seconds: float | None = None
    max_compare_runs: int = 40
    max_queued: int = 20
    max_parallel: int | None = None  # MNIST_MAX_PARALLEL: runs of one comparison at once (hosted mode: 1)
    max_map_points: int | None = None  # MNIST_MAX_MAP_POINTS: digits one map may use
    downloads: bool = True  # whether a job may download (pretrained weights); off in hosted mode

    @classmethod
    def from_env(cls) -> HostLimits:
        """The limits of host.settings(), which raises HostSettingError naming a bad variable."""
        values = settings()
        return cls(
            values.max_jobs,
            values.max_epochs,
            values.max_run_seconds,
            values.max_compare_runs,
            values.max_queued,
            max_parallel=values.max_parallel,
            max_map_points=values.max_map_points,
            downloads=values.downloads,
        )


@dataclass
class JobSpec:
    """What travels to the worker (picklable): everything work(spec, reporter) needs."""

    id: str
    kind: str
    owner: str
    config: dict
    name: str | None = None
    overwrite: bool = False
    runs_dir: str | None = None
    work: str = ""  # the kind's work function, "module:function": a worker needs no registry to find it
    env: dict = field(default_factory=dict)  # the MNIST_* settings at submit, applied in a worker process
    runs: int = 1  # training runs the job holds (a comparison: arms x seeds)


@dataclass
class JobState:
    """What the page reads; the runner updates it under its lock, pages take snapshot()."""

    spec: JobSpec
    status: str = QUEUED
    message: str = ""  # the reason for failed; what done or stopped means
    stage: str = ""  # the last "stage" event
    done: float = 0.0  # the last "progress" event
    total: float = 0.0
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    result: dict | None = None  # work's return value
    view: object = None  # kind.view(config), fed every event
    position: int | None = None  # 1-based place in the queue while queued
    label: str = ""  # the kind's words for it ("training run")
    page: str = ""  # the page that shows it
    worker: str = ""  # where it runs ("pid 1234 on host"), once it has started
    pid: int | None = None
    stop_requested: bool = False
    time_capped: bool = False  # the runner stopped it at the host's time limit
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def owner(self) -> str:
        return self.spec.owner

    @property
    def name(self) -> str | None:
        return self.spec.name

    @property
    def running(self) -> bool:
        """Queued or running: the job holds its owner's one slot."""
        return self.status in (QUEUED, RUNNING)

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    @property
    def stopping(self) -> bool:
        return self.running and self.stop_requested

    @property
    def fraction(self) -> float | None:
        return min(1.0, max(0.0, self.done / self.total)) if self.total else None

    @property
    def seconds(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.time()) - self.started

    def snapshot(self) -> JobState:
        """A consistent copy for drawing, taken under the job's lock."""
        with self._lock:
            copied = copy.copy(self)
            view = self.view
            copied.view = view.snapshot() if hasattr(view, "snapshot") else copy.deepcopy(view)
            copied.result = dict(self.result) if self.result is not None else None
        copied._lock = threading.Lock()
        return copied


# ---------------------------------------------------------------- running one job, anywhere


def work_function(path: str) -> Callable:
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _apply_env(env: Mapping[str, str]) -> None:
    """Make this worker process's MNIST_* settings those of the job (a pool outlives a setting change)."""
    for name in [n for n in os.environ if _is_setting(n) and n not in env]:
        del os.environ[name]
    os.environ.update(env)


def _is_setting(name: str) -> bool:
    return name.startswith("MNIST_") or name == "FASHION_MNIST_DIR"


def execute(spec: JobSpec, send: Callable[[str, dict], None], stop, in_worker: bool) -> dict:
    """Run one job's work and return its result dict; never raises (a raise is a failed job)."""
    try:
        if in_worker:
            _apply_env(spec.env)
        send("worker", {"pid": os.getpid(), "host": socket.gethostname()})
        with owners.use_folder(
            spec.runs_dir
        ):  # hosted: the job saves into, and reads drawings from, its owner's folder
            result = work_function(spec.work)(spec, Reporter(send, stop))
    except Exception as exc:  # noqa: BLE001 - whatever happens, the job ends and says why
        log.exception("job %s (%s) raised", spec.id, spec.kind)
        return {"status": FAILED, "message": f"{type(exc).__name__}: {exc}"}
    if not isinstance(result, dict) or result.get("status") not in ENDED:
        return {"status": FAILED, "message": f"the {spec.kind} job ended without a status (returned {result!r:.80})"}
    return result


# ---------------------------------------------------------------- backends


class _ThreadBackend:
    """Each job in a thread of this process."""

    name = "threads"

    def __init__(self, on_event, on_end):
        self._on_event, self._on_end = on_event, on_end
        self._flags: dict[str, threading.Event] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def capacity(self) -> int | None:
        return None

    def start(self, spec: JobSpec) -> None:
        flag = threading.Event()
        thread = threading.Thread(target=self._run, args=(spec, flag), name=f"job-{spec.id}", daemon=True)
        with self._lock:
            self._flags[spec.id] = flag
            self._threads[spec.id] = thread
        thread.start()

    def _run(self, spec: JobSpec, flag: threading.Event) -> None:
        result = execute(spec, lambda name, data: self._on_event(spec.id, name, data), flag, in_worker=False)
        with self._lock:
            self._flags.pop(spec.id, None)
            self._threads.pop(spec.id, None)
        self._on_end(spec.id, result)

    def stop(self, job_id: str) -> None:
        with self._lock:
            flag = self._flags.get(job_id)
        if flag is not None:
            flag.set()

    def shutdown(self) -> None:
        """Stop every job and wait for it (a thread still in torch when the interpreter exits aborts it)."""
        with self._lock:
            for flag in self._flags.values():
                flag.set()
            threads = list(self._threads.values())
        deadline = time.time() + 30
        for thread in threads:
            thread.join(max(0.0, deadline - time.time()))


def _worker_main(task_fd: int, event_fd: int, threads: int, nice: int = WORKER_NICE) -> None:
    """A pool worker: import torch once, then run jobs one after another until told to stop.

    A listener thread reads the server's messages: a job (queued for the main thread, which runs it) or a
    stop request for the job in hand. When the server goes away (its end of the pipe closes), the worker
    exits at once rather than train for no one."""
    tasks = multiprocessing.connection.Connection(task_fd, writable=False)
    events = multiprocessing.connection.Connection(event_fd, readable=False)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the server's to handle; it ends the pool
    try:  # pages first: a visitor's click should not wait behind a training batch (torch's threads inherit this)
        if nice:
            os.nice(nice)
    except OSError:
        pass
    try:
        import torch

        if threads:
            torch.set_num_threads(threads)
        importlib.import_module("mnist_core.kinds").device_data()  # MNIST resident before the first job asks
    except Exception:  # noqa: BLE001 - a job that needs them will fail and say why
        pass
    inbox: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()
    current: list[str | None] = [None]

    def listen() -> None:
        try:
            while True:
                message = tasks.recv()
                if message is None:
                    inbox.put(None)
                    return
                what, payload = message
                if what == "job":  # one job at a time: the server sends the next only after this one's end
                    current[0] = payload.id
                    stop.clear()
                    inbox.put(payload)
                elif what == "stop" and payload == current[0]:
                    stop.set()
        except (EOFError, OSError):
            os._exit(0)

    threading.Thread(target=listen, name="worker-listener", daemon=True).start()
    try:
        events.send(("ready", None, os.getpid(), None))
        while (spec := inbox.get()) is not None:
            result = execute(
                spec, lambda name, data, job=spec.id: events.send(("event", job, name, data)), stop, in_worker=True
            )
            events.send(("end", spec.id, result, None))
    except (EOFError, OSError):  # the server went away: nothing left to report to
        pass
    os._exit(0)  # no interpreter teardown with torch's threads about


class _Worker:
    """One worker process and its two pipes. A plain subprocess, not multiprocessing's spawn: spawn re-runs
    the parent's __main__ in the child, and under `streamlit run` that is the app itself."""

    def __init__(self, threads: int, nice: int):
        task_r, task_w = os.pipe()
        event_r, event_w = os.pipe()
        path = os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p)
        code = f"from mnist_core.runner import _worker_main; _worker_main({task_r}, {event_w}, {threads}, {nice})"
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", code],
                pass_fds=(task_r, event_w),
                env=dict(os.environ, PYTHONPATH=path),
                stdin=subprocess.DEVNULL,
            )
        finally:
            os.close(task_r)
            os.close(event_w)
        self.tasks = multiprocessing.connection.Connection(task_w, readable=False)
        self.events = multiprocessing.connection.Connection(event_r, writable=False)
        self.job: str | None = None
        self.ready = False

    def send(self, message) -> None:
        try:
            self.tasks.send(message)
        except OSError:
            pass  # the worker died: the collector sees its pipe close and fails its job

    def close(self) -> None:
        for conn in (self.tasks, self.events):
            try:
                conn.close()
            except OSError:
                pass


class _ProcessBackend:
    """A pool of worker processes; a collector thread applies their events and notices deaths."""

    name = "processes"

    def __init__(self, on_event, on_end, workers: int, nice: int = WORKER_NICE):
        self._on_event, self._on_end = on_event, on_end
        self._nice = nice
        # Each worker gets an equal share of the cores, so jobs side by side do not thrash.
        self._threads = max(1, (os.cpu_count() or 1) // workers)
        self._lock = threading.Lock()
        self._closed = False
        # Workers start with the first jobs that need them, not with the server: an idle worker holds
        # torch and MNIST (170-300 MB) for a server that may never train.
        self._size = workers
        self._workers: list[_Worker] = []
        self._collector = threading.Thread(target=self._collect, name="runner-collector", daemon=True)
        self._collector.start()

    def capacity(self) -> int | None:
        return self._size

    def pids(self) -> list[int]:
        with self._lock:
            return [w.process.pid for w in self._workers]

    def start(self, spec: JobSpec) -> None:
        with self._lock:
            idle = next((w for w in self._workers if w.job is None), None)
            if idle is None and len(self._workers) < self._size:
                idle = _Worker(self._threads, self._nice)
                self._workers.append(idle)
            if idle is None:  # the runner never starts more jobs than workers; say so if it did
                raise RuntimeError("no idle worker for a job the runner started")
            idle.job = spec.id
            idle.send(("job", spec))

    def stop(self, job_id: str) -> None:
        with self._lock:
            for worker in self._workers:
                if worker.job == job_id:
                    worker.send(("stop", job_id))

    def _collect(self) -> None:
        while not self._closed:
            with self._lock:
                by_conn = {w.events: w for w in self._workers}
            try:
                ready = multiprocessing.connection.wait(list(by_conn), timeout=0.5)
            except OSError:  # a connection closed under us at shutdown
                continue
            for conn in ready:
                worker = by_conn[conn]
                try:
                    message = conn.recv()
                except Exception:  # noqa: BLE001 - EOF: the worker is gone (or its last message was cut off)
                    self._lost(worker)
                    continue
                self._handle(worker, message)

    def _handle(self, worker: _Worker, message) -> None:
        what, job_id, a, b = message
        if what == "event":
            self._on_event(job_id, a, b)
        elif what == "end":
            with self._lock:
                worker.job = None
            self._on_end(job_id, a)
        elif what == "ready":
            worker.ready = True

    def _lost(self, worker: _Worker) -> None:
        try:
            code = worker.process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # its pipe closed but it lives on: end it, it cannot report
            worker.process.kill()
            code = worker.process.wait()
        worker.close()
        if not worker.ready:  # it died starting up: do not respawn in a tight loop
            time.sleep(1.0)
        with self._lock:
            if self._closed or worker not in self._workers:
                return
            job, worker.job = worker.job, None
            self._workers.remove(worker)  # the next job that needs a worker starts a new one
        log.warning(
            "worker pid %s ended (exit code %s)%s; a new worker replaces it",
            worker.process.pid,
            code,
            f" while running job {job}" if job else "",
        )
        if job is not None:
            self._on_end(job, {"status": FAILED, "message": WORKER_DIED, "exit_code": code})

    def shutdown(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers = list(self._workers)
        for worker in workers:
            if worker.job is not None:
                worker.send(("stop", worker.job))
            worker.send(None)
        deadline = time.time() + 3  # a running job stops within a batch and saves what it learned
        for worker in workers:
            try:
                worker.process.wait(max(0.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                worker.process.terminate()
                try:
                    worker.process.wait(2)
                except subprocess.TimeoutExpired:
                    worker.process.kill()
                    worker.process.wait()
            worker.close()
        self._collector.join(2)


class _RayBoard:
    """One light Ray actor per runner: the jobs' events on their way to the server and their stop flags.

    Jobs are plain Ray tasks, so Ray reuses warm worker processes (torch imported, MNIST loaded) from one
    job to the next; a task pushes its events here every POLL_SECONDS and learns in the answer whether it
    should stop. The server drains every job's events in one call."""

    def __init__(self):
        self._events: dict[str, list] = {}
        self._stops: set[str] = set()

    def push(self, job_id: str, events: list) -> bool:
        self._events.setdefault(job_id, []).extend(events)
        return job_id in self._stops

    def stop(self, job_id: str) -> None:
        self._stops.add(job_id)

    def drain(self) -> dict:
        events, self._events = self._events, {}
        return events

    def forget(self, job_id: str) -> None:
        self._stops.discard(job_id)
        self._events.pop(job_id, None)


def _ray_job(spec: JobSpec, board) -> dict:
    """A job as a Ray task: the same execute() as a pool worker, its events and stop flag through the board."""
    import ray

    buffer: list = []
    lock = threading.Lock()
    stop = threading.Event()
    finished = threading.Event()

    def send(name, data):
        with lock:
            buffer.append((name, data))

    def flush() -> None:
        with lock:
            events = buffer[:]
            buffer.clear()
        if ray.get(board.push.remote(spec.id, events)):
            stop.set()

    def pump() -> None:
        while not finished.wait(POLL_SECONDS):
            flush()

    pumper = threading.Thread(target=pump, name=f"job-{spec.id}-events", daemon=True)
    pumper.start()
    try:
        return execute(spec, send, stop, in_worker=True)
    finally:
        finished.set()
        pumper.join()
        flush()  # every event is on the board before the server sees the task end


def connect_ray(address: str | None):
    """ray, initialised: the Ray this process started already, else address ("auto", "host:port"), else a
    new local Ray. An unreachable address raises RunnerError within RAY_CONNECT_SECONDS, never hangs."""
    try:
        import ray
    except ImportError:
        raise RunnerError("the ray backend needs Ray installed: pip install -r requirements-cluster.txt") from None
    if ray.is_initialized():
        return ray
    # Reaching an address has a short limit; starting a local Ray is slow on a busy machine, not a hang.
    limit = RAY_CONNECT_SECONDS if address else RAY_START_SECONDS
    deadline = time.time() + limit
    where = f"the Ray cluster at {address!r} (MNIST_RAY_ADDRESS)" if address else "a new local Ray"
    if address and address != "auto":
        host, _, port = address.removeprefix("ray://").rpartition(":")
        if not host or not port.isdigit():
            raise RunnerError(
                f"MNIST_RAY_ADDRESS={address!r} is not an address: it takes auto or host:port "
                "(the address `ray start --head` prints)"
            )
        try:  # ray.init itself retries an unreachable address for a minute or more
            socket.create_connection((host, int(port)), timeout=RAY_CONNECT_SECONDS / 2).close()
        except OSError as exc:
            raise RunnerError(
                f"cannot reach {where}: {exc}; start the cluster with `ray start --head` or fix the address"
            ) from None
    outcome: dict = {}

    def init() -> None:
        try:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(include_dashboard=False, log_to_driver=False)
            outcome["ok"] = True
        except Exception as exc:  # noqa: BLE001 - said to the caller below
            outcome["error"] = exc

    thread = threading.Thread(target=init, name="ray-connect", daemon=True)
    thread.start()
    thread.join(max(0.5, deadline - time.time()))
    if "error" in outcome:
        raise RunnerError(f"cannot connect to {where}: {outcome['error']}") from None
    if thread.is_alive() or not outcome:
        if not address:
            raise RunnerError(
                f"a new local Ray did not start within {limit:g} s; start one with `ray start --head` "
                "and set MNIST_RAY_ADDRESS=auto"
            )
        raise RunnerError(
            f"{where} did not answer within {limit:g} s; check that the cluster is up "
            "(`ray status`) and the address is the one `ray start --head` printed"
        )
    return ray


class _RayBackend:
    """Each job a Ray task (one CPU) on a local Ray or a cluster; a poller thread drains the board live."""

    name = "ray"

    def __init__(self, on_event, on_end, address: str | None):
        self._on_event, self._on_end = on_event, on_end
        self._ray = ray = connect_ray(address)
        # Workers find this package as the server does; on a cluster every node holds the project at this path.
        path = os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p)
        runtime_env = {"env_vars": {"PYTHONPATH": path}}
        # max_retries=0: a job whose worker died is failed and said so, not silently run again from the start.
        self._task = ray.remote(_ray_job)
        self._task_options = {"max_retries": 0, "runtime_env": runtime_env}
        self._board = ray.remote(_RayBoard).options(num_cpus=0, runtime_env=runtime_env).remote()
        self._jobs: dict[str, object] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="runner-ray", daemon=True)
        self._poller.start()

    def capacity(self) -> int | None:
        return None

    def start(self, spec: JobSpec) -> None:
        # A job of several runs (a comparison) sends each run to the cluster as a task of its own: it only
        # waits for them, so it holds no CPU they could use.
        task = self._task.options(num_cpus=0 if spec.runs > 1 else 1, **self._task_options)
        with self._lock:
            self._jobs[spec.id] = task.remote(spec, self._board)

    def stop(self, job_id: str) -> None:
        self._board.stop.remote(job_id)

    def _poll(self) -> None:
        ray = self._ray
        while not self._closed.wait(POLL_SECONDS):
            with self._lock:
                jobs = dict(self._jobs)
            try:
                finished = set(ray.wait(list(jobs.values()), num_returns=len(jobs), timeout=0)[0]) if jobs else set()
                events = ray.get(self._board.drain.remote(), timeout=30)
            except Exception:  # noqa: BLE001 - a slow or lost answer: look again next time
                log.exception("could not read the jobs' events from Ray")
                continue
            for job_id, batch in events.items():
                for name, data in batch:
                    self._on_event(job_id, name, data)
            for job_id, ref in jobs.items():
                if ref in finished:
                    self._end(job_id, ref)

    def _end(self, job_id: str, ref) -> None:
        ray = self._ray
        from ray.exceptions import RayTaskError

        try:
            result = ray.get(ref, timeout=30)
        except RayTaskError as exc:  # execute() never raises, so this is Ray's own failure
            result = {"status": FAILED, "message": f"Ray could not run the job: {exc}"}
        except Exception:  # noqa: BLE001 - the worker process died (WorkerCrashedError) or its node went away
            result = {"status": FAILED, "message": WORKER_DIED}
        with self._lock:
            self._jobs.pop(job_id, None)
        self._board.forget.remote(job_id)
        self._on_end(job_id, result)

    def shutdown(self) -> None:
        with self._lock:
            jobs = list(self._jobs.items())
        for job_id, _ in jobs:
            self.stop(job_id)
        deadline = time.time() + 30  # running jobs stop within a batch and keep what they learned
        while jobs and time.time() < deadline:
            with self._lock:
                jobs = list(self._jobs.items())
            time.sleep(POLL_SECONDS)
        self._closed.set()
        self._poller.join(2)
        for _, ref in jobs:
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        try:
            self._ray.kill(self._board)
        except Exception:  # noqa: BLE001
            pass


# ---------------------------------------------------------------- the runner


def _kinds_registry() -> Mapping:
    from .kinds import KINDS

    return KINDS


class Runner:
    """Every long job of every visitor, under the host's limits; thread-safe, one per server.

    limits, backend, workers and ray_address default to the host settings; runs_dir to MNIST_RUNS_DIR at
    each submit. on_event(job, name, data) sees every event in this process (the CLI's progress bar).
    worker_nice: how far below the server's the pool workers' CPU priority is (0: the same)."""

    def __init__(
        self,
        limits: HostLimits | None = None,
        backend: str | None = None,
        workers: int | None = None,
        runs_dir=None,
        ray_address: str | None = None,
        kinds: Mapping | None = None,
        on_event: Callable[[JobState, str, dict], None] | None = None,
        worker_nice: int = WORKER_NICE,
    ):
        host = settings() if (limits is None or backend is None or workers is None or ray_address is None) else None
        self.limits = limits or HostLimits.from_env()
        self.backend = backend or host.backend
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        self.runs_dir = runs_dir
        self._kinds = kinds
        self._on_event_hook = on_event
        self._jobs: dict[str, JobState] = {}
        self._queue: deque[str] = deque()
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._closed = False
        if self.backend == "threads":
            self._backend = _ThreadBackend(self._event, self._end)
        elif self.backend == "processes":
            count = workers or (host.workers if host else None) or self.limits.max_jobs
            self._backend = _ProcessBackend(self._event, self._end, count, worker_nice)
        else:
            address = ray_address if ray_address is not None else (host.ray_address if host else None)
            self._backend = _RayBackend(self._event, self._end, address or None)
        self._watch_stop = threading.Event()
        if self.limits.max_run_seconds is not None:
            threading.Thread(target=self._watch_time, name="runner-time-limit", daemon=True).start()
        ref = weakref.ref(self)
        atexit.register(lambda: (runner := ref()) is not None and runner.shutdown())

    # ---- reading

    def get(self, job_id: str) -> JobState | None:
        with self._lock:
            return self._jobs.get(job_id)

    def latest(self, owner: str, kind: str | None = None) -> JobState | None:
        """The owner's newest job (of this kind); another owner's jobs are never returned."""
        with self._lock:
            mine = [job for job in self._jobs.values() if job.owner == owner and kind in (None, job.kind)]
        return max(mine, key=lambda job: job.submitted) if mine else None

    def live(self, owner: str) -> JobState | None:
        """The owner's queued or running job of any kind."""
        with self._lock:
            return self._live(owner)

    def live_owners(self) -> set[str]:
        """The owners with a queued or running job (their files are never cleaned up meanwhile)."""
        with self._lock:
            return {job.owner for job in self._jobs.values() if job.running}

    def running_count(self) -> int:
        with self._lock:
            return self._running()

    def queued_count(self) -> int:
        with self._lock:
            return len(self._queue)

    def worker_pids(self) -> list[int]:
        """The pool's worker processes (processes backend), e.g. for a host's memory figures."""
        return self._backend.pids() if hasattr(self._backend, "pids") else []

    # ---- submitting

    def _kind(self, name: str):
        registry = self._kinds if self._kinds is not None else _kinds_registry()
        if name not in registry:
            raise ValueError(f"unknown job kind {name!r}; the kinds are {', '.join(registry)}")
        return registry[name]

    def submit(self, owner: str, kind: str, config: dict, name: str | None = None, overwrite: bool = False) -> JobState:
        """Admit a job under the host's limits, start it or queue it; raise JobRefused naming the limit,
        or the kind's own error for a bad config or name (nothing runs then)."""
        spec_kind = self._kind(kind)
        try:
            if hosted():  # each visitor's jobs save into (and fine-tune from) the visitor's own folder
                owner_id = owners.key(owner)
                try:
                    owners.check_quota(owner_id, self.runs_dir)
                except owners.QuotaExceeded as exc:
                    raise JobRefused(str(exc), limit="owner_quota_mb") from None
                runs_dir = str(owners.folder(owner_id, self.runs_dir).resolve())
            else:
                runs_dir = str(Path(self.runs_dir or _default_runs_dir()).resolve())  # workers may start elsewhere
            # The config is checked against the owner's drawings, runs and data sets; the view reads the size of
            # the owner's data set.
            with owners.use_folder(runs_dir):
                config = spec_kind.prepare(dict(config), self.limits)
                view = spec_kind.view(config)
            runs = spec_kind.runs(config)
            if runs > self.limits.max_compare_runs:
                raise JobRefused(
                    f"this host runs at most {self.limits.max_compare_runs} training runs in one "
                    f"{spec_kind.label} (MNIST_MAX_COMPARE_RUNS); this one asks for {runs}: use fewer "
                    "values or seeds",
                    limit="max_compare_runs",
                )
            settle = getattr(spec_kind, "settle_name", None)
            if settle is not None:
                name = settle(config, name, overwrite, runs_dir)
            with self._lock:
                if self._closed:
                    raise RunnerError("the job runner has shut down")
                live = self._live(owner)
                if live is not None:
                    where = "waiting to start" if live.status == QUEUED else "running"
                    raise JobRefused(
                        f"you already have a {live.label} {where} ({_page_name(live.page)}); "
                        "stop it or wait for it to finish",
                        limit="one job per visitor",
                    )
                start_now = not self._queue and self._running() < self._slots()
                if not start_now and len(self._queue) >= self.limits.max_queued:
                    raise JobRefused(
                        f"this host runs at most {self.limits.max_jobs} job(s) at once (MNIST_MAX_JOBS) "
                        f"and {len(self._queue)} are waiting already, the most it queues "
                        "(MNIST_MAX_QUEUED); try again in a few minutes",
                        limit="max_queued",
                    )
                spec = JobSpec(
                    uuid.uuid4().hex[:10],
                    kind,
                    owner,
                    config,
                    name,
                    overwrite,
                    runs_dir,
                    spec_kind.work,
                    {k: v for k, v in os.environ.items() if _is_setting(k)},
                    runs,
                )
                job = JobState(spec, view=view, label=spec_kind.label, page=spec_kind.page)
                self._jobs[spec.id] = job
                self._forget_old(owner)
                if start_now:
                    self._launch(job)
                else:
                    self._queue.append(spec.id)
                    self._number_queue()
                    log.info("job %s queued at %d: owner=%s kind=%s", spec.id, job.position, owner, kind)
            return job
        except JobRefused as exc:
            log.warning("refused: owner=%s kind=%s limit=%s: %s", owner, kind, exc.limit or "-", exc)
            raise

    def _slots(self) -> int:
        capacity = self._backend.capacity()
        return self.limits.max_jobs if capacity is None else min(self.limits.max_jobs, capacity)

    def _running(self) -> int:
        return sum(job.status == RUNNING for job in self._jobs.values())

    def _live(self, owner: str) -> JobState | None:
        return next((job for job in self._jobs.values() if job.owner == owner and job.running), None)

    def _number_queue(self) -> None:
        for place, job_id in enumerate(self._queue, start=1):
            job = self._jobs[job_id]
            with job._lock:
                job.position = place

    def _forget_old(self, owner: str) -> None:
        ended = sorted((job for job in self._jobs.values() if job.ended), key=lambda job: job.submitted)
        mine = [job for job in ended if job.owner == owner]
        for job in mine[:-ENDED_KEPT_PER_OWNER] + ended[:-ENDED_KEPT]:
            self._jobs.pop(job.id, None)

    def _launch(self, job: JobState) -> None:
        with job._lock:
            job.status, job.started, job.position, job.stage = RUNNING, time.time(), None, "starting"
        log.info("job %s started: owner=%s kind=%s backend=%s", job.id, job.owner, job.kind, self.backend)
        try:
            self._backend.start(job.spec)
        except Exception as exc:  # noqa: BLE001 - the job fails, its slot frees
            threading.Thread(
                target=self._end, args=(job.id, {"status": FAILED, "message": f"could not start: {exc}"}), daemon=True
            ).start()

    def _start_queued(self) -> None:
        while self._queue and self._running() < self._slots() and not self._closed:
            self._launch(self._jobs[self._queue.popleft()])
        self._number_queue()

    # ---- events and ends (called by the backends)

    def _event(self, job_id: str, name: str, data: dict) -> None:
        job = self.get(job_id)
        if job is None:
            return
        with job._lock:
            if name == "worker":
                job.pid, job.worker = data.get("pid"), f"pid {data.get('pid')} on {data.get('host')}"
            elif name == "stage":
                job.stage = str(data.get("stage", ""))
            elif name == "progress":
                job.done, job.total = float(data.get("done", 0)), float(data.get("total", 0))
            if name not in _INTERNAL_EVENTS and job.view is not None and hasattr(job.view, "on_event"):
                try:
                    job.view.on_event(name, data)
                except Exception:  # noqa: BLE001 - a view's bug must not end the job's reporting
                    log.exception("the view of job %s could not take a %r event", job_id, name)
        if self._on_event_hook is not None:
            self._on_event_hook(job, name, data)

    def _end(self, job_id: str, result: dict) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.ended:
                return
            status = result.get("status") if result.get("status") in ENDED else FAILED
            message = str(result.get("message", ""))
            # Only a visitor's Stop and the host's time limit stop a job (the kind may apply the limit itself).
            capped = job.time_capped or (self.limits.max_run_seconds is not None and not job.stop_requested)
            if capped and status == STOPPED:
                message = (
                    f"stopped after {self.limits.max_run_seconds:g} s, this host's time limit per run "
                    "(MNIST_MAX_RUN_SECONDS); what it learned is kept"
                )
            with job._lock:
                job.status, job.message, job.result, job.finished = status, message, result, time.time()
                job.stage = "done"
            log_level = logging.WARNING if status == FAILED else logging.INFO
            log.log(
                log_level,
                "job %s %s: owner=%s kind=%s seconds=%.1f: %s",
                job_id,
                status,
                job.owner,
                job.kind,
                job.seconds,
                message,
            )
            self._start_queued()
            self._changed.notify_all()

    def _watch_time(self) -> None:
        cap = self.limits.max_run_seconds
        while not self._watch_stop.wait(POLL_SECONDS):
            now = time.time()
            with self._lock:
                over = [
                    job
                    for job in self._jobs.values()
                    if job.status == RUNNING and not job.time_capped and now - job.started >= cap
                ]
                for job in over:
                    job.time_capped = True
            for job in over:
                log.info(
                    "job %s reached the time limit of %g s: owner=%s kind=%s limit=max_run_seconds",
                    job.id,
                    cap,
                    job.owner,
                    job.kind,
                )
                self._backend.stop(job.id)

    # ---- control

    def stop(self, job_id_or_owner: str) -> bool:
        """Stop a job (by id, or the owner's live job): a queued one ends at once, a running one is asked
        to stop and keeps what it learned. False when there was nothing to stop."""
        with self._lock:
            job = self._jobs.get(job_id_or_owner) or self._live(job_id_or_owner)
            if job is None or not job.running:
                return False
            if job.status == QUEUED:
                self._queue.remove(job.id)
                with job._lock:
                    job.status, job.message, job.finished, job.position = (
                        STOPPED,
                        "stopped before it started",
                        time.time(),
                        None,
                    )
                    job.stop_requested = True
                self._number_queue()
                log.info("job %s stopped before it started: owner=%s kind=%s", job.id, job.owner, job.kind)
                self._changed.notify_all()
                return True
            job.stop_requested = True
        self._backend.stop(job.id)
        return True

    def wait(self, job_id: str, timeout: float | None = 60.0) -> JobState | None:
        """The job once it has ended, or as it is when the timeout passes (None: unknown id)."""
        deadline = None if timeout is None else time.time() + timeout
        with self._lock:
            job = self._jobs.get(job_id)
            while job is not None and not job.ended and not self._closed:
                left = None if deadline is None else deadline - time.time()
                if left is not None and left <= 0:
                    break
                self._changed.wait(0.5 if left is None else min(left, 0.5))
            return job

    def shutdown(self) -> None:
        """Stop every job and the workers; jobs that had not ended are marked stopped."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.clear()
        self._watch_stop.set()
        self._backend.shutdown()
        with self._lock:
            for job in self._jobs.values():
                if job.running:
                    with job._lock:
                        job.status, job.finished = STOPPED, time.time()
                        job.message = "stopped: the server shut down"
            self._changed.notify_all()


def _default_runs_dir() -> Path:
    from .checkpoints import runs_dir

    return runs_dir()


def _page_name(page: str) -> str:
    """'pages/3_Train.py' -> 'the Train page'."""
    stem = Path(page).stem
    words = stem.split("_", 1)[-1].replace("_", " ") if "_" in stem else stem
    return f"the {words} page" if words else "its page"


def run_to_end(
    kind: str,
    config: dict,
    name: str | None = None,
    backend: str = "processes",
    on_event: Callable[[str, dict], None] | None = None,
    overwrite: bool = False,
    limits: HostLimits | None = None,
    ray_address: str | None = None,
    runs_dir=None,
) -> JobState:
    """For the command line: one job on a private runner, its events to on_event, its end state back.
    Ctrl+C stops the job (it keeps what it learned) and waits for it to end. backend "local" means processes."""
    backend = "processes" if backend == "local" else backend
    hook = (lambda job, event, data: on_event(event, data)) if on_event is not None else None
    runner = Runner(
        limits or HostLimits.from_env(),
        backend=backend,
        workers=1,
        ray_address=ray_address,
        runs_dir=runs_dir,
        on_event=hook,
    )
    try:
        job = runner.submit("cli", kind, config, name=name, overwrite=overwrite)
        try:
            runner.wait(job.id, timeout=None)
        except KeyboardInterrupt:
            print("stopping (keeping what was learned)...", file=sys.stderr)
            runner.stop(job.id)
            runner.wait(job.id, timeout=None)
        return job.snapshot()
    finally:
        runner.shutdown()
