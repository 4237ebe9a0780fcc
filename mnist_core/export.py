"""Take a run home: a standalone training script, ONNX, and the files (weights, JSON, curves as CSV).

The script imports only torch and numpy (and the standard library): the architecture is written out
as an nn.Module whose layers are built in the same order as here, so with the run's seed it starts
from the same initial weights, sees the digits in the same order and reproduces the run's recipe.
"""

from __future__ import annotations

import csv
import inspect
import io
import json
import math
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoints import CheckpointError, CheckpointInfo, find, load
from .files import write_bytes_atomic
from .models import ACTIVATIONS, BitMaskDropout, Columns, SparseLinear, build_model, describe, make_config
from .stack import ResidualBlock
from .train import TrainConfig

FORMATS = ("script", "onnx", "safetensors")
SUFFIX = {"script": ".py", "onnx": ".onnx"}
ONNX_OPSET = 17


class ExportError(ValueError):
    """A checkpoint that cannot be exported in the asked format, or an output path that cannot be used."""


# ---------------------------------------------------------------- the architecture as code


def _pair(value, what: str) -> int:
    if isinstance(value, tuple):
        if len(set(value)) != 1:
            raise ExportError(f"a non-square {what} {value} is not supported by the script export")
        value = value[0]
    return int(value)


def _layer_code(m: nn.Module, hints: dict, indent: str, classes: list[type]) -> str:
    """One module as the constructor call that builds it (same layer order, so the same seeded init)."""
    t = type(m)
    if t is nn.Conv2d:
        if m.groups != 1 or _pair(m.dilation, "dilation") != 1 or m.padding_mode != "zeros":
            raise ExportError("a grouped, dilated or non-zero-padded conv is not supported by the script export")
        code = f"nn.Conv2d({m.in_channels}, {m.out_channels}, {_pair(m.kernel_size, 'kernel')}"
        stride, padding = _pair(m.stride, "stride"), _pair(m.padding, "padding")
        code += (f", stride={stride}" if stride != 1 else "") + (f", padding={padding}" if padding else "")
        return code + (", bias=False" if m.bias is None else "") + ")"
    if t in (nn.MaxPool2d, nn.AvgPool2d):
        kernel, stride, padding = (
            _pair(m.kernel_size, "kernel"),
            _pair(m.stride, "stride"),
            _pair(m.padding, "padding"),
        )
        return (
            f"nn.{t.__name__}({kernel}"
            + (f", stride={stride}" if stride != kernel else "")
            + (f", padding={padding}" if padding else "")
            + ")"
        )
    if t in (nn.BatchNorm1d, nn.BatchNorm2d):
        return f"nn.{t.__name__}({m.num_features})"
    if t is nn.Dropout:
        return f"nn.Dropout({m.p!r})"
    if t is BitMaskDropout:  # the script must draw the same masks to repeat the run
        classes.append(BitMaskDropout)
        return f"BitMaskDropout({m.p!r})"
    if t is nn.Flatten:
        return "nn.Flatten()"
    if t is nn.AdaptiveAvgPool2d and _pair(m.output_size, "output size") == 1:
        return "nn.AdaptiveAvgPool2d(1)"
    if t is SparseLinear:
        classes.append(SparseLinear)
        return f"SparseLinear({m.in_features}, {m.out_features}, density={hints['density']!r})"
    if t is nn.Linear:
        return f"nn.Linear({m.in_features}, {m.out_features}" + (", bias=False" if m.bias is None else "") + ")"
    if t is ResidualBlock:
        classes.append(ResidualBlock)
        return f"ResidualBlock({m.conv1.in_channels})"
    if t in ACTIVATIONS.values() and not any(p.numel() for p in m.parameters()):
        return f"nn.{t.__name__}()"
    inner = indent + "    "
    if t is nn.Sequential:
        return (
            "nn.Sequential(\n" + "".join(f"{inner}{_layer_code(c, hints, inner, classes)},\n" for c in m) + f"{indent})"
        )
    if t is Columns:
        classes.append(Columns)
        return (
            "Columns([\n"
            + "".join(f"{inner}{_layer_code(c, hints, inner, classes)},\n" for c in m.columns)
            + f"{indent}])"
        )
    raise ExportError(f"its {t.__name__} layer is not supported by the script export")


