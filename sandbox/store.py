#!/usr/bin/env python3
"""Stand-in for the fruit store's Django REST service, on loopback.

It is a small Django + Django REST Framework project (sandbox/storeapp/)
shaped like the real store, so validation messages, blank and range rules,
trailing-slash behaviour and upload file naming come from the same framework
code as in production. Products live in SQLite, images on disk, both under
--data.

Usage:
    python sandbox/store.py --port 0 --data /tmp/store
    python sandbox/store.py --token s3cret --fail-503-every 3 --delay 0.02

Example:
    $ python sandbox/store.py --port 0 --data /tmp/store
    http://127.0.0.1:40117/

Fault injection (flags, or the STORE_* environment variables in --help),
counted over POST requests that reach a view:
    --fail-503-every N   answer 503 to every Nth POST before doing anything
    --stall-every N      every Nth POST: say nothing for --stall seconds,
                         then do the work and answer normally
    --fail-502-every N   do the work of every Nth POST, then answer 502
    --drop-every N       do the work of every Nth POST, then close the
                         connection without answering
    --slow-every N       do the work of every Nth POST, then answer only
                         after --slow seconds
    --rename-every N     keep every Nth POST's upload under a name of the
                         store's own (`<8 hex>-<name>`), as a store that
                         rewrites upload names does; answer 201 as usual
    --delay S            delay every response (any method) by S seconds

StoreProcess starts one as a child process (tests, benchmarks, the demo):
Django settings are per process, so every store is its own process.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

SCRIPT = Path(__file__).resolve()
FRUIT_TABLE = "storeapp_fruit"  # Django's name for storeapp.models.Fruit


@dataclass
class Faults:
    """Which POSTs misbehave, and how. Zero means never."""

    fail_503_every: int = 0
    fail_502_every: int = 0
    drop_every: int = 0
    slow_every: int = 0
    slow: float = 0.0
    delay: float = 0.0
    stall_every: int = 0
    stall: float = 0.0
    rename_every: int = 0

    def argv(self) -> list[str]:
        """The command-line flags that set these faults."""
        flags: list[str] = []
        for name, value in asdict(self).items():
            if value:
                flags += ["--" + name.replace("_", "-"), str(value)]
        return flags


# -- the server process ------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    env = os.environ.get
    add("--host", default=env("STORE_HOST", "127.0.0.1"), help="[STORE_HOST]")
    add("--port", type=int, default=int(env("STORE_PORT", "0")), help="0 picks a free port")
    add("--data", type=Path, default=Path(env("STORE_DATA", "store-data")), help="[STORE_DATA]")
    add("--token", default=env("STORE_TOKEN", ""), help="require 'Authorization: Token T'")
    for name, value in asdict(Faults()).items():
        variable = "STORE_" + name.upper()
        kind = type(value)
        default = kind(env(variable, str(value)))
        add("--" + name.replace("_", "-"), type=kind, default=default, help=f"[{variable}]")
    add("--verbose", action="store_true", help="log every request to stderr")
    return parser.parse_args(argv)


def configure(args: argparse.Namespace) -> None:
    """Hand the options to storeapp.settings through STORE_* variables."""
    args.data.mkdir(parents=True, exist_ok=True)
    os.environ["STORE_DATA"] = str(args.data.resolve())
    os.environ["STORE_TOKEN"] = args.token
    os.environ["STORE_VERBOSE"] = "1" if args.verbose else ""
    for name in asdict(Faults()):
        os.environ["STORE_" + name.upper()] = str(getattr(args, name))
    os.environ["DJANGO_SETTINGS_MODULE"] = "storeapp.settings"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure(args)
    # DRF imports requests only for its test client; refusing it saves 60 ms
    # of every store's startup (stores start once per test).
    sys.modules.setdefault("requests", None)
    import django

    django.setup()
    from storeapp.server import make_server, prepare_storage, url_of, warm_up

    prepare_storage()
    server = make_server(args.host, args.port)
    warm_up()
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(url_of(server), flush=True)
    try:
        server.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


# -- starting one from Python ------------------------------------------------


@dataclass
class Catalog:
    """What a store holds, read from its files (not over HTTP: no faults)."""

    data_dir: Path

    @property
    def images(self) -> Path:
        return self.data_dir / "media" / "images"

    def fruits(self) -> list[dict]:
        """Every product as the API shows it, in id order."""
        database = self.data_dir / "store.sqlite3"
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=20) as db:
            db.row_factory = sqlite3.Row
            rows = db.execute(
                f"SELECT id, name, weight, description, image_name FROM {FRUIT_TABLE} ORDER BY id"
            ).fetchall()
        db.close()
        return [dict(row) for row in rows]


@dataclass
class StoreProcess:
    """A store in a child process: start(), then url, catalog, post_count, stop()."""

    data_dir: Path
    token: str = ""
    faults: Faults = field(default_factory=Faults)
    url: str = ""
    process: subprocess.Popen | None = None

    def start(self) -> StoreProcess:
        argv = [sys.executable, str(SCRIPT), "--port", "0", "--data", str(self.data_dir)]
        # The token goes by environment, out of other users' sight in ps.
        env = {**os.environ, "STORE_TOKEN": self.token}
        self.process = subprocess.Popen(
            argv + self.faults.argv(), stdout=subprocess.PIPE, text=True, env=env
        )
        self.url = self.process.stdout.readline().strip()
        if not self.url:
            self.process.wait(timeout=10)
            raise RuntimeError(f"store.py did not start (exit {self.process.returncode})")
        return self

    @property
    def catalog(self) -> Catalog:
        return Catalog(self.data_dir)

    @property
    def server_address(self) -> tuple[str, int]:
        host, port = self.url.removeprefix("http://").rstrip("/").rsplit(":", 1)
        return host, int(port)

    @property
    def post_count(self) -> int:
        """POSTs that reached a view, as the store counted them."""
        return int((self.data_dir / "post_count").read_text() or 0)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def reset(self) -> StoreProcess:
        """Empty the store as if just started: no products, no images, no POSTs
        counted, ids from 1. Only for a store without faults and with nothing in
        flight (tests reuse one store this way instead of starting one each)."""
        database = self.data_dir / "store.sqlite3"
        with sqlite3.connect(database, timeout=20) as db:
            tables = [
                row[0]
                for row in db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'storeapp_%'"
                )
            ]
            for table in tables:
                db.execute(f"DELETE FROM {table}")
            db.execute("DELETE FROM sqlite_sequence")
        db.close()
        images = self.catalog.images
        shutil.rmtree(images, ignore_errors=True)
        images.mkdir(parents=True)
        (self.data_dir / "post_count").write_text("0")
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()


if __name__ == "__main__":
    sys.exit(main())
