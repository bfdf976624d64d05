#!/usr/bin/env python3
"""Email the supplier a PDF of what run.py imported, truthfully, once.

The lab's step 4: `report()` reads run.py's record (version 1 to 3; never the
descriptions again), reports.generate_supplier_report (the lab's
generate_report, with a table) writes /tmp/processed.pdf, and
emails.generate_email and emails.send_email mail it. The table has a row per
product: a small thumbnail, the lab's `name: X` / `weight: N lbs` lines for an
imported product, and the outcome. Products that need the supplier's
attention come first, marked in red (not imported, not confirmed, or
differing from the store's copy), each saying what is wrong with what they
sent and what to do ("fix line 2 of 003.txt and send 003.txt again"), or that
the fault is ours: the words come from ADVICE, keyed by the record's problem
code; the record's reasons, with our folders and commands, go to the log
only. It names the import's date and the store's public name (--store-name),
never our folders. A delivery where nothing was imported is still reported
when the supplier has something to fix; when only our side failed (the store
down), nobody is mailed, an ERROR says so and the status is 1.

Each state of the delivery is mailed once: imported.mailed.jsonl beside the
record remembers which report (a digest of what the supplier sees of each
product) reached whom. A re-run that changes nothing for the supplier says
when it was sent and sends nothing (--resend sends it again); after run.py
changed what the supplier sees, the new report is sent and its body says it
replaces the earlier one. Recipients who already got this report are never
mailed it again, so after a partial refusal a re-run reaches only those who
did not get it.

The mail stays under --max-mail-size (10 MB, base64 included; Postfix's
default limit): thumbnails are about 3.5 KB each, and past the budget the
other products are listed without pictures, which the mail and the PDF say
(measured: 200 products make a 0.7 MB PDF and a 1.0 MB mail; 10,000 make a
9.0 MB mail with the first 1,793 pictured). The text alone costs about 55
bytes a product, so beyond about 100,000 products even a report without
pictures is too large: it is written but not mailed (exit 2). Every send
ends within SMTP_DEADLINE (120 s), however slowly the server answers.

Usage:
    ./report_email.py [--record FILE] [--pdf FILE] [--sender ADDR]
                      [--recipient ADDR ...] [--subject TEXT] [--store-name NAME]
                      [--save-dir DIR] [--resend] [--no-thumbnails] [-q | -v]

Example:
    $ ./report_email.py
    INFO sent /tmp/processed.pdf (1 page) to alice@example.com:
      Upload Completed - Online Fruit Store
    $ ./report_email.py
    INFO this report was sent to alice@example.com on 2026-11-26T10:55:16+00:00;
      nothing sent (--resend sends it again)
    $ SMTP_PORT=2525 ./report_email.py --resend
    ERROR cannot reach SMTP server localhost:2525: connection refused (set
      SMTP_HOST); not sent, the PDF is at /tmp/processed.pdf: run again to send it

Exit status: 0 mailed (or already mailed, or nothing new to report), 1 not
sent, or sent to some recipients only (run again: only the others are
mailed), or nothing imported only through our side's fault, 2 usage or
configuration error: no record, an empty or malformed record, a bad option
or SMTP_* value, the PDF or the mailed log cannot be written, the report too
large to mail, another report_email.py mailing the same record. 130
interrupted.
"""

from __future__ import annotations


# --- begin shared block: early stop (from blocks/early_stop.py; make blocks) ---
def shared(name: str, value: object) -> object:
    import sys

    state = sys.modules.setdefault("fruit_catalog_shared", type(sys)("shared"))
    return vars(state).setdefault(name, value)


def stop_early(line: str = "ERROR {}", status: int = 130, fd: int = 2) -> None:
    import _signal  # loaded with Python; `import signal` takes 10+ ms, a stop there a traceback
    import os

    def stop(signum: int, frame: object) -> None:
        name = {_signal.SIGTERM: "SIGTERM", _signal.SIGHUP: "SIGHUP"}.get(signum, "SIGINT")
        said = "interrupted" if signum == _signal.SIGINT else f"interrupted by {name}"
        os.write(fd, f"{line.format(said)}\n".encode())
        os._exit(status)  # nothing written yet: the guard finishes what the work started

    for sig in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP):
        if _signal.getsignal(sig) != _signal.SIG_IGN:
            _signal.signal(sig, stop)
    shared("early stop", stop)  # after: guarded() knows the script's own run by it


if __name__ == "__main__":
    stop_early(*globals().get("EARLY_STOP", ()))


# --- end shared block: early stop ---

import argparse
import datetime
import errno
import fcntl
import getpass
import hashlib
import json
import logging
import os
import re
import stat
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import IO, BinaryIO

try:
    import emails
    import reports
    from emails import (
        Option,
        build_parser,
        configure_logging,
        expand_home,
        guarded,
        number,
        signals_held,
    )
except ImportError as missing:  # copied alone: say what it needs, in one line
    print(
        f"{Path(__file__).name}: {missing.name}.py is missing: copy emails.py and reports.py"
        " beside it",
        file=sys.stderr,
    )
    raise SystemExit(2) from None

__version__ = "2.0.0"

