#!/usr/bin/env python3
"""Post every product description of a delivery to the store, exactly once.

The lab's step 3: each description becomes a product of the store.
`parse_description` reads a `.txt` into a `Product`, `Product.payload` is the
JSON the store takes, and `Importer.post` sends it to <store>/fruits/; `main`
below reads the whole run top-down.

Each `.txt` (or `.TXT`) in the descriptions folder is a product: line 1 the
name, line 2 the weight (`500 lbs`: whole pounds, 0 to 2147483647, as the
store keeps them), the rest the description, which may be empty (the store
then gets none). Files are UTF-8, UTF-16 with its BOM, else read as
Windows-1252; a file with NUL characters is refused. Its picture is the
catalog JPEG `<stem>.jpeg` in the images folder. A product is posted only
when the store serves exactly that JPEG: as the lab names it (`"image_name":
"001.jpeg"`), else under its content name (`<stem>-<first 12 hex of its
SHA-256>.jpeg`, where supplier_image_upload.py puts a picture whose lab name
the store holds with other bytes); with --content-names (CATALOG_CONTENT_NAMES)
only the content name. Else it fails with "image not in the store: run
supplier_image_upload.py". Products reach the store in the delivery's order
(by file name) whatever --jobs says: the reading, checking and looking for
pictures go on in parallel, the POSTs one after another. A product's identity
is its name: one the store already has is not posted again (when the store's
copy differs, both values are recorded, a warning names it and the run exits
1; the store cannot change a product, --force posts a new one). Each outcome
is appended to a journal as it happens, a `sending` line before each POST; a
POST whose answer was lost is looked for GRACE seconds later, sent once more
only when not there, and recorded as uncertain when still unknown. The record
(imported.json, for report_email.py: each product with its `problem` code) is
written at the end of every run, and on every stop.

Usage:
    ./run.py [--url URL] [--descriptions DIR] [--images DIR] [--record FILE]
             [--jobs N] [--timeout SECONDS] [--retries N] [--grace SECONDS]
             [--wait SECONDS] [--content-names] [--check] [--dry-run] [--force]

Example:
    $ ./run.py --check
    ERROR Pear (003.txt): line 2: weight '1.5 lbs' is not whole pounds (like '500 lbs')
    INFO checked 10 descriptions: 1 with problems
    $ ./run.py
    ERROR Pear (003.txt): line 2: weight '1.5 lbs' is not whole pounds (like '500 lbs')
    INFO imported 9, already in store 0, failed 1

Deadlines: every request, with its retries, ends within 2 x TIMEOUT + 5
seconds, even against a store that trickles its answer; three requests in a
row without an answer (across all jobs) stop the run at once.

Exit status:
    0  every product is in the store once (imported now or before, or already there)
    1  some products failed or are uncertain (the others are in), the store's
       copy of some differs from the file (the store keeps its own), or the
       store holds some twice (another run posted them too); fix, run again
    2  usage or configuration error: no descriptions, another run holds the
       delivery, the record cannot be written, the store cannot be reached,
       refuses the credentials or stopped answering mid-run (the record says
       what was done), or an unexpected error (named in one line)
    130 interrupted (the record says what was done)
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


def missing_packages() -> list[str]:
    return shared("missing", [])  # type: ignore[return-value]


def install_hint(pins: str) -> str:
    import os
    import sys

    python = os.path.join(os.path.dirname(sys.argv[0]), ".venv", "bin", "python")
    running = os.path.dirname(os.path.abspath(sys.executable))  # not sys.prefix: -S keeps it
    if os.path.isfile(python) and running != os.path.dirname(os.path.abspath(python)):
        return f"run it with {python} (the project's venv), or pip install {pins}"
    return f"pip install {pins}"


class Missing:
    def __init__(self, error: ImportError, pins: str) -> None:
        import os
        import sys

        script = os.path.basename(sys.argv[0])
        how = install_hint(pins) if script.endswith(".py") else f"pip install {pins}"
        said = f"{error.name} is missing: {how}"
        self.line = f"{script}: {said}" if script.endswith(".py") else said
        missing_packages().append(self.line)

    def __call__(self, *args: object, **kwargs: object) -> Missing:
        raise ModuleNotFoundError(self.line)

    def stand_in(self, *args: object) -> Missing:
        return self

    __getattr__ = __getitem__ = __add__ = __radd__ = __sub__ = __rsub__ = stand_in
    __mul__ = __rmul__ = __truediv__ = __rtruediv__ = __neg__ = stand_in

    def __mro_entries__(self, bases: tuple) -> tuple:
        return ()  # a class based on one of its names is based on object


if __name__ == "__main__":
    stop_early(*globals().get("EARLY_STOP", ()))


# --- end shared block: early stop ---

import argparse
import codecs
import contextlib
import datetime
import errno
import fcntl
import functools
import glob
import hashlib
import http.client
import json
import logging
import math
import os
import re
import shlex
import signal
import socket
import stat
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, BinaryIO, NamedTuple
from urllib.parse import quote, unquote, urlsplit

try:
    import requests
    import urllib3
    from requests.adapters import HTTPAdapter
    from urllib3.util import Retry
except ImportError as error:  # --help and -V still work; anything else says the pip line
    requests = urllib3 = HTTPAdapter = Retry = Missing(error, "requests==2.34.2")

__version__ = "2.0.0"

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
RECORD_VERSION = 3
RECORD_LIMIT = 64 << 20  # an earlier record read back: 64 MiB is ~100,000 products
PHOTO_HEAD = 16  # bytes of a photo read to know it as one changeImage.py converts
# The store's own limits; checked before sending.
MAX_LENGTHS = {"name": 100, "description": 5000}
WEIGHT = re.compile(r"(\d+)\s*(?:lbs?)?", re.IGNORECASE)
WEIGHT_MAX = 2**31 - 1  # the store's IntegerField (32 bits on its database)
RECORD_FIELDS = [
    "file",
    "name",
    "weight",
    "description",
    "image_name",
    "image_path",
    "id",
    "outcome",
    "problem",
    "details",
    "reason",
    "store_values",
    "this_run",
]


class Outcome(StrEnum):
    """What became of a product: the record's `outcome` (README: Records)."""

    PENDING = "pending"  # not decided yet: never in a record
    IMPORTED = "imported"
    ALREADY = "already in store"
    UNCERTAIN = "uncertain"
    FAILED = "failed"


class Problem(StrEnum):
    """Why a product is not simply in the store: the record's `problem`, with the
    `details` named beside each (README: Records). report_email.py keys its advice
    by these codes; "" (NO_PROBLEM) is a product without one."""

    NOT_TEXT = "not_text"  # cause
    NAME_NOT_UTF8 = "name_not_utf8"  # `file` shows each byte that is not UTF-8 as \xff
    EMPTY = "empty"
    NO_WEIGHT = "no_weight"
    BAD_WEIGHT = "bad_weight"  # line, value
    WEIGHT_TOO_LARGE = "weight_too_large"  # line, value, limit
    TOO_LONG = "too_long"  # field, length, limit
    SAME_NAME = "same_name"  # other
    NO_PHOTO = "no_photo"  # image
    PHOTO_UNUSABLE = "photo_unusable"  # image, cause
    EARLIER_ATTEMPT = "earlier_attempt"  # image, source
    PHOTO_TO_CONVERT = "photo_to_convert"  # image: the supplier's photo under the catalog's name
    PHOTO_NOT_IN_STORE = "photo_not_in_store"  # image
    STORE_REFUSED = "store_refused"  # fields
    STORE_UNREACHABLE = "store_unreachable"
    INTERRUPTED = "interrupted"
    UNCONFIRMED = "unconfirmed"
    DIFFERS_FROM_STORE = "differs_from_store"


NO_PROBLEM = ""

log = logging.getLogger("run")


@dataclass
class Product:
    """One description file and what became of it (the record's fields), plus
    what this run needs to settle a POST whose answer was lost."""

    file: str
    name: str = ""
    weight: int | None = None
    description: str = ""
    image_name: str = ""
    image_path: str | None = None
    id: int | None = None
    outcome: Outcome = Outcome.PENDING
    problem: str = NO_PROBLEM
    details: dict = field(default_factory=dict)
    reason: str = ""
    store_values: dict = field(default_factory=dict)
    this_run: bool = False  # imported by this run's POST (not found from an earlier one)
    copies: list[int] = field(default_factory=list)  # the store's ids when it holds it twice
    since_id: int = 0  # the highest store id before its last POST
    sent: float = 0.0  # when its last POST went out (monotonic)

    def record(self) -> dict:
        return {key: getattr(self, key) for key in RECORD_FIELDS}

    def payload(self) -> dict:
        """The product as the store takes it: a description it refuses blank but
        takes left out (it keeps "" then), so an empty one is left out."""
        sent = {"name": self.name, "weight": self.weight, "description": self.description}
        if not self.description:
            del sent["description"]
        return sent | {"image_name": self.image_name}

    def fail(self, failure: Failure, outcome: Outcome = Outcome.FAILED) -> None:
        self.outcome, self.problem = outcome, failure.problem
        self.details, self.reason = failure.details, str(failure)

    def settled(self, outcome: Outcome) -> None:
        self.outcome, self.problem, self.details, self.reason = outcome, NO_PROBLEM, {}, ""

    def line(self) -> str:
        """'Durian (016.txt): no weight line after the name': named when it can be."""
        if not self.name:
            return self.reason
        return f"{self.name} ({self.file}): {self.reason.removeprefix(self.file).lstrip(': ')}"


class Failure(Exception):
    """Why a product cannot be in the store: its problem code, the details the code
    needs (the record's), and str(): the operator's sentence."""

    def __init__(self, problem: Problem, reason: str, **details: object) -> None:
        super().__init__(reason)
        self.problem, self.details = problem, details


# -- descriptions -------------------------------------------------------------


