"""Bad input to supplier_image_upload.py and run.py: a clear line naming what is
wrong, the documented exit status, no traceback, nothing sent, no secret shown.

One row per case: id, scripts, flags, environment, files, status, message."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

UPLOAD, RUN = "supplier_image_upload.py", "run.py"
MISSING = "/nonexistent"  # in a row: a path under the test's own folder that does not exist
BOTH = (UPLOAD, RUN)
SECRET = "s3cr3t"


def link_out(name: str, target: str) -> Callable[[Path], None]:
    return lambda delivery: (delivery / name).symlink_to(target)


def fifo(name: str) -> Callable[[Path], None]:
    return lambda delivery: os.mkfifo(delivery / name)


def big(name: str, size: int) -> Callable[[Path], None]:
    return lambda delivery: (delivery / name).write_bytes(b"Melon\n5 lbs\n" + b"x" * size)


def emptied(folder: str) -> Callable[[Path], None]:
    def empty(delivery: Path) -> None:
        for path in (delivery / folder).iterdir():
            path.unlink()

    return empty


def named_in_bytes(source: str, name: bytes) -> Callable[[Path], None]:
    """A copy of source under a name that is not UTF-8 (b'bad\\xff.txt')."""
    folder = source.split("/")[0]
    target = lambda delivery: os.path.join(os.fsencode(delivery / folder), name)  # noqa: E731
    return lambda delivery: shutil.copyfile(delivery / source, target(delivery))


def record_folder(delivery: Path) -> None:
    (delivery / "imported.json").mkdir()


def journal_with_garbage(delivery: Path) -> None:
    """Not UTF-8, a store that is a number, not an object, a run and a file that are not
    text (a list cannot even be looked up), and a line cut short."""
    lines = [b"\xff\xfe", b'{"event": "run", "store": 5}', b"[]"]
    lines.append(b'{"event": "run", "run": ["r"], "store": "http://localhost/"}')
    lines.append(
        b'{"event": "product", "run": {"r": 1}, "file": ["001.txt"], "outcome": "sending"}'
    )
    (delivery / "imported.jsonl").write_bytes(b"\n".join([*lines, b'{"cu']))


def sparse(name: str, size: int) -> Callable[[Path], None]:
    def grow(delivery: Path) -> None:
        with (delivery / name).open("wb") as file:
            file.truncate(size)

    return grow


def description(content: bytes) -> Callable[[Path], None]:
    return lambda delivery: (delivery / "descriptions" / "001.txt").write_bytes(content)


# id, scripts, flags, environment, files, exit status, fragment of stderr
CASES = [
    ("timeout-nan", BOTH, ["--timeout", "nan"], {}, None, 2, "argument --timeout: 'nan' is not"),
    ("timeout-inf", BOTH, ["--timeout", "inf"], {}, None, 2, "argument --timeout: 'inf' is not"),
    ("timeout-1e309", BOTH, ["--timeout", "1e309"], {}, None, 2, "--timeout: '1e309' is not"),
    ("timeout-0", BOTH, ["--timeout", "0"], {}, None, 2, "'0' is not from 0.1 to 3600"),
    ("timeout-word", BOTH, ["--timeout", "soon"], {}, None, 2, "'soon' is not a number"),
    ("jobs-0", BOTH, ["--jobs", "0"], {}, None, 2, "argument --jobs: '0' is not from 1 to 64"),
    ("jobs-half", BOTH, ["--jobs", "1.5"], {}, None, 2, "'1.5' is not a whole number"),
    ("retries-negative", BOTH, ["--retries", "-1"], {}, None, 2, "argument --retries: '-1'"),
    ("grace-nan", BOTH, ["--grace", "nan"], {}, None, 2, "argument --grace: 'nan' is not"),
    ("wait-inf", BOTH, ["--wait", "inf"], {}, None, 2, "argument --wait: 'inf' is not"),
    (
        "env-timeout-nan",
        BOTH,
        [],
        {"CATALOG_TIMEOUT": "nan"},
        None,
        2,
        "environment variable CATALOG_TIMEOUT: 'nan' is not",
    ),
    ("env-jobs-0", BOTH, [], {"CATALOG_JOBS": "0"}, None, 2, "variable CATALOG_JOBS: '0'"),
    ("env-retries-x", BOTH, [], {"CATALOG_RETRIES": "x"}, None, 2, "CATALOG_RETRIES: 'x' is not"),
    ("env-grace-neg", BOTH, [], {"CATALOG_GRACE": "-1"}, None, 2, "CATALOG_GRACE: '-1' is not"),
    ("env-wait-1e309", BOTH, [], {"CATALOG_WAIT": "1e309"}, None, 2, "CATALOG_WAIT: '1e309'"),
    (
        "env-url-ftp",
        BOTH,
        [],
        {"CATALOG_URL": "ftp://host/"},
        None,
        2,
        "environment variable CATALOG_URL: 'ftp://host/' is not an http:// or https:// URL",
    ),
    (
        "token-with-line-break",
        BOTH,
        [],
        {"CATALOG_TOKEN": f"{SECRET}\r\nX-Evil: 1"},
        None,
        2,
        "CATALOG_TOKEN: has spaces, line breaks or characters outside ASCII",
    ),
    (
        "token-not-ascii",
        BOTH,
        [],
        {"CATALOG_TOKEN": f"{SECRET}€"},
        None,
        2,
        "which an HTTP header cannot carry (not shown)",
    ),
    ("url-no-scheme", BOTH, ["--url", "localhost"], {}, None, 2, "--url: 'localhost' is not an"),
    ("url-empty", BOTH, ["--url", ""], {}, None, 2, "--url: '' is not an http:// or https:// URL"),
    (
        "url-secret-bad-port",
        BOTH,
        ["--url", f"http://alice:{SECRET}@host:99999/"],
        {},
        None,
        2,
        "--url: 'http://host:99999/' has a bad port",
    ),
    ("url-query", BOTH, ["--url", "http://host/?x=1"], {}, None, 2, "has a query or fragment"),
    (
        "url-token-in-query",
        BOTH,
        ["--url", f"http://host/?token={SECRET}"],
        {},
        None,
        2,
        "'http://host/?...' has a query or fragment",
    ),
    (
        "url-password-with-slash",
        BOTH,
        [],
        {"CATALOG_URL": f"http://alice:{SECRET}/x#y@host/"},
        None,
        2,
        "CATALOG_URL: 'http://host/' has a bad port",
    ),
    ("no-images-folder", (UPLOAD,), ["--images", "/nonexistent"], {}, None, 2, "no images folder"),
    (
        "no-descriptions-folder",
        (RUN,),
        ["--descriptions", "/nonexistent"],
        {},
        None,
        2,
        "no descriptions folder at /nonexistent",
    ),
    ("no-jpegs", (UPLOAD,), [], {}, emptied("images"), 2, "no catalog JPEGs"),
    ("no-descriptions", (RUN,), [], {}, emptied("descriptions"), 2, "no descriptions (*.txt)"),
    (
        "description-links-to-passwd",
        (RUN,),
        [],
        {},
        link_out("descriptions/004.txt", "/etc/passwd"),
        1,
        "004.txt: links outside",
    ),
    (
        "description-links-to-dev-zero",
        (RUN,),
        [],
        {},
        link_out("descriptions/004.txt", "/dev/zero"),
        1,
        "004.txt: links outside",
    ),
    ("description-fifo", (RUN,), [], {}, fifo("descriptions/004.txt"), 1, "a FIFO, not a regular"),
    (
        "description-over-1-mib",
        (RUN,),
        [],
        {},
        big("descriptions/004.txt", 1 << 20),
        1,
        "over the limit of 1048576; not read",
    ),
    (
        "image-links-to-passwd",
        (UPLOAD,),
        [],
        {},
        link_out("images/004.jpeg", "/etc/passwd"),
        1,
        "004.jpeg: links outside",
    ),
    ("image-fifo", (UPLOAD,), [], {}, fifo("images/004.jpeg"), 1, "a FIFO, not a regular file"),
    (
        "image-dangling-link",
        (UPLOAD,),
        [],
        {},
        link_out("images/004.jpeg", "../../nonexistent.jpeg"),
        1,
        "004.jpeg: cannot open",
    ),
    (
        "description-name-not-utf-8",
        (RUN,),
        [],
        {},
        named_in_bytes("descriptions/001.txt", b"bad\xff.txt"),
        1,
        "bad\\xff.txt: its name is not UTF-8",
    ),
    (
        "image-name-not-utf-8",
        (UPLOAD,),
        [],
        {},
        named_in_bytes("images/001.jpeg", b"b\xff.jpeg"),
        1,
        "b\\xff.jpeg: its name is not UTF-8; rename it",
    ),
    ("record-is-a-folder", (RUN,), [], {}, record_folder, 2, "cannot write the record"),
    ("record-is-a-fifo", (RUN,), [], {}, fifo("imported.json"), 2, "a FIFO, not a file; nothing"),
    (
        "record-is-its-journal",
        (RUN,),
        ["--record", "/nonexistent/imported.jsonl"],
        {},
        None,
        2,
        "imported.jsonl is its own journal's name; end it in .json",
    ),
    (
        "lock-links-out",
        BOTH,
        [],
        {},
        link_out(".fruit-catalog.lock", "/tmp/outside-journal"),
        2,
        ".fruit-catalog.lock as the lock: Too many levels of symbolic links",
    ),
    (
        "record-links-to-dev-zero",
        (RUN,),
        [],
        {},
        link_out("imported.json", "/dev/zero"),
        1,
        "imported.json: links outside",
    ),
    (
        "upload-journal-links-out",
        (UPLOAD,),
        [],
        {},
        link_out("uploaded.jsonl", "/tmp/outside-journal"),
        2,
        "cannot write the journal",
    ),
    (
        "upload-journal-device",
        (UPLOAD,),
        ["--journal", "/dev/null"],
        {},
        None,
        2,
        "cannot write the journal /dev/null: not a regular file",
    ),
    (
        "upload-journal-fifo",
        (UPLOAD,),
        [],
        {},
        fifo("uploaded.jsonl"),
        2,
        "uploaded.jsonl: No such device or address",
    ),
    (
        "import-journal-links-out",
        (RUN,),
        [],
        {},
        link_out("imported.jsonl", "/tmp/outside-journal"),
        2,
        "Too many levels of symbolic links",
    ),
    (
        "import-journal-fifo",
        (RUN,),
        [],
        {},
        fifo("imported.jsonl"),
        2,
        "imported.jsonl: No such device or address",
    ),
    (
        "journal-garbage",
        (RUN,),
        [],
        {},
        journal_with_garbage,
        1,
        "imported.jsonl line 1: not UTF-8; ignored",
    ),
    (
        "upload-journal-of-10-gib",
        (UPLOAD,),
        [],
        {},
        sparse("uploaded.jsonl", 10 << 30),
        0,
        "over the limit of 67108864; not read; ignored",
    ),
    (
        "import-journal-of-10-gib",
        (RUN,),
        [],
        {},
        sparse("imported.jsonl", 10 << 30),
        1,  # read past; 001 fails only for want of its picture in the store
        "over the limit of 67108864; not read; ignored",
    ),
    (
        "weight-of-5000-digits",
        (RUN,),
        [],
        {},
        description(b"Melon\n" + b"9" * 5000 + b" lbs\nBig."),
        1,
        "is not whole pounds (like '500 lbs'), at most 2147483647",
    ),
    (
        "weight-over-32-bits",
        (RUN,),
        [],
        {},
        description(b"Melon\n2147483648 lbs\nBig."),
        1,
        "weight '2147483648 lbs' is not whole pounds",
    ),
    ("weight-negative", (RUN,), [], {}, description(b"Melon\n-5 lbs\nA."), 1, "'-5 lbs' is not"),
    ("weight-exponent", (RUN,), [], {}, description(b"Melon\n1e3 lbs\nA."), 1, "'1e3 lbs' is not"),
    ("name-with-nul", (RUN,), [], {}, description(b"Mel\0on\n5 lbs\nA."), 1, "has NUL characters"),
    (
        "weight-with-terminal-escapes",
        (RUN,),
        [],
        {},
        description(b"Melon\n5\x1b[2J\x1b]0;pwned\x07 lbs\nA."),
        1,
        "weight '5\\x1b[2J\\x1b]0;pwned\\x07 lbs' is not",
    ),
    (
        "utf-16-without-bom",
        (RUN,),
        [],
        {},
        description("Melon\n5 lbs\nA.".encode("utf-16-le")),
        1,
        "has NUL characters; not a text file",
    ),
    (
        "name-of-101-characters",
        (RUN,),
        [],
        {},
        description(b"M" * 101 + b"\n5 lbs\nA."),
        1,
        "name is 101 characters; the store accepts at most 100",
    ),
]


def expand(cases: list) -> list:
    return [
        pytest.param(script, *case[2:], id=f"{case[0]}-{script.removesuffix('.py')}")
        for case in cases
        for script in case[1]
    ]


@pytest.mark.parametrize("script, flags, env, files, status, fragment", expand(CASES))
def test_bad_input(
    store, tmp_path, run_script, catalog, script, flags, env, files, status, fragment
):
    delivery = catalog(tmp_path / "supplier-data", ["001"])
    if files:
        files(delivery)
    before = files_of(delivery)
    # A missing path is missing under this test's own folder, whatever the machine has.
    flags = [flag.replace(MISSING, str(tmp_path / "nonexistent")) for flag in flags]
    fragment = fragment.replace(MISSING, str(tmp_path / "nonexistent"))
    folders = ["--images", str(delivery / "images")]
    folders += ["--descriptions", str(delivery / "descriptions")] if script == RUN else []
    url = [] if "--url" in flags or "CATALOG_URL" in env else ["--url", store.url]
    result = run_script(script, *url, *folders, *flags, env=env, timeout=60)
    shown = result.stdout + result.stderr
    assert result.returncode == status, shown
    assert fragment in shown
    assert "Traceback" not in shown and SECRET not in shown
    assert "root:" not in shown  # nothing of /etc/passwd
    assert "\x1b" not in shown and "\x07" not in shown  # shown as \x1b: no terminal control
    assert not Path("/tmp/outside-journal").exists()
    if status == 2:
        assert store.post_count == 0
        assert files_of(delivery) == before  # no record, no journal


def files_of(delivery: Path) -> list[str]:
    return sorted(
        p.name for p in delivery.iterdir() if p.name != ".fruit-catalog.lock" or p.is_symlink()
    )


# id, description file's bytes, the product the store must end with (name, weight, description)
ACCEPTED = [
    ("utf-8-bom-crlf", b"\xef\xbb\xbfMelon\r\n5 lbs\r\n\r\nSweet.\r\n", ("Melon", 5, "Sweet.")),
    ("utf-16-bom", "Melon\n5 lbs\nSweet.\n".encode("utf-16"), ("Melon", 5, "Sweet.")),
    (
        "utf-16-be-bom",
        b"\xfe\xff" + "Melon\n5 lbs\nS.".encode("utf-16-be"),
        ("Melon", 5, "S."),
    ),
    ("latin-1", "Melón\n5 lbs\nSüß.".encode("latin-1"), ("Melón", 5, "Süß.")),
    ("weight-zero", b"Melon\n0 lbs\nAir.", ("Melon", 0, "Air.")),
    ("weight-arabic-indic", "Melon\n٥٠٠ lbs\nA.".encode(), ("Melon", 500, "A.")),
    ("weight-32-bit-max", b"Melon\n2147483647 lbs\nA.", ("Melon", 2147483647, "A.")),
    ("blank-lines-first", b"\n  \n\tMelon  \n\n5 lbs\n\nA.\n\n", ("Melon", 5, "A.")),
    ("rtl-mark-in-name", "\u200fMelon\u200f\n5 lbs\nA.".encode(), ("\u200fMelon\u200f", 5, "A.")),
    ("name-of-100-characters", b"M" * 100 + b"\n5 lbs\nA.", ("M" * 100, 5, "A.")),
    ("no-description", b"Melon\n5 lbs", ("Melon", 5, "")),
    ("no-description-blank-lines", b"Melon\n5 lbs\n\n \t\n", ("Melon", 5, "")),
]


@pytest.mark.parametrize("content, fruit", [pytest.param(*c[1:], id=c[0]) for c in ACCEPTED])
def test_descriptions_the_store_takes(store, tmp_path, run_script, catalog, content, fruit):
    delivery = catalog(tmp_path / "supplier-data", ["001"])
    description(content)(delivery)
    for script in BOTH:
        result = run_script(script, "--url", store.url, env={"SUPPLIER_DATA": str(delivery)})
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
    [stored] = store.catalog.fruits()
    assert (stored["name"], stored["weight"], stored["description"]) == fruit


# id, hostile store mode, exit status of (uploader, run.py), fragment of stderr
HOSTILE = [
    ("list-is-html", "html", (2, 2), "fruits/ did not answer a JSON list; is --url right?"),
    ("list-empty-200", "empty-200", (2, 2), "did not answer a JSON list"),
    ("list-not-a-list", "not-a-list", (2, 2), "did not answer a JSON list"),
    ("list-items-not-objects", "items-not-objects", (2, 2), "did not answer a JSON list"),
    # It answers 201 to the upload but serves no image: said, never taken as uploaded.
    ("list-items-wrong-types", "items-wrong-types", (1, 1), ", failed "),
    ("list-endless", "endless-list", (2, 2), "fruits/ answered over 64 MiB"),
    ("list-redirects-away", "redirect-away", (2, 2), "302 redirect to http://elsewhere.example"),
    ("image-endless", "endless-image", (1, 1), "the store serves other bytes as 001-"),
    ("image-other-bytes", "other-image", (1, 1), "the store serves other bytes as 001-"),
]


def clean_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("CATALOG_", "UPLOAD_"))}


def at_most_2_gib() -> None:
    """The script's address space: an answer read into memory whole fails it."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


