"""run.py puts every description into the stand-in store once, with its picture,
and records what happened. (What it shares with the uploader: test_pipeline.py.)"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import resource
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import urllib3

import run
import supplier_image_upload

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def quiet_environment(monkeypatch, caplog):
    for name in ("CATALOG_TOKEN", "CATALOG_URL", "IMPORT_RECORD", "SUPPLIER_DATA"):
        monkeypatch.delenv(name, raising=False)
    caplog.set_level(logging.INFO)


def write(folder: Path, name: str, content: str | bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def uploaded(store, data: Path) -> Path:
    """The delivery's pictures put in the store first, as the pipeline does."""
    images = ["--url", store.url, "--images", str(data / "images"), "-q"]
    assert supplier_image_upload.main(images) == 0
    return data


def import_(store, data: Path, *extra: str) -> int:
    args = ["--url", store.url, "--descriptions", str(data / "descriptions")]
    args += ["--images", str(data / "images"), "--grace", "1", *extra]
    return run.main(args)


def record(data: Path) -> dict:
    return json.loads((data / "imported.json").read_text(encoding="utf-8"))


def journal(data: Path) -> list[dict]:
    return [json.loads(line) for line in (data / "imported.jsonl").open(encoding="utf-8")]


def by_file(data: Path) -> dict[str, dict]:
    return {p["file"]: p for p in record(data)["products"]}


@pytest.fixture
def ready(store, tmp_path, catalog) -> Path:
    """A converted delivery of three products whose pictures are in the store."""
    return uploaded(store, catalog(tmp_path / "supplier-data", ["001", "002", "003"]))


# -- the happy path and the record -------------------------------------------------


def test_every_description_becomes_a_product_with_its_picture(store, ready, catalog_check):
    assert import_(store, ready) == 0
    catalog_check(store, ready)
    first = (ready / "descriptions" / "001.txt").read_text().splitlines()
    [fruit] = [f for f in store.catalog.fruits() if f["name"] == first[0]]
    assert (fruit["name"], fruit["weight"], fruit["description"]) == (
        first[0],
        int(first[1].split()[0]),
        first[2],
    )


def test_the_record_has_every_field_and_a_problem_code(store, ready):
    write(ready / "descriptions", "004.txt", "Durian\nheavy\nSmelly.")
    assert import_(store, ready) == 1
    document = record(ready)
    assert document["version"] == run.RECORD_VERSION and document["store"] == store.url
    assert document["delivery"] == "supplier-data" and document["complete"] is True
    assert document["summary"] == "imported 3, already in store 0, failed 1"
    first, failed = by_file(ready)["001.txt"], by_file(ready)["004.txt"]
    assert set(first) == set(run.RECORD_FIELDS)
    assert first["image_path"] == str(ready / "images" / "001.jpeg")
    assert (first["outcome"], first["problem"], first["details"]) == ("imported", "", {})
    assert (first["reason"], first["store_values"]) == ("", {})
    assert (failed["name"], failed["outcome"], failed["id"]) == ("Durian", "failed", None)
    assert (failed["problem"], failed["details"]) == ("bad_weight", {"line": 2, "value": "heavy"})
    assert failed["reason"].startswith("004.txt line 2: weight 'heavy'")
    assert [p.name for p in ready.iterdir() if p.name.startswith(".")] == [".fruit-catalog.lock"]


def test_the_summary_says_what_this_run_did(store, ready, caplog):
    assert import_(store, ready) == 0
    assert caplog.records[-1].getMessage() == "imported 3, already in store 0, failed 0"
    assert {p["this_run"] for p in record(ready)["products"]} == {True}
    write(ready / "descriptions", "004.txt", "Durian\n5 lbs\nSmelly.")
    (ready / "images" / "004.jpeg").write_bytes((ready / "images" / "001.jpeg").read_bytes())
    assert import_(store, uploaded(store, ready)) == 0
    summary = "imported 1, already imported 3 (earlier runs), already in store 0, failed 0"
    assert caplog.records[-1].getMessage() == summary
    assert record(ready)["summary"] == summary
    outcomes = {p["file"]: (p["outcome"], p["this_run"]) for p in record(ready)["products"]}
    assert outcomes == {
        "001.txt": ("imported", False),
        "002.txt": ("imported", False),
        "003.txt": ("imported", False),
        "004.txt": ("imported", True),
    }
    assert import_(store, ready) == 0
    summary = "imported 0, already imported 4 (earlier runs), already in store 0, failed 0"
    assert caplog.records[-1].getMessage() == summary


def test_the_journal_says_sending_before_each_post_and_each_outcome(store, ready):
    assert import_(store, ready) == 0
    lines = journal(ready)
    assert lines[0]["event"] == "run" and lines[0]["store"] == store.url
    assert lines[-1] == {**lines[-1], "event": "finished", "summary": lines[-1]["summary"]}
    for file in ("001.txt", "002.txt", "003.txt"):
        mine = [line["outcome"] for line in lines[1:-1] if line["file"] == file]
        assert mine == ["sending", "imported"]


def test_a_failed_product_is_named_by_its_name(store, ready, logged_errors):
    write(ready / "descriptions", "016.txt", "Durian\n")
    assert import_(store, ready) == 1
    assert logged_errors() == ["Durian (016.txt): no weight line after the name"]
    assert by_file(ready)["016.txt"]["name"] == "Durian"


