"""Fixtures that start the stand-ins (store, mail catcher) on free loopback
ports for one test and stop them afterwards, plus small sample deliveries."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple

import prestart
import pytest
from PIL import Image

from mailcatcher import MailCatcher
from make_delivery import make_delivery
from store import Faults, StoreProcess

# Each test worker imports every test module through pytest's assertion rewriting; with
# PYTHONDONTWRITEBYTECODE set (as on the project's machine) none of it is cached and every
# worker of every run rewrites them all again (about 2.5 s of CPU each). The test processes
# keep their bytecode (in the gitignored __pycache__); the scripts they start are unaffected.
sys.dont_write_bytecode = False


def pytest_configure(config: pytest.Config) -> None:
    """The stop signals as a terminal gives them, in this process and so in every script
    it starts: a suite started in a script's background or under nohup inherits SIGINT,
    SIGQUIT and SIGHUP ignored, and the scripts rightly keep an ignored signal ignored (a
    test that wants one ignored says so; prestart gives such a run a real start)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    # The scripts start from a pre-warmed interpreter where a real start would show no
    # difference (tests/prestart.py); FRUIT_TESTS_REAL_START=1 starts each for real.
    prestart.install(dict(os.environ))


def pytest_unconfigure(config: pytest.Config) -> None:
    prestart.uninstall()


@pytest.fixture(autouse=True)
def venv_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scripts run as users run them (`./run.py`, through `#!/usr/bin/env
    python3`), with the virtualenv that runs the tests activated."""
    bin_dir = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", bin_dir + os.pathsep + os.environ.get("PATH", ""))


class StorePool:
    """Stores without faults, kept running across one worker's tests and emptied
    before each (a start costs about 0.4 s of CPU; hundreds of tests use one)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.stores, self.started = folder, {}, itertools.count()

    def get(self, token: str) -> StoreProcess:
        store = self.stores.get(token)
        if store is not None and store.running:
            return store.reset()
        store = StoreProcess(self.folder / f"store{next(self.started)}", token=token)
        self.stores[token] = store.start()
        return store

    def stop(self) -> None:
        for store in self.stores.values():
            store.stop()


@pytest.fixture(scope="session")
def store_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorePool]:
    pool = StorePool(tmp_path_factory.mktemp("stores"))
    yield pool
    pool.stop()


@pytest.fixture
def store_factory(tmp_path: Path, store_pool: StorePool) -> Iterator[Callable[..., StoreProcess]]:
    """Start a stand-in store: store_factory(token="t", drop_every=2, ...).

    A store with faults is its own `sandbox/store.py` process (Django settings
    are per process), stopped after the test; one without faults comes emptied
    from the pool (a test's first such store; a second one is started fresh).
    The handle has .url, .catalog, .post_count and .stop()."""
    started: list[StoreProcess] = []
    pooled: set[str] = set()

    def start(token: str = "", **faults: float) -> StoreProcess:
        if not any(faults.values()) and token not in pooled:
            pooled.add(token)
            return store_pool.get(token)
        data = tmp_path / f"store{len(started)}"
        server = StoreProcess(data, token=token, faults=Faults(**faults)).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def store(store_factory) -> StoreProcess:
    return store_factory()


@pytest.fixture
def catcher_factory(tmp_path: Path) -> Iterator[Callable[..., MailCatcher]]:
    """Start a mail catcher: catcher_factory(tls="starttls", user="u", password="p")."""
    started: list[MailCatcher] = []

    def start(**options: str) -> MailCatcher:
        folder = tmp_path / f"catcher{len(started)}"
        catcher = MailCatcher(folder / "mail", **options).start()
        started.append(catcher)
        return catcher

    yield start
    for catcher in started:
        catcher.stop()


@pytest.fixture
def mail_catcher(catcher_factory) -> MailCatcher:
    return catcher_factory()


@pytest.fixture
def smtp_env(mail_catcher: MailCatcher, monkeypatch: pytest.MonkeyPatch) -> MailCatcher:
    """Point emails.py at a plain mail catcher through the environment."""
    for name in list(os.environ):
        if name.startswith("SMTP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SMTP_HOST", mail_catcher.host)
    monkeypatch.setenv("SMTP_PORT", str(mail_catcher.port))
    return mail_catcher


