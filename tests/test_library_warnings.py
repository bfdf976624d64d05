"""Library warnings (Pillow's 'Corrupt EXIF data') become our own log lines naming
the file, at WARNING, so -q silences them; never a library's path or source line.
The cli block does it for every script; changeImage.py names the image."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest
from helper import with_entry
from PIL import Image
from test_changeImage import deflate_tiff

import changeImage  # carries the cli block's warnings parts: it converts images

ROOT = Path(__file__).resolve().parent.parent
CORRUPT_EXIF = "Corrupt EXIF data. Expecting to read 12 bytes but only got 0."
LIBRARY_TRACES = ("site-packages", "UserWarning", ".py:", "warnings.warn")


def with_broken_exif(data: bytes) -> bytes:
    """The TIFF with an EXIF IFD at its very end that claims 5 entries and holds none."""
    end = len(with_entry(data, 34665, 4, [0]))  # the same length whatever the pointer
    return with_entry(data, 34665, 4, [end]) + (5).to_bytes(2, "little")


@pytest.fixture
def corrupt_tiffs(tmp_path) -> tuple[Path, Path, Path]:
    """Two TIFFs that convert with Pillow's warning, and one cut short that fails."""
    folder = tmp_path / "images"
    folder.mkdir()
    warned = with_broken_exif(deflate_tiff("RGB"))
    (folder / "a.tiff").write_bytes(warned)
    (folder / "b.tiff").write_bytes(warned)
    raw = deflate_tiff("RGB", compression="raw", strip_size=1 << 22)
    cut = with_broken_exif(with_entry(raw, 273, 4, [len(raw) - 1000]))  # strip past the end
    (folder / "c.tiff").write_bytes(cut)
    return folder / "a.tiff", folder / "b.tiff", folder / "c.tiff"


def change_image(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, ROOT / "changeImage.py", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_quiet_prints_only_our_error_line(corrupt_tiffs):
    good, other, cut = corrupt_tiffs
    result = change_image("-q", str(good.parent))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"ERROR {cut}: corrupt or truncated image (image file is truncated (364 bytes not"
        " processed))"
    ]
    assert result.stdout == ""
    assert good.with_suffix(".jpeg").exists() and other.with_suffix(".jpeg").exists()


def test_without_quiet_each_image_warns_in_our_words_naming_it(corrupt_tiffs):
    good, other, cut = corrupt_tiffs
    result = change_image(str(good.parent))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    for image in (good, other):  # the same warning at the same place, once per image
        assert lines.count(f"WARNING {image}: {CORRUPT_EXIF}") == 1
    assert any(line.startswith(f"ERROR {cut}: corrupt or truncated") for line in lines)
    for trace in LIBRARY_TRACES:
        assert trace not in result.stderr


def test_threads_name_their_own_file_once_per_message(caplog):
    caplog.set_level(logging.DEBUG)
    show = changeImage.WarningsToLog()

    def work(name: str) -> None:
        with changeImage.WorkingOn(name):
            for _ in range(3):
                show(UserWarning("Corrupt EXIF data."), UserWarning, "/x/PIL/Tiff.py", 982)
        show(UserWarning("after"), UserWarning, "/x/PIL/Tiff.py", 982)

    threads = [threading.Thread(target=work, args=(f"{n}.tiff",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    lines = sorted((r.levelname, r.getMessage()) for r in caplog.records)
    expected = [("WARNING", f"{n}.tiff: Corrupt EXIF data.") for n in range(4)]
    assert lines == sorted([*expected, ("WARNING", "after")])


def test_a_deprecation_is_a_note_for_developers_not_a_warning(caplog):
    caplog.set_level(logging.DEBUG)
    changeImage.WarningsToLog()(DeprecationWarning("old API"), DeprecationWarning, "/x/y.py", 1)
    [record] = caplog.records
    assert (record.levelname, record.getMessage()) == ("DEBUG", "old API")


def test_configure_logging_sends_pillows_warnings_to_our_log(caplog):
    with warnings.catch_warnings():
        changeImage.configure_logging(quiet=False, verbose=False)
        assert isinstance(warnings.showwarning, changeImage.WarningsToLog)
        with changeImage.WorkingOn("a.tiff"):
            warnings.warn_explicit("Corrupt EXIF data.", UserWarning, "Tiff.py", 1, "PIL.Tiff")
            warnings.warn_explicit("Corrupt EXIF data.", UserWarning, "Tiff.py", 1, "PIL.Tiff")
        with changeImage.WorkingOn("b.tiff"):
            warnings.warn_explicit("Corrupt EXIF data.", UserWarning, "Tiff.py", 1, "PIL.Tiff")
    assert [r.getMessage() for r in caplog.records if r.name == "py.warnings"] == [
        "a.tiff: Corrupt EXIF data.",
        "b.tiff: Corrupt EXIF data.",
    ]


def damaged(compression: str) -> bytes:
    """A TIFF whose compressed data has every 997th byte flipped: libtiff says why
    it fails on file descriptor 2 itself ("ZIPDecode: Decoding error ...")."""
    buffer = io.BytesIO()
    Image.effect_noise((300, 200), 50).convert("RGB").save(buffer, "TIFF", compression=compression)
    data = bytearray(buffer.getvalue())
    for at in range(1000, len(data), 997):
        data[at] ^= 0xFF
    return bytes(data)


def test_what_libtiff_writes_itself_is_a_warning_of_ours(tmp_path):
    (tmp_path / "x.tiff").write_bytes(damaged("tiff_lzw"))
    quiet = change_image("-q", "--jobs", "1", str(tmp_path))
    assert quiet.returncode == 1
    assert [line.split(":")[0] for line in quiet.stderr.splitlines()] == [
        f"ERROR {tmp_path / 'x.tiff'}"
    ]
    told = change_image("--force", "--jobs", "1", str(tmp_path)).stderr.splitlines()
    assert any(line.startswith(f"ERROR {tmp_path / 'x.tiff'}: ") for line in told), told
    assert any(line.startswith("WARNING image library: ") for line in told), told
    assert all(line.split()[0] in {"ERROR", "WARNING", "INFO"} for line in told), told


def test_a_warning_as_the_header_is_read_names_the_file_too(tmp_path):
    """Pillow warns of a cut EXIF block as it reads the header, while the run plans its
    work, before any conversion: every such line names its file."""
    folder = tmp_path / "images"
    folder.mkdir()
    exif = Image.Exif()
    exif[0x010E] = "x" * 50
    photo = io.BytesIO()
    Image.new("RGB", (800, 600), "red").save(photo, "JPEG", exif=exif.tobytes()[:-30])
    for name in ("a.tif", "b.png"):  # JPEG photos under other names: converted all the same
        (folder / name).write_bytes(photo.getvalue())
    result = change_image(str(folder))
    assert result.returncode == 0, result.stderr
    warned = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    named = [line.removeprefix("WARNING ").split(": ")[0] for line in warned]
    assert sorted(set(named)) == [str(folder / "a.tif"), str(folder / "b.png")], warned
