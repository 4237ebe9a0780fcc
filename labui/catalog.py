"""The checkpoints the app offers: listed, those of the active data set's classes, the session's active one per data
set, each loaded once per weights version."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from mnist_core import datasets
from mnist_core.checkpoints import CheckpointInfo, UnreadableCheckpoint, list_checkpoints, load, scan
from mnist_core.data import DataError, pick_device
from mnist_core.datasets import DatasetInfo
from mnist_core.embed import file_digest

from .data_choice import active_dataset

ACTIVE_KEY = "active_checkpoint"  # MNIST's active checkpoint; another data set's is ACTIVE_KEY:<its key>


def checkpoints() -> list[CheckpointInfo]:
    return list_checkpoints()


def checkpoints_and_unreadable() -> tuple[list[CheckpointInfo], list[UnreadableCheckpoint]]:
    """One scan: the usable checkpoints, and those that cannot be used with why (never with the figures
    they claim)."""
    return scan()


def best_shipped(infos: list[CheckpointInfo]) -> str | None:
    shipped = [i for i in infos if i.source == "shipped" and i.meta.get("test_accuracy") is not None]
    pool = shipped or [i for i in infos if i.meta.get("test_accuracy") is not None]
    return max(pool, key=lambda i: i.meta["test_accuracy"]).name if pool else None


def for_dataset(infos: list[CheckpointInfo], dataset: DatasetInfo | None = None) -> list[CheckpointInfo]:
    """The checkpoints trained on the data set's classes (the active data set's by default)."""
    dataset = dataset or active_dataset()
    return [i for i in infos if datasets.same_classes(i.meta, dataset)]


def usable_checkpoints(dataset: DatasetInfo | None = None) -> list[CheckpointInfo]:
    return for_dataset(checkpoints(), dataset)


def active_key(dataset: DatasetInfo) -> str:
    return ACTIVE_KEY if dataset.key == datasets.MNIST else f"{ACTIVE_KEY}:{dataset.key}"


def active_checkpoint(infos: list[CheckpointInfo] | None = None, dataset: DatasetInfo | None = None):
    """The session's active checkpoint for the data set (the active one by default): the one chosen for it, else its
    most accurate shipped one, else its most accurate; None when nothing was trained on its classes."""
    dataset = dataset or active_dataset()
    usable = for_dataset(infos if infos is not None else checkpoints(), dataset)
    by_name = {i.name: i for i in usable}
    key = active_key(dataset)
    name = st.session_state.get(key)
    if name not in by_name:
        name = best_shipped(usable)
        st.session_state[key] = name
    return by_name.get(name)


def set_active(name: str, dataset: DatasetInfo | None = None) -> None:
    st.session_state[active_key(dataset or active_dataset())] = name


def refusal(info: CheckpointInfo, dataset: DatasetInfo | None = None) -> str | None:
    """Why this checkpoint cannot be evaluated on the data set (check_classes' words), or None when it can."""
    try:
        datasets.check_classes(info.meta, dataset or active_dataset())
    except DataError as exc:
        return str(exc)
    return None


def none_for(dataset: DatasetInfo) -> str:
    return f"No checkpoint trained on {dataset.title} yet: train one on the Train page."


def checkpoint_rows(infos: list[CheckpointInfo]) -> list[dict]:
    """One table row per checkpoint, as the home page and the runs table show them."""
    return [
        {
            "name": i.name,
            "data set": datasets.recorded_title(i.meta),
            "source": i.source,
            "architecture": i.meta["arch"],
            "params": i.meta.get("effective_params", i.meta.get("params")),  # pruned weights do not count
            "epochs": i.meta.get("epochs_done"),
            "test accuracy %": round(100 * i.meta["test_accuracy"], 2) if i.meta.get("test_accuracy") else None,
            "train time s": i.meta.get("train_seconds"),
            "status": i.meta.get("status"),
            "created": i.meta.get("created"),
        }
        for i in infos
    ]


@st.cache_resource(max_entries=16, show_spinner=False)
def _cached_model(weights_path: str, source: str, name: str, modified: float):
    """Keyed by the file, not the name: two visitors' runs may share a name (hosted mode)."""
    return load(name, device=pick_device("auto"), directories={source: Path(weights_path).parent})


def load_checkpoint(info: CheckpointInfo):
    """(model, meta), loaded once per checkpoint version."""
    return _cached_model(str(info.weights_path), info.source, info.name, info.weights_path.stat().st_mtime)


@st.cache_data(max_entries=64, show_spinner=False)
def _digest(path: str, modified: float) -> str:
    return file_digest(path)


def weights_digest(info: CheckpointInfo) -> str:
    return _digest(str(info.weights_path), info.weights_path.stat().st_mtime)
