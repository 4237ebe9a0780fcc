"""A conditional GAN on MNIST: an MLP and a DCGAN-style variant, trained with events, measured by a classifier.

The label is embedded and joined to the noise for the generator, and to the image for the
discriminator, so one generator draws any digit on request. Quality is measured with the lab's own
classifier: does the digit read as the class asked for (conditional accuracy), are the samples of a
class as varied as real ones (diversity, which flags mode collapse), and how far the generated
feature distribution is from the real test set (a Frechet distance in the classifier's feature space).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoints import (
    SHIPPED_DIR,
    CheckpointError,
    CheckpointExistsError,
    folder_lock,
    runs_dir,
    safe_name,
    validate_name,
)
from .data import Mnist, from_tanh_range, pick_device, standardize, to_tanh_range
from .fields import check as check_fields
from .fields import setting
from .files import atomic_write, write_json_atomic
from .models import BitMaskDropout
from .reporter import NULL_REPORTER, Reporter
from .saliency import private_view

VARIANTS = ("mlp", "dcgan")
DEVICES = ("cpu", "cuda", "mps")
CLASSES = 10
COLLAPSE_BELOW = 0.5  # a class whose samples are less than half as varied as real digits has collapsed
FEATURE_DIMS = 64  # principal directions of the classifier's features in which quality is measured


# A recipe that reliably collapses (checkpoints/gans/cgan-collapsed was trained with it): a one-number
# noise vector, a generator learning rate five times the discriminator's and no label smoothing. The
# generator finds one drawing per class that fools the discriminator and stops varying.
COLLAPSE_RECIPE = dict(variant="dcgan", width=16, latent=1, g_lr=1e-3, d_lr=2e-4, label_smoothing=0.0, epochs=2)


class GanConfigError(ValueError):
    """A GAN setting that cannot work."""


@dataclass
class GanConfig:
    # Each setting's help, range and choices sit next to it (mnist_core.fields): the `gan` CLI flags and
    # validate() are generated from them.
    variant: str = setting(
        "dcgan",
        "mlp: fully connected G and D, fast; dcgan: transposed convolutions, sharper digits",
        label="GAN variant",
        choices=VARIANTS,
    )
    latent: int = setting(64, "Length of the noise vector z.", label="latent size", min=1, max=512)
    width: int = setting(32, "Base channels (dcgan) or 8x hidden units (mlp).", min=4, max=256)
    g_lr: float = setting(2e-4, "Generator learning rate.", label="generator learning rate", above=0, max=10)
    d_lr: float = setting(2e-4, "Discriminator learning rate.", label="discriminator learning rate", above=0, max=10)
    beta1: float = setting(
        0.5, "Adam's first beta; 0.5 is the DCGAN paper's choice.", label="Adam beta1", min=0, below=1
    )
    beta2: float = setting(0.999, "Adam's second beta.", label="Adam beta2", min=0, below=1)
    batch_size: int = setting(128, "Images per step.", label="batch size", min=1, max=60_000)
    epochs: int = setting(5, "Full passes over the training images.", min=1, max=200)
    label_smoothing: float = setting(
        0.1,
        "One-sided: real images are labelled 1 - this for the discriminator.",
        label="label smoothing",
        min=0,
        below=0.5,
    )
    seed: int = setting(0, "Fixes the initial weights, the noise and the data order.", min=0, max=2**32 - 1)
    dataset: str = setting(
        "mnist", "The data set it learns to draw: mnist, fashion-mnist or own:NAME (with 10 classes).", label="data set"
    )
    grid_per_class: int = setting(
        8,
        "Fixed-noise samples per class drawn after every epoch.",
        label="samples per class in the grid",
        min=1,
        max=32,
    )
    max_batches: int | None = setting(
        None, "Stop after this many batches (smoke runs).", label="max batches", min=1, optional=True
    )
    max_seconds: float | None = setting(
        None,
        "Stop after this long, keeping what was learned (a host's per-run cap).",
        label="max seconds",
        unit="seconds",
        above=0,
        optional=True,
    )
    device: str = setting("auto", "auto, cpu, cuda, cuda:N or mps.")

    def validate(self) -> None:
        check_fields(self, GanConfigError)  # each field's type and range, from its metadata
        if not (self.device == "auto" or self.device in DEVICES or self.device.startswith("cuda:")):
            raise GanConfigError(f"unknown device {self.device!r}; choose auto, {', '.join(DEVICES)}")


# ---------------------------------------------------------------- networks


class Generator(nn.Module):
    def __init__(self, config: GanConfig):
        super().__init__()
        self.variant, self.latent = config.variant, config.latent
        self.embed = nn.Embedding(CLASSES, CLASSES)
        w, z = config.width, config.latent + CLASSES
        if config.variant == "mlp":
            self.net = nn.Sequential(
                nn.Linear(z, 4 * w),
                nn.LeakyReLU(0.2),
                nn.Linear(4 * w, 8 * w),
                nn.BatchNorm1d(8 * w),
                nn.LeakyReLU(0.2),
                nn.Linear(8 * w, 784),
                nn.Tanh(),
                nn.Unflatten(1, (1, 28, 28)),
            )
        else:
            self.net = nn.Sequential(
                nn.Linear(z, 2 * w * 49),
                nn.Unflatten(1, (2 * w, 7, 7)),
                nn.BatchNorm2d(2 * w),
                nn.ReLU(),
                nn.ConvTranspose2d(2 * w, w, 4, 2, 1),
                nn.BatchNorm2d(w),
                nn.ReLU(),  # 7 -> 14
                nn.ConvTranspose2d(w, 1, 4, 2, 1),
                nn.Tanh(),
            )  # 14 -> 28

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1], (N, 1, 28, 28)."""
        return self.net(torch.cat([z, self.embed(labels)], 1))


