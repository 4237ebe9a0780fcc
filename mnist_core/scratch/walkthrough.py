"""What the Under the hood page shows, computed here (NumPy only; the page only draws).

- graph_dot(net): the graph in Graphviz's DOT language, one box per node, shapes on the edges.
- trace_step(net, x, y, lr): one training step on one digit, every node's forward value and gradient,
  in the order the graph computed them, and the SGD update it would make.
- pca_2d, top_activating: the write-up's views of the deep features.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from .graph import Graph, Input, Parameter, _shape_text
from .net import Net

COLORS = {"input": "#dbeafe", "param": "#fef3c7", "loss": "#fee2e2"}


def graph_dot(net: Net) -> str:
    """The training graph as DOT text: inputs blue, parameters yellow, operations white, the loss red."""
    lines = [
        "digraph G {",
        '  rankdir=LR; node [shape=box, style="rounded,filled", fontname="sans-serif", fontsize=11];',
        '  edge [fontname="monospace", fontsize=9];',
    ]
    for node in net.graph.order:
        kind = "loss" if node is net.loss else node.kind if isinstance(node, (Input, Parameter)) else "op"
        label = node.name if isinstance(node, (Input, Parameter)) else f"{node.name}\\n[{node.kind}]"
        lines.append(f'  "{node.name}" [label="{label}", fillcolor="{COLORS.get(kind, "white")}"];')
    for node in net.graph.order:
        for inp in node.inputs:
            lines.append(f'  "{inp.name}" -> "{node.name}" [label="{_shape_text(inp.shape)}"];')
    lines.append("}")
    return "\n".join(lines)


@dataclass
class StepTrace:
    order: list[str]  # node names in forward (topological) order
    values: dict[str, np.ndarray]  # forward value of every node
    grads: dict[str, np.ndarray]  # d loss / d node, for every node backward reached (the input image too)
    kinds: dict[str, str]
    loss: float
    probs: np.ndarray  # softmax of the logits
    updates: dict[str, np.ndarray]  # -lr * grad for every parameter
    loss_after: float  # the same digit's loss after that SGD step

    @property
    def backward_order(self) -> list[str]:
        return [n for n in reversed(self.order) if n in self.grads]


def trace_step(net: Net, x: np.ndarray, y: int, lr: float = 0.1) -> StepTrace:
    """Forward and backward on one digit (dropout off, so it is comparable with any other framework).

    The net is left as it was: the update is applied to a copy to measure the loss after it.
    """
    x = np.asarray(x, dtype=net.dtype).reshape(1, -1)
    labels = np.array([y], dtype=np.int64)
    net.x.watch = True  # the gradient with respect to the image too: where the loss is sensitive
    net.graph.mark_requires_grad()
    try:
        loss = float(net.graph.forward({net.x: x, net.y: labels}, training=False))
        net.graph.backward()
        order = [n.name for n in net.graph.order]
        values = {n.name: np.array(n.value) for n in net.graph.order}
        grads = {n.name: np.array(n.grad) for n in net.graph.order if n.grad is not None}
        kinds = {n.name: n.kind for n in net.graph.order}
        probs = np.array(net.loss.probs[0])
    finally:
        net.x.watch = False
        net.graph.mark_requires_grad()
    updates = {p.name: -lr * grads[p.name] for p in net.params if p.name in grads}
    after = copy.deepcopy(net)
    for p in after.params:
        p.value = p.value + updates.get(p.name, 0)
    loss_after = float(after.graph.forward({after.x: x, after.y: labels}, training=False))
    return StepTrace(order, values, grads, kinds, loss, probs, updates, loss_after)


def pca_2d(features: np.ndarray) -> np.ndarray:
    """The first two principal components (rows: samples), by SVD of the centred data."""
    centred = features - features.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def top_activating(features: np.ndarray, unit: int, k: int = 6) -> np.ndarray:
    """Indices of the k samples that excite a unit most, strongest first."""
    return np.argsort(-features[:, unit], kind="stable")[:k]


def templates(net: Net) -> np.ndarray:
    """The first layer's weights, one 28x28 template per unit."""
    return net.layers[0][0].value.T.reshape(-1, 28, 28)


def features(net: Net, x: np.ndarray) -> np.ndarray:
    """The last hidden layer's activations (the deep features); the logits when the net has no hidden layer."""
    return net.run(x, until=net.hidden[-1] if net.hidden else net.logits)


__all__ = ["graph_dot", "trace_step", "StepTrace", "pca_2d", "top_activating", "templates", "features", "Graph"]
