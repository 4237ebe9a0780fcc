"""A data set of your own (mnist_core.uploads): folders, zips and IDX files become MNIST-shaped data sets that
mnist_core.datasets loads; every refusal says what was wrong; zip bombs and paths out of the zip are stopped."""

import gzip
import hashlib
import io
import json
import struct
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_core import datasets, files, uploads
from mnist_core.__main__ import OneLineParser
from mnist_core.data import DataError, _check_sha256, _load_cached, read_idx
from mnist_core.dataset_cli import add_dataset_parser, cmd_dataset
from mnist_core.uploads import UploadError, import_dataset, preview

CLASSES = ("0", "1", "2")
PER_CLASS = 12


def digits(mnist, digit: int, count: int) -> np.ndarray:
    """Real MNIST test digits (uint8, 28x28, white on black)."""
    images, labels = mnist.test_images.numpy(), mnist.test_labels.numpy()
    return images[np.flatnonzero(labels == digit)[:count]]


def styled(digit: np.ndarray, i: int) -> tuple[Image.Image, str]:
    """One digit as users' files come: other sizes, colours, black on white, JPEG, transparency; and its suffix."""
    style = i % 6
    if style == 0:  # white on black, enlarged, PNG
        return Image.fromarray(digit).resize((56, 56), Image.Resampling.BICUBIC), ".png"
    if style == 1:  # black on white (a scan), 4x
        return Image.fromarray(255 - digit).resize((112, 112), Image.Resampling.BICUBIC), ".png"
    if style == 2:  # blue ink on yellow paper, not square, JPEG
        big = np.asarray(Image.fromarray(digit).resize((90, 120), Image.Resampling.BICUBIC), np.float32)[..., None]
        paper, ink = np.array([250, 240, 160], np.float32), np.array([20, 30, 200], np.float32)
        rgb = paper + (ink - paper) * (big / 255)
        return Image.fromarray(rgb.astype(np.uint8)), ".jpg"
    if style == 3:  # green ink on dark red, RGB, 3x
        big = np.asarray(Image.fromarray(digit).resize((84, 84), Image.Resampling.BICUBIC), np.float32)[..., None]
        back, ink = np.array([90, 0, 0], np.float32), np.array([120, 255, 120], np.float32)
        return Image.fromarray((back + (ink - back) * big / 255).astype(np.uint8)), ".png"
    if style == 4:  # black ink on a transparent background (read over white)
        rgba = np.zeros((28, 28, 4), np.uint8)
        rgba[..., 3] = digit
        return Image.fromarray(rgba, "RGBA").resize((100, 100), Image.Resampling.BICUBIC), ".png"
    return Image.fromarray(digit), ".bmp"  # MNIST's own size


def write_image(image: Image.Image, path: Path) -> None:
    files.atomic_write(path, lambda tmp: image.save(tmp, format=Image.registered_extensions()[path.suffix]))


def make_folder(root: Path, mnist, classes=CLASSES, per_class=PER_CLASS) -> Path:
    for k, name in enumerate(classes):
        for i, digit in enumerate(digits(mnist, k % 10, per_class)):
            image, suffix = styled(digit, i)
            write_image(image, root / name / f"{i:03d}{suffix}")
    return root


def zip_folder(folder: Path, path: Path, prefix: str = "", extra: dict | None = None) -> Path:
    def write(tmp):
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for file in sorted(folder.rglob("*")):
                if file.is_file():
                    zf.write(file, prefix + file.relative_to(folder).as_posix())
            for name, data in (extra or {}).items():
                zf.writestr(name, data)

    files.atomic_write(path, write)
    return path


def write_idx(folder: Path, images, labels, test_images, test_labels, gz=True) -> Path:
    arrays = {
        "train-images-idx3-ubyte": images,
        "train-labels-idx1-ubyte": labels,
        "t10k-images-idx3-ubyte": test_images,
        "t10k-labels-idx1-ubyte": test_labels,
    }
    for stem, array in arrays.items():
        raw = uploads.idx_bytes(np.asarray(array, np.uint8))
        files.write_bytes_atomic(folder / (stem + (".gz" if gz else "")), gzip.compress(raw) if gz else raw)
    return folder


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def error_of(call, *args, **kwargs) -> str:
    with pytest.raises(UploadError) as caught:
        call(*args, **kwargs)
    return str(caught.value)


