#!/usr/bin/env python3
"""Grade the lab's five steps against what the lab box holds (make lab-check).

For any implementation (ours, a learner's, a public solution): it looks only
at what the box holds after the scripts ran, never at the scripts, and prints
one line per step, PASS or FAIL with the reason (which file, what was
expected, what was found). Exit 0 when every step passes, 1 when one fails,
2 when there is no box to grade.

    1 images converted   each images/NNN.tiff has NNN.jpeg beside it: a JPEG, 600x400, RGB
    2 images uploaded    the store got each NNN.jpeg once, under that name, with those bytes
    3 descriptions       each descriptions/NNN.txt is one product in the store: name, weight
                         sent as a number, description, image_name NNN.jpeg that the store serves
    4 report mailed      the PDF (REPORT_PDF of env.sh, else /tmp/processed.pdf if it is the one
                         the box mailed) has the title "Processed Update on <today>" and a
                         name:/weight: pair per product;
                         the inbox has the lab's mail (sender, subject, body) with a PDF attached
    5 health check       an every-minute line in LAB_DIR/crontab (or `crontab -l`); its command,
                         run as cron would while this checker keeps every CPU busy, mails
                         "Error - CPU usage is over 80%" (or another of the lab's alerts);
                         an alert from before counts while the command still runs (exit 0-3,
                         no "can't open file", "not found" or Traceback)

Usage:
    python sandbox/lab_check.py [--dir lab] [--no-system-crontab] [--load-seconds 30]

Example (our scripts on today's main, before issue 25's names; long lines cut here):
    $ python sandbox/lab_check.py --dir lab
    PASS 1 images converted: 10 JPEGs beside their TIFFs, 600x400 RGB
    FAIL 2 images uploaded: 001.jpeg is stored as 001-eb63c1796aaa.jpeg: upload each
      picture under its own name
    FAIL 3 descriptions posted: Apple (001.txt): image_name is '001-eb63c1796aaa.jpeg',
      expected '001.jpeg'
    PASS 4 report mailed: /work/wt/lab/lab/tmp/processed.pdf dated today, one pair per
      product; mailed by automation@example.com with the PDF
    PASS 5 health check scheduled: `.venv/bin/python health_check.py` ran while the CPUs
      were busy and mailed 'Error - CPU usage is over 80%'
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import NamedTuple

from PIL import Image, UnidentifiedImageError
from pypdf import PdfReader
from pypdf.errors import PdfReadError

from lab import LAB_PDF, Box, cron_env, exported, parse_crontab
from store import Catalog

SANDBOX = Path(__file__).resolve().parent
SIZE = (600, 400)
SENDER = "automation@example.com"
SUBJECT = "Upload Completed - Online Fruit Store"
BODY = (
    "All fruits are uploaded to our website successfully."
    " A detailed list is attached to this email."
)
ALERTS = (
    "Error - CPU usage is over 80%",
    "Error - Available disk space is less than 20%",
    "Error - Available memory is less than 500MB",
    "Error - localhost cannot be resolved to 127.0.0.1",
)
# What a command that never ran the health check says (python, sh), whatever its exit.
BROKEN = ("can't open file", "No such file", "not found", "Traceback")
HEALTH_EXITS = range(4)  # OK, WARNING, CRITICAL, UNKNOWN
PDF_LIMIT = 50 << 20  # far over any report: a larger file is not one
START_OVER = "make lab FRESH=1 starts over with an empty store (and a new delivery)"


@dataclass
class Step:
    number: int
    title: str
    passed: bool
    reason: str

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'} {self.number} {self.title}: {self.reason}"


class Failed(Exception):
    """One step's failure, in the learner's terms."""


@dataclass
class Product:
    stem: str
    name: str
    weight: int
    description: str

    @property
    def file(self) -> str:
        return f"{self.stem}.txt"


# -- what the delivery says should happen ------------------------------------


def tiff_stems(box: Box) -> list[str]:
    images = box.delivery / "images"
    return sorted(p.stem for p in images.iterdir() if p.suffix.lower() in (".tif", ".tiff"))


def products(box: Box) -> list[Product]:
    found = []
    for path in sorted((box.delivery / "descriptions").glob("*.txt")):
        name, weight, *rest = [*path.read_text(encoding="utf-8").splitlines(), "", ""]
        number = re.match(r"\s*(\d+)", weight)
        description = " ".join(line.strip() for line in rest if line.strip())
        found.append(
            Product(path.stem, name.strip(), int(number[1]) if number else -1, description)
        )
    return found


def say_list(items: list[str], most: int = 4) -> str:
    shown = ", ".join(items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")


# -- 1 images converted ------------------------------------------------------


def check_images(box: Box) -> str:
    stems = tiff_stems(box)
    if not stems:
        raise Failed(f"no .tiff in {box.delivery / 'images'}: is this the lab's delivery?")
    for stem in stems:
        jpeg = box.delivery / "images" / f"{stem}.jpeg"
        where = f"images/{stem}.jpeg"
        if not jpeg.is_file():
            raise Failed(f"{where} is missing: each images/{stem}.tiff needs its JPEG beside it")
        try:
            with Image.open(jpeg) as image:
                found = (image.format, image.size, image.mode)
        except (UnidentifiedImageError, OSError):
            raise Failed(f"{where} is not an image Pillow can open") from None
        if found[0] != "JPEG":
            raise Failed(f"{where} is a {found[0]} file, not a JPEG: save it with format 'JPEG'")
        if found[1] != SIZE:
            raise Failed(f"{where} is {found[1][0]}x{found[1][1]}, expected 600x400: resize it")
        if found[2] != "RGB":
            raise Failed(f"{where} is in mode {found[2]}, expected RGB: convert('RGB') first")
    return f"{len(stems)} JPEGs beside their TIFFs, 600x400 RGB"


# -- 2 images uploaded -------------------------------------------------------


def check_uploads(box: Box) -> str:
    stems = tiff_stems(box)
    stored = Catalog(box.store).uploads()
    for stem in stems:
        name = f"{stem}.jpeg"
        # Django renames a taken name to NNN_AbCdEfG.jpeg; some tools add -hash.
        mine = [s for s in stored if s == name or re.match(rf"{stem}[_-]", s)]
        if not mine:
            raise Failed(
                f"the store holds no {name}: upload it (POST /upload/ with the file as 'file')"
            )
        if name not in mine:
            raise Failed(
                f"{name} is stored as {say_list(mine)}: upload each picture under its own name"
            )
        if len(mine) > 1:
            raise Failed(
                f"{name} was uploaded {len(mine)} times (the store holds {say_list(mine)});"
                f" upload each picture once; {START_OVER}"
            )
        local = box.delivery / "images" / name
        held = Catalog(box.store).images / name
        if local.is_file() and held.read_bytes() != local.read_bytes():
            raise Failed(f"the store's {name} differs from images/{name}: upload the converted one")
    return f"{len(stems)} pictures, each once under its own name"


# -- 3 descriptions posted ---------------------------------------------------


def posted_products(box: Box) -> list[dict]:
    """What was sent to POST /fruits/ and accepted, from the box's post log."""
    if not box.post_log.is_file():
        return []
    entries = [json.loads(line) for line in box.post_log.read_text().splitlines() if line]
    return [e for e in entries if e["path"].startswith("/fruits") and e["status"] == 201]


