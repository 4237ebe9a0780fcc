"""The server's process-wide resources, made once and shared by every session: each data set on the device, the
job runner, the device's name."""

from __future__ import annotations

import streamlit as st
import torch

from mnist_core import datasets
from mnist_core.data import DataError, DeviceData, pick_device
from mnist_core.host import settings as host_settings
from mnist_core.runner import Runner

from .data_choice import active_dataset


@st.cache_resource(show_spinner="Loading the data set...")
def _builtin_data(key: str) -> DeviceData:
    """MNIST and Fashion-MNIST: each loaded once per server and kept (MNIST exactly as before: one load, shared)."""
    return DeviceData(datasets.load(key), device="auto")


@st.cache_resource(max_entries=4, show_spinner="Loading your data set...")
def _own_data(key: str, version: tuple[str, int]) -> DeviceData:
    """A visitor's imported set, keyed by its folder (two visitors' sets may share a name) and when it was imported
    (a set imported again is read again); at most four kept, as visitors may bring many."""
    return DeviceData(datasets.load(key), device="auto")


def device_data(key: str = datasets.MNIST) -> DeviceData:
    """A data set's splits on the device, loaded once per server (DataError when its files cannot be read)."""
    chosen = datasets.info(key)
    if not chosen.own:
        return _builtin_data(chosen.key)
    return _own_data(chosen.key, datasets.version(chosen.key))


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


def device_label() -> str:
    device = pick_device("auto")
    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    return f"CPU ({torch.get_num_threads()} threads)"


def active_data() -> DeviceData:
    """The session's data set on the device; a data set whose files cannot be read is an error on the page (what
    is wrong and what to do, from the reader), and the page stops there."""
    dataset = active_dataset()
    try:
        return device_data(dataset.key)
    except DataError as exc:
        st.error(f"{dataset.title} cannot be loaded: {exc}")
        st.stop()
