"""How fast the app answers in real Chromium: first page, page switches, and a widget during training.

    python benchmarks/app_latency.py --repeats 5

Each wait is timed two ways in the same run, side by side:
  old: until Streamlit's "running" status widget is absent (what this benchmark used to do). The widget
       appears only some time into a run and not during a spinner, so this stops the clock while
       placeholders are still grey.
  new: until the page is done: the script run over, nothing stale, no skeleton or spinner, every chart
       drawn, every image loaded (labui.serve.PAGE_DONE_JS), that for 0.5 s in a row (a page can rerun
       once), and the page's last element visible. The time reported is when that state began.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from labui.serve import CHROMIUM, CHROMIUM_ARGS, PAGE_DONE_JS, running_app  # noqa: E402

IDLE = "!document.querySelector('[data-testid=\"stStatusWidget\"]')"
HOLD = 0.5  # seconds the done state must hold: a run that ends and reruns at once is not done
PAGES = {  # sidebar label -> (title, the page's last element)
    "Home": ("MNIST Lab", '[data-testid="stDataFrame"]'),  # the checkpoints table closes the page
    "Train": ("Train", '[data-testid="stDataFrame"]'),  # the runs table
    "Data": ("Data", "text=Black pixels (0) are left out"),
}


def timed(action, page, last: str, timeout: float = 120.0) -> tuple[float, float]:
    """(old, new) seconds from the action to 'no status widget', and to the page done."""
    start = time.perf_counter()
    action()
    page.wait_for_function(IDLE, timeout=timeout * 1000)
    old = time.perf_counter() - start
    done_since = None
    deadline = start + timeout
    while time.perf_counter() < deadline:
        now = time.perf_counter()
        if page.evaluate(PAGE_DONE_JS) and page.locator(last).last.is_visible():
            done_since = done_since or now
            if now - done_since >= HOLD:
                return old, done_since - start
        else:
            done_since = None
        time.sleep(0.05)
    raise TimeoutError(f"the page was not done within {timeout:.0f} s")


def switch_to(page, label: str):
    title = PAGES[label][0]

    def action():
        page.locator('[data-testid="stSidebarNav"]').get_by_text(label, exact=True).click()
        expect(page.locator("h1").first).to_contain_text(title)

    return action


def switch(page, label: str) -> tuple[float, float]:
    return timed(switch_to(page, label), page, PAGES[label][1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    expect.set_options(timeout=60_000)
    with tempfile.TemporaryDirectory() as runs, running_app({"MNIST_RUNS_DIR": runs}) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        first = timed(
            lambda: (page.goto(url), expect(page.locator("h1").first).to_contain_text("MNIST Lab")),
            page,
            PAGES["Home"][1],
        )
        first_data = switch(page, "Data")  # the Data page's statistics, computed once per server
        switches, data = [], []
        for _ in range(args.repeats):
            switches.append(switch(page, "Train"))
            switches.append(switch(page, "Home"))
            data.append(switch(page, "Data"))

        # Start a full-epoch run, then use a widget on another page while it trains.
        switch(page, "Train")
        page.get_by_role("button", name="Start training").click()
        expect(page.get_by_role("button", name="Stop")).to_be_visible()
        busy_switches, widget = [], []
        for _ in range(args.repeats):
            busy_switches.append(switch(page, "Home"))
            picker = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first
            widget.append(
                timed(lambda: (picker.click(), page.get_by_role("option").nth(1).click()), page, PAGES["Home"][1])
            )
            busy_switches.append(switch(page, "Train"))
        training = page.get_by_role("button", name="Stop").count() > 0
        if training:
            page.get_by_role("button", name="Stop").click()
        browser.close()

    def row(name: str, pairs: list[tuple[float, float]], target: str) -> str:
        old, new = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
        return f"  {name:<52} {old:6.2f} s  {new:6.2f} s   {target}"

    print(
        f"app latency in Chromium, median of {args.repeats} (1 for first visits); old = no status widget, "
        "new = page done:"
    )
    print(f"  {'':<52} {'old':>8}  {'new':>8}")
    print(row("first page render (cold: loads and validates MNIST)", [first], "target <= 5 s"))
    print(row("first visit to Data (class statistics computed)", [first_data], ""))
    print(row("page switch Home <-> Train, idle", switches, "target <= 1 s"))
    print(row("page switch to Data, idle", data, ""))
    print(row("page switch Home <-> Train while training", busy_switches, "target <= 1 s"))
    print(row("sidebar widget answers while training", widget, "target <= 1 s"))
    print(f"  (a training run was {'still' if training else 'no longer'} going at the end)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
