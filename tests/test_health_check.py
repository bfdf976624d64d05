"""health_check.py: real checks on this machine, real mail through the catcher."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import health_check as hc

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "health_check.py"
PASSING = ["--cpu", "100", "--disk", "0", "--memory", "0"]
DISK_FAILS = ["--cpu", "100", "--disk", "100", "--memory", "0"]
PERFDATA = re.compile(
    r"(?:'[^'=]+'|[^'= ]+)=-?[\d.]+(?:%|B|s)?"
    r"(?:;(?:[\d.]+:?)?){0,2}(?:;[\d.]*){0,2}"
)


@pytest.fixture(autouse=True)
def user_and_logs(monkeypatch, caplog):
    # In-process runs sample the CPU for 0.2 s; subprocess runs keep the real 1 s.
    monkeypatch.setattr(hc, "CPU_INTERVAL", 0.2)
    monkeypatch.setenv("USER", "alice")
    monkeypatch.delenv("HEALTH_RECIPIENTS", raising=False)
    caplog.set_level(logging.INFO)


@pytest.fixture
def state(tmp_path) -> Path:
    return tmp_path / "cache" / "state.json"


def check(state: Path, *args: str, at: float = 1_000_000.0) -> int:
    return hc.main(["--state", str(state), *args], clock=lambda: at)


def mails(catcher):
    return [message_from_bytes(p.read_bytes(), policy=policy.default) for p in catcher.messages()]


def subjects(catcher) -> list[str]:
    return [m["Subject"] for m in mails(catcher)]


# -- the lab's subjects -------------------------------------------------------------


def test_subjects_with_the_default_thresholds():
    limits = hc.Thresholds()
    assert hc.evaluate_cpu(93, limits).problem == "CPU usage is over 80%"
    assert hc.evaluate_disk("/", 10, 100, limits).problem == "Available disk space is less than 20%"
    assert hc.evaluate_memory(100 * hc.MB, limits).problem == "Available memory is less than 500MB"
    assert (
        hc.evaluate_resolution("localhost", "127.0.0.1", None).problem
        == "localhost cannot be resolved to 127.0.0.1"
    )


@pytest.mark.parametrize(
    "value, status",
    [(80.1, hc.CRITICAL), (80.0, hc.WARNING), (70.1, hc.WARNING), (70.0, hc.OK)],
)
def test_cpu_evaluation_edges(value, status):
    assert hc.evaluate_cpu(value, hc.Thresholds(cpu_warning=70)).status == status


def test_disk_ratio_is_free_over_total():
    result = hc.evaluate_disk("/", 19, 100, hc.Thresholds())
    assert result.status == hc.CRITICAL and result.perf == "disk_free=19%;;20:;0;100"
    assert hc.evaluate_disk("/", 20, 100, hc.Thresholds()).status == hc.OK


def test_memory_sizes_use_binary_megabytes():
    assert hc.parse_size("500MB") == 500 * 1024**2
    assert hc.parse_size("1.5GB") == int(1.5 * 1024**3)
    assert hc.parse_size("500") == 500 * 1024**2


# -- each check fails and passes for real -------------------------------------------


def test_a_healthy_run_prints_nothing_and_exits_0(smtp_env, state):
    env = {**os.environ, "HOME": str(state.parent)}
    result = subprocess.run(
        [SCRIPT, "--state", str(state), *PASSING], env=env, capture_output=True, text=True
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert mails(smtp_env) == []


def test_failing_disk_mails_the_lab_alert(smtp_env, state):
    assert check(state, *DISK_FAILS) == hc.CRITICAL
    [mail] = mails(smtp_env)
    assert mail["From"] == "automation@example.com"
    assert mail["To"] == "alice@example.com"
    assert mail["Subject"] == "Error - Available disk space is less than 100%"
    assert mail.get_content().strip() == hc.ALERT_BODY
    assert not mail.is_multipart()


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


def test_url_check_against_the_store_and_a_dead_port(smtp_env, state, store, dead_port):
    assert check(state, *PASSING, "--url", store.url) == hc.OK
    dead = f"http://127.0.0.1:{dead_port}/"
    assert check(state, *PASSING, "--url", store.url, "--url", dead) == hc.CRITICAL
    assert subjects(smtp_env) == [f"Error - {dead} did not answer 200 within 10 seconds"]


def test_several_failing_checks_mail_one_each(smtp_env, state):
    args = ["--cpu", "100", "--disk", "100", "--memory", "100000GB"]
    assert check(state, *args, "--resolve-address", "127.0.0.2") == hc.CRITICAL
    assert len(mails(smtp_env)) == 3


# -- no alert storm -------------------------------------------------------------------


def test_second_failing_run_is_quiet_then_reminds_then_recovers(smtp_env, state):
    assert check(state, *DISK_FAILS, at=1000) == hc.CRITICAL
    assert check(state, *DISK_FAILS, at=1060) == hc.CRITICAL
    assert len(mails(smtp_env)) == 1
    assert check(state, *DISK_FAILS, "--remind", "60", at=1000 + 3599) == hc.CRITICAL
    assert len(mails(smtp_env)) == 1
    assert check(state, *DISK_FAILS, "--remind", "60", at=1000 + 3600) == hc.CRITICAL
    assert subjects(smtp_env)[1] == "Error - Available disk space is less than 100%"
    assert check(state, *PASSING, "--disk", "100", "--disk", "0", at=5000) == hc.OK
    assert subjects(smtp_env)[2] == "Recovered - Available disk space is back at or above 0%"
    assert check(state, *PASSING, at=5060) == hc.OK
    assert len(mails(smtp_env)) == 3


def test_a_recovery_mail_that_failed_is_sent_on_the_next_run(
    smtp_env, state, monkeypatch, dead_port
):
    assert check(state, *DISK_FAILS, at=1000) == hc.CRITICAL
    monkeypatch.setenv("SMTP_PORT", str(dead_port))
    assert check(state, *PASSING, at=1060) == hc.UNKNOWN
    monkeypatch.setenv("SMTP_PORT", str(smtp_env.port))
    assert check(state, *PASSING, at=1120) == hc.OK
    assert subjects(smtp_env) == [
        "Error - Available disk space is less than 100%",
        "Recovered - Available disk space is back at or above 0%",
    ]


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


def test_a_hanging_smtp_server_cannot_hold_the_run(state, monkeypatch, caplog):
    monkeypatch.setattr(hc, "RUN_BUDGET", 1.5)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("SMTP_PORT", str(silent.getsockname()[1]))
        monkeypatch.delenv("SMTP_TIMEOUT", raising=False)
        assert check(state, *DISK_FAILS, "--resolve-address", "127.0.0.2") == hc.UNKNOWN
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    waited = re.search(r"did not answer within ([\d.]+) s", errors[0])
    assert waited and float(waited.group(1)) <= 1.5  # the budget, not SMTP's default 10 s
    remembered = json.loads(state.read_text())["checks"]
    assert all(entry["last_mailed"] is None for entry in remembered.values())


def test_a_bad_smtp_setting_is_reported_not_a_crash(smtp_env, state, monkeypatch, caplog):
    monkeypatch.setenv("SMTP_TIMEOUT", "soon")
    assert check(state, *DISK_FAILS) == hc.UNKNOWN
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "SMTP_PORT and SMTP_TIMEOUT must be numbers" in errors[0]
    assert mails(smtp_env) == []


def test_corrupt_state_file_is_replaced_with_a_warning(smtp_env, state, caplog):
    state.parent.mkdir(parents=True)
    state.write_text("{this is not json")
    assert check(state, *DISK_FAILS) == hc.CRITICAL
    assert any(
        "unreadable" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
    )
    assert json.loads(state.read_text())["checks"]["disk:/"]["last_mailed"] == 1_000_000.0
    assert len(mails(smtp_env)) == 1


def test_the_lock_stops_an_overlapping_run(smtp_env, state):
    state.parent.mkdir(parents=True)
    with open(state.with_name("state.json.lock"), "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = subprocess.run(
            [SCRIPT, "--state", str(state), *DISK_FAILS], capture_output=True, text=True
        )
    assert result.returncode == 3
    assert "another health_check.py run holds" in result.stderr
    assert mails(smtp_env) == []


@pytest.mark.parametrize("value", [["--cpu", "120"], ["--memory", "lots"], ["--disk", "-1"]])
def test_bad_thresholds_exit_3_with_usage(value):
    result = subprocess.run([SCRIPT, *value, "--no-email"], capture_output=True, text=True)
    assert result.returncode == 3
    assert result.stderr.startswith("usage:")


# -- monitoring engines -------------------------------------------------------------------


def nagios(*args: str) -> tuple[int, str]:
    result = subprocess.run(
        [SCRIPT, "--nagios", "--no-email", *args], capture_output=True, text=True
    )
    return result.returncode, result.stdout


@pytest.mark.parametrize(
    "args, code, word",
    [
        (PASSING, 0, "OK"),
        (["--cpu", "100", "--disk", "1", "--disk-warning", "100", "--memory", "0"], 1, "WARNING"),
        (DISK_FAILS, 2, "CRITICAL"),
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
    returncode, out = nagios("--disk-path", str(tmp_path / "unmounted"))
    assert returncode == 3
    assert out.startswith("HEALTH UNKNOWN - the check could not run")
    assert "unmounted" in out


def test_textfile_parses_with_prometheus_client(tmp_path, store):
    textfile = tmp_path / "health.prom"
    args = ["--no-email", "--textfile", str(textfile), *DISK_FAILS, "--url", store.url]
    assert hc.main(args) == hc.CRITICAL
    families = {f.name: f for f in text_string_to_metric_families(textfile.read_text())}
    cpu = families["health_cpu_usage_ratio"].samples[0].value
    assert 0 <= cpu <= 1
    disk = families["health_disk_free_ratio"].samples[0]
    assert disk.labels == {"path": "/"} and 0 < disk.value < 1
    assert families["health_memory_available_bytes"].samples[0].value > 1024**2
    assert families["health_url_up"].samples[0].labels == {"url": store.url}
    checks = {s.labels["check"]: s.value for s in families["health_check_ok"].samples}
    assert checks["disk:/"] == 0 and checks["memory"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_copied_alone_it_works_as_a_plugin_with_psutil_only(tmp_path):
    alone = tmp_path / "health_check.py"
    shutil.copy(SCRIPT, alone)
    result = subprocess.run(
        [sys.executable, alone, "--nagios", "--no-email", *PASSING],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("HEALTH OK - ")
    mailing = subprocess.run(
        [sys.executable, alone, "--state", str(tmp_path / "s.json"), *DISK_FAILS],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert mailing.returncode == 3
    assert "emails.py is not beside health_check.py" in mailing.stderr


def test_an_unusable_state_folder_is_unknown_with_advice(tmp_path, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the state folder should be")
    assert check(blocker / "state.json", *PASSING) == hc.UNKNOWN
    [error] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert error.startswith(f"cannot use the lock file {blocker / 'state.json.lock'}")
    assert error.endswith("(set --state)")


def test_an_unwritable_textfile_is_unknown(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    args = ["--no-email", "--textfile", str(blocker / "health.prom"), *PASSING]
    assert hc.main(args) == hc.UNKNOWN
    assert any("cannot write" in r.getMessage() for r in caplog.records)


def test_a_url_that_never_answers_fails_within_its_limit(smtp_env, state, monkeypatch):
    monkeypatch.setattr(hc, "URL_TIMEOUT", 0.5)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        assert check(state, *PASSING, "--url", url) == hc.CRITICAL
    assert subjects(smtp_env) == [f"Error - {url} did not answer 200 within 0.5 seconds"]


def test_a_bad_environment_threshold_exits_3():
    env = {**os.environ, "HEALTH_REMIND": "hourly"}
    result = subprocess.run([SCRIPT, "--no-email"], env=env, capture_output=True, text=True)
    assert result.returncode == 3
    assert "'hourly'" in result.stderr
