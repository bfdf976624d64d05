"""Shared block `lock`: one exclusive lock per delivery, never stale.

Every script that needs it carries a copy of the part below the marker, between
its fences. Edit it here, then run `make blocks` (python tools/sync_blocks.py);
tests/test_scripts.py fails while a copy differs. Above the marker: what the
copies find in their script.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import json
import os
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

# --- block ---
LOCK_NAME = ".fruit-catalog.lock"


class DeliveryBusy(Exception):
    """Another run holds the delivery's lock: str() names it."""


def lock_path(delivery: Path) -> Path:
    """Where the delivery's lock lives: inside the delivery when it is writable, else
    in the temporary folder under a name derived from the delivery's real path, so
    every script run against the same delivery picks the same file."""
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
    """The lock file, never through a link and only when it is a regular file: a
    delivery is untrusted, and the lock file is rewritten with the holder's name, so
    a planted link could otherwise truncate any file of the user."""
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
    """Take the delivery's exclusive lock, waiting up to `wait` seconds, and write who
    holds it. The kernel drops the lock when the process ends, even on kill -9, so a
    lock is never stale. Keep the returned file open while working."""
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
