"""health_check.py: real checks on this machine, real mail through the catcher."""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helper import mails, subjects
from prometheus_client.parser import text_string_to_metric_families

import health_check as hc

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "health_check.py"
PASSING = ["--cpu", "100", "--disk", "0", "--memory", "0"]
DISK_FAILS = ["--cpu", "100", "--disk", "100", "--memory", "0"]
HANG_GUARD = 60  # seconds: a subprocess still running then has hung
RANGE = r"@?(?:~|-?[\d.]+)?:?(?:-?[\d.]+)?"
PERFDATA = re.compile(
    rf"(?:'[^'=]+'|[^'= ]+)=-?[\d.]+(?:%|B|s)?(?:;{RANGE}){{0,2}}(?:;-?[\d.]*){{0,2}}"
)


@pytest.fixture(autouse=True)
def user_and_state(monkeypatch, tmp_path):
    # In-process runs sample the CPU for 0.2 s; subprocess runs keep the real 1 s.
    monkeypatch.setattr(hc, "CPU_INTERVAL", 0.2)
    monkeypatch.setenv("USER", "alice")
    monkeypatch.setenv("HEALTH_STATE", str(tmp_path / "default-state" / "state.json"))
    for name in list(os.environ):
        if name.startswith("HEALTH_") and name != "HEALTH_STATE":
            monkeypatch.delenv(name)


@pytest.fixture
def state(tmp_path) -> Path:
    return tmp_path / "cache" / "state.json"


def check(state: Path, *args: str, at: float = 1_000_000.0) -> int:
    return hc.main(["--state", str(state), *args], clock=lambda: at)


def run(*args: str, **options) -> subprocess.CompletedProcess:
    """The script as cron runs it, under a hang guard."""
    return subprocess.run(
        [SCRIPT, *args], capture_output=True, text=True, timeout=HANG_GUARD, **options
    )


# -- the lab's subjects, ranges ---------------------------------------------------------------


def test_subjects_with_the_default_thresholds():
    limits = hc.Limits()
    assert hc.evaluate(hc.cpu_metric(93, limits)).problem == "CPU usage is over 80%"
    assert (
        hc.evaluate(hc.disk_metric("/", 10, 100, limits)).problem
        == "Available disk space is less than 20%"
    )
    assert (
        hc.evaluate(hc.memory_metric(100 * hc.MB, limits)).problem
        == "Available memory is less than 500MB"
    )
    assert (
        hc.evaluate_resolution("localhost", "127.0.0.1", None).problem
        == "localhost cannot be resolved to 127.0.0.1"
    )


@pytest.mark.parametrize(
    "text, plain_is_minimum, alerting, quiet, perfdata",
    [
        ("80", False, [80.1, -1], [0, 80], "80"),
        ("20", True, [19.9], [20, 100], "20:"),
        ("10:", False, [9.9], [10, 100], "10:"),
        ("~:20", False, [20.1], [-50, 20], "~:20"),
        ("10:20", False, [9, 21], [10, 20], "10:20"),
        ("@10:20", False, [10, 15, 20], [9.9, 20.1], "@10:20"),
        ("@20", True, [0, 20], [20.1], "@20"),
    ],
)
def test_monitoring_plugins_ranges(text, plain_is_minimum, alerting, quiet, perfdata):
    limit = hc.range_type(hc.percent_value, plain_is_minimum)(text)
    assert [limit.alerts(v) for v in alerting] == [True] * len(alerting)
    assert [limit.alerts(v) for v in quiet] == [False] * len(quiet)
    assert limit.perf() == perfdata


@pytest.mark.parametrize(
    "value, status",
    [(80.1, hc.CRITICAL), (80.0, hc.WARNING), (70.1, hc.WARNING), (70.0, hc.OK)],
)
def test_cpu_evaluation_edges(value, status):
    limits = hc.Limits(cpu_warning=hc.Range(0, 70))
    assert hc.evaluate(hc.cpu_metric(value, limits)).status == status


