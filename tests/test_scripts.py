"""Rules of the collection, checked over every script (psutil's test_scripts.py):
each script is tested, executable, imports no project module but reports/emails,
carries the same version, shows its examples and exit statuses in --help, and the
blocks copied on purpose between standalone scripts are still identical."""

from __future__ import annotations

import ast
import functools
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = [
    "changeImage.py",
    "supplier_image_upload.py",
    "run.py",
    "report_email.py",
    "health_check.py",
    "reports.py",
    "emails.py",
]
HELPERS = {"reports", "emails"}
PROJECT_MODULES = {Path(name).stem for name in SCRIPTS} | {
    path.stem for path in (ROOT / "sandbox").glob("*.py")
}
# The third-party packages each script may import (README, "What to copy").
THIRD_PARTY = {
    "changeImage.py": {"PIL", "deflate", "xxhash"},
    "supplier_image_upload.py": {"requests", "urllib3"},
    "run.py": {"requests", "urllib3"},
    "report_email.py": {"PIL", "reportlab"},
    "health_check.py": {"psutil"},
    "reports.py": {"PIL", "reportlab"},
    "emails.py": set(),
}
# Which scripts carry which shared block (fenced by "begin/end shared block: NAME").
BLOCKS = {
    "early stop": set(SCRIPTS),
    "cli": set(SCRIPTS) - {"report_email.py", "reports.py"},  # they take emails.py's
    "lock": {"changeImage.py", "supplier_image_upload.py", "run.py"},
    "progress": {"changeImage.py", "supplier_image_upload.py", "run.py"},
    "delivery files": {"changeImage.py", "supplier_image_upload.py", "run.py", "report_email.py"},
    "http": {"supplier_image_upload.py", "run.py"},
    "store names": {"supplier_image_upload.py", "run.py"},
    "catalog jpeg": {"changeImage.py", "supplier_image_upload.py", "run.py"},
    "journal": {"supplier_image_upload.py", "run.py"},
    "sending": {"supplier_image_upload.py", "run.py"},
    "files": {"changeImage.py", "emails.py", "health_check.py", "run.py"},
    "deadline": {"emails.py", "supplier_image_upload.py", "run.py"},
}
FENCE = re.compile(
    r"^# --- begin shared block: (?P<name>[a-z ]+) \(.*?\) ---\n(?P<body>.*?)"
    r"^# --- end shared block: (?P=name) ---$",
    re.MULTILINE | re.DOTALL,
)
VERSION = re.compile(r'^__version__ = "([^"]+)"$', re.MULTILINE)


def source(script: str) -> str:
    return (ROOT / script).read_text(encoding="utf-8")


def imported_top_level(script: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source(script))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def shared_blocks(script: str) -> dict[str, str]:
    return {match["name"]: match["body"] for match in FENCE.finditer(source(script))}


def run_script(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_every_script_is_listed() -> None:
    on_disk = {path.name for path in ROOT.glob("*.py")}
    assert on_disk == set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_has_its_tests(script: str) -> None:
    assert (ROOT / "tests" / f"test_{Path(script).stem}.py").is_file()


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_is_executable(script: str) -> None:
    path = ROOT / script
    assert path.stat().st_mode & 0o111, f"{script} is not executable"
    assert source(script).startswith("#!/usr/bin/env python3\n")


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_imports_only_the_helpers_and_its_packages(script: str) -> None:
    names = imported_top_level(script) - {"__future__"}
    project = names & PROJECT_MODULES
    assert project <= HELPERS, f"{script} imports project modules {sorted(project - HELPERS)}"
    third_party = names - set(sys.stdlib_module_names) - PROJECT_MODULES
    assert third_party <= THIRD_PARTY[script], f"{script} needs {sorted(third_party)}"


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_shared_block_is_in_every_script_that_needs_it(name: str) -> None:
    having = {script for script in SCRIPTS if name in shared_blocks(script)}
    assert having == BLOCKS[name]


def test_every_copy_of_a_shared_block_is_generated_from_its_home() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "sync_blocks.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout


def sync_blocks_on(tmp_path: Path, script_text: str):
    """tools/sync_blocks.py loaded to work on tmp_path/run.py (the homes are ours)."""
    spec = importlib.util.spec_from_file_location("sync_blocks", ROOT / "tools" / "sync_blocks.py")
    blocks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(blocks)
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "run.py").write_bytes(script_text.encode())
    (tmp_path / "blocks").symlink_to(ROOT / "blocks")
    blocks.ROOT, blocks.HOMES = tmp_path, tmp_path / "blocks"
    return blocks


