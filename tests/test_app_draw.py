"""The Draw page with a damaged drawings folder: every bad file skipped with a warning, no exception."""

from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest
from test_drawings_store import bomb_png

from mnist_core.drawing_store import drawings_dir, save_drawing

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