def test_disk_ratio_is_free_over_total():
    result = hc.evaluate(hc.disk_metric("/", 19, 100, hc.Limits()))
    assert result.status == hc.CRITICAL and result.perf == ["disk_free=19%;;20:;0;100"]
    assert hc.evaluate(hc.disk_metric("/", 20, 100, hc.Limits())).status == hc.OK


WARN_CPU_70 = hc.Limits(cpu_warning=hc.Range(0, 70))
# Each metric is a row evaluated by the one function: (row, status, line words, perfdata).
METRIC_ROWS = [
    pytest.param(
        hc.cpu_metric(93, hc.Limits()),
        hc.CRITICAL,
        "CPU 93% of the host (over 80%)",
        "cpu=93%;;80;0;100",
        id="cpu-critical",
    ),
    pytest.param(
        hc.cpu_metric(75, WARN_CPU_70, "cgroup v2 /x (0.5 CPUs)"),
        hc.WARNING,
        "CPU 75% of cgroup v2 /x (0.5 CPUs) (warning: over 70%)",
        "cpu=75%;70;80;0;100",
        id="cpu-warning-in-a-cgroup",
    ),
    pytest.param(
        hc.disk_metric("/data", 10, 100, hc.Limits()),
        hc.CRITICAL,
        "disk /data 10% free (less than 20% on /data)",
        "'disk_free /data'=10%;;20:;0;100",
        id="disk-elsewhere",
    ),
    pytest.param(
        hc.memory_metric(100 * hc.MB, hc.Limits(), "in cgroup v2 /x (limit 256MB)", 256 * hc.MB),
        hc.CRITICAL,
        "memory 100 MB available in cgroup v2 /x (limit 256MB) (less than 500MB)",
        "mem_available=104857600B;;524288000:;0;268435456",
        id="memory-in-a-cgroup",
    ),
    pytest.param(
        hc.memory_metric(1024 * hc.MB, hc.Limits()),
        hc.OK,
        "memory 1024 MB available on the host",
        "mem_available=1073741824B;;524288000:;0",
        id="memory-ok",
    ),
]


@pytest.mark.parametrize("metric, status, summary, perfdata", METRIC_ROWS)
def test_one_function_evaluates_every_metric_row(metric, status, summary, perfdata):
    result = hc.evaluate(metric)
    assert (result.key, result.status, result.summary) == (metric.key, status, summary)
    assert result.perf == [perfdata]
    assert result.detail.startswith(f"Measured: {metric.noun.lower()} {metric.measured}; alert")


def test_memory_sizes_use_binary_megabytes():
    assert hc.size_value("500MB") == 500 * 1024**2
    assert hc.size_value("1.5GB") == int(1.5 * 1024**3)
    assert hc.size_value("500") == 500 * 1024**2
    memory = hc.range_type(hc.size_value, plain_is_minimum=True)("500MB")
    assert memory == hc.Range(500 * hc.MB, math.inf)


# -- each check fails and passes for real -----------------------------------------------------


def test_a_healthy_run_prints_nothing_and_exits_0(smtp_env, state):
    result = run("--state", str(state), *PASSING)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert mails(smtp_env) == []


def test_failing_disk_mails_the_lab_alert_with_host_measure_and_time(smtp_env, state):
    assert check(state, *DISK_FAILS, at=1_764_150_000) == hc.CRITICAL
    [mail] = mails(smtp_env)
    assert mail["From"] == "automation@example.com"
    assert mail["To"] == "alice@example.com"
    assert mail["Subject"] == "Error - Available disk space is less than 100%"
    assert not mail.is_multipart()
    lines = mail.get_content().splitlines()
    assert lines[0] == hc.ALERT_BODY
    assert f"Host: {socket.gethostname()}" in lines
    [measured] = [line for line in lines if line.startswith("Measured: ")]
    assert re.fullmatch(
        r"Measured: available disk space \d+% of / \(.*\); alert when less than 100%", measured
    )
    assert "When: 2025-11-26 09:40:00 UTC" in lines


