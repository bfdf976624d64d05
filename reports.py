#!/usr/bin/env python3
"""PDF reports of what was imported into the store (helper module).

Two ways in:
  generate_report(attachment, title, paragraph)
      the lab's signature: `title` as the heading and `paragraph` (reportlab
      Paragraph markup, <br/> line breaks) as the body.
  generate_supplier_report(attachment, title, rows, paragraph="", ...)
      the same heading and body, then a summary line (products, total
      weight) and a table of every product with its outcome and, when the
      JPEG is at hand, a small thumbnail. Supplier text is escaped.

Text in Greek, Cyrillic and accented Latin is set in DejaVu Sans when the
system has it; CJK runs use reportlab's built-in CID fonts. Without DejaVu
the standard Helvetica is used, with one warning. Page numbers appear once
the report runs over a page.

Cost grows linearly with the number of products: the body is split into one
Paragraph per product (reportlab re-splits a single long paragraph at every
page break) and the table into blocks of rows (a single 10,000-row table
re-splits likewise). See bench/bench_report.py.

Usage:
    import reports
    reports.generate_report("/tmp/processed.pdf", "Processed Update", "name: Apple<br/>...")

Example:
    $ python3 reports.py /tmp/sample.pdf
    /tmp/sample.pdf: 3 products
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from PIL import Image as PILImage
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas as pdfcanvas
from reportlab.platypus import Flowable, Image, Paragraph, SimpleDocTemplate, Spacer, Table

AUTHOR = "Online Fruit Store"
FONT_DIRS = (
    "/usr/share/fonts/truetype/dejavu",
    "/usr/share/fonts/dejavu",
    "/usr/share/fonts/TTF",
    "/usr/local/share/fonts",
    "/Library/Fonts",
)
UNICODE_FONT, UNICODE_BOLD = "DejaVuSans", "DejaVuSans-Bold"
# CJK runs: kana -> Japanese, Hangul -> Korean, other Han -> Simplified Chinese.
CJK_RUN = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]+")
KANA = re.compile(r"[\u3040-\u30ff]")
HANGUL = re.compile(r"[\uac00-\ud7af]")
CJK_FONTS = {"ja": "HeiseiMin-W3", "ko": "HYSMyeongJo-Medium", "zh": "STSong-Light"}
# A CJK TrueType font the system provides is embedded, so every viewer shows
# it; the CID fonts above are not embedded and need the viewer's Asian fonts.
CJK_TRUETYPE = (
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
)
CJK_EMBEDDED = "CJKFallback"
# A blank line (two or more <br/>) separates products in the lab's paragraph.
BLANK_LINE = re.compile(r"(?:<br\s*/?>\s*){2,}", re.IGNORECASE)
TABLE_BLOCK_ROWS = 50
THUMBNAIL = (24 * mm, 16 * mm)
COLUMN_WIDTHS = (28 * mm, 62 * mm, 26 * mm, 54 * mm)
CELL_PADDING = 6  # reportlab's default left and right padding of a table cell
MAX_CELL_TEXT = 300

log = logging.getLogger("reports")


@dataclass(frozen=True)
class Row:
    """One product in the supplier report."""

    name: str
    weight: int | None
    status: str
    reason: str = ""
    image: str | None = None


# -- pure functions -----------------------------------------------------------


def markup(text: str) -> str:
    """Supplier text as safe Paragraph markup: escaped, CJK runs in a CJK font."""

    def cjk(match: re.Match) -> str:
        return f'<font name="{cjk_font_for(match.group(0))}">{match.group(0)}</font>'

    return CJK_RUN.sub(cjk, escape(text))


def split_paragraph(paragraph: str) -> list[str]:
    """The lab's one long paragraph as one piece per product (blank-line separated)."""
    return [piece for piece in BLANK_LINE.split(paragraph) if piece.strip()]


def summary_line(rows: Sequence[Row]) -> str:
    total = sum(row.weight or 0 for row in rows if row.status != "failed")
    in_store = sum(row.status != "failed" for row in rows)
    failed = len(rows) - in_store
    text = f"{in_store} products in the store, total weight {total} lbs"
    return text + (f"; {failed} failed" if failed else "")