DCGAN_D_CONV_LAYERS = 3  # conv, LeakyReLU, conv: the discriminator's layers that run channels-last


class Discriminator(nn.Module):
    def __init__(self, config: GanConfig):
        super().__init__()
        self.variant = config.variant
        w = config.width
        if config.variant == "mlp":
            self.embed = nn.Embedding(CLASSES, CLASSES)
            self.net = nn.Sequential(
                nn.Linear(784 + CLASSES, 8 * w),
                nn.LeakyReLU(0.2),
                BitMaskDropout(0.3),
                nn.Linear(8 * w, 4 * w),
                nn.LeakyReLU(0.2),
                BitMaskDropout(0.3),
                nn.Linear(4 * w, 1),
            )
        else:
            self.embed = nn.Embedding(CLASSES, 784)  # the label as a second image channel
            self.net = nn.Sequential(
                nn.Conv2d(2, w, 4, 2, 1),
                nn.LeakyReLU(0.2),  # 28 -> 14
                nn.Conv2d(w, 2 * w, 4, 2, 1),  # the last of the DCGAN_D_CONV_LAYERS
                nn.BatchNorm2d(2 * w),
                nn.LeakyReLU(0.2),  # 14 -> 7
                nn.Flatten(),
                BitMaskDropout(0.3),
                nn.Linear(2 * w * 49, 1),
            )
            self.to(memory_format=torch.channels_last)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One logit per image: real (high) or generated (low), given the class it claims to be."""
        if self.variant == "mlp":
            return self.net(torch.cat([images.flatten(1), self.embed(labels)], 1)).squeeze(1)
        label_plane = self.embed(labels).view(-1, 1, 28, 28)
        x = torch.cat([images, label_plane], 1).contiguous(memory_format=torch.channels_last)
        # The convolutions run channels-last (oneDNN's own layout: no reorder per call); from the BatchNorm on,
        # the default layout, which Flatten's gradient comes back in: an elementwise op whose input and gradient
        # differ in layout is about 25x slower on a CPU.
        convs = self.net[:DCGAN_D_CONV_LAYERS]
        return self.net[DCGAN_D_CONV_LAYERS:](convs(x).contiguous()).squeeze(1)


def fixed_noise(config: GanConfig, per_class: int | None = None, seed: int | None = None):
    """(z, labels): per_class noise vectors for each class, the same every epoch (and for every seed value)."""
    per_class = per_class or config.grid_per_class
    gen = torch.Generator().manual_seed(config.seed + 12345 if seed is None else seed)
    z = torch.randn(CLASSES * per_class, config.latent, generator=gen)
    labels = torch.arange(CLASSES).repeat_interleave(per_class)
    return z, labels


def tanh_range_to_uint8(images: torch.Tensor) -> np.ndarray:
    """Generated images, a tensor (N, 1, 28, 28) in [-1, 1] -> uint8 pixels (N, 28, 28) as an array, for showing."""
    return (
        (from_tanh_range(images.detach().float().cpu().clamp(-1, 1)) * 255).round().to(torch.uint8).squeeze(1).numpy()
    )


@torch.no_grad()
def generate(generator: Generator, labels: torch.Tensor, seed: int = 0, z: torch.Tensor | None = None) -> torch.Tensor:
    generator.eval()
    device = next(generator.parameters()).device
    if z is None:
        z = torch.randn(len(labels), generator.latent, generator=torch.Generator().manual_seed(seed))
    return generator(z.to(device), labels.to(device)).cpu()


def interpolate(generator: Generator, digit: int, seed_a: int, seed_b: int, steps: int = 10) -> torch.Tensor:
    """Images along a straight line between two noise vectors, for one class."""
    za = torch.randn(1, generator.latent, generator=torch.Generator().manual_seed(seed_a))
    zb = torch.randn(1, generator.latent, generator=torch.Generator().manual_seed(seed_b))
    t = torch.linspace(0, 1, steps).view(-1, 1)
    return generate(generator, torch.full((steps,), digit), z=(1 - t) * za + t * zb)


# ---------------------------------------------------------------- quality, with the lab's classifier


class Judge:
    """A trained classifier's view of digits: its class reading and its penultimate-layer features."""

    def __init__(self, classifier: nn.Module, mnist: Mnist, real_per_class: int = 300):
        self.model = classifier.eval()
        self.device = next(classifier.parameters()).device
        linears = [path for path, m in classifier.named_modules() if isinstance(m, nn.Linear)]
        self._last_path = linears[-1]
        test = to_tanh_range(mnist.test_images).unsqueeze(1)
        raw, real_labels = self._raw_features(test)[0], mnist.test_labels.numpy()
        # Statistics in the top principal directions of the real features: with ~1,000 samples a
        # covariance in all of the classifier's dimensions (over a thousand) would be singular.
        self.centre = raw.mean(0)
        _, _, vt = np.linalg.svd(raw - self.centre, full_matrices=False)
        self.basis = vt[:FEATURE_DIMS].T
        self.real_features = (raw - self.centre) @ self.basis
        self.real_mean = self.real_features.mean(0)
        self.real_cov = np.cov(self.real_features, rowvar=False)
        rng = np.random.default_rng(0)
        # The yardstick for the Frechet distance: real training digits (as many as quality_samples draws).
        train_pick = np.concatenate(
            [rng.choice(np.flatnonzero(mnist.train_labels.numpy() == c), 100, replace=False) for c in range(CLASSES)]
        )
        train_feats = self.features(to_tanh_range(mnist.train_images[train_pick]).unsqueeze(1))[0]
        self.real_frechet = frechet_distance(
            train_feats.mean(0), np.cov(train_feats, rowvar=False), self.real_mean, self.real_cov
        )
        self.real_diversity = np.array(
            [
                mean_pairwise_distance(
                    self.real_features[rng.choice(np.flatnonzero(real_labels == c), real_per_class, replace=False)]
                )
                for c in range(CLASSES)
            ]
        )

    def features(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(features in the real digits' top principal directions, predicted classes) for images in [-1, 1]."""
        raw, predicted = self._raw_features(images)
        return (raw - self.centre) @ self.basis, predicted

    @torch.no_grad()
    def _raw_features(self, images: torch.Tensor, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
        captured: list[torch.Tensor] = []
        # The judge is shared by every session's GAN job: the hook goes on a per-call view of the model,
        # so two scorings at once never capture each other's features.
        model = private_view(self.model)
        last = model.get_submodule(self._last_path)
        hook = last.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach().cpu()))
        predicted = []
        try:
            for chunk in images.split(batch_size):
                x = standardize(from_tanh_range(chunk.float()))
                predicted.append(model(x.to(self.device)).argmax(1).cpu())
        finally:
            hook.remove()
        return torch.cat(captured).double().numpy(), torch.cat(predicted).numpy()

    def score(self, images: torch.Tensor, labels: np.ndarray) -> Quality:
        feats, predicted = self.features(images)
        diversity = np.array([mean_pairwise_distance(feats[labels == c]) for c in range(CLASSES)])
        return Quality(
            float((predicted == labels).mean()),
            diversity / self.real_diversity,
            frechet_distance(feats.mean(0), np.cov(feats, rowvar=False), self.real_mean, self.real_cov),
        )


@dataclass
class Quality:
    conditional_accuracy: float  # share of samples the classifier reads as the class asked for
    diversity: np.ndarray  # per class: mean pairwise feature distance, relative to real digits of that class
    frechet: float  # Frechet distance to the real test set in the classifier's feature space

    def as_dict(self) -> dict:
        return {
            "conditional_accuracy": self.conditional_accuracy,
            "diversity": [float(d) for d in self.diversity],
            "frechet": self.frechet,
        }


def mean_pairwise_distance(features: np.ndarray) -> float:
    x = torch.as_tensor(features, dtype=torch.float64)
    if len(x) < 2:
        return 0.0
    d = torch.cdist(x, x)
    return float(d.sum() / (len(x) * (len(x) - 1)))


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(C1 + C2 - 2 (C1 C2)^1/2), the FID formula, here in the classifier's feature space."""
    from scipy import linalg

    covmean = linalg.sqrtm(cov1 @ cov2)
    if not np.isfinite(covmean).all():  # a singular product: nudge both, as the reference FID code does
        offset = np.eye(len(cov1)) * 1e-6
        covmean = linalg.sqrtm((cov1 + offset) @ (cov2 + offset))
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(covmean))


