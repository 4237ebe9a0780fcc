"""Fault suite, storage: kill -9 during a save, concurrent saves, damaged and hostile files in every
folder the app reads, and names that try to leave their folder. Each case asserts the specific
answer and that nothing saved earlier was lost."""

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from mnist_core import checkpoints
from mnist_core.checkpoints import SAVE_STEPS, CheckpointError, CheckpointExistsError, load, save
from mnist_core.models import build_model
from mnist_core.train import RunResult, TrainConfig

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "tests" / "faults_worker.py"


def run_with_fill(fill: float, width: int = 16) -> RunResult:
    """A real model whose every weight is `fill`: which save a file came from can be read off its weights."""
    config = TrainConfig(arch="mlp", model={"width": width})
    model = build_model("mlp", config.model)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(fill)
    return RunResult(model, config, "finished", [{"epoch": 1, "steps": 1, "test_accuracy": 0.5}], 1.0, "cpu", steps=1)


def whole_fill(name: str, directory: Path):
    """The fill of a run that loads with matching metadata, or None when the run is absent; fails if half there."""
    if not (directory / f"{name}.json").exists():
        return None
    model, meta = load(name, directories={"runs": directory})
    weights = torch.cat([p.flatten() for p in model.parameters()])
    assert torch.all(weights == meta["fill"]), "weights and metadata come from different saves"
    return meta["fill"]


