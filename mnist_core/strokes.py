"""Synthetic hand-drawn digits: pen strokes per class and style, rendered like a canvas brush.

Each digit class has several named styles, the ways people actually write it (a 1 as a stick, with
a flag, with a flag and a foot; a 7 plain, crossed or with a serif; a 4 open or closed at the top;
a 9 with a straight stem...), written as polylines in a unit box (x to the right, y down). A sample
takes one style, slants, rotates and wobbles it, then draws it on a 280x280 black canvas with round
caps and joins, anti-aliased, framed one of three ways (centred, small in a corner, large enough to
touch the edges) with a thin, medium or thick brush. This is the honest stand-in for "what users
draw": it never touches MNIST, and it goes through the same preprocessing as a real drawing.

Every sample has its own random stream, keyed by (stream, seed, digit, style, index). The test split
is stream TEST_STREAM with seed 0, so it is the same on every run and machine, and growing it only
appends; the training generator draws from TRAIN_STREAM, so it never renders a test drawing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

CANVAS = 280
BRUSH_RANGE = (8, 40)  # the Draw page's brush slider
Stroke = list[tuple[float, float]]


def arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, n: int = 40) -> Stroke:
    """Points along an ellipse; angles in degrees, 0 = right, 90 = down (y grows downwards)."""
    return [
        (cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a))) for a in np.linspace(start, end, n)
    ]


def bezier(p0, p1, p2, n: int = 20) -> Stroke:
    return [
        (
            (1 - t) ** 2 * p0[0] + 2 * (1 - t) * t * p1[0] + t * t * p2[0],
            (1 - t) ** 2 * p0[1] + 2 * (1 - t) * t * p1[1] + t * t * p2[1],
        )
        for t in np.linspace(0, 1, n)
    ]


def figure_eight(n: int = 80) -> Stroke:
    return [(0.5 + 0.28 * math.sin(2 * t), 0.5 - 0.48 * math.cos(t)) for t in np.linspace(0, 2 * math.pi, n)]


_SEVEN = [(0.2, 0.0), (0.8, 0.0), (0.4, 1.0)]

# class -> style name -> strokes. Names are unique within a class; "<digit> <name>" names a style.
STYLES: dict[int, dict[str, list[Stroke]]] = {
    0: {
        "oval": [arc(0.5, 0.5, 0.3, 0.48, -90, 275)],
        "round": [arc(0.5, 0.5, 0.42, 0.48, -100, 265)],
        "narrow overlap": [arc(0.5, 0.5, 0.2, 0.48, -70, 310)],
    },
    1: {
        "stick": [[(0.5, 0.0), (0.5, 1.0)]],
        "flagged": [[(0.32, 0.2), (0.55, 0.0), (0.55, 1.0)]],  # a short diagonal into the stem
        "long flag": [[(0.15, 0.35), (0.6, 0.0), (0.6, 1.0)]],  # the European 1 most often read as a 7
        "flag and foot": [[(0.32, 0.2), (0.55, 0.0), (0.55, 1.0)], [(0.3, 1.0), (0.8, 1.0)]],
    },
    2: {
        "plain": [arc(0.5, 0.3, 0.3, 0.28, 190, 370) + [(0.2, 1.0), (0.82, 1.0)]],
        "looped": [
            arc(0.5, 0.28, 0.3, 0.27, 190, 370) + [(0.3, 0.8)] + arc(0.3, 0.9, 0.1, 0.1, -90, -450) + [(0.85, 0.98)]
        ],
        "curly": [
            arc(0.5, 0.28, 0.28, 0.26, 200, 360)
            + bezier((0.78, 0.28), (0.7, 0.7), (0.22, 1.0))
            + bezier((0.22, 1.0), (0.5, 0.9), (0.85, 1.0))
        ],
    },
    3: {
        "round": [arc(0.5, 0.25, 0.28, 0.25, 200, 450) + arc(0.5, 0.75, 0.3, 0.25, 270, 520)],
        "flat top": [[(0.2, 0.0), (0.8, 0.0), (0.45, 0.4)] + arc(0.5, 0.7, 0.3, 0.3, 250, 510)],
        "small top": [arc(0.5, 0.2, 0.22, 0.2, 190, 450) + arc(0.5, 0.7, 0.3, 0.3, 270, 525)],
    },
    4: {
        "open": [[(0.25, 0.0), (0.18, 0.62), (0.85, 0.62)], [(0.68, 0.05), (0.68, 1.0)]],
        "closed": [[(0.62, 0.0), (0.12, 0.65), (0.88, 0.65)], [(0.62, 0.0), (0.62, 1.0)]],
        "one stroke": [[(0.65, 1.0), (0.65, 0.0), (0.15, 0.65), (0.85, 0.65)]],
    },
    5: {
        "one stroke": [[(0.75, 0.0), (0.3, 0.0), (0.27, 0.45)] + arc(0.5, 0.7, 0.3, 0.28, 230, 510)],
        "bar last": [[(0.3, 0.0), (0.27, 0.45)] + arc(0.5, 0.7, 0.3, 0.28, 230, 505), [(0.3, 0.0), (0.78, 0.0)]],
        "angular": [
            [(0.3, 0.0), (0.25, 0.45), (0.6, 0.4), (0.8, 0.6), (0.74, 0.88), (0.45, 1.0), (0.2, 0.9)],
            [(0.3, 0.0), (0.8, 0.0)],
        ],
    },
    6: {
        "curved": [bezier((0.7, 0.0), (0.2, 0.2), (0.22, 0.7)) + arc(0.5, 0.72, 0.28, 0.26, 180, 535)],
        "straight stem": [[(0.65, 0.0), (0.24, 0.62)] + arc(0.5, 0.72, 0.27, 0.27, 200, 560)],
        "small loop": [bezier((0.75, 0.0), (0.25, 0.25), (0.28, 0.78)) + arc(0.52, 0.8, 0.24, 0.2, 180, 535)],
    },
    7: {
        "plain": [list(_SEVEN)],
        "crossed": [list(_SEVEN), [(0.35, 0.5), (0.78, 0.5)]],
        "serif": [[(0.2, 0.15), (0.2, 0.0), (0.8, 0.0), (0.45, 1.0)]],
        "curved stem": [[(0.15, 0.05), (0.8, 0.0)] + bezier((0.8, 0.0), (0.5, 0.45), (0.45, 1.0))],
    },
    8: {
        "figure eight": [figure_eight()],
        "two loops": [arc(0.5, 0.25, 0.22, 0.24, -90, 270), arc(0.5, 0.73, 0.27, 0.26, -90, 270)],
        "small top": [arc(0.5, 0.2, 0.17, 0.2, -90, 270), arc(0.5, 0.7, 0.3, 0.3, -90, 270)],
    },
    9: {
        "straight stem": [arc(0.48, 0.28, 0.28, 0.27, 0, 360) + [(0.76, 1.0)]],
        "curved tail": [arc(0.5, 0.28, 0.27, 0.27, 0, 360) + bezier((0.77, 0.3), (0.75, 0.9), (0.4, 1.0))],
        "slanted stem": [arc(0.52, 0.28, 0.27, 0.27, 0, 360) + [(0.55, 1.0)]],
        "small loop": [arc(0.5, 0.2, 0.24, 0.2, 0, 360) + [(0.74, 1.0)]],
    },
}

FRAMINGS = ("centred", "corner", "edges")  # where the digit lands: middle, small in a corner, touching the edges
BRUSHES = ("thin", "medium", "thick")  # the stroke width, as a share of the digit's height (clipped to the slider)
_BRUSH_SHARE = {"thin": (0.03, 0.06), "medium": (0.07, 0.13), "thick": (0.15, 0.21)}
TEST_STREAM, TRAIN_STREAM = 0, 1  # the first number of every sample's key: the two never meet
TEST_SEED = 0


def style_names() -> list[str]:
    """Every style as "<digit> <name>", in class order."""
    return [f"{digit} {name}" for digit, styles in STYLES.items() for name in styles]


@dataclass
class Placement:
    """Where and how a drawing lands on the canvas; in canvas pixels."""

    height: float  # of the digit's unit box
    centre: tuple[float, float]
    brush: float  # stroke width


def transform(strokes: list[Stroke], rng: np.random.Generator) -> list[Stroke]:
    """A hand's variation: slant, rotation, width, and a slow wobble along each stroke."""
    slant = rng.uniform(-0.35, 0.35)
    angle = math.radians(rng.uniform(-12, 12))
    widen = rng.uniform(0.75, 1.25)
    cos, sin = math.cos(angle), math.sin(angle)
    out = []
    for stroke in strokes:
        phase, amp = rng.uniform(0, 2 * math.pi, 2), rng.uniform(0, 0.025, 2)
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
        points = [((cx + (x - 0.5) * placement.height) * s, (cy + (y - 0.5) * placement.height) * s) for x, y in stroke]
        draw.line(points, fill=255, width=round(placement.brush * s), joint="curve")
        for px, py in (points[0], points[-1]):
            draw.ellipse((px - radius, py - radius, px + radius, py + radius), fill=255)
    return np.asarray(image.resize((canvas, canvas), Image.Resampling.BOX))


