"""health_check.py's SLO: the course's error budget and the SRE Workbook's burn-rate alerts,
driven by an injected clock against a page that fails on demand."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from helper import mails, subjects
from prometheus_client.parser import text_string_to_metric_families

import health_check as hc

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "health_check.py"
PASSING = ["--cpu", "100", "--disk", "0", "--memory", "0"]
START = 1_764_115_200.0  # an hour boundary (2025-11-26 00:00 UTC)
DAY = 1440
MONTH = 30 * DAY
STATE_LIMIT = 32 * 1024  # bytes: a month of minute probes of one URL stays under this


@pytest.fixture(autouse=True)
def fast_runs(monkeypatch, tmp_path):
    monkeypatch.setattr(hc, "CPU_INTERVAL", 0.0)  # hundreds of simulated minutes per test
    monkeypatch.setenv("USER", "alice")
    for name in list(os.environ):
        if name.startswith("HEALTH_"):
            monkeypatch.delenv(name)


@pytest.fixture
def state(tmp_path) -> Path:
    return tmp_path / "state.json"


def minute(n: int) -> float:
    return START + 60 * n + 7  # a few seconds into the minute, as cron starts


def seed(state: Path, url: str, minutes: range, bad: set[int] = frozenset()) -> None:
    """History as the script itself records it, without running it each minute."""
    with hc.StateFile(state, 1) as store:
        series = store.data["slo"].setdefault(hc.url_label(url), hc.new_series())
        series["slo"] = 0.99
        for n in minutes:
            hc.record(series, minute(n), n not in bad, 30 * 86400)
        store.commit(minute(minutes[-1]))


def run_minutes(state: Path, page, catcher, minutes: range, bad=lambda n: False) -> list[int]:
    """One in-process run per minute; the minutes whose run sent mail."""
    mailed = []
    for n in minutes:
        page.status = 500 if bad(n) else 200
        before = len(catcher.messages())
        hc.main(["--state", str(state), *PASSING, "--url", page.url], clock=lambda n=n: minute(n))
        if len(catcher.messages()) > before:
            mailed.append(n)
    return mailed


# -- the budget, as the course defines it ----------------------------------------------------


def test_a_month_of_minutes_gives_the_formulas_figures():
    series = hc.new_series()
    bad = set(range(1000, 1100)) | {5000, 20000, 40000}
    missing = set(range(30000, 30050))  # the host was down: no probe, not counted as good
    for n in range(MONTH):
        if n not in missing:
            hc.record(series, minute(n), n not in bad, 30 * 86400)
    figures = hc.budget("u", series, minute(MONTH - 1), 0.99, 30 * 86400)
    assert figures.covered == MONTH
    assert figures.total == pytest.approx(MONTH * (1 - 0.99)) == pytest.approx(432.0)
    # The probe after the 50 silent minutes stands for 20 of the 51 since the last one.
    assert figures.probed == MONTH - 50 + 19 and figures.missing == 31
    assert figures.spent == 103.0
    assert figures.left == pytest.approx(432.0 - 103.0)
    assert figures.ratio == pytest.approx((MONTH - 31 - 103) / (MONTH - 31))
    strict = hc.budget("u", series, minute(MONTH - 1), 0.999, 30 * 86400)
    assert strict.total == pytest.approx(43.2)  # the course's worked example
    assert len(json.dumps(series, separators=(",", ":"))) < STATE_LIMIT


def test_the_window_rolls_and_before_a_full_window_says_so(state, flaky_page):
    seed(state, flaky_page.url, range(2 * DAY), bad={10, 11})
    with hc.StateFile(state, 1) as store:
        series = store.data["slo"][hc.url_label(flaky_page.url)]
    early = hc.budget(flaky_page.url, series, minute(2 * DAY - 1), 0.99, 30 * 86400)
    assert early.covered == 2 * DAY and early.total == pytest.approx(28.8)
    assert "(2 days so far)" in hc.budget_lines(early)[0]
    later = hc.new_series()
    for n in range(MONTH + 2 * DAY):
        hc.record(later, minute(n), n not in {10, 11}, 30 * 86400)
    rolled = hc.budget("u", later, minute(MONTH + 2 * DAY - 1), 0.99, 30 * 86400)
    assert rolled.covered == MONTH and rolled.spent == 0  # the two bad minutes left the window
    assert "so far" not in hc.budget_lines(rolled)[0]


# -- a probe stands for the time it covers -------------------------------------------------


@dataclass(frozen=True)
class Spacing:
    id: str
    probes: list[int]  # the minutes probed
    bad: set[int]
    probed: int  # minutes the probes stand for, up to the last one
    missing: int
    spent: float


SPACINGS = [
    Spacing("cron", list(range(61)), {30}, 61, 0, 1),
    Spacing("cron-missed-a-run", [n for n in range(61) if n != 30], {31}, 61, 0, 2),
    Spacing("icinga-every-5-min", list(range(0, 61, 5)), {30}, 61, 0, 5),
    Spacing("nagios-every-10-min", list(range(0, 61, 10)), {30}, 61, 0, 10),
    Spacing("nagios-missed-a-run", [0, 10, 30, 40, 50, 60], {30}, 61, 0, 20),
    # An hour of silence (the host down): the next probe stands for 20 minutes, not 60.
    Spacing("host-down-an-hour", [0, 60], {60}, 21, 40, 20),
]


@pytest.mark.parametrize("case", SPACINGS, ids=[c.id for c in SPACINGS])
def test_each_probe_stands_for_the_minutes_since_the_last(case: Spacing):
    series = hc.new_series()
    for n in case.probes:
        hc.record(series, minute(n), n not in case.bad, 30 * 86400)
    figures = hc.budget("u", series, minute(case.probes[-1]), 0.99, 30 * 86400)
    assert (figures.probed, figures.missing, figures.spent) == (
        case.probed,
        case.missing,
        case.spent,
    )
    assert series["probes"] == len(case.probes)  # the counters still count probes


@pytest.mark.parametrize("every", [1, 5, 10], ids=["cron-1-min", "icinga-5-min", "nagios-10-min"])
def test_six_good_hours_then_30_refused_minutes_spend_30_minutes_at_any_interval(
    every, state, dead_port, monkeypatch, capsys
):
    """The issue's case: at every interval the 30 refused minutes spend 30 minutes of a
    3.9-minute budget (-667%), and no probe an engine's interval leaves out is missing."""
    url = f"http://127.0.0.1:{dead_port}/"
    seed(state, url, range(0, 361, every))
    args = ["--state", str(state), *PASSING, "--nagios", "--no-email", "--url", url]
    statuses = []
    for n in range(360 + every, 391, every):
        monkeypatch.setenv("HEALTH_NOW", str(minute(n)))
        statuses.append(hc.main(args))
    assert statuses[-1] == hc.CRITICAL
    line = capsys.readouterr().out.splitlines()[-1]
    assert f"{hc.url_label(url)}: refused, SLO 99%: 92.33% good over 6.5 h so far," in line
    assert "-667% of its budget left" in line
    report = subprocess.run(
        [SCRIPT, "--state", str(state), "--slo-report"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "HEALTH_NOW": str(minute(390))},
    )
    assert report.stdout.splitlines()[1:3] == [
        "  good ratio    92.327% (361 of 391 min probed; 0 min not probed)",
        "  error budget  3.9 min; spent 30.0 min; left -26.1 min (-667.3%)",
    ]


