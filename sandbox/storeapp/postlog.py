"""The lab box's record of what clients sent: one JSON line per POST.

The store keeps what it made of a request (an int weight, a renamed file),
not what was sent; the lab's checker grades what was sent ("weight posted as
the text '500'"), so the box asks the store to write it down. Only on when
STORE_POST_LOG names a file (sandbox/lab.py sets it).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

LOCK = threading.Lock()


class PostLog:
    """Middleware: after each POST, append {path, status, content_type, json}."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response
        self.path = settings.STORE_POST_LOG

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return self.get_response(request)
        content_type = request.content_type or ""
        # Read before the view: DRF then reads the same bytes again from Django's copy.
        body = request.body if content_type == "application/json" else b""
        response = self.get_response(request)
        entry = {
            "path": request.path,
            "status": response.status_code,
            "content_type": content_type,
            "json": parsed(body),
        }
        with LOCK, open(self.path, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")
        return response


def parsed(body: bytes) -> object:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None
