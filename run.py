#!/usr/bin/env python3
"""Post every product description of a delivery to the store, exactly once.

Each `.txt` in the descriptions folder is a product: line 1 the name, line 2
the weight (`500 lbs`), the rest the description. Each becomes a JSON POST
to <store>/fruits/ with image_name `<stem>.jpeg`. Products the store already
has (same name and image_name) are skipped, so a re-run after a failure
sends only what is missing; a POST whose answer was lost is checked against
the store before it is sent again. A record of the run (JSON, see README) is
written for report_email.py.

Usage:
    ./run.py [--url URL] [--descriptions DIR] [--images DIR] [--record FILE]
             [--jobs N] [--timeout S] [--retries N] [--check] [--dry-run] [--force]

Example:
    $ ./run.py
    INFO imported 10, already in store 0, failed 0
    $ ./run.py --check
    ERROR 003.txt line 2: weight '1.5 lbs' is not a whole number of pounds
    INFO checked 10 descriptions: 1 with problems

Exit status: 0 every product is in the store (new or already), 1 some
failed, 2 usage or configuration error (store unreachable, bad credentials).
"""

from __future__ import annotations

import argparse
import datetime
import errno
import http.client
import json
import logging
import os
import re
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urljoin

import requests
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_URL = "http://localhost/"
CONNECT_TIMEOUT = 5.0
RECORD_VERSION = 1
# The store's own limits (see the Foundation issue); checked before sending.
MAX_LENGTHS = {"name": 100, "description": 5000, "image_name": 100}
WEIGHT = re.compile(r"(\d+)\s*(?:lbs?)?", re.IGNORECASE)
RETRY_STATUSES = (502, 503, 504)
BACKOFF_BASE, BACKOFF_MAX = 0.5, 30.0
OUTCOMES = ("imported", "already in store", "failed")

log = logging.getLogger("run")


@dataclass
class Product:
    file: str
    name: str
    weight: int
    description: str
    image_name: str

    def payload(self) -> dict:
        return {
            "name": self.name,
            "weight": self.weight,
            "description": self.description,
            "image_name": self.image_name,
        }

    def key(self) -> tuple[str, str]:
        return self.name, self.image_name


@dataclass
class Outcome:
    file: str
    name: str
    weight: int | None
    image_name: str
    image_path: str | None
    id: int | None
    outcome: str
    reason: str = ""


class InvalidDescription(Exception):
    """A description file that cannot become a product; the message says why."""


class StoreError(Exception):
    """The store said no, or could not be asked; the message says why."""


class Fatal(Exception):
    """Stop the whole run (bad credentials): exit 2."""


# -- pure functions: descriptions ---------------------------------------------


def decode(raw: bytes) -> tuple[str, bool]:
    """(text, was_utf8): UTF-8 with or without BOM, else cp1252."""
    try:
        return raw.decode("utf-8-sig"), True
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace"), False


def parse_weight(text: str) -> int | None:
    """'500 lbs', '500lbs', '500 LBS', '500' -> 500; anything else None."""
    match = WEIGHT.fullmatch(text.strip())
    return int(match.group(1)) if match else None


def parse_description(filename: str, text: str) -> Product:
    """The product in a description file's text, or InvalidDescription."""
    lines = [line.strip() for line in text.splitlines()]
    numbered = [(number, line) for number, line in enumerate(lines, 1) if line]
    if not numbered:
        raise InvalidDescription(f"{filename}: empty file, expected name, weight, description")
    (_, name), rest = numbered[0], numbered[1:]
    if not rest:
        raise InvalidDescription(f"{filename}: no weight line after the name {name!r}")
    weight_line, weight_text = rest[0]
    weight = parse_weight(weight_text)
    if weight is None:
        raise InvalidDescription(
            f"{filename} line {weight_line}: weight {weight_text!r} is not a whole number"
            " of pounds (expected like '500 lbs')"
        )
    body = lines[weight_line:]
    while body and not body[0]:
        body.pop(0)
    while body and not body[-1]:
        body.pop()
    product = Product(filename, name, weight, "\n".join(body), Path(filename).stem + ".jpeg")
    check_lengths(product)
    return product