def test_the_sender_comes_from_the_flag_or_the_environment(smtp_env, state, monkeypatch):
    monkeypatch.setenv("HEALTH_SENDER", "ops@example.org")
    check(state, *DISK_FAILS, "--resolve-address", "127.0.0.2")
    assert {m["From"] for m in mails(smtp_env)} == {"ops@example.org"}
    check(state.with_name("other.json"), *DISK_FAILS, "--sender", "flag@example.org")
    assert mails(smtp_env)[-1]["From"] == "flag@example.org"


def test_failing_cpu_under_load(smtp_env, state):
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        assert check(state, "--cpu", "5", "--disk", "0", "--memory", "0") == hc.CRITICAL
    finally:
        burner.kill()
        burner.wait()
    assert subjects(smtp_env) == ["Error - CPU usage is over 5%"]


def test_failing_memory(smtp_env, state):
    assert check(state, "--cpu", "100", "--disk", "0", "--memory", "100000GB") == hc.CRITICAL
    assert subjects(smtp_env) == ["Error - Available memory is less than 102400000MB"]


def test_localhost_resolving_elsewhere(smtp_env, state):
    assert check(state, *PASSING, "--resolve-address", "127.0.0.2") == hc.CRITICAL
    assert subjects(smtp_env) == ["Error - localhost cannot be resolved to 127.0.0.2"]


def test_a_name_that_does_not_resolve(smtp_env, state):
    assert check(state, *PASSING, "--resolve-host", "no-such-host.invalid") == hc.CRITICAL
    assert subjects(smtp_env) == ["Error - no-such-host.invalid cannot be resolved to 127.0.0.1"]


def test_url_without_an_slo_alerts_on_a_bad_probe(smtp_env, state, store, dead_port):
    assert check(state, *PASSING, "--url", store.url, "slo=off") == hc.OK
    dead = f"http://127.0.0.1:{dead_port}/"
    assert check(state, *PASSING, "--url", store.url, "--url", dead, "slo=off") == hc.CRITICAL
    assert subjects(smtp_env) == [f"Error - {dead} did not answer 200 within 10 seconds"]
    assert f"Measured: {dead}: refused; expected HTTP 200" in mails(smtp_env)[0].get_content()


def test_several_failing_checks_mail_one_each(smtp_env, state):
    args = ["--cpu", "100", "--disk", "100", "--memory", "100000GB"]
    assert check(state, *args, "--resolve-address", "127.0.0.2") == hc.CRITICAL
    assert len(mails(smtp_env)) == 3


# -- no alert storm ---------------------------------------------------------------------------


def test_second_failing_run_is_quiet_then_reminds_then_recovers(smtp_env, state):
    assert check(state, *DISK_FAILS, at=1000) == hc.CRITICAL
    assert check(state, *DISK_FAILS, at=1060) == hc.CRITICAL
    assert len(mails(smtp_env)) == 1
    assert check(state, *DISK_FAILS, "--remind", "60", at=1000 + 3599) == hc.CRITICAL
    assert len(mails(smtp_env)) == 1
    assert check(state, *DISK_FAILS, "--remind", "60", at=1000 + 3600) == hc.CRITICAL
    assert subjects(smtp_env)[1] == "Error - Available disk space is less than 100%"
    assert check(state, *PASSING, at=5000) == hc.OK  # the disk "recovers" under --disk 0
    recovered = mails(smtp_env)[2]
    assert (
        recovered["Subject"] == "Recovered - Available disk space is no longer less than 100%"
    )  # as mailed
    assert recovered.get_content().splitlines()[0] == hc.RECOVERY_BODY
    assert check(state, *PASSING, at=5060) == hc.OK
    assert len(mails(smtp_env)) == 3


