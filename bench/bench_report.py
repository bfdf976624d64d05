#!/usr/bin/env python3
"""Benchmark the supplier report against the lab's one-paragraph recipe.

The lab builds the body as one Paragraph holding every product, joined with
<br/>; reportlab re-splits that paragraph at every page break, so its cost
grows with the square of the product count (10,000 products take minutes,
so the recipe is only run at the smaller sizes). Measured in the same run:
  lab recipe                  one Paragraph, as the lab wrote it
  generate_report             the lab's signature and paragraph, split by reports.py
  supplier report             lab lines + summary + table, without / with thumbnails

Usage:
    python bench/bench_report.py [--sizes 1000 10000] [--lab-sizes 1000 2000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import reports  # noqa: E402


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


def rows(count: int, images: list[str] | None) -> list[reports.Row]:
    return [
        reports.Row(
            f"Fruit {n}", n % 500, "imported", image=images[n % len(images)] if images else None
        )
        for n in range(count)
    ]


def timed(build: Callable[[], None]) -> float:
    start = time.perf_counter()
    build()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--lab-sizes", type=int, nargs="+", default=[1000, 2000])
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-report-") as scratch_name:
        scratch = Path(scratch_name)
        images = []
        for n in range(10):
            path = scratch / f"{n:03d}.jpeg"
            Image.new("RGB", (600, 400), (n * 25, 120, 200)).save(path)
            images.append(str(path))
        pdf = scratch / "report.pdf"
        reports.fonts()  # font registration is a one-time cost, not per report
        lab = {}
        for count in args.lab_sizes:
            lab[count] = timed(lambda c=count: lab_recipe(pdf, c))
            print(f"{count:6d} products  lab recipe (one Paragraph)        {lab[count]:7.2f} s")
        for count in args.sizes:
            paragraph = lab_paragraph(count)
            results = {
                "generate_report (lab signature)": timed(
                    lambda c=count, p=paragraph: reports.generate_report(pdf, "Processed", p)
                ),
                "supplier report, no thumbnails": timed(
                    lambda c=count, p=paragraph: reports.generate_supplier_report(
                        pdf, "Processed", rows(c, None), p, thumbnails=False
                    )
                ),
                "supplier report, thumbnails": timed(
                    lambda c=count, p=paragraph: reports.generate_supplier_report(
                        pdf, "Processed", rows(c, images), p
                    )
                ),
            }
            for label, seconds in results.items():
                ratio = (
                    f"  ({lab[count] / seconds:5.1f}x faster than the lab)" if count in lab else ""
                )
                print(f"{count:6d} products  {label:33s} {seconds:7.2f} s{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
