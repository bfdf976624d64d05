"""Shared block `catalog jpeg`: whether a file is a catalog JPEG as changeImage.py
writes it (whole, ending at its end marker, of the size its mark gives), read
without Pillow.

Every script that needs it carries a copy of the part below the marker, between
its fences. Edit it here, then run `make blocks` (python tools/sync_blocks.py);
tests/test_scripts.py fails while a copy differs. Above the marker: what the
copies find in their script.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import NamedTuple

from delivery_files import earlier_attempt

# --- block ---
CATALOG_SIZE = (600, 400)  # the lab's: a JPEG without changeImage.py's mark must have it
JPEG_MARK = re.compile(  # changeImage.py's MARK (its first marks: SHA-256)
    rb"fruit-catalog changeImage\.py made-from-(?:xxh3-128=[0-9a-f]{32}|sha256=[0-9a-f]{64})"
    rb" options=[0-9a-f]{16} size=([0-9]+)x([0-9]+)"
)
SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # frame headers: the size
STANDALONE_MARKERS = frozenset(range(0xD0, 0xD8)) | {0x01}  # markers without a length
# Where coded data ends: FF, then neither a stuffed 00, a restart, TEM nor fill FF.
# Searched in C: a walk reads marker headers only, however long the coded data.
CODED_DATA_END = re.compile(rb"\xff[^\x00\x01\xd0-\xd7\xff]")
# What makes a file named like a catalog JPEG unusable (the record's photo causes):
CUT, NOT_OURS, WRONG_SIZE = "cut", "not ours", "wrong size"
EARLIER_ATTEMPT = "earlier attempt"  # unmarked beside its source: earlier_attempt() says it
PHOTO = "photo"  # the supplier's own photo under the catalog's name: photo_to_convert() says it
# The photos changeImage.py converts, by their first bytes: the name to give one.
PHOTO_SUFFIXES = {
    b"\xff\xd8\xff": ".jpg",
    b"II*\x00": ".tiff",
    b"MM\x00*": ".tiff",
    b"\x89PNG\r\n\x1a\n": ".png",
    b"GIF87a": ".gif",
    b"GIF89a": ".gif",
}


def jpeg_layout(content: bytes) -> tuple[tuple[int, int] | None, bytes, int]:
    """A whole JPEG's (width, height), its comments and where its end marker ends,
    walked segment by segment and through its coded data to that marker, without
    decoding (these scripts need no Pillow); ValueError saying what is wrong."""
    cut = f"cut short (no end marker after {len(content)} bytes)"
    if not content.startswith(b"\xff\xd8"):
        raise ValueError("not a JPEG")
    size, comments, at = None, b"", 2
    while True:
        if at + 2 > len(content):
            raise ValueError(cut)
        if content[at] != 0xFF:
            raise ValueError(f"broken at byte {at} (no segment starts there)")
        marker = content[at + 1]
        if marker == 0xD9:
            return size, comments, at + 2
        if marker == 0xFF or marker in STANDALONE_MARKERS:
            at += 1 if marker == 0xFF else 2
            continue
        length = int.from_bytes(content[at + 2 : at + 4], "big")
        end = at + 2 + length
        if length < 2 or end > len(content):
            raise ValueError(cut)
        if marker in SOF_MARKERS and length >= 7:
            size = (
                int.from_bytes(content[at + 7 : at + 9]),
                int.from_bytes(content[at + 5 : at + 7]),
            )
        elif marker == 0xFE:
            comments += content[at + 4 : end]
        at = end
        if marker == 0xDA:  # coded data: runs to the next marker that is not 00 or a restart
            end_of_data = CODED_DATA_END.search(content, at)
            if end_of_data is None:
                raise ValueError(cut)
            at = end_of_data.start()


class Unusable(NamedTuple):
    """Why a file named like a catalog JPEG is not one: cause (CUT, NOT_OURS,
    WRONG_SIZE, EARLIER_ATTEMPT: decide by it) and what to say."""

    cause: str
    text: str


def unusable_jpeg(content: bytes, path: Path) -> Unusable | None:
    """What keeps content (the file at path) from being a catalog JPEG (None when
    it is one): a whole JPEG ending at its end marker, of the size its
    changeImage.py mark gives, or 600x400 without a mark, and then only with no
    source beside it (001.jpeg beside 001.tiff without the mark is an earlier
    attempt's, the one message of earlier_attempt()). Any other photo without a
    mark and without a source beside it is the supplier's own, named like an
    output (009.jpeg, 640x480): photo_to_convert() says the way out."""
    try:
        size, comments, end = jpeg_layout(content)
    except ValueError as error:
        is_other_photo = not content.startswith(b"\xff\xd8") and photo_suffix(content)
        if is_other_photo and not sources_beside(path):  # a TIFF named 005.jpeg
            return Unusable(PHOTO, photo_to_convert(content, path))
        return Unusable(CUT, f"not a whole JPEG: {error}")
    mark = JPEG_MARK.search(comments)
    sources = [] if mark else sources_beside(path)
    if end < len(content):
        if not (mark or sources):
            return Unusable(PHOTO, photo_to_convert(content, path))
        extra = len(content) - end
        return Unusable(
            NOT_OURS, f"{extra} bytes after the JPEG's end marker (not changeImage.py's)"
        )
    if sources:
        return Unusable(EARLIER_ATTEMPT, earlier_attempt(path, sources[0]))
    expected = (int(mark[1]), int(mark[2])) if mark else CATALOG_SIZE
    if size != expected:
        if not mark and size is not None:
            return Unusable(PHOTO, photo_to_convert(content, path))
        shown = "no frame" if size is None else f"{size[0]}x{size[1]}"
        whose = "its changeImage.py mark says" if mark else "a catalog JPEG is"
        return Unusable(WRONG_SIZE, f"{shown} pixels where {whose} {expected[0]}x{expected[1]}")
    return None


def photo_suffix(content: bytes) -> str:
    """The extension of a photo changeImage.py converts (".jpg" for a JPEG), by
    its first bytes; "" for anything else."""
    return next((s for magic, s in PHOTO_SUFFIXES.items() if content.startswith(magic)), "")


def photo_to_convert(content: bytes, path: Path) -> str:
    """The one message, in every script, for the supplier's own photo named like a
    catalog JPEG with no source beside it, with the way out: changeImage.py names
    its outputs by stem, so renamed as what it is the photo converts to path."""
    renamed = path.stem + (photo_suffix(content) or ".jpg")
    return (
        f"{path.name} is a photo under the catalog's name, not made by changeImage.py:"
        f" rename it {renamed} and run ./changeImage.py to convert it"
    )


def sources_beside(path: Path) -> list[Path]:
    """The other files of path's stem in its folder (001.tiff beside 001.jpeg)."""
    beside = path.parent.glob(glob.escape(path.stem) + ".*")
    return sorted(p for p in beside if p.name != path.name and p.stem == path.stem)
