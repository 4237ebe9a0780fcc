"""The app's navigation: Home, then every script in pages/ in its numbered order.

Every file in pages/ is picked up, so a new page needs no change here. Its label and URL come from
the file name as Streamlit infers them ("7_Draw.py" -> "Draw" at /Draw), which keeps shared links
the same as under Streamlit's automatic pages/ navigation.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager
from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

PAGES_DIR = Path(__file__).resolve().parent.parent / "pages"
APP_SCRIPT = PAGES_DIR.parent / "app.py"
HOME = "Home"


def page_files() -> list[Path]:
    """pages/*.py by their number prefix (1_Data.py before 10_X.py), then by name."""

    def order(path: Path) -> tuple[int, str]:
        number = re.match(r"\d+", path.name)
        return (int(number.group()) if number else 1_000_000, path.name)

    return sorted((p for p in PAGES_DIR.glob("*.py") if not p.name.startswith((".", "_"))), key=order)


def page_label(path: Path) -> str:
    """The label Streamlit gives a page file: "4_Under_the_hood.py" -> "Under the hood"."""
    return re.sub(r"^\d+_", "", path.stem).replace("_", " ")


def app_pages(home: Callable[[], None]) -> list:
    return [st.Page(home, title=HOME, icon=":material/home:", default=True), *(st.Page(p) for p in page_files())]


_page_run = threading.local()  # each session's script runs in its own thread


def run_in_app(page) -> None:
    """app.py runs the chosen page through this, so the page run can tell it came through app.py."""
    _page_run.in_app = True
    try:
        page.run()
    finally:
        _page_run.in_app = False


def use_app_navigation() -> None:
    """Make sure this run is under app.py's navigation, not Streamlit's automatic pages/ one.

    Streamlit 1.67 decides once per server process, when the first session starts, whether the
    `pages/` folder drives the navigation (PagesManager.uses_pages_directory); st.navigation turns
    that off, but only once app.py runs. A first visitor whose first request is a page URL (a shared
    link to /Draw) gets that page run directly, under the automatic navigation ("app", no Home). The
    process-wide flag alone cannot tell: when a class's first visits arrive at once, one run turns it off
    while the others are already running under the automatic navigation, and they kept it (2 of 24
    visitors in a test). So every run that did not come through app.py turns the flag off and reruns: the
    rerun goes through app.py and keeps the requested page (a page's hash is its URL path, the same under
    both navigations). A page run on its own (AppTest) has itself as the main script and is left alone.
    """
    ctx = get_script_run_ctx()
    if getattr(_page_run, "in_app", False) or ctx is None or Path(ctx.main_script_path).resolve() != APP_SCRIPT:
        return
    PagesManager.uses_pages_directory = False
    st.rerun()
