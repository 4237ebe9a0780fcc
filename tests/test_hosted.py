"""Hosting: the readiness check, what the home page imports, and the deploy files (Dockerfile, CPU requirements)."""

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from streamlit.testing.v1 import AppTest

from labui.serve import free_port
from mnist_core import readiness
from mnist_core.checkpoints import SHIPPED_DIR
from mnist_core.data import BUNDLED_DIR

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- readiness


def test_the_bundled_install_is_ready():
    status = readiness.check()
    assert status.ok and status.mnist_loaded, status.problems
    assert "SHA-256 checked" in status.mnist
    assert set(status.checkpoints) == {p.stem for p in SHIPPED_DIR.glob("*.json")}
    assert status.line().startswith("ready: MNIST 60,000 + 10,000 digits")


def test_a_damaged_mnist_file_is_named_with_what_to_do(tmp_path):
    data = tmp_path / "mnist"
    shutil.copytree(BUNDLED_DIR, data)
    with open(data / "t10k-labels-idx1-ubyte.gz", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    status = readiness.check(data)
    assert not status.ok and not status.mnist_loaded
    assert "t10k-labels-idx1-ubyte.gz" in status.line() and "does not match SHA256SUMS" in status.line()
    assert status.line().startswith("NOT READY: MNIST did not load")


def test_a_folder_of_other_idx_files_is_not_taken_for_mnist(tmp_path):
    from tests.test_data import write_set

    status = readiness.check(write_set(tmp_path / "small", n_train=20, n_test=10))
    assert status.mnist_loaded and not status.ok
    assert "holds 20 training and 10 test images, not MNIST's 60,000 and 10,000" in status.line()
    assert "no SHA256SUMS" in status.mnist


def test_a_missing_or_damaged_shipped_checkpoint_is_named(tmp_path):
    shipped = tmp_path / "checkpoints"
    shipped.mkdir()
    for name in ("mlp", "cnn"):
        for suffix in (".json", ".safetensors"):
            shutil.copy(SHIPPED_DIR / f"{name}{suffix}", shipped)
    weights = shipped / "cnn.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    status = readiness.check(shipped_dir=shipped)
    assert status.mnist_loaded and status.checkpoints == ["mlp"]
    assert len(status.problems) == 1 and status.problems[0].startswith("shipped checkpoint cnn cannot be used")
    assert not readiness.check(shipped_dir=tmp_path / "nowhere").ok


def test_the_app_logs_its_readiness_once_and_the_home_page_shows_what_is_missing(tmp_path, monkeypatch, runs):
    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logging.getLogger("mnist_lab").addHandler(handler)
    monkeypatch.setenv("MNIST_DATA_DIR", str(tmp_path))  # an existing folder without the MNIST files
    try:
        import streamlit as st

        st.cache_resource.clear()  # readiness is checked once per process: this test is a fresh server
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
        at.run()
    finally:
        logging.getLogger("mnist_lab").removeHandler(handler)
        st.cache_resource.clear()
    assert not at.exception, [e.message for e in at.exception]
    assert any("missing something" in e.value and "train-images-idx3-ubyte" in e.value for e in at.error), [
        e.value for e in at.error
    ]
    readiness_lines = [line for line in lines if "READY" in line.upper()[:10]]
    assert len(readiness_lines) == 1 and readiness_lines[0].startswith("NOT READY: MNIST did not load"), lines


# ---------------------------------------------------------------- footprint


HEAVY = ["umap", "numba", "pynndescent", "openTSNE", "sklearn", "onnx", "onnxruntime", "torchvision", "sympy"]
HOME_IMPORTS = f"""
import os, sys, tempfile
os.environ.update(MNIST_RUNS_DIR=tempfile.mkdtemp(), MNIST_BACKEND="threads")
from streamlit.testing.v1 import AppTest
at = AppTest.from_file("app.py", default_timeout=300).run()
assert not at.exception, [e.message for e in at.exception]
assert at.dataframe, "the home page did not get to its checkpoints table"
print(sorted(m for m in {HEAVY!r} if m in sys.modules))
"""


def test_the_home_page_imports_none_of_the_heavy_libraries():
    """Each costs tens to hundreds of MB in the server (umap about 200, openTSNE 80, sklearn 75, sympy 150)."""
    result = subprocess.run([sys.executable, "-c", HOME_IMPORTS], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_loading_every_shipped_checkpoint_imports_no_symbolic_math():
    """A sparse net's meta-device weight count used a pointwise op, which imports sympy (150 MB, seconds)."""
    code = "import sys; from mnist_core import readiness; assert readiness.check().ok; print('sympy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "False"


# ---------------------------------------------------------------- deploy files


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments left out."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def dockerignored() -> list[str]:
    return [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def test_every_file_the_image_copies_exists_and_is_not_ignored():
    copies = [args.split() for op, args in dockerfile_instructions() if op == "COPY"]
    ignored = dockerignored()
    for *sources, _target in copies:
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not any(Path(source).match(pattern) or source == pattern for pattern in ignored), source
    copied = {s for *sources, _ in copies for s in sources}
    assert {"app.py", "mnist_core", "labui", "pages", "data", "checkpoints"} <= copied


def test_the_image_runs_hosted_as_a_user_with_a_volume_and_a_health_check():
    instructions = dockerfile_instructions()
    ops = [op for op, _ in instructions]
    assert instructions[0][0] == "FROM" and re.match(r"python:3\.11-slim", instructions[0][1])
    env = " ".join(args for op, args in instructions if op == "ENV")
    assert "MNIST_HOSTED=1" in env and "MNIST_RUNS_DIR=/data/runs" in env
    assert ("VOLUME", '["/data"]') in instructions
    user = [args for op, args in instructions if op == "USER"]
    assert user and not user[-1].startswith(("root", "0")) and ops.index("USER") > ops.index("RUN")
    assert any("/_stcore/health" in args for op, args in instructions if op == "HEALTHCHECK")
    installs = [args for op, args in instructions if op == "RUN" and "pip install" in args]
    assert installs == ["pip install -r requirements-cpu.txt"]


def requirement_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            name, spec = re.match(r"([A-Za-z0-9_.\-]+)\s*(.*)", line).groups()
            pins[name.lower()] = spec
    return pins


def test_the_cpu_requirements_are_the_app_requirements_with_cpu_only_torch_and_no_torchvision():
    app, cpu = requirement_pins(ROOT / "requirements.txt"), requirement_pins(ROOT / "requirements-cpu.txt")
    assert cpu.pop("torch") == app.pop("torch") + "+cpu"
    app.pop("torchvision")
    assert cpu == app and "torchvision" not in cpu
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in (ROOT / "requirements-cpu.txt").read_text()


def test_the_images_command_and_health_check_run_here_as_written(tmp_path):
    """The CMD and the HEALTHCHECK of the Dockerfile, run on this machine (no image can be built here),
    with its environment (hosted mode, folders under a volume) pointed at a temporary folder."""
    instructions = dockerfile_instructions()
    command = json.loads(next(args for op, args in instructions if op == "CMD"))
    health = json.loads(next(args for op, args in instructions if op == "HEALTHCHECK").split(" CMD ", 1)[1])
    port = str(free_port())
    env = dict(os.environ)
    for op, args in instructions:
        if op == "ENV":
            for name, value in re.findall(r"(\w+)=(\S+)", args):
                env[name] = value.replace("/data", str(tmp_path / "data")).replace("/home/lab", str(tmp_path))
    assert command[0] == "python" and health[0] == "python"
    command = [sys.executable, *[a.replace("8501", port) for a in command[1:]]]
    health = [sys.executable, *[a.replace("8501", port) for a in health[1:]]]
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while subprocess.run(health, env=env, capture_output=True).returncode != 0:
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "the health check never passed"
            time.sleep(1)
        page = urllib.request.urlopen(f"http://localhost:{port}/", timeout=10).read().decode()
        assert "<title>Streamlit</title>" in page or "streamlit" in page.lower()
    finally:
        server.terminate()
        server.wait(20)
    assert subprocess.run(health, env=env, capture_output=True).returncode != 0  # and fails once it is down


def test_the_from_scratch_engine_reads_training_digits_from_the_bytes_standardized_as_before():
    """Under the hood's NumPy engine held the 60,000 training digits as float32 for the server's life (188 MB)."""
    import numpy as np

    from mnist_core.data import _load_cached, load_mnist
    from mnist_core.scratch import load_arrays

    load_arrays("float32")
    _load_cached.cache_clear()  # as when other folders push MNIST out of the reader's cache: the bytes are read anew
    mnist, arrays = load_mnist(), load_arrays("float32")
    assert np.shares_memory(arrays.train_x.images, mnist.train_images.numpy())  # no copy of the set is held
    whole = mnist.train_images.numpy().reshape(60_000, 784).astype(np.float32)
    whole = ((whole / 255 - mnist.mean) / mnist.std).astype(np.float32)  # what the engine used to hold
    idx = np.array([5, 59_999, 0, 123])
    assert len(arrays.train_x) == 60_000
    assert np.array_equal(arrays.train_x[idx], whole[idx]) and arrays.train_x[idx].dtype == np.float32
    assert np.array_equal(arrays.train_x[10:20], whole[10:20]) and np.array_equal(np.asarray(arrays.train_x), whole)