def random_placement(rng: np.random.Generator, canvas: int = CANVAS) -> Placement:
    """A centred placement of moderate size and brush (what the non-digit shapes use)."""
    height = rng.uniform(0.35, 0.85) * canvas
    brush = rng.uniform(12, 26)
    margin = height / 2 + brush
    centre = (
        rng.uniform(margin, canvas - margin) if canvas - margin > margin else canvas / 2,
        rng.uniform(margin, canvas - margin) if canvas - margin > margin else canvas / 2,
    )
    return Placement(height, centre, brush)


def framed_placement(rng: np.random.Generator, framing: str, brush: str, canvas: int = CANVAS) -> Placement:
    """Where a visitor might draw: centred, small in a corner, or so large the ink touches the edges."""
    low, high = {"centred": (0.45, 0.8), "corner": (0.3, 0.42), "edges": (0.9, 0.98)}[framing]
    height = rng.uniform(low, high) * canvas
    width = float(np.clip(rng.uniform(*_BRUSH_SHARE[brush]) * height, *BRUSH_RANGE))
    if framing == "edges":
        height -= width  # the ink, caps included, spans the canvas
    half_w, half_h = 0.35 * height + width / 2, height / 2 + width / 2  # the digit is narrower than tall
    if framing == "centred":
        x, y = rng.uniform(half_w, canvas - half_w), rng.uniform(half_h, canvas - half_h)
    elif framing == "corner":
        x = half_w + rng.uniform(0, 0.08 * canvas)
        y = half_h + rng.uniform(0, 0.08 * canvas)
        x, y = (canvas - x if rng.random() < 0.5 else x), (canvas - y if rng.random() < 0.5 else y)
    else:
        x, y = rng.uniform(half_w, canvas - half_w), canvas / 2 + rng.uniform(-0.02, 0.02) * canvas
    return Placement(height, (x, y), width)


