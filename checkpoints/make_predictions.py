"""Ship the test-set predictions of the checkpoints Inspect opens first (best, the default, and fast, the one with a
recorded history), so a fresh server's first visitor does not wait for 10,000 digits to be scored. Each file is
named by the weights' digest: retraining a checkpoint makes its file unused, never wrong.

    python checkpoints/make_predictions.py
"""

from mnist_core import evaluation  # noqa: E402
from mnist_core.checkpoints import SHIPPED_DIR, find, load  # noqa: E402
from mnist_core.data import DeviceData  # noqa: E402
from mnist_core.embed import file_digest  # noqa: E402

SHIPPED = ("best", "fast")

if __name__ == "__main__":
    test = DeviceData(device="cpu").test
    for name in SHIPPED:
        model, _ = load(name)
        version = file_digest(find(name).weights_path)
        evaluation.store_probabilities(SHIPPED_DIR / "predictions", version, evaluation.test_probabilities(model, test))
        print(f"{name}: checkpoints/predictions/{version}.npy")
