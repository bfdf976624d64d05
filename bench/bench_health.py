#!/usr/bin/env python3
"""Benchmark one health_check.py run with one URL and a full month of SLO state.

Runs the script as cron does (a new process each time, mail off) against a
page served on loopback, with a state file holding 30 days of minute
probes, and prints each run's wall time and peak resident memory, then the
worst of each. The baseline is the part no check can avoid: a process that
imports psutil and samples the CPU for one second. Goal: at most 1.2 s and
40 MB per run.

Usage:
    python bench/bench_health.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import health_check as hc  # noqa: E402 - the script's own state format

BASELINE = "import psutil; psutil.cpu_percent(interval=1.0)"


class Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html>" + b"fruit " * 2000 + b"</html>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def month_of_state(path: Path, url: str, now: float) -> None:
    """30 days of minute probes, one bad minute in 500, as the script records them."""
    with hc.StateFile(path, 1) as store:
        series = store.data["slo"].setdefault(hc.url_label(url), hc.new_series())
        series["slo"] = 0.99
        for minute in range(30 * 1440, 0, -1):
            hc.record(series, now - 60 * minute, minute % 500 != 0, 30 * 86400)
        store.commit(now)


def one_run(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(seconds, peak MB) of one run, from the kernel's accounting of that child."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, env=env)
    _, _, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    process.returncode = 0  # reaped by wait4 above
    return elapsed, usage.ru_maxrss / 1024


def report(name: str, results: list[tuple[float, float]]) -> tuple[float, float]:
    worst = max(s for s, _ in results), max(m for _, m in results)
    median = statistics.median(s for s, _ in results)
    print(f"{name}: median {median:.2f} s, worst {worst[0]:.2f} s, {worst[1]:.1f} MB peak")
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    with tempfile.TemporaryDirectory() as folder:
        state = Path(folder) / "state.json"
        month_of_state(state, url, time.time())
        print(f"state file: {state.stat().st_size / 1024:.1f} KB for 30 days of minute probes")
        env = {**os.environ, "HEALTH_STATE": str(state)}
        check = [sys.executable, str(ROOT / "health_check.py"), "--no-email", "--nagios"]
        baseline = [one_run([sys.executable, "-c", BASELINE], env) for _ in range(args.runs)]
        runs = [one_run([*check, "--url", url], env) for _ in range(args.runs)]
        base = report("baseline (import psutil, 1 s CPU sample)", baseline)
        worst = report("health_check.py --url URL, month of state", runs)
    server.shutdown()
    print(
        f"over the baseline: +{worst[0] - base[0]:.2f} s, +{worst[1] - base[1]:.1f} MB"
        f" (goal: at most 1.2 s and 40 MB per run)"
    )
    return 0 if worst[0] <= 1.2 and worst[1] <= 40 else 1


if __name__ == "__main__":
    sys.exit(main())
