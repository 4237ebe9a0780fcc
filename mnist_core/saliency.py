"""Why a model answered what it did: feature maps, Grad-CAM and integrated gradients for one digit."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import standardize
from .models import ACTIVATIONS, layer_labels

BACKGROUND = float(standardize(0.0))  # a black pixel, standardized: the "no ink" baseline
_ACTIVATION_TYPES = (*ACTIVATIONS.values(), nn.ReLU6, nn.Hardswish)


@dataclass
class FeatureMap:
    name: str  # e.g. "conv 1 (layer 1), after its ReLU"
    maps: np.ndarray  # (channels, height, width)


def private_view(model: nn.Module) -> nn.Module:
    """The same network for one call: its own module objects (own hooks, own train/eval flag) around the
    very same weights, in eval mode.

    The app loads a model once and shares it between every visitor's session, each running in its own
    thread: a hook put on the shared model would see every session's forward pass, and an eval()/train()
    switch would flip it for all of them. A view costs a shallow copy of each module object, no weights.
    """
    views: dict[int, nn.Module] = {}  # a module used in two places stays one module in the view

    def view(module: nn.Module) -> nn.Module:
        if id(module) not in views:
            clone = copy.copy(module)  # a new __dict__ sharing the parameter and buffer dicts
            views[id(module)] = clone
            state = clone.__dict__
            for key, value in list(state.items()):
                if "hooks" in key and isinstance(value, dict):
                    state[key] = type(value)(value)  # hooks added to the view stay on the view
            state["_modules"] = {
                name: None if child is None else view(child) for name, child in module._modules.items()
            }
            state["training"] = False
        return views[id(module)]

    return view(model)


def _captured(modules: list[nn.Module]):
    """Forward hooks on a private view's modules, each keeping its outputs in a list of this call's own
    (the hooks go away with the view)."""
    store: list[list[torch.Tensor]] = [[] for _ in modules]
    for module, kept in zip(modules, store):
        module.register_forward_hook(lambda _m, _i, out, kept=kept: kept.append(out))
    return store


def _conv_outputs(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """For each conv layer, the module whose output shows it: the activation right after it (past a BatchNorm)
    when they sit in one Sequential, which runs them in the order listed; else the conv itself."""
    labels = layer_labels(model)
    picked = []
    for path, module in model.named_modules():
        if path not in labels or not isinstance(module, nn.Conv2d):
            continue
        shown, label = module, labels[path]
        parent_path, _, own = path.rpartition(".")
        parent = model.get_submodule(parent_path)
        if isinstance(parent, nn.Sequential):
            siblings = list(parent._modules.items())
            at = [name for name, _ in siblings].index(own)
            for _name, later in siblings[at + 1 : at + 3]:  # skip a BatchNorm between conv and activation
                if isinstance(later, nn.Conv2d):
                    break
                if isinstance(later, _ACTIVATION_TYPES):
                    shown, label = later, f"{labels[path]}, after its {type(later).__name__}"
                    break
        picked.append((label, shown))
    return picked


def has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


@torch.no_grad()
def feature_maps(model: nn.Module, x: torch.Tensor) -> list[FeatureMap]:
    """The maps every conv layer computes for one input (1, C, H, W); empty for a model without convs."""
    view = private_view(model)
    layers = _conv_outputs(view)
    store = _captured([module for _, module in layers])
    view(x)
    return [FeatureMap(label, kept[0][0].float().cpu().numpy()) for (label, _), kept in zip(layers, store) if kept]


def _normalized(heat: torch.Tensor) -> np.ndarray:
    heat = heat.detach().float().cpu()
    top = float(heat.max())
    return (heat / top).numpy() if top > 0 else np.zeros(tuple(heat.shape), np.float32)


def grad_cam(model: nn.Module, x: torch.Tensor, target: int) -> np.ndarray:
    """Grad-CAM at the last conv layer, upsampled to the input: (28, 28), non-negative, max 1 (or all 0)."""
    view = private_view(model)
    layers = _conv_outputs(view)
    if not layers:
        raise ValueError("Grad-CAM needs a conv layer; use integrated_gradients for fully connected nets")
    (kept,) = _captured([layers[-1][1]])
    with torch.enable_grad():
        logits = view(x.detach().clone().requires_grad_(True))  # an input that needs grad: a graph even when frozen
        # The gradient with respect to the maps only: nothing lands in the shared parameters' .grad.
        (grads,) = torch.autograd.grad(logits[0, target], kept[-1])
    maps, grads = kept[-1][0].detach(), grads[0]
    weights = grads.mean(dim=(1, 2))  # one weight per channel: its average gradient
    cam = F.relu((weights[:, None, None] * maps).sum(0))
    cam = F.interpolate(cam[None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    return _normalized(cam)


def integrated_gradients(model: nn.Module, x: torch.Tensor, target: int, steps: int = 32) -> np.ndarray:
    """Integrated gradients from a black image to x, summed over channels: (28, 28), signed."""
    baseline = torch.full_like(x, BACKGROUND)
    alphas = torch.linspace(1 / steps, 1.0, steps, device=x.device).view(-1, 1, 1, 1)
    path = (baseline + alphas * (x - baseline)).detach().requires_grad_(True)
    view = private_view(model)
    with torch.enable_grad():
        (grads,) = torch.autograd.grad(view(path)[:, target].sum(), path)  # the shared .grad stays untouched
    attribution = (x - baseline)[0] * grads.mean(0)
    return attribution.sum(0).detach().float().cpu().numpy()


def explain(model: nn.Module, x: torch.Tensor, target: int) -> tuple[str, np.ndarray]:
    """(method name, map in 0-1 over the input): Grad-CAM for conv nets, |integrated gradients| otherwise."""
    if has_conv(model):
        return "Grad-CAM (last conv layer)", grad_cam(model, x, target)
    return "integrated gradients (positive part)", _normalized(
        torch.as_tensor(integrated_gradients(model, x, target)).clamp(min=0)
    )


@torch.no_grad()
def dense_activations(model: nn.Module, x: torch.Tensor) -> list[tuple[str, np.ndarray]]:
    """For one input, the output of every fully connected layer's activation (and the final logits),
    each named by its layer: ("ReLU after linear 1 (layer 3)", values)."""
    view = private_view(model)
    labels = layer_labels(view)
    watched = [
        (labels[path], m) for path, m in view.named_modules() if path in labels and isinstance(m, _ACTIVATION_TYPES)
    ]
    linears = [(path, m) for path, m in view.named_modules() if path in labels and isinstance(m, nn.Linear)]
    if linears:
        watched.append((labels[linears[-1][0]].replace("output layer", "output layer: logits", 1), linears[-1][1]))
    store = _captured([m for _, m in watched])
    view(x)
    return [
        (label, kept[0][0].float().cpu().numpy())
        for (label, _), kept in zip(watched, store)
        if kept and kept[0].dim() == 2
    ]