def check_lengths(product: Product) -> None:
    for field, limit in MAX_LENGTHS.items():
        if len(getattr(product, field)) > limit:
            raise InvalidDescription(
                f"{product.file}: {field} is {len(getattr(product, field))} characters;"
                f" the store accepts at most {limit}"
            )


def store_errors(body: object) -> str:
    """'weight: A valid integer is required.' from a DRF error body."""
    if isinstance(body, dict):
        parts = []
        for field, messages in body.items():
            text = " ".join(messages) if isinstance(messages, list) else str(messages)
            parts.append(text if field in {"detail", "non_field_errors"} else f"{field}: {text}")
        return "; ".join(parts)
    return str(body)


def backoff(attempt: int, retry_after: str | None) -> float:
    """Seconds to wait before attempt+1: exponential, capped, Retry-After honoured."""
    delay = min(BACKOFF_MAX, BACKOFF_BASE * 2**attempt)
    if retry_after:
        try:
            delay = max(delay, min(BACKOFF_MAX, Retry().parse_retry_after(retry_after)))
        except Exception:  # an unparsable header is ignored, as urllib3 does
            log.debug("ignoring Retry-After %r", retry_after)
    return delay


def summary(outcomes: list[Outcome]) -> str:
    count = {kind: sum(o.outcome == kind for o in outcomes) for kind in OUTCOMES}
    return (
        f"imported {count['imported']}, already in store {count['already in store']},"
        f" failed {count['failed']}"
    )


# -- the store ----------------------------------------------------------------


def endpoint(base: str, path: str) -> str:
    """Join keeping the trailing slash the store's POST endpoints require."""
    return urljoin(base if base.endswith("/") else base + "/", path)


def make_session(token: str, retries: int, jobs: int) -> requests.Session:
    """One pooled session; GETs retried by urllib3, POSTs by Store.create()."""
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


def refuse_credentials(answer: requests.Response) -> None:
    if answer.status_code in (401, 403):
        raise Fatal("the store refused the credentials (CATALOG_TOKEN)")


def never_sent(error: requests.RequestException) -> bool:
    """True when the request certainly did not reach the store."""
    return isinstance(error, requests.ConnectTimeout) or connection_problem(error) in {
        "connection refused",
        "host name not found",
        "network unreachable",
    }


