"""Training images/s of tiny_gap: the classic tutorial pipeline vs this engine, side by side.

(a) torchvision datasets.MNIST, per-sample ToTensor + Normalize, DataLoader(batch 128, shuffle)
(b) mnist_core: the whole set as one tensor, batches sliced from it (same model, optimizer, batch)

    python benchmarks/throughput.py --batches 150 --repeats 3
    python benchmarks/throughput.py --step-variants     # only the step under other numeric paths

It also prints the ratio both pipelines would show with their models at the floor: the tutorial's data cost per
batch against the model's arithmetic run at the speed of a large matrix multiply (this machine's practical peak),
with BatchNorm, dropout, pooling and the optimizer free; and each pipeline's own step. The tutorial's model runs
torch's layers one by one, so once the engine's step nears the floor the ratio can pass that bound.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from mnist_core import fused  # noqa: E402
from mnist_core.data import BUNDLED_DIR, DeviceData, load_mnist  # noqa: E402
from mnist_core.models import BitMaskDropout, describe  # noqa: E402
from mnist_core.reporter import Reporter  # noqa: E402
from mnist_core.train import TrainConfig, fit, make_optimizer, seeded_model, training_memory_format  # noqa: E402

TARGET_RATIO = 5.0
TARGET_STEP_OVER_FLOOR = 2.5

# Each variant keeps the model, the batch and the optimizer; only the numeric path changes ("before" is the
# engine's path before its cheaper dropout masks, channels-last memory, fused kernels and fused SGD; "layer by
# layer" only before the fused kernels; "torch's convolutions" only before the kernels' own convolutions), except
# the last, which drops dropout to show how much of the step is left without its random masks. torch.compile gets the
# layers one by one: inductor fuses them itself.
STEP_VARIANTS: dict[str, dict] = {
    "eager float32 (the engine's path)": {},
    "torch's convolutions, fused ReLU/BatchNorm/dropout": {"torch_convs": True},
    "layer by layer: torch's layers, no fused kernels": {"layer_by_layer": True},
    "before: torch's dropout, NCHW memory, layer by layer": {"before": True},
    "bfloat16 autocast (layer by layer)": {"bf16": True},
    "torch.compile (inductor)": {"compiled": True},
    "torch.compile + bfloat16 autocast": {"compiled": True, "bf16": True},
    "eager float32 without dropout (not the same model)": {"model": {"dropout": 0.0}},
}


def tutorial_loader(root: Path, batch_size: int):
    from torchvision import datasets, transforms

    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for gz in BUNDLED_DIR.glob("*.gz"):  # torchvision wants the unpacked files; no download needed
        with gzip.open(gz) as src, open(raw / gz.stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    dataset = datasets.MNIST(str(root), train=True, download=False, transform=transform)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True)


CONVOLUTIONS_ONLY = {
    "the engine's convolutions alone, fwd + bwd": False,
    "torch's (oneDNN) convolutions alone, fwd + bwd": True,
}


def with_torch_dropout(net: nn.Module) -> nn.Module:
    """The model as a tutorial writes it: nn.Dropout where the engine draws its cheaper masks."""
    for name, child in net.named_children():
        setattr(net, name, nn.Dropout(child.p) if isinstance(child, BitMaskDropout) else with_torch_dropout(child))
    return net


def unfused(net: nn.Sequential) -> nn.Sequential:
    """The same layers in a plain nn.Sequential: no fused kernels (models.FusingSequential)."""
    return nn.Sequential(*net)


def with_torch_convolutions(net: nn.Module) -> nn.Module:
    """The engine's model with torch's convolutions: a hook on a layer keeps it off the fused kernels, as
    Inspect's probes do."""
    for conv in net.modules():
        if isinstance(conv, nn.Conv2d):
            conv.register_forward_pre_hook(lambda module, inputs: None)
    return net


def tutorial_rate(loader, config: TrainConfig, batches: int) -> float:
    model = unfused(with_torch_dropout(seeded_model(config, torch.device("cpu")))).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    images, start = 0, time.perf_counter()
    for step, (x, y) in enumerate(loader):
        if step == batches:
            break
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        images += len(y)
    return images / (time.perf_counter() - start)


