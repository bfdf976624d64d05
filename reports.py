#!/usr/bin/env python3
"""PDF reports of what was imported into the store (helper module).

The lab's step 4 builds its PDF here: report_email.py calls
generate_supplier_report, the lab's generate_report with a table. Two ways in:
  generate_report(attachment, title, paragraph)
      the lab's signature: `title` as the heading and `paragraph` (reportlab
      Paragraph markup, <br/> line breaks) as the body.
  generate_supplier_report(attachment, title, rows, intro=(), chart=None)
      the heading, a few intro lines (date, store, summary), the chart,
      then a table with a row per product: its thumbnail, its lines (the
      lab's `name: X` / `weight: N lbs` for an imported product) and its
      outcome. Rows with an `attention` marker come first, under a red
      "Needs your attention" heading, the marker in bold red with what to
      do; the others follow. Each product appears once; the table header
      repeats on every page. Returns the number of pages. Supplier text is
      escaped, never markup.
  delivery_chart(weights, outcomes)
      the course's pie chart (a ReportLab Drawing): what was imported by
      weight (the six largest products, the rest as one "others" slice, so
      500 products read as well as 3) beside the products by outcome.
  make_thumbnail(file)
      a small JPEG (144x96 at most, a few KB) from an open image file; an
      image whose header claims more than 40 million pixels is refused with
      ValueError before anything is decoded.

Text in Greek, Cyrillic and accented Latin is set in DejaVu Sans when the
system has it; CJK runs use an embedded system font or reportlab's CID fonts.
Without DejaVu the standard Helvetica is used, with one warning. Pages are
compressed and numbered once the report runs over a page. The cost grows
linearly with the number of products (bench/bench_report.py).

It takes its command line, its guard and its file writer from emails.py, the
other helper, which must stand beside it.

Usage:
    import reports
    reports.generate_report("/tmp/processed.pdf", "Processed Update", "name: Apple<br/>...")

    ./reports.py [PDF]      # write a sample report (default sample.pdf) to see the layout

Example:
    $ ./reports.py /tmp/sample.pdf
    /tmp/sample.pdf: 3 products, 1 page

Exit status: 0 written, 2 usage error or the PDF cannot be written there.
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

import errno
import functools
import io
import logging
import math
import os
import re
import stat
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from xml.sax.saxutils import escape

try:
    from emails import Option, build_parser, configure_logging, guarded, write_atomically
except ImportError as missing:  # copied alone: say what it needs, in one line
    SAID = f"{Path(__file__).name}: {missing.name}.py is missing: copy it beside"
    if __name__ != "__main__":
        raise ModuleNotFoundError(SAID) from None
    print(SAID, file=sys.stderr)
    raise SystemExit(2) from None

try:
    from PIL import Image as PILImage
    from reportlab import rl_config
    from reportlab.graphics.charts.legends import Legend
    from reportlab.graphics.charts.piecharts import Pie
    from reportlab.graphics.shapes import Drawing, String
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfbase.pdfmetrics import stringWidth
    from reportlab.pdfbase.ttfonts import TTFont
    from reportlab.pdfgen import canvas as pdfcanvas
    from reportlab.platypus import (
        BaseDocTemplate,
        Flowable,
        Frame,
        Image,
        PageTemplate,
        Paragraph,
        Spacer,
        Table,
    )
except ImportError as error:  # --help and -V still work; anything else says the pip line
    stand_in = Missing(error, "Pillow==13.0.0 reportlab==5.1.0")
    PILImage = rl_config = Legend = Pie = Drawing = String = colors = A4 = stand_in
    ParagraphStyle = getSampleStyleSheet = mm = pdfmetrics = UnicodeCIDFont = stand_in
    stringWidth = TTFont = pdfcanvas = BaseDocTemplate = Flowable = Frame = stand_in
    Image = PageTemplate = Paragraph = Spacer = Table = stand_in

__version__ = "2.0.0"

EXIT_OK, EXIT_USAGE = 0, 2
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
MARGIN = 20 * mm
TABLE_BLOCK_ROWS = 50  # one Table per block: a 10,000-row table re-splits at every page
THUMBNAIL_BOX = (24 * mm, 16 * mm)
THUMBNAIL_PIXELS = (144, 96)  # about 150 dpi in the box
THUMBNAIL_QUALITY = 70
MAX_SOURCE_PIXELS = 40_000_000  # a catalog JPEG has 240,000; a camera original 24 million
# What a PDF must never replace, by the test of its mode.
SPECIAL_FILES = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))
SPECIAL_FILES += ((stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))
HEADINGS = ("Picture", "Product", "Outcome")
WIDTHS_WITH_PICTURES = (28 * mm, 84 * mm, 58 * mm)
WIDTHS_WITHOUT = (112 * mm, 58 * mm)
CELL_PADDING = 6  # reportlab's default left and right padding of a table cell
FONT_SIZE, SMALLEST_FONT_SIZE = 9, 6
MAX_CELL_TEXT = 300
HEADER_HEIGHT = 8 * mm
ATTENTION_RED = "#b00020"
# The chart: two pies side by side, each with its legend (slice names as text).
CHART_WIDTH, CHART_HEIGHT, PIE_SIZE = 170 * mm, 44 * mm, 30 * mm
CHART_SLICES = 6  # the largest products by weight; the rest is one "other" slice
CHART_LABEL = 28  # characters of a product name in the legend, at most
LEGEND_SIZE = 7  # points
WEIGHT_COLORS = ("#1b5e20", "#66bb6a", "#2e7d32", "#a5d6a7", "#43a047", "#c8e6c9")
OTHER_COLOR = "#9e9e9e"
OUTCOME_COLORS = {
    "imported": "#2e7d32",
    "already in store": "#1565c0",
    "not confirmed": "#ef6c00",
    "not imported": ATTENTION_RED,
}
ATTENTION_HEADING = "Needs your attention"
OTHERS_HEADING = "All other products"

log = logging.getLogger("reports")
# Binary streams as they are: ASCII85 would make every embedded JPEG a quarter larger.
rl_config.useA85 = 0


@dataclass(frozen=True)
class Row:
    """One product in the supplier report: its lines, outcome and thumbnail JPEG.
    A row with an `attention` marker ('Not imported') is listed first, the marker
    in bold red, then the status (what is wrong) and `todo` (what to do)."""

    lines: tuple[str, ...]
    status: str
    thumbnail: bytes | None = None
    attention: str = ""
    todo: str = ""


# -- pure functions -----------------------------------------------------------


def markup(text: str) -> str:
    """Supplier text as safe Paragraph markup: escaped, CJK runs in a CJK font."""

    def cjk(match: re.Match) -> str:
        return f'<font name="{cjk_font_for(match.group(0))}">{match.group(0)}</font>'

    return CJK_RUN.sub(cjk, escape(text))


def split_paragraph(paragraph: str) -> list[str]:
    """The lab's one long paragraph as one piece per product (blank-line separated)."""
    return [piece for piece in BLANK_LINE.split(paragraph) if piece.strip()]