EXIT_OK, EXIT_NOT_SENT, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_PDF = "/tmp/processed.pdf"
DEFAULT_SENDER = "automation@example.com"
DEFAULT_SUBJECT = "Upload Completed - Online Fruit Store"
DEFAULT_MAX_MAIL_MB = 10
# The advice after a 5xx answer: the same mail would be refused again.
CHANGE_IT = "the server would refuse it again: change what it names, then run again"
CORRECT_THEM = "correct or remove those addresses, then run again: only they are mailed"
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
OUTCOMES = {1: ("imported", "already in store", "failed")}
OUTCOMES[2] = OUTCOMES[3] = (*OUTCOMES[1], "uncertain")
# Field -> accepted types; the first four must be present (README: Records, versions 1 to 3).
REQUIRED = {"file": (str,), "name": (str,), "weight": (int, type(None)), "outcome": (str,)}
OPTIONAL = {
    "reason": (str,),
    "image_name": (str,),
    "image_path": (str, type(None)),
    "id": (int, type(None)),
    "description": (str,),
    "store_values": (dict,),
    "problem": (str,),
    "details": (dict,),
}
# What the supplier sees of a product: a report is mailed again only when one changes. A field
# an older record lacks is its empty value: a version 3 re-run of a version 2 record mails nobody.
SEEN = {"file": None, "name": None, "weight": None, "outcome": None}
SEEN |= {"problem": "", "details": {}, "store_values": {}}
# The fields store_values may hold (README: Records), in the order shown, with their labels.
STORE_FIELDS = {"weight": "weight", "description": "description", "image_name": "picture"}
# Mail size: base64 with its line ends makes 100 bytes about 137; headers and body a little.
BASE64_GROWTH = 1.37
MAIL_OVERHEAD = 64_000
# Measured (bench/bench_report.py): what the text of one product and the fonts cost in the PDF.
PDF_BYTES_PER_PRODUCT = 120  # 55 for an imported product, more for a wrapped reason
PDF_FIXED_BYTES = 60_000
PDF_BYTES_PER_THUMBNAIL = 250  # beside the JPEG itself: its object and the drawing command
RECORD_LIMIT = 256 << 20  # 256 MiB: 100,000 products make about 60 MB
MAX_WEIGHT = 2**31 - 1  # lbs: the most the store keeps (run.py's WEIGHT_MAX)
# A URL, or urllib3's way of naming the host it could not reach.
INTERNAL_ADDRESS = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"()<>]+|host='[^']*', port=\d+")

log = logging.getLogger("report_email")


class BadRecord(Exception):
    """The record is missing or unusable; the message names it and says what to do."""


def canonical_digest(document: object) -> str:
    """sha256 of document as canonical JSON (sorted keys, no spaces, UTF-8)."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass
class Record:
    path: Path
    version: int
    images: Path | None
    finished: str
    complete: bool
    products: list[dict]

    @property
    def digest(self) -> str:
        """The state of the delivery as the supplier sees it (README: Records): the
        products' SEEN fields and whether the import ended, never this_run, the
        reasons, times or run ids, so a re-run that changes nothing mails nobody."""
        seen = [
            {key: product.get(key, empty) for key, empty in SEEN.items()}
            for product in self.products
        ]
        return canonical_digest({"complete": self.complete, "products": seen})

    @property
    def digests(self) -> set[str]:
        """This state's digest and those mailed logs written before it name (the whole
        products list, and the SEEN fields as a version 2 record held them): a report
        sent then is not sent again."""
        plain = {"problem": None, "details": None}  # a version 2 product had neither
        older = [
            {key: p.get(key) for key in SEEN} | ({} if p.get("problem") else plain)
            for p in self.products
        ]
        older_digest = canonical_digest({"complete": self.complete, "products": older})
        return {self.digest, older_digest, canonical_digest(self.products)}


@dataclass
class Pictures:
    """Thumbnails by product index, and how many were left out to keep the mail small."""

    by_index: dict[int, bytes] = field(default_factory=dict)
    over_budget: int = 0


# -- the record -------------------------------------------------------------------


def type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def check_product(index: int, product: object, version: int) -> str:
    """'' when the entry is usable, else what is wrong with it."""
    if not isinstance(product, dict):
        return f"product {index} is {type_name(product)}, not an object"
    file = product.get("file")
    label = f"product {index}" + (f" ({file})" if isinstance(file, str) else "")
    for key, kinds in {**REQUIRED, **OPTIONAL}.items():
        if key not in product:
            if key in REQUIRED:
                return f"{label} has no {key!r}"
            continue
        value = product[key]
        if isinstance(value, bool) or not isinstance(value, kinds):
            return f"{label}: {key!r} is {type_name(value)}"
    if product["outcome"] not in OUTCOMES[version]:
        return f"{label}: unknown outcome {product['outcome']!r} for a version {version} record"
    if product["outcome"] == "imported" and not (product["name"] and product["weight"] is not None):
        return f"{label}: imported without a name and a weight"
    if product["weight"] is not None and not 0 <= product["weight"] <= MAX_WEIGHT:
        return f"{label}: 'weight' is not from 0 to {MAX_WEIGHT:,} lbs"
    return ""


def parse_record(path: Path, document: object) -> Record:
    if not isinstance(document, dict):
        raise BadRecord(f"import record {path} is not a JSON object: run run.py again")
    version = document.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version not in OUTCOMES:
        raise BadRecord(
            f"import record {path} has version {version!r}; this report_email.py reads 1 to 3"
        )
    products = document.get("products")
    if not isinstance(products, list):
        raise BadRecord(f"import record {path} has no product list: run run.py again")
    if not products:
        raise BadRecord(f"import record {path} holds no products: nothing to report")
    for index, product in enumerate(products, 1):
        problem = check_product(index, product, version)
        if problem:
            raise BadRecord(f"import record {path}: {problem}; run run.py again")
    images = document.get("images")
    return Record(
        path=path,
        version=version,
        images=Path(images) if isinstance(images, str) and images else None,
        finished=str(document.get("finished") or ""),
        complete=document.get("complete", True) is not False,
        products=products,
    )


def read_record(path: Path) -> bytes:
    """The record's bytes, read as the block `files` reads (emails.py carries it): a
    FIFO would wait for a writer forever, /dev/zero would fill the memory."""
    try:
        return emails.read_capped(path, RECORD_LIMIT)
    except OSError as error:
        if error.errno == errno.EISDIR:
            raise BadRecord(f"import record {path} is a folder; name the record file") from None
        if error.errno == errno.EFBIG:
            raise BadRecord(f"import record {path} is {error.strerror}: run run.py again") from None
        if error.errno == errno.EINVAL:
            raise BadRecord(
                f"import record {path} is not a regular file: run run.py again"
            ) from None
        raise  # missing or unreadable: load_record says so


def load_record(path: Path) -> Record:
    try:
        document = json.loads(read_record(path))
    except FileNotFoundError:
        raise BadRecord(f"no import record at {path}: run run.py first") from None
    except (OSError, ValueError, RecursionError) as error:
        why = getattr(error, "strerror", None) or (
            "nested too deeply" if isinstance(error, RecursionError) else error
        )
        raise BadRecord(
            f"import record at {path} is unreadable ({why}): run run.py again"
        ) from None
    return parse_record(path, document)


# -- texts ------------------------------------------------------------------------


def report_title(day: datetime.date) -> str:
    """'Processed Update on November 05, 2026'."""
    return f"Processed Update on {MONTHS[day.month - 1]} {day.day:02d}, {day.year}"


def long_date(moment: str) -> str:
    """'November 26, 2026' for an ISO time; '' when it is not one."""
    try:
        day = datetime.datetime.fromisoformat(moment).date()
    except ValueError:
        return ""
    return f"{MONTHS[day.month - 1]} {day.day:02d}, {day.year}"


def spoken(moment: str) -> str:
    """'November 26, 2026 at 10:55 UTC' for an ISO time from the mailed log."""
    try:
        time = datetime.datetime.fromisoformat(moment).astimezone(datetime.UTC)
    except (ValueError, OverflowError):  # a time at the calendar's edge has no UTC
        return moment
    return f"{long_date(time.isoformat())} at {time:%H:%M} UTC"


def count(products: list[dict], outcome: str) -> int:
    return sum(p["outcome"] == outcome for p in products)


def plural(number: int, word: str) -> str:
    return f"{number:,} {word}" + ("" if number == 1 else "s")


def was(number: int) -> str:
    return "was" if number == 1 else "were"


def product_label(product: dict) -> str:
    """'Durian (016.txt)', or the file alone when its name could not be read."""
    name = product["name"].strip()
    return f"{name} ({product['file']})" if name else product["file"]


def product_lines(product: dict) -> tuple[str, ...]:
    """The lab's two lines for an imported product; name and file for the others,
    with the weight the store holds when its copy differs."""
    if product["outcome"] == "imported":
        return (f"name: {product['name']}", f"weight: {product['weight']} lbs")
    weight = (product.get("store_values") or {}).get("weight", product["weight"])
    return (product_label(product),) + (() if weight is None else (f"{weight} lbs",))


def shown(key: str, value: object) -> str:
    if key == "weight":
        return f"{value} lbs"
    text = " ".join(str(value).split())
    return f'"{text[:60]}…"' if len(text) > 60 else f'"{text}"'


def differences(product: dict) -> str:
    """'weight: the store has 480 lbs, this delivery 500 lbs; ...' for store_values."""
    differing = product.get("store_values") or {}
    order = [key for key in STORE_FIELDS if key in differing] + sorted(
        key for key in differing if key not in STORE_FIELDS
    )
    return "; ".join(
        f"{STORE_FIELDS.get(key, key)}: the store has {shown(key, differing[key])},"
        f" this delivery {shown(key, product.get(key, ''))}"
        for key in order
    )


def public(text: str) -> str:
    """text without the addresses of this company's machines: the PDF leaves it, and a
    store error may quote a URL ('http://10.0.0.5:8000/fruits/') or urllib3's
    "host='10.0.0.5', port=8000"."""
    return INTERNAL_ADDRESS.sub("[address]", text)


@dataclass(frozen=True)
class Advice:
    """What the supplier reads about a product that needs their attention: a marker,
    what is wrong with what they sent (or that the fault is ours), what to do. It
    names their own files only, never our folders, scripts or addresses."""

    marker: str
    problem: str
    todo: str


OURS = "nothing on your side: we import it again"
SUPPLIER, OUR_SIDE = "supplier", "ours"  # whose the problem is (README: Records)


@dataclass(frozen=True)
class Texts:
    """A problem code's row: whose the problem is, the outcome it comes with, and
    what the supplier reads. {file} is their description file, {stem} its product
    number, {differences} what the store holds instead; the other gaps are the
    record's `details`, in the words of DETAIL_TEXTS."""

    whose: str
    outcome: str
    problem: str
    todo: str