def status_text(row: Row) -> str:
    return f"{row.status}: {row.reason}" if row.reason else row.status


# -- fonts ----------------------------------------------------------------------


@functools.cache
def embedded_cjk_font() -> TTFont | None:
    """A CJK TrueType font the system provides, registered; None when there is none."""
    for name in CJK_FONTS.values():
        pdfmetrics.registerFont(UnicodeCIDFont(name))
    for path in CJK_TRUETYPE:
        if Path(path).is_file():
            font = TTFont(CJK_EMBEDDED, path, subfontIndex=0)
            pdfmetrics.registerFont(font)
            return font
    return None


def cjk_font_for(run: str) -> str:
    """The embedded CJK font when it has every glyph of the run, else a CID font."""
    font = embedded_cjk_font()
    if font is not None and all(ord(c) in font.face.charToGlyph for c in run):
        return CJK_EMBEDDED
    language = "ja" if KANA.search(run) else "ko" if HANGUL.search(run) else "zh"
    return CJK_FONTS[language]


@functools.cache
def fonts() -> tuple[str, str]:
    """(regular, bold) font names, registering DejaVu once."""
    for folder in FONT_DIRS:
        regular, bold = Path(folder, "DejaVuSans.ttf"), Path(folder, "DejaVuSans-Bold.ttf")
        if regular.is_file() and bold.is_file():
            pdfmetrics.registerFont(TTFont(UNICODE_FONT, str(regular)))
            pdfmetrics.registerFont(TTFont(UNICODE_BOLD, str(bold)))
            pdfmetrics.registerFontFamily(UNICODE_FONT, normal=UNICODE_FONT, bold=UNICODE_BOLD)
            return UNICODE_FONT, UNICODE_BOLD
    log.warning(
        "DejaVu Sans not found in %s; using Helvetica, which shows non-Latin names as empty boxes",
        ", ".join(FONT_DIRS),
    )
    return "Helvetica", "Helvetica-Bold"


@functools.cache
def styles() -> dict[str, ParagraphStyle]:
    regular, bold = fonts()
    sample = getSampleStyleSheet()
    body = sample["BodyText"].clone("ReportBody", fontName=regular, spaceBefore=0, spaceAfter=0)
    return {
        "title": sample["Title"].clone("ReportTitle", fontName=bold),
        "body": body,
        "product": body.clone("ReportProduct", spaceAfter=body.leading),
        "cell": body.clone("ReportCell", fontSize=9, leading=11),
        "head": body.clone("ReportHead", fontName=bold, fontSize=9, leading=11),
    }


# -- building -------------------------------------------------------------------