def shortened(text: str) -> str:
    # A table row taller than a page cannot be laid out at all.
    return text if len(text) <= MAX_CELL_TEXT else text[: MAX_CELL_TEXT - 1] + "…"


# -- thumbnails -------------------------------------------------------------------


def make_thumbnail(source: BinaryIO) -> bytes:
    """A small JPEG of the image read from `source`; ValueError or OSError when
    it cannot be one. Only the header is read before the size check."""
    with warnings.catch_warnings():
        # Pillow's own bomb warning comes after our lower limit below.
        warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
        try:
            image = PILImage.open(source)
        except PILImage.DecompressionBombError:
            raise ValueError(
                f"its header claims over {2 * PILImage.MAX_IMAGE_PIXELS:,} pixels"
                " (a decompression bomb); not decoded"
            ) from None
    with image:
        width, height = image.size
        if width * height > MAX_SOURCE_PIXELS:
            raise ValueError(
                f"its header claims {width}x{height} pixels, over the limit of"
                f" {MAX_SOURCE_PIXELS:,}; not decoded"
            )
        image.draft("RGB", THUMBNAIL_PIXELS)  # JPEG decodes at 1/2 to 1/8 scale directly
        small = image.convert("RGB")
    small.thumbnail(THUMBNAIL_PIXELS)
    out = io.BytesIO()
    small.save(out, "JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    return out.getvalue()


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
        "cell": body.clone("ReportCell", fontSize=FONT_SIZE, leading=FONT_SIZE + 2),
        "head": body.clone("ReportHead", fontName=bold, fontSize=FONT_SIZE, leading=11),
        "section": body.clone(
            "ReportSection", fontName=bold, fontSize=12, leading=15, spaceBefore=6, spaceAfter=4
        ),
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
                self.drawRightString(A4[0] - MARGIN, 10 * mm, f"Page {number} of {total}")
            super().showPage()
        super().save()


def body_flowables(paragraph: str) -> list[Flowable]:
    """The body markup, one Paragraph per blank-line separated piece."""
    style = styles()["product"]
    return [Paragraph(piece, style) for piece in split_paragraph(paragraph)]


def fitting_size(lines: Sequence[str], width: float) -> float | None:
    """The largest font size from 9 down to 6 points at which every line fits on
    one line of the cell (so `name: X` stays one line for any text extractor);
    None when even 6 points is too wide."""
    room = width - 2 * CELL_PADDING
    widest = max((stringWidth(line, styles()["cell"].fontName, 1) for line in lines), default=0)
    if widest * FONT_SIZE <= room:
        return FONT_SIZE
    size = math.floor(room / widest * 2) / 2 if widest else FONT_SIZE
    return size if size >= SMALLEST_FONT_SIZE else None


def cell(lines: Sequence[str], width: float) -> Flowable | str:
    """Plain text when it fits in the regular font, else a Paragraph (smaller
    type, wrapping, CJK font runs). A plain string is drawn as is and costs a
    fraction of a Paragraph."""
    lines = [shortened(line) for line in lines]
    size = fitting_size(lines, width)
    if size == FONT_SIZE and not any(CJK_RUN.search(line) for line in lines):
        return "\n".join(lines)
    base = styles()["cell"]
    style = base.clone("ReportSmall", fontSize=size, leading=size + 2) if size else base
    return Paragraph("<br/>".join(markup(line) for line in lines), style)


def outcome_cell(row: Row, width: float) -> Flowable | str:
    """The outcome; for a row needing attention its marker in bold red, what is
    wrong and what to do, wrapped to the column."""
    if not row.attention:
        return cell([row.status], width)
    marker = f'<font color="{ATTENTION_RED}"><b>{markup(row.attention)}</b></font>'
    parts = [marker, markup(shortened(row.status))]
    if row.todo:
        parts.append(f"<b>What to do:</b> {markup(shortened(row.todo))}")
    return Paragraph("<br/>".join(parts), styles()["cell"])


def picture(row: Row) -> Flowable | str:
    if row.thumbnail is None:
        return ""
    box_width, box_height = THUMBNAIL_BOX
    return Image(io.BytesIO(row.thumbnail), box_width, box_height, kind="proportional")


def table_style() -> list[tuple]:
    return [
        ("FONT", (0, 0), (-1, -1), styles()["cell"].fontName, FONT_SIZE),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.grey),
    ]


