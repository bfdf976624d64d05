"""changeImage.py: every image becomes a correct catalog JPEG, safely."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import io
import itertools
import logging
import math
import os
import pty
import re
import resource
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time
import types
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helper import wait_for, with_entry
from PIL import Image, ImageChops, ImageCms, ImageDraw, ImageFilter, ImageStat

import changeImage
from make_delivery import make_delivery, photo_like

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "changeImage.py"
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


# -- helpers in the spirit of Pillow's Tests/helper.py ------------------------


def opened(path: Path) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        return image


def assert_catalog_jpeg(path: Path, size=(600, 400)) -> Image.Image:
    image = opened(path)
    assert (image.format, image.size, image.mode) == ("JPEG", size, "RGB")
    return image


def assert_colour_near(actual, expected, tolerance=12) -> None:
    assert all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True)), (
        f"{actual} is not near {expected}"
    )


def centre(image: Image.Image):
    return image.getpixel((image.width // 2, image.height // 2))


def marked(size=(300, 200), corner=RED, mode="RGB") -> Image.Image:
    """Blue image with a coloured 1/4-size block in the top-left corner."""
    image = Image.new("RGB", size, BLUE)
    image.paste(corner, (0, 0, size[0] // 4, size[1] // 4))
    return image.convert(mode)


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def convert(*args: str | Path) -> int:
    return changeImage.main([str(a) for a in args])


@pytest.fixture(autouse=True)
def info_logs(caplog):
    caplog.set_level(logging.INFO)


# -- the lab behaviour ----------------------------------------------------------


def test_no_arguments_converts_the_lab_layout_under_home(tmp_path):
    data = make_delivery(tmp_path, count=2, size=(300, 200))
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("SUPPLIER_DATA", None)
    result = subprocess.run([SCRIPT], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    for stem in ("001", "002"):
        assert_catalog_jpeg(data / "images" / f"{stem}.jpeg")
    assert "skipped" in result.stderr and "LICENSE: not an image" in result.stderr
    assert result.stderr.strip().endswith("converted 2, skipped 2 (not images), failed 0")
    assert result.stdout == ""


def test_extensionless_tiff_is_recognised_by_content(tmp_path):
    marked().save(tmp_path / "003", "TIFF")
    assert convert(tmp_path) == 0
    assert_catalog_jpeg(tmp_path / "003.jpeg")


def test_non_images_and_hidden_files_are_skipped_with_info(tmp_path, caplog):
    (tmp_path / "LICENSE").write_text("licence")
    (tmp_path / ".DS_Store").write_bytes(b"\0\1binary")
    marked().save(tmp_path / ".hidden.png")
    assert convert(tmp_path) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [".DS_Store", ".hidden.png", "LICENSE"]
    skips = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("LICENSE: not an image" in m for m in skips)
    assert any(".DS_Store: hidden file" in m for m in skips)
    assert "skipped 3 (not images)" in caplog.records[-1].getMessage()


# -- modes ----------------------------------------------------------------------


def test_rgba_transparency_becomes_white_not_the_hidden_colour(tmp_path):
    image = Image.new("RGBA", (300, 200), (255, 0, 0, 0))
    image.paste((0, 0, 255, 255), (150, 0, 300, 200))
    image.save(tmp_path / "a.png")
    assert convert(tmp_path) == 0
    out = assert_catalog_jpeg(tmp_path / "a.jpeg")
    assert_colour_near(out.getpixel((100, 200)), WHITE)
    assert_colour_near(out.getpixel((500, 200)), BLUE)


def test_background_colour_can_be_chosen(tmp_path):
    Image.new("RGBA", (30, 20), (0, 0, 0, 0)).save(tmp_path / "a.png")
    assert convert(tmp_path, "--background", "#00ff00") == 0
    assert_colour_near(centre(opened(tmp_path / "a.jpeg")), GREEN)


def test_la_transparency_becomes_white(tmp_path):
    Image.new("LA", (30, 20), (0, 0)).save(tmp_path / "a.png")
    assert convert(tmp_path) == 0
    assert_colour_near(centre(assert_catalog_jpeg(tmp_path / "a.jpeg")), WHITE)


def test_palette_with_transparency_becomes_white(tmp_path):
    image = Image.new("P", (30, 20), 0)
    image.putpalette([0, 0, 0, 255, 0, 0])
    image.info["transparency"] = 0
    image.save(tmp_path / "a.gif", transparency=0)
    assert convert(tmp_path) == 0
    assert_colour_near(centre(assert_catalog_jpeg(tmp_path / "a.jpeg")), WHITE)


def test_palette_without_transparency_keeps_its_colours(tmp_path):
    marked().convert("P").save(tmp_path / "a.gif")
    assert convert(tmp_path) == 0
    out = assert_catalog_jpeg(tmp_path / "a.jpeg")
    assert_colour_near(out.getpixel((20, 20)), RED)
    assert_colour_near(centre(out), BLUE)


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    Image.new("I;16", (30, 20), 40000).save(tmp_path / "a.png")
    assert convert(tmp_path) == 0
    grey = 40000 // 256
    assert_colour_near(centre(assert_catalog_jpeg(tmp_path / "a.jpeg")), (grey,) * 3, 2)


def test_cmyk_converts_to_the_right_colour(tmp_path):
    Image.new("CMYK", (30, 20), (255, 0, 0, 0)).save(tmp_path / "a.tiff")
    assert convert(tmp_path) == 0
    assert_colour_near(centre(assert_catalog_jpeg(tmp_path / "a.jpeg")), (0, 255, 255))


def test_one_bit_image_converts_to_black_and_white(tmp_path):
    image = Image.new("1", (300, 200), 1)
    image.paste(0, (0, 0, 150, 200))
    image.save(tmp_path / "a.png")
    assert convert(tmp_path) == 0
    out = assert_catalog_jpeg(tmp_path / "a.jpeg")
    assert_colour_near(out.getpixel((100, 200)), (0, 0, 0))
    assert_colour_near(out.getpixel((500, 200)), WHITE)


def test_exif_orientation_is_applied(tmp_path):
    image = marked((300, 200))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: viewers turn it 90 degrees clockwise
    image.save(tmp_path / "a.jpg", exif=exif, quality=95)
    assert convert(tmp_path, "--fit", "--size", "600x600") == 0
    out = assert_catalog_jpeg(tmp_path / "a.jpeg", size=(400, 600))
    assert_colour_near(out.getpixel((390, 10)), RED, 40)
    assert_colour_near(out.getpixel((10, 10)), BLUE, 40)


@pytest.mark.parametrize(
    "name, params",
    [
        ("a.jpg", {"quality": 95}),
        ("a.png", {}),
        ("a.webp", {"lossless": True}),
        ("a.tiff", {}),
        ("a.tiff", {"compression": "tiff_adobe_deflate"}),
        ("a.tiff", {"compression": "tiff_lzw"}),
    ],
)
@pytest.mark.parametrize("orientation, top_left, top_right", [(3, BLUE, BLUE), (6, BLUE, RED)])
def test_exif_orientation_is_applied_once_in_every_format(
    tmp_path, name, params, orientation, top_left, top_right
):
    # Pillow turns a TIFF upright while loading it; turning it again gave 180 degrees.
    exif = Image.Exif()
    exif[0x0112] = orientation
    marked((300, 200)).save(tmp_path / name, exif=exif, **params)
    assert convert(tmp_path, "--fit", "--size", "600x600") == 0
    size = (400, 600) if orientation == 6 else (600, 400)
    out = assert_catalog_jpeg(tmp_path / "a.jpeg", size=size)
    assert_colour_near(out.getpixel((10, 10)), top_left, 40)
    assert_colour_near(out.getpixel((size[0] - 10, 10)), top_right, 40)


def test_rgb_icc_profile_is_kept(tmp_path):
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    marked().save(tmp_path / "a.png", icc_profile=profile)
    assert convert(tmp_path) == 0
    assert opened(tmp_path / "a.jpeg").info.get("icc_profile") == profile


# -- sizes, rotation, formats ---------------------------------------------------


def test_rotate_is_clockwise(tmp_path):
    marked((300, 300)).save(tmp_path / "a.png")
    assert convert(tmp_path, "--rotate", "90", "--size", "300x300") == 0
    out = assert_catalog_jpeg(tmp_path / "a.jpeg", (300, 300))
    assert_colour_near(out.getpixel((290, 10)), RED)
    assert_colour_near(out.getpixel((10, 10)), BLUE)


def test_icon_job_is_one_command(tmp_path):
    images, icons = tmp_path / "images", tmp_path / "icons"
    images.mkdir()
    icons.mkdir()
    marked((192, 192)).save(images / "ic_box", "TIFF")
    assert convert("--rotate", "90", "--size", "128x128", "--output-dir", icons, images) == 0
    out = assert_catalog_jpeg(icons / "ic_box.jpeg", (128, 128))
    assert_colour_near(out.getpixel((120, 8)), RED)
    assert sorted(p.name for p in images.iterdir()) == ["ic_box"]


def test_arbitrary_angle_has_background_corners(tmp_path):
    Image.new("RGB", (300, 300), BLUE).save(tmp_path / "a.png")
    assert convert(tmp_path, "--rotate", "45", "--size", "300x300") == 0
    out = assert_catalog_jpeg(tmp_path / "a.jpeg", (300, 300))
    assert_colour_near(out.getpixel((3, 3)), WHITE)
    assert_colour_near(centre(out), BLUE)


def test_fit_keeps_the_aspect_ratio(tmp_path):
    marked((300, 200)).save(tmp_path / "a.png")
    assert convert(tmp_path, "--fit", "--size", "600x600") == 0
    assert_catalog_jpeg(tmp_path / "a.jpeg", (600, 400))


def test_png_format_and_extension(tmp_path):
    marked().save(tmp_path / "a.tiff")
    assert convert(tmp_path, "--format", "png") == 0
    image = opened(tmp_path / "a.png")
    assert (image.format, image.mode, image.size) == ("PNG", "RGB", (600, 400))


def test_quality_changes_the_output(tmp_path):
    make_delivery(tmp_path, count=1, size=(600, 400))
    images = tmp_path / "supplier-data" / "images"
    convert(images, "--quality", "30")
    small = (images / "001.jpeg").stat().st_size
    convert(images, "--quality", "95", "--force")
    assert (images / "001.jpeg").stat().st_size > small * 1.5


# -- safety ---------------------------------------------------------------------


def test_inputs_are_never_modified(tmp_path):
    make_delivery(tmp_path, count=2, size=(300, 200))
    images = tmp_path / "supplier-data" / "images"
    before = digest(images)
    assert convert(images) == 0
    after = digest(images)
    assert {name: after[name] for name in before} == before


def test_rerun_skips_up_to_date_outputs_and_force_redoes(tmp_path, caplog):
    marked().save(tmp_path / "a.tiff")
    assert convert(tmp_path) == 0
    first = (tmp_path / "a.jpeg").stat().st_mtime_ns
    assert convert(tmp_path) == 0
    assert (tmp_path / "a.jpeg").stat().st_mtime_ns == first
    assert "converted 0" in caplog.records[-1].getMessage()
    assert "up to date" in caplog.records[-1].getMessage()
    time.sleep(0.01)
    assert convert(tmp_path, "--force") == 0
    assert (tmp_path / "a.jpeg").stat().st_mtime_ns > first
    assert caplog.records[-1].getMessage().startswith("converted 1")


def test_source_newer_than_output_is_converted_again(tmp_path):
    marked().save(tmp_path / "a.tiff")
    convert(tmp_path)
    Image.new("RGB", (30, 20), GREEN).save(tmp_path / "a.tiff")
    later = time.time() + 5
    os.utime(tmp_path / "a.tiff", (later, later))
    assert convert(tmp_path) == 0
    assert_colour_near(centre(opened(tmp_path / "a.jpeg")), GREEN)


def test_a_redelivery_with_old_dates_gets_the_new_photo(tmp_path, caplog):
    """Unpacked with the archive's dates (unzip, tar, rsync -t, cp -p), the new
    TIFF is older than last week's JPEG: the content decides, not the dates."""
    marked().save(tmp_path / "a.tiff")
    assert convert(tmp_path) == 0
    last_week = (tmp_path / "a.jpeg").stat().st_mtime - 7 * 86400
    Image.new("RGB", (30, 20), GREEN).save(tmp_path / "a.tiff")
    os.utime(tmp_path / "a.tiff", (last_week, last_week))
    assert convert(tmp_path) == 0
    assert_colour_near(centre(opened(tmp_path / "a.jpeg")), GREEN)
    assert caplog.records[-1].getMessage().startswith("converted 1, ")


