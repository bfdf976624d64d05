"""report_email.py: the supplier gets one truthful PDF by mail per state of the
delivery, through the mail catcher. Records are written by hand (README: Records)."""

from __future__ import annotations

import datetime
import fcntl
import functools
import itertools
import json
import logging
import os
import socket
import subprocess
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from conftest import record_product
from helper import mails, pdf_text, poppler_text
from pypdf import PdfReader

import report_email
from make_delivery import photo_like

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def clean_environment(caplog, monkeypatch):
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("USER", "alice")
    for name in list(os.environ):
        if name.startswith(("REPORT_", "SMTP_")) or name in ("STORE_NAME", "IMPORT_RECORD"):
            monkeypatch.delenv(name)


@pytest.fixture
def write_v3(write_record):
    """write_v3(path, products, **top_level): a version 3 record (README: Records),
    write_record's version 2 with `problem` and `details` on every product."""

    def write(path: Path, products: list, **top: object) -> Path:
        write_record(path, products, version=2, **top)
        document = json.loads(path.read_text(encoding="utf-8"))
        document["version"] = 3
        for entry in document["products"]:
            entry.setdefault("problem", "")
            entry.setdefault("details", {})
        path.write_text(json.dumps(document), encoding="utf-8")
        return path

    return write


def report(record: Path, pdf: Path, *extra: str) -> int:
    return report_email.main(["--record", str(record), "--pdf", str(pdf), *extra])


def body_of(mail) -> str:
    return mail.get_body(preferencelist=("plain",)).get_content().strip()


def words(text: str) -> str:
    return " ".join(text.split())


def today_title() -> str:
    return report_email.report_title(datetime.date.today())


