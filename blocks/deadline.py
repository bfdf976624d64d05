"""Shared block `deadline`: one wall-clock deadline for a socket conversation.

Every script that needs it carries a copy of the part below the marker, between
its fences. Edit it here, then run `make blocks` (python tools/sync_blocks.py);
tests/test_scripts.py fails while a copy differs. Above the marker: what the
copies find in their script.
"""

from __future__ import annotations

import os
import socket
import threading
import time


# --- block ---
class Deadline:
    """`with Deadline(seconds) as deadline:` cuts the conversation when it has taken
    `seconds` in all. Socket timeouts bound each wait, not their sum: a server that
    trickles a byte per wait never trips them. A timer shuts the watched socket down,
    so the blocked call returns at once (an OSError in the caller; `expired` says
    why). It shuts down by descriptor, which survives a TLS wrap of the socket, and
    only while that descriptor is still the watched socket (a closed socket's
    number may already be another file's).

    The deadline entered last in a thread is that thread's `Deadline.current()`:
    code that opens sockets deep inside a library (a connection class) watches
    them with `watch_socket(sock)`."""

    _current = threading.local()

    def __init__(self, seconds: float) -> None:
        self.seconds, self.end = seconds, time.monotonic() + seconds
        self.expired = False
        self.fd, self.identity = -1, (0, 0)
        self.lock = threading.Lock()
        self.timer = threading.Timer(seconds, self.expire)
        self.timer.daemon = True

    @classmethod
    def current(cls) -> Deadline | None:
        return getattr(cls._current, "deadline", None)

    def __enter__(self) -> Deadline:
        self.outer, Deadline._current.deadline = Deadline.current(), self
        self.end = time.monotonic() + self.seconds
        self.timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        Deadline._current.deadline = self.outer

    def left(self) -> float:
        """Seconds until the deadline (negative once passed)."""
        return self.end - time.monotonic()

    def stop(self) -> None:
        with self.lock:
            self.fd = -1
        self.timer.cancel()

    def watch(self, sock: socket.socket) -> None:
        """Cut sock when the deadline passes; TimeoutError when it already has."""
        with self.lock:
            if self.expired:
                raise TimeoutError(f"no whole answer within {self.seconds:g} s")
            self.fd = sock.fileno()
            info = os.fstat(self.fd)
            self.identity = (info.st_dev, info.st_ino)

    def expire(self) -> None:
        with self.lock:
            self.expired = True
            if self.fd < 0 or not self.still_watched():
                return
            view = socket.socket(fileno=self.fd)
            try:
                view.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the other side: the blocked call returns anyway
            finally:
                view.detach()

    def still_watched(self) -> bool:
        try:
            info = os.fstat(self.fd)
        except OSError:
            return False
        return (info.st_dev, info.st_ino) == self.identity


def watch_socket(sock: socket.socket | None) -> None:
    """Let this thread's current Deadline, if any, cut sock."""
    deadline = Deadline.current()
    if deadline is not None and sock is not None:
        deadline.watch(sock)
