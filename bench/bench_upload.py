#!/usr/bin/env python3
"""Benchmark the uploader and run.py against a naive loop, in the same run.

Makes N catalog JPEGs (600x400) and N descriptions, starts a fresh stand-in store for
each measurement (as its own process, answering after --delay seconds like
a store across a network), and times:
  naive:   requests.post per item, no session, one at a time
  scripts: ./supplier_image_upload.py then ./run.py, as users run them, with
           every check they make (each image looked for in the store before
           it is sent and read back after, each product's picture compared
           before it is posted)
Prints items per second (images + descriptions) and the ratio, with the
delay and without it.

Usage:
    python bench/bench_upload.py [--count 500] [--delay 0.02] [--jobs 8]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
JOBS = "8"


def make_items(data: Path, count: int) -> None:
    images, descriptions = data / "images", data / "descriptions"
    images.mkdir(parents=True)
    descriptions.mkdir()
    for number in range(1, count + 1):
        stem = f"{number:03d}"
        picture = Image.new("RGB", (600, 400), (number % 256, 90, 160))
        picture.save(images / f"{stem}.jpeg", comment=stem)  # a catalog JPEG, its own bytes
        (descriptions / f"{stem}.txt").write_text(f"Fruit {number}\n{number} lbs\nTasty.\n")


def start_store(data: Path, delay: float) -> tuple[subprocess.Popen, str]:
    argv = [sys.executable, str(ROOT / "sandbox" / "store.py"), "--port", "0"]
    argv += ["--data", str(data), "--delay", str(delay)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    return process, process.stdout.readline().strip()


def naive(data: Path, url: str) -> None:
    for image in sorted((data / "images").glob("*.jpeg")):
        with image.open("rb") as stream:
            requests.post(url + "upload/", files={"file": stream}, timeout=30)
    for text in sorted((data / "descriptions").glob("*.txt")):
        name, weight, description = text.read_text().splitlines()
        payload = {"name": name, "weight": int(weight.split()[0]), "description": description}
        requests.post(
            url + "fruits/", json={**payload, "image_name": text.stem + ".jpeg"}, timeout=30
        )


def scripts(data: Path, url: str) -> None:
    env = {**os.environ, "SUPPLIER_DATA": str(data), "CATALOG_URL": url, "CATALOG_JOBS": JOBS}
    for script in ("supplier_image_upload.py", "run.py"):
        subprocess.run([sys.executable, str(ROOT / script), "-q"], env=env, check=True)


def measure(run: Callable[[Path, str], None], data: Path, delay: float, scratch: Path) -> float:
    """Items per second for one run against a fresh store."""
    store, url = start_store(scratch / f"store-{run.__name__}-{delay}", delay)
    try:
        for leftover in ("uploaded.jsonl", "imported.json", "imported.jsonl"):
            (data / leftover).unlink(missing_ok=True)
        start = time.perf_counter()
        run(data, url)
        elapsed = time.perf_counter() - start
        fruits = requests.get(url + "fruits/", timeout=30).json()
    finally:
        store.terminate()
        store.wait()
    count = len(list((data / "images").glob("*.jpeg")))
    if len(fruits) != count:
        raise SystemExit(f"{run.__name__}: {len(fruits)} products in the store, expected {count}")
    return 2 * count / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--delay", type=float, default=0.02)
    parser.add_argument("--jobs", default="8", help="the scripts' --jobs (their default: 8)")
    args = parser.parse_args(argv)
    global JOBS
    JOBS = args.jobs
    with tempfile.TemporaryDirectory(prefix="bench-upload-") as scratch_name:
        scratch = Path(scratch_name)
        data = scratch / "supplier-data"
        make_items(data, args.count)
        print(f"{args.count} JPEGs + {args.count} descriptions; scripts with --jobs {JOBS}")
        for delay in (args.delay, 0.0):
            slow, fast = (
                measure(naive, data, delay, scratch),
                measure(scripts, data, delay, scratch),
            )
            print(
                f"store delay {delay * 1000:4.0f} ms: naive {slow:6.1f} items/s,"
                f" scripts {fast:6.1f} items/s, ratio {fast / slow:.2f}x"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
