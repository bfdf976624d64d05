#!/usr/bin/env python3
"""Stand-in for the fruit store's Django REST service, on loopback.

It reproduces the contract observed on the real service (status codes,
bodies, trailing-slash behaviour, renaming of taken upload names, token
authentication) so the scripts and their tests talk real HTTP to something
that answers like production. Products live in SQLite, images on disk.

Usage:
    python sandbox/store.py --port 0 --data /tmp/store
    python sandbox/store.py --token s3cret --fail-503-every 3 --delay 0.02

Example:
    $ python sandbox/store.py --port 0 --data /tmp/store
    http://127.0.0.1:40117/

Fault injection (flags, or the STORE_* environment variables in --help),
counted over POST requests only:
    --fail-503-every N   answer 503 to every Nth POST before doing anything
    --fail-502-every N   do the work of every Nth POST, then answer 502
    --drop-every N       do the work of every Nth POST, then close the
                         connection without answering
    --slow-every N       do the work of every Nth POST, then answer only
                         after --slow seconds
    --delay S            delay every response (any method) by S seconds
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import secrets
import signal
import sqlite3
import string
import sys
import threading
import time
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

TEXT_FIELDS = {"name": 100, "description": 5000, "image_name": 100}
RANDOM_SUFFIX_CHARS = string.ascii_letters + string.digits
# DRF's IntegerField strips a zero fraction before int(): "500.0" and 500.0 pass.
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
ZERO_FRACTION = re.compile(r"\.0*\s*$")
SCHEMA = """
CREATE TABLE IF NOT EXISTS fruits (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    weight INTEGER NOT NULL,
    description TEXT NOT NULL,
    image_name TEXT NOT NULL
)
"""


@dataclass
class Faults:
    """Which POSTs misbehave, and how. Zero means never."""

    fail_503_every: int = 0
    fail_502_every: int = 0
    drop_every: int = 0
    slow_every: int = 0
    slow: float = 0.0
    delay: float = 0.0


class ValidationError(Exception):
    """A 400 answer: `errors` is the DRF-style body."""

    def __init__(self, errors: dict):
        super().__init__(errors)
        self.errors = errors


def validate_integer(value: object) -> int:
    """Mirror DRF IntegerField.to_internal_value."""
    if isinstance(value, bool):
        raise ValueError
    text = ZERO_FRACTION.sub("", str(value))
    if len(text) > 1000:
        raise ValueError
    return int(text)


def integer_range_errors(field: str, value: int) -> dict:
    """Django's IntegerField range validators, which DRF applies."""
    if value > INT_MAX:
        return {field: [f"Ensure this value is less than or equal to {INT_MAX}."]}
    if value < INT_MIN:
        return {field: [f"Ensure this value is greater than or equal to {INT_MIN}."]}
    return {}


def validate_text(field: str, value: object, max_length: int) -> str:
    """Mirror DRF CharField: strings and numbers, trimmed, length-checked."""
    if isinstance(value, (bool, dict, list)):
        raise ValidationError({field: ["Not a valid string."]})
    text = str(value).strip()
    if len(text) > max_length:
        message = f"Ensure this field has no more than {max_length} characters."
        raise ValidationError({field: [message]})
    return text


def validate_fruit(data: object) -> dict:
    """Return the clean product for a POST body, or raise ValidationError."""
    if not isinstance(data, dict):
        kind = {str: "str", int: "int", float: "float", list: "list", bool: "bool"}
        name = "NoneType" if data is None else kind.get(type(data), type(data).__name__)
        message = f"Invalid data. Expected a dictionary, but got {name}."
        raise ValidationError({"non_field_errors": [message]})
    errors: dict[str, list[str]] = {}
    clean: dict[str, object] = {}
    for field, max_length in TEXT_FIELDS.items():
        value = data.get(field, "")
        if value is None:
            errors[field] = ["This field may not be null."]
            continue
        try:
            clean[field] = validate_text(field, value, max_length)
        except ValidationError as error:
            errors.update(error.errors)
    if "weight" not in data:
        errors["weight"] = ["This field is required."]
    elif data["weight"] is None:
        errors["weight"] = ["This field may not be null."]
    else:
        try:
            clean["weight"] = validate_integer(data["weight"])
        except ValueError:
            errors["weight"] = ["A valid integer is required."]
        else:
            errors.update(integer_range_errors("weight", clean["weight"]))
    if errors:
        raise ValidationError(errors)
    return clean


