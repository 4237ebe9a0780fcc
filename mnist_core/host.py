"""The host's settings (the MNIST_* environment variables), read and checked in one place.

The app and the CLI call settings() once at start: a bad value stops them with one line naming the
variable and what it accepts, instead of a traceback on every page or a refusal that blames the user.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

TRUE, FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")
FOLDERS = {  # variable -> what it holds; each may be unset (the default folder is used)
    "MNIST_RUNS_DIR": "the folder saved runs go to",
    "MNIST_DRAWINGS_DIR": "the folder saved drawings go to",
    "MNIST_CACHE_DIR": "the folder computed maps are cached in",
    "FASHION_MNIST_DIR": "the folder of Fashion-MNIST IDX files",
}
EXISTING_FOLDERS = {  # these are read, so they must exist
    "MNIST_DATA_DIR": "the folder of MNIST IDX files",
}


BACKENDS = {"processes": "a pool of worker processes, the default", "threads": "threads of the server",
            "ray": "a Ray cluster or a local Ray"}


class HostSettingError(ValueError):
    """An MNIST_* variable whose value cannot work, named with what it accepts."""


@dataclass(frozen=True)
class HostSettings:
    max_jobs: int = 1
    max_epochs: int | None = None
    max_run_seconds: float | None = None
    hosted: bool = False
    folders: tuple[tuple[str, Path], ...] = ()  # (variable, path) of each folder variable that is set
    backend: str = "processes"  # where jobs run: worker processes, threads of the server, or Ray
    workers: int | None = None  # worker processes in the pool; None: as many as max_jobs
    ray_address: str | None = None  # "auto" or "host:port" of a Ray cluster; None: a local Ray when backend is ray
    max_compare_runs: int = 40  # training runs one comparison may hold (arms x seeds)
    max_queued: int = 20  # jobs that may wait for a free slot
    owner_quota_mb: float | None = None  # disk one visitor's runs and drawings may use; None: no quota
    owner_idle_hours: float | None = None  # a visitor's files are removed after this long unseen; None: kept


def _whole(env: Mapping[str, str], name: str, meaning: str) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    if not re.fullmatch(r"\+?\d+", raw) or int(raw) < 1:
        raise HostSettingError(f"{name}={env[name]!r} is not valid: it takes a whole number of at least 1 "
                               f"({meaning}), or leave it unset")
    return int(raw)


def _positive(env: Mapping[str, str], name: str, meaning: str, unit: str = "a number") -> float | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise HostSettingError(f"{name}={env[name]!r} is not valid: it takes {unit} above 0 ({meaning}), "
                               "or leave it unset for no limit")
    return value


def _choice(env: Mapping[str, str], name: str, choices: dict[str, str], default: str) -> str:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in choices:
        accepts = "; ".join(f"{key} ({meaning})" for key, meaning in choices.items())
        raise HostSettingError(f"{name}={env[name]!r} is not valid: it takes {accepts}, or leave it unset")
    return raw


def _ray_address(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    host, _, port = raw.removeprefix("ray://").rpartition(":")
    if raw == "auto" or (host and not any(c.isspace() for c in host) and port.isdigit() and 0 < int(port) < 65536):
        return raw
    raise HostSettingError(f"{name}={env[name]!r} is not valid: it takes auto (the cluster this machine belongs "
                           "to) or host:port (the address `ray start --head` prints), or leave it unset")


def _folder(env: Mapping[str, str], name: str, meaning: str, must_exist: bool) -> Path | None:
    raw = env.get(name, "")
    if not raw.strip():
        return None
    path = Path(raw).expanduser()
    if "\0" in raw:
        problem = "contains a NUL character"
    elif path.exists() and not path.is_dir():
        problem = "is a file, not a folder"
    elif must_exist and not path.is_dir():
        problem = "does not exist"
    else:
        return path
    raise HostSettingError(f"{name}={raw!r} is not valid: it {problem}; it takes {meaning} (a folder), "
                           "or leave it unset for the default")


def hosted(environ: Mapping[str, str] | None = None) -> bool:
    """MNIST_HOSTED alone: the error guard needs it before anything else is read, even when another setting is bad."""
    env = os.environ if environ is None else environ
    value = env.get("MNIST_HOSTED", "").strip().lower()
    if value not in TRUE + FALSE:
        raise HostSettingError(f"MNIST_HOSTED={env['MNIST_HOSTED']!r} is not valid: it takes 1 (a public, hosted app) "
                               "or 0 (a local app), or leave it unset")
    return value in TRUE


def settings(environ: Mapping[str, str] | None = None) -> HostSettings:
    """Every MNIST_* setting, checked; raises HostSettingError for the first bad one."""
    env = os.environ if environ is None else environ
    is_hosted = hosted(env)
    folders = []
    for name, meaning in FOLDERS.items():
        if (path := _folder(env, name, meaning, must_exist=False)) is not None:
            folders.append((name, path))
    for name, meaning in EXISTING_FOLDERS.items():
        if (path := _folder(env, name, meaning, must_exist=True)) is not None:
            folders.append((name, path))
    return HostSettings(
        max_jobs=_whole(env, "MNIST_MAX_JOBS", "how many training jobs may run at once; unset means 1") or 1,
        max_epochs=_whole(env, "MNIST_MAX_EPOCHS", "the most epochs one run may ask for"),
        max_run_seconds=_positive(env, "MNIST_MAX_RUN_SECONDS", "the longest one run may train", "a number of seconds"),
        hosted=is_hosted,
        folders=tuple(folders),
        backend=_choice(env, "MNIST_BACKEND", BACKENDS, "processes"),
        workers=_whole(env, "MNIST_WORKERS", "how many worker processes run jobs; unset means MNIST_MAX_JOBS"),
        ray_address=_ray_address(env, "MNIST_RAY_ADDRESS"),
        max_compare_runs=_whole(env, "MNIST_MAX_COMPARE_RUNS",
                                "how many training runs one comparison may hold; unset means 40") or 40,
        max_queued=_whole(env, "MNIST_MAX_QUEUED", "how many jobs may wait for a free slot; unset means 20") or 20,
        owner_quota_mb=_positive(env, "MNIST_OWNER_QUOTA_MB", "megabytes of runs and drawings one visitor may keep"),
        owner_idle_hours=_positive(env, "MNIST_OWNER_IDLE_HOURS",
                                   "hours after which an unseen visitor's runs and drawings are removed"),
    )


def problem(environ: Mapping[str, str] | None = None) -> str | None:
    """The one line that says what is wrong with the host's settings, or None when they are fine."""
    try:
        settings(environ)
    except HostSettingError as exc:
        return str(exc)
    return None
