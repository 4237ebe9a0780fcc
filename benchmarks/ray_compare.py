"""The same comparison on the local worker pool and on a local Ray: the same accuracy per run, and both wall times.

2 optimizers (SGD, Adam) x 2 seeds of the `fast` preset, 50 batches each, through the job runner: once
with the processes backend (two workers on two cores: one torch thread per run, as on Ray), once with the Ray backend on a
local Ray this script starts (ray.init(num_cpus=2)); on Ray the comparison's runs spread over the
cluster's CPUs. Same seeds, same data order: each run's test accuracy must match to the last digit.

    python benchmarks/ray_compare.py [--max-batches 50] [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from mnist_core.presets import preset  # noqa: E402
from mnist_core.runner import HostLimits, Runner  # noqa: E402


def compare(backend: str, config: dict, runs: str) -> tuple[float, dict]:
    start = time.perf_counter()
    # Two pool workers on two cores: one torch thread each, as Ray gives each run one CPU (one thread). A sum
    # over two threads adds in another order than over one, and 50 steps carry that last-bit difference on.
    runner = Runner(HostLimits(max_jobs=1), backend=backend, workers=2, runs_dir=runs)
    try:
        job = runner.submit("bench", "compare", config, name=f"bench-{backend}")
        state = runner.wait(job.id, timeout=None).snapshot()
    finally:
        runner.shutdown()
    seconds = time.perf_counter() - start
    if state.status != "done":
        raise SystemExit(f"the comparison on {backend} ended {state.status}: {state.message}")
    return seconds, {(run["arm"], run["seed"]): run["test_accuracy"] for run in state.result["runs"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-batches", type=int, default=50)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--ray-cpus", type=int, default=2)
    args = parser.parse_args()
    base = {**preset("fast").to_dict(), "max_batches": args.max_batches, "record": False}
    config = {"base": base, "dimension": "optimizer", "values": ["SGD", "Adam"], "seeds": args.seeds}
    runs = tempfile.mkdtemp(prefix="ray-compare-")  # the runs stay out of the user's folder

    local_seconds, local = compare("processes", config, runs)
    import ray

    started = time.perf_counter()
    ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - started
    try:
        ray_seconds, on_ray = compare("ray", config, runs)
    finally:
        ray.shutdown()

    print(f"comparison: optimizer SGD vs Adam x seeds {args.seeds}, `fast` preset, {args.max_batches} batches per run")
    print(f"  {'arm':<8} {'seed':>4}  {'processes':>10}  {'ray':>10}  same")
    same = True
    for key in sorted(local):
        match = local[key] == on_ray.get(key)
        same &= match
        print(
            f"  {key[0]:<8} {key[1]:>4}  {local[key]:10.4%}  {on_ray.get(key, float('nan')):10.4%}  "
            f"{'yes' if match else 'NO'}"
        )
    print(f"accuracies per run identical on both: {'yes' if same else 'NO'} (target: yes)")
    print(
        f"wall time: local worker pool {local_seconds:.1f} s; local Ray ({args.ray_cpus} CPUs) {ray_seconds:.1f} s "
        f"(plus {ray_start:.1f} s to start Ray); both include starting their workers"
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