TOY = """\
#!/usr/bin/env python3
\"\"\"A toy script.\"\"\"

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable

# --- begin shared block: cli (from blocks/cli.py; make blocks) ---
# --- end shared block: cli ---

LIMIT = 10


def double(text: str) -> float:
    return 2 * number(0, LIMIT)(text)


DOUBLE = double


if __name__ == "__main__":
    sys.exit(0)
"""


def test_a_script_carries_only_the_parts_of_a_block_it_uses(tmp_path: Path) -> None:
    blocks = sync_blocks_on(tmp_path, TOY)
    assert blocks.main([]) == 0
    copy = shared_blocks_of((tmp_path / "run.py").read_text(encoding="utf-8"))["cli"]
    assert copy.startswith("def number(") and "class Option" not in copy
    assert "def guarded(" not in copy
    (tmp_path / "other.py").write_text("from run import guarded\n", encoding="utf-8")
    assert blocks.stale() == ["run.py: block cli differs from blocks/cli.py: run make blocks"]
    assert blocks.main([]) == 0
    copy = shared_blocks_of((tmp_path / "run.py").read_text(encoding="utf-8"))["cli"]
    assert "def guarded(" in copy and "def raise_interrupted(" in copy and "STOP_SIGNALS =" in copy
    assert "class Option" not in copy


def test_relocate_puts_the_copies_after_the_scripts_own_code(tmp_path: Path) -> None:
    needing = TOY.replace("DOUBLE = double", "DOUBLE = number(0, 1)")
    blocks = sync_blocks_on(tmp_path, needing)
    assert blocks.main(["--relocate"]) == 0
    text = (tmp_path / "run.py").read_text(encoding="utf-8")
    assert text.index("LIMIT = 10") < text.index("# --- begin shared block: cli")
    assert text.index("# --- end shared block: cli ---") < text.index("DOUBLE = number(0, 1)")
    assert blocks.main(["--relocate"]) == 0
    assert (tmp_path / "run.py").read_text(encoding="utf-8") == text
    blocks = sync_blocks_on(tmp_path / "plain", TOY)
    assert blocks.main(["--relocate"]) == 0
    text = (tmp_path / "plain" / "run.py").read_text(encoding="utf-8")
    assert text.index("DOUBLE = double") < text.index("# --- begin shared block: cli")
    assert text.index("# --- end shared block: cli ---") < text.index('if __name__ == "__main__"')
    # A start-up guard before the imports (changeImage's gc.disable()) is not the entry point.
    early = TOY.replace(
        "import argparse\n", 'if __name__ == "__main__":\n    pass\n\nimport argparse\n'
    )
    blocks = sync_blocks_on(tmp_path / "early", early)
    assert blocks.main(["--relocate"]) == 0
    text = (tmp_path / "early" / "run.py").read_text(encoding="utf-8")
    assert text.index("DOUBLE = double") < text.index("# --- begin shared block: cli")


# id, a statement of a home, what its copies carry
COMPACTED = [
    (
        "docstring and comments go",
        'def f():\n    """Why."""\n\n    # why\n    x = 1  # noted\n\n    return x',
        "def f():\n    x = 1  # noted\n\n    return x",
    ),
    (
        "a class that is only a docstring keeps it",
        'class Stop(KeyboardInterrupt):\n    """Why."""',
        'class Stop(KeyboardInterrupt):\n    """Why."""',
    ),
    (
        "comments above a statement go, a tool's stay",
        "# why\n# fmt: off\nX = {\n    1: 2,\n}\n# fmt: on",
        "# fmt: off\nX = {\n    1: 2,\n}\n# fmt: on",
    ),
    (
        "a string's blank lines and hashes stay",
        'HELP = """a\n\n# not a comment\n"""',
        'HELP = """a\n\n# not a comment\n"""',
    ),
    (
        "a note after a constant goes",
        'class C:\n    X = 1\n    """What X is."""\n\n    def f(self):\n        pass',
        "class C:\n    X = 1\n\n    def f(self):\n        pass",
    ),
]


@pytest.mark.parametrize(
    "home, copy", [pytest.param(case[1], case[2], id=case[0]) for case in COMPACTED]
)
def test_a_copy_carries_the_code_of_its_home_without_its_prose(tmp_path, home, copy):
    assert sync_blocks_on(tmp_path, TOY).compact(home) == copy


