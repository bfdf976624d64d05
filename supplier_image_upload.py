#!/usr/bin/env python3
"""Upload a delivery's JPEGs to the store, each exactly once.

Every JPEG in the images folder (recognised by content) is POSTed to
<store>/upload/ as multipart field `file`. The store silently renames an
upload whose name it already has, so this script never sends an image the
store may already hold: a journal of earlier uploads (JSON Lines, one line
before and one after each upload) and the store's product list say which
names to compare with the store's copy first, and an upload whose answer was
lost is looked for under /media/images/<name> before it is sent again.

Usage:
    ./supplier_image_upload.py [--url URL] [--images DIR] [--journal FILE]
                               [--jobs N] [--timeout S] [--retries N]
                               [--check-store] [--dry-run] [--force]

Example:
    $ ./supplier_image_upload.py
    INFO uploaded 10, already in store 0, failed 0
    $ ./supplier_image_upload.py
    INFO uploaded 0, already in store 10, failed 0

Exit status: 0 every image is in the store (new or already), 1 some failed,
2 usage or configuration error (store unreachable, bad credentials).
"""

from __future__ import annotations

import argparse
import datetime
import errno
import hashlib
import http.client
import json
import logging
import os
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urljoin

import requests
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_URL = "http://localhost/"
CONNECT_TIMEOUT = 5.0
JPEG_MAGIC = b"\xff\xd8\xff"
RETRY_STATUSES = (502, 503, 504)
BACKOFF_BASE, BACKOFF_MAX = 0.5, 30.0
OUTCOMES = ("uploaded", "already in store", "failed")

log = logging.getLogger("supplier_image_upload")


@dataclass(frozen=True)
class Upload:
    path: Path
    content: bytes

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


class StoreError(Exception):
    """The store said no, or could not be asked; the message says why."""


class Fatal(Exception):
    """Stop the whole run (bad credentials): exit 2."""


# -- pure functions -----------------------------------------------------------


def is_jpeg(head: bytes) -> bool:
    return head.startswith(JPEG_MAGIC)


def journal_state(lines: list[str], store: str) -> dict[str, dict]:
    """The last journal entry per file name for this store."""
    state: dict[str, dict] = {}
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash
        if isinstance(entry, dict) and entry.get("store") == store and "file" in entry:
            state[entry["file"]] = entry
    return state


def plan_action(image: Upload, journal: dict[str, dict], product_images: set[str]) -> str:
    """'skip' (journal says uploaded), 'compare' (store may have the name), 'upload'."""
    entry = journal.get(image.name)
    if entry and entry.get("state") == "uploaded" and entry.get("sha256") == image.sha256:
        return "skip"
    if entry or image.name in product_images:
        return "compare"
    return "upload"


def backoff(attempt: int, retry_after: str | None) -> float:
    """Seconds to wait before attempt+1: exponential, capped, Retry-After honoured."""
    delay = min(BACKOFF_MAX, BACKOFF_BASE * 2**attempt)
    if retry_after:
        try:
            delay = max(delay, min(BACKOFF_MAX, Retry().parse_retry_after(retry_after)))
        except Exception:  # an unparsable header is ignored, as urllib3 does
            log.debug("ignoring Retry-After %r", retry_after)
    return delay


def summary(outcomes: list[str]) -> str:
    count = {kind: outcomes.count(kind) for kind in OUTCOMES}
    return (
        f"uploaded {count['uploaded']}, already in store {count['already in store']},"
        f" failed {count['failed']}"
    )


# -- HTTP ---------------------------------------------------------------------


def endpoint(base: str, path: str) -> str:
    """Join keeping the trailing slash the store's POST endpoints require."""
    return urljoin(base if base.endswith("/") else base + "/", path)


