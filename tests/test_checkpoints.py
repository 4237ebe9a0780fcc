import json
import os

import pytest
import safetensors.torch
import torch

from mnist_core import checkpoints
from mnist_core.checkpoints import CheckpointError, list_checkpoints, load, safe_name, save
from mnist_core.data import DeviceData
from mnist_core.datasets import MNIST
from mnist_core.datasets import load as load_dataset
from mnist_core.files import FILE_MODE
from mnist_core.train import TrainConfig, evaluate, fit


@pytest.fixture(scope="module")
def short_run(data):
    return fit(TrainConfig(arch="cnn", model={"channels": [4, 8]}, max_batches=20, seed=1), data)


def test_round_trip_gives_the_same_predictions_and_metadata(short_run, runs, data):
    name = save(short_run, "my run")
    assert name == "my-run"
    assert {p.name for p in runs.iterdir()} == {"my-run.safetensors", "my-run.json", "my-run.safetensors.probes"}
    model, meta = load(name)
    x = data.test.images[:100]
    short_run.model.eval()
    assert torch.allclose(model(x), short_run.model(x), atol=1e-6)
    assert meta["arch"] == "cnn" and meta["model_config"] == {"channels": [4, 8]}
    assert meta["seed"] == 1 and meta["status"] == "finished"  # it did all its 20 batches
    assert meta["versions"]["torch"] == torch.__version__
    assert meta["command"].startswith("python -m mnist_core train --arch cnn")
    assert "--set channels=4,8" in meta["command"] and "--seed 1" in meta["command"]
    assert evaluate(model, data.test)["accuracy"] == pytest.approx(short_run.test_accuracy)


def test_files_are_safetensors_and_json_only(short_run, runs):
    save(short_run, "plain")
    json.loads((runs / "plain.json").read_text())
    tensors = safetensors.torch.load_file(str(runs / "plain.safetensors"))
    assert "0.weight" in tensors


@pytest.mark.parametrize(
    "name, expected",
    [
        ("../../etc/passwd", "etc-passwd"),
        ("/abs/path", "abs-path"),
        ("a b\\c", "a-b-c"),
        ("..hidden", "hidden"),
        ("ok_name-1.2", "ok_name-1.2"),
    ],
)
def test_names_never_leave_the_folder(name, expected, short_run, runs):
    assert safe_name(name) == expected
    save(short_run, name)
    assert (runs / f"{expected}.json").exists()
    assert sorted(p.parent for p in runs.parent.rglob("*.json")) == [runs]


def test_empty_name_is_refused():
    with pytest.raises(CheckpointError, match="no usable characters"):
        safe_name("../..")