def test_an_untouched_source_is_skipped_a_touched_one_made_again_to_the_same_bytes(
    tmp_path, caplog
):
    marked().save(tmp_path / "a.tiff")
    assert convert(tmp_path) == 0
    if not changeImage.output_made(tmp_path / "a.jpeg").source:
        pytest.skip("this file system keeps no extended attributes")
    before, written = (tmp_path / "a.jpeg").read_bytes(), (tmp_path / "a.jpeg").stat()
    assert convert(tmp_path) == 0
    assert "1 up to date" in caplog.records[-1].getMessage()
    assert (tmp_path / "a.jpeg").stat().st_mtime_ns == written.st_mtime_ns
    os.utime(tmp_path / "a.tiff", (0, 0))  # the same bytes, other dates (and ctime)
    assert convert(tmp_path) == 0
    assert caplog.records[-1].getMessage().startswith("converted 1, ")
    assert (tmp_path / "a.jpeg").read_bytes() == before
    assert convert(tmp_path) == 0
    assert "1 up to date" in caplog.records[-1].getMessage()


def test_an_output_made_with_other_options_is_made_again(tmp_path, caplog):
    marked().save(tmp_path / "a.tiff")
    assert convert(tmp_path) == 0
    assert convert(tmp_path, "--size", "300x200") == 0
    assert_catalog_jpeg(tmp_path / "a.jpeg", size=(300, 200))
    assert convert(tmp_path, "--size", "300x200") == 0
    assert caplog.records[-1].getMessage().startswith("converted 0, ")
    assert "1 up to date" in caplog.records[-1].getMessage()


SPOILED_OUTPUTS = [  # id, what becomes of an output of ours: each the uploader refuses
    ("cut short", lambda whole: whole[:3000]),
    ("an end marker appended", lambda whole: whole + b"\xff\xd9"),
    ("twice itself", lambda whole: whole + whole),
    ("junk after its end", lambda whole: whole + bytes(range(256)) * 400),
]


@pytest.mark.parametrize("spoil", [pytest.param(spoil, id=id_) for id_, spoil in SPOILED_OUTPUTS])
def test_an_output_of_ours_the_uploader_would_refuse_is_made_again(tmp_path, caplog, spoil):
    """Judged whole by the uploader's own walk (the catalog jpeg block), not by its
    last two bytes."""
    marked().save(tmp_path / "a.tiff")
    assert convert(tmp_path) == 0
    whole = (tmp_path / "a.jpeg").read_bytes()
    (tmp_path / "a.jpeg").write_bytes(spoil(whole))
    assert changeImage.unusable_jpeg((tmp_path / "a.jpeg").read_bytes(), tmp_path / "a.jpeg")
    assert convert(tmp_path) == 0
    assert caplog.records[-1].getMessage().startswith("converted 1, ")
    assert (tmp_path / "a.jpeg").read_bytes() == whole
    assert changeImage.unusable_jpeg(whole, tmp_path / "a.jpeg") is None


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_every_format_carries_the_mark_and_a_rerun_skips_it(tmp_path, caplog, image_format):
    marked().save(tmp_path / "a.bmp")
    assert convert(tmp_path, "--format", image_format) == 0
    output = tmp_path / ("a" + changeImage.FORMATS[image_format])
    made = changeImage.output_made(output)
    assert made is not None and made.digest == changeImage.UNHASHED
    before = output.read_bytes()
    assert convert(tmp_path, "--format", image_format) == 0
    assert caplog.records[-1].getMessage().startswith("converted 0, ")
    assert "1 up to date" in caplog.records[-1].getMessage()
    assert output.read_bytes() == before


@pytest.mark.parametrize(
    "params",
    [{}, {"tiffinfo": {278: 5}}, {"compression": "tiff_lzw"}],
    ids=["mapped", "strips", "lzw"],
)
def test_the_mark_names_no_digest_and_the_same_photo_gives_the_same_bytes(tmp_path, params):
    """Zeros in the digest's place, which the uploader's pattern (the catalog jpeg
    block, in every copy so far) still reads as changeImage.py's mark."""
    photo_like((300, 200), 1).save(tmp_path / "a.tiff", **params)
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        shutil.copyfile(tmp_path / "a.tiff", tmp_path / folder / "a.tiff")
        assert convert(tmp_path / folder) == 0
    output = (tmp_path / "one" / "a.jpeg").read_bytes()
    assert output == (tmp_path / "two" / "a.jpeg").read_bytes()
    assert changeImage.output_made(tmp_path / "one" / "a.jpeg").digest == "xxh3-128=" + "0" * 32
    assert changeImage.JPEG_MARK.search(output).groups() == (b"600", b"400")
    assert changeImage.unusable_jpeg(output, tmp_path / "one" / "a.jpeg") is None


def older_mark(source: Path, algorithm: str, tag: str = "") -> str:
    """The mark changeImage.py wrote before this version: the source's digest."""
    hexdigest = {
        "sha256": lambda data: hashlib.sha256(data).hexdigest(),
        "xxh3-128": lambda data: pytest.importorskip("xxhash").xxh3_128_hexdigest(data),
    }[algorithm](source.read_bytes())
    tag = tag or changeImage.options_tag(changeImage.Options())
    return f"fruit-catalog changeImage.py made-from-{algorithm}={hexdigest} options={tag}"


@pytest.mark.parametrize("algorithm", ["xxh3-128", "sha256"])
def test_an_older_mark_naming_the_sources_digest_is_read_by_content(tmp_path, caplog, algorithm):
    """An output of an older version, without the source's identity (a copied
    folder): current while the source has the bytes its mark names."""
    marked().save(tmp_path / "a.tiff")
    mark = older_mark(tmp_path / "a.tiff", algorithm)
    Image.new("RGB", (600, 400), RED).save(tmp_path / "a.jpeg", comment=f"{mark} size=600x400")
    before = (tmp_path / "a.jpeg").read_bytes()
    assert convert(tmp_path) == 0
    assert "1 up to date" in caplog.records[-1].getMessage()
    assert (tmp_path / "a.jpeg").read_bytes() == before
    assert convert(tmp_path) == 0  # now by the identity kept beside it
    assert (tmp_path / "a.jpeg").read_bytes() == before
    marked(corner=GREEN).save(tmp_path / "a.tiff")
    assert convert(tmp_path) == 0
    assert caplog.records[-1].getMessage().startswith("converted 1, ")
    assert_colour_near(opened(tmp_path / "a.jpeg").getpixel((10, 10)), GREEN)
    assert changeImage.output_made(tmp_path / "a.jpeg").digest == changeImage.UNHASHED


@pytest.mark.parametrize("copy", [shutil.copyfile, shutil.copy2], ids=["plain", "with-xattrs"])
def test_a_copied_folder_is_converted_again_once_to_the_same_bytes(tmp_path, caplog, copy):
    """cp (no dates, no attributes) or cp -a (attributes kept, but they name the
    first folder's files): the copy's sources are not the files its outputs were
    made from, so they are made again, to the same bytes, then skipped."""
    caplog.set_level(logging.DEBUG)
    first, copied = tmp_path / "first", tmp_path / "copied"
    make_delivery(first, count=3, size=(300, 200))
    images = first / "supplier-data" / "images"
    assert convert(images) == 0
    shutil.copytree(first, copied, copy_function=copy)
    copies = copied / "supplier-data" / "images"
    before = digest(copies)
    assert convert(copies) == 0
    assert caplog.records[-1].getMessage().startswith("converted 3, ")
    said = f"{copies}/001.tiff is not the file {copies}/001.jpeg was made from"
    assert any(message.startswith(said) for message in caplog.messages)
    assert digest(copies) == before == {name: digest(images)[name] for name in before}
    assert convert(copies) == 0
    assert "3 up to date" in caplog.records[-1].getMessage()


@pytest.mark.parametrize("in_place", [True, False], ids=["rewritten", "renamed-over"])
def test_a_new_photo_of_the_same_size_and_mtime_is_converted(tmp_path, caplog, in_place):
    """Same byte count, same mtime (the archive's): the ctime (or inode) differs."""
    source = tmp_path / "a.tiff"
    marked().save(source)
    assert convert(tmp_path) == 0
    old = source.stat()
    new = tmp_path / ("a.tiff" if in_place else ".new.tiff")
    marked(corner=GREEN).save(new, format="TIFF")
    assert new.stat().st_size == old.st_size
    os.utime(new, ns=(old.st_atime_ns, old.st_mtime_ns))
    new.replace(source)
    assert convert(tmp_path) == 0
    assert caplog.records[-1].getMessage().startswith("converted 1, ")
    assert_colour_near(opened(tmp_path / "a.jpeg").getpixel((10, 10)), GREEN)