def check_sent(product: Product, sent: list[dict]) -> None:
    mine = [
        e for e in sent if isinstance(e["json"], dict) and e["json"].get("name") == product.name
    ]
    if not mine and any(e["json"] is None for e in sent):
        raise Failed(
            f"{product.name} ({product.file}) was posted as a form, not JSON:"
            " send the dictionary with requests.post(url, json=...)"
        )
    for entry in mine:
        weight = entry["json"].get("weight")
        if not isinstance(weight, int) or isinstance(weight, bool):
            raise Failed(
                f"{product.name} ({product.file}): weight was sent as {json.dumps(weight)}"
                f" ({type(weight).__name__}), expected the number {product.weight} (an int)"
            )


def check_descriptions(box: Box) -> str:
    expected = products(box)
    if not expected:
        raise Failed(f"no .txt in {box.delivery / 'descriptions'}: is this the lab's delivery?")
    fruits = Catalog(box.store).fruits()
    served = Catalog(box.store).images
    sent = posted_products(box)
    for product in expected:
        found = [f for f in fruits if f["name"] == product.name]
        label = f"{product.name} ({product.file})"
        if not found:
            raise Failed(
                f"{label} is not in the store (it holds no product named {product.name!r})"
            )
        if len(found) > 1:
            raise Failed(
                f"{label} is in the store {len(found)} times: post each product once; {START_OVER}"
            )
        fruit = found[0]
        if fruit["weight"] != product.weight:
            raise Failed(f"{label}: weight is {fruit['weight']}, expected {product.weight}")
        if " ".join(fruit["description"].split()) != product.description:
            raise Failed(
                f"{label}: description is {fruit['description'][:60]!r},"
                f" expected {product.description[:60]!r}"
            )
        if fruit["image_name"] != f"{product.stem}.jpeg":
            raise Failed(
                f"{label}: image_name is {fruit['image_name']!r}, expected '{product.stem}.jpeg'"
            )
        if not (served / fruit["image_name"]).is_file():
            raise Failed(f"{label}: the store does not serve /media/images/{fruit['image_name']}")
        check_sent(product, sent)
    return f"{len(expected)} products, each once, weight a number, its picture served"


