"""health_check.py against bad input: every case is one row (id, input, expected status,
expected message, what must not change), run as cron runs the script, under a hang guard."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "health_check.py"
HANG_GUARD = 60  # seconds: the script promises 15; a run still going at 60 has hung
DISK_FAILS = ["--cpu", "100", "--disk", "100", "--memory", "0"]
PASSING = ["--cpu", "100", "--disk", "0", "--memory", "0"]
GOOD_STATE = '{"version":2,"checks":{},"slo":{},"saved":1.0}'
SECRET = "hunter2"  # a password in URLs: it must never be shown
NOW = 2_000_000_000  # HEALTH_NOW of the clock cases: minute 33333333, hour 555555


def state_with(checks: str = "{}", one: str = "") -> str:
    """A version 2 state; `one` is one URL's SLO series (JSON text) when given."""
    slo = f'{{"http://127.0.0.1:9/":{one}}}' if one else "{}"
    return f'{{"version":2,"checks":{checks},"slo":{slo},"saved":1}}'


def series(minutes: str = "[]", hours: str = "[]", **fields: str) -> str:
    values = {"start": "0", "probes": "1", "good": "1", "slo": "0.99", **fields}
    return (
        f'{{"start":{values["start"]},"minutes":{minutes},"hours":{hours},'
        f'"probes":{values["probes"]},"good":{values["good"]},"slo":{values["slo"]}}}'
    )


def mailed(last: str, since: str = "1") -> str:
    return f'{{"disk:/":{{"since":{since},"last_mailed":{last}}}}}'


@dataclass(frozen=True)
class Case:
    id: str
    args: list[str]
    status: int
    says: str  # a fragment of stdout + stderr
    env: dict[str, str] = field(default_factory=dict)
    state: str | None = GOOD_STATE  # the state file's text before the run (None: no file)
    state_kept: bool = True  # the state file must be byte for byte what it was
    mails: int = 0  # mails that must arrive
    setup: str = ""  # a named situation prepared by the test (see prepare())


