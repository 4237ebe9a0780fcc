"""A separate process that saves one real run, for the fault suite to kill -9 or race.

usage: python tests/faults_worker.py RUNS_DIR NAME FILL [--no-overwrite]
The model's weights are all FILL and the metadata records {"fill": FILL}, so a test can tell which save
a checkpoint's files came from. MNIST_TEST_SAVE_PAUSE=<step> stops the save after that step.
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mnist_core.checkpoints import CheckpointExistsError, save  # noqa: E402
from mnist_core.models import build_model  # noqa: E402
from mnist_core.probes import ProbeRecord  # noqa: E402,F401
from mnist_core.train import RunResult, TrainConfig  # noqa: E402


def run(runs_dir: str, name: str, fill: float, overwrite: bool) -> int:
    config = TrainConfig(arch="mlp", model={"width": 16})
    model = build_model("mlp", config.model)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(fill)
    result = RunResult(model, config, "finished", [{"epoch": 1, "test_accuracy": 0.5}], 1.0, "cpu", steps=1)
    try:
        save(result, name, Path(runs_dir), extra={"fill": fill}, overwrite=overwrite)
    except CheckpointExistsError:
        print("exists", flush=True)
        return 3
    print("saved", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1], sys.argv[2], float(sys.argv[3]), "--no-overwrite" not in sys.argv))