@pytest.fixture
def delivery(tmp_path: Path) -> Path:
    """A small sample delivery: tmp_path/supplier-data with 3 products."""
    return make_delivery(tmp_path, count=3, size=(300, 200))


class Stranger(NamedTuple):
    """A uid with no passwd entry, and a Python it may run."""

    uid: int
    python: str


@pytest.fixture
def stranger() -> Callable[..., Stranger]:
    """stranger(*paths): uid 54321 (no passwd entry) and a system Python of this
    version it may run (the virtualenv's points into /root). Skips the test when
    not root, without one, or when that uid cannot read one of the paths: a
    clone inside a private folder, as `mktemp -d` makes."""
    uid = 54321

    def python_for(*paths: Path) -> Stranger:
        if os.geteuid() != 0:
            pytest.skip("needs root to run as a uid without a passwd entry")
        python = shutil.which("python3", path="/usr/bin:/bin:/usr/local/bin")
        version = f"import sys; sys.exit(sys.version_info[:2] != {sys.version_info[:2]})"
        if not python or subprocess.run([python, "-c", version]).returncode:
            pytest.skip("no system python3 of this version for another uid")
        for path in paths:
            readable = ["test", "-r", str(path)]
            if subprocess.run(readable, user=uid, cwd="/").returncode:
                pytest.skip(f"uid {uid} cannot read {path} (a private folder)")
        return Stranger(uid, python)

    return python_for


@pytest.fixture
def dead_port() -> int:
    """A loopback port with nothing listening: connections are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def logged_errors(caplog) -> Callable[[], list[str]]:
    """logged_errors(): the messages logged at ERROR or above so far."""
    return lambda: [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


class RedirectingHandler(BaseHTTPRequestHandler):
    """A misconfigured front: lists nothing, holds no image, answers every POST with a
    redirect."""

    def do_GET(self) -> None:
        found = not self.path.startswith("/media/")
        self.send_response(200 if found else 404)
        self.send_header("Content-Length", "2" if found else "0")
        self.end_headers()
        if found:
            self.wfile.write(b"[]")

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(301)
        self.send_header("Location", "https://elsewhere.example/fruits/")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def redirecting_store() -> Iterator[str]:
    """The URL of a server that answers every POST with 301."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), RedirectingHandler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


# -- report, mail: fixtures of report_email.py, emails.py and reports.py --------------


@pytest.fixture
def bomb_jpeg() -> bytes:
    """A small JPEG whose header claims 30000x30000 pixels (a decompression bomb)."""
    out = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(out, "JPEG")
    data = bytearray(out.getvalue())
    sof = data.index(b"\xff\xc0")  # SOF0: length(2) precision(1) height(2) width(2)
    data[sof + 5 : sof + 9] = (30000).to_bytes(2, "big") * 2
    return bytes(data)


def record_product(
    file: str,
    name: str,
    weight: int | None,
    outcome: str = "imported",
    reason: str = "",
    image: str | None = None,
    **fields: object,
) -> dict:
    """One product entry of an import record (RECORD.md), as run.py writes it."""
    return {
        "file": file,
        "name": name,
        "weight": weight,
        "image_name": Path(file).stem + ".jpeg",
        "image_path": image,
        "id": 1,
        "outcome": outcome,
        "reason": reason,
        **fields,
    }


@pytest.fixture
def product() -> Callable[..., dict]:
    """product("001.txt", "Apple", 500, outcome="imported", image=None, **fields)."""
    return record_product


@pytest.fixture
def write_record() -> Callable[..., Path]:
    """write_record(path, products, version=1, **top_level): a record file as run.py
    writes it (version 2 adds delivery, complete and the v2 product fields)."""

    def write(path: Path, products: list, version: int = 1, **top: object) -> Path:
        folder = path.parent / "supplier-data"
        document = {
            "version": version,
            "store": "http://localhost/",
            "descriptions": str(folder / "descriptions"),
            "images": str(folder / "images"),
            "started": "2026-11-25T21:04:20+00:00",
            "finished": "2026-11-25T21:04:21+00:00",
            "summary": "",
            "products": products,
        }
        if version == 2:
            document |= {"delivery": "supplier-data", "complete": True}
            for entry in products:
                if isinstance(entry, dict):
                    entry.setdefault("description", "")
                    entry.setdefault("store_values", {})
        path.write_text(json.dumps({**document, **top}), encoding="utf-8")
        return path

    return write


