"""A computational graph, from scratch: nodes, a topological order, forward, and backward by the chain rule.

Every node knows its input nodes and its shape (None stands for the batch dimension, known only when
data arrives). An operation owns two things: how to compute its value from its inputs' values
(forward), and how to turn the gradient of the loss with respect to its value into the gradients with
respect to each input (backward: its local derivative times the incoming gradient). The graph does the
rest: it orders the nodes so that every node comes after its inputs, runs forward in that order, and
backward in the reverse order, adding up the gradients that reach a node along different paths.

NumPy only; no deep learning library anywhere in this module.
"""

from __future__ import annotations

import itertools

import numpy as np

DTYPES = {"float32": np.float32, "float64": np.float64}


class GraphError(ValueError):
    """A graph that cannot be computed; the message names the node at fault."""


def _shape_text(shape) -> str:
    return "(" + ", ".join("N" if d is None else str(d) for d in shape) + ")"


def broadcast_shapes(a: tuple, b: tuple, where: str) -> tuple:
    """NumPy's broadcasting rule on shapes that may hold None (the batch size, not known yet)."""
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        da = a[-i] if i <= len(a) else 1
        db = b[-i] if i <= len(b) else 1
        if da == 1:
            out.append(db)
        elif db == 1 or da == db:
            out.append(da)
        else:
            raise GraphError(f"{where}: shapes {_shape_text(a)} and {_shape_text(b)} do not broadcast")
    return tuple(reversed(out))


def unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum a gradient over the axes that broadcasting stretched, back to the input's shape.

    If b of shape (10,) was added to every row of a (N, 10) array, each b[j] touched N outputs, so
    its gradient is the sum of those N output gradients.
    """
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad


class Node:
    """A value in the graph. Subclasses set self.shape and implement forward and backward."""

    _ids = itertools.count(1)
    kind = "node"

    def __init__(self, inputs: list[Node], name: str | None = None):
        self.inputs = list(inputs)
        self.name = name or f"{self.kind}{next(Node._ids)}"
        self.value: np.ndarray | None = None
        self.grad: np.ndarray | None = None
        self.shape: tuple = ()
        self.requires_grad = True  # Graph sets it: False where no parameter (or watched input) lies upstream

    def forward(self, *values: np.ndarray, training: bool = False) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad: np.ndarray, *values: np.ndarray) -> tuple:
        """The loss's gradient with respect to each input, given its gradient with respect to this node."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, shape={_shape_text(self.shape)})"


class Input(Node):
    """Data fed in at each forward pass: the images, the labels."""

    kind = "input"

    def __init__(self, shape: tuple, name: str | None = None, dtype=None):
        super().__init__([], name)
        self.shape = tuple(shape)
        self.dtype = dtype  # None: the graph's float type; labels use np.int64
        self.watch = False  # True: backward also leaves the loss's gradient with respect to this input in .grad


class Parameter(Node):
    """A value the optimizer learns. Its value lives on the node; backward leaves its gradient in .grad."""

    kind = "param"

    def __init__(self, value: np.ndarray, name: str | None = None):
        super().__init__([], name)
        self.value = np.asarray(value)
        self.shape = self.value.shape


# ---------------------------------------------------------------- operations


class MatMul(Node):
    """x @ W: (N, n) times (n, m) gives (N, m)."""

    kind = "matmul"

    def __init__(self, a: Node, b: Node, name: str | None = None):
        super().__init__([a, b], name)
        if len(a.shape) != 2 or len(b.shape) != 2 or a.shape[1] != b.shape[0]:
            raise GraphError(
                f"{self.name}: cannot multiply {a.name} {_shape_text(a.shape)} by "
                f"{b.name} {_shape_text(b.shape)}: the inner sizes must match"
            )
        self.shape = (a.shape[0], b.shape[1])

    def forward(self, a, b, training=False):
        return a @ b

    def backward(self, grad, a, b):
        # d(a@b)/da contracts with b over the output columns; d(a@b)/db with a over the batch rows.
        # The image batch needs no gradient when training, and it is the costliest product: skip it.
        ga = grad @ b.T if self.inputs[0].requires_grad else None
        gb = a.T @ grad if self.inputs[1].requires_grad else None
        return ga, gb


