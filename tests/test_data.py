import gzip
import shutil

import numpy as np
import pytest
import torch

from mnist_core.data import BUNDLED_DIR, Augment, DataError, DeviceData, load_mnist, read_idx, resolve_data_dir

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def idx_bytes(array: np.ndarray, dtype_code: int = 0x08) -> bytes:
    header = bytes([0, 0, dtype_code, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_set(folder, n_train=20, n_test=10, **replace):
    """A small, valid MNIST-shaped folder; replace={'train-labels-idx1-ubyte': bytes} swaps one file."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (n_train, 28, 28))),
        "train-labels-idx1-ubyte": idx_bytes(rng.integers(0, 10, n_train)),
        "t10k-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (n_test, 28, 28))),
        "t10k-labels-idx1-ubyte": idx_bytes(rng.integers(0, 10, n_test)),
    }
    files.update(replace)
    for name, content in files.items():
        (folder / f"{name}.gz").write_bytes(gzip.compress(content))
    return folder


def test_bundled_set_is_real_mnist(mnist):
    assert mnist.train_images.shape == (60000, 28, 28) and mnist.train_images.dtype == torch.uint8
    assert mnist.test_images.shape == (10000, 28, 28)
    assert torch.bincount(mnist.train_labels).tolist() == TRAIN_COUNTS
    assert torch.bincount(mnist.test_labels).tolist() == TEST_COUNTS


def test_normalization_statistics_are_computed_from_training_pixels(mnist):
    assert mnist.mean == pytest.approx(0.1307, abs=1e-4)
    assert mnist.std == pytest.approx(0.3081, abs=1e-4)
    normalized = mnist.normalize(mnist.train_images)
    assert normalized.shape == (60000, 1, 28, 28)
    assert float(normalized.mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(normalized.std()) == pytest.approx(1.0, abs=1e-3)


def test_statistics_follow_the_folder_they_are_read_from(tmp_path):
    folder = write_set(tmp_path / "set", n_train=50)
    pixels = read_idx(folder / "train-images-idx3-ubyte.gz").astype(np.float64) / 255.0
    small = load_mnist(folder)
    assert small.mean == pytest.approx(pixels.mean(), rel=1e-12)
    assert small.std == pytest.approx(pixels.std(), rel=1e-12)


def test_raw_and_gzipped_files_read_the_same(tmp_path):
    array = np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256
    (tmp_path / "a").write_bytes(idx_bytes(array))
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(array)))
    assert np.array_equal(read_idx(tmp_path / "a"), array)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), array)


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"\x00\x00\x08", "only 3 bytes"),
        (b"\x12\x34\x08\x01" + (5).to_bytes(4, "big") + b"\x00" * 5, "bad magic number"),
        (b"\x00\x00\x0d\x01" + (5).to_bytes(4, "big") + b"\x00" * 20, "element type code 0x0d"),
        (b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"\x00" * 3, "truncated"),
        (b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"\x00" * 9, "longer than its header says"),
        (b"\x00\x00\x08\x03" + (5).to_bytes(4, "big"), "header claims 3 dimensions"),
    ],
)
def test_damaged_idx_files_are_named_with_their_problem(tmp_path, content, expected):
    path = tmp_path / "labels"
    path.write_bytes(content)
    with pytest.raises(DataError, match=expected) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_truncated_gzip_is_reported(tmp_path):
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((3, 28, 28))))[:30])
    with pytest.raises(DataError, match="truncated or corrupted"):
        read_idx(path)


def test_mismatched_counts_are_refused(tmp_path):
    folder = write_set(tmp_path / "set", **{"train-labels-idx1-ubyte": idx_bytes(np.zeros(19))})
    with pytest.raises(DataError, match="20 images but .* 19 labels"):
        load_mnist(folder)


def test_label_out_of_range_is_refused(tmp_path):
    folder = write_set(tmp_path / "set", **{"t10k-labels-idx1-ubyte": idx_bytes(np.full(10, 11))})
    with pytest.raises(DataError, match="label 11 out of range"):
        load_mnist(folder)


def test_missing_file_and_missing_folder(tmp_path):
    folder = write_set(tmp_path / "set")
    (folder / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing t10k-images-idx3-ubyte"):
        load_mnist(folder)
    with pytest.raises(DataError, match="no such folder"):
        load_mnist(tmp_path / "nowhere")


def test_checksum_mismatch_of_bundled_style_folder(tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(BUNDLED_DIR, folder)
    raw = bytearray(gzip.decompress((folder / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    raw[100] = (raw[100] + 1) % 10  # a valid file, but not the real one
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match="SHA-256 .* does not match SHA256SUMS"):
        load_mnist(folder)


def test_loading_order_explicit_then_environment_then_bundled(tmp_path, monkeypatch):
    monkeypatch.delenv("MNIST_DATA_DIR", raising=False)
    assert resolve_data_dir() == BUNDLED_DIR
    env_folder = write_set(tmp_path / "env", n_train=30)
    monkeypatch.setenv("MNIST_DATA_DIR", str(env_folder))
    assert len(load_mnist().train_labels) == 30
    explicit = write_set(tmp_path / "explicit", n_train=40)
    assert len(load_mnist(explicit).train_labels) == 40


def test_download_fails_fast_and_clearly_when_offline(tmp_path, monkeypatch):
    pytest.importorskip(
        "torchvision",
        reason="downloads go through torchvision; without it the message says so (tests/test_hosted_no_torchvision.py)",
    )
    # A proxy on a closed local port makes every request fail at once, online machine or not.
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with pytest.raises(DataError, match="could not download MNIST.*offline"):
        load_mnist(tmp_path / "dl", download=True)


def test_batches_cover_the_split_once_in_a_seeded_order(data):
    def first_labels(seed):
        gen = torch.Generator().manual_seed(seed)
        return next(data.train.batches(256, gen))[1]

    assert torch.equal(first_labels(3), first_labels(3))
    assert not torch.equal(first_labels(3), first_labels(4))
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros(10, dtype=torch.long)
    total = 0
    for _, y in data.train.batches(5000, gen):
        counts += torch.bincount(y, minlength=10)
        total += len(y)
    assert total == 60000 and counts.tolist() == TRAIN_COUNTS


def test_augmentation_moves_ink_but_keeps_background_and_shape(data):
    x = data.test.images[:64]
    gen = torch.Generator().manual_seed(0)
    assert torch.allclose(Augment(0, 0)(x, gen, data.train.background), x, atol=1e-5)
    shifted = Augment(rotation=10, shift=3)(x, gen, data.train.background)
    assert shifted.shape == x.shape
    assert (shifted - x).abs().mean() > 0.05  # the digits moved
    corner = shifted[:, :, :2, :2]  # far from any ink: stays the normalized black
    assert torch.allclose(corner, torch.full_like(corner, data.train.background), atol=1e-4)


def test_validation_split_is_held_out(mnist):
    d = DeviceData(mnist, device="cpu", val_size=5000)
    assert len(d.train) == 55000 and len(d.val) == 5000
    with pytest.raises(DataError, match="validation size"):
        DeviceData(mnist, device="cpu", val_size=60000)


@pytest.mark.parametrize(
    "sums, message",
    [
        (b"\xff\xfe not utf-8\n", "not UTF-8 text"),
        (b"this is not a checksum line\n", "line 1 is not '<64 hex digits>  <file name>'"),
        (b"abc123  t10k-images-idx3-ubyte.gz\n", "line 1 is not"),
    ],
)
def test_a_malformed_sums_file_is_one_clear_error(tmp_path, sums, message):
    folder = tmp_path / "copy"
    shutil.copytree(BUNDLED_DIR, folder)
    (folder / "SHA256SUMS").write_bytes(sums)
    with pytest.raises(DataError, match=message):
        load_mnist(folder)


def test_a_file_the_sums_do_not_list_is_reported_not_trusted(tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(BUNDLED_DIR, folder)
    gz = folder / "t10k-labels-idx1-ubyte.gz"
    (folder / "t10k-labels-idx1-ubyte").write_bytes(gzip.decompress(gz.read_bytes()))  # raw beside sums of .gz
    gz.unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte: not listed in SHA256SUMS"):
        load_mnist(folder)


def test_a_file_given_as_the_data_folder_is_named_as_such(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(DataError, match="is a file, not a folder"):
        load_mnist(tmp_path / "f")


def test_the_resident_splits_are_the_loaded_bytes_not_a_float_copy(mnist, data):
    """MNIST stays in memory as uint8 (55 MB): on the CPU the splits share the loaded tensors' storage."""
    for split, images in ((data.train, mnist.train_images), (data.test, mnist.test_images)):
        assert split.pixels.dtype == torch.uint8
        assert split.pixels.data_ptr() == images.data_ptr()
    held = [v for v in vars(data.train).values() if isinstance(v, torch.Tensor)]
    assert all(t.dtype != torch.float32 for t in held)


def test_images_are_standardized_per_batch_exactly_as_the_whole_set_would_be(mnist, data):
    whole = mnist.normalize(mnist.test_images)  # what the splits used to hold
    assert torch.equal(data.test.images[100:164], whole[100:164])
    assert data.test.images[7].shape == (1, 28, 28) and torch.equal(data.test.images[7], whole[7])
    picked = torch.tensor([5, 3, 9999])
    assert torch.equal(data.test.images[picked], whole[picked])
    assert len(data.test.images) == 10000
    in_order = torch.cat([x for x, _ in data.test.batches(3000)])
    assert torch.equal(in_order, whole)
    gen = torch.Generator().manual_seed(1)
    x, y = next(data.test.batches(256, torch.Generator().manual_seed(1)))
    order = torch.randperm(10000, generator=gen)[:256]
    assert torch.equal(x, whole[order]) and torch.equal(y, mnist.test_labels[order])


def test_a_subset_and_a_validation_split_keep_bytes_and_standardize_alike(mnist):
    d = DeviceData(mnist, device="cpu", val_size=5000)
    assert d.val.pixels.dtype == torch.uint8 and d.train.take(torch.arange(10)).pixels.dtype == torch.uint8
    whole = mnist.normalize(mnist.train_images)
    sub = d.train.take(torch.tensor([0, 2]))
    assert torch.equal(sub.images[0:2], d.train.images[torch.tensor([0, 2])])
    assert d.val.background == pytest.approx(float(whole.min()))