def make_session(token: str, retries: int, jobs: int) -> requests.Session:
    """One pooled session; GETs retried by urllib3, POSTs by Uploader.send()."""
    retry = Retry(
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
    adapter = HTTPAdapter(max_retries=retry, pool_connections=1, pool_maxsize=max(jobs, 1))
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    if token:
        session.headers["Authorization"] = f"Token {token}"
    return session


def connection_problem(error: Exception) -> str:
    """A short cause for a failed connection: 'connection refused', ..."""
    seen: Exception | None = error
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
        nested = seen.args[0] if seen.args and isinstance(seen.args[0], Exception) else None
        seen = seen.__cause__ or seen.__context__ or nested
    return "connection failed"


def never_sent(error: requests.RequestException) -> bool:
    """True when the request certainly did not reach the store."""
    return isinstance(error, requests.ConnectTimeout) or connection_problem(error) in {
        "connection refused",
        "host name not found",
        "network unreachable",
    }


def refuse_credentials(answer: requests.Response) -> None:
    if answer.status_code in (401, 403):
        raise Fatal("the store refused the credentials (CATALOG_TOKEN)")


def rejection(answer: requests.Response) -> str:
    if answer.is_redirect:
        where = answer.headers.get("Location", "?")
        return f"the store answered {answer.status_code} redirect to {where}; check --url"
    try:
        body = answer.json()
        detail = body.get("detail", body) if isinstance(body, dict) else body
    except ValueError:
        detail = ""
    return f"the store answered {answer.status_code}" + (f": {detail}" if detail else "")


class Uploader:
    def __init__(self, url: str, session: requests.Session, timeout: float, retries: int):
        self.url, self.session = url, session
        self.timeout = (CONNECT_TIMEOUT, timeout)
        self.retries = retries

    def product_images(self) -> set[str]:
        """Image names the store's products use; proves the store is reachable."""
        try:
            answer = self.session.get(endpoint(self.url, "fruits/"), timeout=self.timeout)
        except requests.RequestException as error:
            raise StoreError(
                f"cannot reach the store at {self.url}: {connection_problem(error)}"
                " (set --url or CATALOG_URL)"
            ) from None
        refuse_credentials(answer)
        if answer.status_code != 200:
            raise StoreError(f"GET {answer.url} answered {answer.status_code}")
        try:
            return {fruit.get("image_name", "") for fruit in answer.json()}
        except (ValueError, AttributeError, TypeError):
            raise StoreError(
                f"GET {answer.url} did not answer a JSON list; is --url right?"
            ) from None

    def stored(self, name: str) -> bytes | None:
        """The store's copy of media/images/<name>, None when it has none."""
        url = endpoint(self.url, "media/images/" + quote(name))
        try:
            answer = self.session.get(url, timeout=self.timeout)
        except requests.RequestException as error:
            raise StoreError(f"cannot fetch {url}: {connection_problem(error)}") from None
        refuse_credentials(answer)
        if answer.status_code == 404:
            return None
        if answer.status_code != 200:
            raise StoreError(f"GET {url} answered {answer.status_code}")
        return answer.content

    def holds(self, image: Upload) -> bool:
        """True when the store serves this exact image; StoreError on a different one."""
        content = self.stored(image.name)
        if content is None:
            return False
        if content != image.content:
            raise StoreError(
                f"the store already has a different {image.name}; not uploaded"
                " (--force uploads it anyway and the store keeps both under two names)"
            )
        return True

    def send(self, image: Upload) -> None:
        """POST the image; never leaves a second copy behind."""
        why = ""
        for attempt in range(self.retries + 1):
            try:
                answer = self.session.post(
                    endpoint(self.url, "upload/"),
                    files={"file": (image.name, image.content, "image/jpeg")},
                    timeout=self.timeout,
                    allow_redirects=False,
                )
            except requests.RequestException as error:
                if never_sent(error) and attempt < self.retries:
                    time.sleep(backoff(attempt, None))
                    continue
                why, retry_after = connection_problem(error), None
            else:
                refuse_credentials(answer)
                if answer.status_code == 201:
                    return
                if answer.status_code not in RETRY_STATUSES:
                    raise StoreError(rejection(answer))
                why, retry_after = f"HTTP {answer.status_code}", answer.headers.get("Retry-After")
            # The upload may have reached the store: look before sending again.
            if attempt < self.retries:
                time.sleep(backoff(attempt, retry_after))
            if self.holds(image):
                log.info("%s: confirmed in the store after %s", image.name, why)
                return
            log.debug("%s: not in the store after %s; sending again", image.name, why)
        raise StoreError(f"the store did not answer after {self.retries + 1} attempts ({why})")


# -- files --------------------------------------------------------------------


class Journal:
    """Append-only JSON Lines: 'sending' before each upload, 'uploaded' after.

    A line is flushed to disk before the POST, so a run killed mid-upload
    leaves 'sending' behind and the next run checks the store first."""

    def __init__(self, path: Path, store: str):
        self.path, self.store = path, store
        self.lock = threading.Lock()

    def load(self) -> dict[str, dict]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return {}
        return journal_state(lines, self.store)

    def write(self, image: Upload, state: str) -> None:
        entry = {
            "file": image.name,
            "sha256": image.sha256,
            "size": len(image.content),
            "state": state,
            "store": self.store,
            "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        with self.lock, self.path.open("a", encoding="utf-8") as stream:
            stream.write(json.dumps(entry) + "\n")
            stream.flush()
            os.fsync(stream.fileno())


def find_jpegs(folder: Path) -> list[Path]:
    """JPEGs by content; hidden files (changeImage.py's temporaries among them) never."""
    jpegs = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.name[0] != "."):
        with path.open("rb") as stream:
            if is_jpeg(stream.read(len(JPEG_MAGIC))):
                jpegs.append(path)
            else:
                log.debug("skipped %s: not a JPEG", path.name)
    return jpegs


# -- the run ------------------------------------------------------------------


def upload_all(
    uploader: Uploader, journal: Journal, paths: list[Path], args: argparse.Namespace
) -> list[str]:
    product_images = uploader.product_images()
    earlier = journal.load()
    stop = threading.Event()

    def upload_one(path: Path) -> str:
        if stop.is_set():
            return "failed"
        try:
            image = Upload(path, path.read_bytes())
            action = "upload" if args.force else plan_action(image, earlier, product_images)
            if args.check_store and not args.force:
                action = "compare"
            if action == "skip":
                return "already in store"
            if action == "compare" and uploader.holds(image):
                journal.write(image, "uploaded")
                return "already in store"
            journal.write(image, "sending")
            uploader.send(image)
            journal.write(image, "uploaded")
            return "uploaded"
        except (StoreError, OSError) as error:
            log.error("%s: %s", path.name, error)
            return "failed"
        except Fatal:
            stop.set()
            raise

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        return list(pool.map(upload_one, paths))


def env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    data = Path(env("SUPPLIER_DATA", "~/supplier-data")).expanduser()
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="CATALOG_TOKEN, when set, is sent as 'Authorization: Token ...'. "
        "REQUESTS_CA_BUNDLE names a private CA for https:// stores. "
        "SUPPLIER_DATA (default ~/supplier-data) sets the default folders.",
    )
    add = parser.add_argument
    add(
        "--url",
        default=env("CATALOG_URL", DEFAULT_URL),
        help=f"the store's base URL (default {DEFAULT_URL}) [CATALOG_URL]",
    )
    add(
        "--images",
        type=Path,
        default=data / "images",
        help="folder of the JPEGs (default $SUPPLIER_DATA/images)",
    )
    add(
        "--journal",
        type=Path,
        default=env("UPLOAD_JOURNAL", "") or None,
        help="journal of uploads (default uploaded.jsonl beside the images folder,"
        " $SUPPLIER_DATA/uploaded.jsonl) [UPLOAD_JOURNAL]",
    )
    add(
        "--jobs",
        type=int,
        default=env("CATALOG_JOBS", "4"),
        help="requests in parallel (default 4) [CATALOG_JOBS]",
    )
    add(
        "--timeout",
        type=float,
        default=env("CATALOG_TIMEOUT", "30"),
        help="seconds to wait for an answer (default 30) [CATALOG_TIMEOUT]",
    )
    add(
        "--retries",
        type=int,
        default=env("CATALOG_RETRIES", "4"),
        help="retries after a failed request (default 4) [CATALOG_RETRIES]",
    )
    add(
        "--check-store",
        action="store_true",
        help="ask the store about every image first, whatever the journal says"
        " (after the store was restored or fed from elsewhere)",
    )
    add("--dry-run", action="store_true", help="list what would be uploaded; contact no store")
    add("--force", action="store_true", help="upload even images the store already has")
    add("-q", "--quiet", action="store_true", help="only warnings and errors")
    add("-v", "--verbose", action="store_true", help="debug output")
    args = parser.parse_args(argv)
    args.journal = args.journal or args.images.parent / "uploaded.jsonl"
    if not args.images.is_dir():
        parser.error(f"no images folder at {args.images}")
    if args.jobs < 1 or args.retries < 0 or args.timeout <= 0:
        parser.error("--jobs must be at least 1, --retries at least 0, --timeout positive")
    return args


def configure_logging(args: argparse.Namespace) -> None:
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(message)s", stream=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args)
    paths = find_jpegs(args.images)
    if args.dry_run:
        for path in paths:
            print(f"POST {endpoint(args.url, 'upload/')} file={path.name}")
        return EXIT_OK
    session = make_session(env("CATALOG_TOKEN", ""), args.retries, args.jobs)
    uploader = Uploader(args.url, session, args.timeout, args.retries)
    journal = Journal(args.journal, args.url)
    try:
        outcomes = upload_all(uploader, journal, paths, args)
    except (StoreError, Fatal) as error:
        log.error("%s", error)
        return EXIT_USAGE
    log.info("%s", summary(outcomes))
    return EXIT_FAILED if "failed" in outcomes else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
