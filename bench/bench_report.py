#!/usr/bin/env python3
"""Benchmark the supplier report: time, PDF size and mail size by product count.

End to end, as users run it: for each count, a delivery with distinct
photo-like catalog JPEGs and a version 3 record is written, then
`report_email.py --save-dir` builds the PDF and the mail (an .eml holds
exactly what SMTP would carry, base64 included). Reported per count: wall
time, pages, PDF size, mail size, thumbnails shown. The goals: 200 products
under 3 MB of PDF; every mail up to 10,000 products under 10 MB.

For comparison, the lab's recipe (one Paragraph holding every product, which
reportlab re-splits at every page break, so its time grows with the square
of the count) against reports.generate_report with the same text.

Usage:
    python bench/bench_report.py [--sizes 200 1000 10000] [--lab-sizes 1000 2000]

Example:
    $ python bench/bench_report.py --sizes 200 --lab-sizes 1000
      1000 products  lab recipe 1.95 s, generate_report 0.19 s (10.3x)
       200 products  0.9 s  17 pages  PDF 0.84 MB  mail 1.17 MB  200 thumbnails
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pypdf import PdfReader
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "sandbox")]

import reports  # noqa: E402
from make_delivery import photo_like  # noqa: E402

DISTINCT_IMAGES = 2500  # past the budget no picture is read, so later products share files


def lab_paragraph(count: int) -> str:
    return "".join(f"name: Fruit {n}<br/>weight: {n % 500} lbs<br/><br/>" for n in range(count))


def lab_recipe(path: Path, count: int) -> None:
    styles = getSampleStyleSheet()
    story = [
        Paragraph("Processed Update", styles["h1"]),
        Spacer(1, 20),
        Paragraph(lab_paragraph(count), styles["BodyText"]),
    ]
    SimpleDocTemplate(str(path)).build(story)


def timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def delivery(folder: Path, count: int) -> Path:
    """A record of `count` imported products, each with a catalog JPEG."""
    images = folder / "supplier-data" / "images"
    images.mkdir(parents=True)
    products = []
    for n in range(count):
        image = images / f"{n % DISTINCT_IMAGES:05d}.jpeg"
        if n < DISTINCT_IMAGES:
            photo_like((300, 200), n).convert("RGB").save(image, "JPEG", quality=85)
        products.append(
            {
                "file": f"{n:05d}.txt",
                "name": f"Fruit {n}",
                "weight": n % 500,
                "description": "",
                "image_name": image.name,
                "image_path": str(image),
                "id": n + 1,
                "outcome": "imported",
                "reason": "",
                "store_values": {},
                "problem": "",
                "details": {},
            }
        )
    record = folder / "imported.json"
    document = {"version": 3, "delivery": "supplier-data", "images": str(images), "complete": True}
    record.write_text(json.dumps({**document, "products": products}))
    return record


def end_to_end(folder: Path, count: int, *flags: str) -> str:
    record = delivery(folder, count)
    pdf, outbox = folder / "processed.pdf", folder / "outbox"
    command = [sys.executable, str(ROOT / "report_email.py"), "-q", "--record", str(record)]
    command += ["--pdf", str(pdf), "--save-dir", str(outbox), *flags]
    env = {**os.environ, "USER": "bench"}
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, timeout=3600)
    seconds = time.perf_counter() - start
    [mail] = outbox.glob("*.eml")
    reader = PdfReader(pdf)
    pictures = sum(len(page["/Resources"].get("/XObject", {})) for page in reader.pages)
    return (
        f"{count:6d} products{' ' + ' '.join(flags) if flags else ''}  {seconds:5.1f} s"
        f"  {len(reader.pages):4d} pages  PDF {pdf.stat().st_size / 1e6:5.2f} MB"
        f"  mail {mail.stat().st_size / 1e6:5.2f} MB  {pictures} thumbnails"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000, 10000], metavar="N")
    parser.add_argument("--lab-sizes", type=int, nargs="+", default=[1000, 2000], metavar="N")
    parser.add_argument("--text-only", type=int, nargs="*", default=[10000], metavar="N")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-report-") as scratch_name:
        scratch = Path(scratch_name)
        reports.fonts()  # font registration is a one-time cost, not per report
        pdf = scratch / "lab.pdf"
        for count in args.lab_sizes:
            lab = timed(lambda c=count: lab_recipe(pdf, c))
            ours = timed(lambda c=count: reports.generate_report(pdf, "P", lab_paragraph(c)))
            print(
                f"{count:6d} products  lab recipe {lab:.2f} s,"
                f" generate_report {ours:.2f} s ({lab / ours:.1f}x)",
                flush=True,
            )
        for count in args.sizes:
            print(end_to_end(scratch / f"n{count}", count), flush=True)
        for count in args.text_only:
            print(end_to_end(scratch / f"t{count}", count, "--no-thumbnails"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