def mailed_log(record: Path) -> list[dict]:
    path = record.with_name(f"{record.stem}.mailed.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def jpeg(path: Path, seed: int = 0) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    photo_like((160, 107), seed).convert("RGB").save(path, "JPEG")
    return str(path)


def errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# -- the lab's mail -------------------------------------------------------------------


def test_times_are_spoken_in_utc():
    assert report_email.spoken("2026-11-27T00:55:16+01:00") == "November 26, 2026 at 23:55 UTC"


def test_title_is_english_with_a_two_digit_day():
    day = datetime.date(2026, 11, 5)
    assert report_email.report_title(day) == "Processed Update on November 05, 2026"


def lab_pairs(text: str) -> list[tuple[str, str]]:
    """The lab's `name:` / `weight:` pairs of a PDF's text, in order."""
    lines = text.splitlines()
    return [
        (line.removeprefix("name: "), after.removeprefix("weight: "))
        for line, after in itertools.pairwise(lines)
        if line.startswith("name: ") and after.startswith("weight: ")
    ]


@pytest.mark.parametrize("version", [1, 2, 3])
def test_the_supplier_gets_the_lab_mail_and_pdf(
    smtp_env, tmp_path, product, write_record, write_v3, version
):
    images = tmp_path / "supplier-data" / "images"
    fruits = [("Apple", 500), ("Avocado", 174), ("Banana", 211)]
    products = [
        product(f"00{n}.txt", name, weight, image=jpeg(images / f"00{n}.jpeg", n))
        for n, (name, weight) in enumerate(fruits, 1)
    ]
    path = tmp_path / "imported.json"
    record = write_v3(path, products) if version == 3 else write_record(path, products, version)
    pdf = tmp_path / "processed.pdf"
    assert report(record, pdf) == 0
    [mail] = mails(smtp_env)
    assert mail["From"] == "automation@example.com"
    assert mail["To"] == "alice@example.com"
    assert mail["Subject"] == "Upload Completed - Online Fruit Store"
    assert body_of(mail) == report_email.SUCCESS_BODY
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_filename() == "processed.pdf"
    assert attachment.get_content() == pdf.read_bytes()
    for text in (pdf_text(pdf), poppler_text(pdf)):
        lines = text.splitlines()
        assert lines[0] == today_title()
        assert lines[1] == "Delivery imported November 25, 2026"
        assert lab_pairs(text) == [(name, f"{weight} lbs") for name, weight in fruits]
    assert "3 products: 3 imported (total weight 885 lbs)" in pdf_text(pdf)
    for legend in ("Imported, by weight", "Apple: 500 lbs (56%)", "Imported: 3 (100%)"):
        assert legend in pdf_text(pdf)  # the chart's
    assert len(PdfReader(pdf).pages[0].images) == 3


def test_no_arguments_under_home(mail_catcher, tmp_path, product, write_v3):
    """The lab's own run: no options, the record where the lab keeps the delivery."""
    data = tmp_path / "supplier-data"
    data.mkdir()
    write_v3(data / "imported.json", [product("001.txt", "Kiwi", 9), product("002.txt", "Fig", 4)])
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "USER": "supplier",
        "SMTP_HOST": mail_catcher.host,
        "SMTP_PORT": str(mail_catcher.port),
    }
    result = subprocess.run(
        [ROOT / "report_email.py"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    [mail] = mails(mail_catcher)
    assert (mail["From"], mail["To"]) == ("automation@example.com", "supplier@example.com")
    assert mail["Subject"] == "Upload Completed - Online Fruit Store"
    assert body_of(mail) == (
        "All fruits are uploaded to our website successfully. A detailed list is attached to"
        " this email."
    )
    pdf = Path("/tmp/processed.pdf")
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_filename() == "processed.pdf"
    assert attachment.get_content() == pdf.read_bytes()
    assert pdf_text(pdf).splitlines()[0] == today_title()
    assert lab_pairs(pdf_text(pdf)) == [("Kiwi", "9 lbs"), ("Fig", "4 lbs")]
    assert (data / "imported.mailed.jsonl").exists()


# -- what the report says -----------------------------------------------------------


def test_failures_change_subject_body_and_pdf(smtp_env, tmp_path, product, write_v3):
    record = write_v3(
        tmp_path / "imported.json",
        [
            product("001.txt", "Apple", 500),
            product("002.txt", "Pear", 20, "already in store"),
            product(
                "003.txt",
                "Fig",
                None,
                "failed",
                "003.txt line 2: weight 'heavy' is not whole pounds (like '500 lbs')",
                problem="bad_weight",
                details={"line": 2, "value": "heavy"},
            ),
            product("016.txt", "Durian", None, "failed", "016.txt: no weight", problem="no_weight"),
            product("005.txt", "Kiwi", 9),
        ],
    )
    pdf = tmp_path / "r.pdf"
    assert report(record, pdf) == 0
    [mail] = mails(smtp_env)
    assert mail["Subject"] == "Upload Completed with 2 failures - Online Fruit Store"
    body = body_of(mail)
    assert "2 of 5 fruits could not be uploaded" in body
    assert "2 fruits were uploaded successfully" in body
    assert "1 fruit was already on the website and is listed as such" in body
    text = words(pdf_text(pdf))
    assert "name: Apple weight: 500 lbs imported" in text
    assert "name: Kiwi weight: 9 lbs imported" in text
    assert "name: Pear" not in text and "Pear (002.txt) 20 lbs already in store" in text
    assert (
        "Fig (003.txt) Not imported line 2 of 003.txt: the weight 'heavy' is not whole pounds"
        " (like 500 lbs) What to do: fix line 2 of 003.txt and send 003.txt again" in text
    )
    assert "Durian (016.txt) Not imported 016.txt has the name but no weight line" in text
    assert "5 products: 2 imported (total weight 509 lbs), 1 already in store, 2 failed" in text
    # Failures first, under their heading, in file order; then the others, in file order.
    order = ["Needs your attention (2 of 5", "Fig (003", "Durian (016", "All other products (3)"]
    order += ["name: Apple", "Pear (002", "name: Kiwi"]
    assert [text.index(part) for part in order] == sorted(text.index(part) for part in order)


# Every problem code run.py writes (README: Records): (id, outcome, code, details,
# run.py's reason, the supplier's problem, what to do). The reasons, with our folders
# and commands, go to the operator's log only; the supplier's words come from the code.
SUPPLIER_CASES = [
    (
        "bad-weight",
        "failed",
        "bad_weight",
        {"line": 2, "value": "heavy"},
        "003.txt line 2: weight 'heavy' is not whole pounds (like '500 lbs')",
        "line 2 of 003.txt: the weight 'heavy' is not whole pounds (like 500 lbs)",
        "fix line 2 of 003.txt and send 003.txt again",
    ),
    (
        "weight-too-large",
        "failed",
        "weight_too_large",
        {"line": 3, "value": "9999999999", "limit": 2147483647},
        "003.txt line 3: weight '9999999999' is not whole pounds, at most 2147483647",
        "line 3 of 003.txt: the weight '9999999999' is over the 2147483647 lbs the store takes",
        "fix line 3 of 003.txt and send 003.txt again",
    ),
    *[
        (
            f"photo-{cause.replace(' ', '-')}",
            "failed",
            "photo_unusable",
            {"image": "003.jpeg", "cause": cause},
            f"/srv/ops/supplier-data/images/003.jpeg: {cause}; convert it again",
            f"we could not use its photo 003.jpeg: {said}",
            "send its photo again, as one file named 003 (JPEG, PNG or TIFF)",
        )
        for cause, said in [
            ("cut", "the file is cut short"),
            ("not ours", "it is not the picture we made from your photo"),
            ("wrong size", "it is not the size we expect"),
        ]
    ],
    (
        "empty",
        "failed",
        "empty",
        {},
        "003.txt: empty file, expected name, weight, description",
        "003.txt is empty",
        "send 003.txt again with the name, the weight and the description",
    ),
    (
        "no-weight",
        "failed",
        "no_weight",
        {},
        "003.txt: no weight line after the name",
        "003.txt has the name but no weight line after it",
        "add the weight (like 500 lbs) on the line after the name and send 003.txt again",
    ),
    (
        "too-long",
        "failed",
        "too_long",
        {"field": "name", "length": 240, "limit": 100},
        "003.txt: name is 240 characters; the store accepts at most 100",
        "the name in 003.txt is 240 characters long; the store takes at most 100",
        "shorten the name and send 003.txt again",
    ),
    (
        "same-name",
        "failed",
        "same_name",
        {"other": "001.txt"},
        "003.txt: the same product name as 001.txt; rename one",
        "003.txt names the same product as 001.txt",
        "give one of them another name and send it again",
    ),
    *[
        (
            f"not-text-{cause.replace(' ', '-')}",
            "failed",
            "not_text",
            {"cause": cause},
            f"/srv/ops/supplier-data/descriptions/003.txt: {cause}; not read",
            f"003.txt could not be read as a text file: {said}",
            "send 003.txt again as plain text",
        )
        for cause, said in [
            ("NUL characters", "it holds NUL characters"),
            ("not a regular file", "it is not a regular file"),
            ("too large", "it is too large for a description"),
            ("unreadable", "it could not be read"),
        ]
    ],
    (
        "name-not-utf-8",
        "failed",
        "name_not_utf8",
        {},
        "003.txt: its name is not UTF-8",
        "003.txt has a file name that is not UTF-8 text",
        "send it again named with letters, digits, '-' and '.' only (like 011.txt)",
    ),
    (
        "no-photo",
        "failed",
        "no_photo",
        {"image": "003.jpeg"},
        "no catalog image 003.jpeg in /srv/ops/supplier-data/images: run changeImage.py",
        "we have no usable photo for it",
        "send its photo again, named 003 (JPEG, PNG or TIFF)",
    ),
    (
        "earlier-attempt",
        "failed",
        "earlier_attempt",
        {"image": "003.jpeg", "source": "003.tiff"},
        "003.jpeg was not made by changeImage.py from 003.tiff (an earlier attempt's?): run"
        " ./changeImage.py --replace-unmarked to convert over it",
        "a file of an earlier attempt of ours was in the way of its photo",
        "nothing on your side: we import it again",
    ),
    (
        "photo-to-convert",
        "failed",
        "photo_to_convert",
        {"image": "003.jpeg"},
        "003.jpeg is a photo under the catalog's name, not made by changeImage.py: rename it"
        " 003.jpg and run ./changeImage.py to convert it",
        "its photo 003.jpeg had not been converted for our catalog yet",
        "nothing on your side: we import it again",
    ),
    (
        "photo-not-in-store",
        "failed",
        "photo_not_in_store",
        {"image": "003.jpeg"},
        "image not in the store: run supplier_image_upload.py (003.jpeg)",
        "its photo had not reached our store yet",
        "nothing on your side: we import it again",
    ),
    (
        "store-refused",
        "failed",
        "store_refused",
        {"fields": {"description": ["See http://10.0.0.5:8000/help", "Not blank."]}},
        "the store rejected description: This field may not be blank.",
        "our store refused its values (description: See [address] Not blank.)",
        "check the name, the weight and the description in 003.txt and send it again",
    ),
    (
        "interrupted",
        "failed",
        "interrupted",
        {},
        "not sent: the run was interrupted; run again",
        "the import stopped before this product was sent",
        "nothing on your side: we import it again",
    ),
    (
        "store-unreachable",
        "failed",
        "store_unreachable",
        {},
        "not sent: the store at http://10.0.0.5:8000/ stopped answering (3 failures in a row)",
        "our store could not be reached during the import",
        "nothing on your side: we import it again",
    ),
    (
        "unconfirmed",
        "uncertain",
        "unconfirmed",
        {},
        "sent, but no answer came (timed out after 30 s); the next run looks for it",
        "it was sent to our store, but we could not confirm that the store has it",
        "nothing on your side: we check it",
    ),
    (
        "differs-from-store",
        "already in store",
        "differs_from_store",
        {},
        "the store's copy differs and the store cannot change a product; run.py --force posts"
        " it as a new product",
        "the store already has it, with other values (weight: the store has 18 lbs, this"
        " delivery 20 lbs)",
        "the store keeps its earlier values; if those of this delivery are right, tell us",
    ),
]


def test_every_code_of_the_table_has_a_case():
    assert {case[2] for case in SUPPLIER_CASES} == set(report_email.ADVICE)


def test_a_product_differing_from_the_store_shows_what_the_store_holds(
    tmp_path, product, write_record
):
    """run.py records a changed product of ours as already in store with the store's
    values: the row and the pies never state the file's 999 lbs as the store's."""
    record = write_record(
        tmp_path / "imported.json",
        [
            product("001.txt", "Apple", 500),
            product(
                "002.txt",
                "Fig",
                999,
                "already in store",
                "the store's copy differs (weight: the store has 174 lbs, the file 999 lbs)",
                store_values={"weight": 174},
            ),
        ],
        version=2,
    )
    pdf = tmp_path / "r.pdf"
    assert report(record, pdf, "--save-dir", str(tmp_path / "outbox")) == 0
    text = words(pdf_text(pdf))
    row = text[text.index("Fig (002.txt)") : text.index("All other products")]
    assert row.startswith("Fig (002.txt) 174 lbs Differs from the store"), row
    assert "the store keeps its earlier values" in row
    assert "999" not in text.replace("this delivery 999 lbs", ""), text
    assert "weight: 999" not in text and "Apple: 500 lbs" in text


@pytest.mark.parametrize(
    "outcome, code, details, reason, problem, todo",
    [case[1:] for case in SUPPLIER_CASES],
    ids=[case[0] for case in SUPPLIER_CASES],
)
def test_the_supplier_reads_what_is_wrong_and_what_to_do_never_our_insides(
    tmp_path, caplog, product, write_v3, outcome, code, details, reason, problem, todo
):
    values = {"store_values": {"weight": 18}} if outcome == "already in store" else {}
    record = write_v3(
        tmp_path / "imported.json",
        [
            product("001.txt", "Apple", 500),
            product("003.txt", "Fig", 20, outcome, reason, problem=code, details=details, **values),
        ],
    )
    pdf = tmp_path / "r.pdf"
    assert report(record, pdf, "--save-dir", str(tmp_path / "outbox")) == 0
    for text in (words(pdf_text(pdf)), words(poppler_text(pdf))):
        row = text[text.index("Fig (003.txt)") : text.index("All other products")]
        assert problem in row and f"What to do: {todo}" in row, row
        assert text.index("Needs your attention (1 of 2 products)") < text.index("Fig (003.txt)")
        for private in ("/", ".py", "--", "http", "10.0.0.5", "srv", "images", "changeImage"):
            assert private not in text
    # The operator still reads the reason as run.py wrote it.
    assert f"Fig (003.txt), {outcome}: {reason}" in caplog.messages


# What the supplier reads when the record says less than a code's row needs: a
# version 2 record (never its reason parsed), an unknown code, details that do not fit.
GENERAL_CASES = [
    ("version-2", 2, {}, "003.txt: no weight line after the name"),
    ("unknown-code", 3, {"problem": "moon_phase", "details": {}}, "x"),
    ("details-missing", 3, {"problem": "bad_weight", "details": {}}, "x"),
    ("details-wrong-type", 3, {"problem": "too_long", "details": {"field": "size"}}, "x"),
    ("code-of-another-outcome", 3, {"problem": "unconfirmed", "details": {}}, "x"),
]


@pytest.mark.parametrize(
    "version, fields, reason",
    [case[1:] for case in GENERAL_CASES],
    ids=[case[0] for case in GENERAL_CASES],
)
def test_a_failure_without_a_usable_code_is_told_in_general_words(
    tmp_path, product, write_record, write_v3, version, fields, reason
):
    path = tmp_path / "imported.json"
    products = [
        product("001.txt", "Apple", 500),
        product("003.txt", "Fig", None, "failed", reason, **fields),
    ]
    write = write_v3 if version == 3 else functools.partial(write_record, version=2)
    record = write(path, products)
    pdf = tmp_path / "r.pdf"
    assert report(record, pdf, "--save-dir", str(tmp_path / "outbox")) == 0
    text = words(pdf_text(pdf))
    row = text[text.index("Fig (003.txt)") : text.index("All other products")]
    assert row == (
        "Fig (003.txt) Not imported we could not import it What to do: check 003.txt and send"
        " it again "
    )


def test_an_unknown_code_is_named_to_the_operator(tmp_path, caplog, product, write_v3):
    record = write_v3(
        tmp_path / "imported.json",
        [product("001.txt", "Apple", 1), product("003.txt", "Fig", None, "failed", problem="x_y")],
    )
    assert report(record, tmp_path / "r.pdf", "--save-dir", str(tmp_path / "outbox")) == 0
    assert warnings_of(caplog) == [
        "003.txt: problem 'x_y' is unknown to this report_email.py; the supplier reads a general"
        " text"
    ]


def test_a_marked_row_is_set_in_red(tmp_path, product, write_record):
    record = write_record(
        tmp_path / "imported.json",
        [product("001.txt", "Apple", 500), product("003.txt", "Fig", None, "failed", "x")],
    )
    pdf = tmp_path / "r.pdf"
    assert report(record, pdf, "--save-dir", str(tmp_path / "outbox")) == 0
    content = PdfReader(pdf).pages[0].get_contents().get_data()
    assert b".690196 0 .12549 rg" in content  # reports.ATTENTION_RED, #b00020


def test_an_incomplete_import_is_said(smtp_env, tmp_path, product, write_record):
    record = write_record(
        tmp_path / "r.json", [product("001.txt", "Apple", 1)], version=2, complete=False
    )
    assert report(record, tmp_path / "r.pdf") == 0
    sentence = "The import stopped before the end; products not listed were not processed."
    assert body_of(mails(smtp_env)[0]).endswith(sentence)
    assert sentence in words(pdf_text(tmp_path / "r.pdf"))


def test_one_failure_is_singular(smtp_env, tmp_path, product, write_record):
    record = write_record(
        tmp_path / "r.json",
        [product("001.txt", "Apple", 1), product("002.txt", "X", 1, "failed", "no")],
    )
    assert report(record, tmp_path / "r.pdf") == 0
    assert mails(smtp_env)[0]["Subject"] == "Upload Completed with 1 failure - Online Fruit Store"


def test_supplier_markup_is_printed_literally(smtp_env, tmp_path, product, write_record):
    record = write_record(tmp_path / "r.json", [product("001.txt", "Cherry & <b>Berry</b>", 3)])
    assert report(record, tmp_path / "r.pdf") == 0
    assert "name: Cherry & <b>Berry</b>" in pdf_text(tmp_path / "r.pdf")


def failures(code: str, number: int, outcome: str = "failed", **details: object) -> list[dict]:
    """`number` products of a version 3 record, each with the problem `code`."""
    return [
        record_product(
            f"{n:03d}.txt",
            f"Fruit {n}",
            None,
            outcome,
            f"run.py's {code}",
            None,
            problem=code,
            details=details,
        )
        for n in range(1, number + 1)
    ]


# A delivery where nothing was imported: (id, products, status, mails, the log line's end).
NOTHING_IMPORTED = [
    (
        "every-weight-bad",
        failures("bad_weight", 10, line=2, value="heavy"),
        0,
        1,
        "to alice@example.com: Upload Completed with 10 failures - Online Fruit Store",
    ),
    (
        "the-store-down",
        failures("store_unreachable", 10),
        1,
        0,
        "nothing was imported (10 failed, 0 uncertain, 0 already in store), through no fault of"
        " the supplier's (store_unreachable: 10): set our side right and run run.py again, then"
        " report_email.py mails the report; no mail sent",
    ),
    (
        "every-product-uncertain",
        failures("unconfirmed", 40, "uncertain"),
        1,
        0,
        "nothing was imported (0 failed, 40 uncertain, 0 already in store), through no fault of"
        " the supplier's (unconfirmed: 40): set our side right and run run.py again, then"
        " report_email.py mails the report; no mail sent",
    ),
    (
        "run-before-changeImage",
        failures("photo_to_convert", 10, image="001.tiff"),
        1,
        0,
        "nothing was imported (10 failed, 0 uncertain, 0 already in store), through no fault of"
        " the supplier's (photo_to_convert: 10): set our side right and run run.py again, then"
        " report_email.py mails the report; no mail sent",
    ),
    (
        "the-store-down-and-a-bad-weight",
        [*failures("store_unreachable", 2), *failures("bad_weight", 1, line=2, value="x")[-1:]],
        0,
        1,
        "to alice@example.com: Upload Completed with 3 failures - Online Fruit Store",
    ),
    (
        "everything-already-in-store",
        [record_product("001.txt", "Apple", 1, "already in store", problem="", details={})],
        0,
        0,
        "nothing was imported (0 failed, 0 uncertain, 1 already in store); no mail sent",
    ),
]


@pytest.mark.parametrize(
    "products, status, mailed, said",
    [case[1:] for case in NOTHING_IMPORTED],
    ids=[case[0] for case in NOTHING_IMPORTED],
)
def test_with_nothing_imported_the_supplier_hears_what_they_can_fix(
    smtp_env, tmp_path, caplog, write_v3, products, status, mailed, said
):
    record = write_v3(tmp_path / "r.json", products)
    pdf = tmp_path / "r.pdf"
    assert report(record, pdf) == status
    assert len(mails(smtp_env)) == mailed
    assert pdf.exists() == bool(mailed)
    lines = [r.getMessage() for r in caplog.records if r.name == "report_email"]
    assert lines[-1].endswith(said), lines[-1]
    if mailed:
        text = words(pdf_text(pdf))
        assert text.startswith(today_title()) and "name:" not in text
        for entry in products:
            if entry["problem"] == "bad_weight":
                assert f"What to do: fix line 2 of {entry['file']}" in text


def test_a_version_2_delivery_with_nothing_imported_is_mailed(
    smtp_env, tmp_path, product, write_record
):
    record = write_record(
        tmp_path / "r.json",
        [
            product("001.txt", "Apple", 1, "already in store"),
            product("002.txt", "", None, "failed", "x"),
        ],
        version=2,
    )
    assert report(record, tmp_path / "r.pdf") == 0
    [mail] = mails(smtp_env)
    assert mail["Subject"] == "Upload Completed with 1 failure - Online Fruit Store"
    assert "check 002.txt and send it again" in words(pdf_text(tmp_path / "r.pdf"))


def test_sender_recipients_and_subject_can_be_set(
    smtp_env, tmp_path, monkeypatch, product, write_record
):
    record = write_record(tmp_path / "r.json", [product("001.txt", "Apple", 1)])
    args = ["--sender", "shop@example.org", "--recipient", "a@x.org", "--recipient", "b@x.org"]
    assert report(record, tmp_path / "r.pdf", *args, "--subject", "Done - Shop") == 0
    monkeypatch.setenv("REPORT_RECIPIENTS", "c@x.org; d@x.org")
    monkeypatch.setenv("REPORT_SUBJECT", "Env subject")
    assert report(record, tmp_path / "r.pdf") == 0
    first, second = mails(smtp_env)
    assert (first["From"], first["To"], first["Subject"]) == (
        "shop@example.org",
        "a@x.org, b@x.org",
        "Done - Shop",
    )
    assert (second["To"], second["Subject"]) == ("c@x.org, d@x.org", "Env subject")


def test_recipients_with_display_names_are_mailed_once_by_their_address(
    smtp_env, tmp_path, monkeypatch, product, write_record
):
    record = write_record(tmp_path / "r.json", [product("001.txt", "Apple", 1)])
    monkeypatch.setenv("REPORT_RECIPIENTS", '"Doe, John" <j@example.com>')
    assert report(record, tmp_path / "r.pdf") == 0
    assert mailed_log(record)[0]["delivered"] == ["j@example.com"]
    # The same address under another name has the report already; a new one gets it.
    args = ["--recipient", "John Doe <j@example.com>", "--recipient", "Kim <k@example.com>"]
    assert report(record, tmp_path / "r.pdf", *args) == 0
    first, second = mails(smtp_env)
    assert first["To"] == '"Doe, John" <j@example.com>'
    assert second["To"] == "Kim <k@example.com>"
    assert mailed_log(record)[1]["delivered"] == ["k@example.com"]


def test_save_dir_writes_the_mail_as_eml_and_remembers_nothing(tmp_path, product, write_record):
    record = write_record(tmp_path / "r.json", [product("001.txt", "Apple", 1)])
    assert report(record, tmp_path / "r.pdf", "--save-dir", str(tmp_path / "outbox")) == 0
    [eml] = list((tmp_path / "outbox").glob("*.eml"))
    mail = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert mail["Subject"] == "Upload Completed - Online Fruit Store"
    assert next(iter(mail.iter_attachments())).get_content() == (tmp_path / "r.pdf").read_bytes()
    assert mailed_log(record) == []


# -- once per state of the delivery --------------------------------------------------


def test_a_rerun_sends_nothing_until_resend(smtp_env, tmp_path, caplog, product, write_record):
    record = write_record(tmp_path / "imported.json", [product("001.txt", "Apple", 1)])
    pdf = tmp_path / "r.pdf"
    assert report(record, pdf) == 0
    [line] = mailed_log(record)
    assert set(line) == {"time", "record_digest", "delivered", "refused", "pdf_pages"}
    assert (line["delivered"], line["refused"], line["pdf_pages"]) == (["alice@example.com"], {}, 1)
    caplog.clear()
    assert report(record, pdf) == 0
    assert len(mails(smtp_env)) == 1
    assert caplog.records[-1].getMessage() == (
        f"this report was sent to alice@example.com on {line['time']};"
        " nothing sent (--resend sends it again)"
    )
    assert report(record, pdf, "--resend") == 0
    assert len(mails(smtp_env)) == 2 and len(mailed_log(record)) == 2


def rerun(document: dict, run: int) -> dict:
    """The record of run.py's next run with nothing new: times, run ids, this_run and
    the reasons' wording change; nothing the supplier sees does."""
    products = [
        {**entry, "this_run": False, "reason": f"{entry['reason']} (run {run})", "run": run}
        for entry in document["products"]
    ]
    started = f"2026-11-2{5 + run}T09:00:00+00:00"
    return {**document, "products": products, "started": started, "finished": started}


def test_a_rerun_that_changes_nothing_for_the_supplier_mails_nobody(
    smtp_env, tmp_path, caplog, product, write_v3
):
    path = tmp_path / "imported.json"
    fig = product("002.txt", "Fig", None, "failed", "bad", problem="no_weight")
    write_v3(path, [product("001.txt", "Apple", 1, this_run=True), fig])
    assert report(path, tmp_path / "r.pdf") == 0
    first = json.loads(path.read_text())
    for run in (1, 2):
        path.write_text(json.dumps(rerun(first, run)))
        assert report(path, tmp_path / "r.pdf") == 0
        assert "nothing sent (--resend sends it again)" in caplog.messages[-1]
    assert len(mails(smtp_env)) == 1
    # A real change (Fig fixed and imported) is mailed, replacing the first report.
    document = rerun(first, 3)
    document["products"][1] |= {"outcome": "imported", "weight": 3, "problem": "", "this_run": True}
    path.write_text(json.dumps(document))
    assert report(path, tmp_path / "r.pdf") == 0
    _, second = mails(smtp_env)
    assert body_of(second).endswith(
        f"This report replaces the one sent on {report_email.spoken(mailed_log(path)[0]['time'])}."
    )


@pytest.mark.parametrize("mailed_by", ["this report_email.py", "an earlier report_email.py"])
def test_a_version_2_record_rewritten_as_version_3_mails_nobody(
    smtp_env, tmp_path, product, write_record, write_v3, mailed_by
):
    """run.py moving to version 3 adds problem "" and details {} to every product of a
    re-run: nothing the supplier sees changes, so nothing is mailed again (also after
    a mail whose log line holds the digest that earlier report_email.py wrote)."""
    path = tmp_path / "imported.json"
    write_record(path, [product("001.txt", "Apple", 1), product("002.txt", "Fig", 2)], version=2)
    if mailed_by == "this report_email.py":
        assert report(path, tmp_path / "r.pdf") == 0
    else:
        fields = ("file", "name", "weight", "outcome", "problem", "details", "store_values")
        seen = [
            {key: p.get(key) for key in fields} for p in json.loads(path.read_text())["products"]
        ]
        digest = report_email.canonical_digest({"complete": True, "products": seen})
        line = {
            "time": "2026-11-25T21:05:00+00:00",
            "record_digest": digest,
            "delivered": ["alice@example.com"],
        }
        (tmp_path / "imported.mailed.jsonl").write_text(json.dumps(line) + "\n")
    mailed = len(mails(smtp_env))
    rerun = [product("001.txt", "Apple", 1, this_run=False), product("002.txt", "Fig", 2)]
    write_v3(path, rerun)
    assert report(path, tmp_path / "r.pdf") == 0
    assert len(mails(smtp_env)) == mailed


def test_a_report_mailed_before_the_digest_changed_is_not_mailed_again(
    smtp_env, tmp_path, product, write_record
):
    """A mailed log line written by an earlier report_email.py holds the digest of the
    whole products list: that state was mailed, so it is not mailed again."""
    path = write_record(tmp_path / "imported.json", [product("001.txt", "Apple", 1)], version=2)
    products = json.loads(path.read_text())["products"]
    old = report_email.canonical_digest(products)
    line = {
        "time": "2026-11-25T21:05:00+00:00",
        "record_digest": old,
        "delivered": ["alice@example.com"],
    }
    (tmp_path / "imported.mailed.jsonl").write_text(json.dumps(line) + "\n")
    assert report(path, tmp_path / "r.pdf") == 0
    assert mails(smtp_env) == []


def test_an_updated_record_sends_a_report_that_replaces_the_earlier(
    smtp_env, tmp_path, product, write_record
):
    path = tmp_path / "imported.json"
    write_record(
        path, [product("001.txt", "Apple", 1), product("002.txt", "", None, "failed", "x")]
    )
    assert report(path, tmp_path / "r.pdf") == 0
    first_time = report_email.spoken(mailed_log(path)[0]["time"])
    write_record(path, [product("001.txt", "Apple", 1), product("002.txt", "Pear", 2)])
    assert report(path, tmp_path / "r.pdf") == 0
    _, second = mails(smtp_env)
    assert second["Subject"] == "Upload Completed - Online Fruit Store"
    assert body_of(second) == (
        f"{report_email.SUCCESS_BODY} This report replaces the one sent on {first_time}."
    )
    assert f"This report replaces the one sent on {first_time}." in words(
        pdf_text(tmp_path / "r.pdf")
    )
    assert len({line["record_digest"] for line in mailed_log(path)}) == 2


def test_a_partly_refused_list_says_who_got_it_and_never_mails_them_twice(
    catcher_factory, tmp_path, caplog, monkeypatch, product, write_record
):
    catcher = catcher_factory(refuse=("bob@example.com",))
    monkeypatch.setenv("SMTP_HOST", catcher.host)
    monkeypatch.setenv("SMTP_PORT", str(catcher.port))
    record = write_record(tmp_path / "imported.json", [product("001.txt", "Apple", 1)])
    pdf = tmp_path / "r.pdf"
    args = ["--recipient", "alice@example.com,bob@example.com"]
    assert report(record, pdf, *args) == 1
    assert errors(caplog) == [
        f"sent {pdf} to alice@example.com; not to bob@example.com (the server said"
        " 550 5.1.1 No such user here): correct or remove those addresses, then run again:"
        " only they are mailed"
    ]
    [line] = mailed_log(record)
    assert line["delivered"] == ["alice@example.com"]
    assert line["refused"] == {"bob@example.com": "550 5.1.1 No such user here"}
    assert report(record, pdf, *args) == 1  # only bob is tried again, and still refused
    assert "refused every recipient: bob@example.com: 550 5.1.1" in errors(caplog)[-1]
    assert [m["To"] for m in mails(catcher)] == ["alice@example.com, bob@example.com"]
    assert len(mailed_log(record)) == 1


@pytest.mark.parametrize(
    "recipients, expected",
    [
        ("bob@example.com", "; not sent, the PDF is at {pdf}: run again to send it"),
        (
            "alice@example.com,bob@example.com",
            " 450 4.7.1 Greylisted, try again later): run again to send it to them only",
        ),
    ],
    ids=["alone", "one of two"],
)
def test_a_deferred_recipient_is_told_to_run_again(
    catcher_factory, tmp_path, caplog, monkeypatch, product, write_record, recipients, expected
):
    catcher = catcher_factory(defer=("bob@example.com",))
    monkeypatch.setenv("SMTP_HOST", catcher.host)
    monkeypatch.setenv("SMTP_PORT", str(catcher.port))
    record = write_record(tmp_path / "imported.json", [product("001.txt", "Apple", 1)])
    pdf = tmp_path / "r.pdf"
    assert report(record, pdf, "--recipient", recipients) == 1
    [said] = errors(caplog)
    assert said.endswith(expected.format(pdf=pdf)), said
    assert "450 4.7.1 Greylisted" in said


def test_a_second_run_at_once_sends_nothing(smtp_env, tmp_path, caplog, product, write_record):
    record = write_record(tmp_path / "imported.json", [product("001.txt", "Apple", 1)])
    log_path = tmp_path / "imported.mailed.jsonl"
    with log_path.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a run that is mailing holds it
        assert report(record, tmp_path / "r.pdf") == 2
    assert errors(caplog) == [
        f"another report_email.py is mailing this report (it holds {log_path}); nothing sent"
    ]
    assert mails(smtp_env) == []


def test_smtp_down_exits_1_keeps_the_pdf_and_a_rerun_sends(
    tmp_path, caplog, monkeypatch, catcher_factory, dead_port, product, write_record
):
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(dead_port))
    record = write_record(tmp_path / "r.json", [product("001.txt", "Apple", 1)])
    pdf = tmp_path / "r.pdf"
    assert report(record, pdf) == 1
    assert pdf.exists() and mailed_log(record) == []
    assert errors(caplog) == [
        f"cannot reach SMTP server 127.0.0.1:{dead_port}: connection refused (set SMTP_HOST);"
        f" not sent, the PDF is at {pdf}: run again to send it"
    ]
    catcher = catcher_factory()
    monkeypatch.setenv("SMTP_PORT", str(catcher.port))
    assert report(record, pdf) == 0
    assert len(mails(catcher)) == 1


def test_a_mail_the_server_took_is_sent_however_slow_its_goodbye(
    slow_smtp, tmp_path, monkeypatch, product, write_record
):
    server = slow_smtp(quit_delay=30)
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(server.port))
    monkeypatch.setenv("SMTP_TIMEOUT", "1")
    record = write_record(tmp_path / "r.json", [product("001.txt", "Apple", 1)])
    assert report(record, tmp_path / "r.pdf") == 0
    assert report(record, tmp_path / "r.pdf") == 0
    assert len(server.taken) == 1 and len(mailed_log(record)) == 1


