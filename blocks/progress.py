"""Shared block `progress`: one updating progress line on a terminal.

Every script that needs it carries a copy of the part below the marker, between
its fences. Edit it here, then run `make blocks` (python tools/sync_blocks.py);
tests/test_scripts.py fails while a copy differs. Above the marker: what the
copies find in their script.
"""

from __future__ import annotations

import os
import sys
import threading
import time


# --- block ---
class Progress:
    """One updating line on a terminal: `converted 12/40, 6.1/s, 5 s left`. Shown only
    when stderr is a terminal, not quiet, and the work has taken over 2 seconds
    (PROGRESS_AFTER seconds when set: tests see the line without seconds of work);
    under cron or a pipe nothing is printed. Thread-safe."""

    SHOW_AFTER = 2.0
    EVERY = 0.2

    def __init__(self, total: int, verb: str, enabled: bool = True) -> None:
        try:
            after = float(os.environ.get("PROGRESS_AFTER", self.SHOW_AFTER))
        except ValueError:
            after = self.SHOW_AFTER
        self.after = after if 0 <= after <= 3600 else self.SHOW_AFTER
        self.total, self.verb, self.done = total, verb, 0
        self.enabled = enabled and sys.stderr.isatty()
        self.started = self.last = time.monotonic()
        self.shown = False
        self.lock = threading.Lock()

    def advance(self, count: int = 1) -> None:
        with self.lock:
            self.done += count
            now = time.monotonic()
            if not self.enabled or now - self.started < self.after:
                return
            if now - self.last >= self.EVERY or self.done == self.total:
                self.last = now
                self.show(now)

    def show(self, now: float) -> None:
        rate = self.done / max(now - self.started, 1e-9)
        left = (self.total - self.done) / rate if rate else 0.0
        line = f"{self.verb} {self.done}/{self.total}, {rate:.1f}/s, {left:.0f} s left"
        sys.stderr.write(f"\r{line}\x1b[K")
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        """Clear the line so the summary that follows starts on a clean one."""
        with self.lock:
            if self.shown:
                sys.stderr.write("\r\x1b[K")
                sys.stderr.flush()
                self.shown = False
