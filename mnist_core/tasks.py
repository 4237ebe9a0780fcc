"""Long computations (an embedding map) in a background thread, keyed so a revisit finds them.

A user can start one, look at other pages, and come back: the task lives in the process, not in
the browser session. One heavy task runs at a time; asking for a second says which one is running.
A task can be asked to stop: its next progress report raises TaskStopped, which ends it as stopped.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable


KEEP_DONE = 16


class TaskBusyError(RuntimeError):
    """Another task is running and this host runs one at a time."""


class TaskStopped(Exception):
    """Raised inside a task's work, at a progress report, once someone asked it to stop."""


@dataclass
class Task:
    key: str
    label: str
    started: float = field(default_factory=time.time)
    fraction: float = 0.0
    stage: str = "starting"
    result: Any = None
    error: str | None = None
    finished: float | None = None
    stopped: bool = False  # ended on request, with no result
    stop_requested: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def running(self) -> bool:
        return self.finished is None

    def report(self, fraction: float, stage: str) -> None:
        if self.stop_requested.is_set():
            raise TaskStopped(f"stopped at {self.fraction:.0%} ({self.stage})")
        self.fraction, self.stage = fraction, stage


class TaskRunner:
    def __init__(self, max_running: int = 1):
        self.max_running = max_running
        self._tasks: dict[str, Task] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Task | None:
        with self._lock:
            return self._tasks.get(key)

    def running(self) -> list[Task]:
        with self._lock:
            return [t for t in self._tasks.values() if t.running]

    def start(self, key: str, label: str, work: Callable[[Callable[[float, str], None]], Any]) -> Task:
        """Run work(report) in a thread; the same key while running (or done) returns the existing task."""
        with self._lock:
            existing = self._tasks.get(key)
            if existing is not None and (existing.running or (existing.error is None and not existing.stopped)):
                return existing
            busy = [t for t in self._tasks.values() if t.running]
            if len(busy) >= self.max_running:
                raise TaskBusyError(f"this host computes one map at a time and '{busy[0].label}' is running "
                                    f"({busy[0].fraction:.0%}); try again when it finishes")
            task = Task(key, label)
            self._tasks[key] = task
            done = sorted((t for t in self._tasks.values() if not t.running), key=lambda t: t.finished)
            for old in done[: max(0, len(done) - KEEP_DONE)]:  # results stay in memory; keep it bounded
                del self._tasks[old.key]
        threading.Thread(target=self._run, args=(task, work), name=f"task-{key}", daemon=True).start()
        return task

    def stop(self, key: str) -> None:
        """Ask a running task to end at its next progress report (work that reports often stops soon)."""
        task = self.get(key)
        if task is not None and task.running:
            task.stop_requested.set()

    def forget(self, key: str) -> None:
        with self._lock:
            task = self._tasks.get(key)
            if task is not None and not task.running:
                del self._tasks[key]

    @staticmethod
    def _run(task: Task, work) -> None:
        try:
            task.result = work(task.report)
            task.fraction, task.stage = 1.0, "done"
        except TaskStopped as exc:
            task.stopped, task.stage = True, str(exc)  # "stopped at 40% (what it was doing)"
        except Exception as exc:  # the page shows it; the app keeps working
            task.error = f"{type(exc).__name__}: {exc}"
        finally:
            task.finished = time.time()

    def wait(self, key: str, timeout: float = 60.0) -> Task | None:
        deadline = time.time() + timeout
        while (task := self.get(key)) is not None and task.running and time.time() < deadline:
            time.sleep(0.05)
        return task
