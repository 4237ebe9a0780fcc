"""ReLU -> BatchNorm2d -> dropout in one pass each way, for training on a CPU.

Why: run layer by layer, these three memory-bound layers took about half of tiny_gap's training step on a
2-core CPU: each reads and writes every activation again (ReLU, BatchNorm's statistics, its normalization,
the mask, its product), forward and backward. Fused, the forward reads the convolution's output twice and
writes once; the backward reads it and the incoming gradient twice and writes once. The layers themselves
stay as they are (their weights, their checkpoints, their export, what Inspect shows); only the training
arithmetic changes, and only where nothing watches the single layers (a hook on any of them keeps the
layer-by-layer path).
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import torch
import torch.nn as nn

from .embed import from_numba_cache, use_numba_cache

log = logging.getLogger(__name__)

_kernels = None
# One kernel launch at a time in a process: numba's workqueue threading layer (its fallback where OpenMP is
# missing) aborts the process when two threads launch parallel kernels at once, and in-process jobs are threads.
_launch = threading.Lock()
_broken = False  # numba failed in this process (an unwritable or damaged cache, a missing compiler): stay unfused


def _compiled():
    global _kernels
    if _kernels is None:
        use_numba_cache()
        from . import cpu_kernels

        _kernels = cpu_kernels
    return _kernels


def _rows(t: torch.Tensor) -> np.ndarray:
    """A channels-last batch as the (images x pixels, channels) array the kernels take, without a copy."""
    return t.detach().permute(0, 2, 3, 1).reshape(-1, t.shape[1]).numpy()


def _hooked(module: nn.Module) -> bool:
    return bool(
        module._forward_hooks or module._forward_pre_hooks or module._backward_hooks or module._backward_pre_hooks
    )


def _globally_hooked() -> bool:
    from torch.nn.modules import module as torch_module

    return any(
        getattr(torch_module, name, None)
        for name in (
            "_global_forward_hooks",
            "_global_forward_pre_hooks",
            "_global_backward_hooks",
            "_global_backward_pre_hooks",
        )
    )


def fusable(relu: nn.Module, bn: nn.Module, p: float, z: torch.Tensor) -> bool:
    """Whether relu, bn and a dropout of rate p can run fused on z: training on a CPU in float32 channels-last,
    BatchNorm in its usual form (affine, running statistics with a momentum), nothing hooked on the layers."""
    return (
        not _broken
        and type(relu) is nn.ReLU
        and type(bn) is nn.BatchNorm2d
        and bn.training
        and bn.affine
        and bn.track_running_stats
        and bn.momentum is not None
        and 0 <= p < 1
        and z.device.type == "cpu"
        and z.dtype == torch.float32
        and z.dim() == 4
        and z.shape[0] * z.shape[2] * z.shape[3] > 1  # one value per channel: let BatchNorm raise its own error
        and z.is_contiguous(memory_format=torch.channels_last)
        and not torch.jit.is_tracing()
        and not torch.jit.is_scripting()
        and not any(_hooked(m) for m in (relu, bn))
        and not _globally_hooked()
    )


def dropout_draws(count: int, p: float) -> tuple[torch.Tensor, int]:
    """The int16 draws BitMaskDropout makes for `count` values and the draw from which a value is kept.

    The same calls on the same generator as BitMaskDropout, so a seed drops the same values fused or not.
    """
    if p == 0:
        return torch.zeros(count, dtype=torch.int16), -32768
    words = torch.empty((count + 3) // 4, dtype=torch.int64).random_(-(2**63), None)
    return words.view(torch.int16)[:count], round(p * 65536) - 32768


class _ReluBatchNormDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, weight, bias, bn, p):
        kernels = _compiled()
        images, channels, height, width = z.shape
        pixels, count = height * width, images * height * width
        draws, keep_from = dropout_draws(z.numel(), p)
        rescale = 1.0 / (1.0 - p)
        with _launch:
            sums = kernels.relu_sums(_rows(z), channels).sum(0)
        mean = sums[0] / count
        var = np.maximum(sums[1] / count - mean * mean, 0.0)
        rstd = 1.0 / np.sqrt(var + bn.eps)
        with torch.no_grad():
            bn.running_mean.lerp_(torch.from_numpy(mean).float(), bn.momentum)
            bn.running_var.lerp_(torch.from_numpy(var * count / (count - 1)).float(), bn.momentum)
            bn.num_batches_tracked.add_(1)
        w, b = weight.detach().double().numpy(), bias.detach().double().numpy()
        scale = (w * rstd * rescale).astype(np.float32)
        shift = ((b - mean * w * rstd) * rescale).astype(np.float32)
        out = torch.empty_like(z, memory_format=torch.channels_last)
        with _launch:
            kernels.forward(_rows(z), draws.numpy(), keep_from, scale, shift, pixels, channels, _rows(out))
        ctx.save_for_backward(z, draws, weight)
        ctx.statistics = (mean.astype(np.float32), rstd.astype(np.float32), keep_from, np.float32(rescale))
        return out

    @staticmethod
    def backward(ctx, grad):
        kernels = _compiled()
        z, draws, weight = ctx.saved_tensors
        mean, rstd, keep_from, rescale = ctx.statistics
        images, channels, height, width = z.shape
        pixels, count = height * width, images * height * width
        g, zr, d = _rows(grad.contiguous(memory_format=torch.channels_last)), _rows(z), draws.numpy()
        with _launch:
            sums = kernels.gradient_sums(g, zr, d, keep_from, rescale, mean, rstd, pixels, channels).sum(0)
        bias_grad, weight_grad = sums[0], sums[1]
        z_grad = torch.empty_like(z, memory_format=torch.channels_last)
        gain = (weight.detach().numpy() * rstd).astype(np.float32)
        with _launch:
            kernels.backward(
                g,
                zr,
                d,
                keep_from,
                rescale,
                gain,
                (bias_grad / count).astype(np.float32),
                (weight_grad / count).astype(np.float32),
                mean,
                rstd,
                pixels,
                channels,
                _rows(z_grad),
            )
        return (
            z_grad if ctx.needs_input_grad[0] else None,
            torch.from_numpy(weight_grad).float() if ctx.needs_input_grad[1] else None,
            torch.from_numpy(bias_grad).float() if ctx.needs_input_grad[2] else None,
            None,
            None,
        )


def relu_batchnorm_dropout(z: torch.Tensor, bn: nn.BatchNorm2d, p: float) -> torch.Tensor | None:
    """dropout(bn(relu(z)), p) in training, fused; None when numba cannot run here (the caller goes layer by layer).

    Call only where fusable() holds.
    """
    global _broken
    import numba

    try:
        numba.set_num_threads(min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
        return _ReluBatchNormDropout.apply(z, bn.weight, bn.bias, bn, p)
    except Exception as error:  # numba's compiler or cache failed; the layers still train, only slower
        if not (from_numba_cache(error) or isinstance(error, (ImportError, numba.core.errors.NumbaError))):
            raise
        _broken = True
        log.warning("fused ReLU/BatchNorm/dropout unavailable (%s): training layer by layer", error)
        return None
