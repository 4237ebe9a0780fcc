"""The from-scratch NumPy graph engine: every op's gradient against torch.autograd, whole nets against
finite differences, bad graphs named, real training on MNIST, export to an ordinary checkpoint, the CLI."""

import ast
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from mnist_core.reporter import Reporter
from mnist_core.scratch import (
    Add,
    Dropout,
    Graph,
    GraphError,
    Input,
    MatMul,
    Mean,
    Mul,
    Net,
    NetConfig,
    Parameter,
    ReLU,
    Sigmoid,
    SoftmaxCrossEntropy,
    Tanh,
    TrainSettings,
    load_arrays,
    train,
)
from mnist_core.scratch.net import epoch_order

ROOT = Path(__file__).resolve().parent.parent
TOL = dict(rtol=1e-10, atol=1e-12)


def rand(rng, *shape):
    return rng.normal(size=shape)


def check_against_torch(build, torch_fn, shapes, seed=0):
    """Engine graph: loss = mean(op(inputs) * R); the same in torch; all input gradients must agree."""
    rng = np.random.default_rng(seed)
    values = [rand(rng, *s) for s in shapes]
    params = [Parameter(v.copy(), f"p{i}") for i, v in enumerate(values)]
    out = build(*params)
    R = Parameter(rand(rng, *[d for d in out.shape]) if out.shape else np.asarray(rng.normal()), "R")
    loss = Mean(Mul(out, R, "times_r"), "loss")
    graph = Graph(loss, params)
    ours = graph.forward({})
    graph.backward()

    tensors = [torch.tensor(v, requires_grad=True) for v in values]
    t_loss = (torch_fn(*tensors) * torch.tensor(R.value)).mean()
    t_loss.backward()
    np.testing.assert_allclose(ours, t_loss.item(), **TOL)
    for p, t in zip(params, tensors):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), **TOL, err_msg=p.name)


def test_matmul_gradients_match_torch():
    check_against_torch(lambda a, b: MatMul(a, b), lambda a, b: a @ b, [(5, 7), (7, 3)])


@pytest.mark.parametrize("shapes", [[(4, 6), (6,)], [(4, 6), (1, 6)], [(4, 1), (1, 6)], [(4, 6), (4, 6)]])
def test_add_broadcasts_and_sums_gradients_over_the_broadcast_axes(shapes):
    check_against_torch(lambda a, b: Add(a, b), lambda a, b: a + b, shapes)


def test_mul_gradients_match_torch():
    check_against_torch(lambda a, b: Mul(a, b), lambda a, b: a * b, [(4, 6), (6,)])


@pytest.mark.parametrize("op, fn", [(ReLU, torch.relu), (Sigmoid, torch.sigmoid), (Tanh, torch.tanh)])
def test_activation_gradients_match_torch(op, fn):
    check_against_torch(lambda a: op(a), fn, [(8, 5)])


def test_sigmoid_does_not_overflow_for_large_inputs():
    x = Parameter(np.array([[-1000.0, 0.0, 1000.0]]), "x")
    s = Sigmoid(x)
    g = Graph(Mean(s), [x])
    with np.errstate(over="raise"):
        g.forward({})
    np.testing.assert_allclose(s.value, [[0.0, 0.5, 1.0]])


def test_mean_gradient_matches_torch():
    check_against_torch(lambda a: Mean(a), lambda a: a.mean(), [(3, 4)])


def test_softmax_cross_entropy_matches_torch_even_for_huge_logits():
    rng = np.random.default_rng(1)
    z = rand(rng, 6, 10) * 50 + np.array([1000.0] + [0.0] * 9)  # exp() of these would overflow unshifted
    labels = rng.integers(0, 10, size=6)
    logits, y = Parameter(z.copy(), "logits"), Input((None,), "labels", dtype=np.int64)
    loss = SoftmaxCrossEntropy(logits, y)
    graph = Graph(loss, [logits])
    ours = graph.forward({y: labels})
    graph.backward()
    t = torch.tensor(z, requires_grad=True)
    t_loss = torch.nn.functional.cross_entropy(t, torch.tensor(labels))
    t_loss.backward()
    np.testing.assert_allclose(ours, t_loss.item(), **TOL)
    np.testing.assert_allclose(logits.grad, t.grad.numpy(), **TOL)


