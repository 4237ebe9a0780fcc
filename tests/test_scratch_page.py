"""The Under the hood page in AppTest: it renders, steps forward and backward through one training step,
refuses bad widths with a message, and trains in the background into a net it can save."""

import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
PAGE = str(ROOT / "pages" / "4_Under_the_hood.py")


def page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=180)
    return at.run()


def button(at: AppTest, key: str):
    return next(b for b in at.button if b.key == key)


def caption_with(at: AppTest, text: str) -> str:
    return next(c.value for c in at.caption if text in c.value)


def test_page_renders_and_steps_forward_and_backward(runs):
    at = page()
    assert not at.exception
    assert at.title[0].value == "Under the hood"
    assert "Step 1 of" in caption_with(at, "Step 1 of") and "forward of x" in caption_with(at, "Step 1 of")
    total = int(caption_with(at, "Step 1 of").split(" of ")[1].split(":")[0])
    for _ in range(total - 1):
        button(at, "scratch.next").click().run()
    assert not at.exception
    assert "update" in caption_with(at, f"Step {total} of")
    button(at, "scratch.back").click().run()  # the last backward stage: the input image's gradient
    assert "backward of x" in caption_with(at, f"Step {total - 1} of")
    diff = next(m for m in at.metric if m.label == "Largest difference to PyTorch")
    assert float(diff.value) < 1e-5
    back = [s.value for s in at.subheader]
    assert any(v.startswith("Backward: d loss / d x") for v in back)
    assert any("the first 16 of its 32 units" in m.value for m in at.markdown)  # the default 32,16 net


def test_bad_widths_are_an_error_not_a_traceback(runs):
    at = page()
    at.text_input(key="scratch.widths").set_value("32,abc").run()
    assert not at.exception
    assert "widths are whole numbers" in at.error[0].value
    for text in ("5000", "0", "16,0"):  # one range, the page's, in every message
        at.text_input(key="scratch.widths").set_value(text).run()
        assert [e.value for e in at.error] == [
            "on this page a net has at most 4 hidden layers of 1 to 512 units each; "
            "train bigger ones with `python -m mnist_core scratch`"
        ], text


def test_training_in_the_background_then_saving_a_checkpoint(runs):
    at = page()
    at.text_input(key="scratch.widths").set_value("16").run()
    at.number_input(key="scratch.epochs").set_value(1).run()
    button(at, "scratch.train").click().run()
    deadline = time.time() + 600
    while time.time() < deadline and not at.success:
        time.sleep(2)
        at.run()
    assert not at.exception
    assert "test accuracy" in at.success[0].value
    assert any("28x28 template**, all 16 units" in m.value for m in at.markdown)
    at.text_input(key="scratch.name").set_value("scratch-apptest").run()
    button(at, "scratch.export").click().run()
    assert any("Saved checkpoint 'scratch-apptest'" in s.value for s in at.success)
    assert (runs / "scratch-apptest.json").exists()