@pytest.fixture
def no_attributes(tmp_path) -> Iterator[Path]:
    """A ramfs: a file system that keeps no extended attributes (root only)."""
    point = tmp_path / "ramfs"
    point.mkdir()
    if subprocess.run(["mount", "-t", "ramfs", "ramfs", point], check=False).returncode:
        pytest.skip("cannot mount a ramfs here (needs root)")
    try:
        yield point
    finally:
        subprocess.run(["umount", point], check=False)


def test_where_no_attributes_are_kept_every_run_converts_to_the_same_bytes(
    tmp_path, caplog, no_attributes
):
    marked().save(tmp_path / "a.tiff")
    assert convert(tmp_path, "--output-dir", no_attributes) == 0
    before = (no_attributes / "a.jpeg").read_bytes()
    assert convert(tmp_path, "--output-dir", no_attributes) == 0
    assert caplog.records[-1].getMessage() == "converted 1, skipped 0, failed 0"
    assert (no_attributes / "a.jpeg").read_bytes() == before
    said = f"{no_attributes} keeps no extended attributes: every run converts again"
    assert caplog.messages.count(said) == 2


def test_a_delivery_converted_again_uploads_nothing_again(tmp_path, store):
    """A copied delivery's outputs are made again, to the same bytes: the
    uploader finds every picture in the store already."""
    import supplier_image_upload as uploader

    first = tmp_path / "first"
    make_delivery(first, count=3, size=(300, 200))
    images = first / "supplier-data" / "images"
    assert convert(images) == 0
    assert uploader.main(["--url", store.url, "--images", str(images), "--grace", "1"]) == 0
    posts = store.post_count
    shutil.copytree(first, tmp_path / "copied", copy_function=shutil.copyfile)
    copies = tmp_path / "copied" / "supplier-data" / "images"
    assert convert(copies) == 0
    assert uploader.main(["--url", store.url, "--images", str(copies), "--grace", "1"]) == 0
    assert store.post_count == posts
    assert len(list(store.catalog.images.iterdir())) == 3


@pytest.mark.parametrize("age", [-3600, 3600], ids=["older", "newer"])
@pytest.mark.parametrize("force", [[], ["--force"]], ids=["", "force"])
def test_a_suppliers_own_jpeg_beside_its_tiff_is_never_replaced_nor_taken(
    tmp_path, caplog, monkeypatch, age, force
):
    images = tmp_path / "supplier-data" / "images"
    images.mkdir(parents=True)
    monkeypatch.setenv("SUPPLIER_DATA", str(images.parent))  # the lab's layout
    marked(corner=GREEN).save(images / "001.tiff")
    marked().save(images / "002.tiff")
    Image.new("RGB", (640, 480), RED).save(images / "001.jpeg")
    theirs = (images / "001.jpeg").read_bytes()
    when = (images / "001.tiff").stat().st_mtime + age
    os.utime(images / "001.jpeg", (when, when))
    assert convert(images, *force) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        "001.jpeg was not made by changeImage.py from 001.tiff (an earlier attempt's?):"
        " run ./changeImage.py --replace-unmarked to convert over it"
    ]
    assert (images / "001.jpeg").read_bytes() == theirs
    assert_catalog_jpeg(images / "002.jpeg")
    # 001.jpeg is counted once, as what it is: not an output, and not ours to replace
    assert caplog.records[-1].getMessage() == "converted 1, skipped 1 (not ours), failed 1"


def test_replace_unmarked_converts_over_an_earlier_attempts_jpeg(tmp_path, caplog):
    images = tmp_path / "supplier-data" / "images"
    images.mkdir(parents=True)
    marked(corner=GREEN).save(images / "001.tiff")
    Image.new("RGB", (600, 400), RED).save(images / "001.jpeg")  # a learner's own script's
    assert convert(images, "--replace-unmarked") == 0
    assert changeImage.output_made(images / "001.jpeg")
    assert_colour_near(opened(images / "001.jpeg").getpixel((5, 5)), GREEN)
    assert caplog.records[-1].getMessage() == "converted 1, skipped 1 (earlier outputs), failed 0"
    assert convert(images) == 0
    assert caplog.records[-1].getMessage() == (
        "converted 0, skipped 2 (1 earlier outputs, 1 up to date), failed 0"
    )


def test_replace_unmarked_never_replaces_a_folder(tmp_path, caplog):
    marked().save(tmp_path / "001.tiff")
    (tmp_path / "001.jpeg").mkdir()
    assert convert(tmp_path, "--replace-unmarked") == 1
    assert f"{tmp_path / '001.jpeg'} is a folder; not replaced" in caplog.text
    assert (tmp_path / "001.jpeg").is_dir()


def suppliers_jpeg_with_junk(path: Path) -> None:
    Image.new("RGB", (600, 400), RED).save(path, "JPEG")
    path.write_bytes(path.read_bytes() + b"motion photo" * 100)


SUPPLIERS_OWN_PHOTOS = [  # id, how 009.jpeg is made (no 009.* beside it), the name it needs
    ("jpeg-640x480", lambda path: Image.new("RGB", (640, 480), RED).save(path, "JPEG"), "009.jpg"),
    ("tiff-data", lambda path: Image.new("RGB", (640, 480), RED).save(path, "TIFF"), "009.tiff"),
    ("png-data", lambda path: Image.new("RGB", (640, 480), RED).save(path, "PNG"), "009.png"),
    ("jpeg-with-junk-after-its-end", suppliers_jpeg_with_junk, "009.jpg"),
]


@pytest.mark.parametrize(
    "make, renamed", [pytest.param(*row[1:], id=row[0]) for row in SUPPLIERS_OWN_PHOTOS]
)
def test_the_suppliers_own_photo_under_the_catalogs_name_says_a_way_out_that_works(
    tmp_path, caplog, make, renamed
):
    """The uploader refuses it, so it is one error naming it and the way out (exit
    1; the others convert); taken, the way out makes it a catalog JPEG."""
    make(tmp_path / "009.jpeg")
    marked().save(tmp_path / "001.tiff")
    theirs = (tmp_path / "009.jpeg").read_bytes()
    assert convert(tmp_path) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        "009.jpeg is a photo under the catalog's name, not made by changeImage.py:"
        f" rename it {renamed} and run ./changeImage.py to convert it"
    ]
    assert errors[0] == changeImage.unusable_jpeg(theirs, tmp_path / "009.jpeg").text
    assert (tmp_path / "009.jpeg").read_bytes() == theirs
    assert_catalog_jpeg(tmp_path / "001.jpeg")
    assert caplog.records[-1].getMessage() == "converted 1, skipped 0, failed 1"
    (tmp_path / "009.jpeg").rename(tmp_path / renamed)
    assert convert(tmp_path) == 0
    assert_catalog_jpeg(tmp_path / "009.jpeg")
    assert (
        changeImage.unusable_jpeg((tmp_path / "009.jpeg").read_bytes(), tmp_path / "009.jpeg")
        is None
    )


def test_a_jpeg_of_the_suppliers_alone_is_left_as_it_is(tmp_path, caplog):
    Image.new("RGB", (600, 400), RED).save(tmp_path / "014.jpeg")
    theirs = (tmp_path / "014.jpeg").read_bytes()
    assert convert(tmp_path, "--replace-unmarked") == 0
    assert (tmp_path / "014.jpeg").read_bytes() == theirs
    assert "014.jpeg: not made by changeImage.py; left as it is" in caplog.text
    assert caplog.records[-1].getMessage() == "converted 0, skipped 1 (not ours), failed 0"


# The first marks (version 2.0.0 until December 2026): the source's SHA-256, and the
# options hashed as a list of their values in the fields' order then. The tags were
# made by that code (options_from(parse_args([...]))).
FIRST_MARKS = [
    ([], "bbb37667ff09d144"),
    (["--size", "300x200", "--quality", "90"], "5da4de743bac0835"),
    (["--fit"], "7450a65fc580b555"),
]


@pytest.mark.parametrize("args, tag", FIRST_MARKS, ids=["lab", "size-quality", "fit"])
def test_outputs_with_the_first_marks_are_still_current(tmp_path, caplog, args, tag):
    marked().save(tmp_path / "a.tiff")
    mark = older_mark(tmp_path / "a.tiff", "sha256", tag)
    Image.new("RGB", (600, 400), RED).save(tmp_path / "a.jpeg", comment=f"{mark} size=600x400")
    before = (tmp_path / "a.jpeg").read_bytes()
    assert convert(tmp_path, *args) == 0
    assert (tmp_path / "a.jpeg").read_bytes() == before
    assert caplog.records[-1].getMessage() == (
        "converted 0, skipped 2 (1 earlier outputs, 1 up to date), failed 0"
    )
    marked(corner=GREEN).save(tmp_path / "a.tiff")  # a new photo: made again, new mark
    assert convert(tmp_path, *args) == 0
    assert changeImage.output_made(tmp_path / "a.jpeg").digest == changeImage.UNHASHED


def test_options_are_given_by_keyword_and_their_tag_by_name():
    with pytest.raises(TypeError):
        changeImage.Options((600, 400))
    options = changeImage.Options(size=(300, 200), quality=90)
    fields = [(f.name, f.type, f.default) for f in dataclasses.fields(options)]
    reordered = dataclasses.make_dataclass("Reordered", fields[::-1], frozen=True)
    same = reordered(**dataclasses.asdict(options))
    assert changeImage.options_tag(same) == changeImage.options_tag(options)
    assert changeImage.options_tag(changeImage.Options()) != changeImage.options_tag(options)


COPY_WITHOUT_XXHASH = (
    "import runpy, sys; sys.modules['xxhash'] = None; sys.argv[0] = {script!r};"
    " runpy.run_path({script!r}, run_name='__main__')"
)


