"""The Embeddings page: a click on one point shows that digit, and a checkpoint's PCA runs in the background."""

import json
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent


def embeddings_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages/2_Embeddings.py"), default_timeout=120).run()
    at.selectbox(key="emb.method").set_value("pca").run()
    at.number_input(key="emb.points").set_value(1000).run()
    return at


def map_figure(at: AppTest) -> dict:
    return next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if "digits (" in c.proto.spec)


def map_layout(at: AppTest) -> dict:
    return map_figure(at)["layout"]


def test_the_2d_map_lets_a_click_select_one_point(runs):
    """Streamlit turns clickmode to "event" (clicks select nothing) when a figure sets dragmode select/lasso."""
    at = embeddings_page()
    layout = map_layout(at)
    assert layout.get("dragmode") not in ("select", "lasso") and "clickmode" not in layout
    assert any("Click a point to see that digit here" in c.value for c in at.caption)
    assert not at.exception


def test_the_3d_map_is_clickable_as_a_turned_view_and_rotates_freely_on_request(runs):
    at = embeddings_page()
    at.radio(key="emb.dims").set_value(3).run()
    layout = map_layout(at)
    assert "seen from turn 30°, tilt 20°" in layout["title"]["text"]
    assert {t["type"] for t in map_figure(at)["data"]} == {"scattergl"}
    assert layout.get("dragmode") not in ("select", "lasso")
    at.slider(key="emb.turn").set_value(90).run()
    assert "seen from turn 90°" in map_layout(at)["title"]["text"]
    at.toggle(key="emb.free3d").set_value(True).run()
    assert {t["type"] for t in map_figure(at)["data"]} == {"scatter3d"}  # plotly's own 3-D scene
    assert not at.exception


def wait_until(at: AppTest, done, timeout: float = 120) -> AppTest:
    deadline = time.time() + timeout
    while not done(at):
        assert time.time() < deadline, "timed out"
        time.sleep(0.5)
        at.run()
    return at


def test_a_checkpoints_pca_runs_in_the_background_with_progress_and_a_stop_button(runs):
    at = embeddings_page()
    at.selectbox(key="emb.source").set_value("best").run()
    at.number_input(key="emb.points").set_value(70_000).run()
    assert not any("digits (" in c.proto.spec for c in at.get("plotly_chart"))  # not computed inline
    at.button(key="emb.compute").click().run()
    wait_until(
        at,
        lambda at: any(
            "PCA of 70,000 digits (best's features)" in p.proto.text and "features of digits" in p.proto.text
            for p in at.get("progress")
        ),
    )
    at.button(key="emb.stop").click().run()
    wait_until(at, lambda at: any("PCA of 70,000 digits (best's features): stopped at" in m.value for m in at.info))
    assert not at.exception and not at.error


def test_a_small_checkpoint_pca_finishes_in_the_background_and_draws_its_map(runs):
    at = embeddings_page()
    at.selectbox(key="emb.source").set_value("mlp").run()
    at.button(key="emb.compute").click().run()
    wait_until(at, lambda at: any("PCA of 1,000 digits (mlp)" in c.proto.spec for c in at.get("plotly_chart")))
    assert any("10-NN accuracy" in m.label for m in at.metric)
    assert not at.exception
