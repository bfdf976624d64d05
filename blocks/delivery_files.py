"""Shared block `delivery files`: reading a delivery's files as untrusted input.

Every script that needs it carries a copy of the part below the marker, between
its fences. Edit it here, then run `make blocks` (python tools/sync_blocks.py);
tests/test_scripts.py fails while a copy differs. Above the marker: what the
copies find in their script.
"""

from __future__ import annotations

import os
import shlex
import stat
from pathlib import Path
from typing import BinaryIO

from cli import expand_home

# --- block ---
DESCRIPTION_LIMIT = 1 << 20  # 1 MiB: a description is a few lines
IMAGE_LIMIT = 200 << 20  # 200 MiB: a large uncompressed TIFF


def supplier_data() -> Path:
    """The delivery: $SUPPLIER_DATA, else the lab's ~/supplier-data."""
    return expand_home(os.environ.get("SUPPLIER_DATA", "").strip() or "~/supplier-data")


class RefusedFile(Exception):
    """A file of the delivery that is not read: str() names it and says why."""


ABSENT = "no such file or directory"  # what unreachable() says of a path not there


def unreachable(path: Path, folder: bool = True) -> str:
    """Why path is not there for this user ('no such file or directory', 'permission
    denied', 'not a folder'), else '': pathlib raises where a parent may not be entered.
    A folder must be listable too."""
    try:
        kind = path.stat().st_mode
    except OSError as error:
        return (error.strerror or str(error)).lower()
    if folder and not stat.S_ISDIR(kind):
        return "not a folder"
    return "" if not folder or os.access(path, os.R_OK | os.X_OK) else "permission denied"


def utf8_named(path: Path) -> bool:
    """Whether path's name is UTF-8: another one cannot be written to a record, a
    journal or a mail, nor be a name in the store."""
    return not any("\udc80" <= char <= "\udcff" for char in path.name)


def shown_path(path: Path) -> str:
    """path as text that can be written anywhere: bytes that are not UTF-8 as \\xff."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def file_kind(mode: int) -> str:
    kinds = {stat.S_ISDIR: "a folder", stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket"}
    kinds |= {stat.S_ISCHR: "a device", stat.S_ISBLK: "a device"}
    return next((name for test, name in kinds.items() if test(mode)), "not a regular file")


def open_delivery_file(path: Path, root: Path, limit: int) -> BinaryIO:
    """Open path for reading only when it is a regular file of at most `limit` bytes
    really inside root (root itself may be a link; a link inside root that stays
    inside is fine). A delivery is untrusted: a link out of it could publish a
    private file, a FIFO or /dev/zero would hang or exhaust memory. The checks are
    made on the opened descriptor, so a file swapped after the check is not read."""
    if not utf8_named(path):
        raise RefusedFile(f"{shown_path(path)}: its name is not UTF-8; rename it")
    real_root = root.resolve()
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError) as error:
        raise RefusedFile(f"{path}: cannot open: {getattr(error, 'strerror', error)}") from None
    if not real.is_relative_to(real_root):
        raise RefusedFile(f"{path}: links outside {root}; not read")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(real, flags)
    except OSError as error:
        raise RefusedFile(f"{path}: cannot open: {error.strerror}") from None
    try:
        info = os.fstat(fd)
        proc = Path(f"/proc/self/fd/{fd}")
        opened = proc.readlink() if proc.is_symlink() else real
        if not opened.is_relative_to(real_root):
            raise RefusedFile(f"{path}: moved outside {root} while being opened; not read")
        if not stat.S_ISREG(info.st_mode):
            raise RefusedFile(f"{path}: {file_kind(info.st_mode)}, not a regular file; not read")
        if info.st_size > limit:
            raise RefusedFile(f"{path}: {info.st_size} bytes, over the limit of {limit}; not read")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_delivery_file(path: Path, root: Path, limit: int) -> bytes:
    """The bytes of a delivery file, checked as open_delivery_file does; a file that
    grows past the limit while being read is refused too."""
    with open_delivery_file(path, root, limit) as file:
        content = file.read(limit + 1)
    if len(content) > limit:
        raise RefusedFile(f"{path}: grew over the limit of {limit} while read; not read")
    return content


def earlier_attempt(jpeg: Path, source: Path) -> str:
    """The one message, in every script, for a JPEG beside its source that
    changeImage.py did not write (no mark: an earlier attempt's, most likely),
    with the one command that resolves it, as it can be typed: the names alone
    when the JPEG is beside its source (the lab's layout), the folders it needs
    otherwise (the images folder unless it is $SUPPLIER_DATA/images)."""
    command = "./changeImage.py --replace-unmarked"
    if jpeg.parent != source.parent:
        command += f" --output-dir {shlex.quote(str(jpeg.parent))}"
    if source.parent.resolve() != (supplier_data() / "images").resolve():
        command += f" {shlex.quote(str(source.parent))}"
    shown = (jpeg.name, source.name) if jpeg.parent == source.parent else (jpeg, source)
    return (
        f"{shown[0]} was not made by changeImage.py from {shown[1]} (an earlier"
        f" attempt's?): run {command} to convert over it"
    )
