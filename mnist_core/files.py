"""Writing the project's files: each one whole or absent, whoever else is saving the same file at once.

Every file the project writes (checkpoints and their metadata, drawings, GAN and transfer runs, map,
feature and prediction caches, owners' markers, exports, benchmark results) is written here: first
under a temporary name of its own in the final folder, flushed to the disk, then renamed onto its
final name. A rename within a folder is atomic, so a reader sees the old file or the new one, and a
crash leaves at most a temporary beside it. The temporary's name is unique to one write (mkstemp),
never fixed: two sessions saving the same file at once each rename a whole file of their own and the
last rename wins, where a shared ".tmp" name would let one rename the other's half-written file or
fail to find its own.

Saves of several files that must match (a checkpoint's weights and JSON) stage them all first and
rename them in the order their reader relies on (StagedFiles). A folder of files that belong together (an
imported data set) is built whole in a temporary folder beside its final name, then renamed into place
(temporary_folder_beside, move_folder_into_place).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

TEMP_SUFFIX = ".tmp"
# A temporary older than this belongs to a save that died, even if its pid was reused (a save takes seconds).
STALE_TEMP_S = 3600

Writer = Callable[[Path], None]


def _file_mode() -> int:
    """The mode open() gives a new file (0666 less the umask), read without changing the umask.

    mkstemp makes its files 0600 (private temporaries); a saved file is an ordinary file the user's
    group and other tools (a backup, a shared lab folder) may read, as any file they save is.
    os.umask() is not used to read the umask: it sets it, process-wide, racing other threads.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o644


FILE_MODE = _file_mode()


def temporary_beside(path: Path) -> Path:
    """A new, empty file with a unique name in path's folder: ".<final name>.<pid>.<random>.tmp".

    The same folder, so the final rename stays on one file system (atomic); a dot name, so listings
    of runs or drawings never show it; the writer's pid, so a later save can tell a dead save's
    leftovers from the files of a save still running (remove_stale_temporaries).
    """
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    return Path(name)


def _fsync_file(path: Path) -> None:
    # Without it a crash soon after the rename can leave the final name on an empty or partial file:
    # the rename may reach the disk before the data does.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Make the renames into a folder survive a crash (best effort: some file systems refuse a folder's fsync)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_temporary(path: Path, write: Writer) -> Path:
    """Write path's content into a new temporary beside it, flushed and with the ordinary mode; removed on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_beside(path)
    try:
        write(tmp)
        _fsync_file(tmp)
        os.chmod(tmp, FILE_MODE)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def atomic_write(path: Path | str, write: Writer) -> None:
    """Write a file whole or not at all: `write(tmp)` writes the content into tmp, which then replaces path.

    Any exception in write (or a full disk) leaves the old file as it was and no temporary behind.
    """
    path = Path(path)
    tmp = _write_temporary(path, write)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def write_bytes_atomic(path: Path | str, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_text_atomic(path: Path | str, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json_atomic(path: Path | str, value, *, indent: int | None = 1, **dumps) -> None:
    """value as JSON; serialized before the temporary is made, so a value JSON cannot hold leaves nothing."""
    write_text_atomic(path, json.dumps(value, indent=indent, **dumps))


def link_or_copy_atomic(source: Path, target: Path) -> None:
    """target becomes a second name for source's content (a hard link; a copy where links are not allowed)."""

    def link_or_copy(tmp: Path) -> None:
        tmp.unlink()  # os.link will not overwrite; the name stays ours (mkstemp's random part)
        try:
            os.link(source, tmp)
        except OSError:  # a file system without hard links
            # copyfile, not copy: the content only; _write_temporary gives the copy the ordinary mode
            shutil.copyfile(source, tmp)

    atomic_write(target, link_or_copy)


