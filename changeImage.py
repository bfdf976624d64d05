#!/usr/bin/env python3
"""Turn a supplier's images into catalog JPEGs (600x400, RGB) beside them.

The lab's step 1: every image of ~/supplier-data/images becomes <stem>.jpeg.
`convert_image` does the lab's recipe (RGB, resize to 600x400) for one opened
image; `main` -> `convert_all` -> `plan` (what to do with each file) and
`run_tasks` (convert in threads, write each output whole) around it.

Images are recognised by content, so extension-less TIFFs are converted and
stray files (LICENSE, README, hidden files such as macOS ._* files) are
skipped; upper-case extensions are fine. Transparent areas are composited on
white, 16-bit images are scaled to 8 bits, the EXIF orientation is applied and
a usable RGB ICC profile is kept. Each output is written to a hidden temporary
file, flushed to disk and renamed into place, so an interrupted or killed run
never leaves a truncated output. Each output is marked as changeImage.py's and
keeps its source file's identity (inode, size, mtime, ctime) in an extended
attribute: a re-run skips it, unread, while that file is untouched; any other
(a new photo with old dates, a copy, a touched file) is converted again, to
the same bytes for the same photo. It never replaces a file it did not
write (001.jpeg beside 001.tiff from an earlier attempt is an error naming
both and the command that converts over it, --replace-unmarked; the supplier's
photo alone under an output's name, a 640x480 009.jpeg, is an error: rename it
009.jpg; the rest goes on). Only regular files inside images/ are read (no links
out, FIFOs, devices, files over 200 MB). One run at a time per delivery.

Usage:
    ./changeImage.py [PATH ...] [--size WxH] [--fit] [--rotate DEG]
                     [--output-dir DIR] [--format FORMAT] [--suffix EXT]
                     [--quality Q] [--background COLOUR] [--jobs N]
                     [--wait SECONDS] [--best-quality] [--force]
                     [--replace-unmarked] [--dry-run]

Examples:
    The lab's step: every image of ~/supplier-data/images becomes <stem>.jpeg:
    $ ./changeImage.py
    INFO skipped /home/alice/supplier-data/images/LICENSE: not an image
    INFO skipped /home/alice/supplier-data/images/README: not an image
    INFO converted 10, skipped 2 (not images), failed 0

    An earlier attempt's 001.jpeg beside 001.tiff (made by another script) is
    never replaced unasked (the error line is one line on a terminal):
    $ ./changeImage.py
    ERROR 001.jpeg was not made by changeImage.py from 001.tiff (an earlier
      attempt's?): run ./changeImage.py --replace-unmarked to convert over it
    ...
    INFO converted 9, skipped 3 (2 not images, 1 not ours), failed 1
    $ ./changeImage.py --replace-unmarked
    ...
    INFO converted 1, skipped 21 (10 earlier outputs, 2 not images, 9 up to date), failed 0

    A copy of the delivery (cp -r) is converted again once, to the same bytes:
    $ cp -r ~/supplier-data /srv/copy && ./changeImage.py /srv/copy/images
    INFO converted 10, skipped 12 (10 earlier outputs, 2 not images), failed 0

    The icon job: 128x128 JPEGs turned a quarter clockwise, named like their
    source with no extension (/opt/icons/ic_edit_location_black_48dp):
    $ ./changeImage.py --size 128x128 --rotate 90 --format JPEG --suffix '' \\
          --output-dir /opt/icons ~/images

Exit status: 0 all converted, up to date or skipped; 1 some images failed (others done;
fix them and run again), or with --dry-run some cannot be opened; 2 usage or configuration
error, another run holds the delivery, or an output cannot be written (disk full, read-
only): the run stops; 130 interrupted (every output written is whole).
"""

from __future__ import annotations


# --- begin shared block: early stop (from blocks/early_stop.py; make blocks) ---
def shared(name: str, value: object) -> object:
    import sys

    state = sys.modules.setdefault("fruit_catalog_shared", type(sys)("shared"))
    return vars(state).setdefault(name, value)


def stop_early(line: str = "ERROR {}", status: int = 130, fd: int = 2) -> None:
    import _signal  # loaded with Python; `import signal` takes 10+ ms, a stop there a traceback
    import os

    def stop(signum: int, frame: object) -> None:
        name = {_signal.SIGTERM: "SIGTERM", _signal.SIGHUP: "SIGHUP"}.get(signum, "SIGINT")
        said = "interrupted" if signum == _signal.SIGINT else f"interrupted by {name}"
        os.write(fd, f"{line.format(said)}\n".encode())
        os._exit(status)  # nothing written yet: the guard finishes what the work started

    for sig in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP):
        if _signal.getsignal(sig) != _signal.SIG_IGN:
            _signal.signal(sig, stop)
    shared("early stop", stop)  # after: guarded() knows the script's own run by it


def missing_packages() -> list[str]:
    return shared("missing", [])  # type: ignore[return-value]


def install_hint(pins: str) -> str:
    import os
    import sys

    python = os.path.join(os.path.dirname(sys.argv[0]), ".venv", "bin", "python")
    running = os.path.dirname(os.path.abspath(sys.executable))  # not sys.prefix: -S keeps it
    if os.path.isfile(python) and running != os.path.dirname(os.path.abspath(python)):
        return f"run it with {python} (the project's venv), or pip install {pins}"
    return f"pip install {pins}"


class Missing:
    def __init__(self, error: ImportError, pins: str) -> None:
        import os
        import sys

        script = os.path.basename(sys.argv[0])
        how = install_hint(pins) if script.endswith(".py") else f"pip install {pins}"
        said = f"{error.name} is missing: {how}"
        self.line = f"{script}: {said}" if script.endswith(".py") else said
        missing_packages().append(self.line)

    def __call__(self, *args: object, **kwargs: object) -> Missing:
        raise ModuleNotFoundError(self.line)

    def stand_in(self, *args: object) -> Missing:
        return self

    __getattr__ = __getitem__ = __add__ = __radd__ = __sub__ = __rsub__ = stand_in
    __mul__ = __rmul__ = __truediv__ = __rtruediv__ = __neg__ = stand_in

    def __mro_entries__(self, bases: tuple) -> tuple:
        return ()  # a class based on one of its names is based on object


if __name__ == "__main__":
    stop_early(*globals().get("EARLY_STOP", ()))


# --- end shared block: early stop ---

import gc

if __name__ == "__main__":
    gc.disable()  # until main(): what start-up builds is not garbage (see the end)

import argparse
import contextlib
import ctypes
import datetime
import errno
import fcntl
import functools
import glob
import hashlib
import io
import json
import logging
import math
import mmap
import os
import re
import shlex
import signal
import stat
import struct
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, BinaryIO, NamedTuple

# TiffImagePlugin is registered up front: opened through /proc/self/fd/N, a
# file has no extension to tell Pillow which plugin to load, and a miss loads
# all of them (~90 ms). JPEG, PNG, GIF and BMP come with Pillow's preinit.
try:
    from PIL import Image, ImageCms, ImageColor, PngImagePlugin, TiffImagePlugin
except ImportError as error:  # --help and -V still work; anything else says the pip line
    stand_in = Missing(error, "Pillow==13.0.0")
    Image = ImageCms = ImageColor = PngImagePlugin = TiffImagePlugin = stand_in

__version__ = "2.0.0"

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_SIZE = (600, 400)
DEFAULT_QUALITY = 85
# The largest output side: 10000x10000 RGB is 300 MB in memory, beyond any
# catalog's need; larger sizes fail late and take the machine's memory.
MAX_SIDE = 10_000
MAX_JOBS = 256
MAX_PIXELS_LIMIT = 1_000_000_000
FORMATS = {"JPEG": ".jpeg", "PNG": ".png", "WEBP": ".webp", "TIFF": ".tiff"}
FORMAT_ALIASES = {"JPG": "JPEG", "TIF": "TIFF"}
# Pillow's reducing_gap: shrink by an integer box average first, then finish
# with LANCZOS from at most this many times the target. 1.0 puts nearly all
# the work in the box average: 3000x2000 -> 600x400 is an exact 5x5 average,
# within 0.3 dB PSNR of full LANCZOS on photos (bench/bench_convert.py). Fine
# repeating texture can show moire with a box average; --best-quality uses
# 3.0, which Pillow documents as indistinguishable from full LANCZOS.
FAST_REDUCING_GAP = 1.0
BEST_REDUCING_GAP = 3.0
# Side, in reduced pixels, of the tiles whose partly transparent blocks are
# averaged again with alpha weighting. 16x16 = 256 pixels keeps one mixed
# pixel visible after reduce() of the 0/255 mask (255 + 128) // 256 = 1.
ALPHA_TILE = 16
# Outputs are flushed to disk (fsync) and renamed by this many threads while
# the converting ones go on: concurrent fsyncs share one journal commit.
COMMITTERS = 4
# The files block's temporary outputs end in .tmp; those of versions before it in
# .changeImage.tmp (the longer first).
TEMPORARY_SUFFIXES = (".changeImage.tmp", ".tmp")
LIBRARY_OUTPUT_LIMIT = 64 << 10  # what libtiff may say in a run, read back for the log
# Every output carries this mark (a JPEG comment, PNG text, WEBP XMP or TIFF
# ImageDescription): made by changeImage.py, with these options (their digest), this
# size, so a re-run never takes a file it did not write (a supplier's 001.jpeg) for
# one. The same source and options give the same bytes: the same name in the store.
MARK = "fruit-catalog changeImage.py made-from-{digest} options={options} size={width}x{height}"
MARK_PATTERN = re.compile(
    r"fruit-catalog changeImage\.py"
    r" made-from-(?P<digest>sha256=[0-9a-f]{64}|xxh3-128=[0-9a-f]{32})"
    r" options=(?P<options>[0-9a-f]{16}) size=[0-9]+x[0-9]+"
)
# Older marks name the source's bytes: xxh3-128 (xxhash), or SHA-256 (the first
# marks, copies without xxhash); still read: current while the source has them.
FAST_DIGEST, PORTABLE_DIGEST = "xxh3-128", "sha256"
# New marks carry zeros there (not taken: see converted()): every older copy's pattern,
# the uploader's and run.py's too, needs it; an older changeImage.py converts again.
UNHASHED = f"{FAST_DIGEST}={'0' * 32}"
# The options' order in the first marks, which hashed a list of their values:
# those marks still read.
FIRST_TAG_FIELDS = (
    "size",
    "fit",
    "rotate",
    "background",
    "format",
    "quality",
    "reducing_gap",
    "suffix",
)
# Beside the mark, where the file system keeps extended attributes, the source
# file's identity when it was read (device, inode, size, mtime and ctime in ns:
# no unpacking, copy or touch keeps a ctime): an untouched source is skipped
# unread. Without it (lost, or never kept) the output is made again.
SOURCE_ATTRIBUTE = "user.fruit-catalog.source"
MARK_KEY = "fruit-catalog"  # the PNG text chunk's keyword
# Decoding a compressed image takes about 7 times as long as reading an
# uncompressed one of the same size (3000x2000: 70-90 ms against 11 ms).
COMPRESSED_WORK = 7
# EXIF orientations 5-8 are a quarter turn: width and height swap.
QUARTER_TURN_ORIENTATIONS = {5, 6, 7, 8}
# EXIF orientation -> the transpose that makes the image upright.
UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

