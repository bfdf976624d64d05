#!/usr/bin/env python3
"""The lab's step 2: upload a delivery's catalog JPEGs to the store, each once.

Each picture goes to <store>/upload/ (multipart field `file`) under its own
file name, as the lab does: `001.jpeg` is stored as `001.jpeg` (Django's
file-name rules applied: `fresh kiwi.jpeg` is sent as `fresh_kiwi.jpeg`).
`Uploader.send` does it for one picture, and reads it back: the store answers
201 without saying the name it kept. A name the store already serves with other
bytes, or that another importer takes at the same moment, is left to that
picture: this one takes its content name, `<stem>-<first 12 hex of its
SHA-256>.jpeg`, which cannot collide (--content-names: always). run.py posts the
name the store serves these bytes under: the lab's, else the content name.
Runs on one machine never send the same bytes to a store at the same moment
(one delivery from two copies of its folder): a lock per store and picture in
a private folder makes the second wait, then find it there.

Catalog JPEGs are what changeImage.py writes: files named `<stem>.jpeg`, whole
(walked to their end marker, nothing after it), of the size in changeImage.py's
mark (600x400 without one); any other fails by name, and an unmarked one beside
its source is an earlier attempt's (the one command that resolves it is said);
the supplier's own photo alone under that name (009.jpeg, 640x480) is told to
be renamed 009.jpg and converted, as changeImage.py says.
Supplier originals (`014.jpg`, TIFFs, ...), hidden and macOS `._*` files are
never uploaded. A picture the store already serves is not sent again. An
upload whose answer was lost is never sent again blindly: GRACE seconds later
the store is asked for it; not there, it is sent once more; still unknown, it
is reported as uncertain. A store that keeps uploads under names of its own
(it serves nothing under the name sent) gets nothing more, now or in later
runs, until --resend.

Usage:
    ./supplier_image_upload.py [--url URL] [--images DIR] [--journal FILE]
                               [--jobs N] [--timeout SECONDS] [--retries N]
                               [--grace SECONDS] [--wait SECONDS]
                               [--content-names] [--resend] [--dry-run]

Example:
    $ ./supplier_image_upload.py
    INFO uploaded 10, already in store 0, failed 0
    $ ./supplier_image_upload.py
    INFO uploaded 0, already in store 10, failed 0

Deadlines: every request, with its retries, ends within 2 x TIMEOUT + 5
seconds, even against a store that trickles its answer; three requests in a
row without an answer (across all jobs) stop the run at once.

Exit status:
    0  every image is in the store (uploaded now or before)
    1  some images failed or are uncertain (the others are in), the store kept
       some under names of its own, or this run left a copy in the store (a
       race lost to another importer); each is an error line, even with -q
    2  usage or configuration error: no catalog JPEGs, another run holds the
       delivery, the journal cannot be written, the store cannot be reached,
       refuses the credentials or stopped answering mid-run (what was done
       is in the journal), or an unexpected error (named in one line)
    130 interrupted
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
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
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
JPEG_MAGIC = b"\xff\xd8\xff"
CATALOG_SUFFIX = ".jpeg"  # what changeImage.py writes; supplier originals are .jpg, .tiff...
UPLOADED, ALREADY = "uploaded", "already in store"  # with the sending block's FAILED, UNCERTAIN
OUTCOMES = (UPLOADED, ALREADY, "uncertain", "failed")
SAME_PICTURE_WAIT = 3  # requests' time (ask, send, read back) another run here gets per picture
PICTURE_LOCKS = 256  # lock files per user and machine: a (store, picture) takes one by its digest

log = logging.getLogger("supplier_image_upload")

# -- the pictures ----------------------------------------------------------------


class Problem(StrEnum):
    """Why a picture failed (the sending block's problems besides): decided on by
    name, never by a message's text."""

    UNREADABLE = "not_read"  # a link out of the delivery, a FIFO, too large
    NOT_JPEG = "not_jpeg"
    UNUSABLE = "photo_unusable"  # cut, bytes after its end, or the wrong size
    EARLIER_ATTEMPT = "earlier_attempt"  # earlier_attempt() says it
    PHOTO_TO_CONVERT = "photo_to_convert"  # the supplier's photo: photo_to_convert() says it
    STORE_REFUSED = "store_refused"  # the store answered with an error
    RENAMED = "renamed_by_store"  # the store keeps uploads under names of its own
    BUSY = "sent_by_another_run"  # another run on this machine kept sending it past the wait


SAID_BY_BLOCK = (Problem.EARLIER_ATTEMPT, Problem.PHOTO_TO_CONVERT)  # its text names the file


class Unfit(Exception):
    """A file named like a catalog JPEG that is not one: its problem, and why."""

    def __init__(self, problem: Problem, message: str) -> None:
        super().__init__(message)
        self.problem = problem


@dataclass
class Image:
    """One catalog JPEG and what became of it."""

    path: Path
    content: bytes = b""
    name: str = ""  # the name the store serves it under
    outcome: str = "failed"  # FAILED (the sending block's, defined below)
    reason: str = ""
    problem: str = ""  # a Problem, or a sending block's, when it failed or is uncertain
    sent: float = 0.0  # when its last POST went out (monotonic)
    copies: int = 0  # copies this run left in the store under names the store chose


def catalog_jpegs(folder: Path) -> list[Path]:
    """`<stem>.jpeg` files, not hidden (changeImage.py's temporaries, macOS `._*`)."""
    return sorted(
        p for p in folder.iterdir() if p.suffix == CATALOG_SUFFIX and not p.name.startswith(".")
    )


def catalog_jpeg(path: Path, root: Path) -> bytes:
    """The bytes of a catalog JPEG: read as untrusted input, and whole to its end
    marker (nothing after it leaves the machine); RefusedFile or Unfit, else."""
    content = read_delivery_file(path, root, IMAGE_LIMIT)
    unusable = unusable_jpeg(content, path)
    if unusable is None:
        return content
    if unusable.cause == EARLIER_ATTEMPT:
        raise Unfit(Problem.EARLIER_ATTEMPT, unusable.text)
    if unusable.cause == PHOTO:
        raise Unfit(Problem.PHOTO_TO_CONVERT, unusable.text)
    if not content.startswith(JPEG_MAGIC):
        raise Unfit(Problem.NOT_JPEG, f"{path}: not a JPEG; not uploaded")
    sources = sources_beside(path)
    again = (
        f"remove it and run ./changeImage.py to convert {sources[0].name} again"
        if sources
        else "no source beside it to convert again: ask the supplier for the photo"
    )
    raise Unfit(Problem.UNUSABLE, f"{unusable.text}; not uploaded: {again}")


def same_store_name(images: list[Image]) -> list[list[Image]]:
    """Images grouped by the name the store would keep: `a b.jpeg` and `a_b.jpeg`
    go one after the other (the second finds the first's upload and takes its
    content name), never racing to leave a copy."""
    groups: dict[str, list[Image]] = {}
    for image in images:
        groups.setdefault(store_name(image.path.name), []).append(image)
    return list(groups.values())


def interrupted(entries: list[dict]) -> dict[str, float]:
    """Files whose last journal line (for any spelling of the store) is `sending`:
    a run stopped during their upload, at that time. The store is asked about
    every image anyway, once these had the grace period to land."""
    last = {e["file"]: e for e in entries if type(e.get("file")) is str}
    return {f: journal_time(e) for f, e in last.items() if e.get("state") == "sending"}


def renamed_before(entries: list[dict], store: str) -> str:
    """The time an earlier run found this store keeping an upload under a name of
    its own, "" when none did or an upload it read back since kept its name
    (--resend once the store was fixed)."""
    found = [e for e in entries if e.get("store") == store]
    found = [e for e in found if e.get("state") in ("renamed", "uploaded")]
    return str(found[-1].get("time", "?")) if found and found[-1]["state"] == "renamed" else ""


def uploaded_names(entries: list[dict], store: str) -> dict[str, str]:
    """sha256 -> the name an earlier run got that picture into this store under."""
    return {
        e["sha256"]: e["name"]
        for e in entries
        if e.get("store") == store and e.get("state") == "uploaded"
        if type(e.get("sha256")) is str and type(e.get("name")) is str
    }


def said(image: Image) -> str:
    """An image's error line: its file's name, then why (the catalog jpeg block's
    messages name it)."""
    if image.problem in SAID_BY_BLOCK:
        return image.reason
    return f"{shown_path(Path(image.path.name))}: {image.reason}"


def copy_left(image: Image) -> str:
    stem, _, ext = store_name(image.path.name).rpartition(".")
    return (
        f"{image.path.name}: another importer sent a picture as {stem}.{ext} at the same"
        f" moment; the store kept this one also as {stem}_XXXXXXX.{ext} (a name it chose and"
        f" does not say, shown by no product; remove it in the store's media/images/ if"
        f" space matters), then got it as {image.name}"
    )


def summary(images: list[Image]) -> str:
    count = {kind: sum(i.outcome == kind for i in images) for kind in OUTCOMES}
    text = f"uploaded {count[UPLOADED]}, already in store {count[ALREADY]}"
    if count[UNCERTAIN]:
        text += f", uncertain {count[UNCERTAIN]}"
    text += f", failed {count[FAILED]}"
    copies = sum(i.copies for i in images)
    return text + (f", copies left in the store {copies}" if copies else "")


def report_copies(images: list[Image]) -> None:
    """A copy this run left is a duplicate it made: an error line, even with -q."""
    for image in images:
        if image.copies:
            log.error("%s", copy_left(image))


class Uploader:
    """The lab's step 2 for each picture (send): put it into the store under the
    lab's name, or its content name where that is taken, journaling each upload
    before and after and reading each back from the store."""

    def __init__(self, store: Store, journal: int, args: argparse.Namespace, entries: list[dict]):
        self.store, self.journal, self.root = store, journal, args.images
        self.locks = args.locks
        self.lock_wait = max(args.wait, SAME_PICTURE_WAIT * store.deadline)
        self.content_names = args.content_names
        self.renamed = "" if args.resend else renamed_before(entries, store.url)
        self.earlier = uploaded_names(entries, store.url)

    def note(self, image: Image, state: str) -> None:
        append_line(
            self.journal,
            {
                "file": image.path.name,
                "name": image.name,
                "sha256": hashlib.sha256(image.content).hexdigest(),
                "size": len(image.content),
                "state": state,
                "store": self.store.url,
                "time": now(),
            },
        )

    def upload(self, image: Image) -> None:
        try:
            image.content = catalog_jpeg(image.path, self.root)
            with self.alone(image, "not sent"):
                self.place(image)
        except Unfit as error:
            fail(image, error, error.problem)
        except RefusedFile as error:
            fail(image, error, Problem.UNREADABLE)
        except StoreError as error:
            fail(image, error, Problem.STORE_REFUSED)

    @contextlib.contextmanager
    def alone(self, image: Image, unless: str) -> Iterator[None]:
        """No other run on this machine asks the store for, sends or reads back the
        same bytes meanwhile (the same delivery from two copies of its folder): the
        second waits, then finds the picture there instead of leaving a copy. Past
        the wait, Unfit (BUSY) says `unless`, then the lock. PICTURE_LOCKS files
        serve every picture (created once, never one per picture): two pictures
        sharing one wait for each other only while one is sent."""
        digest = hashlib.sha256(image.content).hexdigest()
        key = hashlib.sha256(f"{self.store.url}\n{digest}".encode()).digest()
        path = self.locks / f"upload-{int.from_bytes(key[:4]) % PICTURE_LOCKS:03d}.lock"
        try:
            held = hold_machine_lock(path, self.lock_wait)
        except DeliveryBusy as busy:
            if STOPPING.is_set():
                raise StoreDown("the run was interrupted", maybe_sent=False) from None
            raise Unfit(
                Problem.BUSY,
                f"{unless}: {busy} (taken to send a picture) for over {self.lock_wait:g} s;"
                " run again once it is done",
            ) from None
        with held:
            yield

    def names(self, image: Image) -> list[str]:
        """The names it may take, in order: the lab's (its own file name, as the
        store keeps it), then its content name; only the content name with
        --content-names."""
        content_name = catalog_name(image.path.name, image.content)
        return [content_name] if self.content_names else [self.lab_name(image), content_name]

    def lab_name(self, image: Image) -> str:
        return store_name(image.path.name)

    def place(self, image: Image, names: list[str] | None = None) -> None:
        """Found in the store under one of its names, it is there; else it is sent
        under the first name the store does not hold (a name serving other bytes is
        another picture's). The name an earlier run got it in under is asked first:
        a re-run then finds a picture that took its content name in one request."""
        names = names or self.names(image)
        earlier = self.earlier.get(hashlib.sha256(image.content).hexdigest())
        if earlier in names[1:] and self.store.holds(earlier, image.content):
            image.name, image.outcome = earlier, ALREADY
            return
        for name in names:
            held = self.store.holds(name, image.content)
            if held:
                image.name, image.outcome = name, ALREADY
                return
            if held is None:
                self.send(image, name)
                return
        raise StoreError(f"the store serves other bytes as {name}")

    def send(self, image: Image, name: str) -> None:
        """POST it as name, once; read back what the store serves (a lost answer
        leaves it uncertain until settle() looks)."""
        image.name = name
        if self.renamed:
            raise Unfit(Problem.RENAMED, self.renaming_store())
        self.note(image, "sending")
        files = {"file": (image.name, image.content, "image/jpeg")}
        answer = post_once(image, lambda: self.store.post("upload/", files=files))
        if answer is None:
            return
        if answer.status_code != 201:
            raise StoreError(rejection(answer))
        self.read_back(image)

    def read_back(self, image: Image) -> None:
        """The store said 201 but never says the name it kept. Serving these bytes
        under the name sent, it kept that name. Serving other bytes under the lab's
        name, another importer took it at the same moment: the store kept this one
        under a name it chose (a copy, counted), and the content name is used. Not
        serving anything under the name, the store renames uploads its own way: no product could
        name the picture, so nothing more is sent to it."""
        held = self.store.holds(image.name, image.content)
        if held:
            image.outcome, image.reason, image.problem = UPLOADED, "", ""
            self.note(image, "uploaded")
        elif held is False and image.name == self.lab_name(image) and not self.content_names:
            image.copies += 1
            self.note(image, "copy left")
            self.place(image, [catalog_name(image.path.name, image.content)])
        elif held is False:
            raise StoreError(f"the store serves other bytes as {image.name}, just sent")
        else:
            self.renamed = self.renamed or now()
            self.note(image, "renamed")
            raise Unfit(
                Problem.RENAMED,
                f"sent, and the store answered 201, but it serves nothing as {image.name}: it"
                " keeps uploads under names of its own, which no product can show; nothing"
                " more is sent to it: once it keeps the names it is sent, run"
                " supplier_image_upload.py --resend",
            )

    def renaming_store(self) -> str:
        return (
            f"not sent: the store keeps uploads under names of its own (seen {self.renamed});"
            " once it keeps the names it is sent, run supplier_image_upload.py --resend"
        )

    def look_again(self, image: Image, last: bool) -> None:
        """An upload whose answer was lost, GRACE seconds on: served as sent, it
        landed; under the lab's name another picture, it takes its content name;
        not there, it is sent once more (warned: the first may still land)."""
        try:
            with self.alone(image, "sent, but not looked for again"):
                self.look_in_store(image, last)
        except Unfit as error:
            if error.problem == Problem.BUSY:
                image.reason = str(error)  # still uncertain: the next run looks
            else:
                fail(image, error, error.problem)
        except StoreError as error:
            image.reason = f"sent, but the store could not be asked again ({error})"

    def look_in_store(self, image: Image, last: bool) -> None:
        held = self.store.holds(image.name, image.content)
        if held:
            image.outcome, image.reason, image.problem = UPLOADED, "", ""
            self.note(image, "uploaded")
        elif held is False and image.name == self.lab_name(image) and not self.content_names:
            log.warning(
                "%s: another picture took %s while the answer was lost; if this one"
                " landed, the store keeps it under a name it chose, which no product shows",
                image.path.name,
                image.name,
            )
            self.place(image, [catalog_name(image.path.name, image.content)])
        elif held is False:
            other = StoreError(f"the store serves other bytes as {image.name}")
            fail(image, other, Problem.STORE_REFUSED)
        elif not last:
            self.send(image, image.name)
            if image.outcome == UPLOADED:
                log.warning(
                    "%s: sent again after its answer was lost; if the first lands late"
                    " the store keeps the same picture also under a name it chooses,"
                    " which no product shows",
                    image.path.name,
                )


# -- the run ------------------------------------------------------------------


def upload_all(args: argparse.Namespace, uploader: Uploader) -> list[Image]:
    """Every picture through uploader.upload, in parallel, then the lost answers settled."""
    images = [Image(path) for path in catalog_jpegs(args.images)]
    progress = Progress(len(images), "uploaded", enabled=not args.quiet)

    def upload_group(group: list[Image]) -> None:
        for image in group:
            uploader.upload(image)
            if image.outcome != UNCERTAIN:
                image.content = b""  # settled: only uncertain ones are looked at again
            progress.advance()

    try:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for group in [pool.submit(upload_group, g) for g in same_store_name(images)]:
                result_of(group)
    finally:
        progress.close()  # a stop's line starts on a line of its own
    settle(images, args.grace, uploader.store, "uploads", uploader.look_again)
    return images


def upload_delivery(args: argparse.Namespace) -> int:
    """The lab's step 2: each catalog JPEG of the images folder to the store."""
    if not catalog_jpegs(args.images):
        log.error(
            "%s: no catalog JPEGs (<name>.jpeg, as changeImage.py writes them);"
            " run changeImage.py first",
            args.images,
        )
        return EXIT_USAGE
    if args.dry_run:
        return dry_run(args)
    return under_delivery_lock(args.images.parent, args.wait, lambda: upload_to_store(args))


def dry_run(args: argparse.Namespace) -> int:
    """What would be sent, under the first name tried; the store is not asked."""
    status = EXIT_OK
    for path in catalog_jpegs(args.images):
        try:
            content = catalog_jpeg(path, args.images)
        except (RefusedFile, Unfit) as error:
            log.error("%s", said(Image(path, reason=str(error), problem=problem_of(error))))
            status = EXIT_FAILED
            continue
        name = catalog_name(path.name, content) if args.content_names else store_name(path.name)
        print(f"POST {canonical_url(args.url)}upload/ file={name}")
    return status


def problem_of(error: Exception) -> str:
    return error.problem if isinstance(error, Unfit) else Problem.UNREADABLE


def upload_to_store(args: argparse.Namespace) -> int:
    try:
        journal = open_journal(args.journal)
    except OSError as error:
        log.error("cannot write the journal %s: %s; nothing sent", args.journal, error.strerror)
        return EXIT_USAGE
    try:
        return upload_with_journal(args, journal)
    except JournalError as error:
        log.error("cannot write the journal %s: %s; stopped: %s", args.journal, error, AFTER_FULL)
        return EXIT_USAGE
    finally:
        os.close(journal)


def upload_with_journal(args: argparse.Namespace, journal: int) -> int:
    try:
        args.locks = private_folder()
    except OSError as error:
        log.error(
            "%s: %s, where runs on this machine lock each picture they send; nothing sent:"
            " remove it, or set XDG_RUNTIME_DIR to a folder of yours",
            error.filename,
            error.strerror,
        )
        return EXIT_USAGE
    store = Store(args.url, args.token, args.timeout, args.retries, args.jobs)
    try:
        store.fruits()
    except StoreError as error:
        log.error("%s", unusable(store, error))
        return EXIT_USAGE
    entries = read_journal(args.journal)
    in_flight = interrupted(entries)
    if in_flight:
        log.info(
            "%d uploads were in flight when a run stopped; the store says which landed",
            len(in_flight),
        )
        await_stopped_requests(max(in_flight.values()), args.grace)
    images = upload_all(args, Uploader(store, journal, args, entries))
    report(images, said, "images")
    report_copies(images)
    log.info("%s", summary(images))
    if store.stopped:
        log.error("stopped: %s; run again when it answers", store.stopped)
        return EXIT_USAGE
    unsettled = any(i.outcome in (FAILED, UNCERTAIN) or i.copies for i in images)
    return EXIT_FAILED if unsettled else EXIT_OK


# -- the command line -----------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser(__doc__, OPTIONS)
    args = store_arguments(parser, argv)
    args.journal = args.journal or args.images.parent / "uploaded.jsonl"
    if why := unreachable(args.images):
        if why == ABSENT:
            parser.error(f"no images folder at {args.images}")
        parser.error(f"cannot read the images folder {args.images}: {why}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Read the options, log to stderr without credentials, upload the delivery's
    pictures; one guard owns the exit status (a stop is 130, never a traceback)."""

    def upload() -> int:
        args = parse_args(argv)
        configure_store_logging(args.quiet, args.verbose)
        return upload_delivery(args)

    return guarded(upload)


# -- shared blocks ------------------------------------------------------------------
# Generated from blocks/NAME.py (make blocks): edit the home, never these copies.
# They come last so that this script's own code is what a reader meets first.


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
MACHINE_LOCKS = "fruit-catalog"  # this user's folder of the locks every run on the machine shares
LOCK_POLL = 0.05  # seconds between tries of a machine lock: a holder's work takes milliseconds


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


def private_folder() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    writable = os.path.isabs(runtime) and os.access(runtime, os.W_OK)
    if writable and os.stat(runtime).st_uid == os.getuid():
        folder = Path(runtime) / MACHINE_LOCKS
    else:
        folder = Path(tempfile.gettempdir()) / f"{MACHINE_LOCKS}-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder, 0o700)
    found = os.lstat(folder)
    if stat.S_ISLNK(found.st_mode) or not stat.S_ISDIR(found.st_mode):
        why = "a link" if stat.S_ISLNK(found.st_mode) else "not a folder"
    elif found.st_uid != os.getuid():
        why = f"owned by uid {found.st_uid}, not by this user"
    elif found.st_mode & 0o022:
        why = f"writable by other users (mode {found.st_mode & 0o777:o})"
    else:
        return folder
    raise OSError(errno.EPERM, why, str(folder))


def hold_machine_lock(path: Path, wait: float) -> IO[str]:
    deadline = time.monotonic() + wait
    lock_file = open_lock_file(path)
    while True:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return lock_file
        except BlockingIOError:
            if time.monotonic() >= deadline or STOPPING.wait(LOCK_POLL):
                lock_file.close()
                raise DeliveryBusy(f"another run on this machine holds {path}") from None


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


# The uploader's options, one row each (the README's Configuration table); here,
# after the blocks, because the rows are built with theirs (Option, store_options).
OPTIONS = [
    *store_options("an upload"),
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
        "--journal",
        "journal of uploads",
        "UPLOAD_JOURNAL",
        None,
        Path,
        "FILE",
        shown="uploaded.jsonl beside the images folder",
    ),
    content_names_option(),
    Option(
        "--resend",
        "send again to a store an earlier run found renaming uploads (once it keeps names)",
        action="store_true",
    ),
    Option("--dry-run", "list what would be uploaded; contact no store", action="store_true"),
]


if __name__ == "__main__":
    sys.exit(main())
