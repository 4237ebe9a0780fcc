"""The conditional GAN: shapes, learning, conditioning, quality measures, checkpoints."""

import json
import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from saved_runs import save_unloadable_run

from mnist_core import gan
from mnist_core.checkpoints import CheckpointError, CheckpointExistsError, load
from mnist_core.data import to_tanh_range
from mnist_core.gan import GanConfig, GanConfigError
from mnist_core.runner import HostLimits, JobRefused, Runner

ROOT = Path(__file__).resolve().parent.parent


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


def test_the_generators_step_leaves_the_discriminators_weights_trainable(mnist):
    result = gan.train_gan(GanConfig(width=8, max_batches=2, seed=0), mnist)
    assert result.status == "stopped"
    assert all(p.requires_grad for p in result.discriminator.parameters())
    assert all(p.requires_grad for p in result.generator.parameters())


@pytest.mark.parametrize("variant", gan.VARIANTS)
def test_a_few_steps_on_real_digits_teach_the_discriminator(mnist, variant):
    result = gan.train_gan(GanConfig(variant=variant, width=16, max_batches=60, seed=0), mnist)
    assert result.status == "stopped" and len(result.grids) == 1
    first, last = result.steps[0]["d_loss"], np.mean([s["d_loss"] for s in result.steps[-2:]])
    assert last < first


def test_the_shipped_generator_draws_the_class_it_is_asked_for(judge):
    shipped = next(c for c in gan.list_gans() if c.source == "shipped" and c.name == "cgan")
    generator, grids = gan.load_gan(shipped)
    images, labels = gan.quality_samples(generator, per_class=20, seed=7)
    quality = judge.score(images, labels)
    assert quality.conditional_accuracy >= 0.9
    assert grids is not None and grids.shape[1:] == (10 * shipped.config.grid_per_class, 28, 28)
    swapped = judge.features(gan.generate(generator, torch.full((50,), 3), seed=1))[1]
    assert (swapped == 3).mean() >= 0.9  # the label, not the noise, decides the digit


def test_the_shipped_collapse_example_is_flagged_by_the_judge(judge):
    collapsed = next(c for c in gan.list_gans() if c.name == "cgan-collapsed")
    generator, _ = gan.load_gan(collapsed)
    quality = judge.score(*gan.quality_samples(generator, per_class=50, seed=3))  # fresh noise, not the saved figures
    assert (quality.diversity < gan.COLLAPSE_BELOW).sum() >= 3
    assert gan.default_gan(gan.list_gans()).name == "cgan"  # a visitor never lands on it by default


def test_real_digits_score_as_real(mnist, judge):
    rng = np.random.default_rng(0)
    pick = rng.choice(60_000, 2_000, replace=False)
    real = to_tanh_range(mnist.train_images[pick]).unsqueeze(1)
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
    assert np.array_equal(gan.tanh_range_to_uint8(gan.generate(generator, labels, z=z)), grids[-1])


TINY = dict(variant="mlp", width=8)


@pytest.fixture
def runner(runs):
    """GAN jobs on the job runner as the GAN page submits them (threads: a test can slow the judge down)."""
    made = []

    def make(limits=None):
        made.append(Runner(limits or HostLimits(), backend="threads", runs_dir=runs))
        return made[-1]

    yield make
    for r in made:
        r.shutdown()


def finished(runner, job, timeout=120.0):
    state = runner.wait(job.id, timeout)
    assert state.ended, f"the job is still {state.stage!r} after {timeout} s"
    return state


def test_a_job_whose_work_raises_ends_failed_and_frees_the_slot(data, runs, runner):
    save_unloadable_run(data, runs, "broken-judge", {"depth": 1, "width": 16})  # listed, its weights do not load
    jobs = runner(HostLimits(max_jobs=1))
    job = finished(jobs, jobs.submit("me", "gan", {**TINY, "max_batches": 2, "judge": "broken-judge"}, "judge-fails"))
    assert job.status == "failed" and "judge" in job.message and "broken-judge" in job.message
    # A setting that passes validation and fails inside the job (no such GPU): failed, and the slot is free.
    job = finished(
        jobs, jobs.submit("me", "gan", {**TINY, "max_batches": 2, "device": "cuda:7", "judge": None}, "no-such-gpu")
    )
    assert job.status == "failed" and "cuda:7" in job.message
    job = finished(
        jobs, jobs.submit("someone else", "gan", {**TINY, "max_batches": 2, "judge": None}, "after-failures")
    )
    assert job.status == "done" and job.result["saved"] == "after-failures"  # its batch cap reached: all it was asked


