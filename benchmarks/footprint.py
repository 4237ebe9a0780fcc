"""The app server's memory: RSS after the home page, and after a visitor has opened every page.

    python benchmarks/footprint.py --repeats 3

Starts the real server (labui.serve.running_app, a fresh runs folder), opens the home page in Chromium,
then every page of the navigation in turn by clicking its sidebar link (one visitor, one session); a page
is done when its title is shown and labui.serve.PAGE_DONE_JS holds for HOLD seconds (every element drawn).
RSS is the app process plus every process under it (workers), read from /proc; the peak is sampled
every 0.2 s. Each repeat is a fresh server; the medians are printed beside the targets of issue 17 and
the figures of the code before the footprint work (BEFORE, measured with this script on the same machine).

Which torch the figures are for matters (the CUDA build's import alone is ~300 MB more than the CPU
build's): the script prints the torch build it ran with. Run it with another venv's python to measure
that one (e.g. /tmp/cpuvenv/bin/python benchmarks/footprint.py).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from labui.navigation import page_files, page_label  # noqa: E402
from labui.serve import CHROMIUM, CHROMIUM_ARGS, PAGE_DONE_JS, running_app  # noqa: E402
from mnist_core.files import write_json_atomic  # noqa: E402

TARGETS_MB = {"home": 500, "all pages": 900}  # issue 17, with the CPU-only torch build
HOLD = 0.5  # seconds the done state must hold: a page that reruns once at once is not done yet
# Medians measured with this script on the code before the footprint work (commit 9e7bc24: no job workers
# then, so the app process is the whole server), 2-core machine shared with other jobs, 3 fresh servers each,
# MB (2**20 bytes). cuda: PyPI's torch 2.14.1 (CUDA build, run on the CPU); cpu: torch 2.13.0+cpu, no torchvision.
BEFORE = {
    "cuda": {"start": 75, "home": 942, "home app": 942, "all pages": 1532, "all pages app": 1532, "peak": 1659},
    "cpu": {"start": 75, "home": 642, "home app": 642, "all pages": 1267, "all pages app": 1267, "peak": 1358},
}


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
    except (OSError, StopIteration):
        return 0.0


def descendants(pid: int) -> list[int]:
    found, todo = [], _children(pid)
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(_children(p))
    return found


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (job workers), in MB."""
    return rss_mb(pid) + sum(rss_mb(p) for p in descendants(pid))


def native_packages(pid: int) -> set[str]:
    """The installed packages whose compiled libraries a process has mapped (what it has imported, roughly)."""
    found = set()
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                match = re.search(r"/site-packages/([A-Za-z0-9_]+)", line)
                if match and not match.group(1).endswith(".libs"):
                    found.add(match.group(1))
    except OSError:
        pass
    return found


def server_pid(url: str) -> int:
    """The streamlit process serving this URL (found by its --server.port argument)."""
    port = url.rsplit(":", 1)[1]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                args = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if (
                b"streamlit" in b" ".join(args)
                and b"--server.port" in args
                and args[args.index(b"--server.port") + 1] == port.encode()
            ):
                return int(entry)
    raise RuntimeError(f"no streamlit process on port {port}")


class PeakSampler:
    def __init__(self, pid: int, every: float = 0.2):
        self.pid, self.every, self.peak = pid, every, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_mb(self.pid))
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def wait_done(page, timeout: float = 300.0) -> float:
    """Seconds until the page is done and stays done for HOLD seconds."""
    start = time.perf_counter()
    done_since = None
    while time.perf_counter() - start < timeout:
        if page.evaluate(PAGE_DONE_JS):
            done_since = done_since or time.perf_counter()
            if time.perf_counter() - done_since >= HOLD:
                return done_since - start
        else:
            done_since = None
        time.sleep(0.1)
    raise TimeoutError(f"{page.url} was not done within {timeout:.0f} s")


