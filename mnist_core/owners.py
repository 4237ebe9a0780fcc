"""Owners: in hosted mode (MNIST_HOSTED=1) each browser's runs, GANs and drawings live in a folder of its own.

The folder is <runs root>/owners/<owner id>, where the owner id is the one jobs use (a browser id such as
"browser-0123456789abcdef"). Which folder is the current one is a context variable, set for every script
run (use(owner)) and inside every job (use_folder(spec.runs_dir)), so checkpoints.runs_dir() and everything
built on it (saving, listing, renaming, deleting runs and GANs, drawings, fine-tuning) follow it without
being told who asks. Locally (not hosted) nothing is set and every run lives in the one runs folder as before.

The root runs folder keeps the server-wide caches (maps, predictions, features): content-addressed, alike
for every visitor, so computed once per server.

A visitor's folder carries a last-seen marker (touch()); remove_idle() deletes the folders of visitors unseen
for longer than MNIST_OWNER_IDLE_HOURS, never one with a queued or running job. check_quota() refuses new
saves and jobs once a visitor's files reach MNIST_OWNER_QUOTA_MB.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from .files import write_text_atomic
from .host import hosted, settings

OWNERS = "owners"  # the folder under the root runs folder that holds one folder per visitor
SEEN = ".last-seen"  # a visitor's last-seen marker; a dot file, so no listing of runs or drawings shows it
TOUCH_EVERY_S = 60.0  # a page run marks its visitor at most this often: idle hours need no finer clock
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

log = logging.getLogger("mnist_core.owners")

_folder: contextvars.ContextVar[Path | None] = contextvars.ContextVar("mnist_owner_folder", default=None)
_touched: dict[str, float] = {}
_touched_lock = threading.Lock()
_sweep_lock = threading.Lock()
_last_sweep = [float("-inf")]


class OwnerError(ValueError):
    """An owner id that cannot name a folder."""


class QuotaExceeded(OwnerError):
    """A visitor's files reached the host's per-visitor disk quota."""

    def __init__(self, message: str, used_bytes: int, limit_bytes: int):
        super().__init__(message)
        self.used_bytes, self.limit_bytes = used_bytes, limit_bytes


def key(identity: str) -> str:
    """The owner id for any session identity: itself when it is already a safe id (a browser id, a uuid),
    else a digest of it (AppTest's "test session id", anything with a path separator in it)."""
    identity = str(identity)
    return identity if _ID.fullmatch(identity) else "id-" + hashlib.sha256(identity.encode()).hexdigest()[:16]


def validate(owner: str) -> str:
    if not isinstance(owner, str) or not _ID.fullmatch(owner):
        raise OwnerError(f"owner id {owner!r} is not valid: it takes 1 to 64 letters, digits, '_' or '-'")
    return owner


def owners_root(runs_root: Path | str | None = None) -> Path:
    from .checkpoints import shared_runs_dir  # checkpoints imports this module

    return Path(runs_root or shared_runs_dir()) / OWNERS


def folder(owner: str, runs_root: Path | str | None = None) -> Path:
    """The owner's folder under the root runs folder (MNIST_RUNS_DIR or ./runs, or runs_root)."""
    return owners_root(runs_root) / validate(owner)


def current() -> Path | None:
    """The current owner's folder; None locally or outside any visitor's script run or job."""
    return _folder.get()


class _Setting:
    """The value use()/use_folder() set: kept for the rest of the thread, or until the with block ends."""

    def __init__(self, target: Path | None):
        self.folder = target
        self._token = _folder.set(target)

    def __enter__(self) -> _Setting:
        return self

    def __exit__(self, *exc) -> None:
        _folder.reset(self._token)


def use(owner: str | None) -> _Setting:
    """Make owner's folder the current one (hosted mode only; locally this sets none). Usable as a setter or
    as a context manager that restores the previous folder."""
    return _Setting(folder(key(owner)) if owner is not None and hosted() else None)


def use_folder(path: Path | str | None) -> _Setting:
    """The job side: a job's runs folder (an owner's folder in hosted mode) becomes the current one."""
    return _Setting(Path(path) if path and hosted() else None)


def touch(owner: str, runs_root: Path | str | None = None, now: float | None = None) -> bool:
    """Mark the owner as seen now (at most once every TOUCH_EVERY_S); True when the marker was written.

    An owner with no folder yet has nothing to keep, so nothing is written for them."""
    now = time.time() if now is None else now
    target = folder(owner, runs_root)
    with _touched_lock:
        if now - _touched.get(str(target), float("-inf")) < TOUCH_EVERY_S:
            return False
    if not target.is_dir():
        return False
    write_text_atomic(target / SEEN, f"{now:.0f}\n")
    os.utime(target / SEEN, (now, now))
    with _touched_lock:
        _touched[str(target)] = now
    return True


def usage_bytes(owner: str, runs_root: Path | str | None = None) -> int:
    """Bytes of every file in the owner's folder (links are not followed)."""
    return _bytes_in(folder(owner, runs_root))


def _bytes_in(path: Path) -> int:
    total = 0
    for base, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(base, name)).st_size
            except OSError:  # removed meanwhile
                pass
    return total