def test_dropout_mask_is_seeded_scaled_and_its_gradient_matches_torch():
    rng = np.random.default_rng(2)
    x_val = rand(rng, 50, 40)
    x = Parameter(x_val.copy(), "x")
    drop = Dropout(x, 0.3, np.random.default_rng(7), "drop")
    R = rand(rng, 50, 40)
    graph = Graph(Mean(Mul(drop, Parameter(R, "R"))), [x])
    graph.forward({}, training=True)
    graph.backward()
    mask = drop.mask
    assert set(np.unique(mask).round(6)) == {0.0, round(1 / 0.7, 6)}
    assert 0.2 < (mask == 0).mean() < 0.4
    t = torch.tensor(x_val, requires_grad=True)
    ((t * torch.tensor(mask)) * torch.tensor(R)).mean().backward()
    np.testing.assert_allclose(x.grad, t.grad.numpy(), **TOL)
    # the same seed draws the same mask; at test time dropout is the identity
    again = Dropout(Parameter(x_val.copy()), 0.3, np.random.default_rng(7))
    np.testing.assert_array_equal(again.forward(x_val, training=True), drop.value)
    np.testing.assert_array_equal(drop.forward(x_val, training=False), x_val)


def test_gradients_that_meet_at_a_node_add_up():
    a = Parameter(np.array([[2.0, -3.0]]), "a")
    loss = Mean(Add(Mul(a, a), a))  # d/da (a^2 + a) = 2a + 1, mean over 2 entries
    g = Graph(loss, [a])
    g.forward({})
    g.backward()
    np.testing.assert_allclose(a.grad, (2 * a.value + 1) / 2)


@pytest.mark.parametrize("activation, dropout", [("relu", 0.0), ("tanh", 0.0), ("sigmoid", 0.0), ("relu", 0.5)])
def test_whole_net_gradients_match_finite_differences(activation, dropout):
    net = Net(NetConfig(widths=(6, 5), activation=activation, dropout=dropout, dtype="float64", seed=3))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 784)), rng.integers(0, 10, size=4)
    feed = {net.x: x, net.y: y}
    for _, b in net.layers:  # zero biases put a dead ReLU unit exactly on its kink, where no derivative exists
        b.value[:] = rng.normal(scale=0.1, size=b.value.shape)

    def loss_with_mask():
        # dropout draws a new mask on each training forward: replay the same generator state each time
        state = net.dropout_rng.bit_generator.state
        value = float(net.graph.forward(feed, training=True))
        net.dropout_rng.bit_generator.state = state
        return value

    loss_with_mask()
    net.graph.backward()
    grads = {p.name: p.grad.copy() for p in net.params}
    eps = 1e-6
    for p in net.params:
        for idx in [tuple(rng.integers(0, s) for s in p.value.shape) for _ in range(12)]:
            old = p.value[idx]
            p.value[idx] = old + eps
            up = loss_with_mask()
            p.value[idx] = old - eps
            down = loss_with_mask()
            p.value[idx] = old
            numeric = (up - down) / (2 * eps)
            assert abs(numeric - grads[p.name][idx]) <= 1e-6 * max(1.0, abs(numeric)), (p.name, idx)


def test_float32_and_float64_nets_compute_in_their_type():
    for dtype, np_type in (("float32", np.float32), ("float64", np.float64)):
        net = Net(NetConfig(widths=(8,), dtype=dtype))
        x = np.random.default_rng(0).normal(size=(3, 784))
        net.graph.forward({net.x: x.astype(np_type), net.y: np.array([1, 2, 3])}, training=True)
        net.graph.backward()
        assert net.logits.value.dtype == np_type and all(p.grad.dtype == np_type for p in net.params)