def net_code(model: nn.Module, arch: str, model_config: dict) -> str:
    """Python source for `class Net(nn.Sequential)` (and any helper class it needs), shapes in comments."""
    if not isinstance(model, nn.Sequential):
        raise ExportError(f"a {type(model).__name__} model is not a plain sequence of layers")
    config = make_config(arch, model_config)
    hints = {"density": getattr(config, "density", None)}
    classes: list[type] = []
    shapes = []
    x = torch.zeros(1, 1, 28, 28)
    model = model.eval()
    with torch.no_grad():
        for layer in model:
            x = layer(x)
            shapes.append(" x ".join(map(str, x.shape[1:])))
    lines = [
        f"            {_layer_code(layer, hints, '            ', classes)},  # -> {shape}"
        for layer, shape in zip(model, shapes)
    ]
    card = describe(model)
    helpers = "".join(inspect.getsource(cls) + "\n\n" for cls in dict.fromkeys(classes))
    settings = ", ".join(f"{k}={v}" for k, v in model_config.items()) if model_config else "default settings"
    if arch == "stack":
        settings = "layers: " + ", ".join(model_config.get("layers", ()))
    code = (
        helpers
        + "class Net(nn.Sequential):\n"
        + "{doc}"
        + "    def __init__(self):\n        super().__init__(\n"
        + "\n".join(lines)
        + "\n        )\n"
    )
    init = (
        "The layers are built in the same order as in MNIST Lab, so one seed gives the same initial weights"
        if _same_init(code.replace("{doc}", ""), arch, model_config)
        else "MNIST Lab builds these layers in another order, so a seed gives other initial weights than there"
    )
    doc = (
        f'    """{arch} ({settings}): {card.params:,} parameters, {card.macs:,} multiply-adds per image.\n\n'
        f'    {init};\n    the state_dict keys match the exported .safetensors file.\n    """\n\n'
    )
    return code.replace("{doc}", doc, 1)


def _same_init(code: str, arch: str, model_config: dict) -> bool:
    """Whether the generated Net starts from the same weights as build_model under one seed."""
    namespace = {"torch": torch, "nn": nn, "F": F, "math": math}
    exec(code, namespace)  # our own generated source, never a user's file
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ours = namespace["Net"]().state_dict()
        torch.manual_seed(0)
        theirs = build_model(arch, model_config).state_dict()
    return ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


# ---------------------------------------------------------------- the script


_DATA = '''
def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip'd or raw) as a uint8 array."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_split(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, 28, 28) and int64 labels of "train" or "t10k"."""
    def find(stem: str) -> Path:
        for candidate in (folder / f"{stem}.gz", folder / stem):
            if candidate.exists():
                return candidate
        raise SystemExit(f"{folder}: missing {stem}(.gz); point --data at the folder of the four MNIST IDX files")

    images = read_idx(find(f"{split}-images-idx3-ubyte"))
    labels = read_idx(find(f"{split}-labels-idx1-ubyte")).astype(np.int64)
    return torch.from_numpy(images.copy()), torch.from_numpy(labels)


def pixel_mean_std(images: torch.Tensor) -> tuple[float, float]:
    """Mean and std of the training pixels in 0-1 units (0.1307 and 0.3081 for MNIST), exact."""
    counts = np.bincount(images.numpy().ravel(), minlength=256).astype(np.float64)
    values = np.arange(256, dtype=np.float64) / 255.0
    mean = float(counts @ values / counts.sum())
    return mean, float(np.sqrt(counts @ (values - mean) ** 2 / counts.sum()))


def standardize(images: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float (N, 1, 28, 28) with the training set's mean 0 and std 1."""
    return images.float().div_(255.0).sub_(mean).div_(std).unsqueeze(1)
'''

_AUGMENT = '''

def augment(x: torch.Tensor, generator: torch.Generator, background: float) -> torch.Tensor:
    """Random rotation (up to ROTATION degrees) and shift (up to SHIFT pixels), one draw per image."""
    n, _, h, w = x.shape
    uniform = lambda: torch.rand(n, generator=generator).mul_(2).sub_(1)  # noqa: E731 (in [-1, 1))
    angle = uniform() * math.radians(ROTATION)
    tx, ty = uniform() * SHIFT * 2 / w, uniform() * SHIFT * 2 / h  # affine_grid's units: 2 / size per pixel
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1).to(x)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # Shift so the background is 0 before sampling: grid_sample pads with zeros.
    return F.grid_sample(x - background, grid, align_corners=False, padding_mode="zeros") + background
'''