SEND_AGAIN_AS_TEXT = "send {file} again as plain text: the name, the weight and the description"
FIX_THE_LINE = "fix line {line} of {file} and send {file} again"
# run.py's problem codes (README: Records) -> what the supplier reads. A test
# (tests/test_record_contract.py) holds this table and run.py's codes together.
ADVICE: dict[str, Texts] = {
    "not_text": Texts(
        SUPPLIER, "failed", "{file} could not be read as a text file: {cause}", SEND_AGAIN_AS_TEXT
    ),
    "name_not_utf8": Texts(
        SUPPLIER,
        "failed",
        "{file} has a file name that is not UTF-8 text",
        "send it again named with letters, digits, '-' and '.' only (like 011.txt)",
    ),
    "empty": Texts(
        SUPPLIER,
        "failed",
        "{file} is empty",
        "send {file} again with the name, the weight and the description, each on its own line",
    ),
    "no_weight": Texts(
        SUPPLIER,
        "failed",
        "{file} has the name but no weight line after it",
        "add the weight (like 500 lbs) on the line after the name and send {file} again",
    ),
    "bad_weight": Texts(
        SUPPLIER,
        "failed",
        "line {line} of {file}: the weight {value} is not whole pounds (like 500 lbs)",
        FIX_THE_LINE,
    ),
    "weight_too_large": Texts(
        SUPPLIER,
        "failed",
        "line {line} of {file}: the weight {value} is over the {limit} lbs the store takes",
        FIX_THE_LINE,
    ),
    "too_long": Texts(
        SUPPLIER,
        "failed",
        "the {field} in {file} is {length} characters long; the store takes at most {limit}",
        "shorten the {field} and send {file} again",
    ),
    "same_name": Texts(
        SUPPLIER,
        "failed",
        "{file} names the same product as {other}",
        "give one of them another name and send it again",
    ),
    "no_photo": Texts(
        SUPPLIER,
        "failed",
        "we have no usable photo for it",
        "send its photo again, named {stem} (JPEG, PNG or TIFF)",
    ),
    "photo_unusable": Texts(
        SUPPLIER,
        "failed",
        "we could not use its photo {image}: {cause}",
        "send its photo again, as one file named {stem} (JPEG, PNG or TIFF)",
    ),
    "earlier_attempt": Texts(
        OUR_SIDE, "failed", "a file of an earlier attempt of ours was in the way of its photo", OURS
    ),
    "photo_to_convert": Texts(
        OUR_SIDE, "failed", "its photo {image} had not been converted for our catalog yet", OURS
    ),
    "photo_not_in_store": Texts(
        OUR_SIDE, "failed", "its photo had not reached our store yet", OURS
    ),
    "store_refused": Texts(
        SUPPLIER,
        "failed",
        "our store refused its values ({fields})",
        "check the name, the weight and the description in {file} and send it again",
    ),
    "store_unreachable": Texts(
        OUR_SIDE, "failed", "our store could not be reached during the import", OURS
    ),
    "interrupted": Texts(
        OUR_SIDE, "failed", "the import stopped before this product was sent", OURS
    ),
    "unconfirmed": Texts(
        OUR_SIDE,
        "uncertain",
        "it was sent to our store, but we could not confirm that the store has it",
        "nothing on your side: we check it",
    ),
    "differs_from_store": Texts(
        SUPPLIER,
        "already in store",
        "the store already has it, with other values ({differences})",
        "the store keeps its earlier values; if those of this delivery are right, tell"
        " us: the store cannot change a product, so we add it anew",
    ),
}
# A failure without a code (a version 2 record) or whose details do not fit its code:
# the reason is the operator's text and is never parsed.
UNKNOWN_FAILURE = Texts(
    SUPPLIER, "failed", "we could not import it", "check {file} and send it again"
)
MARKERS = {
    "failed": "Not imported",
    "uncertain": "Not confirmed",
    "already in store": "Differs from the store",
}
# The `cause` details, as the supplier reads them.
CAUSES = {
    "NUL characters": "it holds NUL characters",
    "not a regular file": "it is not a regular file",
    "too large": "it is too large for a description",
    "unreadable": "it could not be read",
    "cut": "the file is cut short",
    "not ours": "it is not the picture we made from your photo",
    "wrong size": "it is not the size we expect",
}
NAMES = ("name", "description")  # the fields too_long may name
DETAIL_TEXT_LIMIT = 60  # characters of a value quoted from the supplier's file
FIELD_ERRORS_LIMIT = 150  # characters of the store's field errors, all fields together