def test_a_rerun_posts_nothing_and_still_says_imported(store, ready):
    assert import_(store, ready) == 0
    posts = store.post_count
    assert import_(store, ready) == 0
    assert store.post_count == posts
    assert {p["outcome"] for p in record(ready)["products"]} == {"imported"}


def test_a_version_1_record_still_says_whose_products_they_are(store, ready):
    assert import_(store, ready) == 0
    (ready / "imported.jsonl").unlink()
    document = record(ready)
    document["version"] = 1
    (ready / "imported.json").write_text(json.dumps(document))
    assert import_(store, ready) == 0
    assert {p["outcome"] for p in record(ready)["products"]} == {"imported"}


# -- no product without its picture --------------------------------------------------


def test_a_picture_missing_from_the_store_fails_that_product_only(
    store, tmp_path, catalog, logged_errors
):
    data = uploaded(store, catalog(tmp_path / "supplier-data", ["001"]))
    catalog(data, ["001", "002"])  # 002 converted after the upload ran
    assert import_(store, data) == 1
    assert [f["name"] for f in store.catalog.fruits()] == ["Fruit 1 of delivery 0"]
    name = run.catalog_name("002.jpeg", (data / "images" / "002.jpeg").read_bytes())
    assert logged_errors() == [
        "Fruit 2 of delivery 0 (002.txt): image not in the store: run supplier_image_upload.py"
        f" (002.jpeg, looked for as 002.jpeg and {name})"
    ]
    failed = by_file(data)["002.txt"]
    assert (failed["problem"], failed["details"]) == ("photo_not_in_store", {"image": "002.jpeg"})


def test_a_picture_an_earlier_version_uploaded_under_the_lab_name_is_used(store, tmp_path, catalog):
    data = catalog(tmp_path / "supplier-data", ["001"])
    jpeg = (data / "images" / "001.jpeg").read_bytes()
    requests.post(store.url + "upload/", files={"file": ("001.jpeg", jpeg)}, timeout=30)
    assert import_(store, data) == 0
    assert [f["image_name"] for f in store.catalog.fruits()] == ["001.jpeg"]


def test_a_product_without_a_catalog_jpeg_says_to_convert(store, ready, logged_errors):
    write(ready / "descriptions", "004.txt", "Durian\n5 lbs\nSmelly.")
    assert import_(store, ready) == 1
    assert logged_errors() == [
        f"Durian (004.txt): no catalog image 004.jpeg in {ready / 'images'}: run changeImage.py"
    ]


# A product whose JPEG is not there, and what is beside its place: (id, the files
# beside 004.jpeg's place, the record's problem and details, the error's end).
BESIDE_A_MISSING_JPEG = [
    ("nothing", {}, "no_photo", {"image": "004.jpeg"}, "no catalog image 004.jpeg in {images}"),
    (
        "a-tiff-not-converted-yet",
        {"004.tiff": b"II*\x00" + bytes(12)},
        "photo_to_convert",
        {"image": "004.tiff"},
        "its photo 004.tiff is not converted yet (no 004.jpeg)",
    ),
    (
        "a-jpeg-photo-not-converted-yet",
        {"004.jpg": b"\xff\xd8\xff\xe0" + bytes(12)},
        "photo_to_convert",
        {"image": "004.jpg"},
        "its photo 004.jpg is not converted yet (no 004.jpeg)",
    ),
    (
        "notes-that-are-no-photo",
        {"004.md": b"# notes on the durian"},
        "no_photo",
        {"image": "004.jpeg"},
        "no catalog image 004.jpeg in {images}",
    ),
]


@pytest.mark.parametrize(
    ("beside", "problem", "details", "said"),
    [row[1:] for row in BESIDE_A_MISSING_JPEG],
    ids=[row[0] for row in BESIDE_A_MISSING_JPEG],
)
def test_a_product_without_its_jpeg_is_ours_while_its_photo_waits_to_be_converted(
    store, ready, logged_errors, beside, problem, details, said
):
    """Steps run out of order (run.py before changeImage.py) must not tell the
    supplier to send a photo they sent: the record's code is then one of ours."""
    write(ready / "descriptions", "004.txt", "Durian\n5 lbs\nSmelly.")
    for name, content in beside.items():
        write(ready / "images", name, content)
    assert import_(store, ready) == 1
    expected = said.format(images=ready / "images") + ": run changeImage.py"
    assert logged_errors() == [f"Durian (004.txt): {expected}"]
    failed = by_file(ready)["004.txt"]
    assert (failed["problem"], failed["details"]) == (problem, details)


def test_a_fifo_named_like_the_photo_is_not_read_and_is_no_photo(store, ready, logged_errors):
    """The delivery is untrusted: what is beside a missing JPEG is opened as a delivery
    file (a FIFO would hang a plain open), and a refused one is no photo."""
    write(ready / "descriptions", "004.txt", "Durian\n5 lbs\nSmelly.")
    os.mkfifo(ready / "images" / "004.tiff")
    assert import_(store, ready) == 1
    assert by_file(ready)["004.txt"]["problem"] == "no_photo"


# -- identity: the name ----------------------------------------------------------------