def quality_samples(generator: Generator, per_class: int = 100, seed: int = 1) -> tuple[torch.Tensor, np.ndarray]:
    labels = torch.arange(CLASSES).repeat_interleave(per_class)
    return generate(generator, labels, seed=seed), labels.numpy()


# ---------------------------------------------------------------- training


@dataclass
class GanResult:
    generator: Generator
    discriminator: Discriminator
    config: GanConfig
    status: str  # "finished", "stopped" or "failed"
    steps: list[dict]  # decimated per-step losses and D outputs
    epochs: list[dict]  # per epoch: quality figures
    grids: list[np.ndarray]  # per epoch: uint8 (10 * grid_per_class, 28, 28) from the fixed noise
    seconds: float
    message: str = ""


def planned_steps(config: GanConfig, train_size: int = 60_000) -> int:
    full = math.ceil(train_size / config.batch_size) * config.epochs
    return min(full, config.max_batches or full)


def train_gan(
    config: GanConfig,
    mnist: Mnist,
    judge: Judge | Callable[[], Judge | None] | None = None,
    reporter: Reporter = NULL_REPORTER,
) -> GanResult:
    """Alternate D and G steps over MNIST; after each epoch draw the fixed-noise grid and score quality.

    judge may be a function returning the Judge (or None to skip scoring): it is called at the first
    scoring, so a judge that loads in the background does not delay the first step.
    Events on the reporter: "stage" for what it is doing, "progress" (batches of the planned batches),
    "step" per batch, "epoch" per epoch (with its fixed-noise grid). reporter.stop is checked before
    every batch: a stop ends the run within one batch, draws the grid of what was learned and skips the
    quality scoring (seconds the user asked not to wait).
    """
    config.validate()
    stop = reporter.stop
    emit = reporter.event
    reporter.stage("warming up")
    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    g, d = Generator(config).to(device), Discriminator(config).to(device)
    opt_g = torch.optim.Adam(g.parameters(), lr=config.g_lr, betas=(config.beta1, config.beta2))
    opt_d = torch.optim.Adam(d.parameters(), lr=config.d_lr, betas=(config.beta1, config.beta2))
    images = to_tanh_range(mnist.train_images).unsqueeze(1).to(device)
    labels = mnist.train_labels.to(device)
    order_gen = torch.Generator().manual_seed(config.seed)
    grid_z, grid_labels = fixed_noise(config)
    steps, epochs, grids = [], [], []
    status, message, step = "finished", "", 0
    real_target = 1.0 - config.label_smoothing
    start = time.perf_counter()
    per_epoch = math.ceil(len(labels) / config.batch_size)
    total = planned_steps(config, len(labels))
    stopped_by_user = False
    try:
        for epoch in range(1, config.epochs + 1):
            g.train(), d.train()
            order = torch.randperm(len(labels), generator=order_gen).to(device)
            reporter.stage(f"training epoch {epoch} of {config.epochs}")
            for i in range(0, len(labels), config.batch_size):
                if stop.is_set():
                    status, message, stopped_by_user = "stopped", f"stopped at epoch {epoch}, step {step}", True
                    break
                if config.max_seconds is not None and time.perf_counter() - start >= config.max_seconds:
                    status = "stopped"
                    message = f"stopped after {config.max_seconds:g} s (this host's time limit per run) at step {step}"
                    break
                idx = order[i : i + config.batch_size]
                real, y = images[idx], labels[idx]
                n = len(y)
                z = torch.randn(n, config.latent, device=device)
                fake_y = torch.randint(0, CLASSES, (n,), device=device)
                fake = g(z, fake_y)
                # Discriminator: real images of their class -> real, generated ones -> fake.
                d_real, d_fake = d(real, y), d(fake.detach(), fake_y)
                d_loss = F.binary_cross_entropy_with_logits(
                    d_real, torch.full_like(d_real, real_target)
                ) + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
                # Generator: make the discriminator call its images real for the class asked. The discriminator's
                # own gradients from this pass would be discarded (zeroed before its next step): not computing
                # them saves a third of its weight-gradient work.
                d.requires_grad_(False)
                d_gen = d(fake, fake_y)
                g_loss = F.binary_cross_entropy_with_logits(d_gen, torch.ones_like(d_gen))
                opt_g.zero_grad(set_to_none=True)
                g_loss.backward()
                opt_g.step()
                d.requires_grad_(True)
                step += 1
                record = {
                    "step": step,
                    "epoch": epoch,
                    "steps_per_epoch": per_epoch,
                    "g_loss": float(g_loss.detach()),
                    "d_loss": float(d_loss.detach()),
                    "d_real": float(torch.sigmoid(d_real.detach()).mean()),
                    "d_fake": float(torch.sigmoid(d_fake.detach()).mean()),
                    "elapsed": time.perf_counter() - start,
                }
                if not math.isfinite(record["g_loss"] + record["d_loss"]):
                    raise FloatingPointError(f"the losses became NaN at step {step}; lower the learning rates")
                if step % 10 == 1:
                    steps.append(record)
                emit("step", record)
                if step % 10 == 1 or step == total:
                    reporter.progress(step, total)
                if config.max_batches and step >= config.max_batches:
                    status, message = "stopped", f"stopped after {step} batches (max batches)"
                    break
            if step == 0:  # stopped before the first batch: nothing learned, nothing to draw
                break
            reporter.stage(f"drawing the samples of epoch {epoch}")
            grid = tanh_range_to_uint8(generate(g, grid_labels, z=grid_z))
            grids.append(grid)
            summary = {"epoch": epoch, "steps": step, "elapsed": time.perf_counter() - start}
            if judge is not None and not stopped_by_user and not stop.is_set():
                reporter.stage(f"scoring the samples of epoch {epoch} with the judge")
                scorer = judge() if callable(judge) else judge  # a lazy judge may still be loading: wait here
                if scorer is not None:
                    summary.update(scorer.score(*quality_samples(g)).as_dict())
            epochs.append(summary)
            emit("epoch", {**summary, "grid": grid})
            if status != "finished":
                break
    except Exception as exc:  # the caller (a background job) gets a result, not a crash
        status, message = "failed", f"{type(exc).__name__}: {exc}"
    result = GanResult(g.cpu(), d.cpu(), config, status, steps, epochs, grids, time.perf_counter() - start, message)
    emit("done", {"status": status, "message": message})
    return result