def texts_for(product: dict) -> Texts | None:
    """The row for a product needing attention (None for the others): its code's when
    the code goes with its outcome, else what its outcome alone says."""
    outcome = product["outcome"]
    row = ADVICE.get(product.get("problem", ""))
    if row is not None and row.outcome == outcome:
        return row
    if outcome == "failed":
        return UNKNOWN_FAILURE
    if outcome == "uncertain":
        return ADVICE["unconfirmed"]
    if outcome == "already in store" and product.get("store_values"):
        return ADVICE["differs_from_store"]
    return None


def quoted(value: object) -> str:
    text = " ".join(str(value).split())
    text = text if len(text) <= DETAIL_TEXT_LIMIT else text[:DETAIL_TEXT_LIMIT] + "…"
    return repr(text)


def whole(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not a whole number")
    return str(value)


def field_errors(value: object) -> str:
    """'weight: A valid integer is required.' for the store's 400 field errors."""
    if not isinstance(value, dict):
        raise ValueError(f"{value!r} is not the store's field errors")
    said = "; ".join(
        f"{key}: {' '.join(map(str, errors if isinstance(errors, list) else [errors]))}"
        for key, errors in value.items()
    )
    cut = said[:FIELD_ERRORS_LIMIT] + ("…" if len(said) > FIELD_ERRORS_LIMIT else "")
    return printable(public(cut))


def named(value: object) -> str:
    """A file name of theirs, never a folder of ours."""
    if not isinstance(value, str) or not Path(value).name:
        raise ValueError(f"{value!r} is not a file name")
    return Path(value).name


def one_of(known: dict | tuple) -> Callable[[object], str]:
    def pick(value: object) -> str:
        if not isinstance(value, str) or value not in known:
            raise ValueError(f"{value!r} is not one of {', '.join(known)}")
        return known[value] if isinstance(known, dict) else value

    return pick


# The details' fields, each turned into the supplier's words (ValueError when it
# does not hold what its code says).
DETAIL_TEXTS: dict[str, Callable[[object], str]] = {
    "line": whole,
    "limit": whole,
    "length": whole,
    "value": quoted,
    "field": one_of(NAMES),
    "other": named,
    "image": named,
    "cause": one_of(CAUSES),
    "fields": field_errors,
}


def filled(row: Texts, product: dict) -> tuple[str, str]:
    """(problem, what to do) with the product's own details in the gaps."""
    file = Path(product["file"]).name
    details = product.get("details") or {}
    gaps = {"file": file, "stem": Path(file).stem, "differences": differences(product)}
    gaps |= {key: DETAIL_TEXTS[key](details[key]) for key in details if key in DETAIL_TEXTS}
    return row.problem.format_map(gaps), row.todo.format_map(gaps)


def advice(product: dict) -> Advice | None:
    """What the supplier reads for a product needing attention; None for the others."""
    row = texts_for(product)
    if row is None:
        return None
    try:
        problem, todo = filled(row, product)
    except (KeyError, ValueError):  # details that do not fit the code: say no more than we know
        row = UNKNOWN_FAILURE if row.outcome == "failed" else row
        problem, todo = filled(row, {**product, "details": {}})
    return Advice(MARKERS[row.outcome], problem, todo)


def needs_the_supplier(product: dict) -> bool:
    """True when the supplier can set right what kept the product from the store."""
    row = texts_for(product)
    return row is not None and row.whose == SUPPLIER


def summary_line(products: list[dict]) -> str:
    imported = [p for p in products if p["outcome"] == "imported"]
    weight = sum(p["weight"] for p in imported)
    parts = [f"{len(imported):,} imported (total weight {weight:,} lbs)"]
    for outcome in ("already in store", "uncertain", "failed"):
        if count(products, outcome):
            parts.append(f"{count(products, outcome):,} {outcome}")
    return f"{plural(len(products), 'product')}: " + ", ".join(parts)


def subject_for(products: list[dict], subject: str) -> str:
    failed = count(products, "failed")
    if not failed:
        return subject
    head, dash, tail = subject.partition(" - ")
    return f"{head} with {plural(failed, 'failure')}{dash}{tail}"


def body_for(products: list[dict]) -> str:
    failed, in_store = count(products, "failed"), count(products, "already in store")
    imported, uncertain = count(products, "imported"), count(products, "uncertain")
    if not failed:
        body = SUCCESS_BODY
    else:
        body = (
            f"{failed:,} of {len(products):,} fruits could not be uploaded to our website;"
            " the attached list shows which and why. "
            f"{plural(imported, 'fruit')} {was(imported)} uploaded successfully."
        )
    if in_store:
        body += (
            f" {plural(in_store, 'fruit')} {was(in_store)} already on the website"
            f" and {'is' if in_store == 1 else 'are'} listed as such."
        )
    if uncertain:
        body += (
            f" For {plural(uncertain, 'fruit')} we could not confirm the upload;"
            " the list shows them as uncertain."
        )
    return body


def notes(record: Record, pictures: Pictures, earlier: dict | None, limit_mb: float) -> list[str]:
    """What the reader must know beyond the list: in the mail body and the PDF alike."""
    said = []
    if not record.complete:
        said.append("The import stopped before the end; products not listed were not processed.")
    if pictures.over_budget:
        with_pictures = len(pictures.by_index)
        said.append(
            f"Pictures are shown for {with_pictures:,} products and left out for"
            f" {pictures.over_budget:,}, to keep this mail under {limit_mb:g} MB."
        )
    if earlier:
        said.append(f"This report replaces the one sent on {spoken(earlier['time'])}.")
    return said


def intro_lines(record: Record, store_name: str, extra: list[str]) -> list[str]:
    """The lines under the title. The delivery's folder is ours and never named."""
    day = long_date(record.finished)
    when = [f"Delivery imported {day}"] if day else []
    store = [f"Store: {store_name}"] if store_name else []
    return [*when, *store, summary_line(record.products), *extra]


def default_recipient() -> str:
    try:
        user = os.environ.get("USER") or os.environ.get("LOGNAME") or getpass.getuser()
    except (KeyError, OSError):
        raise ValueError(
            f"uid {os.getuid()} has no login name (no USER, no passwd entry) to mail;"
            " set --recipient or REPORT_RECIPIENTS"
        ) from None
    return f"{user}@example.com"


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


# -- thumbnails -------------------------------------------------------------------


def printable(text: object) -> str:
    """Text for the log: control characters (a terminal escape, a line that fakes
    another log line) shown as escapes."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def pdf_budget(limit_mb: float) -> int:
    """The largest PDF whose mail stays under limit_mb megabytes."""
    return int((limit_mb * 1_000_000 - MAIL_OVERHEAD) / BASE64_GROWTH)


def thumbnail(product: dict, root: Path) -> bytes | None:
    """The product's thumbnail, read only from inside the images folder; None (with a
    warning) when the file is refused or is no image it can shrink."""
    path = Path(product["image_path"])
    try:
        with open_delivery_file(path, root, IMAGE_LIMIT) as file:
            return reports.make_thumbnail(file)
    except RefusedFile as error:
        log.warning("no picture for %s: %s", printable(product_label(product)), printable(error))
    except Exception as error:  # a hostile image may fail in any decoder: the report still goes
        said = printable(f"{path}: {error}")
        log.warning("no picture for %s: %s", printable(product_label(product)), said)
    return None


def pictures_for(record: Record, budget: int) -> Pictures:
    """Thumbnails in list order until their bytes would pass the budget."""
    pictures = Pictures()
    if record.images is None:
        return pictures
    spent = 0
    for index, product in enumerate(record.products):
        if not product.get("image_path"):
            continue
        if spent >= budget:
            pictures.over_budget += 1
            continue
        data = thumbnail(product, record.images)
        if data is None:
            continue
        spent += len(data) + PDF_BYTES_PER_THUMBNAIL
        if spent > budget:
            pictures.over_budget += 1
            continue
        pictures.by_index[index] = data
    return pictures


def log_reasons(products: list[dict]) -> None:
    """The record's reasons, with our paths and commands, for the operator: the
    supplier reads advice() instead."""
    for product in products:
        code = product.get("problem", "")
        if code and code not in ADVICE:
            log.warning(
                "%s: problem %s is unknown to this report_email.py; the supplier reads a"
                " general text",
                printable(product["file"]),
                printable(repr(code)),
            )
        said = advice(product)
        if said:
            reason = printable(product.get("reason") or said.problem)
            log.info("%s, %s: %s", printable(product_label(product)), product["outcome"], reason)


def row_for(product: dict, thumbnail: bytes | None) -> reports.Row:
    """The product's row; for a product needing attention, what the supplier reads."""
    said = advice(product)
    if said is None:
        return reports.Row(product_lines(product), product["outcome"], thumbnail)
    return reports.Row(
        product_lines(product), said.problem, thumbnail, attention=said.marker, todo=said.todo
    )


