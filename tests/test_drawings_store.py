"""The drawings store under faults: concurrent saves, a damaged label list, junk, pickles and image bombs."""

import json
import pickle
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest

from mnist_core.checkpoints import CheckpointError
from mnist_core.drawing_store import delete_drawing, drawings_dir, fine_tune_name, load_drawings, save_drawing


def bomb_png(path: Path, side: int = 20000) -> None:
    """A genuine side x side 1-bit PNG, all black: a few dozen KB on disk, 400 M pixels once decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\0" * (1 + (side + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
        + chunk(b"IDAT", body)
        + chunk(b"IEND", b"")
    )


class Payload:
    """Unpickling this writes a marker file: proof that a pickle was loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "unpickled"))


def test_concurrent_saves_keep_every_label(runs):
    saved: dict[str, int] = {}
    lock = threading.Lock()

    def saver(worker: int) -> None:
        for i in range(40):
            label = (worker + i) % 10
            name = save_drawing(np.full((28, 28), label / 10), label)
            with lock:
                saved[name] = label

    threads = [threading.Thread(target=saver, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    loaded = load_drawings()
    assert len(saved) == 160 and len(loaded) == 160, loaded.problems
    assert dict(zip(loaded.files, loaded.labels.tolist())) == saved
    assert not [p for p in drawings_dir().iterdir() if p.name.endswith(".tmp")]  # no temporary left behind


def test_a_corrupt_label_list_plus_a_save_loses_nothing(runs):
    names = [save_drawing(np.zeros((28, 28)), d) for d in range(5)]
    (drawings_dir() / "labels.json").write_text("{not json")
    names.append(save_drawing(np.ones((28, 28)), 7))
    loaded = load_drawings()
    assert loaded.files == names and loaded.labels.tolist() == [0, 1, 2, 3, 4, 7]
    assert any("labels.json" in p and "unreadable" in p for p in loaded.problems)


def test_a_set_saved_with_a_label_list_is_still_read_and_deletable(runs):
    folder = drawings_dir()
    folder.mkdir(parents=True)
    first = save_drawing(np.zeros((28, 28)), 2)
    (folder / first).rename(folder / "old-drawing.png")  # an older set's file, labelled only in labels.json
    (folder / "labels.json").write_text(json.dumps([{"file": "old-drawing.png", "label": 6}]))
    loaded = load_drawings()
    assert loaded.files == ["old-drawing.png"] and loaded.labels.tolist() == [6] and not loaded.problems
    delete_drawing("old-drawing.png")
    assert len(load_drawings()) == 0 and json.loads((folder / "labels.json").read_text()) == []


def test_junk_and_pickle_payloads_are_skipped_never_loaded(runs, tmp_path):
    good = save_drawing(np.zeros((28, 28)), 3)
    folder = drawings_dir()
    marker = tmp_path / "marker"
    payload = pickle.dumps(Payload(marker))
    (folder / "evil.pkl").write_bytes(payload)
    (folder / "5-20260101-000000-abcdef.png").write_bytes(payload)  # a drawing's name, a pickle inside
    (folder / "notes.txt").write_text("hello")
    (folder / "labels.json").write_text(json.dumps([{"file": "evil.pkl", "label": 1}, {"file": "../x", "label": 2}]))
    loaded = load_drawings()
    assert loaded.files == [good]
    assert not marker.exists()
    text = "\n".join(loaded.problems)
    for expected in ("evil.pkl", "5-20260101-000000-abcdef.png", "notes.txt", "malformed entry"):
        assert expected in text, text


def test_an_image_bomb_is_skipped_with_a_message_and_fine_tuning_still_validates(runs):
    from mnist_core.starting import check_starting_point
    from mnist_core.train import TrainConfig

    good = save_drawing(np.zeros((28, 28)), 1)
    bomb_png(drawings_dir() / "7-20260101-000000-abcdef.png")
    bomb_png(drawings_dir() / "8-20260101-000001-abcdef.png", side=3000)  # small enough to decode: a wrong size
    loaded = load_drawings()
    assert loaded.files == [good]
    text = "\n".join(loaded.problems)
    assert "7-20260101-000000-abcdef.png" in text and "8-20260101-000001-abcdef.png: a 3000x3000 image" in text
    check_starting_point(TrainConfig(arch="fast", epochs=1, max_batches=1, init_checkpoint="fast", drawings_share=0.25))


def test_fine_tune_names_differ_per_click_and_are_validated_first():
    first, second = fine_tune_name("best"), fine_tune_name("best")
    assert first != second and first.startswith("best-drawings-20")
    assert len(fine_tune_name("x" * 200)) <= 80
    with pytest.raises(CheckpointError):
        fine_tune_name("...\x00")


def test_a_generated_set_is_stored_in_index_order_and_bad_input_is_refused(tmp_path):
    from mnist_core.drawing_store import DrawingSetError, save_drawing_set

    pixels = np.stack([np.full((28, 28), i / 11, np.float32) for i in range(12)])
    labels = np.arange(12) % 10
    names = save_drawing_set(pixels, labels, tmp_path / "set")
    assert names[0] == "0-20000101-000000-000000.png" and names[11] == "1-20000101-000011-00000b.png"
    drawn = load_drawings(tmp_path / "set")
    assert drawn.files == names and drawn.labels.tolist() == labels.tolist() and not drawn.problems
    assert np.allclose(drawn.pixels[:, 0, 0], np.round(pixels[:, 0, 0] * 255) / 255)
    with pytest.raises(DrawingSetError, match="one label each"):
        save_drawing_set(pixels, labels[:3], tmp_path / "other")
    with pytest.raises(DrawingSetError, match="drawing 1"):
        save_drawing_set(np.zeros((2, 28, 28)), np.array([3, 12]), tmp_path / "other")
