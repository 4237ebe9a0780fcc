"""Start and stop `streamlit run app.py` on a free local port (browser tests and benchmarks use it)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def streamlit_command(port: int) -> list[str]:
    """`streamlit run app.py` headless on this port: the command every test and benchmark server runs."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
    ]


@contextlib.contextmanager
def running_app(env_extra: dict | None = None, timeout: float = 60.0):
    """Yield the base URL of a fresh app server; stop it afterwards."""
    port = free_port()
    env = dict(os.environ, **(env_extra or {}))
    cmd = streamlit_command(port)
    process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://localhost:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if process.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"streamlit did not start: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


# True once a page has finished: the script run is over (Streamlit marks the app root with
# data-test-script-state), no element is stale (greyed, left over from the previous run), no skeleton or
# spinner is showing, every plotly chart has drawn its SVG and every image has loaded. A missing status
# widget alone is not enough: it is absent for the first moments of a run, and during a spinner.
PAGE_DONE_JS = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
    if (app.getAttribute('data-test-connection-state') !== 'CONNECTED') return false;
    if (document.querySelector('[data-stale="true"], [data-testid="stSkeleton"], [data-testid="stSpinner"]')) return false;
    for (const chart of document.querySelectorAll('[data-testid="stPlotlyChart"]'))
        if (!chart.querySelector('.main-svg')) return false;
    for (const img of document.querySelectorAll('[data-testid="stImage"] img, [data-testid="stHtml"] img'))
        if (!img.complete) return false;
    return true;
}"""