def test_a_recovery_mail_that_failed_is_sent_on_the_next_run(
    smtp_env, state, monkeypatch, dead_port, capsys
):
    assert check(state, *DISK_FAILS, at=1000) == hc.CRITICAL
    monkeypatch.setenv("SMTP_PORT", str(dead_port))
    assert check(state, *PASSING, at=1060) == hc.UNKNOWN
    assert "connection refused" in capsys.readouterr().out
    monkeypatch.setenv("SMTP_PORT", str(smtp_env.port))
    assert check(state, *PASSING, at=1120) == hc.OK
    assert subjects(smtp_env) == [
        "Error - Available disk space is less than 100%",
        "Recovered - Available disk space is no longer less than 100%",  # the alert it answers
    ]


def test_verbose_says_what_was_mailed_and_what_is_held_back(smtp_env, state, caplog):
    caplog.set_level(logging.DEBUG, logger="health_check")
    check(state, *DISK_FAILS, "-v", at=1000)
    check(state, *DISK_FAILS, "-v", at=1060)
    said = [r.getMessage() for r in caplog.records if r.name == "health_check"]
    subject = "Error - Available disk space is less than 100%"
    assert f"mailed {subject!r} to {mails(smtp_env)[0]['To']}" in said
    assert f"not mailed again: '{subject}' already went out; a reminder after --remind" in (
        " ".join(said)
    )


def test_every_run_mails_each_failing_run(smtp_env, state):
    for minute in range(3):
        check(state, *DISK_FAILS, "--every-run", at=1000 + 60 * minute)
    assert len(mails(smtp_env)) == 3


def test_smtp_down_fails_the_run_and_the_next_run_mails(
    state, monkeypatch, catcher_factory, dead_port
):
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(dead_port))
    assert check(state, *DISK_FAILS, at=1000) == hc.UNKNOWN
    catcher = catcher_factory()
    monkeypatch.setenv("SMTP_PORT", str(catcher.port))
    assert check(state, *DISK_FAILS, at=1060) == hc.CRITICAL
    assert subjects(catcher) == ["Error - Available disk space is less than 100%"]


def test_a_state_that_cannot_be_saved_alerts_once_per_reminder(smtp_env, tmp_path, capsys):
    """The state path is a folder: loads fail, saves fail, the lock beside it works."""
    state = tmp_path / "cache" / "state.json"
    state.mkdir(parents=True)
    assert check(state, *DISK_FAILS, at=1000) == hc.UNKNOWN
    out = capsys.readouterr().out
    assert out.startswith(f"HEALTH UNKNOWN - cannot save the state file {state}")
    assert "at most once per --remind" in out
    assert check(state, *DISK_FAILS, at=1060) == hc.UNKNOWN
    assert check(state, *DISK_FAILS, at=1000 + 3599) == hc.UNKNOWN
    assert len(mails(smtp_env)) == 1
    assert check(state, *DISK_FAILS, at=1000 + 3600) == hc.UNKNOWN
    assert len(mails(smtp_env)) == 2


def test_a_full_disk_alerts_once_through_the_lock_files_time(smtp_env, state):
    """A real refused write: the file size limit stands in for a full disk."""
    assert check(state, *PASSING, at=1000) == hc.OK
    saved = state.read_bytes()

    def full_disk() -> None:
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))

    for minute in (1, 2, 3):
        env = {**os.environ, "HEALTH_NOW": str(1000 + 60 * minute)}
        result = run("--state", str(state), *DISK_FAILS, env=env, preexec_fn=full_disk)
        assert result.returncode == 3, result.stdout
        assert "cannot save the state file" in result.stdout
        assert "Traceback" not in result.stderr
    assert state.read_bytes() == saved
    assert subjects(smtp_env) == ["Error - Available disk space is less than 100%"]


# -- the run's time is bounded ----------------------------------------------------------------