def table_flowables(rows: Sequence[Row], widths: Sequence[float]) -> list[Flowable]:
    """The product table in blocks of rows sharing column widths; the first block
    starts with the header row (later pages get it from the page template)."""
    pictures = len(widths) == len(HEADINGS)
    product_width, status_width = widths[-2:]
    head = styles()["head"]
    header = [Paragraph(text, head) for text in HEADINGS[-len(widths) :]]
    blocks: list[Flowable] = []
    for start in range(0, max(len(rows), 1), TABLE_BLOCK_ROWS):
        data = [
            [picture(row)] * pictures
            + [cell(row.lines, product_width), outcome_cell(row, status_width)]
            for row in rows[start : start + TABLE_BLOCK_ROWS]
        ]
        if start == 0:
            data.insert(0, header)
        blocks.append(Table(data, colWidths=widths, style=table_style()))
    return blocks


def largest(pairs: Sequence[tuple[str, float]], keep: int = CHART_SLICES) -> list:
    """The `keep` largest (label, value) pairs, the rest summed as one 'N others'
    pair (one more is shown by its name); pairs without a positive value are left
    out (a pie cannot show them)."""
    ranked = sorted((pair for pair in pairs if pair[1] > 0), key=lambda pair: -pair[1])
    if len(ranked) <= keep:
        return ranked
    if len(ranked) == keep + 1:  # its own name says more than "1 other"
        return ranked
    rest = ranked[keep:]
    return [*ranked[:keep], (f"{len(rest):,} others", sum(v for _, v in rest))]


