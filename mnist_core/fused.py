"""ReLU -> BatchNorm2d -> dropout in one pass each way, and small 3x3 convolutions, for training on a CPU.

Why: run layer by layer, these three memory-bound layers took about a third of tiny_gap's training step on a
2-core CPU: torch's channels-last BatchNorm is slow for 8-32 channels, and each layer reads and writes every
activation again, forward and backward. Fused, the forward reads the convolution's output twice and writes
once; the backward reads it and the incoming gradient twice and writes once. The layers themselves stay as
they are (their weights, their checkpoints, their export, what Inspect shows); only the training arithmetic
changes, and only where nothing watches the single layers (a hook on any of them keeps the layer-by-layer path).

The convolutions: oneDNN's AVX-512 kernels work in blocks of 16 channels, and tiny_gap's 8- to 32-channel 3x3
convolutions ran at 35-50% of the arithmetic's speed (forward, the input's gradient and the weights'). The kernels'
own keep 8-float vectors of output channels for a block of pixels in registers: together about 1.4x faster than
oneDNN's on a 2-core AVX-512 CPU (benchmarks/throughput.py --step-variants prints both).

The kernels (csrc/fused_cpu.cpp) are C++, compiled once per machine with what torch's extensions use (a C++
compiler and ninja) and kept in torch's extension folder; they run on torch's own thread pool. Where they
cannot be built (no compiler), training goes layer by layer, with the same masks, and the log says why.
"""

from __future__ import annotations

import hashlib
import logging
import math
import platform
import threading
from pathlib import Path

import torch
import torch.nn as nn

log = logging.getLogger(__name__)

SOURCE = Path(__file__).parent / "csrc" / "fused_cpu.cpp"
MAX_PERIOD_VECTORS = 8  # the kernels' widest period, lcm(channels, 16) / 16: 8 for any multiple of 2 up to 64
MAX_CONV_CHANNELS = 32  # the convolutions keep every output channel of a block of pixels in registers

_library: Path | None = None
_broken = False  # the kernels could not be built or loaded in this process: stay layer by layer
_building = threading.Lock()


