#!/usr/bin/env python3
"""Benchmark importers at once, and one importer against the previous code.

An importer is ./supplier_image_upload.py then ./run.py on one delivery of
--count catalog JPEGs (600x400, each its own picture) and descriptions, as
users run them. Each measurement gets a fresh stand-in store answering after
--delay seconds (a store across a network), rounds interleaved; best and
median wall times are printed.

  concurrent:  four deliveries, each imported by its own processes at once,
               with CATALOG_CONTENT_NAMES=1 (README: many importers on one store)
  sequential:  the same four deliveries, one after another (content names too)
  one, this:   one delivery with this checkout's scripts, no options (the lab's
               names, products posted in the delivery's order)
  one, base:   the same delivery with the scripts of --base (the previous code)

With --posts-only, run.py alone, this checkout's against --base's, on a store
that already holds the delivery's pictures (each code's uploader put them
there once; the products are removed between rounds): what the lab's order,
one POST at a time, costs against POSTs sent --jobs at a time.

Usage:
    python bench/bench_importers.py [--count 100] [--delay 0.02] [--rounds 3]
                                    [--base /work/wt-base] [--posts-only]
"""

from __future__ import annotations

import argparse
import json
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


def importer(code: Path, content_names: bool = False) -> Callable[[Path, str], None]:
    def run(delivery: Path, url: str) -> None:
        env = {**os.environ, "SUPPLIER_DATA": str(delivery), "CATALOG_URL": url}
        env["CATALOG_CONTENT_NAMES"] = "1" if content_names else "0"
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
    parser.add_argument("--posts-only", action="store_true", help="run.py alone, this and base")
    args = parser.parse_args()
    if args.posts_only:
        return posts_only(args.count, args.delay, args.rounds, args.base)
    this, many = importer(ROOT), importer(ROOT, content_names=True)
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        deliveries = [make_delivery(scratch / f"d{n}", args.count, n) for n in range(DELIVERIES)]

        def concurrent(url: str) -> None:
            with ThreadPoolExecutor(DELIVERIES) as pool:
                list(pool.map(many, deliveries, [url] * DELIVERIES))

        def sequential(url: str) -> None:
            for delivery in deliveries:
                many(delivery, url)

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


def posts_only(count: int, delay: float, rounds: int, base: Path) -> int:
    codes = {"run.py, this code": ROOT, "run.py, previous code": base}
    times: dict[str, list[float]] = {name: [] for name in codes}
    with tempfile.TemporaryDirectory() as folder:
        scratch, stores = Path(folder), {}
        try:
            for number, (name, code) in enumerate(codes.items()):
                delivery = make_delivery(scratch / f"d{number}", count, 1)
                process, url = start_store(scratch / f"store{number}", delay)
                stores[name] = (process, url, delivery, code)
                env = {**os.environ, "SUPPLIER_DATA": str(delivery), "CATALOG_URL": url}
                upload = [sys.executable, str(code / "supplier_image_upload.py"), "-q"]
                subprocess.run(upload, env=env, check=True)
            for _ in range(rounds):
                for name, (_, url, delivery, code) in stores.items():
                    times[name].append(timed_run(code, delivery, url, count))
        finally:
            for process, *_ in stores.values():
                process.terminate()
                process.wait(timeout=10)
    print(f"{count} products, store answering after {delay * 1000:g} ms, {rounds} rounds")
    for name, seconds in times.items():
        print(f"  {name:24} {min(seconds):6.2f} ({statistics.median(seconds):.2f})")
    ratio = min(times["run.py, this code"]) / min(times["run.py, previous code"])
    print(f"this code vs previous code: {ratio:.2f}x the time")
    return 0


def timed_run(code: Path, delivery: Path, url: str, count: int) -> float:
    """Seconds for run.py on delivery, after removing every product from the store."""
    with sqlite3.connect(delivery.parent / f"store{delivery.name[1:]}" / "store.sqlite3") as db:
        db.execute("DELETE FROM storeapp_fruit")
    clean(delivery)
    env = {**os.environ, "SUPPLIER_DATA": str(delivery), "CATALOG_URL": url}
    start = time.perf_counter()
    subprocess.run([sys.executable, str(code / "run.py"), "-q"], env=env, check=True)
    elapsed = time.perf_counter() - start
    if len(json.loads((delivery / "imported.json").read_text())["products"]) != count:
        raise SystemExit(f"{delivery}: not every product recorded")
    return elapsed


if __name__ == "__main__":
    sys.exit(main())
