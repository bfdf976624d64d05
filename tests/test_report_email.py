"""report_email.py: the supplier gets a truthful PDF by mail, through the catcher."""

from __future__ import annotations

import datetime
import json
import logging
import os
import subprocess
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from pypdf import PdfReader

import report_email
import run
from make_delivery import make_delivery

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def info_logs(caplog, monkeypatch):
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("USER", "alice")
    for name in ("REPORT_RECIPIENTS", "REPORT_SUBJECT", "REPORT_SENDER", "REPORT_PDF"):
        monkeypatch.delenv(name, raising=False)


def product(file, name, weight, outcome="imported", reason="", image=None, id_=1) -> dict:
    return {
        "file": file,
        "name": name,
        "weight": weight,
        "image_name": Path(file).stem + ".jpeg",
        "image_path": image,
        "id": id_,
        "outcome": outcome,
        "reason": reason,
    }


def write_record(path: Path, products: list[dict]) -> Path:
    path.write_text(json.dumps({"version": 1, "products": products}))
    return path


def report(record: Path, pdf: Path, *extra: str) -> int:
    return report_email.main(["--record", str(record), "--pdf", str(pdf), *extra])


def mails(catcher):
    return [message_from_bytes(p.read_bytes(), policy=policy.default) for p in catcher.messages()]


def pdf_text(path: Path) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(path).pages)


def today_title() -> str:
    return report_email.report_title(datetime.date.today())


def test_title_is_english_with_a_two_digit_day():
    day = datetime.date(2026, 11, 5)
    assert report_email.report_title(day) == "Processed Update on November 05, 2026"


def test_after_run_py_the_supplier_gets_the_lab_mail_and_pdf(store, smtp_env, tmp_path):
    data = make_delivery(tmp_path, count=3, size=(30, 20))
    assert (
        run.main(
            [
                "--url",
                store.url,
                "--descriptions",
                str(data / "descriptions"),
                "--images",
                str(data / "images"),
                "--record",
                str(data / "imported.json"),
            ]
        )
        == 0
    )
    pdf = tmp_path / "processed.pdf"
    assert report(data / "imported.json", pdf) == 0
    [mail] = mails(smtp_env)
    assert mail["From"] == "automation@example.com"
    assert mail["To"] == "alice@example.com"
    assert mail["Subject"] == "Upload Completed - Online Fruit Store"
    body = mail.get_body(preferencelist=("plain",)).get_content().strip()
    assert body == report_email.SUCCESS_BODY
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_filename() == "processed.pdf"
    assert attachment.get_content() == pdf.read_bytes()
    text = pdf_text(pdf)
    assert text.splitlines()[0] == today_title()
    for fruit in store.catalog.fruits():
        assert f"name: {fruit['name']}\nweight: {fruit['weight']} lbs" in text
    assert "3 products in the store" in text


def test_failures_change_subject_body_and_pdf(smtp_env, tmp_path):
    record = write_record(
        tmp_path / "imported.json",
        [
            product("001.txt", "Apple", 500),
            product("002.txt", "Pear", 20, "already in store"),
            product("003.txt", "", None, "failed", "003.txt line 2: weight 'heavy' is bad"),
            product("004.txt", "Plum", 7, "failed", "004.txt: the store rejected weight: x"),
            product("005.txt", "Kiwi", 9),
        ],
    )
    pdf = tmp_path / "r.pdf"
    assert report(record, pdf) == 0
    [mail] = mails(smtp_env)
    assert mail["Subject"] == "Upload Completed with 2 failures - Online Fruit Store"
    body = mail.get_body(preferencelist=("plain",)).get_content()
    assert "2 of 5 fruits could not be uploaded" in body
    assert "successfully" in body and "All fruits" not in body
    assert "2 fruits were uploaded successfully" in body
    assert "1 fruit was already on the website and is listed as such" in body
    text = " ".join(pdf_text(pdf).split())
    assert "name: Apple weight: 500 lbs" in text and "name: Kiwi weight: 9 lbs" in text
    assert "name: Pear" not in text and "name: Plum" not in text
    assert "already in store" in text
    assert "failed: 003.txt line 2: weight 'heavy' is bad" in text
    assert "failed: 004.txt: the store rejected weight: x" in text


def test_one_failure_is_singular(smtp_env, tmp_path):
    record = write_record(
        tmp_path / "r.json",
        [product("001.txt", "Apple", 1), product("002.txt", "X", 1, "failed", "no")],
    )
    assert report(record, tmp_path / "r.pdf") == 0
    assert mails(smtp_env)[0]["Subject"] == "Upload Completed with 1 failure - Online Fruit Store"


def test_supplier_markup_is_printed_literally(smtp_env, tmp_path):
    record = write_record(tmp_path / "r.json", [product("001.txt", "Cherry & <b>Berry</b>", 3)])
    assert report(record, tmp_path / "r.pdf") == 0
    assert "name: Cherry & <b>Berry</b>" in pdf_text(tmp_path / "r.pdf")


