#!/usr/bin/env python3
"""Turn a supplier's images into catalog JPEGs (600x400, RGB) beside them.

Images are recognised by content, so extension-less TIFFs are converted and
stray files (LICENSE, README, hidden files) are skipped. Transparent areas
are composited on white, 16-bit greyscale is scaled to 8 bits, the EXIF
orientation is applied and an RGB ICC profile is kept. Each output is
written to a temporary file and renamed into place, so an interrupted run
never leaves a truncated JPEG; outputs newer than their source are skipped,
so a re-run only does what is left. Images convert in parallel threads.

Usage:
    ./changeImage.py [PATH ...] [--size WxH] [--fit] [--rotate DEG]
                     [--output-dir DIR] [--format JPEG] [--quality Q]
                     [--background COLOUR] [--jobs N] [--force] [--dry-run]

Example:
    $ ./changeImage.py
    INFO skipped LICENSE: not an image
    INFO skipped README: not an image
    INFO converted 10, skipped 2 (not images), failed 0
    $ ./changeImage.py --rotate 90 --size 128x128 --output-dir /opt/icons ~/images

Exit status: 0 all converted or skipped, 1 some images failed, 2 usage error,
130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import functools
import io
import logging
import os
import platform
import signal
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageCms, ImageColor

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_SIZE = (600, 400)
DEFAULT_QUALITY = 85
FORMATS = {"JPEG": ".jpeg", "PNG": ".png", "WEBP": ".webp", "TIFF": ".tiff"}
# Pillow's reducing_gap: shrink by an integer box average first (reduce()),
# then finish with LANCZOS from at most this many times the target. 1.0 puts
# nearly all the work in the box average: 3000x2000 -> 600x400 is an exact 5x5
# average, ~1.4x the speed of 2.0 and within 0.3 dB PSNR of full LANCZOS on
# photos (bench/bench_convert.py). Fine repeating texture can show moire with
# a box average; --best-quality uses 3.0, which Pillow documents as
# indistinguishable from full LANCZOS.
FAST_REDUCING_GAP = 1.0
BEST_REDUCING_GAP = 3.0
# EXIF orientations 5-8 are a quarter turn: width and height swap.
QUARTER_TURN_ORIENTATIONS = {5, 6, 7, 8}
# mallopt() parameters from glibc's malloc.h, and the largest mmap threshold
# glibc accepts on 64-bit systems.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
TRIM_THRESHOLD = 256 * 1024 * 1024
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


@dataclass(frozen=True)
class Options:
    size: tuple[int, int] = DEFAULT_SIZE
    fit: bool = False
    rotate: float = 0.0
    background: tuple[int, int, int] = (255, 255, 255)
    format: str = "JPEG"
    quality: int = DEFAULT_QUALITY
    reducing_gap: float = FAST_REDUCING_GAP


@dataclass(frozen=True)
class Task:
    source: Path
    target: Path


# -- pure functions -----------------------------------------------------------


def parse_size(text: str) -> tuple[int, int]:
    """'600x400' -> (600, 400); both sides positive."""
    width, sep, height = text.lower().partition("x")
    try:
        size = (int(width), int(height))
    except ValueError:
        size = (0, 0)
    if not sep or min(size) < 1:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT like 600x400, got {text!r}")
    return size


def parse_colour(text: str) -> tuple[int, int, int]:
    try:
        return ImageColor.getrgb(text)[:3]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a colour: {text!r}") from None


def fitted_size(source: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """The largest size with the source's aspect ratio inside the box."""
    scale = min(box[0] / source[0], box[1] / source[1])
    return max(1, round(source[0] * scale)), max(1, round(source[1] * scale))


def output_size(source: tuple[int, int], options: Options) -> tuple[int, int]:
    """Final size of the output for a source of this (upright) size."""
    return fitted_size(source, options.size) if options.fit else options.size


def is_quarter_turn(degrees: float) -> bool:
    return degrees % 180 == 90