def test_a_product_of_ours_changed_since_is_no_longer_imported(store, ready, caplog):
    """The store keeps the earlier values: the record, the summary and the status
    must not say the store holds the file's new ones."""
    assert import_(store, ready) == 0
    description = ready / "descriptions" / "002.txt"
    lines = description.read_text().splitlines()
    stored = int(lines[1].split()[0])
    description.write_text("\n".join([lines[0], "999 lbs", *lines[2:]]))
    caplog.clear()
    assert import_(store, ready) == 1
    entry = by_file(ready)["002.txt"]
    assert (entry["outcome"], entry["weight"]) == ("already in store", 999)
    assert entry["store_values"] == {"weight": stored}
    assert record(ready)["summary"] == (
        "imported 0, already imported 2 (earlier runs), already in store 1"
        " (1 differing from the store), failed 0"
    )
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.getMessage().startswith(f"{lines[0]} (002.txt): the store's copy differs")
    assert f"weight: the store has {stored} lbs, the file 999 lbs" in warning.getMessage()
    assert len(store.catalog.fruits()) == 3


def test_a_name_the_store_has_with_other_values_records_both(store, ready, catalog_check):
    requests.post(
        store.url + "fruits/",
        json={
            "name": "Fruit 1 of delivery 0",
            "weight": 7,
            "description": "Old.",
            "image_name": "",
        },
        timeout=30,
    )
    assert import_(store, ready) == 1  # the file's values are not in the store
    entry = by_file(ready)["001.txt"]
    assert entry["outcome"] == "already in store"
    assert entry["store_values"] == {"weight": 7, "description": "Old.", "image_name": ""}
    assert entry["weight"] == 101
    assert "the store cannot change a product; run.py --force" in entry["reason"]
    assert len(store.catalog.fruits()) == 3
    assert import_(store, ready, "--force") == 0
    assert by_file(ready)["001.txt"]["outcome"] == "imported"
    assert by_file(ready)["001.txt"]["reason"] == ""  # the older product is no copy of ours
    assert import_(store, ready) == 0  # --force posted it once; the delivery now owns it
    assert len(store.catalog.fruits()) == 4
    assert by_file(ready)["001.txt"]["outcome"] == "imported"


def test_two_files_of_one_name_post_it_once(store, ready, logged_errors):
    write(ready / "descriptions", "002.txt", "Fruit 1 of delivery 0\n5 lbs\nAgain.")
    assert import_(store, ready) == 1
    assert len(store.catalog.fruits()) == 2
    assert logged_errors() == [
        "Fruit 1 of delivery 0 (002.txt): the same product name as 001.txt;"
        " the store tells products apart by name: rename one"
    ]


def test_the_store_trims_names_so_identity_is_the_trimmed_name(store, ready):
    write(ready / "descriptions", "001.txt", "  Fruit 1 of delivery 0 \t\n101 lbs\nFrom 001.\n")
    assert import_(store, ready) == 0
    assert import_(store, ready) == 0
    assert len(store.catalog.fruits()) == 3


# -- messy descriptions ---------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, name, weight, description",
    [
        (b"\xef\xbb\xbfApple\n500 lbs\nRed.", "Apple", 500, "Red."),
        (b"Apple\r\n500 lbs\r\nRed.\r\n", "Apple", 500, "Red."),
        ("Apple \u00a0\n500 lbs  \nRed.\u00a0 \n".encode(), "Apple", 500, "Red."),
        (b"\n\nApple\n500 lbs\n\nRed.\n\n\n", "Apple", 500, "Red."),
        (b"Apple\n500 lbs\nLine one.\nLine two.\n", "Apple", 500, "Line one.\nLine two."),
        ("Crème brûlée\n5 lbs\nSüß.".encode(), "Crème brûlée", 5, "Süß."),
    ],
)
def test_messy_descriptions_are_read_right(store, ready, raw, name, weight, description):
    for stem in ("002", "003"):
        (ready / "descriptions" / f"{stem}.txt").unlink()
    write(ready / "descriptions", "001.txt", raw)
    assert import_(store, ready) == 0
    [fruit] = store.catalog.fruits()
    assert (fruit["name"], fruit["weight"], fruit["description"]) == (name, weight, description)