def test_every_copy_runs_the_code_of_its_home() -> None:
    """Prose aside, each copied statement is its home's, to the token."""
    for script in SCRIPTS:
        for name, body in shared_blocks_of(source(script)).items():
            home = (ROOT / "blocks" / (name.replace(" ", "_") + ".py")).read_text(encoding="utf-8")
            assert code_of(body) <= code_of(home.partition("# --- block ---\n")[2]), (script, name)


def code_of(text: str) -> set[str]:
    """Each top-level statement of text, dumped without docstrings (ast.dump ignores
    comments and layout)."""
    tree = ast.parse(text)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and not isinstance(node, ast.Module):
            strings = [
                s for s in body if isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)
            ]
            strings = [s for s in strings if isinstance(s.value.value, str)]
            if len(strings) < len(body):
                node.body = [s for s in body if s not in strings]
    return {ast.dump(node) for node in tree.body}


def shared_blocks_of(text: str) -> dict[str, str]:
    return {match["name"]: match["body"] for match in FENCE.finditer(text)}


def damaged(old: str, new: str) -> str:
    assert old in source("run.py")
    return source("run.py").replace(old, new, 1)


def test_a_stale_copy_is_named_with_the_command_that_mends_it(tmp_path: Path) -> None:
    blocks = sync_blocks_on(tmp_path, damaged("def redact(", "def redacted("))
    assert blocks.stale() == ["run.py: block http differs from blocks/http.py: run make blocks"]
    assert blocks.main([]) == 0
    assert blocks.stale() == []
    assert (tmp_path / "run.py").read_text(encoding="utf-8") == source("run.py")


# id, run.py as damaged, the problem named (nothing is rewritten)
BROKEN_FENCES = [
    (
        "no home",
        lambda: damaged("shared block: progress (", "shared block: progres (").replace(
            "end shared block: progress ", "end shared block: progres "
        ),
        "run.py: block progres has no home progres.py",
    ),
    (
        "end fence gone",
        lambda: damaged("# --- end shared block: progress ---\n", ""),
        "run.py: a begin or end fence has no partner (or extra spaces)",
    ),
    (
        "spaces after a fence",
        lambda: damaged("end shared block: progress ---", "end shared block: progress --- "),
        "run.py: a begin or end fence has no partner (or extra spaces)",
    ),
    (
        "CRLF",
        lambda: source("run.py").replace("\n", "\r\n"),
        "run.py: uses CRLF line ends; the blocks are LF",
    ),
]


@pytest.mark.parametrize(
    "text, problem", [pytest.param(case[1], case[2], id=case[0]) for case in BROKEN_FENCES]
)
def test_broken_fences_are_named_and_nothing_is_rewritten(tmp_path, capsys, text, problem):
    blocks = sync_blocks_on(tmp_path, text())
    before = (tmp_path / "run.py").read_bytes()
    assert problem in blocks.stale()
    assert blocks.main([]) == 1
    assert problem in capsys.readouterr().err
    assert (tmp_path / "run.py").read_bytes() == before


def test_every_script_has_the_same_version() -> None:
    versions = {script: VERSION.findall(source(script)) for script in SCRIPTS}
    assert all(len(found) == 1 for found in versions.values()), versions
    assert len({found[0] for found in versions.values()}) == 1, versions


