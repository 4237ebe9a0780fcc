"""tiny_gap's ReLU -> BatchNorm2d -> dropout fused, and its 3x3 convolutions, for training on a CPU
(mnist_core/fused.py): the same arithmetic as the layers one by one, only where nothing watches them, on torch's
own threads, compiled once per machine."""

import copy
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mnist_core import fused
from mnist_core.models import BitMaskDropout, FusingSequential, build_model

ROOT = Path(__file__).resolve().parents[1]


def _tiny_gap_pair(dropout: float, seed: int = 0, **model):
    """tiny_gap as built (fusing) and the same layers in a plain nn.Sequential, in float64 as the reference."""
    torch.manual_seed(seed)
    net = build_model("tiny_gap", {"dropout": dropout, **model}).train().to(memory_format=torch.channels_last)
    reference = torch.nn.Sequential(*copy.deepcopy(list(net))).double()
    return net, reference


def _gradient_errors(net, x: torch.Tensor, draws_seed: int) -> dict[str, tuple[float, float]]:
    """Per parameter, how far the fused run's gradient and torch's float32 layers' gradient are from float64,
    relative to the largest float64 gradient. The same masks in all three (the same generator state)."""
    layers = torch.nn.Sequential(*copy.deepcopy(list(net)))
    reference = torch.nn.Sequential(*copy.deepcopy(list(net))).double()
    for model, inputs in ((net, x), (layers, x), (reference, x.double())):
        torch.manual_seed(draws_seed)
        model(inputs).square().sum().backward()
    errors = {}
    for (name, p), q, r in zip(net.named_parameters(), layers.parameters(), reference.parameters()):
        scale = r.grad.abs().max()
        errors[name] = (
            float((p.grad.double() - r.grad).abs().max() / scale),
            float((q.grad - r.grad).abs().max() / scale),
        )
    return errors


@pytest.mark.parametrize("dropout, seed", [(0.0, 0), (0.2, 0), (0.2, 1), (0.2, 2)])
def test_fused_relu_batchnorm_dropout_trains_as_the_layers_do(dropout, seed, monkeypatch):
    calls = []
    real = fused.relu_batchnorm_dropout
    monkeypatch.setattr(fused, "relu_batchnorm_dropout", lambda *a: calls.append(1) or real(*a))
    net, reference = _tiny_gap_pair(dropout, seed)
    x = torch.randn(24, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    x = x.contiguous(memory_format=torch.channels_last)
    torch.manual_seed(7)
    out = net(x)
    torch.manual_seed(7)  # the same draws: the fused layers drop the values the separate layers drop
    expected = reference(x.double())
    assert len(calls) == 6  # every block of tiny_gap took the fused path
    assert torch.allclose(out.double(), expected, rtol=1e-4, atol=1e-5)
    for (name, b), c in zip(net.named_buffers(), reference.buffers()):
        assert torch.allclose(b.double(), c.double(), rtol=1e-5, atol=1e-7), name  # running statistics
    # Gradients through six BatchNorms of 24 images can be ill-conditioned in float32 whatever computes them
    # (torch's own layers were up to 12% off float64 on some seeds, from the convolutions): the fused layers
    # must be no further off than torch's, and close where torch is (1e-6 against its 2e-2 on a typical seed).
    net.zero_grad()
    for name, (fused_error, torch_error) in _gradient_errors(net, x, 7).items():
        assert fused_error <= 1.1 * torch_error + 1e-4, (name, fused_error, torch_error)


@pytest.mark.parametrize("channels", [(12, 20, 24, 8, 16, 32, 8), (6, 10, 14, 12, 18, 22, 30)])
def test_every_width_the_kernels_take_trains_as_the_layers_do(channels):
    """Widths whose period lcm(C, 16) is 1 to 8 vectors, and a batch whose values are no whole number of periods:
    the output, masks and running statistics of the layers in float64, and gradients as close as torch's."""
    net, reference = _tiny_gap_pair(0.1, channels=channels)
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    trained = copy.deepcopy(net)  # a copy: the gradient check below starts from the same running statistics
    torch.manual_seed(5)
    out = trained(x.contiguous(memory_format=torch.channels_last))
    torch.manual_seed(5)
    assert torch.allclose(out.double(), reference(x.double()), rtol=1e-4, atol=1e-5)
    for (name, b), c in zip(trained.named_buffers(), reference.buffers()):
        assert torch.allclose(b.double(), c.double(), rtol=1e-5, atol=1e-7), name
    for name, (fused_error, torch_error) in _gradient_errors(
        net, x.contiguous(memory_format=torch.channels_last), 3
    ).items():
        assert fused_error <= 1.1 * torch_error + 1e-4, (name, fused_error, torch_error)


def test_the_fused_block_drops_exactly_the_values_the_dropout_layer_drops_at_every_width():
    """The keep decisions are transposed to the channels-last stream by tiles of 16 pixels where the width is a
    multiple of 4, one value at a time otherwise: every width the kernels take, with and without a partial tile."""
    widths = [c for c in range(1, 65) if fused.fusable(torch.nn.ReLU(), torch.nn.BatchNorm2d(c), 0.3, _cl(2, c, 3, 3))]
    assert {4 * g for g in range(1, 9)} <= set(widths)
    for channels in widths:
        for height, width in ((3, 3), (4, 8), (5, 7)):  # 9, 32 and 35 pixels: no whole tile, two, two and a part
            z = _cl(2, channels, height, width)
            bn = torch.nn.BatchNorm2d(channels)
            torch.manual_seed(channels)
            fused_out = fused.relu_batchnorm_dropout(z, copy.deepcopy(bn), 0.3)
            torch.manual_seed(channels)
            layers_out = BitMaskDropout(0.3)(bn(torch.relu(z)))
            assert torch.equal(fused_out == 0, layers_out == 0), (channels, height, width)
            assert torch.allclose(fused_out, layers_out, rtol=1e-4, atol=1e-5), (channels, height, width)


def _cl(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape))).contiguous(
        memory_format=torch.channels_last
    )