def target_path(source: Path, output_dir: Path | None, extension: str) -> Path:
    folder = output_dir if output_dir is not None else source.parent
    return folder / (source.stem + extension)


def profile_colour_space(icc: bytes | None) -> str:
    """The data colour space an ICC profile declares ('RGB', 'CMYK', 'GRAY'...)."""
    return icc[16:20].decode("ascii", "replace").strip() if icc and len(icc) >= 20 else ""


def summary(counts: Counter) -> str:
    """'converted 10, skipped 2 (not images), failed 1'."""
    reasons = [(k.removeprefix("skip:"), n) for k, n in sorted(counts.items()) if k[:5] == "skip:"]
    skipped = sum(n for _, n in reasons)
    if len(reasons) == 1:
        detail = f" ({reasons[0][0]})"
    elif reasons:
        detail = " (" + ", ".join(f"{n} {reason}" for reason, n in reasons) + ")"
    else:
        detail = ""
    return f"converted {counts['converted']}, skipped {skipped}{detail}, failed {counts['failed']}"


# -- image transformation -----------------------------------------------------


def sixteen_bit_to_8(image: Image.Image) -> Image.Image:
    """Scale 16-bit greyscale to 8 bits; Pillow's convert('L') would clip."""
    wide = image.convert("I")
    if image.mode == "I" and wide.getextrema()[1] <= 255:
        return wide.convert("L")
    return wide.point(lambda value: value * (1 / 256)).convert("L")


def cmyk_to_rgb(image: Image.Image) -> Image.Image:
    """Use the embedded CMYK profile when there is one, else Pillow's formula."""
    icc = image.info.get("icc_profile")
    if profile_colour_space(icc) == "CMYK":
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(
                image, source, ImageCms.createProfile("sRGB"), outputMode="RGB"
            )
            converted.info["icc_profile"] = srgb_profile()
            return converted
        except ImageCms.PyCMSError as error:
            log.debug("CMYK profile unusable (%s); using the plain formula", error)
    return image.convert("RGB")


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


