"""Drawing to model input: MNIST-style preprocessing, the synthetic drawn digits, the drawings store."""

import numpy as np
import pytest
import torch

from mnist_core.checkpoints import list_checkpoints, load
from mnist_core.data import PIXEL_MEAN, PIXEL_STD
from mnist_core.datasets import MNIST, same_classes
from mnist_core.datasets import info as dataset_info
from mnist_core.drawing import (
    DrawingError,
    Drawings,
    flagged,
    predict,
    predict_all,
    preprocess,
    preprocess_all,
    read_with_each,
    reading,
    score,
    score_groups,
    screen_all,
)
from mnist_core.drawing_store import DrawingSetError, delete_drawing, drawings_dir, load_drawings, save_drawing
from mnist_core.strokes import (
    NON_DIGITS,
    STYLES,
    Placement,
    non_digits,
    render,
    scribbles,
    style_test_split,
    synthetic_drawings,
)


def default_model():
    digits = dataset_info(MNIST)
    shipped = [i for i in list_checkpoints() if i.source == "shipped" and same_classes(i.meta, digits)]
    return load(max(shipped, key=lambda i: i.meta["test_accuracy"]).name)[0]


def test_the_pixel_constants_are_mnists_own_statistics(mnist):
    assert mnist.mean == pytest.approx(PIXEL_MEAN, abs=1e-4)
    assert mnist.std == pytest.approx(PIXEL_STD, abs=1e-4)


def test_a_digit_drawn_anywhere_gives_the_same_input():
    seven = STYLES[7]["plain"]
    reference = preprocess(render(seven, Placement(160, (140, 140), 16))).pixels
    for centre in [(90, 90), (190, 90), (90, 190), (185, 185)]:  # near each corner
        moved = preprocess(render(seven, Placement(160, centre, 16))).pixels
        assert np.abs(moved - reference).max() < 0.02, centre
    for height in (80, 120, 240):  # the same drawing at another size: the brush scales with it
        scaled = preprocess(render(seven, Placement(height, (140, 140), 16 * height / 160))).pixels
        assert np.abs(scaled - reference).mean() < 0.03, height
        assert np.corrcoef(scaled.ravel(), reference.ravel())[0, 1] > 0.95, height


def test_the_result_looks_like_mnist_fits_20_pixels_centred_by_mass():
    pixels = preprocess(render(STYLES[0]["oval"], Placement(150, (60, 200), 14))).pixels
    rows, cols = np.flatnonzero(pixels.sum(1) > 0), np.flatnonzero(pixels.sum(0) > 0)
    assert max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) <= 21  # LANCZOS may ring by a pixel
    ys, xs = np.mgrid[:28, :28]
    centre = ((ys * pixels).sum() / pixels.sum(), (xs * pixels).sum() / pixels.sum())
    assert centre == pytest.approx((13.5, 13.5), abs=0.6)


def test_an_empty_canvas_or_a_dot_asks_for_a_digit():
    blank = np.zeros((280, 280, 4), np.uint8)
    blank[..., 3] = 255
    assert preprocess(blank).empty
    assert "Draw a digit" in preprocess(blank).message
    dot = blank.copy()
    dot[100:103, 100:103, :3] = 255
    assert preprocess(dot).empty


def test_an_all_ink_canvas_is_refused_as_a_filled_shape_after_becoming_a_centred_square():
    result = preprocess(np.full((280, 280), 255, np.uint8))
    assert result.empty and result.refusal == "solid" and "filled shape" in result.message
    pixels = result.steps[-1][1]  # the steps are still shown
    assert pixels[4:24, 4:24].min() > 0.99
    assert pixels.sum() == pytest.approx(400, abs=1)


def test_a_tiny_dot_is_refused_before_any_model_with_draw_larger():
    dot = render([[(0.5, 0.5), (0.5, 0.5)]], Placement(10, (150, 150), 20))  # read as "0 (89.7%)" before
    result = preprocess(dot)
    assert result.empty and result.refusal == "too small" and "Draw the digit larger" in result.message


