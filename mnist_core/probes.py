"""What happens inside a network while it trains: weight and gradient histograms and gradient flow.

Every `every` steps the recorder takes, for each weight tensor, a histogram of the weights and one of
the gradients (fixed bins chosen at the first snapshot, so a shrinking distribution is seen shrinking),
the mean and max |gradient|, the update-to-weight ratio ||w_after - w_before|| / ||w_before||, and for
each ReLU-like layer the share of units that were zero for every digit of the batch ("dead").
Memory is bounded: past MAX_SNAPSHOTS, every other snapshot is dropped and the interval doubles.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import safetensors.numpy
import torch
import torch.nn as nn

BINS = 48
MAX_SNAPSHOTS = 120
SNAPSHOTS_PER_EPOCH = 25  # the automatic interval aims at this many per epoch
RANGE_MARGIN = 1.5  # histogram range = margin x the largest magnitude at the first snapshot
_RELU_LIKE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU)


def auto_interval(steps_per_epoch: int) -> int:
    return max(1, steps_per_epoch // SNAPSHOTS_PER_EPOCH)


@dataclass
class ProbeRecord:
    """The recorded history; arrays are (snapshots, layers[, bins])."""

    layers: list[str]  # weight tensors, e.g. "0.weight"
    activations: list[str]  # ReLU-like modules
    every: int
    steps: list[int] = field(default_factory=list)
    weight_edges: np.ndarray | None = None  # (layers, bins + 1)
    grad_edges: np.ndarray | None = None
    weight_hist: list[np.ndarray] = field(default_factory=list)  # each (layers, bins), as shares that sum to 1
    grad_hist: list[np.ndarray] = field(default_factory=list)
    grad_mean: list[np.ndarray] = field(default_factory=list)  # each (layers,): mean |grad|
    grad_max: list[np.ndarray] = field(default_factory=list)
    update_ratio: list[np.ndarray] = field(default_factory=list)
    dead: list[np.ndarray] = field(default_factory=list)  # each (activations,)

    def __len__(self) -> int:
        return len(self.steps)

    def arrays(self) -> dict[str, np.ndarray]:
        stack = lambda rows, width: np.stack(rows) if rows else np.zeros((0, width))  # noqa: E731
        n = len(self.layers)
        return {
            "steps": np.asarray(self.steps, np.int64),
            "weight_edges": self.weight_edges if self.weight_edges is not None else np.zeros((n, BINS + 1)),
            "grad_edges": self.grad_edges if self.grad_edges is not None else np.zeros((n, BINS + 1)),
            "weight_hist": np.stack(self.weight_hist) if self.weight_hist else np.zeros((0, n, BINS)),
            "grad_hist": np.stack(self.grad_hist) if self.grad_hist else np.zeros((0, n, BINS)),
            "grad_mean": stack(self.grad_mean, n),
            "grad_max": stack(self.grad_max, n),
            "update_ratio": stack(self.update_ratio, n),
            "dead": stack(self.dead, len(self.activations)),
        }

    def thin(self) -> None:
        """Keep every other snapshot and double the interval: bounded memory for any run length."""
        for name in ("steps", "weight_hist", "grad_hist", "grad_mean", "grad_max", "update_ratio", "dead"):
            setattr(self, name, getattr(self, name)[::2])
        self.every *= 2


def _histogram(values: torch.Tensor, edges: np.ndarray) -> np.ndarray:
    """Shares per bin; values outside the range are counted in the edge bins (so shares still sum to 1)."""
    lo, hi = float(edges[0]), float(edges[-1])
    counts = torch.histc(values.detach().float().clamp(lo, hi), bins=len(edges) - 1, min=lo, max=hi)
    return (counts / max(values.numel(), 1)).cpu().numpy()


def _edges(values: torch.Tensor) -> np.ndarray:
    top = float(values.detach().abs().max()) * RANGE_MARGIN or 1e-8
    return np.linspace(-top, top, BINS + 1)


class Recorder:
    """Called by fit() around each training step; cheap on the steps it does not record."""

    def __init__(self, model: nn.Module, every: int):
        if every < 1:
            raise ValueError(f"the recording interval must be at least 1 step (got {every})")
        self.params = [(name, p) for name, p in model.named_parameters() if p.requires_grad and p.dim() >= 2]
        modules = [(name, m) for name, m in model.named_modules() if isinstance(m, _RELU_LIKE)]
        self.record = ProbeRecord([n for n, _ in self.params], [n for n, _ in modules], every)
        self._capturing = False
        self._dead_now: dict[str, float] = {}
        self._before: list[torch.Tensor] | None = None
        self._modules = modules
        self._hooks: list = []  # only on the steps it records: a hooked ReLU keeps fused.py's training path off

    def _dead_hook(self, name: str):
        def hook(_module, _inputs, out):
            alive = (out.detach() > 0).flatten(2).any(-1) if out.dim() == 4 else (out.detach() > 0)
            self._dead_now[name] = float((~alive.any(0)).float().mean())  # zero for every digit of the batch

        return hook

    def due(self, step: int) -> bool:
        return step % self.record.every == 0

    def before_forward(self, step: int) -> None:
        self._capturing = self.due(step)
        self._dead_now = {}
        if self._capturing:
            self._hooks = [m.register_forward_hook(self._dead_hook(name)) for name, m in self._modules]

    def _unhook(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    def before_update(self, step: int) -> None:
        """After backward, before optimizer.step(): the gradients are exactly this step's."""
        self._unhook()
        if not self._capturing:
            return
        r = self.record
        weights = [p.detach() for _, p in self.params]
        grads = [p.grad.detach() if p.grad is not None else torch.zeros_like(p) for _, p in self.params]
        if r.weight_edges is None:
            r.weight_edges = np.stack([_edges(w) for w in weights])
            r.grad_edges = np.stack([_edges(g) for g in grads])
        r.weight_hist.append(np.stack([_histogram(w, e) for w, e in zip(weights, r.weight_edges)]))
        r.grad_hist.append(np.stack([_histogram(g, e) for g, e in zip(grads, r.grad_edges)]))
        r.grad_mean.append(np.array([float(g.abs().mean()) for g in grads]))
        r.grad_max.append(np.array([float(g.abs().max()) for g in grads]))
        self._before = [w.clone() for w in weights]

    def after_update(self, step: int) -> None:
        if not self._capturing or self._before is None:
            return
        r = self.record
        r.update_ratio.append(
            np.array(
                [
                    float((p.detach() - b).norm() / b.norm().clamp(min=1e-12))
                    for (_, p), b in zip(self.params, self._before)
                ]
            )
        )
        r.dead.append(np.array([self._dead_now.get(name, np.nan) for name in r.activations]))
        r.steps.append(step)
        self._before, self._capturing = None, False
        if len(r.steps) > MAX_SNAPSHOTS:
            r.thin()

    def close(self) -> ProbeRecord:
        self._unhook()
        return self.record