def module_name() -> str:
    """The compiled module's name, one per CPU, Python and torch: the kernels are compiled for this CPU's
    instruction set and against this torch, and a home folder shared with other machines or other venvs keeps
    each build apart. torch keeps builds in ~/.cache/torch_extensions (or TORCH_EXTENSIONS_DIR), by name."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        pass
    build = f"{cpu}|{platform.python_version()}|{torch.__version__}"
    return f"mnist_fused_cpu_{hashlib.sha256(build.encode()).hexdigest()[:12]}"


def kernels():
    """The compiled kernels (torch.ops.mnist_fused), built on this machine's first call (about 30 s) and loaded from
    disk after."""
    global _library
    if _library is not None:
        return torch.ops.mnist_fused
    with _building:
        if _library is None:
            # Its import warns "No CUDA runtime is found" on a CUDA build of torch without a GPU: the kernels are
            # for the CPU, so the warning would only puzzle a user reading the log.
            logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
            from torch.utils.cpp_extension import load

            log.info("loading the fused kernels (compiled on this machine's first use)")
            _library = Path(
                load(
                    name=module_name(),
                    sources=[str(SOURCE)],
                    extra_cflags=["-O3", "-march=native", "-fopenmp"],
                    is_python_module=False,
                )
            )
    return torch.ops.mnist_fused


def library() -> Path:
    """The compiled library this process loaded."""
    kernels()
    return _library


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


def _traced() -> bool:
    # the operators declare no schema torch.compile or TorchScript could trace
    return torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()


def call_allows() -> bool:
    """What holds for a whole forward call, whatever the layer: the kernels not known to be unbuildable here, no
    tracing or compiling, no global module hook, no CPU autocast (torch's layers would compute in bfloat16 there:
    the kernels, float32, must not quietly stand in). A caller checking many layers passes it to each check once."""
    return not _broken and not _traced() and not _globally_hooked() and not torch.is_autocast_enabled("cpu")


def _channels_last_float_cpu(x: torch.Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.dim() == 4
        and x.is_contiguous(memory_format=torch.channels_last)
    )


def _kernel_convolution(conv: nn.Module, size: int, x: torch.Tensor, allowed: bool | None) -> bool:
    # what the kernels' convolutions compute: stride 1, no padding, no bias, 1-32 channels each side, float32
    return (
        type(conv) is nn.Conv2d
        and conv.kernel_size == (size, size)
        and conv.stride == (1, 1)
        and conv.padding == (0, 0)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.bias is None
        and 1 <= conv.in_channels <= MAX_CONV_CHANNELS
        and 1 <= conv.out_channels <= MAX_CONV_CHANNELS
        and conv.weight.dtype == torch.float32
        and _channels_last_float_cpu(x)
        and x.shape[1] == conv.in_channels
        and x.shape[2] >= size
        and x.shape[3] >= size
        and not _hooked(conv)
        and (call_allows() if allowed is None else allowed)
    )


def conv_fusable(conv: nn.Module, x: torch.Tensor, allowed: bool | None = None) -> bool:
    """Whether conv can run on the kernels' 3x3 convolutions for x: an unhooked nn.Conv2d, 3x3, stride 1, no
    padding, no bias, 1 to 32 channels each side, on a float32 channels-last CPU batch of at least 3x3 pixels.
    allowed: call_allows(), where the caller has it."""
    return _kernel_convolution(conv, 3, x, allowed)


def _pair(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def conv_pool_fusable(conv: nn.Module, pool: nn.Module, x: torch.Tensor, allowed: bool | None = None) -> bool:
    """Whether conv then pool can run as the kernels' one pass: an unhooked 1x1 nn.Conv2d (stride 1, no padding,
    no bias, 1 to 32 channels each side) then an unhooked 2x2 nn.MaxPool2d of stride 2, on a float32
    channels-last CPU batch of at least 2x2 pixels. allowed: call_allows(), where the caller has it."""
    return (
        type(pool) is nn.MaxPool2d
        and _pair(pool.kernel_size) == (2, 2)
        and _pair(pool.stride) == (2, 2)
        and _pair(pool.padding) == (0, 0)
        and _pair(pool.dilation) == (1, 1)
        and not pool.ceil_mode
        and not pool.return_indices
        and not _hooked(pool)
        and _kernel_convolution(conv, 1, x, allowed)
        and x.shape[2] >= 2
        and x.shape[3] >= 2
    )


def fusable(relu: nn.Module, bn: nn.Module, p: float, z: torch.Tensor, allowed: bool | None = None) -> bool:
    """Whether relu, bn and a dropout of rate p can run fused on z: training on a CPU in float32 channels-last,
    BatchNorm in its usual form (affine, running statistics with a momentum), nothing hooked on the layers.
    allowed: call_allows(), where the caller has it."""
    return (
        type(relu) is nn.ReLU
        and type(bn) is nn.BatchNorm2d
        and bn.training
        and bn.affine
        and bn.track_running_stats
        and bn.momentum is not None
        and 0 <= p
        and round(p * 65536) < 65536  # within 1/131,072 of 1 BitMaskDropout keeps nothing, so do the layers
        and _channels_last_float_cpu(z)
        and math.lcm(z.shape[1], 16) // 16 <= MAX_PERIOD_VECTORS
        and z.shape[0] * z.shape[2] * z.shape[3] > 1  # one value per channel: let BatchNorm raise its own error
        and not _hooked(relu)
        and not _hooked(bn)
        and (call_allows() if allowed is None else allowed)
    )


class _ReluBatchNormDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, weight, bias, bn, p, moments):
        out = torch.empty_like(z, memory_format=torch.channels_last)
        kept, mean, rstd = kernels().block_forward(
            z,
            weight,
            bias,
            bn.running_mean,
            bn.running_var,
            bn.num_batches_tracked,
            bn.momentum,
            bn.eps,
            p,
            out,
            moments,
        )
        ctx.save_for_backward(z, kept, weight, mean, rstd)
        ctx.rescale = 1.0 / (1.0 - p)
        return out

    @staticmethod
    def backward(ctx, grad):
        z, kept, weight, mean, rstd = ctx.saved_tensors
        z_grad = torch.empty_like(z, memory_format=torch.channels_last)
        weight_grad, bias_grad = kernels().block_backward(
            grad.contiguous(memory_format=torch.channels_last), z, kept, weight, mean, rstd, ctx.rescale, z_grad
        )
        return (
            z_grad if ctx.needs_input_grad[0] else None,
            weight_grad if ctx.needs_input_grad[1] else None,
            bias_grad if ctx.needs_input_grad[2] else None,
            None,
            None,
            None,
        )


class _Conv3x3(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, center):
        ctx.save_for_backward(x, weight)
        out, moments = kernels().conv3x3_forward(x, weight, center)
        if moments is None:
            return out, None
        ctx.mark_non_differentiable(moments)
        return out, moments

    @staticmethod
    def backward(ctx, grad, _moments_grad):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous(memory_format=torch.channels_last)
        ops = kernels()
        return (
            ops.conv3x3_input_grad(grad, weight) if ctx.needs_input_grad[0] else None,
            ops.conv3x3_weight_grad(grad, x) if ctx.needs_input_grad[1] else None,
            None,
        )


class _Conv1x1MaxPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight):
        out, which = kernels().conv1x1_pool_forward(x, weight)
        ctx.save_for_backward(x, weight, which)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, weight, which = ctx.saved_tensors
        x_grad, weight_grad = kernels().conv1x1_pool_backward(
            grad.contiguous(memory_format=torch.channels_last), x, weight, which, ctx.needs_input_grad[0]
        )
        return x_grad, weight_grad if ctx.needs_input_grad[1] else None


def available() -> bool:
    """Whether the kernels run in this process, building or loading them on the first call; False (logged once)
    where they cannot be built: the caller goes layer by layer."""
    global _broken
    if _library is not None or _broken:
        return not _broken
    try:
        kernels()
    except Exception as error:  # no compiler or ninja, an unwritable folder: the layers still train, only slower
        _broken = True
        log.warning(
            "fused kernels (ReLU/BatchNorm/dropout, 3x3 convolutions) unavailable: training layer by layer, slower. The kernels need a C++ "
            "compiler and ninja (e.g. apt-get install g++ ninja-build); building them said: %s",
            " ".join(str(error).split())[:240],
        )
    return not _broken


def loaded() -> bool:
    """Whether this process has already built or loaded the kernels, or found that it cannot."""
    return _library is not None or _broken


def moments_center(relu: nn.Module | None, bn: nn.Module | None, drop: nn.Module | None) -> torch.Tensor | None:
    """The BatchNorm's running mean where a convolution is followed by what looks like a fusable ReLU -> BatchNorm2d
    -> dropout block (fusable() decides on the convolution's output): the convolution can then sum the block's
    moments about it as it writes its output, and the block skips its two statistics passes (it takes them where
    the running mean is still far from the batch's mean). None otherwise."""
    from .models import BitMaskDropout

    if (
        type(relu) is nn.ReLU
        and type(bn) is nn.BatchNorm2d
        and type(drop) is BitMaskDropout
        and not any(_hooked(m) for m in (relu, bn, drop))  # a watched block goes layer by layer: no use for them
    ):
        center = bn.running_mean
        if center is not None and center.dtype == torch.float32 and center.device.type == "cpu":
            return center
    return None


def conv3x3(
    x: torch.Tensor, conv: nn.Conv2d, center: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """conv(x) on the kernels' convolutions, and, given a center (moments_center()), the moments of relu(conv(x))
    about it for relu_batchnorm_dropout(); None when the kernels cannot be built or loaded here (the caller runs the
    layer). Call only where conv_fusable() holds."""
    if not available():
        return None
    return _Conv3x3.apply(x, conv.weight, center)


def conv1x1_maxpool(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor | None:
    """A 2x2 max-pool of conv(x) in one pass; None when the kernels cannot be built or loaded here (the caller
    runs the layers). Call only where conv_pool_fusable() holds."""
    if not available():
        return None
    return _Conv1x1MaxPool.apply(x, conv.weight)


def relu_batchnorm_dropout(
    z: torch.Tensor, bn: nn.BatchNorm2d, p: float, moments: torch.Tensor | None = None
) -> torch.Tensor | None:
    """dropout(bn(relu(z)), p) in training, fused, from the moments the convolution that wrote z summed, if given;
    None when the kernels cannot be built or loaded here (the caller goes layer by layer). Call only where
    fusable() holds."""
    if not available():
        return None
    return _ReluBatchNormDropout.apply(z, bn.weight, bn.bias, bn, p, moments)
