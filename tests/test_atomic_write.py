"""Every file the project writes goes through mnist_core.files: saves of the same file at once (threads,
processes) never collide and leave a whole file; a failed write leaves the old file; no temporary
is ever left behind; and no module writes a file any other way (a source scan)."""

import ast
import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from PIL import Image

from mnist_core import drawing_store, files
from mnist_core.checkpoints import load, save
from mnist_core.files import (
    FILE_MODE,
    StagedFiles,
    atomic_write,
    link_or_copy_atomic,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)
from mnist_core.models import build_model
from mnist_core.train import RunResult, TrainConfig

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 60


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(files.TEMP_SUFFIX))


def race(workers: int, job) -> list[BaseException]:
    """Run job(i) in `workers` threads released together; the exceptions they raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(workers)

    def run(i):
        start.wait()
        try:
            job(i)
        except BaseException as exc:  # noqa: BLE001 - any exception is the failure being tested
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


# ---------------------------------------------------------------- the same file saved at once


def test_threads_saving_one_json_at_once_leave_a_whole_file_and_no_temporary(tmp_path):
    target = tmp_path / "meta.json"
    seen_while_writing: list[dict] = []
    stop = threading.Event()

    def reader():  # a reader sees the old file or a new one, never a half-written one
        while not stop.is_set():
            if target.exists():
                seen_while_writing.append(json.loads(target.read_text()))

    watcher = threading.Thread(target=reader)
    watcher.start()
    payload = "x" * 50_000  # big enough that a write in place would be seen half done
    try:
        errors = race(
            4,
            lambda i: [write_json_atomic(target, {"writer": i, "round": r, "payload": payload}) for r in range(ROUNDS)],
        )
    finally:
        stop.set()
        watcher.join()
    assert not errors, errors
    final = json.loads(target.read_text())
    assert final["payload"] == payload and final["round"] == ROUNDS - 1
    assert all(d["payload"] == payload for d in seen_while_writing)
    assert temporaries(tmp_path) == []
    assert target.stat().st_mode & 0o777 == FILE_MODE  # an ordinary file, not mkstemp's private 0600


def test_processes_saving_one_file_at_once_leave_a_whole_file_and_no_temporary(tmp_path):
    target = tmp_path / "shared.safetensors"
    script = textwrap.dedent("""
        import sys
        import safetensors.numpy, numpy as np
        from pathlib import Path
        from mnist_core.files import atomic_write
        target, fill, rounds = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
        arrays = {"w": np.full((256, 256), fill, dtype=np.float32)}
        for _ in range(rounds):
            atomic_write(target, lambda tmp: safetensors.numpy.save_file(arrays, tmp))
        print("done")
    """)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(target), str(fill), str(ROUNDS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for fill in (1.0, 2.0)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and out.strip() == "done", err
    weights = safetensors.torch.load_file(str(target))["w"]
    assert weights.unique().numel() == 1 and weights[0, 0].item() in (1.0, 2.0)  # one writer's whole file
    assert temporaries(tmp_path) == []


def test_threads_saving_the_same_drawings_at_once_leave_loadable_pngs(tmp_path):
    # save_drawing_set names files by index: two saves of one set write the same names at once
    rng = np.random.default_rng(0)
    pixels = rng.random((20, 28, 28)).astype(np.float32)
    labels = np.arange(20) % 10
    errors = race(4, lambda i: [drawing_store.save_drawing_set(pixels, labels, tmp_path) for _ in range(5)])
    assert not errors, errors
    pngs = sorted(tmp_path.glob("*.png"))
    assert len(pngs) == 20
    for png in pngs:
        with Image.open(png) as image:
            assert image.size == (28, 28)
            image.load()  # the whole file decodes
    assert temporaries(tmp_path) == []


def tiny_run(fill: float) -> RunResult:
    config = TrainConfig(arch="mlp", model={"width": 8})
    model = build_model("mlp", config.model)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(fill)
    return RunResult(model, config, "finished", [{"epoch": 1, "steps": 1, "test_accuracy": 0.5}], 1.0, "cpu", steps=1)


def test_threads_saving_one_checkpoint_at_once_leave_a_matching_pair(tmp_path):
    errors = race(
        3, lambda i: [save(tiny_run((i + 1) / 10), "shared", tmp_path, extra={"fill": (i + 1) / 10}) for _ in range(5)]
    )
    assert not errors, errors
    model, meta = load("shared", directories={"runs": tmp_path})
    weights = torch.cat([p.flatten() for p in model.parameters()])
    assert torch.all(weights == meta["fill"])  # weights and metadata from the same save
    assert temporaries(tmp_path) == []


# ---------------------------------------------------------------- failures


def test_a_writer_failing_midway_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "keep.json"
    write_json_atomic(target, {"version": 1})

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text('{"version": 2, "trunc')
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(target, half_then_fail)
    assert json.loads(target.read_text()) == {"version": 1}
    with pytest.raises(TypeError):  # a value JSON cannot hold: nothing written, not even a temporary
        write_json_atomic(target, {"version": object()})
    assert json.loads(target.read_text()) == {"version": 1}
    assert temporaries(tmp_path) == []


def test_an_interrupted_staged_save_commits_nothing_and_leaves_no_temporary(tmp_path):
    weights, meta = tmp_path / "a.bin", tmp_path / "a.json"
    write_bytes_atomic(weights, b"old weights")
    write_text_atomic(meta, "old meta")
    with pytest.raises(RuntimeError), StagedFiles() as stage:
        stage.write(weights, lambda tmp: tmp.write_bytes(b"new weights"))
        stage.write(meta, lambda tmp: tmp.write_text("new meta"))
        raise RuntimeError("the save is refused before its renames")
    assert (weights.read_bytes(), meta.read_text()) == (b"old weights", "old meta")
    with StagedFiles() as stage:
        stage.write(weights, lambda tmp: tmp.write_bytes(b"new weights"))
        stage.write(meta, lambda tmp: tmp.write_text("new meta"))
        stage.commit(weights)
        stage.commit(meta)
    assert (weights.read_bytes(), meta.read_text()) == (b"new weights", "new meta")
    assert temporaries(tmp_path) == []


def test_link_or_copy_replaces_the_target_whole(tmp_path):
    source, target = tmp_path / "src.bin", tmp_path / "dst.bin"
    write_bytes_atomic(source, b"content")
    write_bytes_atomic(target, b"old")
    link_or_copy_atomic(source, target)
    assert target.read_bytes() == b"content"
    with pytest.raises(FileNotFoundError):
        link_or_copy_atomic(tmp_path / "missing.bin", target)
    assert target.read_bytes() == b"content"
    assert temporaries(tmp_path) == []


def test_a_dead_writers_temporaries_are_removed_and_a_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_tmp = tmp_path / f".run.json.{int(dead.stdout)}.abc123{files.TEMP_SUFFIX}"
    dead_tmp.write_bytes(b"half")
    live_tmp = files.temporary_beside(tmp_path / "run.json")  # this process: a save still running
    files.remove_stale_temporaries(tmp_path)
    assert not dead_tmp.exists() and live_tmp.exists()


# ---------------------------------------------------------------- no writer bypasses the helper

SCANNED = [
    *sorted((ROOT / "mnist_core").rglob("*.py")),
    *sorted((ROOT / "labui").glob("*.py")),
    *sorted((ROOT / "pages").glob("*.py")),
    ROOT / "app.py",
    *sorted((ROOT / "checkpoints").glob("*.py")),
    *sorted((ROOT / "benchmarks").glob("*.py")),
]
# Calls that write a file. Project functions of the same names (checkpoints.save, owners.touch,
# checkpoints.rename) are not listed: they are the savers, and write through the helper themselves.
WRITE_METHODS = {
    "write_text",
    "write_bytes",
    "save_file",
    "savez",
    "savez_compressed",
    "savetxt",
    "to_csv",
    "savefig",
    "download_url_to_file",
    "symlink_to",
    "hardlink_to",
}
WRITE_FUNCTIONS = {
    ("torch", "save"),
    ("np", "save"),
    ("numpy", "save"),
    ("os", "replace"),
    ("os", "rename"),
    ("os", "link"),
    ("os", "symlink"),
    ("shutil", "copy"),
    ("shutil", "copy2"),
    ("shutil", "copyfile"),
    ("shutil", "copyfileobj"),
    ("shutil", "move"),
    ("shutil", "copytree"),
}
HELPERS = {"atomic_write"}  # take a writer callback: a write inside it writes the helper's temporary
# (file, function) pairs allowed to write directly, each with its reason.
ALLOWED = {
    # the helper itself
    ("mnist_core/files.py", "*"),
    # torch writes its own hub cache (through its own temporary and rename), not a project file
    ("mnist_core/transfer.py", "_fetch"),
    # renames of whole files already in place, under the folder's lock (a GAN run's weights to its new name)
    ("mnist_core/gan.py", "rename_gan"),
    # a PNG encoded into an in-memory buffer for the browser; no file
    ("labui/images.py", "png_data_uri"),
    # benchmarks writing into their own TemporaryDirectory, gone when they end
    ("benchmarks/drawn_digits.py", "shipped_at"),
    ("benchmarks/throughput.py", "tutorial_loader"),
    ("benchmarks/export_fast.py", "main"),
}


def _opens_for_writing(call: ast.Call) -> bool:
    func = call.func
    is_open = (isinstance(func, ast.Name) and func.id == "open") or (
        isinstance(func, ast.Attribute)
        and func.attr == "open"
        and isinstance(func.value, ast.Name)
        and func.value.id in ("gzip", "bz2", "lzma", "io")
    )
    if not is_open:
        return False
    mode = call.args[1] if len(call.args) > 1 else next((k.value for k in call.keywords if k.arg == "mode"), None)
    return isinstance(mode, ast.Constant) and isinstance(mode.value, str) and bool(set(mode.value) & set("wax+"))


def _writes(call: ast.Call) -> bool:
    func = call.func
    if _opens_for_writing(call):
        return True
    if isinstance(func, ast.Attribute):
        if func.attr in WRITE_METHODS:
            return True
        if isinstance(func.value, ast.Name) and (func.value.id, func.attr) in WRITE_FUNCTIONS:
            return True
        if func.attr == "save" and any(k.arg == "format" for k in call.keywords):  # PIL's Image.save
            return True
        if func.attr == "open" and isinstance(func.value, ast.Name) and func.value.id == "os":
            return any(
                isinstance(n, ast.Attribute) and n.attr in ("O_WRONLY", "O_RDWR", "O_CREAT") for n in ast.walk(call)
            )
    return False


def _callee_name(call: ast.Call) -> str | None:
    return (
        call.func.id
        if isinstance(call.func, ast.Name)
        else call.func.attr
        if isinstance(call.func, ast.Attribute)
        else None
    )


def direct_writes(path: Path, rel: str | None = None) -> list[str]:
    """The writes in a file not made inside a writer callback handed to the helper, as 'file:line function'."""
    tree = ast.parse(path.read_text(), str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    # the names a StagedFiles is bound to (`with StagedFiles() as stage`): stage.write(path, writer) is a helper
    stages = {
        item.optional_vars.id
        for node in ast.walk(tree)
        if isinstance(node, ast.With)
        for item in node.items
        if isinstance(item.context_expr, ast.Call)
        and _callee_name(item.context_expr) == "StagedFiles"
        and isinstance(item.optional_vars, ast.Name)
    }

    def helper_call(call: ast.Call) -> bool:
        func = call.func
        return _callee_name(call) in HELPERS or (
            isinstance(func, ast.Attribute)
            and func.attr == "write"
            and isinstance(func.value, ast.Name)
            and func.value.id in stages
        )

    callbacks = set()  # lambdas and functions handed to a helper as its writer
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and helper_call(node):
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                if isinstance(arg, ast.Lambda):
                    callbacks.add(arg)
                elif isinstance(arg, ast.Name):
                    callbacks.update(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == arg.id)
    rel = rel or path.relative_to(ROOT).as_posix()
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and _writes(node)):
            continue
        enclosing, function = node, "<module>"
        inside_callback = False
        while enclosing in parents:
            enclosing = parents[enclosing]
            if enclosing in callbacks:
                inside_callback = True
            if isinstance(enclosing, (ast.FunctionDef, ast.AsyncFunctionDef)) and function == "<module>":
                function = enclosing.name
        if inside_callback or (rel, "*") in ALLOWED or (rel, function) in ALLOWED:
            continue
        found.append((node.lineno, f"{rel}:{node.lineno} {function}: {ast.unparse(node)[:80]}"))
    return [line for _, line in sorted(found)]


def test_no_module_writes_a_file_except_through_the_atomic_helper():
    found = [line for path in SCANNED for line in direct_writes(path)]
    assert not found, (
        "write these through mnist_core.files (atomic_write / write_*_atomic / StagedFiles), "
        "or allow them in ALLOWED with the reason:\n" + "\n".join(found)
    )


def test_the_scan_finds_a_direct_write(tmp_path):
    # the scan itself works: a fixed-name temporary, a write in place and a torch.save are all reported
    bad = tmp_path / "probe.py"
    bad.write_text(
        textwrap.dedent("""
        import os, torch
        from pathlib import Path
        from mnist_core.files import atomic_write
        def save(path: Path, text: str, model) -> None:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            os.replace(tmp, path)
            with open(path, "w") as f:
                f.write(text)
            torch.save(model, path)
            atomic_write(path, lambda tmp: tmp.write_text(text))  # the one allowed
    """)
    )
    found = direct_writes(bad, "mnist_core/probe.py")
    assert [line.split()[0].rsplit(":", 1)[1] for line in found] == ["7", "8", "9", "11"], found