@pytest.mark.parametrize(
    "mode, statuses, fragment", [pytest.param(*c[1:], id=c[0]) for c in HOSTILE]
)
def test_hostile_store(hostile_store, tmp_path, catalog, mode, statuses, fragment):
    import subprocess

    server = hostile_store(mode)
    delivery = catalog(tmp_path / "supplier-data", ["001"])
    before = {p: p.read_bytes() for p in delivery.rglob("*") if p.is_file()}
    for script, status in zip(BOTH, statuses, strict=True):
        result = subprocess.run(
            [str(Path(__file__).parents[1] / script), "--url", server.url, "--timeout", "2"],
            env={**clean_environment(), "SUPPLIER_DATA": str(delivery)},
            capture_output=True,
            text=True,
            timeout=60,  # hang guard: a request's deadline is 2 x 2 + 5 s
            preexec_fn=at_most_2_gib,
            check=False,
        )
        assert result.returncode == status, result.stderr
        assert fragment in result.stderr
        assert "Traceback" not in result.stderr
    if statuses == (2, 2):
        assert server.posts == 0
        assert {p: p.read_bytes() for p in before} == before
        assert not (delivery / "imported.json").exists()
    if "image" in mode:
        assert server.posts == 0  # neither the image nor a product pointing at the wrong one


def test_there_are_at_least_45_cases():
    assert len(expand(CASES)) >= 45
