"""Owners in hosted mode: each visitor's runs and drawings in a folder of their own, a disk quota, and the
removal of idle visitors' files. Real saves of real (tiny) training runs, a real runner and real jobs."""

import logging
import os
import time

import numpy as np
import pytest

from mnist_core import owners
from mnist_core.checkpoints import CheckpointError, delete, list_checkpoints, load, rename, runs_dir, save
from mnist_core.drawing_store import drawings_dir, load_drawings, save_drawing
from mnist_core.embed import cache_dir
from mnist_core.gan import gan_dir
from mnist_core.reporter import DONE
from mnist_core.runner import JobRefused, Runner
from mnist_core.train import TrainConfig, fit
from mnist_core.transfer import features_dir

TINY = {"arch": "mlp", "model": {"depth": 1, "width": 16}, "max_batches": 5}


@pytest.fixture
def hosted(runs, monkeypatch):
    monkeypatch.setenv("MNIST_HOSTED", "1")
    for name in ("MNIST_OWNER_QUOTA_MB", "MNIST_OWNER_IDLE_HOURS"):
        monkeypatch.delenv(name, raising=False)
    return runs


def tiny_run(data, width: int):
    return fit(TrainConfig(arch="mlp", model={"depth": 1, "width": width}, max_batches=2, record=False), data)


def a_drawing(value: float = 1.0) -> np.ndarray:
    pixels = np.zeros((28, 28), np.float32)
    pixels[4:24, 12:16] = value
    return pixels


def test_owner_ids_name_a_folder_under_the_runs_root_and_never_a_path(runs):
    assert owners.folder("browser-0123456789abcdef") == runs / "owners" / "browser-0123456789abcdef"
    for bad in ("../alice", "a/b", "", "x" * 65, ".", "..", "a b", None):
        with pytest.raises(owners.OwnerError, match="not valid: it takes 1 to 64 letters"):
            owners.folder(bad)
    # Any session identity maps to a safe id: a safe one is kept, anything else becomes a digest.
    assert owners.key("browser-0123456789abcdef") == "browser-0123456789abcdef"
    for identity in ("test session id", "../../etc", "x" * 100):
        assert owners.folder(owners.key(identity)).parent == runs / "owners"
    assert owners.key("test session id") != owners.key("test session id 2")


def test_hosted_visitors_runs_of_the_same_name_stay_apart(hosted, data):
    with owners.use("alice"):
        assert runs_dir() == hosted / "owners" / "alice"
        save(tiny_run(data, 8), "mine")
    with owners.use("bob"):
        save(tiny_run(data, 24), "mine")
        [bobs] = [i for i in list_checkpoints() if i.source == "runs"]
        assert bobs.meta["model_config"]["width"] == 24 and load("mine")[1]["model_config"]["width"] == 24
        delete("mine")
        assert not [i for i in list_checkpoints() if i.source == "runs"]
        with pytest.raises(CheckpointError, match="no checkpoint named .mine."):  # alice's run is not bob's to touch
            rename("mine", "taken")
        with pytest.raises(CheckpointError, match="no run named"):
            delete("mine")
    with owners.use("alice"):
        [alices] = [i for i in list_checkpoints() if i.source == "runs"]
        assert alices.name == "mine" and alices.meta["model_config"]["width"] == 8
    with owners.use("bob"):
        assert gan_dir() == hosted / "owners" / "bob" / "gans"  # GAN runs follow the same folder
        assert cache_dir() == hosted / "embeddings" and features_dir() == hosted / "features"  # caches: server-wide
    assert owners.current() is None and runs_dir() == hosted  # outside any visitor: the shared root
    assert not list((hosted).glob("*.json"))


def test_locally_every_run_and_drawing_is_in_the_one_shared_folder(runs, data, monkeypatch):
    monkeypatch.delenv("MNIST_HOSTED", raising=False)
    with owners.use("alice"):
        assert owners.current() is None and runs_dir() == runs
        save(tiny_run(data, 8), "mine")
        save_drawing(a_drawing(), 1)
    with owners.use("bob"):
        assert [i.name for i in list_checkpoints() if i.source == "runs"] == ["mine"]
        assert len(load_drawings()) == 1 and drawings_dir() == runs / "drawings"
    assert not (runs / "owners").exists()


