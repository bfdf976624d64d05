"""Several importers at once on one store: each delivery taken through
changeImage.py, supplier_image_upload.py and run.py by its own processes, all
deliveries at the same time, every one numbering its files 001..012.

With the lab's names (the default since issue 25) a race lost leaves a copy,
said and counted (tests/test_supplier_image_upload.py); many importers at once
use --content-names (CATALOG_CONTENT_NAMES=1), as here. The code before content
names (the lab's plain name when free, read back by nobody) lost this test's race in 7
of 10 rounds on the project's 2-core machine (2026-12-06, two runs of this
file against /work/wt-base; 4 of 15 rounds before the uploads were made to
start together; 6 of 10 rounds, up to 26 of 48 products missing, in an ad hoc
run without changeImage.py): two uploaders saw 002.jpeg free, both sent it,
the store kept the second as 002_XXXXXXX.jpeg (a file no product shows) and
answered 201 to both, and run.py refused the loser's product (exit 1). With a
name from the content no two pictures share a name: 10 of 10 rounds whole."""

from __future__ import annotations

import os
import random
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import PIPELINE_ROOT, assert_catalog
from PIL import Image

DELIVERIES = 4
STEMS = [f"{number:03d}" for number in range(1, 13)]
STEPS = ("changeImage.py", "supplier_image_upload.py", "run.py")


def tiff_delivery(root: Path, shade: int) -> Path:
    """A delivery as suppliers send it: TIFFs of noise (a picture of its own per
    delivery and number) and descriptions naming the delivery."""
    rng = random.Random(shade)
    (root / "images").mkdir(parents=True)
    (root / "descriptions").mkdir()
    for number, stem in enumerate(STEMS, 1):
        noise = Image.frombytes("RGB", (120, 80), rng.randbytes(120 * 80 * 3))
        noise.save(root / "images" / f"{stem}.tiff")
        text = f"Fruit {number} of delivery {shade}\n{100 + number} lbs\nFrom {stem}.\n"
        (root / "descriptions" / f"{stem}.txt").write_text(text, encoding="utf-8")
    return root