# -- health_check.py: a page that fails on demand, servers that trickle -----------------------


class FlakyPageHandler(BaseHTTPRequestHandler):
    """Answers GET with the server's current `status` (200 until a test changes it)."""

    def do_GET(self) -> None:
        self.server.requests += 1
        self.server.authorization = self.headers.get("Authorization")
        body = b"<html>fruit</html>"
        self.send_response(self.server.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def flaky_page() -> Iterator[ThreadingHTTPServer]:
    """A page on loopback: set `.status = 500` to make it fail; `.url` is its address,
    `.requests` counts the GETs, `.authorization` is the last Authorization header."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyPageHandler)
    server.status = 200
    server.requests = 0
    server.url = f"http://127.0.0.1:{server.server_address[1]}/"
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def trickling_server() -> Iterator[Callable[..., int]]:
    """trickling_server(greeting, interval=2.0): a loopback port whose server sends
    `greeting` one byte every `interval` seconds to each connection, endlessly: every
    per-read timeout longer than the interval passes, the whole answer never comes."""
    stop = threading.Event()
    listeners: list[socket.socket] = []

    def trickle(connection: socket.socket, greeting: bytes, interval: float) -> None:
        with connection:
            for index in range(10**6):
                if stop.wait(0 if index == 0 else interval):
                    return
                try:
                    connection.sendall(greeting[index % len(greeting) : index % len(greeting) + 1])
                except OSError:
                    return

    def serve(listener: socket.socket, greeting: bytes, interval: float) -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            talk = threading.Thread(target=trickle, args=(connection, greeting, interval))
            talk.daemon = True
            talk.start()

    def start(greeting: bytes, interval: float = 2.0) -> int:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)
        threading.Thread(target=serve, args=(listener, greeting, interval), daemon=True).start()
        return listener.getsockname()[1]

    yield start
    stop.set()
    for listener in listeners:
        listener.close()


# -- supplier_image_upload.py and run.py: deliveries, runs and what the store holds --

PIPELINE_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def catalog() -> Callable[..., Path]:
    """catalog(root, ["001", "002"], shade=1): a converted delivery (see catalog_delivery)."""
    return catalog_delivery


@pytest.fixture
def catalog_check() -> Callable[..., None]:
    """catalog_check(store, delivery, ...): see assert_catalog."""
    return assert_catalog


def catalog_delivery(root: Path, stems: list[str], shade: int = 0) -> Path:
    """root/images/<stem>.jpeg (600x400, content unique per stem and shade) and
    root/descriptions/<stem>.txt, as changeImage.py leaves a delivery."""
    from PIL import Image  # only these fixtures need Pillow

    images, descriptions = root / "images", root / "descriptions"
    images.mkdir(parents=True, exist_ok=True)
    descriptions.mkdir(parents=True, exist_ok=True)
    for number, stem in enumerate(stems, 1):
        colour = (number * 37 % 256, shade * 53 % 256, len(stem) * 11 % 256)
        picture = Image.new("RGB", (600, 400), colour)
        picture.save(images / f"{stem}.jpeg", quality=60, comment=f"{stem} of {shade}")
        text = f"Fruit {number} of delivery {shade}\n{100 + number} lbs\nFrom {stem}.\n"
        (descriptions / f"{stem}.txt").write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def run_script(monkeypatch: pytest.MonkeyPatch) -> Callable[..., object]:
    """run_script("run.py", "--url", url, env={...}, timeout=60): the script as
    users run it, under a hang guard; CATALOG_* and SUPPLIER_DATA unset first."""
    import subprocess

    for name in list(os.environ):
        if name.startswith(("CATALOG_", "UPLOAD_", "IMPORT_")) or name == "SUPPLIER_DATA":
            monkeypatch.delenv(name)

    def run(script: str, *args: str, env: dict | None = None, timeout: float = 90):
        return subprocess.run(
            [str(PIPELINE_ROOT / script), *args],
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run


def store_images(store) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(store.catalog.images.iterdir())}


def assert_catalog(store, *deliveries: Path) -> None:
    """The store holds each delivery's products once, each showing its own JPEG
    (bytes compared over HTTP), no image stored twice, and each delivery's
    record saying imported with the store's id."""
    import json

    import requests

    fruits = store.catalog.fruits()
    names = [f["name"] for f in fruits]
    assert len(names) == len(set(names)), f"a product stored twice: {sorted(names)}"
    by_name = {f["name"]: f for f in fruits}
    for delivery in deliveries:
        record = json.loads((delivery / "imported.json").read_text(encoding="utf-8"))
        outcomes = {p["file"]: p for p in record["products"]}
        for text in sorted((delivery / "descriptions").glob("*.txt")):
            name = text.read_text(encoding="utf-8").splitlines()[0]
            fruit = by_name[name]
            served = requests.get(store.url + "media/images/" + fruit["image_name"], timeout=30)
            jpeg = (delivery / "images" / f"{text.stem}.jpeg").read_bytes()
            assert served.content == jpeg, f"{name} shows another picture"
            assert outcomes[text.name]["outcome"] == "imported", outcomes[text.name]
            assert outcomes[text.name]["id"] == fruit["id"]
            assert outcomes[text.name]["image_name"] == fruit["image_name"]
    contents = list(store_images(store).values())
    assert len(contents) == len(set(contents)), "an image stored twice"
    assert len(fruits) == sum(len(list((d / "descriptions").glob("*.txt"))) for d in deliveries)


# -- hostile pass: a page that redirects -----------------------------------------------------


class RedirectHandler(BaseHTTPRequestHandler):
    """Answers every GET with 302 to the server's `location`."""

    def do_GET(self) -> None:
        self.send_response(302)
        self.send_header("Location", self.server.location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


# -- hostile stores (tests/test_bad_input_pipeline.py) ------------------------------


# Modes whose every POST is answered 503, with this Retry-After.
HOSTILE_BUSY = {
    "busy-for-a-day": "100000",
    "busy-garbage": "soon",
    "busy-negative": "-5",
    "busy-briefly": "3",
}
HOSTILE_LISTS = {
    "html": (b"<html><body>Welcome</body></html>", "text/html"),
    "empty-200": (b"", "application/json"),
    "not-a-list": (b'{"results": []}', "application/json"),
    "items-not-objects": (b'[1, "two", null]', "application/json"),
    "items-wrong-types": (
        b'[{"id": "1", "name": 5}, {"id": 2, "name": null, "weight": "x", "image_name": 7},'
        b' {"id": 3, "name": "Fruit 1 of delivery 0", "weight": [], "image_name": {}}]',
        "application/json",
    ),
}


class HostileHandler(BaseHTTPRequestHandler):
    """A store that misbehaves in one way, named by the server's `mode`: its
    product list is garbage, or it serves other or endless bytes as images."""

    protocol_version = "HTTP/1.1"

    def answer(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def endless(self, start: bytes, repeat: bytes) -> None:
        self.send_response(200)
        self.send_header("Connection", "close")
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(start)
            while True:
                self.wfile.write(repeat * 1024)

    def do_GET(self) -> None:
        mode = self.server.mode  # type: ignore[attr-defined]
        if self.path.endswith("/fruits/"):
            if mode == "redirect-away":
                self.send_response(302)
                self.send_header("Location", "http://elsewhere.example/fruits/")
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif mode == "endless-list":
                self.endless(b"[", b'{"id": 1, "name": "x"},' * 64)
            else:
                self.answer(200, *HOSTILE_LISTS.get(mode, (b"[]", "application/json")))
        elif mode == "endless-image":
            self.endless(b"\xff\xd8\xff", b"\0" * 1024)
        elif mode == "other-image":
            self.answer(200, b"\xff\xd8\xff another picture", "image/jpeg")
        else:
            self.answer(404, b'{"detail": "Not found."}')

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.posts += 1  # type: ignore[attr-defined]
        busy = HOSTILE_BUSY.get(self.server.mode)  # type: ignore[attr-defined]
        if busy is None:
            self.answer(201, b'{"id": 1}')
            return
        self.send_response(503)
        self.send_header("Retry-After", busy)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def redirect_to() -> Iterator[Callable[[str], str]]:
    """redirect_to(location): the URL of a loopback page answering 302 to location."""
    servers: list[ThreadingHTTPServer] = []

    def start(location: str) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), RedirectHandler)
        server.location = location
        servers.append(server)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def hostile_store() -> Iterator[Callable[[str], ThreadingHTTPServer]]:
    """hostile_store("endless-image"): a running HostileHandler server (.url, .posts)."""
    servers: list[ThreadingHTTPServer] = []

    def start(mode: str) -> ThreadingHTTPServer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), HostileHandler)
        server.daemon_threads = True
        server.mode, server.posts = mode, 0  # type: ignore[attr-defined]
        server.url = f"http://127.0.0.1:{server.server_address[1]}/"  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


