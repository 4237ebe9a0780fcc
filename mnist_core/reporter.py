"""How long work talks to whoever runs it: a stage, progress, named events, and a stop request.

Every work function (a training run, a GAN, a transfer, a map, a comparison) takes one Reporter.
The job runner builds it around its transport (a lock-guarded state in a thread, a queue from a
worker process, a Ray queue); a direct call without a runner uses NULL_REPORTER, or a Reporter
around a function, and sees the same events.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

# What a job is at any moment, for every kind. A run that reached its target or its batch cap is
# "done" with a message saying so; "stopped" keeps what was learned; "failed" carries the reason.
QUEUED, RUNNING, DONE, STOPPED, FAILED = "queued", "running", "done", "stopped", "failed"
STATUSES = (QUEUED, RUNNING, DONE, STOPPED, FAILED)
ENDED = (DONE, STOPPED, FAILED)


class StopFlag(Protocol):
    def is_set(self) -> bool: ...


class _NeverSet:
    def is_set(self) -> bool:
        return False


class Reporter:
    """One job's channel back to its runner.

    send(name, data) carries every event: "stage" ({"stage": text}), "progress" ({"done", "total"}),
    and the kind's own names ("batch", "epoch", "step", "arm", ...). data must be picklable (plain
    values, lists, dicts, NumPy arrays): it may cross a process or a machine.
    """

    def __init__(self, send: Callable[[str, dict], None] | None = None, stop: StopFlag | None = None):
        self._send = send
        self.stop: StopFlag = stop if stop is not None else _NeverSet()

    def event(self, name: str, data: dict) -> None:
        if self._send is not None:
            self._send(name, data)

    def stage(self, text: str) -> None:
        self.event("stage", {"stage": text})

    def progress(self, done: float, total: float, stage: str | None = None) -> None:
        if stage is not None:
            self.stage(stage)
        self.event("progress", {"done": done, "total": total})

    @property
    def stopping(self) -> bool:
        return self.stop.is_set()


NULL_REPORTER = Reporter()


def collecting_reporter(stop: threading.Event | None = None) -> tuple[Reporter, list[tuple[str, dict]]]:
    """A reporter that keeps every event in a list (for a direct call that wants to look at them)."""
    events: list[tuple[str, dict]] = []
    return Reporter(lambda name, data: events.append((name, data)), stop), events
