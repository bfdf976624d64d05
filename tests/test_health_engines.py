"""health_check.py as a monitoring engine runs it (Icinga, Nagios, node_exporter): one
line on stdout and a status 0-3 whatever happens, -w/-c, probes that say why they
failed, labels without secrets, checks that degrade one by one, cgroup limits.
Every case is a row, run as a subprocess the way the engine runs the plugin."""

from __future__ import annotations

import os
import re
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "health_check.py"
HANG_GUARD = 30  # seconds: the script promises 15; a run still going at 30 has hung
PASSING = ["--cpu", "100", "--disk", "0", "--memory", "0"]
LINE = re.compile(r"HEALTH (OK|WARNING|CRITICAL|UNKNOWN) - [^\n|]+(?: \| [^\n]+)?\n")
WORDS = {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}


def environment(tmp_path: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEALTH_", "SMTP_"))}
    env.update({"HEALTH_STATE": str(tmp_path / "state.json"), "USER": "alice"})
    env.update({k: v.replace("{tmp}", str(tmp_path)) for k, v in extra.items()})
    return env


def plugin(tmp_path: Path, *args: str, env: dict[str, str] | None = None):
    """One run as an engine runs it; stdout must be one status line whose word is the status."""
    result = subprocess.run(
        [SCRIPT, *(a.replace("{tmp}", str(tmp_path)) for a in args)],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        env=environment(tmp_path, env or {}),
        cwd=tmp_path,
    )
    said = result.stdout + result.stderr
    assert LINE.fullmatch(result.stdout), said
    assert WORDS[result.stdout.split()[1]] == result.returncode, said
    assert "Traceback" not in said and "usage:" not in result.stderr
    return result


# -- 1. every way out is one line ------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    id: str
    args: list[str]
    says: str
    env: dict[str, str] = field(default_factory=dict)


USAGE = [
    Usage("cpu-200", ["--cpu", "200"], "argument --cpu: '200' is not from 0 to 100"),
    Usage("cpu-env-word", [], "environment variable HEALTH_CPU: 'abc'", {"HEALTH_CPU": "abc"}),
    Usage("typo", ["--cpus", "80"], "unrecognized arguments: --cpus 80"),
    Usage("missing-value", ["--cpu"], "argument --cpu: expected one argument"),
    Usage("timeout-word", ["-t", "soon"], "argument -t/--timeout: 'soon' is not a number"),
    Usage("remind-env-inf", [], "HEALTH_REMIND: 'inf'", {"HEALTH_REMIND": "inf"}),
    Usage("now-env", [], "HEALTH_NOW: 'later'", {"HEALTH_NOW": "later"}),
    Usage("smtp-timeout-env", [], "SMTP_TIMEOUT: 'nan'", {"SMTP_TIMEOUT": "nan"}),
    Usage(
        "disk-paths-env-empty",
        [],
        "HEALTH_DISK_PATHS: ':' names no path",
        {"HEALTH_DISK_PATHS": ":"},
    ),
]


@pytest.mark.parametrize("case", USAGE, ids=[c.id for c in USAGE])
def test_a_bad_option_or_variable_is_one_unknown_line(case: Usage, tmp_path):
    result = plugin(tmp_path, "--nagios", *case.args, env=case.env)
    assert result.returncode == 3
    assert result.stdout.startswith("HEALTH UNKNOWN - usage: ")
    assert case.says in result.stdout
    assert result.stderr == ""


def test_help_and_version_still_print_to_stdout_and_exit_0(tmp_path):
    for flag in ("-h", "--help", "-V", "--version"):
        result = subprocess.run([SCRIPT, flag], capture_output=True, text=True, timeout=HANG_GUARD)
        assert (result.returncode, result.stderr) == (0, ""), flag
        assert result.stdout.strip()
