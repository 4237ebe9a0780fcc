"""Drawn digits in many styles, and random scribbles, read by every shipped checkpoint, before and after.

    python benchmarks/drawn_digits.py --per-style 40 --per-shape 100 --before 9e7bc24

The digits are the fixed style-rich test split (mnist_core.strokes.style_test_split: every style of
every class, e.g. a flagged 1, a crossed 7, an open 4, drawn centred, small in a corner or touching
the edges, with a thin, medium or thick brush), rendered like a canvas brush and preprocessed like a
real drawing. No model trains on it: the styled training drawings come from another random stream.
The non-digits (a dot, a filled box, an X, a smiley, a #, random scribbles) go through the same path.
A drawing is "unsure" (flagged) when the page refuses it before the model (too little ink, a solid
blob, scattered pieces) or the model's reading is unsure; either way the page shows no answer.

"Before" is the shipped checkpoints at git revision --before (the weights before the styled
fine-tuning), read from git itself; "after" is the checkpoints in the working tree. A checkpoint
whose weights did not change shows one figure.

Targets for the default checkpoint (the most accurate shipped one): >= 99% of the style-rich split
read right, every style >= 97%, random scribbles flagged >= 90%.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from mnist_core.checkpoints import CheckpointInfo, file_sha256, list_checkpoints, load  # noqa: E402
from mnist_core.drawing import Drawings, Reading, read_with_each, screen_all  # noqa: E402
from mnist_core.strokes import non_digits, style_test_split  # noqa: E402

BEFORE = "9e7bc24"  # the last revision with the shipped checkpoints as trained on MNIST alone
TARGET_ALL, TARGET_STYLE, TARGET_SCRIBBLES = 0.99, 0.97, 0.90


def reads_mnist(info: CheckpointInfo) -> bool:
    return (info.meta.get("dataset") or {}).get("name", "mnist") == "mnist"


def shipped_at(revision: str, folder: Path) -> list[CheckpointInfo]:
    """The shipped checkpoints as they were at a git revision, written into folder; [] without git."""
    try:
        names = subprocess.run(
            ["git", "-C", str(ROOT), "ls-tree", "--name-only", revision, "checkpoints/"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        for path in names:
            if path.endswith((".json", ".safetensors")):
                blob = subprocess.run(
                    ["git", "-C", str(ROOT), "show", f"{revision}:{path}"], capture_output=True, check=True
                ).stdout
                (folder / Path(path).name).write_bytes(blob)
    except (OSError, subprocess.CalledProcessError):
        return []
    return list_checkpoints({"shipped": folder})


class Evaluation:
    """What one checkpoint makes of the digits and the non-digits."""

    def __init__(self, mnist: float, on_digits: Reading, digits: Drawings, on_shapes: dict[str, Reading], shapes):
        self.mnist = mnist
        self.overall = on_digits.overall(digits)
        self.styles = on_digits.by_group(digits)
        self.shapes = {name: on_shapes[name].flagged_share(refused) for name, (_, refused) in shapes.items()}

    @property
    def worst(self):
        return min(self.styles, key=lambda s: s.accuracy)


def evaluate(infos: list[CheckpointInfo], digits: Drawings, shapes) -> dict[str, Evaluation]:
    """Each checkpoint on the digits and the non-digits, read as the Draw page reads them (read_with_each)."""
    loaded = {i.name: load(i.name, directories={"shipped": i.meta_path.parent}) for i in infos}
    models = [(name, model) for name, (model, _) in loaded.items()]
    on_digits = read_with_each(models, digits.pixels)
    on_shapes = {shape: read_with_each(models, pixels) for shape, (pixels, _) in shapes.items()}
    return {
        read.name: Evaluation(
            loaded[read.name][1]["test_accuracy"],
            read,
            digits,
            {shape: reads[i] for shape, reads in on_shapes.items()},
            shapes,
        )
        for i, read in enumerate(on_digits)
    }


def pair(before: float | None, after: float, fmt: str = "{:.1%}") -> str:
    """'before -> after', or one figure when nothing changed."""
    if before is None or abs(before - after) < 1e-12:
        return fmt.format(after)
    return f"{fmt.format(before)} -> {fmt.format(after)}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-style", type=int, default=40, help="test drawings per style (the split's first N)")
    parser.add_argument("--per-shape", type=int, default=100, help="drawings of each non-digit shape")
    parser.add_argument("--seed", type=int, default=0, help="seed of the non-digits")
    parser.add_argument("--before", default=BEFORE, help="git revision of the 'before' checkpoints")
    parser.add_argument("--only", help="comma-separated checkpoint names (default: every shipped one)")
    args = parser.parse_args()
    if args.per_style < 1 or args.per_shape < 1:
        parser.error("--per-style and --per-shape must be at least 1")

    split = style_test_split(args.per_style)
    digits = Drawings.screened(split.images, split.labels, split.styles)
    shapes = {name: screen_all(drawn) for name, drawn in non_digits(args.per_shape, args.seed).items()}
    # Digit readers only: a checkpoint of another data set's classes (fashion) has no digit to give.
    after = [i for i in list_checkpoints() if i.source == "shipped" and reads_mnist(i)]
    if args.only:
        wanted = set(args.only.split(","))
        after = [i for i in after if i.name in wanted]
    default = max((i for i in list_checkpoints() if i.source == "shipped"), key=lambda i: i.meta["test_accuracy"]).name

    with tempfile.TemporaryDirectory() as tmp:
        before = {i.name: i for i in shipped_at(args.before, Path(tmp))}
        changed = [
            before[i.name]
            for i in after
            if i.name in before and file_sha256(before[i.name].weights_path) != file_sha256(i.weights_path)
        ]
        now, then = evaluate(after, digits, shapes), evaluate(changed, digits, shapes)
        results = [(info.name, then.get(info.name), now[info.name]) for info in after]

    n_styles = len(set(split.styles))
    print(
        f"style-rich test split: {len(split)} drawn digits, {n_styles} styles x {args.per_style}; "
        f"{args.per_shape} of each non-digit (seed {args.seed}); before = shipped at {args.before}"
        + ("" if before else " (not found: no git history, after only)")
    )
    print(
        f"targets for the default checkpoint ({default}): all >= {TARGET_ALL:.0%}, every style >= "
        f"{TARGET_STYLE:.0%}, scribbles flagged >= {TARGET_SCRIBBLES:.0%}"
    )
    print(
        f"refused before any model: digits {digits.refused.mean():.1%}, "
        + ", ".join(f"{name} {r.mean():.0%}" for name, (_, r) in shapes.items())
    )
    print()
    print(
        f"{'checkpoint':<16} {'MNIST test':>17} {'styled digits':>17} {'unsure':>15} "
        f"{'worst style':>38} {'scribbles flagged':>18}"
    )
    for name, old, now in results:
        mark = " *" if name == default else ""
        worst = f"{now.worst.name} {now.worst.accuracy:.1%}"
        if old is not None:
            worst = f"{old.worst.name} {old.worst.accuracy:.1%} -> {worst}"
        print(
            f"{name + mark:<16} {pair(old and old.mnist, now.mnist, '{:.2%}'):>17} "
            f"{pair(old and old.overall.accuracy, now.overall.accuracy):>17} "
            f"{pair(old and old.overall.unsure, now.overall.unsure):>15} {worst:>38} "
            f"{pair(old and old.shapes['scribble'], now.shapes['scribble'], '{:.0%}'):>18}"
        )
    print(
        "* the default checkpoint. styled digits: top guess right; unsure: refused or read as unsure "
        "(no answer shown); 'a -> b' is before -> after"
    )
    print()
    print("non-digits flagged (refused or unsure), per shape:")
    for name, old, now in results:
        print(
            f"  {name:<14} "
            + ", ".join(
                f"{shape} {pair(old and old.shapes[shape], rate, '{:.0%}')}" for shape, rate in now.shapes.items()
            )
        )
    for name, old, now in results:
        print()
        print(f"{name}: per style (accuracy, unsure, most common misreadings){' before -> after' if old else ''}")
        for i, style in enumerate(now.styles):
            was = old.styles[i] if old else None
            confusions = style.top_confusions()
            if was is not None and was.top_confusions() != confusions:
                confusions = f"{was.top_confusions()} -> {confusions}"
            print(
                f"  {style.name:<20} {pair(was and was.accuracy, style.accuracy, '{:.0%}'):>12} "
                f"{pair(was and was.unsure, style.unsure, '{:.0%}'):>12}  {confusions}"
            )
    final = {name: now for name, _, now in results}
    if default in final:
        d = final[default]
        met = (
            d.overall.accuracy >= TARGET_ALL
            and d.worst.accuracy >= TARGET_STYLE
            and d.shapes["scribble"] >= TARGET_SCRIBBLES
        )
        print()
        print(
            f"default {default}: styled digits {d.overall.accuracy:.1%} (target {TARGET_ALL:.0%}), worst style "
            f"{d.worst.name} {d.worst.accuracy:.1%} (target {TARGET_STYLE:.0%}), scribbles flagged "
            f"{d.shapes['scribble']:.0%} (target {TARGET_SCRIBBLES:.0%}): {'met' if met else 'NOT met'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
