"""Shared block `journal`: an append-only journal of what was sent,
written line by line with fsync and read back as untrusted input.

Every script that needs it carries a copy of the part below the marker, between
its fences. Edit it here, then run `make blocks` (python tools/sync_blocks.py);
tests/test_scripts.py fails while a copy differs. Above the marker: what the
copies find in their script.
"""

from __future__ import annotations

import datetime
import errno
import json
import logging
import os
import stat
import time
from pathlib import Path

from cli import sleep_in_steps
from delivery_files import RefusedFile, read_delivery_file

log = logging.getLogger("journal")


# --- block ---
JOURNAL_LIMIT = 64 << 20  # a journal read back: ~200,000 lines


def open_journal(path: Path) -> int:
    """An append-only descriptor: every line is one write() then fsync. Only a
    regular file: a link, FIFO or device planted in a delivery is refused."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    fd = os.open(path, flags, 0o644)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return fd


class JournalError(Exception):
    """The journal cannot be written (a full disk): the run stops sending."""


# What a run stopped by a full disk says to do: what it sent is in the store, not in its files.
AFTER_FULL = "make room and run again: it finds in the store what this run sent"


def append_line(fd: int, entry: dict) -> None:
    try:
        # A path that is not UTF-8 (surrogates) goes in as JSON's \udcff: read back whole.
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        os.write(fd, line.encode("utf-8", "backslashreplace"))
        os.fsync(fd)
    except OSError as error:
        raise JournalError(error.strerror or str(error)) from None


def read_journal(path: Path) -> list[dict]:
    """The journal's JSON objects; a line cut by a kill, not UTF-8 or not an
    object is ignored with a warning (it cannot decide anything anyway)."""
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
    """A journal line's time in seconds since the epoch (0 when unreadable)."""
    try:
        return datetime.datetime.fromisoformat(entry["time"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return 0.0


def await_stopped_requests(sent: float, grace: float) -> bool:
    """A run killed during a request (sent at `sent`, epoch seconds) may see it land
    later: wait until grace seconds after it before asking the store what it holds,
    as for a lost answer. True when it waited."""
    left = min(sent + 1 + grace - time.time(), grace + 1)  # journal times are whole seconds
    if left <= 0:
        return False
    log.info("a stopped run's request may still land; looking in %.0f s (--grace)", left)
    sleep_in_steps(left)
    return True
