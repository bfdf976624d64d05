"""Fixtures that start the stand-ins (store, mail catcher) on free loopback
ports for one test and stop them afterwards, plus small sample deliveries."""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mailcatcher import MailCatcher
from make_delivery import make_delivery
from store import Faults, StoreServer


@pytest.fixture(autouse=True)
def venv_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scripts run as users run them (`./run.py`, through `#!/usr/bin/env
    python3`), with the virtualenv that runs the tests activated."""
    bin_dir = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", bin_dir + os.pathsep + os.environ.get("PATH", ""))


@pytest.fixture
def store_factory(tmp_path: Path) -> Iterator[Callable[..., StoreServer]]:
    """Start a stand-in store: store_factory(token="t", drop_every=2, ...)."""
    started: list[StoreServer] = []

    def start(token: str = "", **faults: float) -> StoreServer:
        data = tmp_path / f"store{len(started)}"
        server = StoreServer(data, token=token, faults=Faults(**faults)).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def store(store_factory) -> StoreServer:
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
    """A misconfigured front: lists nothing, answers every POST with a redirect."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
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
def trickling_server() -> Iterator[Callable[[bytes], int]]:
    """trickling_server(greeting): a loopback port whose server sends `greeting` one
    byte every 2 seconds to each connection, endlessly: every per-read timeout passes."""
    stop = threading.Event()
    listeners: list[socket.socket] = []

    def trickle(connection: socket.socket, greeting: bytes) -> None:
        with connection:
            for index in range(10**6):
                if stop.wait(0 if index == 0 else 2):
                    return
                try:
                    connection.sendall(greeting[index % len(greeting) : index % len(greeting) + 1])
                except OSError:
                    return

    def serve(listener: socket.socket, greeting: bytes) -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=trickle, args=(connection, greeting), daemon=True).start()

    def start(greeting: bytes) -> int:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)
        threading.Thread(target=serve, args=(listener, greeting), daemon=True).start()
        return listener.getsockname()[1]

    yield start
    stop.set()
    for listener in listeners:
        listener.close()