def test_a_hooked_layer_trains_layer_by_layer_and_its_hook_sees_it():
    net, reference = _tiny_gap_pair(0.1)
    seen = []
    net[2].register_forward_hook(lambda module, inputs, out: seen.append(out.shape))  # the first BatchNorm
    x = torch.randn(8, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    torch.manual_seed(1)
    out = net(x)
    torch.manual_seed(1)
    assert seen == [(8, 8, 26, 26)]
    assert torch.allclose(out.double(), reference(x.double()), rtol=1e-4, atol=1e-5)


def test_a_global_module_hook_sees_every_layer_of_a_training_step():
    """A hook registered for every module (the call, not a layer, decides) sends the whole step layer by layer."""
    from torch.nn.modules.module import register_module_forward_hook

    net, _ = _tiny_gap_pair(0.1)
    x = torch.randn(4, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    seen = []
    handle = register_module_forward_hook(lambda module, inputs, out: seen.append(type(module).__name__))
    try:
        net(x)
    finally:
        handle.remove()
    assert seen.count("Conv2d") == 7 and seen.count("BatchNorm2d") == 6 and seen.count("MaxPool2d") == 1
    assert fused.call_allows()  # and once it is gone the kernels take the step again


def test_the_fused_layers_leave_evaluation_and_other_layouts_to_the_layers():
    net, _ = _tiny_gap_pair(0.1)
    x = torch.randn(4, 1, 28, 28)
    nchw = torch.randn(4, 8, 26, 26)
    assert not fused.fusable(net[1], net[2], 0.1, nchw)  # NCHW memory: channels would not be the rows' columns
    assert fused.fusable(net[1], net[2], 0.1, nchw.contiguous(memory_format=torch.channels_last))
    assert not fused.fusable(net[1], net[2], 0.1, nchw.bfloat16().contiguous(memory_format=torch.channels_last))
    odd = torch.randn(4, 7, 26, 26).contiguous(memory_format=torch.channels_last)  # a period of 7 vectors: fine
    assert fused.fusable(net[1], torch.nn.BatchNorm2d(7), 0.1, odd)
    wide = torch.randn(2, 9, 4, 4).contiguous(memory_format=torch.channels_last)  # 9 vectors: layer by layer
    assert not fused.fusable(net[1], torch.nn.BatchNorm2d(9), 0.1, wide)
    cl = nchw.contiguous(memory_format=torch.channels_last)
    assert not fused.fusable(net[1], net[2], 1 - 1e-6, cl)  # its threshold would not fit an int16 draw
    net.eval()
    assert not fused.fusable(net[1], net[2], 0.1, cl)
    assert torch.equal(net(x), torch.nn.Sequential(*net)(x))  # evaluation is the layers' own


def test_two_threads_train_fused_at_once_each_run_its_own():
    """In-process jobs are threads: the kernels hold no state between calls, so two runs at once are two runs."""
    nets = {}
    for seed in (1, 2):
        torch.manual_seed(seed)
        nets[seed] = build_model("tiny_gap", {"dropout": 0.0})  # torch's one generator would interleave draws
    x = torch.randn(64, 1, 28, 28).contiguous(memory_format=torch.channels_last)

    def train(seed, out):
        net = copy.deepcopy(nets[seed]).train().to(memory_format=torch.channels_last)
        for _ in range(5):
            net(x).square().sum().backward()
        out[seed] = float(net[0].weight.grad.abs().sum())

    alone, together = {}, {}
    for seed in (1, 2):
        train(seed, alone)
    threads = [threading.Thread(target=train, args=(seed, together)) for seed in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == alone  # to the bit


CHILD = r"""
import json, os, torch
from mnist_core import fused
from mnist_core.models import build_model
torch.manual_seed(0)
net = build_model("tiny_gap", {}).train().to(memory_format=torch.channels_last)
x = torch.randn(16, 1, 28, 28).contiguous(memory_format=torch.channels_last)
net(x).sum().backward()
maps = [line.split()[-1] for line in open(f"/proc/{os.getpid()}/maps") if "libgomp" in line or "libiomp" in line]
print(json.dumps({"module": str(fused.library()), "openmp": sorted(set(maps)), "threads": torch.get_num_threads(),
                  "grad": float(net[0].weight.grad.abs().sum())}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_second_process_loads_the_compiled_kernels_and_runs_them_on_torchs_own_threads():
    built = fused.library()
    modified = built.stat().st_mtime_ns
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    child = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(child["module"]) == built and built.stat().st_mtime_ns == modified  # loaded, not compiled again
    # One OpenMP runtime, torch's own (the kernels link none of their own): a second one's idle threads would
    # spin beside torch's, as numba's did.
    assert len(child["openmp"]) == 1, child["openmp"]
    assert child["threads"] == 2 and child["grad"] > 0


@pytest.mark.parametrize("count", [1, 5, 311, 312, 313, 10_000, 173_056])
def test_the_kernels_draw_torchs_random_words_to_the_bit_and_leave_its_generator_where_torch_does(count):
    """BitMaskDropout's masks come from torch.empty(n, dtype=int64).random_(-2**63, None); the fused path draws the
    same words faster. Counts around a Mersenne Twister block (624 draws, two per word) and state part used."""
    for used in (0, 1, 7):
        torch.manual_seed(count + used)
        torch.rand(used)  # the generator somewhere inside its current block
        expected = torch.empty(count, dtype=torch.int64).random_(-(2**63), None)
        after = torch.rand(5)
        torch.manual_seed(count + used)
        torch.rand(used)
        assert torch.equal(fused.kernels().random_words(count), expected)
        assert torch.equal(torch.rand(5), after)


def test_a_wrong_call_to_the_kernels_raises_instead_of_reading_past_memory():
    ops = fused.kernels()
    state = torch.get_rng_state()
    own = torch.Generator().manual_seed(0)  # the inputs' values; torch's generator must not move
    z = torch.randn(2, 8, 5, 5, generator=own).contiguous(memory_format=torch.channels_last)
    bn = torch.nn.BatchNorm2d(8)
    stats = (bn.running_mean, bn.running_var, bn.num_batches_tracked, 0.1, 1e-5, 0.1)
    with pytest.raises(RuntimeError, match="channels-last float32 CPU batch"):
        ops.block_forward(z, bn.weight, bn.bias, *stats, torch.empty(2, 8, 5, 5), None)  # out in NCHW
    with pytest.raises(RuntimeError, match="contiguous CPU tensor of 8"):
        ops.block_forward(z, bn.weight[:4], bn.bias, *stats, torch.empty_like(z), None)
    wide = torch.randn(2, 9, 3, 3, generator=own).contiguous(memory_format=torch.channels_last)  # a period of 9 vectors
    with pytest.raises(RuntimeError, match="lcm"):
        ops.block_forward(wide, bn.weight, bn.bias, *stats, torch.empty_like(wide), None)
    with pytest.raises(RuntimeError, match="channels-last float32 CPU batch"):
        ops.block_backward(
            torch.randn(2, 8, 5, 4, generator=own), z, torch.ones(200, dtype=torch.uint8), *(torch.ones(8),) * 3, 1.0, z
        )
    with pytest.raises(RuntimeError, match="0 <= p < 1"):
        ops.block_forward(z, bn.weight, bn.bias, *stats[:-1], 1 - 1e-6, torch.empty_like(z), None)
    one = torch.randn(1, 8, 1, 1, generator=own).contiguous(memory_format=torch.channels_last)
    with pytest.raises(RuntimeError, match="more than one value per channel"):
        ops.block_forward(one, bn.weight, bn.bias, *stats, torch.empty_like(one), None)
    # Nothing was touched: the running statistics and torch's generator are where they were.
    assert bn.num_batches_tracked == 0
    assert torch.equal(bn.running_mean, torch.zeros(8)) and torch.equal(bn.running_var, torch.ones(8))
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("mean", [1.0, 100.0, 1000.0])
def test_batchnorm_statistics_stay_exact_where_a_channels_mean_dwarfs_its_spread(mean):
    """A channel whose values sit far from zero (1,000 times their spread): E[x^2] - E[x]^2 in float loses the
    variance, and so the running statistics that evaluation uses. The kernels centre before squaring."""
    torch.manual_seed(0)
    z = (torch.randn(16, 16, 12, 12) * 0.1 + mean).contiguous(memory_format=torch.channels_last)
    bn = torch.nn.BatchNorm2d(16).train()
    reference = copy.deepcopy(bn).double()
    out = fused.relu_batchnorm_dropout(z, bn, 0.0)
    expected = reference(torch.relu(z.double()))
    assert (out.double() - expected).abs().max() <= 1e-3 * expected.abs().max()  # 8e-5 measured at 1,000
    assert torch.allclose(bn.running_var.double(), reference.running_var, rtol=1e-4)


NO_COMPILER = r"""
import json, logging, torch
logging.basicConfig(level=logging.WARNING)
from mnist_core import fused
from mnist_core.models import build_model
torch.manual_seed(0)
net = build_model("tiny_gap", {"dropout": 0.1}).train().to(memory_format=torch.channels_last)
layers = torch.nn.Sequential(*net)
x = torch.randn(8, 1, 28, 28).contiguous(memory_format=torch.channels_last)
torch.manual_seed(1)
fallback = net(x).detach()
torch.manual_seed(1)
print(json.dumps({"same": torch.equal(fallback, layers(x).detach()), "broken": fused._broken}))
"""


def test_without_a_compiler_tiny_gap_trains_layer_by_layer_and_the_log_says_why(tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TORCH_EXTENSIONS_DIR": str(tmp_path),  # nothing built here: the kernels must be compiled
        "CXX": str(tmp_path / "no-such-compiler"),
    }
    done = subprocess.run(
        [sys.executable, "-c", NO_COMPILER], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"same": True, "broken": True}
    assert (
        "fused kernels (ReLU/BatchNorm/dropout, 3x3 convolutions) unavailable" in done.stderr
        and "training layer by layer" in done.stderr
    )


def test_a_runs_stage_says_why_its_first_step_waits_for_the_kernels(data, monkeypatch):
    """The first tiny_gap run in a process loads the kernels (a machine's first compiles them, about 20 s) before
    training starts: the Train page shows that stage instead of a silent wait."""
    from mnist_core.reporter import Reporter
    from mnist_core.train import TrainConfig, fit

    monkeypatch.setattr(fused, "_library", None)
    stages = []
    reporter = Reporter(lambda kind, d: kind == "stage" and stages.append(d["stage"]))
    fit(TrainConfig(arch="tiny_gap", max_batches=2, device="cpu", record=False), data, reporter)
    assert stages[:3] == ["preparing", stages[1], "training"] and stages[1].startswith("loading the fused kernels")
    assert fused.loaded()
    stages.clear()
    fit(TrainConfig(arch="tiny_gap", max_batches=2, device="cpu", record=False), data, reporter)
    assert stages[:2] == ["preparing", "training"]  # loaded once per process


# (batch, C_in, C_out, H, W): tiny_gap's six 3x3 convolutions, then every count of output vectors (1 to 4) with and
# without a partial last one, the smallest image, one-pixel rows, odd widths and widths no block size divides
CONV_SHAPES = [
    (4, 1, 8, 28, 28),
    (3, 8, 8, 26, 26),
    (2, 8, 16, 24, 24),
    (2, 12, 20, 11, 11),
    (2, 20, 24, 9, 9),
    (2, 24, 32, 7, 7),
    (1, 1, 1, 3, 3),
    (2, 3, 5, 3, 17),
    (1, 32, 1, 5, 4),
    (1, 7, 31, 4, 30),
    (3, 17, 9, 6, 15),
    (1, 32, 32, 13, 3),
]


def _conv_case(shape, kernel: int = 3):
    """x, a weight and an output gradient: a 3x3 convolution's, or (kernel 1) a 1x1 transition's with its 2x2 pool."""
    n, c_in, c_out, h, w = shape
    own = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(n, c_in, h, w, generator=own).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(c_out, c_in, kernel, kernel, generator=own)
    out_size = (h - 2, w - 2) if kernel == 3 else (h // 2, w // 2)
    grad = torch.randn(n, c_out, *out_size, generator=own).contiguous(memory_format=torch.channels_last)
    return x, weight, grad


def _kernel_convolutions(x, weight, grad):
    ops = fused.kernels()
    return (
        ops.conv3x3_forward(x, weight, None)[0],
        ops.conv3x3_input_grad(grad, weight),
        ops.conv3x3_weight_grad(grad, x),
    )


@pytest.mark.parametrize("shape", CONV_SHAPES)
def test_the_kernels_convolutions_match_float64_forward_and_both_gradients(shape):
    x, weight, grad = _conv_case(shape)
    expected = (F.conv2d(x.double(), weight.double()),) + torch.ops.aten.convolution_backward(
        grad.double(), x.double(), weight.double(), None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [True, True, False]
    )[:2]
    # the weights as a channels-last model holds them (tiny_gap trains with model.to(channels_last))
    got = _kernel_convolutions(x, weight.contiguous(memory_format=torch.channels_last), grad)
    for name, value, reference in zip(("output", "input's gradient", "weights' gradient"), got, expected):
        assert value.dtype == torch.float32 and value.shape == reference.shape, name
        assert (value.double() - reference).abs().max() <= 2e-6 * reference.abs().max(), name
    assert got[0].is_contiguous(memory_format=torch.channels_last)
    assert got[1].is_contiguous(memory_format=torch.channels_last)


def test_the_convolutions_give_the_same_bits_on_any_number_of_threads():
    """The weights' gradients sum fixed row chunks in a fixed order; every other value is one thread's sum."""
    threads = torch.get_num_threads()
    cases = [_conv_case(shape) for shape in CONV_SHAPES[:6]]  # the first: one input channel, its own paths
    x, weight, grad = _conv_case(POOL_SHAPES[0], kernel=1)
    ops = fused.kernels()

    center = torch.randn(32, generator=torch.Generator().manual_seed(2))
    moment_cases = [_conv_case(shape) for shape in (CONV_SHAPES[2], CONV_SHAPES[5])]

    def transition(x, weight, grad):
        out, which = ops.conv1x1_pool_forward(x, weight)
        return (out, which, *ops.conv1x1_pool_backward(grad, x, weight, which, True))

    try:
        results = []
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            results.append(
                [_kernel_convolutions(*case) for case in cases]
                + [transition(x, weight, grad)]
                + [ops.conv3x3_forward(x, weight, center[: weight.shape[0]]) for x, weight, _ in moment_cases]
            )
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for got, first in zip(other, results[0]):
            assert all(torch.equal(a, b) for a, b in zip(got, first))


def test_tiny_gaps_convolutions_train_on_the_kernels_unless_a_hook_watches_one(monkeypatch):
    calls = []
    real = fused.conv3x3
    monkeypatch.setattr(fused, "conv3x3", lambda x, conv, center: calls.append(conv) or real(x, conv, center))
    net, reference = _tiny_gap_pair(0.1)
    convs = [m for m in net if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    x = torch.randn(6, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    torch.manual_seed(3)
    out = net(x)
    torch.manual_seed(3)
    assert torch.allclose(out.double(), reference(x.double()), rtol=1e-4, atol=1e-5)
    assert calls == convs  # all six; the 1x1 transition stays torch's
    seen = []
    convs[1].register_forward_hook(lambda module, inputs, output: seen.append(output.shape))
    calls.clear()
    net(x).sum().backward()
    assert calls == convs[:1] + convs[2:] and seen == [(6, 8, 24, 24)]
    assert all(conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0 for conv in convs)
    calls.clear()
    net.eval()
    net(x)
    assert calls == []  # evaluation, Inspect and export see torch's layers


def test_only_the_convolutions_the_kernels_compute_go_to_them():
    x = torch.randn(2, 8, 10, 10).contiguous(memory_format=torch.channels_last)
    assert fused.conv_fusable(torch.nn.Conv2d(8, 32, 3, bias=False), x)
    for conv in (
        torch.nn.Conv2d(8, 8, 3),  # a bias
        torch.nn.Conv2d(8, 8, 3, padding=1, bias=False),
        torch.nn.Conv2d(8, 8, 3, stride=2, bias=False),
        torch.nn.Conv2d(8, 8, 3, dilation=2, bias=False),
        torch.nn.Conv2d(8, 8, 3, groups=2, bias=False),
        torch.nn.Conv2d(8, 8, 5, bias=False),
        torch.nn.Conv2d(8, 33, 3, bias=False),  # more output channels than a block of registers holds
        torch.nn.Conv2d(4, 8, 3, bias=False),  # not x's channels: torch's own error
    ):
        assert not fused.conv_fusable(conv, x), conv
    conv = torch.nn.Conv2d(8, 8, 3, bias=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # torch's layer computes in bfloat16 there
        assert not fused.conv_fusable(conv, x)
        assert not fused.fusable(torch.nn.ReLU(), torch.nn.BatchNorm2d(8), 0.1, x)
    assert not fused.conv_fusable(conv, x.contiguous())  # NCHW memory
    assert not fused.conv_fusable(conv, x.double().contiguous(memory_format=torch.channels_last))
    assert not fused.conv_fusable(conv, x[:, :, :2, :2].contiguous(memory_format=torch.channels_last))  # 2x2


def test_a_wrong_call_to_the_convolutions_raises_instead_of_reading_past_memory():
    ops = fused.kernels()
    x, weight, grad = _conv_case((2, 8, 16, 6, 6))
    with pytest.raises(RuntimeError, match="channels-last float32 CPU batch with 1 to 32 channels"):
        ops.conv3x3_forward(x.contiguous(), weight, None)
    with pytest.raises(RuntimeError, match="channels-last float32 CPU batch with 1 to 32 channels"):
        ops.conv3x3_forward(torch.randn(1, 33, 5, 5).contiguous(memory_format=torch.channels_last), weight, None)
    with pytest.raises(RuntimeError, match=r"weight must be a float32 CPU tensor of shape \(16, 8, 3, 3\)"):
        ops.conv3x3_input_grad(grad, weight[:8])  # 8 output channels where grad has 16
    with pytest.raises(RuntimeError, match="1 to 32 output channels"):
        ops.conv3x3_forward(x, torch.randn(40, 8, 3, 3), None)
    with pytest.raises(RuntimeError, match="at least 3x3 pixels"):
        ops.conv3x3_forward(x[:, :, :2].contiguous(memory_format=torch.channels_last), weight, None)
    with pytest.raises(RuntimeError, match="is not a 3x3 convolution's output"):
        ops.conv3x3_weight_grad(grad, x[:, :, 1:].contiguous(memory_format=torch.channels_last))


POOL_SHAPES = [
    (3, 16, 12, 22, 22),
    (2, 5, 3, 7, 9),
    (1, 32, 32, 2, 2),
    (2, 8, 9, 5, 4),
    (2, 1, 1, 3, 3),
    (1, 9, 17, 6, 11),
]


@pytest.mark.parametrize("shape", POOL_SHAPES)
def test_the_transition_and_its_pool_in_one_pass_match_float64(shape):
    """(batch, C_in, C_out, H, W): tiny_gap's, partial vectors each side, odd heights and widths (the pool drops the
    last row or column, whose gradient is zero)."""
    x, weight, grad = _conv_case(shape, kernel=1)
    xd, wd = x.double().requires_grad_(), weight.double().requires_grad_()
    expected = F.max_pool2d(F.conv2d(xd, wd), 2)
    expected.backward(grad.double())
    ops = fused.kernels()
    out, which = ops.conv1x1_pool_forward(x, weight.contiguous(memory_format=torch.channels_last))
    x_grad, weight_grad = ops.conv1x1_pool_backward(grad, x, weight, which, True)
    for name, value, reference in (
        ("output", out, expected.detach()),
        ("input's gradient", x_grad, xd.grad),
        ("weight's gradient", weight_grad, wd.grad),
    ):
        assert value.shape == reference.shape, name
        assert (value.double() - reference).abs().max() <= 2e-6 * reference.abs().max(), name
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert x_grad.is_contiguous(memory_format=torch.channels_last)
    assert ops.conv1x1_pool_backward(grad, x, weight, which, False)[0] is None  # the image needs none


def test_the_pools_ties_and_nans_go_where_torchs_max_pool_sends_them():
    """An identity transition, so the pool sees x itself: a window of equal values sends the gradient to its first
    pixel (row by row), a NaN wins its window, the later of two NaNs wins."""
    x = torch.tensor([[1.0, 1.0, 2.0, 5.0], [1.0, 1.0, 5.0, 2.0], [0.0, float("nan"), 3.0, float("nan")],
                      [7.0, 0.0, float("nan"), 3.0]])  # fmt: skip
    x = torch.stack([x, -x]).unsqueeze(0).contiguous(memory_format=torch.channels_last)  # (1, 2, 4, 4)
    eye = torch.eye(2).reshape(2, 2, 1, 1)
    grad = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]]).unsqueeze(0)
    grad = grad.contiguous(memory_format=torch.channels_last)
    xr = x.clone().requires_grad_()
    expected = F.max_pool2d(xr, 2)
    expected.backward(grad)
    ops = fused.kernels()
    out, which = ops.conv1x1_pool_forward(x, eye)
    x_grad, _ = ops.conv1x1_pool_backward(grad, x, eye, which, True)
    assert torch.equal(out.isnan(), expected.isnan()) and torch.equal(out.nan_to_num(), expected.nan_to_num())
    assert torch.equal(x_grad, xr.grad)


def test_tiny_gaps_transition_and_pool_train_in_one_pass_unless_a_hook_watches_one(monkeypatch):
    calls = []
    real = fused.conv1x1_maxpool
    monkeypatch.setattr(fused, "conv1x1_maxpool", lambda x, conv: calls.append(conv) or real(x, conv))
    net, reference = _tiny_gap_pair(0.1)
    x = torch.randn(6, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    torch.manual_seed(4)
    out = net(x)
    torch.manual_seed(4)
    assert torch.allclose(out.double(), reference(x.double()), rtol=1e-4, atol=1e-5)
    assert calls == [net[12]]  # the 1x1 transition, with the pool after it
    seen = []
    net[13].register_forward_hook(lambda module, inputs, output: seen.append(output.shape))  # the pool
    calls.clear()
    net(x).sum().backward()
    assert calls == [] and seen == [(6, 12, 11, 11)]
    assert net[12].weight.grad.abs().sum() > 0


def test_only_a_1x1_convolution_then_a_2x2_max_pool_goes_to_the_one_pass():
    x = torch.randn(2, 16, 10, 10).contiguous(memory_format=torch.channels_last)
    conv, pool = torch.nn.Conv2d(16, 12, 1, bias=False), torch.nn.MaxPool2d(2)
    assert fused.conv_pool_fusable(conv, pool, x)
    assert fused.conv_pool_fusable(conv, torch.nn.MaxPool2d((2, 2), stride=2), x)
    for other_pool in (
        torch.nn.MaxPool2d(2, stride=1),
        torch.nn.MaxPool2d(3),
        torch.nn.MaxPool2d(2, padding=1),
        torch.nn.MaxPool2d(2, ceil_mode=True),
        torch.nn.MaxPool2d(2, return_indices=True),
        torch.nn.AvgPool2d(2),
    ):
        assert not fused.conv_pool_fusable(conv, other_pool, x), other_pool
    for other_conv in (
        torch.nn.Conv2d(16, 12, 1),  # a bias
        torch.nn.Conv2d(16, 12, 3, bias=False),
        torch.nn.Conv2d(16, 12, 1, stride=2, bias=False),
        torch.nn.Conv2d(16, 40, 1, bias=False),
    ):
        assert not fused.conv_pool_fusable(other_conv, pool, x), other_conv
    assert not fused.conv_pool_fusable(conv, pool, x.contiguous())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not fused.conv_pool_fusable(conv, pool, x)
    assert not fused.conv_pool_fusable(conv, pool, x[:, :, :1].contiguous(memory_format=torch.channels_last))


def test_a_wrong_call_to_the_one_pass_raises_instead_of_reading_past_memory():
    ops = fused.kernels()
    x, weight, grad = _conv_case((2, 16, 12, 6, 6), kernel=1)
    with pytest.raises(RuntimeError, match="at least 2x2 pixels"):
        ops.conv1x1_pool_forward(x[:, :, :1].contiguous(memory_format=torch.channels_last), weight)
    with pytest.raises(RuntimeError, match=r"shape \(12, 16, 1, 1\)"):
        ops.conv1x1_pool_forward(x, weight[:, :8])
    _, which = ops.conv1x1_pool_forward(x, weight)
    with pytest.raises(RuntimeError, match="is not the pooled output"):
        ops.conv1x1_pool_backward(grad[:, :, :2].contiguous(memory_format=torch.channels_last), x, weight, which, True)
    with pytest.raises(RuntimeError, match="which must be a contiguous CPU tensor of 216"):
        ops.conv1x1_pool_backward(grad, x, weight, which[:-1], True)


@pytest.mark.parametrize("shape", [CONV_SHAPES[1], CONV_SHAPES[3], CONV_SHAPES[7], CONV_SHAPES[11]])
def test_the_convolution_sums_the_next_blocks_moments_as_it_writes_its_output(shape):
    """Followed by ReLU -> BatchNorm2d -> dropout, a convolution sums relu(out) - center and its squares per channel
    (about the BatchNorm's running mean), so the block skips its two statistics passes: the same statistics."""
    x, weight, _ = _conv_case(shape)
    center = torch.randn(shape[2], generator=torch.Generator().manual_seed(9))
    out, moments = fused.kernels().conv3x3_forward(x, weight, center)
    shifted = torch.relu(F.conv2d(x.double(), weight.double())) - center.double().view(1, -1, 1, 1)
    assert moments.dtype == torch.float64 and torch.equal(moments[0], center.double())
    for row, expected in ((1, shifted.sum((0, 2, 3))), (2, shifted.square().sum((0, 2, 3)))):
        assert torch.allclose(moments[row], expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
    bn = torch.nn.BatchNorm2d(shape[2]).train()
    with torch.no_grad():
        bn.running_mean.copy_(center)
    plain = copy.deepcopy(bn)
    given = fused.relu_batchnorm_dropout(out, bn, 0.0, moments)
    computed = fused.relu_batchnorm_dropout(out, plain, 0.0)
    assert torch.allclose(given, computed, rtol=1e-5, atol=1e-5)
    assert torch.allclose(bn.running_mean, plain.running_mean, rtol=1e-6, atol=1e-7)
    assert torch.allclose(bn.running_var, plain.running_var, rtol=1e-5)


def test_a_channels_mean_far_above_its_spread_stays_exact_through_the_convolutions_moments():
    """The moments are about the running mean, which follows the batch means: once it does, a channel whose
    values sit 1,000 times their spread from zero keeps its variance (E[x^2] - E[x]^2 in float would not)."""
    torch.manual_seed(0)
    x = torch.randn(16, 4, 10, 10).contiguous(memory_format=torch.channels_last) * 0.01 + 1.0
    weight = torch.full((8, 4, 3, 3), 1000.0 / 36)  # every output near 1,000, its spread near 1
    bn = torch.nn.BatchNorm2d(8).train()
    reference = copy.deepcopy(bn).double()
    z = fused.kernels().conv3x3_forward(x, weight, None)[0]
    bn.running_mean.copy_(z.double().mean((0, 2, 3)).float() + 0.5)  # near the mean, as after a few steps
    reference.running_mean.copy_(bn.running_mean.double())
    out = fused.relu_batchnorm_dropout(z, bn, 0.0, fused.kernels().conv3x3_forward(x, weight, bn.running_mean)[1])
    expected = reference(torch.relu(z.double()))
    assert (out.double() - expected).abs().max() <= 1e-3 * expected.abs().max()
    assert torch.allclose(bn.running_var.double(), reference.running_var, rtol=1e-4)
    # A running mean still at 0 (a first step), 1,000 spreads away: the block takes its own two passes instead.
    fresh, reference = torch.nn.BatchNorm2d(8).train(), torch.nn.BatchNorm2d(8).train().double()
    out = fused.relu_batchnorm_dropout(z, fresh, 0.0, fused.kernels().conv3x3_forward(x, weight, fresh.running_mean)[1])
    expected = reference(torch.relu(z.double()))
    assert (out.double() - expected).abs().max() <= 1e-3 * expected.abs().max()
    assert torch.allclose(fresh.running_var.double(), reference.running_var, rtol=1e-4)


def test_a_nan_running_mean_does_not_reach_a_training_output():
    """torch's BatchNorm ignores its running mean when training: a NaN there (an earlier diverged step) must not
    leak into the output through the moments' center."""
    x, weight, _ = _conv_case(CONV_SHAPES[1])
    bn = torch.nn.BatchNorm2d(8).train()
    bn.running_mean[0] = float("nan")
    z, moments = fused.kernels().conv3x3_forward(x, weight, bn.running_mean)
    assert moments[0, 0] == 0 and torch.isfinite(moments).all()
    reference = copy.deepcopy(bn).double()
    out = fused.relu_batchnorm_dropout(z, bn, 0.0, moments)
    assert torch.allclose(out.double(), reference(torch.relu(z.double())), rtol=1e-4, atol=1e-5)


def test_convolutions_without_a_block_after_them_train_on_the_kernels_without_moments():
    net = FusingSequential(
        torch.nn.Conv2d(1, 8, 3, bias=False), torch.nn.ReLU(), torch.nn.Conv2d(8, 12, 3, bias=False)
    ).train()
    plain = torch.nn.Sequential(*copy.deepcopy(list(net))).double()
    x = torch.randn(3, 1, 9, 9).contiguous(memory_format=torch.channels_last)
    out = net(x)
    assert torch.allclose(out.double(), plain(x.double()), rtol=1e-5, atol=1e-5)
    out.square().sum().backward()
    plain(x.double()).square().sum().backward()
    for p, q in zip(net.parameters(), plain.parameters()):
        assert torch.allclose(p.grad.double(), q.grad, rtol=1e-4, atol=1e-4 * q.grad.abs().max().item())