@pytest.fixture
def image_folder(tmp_path, mnist):
    return make_folder(tmp_path / "digits", mnist)


# ---------------------------------------------------------------- what a good import writes


def test_a_folder_of_class_folders_becomes_a_data_set_the_loader_reads(tmp_path, image_folder):
    files.write_text_atomic(image_folder / "1" / "notes.txt", "not an image")
    files.write_bytes_atomic(image_folder / "2" / "broken.png", b"\x89PNG\r\n\x1a\n not really")
    report = import_dataset(image_folder, "My digits", root=tmp_path / "sets")

    folder = tmp_path / "sets" / "My-digits"
    assert report.name == "My-digits" and report.folder == folder and report.title == "My digits"
    assert report.class_names == list(CLASSES) and report.source == "folder"
    # a stratified sixth of each class held out: 12 images -> 10 to train on, 2 to test with
    assert report.train_counts == [10, 10, 10] and report.test_counts == [2, 2, 2]
    assert {s["file"] for s in report.skipped} == {"1/notes.txt", "2/broken.png"}
    assert "not an image (.txt)" in next(s["why"] for s in report.skipped if s["file"] == "1/notes.txt")
    assert "not a readable image" in next(s["why"] for s in report.skipped if s["file"] == "2/broken.png")

    assert sorted(p.name for p in folder.iterdir()) == [
        "SHA256SUMS",
        "dataset.json",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
    ]
    train, train_labels = (
        read_idx(folder / "train-images-idx3-ubyte.gz"),
        read_idx(folder / "train-labels-idx1-ubyte.gz"),
    )
    test, test_labels = read_idx(folder / "t10k-images-idx3-ubyte.gz"), read_idx(folder / "t10k-labels-idx1-ubyte.gz")
    assert train.shape == (30, 28, 28) and test.shape == (6, 28, 28) and train.dtype == np.uint8
    assert np.bincount(train_labels).tolist() == [10, 10, 10] and np.bincount(test_labels).tolist() == [2, 2, 2]
    # white on black like MNIST, whatever the colours were: dark borders, bright ink
    for images in (train, test):
        assert images[:, 0, :].max() < 40 and images[:, :, 0].max() < 40
        assert (images.reshape(len(images), -1).max(1) > 200).all()

    listed = files_in_sums(folder)
    written = sorted(p.name for p in folder.glob("*.gz"))
    assert sorted(listed) == written
    for name, digest in listed.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    _check_sha256(folder, [folder / n for n in written], {folder / n: listed[n] for n in written})  # the loader's check

    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["name"] == "My-digits" and meta["title"] == "My digits"
    assert meta["class_names"] == list(CLASSES) and meta["source"] == "folder"
    assert (meta["train"], meta["test"]) == (30, 6) and len(meta["skipped"]) == 2 and meta["created"]

    loaded = _load_cached(str(folder), "own:My-digits", "My digits", tuple(CLASSES))
    assert loaded.train_images.shape == (30, 28, 28) and loaded.class_names == CLASSES


def files_in_sums(folder: Path) -> dict[str, str]:
    lines = (folder / "SHA256SUMS").read_text().splitlines()
    assert all(len(line.split("  ")) == 2 for line in lines)  # sha256sum's format: "<hex>  <name>"
    return {line.split("  ")[1]: line.split("  ")[0] for line in lines}


def test_the_data_set_is_the_current_owners_and_mnist_core_datasets_finds_it(runs, image_folder):
    report = import_dataset(image_folder, "shapes")
    assert report.folder == runs / "datasets" / "shapes"
    info = datasets.info("own:shapes")
    assert info.class_names == CLASSES and (info.train_size, info.test_size) == (30, 6)
    assert "own:shapes" in [i.key for i in datasets.available()]
    assert datasets.load("own:shapes").test_images.shape == (6, 28, 28)