def flatten(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """RGB, with any transparency composited on the background colour."""
    if image.mode in {"RGBA", "LA"}:
        canvas = Image.new("RGB", image.size, background)
        canvas.paste(image.convert("RGBA"), mask=image.getchannel("A"))
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


def convert_image(image: Image.Image, options: Options) -> Image.Image:
    """The catalog image for an opened source: oriented, resized, rotated, RGB."""
    orientation = image.getexif().get(0x0112, 1)
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
    small = prepared.resize(resize_to, Image.Resampling.LANCZOS, reducing_gap=options.reducing_gap)
    small = upright_image(small, orientation)
    small = rotate_clockwise(flatten(small, options.background), rotation)
    small.info["icc_profile"] = prepared.info.get("icc_profile", icc)
    return small


def output_profile(image: Image.Image) -> bytes | None:
    icc = image.info.get("icc_profile")
    return icc if profile_colour_space(icc) == "RGB" else None


# -- files --------------------------------------------------------------------


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_atomically(image: Image.Image, target: Path, options: Options) -> None:
    """Write to a hidden temporary file beside the target, then rename."""
    params: dict = {}
    icc = output_profile(image)
    if icc:
        params["icc_profile"] = icc
    if options.format in {"JPEG", "WEBP"}:
        params["quality"] = options.quality
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600; give the output the permissions of a normal file.
        os.chmod(temporary, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as stream:
            image.save(stream, options.format, **params)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def convert_file(task: Task, options: Options) -> str | None:
    """Convert one file; None on success, else the cause of the failure."""
    try:
        with Image.open(task.source) as image:
            save_atomically(convert_image(image, options), task.target, options)
    except Exception as error:  # any decoder error fails only this file
        return describe_error(error)
    return None


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


class BadImage(Exception):
    """A file that claims to be an image but cannot be read."""


def is_image(path: Path) -> bool:
    """True for a readable image, False for a non-image; BadImage otherwise."""
    if path.stat().st_size == 0:
        raise BadImage("empty file (0 bytes)")
    try:
        with Image.open(path):
            return True
    except Image.UnidentifiedImageError:
        if path.suffix.lower() in image_extensions():
            raise BadImage("not a readable image (corrupt or unsupported format)") from None
        return False
    except Exception as error:  # a bad header fails only this file
        raise BadImage(describe_error(error)) from error


def list_sources(paths: list[Path]) -> list[Path]:
    sources: list[Path] = []
    for path in paths:
        if path.is_dir():
            sources.extend(sorted(p for p in path.iterdir() if p.is_file()))
        else:
            sources.append(path)
    return sources


def plan(
    sources: list[Path], output_dir: Path | None, options: Options, force: bool, counts: Counter
) -> list[Task]:
    """Decide each file's fate, logging every skip and failure once."""
    extension = FORMATS[options.format]
    claimed: dict[Path, Path] = {}
    tasks: list[Task] = []
    for source in sources:
        if source.name.startswith("."):
            log.info("skipped %s: hidden file", source)
            counts["skip:not images"] += 1
            continue
        try:
            if not is_image(source):
                log.info("skipped %s: not an image", source)
                counts["skip:not images"] += 1
                continue
        except BadImage as error:
            log.error("%s: %s", source, error)
            counts["failed"] += 1
            continue
        target = target_path(source, output_dir, extension)
        if target.resolve() == source.resolve():
            log.debug("skipped %s: it is already the output", source)
            counts["skip:already outputs"] += 1
            continue
        if target in claimed:
            log.error("%s: same output %s as %s; not converted", source, target, claimed[target])
            counts["failed"] += 1
            continue
        claimed[target] = source
        if not force and target.exists() and target.stat().st_mtime >= source.stat().st_mtime:
            log.debug("skipped %s: %s is up to date", source, target)
            counts["skip:up to date"] += 1
            continue
        tasks.append(Task(source, target))
    return tasks


def run_tasks(tasks: list[Task], options: Options, jobs: int, counts: Counter) -> None:
    # Threads, not processes: Pillow releases the GIL while decoding, resizing
    # and encoding, so threads scale like processes without pickling images.
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        results = pool.map(lambda task: convert_file(task, options), tasks)
        for task, error in zip(tasks, results, strict=True):
            if error is None:
                log.debug("converted %s -> %s", task.source, task.target)
                counts["converted"] += 1
            else:
                log.error("%s: %s", task.source, error)
                counts["failed"] += 1
    finally:
        # On Ctrl-C, images in progress finish (and are renamed whole); the rest never start.
        pool.shutdown(wait=True, cancel_futures=True)


def tune_allocator() -> None:
    """Keep freed image buffers in the process instead of unmapping them.

    glibc serves a 24 MB image buffer with mmap and hands it back to the
    kernel when freed, so every image pays its page faults again (about a
    quarter of a batch's time, bench/bench_convert.py). Raising the mmap and
    trim thresholds keeps that memory for reuse; the peak stays the same."""
    if platform.libc_ver()[0] != "glibc":
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)
    libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)


# -- command line -------------------------------------------------------------


