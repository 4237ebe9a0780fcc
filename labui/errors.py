"""One place where a page's uncaught error becomes a plain message and one log line.

app.py runs every page through `run_guarded`, so no page needs its own try/except for the unexpected.
Streamlit's own control flow (st.stop, st.rerun, st.switch_page) raises BaseException subclasses
and passes through untouched.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable

import streamlit as st

from mnist_core.host import HostSettingError, hosted

MESSAGE = (
    "Something went wrong on this page and it stopped. Nothing you saved is lost: reload the page or pick "
    "another one. The error has been logged on the server."
)

log = logging.getLogger("mnist_lab")
# Streamlit configures only its own loggers. The app's lines and the engine's (each job's start, end, failure and
# refusal; owners' folders removed) go to the server's stderr, one line per event, with time and level.
_handler = logging.StreamHandler(sys.stderr)
_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
for _logger in (log, logging.getLogger("mnist_core")):
    if not _logger.handlers:
        _logger.addHandler(_handler)
        _logger.setLevel(logging.INFO)
        _logger.propagate = False


def shows_tracebacks() -> bool:
    """Only where MNIST_HOSTED says plainly that this is a developer's own app: a bad value hides them too,
    and the sidebar then names the bad value."""
    try:
        return not hosted()
    except HostSettingError:
        return False


def apply_error_details() -> None:
    """Hosted: Streamlit shows no traceback for anything that still escapes (fragments, app.py itself)."""
    st.set_option("client.showErrorDetails", "full" if shows_tracebacks() else "none")


def log_line(page: str, exc: BaseException) -> str:
    """`page=Data error=ValueError: ... at mnist_core/explore.py:12`, on one line."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    text = " ".join(str(exc).split())  # one line whatever the message holds
    return f"page={page} error={type(exc).__name__}: {text}{where}"


def show_error(page: str, exc: Exception) -> None:
    log.error(log_line(page, exc))
    st.error(MESSAGE)
    if shows_tracebacks():  # a developer's own app: the traceback, folded away
        with st.expander("Error details (shown because MNIST_HOSTED is not set)", expanded=False):
            st.exception(exc)


def run_guarded(page: str, run: Callable[[], None]) -> None:
    try:
        run()
    except Exception as exc:  # noqa: BLE001 - the one place that catches whatever a page did not expect
        show_error(page, exc)