def available_name(directory: Path, filename: str) -> str:
    """Django's FileSystemStorage.get_available_name: keep or add _<7 chars>."""
    stem, dot, ext = filename.rpartition(".")
    if not dot:
        stem, ext = filename, ""
    else:
        ext = "." + ext
    name = filename
    while (directory / name).exists():
        suffix = "".join(secrets.choice(RANDOM_SUFFIX_CHARS) for _ in range(7))
        name = f"{stem}_{suffix}{ext}"
    return name


def safe_basename(filename: str) -> str:
    """The last path component, as Django keeps it; '' when nothing usable."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return "" if name in {"", ".", ".."} else name


class Catalog:
    """Products in SQLite and images on disk, safe to use from many threads."""

    def __init__(self, data_dir: Path):
        self.images = data_dir / "media" / "images"
        self.images.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(data_dir / "store.sqlite3", check_same_thread=False)
        self.db.execute(SCHEMA)
        self.lock = threading.Lock()

    def add_fruit(self, fruit: dict) -> dict:
        with self.lock, self.db:
            cursor = self.db.execute(
                "INSERT INTO fruits (name, weight, description, image_name)"
                " VALUES (:name, :weight, :description, :image_name)",
                fruit,
            )
        return {"id": cursor.lastrowid, **fruit}

    def fruits(self) -> list[dict]:
        with self.lock:
            rows = self.db.execute(
                "SELECT id, name, weight, description, image_name FROM fruits ORDER BY id"
            ).fetchall()
        keys = ("id", "name", "weight", "description", "image_name")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def save_image(self, filename: str, content: bytes) -> str:
        with self.lock:
            name = available_name(self.images, filename)
            (self.images / name).write_bytes(content)
        return name

    def image_path(self, name: str) -> Path | None:
        path = self.images / safe_basename(name)
        return path if safe_basename(name) and path.is_file() else None

    def close(self) -> None:
        self.db.close()


def catalog_page(fruits: list[dict]) -> str:
    """The store's HTML catalog: every product with name, weight, text, image."""
    items = "\n".join(
        "<div class='fruit'>"
        f"<img src='/media/images/{html.escape(f['image_name'])}' alt='' width='300'>"
        f"<h2>{html.escape(f['name'])}</h2>"
        f"<p>Weight: {f['weight']} lbs</p>"
        f"<p>{html.escape(f['description'])}</p></div>"
        for f in fruits
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        "<title>Online Fruit Store</title></head><body>"
        f"<h1>Online Fruit Store</h1>\n{items}\n</body></html>"
    )


class StoreHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without TCP_NODELAY the body waits
    # for the client's delayed ACK (40 ms) on every kept-alive connection.
    disable_nagle_algorithm = True
    server: StoreServer

    def log_message(self, format: str, *args: object) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    # -- answering -------------------------------------------------------

    def answer(self, status: int, body: bytes = b"", content_type: str = "") -> None:
        if self.server.faults.delay:
            time.sleep(self.server.faults.delay)
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        if status == HTTPStatus.UNAUTHORIZED:
            self.send_header("WWW-Authenticate", "Token")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def answer_json(self, status: int, payload: object) -> None:
        self.answer(status, json.dumps(payload).encode(), "application/json")

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def authorized(self) -> bool:
        token = self.server.token
        if not token:
            return True
        header = self.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "token" or not given.strip():
            detail = "Authentication credentials were not provided."
        elif not secrets.compare_digest(given.strip(), token):
            detail = "Invalid token."
        else:
            return True
        self.answer_json(401, {"detail": detail})
        return False

    # -- GET / HEAD ------------------------------------------------------

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = unquote(urlsplit(self.path).path)
        if not self.authorized():
            return
        if path == "/":
            page = catalog_page(self.server.catalog.fruits())
            self.answer(200, page.encode(), "text/html; charset=utf-8")
        elif path == "/fruits/":
            self.answer_json(200, self.server.catalog.fruits())
        elif path.startswith("/media/images/"):
            self.serve_image(path.removeprefix("/media/images/"))
        elif path in {"/fruits", "/upload"}:
            self.send_redirect(path + "/")
        elif path == "/upload/":
            self.answer_json(405, {"detail": f'Method "{self.command}" not allowed.'})
        else:
            self.answer(404, b"<h1>Not Found</h1>", "text/html")

    def send_redirect(self, location: str) -> None:
        self.send_response(301)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def serve_image(self, name: str) -> None:
        path = self.server.catalog.image_path(name)
        if path is None:
            self.answer(404, b"<h1>Not Found</h1>", "text/html")
        else:
            self.answer(200, path.read_bytes(), "image/jpeg")

    # -- POST ------------------------------------------------------------

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        body = self.read_body()
        if not self.authorized():
            return
        if path in {"/fruits", "/upload"}:
            # Django's APPEND_SLASH cannot redirect a POST and raises instead.
            self.answer(500, b"<h1>Server Error (500)</h1>", "text/html")
            return
        if path not in {"/fruits/", "/upload/"}:
            self.answer(404, b"<h1>Not Found</h1>", "text/html")
            return
        number = self.server.count_post()
        faults = self.server.faults
        if every(faults.fail_503_every, number):
            self.answer(503, b"<h1>503 Service Unavailable</h1>", "text/html")
            return
        status, payload = (
            self.handle_fruit(body) if path == "/fruits/" else self.handle_upload(body)
        )
        if every(faults.fail_502_every, number):
            self.answer(502, b"<h1>502 Bad Gateway</h1>", "text/html")
        elif every(faults.drop_every, number):
            self.close_connection = True
        else:
            if every(faults.slow_every, number):
                time.sleep(faults.slow)
            self.answer_payload(status, payload)

    def answer_payload(self, status: int, payload: object) -> None:
        if payload is None:
            self.answer(status)
        else:
            self.answer_json(status, payload)

    def handle_fruit(self, body: bytes) -> tuple[int, object]:
        content_type = self.headers.get_content_type()
        if content_type != "application/json":
            return 415, {"detail": f'Unsupported media type "{content_type}" in request.'}
        try:
            data = json.loads(body)
        except ValueError as error:
            return 400, {"detail": f"JSON parse error - {error}"}
        try:
            return 201, self.server.catalog.add_fruit(validate_fruit(data))
        except ValidationError as error:
            return 400, error.errors

    def handle_upload(self, body: bytes) -> tuple[int, object]:
        content_type = self.headers.get("Content-Type", "")
        if not content_type.startswith("multipart/form-data"):
            kind = content_type.split(";")[0] or "text/plain"
            return 415, {"detail": f'Unsupported media type "{kind}" in request.'}
        upload = find_file_part(content_type, body)
        if upload is None:
            return 400, {"detail": "Empty content"}
        filename, content = upload
        self.server.catalog.save_image(filename, content)
        return 201, None


