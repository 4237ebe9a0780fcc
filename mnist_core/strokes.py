"""Synthetic hand-drawn digits: pen strokes per class, rendered like a canvas brush.

Each digit class has several styles (a 1 with and without a flag, an open and a closed 4, ...),
written as polylines in a unit box (x to the right, y down). A sample takes one style, slants,
rotates and wobbles it, then draws it on a 280x280 black canvas at a random size, position and
brush width with round caps and joins, anti-aliased. This is the honest stand-in for "what users
draw": it never touches MNIST, and it goes through the same preprocessing as a real drawing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

CANVAS = 280
Stroke = list[tuple[float, float]]


def arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, n: int = 40) -> Stroke:
    """Points along an ellipse; angles in degrees, 0 = right, 90 = down (y grows downwards)."""
    return [(cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
            for a in np.linspace(start, end, n)]


def bezier(p0, p1, p2, n: int = 20) -> Stroke:
    return [((1 - t) ** 2 * p0[0] + 2 * (1 - t) * t * p1[0] + t * t * p2[0],
             (1 - t) ** 2 * p0[1] + 2 * (1 - t) * t * p1[1] + t * t * p2[1]) for t in np.linspace(0, 1, n)]


def figure_eight(n: int = 80) -> Stroke:
    return [(0.5 + 0.28 * math.sin(2 * t), 0.5 - 0.48 * math.cos(t)) for t in np.linspace(0, 2 * math.pi, n)]


STYLES: dict[int, list[list[Stroke]]] = {
    0: [
        [arc(0.5, 0.5, 0.3, 0.48, -90, 275)],
        [arc(0.5, 0.5, 0.26, 0.47, -110, 270)],
        [arc(0.5, 0.5, 0.2, 0.48, -80, 290)],
    ],
    1: [
        [[(0.5, 0.0), (0.5, 1.0)]],
        [[(0.32, 0.2), (0.55, 0.0), (0.55, 1.0)]],
        [[(0.32, 0.2), (0.55, 0.0), (0.55, 1.0)], [(0.3, 1.0), (0.8, 1.0)]],
    ],
    2: [
        [arc(0.5, 0.3, 0.3, 0.28, 190, 370) + [(0.2, 1.0), (0.82, 1.0)]],
        [arc(0.5, 0.3, 0.3, 0.28, 180, 400)[:-1] + bezier((0.78, 0.42), (0.55, 0.75), (0.2, 1.0))
         + [(0.82, 0.98)]],
        [arc(0.5, 0.28, 0.28, 0.26, 200, 360) + bezier((0.78, 0.28), (0.7, 0.7), (0.22, 1.0))
         + bezier((0.22, 1.0), (0.5, 0.9), (0.85, 1.0))],
    ],
    3: [
        [arc(0.5, 0.25, 0.28, 0.25, 200, 450) + arc(0.5, 0.75, 0.3, 0.25, 270, 520)],
        [[(0.2, 0.0), (0.8, 0.0), (0.45, 0.4)] + arc(0.5, 0.7, 0.3, 0.3, 250, 510)],
        [arc(0.5, 0.26, 0.24, 0.26, 190, 450) + arc(0.5, 0.75, 0.27, 0.25, 270, 530)],
    ],
    4: [
        [[(0.6, 0.0), (0.15, 0.65), (0.85, 0.65)], [(0.65, 0.3), (0.65, 1.0)]],
        [[(0.25, 0.0), (0.2, 0.6), (0.8, 0.6)], [(0.7, 0.0), (0.7, 1.0)]],
        [[(0.65, 1.0), (0.65, 0.0), (0.15, 0.65), (0.85, 0.65)]],
    ],
    5: [
        [[(0.75, 0.0), (0.3, 0.0), (0.27, 0.45)] + arc(0.5, 0.7, 0.3, 0.28, 230, 510)],
        [[(0.3, 0.0), (0.27, 0.45)] + arc(0.5, 0.7, 0.3, 0.28, 230, 505), [(0.3, 0.0), (0.78, 0.0)]],
    ],
    6: [
        [bezier((0.7, 0.0), (0.2, 0.2), (0.22, 0.7)) + arc(0.5, 0.72, 0.28, 0.26, 180, 535)],
        [[(0.65, 0.0), (0.24, 0.62)] + arc(0.5, 0.72, 0.27, 0.27, 200, 560)],
    ],
    7: [
        [[(0.2, 0.0), (0.8, 0.0), (0.4, 1.0)]],
        [[(0.2, 0.0), (0.8, 0.0), (0.4, 1.0)], [(0.35, 0.5), (0.75, 0.5)]],
        [[(0.2, 0.15), (0.2, 0.0), (0.8, 0.0), (0.45, 1.0)]],
    ],
    8: [
        [figure_eight()],
        [arc(0.5, 0.25, 0.22, 0.24, -90, 270), arc(0.5, 0.73, 0.27, 0.26, -90, 270)],
    ],
    9: [
        [arc(0.5, 0.28, 0.27, 0.27, 0, 360) + [(0.75, 1.0)]],
        [arc(0.5, 0.28, 0.27, 0.27, 0, 360) + bezier((0.77, 0.3), (0.75, 0.9), (0.4, 1.0))],
        [arc(0.5, 0.28, 0.27, 0.27, 360, 0) + [(0.77, 1.0)]],
    ],
}


@dataclass
class Placement:
    """Where and how a drawing lands on the canvas; in canvas pixels."""

    height: float  # of the digit's unit box
    centre: tuple[float, float]
    brush: float  # stroke width


def transform(strokes: list[Stroke], rng: np.random.Generator) -> list[Stroke]:
    """A hand's variation: slant, rotation, width, and a slow wobble along each stroke."""
    slant = rng.uniform(-0.25, 0.25)
    angle = math.radians(rng.uniform(-10, 10))
    widen = rng.uniform(0.8, 1.2)
    cos, sin = math.cos(angle), math.sin(angle)
    out = []
    for stroke in strokes:
        phase, amp = rng.uniform(0, 2 * math.pi, 2), rng.uniform(0, 0.02, 2)
        points = []
        for i, (x, y) in enumerate(stroke):
            t = i / max(len(stroke) - 1, 1)
            x = 0.5 + (x - 0.5) * widen + slant * (0.5 - y) + amp[0] * math.sin(2 * math.pi * t + phase[0])
            y = y + amp[1] * math.sin(2 * math.pi * t + phase[1])
            dx, dy = x - 0.5, y - 0.5
            points.append((0.5 + cos * dx - sin * dy, 0.5 + sin * dx + cos * dy))
        out.append(points)
    return out


