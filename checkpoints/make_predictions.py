"""Ship the test-set predictions of the checkpoints Inspect opens first (best, the default, and fast, the one with a
recorded history; fashion, the default on Fashion-MNIST), so a fresh server's first visitor does not wait for 10,000 digits to be scored. Each file is
named by the weights' digest: retraining a checkpoint makes its file unused, never wrong.

    python checkpoints/make_predictions.py
"""

from mnist_core import datasets, evaluation  # noqa: E402
from mnist_core.checkpoints import SHIPPED_DIR, find, load  # noqa: E402
from mnist_core.data import DeviceData  # noqa: E402
from mnist_core.embed import file_digest  # noqa: E402

SHIPPED = (("best", datasets.MNIST), ("fast", datasets.MNIST), ("fashion", datasets.FASHION))

if __name__ == "__main__":
    for name, dataset in SHIPPED:
        data = datasets.load(dataset)
        model, _ = load(name)
        version = evaluation.predictions_version(file_digest(find(name).weights_path), data)
        probabilities = evaluation.test_probabilities(model, DeviceData(data, device="cpu").test)
        evaluation.store_probabilities(SHIPPED_DIR / "predictions", version, probabilities)
        print(f"{name}: checkpoints/predictions/{version}.npy")
