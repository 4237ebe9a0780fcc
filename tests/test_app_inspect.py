"""The Inspect page: predictions kept once per checkpoint version, words for layers, honest captions."""

from pathlib import Path

import numpy as np
import pandas  # noqa: F401  imported whole first: plotly trips on a half-imported pandas another thread is loading
import pytest
from streamlit.testing.v1 import AppTest

from labui.inspect_charts import per_class_ticks
from mnist_core import evaluation
from mnist_core.checkpoints import load
from mnist_core.embed import file_digest

ROOT = Path(__file__).resolve().parent.parent


def inspect(checkpoint: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages/6_Inspect.py"), default_timeout=300)
    at.session_state["active_checkpoint"] = checkpoint
    return at.run()


def test_the_test_set_is_scored_once_and_saved_beside_the_runs(runs, data):
    at = inspect("cnn")
    assert not at.exception, [e.message for e in at.exception]
    model, _ = load("cnn")
    saved = runs / "predictions" / f"{file_digest(ROOT / 'checkpoints/cnn.safetensors')}.npy"
    stored = np.load(saved, allow_pickle=False)
    assert np.allclose(stored, evaluation.test_probabilities(model, data.test), atol=1e-6)


def test_the_reliability_caption_says_what_this_checkpoint_is(runs, data):
    at = inspect("best")
    assert not at.exception, [e.message for e in at.exception]
    probs = evaluation.test_probabilities(load("best")[0], data.test)
    shipped = ROOT / "checkpoints/predictions" / f"{file_digest(ROOT / 'checkpoints/best.safetensors')}.npy"
    assert np.allclose(np.load(shipped, allow_pickle=False), probs, atol=1e-6)  # shipped with best: its real outputs
    assert not (runs / "predictions").exists()  # read from the shipped file, not scored again
    cal = evaluation.calibration(probs, data.test.labels.numpy())
    caption = next(c.value for c in at.caption if "calibrated" in c.value)
    said = "underconfident" if cal.mean_confidence < cal.accuracy_overall else "overconfident"
    assert f"**best** is {said}" in caption
    assert f"{cal.accuracy_overall:.2%}" in caption and f"{cal.mean_confidence:.2%}" in caption


def test_a_checkpoint_without_history_offers_one_click_to_one_with_it(runs):
    at = inspect("best")
    assert any("has no recorded training history" in m.value for m in at.info)
    at.button(key="inspect.to_fast").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.session_state["active_checkpoint"] == "fast"
    assert not any("has no recorded training history" in m.value for m in at.info)
    specs = " ".join(str(chart.proto.spec) for chart in at.get("plotly_chart"))
    assert "Dead units" in specs and "ReLU after conv 1 (layer 4)" in specs  # which layer, in words
    assert "conv 1 weights (layer 1)" in specs and '"0.weight"' not in specs
    layer_box = next(s for s in at.selectbox if s.label == "Layer")
    assert layer_box.options[0] == "conv 1 weights (layer 1)"


@pytest.mark.parametrize(
    "accuracy",
    [
        np.array([0.998, 0.997, 0.996, 0.995, 0.994, 0.993, 0.992, 0.991, 0.989, 1.0]),  # best's kind: all near 100%
        np.array([0.95, 0.99, 0.97, 0.96, 0.98, 0.97, 0.99, 0.96, 0.94, 0.95]),
        np.array([0.5, 0.9, 0.8, 0.7, 0.6, 0.9, 1.0, 0.85, 0.75, 0.65]),
    ],
)
def test_per_class_accuracy_ticks_never_repeat_and_show_every_bar(accuracy):
    axis = per_class_ticks(accuracy)
    ticks = np.arange(axis["tick0"], axis["range"][1] + 1e-9, axis["dtick"])
    decimals = 1 if axis["tickformat"] == ".1%" else 0
    labels = [f"{t:.{decimals}%}" for t in ticks]
    assert len(set(labels)) == len(labels) and 2 <= len(labels) <= 9
    assert axis["range"][0] < accuracy.min()


def test_the_first_digits_explanation_is_computed_once_per_server_not_once_per_visitor(runs, monkeypatch):
    """Every visitor opens the same first test digit: its saliency, feature maps and activations are shared."""
    import streamlit as st

    from mnist_core import saliency

    explained = []
    original = saliency.explain
    monkeypatch.setattr(saliency, "explain", lambda *a, **k: explained.append(1) or original(*a, **k))
    st.cache_resource.clear()
    first, second = inspect("best"), inspect("best")  # two visitors
    assert not first.exception and not second.exception, [e.message for e in [*first.exception, *second.exception]]
    captions = [
        [i.proto.imgs[0].caption for i in at.get("image") if i.proto.imgs[0].caption.startswith("Why")]
        for at in (first, second)
    ]
    assert captions[0] and captions[0] == captions[1]  # both see the explanation
    assert len(explained) == 1