def test_a_failed_write_leaves_the_old_checkpoint_whole(short_run, runs, monkeypatch):
    save(short_run, "keep")
    before = (runs / "keep.safetensors").read_bytes()

    def crash(state, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoints.safetensors.torch, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        save(short_run, "keep")
    assert (runs / "keep.safetensors").read_bytes() == before
    assert sorted(p.name for p in runs.iterdir()) == [
        "keep.json",
        "keep.safetensors",
        "keep.safetensors.probes",
    ]  # no temp file left


def test_loading_checks_the_architecture(short_run, runs):
    save(short_run, "cnn-run")
    with pytest.raises(CheckpointError, match="is a cnn model, not mlp"):
        load("cnn-run", expected_arch="mlp")
    meta = json.loads((runs / "cnn-run.json").read_text())
    meta["model_config"] = {"channels": [4, 16]}
    (runs / "cnn-run.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not match architecture cnn"):
        load("cnn-run")


def test_damaged_files_give_clear_errors_and_are_listed_as_unreadable(short_run, runs):
    save(short_run, "broken")
    (runs / "broken.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="does not match the SHA-256"):
        load("broken")
    meta = json.loads((runs / "broken.json").read_text())
    del meta["files"]  # a checkpoint from before hashes were recorded: the weights are still checked
    (runs / "broken.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="is not a safetensors file"):
        load("broken")
    (runs / "junk.json").write_text("{not json")
    (runs / "junk.safetensors").write_bytes(b"")
    names = [info.name for info in list_checkpoints()]
    assert "junk" not in names
    usable, unreadable = checkpoints.scan()
    assert "junk" in {u.name for u in unreadable}
    with pytest.raises(CheckpointError, match="no checkpoint named 'absent'"):
        load("absent")


def test_rename_and_delete_touch_only_user_runs(short_run, runs):
    save(short_run, "first")
    assert checkpoints.rename("first", "second") == "second"
    assert load("second")[1]["name"] == "second"
    assert len(checkpoints.load_probes(checkpoints.find("second"))) == len(short_run.probes)  # the history moved too
    with pytest.raises(CheckpointError):
        load("first")
    checkpoints.delete("second")
    assert not any(runs.iterdir())


def test_shipped_checkpoints_load_and_match_their_recorded_accuracy(data):
    shipped = [info for info in list_checkpoints() if info.source == "shipped"]
    assert shipped, "checkpoints/ ships no model"
    for info in shipped:
        model, meta = load(info.name)
        key = (meta.get("dataset") or {}).get("name") or MNIST  # each on the data set it was trained on
        test = data.test if key == MNIST else DeviceData(load_dataset(key), device="cpu").test
        accuracy = evaluate(model, test)["accuracy"]
        assert accuracy == pytest.approx(meta["test_accuracy"], abs=5e-4), info.name
        assert os.path.getsize(info.weights_path) < 10 * 2**20  # small enough to commit


@pytest.mark.parametrize(
    "name, message",
    [
        ("...", "no usable characters; names use letters"),
        ("数字", "no usable characters; names use letters"),
        ("", "the name is empty: enter one, using letters"),
        ("   ", "the name is empty: enter one, using letters"),
        ("a" * 81, "81 characters long; at most 80"),
        ("best", "name of a shipped checkpoint"),
        ("Fast", "name of a shipped checkpoint"),
        ("run\x00x", "NUL character"),
    ],
)
def test_validate_name_says_what_is_wrong(name, message):
    with pytest.raises(CheckpointError, match=message):
        checkpoints.validate_name(name)


def test_validate_name_sanitizes_and_reserves_only_shipped_names():
    assert checkpoints.validate_name("../my run") == "my-run"
    assert checkpoints.is_reserved("best") and checkpoints.is_reserved("tiny_gap")
    assert not checkpoints.is_reserved("my-best") and not checkpoints.is_reserved("...")


def test_a_shipped_name_cannot_be_saved_or_shadow_the_shipped_checkpoint(short_run, runs):
    with pytest.raises(CheckpointError, match="shipped checkpoint"):
        save(short_run, "best")
    assert not runs.exists() or not any(runs.glob("best*"))
    # a run of that name left by an older version: the shipped checkpoint still wins
    save(short_run, "old-best")
    for suffix in (".json", ".safetensors", ".safetensors.probes"):
        os.replace(runs / f"old-best{suffix}", runs / f"best{suffix}")
    info = checkpoints.find("best")
    assert info.source == "shipped" and info.meta["test_accuracy"] > 0.99


def test_saving_over_an_existing_run_needs_overwrite(short_run, runs):
    save(short_run, "mine", overwrite=False)
    before = (runs / "mine.json").read_text()
    with pytest.raises(checkpoints.CheckpointExistsError, match="already exists"):
        save(short_run, "mine", overwrite=False)
    assert (runs / "mine.json").read_text() == before
    assert sorted(p.name for p in runs.iterdir()) == ["mine.json", "mine.safetensors", "mine.safetensors.probes"]
    assert save(short_run, "mine", overwrite=True) == "mine"
    assert load("mine")[1]["name"] == "mine"


def test_checkpoint_files_are_ordinary_readable_files(short_run, runs):
    save(short_run, "shared")
    for path in runs.iterdir():
        assert path.stat().st_mode & 0o777 == FILE_MODE
    assert FILE_MODE & 0o044  # group and others may read (with the usual umask 022)


def test_a_checkpoint_of_other_classes_is_never_the_default_digit_classifier(monkeypatch):
    """The shipped fashion checkpoint names clothes: however accurate it claimed to be, the app's default active
    checkpoint and the GAN's judge stay the most accurate shipped MNIST one."""
    import dataclasses

    import streamlit as st

    from labui import catalog
    from mnist_core import gan_cli
    from mnist_core.datasets import FASHION, recorded_classes
    from mnist_core.datasets import info as dataset_info

    infos = list_checkpoints()
    fashion = next(i for i in infos if i.name == "fashion" and i.source == "shipped")
    assert recorded_classes(fashion.meta) == dataset_info(FASHION).class_names
    boosted = [dataclasses.replace(i, meta={**i.meta, "test_accuracy": 0.9999}) if i is fashion else i for i in infos]
    monkeypatch.setattr(gan_cli, "list_checkpoints", lambda: boosted)
    assert gan_cli.best_shipped_classifier() == "best"
    st.session_state.pop(catalog.ACTIVE_KEY, None)
    assert catalog.active_checkpoint(boosted).name == "best"


def test_a_format_1_fast_checkpoint_keeps_its_older_layer_order(runs, data):
    # Before format 2 the fast net ran conv, BatchNorm, ReLU, pool; its checkpoints name no order in their settings.
    older = fit(TrainConfig(arch="fast", model={"pool_first": False}, max_batches=5, record=False), data)
    name = save(older, "older-fast")
    meta_path = runs / f"{name}.json"
    meta = json.loads(meta_path.read_text())
    meta.update(format=1, model_config={})
    meta["train_config"]["model"] = {}
    meta_path.write_text(json.dumps(meta))
    model, meta = load(name)
    assert meta["model_config"] == {"pool_first": False} and meta["train_config"]["model"] == {"pool_first": False}
    assert [type(m).__name__ for m in model[:4]] == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"]
    x = data.test.images[:50]
    older.model.eval()
    assert torch.equal(model(x).argmax(1), older.model(x).argmax(1))
    refit = fit(TrainConfig(arch="fast", max_batches=1, record=False), data)  # today's default: pool first
    assert [type(m).__name__ for m in refit.model[:4]] == ["Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU"]