def build_pdf(path: Path, record: Record, pictures: Pictures, intro: list[str]) -> int:
    """Write the report; its number of pages."""
    rows = [row_for(p, pictures.by_index.get(index)) for index, p in enumerate(record.products)]
    title = report_title(datetime.date.today())
    return reports.generate_supplier_report(path, title, rows, intro, chart(record.products))


def chart(products: list[dict]) -> reports.Drawing:
    """The pies of what was imported, by weight, and of the products by outcome."""
    weights = [(p["name"], p["weight"]) for p in products if p["outcome"] == "imported"]
    said = {"failed": "not imported", "uncertain": "not confirmed"}
    outcomes = Counter(said.get(p["outcome"], p["outcome"]) for p in products)
    return reports.delivery_chart(weights, outcomes)


# -- the mailed log -------------------------------------------------------------------


class CannotRun(Exception):
    """A configuration problem found on the way (exit 2); the message says what to do."""


class MailedLog:
    """imported.mailed.jsonl beside the record: one line per send that reached someone
    (README: Records). Opening it takes an exclusive lock, so two runs cannot both mail."""

    def __init__(self, path: Path):
        self.path = path
        self.file: IO[bytes] | None = None
        self.entries: list[dict] = []
        self.created = False

    def __enter__(self) -> MailedLog:
        flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            try:
                fd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o644)
                self.created = True
            except FileExistsError:
                fd = os.open(self.path, flags)
        except OSError as error:
            raise CannotRun(
                f"cannot write the mailed log {self.path}: {error.strerror}; nothing sent"
            ) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or /dev/zero: reading never ends
            os.close(fd)
            raise CannotRun(f"the mailed log {self.path} is not a regular file; nothing sent")
        self.file = os.fdopen(fd, "a+b")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.close()
            raise CannotRun(
                f"another report_email.py is mailing this report (it holds {self.path});"
                " nothing sent"
            ) from None
        self.file.seek(0)
        self.entries = [e for e in map(entry, self.file.read().splitlines()) if e]
        return self

    def __exit__(self, *exc_info) -> None:
        if self.file is None:
            return
        if self.created and not self.entries:
            self.path.unlink()  # nothing was sent: leave no trace (still under the lock)
        self.file.close()

    def reached(self, digests: set[str]) -> set[str]:
        """Everyone who got the report of this state."""
        return {a for e in self.entries if e["record_digest"] in digests for a in e["delivered"]}

    def last_time(self, digests: set[str]) -> str:
        return next(e["time"] for e in reversed(self.entries) if e["record_digest"] in digests)

    def earlier(self, digests: set[str]) -> dict | None:
        """The last report of another state of the delivery, which this one replaces."""
        return next((e for e in reversed(self.entries) if e["record_digest"] not in digests), None)

    def append(self, digest: str, delivered: list[str], refused: dict, pages: int) -> None:
        line = {
            "time": now(),
            "record_digest": digest,
            "delivered": delivered,
            "refused": refused,
            "pdf_pages": pages,
        }
        assert self.file is not None
        # One write of a whole line, then fsync: a crash leaves whole lines only. A short
        # write (the disk filled up) is continued, so that its error is raised, not lost.
        data = (json.dumps(line, ensure_ascii=False) + "\n").encode()
        fd, size = self.file.fileno(), os.fstat(self.file.fileno()).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data  # after a line cut by a crash or a full disk
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
        self.entries.append(line)


