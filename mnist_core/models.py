"""The architecture registry: each entry is a config dataclass (with defaults) and a builder.

Field metadata ("help", "min", "max", "choices") is what the app turns into widgets, so a new
architecture needs no UI code.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import fields

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}
INPUT_SHAPE = (1, 28, 28)
NUM_CLASSES = 10


class ModelError(ValueError):
    """An unknown architecture or an impossible configuration."""


def _opt(default, help: str, **limits):
    """A config field with its help text, widget limits (min, max, choices) and optional widget label."""
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata={"help": help, **limits})
    return field(default=default, metadata={"help": help, **limits})


# ---------------------------------------------------------------- configs


@dataclass
class MLPConfig:
    depth: int = _opt(2, "Number of hidden layers (0 = logistic regression).", min=0, max=8)
    width: int = _opt(256, "Units in each hidden layer.", min=8, max=2048)
    activation: str = _opt("relu", "Nonlinearity after each hidden layer.", choices=tuple(ACTIVATIONS))
    dropout: float = _opt(0.0, "Dropout probability after each hidden layer.", min=0.0, max=0.9)
    batchnorm: bool = _opt(False, "BatchNorm after each hidden linear layer, before the activation.")


@dataclass
class ColumNetConfig:
    activations: tuple[str, ...] = _opt(
        ("relu", "tanh", "sigmoid", "elu", "gelu"),
        "One parallel fully connected column per entry, each with its own activation.",
        choices=tuple(ACTIVATIONS),
    )
    depth: int = _opt(2, "Hidden layers in each column.", min=1, max=6)
    width: int = _opt(64, "Units per hidden layer in each column.", min=4, max=1024)
    dropout: float = _opt(0.0, "Dropout probability after each hidden layer.", min=0.0, max=0.9)


@dataclass
class SparseNetConfig:
    depth: int = _opt(2, "Number of sparse hidden layers.", min=1, max=8)
    width: int = _opt(512, "Units in each hidden layer.", min=8, max=4096)
    density: float = _opt(
        0.1, "Share of connections that exist in each sparse layer (fixed at build time).", min=0.01, max=1.0
    )
    activation: str = _opt("relu", "Nonlinearity after each hidden layer.", choices=tuple(ACTIVATIONS))


@dataclass
class CNNConfig:
    channels: tuple[int, ...] = _opt(
        (16, 32, 64), "Channels of each 3x3 conv block; each block halves the size.", min=1, max=512
    )
    bn: str = _opt(
        "after",
        "BatchNorm after the activation (classic), before it, or none.",
        choices=("after", "before", "none"),
        label="BatchNorm position",
    )
    activation: str = _opt("relu", "Nonlinearity after each conv.", choices=tuple(ACTIVATIONS))
    dropout: float = _opt(0.0, "Dropout before the classifier.", min=0.0, max=0.9)


@dataclass
class ConvFCConfig:
    channels: int = _opt(
        32, "Filters of the single 3x3 conv (no padding: 28 -> 26, then pooled to 13).", min=1, max=256
    )
    hidden: int = _opt(
        0, "Units of a hidden FC layer before the output (0 = conv straight to the output).", min=0, max=1024
    )


@dataclass
class Conv2FC2Config:
    conv1: int = _opt(32, "Filters of the first 3x3 conv (28 -> 26).", min=1, max=256)
    conv2: int = _opt(64, "Filters of the second 3x3 conv (26 -> 24, pooled to 12).", min=1, max=256)
    hidden: int = _opt(128, "Units of the hidden FC layer.", min=8, max=2048)
    dropout1: float = _opt(0.25, "Dropout after the convs.", min=0.0, max=0.9)
    dropout2: float = _opt(0.5, "Dropout after the hidden FC layer.", min=0.0, max=0.9)


@dataclass
class TinyGapConfig:
    channels: tuple[int, ...] = _opt(
        (8, 8, 16, 12, 20, 24, 32),
        "Seven conv widths: three 3x3 convs (receptive field 7), a 1x1 transition, a 2x2 max-pool, "
        "three more 3x3 convs, then global average pooling.",
        min=1,
        max=128,
    )
    dropout: float = _opt(0.069, "Dropout after every 3x3 conv block (not at the head).", min=0.0, max=0.5)


@dataclass
class FastConfig:
    channels: tuple[int, ...] = _opt((16, 32, 64), "Channels of the three conv blocks.", min=1, max=256)
    pool_first: bool = _opt(
        True,
        "Max-pool straight after each conv, so BatchNorm and ReLU work on a quarter of the values (a step about "
        "1.9x faster on a 2-core CPU, and as accurate); off: conv, BatchNorm, ReLU, then pool.",
    )


# ---------------------------------------------------------------- building blocks


class BitMaskDropout(nn.Dropout):
    """nn.Dropout's regulariser (each value kept with probability 1 - p, then scaled by 1 / (1 - p)), cheaper on a CPU.

    Why: the CPU's random generator is the cost of dropout here. nn.Dropout draws one number per value
    (bernoulli_, 3.7 ms for the cGAN discriminator's 400,000 values; about 12 ms of tiny_gap's 52 ms step);
    this cuts four 16-bit draws out of each 64-bit random word (0.33 ms for the discriminator), so p is
    honoured to 1/65,536. The mask is drawn in the values' logical (N, C, H, W) order whatever their memory
    layout, so a channels-last run and a script without it drop the same values. It holds no weights: a
    checkpoint saved with nn.Dropout loads unchanged. Other devices have fast generators and keep torch's.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        keep_from = round(self.p * 65536) - 32768  # int16 draws at or above this are kept
        if keep_from > 32767:  # p within 1/131,072 of 1: no int16 draw is kept (and 32768 would wrap as int16)
            return x * 0.0
        words = torch.empty((x.numel() + 3) // 4, dtype=torch.int64).random_(-(2**63), None)
        keep = words.view(torch.int16)[: x.numel()].view(x.shape) >= keep_from
        # The mask made in one pass, in x's dtype (a bool mask times the scale would be two passes and float32).
        return x * torch.where(keep, x.new_full((), 1.0 / (1.0 - self.p)), x.new_zeros(()))


class FusingSequential(nn.Sequential):
    """nn.Sequential whose ReLU -> BatchNorm2d -> BitMaskDropout, and 1x1 convolution -> 2x2 max-pool, each train
    as one fused pass on a CPU, and whose small 3x3 convolutions train on the same kernels (fused.py).

    The layers, their weights and their names are nn.Sequential's, so checkpoints, export and inspection see
    the same model; a run whose layers cannot fuse (another device, bfloat16, a hook on one of them) goes
    layer by layer.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        from . import fused

        allowed = fused.call_allows()
        if not allowed:
            return super().forward(x)
        layers, i = list(self), 0
        moments = None  # what the convolution just run summed for the block after it
        while i < len(layers):
            first, second, third = (layers[i : i + 3] + [None, None])[:3]
            if (
                type(third) is BitMaskDropout
                and not third._forward_hooks
                and not third._forward_pre_hooks
                and fused.fusable(first, second, third.p, x, allowed)
            ):
                out = fused.relu_batchnorm_dropout(x, second, third.p, moments)
                if out is not None:
                    x, i, moments = out, i + 3, None
                    continue
            moments = None
            if fused.conv_pool_fusable(first, second, x, allowed):
                out = fused.conv1x1_maxpool(x, first)
                if out is not None:
                    x, i = out, i + 2
                    continue
            if fused.conv_fusable(first, x, allowed):
                out = fused.conv3x3(x, first, fused.moments_center(*(layers[i + 1 : i + 4] + [None] * 3)[:3]))
                if out is not None:
                    (x, moments), i = out, i + 1
                    continue
            x, i = layers[i](x), i + 1
        return x


class SparseLinear(nn.Linear):
    """A linear layer whose missing connections are a fixed 0/1 mask, so their weights stay exactly 0."""

    def __init__(self, in_features: int, out_features: int, density: float):
        super().__init__(in_features, out_features)
        draw = torch.rand(out_features, in_features)
        if draw.is_meta:  # only counting weights (check_shapes): a pointwise op on meta imports sympy (~150 MB)
            self.register_buffer("mask", draw)
            return
        self.register_buffer("mask", (draw < density).float())
        with torch.no_grad():
            # Keep the variance of a dense layer's init: each unit sees only density * in_features inputs.
            self.weight.mul_(self.mask / math.sqrt(density))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight(), self.bias)

    def effective_weight(self) -> torch.Tensor:
        """The weights the layer computes with: an absent connection is exactly 0, whatever its stored weight."""
        return self.weight * self.mask

    def connections(self) -> int:
        return int(self.mask.sum())


class Columns(nn.Module):
    """Parallel sub-networks on the same input, their outputs concatenated."""

    def __init__(self, columns: list[nn.Module]):
        super().__init__()
        self.columns = nn.ModuleList(columns)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([column(x) for column in self.columns], dim=1)


def _fc_stack(
    in_features: int,
    depth: int,
    width: int,
    activation: str,
    dropout: float = 0.0,
    batchnorm: bool = False,
    linear: Callable[[int, int], nn.Module] = nn.Linear,
) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers.append(linear(in_features, width))
        if batchnorm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(BitMaskDropout(dropout))
        in_features = width
    return layers


def _conv_block(c_in: int, c_out: int, bn: str, activation: str, padding: int = 1) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=padding, bias=bn == "none")]
    if bn == "before":
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(ACTIVATIONS[activation]())
    if bn == "after":
        layers.append(nn.BatchNorm2d(c_out))
    return layers


# ---------------------------------------------------------------- builders


def build_mlp(c: MLPConfig) -> nn.Module:
    width = c.width if c.depth else 784
    return nn.Sequential(
        nn.Flatten(),
        *_fc_stack(784, c.depth, c.width, c.activation, c.dropout, c.batchnorm),
        nn.Linear(width, NUM_CLASSES),
    )


def build_columnet(c: ColumNetConfig) -> nn.Module:
    columns = [nn.Sequential(*_fc_stack(784, c.depth, c.width, act, c.dropout)) for act in c.activations]
    return nn.Sequential(nn.Flatten(), Columns(columns), nn.Linear(c.width * len(columns), NUM_CLASSES))


def build_sparsenet(c: SparseNetConfig) -> nn.Module:
    sparse = lambda i, o: SparseLinear(i, o, c.density)  # noqa: E731
    return nn.Sequential(
        nn.Flatten(), *_fc_stack(784, c.depth, c.width, c.activation, linear=sparse), nn.Linear(c.width, NUM_CLASSES)
    )


def build_cnn(c: CNNConfig, pool_first: bool = False) -> nn.Module:
    layers: list[nn.Module] = []
    size, c_in = 28, 1
    for c_out in c.channels:
        conv, *rest = _conv_block(c_in, c_out, c.bn, c.activation)
        layers += [conv, nn.MaxPool2d(2), *rest] if pool_first else [conv, *rest, nn.MaxPool2d(2)]
        size, c_in = size // 2, c_out
    if c.dropout > 0:
        layers.append(BitMaskDropout(c.dropout))
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in * size * size, NUM_CLASSES))


def build_conv_fc(c: ConvFCConfig) -> nn.Module:
    head = (
        [nn.Linear(c.channels * 13 * 13, c.hidden), nn.ReLU(), nn.Linear(c.hidden, NUM_CLASSES)]
        if c.hidden
        else [nn.Linear(c.channels * 13 * 13, NUM_CLASSES)]
    )
    return nn.Sequential(nn.Conv2d(1, c.channels, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), *head)


def build_conv2_fc2(c: Conv2FC2Config) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, c.conv1, 3),
        nn.ReLU(),
        nn.Conv2d(c.conv1, c.conv2, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        BitMaskDropout(c.dropout1),
        nn.Flatten(),
        nn.Linear(c.conv2 * 12 * 12, c.hidden),
        nn.ReLU(),
        BitMaskDropout(c.dropout2),
        nn.Linear(c.hidden, NUM_CLASSES),
    )


def build_tiny_gap(c: TinyGapConfig) -> nn.Module:
    if len(c.channels) != 7:
        raise ModelError(f"tiny_gap needs 7 channel widths (3 convs, 1x1 transition, 3 convs), got {len(c.channels)}")
    c1, c2, c3, t, c4, c5, c6 = c.channels

    def block(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, bias=False), nn.ReLU(), nn.BatchNorm2d(c_out), BitMaskDropout(c.dropout)]

    return FusingSequential(
        *block(1, c1),
        *block(c1, c2),
        *block(c2, c3),  # 28 -> 22, receptive field 7
        nn.Conv2d(c3, t, 1, bias=False),
        nn.MaxPool2d(2),  # 22 -> 11, receptive field 8
        *block(t, c4),
        *block(c4, c5),
        *block(c5, c6),  # 11 -> 5, receptive field 20
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(c6, NUM_CLASSES),
    )


def build_fast(c: FastConfig) -> nn.Module:
    return build_cnn(CNNConfig(channels=c.channels, bn="before"), pool_first=c.pool_first)


@dataclass(frozen=True)
class Architecture:
    name: str
    config_cls: type
    builder: Callable[..., nn.Module]
    summary: str
    # Measured on a 2-core CPU (training step, batch 128): NHWC memory speeds cnn up to 1.7x and tiny_gap by about
    # 8% (once its dropout masks stopped being the cost); conv2_fc2 gains nothing, so it stays NCHW.
    channels_last: bool = False


REGISTRY: dict[str, Architecture] = {
    a.name: a
    for a in [
        Architecture("mlp", MLPConfig, build_mlp, "Plain fully connected net."),
        Architecture(
            "columnet",
            ColumNetConfig,
            build_columnet,
            "Parallel fully connected columns, each with its own activation, joined at the output.",
        ),
        Architecture(
            "sparsenet", SparseNetConfig, build_sparsenet, "Fully connected layers with fixed sparse connectivity."
        ),
        Architecture(
            "cnn", CNNConfig, build_cnn, "Classic small CNN: 3x3 conv, BatchNorm, max-pool blocks.", channels_last=True
        ),
        Architecture(
            "conv_fc", ConvFCConfig, build_conv_fc, "One conv layer and a fully connected output.", channels_last=True
        ),
        Architecture(
            "conv2_fc2",
            Conv2FC2Config,
            build_conv2_fc2,
            "Two convs (32, 64) and two FC layers: the pytorch/examples MNIST net.",
        ),
        Architecture(
            "tiny_gap",
            TinyGapConfig,
            build_tiny_gap,
            "12k-18k-parameter conv net with a 1x1 transition and global average pooling.",
            channels_last=True,
        ),
        Architecture(
            "fast", FastConfig, build_fast, "Small CNN tuned to reach 99% test accuracy fastest.", channels_last=True
        ),
    ]
}

from . import stack as _stack  # noqa: E402,F401  registers "stack", the layer-stack architecture built on the above


def get_architecture(name: str) -> Architecture:
    if name not in REGISTRY:
        raise ModelError(f"unknown architecture {name!r}; choose one of: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def make_config(arch: str, overrides: dict | None = None):
    """The arch's config with overrides applied; lists become tuples and unknown keys are refused.

    The config is checked in full before anything trains: each value's type and range, and that the
    network it describes turns a 28x28 digit into 10 scores (a shape that cannot work would otherwise
    fail at the first batch).
    """
    cls = get_architecture(arch).config_cls
    overrides = dict(overrides or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ModelError(f"{arch} has no setting {', '.join(unknown)}; its settings are: {', '.join(sorted(known))}")
    config = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})
    validate_config(config)
    check_shapes(arch, config)
    return config


def validate_config(config) -> None:
    fields.check(config, ModelError)  # the same type, choice and range checks (and messages) as every other config


def _spatial_after_halvings(blocks: int, size: int = 28) -> int:
    for _ in range(blocks):
        size //= 2
    return size


_REAL_CHECK_PARAMS = 20_000_000
_checked_shapes: set[tuple[str, str]] = set()  # configs already run once: loading a checkpoint twice checks once


def check_shapes(arch: str, config) -> None:
    """Refuse a config whose network cannot turn a 1x28x28 digit into 10 scores, naming the setting.

    The network runs one blank digit: for real when it is small, on PyTorch's meta device (shapes
    computed, no memory allocated) when it is too big to build twice.
    """
    if arch in ("cnn", "fast"):
        blocks = len(config.channels)
        if _spatial_after_halvings(blocks) < 1:
            most = max(n for n in range(1, 10) if _spatial_after_halvings(n) >= 1)
            raise ModelError(
                f"channels: {blocks} blocks halve the 28-pixel digit to nothing "
                f"(28 -> {' -> '.join(str(_spatial_after_halvings(i)) for i in range(1, blocks + 1))}); "
                f"use at most {most} blocks"
            )

    def run(device: str) -> torch.Tensor:
        # fork_rng: building draws initial weights, and must not move the caller's seeded stream
        with torch.random.fork_rng(devices=[]), torch.device(device):
            model = get_architecture(arch).builder(config).eval()
            with torch.no_grad():
                return model(torch.zeros(1, *INPUT_SHAPE))

    key = (arch, repr(config))
    if key in _checked_shapes:
        return
    try:
        try:
            with torch.random.fork_rng(devices=[]), torch.device("meta"):  # allocates nothing: count the weights
                params = sum(p.numel() for p in get_architecture(arch).builder(config).parameters())
        except (RuntimeError, NotImplementedError):  # a builder the meta device cannot run (e.g. .item())
            params = 0
        # A real forward of one digit takes milliseconds; the meta device's first forward in a
        # process costs about a second (its kernels load), so it is kept for nets too big to build.
        out = run("cpu" if params <= _REAL_CHECK_PARAMS else "meta")
    except ModelError:
        raise
    except (RuntimeError, ValueError, TypeError, IndexError, NotImplementedError) as exc:
        settings = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(config).items())
        raise ModelError(
            f"{arch} with {settings} cannot process a 28x28 digit: {str(exc).splitlines()[0][:160]}"
        ) from None
    if tuple(out.shape) != (1, NUM_CLASSES):
        raise ModelError(f"{arch} gives outputs of shape {tuple(out.shape)[1:]} for a digit, not {NUM_CLASSES} scores")
    _checked_shapes.add(key)


def build_model(arch: str, config=None) -> nn.Module:
    """Build an architecture from its config (a dataclass, a dict of overrides, or None for defaults)."""
    if config is None or isinstance(config, dict):
        config = make_config(arch, config)
    return get_architecture(arch).builder(config)


# ---------------------------------------------------------------- describing a model


@dataclass
class LayerInfo:
    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    macs: int
    receptive_field: int | None  # pixels of input one output unit sees, for conv stacks


@dataclass
class ModelCard:
    layers: list[LayerInfo]
    params: int
    effective_params: int  # non-zero weights a sparse net can use; equals params elsewhere
    macs: int
    receptive_field: int | None

    def table(self, labels: dict[str, str] | None = None) -> list[dict]:
        """One row per layer, for showing; labels (layer_labels' names by module path) name the layers."""
        labels = labels or {}
        return [
            {
                "layer": labels.get(r.name, r.name),
                "module": r.name,
                "type": r.kind,
                "output shape": " x ".join(map(str, r.output_shape)),
                "params": r.params,
                "multiply-adds": r.macs,
                "receptive field": r.receptive_field,
            }
            for r in self.layers
        ]


def _layer_macs(module: nn.Module, out: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return out[0].numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, SparseLinear):
        return module.connections()
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features
    return 0


def _kernel_stride(module: nn.Module) -> tuple[int, int] | None:
    if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        k, s = module.kernel_size, module.stride
        k = k[0] if isinstance(k, tuple) else k
        s = s[0] if isinstance(s, tuple) else s
        dilation = module.dilation if isinstance(module, nn.Conv2d) else getattr(module, "dilation", 1)
        dilation = dilation[0] if isinstance(dilation, tuple) else dilation
        return dilation * (k - 1) + 1, s
    return None


def describe(model: nn.Module) -> ModelCard:
    """Per-layer output shapes, parameters, multiply-adds and receptive field, from one dummy forward."""
    leaves = [(name, m) for name, m in model.named_modules() if not list(m.children())]
    rows: list[LayerInfo] = []
    rf, jump = 1, 1  # receptive field and the distance (in input pixels) between neighbouring units
    spatial = True

    def hook(name: str):
        def record(module, _inputs, out):
            nonlocal rf, jump, spatial
            ks = _kernel_stride(module)
            if ks and spatial:
                rf += (ks[0] - 1) * jump
                jump *= ks[1]
            if isinstance(module, (nn.AdaptiveAvgPool2d, nn.Flatten, nn.Linear)) and out.dim() <= 2:
                spatial = False
            params = sum(p.numel() for p in module.parameters(recurse=False))
            rows.append(
                LayerInfo(
                    name,
                    "Dropout" if isinstance(module, nn.Dropout) else type(module).__name__,  # BitMaskDropout too
                    tuple(out.shape[1:]),
                    params,
                    _layer_macs(module, out),
                    rf if spatial and out.dim() == 4 else None,
                )
            )

        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in leaves]
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        with torch.no_grad():
            model(torch.zeros(1, *INPUT_SHAPE, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    masked_out = sum(m.weight.numel() - m.connections() for m in model.modules() if isinstance(m, SparseLinear))
    conv_rfs = [r.receptive_field for r in rows if r.receptive_field is not None and r.receptive_field > 1]
    return ModelCard(rows, params, params - masked_out, sum(r.macs for r in rows), max(conv_rfs) if conv_rfs else None)


@torch.no_grad()
def effective_weight(model: nn.Module, name: str) -> torch.Tensor:
    """A weight parameter, by its name in the model, as its layer computes with it (a sparse layer's absent
    connections 0): what a picture of the weights should show."""
    module = model.get_submodule(name.rsplit(".", 1)[0])
    return module.effective_weight() if isinstance(module, SparseLinear) else module.weight.detach()


def layer_labels(model: nn.Module) -> dict[str, str]:
    """A learner's name for each layer, by module path: "conv 2 (layer 4)", "ReLU after conv 2 (layer 5)",
    "output layer (layer 12)". Layers are numbered in the model card's order; "after" is said only inside a
    Sequential (elsewhere the listed order need not be the running order); a conv or linear that holds a
    helper module (a padding layer) counts as one layer. A parameter maps through its module: "3.weight"
    is labels["3"]."""
    units = [
        (path, m)
        for path, m in model.named_modules()
        if path and (isinstance(m, (nn.Conv2d, nn.Linear)) or not list(m.children()))
    ]
    units = [
        (path, m)
        for path, m in units  # drop the helpers inside a conv or linear
        if not any(path.startswith(p + ".") for p, o in units if isinstance(o, (nn.Conv2d, nn.Linear)))
    ]
    linears = [path for path, m in units if isinstance(m, nn.Linear)]
    names = {
        nn.BatchNorm1d: "BatchNorm",
        nn.BatchNorm2d: "BatchNorm",
        nn.MaxPool2d: "max-pool",
        nn.AvgPool2d: "average pool",
        nn.AdaptiveAvgPool2d: "global average pool",
        nn.Flatten: "flatten",
    }
    labels, count, last = {}, {"conv": 0, "linear": 0}, None
    for n, (path, m) in enumerate(units, start=1):
        parts = path.split(".")
        where = f" in column {int(parts[parts.index('columns') + 1]) + 1}" if "columns" in parts[:-1] else ""
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            kind = "conv" if isinstance(m, nn.Conv2d) else "linear"
            count[kind] += 1
            last = f"{kind} {count[kind]}"
            what = "output layer" if linears and path == linears[-1] and not isinstance(m, nn.Conv2d) else last + where
        else:
            kind = "dropout" if isinstance(m, nn.Dropout) else names.get(type(m), type(m).__name__)
            in_order = isinstance(model.get_submodule(path.rpartition(".")[0]), nn.Sequential)  # runs as listed
            what = kind if not in_order else f"{kind} after {last}{where}" if last else f"{kind} on the input"
        labels[path] = f"{what} (layer {n})"
    return labels