def test_a_zip_of_the_same_folder_gives_the_same_files_byte_for_byte(tmp_path, image_folder):
    # zipping a folder wraps everything in it; macOS adds __MACOSX/ and .DS_Store: looked through and ignored
    archive = zip_folder(
        image_folder,
        tmp_path / "digits.zip",
        prefix="digits/",
        extra={"__MACOSX/digits/0/._000.png": b"junk", "digits/.DS_Store": b"junk", "digits/0/.hidden.png": b"x"},
    )
    from_folder = import_dataset(image_folder, "a", root=tmp_path / "sets")
    from_zip = import_dataset(archive, "b", root=tmp_path / "sets")
    assert from_zip.source == "zip" and from_zip.skipped == [] and from_zip.class_names == list(CLASSES)
    assert (from_folder.folder / "SHA256SUMS").read_text() == (from_zip.folder / "SHA256SUMS").read_text()
    with open(archive, "rb") as upload:  # an open file (a browser upload) reads the same
        from_upload = import_dataset(upload, "c", root=tmp_path / "sets")
    assert (from_upload.folder / "SHA256SUMS").read_text() == (from_zip.folder / "SHA256SUMS").read_text()


def test_train_and_test_folders_are_kept_as_the_split(tmp_path, mnist):
    make_folder(tmp_path / "src" / "train", mnist, classes=("cat", "dog"), per_class=7)
    make_folder(tmp_path / "src" / "test", mnist, classes=("cat", "dog"), per_class=3)
    report = import_dataset(tmp_path / "src", "pets", root=tmp_path / "sets")
    assert report.class_names == ["cat", "dog"]
    assert report.train_counts == [7, 7] and report.test_counts == [3, 3]


def test_class_names_sort_naturally(tmp_path, mnist):
    names = ("class10", "class2", "class1")
    make_folder(tmp_path / "src", mnist, classes=names, per_class=2)
    report = import_dataset(tmp_path / "src", "n", root=tmp_path / "sets")
    assert report.class_names == ["class1", "class2", "class10"]
    assert report.train_counts == [1, 1, 1] and report.test_counts == [1, 1, 1]  # 2 images: 1 and 1


def test_the_split_is_seeded(tmp_path, image_folder):
    a = import_dataset(image_folder, "a", root=tmp_path / "sets", seed=1)
    b = import_dataset(image_folder, "b", root=tmp_path / "sets", seed=1)
    c = import_dataset(image_folder, "c", root=tmp_path / "sets", seed=2)
    sums = [(r.folder / "SHA256SUMS").read_text() for r in (a, b, c)]
    assert sums[0] == sums[1] != sums[2]


def test_idx_files_in_a_folder_or_a_zip_with_class_names(tmp_path, mnist):
    images, labels = mnist.test_images.numpy(), mnist.test_labels.numpy()
    keep = labels < 4
    source = write_idx(
        tmp_path / "idx", images[keep][:200], labels[keep][:200], images[keep][200:260], labels[keep][200:260]
    )
    report = import_dataset(source, "idx-default", root=tmp_path / "sets")
    assert report.source == "idx" and report.class_names == ["0", "1", "2", "3"]
    assert report.train == 200 and report.test == 60
    written = read_idx(report.folder / "train-images-idx3-ubyte.gz")
    assert np.array_equal(written, images[keep][:200])  # IDX images are taken as they are
    assert np.array_equal(read_idx(report.folder / "t10k-labels-idx1-ubyte.gz"), labels[keep][200:260])

    files.write_text_atomic(source / "classes.txt", "zero\none\ntwo\nthree\n")
    raw = write_idx(
        tmp_path / "raw", images[keep][:50], labels[keep][:50], images[keep][50:60], labels[keep][50:60], gz=False
    )
    files.write_text_atomic(raw / "classes.txt", "zero\none\ntwo\nthree\n")
    archive = zip_folder(raw, tmp_path / "idx.zip", prefix="mnist-part/")
    report = import_dataset(archive, "idx-zip", root=tmp_path / "sets")
    assert report.source == "idx" and report.class_names == ["zero", "one", "two", "three"]
    assert json.loads((report.folder / "dataset.json").read_text())["class_names"] == ["zero", "one", "two", "three"]


# ---------------------------------------------------------------- conversion


