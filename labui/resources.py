"""The server's process-wide resources, made once and shared by every session: MNIST on the device, the job
runner, the device's name, the UMAP warm-up."""

from __future__ import annotations

import os
import threading
import time

import streamlit as st
import torch

from mnist_core.data import DeviceData, load_mnist, pick_device
from mnist_core.embed import warm_up
from mnist_core.host import settings as host_settings
from mnist_core.runner import Runner


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


def device_label() -> str:
    device = pick_device("auto")
    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    return f"CPU ({torch.get_num_threads()} threads)"


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
