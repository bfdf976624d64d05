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
    first: dict[str, subprocess.CompletedProcess]

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


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The lab's first run, once for the module: the store, the mail server and the
    delivery stay for every test below. /tmp/processed.pdf is the lab's path, shared
    by every test process, so it is held for the module."""
    folder = tmp_path_factory.mktemp("lab")
    home = folder / "home"
    make_delivery(home, count=COUNT, size=(900, 600))
    store = StoreProcess(folder / "store").start()
    catcher = MailCatcher(folder / "mail").start()
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
            lab = Lab(home, store, catcher, env, {})
            lab.first = lab.run_steps()
            yield lab
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


def test_every_step_succeeds_quietly_enough_to_read(lab):
    for script, done in lab.first.items():
        assert done.returncode == 0, f"{script}: {done.stdout}{done.stderr}"
        assert "Traceback" not in done.stderr, f"{script}: {done.stderr}"


def test_each_tiff_has_a_600x400_rgb_jpeg_beside_it(lab):
    images = lab.data / "images"
    for stem in STEMS:
        with Image.open(images / f"{stem}.jpeg") as jpeg:
            assert (jpeg.format, jpeg.size, jpeg.mode) == ("JPEG", (600, 400), "RGB"), stem
    assert sorted(p.name for p in images.glob("*.jpeg")) == [f"{s}.jpeg" for s in STEMS]


def test_the_store_holds_each_picture_under_its_own_name_once(lab):
    stored = sorted(p.name for p in lab.store.catalog.images.iterdir())
    assert stored == [f"{stem}.jpeg" for stem in STEMS]
    for stem in STEMS:
        served = requests.get(f"{lab.store.url}media/images/{stem}.jpeg", timeout=10)
        assert served.status_code == 200, stem
        assert served.content == (lab.data / "images" / f"{stem}.jpeg").read_bytes(), stem


def test_products_carry_the_lab_fields_in_the_delivery_order(lab):
    fruits = lab.store.catalog.fruits()
    expected = [
        {"name": name, "weight": weight, "description": text, "image_name": f"{stem}.jpeg"}
        for stem, (name, weight, text) in zip(STEMS, descriptions(lab), strict=True)
    ]
    assert [{k: f[k] for k in expected[0]} for f in fruits] == expected
    assert [f["name"] for f in fruits] == [name for name, _ in FRUITS[:COUNT]]


def test_the_api_lists_the_products_in_the_delivery_order(lab):
    listed = requests.get(f"{lab.store.url}fruits/", timeout=10).json()
    assert [fruit["name"] for fruit in listed] == [name for name, _, _ in descriptions(lab)]


def test_the_pdf_has_the_lab_title_and_a_name_and_weight_per_product_in_order(lab):
    text = pdf_text(LAB_PDF)
    assert text.splitlines()[0] == lab_title()
    at = 0
    for name, weight, _ in descriptions(lab):
        at = text.index(f"name: {name}", at)
        at = text.index(f"weight: {weight} lbs", at)


def test_one_mail_with_the_lab_sender_subject_body_and_pdf(lab):
    [mail] = mails(lab.catcher)
    assert mail["From"] == LAB_SENDER
    assert mail["To"] == "student@example.com"
    assert mail["Subject"] == LAB_SUBJECT
    assert mail.get_body(("plain",)).get_content().strip() == LAB_BODY
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_filename() == "processed.pdf"
    assert attachment.get_content() == LAB_PDF.read_bytes()


def test_a_second_run_changes_nothing_and_mails_nobody(lab):
    before = store_state(lab.store)
    again = lab.run_steps()
    for script, done in again.items():
        assert done.returncode == 0, f"{script}: {done.stdout}{done.stderr}"
    after = store_state(lab.store)
    assert after == before
    assert len(mails(lab.catcher)) == 1


def test_the_health_check_with_no_options_mails_only_the_lab_alerts(lab):
    """The machine running the tests may really be busy: an alert is allowed, but only
    the lab's, with the lab's body; a healthy run says nothing."""
    before = len(mails(lab.catcher))
    done = lab.run("health_check.py")
    assert done.returncode in (0, 1, 2), done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    for mail in mails(lab.catcher)[before:]:
        assert mail["From"] == LAB_SENDER
        assert mail["Subject"].startswith("Error - "), mail["Subject"]
        assert LAB_ALERT_BODY in mail.get_body(("plain",)).get_content()
    if done.returncode == 0:
        assert done.stdout.strip() == "" or done.stdout.startswith("HEALTH OK"), done.stdout
