#!/usr/bin/env python3
"""Write a sample supplier delivery, shaped like a real one.

    supplier-data/
        images/001.tiff ... (photo-like RGBA TIFFs), LICENSE, README
        descriptions/001.txt ...  ("Name\\n500 lbs\\nOne line of text")

The images are gradients, shapes and noise rather than flat colour, so
decoding, resizing and JPEG encoding cost what they cost on real photos.

Usage:
    python sandbox/make_delivery.py DEST [--count 10] [--size 3000x2000]

Example:
    $ python sandbox/make_delivery.py /tmp/demo --count 3 --size 300x200
    /tmp/demo/supplier-data: 3 images, 3 descriptions
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFilter

FRUITS = [
    ("Apple", "An apple a day keeps the doctor away."),
    ("Avocado", "Creamy, green and full of good fats."),
    ("Banana", "Bananas are an excellent source of potassium."),
    ("Blackberry", "Sweet and tart berries from the hedgerow."),
    ("Grape", "Grapes grow in clusters of 15 to 300."),
    ("Kiwifruit", "Fuzzy brown skin hides a bright green flesh."),
    ("Lemon", "Sour citrus, essential in any kitchen."),
    ("Mango", "The king of fruits, juicy and fragrant."),
    ("Plum", "A stone fruit with a smooth, waxy skin."),
    ("Strawberry", "The only fruit with its seeds on the outside."),
]
LICENSE_TEXT = "Images licensed to the Online Fruit Store for catalog use only.\n"
README_TEXT = "Product photos for the next catalog update. One TIFF per product.\n"


def photo_like(size: tuple[int, int], seed: int) -> Image.Image:
    """An RGBA image with gradients, soft shapes, edges and sensor-like noise."""
    rng = random.Random(seed)
    width, height = size
    horizontal = Image.linear_gradient("L").rotate(90).resize(size)
    vertical = Image.linear_gradient("L").resize(size)
    radial = Image.radial_gradient("L").resize(size)
    base = Image.merge("RGB", (horizontal, vertical, radial))
    draw = ImageDraw.Draw(base)
    for _ in range(12):
        x, y = rng.randrange(width), rng.randrange(height)
        r = rng.randrange(max(2, width // 20), max(3, width // 4))
        colour = tuple(rng.randrange(256) for _ in range(3))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    base = base.filter(ImageFilter.GaussianBlur(radius=max(1, width // 600)))
    noise = Image.effect_noise(size, 24).convert("RGB")
    textured = ImageChops.add(base, noise, scale=1.0, offset=-128)
    return Image.merge("RGBA", (*textured.split(), Image.new("L", size, 255)))


def write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def make_delivery(dest: Path, count: int = 10, size: tuple[int, int] = (3000, 2000)) -> Path:
    """Write `dest/supplier-data` with `count` products; return that folder."""
    root = Path(dest) / "supplier-data"
    images, descriptions = root / "images", root / "descriptions"
    images.mkdir(parents=True, exist_ok=True)
    descriptions.mkdir(parents=True, exist_ok=True)
    write_text(images / "LICENSE", LICENSE_TEXT)
    write_text(images / "README", README_TEXT)
    for number in range(1, count + 1):
        stem = f"{number:03d}"
        photo_like(size, seed=number).save(images / f"{stem}.tiff")
        lap, index = divmod(number - 1, len(FRUITS))
        name, line = FRUITS[index]
        name += f" {lap + 1}" if lap else ""  # unique past the list: 'Apple 2'
        weight = 100 + (number * 37) % 400
        write_text(descriptions / f"{stem}.txt", f"{name}\n{weight} lbs\n{line}\n")
    return root


def parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    try:
        return int(width), int(height)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", type=Path, help="folder to create supplier-data/ in")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--size", type=parse_size, default=(3000, 2000), help="WxH")
    args = parser.parse_args(argv)
    root = make_delivery(args.dest, args.count, args.size)
    print(f"{root}: {args.count} images, {args.count} descriptions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
