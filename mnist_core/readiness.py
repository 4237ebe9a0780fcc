"""Is this install ready to serve? MNIST loaded and checked, and every shipped checkpoint loads.

The app logs the answer once per server process (one line on stderr) and its home page shows what is
missing; `python -c "from mnist_core.readiness import check; print(check().line())"` asks from a shell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .checkpoints import SHIPPED_DIR, CheckpointError, load, scan
from .data import SPLIT_SIZES, DataError, load_mnist, resolve_data_dir


@dataclass(frozen=True)
class Readiness:
    mnist: str  # what was loaded, or why not
    mnist_loaded: bool
    checkpoints: list[str]  # the shipped checkpoints that loaded
    problems: list[str] = field(default_factory=list)  # each one thing that is missing or broken, with what to do

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        """The log line: `ready: ...` or `NOT READY: ...`, one line."""
        if self.ok:
            return (
                f"ready: {self.mnist}; {len(self.checkpoints)} shipped checkpoints load ({', '.join(self.checkpoints)})"
            )
        return f"NOT READY: {'; '.join(self.problems)}"


def _check_mnist(data_dir: Path | None) -> tuple[str, bool, list[str]]:
    folder = resolve_data_dir(data_dir)
    try:
        mnist = load_mnist(folder)
    except (DataError, OSError) as exc:
        return "MNIST not loaded", False, [f"MNIST did not load: {exc}"]
    sizes = {"train": len(mnist.train_labels), "test": len(mnist.test_labels)}
    checked = (
        "SHA-256 checked against SHA256SUMS"
        if (folder / "SHA256SUMS").exists()
        else "no SHA256SUMS beside them, so not checked"
    )
    summary = f"MNIST {sizes['train']:,} + {sizes['test']:,} digits from {folder} ({checked})"
    if sizes != SPLIT_SIZES:
        return (
            summary,
            True,
            [
                f"{folder} holds {sizes['train']:,} training and {sizes['test']:,} test images, not "
                "MNIST's 60,000 and 10,000; point MNIST_DATA_DIR at the MNIST files"
            ],
        )
    return summary, True, []


def _check_shipped(shipped_dir: Path) -> tuple[list[str], list[str]]:
    if not shipped_dir.is_dir():
        return [], [f"no shipped checkpoints: {shipped_dir} is missing; restore it from a fresh clone"]
    found, broken = scan({"shipped": shipped_dir})
    problems = [f"shipped checkpoint {b.name} cannot be used: {b.reason}" for b in broken]
    loaded = []
    for info in found:
        try:
            load(info.name, directories={"shipped": shipped_dir})  # rebuilt and its weights read, then let go
            loaded.append(info.name)
        except CheckpointError as exc:
            problems.append(f"shipped checkpoint {info.name} does not load: {exc}")
    if not found and not broken:
        problems.append(f"no shipped checkpoints in {shipped_dir}; restore them from a fresh clone")
    return loaded, problems


def check(data_dir: str | Path | None = None, shipped_dir: Path = SHIPPED_DIR) -> Readiness:
    """MNIST (from data_dir, $MNIST_DATA_DIR or the bundled files) and the shipped checkpoints, checked."""
    mnist, mnist_loaded, mnist_problems = _check_mnist(Path(data_dir) if data_dir is not None else None)
    loaded, checkpoint_problems = _check_shipped(shipped_dir)
    return Readiness(mnist, mnist_loaded, checkpoints=loaded, problems=mnist_problems + checkpoint_problems)