def one_round(browser, settle: float) -> dict:
    with tempfile.TemporaryDirectory() as runs, running_app({"MNIST_RUNS_DIR": runs}, timeout=120) as url:
        pid = server_pid(url)
        figures = {"start": tree_rss_mb(pid), "pages": {}}
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(300_000)
        with PeakSampler(pid) as sampler:
            page.goto(url)
            page.locator("h1").first.wait_for()
            wait_done(page)
            time.sleep(settle)
            figures["home"], figures["home app"] = tree_rss_mb(pid), rss_mb(pid)
            figures["loaded at home"] = sorted(native_packages(pid))
            seen = set(figures["loaded at home"])
            for path in page_files():
                label = page_label(path)
                before = page.locator("h1").first.inner_text()
                page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=label, exact=True).click()
                page.wait_for_url(re.compile(f"/{re.escape(path.stem.split('_', 1)[1])}$"))
                page.wait_for_function(
                    "t => { const h = document.querySelector('h1'); return h && h.innerText !== t; }", arg=before
                )  # the new page's title: its run has begun
                seconds = wait_done(page)
                exceptions = page.locator('[data-testid="stException"]').count()
                loaded = native_packages(pid)
                figures["pages"][label] = {
                    "rss": tree_rss_mb(pid),
                    "app": rss_mb(pid),
                    "seconds": round(seconds, 1),
                    "exceptions": exceptions,
                    "newly loaded": sorted(loaded - seen),
                }
                seen |= loaded
            time.sleep(settle)
            figures["all pages"], figures["all pages app"] = tree_rss_mb(pid), rss_mb(pid)
            figures["workers"] = len(descendants(pid))
        figures["peak"] = sampler.peak
        context.close()
        return figures


def torch_build() -> str:
    import torch

    return "cuda" if torch.version.cuda else "cpu"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh servers to measure (medians are reported)")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds to wait before each RSS reading")
    parser.add_argument("--verbose", action="store_true", help="list the compiled packages each page loads")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    build = torch_build()
    rounds = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for i in range(args.repeats):
                rounds.append(one_round(browser, args.settle))
                r = rounds[-1]
                print(
                    f"round {i + 1}: start {r['start']:.0f} MB, home {r['home']:.0f} MB (app {r['home app']:.0f}), "
                    f"all pages {r['all pages']:.0f} MB (app {r['all pages app']:.0f}, {r['workers']} child "
                    f"processes), peak {r['peak']:.0f} MB; per page, all/app: "
                    + ", ".join(
                        f"{k} {v['rss']:.0f}/{v['app']:.0f} MB {v['seconds']}s"
                        + (f" ({v['exceptions']} exceptions)" if v["exceptions"] else "")
                        for k, v in r["pages"].items()
                    ),
                    flush=True,
                )
                if args.verbose:
                    print("  compiled packages loaded at home: " + ", ".join(r["loaded at home"]))
                    for k, v in r["pages"].items():
                        if v["newly loaded"]:
                            print(f"  newly loaded by {k}: " + ", ".join(v["newly loaded"]))
        finally:
            browser.close()
    keys = ("start", "home", "home app", "all pages", "all pages app", "peak")
    median = {key: statistics.median(r[key] for r in rounds) for key in keys}
    print(
        f"\nServer RSS (app process + workers; 'app': the app process alone), torch {build} build, "
        f"median of {len(rounds)} fresh servers, MB:"
    )
    print(f"{'':14}{'now':>8}{'before':>8}{'target':>8}")
    for key in keys:
        before = BEFORE.get(build, {}).get(key)
        target = TARGETS_MB.get(key)
        print(
            f"{key:14}{median[key]:8.0f}{before if before is not None else '-':>8}"
            f"{target if target is not None else '-':>8}"
        )
    if args.json:
        write_json_atomic(args.json, {"torch": build, "rounds": rounds, "median": median})


if __name__ == "__main__":
    main()