log = logging.getLogger("changeImage")


@dataclass(frozen=True, kw_only=True)
class Options:
    """How outputs are made: built by keyword; its mark (options_tag) is by name."""

    size: tuple[int, int] = DEFAULT_SIZE
    fit: bool = False
    rotate: float = 0.0
    background: tuple[int, int, int] = (255, 255, 255)
    format: str = "JPEG"
    quality: int = DEFAULT_QUALITY
    reducing_gap: float = FAST_REDUCING_GAP
    suffix: str = ".jpeg"


class Made(NamedTuple):
    """What an output was made from, as its mark says (empty: never current)."""

    digest: str = ""  # UNHASHED, or an older mark's "<algorithm>=<hex>" of the source's bytes
    options: str = ""  # options_tag()
    source: str = ""  # source_identity() of the source file when it was read, if known


class Task(NamedTuple):
    source: Path
    root: Path
    target: Path
    work: int  # estimate_work() of the source
    made: Made = Made()  # what the output there was made from (empty with --force)


class Skip(StrEnum):
    """Why a file was not converted, as the summary says it (in this order)."""

    OUTPUTS = "earlier outputs"  # the file is an output of changeImage.py
    NOT_IMAGES = "not images"
    NOT_OURS = "not ours"  # a file it did not write, named as its own output: left as it is
    UP_TO_DATE = "up to date"


class Done(StrEnum):
    """What became of an image that was converted or tried."""

    CONVERTED = "converted"
    FAILED = "failed"


class OutputError(Exception):
    """An output could not be written (disk full, read-only...): our problem, not
    the supplier's, so the run stops. str() names the output and the cause."""


# -- values of the command line -----------------------------------------------


def parse_size(text: str) -> tuple[int, int]:
    """'600x400' -> (600, 400); each side a whole number from 1 to MAX_SIDE."""
    width, sep, height = text.lower().partition("x")
    side = number(1, MAX_SIDE, whole=True)
    with contextlib.suppress(argparse.ArgumentTypeError):
        if sep:
            return int(side(width)), int(side(height))
    raise argparse.ArgumentTypeError(
        f"expected WIDTHxHEIGHT like 600x400, each side from 1 to {MAX_SIDE}, got {text!r}"
    )


def parse_colour(text: str) -> tuple[int, int, int]:
    try:
        return ImageColor.getrgb(text)[:3]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a colour: {text!r}") from None


def parse_format(text: str) -> str:
    """'jpg' -> 'JPEG': the common spellings of the four output formats."""
    name = text.strip().upper()
    name = FORMAT_ALIASES.get(name, name)
    if name not in FORMATS:
        choices = ", ".join([*FORMATS, *FORMAT_ALIASES])
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {choices}")
    return name


def parse_suffix(text: str) -> str:
    """'' (no extension) or '.ext': never a path."""
    if text and (not text.startswith(".") or "/" in text or "\0" in text or text == "."):
        raise argparse.ArgumentTypeError(f"{text!r} is not '' or an extension like .jpg")
    return text


# -- pure functions -----------------------------------------------------------


def fitted_size(source: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """The largest size with the source's aspect ratio inside the box."""
    scale = min(box[0] / source[0], box[1] / source[1])
    return max(1, round(source[0] * scale)), max(1, round(source[1] * scale))


def output_size(source: tuple[int, int], options: Options) -> tuple[int, int]:
    """Final size of the output for a source of this (upright) size."""
    return fitted_size(source, options.size) if options.fit else options.size


def is_quarter_turn(degrees: float) -> bool:
    return degrees % 180 == 90


def target_path(source: Path, output_dir: Path | None, suffix: str) -> Path:
    folder = output_dir if output_dir is not None else source.parent
    return folder / (source.stem + suffix)


def profile_colour_space(icc: bytes | None) -> str:
    """The data colour space an ICC profile declares ('RGB', 'CMYK', 'GRAY'...)."""
    return icc[16:20].decode("ascii", "replace").strip() if icc and len(icc) >= 20 else ""


def summary(counts: Counter) -> str:
    """'converted 10, skipped 2 (not images), failed 1' (counts keyed by Skip and Done)."""
    reasons = [(kind.value, counts[kind]) for kind in Skip if counts[kind]]
    skipped = sum(n for _, n in reasons)
    if len(reasons) == 1:
        detail = f" ({reasons[0][0]})"
    elif reasons:
        detail = " (" + ", ".join(f"{n} {reason}" for reason, n in reasons) + ")"
    else:
        detail = ""
    converted, failed = counts[Done.CONVERTED], counts[Done.FAILED]
    return f"converted {converted}, skipped {skipped}{detail}, failed {failed}"


# -- image transformation -----------------------------------------------------


def sixteen_bit_to_8(image: Image.Image) -> Image.Image:
    """Scale 16-bit greyscale to 8 bits; Pillow's convert('L') would clip."""
    wide = image.convert("I")
    if image.mode == "I" and wide.getextrema()[1] <= 255:
        return wide.convert("L")
    return wide.point(lambda value: value * (1 / 256)).convert("L")


def cmyk_to_rgb(image: Image.Image) -> Image.Image:
    """Use the embedded CMYK profile when it is usable, else Pillow's formula."""
    icc = image.info.get("icc_profile")
    if profile_colour_space(icc) == "CMYK":
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(
                image, source, ImageCms.createProfile("sRGB"), outputMode="RGB"
            )
            converted.info["icc_profile"] = srgb_profile()
            return converted
        except (ImageCms.PyCMSError, OSError, ValueError) as error:
            about = getattr(WORKING_ON, "about", "") or "an image"  # convert_file's WorkingOn
            log.warning("%s: unusable CMYK profile (%s); converted without it", about, error)
    converted = image.convert("RGB")
    converted.info.pop("icc_profile", None)
    return converted


@functools.cache
def srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def resizable(image: Image.Image) -> Image.Image:
    """A mode that resizes with a proper filter and keeps transparency.

    Only the modes that need it are converted at full size; RGB, L, RGBA and
    LA go to the resize untouched and are made RGB once small."""
    mode = image.mode
    if mode in {"RGB", "L", "RGBA", "LA"}:
        return image
    if mode.startswith("I;16") or mode == "I":
        return sixteen_bit_to_8(image)
    if mode == "CMYK":
        return cmyk_to_rgb(image)
    if mode == "1":
        return image.convert("L")
    if mode in {"P", "PA"}:
        has_alpha = mode == "PA" or "transparency" in image.info
        return image.convert("RGBA" if has_alpha else "RGB")
    if mode == "La":
        return image.convert("LA")
    if mode == "RGBa":
        return image.convert("RGBA")
    return image.convert("RGB")


def box_reduce(image: Image.Image, factor: tuple[int, int]) -> Image.Image:
    """Box average of the stored values, alpha NOT weighted. Pillow's reduce()
    premultiplies an RGBA image at full size first (most of the time of a
    conversion); its core reduce does not."""
    image.load()
    return image._new(image.im.reduce(factor, (0, 0, *image.size)))


def alpha_weighted_reduce(image: Image.Image, factor: tuple[int, int]) -> Image.Image:
    """reduce() of an RGBA or LA image, with Pillow's full-size premultiply paid
    only where it changes the result.

    Where a block is all opaque (reduced alpha 255) or all transparent (0), the
    plain average is the alpha-weighted one (to within half a grey level: a few
    units of alpha can round away) or invisible once composited. Only tiles
    holding a partly transparent block are averaged again the weighted way."""
    small = box_reduce(image, factor)
    mixed = small.getchannel("A").point([0] + [255] * 254 + [0])
    for box in mixed_runs(mixed.reduce(ALPHA_TILE), small.size):
        full = (box[0] * factor[0], box[1] * factor[1])
        full += (min(box[2] * factor[0], image.width), min(box[3] * factor[1], image.height))
        small.paste(image.crop(full).reduce(factor), box[:2])
    return small


def mixed_runs(flags: Image.Image, size: tuple[int, int]) -> Iterator[tuple[int, int, int, int]]:
    """Boxes (in reduced pixels) of the horizontal runs of flagged tiles."""
    tile, data = ALPHA_TILE, flags.tobytes()
    for row in range(flags.height):
        line = data[row * flags.width : (row + 1) * flags.width]
        for run in re.finditer(rb"[^\x00]+", line):
            top = row * tile
            yield run.start() * tile, top, min(run.end() * tile, size[0]), min(top + tile, size[1])


def shrunk(image: Image.Image, size: tuple[int, int], gap: float) -> Image.Image:
    """Pillow's resize(size, LANCZOS, reducing_gap=gap), with the box-average
    stage done here for RGBA and LA so opaque areas skip the premultiply."""
    factor = (int(image.width / size[0] / gap) or 1, int(image.height / size[1] / gap) or 1)
    if image.mode not in {"RGBA", "LA"} or factor == (1, 1):
        return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=gap)
    small = alpha_weighted_reduce(image, factor)
    if small.size == size:
        return small
    box = (0, 0, image.width / factor[0], image.height / factor[1])
    return small.resize(size, Image.Resampling.LANCZOS, box=box)


