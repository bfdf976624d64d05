"""Shared block `files`: whole files or none, and reads that cannot hang.

Every script that needs it carries a copy of the part below the marker, between
its fences. Edit it here, then run `make blocks` (python tools/sync_blocks.py);
tests/test_scripts.py fails while a copy differs. Above the marker: what the
copies find in their script.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path


# --- block ---
def write_atomically(path: Path, data: bytes | str, *, mode: int = 0o644) -> None:
    """path holds data, whole, or keeps what it held: a temporary file beside it,
    written, flushed, fsynced, given `mode`, then renamed over it; the temporary is
    removed on any failure. OSError when path is a folder, FIFO or device, which the
    rename would replace (as root, a path of /dev/null would replace the machine's).
    The folder must exist: a missing one is a typo to report, not one to create."""
    path = Path(path)
    try:
        kind = os.lstat(path).st_mode
    except FileNotFoundError:
        kind = stat.S_IFREG
    if not (stat.S_ISREG(kind) or stat.S_ISLNK(kind)):
        raise OSError(errno.EEXIST, "not a regular file, which it would replace", str(path))
    # Surrogates (a path that is not UTF-8) as \udcff: in JSON that reads back whole.
    content = data.encode("utf-8", "backslashreplace") if isinstance(data, str) else data
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_capped(path: Path, limit: int) -> bytes:
    """The bytes of path, a regular file of at most `limit` bytes; OSError for
    anything else. Opened without blocking and checked on the descriptor: a FIFO
    would wait for a writer forever, /dev/zero would fill the memory; a file that
    grows past the limit while read is refused too."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise OSError(errno.EISDIR, "a folder, not a regular file", str(path))
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        if info.st_size > limit:
            raise OSError(
                errno.EFBIG, f"{info.st_size} bytes, over the limit of {limit}", str(path)
            )
        with os.fdopen(os.dup(fd), "rb") as file:
            content = file.read(limit + 1)
    finally:
        os.close(fd)
    if len(content) > limit:
        raise OSError(errno.EFBIG, f"grew over the limit of {limit} bytes while read", str(path))
    return content
