"""The one retry policy (StoreRetry in blocks/http.py) against stores that are
busy in odd ways: a request the store surely did not take is never recorded
as maybe sent, and no wait outlasts the request's deadline."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helper import wait_for

ROOT = Path(__file__).resolve().parent.parent
UPLOAD = "supplier_image_upload.py"

# id, hostile mode, POSTs the store must see (--retries 2), fragment of stderr
BUSY_STORES = [
    ("retry-after-past-the-deadline", "busy-for-a-day", 1, "answered 503, asked to wait 21600 s"),
    ("retry-after-unreadable", "busy-garbage", 3, "the store answered 503"),
    ("retry-after-negative", "busy-negative", 3, "the store answered 503"),
]


@pytest.mark.parametrize(
    "mode, posts, fragment", [pytest.param(*case[1:], id=case[0]) for case in BUSY_STORES]
)
def test_a_busy_store_fails_the_upload_as_not_sent(
    hostile_store, tmp_path, catalog, run_script, mode, posts, fragment
):
    server = hostile_store(mode)
    delivery = catalog(tmp_path / "supplier-data", ["001"])
    args = ["--url", server.url, "--images", str(delivery / "images")]
    result = run_script(UPLOAD, *args, "--retries", "2", "--timeout", "2", "--grace", "0")
    assert result.returncode == 1, result.stderr
    assert fragment in result.stderr and "Traceback" not in result.stderr
    assert "no answer" not in result.stderr and "uncertain" not in result.stderr
    assert server.posts == posts
    states = [json.loads(line)["state"] for line in (delivery / "uploaded.jsonl").open()]
    assert "uploaded" not in states


def test_a_refused_connection_is_named_even_past_a_short_deadline(dead_port, run_script, tmp_path):
    (tmp_path / "descriptions").mkdir()
    (tmp_path / "descriptions" / "001.txt").write_text("Apple\n5 lbs\nRed.\n")
    url = f"http://127.0.0.1:{dead_port}/"
    result = run_script(
        "run.py", "--url", url, "--descriptions", str(tmp_path / "descriptions"), "--timeout", "0.1"
    )
    assert result.returncode == 2, result.stderr
    assert "connection refused" in result.stderr
    assert not (tmp_path / "imported.json").exists()


def test_a_stop_during_the_grace_wait_still_writes_the_record(tmp_path, store_factory, catalog):
    """run.py stopped while it waits to look for POSTs whose answers were lost:
    the record says complete: false, and those products are uncertain (the next
    run looks for them), not lost."""
    store = store_factory(drop_every=2)
    delivery = catalog(tmp_path / "supplier-data", ["001", "002", "003", "004"])
    env = {"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path)}
    folders = ["--images", str(delivery / "images"), "--url", store.url]
    descriptions = ["--descriptions", str(delivery / "descriptions")]
    upload = subprocess.run(
        [sys.executable, str(ROOT / UPLOAD), *folders, "--grace", "0"],
        capture_output=True,
        env=env,
        timeout=120,
    )
    assert upload.returncode == 0, upload.stderr
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), *folders, *descriptions, "--grace", "30"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    said: list[str] = []
    reader = threading.Thread(target=lambda: said.extend(process.stderr), daemon=True)
    reader.start()
    wait_for(lambda: any("lost their answer" in line or "lost its answer" in line for line in said))
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 130
    reader.join(timeout=60)  # the last line may still be in the pipe: read to its end
    record = json.loads((delivery / "imported.json").read_text(encoding="utf-8"))
    assert record["complete"] is False
    outcomes = sorted(p["outcome"] for p in record["products"])
    assert "uncertain" in outcomes and "" not in outcomes
    assert said[-1] == "ERROR interrupted by SIGTERM\n"


def test_after_a_stop_no_request_goes_out(hostile_store, tmp_path, catalog) -> None:
    """Uploads waiting to retry a busy store (503, Retry-After: 3) are stopped by
    SIGTERM: no POST leaves after it, and the journal stays whole."""
    server = hostile_store("busy-briefly")
    delivery = catalog(tmp_path / "supplier-data", ["001", "002", "003", "004"])
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / UPLOAD),
            "--url",
            server.url,
            "--jobs",
            "2",
            "--images",
            str(delivery / "images"),
            "--timeout",
            "60",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: server.posts >= 2)
    process.send_signal(signal.SIGTERM)
    sent_before_the_stop = server.posts
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert server.posts == sent_before_the_stop
    assert err.splitlines()[-1] == "ERROR interrupted by SIGTERM"
    assert all(json.loads(line) for line in (delivery / "uploaded.jsonl").open())
