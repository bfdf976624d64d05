"""The sample delivery looks like a supplier's: TIFFs, stray files, descriptions."""

from __future__ import annotations

from PIL import Image, ImageStat

from make_delivery import make_delivery


def test_delivery_layout(tmp_path):
    root = make_delivery(tmp_path, count=3, size=(90, 60))
    images = sorted(p.name for p in (root / "images").iterdir())
    assert images == ["001.tiff", "002.tiff", "003.tiff", "LICENSE", "README"]
    assert sorted(p.name for p in (root / "descriptions").iterdir()) == [
        "001.txt",
        "002.txt",
        "003.txt",
    ]


def test_images_are_rgba_tiffs_of_the_asked_size_and_not_flat(tmp_path):
    root = make_delivery(tmp_path, count=1, size=(300, 200))
    with Image.open(root / "images" / "001.tiff") as image:
        assert (image.format, image.mode, image.size) == ("TIFF", "RGBA", (300, 200))
        spread = ImageStat.Stat(image.convert("RGB")).stddev
    assert min(spread) > 10


def test_descriptions_have_name_weight_and_text(tmp_path):
    root = make_delivery(tmp_path, count=2, size=(30, 20))
    name, weight, text = (root / "descriptions" / "002.txt").read_text().splitlines()
    assert name == "Avocado"
    assert weight.endswith(" lbs") and int(weight.split()[0]) > 0
    assert text


def test_names_stay_unique_past_the_list_of_fruits(tmp_path):
    root = make_delivery(tmp_path, count=12, size=(30, 20))
    names = [p.read_text().splitlines()[0] for p in sorted((root / "descriptions").iterdir())]
    assert len(set(names)) == 12
    assert names[0] == "Apple" and names[10:] == ["Apple 2", "Avocado 2"]