def env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def default_images_dir() -> Path:
    return Path(env("SUPPLIER_DATA", "~/supplier-data")).expanduser() / "images"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Environment: SUPPLIER_DATA (default ~/supplier-data; images in its images/), "
        "and the variable in [brackets] after each option.",
    )
    add = parser.add_argument
    add(
        "paths",
        nargs="*",
        type=Path,
        help="image files or folders (default: $SUPPLIER_DATA/images)",
    )
    add(
        "--output-dir",
        type=Path,
        default=env("IMAGE_OUTPUT_DIR", "") or None,
        help="where outputs go (default: beside each input) [IMAGE_OUTPUT_DIR]",
    )
    add(
        "--size",
        type=parse_size,
        default=env("IMAGE_SIZE", "600x400"),
        help="output size WxH (default 600x400) [IMAGE_SIZE]",
    )
    add("--fit", action="store_true", help="keep the aspect ratio inside --size")
    add(
        "--rotate",
        type=float,
        default=env("IMAGE_ROTATE", "0"),
        help="rotate clockwise by DEG degrees [IMAGE_ROTATE]",
    )
    add(
        "--format",
        type=str.upper,
        choices=sorted(FORMATS),
        default=env("IMAGE_FORMAT", "JPEG"),
        help="output format (default JPEG, extension .jpeg) [IMAGE_FORMAT]",
    )
    add(
        "--quality",
        type=int,
        default=env("IMAGE_QUALITY", str(DEFAULT_QUALITY)),
        help=f"JPEG/WebP quality 1-100 (default {DEFAULT_QUALITY}) [IMAGE_QUALITY]",
    )
    add(
        "--background",
        type=parse_colour,
        default=env("IMAGE_BACKGROUND", "white"),
        help="colour under transparent areas (default white) [IMAGE_BACKGROUND]",
    )
    add(
        "--jobs",
        type=int,
        default=env("IMAGE_JOBS", "0"),
        help="images converted at once (default: all cores) [IMAGE_JOBS]",
    )
    add(
        "--max-pixels",
        type=int,
        default=env("IMAGE_MAX_PIXELS", str(Image.MAX_IMAGE_PIXELS)),
        help=f"refuse larger images (default Pillow's {Image.MAX_IMAGE_PIXELS}) [IMAGE_MAX_PIXELS]",
    )
    add(
        "--best-quality",
        action="store_true",
        help="slower resize with no moire on fine repeating texture (Pillow reducing_gap 3)",
    )
    add("--force", action="store_true", help="convert even when the output is up to date")
    add("--dry-run", action="store_true", help="list what would be done; write nothing")
    add("-q", "--quiet", action="store_true", help="only warnings and errors")
    add("-v", "--verbose", action="store_true", help="also every file converted or up to date")
    args = parser.parse_args(argv)
    if not 1 <= args.quality <= 100:
        parser.error("--quality must be between 1 and 100")
    if args.jobs < 0:
        parser.error("--jobs must be 0 (all cores) or more")
    missing = [str(p) for p in args.paths or [default_images_dir()] if not p.exists()]
    if missing:
        parser.error(f"no such file or directory: {', '.join(missing)}")
    if args.output_dir is not None and not args.output_dir.is_dir():
        parser.error(f"--output-dir {args.output_dir} is not a directory")
    return args


def configure_logging(args: argparse.Namespace) -> None:
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(message)s", stream=sys.stderr)


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


def convert_all(args: argparse.Namespace) -> int:
    gap = BEST_REDUCING_GAP if args.best_quality else FAST_REDUCING_GAP
    options = Options(
        args.size, args.fit, args.rotate, args.background, args.format, args.quality, gap
    )
    jobs = args.jobs or len(os.sched_getaffinity(0))
    counts: Counter = Counter()
    sources = list_sources(args.paths or [default_images_dir()])
    tasks = plan(sources, args.output_dir, options, args.force, counts)
    if args.dry_run:
        for task in tasks:
            print(f"would convert {task.source} -> {task.target}")
        log.info("dry run: would convert %d, %s", len(tasks), summary(counts))
        return EXIT_OK
    tune_allocator()
    try:
        run_tasks(tasks, options, jobs, counts)
    except KeyboardInterrupt:
        log.error("interrupted: %s; outputs written so far are complete", summary(counts))
        return EXIT_INTERRUPTED
    log.info("%s", summary(counts))
    return EXIT_FAILED if counts["failed"] else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args)
    with bomb_limit(args.max_pixels):
        return convert_all(args)


if __name__ == "__main__":
    # SIGTERM (kill, systemd, cron timeouts) stops like Ctrl-C: whole files only.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
