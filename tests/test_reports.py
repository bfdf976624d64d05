"""reports.py: PDFs read back with pypdf and poppler's pdftotext say what they should."""

from __future__ import annotations

import io
import logging
import resource
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from helper import poppler_text
from PIL import Image
from pypdf import PdfReader

import reports
from make_delivery import photo_like

ROOT = Path(__file__).resolve().parent.parent


def text_of(path) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(path).pages)


def words_of(path) -> str:
    """The text with line wrapping undone."""
    return " ".join(text_of(path).split())


EXTRACTORS = {"pypdf": text_of, "pdftotext": poppler_text}


def lab_rows(count: int, thumbnail: bytes | None = None) -> list[reports.Row]:
    return [
        reports.Row((f"name: Fruit {n}", f"weight: {n} lbs"), "imported", thumbnail)
        for n in range(1, count + 1)
    ]


def photo_jpeg(seed: int, size=(600, 400)) -> bytes:
    """A photo-like catalog JPEG, different for every seed."""
    out = io.BytesIO()
    photo_like(size, seed).convert("RGB").save(out, "JPEG", quality=85)
    return out.getvalue()


def xobjects(pdf: Path) -> list:
    """The images drawn on each page, as stored (not decoded)."""
    pages = PdfReader(pdf).pages
    return [x.get_object() for p in pages for x in p["/Resources"].get("/XObject", {}).values()]