def import_delivery(
    delivery: Path, url: str, converted: threading.Barrier, *flags: str, distinct: bool = False
) -> list[tuple[str, int, str]]:
    """The three steps, one after the other, each its own process; the uploads
    start together (once every delivery is converted), where the race is.
    distinct: with CATALOG_CONTENT_NAMES=1, as the README says for many importers."""
    env = {"PATH": os.environ["PATH"], "SUPPLIER_DATA": str(delivery), "CATALOG_URL": url}
    env |= {"CATALOG_CONTENT_NAMES": "1"} if distinct else {}
    done = []
    for step in STEPS:
        if step == "supplier_image_upload.py":
            converted.wait(timeout=120)
        result = subprocess.run(
            [str(PIPELINE_ROOT / step), *(flags or ["-q"])],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        done.append((step, result.returncode, result.stderr))
    return done


@pytest.mark.parametrize("round_", range(5))
def test_four_deliveries_imported_at_once_each_show_their_own_photos(
    store_factory, tmp_path, round_
):
    store = store_factory()
    deliveries = [tiff_delivery(tmp_path / f"delivery{n}", n + 10 * round_) for n in range(4)]
    converted = threading.Barrier(DELIVERIES)
    with ThreadPoolExecutor(DELIVERIES) as pool:
        runs = [
            pool.submit(import_delivery, d, store.url, converted, distinct=True) for d in deliveries
        ]
        results = [run.result() for run in runs]
    for steps in results:
        assert [(step, status) for step, status, _ in steps] == [(s, 0) for s in STEPS], steps
    assert_catalog(store, *deliveries)
    kept = sorted(path.name for path in store.catalog.images.iterdir())
    assert len(kept) == DELIVERIES * len(STEMS), kept  # no file that no product shows


@pytest.mark.parametrize("round_", range(2))
def test_two_machines_importing_the_same_delivery_show_the_right_photos_and_name_copies(
    store_factory, tmp_path, round_
):
    """No lock reaches another machine: what README promises then. Every product
    shows its photo; a copy the race left is either a product that a run names
    in an ERROR line, even under -q, with status 1, or a picture of the same
    bytes that no product shows."""
    store = store_factory()
    copies = [tiff_delivery(tmp_path / f"machine{n}" / "supplier-data", 5) for n in range(2)]
    converted = threading.Barrier(len(copies))
    with ThreadPoolExecutor(len(copies)) as pool:
        runs = [pool.submit(import_delivery, d, store.url, converted, "-q") for d in copies]
        results = [run.result() for run in runs]
    for steps in results:
        assert [(step, status) for step, status, _ in steps[:-1]] == [(s, 0) for s in STEPS[:-1]]
        _, status, said_here = steps[-1]
        assert status == (1 if "products named" in said_here else 0), said_here
    said = "".join(steps[-1][2] for steps in results)
    jpegs = {stem: (copies[0] / "images" / f"{stem}.jpeg").read_bytes() for stem in STEMS}
    assert jpegs == {s: (copies[1] / "images" / f"{s}.jpeg").read_bytes() for s in STEMS}
    fruits = store.catalog.fruits()
    for fruit in fruits:
        stem = fruit["description"].removeprefix("From ").removesuffix(".")
        assert (store.catalog.images / fruit["image_name"]).read_bytes() == jpegs[stem]
    assert {f["name"] for f in fruits} == {f"Fruit {n} of delivery 5" for n in range(1, 13)}
    named = {f["image_name"] for f in fruits}
    for path in store.catalog.images.iterdir():
        if path.name not in named:
            original = path.name[: -len("_XXXXXXX.jpeg")] + ".jpeg"
            assert path.read_bytes() == (store.catalog.images / original).read_bytes()
    twice = {f["name"] for f in fruits if [g["name"] for g in fruits].count(f["name"]) > 1}
    for name in twice:
        assert f"ERROR {name} (" in said and f"the store holds 2 products named {name!r}" in said


def test_two_deliveries_racing_for_the_lab_names_each_show_their_own_photos(
    store_factory, tmp_path
):
    """The default (the lab's names) with two deliveries numbered alike, imported
    at the same moment: whichever takes 001.jpeg first keeps it, the other's
    picture falls back to its content name, read back before its product is
    posted, so every product shows its own photo in the first run and run.py
    exits 0. Repeated until an upload race shows (the uploader that lost one
    says so and exits 1)."""
    store = store_factory()
    for attempt in range(4):
        deliveries = [tiff_delivery(tmp_path / f"{attempt}-{n}", 20 + n) for n in range(2)]
        converted = threading.Barrier(len(deliveries))
        with ThreadPoolExecutor(len(deliveries)) as pool:
            runs = [pool.submit(import_delivery, d, store.url, converted) for d in deliveries]
            results = [run.result() for run in runs]
        for steps in results:
            assert steps[-1][1] == 0, steps  # run.py: every product, with its own photo
        fruits = store.catalog.fruits()
        assert len(fruits) == len(deliveries) * len(STEMS)
        for fruit in fruits:
            shade = int(fruit["name"].rsplit(" ", 1)[1])
            stem = fruit["description"].removeprefix("From ").removesuffix(".")
            jpeg = (tmp_path / f"{attempt}-{shade - 20}" / "images" / f"{stem}.jpeg").read_bytes()
            assert (store.catalog.images / fruit["image_name"]).read_bytes() == jpeg, fruit
        assert {f["image_name"] for f in fruits} >= {f"{stem}.jpeg" for stem in STEMS}
        if any(steps[1][1] == 1 for steps in results):
            return  # an upload race showed, and nothing was lost
        store = store.reset()
    pytest.skip("no upload race in 4 attempts on this machine (the fallback was still checked)")