def test_stop_ends_a_job_while_its_judge_is_still_loading(runs, runner, monkeypatch):
    from mnist_core import kinds

    release = threading.Event()

    def slow_judge(name=None, dataset="mnist"):  # a judge that takes as long as the test wants
        release.wait(60)
        raise RuntimeError("released")

    monkeypatch.setattr(kinds, "gan_judge", slow_judge)
    jobs = runner()
    job = jobs.submit("me", "gan", {**TINY, "max_batches": 2}, "waits-for-judge")
    deadline = time.time() + 60
    while "waiting for the judge" not in job.snapshot().view.stage and time.time() < deadline:
        time.sleep(0.05)
    assert job.running and "waiting for the judge" in job.snapshot().view.stage
    assert jobs.stop("me")
    finished(jobs, job, timeout=5)
    release.set()
    assert job.status == "stopped" and job.result["saved"] == "waits-for-judge"  # what was learned is kept


def test_the_host_caps_apply_to_gan_runs(runs, runner, mnist):  # MNIST loaded: the cap's seconds go to training
    with pytest.raises(JobRefused, match="at most 2 epochs per run .*one pass of the GAN"):
        runner(HostLimits(max_epochs=2)).submit("me", "gan", {**TINY, "epochs": 3, "judge": None}, "too-long")
    jobs = runner(HostLimits(max_run_seconds=12.0))  # setting a GAN up takes seconds on a busy 2-core box
    job = finished(jobs, jobs.submit("me", "gan", {**TINY, "epochs": 50, "judge": None}, "time-capped"))
    assert job.status == "stopped" and "time limit" in job.message
    saved = next(c for c in gan.list_gans() if c.name == "time-capped")
    assert saved.meta["steps"] and saved.config.max_seconds == 12.0  # kept what was learned, recorded the cap


def test_names_are_reserved_and_an_existing_run_is_replaced_only_when_asked(mnist, runs):
    result = gan.train_gan(GanConfig(**TINY, max_batches=2), mnist)
    with pytest.raises(CheckpointError, match="shipped GAN"):
        gan.save_gan(result, "CGAN")
    gan.save_gan(result, "mine")
    with pytest.raises(CheckpointExistsError):
        gan.save_gan(result, "mine", overwrite=False)
    with pytest.raises(CheckpointExistsError):
        Runner(HostLimits(), backend="threads").submit("me", "gan", {**TINY, "max_batches": 2}, "mine")
    with pytest.raises(CheckpointError, match="shipped GAN"):
        gan.delete_gan("cgan")
    assert gan.rename_gan("mine", "yours") == "yours"
    renamed = next(c for c in gan.list_gans() if c.name == "yours")
    assert renamed.meta["command"].endswith("--name yours")
    gan.delete_gan("yours")
    assert [c.source for c in gan.list_gans()] == ["shipped"] * len(gan.shipped_gan_names())
    assert gan.default_run_name() != gan.default_run_name()


def run_cli(*args, env_runs):
    env = {**os.environ, "MNIST_RUNS_DIR": str(env_runs)}
    return subprocess.run(
        [sys.executable, "-m", "mnist_core", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_a_saved_gan_runs_records_a_command_that_runs_as_printed(mnist, runs, tmp_path):
    result = gan.train_gan(GanConfig(**TINY, max_batches=3, g_lr=1e-3, label_smoothing=0.0, latent=4), mnist)
    gan.save_gan(result, "recorded")
    command = next(c for c in gan.list_gans() if c.name == "recorded").meta["command"]
    assert command.startswith("python -m mnist_core gan ") and "--max-batches 3" in command
    args = shlex.split(command)[3:] + ["--no-judge"]  # no judge: seconds, not a minute, on a shared CI box
    fresh = tmp_path / "elsewhere"
    done = run_cli(*args, env_runs=fresh)
    assert done.returncode == 0, done.stderr
    rerun = json.loads((fresh / "gans" / "recorded.json").read_text())["config"]
    assert {k: rerun[k] for k in ("latent", "g_lr", "label_smoothing", "max_batches")} == {
        "latent": 4,
        "g_lr": 1e-3,
        "label_smoothing": 0.0,
        "max_batches": 3,
    }
    again = run_cli(*args, env_runs=fresh)  # the name is taken now: refused before training, one line
    assert again.returncode == 2 and "--overwrite" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    bad = run_cli("gan", "--width", "wide", env_runs=fresh)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