def test_centre_mode_gives_back_an_mnist_digit_scaled_up_4x_and_inverted(mnist):
    originals = mnist.test_images.numpy()[:100]
    correlations, errors = [], []
    for digit in originals:
        scan = Image.fromarray(255 - digit).resize((112, 112), Image.Resampling.BICUBIC)  # black on white, 4x
        back = uploads.convert_image(png_bytes(scan), "centre").astype(np.float32) / 255
        original = digit.astype(np.float32) / 255
        # drawing.paste_centred puts the centre of mass at 13.5 (rounded to a whole pixel), MNIST's digits have it
        # at about 14.0: the same digit may come back one pixel over, so compare at the best shift of at most one
        best = max(
            (float(np.corrcoef(np.roll(back, (dy, dx), (0, 1)).ravel(), original.ravel())[0, 1]), dy, dx)
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
        )
        correlations.append(best[0])
        errors.append(float(np.abs(np.roll(back, best[1:], (0, 1)) - original).mean()))
    assert np.median(correlations) > 0.97 and min(correlations) > 0.85
    assert np.median(errors) < 0.03


def test_whole_mode_keeps_the_whole_picture_and_its_proportions():
    photo = np.full((200, 100, 3), 255, np.uint8)  # a tall photo, light background
    photo[150:190, 20:80] = (200, 30, 30)  # a red object low in the picture
    pixels = uploads.convert_image(png_bytes(Image.fromarray(photo)), "whole")
    assert pixels.shape == (28, 28)
    columns = np.flatnonzero(pixels.max(0) > 128)
    rows = np.flatnonzero(pixels.max(1) > 128)
    assert columns.min() >= 7 and columns.max() <= 20  # 100 px wide -> 14 px, centred
    assert rows.min() >= 18  # still low in the picture: not cropped to the ink, not centred by mass
    centred = uploads.convert_image(png_bytes(Image.fromarray(photo)), "centre")
    assert np.flatnonzero(centred.max(1) > 128).min() < 18  # centre mode moves the ink to the middle


def test_a_blank_image_is_skipped_in_centre_mode(tmp_path, image_folder):
    write_image(Image.new("RGB", (64, 64), (255, 255, 255)), image_folder / "0" / "blank.png")
    report = import_dataset(image_folder, "b", root=tmp_path / "sets")
    assert {
        "file": "0/blank.png",
        "why": "no ink found: the image is blank or has too little contrast",
    } in report.skipped
    whole = import_dataset(image_folder, "w", root=tmp_path / "sets", fit="whole")
    assert "0/blank.png" not in [s["file"] for s in whole.skipped]  # a dark photo is still a photo


def test_preview_converts_only_what_it_shows(tmp_path, image_folder):
    files.write_bytes_atomic(image_folder / "1" / "999-broken.png", b"not a png")  # sorted last: never shown
    files.write_text_atomic(image_folder / "1" / "readme.txt", "hi")
    names, grid, counts, skipped = preview(image_folder, per_class=4)
    assert names == list(CLASSES) and grid.shape == (3, 4, 28, 28) and grid.dtype == np.uint8
    assert counts == [12, 13, 12]  # files counted from the listing, the broken one included
    assert [s["file"] for s in skipped] == ["1/readme.txt"]  # the broken image was not read
    assert (grid.reshape(12, -1).max(1) > 200).all()
    report = import_dataset(image_folder, "p", root=tmp_path / "sets")
    assert "1/999-broken.png" in [s["file"] for s in report.skipped]
    assert np.array_equal(preview(image_folder, per_class=20)[1][0, 12:], np.zeros((8, 28, 28), np.uint8))


# ---------------------------------------------------------------- refusals, each saying what to do


def test_a_folder_without_class_folders(tmp_path, mnist):
    write_image(Image.fromarray(digits(mnist, 0, 1)[0]), tmp_path / "flat" / "a.png")
    message = error_of(import_dataset, tmp_path / "flat", "x", root=tmp_path / "sets")
    assert (
        "found no sub-folders; put the images of each class in a folder named after the class, e.g. cat/001.png"
        in message
    )


def test_only_one_class(tmp_path, mnist):
    make_folder(tmp_path / "one", mnist, classes=("cat",), per_class=3)
    assert "only one class ('cat')" in error_of(import_dataset, tmp_path / "one", "x", root=tmp_path / "sets")


