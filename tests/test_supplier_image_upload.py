"""supplier_image_upload.py puts every JPEG into the stand-in store exactly once."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests
from PIL import Image

import supplier_image_upload as uploader
from make_delivery import make_delivery

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "supplier_image_upload.py"


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch, caplog):
    monkeypatch.setattr(uploader, "BACKOFF_BASE", 0.01)
    monkeypatch.delenv("CATALOG_TOKEN", raising=False)
    caplog.set_level(logging.INFO)


def jpeg_folder(folder: Path, count: int = 3) -> Path:
    """count small JPEGs (001.jpeg...), a TIFF and stray files, as after changeImage."""
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(1, count + 1):
        Image.new("RGB", (60, 40), (number * 40 % 256, 80, 120)).save(folder / f"{number:03d}.jpeg")
    Image.new("RGB", (60, 40)).save(folder / "001.tiff")
    (folder / "LICENSE").write_text("licence")
    return folder


def upload(store, images: Path, *extra: str) -> int:
    journal = images.parent / "uploaded.jsonl"
    return uploader.main(
        ["--url", store.url, "--images", str(images), "--journal", str(journal), *extra]
    )


def stored(store) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(store.catalog.images.iterdir())}


def test_every_jpeg_is_uploaded_with_its_content_and_nothing_else(store, tmp_path):
    images = jpeg_folder(tmp_path / "images")
    assert upload(store, images) == 0
    names = ("001.jpeg", "002.jpeg", "003.jpeg")
    assert stored(store) == {n: (images / n).read_bytes() for n in names}
    for name in names:
        served = requests.get(f"{store.url}media/images/{name}", timeout=5)
        assert (served.status_code, served.content) == (200, (images / name).read_bytes())


def test_jpegs_are_recognised_by_content_not_name(store, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (8, 8)).save(images / "photo", "JPEG")
    (images / "fake.jpeg").write_text("not a jpeg")
    # A temporary file left by a killed changeImage.py run is never uploaded.
    (images / ".001.jpeg.x1y2.tmp").write_bytes((images / "photo").read_bytes()[:50])
    assert upload(store, images) == 0
    assert list(stored(store)) == ["photo"]


def test_rerun_uploads_nothing_new(store, tmp_path, caplog):
    images = jpeg_folder(tmp_path / "images")
    assert upload(store, images) == 0
    assert upload(store, images) == 0
    assert len(stored(store)) == 3
    assert caplog.records[-1].getMessage() == "uploaded 0, already in store 3, failed 0"


def test_without_the_journal_names_the_products_use_are_compared_not_resent(store, tmp_path):
    images = jpeg_folder(tmp_path / "images")
    upload(store, images)
    (tmp_path / "uploaded.jsonl").unlink()
    for name in ("001.jpeg", "002.jpeg", "003.jpeg"):
        requests.post(store.url + "fruits/", json={"weight": 1, "image_name": name}, timeout=5)
    assert upload(store, images) == 0
    assert len(stored(store)) == 3


def test_check_store_finds_images_uploaded_by_someone_else(store, tmp_path):
    images = jpeg_folder(tmp_path / "images", count=2)
    for name in ("001.jpeg", "002.jpeg"):
        files = {"file": (name, (images / name).read_bytes(), "image/jpeg")}
        requests.post(store.url + "upload/", files=files, timeout=5)
    assert upload(store, images, "--check-store") == 0
    assert len(stored(store)) == 2


def test_check_store_reuploads_what_a_wiped_store_lost(store_factory, tmp_path):
    images = jpeg_folder(tmp_path / "images", count=2)
    first = store_factory()
    upload(first, images)
    for path in first.catalog.images.iterdir():
        path.unlink()
    assert upload(first, images) == 0
    assert stored(first) == {}  # the journal alone says they are there
    assert upload(first, images, "--check-store") == 0
    assert list(stored(first)) == ["001.jpeg", "002.jpeg"]


def test_a_different_image_under_a_known_name_is_a_conflict_not_a_duplicate(
    store, tmp_path, logged_errors
):
    images = jpeg_folder(tmp_path / "images", count=1)
    upload(store, images)
    Image.new("RGB", (60, 40), (255, 0, 0)).save(images / "001.jpeg")
    assert upload(store, images) == 1
    assert list(stored(store)) == ["001.jpeg"]
    assert logged_errors() == [
        "001.jpeg: the store already has a different 001.jpeg; not uploaded"
        " (--force uploads it anyway and the store keeps both under two names)"
    ]
    assert upload(store, images, "--force") == 0
    names = list(stored(store))
    assert len(names) == 2 and re.fullmatch(r"001_[A-Za-z0-9]{7}\.jpeg", names[1])


@pytest.mark.parametrize(
    "faults",
    [
        {"fail_503_every": 2},
        {"fail_502_every": 2},
        {"drop_every": 2},
        {"slow_every": 2, "slow": 1.0},
    ],
    ids=["503-before-work", "502-after-work", "dropped", "slow"],
)
def test_every_image_ends_in_the_store_exactly_once_despite_faults(
    store_factory, tmp_path, faults, caplog
):
    store = store_factory(**faults)
    images = jpeg_folder(tmp_path / "images", count=8)
    assert upload(store, images, "--timeout", "0.3") == 0
    assert list(stored(store)) == [f"{n:03d}.jpeg" for n in range(1, 9)]
    assert store.post_count > 8 or "confirmed in the store after" in caplog.text


def test_store_down_is_one_clear_line_and_exit_2(tmp_path, logged_errors, dead_port):
    url = f"http://127.0.0.1:{dead_port}/"
    images = jpeg_folder(tmp_path / "images")
    assert uploader.main(["--url", url, "--images", str(images)]) == 2
    assert logged_errors() == [
        f"cannot reach the store at {url}: connection refused (set --url or CATALOG_URL)"
    ]


def test_token_store_refuses_without_and_accepts_with_the_token(
    store_factory, tmp_path, caplog, monkeypatch, logged_errors
):
    store = store_factory(token="t0ken-value")
    images = jpeg_folder(tmp_path / "images")
    assert upload(store, images) == 2
    assert logged_errors() == ["the store refused the credentials (CATALOG_TOKEN)"]
    monkeypatch.setenv("CATALOG_TOKEN", "t0ken-value")
    assert upload(store, images) == 0
    assert len(stored(store)) == 3
    assert "t0ken-value" not in caplog.text


def test_wrong_endpoint_answer_fails_each_image_with_the_store_text(store, tmp_path, logged_errors):
    images = jpeg_folder(tmp_path / "images", count=1)
    url = store.url + "nothing-here/"
    assert uploader.main(["--url", url, "--images", str(images)]) == 2
    assert logged_errors() == [f"GET {url}fruits/ answered 404"]


def test_a_redirect_to_an_upload_is_a_failure_not_followed(
    tmp_path, logged_errors, redirecting_store
):
    images = jpeg_folder(tmp_path / "images", count=1)
    assert uploader.main(["--url", redirecting_store, "--images", str(images)]) == 1
    assert logged_errors() == [
        "001.jpeg: the store answered 301 redirect to https://elsewhere.example/fruits/;"
        " check --url"
    ]


def test_journal_records_sending_then_uploaded(store, tmp_path):
    images = jpeg_folder(tmp_path / "images", count=1)
    upload(store, images)
    entries = [json.loads(line) for line in (tmp_path / "uploaded.jsonl").read_text().splitlines()]
    assert [e["state"] for e in entries] == ["sending", "uploaded"]
    assert entries[1]["size"] == (images / "001.jpeg").stat().st_size
    assert entries[1]["store"] == store.url


def test_dry_run_lists_and_sends_nothing(store, tmp_path, capsys):
    images = jpeg_folder(tmp_path / "images", count=2)
    assert upload(store, images, "--dry-run") == 0
    assert capsys.readouterr().out.splitlines() == [
        f"POST {store.url}upload/ file=001.jpeg",
        f"POST {store.url}upload/ file=002.jpeg",
    ]
    assert stored(store) == {}


def test_no_arguments_under_home_with_catalog_url(store, tmp_path):
    data = make_delivery(tmp_path, count=2, size=(30, 20))
    jpeg_folder(data / "images", count=2)
    env = {**os.environ, "HOME": str(tmp_path), "CATALOG_URL": store.url}
    env.pop("SUPPLIER_DATA", None)
    result = subprocess.run([SCRIPT], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "INFO uploaded 2, already in store 0, failed 0"
    assert list(stored(store)) == ["001.jpeg", "002.jpeg"]


def test_killed_part_way_and_run_again_ends_with_one_of_everything(store_factory, tmp_path):
    store = store_factory(slow_every=1, slow=0.05)
    images = jpeg_folder(tmp_path / "images", count=30)
    env = {**os.environ, "SUPPLIER_DATA": str(tmp_path), "CATALOG_URL": store.url}
    process = subprocess.Popen([SCRIPT, "--jobs", "2"], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while len(stored(store)) < 5 and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 5 <= len(stored(store)) < 30
    journal = (tmp_path / "uploaded.jsonl").read_text()
    assert journal.count('"sending"') > journal.count('"uploaded"')
    result = subprocess.run([SCRIPT], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert list(stored(store)) == [f"{n:03d}.jpeg" for n in range(1, 31)]
    assert all((images / name).read_bytes() == data for name, data in stored(store).items())
