"""This browser's jobs on the server's one runner, as every page shows them.

submit() shows a refusal (a limit, a bad setting) as an error and loses nothing; status_text() words a
job in the one vocabulary (queued with its place, running, done, stopped, failed with the reason);
progress_row() draws its bar and its Stop; watch() draws a live view that reruns every second only
while this browser has a job of that kind queued or running: a tab left open on an idle page costs
the server nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from mnist_core.reporter import DONE, FAILED, QUEUED, RUNNING, STOPPED
from mnist_core.runner import JobRefused, JobState

from . import resources, visitor

POLL_SECONDS = 1.0
SUBMITTED = "live.submitted"  # session key: (tag, id) of the job a page submitted in its previous run


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def submit(kind: str, config: dict, name: str | None = None, overwrite: bool = False, tag: str | None = None) -> None:
    """Submit this browser's job, or show why not (a host limit, a bad setting, a taken name).

    A job that was taken reruns the whole page at once: the sidebar, drawn before the button that
    started it, then shows it (and polls), and so does the page's live view. just_submitted() tells
    the page's next run which job that was (when submitted with a tag)."""
    try:
        job = resources.runner().submit(visitor.session_id(), kind, config, name=name, overwrite=overwrite)
    except (JobRefused, ValueError) as exc:
        st.error(f"Not started: {exc}")
        return
    if tag is not None:
        st.session_state[SUBMITTED] = (tag, job.id)
    st.rerun()


def just_submitted(tag: str) -> JobState | None:
    """The job submitted with this tag by the run before this one, once."""
    tagged, job_id = st.session_state.get(SUBMITTED, (None, None))
    if tagged != tag:
        return None
    del st.session_state[SUBMITTED]
    job = resources.runner().get(job_id)
    return job.snapshot() if job is not None else None


def latest(kind: str | None = None) -> JobState | None:
    """A snapshot of this browser's latest job of that kind (any kind when None); never another browser's."""
    job = resources.runner().latest(visitor.session_id(), kind)
    return job.snapshot() if job is not None else None


def live_job() -> JobState | None:
    """A snapshot of this browser's queued or running job, of any kind."""
    job = resources.runner().live(visitor.session_id())
    return job.snapshot() if job is not None else None


def stop(job_id: str) -> None:
    """A button callback, so the stop lands before the page's next run, not after it."""
    resources.runner().stop(job_id)


def fraction(snap: JobState) -> float:
    """How far the job is, 0 to 1: its progress events, else its view's steps (a training run's batches)."""
    if snap.fraction is not None:
        return snap.fraction
    step, total = getattr(snap.view, "step", None), getattr(snap.view, "total_steps", None)
    return min(max(step / total, 0.0), 1.0) if step and total else 0.0


def sentence(text: str) -> str:
    """A job's message as a sentence of its own: capital first letter, one full stop."""
    text = text.strip().rstrip(".")
    return f"{text[:1].upper()}{text[1:]}." if text else ""


def status_text(snap: JobState, doing: str | None = None) -> str:
    """One line: "queued: 2nd in line", "running: <doing>", or the end status with the job's message."""
    if snap.status == QUEUED:
        place = f"{ordinal(snap.position)} in line" if snap.position else "waiting for a free slot"
        limit = resources.runner().limits.max_jobs
        return f"queued: {place} (this host runs {limit} job{'s' if limit != 1 else ''} at once; it starts by itself)"
    if snap.running:
        if snap.stopping:
            return "stopping: what was learned so far is kept"
        if doing is None:
            step, total = getattr(snap.view, "step", None), getattr(snap.view, "total_steps", None)
            doing = (snap.stage or "starting") + (f" · step {step:,} of {total:,}" if step and total else "")
        return f"running: {doing}"
    return snap.status + (f": {snap.message.rstrip('.')}." if snap.message else ".")


def progress_row(snap: JobState, key: str, text: str | None = None, share: float | None = None) -> None:
    """A queued or running job's bar, its status and its Stop (every kind has one).

    text says what a running job is doing (the kind's own words); share overrides how far it is (0 to 1)."""
    bar, button = st.columns([5, 1], vertical_alignment="bottom")
    words = text if text and snap.status == RUNNING and not snap.stopping else status_text(snap)
    share = fraction(snap) if share is None else share
    bar.progress(min(max(share, 0.0), 1.0), text=f"**{snap.name or snap.kind}** · {words}")
    button.button(
        "Stop",
        type="primary",
        key=key,
        on_click=stop,
        args=(snap.id,),
        disabled=snap.stopping,
        help="Ends the job after the current step; what was learned so far is kept."
        if snap.status == RUNNING
        else "Takes it out of the queue.",
    )


def ended_box(snap: JobState, text: str) -> None:
    """A finished job's line: green when done, amber when stopped, red when failed."""
    {FAILED: st.error, STOPPED: st.warning, DONE: st.success}.get(snap.status, st.info)(text)


def watch(kind: str, draw: Callable[[JobState | None], None]) -> None:
    """draw(snapshot of this browser's latest job of this kind, or None) in place.

    While that job is queued or running, draw runs in a fragment that reruns every POLL_SECONDS; when
    it ends, the whole page reruns once (so lists of runs show the new one) and no longer polls.
    """
    snap = latest(kind)
    if snap is not None and snap.running:
        _polling(kind, draw)
    else:
        draw(snap)


@st.fragment(run_every=POLL_SECONDS)
def _polling(kind: str, draw: Callable[[JobState | None], None]) -> None:
    snap = latest(kind)
    if snap is None or not snap.running:
        st.rerun()  # the whole page: it draws the end without a timer
    draw(snap)