def find_file_part(content_type: str, body: bytes) -> tuple[str, bytes] | None:
    """The (filename, bytes) of the multipart field `file`, if any."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not message.is_multipart():
        return None
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") != "file":
            continue
        filename = safe_basename(part.get_filename() or "")
        if filename:
            return filename, part.get_payload(decode=True) or b""
    return None


def every(n: int, number: int) -> bool:
    return n > 0 and number % n == 0


class StoreServer(ThreadingHTTPServer):
    """The stand-in store; `start()` serves from a background thread."""

    daemon_threads = True

    def __init__(
        self,
        data_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str = "",
        faults: Faults | None = None,
        verbose: bool = False,
    ):
        self.catalog = Catalog(Path(data_dir))
        self.token = token
        self.faults = faults or Faults()
        self.verbose = verbose
        self.post_count = 0
        self.count_lock = threading.Lock()
        super().__init__((host, port), StoreHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def count_post(self) -> int:
        with self.count_lock:
            self.post_count += 1
            return self.post_count

    def start(self) -> StoreServer:
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.catalog.close()


def env_default(name: str, default: str) -> str:
    return os.environ.get(name, default)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--host", default=env_default("STORE_HOST", "127.0.0.1"), help="[STORE_HOST]")
    add(
        "--port",
        type=int,
        default=int(env_default("STORE_PORT", "0")),
        help="0 picks a free port [STORE_PORT]",
    )
    add(
        "--data",
        type=Path,
        default=Path(env_default("STORE_DATA", "store-data")),
        help="[STORE_DATA]",
    )
    add(
        "--token",
        default=env_default("STORE_TOKEN", ""),
        help="require 'Authorization: Token T' [STORE_TOKEN]",
    )
    for flag, kind, default in [
        ("fail-503-every", int, "0"),
        ("fail-502-every", int, "0"),
        ("drop-every", int, "0"),
        ("slow-every", int, "0"),
        ("slow", float, "0"),
        ("delay", float, "0"),
    ]:
        env = "STORE_" + flag.upper().replace("-", "_")
        add(f"--{flag}", type=kind, default=kind(env_default(env, default)), help=f"[{env}]")
    add("--verbose", action="store_true", help="log every request to stderr")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    faults = Faults(
        args.fail_503_every,
        args.fail_502_every,
        args.drop_every,
        args.slow_every,
        args.slow,
        args.delay,
    )
    server = StoreServer(args.data, args.host, args.port, args.token, faults, args.verbose)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(server.url, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        server.catalog.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
