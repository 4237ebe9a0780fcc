"""A class at once: N browser sessions open the Draw, Data and Inspect pages at the same moment, while jobs train.

    python benchmarks/load.py [--sessions 30] [--rounds 2] [--jobs 2] [--app-dir <a checkout>]
    python benchmarks/load.py --floor --jobs 0 --rounds 1     # the floor: a do-nothing app, the same browsers

Starts the real server of --app-dir (default: this repository) in hosted mode (MNIST_HOSTED=1,
MNIST_MAX_JOBS=2, a fresh runs folder), with this interpreter, so an older checkout is measured with the
same venv (`git worktree add /tmp/load-base 3493681`, then `--app-dir /tmp/load-base`). First --jobs
other visitors start a training run each from the Train page (their own browser contexts; their tabs
close once their jobs run, as in benchmarks/responsiveness.py). Then one Chromium holds --sessions
contexts (one visitor each); for every round and every page, all of them open that page by its URL at
the same moment (a fresh navigation: a new script run, as a shared link would be) and each visit is
timed until the page has settled: its title shown, labui.serve.PAGE_DONE_JS true (script over, nothing
stale, no spinner or skeleton, charts and images drawn) for HOLD seconds, and its last element shown.

Reported per page: p50/p95 seconds until settled, exceptions (Streamlit's exception element and every
st.error on the settled page), failed visits (a navigation error, or not settled within --timeout),
and, for the whole run, the app's browser console errors and the peak RSS of the server process and its
workers (read from /proc every 0.5 s). The trainers come back at the end: a job still running then was
running through every round; they stop it. The figures are printed beside the targets of issue 17 and
BASELINE (issue 17's figures for the code before this work), and written to benchmarks/results/load.txt when the
measured checkout is this repository.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

from footprint import PeakSampler, descendants  # noqa: E402
from playwright.async_api import async_playwright  # noqa: E402

from labui.serve import CHROMIUM, CHROMIUM_ARGS, PAGE_DONE_JS, free_port, streamlit_command  # noqa: E402
from mnist_core.files import write_text_atomic  # noqa: E402

RESULTS = HERE / "results" / "load.txt"
HOLD = 0.5  # seconds the settled state must hold: a page that reruns once at once has not settled
POLL = 0.25  # seconds between checks of a visit; 30 tabs polled faster would cost the 2 cores more than they measure
PAGES = {  # URL path -> (title, the page's last element)
    "Draw": ("Draw", "text=Drawing sets"),
    "Data": ("Data", "text=Black pixels (0) are left out"),
    "Inspect": ("Inspect", '[data-testid="stTabs"]'),
}
EPOCHS = "5"  # hosted mode's most (MNIST_MAX_EPOCHS); on 2 cores that outlasts the rounds, stopped at the end
TARGETS = {"p95": 10.0, "exceptions": 0, "failed": 0, "rss_mb": 3072}
# On a failed visit: which part of PAGE_DONE_JS still does not hold (the first that fails).
UNSETTLED_JS = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    if (!app) return 'no app yet';
    if (app.getAttribute('data-test-connection-state') !== 'CONNECTED') return 'not connected';
    if (app.getAttribute('data-test-script-state') !== 'notRunning') return 'script running';
    if (document.querySelector('[data-stale="true"]')) return 'stale elements';
    if (document.querySelector('[data-testid="stSkeleton"]')) return 'skeleton';
    if (document.querySelector('[data-testid="stSpinner"]')) return 'spinner: ' + document.querySelector('[data-testid="stSpinner"]').innerText;
    for (const chart of document.querySelectorAll('[data-testid="stPlotlyChart"]'))
        if (!chart.querySelector('.main-svg')) return 'a chart not drawn';
    for (const img of document.querySelectorAll('[data-testid="stImage"] img, [data-testid="stHtml"] img'))
        if (!img.complete) return 'an image not loaded';
    return 'done, but no title or last element';
}"""
EXCEPTION_CSS = '[data-testid="stException"]'
ERROR_CSS = '[data-testid="stAlertContentError"]'
# Issue 17's measurement of 3493681 (the main before the job runner and hosted mode), 30 sessions, one round,
# no training jobs, 2-core machine; not yet re-measured with this script (`--app-dir /tmp/load-base`).
BASELINE = {
    "setup": "3493681, 30 sessions x 1 round, no training jobs (issue 17's measurement)",
    "pages": {
        "Draw": {"p50": None, "p95": 31.0},
        "Inspect": {"p50": None, "p95": 48.0},
        "Data": {"p50": None, "p95": 69.0},
    },
    "exceptions": 28,
    "failed": None,
    "rss_mb": 1.8 * 1024,
}


