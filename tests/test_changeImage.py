"""changeImage.py: every image becomes a correct catalog JPEG, safely."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image, ImageCms

import changeImage
from make_delivery import make_delivery

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
    """Enough large images that a run is still busy when a signal arrives."""
    return make_delivery(tmp_path_factory.mktemp("batch"), count=40, size=(1500, 1000)) / "images"


@pytest.fixture
def batch_copy(big_batch, tmp_path) -> Path:
    return Path(shutil.copytree(big_batch, tmp_path / "images"))


def test_killed_run_leaves_only_whole_jpegs_and_a_rerun_finishes(batch_copy):
    images = batch_copy
    process = subprocess.Popen([SCRIPT, images, "--jobs", "2", "-q"])
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


@pytest.mark.parametrize(
    "args, message",
    [
        (["/no/such/dir"], "no such file or directory: /no/such/dir"),
        (["--size", "600by400"], "expected WIDTHxHEIGHT"),
        (["--size", "0x400"], "expected WIDTHxHEIGHT"),
        (["--quality", "0"], "--quality must be between 1 and 100"),
        (["--background", "not-a-colour"], "not a colour"),
    ],
)
def test_usage_errors_exit_2_with_a_clear_message(tmp_path, args, message):
    argv = [*args] if args[0].startswith("/") else [str(tmp_path), *args]
    result = subprocess.run([SCRIPT, *argv], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert message in result.stderr


def test_dry_run_lists_and_writes_nothing(tmp_path):
    marked().save(tmp_path / "a.tiff")
    (tmp_path / "README").write_text("x")
    result = subprocess.run(
        [SCRIPT, tmp_path, "--dry-run"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert result.stdout == f"would convert {tmp_path / 'a.tiff'} -> {tmp_path / 'a.jpeg'}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README", "a.tiff"]


def test_summary_wording():
    from collections import Counter

    counts = Counter({"converted": 10, "skip:not images": 2, "failed": 1})
    assert changeImage.summary(counts) == "converted 10, skipped 2 (not images), failed 1"
    counts["skip:up to date"] = 3
    assert changeImage.summary(counts) == (
        "converted 10, skipped 5 (2 not images, 3 up to date), failed 1"
    )
