"""Recording inside training: bounded histograms, gradients equal to autograd's, stored with the checkpoint."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mnist_core.checkpoints import find, load_probes, save
from mnist_core.models import build_model
from mnist_core.probes import MAX_SNAPSHOTS, Recorder, _histogram
from mnist_core.train import TrainConfig, fit, seeded_model, training_memory_format


def test_a_one_epoch_run_gets_at_least_20_snapshots_by_default(data):
    config = TrainConfig(arch="mlp", model={"width": 32}, epochs=1, batch_size=128)
    result = fit(config, data)
    record = result.probes
    assert len(record) >= 20
    assert record.layers == ["1.weight", "3.weight", "5.weight"]
    assert np.stack(record.weight_hist).sum(-1) == pytest.approx(1.0)  # shares: every weight counted once
    assert all(0 <= d <= 1 for row in record.dead for d in row)


def test_memory_stays_bounded_whatever_the_run_length():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 8), torch.nn.ReLU(), torch.nn.Linear(8, 10))
    recorder = Recorder(model, every=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    for step in range(1, 1001):
        recorder.before_forward(step)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        recorder.before_update(step)
        optimizer.step()
        recorder.after_update(step)
    record = recorder.close()
    assert MAX_SNAPSHOTS // 2 <= len(record) <= MAX_SNAPSHOTS
    assert record.every > 1 and record.steps[-1] <= 1000
    assert np.stack(record.grad_hist).shape == (len(record), 2, 48)


def test_recorded_gradients_are_the_ones_autograd_computes(data):
    # tiny_gap: convs, BatchNorm and dropout, recomputed in the memory format the engine trains it in (another
    # format runs other conv kernels, whose rounding BatchNorm magnifies past these tolerances)
    config = TrainConfig(
        arch="tiny_gap",
        model={"channels": [4] * 7},
        epochs=1,
        max_batches=1,
        record_every=1,
        optimizer="sgd",
        lr=0.1,
        momentum=0.0,
    )
    initial = seeded_model(config, torch.device("cpu"))
    reference = copy.deepcopy(initial)
    result = fit(config, data, model=initial)
    # The same first batch, the same weights: autograd by hand.
    x, y = next(data.train.batches(config.batch_size, torch.Generator().manual_seed(config.seed)))
    fmt = training_memory_format(config, torch.device("cpu"))
    torch.manual_seed(config.seed + 1)
    # As the recorded step ran: its hooks on the ReLUs keep tiny_gap's fused ReLU/BatchNorm/dropout off, while
    # its unwatched convolutions run on the fused kernels' (their rounding differs from oneDNN's).
    layers = reference.train().to(memory_format=fmt)
    for relu in (m for m in layers if isinstance(m, torch.nn.ReLU)):
        relu.register_forward_hook(lambda module, inputs, out: None)
    loss = F.cross_entropy(layers(x.contiguous(memory_format=fmt)), y)
    names = result.probes.layers
    params = dict(reference.named_parameters())
    grads = torch.autograd.grad(loss, [params[n] for n in names])
    record = result.probes
    for i, g in enumerate(grads):
        assert record.grad_mean[0][i] == pytest.approx(float(g.abs().mean()), rel=1e-4)
        assert record.grad_max[0][i] == pytest.approx(float(g.abs().max()), rel=1e-4)
        assert record.grad_hist[0][i] == pytest.approx(_histogram(g, record.grad_edges[i]), abs=1e-6)
        step = 0.1 * g  # plain SGD: the update is lr x gradient
        assert record.update_ratio[0][i] == pytest.approx(float(step.norm() / params[names[i]].norm()), rel=1e-3)


def test_the_history_is_saved_beside_the_checkpoint_and_read_back(data, runs):
    result = fit(TrainConfig(arch="mlp", model={"width": 16}, max_batches=50, record_every=5), data)
    save(result, "recorded")
    info = find("recorded")
    again = load_probes(info)
    assert again.steps == result.probes.steps == list(range(5, 51, 5))
    assert np.allclose(np.stack(again.grad_hist), np.stack(result.probes.grad_hist))
    unrecorded = fit(TrainConfig(arch="mlp", model={"width": 16}, max_batches=5, record=False), data)
    save(unrecorded, "plain")
    assert load_probes(find("plain")) is None and unrecorded.probes is None


def test_the_recorder_hooks_the_relus_only_on_the_steps_it_records():
    """A hook on a ReLU sends tiny_gap's step layer by layer (fused.fusable): the unrecorded steps stay fused."""
    model = build_model("tiny_gap", {})
    relus = [m for m in model.modules() if isinstance(m, torch.nn.ReLU)]
    recorder = Recorder(model, every=2)
    recorder.before_forward(1)
    assert not any(r._forward_hooks for r in relus)
    recorder.before_forward(2)
    assert all(r._forward_hooks for r in relus)
    model(torch.randn(4, 1, 28, 28)).sum().backward()
    recorder.before_update(2)
    assert not any(r._forward_hooks for r in relus)
    recorder.after_update(2)
    assert recorder.record.steps == [2] and len(recorder.record.dead[0]) == len(relus)