# -- 4 the report, mailed ----------------------------------------------------


def today_titles(today: datetime.date) -> list[str]:
    month = today.strftime("%B")
    return [
        f"Processed Update on {month} {today.day:02d}, {today.year}",
        f"Processed Update on {month} {today.day}, {today.year}",
    ]


def report_path(own: Path, lab: Path, mailed: list[bytes]) -> Path:
    """The box's REPORT_PDF (own), else the lab's /tmp/processed.pdf (a learner's fixed
    path) when it is the very PDF the box's report mail carries: /tmp is shared, and a
    report another user or box wrote there says nothing of this box."""
    if own.is_file():
        return own
    if not lab.is_file():
        raise Failed(f"no report PDF: neither {own} nor {lab} exists")
    if lab.stat().st_size > PDF_LIMIT or lab.read_bytes() not in mailed:
        raise Failed(
            f"no report PDF at {own}, and {lab} is not the PDF this box mailed"
            " (another box's or user's report?)"
        )
    return lab


def mailed_pdfs(box: Box) -> list[bytes]:
    """The PDFs attached to the box's report mails."""
    reports = [mail for _, mail in mails(box) if mail["Subject"] == SUBJECT]
    attached = [
        part.get_payload(decode=True) or b"" for m in reports for part in m.iter_attachments()
    ]
    return [content for content in attached if content.startswith(b"%PDF")]


def pdf_text(path: Path) -> str:
    try:
        return "\n".join(page.extract_text() or "" for page in PdfReader(path).pages)
    except (PdfReadError, OSError, ValueError) as error:
        raise Failed(f"{path} is not a PDF that can be read ({error})") from None


def check_pdf(path: Path, expected: list[Product], today: datetime.date) -> None:
    text = pdf_text(path)
    flat = " ".join(text.split())
    titles = today_titles(today)
    if not any(title in flat for title in titles):
        first = text.strip().splitlines()[0] if text.strip() else "(no text)"
        raise Failed(f"{path} has no title {titles[0]!r}; its first line is {first!r}")
    pairs = re.findall(r"name:\s*(.+?)\s+weight:\s*(\d+)\s*lbs", flat)
    for product in expected:
        if (product.name, str(product.weight)) not in pairs:
            raise Failed(
                f"{path} has no 'name: {product.name}' followed by 'weight: {product.weight} lbs'"
            )


def mails(box: Box) -> list[tuple[Path, EmailMessage]]:
    return [
        (path, message_from_bytes(path.read_bytes(), policy=policy.default))
        for path in sorted(box.maildir.glob("*.eml"))
    ]