def share(value: float, total: float) -> str:
    """'12%', or '<1%' for a slice too small to round to one."""
    percent = 100 * value / total
    return "<1%" if 0 < percent < 0.5 else f"{percent:.0f}%"


def fitted(label: str, tail: str, font: str, room: float) -> str:
    """label + tail in at most `room` points: the label cut (with …) as far as needed,
    so a long or wide name never hides its value and share."""
    text = f"{label}{tail}"
    while label and stringWidth(text, font, LEGEND_SIZE) > room:
        label = label[:-1]
        text = f"{label.rstrip()}…{tail}"
    return text


def pie(x: float, title: str, slices: Sequence[tuple[str, float, str]], unit: str) -> list:
    """A titled pie at x with a legend beside it: 'Apple: 500 lbs (12%)' per slice,
    the legend kept within its half of the chart."""
    regular, bold = fonts()
    top = CHART_HEIGHT - 4 * mm
    shapes: list = [String(x, top, title, fontName=bold, fontSize=FONT_SIZE)]
    total = sum(value for _, value, _ in slices)
    if not total:
        return [*shapes, String(x, top - 6 * mm, "nothing to show", fontName=regular, fontSize=8)]
    chart = Pie()
    chart.x, chart.y, chart.width, chart.height = x, 2 * mm, PIE_SIZE, PIE_SIZE
    chart.data = [value for _, value, _ in slices]
    chart.labels = None
    chart.slices.strokeWidth, chart.slices.strokeColor = 0.5, colors.white
    for index, (_, _, color) in enumerate(slices):
        chart.slices[index].fillColor = colors.HexColor(color)
    legend = Legend()
    legend.x, legend.y = x + PIE_SIZE + 4 * mm, 2 * mm + PIE_SIZE
    legend.fontName, legend.fontSize, legend.alignment = regular, LEGEND_SIZE, "right"
    legend.dx = legend.dy = 2.5 * mm
    legend.deltay, legend.columnMaximum = 9, len(slices)
    room = CHART_WIDTH / 2 - (legend.x - x) - legend.dx - legend.dxTextSpace - 2 * mm
    legend.colorNamePairs = [
        (
            colors.HexColor(color),
            fitted(label, f": {value:,.0f}{unit} ({share(value, total)})", regular, room),
        )
        for label, value, color in slices
    ]
    return [*shapes, chart, legend]