# ---------------------------------------------------------------- checkpoints


def gan_dir() -> Path:
    return runs_dir() / "gans"


def shipped_gan_dir() -> Path:
    return SHIPPED_DIR / "gans"


def shipped_gan_names() -> set[str]:
    folder = shipped_gan_dir()
    return {p.stem for p in folder.glob("*.json")} if folder.is_dir() else set()


def validate_gan_name(name: str) -> str:
    """The name a GAN run would be saved under, or CheckpointError: call it before training.

    The shipped GANs' names are reserved (so are the shipped classifiers', to keep names unambiguous).
    """
    cleaned = validate_name(name)
    if cleaned.lower() in {n.lower() for n in shipped_gan_names()}:
        raise CheckpointError(f"{cleaned!r} is the name of a shipped GAN; choose another name for your run")
    return cleaned


def gan_exists(name: str) -> bool:
    """True when a GAN run of that (sanitized) name is saved."""
    try:
        return (gan_dir() / f"{safe_name(name)}.json").exists()
    except CheckpointError:
        return False


def default_run_name(now: float | None = None) -> str:
    """A name no other visitor will pick by accident: the time, to the second, plus a random suffix."""
    return f"cgan-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}-{os.urandom(2).hex()}"


def reproduce_command(config: GanConfig, name: str | None = None) -> str:
    """The CLI command that trains the same GAN again (settings that differ from the defaults)."""
    default = GanConfig()
    parts = ["python -m mnist_core gan"]
    for f in dataclasses.fields(GanConfig):
        value = getattr(config, f.name)
        if value is None or value == getattr(default, f.name):
            continue
        parts.append(f"--{f.name.replace('_', '-')} {value}")
    if name:
        parts.append(f"--name {name}")
    return " ".join(parts)


