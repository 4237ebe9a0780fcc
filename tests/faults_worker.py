"""A separate process that saves real runs, for the fault suite to kill -9 or race.

python tests/faults_worker.py "RUNS_DIR,NAME,FILL,OVERWRITE(0/1),PAUSE_STEP(or -)". It prints "<pid> start", then "paused after <step>" if it pauses (and waits to be killed), then
"<pid> saved" or "<pid> exists". The model's weights are all FILL and the metadata records
{"fill": FILL}, so a test can tell which save a checkpoint's files came from.
"""

import os
import sys
from pathlib import Path

import torch

from mnist_core.checkpoints import CheckpointExistsError, save  # noqa: E402
from mnist_core.models import build_model  # noqa: E402
from mnist_core.train import RunResult, TrainConfig  # noqa: E402


def run(runs_dir: str, name: str, fill: float, overwrite: bool) -> int:
    config = TrainConfig(arch="mlp", model={"width": 16})
    model = build_model("mlp", config.model)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(fill)
    result = RunResult(model, config, "finished", [{"epoch": 1, "steps": 1, "test_accuracy": 0.5}], 1.0, "cpu", steps=1)
    try:
        save(result, name, Path(runs_dir), extra={"fill": fill}, overwrite=overwrite)
    except CheckpointExistsError:
        print(f"{os.getpid()} exists", flush=True)
        return 3
    print(f"{os.getpid()} saved", flush=True)
    return 0


def main(job: str) -> int:
    runs_dir, name, fill, overwrite, pause = job.split(",")
    if pause != "-":
        os.environ["MNIST_TEST_SAVE_PAUSE"] = pause
    print(f"{os.getpid()} start {pause}", flush=True)
    return run(runs_dir, name, float(fill), overwrite == "1")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
