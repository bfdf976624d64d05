"""Bad input to supplier_image_upload.py and run.py: a clear line naming what is
wrong, the documented exit status, no traceback, nothing sent, no secret shown.

One row per case: id, scripts, flags, environment, files, status, message."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

UPLOAD, RUN = "supplier_image_upload.py", "run.py"
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


def record_folder(delivery: Path) -> None:
    (delivery / "imported.json").mkdir()


def journal_with_garbage(delivery: Path) -> None:
    (delivery / "imported.jsonl").write_bytes(b'\xff\xfe\n{"event": "run", "store": 5}\n[]\n{"cu')


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
    ("url-no-scheme", BOTH, ["--url", "localhost"], {}, None, 2, "--url: 'localhost' is not an"),
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
        link_out("images/004.jpeg", "/nonexistent.jpeg"),
        1,
        "004.jpeg: cannot open",
    ),
    ("record-is-a-folder", (RUN,), [], {}, record_folder, 2, "cannot write the record"),
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
    folders = ["--images", str(delivery / "images")]
    folders += ["--descriptions", str(delivery / "descriptions")] if script == RUN else []
    url = [] if "--url" in flags or "CATALOG_URL" in env else ["--url", store.url]
    result = run_script(script, *url, *folders, *flags, env=env, timeout=60)
    shown = result.stdout + result.stderr
    assert result.returncode == status, shown
    assert fragment in shown
    assert "Traceback" not in shown and SECRET not in shown
    assert "root:" not in shown  # nothing of /etc/passwd
    assert not Path("/tmp/outside-journal").exists()
    if status == 2:
        assert store.post_count == 0
        assert files_of(delivery) == before  # no record, no journal


def files_of(delivery: Path) -> list[str]:
    return sorted(
        p.name for p in delivery.iterdir() if p.name != ".fruit-catalog.lock" or p.is_symlink()
    )


def test_there_are_at_least_45_cases():
    assert len(expand(CASES)) >= 45
