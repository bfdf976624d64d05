"""Fault injection, so clients can be tested against a misbehaving store.

Every POST that reaches a view is numbered (1, 2, ...); the number is also
written to <data>/post_count for tests. A fault "every N" hits the POSTs
whose number is a multiple of N.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.http import HttpRequest, HttpResponse

# Set in the WSGI environ (request.META) to have the server close the
# connection instead of answering; see storeapp.server.
DROP_KEY = "store.drop_connection"

Handler = Callable[[HttpRequest], HttpResponse]


class DelayMiddleware:
    """--delay S: every answer, to any method, leaves S seconds late."""

    def __init__(self, get_response: Handler):
        self.get_response = get_response
        self.delay = settings.STORE_FAULTS["delay"]

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if self.delay:
            time.sleep(self.delay)
        return response


class PostCounter:
    """Thread-safe POST numbering, mirrored to a file the tests read."""

    def __init__(self, path: Path):
        self.path = path
        self.count = 0
        self.lock = threading.Lock()
        self.write()

    def next(self) -> int:
        with self.lock:
            # Read back: StoreProcess.reset() empties a store between tests by
            # writing 0 here, so the next POST is number 1 again.
            self.count = int(self.path.read_text() or 0) + 1
            self.write()
            return self.count

    def write(self) -> None:
        # Written whole then renamed: a reader never sees a half-written number.
        partial = self.path.with_suffix(".partial")
        partial.write_text(str(self.count))
        os.replace(partial, self.path)


def every(n: float, number: int) -> bool:
    return n > 0 and number % int(n) == 0


class PostFaultsMiddleware:
    """The POST faults: 503 and stall before the work; 502, drop, slow after."""

    def __init__(self, get_response: Handler):
        self.get_response = get_response
        self.faults = settings.STORE_FAULTS
        self.counter = PostCounter(settings.POST_COUNT_FILE)

    def process_view(self, request: HttpRequest, *args: object) -> HttpResponse | None:
        """Runs once the URL matched a view, before the view does any work."""
        if request.method != "POST":
            return None
        number = self.counter.next()
        if every(self.faults["fail_503_every"], number):
            return HttpResponse("<h1>503 Service Unavailable</h1>", status=503)
        request.store_post_number = number  # the view runs: faults after it apply
        if every(self.faults["stall_every"], number):
            # Silent, then the work: a client that gave up sees it land later.
            time.sleep(self.faults["stall"])
        return None

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        number = getattr(request, "store_post_number", 0)
        if not number:
            return response
        if every(self.faults["fail_502_every"], number):
            return HttpResponse("<h1>502 Bad Gateway</h1>", status=502)
        if every(self.faults["drop_every"], number):
            request.META[DROP_KEY] = True
        elif every(self.faults["slow_every"], number):
            time.sleep(self.faults["slow"])
        return response