def check_mail(box: Box) -> None:
    caught = mails(box)
    reports = [m for _, m in caught if m["Subject"] == SUBJECT]
    if not reports:
        subjects = [repr(str(m["Subject"])) for _, m in caught] or ["none"]
        raise Failed(
            f"no mail with subject {SUBJECT!r} in the inbox (subjects: {say_list(subjects)})"
        )
    if len(reports) > 1:
        raise Failed(
            f"the inbox has {len(reports)} mails with subject {SUBJECT!r}: mail the report"
            f" once; {START_OVER}"
        )
    mail = reports[-1]
    if SENDER not in str(mail["From"]):
        raise Failed(f"the report mail is from {mail['From']!s}, expected {SENDER}")
    part = mail.get_body(preferencelist=("plain",))
    body = " ".join((part.get_content() if part else "").split())
    if BODY not in body:
        raise Failed(f"the report mail's body is {body[:80]!r}, expected {BODY!r}")
    pdfs = [
        p
        for p in mail.iter_attachments()
        if (p.get_payload(decode=True) or b"").startswith(b"%PDF")
    ]
    if not pdfs:
        names = [str(p.get_filename() or p.get_content_type()) for p in mail.iter_attachments()]
        raise Failed(
            f"the report mail has no PDF attached (attachments: {say_list(names) or 'none'})"
        )


def check_report(box: Box, today: datetime.date) -> str:
    own = Path(exported(box).get("REPORT_PDF", box.pdf))
    path = report_path(own, Path(LAB_PDF), mailed_pdfs(box))
    check_pdf(path, products(box), today)
    check_mail(box)
    return f"{path} dated today, one pair per product; mailed by {SENDER} with the PDF"


# -- 5 the health check, scheduled -------------------------------------------


def crontab_lines(box: Box, system: bool) -> list[str]:
    """The box's crontab and, read-only, the user's `crontab -l`."""
    found = box.crontab.read_text().splitlines() if box.crontab.is_file() else []
    if system and shutil.which("crontab"):
        listed = subprocess.run(
            ["crontab", "-l"], capture_output=True, text=True, timeout=10, check=False
        )
        found += listed.stdout.splitlines()
    return found


def scheduled_command(lines: list[str]) -> tuple[str, dict[str, str]]:
    """The first every-minute line's command, and the crontab's variables."""
    variables, commands, other = parse_crontab(lines)
    if commands:
        return commands[0], variables
    found = f"; found only {say_list([repr(x) for x in other])}" if other else ""
    raise Failed(
        f"no line runs every minute (* * * * * COMMAND) in the box's crontab or `crontab -l`{found}"
    )


def listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def busy_cpus(seconds: float) -> list[subprocess.Popen]:
    """One spinning process per CPU; each stops by itself after `seconds`. At the lowest
    priority: the CPUs still count as busy, but the command graded, and whatever else
    runs on the box, go first."""
    spin = (
        f"import os, time\nos.nice(19)\nend = time.monotonic() + {seconds}\n"
        "while time.monotonic() < end: pass"
    )
    return [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(os.cpu_count() or 1)]


class Ran(NamedTuple):
    """How the scheduled command ended: its exit status (None: still running) and output."""

    status: int | None
    output: str

    def said(self) -> str:
        """The line that tells most: a known failure's, else the last one."""
        lines = [line.strip() for line in self.output.splitlines() if line.strip()]
        if any(line.startswith("Traceback") for line in lines):
            return lines[-1]
        named = [line for line in lines if any(mark in line for mark in BROKEN)]
        return (named or lines or ["nothing"])[-1]

    def outcome(self, seconds: float) -> str:
        if self.status is None:
            return f"still running after {seconds:g} s"
        ended = f"exit {self.status}" if self.status >= 0 else f"killed by signal {-self.status}"
        return f"{ended}, said {self.said()!r}" if self.output.strip() else ended

    def runs(self) -> bool:
        """It ended as a health check does: 0-3, and not python's or sh's "cannot run this"."""
        return self.status in HEALTH_EXITS and not any(m in self.output for m in BROKEN)


