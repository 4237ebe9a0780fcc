"""From a canvas drawing to the 28x28 input a model expects, the way MNIST itself was made.

MNIST's digits were size-normalized to fit a 20x20 box (keeping their aspect ratio, anti-aliased),
then placed in a 28x28 field so that their centre of mass sits at the centre. A drawing goes through
the same steps, so where and how large it was drawn does not matter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from .data import standardize

BOX = 20  # MNIST's digits fit a 20x20 box inside the 28x28 image
SIZE = 28
INK_LEVEL = 0.1  # a pixel darker than this (on a 0-1 scale) is background
MIN_INK_PIXELS = 30  # fewer inked canvas pixels than this is a click, not a digit
# Refusals before any model, each a rule a learner can check by eye. A model asked about a dot or a
# filled square still answers (a dot reads as "0 (90%)"): its softmax has no "none of these".
MIN_EXTENT = 0.18  # the ink's longer side, as a share of the canvas's shorter side: below it, "draw larger"
# (a dot from the page's widest brush is 0.14 of the canvas; the synthetic digits are 0.39 and more)
MAX_SOLID = 0.6  # share of the 20x20 box covered by ink (above half brightness): above it, a filled shape
# (MNIST's training digits: median 0.25, 99.9th percentile 0.575; a filled dot 0.64-0.79, a box up to 0.93)
MAX_PIECES = 2  # separate pieces of ink (each at least PIECE_SHARE of it): a digit has one, two when a stroke
PIECE_SHARE = 0.01  # is lifted (a 5's bar); a smiley has four. MNIST's test digits: 98% one piece, 0.27% three+
UNSURE_TOP_PROBABILITY = 0.7
UNSURE_ENTROPY_BITS = 1.2


class DrawingError(ValueError):
    """An image that cannot be a drawing (wrong shape, wrong type)."""


@dataclass
class Preprocessed:
    steps: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (caption, image in 0-1) for display
    pixels: np.ndarray | None = None  # the 28x28 result in 0-1; None when there is nothing to classify
    message: str = ""  # why nothing is classified: what was wrong and what to do
    refusal: str = ""  # "" when the drawing goes to the model, else "empty", "too small", "solid" or "pieces"

    @property
    def empty(self) -> bool:
        return self.pixels is None


def to_grayscale(image: np.ndarray) -> np.ndarray:
    """A float image in 0-1, white ink on black, from grey, RGB or RGBA (composited over black)."""
    image = np.asarray(image)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise DrawingError(f"expected a grey, RGB or RGBA image, got an array of shape {image.shape}")
    if image.size == 0:
        raise DrawingError("the image is empty (0 pixels)")
    scale = 255.0 if image.dtype == np.uint8 or image.max() > 1.0 else 1.0
    pixels = image.astype(np.float32) / scale
    if pixels.ndim == 2:
        return pixels
    gray = pixels[..., 0] * 0.299 + pixels[..., 1] * 0.587 + pixels[..., 2] * 0.114
    if pixels.shape[2] == 4:
        gray = gray * pixels[..., 3]
    return gray


def ink_box(gray: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right), bottom/right exclusive, of the inked pixels; None when there are too few."""
    ink = gray > INK_LEVEL
    if int(ink.sum()) < MIN_INK_PIXELS:
        return None
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def fit_box(cropped: np.ndarray, box: int = BOX) -> np.ndarray:
    """Scale so the longer side is `box` pixels, keeping the aspect ratio, with an anti-aliasing filter."""
    h, w = cropped.shape
    scale = box / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resized = Image.fromarray(cropped.astype(np.float32), mode="F").resize(size, Image.Resampling.LANCZOS)
    return np.clip(np.asarray(resized), 0.0, 1.0)