@pytest.mark.parametrize("shape, refusal", [("dot", "too small"), ("filled box", "solid")])
def test_dots_and_filled_boxes_are_refused_before_any_model(shape, refusal):
    drawn = non_digits(per_shape=30, seed=4)[shape]
    refusals = [preprocess(image).refusal for image in drawn]
    assert refusals.count(refusal) / len(refusals) >= 0.9, refusals


def test_a_smiley_is_refused_as_scattered_pieces():
    result = preprocess(render(NON_DIGITS["smiley"], Placement(200, (140, 140), 16)))
    assert result.refusal == "pieces" and "4 separate pieces" in result.message


def test_no_synthetic_digit_is_refused():
    images, _, _ = synthetic_drawings(per_class=20, seed=6)
    assert [preprocess(image).refusal for image in images] == [""] * len(images)


def test_the_default_checkpoint_flags_every_kind_of_non_digit_and_reads_the_digits():
    model = default_model()
    for shape, drawn in non_digits(per_shape=30, seed=5).items():
        pixels, refused = screen_all(drawn)
        flagged = refused | np.array([reading(p).unsure for p in predict_all(model, pixels)])
        assert flagged.mean() >= 0.8, shape  # the benchmark's 100 per shape: 90-100%
    images, labels, _ = synthetic_drawings(per_class=10, seed=2)
    probabilities = predict_all(model, preprocess_all(images))
    read = (probabilities.argmax(1) == labels) & ~np.array([reading(p).unsure for p in probabilities])
    assert read.mean() >= 0.9


def test_an_unsure_reading_gives_two_guesses_and_no_answer():
    p = reading(np.array([0.02, 0.3, 0.0, 0.0, 0.0, 0.0, 0.0, 0.55, 0.13, 0.0]))
    assert p.unsure and p.verdict == "Not sure: maybe a 7 or a 1"
    sure = reading(np.eye(10)[3] * 0.98 + 0.002)
    assert not sure.unsure and sure.verdict.startswith("3 (")


def test_rgba_from_the_canvas_reads_like_the_grey_image():
    grey = render(STYLES[3]["round"], Placement(180, (140, 140), 18))
    rgba = np.zeros((280, 280, 4), np.uint8)
    rgba[..., :3] = grey[..., None]
    rgba[..., 3] = 255
    assert np.abs(preprocess(rgba).pixels - preprocess(grey).pixels).max() < 1e-5


def test_an_image_of_the_wrong_shape_is_refused_with_its_shape():
    with pytest.raises(DrawingError, match=r"\(3, 5, 7\)"):
        preprocess(np.zeros((3, 5, 7)))


def test_the_default_checkpoint_reads_at_least_90_percent_of_synthetic_drawings():
    images, labels, _ = synthetic_drawings(per_class=50, seed=1)
    result = score(predict_all(default_model(), preprocess_all(images)), labels)
    assert result.accuracy >= 0.90, result.errors_per_class


def test_scribbles_are_flagged_unsure_and_digits_are_not():
    model = default_model()
    unsure = lambda probs: [reading(p).unsure for p in probs]  # noqa: E731
    flagged_scribbles = np.mean(unsure(predict_all(model, preprocess_all(scribbles(60, seed=3)))))
    images, _, _ = synthetic_drawings(per_class=10, seed=2)
    flagged_digits = np.mean(unsure(predict_all(model, preprocess_all(images))))
    assert flagged_scribbles >= 0.7
    assert flagged_digits <= 0.1


def test_drawings_round_trip_and_bad_ones_are_refused_or_skipped(runs):
    pixels = preprocess(render(STYLES[4]["open"], Placement(180, (140, 140), 18))).pixels
    first = save_drawing(pixels, 4)
    save_drawing(np.zeros((28, 28)), 0)
    with pytest.raises(DrawingSetError, match="0-9"):
        save_drawing(pixels, 11)
    with pytest.raises(DrawingSetError, match="28x28"):
        save_drawing(np.zeros((20, 20)), 1)
    loaded = load_drawings()
    assert list(loaded.labels) == [4, 0]
    assert np.abs(loaded.pixels[0] - pixels).max() <= 1 / 255
    (drawings_dir() / first).write_bytes(b"not a png")
    damaged = load_drawings()
    assert list(damaged.labels) == [0] and any(first in problem for problem in damaged.problems)
    delete_drawing(first)
    assert load_drawings().problems == []