def render(strokes: list[Stroke], placement: Placement, canvas: int = CANVAS, supersample: int = 2) -> np.ndarray:
    """Draw strokes white on black like a canvas brush (round caps and joins); uint8 (canvas, canvas)."""
    s = supersample
    image = Image.new("L", (canvas * s, canvas * s), 0)
    draw = ImageDraw.Draw(image)
    cx, cy = placement.centre
    radius = placement.brush * s / 2
    for stroke in strokes:
        points = [((cx + (x - 0.5) * placement.height) * s, (cy + (y - 0.5) * placement.height) * s)
                  for x, y in stroke]
        draw.line(points, fill=255, width=round(placement.brush * s), joint="curve")
        for px, py in (points[0], points[-1]):
            draw.ellipse((px - radius, py - radius, px + radius, py + radius), fill=255)
    return np.asarray(image.resize((canvas, canvas), Image.Resampling.BOX))


def random_placement(rng: np.random.Generator, canvas: int = CANVAS) -> Placement:
    height = rng.uniform(0.35, 0.85) * canvas
    brush = rng.uniform(12, 26)
    margin = height / 2 + brush
    centre = (rng.uniform(margin, canvas - margin) if canvas - margin > margin else canvas / 2,
              rng.uniform(margin, canvas - margin) if canvas - margin > margin else canvas / 2)
    return Placement(height, centre, brush)


def synthetic_drawings(per_class: int = 50, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images uint8 (N, 280, 280), labels (N,), style names), styles taken in turn within each class."""
    rng = np.random.default_rng(seed)
    images, labels, styles = [], [], []
    for digit, variants in STYLES.items():
        for i in range(per_class):
            style = i % len(variants)
            images.append(render(transform(variants[style], rng), random_placement(rng)))
            labels.append(digit)
            styles.append(f"{digit}{'abc'[style]}")
    return np.stack(images), np.array(labels), styles


def scribbles(count: int = 100, seed: int = 0) -> np.ndarray:
    """Random zig-zags that are no digit: what an 'unsure' flag should catch. uint8 (count, 280, 280)."""
    rng = np.random.default_rng(seed)
    return np.stack([
        render([[tuple(p) for p in rng.uniform(0, 1, (int(rng.integers(6, 16)), 2))]],
               Placement(rng.uniform(120, 250), (CANVAS / 2, CANVAS / 2), rng.uniform(12, 26)))
        for _ in range(count)])


# What a visitor draws that is no digit: the Draw page must refuse these or flag them as unsure.
def _filled_box(rows: int = 14) -> list[Stroke]:
    zigzag = []
    for i, y in enumerate(np.linspace(0, 1, rows)):
        zigzag += [(0.0, y), (1.0, y)] if i % 2 == 0 else [(1.0, y), (0.0, y)]
    return [zigzag]


NON_DIGITS: dict[str, list[Stroke]] = {
    "dot": [[(0.5, 0.5), (0.5, 0.5)]],
    "filled box": _filled_box(),
    "X": [[(0.0, 0.0), (1.0, 1.0)], [(1.0, 0.0), (0.0, 1.0)]],
    "smiley": [arc(0.5, 0.5, 0.5, 0.5, 0, 360, n=60), [(0.33, 0.33), (0.33, 0.33)], [(0.67, 0.33), (0.67, 0.33)],
               arc(0.5, 0.55, 0.27, 0.22, 20, 160)],
    "#": [[(0.38, 0.0), (0.3, 1.0)], [(0.72, 0.0), (0.64, 1.0)], [(0.0, 0.33), (1.0, 0.33)],
          [(0.0, 0.67), (1.0, 0.67)]],
}


def non_digits(per_shape: int = 50, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded drawings that are no digit, by shape: dot, filled box, X, smiley, #, scribble. uint8 (n, 280, 280)."""
    rng = np.random.default_rng(seed)
    shapes = {}
    for shape, strokes in NON_DIGITS.items():
        images = []
        for _ in range(per_shape):
            placement = random_placement(rng)
            if shape == "dot":  # a click or a short dab, with any brush the page's slider allows
                placement.brush = rng.uniform(8, 40)
            elif shape == "filled box":  # rows closer than the brush, so the box is solid
                placement.brush = max(placement.brush, 1.3 * placement.height / (len(strokes[0]) // 2 - 1))
            images.append(render(transform(strokes, rng), placement))
        shapes[shape] = np.stack(images)
    shapes["scribble"] = scribbles(per_shape, seed)
    return shapes