def decode(raw: bytes) -> tuple[str, bool]:
    """(text, was_utf8): UTF-8 with or without BOM, UTF-16 with its BOM (Windows
    Notepad's "Unicode"), else cp1252."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        with contextlib.suppress(UnicodeDecodeError):
            return raw.decode("utf-16"), True
    try:
        return raw.decode("utf-8-sig"), True
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace"), False


def parse_weight(text: str) -> int | None:
    """'500 lbs', '500lbs', '500 LBS', '500' -> 500 (Unicode digits as the store's
    int() reads them); anything else, or more than the store keeps, None."""
    match = WEIGHT.fullmatch(text.strip())
    if not match or len(match.group(1)) > len(str(WEIGHT_MAX)):
        return None  # also keeps int() off a 5000-digit line (Python refuses those)
    weight = int(match.group(1))
    return weight if weight <= WEIGHT_MAX else None


def parse_description(product: Product, text: str) -> None:
    """Fill product from a description's text; Failure when it cannot be one
    (product.name is set first, so a failure is named)."""
    file = product.file
    if "\0" in text:
        raise Failure(
            Problem.NOT_TEXT, f"{file}: has NUL characters; not a text file", cause="NUL characters"
        )
    lines = [line.strip() for line in text.splitlines()]
    numbered = [(number, line) for number, line in enumerate(lines, 1) if line]
    if not numbered:
        raise Failure(Problem.EMPTY, f"{file}: empty file, expected name, weight, description")
    (_, product.name), rest = numbered[0], numbered[1:]
    if not rest:
        raise Failure(Problem.NO_WEIGHT, f"{file}: no weight line after the name")
    weight_line, weight_text = rest[0]
    product.weight = parse_weight(weight_text)
    if product.weight is None:
        raise weight_failure(file, weight_line, weight_text)
    product.description = "\n".join(lines[weight_line:]).strip()
    for key, limit in MAX_LENGTHS.items():
        length = len(getattr(product, key))
        if length > limit:
            raise Failure(
                Problem.TOO_LONG,
                f"{file}: {key} is {length} characters; the store accepts at most {limit}",
                field=key,
                length=length,
                limit=limit,
            )


def weight_failure(file: str, line: int, text: str) -> Failure:
    value = text[:40]
    reason = f"{file} line {line}: weight {value!r} is not whole pounds (like '500 lbs')"
    if WEIGHT.fullmatch(text):
        reason += f", at most {WEIGHT_MAX}"
        return Failure(Problem.WEIGHT_TOO_LARGE, reason, line=line, value=value, limit=WEIGHT_MAX)
    return Failure(Problem.BAD_WEIGHT, reason, line=line, value=value)


def refusal_cause(path: Path, root: Path, limit: int) -> str:
    """Why read_delivery_file refused path, in the record's words, from what the
    file is (never from the message's text)."""
    try:
        info, real = path.stat(), path.resolve(strict=True)
    except (OSError, RuntimeError):
        return "unreadable"
    if not stat.S_ISREG(info.st_mode) or not real.is_relative_to(root.resolve()):
        return "not a regular file"
    return "too large" if info.st_size > limit else "unreadable"


def description_files(folder: Path) -> list[Path]:
    """`.txt` files in any case (`D25.TXT`); hidden and macOS `._*` files never."""
    return sorted(
        p for p in folder.iterdir() if p.suffix.lower() == ".txt" and not p.name.startswith(".")
    )


def read_product(path: Path, images: Path) -> Product:
    """The product of one description file; a bad one already failed, saying why."""
    if not utf8_named(path):
        product = Product(shown_path(Path(path.name)))
        product.fail(Failure(Problem.NAME_NOT_UTF8, f"{product.file}: its name is not UTF-8"))
        return product
    product = Product(path.name, image_name=lab_name(path))
    jpeg = images / (path.stem + ".jpeg")
    product.image_path = str(jpeg) if os.path.isfile(jpeg) else None
    try:
        try:
            raw = read_delivery_file(path, path.parent, DESCRIPTION_LIMIT)
        except RefusedFile as error:
            cause = refusal_cause(path, path.parent, DESCRIPTION_LIMIT)
            raise Failure(Problem.NOT_TEXT, str(error), cause=cause) from None
        text, utf8 = decode(raw)
        if not utf8:
            log.warning("%s: not UTF-8; read as Windows-1252 (cp1252)", path.name)
        parse_description(product, text)
    except Failure as failure:
        product.fail(failure)
    return product


def read_products(folder: Path, images: Path) -> list[Product]:
    """A product per description file, in the delivery's order (by file name)."""
    products = [read_product(path, images) for path in description_files(folder)]
    refuse_same_names(products)
    return products


def lab_name(description: Path) -> str:
    """The lab's image_name: the description's stem as a JPEG (001.txt: 001.jpeg)."""
    return store_name(description.stem + ".jpeg")


def refuse_same_names(products: list[Product]) -> None:
    """The store tells products apart by name: a second file with a name already
    seen in this delivery would be a second copy (or look like one), so it fails."""
    first: dict[str, str] = {}
    for product in products:
        if product.outcome == Outcome.FAILED:
            continue
        if product.name in first:
            other = first[product.name]
            reason = (
                f"{product.file}: the same product name as {other};"
                " the store tells products apart by name: rename one"
            )
            product.fail(Failure(Problem.SAME_NAME, reason, other=other))
        first.setdefault(product.name, product.file)


def summary(products: list[Product]) -> str:
    """What this run did, every product in one count: 'imported 0, already
    imported 10 (earlier runs), already in store 0, failed 0'."""
    count = {kind: sum(p.outcome == kind for p in products) for kind in Outcome}
    now = sum(p.outcome == Outcome.IMPORTED and p.this_run for p in products)
    text = f"imported {now}"
    if count[Outcome.IMPORTED] > now:
        text += f", already imported {count[Outcome.IMPORTED] - now} (earlier runs)"
    text += f", already in store {count[Outcome.ALREADY]}"
    differing = sum(bool(p.store_values) for p in products)
    if differing:
        text += f" ({differing} differing from the store)"
    if count[Outcome.UNCERTAIN]:
        text += f", uncertain {count[Outcome.UNCERTAIN]}"
    if count[Outcome.PENDING]:
        text += f", not done {count[Outcome.PENDING]}"
    text += f", failed {count[Outcome.FAILED]}"
    twice = sum(bool(p.copies) for p in products)
    return text + (f"; {twice} held more than once in the store" if twice else "")


def differing(product: Product) -> str:
    """'weight: the store has 174 lbs, the file 999 lbs; description': what the
    store keeps that is not the file's."""
    said = []
    for key in ("weight", "description", "image_name"):
        if key in product.store_values:
            if key == "weight":
                kept = product.store_values[key]
                said.append(f"weight: the store has {kept} lbs, the file {product.weight} lbs")
            else:
                said.append("picture" if key == "image_name" else key)
    return "; ".join(said)


def missing_jpeg(jpeg: Path) -> Failure:
    """Why a product has no catalog JPEG: its photo is there but not converted yet
    (steps run out of order: ours to finish, nothing for the supplier to send), or
    there is no photo of it at all."""
    source = unconverted_photo(jpeg)
    if source:
        reason = f"its photo {source} is not converted yet (no {jpeg.name}): run changeImage.py"
        return Failure(Problem.PHOTO_TO_CONVERT, reason, image=source)
    reason = f"no catalog image {jpeg.name} in {jpeg.parent}: run changeImage.py"
    return Failure(Problem.NO_PHOTO, reason, image=jpeg.name)


def unconverted_photo(jpeg: Path) -> str:
    """The name of a photo of jpeg's stem beside it (001.tiff for 001.jpeg), known by
    its first bytes as one changeImage.py converts; "" when there is none."""
    for source in sources_beside(jpeg):
        try:
            with open_delivery_file(source, jpeg.parent, IMAGE_LIMIT) as file:
                head = file.read(PHOTO_HEAD)
        except RefusedFile:
            continue
        if photo_suffix(head):
            return source.name
    return ""


def photo_failure(content: bytes, path: Path) -> Failure | None:
    """Why content, the catalog JPEG at path, cannot be posted (None: it can),
    with the record's code for it."""
    unusable = unusable_jpeg(content, path)
    if unusable is None:
        return None
    image = path.name
    if unusable.cause == EARLIER_ATTEMPT:
        source = sources_beside(path)[0].name
        return Failure(Problem.EARLIER_ATTEMPT, unusable.text, image=image, source=source)
    if unusable.cause == PHOTO:
        return Failure(Problem.PHOTO_TO_CONVERT, unusable.text, image=image)
    reason = f"{image}: {unusable.text}; not posted: convert it again and upload it"
    return Failure(Problem.PHOTO_UNUSABLE, reason, image=image, cause=unusable.cause)


def refusal(answer: requests.Response) -> Failure:
    """The store's answer to a POST it did not take: a 400's field errors are the
    supplier's to fix; any other status is ours (the store, its address)."""
    try:
        body = answer.json()
    except ValueError:
        body = None
    if answer.status_code == 400 and isinstance(body, dict):
        return Failure(Problem.STORE_REFUSED, rejection(answer), fields=body)
    return Failure(Problem.STORE_UNREACHABLE, rejection(answer))


# -- what this delivery created before ---------------------------------------


def identity(entry: dict) -> tuple | None:
    """A product's every field the store keeps (None when one is wrongly typed)."""
    key = tuple(entry.get(k) for k in ("name", "weight", "description", "image_name"))
    return (
        key if all(type(v) is t for v, t in zip(key, (str, int, str, str), strict=True)) else None
    )


@dataclass
class Evidence:
    """What earlier runs of this delivery sent and created, from the journal (and
    an older record): the store decides, this says whose. Runs that named the
    store by another URL (127.0.0.1 for localhost) count only for a product equal
    in every field to the one they sent."""

    ids: set[int] = field(default_factory=set)  # products this delivery created
    sent: dict[str, int] = field(default_factory=dict)  # name -> store's max id before
    other_ids: set[tuple] = field(default_factory=set)  # (id, identity) under another URL
    other_sent: dict[tuple, int] = field(default_factory=dict)  # identity -> max id before
    in_flight: float = 0.0  # when the last POST a stopped run left without answer went out
    in_flight_files: set[str] = field(default_factory=set)  # the files those POSTs were for

    def ours(self, fruit: dict) -> bool:
        since = self.sent.get(fruit.get("name"))
        if fruit["id"] in self.ids or (since is not None and fruit["id"] > since):
            return True
        key = identity(fruit)
        since = self.other_sent.get(key) if key else None
        return (fruit["id"], key) in self.other_ids or (since is not None and fruit["id"] > since)

    def add(self, entry: dict, same_store: bool) -> bool:
        """Takes an imported or sending line; False when its fields are wrongly typed."""
        name, id_, since, key = entry.get("name"), entry.get("id"), entry.get("since_id"), None
        if not same_store:
            key = identity(entry)
            if key is None:
                return False
        if entry.get("outcome") == "imported" and type(id_) is int:
            if same_store:
                self.ids.add(id_)
            else:
                self.other_ids.add((id_, key))
        elif entry.get("outcome") == "sending" and type(since) is int and type(name) is str:
            sent: dict = self.sent if same_store else self.other_sent
            index = name if same_store else key
            sent[index] = min(since, sent.get(index, since))
        else:
            return False
        return True


def gather_evidence(journal: Path, record: Path, store: str) -> Evidence:
    evidence = Evidence()
    # Only text names a run or a file: a line with anything else there is not ours.
    entries = read_journal(journal)
    entries = [e for e in entries if all(type(e.get(k, "")) is str for k in ("run", "file"))]
    stores = {e.get("run"): e.get("store") for e in entries if e.get("event") == "run"}
    for entry in entries:
        if entry.get("event") != "product" or entry.get("run") not in stores:
            continue
        if entry.get("outcome") not in ("imported", "sending"):
            continue
        if not evidence.add(entry, stores[entry.get("run")] == store):
            log.warning("%s: a product line with a wrongly typed field; ignored", journal)
    for entry, same_store in earlier_record(record, store):
        evidence.add(entry, same_store)
    # A file whose latest line is `sending`: a run stopped during its POST, none settled it since.
    latest = {e.get("file"): e for e in entries if e.get("event") == "product"}
    sending = {file: e for file, e in latest.items() if e.get("outcome") == "sending"}
    evidence.in_flight = max(map(journal_time, sending.values()), default=0.0)
    evidence.in_flight_files = set(sending)
    return evidence


def earlier_record(path: Path, store: str) -> list[tuple[dict, bool]]:
    """The imported products of an earlier record (version 1 to 3), each with
    whether it names this store. It is read like a delivery file: a link out,
    FIFO or /dev/zero is not read."""
    try:
        document = json.loads(read_delivery_file(path, path.parent, RECORD_LIMIT))
        same_store = canonical_url(document["store"]) == store
        return [
            (p, same_store)
            for p in document["products"]
            if p.get("outcome") == "imported" and type(p.get("id")) is int
        ]
    except RefusedFile as error:
        if path.exists() or path.is_symlink():
            log.warning("%s; ignored", error)
        return []
    except (ValueError, KeyError, TypeError, AttributeError):
        return []


# -- the store ----------------------------------------------------------------


class Importer:
    """Decides each product (in parallel: its file, its picture, what the store
    holds) and posts it (in the delivery's order), journaling every outcome as it
    happens."""

    def __init__(
        self,
        store: Store,
        journal: int,
        run_id: str,
        images: Path,
        *,
        force: bool = False,
        grace: float = 10.0,
        content_names: bool = False,
    ) -> None:
        self.store, self.journal, self.run_id = store, journal, run_id
        self.images, self.force, self.grace = images, force, grace
        self.content_names = content_names
        self.fruits: list[dict] = []
        self.evidence = Evidence()
        self.lock = threading.Lock()
        self.stopping = False

    def note(self, product: Product, outcome: str = "") -> None:
        entry = {"event": "product", "run": self.run_id, "time": now(), **product.record()}
        if outcome:
            entry |= {"outcome": outcome, "since_id": product.since_id}
        with self.lock:
            append_line(self.journal, entry)

    def list_store(self) -> None:
        """The store's products (those with a whole-number id: nothing else is one)."""
        self.fruits = [f for f in self.store.fruits() if type(f.get("id")) is int]

    def max_id(self) -> int:
        return max((f["id"] for f in self.fruits), default=0)

    def in_store(self, product: Product) -> list[dict]:
        """The store's products with this name, this delivery's first."""
        same = [f for f in self.fruits if f.get("name") == product.name]
        return sorted(same, key=lambda f: (not self.evidence.ours(f), f["id"]))

    def import_all(self, products: list[Product], jobs: int, progress: Progress) -> None:
        """Every product checked by `jobs` threads at once and posted by one, in
        the delivery's order, as the lab's store lists them. Stopped (Ctrl-C,
        SIGTERM), no new product starts and the request under way finishes
        (within its deadline), so the journal and the record tell the truth."""
        checkers = ThreadPoolExecutor(max_workers=jobs)
        poster = ThreadPoolExecutor(max_workers=1)
        try:
            checked = checkers.map(self.prepare, products)
            result_of(poster.submit(self.post_in_order, checked, progress))
        except KeyboardInterrupt:
            self.stopping = True
            checkers.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            poster.shutdown(wait=True)
            checkers.shutdown(wait=True)

    def prepare(self, product: Product) -> Product:
        """What can be known before the POST: whether the store has it, which
        name serves its picture (a product ready to post stays PENDING)."""
        if self.stopping or product.outcome != Outcome.PENDING:
            return product
        try:
            self.decide(product)
        except Failure as failure:
            product.fail(failure)
        except StoreError as error:
            fail(product, error, Problem.STORE_UNREACHABLE)
        return product

    def post_in_order(self, checked: Iterator[Product], progress: Progress) -> None:
        for product in checked:
            if self.stopping:
                return
            if product.outcome == Outcome.PENDING:
                self.send(product)
            if product.problem != Problem.UNCONFIRMED:  # noted once settled
                self.note(product)
            progress.advance()

    def decide(self, product: Product) -> None:
        found = self.in_store(product)
        ours = [f for f in found if self.evidence.ours(f)]
        if ours:
            self.take(product, ours, Outcome.IMPORTED)
        elif found and not self.force:
            self.take(product, found, Outcome.ALREADY)
        else:
            product.image_name = self.served_name(product, self.local_jpeg(product))

    def served_name(self, product: Product, content: bytes) -> str:
        """The name the store serves this picture under: the lab's (001.jpeg), else
        its content name (catalog_name, the uploader's fallback); with
        --content-names only the content name. Only a name serving exactly these
        bytes is ever posted."""
        jpeg = Path(product.file).stem + ".jpeg"
        names = [catalog_name(jpeg, content)]
        if not self.content_names:
            names.insert(0, store_name(jpeg))
        for name in names:
            held = self.store.holds(name, content)
            if held:
                return name
        if held is False:  # other bytes under a content name: the store's doing, not ours
            reason = f"{jpeg}: the store serves other bytes as {names[-1]}; not posted"
            raise Failure(Problem.PHOTO_NOT_IN_STORE, reason, image=jpeg)
        raise Failure(
            Problem.PHOTO_NOT_IN_STORE,
            "image not in the store: run supplier_image_upload.py"
            f" ({jpeg}, looked for as {' and '.join(names)})",
            image=jpeg,
        )

    def take(self, product: Product, found: list[dict], outcome: Outcome) -> None:
        """A product the store has: record the store's id, and its values that differ."""
        fruit = found[0]
        product.settled(outcome)
        product.id = fruit.get("id")
        if fruit.get("weight") != product.weight:
            product.store_values["weight"] = fruit.get("weight")
        if fruit.get("description") != product.description:
            product.store_values["description"] = fruit.get("description")
        self.compare_image(product, str(fruit.get("image_name", "")))
        if product.store_values:
            # Not "imported", even when this delivery posted it: the store keeps the
            # earlier values, and the record must not say it holds the file's.
            reason = (
                f"the store's copy differs ({differing(product)})"
                " and the store cannot change a product; run.py --force posts it as a new product"
            )
            product.fail(Failure(Problem.DIFFERS_FROM_STORE, reason), Outcome.ALREADY)
        if len(found) > 1:
            self.held_twice(product, found, "a request that landed late left a copy")

    def held_twice(self, product: Product, found: list[dict], why: str) -> None:
        product.copies = [f["id"] for f in found]
        ids = ", ".join(str(f["id"]) for f in found)
        product.reason = (
            f"the store holds {len(found)} products named {product.name!r} (ids {ids}):"
            f" {why}; remove the copy in the store. {product.reason}"
        ).strip()

    def compare_image(self, product: Product, stored: str) -> None:
        try:
            content = self.local_jpeg(product)
            same = self.store.holds(stored, content) if stored else False
        except Failure:
            same = True  # no local picture to compare with: say nothing about it
        if same:
            product.image_name = stored
        else:
            product.store_values["image_name"] = stored

    def local_jpeg(self, product: Product) -> bytes:
        """The product's catalog JPEG, checked; Failure saying why it cannot be."""
        path = self.images / (Path(product.file).stem + ".jpeg")
        image = path.name
        if not os.path.exists(path):  # False, not PermissionError, for a link out of reach
            raise missing_jpeg(path)
        try:
            content = read_delivery_file(path, self.images, IMAGE_LIMIT)
        except RefusedFile as error:
            reason = f"{error}; not posted: convert it again and upload it"
            raise Failure(Problem.PHOTO_UNUSABLE, reason, image=image, cause="not ours") from None
        failure = photo_failure(content, path)
        if failure:
            raise failure
        return content

    def send(self, product: Product) -> None:
        """Importer.post, its failure recorded on the product."""
        try:
            self.post(product)
        except Failure as failure:
            product.fail(failure)
        except StoreError as error:
            fail(product, error, Problem.STORE_UNREACHABLE)

    def post(self, product: Product) -> None:
        """The lab's POST of one product to <store>/fruits/ (Product.payload)."""
        with self.lock:
            product.since_id = self.max_id()
        self.note(product, "sending")
        answer = post_once(product, lambda: self.store.post("fruits/", json=product.payload()))
        if answer is None:
            return  # uncertain: settle() looks for it
        if answer.status_code != 201:
            raise refusal(answer)
        try:
            product.id = int(answer.json()["id"])
        except (ValueError, KeyError, TypeError):
            product.id = None
        product.settled(Outcome.IMPORTED)
        product.this_run = True

    def settle(self, products: list[Product]) -> None:
        """POSTs whose answer was lost: GRACE seconds after the last was sent,
        re-read the store; one not there is sent once more, then looked for again."""
        settle(products, self.grace, self.store, "products", self.look_again, self.list_store)
        for product in products:
            if product.problem == Problem.UNCONFIRMED:
                self.note(product)

    def look_again(self, product: Product, last: bool) -> None:
        landed = [
            f for f in self.fruits if f.get("name") == product.name and f["id"] > product.since_id
        ]
        if landed:
            self.evidence.ids.add(landed[0]["id"])
            self.take(product, landed, Outcome.IMPORTED)
            product.this_run, product.sent = True, 0.0
            self.note(product)
        elif not last:
            try:
                self.post(product)
            except (Failure, StoreError) as error:
                product.reason = f"sent, but no answer came; then: {error}"
            if product.outcome == Outcome.IMPORTED:
                product.sent = 0.0
                self.note(product)

    def name_copies(self, products: list[Product]) -> None:
        """No lock reaches another machine or another copy of the delivery: a run
        there may have posted the same products at the same moment. The store's
        list, read once more after this run's POSTs, names every copy that landed
        since ours went out (an older product of that name, posted with --force,
        is no copy)."""
        posted = [p for p in products if p.this_run]
        if not posted or self.store.stopped:
            return
        try:
            self.list_store()
        except StoreError as error:
            log.error("could not look for copies posted elsewhere at the same time: %s", error)
            return
        for product in posted:
            found = [
                f
                for f in self.fruits
                if f.get("name") == product.name and f["id"] > product.since_id
            ]
            if len(found) > 1:  # posted since this run's POST went out: not an older one
                why = "another run posted it at the same moment (the delivery imported elsewhere?)"
                self.held_twice(product, found, why)


def say_outcomes(products: list[Product]) -> None:
    """A WARNING per product that differs from the store's copy, an ERROR per
    product held twice, failed or uncertain; those not sent for one reason (the
    store stopped answering), in one line."""
    for product in products:
        if product.copies:
            log.error("%s", product.line())
        elif product.store_values:
            log.warning("%s", product.line())
    report(products, Product.line, "products")


# -- the record ----------------------------------------------------------------


class RecordUnwritten(Exception):
    """The record cannot be written (a full disk) once the products were sent."""


def check_writable(record: Path) -> None:
    """OSError, naming record, unless a record can be written there (a folder or a
    FIFO would be replaced; a temporary file beside it is tried)."""
    with contextlib.suppress(FileNotFoundError):
        kind = os.lstat(record).st_mode
        if not (stat.S_ISREG(kind) or stat.S_ISLNK(kind)):
            raise OSError(errno.EEXIST, f"{file_kind(kind)}, not a file", str(record))
    try:
        fd, temporary = tempfile.mkstemp(
            dir=record.parent, prefix=f".{record.name}.", suffix=".tmp"
        )
        os.close(fd)
        os.unlink(temporary)
    except OSError as error:
        raise OSError(error.errno, error.strerror, str(record)) from None


# --- begin shared block: cli (from blocks/cli.py; make blocks) ---
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
UNSET = object()  # the default of an option not given on the command line
STOPPING = shared("STOPPING", threading.Event())  # the first stop signal: no new request, no retry


def number(low: float, high: float, *, whole: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = int(text) if whole else float(text)
        except ValueError:
            kind = "a whole number" if whole else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"{text!r} is not from {low:g} to {high:g}")
        return value

    parse.__name__ = "whole number" if whole else "number"
    return parse


def from_env(parser: argparse.ArgumentParser, name: str, parse: Callable, default: object):
    text = os.environ.get(name, "")
    if not text.strip():
        return default
    try:
        return parse(text)
    except (argparse.ArgumentTypeError, ValueError) as error:
        parser.error(f"environment variable {name}: {error}")


@dataclass(frozen=True)
class Option:
    flags: str
    help: str
    env: str = ""
    default: Any = None
    type: Callable[[str], Any] | None = None
    metavar: str | None = None
    action: str | None = None
    shown: str | None = None
    nargs: str | None = None
    split: str | None = None

    def default_text(self) -> str:
        if self.shown is not None:
            return self.shown
        if self.default is None or self.action == "store_true" or callable(self.default):
            return ""
        return f"{self.default:g}" if isinstance(self.default, float) else str(self.default)

    def add_to(self, parser: argparse.ArgumentParser) -> argparse.Action:
        shown, names = self.default_text(), self.flags.split()
        extra = [f"default {shown}"] if shown else []
        help = " ".join([self.help, *(f"({text})" for text in extra)])
        help += f" [{self.env}]" if self.env else ""
        keywords: dict[str, Any] = {"help": help.replace("%", "%%")}
        for name in ("type", "metavar", "action", "nargs"):
            if getattr(self, name) is not None:
                keywords[name] = getattr(self, name)
        if self.action == "version":
            keywords["version"] = f"%(prog)s {__version__}"
        else:
            keywords["default"] = None if self.action == "append" else UNSET
        action = parser.add_argument(*names, **keywords)
        action.option = self  # type: ignore[attr-defined]
        return action

    def initial(self, parser: argparse.ArgumentParser) -> Any:
        value = self.from_variable_or_default(parser)
        if isinstance(value, str) and self.type is not None and value is self.default:
            return self.type(value)
        return value

    def from_variable_or_default(self, parser: argparse.ArgumentParser) -> Any:
        if callable(self.default):
            try:
                return self.default()
            except (argparse.ArgumentTypeError, ValueError) as error:
                parser.error(f"environment variable {self.env}: {error}")
        if not self.env or self.action in ("store_true", "version"):
            return self.default
        if self.action == "append":
            parse = self.type or str

            def several(text: str) -> list:
                return [parse(item) for item in text.split(self.split) if item.strip()]

            return from_env(parser, self.env, several, self.default)
        return from_env(parser, self.env, self.type or str, self.default)


STANDARD_OPTIONS = (
    Option("-q --quiet", "print only errors", action="store_true"),
    Option("-v --verbose", "print each step (never library internals)", action="store_true"),
    Option("-V --version", "show the version and exit", action="version"),
)


def build_parser(
    doc: str | None,
    options: Sequence[Option],
    parser_class: type[argparse.ArgumentParser] = argparse.ArgumentParser,
    epilog: str | None = None,
) -> argparse.ArgumentParser:
    class OptionParser(parser_class):  # type: ignore[valid-type, misc]
        def parse_known_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def]
            known, rest = super().parse_known_args(args, namespace)
            if missing_packages():  # only now: --help and -V work without the packages
                self.exit(2, f"{missing_packages()[0]}\n")
            self.not_given = set()
            for action in self._actions:
                option, value = getattr(action, "option", None), getattr(known, action.dest, None)
                if value is UNSET or (value is None and option and option.action == "append"):
                    self.not_given.add(action.dest)
                    setattr(known, action.dest, option.initial(self))
            return known, rest

    parser = OptionParser(
        description=doc, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for option in [*options, *STANDARD_OPTIONS]:
        option.add_to(parser)
    return parser


WORKING_ON = threading.local()  # the file this thread works on, named in its warnings


class WarningsToLog:
    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()

    def __call__(self, message, category, filename, lineno, file=None, line=None) -> None:
        about, text = getattr(WORKING_ON, "about", ""), " ".join(str(message).split())
        if (about, text) in self.seen:
            return
        self.seen.add((about, text))
        developers = issubclass(category, (DeprecationWarning, PendingDeprecationWarning))
        level = logging.DEBUG if developers else logging.WARNING
        logging.getLogger("py.warnings").log(level, "%s", f"{about}: {text}" if about else text)


SHOWN_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(32), *range(127, 160)] if c not in (9, 10)}
SHOWN_CONTROLS |= {c: f"\\u{c:04x}" for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]}
SHOWN_CONTROLS |= {0x2028: "\\u2028", 0x2029: "\\u2029"}


class PrintableFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).encode("utf-8", "surrogateescape")
        return text.decode("utf-8", "backslashreplace").translate(SHOWN_CONTROLS)


def configure_logging(quiet: bool, verbose: bool) -> None:
    import warnings  # here: only this function of the block needs it

    level = logging.ERROR if quiet else logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PrintableFormatter("%(levelname)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    for library in ("PIL", "urllib3", "requests", "reportlab", "asyncio", "mail.log", "django"):
        logging.getLogger(library).setLevel(max(level, logging.WARNING))
    warnings.filterwarnings("always", module=r"PIL\.", append=True)
    warnings.showwarning = WarningsToLog()


def expand_home(text: str) -> Path:
    try:
        return Path(text).expanduser()
    except RuntimeError:
        return Path(text)


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP as KeyboardInterrupt: what finishes outputs after
    Ctrl-C runs for them too."""


Interrupted = shared("Interrupted", Interrupted)  # type: ignore[misc]
HELD = shared("HELD", {"depth": 0, "pending": ""})


def raise_interrupted(signum: int, frame: object) -> None:
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda *_: None)
    STOPPING.set()
    name = signal.Signals(signum).name
    if HELD["depth"]:
        HELD["pending"] = name
        return
    raise Interrupted(name)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    HELD["depth"] += 1
    try:
        yield
    finally:
        HELD["depth"] -= 1
        pending, HELD["pending"] = HELD["pending"], ""
        if pending and not HELD["depth"]:
            raise Interrupted(pending)
        HELD["pending"] = pending


SIGNAL_CHECK = 0.2


def result_of(future: Future) -> Any:
    while not wait([future], timeout=SIGNAL_CHECK).done:
        pass
    return future.result()


def sleep_in_steps(seconds: float) -> None:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(left, SIGNAL_CHECK))


def say_error(text: str) -> None:
    if logging.getLogger().handlers:
        logging.getLogger().error("%s", text)
    else:
        print(f"ERROR {text}", file=sys.stderr)


def guarded(
    work: Callable[[], int],
    say: Callable[[str], object] = say_error,
    failed: int = 2,
    interrupted: int = 130,
) -> int:
    in_main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS} if in_main else {}
    STOPPING.clear()
    for sig, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(sig, raise_interrupted)
    try:
        return work()
    except KeyboardInterrupt as stop:
        name = (str(stop).split() or [""])[-1]
        say(f"interrupted by {name}" if name in ("SIGTERM", "SIGHUP") else "interrupted")
        return interrupted
    except BrokenPipeError:  # `--dry-run | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a process ended by SIGPIPE
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        say(f"unexpected {type(error).__name__}" + (f": {first}" if first else ""))
        return failed
    finally:
        early = shared("early stop", None)
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_IGN if early and handler is early else handler)


# --- end shared block: cli ---
# --- begin shared block: lock (from blocks/lock.py; make blocks) ---
LOCK_NAME = ".fruit-catalog.lock"


class DeliveryBusy(Exception):
    """Another run holds the delivery's lock: str() names it."""


def lock_path(delivery: Path) -> Path:
    real = delivery.resolve()
    if os.access(real, os.W_OK):
        return real / LOCK_NAME
    digest = hashlib.sha256(os.fsencode(real)).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"fruit-catalog-{os.getuid()}-{digest}.lock"


def describe_holder(lock_file: IO[str]) -> str:
    lock_file.seek(0)
    try:
        holder = json.loads(lock_file.read(4096))
        return f"{holder['script']} (pid {holder['pid']}, since {holder['since']})"
    except (ValueError, KeyError, TypeError):
        return "another run"


def open_lock_file(path: Path) -> IO[str]:
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as error:
        raise DeliveryBusy(f"cannot use {path} as the lock: {error.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise DeliveryBusy(f"cannot use {path} as the lock: not a regular file")
    return os.fdopen(fd, "r+", encoding="utf-8")


def hold_delivery_lock(delivery: Path, wait: float) -> IO[str]:
    path = lock_path(delivery)
    lock_file = open_lock_file(path)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = describe_holder(lock_file)
                lock_file.close()
                raise DeliveryBusy(
                    f"{delivery} is in use by {holder}; wait for it to finish,"
                    f" or give --wait SECONDS (lock {path})"
                ) from None
            time.sleep(0.1)
    lock_file.seek(0)
    lock_file.truncate()
    since = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    script = Path(sys.argv[0]).name
    lock_file.write(json.dumps({"script": script, "pid": os.getpid(), "since": since}))
    lock_file.flush()
    return lock_file


# --- end shared block: lock ---
# --- begin shared block: progress (from blocks/progress.py; make blocks) ---
class Progress:
    SHOW_AFTER = 2.0
    EVERY = 0.2

    def __init__(self, total: int, verb: str, enabled: bool = True) -> None:
        try:
            after = float(os.environ.get("PROGRESS_AFTER", self.SHOW_AFTER))
        except ValueError:
            after = self.SHOW_AFTER
        self.after = after if 0 <= after <= 3600 else self.SHOW_AFTER
        self.total, self.verb, self.done = total, verb, 0
        self.enabled = enabled and sys.stderr.isatty()
        self.started = self.last = time.monotonic()
        self.shown = False
        self.lock = threading.Lock()

    def advance(self, count: int = 1) -> None:
        with self.lock:
            self.done += count
            now = time.monotonic()
            if not self.enabled or now - self.started < self.after:
                return
            if now - self.last >= self.EVERY or self.done == self.total:
                self.last = now
                self.show(now)

    def show(self, now: float) -> None:
        rate = self.done / max(now - self.started, 1e-9)
        left = (self.total - self.done) / rate if rate else 0.0
        line = f"{self.verb} {self.done}/{self.total}, {rate:.1f}/s, {left:.0f} s left"
        sys.stderr.write(f"\r{line}\x1b[K")
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        with self.lock:
            if self.shown:
                sys.stderr.write("\r\x1b[K")
                sys.stderr.flush()
                self.shown = False


# --- end shared block: progress ---
# --- begin shared block: delivery files (from blocks/delivery_files.py; make blocks) ---
DESCRIPTION_LIMIT = 1 << 20  # 1 MiB: a description is a few lines
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


def read_delivery_file(path: Path, root: Path, limit: int) -> bytes:
    with open_delivery_file(path, root, limit) as file:
        content = file.read(limit + 1)
    if len(content) > limit:
        raise RefusedFile(f"{path}: grew over the limit of {limit} while read; not read")
    return content


def earlier_attempt(jpeg: Path, source: Path) -> str:
    command = "./changeImage.py --replace-unmarked"
    if jpeg.parent != source.parent:
        command += f" --output-dir {shlex.quote(str(jpeg.parent))}"
    if source.parent.resolve() != (supplier_data() / "images").resolve():
        command += f" {shlex.quote(str(source.parent))}"
    shown = (jpeg.name, source.name) if jpeg.parent == source.parent else (jpeg, source)
    return (
        f"{shown[0]} was not made by changeImage.py from {shown[1]} (an earlier"
        f" attempt's?): run {command} to convert over it"
    )


# --- end shared block: delivery files ---
# --- begin shared block: deadline (from blocks/deadline.py; make blocks) ---
class Deadline:
    _current = threading.local()

    def __init__(self, seconds: float) -> None:
        self.seconds, self.end = seconds, time.monotonic() + seconds
        self.expired = False
        self.fd, self.identity = -1, (0, 0)
        self.lock = threading.Lock()
        self.timer = threading.Timer(seconds, self.expire)
        self.timer.daemon = True

    @classmethod
    def current(cls) -> Deadline | None:
        return getattr(cls._current, "deadline", None)

    def __enter__(self) -> Deadline:
        self.outer, Deadline._current.deadline = Deadline.current(), self
        self.end = time.monotonic() + self.seconds
        self.timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        Deadline._current.deadline = self.outer

    def left(self) -> float:
        return self.end - time.monotonic()

    def stop(self) -> None:
        with self.lock:
            self.fd = -1
        self.timer.cancel()

    def watch(self, sock: socket.socket) -> None:
        with self.lock:
            if self.expired:
                raise TimeoutError(f"no whole answer within {self.seconds:g} s")
            self.fd = sock.fileno()
            info = os.fstat(self.fd)
            self.identity = (info.st_dev, info.st_ino)

    def expire(self) -> None:
        with self.lock:
            self.expired = True
            if self.fd < 0 or not self.still_watched():
                return
            view = socket.socket(fileno=self.fd)
            try:
                view.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the other side: the blocked call returns anyway
            finally:
                view.detach()

    def still_watched(self) -> bool:
        try:
            info = os.fstat(self.fd)
        except OSError:
            return False
        return (info.st_dev, info.st_ino) == self.identity


def watch_socket(sock: socket.socket | None) -> None:
    deadline = Deadline.current()
    if deadline is not None and sock is not None:
        deadline.watch(sock)


# --- end shared block: deadline ---
# --- begin shared block: store names (from blocks/store_names.py; make blocks) ---
NAME_ROOM = 100 - len("images/")  # the store's FileField keeps images/<name> in 100 characters
NAME_BYTES = 255  # and writes it as a file: 255 bytes of UTF-8 on Linux


def valid_filename(name: str) -> str:
    return re.sub(r"(?u)[^-\w.]", "", str(name).strip().replace(" ", "_"))


def store_name(filename: str, tag: str = "") -> str:
    stem, dot, ext = valid_filename(filename).rpartition(".")
    stem, ext = (stem, dot + ext) if dot else (ext, "")
    stem = stem.strip(".") or "image"
    tail = f"-{tag}" if tag else ""
    stem = stem[: NAME_ROOM - len(ext) - len(tail)]
    while len(f"{stem}{tail}{ext}".encode()) > NAME_BYTES:  # the store's file system
        stem = stem[:-1]
    return stem + tail + ext


def content_tag(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()[:12]


def catalog_name(filename: str, content: bytes) -> str:
    return store_name(filename, content_tag(content))


# --- end shared block: store names ---
# --- begin shared block: catalog jpeg (from blocks/catalog_jpeg.py; make blocks) ---
CATALOG_SIZE = (600, 400)  # the lab's: a JPEG without changeImage.py's mark must have it
JPEG_MARK = re.compile(  # changeImage.py's MARK (its first marks: SHA-256)
    rb"fruit-catalog changeImage\.py made-from-(?:xxh3-128=[0-9a-f]{32}|sha256=[0-9a-f]{64})"
    rb" options=[0-9a-f]{16} size=([0-9]+)x([0-9]+)"
)
SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # frame headers: the size
STANDALONE_MARKERS = frozenset(range(0xD0, 0xD8)) | {0x01}  # markers without a length
CODED_DATA_END = re.compile(rb"\xff[^\x00\x01\xd0-\xd7\xff]")
CUT, NOT_OURS, WRONG_SIZE = "cut", "not ours", "wrong size"
EARLIER_ATTEMPT = "earlier attempt"  # unmarked beside its source: earlier_attempt() says it
PHOTO = "photo"  # the supplier's own photo under the catalog's name: photo_to_convert() says it
PHOTO_SUFFIXES = {
    b"\xff\xd8\xff": ".jpg",
    b"II*\x00": ".tiff",
    b"MM\x00*": ".tiff",
    b"\x89PNG\r\n\x1a\n": ".png",
    b"GIF87a": ".gif",
    b"GIF89a": ".gif",
}


def jpeg_layout(content: bytes) -> tuple[tuple[int, int] | None, bytes, int]:
    cut = f"cut short (no end marker after {len(content)} bytes)"
    if not content.startswith(b"\xff\xd8"):
        raise ValueError("not a JPEG")
    size, comments, at = None, b"", 2
    while True:
        if at + 2 > len(content):
            raise ValueError(cut)
        if content[at] != 0xFF:
            raise ValueError(f"broken at byte {at} (no segment starts there)")
        marker = content[at + 1]
        if marker == 0xD9:
            return size, comments, at + 2
        if marker == 0xFF or marker in STANDALONE_MARKERS:
            at += 1 if marker == 0xFF else 2
            continue
        length = int.from_bytes(content[at + 2 : at + 4], "big")
        end = at + 2 + length
        if length < 2 or end > len(content):
            raise ValueError(cut)
        if marker in SOF_MARKERS and length >= 7:
            size = (
                int.from_bytes(content[at + 7 : at + 9]),
                int.from_bytes(content[at + 5 : at + 7]),
            )
        elif marker == 0xFE:
            comments += content[at + 4 : end]
        at = end
        if marker == 0xDA:  # coded data: runs to the next marker that is not 00 or a restart
            end_of_data = CODED_DATA_END.search(content, at)
            if end_of_data is None:
                raise ValueError(cut)
            at = end_of_data.start()


class Unusable(NamedTuple):
    cause: str
    text: str


def unusable_jpeg(content: bytes, path: Path) -> Unusable | None:
    try:
        size, comments, end = jpeg_layout(content)
    except ValueError as error:
        is_other_photo = not content.startswith(b"\xff\xd8") and photo_suffix(content)
        if is_other_photo and not sources_beside(path):  # a TIFF named 005.jpeg
            return Unusable(PHOTO, photo_to_convert(content, path))
        return Unusable(CUT, f"not a whole JPEG: {error}")
    mark = JPEG_MARK.search(comments)
    sources = [] if mark else sources_beside(path)
    if end < len(content):
        if not (mark or sources):
            return Unusable(PHOTO, photo_to_convert(content, path))
        extra = len(content) - end
        return Unusable(
            NOT_OURS, f"{extra} bytes after the JPEG's end marker (not changeImage.py's)"
        )
    if sources:
        return Unusable(EARLIER_ATTEMPT, earlier_attempt(path, sources[0]))
    expected = (int(mark[1]), int(mark[2])) if mark else CATALOG_SIZE
    if size != expected:
        if not mark and size is not None:
            return Unusable(PHOTO, photo_to_convert(content, path))
        shown = "no frame" if size is None else f"{size[0]}x{size[1]}"
        whose = "its changeImage.py mark says" if mark else "a catalog JPEG is"
        return Unusable(WRONG_SIZE, f"{shown} pixels where {whose} {expected[0]}x{expected[1]}")
    return None


def photo_suffix(content: bytes) -> str:
    return next((s for magic, s in PHOTO_SUFFIXES.items() if content.startswith(magic)), "")


def photo_to_convert(content: bytes, path: Path) -> str:
    renamed = path.stem + (photo_suffix(content) or ".jpg")
    return (
        f"{path.name} is a photo under the catalog's name, not made by changeImage.py:"
        f" rename it {renamed} and run ./changeImage.py to convert it"
    )


def sources_beside(path: Path) -> list[Path]:
    beside = path.parent.glob(glob.escape(path.stem) + ".*")
    return sorted(p for p in beside if p.name != path.name and p.stem == path.stem)


# --- end shared block: catalog jpeg ---
# --- begin shared block: http (from blocks/http.py; make blocks) ---
DEFAULT_URL = "http://localhost/"
CONNECT_TIMEOUT = 5.0
RETRY_STATUSES = (502, 503, 504)
BACKOFF_BASE, BACKOFF_MAX = 0.5, 10.0
DEAD_AFTER = 3  # connection-level failures in a row, across workers: the store is down
BODY_LIMIT = 1 << 20  # an answer to a POST, or an error page: a few lines
LIST_LIMIT = 64 << 20  # GET /fruits/: ~250,000 products
URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]*@")
WRITING_PAUSES = (0.1, 0.2, 0.4, 0.8, 1.6, 0.0)  # a picture served half written: ask again
ENDPOINTS = ("fruits/", "upload/")  # given for the store's root, they mean it


class StoreError(Exception):
    """One request failed or was refused; the message says why (that item fails)."""


class Unanswered(StoreError):
    def __init__(self, message: str, maybe_sent: bool) -> None:
        super().__init__(message)
        self.maybe_sent = maybe_sent


class StoreDown(Unanswered):
    """Stop the run: the store stopped answering, or refused the credentials."""


def redact(text: str) -> str:
    return URL_CREDENTIALS.sub(r"\1", text)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        return True


def redact_logs() -> None:
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())


def hidden(url: str) -> str:
    text = re.sub(r"(?i)^([a-z][a-z0-9+.-]*://)[^@]*@", r"\1", redact(url).strip())
    return re.sub(r"[?#].*", "?...", text)


def canonical_url(url: str) -> str:
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ValueError(f"{hidden(url)!r} has a bad port") from None
    if scheme not in ("http", "https") or not host:
        raise ValueError(f"{hidden(url)!r} is not an http:// or https:// URL")
    if parts.query or parts.fragment:
        raise ValueError(f"{hidden(url)!r} has a query or fragment; give the store's base URL")
    host = host.rstrip(".")  # localhost. is localhost
    host = f"[{host}]" if ":" in host else host
    netloc = host if port in (None, {"http": 80, "https": 443}[scheme]) else f"{host}:{port}"
    path = sent_path(parts.path)
    path = path if path.endswith("/") else path + "/"
    for endpoint in ENDPOINTS:
        path = path.removesuffix(endpoint) if path.endswith("/" + endpoint) else path
    return f"{scheme}://{netloc}{path}"


def sent_path(path: str) -> str:
    try:
        sent = urlsplit(requests.Request("GET", "http://host" + (path or "/")).prepare().url)
    except requests.RequestException:
        raise ValueError(f"{redact(path)!r} is not a URL path") from None
    return sent.path


def store_url(text: str) -> str:
    try:
        canonical_url(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text.strip()


def store_options(sending: str) -> list[Option]:
    seconds, whole = number(0, 86400), functools.partial(number, whole=True)
    return [
        Option(
            "--url",
            "the store's base URL (its .../fruits/ or .../upload/ URL means the same)",
            "CATALOG_URL",
            DEFAULT_URL,
            store_url,
            "URL",
        ),
        Option("--jobs", "requests in parallel, 1-64", "CATALOG_JOBS", 8, whole(1, 64), "N"),
        Option(
            "--timeout",
            "wait for each read (connect 5); a request with its retries ends within"
            " 2 x SECONDS + 5",
            "CATALOG_TIMEOUT",
            30.0,
            number(0.1, 3600),
            "SECONDS",
        ),
        Option(
            "--retries",
            "retries of a GET, or of a POST the store surely did not take (refused, 503), 0-10",
            "CATALOG_RETRIES",
            4,
            whole(0, 10),
            "N",
        ),
        Option(
            "--grace",
            f"after {sending} lost its answer, wait this long before looking for it in the store",
            "CATALOG_GRACE",
            10.0,
            seconds,
            "SECONDS",
        ),
        Option(
            "--wait",
            "wait this long for another run on the delivery to finish",
            "CATALOG_WAIT",
            0.0,
            seconds,
            "SECONDS",
        ),
    ]


def env_flag(name: str) -> bool:
    text = os.environ.get(name, "").strip().lower()
    if text in ("", "0", "no", "false", "off"):
        return False
    if text in ("1", "yes", "true", "on"):
        return True
    raise ValueError(f"{text[:20]!r} is not 1 or 0 (yes or no)")


def content_names_option() -> Option:
    return Option(
        "--content-names",
        "name every picture by its content (<stem>-<12 hex of SHA-256>.jpeg), never the"
        " lab's plain name: for stores where several importers send pictures at once",
        "CATALOG_CONTENT_NAMES",
        lambda: env_flag("CATALOG_CONTENT_NAMES"),
        action="store_true",
        shown="",
    )


def store_token(parser: argparse.ArgumentParser) -> str:
    token = os.environ.get("CATALOG_TOKEN", "").strip()
    if not all("!" <= char <= "~" for char in token):
        parser.error(
            "environment variable CATALOG_TOKEN: has spaces, line breaks or characters"
            " outside ASCII, which an HTTP header cannot carry (not shown)"
        )
    return token


def url_credentials(url: str) -> tuple[bytes, bytes] | None:
    parts = urlsplit(url.strip())
    if not parts.username:
        return None
    return unquote(parts.username).encode(), unquote(parts.password or "").encode()


class WatchedConnection:
    sock: socket.socket | None

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        watch_socket(self.sock)

    def request(self, *args: object, **kwargs: object) -> None:
        watch_socket(self.sock)
        super().request(*args, **kwargs)  # type: ignore[misc]


class WatchedHTTP(WatchedConnection, urllib3.connection.HTTPConnection):
    pass


class WatchedHTTPS(WatchedConnection, urllib3.connection.HTTPSConnection):
    pass


class WatchedPool(urllib3.HTTPConnectionPool):
    ConnectionCls = WatchedHTTP


class WatchedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = WatchedHTTPS


class WatchedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: object, **kwargs: object) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": WatchedPool, "https": WatchedHTTPSPool}


class GaveUp(Exception):
    def __init__(self, why: str, response: urllib3.BaseHTTPResponse | None) -> None:
        super().__init__(why)
        self.response = response


SAID_WAITING = threading.Event()
STORE_DOWN = threading.Event()  # this run's Store stopped answering: no retry waits on


class StoreRetry(Retry):
    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if method == "POST":
            return status_code == 503
        return super().is_retry(method, status_code, has_retry_after)

    def sleep(self, response: urllib3.BaseHTTPResponse | None = None) -> None:
        try:
            asked = self.get_retry_after(response) if response else None
        except urllib3.exceptions.InvalidHeader:
            asked = None
        wait = asked or self.get_backoff_time()
        deadline = Deadline.current()
        if deadline is not None and deadline.left() < wait:
            raise GaveUp(f"asked to wait {wait:g} s, past the deadline", response)
        if response is None and wait >= 1 and not SAID_WAITING.is_set():
            SAID_WAITING.set()  # once a run: seconds of silence would look like a hang
            logging.getLogger("store").info("no answer from the store yet; trying again")
        end = time.monotonic() + wait
        while (left := end - time.monotonic()) > 0:
            if STOPPING.wait(min(left, SIGNAL_CHECK)):
                raise GaveUp("the run was interrupted", response)
            if STORE_DOWN.is_set():
                raise GaveUp("the store stopped answering", response)


def read_body(answer: requests.Response, limit: int) -> None:
    chunks, size = [], 0
    for chunk in answer.iter_content(64 << 10):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    body = b"".join(chunks)
    answer._content, answer.cut = body[:limit], len(body) > limit  # type: ignore[attr-defined]
    answer.close()


def make_session(url: str, token: str, retries: int, jobs: int) -> requests.Session:
    retry = StoreRetry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        other=0,
        allowed_methods=frozenset({"GET", "HEAD"}),
        status_forcelist=RETRY_STATUSES,
        backoff_factor=BACKOFF_BASE,
        backoff_max=BACKOFF_MAX,
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    adapter = WatchedAdapter(max_retries=retry, pool_connections=1, pool_maxsize=max(jobs, 1))
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.auth = url_credentials(url)
    if token:
        session.headers["Authorization"] = f"Token {token}"
    return session


def connection_problem(error: BaseException) -> str:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, socket.gaierror):
            return "host name not found"
        if isinstance(seen, OSError) and seen.errno == errno.ENETUNREACH:
            return "network unreachable"
        if isinstance(seen, requests.Timeout | TimeoutError):
            return "timed out"
        if isinstance(seen, http.client.RemoteDisconnected | ConnectionResetError):
            return "connection closed without an answer"
        nested = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        seen = seen.__cause__ or seen.__context__ or nested
    return "connection failed"


