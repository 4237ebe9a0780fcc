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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import safetensors.torch
import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoints import SHIPPED_DIR, CheckpointError, runs_dir, safe_name
from .data import Mnist, pick_device, standardize
from .jobs import OwnerSlots

VARIANTS = ("mlp", "dcgan")
CLASSES = 10
COLLAPSE_BELOW = 0.5  # a class whose samples are less than half as varied as real digits has collapsed
FEATURE_DIMS = 64  # principal directions of the classifier's features in which quality is measured


class GanConfigError(ValueError):
    """A GAN setting that cannot work."""


@dataclass
class GanConfig:
    variant: str = "dcgan"
    latent: int = 64  # size of the noise vector z
    width: int = 32  # dcgan: base channels; mlp: hidden units = 8 x width
    g_lr: float = 2e-4
    d_lr: float = 2e-4
    beta1: float = 0.5  # Adam's first beta; 0.5 is the DCGAN paper's choice
    beta2: float = 0.999
    batch_size: int = 128
    epochs: int = 5
    label_smoothing: float = 0.1  # one-sided: real images are labelled 1 - this for the discriminator
    seed: int = 0
    grid_per_class: int = 8  # fixed-noise samples per class drawn after every epoch
    max_batches: int | None = None  # stop early (smoke runs)
    device: str = "auto"

    def validate(self) -> None:
        checks = [
            (self.variant in VARIANTS, f"unknown GAN variant {self.variant!r}; choose one of {', '.join(VARIANTS)}"),
            (1 <= self.latent <= 512, f"latent size must be between 1 and 512 (got {self.latent})"),
            (4 <= self.width <= 256, f"width must be between 4 and 256 (got {self.width})"),
            (self.g_lr > 0 and self.d_lr > 0, "learning rates must be positive"),
            (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "Adam betas must be in [0, 1)"),
            (1 <= self.batch_size <= 60_000, f"batch size must be between 1 and 60,000 (got {self.batch_size})"),
            (1 <= self.epochs <= 200, f"epochs must be between 1 and 200 (got {self.epochs})"),
            (0 <= self.label_smoothing < 0.5, f"label smoothing must be in [0, 0.5) (got {self.label_smoothing})"),
            (1 <= self.grid_per_class <= 32, "samples per class in the grid must be between 1 and 32"),
            (self.max_batches is None or self.max_batches >= 1, "max batches must be at least 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise GanConfigError(message)


# ---------------------------------------------------------------- networks


class Generator(nn.Module):
    def __init__(self, config: GanConfig):
        super().__init__()
        self.variant, self.latent = config.variant, config.latent
        self.embed = nn.Embedding(CLASSES, CLASSES)
        w, z = config.width, config.latent + CLASSES
        if config.variant == "mlp":
            self.net = nn.Sequential(
                nn.Linear(z, 4 * w), nn.LeakyReLU(0.2), nn.Linear(4 * w, 8 * w), nn.BatchNorm1d(8 * w),
                nn.LeakyReLU(0.2), nn.Linear(8 * w, 784), nn.Tanh(), nn.Unflatten(1, (1, 28, 28)))
        else:
            self.net = nn.Sequential(
                nn.Linear(z, 2 * w * 49), nn.Unflatten(1, (2 * w, 7, 7)), nn.BatchNorm2d(2 * w), nn.ReLU(),
                nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.BatchNorm2d(w), nn.ReLU(),  # 7 -> 14
                nn.ConvTranspose2d(w, 1, 4, 2, 1), nn.Tanh())  # 14 -> 28

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1], (N, 1, 28, 28)."""
        return self.net(torch.cat([z, self.embed(labels)], 1))


class Discriminator(nn.Module):
    def __init__(self, config: GanConfig):
        super().__init__()
        self.variant = config.variant
        w = config.width
        if config.variant == "mlp":
            self.embed = nn.Embedding(CLASSES, CLASSES)
            self.net = nn.Sequential(nn.Linear(784 + CLASSES, 8 * w), nn.LeakyReLU(0.2), nn.Dropout(0.3),
                                     nn.Linear(8 * w, 4 * w), nn.LeakyReLU(0.2), nn.Dropout(0.3), nn.Linear(4 * w, 1))
        else:
            self.embed = nn.Embedding(CLASSES, 784)  # the label as a second image channel
            self.net = nn.Sequential(
                nn.Conv2d(2, w, 4, 2, 1), nn.LeakyReLU(0.2),  # 28 -> 14
                nn.Conv2d(w, 2 * w, 4, 2, 1), nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2),  # 14 -> 7
                nn.Flatten(), nn.Dropout(0.3), nn.Linear(2 * w * 49, 1))

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One logit per image: real (high) or generated (low), given the class it claims to be."""
        if self.variant == "mlp":
            return self.net(torch.cat([images.flatten(1), self.embed(labels)], 1)).squeeze(1)
        label_plane = self.embed(labels).view(-1, 1, 28, 28)
        return self.net(torch.cat([images, label_plane], 1)).squeeze(1)


def fixed_noise(config: GanConfig, per_class: int | None = None, seed: int | None = None):
    """(z, labels): per_class noise vectors for each class, the same every epoch (and for every seed value)."""
    per_class = per_class or config.grid_per_class
    gen = torch.Generator().manual_seed(config.seed + 12345 if seed is None else seed)
    z = torch.randn(CLASSES * per_class, config.latent, generator=gen)
    labels = torch.arange(CLASSES).repeat_interleave(per_class)
    return z, labels


def to_uint8(images: torch.Tensor) -> np.ndarray:
    return ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).squeeze(1).numpy()


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
        linears = [m for m in classifier.modules() if isinstance(m, nn.Linear)]
        self._last = linears[-1]
        test = (mnist.test_images.float() / 127.5 - 1).unsqueeze(1)
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
        train_pick = np.concatenate([rng.choice(np.flatnonzero(mnist.train_labels.numpy() == c), 100, replace=False)
                                     for c in range(CLASSES)])
        train_feats = self.features((mnist.train_images[train_pick].float() / 127.5 - 1).unsqueeze(1))[0]
        self.real_frechet = frechet_distance(train_feats.mean(0), np.cov(train_feats, rowvar=False),
                                             self.real_mean, self.real_cov)
        self.real_diversity = np.array([
            mean_pairwise_distance(self.real_features[rng.choice(np.flatnonzero(real_labels == c), real_per_class,
                                                                 replace=False)]) for c in range(CLASSES)])

    def features(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(features in the real digits' top principal directions, predicted classes) for images in [-1, 1]."""
        raw, predicted = self._raw_features(images)
        return (raw - self.centre) @ self.basis, predicted

    @torch.no_grad()
    def _raw_features(self, images: torch.Tensor, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
        captured: list[torch.Tensor] = []
        hook = self._last.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach().cpu()))
        predicted = []
        try:
            for chunk in images.split(batch_size):
                x = standardize((chunk.float() + 1) / 2)
                predicted.append(self.model(x.to(self.device)).argmax(1).cpu())
        finally:
            hook.remove()
        return torch.cat(captured).double().numpy(), torch.cat(predicted).numpy()

    def score(self, images: torch.Tensor, labels: np.ndarray) -> "Quality":
        feats, predicted = self.features(images)
        diversity = np.array([mean_pairwise_distance(feats[labels == c]) for c in range(CLASSES)])
        return Quality(float((predicted == labels).mean()), diversity / self.real_diversity,
                       frechet_distance(feats.mean(0), np.cov(feats, rowvar=False), self.real_mean, self.real_cov))


@dataclass
class Quality:
    conditional_accuracy: float  # share of samples the classifier reads as the class asked for
    diversity: np.ndarray  # per class: mean pairwise feature distance, relative to real digits of that class
    frechet: float  # Frechet distance to the real test set in the classifier's feature space

    def as_dict(self) -> dict:
        return {"conditional_accuracy": self.conditional_accuracy, "diversity": [float(d) for d in self.diversity],
                "frechet": self.frechet}


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


def train_gan(config: GanConfig, mnist: Mnist, judge: Judge | None = None, on_event: Callable[[str, dict], None] | None = None,
              stop: threading.Event | None = None) -> GanResult:
    """Alternate D and G steps over MNIST; after each epoch draw the fixed-noise grid and score quality."""
    config.validate()
    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    g, d = Generator(config).to(device), Discriminator(config).to(device)
    opt_g = torch.optim.Adam(g.parameters(), lr=config.g_lr, betas=(config.beta1, config.beta2))
    opt_d = torch.optim.Adam(d.parameters(), lr=config.d_lr, betas=(config.beta1, config.beta2))
    images = (mnist.train_images.float() / 127.5 - 1).unsqueeze(1).to(device)
    labels = mnist.train_labels.to(device)
    order_gen = torch.Generator().manual_seed(config.seed)
    grid_z, grid_labels = fixed_noise(config)
    emit = on_event or (lambda kind, data: None)
    steps, epochs, grids = [], [], []
    status, message, step = "finished", "", 0
    real_target = 1.0 - config.label_smoothing
    start = time.perf_counter()
    per_epoch = math.ceil(len(labels) / config.batch_size)
    try:
        for epoch in range(1, config.epochs + 1):
            g.train(), d.train()
            order = torch.randperm(len(labels), generator=order_gen).to(device)
            for i in range(0, len(labels), config.batch_size):
                idx = order[i:i + config.batch_size]
                real, y = images[idx], labels[idx]
                n = len(y)
                z = torch.randn(n, config.latent, device=device)
                fake_y = torch.randint(0, CLASSES, (n,), device=device)
                fake = g(z, fake_y)
                # Discriminator: real images of their class -> real, generated ones -> fake.
                d_real, d_fake = d(real, y), d(fake.detach(), fake_y)
                d_loss = (F.binary_cross_entropy_with_logits(d_real, torch.full_like(d_real, real_target))
                          + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
                # Generator: make the discriminator call its images real for the class asked.
                d_gen = d(fake, fake_y)
                g_loss = F.binary_cross_entropy_with_logits(d_gen, torch.ones_like(d_gen))
                opt_g.zero_grad(set_to_none=True)
                g_loss.backward()
                opt_g.step()
                step += 1
                record = {"step": step, "epoch": epoch, "steps_per_epoch": per_epoch, "g_loss": float(g_loss.detach()),
                          "d_loss": float(d_loss.detach()), "d_real": float(torch.sigmoid(d_real.detach()).mean()),
                          "d_fake": float(torch.sigmoid(d_fake.detach()).mean()), "elapsed": time.perf_counter() - start}
                if not math.isfinite(record["g_loss"] + record["d_loss"]):
                    raise FloatingPointError(f"the losses became NaN at step {step}; lower the learning rates")
                if step % 10 == 1:
                    steps.append(record)
                emit("step", record)
                if (stop is not None and stop.is_set()) or (config.max_batches and step >= config.max_batches):
                    status = "stopped"
                    message = f"stopped at epoch {epoch}, step {step}"
                    break
            grid = to_uint8(generate(g, grid_labels, z=grid_z))
            grids.append(grid)
            summary = {"epoch": epoch, "steps": step, "elapsed": time.perf_counter() - start}
            if judge is not None:
                summary.update(judge.score(*quality_samples(g)).as_dict())
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


def save_gan(result: GanResult, name: str, directory: Path | None = None, extra: dict | None = None) -> str:
    directory = directory or gan_dir()
    directory.mkdir(parents=True, exist_ok=True)
    name = safe_name(name)
    tensors = {f"g.{k}": v.detach().cpu().contiguous() for k, v in result.generator.state_dict().items()}
    tensors.update({f"d.{k}": v.detach().cpu().contiguous() for k, v in result.discriminator.state_dict().items()})
    if result.grids:
        tensors["grids"] = torch.from_numpy(np.stack(result.grids))
    meta = {"name": name, "kind": "cgan", "config": dataclasses.asdict(result.config), "status": result.status,
            "message": result.message, "steps": result.steps, "epochs": result.epochs,
            "train_seconds": round(result.seconds, 1), "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **(extra or {})}
    tmp = directory / f".{name}.safetensors.tmp"
    safetensors.torch.save_file(tensors, str(tmp))
    os.replace(tmp, directory / f"{name}.safetensors")
    (directory / f".{name}.json.tmp").write_text(json.dumps(meta, indent=1))
    os.replace(directory / f".{name}.json.tmp", directory / f"{name}.json")
    return name


@dataclass
class GanCheckpoint:
    name: str
    source: str
    meta: dict
    weights_path: Path
    config: GanConfig = field(init=False)

    def __post_init__(self):
        self.config = GanConfig(**{k: v for k, v in self.meta["config"].items()
                                   if k in {f.name for f in dataclasses.fields(GanConfig)}})


def list_gans() -> list[GanCheckpoint]:
    found = []
    for source, directory in (("runs", gan_dir()), ("shipped", shipped_gan_dir())):
        for meta_path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
            weights = meta_path.with_name(meta_path.stem + ".safetensors")
            try:
                meta = json.loads(meta_path.read_text())
                if weights.exists() and meta.get("kind") == "cgan":
                    found.append(GanCheckpoint(meta_path.stem, source, meta, weights))
            except (ValueError, TypeError):
                continue
    return found


def load_gan(checkpoint: GanCheckpoint) -> tuple[Generator, np.ndarray | None]:
    """(generator in eval mode, per-epoch grids or None)."""
    try:
        tensors = safetensors.torch.load_file(str(checkpoint.weights_path))
        generator = Generator(checkpoint.config)
        generator.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("g.")})
    except Exception as exc:  # safetensors and load_state_dict raise their own types; say which file
        raise CheckpointError(f"{checkpoint.weights_path}: not a usable GAN checkpoint ({exc})") from None
    grids = tensors["grids"].numpy() if "grids" in tensors else None
    return generator.eval(), grids


# ---------------------------------------------------------------- background runs (the app's Train tab)


@dataclass
class GanJob:
    owner: str
    name: str
    config: GanConfig
    status: str = "running"
    message: str = ""
    steps: list[dict] = field(default_factory=list)
    epochs: list[dict] = field(default_factory=list)
    grid: np.ndarray | None = None
    step: int = 0
    saved: str | None = None
    started: float = field(default_factory=time.time)
    stop_event: threading.Event = field(default_factory=threading.Event, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def running(self) -> bool:
        return self.status == "running"

    def on_event(self, kind: str, data: dict) -> None:
        with self.lock:
            if kind == "step":
                self.step = data["step"]
                if data["step"] % 5 == 1:
                    self.steps.append(data)
            elif kind == "epoch":
                self.grid = data["grid"]
                self.epochs.append({k: v for k, v in data.items() if k != "grid"})

    def snapshot(self) -> "GanJob":
        with self.lock:
            return dataclasses.replace(self, steps=list(self.steps), epochs=list(self.epochs))


class GanJobs(OwnerSlots[GanJob]):
    """One GAN run per owner, at most max_jobs at once across the process."""

    def __init__(self, max_jobs: int = 1):
        super().__init__(max_jobs, GanConfigError, "a GAN training", "trains at most {} GAN")

    def start(self, owner: str, config: GanConfig, mnist: Mnist, judge: Judge | None, name: str) -> GanJob:
        config.validate()
        job = self.admit(owner, lambda: GanJob(owner, safe_name(name), config))

        def work():
            result = train_gan(config, mnist, judge, job.on_event, job.stop_event)
            saved = None
            try:
                extra = {"real_frechet": judge.real_frechet} if judge is not None else None
                saved = save_gan(result, job.name, extra=extra) if result.grids else None
            except OSError as exc:
                result.message += f" (could not save: {exc})"
            with job.lock:
                job.status, job.message, job.saved = result.status, result.message, saved

        threading.Thread(target=work, name=f"gan-{job.name}", daemon=True).start()
        return job
