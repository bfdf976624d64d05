#!/usr/bin/env python3
"""Benchmark changeImage.py against the lab recipe, in the same run.

The corpus: 32 photo-like 3000x2000 images from the sample generator, the
kinds a supplier sends: 16 opaque uncompressed RGBA TIFFs (8 in one strip,
8 in 5-row strips as libtiff-based writers store them), 8 uncompressed RGBA
cut-outs with transparent surroundings, 8 compressed TIFFs (4 LZW RGB,
4 deflate RGBA); reported apart, 2 16-bit greyscale and 2 palette TIFFs.
Deflate TIFFs are also converted without the deflate package (libdeflate), as
on a machine where it is not installed (with --lab: --without-deflate).

Each side runs as a process, as users run it, on a fresh copy of the images:
the lab recipe (open, convert('RGB'), resize((600, 400)), save), alone and
fanned out over every core (`xargs -P`-like, one process per core), and
changeImage.py with --jobs 1 and with all cores. Rounds interleave the sides.
Printed for each: the best and the median wall time, the best CPU time (user +
system, which other work on a shared machine disturbs least), the time per
image with the side's start-up (a run on no images) taken out, their ratios
to the recipe on one process, the mean PSNR against a LANCZOS reference
(transparent areas composited on white, 16-bit scaled to 8 bits; "opaque"
counts only the opaque areas, so the recipe's dropped alpha is neither
rewarded nor punished) and the peak memory of a process (max RSS).

With --lab, only the two figures the lab's contract sets (issue 25), each side
by side with the recipe in the same run: the 16 opaque TIFFs (the lab's kind)
with --jobs 1, goal 3.2x the recipe's one process; the 32 mixed TIFFs with all
cores, goal 4.3x. --base REV adds changeImage.py as it was at git revision REV
(for example 43baaa7, the last before the freshness marks, or 57b7ccf, the last
before them with the deflate fast path) as sides of its own; it may be repeated.
The load average is printed before and after: on a shared machine the ratios
are rough.

Usage:
    python bench/bench_convert.py [--rounds 5] [--size 3000x2000] [--kinds]
    python bench/bench_convert.py --lab [--rounds 7] [--base REV ...] [--without-deflate]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageStat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "sandbox"))

from make_delivery import parse_size, photo_like  # noqa: E402

TARGET = (600, 400)
CORES = len(os.sched_getaffinity(0))
MAIN_KINDS = ("opaque, one strip", "opaque, 5-row strips", "transparent areas", "LZW RGB")
MAIN_KINDS += ("deflate RGBA",)
APART_KINDS = ("16-bit grey", "palette")

LAB_RECIPE = """
import sys
from pathlib import Path
from PIL import Image
for name in sys.argv[1:]:
    source = Path(name)
    im = Image.open(source)
    im.convert("RGB").resize((600, 400)).save(source.with_suffix(".jpeg"), "JPEG")