def write_floor_app(folder: Path) -> Path:
    """An app whose pages hold only what a visit waits for (the title and the last element of PAGES): what the
    browsers alone cost on this machine, the floor under any app's figures."""
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / "home.py", 'import streamlit as st\n\nst.title("MNIST Lab")\n')
    pages = ['    st.Page("home.py", title="Home", default=True),']
    for path, (title, last) in PAGES.items():
        if last.startswith("text="):
            body = f"st.caption({last.removeprefix('text=')!r})"
        elif last == '[data-testid="stTabs"]':
            body = 'st.tabs(["one", "two"])'
        else:
            raise ValueError(f"the floor app cannot draw the last element {last!r} of {path}")
        write_text_atomic(
            folder / f"page_{path.lower()}.py", f"import streamlit as st\n\nst.title({title!r})\n{body}\n"
        )
        pages.append(f'    st.Page("page_{path.lower()}.py", title={title!r}, url_path={path!r}),')
    write_text_atomic(
        folder / "app.py", "import streamlit as st\n\nst.navigation([\n" + "\n".join(pages) + "\n]).run()\n"
    )
    return folder


def start_server(app_dir: Path, env_extra: dict) -> tuple[subprocess.Popen, str]:
    """`streamlit run app.py` in app_dir (labui.serve.running_app's command, in another checkout's folder)."""
    port = free_port()
    env = dict(os.environ, **env_extra)
    env.pop("PYTHONPATH", None)  # the checkout's own packages, from its folder (streamlit puts the script's first)
    cmd = streamlit_command(port)
    log = tempfile.NamedTemporaryFile(prefix="load-server-", suffix=".log", delete=False)
    process = subprocess.Popen(cmd, cwd=app_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://localhost:{port}"
    deadline = time.time() + 120
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return process, url
        except OSError:
            pass
        if process.poll() is not None or time.time() > deadline:
            process.kill()
            raise RuntimeError(f"streamlit did not start: {Path(log.name).read_text()[-2000:]}")
        time.sleep(0.3)


def cpu_seconds(pids) -> float:
    """User + system CPU seconds the processes have used so far (from /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime: the 14th and 15th fields
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def cpu_split(server: int) -> dict:
    """CPU seconds so far of the app process, its workers, and the browser (this script's other children)."""
    workers = descendants(server)
    ours = set(descendants(os.getpid())) - {server, *workers}
    return {"app": cpu_seconds([server]), "workers": cpu_seconds(workers), "browser": cpu_seconds(ours)}


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()


async def start_training(browser, url: str, n: int):
    """Another visitor starts a long run from the Train page; returns their context (to come back)."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    page.set_default_timeout(180_000)
    await page.goto(f"{url}/Train")
    await page.locator("h1", has_text="Train").first.wait_for()
    epochs = page.get_by_role("spinbutton", name="Epochs", exact=True)
    await epochs.fill(EPOCHS)
    await epochs.press("Enter")
    name = page.get_by_label("Run name (optional)")
    await name.fill(f"load-trainer-{n}")
    await name.press("Enter")
    await page.wait_for_timeout(1500)
    await page.get_by_role("button", name="Start training").click()
    await (
        page.locator('[data-testid="stMainBlockContainer"]')
        .get_by_role("button", name="Stop", exact=True)
        .wait_for(timeout=180_000)
    )
    # Their tabs would be on their own machines: left open here, Chromium redrawing their live views
    # would take this machine's CPU from the server being measured.
    await page.close()
    return context


async def still_running_and_stopped(context, url: str) -> bool:
    """The trainer comes back (same browser, so the same owner): is their job still running? Stop it."""
    page = await context.new_page()
    page.set_default_timeout(180_000)
    await page.goto(url)
    stop = page.locator('[data-testid="stSidebar"]').get_by_role("button", name="Stop", exact=True)
    try:
        await stop.wait_for(timeout=60_000)
    except Exception:  # noqa: BLE001 - playwright's TimeoutError: no job of theirs runs
        return False
    await stop.click()
    await page.wait_for_timeout(1000)
    return True


class Visitor:
    """One browser context (one visitor, one owner id) with one tab, and what its visits found."""

    def __init__(self, context, page):
        self.context, self.page = context, page
        self.console: list[str] = []
        page.on("console", self.on_console)
        page.on("pageerror", lambda exc: self.console.append(f"page error: {exc}"))

    def on_console(self, msg) -> None:
        # Streamlit's frontend first probes /<page>/_stcore/health and host-config (a 404) before the
        # server root's; that is the framework finding its base path, not an error of the app.
        if msg.type == "error" and not msg.location.get("url", "").endswith(
            ("/_stcore/health", "/_stcore/host-config")
        ):
            self.console.append(msg.text)

    async def visit(self, url: str, path: str, timeout: float) -> dict:
        """Open url/path; seconds until the page settled, or a failure; the errors it shows then."""
        title, last = PAGES[path]
        page = self.page
        start = time.perf_counter()
        try:
            await page.goto(f"{url}/{path}", timeout=timeout * 1000)
        except Exception as exc:  # noqa: BLE001 - a failed visit is a figure, not the end of the run
            return {"failed": f"navigation: {str(exc).splitlines()[0]}"}
        done_since = None
        while (now := time.perf_counter()) - start < timeout:
            try:
                settled = (
                    await page.evaluate(PAGE_DONE_JS)
                    and await page.locator("h1", has_text=title).count() > 0
                    and await page.locator(last).count() > 0
                )
            except Exception as exc:  # noqa: BLE001 - the page went away under us
                return {"failed": f"page: {str(exc).splitlines()[0]}"}
            if settled:
                done_since = done_since or now
                if now - done_since >= HOLD:
                    break
            else:
                done_since = None
            await asyncio.sleep(POLL)
        else:
            found = await self.errors()
            try:
                why = await page.evaluate(UNSETTLED_JS)
            except Exception:  # noqa: BLE001
                why = "?"
            if why.startswith("done"):
                why = (
                    f"{await page.locator('h1').count()} h1 titles "
                    f"{await page.locator('h1').all_inner_texts()}, last element shown: {await page.locator(last).count()}"
                )
            if os.environ.get("LOAD_SHOTS"):  # a folder for screenshots of unsettled pages (to see why)
                try:
                    await page.screenshot(path=f"{os.environ['LOAD_SHOTS']}/{path}-{id(self)}.png", timeout=30_000)
                except Exception:  # noqa: BLE001 - a screenshot is a diagnosis, not a figure
                    pass
            return {"failed": f"not settled within {timeout:.0f} s ({why})", "errors": found}
        return {"seconds": done_since - start, "errors": await self.errors()}

    async def errors(self) -> list[str]:
        try:
            shown = await self.page.locator(EXCEPTION_CSS).all_inner_texts()
            shown = [f"exception: {t.strip().splitlines()[0] if t.strip() else '?'}" for t in shown]
            shown += [f"st.error: {t.strip()[:160]}" for t in await self.page.locator(ERROR_CSS).all_inner_texts()]
            return shown
        except Exception:  # noqa: BLE001
            return []


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (p95 of 60 visits is the 57th fastest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


async def measure(args) -> dict:
    env = {"MNIST_HOSTED": "1", "MNIST_MAX_JOBS": str(max(2, args.jobs))}
    runs = tempfile.mkdtemp(prefix="load-runs-")
    env["MNIST_RUNS_DIR"] = runs
    t0 = time.perf_counter()
    process, url = start_server(args.app_dir, env)
    print(f"server up at {url} ({time.perf_counter() - t0:.0f} s), app dir {args.app_dir}", flush=True)
    results = {"visits": {p: [] for p in args.pages}, "console": [], "jobs_started": 0, "jobs_through": None}
    try:
        with PeakSampler(process.pid, every=0.5) as sampler:
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                # A served app has had its first visitor long before a class arrives: the home page, opened
                # once, loads MNIST and settles Streamlit's navigation (a fresh server's first page runs
                # decide it; 30 first visits at once by page URL would measure that start-up, not a visit).
                first = await browser.new_context(viewport={"width": 1400, "height": 1000})
                await (await first.new_page()).goto(url)
                await first.pages[0].locator("h1", has_text="MNIST Lab").first.wait_for(timeout=180_000)
                await first.close()
                print(f"home page opened once ({time.perf_counter() - t0:.0f} s)", flush=True)
                trainers = []
                for n in range(args.jobs):
                    try:
                        trainers.append(await start_training(browser, url, n + 1))
                        print(f"training job {n + 1} running ({time.perf_counter() - t0:.0f} s)", flush=True)
                    except Exception as exc:  # noqa: BLE001 - reported: the rounds are then without it
                        print(f"training job {n + 1} did not start: {str(exc).splitlines()[0]}", flush=True)
                results["jobs_started"] = len(trainers)
                visitors = []
                for _ in range(args.sessions):
                    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
                    visitors.append(Visitor(context, await context.new_page()))
                for round_ in range(1, args.rounds + 1):
                    for path in args.pages:
                        begun, cpu = time.perf_counter(), cpu_split(process.pid)
                        # One gather is the barrier: every visitor's navigation starts in the same loop turn.
                        found = await asyncio.gather(*(v.visit(url, path, args.timeout) for v in visitors))
                        for r in found:
                            r["round"] = round_

                        ok = [r["seconds"] for r in found if "seconds" in r]
                        errors = sum(len(r.get("errors", [])) for r in found)
                        failed = sum("failed" in r for r in found)
                        used = {k: v - cpu[k] for k, v in cpu_split(process.pid).items()}
                        results["visits"][path].extend(found)
                        results.setdefault("cpu", {}).setdefault(path, []).append(used)
                        print(
                            f"round {round_} {path:<8} {len(ok)}/{len(found)} settled, "
                            f"p50 {percentile(ok, 50) if ok else float('nan'):.1f} s, "
                            f"max {max(ok) if ok else float('nan'):.1f} s, {errors} errors shown, {failed} failed "
                            f"({time.perf_counter() - begun:.0f} s; CPU s: app {used['app']:.0f}, workers "
                            f"{used['workers']:.0f}, browser {used['browser']:.0f}; peak RSS so far {sampler.peak:.0f} MB)",
                            flush=True,
                        )
                running = [await still_running_and_stopped(t, url) for t in trainers]
                results["jobs_through"] = sum(running)
                for v in visitors:
                    results["console"].extend(v.console)
                await browser.close()
        results["rss_mb"] = sampler.peak
    finally:
        stop_server(process)
    return results


def summary(results: dict, args) -> dict:
    pages = {}
    for path, visits in results["visits"].items():
        # A visit that never settled counts as slower than every one that did (infinite), so p95 is not
        # flattered by leaving the worst visits out; shown as "> timeout".
        times = [r.get("seconds", math.inf) for r in visits]
        pages[path] = {
            "p50": percentile(times, 50) if times else None,
            "p95": percentile(times, 95) if times else None,
            "failed": sum("failed" in r for r in visits),
            "exceptions": sum(len(r.get("errors", [])) for r in visits),
            "visits": len(visits),
        }
    return {
        "pages": pages,
        "exceptions": sum(p["exceptions"] for p in pages.values()),
        "failed": sum(p["failed"] for p in pages.values()),
        "rss_mb": results["rss_mb"],
    }


def fmt(value, unit="s", timeout: float = 0.0) -> str:
    if value is None:
        return "-"
    if value == math.inf:
        return f"> {timeout:.0f} s"
    return f"{value:.1f} {unit}" if unit == "s" else f"{value:.0f} {unit}"


def report(results: dict, args, load: str) -> str:
    now = summary(results, args)
    lines = [
        f"load: {args.sessions} browser sessions open {', '.join(args.pages)} by URL at the same moment, "
        f"{args.rounds} round(s), hosted mode (MNIST_HOSTED=1, MNIST_MAX_JOBS=2), app dir {args.app_dir}",
        f"training jobs: {results['jobs_started']} of {args.jobs} started, {results['jobs_through']} still "
        f"running after the last round; machine: {os.cpu_count()} cores, load average before {load}",
        "",
        f"{'':<22}{'now':>14}{'baseline':>14}   target",
    ]
    for path in args.pages:
        mine, base = now["pages"][path], BASELINE["pages"].get(path, {})
        for q in ("p50", "p95"):
            target = f"<= {TARGETS['p95']:.0f} s" if q == "p95" else ""
            verdict = "" if q == "p50" or mine[q] is None else "  meets" if mine[q] <= TARGETS["p95"] else "  MISSES"
            lines.append(
                f"{path + ' ' + q + ' settled':<22}{fmt(mine[q], timeout=args.timeout):>14}{fmt(base.get(q)):>14}   {target}{verdict}"
            )
    for key, label, unit in (
        ("exceptions", "exceptions", ""),
        ("failed", "failed visits", ""),
        ("rss_mb", "peak RSS (app+workers)", "MB"),
    ):
        mine, base, target = now[key], BASELINE[key], TARGETS[key]
        show = (lambda v: fmt(v, "MB")) if unit else (lambda v: "-" if v is None else str(v))
        verdict = "meets" if mine is not None and mine <= target else "MISSES"
        lines.append(f"{label:<22}{show(mine):>14}{show(base):>14}   <= {show(target)}  {verdict}")
    lines.append(f"(baseline: {BASELINE['setup']})")
    # Where the machine's CPU went while the visits ran: on a 2-core host that also runs the visitors'
    # browsers, the settle times are mostly the browsers'; the server's share per visit is what a host pays.
    lines.append(
        "CPU seconds during the visits (app = the server process, per visit; workers = training jobs; "
        "browser = Chromium and its driver, per visit):"
    )
    for path in args.pages:
        used = results.get("cpu", {}).get(path, [])
        n = max(1, len(results["visits"][path]))
        total = {k: sum(u[k] for u in used) for k in ("app", "workers", "browser")}
        lines.append(
            f"  {path:<8} app {total['app'] / n:.2f} s/visit, workers {total['workers']:.0f} s, "
            f"browser {total['browser'] / n:.2f} s/visit"
        )
    lines.append("visits per page: " + ", ".join(f"{p} {now['pages'][p]['visits']}" for p in args.pages))
    shown = {}
    for path, visits in results["visits"].items():
        for r in visits:
            for e in r.get("errors", []) + ([f"failed: {r['failed']}"] if "failed" in r else []):
                shown[(path, e)] = shown.get((path, e), 0) + 1
    if shown:
        lines.append("what the pages showed:")
        lines += [f"  {n:>3} x {path}: {e}" for (path, e), n in sorted(shown.items(), key=lambda kv: -kv[1])[:15]]
    console = {}
    for text in results["console"]:
        console[text[:160]] = console.get(text[:160], 0) + 1
    lines.append(f"browser console errors: {len(results['console'])}")
    lines += [f"  {n:>3} x {text}" for text, n in sorted(console.items(), key=lambda kv: -kv[1])[:8]]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=2, help="training jobs running during the rounds")
    parser.add_argument("--pages", nargs="+", default=list(PAGES), choices=list(PAGES))
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds a visit may take before it counts as failed"
    )
    parser.add_argument("--app-dir", type=Path, help="the checkout whose app.py is served (default: this one)")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="serve an app whose pages hold only a title and their last element instead (what the browsers alone cost)",
    )
    parser.add_argument("--no-save", action="store_true", help=f"do not write {RESULTS.relative_to(ROOT)}")
    args = parser.parse_args()
    if args.floor and args.app_dir:
        parser.error("--floor serves its own app: leave out --app-dir")
    if args.floor:
        args.app_dir = write_floor_app(Path(tempfile.mkdtemp(prefix="load-floor-")))
    args.app_dir = (args.app_dir or ROOT).resolve()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    results = asyncio.run(measure(args))
    text = report(results, args, load)
    text += f"\nload average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    print("\n" + text)
    if args.app_dir == ROOT and not args.no_save:
        write_text_atomic(RESULTS, text + "\n")
        print(f"written to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