_BALANCED = '''

def balanced_order(labels: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """All indices, ordered so that every prefix holds the classes as evenly as possible."""
    gen = torch.Generator().manual_seed(seed)
    per_class = [torch.nonzero(labels == c).flatten() for c in labels.unique(sorted=True).tolist()]
    per_class = [idx[torch.randperm(len(idx), generator=gen)] for idx in per_class]
    rank = torch.empty(len(labels), dtype=torch.long)
    for idx in per_class:
        rank[idx] = torch.arange(len(idx))
    return torch.argsort(rank * 64 + labels, stable=True)
'''

_EVALUATE = '''

@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 2000):
    """Mean loss and accuracy, in eval mode (BatchNorm's running statistics, no dropout)."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(labels), batch_size):
        logits = model(images[start : start + batch_size])
        y = labels[start : start + batch_size]
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    model.train()
    return loss_sum / len(labels), correct / len(labels)
'''


def _optimizer_code(c: TrainConfig) -> str:
    if c.optimizer == "sgd":
        return (
            "torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, nesterov=NESTEROV, "
            "weight_decay=WEIGHT_DECAY)"
        )
    if c.optimizer == "rmsprop":
        return "torch.optim.RMSprop(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)"
    name = {"adam": "Adam", "adamw": "AdamW", "adagrad": "Adagrad", "adadelta": "Adadelta"}[c.optimizer]
    return f"torch.optim.{name}(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)"


def _scheduler_code(c: TrainConfig) -> str | None:
    """A per-step scheduler, as in mnist_core.train.make_scheduler."""
    if c.schedule == "step":
        return "torch.optim.lr_scheduler.StepLR(optimizer, STEP_SIZE * steps_per_epoch, GAMMA)"
    if c.schedule == "cosine":
        return "torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total_steps)"
    if c.schedule == "onecycle":
        cycle = c.optimizer in ("sgd", "rmsprop")
        return f"torch.optim.lr_scheduler.OneCycleLR(optimizer, LR, total_steps=total_steps, cycle_momentum={cycle})"
    return None


def recipe_of(meta: dict) -> TrainConfig:
    """The checkpoint's training config, or ExportError when a standalone script cannot reproduce it."""
    if not isinstance(meta.get("train_config"), dict):
        raise ExportError(
            f"checkpoint {meta.get('name')!r} has no training recipe in its JSON, so there is no "
            "training script to write; export its weights (safetensors) or ONNX instead"
        )
    config = TrainConfig.from_dict(meta["train_config"])
    if config.init_checkpoint:
        name, start = meta["name"], config.init_checkpoint  # the shipped best was tuned from an earlier best
        origin = f"an earlier {start!r}" if start == name else repr(start)
        raise ExportError(
            f"checkpoint {name!r} was fine-tuned from {origin}; a standalone "
            "script trains from scratch and cannot reproduce that: export its weights or ONNX instead"
        )
    if config.drawings_share > 0:
        raise ExportError(
            f"checkpoint {meta['name']!r} trained on your saved drawings, which a standalone script "
            "does not have: export its weights or ONNX instead"
        )
    return config