def worker(directory: Path, name: str, fill: float, overwrite: bool, pause: str | None) -> subprocess.Popen:
    """A separate process saving one run: a real concurrent save, or one paused for a real kill -9."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    env.pop("MNIST_TEST_SAVE_PAUSE", None)
    spec = f"{directory},{name},{fill},{int(overwrite)},{pause or '-'}"
    return subprocess.Popen([sys.executable, str(WORKER), spec], stdout=subprocess.PIPE, text=True, env=env)


def test_kill_9_at_each_step_of_a_save_leaves_the_run_absent_or_whole(tmp_path):
    # A run "victim" exists (fill 0.1); a second save of it (fill 0.2) is killed after each step in turn.
    folders = {step: tmp_path / f"step{i}" for i, step in enumerate(SAVE_STEPS)}
    for folder in folders.values():
        save(run_with_fill(0.1), "victim", folder, extra={"fill": 0.1})
        save(run_with_fill(0.3), "bystander", folder, extra={"fill": 0.3})
    procs = {step: worker(folders[step], "victim", 0.2, True, step) for step in SAVE_STEPS}  # all at once: faster
    try:
        for step, proc in procs.items():
            lines = [proc.stdout.readline() for _ in range(2)]
            assert lines[1].strip() == f"paused after {step}", lines
            proc.send_signal(signal.SIGKILL)  # a real kill -9: no handler, no finally, no flush
            proc.wait(timeout=30)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
            proc.stdout.close()
    expected = {
        "temporaries written": 0.1,
        "lock taken": 0.1,
        "old metadata removed": None,
        "weights renamed": None,
        "probes renamed": None,
        "metadata renamed": 0.2,
    }
    assert set(expected) == set(SAVE_STEPS)
    for step, folder in folders.items():
        assert whole_fill("victim", folder) == expected[step], step
        assert whole_fill("bystander", folder) == 0.3  # nothing else in the folder was touched
        # the next save into the folder removes what the killed one left
        save(run_with_fill(0.4), "next", folder, extra={"fill": 0.4})
        left = sorted(p.name for p in folder.iterdir())
        assert not [n for n in left if n.endswith(".tmp")], (step, left)
        for n in left:
            stem = n.split(".safetensors")[0] if ".safetensors" in n else n.removesuffix(".json")
            assert (folder / f"{stem}.json").exists(), (step, n)  # no weights without their metadata
        assert checkpoints.scan({"runs": folder})[1] == []  # nothing listed as unreadable


def test_concurrent_processes_saving_one_new_name_one_wins_whole(tmp_path):
    fills = (0.5, 0.6, 0.7)
    procs = [worker(tmp_path, "race", fill, False, None) for fill in fills]
    outcomes = [proc.communicate(timeout=120)[0].split()[-1] for proc in procs]
    assert sorted(outcomes) == ["exists", "exists", "saved"], outcomes
    assert whole_fill("race", tmp_path) == fills[outcomes.index("saved")]


def test_concurrent_threads_saving_runs_lose_nothing(tmp_path):
    errors = []

    def saver(i):
        try:
            save(run_with_fill(i / 100), f"run-{i}", tmp_path, extra={"fill": i / 100})
            save(run_with_fill(i / 100), "shared", tmp_path, extra={"fill": i / 100}, overwrite=True)
        except Exception as exc:  # noqa: BLE001 - any exception is the failure being tested
            errors.append(exc)

    threads = [threading.Thread(target=saver, args=(i,)) for i in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert [whole_fill(f"run-{i}", tmp_path) for i in range(1, 9)] == [i / 100 for i in range(1, 9)]
    assert whole_fill("shared", tmp_path) in {i / 100 for i in range(1, 9)}
    with pytest.raises(CheckpointExistsError):
        save(run_with_fill(0.9), "shared", tmp_path, overwrite=False)


BAD_META = [
    ({"arch": "mlp", "test_accuracy": "high"}, "test_accuracy"),
    ({"arch": "mlp", "test_accuracy": 1.7}, "test_accuracy"),
    ({"arch": "mlp", "test_accuracy": float("nan")}, "test_accuracy"),
    ({"arch": "mlp", "params": "many"}, "params"),
    ({"arch": "mlp", "epochs_done": -3}, "epochs_done"),
    ({"arch": "mlp", "history": [{"test_accuracy": "x"}]}, "history"),
    ({"arch": "mlp", "history": "none"}, "history"),
    ({"arch": "mlp", "model_config": [1, 2]}, "model_config"),
    ({"arch": "mlp", "train_seconds": -1}, "train_seconds"),
    ({"arch": "resnet"}, "arch"),
    ({"arch": ["mlp"]}, "arch"),
    ({"test_accuracy": 0.99}, "no 'arch'"),
    ([1, 2, 3], "not a mapping"),
]


@pytest.mark.parametrize("meta, reason", BAD_META)
def test_a_checkpoint_with_bad_metadata_is_listed_as_unreadable_never_with_its_claims(runs, meta, reason):
    save(run_with_fill(0.1), "good", extra={"fill": 0.1})
    (runs / "bad.json").write_text(json.dumps(meta))
    (runs / "bad.safetensors").write_bytes((runs / "good.safetensors").read_bytes())
    usable, unreadable = checkpoints.scan()
    assert "bad" not in {i.name for i in usable} and "good" in {i.name for i in usable}
    assert [u.name for u in unreadable] == ["bad"] and reason in unreadable[0].reason
    with pytest.raises(CheckpointError, match="cannot be used"):
        load("bad")
    assert whole_fill("good", runs) == 0.1


def test_non_utf8_and_deeply_nested_metadata_are_unreadable_not_crashes(runs):
    (runs).mkdir(parents=True)
    (runs / "latin.json").write_bytes(b'{"arch": "mlp", "name": "\xe9"}')
    (runs / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (runs / "latin.safetensors").write_bytes(b"")
    (runs / "deep.safetensors").write_bytes(b"")
    _, unreadable = checkpoints.scan()
    assert {u.name for u in unreadable} == {"latin", "deep"}
    assert all("unreadable metadata" in u.reason for u in unreadable)


class Payload:
    """Unpickling this creates the marker file: proof that a reader ran code from a file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_payloads_in_every_folder_the_app_reads_never_run(runs, tmp_path, monkeypatch):
    from mnist_core import drawing_store, embed, gan, transfer

    marker = tmp_path / "PWNED"
    payload = pickle.dumps(Payload(marker))
    pickle.loads(payload)  # the payload is live: unpickling it does create the marker
    assert marker.exists()
    marker.unlink()

    save(run_with_fill(0.1), "honest", extra={"fill": 0.1})
    # runs: weights, a recorded history and a whole checkpoint made of pickles
    (runs / "evil.json").write_text(
        json.dumps({"arch": "mlp", "model_config": {"width": 16}, "probes": {"snapshots": 1, "every": 1}})
    )
    (runs / "evil.safetensors").write_bytes(payload)
    (runs / "evil.safetensors.probes").write_bytes(payload)
    (runs / "torch-style.pt").write_bytes(payload)
    with pytest.raises(CheckpointError):
        load("evil")
    assert (
        checkpoints.load_probes(
            checkpoints.CheckpointInfo(  # an unreadable history is simply not shown
                "evil", "runs", {"probes": {"snapshots": 1, "every": 1}}, runs / "evil.safetensors", runs / "evil.json"
            )
        )
        is None
    )
    # "shipped" checkpoints folder (a copy: the real one is never written by tests)
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "best.json").write_text(json.dumps({"arch": "mlp", "model_config": {"width": 16}}))
    (shipped / "best.safetensors").write_bytes(payload)
    with pytest.raises(CheckpointError):
        load("best", directories={"shipped": shipped})
    # drawings: a pickle named like a PNG, listed in the labels
    folder = drawing_store.drawings_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "d1.png").write_bytes(payload)
    (folder / drawing_store.INDEX).write_text(json.dumps([{"file": "d1.png", "label": 3}]))
    found = drawing_store.load_drawings()
    assert len(found.labels) == 0 and any("d1.png" in p for p in found.problems)
    # embeddings cache and transfer features cache
    cache = embed.cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "k.safetensors").write_bytes(payload)
    (cache / "k.json").write_text(json.dumps({"spec": {}}))
    assert embed.load_cached("k", np.zeros(10, np.int64)) is None
    (tmp_path / "features.safetensors").write_bytes(payload)
    assert transfer._read_features(tmp_path / "features.safetensors") == {}
    # GANs
    gans = gan.gan_dir()
    gans.mkdir(parents=True, exist_ok=True)
    (gans / "evil.safetensors").write_bytes(payload)
    (gans / "evil.json").write_text(json.dumps({"kind": "cgan", "config": {}}))
    for candidate in [c for c in gan.list_gans() if c.name == "evil"]:
        with pytest.raises(CheckpointError):
            gan.load_gan(candidate)
    # listing everything, and the CLI's list, still work and run nothing
    usable, unreadable = checkpoints.scan()
    assert "honest" in {i.name for i in usable} and "evil" in {u.name for u in unreadable}
    assert not marker.exists()
    assert whole_fill("honest", runs) == 0.1