"""


# -- corpus -----------------------------------------------------------------------


def cut_out(image: Image.Image, seed: int) -> Image.Image:
    """The product on transparency: an opaque soft-edged ellipse, the rest clear."""
    alpha = Image.new("L", image.size, 0)
    width, height = image.size
    inset = (width // 8 + seed * 7, height // 8)
    ImageDraw.Draw(alpha).ellipse((*inset, width - inset[0], height - inset[1]), fill=255)
    image = image.copy()
    image.putalpha(alpha.filter(ImageFilter.GaussianBlur(max(1, width // 300))))
    return image


def write_one(kind: str, seed: int, size: tuple[int, int], folder: Path) -> None:
    image = photo_like(size, seed)
    path = folder / f"{seed:03d}.tiff"
    if kind == "opaque, one strip":
        image.save(path)
    elif kind == "opaque, 5-row strips":
        image.save(path, tiffinfo={278: 5})
    elif kind == "transparent areas":
        cut_out(image, seed).save(path)
    elif kind == "LZW RGB":
        image.convert("RGB").save(path, compression="tiff_lzw")
    elif kind == "deflate RGBA":
        image.save(path, compression="tiff_adobe_deflate")
    elif kind == "16-bit grey":
        grey = image.convert("L").point(lambda value: value * 257, "I").convert("I;16")
        grey.save(path)
    else:
        image.convert("RGB").quantize(256).save(path)


def make_corpus(folder: Path, size: tuple[int, int]) -> dict[str, list[Path]]:
    counts = dict.fromkeys(MAIN_KINDS[:3], 8) | dict.fromkeys(MAIN_KINDS[3:], 4)
    counts |= dict.fromkeys(APART_KINDS, 2)
    jobs, seed = [], 0
    for kind, count in counts.items():
        (folder / kind).mkdir(parents=True)
        for _ in range(count):
            seed += 1
            jobs.append((kind, seed, size, folder / kind))
    with ProcessPoolExecutor() as pool:
        for future in [pool.submit(write_one, *job) for job in jobs]:
            future.result()
    return {kind: sorted((folder / kind).iterdir()) for kind in counts}


def reference(source: Path) -> tuple[Image.Image, Image.Image]:
    """The ideal output (LANCZOS from full size, on white, 16-bit scaled) and the
    mask of its opaque area."""
    with Image.open(source) as image:
        if image.mode.startswith("I;16"):
            image = image.convert("I").point(lambda value: value / 256).convert("L")
        image = image.convert("RGBA")
    canvas = Image.new("RGB", image.size, "white")
    canvas.paste(image, mask=image.getchannel("A"))
    opaque = image.getchannel("A").point(lambda a: 255 if a == 255 else 0)
    return canvas.resize(TARGET, Image.Resampling.LANCZOS), opaque.resize(TARGET)


def psnr(output: Path, ideal: Image.Image, mask: Image.Image | None) -> float:
    with Image.open(output) as image:
        difference = ImageChops.difference(image.convert("RGB"), ideal)
    mse = sum(rms**2 for rms in ImageStat.Stat(difference, mask).rms) / 3
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


# -- the sides ----------------------------------------------------------------------


def run_timed(commands: list[list[str]]) -> tuple[float, float, int]:
    """Wall time of the commands run at once, their CPU time (user + system: what
    other work on the machine disturbs least) and the largest peak RSS (KB)."""
    start = time.perf_counter()
    processes = [subprocess.Popen(command) for command in commands]
    cpu, peak = 0.0, 0
    for process in processes:
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode not in (0, 1):
            raise SystemExit(f"{commands[0][:3]} failed with {process.returncode}")
        cpu += usage.ru_utime + usage.ru_stime
        peak = max(peak, usage.ru_maxrss)
    return time.perf_counter() - start, cpu, peak


def recipe(files: list[Path], processes: int) -> list[list[str]]:
    shares = [files[i::processes] for i in range(processes)]
    # With no files, one process: its start-up alone.
    shares = [share for share in shares if share] or [[]]
    return [[sys.executable, "-c", LAB_RECIPE, *map(str, share)] for share in shares]


def change_image(folder: Path, *flags: str, script: Path = ROOT / "changeImage.py") -> list:
    return [[sys.executable, str(script), str(folder), "-q", *flags]]


# changeImage.py run as on a machine without the optional deflate package.
WITHOUT_DEFLATE = (
    "import runpy, sys; sys.modules['deflate'] = None; sys.argv = sys.argv[1:]; "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)


def without_deflate(folder: Path, *flags: str) -> list[list[str]]:
    return [[sys.executable, "-c", WITHOUT_DEFLATE, *change_image(folder, *flags)[0][1:]]]


SIDES = {
    "lab recipe, 1 process": lambda files, folder: recipe(files, 1),
    f"lab recipe, {CORES} processes": lambda files, folder: recipe(files, CORES),
    "changeImage.py --jobs 1": lambda files, folder: change_image(folder, "--jobs", "1"),
    f"changeImage.py, {CORES} cores": lambda files, folder: change_image(folder),
    "changeImage.py --best-quality": lambda files, folder: change_image(folder, "--best-quality"),
}
NO_DEFLATE_ONE = "--jobs 1, without deflate"
NO_DEFLATE_EVERY = f"{CORES} cores, without deflate"
EXTRA_SIDES = {
    NO_DEFLATE_ONE: lambda files, folder: without_deflate(folder, "--jobs", "1"),
    NO_DEFLATE_EVERY: lambda files, folder: without_deflate(folder),
}


def add_base(revision: str, scratch: Path) -> list[str]:
    """Sides for changeImage.py as it was at a git revision; their names."""
    script = scratch / f"changeImage-{revision}.py"
    shown = ["git", "-C", str(ROOT), "show", f"{revision}:changeImage.py"]
    script.write_bytes(subprocess.run(shown, capture_output=True, check=True).stdout)
    one, every = f"{revision} --jobs 1", f"{revision}, {CORES} cores"
    SIDES[one] = lambda files, folder: change_image(folder, "--jobs", "1", script=script)
    SIDES[every] = lambda files, folder: change_image(folder, script=script)
    return [one, every]


def deflate_reader() -> str:
    try:
        import deflate
    except ImportError:
        return "Pillow's libtiff (zlib): the deflate package is not installed"
    return f"libdeflate (deflate {deflate.__version__}); LZW TIFFs: Pillow's libtiff"


def load_average() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def measure(sources: list[Path], scratch: Path, rounds: int, sides: list[str]) -> dict:
    """{side: (wall times, CPU times, peak KB, outputs folder)} over interleaved rounds."""
    results: dict = {side: ([], [], 0, None) for side in sides}
    for turn in range(rounds):
        for side in sides if turn % 2 == 0 else reversed(sides):
            work = scratch / f"work-{sides.index(side)}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            files = [Path(shutil.copy(source, work)) for source in sources]
            if not files:  # start-up alone: a delivery's stray file (no files is a usage error)
                (work / "LICENSE").write_text("not an image\n")
            elapsed, cpu, peak = run_timed((SIDES | EXTRA_SIDES)[side](files, work))
            times, cpus, old_peak, _ = results[side]
            results[side] = ([*times, elapsed], [*cpus, cpu], max(old_peak, peak), work)
    return results


def scores(source: Path, outputs: list[Path]) -> list[tuple[float, float]]:
    """(PSNR, PSNR of the opaque area) of each output of one source."""
    ideal, mask = reference(source)
    return [(psnr(output, ideal, None), psnr(output, ideal, mask)) for output in outputs]


def report(title: str, sources: list[Path], results: dict, startups: dict) -> None:
    # Images are compared in worker processes: a child's peak memory (max RSS)
    # counts its parent's peak at the time it started, so this one stays small.
    folders = [folder for *_, folder in results.values()]
    outputs = [[folder / f"{source.stem}.jpeg" for folder in folders] for source in sources]
    with ProcessPoolExecutor() as pool:
        per_source = list(pool.map(scores, sources, outputs))
    base_wall, base_cpu = (min(values) for values in results["lab recipe, 1 process"][:2])

    def per_image(side: str) -> float:
        """ms per image of the best run, its side's start-up taken out."""
        return (min(results[side][0]) - min(startups[side][0])) / len(sources) * 1000

    base_image = per_image("lab recipe, 1 process")
    print(f"\n{title}: {len(sources)} images")
    header = f"{'side':31} {'best s':>6} {'median':>6} {'ratio':>6} {'CPU s':>6} {'ratio':>6}"
    print(f"  {header} {'ms/img':>6} {'ratio':>6} {'PSNR':>6} {'opaque':>6} {'MB':>4}")
    for index, (side, (times, cpus, peak, _)) in enumerate(results.items()):
        values = [source_scores[index] for source_scores in per_source]
        whole, opaque = (statistics.mean(column) for column in zip(*values, strict=True))
        best, median, cpu, image = min(times), statistics.median(times), min(cpus), per_image(side)
        print(
            f"  {side:31} {best:6.2f} {median:6.2f} {base_wall / best:5.2f}x {cpu:6.2f}"
            f" {base_cpu / cpu:5.2f}x {image:6.1f} {base_image / image:5.2f}x"
            f" {whole:6.2f} {opaque:6.2f} {peak / 1024:4.0f}"
        )