def test_a_copy_without_xxhash_writes_the_same_bytes_and_remakes_xxh3_marks(tmp_path):
    """xxhash only reads older xxh3-128 marks: without it such an output, its
    identity lost, cannot be checked and is made again; SHA-256 ones still read."""
    code = COPY_WITHOUT_XXHASH.format(script=str(SCRIPT))

    def without_xxhash(folder: Path) -> str:
        run = [sys.executable, "-c", code, str(folder)]
        done = subprocess.run(run, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        return done.stderr

    for folder in ("with", "without", "xxh3", "sha256"):
        (tmp_path / folder).mkdir()
        marked().save(tmp_path / folder / "a.tiff")
    assert convert(tmp_path / "with") == 0
    assert "converted 1," in without_xxhash(tmp_path / "without")
    made = (tmp_path / "with" / "a.jpeg").read_bytes()
    assert (tmp_path / "without" / "a.jpeg").read_bytes() == made
    for algorithm in ("xxh3-128", "sha256"):
        folder = tmp_path / algorithm.partition("-")[0]
        mark = older_mark(folder / "a.tiff", algorithm)
        Image.new("RGB", (600, 400), RED).save(folder / "a.jpeg", comment=f"{mark} size=600x400")
    assert "converted 1," in without_xxhash(tmp_path / "xxh3")
    assert (tmp_path / "xxh3" / "a.jpeg").read_bytes() == made
    assert "1 up to date" in without_xxhash(tmp_path / "sha256")


@pytest.mark.parametrize(
    "jpeg, source, expected",
    [
        (
            "images/001.jpeg",
            "images/001.tiff",
            "001.jpeg was not made by changeImage.py from 001.tiff (an earlier attempt's?):"
            " run ./changeImage.py --replace-unmarked to convert over it",
        ),
        (
            "out/001.jpeg",
            "images/001.tiff",
            "out/001.jpeg was not made by changeImage.py from images/001.tiff (an earlier"
            " attempt's?): run ./changeImage.py --replace-unmarked --output-dir out to convert"
            " over it",
        ),
        (
            "my photos/001.jpeg",
            "my photos/001.tiff",
            "001.jpeg was not made by changeImage.py from 001.tiff (an earlier attempt's?):"
            " run ./changeImage.py --replace-unmarked 'my photos' to convert over it",
        ),
    ],
    ids=["beside", "output-dir", "another-folder"],
)
def test_the_earlier_attempt_message_is_the_contracts(jpeg, source, expected, monkeypatch):
    """The command as it can be typed: the images folder is named (quoted for the
    shell) unless it is $SUPPLIER_DATA/images, the lab's."""
    monkeypatch.chdir(Path(__file__).parent)
    monkeypatch.setenv("SUPPLIER_DATA", ".")
    assert changeImage.earlier_attempt(Path(jpeg), Path(source)) == expected


def test_two_sources_for_one_target_fail_the_second(tmp_path, caplog):
    Image.new("RGB", (30, 20), RED).save(tmp_path / "001.png")
    Image.new("RGB", (30, 20), GREEN).save(tmp_path / "001.tiff")
    assert convert(tmp_path) == 1
    assert_colour_near(centre(opened(tmp_path / "001.jpeg")), RED)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "001.tiff" in errors[0] and "001.png" in errors[0]


def test_no_temporary_files_are_left(tmp_path):
    make_delivery(tmp_path, count=3, size=(300, 200))
    images = tmp_path / "supplier-data" / "images"
    convert(images)
    assert not [p for p in images.iterdir() if p.name.startswith(".")]


def test_outputs_get_normal_file_permissions(tmp_path):
    marked().save(tmp_path / "a.png")
    old = os.umask(0o022)
    try:
        convert(tmp_path)
    finally:
        os.umask(old)
    assert (tmp_path / "a.jpeg").stat().st_mode & 0o777 == 0o644


@pytest.fixture(scope="module")
def big_batch(tmp_path_factory) -> Path:
    """Enough large images that a run is still busy when a signal arrives: 4 made,
    each under 10 names (hard links: making one costs more than converting it)."""
    images = make_delivery(tmp_path_factory.mktemp("batch"), count=4, size=(1500, 1000)) / "images"
    for made in sorted(images.glob("*.tiff")):
        for copy in range(1, 10):
            os.link(made, images / f"{made.stem}-{copy}.tiff")
    return images


@pytest.fixture
def batch_copy(big_batch, tmp_path) -> Path:
    """The batch in the test's own folder, its files hard-linked (only read)."""
    return Path(shutil.copytree(big_batch, tmp_path / "images", copy_function=os.link))


def test_killed_run_leaves_only_whole_jpegs_and_a_rerun_finishes(batch_copy):
    images = batch_copy
    process = subprocess.Popen([SCRIPT, images, "--jobs", "2", "-q", "--best-quality"])
    deadline = time.monotonic() + 30
    while not list(images.glob("*.jpeg")) and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = list(images.glob("*.jpeg"))
    assert 0 < len(done) < 40
    for jpeg in done:
        assert_catalog_jpeg(jpeg)
    assert convert(images) == 0
    assert len(list(images.glob("*.jpeg"))) == 40
    assert not [p for p in images.iterdir() if p.name.startswith(".")]


def test_sigterm_stops_cleanly_with_whole_outputs(batch_copy):
    images = batch_copy
    process = subprocess.Popen([SCRIPT, images, "--jobs", "2"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not list(images.glob("*.jpeg")) and time.monotonic() < deadline:
        time.sleep(0.005)
    process.terminate()
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    for jpeg in images.glob("*.jpeg"):
        assert_catalog_jpeg(jpeg)
    assert not [p for p in images.iterdir() if p.name.startswith(".")]
    # Every output on disk is counted, also those finished out of name order.
    said = re.search(r"interrupted: converted (\d+)", stderr)
    assert said and int(said[1]) == len(list(images.glob("*.jpeg"))), stderr


# -- bad input ------------------------------------------------------------------


def test_bad_files_fail_alone_with_one_error_each(tmp_path, caplog):
    marked().save(tmp_path / "good.png")
    buffer = io.BytesIO()
    marked().save(buffer, "PNG")
    (tmp_path / "truncated.png").write_bytes(buffer.getvalue()[:200])
    (tmp_path / "garbage.jpg").write_bytes(b"this is not a jpeg at all")
    (tmp_path / "empty.tiff").write_bytes(b"")
    (tmp_path / "empty").write_bytes(b"")
    assert convert(tmp_path) == 1
    assert_catalog_jpeg(tmp_path / "good.jpeg")
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 4
    by_file = {message.split(":")[0].rsplit("/", 1)[-1]: message for message in errors}
    assert "truncated" in by_file["truncated.png"]
    assert "not a readable image" in by_file["garbage.jpg"]
    assert "empty file" in by_file["empty.tiff"] and "empty file" in by_file["empty"]
    assert caplog.records[-1].getMessage() == "converted 1, skipped 0, failed 4"
    assert sorted(p.name for p in tmp_path.glob("*.jpeg")) == ["good.jpeg"]


def test_decompression_bomb_is_refused(tmp_path, caplog):
    Image.new("L", (200, 200)).save(tmp_path / "bomb.png")
    marked((30, 20)).save(tmp_path / "fine.png")
    assert convert(tmp_path, "--max-pixels", "20000") == 1
    assert not (tmp_path / "bomb.jpeg").exists()
    assert (tmp_path / "fine.jpeg").exists()
    [error] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "bomb.png" in error and "decompression-bomb limit" in error


def test_default_limit_refuses_a_real_bomb(tmp_path):
    Image.new("1", (9500, 9500)).save(tmp_path / "bomb.png")
    result = subprocess.run([SCRIPT, tmp_path], capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert "bomb.png: larger than the decompression-bomb limit" in result.stderr


def test_dry_run_lists_and_writes_nothing(tmp_path):
    marked().save(tmp_path / "a.tiff")
    (tmp_path / "README").write_text("x")
    result = subprocess.run(
        [SCRIPT, tmp_path, "--dry-run"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert result.stdout == f"would convert {tmp_path / 'a.tiff'} -> {tmp_path / 'a.jpeg'}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README", "a.tiff"]


def test_dry_run_exits_as_the_real_run_would_when_an_image_would_fail(tmp_path):
    """A dry run that finds an image it cannot open says so and exits 1, as the run
    it stands for would; it still lists the others and writes nothing."""
    marked().save(tmp_path / "a.tiff")
    (tmp_path / "b.tiff").symlink_to(tmp_path / "gone.tiff")  # a dangling link
    for arguments in (["--dry-run"], []):
        result = subprocess.run([SCRIPT, tmp_path, *arguments], capture_output=True, text=True)
        assert result.returncode == 1, (arguments, result.stderr)
        assert f"{tmp_path / 'b.tiff'}: cannot open: No such file or directory" in result.stderr
    assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpeg", "a.tiff", "b.tiff"]


def test_summary_wording():
    from collections import Counter

    Done, Skip = changeImage.Done, changeImage.Skip
    counts = Counter({Done.CONVERTED: 10, Skip.NOT_IMAGES: 2, Done.FAILED: 1})
    assert changeImage.summary(counts) == "converted 10, skipped 2 (not images), failed 1"
    counts[Skip.UP_TO_DATE] = 3
    assert changeImage.summary(counts) == (
        "converted 10, skipped 5 (2 not images, 3 up to date), failed 1"
    )
    counts[Skip.NOT_OURS] = 1
    assert changeImage.summary(counts) == (
        "converted 10, skipped 6 (2 not images, 1 not ours, 3 up to date), failed 1"
    )


# -- fast paths: the same pixels as Pillow's own alpha-weighted resize ----------


def reference(image: Image.Image, size, gap: float) -> Image.Image:
    """What Pillow's resize (premultiplied at full size) gives, on white."""
    small = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=gap)
    return changeImage.flatten(small, WHITE)


@functools.cache
def photo(size) -> Image.Image:
    return photo_like(size, seed=3)


def textured(size, mode="RGBA") -> Image.Image:
    return photo(size).convert(mode)


def with_alpha(image: Image.Image, kind: str) -> Image.Image:
    """Opaque, a transparent band hiding red, or a soft-edged cut-out."""
    image = image.copy()
    alpha = Image.new("L", image.size, 255)
    if kind == "band":
        image.paste(RED if image.mode == "RGB" else 255, (0, 0, image.width, 37))
        alpha.paste(0, (0, 0, image.width, 37))
    elif kind == "cut-out":
        alpha = Image.new("L", image.size, 0)
        box = (image.width // 8, image.height // 8, image.width * 7 // 8, image.height * 7 // 8)
        ImageDraw.Draw(alpha).ellipse(box, fill=255)
        alpha = alpha.filter(ImageFilter.GaussianBlur(3))
    image.putalpha(alpha)
    return image


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
@pytest.mark.parametrize("kind", ["opaque", "band", "cut-out"])
@pytest.mark.parametrize(
    "source, size",
    [((1500, 1000), (600, 400)), ((1234, 567), (600, 400)), ((700, 500), (128, 128))],
)
@pytest.mark.parametrize("gap", [changeImage.FAST_REDUCING_GAP, changeImage.BEST_REDUCING_GAP])
def test_shrinking_matches_pillows_alpha_weighted_resize(mode, kind, source, size, gap):
    image = with_alpha(textured(source, mode[:-1] if mode == "LA" else "RGB"), kind)
    ours = changeImage.flatten(changeImage.shrunk(image, size, gap), WHITE)
    difference = ImageChops.difference(ours, reference(image, size, gap))
    assert ours.size == size
    # Off by a few levels at most where alpha is low: Pillow un-premultiplies the
    # reduced edge blocks before the LANCZOS stage premultiplies them again.
    assert max(high for _, high in difference.getextrema()) <= 4
    assert max(ImageStat.Stat(difference).mean) < 0.05


@pytest.mark.parametrize("compression", ["raw", "tiff_adobe_deflate"])
def test_transparent_band_over_red_stays_white_in_a_large_tiff(tmp_path, compression):
    image = with_alpha(textured((3000, 2000), "RGB"), "band")
    image.save(tmp_path / "a.tiff", tiffinfo={278: 5}, compression=compression)
    assert convert(tmp_path) == 0
    out = assert_catalog_jpeg(tmp_path / "a.jpeg")
    assert_colour_near(out.getpixel((300, 2)), WHITE, 8)


@contextlib.contextmanager
def opened_source(path: Path, root: Path):
    """The source as a conversion opens it: through the checked descriptor."""
    limit = changeImage.IMAGE_LIMIT
    with (
        changeImage.open_delivery_file(path, root, limit) as file,
        changeImage.image_in(file) as image,
    ):
        yield image


def test_single_strip_tiff_is_memory_mapped_through_the_checked_descriptor(tmp_path):
    textured((300, 200)).save(tmp_path / "a.tiff")
    with opened_source(tmp_path / "a.tiff", tmp_path) as image:
        image.load()
        assert image.filename.startswith("/proc/self/fd/")
        assert image.map is not None


def test_the_checked_file_is_the_one_read_even_if_swapped(tmp_path):
    Image.new("RGBA", (300, 200), (*RED, 255)).save(tmp_path / "a.tiff")
    Image.new("RGBA", (300, 200), (*GREEN, 255)).save(tmp_path / "swap.tiff")
    with opened_source(tmp_path / "a.tiff", tmp_path) as image:
        os.replace(tmp_path / "swap.tiff", tmp_path / "a.tiff")  # after the checks
        image.load()
        assert image.getpixel((5, 5)) == (*RED, 255)


@pytest.mark.parametrize("mode", ["RGBA", "RGB", "L"])
def test_strips_stored_back_to_back_are_read_as_one_mapped_block(tmp_path, mode):
    image = textured((301, 203), mode)
    image.save(tmp_path / "a.tiff", tiffinfo={278: 5})
    with opened_source(tmp_path / "a.tiff", tmp_path) as opened_image:
        assert len(opened_image.tile) == 1
        opened_image.load()
        assert ImageChops.difference(opened_image.convert(mode), image).getbbox() is None


def test_strips_not_back_to_back_are_left_to_pillow():
    with Image.open(io.BytesIO(tiff_bytes(tiffinfo={278: 5}))) as image:
        image.tile = [image.tile[0], image.tile[1]._replace(offset=image.tile[1].offset + 4)]
        changeImage.merge_strips(image)
        assert len(image.tile) == 2


def test_truncated_strips_fail_that_file_only(tmp_path, caplog):
    (tmp_path / "cut.tiff").write_bytes(tiff_bytes(tiffinfo={278: 5})[:-5000])
    marked().save(tmp_path / "fine.png")
    assert convert(tmp_path) == 1
    assert (tmp_path / "fine.jpeg").exists() and not (tmp_path / "cut.jpeg").exists()
    assert "cut.tiff: corrupt or truncated image" in caplog.text


def tiff_bytes(**params) -> bytes:
    buffer = io.BytesIO()
    textured((300, 200)).save(buffer, "TIFF", **params)
    return buffer.getvalue()


def deflate_tiff(mode="RGBA", **params) -> bytes:
    """A 301x203 deflate TIFF (its last strip shorter) with varied pixels and alpha."""
    image = with_alpha(textured((301, 203), "RGB"), "cut-out").convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, "TIFF", **{"compression": "tiff_adobe_deflate", **params})
    return buffer.getvalue()


# -- deflate TIFFs inflated with libdeflate ------------------------------------


def without_libdeflate(monkeypatch) -> None:
    """As on a machine where the deflate package is not installed."""
    monkeypatch.setattr(changeImage, "libdeflate", lambda: None)


def with_tag(data: bytes, tag: int, value: int) -> bytes:
    return with_entry(data, tag, 4, [value])


def read_by_pillow(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image


def read_by_the_script(path: Path) -> Image.Image:
    with opened_source(path, path.parent) as image:
        image.load()
        return image.copy()


def assert_same_pixels(image: Image.Image, expected: Image.Image) -> None:
    assert (image.mode, image.size) == (expected.mode, expected.size)
    assert image.tobytes() == expected.tobytes()


def inflated_by_libdeflate(data: bytes) -> bool:
    pytest.importorskip("deflate", reason="the fast path needs the deflate package")
    with tempfile.TemporaryFile() as file:
        file.write(data)
        file.flush()
        with Image.open(file) as image:
            return changeImage.inflated(image, file.fileno()) is not None


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "CMYK"])
@pytest.mark.parametrize(
    "layout",
    [{"tiffinfo": {278: 1}}, {"tiffinfo": {278: 7}}, {"strip_size": 1 << 20}],
    ids=["1-row strips", "7-row strips", "one strip"],
)
def test_deflate_strips_inflate_to_the_pixels_libtiff_gives(tmp_path, mode, layout):
    """libdeflate takes the modes Pillow uses the inflated bytes of in place, in strips
    of MIN_STRIP_BYTES or more (or one strip); libtiff the rest, to the same pixels."""
    data = deflate_tiff(mode, **layout)
    (tmp_path / "a.tiff").write_bytes(data)
    rows = layout.get("tiffinfo", {}).get(278, 203)
    strip_bytes = 301 * len(Image.new(mode, (1, 1)).getbands()) * rows
    big_strips = rows == 203 or strip_bytes >= changeImage.MIN_STRIP_BYTES
    assert inflated_by_libdeflate(data) == (mode in {"L", "RGBA", "CMYK"} and big_strips)
    assert_same_pixels(read_by_the_script(tmp_path / "a.tiff"), read_by_pillow(data))


def big_endian_deflate_tiff(image: Image.Image, rows: int) -> bytes:
    """image (RGB or RGBA) as a big-endian deflate TIFF in strips of rows."""
    line, samples = image.width * len(image.mode), len(image.mode)
    raw = image.tobytes()
    strips = [
        zlib.compress(raw[top * line : (top + rows) * line]) for top in range(0, image.height, rows)
    ]
    offsets = list(itertools.accumulate((len(strip) for strip in strips[:-1]), initial=8))
    ifd, n, count = 8 + sum(map(len, strips)), len(strips), 10 + (samples == 4)
    extra = ifd + 2 + 12 * count + 4  # values that do not fit in an entry go after the IFD
    entries = [
        (256, 4, 1, struct.pack(">I", image.width)),
        (257, 4, 1, struct.pack(">I", image.height)),
        (258, 3, samples, struct.pack(">I", extra)),
        (259, 3, 1, struct.pack(">HH", 8, 0)),
        (262, 3, 1, struct.pack(">HH", 2, 0)),
        (273, 4, n, struct.pack(">I", extra + 2 * samples)),
        (277, 3, 1, struct.pack(">HH", samples, 0)),
        (278, 4, 1, struct.pack(">I", rows)),
        (279, 4, n, struct.pack(">I", extra + 2 * samples + 4 * n)),
        (284, 3, 1, struct.pack(">HH", 1, 0)),
        (338, 3, 1, struct.pack(">HH", 2, 0)),  # unassociated alpha
    ][:count]
    table = b"".join(struct.pack(">HHI", *entry[:3]) + entry[3] for entry in entries)
    values = struct.pack(f">{samples}H{n}I{n}I", *[8] * samples, *offsets, *map(len, strips))
    head = b"MM\x00*" + struct.pack(">I", ifd)
    return head + b"".join(strips) + struct.pack(">H", count) + table + bytes(4) + values


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_a_big_endian_deflate_tiff_is_inflated_too(tmp_path, mode):
    data = big_endian_deflate_tiff(
        with_alpha(textured((301, 203), "RGB"), "cut-out").convert(mode), 7
    )
    (tmp_path / "a.tiff").write_bytes(data)
    assert inflated_by_libdeflate(data) == (mode == "RGBA")  # RGB: Pillow would copy it
    assert_same_pixels(read_by_the_script(tmp_path / "a.tiff"), read_by_pillow(data))


def test_the_old_deflate_compression_value_is_inflated_too(tmp_path):
    data = with_tag(deflate_tiff(), changeImage.COMPRESSION, 32946)
    (tmp_path / "a.tiff").write_bytes(data)
    assert inflated_by_libdeflate(data)
    assert_same_pixels(read_by_the_script(tmp_path / "a.tiff"), read_by_pillow(data))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(lambda: deflate_tiff(tiffinfo={317: 2}), id="horizontal predictor"),
        pytest.param(lambda: deflate_tiff(tiffinfo={274: 6}), id="orientation tag"),
        pytest.param(lambda: with_tag(deflate_tiff(), 338, 1), id="associated alpha"),
        pytest.param(lambda: with_tag(deflate_tiff("L"), 262, 0), id="white is zero"),
        pytest.param(lambda: deflate_tiff("I;16"), id="16-bit"),
        pytest.param(lambda: deflate_tiff("P"), id="palette"),
        pytest.param(lambda: deflate_tiff("1"), id="1-bit"),
        pytest.param(lambda: deflate_tiff(compression="tiff_lzw"), id="LZW"),
        pytest.param(lambda: deflate_tiff(compression="raw"), id="uncompressed"),
    ],
)
def test_other_tiffs_are_left_to_pillow(tmp_path, data):
    data = data()
    assert not inflated_by_libdeflate(data)
    (tmp_path / "a.tiff").write_bytes(data)
    assert convert(tmp_path) == 0
    assert_catalog_jpeg(tmp_path / "a.jpeg")


STORED_NOT_AS_LIBTIFF_READS = {
    "rows per strip twice": (changeImage.ROWS_PER_STRIP, 4, [7, 7]),
    "width twice": (changeImage.WIDTH, 3, [301, 301]),
    "compression twice": (changeImage.COMPRESSION, 3, [8, 9]),
    "bits per sample as fractions": (changeImage.BITS_PER_SAMPLE, 5, [(8, 1)] * 4),
    "samples per pixel as a float": (changeImage.SAMPLES_PER_PIXEL, 11, [4.0]),
    "planar configuration with no value": (changeImage.PLANAR, 3, []),
    "sample format with no value": (changeImage.SAMPLE_FORMAT, 3, []),
    "extra samples as a double": (changeImage.EXTRA_SAMPLES, 12, [2.0]),
    "planar configuration twice": (changeImage.PLANAR, 3, [1], {"again": True}),
    "sample format cut off": (changeImage.SAMPLE_FORMAT, 3, [1] * 4, {"cut_off": True}),
}


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow on the crafted tags
@pytest.mark.parametrize("case", list(STORED_NOT_AS_LIBTIFF_READS))
def test_tags_libtiff_would_refuse_are_left_to_it(tmp_path, caplog, monkeypatch, case):
    # Pillow reads these (the first of two values, a fraction as a number); libtiff
    # refuses the file, so the script must too.
    tag, field_type, values, *how = STORED_NOT_AS_LIBTIFF_READS[case]
    data = with_entry(deflate_tiff(tiffinfo={278: 7}), tag, field_type, values, **dict(*how))
    assert not inflated_by_libdeflate(data)
    fast = outcome_of(data, tmp_path / "with", caplog)
    without_libdeflate(monkeypatch)
    assert fast == outcome_of(data, tmp_path / "without", caplog)


OTHER_TAGS = {
    "tile length alone": (323, 4, [16]),
    "tile offsets without tile sizes": (324, 4, [8]),
    "a minimum sample value per sample": (280, 3, [0, 1, 0]),
    "a broken EXIF pointer": (34665, 9, [-1]),
    "a GPS pointer": (34853, 4, [8]),
}


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow on the crafted tags
@pytest.mark.parametrize("case", list(OTHER_TAGS))
def test_tags_the_fast_path_does_not_read_leave_the_file_to_pillow(
    tmp_path, caplog, monkeypatch, case
):
    # libtiff reads tile offsets where the strip offsets are, Pillow fails on a
    # broken EXIF pointer after decoding: what such tags mean is theirs to say.
    data = with_entry(deflate_tiff("RGB", strip_size=1 << 20), *OTHER_TAGS[case])
    assert not inflated_by_libdeflate(data)
    fast = outcome_of(data, tmp_path / "with", caplog)
    without_libdeflate(monkeypatch)
    assert fast == outcome_of(data, tmp_path / "without", caplog)


def test_an_xmp_orientation_leaves_the_file_to_pillow_and_is_applied_once(tmp_path):
    xmp = b'<x:xmpmeta><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'
    data = deflate_tiff("RGB", tiffinfo={700: xmp})
    assert not inflated_by_libdeflate(data)
    (tmp_path / "a.tiff").write_bytes(data)
    assert convert(tmp_path, "--fit", "--size", "600x600") == 0
    assert_catalog_jpeg(tmp_path / "a.jpeg", size=(405, 600))  # 301x203 turned: 203x301


def test_descriptive_tags_keep_the_fast_path(tmp_path):
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    info = {270: "apples", 305: "scanner 2.0", 306: "2026:11:26 10:00:00", 33432: "(c) us"}
    data = deflate_tiff("RGBA", dpi=(300, 300), icc_profile=profile, tiffinfo=info)
    (tmp_path / "a.tiff").write_bytes(data)
    assert inflated_by_libdeflate(data)
    assert_same_pixels(read_by_the_script(tmp_path / "a.tiff"), read_by_pillow(data))


def test_tags_stored_as_libtiff_reads_them_in_other_integer_types_are_inflated(tmp_path):
    # Pillow writes these as SHORT and leaves SampleFormat out; LONG is as good.
    data = with_entry(deflate_tiff(tiffinfo={278: 7}), changeImage.ROWS_PER_STRIP, 4, [7])
    data = with_entry(data, changeImage.BITS_PER_SAMPLE, 4, [8] * 4)
    data = with_entry(data, changeImage.SAMPLE_FORMAT, 4, [1] * 4)
    (tmp_path / "a.tiff").write_bytes(data)
    assert inflated_by_libdeflate(data)
    assert_same_pixels(read_by_the_script(tmp_path / "a.tiff"), read_by_pillow(data))


def test_more_strips_than_the_limit_are_left_to_pillow(monkeypatch):
    monkeypatch.setattr(changeImage, "MAX_STRIPS", 28)
    assert not inflated_by_libdeflate(deflate_tiff(tiffinfo={278: 7}))  # 29 strips
    assert inflated_by_libdeflate(deflate_tiff(tiffinfo={278: 8}))  # 26


def test_a_deflate_module_without_libdeflate_s_calls_is_not_used(monkeypatch, tmp_path):
    """deflate before 0.5, or a folder named deflate beside a copy: Pillow reads."""
    monkeypatch.setitem(sys.modules, "deflate", types.ModuleType("deflate"))
    changeImage.libdeflate.cache_clear()
    try:
        data = deflate_tiff(tiffinfo={278: 8})
        (tmp_path / "a.tiff").write_bytes(data)
        assert not inflated_by_libdeflate(data)
        assert_same_pixels(read_by_the_script(tmp_path / "a.tiff"), read_by_pillow(data))
    finally:
        changeImage.libdeflate.cache_clear()


def test_strips_that_overlap_are_not_read_again_and_again(tmp_path):
    (tmp_path / "a.tiff").write_bytes(deflate_tiff(tiffinfo={278: 7}))
    with open(tmp_path / "a.tiff", "rb") as file, Image.open(file) as image:
        assert changeImage.inflated(image, file.fileno()) is not None
        # Each strip within the file, all of them the same half of it.
        offsets = image.tag_v2[changeImage.STRIP_OFFSETS]
        half = (os.fstat(file.fileno()).st_size - offsets[0]) // 2
        image.tag_v2[changeImage.STRIP_OFFSETS] = (offsets[0],) * len(offsets)
        image.tag_v2[changeImage.STRIP_BYTE_COUNTS] = (half,) * len(offsets)
        assert changeImage.inflated(image, file.fileno()) is None


def flip_a_byte(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


BROKEN_DEFLATE_TIFFS = {
    "a byte flipped": lambda: flip_a_byte(deflate_tiff(strip_size=1 << 20)),
    "strip beyond the end": lambda: with_tag(deflate_tiff(strip_size=1 << 20), 273, 1 << 30),
    "byte count cut short": lambda: with_tag(deflate_tiff(strip_size=1 << 20), 279, 100),
    "0 rows per strip": lambda: with_tag(deflate_tiff(strip_size=1 << 20), 278, 0),
}


def outcome_of(data: bytes, folder: Path, caplog) -> tuple[int, bytes | None, list[str]]:
    folder.mkdir()
    (folder / "a.tiff").write_bytes(data)
    caplog.clear()
    status = convert(folder)
    output = folder / "a.jpeg"
    said = [record.getMessage().replace(str(folder), "") for record in caplog.records]
    return status, output.read_bytes() if output.exists() else None, said


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow on the crafted tags
@pytest.mark.parametrize("broken", list(BROKEN_DEFLATE_TIFFS))
def test_a_broken_deflate_tiff_gets_what_pillow_alone_gives(tmp_path, caplog, monkeypatch, broken):
    data = BROKEN_DEFLATE_TIFFS[broken]()
    (tmp_path / "a.tiff").write_bytes(data)
    with open(tmp_path / "a.tiff", "rb") as file, Image.open(file) as image:
        assert changeImage.inflated(image, file.fileno()) is None
    fast = outcome_of(data, tmp_path / "with", caplog)
    without_libdeflate(monkeypatch)
    assert fast == outcome_of(data, tmp_path / "without", caplog)


def test_a_hidden_deflate_package_leaves_deflate_tiffs_to_pillow(tmp_path, monkeypatch):
    data = deflate_tiff(tiffinfo={278: 7})
    assert inflated_by_libdeflate(data)
    (tmp_path / "a.tiff").write_bytes(data)
    monkeypatch.setitem(sys.modules, "deflate", None)  # `import deflate` fails, as when missing
    changeImage.libdeflate.cache_clear()
    try:
        assert changeImage.libdeflate() is None
        with open(tmp_path / "a.tiff", "rb") as file, Image.open(file) as image:
            assert changeImage.inflated(image, file.fileno()) is None
        assert_same_pixels(read_by_the_script(tmp_path / "a.tiff"), read_by_pillow(data))
    finally:
        changeImage.libdeflate.cache_clear()  # imported again by the next test


def test_without_the_deflate_package_the_output_is_the_same(tmp_path):
    pytest.importorskip("deflate", reason="compares the fast path with Pillow's")
    for folder in ("with", "without"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "a.tiff").write_bytes(deflate_tiff())
    blocked = "import runpy, sys; sys.modules['deflate'] = None; sys.argv[0] = sys.argv[1]; "
    blocked += "del sys.argv[1]; runpy.run_path(sys.argv[0], run_name='__main__')"
    for command in (
        [sys.executable, SCRIPT, tmp_path / "with"],
        [sys.executable, "-c", blocked, SCRIPT, tmp_path / "without"],
    ):
        assert subprocess.run(command, capture_output=True, timeout=60).returncode == 0
    with_it, without_it = (tmp_path / name / "a.jpeg" for name in ("with", "without"))
    assert with_it.read_bytes() == without_it.read_bytes()


# -- order of the work ----------------------------------------------------------


def test_compressed_images_start_first_and_are_reported_in_name_order(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("a", "b"):
        textured((300, 200)).save(tmp_path / f"{name}.tiff")
    (tmp_path / "c.tiff").write_bytes(deflate_tiff())
    started = []
    original = changeImage.convert_file

    def recorded(task, options):
        started.append(task.source.name)
        return original(task, options)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(changeImage, "convert_file", recorded)
        assert convert(tmp_path, "--jobs", "1") == 0
    assert started[0] == "c.tiff"
    converted = [r.getMessage().split()[1] for r in caplog.records if "->" in r.getMessage()]
    assert [Path(name).name for name in converted] == ["a.tiff", "b.tiff", "c.tiff"]


@pytest.mark.parametrize("mode", ["RGBA", "RGB", "L", "LA", "P", "I;16", "CMYK", "1"])
@pytest.mark.parametrize("size", [(1500, 1000), (599, 401), (40, 30)])
def test_every_mode_and_size_gives_a_catalog_jpeg(tmp_path, mode, size):
    image = marked(size)
    if mode == "I;16":
        image = image.convert("L").point(lambda v: v * 257, "I").convert("I;16")
    image = image.convert(mode)
    image.save(tmp_path / ("a.png" if mode in {"I;16", "LA"} else "a.tiff"))
    assert convert(tmp_path) == 0
    out = assert_catalog_jpeg(tmp_path / "a.jpeg")
    if mode in {"RGBA", "RGB", "P", "CMYK"}:
        assert_colour_near(centre(out), BLUE, 40)
        assert_colour_near(out.getpixel((20, 20)), RED, 40)


def test_best_quality_has_no_moire_on_fine_stripes(tmp_path):
    # Stripes finer than the output's pixels: a box average folds them into
    # visible bands; LANCZOS from nearer full size averages them to flat grey.
    row = bytes(int(127.5 + 127.5 * math.sin(2 * math.pi * x / 2.2)) for x in range(1500))
    Image.frombytes("L", (1500, 1000), row * 1000).save(tmp_path / "a.png")
    assert convert(tmp_path) == 0
    banded = ImageStat.Stat(opened(tmp_path / "a.jpeg").convert("L")).stddev[0]
    assert convert(tmp_path, "--best-quality", "--force") == 0
    flat = ImageStat.Stat(opened(tmp_path / "a.jpeg").convert("L")).stddev[0]
    assert flat < 2 < banded


# -- delivery files: refused, never read ------------------------------------------


def images_with_one_good(tmp_path: Path) -> Path:
    images = tmp_path / "supplier-data" / "images"
    images.mkdir(parents=True)
    marked().save(images / "good.tiff")
    return images


def link_out(images: Path) -> str:
    secret = images.parent.parent / "private.tiff"
    marked(corner=GREEN).save(secret)
    (images / "secret.tiff").symlink_to(secret)
    return "secret.tiff: links outside"


def fifo(images: Path) -> str:
    os.mkfifo(images / "pipe.tiff")
    return "pipe.tiff: a FIFO, not a regular file; not read"


def huge(images: Path) -> str:
    with open(images / "huge.tiff", "wb") as file:
        file.truncate(changeImage.IMAGE_LIMIT + 1)  # sparse: no disk used
    return "huge.tiff: 209715201 bytes, over the limit of 209715200; not read"


def device(images: Path) -> str:
    try:
        os.mknod(images / "zero.tiff", 0o600 | stat.S_IFCHR, os.makedev(1, 5))
    except PermissionError:
        pytest.skip("creating a device node needs root")
    return "zero.tiff: a device, not a regular file; not read"


def link_to_dev_zero(images: Path) -> str:
    (images / "zero.tiff").symlink_to("/dev/zero")
    return "zero.tiff: links outside"


@pytest.mark.parametrize("make", [link_out, fifo, huge, device, link_to_dev_zero])
def test_files_that_are_not_the_deliverys_are_refused_by_name(tmp_path, make):
    images = images_with_one_good(tmp_path)
    message = make(images)
    result = run_script(images, timeout=60)
    assert result.returncode == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in images.glob("*.jpeg")) == ["good.jpeg"]


def test_a_link_that_stays_inside_the_folder_is_read(tmp_path):
    images = images_with_one_good(tmp_path)
    (images / "alias.tiff").symlink_to(images / "good.tiff")
    assert convert(images) == 0
    assert_catalog_jpeg(images / "alias.jpeg")


def test_a_linked_images_folder_is_fine(tmp_path):
    images = images_with_one_good(tmp_path)
    (tmp_path / "linked").symlink_to(images)
    assert convert(tmp_path / "linked") == 0
    assert_catalog_jpeg(images / "good.jpeg")


def test_apple_double_files_are_ignored_and_upper_case_extensions_accepted(tmp_path, caplog):
    marked().save(tmp_path / "D25.TIFF")
    marked().save(tmp_path / "D26.JPG")
    (tmp_path / "._D25.TIFF").write_bytes(b"\0\5\26\7" + b"\0" * 80)
    assert convert(tmp_path) == 0
    assert sorted(p.name for p in tmp_path.glob("*.jpeg")) == ["D25.jpeg", "D26.jpeg"]
    assert "._D25.TIFF: hidden file" in caplog.text


def test_unusable_icc_profile_is_dropped_with_a_warning(tmp_path, caplog):
    marked().save(tmp_path / "a.png", icc_profile=b"\0" * 16 + b"RGB " + b"garbage" * 20)
    assert convert(tmp_path) == 0
    out = assert_catalog_jpeg(tmp_path / "a.jpeg")
    assert "icc_profile" not in out.info
    assert "unusable ICC profile" in caplog.text
    assert_colour_near(centre(out), BLUE)


def test_unusable_cmyk_profile_falls_back_to_the_plain_conversion(tmp_path, caplog):
    Image.new("CMYK", (30, 20), (255, 0, 0, 0)).save(
        tmp_path / "a.tiff", icc_profile=b"\0" * 16 + b"CMYK" + b"junk" * 30
    )
    assert convert(tmp_path) == 0
    assert_colour_near(centre(assert_catalog_jpeg(tmp_path / "a.jpeg")), (0, 255, 255))
    assert f"{tmp_path / 'a.tiff'}: unusable CMYK profile" in caplog.text


# -- our own errors: the output cannot be written ----------------------------------


def run_script(*args, env=None, timeout=120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SCRIPT, *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        **kwargs,
    )


@pytest.fixture
def small_mount(tmp_path) -> Iterator[Callable[[str], Path]]:
    """mount(options): a tmpfs mounted with those options (root only)."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        point = tmp_path / f"mount{len(mounted)}"
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", point], check=False)
        if done.returncode:
            pytest.skip("cannot mount a tmpfs here (needs root)")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", point], check=False)


def three_images(tmp_path) -> Path:
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a", "b", "c"):
        textured((600, 400)).save(images / f"{name}.tiff")
    return images


def test_full_output_disk_stops_the_run_blaming_the_disk(tmp_path, small_mount):
    images, out = three_images(tmp_path), small_mount("size=40k")
    result = run_script(images, "--output-dir", out, "--quality", "100")
    assert result.returncode == 2, result.stderr
    assert f"cannot write {out}/" in result.stderr
    assert "No space left on device" in result.stderr
    assert "corrupt" not in result.stderr and "Traceback" not in result.stderr
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    for jpeg in out.iterdir():
        assert_catalog_jpeg(jpeg)


def test_read_only_output_folder_stops_before_converting(tmp_path, small_mount):
    images, out = three_images(tmp_path), small_mount("ro,size=1m")
    result = run_script(images, "--output-dir", out)
    assert result.returncode == 2, result.stderr
    assert f"cannot write {out}: Read-only file system" in result.stderr
    assert "Traceback" not in result.stderr


def test_file_size_limit_is_reported_as_a_write_error(tmp_path):
    images = three_images(tmp_path)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    result = run_script(images, "--quality", "100", preexec_fn=limit)
    assert result.returncode == 2, result.stderr
    assert "cannot write" in result.stderr and "File too large" in result.stderr
    assert "corrupt" not in result.stderr and "Traceback" not in result.stderr
    assert not [p for p in images.iterdir() if p.name.startswith(".")]


# -- one run at a time per delivery --------------------------------------------------


def test_a_second_run_on_the_same_delivery_exits_2_naming_the_first(batch_copy):
    first = subprocess.Popen([SCRIPT, batch_copy, "--jobs", "1", "-q", "--best-quality"])
    try:
        wait_for(lambda: list(batch_copy.glob("*.jpeg")))
        second = run_script(batch_copy, timeout=60)
    finally:
        first.wait(timeout=120)
    assert second.returncode == 2, second.stderr
    assert f"is in use by changeImage.py (pid {first.pid}" in second.stderr
    assert "--wait SECONDS" in second.stderr
    assert first.returncode == 0
    assert len(list(batch_copy.glob("*.jpeg"))) == 40


def test_a_second_run_can_wait_for_the_first(batch_copy):
    first = subprocess.Popen([SCRIPT, batch_copy, "--jobs", "1", "-q"])
    try:
        wait_for(lambda: list(batch_copy.glob("*.jpeg")))
        second = run_script(batch_copy, "--wait", "100", env={"IMAGE_JOBS": "1"}, timeout=120)
    finally:
        first.wait(timeout=120)
    assert second.returncode == 0, second.stderr
    assert "converted 0" in second.stderr and "40 up to date" in second.stderr


def test_stale_temporaries_of_a_killed_run_are_removed(tmp_path):
    marked().save(tmp_path / "a.tiff")
    stale = tmp_path / ".a.jpeg.abc123.tmp"
    stale.write_bytes(b"half a jpeg")
    older = tmp_path / ".a.jpeg.def456.changeImage.tmp"  # as versions before the files block
    older.write_bytes(b"half a jpeg")
    other = tmp_path / ".someone-elses.tmp"
    other.write_bytes(b"x")
    assert convert(tmp_path) == 0
    assert not stale.exists() and not older.exists() and other.exists()


# -- what people read ---------------------------------------------------------------


ICON_COMMAND = (
    "./changeImage.py --size 128x128 --rotate 90 --format JPEG --suffix '' \\\n"
    "          --output-dir /opt/icons ~/images"
)


def test_help_shows_examples_exit_statuses_metavars_and_the_icon_job():
    result = run_script("--help")
    assert result.returncode == 0
    for fragment in (
        ICON_COMMAND,
        "Exit status:",
        "130 interrupted",
        "--rotate DEG",
        "--jobs N",
        "--wait SECONDS",
        "--suffix EXT",
        "[IMAGE_SUFFIX]",
    ):
        assert fragment in result.stdout


def test_version():
    result = run_script("--version")
    assert (result.returncode, result.stdout) == (0, f"changeImage.py {changeImage.__version__}\n")


def test_verbose_shows_steps_not_pillows_tiff_tags(tmp_path):
    textured((300, 200)).save(tmp_path / "a.tiff")
    result = run_script(tmp_path, "-v")
    assert result.returncode == 0
    lines = result.stderr.splitlines()
    assert any("converted" in line and "a.jpeg" in line for line in lines)
    assert len(lines) <= 3, lines


def test_quiet_prints_only_errors(tmp_path):
    marked().save(tmp_path / "a.tiff")
    (tmp_path / "README").write_text("x")
    result = run_script(tmp_path, "-q")
    assert (result.returncode, result.stderr) == (0, "")


def test_icon_job_writes_names_without_extension(tmp_path):
    images, icons = tmp_path / "images", tmp_path / "icons"
    images.mkdir()
    icons.mkdir()
    marked((192, 192)).save(images / "ic_edit_location_black_48dp", "TIFF")
    command = ["--size", "128x128", "--rotate", "90", "--format", "JPEG", "--suffix", ""]
    result = run_script(*command, "--output-dir", icons, images)
    assert result.returncode == 0, result.stderr
    out = assert_catalog_jpeg(icons / "ic_edit_location_black_48dp", (128, 128))
    assert_colour_near(out.getpixel((120, 8)), RED)


def test_empty_suffix_from_the_environment(tmp_path):
    icons = tmp_path / "icons"
    icons.mkdir()
    marked().save(tmp_path / "ic_box.png")
    env = {"IMAGE_SUFFIX": "", "IMAGE_OUTPUT_DIR": str(icons), "IMAGE_FORMAT": "jpg"}
    result = run_script(tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert_catalog_jpeg(icons / "ic_box")


@pytest.fixture(scope="module")
def slow_batch(tmp_path_factory) -> Path:
    """20 deflate TIFFs: work the progress line can follow (PROGRESS_AFTER=0)."""
    folder = tmp_path_factory.mktemp("slow") / "images"
    folder.mkdir()
    textured((750, 500)).save(folder / "001.tiff", compression="tiff_adobe_deflate")
    for number in range(2, 21):
        os.link(folder / "001.tiff", folder / f"{number:03d}.tiff")
    return folder


def test_progress_on_a_terminal_not_in_a_pipe(slow_batch, tmp_path, monkeypatch):
    monkeypatch.setenv("PROGRESS_AFTER", "0")  # the line at once, not after 2 s of work
    images = Path(shutil.copytree(slow_batch, tmp_path / "tty", copy_function=os.link))
    command = [SCRIPT, images, "--jobs", "1"]
    main_end, sub_end = pty.openpty()
    with subprocess.Popen(command, stderr=sub_end, stdout=subprocess.DEVNULL) as process:
        os.close(sub_end)
        shown = read_all(main_end)
    assert process.returncode == 0
    assert "\rconverted " in shown and "/20, " in shown and " s left" in shown
    piped = run_script(images, "--jobs", "1", "--size", "300x200")
    assert piped.returncode == 0
    assert "\r" not in piped.stderr and "s left" not in piped.stderr


def read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the other end closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode()


# -- bad input: each row is a case ------------------------------------------------------

# id, arguments (IMAGES = the images folder, EMPTY = a folder with only a hidden file),
# environment, exit status, message fragment.
# What must not change: the images folder (no output, nothing modified).
BAD_INPUT = [
    ("no such folder", ["/no/such/dir"], {}, 2, "no such file or directory: /no/such/dir"),
    ("no files", ["EMPTY"], {}, 2, "empty: no files to convert; is it the delivery's images"),
    ("no files, dry run", ["EMPTY", "--dry-run"], {}, 2, "empty: no files to convert"),
    ("size words", ["IMAGES", "--size", "600by400"], {}, 2, "expected WIDTHxHEIGHT"),
    ("size zero", ["IMAGES", "--size", "0x400"], {}, 2, "each side from 1 to 10000"),
    ("size huge", ["IMAGES", "--size", "100000x100000"], {}, 2, "each side from 1 to 10000"),
    ("size nan", ["IMAGES", "--size", "nanxnan"], {}, 2, "expected WIDTHxHEIGHT"),
    ("rotate nan", ["IMAGES", "--rotate", "nan"], {}, 2, "--rotate: 'nan' is not from -360"),
    ("rotate inf", ["IMAGES", "--rotate", "inf"], {}, 2, "--rotate: 'inf' is not from"),
    ("rotate 1e309", ["IMAGES", "--rotate", "1e309"], {}, 2, "--rotate: '1e309' is not from"),
    ("rotate word", ["IMAGES", "--rotate", "right"], {}, 2, "'right' is not a number"),
    ("quality 0", ["IMAGES", "--quality", "0"], {}, 2, "--quality: '0' is not from 1 to 100"),
    ("quality 101", ["IMAGES", "--quality", "101"], {}, 2, "'101' is not from 1 to 100"),
    ("quality 8.5", ["IMAGES", "--quality", "8.5"], {}, 2, "'8.5' is not a whole number"),
    ("jobs negative", ["IMAGES", "--jobs", "-1"], {}, 2, "--jobs: '-1' is not from 0 to 256"),
    ("jobs huge", ["IMAGES", "--jobs", "100000"], {}, 2, "--jobs: '100000' is not from 0"),
    ("max pixels 0", ["IMAGES", "--max-pixels", "0"], {}, 2, "--max-pixels: '0' is not from 1"),
    ("wait nan", ["IMAGES", "--wait", "nan"], {}, 2, "--wait: 'nan' is not from 0"),
    ("format gif", ["IMAGES", "--format", "gif"], {}, 2, "'gif' is not one of JPEG"),
    ("colour", ["IMAGES", "--background", "not-a-colour"], {}, 2, "not a colour"),
    ("suffix path", ["IMAGES", "--suffix", "../x"], {}, 2, "is not '' or an extension"),
    ("suffix none in place", ["IMAGES", "--suffix", ""], {}, 2, "--suffix '' needs an"),
    ("output not a folder", ["IMAGES", "--output-dir", "/etc/hostname"], {}, 2, ": not a folder"),
    ("env format", ["IMAGES"], {"IMAGE_FORMAT": "gif"}, 2, "environment variable IMAGE_FORMAT"),
    ("env rotate", ["IMAGES"], {"IMAGE_ROTATE": "nan"}, 2, "environment variable IMAGE_ROTATE"),
    ("env size", ["IMAGES"], {"IMAGE_SIZE": "1e9x1"}, 2, "environment variable IMAGE_SIZE"),
    ("env quality", ["IMAGES"], {"IMAGE_QUALITY": "inf"}, 2, "environment variable IMAGE_QUALITY"),
    ("env jobs", ["IMAGES"], {"IMAGE_JOBS": "-3"}, 2, "environment variable IMAGE_JOBS"),
    ("env suffix", ["IMAGES"], {"IMAGE_SUFFIX": "jpeg"}, 2, "environment variable IMAGE_SUFFIX"),
    ("env wait", ["IMAGES"], {"IMAGE_WAIT": "-1"}, 2, "environment variable IMAGE_WAIT"),
    ("env pixels", ["IMAGES"], {"IMAGE_MAX_PIXELS": "1e309"}, 2, "IMAGE_MAX_PIXELS"),
]


@pytest.mark.parametrize(
    "args, env, status, message", [row[1:] for row in BAD_INPUT], ids=[row[0] for row in BAD_INPUT]
)
def test_bad_input_is_a_clear_error(tmp_path, args, env, status, message):
    images = images_with_one_good(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".fruit-catalog.lock").touch()  # hidden: not a file of the delivery
    before = digest(images)
    folders = {"IMAGES": str(images), "EMPTY": str(empty)}
    result = run_script(*[folders.get(a, a) for a in args], env=env)
    assert result.returncode == status, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert digest(images) == before


@pytest.mark.parametrize("kind", ["FIFO", "dangling link"])
def test_a_folder_of_one_unreadable_file_names_that_file(tmp_path, kind):
    """Not "no files to convert": the file is there, and what is wrong with it is said."""
    photo = tmp_path / "001.tiff"
    if kind == "FIFO":
        os.mkfifo(photo)
    else:
        photo.symlink_to(tmp_path / "gone.tiff")
    result = run_script(tmp_path)
    assert result.returncode == 1, result.stderr
    assert f"ERROR {photo}" in result.stderr and "no files to convert" not in result.stderr


@pytest.mark.parametrize(
    "spelling, extension", [("jpg", ".jpeg"), ("JPEG", ".jpeg"), ("tif", ".tiff"), ("png", ".png")]
)
def test_format_aliases_are_accepted_from_flag_and_environment(tmp_path, spelling, extension):
    marked().save(tmp_path / "a.gif")
    assert run_script(tmp_path, "--format", spelling).returncode == 0
    assert (tmp_path / f"a{extension}").exists()
    (tmp_path / f"a{extension}").unlink()
    assert run_script(tmp_path, env={"IMAGE_FORMAT": spelling}).returncode == 0
    assert (tmp_path / f"a{extension}").exists()


def test_a_lock_file_planted_as_a_link_is_refused_and_its_target_untouched(tmp_path):
    images = tmp_path / "supplier-data" / "images"
    images.mkdir(parents=True)
    Image.new("RGB", (30, 20), "red").save(images / "001.tiff")
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    (images.parent / ".fruit-catalog.lock").symlink_to(precious)
    result = run_script(images, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "as the lock: Too many levels of symbolic links" in result.stderr
    assert precious.read_text() == "keep me"
    assert not (images / "001.jpeg").exists()


def attributes_kept(folder: Path) -> bool:
    probe = folder / "probe"
    probe.touch()
    try:
        os.setxattr(probe, changeImage.SOURCE_ATTRIBUTE, b"x")
    except OSError:
        return False
    finally:
        probe.unlink()
    return True


# id, how an output of ours is changed in place (its attributes stay: same inode)
CHANGED_IN_PLACE = [
    ("another delivery's output copied over it", lambda ours, theirs: theirs.read_bytes()),
    ("padded with junk after its end", lambda ours, theirs: ours.read_bytes() + b"\0" * 4096),
]


@pytest.mark.parametrize("change", [pytest.param(case[1], id=case[0]) for case in CHANGED_IN_PLACE])
def test_an_output_changed_in_place_is_made_again(tmp_path, change):
    if not attributes_kept(tmp_path):
        pytest.skip("this file system keeps no user attributes: every source is hashed")
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    for folder, corner in ((ours, RED), (theirs, (0, 0, 255))):
        folder.mkdir()
        marked(corner=corner).save(folder / "001.tiff")
        assert convert(folder) == 0
    made = (ours / "001.jpeg").read_bytes()
    (ours / "001.jpeg").write_bytes(change(ours / "001.jpeg", theirs / "001.jpeg"))
    assert convert(ours) == 0
    assert (ours / "001.jpeg").read_bytes() == made