def flatten(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """RGB, with any transparency composited on the background colour."""
    if image.mode in {"RGBA", "LA"}:
        alpha = image.getchannel("A")
        if alpha.getextrema() == (255, 255):
            return image.convert("RGB")
        canvas = Image.new("RGB", image.size, background)
        canvas.paste(image.convert("RGBA"), mask=alpha)
        return canvas
    return image if image.mode == "RGB" else image.convert("RGB")


def upright_image(image: Image.Image, orientation: int) -> Image.Image:
    return image.transpose(UPRIGHT[orientation]) if orientation in UPRIGHT else image


def rotate_clockwise(image: Image.Image, degrees: float) -> Image.Image:
    """Quarter turns are exact transposes; other angles expand the canvas."""
    turns = {
        90: Image.Transpose.ROTATE_270,
        180: Image.Transpose.ROTATE_180,
        270: Image.Transpose.ROTATE_90,
    }
    degrees %= 360
    if degrees == 0:
        return image
    if degrees in turns:
        return image.transpose(turns[degrees])
    return image.rotate(-degrees, resample=Image.Resampling.BICUBIC, expand=True)


def orientation_left_to_apply(image: Image.Image) -> int:
    """The EXIF orientation this script still has to apply.

    Pillow turns a TIFF upright itself while loading it, and drops the tag, so
    every image but a JPEG is loaded before asking. A JPEG is asked first: its
    draft needs the final size before the pixels are read."""
    if image.format != "JPEG":
        image.load()
    return image.getexif().get(0x0112, 1)


def convert_image(image: Image.Image, options: Options) -> Image.Image:
    """The catalog image for an opened source: oriented, resized, rotated, RGB."""
    orientation = orientation_left_to_apply(image)
    if options.rotate % 90:
        # An arbitrary angle changes the bounding box: rotate at full size, with
        # transparent corners that end up on the background colour.
        upright = upright_image(resizable(image), orientation).convert("RGBA")
        image = rotate_clockwise(upright, options.rotate)
        orientation, rotation = 1, 0.0
    else:
        rotation = options.rotate
    upright = image.size[::-1] if orientation in QUARTER_TURN_ORIENTATIONS else image.size
    turned = upright[::-1] if is_quarter_turn(rotation) else upright
    final = output_size(turned, options)
    # Resize before orienting: transposing the small image is the cheap order.
    before_turns = final[::-1] if is_quarter_turn(rotation) else final
    resize_to = before_turns[::-1] if orientation in QUARTER_TURN_ORIENTATIONS else before_turns
    if image.format == "JPEG":
        gap = max(options.reducing_gap, 1.0)
        image.draft(None, (int(resize_to[0] * gap), int(resize_to[1] * gap)))
    icc = image.info.get("icc_profile")
    prepared = resizable(image)
    small = shrunk(prepared, resize_to, options.reducing_gap)
    small = upright_image(small, orientation)
    small = rotate_clockwise(flatten(small, options.background), rotation)
    small.info["icc_profile"] = prepared.info.get("icc_profile", icc)
    return small


def output_profile(image: Image.Image, source: Path) -> bytes | None:
    """The image's RGB ICC profile when it is usable; a broken one is dropped
    with a warning (the pixels convert the plain way)."""
    icc = image.info.get("icc_profile")
    if not icc:
        return None
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except (ImageCms.PyCMSError, OSError, ValueError) as error:
        log.warning("%s: unusable ICC profile (%s); converted without it", source, error)
        return None
    return icc if profile.profile.xcolor_space.strip() == "RGB" else None


# -- files --------------------------------------------------------------------

PROC_FD = Path("/proc/self/fd")


class BadImage(Exception):
    """A file that claims to be an image but cannot be read."""


@contextlib.contextmanager
def image_in(file: BinaryIO) -> Iterator[Image.Image]:
    """The image in a checked delivery file. Pillow memory-maps an uncompressed
    image only when it is given a file name, so it gets /proc/self/fd/N: a name
    for the checked descriptor, which cannot be swapped for another file."""
    name = PROC_FD / str(file.fileno())
    with Image.open(name if PROC_FD.is_dir() else file) as image:
        merge_strips(image)
        yield inflated(image, file.fileno()) or image


def describe_error(error: Exception) -> str:
    if isinstance(error, Image.DecompressionBombError | Image.DecompressionBombWarning):
        return f"larger than the decompression-bomb limit ({error})"
    if isinstance(error, Image.UnidentifiedImageError):
        return "not a readable image (corrupt or unsupported format)"
    text = str(error) or type(error).__name__
    return (
        f"corrupt or truncated image ({text})" if isinstance(error, OSError | SyntaxError) else text
    )


@functools.cache
def image_extensions() -> frozenset[str]:
    # Loads every Pillow plugin: only when a file fails to open, not at start-up.
    return frozenset(Image.registered_extensions())


def estimate_work(image: Image.Image) -> int:
    """Roughly how long converting an opened image takes: its pixels, weighted
    when they must be decoded."""
    compressed = any(tile.codec_name != "raw" for tile in getattr(image, "tile", []))
    return image.width * image.height * (COMPRESSED_WORK if compressed else 1)


def image_work(path: Path, root: Path) -> int | None:
    """estimate_work() of a readable image, None for a non-image; BadImage
    otherwise and RefusedFile for a file that is not read at all."""
    with open_delivery_file(path, root, IMAGE_LIMIT) as file:
        if os.fstat(file.fileno()).st_size == 0:
            raise BadImage("empty file (0 bytes)")
        try:
            with Image.open(file) as image:
                return estimate_work(image)
        except Image.UnidentifiedImageError:
            if path.suffix.lower() in image_extensions():
                raise BadImage("not a readable image (corrupt or unsupported format)") from None
            return None
        except Exception as error:  # a bad header fails only this file
            raise BadImage(describe_error(error)) from error


@functools.cache
def file_mode() -> int:
    """Permissions of a normal new file (mkstemp creates 0600). Cached: the
    umask can only be read by setting it, which threads must not race."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def short_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@functools.cache
def options_tag(options: Options) -> str:
    """The options' digest in new marks: by name, so no field's place counts."""
    return short_digest(json.dumps(asdict(options), sort_keys=True))


@functools.cache
def options_tags(options: Options) -> frozenset[str]:
    """The options digests that an output made with these options carries: this
    version's, or the first marks' (which took --fit as argparse left it: None
    when not given)."""
    values = asdict(options) | {"fit": options.fit or None}
    first = json.dumps([values[name] for name in FIRST_TAG_FIELDS])
    return frozenset({options_tag(options), short_digest(first)})


def source_identity(info: os.stat_result) -> str:
    return f"{info.st_dev}:{info.st_ino}:{info.st_size}:{info.st_mtime_ns}:{info.st_ctime_ns}"


@functools.cache
def xxh3_128() -> Callable[[Any], str] | None:
    """xxhash's xxh3_128_hexdigest where the package is installed; imported on
    first use, as only checking an older mark needs it."""
    try:
        from xxhash import xxh3_128_hexdigest
    except ImportError:
        return None
    return xxh3_128_hexdigest


def sha256_hexdigest(data: Any) -> str:
    return hashlib.sha256(data).hexdigest()


def file_digest(fd: int, algorithm: str) -> str:
    """'<algorithm>=<hex>' of a file's bytes, read through its checked descriptor
    (mapped: no copy); "" when this copy cannot take that algorithm (an xxh3-128
    mark where xxhash is missing)."""
    if os.fstat(fd).st_size == 0:
        return digest_of(b"", algorithm)
    with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mapped:
        return digest_of(mapped, algorithm)


def digest_of(data: Any, algorithm: str) -> str:
    """'<algorithm>=<hex>' of bytes (or a mapping); "" when this copy cannot take it."""
    hexdigest = {FAST_DIGEST: xxh3_128(), PORTABLE_DIGEST: sha256_hexdigest}.get(algorithm)
    return f"{algorithm}={hexdigest(data)}" if hexdigest else ""


def is_fresh(fd: int, options: Options, output: Made) -> bool:
    """Whether `output` (an output's mark) says it was made from this source with
    these options: the same options, and the very file it was made from untouched
    since (same identity, ctime included), or else, for an older mark naming the
    source's digest, the same bytes (hashed, with the mark's algorithm). A mark of
    this version (UNHASHED) without that identity is not: the output is made
    again, to the same bytes when the source's are the same."""
    if output.options not in options_tags(options):
        return False
    if output.source != "" and output.source == source_identity(os.fstat(fd)):
        return True
    if output.digest == UNHASHED:
        return False
    algorithm = output.digest.partition("=")[0]
    return file_digest(fd, algorithm) == output.digest


def mark_params(text: str, image_format: str) -> dict:
    """Pillow's save parameters that put the mark into an output of that format."""
    if image_format == "JPEG":
        return {"comment": text}
    if image_format == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_text(MARK_KEY, text)
        return {"pnginfo": info}
    if image_format == "WEBP":
        return {"xmp": text.encode()}
    return {"description": text}  # TIFF


def output_made(target: Path) -> Made | None:
    """What the mark of an output changeImage.py wrote says; an empty Made for one
    of ours that is not whole (a JPEG cut short); None for a file it did not write."""
    try:
        with Image.open(target) as image:
            found = [image.info.get(k) for k in ("comment", "xmp", MARK_KEY)]
            if isinstance(image, TiffImagePlugin.TiffImageFile):
                found.append(image.tag_v2.get(270))
            image_format = image.format
    except Exception:  # unreadable, or not an image: certainly not ours
        return None
    for value in found:
        text = value.decode("latin-1") if isinstance(value, bytes) else str(value or "")
        match = MARK_PATTERN.search(text)
        if match and (image_format != "JPEG" or whole_jpeg(target)):
            return Made(
                match["digest"], match["options"], source_attribute(target, match["digest"])
            )
        if match:
            return Made()
    return None


def source_attribute(target: Path, digest: str) -> str:
    """The identity of the source the output was made from, kept as an attribute
    of the output; "" unless the output is still the very file written then (same
    size and mtime, a mark naming the same digest): an output overwritten in place
    keeps its attributes, and must not pass for one of this source. New marks all
    carry UNHASHED: the size and mtime (ns) alone tell another output of ours
    copied over it."""
    try:
        kept = os.getxattr(target, SOURCE_ATTRIBUTE).decode("ascii", "replace")
        info = target.stat()
    except OSError:
        return ""
    source, _, written = kept.rpartition(f" {digest} ")
    return source if written == f"{info.st_size}:{info.st_mtime_ns}" else ""


def whole_jpeg(path: Path) -> bool:
    """Whether the JPEG output at path is one the uploader takes: walked with the
    uploader's own walk (marker headers only) to its end marker, nothing after
    it, of the size its mark gives. A mere FF D9 at the end is not enough: an
    output with bytes appended (even a second copy of itself) ends so too."""
    with path.open("rb") as file:
        size = os.fstat(file.fileno()).st_size
        return size <= IMAGE_LIMIT and unusable_jpeg(file.read(size + 1), path) is None


def encoded(image: Image.Image, options: Options, source: Path, made: Made) -> bytes:
    mark = MARK.format(
        digest=made.digest, options=made.options, width=image.width, height=image.height
    )
    params: dict = mark_params(mark, options.format)
    icc = output_profile(image, source)
    if icc:
        params["icc_profile"] = icc
    if options.format in {"JPEG", "WEBP"}:
        params["quality"] = options.quality
    buffer = io.BytesIO()
    image.save(buffer, options.format, **params)
    return buffer.getvalue()


def cannot_write(target: Path, error: OSError) -> OutputError:
    return OutputError(f"cannot write {target}: {error.strerror or error}")


def commit(data: bytes, made: Made, target: Path) -> None:
    """Write the output whole (the files block: a temporary beside it, flushed to
    disk, renamed over it: after a kill, a crash or a power cut the target is the
    old file or the whole new one), then keep what it was made from beside it."""
    try:
        write_atomically(target, data, mode=file_mode())
    except OSError as error:
        raise cannot_write(target, error) from None
    keep_source_identity(target, made)


def keep_source_identity(target: Path, made: Made) -> None:
    """The source's identity, the mark's digest and the output's size and mtime as
    an attribute of the output, where the file system keeps one (source_attribute
    reads it): a re-run then skips an untouched source without reading it. Where
    none is kept (check_writable says so), every run converts it again."""
    with contextlib.suppress(OSError):  # none kept: converted again next run
        written = os.stat(target, follow_symlinks=False)
        kept = f"{made.source} {made.digest} {written.st_size}:{written.st_mtime_ns}"
        os.setxattr(target, SOURCE_ATTRIBUTE, kept.encode(), follow_symlinks=False)


def converted(file: BinaryIO, options: Options, source: Path, identity: str) -> tuple[bytes, Made]:
    """A conversion, and what it was made from: these options, and the source
    file of that identity (taken before it was read, so a file changed while it
    is read is converted again next run). Its bytes are read by the decoder
    only: hashing them too was a second pass over 14-24 MB of memory per photo,
    which no free core hides when all convert (README: Speed; UNHASHED)."""
    made = Made(UNHASHED, options_tag(options), identity)
    with image_in(file) as image:
        converted = convert_image(image, options)
    return encoded(converted, options, source, made), made


def convert_file(task: Task, options: Options) -> tuple[bytes, Made] | str | None:
    """Convert one file: the output's bytes and what they were made from; None
    when the output there is current (is_fresh); the reason of the failure when
    the source cannot be converted."""
    try:
        with open_delivery_file(task.source, task.root, IMAGE_LIMIT) as file:
            identity = source_identity(os.fstat(file.fileno()))  # before it is read
            # An output of ours is there: is it current?
            if task.made.digest and is_fresh(file.fileno(), options, task.made):
                if task.made.source != identity:  # an older mark, same bytes: next time unread
                    keep_source_identity(task.target, task.made._replace(source=identity))
                return None
            if task.made.digest == UNHASHED and task.made.options in options_tags(options):
                # -v says why an output of ours with these options is made again
                log.debug(
                    "%s is not the file %s was made from (new, copied or touched): converted again",
                    task.source,
                    task.target,
                )
            data, made = converted(file, options, task.source, identity)
    except RefusedFile as error:
        return str(error)
    except Exception as error:  # any decoder error fails only this file
        return f"{task.source}: {describe_error(error)}"
    return data, made


def sync_folders(folders: set[Path]) -> None:
    """Make the renames durable: one fsync per output folder, at the end."""
    for folder in folders:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        except OSError as error:
            raise cannot_write(folder, error) from None
        finally:
            os.close(fd)


def check_writable(folder: Path) -> None:
    """Fail before converting anything when a folder cannot take outputs; say it
    when its file system keeps no extended attributes (NFS without them, ramfs):
    its outputs keep no source identity, so every run converts them again."""
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".changeImage-probe-") as probe:
            try:
                os.setxattr(probe.fileno(), SOURCE_ATTRIBUTE, b"")
            except OSError:
                log.info("%s keeps no extended attributes: every run converts again", folder)
    except OSError as error:
        raise cannot_write(folder, error) from None


