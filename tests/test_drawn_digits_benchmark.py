"""The drawn-digit benchmark's figures: per-style scoring by hand, and the script's table on a small sample."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnist_core.checkpoints import load
from mnist_core.drawing import flagged, predict_all, score_groups, screen_all
from mnist_core.strokes import non_digits, style_test_split

ROOT = Path(__file__).resolve().parent.parent


def test_score_groups_counts_accuracy_unsure_and_the_most_common_misreadings():
    sure = lambda d: np.eye(10)[d] * 0.97 + 0.003  # noqa: E731  (top 97.3%: not unsure)
    unsure = lambda d, e: np.eye(10)[d] * 0.5 + np.eye(10)[e] * 0.45 + 0.005  # noqa: E731
    probabilities = np.stack(
        [
            sure(1),
            sure(7),
            sure(7),
            unsure(1, 7),
            sure(4),  # style "1 flagged"
            sure(7),
            sure(9),
        ]
    )  # style "7 crossed"
    labels = np.array([1, 1, 1, 1, 1, 7, 7])
    refused = np.array([False, False, False, False, True, False, False])  # a refused drawing counts as wrong
    flagged_now = flagged(probabilities, refused)
    assert flagged_now.tolist() == [False, False, False, True, True, False, False]
    ones, sevens = score_groups(probabilities, refused, labels, ["1 flagged"] * 5 + ["7 crossed"] * 2)
    assert (ones.name, ones.count) == ("1 flagged", 5)
    assert ones.accuracy == pytest.approx(2 / 5)  # two right; the refused 4 is not
    assert ones.unsure == pytest.approx(2 / 5)
    assert ones.read == pytest.approx(1 / 5)  # right and shown as an answer
    assert ones.confusions == [(7, 2)] and ones.top_confusions() == "->7: 2"
    assert sevens.accuracy == 0.5 and sevens.confusions == [(9, 1)] and sevens.unsure == 0


def test_the_benchmark_prints_the_same_figures_as_the_core_on_a_small_sample():
    out = subprocess.run(
        [
            sys.executable,
            "benchmarks/drawn_digits.py",
            "--per-style",
            "2",
            "--per-shape",
            "10",
            "--only",
            "best,fast,fashion",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    split = style_test_split(per_style=2)
    inputs, refused = screen_all(split.images)
    model, meta = load("best")
    probabilities = predict_all(model, inputs)
    overall = score_groups(probabilities, refused, split.labels, ["all"] * len(split))[0]
    scribbles = screen_all(non_digits(per_shape=10, seed=0)["scribble"])
    scribbles_flagged = flagged(predict_all(model, scribbles[0]), scribbles[1]).mean()
    row = next(line for line in text.splitlines() if line.startswith("best *"))
    # 'before -> after' where the weights changed, else one figure: the after figure ends each column
    assert re.search(rf"{overall.accuracy:.1%}\s+\S*{overall.unsure:.1%}\s", row.replace(" -> ", "->")), row
    assert f"{meta['test_accuracy']:.2%}" in row and row.rstrip().endswith(f"{scribbles_flagged:.0%}")
    assert f"default best: styled digits {overall.accuracy:.1%}" in text
    for style in ("1 flagged", "7 crossed", "4 open", "9 straight stem"):
        assert re.search(rf"^  {style}\s+\S", text, re.M), style
    assert "fast" in text and "cnn" not in text.split("non-digits")[0]  # --only keeps to the named checkpoints
    assert "fashion" not in text  # a checkpoint of clothes has no digit to give