def test_hosted_drawings_are_the_visitors_own_even_with_a_drawings_folder_set(hosted, tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_DRAWINGS_DIR", str(tmp_path / "everyone"))
    with owners.use("alice"):
        save_drawing(a_drawing(), 1)
        assert drawings_dir() == hosted / "owners" / "alice" / "drawings" and len(load_drawings()) == 1
    with owners.use("bob"):
        assert len(load_drawings()) == 0
    assert not (tmp_path / "everyone").exists()


def test_the_quota_refuses_new_drawings_and_jobs_naming_the_limit_and_what_to_do(hosted, monkeypatch):
    monkeypatch.setenv("MNIST_OWNER_QUOTA_MB", "0.01")  # 10 KB
    full = owners.folder("alice")
    full.mkdir(parents=True)
    (full / "big.safetensors").write_bytes(b"\0" * 20_000)
    assert owners.usage_bytes("alice") == 20_000
    with pytest.raises(owners.QuotaExceeded) as refused:
        owners.check_quota("alice")
    message = str(refused.value)
    assert "use 0.02 MB" in message and "at most 0.01 MB" in message and "MNIST_OWNER_QUOTA_MB=0.01" in message
    assert "delete some of your runs on the Train page" in message
    with owners.use("alice"), pytest.raises(owners.QuotaExceeded, match="MNIST_OWNER_QUOTA_MB"):
        save_drawing(a_drawing(), 3)
    runner = Runner(backend="threads")
    try:
        with pytest.raises(JobRefused, match="MNIST_OWNER_QUOTA_MB=0.01") as job_refused:
            runner.submit("alice", "train", TINY, name="more")
        assert job_refused.value.limit == "owner_quota_mb" and runner.latest("alice") is None
        owners.check_quota("bob")  # another visitor is not affected
        with owners.use("bob"):
            save_drawing(a_drawing(), 3)
    finally:
        runner.shutdown()


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_a_hosted_job_saves_into_its_owners_folder_and_fine_tunes_on_their_drawings_only(hosted, backend):
    with owners.use("bob"):
        for digit in range(3):
            save_drawing(a_drawing(0.5 + digit / 10), digit)
    drawing_run = {**TINY, "drawings_share": 0.25}
    runner = Runner(backend=backend, workers=1)
    try:
        # alice has no drawings: her fine-tune is refused at submit, bob's are not hers.
        with pytest.raises(ValueError, match="no saved drawings"):
            runner.submit("alice", "train", drawing_run, name="alice-ft")
        # bob's job, in a worker process too, reads bob's drawings (none are in the shared folder) and saves to him.
        job = runner.submit("bob", "train", drawing_run, name="bob-ft")
        finished = runner.wait(job.id, 120)
        assert finished.status == DONE, finished.message
    finally:
        runner.shutdown()
    assert (hosted / "owners" / "bob" / "bob-ft.json").exists()
    assert not (hosted / "bob-ft.json").exists() and not (hosted / "owners" / "alice").exists()


def test_idle_owners_files_are_removed_but_never_a_live_owners(hosted, caplog):
    now = time.time()
    for name, hours_ago in (("gone", 30), ("busy", 30), ("recent", 1)):
        folder = owners.folder(name)
        (folder / "drawings").mkdir(parents=True)
        (folder / "run.json").write_text("{}")
        stamp = now - hours_ago * 3600
        for path in (folder / "drawings", folder / "run.json", folder):
            os.utime(path, (stamp, stamp))
    with caplog.at_level(logging.INFO, logger="mnist_core.owners"):
        removed = owners.remove_idle(24 * 3600, live_owners={"busy"}, now=now)
    assert removed == ["gone"]
    assert not owners.folder("gone").exists() and owners.folder("busy").exists() and owners.folder("recent").exists()
    assert [r.message for r in caplog.records if "owner=gone" in r.message and "30.0 hours" in r.message]

    # A visit marks the owner seen (at most once a minute), which keeps their files past the idle time.
    old = now - 30 * 3600
    os.utime(owners.folder("recent"), (old, old))
    assert owners.touch("recent", now=now) and not owners.touch("recent", now=now + 10)
    assert owners.remove_idle(24 * 3600, now=now + 20) == ["busy"]  # no longer live: removed
    assert owners.folder("recent").exists() and not owners.touch("nobody", now=now)


def test_the_sweep_reads_the_idle_hours_and_runs_at_most_every_few_minutes(hosted, monkeypatch):
    folder = owners.folder("gone")
    folder.mkdir(parents=True)
    old = time.time() - 3 * 3600
    os.utime(folder, (old, old))
    monkeypatch.setenv("MNIST_OWNER_IDLE_HOURS", "100")
    start = time.time() + 10_000  # later than any sweep another test made in this process
    assert owners.sweep(now=start) == []  # 3 hours idle is not 100
    monkeypatch.setenv("MNIST_OWNER_IDLE_HOURS", "2")
    assert owners.sweep(now=start + 60) == []  # too soon after the last sweep
    assert owners.sweep(now=start + 400) == ["gone"]
