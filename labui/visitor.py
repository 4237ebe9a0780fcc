"""Who this browser is: the id that owns its jobs and (hosted) names the folder of its runs and drawings."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from mnist_core import owners
from mnist_core.host import HostSettingError

from .resources import runner


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


def as_visitor(callback: Callable) -> Callable:
    """A widget callback that reads the visitor's own runs, drawings or data sets, run as that visitor.

    Why: Streamlit runs on_click / on_change callbacks before the page's script, so before sidebar() has made
    the visitor's folder the current one (hosted mode); unwrapped, they would look in the shared folder."""

    @functools.wraps(callback)
    def run(*args, **kwargs):
        use_owner()
        return callback(*args, **kwargs)

    return run


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