def never_sent(error: requests.RequestException) -> bool:
    return isinstance(error, requests.ConnectTimeout) or connection_problem(error) in {
        "connection refused",
        "host name not found",
        "network unreachable",
    }


def store_errors(body: object) -> str:
    if isinstance(body, dict):
        parts = []
        for field, messages in body.items():
            text = " ".join(map(str, messages)) if isinstance(messages, list) else str(messages)
            parts.append(text if field in {"detail", "non_field_errors"} else f"{field}: {text}")
        return "; ".join(parts)
    return str(body)


def rejection(answer: requests.Response) -> str:
    if answer.is_redirect:
        where = redact(answer.headers.get("Location", "?"))
        return f"the store answered {answer.status_code} redirect to {where}; check --url"
    try:
        detail = store_errors(answer.json())
    except ValueError:
        detail = ""
    if answer.status_code == 400 and detail:
        return f"the store rejected {detail}"
    return f"the store answered {answer.status_code}" + (f": {detail}" if detail else "")


class Store:
    def __init__(self, url: str, token: str, timeout: float, retries: int, jobs: int) -> None:
        self.url = canonical_url(url)
        self.session = make_session(url, token, retries, jobs)
        self.timeout, self.retries = (CONNECT_TIMEOUT, timeout), retries
        self.deadline = CONNECT_TIMEOUT + 2 * timeout
        self.failures, self.stopped = 0, ""
        self.lock = threading.Lock()
        SAID_WAITING.clear()
        STORE_DOWN.clear()

    def request(
        self, method: str, path: str, limit: int = BODY_LIMIT, **options: object
    ) -> requests.Response:
        if STOPPING.is_set():
            raise StoreDown("the run was interrupted", maybe_sent=False)
        if self.stopped:
            raise StoreDown(self.stopped, maybe_sent=False)
        url = self.url + path
        with Deadline(self.deadline) as deadline:
            try:
                answer = self.session.request(
                    method, url, timeout=self.timeout, allow_redirects=False, stream=True, **options
                )
                read_body(answer, limit)
            except GaveUp as stop:
                self.gave_up(f"{method} {url}", stop)
            except requests.RequestException as error:
                why = f"no whole answer within {deadline.seconds:g} s" if deadline.expired else ""
                message = f"{method} {url}: {why or connection_problem(error)}"
                self.failed(message, maybe_sent=not never_sent(error))
        with self.lock:
            self.failures = 0
        if answer.status_code in (401, 403):
            self.stopped = "the store refused the credentials (CATALOG_TOKEN, or the URL's)"
            raise StoreDown(self.stopped, maybe_sent=False)
        return answer

    def gave_up(self, request: str, stop: GaveUp) -> None:
        if STOPPING.is_set():
            raise StoreDown("the run was interrupted", maybe_sent=False)
        if stop.response is not None:
            raise StoreError(f"{request}: the store answered {stop.response.status}, {stop}")
        self.failed(f"{request}: {connection_problem(stop.__context__ or stop)}", False)

    def failed(self, message: str, maybe_sent: bool) -> None:
        with self.lock:
            self.failures += 1
            if self.failures >= DEAD_AFTER and not self.stopped:
                self.stopped = f"the store stopped answering ({DEAD_AFTER} in a row; {message})"
                STORE_DOWN.set()
            kind = StoreDown if self.stopped else Unanswered
        raise kind(self.stopped or message, maybe_sent=maybe_sent)

    def post(self, path: str, **options: object) -> requests.Response:
        answer = self.request("POST", path, **options)
        if answer.status_code in (502, 504):
            message = f"POST {self.url}{path}: the store answered {answer.status_code}"
            raise Unanswered(message, maybe_sent=True)
        return answer

    def fruits(self) -> list[dict]:
        answer = self.request("GET", "fruits/", limit=LIST_LIMIT)
        if answer.status_code != 200:
            raise StoreError(f"GET {self.url}fruits/: {rejection(answer)}")
        if answer.cut:
            raise StoreError(f"GET {self.url}fruits/ answered over {LIST_LIMIT >> 20} MiB")
        try:
            fruits = answer.json()
        except ValueError:
            fruits = None
        if not isinstance(fruits, list) or not all(isinstance(f, dict) for f in fruits):
            raise StoreError(f"GET {self.url}fruits/ did not answer a JSON list; is --url right?")
        return fruits

    def holds(self, name: str, content: bytes) -> bool | None:
        for pause in WRITING_PAUSES:
            answer = self.request("GET", "media/images/" + quote(name), limit=len(content))
            if answer.status_code == 404:
                return None
            if answer.status_code != 200:
                raise StoreError(f"GET {self.url}media/images/{name}: {rejection(answer)}")
            if answer.cut or not content.startswith(answer.content):
                return False
            if len(answer.content) == len(content):
                return True
            time.sleep(pause)
        return False