def delivery_chart(weights: Sequence[tuple[str, float]], outcomes: dict[str, int]) -> Drawing:
    """The delivery at a glance, after the course's pie chart: what was imported by
    weight (the largest products, the rest as 'other'), and the products by outcome
    (the keys of OUTCOME_COLORS), failures in the attention red."""
    named = [(shortened_label(name), weight) for name, weight in weights]
    by_weight = [
        (label, value, WEIGHT_COLORS[i] if i < CHART_SLICES else OTHER_COLOR)
        for i, (label, value) in enumerate(largest(named))
    ]
    by_outcome = [
        (outcome.capitalize(), outcomes[outcome], color)
        for outcome, color in OUTCOME_COLORS.items()
        if outcomes.get(outcome)
    ]
    drawing = Drawing(CHART_WIDTH, CHART_HEIGHT)
    half = CHART_WIDTH / 2
    for shape in [
        *pie(0, "Imported, by weight", by_weight, " lbs"),
        *pie(half, "Products, by outcome", by_outcome, ""),
    ]:
        drawing.add(shape)
    return drawing


def shortened_label(name: str) -> str:
    name = " ".join(name.split())
    return name if len(name) <= CHART_LABEL else name[: CHART_LABEL - 1] + "…"


def header_painter(widths: Sequence[float]) -> Callable[[pdfcanvas.Canvas, BaseDocTemplate], None]:
    """Draws the table header at the top of every page after the first."""
    headings = HEADINGS[-len(widths) :]

    def paint(canvas: pdfcanvas.Canvas, document: BaseDocTemplate) -> None:
        canvas.saveState()
        canvas.setFont(fonts()[1], FONT_SIZE)
        top = A4[1] - MARGIN
        x = MARGIN
        for heading, width in zip(headings, widths, strict=True):
            canvas.drawString(x + CELL_PADDING, top - 5.5 * mm, heading)
            x += width
        canvas.setStrokeColor(colors.grey)
        canvas.setLineWidth(0.25)
        canvas.line(MARGIN, top - HEADER_HEIGHT, MARGIN + sum(widths), top - HEADER_HEIGHT)
        canvas.restoreState()

    return paint


def refuse_special(target: Path) -> None:
    """OSError saying what is in the way when target is a folder, FIFO, socket or
    device: renaming the PDF over it would replace, say, /dev/null for the whole
    machine. A link is replaced, never followed, so a planted link cannot aim the
    PDF at another file. A missing target will be made; an unreachable one is for
    the writing to explain."""
    try:
        mode = os.lstat(target).st_mode
    except OSError:
        return
    if stat.S_ISDIR(mode):
        raise OSError(errno.EEXIST, f"{target} is a folder; name the PDF file to write")
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        kind = next((name for test, name in SPECIAL_FILES if test(mode)), "a special file")
        raise OSError(errno.EEXIST, f"{target} is {kind}, not a file a PDF may replace")


def build(attachment: str | Path, render: Callable[[BinaryIO], None]) -> None:
    """Render the PDF in memory (a mailed PDF is at most a few MB), then write it
    whole at `attachment` or leave what was there."""
    target = Path(attachment)
    refuse_special(target)  # before the rendering, which may take seconds
    rendered = io.BytesIO()
    render(rendered)
    write_atomically(target, rendered.getvalue())


def document(path: BinaryIO, title: str, subject: str, header: Callable | None) -> BaseDocTemplate:
    """A4 with compressed pages; a first page and later pages (with the header, if any)."""
    width, height = A4[0] - 2 * MARGIN, A4[1] - 2 * MARGIN
    below = HEADER_HEIGHT if header else 0
    first = Frame(MARGIN, MARGIN, width, height, id="first")
    later = Frame(MARGIN, MARGIN, width, height - below, id="later")
    return BaseDocTemplate(
        path,
        pagesize=A4,
        title=title,
        author=AUTHOR,
        subject=subject,
        creator=AUTHOR,  # the supplier reads it: the store, not our scripts
        pageCompression=1,
        pageTemplates=[
            PageTemplate("first", [first], autoNextPageTemplate="later"),
            PageTemplate("later", [later], onPage=header or (lambda *_: None)),
        ],
    )


