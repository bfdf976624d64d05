"""`make demo` runs the whole pipeline against the stand-ins and says what happened."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_demo(out: Path, count: int = 2, size: str = "60x40") -> subprocess.CompletedProcess:
    argv = ["--count", str(count), "--size", size, "--out", str(out)]
    return subprocess.run(
        [sys.executable, ROOT / "sandbox" / "demo.py", *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_demo_runs_every_step_then_a_second_run_replaces_its_folder(tmp_path):
    out = tmp_path / "demo"
    result = run_demo(out, count=3, size="300x200")
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.split("demo summary", 1)[1]
    for script in ("changeImage.py", "supplier_image_upload.py", "run.py", "report_email.py"):
        assert re.search(rf"{re.escape(script)}:\s+ok", summary), summary
    assert re.search(r"health_check\.py:\s+(ok|warning|unhealthy)", summary)
    assert re.search(r"products in store:\s+3\n", summary)
    assert "Upload Completed - Online Fruit Store" in summary
    assert (out / "processed.pdf").exists()
    assert len(list((out / "supplier-data" / "images").glob("*.jpeg"))) == 3
    assert "missing" not in summary

    (out / "left-over").write_text("from the first demo")
    result = run_demo(out)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (out / "left-over").exists()
    assert len(list((out / "supplier-data" / "images").glob("*.jpeg"))) == 2
    summary = result.stdout.split("demo summary", 1)[1]
    for label in ("import record:", "upload journal:", "Prometheus textfile:", "log:"):
        assert re.search(rf"{label}\s+/", summary), label
    assert "KEEP=1" in summary
    assert "http://" not in summary


def test_demo_never_deletes_a_folder_it_did_not_make(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.txt").write_text("years of work")
    result = run_demo(out)
    assert result.returncode != 0
    assert "was not made by the demo" in result.stderr
    assert (out / "thesis.txt").read_text() == "years of work"
    assert sorted(p.name for p in out.iterdir()) == ["thesis.txt"]


def test_demo_says_an_alert_was_mailed_only_when_one_was(tmp_path):
    """An unhealthy machine (a free-disk limit no disk meets): the first health check
    mails, the --no-email run mails nothing, and the summary says each as it was."""
    argv = ["--count", "1", "--size", "60x40", "--out", str(tmp_path / "demo")]
    result = subprocess.run(
        [sys.executable, ROOT / "sandbox" / "demo.py", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HEALTH_DISK": "100"},
    )
    summary = result.stdout.split("demo summary", 1)[1]
    mailing, silent = re.findall(r"health_check\.py:\s+(.*)", summary)
    assert re.fullmatch(r"unhealthy \(\d+ alerts? mailed\)", mailing), mailing
    assert silent == "unhealthy (nothing mailed)"
