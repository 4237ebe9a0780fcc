"""Saved runs in states the tests need, built for real with the project's own save."""

import json

from mnist_core.checkpoints import file_sha256, save
from mnist_core.train import TrainConfig, fit


def save_unloadable_run(data, runs, name: str, model: dict):
    """A saved run that is listed (its recorded hash matches) but whose weights do not load: a wider
    net's weights under its name. The storage checks pass, so only loading the weights can fail."""
    wider = {**model, "width": 2 * model.get("width", 32)}
    save(fit(TrainConfig(arch="mlp", model=model, max_batches=2, record=False), data), name)
    save(fit(TrainConfig(arch="mlp", model=wider, max_batches=2, record=False), data), f"{name}-wider")
    (runs / f"{name}.safetensors").write_bytes((runs / f"{name}-wider.safetensors").read_bytes())
    meta = json.loads((runs / f"{name}.json").read_text())
    meta["files"]["weights_sha256"] = file_sha256(runs / f"{name}.safetensors")
    (runs / f"{name}.json").write_text(json.dumps(meta))