HOSTILE_NAMES = [
    "../x",
    "../../etc/passwd",
    "/etc/passwd",
    "/tmp/abs",
    "a/../../b",
    "..",
    ".",
    "a\x00b",
    "\\..\\win",
    "~/home",
    "runs/../../up",
    "-rf",
    "x" * 500,
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_names_never_leave_their_folder(runs, tmp_path, name):
    result = run_with_fill(0.1)
    before = {p for p in tmp_path.rglob("*")}
    try:
        saved = save(result, name, extra={"fill": 0.1})
    except CheckpointError as exc:
        assert any(w in str(exc) for w in ("no usable characters", "NUL character", "characters long")), exc
        saved = None
        for call in (lambda: load(name), lambda: checkpoints.delete(name)):
            with pytest.raises(CheckpointError):  # a clear "no such run", never an OSError or a file outside
                call()
    else:
        assert "/" not in saved and "\x00" not in saved and not saved.startswith(".")
        assert (runs / f"{saved}.json").exists()
        assert whole_fill(saved, runs) == 0.1
        assert load(name)[1]["name"] == saved  # the same name finds the same run, inside the folder
    with pytest.raises(CheckpointError):
        checkpoints.rename("nothing", name)
    created = {p for p in tmp_path.rglob("*")} - before
    assert all(p == runs or runs in p.parents for p in created), created
    if saved:
        checkpoints.delete(name)
        assert not (runs / f"{saved}.json").exists()