def test_every_refused_url_is_named_in_the_line(state, flaky_page, dead_port, capsys):
    """A fresh state: both good, then both refused in the same minute. The shop's second
    probe of the minute is not counted (its SLO is still OK), but the line names it."""
    args = ["--state", str(state), *PASSING, "--nagios", "--no-email"]
    urls = [flaky_page.url, "label=shop", flaky_page.url + "stock", "slo=off", "label=stock"]
    assert hc.main([*args, "--url", *urls], clock=lambda: minute(0)) == hc.OK
    dead = f"http://127.0.0.1:{dead_port}/"
    refused = [dead, "label=shop", dead + "stock", "slo=off", "label=stock"]
    assert hc.main([*args, "--url", *refused], clock=lambda: minute(0)) == hc.CRITICAL
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith("HEALTH CRITICAL - stock: refused. shop: refused, SLO 99%: ")
    assert ";" not in line.partition(" | ")[0]


# -- alerts that mean something --------------------------------------------------------------


def test_a_full_outage_after_good_probes_mails_at_the_ninth_minute(state, smtp_env, flaky_page):
    """Six good hours fill every burn window: the fast rule decides."""
    seed(state, flaky_page.url, range(360))
    mailed = run_minutes(state, flaky_page, smtp_env, range(360, 390), bad=lambda n: True)
    assert mailed == [368]  # the 9th bad minute: 9/60 bad is a burn rate of 15 > 14.4
    [mail] = mails(smtp_env)
    assert (
        mail["Subject"]
        == f"Error - {flaky_page.url} is burning its error budget too fast (SLO 99%)"
    )
    lines = mail.get_content().splitlines()
    assert lines[0] == hc.ALERT_BODY
    assert f"Host: {socket.gethostname()}" in lines
    label = hc.url_label(flaky_page.url)
    assert lines[3] == f"Measured: {flaky_page.url}: status 500 (this run's probe)"
    assert lines[4:8] == [
        f"{label}  SLO 99% over 30 days (6.2 h so far)",
        "  good ratio    97.561% (360 of 369 min probed; 0 min not probed)",
        "  error budget  3.7 min; spent 9.0 min; left -5.3 min (-143.9%)",
        "  burn rates    5m 100.0, 30m 30.0, 1h 15.0, 6h 2.5"
        " (alert: 1h and 5m over 14.4, 6h and 30m over 6)",
    ]
    assert lines[8].startswith("  so far        the budget grows with the time covered: 6.2 h")
    assert "When: 2025-11-26 06:08:07 UTC" in lines


