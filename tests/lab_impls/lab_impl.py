#!/usr/bin/env python3
"""A learner's lab, written as the lab asks, to grade with sandbox/lab_check.py.

One file, one subcommand per step (convert, upload, post, report, health). It
reads the box's addresses from env.sh's variables, as the box asks a learner's
script to. LAB_FAULT=NAME makes it wrong in one way, as learners' scripts are:

    not_resized, rgba_png            step 1
    upload_twice                     step 2
    weight_string, description_twice step 3
    pdf_no_date, mail_no_attachment  step 4
    mail_twice                       step 4

Usage:
    python tests/lab_impls/lab_impl.py convert|upload|post|report|health
"""

from __future__ import annotations

import datetime
import os
import smtplib
import sys
from email.message import EmailMessage
from pathlib import Path

import psutil
import requests
from PIL import Image
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer

FAULT = os.environ.get("LAB_FAULT", "")
DATA = Path.home() / "supplier-data"
URL = os.environ.get("CATALOG_URL", "http://localhost/")
PDF = os.environ.get("REPORT_PDF", "/tmp/processed.pdf")
SENDER = "automation@example.com"
RECIPIENT = f"{os.environ.get('USER', 'student')}@example.com"


def convert() -> None:
    for path in sorted((DATA / "images").glob("*.tiff")):
        with Image.open(path) as image:
            target = path.with_suffix(".jpeg")
            if FAULT == "rgba_png":
                image.resize((600, 400)).save(target, "PNG")
            elif FAULT == "not_resized":
                image.convert("RGB").save(target, "JPEG")
            else:
                image.convert("RGB").resize((600, 400)).save(target, "JPEG")


def upload() -> None:
    for path in sorted((DATA / "images").glob("*.jpeg")):
        for _ in range(2 if FAULT == "upload_twice" else 1):
            with path.open("rb") as opened:
                requests.post(
                    URL + "upload/", files={"file": opened}, timeout=30
                ).raise_for_status()


def descriptions() -> list[dict]:
    found = []
    for path in sorted((DATA / "descriptions").glob("*.txt")):
        name, weight, description = path.read_text().splitlines()[:3]
        found.append(
            {
                "name": name,
                "weight": int(weight.split()[0]),
                "description": description,
                "image_name": path.stem + ".jpeg",
            }
        )
    return found


def post() -> None:
    for fruit in descriptions():
        if FAULT == "weight_string":
            fruit["weight"] = str(fruit["weight"])
        for _ in range(2 if FAULT == "description_twice" else 1):
            requests.post(URL + "fruits/", json=fruit, timeout=30).raise_for_status()


def send(subject: str, body: str, attachment: Path | None = None) -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = SENDER, RECIPIENT, subject
    message.set_content(body)
    if attachment is not None:
        message.add_attachment(
            attachment.read_bytes(), maintype="application", subtype="pdf", filename=attachment.name
        )
    host = os.environ.get("SMTP_HOST", "localhost")
    with smtplib.SMTP(host, int(os.environ.get("SMTP_PORT", "25")), timeout=30) as server:
        server.send_message(message)


def report() -> None:
    today = datetime.date.today().strftime("%B %d, %Y")
    title = "Processed Update" if FAULT == "pdf_no_date" else f"Processed Update on {today}"
    lines = "<br/><br/>".join(
        f"name: {f['name']}<br/>weight: {f['weight']} lbs" for f in descriptions()
    )
    styles = getSampleStyleSheet()
    SimpleDocTemplate(PDF).build(
        [Paragraph(title, styles["h1"]), Spacer(1, 20), Paragraph(lines, styles["BodyText"])]
    )
    body = (
        "All fruits are uploaded to our website successfully. "
        "A detailed list is attached to this email."
    )
    attached = None if FAULT == "mail_no_attachment" else Path(PDF)
    for _ in range(2 if FAULT == "mail_twice" else 1):
        send("Upload Completed - Online Fruit Store", body, attached)


def health() -> None:
    if psutil.cpu_percent(1) > 80:
        send(
            "Error - CPU usage is over 80%",
            "Please check your system and resolve the issue as soon as possible.",
        )


if __name__ == "__main__":
    {"convert": convert, "upload": upload, "post": post, "report": report, "health": health}[
        sys.argv[1]
    ]()
