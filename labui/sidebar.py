"""The sidebar every page shares: device, active checkpoint, this session's running job."""

from __future__ import annotations

import streamlit as st

from . import state
from .navigation import use_app_navigation
from mnist_core.host import problem as host_problem


def checkpoint_label(info) -> str:
    acc = info.meta.get("test_accuracy")
    acc_text = f"{acc:.2%}" if acc is not None else "n/a"
    return f"{info.name} ({info.meta['arch']}, {acc_text}{', shipped' if info.source == 'shipped' else ''})"


def sidebar() -> None:
    if (problem := host_problem()) is not None:  # bad MNIST_* settings: one line, not a traceback on every page
        st.error(f"This app cannot start: {problem}")
        st.stop()
    use_app_navigation()  # a shared link opened first in a fresh server gets the app's navigation too
    state.umap_warm_up()  # so the first UMAP map a user asks for does not wait a minute for numba
    infos, unreadable = state.checkpoints_and_unreadable()
    with st.sidebar:
        st.caption(f"Device: **{state.device_label()}**")
        active = state.active_checkpoint(infos)
        if infos:
            names = [i.name for i in infos]
            labels = {i.name: checkpoint_label(i) for i in infos}
            choice = st.selectbox("Active checkpoint", names, index=names.index(active.name) if active else 0,
                                  format_func=labels.get, help="The model the inspecting and drawing pages use.")
            state.set_active(choice)
        else:
            st.warning("No checkpoints found: train one on the Train page.")
        if unreadable:
            with st.expander(f"{len(unreadable)} checkpoint(s) could not be read"):
                for bad in unreadable:
                    st.caption(f"**{bad.name}** ({bad.source}): {bad.reason}")
        job = state.job_manager().latest(state.session_id())
        if job is not None:
            snap = job.snapshot()
            if snap.running:
                st.info(f"Training **{snap.name}**: epoch {snap.epoch}/{snap.config.epochs}, "
                        f"step {snap.step}/{snap.total_steps}")
            else:
                st.caption(f"Last run **{snap.name}**: {snap.status}")