def test_cp1252_file_is_read_with_a_warning(store, ready, caplog):
    write(ready / "descriptions", "001.txt", "Crème\n5 lbs\nCafé".encode("cp1252"))
    assert import_(store, ready) == 0
    assert "Crème" in [f["name"] for f in store.catalog.fruits()]
    assert any("001.txt: not UTF-8" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("weight", ["500 lbs", "500lbs", "500 LBS", "500", "500 lb"])
def test_weight_forms_give_the_integer(weight):
    assert run.parse_weight(weight) == 500


@pytest.mark.parametrize(
    "content, line, value",
    [
        ("Apple\n1.5 lbs\nText", 2, "'1.5 lbs'"),
        ("Apple\nheavy\nText", 2, "'heavy'"),
        ("Apple\n500 kg\nText", 2, "'500 kg'"),
        ("\nApple\n\n-5 lbs\nText", 4, "'-5 lbs'"),
    ],
)
def test_bad_weight_fails_that_file_only(store, ready, content, line, value, logged_errors):
    write(ready / "descriptions", "004.txt", content)
    assert import_(store, ready) == 1
    assert len(store.catalog.fruits()) == 3
    assert logged_errors() == [
        f"Apple (004.txt): line {line}: weight {value} is not whole pounds (like '500 lbs')"
    ]


def test_a_name_and_a_weight_with_no_description_is_a_product(store, tmp_path, catalog):
    """The store refuses a blank description but takes one left out (it keeps "")."""
    data = uploaded(store, catalog(tmp_path / "supplier-data", ["001"]))
    write(data / "descriptions", "001.txt", "Apple\n500 lbs\n\n  \n")
    assert import_(store, data) == 0
    [fruit] = store.catalog.fruits()
    assert (fruit["name"], fruit["weight"], fruit["description"]) == ("Apple", 500, "")
    assert import_(store, data) == 0
    [product] = record(data)["products"]
    assert (product["outcome"], product["store_values"]) == ("imported", {})
    assert len(store.catalog.fruits()) == 1


def test_an_empty_file_is_an_error_without_a_name(store, ready, logged_errors):
    write(ready / "descriptions", "004.txt", "")
    assert import_(store, ready) == 1
    assert logged_errors() == ["004.txt: empty file, expected name, weight, description"]


def test_a_weight_the_store_cannot_keep_is_refused_before_posting(store, ready, logged_errors):
    write(ready / "descriptions", "003.txt", "Giant\n99999999999 lbs\nBig.")
    assert import_(store, ready) == 1
    assert logged_errors() == [
        "Giant (003.txt): line 2: weight '99999999999 lbs' is not whole pounds (like '500 lbs'),"
        " at most 2147483647"
    ]
    assert len(store.catalog.fruits()) == 2  # 001 and 002; nothing posted for 003


def test_check_reports_every_problem_without_the_store(tmp_path, caplog, logged_errors, dead_port):
    write(tmp_path / "descriptions", "001.txt", "Apple\n500 lbs\nOk")
    write(tmp_path / "descriptions", "002.txt", "Pear\n1.5 lbs\nNo")
    write(tmp_path / "descriptions", "003.txt", "x" * 101 + "\n5\nNo")
    write(tmp_path / "images", "001.jpeg", b"a catalog image")
    url = f"http://127.0.0.1:{dead_port}/"
    folders = [
        "--descriptions",
        str(tmp_path / "descriptions"),
        "--images",
        str(tmp_path / "images"),
    ]
    result = run.main(["--url", url, *folders, "--check"])
    assert result == 1
    assert len(logged_errors()) == 2
    assert "name is 101 characters; the store accepts at most 100" in logged_errors()[1]
    assert caplog.records[-1].getMessage() == "checked 3 descriptions: 2 with problems"
    assert not (tmp_path / "imported.json").exists()


def posted_names(output: str) -> list[str]:
    """The image_name of each POST line --dry-run printed."""
    return [json.loads(line.split(" ", 2)[2])["image_name"] for line in output.splitlines()]


def test_dry_run_prints_the_lab_names_before_and_after_conversion(store, tmp_path, catalog, capsys):
    data = tmp_path / "supplier-data"
    write(data / "descriptions", "002.txt", "Fruit 1 of delivery 0\n101 lbs\nFrom 002.")
    write(data / "descriptions", "fresh kiwi.txt", "Fruit 2 of delivery 0\n102 lbs\nFrom.")
    (data / "images").mkdir()
    assert import_(store, data, "--dry-run") == 0
    before = capsys.readouterr().out
    assert before.splitlines()[0].startswith(f"POST {store.url}fruits/ {{")
    catalog(data, ["002", "fresh kiwi"])
    assert import_(store, data, "--dry-run") == 0
    assert posted_names(capsys.readouterr().out) == posted_names(before)
    assert posted_names(before) == ["002.jpeg", "fresh_kiwi.jpeg"]
    assert store.post_count == 0


def test_dry_run_with_content_names_prints_them(store, tmp_path, catalog, capsys):
    data = catalog(tmp_path / "supplier-data", ["fresh kiwi", "002"])
    assert import_(store, data, "--dry-run", "--content-names") == 0
    jpeg = (data / "images" / "fresh kiwi.jpeg").read_bytes()
    expected = f"fresh_kiwi-{run.content_tag(jpeg)}.jpeg"
    assert posted_names(capsys.readouterr().out)[1] == expected
    assert store.post_count == 0


def test_check_fails_naming_it_when_there_are_no_catalog_images(tmp_path, logged_errors):
    write(tmp_path / "descriptions", "001.txt", "Apple\n500 lbs\nOk")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "001.tiff").write_bytes(b"II*\0 not converted yet")
    folders = [
        "--descriptions",
        str(tmp_path / "descriptions"),
        "--images",
        str(tmp_path / "images"),
    ]
    assert run.main([*folders, "--check"]) == 1
    assert logged_errors() == [
        f"no catalog images (<stem>.jpeg) in {tmp_path / 'images'}: run changeImage.py first"
    ]


def test_upper_case_txt_is_read_and_macos_files_are_not(store, tmp_path, catalog):
    data = catalog(tmp_path / "supplier-data", ["D25"])
    (data / "descriptions" / "D25.txt").rename(data / "descriptions" / "D25.TXT")
    write(data / "descriptions", "._D25.TXT", b"\x00\x05\x16\x07 Mac OS X resource fork")
    uploaded(store, data)
    assert import_(store, data) == 0
    assert [p["file"] for p in record(data)["products"]] == ["D25.TXT"]


# -- the record survives and is never replaced by nothing ------------------------------


def test_an_unwritable_record_stops_before_any_post(store, ready, tmp_path, logged_errors):
    where = tmp_path / "no-such-folder" / "imported.json"
    posts = store.post_count
    assert import_(store, ready, "--record", str(where)) == 2
    assert store.post_count == posts
    assert logged_errors()[0].startswith("cannot write the record ")