def remove_stale_temporaries(targets: list[Path]) -> None:
    """Temporary outputs a killed run left behind (only this run's names: the
    delivery lock is held, but another delivery may share an output folder)."""
    by_folder: dict[Path, set[str]] = {}
    for target in targets:
        by_folder.setdefault(target.parent, set()).add(target.name)
    for folder, names in by_folder.items():
        for entry in folder.iterdir():
            if temporary_of(entry.name) in names:
                log.debug("removed %s, left by an interrupted run", entry)
                entry.unlink(missing_ok=True)


def temporary_of(name: str) -> str:
    """The output whose temporary file this is ('.001.jpeg.x7Tq2.tmp' -> '001.jpeg'),
    else ''. Versions before the files block named them '.001.jpeg.x7Tq2.changeImage.tmp'."""
    for suffix in TEMPORARY_SUFFIXES:
        if name.startswith(".") and name.endswith(suffix):
            return name[1 : -len(suffix)].rpartition(".")[0]
    return ""


# -- TIFF strips, read faster: mapped as one block, or inflated with libdeflate --

# Bytes per pixel of the uncompressed TIFF layouts whose strips can be merged.
RAW_BYTES = {"RGBA": 4, "RGB": 3, "L": 1}
# TIFF tags read to take the deflate fast path, and its limits: the compression
# values of deflate (Adobe's, and the old one), and the photometric value of
# each mode Pillow takes the inflated bytes as without copying them (it keeps RGB
# and LA 4 bytes a pixel: a second full-size image). Over MAX_STRIPS (1-row strips
# of a 65,536-row image), or with strips under MIN_STRIP_BYTES, libtiff's C loop
# beats a Python one.
WIDTH, LENGTH, BITS_PER_SAMPLE, COMPRESSION, PHOTOMETRIC = 256, 257, 258, 259, 262
FILL_ORDER, STRIP_OFFSETS, ORIENTATION, SAMPLES_PER_PIXEL = 266, 273, 274, 277
ROWS_PER_STRIP, STRIP_BYTE_COUNTS, PLANAR, PREDICTOR = 278, 279, 284, 317
EXTRA_SAMPLES, SAMPLE_FORMAT = 338, 339
SINGLE_VALUED = (WIDTH, LENGTH, COMPRESSION, PHOTOMETRIC, FILL_ORDER, ORIENTATION)
SINGLE_VALUED += (SAMPLES_PER_PIXEL, ROWS_PER_STRIP, PLANAR, PREDICTOR)
DEFLATE_COMPRESSIONS = {8, 32946}
PHOTOMETRIC_OF = {"L": 1, "RGBA": 2, "CMYK": 5}
MAX_STRIPS = 65_536
MIN_STRIP_BYTES = 8 << 10
# Bytes of the field types libtiff reads those tags from: SHORT, LONG.
INTEGER_FIELDS = {3: 2, 4: 4}
# Tags that only describe the image (sub-file type, names, resolution, page,
# software, dates, artist, copyright, IPTC, Photoshop, ICC profile): the fast
# path takes a file whose first IFD holds nothing but these and the ones it
# reads. Any other (tiles, sample ranges, EXIF or GPS pointers, XMP, which can
# hold an orientation Pillow applies while loading) is libtiff's and Pillow's.
DESCRIPTIVE_TAGS = {254, 255, 269, 270, 271, 272, 282, 283, 285, 296, 297, 305, 306, 315}
DESCRIPTIVE_TAGS |= {316, 33432, 33723, 34377, 34675}


def merge_strips(image: Image.Image) -> None:
    """Uncompressed strips stored back to back, top to bottom, become one tile:
    Pillow then maps the file instead of reading the strips one by one in a
    Python loop (400 of them for a 3000x2000 RGBA TIFF in 64 KB strips)."""
    tiles = getattr(image, "tile", [])
    if image.format != "TIFF" or len(tiles) < 2:
        return
    first = tiles[0]
    row = image.width * RAW_BYTES.get(first.args[0], 0)
    for tile in tiles:
        top, bottom = tile.extents[1], tile.extents[3]
        if (
            row == 0
            or (tile.codec_name, tile.args) != ("raw", first.args)
            or tile.args[1:] != (0, 1)
            or tile.extents != (0, top, image.width, bottom)
            or tile.offset != first.offset + top * row
        ):
            return
    if first.extents[1] == 0 and tiles[-1].extents[3] == image.height:
        image.tile = [first._replace(extents=(0, 0, *image.size))]


