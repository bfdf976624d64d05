"""supplier_image_upload.py puts every catalog JPEG into the stand-in store once,
under the lab's name where it is free, else its content name, and says what the
store serves. (What it shares with run.py: test_pipeline.py.)"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from PIL import Image

import run
import supplier_image_upload as uploader

MARK = (  # changeImage.py's, as it writes it into a JPEG comment
    "fruit-catalog changeImage.py made-from-sha256={digest} options={options} size={size}"
)


@pytest.fixture(autouse=True)
def quiet_environment(monkeypatch, caplog):
    for name in ("CATALOG_TOKEN", "CATALOG_URL", "UPLOAD_JOURNAL", "SUPPLIER_DATA"):
        monkeypatch.delenv(name, raising=False)
    caplog.set_level(logging.INFO)


def upload(store, images: Path, *extra: str) -> int:
    return uploader.main(["--url", store.url, "--images", str(images), "--grace", "1", *extra])


def stored(store) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(store.catalog.images.iterdir())}


def kept(images: Path, *names: str) -> list[str]:
    """The content names of these files: <stem>-<12 hex of SHA-256>.jpeg."""
    tags = [hashlib.sha256((images / name).read_bytes()).hexdigest()[:12] for name in names]
    return [f"{Path(name).stem}-{tag}.jpeg" for name, tag in zip(names, tags, strict=True)]


def served(store, name: str) -> bytes | None:
    """What the store serves as media/images/<name> over HTTP (None: 404)."""
    answer = requests.get(f"{store.url}media/images/{name}", timeout=30)
    return answer.content if answer.status_code == 200 else None


def shows_own_picture(store, images: Path, name: str) -> bool:
    """run.py's rule: the lab's name serving these bytes, else the content name."""
    content = (images / name).read_bytes()
    return content in (served(store, name), served(store, kept(images, name)[0]))


def test_every_catalog_jpeg_is_uploaded_under_its_own_name_as_the_lab_does(
    store, tmp_path, catalog
):
    images = catalog(tmp_path / "supplier-data", ["001", "002"]) / "images"
    assert upload(store, images) == 0
    assert stored(store) == {n: (images / n).read_bytes() for n in ("001.jpeg", "002.jpeg")}


@pytest.mark.parametrize("how", ["flag", "variable"])
def test_content_names_always_name_pictures_by_content(store, tmp_path, catalog, how, monkeypatch):
    images = catalog(tmp_path / "supplier-data", ["001", "002"]) / "images"
    if how == "variable":
        monkeypatch.setenv("CATALOG_CONTENT_NAMES", "1")
    assert upload(store, images, *(["--content-names"] if how == "flag" else [])) == 0
    assert list(stored(store)) == kept(images, "001.jpeg", "002.jpeg")
    assert upload(store, images) == 0 and store.post_count == 2  # found, whatever the option


def test_a_name_held_with_other_bytes_falls_back_to_the_content_name(
    store, tmp_path, catalog, caplog
):
    images = catalog(tmp_path / "supplier-data", ["001", "002"]) / "images"
    requests.post(store.url + "upload/", files={"file": ("001.jpeg", b"other")}, timeout=30)
    assert upload(store, images) == 0
    assert served(store, "001.jpeg") == b"other"  # the other picture keeps its name
    assert served(store, kept(images, "001.jpeg")[0]) == (images / "001.jpeg").read_bytes()
    assert served(store, "002.jpeg") == (images / "002.jpeg").read_bytes()
    posts = store.post_count
    assert upload(store, images) == 0
    assert store.post_count == posts  # a re-run finds both, sending nothing
    assert caplog.records[-1].getMessage() == "uploaded 0, already in store 2, failed 0"


def race(store, first: Path, second: Path) -> list[subprocess.CompletedProcess]:
    """Both uploaders started at once, each against its own delivery, with -q."""
    argv = [sys.executable, str(Path(uploader.__file__)), "--url", store.url, "-q"]
    started = [
        subprocess.Popen(
            [*argv, "--images", str(images)], stderr=subprocess.PIPE, text=True, env=os.environ
        )
        for images in (first, second)
    ]
    for process in started:
        process.wait(timeout=120)
        process.stderr_text = process.stderr.read()  # type: ignore[attr-defined]
        process.stderr.close()
    return started


def test_two_uploaders_racing_for_the_same_free_names_each_keep_their_own_pictures(
    store, tmp_path, catalog
):
    """Two deliveries numbered alike, uploaded at the same moment: where both found a
    name free, the store gives it to one and renames the other's upload without
    saying so. The loser reads that back, takes its content name, and counts the copy
    it left as an error, even with -q. Repeated until the race shows."""
    stems = [f"{n:03d}" for n in range(1, 25)]
    for attempt in range(20):
        first = catalog(tmp_path / f"a{attempt}", stems, shade=1) / "images"
        second = catalog(tmp_path / f"b{attempt}", stems, shade=2) / "images"
        done = race(store.reset(), first, second)
        if any(process.returncode for process in done):
            break
    else:
        pytest.skip("no race in 20 attempts on this machine")
    for images in (first, second):
        assert all(shows_own_picture(store, images, f"{stem}.jpeg") for stem in stems)
    lost = [process for process in done if process.returncode]
    for process in lost:
        assert process.returncode == 1
        lines = process.stderr_text.splitlines()
        assert lines and all("the same moment; the store kept this one also as" in x for x in lines)
    copies = sum(len(p.stderr_text.splitlines()) for p in lost)
    assert len(stored(store)) == 2 * len(stems) + copies  # each copy said, none hidden


def uploaded_by(images: Path) -> list[str]:
    """The names this delivery's journal says its run got into the store by sending."""
    lines = (images.parent / "uploaded.jsonl").read_text().splitlines()
    return [entry["name"] for entry in map(json.loads, lines) if entry["state"] == "uploaded"]