class NumberedCanvas(pdfcanvas.Canvas):
    """Writes 'Page N of M' on every page, once the document has more than one."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pages: list[dict] = []

    def showPage(self) -> None:
        self.pages.append(dict(self.__dict__))
        self._startPage()

    def save(self) -> None:
        total = len(self.pages)
        for number, state in enumerate(self.pages, 1):
            self.__dict__.update(state)
            if total > 1:
                self.setFont(fonts()[0], 8)
                self.drawRightString(A4[0] - 20 * mm, 10 * mm, f"Page {number} of {total}")
            super().showPage()
        super().save()


def body_flowables(paragraph: str) -> list[Flowable]:
    """The body markup, one Paragraph per blank-line separated piece."""
    pieces = split_paragraph(paragraph)
    style = styles()["product"]
    return [Paragraph(piece, style) for piece in pieces]


def thumbnail(path: str | None) -> Flowable | str:
    """A small picture of the product, or nothing when the file is gone or unreadable."""
    if not path or not Path(path).is_file():
        return ""
    try:
        with PILImage.open(path):  # reads the header only; reportlab would fail mid-build
            pass
    except OSError as error:
        log.warning("no thumbnail for %s: %s", path, error)
        return ""
    return Image(path, width=THUMBNAIL[0], height=THUMBNAIL[1], kind="proportional")


def cell(text: str, width: float) -> Flowable | str:
    """Plain text when it fits on one line in the regular font, else a Paragraph.

    A plain string is drawn as is (no markup, so no escaping) and costs a
    fraction of a Paragraph; wrapping and CJK font runs need the Paragraph."""
    style = styles()["cell"]
    if len(text) > MAX_CELL_TEXT:
        # A table row taller than a page cannot be laid out at all.
        text = text[: MAX_CELL_TEXT - 1] + "…"
    room = width - 2 * CELL_PADDING
    if not CJK_RUN.search(text) and stringWidth(text, style.fontName, style.fontSize) <= room:
        return text
    return Paragraph(markup(text), style)


def table_flowables(rows: Sequence[Row], thumbnails: bool) -> list[Flowable]:
    """The product table, in blocks of rows that share column widths."""
    head = styles()["head"]
    header = [Paragraph(text, head) for text in ("Image", "Name", "Weight", "Status")]
    style = [
        ("FONT", (0, 0), (-1, -1), styles()["cell"].fontName, styles()["cell"].fontSize),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.grey),
    ]
    _, name_width, weight_width, status_width = COLUMN_WIDTHS
    blocks: list[Flowable] = [Table([header], colWidths=COLUMN_WIDTHS, style=style)]
    for start in range(0, len(rows), TABLE_BLOCK_ROWS):
        data = [
            [
                thumbnail(row.image) if thumbnails else "",
                cell(row.name, name_width),
                cell("" if row.weight is None else f"{row.weight} lbs", weight_width),
                cell(status_text(row), status_width),
            ]
            for row in rows[start : start + TABLE_BLOCK_ROWS]
        ]
        blocks.append(Table(data, colWidths=COLUMN_WIDTHS, style=style))
    return blocks


def build(attachment: str | Path, title: str, story: Iterable[Flowable], subject: str) -> None:
    """Write the PDF to a temporary file beside `attachment`, then rename it into place."""
    target = Path(attachment)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        render(temporary, title, story, subject)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def render(path: str, title: str, story: Iterable[Flowable], subject: str) -> None:
    document = SimpleDocTemplate(
        path,
        pagesize=A4,
        title=title,
        author=AUTHOR,
        subject=subject,
        creator="fruit-catalog reports.py",
    )
    heading = Paragraph(markup(title), styles()["title"])
    document.build([heading, *story], canvasmaker=NumberedCanvas)


def generate_report(attachment: str | Path, title: str, paragraph: str) -> None:
    """The lab's report: `title` as the heading, `paragraph` markup as the body."""
    build(attachment, title, body_flowables(paragraph), subject=title)


def generate_supplier_report(
    attachment: str | Path,
    title: str,
    rows: Sequence[Row],
    paragraph: str = "",
    thumbnails: bool = True,
) -> None:
    """Heading, body markup, summary line and a table of every product."""
    story = [
        *body_flowables(paragraph),
        Spacer(1, 4 * mm),
        Paragraph(markup(summary_line(rows)), styles()["body"]),
        Spacer(1, 4 * mm),
        *table_flowables(rows, thumbnails),
    ]
    build(attachment, title, story, subject=summary_line(rows))


def main(argv: list[str] | None = None) -> int:
    """Write a small sample report, to see the layout and fonts."""
    target = Path((argv if argv is not None else sys.argv[1:] or ["sample.pdf"])[0])
    rows = [
        Row("Apple", 500, "imported"),
        Row("Cherry & <b>Berry</b>", 30, "already in store"),
        Row("Ελιά / Вишня / 苹果", None, "failed", "weight 'heavy' is not a number"),
    ]
    lines = "".join(
        f"name: {markup(r.name)}<br/>weight: {r.weight} lbs<br/><br/>"
        for r in rows
        if r.status != "failed"
    )
    generate_supplier_report(target, "Processed Update (sample)", rows, lines)
    print(f"{target}: {len(rows)} products")
    return 0


if __name__ == "__main__":
    sys.exit(main())
