"""Process-wide resources (cached once) and per-session state."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import numpy as np
import streamlit as st
import torch
from streamlit.runtime.scriptrunner import get_script_run_ctx

from mnist_core import evaluation, owners
from mnist_core.checkpoints import (
    SHIPPED_DIR,
    CheckpointInfo,
    UnreadableCheckpoint,
    list_checkpoints,
    load,
    scan,
    shared_runs_dir,
)
from mnist_core.data import DeviceData, load_mnist, pick_device
from mnist_core.embed import Embedding, all_labels, file_digest, find_cached, warm_up
from mnist_core.host import HostSettingError
from mnist_core.host import settings as host_settings
from mnist_core.runner import Runner

ACTIVE_KEY = "active_checkpoint"
PREDICTIONS = "predictions"  # the folder of saved test-set outputs, one .npy per weights version


@st.cache_resource(show_spinner="Loading MNIST...")
def device_data() -> DeviceData:
    return DeviceData(load_mnist(), device="auto")


def _release(runner: Runner) -> None:
    runner.shutdown()


@st.cache_resource(max_entries=1, on_release=_release, show_spinner=False)
def _runner(host: str) -> Runner:
    return Runner()  # limits, backend and pool size from the host settings


def runner() -> Runner:
    """The server's one job runner: every page submits its long work here, under the host's limits.

    Cached per host settings: they never change in a running server; a test that changes them (another
    runs folder, another cap) gets a runner of its own, and the previous one is shut down.
    """
    return _runner(repr(host_settings()))


@st.cache_resource(max_entries=16, show_spinner=False)
def _cached_model(weights_path: str, source: str, name: str, modified: float):
    """Keyed by the file, not the name: two visitors' runs may share a name (hosted mode)."""
    return load(name, device=pick_device("auto"), directories={source: Path(weights_path).parent})


def umap_warm_up() -> threading.Thread | None:
    """Compile UMAP once per app process in the background; not in hosted mode (host.HOSTED_SWITCHES says why)."""
    return _umap_warm_up_thread() if host_settings().umap_warm_up else None


@st.cache_resource
def _umap_warm_up_thread() -> threading.Thread:
    """The warm-up thread, at the lowest CPU priority."""
    def work():
        time.sleep(10)  # let the first page finish loading first
        if hasattr(os, "setpriority"):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)  # this thread only (Linux)
        warm_up()

    thread = threading.Thread(target=work, name="umap-warm-up", daemon=True)
    thread.start()
    return thread


@st.cache_data(max_entries=64, show_spinner=False)
def _digest(path: str, modified: float) -> str:
    return file_digest(path)


def weights_digest(info: CheckpointInfo) -> str:
    return _digest(str(info.weights_path), info.weights_path.stat().st_mtime)


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


def cached_embedding(key: str) -> Embedding | None:
    """A map computed before: from memory, else from the disk cache, else from the ones shipped with the lab."""
    def from_disk():
        return find_cached(key, all_labels(device_data().mnist))

    return _embedding_memory().get_or_compute(key, from_disk)


@st.cache_resource
def _predictions_memory() -> SharedMemory:
    return SharedMemory(max_entries=16)  # 400 KB each


def test_predictions(info: CheckpointInfo, progress=None) -> np.ndarray:
    """The active checkpoint's softmax outputs on the test set, scored once per weights version for the whole
    server: from memory, else from a file saved earlier (runs folder, or shipped beside the checkpoints), else
    scored in small batches (progress(share done)) and saved for the next start."""
    version = weights_digest(info)
    test = device_data().test

    def score():
        for folder in (shared_runs_dir() / PREDICTIONS, SHIPPED_DIR / PREDICTIONS):  # server-wide, by weights digest
            if (found := evaluation.stored_probabilities(folder, version, len(test))) is not None:
                return found
        model, _ = load_checkpoint(info)
        probs = evaluation.test_probabilities(model, test, progress=progress)
        evaluation.store_probabilities(shared_runs_dir() / PREDICTIONS, version, probs)
        return probs

    return _predictions_memory().get_or_compute(version, score)


def load_checkpoint(info: CheckpointInfo):
    """(model, meta), loaded once per checkpoint version."""
    return _cached_model(str(info.weights_path), info.source, info.name, info.weights_path.stat().st_mtime)


def session_id() -> str:
    """Who owns a training job: the same browser across page reloads, a different one for anyone else.

    Streamlit's session id changes on every reload, which would orphan a running job (no way to see or
    stop it). The XSRF cookie Streamlit sets lives for the browser session, so it is used when present.
    """
    cookie = st.context.cookies.get("_streamlit_xsrf") if st.context.cookies else None
    if cookie:
        return "browser-" + hashlib.sha256(_unmasked_token(cookie)).hexdigest()[:16]
    ctx = get_script_run_ctx()
    return ctx.session_id if ctx else "no-session"


def owner() -> str:
    """This browser's owner id (hosted mode keeps its runs and drawings in a folder of that name)."""
    return owners.key(session_id())


def use_owner() -> None:
    """Make this browser's own folder the one runs and drawings are read from and saved to, for the rest of
    this script run (hosted mode; locally the shared folder stays), mark the browser as seen, and now and then
    remove the files of visitors unseen past MNIST_OWNER_IDLE_HOURS.

    The sweep runs lazily here rather than on a timer thread: files only grow while visitors use the app, so
    a sweep when one arrives is soon enough, and a server nobody visits spends nothing on it."""
    me = owner()
    try:
        owners.use(me)
    except HostSettingError:  # a bad MNIST_HOSTED: the sidebar names it and stops the page
        return
    if owners.current() is not None:
        owners.touch(me)
        owners.sweep(runner().live_owners())


def _unmasked_token(cookie: str) -> bytes:
    """The stable part of the XSRF cookie: it is re-issued with a fresh random mask on every response."""
    parts = cookie.split("|")
    try:
        if parts[0] == "2" and len(parts) >= 3:  # "2|mask|masked token|timestamp"
            mask, masked = bytes.fromhex(parts[1]), bytes.fromhex(parts[2])
            return bytes(m ^ t for m, t in zip(mask, masked))
    except ValueError:
        pass
    return cookie.encode()


def device_label() -> str:
    device = pick_device("auto")
    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    return f"CPU ({torch.get_num_threads()} threads)"


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
        name = best_shipped(infos)
        st.session_state[ACTIVE_KEY] = name
    return by_name.get(name)


def set_active(name: str) -> None:
    st.session_state[ACTIVE_KEY] = name


def checkpoint_rows(infos: list[CheckpointInfo]) -> list[dict]:
    """One table row per checkpoint, as the home page and the runs table show them."""
    return [{"name": i.name, "source": i.source, "architecture": i.meta["arch"], "params": i.meta.get("effective_params", i.meta.get("params")),  # pruned weights do not count
             "epochs": i.meta.get("epochs_done"),
             "test accuracy %": round(100 * i.meta["test_accuracy"], 2) if i.meta.get("test_accuracy") else None,
             "train time s": i.meta.get("train_seconds"), "status": i.meta.get("status"),
             "created": i.meta.get("created")} for i in infos]