def test_one_delivery_uploaded_from_two_copies_at_once_is_sent_once(store, tmp_path, catalog):
    """Two copies of one delivery's folder, uploaded at the same moment on this
    machine: every picture is sent by one run only (a lock per store and picture
    makes the other wait, then find it there), so the store keeps no copy
    (`001_XXXXXXX.jpeg`, bytes identical to 001.jpeg, that neither run could see).
    Without the lock 2 of 4 rounds of 8 pictures left copies, both runs exiting 0."""
    stems = [f"{n:03d}" for n in range(1, 17)]
    names = [f"{stem}.jpeg" for stem in stems]
    for attempt in range(4):
        first = catalog(tmp_path / f"a{attempt}", stems, shade=attempt) / "images"
        shutil.copytree(first.parent, tmp_path / f"b{attempt}")
        second = tmp_path / f"b{attempt}" / "images"
        done = race(store.reset(), first, second)
        assert [(p.returncode, p.stderr_text) for p in done] == [(0, ""), (0, "")]
        assert sorted(store.catalog.uploads()) == names  # one upload each, no copy
        assert sorted(uploaded_by(first) + uploaded_by(second)) == names
        assert stored(store) == {name: (first / name).read_bytes() for name in names}


def test_a_lock_folder_another_user_could_touch_stops_before_anything_is_sent(
    store, tmp_path, catalog, logged_errors, monkeypatch
):
    images = catalog(tmp_path / "supplier-data", ["001"]) / "images"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    (tmp_path / "fruit-catalog").symlink_to(tmp_path)
    assert upload(store, images) == 2
    assert logged_errors() == [
        f"{tmp_path / 'fruit-catalog'}: a link, where runs on this machine lock each picture"
        " they send; nothing sent: remove it, or set XDG_RUNTIME_DIR to a folder of yours"
    ]
    assert store.post_count == 0


def test_a_picture_another_run_keeps_sending_past_the_wait_fails_by_name(store, tmp_path, catalog):
    """The other run holds the picture's lock (here a process that only holds it):
    the wait is bounded, then the picture fails naming the lock, and nothing is sent."""
    images = catalog(tmp_path / "supplier-data", ["001"]) / "images"
    args = uploader.parse_args(["--url", store.url, "--images", str(images)])
    args.locks = uploader.private_folder()
    journal = uploader.open_journal(args.journal)
    sender = uploader.Uploader(uploader.Store(store.url, "", 5, 0, 1), journal, args, [])
    sender.lock_wait = 0.3
    image = uploader.Image(images / "001.jpeg", (images / "001.jpeg").read_bytes())
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_PICTURE, store.url, str(images / "001.jpeg")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(uploader.__file__).parent,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        sender.upload(image)
    finally:
        holder.kill()
        holder.wait()
        os.close(journal)
    assert (image.outcome, image.problem) == ("failed", "sent_by_another_run")
    lock = f"{uploader.private_folder()}/upload-[0-9]{{3}}.lock"
    said = r"\(taken to send a picture\) for over 0\.3 s; run again once it is done"
    assert re.fullmatch(f"not sent: another run on this machine holds {lock} {said}", image.reason)
    assert store.post_count == 0


