#!/usr/bin/env bash
# How the shipped checkpoints were made: the CLI with each preset, seed 0, saved into checkpoints/.
# best and tiny_gap come from benchmarks/accuracy.py --ship (their first seed), see the README; best is then
# fine-tuned on styled drawn digits (python checkpoints/finetune_best.py; best.json keeps both commands), and
# the files derived from it remade: python checkpoints/make_predictions.py && python checkpoints/make_embeddings.py
set -euo pipefail
cd "$(dirname "$0")/.."
for preset in fast mlp columnet sparsenet cnn conv_fc conv2_fc2; do
  python -m mnist_core train --preset "$preset" --name "$preset" --out checkpoints --quiet
done
# fashion: the one shipped Fashion-MNIST classifier (its preset names the data set).
python -m mnist_core train --preset fashion --name fashion --out checkpoints --quiet
