"""How fast the app answers in real Chromium: first page, page switches, and a widget during training.

    python benchmarks/app_latency.py --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from labui.serve import CHROMIUM, CHROMIUM_ARGS, running_app  # noqa: E402

IDLE = "!document.querySelector('[data-testid=\"stStatusWidget\"]')"


def timed(action, page) -> float:
    start = time.perf_counter()
    action()
    page.wait_for_function(IDLE, timeout=60_000)
    return time.perf_counter() - start


def switch_to(page, label: str, title: str):
    def action():
        page.locator('[data-testid="stSidebarNav"]').get_by_text(label, exact=True).click()
        expect(page.locator("h1").first).to_contain_text(title)
    return action


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    expect.set_options(timeout=60_000)
    with tempfile.TemporaryDirectory() as runs, running_app({"MNIST_RUNS_DIR": runs}) as url, \
            sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        first = timed(lambda: (page.goto(url), expect(page.locator("h1").first).to_contain_text("MNIST Lab")), page)
        switches = []
        for _ in range(args.repeats):
            switches.append(timed(switch_to(page, "Train", "Train"), page))
            switches.append(timed(switch_to(page, "Home", "MNIST Lab"), page))

        # Start a full-epoch run, then use a widget on another page while it trains.
        timed(switch_to(page, "Train", "Train"), page)
        page.get_by_role("button", name="Start training").click()
        expect(page.get_by_role("button", name="Stop")).to_be_visible()
        busy_switches, widget = [], []
        for _ in range(args.repeats):
            busy_switches.append(timed(switch_to(page, "Home", "MNIST Lab"), page))
            picker = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first
            widget.append(timed(lambda: (picker.click(), page.get_by_role("option").nth(1).click()), page))
            busy_switches.append(timed(switch_to(page, "Train", "Train"), page))
        training = page.get_by_role("button", name="Stop").count() > 0
        browser.close()

    median = statistics.median
    print(f"app latency in Chromium, median of {args.repeats} (targets: first page <= 5 s, switch <= 1 s):")
    print(f"  first page render (cold: loads and validates MNIST)  {first:6.2f} s   target <= 5 s")
    print(f"  page switch, idle                                    {median(switches):6.2f} s   target <= 1 s")
    print(f"  page switch while training                           {median(busy_switches):6.2f} s   target <= 1 s")
    print(f"  sidebar widget answers while training                {median(widget):6.2f} s   target <= 1 s")
    print(f"  (a training run was {'still' if training else 'no longer'} going at the end)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