HOLD_PICTURE = """import sys, time
from pathlib import Path
import supplier_image_upload as uploader
image = uploader.Image(Path(sys.argv[2]), Path(sys.argv[2]).read_bytes())
store = uploader.Store(sys.argv[1], "", 5, 0, 1)
args = uploader.parse_args(["--url", sys.argv[1], "--images", str(image.path.parent)])
args.locks, args.wait = uploader.private_folder(), 0
with uploader.Uploader(store, -1, args, []).alone(image, "held"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_only_catalog_images_are_uploaded_never_originals_or_hidden_files(store, tmp_path, catalog):
    images = catalog(tmp_path / "supplier-data", ["001"]) / "images"
    jpeg = (images / "001.jpeg").read_bytes()
    for name in ("014.jpg", "015.JPG", "photo", "._001.jpeg", ".001.jpeg.x1y2.tmp"):
        (images / name).write_bytes(jpeg[:-2] + name.encode())
    Image.new("RGB", (60, 40)).save(images / "016.tiff")
    (images / "LICENSE").write_text("licence")
    assert upload(store, images) == 0
    assert list(stored(store)) == ["001.jpeg"]


def test_a_jpeg_name_without_jpeg_content_fails_by_name(store, tmp_path, catalog, logged_errors):
    images = catalog(tmp_path / "supplier-data", ["001"]) / "images"
    (images / "002.jpeg").write_text("not a jpeg")
    assert upload(store, images) == 1
    assert logged_errors() == [f"002.jpeg: {images / '002.jpeg'}: not a JPEG; not uploaded"]
    assert list(stored(store)) == ["001.jpeg"]


def test_rerun_uploads_nothing_again(store, tmp_path, catalog, caplog):
    images = catalog(tmp_path / "supplier-data", ["001", "002", "003"]) / "images"
    assert upload(store, images) == 0
    posts = store.post_count
    assert upload(store, images) == 0
    assert store.post_count == posts
    assert caplog.records[-1].getMessage() == "uploaded 0, already in store 3, failed 0"


@pytest.mark.parametrize("content_names", [False, True], ids=["lab-names", "content-names"])
def test_images_someone_else_uploaded_are_found_in_the_store(
    store, tmp_path, catalog, content_names
):
    images = catalog(tmp_path / "supplier-data", ["001", "002"]) / "images"
    names = ("001.jpeg", "002.jpeg")
    for name, kept_as in zip(names, kept(images, *names) if content_names else names, strict=True):
        files = {"file": (kept_as, (images / name).read_bytes(), "image/jpeg")}
        requests.post(store.url + "upload/", files=files, timeout=30)
    assert upload(store, images, *(["--content-names"] if content_names else [])) == 0
    assert len(stored(store)) == 2 and store.post_count == 2


def test_a_wiped_store_gets_its_images_again_whatever_the_journal_says(store, tmp_path, catalog):
    images = catalog(tmp_path / "supplier-data", ["001", "002"]) / "images"
    upload(store, images)
    for path in store.catalog.images.iterdir():
        path.unlink()
    assert upload(store, images) == 0
    assert list(stored(store)) == ["001.jpeg", "002.jpeg"]


def test_two_deliveries_numbered_alike_keep_their_pictures_apart(store, tmp_path, catalog):
    first = catalog(tmp_path / "first", ["001"], shade=1) / "images"
    second = catalog(tmp_path / "second", ["001"], shade=2) / "images"
    assert upload(store, first) == 0
    assert upload(store, second) == 0
    assert stored(store) == {
        "001.jpeg": (first / "001.jpeg").read_bytes(),
        kept(second, "001.jpeg")[0]: (second / "001.jpeg").read_bytes(),
    }
    assert upload(store, second) == 0 and upload(store, first) == 0
    assert len(stored(store)) == 2


def test_journal_records_sending_then_uploaded_for_the_canonical_store(store, tmp_path, catalog):
    images = catalog(tmp_path / "supplier-data", ["001"]) / "images"
    host, port = store.server_address
    assert uploader.main(["--url", f"HTTP://{host}:{port}", "--images", str(images)]) == 0
    lines = [json.loads(line) for line in (images.parent / "uploaded.jsonl").open()]
    assert [(e["file"], e["name"], e["state"]) for e in lines] == [
        ("001.jpeg", "001.jpeg", "sending"),
        ("001.jpeg", "001.jpeg", "uploaded"),
    ]
    assert {e["store"] for e in lines} == {store.url}


def test_an_unwritable_journal_stops_before_any_upload(store, tmp_path, catalog, logged_errors):
    images = catalog(tmp_path / "supplier-data", ["001"]) / "images"
    journal = tmp_path / "no-such-folder" / "uploaded.jsonl"
    assert upload(store, images, "--journal", str(journal)) == 2
    assert store.post_count == 0
    assert logged_errors()[0].startswith(f"cannot write the journal {journal}")


def test_no_catalog_jpegs_is_exit_2_naming_the_folder(store, tmp_path, logged_errors):
    images = tmp_path / "supplier-data" / "images"
    images.mkdir(parents=True)
    Image.new("RGB", (60, 40)).save(images / "001.tiff")
    assert upload(store, images) == 2
    assert logged_errors() == [
        f"{images}: no catalog JPEGs (<name>.jpeg, as changeImage.py writes them);"
        " run changeImage.py first"
    ]
    assert not (images.parent / "uploaded.jsonl").exists()


def test_dry_run_lists_store_names_and_sends_nothing(store, tmp_path, catalog, capsys):
    images = catalog(tmp_path / "supplier-data", ["fresh kiwi"]) / "images"
    assert upload(store, images, "--dry-run") == 0
    assert upload(store, images, "--dry-run", "--content-names") == 0
    tag = hashlib.sha256((images / "fresh kiwi.jpeg").read_bytes()).hexdigest()[:12]
    assert capsys.readouterr().out == (
        f"POST {store.url}upload/ file=fresh_kiwi.jpeg\n"
        f"POST {store.url}upload/ file=fresh_kiwi-{tag}.jpeg\n"
    )
    assert store.post_count == 0


def test_a_link_out_of_the_delivery_is_never_uploaded(store, tmp_path, catalog, logged_errors):
    images = catalog(tmp_path / "supplier-data", ["001"]) / "images"
    private = tmp_path / "private.jpeg"
    private.write_bytes((images / "001.jpeg").read_bytes() + b"private")
    (images / "002.jpeg").symlink_to(private)
    assert upload(store, images) == 1
    assert list(stored(store)) == ["001.jpeg"]
    assert logged_errors() == [f"002.jpeg: {images / '002.jpeg'}: links outside {images}; not read"]


def test_a_fifo_is_refused_without_hanging(store, tmp_path, catalog, logged_errors):
    images = catalog(tmp_path / "supplier-data", ["001"]) / "images"
    os.mkfifo(images / "002.jpeg")
    assert upload(store, images) == 1
    assert re.search(r"002\.jpeg: .*a FIFO, not a regular file; not read", logged_errors()[0])


def test_two_files_the_store_would_name_alike_never_race(store, tmp_path, catalog, catalog_check):
    data = catalog(tmp_path / "supplier-data", ["a b", "a_b", "a'b"])
    assert upload(store, data / "images", "--jobs", "8") == 0
    assert len(stored(store)) == 3
    assert not any(re.search(r"_[A-Za-z0-9]{7}\.jpeg$", name) for name in stored(store))
    args = ["--url", store.url, "--descriptions", str(data / "descriptions")]
    assert run.main([*args, "--images", str(data / "images")]) == 0
    catalog_check(store, data)


def test_uploads_in_flight_when_a_run_stopped_are_said_and_the_store_decides(
    store, tmp_path, catalog, caplog
):
    images = catalog(tmp_path / "supplier-data", ["001"]) / "images"
    lines = [
        {"file": "001.jpeg", "state": "sending", "store": store.url},
        {"file": ["not", "a", "name"], "state": "sending", "store": store.url},
    ]
    journal = images.parent / "uploaded.jsonl"
    journal.write_bytes(b"".join(json.dumps(line).encode() + b"\n" for line in lines) + b"\xff\n")
    assert upload(store, images) == 0
    messages = [r.getMessage() for r in caplog.records]
    assert "1 uploads were in flight when a run stopped; the store says which landed" in messages
    assert f"{journal} line 3: not UTF-8; ignored" in messages
    assert list(stored(store)) == ["001.jpeg"]


# -- only whole catalog JPEGs of the expected size leave the machine ---------------------


def cut_to_3000(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:3000])


def suppliers_640x480(path: Path) -> None:
    Image.new("RGB", (640, 480), "red").save(path)


def marked_600x400_but_640x480(path: Path) -> None:
    mark = MARK.format(digest="0" * 64, options="1" * 16, size="600x400")
    Image.new("RGB", (640, 480), "red").save(path, comment=mark)


def cut_beside_its_tiff(path: Path) -> None:
    cut_to_3000(path)
    Image.new("RGB", (60, 40)).save(path.with_suffix(".tiff"))


def junk_after_its_end(path: Path) -> None:
    path.write_bytes(path.read_bytes() + bytes(range(256)) * 400)


def marked_300x200(path: Path) -> None:
    mark = MARK.format(digest="0" * 64, options="1" * 16, size="300x200")
    Image.new("RGB", (300, 200), "red").save(path, comment=mark)


def marked_with_junk_after_its_end(path: Path) -> None:
    mark = MARK.format(digest="0" * 64, options="1" * 16, size="600x400")
    Image.new("RGB", (600, 400), "red").save(path, comment=mark)
    junk_after_its_end(path)


def suppliers_tiff(path: Path) -> None:
    Image.new("RGB", (640, 480), "red").save(path, "TIFF")


def suppliers_png(path: Path) -> None:
    Image.new("RGB", (640, 480), "red").save(path, "PNG")


def unmarked_with_junk_after_its_end(path: Path) -> None:
    Image.new("RGB", (600, 400), "red").save(path)
    junk_after_its_end(path)


NO_SOURCE = "no source beside it to convert again: ask the supplier for the photo"


def photo_to_rename(renamed: str) -> str:
    """The catalog jpeg block's line, in every script, for the supplier's own photo."""
    return (
        "007.jpeg is a photo under the catalog's name, not made by changeImage.py:"
        f" rename it {renamed} and run ./changeImage.py to convert it"
    )


NOT_CATALOG_JPEGS = [  # id, change to 007.jpeg, the error line ("": uploaded)
    (
        "truncated",
        cut_to_3000,
        "007.jpeg: not a whole JPEG: cut short (no end marker after 3000 bytes); not uploaded: "
        + NO_SOURCE,
    ),
    (
        "truncated-beside-its-tiff",
        cut_beside_its_tiff,
        "007.jpeg: not a whole JPEG: cut short (no end marker after 3000 bytes); not uploaded:"
        " remove it and run ./changeImage.py to convert 007.tiff again",
    ),
    (
        "100-KB-after-its-end-marker",
        marked_with_junk_after_its_end,
        "007.jpeg: 102400 bytes after the JPEG's end marker (not changeImage.py's); not uploaded: "
        + NO_SOURCE,
    ),
    ("suppliers-640x480-jpeg", suppliers_640x480, photo_to_rename("007.jpg")),
    ("suppliers-tiff-data", suppliers_tiff, photo_to_rename("007.tiff")),
    ("suppliers-png-data", suppliers_png, photo_to_rename("007.png")),
    ("suppliers-jpeg-with-junk", unmarked_with_junk_after_its_end, photo_to_rename("007.jpg")),
    (
        "mark-disagrees",
        marked_600x400_but_640x480,
        "007.jpeg: 640x480 pixels where its changeImage.py mark says 600x400; not uploaded: "
        + NO_SOURCE,
    ),
    ("marked-300x200", marked_300x200, ""),
]


@pytest.mark.parametrize(
    "change, error", [pytest.param(*case[1:], id=case[0]) for case in NOT_CATALOG_JPEGS]
)
def test_only_whole_catalog_jpegs_are_uploaded(
    store, tmp_path, catalog, logged_errors, change, error
):
    images = catalog(tmp_path / "supplier-data", [f"{n:03d}" for n in range(1, 13)]) / "images"
    change(images / "007.jpeg")
    assert upload(store, images) == (1 if error else 0)
    assert logged_errors() == ([error] if error else [])
    names = [f"{n:03d}.jpeg" for n in range(1, 13) if n != 7 or not error]
    assert list(stored(store)) == names


def test_an_earlier_attempts_jpeg_beside_its_source_gets_the_one_message(
    store, tmp_path, catalog, logged_errors, monkeypatch
):
    """A 600x400 JPEG without changeImage.py's mark, beside the TIFF it shares its
    stem with, is an earlier attempt's (changeImage.py refused to replace it): it
    stays on the machine with the one message all scripts give, naming the one
    command that resolves it (never "convert it again", which would loop); the
    others go."""
    delivery = catalog(tmp_path, ["001", "002"])
    monkeypatch.setenv("SUPPLIER_DATA", str(delivery))  # the lab's layout: the short command
    Image.new("RGB", (60, 40), "red").save(delivery / "images" / "001.tiff")
    assert upload(store, delivery / "images") == 1
    assert logged_errors() == [
        "001.jpeg was not made by changeImage.py from 001.tiff (an earlier attempt's?):"
        " run ./changeImage.py --replace-unmarked to convert over it"
    ]
    assert list(stored(store)) == ["002.jpeg"]
    folders = [
        "--descriptions",
        str(delivery / "descriptions"),
        "--images",
        str(delivery / "images"),
    ]
    assert run.main(["--url", store.url, *folders]) == 1
    assert [f["name"] for f in store.catalog.fruits()] == ["Fruit 2 of delivery 0"]


# -- what the uploader says is what the store serves ----------------------------


def test_a_store_that_renames_uploads_is_said_by_name_and_gets_each_picture_once(
    store_factory, tmp_path, catalog, logged_errors, caplog
):
    """The store answers 201 but keeps the upload under a name of its own: no product
    could show it. Said by name and cause with the way out, exit 1; nothing more is
    sent to that store, in this run or the next, until --resend."""
    store = store_factory(rename_every=1)
    images = catalog(tmp_path / "supplier-data", ["001", "002", "003"]) / "images"
    assert upload(store, images, "--jobs", "1") == 1
    way_out = "once it keeps the names it is sent, run supplier_image_upload.py --resend"
    first, *others = logged_errors()
    assert first == (
        "001.jpeg: sent, and the store answered 201, but it serves nothing as 001.jpeg: it"
        " keeps uploads under names of its own, which no product can show; nothing more is"
        f" sent to it: {way_out}"
    )
    assert [line.split(":")[0] for line in others] == ["002.jpeg", "003.jpeg"]
    assert all(re.search(f"not sent: the store keeps uploads .*; {way_out}$", x) for x in others)
    assert caplog.records[-1].getMessage() == "uploaded 0, already in store 0, failed 3"
    assert store.post_count == 1 and len(stored(store)) == 1
    caplog.clear()
    assert upload(store, images) == 1  # the next run: no extra copy
    assert store.post_count == 1 and len(logged_errors()) == 3
    assert upload(store, images, "--resend", "--jobs", "1") == 1  # asked for: sent again
    assert store.post_count == 2


@pytest.mark.parametrize(
    "states, sent",
    [(["renamed"], False), (["renamed", "uploaded"], True), (["uploaded", "renamed"], False)],
    ids=["renamed", "fixed-since", "renamed-since"],
)
def test_a_store_an_earlier_run_found_renaming_gets_nothing_until_it_keeps_a_name(
    store, tmp_path, catalog, states, sent
):
    images = catalog(tmp_path / "supplier-data", ["001"]) / "images"
    lines = [{"file": "x.jpeg", "state": s, "store": store.url, "time": "then"} for s in states]
    (images.parent / "uploaded.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert upload(store, images) == (0 if sent else 1)
    assert store.post_count == (1 if sent else 0)
