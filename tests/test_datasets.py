"""Data sets beyond MNIST: Fashion-MNIST bundled and checked, sets of your own named, checkpoints recording
their data set and refused on other classes, the compare dimension "dataset"."""

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnist_core import datasets
from mnist_core.compare import CompareError, build_arms, plan
from mnist_core.data import DIGITS, DataError
from mnist_core.embed import EmbedSpec, cache_key
from mnist_core.train import TrainConfig

ROOT = Path(__file__).resolve().parent.parent


def cli(*args, env_extra=None):
    env = dict(os.environ, PYTHONWARNINGS="ignore", **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "mnist_core", *args], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env
    )


def idx_bytes(array: np.ndarray) -> bytes:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def write_own_set(root: Path, name: str, class_names, n_train=60, n_test=20, seed=0) -> Path:
    """A set of your own as mnist_core.uploads writes it: four IDX files, SHA256SUMS and dataset.json."""
    rng = np.random.default_rng(seed)
    folder = root / "datasets" / name
    folder.mkdir(parents=True)
    k = len(class_names)
    files = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte.gz": np.arange(n_train) % k,
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": np.arange(n_test) % k,
    }
    sums = []
    for file_name, array in files.items():
        data = gzip.compress(idx_bytes(array))
        (folder / file_name).write_bytes(data)
        sums.append(f"{hashlib.sha256(data).hexdigest()}  {file_name}")
    (folder / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    description = {"name": name, "title": name, "class_names": list(class_names), "train": n_train, "test": n_test}
    (folder / "dataset.json").write_text(json.dumps(description))
    return folder


def test_fashion_mnist_loads_with_its_class_names_and_a_digest():
    fashion = datasets.load(datasets.FASHION)
    assert fashion.title == "Fashion-MNIST" and fashion.name == "fashion-mnist"
    assert fashion.class_names[7] == "Sneaker" and fashion.class_names[9] == "Ankle boot"
    assert tuple(fashion.train_images.shape) == (60_000, 28, 28) and len(fashion.test_labels) == 10_000
    assert 0.28 < fashion.mean < 0.29  # Fashion-MNIST's known pixel mean, not MNIST's 0.1307
    mnist = datasets.load(datasets.MNIST)
    assert mnist.class_names == DIGITS and len(mnist.sha256) == len(fashion.sha256) == 64
    assert mnist.sha256 != fashion.sha256


def test_fashion_files_are_checked_by_sha256(tmp_path, monkeypatch):
    copy = tmp_path / "fashion"
    shutil.copytree(datasets.FASHION_BUNDLED_DIR, copy)
    labels = copy / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[-1] = (raw[-1] + 1) % 10  # one label changed: a valid file, but not Fashion-MNIST's
    labels.write_bytes(gzip.compress(bytes(raw)))
    monkeypatch.setenv(datasets.FASHION_ENV, str(copy))
    with pytest.raises(DataError, match="does not match SHA256SUMS"):
        datasets.load(datasets.FASHION)


def test_missing_fashion_files_name_the_ways_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv(datasets.FASHION_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(DataError) as caught:
        datasets.load(datasets.FASHION)
    message = str(caught.value)
    assert "apt-get install dataset-fashion-mnist" in message and datasets.FASHION_ENV in message


def test_unknown_and_missing_data_sets_are_refused_with_what_can_be_named(runs):
    with pytest.raises(DataError, match="unknown data set 'kmnist'; use mnist, fashion-mnist or own:NAME"):
        datasets.info("kmnist")
    with pytest.raises(DataError, match="no data set of your own named 'cats'; import one first"):
        datasets.info("own:cats")


def test_a_set_of_your_own_is_listed_loaded_and_kept_apart_by_version(runs):
    write_own_set(runs, "shapes", ["circle", "square", "star"])
    keys = [d.key for d in datasets.available()]
    assert keys == ["mnist", "fashion-mnist", "own:shapes"]
    shapes = datasets.load("own:shapes")
    assert shapes.class_names == ("circle", "square", "star") and len(shapes.train_labels) == 60
    tag = datasets.cache_tag("own:shapes")
    assert tag and datasets.cache_tag("mnist") == datasets.cache_tag("fashion-mnist") == ""
    # imported again under the same name: a new version, read anew rather than served from the cache
    shutil.rmtree(runs / "datasets" / "shapes")
    write_own_set(runs, "shapes", ["circle", "square"], n_train=40, seed=1)
    assert datasets.cache_tag("own:shapes") != tag
    assert datasets.load("own:shapes").class_names == ("circle", "square")


def test_labels_beyond_the_described_classes_are_refused(runs):
    folder = write_own_set(runs, "two", ["a", "b", "c"])
    description = json.loads((folder / "dataset.json").read_text())
    (folder / "dataset.json").write_text(json.dumps({**description, "class_names": ["a", "b"]}))
    with pytest.raises(DataError, match=r"label 2 out of range 0-1"):
        datasets.load("own:two")


def test_check_classes_refuses_a_checkpoint_of_other_classes_and_says_what_to_do():
    fashion = datasets.info(datasets.FASHION)
    digits_meta = {"name": "best"}  # no record: a checkpoint from before data sets were recorded reads digits
    assert datasets.same_classes(digits_meta, datasets.info(datasets.MNIST))
    with pytest.raises(DataError) as caught:
        datasets.check_classes(digits_meta, fashion)
    message = str(caught.value)
    assert "'best' was trained on MNIST (0, 1 ... 9), not on Fashion-MNIST (T-shirt/top, Trouser ... Ankle boot)" in (
        message
    )
    assert "choose a checkpoint trained on Fashion-MNIST, or switch the data set to MNIST" in message


def test_train_records_its_data_set_and_eval_refuses_other_classes(tmp_path):
    env = {"MNIST_RUNS_DIR": str(tmp_path)}
    done = cli(
        "train", "--arch", "mlp", "--dataset", "fashion-mnist", "--max-batches", "30", "--name", "clothes", "--quiet",
        env_extra=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    meta = json.loads((tmp_path / "clothes.json").read_text())
    assert meta["dataset"]["name"] == "fashion-mnist" and meta["dataset"]["class_names"][7] == "Sneaker"
    assert meta["dataset"]["sha256"] == datasets.load(datasets.FASHION).sha256
    assert "--dataset fashion-mnist" in meta["command"]  # the reproduce command trains on the same data

    evaluated = cli("eval", "clothes", env_extra=env)  # on the data set it was trained on, by default
    assert evaluated.returncode == 0, evaluated.stderr
    assert "on Fashion-MNIST: test accuracy" in evaluated.stdout

    refused = cli("eval", "clothes", "--dataset", "mnist", env_extra=env)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "python -m mnist_core: error: 'clothes' was trained on Fashion-MNIST (T-shirt/top, Trouser ... Ankle boot), "
        "not on MNIST (0, 1 ... 9); choose a checkpoint trained on MNIST, or switch the data set to Fashion-MNIST"
    ]


def test_train_refuses_an_unknown_data_set_in_one_line():
    done = cli("train", "--dataset", "kmnist", "--dry-run")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "python -m mnist_core: error: unknown data set 'kmnist'; use mnist, fashion-mnist or own:NAME for one "
        "you imported"
    ]


def test_the_dataset_dimension_runs_one_recipe_on_each_data_set(runs):
    base = TrainConfig(arch="mlp", max_batches=5)
    arms = build_arms(base, "dataset")
    assert [a.label for a in arms] == ["MNIST", "Fashion-MNIST"]
    specs = plan(base, arms, [0, 1], "ds")
    assert [(s.arm, s.config.dataset, s.seed) for s in specs] == [
        ("MNIST", "mnist", 0),
        ("MNIST", "mnist", 1),
        ("Fashion-MNIST", "fashion-mnist", 0),
        ("Fashion-MNIST", "fashion-mnist", 1),
    ]
    # everything else the same: the only difference between arms is the data
    assert {tuple(sorted((k, str(v)) for k, v in s.config.to_dict().items() if k != "dataset")) for s in specs[::2]}
    with pytest.raises(CompareError, match="unknown data set 'kmnist'"):
        build_arms(base, "dataset", ["mnist", "kmnist"])


def test_mnist_map_keys_are_unchanged_and_other_sets_get_their_own():
    mnist_spec = EmbedSpec(method="umap", points=10_000)
    relevant = mnist_spec.relevant()
    assert "dataset" not in relevant  # the shipped maps' keys hold
    fashion_spec = EmbedSpec(method="umap", points=10_000, dataset="fashion-mnist")
    assert cache_key(fashion_spec) != cache_key(mnist_spec)


def test_hosted_a_visitors_data_set_is_theirs_alone_and_their_jobs_train_on_it(runs, monkeypatch):
    from mnist_core import owners
    from mnist_core.reporter import DONE
    from mnist_core.runner import Runner
    from mnist_core.uploads import import_dataset

    monkeypatch.setenv("MNIST_HOSTED", "1")
    monkeypatch.delenv("MNIST_OWNER_QUOTA_MB", raising=False)
    source = write_own_set(runs.parent / "source", "digits3", ["a", "b", "c"])  # IDX files, as a visitor's upload
    (source / "classes.txt").write_text("a\nb\nc\n")
    with owners.use("alice"):
        import_dataset(source, "mine")
        assert [d.key for d in datasets.available()][-1] == "own:mine"
    assert (runs / "owners" / "alice" / "datasets" / "mine" / "dataset.json").exists()
    assert not (runs / "datasets").exists()  # nothing in the shared folder
    with owners.use("bob"):
        assert "own:mine" not in [d.key for d in datasets.available()]
    tiny = {
        "arch": "mlp",
        "model": {"depth": 1, "width": 16},
        "batch_size": 16,
        "max_batches": 3,
        "dataset": "own:mine",
    }
    runner = Runner(backend="threads", workers=1)
    try:
        with pytest.raises(ValueError, match="no data set of your own named 'mine'"):
            runner.submit("bob", "train", tiny, name="bob-run")  # refused at submit: not bob's
        job = runner.submit("alice", "train", tiny, name="alice-run")
        finished = runner.wait(job.id, 120)
        assert finished.status == DONE, finished.message
    finally:
        runner.shutdown()
    meta = json.loads((runs / "owners" / "alice" / "alice-run.json").read_text())
    assert meta["dataset"]["name"] == "own:mine" and meta["dataset"]["class_names"] == ["a", "b", "c"]


def a_zip_of_class_folders(path: Path) -> Path:
    import io
    import zipfile

    from PIL import Image

    with zipfile.ZipFile(path, "w") as zf:
        for name, rows in (("square", slice(8, 20)), ("bar", slice(2, 26))):
            for i in range(6):
                image = np.zeros((40, 40), np.uint8)
                image[rows, 14 + i % 3 : 22 + i % 3] = 255
                buffer = io.BytesIO()
                Image.fromarray(image).save(buffer, format="PNG")
                zf.writestr(f"{name}/{i}.png", buffer.getvalue())
    return path


def test_an_upload_is_imported_by_a_job_that_removes_it_and_bad_imports_are_refused_at_submit(runs):
    from mnist_core.kinds import staged_upload_path
    from mnist_core.reporter import DONE
    from mnist_core.runner import Runner

    staged = staged_upload_path()
    staged.parent.mkdir(parents=True)
    a_zip_of_class_folders(staged)
    runner = Runner(backend="threads", workers=1)
    try:
        outside = a_zip_of_class_folders(runs.parent / "elsewhere.zip")  # not an upload of this owner's
        with pytest.raises(ValueError, match="the uploaded file is gone"):
            runner.submit("me", "import", {"upload": str(outside), "name": "shapes", "fit": "centre"})
        with pytest.raises(ValueError, match="fit 'stretch' is not one of centre, whole"):
            runner.submit("me", "import", {"upload": str(staged), "name": "shapes", "fit": "stretch"})
        job = runner.submit("me", "import", {"upload": str(staged), "name": "shapes", "fit": "centre"}, name="shapes")
        finished = runner.wait(job.id, 120)
        assert finished.status == DONE, finished.message
        assert finished.result["dataset"] == "own:shapes" and "2 classes" in finished.message
        assert not staged.exists()  # the upload is gone once imported
        assert datasets.load("own:shapes").class_names == ("bar", "square")
        again = staged_upload_path()
        a_zip_of_class_folders(again)
        with pytest.raises(ValueError, match="a data set named 'shapes' already exists"):
            runner.submit("me", "import", {"upload": str(again), "name": "shapes", "fit": "centre"})
    finally:
        runner.shutdown()