class StagedFiles:
    """Several files that must match, written first and renamed into place later, in the caller's order.

        with StagedFiles() as stage:
            stage.write(weights, write_weights)     # -> the temporary, e.g. to record its hash
            stage.write(meta, write_meta)
            with lock:
                stage.commit(weights)
                stage.commit(meta)                  # the reader's sign that the pair is whole: last

    Leaving the block removes every temporary not committed (an exception, a refused save); the
    folders of committed files are flushed once, after the last rename.
    """

    def __init__(self) -> None:
        self._staged: dict[Path, Path] = {}
        self._folders: set[Path] = set()

    def write(self, path: Path, write: Writer) -> Path:
        if path in self._staged:
            raise ValueError(f"{path} is already staged")
        self._staged[path] = _write_temporary(path, write)
        return self._staged[path]

    def commit(self, path: Path) -> None:
        os.replace(self._staged.pop(path), path)
        self._folders.add(path.parent)

    def __enter__(self) -> StagedFiles:
        return self

    def __exit__(self, *exc_info) -> None:
        for tmp in self._staged.values():
            tmp.unlink(missing_ok=True)
        self._staged.clear()
        for folder in self._folders:
            _fsync_folder(folder)


# ---------------------------------------------------------------- whole folders (an imported data set)


def temporary_folder_beside(path: Path) -> Path:
    """A new, empty folder ".<final name>.<pid>.<random>.tmp" beside path, to build a folder in before
    move_folder_into_place: a dot name (listings skip it) with the writer's pid, like temporary_beside's files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=TEMP_SUFFIX))


def move_folder_into_place(staged: Path, target: Path, replace: bool = False) -> None:
    """Rename a folder built beside target (temporary_folder_beside) onto target: a reader sees no folder or the
    whole one, never a half-written one. FileExistsError when target exists and replace is False.

    With replace, the old folder is first renamed aside (onto an empty temporary folder: a folder can only be
    renamed onto an empty one), then removed: between the two renames target is briefly absent, never partial.
    """
    if not replace:
        if target.exists():
            raise FileExistsError(target)
        try:
            os.rename(staged, target)  # onto a folder made meanwhile by another writer: refused (not empty)
        except OSError as exc:
            if target.exists():
                raise FileExistsError(target) from exc
            raise
        _fsync_folder(target.parent)
        return
    aside = temporary_folder_beside(target)
    try:
        os.replace(target, aside)
    except FileNotFoundError:  # nothing to replace
        aside.rmdir()
        aside = None
    except BaseException:
        aside.rmdir()
        raise
    try:
        os.replace(staged, target)
    except BaseException:
        if aside is not None:  # put the old folder back
            os.replace(aside, target)
        raise
    _fsync_folder(target.parent)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def remove_folder(target: Path) -> None:
    """Remove a folder so that no reader sees it half deleted: renamed aside first (atomic), then deleted."""
    aside = temporary_folder_beside(target)
    try:
        os.replace(target, aside)
    except BaseException:  # no such folder, or not a folder
        aside.rmdir()
        raise
    _fsync_folder(target.parent)
    shutil.rmtree(aside, ignore_errors=True)


def remove_stale_temporary_folders(folder: Path, now: float | None = None) -> None:
    """The folders of temporary_folder_beside left by writers that died (kill -9 mid-import): removed."""
    now = time.time() if now is None else now
    for tmp in temporaries_in(folder):
        with contextlib.suppress(OSError):
            if tmp.is_dir() and (not writer_alive(tmp) or now - tmp.stat().st_mtime > STALE_TEMP_S):
                shutil.rmtree(tmp)


# ---------------------------------------------------------------- leftovers of writers that died


def temporaries_in(folder: Path) -> Iterator[Path]:
    return folder.glob(f".*{TEMP_SUFFIX}")


def remove_stale_temporaries(folder: Path, now: float | None = None) -> None:
    """Remove the temporaries of writers that died (kill -9 leaves them: no finally runs); never a live writer's."""
    now = time.time() if now is None else now
    for tmp in temporaries_in(folder):
        with contextlib.suppress(OSError):
            if not writer_alive(tmp) or now - tmp.stat().st_mtime > STALE_TEMP_S:
                tmp.unlink()


def writer_alive(tmp: Path) -> bool:
    """Whether the process that named this temporary file still runs (True when the name has no pid)."""
    parts = tmp.name.split(".")
    pid = parts[-3] if len(parts) >= 4 else ""
    if not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, but belongs to someone else
        return True
    try:  # a killed process nobody has reaped yet (a zombie) writes nothing more
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
