"""How long a GAN run takes to show its first step, and to end after Stop, as the app's Train tab drives it.

    python benchmarks/gan_latency.py --repeats 3

Each repeat starts a job with the page's default settings and a cold judge (the classifier that
scores the samples; the app builds it once per process, so the first visitor pays this), waits
for step 1, lets it run to step 20, presses Stop and waits for the job to end; then starts one
more and presses Stop while the judge is still loading. Medians are printed beside the figures
measured on the code before this change (same machine, same way: a 2-core box shared with other
work, so expect noise).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import threading
import time

os.environ.setdefault("MNIST_RUNS_DIR", tempfile.mkdtemp(prefix="gan-latency-"))

from mnist_core import gan, kinds  # noqa: E402
from mnist_core.checkpoints import load  # noqa: E402
from mnist_core.data import load_mnist  # noqa: E402
from mnist_core.runner import HostLimits, Runner  # noqa: E402

# Before: the page built the judge in the script thread on Start (page blocked, no Stop button), then
# started training; Stop scored the partial epoch before ending. Medians of 3 on this 2-core box.
BASELINE = {"first step s": 36.9, "stop mid-epoch s": 1.44, "stop while the judge loads s": None}


def wait_until(condition, timeout: float = 300.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise TimeoutError("the job did not get there in time")
        time.sleep(0.01)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    mnist = load_mnist()
    config = {**dataclasses.asdict(gan.GanConfig())}  # the page's defaults
    # cold every time, as for a first visitor (the job runner's worker builds it once per process)
    kinds.gan_judge = lambda name=None: gan.Judge(load("best")[0], mnist)
    firsts, stops, judge_stops = [], [], []
    jobs = Runner(HostLimits(), backend="threads")  # the judge is swapped in this process, so threads
    for rep in range(args.repeats):
        t0 = time.perf_counter()
        job = jobs.submit("me", "gan", config, f"latency-{rep}", overwrite=True)
        wait_until(lambda: job.snapshot().view.step >= 1 or not job.running)
        firsts.append(time.perf_counter() - t0)
        wait_until(lambda: job.snapshot().view.step >= 20 or not job.running)
        t1 = time.perf_counter()
        jobs.stop("me")
        wait_until(lambda: not job.running)
        stops.append(time.perf_counter() - t1)
        job = jobs.submit(
            "me", "gan", {"variant": "mlp", "width": 8, "max_batches": 2}, f"latency-judge-{rep}", overwrite=True
        )
        wait_until(lambda: "waiting for the judge" in job.snapshot().view.stage or not job.running)
        t2 = time.perf_counter()
        jobs.stop("me")
        wait_until(lambda: not job.running)
        judge_stops.append(time.perf_counter() - t2)
        print(
            f"repeat {rep}: first step {firsts[-1]:.1f} s, stop mid-epoch {stops[-1]:.2f} s, "
            f"stop while the judge loads {judge_stops[-1]:.2f} s",
            flush=True,
        )
    now = {
        "first step s": statistics.median(firsts),
        "stop mid-epoch s": statistics.median(stops),
        "stop while the judge loads s": statistics.median(judge_stops),
    }
    print(f"{'median of ' + str(args.repeats):32} {'now':>8} {'before':>8}")
    for key, value in now.items():
        before = BASELINE[key]
        print(f"{key:32} {value:8.2f} {'n/a' if before is None else f'{before:.2f}':>8}")
    for thread in threading.enumerate():  # judges still building after a stop: let them end before exit
        if thread.name == "gan-judge":
            thread.join()
    jobs.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