def script_text(info: CheckpointInfo) -> str:
    """A standalone training script reproducing the checkpoint's run (ExportError when it cannot)."""
    meta = info.meta
    config = recipe_of(meta)
    model, _ = load(info.name)
    try:
        net = net_code(model, meta["arch"], meta.get("model_config") or {})
    except ExportError as exc:
        raise ExportError(f"checkpoint {info.name!r} cannot be written as a script: {exc}") from None
    c = config
    uses_momentum = c.optimizer in ("sgd", "rmsprop")
    scheduler = _scheduler_code(c)
    augmenting = c.rotation > 0 or c.shift > 0
    acc = meta.get("test_accuracy")
    acc_text = f"{acc:.2%}" if acc is not None else "no recorded"
    file_name = f"{info.name}.py"

    recipe = [
        f"SEED = {c.seed}  # fixes the initial weights, the data order, dropout and augmentation",
        f"EPOCHS = {c.epochs}",
        f"BATCH_SIZE = {c.batch_size}",
        f"LR = {c.lr!r}  # {'peak ' if scheduler else ''}learning rate ({c.optimizer})",
    ]
    if uses_momentum:
        recipe.append(f"MOMENTUM = {c.momentum!r}")
    if c.optimizer == "sgd":
        recipe.append(f"NESTEROV = {c.nesterov}")
    recipe.append(f"WEIGHT_DECAY = {c.weight_decay!r}")
    if c.schedule == "step":
        recipe += [f"STEP_SIZE = {c.step_size}  # epochs between decays", f"GAMMA = {c.gamma!r}  # decay factor"]
    recipe.append(f"LABEL_SMOOTHING = {c.label_smoothing!r}")
    if c.grad_clip > 0:
        recipe.append(f"GRAD_CLIP = {c.grad_clip!r}  # max gradient norm")
    if augmenting:
        recipe += [
            f"ROTATION = {c.rotation!r}  # augmentation: max rotation in degrees",
            f"SHIFT = {c.shift!r}  # augmentation: max shift in pixels",
        ]
    if c.val_size:
        recipe.append(f"VAL_SIZE = {c.val_size}  # training images held out for validation")
    if c.train_subset:
        recipe.append(f"TRAIN_SUBSET = {c.train_subset}  # class-balanced training subset")
    recipe.append(f"MAX_BATCHES = {c.max_batches}  # stop after this many batches (None = all epochs)")
    if c.target_accuracy:
        recipe.append(f"TARGET_ACCURACY = {c.target_accuracy!r}  # stop once test accuracy reaches this")
    if c.max_seconds:
        recipe.append(f"# The original run was capped at {c.max_seconds:g} s of training; this script is not.")

    body = [
        "def main() -> None:",
        "    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])",
        '    parser.add_argument("--data", type=Path, default=Path("data/mnist"),',
        '                        help="folder of the four MNIST IDX files, .gz or raw (default: data/mnist)")',
        '    parser.add_argument("--epochs", type=int, default=EPOCHS)',
        '    parser.add_argument("--max-batches", type=int, default=MAX_BATCHES, help="stop after this many batches")',
        '    parser.add_argument("--seed", type=int, default=SEED)',
        '    parser.add_argument("--log-every", type=int, default=50, help="batches between loss lines")',
        '    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")',
        '    parser.add_argument("--save", type=Path, help="save the trained weights to this .npz file (NumPy arrays)")',
        "    args = parser.parse_args()",
        "    device = torch.device(args.device)",
        "",
        '    train_images, train_labels = load_split(args.data, "train")',
        '    test_images, test_labels = load_split(args.data, "t10k")',
        "    mean, std = pixel_mean_std(train_images)",
        "    x_train, y_train = standardize(train_images, mean, std), train_labels",
        "    x_test, y_test = standardize(test_images, mean, std).to(device), test_labels.to(device)",
    ]
    if c.val_size:
        body += [
            "    held_out = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(0))",
            "    val_idx, train_idx = held_out[:VAL_SIZE].sort().values, held_out[VAL_SIZE:].sort().values",
            "    x_val, y_val = x_train[val_idx].to(device), y_train[val_idx].to(device)",
            "    x_train, y_train = x_train[train_idx], y_train[train_idx]",
        ]
    if c.train_subset:
        body += [
            "    subset = balanced_order(y_train)[:TRAIN_SUBSET]",
            "    x_train, y_train = x_train[subset], y_train[subset]",
        ]
    body += [
        "    x_train, y_train = x_train.to(device), y_train.to(device)",
        "",
        "    torch.manual_seed(args.seed)  # the initial weights",
        "    model = Net().to(device)",
        "    order_gen = torch.Generator().manual_seed(args.seed)  # the data order, its own stream",
    ]
    if augmenting:
        body += [
            "    augment_gen = torch.Generator().manual_seed(args.seed + 2)  # augmentation draws, their own stream",
            "    background = (0.0 - mean) / std  # a black pixel, standardized: what augmentation pads with",
        ]
    body += [
        "    torch.manual_seed(args.seed + 1)  # dropout",
        "    steps_per_epoch = math.ceil(len(y_train) / BATCH_SIZE)",
        "    total_steps = args.epochs * steps_per_epoch",
        f"    optimizer = {_optimizer_code(c)}",
    ]
    if scheduler:
        body.append(f"    scheduler = {scheduler}  # stepped after every batch")
    body += [
        "",
        "    step, start, log_loss, log_count = 0, time.perf_counter(), 0.0, 0",
        "    for epoch in range(1, args.epochs + 1):",
        "        order = torch.randperm(len(y_train), generator=order_gen)",
        "        seen, loss_sum, correct = 0, 0.0, 0",
        "        for first in range(0, len(y_train), BATCH_SIZE):",
        "            idx = order[first : first + BATCH_SIZE].to(device)",
        "            x, y = x_train.index_select(0, idx), y_train.index_select(0, idx)",
    ]
    if augmenting:
        body.append("            x = augment(x, augment_gen, background)")
    body += [
        "            logits = model(x)",
        "            loss = F.cross_entropy(logits, y, label_smoothing=LABEL_SMOOTHING)",
        "            optimizer.zero_grad(set_to_none=True)",
        "            loss.backward()",
    ]
    if c.grad_clip > 0:
        body.append("            nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)")
    body.append("            optimizer.step()")
    if scheduler:
        body += [
            "            if step + 1 < total_steps:  # the schedule ends on the last step",
            "                scheduler.step()",
        ]
    body += [
        "            step += 1",
        "            seen += len(y)",
        "            loss_sum += float(loss) * len(y)",
        "            correct += int((logits.argmax(1) == y).sum())",
        "            log_loss, log_count = log_loss + float(loss), log_count + 1",
        "            if step % args.log_every == 0:",
        '                print(f"epoch {epoch} step {step}: loss {log_loss / log_count:.4f} (last {log_count} batches)",',
        "                      flush=True)",
        "                log_loss, log_count = 0.0, 0",
        "            if args.max_batches and step >= args.max_batches:",
        "                break",
        "        test_loss, test_accuracy = evaluate(model, x_test, y_test)",
        '        line = (f"epoch {epoch}: train loss {loss_sum / seen:.4f} acc {correct / seen:.2%} | "',
        '                f"test loss {test_loss:.4f} acc {test_accuracy:.2%}")',
    ]
    if c.val_size:
        body += [
            "        val_loss, val_accuracy = evaluate(model, x_val, y_val)",
            '        line += f" | val loss {val_loss:.4f} acc {val_accuracy:.2%}"',
        ]
    body += [
        '        print(line + f" | {time.perf_counter() - start:.1f}s", flush=True)',
        "        if args.max_batches and step >= args.max_batches:",
        "            break",
    ]
    if c.target_accuracy:
        body += ["        if test_accuracy >= TARGET_ACCURACY:", "            break"]
    body += [
        '    print(f"test accuracy: {test_accuracy:.4f}")',
        "    if args.save:",
        "        np.savez(args.save, **{k: v.detach().cpu().numpy() for k, v in model.state_dict().items()})",
        '        print(f"saved the weights to {args.save}")',
        "",
        "",
        'if __name__ == "__main__":',
        "    main()",
    ]
    header = f'''#!/usr/bin/env python3
"""{info.name}: the {meta["arch"]} net on MNIST, as one standalone PyTorch script (exported from MNIST Lab).

The architecture, the data loading, the exact recipe of the run, its seed and a test loop; it needs
only PyTorch and NumPy. The original run reached {acc_text} test accuracy after {meta.get("epochs_done", "?")} epoch(s).

    python {file_name} --data data/mnist     # the four MNIST IDX files (.gz or raw)
    python {file_name} --max-batches 100     # a quick check

The same command in MNIST Lab: {meta.get("command", "")}
"""

import argparse
import gzip
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# The recipe of run "{info.name}" (its training config).
'''
    parts = [header + "\n".join(recipe) + "\n\n\n" + net + "\n" + _DATA]
    if augmenting:
        parts.append(_AUGMENT)
    if c.train_subset:
        parts.append(_BALANCED)
    parts.append(_EVALUATE)
    parts.append("\n\n" + "\n".join(body) + "\n")
    return "".join(parts)


