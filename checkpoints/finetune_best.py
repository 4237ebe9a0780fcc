"""How the shipped `best` was made robust to the digits people draw: the MNIST-trained best, fine-tuned
for 2 epochs at a low learning rate on MNIST (rotation and shift augmentation) with a quarter of every
batch added from 30,000 styled synthetic drawings (mnist_core.strokes.training_drawings: every style,
framing and brush width, so thick and thin strokes too, preprocessed like the Draw page's drawings;
never a drawing of the style-rich test split).

    python checkpoints/finetune_best.py                      # the whole recipe: drawings, fine-tune, ship
    python checkpoints/finetune_best.py --ship-run NAME      # ship a run already trained with COMMAND below

It starts from checkpoints/best as made by `python benchmarks/accuracy.py best --seeds 0 --target 0.996
--ship best` (that run's command and figures are kept under "base" in best.json) and replaces it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

from mnist_core import strokes  # noqa: E402
from mnist_core.checkpoints import SHIPPED_DIR, find, load, save  # noqa: E402
from mnist_core.reporter import Reporter  # noqa: E402
from mnist_core.starting import load_starting_point  # noqa: E402
from mnist_core.train import RunResult, TrainConfig, fit  # noqa: E402

DRAWINGS, DRAWINGS_SEED = 30_000, 0
SETTINGS = dict(
    arch="cnn",
    model={"channels": [32, 64, 128], "dropout": 0.1},
    epochs=2,
    batch_size=128,
    optimizer="sgd",
    lr=0.01,
    momentum=0.9,
    nesterov=True,
    weight_decay=0.0005,
    schedule="cosine",
    label_smoothing=0.1,
    rotation=8.0,
    shift=2.0,
    init_checkpoint="best",
    drawings_share=0.25,
    record=False,
    seed=0,
)
COMMAND = (
    f"python -m mnist_core.strokes runs/styled-drawings --count {DRAWINGS} --seed {DRAWINGS_SEED} && "
    "MNIST_DRAWINGS_DIR=runs/styled-drawings python -m mnist_core train --arch cnn --set channels=32,64,128 "
    "--set dropout=0.1 --init-checkpoint best --drawings-share 0.25 --epochs 2 --optimizer sgd --lr 0.01 "
    "--momentum 0.9 --nesterov --weight-decay 0.0005 --schedule cosine --label-smoothing 0.1 --rotation 8 "
    "--shift 2 --no-record --seed 0 --name best-styled"
)


def ship(result: RunResult) -> None:
    base = find("best").meta
    base = base.get("base") or {
        k: base.get(k) for k in ("command", "test_accuracy", "epochs_done", "train_seconds", "created")
    }
    extra = {
        "preset": "best",
        "base": base,
        "command": COMMAND + " (then: python checkpoints/finetune_best.py "
        "--ship-run best-styled; or all in one: python checkpoints/finetune_best.py)",
    }
    save(result, "best", SHIPPED_DIR, extra=extra, overwrite=True)
    print(f"shipped checkpoints/best: test accuracy {result.test_accuracy:.2%}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ship-run", metavar="NAME", help="ship this trained run (in runs/) instead of training")
    args = parser.parse_args()
    if find("best").meta.get("base"):
        parser.error(
            "checkpoints/best is already fine-tuned (it has a 'base'); restore the MNIST-only best first "
            "(git) to start from it"
        )
    if args.ship_run:
        model, meta = load(args.ship_run)
        config = TrainConfig.from_dict(meta["train_config"])
        result = RunResult(
            model,
            config,
            meta["status"],
            meta["history"],
            meta["train_seconds"],
            meta["device"],
            meta["message"],
            meta["steps"],
        )
        ship(result)
        return 0
    with tempfile.TemporaryDirectory() as folder:
        strokes.main([f"{folder}/drawings", "--count", str(DRAWINGS), "--seed", str(DRAWINGS_SEED)])
        os.environ["MNIST_DRAWINGS_DIR"] = f"{folder}/drawings"
        config = TrainConfig(**SETTINGS)
        epochs = Reporter(lambda name, data: name == "epoch" and print(json.dumps(data), flush=True))
        start = load_starting_point(config)
        result = fit(config, reporter=epochs, model=start.model, drawings=start.drawings)
    if result.status != "finished":
        print(f"training {result.status}: {result.message}", file=sys.stderr)
        return 1
    ship(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