def test_no_descriptions_is_exit_2_and_the_record_stays(store, tmp_path, logged_errors):
    data = tmp_path / "supplier-data"
    (data / "descriptions").mkdir(parents=True)
    write(data, "imported.json", '{"earlier": true}')
    assert import_(store, data) == 2
    assert logged_errors() == [
        f"{data / 'descriptions'}: no descriptions (*.txt); nothing done, no record written"
    ]
    assert (data / "imported.json").read_text() == '{"earlier": true}'
    assert not (data / "imported.jsonl").exists()


def test_bad_journal_lines_are_ignored_with_a_warning(store, ready, caplog):
    assert import_(store, ready) == 0
    run_id = journal(ready)[0]["run"]
    typed = {"event": "product", "run": run_id, "outcome": "imported", "id": "x"}
    with (ready / "imported.jsonl").open("ab") as stream:
        stream.write(json.dumps(typed).encode() + b"\n")
        stream.write(b"\xff\xfe not utf-8\n[1, 2]\n{cut by a ki")
    assert import_(store, ready) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("not UTF-8; ignored" in w for w in warnings)
    assert any("not a JSON object; ignored" in w for w in warnings)
    assert any("not JSON; ignored" in w for w in warnings)
    assert any("a product line with a wrongly typed field; ignored" in w for w in warnings)
    assert {p["outcome"] for p in record(ready)["products"]} == {"imported"}


def test_a_product_whose_picture_is_not_a_whole_jpeg_is_refused(
    store, tmp_path, catalog, logged_errors
):
    data = uploaded(store, catalog(tmp_path / "supplier-data", ["001", "007"]))
    jpeg = data / "images" / "007.jpeg"
    jpeg.write_bytes(jpeg.read_bytes()[:3000])
    assert import_(store, data) == 1
    assert [f["name"] for f in store.catalog.fruits()] == ["Fruit 1 of delivery 0"]
    assert logged_errors() == [
        "Fruit 2 of delivery 0 (007.txt): 007.jpeg: not a whole JPEG: cut short (no end marker"
        " after 3000 bytes); not posted: convert it again and upload it"
    ]


# -- the lab's names and order -----------------------------------------------------------


def upload_as(store, name: str, content: bytes) -> None:
    """A picture put in the store under a name of our choosing, as an uploader does."""
    answer = requests.post(store.url + "upload/", files={"file": (name, content)}, timeout=30)
    assert answer.status_code == 201, answer.text


def jpeg_of(data: Path, stem: str) -> bytes:
    return (data / "images" / f"{stem}.jpeg").read_bytes()


@pytest.mark.parametrize(
    "id_, held, flags, posted",
    [
        ("lab name", {"001.jpeg": "own"}, [], "001.jpeg"),
        ("lab name held with other bytes", {"001.jpeg": "other", "content": "own"}, [], "content"),
        ("content name only", {"content": "own"}, [], "content"),
        ("--content-names", {"001.jpeg": "own", "content": "own"}, ["--content-names"], "content"),
        ("--content-names, lab name only", {"001.jpeg": "own"}, ["--content-names"], None),
        ("lab name held with other bytes only", {"001.jpeg": "other"}, [], None),
    ],
)
def test_the_name_posted_is_one_the_store_serves_the_picture_under(
    store, tmp_path, catalog, id_, held, flags, posted
):
    data = catalog(tmp_path / "supplier-data", ["001", "002"])
    content = run.catalog_name("001.jpeg", jpeg_of(data, "001"))
    for name, whose in held.items():
        upload_as(
            store,
            content if name == "content" else name,
            jpeg_of(data, "002" if whose == "other" else "001"),
        )
    (data / "descriptions" / "002.txt").unlink()
    assert import_(store, data, *flags) == (0 if posted else 1)
    entry = by_file(data)["001.txt"]
    if posted:
        expected = content if posted == "content" else posted
        assert [f["image_name"] for f in store.catalog.fruits()] == [expected]
        assert entry["image_name"] == expected
    else:
        assert store.catalog.fruits() == []
        assert (entry["problem"], entry["details"]) == ("photo_not_in_store", {"image": "001.jpeg"})


def test_catalog_content_names_in_the_environment_is_the_flag(
    store, tmp_path, catalog, monkeypatch
):
    data = catalog(tmp_path / "supplier-data", ["001"])
    upload_as(store, "001.jpeg", jpeg_of(data, "001"))
    monkeypatch.setenv("CATALOG_CONTENT_NAMES", "1")
    assert import_(store, data) == 1
    assert by_file(data)["001.txt"]["problem"] == "photo_not_in_store"
    monkeypatch.setenv("CATALOG_CONTENT_NAMES", "0")
    assert import_(store, data) == 0
    assert by_file(data)["001.txt"]["image_name"] == "001.jpeg"


def test_a_bad_catalog_content_names_is_a_usage_error_naming_it(tmp_path, monkeypatch, capsys):
    write(tmp_path / "descriptions", "001.txt", "Apple\n500 lbs\nOk")
    monkeypatch.setenv("CATALOG_CONTENT_NAMES", "maybe")
    with pytest.raises(SystemExit) as stop:
        run.main(["--descriptions", str(tmp_path / "descriptions"), "--check"])
    assert stop.value.code == 2
    assert (
        "environment variable CATALOG_CONTENT_NAMES: 'maybe' is not 1 or 0"
        in capsys.readouterr().err
    )