def test_a_server_slow_to_take_the_mail_is_waited_for_within_the_deadline(
    slow_smtp, tmp_path, monkeypatch, product, write_record
):
    """The answer to the mail's end came after SMTP_TIMEOUT: waited for (SMTP_DEADLINE
    bounds it), or the mail the server took would be 'not sent' and go out again."""
    server = slow_smtp(data_delay=3)
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(server.port))
    monkeypatch.setenv("SMTP_TIMEOUT", "1")
    record = write_record(tmp_path / "r.json", [product("001.txt", "Apple", 1)])
    assert report(record, tmp_path / "r.pdf") == 0
    assert report(record, tmp_path / "r.pdf") == 0
    assert len(server.taken) == 1 and len(mailed_log(record)) == 1


def test_a_server_refusing_the_size_is_quoted(
    catcher_factory, tmp_path, caplog, monkeypatch, product, write_record
):
    catcher = catcher_factory(max_size=5000)
    monkeypatch.setenv("SMTP_HOST", catcher.host)
    monkeypatch.setenv("SMTP_PORT", str(catcher.port))
    record = write_record(tmp_path / "r.json", [product("001.txt", "Apple", 1)])
    assert report(record, tmp_path / "r.pdf") == 1
    assert errors(caplog) == [
        f"SMTP server {catcher.host}:{catcher.port} refused the mail from"
        " automation@example.com: 552 Error: message size exceeds fixed maximum message size;"
        f" not sent, the PDF is at {tmp_path / 'r.pdf'}: the server would refuse it again:"
        " change what it names, then run again"
    ]


