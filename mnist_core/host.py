"""The host's settings (the MNIST_* environment variables), read and checked in one place.

The app and the CLI call settings() once at start: a bad value stops them with one line naming the
variable and what it accepts, instead of a traceback on every page or a refusal that blames the user.

MNIST_HOSTED=1 (a public demo) gives every cap the host left unset the value in HOSTED_LIMITS, and
switches off downloads. `python -m mnist_core.host` prints the table of limits.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

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


BACKENDS = {
    "processes": "a pool of worker processes, the default",
    "threads": "threads of the server",
    "ray": "a Ray cluster or a local Ray",
}


@dataclass(frozen=True)
class HostedLimit:
    """One cap of hosted mode: the value it takes when MNIST_HOSTED=1 and the host left it unset."""

    variable: str
    hosted: str  # the value hosted mode gives it when unset
    local: str  # what unset means without hosted mode, in words
    bounds: str
    why: str


# Sized for a 2-core host with 0.7-2.7 GB of memory (Streamlit Community Cloud's range) and a class of about
# 30 visitors. Figures from benchmarks/results/ (footprint, time_to_99, embeddings), CPU torch on 2 cores.
HOSTED_LIMITS = (
    HostedLimit(
        "MNIST_MAX_JOBS",
        "2",
        "1",
        "jobs (training, comparison, GAN, transfer, map) running at once",
        "one per core of a 2-core host; a job's worker holds 170-300 MB, so the app (450-900 MB) and two "
        "workers fit in 1.5 GB",
    ),
    HostedLimit(
        "MNIST_MAX_QUEUED",
        "10",
        "20",
        "jobs waiting for a free slot",
        "a third of a class of 30; beyond that a visitor is told to come back rather than wait an hour",
    ),
    HostedLimit(
        "MNIST_MAX_EPOCHS",
        "5",
        "no limit",
        "epochs one job may ask for (a GAN's, a transfer's and a map's epoch are defined by the job: see the refusal)",
        "an epoch of the fast CNN takes 6-15 s on 2 cores; 5 is the GAN page's default",
    ),
    HostedLimit(
        "MNIST_MAX_RUN_SECONDS",
        "300",
        "no limit",
        "seconds one job may run before it is stopped (ended cleanly, what it learned kept)",
        "5 minutes: with 2 slots and a queue of 10, the last in the queue waits at most about 25 minutes",
    ),
    HostedLimit(
        "MNIST_MAX_COMPARE_RUNS",
        "10",
        "40",
        "training runs (arms x seeds) one comparison may hold",
        "5 arms x 2 seeds of a one-epoch run (6-15 s each) fit in the 300 s one job may run",
    ),
    HostedLimit(
        "MNIST_MAX_PARALLEL",
        "1",
        "the machine's cores",
        "runs of one comparison trained at once",
        "parallel runs take the cores the other visitors' jobs and pages need",
    ),
    HostedLimit(
        "MNIST_MAX_MAP_POINTS",
        "10000",
        "70,000 (every digit)",
        "digits one PCA, t-SNE or UMAP map may use",
        "UMAP of 10,000 digits takes 13 s, of 70,000 53 s, t-SNE of 70,000 120 s; every browser that views "
        "a map receives all its points",
    ),
    HostedLimit(
        "MNIST_OWNER_QUOTA_MB",
        "50",
        "no quota",
        "megabytes of runs and drawings one visitor may keep",
        "a checkpoint is 0.07-5 MB (the shipped ones), so ten runs or more each; 30 visitors stay under 1.5 GB of disk",
    ),
    HostedLimit(
        "MNIST_OWNER_IDLE_HOURS",
        "24",
        "kept",
        "hours after which an unseen visitor's runs and drawings are removed",
        "a class's work survives the day, and the disk does not fill over weeks",
    ),
)
HOSTED_DEFAULTS = {limit.variable: limit.hosted for limit in HOSTED_LIMITS}
HOSTED_SWITCHES = (  # (what, why): off in hosted mode, on locally; MNIST_HOSTED alone decides them
    (
        "Downloads (pretrained backbone weights on the Transfer page)",
        "a visitor could start a 528 MB download into the server's disk and memory",
    ),
)


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
    max_parallel: int | None = None  # runs of one comparison trained at once; None: as many as asked
    max_map_points: int | None = None  # digits one map may use; None: every digit

    @property
    def downloads(self) -> bool:
        """Whether a visitor may start a download (off in hosted mode)."""
        return not self.hosted


def _whole(env: Mapping[str, str], name: str, meaning: str) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    if not re.fullmatch(r"\+?\d+", raw) or int(raw) < 1:
        raise HostSettingError(
            f"{name}={env[name]!r} is not valid: it takes a whole number of at least 1 ({meaning}), or leave it unset"
        )
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
        raise HostSettingError(
            f"{name}={env[name]!r} is not valid: it takes {unit} above 0 ({meaning}), or leave it unset for no limit"
        )
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
    raise HostSettingError(
        f"{name}={env[name]!r} is not valid: it takes auto (the cluster this machine belongs "
        "to) or host:port (the address `ray start --head` prints), or leave it unset"
    )


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
    raise HostSettingError(
        f"{name}={raw!r} is not valid: it {problem}; it takes {meaning} (a folder), or leave it unset for the default"
    )


def hosted(environ: Mapping[str, str] | None = None) -> bool:
    """MNIST_HOSTED alone: the error guard needs it before anything else is read, even when another setting is bad."""
    env = os.environ if environ is None else environ
    value = env.get("MNIST_HOSTED", "").strip().lower()
    if value not in TRUE + FALSE:
        raise HostSettingError(
            f"MNIST_HOSTED={env['MNIST_HOSTED']!r} is not valid: it takes 1 (a public, hosted app) "
            "or 0 (a local app), or leave it unset"
        )
    return value in TRUE


def settings(environ: Mapping[str, str] | None = None) -> HostSettings:
    """Every MNIST_* setting, checked; raises HostSettingError for the first bad one."""
    env = os.environ if environ is None else environ
    is_hosted = hosted(env)
    if is_hosted:  # the host's own value wins; only unset (or blank) caps take the hosted one
        env = {**env, **{name: value for name, value in HOSTED_DEFAULTS.items() if not env.get(name, "").strip()}}
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
        max_compare_runs=_whole(
            env, "MNIST_MAX_COMPARE_RUNS", "how many training runs one comparison may hold; unset means 40"
        )
        or 40,
        max_queued=_whole(env, "MNIST_MAX_QUEUED", "how many jobs may wait for a free slot; unset means 20") or 20,
        owner_quota_mb=_positive(env, "MNIST_OWNER_QUOTA_MB", "megabytes of runs and drawings one visitor may keep"),
        owner_idle_hours=_positive(
            env, "MNIST_OWNER_IDLE_HOURS", "hours after which an unseen visitor's runs and drawings are removed"
        ),
        max_parallel=_whole(env, "MNIST_MAX_PARALLEL", "how many runs of one comparison train at once"),
        max_map_points=_whole(env, "MNIST_MAX_MAP_POINTS", "how many digits one map may use"),
    )


def describe_limits(environ: Mapping[str, str] | None = None) -> list[dict[str, str]]:
    """Every limit hosted mode sets, with the value in force here: the rows of the README's table and of the
    app's "hosted demo" expander. Raises HostSettingError as settings() does."""
    env = os.environ if environ is None else environ
    current = settings(env)
    rows = []
    for limit in HOSTED_LIMITS:
        own = env.get(limit.variable, "").strip()
        value = own or (limit.hosted if current.hosted else limit.local)
        rows.append(
            {
                "setting": limit.variable,
                "in force": value,
                "local default": limit.local,
                "hosted default": limit.hosted,
                "bounds": limit.bounds,
                "why": limit.why,
            }
        )
    for what, why in HOSTED_SWITCHES:
        rows.append(
            {
                "setting": "MNIST_HOSTED",
                "in force": "off" if current.hosted else "on",
                "local default": "on",
                "hosted default": "off",
                "bounds": what,
                "why": why,
            }
        )
    return rows


def limits_table(environ: Mapping[str, str] | None = None) -> str:
    """describe_limits() as a Markdown table (setting, local default, hosted default, what it bounds, why)."""
    lines = ["| Setting | Local default | Hosted default | What it bounds | Why this value |", "|---|---|---|---|---|"]
    for row in describe_limits(environ):
        lines.append(
            f"| `{row['setting']}` | {row['local default']} | {row['hosted default']} | {row['bounds']} "
            f"| {row['why']} |"
        )
    return "\n".join(lines)


def problem(environ: Mapping[str, str] | None = None) -> str | None:
    """The one line that says what is wrong with the host's settings, or None when they are fine."""
    try:
        settings(environ)
    except HostSettingError as exc:
        return str(exc)
    return None


if __name__ == "__main__":  # python -m mnist_core.host: the hosted-mode table, for the README or a host
    print(limits_table())
