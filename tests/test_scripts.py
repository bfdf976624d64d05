"""Rules of the collection, checked over every script (psutil's test_scripts.py):
each script is tested, executable, imports no project module but reports/emails,
carries the same version, shows its examples and exit statuses in --help, and the
blocks copied on purpose between standalone scripts are still identical."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

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
    "changeImage.py": {"PIL", "deflate"},
    "supplier_image_upload.py": {"requests", "urllib3"},
    "run.py": {"requests", "urllib3"},
    "report_email.py": {"PIL", "reportlab"},
    "health_check.py": {"psutil"},
    "reports.py": {"PIL", "reportlab"},
    "emails.py": set(),
}
# Which scripts carry which shared block (fenced by "begin/end shared block: NAME").
BLOCKS = {
    "cli": set(SCRIPTS),
    "lock": {"changeImage.py", "supplier_image_upload.py", "run.py"},
    "progress": {"changeImage.py", "supplier_image_upload.py", "run.py"},
    "delivery files": {"changeImage.py", "supplier_image_upload.py", "run.py", "report_email.py"},
    "http": {"supplier_image_upload.py", "run.py"},
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


def test_a_stale_copy_is_named_with_the_command_that_mends_it(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("sync_blocks", ROOT / "tools" / "sync_blocks.py")
    blocks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(blocks)
    edited = source("run.py").replace("def redact(", "def redacted(", 1)
    (tmp_path / "run.py").write_text(edited, encoding="utf-8")
    (tmp_path / "blocks").symlink_to(ROOT / "blocks")
    original = blocks.ROOT, blocks.HOMES
    blocks.ROOT, blocks.HOMES = tmp_path, ROOT / "blocks"
    try:
        assert blocks.stale() == ["run.py: block http differs from blocks/http.py: run make blocks"]
        assert blocks.main([]) == 0
        assert blocks.stale() == []
    finally:
        blocks.ROOT, blocks.HOMES = original
    assert (tmp_path / "run.py").read_text(encoding="utf-8") == source("run.py")


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


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_shows_examples_and_exit_statuses(script: str, tmp_path: Path) -> None:
    done = run_script(script, "--help")
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
