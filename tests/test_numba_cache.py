"""UMAP's compiled code is cached on disk: a second process computes a map without compiling it again.

Each map runs in a fresh Python process (numba's compiled functions live in the process), on real MNIST.
The observable is numba's own "numba:compile" event, which fires only when a function is compiled and
not when it is loaded from the disk cache.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys
from numba.core import event
compiled = []
class Count(event.Listener):
    def on_start(self, e): pass
    def on_end(self, e): compiled.append(e.data["dispatcher"].py_func.__qualname__)
event.register("numba:compile", Count())
from mnist_core import embed
from mnist_core.data import load_mnist
e = embed.compute(embed.EmbedSpec(method="umap", points=1_000, seed=0), load_mnist())
print(json.dumps({"compiled": compiled, "shape": list(e.coords.shape),
                  "separation": embed.knn_separation(e.coords, e.labels).accuracy,
                  "cache": str(embed.numba_cache_dir())}))
"""


def small_map(cache_dir: Path) -> tuple[dict, str]:
    env = {**os.environ, "MNIST_CACHE_DIR": str(cache_dir), "PYTHONPATH": str(ROOT)}
    env.pop("NUMBA_CACHE_DIR", None)
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_a_second_process_computes_a_map_without_recompiling(tmp_path):
    first, _ = small_map(tmp_path)
    folder = Path(first["cache"])
    assert folder.is_relative_to(tmp_path / "numba")  # beside the maps, in a folder named by the versions
    assert len(list(folder.rglob("*.nbi"))) >= 20  # numba's index files: one per cached source function
    assert len(first["compiled"]) >= 50  # the first process compiled UMAP's code (128 measured)

    second, _ = small_map(tmp_path)
    # Only umap.utils.tau_rand and tau_rand_int remain: they call a function through a dispatcher object,
    # which numba will not cache; they compile in well under a second.
    assert len(second["compiled"]) <= 4, second["compiled"]
    assert second["shape"] == [1_000, 2] and second["separation"] >= 0.75  # chance is 0.1; 0.82 measured


def test_an_unwritable_cache_folder_still_gives_a_map(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # nothing can be created below a file, not even by root
    result, log = small_map(blocker / "cache")
    assert result["shape"] == [1_000, 2] and result["separation"] >= 0.75
    assert "is not writable" in log and "UMAP compiles its code in this process" in log


def test_a_damaged_cache_is_rebuilt_and_the_map_still_computed(tmp_path):
    first, _ = small_map(tmp_path)
    damaged = list(Path(first["cache"]).rglob("*.nbi"))
    for index in damaged:
        index.write_bytes(b"\x00garbage")
    result, log = small_map(tmp_path)
    assert result["shape"] == [1_000, 2] and result["separation"] >= 0.75
    assert "could not be read" in log
    assert all(index.read_bytes() != b"\x00garbage" for index in Path(first["cache"]).rglob("*.nbi"))  # rebuilt