def test_no_record_exits_2_with_advice(tmp_path, caplog):
    assert report(tmp_path / "missing.json", tmp_path / "r.pdf") == 2
    [line] = [r.getMessage() for r in caplog.records if r.name == "report_email"]
    assert line == f"no import record at {tmp_path / 'missing.json'}: run run.py first"


def test_corrupt_record_exits_2(tmp_path, caplog):
    (tmp_path / "r.json").write_text("{not json")
    assert report(tmp_path / "r.json", tmp_path / "r.pdf") == 2
    assert "is unreadable" in caplog.records[0].getMessage()


def test_a_record_without_a_product_list_exits_2(tmp_path, caplog):
    (tmp_path / "r.json").write_text('{"version": 1, "products": "none"}')
    assert report(tmp_path / "r.json", tmp_path / "r.pdf") == 2
    assert "has no product list: run run.py again" in caplog.records[0].getMessage()
    assert not (tmp_path / "r.pdf").exists()


def test_nothing_imported_sends_no_mail(smtp_env, tmp_path, caplog):
    record = write_record(
        tmp_path / "r.json",
        [
            product("001.txt", "Apple", 1, "already in store"),
            product("002.txt", "", None, "failed", "x"),
        ],
    )
    assert report(record, tmp_path / "r.pdf") == 0
    assert mails(smtp_env) == []
    assert not (tmp_path / "r.pdf").exists()
    lines = [r.getMessage() for r in caplog.records if r.name == "report_email"]
    assert lines == ["nothing was imported (1 failed, 1 already in store); no mail sent"]


def test_smtp_down_exits_1_keeps_the_pdf_and_a_rerun_sends(
    tmp_path, caplog, monkeypatch, catcher_factory, dead_port
):
    port = dead_port
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(port))
    record = write_record(tmp_path / "r.json", [product("001.txt", "Apple", 1)])
    pdf = tmp_path / "r.pdf"
    assert report(record, pdf) == 1
    assert pdf.exists()
    error = next(r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert error == (
        f"cannot reach SMTP server 127.0.0.1:{port}: connection refused (set SMTP_HOST);"
        f" the PDF is at {pdf}, run again to resend"
    )
    catcher = catcher_factory()
    monkeypatch.setenv("SMTP_PORT", str(catcher.port))
    assert report(record, pdf) == 0
    assert len(mails(catcher)) == 1


def test_sender_recipients_and_subject_can_be_overridden(smtp_env, tmp_path, monkeypatch):
    record = write_record(tmp_path / "r.json", [product("001.txt", "Apple", 1)])
    args = ["--sender", "shop@example.org", "--recipient", "a@x.org", "--recipient", "b@x.org"]
    assert report(record, tmp_path / "r.pdf", *args, "--subject", "Done - Shop") == 0
    monkeypatch.setenv("REPORT_RECIPIENTS", "c@x.org, d@x.org")
    monkeypatch.setenv("REPORT_SUBJECT", "Env subject")
    assert report(record, tmp_path / "r.pdf") == 0
    first, second = mails(smtp_env)
    assert (first["From"], first["To"], first["Subject"]) == (
        "shop@example.org",
        "a@x.org, b@x.org",
        "Done - Shop",
    )
    assert (second["To"], second["Subject"]) == ("c@x.org, d@x.org", "Env subject")


def test_header_injection_through_the_subject_is_refused(smtp_env, tmp_path, caplog):
    record = write_record(tmp_path / "r.json", [product("001.txt", "Apple", 1)])
    assert report(record, tmp_path / "r.pdf", "--subject", "Hi\nBcc: x@example.com") == 2
    assert mails(smtp_env) == []


def test_save_dir_writes_the_mail_as_eml(tmp_path):
    record = write_record(tmp_path / "r.json", [product("001.txt", "Apple", 1)])
    assert report(record, tmp_path / "r.pdf", "--save-dir", str(tmp_path / "outbox")) == 0
    [eml] = list((tmp_path / "outbox").glob("*.eml"))
    mail = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert mail["Subject"] == "Upload Completed - Online Fruit Store"
    assert next(iter(mail.iter_attachments())).get_content() == (tmp_path / "r.pdf").read_bytes()


def test_no_arguments_under_home_after_run_py(store, mail_catcher, tmp_path):
    data = make_delivery(tmp_path, count=2, size=(30, 20))
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "USER": "supplier",
        "CATALOG_URL": store.url,
        "SMTP_HOST": mail_catcher.host,
        "SMTP_PORT": str(mail_catcher.port),
    }
    for name in ("SUPPLIER_DATA", "IMPORT_RECORD", "REPORT_PDF", "SMTP_SAVE_DIR"):
        env.pop(name, None)
    subprocess.run([ROOT / "run.py", "-q"], env=env, check=True)
    assert (data / "imported.json").exists()
    result = subprocess.run([ROOT / "report_email.py"], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    [mail] = mails(mail_catcher)
    assert mail["To"] == "supplier@example.com"
    pdf = Path("/tmp/processed.pdf")
    assert next(iter(mail.iter_attachments())).get_content() == pdf.read_bytes()
    assert pdf_text(pdf).splitlines()[0] == today_title()
