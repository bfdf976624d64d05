"""health_check.py as a monitoring engine runs it (Icinga, Nagios, node_exporter): one
line on stdout and a status 0-3 whatever happens, -w/-c, probes that say why they
failed, labels without secrets, checks that degrade one by one, cgroup limits.
Every case is a row, run as a subprocess the way the engine runs the plugin."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "health_check.py"
HANG_GUARD = 60  # seconds: the script promises 15; a run still going at 60 has hung
LINE = re.compile(r"HEALTH (OK|WARNING|CRITICAL|UNKNOWN) - [^\n|]+(?: \| [^\n]+)?\n")
WORDS = {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}


def environment(tmp_path: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEALTH_")}
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
    # Nagios shows a ';' before the perfdata as ':': the line must read the same in both.
    assert ";" not in result.stdout.partition(" | ")[0], said
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
    # A URL's setting given twice: which one was meant? (the last no longer wins silently)
    Usage(
        "url-slo-twice",
        ["--url", "http://127.0.0.1:9/", "slo=99.9", "slo=off"],
        "argument --url: slo= is given twice for http://127.0.0.1:9/: give it once",
    ),
    Usage(
        "url-label-twice",
        ["--url", "http://127.0.0.1:9/", "label=a", "slo=off", "label=b"],
        "argument --url: label= is given twice for http://127.0.0.1:9/",
    ),
    Usage(
        "urls-env-slo-twice",
        [],
        "environment variable HEALTH_URLS: slo= is given twice for http://127.0.0.1:9/b",
        {"HEALTH_URLS": "http://127.0.0.1:9/a slo=off http://127.0.0.1:9/b slo=99 slo=99.9"},
    ),
    # A usage error's own ';' (in the metrics' list) reads the same in every engine.
    Usage("bare-w-no-semicolon", ["-w", "80"], "'80' is not METRIC=RANGE, metrics: cpu"),
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


# -- 2. -w/-c and consistent thresholds ------------------------------------------------------


@dataclass(frozen=True)
class Threshold:
    id: str
    args: list[str]
    status: int
    says: str
    env: dict[str, str] = field(default_factory=dict)


QUIET = ["-c", "cpu=100,disk=0,memory=0"]
THRESHOLDS = [
    Threshold("bare-w", ["-w", "80", "-c", "90"], 3, "'80' is not METRIC=RANGE, metrics: cpu,"),
    Threshold("unknown-metric", ["-w", "swap=10"], 3, "'swap=10' is not METRIC=RANGE"),
    Threshold("budget-has-no-critical", ["-c", "budget=10"], 3, "metrics: cpu, disk, memory ("),
    Threshold("twice-in-one", ["-w", "cpu=1,cpu=2"], 3, "cpu is given twice"),
    Threshold("twice-in-two", ["-c", "cpu=90", "-c", "cpu=95"], 3, "-c: cpu is given twice"),
    Threshold("w-twice-in-two", ["-w", "cpu=1", "-w", "disk=5,cpu=2"], 3, "cpu is given twice"),
    Threshold("w-empty-is-not-given", ["-w", "", *QUIET], 0, "HEALTH OK - "),
    Threshold("c-empty-is-not-given", ["-c", " ", *QUIET], 0, "HEALTH OK - "),
    Threshold("c-and-flag", ["-c", "cpu=90", "--cpu", "80"], 3, "-c cpu=... and --cpu"),
    Threshold(
        "cpu-warning-past", ["--cpu", "90", "--cpu-warning", "95"], 3, "cpu WARNING range 95"
    ),
    Threshold("disk-warning-past", ["--disk", "20", "--disk-warning", "10"], 3, "disk WARNING"),
    Threshold("w-c-disk-past", ["-w", "disk=10", "-c", "disk=20"], 3, "is past the CRITICAL 20:"),
    Threshold("env-past", [], 3, "cpu WARNING", {"HEALTH_CPU": "90", "HEALTH_CPU_WARNING": "95"}),
    Threshold("memory-exponent", ["--memory", "1e3"], 3, "expected a size like 500MB"),
    Threshold("memory-bare-fraction", ["--memory", "0.5"], 3, "'0.5' needs a unit"),
    Threshold("memory-w-exponent", ["-w", "memory=1e3"], 3, "expected a size like 500MB"),
    Threshold("w-sets-warnings", ["-w", "disk=100", *QUIET], 1, "(warning: less than 100%)"),
    Threshold("w-inside", ["-w", "cpu=@0:100", *QUIET], 1, "(warning: between 0% and 100%)"),
    Threshold(
        "c-sets-critical", ["-c", "cpu=100,disk=0,memory=1000TB"], 2, "(less than 1048576000MB)"
    ),
    Threshold("warning-equal-critical", ["-w", "disk=0", *QUIET], 0, "HEALTH OK - "),
    Threshold(
        "disk-path-flag-wins",
        ["--disk-path", "/", *QUIET],
        0,
        "disk / ",
        {"HEALTH_DISK_PATHS": "/no/such/mount"},
    ),
]


@pytest.mark.parametrize("case", THRESHOLDS, ids=[c.id for c in THRESHOLDS])
def test_thresholds(case: Threshold, tmp_path):
    result = plugin(tmp_path, "--nagios", "--no-email", *case.args, env=case.env)
    assert (result.returncode, case.says in result.stdout) == (case.status, True), result.stdout


@dataclass(frozen=True)
class Note:
    id: str
    state: str  # the state file's text before the run
    says: str
    env: dict[str, str] = field(default_factory=dict)


NOTES = [
    Note("state-not-json", "{x", "state file {tmp}/state.json is unusable ("),
    Note(
        "clock-went-back",
        '{"version":2,"checks":{"disk:/":{"since":1,"last_mailed":3000000000}},"slo":{},"saved":1}',
        "holds times after now (the clock went back): disk:/ last_mailed adjusted",
        {"HEALTH_NOW": "2000000000"},
    ),
]


@pytest.mark.parametrize("case", NOTES, ids=[c.id for c in NOTES])
@pytest.mark.parametrize("nagios", [True, False], ids=["nagios", "cron"])
def test_a_warning_joins_the_status_line_under_an_engine(case: Note, nagios, tmp_path):
    """Icinga 2 puts stderr first, where it would become the short output: with
    --nagios a warning is on the one status line, otherwise on stderr as before."""
    (tmp_path / "state.json").write_text(case.state)
    args = ["--nagios", *QUIET] if nagios else QUIET
    result = subprocess.run(
        [SCRIPT, *args, "--no-email"],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        env=environment(tmp_path, case.env),
        cwd=tmp_path,
    )
    says = case.says.replace("{tmp}", str(tmp_path))
    if nagios:
        assert LINE.fullmatch(result.stdout), result.stdout + result.stderr
        assert (result.stderr, says in result.stdout) == ("", True), result.stdout
    else:  # as cron runs it: nothing on stdout while all is well, the warning on stderr
        assert (result.stdout, says in result.stderr) == ("", True), result.stderr


def test_help_shows_w_and_c_with_examples():
    shown = subprocess.run([SCRIPT, "--help"], capture_output=True, text=True).stdout
    assert "-w cpu=70,disk=30,memory=1GB -c cpu=90,disk=10,memory=200MB" in shown
    assert "-c METRIC=RANGE,..., --critical METRIC=RANGE,..." in shown
    assert "-t SECONDS, --timeout SECONDS" in shown and "-V, --version" in shown


# -- 3. probes that say why, labels, query strings, the textfile agrees ------------------------


class PageHandler(BaseHTTPRequestHandler):
    """`mode` of the server: 'ok', '503', 'short' (promises more than it sends) or
    'slow' (answers after 3 s); `paths` collects each request's path and query."""

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        mode = self.server.mode
        if mode == "slow":
            self.server.release.wait(3)
        body = b"<html>fruit</html>"
        with contextlib.suppress(OSError):  # a probe that gave up (slow) has gone
            self.send_response(503 if mode == "503" else 200)
            self.send_header("Content-Length", str(len(body) * (10 if mode == "short" else 1)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def page():
    server = ThreadingHTTPServer(("127.0.0.1", 0), PageHandler)
    server.mode, server.paths, server.release = "ok", [], threading.Event()
    server.base = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


@dataclass(frozen=True)
class Probing:
    id: str
    mode: str  # the page's, or 'refused' for a port with nothing listening
    path: str
    settings: list[str]
    status: int
    says: str  # in the line, with {label} for the URL's label
    perf: str  # the URL's time in perfdata, a pattern


PROBES = [
    Probing("refused", "refused", "/", ["slo=off"], 2, "{label}: refused", r"=U;;2;0"),
    Probing("503", "503", "/", ["slo=off"], 2, "{label}: status 503", r"=U;;2;0"),
    Probing("short-page", "short", "/", ["slo=off"], 2, "{label}: short page (", r"=U;;2;0"),
    Probing("timed-out", "slow", "/", ["slo=off"], 2, "{label}: timed out", r"=U;;2;0"),
    Probing("good", "ok", "/", ["slo=off"], 0, "{label} answered in ", r"=[\d.]+s;;2;0"),
    Probing(
        "query-string",
        "ok",
        "/status?page=2&x=1",
        [],
        0,
        "{label} SLO 99%: 100.00%",
        r"=[\d.]+s;;2;0",
    ),
    Probing(
        "query-string-own-slo",
        "ok",
        "/status?page=2&x=1",
        ["slo=99.9", "label=status-page"],
        0,
        "status-page SLO 99.9%: 100.00% good",
        r"=[\d.]+s;;2;0",
    ),
    Probing(
        "fresh-install-refused",
        "refused",
        "/",
        [],
        2,
        "{label}: refused, SLO 99%: 0.00% good over 1 min so far, -9900% of its budget left",
        r"=U;;2;0",
    ),
]


@pytest.mark.parametrize("case", PROBES, ids=[c.id for c in PROBES])
def test_a_probe_says_why_it_failed_and_the_textfile_agrees(
    case: Probing, tmp_path, page, dead_port
):
    page.mode = case.mode
    base = f"http://127.0.0.1:{dead_port}" if case.mode == "refused" else page.base
    label = (
        "status-page"
        if "label=status-page" in case.settings
        else base[7:] + case.path.split("?")[0]
    )
    textfile = tmp_path / "health.prom"
    args = ["--nagios", "--no-email", "--url-timeout", "2", "--textfile", str(textfile)]
    result = plugin(tmp_path, *args, *QUIET, "--url", base + case.path, *case.settings)
    assert result.returncode == case.status, result.stdout
    assert case.says.format(label=label) in result.stdout
    assert re.search(re.escape(f"'url {label}'") + case.perf, result.stdout)
    if case.mode == "ok":
        assert page.paths == [case.path]  # the query string went to the page as given
    ok = re.search(
        rf'health_check_ok{{check="url:{re.escape(label)}"}} (\S+)', textfile.read_text()
    )
    assert ok and float(ok.group(1)) == (0.0 if case.status == 2 else 1.0)
    seconds = f'health_url_response_seconds{{url="{label}"}}'
    assert (seconds in textfile.read_text()) == (case.mode == "ok")


def test_the_variable_holds_the_same_words_and_flags_replace_it(tmp_path, page):
    words = f"{page.base}/status?page=2&x=1 slo=off label=st {page.base}/"
    args = ["--nagios", "--no-email", *QUIET]
    from_env = plugin(tmp_path, *args, env={"HEALTH_URLS": words})
    assert "st answered in " in from_env.stdout
    assert f"{page.base[7:]}/ SLO 99%: 100.00% good" in from_env.stdout
    from_flag = plugin(tmp_path, *args, "--url", f"{page.base}/x", env={"HEALTH_URLS": words})
    assert "'url st'" not in from_flag.stdout and f"'url {page.base[7:]}/x'" in from_flag.stdout
    assert sorted(page.paths) == ["/", "/status?page=2&x=1", "/x"]


def test_a_fresh_install_mails_what_happened_first_and_what_its_budget_means(
    tmp_path, smtp_env, dead_port
):
    url = f"http://127.0.0.1:{dead_port}/"
    result = plugin(tmp_path, "--nagios", *QUIET, "--url-timeout", "2", "--url", url)
    assert result.returncode == 2
    [message] = smtp_env.messages()
    body = message_from_bytes(message.read_bytes(), policy=policy.default).get_content()
    assert body.index(f"Measured: {url}: refused (this run's probe)") < body.index("SLO 99% over")
    assert "error budget  0.01 min; spent 1.0 min; left -0.99 min (-9900.0%)" in body
    assert "the budget grows with the time covered: 1 min x 1% = 0.01 min" in body


# -- 4. nothing of a URL but scheme, host, port and path is written ---------------------------

TOKEN, PASSWORD = "TOK3n5ecret", "pa55word"


@dataclass(frozen=True)
class Secret:
    id: str
    mode: str  # the page's
    args: list[str]
    old_state: bool = False  # a state as 2.0.0 wrote it, the token in its keys


SECRETS = [
    Secret("nagios-textfile", "ok", ["--nagios", "--no-email", "--textfile", "{tmp}/h.prom"]),
    Secret("failing-mailed", "503", ["--nagios", "--textfile", "{tmp}/h.prom"]),
    Secret("failing-slo-off-mailed", "503", ["--nagios", "slo=off"]),
    Secret("short-page-verbose", "short", ["--nagios", "--no-email", "-v"]),
    Secret("report", "ok", ["--slo-report"]),
    Secret("old-state-relabelled", "ok", ["--nagios", "--no-email"], old_state=True),
    Secret("bad-url", "ok", ["--nagios", "--url", f"http://u:{PASSWORD}@h:99999/?token={TOKEN}"]),
    Secret("timed-out", "slow", ["--nagios", "--url-timeout", "1", "-t", "4"]),
]


@pytest.mark.parametrize("case", SECRETS, ids=[c.id for c in SECRETS])
def test_no_token_or_password_is_written_anywhere(case: Secret, tmp_path, page, smtp_env):
    page.mode = case.mode
    url = f"http://bob:{PASSWORD}@{page.base[7:]}/status?page=2&token={TOKEN}"
    state = tmp_path / "state.json"
    if case.old_state:
        old = {"start": 60, "minutes": [], "hours": [], "probes": 1, "good": 1, "slo": 0.99}
        state.write_text(
            json.dumps(
                {
                    "version": 2,
                    "saved": 60,
                    "checks": {f"slo:{url}": {"since": 60, "last_mailed": 60}},
                    "slo": {url.replace(f"bob:{PASSWORD}", "***"): old},
                }
            )
        )
    args = [a.replace("{tmp}", str(tmp_path)) for a in case.args]
    first = args.index("slo=off") if "slo=off" in args else len(args)
    command = [SCRIPT, *QUIET, "--url", url, *args[first:], *args[:first]]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        env=environment(tmp_path, {}),
        cwd=tmp_path,
    )
    files = [p.read_bytes().decode(errors="replace") for p in tmp_path.rglob("*") if p.is_file()]
    mails = [  # decoded: a soft line break could split the token in the raw text
        message_from_bytes(m.read_bytes(), policy=policy.default).get_content()
        + str(message_from_bytes(m.read_bytes(), policy=policy.default)["Subject"])
        for m in smtp_env.messages()
    ]
    written = [result.stdout, result.stderr, *files, *mails]
    assert result.returncode in (0, 1, 2, 3) and result.stdout, result.stderr
    assert all(TOKEN not in text and PASSWORD not in text for text in written), written
    if case.mode == "503":  # the mail went out, naming the URL by what may be shown
        assert mails and all(f"{page.base}/status" in m for m in mails)
    if case.mode == "ok" and case.id != "bad-url":
        assert page.paths in ([], [f"/status?page=2&token={TOKEN}"])  # sent, never written
    if case.old_state:
        saved = json.loads(state.read_text())
        assert list(saved["slo"]) == [f"{page.base[7:]}/status"]
        assert list(saved["checks"]) in ([], [f"url:{page.base[7:]}/status"])


# -- 5. graceful degradation: each check on its own --------------------------------------------


def subjects_of(catcher) -> list[str]:
    return sorted(
        str(message_from_bytes(m.read_bytes(), policy=policy.default)["Subject"])
        for m in catcher.messages()
    )


@dataclass(frozen=True)
class Degraded:
    id: str
    memory: str  # the CRITICAL memory threshold
    status: int
    says: list[str]  # in the line, {tmp} for the test's folder
    subjects: list[str]


GONE = "Disk space of {tmp}/unmounted cannot be measured"
DEGRADED = [
    Degraded(
        "unmounted-and-memory-failing",
        "1000TB",
        2,
        ["HEALTH CRITICAL - memory ", "(less than 1048576000MB). " + GONE + ": No such file"],
        ["Error - Available memory is less than 1048576000MB", "Error - " + GONE],
    ),
    Degraded("unmounted-alone", "0", 3, ["HEALTH UNKNOWN - " + GONE], ["Error - " + GONE]),
]


@pytest.mark.parametrize("case", DEGRADED, ids=[c.id for c in DEGRADED])
def test_a_check_that_cannot_measure_is_unknown_for_itself(case: Degraded, tmp_path, smtp_env):
    textfile = tmp_path / "h.prom"
    args = ["--nagios", "--textfile", str(textfile), "--disk-path", "/"]
    thresholds = ["-c", f"cpu=100,disk=0,memory={case.memory}"]
    result = plugin(tmp_path, *args, "--disk-path", "{tmp}/unmounted", *thresholds)
    assert result.returncode == case.status
    for text in case.says:
        assert text.replace("{tmp}", str(tmp_path)) in result.stdout
    assert f"'disk_free {tmp_path}/unmounted'=U" in result.stdout
    assert "disk_free=" in result.stdout  # the mounted disk still measured
    expected = sorted(s.replace("{tmp}", str(tmp_path)) for s in case.subjects)
    assert subjects_of(smtp_env) == expected
    prom = textfile.read_text()
    gone = f'check="disk:{tmp_path}/unmounted"'
    assert f"health_check_measured{{{gone}}} 0.0" in prom
    assert f"health_check_ok{{{gone}}}" not in prom
    memory_ok = "0.0" if case.status == 2 else "1.0"
    assert f'health_check_ok{{check="memory"}} {memory_ok}' in prom


def test_the_others_recover_as_usual_while_one_cannot_measure(tmp_path, smtp_env):
    def run(memory: str, at: int):
        args = [
            "--nagios",
            "--disk-path",
            "{tmp}/unmounted",
            "-c",
            f"cpu=100,disk=0,memory={memory}",
        ]
        return plugin(tmp_path, *args, env={"HEALTH_NOW": str(at)})

    assert run("1000TB", 1_000_000).returncode == 2
    assert run("0", 1_000_060).returncode == 3
    gone = GONE.replace("{tmp}", str(tmp_path))
    assert subjects_of(smtp_env) == sorted(
        [
            "Error - Available memory is less than 1048576000MB",
            f"Error - {gone}",
            "Recovered - Available memory is no longer less than 1048576000MB",  # as mailed
        ]
    )
    (tmp_path / "unmounted").mkdir()
    assert run("0", 1_000_120).returncode == 0
    recovered = f"Recovered - Disk space of {tmp_path}/unmounted can be measured again"
    assert subjects_of(smtp_env)[-1] == recovered


# -- 6. cgroups: the limits this process lives under -------------------------------------------

V2 = {
    "proc/self/cgroup": "0::/app.slice/shop.service\n",
    "sys/fs/cgroup/cgroup.controllers": "cpu memory pids\n",
}
V2_OWN = "sys/fs/cgroup/app.slice/shop.service/"
V2_LIMITED = {
    **V2,
    V2_OWN + "memory.max": "268435456\n",
    V2_OWN + "memory.current": "104857600\n",
    V2_OWN + "memory.stat": "anon 100663296\ninactive_file 4194304\n",
    V2_OWN + "cpu.max": "50000 100000\n",
    V2_OWN + "cpu.stat": "usage_usec 1000\nuser_usec 800\n",
}
V1 = {"proc/self/cgroup": "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/\n"}
V1_MEMORY, V1_CPU = "sys/fs/cgroup/memory/docker/abc/", "sys/fs/cgroup/cpu,cpuacct/docker/abc/"
V1_LIMITED = {
    **V1,
    V1_MEMORY + "memory.limit_in_bytes": "268435456\n",
    V1_MEMORY + "memory.usage_in_bytes": "104857600\n",
    V1_MEMORY + "memory.stat": "cache 8388608\ntotal_inactive_file 4194304\n",
    V1_CPU + "cpu.cfs_quota_us": "150000\n",
    V1_CPU + "cpu.cfs_period_us": "100000\n",
    V1_CPU + "cpuacct.usage": "5000000\n",
}


@dataclass(frozen=True)
class Tree:
    id: str
    files: dict[str, str]  # under the fake root
    memory: str  # the CRITICAL memory threshold
    status: int
    says: list[str]


MEMORY_UNREADABLE = (
    "Available memory cannot be measured: the limit is set in cgroup v2 /app.slice/shop.service"
    " (limit 256MB), but memory.current or memory.stat cannot be read"
)
CGROUPS = [
    Tree(
        "v2-limited",
        V2_LIMITED,
        "0",
        0,
        [
            "CPU 0% of cgroup v2 /app.slice/shop.service (0.5 CPUs)",
            "memory 160 MB available in cgroup v2 /app.slice/shop.service (limit 256MB)",
            "mem_available=167772160B;;;0;268435456",
        ],
    ),
    Tree(
        "v2-memory-low",
        V2_LIMITED,
        "200MB",
        2,
        [
            "HEALTH CRITICAL - memory 160 MB available in cgroup v2 /app.slice/shop.service"
            " (limit 256MB) (less than 200MB)"
        ],
    ),
    Tree(
        "v2-parent-limit",
        {
            **V2_LIMITED,
            V2_OWN + "memory.max": "max\n",
            "sys/fs/cgroup/app.slice/memory.max": "134217728\n",
        },
        "0",
        0,
        ["memory 32 MB available in cgroup v2 /app.slice/shop.service (limit 128MB)"],
    ),
    Tree(
        "v2-unlimited",
        {**V2_LIMITED, V2_OWN + "memory.max": "max\n", V2_OWN + "cpu.max": "max 100000\n"},
        "0",
        0,
        ["CPU ", "% of the host.", " MB available on the host."],
    ),
    Tree(
        "v1-limited",
        V1_LIMITED,
        "0",
        0,
        [
            "CPU 0% of cgroup v1 /docker/abc (1.5 CPUs)",
            "memory 160 MB available in cgroup v1 /docker/abc (limit 256MB)",
        ],
    ),
    Tree(
        "v1-unlimited",
        {
            **V1_LIMITED,
            V1_MEMORY + "memory.limit_in_bytes": "9223372036854771712\n",
            V1_CPU + "cpu.cfs_quota_us": "-1\n",
        },
        "0",
        0,
        ["% of the host.", " MB available on the host."],
    ),
    Tree(
        "v1-container-sees-its-cgroup-as-root",
        {
            **V1,
            "sys/fs/cgroup/memory/memory.limit_in_bytes": "268435456\n",
            "sys/fs/cgroup/memory/memory.usage_in_bytes": "104857600\n",
            "sys/fs/cgroup/memory/memory.stat": "total_inactive_file 0\n",
        },
        "0",
        0,
        ["memory 156 MB available in cgroup v1 /docker/abc (limit 256MB)", "% of the host."],
    ),
    Tree(
        "v1-zero-period-is-the-host",
        {**V1_LIMITED, V1_CPU + "cpu.cfs_period_us": "0\n"},
        "0",
        0,
        ["% of the host.", "MB available in cgroup v1 /docker/abc (limit 256MB)"],
    ),
    Tree("no-cgroup-files", {}, "0", 0, ["% of the host.", " MB available on the host."]),
    # "No limit" in every spelling a kernel or a runtime writes is no limit, never 0 MB.
    Tree(
        "v2-minus-one-is-no-limit",
        {**V2_LIMITED, V2_OWN + "memory.max": "-1\n", V2_OWN + "cpu.max": "-1 100000\n"},
        "0",
        0,
        ["% of the host.", " MB available on the host."],
    ),
    Tree(
        "v2-lone-max-is-no-limit",
        {**V2_LIMITED, V2_OWN + "memory.max": "max\n", V2_OWN + "cpu.max": "max\n"},
        "0",
        0,
        ["% of the host.", " MB available on the host."],
    ),
    Tree(
        "v1-64k-page-rounded-is-no-limit",
        {
            **V1_LIMITED,
            V1_MEMORY + "memory.limit_in_bytes": "9223372036854710272\n",
            V1_CPU + "cpu.cfs_quota_us": "-1\n",
        },
        "0",
        0,
        ["% of the host.", " MB available on the host."],
    ),
    Tree(
        "v1-2-to-63-minus-1-is-no-limit",
        {**V1_LIMITED, V1_MEMORY + "memory.limit_in_bytes": "9223372036854775807\n"},
        "0",
        0,
        [" MB available on the host.", "of cgroup v1 /docker/abc (1.5 CPUs)"],
    ),
    Tree(
        "v2-parent-no-limit-own-limit",
        {**V2_LIMITED, "sys/fs/cgroup/app.slice/memory.max": "-1\n"},
        "0",
        0,
        ["memory 160 MB available in cgroup v2 /app.slice/shop.service (limit 256MB)"],
    ),
    # A limit whose usage cannot be read is UNKNOWN for its check: against the host's,
    # a container about to be killed would pass.
    Tree(
        "v2-memory-current-garbage",
        {**V2_LIMITED, V2_OWN + "memory.current": "lots\n"},
        "0",
        3,
        [MEMORY_UNREADABLE, "mem_available=U"],
    ),
    Tree(
        "v2-memory-stat-missing",
        {k: v for k, v in V2_LIMITED.items() if not k.endswith("memory.stat")},
        "0",
        3,
        [MEMORY_UNREADABLE],
    ),
    Tree(
        "v1-memory-usage-garbage",
        {**V1_LIMITED, V1_MEMORY + "memory.usage_in_bytes": "\n"},
        "0",
        3,
        ["but memory.usage_in_bytes or memory.stat cannot be read"],
    ),
    Tree(
        "v2-cpu-stat-without-usage",
        {**V2_LIMITED, V2_OWN + "cpu.stat": "user_usec 800\n"},
        "0",
        3,
        [
            "CPU usage cannot be measured: the limit is set in cgroup v2"
            " /app.slice/shop.service, but its CPU usage cannot be read",
            "cpu=U",
        ],
    ),
    Tree(
        "v1-cpuacct-garbage",
        {**V1_LIMITED, V1_CPU + "cpuacct.usage": "soon\n"},
        "0",
        3,
        ["CPU usage cannot be measured: the limit is set in cgroup v1 /docker/abc"],
    ),
    # A quota or period of 0 or less is no limit (the kernel writes none such).
    Tree(
        "v2-negative-quota-is-the-host",
        {**V2_LIMITED, V2_OWN + "cpu.max": "-5 100000\n"},
        "0",
        0,
        ["% of the host."],
    ),
    Tree(
        "v2-zero-quota-is-the-host",
        {**V2_LIMITED, V2_OWN + "cpu.max": "0 100000\n"},
        "0",
        0,
        ["% of the host."],
    ),
    Tree(
        "v2-zero-period-is-the-host",
        {**V2_LIMITED, V2_OWN + "cpu.max": "50000 0\n"},
        "0",
        0,
        ["% of the host."],
    ),
    Tree(
        "v1-negative-period-is-the-host",
        {**V1_LIMITED, V1_CPU + "cpu.cfs_period_us": "-100000\n"},
        "0",
        0,
        ["% of the host."],
    ),
    Tree(
        "garbage-is-the-host",
        {**V2_LIMITED, V2_OWN + "memory.max": "lots\n", V2_OWN + "cpu.max": "half\n"},
        "0",
        0,
        ["% of the host.", " MB available on the host."],
    ),
]


@pytest.mark.parametrize("case", CGROUPS, ids=[c.id for c in CGROUPS])
def test_memory_and_cpu_are_measured_against_the_cgroup_limits(case: Tree, tmp_path):
    """A fake root laid out as the kernel shows cgroups (HEALTH_CGROUP_ROOT, for tests):
    the check reads these files, so this tests its parsing and arithmetic honestly."""
    root = tmp_path / "root"
    for name, text in case.files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    root.mkdir(exist_ok=True)
    args = ["--nagios", "--no-email", "-c", f"cpu=100,disk=0,memory={case.memory}"]
    result = plugin(tmp_path, *args, env={"HEALTH_CGROUP_ROOT": str(root)})
    assert result.returncode == case.status, result.stdout
    for text in case.says:
        assert text in result.stdout


@pytest.fixture
def real_cgroup():
    """A cgroup of this machine made for the test: 256 MB and 0.5 CPUs (v2 when
    /sys/fs/cgroup is the unified hierarchy with those controllers, else v1).
    Yields (version, name, the cgroup.procs files to join); skips with the reason
    when the machine does not allow making one (no root, read-only cgroupfs)."""
    mount = Path("/sys/fs/cgroup")
    name = f"health-test-{os.getpid()}-{threading.get_ident()}"
    controllers = mount / "cgroup.controllers"
    v2 = controllers.is_file() and {"memory", "cpu"} <= set(controllers.read_text().split())
    made: list[Path] = []
    try:
        if v2:
            (mount / "cgroup.subtree_control").write_text("+memory +cpu")
            made.append(mount / name)
            made[0].mkdir()
            (made[0] / "memory.max").write_text("268435456")
            (made[0] / "cpu.max").write_text("50000 100000")
        else:
            for controller in ("memory", "cpu", "cpuacct"):
                made.append(mount / controller / name)
                made[-1].mkdir()
            (made[0] / "memory.limit_in_bytes").write_text("268435456")
            (made[1] / "cpu.cfs_period_us").write_text("100000")
            (made[1] / "cpu.cfs_quota_us").write_text("50000")
    except OSError as error:
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()
        pytest.skip(f"this machine does not allow making a cgroup ({error})")
    yield (2 if v2 else 1), f"/{name}", [folder / "cgroup.procs" for folder in made]
    for folder in reversed(made):
        folder.rmdir()


def test_under_a_real_cgroup_the_check_measures_its_limits(tmp_path, real_cgroup):
    version, name, procs = real_cgroup
    join = " ".join(f"echo $$ > {p} || exit 99;" for p in procs)
    args = ["--nagios", "--no-email", "--state", str(tmp_path / "s.json"), *QUIET]
    result = subprocess.run(
        ["sh", "-c", f'{join} exec "$0" "$@"', SCRIPT, *args],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        env=environment(tmp_path, {}),
    )
    if result.returncode == 99:
        pytest.skip(f"cannot move a process into the cgroup: {result.stderr.strip()}")
    assert LINE.fullmatch(result.stdout), result.stdout + result.stderr
    assert f"of cgroup v{version} {name} (0.5 CPUs)" in result.stdout
    assert f"MB available in cgroup v{version} {name} (limit 256MB)" in result.stdout
    available = int(re.search(r"mem_available=(\d+)B", result.stdout).group(1))
    assert 0 < available <= 256 * 1024**2