def test_a_class_folder_without_images_is_named(tmp_path, image_folder):
    (image_folder / "empty-class").mkdir()
    message = error_of(import_dataset, image_folder, "x", root=tmp_path / "sets")
    assert "class folder 'empty-class' holds no images" in message
    files.write_text_atomic(image_folder / "empty-class" / "list.csv", "a,b")
    assert "class folder 'empty-class' holds no images" in error_of(preview, image_folder)


def test_a_class_whose_images_are_all_unreadable_is_named(tmp_path, image_folder):
    for i in range(3):
        files.write_bytes_atomic(image_folder / "broken" / f"{i}.png", b"garbage")
    message = error_of(import_dataset, image_folder, "x", root=tmp_path / "sets")
    assert "none of the images of class 'broken' could be used" in message and "broken/0.png" in message


def test_the_preview_refuses_a_class_whose_every_file_is_unreadable_as_the_import_would(tmp_path, image_folder):
    for i in range(3):
        files.write_bytes_atomic(image_folder / "broken" / f"{i}.png", b"garbage")
    message = error_of(preview, image_folder)
    assert message == error_of(import_dataset, image_folder, "x", root=tmp_path / "sets")
    assert "none of the images of class 'broken' could be used (broken/0.png: not a readable image" in message


def test_an_uploaded_zip_of_unreadable_files_is_named_as_the_caller_says_without_memory_addresses(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a/1.png", b"not an image")
        archive.writestr("b/1.png", b"not one either")
    staged = tmp_path / "c95a041c.zip"
    files.write_bytes_atomic(staged, buffer.getvalue())
    shown = error_of(preview, io.BytesIO(buffer.getvalue()), label="the uploaded zip")
    stored = error_of(import_dataset, staged, "x", root=tmp_path / "sets", label="the uploaded zip")
    assert stored.startswith("the uploaded zip: none of its 2 image files could be used (first: a/1.png: not a")
    assert shown.startswith("the uploaded zip: none of the images of class 'a' could be used (a/1.png: not a")
    for message in (shown, stored):
        assert "not in a format this lab reads: PNG, JPEG" in message
        assert "0x" not in message and "BytesIO" not in message and "Error" not in message
        assert str(tmp_path) not in message


def test_damaged_images_are_called_damaged_in_plain_words(tmp_path, mnist):
    good = io.BytesIO()
    Image.fromarray(digits(mnist, 3, 1)[0]).resize((56, 56)).save(good, format="PNG")
    cut = good.getvalue()[: len(good.getvalue()) // 2]  # a transfer that stopped half-way
    bad_header = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
    for data, words in ((cut, "damaged or cut short"), (bad_header, "damaged, or not in a format this lab reads")):
        with pytest.raises(uploads._Skip) as caught:
            uploads.decode_image(data)
        assert words in str(caught.value) and "Error" not in str(caught.value) and "0x" not in str(caught.value)


def test_nothing_readable_at_all(tmp_path):
    for name in ("a", "b"):
        files.write_bytes_atomic(tmp_path / "src" / name / "x.jpg", b"garbage")
    assert "none of its 2 image files could be used" in error_of(import_dataset, tmp_path / "src", "x", root=tmp_path)


def test_a_class_with_a_single_image(tmp_path, mnist):
    make_folder(tmp_path / "src", mnist, classes=("many", "lonely"), per_class=5)
    for path in list((tmp_path / "src" / "lonely").iterdir())[1:]:
        path.unlink()
    message = error_of(import_dataset, tmp_path / "src", "x", root=tmp_path / "sets")
    assert "class 'lonely' has only 1 usable image; a class needs at least 2" in message


def test_more_than_ten_classes(tmp_path, mnist):
    make_folder(tmp_path / "src", mnist, classes=tuple(f"c{k}" for k in range(11)), per_class=1)
    message = error_of(import_dataset, tmp_path / "src", "x", root=tmp_path / "sets")
    assert "11 class folders" in message and "at most 10 classes" in message


def test_a_missing_source_and_a_file_that_is_not_a_zip(tmp_path):
    assert "no such file or folder" in error_of(import_dataset, tmp_path / "nowhere", "x", root=tmp_path)
    files.write_text_atomic(tmp_path / "notes.txt", "hello")
    assert "a file but not a zip archive" in error_of(import_dataset, tmp_path / "notes.txt", "x", root=tmp_path)


def test_a_name_taken_is_refused_unless_overwrite_and_a_name_needs_usable_characters(tmp_path, image_folder):
    first = import_dataset(image_folder, "mine", root=tmp_path / "sets")
    assert "already exists" in error_of(import_dataset, image_folder, "mine", root=tmp_path / "sets")
    (image_folder / "2").rename(image_folder / "two")
    again = import_dataset(image_folder, "mine", root=tmp_path / "sets", overwrite=True)
    assert (
        again.folder == first.folder
        and json.loads((again.folder / "dataset.json").read_text())["class_names"][-1] == "two"
    )
    assert sorted(p.name for p in (tmp_path / "sets").iterdir()) == ["mine"]  # no temporary left beside it
    assert "no usable characters" in error_of(import_dataset, image_folder, "///", root=tmp_path / "sets")
    for empty in ("", "  "):
        assert error_of(import_dataset, image_folder, empty, root=tmp_path / "sets").startswith(
            "the data set name is empty: enter one"
        )


def test_non_image_and_unreadable_files_are_listed_in_dataset_json(tmp_path, image_folder):
    for i in range(60):
        files.write_text_atomic(image_folder / "0" / f"note{i}.txt", "x")
    report = import_dataset(image_folder, "n", root=tmp_path / "sets")
    meta = json.loads((report.folder / "dataset.json").read_text())
    assert len(report.skipped) == 60 and len(meta["skipped"]) == 50 and meta["skipped_total"] == 60


# ---------------------------------------------------------------- limits


def test_the_image_count_and_size_limits(tmp_path, image_folder):
    assert "36 images, over the limit of 35" in error_of(
        import_dataset, image_folder, "x", root=tmp_path / "sets", max_images=35
    )
    total = sum(p.stat().st_size for p in image_folder.rglob("*.*"))
    message = error_of(import_dataset, image_folder, "x", root=tmp_path / "sets", max_bytes=total - 1)
    assert "uncompressed, over the limit of" in message
    largest = max(image_folder.rglob("*.*"), key=lambda p: p.stat().st_size)
    report = import_dataset(image_folder, "x", root=tmp_path / "sets", max_file_bytes=largest.stat().st_size - 1)
    assert any(s["file"].endswith(largest.name) and "over the limit" in s["why"] for s in report.skipped)


def test_an_image_of_too_many_pixels_is_skipped_without_decoding_it(tmp_path, image_folder):
    # 100 million pixels (a 1-bit PNG of a few kB; decoded as RGB it would be 300 MB)
    huge = Image.new("1", (10_000, 10_000))
    write_image(huge, image_folder / "0" / "huge.png")
    assert (image_folder / "0" / "huge.png").stat().st_size < 100_000
    tracemalloc.start()
    try:
        report = import_dataset(image_folder, "x", root=tmp_path / "sets")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert {"file": "0/huge.png", "why": "10000x10000 pixels, over the limit of 40,000,000 per image"} in report.skipped
    assert peak < 50 * 2**20


def one_gigabyte_bomb(path: Path, member: str = "0/bomb.png") -> Path:
    """A zip of a few images and one member of 1 GB of zeros (about 1 MB compressed), written streaming."""

    def write(tmp):
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            zf.writestr("1/a.png", b"x")
            with zf.open(member, "w", force_zip64=True) as out:
                zeros = bytes(1 << 20)
                for _ in range(1024):
                    out.write(zeros)

    files.atomic_write(path, write)
    return path


def test_a_zip_bomb_is_refused_from_its_declared_sizes(tmp_path):
    bomb = one_gigabyte_bomb(tmp_path / "bomb.zip")
    assert bomb.stat().st_size < 20 * 2**20
    tracemalloc.start()
    try:
        message = error_of(import_dataset, bomb, "x", root=tmp_path / "sets")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "add up to 1,024.0 MB uncompressed, over the limit of 200.0 MB" in message
    assert peak < 20 * 2**20
    assert not (tmp_path / "sets").exists()


def lying_zip(path: Path, png: bytes, inflated: int, declared: int) -> Path:
    """A zip whose member 0/liar.png declares `declared` bytes in the table of contents but inflates to `inflated`."""

    def write(tmp):
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("0/ok.png", png)
            zf.writestr("0/ok2.png", png)
            zf.writestr("1/ok.png", png)
            zf.writestr("1/ok2.png", png)
            zf.writestr("0/liar.png", bytes(inflated))

    files.atomic_write(path, write)
    data = bytearray(path.read_bytes())
    # the central directory's record of the member: signature, ..., uncompressed size at offset 24
    record = data.index(b"PK\x01\x02")
    while data[record + 46 : record + 46 + len(b"0/liar.png")] != b"0/liar.png":
        record = data.index(b"PK\x01\x02", record + 4)
    struct.pack_into("<I", data, record + 24, declared)
    files.write_bytes_atomic(path, bytes(data))
    return path


def test_a_member_that_inflates_past_its_declared_size_is_stopped_at_it(tmp_path, mnist):
    png = png_bytes(Image.fromarray(digits(mnist, 3, 1)[0]))
    bomb = lying_zip(tmp_path / "liar.zip", png, inflated=64 * 2**20, declared=1000)
    with zipfile.ZipFile(bomb) as zf:
        assert zf.getinfo("0/liar.png").file_size == 1000  # the lie is in place
    tracemalloc.start()
    try:
        report = import_dataset(bomb, "x", root=tmp_path / "sets")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    liar = next(s for s in report.skipped if s["file"] == "0/liar.png")
    assert "could not be read" in liar["why"] and "CRC" in liar["why"]  # read up to 1000 bytes, then refused
    assert peak < 20 * 2**20  # never the 64 MB it inflates to
    assert report.train + report.test == 4


@pytest.mark.parametrize("member", ["../evil.png", "0/../../evil.png", "/abs.png", "C:/windows.png", "..\\evil.png"])
def test_a_zip_member_leading_out_of_the_folder_is_refused_by_name(tmp_path, image_folder, member):
    archive = zip_folder(image_folder, tmp_path / "evil.zip", extra={member: b"x"})
    message = error_of(import_dataset, archive, "x", root=tmp_path / "sets")
    assert f"member {member!r} has a path that leads out of the zip's folder" in message
    assert f"member {member!r}" in error_of(preview, archive)
    assert not (tmp_path / "sets").exists() and not (tmp_path / "evil.png").exists()


def test_a_symlink_member_is_refused_by_name(tmp_path, image_folder):
    def write(tmp):
        with zipfile.ZipFile(tmp, "w") as zf:
            zf.writestr("0/a.png", b"x")
            link = zipfile.ZipInfo("1/passwd.png")
            link.external_attr = (0o120777 << 16) | 0x20  # a symbolic link, as zip -y stores one
            zf.writestr(link, "/etc/passwd")

    files.atomic_write(tmp_path / "link.zip", write)
    message = error_of(import_dataset, tmp_path / "link.zip", "x", root=tmp_path / "sets")
    assert "member '1/passwd.png' is a symbolic link" in message


# ---------------------------------------------------------------- IDX problems


@pytest.fixture
def idx_parts(mnist):
    images, labels = mnist.test_images.numpy()[:120], mnist.test_labels.numpy()[:120]
    return images[:100], labels[:100], images[100:], labels[100:]


def test_idx_images_not_28x28(tmp_path, idx_parts):
    images, labels, test, test_labels = idx_parts
    write_idx(tmp_path / "s", images[:, :20, :20], labels, test, test_labels)
    message = error_of(import_dataset, tmp_path / "s", "x", root=tmp_path / "sets")
    assert "train-images-idx3-ubyte.gz: images are 100x20x20, not N x 28 x 28" in message


def test_idx_counts_differing(tmp_path, idx_parts):
    images, labels, test, test_labels = idx_parts
    write_idx(tmp_path / "s", images, labels[:90], test, test_labels)
    message = error_of(import_dataset, tmp_path / "s", "x", root=tmp_path / "sets")
    assert "holds 100 images but train-labels-idx1-ubyte.gz holds 90 labels" in message


def test_idx_labels_out_of_range_of_the_named_classes(tmp_path, idx_parts):
    write_idx(tmp_path / "s", *idx_parts)
    files.write_text_atomic(tmp_path / "s" / "classes.txt", "a\nb\nc\n")
    message = error_of(import_dataset, tmp_path / "s", "x", root=tmp_path / "sets")
    assert "label 9 is out of range (classes.txt names 3, labels 0-2)" in message


def test_idx_header_and_size_mismatch(tmp_path, idx_parts):
    write_idx(tmp_path / "s", *idx_parts, gz=False)
    raw = (tmp_path / "s" / "t10k-images-idx3-ubyte").read_bytes()
    files.write_bytes_atomic(tmp_path / "s" / "t10k-images-idx3-ubyte", raw[:-5])
    message = error_of(import_dataset, tmp_path / "s", "x", root=tmp_path / "sets")
    assert "t10k-images-idx3-ubyte: truncated" in message
    assert issubclass(UploadError, DataError)  # callers catching the loader's DataError catch these too


def test_idx_set_missing_a_file(tmp_path, idx_parts):
    write_idx(tmp_path / "s", *idx_parts)
    (tmp_path / "s" / "t10k-labels-idx1-ubyte.gz").unlink()
    assert "missing t10k-labels-idx1-ubyte" in error_of(import_dataset, tmp_path / "s", "x", root=tmp_path)


# ---------------------------------------------------------------- the folder is written whole


def test_a_failed_import_leaves_nothing_behind(tmp_path, image_folder, monkeypatch):
    def fail(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(uploads, "move_folder_into_place", fail)  # the last step, after every file was written
    with pytest.raises(OSError, match="disk full"):
        import_dataset(image_folder, "x", root=tmp_path / "sets")
    assert list((tmp_path / "sets").iterdir()) == []


def test_move_folder_into_place_refuses_an_existing_folder_and_replaces_on_request(tmp_path):
    target = tmp_path / "set"
    target.mkdir()
    files.write_text_atomic(target / "old.txt", "old")
    staged = files.temporary_folder_beside(target)
    files.write_text_atomic(staged / "new.txt", "new")
    with pytest.raises(FileExistsError):
        files.move_folder_into_place(staged, target)
    files.move_folder_into_place(staged, target, replace=True)
    assert [p.name for p in tmp_path.iterdir()] == ["set"] and [p.name for p in target.iterdir()] == ["new.txt"]
    files.remove_folder(target)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- the command line


def run_cli(argv: list[str]) -> int:
    parser = OneLineParser(prog="python -m mnist_core")
    add_dataset_parser(parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser))
    return cmd_dataset(parser.parse_args(argv))


def test_the_dataset_command_imports_lists_and_deletes(runs, image_folder, capsys):
    assert run_cli(["dataset", "import", str(image_folder), "--name", "cli-set", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "data set 'cli-set': 3 classes, 30 training and 6 test images" in out and "--dataset own:cli-set" in out
    assert run_cli(["dataset", "list"]) == 0
    assert any(line.startswith("own:cli-set") and "0, 1, 2" in line for line in capsys.readouterr().out.splitlines())

    assert run_cli(["dataset", "import", str(image_folder), "--name", "cli-set", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err and err.startswith("python -m mnist_core dataset: error:")
    assert run_cli(["dataset", "import", str(image_folder), "--name", "cli-set", "--overwrite", "--fit", "whole"]) == 0

    assert run_cli(["dataset", "delete", "cli-set"]) == 0
    assert not (runs / "datasets" / "cli-set").exists()
    assert run_cli(["dataset", "delete", "cli-set"]) == 2
    assert "no data set of your own named 'cli-set'" in capsys.readouterr().err


def test_the_dataset_command_is_one_line_for_a_bad_source(runs, tmp_path, capsys):
    assert run_cli(["dataset", "import", str(tmp_path / "nowhere"), "--name", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file or folder" in err


def test_no_writes_outside_the_atomic_helpers_in_the_new_modules():
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from test_atomic_write import ROOT, direct_writes
    finally:
        sys.path.pop(0)
    for module in ("mnist_core/uploads.py", "mnist_core/dataset_cli.py", "benchmarks/upload.py"):
        if (ROOT / module).exists():
            assert direct_writes(ROOT / module) == [], module
