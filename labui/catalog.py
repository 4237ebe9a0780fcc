"""The checkpoints the app offers: listed, the session's active one, each loaded once per weights version."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from mnist_core import datasets
from mnist_core.checkpoints import CheckpointInfo, UnreadableCheckpoint, list_checkpoints, load, scan
from mnist_core.data import pick_device
from mnist_core.embed import file_digest

ACTIVE_KEY = "active_checkpoint"


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


def active_checkpoint(infos: list[CheckpointInfo] | None = None) -> CheckpointInfo | None:
    infos = infos if infos is not None else checkpoints()
    by_name = {i.name: i for i in infos}
    name = st.session_state.get(ACTIVE_KEY)
    if name not in by_name:
        # The default is an MNIST checkpoint: one trained on other classes (fashion) would score digits as clothes.
        name = best_shipped([i for i in infos if datasets.same_classes(i.meta, datasets.info(datasets.MNIST))])
        st.session_state[ACTIVE_KEY] = name
    return by_name.get(name)


def set_active(name: str) -> None:
    st.session_state[ACTIVE_KEY] = name


def checkpoint_rows(infos: list[CheckpointInfo]) -> list[dict]:
    """One table row per checkpoint, as the home page and the runs table show them."""
    return [
        {
            "name": i.name,
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
