"""Results computed once per server and shared by every session: embedding maps and the test-set predictions
of each checkpoint version."""

from __future__ import annotations

import threading

import numpy as np
import streamlit as st

from mnist_core import evaluation
from mnist_core.checkpoints import SHIPPED_DIR, CheckpointInfo, shared_runs_dir
from mnist_core.datasets import MNIST
from mnist_core.embed import Embedding, all_labels, find_cached

from .catalog import load_checkpoint, weights_digest
from .resources import device_data

PREDICTIONS = "predictions"  # the folder of saved test-set outputs, one .npy per weights version


class SharedMemory:
    """Results kept once per server for every session, safe when sessions (threads) ask at the same moment:
    the first computes a key while the others wait for its answer; at most max_entries, oldest dropped first."""

    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._items: dict = {}
        self._lock = threading.Lock()
        self._computing: dict = {}

    def get(self, key):
        with self._lock:
            return self._items.get(key)

    def get_or_compute(self, key, compute):
        """The value for key, from compute() the first time; a None answer is not kept (asked again next time)."""
        with self._lock:
            if key in self._items:
                return self._items[key]
            turn = self._computing.setdefault(key, threading.Lock())
        with turn:
            with self._lock:
                if key in self._items:
                    return self._items[key]
            try:
                value = compute()
                with self._lock:  # stored before the turn goes, so no later session computes it again
                    if value is not None:
                        self._items[key] = value
                        while len(self._items) > self.max_entries:
                            self._items.pop(next(iter(self._items)))
            finally:  # a failed or interrupted compute (a page's rerun) must not leave its turn behind
                with self._lock:
                    self._computing.pop(key, None)
        return value


@st.cache_resource
def _embedding_memory() -> SharedMemory:
    return SharedMemory(max_entries=32)


def cached_embedding(key: str, dataset: str = MNIST) -> Embedding | None:
    """A map computed before: from memory, else from the disk cache, else from the ones shipped with the lab.
    The key already tells data sets apart (embed.cache_key); dataset gives the map's labels."""

    def from_disk():
        return find_cached(key, all_labels(device_data(dataset).mnist))

    return _embedding_memory().get_or_compute(key, from_disk)


@st.cache_resource
def _predictions_memory() -> SharedMemory:
    return SharedMemory(max_entries=16)  # 400 KB each


def test_predictions(info: CheckpointInfo, progress=None, dataset: str = MNIST) -> np.ndarray:
    """The active checkpoint's softmax outputs on a data set's test split, scored once per weights version for the
    whole server: from memory, else from a file saved earlier (runs folder, or shipped beside the checkpoints),
    else scored in small batches (progress(share done)) and saved for the next start."""
    data = device_data(dataset)
    version = evaluation.predictions_version(weights_digest(info), data.mnist)
    test = data.test

    def score():
        for folder in (shared_runs_dir() / PREDICTIONS, SHIPPED_DIR / PREDICTIONS):  # server-wide, by weights digest
            if (found := evaluation.stored_probabilities(folder, version, len(test))) is not None:
                return found
        model, _ = load_checkpoint(info)
        probs = evaluation.test_probabilities(model, test, progress=progress)
        evaluation.store_probabilities(shared_runs_dir() / PREDICTIONS, version, probs)
        return probs

    return _predictions_memory().get_or_compute(version, score)