def fsync_cost(folder: Path, threads: int, count: int = 32) -> float:
    """ms per 100 KB output written, fsynced and renamed, `threads` at a time."""
    data = os.urandom(100_000)

    def write(number: int) -> None:
        temporary, target = folder / f".{number}.tmp", folder / f"{number}.jpeg"
        with open(temporary, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)

    folder.mkdir(exist_ok=True)
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(write, range(count)))
    return (time.perf_counter() - start) / count * 1000


def premultiply_cost(source: Path) -> float:
    """ms of Pillow's full-size premultiply (inside resize/reduce of RGBA)."""
    with Image.open(source) as image:
        image.load()
        image.convert("RGBa")  # the first pass also faults the file in
        best = math.inf
        for _ in range(5):
            start = time.perf_counter()
            image.convert("RGBa")
            best = min(best, time.perf_counter() - start)
        return best * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", type=parse_size, default=(3000, 2000))
    parser.add_argument("--kinds", action="store_true", help="also each kind on its own")
    parser.add_argument("--lab", action="store_true", help="only the lab's two figures")
    parser.add_argument(
        "--base",
        metavar="REV",
        action="append",
        default=[],
        help="also changeImage.py at git revision REV (repeatable)",
    )
    parser.add_argument(
        "--without-deflate",
        action="store_true",
        help="with --lab, also all cores as without the deflate package",
    )
    args = parser.parse_args(argv)
    if args.lab:
        return lab_figures(args)
    with tempfile.TemporaryDirectory(prefix="bench-convert-") as name:
        scratch = Path(name)
        corpus = make_corpus(scratch / "corpus", args.size)
        size = "x".join(map(str, args.size))
        print(f"{size}, {CORES} cores, {args.rounds} rounds interleaved; times in seconds")
        print(f"deflate TIFFs: {deflate_reader()}")
        with ProcessPoolExecutor(1) as pool:  # keeps this process's peak memory small
            premultiply = pool.submit(premultiply_cost, corpus[MAIN_KINDS[0]][0]).result()
        print(
            f"costs the recipe does not pay, per image: fsync of the output"
            f" {fsync_cost(scratch / 'fsync1', 1):.1f} ms alone,"
            f" {fsync_cost(scratch / 'fsync4', 4):.1f} ms with 4 at once;"
            f" full-size premultiply {premultiply:.1f} ms"
        )
        startups = measure([], scratch, args.rounds, [*SIDES, NO_DEFLATE_ONE])
        print(
            "start-up (no images, best):"
            f" lab recipe {min(startups['lab recipe, 1 process'][0]):.3f} s,"
            f" changeImage.py {min(startups['changeImage.py --jobs 1'][0]):.3f} s"
        )
        main_corpus = [path for kind in MAIN_KINDS for path in corpus[kind]]
        results = measure(main_corpus, scratch, args.rounds, list(SIDES))
        report("whole corpus", main_corpus, results, startups)
        quick = ["lab recipe, 1 process", "changeImage.py --jobs 1"]
        for kind in (*MAIN_KINDS, *APART_KINDS) if args.kinds else APART_KINDS:
            sides = [*quick, NO_DEFLATE_ONE] if kind == "deflate RGBA" else quick
            results = measure(corpus[kind], scratch, args.rounds, sides)
            report(kind, corpus[kind], results, startups)
    return 0