def save_gan(
    result: GanResult, name: str, directory: Path | None = None, extra: dict | None = None, *, overwrite: bool = True
) -> str:
    """Save a GAN run's weights, grids and metadata; returns the name it was saved under.

    Whole or absent: the files are written under temporary names, and under the folder's lock the
    old JSON goes first and the new JSON is renamed into place last. overwrite=False raises
    CheckpointExistsError when a run of that name exists. Shipped names are refused, except when
    saving into the shipped folder itself (checkpoints/make_gan.py).
    """
    directory = Path(directory or gan_dir())
    shipping = directory.resolve() == shipped_gan_dir().resolve()
    name = safe_name(name) if shipping else validate_gan_name(name)
    tensors = {f"g.{k}": v.detach().cpu().contiguous() for k, v in result.generator.state_dict().items()}
    tensors.update({f"d.{k}": v.detach().cpu().contiguous() for k, v in result.discriminator.state_dict().items()})
    if result.grids:
        tensors["grids"] = torch.from_numpy(np.stack(result.grids))
    meta = {
        "name": name,
        "kind": "cgan",
        "config": dataclasses.asdict(result.config),
        "status": result.status,
        "message": result.message,
        "steps": result.steps,
        "epochs": result.epochs,
        "train_seconds": round(result.seconds, 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "command": reproduce_command(result.config, name),
        **(extra or {}),
    }
    weights_path, meta_path = directory / f"{name}.safetensors", directory / f"{name}.json"
    with folder_lock(directory):
        if meta_path.exists():
            if not overwrite:
                raise CheckpointExistsError(
                    f"a GAN run named {name!r} already exists; choose another name or replace it (--overwrite)"
                )
            meta_path.unlink()  # from here until the last rename the run is absent, never half old and half new
        atomic_write(weights_path, lambda tmp: safetensors.torch.save_file(tensors, tmp))
        write_json_atomic(meta_path, meta)  # last: the run exists from this rename on
    return name


def _user_gan(name: str, verb: str) -> Path:
    wanted = safe_name(name)
    meta_path = gan_dir() / f"{wanted}.json"
    if wanted in shipped_gan_names():
        raise CheckpointError(f"{wanted!r} is a shipped GAN; only your own GAN runs can be {verb}")
    if not meta_path.exists():
        raise CheckpointError(f"no GAN run named {name!r}")
    return meta_path


def delete_gan(name: str) -> None:
    """Delete a GAN run (shipped GANs are part of the project and cannot be deleted)."""
    meta_path = _user_gan(name, "deleted")
    with folder_lock(meta_path.parent):
        meta_path.unlink(missing_ok=True)  # the JSON first: from here the run is absent
        meta_path.with_suffix(".safetensors").unlink(missing_ok=True)


def rename_gan(name: str, new_name: str) -> str:
    """Rename a GAN run; the new name follows the rules of a new run's (not shipped, not taken)."""
    meta_path = _user_gan(name, "renamed")
    new = validate_gan_name(new_name)
    target = meta_path.parent / f"{new}.json"
    with folder_lock(meta_path.parent):
        if target.exists():
            raise CheckpointExistsError(f"a GAN run named {new!r} already exists; choose another name")
        meta = json.loads(meta_path.read_text())
        meta.update(name=new, command=str(meta.get("command", "")).replace(f"--name {meta_path.stem}", f"--name {new}"))
        os.replace(meta_path.with_suffix(".safetensors"), target.with_suffix(".safetensors"))
        write_json_atomic(target, meta)
        meta_path.unlink()
    return new


@dataclass
class GanCheckpoint:
    name: str
    source: str
    meta: dict
    weights_path: Path
    config: GanConfig = field(init=False)

    def __post_init__(self):
        config = self.meta["config"]
        if not isinstance(config, dict):
            raise TypeError("config is not a mapping")
        self.config = GanConfig(
            **{k: v for k, v in config.items() if k in {f.name for f in dataclasses.fields(GanConfig)}}
        )
        self.config.validate()
        for key in ("epochs", "steps"):
            if not isinstance(self.meta.get(key, []), list) or not all(
                isinstance(e, dict) for e in self.meta.get(key, [])
            ):
                raise TypeError(f"{key} is not a list of records")

    @property
    def epochs(self) -> list[dict]:
        return self.meta.get("epochs", [])

    @property
    def scored_epochs(self) -> list[dict]:
        """The epochs with quality figures (a run stopped early, or trained without the judge, has none)."""
        return [e for e in self.epochs if has_quality(e)]

    @property
    def frechet(self) -> float | None:
        scored = self.scored_epochs
        return scored[-1]["frechet"] if scored else None


def has_quality(epoch: dict) -> bool:
    try:
        return (
            0 <= float(epoch["conditional_accuracy"]) <= 1
            and math.isfinite(float(epoch["frechet"]))
            and len(epoch["diversity"]) == CLASSES
            and all(math.isfinite(float(x)) for x in epoch["diversity"])
        )
    except (KeyError, TypeError, ValueError):
        return False


def list_gans() -> list[GanCheckpoint]:
    """Every usable GAN: runs first, then shipped. A run named like a shipped GAN (saved before the
    names were reserved) is left out: the name means the shipped one. Damaged files are skipped."""
    found = []
    shipped = shipped_gan_names()
    for source, directory in (("runs", gan_dir()), ("shipped", shipped_gan_dir())):
        for meta_path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
            if meta_path.name.startswith(".") or (source == "runs" and meta_path.stem in shipped):
                continue
            weights = meta_path.with_name(meta_path.stem + ".safetensors")
            try:
                meta = json.loads(meta_path.read_bytes().decode("utf-8"))
                if weights.exists() and isinstance(meta, dict) and meta.get("kind") == "cgan":
                    found.append(GanCheckpoint(meta_path.stem, source, meta, weights))
            except (OSError, ValueError, TypeError, KeyError, RecursionError):
                continue
    return found


def default_gan(checkpoints: list[GanCheckpoint]) -> GanCheckpoint | None:
    """The GAN a new visitor sees first: the shipped one with the lowest Frechet distance (never a run
    because of how its name sorts, and never a deliberately collapsed example)."""
    for pool in ([c for c in checkpoints if c.source == "shipped"], checkpoints):
        scored = [c for c in pool if c.frechet is not None]
        if scored:
            return min(scored, key=lambda c: c.frechet)
    shipped = [c for c in checkpoints if c.source == "shipped"]
    return (shipped or checkpoints or [None])[0]


def load_gan(checkpoint: GanCheckpoint) -> tuple[Generator, np.ndarray | None]:
    """(generator in eval mode, per-epoch grids or None)."""
    try:
        tensors = safetensors.torch.load_file(str(checkpoint.weights_path))
        generator = Generator(checkpoint.config)
        generator.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("g.")})
    except Exception as exc:  # safetensors and load_state_dict raise their own types; say which file
        raise CheckpointError(f"{checkpoint.weights_path}: not a usable GAN checkpoint ({exc})") from None
    grids = tensors["grids"].numpy() if "grids" in tensors else None
    if grids is not None and (
        grids.ndim != 4 or grids.shape[1:] != (CLASSES * checkpoint.config.grid_per_class, 28, 28)
    ):
        grids = None  # not the shape this config draws: show none rather than a wrong one
    return generator.eval(), grids


