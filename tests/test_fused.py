"""tiny_gap's ReLU -> BatchNorm2d -> dropout fused for training on a CPU (mnist_core/fused.py): the same arithmetic
as the layers one by one, only where nothing watches them, and safe to run from several threads."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mnist_core import fused
from mnist_core.models import build_model

ROOT = Path(__file__).resolve().parents[1]


def _tiny_gap_pair(dropout: float):
    """tiny_gap as built (fusing) and the same layers in a plain nn.Sequential, in float64 as the reference."""
    net = build_model("tiny_gap", {"dropout": dropout}).train().to(memory_format=torch.channels_last)
    reference = torch.nn.Sequential(*copy.deepcopy(list(net))).double()
    return net, reference


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_fused_relu_batchnorm_dropout_trains_as_the_layers_do(dropout, monkeypatch):
    calls = []
    real = fused.relu_batchnorm_dropout
    monkeypatch.setattr(fused, "relu_batchnorm_dropout", lambda *a: calls.append(1) or real(*a))
    net, reference = _tiny_gap_pair(dropout)
    x = torch.randn(24, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    torch.manual_seed(7)
    out = net(x)
    out.square().sum().backward()
    torch.manual_seed(7)  # the same draws: the fused layers drop the values the separate layers drop
    expected = reference(x.double())
    expected.square().sum().backward()
    assert len(calls) == 6  # every block of tiny_gap took the fused path
    assert torch.allclose(out.double(), expected, rtol=1e-4, atol=1e-5)
    for (name, p), q in zip(net.named_parameters(), reference.parameters()):
        assert (p.grad.double() - q.grad).abs().max() <= 1e-4 * q.grad.abs().max(), name  # 3e-6 measured
    for (name, b), c in zip(net.named_buffers(), reference.buffers()):
        assert torch.allclose(b.double(), c.double(), rtol=1e-5, atol=1e-7), name  # running statistics


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


def test_the_fused_layers_leave_evaluation_and_other_layouts_to_the_layers():
    net, _ = _tiny_gap_pair(0.1)
    x = torch.randn(4, 1, 28, 28)
    nchw = torch.randn(4, 8, 26, 26)
    assert not fused.fusable(net[1], net[2], 0.1, nchw)  # NCHW memory: channels would not be the rows' columns
    assert fused.fusable(net[1], net[2], 0.1, nchw.contiguous(memory_format=torch.channels_last))
    assert not fused.fusable(net[1], net[2], 0.1, nchw.bfloat16().contiguous(memory_format=torch.channels_last))
    net.eval()
    assert not fused.fusable(net[1], net[2], 0.1, nchw.contiguous(memory_format=torch.channels_last))
    assert torch.equal(net(x), torch.nn.Sequential(*net)(x))  # evaluation is the layers' own


TWO_THREADS = r"""
import copy, json, threading, torch
from mnist_core.models import build_model

# No dropout: torch's generator is one for all threads, so concurrent draws would interleave.
nets = {}
for seed in (1, 2):
    torch.manual_seed(seed)
    nets[seed] = build_model("tiny_gap", {"dropout": 0.0})
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
import numba
print(json.dumps({"alone": alone, "together": together, "layer": numba.threading_layer()}))
"""


def test_two_threads_train_fused_at_once_even_on_numbas_workqueue_layer(tmp_path):
    """In-process jobs are threads; numba's workqueue layer aborts the process on concurrent parallel launches."""
    env = {
        **os.environ,
        "MNIST_CACHE_DIR": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "NUMBA_THREADING_LAYER": "workqueue",
    }
    done = subprocess.run(
        [sys.executable, "-c", TWO_THREADS], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["layer"] == "workqueue"
    assert result["together"] == result["alone"]  # each thread's run is its own, to the bit