def loader_seconds_per_batch(loader, batches: int) -> float:
    start = time.perf_counter()
    for step, _ in enumerate(loader):
        if step == batches:
            break
    return (time.perf_counter() - start) / batches


def matmul_flops_per_s(n: int = 2048, repeats: int = 3, blocks: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """The fastest of a few short blocks: the machine's peak, which a moment of load elsewhere would hide in one
    long block (the floor is then the lowest, the hardest to come near)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = max(best, 2 * n**3 * repeats / (time.perf_counter() - start))
    return best


def training_flops_per_batch(config: TrainConfig) -> float:
    """Forward multiply-adds x 3 (forward, input gradients, weight gradients), 2 FLOPs each."""
    card = describe(seeded_model(config, torch.device("cpu")))
    return 2 * 3 * card.macs * config.batch_size


def engine_rate(data: DeviceData, config: TrainConfig) -> float:
    last = {}
    fit(config, data, Reporter(lambda kind, d: kind == "batch" and last.update(d)))
    return last["step"] * config.batch_size / last["elapsed"]  # the evaluation at the end is not training


def variant_step(
    config: TrainConfig,
    x: torch.Tensor,
    y: torch.Tensor,
    bf16=False,
    compiled=False,
    model=None,
    before=False,
    layer_by_layer=False,
    torch_convs=False,
):
    if model is not None:
        config = replace(config, model=model)
    net = seeded_model(config, torch.device("cpu")).train()
    if before or compiled or layer_by_layer:
        net = unfused(net)
    if torch_convs:
        net = with_torch_convolutions(net)
    if before:
        net, fmt = with_torch_dropout(net), torch.contiguous_format
    else:
        fmt = training_memory_format(config, torch.device("cpu"))
    net = net.to(memory_format=fmt)
    x = x.contiguous(memory_format=fmt)
    optimizer = (
        torch.optim.SGD(net.parameters(), lr=config.lr, momentum=config.momentum)  # before the fused optimizer
        if before
        else make_optimizer(config, net.parameters())
    )
    forward = torch.compile(net) if compiled else net

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = forward(x)
        F.cross_entropy(logits.float(), y).backward()
        optimizer.step()

    return step


def convolutions_only_step(config: TrainConfig, x: torch.Tensor, torch_convs: bool):
    """The engine's step cut down to its convolutions, forward and backward, at the shapes and memory layout it
    trains with (on the fused kernels' convolutions where the engine uses them, unless torch_convs): what no
    amount of work on the other layers can take below."""
    fmt = training_memory_format(config, torch.device("cpu"))
    net = seeded_model(config, torch.device("cpu")).train().to(memory_format=fmt)
    seen = []
    hooks = [
        m.register_forward_hook(lambda conv, inputs, out: seen.append((conv, inputs[0], out)))
        for m in net.modules()
        if isinstance(m, nn.Conv2d)
    ]
    with torch.no_grad():
        net(x.contiguous(memory_format=fmt))
    for hook in hooks:
        hook.remove()
    # The image needs no gradient, as in training; every later conv passes one back to its input.
    work = [
        (conv, inp.detach().requires_grad_(i > 0), torch.randn_like(out)) for i, (conv, inp, out) in enumerate(seen)
    ]

    def run(conv, inp):
        if not torch_convs and fused.conv_fusable(conv, inp) and fused.available():
            return fused.conv3x3(inp, conv)[0]
        return conv(inp)

    def step():
        for conv, inp, grad in work:
            run(conv, inp).backward(grad)

    return step


def compare_step_variants(config: TrainConfig, rounds: int, steps: int) -> None:
    mnist = load_mnist()
    x = ((mnist.train_images[: config.batch_size].float() / 255 - mnist.mean) / mnist.std).unsqueeze(1)
    y = mnist.train_labels[: config.batch_size].long()
    runs, warm_up = {}, {}
    for name, options in STEP_VARIANTS.items():
        start = time.perf_counter()
        runs[name] = variant_step(config, x, y, **options)
        for _ in range(3):
            runs[name]()
        warm_up[name] = time.perf_counter() - start
        print(f"built {name}: first 3 steps {warm_up[name]:.1f} s", flush=True)
    for name, torch_convs in CONVOLUTIONS_ONLY.items():
        runs[name], warm_up[name] = convolutions_only_step(config, x, torch_convs), 0.0
    timings = {name: [] for name in runs}
    peaks = {torch.float32: [], torch.bfloat16: []}
    for _ in range(rounds):  # interleaved, so machine noise hits every variant, and the peak, alike
        for name, step in runs.items():
            start = time.perf_counter()
            for _ in range(steps):
                step()
            timings[name].append((time.perf_counter() - start) / steps * 1e3)
        for dtype, seen in peaks.items():
            seen.append(matmul_flops_per_s(blocks=1, dtype=dtype))
    flops = training_flops_per_batch(config)
    floor_fp32, floor_bf16 = (flops / max(peaks[dtype]) * 1e3 for dtype in (torch.float32, torch.bfloat16))
    target = TARGET_STEP_OVER_FLOOR * floor_fp32
    print(
        f"\ntiny_gap training step, batch {config.batch_size}, median of {rounds} x {steps} steps, "
        f"{torch.get_num_threads()} threads; arithmetic floor {floor_fp32:.1f} ms at the float32 matrix-multiply "
        f"speed ({floor_bf16:.1f} ms at the bfloat16 one); target <= {target:.1f} ms ({TARGET_STEP_OVER_FLOOR}x the "
        "float32 floor)"
    )
    for name, ms in timings.items():
        median = statistics.median(ms)
        print(
            f"  {name:52s} {median:6.1f} ms  ({median / floor_fp32:.1f}x the floor"
            + (f"; first 3 steps {warm_up[name]:.1f} s)" if name not in CONVOLUTIONS_ONLY else ")")
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--step-variants", action="store_true", help="time only the step in float32, bfloat16 and torch.compile"
    )
    args = parser.parse_args()
    if args.batches < 1 or args.repeats < 1:
        parser.error("--batches and --repeats must be at least 1")

    config = TrainConfig(
        arch="tiny_gap", optimizer="sgd", lr=0.01, momentum=0.9, batch_size=128, max_batches=args.batches, device="cpu"
    )
    if args.step_variants:
        compare_step_variants(config, rounds=max(args.repeats, 5), steps=20)
        return 0
    with tempfile.TemporaryDirectory() as root:
        loader = tutorial_loader(Path(root), config.batch_size)
        data = DeviceData(load_mnist(), device="cpu")
        tutorial, engine = [], []
        for repeat in range(args.repeats):  # interleaved, so machine noise hits both alike
            tutorial.append(tutorial_rate(loader, config, args.batches))
            engine.append(engine_rate(data, config))
            print(
                f"repeat {repeat + 1}: tutorial {tutorial[-1]:,.0f} img/s, engine {engine[-1]:,.0f} img/s", flush=True
            )
        loading = statistics.median(loader_seconds_per_batch(loader, args.batches) for _ in range(args.repeats))
    peak = matmul_flops_per_s()
    arithmetic = training_flops_per_batch(config) / peak
    a, b = statistics.median(tutorial), statistics.median(engine)
    print(
        f"\ntiny_gap training throughput, median of {args.repeats} x {args.batches} batches of 128, "
        f"{torch.get_num_threads()} threads:"
    )
    print(f"  (a) torchvision Dataset + per-sample transforms + DataLoader: {a:8,.0f} img/s")
    print(f"  (b) mnist_core tensor-resident batches:                        {b:8,.0f} img/s")
    print(f"  ratio {b / a:.2f}x   (target >= {TARGET_RATIO:.0f}x)")
    print(
        f"\nthe bound with both models at the floor: the tutorial's data pipeline alone costs {loading * 1e3:.1f} ms a "
        f"batch; the model's arithmetic ({training_flops_per_batch(config) / 1e9:.2f} GFLOP a batch) at this "
        f"machine's matrix-multiply speed ({peak / 1e9:.0f} GFLOP/s) takes {arithmetic * 1e3:.1f} ms, so with "
        f"both steps at that floor the ratio would be {(loading + arithmetic) / arithmetic:.2f}x. The steps "
        f"themselves: the tutorial's (torch's layers one by one) {config.batch_size / a * 1e3 - loading * 1e3:.1f} ms, "
        f"the engine's {config.batch_size / b * 1e3:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
