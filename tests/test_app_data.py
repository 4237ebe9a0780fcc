"""The Data page: the class-difference map's caption names the colour the figure really uses; the sample grid."""

import base64
import json
import re
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent


def colour_name(rgb: str) -> str:
    r, _g, b = (int(v) for v in re.findall(r"\d+", rgb)[:3])
    return "red" if r > b else "blue"


def test_the_difference_caption_names_the_colour_of_class_a_having_more_ink(runs):
    at = AppTest.from_file(str(ROOT / "pages/1_Data.py"), default_timeout=120).run()
    figure = next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if '"zmid"' in c.proto.spec)
    heat = figure["data"][0]
    scale = heat["colorscale"]
    assert heat["zmid"] == 0
    more_a, more_b = colour_name(scale[-1][1]), colour_name(scale[0][1])  # A - B > 0 is the top of the scale
    caption = next(c.value for c in at.caption if c.value.startswith("Mean of 3 minus mean of 8"))
    assert f"{more_a} where class 3 has more ink, {more_b} where class 8 does" in caption
    z = heat["z"]  # plotly sends arrays as {"dtype", "bdata": base64}
    values = np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"]) if isinstance(z, dict) else np.ravel(z)
    assert values.max() > 0 > values.min()  # really A minus B: 3s have more ink in places, 8s in others


def test_the_sample_grid_fills_the_width_with_as_many_columns_as_fit(runs):
    at = AppTest.from_file(str(ROOT / "pages/1_Data.py"), default_timeout=120).run()
    grid = next(h.proto.body for h in at.get("html") if "grid-template-columns" in h.proto.body)
    assert "repeat(auto-fill,minmax(44px,1fr))" in grid and grid.count("<img ") == 100
    assert any(c.value.startswith("100 train digits") for c in at.caption)
    assert not at.exception


def test_the_first_sample_grid_is_drawn_once_per_server_not_once_per_visitor(runs, monkeypatch):
    """Every visitor opens the same first grid; its 100 PNG encodings are made once and shared."""
    import streamlit as st

    from labui import images

    encoded = []
    original = images.png_data_uri
    monkeypatch.setattr(images, "png_data_uri", lambda image: encoded.append(1) or original(image))
    st.cache_data.clear()
    first = AppTest.from_file(str(ROOT / "pages/1_Data.py"), default_timeout=120).run()
    second = AppTest.from_file(str(ROOT / "pages/1_Data.py"), default_timeout=120).run()  # another visitor
    assert not first.exception and not second.exception
    grids = [
        next(h.proto.body for h in at.get("html") if "grid-template-columns" in h.proto.body) for at in (first, second)
    ]
    assert grids[0] == grids[1] and grids[0].count("<img ") == 100
    assert len(encoded) == 100  # the second visitor's grid was not encoded again


def test_the_intensity_curves_are_on_a_log_axis_that_the_caption_explains(runs):
    """MNIST's saturated stroke cores hold 35-44% of the ink pixels, about ten times any other bin."""
    at = AppTest.from_file(str(ROOT / "pages/1_Data.py"), default_timeout=120).run()
    figure = next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if "non-black pixels only" in c.proto.spec)
    assert figure["layout"]["yaxis"]["type"] == "log"
    caption = next(c.value for c in at.caption if "logarithmic" in c.value)
    low, high = (int(v) for v in re.search(r"holds (\d+)-(\d+)%", caption).groups())
    assert 30 <= low <= high <= 50, caption