def entry(raw: bytes) -> dict | None:
    """A log line, or None for one a reader ignores (cut by a crash, or foreign)."""
    try:
        line = json.loads(raw)
    except ValueError:
        return None
    usable = (
        isinstance(line, dict)
        and isinstance(line.get("record_digest"), str)
        and isinstance(line.get("time"), str)
        and isinstance(line.get("delivered"), list)
        and all(isinstance(a, str) for a in line["delivered"])
    )
    return line if usable else None


def mailed_log_path(record: Path) -> Path:
    return record.with_name(f"{record.stem}.mailed.jsonl")


# -- one report -----------------------------------------------------------------------


def make_pdf(args: argparse.Namespace, record: Record, earlier: dict | None) -> tuple[int, list]:
    """Write the PDF within the mail budget: (pages, notes for the body)."""
    log_reasons(record.products)
    budget = pdf_budget(args.max_mail_size)
    text = PDF_FIXED_BYTES + PDF_BYTES_PER_PRODUCT * len(record.products)
    pictures = Pictures() if args.no_thumbnails else pictures_for(record, budget - text)
    log.debug(
        "%d pictures, %d left out past the budget", len(pictures.by_index), pictures.over_budget
    )
    pages, said = write_pdf(args, record, pictures, earlier)
    log.debug("wrote %s: %d bytes (budget %d)", args.pdf, args.pdf.stat().st_size, budget)
    if args.pdf.stat().st_size > budget and pictures.by_index:
        log.warning("the report is too large to mail with pictures; writing it without them")
        left_out = len(pictures.by_index) + pictures.over_budget
        pages, said = write_pdf(args, record, Pictures(over_budget=left_out), earlier)
    size = args.pdf.stat().st_size
    if size > budget:
        raise CannotRun(
            f"the report of {plural(len(record.products), 'product')} is {size / 1e6:.2f} MB even"
            f" without pictures, too large for a mail under {args.max_mail_size:g} MB"
            f" (--max-mail-size); it is at {args.pdf}, not mailed"
        )
    return pages, said


def write_pdf(
    args: argparse.Namespace, record: Record, pictures: Pictures, earlier: dict | None
) -> tuple[int, list]:
    said = notes(record, pictures, earlier, args.max_mail_size)
    intro = intro_lines(record, args.store_name, said)
    try:
        args.pdf.parent.mkdir(parents=True, exist_ok=True)
        return build_pdf(args.pdf, record, pictures, intro), said
    except FileExistsError:  # from mkdir: a file where the PDF's folder should be
        raise CannotRun(
            f"cannot write the PDF {args.pdf}: {args.pdf.parent} is a file, not a folder"
        ) from None
    except OSError as error:
        raise CannotRun(f"cannot write the PDF {args.pdf}: {error.strerror or error}") from None


def message_for(args: argparse.Namespace, record: Record, recipients: list[str], said: list):
    body = " ".join([body_for(record.products), *said])
    subject = subject_for(record.products, args.subject)
    return emails.generate_email(args.sender, recipients, subject, body, args.pdf)