def test_a_trickling_server_is_cut_at_the_deadline(
    trickling_server, tmp_path, product, write_record
):
    record = write_record(tmp_path / "r.json", [product("001.txt", "Apple", 1)])
    port = trickling_server(b"220-still greeting\r\n", interval=0.2)
    env = {
        "PATH": os.environ["PATH"],
        "USER": "alice",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(port),
        "SMTP_TIMEOUT": "1",
        "SMTP_DEADLINE": "2",
    }
    result = subprocess.run(
        [ROOT / "report_email.py", "--record", str(record), "--pdf", str(tmp_path / "r.pdf")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,  # the hang guard: the stated deadline plus a wide margin
    )
    assert result.returncode == 1
    assert f"127.0.0.1:{port} did not finish within 2 s (SMTP_DEADLINE)" in (result.stderr)
    assert mailed_log(record) == []


# -- thumbnails ---------------------------------------------------------------------


def test_a_decompression_bomb_is_left_out_and_the_report_goes(
    smtp_env, tmp_path, caplog, product, write_record, bomb_jpeg
):
    images = tmp_path / "supplier-data" / "images"
    images.mkdir(parents=True)
    (images / "002.jpeg").write_bytes(bomb_jpeg)
    record = write_record(
        tmp_path / "r.json",
        [
            product("001.txt", "Apple", 1, image=jpeg(images / "001.jpeg")),
            product("002.txt", "Bomb", 2, image=str(images / "002.jpeg")),
        ],
    )
    assert report(record, tmp_path / "r.pdf") == 0
    assert len(mails(smtp_env)) == 1
    [warning] = warnings_of(caplog)
    assert warning.startswith(f"no picture for Bomb (002.txt): {images / '002.jpeg'}: its header")
    assert len(PdfReader(tmp_path / "r.pdf").pages[0].images) == 1


@pytest.mark.parametrize("where", ["link-out", "path-out"])
def test_pictures_are_read_only_from_inside_the_images_folder(
    smtp_env, tmp_path, caplog, product, write_record, where
):
    private = Path(jpeg(tmp_path / "private" / "secret.jpeg"))
    images = tmp_path / "supplier-data" / "images"
    images.mkdir(parents=True)
    (images / "001.jpeg").symlink_to(private)
    image = images / "001.jpeg" if where == "link-out" else private
    record = write_record(tmp_path / "r.json", [product("001.txt", "Apple", 1, image=str(image))])
    assert report(record, tmp_path / "r.pdf") == 0
    assert len(PdfReader(tmp_path / "r.pdf").pages[0].images) == 0
    [warning] = warnings_of(caplog)
    assert warning == f"no picture for Apple (001.txt): {image}: links outside {images}; not read"


def test_past_the_mail_budget_pictures_are_left_out_and_the_mail_says_so(
    smtp_env, tmp_path, product, write_record
):
    images = tmp_path / "supplier-data" / "images"
    products = [
        product(f"{n:03d}.txt", f"Fruit {n}", n, image=jpeg(images / f"{n:03d}.jpeg", n))
        for n in range(250)
    ]
    record = write_record(tmp_path / "r.json", products)
    assert report(record, tmp_path / "r.pdf", "--max-mail-size", "1") == 0
    [message] = smtp_env.messages()
    assert message.stat().st_size < 1_000_000
    mail = mails(smtp_env)[0]
    shown = sum(len(page.images) for page in PdfReader(tmp_path / "r.pdf").pages)
    assert 0 < shown < 250
    note = f"Pictures are shown for {shown} products and left out for {250 - shown}"
    assert f"{note}, to keep this mail under 1 MB." in body_of(mail)
    assert note in words(pdf_text(tmp_path / "r.pdf"))


def test_a_report_too_large_even_without_pictures_is_not_mailed(
    smtp_env, tmp_path, caplog, product, write_record
):
    record = write_record(tmp_path / "r.json", [product("001.txt", "Apple", 1)])
    pdf = tmp_path / "r.pdf"
    assert report(record, pdf, "--max-mail-size", "0.1") == 2
    assert errors(caplog)[-1].endswith(
        f"even without pictures, too large for a mail under 0.1 MB (--max-mail-size);"
        f" it is at {pdf}, not mailed"
    )
    assert mails(smtp_env) == [] and mailed_log(record) == []


# -- secrets and the command line -----------------------------------------------------


def test_a_non_ascii_password_works_and_appears_nowhere(
    catcher_factory, tmp_path, product, write_record
):
    password = "geheim-ÄÖÜ-ß-€"
    catcher = catcher_factory(tls="ssl", user="alice", password=password)
    record = write_record(tmp_path / "r.json", [product("001.txt", "Apple", 1)])
    env = {
        "PATH": os.environ["PATH"],
        "USER": "alice",
        "SMTP_HOST": catcher.host,
        "SMTP_PORT": str(catcher.port),
        "SMTP_SECURITY": "ssl",
        "SMTP_CA_FILE": str(catcher.cert_path),
        "SMTP_USER": "alice",
        "SMTP_PASSWORD": password,
    }
    command = [
        ROOT / "report_email.py",
        "-v",
        "--record",
        str(record),
        "--pdf",
        str(tmp_path / "r.pdf"),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    [eml] = catcher.messages()
    for place in (
        result.stdout + result.stderr,
        eml.read_bytes().decode(),
        pdf_text(tmp_path / "r.pdf"),
    ):
        assert "geheim" not in place
    wrong = subprocess.run(
        [*command, "--resend"],
        env={**env, "SMTP_PASSWORD": "falsch-ÄÖÜ"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert wrong.returncode == 1
    assert "SMTP login refused for user alice: 535" in wrong.stderr
    assert "falsch" not in wrong.stderr and "Ä" not in wrong.stderr


def test_help_shows_examples_exit_statuses_and_the_deadline():
    result = subprocess.run([ROOT / "report_email.py", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for text in (
        "Example:",
        "Exit status: 0 mailed",
        "SMTP_DEADLINE (120 s)",
        "--max-mail-size MB",
    ):
        assert text in result.stdout
    version = subprocess.run([ROOT / "report_email.py", "-V"], capture_output=True, text=True)
    assert version.stdout == "report_email.py 2.0.0\n"


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59", "x"])
def test_a_mailed_time_at_the_calendar_edge_is_shown_as_written(moment):
    assert report_email.spoken(moment) == moment


def test_control_characters_reach_the_log_as_escapes():
    assert report_email.printable("Apple\x1b[31m\nERROR fake") == "Apple\\x1b[31m\\nERROR fake"


def test_a_mailed_log_that_cannot_grow_says_who_got_the_mail(
    smtp_env, tmp_path, product, write_record
):
    """A full disk after the send: exit 2 naming who got it, not 'run again' (which
    would mail them twice). RLIMIT_FSIZE stands for the full disk."""
    import resource

    record = write_record(tmp_path / "imported.json", [product("001.txt", "Apple", 1)])
    limit = 1_000_000
    record.with_name("imported.mailed.jsonl").write_bytes(b"x" * (limit - 10) + b"\n")

    def full_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = subprocess.run(
        [ROOT / "report_email.py", "--record", str(record), "--pdf", str(tmp_path / "r.pdf")],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=full_disk,
    )
    assert result.returncode == 2, result.stderr
    assert "sent to alice@example.com, but cannot write the mailed log" in result.stderr
    assert "File too large; a re-run would mail them again" in result.stderr
    assert len(mails(smtp_env)) == 1


def test_a_line_cut_in_the_mailed_log_does_not_swallow_the_next(
    smtp_env, tmp_path, product, write_record
):
    record = write_record(tmp_path / "imported.json", [product("001.txt", "Apple", 1)])
    log = record.with_name("imported.mailed.jsonl")
    log.write_text('{"time": "2026-11-26T10:00:00+00:00", "record_dig')  # cut by a crash
    assert report(record, tmp_path / "r.pdf") == 0
    _cut, kept = log.read_text().splitlines()
    assert json.loads(kept)["delivered"] == ["alice@example.com"]
    assert report(record, tmp_path / "r.pdf") == 0
    assert len(mails(smtp_env)) == 1


def test_no_internal_address_reaches_the_supplier(smtp_env, tmp_path, product, write_record):
    reasons = [
        "the store did not answer after 3 attempts (http://10.0.0.5:8000/api/fruits/: timed out)",
        "HTTPConnectionPool(host='10.0.0.5', port=8000): Max retries exceeded",
    ]
    failed = [
        product(f"00{n}.txt", "Pear", 5, outcome="failed", reason=why)
        for n, why in enumerate(reasons, 2)
    ]
    record = write_record(
        tmp_path / "imported.json",
        [product("001.txt", "Apple", 1), *failed],
        version=2,
        delivery="/srv/internal/supplier-data",
    )
    assert report(record, tmp_path / "r.pdf") == 0
    text = pdf_text(tmp_path / "r.pdf")
    assert "10.0.0.5" not in text and "/srv/internal" not in text and "http" not in text
    assert "supplier-data" not in text and "Delivery imported November 25, 2026" in text


@pytest.mark.parametrize("version", [1, 2, 3])
def test_the_pdf_names_nothing_of_our_machine(tmp_path, product, write_record, write_v3, version):
    """The delivery's folder, our user, host and paths stay ours, in the text and the
    PDF's metadata alike."""
    folder = "alice-home-scratch-7f3e"
    top = {
        "descriptions": f"/home/alice/scratch/{folder}/descriptions",
        "images": f"/home/alice/scratch/{folder}/images",
    }
    if version > 1:
        top["delivery"] = f"/home/alice/scratch/{folder}"
    products = [product("001.txt", "Apple", 1), product("002.txt", "Fig", None, "failed", "x")]
    path = tmp_path / folder / "imported.json"
    path.parent.mkdir()
    if version == 3:
        write_v3(path, products, **top)
    else:
        write_record(path, products, version=version, **top)
    pdf = tmp_path / folder / "processed.pdf"
    assert report(path, pdf, "--save-dir", str(tmp_path / "outbox")) == 0
    reader = PdfReader(pdf)
    shown = words(pdf_text(pdf)) + " " + " ".join(map(str, (reader.metadata or {}).values()))
    for ours in (folder, "alice", "scratch", "/home", socket.gethostname(), str(tmp_path)):
        assert ours not in shown, ours


def test_the_largest_weight_run_py_records_is_reported(tmp_path, product, write_record):
    """run.py takes weights up to the store's 32-bit maximum; so does the report."""
    biggest = 2**31 - 1
    record = write_record(
        tmp_path / "imported.json", [product("001.txt", "Apple", biggest)], version=2
    )
    pdf = tmp_path / "r.pdf"
    assert report(record, pdf, "--save-dir", str(tmp_path / "outbox")) == 0
    assert f"weight: {biggest} lbs" in words(pdf_text(pdf))


def test_a_delivery_whose_every_weight_is_wrong_is_mailed_to_the_supplier(
    store, smtp_env, tmp_path, run_script, catalog
):
    """The whole way, on the stand-in store: run.py imports nothing and exits 1; the
    supplier, who alone can fix the weights, gets a report naming each file."""
    delivery = catalog(tmp_path / "supplier-data", ["001", "002", "003"])
    for text in (delivery / "descriptions").iterdir():
        name, _, rest = text.read_text(encoding="utf-8").partition("\n")
        text.write_text(f"{name}\nabout 3 pounds\n{rest.partition(chr(10))[2]}", encoding="utf-8")
    env = {"SUPPLIER_DATA": str(delivery)}
    uploaded = run_script("supplier_image_upload.py", "--url", store.url, env=env)
    assert uploaded.returncode == 0, uploaded.stderr
    imported = run_script("run.py", "--url", store.url, env=env)
    assert imported.returncode == 1, imported.stderr
    pdf = tmp_path / "processed.pdf"
    reported = run_script("report_email.py", "--pdf", str(pdf), env=env)
    assert reported.returncode == 0, reported.stderr
    [mail] = mails(smtp_env)
    assert mail["Subject"] == "Upload Completed with 3 failures - Online Fruit Store"
    text = words(pdf_text(pdf))
    assert text.startswith(today_title()) and "name:" not in text
    assert "Needs your attention (3 of 3 products)" in text
    record = json.loads((delivery / "imported.json").read_text(encoding="utf-8"))
    for entry in record["products"]:
        said = report_email.advice(entry)
        row = text[text.index(f"({entry['file']}) Not imported") :][:300]
        assert f"{said.problem} What to do: {said.todo}" in row, row
        assert entry["file"] in said.todo
