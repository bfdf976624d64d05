"""The rules the two scripts share without Django or a store: the names the store
keeps (checked against Django's own functions), the store's canonical URL, and
credentials kept out of what is shown."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import SuspiciousFileOperation
from django.utils.text import get_valid_filename

import changeImage
import run
import supplier_image_upload

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = [supplier_image_upload, run]
ALPHABET = (
    "abcXYZ019 -_.'\"()[]{}!@#$%^&*+=,;:~`<>?/\\|\t"
    "éüßøÆœçñ"  # Latin letters Django keeps
    "日本語中文한국어"  # CJK letters
    "Ελληνικάкириллицаעבריתالعربية"  # other scripts
    "٣४๓²½"  # digits of other scripts, superscripts, fractions
    "\u0301\u200b\u00a0\u2028🍓"  # a combining accent, zero-width and odd spaces, an emoji
    "\U00020000\U0002a700"  # 4-byte CJK letters (Extension B, C)
)
NAMED = [
    "fresh kiwi.jpeg",
    "it's (big) [1].jpeg",
    'say "hi".jpeg',
    "  padded  .jpeg",
    "pêche mûre.jpeg",
    "a.b.c.jpeg",
    "k" * 95 + ".jpeg",
    "é" * 90 + ".jpeg",
    "日本 の 果物.jpeg",
    "tab\there.jpeg",
]


def random_names(count: int) -> list[str]:
    rng = random.Random(2026)
    return [
        "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(1, 120))) + ".jpeg"
        for _ in range(count)
    ]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: s.__name__)
def test_valid_filename_is_djangos_get_valid_filename(script):
    for name in NAMED + random_names(3000):
        try:
            expected = get_valid_filename(name)
        except SuspiciousFileOperation:
            continue
        assert script.valid_filename(name) == expected, name


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: s.__name__)
@pytest.mark.parametrize("tag", ["", "0123456789ab"])
def test_store_names_are_kept_unchanged_by_django_and_fit_the_field(script, tag):
    for name in NAMED + random_names(3000) + ["'''.jpeg", "..jpeg", "()"]:
        kept = script.store_name(name, tag)
        assert get_valid_filename(kept) == kept, name
        assert len("images/" + kept) <= 100, name
        assert len(kept.encode()) <= 255, name  # a file name on the store's disk
        assert kept.endswith(f"{tag}.jpeg" if name.endswith(".jpeg") else tag), name


def test_both_scripts_derive_the_same_names():
    for name in NAMED + random_names(500):
        assert supplier_image_upload.store_name(name) == run.store_name(name)
    content = b"\xff\xd8\xff second delivery"
    assert supplier_image_upload.content_tag(content) == run.content_tag(content)


@pytest.mark.parametrize(
    "name, kept",
    [
        ("fresh kiwi.jpeg", "fresh_kiwi.jpeg"),
        ("it's (big) [1].jpeg", "its_big_1.jpeg"),
        ("001.jpeg", "001.jpeg"),
        ("k" * 95 + ".jpeg", "k" * 88 + ".jpeg"),
    ],
)
def test_store_name_examples(name, kept):
    assert run.store_name(name) == kept


def test_a_name_of_4_byte_letters_fits_the_stores_file_system_with_its_tag():
    kept = run.store_name("\U00020000" * 62 + ".jpeg", "0123456789ab")
    assert kept == "\U00020000" * 59 + "-0123456789ab.jpeg"
    assert get_valid_filename(kept) == kept


def test_a_content_tag_is_never_cut_off():
    assert run.store_name("k" * 95 + ".jpeg", "0123456789ab") == "k" * 75 + "-0123456789ab.jpeg"


@pytest.mark.parametrize(
    "url, canonical",
    [
        ("http://host", "http://host/"),
        ("http://host/", "http://host/"),
        ("HTTP://HOST:80/", "http://host/"),
        ("http://host:8000", "http://host:8000/"),
        ("https://host:443/shop", "https://host/shop/"),
        ("http://alice:s3cret@host/", "http://host/"),
        ("  http://[::1]:8080/  ", "http://[::1]:8080/"),
        ("http://host/fruits/", "http://host/"),
        ("http://host/upload", "http://host/"),
        ("https://host/shop/upload/", "https://host/shop/"),
        ("http://host/fruits/upload/", "http://host/fruits/"),
    ],
)
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: s.__name__)
def test_canonical_url(script, url, canonical):
    assert script.canonical_url(url) == canonical


@pytest.mark.parametrize(
    "url, message",
    [
        ("ftp://host/", "is not an http:// or https:// URL"),
        ("localhost", "is not an http:// or https:// URL"),
        ("http://host:99999/", "has a bad port"),
        ("http://host/?a=1", "has a query or fragment"),
        ("http://alice:s3cret@host:x/", "has a bad port"),
    ],
)
def test_urls_that_are_no_store(url, message):
    with pytest.raises(ValueError, match=message) as error:
        run.canonical_url(url)
    assert "s3cret" not in str(error.value)


def test_redact_removes_credentials_from_every_url_in_a_text():
    text = "GET http://alice:s3cret@host/fruits/ then https://bob@other:8443/x"
    assert run.redact(text) == "GET http://host/fruits/ then https://other:8443/x"


def test_the_scripts_need_only_requests_not_django():
    code = "import sys, run, supplier_image_upload; print(sorted(m for m in sys.modules"
    code += " if m.split('.')[0] in {'django', 'rest_framework', 'PIL'}))"
    shown = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert shown.stdout.strip() == "[]", shown.stderr


def whole_jpeg(mark: str = "") -> bytes:
    from io import BytesIO

    from PIL import Image

    buffer = BytesIO()
    Image.new("RGB", (600, 400), "green").save(buffer, "JPEG", comment=mark)
    return buffer.getvalue()


OURS = (  # changeImage.py's mark of a 600x400 output
    "fruit-catalog changeImage.py made-from-sha256="
    + "0" * 64
    + " options="
    + "1" * 16
    + " size=600x400"
)


@pytest.mark.parametrize(
    "case, change, cause",
    [
        ("whole", lambda jpeg: jpeg, None),
        ("cut", lambda jpeg: jpeg[:-2], "cut"),
        ("one byte after its end", lambda jpeg: jpeg + b"\0", "not ours"),
        ("100 KB after its end", lambda jpeg: jpeg + b"junk" * 25600, "not ours"),
        ("a second picture after it", lambda jpeg: jpeg + jpeg, "not ours"),
        # without a mark and without a source beside it: the supplier's own photo
        ("the supplier's, bytes after its end", lambda _: whole_jpeg() + b"\0", "photo"),
    ],
)
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: s.__name__)
def test_only_a_jpeg_that_ends_at_its_end_marker_is_a_catalog_jpeg(
    script, tmp_path, case, change, cause
):
    path = tmp_path / "007.jpeg"
    found = script.unusable_jpeg(change(whole_jpeg(OURS)), path)
    assert (found.cause if found else None) == cause, case


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"progressive": True},
        {"restart_marker_blocks": 1},
        {"progressive": True, "restart_marker_rows": 2},
    ],
    ids=["baseline", "progressive", "a restart every block", "progressive with restarts"],
)
@pytest.mark.parametrize("script", [*SCRIPTS, changeImage], ids=lambda s: s.__name__)
def test_the_walk_finds_the_end_of_noisy_coded_data(script, tmp_path, params):
    """Noise puts stuffed FF 00 bytes all through the coded data, restarts put FF Dn
    in it, a progressive JPEG has a scan after a scan: the walk ends at the end
    marker all the same, and only there."""
    from io import BytesIO

    from PIL import Image

    noise = Image.frombytes("RGB", (600, 400), random.Random(7).randbytes(600 * 400 * 3))
    buffer = BytesIO()
    noise.save(buffer, "JPEG", comment=OURS, **params)
    jpeg = buffer.getvalue()
    assert script.jpeg_layout(jpeg)[::2] == ((600, 400), len(jpeg))
    assert script.unusable_jpeg(jpeg, tmp_path / "007.jpeg") is None
    assert script.unusable_jpeg(jpeg[:-2], tmp_path / "007.jpeg").cause == "cut"
    assert script.unusable_jpeg(jpeg + b"\xff", tmp_path / "007.jpeg").cause == "not ours"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: s.__name__)
def test_an_unmarked_jpeg_beside_its_source_is_an_earlier_attempts(script, tmp_path):
    (tmp_path / "001.tiff").write_bytes(b"II*\0")
    found = script.unusable_jpeg(whole_jpeg(), tmp_path / "001.jpeg")
    assert found == (
        "earlier attempt",
        "001.jpeg was not made by changeImage.py from 001.tiff (an earlier attempt's?):"
        f" run ./changeImage.py --replace-unmarked {tmp_path} to convert over it",
    )


@pytest.mark.parametrize(
    "text, value",
    [("", False), ("0", False), ("no", False), (" 1 ", True), ("yes", True), ("TRUE", True)],
)
def test_content_names_variable(monkeypatch, text, value):
    monkeypatch.setenv("CATALOG_CONTENT_NAMES", text)
    assert supplier_image_upload.env_flag("CATALOG_CONTENT_NAMES") is value


def test_a_content_names_variable_that_is_no_yes_or_no_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.setenv("CATALOG_CONTENT_NAMES", "sometimes")
    with pytest.raises(SystemExit) as stop:
        supplier_image_upload.parse_args(["--images", "/"])
    assert stop.value.code == 2
    assert "environment variable CATALOG_CONTENT_NAMES: 'sometimes' is not 1 or 0" in (
        capsys.readouterr().err
    )
