"""Train the Fashion-MNIST CNN shipped in checkpoints/backbones/, the Transfer page's offline backbone.

python checkpoints/make_backbone.py    # Fashion-MNIST from data/fashion-mnist, or FASHION_MNIST_DIR=/path/to/idx-files
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import safetensors.torch

from mnist_core.data import DataError, DeviceData  # noqa: E402
from mnist_core.datasets import FASHION  # noqa: E402
from mnist_core.datasets import load as load_dataset  # noqa: E402
from mnist_core.files import atomic_write, write_json_atomic  # noqa: E402
from mnist_core.reporter import Reporter  # noqa: E402
from mnist_core.train import TrainConfig, fit  # noqa: E402
from mnist_core.transfer import BACKBONE_DIR, FASHION_MODEL  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    try:
        fashion = load_dataset(FASHION)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    config = TrainConfig(
        arch="cnn",
        model=dict(FASHION_MODEL),
        epochs=args.epochs,
        batch_size=128,
        optimizer="adam",
        lr=3e-3,
        schedule="onecycle",
        record=False,
    )
    result = fit(
        config,
        DeviceData(fashion, device="auto"),
        Reporter(
            lambda kind, d: (
                kind == "epoch"
                and print(f"epoch {d['epoch']}: Fashion-MNIST test accuracy {d['test_accuracy']:.2%}", flush=True)
            )
        ),
    )
    if result.status != "finished":
        print(f"error: training {result.status}: {result.message}", file=sys.stderr)
        return 1
    BACKBONE_DIR.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in result.model.state_dict().items()}
    atomic_write(BACKBONE_DIR / "fashion_cnn.safetensors", lambda tmp: safetensors.torch.save_file(state, tmp))
    meta = {
        "name": "fashion_cnn",
        "arch": "cnn",
        "model_config": {k: list(v) if isinstance(v, tuple) else v for k, v in FASHION_MODEL.items()},
        "data": "Fashion-MNIST (Debian dataset-fashion-mnist)",
        "mean": fashion.mean,
        "std": fashion.std,
        "fashion_test_accuracy": result.test_accuracy,
        "train_seconds": round(result.seconds, 1),
        "device": result.device,
        "train_config": dataclasses.asdict(config),
        "history": result.history,
        "command": "python checkpoints/make_backbone.py" + (f" --epochs {args.epochs}" if args.epochs != 4 else ""),
    }
    write_json_atomic(BACKBONE_DIR / "fashion_cnn.json", meta)
    print(f"saved {BACKBONE_DIR / 'fashion_cnn.safetensors'}: {result.test_accuracy:.2%} on Fashion-MNIST's test set")
    return 0


if __name__ == "__main__":
    sys.exit(main())