class EndlessPageHandler(BaseHTTPRequestHandler):
    """Answers GET with 200 and a body that never ends (or, with `length`, claims one)."""

    def do_GET(self) -> None:
        self.send_response(200)
        if self.server.length:
            self.send_header("Content-Length", str(self.server.length))
        self.end_headers()
        try:
            while True:
                self.wfile.write(b"x" * 65536)
        except OSError:
            pass  # the client stopped reading

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(params=[0, 5 * 10**9], ids=["endless", "5GB"])
def endless_page(request) -> Iterator[str]:
    """The URL of a page whose body never ends, or claims 5 GB."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), EndlessPageHandler)
    server.daemon_threads = True
    server.length = request.param
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


# -- hostile pass: an SMTP server that quotes the AUTH line it refuses -------------------------


def quote_auth(connection: socket.socket) -> None:
    with connection, connection.makefile("rb") as lines:
        connection.sendall(b"220 quoting ESMTP\r\n")
        for line in lines:
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                connection.sendall(b"250-quoting\r\n250 AUTH PLAIN LOGIN\r\n")
            elif verb == b"AUTH":
                connection.sendall(b"535 5.7.8 refused: " + line.strip() + b"\r\n")
            else:
                connection.sendall(b"221 bye\r\n")
                return


@pytest.fixture
def quoting_smtp() -> Iterator[int]:
    """The port of an SMTP server that refuses AUTH quoting the client's line (base64)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=quote_auth, args=(connection,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