def test_he_and_xavier_initialisation_have_their_textbook_scale():
    he = Net(NetConfig(widths=(512,), activation="relu"))
    xavier = Net(NetConfig(widths=(512,), activation="tanh"))
    assert abs(he.layers[0][0].value.std() - np.sqrt(2 / 784)) < 0.002
    limit = np.sqrt(6 / (784 + 512))
    assert (
        abs(xavier.layers[0][0].value).max() <= limit
        and abs(xavier.layers[0][0].value.std() - limit / np.sqrt(3)) < 0.002
    )
    assert not he.layers[0][1].value.any()  # biases start at zero


# ---------------------------------------------------------------- bad graphs


def test_a_shape_that_does_not_fit_names_the_node():
    x = Input((None, 784), "pixels")
    W = Parameter(np.zeros((100, 10)), "W_bad")
    with pytest.raises(GraphError, match=r"^layer1: cannot multiply pixels \(N, 784\) by W_bad \(100, 10\)"):
        MatMul(x, W, "layer1")
    with pytest.raises(GraphError, match=r"^bias_add: shapes \(N, 10\) and \(7\) do not broadcast"):
        Add(MatMul(x, Parameter(np.zeros((784, 10)))), Parameter(np.zeros(7)), "bias_add")


def test_a_cycle_names_a_node_on_it():
    a = Parameter(np.ones((2, 2)), "a")
    first = ReLU(a, "first")
    second = Tanh(first, "second")
    first.inputs = [second]  # wired back on itself
    with pytest.raises(GraphError, match=r"(first|second): the graph has a cycle"):
        Graph(Mean(second, "loss"))


def test_a_parameter_no_loss_depends_on_names_it():
    x = Input((None, 4), "x")
    W = Parameter(np.ones((4, 2)), "W")
    orphan = Parameter(np.ones(2), "b_orphan")
    with pytest.raises(GraphError, match=r"^b_orphan: parameter is not used by loss"):
        Graph(Mean(MatMul(x, W), "loss"), [W, orphan])


def test_feeding_the_wrong_shape_names_the_input():
    net = Net(NetConfig(widths=(8,)))
    with pytest.raises(GraphError, match=r"^x: fed an array of shape \(2, 100\), expected \(N, 784\)"):
        net.graph.forward({net.x: np.zeros((2, 100), np.float32), net.y: np.zeros(2, np.int64)})
    with pytest.raises(GraphError, match=r"^label: no value fed"):
        net.graph.forward({net.x: np.zeros((2, 784), np.float32)})


def test_the_engine_imports_no_torch():
    """The engine is NumPy only; torch_bridge is the one module allowed to carry a net over to PyTorch."""
    for path in (ROOT / "mnist_core" / "scratch").glob("*.py"):
        if path.name == "torch_bridge.py":
            continue
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not any(name.split(".")[0] == "torch" for name in names), path.name


# ---------------------------------------------------------------- real training, export, CLI


@pytest.fixture(scope="module")
def arrays():
    return load_arrays("float32")


def test_short_training_on_real_digits_lowers_the_loss_and_beats_chance_by_far(arrays):
    net = Net(NetConfig(widths=(64,), seed=0))
    before = net.evaluate(arrays.test_x, arrays.test_y)
    seen = []
    result = train(
        net,
        arrays,
        TrainSettings(epochs=1, batch_size=64, max_batches=150),
        Reporter(lambda name, d: seen.append((name, d))),
        report_every=25,
    )
    assert result.status == "stopped" and result.steps == 150
    losses = [d["loss"] for name, d in seen if name == "batch"]
    assert [d for name, d in seen if name == "progress"][-1] == {"done": 150, "total": 150}
    assert losses[-1] < losses[0] < before["loss"]  # about 2.3 (ln 10) untrained
    assert losses[-1] < before["loss"] / 4
    assert result.history[0]["test_loss"] < before["loss"] / 3
    assert result.test_accuracy > 0.85  # chance is 0.10


