#!/usr/bin/env python3
"""Benchmark one health_check.py run: wall time and peak memory.

Runs the script as cron does (a new process each time) several times and
prints each run's wall time and peak resident memory, then the worst of
each. Goal: about the one-second CPU sample and little else (<= 1.2 s,
<= 40 MB). Mail is off (--no-email), so the figures are the checks' own.

Usage:
    python bench/bench_health.py [--runs 5] [-- extra health_check.py options]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def one_run(extra: list[str]) -> tuple[float, float]:
    """(seconds, peak MB) of one run, from the kernel's accounting of that child."""
    argv = [sys.executable, str(ROOT / "health_check.py"), "--no-email", "--nagios", *extra]
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    _, _, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    process.returncode = 0  # reaped by wait4 above
    return elapsed, usage.ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("extra", nargs="*", help="options passed to health_check.py")
    args = parser.parse_args(argv)
    results = [one_run(args.extra) for _ in range(args.runs)]
    for number, (seconds, peak) in enumerate(results, 1):
        print(f"run {number}: {seconds:5.2f} s  {peak:5.1f} MB peak")
    worst_time = max(seconds for seconds, _ in results)
    worst_peak = max(peak for _, peak in results)
    print(f"worst: {worst_time:.2f} s (goal 1.2 s), {worst_peak:.1f} MB (goal 40 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