# ---------------------------------------------------------------- background runs (kinds.work_gan)


class JudgeError(RuntimeError):
    """The classifier that scores the samples could not be prepared."""


class BackgroundJudge:
    """A judge built in a helper thread while training starts; get() waits for it, unless stopped.

    The build goes on after a stop: when make is a shared cache, it is then ready for the next run.
    """

    def __init__(self, make: Callable[[], Judge], stop: threading.Event, on_wait: Callable[[], None] | None = None):
        self._stop, self._on_wait, self._box = stop, on_wait, {}
        self._thread = threading.Thread(target=self._build, args=(make,), name="gan-judge", daemon=True)
        self._thread.start()

    def _build(self, make) -> None:
        try:
            self._box["value"] = make()
        except BaseException as exc:  # handed to the job, which ends as failed with it
            self._box["error"] = exc

    @property
    def loaded(self) -> Judge | None:
        return self._box.get("value")

    def get(self, poll: float = 0.1) -> Judge | None:
        """The judge; None if the stop event was set while waiting; JudgeError if it could not be built."""
        if self._thread.is_alive() and self._on_wait is not None:
            self._on_wait()
        while self._thread.is_alive():
            if self._stop.is_set():
                return None
            self._thread.join(poll)
        if "error" in self._box:
            exc = self._box["error"]
            raise JudgeError(f"the judge (the classifier that scores the samples) could not be loaded: {exc}")
        return self._box["value"]

    __call__ = get


def save_gan_run(result: GanResult, name: str, judge, overwrite: bool) -> tuple[str | None, str]:
    """Save a trained run under its name ((saved name, a note)); a name taken while it trained gets -2, -3..."""
    extra = {"real_frechet": judge.real_frechet} if judge is not None else None
    try:
        return save_gan(result, name, extra=extra, overwrite=overwrite), ""
    except CheckpointExistsError:  # another visitor saved that name while this run trained: keep both
        for i in range(2, 100):
            if not gan_exists(f"{name}-{i}"):
                saved = save_gan(result, f"{name}-{i}", extra=extra, overwrite=False)
                return saved, f"({name!r} was taken while this run trained, so it was saved as {saved!r})"
        raise
    except OSError as exc:
        return None, f"(could not save: {exc})"
