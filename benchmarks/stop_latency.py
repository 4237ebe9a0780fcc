"""How long Stop takes: from the click (the stop event) to the last batch, and to the run being over.

A learner presses Stop and waits; the first figure is when training stops, the second when the run is
saved and shown as ended. Runs the `fast` preset as the Train page does (the job runner; --backend
processes, the app's default, or threads).
Baseline (before a stop skipped the final test pass), same busy 2-core box: last batch 0.10 s, run ended
24.84 s (medians of 3).

    python benchmarks/stop_latency.py --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from mnist_core.presets import preset
from mnist_core.runner import HostLimits, Runner

TARGET_S = 1.0  # training must stop within about a second of the click
BASELINE_ENDED_S = 24.84  # stop -> run ended before the change (it scored the whole test set first)


def one_stop(runner: Runner, after_steps: int) -> tuple[float, float]:
    config = preset("fast")
    job = runner.submit("bench", "train", config.to_dict(), f"stop-{time.time_ns()}")
    while job.snapshot().view.step < after_steps:
        time.sleep(0.01)
    clicked = time.perf_counter()
    runner.stop("bench")
    last_step, last_change = job.snapshot().view.step, time.perf_counter()
    stages: dict[str, float] = {}
    while job.running:
        snap = job.snapshot()
        if snap.view.step != last_step:
            last_step, last_change = snap.view.step, time.perf_counter()
        stages.setdefault(snap.stage or "?", time.perf_counter() - clicked)
        time.sleep(0.005)
    ended = time.perf_counter()
    print("  stages after the click:", ", ".join(f"{k} {v:.2f} s" for k, v in stages.items()), flush=True)
    return last_change - clicked, ended - clicked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--after-steps", type=int, default=30)
    parser.add_argument("--backend", choices=("processes", "threads"), default="processes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as runs:
        runner = Runner(HostLimits(), backend=args.backend, workers=1, runs_dir=runs)
        try:
            times = [one_stop(runner, args.after_steps) for _ in range(args.repeats)]
        finally:
            runner.shutdown()
    training = statistics.median(t for t, _ in times)
    whole = statistics.median(t for _, t in times)
    print(
        f"stop -> last batch: median {training:.2f} s over {args.repeats} ({', '.join(f'{t:.2f}' for t, _ in times)})"
        f"   target <= {TARGET_S:.1f} s"
    )
    print(
        f"stop -> run ended (saved): median {whole:.2f} s ({', '.join(f'{t:.2f}' for _, t in times)})"
        f"   baseline {BASELINE_ENDED_S:.2f} s, target <= {TARGET_S:.1f} s"
    )


if __name__ == "__main__":
    main()