@functools.cache
def libdeflate() -> Any:
    """The deflate package (libdeflate), which inflates the strips of a deflate
    TIFF faster than the zlib Pillow's libtiff calls (README: Speed); None
    where it is not installed: Pillow reads them, to the same pixels. Imported
    on first use: the lab's uncompressed TIFFs never need it."""
    try:
        import deflate
    except ImportError:
        return None
    # A release before 0.5, or a folder named deflate beside a copy, lacks these.
    if not all(hasattr(deflate, name) for name in ("zlib_decompress", "DeflateError")):
        return None
    return deflate


def tag_values(tags: TiffImagePlugin.ImageFileDirectory_v2, tag: int, default: tuple) -> tuple:
    value = tags.get(tag, default)
    return value if isinstance(value, tuple) else (value,)


def deflate_strips(image: Image.Image) -> list[tuple[int, int, int]] | None:
    """(offset, byte count, rows) of each strip of a TIFF libdeflate can inflate
    into exactly the pixels libtiff gives: deflate, no predictor, one 8-bit
    sample per band, stored the way Pillow reads the mode, in chunky strips,
    upright. None for anything else: Pillow reads it."""
    tiles = getattr(image, "tile", [])
    if image.format != "TIFF" or len(tiles) != 1 or libdeflate() is None:
        return None
    tags, (width, height) = image.tag_v2, image.size
    if (
        tiles[0].codec_name != "libtiff"
        or tiles[0].extents != (0, 0, width, height)
        or tiles[0].args[:1] != (image.mode,)
        or tags.get(PHOTOMETRIC) != PHOTOMETRIC_OF.get(image.mode)
        or tags.get(COMPRESSION) not in DEFLATE_COMPRESSIONS
        or tags.get(SAMPLES_PER_PIXEL, 1) != len(image.getbands())
        or set(tag_values(tags, BITS_PER_SAMPLE, ())) != {8}
        or set(tag_values(tags, SAMPLE_FORMAT, (1,))) != {1}
        or any(tags.get(tag, 1) != 1 for tag in (PREDICTOR, PLANAR, FILL_ORDER, ORIENTATION))
    ):
        return None
    per_strip = tags.get(ROWS_PER_STRIP, height)
    offsets = tag_values(tags, STRIP_OFFSETS, ())
    counts = tag_values(tags, STRIP_BYTE_COUNTS, ())
    if not isinstance(per_strip, int) or per_strip < 1:
        return None
    per_strip = min(per_strip, height)
    if per_strip < height and width * len(image.getbands()) * per_strip < MIN_STRIP_BYTES:
        return None
    strips = -(-height // per_strip)
    if not 0 < strips <= MAX_STRIPS or len(offsets) != strips or len(counts) != strips:
        return None
    if not all(isinstance(value, int) and value >= 0 for value in offsets + counts):
        return None
    rows = [min(per_strip, height - top) for top in range(0, height, per_strip)]
    return list(zip(offsets, counts, rows, strict=True))


def stored_fields(fd: int, size: int) -> dict[int, list[tuple[int, int, int]]] | None:
    """(type, count, bytes past the end of the file) of each entry of the first
    IFD of a classic TIFF, by tag, as stored: Pillow drops empty entries and
    entries whose values are cut off, and keeps the first of two. None for
    anything else (a BigTIFF goes to Pillow)."""
    header = os.pread(fd, 8, 0)
    order = {b"II*\x00": "<", b"MM\x00*": ">"}.get(header[:4])
    if order is None or len(header) < 8:
        return None
    offset = struct.unpack_from(order + "I", header, 4)[0]
    head = os.pread(fd, 2, offset)
    entries = struct.unpack(order + "H", head)[0] if len(head) == 2 else 0
    table = os.pread(fd, entries * 12, offset + 2)
    if not entries or len(table) < entries * 12:
        return None
    fields: dict[int, list[tuple[int, int, int]]] = {}
    for tag, kind, count, value in struct.iter_unpack(order + "HHII", table):
        length = count * INTEGER_FIELDS.get(kind, 0)
        past_end = max(0, value + length - size) if length > 4 else 0
        fields.setdefault(tag, []).append((kind, count, past_end))
    return fields


def stored_as_libtiff_reads(fd: int, size: int, mode: str, strips: int) -> bool:
    """Whether the first IFD holds only the tags deflate_strips() reads, each
    stored once, as integers, as many as libtiff needs, within the file, and
    DESCRIPTIVE_TAGS. Pillow is more lenient (it keeps the first of too many
    values, takes fractions, drops what it cannot read, and reads strips
    where libtiff would take tiles): libtiff refuses or reads such a file
    otherwise."""
    fields = stored_fields(fd, size)
    if fields is None:
        return False
    samples = len(mode)
    wanted = dict.fromkeys(SINGLE_VALUED, 1) | {
        BITS_PER_SAMPLE: samples,
        SAMPLE_FORMAT: samples,
        EXTRA_SAMPLES: 1 if mode in {"LA", "RGBA"} else 0,
        STRIP_OFFSETS: strips,
        STRIP_BYTE_COUNTS: strips,
    }
    if not fields.keys() <= wanted.keys() | DESCRIPTIVE_TAGS:
        return False
    for tag, count in wanted.items():
        stored = fields.get(tag, [])
        if len(stored) > 1:
            return False
        if stored and (stored[0][0] not in INTEGER_FIELDS or stored[0][1:] != (count, 0)):
            return False
    return True


def inflated(image: Image.Image, fd: int) -> Image.Image | None:
    """The pixels of a deflate TIFF inflated with libdeflate; None when
    deflate_strips() refuses it or a strip is not exactly what its tags say
    (then Pillow reads it, and reports what is wrong)."""
    strips = deflate_strips(image)
    if strips is None:
        return None
    size, mode = os.fstat(fd).st_size, image.mode
    if not stored_as_libtiff_reads(fd, size, mode, len(strips)):
        return None
    # Strips of a real file do not overlap: what is read stays within the file once.
    if sum(count for _, count, _ in strips) > size or any(o + c > size for o, c, _ in strips):
        return None
    pixels = inflated_strips(fd, strips, image.width * len(mode))
    if pixels is None:
        return None
    canvas = Image.frombuffer(mode, image.size, pixels, "raw", mode, 0, 1)
    canvas.info.update(image.info)
    return canvas


def inflated_strips(fd: int, strips: list[tuple[int, int, int]], row: int) -> bytearray | None:
    """The strips inflated one after the other into one buffer; None when one is
    not deflate data or not as many rows as its tags say."""
    inflate, pixels, at = libdeflate(), bytearray(row * sum(s[2] for s in strips)), 0
    for offset, count, rows in strips:
        try:
            strip = inflate.zlib_decompress(os.pread(fd, count, offset), row * rows)
        except inflate.DeflateError:
            return None
        if len(strip) != row * rows:
            return None
        pixels[at : at + len(strip)] = strip
        at += len(strip)
    return pixels


# -- planning -----------------------------------------------------------------


def list_sources(paths: list[Path]) -> list[tuple[Path, Path]]:
    """(file, root) pairs: every entry of each folder that is not a folder, and
    each file given. Checks are made against root (the folder given)."""
    sources: list[tuple[Path, Path]] = []
    for path in paths:
        if path.is_dir():
            sources.extend((p, path) for p in sorted(path.iterdir()) if not os.path.isdir(p))
        else:
            sources.append((path, path.parent))
    return sources


def without_files(paths: list[Path]) -> list[Path]:
    """The folders given that hold nothing but folders and hidden files (as our lock):
    an empty delivery, or the wrong folder. A FIFO or a dangling link is a file here:
    the run then says what is wrong with it."""
    return [
        path
        for path in paths
        if path.is_dir()
        and not any(
            not os.path.isdir(entry) and not entry.name.startswith(".") for entry in path.iterdir()
        )
    ]


def identify(source: Path, root: Path, counts: Counter) -> int | None:
    """image_work() of an image to convert; None, logged and counted, otherwise."""
    if source.name.startswith("."):
        log.info("skipped %s: hidden file", source)
        counts[Skip.NOT_IMAGES] += 1
        return None
    try:
        with WorkingOn(source):  # the header's warnings name the file too
            work = image_work(source, root)
        if work is not None:
            return work
        log.info("skipped %s: not an image", source)
        counts[Skip.NOT_IMAGES] += 1
    except RefusedFile as error:
        log.error("%s", error)
        counts[Done.FAILED] += 1
    except BadImage as error:
        log.error("%s: %s", source, error)
        counts[Done.FAILED] += 1
    return None


def plan(
    sources: list[tuple[Path, Path]],
    output_dir: Path | None,
    options: Options,
    counts: Counter,
    *,
    force: bool = False,
    replace_unmarked: bool = False,
) -> tuple[list[Task], list[Path]]:
    """Decide each file's fate, logging every skip and failure once. Returns the
    tasks, and every target this run owns (done or to do)."""
    claimed: dict[Path, Path] = {}
    tasks: list[Task] = []
    own_outputs: list[tuple[Path, Path]] = []  # files whose output would be themselves
    for source, root in sources:
        work = identify(source, root, counts)
        if work is None:
            continue
        target = target_path(source, output_dir, options.suffix)
        if target.resolve() == source.resolve():
            own_outputs.append((source, root))
            continue
        if target in claimed:
            log.error("%s: same output %s as %s; not converted", source, target, claimed[target])
            counts[Done.FAILED] += 1
            continue
        claimed[target] = source
        made = output_there(source, target, replace_unmarked)
        if isinstance(made, str):
            log.error("%s", made)
            counts[Done.FAILED] += 1
            continue
        tasks.append(Task(source, root, target, work, Made() if force else made))
    for path, root in own_outputs:
        counts[own_output_kind(path, root, claimed, replace_unmarked)] += 1
    return tasks, list(claimed)


def output_there(source: Path, target: Path, replace_unmarked: bool) -> Made | str:
    """What the output at target was made from, as its mark says (an empty Made:
    nothing there, one of ours to make again, or a file without a mark to convert
    over with --replace-unmarked); else why it is not replaced."""
    try:
        mode = target.lstat().st_mode
    except FileNotFoundError:
        return Made()
    except OSError as error:
        return f"{source}: cannot read {target}: {error.strerror}; not replaced"
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        return f"{source}: {target} is {file_kind(mode)}; not replaced"
    made = output_made(target)
    if made is not None:
        return made
    return Made() if replace_unmarked else earlier_attempt(target, source)


def own_output_kind(
    path: Path, root: Path, claimed: dict[Path, Path], replace_unmarked: bool
) -> Skip | Done:
    """Why a file whose output would be itself (001.jpeg) is skipped: it is an
    output (of ours, or one --replace-unmarked converts over), else not ours;
    failed when it is the supplier's own photo under the catalog's name with no
    source beside it (the uploader would refuse it: the error says the way out)."""
    source = claimed.get(path)
    if output_made(path) is not None or (source and replace_unmarked):
        log.debug("skipped %s: it is already the output", path)
        return Skip.OUTPUTS
    if source is not None:  # the error about its source names it already
        return Skip.NOT_OURS
    photo = supplier_photo(path, root)
    if photo:
        log.error("%s", photo)
        return Done.FAILED
    log.info("skipped %s: not made by changeImage.py; left as it is", path)
    return Skip.NOT_OURS


def supplier_photo(path: Path, root: Path) -> str:
    """The catalog jpeg block's message for a supplier's photo named like a
    catalog JPEG (009.jpeg, 640x480, no 009.tiff beside it), else ""."""
    try:
        content = read_delivery_file(path, root, IMAGE_LIMIT)
    except RefusedFile:
        return ""  # identify() read it a moment ago: gone or changed, left to the next run
    unusable = unusable_jpeg(content, path)
    return unusable.text if unusable and unusable.cause == PHOTO else ""


def is_current(task: Task, options: Options) -> bool:
    """Whether the output there was made from the source's bytes with these options."""
    if not task.made.options:
        return False
    with open_delivery_file(task.source, task.root, IMAGE_LIMIT) as file:
        return is_fresh(file.fileno(), options, task.made)


# -- running ------------------------------------------------------------------


def run_tasks(
    tasks: list[Task], options: Options, jobs: int, counts: Counter, progress: Progress
) -> None:
    """Convert in `jobs` threads while COMMITTERS threads flush and rename the
    outputs. OutputError, once the work in progress has ended, when an output
    cannot be written."""
    # Threads, not processes: Pillow releases the GIL while decoding, reducing
    # and encoding, so threads scale like processes without pickling images.
    committers = ThreadPoolExecutor(COMMITTERS, thread_name_prefix="commit")
    converters = ThreadPoolExecutor(jobs, thread_name_prefix="convert")

    def convert_and_commit(task: Task) -> Future | str | None:
        with WorkingOn(task.source):
            outcome = convert_file(task, options)
        return (
            outcome
            if outcome is None or isinstance(outcome, str)
            else committers.submit(commit, *outcome, task.target)
        )

    futures: dict[Task, Future] = {}
    reported: set[Task] = set()
    try:
        # The longest first, so that no thread is left alone with a long one at
        # the end; outcomes are reported in the tasks' order all the same.
        for task in sorted(tasks, key=lambda task: task.work, reverse=True):
            futures[task] = converters.submit(convert_and_commit, task)
        for task in tasks:
            # Waking every SIGNAL_CHECK s: the first task's image may be converted last.
            report(task, result_of(futures[task]), reported)
            progress.advance()
    finally:
        # On Ctrl-C or a write error, images in progress finish (and are renamed
        # whole, or their temporary removed); the rest never start.
        converters.shutdown(wait=True, cancel_futures=True)
        committers.shutdown(wait=True)
        progress.close()
        count_outcomes(tasks, futures, reported, counts)
    sync_folders({task.target.parent for task in tasks})


def report(task: Task, outcome: Future | str | None, reported: set[Task]) -> None:
    """Log one task's outcome; OutputError when its output could not be written."""
    if outcome is None:
        log.debug("skipped %s: %s is up to date", task.source, task.target)
    elif isinstance(outcome, str):
        log.error("%s", outcome)
    else:
        result_of(outcome)
        log.debug("converted %s -> %s", task.source, task.target)
    reported.add(task)


def count_outcomes(
    tasks: list[Task], futures: dict[Task, Future], reported: set[Task], counts: Counter
) -> None:
    """Count what the tasks came to once the threads have stopped, so that after
    Ctrl-C or a write error the images that finished while an earlier one was
    awaited count (and are reported, in the tasks' order) too."""
    for task in tasks:
        future = futures.get(task)
        if future is None or not future.done() or future.cancelled() or future.exception():
            continue
        outcome = future.result()
        if isinstance(outcome, Future) and (not outcome.done() or outcome.exception()):
            continue
        if task not in reported:
            report(task, outcome, reported)
        kind = Skip.UP_TO_DATE if outcome is None else Done.CONVERTED
        counts[Done.FAILED if isinstance(outcome, str) else kind] += 1


# mallopt() parameters from glibc's malloc.h, and the largest mmap threshold
# glibc accepts on 64-bit systems.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
TRIM_THRESHOLD = 256 * 1024 * 1024


def glibc() -> bool:
    # os.confstr, not platform.libc_ver: importing platform costs more start-up.
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError):
        return False