def test_products_reach_the_store_in_the_delivery_order_whatever_the_jobs(store, tmp_path, catalog):
    stems = [f"{n:03d}" for n in range(12, 0, -1)]  # written last to first
    data = catalog(tmp_path / "supplier-data", stems)
    for stem in stems:
        upload_as(store, f"{stem}.jpeg", jpeg_of(data, stem))
    assert import_(store, data, "--jobs", "8") == 0
    listed = requests.get(store.url + "fruits/", timeout=30).json()
    assert [f["image_name"] for f in listed] == [f"{n:03d}.jpeg" for n in range(1, 13)]
    assert [f["id"] for f in listed] == sorted(f["id"] for f in listed)


def test_an_earlier_attempts_jpeg_beside_its_tiff_names_the_one_way_out(
    store, tmp_path, catalog, logged_errors, monkeypatch
):
    from PIL import Image

    data = catalog(tmp_path / "supplier-data", ["001"])
    monkeypatch.setenv("SUPPLIER_DATA", str(data))  # the lab's layout: the short command
    jpeg = data / "images" / "001.jpeg"
    Image.new("RGB", (600, 400), "green").save(jpeg)  # a learner's own script: no mark
    Image.new("RGB", (60, 40), "green").save(data / "images" / "001.tiff")
    upload_as(store, "001.jpeg", jpeg.read_bytes())
    assert import_(store, data) == 1
    assert store.catalog.fruits() == []
    message = run.earlier_attempt(jpeg, data / "images" / "001.tiff")
    assert message == (
        "001.jpeg was not made by changeImage.py from 001.tiff (an earlier attempt's?):"
        " run ./changeImage.py --replace-unmarked to convert over it"
    )
    assert logged_errors() == [f"Fruit 1 of delivery 0 (001.txt): {message}"]
    entry = by_file(data)["001.txt"]
    assert (entry["problem"], entry["details"]) == (
        "earlier_attempt",
        {"image": "001.jpeg", "source": "001.tiff"},
    )


def test_the_suppliers_own_photo_under_the_catalogs_name_says_the_way_out(
    store, tmp_path, catalog, logged_errors
):
    """The line changeImage.py and the uploader give (the catalog jpeg block's)."""
    data = catalog(tmp_path / "supplier-data", ["001"])
    new_image((640, 480)).save(data / "images" / "001.jpeg", "PNG")
    assert import_(store, data) == 1
    assert logged_errors() == [
        "Fruit 1 of delivery 0 (001.txt): 001.jpeg is a photo under the catalog's name,"
        " not made by changeImage.py: rename it 001.png and run ./changeImage.py to convert it"
    ]
    assert store.catalog.fruits() == []


# -- the record as data: a code per problem -----------------------------------------------


@pytest.mark.parametrize(
    "id_, content, problem, details",
    [
        ("nul", b"Apple\x00\n5 lbs\n", "not_text", {"cause": "NUL characters"}),
        ("empty", b"\n \n", "empty", {}),
        ("name only", b"Apple\n", "no_weight", {}),
        ("bad weight", b"Apple\n1.5 lbs\nRed.", "bad_weight", {"line": 2, "value": "1.5 lbs"}),
        (
            "weight too large",
            b"Apple\n\n9999999999 lbs\n",
            "weight_too_large",
            {"line": 3, "value": "9999999999 lbs", "limit": 2**31 - 1},
        ),
        (
            "name too long",
            b"x" * 130 + b"\n5 lbs\n",
            "too_long",
            {"field": "name", "length": 130, "limit": 100},
        ),
        (
            "description too long",
            b"Apple\n5 lbs\n" + b"y" * 5001,
            "too_long",
            {"field": "description", "length": 5001, "limit": 5000},
        ),
        ("good", b"Apple\n5 lbs\nRed.", "", {}),
    ],
)
def test_each_bad_description_has_its_code_and_details(tmp_path, id_, content, problem, details):
    path = write(tmp_path / "descriptions", "001.txt", content)
    product = run.read_product(path, tmp_path / "images")
    assert (product.problem, product.details) == (problem, details)
    assert product.outcome == ("failed" if problem else "pending")
    assert product.reason or not problem


@pytest.mark.parametrize(
    "id_, make, cause",
    [
        ("a FIFO", lambda path: os.mkfifo(path), "not a regular file"),
        ("a folder", lambda path: path.mkdir(), "not a regular file"),
        ("a link out", lambda path: path.symlink_to("/etc/hostname"), "not a regular file"),
        (
            "too large",
            lambda path: path.write_bytes(b"x" * (run.DESCRIPTION_LIMIT + 1)),
            "too large",
        ),
    ],
)
def test_a_description_that_is_not_read_says_why_as_data(tmp_path, id_, make, cause):
    (tmp_path / "descriptions").mkdir()
    path = tmp_path / "descriptions" / "001.txt"
    make(path)
    product = run.read_product(path, tmp_path / "images")
    assert (product.outcome, product.problem, product.details) == (
        "failed",
        "not_text",
        {"cause": cause},
    )


def test_two_files_of_one_name_say_which_other_file(tmp_path):
    write(tmp_path / "descriptions", "001.txt", "Apple\n5 lbs\n")
    write(tmp_path / "descriptions", "002.txt", "Apple\n6 lbs\n")
    products = run.read_products(tmp_path / "descriptions", tmp_path / "images")
    assert [(p.problem, p.details) for p in products] == [
        ("", {}),
        ("same_name", {"other": "001.txt"}),
    ]


