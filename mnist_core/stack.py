"""The layer-stack architecture: a net written as a list of layers, e.g.
"conv 16 3 p=1, relu, bn, maxpool 2, flatten, linear 10".

The stack is data (a tuple of layer strings; a checkpoint's JSON holds it as a list), never code.
check() follows the shapes layer by layer before anything is built, so a stack that cannot work
names the layer that is wrong and says why; build() turns a good stack into an nn.Sequential;
stack_of() reads the stack back from a built module, so every shipped architecture made only of
plain layers can be a starting point.

Layer syntax (positional values in this order, or key=value):
  conv CHANNELS [KERNEL [STRIDE [PADDING]]]   k= s= p= bias=0   (defaults: 3, 1, 0, with bias)
  maxpool | avgpool [KERNEL [STRIDE [PADDING]]] (stride defaults to the kernel; "pool" is maxpool)
  bn, dropout [P], flatten, gap (global average pooling to C x 1 x 1), linear WIDTH [bias=0]
  residual  (two 3x3 convs with BatchNorm and a skip connection; keeps the shape)
  an activation: relu, leaky_relu, elu, gelu, silu, tanh, sigmoid
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from .models import ACTIVATIONS, INPUT_SHAPE, NUM_CLASSES, REGISTRY, Architecture, BitMaskDropout, ModelError

# Limits: a hosted visitor must not be able to build a net that eats the machine.
MAX_LAYERS = 64
MAX_CHANNELS = 1024
MAX_WIDTH = 8192
MAX_PARAMS = 20_000_000
MAX_MACS = 1_000_000_000  # multiply-adds per image; conv2_fc2, the largest shipped net, needs 12 million

# kind -> its settings in positional order, with defaults (None = required)
SETTINGS: dict[str, dict[str, float | int | None]] = {
    "conv": {"channels": None, "kernel": 3, "stride": 1, "padding": 0, "bias": 1},
    "maxpool": {"kernel": 2, "stride": 0, "padding": 0},  # stride 0 = the kernel size
    "avgpool": {"kernel": 2, "stride": 0, "padding": 0},
    "bn": {},
    "dropout": {"p": 0.25},
    "flatten": {},
    "gap": {},
    "linear": {"width": None, "bias": 1},
    "residual": {},
    **{name: {} for name in ACTIVATIONS},
}
ALIASES = {
    "pool": "maxpool",
    "batchnorm": "bn",
    "fc": "linear",
    "dense": "linear",
    "conv2d": "conv",
    "globalavgpool": "gap",
}
KEY_ALIASES = {"k": "kernel", "s": "stride", "p": "padding", "c": "channels", "w": "width", "pad": "padding"}
LAYER_HELP = {
    "conv": "2-D convolution: output channels, square kernel, stride, zero padding",
    "maxpool": "max pooling over a square window",
    "avgpool": "average pooling over a square window",
    "bn": "BatchNorm (2-D after convs, 1-D after flatten)",
    "dropout": "zeroes a share p of the activations while training",
    "flatten": "C x H x W -> one vector",
    "gap": "global average pooling: C x H x W -> C x 1 x 1",
    "linear": "fully connected layer of the given width",
    "residual": "two 3x3 convs with BatchNorm and a skip connection (keeps the shape)",
    **{name: "activation" for name in ACTIVATIONS},
}
DEFAULT_LAYERS = (
    "conv 16 k=3 s=1 p=1",
    "relu",
    "bn",
    "maxpool 2",
    "conv 32 k=3 s=1 p=1",
    "relu",
    "bn",
    "maxpool 2",
    "flatten",
    "linear 10",
)


@dataclass(frozen=True)
class Layer:
    kind: str
    values: dict = field(default_factory=dict)

    def __getitem__(self, name: str):
        return self.values[name]

    @property
    def text(self) -> str:
        """The canonical one-line form: what a checkpoint stores."""
        v = self.values
        if self.kind == "conv":
            return f"conv {v['channels']} k={v['kernel']} s={v['stride']} p={v['padding']}" + (
                "" if v["bias"] else " bias=0"
            )
        if self.kind in ("maxpool", "avgpool"):
            text = f"{self.kind} {v['kernel']}"
            text += f" s={v['stride']}" if v["stride"] != v["kernel"] else ""
            return text + (f" p={v['padding']}" if v["padding"] else "")
        if self.kind == "dropout":
            return f"dropout {v['p']:g}"
        if self.kind == "linear":
            return f"linear {v['width']}" + ("" if v["bias"] else " bias=0")
        return self.kind


class LayerError(ModelError):
    """A layer that cannot be read; index is its 1-based position in the stack."""

    def __init__(self, message: str, index: int):
        super().__init__(message)
        self.index = index


def _number(text: str, name: str, layer: str):
    try:
        return float(text) if name == "p" else int(text)
    except ValueError:
        kind = "a number" if name == "p" else "a whole number"
        raise ModelError(f"{layer!r}: {name} must be {kind}, got {text!r}") from None


def parse_layer(spec) -> Layer:
    """One layer from its text ("conv 16 3 p=1") or a dict ({"type": "conv", "channels": 16, ...})."""
    if isinstance(spec, Layer):
        return spec
    if isinstance(spec, dict):
        spec = dict(spec)
        kind = str(spec.pop("type", spec.pop("kind", ""))).strip().lower()
        tokens = [kind, *(f"{k}={v}" for k, v in spec.items())]
        source = json.dumps(spec | {"type": kind})
    elif isinstance(spec, str):
        tokens, source = spec.split(), spec.strip()
    else:
        raise ModelError(f"a layer is written as text such as 'conv 16 3' or a dict, not {type(spec).__name__}")
    if not tokens or not tokens[0]:
        raise ModelError("(empty): write a layer such as 'conv 16 3' there, or remove it")
    kind = ALIASES.get(tokens[0].lower(), tokens[0].lower())
    if kind not in SETTINGS:
        raise ModelError(f"{source!r}: unknown layer {tokens[0]!r}; layers are: {', '.join(SETTINGS)}")
    names = list(SETTINGS[kind])
    values: dict = {}
    positional = 0
    for token in tokens[1:]:
        key, sep, text = token.partition("=")
        if sep:
            name = KEY_ALIASES.get(key.lower(), key.lower())
            if name not in names:
                raise ModelError(
                    f"{source!r}: {kind} has no setting {key!r}"
                    + (f"; its settings are {', '.join(names)}" if names else "; it takes none")
                )
        else:
            if positional >= len(names):
                raise ModelError(
                    f"{source!r}: too many values for {kind}"
                    + (f" (it takes {', '.join(names)})" if names else " (it takes none)")
                )
            name, text = names[positional], token
            positional += 1
        if name == "bias":
            if text.lower() not in ("0", "1", "true", "false", "yes", "no"):
                raise ModelError(f"{source!r}: bias is 0 or 1, got {text!r}")
            values[name] = int(text.lower() in ("1", "true", "yes"))
        else:
            values[name] = _number(text, name, source)
    for name, default in SETTINGS[kind].items():
        if name not in values:
            if default is None:
                raise ModelError(
                    f"{source!r}: {kind} needs its {name}, e.g. '{kind} {16 if name == 'channels' else 10}'"
                )
            values[name] = default
    if kind in ("maxpool", "avgpool") and values["stride"] == 0:
        values["stride"] = values["kernel"]
    return Layer(kind, values)


def parse(spec) -> list[Layer]:
    """A whole stack from "a, b, c" text, a list of layer texts or dicts, or a JSON list in text."""
    if isinstance(spec, str):
        text = spec.strip()
        if text.startswith("["):
            try:
                spec = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ModelError(f"the layer list is not valid JSON: {exc}") from None
        else:
            spec = text.replace("\n", ",").split(",") if text else []
            spec = [part for part in spec if part.strip()]
    if not isinstance(spec, (list, tuple)):
        raise ModelError("a layer stack is a list of layers")
    if len(spec) > MAX_LAYERS:
        raise ModelError(f"{len(spec)} layers: the builder takes at most {MAX_LAYERS}")
    layers = []
    for i, item in enumerate(spec, 1):
        try:
            layers.append(parse_layer(item))
        except ModelError as exc:
            raise LayerError(f"layer {i} {exc}", i) from None
    return layers


def texts(layers) -> tuple[str, ...]:
    return tuple(layer.text for layer in parse(layers))


# ---------------------------------------------------------------- shape checking


@dataclass
class Row:
    index: int  # 1-based, as the user counts
    text: str
    output_shape: tuple[int, ...]
    params: int
    macs: int
    receptive_field: int | None  # None once the image is flat


@dataclass
class StackCheck:
    rows: list[Row]  # one per layer up to (not including) the first bad one
    error: str | None = None
    error_index: int | None = None  # 1-based index of the layer the error is about

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def macs(self) -> int:
        return sum(r.macs for r in self.rows)

    @property
    def receptive_field(self) -> int | None:
        fields = [r.receptive_field for r in self.rows if r.receptive_field is not None and r.receptive_field > 1]
        return max(fields) if fields else None


def _shape_text(shape: tuple[int, ...]) -> str:
    return " x ".join(map(str, shape)) if len(shape) > 1 else f"a flat vector of {shape[0]}"


def _window_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def check(spec) -> StackCheck:
    """Follow the shapes through the stack; stop at the first layer that cannot work and say why."""
    try:
        layers = parse(spec)
    except ModelError as exc:
        return StackCheck([], str(exc), getattr(exc, "index", None))
    rows: list[Row] = []
    shape: tuple[int, ...] = INPUT_SHAPE
    rf, jump = 1, 1  # receptive field, and the distance in input pixels between neighbouring units

    def fail(i: int, layer: Layer, why: str) -> StackCheck:
        return StackCheck(rows, f"layer {i} ({layer.text}): {why}", i)

    if not layers:
        return StackCheck([], "the stack is empty: add layers that end in 'flatten, linear 10'", None)
    for i, layer in enumerate(layers, 1):
        kind, v = layer.kind, layer.values
        params = macs = 0
        image = len(shape) == 3
        if kind in ("conv", "maxpool", "avgpool", "gap", "residual") and not image:
            return fail(
                i,
                layer,
                f"needs an image (channels x height x width) but gets {_shape_text(shape)}; put it before flatten",
            )
        if kind == "conv":
            c, k, s, p = v["channels"], v["kernel"], v["stride"], v["padding"]
            for name, value, low, high in (
                ("channels", c, 1, MAX_CHANNELS),
                ("kernel", k, 1, 28),
                ("stride", s, 1, 28),
                ("padding", p, 0, 14),
            ):
                if not low <= value <= high:
                    return fail(i, layer, f"{name} {value} is outside {low}-{high}")
            h, w = _window_out(shape[1], k, s, p), _window_out(shape[2], k, s, p)
            if h < 1 or w < 1:
                return fail(
                    i,
                    layer,
                    f"a {k}x{k} kernel does not fit in its {shape[1]}x{shape[2]} input "
                    f"(padding {p}): the size would reach zero; remove a pool or add padding",
                )
            params = shape[0] * c * k * k + (c if v["bias"] else 0)
            macs = h * w * c * shape[0] * k * k
            rf, jump = rf + (k - 1) * jump, jump * s
            shape = (c, h, w)
        elif kind in ("maxpool", "avgpool"):
            k, s, p = v["kernel"], v["stride"], v["padding"]
            for name, value, low, high in (("kernel", k, 1, 28), ("stride", s, 1, 28)):
                if not low <= value <= high:
                    return fail(i, layer, f"{name} {value} is outside {low}-{high}")
            if not 0 <= p <= k // 2:
                return fail(i, layer, f"padding {p} must be at most half the window ({k // 2})")
            h, w = _window_out(shape[1], k, s, p), _window_out(shape[2], k, s, p)
            if h < 1 or w < 1:
                return fail(
                    i,
                    layer,
                    f"a {k}x{k} window does not fit in its {shape[1]}x{shape[2]} input: "
                    f"the size would reach zero; remove a pool or make it smaller",
                )
            rf, jump = rf + (k - 1) * jump, jump * s
            shape = (shape[0], h, w)
        elif kind == "bn":
            params = 2 * shape[0]
        elif kind == "dropout":
            if not 0 <= v["p"] < 1:
                return fail(i, layer, f"p {v['p']:g} must be in [0, 1)")
        elif kind == "flatten":
            shape = (int(torch.tensor(shape).prod()),)
        elif kind == "gap":
            shape = (shape[0], 1, 1)
        elif kind == "linear":
            if image:
                return fail(i, layer, f"needs a flat input but gets {_shape_text(shape)}; put flatten before it")
            if not 1 <= v["width"] <= MAX_WIDTH:
                return fail(i, layer, f"width {v['width']} is outside 1-{MAX_WIDTH}")
            params = shape[0] * v["width"] + (v["width"] if v["bias"] else 0)
            macs = shape[0] * v["width"]
            shape = (v["width"],)
        elif kind == "residual":
            if shape[1] < 3 or shape[2] < 3:
                return fail(i, layer, f"its 3x3 convs need at least 3x3 pixels, but the input is {shape[1]}x{shape[2]}")
            c = shape[0]
            params = 2 * (c * c * 9) + 2 * (2 * c)
            macs = 2 * shape[1] * shape[2] * c * c * 9
            rf += 4 * jump
        rows.append(Row(i, layer.text, shape, params, macs, rf if len(shape) == 3 else None))
        total = sum(r.params for r in rows)
        if total > MAX_PARAMS:
            return fail(
                i,
                layer,
                f"the stack reaches {total:,} parameters here; the builder's limit is "
                f"{MAX_PARAMS:,}: use fewer channels or a pool before flatten",
            )
        work = sum(r.macs for r in rows)
        if work > MAX_MACS:
            return fail(
                i,
                layer,
                f"the stack reaches {work:,} multiply-adds per image here; the builder's limit "
                f"is {MAX_MACS:,}: use fewer channels, or a stride or pool earlier",
            )
    if shape != (NUM_CLASSES,):
        last = layers[-1]
        return StackCheck(
            rows,
            f"layer {len(layers)} ({last.text}): the net ends in {_shape_text(shape)}, but a "
            f"digit classifier must end in {NUM_CLASSES} outputs: finish with "
            f"{'flatten, ' if len(shape) == 3 else ''}linear {NUM_CLASSES}",
            len(layers),
        )
    return StackCheck(rows)


def validate(spec) -> list[Layer]:
    """The parsed stack, or ModelError naming the first layer that cannot work."""
    result = check(spec)
    if not result.ok:
        raise ModelError(result.error)
    return parse(spec)


# ---------------------------------------------------------------- building


class ResidualBlock(nn.Module):
    """Two 3x3 convs with BatchNorm, added to the input (He et al.'s basic block, same channels)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + x)


def build(spec) -> nn.Sequential:
    """An nn.Sequential from a stack that check() accepts (ModelError otherwise)."""
    layers = validate(spec)
    modules: list[nn.Module] = []
    shape: tuple[int, ...] = INPUT_SHAPE
    for layer, row in zip(layers, check(layers).rows):
        kind, v = layer.kind, layer.values
        if kind == "conv":
            modules.append(
                nn.Conv2d(
                    shape[0], v["channels"], v["kernel"], stride=v["stride"], padding=v["padding"], bias=bool(v["bias"])
                )
            )
        elif kind == "maxpool":
            modules.append(nn.MaxPool2d(v["kernel"], stride=v["stride"], padding=v["padding"]))
        elif kind == "avgpool":
            modules.append(nn.AvgPool2d(v["kernel"], stride=v["stride"], padding=v["padding"]))
        elif kind == "bn":
            modules.append(nn.BatchNorm2d(shape[0]) if len(shape) == 3 else nn.BatchNorm1d(shape[0]))
        elif kind == "dropout":
            modules.append(BitMaskDropout(v["p"]))
        elif kind == "flatten":
            modules.append(nn.Flatten())
        elif kind == "gap":
            modules.append(nn.AdaptiveAvgPool2d(1))
        elif kind == "linear":
            modules.append(nn.Linear(shape[0], v["width"], bias=bool(v["bias"])))
        elif kind == "residual":
            modules.append(ResidualBlock(shape[0]))
        else:
            modules.append(ACTIVATIONS[kind]())
        shape = row.output_shape
    return nn.Sequential(*modules)


# ---------------------------------------------------------------- reading a stack back from a module


def _single(value, what: str) -> int:
    if isinstance(value, tuple):
        if len(set(value)) != 1:
            raise ModelError(f"a non-square {what} {value} cannot be written as a layer stack")
        value = value[0]
    return int(value)


def stack_of(model: nn.Module) -> tuple[str, ...]:
    """The layer stack of a built model made of plain layers in sequence; ModelError when it has other parts."""
    if not isinstance(model, nn.Sequential):
        raise ModelError(f"a {type(model).__name__} is not a plain sequence of layers")
    names = {cls: name for name, cls in ACTIVATIONS.items()}
    out: list[str] = []
    for module in model:
        kind = type(module)
        if kind is nn.Conv2d:
            if module.groups != 1 or _single(module.dilation, "dilation") != 1 or module.padding_mode != "zeros":
                raise ModelError("a grouped, dilated or non-zero-padded conv cannot be written as a layer stack")
            layer = Layer(
                "conv",
                {
                    "channels": module.out_channels,
                    "kernel": _single(module.kernel_size, "kernel"),
                    "stride": _single(module.stride, "stride"),
                    "padding": _single(module.padding, "padding"),
                    "bias": int(module.bias is not None),
                },
            )
        elif kind in (nn.MaxPool2d, nn.AvgPool2d):
            layer = Layer(
                "maxpool" if kind is nn.MaxPool2d else "avgpool",
                {
                    "kernel": _single(module.kernel_size, "kernel"),
                    "stride": _single(module.stride, "stride"),
                    "padding": _single(module.padding, "padding"),
                },
            )
        elif kind in (nn.BatchNorm1d, nn.BatchNorm2d):
            layer = Layer("bn")
        elif kind in (nn.Dropout, BitMaskDropout):
            layer = Layer("dropout", {"p": module.p})
        elif kind is nn.Flatten:
            layer = Layer("flatten")
        elif kind is nn.AdaptiveAvgPool2d and _single(module.output_size, "output size") == 1:
            layer = Layer("gap")
        elif kind is nn.Linear:
            layer = Layer("linear", {"width": module.out_features, "bias": int(module.bias is not None)})
        elif kind is ResidualBlock:
            layer = Layer("residual")
        elif kind in names:
            layer = Layer(names[kind])
        else:
            raise ModelError(f"its {kind.__name__} layer has no equivalent in a layer stack")
        out.append(layer.text)
    return tuple(out)


def stack_of_arch(arch: str, model_config: dict | None = None) -> tuple[str, ...]:
    """The layer stack an architecture (with these settings) builds, e.g. to start the builder from it."""
    from .models import build_model

    try:
        return stack_of(build_model(arch, model_config or {}))
    except ModelError as exc:
        raise ModelError(f"{arch} cannot be written as a layer stack: {exc}") from None


# ---------------------------------------------------------------- the registered architecture


@dataclass
class StackConfig:
    layers: tuple[str, ...] = field(
        default_factory=lambda: DEFAULT_LAYERS,
        metadata={
            "help": "The layers in order, separated by commas, e.g. 'conv 16 3 p=1, relu, bn, maxpool 2, "
            "flatten, linear 10'. Layers: " + ", ".join(SETTINGS) + ". Build them on the Build page."
        },
    )

    def __post_init__(self):
        # Stored canonical, so equal stacks compare equal and a checkpoint's JSON reads the same everywhere.
        self.layers = tuple(layer.text for layer in validate(self.layers))


def build_stack(config: StackConfig) -> nn.Module:
    return build(config.layers)


REGISTRY["stack"] = Architecture(
    "stack",
    StackConfig,
    build_stack,
    "Your own layer stack (conv, pool, BatchNorm, dropout, linear...), from the Build page.",
)
