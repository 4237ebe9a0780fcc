from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

from mnist_core.data import DeviceData, load_mnist  # noqa: E402


@pytest.fixture(scope="session")
def mnist():
    return load_mnist()


@pytest.fixture(scope="session")
def data(mnist):
    return DeviceData(mnist, device="cpu")


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """A private runs folder, so tests never touch the user's runs."""
    folder = tmp_path / "runs"
    monkeypatch.setenv("MNIST_RUNS_DIR", str(folder))
    # Page tests run jobs on threads: a worker pool would be started (torch imported) per test, as each test's
    # settings differ. The worker pool is covered by the runner's contract tests and by the browser tests.
    monkeypatch.setenv("MNIST_BACKEND", "threads")
    for shared in ("MNIST_DRAWINGS_DIR", "MNIST_CACHE_DIR"):  # so drawings and maps live in the private folder
        monkeypatch.delenv(shared, raising=False)
    return folder
