"""numba kernels for ReLU -> BatchNorm2d -> dropout on channels-last float32 activations, forward and backward.

Imported only through fused.py, after embed.use_numba_cache() has chosen the disk cache: numba fixes a
function's cache folder when the function is decorated, so this module must not be imported earlier.

Every array of activations is a channels-last batch seen as rows, (images x pixels, channels). The dropout
mask arrives as the int16 draws BitMaskDropout makes, in the values' logical (N, C, H, W) order, so the
fused layers drop exactly the values the separate layers would. Sums are taken over a fixed number of
chunks in float64 and added in a fixed order: a run repeats to the bit whatever the thread count.
"""

import numpy as np
from numba import njit, prange

CHUNKS = 16


@njit(parallel=True, cache=True, nogil=True)
def relu_sums(z, channels):
    """Per chunk, the sum and the sum of squares of relu(z) over each channel: shape (CHUNKS, 2, channels)."""
    rows = z.shape[0]
    part = np.zeros((CHUNKS, 2, channels))
    for k in prange(CHUNKS):
        total, squares = np.zeros(channels), np.zeros(channels)
        for p in range(rows * k // CHUNKS, rows * (k + 1) // CHUNKS):
            for c in range(channels):
                a = z[p, c]
                if a > 0:
                    total[c] += a
                    squares[c] += a * a
        part[k, 0] = total
        part[k, 1] = squares
    return part


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def forward(z, draws, keep_from, scale, shift, pixels, channels, out):
    """out = (relu(z) * scale + shift) where the draw keeps the value, else 0 (scale and shift carry 1 / (1 - p))."""
    zero = np.float32(0)
    for n in prange(z.shape[0] // pixels):
        first = n * channels * pixels
        for j in range(pixels):
            p = n * pixels + j
            for c in range(channels):
                kept = np.float32(draws[first + c * pixels + j] >= keep_from)
                out[p, c] = (max(z[p, c], zero) * scale[c] + shift[c]) * kept


@njit(parallel=True, cache=True, nogil=True)
def gradient_sums(g, z, draws, keep_from, rescale, mean, rstd, pixels, channels):
    """Per chunk, the sums over each channel of the gradient reaching BatchNorm's output and of that gradient times
    the normalized value (BatchNorm's bias and weight gradients): shape (CHUNKS, 2, channels)."""
    images = z.shape[0] // pixels
    part = np.zeros((CHUNKS, 2, channels))
    for k in prange(CHUNKS):
        bias, weight = np.zeros(channels), np.zeros(channels)
        for n in range(images * k // CHUNKS, images * (k + 1) // CHUNKS):
            first = n * channels * pixels
            for j in range(pixels):
                p = n * pixels + j
                for c in range(channels):
                    if draws[first + c * pixels + j] >= keep_from:
                        gb = g[p, c] * rescale
                        bias[c] += gb
                        weight[c] += gb * (max(z[p, c], 0) - mean[c]) * rstd[c]
        part[k, 0] = bias
        part[k, 1] = weight
    return part


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def backward(g, z, draws, keep_from, rescale, gain, bias_mean, weight_mean, mean, rstd, pixels, channels, out):
    """The gradient reaching z: BatchNorm's backward (gain = weight * rstd; the means are the sums above over the
    count) through the dropout mask and the ReLU."""
    for n in prange(z.shape[0] // pixels):
        first = n * channels * pixels
        for j in range(pixels):
            p = n * pixels + j
            for c in range(channels):
                a = z[p, c]
                gb = g[p, c] * rescale * np.float32(draws[first + c * pixels + j] >= keep_from)
                out[p, c] = gain[c] * (gb - bias_mean[c] - (a - mean[c]) * rstd[c] * weight_mean[c]) * np.float32(a > 0)