def lab_figures(args: argparse.Namespace) -> int:
    """The 16 opaque TIFFs with --jobs 1 and the 32 mixed with all cores, each
    against the recipe's one process in the same rounds."""
    with tempfile.TemporaryDirectory(prefix="bench-convert-") as name:
        scratch = Path(name)
        corpus = make_corpus(scratch / "corpus", args.size)
        base = [side for revision in args.base for side in add_base(revision, scratch)]
        print(f"{CORES} cores, {args.rounds} rounds interleaved; load average {load_average()}")
        print(f"deflate TIFFs: {deflate_reader()}")
        one_core = ["lab recipe, 1 process", "changeImage.py --jobs 1", *base[0::2]]
        every_core = ["lab recipe, 1 process", f"changeImage.py, {CORES} cores", *base[1::2]]
        every_core += [NO_DEFLATE_EVERY] if args.without_deflate else []
        startups = measure([], scratch, args.rounds, [*one_core, *every_core[1:]])
        opaque = corpus[MAIN_KINDS[0]] + corpus[MAIN_KINDS[1]]
        mixed = [path for kind in MAIN_KINDS for path in corpus[kind]]
        for title, sources, sides, goal in (
            ("the lab's opaque TIFFs, one core (goal 3.2x)", opaque, one_core, 3.2),
            (f"the mixed corpus, {CORES} cores (goal 4.3x)", mixed, every_core, 4.3),
        ):
            results = measure(sources, scratch, args.rounds, sides)
            report(title, sources, results, startups)
            recipe_best = min(results[sides[0]][0])
            for side in sides[1:]:
                ratio = recipe_best / min(results[side][0])
                print(f"  {side}: {ratio:.2f}x the recipe (goal {goal}x)")
        print(f"load average at the end {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