def check_quota(owner: str, runs_root: Path | str | None = None, limit_mb: float | None = None) -> None:
    """Raise QuotaExceeded when the owner's files reached the per-visitor quota (MNIST_OWNER_QUOTA_MB by
    default; no quota when it is unset)."""
    _check(folder(owner, runs_root), limit_mb)


def check_current_quota() -> None:
    """check_quota() for the current owner (hosted mode's script run or job); nothing locally."""
    if (path := current()) is not None:
        _check(path, None)


def _check(path: Path, limit_mb: float | None) -> None:
    limit_mb = settings().owner_quota_mb if limit_mb is None else limit_mb
    if limit_mb is None:
        return
    used, limit = _bytes_in(path), int(limit_mb * 1024 * 1024)
    if used >= limit:
        raise QuotaExceeded(
            f"your runs and drawings use {used / 2**20:.2f} MB and this host keeps at most "
            f"{limit_mb:g} MB per visitor (MNIST_OWNER_QUOTA_MB={limit_mb:g}); delete some of your "
            "runs on the Train page (or GAN runs on the GAN page) to make room",
            used,
            limit,
        )


def last_seen(path: Path) -> float:
    """When the owner of this folder was last seen: their marker, or the folder's last change (a save)."""
    times = [path.stat().st_mtime]
    try:
        times.append((path / SEEN).stat().st_mtime)
    except OSError:
        pass
    return max(times)


def remove_idle(
    max_idle_seconds: float,
    live_owners: Iterable[str] = (),
    now: float | None = None,
    runs_root: Path | str | None = None,
) -> list[str]:
    """Delete the folders of owners unseen for longer than max_idle_seconds, except live_owners (session
    identities with a queued or running job); returns the owner ids removed, one log line each."""
    now = time.time() if now is None else now
    keep = {key(owner) for owner in live_owners}
    root = owners_root(runs_root)
    removed = []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if not path.is_dir() or path.is_symlink() or path.name in keep or not _ID.fullmatch(path.name):
            continue
        try:
            idle = now - last_seen(path)
        except OSError:
            continue
        if idle <= max_idle_seconds:
            continue
        shutil.rmtree(path, ignore_errors=True)
        with _touched_lock:
            _touched.pop(str(path), None)
        removed.append(path.name)
        log.info(
            "removed the files of owner=%s: unseen for %.1f hours (MNIST_OWNER_IDLE_HOURS)", path.name, idle / 3600
        )
    return removed


def sweep(live_owners: Iterable[str] = (), every_s: float = 300.0, now: float | None = None) -> list[str]:
    """remove_idle() with MNIST_OWNER_IDLE_HOURS, at most once every every_s per server process (a page run
    calls it; the other runs in that window return at once)."""
    hours = settings().owner_idle_hours
    if hours is None:
        return []
    now = time.time() if now is None else now
    with _sweep_lock:
        if now - _last_sweep[0] < every_s:
            return []
        _last_sweep[0] = now
    return remove_idle(hours * 3600, live_owners, now)
