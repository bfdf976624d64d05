"""The lab's own contract: the five steps run as the lab runs them, with no options,
on a lab-shaped delivery in the user's home, against the Django stand-in store and a
real SMTP server. What the lab's user sees is checked here, so that no guarantee for a
busier store can bend it unnoticed: the store's names, each product's fields and
image_name, the catalog's order, the PDF's title and lines, one mail with the lab's
sender, subject, body and attachment, and a second run that changes nothing and mails
nobody.

Only the store's address and the mail server's port come from the environment (the
lab's are http://localhost/ and localhost:25, which a test cannot take)."""

from __future__ import annotations

import datetime
import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from helper import mails, pdf_text
from PIL import Image

from mailcatcher import MailCatcher
from make_delivery import FRUITS, make_delivery
from store import StoreProcess

ROOT = Path(__file__).resolve().parent.parent
LAB_STEPS = ("changeImage.py", "supplier_image_upload.py", "run.py", "report_email.py")
LAB_PDF = Path("/tmp/processed.pdf")
LAB_SENDER = "automation@example.com"
LAB_SUBJECT = "Upload Completed - Online Fruit Store"
LAB_BODY = (
    "All fruits are uploaded to our website successfully. "
    "A detailed list is attached to this email."
)
LAB_ALERT_BODY = "Please check your system and resolve the issue as soon as possible."
COUNT = 10
STEMS = [f"{number:03d}" for number in range(1, COUNT + 1)]


