#!/usr/bin/env python3
"""Benchmark changeImage.py against the lab recipe, in the same run.

Builds a corpus with the sample generator (photo-like RGBA TIFFs), converts
one copy with the lab recipe (open, convert('RGB'), resize((600, 400)), save;
one process) and another with changeImage.py run as a user runs it, then
prints images per second for each, the ratio, and the PSNR of both outputs
against a LANCZOS-resized reference of the same sources.

Usage:
    python bench/bench_convert.py [--count 40] [--size 3000x2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageChops, ImageStat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "sandbox"))

from make_delivery import make_delivery, parse_size  # noqa: E402

TARGET = (600, 400)


LAB_RECIPE = """
import sys
from pathlib import Path
from PIL import Image
for source in sorted(Path(sys.argv[1]).glob("*.tiff")):
    im = Image.open(source)
    im.convert("RGB").resize((600, 400)).save(source.with_suffix(".jpeg"), "JPEG")
"""


def lab_recipe(images: Path) -> None:
    # Run as a script too, so both sides pay for starting Python and Pillow.
    subprocess.run([sys.executable, "-c", LAB_RECIPE, str(images)], check=True)


def change_image(images: Path, *flags: str) -> None:
    script = ROOT / "changeImage.py"
    subprocess.run([sys.executable, str(script), str(images), "-q", *flags], check=True)


def change_image_best(images: Path) -> None:
    change_image(images, "--best-quality")


def psnr(output: Path, reference: Image.Image) -> float:
    with Image.open(output) as image:
        difference = ImageChops.difference(image.convert("RGB"), reference)
    mse = sum(rms**2 for rms in ImageStat.Stat(difference).rms) / 3
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def mean_psnr(images: Path, references: dict[str, Image.Image]) -> float:
    values = [psnr(images / f"{stem}.jpeg", ref) for stem, ref in references.items()]
    return sum(values) / len(values)


def timed(convert, corpus: Path, work: Path, repeat: int) -> tuple[float, Path]:
    """Best images/s over `repeat` runs, each on a fresh copy of the corpus."""
    best = math.inf
    for _ in range(repeat):
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(corpus, work)
        start = time.perf_counter()
        convert(work)
        best = min(best, time.perf_counter() - start)
    count = len(list(corpus.glob("*.tiff")))
    return count / best, work


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--size", type=parse_size, default=(3000, 2000))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-convert-") as scratch:
        corpus = make_delivery(Path(scratch), args.count, args.size) / "images"
        references = {}
        for source in sorted(corpus.glob("*.tiff")):
            with Image.open(source) as image:
                reference = image.convert("RGB").resize(TARGET, Image.Resampling.LANCZOS)
                references[source.stem] = reference
        lab_rate, lab_out = timed(lab_recipe, corpus, Path(scratch) / "lab", args.repeat)
        our_rate, our_out = timed(change_image, corpus, Path(scratch) / "ours", args.repeat)
        lab_psnr, our_psnr = mean_psnr(lab_out, references), mean_psnr(our_out, references)
        best_rate, best_out = timed(change_image_best, corpus, Path(scratch) / "best", args.repeat)
        best_psnr = mean_psnr(best_out, references)
    size = "x".join(map(str, args.size))
    print(f"corpus: {args.count} RGBA TIFFs {size}, best of {args.repeat} runs")
    print(f"lab recipe (1 process):  {lab_rate:6.1f} images/s   PSNR {lab_psnr:5.2f} dB")
    print(f"changeImage.py:          {our_rate:6.1f} images/s   PSNR {our_psnr:5.2f} dB")
    print(f"  --best-quality:        {best_rate:6.1f} images/s   PSNR {best_psnr:5.2f} dB")
    print(f"ratio: {our_rate / lab_rate:.2f}x   PSNR difference: {our_psnr - lab_psnr:+.2f} dB")
    print(f"ratio --best-quality: {best_rate / lab_rate:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
