"""Importing a data set of your own: time and peak memory to load, validate and store 10,000 uploaded images.

    python benchmarks/upload.py [--images 10000] [--repeats 3]

Builds a zip of PNGs from real MNIST test digits scaled to 56x56 (black on white, as a scan would be) in a
temporary folder, then imports it with mnist_core.uploads.import_dataset (centre mode: every image read from the
zip in memory, converted to 28x28, split, written as IDX files with SHA256SUMS) into a temporary runs folder.

Each import runs in a fresh process, so its figures are its own: the wall time (without tracemalloc, which slows
Python's allocations), then in another fresh process the tracemalloc peak (Python and numpy allocations during
the import) and the process's max RSS (resource.getrusage: the whole process's peak, torch's import included;
the RSS before the import is printed beside it, and the resident memory just before and after the import, since
the max RSS is a high-water mark torch's import may already have set). Medians of --repeats runs of each.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from mnist_core.data import load_mnist  # noqa: E402
from mnist_core.files import atomic_write  # noqa: E402
from mnist_core.uploads import import_dataset, preview  # noqa: E402

SIDE = 56


def build_zip(path: Path, count: int) -> None:
    """count PNGs of MNIST test digits, 56x56, black on white, in one folder per digit."""
    from PIL import Image

    mnist = load_mnist()
    images, labels = mnist.test_images.numpy(), mnist.test_labels.numpy()

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for i in range(count):
                digit = Image.fromarray(255 - images[i % len(images)]).resize((SIDE, SIDE), Image.Resampling.BICUBIC)
                buffer = io.BytesIO()
                digit.save(buffer, format="PNG")
                zf.writestr(f"digits/{labels[i % len(labels)]}/{i:05d}.png", buffer.getvalue())

    atomic_write(path, write)


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def rss_now_mb() -> float:
    """The process's resident memory now (max RSS is a high-water mark: torch's import may already be above)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one_import(archive: Path, root: Path, trace: bool) -> dict:
    """One import in this (fresh) process: its wall time, or its tracemalloc peak, and the process's max RSS."""
    rss_before, rss_now_before = max_rss_mb(), rss_now_mb()
    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    report = import_dataset(archive, "bench", root=root, overwrite=True)
    seconds = time.perf_counter() - start
    rss_now_after = rss_now_mb()
    peak = tracemalloc.get_traced_memory()[1] / 2**20 if trace else None
    if trace:
        tracemalloc.stop()
    start = time.perf_counter()
    preview(archive, per_class=8)
    preview_s = time.perf_counter() - start
    return {
        "seconds": seconds,
        "preview_s": preview_s,
        "images": report.train + report.test,
        "skipped": len(report.skipped),
        "tracemalloc_mb": peak,
        "rss_before_mb": rss_before,
        "max_rss_mb": max_rss_mb(),
        "rss_now_before_mb": rss_now_before,
        "rss_now_after_mb": rss_now_after,
        "archive_mb": archive.stat().st_size / 2**20,
    }


def in_fresh_process(archive: Path, root: Path, trace: bool) -> dict:
    command = [sys.executable, __file__, "--one", str(archive), "--root", str(root)] + (["--trace"] if trace else [])
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # a child: one import of this zip
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_import(args.one, args.root, args.trace)))
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "digits.zip"
        start = time.perf_counter()
        build_zip(archive, args.images)
        print(
            f"zip of {args.images:,} PNGs ({SIDE}x{SIDE} MNIST test digits, black on white): "
            f"{archive.stat().st_size / 2**20:.1f} MB, built in {time.perf_counter() - start:.1f} s"
        )
        timed = [in_fresh_process(archive, Path(tmp) / "sets", trace=False) for _ in range(args.repeats)]
        traced = [in_fresh_process(archive, Path(tmp) / "sets", trace=True) for _ in range(args.repeats)]
    median = lambda runs, key: statistics.median(r[key] for r in runs)  # noqa: E731
    seconds = median(timed, "seconds")
    runs = ", ".join(f"{r['seconds']:.2f}" for r in timed)
    peaks = ", ".join(f"{r['tracemalloc_mb']:.1f}" for r in traced)
    print(
        f"import (read, validate, convert centre, split, write): median {seconds:.2f} s of {args.repeats} "
        f"(runs {runs}), {timed[0]['images'] / seconds:,.0f} images/s, "
        f"{timed[0]['images']:,} images stored, {timed[0]['skipped']} skipped"
    )
    print(f"preview (8 per class, the rest counted): median {median(timed, 'preview_s'):.2f} s")
    print(f"tracemalloc peak during the import: median {median(traced, 'tracemalloc_mb'):.1f} MB (runs {peaks})")
    print(
        f"process max RSS: median {median(timed, 'max_rss_mb'):.0f} MB, of which {median(timed, 'rss_before_mb'):.0f} MB "
        "before the import (Python, torch, numpy, PIL imported); resident memory "
        f"{median(timed, 'rss_now_before_mb'):.0f} MB before the import, {median(timed, 'rss_now_after_mb'):.0f} MB "
        "after it"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