def write(path: BinaryIO, title: str, subject: str, story: Iterable[Flowable], header=None) -> int:
    """Build the document; the number of pages."""
    doc = document(path, title, subject, header)
    heading = Paragraph(markup(title), styles()["title"])
    doc.build([heading, *story], canvasmaker=NumberedCanvas)
    return doc.page


def generate_report(attachment: str | Path, title: str, paragraph: str) -> None:
    """The lab's report: `title` as the heading, `paragraph` markup as the body."""
    build(attachment, lambda path: write(path, title, title, body_flowables(paragraph)))


def sections(rows: Sequence[Row], widths: Sequence[float]) -> list[Flowable]:
    """The rows needing attention first, under a red heading, then the others
    (each group in the given order); one plain table when none needs attention."""
    marked = [row for row in rows if row.attention]
    if not marked:
        return table_flowables(rows, widths)
    others = [row for row in rows if not row.attention]
    story: list[Flowable] = [
        Paragraph(
            f'<font color="{ATTENTION_RED}">{ATTENTION_HEADING} ({len(marked):,} of {len(rows):,}'
            " products)</font>",
            styles()["section"],
        ),
        *table_flowables(marked, widths),
    ]
    if others:
        heading = f"{OTHERS_HEADING} ({len(others):,})"
        story += [Paragraph(heading, styles()["section"]), *table_flowables(others, widths)]
    return story


def generate_supplier_report(
    attachment: str | Path,
    title: str,
    rows: Sequence[Row],
    intro: Sequence[str] = (),
    chart: Flowable | None = None,
) -> int:
    """Heading, intro lines, a chart (if any), and one table row per product, those
    needing attention first; the number of pages."""
    widths = WIDTHS_WITH_PICTURES if any(r.thumbnail for r in rows) else WIDTHS_WITHOUT
    story = [
        *(Paragraph(markup(line), styles()["body"]) for line in intro),
        Spacer(1, 4 * mm),
        *([chart, Spacer(1, 4 * mm)] if chart is not None else []),
        *sections(rows, widths),
    ]
    subject = intro[-1] if intro else title
    pages: list[int] = []
    build(
        attachment,
        lambda path: pages.append(write(path, title, subject, story, header_painter(widths))),
    )
    return pages[0]


# -- command line -----------------------------------------------------------------


def sample_chart() -> Drawing:
    return delivery_chart(
        [("Apple", 500), ("Cherry & <b>Berry</b>", 30)], {"imported": 2, "not imported": 1}
    )


def sample_rows() -> list[Row]:
    return [
        Row(("name: Apple", "weight: 500 lbs"), "imported"),
        Row(("name: Cherry & <b>Berry</b>", "weight: 30 lbs"), "imported"),
        Row(
            ("Ελιά / Вишня / 苹果 (003.txt)",),
            "line 2 of 003.txt: the weight 'heavy' is not whole pounds (like 500 lbs)",
            attention="Not imported",
            todo="fix line 2 of 003.txt and send it again",
        ),
    ]


OPTIONS = [
    Option("pdf", "output file", default=Path("sample.pdf"), type=Path, metavar="PDF", nargs="?")
]


def write_sample(argv: list[str] | None) -> int:
    """Write a small sample report, to see the layout and fonts."""
    parser = build_parser(__doc__, OPTIONS)
    args = parser.parse_args(argv)
    configure_logging(args.quiet, args.verbose)
    try:
        refuse_special(args.pdf)
    except OSError as error:
        parser.error(str(error.strerror))
    rows = sample_rows()
    try:
        pages = generate_supplier_report(
            args.pdf, "Processed Update (sample)", rows, chart=sample_chart()
        )
    except OSError as error:
        log.error("cannot write %s: %s", args.pdf, error.strerror or error)
        return EXIT_USAGE
    print(f"{args.pdf}: {len(rows)} products, {pages} page{'s' * (pages != 1)}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return guarded(lambda: write_sample(argv))


if __name__ == "__main__":
    sys.exit(main())