# -- hostile pass: an SMTP server slow to answer the end of the mail, or the goodbye ---------


class SlowSMTP(NamedTuple):
    port: int
    taken: list[bytes]  # each mail it accepted, as it came
    ended: threading.Event  # a mail's final "." has arrived (its answer is not sent yet)


def slow_session(connection: socket.socket, server: SlowSMTP, data_delay: float, quit_delay: float):
    with connection, connection.makefile("rb") as lines:
        connection.sendall(b"220 slow ESMTP\r\n")
        for line in lines:
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                connection.sendall(b"250 slow\r\n")
            elif verb == b"DATA":
                connection.sendall(b"354 go on\r\n")
                body = b"".join(iter(lines.readline, b".\r\n"))
                server.ended.set()
                time.sleep(data_delay)
                server.taken.append(body)
                connection.sendall(b"250 queued\r\n")
            elif verb == b"QUIT":
                time.sleep(quit_delay)
                connection.sendall(b"221 bye\r\n")
                return
            else:
                connection.sendall(b"250 ok\r\n")


@pytest.fixture
def slow_smtp() -> Iterator[Callable[..., SlowSMTP]]:
    """slow_smtp(data_delay=, quit_delay=): an SMTP server on loopback that waits that
    long before it accepts a mail's end, or answers QUIT."""
    listeners = []

    def start(data_delay: float = 0.0, quit_delay: float = 0.0) -> SlowSMTP:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)
        server = SlowSMTP(listener.getsockname()[1], [], threading.Event())

        def serve() -> None:
            while True:
                try:
                    connection, _ = listener.accept()
                except OSError:
                    return
                session = (connection, server, data_delay, quit_delay)
                threading.Thread(target=slow_session, args=session, daemon=True).start()

        threading.Thread(target=serve, daemon=True).start()
        return server

    yield start
    for listener in listeners:
        listener.close()