class Store:
    """The store's /fruits/ endpoint, spoken to as a careful client."""

    def __init__(self, url: str, session: requests.Session, timeout: float, retries: int):
        self.url, self.session = url, session
        self.timeout = (CONNECT_TIMEOUT, timeout)
        self.retries = retries

    def fruits(self) -> list[dict]:
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
            fruits = answer.json()
        except ValueError:
            fruits = None
        if not isinstance(fruits, list) or not all(isinstance(f, dict) for f in fruits):
            raise StoreError(f"GET {answer.url} did not answer a JSON list; is --url right?")
        return fruits

    def find(self, product: Product) -> dict | None:
        return next((f for f in self.fruits() if key_of(f) == product.key()), None)

    def created_id(self, answer: requests.Response, product: Product) -> int | None:
        """The id in a 201 answer; looked up when the body does not carry it."""
        try:
            return int(answer.json()["id"])
        except (ValueError, KeyError, TypeError):
            found = self.find(product)
            return found.get("id") if found else None

    def create(self, product: Product) -> int | None:
        """POST the product; its id. Never leaves a duplicate behind."""
        for attempt in range(self.retries + 1):
            try:
                answer = self.session.post(
                    endpoint(self.url, "fruits/"),
                    json=product.payload(),
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
                    return self.created_id(answer, product)
                if answer.status_code not in RETRY_STATUSES:
                    raise StoreError(rejection(answer))
                why, retry_after = f"HTTP {answer.status_code}", answer.headers.get("Retry-After")
            # The POST may have reached the store: look before sending again.
            if attempt < self.retries:
                time.sleep(backoff(attempt, retry_after))
            found = self.find(product)
            if found is not None:
                log.info("%s: confirmed in the store after %s", product.file, why)
                return found["id"]
            log.debug("%s: not in the store after %s; sending again", product.file, why)
        raise StoreError(f"the store did not answer after {self.retries + 1} attempts ({why})")


def rejection(answer: requests.Response) -> str:
    if answer.is_redirect:
        where = answer.headers.get("Location", "?")
        return f"the store answered {answer.status_code} redirect to {where}; check --url"
    try:
        detail = store_errors(answer.json())
    except ValueError:
        detail = ""
    if answer.status_code == 400 and detail:
        return f"the store rejected {detail}"
    return f"the store answered {answer.status_code}" + (f": {detail}" if detail else "")


def key_of(fruit: dict) -> tuple[str, str]:
    return fruit.get("name", ""), fruit.get("image_name", "")


# -- files --------------------------------------------------------------------


def read_descriptions(folder: Path) -> tuple[list[Product], list[Outcome]]:
    """Products from every .txt in the folder, and a failure for each bad one."""
    products, failures = [], []
    for path in sorted(folder.glob("*.txt")):
        try:
            text, utf8 = decode(path.read_bytes())
            if not utf8:
                log.warning("%s: not UTF-8; read as Windows-1252 (cp1252)", path.name)
            products.append(parse_description(path.name, text))
        except (InvalidDescription, OSError) as error:
            message = (
                str(error) if isinstance(error, InvalidDescription) else f"{path.name}: {error}"
            )
            log.error("%s", message)
            failures.append(Outcome(path.name, "", None, "", None, None, "failed", message))
    return products, failures


def image_path(images: Path, product: Product) -> str | None:
    path = images / product.image_name
    return str(path) if path.is_file() else None


def write_json_atomically(path: Path, document: object) -> None:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            json.dump(document, stream, indent=2, ensure_ascii=False)
            stream.write("\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def keep_earlier_imports(outcomes: list[Outcome], earlier: dict) -> None:
    """A product this delivery imported in an earlier run stays 'imported'.

    Re-running after a partial failure finds those products in the store; the
    record (and so the supplier's report) still says this delivery imported
    them, as long as the store's id is the one that run created."""
    if earlier.get("store") is None:
        return
    before = {p.get("file"): p for p in earlier.get("products", []) if isinstance(p, dict)}
    for outcome in outcomes:
        previous = before.get(outcome.file, {})
        if (
            outcome.outcome == "already in store"
            and previous.get("outcome") == "imported"
            and previous.get("id") == outcome.id
        ):
            outcome.outcome = "imported"


def read_record(path: Path, store: str) -> dict:
    """The previous record of this store, or {} (missing, unreadable, other store)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) and document.get("store") == store else {}


def record_document(args: argparse.Namespace, started: str, outcomes: list[Outcome]) -> dict:
    return {
        "version": RECORD_VERSION,
        "store": args.url,
        "descriptions": str(args.descriptions),
        "images": str(args.images),
        "started": started,
        "finished": now(),
        "summary": summary(outcomes),
        "products": [asdict(o) for o in sorted(outcomes, key=lambda o: o.file)],
    }


def now() -> str:
    return datetime.datetime.now(datetime.UTC).astimezone().isoformat(timespec="seconds")


# -- the run ------------------------------------------------------------------


def import_products(
    store: Store, products: list[Product], images: Path, jobs: int, force: bool
) -> list[Outcome]:
    in_store = store.fruits()  # also proves the store is reachable before anything is sent
    existing = {} if force else {key_of(f): f for f in in_store}
    stop = threading.Event()

    def import_one(product: Product) -> Outcome:
        outcome = Outcome(
            product.file,
            product.name,
            product.weight,
            product.image_name,
            image_path(images, product),
            None,
            "failed",
        )
        if stop.is_set():
            outcome.reason = "not sent: the run was stopped"
            return outcome
        if product.key() in existing:
            outcome.id, outcome.outcome = existing[product.key()]["id"], "already in store"
            return outcome
        try:
            outcome.id, outcome.outcome = store.create(product), "imported"
        except StoreError as error:
            outcome.reason = f"{product.file}: {error}"
            log.error("%s", outcome.reason)
        except Fatal:
            stop.set()
            raise
        return outcome

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(import_one, products))


def warn_missing_images(products: list[Product], images: Path) -> None:
    for product in products:
        if image_path(images, product) is None:
            log.warning("%s: image %s is not in %s", product.file, product.image_name, images)


def env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    data = Path(env("SUPPLIER_DATA", "~/supplier-data")).expanduser()
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="CATALOG_TOKEN, when set, is sent as 'Authorization: Token ...'. "
        "REQUESTS_CA_BUNDLE names a private CA for https:// stores. "
        "SUPPLIER_DATA (default ~/supplier-data) sets the default folders and record.",
    )
    add = parser.add_argument
    add(
        "--url",
        default=env("CATALOG_URL", DEFAULT_URL),
        help=f"the store's base URL (default {DEFAULT_URL}) [CATALOG_URL]",
    )
    add(
        "--descriptions",
        type=Path,
        default=data / "descriptions",
        help="folder of .txt descriptions (default $SUPPLIER_DATA/descriptions)",
    )
    add(
        "--images",
        type=Path,
        default=data / "images",
        help="folder of the JPEGs (default $SUPPLIER_DATA/images)",
    )
    add(
        "--record",
        type=Path,
        default=env("IMPORT_RECORD", "") or None,
        help="where to write the run's record (default imported.json beside the"
        " descriptions folder, $SUPPLIER_DATA/imported.json) [IMPORT_RECORD]",
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
    add("--check", action="store_true", help="validate every file; contact no store")
    add("--dry-run", action="store_true", help="print what would be sent; contact no store")
    add("--force", action="store_true", help="post even products the store already has")
    add("-q", "--quiet", action="store_true", help="only warnings and errors")
    add("-v", "--verbose", action="store_true", help="debug output")
    args = parser.parse_args(argv)
    args.record = args.record or args.descriptions.parent / "imported.json"
    if not args.descriptions.is_dir():
        parser.error(f"no descriptions folder at {args.descriptions}")
    if args.jobs < 1 or args.retries < 0 or args.timeout <= 0:
        parser.error("--jobs must be at least 1, --retries at least 0, --timeout positive")
    return args


def configure_logging(args: argparse.Namespace) -> None:
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(message)s", stream=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args)
    started = now()
    products, failures = read_descriptions(args.descriptions)
    warn_missing_images(products, args.images)
    if args.check:
        total = len(products) + len(failures)
        log.info("checked %d descriptions: %d with problems", total, len(failures))
        return EXIT_FAILED if failures else EXIT_OK
    if args.dry_run:
        for product in products:
            print(f"POST {endpoint(args.url, 'fruits/')} {json.dumps(product.payload())}")
        return EXIT_FAILED if failures else EXIT_OK
    session = make_session(env("CATALOG_TOKEN", ""), args.retries, args.jobs)
    store = Store(args.url, session, args.timeout, args.retries)
    try:
        outcomes = import_products(store, products, args.images, args.jobs, args.force)
    except (StoreError, Fatal) as error:
        log.error("%s", error)
        return EXIT_USAGE
    outcomes += failures
    this_run = summary(outcomes)
    if not args.force:
        keep_earlier_imports(outcomes, read_record(args.record, args.url))
    write_json_atomically(args.record, record_document(args, started, outcomes))
    log.info("%s", this_run)
    return EXIT_FAILED if any(o.outcome == "failed" for o in outcomes) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
