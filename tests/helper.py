"""Small helpers shared by the test modules (as Pillow's Tests/helper.py): each
makes one kind of input or one kind of assertion read like prose."""

from __future__ import annotations

import shutil
import struct
import subprocess
import time
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from pypdf import PdfReader

# struct formats of the TIFF field types with_entry() writes
FIELD_FORMATS = {3: "H", 4: "I", 5: "II", 9: "i", 11: "f", 12: "d"}


def wait_for(condition: Callable[[], object], seconds: float = 30) -> None:
    """Returns as soon as condition() is true; fails the test after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds:g} s: {condition}"
        time.sleep(0.05)


def with_entry(
    data: bytes, tag: int, field_type: int, values: list, *, again=False, cut_off=False
) -> bytes:
    """The little-endian TIFF with one tag of its first IFD set (or added) as
    given: the IFD is written again at the end, values that do not fit in
    the entry after it. again: a second entry for the tag, after the first;
    cut_off: the values said to be past the end of the file."""
    ifd = int.from_bytes(data[4:8], "little")
    count = int.from_bytes(data[ifd : ifd + 2], "little")
    entries = {
        (int.from_bytes(data[at : at + 2], "little"), 0): data[at : at + 12]
        for at in range(ifd + 2, ifd + 2 + 12 * count, 12)
    }
    flat = [part for value in values for part in (value if isinstance(value, tuple) else (value,))]
    packed = struct.pack("<" + FIELD_FORMATS[field_type] * len(values), *flat)
    end = len(data) + len(data) % 2
    if len(packed) > 4:
        at = len(data) + 1000 if cut_off else end
        data, packed = data.ljust(end, b"\0") + packed * (not cut_off), at.to_bytes(4, "little")
    entry = struct.pack("<HHI", tag, field_type, len(values)) + packed.ljust(4, b"\0")
    entries[tag, 1 if again else 0] = entry
    start = len(data) + len(data) % 2
    table = len(entries).to_bytes(2, "little") + b"".join(e for _, e in sorted(entries.items()))
    head = data[:4] + start.to_bytes(4, "little")
    return (head + data[8:]).ljust(start, b"\0") + table + bytes(4)


def mails(catcher) -> list[EmailMessage]:
    """Every message the mail catcher received, parsed, in the order they came."""
    return [message_from_bytes(p.read_bytes(), policy=policy.default) for p in catcher.messages()]


def subjects(catcher) -> list[str]:
    return [message["Subject"] for message in mails(catcher)]


def pdf_text(path: Path) -> str:
    """The PDF's text as pypdf reads it."""
    return "\n".join(page.extract_text() for page in PdfReader(path).pages)


def poppler_text(path: Path) -> str:
    """The PDF's text as poppler's pdftotext reads it (the test skips without it)."""
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext is missing: apt-get install poppler-utils (.ci/run does, as root)")
    return subprocess.run(
        ["pdftotext", str(path), "-"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