@dataclass
class DrawnDigits:
    """Rendered digits with what made each one."""

    images: np.ndarray  # uint8 (N, 280, 280)
    labels: np.ndarray  # (N,) int64
    styles: list[str]  # "<digit> <style>"
    framings: list[str]
    brushes: list[str]

    def __len__(self) -> int:
        return len(self.labels)


def draw_sample(stream: int, seed: int, digit: int, style: int, index: int) -> tuple[np.ndarray, str, str]:
    """One rendered digit (uint8 canvas) and its framing and brush, from its own key: the same key, the same image."""
    rng = np.random.default_rng([stream, seed, digit, style, index])
    strokes = list(STYLES[digit].values())[style]
    framing, brush = FRAMINGS[int(rng.integers(len(FRAMINGS)))], BRUSHES[int(rng.integers(len(BRUSHES)))]
    placement = framed_placement(rng, framing, brush)
    return render(transform(strokes, rng), placement), framing, brush


def _drawn(keys: list[tuple[int, int, int, int, int]]) -> DrawnDigits:
    images, labels, styles, framings, brushes = [], [], [], [], []
    for key in keys:
        image, framing, brush = draw_sample(*key)
        digit, style = key[2], key[3]
        images.append(image)
        labels.append(digit)
        styles.append(f"{digit} {list(STYLES[digit])[style]}")
        framings.append(framing)
        brushes.append(brush)
    return DrawnDigits(np.stack(images), np.array(labels, dtype=np.int64), styles, framings, brushes)


