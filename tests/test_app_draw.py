"""The Draw page: a damaged drawings folder is skipped with warnings, no exception; the evaluation table."""

from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest
from test_drawings_store import bomb_png

from mnist_core.drawing_store import drawings_dir, load_drawings, save_drawing

ROOT = Path(__file__).resolve().parent.parent


def test_an_image_bomb_in_the_drawings_folder_is_a_warning_not_a_crash(runs):
    save_drawing(np.zeros((28, 28)), 4)
    bomb_png(drawings_dir() / "7-20260101-000000-abcdef.png")  # crashed the page with DecompressionBombError
    (drawings_dir() / "labels.json").write_text("[{")
    at = AppTest.from_file(str(ROOT / "pages/7_Draw.py"), default_timeout=120).run()
    assert not at.exception
    warnings = [w.value for w in at.warning]
    assert any("7-20260101-000000-abcdef.png" in w and "not a readable PNG" in w for w in warnings), warnings
    assert any("labels.json" in w for w in warnings), warnings
    assert any("1 saved" in m.value for m in at.markdown)
    assert not at.button(key="draw.finetune").disabled  # the good drawing is still there to fine-tune on


def test_the_evaluation_table_puts_the_long_misreadings_column_last(runs):
    """The misreadings text is hundreds of characters wide: a column after it was off the screen."""
    save_drawing(np.zeros((28, 28)), 4)
    at = AppTest.from_file(str(ROOT / "pages/7_Draw.py"), default_timeout=300).run()
    at.button(key="draw.evaluate").click().run()
    assert not at.exception
    assert list(at.dataframe[-1].value.columns) == [
        "checkpoint",
        "architecture",
        "MNIST test %",
        "synthetic drawings %",
        "your drawings %",
        "synthetic misreadings by style",
    ]


def test_saved_drawings_can_be_deleted_the_latest_or_all_after_a_second_click(runs):
    for label in (1, 2, 3):
        save_drawing(np.full((28, 28), label / 10), label)
    at = AppTest.from_file(str(ROOT / "pages/7_Draw.py"), default_timeout=120).run()
    assert any("3 saved" in m.value for m in at.markdown)
    at.button(key="draw.delete_latest").click().run()
    assert any("Deleted your latest drawing (labelled 3)" in s.value for s in at.success)
    assert list(load_drawings().labels) == [1, 2]
    at.button(key="draw.delete_all").click().run()
    assert any("Delete all 2 of your saved drawings?" in w.value for w in at.warning)
    at.button(key="draw.delete_all_no").click().run()
    assert len(load_drawings()) == 2 and not any("Delete all" in w.value for w in at.warning)
    at.button(key="draw.delete_all").click().run()
    at.button(key="draw.delete_all_yes").click().run()
    assert len(load_drawings()) == 0
    assert any("Deleted all 2 of your drawings" in s.value for s in at.success)
    assert any("0 saved" in m.value for m in at.markdown)
    assert not at.exception