CASES = [
    # Numbers: one check (the cli block's number()) for flags and variables alike.
    Case("remind-nan", ["--remind", "nan"], 3, "argument --remind: 'nan' is not from 1"),
    Case("remind-inf", ["--remind", "inf"], 3, "argument --remind: 'inf'"),
    Case("remind-1e309", ["--remind", "1e309"], 3, "argument --remind: '1e309'"),
    Case("remind-zero", ["--remind", "0"], 3, "argument --remind: '0' is not from 1"),
    Case(
        "remind-env", [], 3, "environment variable HEALTH_REMIND: 'nan'", {"HEALTH_REMIND": "nan"}
    ),
    Case(
        "remind-env-word",
        [],
        3,
        "HEALTH_REMIND: 'hourly' is not a number",
        {"HEALTH_REMIND": "hourly"},
    ),
    Case("cpu-over-100", ["--cpu", "120"], 3, "argument --cpu: '120' is not from 0 to 100"),
    Case("cpu-nan", ["--cpu", "nan"], 3, "argument --cpu: 'nan'"),
    Case("cpu-env", [], 3, "environment variable HEALTH_CPU: 'lots'", {"HEALTH_CPU": "lots"}),
    Case("disk-negative", ["--disk", "-1"], 3, "argument --disk: '-1' is not from 0 to 100"),
    Case("memory-word", ["--memory", "lots"], 3, "argument --memory: expected a size like 500MB"),
    Case("memory-1e309", ["--memory", "1e309MB"], 3, "argument --memory: expected a size"),
    Case("memory-huge", ["--memory", "2000000000000MB"], 3, "'2000000000000' is not from"),
    Case("memory-unit", ["--memory", "5 parsecs"], 3, "expected a size like 500MB"),
    Case("memory-warning-env", [], 3, "HEALTH_MEMORY_WARNING", {"HEALTH_MEMORY_WARNING": "-5MB"}),
    Case("range-reversed", ["--cpu", "50:20"], 3, "range '50:20' starts after it ends"),
    Case("range-garbage", ["--disk-warning", "@:x"], 3, "argument --disk-warning: 'x'"),
    Case("timeout-nan", ["-t", "nan"], 3, "argument -t/--timeout: 'nan'"),
    Case("timeout-zero", ["--timeout", "0"], 3, "argument -t/--timeout: '0' is not from 2"),
    Case("timeout-env", [], 3, "environment variable HEALTH_TIMEOUT", {"HEALTH_TIMEOUT": "inf"}),
    Case(
        "url-timeout-over-run",
        ["--url", "http://127.0.0.1:9/", "--url-timeout", "20"],
        3,
        "--url-timeout must be below -t/--timeout",
    ),
    Case("url-timeout-env", [], 3, "HEALTH_URL_TIMEOUT: 'nan'", {"HEALTH_URL_TIMEOUT": "nan"}),
    Case("slo-100", ["--slo", "100"], 3, "argument --slo: '100' is not from 50 to 99.999"),
    Case("slo-nan", ["--slo", "nan%"], 3, "argument --slo: 'nan'"),
    Case(
        "urls-env-slo", [], 3, "HEALTH_URLS: '1' is not from 50", {"HEALTH_URLS": "http://x/ slo=1"}
    ),
    # A path may end in =NUMBER or =off: it is a URL like any other, probed.
    Case(
        "url-path-ends-in-equals-number",
        [*PASSING, "--no-email", "--nagios", "--url", "http://127.0.0.1:9/ok/id=42"],
        2,
        "127.0.0.1:9/ok/id=42: refused",
        state_kept=False,
    ),
    Case(
        "urls-env-path-ends-in-equals-off",
        [*PASSING, "--no-email", "--nagios"],
        2,
        "127.0.0.1:9/=off: refused",
        {"HEALTH_URLS": "http://127.0.0.1:9/=off"},
        state_kept=False,
    ),
    # One word holding a URL and a setting (an Icinga string, not an array), or a line
    # break, is refused: the setting would go out in the query, the line split the output.
    Case(
        "url-and-setting-in-one-word",
        ["--url", "http://127.0.0.1:9/ok?x=1 slo=off"],
        3,
        "'http://127.0.0.1:9/ok' holds a space or control character",
    ),
    Case("url-line-break", ["--url", "http://x/a\nb"], 3, "'http://x/a\\nb' holds a space"),
    Case("url-tab", ["--url", "http://x/a\tb"], 3, "holds a space or control character"),
    Case(
        "url-password-with-hash",
        ["--url", f"http://user:PW#{SECRET}@127.0.0.1:1/ok"],
        3,
        "'http://127.0.0.1:1/ok' is not an http",
    ),
    Case(
        "url-password-with-question-mark",
        ["--url", f"http://user:PW?{SECRET}@127.0.0.1:1/ok"],
        3,
        "'http://127.0.0.1:1/ok' is not an http",
    ),
    # Huge values are echoed capped at 80 characters, labels too.
    Case(
        "cpu-env-huge",
        [],
        3,
        "HEALTH_CPU: '" + "1" * 79 + "…' is not from 0 to 100",
        {"HEALTH_CPU": "1" * 100_000},
    ),
    Case(
        "smtp-port-huge",
        PASSING,
        3,
        "SMTP_PORT: '" + "9" * 79 + "…'",
        {"SMTP_PORT": "9" * 100_000},
    ),
    Case(
        "url-path-huge",
        [*PASSING, "--no-email", "--nagios", "--url", "http://127.0.0.1:9/" + "a" * 20_000],
        2,
        "HEALTH CRITICAL - 127.0.0.1:9/" + "a" * 67 + "…: refused",
        state_kept=False,
    ),
    # Empty paths are no working folder.
    Case("state-empty", ["--state", ""], 3, "argument --state: the path is empty"),
    Case("textfile-empty", [*PASSING, "--textfile="], 3, "argument --textfile: the path is empty"),
    # node_exporter's folder must exist: a missing one is a typo, not created.
    Case(
        "textfile-folder-missing",
        [*PASSING, "--no-email", "--textfile", "{tmp}/missing/h.prom"],
        3,
        "cannot write {tmp}/missing/h.prom: No such file or directory",
    ),
    Case("url-setting-first", ["--url", "slo=99"], 3, "'slo=99' comes before any URL"),
    Case("url-label-bad", ["--url", "http://x/", "label=a b"], 3, "label 'a b': up to 80"),
    Case(
        "url-labels-collide",
        ["--url", "http://x/s?p=1", "--url", "https://x/s?p=2"],
        3,
        "http://x/s and https://x/s share the label 'x/s': give one label=NAME",
    ),
    Case("url-file", ["--url", "file:///etc/shadow"], 3, "'file:///etc/shadow' is not an http"),
    Case(
        "url-no-host-secret",
        ["--url", "http://bob:hunter2@"],
        3,
        "'http://' is not an http:// or https:// URL",
    ),
    Case(
        "smtp-port-word",
        DISK_FAILS,
        3,
        "environment variable SMTP_PORT: 'abc' is not a whole number",
        {"SMTP_PORT": "abc"},
    ),
    Case("slo-window-zero", ["--slo-window", "0"], 3, "argument --slo-window: '0'"),
    Case("budget-warning-over", ["--budget-warning", "200"], 3, "argument --budget-warning"),
    Case("smtp-timeout-negative", [], 3, "SMTP_TIMEOUT: '-1'", {"SMTP_TIMEOUT": "-1"}),
    Case("smtp-timeout-nan", [], 3, "SMTP_TIMEOUT: 'nan'", {"SMTP_TIMEOUT": "nan"}),
    Case("now-nan", [], 3, "environment variable HEALTH_NOW: 'nan'", {"HEALTH_NOW": "nan"}),
    Case("unknown-option", ["--cpus", "80"], 3, "unrecognized arguments: --cpus"),
    # The state: wrong or broken content is reset with a warning, never a crash.
    Case(
        "state-last-mailed-word",
        DISK_FAILS,
        2,
        "last_mailed 'yesterday'); starting afresh",
        state='{"version":2,"checks":{"disk:/":{"since":1,"last_mailed":"yesterday"}},'
        '"slo":{},"saved":1}',
        state_kept=False,
        mails=1,
    ),
    Case(
        "state-not-json", DISK_FAILS, 2, "is unusable", state="{broken", state_kept=False, mails=1
    ),
    Case(
        "state-not-utf8",
        PASSING,
        0,
        "is unusable",
        state="\udcff\udcfe",
        state_kept=False,
    ),
    Case(
        "state-bad-buckets",
        [*PASSING, "--slo-report"],
        0,
        "are not [time, minutes probed, good minutes] buckets",
        state='{"version":2,"checks":{},"saved":1,"slo":{"http://x/":{"start":0,"minutes":'
        '[["a",1,1]],"hours":[],"probes":1,"good":1,"slo":0.99}}}',
    ),
    Case(
        "state-list",
        PASSING,
        0,
        "not a version 3 state",
        state="[1, 2]",
        state_kept=False,
    ),
    Case(
        "state-version-1-kept",
        DISK_FAILS,
        2,
        "",
        state='{"version":1,"checks":{"disk:/":{"since":1,"last_mailed":4102444800}}}',
        state_kept=False,
    ),
    # Places and the lock.
    Case("lock-held", DISK_FAILS, 3, "another health_check.py run holds", setup="lock-held"),
    Case(
        "state-folder-is-a-file",
        PASSING,
        3,
        "cannot use the lock file",
        setup="state-under-a-file",
        state=None,
    ),
    Case(
        "missing-disk",
        [*PASSING, "--nagios", "--no-email", "--disk-path", "/no/such/mount"],
        3,
        "HEALTH UNKNOWN - Disk space of /no/such/mount cannot be measured",
        state_kept=True,
    ),
    Case(
        "textfile-unwritable",
        [*PASSING, "--no-email", "--textfile", "/proc/health.prom"],
        3,
        "cannot write /proc/health.prom",
    ),
    Case(
        "no-home-no-passwd",
        PASSING,
        3,
        "has no home folder (no HOME, no passwd entry): set --state or HEALTH_STATE",
        setup="stranger",
        state=None,
    ),
    Case(
        "no-user-no-passwd",
        DISK_FAILS,
        3,
        "has no login name (no USER, no passwd entry): set --recipient",
        setup="stranger-with-state",
        state=None,
    ),
    # Hostile state: any field NaN, infinite, huge, negative or of the wrong shape is reset
    # with a warning; an alert is never silenced by it (a NaN or far-future last_mailed
    # would never remind again), and the run never ends UNKNOWN over and over.
    Case(
        "state-last-mailed-nan",
        DISK_FAILS,
        2,
        "last_mailed nan); starting afresh",
        state=state_with(mailed("NaN")),
        state_kept=False,
        mails=1,
    ),
    Case(
        "state-last-mailed-1e300",
        DISK_FAILS,
        2,
        "last_mailed 1e+300); starting afresh",
        state=state_with(mailed("1e300")),
        state_kept=False,
        mails=1,
    ),
    Case(
        "state-since-infinite",
        DISK_FAILS,
        2,
        "has no time it started failing",
        state=state_with(mailed("null", since="Infinity")),
        state_kept=False,
        mails=1,
    ),
    Case(
        "state-last-mailed-true",
        DISK_FAILS,
        2,
        "last_mailed True",
        state=state_with(mailed("true")),
        state_kept=False,
        mails=1,
    ),
    Case(
        "state-bucket-count-huge",
        [*PASSING, "--slo-report"],
        0,
        "are not [time, minutes probed, good minutes] buckets",
        state=state_with(one=series(hours="[[1," + "9" * 40 + ",1]]")),
    ),
    Case(
        "state-bucket-count-negative",
        [*PASSING, "--slo-report"],
        0,
        "are not [time, minutes probed, good minutes] buckets",
        state=state_with(one=series(minutes="[[5,-3,7]]")),
    ),
    Case(
        "state-bucket-good-over-probes",
        [*PASSING, "--slo-report"],
        0,
        "are not [time, minutes probed, good minutes] buckets",
        state=state_with(one=series(hours="[[5,1,2]]")),
    ),
    Case(
        "state-bucket-wrong-shape",
        [*PASSING, "--slo-report"],
        0,
        "are not [time, minutes probed, good minutes] buckets",
        state=state_with(one=series(minutes='{"a":1}')),
    ),
    Case(
        "state-totals-huge",
        [*PASSING, "--slo-report"],
        0,
        "the totals of http://127.0.0.1:9/",
        state=state_with(one=series(probes="1" + "0" * 400)),
    ),
    Case(
        "state-start-nan",
        [*PASSING, "--slo-report"],
        0,
        "the start of http://127.0.0.1:9/ is not a time",
        state=state_with(one=series(start="NaN")),
    ),
    Case(
        "state-slo-500-percent",
        [*PASSING, "--slo-report"],
        0,
        "is not a fraction from 0.5 to 1",
        state=state_with(one=series(slo="5.0")),
    ),
    Case(
        "state-series-a-list",
        [*PASSING, "--slo-report"],
        0,
        "the series of http://127.0.0.1:9/ is not a mapping",
        state=state_with(one="[1,2]"),
    ),
    Case(
        "state-nested-deep",
        PASSING,
        0,
        "is unusable",
        state="[" * 100_000 + "]" * 100_000,
        state_kept=False,
    ),
    # The clock going back (HEALTH_NOW before the state's last probe): later probes are
    # dropped so new ones count, a later mailing becomes now so reminders keep pace.
    Case(
        "clock-back-probes",
        [*PASSING, "--slo-report"],
        0,
        "holds times after now (the clock went back)",
        env={"HEALTH_NOW": str(NOW)},
        state=state_with(one=series(minutes="[[50000000,1,1]]", hours="[[833333,1,1]]")),
    ),
    Case(
        "clock-back-mailing",
        DISK_FAILS,
        2,
        "disk:/ last_mailed adjusted",
        env={"HEALTH_NOW": str(NOW)},
        state=state_with(mailed(str(NOW + 86400))),
        state_kept=False,
    ),
    Case(
        "month-gap",
        [*PASSING, "--slo-report"],
        0,
        "(0 of 0 min probed; 43174 min not probed)",
        env={"HEALTH_NOW": str(NOW + 31 * 86400)},
        state=state_with(one=series(minutes="[[33333333,1,1]]", hours="[[555555,1,1]]")),
    ),
    # Places that are not files: a FIFO waits forever, /dev/zero never ends, and renaming
    # over either (or /dev/null, as root) would replace it.
    Case(
        "state-fifo",
        PASSING,
        3,
        "is unusable (not a regular file)",
        setup="state-fifo",
        state=None,
        state_kept=False,
    ),
    Case(
        "state-devzero",
        PASSING,
        0,
        "is unusable (not a regular file)",
        setup="state-devzero",
        state=None,
        state_kept=False,
    ),
    Case("lock-fifo", PASSING, 3, "cannot use the lock file", setup="lock-fifo"),
    Case("lock-devzero", PASSING, 3, "lock: not a regular file", setup="lock-devzero"),
    Case(
        "textfile-fifo",
        [*PASSING, "--no-email", "--textfile", "{tmp}/fifo"],
        3,
        "cannot write {tmp}/fifo: not a regular file",
        setup="fifo",
    ),
    # URLs: nothing of a password is shown, whatever urlsplit thinks of the rest.
    Case(
        "url-bad-ipv6-secret",
        ["--url", f"http://bob:{SECRET}@[::1/"],
        3,
        "'http://[::1/' is not an http",
    ),
    Case(
        "url-bad-port-secret",
        ["--url", f"http://bob:{SECRET}@127.0.0.1:99999/"],
        3,
        "'http://127.0.0.1:99999/' is not an http",
    ),
    Case(
        "urls-env-bad-ipv6-secret",
        [],
        3,
        "environment variable HEALTH_URLS: 'http://[::1/'",
        {"HEALTH_URLS": f"http://bob:{SECRET}@[::1/"},
    ),
    Case(
        "url-pipe-in-status-line",
        [*PASSING, "--no-email", "--nagios", "--url", "http://127.0.0.1:9/a|b"],
        2,
        "127.0.0.1:9/a/b: refused, SLO 99%",
        state_kept=False,
    ),
    Case(
        "disk-paths-env-empty",
        PASSING,
        3,
        "environment variable HEALTH_DISK_PATHS: ':' names no path",
        {"HEALTH_DISK_PATHS": ":"},
    ),
    Case("disk-path-empty", [*PASSING, "--disk-path", ""], 3, "--disk-path: a path is empty"),
    Case(
        "state-is-a-folder",
        PASSING,
        3,
        "cannot save the state file {tmp}/cache: not a regular file",
        {"HEALTH_STATE": "{tmp}/cache"},
        state=None,
    ),
    Case(
        "resolve-host-line-break",
        [*PASSING, "--nagios", "--resolve-host", "nohost\nBcc: evil@y.com"],
        2,
        "HEALTH CRITICAL - nohost Bcc: evil@y.com resolves to nothing",
        state_kept=False,
        mails=1,  # the alert still goes out, its subject on one line
    ),
    # Mail settings are checked at start, even while every check passes.
    Case(
        "recipient-crlf-injection",
        [*PASSING, "--recipient", "a@x.com\r\nBcc: evil@y.com"],
        3,
        "--recipient: recipient must not contain a line break",
    ),
    Case(
        "recipients-env-bad",
        PASSING,
        3,
        "environment variable HEALTH_RECIPIENTS: recipient 'b' is not one",
        {"HEALTH_RECIPIENTS": "a@x.com;b"},
    ),
    Case("sender-bad", [*PASSING, "--sender", "bob"], 3, "--sender: sender 'bob' is not one"),
    Case(
        "sender-env-line-break",
        PASSING,
        3,
        "environment variable HEALTH_SENDER: sender must not contain a line break",
        {"HEALTH_SENDER": "a@x.com\u2028Bcc: e@y.com"},
    ),
    Case(
        "smtp-port-while-healthy",
        PASSING,
        3,
        "environment variable SMTP_PORT: '25x'",
        {"SMTP_PORT": "25x"},
    ),
    Case(
        "smtp-host-bad", PASSING, 3, "SMTP_HOST: 'a..b' is not a host name", {"SMTP_HOST": "a..b"}
    ),
    Case(
        "smtp-password-file-devzero",
        PASSING,
        3,
        "cannot read SMTP_PASSWORD_FILE /dev/zero: not a regular file",
        {"SMTP_PASSWORD_FILE": "/dev/zero"},
    ),
    Case(
        "smtp-refused",
        DISK_FAILS,
        3,
        "could not mail 'Error - Available disk space",
        setup="smtp-dead",
        state_kept=False,  # saved, with the alert not marked as mailed: it goes out next run
    ),
]