def test_a_trickling_smtp_server_cannot_hold_the_run(state, trickling_server):
    port = trickling_server(b"220-trickle ")
    env = {**os.environ, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port)}
    result = run("--state", str(state), "-t", "4", *DISK_FAILS, env=env)
    assert result.returncode == 3
    assert "timed out after 4 s while sending mail through 127.0.0.1" in result.stdout
    remembered = json.loads(state.read_text())["checks"]
    assert all(entry["last_mailed"] is None for entry in remembered.values())


def test_a_trickling_page_is_a_bad_probe_within_the_url_timeout(smtp_env, state, trickling_server):
    port = trickling_server(b"HTTP/1.0 200 OK\r\nX-Slow: ")
    url = f"http://127.0.0.1:{port}/"
    result = run(
        "--state",
        str(state),
        "-t",
        "8",
        "--url-timeout",
        "3",
        "--nagios",
        *PASSING,
        "--url",
        url,
        "slo=off",
    )
    assert result.returncode == 2, result.stdout
    assert f"{url.removeprefix('http://')}: timed out (no whole answer within 3 s)" in result.stdout
    assert subjects(smtp_env) == [f"Error - {url} did not answer 200 within 3 seconds"]


def test_the_run_budget_names_the_stage_that_ran_out(state, trickling_server, capsys):
    port = trickling_server(b"HTTP/1.0 200 OK\r\nX-Slow: ")
    url = f"http://127.0.0.1:{port}/"
    assert check(state, "--no-email", "-t", "2", "--url-timeout", "1.9", "--url", url) == hc.UNKNOWN
    assert (
        capsys.readouterr().out
        == f"HEALTH UNKNOWN - timed out after 2 s while probing 127.0.0.1:{port}/ (-t/--timeout)\n"
    )


