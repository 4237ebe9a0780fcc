"""Arrays to pictures: upscaled digits, heat overlays, grids of feature maps (one image each)."""

from __future__ import annotations

import math

import numpy as np


def unit_float_to_uint8(image: np.ndarray) -> np.ndarray:
    """An array of floats in 0-1 (any shape; outside it clipped) -> uint8 pixels of the same shape."""
    return (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement, so each pixel stays a visible square."""
    return (
        np.kron(image, np.ones((factor, factor), dtype=image.dtype))
        if image.ndim == 2
        else image.repeat(factor, 0).repeat(factor, 1)
    )


def heat_overlay(digit: np.ndarray, heat: np.ndarray, factor: int = 8) -> np.ndarray:
    """RGB uint8: the digit in grey with heat (0-1) laid over it from transparent to red to yellow."""
    base = np.repeat((0.55 * digit)[..., None], 3, axis=2)
    colour = np.stack([np.ones_like(heat), np.clip(2 * heat - 1, 0, 1), np.zeros_like(heat)], axis=2)
    alpha = (0.75 * np.clip(heat, 0, 1))[..., None]
    return upscale(unit_float_to_uint8((1 - alpha) * base + alpha * colour), factor)


def map_grid(maps: np.ndarray, columns: int = 8, pad: int = 1) -> np.ndarray:
    """Channels (C, H, W) side by side as one grey image, each scaled to its own range."""
    c, h, w = maps.shape
    rows = math.ceil(c / columns)
    columns = min(columns, c)
    out = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad), 0.25, np.float32)
    for i, m in enumerate(maps):
        lo, hi = float(m.min()), float(m.max())
        scaled = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
        r, col = divmod(i, columns)
        out[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + col * (w + pad) : pad + col * (w + pad) + w] = scaled
    return unit_float_to_uint8(out)


def padded_square(image: np.ndarray) -> np.ndarray:
    """Pad with black to a square, so a thin crop shows at a sensible size beside the others."""
    h, w = image.shape
    side = max(h, w)
    out = np.zeros((side, side), dtype=image.dtype)
    top, left = (side - h) // 2, (side - w) // 2
    out[top : top + h, left : left + w] = image
    return out


def png_data_uri(image: np.ndarray) -> str:
    """A small uint8 image as an inline PNG (a few hundred bytes for a digit)."""
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def digit_grid_html(images: np.ndarray, cell_px: int = 44, titles: list[str] | None = None) -> str:
    """Digits in a grid that fills the container's width: as many columns as fit cells of at least
    cell_px, so a phone shows a few readable columns and a wide screen many."""
    cells = "".join(
        f'<img src="{png_data_uri(image)}" alt="{titles[i] if titles else "digit"}" '
        f'title="{titles[i] if titles else ""}" style="width:100%;image-rendering:pixelated;display:block">'
        for i, image in enumerate(np.asarray(images, dtype=np.uint8))
    )
    return (
        f'<div style="display:grid;grid-template-columns:repeat(auto-fill,minmax({cell_px}px,1fr));gap:2px;'
        f'background:#282828;padding:2px;border-radius:4px">{cells}</div>'
    )