def new_image(size: tuple[int, int]):
    from PIL import Image

    return Image.new("RGB", size, "green")


# changeImage.py's mark for a 600x400 output (a JPEG comment)
MARK_600X400 = (
    "fruit-catalog changeImage.py made-from-sha256="
    + "0" * 64
    + " options="
    + "1" * 16
    + " size=600x400"
)


def marked_with_junk_after_its_end(jpeg: Path) -> None:
    """An output of ours (the mark) with bytes appended: the supplier's photo is not."""
    new_image((600, 400)).save(jpeg, "JPEG", comment=MARK_600X400)
    jpeg.write_bytes(jpeg.read_bytes() + b"junk" * 25_000)


@pytest.mark.parametrize(
    "id_, spoil, problem, details",
    [
        ("no jpeg", lambda jpeg: jpeg.unlink(), "no_photo", {"image": "001.jpeg"}),
        (
            "cut",
            lambda jpeg: jpeg.write_bytes(jpeg.read_bytes()[:2000]),
            "photo_unusable",
            {"image": "001.jpeg", "cause": "cut"},
        ),
        (
            "bytes after its end",
            marked_with_junk_after_its_end,
            "photo_unusable",
            {"image": "001.jpeg", "cause": "not ours"},
        ),
        (
            "wrong size",
            lambda jpeg: new_image((60, 40)).save(jpeg, "JPEG", comment=MARK_600X400),
            "photo_unusable",
            {"image": "001.jpeg", "cause": "wrong size"},
        ),
        (
            "the supplier's own jpeg",
            lambda jpeg: new_image((640, 480)).save(jpeg, "JPEG"),
            "photo_to_convert",
            {"image": "001.jpeg"},
        ),
        (
            "the supplier's own tiff",
            lambda jpeg: new_image((640, 480)).save(jpeg, "TIFF"),
            "photo_to_convert",
            {"image": "001.jpeg"},
        ),
    ],
)
def test_a_photo_that_cannot_be_posted_has_its_code(
    store, tmp_path, catalog, id_, spoil, problem, details
):
    data = uploaded(store, catalog(tmp_path / "supplier-data", ["001"]))
    spoil(data / "images" / "001.jpeg")
    assert import_(store, data) == 1
    entry = by_file(data)["001.txt"]
    assert (entry["outcome"], entry["problem"], entry["details"]) == ("failed", problem, details)
    assert store.catalog.fruits() == []


class StricterStore(BaseHTTPRequestHandler):
    """A store with a rule ours does not know: lists nothing, serves the server's
    `picture` under any name, refuses every product with a field error."""

    def answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.answer(200, self.server.picture if "/media/" in self.path else b"[]")

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.answer(400, json.dumps({"weight": ["Ensure this value is at most 100."]}).encode())

    def log_message(self, *args) -> None:
        pass


def test_a_field_the_store_refuses_is_recorded_with_its_errors(tmp_path, catalog):
    data = catalog(tmp_path / "supplier-data", ["001"])
    server = ThreadingHTTPServer(("127.0.0.1", 0), StricterStore)
    server.picture = jpeg_of(data, "001")
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        assert (
            run.main(
                [
                    "--url",
                    url,
                    "--descriptions",
                    str(data / "descriptions"),
                    "--images",
                    str(data / "images"),
                ]
            )
            == 1
        )
    finally:
        server.shutdown()
        server.server_close()
    entry = by_file(data)["001.txt"]
    assert (entry["outcome"], entry["problem"]) == ("failed", "store_refused")
    assert entry["details"] == {"fields": {"weight": ["Ensure this value is at most 100."]}}


@pytest.mark.parametrize(
    "outcomes",
    [
        ["uncertain"] * 4,
        ["imported", "already in store", "uncertain", "failed", "pending"],
        ["failed", "imported"],
    ],
)
def test_every_product_is_in_some_count_of_the_summary(outcomes):
    products = [run.Product(f"{n}.txt", outcome=run.Outcome(o)) for n, o in enumerate(outcomes)]
    products[0].this_run = True
    counted = sum(int(n) for n in re.findall(r"\b(\d+)\b(?! held)", run.summary(products)))
    assert counted == len(products), run.summary(products)


# -- every stop leaves a record -------------------------------------------------------------


@pytest.fixture
def silent_store() -> Iterator[tuple[str, threading.Event]]:
    """(url, asked): a store that accepts connections and never answers; asked is
    set once the first connection came."""
    listener = socket.create_server(("127.0.0.1", 0))
    asked, held = threading.Event(), []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                held.append(listener.accept()[0])
                asked.set()

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/", asked
    listener.close()
    for connection in held:
        connection.close()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_stop_while_first_asking_the_store_writes_the_record(
    tmp_path, catalog, silent_store, stop
):
    url, asked = silent_store
    data = catalog(tmp_path / "supplier-data", ["001", "002"])
    write(data / "descriptions", "003.txt", "Durian\n")
    argv = [str(ROOT / "run.py"), "--url", url, "--timeout", "60"]
    argv += ["--descriptions", str(data / "descriptions"), "--images", str(data / "images")]
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    assert asked.wait(60), "run.py never asked the store"
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    document = record(data)
    assert document["complete"] is False
    assert document["summary"].startswith("interrupted: ")
    outcomes = {p["file"]: (p["outcome"], p["problem"]) for p in document["products"]}
    assert outcomes == {
        "001.txt": ("failed", "interrupted"),
        "002.txt": ("failed", "interrupted"),
        "003.txt": ("failed", "no_weight"),
    }


