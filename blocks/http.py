"""Shared block `http`: the store's client: URLs, options, deadlines, one retry
policy, and the Store that asks it carefully.

Every script that needs it carries a copy of the part below the marker, between
its fences. Edit it here, then run `make blocks` (python tools/sync_blocks.py);
tests/test_scripts.py fails while a copy differs. Above the marker: what the
copies find in their script.
"""

from __future__ import annotations

import argparse
import errno
import functools
import http.client
import logging
import os
import re
import socket
import threading
import time
from urllib.parse import quote, unquote, urlsplit

import requests
import urllib3
from cli import SIGNAL_CHECK, STOPPING, Option, configure_logging, number
from deadline import Deadline, watch_socket
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

log = logging.getLogger("store")

# --- block ---
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
    """No answer came; maybe_sent when the request may have reached the store."""

    def __init__(self, message: str, maybe_sent: bool) -> None:
        super().__init__(message)
        self.maybe_sent = maybe_sent


class StoreDown(Unanswered):
    """Stop the run: the store stopped answering, or refused the credentials."""


def redact(text: str) -> str:
    """text with the user:password@ of every URL in it removed."""
    return URL_CREDENTIALS.sub(r"\1", text)


class RedactingFilter(logging.Filter):
    """Keeps credentials in URLs out of every log line, whoever wrote it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        return True


def redact_logs() -> None:
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())


def hidden(url: str) -> str:
    """url as an error shows it: nothing before its last @ (a password may hold
    / ? or #), no query or fragment (a token may be there)."""
    text = re.sub(r"(?i)^([a-z][a-z0-9+.-]*://)[^@]*@", r"\1", redact(url).strip())
    return re.sub(r"[?#].*", "?...", text)


def canonical_url(url: str) -> str:
    """The store's identity: scheme://host[:port]/path/, lower-case host, no default
    port, trailing slash, never credentials. http://Host, http://host/ and
    http://HOST:80/ are the same store, and so are its endpoints' URLs given
    for it (http://host/fruits/, http://host/upload/). ValueError when it is
    not a store URL."""
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
    """The path as requests sends it: /a/./b/../ is /a/, %66ruits is fruits."""
    try:
        sent = urlsplit(requests.Request("GET", "http://host" + (path or "/")).prepare().url)
    except requests.RequestException:
        raise ValueError(f"{redact(path)!r} is not a URL path") from None
    return sent.path


def store_url(text: str) -> str:
    """An argparse type: a store URL (--url or CATALOG_URL), as given."""
    try:
        canonical_url(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text.strip()


def store_options(sending: str) -> list[Option]:
    """The store's options, the same in both scripts that talk to it; `sending`
    names what a lost answer belonged to ("a POST", "an upload")."""
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
    """A yes/no environment variable: 1, yes, true or on; 0, no, false, off or
    unset; anything else is a ValueError naming what it takes."""
    text = os.environ.get(name, "").strip().lower()
    if text in ("", "0", "no", "false", "off"):
        return False
    if text in ("1", "yes", "true", "on"):
        return True
    raise ValueError(f"{text[:20]!r} is not 1 or 0 (yes or no)")


def content_names_option() -> Option:
    """The one row of --content-names, the same in both scripts (CONTRACT.md 3)."""
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
    """CATALOG_TOKEN, stripped; one that cannot go in an HTTP header (a line break,
    a character outside ASCII) is a usage error that shows nothing of it."""
    token = os.environ.get("CATALOG_TOKEN", "").strip()
    if not all("!" <= char <= "~" for char in token):
        parser.error(
            "environment variable CATALOG_TOKEN: has spaces, line breaks or characters"
            " outside ASCII, which an HTTP header cannot carry (not shown)"
        )
    return token


def url_credentials(url: str) -> tuple[bytes, bytes] | None:
    """user and password given in the URL, sent as HTTP basic authentication in
    UTF-8 (requests would encode them as Latin-1, failing on other characters)."""
    parts = urlsplit(url.strip())
    if not parts.username:
        return None
    return unquote(parts.username).encode(), unquote(parts.password or "").encode()


class WatchedConnection:
    """Mixed into urllib3's connections: each socket in use is known to the
    running request's Deadline."""

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
    """StoreRetry stopped retrying rather than wait past the request's deadline, or
    because the run is stopping. A retried request was never taken by the store
    (a refused connection, or 503), so it was not sent; .response is the last
    answer, if one came (its __context__ the last error, else)."""

    def __init__(self, why: str, response: urllib3.BaseHTTPResponse | None) -> None:
        super().__init__(why)
        self.response = response


SAID_WAITING = threading.Event()
STORE_DOWN = threading.Event()  # this run's Store stopped answering: no retry waits on


class StoreRetry(Retry):
    """The one retry policy of every request: urllib3 retries GET and HEAD after
    a refused connection, a lost answer or 502/503/504, and a POST only when the
    store surely did not take it (a connection never opened, or 503), with
    backoff and Retry-After (an unreadable one is ignored); it gives up rather
    than sleep past the deadline or on after a stop signal."""

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
    """Reads answer's body up to limit bytes into answer.content; answer.cut is
    True when there was more (that connection is then closed, not reused)."""
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
    """One pooled session, every request retried by StoreRetry."""
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
    """A short cause for a failed connection: 'connection refused', ..."""
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
    """True when the request certainly did not reach the store."""
    return isinstance(error, requests.ConnectTimeout) or connection_problem(error) in {
        "connection refused",
        "host name not found",
        "network unreachable",
    }


def store_errors(body: object) -> str:
    """'weight: A valid integer is required.' from a DRF error body."""
    if isinstance(body, dict):
        parts = []
        for field, messages in body.items():
            text = " ".join(map(str, messages)) if isinstance(messages, list) else str(messages)
            parts.append(text if field in {"detail", "non_field_errors"} else f"{field}: {text}")
        return "; ".join(parts)
    return str(body)


def rejection(answer: requests.Response) -> str:
    """Why the store said no, in its own words."""
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
    """The store's REST service, asked carefully: every request bounded by a
    deadline, DEAD_AFTER connection-level failures in a row (across threads)
    stop every further request, and POSTs are never repeated blindly."""

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
        """The answer, its body read within the deadline and cut after limit bytes
        (answer.cut tells): a store serving an endless body is not read into memory."""
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
        """What a request that StoreRetry stopped retrying was: never sent."""
        if STOPPING.is_set():
            raise StoreDown("the run was interrupted", maybe_sent=False)
        if stop.response is not None:
            raise StoreError(f"{request}: the store answered {stop.response.status}, {stop}")
        self.failed(f"{request}: {connection_problem(stop.__context__ or stop)}", False)

    def failed(self, message: str, maybe_sent: bool) -> None:
        """One more failure in a row: Unanswered, or StoreDown at the DEAD_AFTERth."""
        with self.lock:
            self.failures += 1
            if self.failures >= DEAD_AFTER and not self.stopped:
                self.stopped = f"the store stopped answering ({DEAD_AFTER} in a row; {message})"
                STORE_DOWN.set()
            kind = StoreDown if self.stopped else Unanswered
        raise kind(self.stopped or message, maybe_sent=maybe_sent)

    def post(self, path: str, **options: object) -> requests.Response:
        """POST, repeated by StoreRetry only when the store surely did not take it.
        A lost answer (or 502/504) raises Unanswered(maybe_sent=True): the caller
        re-reads the store after a grace period instead of sending it again."""
        answer = self.request("POST", path, **options)
        if answer.status_code in (502, 504):
            message = f"POST {self.url}{path}: the store answered {answer.status_code}"
            raise Unanswered(message, maybe_sent=True)
        return answer

    def fruits(self) -> list[dict]:
        """Every product the store has; also proves it answers."""
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
        """Whether the store serves exactly content as images/<name> (None: no such
        image). Served a beginning of content, another importer's upload of the same
        picture is still being written there: asked again for a few seconds."""
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
    """Why the store cannot be used, and where to look: most often it is not started."""
    return (
        f"cannot use the store at {store.url}: {error} (is the store running there?"
        " Else set --url or CATALOG_URL)"
    )


def store_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The arguments, with CATALOG_TOKEN checked (it has no flag: never on a command line)."""
    args = parser.parse_args(argv)
    args.token = store_token(parser)
    return args


def configure_store_logging(quiet: bool, verbose: bool) -> None:
    """configure_logging(), with no credentials in any line and no urllib3 retry
    warnings (ours say more)."""
    configure_logging(quiet, verbose)
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    redact_logs()
