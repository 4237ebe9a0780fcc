"""The conditional GAN: shapes, learning, conditioning, quality measures, checkpoints."""

import numpy as np
import pytest
import torch

from mnist_core import gan
from mnist_core.checkpoints import load
from mnist_core.gan import GanConfig, GanConfigError


@pytest.fixture(scope="module")
def judge(mnist):
    return gan.Judge(load("best")[0], mnist)


@pytest.mark.parametrize("variant", gan.VARIANTS)
def test_the_generator_draws_28x28_images_in_minus_one_to_one(variant):
    config = GanConfig(variant=variant, width=8)
    images = gan.Generator(config).eval()(torch.randn(20, config.latent), torch.arange(10).repeat(2))
    assert images.shape == (20, 1, 28, 28)
    assert images.min() >= -1 and images.max() <= 1
    assert gan.Discriminator(config)(images, torch.arange(10).repeat(2)).shape == (20,)


@pytest.mark.parametrize("variant", gan.VARIANTS)
def test_a_few_steps_on_real_digits_teach_the_discriminator(mnist, variant):
    result = gan.train_gan(GanConfig(variant=variant, width=16, max_batches=60, seed=0), mnist)
    assert result.status == "stopped" and len(result.grids) == 1
    first, last = result.steps[0]["d_loss"], np.mean([s["d_loss"] for s in result.steps[-2:]])
    assert last < first


def test_the_shipped_generator_draws_the_class_it_is_asked_for(judge):
    shipped = next(c for c in gan.list_gans() if c.source == "shipped")
    generator, grids = gan.load_gan(shipped)
    images, labels = gan.quality_samples(generator, per_class=20, seed=7)
    quality = judge.score(images, labels)
    assert quality.conditional_accuracy >= 0.9
    assert grids is not None and grids.shape[1:] == (10 * shipped.config.grid_per_class, 28, 28)
    swapped = judge.features(gan.generate(generator, torch.full((50,), 3), seed=1))[1]
    assert (swapped == 3).mean() >= 0.9  # the label, not the noise, decides the digit


def test_real_digits_score_as_real(mnist, judge):
    rng = np.random.default_rng(0)
    pick = rng.choice(60_000, 2_000, replace=False)
    real = (mnist.train_images[pick].float() / 127.5 - 1).unsqueeze(1)
    labels = mnist.train_labels[pick].numpy()
    quality = judge.score(real, labels)
    noise = judge.score(torch.rand(2_000, 1, 28, 28) * 2 - 1, labels)
    assert quality.conditional_accuracy > 0.99
    assert np.all((quality.diversity > 0.85) & (quality.diversity < 1.15))  # as varied as real digits: ratio ~1
    assert quality.frechet < 0.05 * noise.frechet  # near 0 on the scale of a bad generator


def test_bad_settings_are_refused_and_a_run_round_trips(mnist, runs):
    with pytest.raises(GanConfigError, match="unknown GAN variant"):
        GanConfig(variant="vae").validate()
    with pytest.raises(GanConfigError, match="label smoothing"):
        GanConfig(label_smoothing=0.7).validate()
    result = gan.train_gan(GanConfig(variant="mlp", width=8, max_batches=5), mnist)
    gan.save_gan(result, "tiny gan")
    saved = next(c for c in gan.list_gans() if c.name == "tiny-gan")
    generator, grids = gan.load_gan(saved)
    z, labels = gan.fixed_noise(saved.config)
    assert np.array_equal(gan.to_uint8(gan.generate(generator, labels, z=z)), grids[-1])
