"""The only module of the engine that imports torch: it carries a net trained here over to PyTorch.

- to_torch(net): the same net as a regular `mlp` (equal widths) or `stack` (any widths) model of the
  app's registry, with our weights copied in (ours are (in, out) for x @ W; nn.Linear's are (out, in)).
- export_checkpoint(...): that model saved as an ordinary checkpoint, so Draw, Inspect and Embeddings use it.
- torch_gradients(...): PyTorch's autograd on the same step, for the page's side-by-side check.
"""

from __future__ import annotations

import shlex

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .net import Net, TrainResult, TrainSettings


def architecture_of(net: Net) -> tuple[str, dict]:
    """(arch, model settings) of the registry architecture that has exactly this net's layers."""
    c = net.config
    widths = list(c.widths)
    if len(set(widths)) <= 1:
        return "mlp", {
            "depth": len(widths),
            "width": widths[0] if widths else 256,
            "activation": c.activation,
            "dropout": float(c.dropout),
        }
    layers = ["flatten"]
    for w in widths:
        layers += [f"linear {w}", c.activation] + ([f"dropout {c.dropout:g}"] if c.dropout > 0 else [])
    return "stack", {"layers": layers + ["linear 10"]}


def to_torch(net: Net, dtype: torch.dtype = torch.float32) -> nn.Module:
    from ..models import build_model

    arch, settings = architecture_of(net)
    model = build_model(arch, settings).to(dtype)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == len(net.layers), "the registry architecture must have one Linear per layer"
    with torch.no_grad():
        for linear, (W, b) in zip(linears, net.layers):
            linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.value.T)))
            linear.bias.copy_(torch.from_numpy(b.value))
    return model.eval()


def scratch_command(net: Net, settings: TrainSettings, name: str) -> str:
    c = net.config
    parts = [
        "python -m mnist_core scratch",
        f"--widths {','.join(map(str, c.widths)) or 0}",
        f"--activation {c.activation}",
        f"--optimizer {settings.optimizer}",
        f"--lr {settings.lr:g}",
        f"--epochs {settings.epochs}",
        f"--batch-size {settings.batch_size}",
        f"--seed {c.seed}",
    ]
    if c.dropout:
        parts.append(f"--dropout {c.dropout:g}")
    return " ".join(parts + [f"--name {shlex.quote(name)}"])


def export_checkpoint(
    net: Net, result: TrainResult, settings: TrainSettings, name: str, directory=None, overwrite: bool = False
) -> str:
    """Save the net as an ordinary checkpoint; returns the name it was saved under."""
    from ..checkpoints import save
    from ..train import RunResult, TrainConfig

    arch, model_settings = architecture_of(net)
    config = TrainConfig(
        arch=arch,
        model=model_settings,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        optimizer=settings.optimizer,
        lr=settings.lr,
        momentum=settings.momentum,
        seed=net.config.seed,
        device="cpu",
        max_batches=settings.max_batches,
        record=False,
    )
    history = [{k: v for k, v in h.items() if k != "kind"} for h in result.history]
    run = RunResult(
        to_torch(net),
        config,
        result.status,
        history,
        result.seconds,
        "cpu (NumPy engine)",
        message="trained by mnist_core.scratch, the NumPy graph engine",
        steps=result.steps,
    )
    return save(
        run,
        name,
        directory,
        overwrite=overwrite,
        extra={"command": scratch_command(net, settings, name), "engine": "mnist_core.scratch"},
    )


def torch_gradients(net: Net, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """PyTorch's gradient of the same loss with respect to the input, each node's output and each parameter.

    The net is rebuilt from the same weights with torch ops in float64 (dropout off), so the page can show
    the largest difference to the engine's gradient for every tensor. Keys are the engine's node names.
    """
    grads: dict[str, torch.Tensor] = {}
    h = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    tensors = {"x": h}
    act = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}[net.config.activation]
    params = {}
    for i, (W, b) in enumerate(net.layers, start=1):
        Wt = torch.tensor(W.value, dtype=torch.float64, requires_grad=True)
        bt = torch.tensor(b.value, dtype=torch.float64, requires_grad=True)
        params[W.name], params[b.name] = Wt, bt
        m = h @ Wt
        a = m + bt
        tensors[f"matmul{i}"], tensors[f"add{i}"] = m, a
        h = a
        if i < len(net.layers):
            h = act(a)
            tensors[f"{net.config.activation}{i}"] = h
            tensors[f"dropout{i}"] = h  # dropout is off in this check: the identity
    loss = F.cross_entropy(h, torch.as_tensor(y, dtype=torch.int64))
    for t in tensors.values():
        if t.requires_grad and not t.is_leaf:
            t.retain_grad()
    loss.backward()
    for name, t in {**tensors, **params}.items():
        if t.grad is not None:
            grads[name] = t.grad.numpy()
    return grads
