#!/usr/bin/env python3
"""Email the supplier a PDF of what run.py imported, truthfully.

Reads run.py's record (never the descriptions again), builds the PDF with
the lab's lines for every imported product and a table of every product
with its outcome, and mails it through emails.py. When products failed, the
subject, body and PDF say so; products the store already had are listed as
such. With nothing imported, no mail is sent.

Usage:
    ./report_email.py [--record FILE] [--pdf FILE] [--sender ADDR]
                      [--recipient ADDR ...] [--subject TEXT] [--save-dir DIR]

Example:
    $ ./report_email.py
    INFO sent /tmp/processed.pdf to alice@example.com: Upload Completed - Online Fruit Store
    $ ./report_email.py
    ERROR cannot reach SMTP server localhost:25: connection refused (set SMTP_HOST)

Exit status: 0 mailed (or nothing to mail), 1 the mail could not be sent
(the PDF stays; run again to resend), 2 no usable record or a usage error.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import json
import logging
import os
import sys
from pathlib import Path

import emails
import reports

EXIT_OK, EXIT_NOT_SENT, EXIT_USAGE = 0, 1, 2
DEFAULT_PDF = "/tmp/processed.pdf"
DEFAULT_SENDER = "automation@example.com"
DEFAULT_SUBJECT = "Upload Completed - Online Fruit Store"
SUCCESS_BODY = (
    "All fruits are uploaded to our website successfully. "
    "A detailed list is attached to this email."
)
# English month names whatever the locale: the title is part of the contract.
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]

log = logging.getLogger("report_email")


class BadRecord(Exception):
    """The record is missing or unusable; the message says what to do."""


# -- pure functions -------------------------------------------------------------


def report_title(day: datetime.date) -> str:
    """'Processed Update on November 05, 2026'."""
    return f"Processed Update on {MONTHS[day.month - 1]} {day.day:02d}, {day.year}"


def lab_paragraph(products: list[dict]) -> str:
    """The lab's lines for every imported product, supplier text escaped."""
    return "".join(
        f"name: {reports.markup(p['name'])}<br/>weight: {p['weight']} lbs<br/><br/>"
        for p in products
        if p["outcome"] == "imported"
    )


def count(products: list[dict], outcome: str) -> int:
    return sum(p["outcome"] == outcome for p in products)


def plural(number: int, word: str) -> str:
    return f"{number} {word}" + ("" if number == 1 else "s")


def subject_for(products: list[dict], subject: str) -> str:
    failed = count(products, "failed")
    if not failed:
        return subject
    head, dash, tail = subject.partition(" - ")
    return f"{head} with {plural(failed, 'failure')}{dash}{tail}"


def body_for(products: list[dict]) -> str:
    failed, in_store = count(products, "failed"), count(products, "already in store")
    imported = count(products, "imported")
    if not failed:
        body = SUCCESS_BODY
    else:
        body = (
            f"{failed} of {len(products)} fruits could not be uploaded to our website;"
            " the attached list shows which and why. "
            f"{plural(imported, 'fruit')} {was(imported)} uploaded successfully."
        )
    if in_store:
        body += (
            f" {plural(in_store, 'fruit')} {was(in_store)} already on the website"
            f" and {'is' if in_store == 1 else 'are'} listed as such."
        )
    return body


def was(number: int) -> str:
    return "was" if number == 1 else "were"


def rows_for(products: list[dict]) -> list[reports.Row]:
    return [
        reports.Row(
            name=p["name"] or p["file"],
            weight=p["weight"],
            status=p["outcome"],
            reason=p.get("reason", ""),
            image=p.get("image_path"),
        )
        for p in products
    ]


def default_recipient() -> str:
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or getpass.getuser()
    return f"{user}@example.com"


# -- I/O ------------------------------------------------------------------------


def load_record(path: Path) -> list[dict]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadRecord(f"no import record at {path}: run run.py first") from None
    except (OSError, ValueError) as error:
        raise BadRecord(
            f"import record at {path} is unreadable ({error}): run run.py again"
        ) from None
    products = document.get("products") if isinstance(document, dict) else None
    if not isinstance(products, list) or not all(isinstance(p, dict) for p in products):
        raise BadRecord(f"import record at {path} has no product list: run run.py again")
    return products


def build_pdf(path: Path, products: list[dict], thumbnails: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    title = report_title(datetime.date.today())
    reports.generate_supplier_report(
        path, title, rows_for(products), lab_paragraph(products), thumbnails
    )


# -- command line ---------------------------------------------------------------


def env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    data = Path(env("SUPPLIER_DATA", "~/supplier-data")).expanduser()
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Mail settings come from SMTP_HOST, SMTP_PORT, SMTP_SECURITY, SMTP_USER, "
        "SMTP_PASSWORD(_FILE), SMTP_TIMEOUT, SMTP_CA_FILE and SMTP_SAVE_DIR (see emails.py).",
    )
    add = parser.add_argument
    add(
        "--record",
        type=Path,
        default=Path(env("IMPORT_RECORD", str(data / "imported.json"))),
        help="run.py's record (default $SUPPLIER_DATA/imported.json) [IMPORT_RECORD]",
    )
    add(
        "--pdf",
        type=Path,
        default=Path(env("REPORT_PDF", DEFAULT_PDF)),
        help=f"where to write the PDF (default {DEFAULT_PDF}) [REPORT_PDF]",
    )
    add(
        "--sender",
        default=env("REPORT_SENDER", DEFAULT_SENDER),
        help=f"From address (default {DEFAULT_SENDER}) [REPORT_SENDER]",
    )
    add(
        "--recipient",
        action="append",
        help="To address, repeatable (default <login name>@example.com) "
        "[REPORT_RECIPIENTS, comma-separated]",
    )
    add(
        "--subject",
        default=env("REPORT_SUBJECT", DEFAULT_SUBJECT),
        help=f"subject when nothing failed (default '{DEFAULT_SUBJECT}') [REPORT_SUBJECT]",
    )
    add(
        "--save-dir", help="write the mail as an .eml file there instead of sending [SMTP_SAVE_DIR]"
    )
    add("--no-thumbnails", action="store_true", help="leave product images out of the PDF")
    add("-q", "--quiet", action="store_true", help="only warnings and errors")
    args = parser.parse_args(argv)
    if args.recipient is None:
        listed = [r.strip() for r in env("REPORT_RECIPIENTS", "").split(",") if r.strip()]
        args.recipient = listed or [default_recipient()]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    level = logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(message)s", stream=sys.stderr)
    try:
        products = load_record(args.record)
    except BadRecord as error:
        log.error("%s", error)
        return EXIT_USAGE
    if not count(products, "imported"):
        failed = count(products, "failed")
        in_store = count(products, "already in store")
        log.info(
            "nothing was imported (%d failed, %d already in store); no mail sent", failed, in_store
        )
        return EXIT_OK
    build_pdf(args.pdf, products, thumbnails=not args.no_thumbnails)
    subject = subject_for(products, args.subject)
    try:
        message = emails.generate_email(
            args.sender, args.recipient, subject, body_for(products), args.pdf
        )
    except ValueError as error:
        log.error("%s", error)
        return EXIT_USAGE
    environ = {**os.environ, **({"SMTP_SAVE_DIR": args.save_dir} if args.save_dir else {})}
    try:
        saved = emails.send_email(message, environ)
    except emails.EmailError as error:
        log.error("%s; the PDF is at %s, run again to resend", error, args.pdf)
        return EXIT_NOT_SENT
    where = f"saved as {saved}" if saved else f"sent to {', '.join(args.recipient)}"
    log.info("%s %s: %s", args.pdf, where, subject)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