def test_products_not_sent_are_one_line_per_reason(caplog) -> None:
    """A refused POST, then the store's stop for the rest: the count of each, each
    with its own reason (one line quoting the first reason for all misled)."""
    from types import SimpleNamespace

    refused = "POST http://127.0.0.1:1/fruits/: connection refused"
    stopped = "not sent: the store stopped answering (3 in a row; ...)"
    items = [
        SimpleNamespace(outcome=run.FAILED, problem=run.Problem.STORE_UNREACHABLE, reason=why)
        for why in (refused, stopped, stopped)
    ]
    with caplog.at_level(logging.ERROR):
        run.report(items, str, "products")
    assert caplog.messages == [f"1 product {refused}", f"2 products {stopped}"]


def test_only_a_post_no_later_run_settled_is_in_flight(tmp_path: Path) -> None:
    """Run a was killed while posting 001 and 002; run b then imported 001. Only 002's
    POST may still land: the next run waits for it alone and records it as maybe sent."""
    url, sent = "http://localhost/", "2026-12-07T10:00:00+00:00"
    lines = [{"event": "run", "run": r, "time": sent, "store": url} for r in ("a", "b")]
    lines += [  # 001's POST went out last: the wait is for 002's alone
        {"event": "product", "run": "a", "time": t, "file": f, "outcome": "sending"}
        for f, t in (("002.txt", sent), ("001.txt", sent.replace("10:00", "10:05")))
    ]
    imported = {"event": "product", "run": "b", "time": sent, "file": "001.txt", "id": 7}
    lines.append(imported | {"outcome": "imported"})
    journal = tmp_path / "imported.jsonl"
    journal.write_text("".join(json.dumps(line) + "\n" for line in lines))
    evidence = run.gather_evidence(journal, tmp_path / "imported.json", url)
    assert evidence.in_flight_files == {"002.txt"}
    assert evidence.in_flight == run.journal_time(lines[2])


# -- a full disk: RLIMIT_FSIZE stands for it ------------------------------------------


@pytest.mark.parametrize("script", ["run.py", "supplier_image_upload.py"])
def test_a_journal_that_fills_the_disk_stops_the_run_and_the_next_finishes(
    store, tmp_path, catalog, script
):
    """The journal's lines stop fitting after a few products: one line naming the
    journal and the cause, status 2; the run after room is made sends what is missing
    and nothing twice."""
    delivery = catalog(tmp_path / "supplier-data", [f"{n:03d}" for n in range(1, 9)])
    folders = ["--images", str(delivery / "images")]
    if script == "run.py":
        uploaded(store, delivery)
        folders += ["--descriptions", str(delivery / "descriptions")]
    command = [ROOT / script, "--url", store.url, *folders, "--jobs", "1"]

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1200, 1200))

    full = subprocess.run(command, capture_output=True, text=True, preexec_fn=small_files)
    journal = delivery / ("imported.jsonl" if script == "run.py" else "uploaded.jsonl")
    assert full.returncode == 2, full.stderr
    assert f"ERROR cannot write the journal {journal}: File too large; stopped: make room" in (
        full.stderr
    )
    assert "unexpected" not in full.stderr
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    held = store.catalog.fruits() if script == "run.py" else store.catalog.uploads()
    assert len(held) == 8, held


def test_a_store_that_does_not_answer_is_said_while_the_run_waits(
    tmp_path, catalog, dead_port, caplog
):
    """Seconds of retries before 'connection refused' would look like a hang."""
    caplog.set_level(logging.INFO)
    data = catalog(tmp_path / "supplier-data", ["001"])
    folders = ["--descriptions", str(data / "descriptions"), "--images", str(data / "images")]
    assert run.main(["--url", f"http://127.0.0.1:{dead_port}/", *folders, "--retries", "2"]) == 2
    said = [r.getMessage() for r in caplog.records if r.name == "store"]
    assert said == ["no answer from the store yet; trying again"]  # once, however many waits


def test_a_delivery_whose_folder_is_not_utf_8_is_imported_and_read_back(store, tmp_path, catalog):
    """The journal and the record hold the folder's path (as JSON's \\udcfe): written, and
    read back by the next run."""
    data = catalog(tmp_path / "u2\udcfe" / "supplier-data", ["001", "002"])
    uploaded(store, data)
    assert import_(store, data) == 0
    assert import_(store, data) == 0
    assert len(store.catalog.fruits()) == 2
    journal = (data / "imported.jsonl").read_bytes()
    assert b"u2\\udcfe" in journal and json.loads(journal.splitlines()[-1])


def test_a_store_declared_down_ends_the_other_requests_retry_waits():
    """Once a run's store stopped answering, a request waiting to retry (a Retry-After
    of minutes here) gives up at once instead of sleeping out its backoff."""
    asked = urllib3.HTTPResponse(status=503, headers={"Retry-After": "300"})
    retry = run.StoreRetry(total=3, respect_retry_after_header=True)
    ended = []

    def wait() -> None:
        with contextlib.suppress(run.GaveUp):
            retry.sleep(asked)
        ended.append(True)

    run.STORE_DOWN.set()
    try:
        waiting = threading.Thread(target=wait, daemon=True)
        waiting.start()
        waiting.join(timeout=60)
    finally:
        run.STORE_DOWN.clear()
    assert ended, "the retry slept out its Retry-After"
