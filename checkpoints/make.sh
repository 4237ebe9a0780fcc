#!/usr/bin/env bash
# How the shipped checkpoints were made: the CLI with each preset, seed 0, saved into checkpoints/.
# best and tiny_gap come from benchmarks/accuracy.py --ship (their first seed), see the README.
set -euo pipefail
cd "$(dirname "$0")/.."
for preset in fast mlp columnet sparsenet cnn conv_fc conv2_fc2; do
  python -m mnist_core train --preset "$preset" --name "$preset" --out checkpoints --quiet
done