def test_after_one_good_hour_a_full_outage_mails_at_the_ninth_minute(state, smtp_env, flaky_page):
    """The issue's own example: one hour of history fills only the fast rule's
    window, so the slow rule (6 h) waits for its own and the fast one decides."""
    seed(state, flaky_page.url, range(60))
    mailed = run_minutes(state, flaky_page, smtp_env, range(60, 90), bad=lambda n: True)
    assert mailed == [68]  # the 9th bad minute


def test_recovery_mails_once_when_both_rules_are_quiet(state, smtp_env, flaky_page):
    seed(state, flaky_page.url, range(360))
    run_minutes(state, flaky_page, smtp_env, range(360, 375), bad=lambda n: True)
    mailed = run_minutes(state, flaky_page, smtp_env, range(375, 440))
    assert len(mailed) == 1
    assert subjects(smtp_env) == [
        f"Error - {flaky_page.url} is burning its error budget too fast (SLO 99%)",
        f"Recovered - {flaky_page.url} is no longer burning its error budget too fast (SLO 99%)",
    ]
    assert mailed == [379]  # the fifth good minute empties the 5-minute window


def test_five_bad_minutes_scattered_over_an_hour_mail_nothing(state, smtp_env, flaky_page):
    seed(state, flaky_page.url, range(60))
    scattered = {62, 74, 86, 98, 110}
    assert (
        run_minutes(state, flaky_page, smtp_env, range(60, 180), bad=scattered.__contains__) == []
    )
    assert mails(smtp_env) == []


def test_a_slow_burn_mails_within_the_six_hour_window_then_reminds(state, smtp_env, flaky_page):
    seed(state, flaky_page.url, range(360))
    mailed = run_minutes(state, flaky_page, smtp_env, range(360, 720), bad=lambda n: n % 10 == 0)
    first = mailed[0]
    assert 360 + 60 < first < 360 + 360  # not the fast rule, within the slow one's window
    assert mailed == [first, first + 60, first + 120]  # then a reminder every --remind
    assert "is burning its error budget too fast" in subjects(smtp_env)[0]


def test_an_outage_right_after_installing_mails_at_once(state, smtp_env, flaky_page):
    assert run_minutes(state, flaky_page, smtp_env, range(1), bad=lambda n: True) == [0]


def test_a_url_with_its_own_slo_and_one_without(state, smtp_env, flaky_page, capsys):
    url, label = flaky_page.url, hc.url_label(flaky_page.url)
    hc.main(
        ["--state", str(state), *PASSING, "--url", url, "slo=99.9%", "--nagios", "--no-email"],
        clock=lambda: minute(0),
    )
    assert f"'slo_good {label}'=100.000%;;;0;100" in capsys.readouterr().out
    assert json.loads(state.read_text())["slo"][label]["slo"] == pytest.approx(0.999)
    flaky_page.status = 500
    hc.main(["--state", str(state), *PASSING, "--url", url, "slo=off"], clock=lambda: minute(1))
    assert subjects(smtp_env) == [f"Error - {url} did not answer 200 within 10 seconds"]


def test_a_second_run_in_the_same_minute_does_not_count_twice(state, flaky_page):
    for args in (["--nagios", "--no-email"], []):
        hc.main(
            ["--state", str(state), *PASSING, "--url", flaky_page.url, *args],
            clock=lambda: minute(0),
        )
    series = json.loads(state.read_text())["slo"][hc.url_label(flaky_page.url)]
    assert flaky_page.requests == 2 and series["probes"] == 1


# -- monitoring engines and people ------------------------------------------------------------