def test_training_is_seeded_and_can_be_stopped(arrays):
    def run(stop_after=None):
        net = Net(NetConfig(widths=(16,), dropout=0.2, seed=5))
        steps = []
        stop = threading.Event()

        def on_event(name, d):
            if name == "batch":
                steps.append(d)
                if stop_after and len(steps) >= stop_after:
                    stop.set()

        train(net, arrays, TrainSettings(epochs=1, max_batches=20, seed=5), Reporter(on_event, stop), report_every=1)
        return net, steps

    (a, _), (b, _) = run(), run()
    np.testing.assert_array_equal(a.layers[0][0].value, b.layers[0][0].value)
    _, steps = run(stop_after=3)
    assert len(steps) == 3
    assert epoch_order(100, 1, 2).tolist() == epoch_order(100, 1, 2).tolist() != epoch_order(100, 1, 3).tolist()


def test_sgd_with_momentum_trains_too(arrays):
    net = Net(NetConfig(widths=(32,), activation="tanh"))
    result = train(net, arrays, TrainSettings(optimizer="sgd", lr=0.05, momentum=0.9, epochs=1, max_batches=100))
    assert result.test_accuracy > 0.8


@pytest.mark.parametrize("widths, arch", [((32, 32), "mlp"), ((48, 24), "stack"), ((), "mlp")])
def test_export_gives_a_checkpoint_with_identical_test_predictions(arrays, runs, widths, arch):
    from mnist_core.checkpoints import load
    from mnist_core.data import load_mnist
    from mnist_core.scratch.torch_bridge import export_checkpoint

    net = Net(NetConfig(widths=widths, activation="tanh" if arch == "stack" else "relu", dropout=0.1))
    settings = TrainSettings(epochs=1, max_batches=40)
    result = train(net, arrays, settings)
    name = export_checkpoint(net, result, settings, f"scratch-{arch}-{len(widths)}")
    model, meta = load(name)
    assert meta["arch"] == arch and meta["command"].startswith("python -m mnist_core scratch")
    mnist = load_mnist()
    with torch.no_grad():
        theirs = model(mnist.normalize(mnist.test_images)).argmax(1).numpy()
    ours = net.run(arrays.test_x).argmax(1)
    assert (ours == theirs).all()
    assert meta["test_accuracy"] == pytest.approx((ours == arrays.test_y).mean())


def run_cli(*args, env_runs):
    import os

    env = {**os.environ, "MNIST_RUNS_DIR": str(env_runs)}
    return subprocess.run(
        [sys.executable, "-m", "mnist_core", "scratch", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )


def test_cli_trains_reports_and_saves(runs):
    done = run_cli(
        "--widths",
        "32",
        "--activation",
        "relu",
        "--optimizer",
        "adam",
        "--lr",
        "1e-3",
        "--epochs",
        "1",
        "--batch-size",
        "128",
        "--max-batches",
        "40",
        "--name",
        "cli-scratch",
        env_runs=runs,
    )
    assert done.returncode == 0, done.stderr
    assert "test accuracy" in done.stdout and "saved checkpoint 'cli-scratch'" in done.stdout
    assert (runs / "cli-scratch.json").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--widths", "12,x"], "widths are whole numbers"),
        (["--activation", "swish"], "invalid choice: 'swish'"),
        (["--lr", "0"], "learning rate must be"),
        (["--batch-size", "0"], "batch size must be"),
        (["--widths", "9999"], "width must be between 1 and 4,096 (got 9,999)"),
        (["--name", ""], "name"),
    ],
)
def test_cli_refuses_a_bad_option_in_one_line_with_exit_2(runs, args, message):
    done = run_cli(*args, env_runs=runs)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