def style_test_split(per_style: int = 40) -> DrawnDigits:
    """The fixed style-rich test set: per_style drawings of every style of every class, identical on every run.
    No model trains on it (training_drawings draws from another stream)."""
    return _drawn(
        [
            (TEST_STREAM, TEST_SEED, digit, style, k)
            for digit, styles in STYLES.items()
            for style in range(len(styles))
            for k in range(per_style)
        ]
    )


def training_drawings(count: int, seed: int = 0, first: int = 0) -> DrawnDigits:
    """count drawings for training (classes in turn, each class's styles in turn), never one of the test split's;
    drawings first .. first + count - 1 of the seed's sequence."""
    keys = []
    for i in range(first, first + count):
        digit = i % 10
        style = (i // 10) % len(STYLES[digit])
        keys.append((TRAIN_STREAM, seed, digit, style, i))
    return _drawn(keys)


def synthetic_drawings(per_class: int = 50, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images uint8 (N, 280, 280), labels (N,), style names): per_class of each class, its styles in turn,
    from the test stream (with seed 0 they are drawings of the test split)."""
    drawn = _drawn(
        [
            (TEST_STREAM, seed, digit, i % len(STYLES[digit]), i // len(STYLES[digit]))
            for digit in STYLES
            for i in range(per_class)
        ]
    )
    return drawn.images, drawn.labels, drawn.styles


def scribbles(count: int = 100, seed: int = 0) -> np.ndarray:
    """Random zig-zags that are no digit: what an 'unsure' flag should catch. uint8 (count, 280, 280)."""
    rng = np.random.default_rng(seed)
    return np.stack(
        [
            render(
                [[tuple(p) for p in rng.uniform(0, 1, (int(rng.integers(6, 16)), 2))]],
                Placement(rng.uniform(120, 250), (CANVAS / 2, CANVAS / 2), rng.uniform(12, 26)),
            )
            for _ in range(count)
        ]
    )


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
    "smiley": [
        arc(0.5, 0.5, 0.5, 0.5, 0, 360, n=60),
        [(0.33, 0.33), (0.33, 0.33)],
        [(0.67, 0.33), (0.67, 0.33)],
        arc(0.5, 0.55, 0.27, 0.22, 20, 160),
    ],
    "#": [
        [(0.38, 0.0), (0.3, 1.0)],
        [(0.72, 0.0), (0.64, 1.0)],
        [(0.0, 0.33), (1.0, 0.33)],
        [(0.0, 0.67), (1.0, 0.67)],
    ],
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


def main(argv: list[str] | None = None) -> int:
    """Write styled training drawings, preprocessed like the Draw page's, as a drawings folder for fine-tuning:

    python -m mnist_core.strokes runs/styled-drawings --count 30000 --seed 0
    MNIST_DRAWINGS_DIR=runs/styled-drawings python -m mnist_core train ... --drawings-share 0.25
    """
    import argparse
    from pathlib import Path

    from .drawing import screen_all
    from .drawing_store import save_drawing_set

    parser = argparse.ArgumentParser(prog="python -m mnist_core.strokes", description=main.__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="an empty or new folder")
    parser.add_argument("--count", type=int, default=30_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.folder.exists() and any(args.folder.iterdir()):
        parser.error(f"{args.folder} is not empty; give a new folder")
    if not 10 <= args.count <= 86_400:
        parser.error(f"--count must be between 10 and 86400 (got {args.count})")
    pixels, labels = [], []
    for start in range(0, args.count, 1000):  # in chunks: 1000 canvases are 78 MB
        drawn = training_drawings(min(1000, args.count - start), args.seed, first=start)
        inputs, refused = screen_all(drawn.images)
        pixels.append(inputs[~refused])
        labels.append(drawn.labels[~refused])
    pixels, labels = np.concatenate(pixels), np.concatenate(labels)
    save_drawing_set(pixels, labels, args.folder)
    print(f"wrote {len(labels)} drawings to {args.folder} ({args.count - len(labels)} refused by the preprocessing)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
