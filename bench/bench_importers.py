#!/usr/bin/env python3
"""Benchmark importers at once, and one importer against the previous code.

An importer is ./supplier_image_upload.py then ./run.py on one delivery of
--count catalog JPEGs (600x400, each its own picture) and descriptions, as
users run them. Each measurement gets a fresh stand-in store answering after
--delay seconds (a store across a network), rounds interleaved; best and
median wall times are printed.

  concurrent:  four deliveries, each imported by its own processes at once
  sequential:  the same four deliveries, one after another
  one, this:   one delivery with this checkout's scripts
  one, base:   the same delivery with the scripts of --base (the previous code)

Usage:
    python bench/bench_importers.py [--count 100] [--delay 0.02] [--rounds 3]
                                    [--base /work/wt-base]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
DELIVERIES = 4


def make_delivery(data: Path, count: int, shade: int) -> Path:
    images, descriptions = data / "images", data / "descriptions"
    images.mkdir(parents=True)
    descriptions.mkdir()
    for number in range(1, count + 1):
        stem = f"{number:03d}"
        colour = (number * 7 % 256, shade * 61 % 256, 160)
        picture = Image.new("RGB", (600, 400), colour)
        picture.save(images / f"{stem}.jpeg", quality=60, comment=f"{stem} of {shade}")
        text = f"Fruit {number} of delivery {shade}\n{number} lbs\nTasty.\n"
        (descriptions / f"{stem}.txt").write_text(text)
    return data


def start_store(data: Path, delay: float) -> tuple[subprocess.Popen, str]:
    argv = [sys.executable, str(ROOT / "sandbox" / "store.py"), "--port", "0"]
    argv += ["--data", str(data), "--delay", str(delay)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    return process, process.stdout.readline().strip()


def clean(delivery: Path) -> None:
    for leftover in ("uploaded.jsonl", "imported.json", "imported.jsonl"):
        (delivery / leftover).unlink(missing_ok=True)


def importer(code: Path) -> Callable[[Path, str], None]:
    def run(delivery: Path, url: str) -> None:
        env = {**os.environ, "SUPPLIER_DATA": str(delivery), "CATALOG_URL": url}
        for script in ("supplier_image_upload.py", "run.py"):
            subprocess.run([sys.executable, str(code / script), "-q"], env=env, check=True)

    return run


def timed(work: Callable[[str], None], scratch: Path, delay: float, expected: int) -> float:
    """Seconds for work(url) against a fresh store, checked to have stored everything."""
    with tempfile.TemporaryDirectory(dir=scratch) as folder:
        store, url = start_store(Path(folder), delay)
        try:
            start = time.perf_counter()
            work(url)
            elapsed = time.perf_counter() - start
            with sqlite3.connect(Path(folder) / "store.sqlite3") as db:
                stored = db.execute("SELECT COUNT(*) FROM storeapp_fruit").fetchone()[0]
            if stored != expected:
                raise SystemExit(f"the store holds {stored} products, not {expected}")
            return elapsed
        finally:
            store.terminate()
            store.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100, help="products per delivery")
    parser.add_argument("--delay", type=float, default=0.02, help="the store's answer delay, s")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--base", type=Path, default=Path("/work/wt-base"))
    args = parser.parse_args()
    this = importer(ROOT)
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        deliveries = [make_delivery(scratch / f"d{n}", args.count, n) for n in range(DELIVERIES)]

        def concurrent(url: str) -> None:
            with ThreadPoolExecutor(DELIVERIES) as pool:
                list(pool.map(this, deliveries, [url] * DELIVERIES))

        def sequential(url: str) -> None:
            for delivery in deliveries:
                this(delivery, url)

        sides: dict[str, tuple[Callable[[str], None], int]] = {
            "4 importers at once": (concurrent, DELIVERIES * args.count),
            "4 importers one after another": (sequential, DELIVERIES * args.count),
            "1 importer, this code": (lambda url: this(deliveries[0], url), args.count),
            "1 importer, previous code": (
                lambda url: importer(args.base)(deliveries[0], url),
                args.count,
            ),
        }
        times: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(args.rounds):
            for name, (work, expected) in sides.items():
                for delivery in deliveries:
                    clean(delivery)
                times[name].append(timed(work, scratch, args.delay, expected))
    print(f"{args.count} products per delivery, store answering after {args.delay * 1000:g} ms,")
    print(f"{args.rounds} rounds interleaved; wall seconds, best (median)")
    for name, seconds in times.items():
        print(f"  {name:32} {min(seconds):6.2f} ({statistics.median(seconds):.2f})")
    ratio = min(times["4 importers one after another"]) / min(times["4 importers at once"])
    slower = min(times["1 importer, this code"]) / min(times["1 importer, previous code"]) - 1
    print(f"at once vs one after another: {ratio:.2f}x faster")
    print(f"this code vs previous code: {slower:+.1%} time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