def unusable(store: Store, error: StoreError) -> str:
    return (
        f"cannot use the store at {store.url}: {error} (is the store running there?"
        " Else set --url or CATALOG_URL)"
    )


def store_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    args.token = store_token(parser)
    return args


def configure_store_logging(quiet: bool, verbose: bool) -> None:
    configure_logging(quiet, verbose)
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    redact_logs()


# --- end shared block: http ---
# --- begin shared block: journal (from blocks/journal.py; make blocks) ---
JOURNAL_LIMIT = 64 << 20  # a journal read back: ~200,000 lines


def open_journal(path: Path) -> int:
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    fd = os.open(path, flags, 0o644)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return fd


class JournalError(Exception):
    """The journal cannot be written (a full disk): the run stops sending."""


AFTER_FULL = "make room and run again: it finds in the store what this run sent"


def append_line(fd: int, entry: dict) -> None:
    try:
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        os.write(fd, line.encode("utf-8", "backslashreplace"))
        os.fsync(fd)
    except OSError as error:
        raise JournalError(error.strerror or str(error)) from None


def read_journal(path: Path) -> list[dict]:
    try:
        raw = read_delivery_file(path, path.parent, JOURNAL_LIMIT)
    except RefusedFile as error:
        if path.exists() or path.is_symlink():
            log.warning("%s; ignored (the store is asked anyway)", error)
        return []
    entries = []
    for count, line in enumerate(raw.splitlines(), 1):
        try:
            entry = json.loads(line.decode("utf-8"))
        except ValueError as error:
            why = "not UTF-8" if isinstance(error, UnicodeDecodeError) else "not JSON"
            log.warning("%s line %d: %s; ignored", path, count, why)
            continue
        if isinstance(entry, dict):
            entries.append(entry)
        else:
            log.warning("%s line %d: not a JSON object; ignored", path, count)
    return entries


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def journal_time(entry: dict) -> float:
    try:
        return datetime.datetime.fromisoformat(entry["time"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return 0.0


def await_stopped_requests(sent: float, grace: float) -> bool:
    left = min(sent + 1 + grace - time.time(), grace + 1)  # journal times are whole seconds
    if left <= 0:
        return False
    log.info("a stopped run's request may still land; looking in %.0f s (--grace)", left)
    sleep_in_steps(left)
    return True


# --- end shared block: journal ---
# --- begin shared block: sending (from blocks/sending.py; make blocks) ---
FAILED, UNCERTAIN = "failed", "uncertain"  # the outcomes both scripts share
STORE_UNREACHABLE = "store_unreachable"  # not sent: the store stopped answering
INTERRUPTED = "interrupted"  # not sent: the run was stopped
UNCONFIRMED = "unconfirmed"  # sent, no answer, not confirmed since
NOT_SENT = (STORE_UNREACHABLE, INTERRUPTED)


def under_delivery_lock(delivery: Path, wait: float, work: Callable[[], int]) -> int:
    try:
        held = hold_delivery_lock(delivery, wait)
    except DeliveryBusy as error:
        log.error("%s", error)
        return EXIT_USAGE
    with held:
        return work()


def fail(item: Any, error: Exception, problem: str) -> None:
    item.outcome, item.reason, item.problem = FAILED, str(error), problem
    if isinstance(error, StoreDown):
        item.problem = INTERRUPTED if STOPPING.is_set() else STORE_UNREACHABLE
        item.reason = f"not sent: {error}"


def post_once(item: Any, post: Callable[[], requests.Response]) -> requests.Response | None:
    item.sent = time.monotonic()
    try:
        return post()
    except Unanswered as error:
        if not error.maybe_sent:
            raise
        item.outcome, item.problem = UNCERTAIN, UNCONFIRMED
        item.reason = f"sent, but no answer came ({error}); the next run looks for it"
        return None


def settle(
    items: Sequence[Any],
    grace: float,
    store: Any,
    noun: str,
    look_again: Callable[[Any, bool], None],
    look_in_store: Callable[[], None] = lambda: None,
) -> None:
    for last in (False, True):
        pending = [item for item in items if item.outcome == UNCERTAIN and item.sent]
        if not pending or store.stopped:
            return
        wait = max(0.0, grace - (time.monotonic() - max(item.sent for item in pending)))
        log.info("%s lost their answer; looking in %.0f s", counted(len(pending), noun), wait)
        sleep_in_steps(wait)
        try:
            look_in_store()
        except StoreError as error:
            for item in pending:
                item.reason = f"sent, but the store could not be asked again ({error})"
            return
        for item in pending:
            look_again(item, last)


def report(items: Sequence[Any], describe: Callable[[Any], str], noun: str) -> None:
    unsent = [item for item in items if item.problem in NOT_SENT]
    for item in items:
        if item.outcome in (FAILED, UNCERTAIN) and item.problem not in NOT_SENT:
            log.error("%s", describe(item))
    for reason in dict.fromkeys(item.reason for item in unsent):
        log.error("%s %s", counted(sum(i.reason == reason for i in unsent), noun), reason)


def counted(count: int, noun: str) -> str:
    return f"{count} {noun if count != 1 else noun.removesuffix('s')}"


# --- end shared block: sending ---
# --- begin shared block: files (from blocks/files.py; make blocks) ---
def write_atomically(path: Path, data: bytes | str, *, mode: int = 0o644) -> None:
    path = Path(path)
    try:
        kind = os.lstat(path).st_mode
    except FileNotFoundError:
        kind = stat.S_IFREG
    if not (stat.S_ISREG(kind) or stat.S_ISLNK(kind)):
        raise OSError(errno.EEXIST, "not a regular file, which it would replace", str(path))
    content = data.encode("utf-8", "backslashreplace") if isinstance(data, str) else data
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# --- end shared block: files ---


@dataclass
class ImportRun:
    """One import of a delivery: where its record goes, and what it started with."""

    descriptions: Path
    images: Path
    record: Path
    importer: Importer
    products: list[Product]
    started: str = field(default_factory=now)

    def document(self, summary_text: str, complete: bool) -> dict:
        return {
            "version": RECORD_VERSION,
            "store": self.importer.store.url,
            "delivery": self.descriptions.resolve().parent.name,
            "descriptions": str(self.descriptions),
            "images": str(self.images),
            "started": self.started,
            "finished": now(),
            "complete": complete,
            "summary": summary_text,
            "products": [p.record() for p in sorted(self.products, key=lambda p: p.file)],
        }

    def finish(self, stop: str = "") -> str:
        """The journal's last line and the record, written whole (a stop signal
        waits for them); the summary. Stopped, the products not sent say so."""
        with signals_held():
            return self.write_record(stop)

    def write_record(self, stop: str) -> str:
        if stop:
            interrupted = Failure(
                Problem.INTERRUPTED, "not sent: the run was interrupted; run again"
            )
            # A stopped run's POST, not settled since, may still land: not "not sent".
            in_flight = Failure(
                Problem.UNCONFIRMED,
                "sent by a stopped run, no answer seen since; the next run looks for it",
            )
            for product in self.products:
                if product.outcome != Outcome.PENDING:
                    continue
                if product.file in self.importer.evidence.in_flight_files:
                    product.fail(in_flight, Outcome.UNCERTAIN)
                else:
                    product.fail(interrupted)
        else:
            say_outcomes(self.products)
        text = stop + summary(self.products)
        importer = self.importer
        entry = {"event": "finished", "run": importer.run_id, "time": now(), "summary": text}
        append_line(importer.journal, entry)
        complete = not (importer.store.stopped or stop)
        document = json.dumps(self.document(text, complete), indent=2, ensure_ascii=False)
        try:
            write_atomically(self.record, document + "\n")
        except OSError as error:
            raise RecordUnwritten(error.strerror or str(error)) from None
        return text


# -- the run ------------------------------------------------------------------


def check(descriptions: Path, images: Path) -> int:
    """--check: every description read as a run reads it, and catalog images there."""
    products = read_products(descriptions, images)
    for product in products:
        if product.outcome == Outcome.FAILED:
            log.error("%s", product.line())
    bad = sum(p.outcome == Outcome.FAILED for p in products)
    pictures = any(p.image_path for p in products)
    if not pictures:
        log.error("no catalog images (<stem>.jpeg) in %s: run changeImage.py first", images)
    log.info("checked %d descriptions: %d with problems", len(products), bad)
    return EXIT_FAILED if bad or not pictures else EXIT_OK


def dry_run(descriptions: Path, images: Path, url: str, content_names: bool) -> int:
    """--dry-run: each POST a run would make, with the image_name it would post
    (the lab's name, the same before and after changeImage.py runs)."""
    products = read_products(descriptions, images)
    for product in products:
        if product.outcome == Outcome.PENDING and content_names:
            try:
                jpeg = images / (Path(product.file).stem + ".jpeg")
                content = read_delivery_file(jpeg, images, IMAGE_LIMIT)
                product.image_name = catalog_name(jpeg.name, content)
            except RefusedFile:
                product.fail(missing_jpeg(jpeg))
        if product.outcome == Outcome.FAILED:
            log.error("%s", product.line())
        else:
            payload = json.dumps(product.payload(), ensure_ascii=False)
            print(f"POST {canonical_url(url)}fruits/ {payload}")
    return EXIT_FAILED if any(p.outcome == Outcome.FAILED for p in products) else EXIT_OK


def import_delivery(args: argparse.Namespace) -> int:
    """The delivery's lock held, its record writable: every product to the store."""
    return under_delivery_lock(args.descriptions.parent, args.wait, lambda: import_locked(args))


def import_locked(args: argparse.Namespace) -> int:
    try:
        check_writable(args.record)
        journal = open_journal(args.journal)
    except OSError as error:
        log.error("cannot write the record %s: %s; nothing sent", error.filename, error.strerror)
        return EXIT_USAGE
    try:
        return import_with_journal(args, journal)
    except (JournalError, RecordUnwritten) as error:
        what = (
            ("record", args.record)
            if isinstance(error, RecordUnwritten)
            else ("journal", args.journal)
        )
        log.error("cannot write the %s %s: %s; stopped: %s", *what, error, AFTER_FULL)
        return EXIT_USAGE
    finally:
        os.close(journal)


def import_with_journal(args: argparse.Namespace, journal: int) -> int:
    """Read the descriptions, ask the store what it holds, post what it lacks, in
    order; the record is written however it ends (a stop included)."""
    store = Store(args.url, args.token, args.timeout, args.retries, args.jobs)
    importer = Importer(
        store,
        journal,
        uuid.uuid4().hex,
        args.images,
        force=args.force,
        grace=args.grace,
        content_names=args.content_names,
    )
    # Until they are read, a stop records each description file as not sent.
    products = [Product(path.name) for path in description_files(args.descriptions)]
    this = ImportRun(args.descriptions, args.images, args.record, importer, products)
    try:
        products[:] = read_products(args.descriptions, args.images)
        if not ask_store(importer, args.journal, args.record, args.grace, this.started):
            return EXIT_USAGE
        progress = Progress(len(products), "imported", enabled=not args.quiet)
        try:
            importer.import_all(products, args.jobs, progress)
        finally:
            progress.close()
        importer.settle(products)
        importer.name_copies(products)
    except KeyboardInterrupt:
        this.finish("interrupted: ")
        raise
    log.info("%s", this.finish())
    return exit_status(products, store)


def ask_store(importer: Importer, journal: Path, record: Path, grace: float, started: str) -> bool:
    """What earlier runs left and what the store holds (False: it cannot be used)."""
    store = importer.store
    importer.evidence = gather_evidence(journal, record, store.url)
    await_stopped_requests(importer.evidence.in_flight, grace)
    try:
        importer.list_store()
    except StoreError as error:
        log.error("%s", unusable(store, error))
        return False
    run_line = {"run": importer.run_id, "time": started, "store": store.url, "script": "run.py"}
    append_line(importer.journal, {"event": "run"} | run_line)
    return True


def exit_status(products: list[Product], store: Store) -> int:
    if store.stopped:
        log.error("stopped: %s; the record says what was done; run again", store.stopped)
        return EXIT_USAGE
    done = (Outcome.IMPORTED, Outcome.ALREADY)
    unsettled = any(p.outcome not in done or p.store_values or p.copies for p in products)
    return EXIT_FAILED if unsettled else EXIT_OK


# -- the command line -----------------------------------------------------------


OPTIONS = [
    *store_options("a POST"),
    Option(
        "--descriptions",
        "folder of the .txt descriptions",
        "SUPPLIER_DATA",
        lambda: supplier_data() / "descriptions",
        Path,
        "DIR",
        shown="$SUPPLIER_DATA/descriptions",
    ),
    Option(
        "--images",
        "folder of the catalog JPEGs",
        "SUPPLIER_DATA",
        lambda: supplier_data() / "images",
        Path,
        "DIR",
        shown="$SUPPLIER_DATA/images",
    ),
    Option(
        "--record",
        "the record; its journal is the same name with .jsonl",
        "IMPORT_RECORD",
        None,
        Path,
        "FILE",
        shown="imported.json beside the descriptions folder",
    ),
    content_names_option(),
    Option("--check", "validate every file; contact no store", action="store_true"),
    Option("--dry-run", "print what would be sent; contact no store", action="store_true"),
    Option(
        "--force",
        "post a product even when the store has one of that name from elsewhere",
        action="store_true",
    ),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser(__doc__, OPTIONS)
    args = store_arguments(parser, argv)
    args.record = args.record or args.descriptions.parent / "imported.json"
    args.journal = args.record.with_suffix(".jsonl")
    if args.journal == args.record:
        parser.error(
            f"--record or IMPORT_RECORD: {args.record} is its own journal's name; end it in .json"
        )
    if why := unreachable(args.descriptions):
        if why == ABSENT:
            parser.error(f"no descriptions folder at {args.descriptions}")
        parser.error(f"cannot read the descriptions folder {args.descriptions}: {why}")
    if (why := unreachable(args.images)) not in ("", ABSENT):  # then each product says so
        parser.error(f"cannot read the images folder {args.images}: {why}")
    return args


def main(argv: list[str] | None = None) -> int:
    """The lab's step 3, under the one guard that owns the exit status."""
    return guarded(lambda: run(parse_args(argv)))


def run(args: argparse.Namespace) -> int:
    configure_store_logging(args.quiet, args.verbose)  # no credentials in any line
    if not description_files(args.descriptions):
        log.error("%s: no descriptions (*.txt); nothing done, no record written", args.descriptions)
        return EXIT_USAGE
    if args.check:
        return check(args.descriptions, args.images)
    if args.dry_run:
        return dry_run(args.descriptions, args.images, args.url, args.content_names)
    return import_delivery(args)


if __name__ == "__main__":
    sys.exit(main())