def save(args: argparse.Namespace, record: Record) -> int:
    """--save-dir: the mail as an .eml file, not sent, not remembered as sent."""
    _, said = make_pdf(args, record, None)
    message = message_for(args, record, args.recipient, said)
    try:
        saved = emails.send_email(message, {**os.environ, "SMTP_SAVE_DIR": str(args.save_dir)})
    except emails.EmailError as error:
        raise CannotRun(str(error)) from None
    log.info("%s saved as %s: %s", args.pdf, saved, message["Subject"])
    return EXIT_OK


def remember(mailed: MailedLog, digest: str, delivered: list, refused: dict, pages: int) -> None:
    """Log the send; when the log cannot be written (full disk), say who got the mail,
    so nobody re-runs blindly and mails them twice."""
    try:
        with signals_held():  # a stop now would lose the line: the next run would mail again
            mailed.append(digest, delivered, refused, pages)
    except OSError as error:
        raise CannotRun(
            f"sent to {', '.join(delivered)}, but cannot write the mailed log {mailed.path}:"
            f" {error.strerror or error}; a re-run would mail them again (--recipient"
            " names only the others)"
        ) from None


def mail(args: argparse.Namespace, record: Record, mailed: MailedLog) -> int:
    digest, digests = record.digest, record.digests
    reached = mailed.reached(digests)
    targets = [r for r in args.recipient if args.resend or plain(r) not in reached]
    if not targets:
        log.info(
            "this report was sent to %s on %s; nothing sent (--resend sends it again)",
            ", ".join(args.recipient),
            mailed.last_time(digests),
        )
        return EXIT_OK
    pages, said = make_pdf(args, record, mailed.earlier(digests))
    message = message_for(args, record, targets, said)
    environ = {k: v for k, v in os.environ.items() if k != "SMTP_SAVE_DIR"}
    try:
        emails.send_email(message, environ)
    except emails.PartlyDelivered as error:
        remember(mailed, digest, error.delivered, error.refused, pages)
        log.error(
            "sent %s to %s; not to %s: %s",
            args.pdf,
            ", ".join(error.delivered),
            "; ".join(f"{a} (the server said {said})" for a, said in error.refused.items()),
            CORRECT_THEM if error.permanent else "run again to send it to them only",
        )
        return EXIT_NOT_SENT
    except emails.EmailError as error:
        advice = CHANGE_IT if error.permanent else "run again to send it"
        log.error("%s; not sent, the PDF is at %s: %s", error, args.pdf, advice)
        return EXIT_NOT_SENT
    remember(mailed, digest, [plain(target) for target in targets], {}, pages)
    log.info(
        "sent %s (%s) to %s: %s",
        args.pdf,
        plural(pages, "page"),
        ", ".join(targets),
        message["Subject"],
    )
    return EXIT_OK


def report(args: argparse.Namespace) -> int:
    """The lab's step 4: the record's report as a PDF (generate_report), mailed
    (generate_email, send_email) to the supplier once per state, or saved."""
    record = load_record(args.record)
    log.debug("%s: version %d, %s", args.record, record.version, summary_line(record.products))
    unsent = why_unsent(record.products)
    if unsent is not None:
        return unsent
    if args.save_dir:
        return save(args, record)
    with MailedLog(mailed_log_path(args.record)) as mailed:
        return mail(args, record, mailed)


def why_unsent(products: list[dict]) -> int | None:
    """None when the supplier gets a report: something was imported, or something
    they sent needs fixing. Else the status after saying why nobody is mailed: 0
    for nothing new, 1 when only our side failed (the job is not done; the run after
    the fix mails the report)."""
    if count(products, "imported") or any(needs_the_supplier(p) for p in products):
        return None
    counts = ", ".join(
        f"{count(products, o):,} {o}" for o in ("failed", "uncertain", "already in store")
    )
    ours = Counter(p.get("problem") or p["outcome"] for p in products if advice(p))
    if not ours:
        log.info("nothing was imported (%s); no mail sent", counts)
        return EXIT_OK
    log.error(
        "nothing was imported (%s), through no fault of the supplier's (%s): set our side"
        " right and run run.py again, then report_email.py mails the report; no mail sent",
        counts,
        ", ".join(f"{code}: {n:,}" for code, n in sorted(ours.items())),  # README's codes
    )
    return EXIT_NOT_SENT


# -- command line ---------------------------------------------------------------