@dataclass
class Lab:
    home: Path
    store: StoreProcess
    catcher: MailCatcher
    env: dict[str, str]

    @property
    def data(self) -> Path:
        return self.home / "supplier-data"

    def run(self, script: str) -> subprocess.CompletedProcess:
        """./script with no arguments, from the lab user's home, as the lab types it."""
        return subprocess.run(
            [str(ROOT / script)],
            cwd=self.home,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    def run_steps(self) -> dict[str, subprocess.CompletedProcess]:
        return {script: self.run(script) for script in LAB_STEPS}


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """A lab-shaped delivery in the user's home, the store and the mail server, before
    the first step. /tmp/processed.pdf is the lab's path, shared by every test
    process, so it is held while the lab runs."""
    home = tmp_path / "home"
    make_delivery(home, count=COUNT, size=(900, 600))
    store = StoreProcess(tmp_path / "store").start()
    catcher = MailCatcher(tmp_path / "mail").start()
    env = {
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"],
        "HOME": str(home),
        "USER": "student",
        "LANG": "C.UTF-8",
        "CATALOG_URL": store.url,
        "SMTP_HOST": catcher.host,
        "SMTP_PORT": str(catcher.port),
    }
    with open("/tmp/.processed.pdf.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield Lab(home, store, catcher, env)
        finally:
            store.stop()
            catcher.stop()


def descriptions(lab: Lab) -> list[tuple[str, int, str]]:
    """(name, weight, description) per description file, in the delivery's order."""
    found = []
    for stem in STEMS:
        name, weight, *rest = (lab.data / "descriptions" / f"{stem}.txt").read_text().splitlines()
        found.append((name, int(weight.split()[0]), "\n".join(rest).strip()))
    return found


def store_state(store: StoreProcess) -> tuple[list[dict], list[str]]:
    return store.catalog.fruits(), sorted(p.name for p in store.catalog.images.iterdir())


def lab_title() -> str:
    return f"Processed Update on {datetime.date.today():%B %d, %Y}"


def assert_every_step_succeeded(done: dict[str, subprocess.CompletedProcess]) -> None:
    for script, result in done.items():
        assert result.returncode == 0, f"{script}: {result.stdout}{result.stderr}"
        assert "Traceback" not in result.stderr, f"{script}: {result.stderr}"


def assert_each_tiff_has_a_600x400_rgb_jpeg_beside_it(lab: Lab) -> None:
    images = lab.data / "images"
    for stem in STEMS:
        with Image.open(images / f"{stem}.jpeg") as jpeg:
            assert (jpeg.format, jpeg.size, jpeg.mode) == ("JPEG", (600, 400), "RGB"), stem
    assert sorted(p.name for p in images.glob("*.jpeg")) == [f"{s}.jpeg" for s in STEMS]


def assert_the_store_holds_each_picture_under_its_own_name_once(lab: Lab) -> None:
    stored = sorted(p.name for p in lab.store.catalog.images.iterdir())
    assert stored == [f"{stem}.jpeg" for stem in STEMS]
    for stem in STEMS:
        served = requests.get(f"{lab.store.url}media/images/{stem}.jpeg", timeout=30)
        assert served.status_code == 200, stem
        assert served.content == (lab.data / "images" / f"{stem}.jpeg").read_bytes(), stem


def assert_products_carry_the_lab_fields_in_the_delivery_order(lab: Lab) -> None:
    fruits = lab.store.catalog.fruits()
    expected = [
        {"name": name, "weight": weight, "description": text, "image_name": f"{stem}.jpeg"}
        for stem, (name, weight, text) in zip(STEMS, descriptions(lab), strict=True)
    ]
    assert [{k: f[k] for k in expected[0]} for f in fruits] == expected
    assert [f["name"] for f in fruits] == [name for name, _ in FRUITS[:COUNT]]
    listed = requests.get(f"{lab.store.url}fruits/", timeout=30).json()
    assert [fruit["name"] for fruit in listed] == [name for name, _, _ in descriptions(lab)]


def assert_the_pdf_has_the_lab_title_and_a_name_and_weight_per_product(lab: Lab) -> None:
    text = pdf_text(LAB_PDF)
    assert text.splitlines()[0] == lab_title()
    at = 0
    for name, weight, _ in descriptions(lab):
        at = text.index(f"name: {name}", at)
        at = text.index(f"weight: {weight} lbs", at)


def assert_one_mail_with_the_lab_sender_subject_body_and_pdf(lab: Lab) -> None:
    [mail] = mails(lab.catcher)
    assert mail["From"] == LAB_SENDER
    assert mail["To"] == "student@example.com"
    assert mail["Subject"] == LAB_SUBJECT
    assert mail.get_body(("plain",)).get_content().strip() == LAB_BODY
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_filename() == "processed.pdf"
    assert attachment.get_content() == LAB_PDF.read_bytes()


def test_the_lab_with_no_options_shows_what_the_lab_shows_and_a_second_run_changes_nothing(lab):
    """One test, as the lab is one sequence: each step's result is what the next reads."""
    assert_every_step_succeeded(lab.run_steps())
    assert_each_tiff_has_a_600x400_rgb_jpeg_beside_it(lab)
    assert_the_store_holds_each_picture_under_its_own_name_once(lab)
    assert_products_carry_the_lab_fields_in_the_delivery_order(lab)
    assert_the_pdf_has_the_lab_title_and_a_name_and_weight_per_product(lab)
    assert_one_mail_with_the_lab_sender_subject_body_and_pdf(lab)

    before = store_state(lab.store)
    assert_every_step_succeeded(lab.run_steps())
    assert store_state(lab.store) == before
    assert len(mails(lab.catcher)) == 1


def test_the_health_check_with_no_options_mails_only_the_lab_alerts(tmp_path, mail_catcher):
    """The machine running the tests may really be busy: an alert is allowed, but only
    the lab's, with the lab's body; a healthy run says nothing."""
    env = {
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"],
        "HOME": str(tmp_path),
        "USER": "student",
        "SMTP_HOST": mail_catcher.host,
        "SMTP_PORT": str(mail_catcher.port),
    }
    done = subprocess.run(
        [str(ROOT / "health_check.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode in (0, 2), done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    for mail in mails(mail_catcher):
        assert mail["From"] == LAB_SENDER
        assert mail["To"] == "student@example.com"
        assert mail["Subject"].startswith("Error - "), mail["Subject"]
        assert LAB_ALERT_BODY in mail.get_body(("plain",)).get_content()
    if done.returncode == 0:
        assert done.stdout.strip() == "", done.stdout
        assert mails(mail_catcher) == []