class Add(Node):
    """a + b with broadcasting (a bias vector added to every row)."""

    kind = "add"

    def __init__(self, a: Node, b: Node, name: str | None = None):
        super().__init__([a, b], name)
        self.shape = broadcast_shapes(a.shape, b.shape, self.name)

    def forward(self, a, b, training=False):
        return a + b

    def backward(self, grad, a, b):
        return unbroadcast(grad, a.shape), unbroadcast(grad, b.shape)


class Mul(Node):
    """a * b, elementwise, with broadcasting."""

    kind = "mul"

    def __init__(self, a: Node, b: Node, name: str | None = None):
        super().__init__([a, b], name)
        self.shape = broadcast_shapes(a.shape, b.shape, self.name)

    def forward(self, a, b, training=False):
        return a * b

    def backward(self, grad, a, b):
        return unbroadcast(grad * b, a.shape), unbroadcast(grad * a, b.shape)


class Elementwise(Node):
    """An operation applied to each number on its own; the shape does not change."""

    def __init__(self, x: Node, name: str | None = None):
        super().__init__([x], name)
        self.shape = x.shape


class ReLU(Elementwise):
    kind = "relu"

    def forward(self, x, training=False):
        return np.maximum(x, 0)

    def backward(self, grad, x):
        return (grad * (x > 0),)


class Sigmoid(Elementwise):
    kind = "sigmoid"

    def forward(self, x, training=False):
        # exp of a negative number only: no overflow for large |x|
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e))

    def backward(self, grad, x):
        s = self.value  # forward's output: sigma' = sigma (1 - sigma)
        return (grad * s * (1 - s),)


class Tanh(Elementwise):
    kind = "tanh"

    def forward(self, x, training=False):
        return np.tanh(x)

    def backward(self, grad, x):
        return (grad * (1 - self.value**2),)


class Dropout(Elementwise):
    """While training, zero each number with probability p and scale the rest by 1/(1-p) (inverted dropout),
    so nothing changes at test time. The mask comes from a seeded generator: runs repeat exactly."""

    kind = "dropout"

    def __init__(self, x: Node, p: float, rng: np.random.Generator, name: str | None = None):
        super().__init__(x, name)
        if not 0 <= p < 1:
            raise GraphError(f"{self.name}: dropout probability must be in [0, 1) (got {p})")
        self.p, self.rng, self.mask = p, rng, None

    def forward(self, x, training=False):
        if not training or self.p == 0:
            self.mask = None
            return x
        self.mask = (self.rng.random(x.shape) >= self.p).astype(x.dtype) / x.dtype.type(1 - self.p)
        return x * self.mask

    def backward(self, grad, x):
        return (grad if self.mask is None else grad * self.mask,)


class Mean(Node):
    """The mean of all the numbers: a scalar."""

    kind = "mean"

    def __init__(self, x: Node, name: str | None = None):
        super().__init__([x], name)
        self.shape = ()

    def forward(self, x, training=False):
        return np.asarray(x.mean())

    def backward(self, grad, x):
        return (np.full(x.shape, grad / x.size, dtype=x.dtype),)


class SoftmaxCrossEntropy(Node):
    """Mean cross-entropy of softmax(logits) against integer labels, fused for stability.

    Computed as logsumexp(z) - z[label] with the row maximum subtracted first (no overflow), and the
    gradient is the famous (softmax(z) - onehot(label)) / N, which never divides by a small probability.
    """

    kind = "softmax_ce"

    def __init__(self, logits: Node, labels: Node, name: str | None = None):
        super().__init__([logits, labels], name)
        if (
            len(logits.shape) != 2
            or len(labels.shape) != 1
            or not (logits.shape[0] is None or labels.shape[0] is None or logits.shape[0] == labels.shape[0])
        ):
            raise GraphError(
                f"{self.name}: needs logits (N, classes) and labels (N,); got {logits.name} "
                f"{_shape_text(logits.shape)} and {labels.name} {_shape_text(labels.shape)}"
            )
        self.shape = ()
        self.probs: np.ndarray | None = None

    def forward(self, z, labels, training=False):
        if z.shape[0] != labels.shape[0]:
            raise GraphError(f"{self.name}: {z.shape[0]} rows of logits but {labels.shape[0]} labels")
        shifted = z - z.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        self.probs = np.exp(log_probs)
        return np.asarray(-log_probs[np.arange(len(labels)), labels].mean())

    def backward(self, grad, z, labels):
        d = self.probs.copy()
        d[np.arange(len(labels)), labels] -= 1
        return d * (grad / len(labels)), None  # labels are data: no gradient