def test_fine_tuning_starts_from_the_checkpoint_and_mixes_in_drawings(runs, data):
    from types import SimpleNamespace

    from mnist_core import kinds
    from mnist_core.data import Augment
    from mnist_core.reporter import DONE, Reporter
    from mnist_core.runner import HostLimits
    from mnist_core.starting import check_starting_point, load_starting_point
    from mnist_core.train import ConfigError, DrawingBatches, TrainConfig, evaluate

    config = TrainConfig(arch="fast", epochs=1, max_batches=3, lr=1e-5, init_checkpoint="fast", drawings_share=0.25)
    config.validate()  # the settings alone are fine; what is in storage is checked apart
    with pytest.raises(ConfigError, match="no saved drawings"):
        check_starting_point(config)
    with pytest.raises(ConfigError, match="no saved drawings"):  # refused at submit, before the job is queued
        kinds.kind("train").prepare(config.to_dict(), HostLimits())
    with pytest.raises(ConfigError, match="fast model"):
        check_starting_point(TrainConfig(arch="mlp", init_checkpoint="fast"))
    save_drawing(preprocess(render(STYLES[1]["stick"], Placement(200, (140, 140), 18))).pixels, 1)
    mixer = DrawingBatches(load_starting_point(config).drawings, 0.25, 128, torch.device("cpu"), data.train.background)
    x, y = next(data.train.batches(128))
    mixed_x, mixed_y = mixer.mix(x, y, torch.Generator().manual_seed(0), Augment())
    assert mixed_x.shape[0] == 128 + 32 and (mixed_y[128:] == 1).all()
    # Through the job path, as the Draw page's fine-tune runs: the work function reads the checkpoint and the
    # drawings and hands them to fit().
    prepared = kinds.kind("train").prepare(config.to_dict(), HostLimits())
    job = SimpleNamespace(
        id="t", kind="train", owner="me", config=prepared, name="tuned", overwrite=False, runs_dir=str(runs)
    )
    result = kinds.work_train(job, Reporter())
    assert result["status"] == DONE and result["steps"] == 3, result["message"]
    shipped_accuracy = load("fast")[1]["test_accuracy"]  # a fresh init would be near 10% after 3 batches
    assert evaluate(load("tuned")[0], data.test)["accuracy"] == pytest.approx(shipped_accuracy, abs=0.01)


def test_every_model_reads_one_drawing_as_predict_does_and_a_stack_as_score_groups_does():
    models = [(name, load(name)[0]) for name in ("best", "mlp")]
    split = style_test_split(per_style=1)
    drawn = Drawings.screened(split.images, split.labels, split.styles)
    first = int(np.flatnonzero(~drawn.refused)[0])
    one = read_with_each(models, drawn.pixels[first])
    assert [r.name for r in one] == ["best", "mlp"]
    for (_, model), read in zip(models, one):
        alone = predict(model, drawn.pixels[first])
        assert read.prediction().label == alone.label
        assert read.prediction().confidence == pytest.approx(alone.confidence, abs=1e-5)
    for (_, model), read in zip(models, read_with_each(models, drawn.pixels)):
        probabilities = predict_all(model, drawn.pixels)
        assert read.overall(drawn) == score_groups(probabilities, drawn.refused, drawn.labels, ["all"] * len(drawn))[0]
        assert read.by_group(drawn) == score_groups(probabilities, drawn.refused, drawn.labels, split.styles)
        assert read.flagged_share(drawn.refused) == pytest.approx(flagged(probabilities, drawn.refused).mean())


def test_drawings_of_the_wrong_shape_are_refused_by_name():
    model = [("mlp", load("mlp")[0])]
    with pytest.raises(DrawingError, match="expected a 28x28 drawing or a stack of them"):
        read_with_each(model, np.zeros((20, 20)))
    with pytest.raises(DrawingError, match="3 labels"):
        Drawings(np.zeros((2, 28, 28)), np.array([1, 2, 3]))