def paste_centred(digit: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Place the digit in a size x size field with its centre of mass at the centre (whole-pixel shift)."""
    h, w = digit.shape
    total = float(digit.sum())
    if total <= 0:
        cy, cx = (h - 1) / 2, (w - 1) / 2
    else:
        cy = float((digit.sum(axis=1) * np.arange(h)).sum()) / total
        cx = float((digit.sum(axis=0) * np.arange(w)).sum()) / total
    top, left = round((size - 1) / 2 - cy), round((size - 1) / 2 - cx)
    field_ = np.zeros((size, size), np.float32)
    # Clip where the shifted digit would leave the field (only a very lopsided digit does).
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, size), min(left + w, size)
    field_[y0:y1, x0:x1] = digit[y0 - top : y1 - top, x0 - left : x1 - left]
    return field_


def pieces(gray: np.ndarray) -> int:
    """Separate pieces of ink (8-connected), counting only those holding at least PIECE_SHARE of the ink."""
    labels, count = ndimage.label(gray > INK_LEVEL, structure=np.ones((3, 3)))
    if count == 0:
        return 0
    sizes = np.bincount(labels.ravel())[1:]
    return int((sizes >= PIECE_SHARE * sizes.sum()).sum())


def solid_share(pixels: np.ndarray) -> float:
    """How much of the BOX x BOX square the ink fills: a digit is strokes, a filled shape is nearly all ink."""
    return float((pixels > 0.5).sum()) / (BOX * BOX)


def refuse(result: Preprocessed, refusal: str, message: str) -> Preprocessed:
    result.refusal, result.message = refusal, message
    return result


def preprocess(image: np.ndarray) -> Preprocessed:
    """Every step from the canvas to the 28x28 input, kept for display; a drawing no digit can be is refused."""
    gray = to_grayscale(image)
    result = Preprocessed(steps=[("grayscale", gray)])
    box = ink_box(gray)
    if box is None:
        return refuse(result, "empty", "Draw a digit: the canvas is empty.")
    top, bottom, left, right = box
    extent = max(bottom - top, right - left)
    if extent < MIN_EXTENT * min(gray.shape):
        return refuse(
            result,
            "too small",
            f"Too little ink to read: the drawing is only {extent} px across. "
            f"Draw the digit larger, over at least half the canvas's height.",
        )
    cropped = gray[top:bottom, left:right]
    result.steps.append((f"cropped to the ink ({right - left}x{bottom - top})", cropped))
    fitted = fit_box(cropped)
    result.steps.append((f"scaled to {fitted.shape[1]}x{fitted.shape[0]} (longer side {BOX})", fitted))
    pixels = paste_centred(fitted)
    result.steps.append(("28x28, centred on the centre of mass", pixels))
    if (count := pieces(cropped)) > MAX_PIECES:
        return refuse(
            result,
            "pieces",
            f"Not read: the drawing is {count} separate pieces of ink, and a digit is "
            f"one or two strokes. Clear it and draw one digit (stray dots count as pieces).",
        )
    if (solid := solid_share(pixels)) > MAX_SOLID:
        return refuse(
            result,
            "solid",
            f"Not read: ink fills {solid:.0%} of the digit's box, so this is a filled "
            f"shape, not a digit's strokes (MNIST's digits fill about a quarter). Draw the digit with a "
            f"thinner brush.",
        )
    result.pixels = pixels
    return result


def to_input(pixels: np.ndarray) -> torch.Tensor:
    """A (1, 1, 28, 28) tensor standardized with MNIST's training statistics, as every model was trained."""
    if pixels.shape != (SIZE, SIZE):
        raise DrawingError(f"expected a {SIZE}x{SIZE} image, got {pixels.shape}")
    return standardize(np.ascontiguousarray(pixels)).view(1, 1, SIZE, SIZE)


@dataclass
class Prediction:
    probabilities: np.ndarray  # 10 class probabilities
    label: int
    confidence: float
    entropy_bits: float

    @property
    def unsure(self) -> bool:
        return self.confidence < UNSURE_TOP_PROBABILITY or self.entropy_bits > UNSURE_ENTROPY_BITS

    @property
    def runner_up(self) -> int:
        """The second most probable digit: with the label, the two guesses an unsure reading offers."""
        return int(np.argsort(self.probabilities)[-2])

    @property
    def verdict(self) -> str:
        """The reading in words: an answer only when the model is sure, else no answer and two guesses."""
        if not self.unsure:
            return f"{self.label} ({self.confidence:.0%})"
        return f"Not sure: maybe a {self.label} or a {self.runner_up}"


@torch.no_grad()
def predict(model: torch.nn.Module, pixels: np.ndarray) -> Prediction:
    device = next(model.parameters()).device
    return reading(torch.softmax(model(to_input(pixels).to(device)), dim=1)[0].double().cpu().numpy())


def reading(probabilities: np.ndarray) -> Prediction:
    """A prediction (label, confidence, entropy, unsure flag) from one row of class probabilities."""
    p = np.asarray(probabilities, dtype=np.float64)
    label = int(p.argmax())
    return Prediction(p, label, float(p[label]), -float((p[p > 0] * np.log2(p[p > 0])).sum()))


def screen_all(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 28, 28) inputs for a stack of drawings, and which of them are refused (each then a blank input)."""
    results = [preprocess(image) for image in images]
    pixels = np.stack([p.pixels if p.pixels is not None else np.zeros((SIZE, SIZE), np.float32) for p in results])
    return pixels, np.array([p.empty for p in results], dtype=bool)


def preprocess_all(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) inputs for a stack of drawings; a refused drawing becomes a blank input."""
    return screen_all(images)[0]


@torch.no_grad()
def predict_all(model: torch.nn.Module, pixels: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Class probabilities (N, 10) for a stack of 28x28 inputs in 0-1."""
    device = next(model.parameters()).device
    x = standardize(pixels).unsqueeze(1)
    return torch.cat([torch.softmax(model(chunk.to(device)), dim=1).cpu() for chunk in x.split(batch_size)]).numpy()


@dataclass
class DrawnScore:
    accuracy: float
    errors_per_class: dict[int, int]  # class -> how many of its drawings were misread
    confusions: dict[tuple[int, int], int]  # (true, predicted) -> count, mistakes only


def score(probabilities: np.ndarray, labels: np.ndarray) -> DrawnScore:
    predicted = probabilities.argmax(1)
    wrong = predicted != labels
    errors = {int(c): int((wrong & (labels == c)).sum()) for c in range(10)}
    confusions: dict[tuple[int, int], int] = {}
    for t, p in zip(labels[wrong], predicted[wrong]):
        confusions[(int(t), int(p))] = confusions.get((int(t), int(p)), 0) + 1
    return DrawnScore(float((~wrong).mean()) if len(labels) else float("nan"), errors, confusions)


def flagged(probabilities: np.ndarray, refused: np.ndarray) -> np.ndarray:
    """Which drawings the page gives no answer for: refused before any model, or read as unsure."""
    return np.asarray(refused, dtype=bool) | np.array([reading(p).unsure for p in probabilities], dtype=bool)


@dataclass
class GroupScore:
    """How one group of drawings (a style, a framing, a brush) was read."""

    name: str
    count: int
    accuracy: float  # the top guess is right (a refused drawing counts as wrong)
    unsure: float  # share flagged: refused, or read as unsure
    read: float  # right and not flagged: what the page shows as an answer
    confusions: list[tuple[int, int]]  # (digit wrongly read, how often), most common first

    def top_confusions(self, k: int = 2) -> str:
        return ", ".join(f"->{digit}: {n}" for digit, n in self.confusions[:k]) or "-"


def score_groups(
    probabilities: np.ndarray, refused: np.ndarray, labels: np.ndarray, groups: list[str]
) -> list[GroupScore]:
    """Accuracy, unsure rate and the most common confusions per group, groups in their first-seen order."""
    predicted = np.asarray(probabilities).argmax(1)
    refused = np.asarray(refused, dtype=bool)
    right = (predicted == labels) & ~refused
    flags = flagged(probabilities, refused)
    names = np.asarray(groups)
    out = []
    for name in dict.fromkeys(groups):
        mask = names == name
        wrong = predicted[mask & ~right & ~refused]
        counts = np.bincount(wrong, minlength=10)
        confusions = [(int(d), int(counts[d])) for d in np.argsort(-counts, kind="stable") if counts[d]]
        out.append(
            GroupScore(
                str(name),
                int(mask.sum()),
                float(right[mask].mean()),
                float(flags[mask].mean()),
                float((right & ~flags)[mask].mean()),
                confusions,
            )
        )
    return out


# ---------------------------------------------------------------- every model on the same drawings


@dataclass
class Drawings:
    """Labelled drawings as the models see them, screened once for every model that reads them."""

    pixels: np.ndarray  # (N, 28, 28) in 0-1; a drawing refused before any model is a blank input
    labels: np.ndarray  # (N,) the digit each drawing is meant to be
    refused: np.ndarray | None = None  # (N,) bool: refused before any model (no answer shown; counted wrong)
    groups: list[str] | None = None  # a group name per drawing (its style), for the scores per group

    def __post_init__(self):
        self.pixels, self.labels = np.asarray(self.pixels, dtype=np.float32), np.asarray(self.labels)
        self.refused = np.zeros(len(self.labels), bool) if self.refused is None else np.asarray(self.refused, bool)
        self.groups = ["all"] * len(self.labels) if self.groups is None else list(self.groups)
        if self.pixels.shape[1:] != (SIZE, SIZE) or not (
            len(self.pixels) == len(self.labels) == len(self.refused) == len(self.groups)
        ):
            raise DrawingError(
                f"expected one label, refusal and group per {SIZE}x{SIZE} drawing; got pixels "
                f"{self.pixels.shape}, {len(self.labels)} labels, {len(self.refused)} refusals and "
                f"{len(self.groups)} groups"
            )

    @classmethod
    def screened(cls, images: np.ndarray, labels: np.ndarray, groups: list[str] | None = None) -> Drawings:
        """Canvas images (N, H, W) preprocessed like a drawing on the page, refusals included."""
        pixels, refused = screen_all(images)
        return cls(pixels, labels, refused, groups)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Reading:
    """What one model makes of the same drawings: its class probabilities for each."""

    name: str
    probabilities: np.ndarray  # (N, 10)

    def prediction(self, index: int = 0) -> Prediction:
        """The reading of one drawing (of the only one, when a single drawing was read)."""
        return reading(self.probabilities[index])

    def overall(self, drawings: Drawings) -> GroupScore:
        """Accuracy, unsure rate and confusions over all the drawings, a refused one counted wrong."""
        return score_groups(self.probabilities, drawings.refused, drawings.labels, ["all"] * len(drawings))[0]

    def by_group(self, drawings: Drawings) -> list[GroupScore]:
        return score_groups(self.probabilities, drawings.refused, drawings.labels, drawings.groups)

    def flagged_share(self, refused: np.ndarray) -> float:
        """The share of the drawings given no answer: refused before the model, or read as unsure."""
        return float(flagged(self.probabilities, refused).mean())


def read_with_each(models, pixels: np.ndarray) -> list[Reading]:
    """Every model's reading of the same drawings, in the models' order; models: (name, model) pairs.

    pixels: one 28x28 drawing in 0-1, or a stack (N, 28, 28). The Draw page's tables and
    benchmarks/drawn_digits.py read through this, so their figures are the same.
    """
    pixels = np.asarray(pixels, dtype=np.float32)
    stack = pixels[None] if pixels.ndim == 2 else pixels
    if stack.ndim != 3 or stack.shape[1:] != (SIZE, SIZE):
        raise DrawingError(f"expected a {SIZE}x{SIZE} drawing or a stack of them, got an array of shape {pixels.shape}")
    return [Reading(name, predict_all(model, stack)) for name, model in models]