# ---------------------------------------------------------------- the graph


def topological_order(outputs: list[Node]) -> list[Node]:
    """Every ancestor of the outputs, each after all of its inputs (depth-first; a cycle is an error)."""
    order: list[Node] = []
    state: dict[int, str] = {}  # id -> "open" while its inputs are being visited, "done" after
    for root in outputs:
        stack = [(root, iter(root.inputs))]
        if state.get(id(root)) == "done":
            continue
        state[id(root)] = "open"
        while stack:
            node, pending = stack[-1]
            child = next(pending, None)
            if child is None:
                stack.pop()
                state[id(node)] = "done"
                order.append(node)
            elif state.get(id(child)) == "open":
                raise GraphError(
                    f"{child.name}: the graph has a cycle through this node (it is its own input, via {node.name})"
                )
            elif id(child) not in state:
                state[id(child)] = "open"
                stack.append((child, iter(child.inputs)))
    return order


class Graph:
    """The nodes needed to compute `output`, in topological order, with forward and backward passes.

    params: the parameters to learn. Each must feed the output, else the optimizer would update a
    value that no gradient ever reaches, so that is refused naming the parameter.
    """

    def __init__(self, output: Node, params: list[Parameter] | None = None):
        self.output = output
        self.order = topological_order([output])
        self.inputs = [n for n in self.order if isinstance(n, Input)]
        self.params = list(params) if params is not None else [n for n in self.order if isinstance(n, Parameter)]
        in_graph = {id(n) for n in self.order}
        for p in self.params:
            if id(p) not in in_graph:
                raise GraphError(
                    f"{p.name}: parameter is not used by {output.name}; "
                    "no gradient would ever reach it (connect it or leave it out)"
                )
        self.mark_requires_grad()

    def mark_requires_grad(self) -> None:
        """A node needs a gradient if a parameter or a watched input lies upstream of it."""
        for node in self.order:
            if isinstance(node, Input):
                node.requires_grad = node.watch
            elif not isinstance(node, Parameter):
                node.requires_grad = any(i.requires_grad for i in node.inputs)

    def forward(self, feed: dict[Node, np.ndarray], training: bool = False) -> np.ndarray:
        for node in self.inputs:
            if node not in feed:
                raise GraphError(f"{node.name}: no value fed for this input")
        for node in self.order:
            if isinstance(node, Input):
                value = np.asarray(feed[node])
                if value.ndim != len(node.shape) or any(
                    d is not None and d != s for d, s in zip(node.shape, value.shape)
                ):
                    raise GraphError(
                        f"{node.name}: fed an array of shape {value.shape}, expected {_shape_text(node.shape)}"
                    )
                node.value = value
            elif not isinstance(node, Parameter):
                node.value = node.forward(*(i.value for i in node.inputs), training=training)
        return self.output.value

    def backward(self) -> None:
        """Chain rule in reverse topological order: each node hands its gradient to its inputs."""
        if self.output.value is None or np.ndim(self.output.value) != 0:
            raise GraphError(f"{self.output.name}: backward starts from a scalar loss after a forward pass")
        for node in self.order:
            node.grad = None
        self.output.grad = np.ones((), dtype=self.output.value.dtype)
        for node in reversed(self.order):
            if node.grad is None or not node.inputs or not node.requires_grad:
                continue
            grads = node.backward(node.grad, *(i.value for i in node.inputs))
            for inp, g in zip(node.inputs, grads):
                if g is None or not inp.requires_grad:
                    continue
                inp.grad = g if inp.grad is None else inp.grad + g  # paths that meet add up