def checked(check: Callable[[str], object]) -> Callable[[str], str]:
    """An argparse type: the text when check(text) passes; its ValueError as the
    usage error, naming the flag or the variable the text came from."""

    def parse(text: str) -> str:
        try:
            check(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        return text

    return parse


def checked_subject(subject: str) -> None:
    """ValueError for an empty subject or one that could inject a header."""
    if not subject.strip():
        raise ValueError("the subject is empty")
    emails.header_value("subject", subject)


def public_name(name: str) -> None:
    if "://" in name:
        raise ValueError(
            f"{name!r} is a URL, not the store's public name (the PDF leaves the company)"
        )


def pdf_file(text: str) -> Path:
    """A path a PDF may be written at, or the usage error saying what is in the way."""
    path = Path(text)
    try:
        reports.refuse_special(path)
    except OSError as error:
        raise argparse.ArgumentTypeError(error.strerror) from None
    return path


def save_folder(text: str) -> Path:
    path = Path(text)
    if (why := unreachable(path)) not in ("", ABSENT):  # a missing one is made
        raise argparse.ArgumentTypeError(f"{path}: {why}")
    return path


def default_record() -> Path:
    return Path(os.environ.get("IMPORT_RECORD") or supplier_data() / "imported.json")


def recipients_after_parsing() -> None:
    """--recipient's default: REPORT_RECIPIENTS is read once the flags are parsed, so
    that a --recipient replaces it (argparse's append would add to it)."""
    return None


EPILOG = """Mail settings come from SMTP_HOST, SMTP_PORT, SMTP_SECURITY, SMTP_USER,
SMTP_PASSWORD(_FILE), SMTP_TIMEOUT (10 s per answer), SMTP_DEADLINE (120 s per
send) and SMTP_CA_FILE: see ./emails.py --help."""
OPTIONS = [
    Option(
        "--record",
        "run.py's record (version 1 to 3)",
        "IMPORT_RECORD",
        default_record,
        Path,
        "FILE",
        shown="$SUPPLIER_DATA/imported.json",
    ),
    Option("--pdf", "where to write the PDF", "REPORT_PDF", DEFAULT_PDF, pdf_file, "FILE"),
    Option(
        "--sender",
        "From address",
        "REPORT_SENDER",
        DEFAULT_SENDER,
        checked(lambda text: emails.checked_address("sender", text)),
        "ADDR",
    ),
    Option(
        "--recipient",
        "To address ('John Doe <j@example.com>' too), repeatable; ',' or ';' separate several",
        "REPORT_RECIPIENTS",
        recipients_after_parsing,
        metavar="ADDR",
        action="append",
        shown="$USER@example.com",
    ),
    Option(
        "--subject",
        "subject when nothing failed",
        "REPORT_SUBJECT",
        DEFAULT_SUBJECT,
        checked(checked_subject),
        "TEXT",
        shown=f"'{DEFAULT_SUBJECT}'",
    ),
    Option(
        "--store-name",
        "the store's public name, shown in the report (never a URL)",
        "STORE_NAME",
        "",
        checked(public_name),
        "NAME",
    ),
    Option(
        "--max-mail-size",
        "largest mail, base64 included",
        "REPORT_MAX_MAIL_MB",
        DEFAULT_MAX_MAIL_MB,
        number(0.1, 1000),
        "MB",
    ),
    Option(
        "--save-dir",
        "write the mail as an .eml file there instead of sending",
        "SMTP_SAVE_DIR",
        None,
        save_folder,
        "DIR",
    ),
    Option("--resend", "send even when this report was sent already", action="store_true"),
    Option("--no-thumbnails", "leave product pictures out of the PDF", action="store_true"),
]


def recipients(args: argparse.Namespace) -> list[str]:
    """Each address once (by its plain address), display names kept for the To header."""
    listed = args.recipient or [os.environ.get("REPORT_RECIPIENTS") or default_recipient()]
    found = [address for text in listed for address in emails.addresses(text)]
    unique: dict[str, str] = {}
    for address in found:
        unique.setdefault(plain(address), address)
    return list(unique.values())


def plain(address: str) -> str:
    """j@example.com for '"Doe, John" <j@example.com>': the mailed log and the server's
    refusals name recipients by their plain address."""
    return parseaddr(address)[1]


def recipients_source(args: argparse.Namespace) -> str:
    if args.recipient:
        return "--recipient"
    if os.environ.get("REPORT_RECIPIENTS"):
        return "environment variable REPORT_RECIPIENTS"
    return "the default recipient"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser(__doc__, OPTIONS, epilog=EPILOG)
    args = parser.parse_args(argv)
    try:
        args.recipient = recipients(args)
    except ValueError as error:
        parser.error(f"{recipients_source(args)}: {error}")
    try:
        emails.settings_from(os.environ)
    except ValueError as error:
        parser.error(str(error))
    return args


def main(argv: list[str] | None = None) -> int:
    """The lab's step 4 under the script's one guard: the options, then report()."""

    def work() -> int:
        args = parse_args(argv)
        configure_logging(args.quiet, args.verbose)
        try:
            return report(args)
        except (BadRecord, CannotRun) as error:
            log.error("%s", printable(error))  # it may quote a file name from the record
            return EXIT_USAGE

    return guarded(work, failed=EXIT_NOT_SENT)


# --- begin shared block: delivery files (from blocks/delivery_files.py; make blocks) ---
IMAGE_LIMIT = 200 << 20  # 200 MiB: a large uncompressed TIFF


def supplier_data() -> Path:
    return expand_home(os.environ.get("SUPPLIER_DATA", "").strip() or "~/supplier-data")


class RefusedFile(Exception):
    """A file of the delivery that is not read: str() names it and says why."""


ABSENT = "no such file or directory"  # what unreachable() says of a path not there


def unreachable(path: Path, folder: bool = True) -> str:
    try:
        kind = path.stat().st_mode
    except OSError as error:
        return (error.strerror or str(error)).lower()
    if folder and not stat.S_ISDIR(kind):
        return "not a folder"
    return "" if not folder or os.access(path, os.R_OK | os.X_OK) else "permission denied"


def utf8_named(path: Path) -> bool:
    return not any("\udc80" <= char <= "\udcff" for char in path.name)


def shown_path(path: Path) -> str:
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def file_kind(mode: int) -> str:
    kinds = {stat.S_ISDIR: "a folder", stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket"}
    kinds |= {stat.S_ISCHR: "a device", stat.S_ISBLK: "a device"}
    return next((name for test, name in kinds.items() if test(mode)), "not a regular file")


def open_delivery_file(path: Path, root: Path, limit: int) -> BinaryIO:
    if not utf8_named(path):
        raise RefusedFile(f"{shown_path(path)}: its name is not UTF-8; rename it")
    real_root = root.resolve()
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError) as error:
        raise RefusedFile(f"{path}: cannot open: {getattr(error, 'strerror', error)}") from None
    if not real.is_relative_to(real_root):
        raise RefusedFile(f"{path}: links outside {root}; not read")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(real, flags)
    except OSError as error:
        raise RefusedFile(f"{path}: cannot open: {error.strerror}") from None
    try:
        info = os.fstat(fd)
        proc = Path(f"/proc/self/fd/{fd}")
        opened = proc.readlink() if proc.is_symlink() else real
        if not opened.is_relative_to(real_root):
            raise RefusedFile(f"{path}: moved outside {root} while being opened; not read")
        if not stat.S_ISREG(info.st_mode):
            raise RefusedFile(f"{path}: {file_kind(info.st_mode)}, not a regular file; not read")
        if info.st_size > limit:
            raise RefusedFile(f"{path}: {info.st_size} bytes, over the limit of {limit}; not read")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


# --- end shared block: delivery files ---


if __name__ == "__main__":
    sys.exit(main())