def test_nagios_perfdata_has_the_good_ratio_and_the_budget_left(state, flaky_page):
    seed(state, flaky_page.url, range(DAY), bad=set(range(100, 110)))
    result = subprocess.run(
        [
            SCRIPT,
            "--state",
            str(state),
            "--nagios",
            "--no-email",
            *PASSING,
            "--url",
            flaky_page.url,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "HEALTH_NOW": str(minute(DAY))},
    )
    line = result.stdout.strip()
    url = hc.url_label(flaky_page.url)
    good = re.search(rf"'slo_good {url}'=([\d.]+)%;;;0;100", line)
    left = re.search(rf"'slo_budget_left {url}'=(-?[\d.]+)%;25:;;;100", line)
    assert good and float(good.group(1)) == pytest.approx(
        100 * (DAY + 1 - 10) / (DAY + 1), abs=1e-3
    )
    assert left and float(left.group(1)) == pytest.approx(100 * (14.41 - 10) / 14.41, abs=0.1)
    assert result.returncode == hc.OK and f"{url} SLO 99%: 99.31% good over 24 h so far" in line


def test_budget_below_its_warning_range_is_a_warning(state, flaky_page, capsys):
    seed(state, flaky_page.url, range(DAY), bad=set(range(100, 112)))
    args = ["--state", str(state), "--nagios", "--no-email", *PASSING, "--url", flaky_page.url]
    assert hc.main(args, clock=lambda: minute(DAY)) == hc.WARNING
    label = hc.url_label(flaky_page.url)
    assert capsys.readouterr().out.startswith(f"HEALTH WARNING - {label} SLO 99%:")


def test_textfile_counters_only_grow_and_parse(state, flaky_page, tmp_path):
    textfile = tmp_path / "health.prom"
    args = ["--state", str(state), "--no-email", "--textfile", str(textfile), *PASSING]
    for n, status in enumerate([200, 500, 200]):
        flaky_page.status = status
        hc.main([*args, "--url", flaky_page.url], clock=lambda n=n: minute(n))
    families = {f.name: f for f in text_string_to_metric_families(textfile.read_text())}
    labels = {"url": hc.url_label(flaky_page.url)}
    probes, good = families["health_url_probes"], families["health_url_good_probes"]
    assert probes.type == good.type == "counter"
    assert [(s.name, s.labels, s.value) for s in probes.samples] == [
        ("health_url_probes_total", labels, 3.0)
    ]
    assert good.samples[0].value == 2.0
    left = families["health_slo_error_budget_remaining_ratio"].samples[0].value
    assert left == pytest.approx((3 * 0.01 - 1) / (3 * 0.01))
    assert families["health_slo_objective_ratio"].samples[0].value == pytest.approx(0.99)


def test_slo_report_reads_the_state_and_probes_nothing(state, flaky_page):
    seed(state, flaky_page.url, range(MONTH), bad=set(range(500, 530)))
    result = subprocess.run(
        [SCRIPT, "--state", str(state), "--slo-report", "--url", flaky_page.url],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "HEALTH_NOW": str(minute(MONTH - 1))},
    )
    assert result.returncode == 0 and flaky_page.requests == 0
    assert result.stdout.splitlines() == [
        f"{hc.url_label(flaky_page.url)}  SLO 99% over 30 days",
        f"  good ratio    99.931% ({MONTH - 30} of {MONTH} min probed; 0 min not probed)",
        "  error budget  432.0 min; spent 30.0 min; left 402.0 min (93.1%)",
        "  burn rates    5m 0.0, 30m 0.0, 1h 0.0, 6h 0.0"
        " (alert: 1h and 5m over 14.4, 6h and 30m over 6)",
    ]
    assert state.stat().st_size < STATE_LIMIT


def test_slo_report_with_no_state_yet(state):
    result = subprocess.run(
        [SCRIPT, "--state", str(state), "--slo-report"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0
    assert result.stdout.startswith("no URL has an SLO yet")


def test_credentials_in_a_url_are_used_but_never_shown_or_stored(
    state, smtp_env, flaky_page, tmp_path, capsys
):
    secret = flaky_page.url.replace("http://", "http://alice:s3cret@")
    shown = hc.url_label(flaky_page.url)
    textfile = tmp_path / "health.prom"
    flaky_page.status = 500
    args = ["--state", str(state), *PASSING, "--nagios", "--textfile", str(textfile)]
    assert hc.main([*args, "--url", secret], clock=lambda: minute(0)) == hc.CRITICAL
    assert flaky_page.authorization == "Basic YWxpY2U6czNjcmV0"  # alice:s3cret
    hc.main(["--state", str(state), "--slo-report", "--url", secret], clock=lambda: minute(1))
    out = capsys.readouterr().out
    [mail] = smtp_env.messages()
    everything = [out, state.read_text(), textfile.read_text(), mail.read_text()]
    assert all("s3cret" not in text and shown in text for text in everything)