# ---------------------------------------------------------------- storage beside a checkpoint


def record_bytes(record: ProbeRecord) -> bytes:
    """The history as a safetensors file's bytes, for the checkpoint's save to write beside the weights."""
    meta = {
        "layers": json.dumps(record.layers),
        "activations": json.dumps(record.activations),
        "every": str(record.every),
    }
    arrays = {
        k: np.ascontiguousarray(v, dtype=np.int64 if k == "steps" else np.float32) for k, v in record.arrays().items()
    }
    return safetensors.numpy.save(arrays, metadata=meta)


def load_record(path: Path) -> ProbeRecord | None:
    """The history stored beside a checkpoint, or None when there is none or it is unreadable."""
    if not path.exists():
        return None
    try:
        with safetensors.safe_open(str(path), framework="np") as f:
            meta = f.metadata()
            arrays = {k: f.get_tensor(k) for k in f.keys()}
        record = ProbeRecord(json.loads(meta["layers"]), json.loads(meta["activations"]), int(meta["every"]))
    except Exception:  # safetensors raises its own error types; a damaged history is simply not shown
        return None
    record.steps = arrays["steps"].tolist()
    record.weight_edges, record.grad_edges = arrays["weight_edges"], arrays["grad_edges"]
    for name in ("weight_hist", "grad_hist", "grad_mean", "grad_max", "update_ratio", "dead"):
        setattr(record, name, list(arrays[name]))
    return record