def test_a_held_lock_is_waited_for_a_bounded_time(smtp_env, state):
    state.parent.mkdir(parents=True)
    with open(state.with_name("state.json.lock"), "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = run("--state", str(state), *DISK_FAILS)
    assert result.returncode == 3
    assert result.stdout.startswith("HEALTH UNKNOWN - another health_check.py run holds")
    assert "(waited 3 s)" in result.stdout
    assert mails(smtp_env) == []


# -- monitoring engines -------------------------------------------------------------------------


def nagios(*args: str) -> tuple[int, str]:
    result = run("--nagios", "--no-email", *args)
    return result.returncode, result.stdout


def test_the_crontab_in_help_is_the_readmes():
    """--help and the README tell one truth about where the scripts are."""
    lines = [text.strip() for text in hc.__doc__.splitlines()]
    [line] = [text for text in lines if text.startswith("* * * * *")]
    readme = (ROOT / "README.md").read_text()
    assert f"\n{line}\n" in readme


@pytest.mark.parametrize(
    "args, code, word",
    [
        (PASSING, 0, "OK"),
        (["--cpu", "100", "--disk", "1", "--disk-warning", "100", "--memory", "0"], 1, "WARNING"),
        (DISK_FAILS, 2, "CRITICAL"),
        (["--cpu", "@0:100", "--disk", "0", "--memory", "0"], 2, "CRITICAL"),
    ],
)
def test_nagios_line_status_word_exit_code_and_perfdata(args, code, word):
    returncode, out = nagios(*args)
    assert returncode == code
    [line] = out.splitlines()
    status, perfdata = line.split(" | ")
    assert status.startswith(f"HEALTH {word} - ")
    labels = []
    for item in perfdata.split(" "):
        assert PERFDATA.fullmatch(item), item
        labels.append(item.split("=")[0])
    assert labels == ["cpu", "disk_free", "mem_available", "localhost"]


def test_nagios_unknown_when_the_check_cannot_run(tmp_path):
    returncode, out = nagios(*PASSING, "--disk-path", str(tmp_path / "unmounted"))
    assert returncode == 3
    assert out.startswith(
        f"HEALTH UNKNOWN - Disk space of {tmp_path / 'unmounted'} cannot be measured:"
        " No such file or directory |"
    )


def test_textfile_parses_with_prometheus_client(tmp_path, store):
    textfile = tmp_path / "health.prom"
    args = ["--no-email", "--textfile", str(textfile), *DISK_FAILS, "--url", store.url, "slo=off"]
    assert hc.main(args) == hc.CRITICAL
    families = {f.name: f for f in text_string_to_metric_families(textfile.read_text())}
    cpu = families["health_cpu_usage_ratio"].samples[0].value
    assert 0 <= cpu <= 1
    disk = families["health_disk_free_ratio"].samples[0]
    assert disk.labels == {"path": "/"} and 0 < disk.value < 1
    assert families["health_memory_available_bytes"].samples[0].value > 1024**2
    label = store.url.removeprefix("http://")
    assert families["health_url_up"].samples[0].labels == {"url": label}
    checks = {s.labels["check"]: s.value for s in families["health_check_ok"].samples}
    assert checks["disk:/"] == 0 and checks["memory"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# -- what people read ---------------------------------------------------------------------------


def test_help_shows_examples_exit_statuses_and_metavars():
    result = run("--help")
    assert result.returncode == 0
    for text in (
        "Examples:",
        "Exit status (Monitoring Plugins)",
        "--cpu PERCENT",
        "-t SECONDS, --timeout SECONDS",
        "--url URL [slo=PERCENT|label=NAME ...]",
        "[HEALTH_SENDER]",
        "--memory SIZE",
        "@10:20",
    ):
        assert text in result.stdout, text


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version(flag):
    result = run(flag)
    assert (result.returncode, result.stdout) == (0, f"health_check.py {hc.__version__}\n")


def test_verbose_prints_the_status_line_quiet_hides_warnings(tmp_path):
    state = tmp_path / "s.json"
    state.write_text("{broken")
    quiet = run("--state", str(state), "-q", "--no-email", *PASSING, "--url", "http://127.0.0.1:9/")
    assert quiet.stderr == ""
    verbose = run("--state", str(state), "-v", "--no-email", *PASSING)
    assert "DEBUG HEALTH OK - " in verbose.stderr


# -- copied alone ---------------------------------------------------------------------------------


def test_copied_alone_it_works_as_a_plugin_and_says_emails_py_is_missing(tmp_path):
    alone = tmp_path / "health_check.py"
    shutil.copy(SCRIPT, alone)
    env = {**os.environ, "PYTHONPATH": ""}
    plugin = subprocess.run(
        [sys.executable, alone, "--nagios", "--no-email", *PASSING],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=HANG_GUARD,
    )
    assert plugin.returncode == 0, plugin.stdout
    assert plugin.stdout.startswith("HEALTH OK - ")
    mailing = subprocess.run(
        [sys.executable, alone, *DISK_FAILS],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=HANG_GUARD,
    )
    assert (mailing.returncode, mailing.stdout) == (
        3,
        "HEALTH UNKNOWN - emails.py is not beside health_check.py:"
        " copy it there, or run with --no-email\n",
    )


def test_without_psutil_it_says_what_to_install(tmp_path):
    """-S leaves out site-packages (the virtualenv's too): the standard library alone."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-S", SCRIPT, "--no-email"],
        capture_output=True,
        text=True,
        env=env,
        timeout=HANG_GUARD,
    )
    assert result.returncode == 3
    install = "pip install psutil==7.2.2"
    assert (
        result.stdout
        == f"HEALTH UNKNOWN - psutil is not installed for {sys.executable}: {install}\n"
    )
    assert "psutil==7.2.2" in (ROOT / "requirements.txt").read_text()


# -- one way out ----------------------------------------------------------------------------


def test_the_guard_turns_any_exception_into_one_unknown_line(capsys):
    def broken() -> int:
        raise KeyError("disk:/")

    assert hc.guard(broken) == hc.UNKNOWN
    assert capsys.readouterr().out == "HEALTH UNKNOWN - unexpected KeyError: 'disk:/'\n"


def test_the_guard_keeps_usage_errors_and_interrupts_short(capsys):
    def interrupted() -> int:
        raise KeyboardInterrupt

    assert hc.guard(interrupted) == hc.UNKNOWN
    assert capsys.readouterr().out == "HEALTH UNKNOWN - interrupted\n"
    assert hc.main(["--remind", "nan"]) == hc.UNKNOWN
    assert capsys.readouterr().out == (
        "HEALTH UNKNOWN - usage: argument --remind: 'nan' is not from 1 to 43200 (see --help)\n"
    )


def test_a_hanging_run_blocks_later_runs_only_for_the_lock_wait(state, trickling_server):
    """The first run hangs on a trickling SMTP server; a Nagios run meanwhile gives up
    after its bounded lock wait instead of queueing behind it."""
    port = trickling_server(b"220-trickle ")
    env = {**os.environ, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port)}
    first = subprocess.Popen(
        [SCRIPT, "--state", str(state), "-t", "12", *DISK_FAILS],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_locked(state.with_name("state.json.lock"))
        second = run("--state", str(state), "--nagios", "--no-email", *PASSING)
        assert second.returncode == 3
        assert second.stdout.startswith("HEALTH UNKNOWN - another health_check.py run holds")
    finally:
        out, _ = first.communicate(timeout=HANG_GUARD)
    assert first.returncode == 3 and "while sending mail through 127.0.0.1" in out


def wait_until_locked(lock: Path) -> None:
    """Poll (without holding it) until another process holds the lock."""
    for _ in range(HANG_GUARD * 20):
        if lock.exists():
            with lock.open("a") as probe:
                try:
                    fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return
        time.sleep(0.05)
    raise AssertionError(f"nobody took {lock}")


# -- hostile pass: redirects ------------------------------------------------------------------


def test_a_redirect_elsewhere_does_not_carry_the_password(state, flaky_page, redirect_to):
    start = redirect_to(flaky_page.url.replace("127.0.0.1", "localhost"))
    url = start.replace("http://", "http://bob:hunter2@")
    result = run(*PASSING, "--no-email", "--nagios", "--state", str(state), "--url", url)
    assert (result.returncode, flaky_page.requests) == (0, 1), result.stdout
    assert flaky_page.authorization is None
    assert "hunter2" not in result.stdout + state.read_text()


@pytest.mark.parametrize("location", ["ftp://127.0.0.1:21/x", "file:///etc/passwd"])
def test_a_redirect_out_of_http_is_a_bad_probe(state, redirect_to, location):
    url = redirect_to(location)
    result = run(*PASSING, "--no-email", "--nagios", "--state", str(state), "--url", url, "slo=off")
    assert result.returncode == 2
    assert f"{url.removeprefix('http://')}: status 302" in result.stdout


# -- hostile pass: pages that never end or trickle ----------------------------------------------


def test_a_page_that_never_ends_is_a_bad_probe_read_in_bounded_memory(state, endless_page):
    label = endless_page.removeprefix("http://")
    args = ["--no-email", "--nagios", "--state", str(state), "--url", endless_page, "slo=off"]
    result = run(*PASSING, *args)
    assert result.returncode == 2, result.stdout
    assert f"{label}: page over 10 MB, not read whole" in result.stdout
    assert f"'url {label}'=U;" in result.stdout


def test_a_trickling_page_is_a_bad_probe_not_unknown(state, trickling_server):
    port = trickling_server(b"HTTP/1.1 200 OK\r\n")
    url = f"http://127.0.0.1:{port}/"
    args = ["--no-email", "--nagios", "--state", str(state), "-t", "5", "--url-timeout", "3"]
    result = run(*PASSING, *args, "--url", url, "slo=off")
    assert result.returncode == 2, result.stdout
    assert "timed out (no whole answer within 3 s)" in result.stdout
