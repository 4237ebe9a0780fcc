import numpy as np
import pytest
from test_data import TEST_COUNTS, TRAIN_COUNTS

from mnist_core import explore


def test_class_counts_are_the_published_ones(mnist):
    assert explore.class_counts(mnist) == {"train": TRAIN_COUNTS, "test": TEST_COUNTS}


def test_class_means_look_like_their_digits(mnist):
    means = explore.class_means(mnist)
    assert means.shape == (10, 28, 28)
    # A mean "1" is a thin vertical stroke: ink in the centre column, little at the sides; a "0" the reverse.
    assert means[1][:, 13:15].mean() > 3 * means[1][:, 5:8].mean()
    assert means[0][10:18, 12:16].mean() < means[0][10:18, 6:10].mean()


def test_ink_is_least_for_ones_and_most_for_zeros_and_eights(mnist):
    ink = explore.ink_per_class(mnist)
    assert ink.argmin() == 1
    assert ink.argmax() in (0, 8)
    assert np.all((ink > 0.05) & (ink < 0.3))


def test_intensity_histograms_are_distributions(mnist):
    edges, shares = explore.intensity_histograms(mnist, "test", bins=16)
    assert edges.shape == (17,) and shares.shape == (10, 16)
    assert np.allclose(shares.sum(1), 1.0)


def test_samples_are_seeded_and_of_the_asked_class(mnist):
    a = explore.sample_indices(mnist, "test", 7, 50, seed=1)
    assert np.array_equal(a, explore.sample_indices(mnist, "test", 7, 50, seed=1))
    assert not np.array_equal(a, explore.sample_indices(mnist, "test", 7, 50, seed=2))
    assert (mnist.test_labels[a] == 7).all() and len(set(a.tolist())) == 50
    with pytest.raises(ValueError, match="unknown split"):
        explore.sample_indices(mnist, "val", None, 5, 0)
