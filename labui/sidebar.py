"""The sidebar every page shares: data set, device, active checkpoint, this browser's live job of any kind."""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from streamlit.errors import StreamlitAPIException

from mnist_core.host import describe_limits, hosted
from mnist_core.host import problem as host_problem
from mnist_core.kinds import kind

from . import catalog, live, resources, visitor
from .data_choice import dataset_picker
from .navigation import page_label, use_app_navigation


def checkpoint_label(info) -> str:
    acc = info.meta.get("test_accuracy")
    acc_text = f"{acc:.2%}" if acc is not None else "n/a"
    return f"{info.name} ({info.meta['arch']}, {acc_text}{', shipped' if info.source == 'shipped' else ''})"


def sidebar() -> None:
    if (problem := host_problem()) is not None:  # bad MNIST_* settings: one line, not a traceback on every page
        st.error(f"This app cannot start: {problem}")
        st.stop()
    visitor.use_owner()  # hosted: this browser's own runs and drawings (app.py sets it too; a page run alone needs it)
    use_app_navigation()  # a shared link opened first in a fresh server gets the app's navigation too
    infos, unreadable = catalog.checkpoints_and_unreadable()
    with st.sidebar:
        dataset = dataset_picker()
        st.caption(f"Device: **{resources.device_label()}**")
        usable = catalog.for_dataset(infos, dataset)
        active = catalog.active_checkpoint(usable, dataset)
        if usable:
            names = [i.name for i in usable]
            labels = {i.name: checkpoint_label(i) for i in usable}
            choice = st.selectbox(
                "Active checkpoint",
                names,
                index=names.index(active.name) if active else 0,
                format_func=labels.get,
                help=f"The model the inspecting and drawing pages use; only those trained on {dataset.title}'s "
                "classes are listed.",
            )
            catalog.set_active(choice, dataset)
        elif infos:
            st.warning(catalog.none_for(dataset))
        else:
            st.warning("No checkpoints found: train one on the Train page.")
        if unreadable:
            with st.expander(f"{len(unreadable)} checkpoint(s) could not be read"):
                for bad in unreadable:
                    st.caption(f"**{bad.name}** ({bad.source}): {bad.reason}")
        job_entry()


def hosted_limits() -> None:
    """What this hosted demo allows a visitor, from the same table as the README's (host.describe_limits);
    nothing when the app is not hosted. The home page shows it."""
    if not hosted():
        return
    with st.expander("This is a hosted demo: its limits"):
        for row in describe_limits():
            st.caption(f"**{row['bounds'][0].upper() + row['bounds'][1:]}**: {row['in force']} (`{row['setting']}`)")


def job_entry() -> None:
    """This browser's queued or running job of any kind: what it is, where it is shown, progress, Stop.

    It reruns every second only while there is such a job; otherwise the last one's end is one line."""
    if live.live_job() is not None:
        _live_entry()
        return
    last = live.latest()
    if last is not None:
        st.caption(f"Your last {kind(last.kind).label} **{last.name or last.kind}**: {live.status_text(last)}")


@st.fragment(run_every=live.POLL_SECONDS)
def _live_entry() -> None:
    snap = live.live_job()
    if snap is None:
        st.rerun()  # it ended: the whole page shows its end, and nothing polls any more
    job_kind = kind(snap.kind)
    with st.container(border=True):
        st.markdown(f"**Your {job_kind.label}** · {snap.name or snap.kind}")
        st.progress(live.fraction(snap), text=live.status_text(snap))
        link, button = st.columns([3, 2], vertical_alignment="center")
        with link:
            page_link(job_kind.page)
        button.button(
            "Stop",
            key="sidebar.stop",
            on_click=live.stop,
            args=(snap.id,),
            disabled=snap.stopping,
            help="Ends the job after the current step; what was learned so far is kept.",
        )


def page_link(page: str) -> None:
    """A link to the page that shows the job (plain text where the page runs outside the app's navigation)."""
    label = page_label(Path(page))
    try:
        st.page_link(page, label=f"Open {label}", icon=":material/open_in_new:")
    except StreamlitAPIException:  # a page run on its own (tests), without app.py's navigation
        st.caption(f"Shown on the {label} page")