@pytest.mark.parametrize("script", SCRIPTS)
def test_version_is_printed(script: str) -> None:
    [version] = VERSION.findall(source(script))
    done = run_script(script, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{script} {version}"


@functools.cache
def help_of(script: str) -> subprocess.CompletedProcess:
    """`script --help`, run once per test process: the tests of its text share it."""
    return run_script(script, "--help")


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_shows_examples_and_exit_statuses(script: str, tmp_path: Path) -> None:
    done = help_of(script)
    assert done.returncode == 0, done.stderr
    assert "Example" in done.stdout
    assert "Exit status" in done.stdout
    assert "-q, --quiet" in done.stdout
    assert "-v, --verbose" in done.stdout
    assert not (ROOT / "--help").exists(), f"{script} --help wrote a file named --help"


@pytest.mark.parametrize("script", SCRIPTS)
def test_unknown_option_is_a_usage_error(script: str) -> None:
    done = run_script(script, "--no-such-option", "x")
    usage_status = 3 if script == "health_check.py" else 2
    assert done.returncode == usage_status
    assert "Traceback" not in done.stderr
    assert "--no-such-option" in done.stderr + done.stdout  # health_check: its one line


@pytest.mark.parametrize("script", sorted(set(SCRIPTS) - {"emails.py"}))
def test_copied_alone_without_its_packages_it_says_what_to_copy_or_install(
    script: str, tmp_path: Path
) -> None:
    """Copied to a bare server (no helper modules beside it, no site-packages:
    `python -S`), a script stops at once with one line naming what is missing."""
    (tmp_path / script).write_bytes((ROOT / script).read_bytes())
    done = subprocess.run(
        [sys.executable, "-S", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "USER": "alice"},
    )
    said = (done.stdout + done.stderr).strip()
    assert done.returncode == (3 if script == "health_check.py" else 2), said
    assert "Traceback" not in said
    assert len(said.splitlines()) == 1, said
    assert "missing" in said or "not beside" in said or "install" in said, said


AS_NOBODY = ["setpriv", "--reuid=54321", "--regid=54321", "--clear-groups"]  # no passwd entry


def nobody_can_run(script: str) -> bool:
    """Whether uid 54321 can reach this Python and the script (not in every clone)."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        return False
    probe = [*AS_NOBODY, sys.executable, "-c", f"open({str(ROOT / script)!r}).close()"]
    return subprocess.run(probe, capture_output=True, timeout=30, cwd="/").returncode == 0


@pytest.mark.parametrize("script", sorted(set(SCRIPTS) - {"reports.py", "emails.py"}))
def test_a_user_with_no_home_and_no_name_gets_an_error_not_a_traceback(script: str) -> None:
    """Some cron and container setups run as a uid with no passwd entry and no HOME:
    the lab's defaults (~/supplier-data, $USER@example.com) cannot be made."""
    if not nobody_can_run(script):
        pytest.skip("needs root, setpriv and a checkout other users can read")
    done = subprocess.run(
        [*AS_NOBODY, sys.executable, str(ROOT / script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == (3 if script == "health_check.py" else 2), done.stderr
    assert "Traceback" not in done.stdout + done.stderr


CHANGE = ["changeImage.py", "{images}"]
UPLOAD = ["supplier_image_upload.py", "--dry-run", "--images", "{images}"]
RUN = ["run.py", "--dry-run", "--descriptions", "{descriptions}", "--images", "{images}"]
# id, command, what is locked (0311: not listable; 0700 and root's: not even reachable),
# the usage line it ends with (then ": permission denied")
UNREACHABLE_CASES = [
    ("changeImage-unlistable", CHANGE, {"images": 0o311}, "cannot read {images}"),
    ("uploader-unlistable", UPLOAD, {"images": 0o311}, "cannot read the images folder {images}"),
    (
        "run-unlistable-descriptions",
        RUN,
        {"descriptions": 0o311},
        "cannot read the descriptions folder {descriptions}",
    ),
    ("run-unlistable-images", RUN, {"images": 0o311}, "cannot read the images folder {images}"),
    ("changeImage-locked-delivery", CHANGE, {"delivery": 0o700}, "cannot read {images}"),
    (
        "uploader-locked-delivery",
        UPLOAD,
        {"delivery": 0o700},
        "cannot read the images folder {images}",
    ),
    (
        "run-locked-delivery",
        RUN,
        {"delivery": 0o700},
        "cannot read the descriptions folder {descriptions}",
    ),
    (
        "report_email-locked-save-dir",
        ["report_email.py", "--save-dir", "{delivery}/out/sub"],
        {"delivery": 0o711, "out": 0o700},
        "argument --save-dir: {delivery}/out/sub",
    ),
    (
        "changeImage-locked-output",
        [*CHANGE, "--output-dir", "{delivery}/out"],
        {"delivery": 0o711, "out": 0o700},
        "--output-dir {delivery}/out",
    ),
]


def as_nobody(arguments: list[str], home: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*AS_NOBODY, sys.executable, str(ROOT / arguments[0]), *arguments[1:]],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "HOME": home},
    )


def delivery_in(home: str) -> dict[str, Path]:
    """home/supplier-data with a description and an image, every part root's and open
    to others; the test locks what it names."""
    delivery = Path(home) / "supplier-data"
    folders = {"delivery": delivery, "images": delivery / "images", "out": delivery / "out"}
    folders["descriptions"] = delivery / "descriptions"
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    (folders["descriptions"] / "001.txt").write_text("Apple\n500 lbs\nRed.\n")
    (folders["images"] / "001.tiff").write_bytes(b"II*\0")
    os.chmod(home, 0o755)
    for folder in folders.values():
        folder.chmod(0o777)
    return folders


@pytest.mark.parametrize(
    "command, locked, expected",
    [pytest.param(*case[1:], id=case[0]) for case in UNREACHABLE_CASES],
)
def test_a_delivery_folder_the_user_cannot_reach_is_one_usage_line(command, locked, expected):
    """A delivery copied in by another user (root's umask 077): its folder is there but
    cannot be listed, or entered. One line naming it and the cause, not 'unexpected
    PermissionError'."""
    if not nobody_can_run(command[0]):
        pytest.skip("needs root, setpriv and a checkout other users can read")
    with tempfile.TemporaryDirectory(dir="/tmp") as home:
        folders = delivery_in(home)
        for name, mode in locked.items():
            folders[name].chmod(mode)
        done = as_nobody([part.format(**folders) for part in command], home)
    said = done.stderr.strip()
    assert done.returncode == 2, said
    assert said.splitlines()[-1].endswith(f"error: {expected.format(**folders)}: permission denied")
    assert "Traceback" not in said


# id, command, the link's name, the message of its one failure
RUN_REAL = [*RUN[:1], "--url", "{url}", *RUN[2:]]
LINK_CASES = [
    ("changeImage", ["changeImage.py", "{images}"], "002.tiff", "002.tiff: cannot open"),
    ("run-check", [*RUN[:1], "--check", *RUN[2:]], "002.jpeg", "no catalog images"),
    ("run", RUN_REAL, "002.jpeg", "no catalog image 002.jpeg"),
]


@pytest.mark.parametrize(
    "command, link, expected", [pytest.param(*case[1:], id=case[0]) for case in LINK_CASES]
)
def test_a_link_into_a_folder_the_user_cannot_enter_fails_that_file_only(
    command, link, expected, store
):
    if not nobody_can_run(command[0]):
        pytest.skip("needs root, setpriv and a checkout other users can read")
    with tempfile.TemporaryDirectory(dir="/tmp") as home:
        folders = delivery_in(home)
        (folders["descriptions"] / "002.txt").write_text("Kiwi\n5 lbs\nGreen.\n")
        (Path(home) / "locked").mkdir(mode=0o700)
        (folders["images"] / link).symlink_to(Path(home) / "locked" / link)
        done = as_nobody([part.format(**folders, url=store.url) for part in command], home)
    assert done.returncode == 1, done.stderr
    assert expected in done.stderr and "unexpected" not in done.stderr, done.stderr


def test_a_record_that_cannot_be_written_is_named_not_its_temporary(store):
    if not nobody_can_run("run.py"):
        pytest.skip("needs root, setpriv and a checkout other users can read")
    with tempfile.TemporaryDirectory(dir="/tmp") as home:
        folders = delivery_in(home)
        folders["delivery"].chmod(0o555)  # the record's folder: read-only for this user
        done = as_nobody([part.format(**folders, url=store.url) for part in RUN_REAL], home)
    record = folders["delivery"] / "imported.json"
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().endswith(
        f"cannot write the record {record}: Permission denied; nothing sent"
    )
    assert store.post_count == 0


# -- the README's configuration table against every parser --------------------------------

README_ROW = re.compile(
    r"^\| *(?P<script>[^|]*?) *\| *(?P<flags>[^|]*?) *\| *(?P<env>[^|]*?) *\|(?P<default>.*)\|$"
)
STANDARD_FLAGS = {"--quiet", "--verbose", "--version", "-q", "-v", "-V", "-h", "--help"}


class ReadmeRow(NamedTuple):
    flags: list[tuple[str, str]]  # (flag or positional name, metavar as written)
    env: set[str]
    default: str
    as_above: bool


def readme_rows() -> dict[str, list[ReadmeRow]]:
    """The Configuration table, row by row, under the script each row belongs to."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, list[ReadmeRow]] = {}
    script = ""
    for line in table.splitlines():
        match = README_ROW.match(line)
        if not match or match["script"] in ("script", "---"):
            continue
        script = match["script"].split()[0] if match["script"] else script
        cells = re.findall(r"`([^`]+)`", match["flags"])
        names = [name for cell in cells for name in re.split(r",\s+(?=-)", cell)]
        flags = [tuple([*name.split(" ", 1), ""][:2]) for name in names]
        rows.setdefault(script, []).append(
            ReadmeRow(
                flags,
                set(re.findall(r"`([A-Z][A-Z0-9_]+)`", match["env"])),
                match["default"].replace("`", "").strip(),
                match["env"] == "as above",
            )
        )
    return rows


def declared(script: str) -> dict[str, object]:
    """Each Option row of the script by its long flag (a positional by its metavar)."""
    module = importlib.import_module(Path(script).stem)
    options = {}
    for option in module.OPTIONS:
        names = option.flags.split()
        long = [name for name in names if name.startswith("--")]
        options[long[0] if long else (option.metavar or names[0])] = option
    return options


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_readme_lists_every_option_as_its_parser_declares_it(script: str) -> None:
    """Every option the parser declares has its README row: flag, metavar,
    variable and default; "as above" takes them from an earlier script's row."""
    rows, options = readme_rows()[script], declared(script)
    listed = {flag for row in rows for flag, _ in row.flags if flag not in STANDARD_FLAGS}
    listed = {flag for flag in listed if flag.startswith("--") or flag.isupper()}
    assert listed == set(options), f"README and {script} disagree on the options"
    table = readme_rows()
    earlier = list(table)[: list(table).index(script)]
    above = {flag: row for name in earlier for row in table[name] for flag, _ in row.flags}
    for row in rows:
        for flag, metavar in row.flags:
            option = options.get(flag)
            if option is None:
                continue
            if metavar and metavar != "...":
                first = option.metavar[0] if isinstance(option.metavar, tuple) else option.metavar
                assert metavar.split()[0] == first, f"{script} {flag}: README shows {metavar}"
            if len({name for name, _ in row.flags if name in options}) > 1 and not row.as_above:
                assert not option.env and option.default_text() == "", f"{script} {flag}"
                continue
            source = above[flag] if row.as_above else row
            assert source.env == ({option.env} if option.env else set()), f"{script} {flag}"
            assert option.default_text().strip("'") in source.default, (
                f"{script} {flag}: README default {source.default!r}"
                f" does not say {option.default_text()!r}"
            )


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_shows_each_options_default_and_variable(script: str) -> None:
    done = help_of(script)
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    for option in declared(script).values():
        if option.default_text():
            assert f"(default {option.default_text()})" in text, option.flags
        if option.env:
            assert f"[{option.env}]" in text, option.flags


# -- a server with Python but without the packages ------------------------------------

# The package each script needs first, and what it must say to install (requirements.txt).
NEEDS = {
    "changeImage.py": ("PIL", ["Pillow"]),
    "supplier_image_upload.py": ("requests", ["requests"]),
    "run.py": ("requests", ["requests"]),
    "report_email.py": ("PIL", ["Pillow", "reportlab"]),
    "reports.py": ("PIL", ["Pillow", "reportlab"]),
}


def pinned(package: str) -> str:
    """package's line in requirements.txt, as `name==version`."""
    lines = (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    [line] = [line for line in lines if line.lower().startswith(f"{package.lower()}==")]
    return line.strip()


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Python without any third-party package (a new venv, without pip)."""
    folder = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    return folder / "bin" / "python"


def run_bare(python: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(python), str(ROOT / script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": str(ROOT), "USER": "alice"},
    )


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_and_version_need_no_package(bare_python: Path, script: str) -> None:
    version = run_bare(bare_python, script, "-V")
    assert (version.returncode, version.stdout) == (
        0,
        f"{script} {VERSION.findall(source(script))[0]}\n",
    )
    helped = run_bare(bare_python, script, "--help")
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: ") and "Exit status" in helped.stdout
    assert helped.stderr == ""


def test_help_shows_the_pixel_limit_as_a_number_without_pillow(bare_python: Path) -> None:
    from PIL import Image

    helped = run_bare(bare_python, "changeImage.py", "--help")
    flat = " ".join(helped.stdout.split())
    assert f"(default Pillow's {Image.MAX_IMAGE_PIXELS})" in flat, helped.stdout
    assert "object at 0x" not in helped.stdout


def install_hint(pins: str) -> str:
    """What a script run by another Python than the project's says to do (run_bare runs
    the checkout's scripts: their venv, when made, is beside them)."""
    venv_python = ROOT / ".venv" / "bin" / "python"
    if venv_python.is_file():
        return f"run it with {venv_python} (the project's venv), or pip install {pins}"
    return f"pip install {pins}"


def test_a_script_copied_alone_says_only_the_pip_line(bare_python: Path, tmp_path: Path) -> None:
    """Without a venv beside it there is none to point to."""
    shutil.copy(ROOT / "changeImage.py", tmp_path)
    done = subprocess.run(
        [str(bare_python), str(tmp_path / "changeImage.py")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    module, packages = NEEDS["changeImage.py"]
    pins = " ".join(pinned(package) for package in packages)
    assert done.stderr == f"changeImage.py: {module} is missing: pip install {pins}\n"


@pytest.mark.parametrize("script", sorted(NEEDS))
def test_a_missing_package_says_the_pip_line(bare_python: Path, script: str) -> None:
    module, packages = NEEDS[script]
    done = run_bare(bare_python, script)
    pins = " ".join(pinned(package) for package in packages)
    assert done.returncode == 2
    assert done.stderr == f"{script}: {module} is missing: {install_hint(pins)}\n"
    assert done.stdout == ""


def test_health_check_without_psutil_says_the_pip_line(bare_python: Path) -> None:
    done = run_bare(bare_python, "health_check.py", "--no-email")
    assert done.returncode == 3
    assert done.stdout == (
        f"HEALTH UNKNOWN - psutil is not installed for {bare_python}:"
        f" {install_hint(pinned('psutil'))}\n"
    )


# -- what a reader meets: the script's own code first, copies a minor share -----------

# Ratchets at what main reaches (issue 26 asks 25%): they go up only with the reason
# written here. From 0.386 to 0.332: copies carry no prose, reports.py takes emails.py's
# command line. Up to 0.343 (2026-12-07): two hostile passes' fixes are shared code in
# four or five scripts each (a folder out of reach, a name or path not UTF-8, a full
# journal, terminal escapes in log lines, a closed pipe, retries said once and cut
# short when the store is down).
COPIES_SHARE_AT_MOST = 0.343
OWN_CODE_STARTS_BY_LINE = 269


def copied_lines(script: str) -> int:
    return sum(match[0].count("\n") + 1 for match in FENCE.finditer(source(script)))


def own_code_start(script: str) -> int:
    """The line of the script's first own function or class: after its docstring,
    prologue, imports and constants, and no copy in front of it."""
    text = source(script)
    fenced = [
        range(text.count("\n", 0, m.start()) + 1, text.count("\n", 0, m.end()) + 2)
        for m in FENCE.finditer(text)
    ]
    for node in ast.parse(text).body:
        own = not any(node.lineno in span for span in fenced)
        if own and isinstance(node, ast.FunctionDef | ast.ClassDef):
            return min([node.lineno] + [d.lineno for d in node.decorator_list])
    return len(text.splitlines())


def test_copies_are_a_minor_share_and_each_script_starts_with_its_own_code() -> None:
    copies = sum(copied_lines(script) for script in SCRIPTS)
    lines = sum(len(source(script).splitlines()) for script in SCRIPTS)
    assert copies / lines <= COPIES_SHARE_AT_MOST, f"copies are {copies} of {lines} lines"
    starts = {script: own_code_start(script) for script in SCRIPTS}
    assert max(starts.values()) <= OWN_CODE_STARTS_BY_LINE, starts


def test_reports_imported_without_emails_beside_it_names_the_file(tmp_path: Path) -> None:
    """reports.py takes its command line and writer from emails.py: a program that
    imports reports.py copied alone learns which file to copy, and is not ended."""
    (tmp_path / "reports.py").write_bytes((ROOT / "reports.py").read_bytes())
    program = "try:\n    import reports\nexcept ImportError as error:\n    print(error)"
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "reports.py: emails.py is missing: copy it beside\n"


def test_a_helper_used_by_another_program_without_its_packages_says_the_pip_line(
    bare_python: Path, tmp_path: Path
) -> None:
    """`import reports` from a program of one's own works without reportlab (nothing
    is parsed), but the first use fails with the pip line instead of writing nothing."""
    pdf = tmp_path / "report.pdf"
    program = f"import reports; reports.generate_report({str(pdf)!r}, 'Title', 'name: Apple')"
    done = subprocess.run(
        [str(bare_python), "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    pins = f"{pinned('Pillow')} {pinned('reportlab')}"
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        f"ModuleNotFoundError: PIL is missing: pip install {pins}"
    )
    assert not pdf.exists()
