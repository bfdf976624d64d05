"""`make demo` runs the whole pipeline against the stand-ins and says what happened."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_every_step_and_prints_the_summary(tmp_path):
    out = tmp_path / "demo"
    argv = ["--count", "3", "--size", "300x200", "--out", str(out)]
    result = subprocess.run(
        [sys.executable, ROOT / "sandbox" / "demo.py", *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
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
