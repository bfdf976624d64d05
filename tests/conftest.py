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
from store import Faults, StoreProcess


@pytest.fixture(autouse=True)
def venv_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scripts run as users run them (`./run.py`, through `#!/usr/bin/env
    python3`), with the virtualenv that runs the tests activated."""
    bin_dir = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", bin_dir + os.pathsep + os.environ.get("PATH", ""))


@pytest.fixture
def store_factory(tmp_path: Path) -> Iterator[Callable[..., StoreProcess]]:
    """Start a stand-in store: store_factory(token="t", drop_every=2, ...).

    Each store is its own `sandbox/store.py` process (Django settings are per
    process); the handle has .url, .catalog, .post_count and .stop()."""
    started: list[StoreProcess] = []

    def start(token: str = "", **faults: float) -> StoreProcess:
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
            served = requests.get(store.url + "media/images/" + fruit["image_name"], timeout=10)
            jpeg = (delivery / "images" / f"{text.stem}.jpeg").read_bytes()
            assert served.content == jpeg, f"{name} shows another picture"
            assert outcomes[text.name]["outcome"] == "imported", outcomes[text.name]
            assert outcomes[text.name]["id"] == fruit["id"]
            assert outcomes[text.name]["image_name"] == fruit["image_name"]
    contents = list(store_images(store).values())
    assert len(contents) == len(set(contents)), "an image stored twice"
    assert len(fruits) == sum(len(list((d / "descriptions").glob("*.txt"))) for d in deliveries)