def run_under_load(command: str, env: dict[str, str], cwd: Path, seconds: float) -> Ran:
    """Run the command as cron would (sh -c, in HOME) while the CPUs are busy."""
    spinners = busy_cpus(seconds)
    try:
        time.sleep(1)  # let the load show in a sampling over the next second
        result = subprocess.run(
            ["/bin/sh", "-c", command],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=seconds,
            check=False,
        )
        return Ran(result.returncode, result.stdout)
    except subprocess.TimeoutExpired as timeout:
        output = timeout.stdout or b""
        return Ran(None, output.decode(errors="replace") if isinstance(output, bytes) else output)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def alerts(box: Box) -> dict[Path, EmailMessage]:
    return {path: m for path, m in mails(box) if str(m["Subject"]) in ALERTS}


def which_mail(path: Path, mail: EmailMessage) -> str:
    """The alert's subject, when the inbox got it, and its file."""
    when = datetime.datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d %H:%M:%S")
    return f"{str(mail['Subject'])!r} (arrived {when}, mail/{path.name})"


def check_health(box: Box, system_crontab: bool, load_seconds: float) -> str:
    command, variables = scheduled_command(crontab_lines(box, system_crontab))
    env = cron_env(box, variables)
    port = int(env.get("SMTP_PORT", "25"))
    if not listening(env.get("SMTP_HOST", "127.0.0.1"), port):
        raise Failed(f"nothing listens on SMTP port {port}: start the box (make lab), then check")
    before = alerts(box)
    ran = run_under_load(command, env, Path(env["HOME"]), load_seconds)
    new = [(path, m) for path, m in alerts(box).items() if path not in before]
    if new:
        return f"`{command}` ran while the CPUs were busy and mailed {which_mail(*new[-1])}"
    outcome = ran.outcome(load_seconds)
    if before and ran.runs():
        # A health check holds back an alert it sent a moment ago (ours for an hour).
        return (
            f"`{command}` runs ({outcome}); no new alert this time, and it mailed"
            f" {which_mail(*list(before.items())[-1])} before"
        )
    if before:
        raise Failed(
            f"ran `{command}` as cron would and it does not run ({outcome}): an alert mailed"
            f" before counts only while the scheduled command works; fix the line in {box.crontab}"
            " (full paths, as the comment there shows)"
        )
    raise Failed(
        f"ran `{command}` while the CPUs were busy ({outcome}):"
        f" no mail {ALERTS[0]!r} or another of the lab's alerts arrived"
    )


# -- grading -----------------------------------------------------------------


def grade(title: str, number: int, check: Callable[[], str]) -> Step:
    try:
        return Step(number, title, True, check())
    except Failed as failure:
        return Step(number, title, False, str(failure))
    except (OSError, ValueError, KeyError, sqlite3.Error) as error:
        return Step(number, title, False, f"could not look: {error}")
    except Exception as error:  # the one guard: a line for the learner, never a traceback
        return Step(number, title, False, f"could not check ({type(error).__name__}: {error})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", type=Path, default=SANDBOX.parent / "lab", help="LAB_DIR")
    parser.add_argument(
        "--no-system-crontab", action="store_true", help="read only LAB_DIR/crontab"
    )
    parser.add_argument("--load-seconds", type=float, default=30, help="longest CPU load")
    args = parser.parse_args(argv)
    box = Box(args.dir.resolve())
    if not box.env_file.is_file():
        print(f"lab-check: no lab box in {box.root}: start one with make lab", file=sys.stderr)
        return 2
    today = datetime.date.today()
    steps = [
        grade("images converted", 1, lambda: check_images(box)),
        grade("images uploaded", 2, lambda: check_uploads(box)),
        grade("descriptions posted", 3, lambda: check_descriptions(box)),
        grade("report mailed", 4, lambda: check_report(box, today)),
        grade(
            "health check scheduled",
            5,
            lambda: check_health(box, not args.no_system_crontab, args.load_seconds),
        ),
    ]
    for step in steps:
        print(step.line(), flush=True)
    return 0 if all(step.passed for step in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
