"""Shared block `store names`: the names the store keeps for an upload,
as Django cleans and shortens them, and the content name of a catalog JPEG.

Every script that needs it carries a copy of the part below the marker, between
its fences. Edit it here, then run `make blocks` (python tools/sync_blocks.py);
tests/test_scripts.py fails while a copy differs. Above the marker: what the
copies find in their script.
"""

from __future__ import annotations

import hashlib
import re

# --- block ---
NAME_ROOM = 100 - len("images/")  # the store's FileField keeps images/<name> in 100 characters
NAME_BYTES = 255  # and writes it as a file: 255 bytes of UTF-8 on Linux


def valid_filename(name: str) -> str:
    """django.utils.text.get_valid_filename without Django: spaces become _, and
    everything but Unicode letters, digits, -, _ and . is dropped."""
    return re.sub(r"(?u)[^-\w.]", "", str(name).strip().replace(" ", "_"))


def store_name(filename: str, tag: str = "") -> str:
    """The name the store keeps for an upload named filename: Django's valid file
    name, shortened here so that images/<name> fits the store's 100 characters
    (Django would add a random suffix). tag (a content digest) is appended to
    the stem, never cut off."""
    stem, dot, ext = valid_filename(filename).rpartition(".")
    stem, ext = (stem, dot + ext) if dot else (ext, "")
    stem = stem.strip(".") or "image"
    tail = f"-{tag}" if tag else ""
    stem = stem[: NAME_ROOM - len(ext) - len(tail)]
    while len(f"{stem}{tail}{ext}".encode()) > NAME_BYTES:  # the store's file system
        stem = stem[:-1]
    return stem + tail + ext


def content_tag(content: bytes) -> str:
    """The digest both scripts put in every catalog image's name."""
    return hashlib.sha256(content).hexdigest()[:12]


def catalog_name(filename: str, content: bytes) -> str:
    """The name a catalog JPEG is uploaded and posted under: <stem>-<first 12 hex
    of its SHA-256>.jpeg. Two different pictures never share a name, so importers
    racing on one store (the store never says under which name it kept an upload)
    cannot take each other's; the same picture twice is the same bytes."""
    return store_name(filename, content_tag(content))