# ---------------------------------------------------------------- ONNX


def onnx_bytes(model: nn.Module) -> bytes:
    """The model as ONNX (torch.onnx's TorchScript exporter), batch size left free."""
    model = model.eval().cpu()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the legacy exporter announces its deprecation
                torch.onnx.export(
                    model,
                    (torch.zeros(1, 1, 28, 28),),
                    str(path),
                    dynamo=False,
                    input_names=["image"],
                    output_names=["logits"],
                    opset_version=ONNX_OPSET,
                    dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                )
        except Exception as exc:  # torch.onnx raises many kinds for an unsupported layer
            raise ExportError(
                f"this model cannot be exported to ONNX: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            ) from None
        return path.read_bytes()


def check_onnx(data: bytes, model: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> dict:
    """Run the ONNX model in onnxruntime next to PyTorch: argmax agreement and the largest logit difference.

    images: standardized (N, 1, 28, 28) floats, as the test split holds them.
    """
    import onnxruntime

    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    model = model.eval().cpu()
    agree, max_diff = 0, 0.0
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].cpu().float().contiguous()
            ours = model(x).numpy()
            theirs = session.run(["logits"], {"image": x.numpy()})[0]
            agree += int((ours.argmax(1) == theirs.argmax(1)).sum())
            max_diff = max(max_diff, float(np.abs(ours - theirs).max()))
    return {"agree": agree, "total": len(images), "max_abs_diff": max_diff}


# ---------------------------------------------------------------- the files


def curves_csv(meta: dict) -> str:
    """The run's per-epoch curves (train / test, and validation when there was one) as CSV."""
    history = meta.get("history") or []
    columns = list(dict.fromkeys(key for row in history for key in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, columns or ["epoch"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return out.getvalue()


def run_file_makers(info: CheckpointInfo) -> dict[str, Callable[[], bytes]]:
    """File name -> a function that makes its bytes: the weights (safetensors), the run's JSON, its curves
    (CSV). Functions, so a page can offer the downloads without reading megabytes of weights on every rerun."""
    return {
        f"{info.name}.safetensors": info.weights_path.read_bytes,
        f"{info.name}.json": lambda: json.dumps(info.meta, indent=1).encode(),
        f"{info.name}-curves.csv": lambda: curves_csv(info.meta).encode(),
    }


def run_files(info: CheckpointInfo) -> dict[str, bytes]:
    """File name -> bytes: the weights (safetensors), the run's JSON and its curves (CSV)."""
    try:
        return {file_name: make() for file_name, make in run_file_makers(info).items()}
    except OSError as exc:
        raise ExportError(f"cannot read the files of {info.name!r}: {exc.strerror or exc}") from None


# ---------------------------------------------------------------- to disk


def _target(out: str | Path, default_name: str, is_folder: bool, force: bool) -> Path:
    """Where to write, after refusing a path that climbs out ('..'), a missing or read-only folder, or a file
    that exists (unless force)."""
    text = str(out)
    if not text.strip() or "\0" in text:
        raise ExportError("the output path is empty; give a file or folder to write")
    path = Path(text).expanduser()
    if ".." in path.parts:
        raise ExportError(f"output path {text!r} contains '..'; give a path without it")
    if not is_folder and path.is_dir():
        path = path / default_name
    folder = path if is_folder else path.parent
    parent = folder.parent if is_folder else folder
    if not parent.is_dir():
        raise ExportError(f"cannot write to {text!r}: the folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK) or (folder.exists() and not os.access(folder, os.W_OK)):
        raise ExportError(
            f"cannot write to {text!r}: no permission to write in {str(folder if folder.exists() else parent)!r}"
        )
    if is_folder and folder.exists() and not folder.is_dir():
        raise ExportError(f"{text!r} is a file; the safetensors export writes a folder of three files")
    if not is_folder and path.exists() and not force:
        raise ExportError(f"{str(path)!r} already exists; choose another path or pass --force to replace it")
    return path


def export(
    name: str, fmt: str, out: str | Path, force: bool = False, test_images: torch.Tensor | None = None
) -> tuple[list[Path], str]:
    """Write checkpoint NAME in format fmt to out; returns (written paths, a one-line summary)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    try:
        info = find(name)
    except CheckpointError as exc:
        raise ExportError(str(exc)) from None
    path = _target(out, f"{info.name}{SUFFIX.get(fmt, '')}", fmt == "safetensors", force)
    if fmt == "script":
        files = {path: script_text(info).encode()}
        summary = f"wrote {path}: a standalone training script (torch and numpy only); run it with python {path}"
    elif fmt == "onnx":
        model, _ = load(info.name)
        data = onnx_bytes(model)
        files = {path: data}
        summary = f"wrote {path} (ONNX opset {ONNX_OPSET})"
        if test_images is not None:
            check = check_onnx(data, model, test_images)
            summary += (
                f"; onnxruntime and PyTorch agree on {check['agree']:,} of {check['total']:,} test digits "
                f"(largest logit difference {check['max_abs_diff']:.1e})"
            )
    else:
        files = {path / file_name: content for file_name, content in run_files(info).items()}
        existing = [p for p in files if p.exists()]
        if existing and not force:
            raise ExportError(f"{str(existing[0])!r} already exists; choose another folder or pass --force")
        summary = f"wrote {', '.join(p.name for p in files)} to {path}"
    try:
        for target, content in files.items():
            write_bytes_atomic(target, content)  # --force never leaves half a file
    except OSError as exc:
        raise ExportError(f"cannot write to {str(out)!r}: {exc.strerror or exc}") from None
    return list(files), summary
