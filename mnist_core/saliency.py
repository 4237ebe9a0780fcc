"""Why a model answered what it did: feature maps, Grad-CAM and integrated gradients for one digit."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import standardize
from .models import ACTIVATIONS

BACKGROUND = float(standardize(0.0))  # a black pixel, standardized: the "no ink" baseline
_ACTIVATION_TYPES = tuple(ACTIVATIONS.values())


@dataclass
class FeatureMap:
    name: str  # e.g. "conv 1 (layer 0, after ReLU)"
    maps: np.ndarray  # (channels, height, width)


def _conv_outputs(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """For each conv layer, the module whose output shows it: its activation when one follows it directly."""
    leaves = [(name, m) for name, m in model.named_modules() if not list(m.children())]
    picked, count = [], 0
    for i, (name, module) in enumerate(leaves):
        if not isinstance(module, nn.Conv2d):
            continue
        count += 1
        shown, label = module, f"conv {count} ({name})"
        for later_name, later in leaves[i + 1:i + 3]:  # skip a BatchNorm between conv and activation
            if isinstance(later, nn.Conv2d):
                break
            if isinstance(later, _ACTIVATION_TYPES):
                shown, label = later, f"conv {count} ({name}, after {type(later).__name__})"
                break
        picked.append((label, shown))
    return picked


def has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


@torch.no_grad()
def feature_maps(model: nn.Module, x: torch.Tensor) -> list[FeatureMap]:
    """The maps every conv layer computes for one input (1, 1, 28, 28); empty for a model without convs."""
    captured: list[FeatureMap] = []
    hooks = [module.register_forward_hook(
        lambda _m, _i, out, label=label: captured.append(FeatureMap(label, out[0].float().cpu().numpy())))
        for label, module in _conv_outputs(model)]
    try:
        model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return captured


def _normalized(heat: torch.Tensor) -> np.ndarray:
    heat = heat.detach().float().cpu()
    top = float(heat.max())
    return (heat / top).numpy() if top > 0 else np.zeros(tuple(heat.shape), np.float32)


def grad_cam(model: nn.Module, x: torch.Tensor, target: int) -> np.ndarray:
    """Grad-CAM at the last conv layer, upsampled to the input: (28, 28), non-negative, max 1 (or all 0)."""
    layers = _conv_outputs(model)
    if not layers:
        raise ValueError("Grad-CAM needs a conv layer; use integrated_gradients for fully connected nets")
    store: dict[str, torch.Tensor] = {}

    def keep(_m, _i, out):
        out.retain_grad()
        store["maps"] = out

    hook = layers[-1][1].register_forward_hook(keep)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            logits = model(x.detach().clone().requires_grad_(True))
            model.zero_grad(set_to_none=True)
            logits[0, target].backward()
    finally:
        hook.remove()
        model.train(was_training)
    maps, grads = store["maps"][0], store["maps"].grad[0]
    weights = grads.mean(dim=(1, 2))  # one weight per channel: its average gradient
    cam = F.relu((weights[:, None, None] * maps).sum(0))
    cam = F.interpolate(cam[None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    return _normalized(cam)


def integrated_gradients(model: nn.Module, x: torch.Tensor, target: int, steps: int = 32) -> np.ndarray:
    """Integrated gradients from a black image to x, summed over channels: (28, 28), signed."""
    baseline = torch.full_like(x, BACKGROUND)
    alphas = torch.linspace(1 / steps, 1.0, steps, device=x.device).view(-1, 1, 1, 1)
    path = (baseline + alphas * (x - baseline)).detach().requires_grad_(True)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            model.zero_grad(set_to_none=True)
            model(path)[:, target].sum().backward()
    finally:
        model.train(was_training)
    attribution = (x - baseline)[0] * path.grad.mean(0)
    return attribution.sum(0).detach().float().cpu().numpy()


def explain(model: nn.Module, x: torch.Tensor, target: int) -> tuple[str, np.ndarray]:
    """(method name, map in 0-1 over the input): Grad-CAM for conv nets, |integrated gradients| otherwise."""
    if has_conv(model):
        return "Grad-CAM (last conv layer)", grad_cam(model, x, target)
    return "integrated gradients (positive part)", _normalized(torch.as_tensor(integrated_gradients(model, x, target)).clamp(min=0))


@torch.no_grad()
def dense_activations(model: nn.Module, x: torch.Tensor) -> list[tuple[str, np.ndarray]]:
    """For one input, the output of every fully connected layer's activation (and the final logits)."""
    captured: list[tuple[str, np.ndarray]] = []
    leaves = [(name, m) for name, m in model.named_modules() if not list(m.children())]
    watched = [(f"{name} ({type(m).__name__})", m) for name, m in leaves if isinstance(m, _ACTIVATION_TYPES)]
    linears = [(name, m) for name, m in leaves if isinstance(m, nn.Linear)]
    if linears:
        watched.append((f"{linears[-1][0]} (logits)", linears[-1][1]))

    def keep(label):
        def hook(_m, _i, out):
            if out.dim() == 2:
                captured.append((label, out[0].float().cpu().numpy()))
        return hook

    hooks = [m.register_forward_hook(keep(label)) for label, m in watched]
    try:
        model.eval()
        model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return captured
