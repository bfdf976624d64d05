"""reports.py: PDFs read back with pypdf say what they should."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from PIL import Image
from pypdf import PdfReader

import reports


def text_of(path) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(path).pages)


def words_of(path) -> str:
    """The text with line wrapping undone."""
    return " ".join(text_of(path).split())


def rows(count: int, **overrides) -> list[reports.Row]:
    return [
        reports.Row(**{"name": f"Fruit {n}", "weight": n, "status": "imported", **overrides})
        for n in range(1, count + 1)
    ]


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


def test_supplier_report_has_summary_table_and_metadata(tmp_path):
    pdf = tmp_path / "r.pdf"
    table = [
        reports.Row("Apple", 500, "imported"),
        reports.Row("Pear", 20, "already in store"),
        reports.Row("003.txt", None, "failed", "weight 'heavy' is not a number"),
    ]
    reports.generate_supplier_report(pdf, "Report", table, "name: Apple<br/>weight: 500 lbs")
    text = text_of(pdf)
    assert "2 products in the store, total weight 520 lbs; 1 failed" in text
    for expected in ("Name", "Weight", "Status", "Pear", "already in store", "20 lbs"):
        assert expected in text
    assert "failed: weight 'heavy' is not a" in text
    metadata = PdfReader(pdf).metadata
    assert (metadata.title, metadata.author) == ("Report", "Online Fruit Store")


def test_supplier_text_is_escaped_not_interpreted(tmp_path):
    pdf = tmp_path / "r.pdf"
    name = "Cherry & <b>Berry</b> <font size=99>x</font>"
    reports.generate_supplier_report(pdf, "R & <i>D</i>", [reports.Row(name, 1, "imported")])
    text = words_of(pdf)
    assert name in text
    assert "R & <i>D</i>" in text


def test_unbalanced_markup_in_names_cannot_break_the_build(tmp_path):
    pdf = tmp_path / "r.pdf"
    reports.generate_supplier_report(pdf, "R", [reports.Row("<b>unclosed & <br", 1, "imported")])
    assert "<b>unclosed & <br" in text_of(pdf)


@pytest.mark.parametrize("cjk_path", ["truetype-if-present", "cid"])
def test_non_latin_names_come_back_as_the_same_text(tmp_path, request, cjk_path):
    if cjk_path == "cid":
        request.getfixturevalue("no_cjk_truetype")
    names = ["Crème brûlée", "Ελιά", "Вишня", "苹果", "りんご", "사과", "Mixed 苹果 and Вишня"]
    pdf = tmp_path / "r.pdf"
    reports.generate_supplier_report(pdf, "R", [reports.Row(n, 1, "imported") for n in names])
    text = text_of(pdf)
    for name in names:
        assert name in text


def test_unicode_names_use_an_embedded_font_that_covers_them(tmp_path):
    pdf = tmp_path / "r.pdf"
    reports.generate_supplier_report(pdf, "R", [reports.Row("Вишня", 1, "imported")])
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
    reports.generate_supplier_report(short, "S", rows(3))
    reports.generate_supplier_report(long, "L", rows(120))
    assert "Page" not in text_of(short)
    pages = PdfReader(long).pages
    assert len(pages) > 1
    assert f"Page 1 of {len(pages)}" in pages[0].extract_text()
    assert f"Page {len(pages)} of {len(pages)}" in pages[-1].extract_text()


def test_every_row_of_a_long_table_is_present_once(tmp_path):
    pdf = tmp_path / "r.pdf"
    reports.generate_supplier_report(pdf, "R", rows(260))
    names = [line for line in text_of(pdf).splitlines() if line.startswith("Fruit ")]
    assert names == [f"Fruit {n}" for n in range(1, 261)]


def test_thumbnails_are_embedded_when_the_jpeg_is_at_hand(tmp_path):
    jpeg = tmp_path / "001.jpeg"
    Image.new("RGB", (600, 400), (200, 30, 30)).save(jpeg)
    with_image, without = tmp_path / "with.pdf", tmp_path / "without.pdf"
    table = [reports.Row("Apple", 1, "imported", image=str(jpeg))]
    reports.generate_supplier_report(with_image, "R", table)
    reports.generate_supplier_report(without, "R", table, thumbnails=False)
    assert len(PdfReader(with_image).pages[0].images) == 1
    assert len(PdfReader(without).pages[0].images) == 0


def test_a_missing_or_broken_image_is_left_out(tmp_path, caplog):
    broken = tmp_path / "broken.jpeg"
    broken.write_bytes(b"not a jpeg")
    table = [
        reports.Row("A", 1, "imported", image=str(tmp_path / "gone.jpeg")),
        reports.Row("B", 1, "imported", image=str(broken)),
    ]
    pdf = tmp_path / "r.pdf"
    reports.generate_supplier_report(pdf, "R", table)
    assert len(PdfReader(pdf).pages[0].images) == 0
    assert "2 products in the store" in text_of(pdf)
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith(f"no thumbnail for {broken}")


def test_the_pdf_appears_whole_or_not_at_all(tmp_path, monkeypatch):
    pdf = tmp_path / "r.pdf"
    pdf.write_bytes(b"previous report")

    def crash_half_way(path, *args):
        Path(path).write_bytes(b"%PDF-1.4 half")
        raise KeyboardInterrupt

    monkeypatch.setattr(reports, "render", crash_half_way)
    with pytest.raises(KeyboardInterrupt):
        reports.generate_report(pdf, "R", "x")
    assert pdf.read_bytes() == b"previous report"
    assert [p.name for p in tmp_path.iterdir()] == ["r.pdf"]


def test_an_overlong_cell_is_shortened_not_a_layout_error(tmp_path):
    pdf = tmp_path / "r.pdf"
    reason = "the store said " + "no " * 3000
    reports.generate_supplier_report(pdf, "R", [reports.Row("A", 1, "failed", reason)])
    assert "failed: the store said no no" in words_of(pdf)
