"""The four delivery scripts one after the other, as a store runs them every week:
two suppliers' deliveries both numbered 001, 002, ..., against the Django stand-in
store and a real SMTP server; the store, the record and the mailed PDF must agree."""

from __future__ import annotations

import email
from email import policy
from pathlib import Path

import pytest
from helper import pdf_text

from make_delivery import make_delivery, photo_like

PIPELINE = ("changeImage.py", "supplier_image_upload.py", "run.py", "report_email.py")


def delivery_of_week(tmp_path: Path, week: int, count: int = 3) -> Path:
    """A delivery numbered 001.. whose photos and products differ from week to week."""
    root = make_delivery(tmp_path / f"week{week}", count=count, size=(300, 200))
    for number in range(1, count + 1):
        stem = f"{number:03d}"
        photo_like((300, 200), seed=week * 100 + number).save(root / "images" / f"{stem}.tiff")
        text = f"Week {week} fruit {number}\n{week * 100 + number} lbs\nGrown in week {week}.\n"
        (root / "descriptions" / f"{stem}.txt").write_text(text, encoding="utf-8")
    return root


def attached_pdf(mail: Path) -> bytes:
    message = email.message_from_bytes(mail.read_bytes(), policy=policy.default)
    [part] = [p for p in message.iter_attachments() if p.get_content_type() == "application/pdf"]
    return part.get_content()


@pytest.fixture
def pipeline_env(smtp_env, tmp_path: Path) -> dict[str, str]:
    return {"USER": "alice", "HOME": str(tmp_path)}


def run_week(run_script, store_url: str, delivery: Path, env: dict[str, str], pdf: Path) -> None:
    week_env = {**env, "SUPPLIER_DATA": str(delivery), "CATALOG_URL": store_url}
    for script in PIPELINE:
        extra = ["--pdf", str(pdf)] if script == "report_email.py" else []
        done = run_script(script, *extra, env=week_env, timeout=120)
        assert done.returncode == 0, f"{script}: {done.stdout}{done.stderr}"
        assert "Traceback" not in done.stderr


def test_two_deliveries_numbered_alike_each_land_once_with_their_own_pictures(
    store, smtp_env, pipeline_env, run_script, catalog_check, tmp_path
):
    week1, week2 = delivery_of_week(tmp_path, 1), delivery_of_week(tmp_path, 2)
    run_week(run_script, store.url, week1, pipeline_env, tmp_path / "week1.pdf")
    # The same store, spelt another way, as a second machine's crontab might.
    other_spelling = store.url.replace("127.0.0.1", "localhost").rstrip("/")
    run_week(run_script, other_spelling, week2, pipeline_env, tmp_path / "week2.pdf")

    catalog_check(store, week1, week2)
    mails = smtp_env.messages()
    assert len(mails) == 2
    week2_report = pdf_text(tmp_path / "week2.pdf")
    assert attached_pdf(mails[1]) == (tmp_path / "week2.pdf").read_bytes()
    for number in (1, 2, 3):
        assert f"name: Week 2 fruit {number}" in week2_report
        assert f"weight: {200 + number} lbs" in week2_report
        assert f"Week 1 fruit {number}" not in week2_report


def test_the_report_is_mailed_once_per_state_of_the_delivery(
    store, smtp_env, pipeline_env, run_script, tmp_path
):
    week1 = delivery_of_week(tmp_path, 1)
    pdf = tmp_path / "week1.pdf"
    run_week(run_script, store.url, week1, pipeline_env, pdf)
    again = run_script(
        "report_email.py", "--pdf", str(pdf), env={**pipeline_env, "SUPPLIER_DATA": str(week1)}
    )
    assert again.returncode == 0, again.stderr
    assert len(smtp_env.messages()) == 1
    assert "sent" in (again.stdout + again.stderr).lower()


def test_a_pipeline_run_twice_changes_nothing_in_the_store(
    store, smtp_env, pipeline_env, run_script, catalog_check, tmp_path
):
    week1 = delivery_of_week(tmp_path, 1)
    run_week(run_script, store.url, week1, pipeline_env, tmp_path / "a.pdf")
    before = (store.catalog.fruits(), sorted(p.name for p in store.catalog.images.iterdir()))
    run_week(run_script, store.url, week1, pipeline_env, tmp_path / "b.pdf")
    after = (store.catalog.fruits(), sorted(p.name for p in store.catalog.images.iterdir()))
    assert after == before
    catalog_check(store, week1)