def prepare(
    case: Case, tmp_path: Path, env: dict[str, str], dead_port: int, stranger
) -> tuple[list, dict]:
    """The command's start and the options for subprocess.run that put the case's
    situation in place."""
    command: list = [SCRIPT]
    options: dict = {}
    state = Path(env["HEALTH_STATE"])
    if case.setup == "state-under-a-file":
        (tmp_path / "blocker").write_text("a file where the state folder should be")
        env["HEALTH_STATE"] = str(tmp_path / "blocker" / "state.json")
    if case.setup in ("stranger", "stranger-with-state"):
        packages = Path(psutil.__file__).parent.parent
        uid, python = stranger(SCRIPT, packages / "psutil" / "__init__.py")
        command = [python, SCRIPT]
        for name in ("HOME", "USER", "LOGNAME", "HEALTH_RECIPIENTS"):
            env.pop(name, None)
        options["user"] = uid
        env["PYTHONPATH"] = str(packages)
        if case.setup == "stranger":
            env.pop("HEALTH_STATE")
        else:
            os.chown(state.parent, uid, -1)
    if case.setup == "smtp-dead":
        env["SMTP_PORT"] = str(dead_port)
    specials = {
        "state-fifo": (state, None),
        "state-devzero": (state, "/dev/zero"),
        "lock-fifo": (state.with_name("state.json.lock"), None),
        "lock-devzero": (state.with_name("state.json.lock"), "/dev/zero"),
        "fifo": (tmp_path / "fifo", None),
    }
    if case.setup in specials:
        place, target = specials[case.setup]
        place.unlink(missing_ok=True)
        if target is None:
            os.mkfifo(place)
        else:
            place.symlink_to(target)
    return command, options


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path, smtp_env, dead_port, stranger):
    state = tmp_path / "cache" / "state.json"
    state.parent.mkdir()
    os.chmod(tmp_path, 0o755)
    if case.state is not None:
        state.write_bytes(case.state.encode("utf-8", "surrogateescape"))
    before = state.read_bytes() if state.exists() else None
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEALTH_")}
    env.update({"HEALTH_STATE": str(state), "USER": "alice", "HOME": str(tmp_path)})
    env.update({name: value.replace("{tmp}", str(tmp_path)) for name, value in case.env.items()})
    command, options = prepare(case, tmp_path, env, dead_port, stranger)
    with contextlib.ExitStack() as stack:
        if case.setup == "lock-held":
            lock = stack.enter_context(open(state.with_name("state.json.lock"), "a"))
            fcntl.flock(lock, fcntl.LOCK_EX)
        result = subprocess.run(
            [*command, *(arg.replace("{tmp}", str(tmp_path)) for arg in case.args)],
            capture_output=True,
            text=True,
            env=env,
            timeout=HANG_GUARD,
            cwd=tmp_path,
            **options,
        )
    said = result.stdout + result.stderr
    says = case.says.replace("{tmp}", str(tmp_path))
    assert (result.returncode, says in said) == (case.status, True), said
    assert "Traceback" not in said
    if case.status == 3:  # any way the check cannot run: one line an engine shows
        assert re.fullmatch(r"HEALTH UNKNOWN - [^\n]+\n", result.stdout), said
        assert "usage:" not in result.stderr
    assert SECRET not in said
    assert len(smtp_env.messages()) == case.mails
    if case.state_kept:
        assert (state.read_bytes() if state.exists() else None) == before