def tune_allocator() -> None:
    """Keep freed image buffers in the process instead of unmapping them.

    glibc serves a 24 MB image buffer with mmap and hands it back to the
    kernel when freed, so every image pays its page faults again. Raising the
    mmap and trim thresholds keeps that memory for reuse; the peak stays the
    same."""
    if not glibc():
        return
    libc = ctypes.CDLL(None)  # this process's libc: no ldconfig search
    libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)
    libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)


@contextlib.contextmanager
def bomb_limit(max_pixels: int) -> Iterator[None]:
    """Refuse images over max_pixels for the duration (Pillow's limit is global)."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            # Pillow only warns between one and two times the limit; refuse those too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


# -- command line -------------------------------------------------------------


def default_images_dir() -> Path:
    return supplier_data() / "images"


def suffix_from_env() -> str | None:
    """IMAGE_SUFFIX; set and empty means no extension (unlike other variables,
    empty is a value here: the icon job's outputs have none)."""
    if "IMAGE_SUFFIX" not in os.environ:
        return None
    return parse_suffix(os.environ["IMAGE_SUFFIX"])


EPILOG = """Environment: SUPPLIER_DATA (default ~/supplier-data; images in its
images/), and the variable in [brackets] after each option. An IMAGE_SUFFIX
that is set but empty means no extension, as --suffix ''."""


# --- begin shared block: cli (from blocks/cli.py; make blocks) ---
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
UNSET = object()  # the default of an option not given on the command line
STOPPING = shared("STOPPING", threading.Event())  # the first stop signal: no new request, no retry


def number(low: float, high: float, *, whole: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = int(text) if whole else float(text)
        except ValueError:
            kind = "a whole number" if whole else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"{text!r} is not from {low:g} to {high:g}")
        return value

    parse.__name__ = "whole number" if whole else "number"
    return parse


def from_env(parser: argparse.ArgumentParser, name: str, parse: Callable, default: object):
    text = os.environ.get(name, "")
    if not text.strip():
        return default
    try:
        return parse(text)
    except (argparse.ArgumentTypeError, ValueError) as error:
        parser.error(f"environment variable {name}: {error}")


@dataclass(frozen=True)
class Option:
    flags: str
    help: str
    env: str = ""
    default: Any = None
    type: Callable[[str], Any] | None = None
    metavar: str | None = None
    action: str | None = None
    shown: str | None = None
    nargs: str | None = None
    split: str | None = None

    def default_text(self) -> str:
        if self.shown is not None:
            return self.shown
        if self.default is None or self.action == "store_true" or callable(self.default):
            return ""
        return f"{self.default:g}" if isinstance(self.default, float) else str(self.default)

    def add_to(self, parser: argparse.ArgumentParser) -> argparse.Action:
        shown, names = self.default_text(), self.flags.split()
        extra = [f"default {shown}"] if shown else []
        help = " ".join([self.help, *(f"({text})" for text in extra)])
        help += f" [{self.env}]" if self.env else ""
        keywords: dict[str, Any] = {"help": help.replace("%", "%%")}
        for name in ("type", "metavar", "action", "nargs"):
            if getattr(self, name) is not None:
                keywords[name] = getattr(self, name)
        if self.action == "version":
            keywords["version"] = f"%(prog)s {__version__}"
        else:
            keywords["default"] = None if self.action == "append" else UNSET
        action = parser.add_argument(*names, **keywords)
        action.option = self  # type: ignore[attr-defined]
        return action

    def initial(self, parser: argparse.ArgumentParser) -> Any:
        value = self.from_variable_or_default(parser)
        if isinstance(value, str) and self.type is not None and value is self.default:
            return self.type(value)
        return value

    def from_variable_or_default(self, parser: argparse.ArgumentParser) -> Any:
        if callable(self.default):
            try:
                return self.default()
            except (argparse.ArgumentTypeError, ValueError) as error:
                parser.error(f"environment variable {self.env}: {error}")
        if not self.env or self.action in ("store_true", "version"):
            return self.default
        if self.action == "append":
            parse = self.type or str

            def several(text: str) -> list:
                return [parse(item) for item in text.split(self.split) if item.strip()]

            return from_env(parser, self.env, several, self.default)
        return from_env(parser, self.env, self.type or str, self.default)


STANDARD_OPTIONS = (
    Option("-q --quiet", "print only errors", action="store_true"),
    Option("-v --verbose", "print each step (never library internals)", action="store_true"),
    Option("-V --version", "show the version and exit", action="version"),
)


def build_parser(
    doc: str | None,
    options: Sequence[Option],
    parser_class: type[argparse.ArgumentParser] = argparse.ArgumentParser,
    epilog: str | None = None,
) -> argparse.ArgumentParser:
    class OptionParser(parser_class):  # type: ignore[valid-type, misc]
        def parse_known_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def]
            known, rest = super().parse_known_args(args, namespace)
            if missing_packages():  # only now: --help and -V work without the packages
                self.exit(2, f"{missing_packages()[0]}\n")
            self.not_given = set()
            for action in self._actions:
                option, value = getattr(action, "option", None), getattr(known, action.dest, None)
                if value is UNSET or (value is None and option and option.action == "append"):
                    self.not_given.add(action.dest)
                    setattr(known, action.dest, option.initial(self))
            return known, rest

    parser = OptionParser(
        description=doc, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for option in [*options, *STANDARD_OPTIONS]:
        option.add_to(parser)
    return parser


WORKING_ON = threading.local()  # the file this thread works on, named in its warnings


class WorkingOn:
    def __init__(self, about: object) -> None:
        self.about = str(about)

    def __enter__(self) -> None:
        self.outer, WORKING_ON.about = getattr(WORKING_ON, "about", ""), self.about

    def __exit__(self, *exc_info: object) -> None:
        WORKING_ON.about = self.outer


class WarningsToLog:
    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()

    def __call__(self, message, category, filename, lineno, file=None, line=None) -> None:
        about, text = getattr(WORKING_ON, "about", ""), " ".join(str(message).split())
        if (about, text) in self.seen:
            return
        self.seen.add((about, text))
        developers = issubclass(category, (DeprecationWarning, PendingDeprecationWarning))
        level = logging.DEBUG if developers else logging.WARNING
        logging.getLogger("py.warnings").log(level, "%s", f"{about}: {text}" if about else text)


SHOWN_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(32), *range(127, 160)] if c not in (9, 10)}
SHOWN_CONTROLS |= {c: f"\\u{c:04x}" for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]}
SHOWN_CONTROLS |= {0x2028: "\\u2028", 0x2029: "\\u2029"}


class PrintableFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).encode("utf-8", "surrogateescape")
        return text.decode("utf-8", "backslashreplace").translate(SHOWN_CONTROLS)


def configure_logging(quiet: bool, verbose: bool) -> None:
    import warnings  # here: only this function of the block needs it

    level = logging.ERROR if quiet else logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PrintableFormatter("%(levelname)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    for library in ("PIL", "urllib3", "requests", "reportlab", "asyncio", "mail.log", "django"):
        logging.getLogger(library).setLevel(max(level, logging.WARNING))
    warnings.filterwarnings("always", module=r"PIL\.", append=True)
    warnings.showwarning = WarningsToLog()


def expand_home(text: str) -> Path:
    try:
        return Path(text).expanduser()
    except RuntimeError:
        return Path(text)


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP as KeyboardInterrupt: what finishes outputs after
    Ctrl-C runs for them too."""


Interrupted = shared("Interrupted", Interrupted)  # type: ignore[misc]
HELD = shared("HELD", {"depth": 0, "pending": ""})


def raise_interrupted(signum: int, frame: object) -> None:
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda *_: None)
    STOPPING.set()
    name = signal.Signals(signum).name
    if HELD["depth"]:
        HELD["pending"] = name
        return
    raise Interrupted(name)


SIGNAL_CHECK = 0.2


def result_of(future: Future) -> Any:
    while not wait([future], timeout=SIGNAL_CHECK).done:
        pass
    return future.result()


def say_error(text: str) -> None:
    if logging.getLogger().handlers:
        logging.getLogger().error("%s", text)
    else:
        print(f"ERROR {text}", file=sys.stderr)


def guarded(
    work: Callable[[], int],
    say: Callable[[str], object] = say_error,
    failed: int = 2,
    interrupted: int = 130,
) -> int:
    in_main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS} if in_main else {}
    STOPPING.clear()
    for sig, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(sig, raise_interrupted)
    try:
        return work()
    except KeyboardInterrupt as stop:
        name = (str(stop).split() or [""])[-1]
        say(f"interrupted by {name}" if name in ("SIGTERM", "SIGHUP") else "interrupted")
        return interrupted
    except BrokenPipeError:  # `--dry-run | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a process ended by SIGPIPE
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        say(f"unexpected {type(error).__name__}" + (f": {first}" if first else ""))
        return failed
    finally:
        early = shared("early stop", None)
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_IGN if early and handler is early else handler)


# --- end shared block: cli ---
# --- begin shared block: lock (from blocks/lock.py; make blocks) ---
LOCK_NAME = ".fruit-catalog.lock"


class DeliveryBusy(Exception):
    """Another run holds the delivery's lock: str() names it."""


def lock_path(delivery: Path) -> Path:
    real = delivery.resolve()
    if os.access(real, os.W_OK):
        return real / LOCK_NAME
    digest = hashlib.sha256(os.fsencode(real)).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"fruit-catalog-{os.getuid()}-{digest}.lock"


def describe_holder(lock_file: IO[str]) -> str:
    lock_file.seek(0)
    try:
        holder = json.loads(lock_file.read(4096))
        return f"{holder['script']} (pid {holder['pid']}, since {holder['since']})"
    except (ValueError, KeyError, TypeError):
        return "another run"


def open_lock_file(path: Path) -> IO[str]:
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as error:
        raise DeliveryBusy(f"cannot use {path} as the lock: {error.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise DeliveryBusy(f"cannot use {path} as the lock: not a regular file")
    return os.fdopen(fd, "r+", encoding="utf-8")


def hold_delivery_lock(delivery: Path, wait: float) -> IO[str]:
    path = lock_path(delivery)
    lock_file = open_lock_file(path)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = describe_holder(lock_file)
                lock_file.close()
                raise DeliveryBusy(
                    f"{delivery} is in use by {holder}; wait for it to finish,"
                    f" or give --wait SECONDS (lock {path})"
                ) from None
            time.sleep(0.1)
    lock_file.seek(0)
    lock_file.truncate()
    since = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    script = Path(sys.argv[0]).name
    lock_file.write(json.dumps({"script": script, "pid": os.getpid(), "since": since}))
    lock_file.flush()
    return lock_file


# --- end shared block: lock ---
# --- begin shared block: progress (from blocks/progress.py; make blocks) ---
class Progress:
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
        with self.lock:
            if self.shown:
                sys.stderr.write("\r\x1b[K")
                sys.stderr.flush()
                self.shown = False


# --- end shared block: progress ---
# --- begin shared block: delivery files (from blocks/delivery_files.py; make blocks) ---
IMAGE_LIMIT = 200 << 20  # 200 MiB: a large uncompressed TIFF


def supplier_data() -> Path:
    return expand_home(os.environ.get("SUPPLIER_DATA", "").strip() or "~/supplier-data")


class RefusedFile(Exception):
    """A file of the delivery that is not read: str() names it and says why."""


ABSENT = "no such file or directory"  # what unreachable() says of a path not there


def unreachable(path: Path, folder: bool = True) -> str:
    try:
        kind = path.stat().st_mode
    except OSError as error:
        return (error.strerror or str(error)).lower()
    if folder and not stat.S_ISDIR(kind):
        return "not a folder"
    return "" if not folder or os.access(path, os.R_OK | os.X_OK) else "permission denied"


def utf8_named(path: Path) -> bool:
    return not any("\udc80" <= char <= "\udcff" for char in path.name)


def shown_path(path: Path) -> str:
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def file_kind(mode: int) -> str:
    kinds = {stat.S_ISDIR: "a folder", stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket"}
    kinds |= {stat.S_ISCHR: "a device", stat.S_ISBLK: "a device"}
    return next((name for test, name in kinds.items() if test(mode)), "not a regular file")


def open_delivery_file(path: Path, root: Path, limit: int) -> BinaryIO:
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
    with open_delivery_file(path, root, limit) as file:
        content = file.read(limit + 1)
    if len(content) > limit:
        raise RefusedFile(f"{path}: grew over the limit of {limit} while read; not read")
    return content


def earlier_attempt(jpeg: Path, source: Path) -> str:
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


# --- end shared block: delivery files ---
# --- begin shared block: catalog jpeg (from blocks/catalog_jpeg.py; make blocks) ---
CATALOG_SIZE = (600, 400)  # the lab's: a JPEG without changeImage.py's mark must have it
JPEG_MARK = re.compile(  # changeImage.py's MARK (its first marks: SHA-256)
    rb"fruit-catalog changeImage\.py made-from-(?:xxh3-128=[0-9a-f]{32}|sha256=[0-9a-f]{64})"
    rb" options=[0-9a-f]{16} size=([0-9]+)x([0-9]+)"
)
SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # frame headers: the size
STANDALONE_MARKERS = frozenset(range(0xD0, 0xD8)) | {0x01}  # markers without a length
CODED_DATA_END = re.compile(rb"\xff[^\x00\x01\xd0-\xd7\xff]")
CUT, NOT_OURS, WRONG_SIZE = "cut", "not ours", "wrong size"
EARLIER_ATTEMPT = "earlier attempt"  # unmarked beside its source: earlier_attempt() says it
PHOTO = "photo"  # the supplier's own photo under the catalog's name: photo_to_convert() says it
PHOTO_SUFFIXES = {
    b"\xff\xd8\xff": ".jpg",
    b"II*\x00": ".tiff",
    b"MM\x00*": ".tiff",
    b"\x89PNG\r\n\x1a\n": ".png",
    b"GIF87a": ".gif",
    b"GIF89a": ".gif",
}


def jpeg_layout(content: bytes) -> tuple[tuple[int, int] | None, bytes, int]:
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
    cause: str
    text: str


def unusable_jpeg(content: bytes, path: Path) -> Unusable | None:
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
    return next((s for magic, s in PHOTO_SUFFIXES.items() if content.startswith(magic)), "")


def photo_to_convert(content: bytes, path: Path) -> str:
    renamed = path.stem + (photo_suffix(content) or ".jpg")
    return (
        f"{path.name} is a photo under the catalog's name, not made by changeImage.py:"
        f" rename it {renamed} and run ./changeImage.py to convert it"
    )


def sources_beside(path: Path) -> list[Path]:
    beside = path.parent.glob(glob.escape(path.stem) + ".*")
    return sorted(p for p in beside if p.name != path.name and p.stem == path.stem)


# --- end shared block: catalog jpeg ---
# --- begin shared block: files (from blocks/files.py; make blocks) ---
def write_atomically(path: Path, data: bytes | str, *, mode: int = 0o644) -> None:
    path = Path(path)
    try:
        kind = os.lstat(path).st_mode
    except FileNotFoundError:
        kind = stat.S_IFREG
    if not (stat.S_ISREG(kind) or stat.S_ISLNK(kind)):
        raise OSError(errno.EEXIST, "not a regular file, which it would replace", str(path))
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


# --- end shared block: files ---


OPTIONS = [
    Option(
        "paths",
        "image files or folders",
        "SUPPLIER_DATA",
        list,
        Path,
        "PATH",
        nargs="*",
        shown="$SUPPLIER_DATA/images",
    ),
    Option(
        "--output-dir",
        "where outputs go",
        "IMAGE_OUTPUT_DIR",
        None,
        Path,
        "DIR",
        shown="beside each input",
    ),
    Option(
        "--size",
        f"output size, each side 1-{MAX_SIDE}",
        "IMAGE_SIZE",
        DEFAULT_SIZE,
        parse_size,
        "WxH",
        shown="600x400",
    ),
    Option("--fit", "keep the aspect ratio inside --size", action="store_true"),
    Option(
        "--rotate",
        "rotate clockwise by DEG degrees, -360 to 360",
        "IMAGE_ROTATE",
        0.0,
        number(-360, 360),
        "DEG",
    ),
    Option(
        "--format",
        "JPEG (or JPG), PNG, WEBP, TIFF (or TIF)",
        "IMAGE_FORMAT",
        "JPEG",
        parse_format,
        "FORMAT",
    ),
    Option(
        "--suffix",
        "output name = source name without its extension + EXT; '' for none (needs --output-dir)",
        "IMAGE_SUFFIX",
        suffix_from_env,
        parse_suffix,
        "EXT",
        shown="the format's: .jpeg, .png, .webp, .tiff",
    ),
    Option(
        "--quality",
        "JPEG/WebP quality 1-100",
        "IMAGE_QUALITY",
        DEFAULT_QUALITY,
        number(1, 100, whole=True),
        "Q",
    ),
    Option(
        "--background",
        "colour under transparent areas",
        "IMAGE_BACKGROUND",
        (255, 255, 255),
        parse_colour,
        "COLOUR",
        shown="white",
    ),
    Option(
        "--jobs",
        f"images converted at once, 0-{MAX_JOBS}",
        "IMAGE_JOBS",
        0,
        number(0, MAX_JOBS, whole=True),
        "N",
        shown="0: all cores",
    ),
    Option(
        "--max-pixels",
        f"refuse larger images, at most {MAX_PIXELS_LIMIT}",
        "IMAGE_MAX_PIXELS",
        Image.MAX_IMAGE_PIXELS,
        number(1, MAX_PIXELS_LIMIT, whole=True),
        "N",
        # A literal: without Pillow, --help must still show the number (the pinned Pillow's).
        shown="Pillow's 89478485",
    ),
    Option(
        "--wait",
        "wait up to SECONDS for another run on the same delivery",
        "IMAGE_WAIT",
        0.0,
        number(0, 86400),
        "SECONDS",
    ),
    Option(
        "--best-quality",
        "slower resize with no moire on fine repeating texture (Pillow reducing_gap 3)",
        action="store_true",
    ),
    Option(
        "--force",
        "convert even when the output is up to date (a file it did not write is never replaced)",
        action="store_true",
    ),
    Option(
        "--replace-unmarked",
        "convert over a file without changeImage.py's mark (an earlier attempt's output);"
        " without it such a file is never replaced",
        action="store_true",
    ),
    Option("--dry-run", "list what would be done; write nothing", action="store_true"),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser(__doc__, OPTIONS, epilog=EPILOG)
    args = parser.parse_args(argv)
    paths = args.paths or [default_images_dir()]
    missing = [str(p) for p in paths if unreachable(p, False) == ABSENT]
    if missing:
        parser.error(f"no such file or directory: {', '.join(missing)}")
    for path in paths:
        if why := unreachable(path, folder=os.path.isdir(path)):
            parser.error(f"cannot read {path}: {why}")
    if args.output_dir is not None and (why := unreachable(args.output_dir)):
        parser.error(f"--output-dir {args.output_dir}: {why}")
    if args.suffix is None:
        args.suffix = FORMATS[args.format]
    if args.suffix == "" and replaces_sources(args):
        parser.error(
            "--suffix '' needs an --output-dir other than the images' folder "
            "(the outputs would replace their sources)"
        )
    return args


def replaces_sources(args: argparse.Namespace) -> bool:
    if args.output_dir is None:
        return True
    folders = [p if p.is_dir() else p.parent for p in args.paths or [default_images_dir()]]
    return any(folder.resolve() == args.output_dir.resolve() for folder in folders)


def deliveries(paths: list[Path]) -> list[Path]:
    """The deliveries to lock: the folder that holds each images folder."""
    folders = {(p if p.is_dir() else p.parent).resolve() for p in paths}
    return sorted({folder.parent for folder in folders})


def options_from(args: argparse.Namespace) -> Options:
    gap = BEST_REDUCING_GAP if args.best_quality else FAST_REDUCING_GAP
    return Options(
        size=args.size,
        fit=bool(args.fit),
        rotate=args.rotate,
        background=args.background,
        format=args.format,
        quality=args.quality,
        reducing_gap=gap,
        suffix=args.suffix,
    )


def choices(args: argparse.Namespace) -> dict[str, bool]:
    """What plan() may replace."""
    return {"force": args.force, "replace_unmarked": args.replace_unmarked}


def convert_all(args: argparse.Namespace) -> int:
    """The lab's step 1: each image of the delivery becomes its catalog JPEG (or,
    with --dry-run, is listed), one run at a time per delivery; one summary line."""
    configure_logging(args.quiet, args.verbose)
    options, counts = options_from(args), Counter()
    paths = args.paths or [default_images_dir()]
    empty = without_files(paths)
    if empty:
        log.error("%s: no files to convert; is it the delivery's images folder?", empty[0])
        return EXIT_USAGE
    with bomb_limit(args.max_pixels):
        if args.dry_run:
            return list_conversions(args, paths, options, counts)
        try:
            with delivery_locks(paths, args.wait):
                return convert_locked(args, paths, options, counts)
        except DeliveryBusy as busy:
            log.error("%s", busy)
            return EXIT_USAGE


def list_conversions(
    args: argparse.Namespace, paths: list[Path], options: Options, counts: Counter
) -> int:
    """--dry-run: what would be converted, on stdout; nothing written."""
    tasks, _ = plan(list_sources(paths), args.output_dir, options, counts, **choices(args))
    current = [task for task in tasks if is_current(task, options)]
    counts[Skip.UP_TO_DATE] += len(current)
    tasks = [task for task in tasks if task not in current]
    for task in tasks:
        print(f"would convert {task.source} -> {task.target}")
    log.info("dry run: would convert %d, %s", len(tasks), summary(counts))
    return EXIT_FAILED if counts[Done.FAILED] else EXIT_OK  # as the real run would end


@contextlib.contextmanager
def delivery_locks(paths: list[Path], wait: float) -> Iterator[None]:
    """Each delivery of the paths locked for the run; DeliveryBusy when another
    run holds one for longer than `wait` seconds."""
    with contextlib.ExitStack() as locks:
        for delivery in deliveries(paths):
            locks.enter_context(hold_delivery_lock(delivery, wait))
        yield


@contextlib.contextmanager
def library_messages_logged() -> Iterator[None]:
    """libtiff and libjpeg write their complaints ("ZIPDecode: Decoding error ...")
    straight to file descriptor 2, past logging and -q. While images convert, fd 2
    is a file of ours and Python's stderr a copy of the real one; what the
    libraries wrote becomes WARNING lines (which -q hides) when the work ends."""
    sys.stderr.flush()
    real, python_stderr = os.dup(2), sys.stderr
    ours = os.fdopen(real, "w", buffering=1, errors="backslashreplace")
    handlers = [
        handler
        for handler in logging.getLogger().handlers
        if isinstance(handler, logging.StreamHandler) and handler.stream is python_stderr
    ]
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        sys.stderr = ours
        for handler in handlers:
            handler.setStream(ours)
        try:
            yield
        finally:
            ours.flush()
            os.dup2(real, 2)
            sys.stderr = python_stderr
            for handler in handlers:
                handler.setStream(python_stderr)
            ours.close()
            caught.seek(0)
            said = caught.read(LIBRARY_OUTPUT_LIMIT).decode("utf-8", "replace").splitlines()
            for line in dict.fromkeys(line.strip() for line in said if line.strip()):
                log.warning("image library: %s", line)


def convert_locked(
    args: argparse.Namespace, paths: list[Path], options: Options, counts: Counter
) -> int:
    tasks, targets = plan(list_sources(paths), args.output_dir, options, counts, **choices(args))
    progress = Progress(len(tasks), Done.CONVERTED, enabled=not args.quiet)
    try:
        remove_stale_temporaries(targets)
        for folder in sorted({task.target.parent for task in tasks}):
            check_writable(folder)
        tune_allocator()
        file_mode()
        jobs = args.jobs or len(os.sched_getaffinity(0))
        with library_messages_logged():
            run_tasks(tasks, options, jobs, counts, progress)
    except OutputError as error:
        log.error("%s; stopped: %s", error, summary(counts))
        return EXIT_USAGE
    except KeyboardInterrupt:
        log.error("interrupted: %s; outputs written so far are complete", summary(counts))
        return EXIT_INTERRUPTED
    log.info("%s", summary(counts))
    return EXIT_FAILED if counts[Done.FAILED] else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return guarded(lambda: convert_all(parse_args(argv)))


if __name__ == "__main__":
    # Start-up (the imports, this file's definitions) ran with the collector off: its
    # objects are kept, and it would have run 35 times (40 M instructions, some 6 ms).
    gc.freeze()  # nor will later collections scan them
    gc.enable()
    sys.exit(main())
