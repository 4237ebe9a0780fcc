"""Cost of recording histograms and gradient flow during training, at the default interval.

    python benchmarks/probe_overhead.py --batches 300 --repeats 3

Runs the same training (same seed, same batches) with recording off and on, alternating, and reports
the median wall time of each. Target: recording adds <= 10%.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from mnist_core.data import DeviceData, load_mnist  # noqa: E402
from mnist_core.probes import auto_interval  # noqa: E402
from mnist_core.train import TrainConfig, batches_per_epoch, fit  # noqa: E402

TARGET = 0.10


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="*", default=["fast", "mlp", "tiny_gap"])
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = DeviceData(load_mnist(), device="auto")
    every = auto_interval(batches_per_epoch(len(data.train), 128))
    print(
        f"{args.batches} batches of 128 per run, {args.repeats} runs each way, snapshot every {every} steps "
        f"(the default); target: <= {TARGET:.0%} overhead"
    )
    for arch in args.arch:
        times = {False: [], True: []}
        for _ in range(args.repeats):
            for record in (False, True):
                start = time.perf_counter()
                fit(TrainConfig(arch=arch, max_batches=args.batches, record=record), data)
                times[record].append(time.perf_counter() - start)
        off, on = statistics.median(times[False]), statistics.median(times[True])
        overhead = on / off - 1
        print(
            f"{arch:<9} off {off:6.2f} s   on {on:6.2f} s   overhead {overhead:+6.1%}   "
            f"{'ok' if overhead <= TARGET else 'OVER TARGET'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
