"""Fully connected nets built from the graph's nodes, their initialisation, the MNIST arrays, and training.

x (N, 784) -> [matmul W1, add b1, activation, dropout] -> ... -> matmul Wk, add bk -> logits (N, 10)
loss = softmax_cross_entropy(logits, labels)
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np

from .. import fields
from ..fields import setting
from ..reporter import NULL_REPORTER, Reporter
from .graph import (
    DTYPES,
    Add,
    Dropout,
    Graph,
    Input,
    MatMul,
    Node,
    Parameter,
    ReLU,
    Sigmoid,
    SoftmaxCrossEntropy,
    Tanh,
)
from .optim import OPTIMIZERS, make_optimizer

ACTIVATIONS = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh}
INITS = ("auto", "he", "xavier")
N_PIXELS, N_CLASSES = 784, 10
MAX_WIDTH, MAX_LAYERS = 4096, 8


class ScratchError(ValueError):
    """A setting the engine cannot use; the message says which and why."""


# ---------------------------------------------------------------- initialisation


def he_normal(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    """He et al. 2015: std sqrt(2 / fan_in) keeps a ReLU layer's output variance equal to its input's."""
    return rng.normal(0.0, math.sqrt(2.0 / fan_in), size=(fan_in, fan_out))


def xavier_uniform(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    """Glorot & Bengio 2010: U(-a, a), a = sqrt(6 / (fan_in + fan_out)), for tanh and sigmoid."""
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out))


# ---------------------------------------------------------------- the net


@dataclass
class NetConfig:
    widths: tuple[int, ...] = setting(
        (256, 128), "Hidden layers' widths; none is logistic regression.", label="width", min=1, max=MAX_WIDTH
    )
    activation: str = setting("relu", "Nonlinearity after each hidden layer.", choices=ACTIVATIONS)
    dropout: float = setting(0.0, "Dropout probability after each hidden layer.", min=0, below=1)
    init: str = setting("auto", "auto: He for ReLU, Xavier otherwise.", choices=INITS)
    dtype: str = setting("float32", "The arrays' float type.", choices=DTYPES)
    seed: int = setting(0, "Fixes the initial weights.", min=0, max=2**32 - 1)

    def validate(self) -> None:
        self.widths = tuple(int(w) if isinstance(w, np.integer) else w for w in self.widths)
        self.seed = int(self.seed) if isinstance(self.seed, np.integer) else self.seed
        if len(self.widths) > MAX_LAYERS:  # the one check across values: fields.check looks at each width alone
            raise ScratchError(f"at most {MAX_LAYERS} hidden layers (got {len(self.widths)})")
        if not self.widths:
            return fields.check(dataclasses.replace(self, widths=(1,)), ScratchError)  # () is allowed: no hidden layer
        fields.check(self, ScratchError)


class Net:
    """A fully connected classifier as a graph. Build with Net(NetConfig(...))."""

    def __init__(self, config: NetConfig):
        config.validate()
        self.config = config
        self.dtype = DTYPES[config.dtype]
        rng = np.random.default_rng([config.seed, 0])  # weights
        self.dropout_rng = np.random.default_rng([config.seed, 1])  # masks: their own stream
        init = config.init if config.init != "auto" else ("he" if config.activation == "relu" else "xavier")
        draw = he_normal if init == "he" else xavier_uniform

        self.x = Input((None, N_PIXELS), "x")
        self.y = Input((None,), "label", dtype=np.int64)
        self.layers: list[tuple[Parameter, Parameter]] = []
        self.hidden: list[Node] = []  # each hidden layer's activation output
        h: Node = self.x
        sizes = [N_PIXELS, *config.widths, N_CLASSES]
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            W = Parameter(draw(rng, fan_in, fan_out).astype(self.dtype), f"W{i}")
            b = Parameter(np.zeros(fan_out, dtype=self.dtype), f"b{i}")
            self.layers.append((W, b))
            h = Add(MatMul(h, W, f"matmul{i}"), b, f"add{i}")
            if i < len(sizes) - 1:
                h = ACTIVATIONS[config.activation](h, f"{config.activation}{i}")
                self.hidden.append(h)
                if config.dropout > 0:
                    h = Dropout(h, config.dropout, self.dropout_rng, f"dropout{i}")
        self.logits = h
        self.loss = SoftmaxCrossEntropy(self.logits, self.y, "loss")
        self.params = [p for layer in self.layers for p in layer]
        self.graph = Graph(self.loss, self.params)

    @property
    def n_params(self) -> int:
        return sum(p.value.size for p in self.params)

    def step(self, x: np.ndarray, y: np.ndarray, optimizer, training: bool = True) -> tuple[float, float]:
        """One training step on a batch: forward, backward, update. Returns (loss, accuracy) of the batch."""
        loss = float(self.graph.forward({self.x: x.astype(self.dtype, copy=False), self.y: y}, training=training))
        accuracy = float((self.logits.value.argmax(axis=1) == y).mean())
        self.graph.backward()
        optimizer.step()
        return loss, accuracy

    def run(self, x: np.ndarray, until: Node | None = None, batch: int = 2000) -> np.ndarray:
        """Evaluation: the value of `until` (default: the logits) for every row of x, dropout off."""
        until = until or self.logits
        sub = Graph(until, params=[])
        out = [
            sub.forward({self.x: x[i : i + batch].astype(self.dtype, copy=False)}).copy()
            for i in range(0, len(x), batch)
        ]
        return np.concatenate(out)

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict:
        logits = self.run(x).astype(np.float64)
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return {
            "loss": float(-log_probs[np.arange(len(y)), y].mean()),
            "accuracy": float((logits.argmax(axis=1) == y).mean()),
        }


# ---------------------------------------------------------------- data


class StandardizedRows:
    """uint8 digits (N, 28, 28) read as rows (n, 784) standardized like Mnist.normalize, only the rows asked for:
    a float32 copy of the 60,000 training digits would hold 188 MB for as long as the process lives."""

    def __init__(self, images: np.ndarray, mean: float, std: float, dtype):
        self.images, self.mean, self.std, self.dtype = images.reshape(len(images), N_PIXELS), mean, std, dtype

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key) -> np.ndarray:
        x = self.images[key].astype(self.dtype)
        return ((x / 255 - self.mean) / self.std).astype(self.dtype)  # the same operations as the whole array had

    def __array__(self, dtype=None, copy=None) -> np.ndarray:  # np.asarray(rows): all of them, for a benchmark
        return self[:] if dtype is None else self[:].astype(dtype)


@dataclass
class Arrays:
    """MNIST as NumPy: images (N, 784) standardized with the training pixels' mean and std, labels int64.

    The training images are read (and standardized) a batch at a time; the test images are held standardized.
    """

    train_x: StandardizedRows
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    mean: float
    std: float
    test_images: np.ndarray  # uint8 (N, 28, 28), for showing digits


_ARRAYS: dict[tuple, tuple[object, Arrays]] = {}  # (the Mnist read from, its arrays)


def load_arrays(dtype: str = "float32", path=None) -> Arrays:
    """Read MNIST through the project's IDX reader (mnist_core.data), converted to NumPy once per process."""
    from ..data import load_mnist  # the data path uses torch tensors; the engine itself never does

    mnist = load_mnist(path)
    key = (mnist.source, dtype)
    # the reader's cache may have dropped and re-read this folder: arrays over the old bytes would hold a second copy
    if key not in _ARRAYS or _ARRAYS[key][0] is not mnist:

        def norm(images):
            x = images.numpy().reshape(len(images), N_PIXELS).astype(DTYPES[dtype])
            return (x / 255 - mnist.mean) / mnist.std  # the same standardization as Mnist.normalize

        _ARRAYS[key] = (
            mnist,
            Arrays(
                StandardizedRows(mnist.train_images.numpy(), mnist.mean, mnist.std, DTYPES[dtype]),
                mnist.train_labels.numpy(),
                norm(mnist.test_images).astype(DTYPES[dtype]),
                mnist.test_labels.numpy(),
                mnist.mean,
                mnist.std,
                mnist.test_images.numpy(),
            ),
        )
    return _ARRAYS[key][1]


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled order of an epoch, a pure function of (seed, epoch): anyone can replay the same batches."""
    return np.random.default_rng([seed, 2, epoch]).permutation(n)


# ---------------------------------------------------------------- training


@dataclass
class TrainSettings:
    optimizer: str = setting("adam", "How each step updates the weights.", choices=OPTIMIZERS)
    lr: float = setting(1e-3, "Learning rate.", label="learning rate", above=0, max=10)
    momentum: float = setting(0.9, "For SGD only.", min=0, below=1)
    epochs: int = setting(5, "Passes over the training digits.", min=1, max=1000)
    batch_size: int = setting(128, "Digits per step.", label="batch size", min=1)
    lr_decay: float = setting(
        1.0, "The learning rate is multiplied by this after each epoch.", label="lr decay", above=0, max=1
    )
    seed: int = setting(0, "Fixes the batches' order.", min=0, max=2**32 - 1)
    max_batches: int | None = setting(
        None, "Stop after this many steps (smoke runs, tests).", label="max batches", min=1, optional=True
    )
    train_subset: int | None = setting(
        None, "Train on the first this-many training digits.", label="train subset", min=1, optional=True
    )

    def validate(self, n_train: int = 60_000) -> None:
        fields.check(self, ScratchError)
        if self.batch_size > n_train:  # the data's size, known only here
            raise ScratchError(f"batch size must be between 1 and {n_train:,} (got {self.batch_size:,})")


@dataclass
class TrainResult:
    status: str  # "finished" or "stopped"
    history: list[dict] = field(default_factory=list)  # one entry per epoch
    curve: list[dict] = field(default_factory=list)  # one entry per reported batch
    steps: int = 0
    seconds: float = 0.0

    @property
    def test_accuracy(self) -> float | None:
        return self.history[-1]["test_accuracy"] if self.history else None


def train(
    net: Net, data: Arrays, settings: TrainSettings, reporter: Reporter = NULL_REPORTER, report_every: int = 50
) -> TrainResult:
    """Mini-batch training, reporting "batch" (every report_every steps), "epoch", "stage" and "progress"
    events; reporter.stop is checked before each batch.

    A stopped run keeps what it learned and still measures the test set, so the net can be used.
    """
    n_train = len(data.train_x) if settings.train_subset is None else min(settings.train_subset, len(data.train_x))
    settings.validate(n_train)
    optimizer = make_optimizer(settings.optimizer, net.params, settings.lr, settings.momentum)
    result = TrainResult("finished")
    started = time.perf_counter()
    steps_per_epoch = math.ceil(n_train / settings.batch_size)
    total = settings.epochs * steps_per_epoch
    if settings.max_batches:
        total = min(total, settings.max_batches)
    for epoch in range(1, settings.epochs + 1):
        order = epoch_order(n_train, settings.seed, epoch)
        losses, correct, seen = 0.0, 0.0, 0
        for start in range(0, n_train, settings.batch_size):
            if reporter.stopping or (settings.max_batches and result.steps >= settings.max_batches):
                result.status = "stopped"
                break
            idx = order[start : start + settings.batch_size]
            loss, acc = net.step(data.train_x[idx], data.train_y[idx], optimizer)
            result.steps += 1
            losses, correct, seen = losses + loss * len(idx), correct + acc * len(idx), seen + len(idx)
            if result.steps % report_every == 0 or start + settings.batch_size >= n_train:
                point = {
                    "kind": "batch",
                    "epoch": epoch,
                    "step": result.steps,
                    "loss": loss,
                    "accuracy": acc,
                    "fraction": result.steps / (settings.epochs * steps_per_epoch),
                }
                result.curve.append(point)
                reporter.event("batch", {k: v for k, v in point.items() if k != "kind"})
                reporter.progress(result.steps, total)
        if seen:
            reporter.stage(f"scoring epoch {epoch} on the test set")
            test = net.evaluate(data.test_x, data.test_y)
            record = {
                "epoch": epoch,
                "train_loss": losses / seen,
                "train_accuracy": correct / seen,
                "test_loss": test["loss"],
                "test_accuracy": test["accuracy"],
                "lr": optimizer.lr,
                "steps": result.steps,
                "elapsed": time.perf_counter() - started,
            }
            result.history.append(record)
            reporter.event("epoch", record)
            reporter.stage("training")
        optimizer.lr *= settings.lr_decay
        if result.status == "stopped":
            break
    result.seconds = time.perf_counter() - started
    reporter.progress(result.steps, total)
    return result