def patched_jpeg(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16)).save(out, "JPEG")
    data = bytearray(out.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def thumbnail_of(data: bytes) -> bytes:
    return reports.make_thumbnail(io.BytesIO(data))


@pytest.fixture
def no_cjk_truetype(monkeypatch):
    """Force the CID-font path for CJK, as on a machine without CJK TrueType fonts."""
    monkeypatch.setattr(reports, "CJK_TRUETYPE", ())
    reports.embedded_cjk_font.cache_clear()
    yield
    reports.embedded_cjk_font.cache_clear()


def test_lab_signature_writes_title_and_paragraph(tmp_path):
    pdf = tmp_path / "processed.pdf"
    reports.generate_report(pdf, "Processed Update", "name: Apple<br/>weight: 500 lbs<br/><br/>")
    text = text_of(pdf)
    assert text.splitlines()[:3] == ["Processed Update", "name: Apple", "weight: 500 lbs"]


def test_long_lab_paragraph_keeps_every_product_in_order(tmp_path):
    paragraph = "".join(f"name: Fruit {n}<br/>weight: {n} lbs<br/><br/>" for n in range(300))
    pdf = tmp_path / "long.pdf"
    reports.generate_report(pdf, "Long", paragraph)
    lines = [line for line in text_of(pdf).splitlines() if line.startswith("name: ")]
    assert lines == [f"name: Fruit {n}" for n in range(300)]
    assert len(PdfReader(pdf).pages) > 1


def test_split_paragraph_cuts_at_blank_lines_only():
    pieces = reports.split_paragraph("a<br/>b<br/><br/>c<br />d<BR/>\n<br/>")
    assert pieces == ["a<br/>b", "c<br />d"]


@pytest.mark.parametrize("extractor", EXTRACTORS)
@pytest.mark.parametrize("pictures", [True, False], ids=["thumbnails", "text-only"])
def test_title_first_then_each_product_once_whole_and_in_order(tmp_path, extractor, pictures):
    pdf = tmp_path / "r.pdf"
    thumbnail = thumbnail_of(photo_jpeg(1)) if pictures else None
    rows = lab_rows(120, thumbnail)
    pages = reports.generate_supplier_report(pdf, "Processed Update on May 01, 2026", rows)
    assert pages > 2
    lines = EXTRACTORS[extractor](pdf).splitlines()
    assert lines[0] == "Processed Update on May 01, 2026"
    names = [i for i, line in enumerate(lines) if line.startswith("name: ")]
    assert [lines[i] for i in names] == [f"name: Fruit {n}" for n in range(1, 121)]
    assert [lines[i + 1] for i in names] == [f"weight: {n} lbs" for n in range(1, 121)]


def test_the_table_header_is_on_every_page(tmp_path):
    pdf = tmp_path / "r.pdf"
    reports.generate_supplier_report(pdf, "R", lab_rows(120, thumbnail_of(photo_jpeg(2))))
    pages = PdfReader(pdf).pages
    assert len(pages) > 2
    for page in pages:
        assert [w for w in page.extract_text().split() if w in ("Picture", "Product", "Outcome")][
            :3
        ] == ["Picture", "Product", "Outcome"]


def test_without_any_picture_the_picture_column_is_left_out(tmp_path):
    pdf = tmp_path / "r.pdf"
    reports.generate_supplier_report(pdf, "R", lab_rows(2))
    assert "Picture" not in text_of(pdf) and "Product" in text_of(pdf)


def test_intro_lines_follow_the_title(tmp_path):
    pdf = tmp_path / "r.pdf"
    intro = ["Delivery supplier-data, imported May 01, 2026", "Store: Fruit & Co"]
    reports.generate_supplier_report(pdf, "T", lab_rows(1), intro)
    assert text_of(pdf).splitlines()[:3] == ["T", *intro]
    assert PdfReader(pdf).metadata.subject == "Store: Fruit & Co"


@pytest.mark.parametrize("build", ["supplier", "lab"])
def test_the_metadata_names_the_store_never_our_scripts(tmp_path, build):
    pdf = tmp_path / "r.pdf"
    if build == "supplier":
        reports.generate_supplier_report(pdf, "T", lab_rows(1))
    else:
        reports.generate_report(pdf, "T", "Body.")
    metadata = PdfReader(pdf).metadata
    assert (metadata.creator, metadata.author) == ("Online Fruit Store", "Online Fruit Store")
    for value in metadata.values():
        assert not any(word in str(value) for word in ("fruit-catalog", ".py")), value


def test_supplier_text_is_escaped_not_interpreted(tmp_path):
    pdf = tmp_path / "r.pdf"
    name = "name: Cherry & <b>Berry</b> <font size=99>x</font>"
    reports.generate_supplier_report(pdf, "R & <i>D</i>", [reports.Row((name,), "ok <b>")])
    text = words_of(pdf)
    assert name in text and "ok <b>" in text
    assert "R & <i>D</i>" in text


def test_unbalanced_markup_in_names_cannot_break_the_build(tmp_path):
    pdf = tmp_path / "r.pdf"
    reports.generate_supplier_report(pdf, "R", [reports.Row(("<b>unclosed & <br",), "x")])
    assert "<b>unclosed & <br" in text_of(pdf)


@pytest.mark.parametrize("cjk_path", ["truetype-if-present", "cid"])
def test_non_latin_names_come_back_as_the_same_text(tmp_path, request, cjk_path):
    if cjk_path == "cid":
        request.getfixturevalue("no_cjk_truetype")
    names = ["Crème brûlée", "Ελιά", "Вишня", "苹果", "りんご", "사과", "Mixed 苹果 and Вишня"]
    pdf = tmp_path / "r.pdf"
    reports.generate_supplier_report(pdf, "R", [reports.Row((f"name: {n}",), "x") for n in names])
    text = text_of(pdf)
    for name in names:
        assert f"name: {name}" in text


def test_unicode_names_use_an_embedded_font_that_covers_them(tmp_path):
    pdf = tmp_path / "r.pdf"
    reports.generate_supplier_report(pdf, "R", [reports.Row(("Вишня",), "imported")])
    page = PdfReader(pdf).pages[0]
    fonts = {f["/BaseFont"] for f in page["/Resources"]["/Font"].values()}
    assert any("DejaVuSans" in font for font in fonts)


def test_missing_unicode_font_falls_back_with_one_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(reports, "FONT_DIRS", (str(tmp_path / "none"),))
    reports.fonts.cache_clear()
    reports.styles.cache_clear()
    try:
        reports.generate_report(tmp_path / "a.pdf", "A", "x")
        reports.generate_report(tmp_path / "b.pdf", "B", "y")
    finally:
        reports.fonts.cache_clear()
        reports.styles.cache_clear()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "using Helvetica" in warnings[0].getMessage()
    assert "x" in text_of(tmp_path / "a.pdf")


def test_page_numbers_only_when_over_a_page(tmp_path):
    short, long = tmp_path / "short.pdf", tmp_path / "long.pdf"
    assert reports.generate_supplier_report(short, "S", lab_rows(3)) == 1
    count = reports.generate_supplier_report(long, "L", lab_rows(150))
    assert "Page" not in text_of(short)
    pages = PdfReader(long).pages
    assert len(pages) == count > 1
    assert f"Page 1 of {count}" in pages[0].extract_text()
    assert f"Page {count} of {count}" in pages[-1].extract_text()


@pytest.mark.parametrize("extractor", EXTRACTORS)
def test_a_long_name_stays_on_one_line_in_smaller_type(tmp_path, extractor):
    name = "name: " + "Very long fruit name " * 4
    pdf = tmp_path / "r.pdf"
    reports.generate_supplier_report(pdf, "R", [reports.Row((name.strip(), "weight: 1 lbs"), "x")])
    assert name.strip() in EXTRACTORS[extractor](pdf).splitlines()


def test_thumbnails_are_small_jpegs_embedded_as_they_are(tmp_path):
    thumbnail = thumbnail_of(photo_jpeg(3))
    with Image.open(io.BytesIO(thumbnail)) as image:
        assert image.format == "JPEG" and image.size == (144, 96)
    assert len(thumbnail) < 8000
    pdf = tmp_path / "r.pdf"
    reports.generate_supplier_report(pdf, "R", lab_rows(1, thumbnail))
    [xobject] = xobjects(pdf)
    # The JPEG as made: not re-encoded, not inflated by ASCII85.
    assert xobject["/Filter"] == ["/DCTDecode"]
    assert xobject._data == thumbnail


def test_200_products_with_their_own_thumbnails_stay_under_3_mb(tmp_path):
    # Small sources make thumbnails as large as real photos' (about 4 KB) and are quick.
    thumbnails = [thumbnail_of(photo_jpeg(n, (160, 107))) for n in range(200)]
    rows = [
        reports.Row((f"name: Fruit {n}", f"weight: {n} lbs"), "imported", thumbnail)
        for n, thumbnail in enumerate(thumbnails)
    ]
    pdf = tmp_path / "r.pdf"
    pages = reports.generate_supplier_report(pdf, "R", rows)
    assert pdf.stat().st_size < 3_000_000
    assert len(PdfReader(pdf).pages) == pages
    assert len({x._data for x in xobjects(pdf)}) == 200


def test_a_decompression_bomb_is_refused_before_decoding(bomb_jpeg):
    with pytest.raises(ValueError, match=r"its header claims over .* pixels"):
        thumbnail_of(bomb_jpeg)


def test_a_large_header_under_pillows_limit_is_refused_by_ours():
    with pytest.raises(ValueError, match="claims 8000x6000 pixels, over the limit of 40,000,000"):
        thumbnail_of(patched_jpeg(8000, 6000))


def test_not_an_image_raises_oserror():
    with pytest.raises(OSError):
        thumbnail_of(b"not a jpeg")


def test_the_pdf_appears_whole_or_not_at_all(tmp_path, monkeypatch):
    pdf = tmp_path / "r.pdf"
    pdf.write_bytes(b"previous report")

    def crash_half_way(stream, *args):
        stream.write(b"%PDF-1.4 half")
        raise KeyboardInterrupt

    monkeypatch.setattr(reports, "write", crash_half_way)
    with pytest.raises(KeyboardInterrupt):
        reports.generate_report(pdf, "R", "x")
    assert pdf.read_bytes() == b"previous report"
    assert [p.name for p in tmp_path.iterdir()] == ["r.pdf"]


def test_a_pdf_cut_short_by_a_full_disk_leaves_the_previous_one(tmp_path):
    """The write fails part-way (the file size limit stands in for a full disk): the
    previous report stays as it was, and no temporary file is left."""
    pdf = tmp_path / "r.pdf"
    pdf.write_bytes(b"previous report")

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    done = subprocess.run(
        [ROOT / "reports.py", str(pdf)], preexec_fn=limit, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr == f"ERROR cannot write {pdf}: File too large\n"
    assert pdf.read_bytes() == b"previous report"
    assert [p.name for p in tmp_path.iterdir()] == ["r.pdf"]


def test_an_overlong_cell_is_shortened_not_a_layout_error(tmp_path):
    pdf = tmp_path / "r.pdf"
    reason = "failed: the store said " + "no " * 3000
    reports.generate_supplier_report(pdf, "R", [reports.Row(("A",), reason)])
    assert "failed: the store said no no" in words_of(pdf)


def test_command_line_writes_a_sample(tmp_path):
    result = subprocess.run(
        [ROOT / "reports.py", "sample.pdf"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "sample.pdf: 3 products, 1 page\n"
    assert "name: Apple" in text_of(tmp_path / "sample.pdf")


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_shows_examples_and_writes_no_pdf(tmp_path, flag):
    result = subprocess.run(
        [ROOT / "reports.py", flag], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0
    assert "Example:" in result.stdout and "Exit status: 0 written" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_version_and_a_folder_as_the_pdf(tmp_path):
    version = subprocess.run([ROOT / "reports.py", "-V"], capture_output=True, text=True)
    assert version.stdout == "reports.py 2.0.0\n"
    folder = subprocess.run([ROOT / "reports.py", str(tmp_path)], capture_output=True, text=True)
    assert folder.returncode == 2
    assert f"{tmp_path} is a folder; name the PDF file to write" in folder.stderr
    assert "Traceback" not in folder.stderr


# -- failures first, and the chart -----------------------------------------------------


def test_rows_needing_attention_come_first_marked_in_red(tmp_path):
    rows = lab_rows(3)
    rows.insert(1, reports.Row(("Fig (002.txt)",), "002.txt is empty", None, "Not imported", "x"))
    pdf = tmp_path / "r.pdf"
    reports.generate_supplier_report(pdf, "Processed Update", rows)
    for extractor in EXTRACTORS.values():
        text = " ".join(extractor(pdf).split())
        order = ["Needs your attention (1 of 4 products)", "Fig (002.txt) Not imported"]
        order += ["What to do: x", "All other products (3)", "name: Fruit 1", "name: Fruit 3"]
        assert [text.index(part) for part in order] == sorted(text.index(p) for p in order)
    content = PdfReader(pdf).pages[0].get_contents().get_data()
    assert b".690196 0 .12549 rg" in content  # ATTENTION_RED


def rendered_first_page(pdf: Path, folder: Path) -> Image.Image:
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm is missing: apt-get install poppler-utils (.ci/run does, as root)")
    subprocess.run(
        ["pdftoppm", "-r", "50", "-f", "1", "-l", "1", "-png", str(pdf), str(folder / "page")],
        check=True,
        timeout=60,
    )
    [png] = folder.glob("page*.png")
    return Image.open(png).convert("RGB")


def pixels_of(page: Image.Image, color: str, box: tuple[int, int, int, int] | None = None) -> int:
    """How many pixels of the page (or of box) have this color, give or take a little."""
    target = Image.new("RGB", (1, 1), color).getpixel((0, 0))
    area = page.crop(box) if box else page
    return sum(
        n
        for n, pixel in area.getcolors(area.width * area.height)
        if all(abs(a - b) <= 6 for a, b in zip(pixel, target, strict=True))
    )


@pytest.mark.parametrize(
    "count, legend",
    [(3, "Fruit 3: 3 lbs (50%)"), (500, "494 others: 122,265 lbs (98%)")],
    ids=["3-products", "500-products"],
)
def test_the_chart_is_drawn_on_the_first_page(tmp_path, count, legend):
    rows = lab_rows(count)
    chart = reports.delivery_chart(
        [(f"Fruit {n}", n) for n in range(1, count + 1)], {"imported": count, "not imported": 1}
    )
    pdf = tmp_path / "r.pdf"
    reports.generate_supplier_report(pdf, "Processed Update", rows, ["Delivery d"], chart)
    page = rendered_first_page(pdf, tmp_path)
    # The chart sits between the intro and the table, in the top third of the page.
    chart_area = (0, 0, page.width, page.height // 3)
    assert pixels_of(page, reports.OUTCOME_COLORS["imported"], chart_area) > 500
    assert pixels_of(page, reports.OUTCOME_COLORS["imported"]) == pixels_of(
        page, reports.OUTCOME_COLORS["imported"], chart_area
    )
    slices = reports.WEIGHT_COLORS[:3] if count == 3 else [reports.OTHER_COLOR]
    for color in slices:
        assert pixels_of(page, color, chart_area) > 50, color
    first = poppler_text(pdf).split("\f")[0]
    assert "Imported, by weight" in first and "Products, by outcome" in first
    assert legend in " ".join(first.split())
    assert f"Not imported: 1 ({'<1' if count == 500 else '25'}%)" in first
    for extractor in EXTRACTORS.values():
        text = extractor(pdf)
        assert text.splitlines()[0] == "Processed Update"
        assert text.count("name: Fruit") == count
        assert "name: Fruit 1\nweight: 1 lbs" in text and f"name: Fruit {count}\n" in text


@pytest.mark.parametrize(
    "pairs, expected",
    [
        ([], []),
        ([("a", 0), ("b", 2)], [("b", 2)]),
        ([(str(n), n) for n in range(1, 7)], [(str(n), n) for n in range(6, 0, -1)]),
        (
            [(str(n), n) for n in range(1, 8)],
            [(str(n), n) for n in range(7, 0, -1)],
        ),
        (
            [(str(n), n) for n in range(1, 9)],
            [(str(n), n) for n in range(8, 2, -1)] + [("2 others", 3)],
        ),
    ],
    ids=["none", "a zero weight left out", "six fit", "seven all named, never 1 other", "eight"],
)
def test_the_largest_slices_and_the_rest_as_other(pairs, expected):
    assert reports.largest(pairs) == expected


LONG_NAMES = [
    "W" * 100,
    "<b>Bold</b> &amp; <i>" + "M" * 90,
    "Ｗ" * 100,
    "Apple " * 20,
    "Short",
    "x" * 29,
    "Tiny",
]


def test_long_legend_labels_are_cut_and_keep_their_value_within_the_chart(tmp_path):
    chart = reports.delivery_chart(
        [(name, 2_147_483_647 - n) for n, name in enumerate(LONG_NAMES)],
        {"imported": 7, "not imported": 10**9},
    )
    legends = [shape for shape in chart.contents if type(shape).__name__ == "Legend"]
    assert len(legends) == 2
    for legend, right in zip(legends, (reports.CHART_WIDTH / 2, reports.CHART_WIDTH), strict=True):
        assert legend.getBounds()[2] <= right, [text for _, text in legend.colorNamePairs]
    labels = [text for _, text in legends[0].colorNamePairs]
    assert len(labels) == 7 and not any("other" in text for text in labels)
    assert all(text.endswith("%)") for text in labels), labels
    assert labels[0].startswith("WWW") and "…: 2,147,483,647 lbs (" in labels[0]
    assert "Tiny: 2,147,483,641 lbs (14%)" in labels
    pdf = tmp_path / "r.pdf"
    reports.generate_supplier_report(pdf, "T", lab_rows(1), chart=chart)
    first = " ".join(poppler_text(pdf).split("\f")[0].split())
    assert first.count("lbs (14%)") == 7 and "<b>" in first  # shown as text, not markup


def test_a_chart_with_no_weight_says_so(tmp_path):
    chart = reports.delivery_chart([("Air", 0)], {"imported": 1})
    pdf = tmp_path / "r.pdf"
    reports.generate_supplier_report(pdf, "T", lab_rows(1), chart=chart)
    assert "nothing to show" in text_of(pdf)
