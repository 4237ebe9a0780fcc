"""Test-set evaluation of a shipped checkpoint: confusion, mistakes, calibration."""

import numpy as np
import pytest

from mnist_core import evaluation
from mnist_core.checkpoints import load


@pytest.fixture(scope="module")
def scored(data):
    probs = evaluation.test_probabilities(load("mlp")[0], data.test)
    return probs, data.test.labels.numpy()


def test_the_confusion_matrix_counts_every_test_digit_once(scored):
    probs, labels = scored
    confusion = evaluation.confusion_matrix(labels, probs.argmax(1))
    assert confusion.sum() == 10_000
    assert (confusion.sum(1) == np.bincount(labels)).all()
    assert np.trace(confusion) / 10_000 == pytest.approx(load("mlp")[1]["test_accuracy"], abs=1e-4)


def test_confident_mistakes_are_wrong_and_ordered_by_confidence(scored):
    probs, labels = scored
    worst = evaluation.confident_mistakes(probs, labels, count=20)
    assert len(worst) == 20 and (probs[worst].argmax(1) != labels[worst]).all()
    assert (np.diff(probs[worst].max(1)) <= 0).all()


def test_calibration_error_is_zero_when_confidence_matches_accuracy():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1.0, 200_000)
    labels = np.zeros(len(confidence), int)
    hit = rng.uniform(size=len(confidence)) < confidence  # right exactly as often as it claims
    probs = np.zeros((len(confidence), 10))
    probs[np.arange(len(confidence)), np.where(hit, 0, 1)] = confidence
    probs[np.arange(len(confidence)), np.where(hit, 1, 0)] = 1 - confidence
    assert evaluation.calibration(probs, labels).ece < 0.01
    overconfident = probs.copy()
    overconfident[:, :] = 0
    overconfident[:, 1] = 1.0  # always sure, always wrong
    assert evaluation.calibration(overconfident, labels).ece == pytest.approx(1.0)


def test_a_shipped_model_has_a_small_calibration_error(scored):
    probs, labels = scored
    result = evaluation.calibration(probs, labels)
    assert result.counts.sum() == 10_000 and 0 <= result.ece < 0.05


def test_saved_predictions_are_read_back_only_when_they_are_plain_arrays_of_the_right_shape(tmp_path):
    probs = np.random.default_rng(0).dirichlet(np.ones(10), size=50).astype(np.float32)
    evaluation.store_probabilities(tmp_path, "abc", probs)
    assert np.array_equal(evaluation.stored_probabilities(tmp_path, "abc", 50), probs)
    assert evaluation.stored_probabilities(tmp_path, "abc", 49) is None  # another split
    assert evaluation.stored_probabilities(tmp_path, "missing", 50) is None
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}] * 50, dtype=object), allow_pickle=True)
    assert evaluation.stored_probabilities(tmp_path, "objects", 50) is None  # never unpickled
    (tmp_path / "broken.npy").write_bytes(b"not an array")
    assert evaluation.stored_probabilities(tmp_path, "broken", 50) is None
    assert not list(tmp_path.glob("*.part"))


def test_scoring_in_small_batches_reports_progress_and_matches_one_batch(data):
    model, _ = load("fast")
    split = data.test.take(np.arange(1200))
    seen: list[float] = []
    probs = evaluation.test_probabilities(model, split, batch_size=500, progress=seen.append)
    assert seen == [500 / 1200, 1000 / 1200, 1.0]
    assert np.allclose(probs, evaluation.test_probabilities(model, split, batch_size=1200), atol=1e-6)


def test_calibration_says_whether_the_model_claims_more_or_less_than_it_gets():
    labels = np.array([0, 0, 0, 0])
    sure = np.tile(np.eye(10)[0] * 0.6 + 0.04 * (1 - np.eye(10)[0]), (4, 1))  # says 60%, right every time
    cal = evaluation.calibration(sure, labels)
    assert cal.mean_confidence == pytest.approx(0.6) and cal.accuracy_overall == 1.0  # underconfident
