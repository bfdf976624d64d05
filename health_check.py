#!/usr/bin/env python3
"""Check CPU, disk, memory, name resolution and the store's SLO; alert by email without flooding.

Run from cron every minute. A healthy run prints nothing and exits 0. For
each failing check one email goes out (subjects as the lab's), then a
reminder every --remind minutes while it keeps failing, and one `Recovered`
mail when it clears. Each --url is probed each run against its SLO
(default 99% of the time it answers 200, whole page within --url-timeout): the
state file keeps a month of probes in hourly buckets, and a mail goes out
when the error budget burns fast (Google SRE Workbook, multiwindow burn
rates). --nagios prints a Monitoring Plugins status line with performance
data, --textfile writes Prometheus text for node_exporter, --slo-report
prints the budget of every URL. With --no-email only psutil is needed.

The lab's step 5 ("run from cron every minute; email when the server is
unhealthy"), function by function: main() -> check_health(), which starts
every check at once (start_measuring: cpu_percent, psutil.disk_usage,
available_memory, resolve, fetch), judges each (measure: the rows cpu_metric,
disk_metric and memory_metric, each evaluated by evaluate(), then
evaluate_resolution; track_slos: evaluate_url, or record, budget and
evaluate_slo), mails what changed (alert: plan_mails, then emails.py's
generate_email and send_email, as the lab's), saves the state (StateFile) and
prints the line (status_line).

Thresholds take the Monitoring Plugins range syntax: `10:` (alert under 10),
`~:20` or `20` (over 20), `10:20` (outside), `@10:20` (inside). A plain
number keeps the lab's meaning: --cpu 80 alerts over 80%, --disk 20 and
--memory 500MB under them. -c and -w set them as the Monitoring Plugins
guidelines do, one METRIC=RANGE per metric, comma-separated: cpu (% used),
disk (% free, on every --disk-path), memory (available) and, for -w only,
budget (% of the error budget left; the burn rates make it CRITICAL):
    -w cpu=70,disk=30,memory=1GB -c cpu=90,disk=10,memory=200MB
is --cpu-warning 70 --disk-warning 30 --memory-warning 1GB --cpu 90 --disk 10
--memory 200MB. A bare `-w 80` is refused: name the metric. Every WARNING must
come before its CRITICAL (--cpu 90 --cpu-warning 95 is refused). Sizes are a
whole number of MB or a number with its unit (B, KB, MB, GB, TB: 1.5GB).

Usage:
    ./health_check.py [-w METRIC=RANGE,...] [-c METRIC=RANGE,...]
                      [--cpu PERCENT] [--disk PERCENT] [--memory SIZE]
                      [--url URL [slo=PERCENT] [label=NAME]] [--slo PERCENT]
                      [--nagios] [--textfile FILE]
                      [--no-email] [--slo-report] [-t SECONDS]

Examples:
    $ ./health_check.py                      # from cron: quiet unless it mails
    $ ./health_check.py --nagios --no-email --url http://127.0.0.1:8123/
    HEALTH CRITICAL - CPU 100% of the host (over 80%) | cpu=100%;;80;0;100 disk_free=29%;;20:;0;100
    mem_available=24057987072B;;524288000:;0 localhost=1;;1:;0;1
    'url 127.0.0.1:8123/'=0.009s;;10;0 'slo_good 127.0.0.1:8123/'=99.931%;;;0;100
    'slo_budget_left 127.0.0.1:8123/'=93.1%;25:;;;100
    (one line, folded here; exit status 2)
    $ ./health_check.py --nagios --no-email --url 'http://127.0.0.1:8123/s?page=2&t=X' slo=99.9
    $ ./health_check.py --slo-report
    127.0.0.1:8123/  SLO 99% over 30 days (3 days so far)
      good ratio    99.931% (4318 of 4321 min probed; 0 min not probed)
      error budget  43.2 min; spent 3.0 min; left 40.2 min (93.1%)
      burn rates    5m 0.0, 30m 0.0, 1h 0.0, 6h 0.8 (alert: 1h and 5m over 14.4, 6h and 30m over 6)
    $ crontab -l
    * * * * * /opt/fruit-catalog/.venv/bin/python /opt/fruit-catalog/health_check.py --url http://localhost/

Time: -t/--timeout (default 15 s) bounds the whole run: the lock wait (at
most 3 s), the checks, DNS (3 s), the URL probes (each --url-timeout, default
10 s, which must be below -t; they run beside the CPU sample) and the mail
(its share is what is left). A stage still running when the budget ends
makes the run UNKNOWN, naming the stage; a URL slower than --url-timeout
is a bad probe, not UNKNOWN. HEALTH_NOW (seconds since the epoch) replaces
the clock: for tests only.

SLO: a probe is good when the page answered 200, whole, within
--url-timeout, and stands for the minutes since the URL's last probe (at most
20: cron's 1, an engine's 5 or 10). The error budget is the time covered x
(1 - SLO) (99% of 30 days = 432 min); each bad probe spends its minutes. A mail goes out while
the budget burns over 14.4x in both the last 1 h and 5 min, or over 6x in
both the last 6 h and 30 min (rates over the probes recorded, so a new
install alerts at once), with reminders and a recovery mail like the
others. Probes are kept per minute for 6 h and per hour for the window;
one probe per URL and minute counts. While the state
cannot be saved, the lock file's time keeps alerts to one per --remind.

URLs: `--url URL slo=99.9 label=NAME`; the settings are words of their own,
so any URL a browser takes is probed as given, query string included. A URL
is named by its label, host[:port]/path unless label= says otherwise (two
URLs with one label are refused); nothing of a URL but scheme, host, port and
path is ever written (a query string may hold a token). A bad probe says why
(refused, timed out, status 503, short page) and has U as its time.

Limits: memory and CPU are measured against this process's cgroup limits
when it has any (v2 or v1, found from /proc/self/cgroup), else the host's;
the line says which ("of cgroup v2 /x (0.5 CPUs)", "on the host").
HEALTH_CGROUP_ROOT (a folder standing for /) replaces the machine's: for tests
only. Each check is measured and judged alone: one that cannot measure (an
unmounted --disk-path) is UNKNOWN for itself and mailed; the others still
alert and recover; CRITICAL outranks UNKNOWN, which outranks WARNING.

Exit status (Monitoring Plugins): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (a
bad option or variable, a check that could not measure and none CRITICAL, a
run that timed out, another run holding the lock, a state that cannot be
saved, or an alert that could not be mailed: it is tried again on the next
run). Whatever stops the run prints one line on standard output, as an
engine reads it: `HEALTH UNKNOWN - <why>` (`usage: ...` for a bad option).
"""

from __future__ import annotations

EARLY_STOP = ("HEALTH UNKNOWN - {}", 3, 1)  # a stop before the guard: its one line, on stdout


# --- begin shared block: early stop (from blocks/early_stop.py; make blocks) ---
def shared(name: str, value: object) -> object:
    import sys

    state = sys.modules.setdefault("fruit_catalog_shared", type(sys)("shared"))
    return vars(state).setdefault(name, value)


def stop_early(line: str = "ERROR {}", status: int = 130, fd: int = 2) -> None:
    import _signal  # loaded with Python; `import signal` takes 10+ ms, a stop there a traceback
    import os

    def stop(signum: int, frame: object) -> None:
        name = {_signal.SIGTERM: "SIGTERM", _signal.SIGHUP: "SIGHUP"}.get(signum, "SIGINT")
        said = "interrupted" if signum == _signal.SIGINT else f"interrupted by {name}"
        os.write(fd, f"{line.format(said)}\n".encode())
        os._exit(status)  # nothing written yet: the guard finishes what the work started

    for sig in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP):
        if _signal.getsignal(sig) != _signal.SIG_IGN:
            _signal.signal(sig, stop)
    shared("early stop", stop)  # after: guarded() knows the script's own run by it


def missing_packages() -> list[str]:
    return shared("missing", [])  # type: ignore[return-value]


def install_hint(pins: str) -> str:
    import os
    import sys

    python = os.path.join(os.path.dirname(sys.argv[0]), ".venv", "bin", "python")
    running = os.path.dirname(os.path.abspath(sys.executable))  # not sys.prefix: -S keeps it
    if os.path.isfile(python) and running != os.path.dirname(os.path.abspath(python)):
        return f"run it with {python} (the project's venv), or pip install {pins}"
    return f"pip install {pins}"


if __name__ == "__main__":
    stop_early(*globals().get("EARLY_STOP", ()))


# --- end shared block: early stop ---

import argparse
import datetime
import errno
import fcntl
import itertools
import json
import logging
import math
import os
import re
import signal
import socket
import stat
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

try:
    import psutil
except ImportError:  # main says what to install, with the documented status
    psutil = None

__version__ = "2.0.0"

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATUS_WORDS = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
MB = 1024**2
UNITS = {"B": 1, "KB": 1024, "MB": MB, "GB": 1024**3, "TB": 1024**4}
SENDER = "automation@example.com"
ALERT_BODY = "Please check your system and resolve the issue as soon as possible."
RECOVERY_BODY = "The problem reported earlier has cleared. No action is needed."
CPU_INTERVAL = 1.0  # seconds; psutil's first call without an interval always says 0.0
RESOLVE_TIMEOUT = 3.0
MEASURE_WAIT = 5.0  # seconds past the CPU sample: a disk not measured by then hangs
LOCK_WAIT = 3.0  # a run holds the lock for at most its own budget
RESERVE = 0.5  # seconds of the budget kept to save the state after the mail
MAX_BODY = 10 * MB  # a probe reads at most this much of a page
STATE_VERSION = 3  # buckets count minutes covered (2: probes, each one minute under cron)
MINUTES_KEPT = 6 * 60  # one-minute buckets cover the short burn-rate windows
# A probe stands for the minutes since the one before (cron's 1, an engine's 5 or 10, a
# missed run's 2, Nagios's 10 with one run missed 20), at most this many: a longer
# silence (the host down, cron stopped) is time not probed, neither good nor bad.
MOST_COVERED = 20
BURN_WINDOWS = {"5m": 300, "30m": 1800, "1h": 3600, "6h": 21600}
# SRE Workbook, "Alerting on SLOs": the share of the budget that may burn in the long window.
FAST_BURN = ("1h", "5m", 0.02)
SLOW_BURN = ("6h", "30m", 0.05)
PSUTIL_PIN = "psutil==7.2.2"
STATE_LIMIT = 16 * MB  # a month of minute probes for a few URLs takes kilobytes
LATEST = 1e11  # seconds since the epoch (year 5138): any later time in a state is corrupt
MAX_COUNT = 10**15  # probes: a million years of minutes

# Characters a URL's path and query keep as they are; others are percent-encoded.
URL_SAFE = "/%:@!$&'()*+,;=-._~?"
# The authority's userinfo: everything from // to the last @ before the path.
# Up to the last @ before a /: a password's unescaped ? or # would otherwise end the
# authority early and leave the rest of the password on show.
CREDENTIALS = re.compile(r"^([^/?#]*//)[^/]*@")
SHOWN = 80  # characters of a value echoed in a message or label; the rest is …
LONG_QUOTE = re.compile("'[^']{%d,}'" % (SHOWN + 1))  # noqa: UP031 - braces in a pattern

log = logging.getLogger("health_check")


class Unknown(Exception):
    """The check could not be done: str() is the one line a person reads."""


# -- pure functions: values and ranges ------------------------------------------------


def fmt(value: float) -> str:
    """80.0 -> '80', 12.5 -> '12.5', never an exponent."""
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


def megabytes(size: float) -> str:
    return f"{fmt(round(size / MB, 1))}MB"


def percent_value(text: str) -> float:
    return number(0, 100)(text.strip().removesuffix("%"))


def size_value(text: str) -> float:
    """'500MB', '1.5GB' -> bytes (1 MB = 1024**2); a bare whole number is in MB. No
    exponent ('1e3' was once read as 1000 MB) and no bare fraction: say the unit."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?B)?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"expected a size like 500MB or 1.5GB, got {text!r}")
    if match.group(2) is None and "." in match.group(1):
        raise argparse.ArgumentTypeError(f"{text!r} needs a unit: a bare number is whole MB")
    amount = number(0, 1e12)(match.group(1))
    return float(int(amount * UNITS[(match.group(2) or "MB").upper()]))


@dataclass(frozen=True)
class Range:
    """A Monitoring Plugins range: alert outside start..end, or inside it with '@'."""

    start: float
    end: float
    inside: bool = False

    def alerts(self, value: float) -> bool:
        within = self.start <= value <= self.end
        return within if self.inside else not within

    def perf(self) -> str:
        """The range as perfdata shows it, in the base unit."""
        start = "" if self.start == 0 else "~" if self.start == -math.inf else fmt(self.start)
        end = "" if self.end == math.inf else fmt(self.end)
        return ("@" if self.inside else "") + (f"{start}:" if start else "") + end

    def describe(self, show: Callable[[float], str]) -> str:
        """'over 80%', 'less than 20%': what makes it alert, in words."""
        if self.inside:
            return f"between {show(self.start)} and {show(self.end)}"
        if self.end == math.inf:
            return f"less than {show(self.start)}"
        if self.start in (0, -math.inf):
            return f"over {show(self.end)}"
        return f"outside {show(self.start)} to {show(self.end)}"


def range_type(value: Callable[[str], float], plain_is_minimum: bool) -> Callable[[str], Range]:
    """An argparse type for a range whose ends `value` parses (through number())."""

    def parse(text: str) -> Range:
        body = text.strip()
        inside = body.startswith("@")
        body = body.removeprefix("@")
        if ":" not in body:
            if plain_is_minimum and not inside:
                return Range(value(body), math.inf)
            return Range(0, value(body), inside)
        low, high = body.split(":", 1)
        start = -math.inf if low == "~" else value(low) if low else 0.0
        end = value(high) if high else math.inf
        if start > end:
            raise argparse.ArgumentTypeError(f"range {text!r} starts after it ends")
        return Range(start, end, inside)

    parse.__name__ = "range"
    return parse


def covers(warning: Range, critical: Range, low: float, high: float) -> bool:
    """Whether every value from low to high that is CRITICAL is also past the
    warning: else the warning is past the critical threshold (--cpu 90
    --cpu-warning 95). Both alert regions change only at the ranges' ends, so the
    ends and the points between them decide it."""
    ends = {low, high, critical.start, critical.end, warning.start, warning.end}
    points = sorted(v for v in ends if math.isfinite(v) and low <= v <= high)
    points += [points[-1] + 1] if high == math.inf else []
    between = [(a + b) / 2 for a, b in itertools.pairwise(points)]
    return all(warning.alerts(v) for v in [*points, *between] if critical.alerts(v))


def slo_type(text: str) -> float | None:
    """'99%', '99.9' -> 0.99, 0.999; 'off' -> None (plain per-probe alerts)."""
    if text.strip().lower() == "off":
        return None
    return number(50, 99.999)(text.strip().removesuffix("%")) / 100


@dataclass(frozen=True)
class Target:
    """One --url: the URL as given (credentials and query included: only fetch() sees
    it), its own SLO (True: the --slo default, None: off), its label and public form."""

    url: str
    slo: float | bool | None
    label: str
    public: str


def capped(text: str, most: int = SHOWN) -> str:
    """A value as echoed: whole when short, else its start and …"""
    return text if len(text) <= most else text[: most - 1] + "…"


def quotes_capped(text: str) -> str:
    """Every 'quoted value' in a message capped."""
    return LONG_QUOTE.sub(lambda m: repr(capped(m[0][1:-1])), text)


def public(url: str) -> str:
    """What may be written of a URL: scheme, host, port and path, capped. A pattern, not
    urlsplit, so that a URL urlsplit refuses (`http://u:p@[::1/`) loses its secrets too."""
    return capped(re.split(r"[?#]", CREDENTIALS.sub(r"\1", url), maxsplit=1)[0])


def url_label(url: str) -> str:
    """host[:port]/path: short, stable, and free of credentials and query strings."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    port = f":{parts.port}" if parts.port is not None else ""
    return capped(f"{host}{port}{parts.path or '/'}")


def checked_url(url: str) -> str:
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # ValueError for a port that is no number or over 65535
        usable = parts.scheme in ("http", "https") and parts.hostname and port != 0
    except ValueError:  # a bad IPv6 literal or port: its message would hold the URL
        usable = False
    if not usable:
        raise argparse.ArgumentTypeError(f"{public(url)!r} is not an http:// or https:// URL")
    # 'http://h/?x=1 slo=off' in one word (an Icinga string, not an array) would send the
    # setting as part of the query; a line break would split the status line and the mail.
    if any(c.isspace() or not c.isprintable() for c in url):
        raise argparse.ArgumentTypeError(
            f"{public(url)!r} holds a space or control character: write a space as %20,"
            " and give each setting (slo=, label=) as a word of its own"
        )
    return url


def targets(words: list[str]) -> list[Target]:
    """--url URL [slo=PERCENT|off] [label=NAME], and HEALTH_URLS the same words
    space-separated. A setting is a word of its own, so a query string's `=` (or its
    last one, `?page=2&x=1`) is never taken for one. Two URLs with one label: name one."""
    found: list[dict] = []
    for word in words:
        name, equals, value = word.partition("=")
        if not (equals and name in ("slo", "label")):
            found.append({"url": checked_url(word), "slo": True, "label": None, "given": set()})
        elif not found:
            raise argparse.ArgumentTypeError(f"{word!r} comes before any URL")
        elif name in found[-1]["given"]:  # which one was meant? as -c cpu=90 -c cpu=95
            raise argparse.ArgumentTypeError(
                f"{name}= is given twice for {public(found[-1]['url'])}: give it once"
            )
        elif name == "slo":
            found[-1]["given"].add(name)
            found[-1]["slo"] = slo_type(value)
        elif re.fullmatch(r"[\w.:/~-]{1,80}", value):
            found[-1]["given"].add(name)
            found[-1]["label"] = value
        else:
            raise argparse.ArgumentTypeError(
                f"label {value!r}: up to 80 letters, digits and . : / ~ - _"
            )
    result = [
        Target(f["url"], f["slo"], f["label"] or url_label(f["url"]), public(f["url"]))
        for f in found
    ]
    seen: dict[str, Target] = {}
    for target in result:
        if target.label in seen:
            raise argparse.ArgumentTypeError(
                f"{seen[target.label].public} and {target.public} share the label"
                f" {target.label!r}: give one label=NAME"
            )
        seen[target.label] = target
    return result


def label(text: str) -> str:
    """A perfdata label, quoted when it needs to be (guidelines: no ' or =)."""
    clean = " ".join(text.replace("'", "").replace("=", "_").replace("|", "/").split())
    clean = clean.replace(";", "%3B")  # perfdata's own separator
    return f"'{clean}'" if " " in clean else clean


def perf(name: str, value: str, warn: str, crit: str, low: str = "", high: str = "") -> str:
    return f"{label(name)}={value};{warn};{crit};{low};{high}".rstrip(";")


# -- pure functions: evaluations --------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    cpu: Range = Range(0, 80)
    disk: Range = Range(20, math.inf)
    memory: Range = Range(500 * MB, math.inf)
    cpu_warning: Range | None = None
    disk_warning: Range | None = None
    memory_warning: Range | None = None


@dataclass
class Result:
    """One check's outcome: `problem` is the lab's subject text, `detail` the mail's facts."""

    key: str
    status: int
    summary: str
    problem: str
    recovery: str
    detail: str
    perf: list[str]
    metrics: list[tuple[str, dict[str, str], float]] = field(default_factory=list)
    named: bool = False  # in the line even when OK: this run's probe of the URL failed


def rate(value: float, critical: Range, warning: Range | None) -> tuple[int, str]:
    """The status and the words of the range that decided it."""
    if critical.alerts(value):
        return CRITICAL, ""
    if warning is not None and warning.alerts(value):
        return WARNING, "warning: "
    return OK, ""


@dataclass(frozen=True)
class Metric:
    """One measured value as a row, nagiosplugin's Metric and ScalarContext in one: what
    it is, its value in its unit ('%' or 'B'), its ranges, and its words and perfdata."""

    key: str  # the check, in the state and the textfile: 'cpu', 'disk:/data', 'memory'
    noun: str  # as the lab's subject names it: 'CPU usage'
    value: float
    unit: str
    critical: Range
    warning: Range | None
    perfdata: str  # its label: 'cpu', 'disk_free /data'
    summary: str  # the line's words: 'CPU 12% of the host'
    measured: str  # the mail's: '12% of the host over 1 s'
    where: str = ""  # after each bound in words: ' on /data'
    top: str = ""  # perfdata's maximum: '100', a cgroup's limit
    samples: tuple = ()  # Prometheus samples: (family, labels, value)


# A value or bound of each unit in words, and in perfdata.
WORDS = {"%": lambda v: f"{fmt(v)}%", "B": megabytes}
PERFDATA = {"%": lambda v: f"{fmt(round(v))}%", "B": lambda v: f"{int(v)}B"}


def evaluate(metric: Metric) -> Result:
    """A metric against its critical and optional warning range: the one evaluation
    of CPU, disk and memory."""
    critical, warning = metric.critical, metric.warning
    status, prefix = rate(metric.value, critical, warning)

    def show(value: float) -> str:
        return WORDS[metric.unit](value) + metric.where

    decided = warning if status == WARNING else critical
    bound = f" ({prefix}{decided.describe(show)})" if status else ""
    words = critical.describe(show)
    warn = f"; warning when {warning.describe(show)}" if warning else ""
    value = PERFDATA[metric.unit](metric.value)
    limits = (warning.perf() if warning else "", critical.perf(), "0", metric.top)
    return Result(
        key=metric.key,
        status=status,
        summary=f"{metric.summary}{bound}",
        problem=f"{metric.noun} is {words}",
        recovery=f"{metric.noun} is no longer {words}",
        detail=f"Measured: {metric.noun.lower()} {metric.measured}; alert when {words}{warn}",
        perf=[perf(metric.perfdata, value, *limits)],
        metrics=list(metric.samples),
    )


def cpu_metric(percent: float, limits: Limits, scope: str = "the host") -> Metric:
    """scope: what the percentage is of, 'the host' or 'cgroup v2 /x (0.5 CPUs)'."""
    shown = f"{fmt(round(percent))}% of {scope}"
    return Metric(
        "cpu",
        "CPU usage",
        percent,
        "%",
        limits.cpu,
        limits.cpu_warning,
        "cpu",
        summary=f"CPU {shown}",
        measured=f"{shown} over {fmt(CPU_INTERVAL)} s",
        top="100",
        samples=(("health_cpu_usage_ratio", {}, percent / 100),),
    )


def disk_metric(path: str, free: int, total: int, limits: Limits) -> Metric:
    percent = 100.0 * free / total if total else 0.0
    shown = f"{fmt(round(percent))}%"
    return Metric(
        f"disk:{path}",
        "Available disk space",
        percent,
        "%",
        limits.disk,
        limits.disk_warning,
        "disk_free" if path == "/" else f"disk_free {path}",
        summary=f"disk {path} {shown} free",
        measured=f"{shown} of {path} ({free // MB} MB of {total // MB} MB)",
        where="" if path == "/" else f" on {path}",
        top="100",
        samples=(("health_disk_free_ratio", {"path": path}, percent / 100),),
    )


def memory_metric(
    available: int, limits: Limits, scope: str = "on the host", limit: int | None = None
) -> Metric:
    """scope: whose memory, 'on the host' or 'in cgroup v1 /x (limit 256MB)'; limit
    the cgroup's, the top of the perfdata's range."""
    capped = () if limit is None else (("health_memory_limit_bytes", {}, float(limit)),)
    return Metric(
        "memory",
        "Available memory",
        available,
        "B",
        limits.memory,
        limits.memory_warning,
        "mem_available",
        summary=f"memory {available // MB} MB available {scope}",
        measured=f"{megabytes(available)} {scope}",
        top="" if limit is None else str(limit),
        samples=(("health_memory_available_bytes", {}, float(available)), *capped),
    )


def evaluate_resolution(host: str, expected: str, resolved: str | None) -> Result:
    good = resolved == expected
    seen = resolved or "nothing"
    local = host == "localhost"
    return Result(
        key="localhost" if local else f"resolve:{host}",
        status=OK if good else CRITICAL,
        summary=f"{host} resolves" if good else f"{host} resolves to {seen}, not {expected}",
        problem=f"{host} cannot be resolved to {expected}",
        recovery=f"{host} resolves to {expected} again",
        detail=f"Measured: {host} resolved to {seen} (within {fmt(RESOLVE_TIMEOUT)} s);"
        f" expected {expected}",
        perf=[
            perf("localhost" if local else f"resolve {host}", str(int(good)), "", "1:", "0", "1")
        ],
        metrics=[("health_name_resolves", {"host": host, "expected": expected}, float(good))],
    )


@dataclass(frozen=True)
class Probe:
    """One URL probe: good is 200 with the whole body within the URL timeout; error
    says why no whole page came ('refused', 'timed out', 'short page ...')."""

    label: str
    code: int | None
    seconds: float
    error: str
    timeout: float

    @property
    def whole(self) -> bool:
        return self.code == 200 and not self.error

    @property
    def good(self) -> bool:
        return self.whole and self.seconds <= self.timeout

    def reason(self) -> str:
        """Why the probe was bad, or how long the good one took."""
        if self.error:
            return self.error
        if self.code != 200:
            return f"status {self.code}"
        if not self.good:
            return f"slow: {self.seconds:.2f} s, over {fmt(self.timeout)} s"
        return f"answered in {self.seconds:.2f} s"

    def perf(self) -> str:
        """The time of a whole page; U (undetermined) when none came."""
        value = f"{self.seconds:.3f}s" if self.whole else "U"
        return perf(f"url {self.label}", value, "", fmt(self.timeout), "0")

    def metrics(self) -> list:
        labels = {"url": self.label}
        seconds = [("health_url_response_seconds", labels, self.seconds)] if self.whole else []
        return [("health_url_up", labels, float(self.good)), *seconds]


def evaluate_url(probe: Probe, shown: str) -> Result:
    """A URL without an SLO: every bad probe is CRITICAL."""
    limit = fmt(probe.timeout)
    return Result(
        key=f"url:{probe.label}",
        status=OK if probe.good else CRITICAL,
        summary=f"{probe.label} {probe.reason()}"
        if probe.good
        else f"{probe.label}: " + probe.reason(),
        problem=f"{shown} did not answer 200 within {limit} seconds",
        recovery=f"{shown} answers 200 within {limit} seconds again",
        detail=f"Measured: {shown}: {probe.reason()}; expected HTTP 200 within {limit} s",
        perf=[probe.perf()],
        metrics=probe.metrics(),
    )


# CRITICAL outranks UNKNOWN: a check that cannot measure must not hide one that fails.
SEVERITY = {OK: 0, WARNING: 1, UNKNOWN: 2, CRITICAL: 3}
SEPARATOR = ". "  # between the line's parts: Nagios would show a ';' as ':'


def overall(results: list[Result]) -> int:
    return max((r.status for r in results), key=SEVERITY.__getitem__, default=OK)


def unmeasured(key: str, noun: str, why: str, name: str) -> Result:
    """A check that could not measure: UNKNOWN for itself alone, U in perfdata."""
    return Result(
        key=key,
        status=UNKNOWN,
        summary=f"{noun} cannot be measured: {why}",
        problem=f"{noun} cannot be measured",
        recovery=f"{noun} can be measured again",
        detail=f"Measured: nothing; {noun.lower()} cannot be measured: {why}",
        perf=[perf(name, "U", "", "")],
    )


def status_line(results: list[Result], problems: list[str], notes: Sequence[str] = ()) -> str:
    """The Monitoring Plugins line: the worst status, what is wrong (worst first, then
    every URL whose probe failed) or, when nothing is, every summary, then the notes;
    all perfdata."""
    status = UNKNOWN if problems else overall(results)
    named = [r for r in results if r.status != OK or r.named]
    wrong = sorted(named, key=lambda r: -SEVERITY[r.status])
    text = SEPARATOR.join([*problems, *(r.summary for r in wrong or results), *notes])
    perfdata = " ".join(p for r in results for p in r.perf)
    return f"HEALTH {STATUS_WORDS[status]} - {plain(text)}" + (f" | {perfdata}" if perfdata else "")


def plain(text: str) -> str:
    """Text as every engine shows it alike: one line, no '|' (the perfdata's mark) and
    no ';' (Nagios turns it into ':'); a ';' inside a value (a URL's path) as %3B."""
    text = " ".join(text.replace("|", "/").split())
    return text.replace("; ", ", ").replace(";", "%3B")


# Family: (type, help). Counters only grow: they come from the state's totals.
FAMILIES = {
    "health_cpu_usage_ratio": ("gauge", "CPU usage over the sample, 0 to 1."),
    "health_disk_free_ratio": ("gauge", "Available disk space as a fraction of the disk."),
    "health_memory_available_bytes": ("gauge", "Memory available to new processes, in bytes."),
    "health_memory_limit_bytes": ("gauge", "The cgroup's memory limit, when it has one."),
    "health_name_resolves": ("gauge", "1 when the host resolves to the expected address."),
    "health_url_up": ("gauge", "1 when the URL answered 200 within the time limit."),
    "health_url_response_seconds": ("gauge", "Time the URL took to answer, in seconds."),
    "health_url_probes_total": ("counter", "URL probes recorded for the SLI."),
    "health_url_good_probes_total": ("counter", "URL probes that answered 200 in time."),
    "health_slo_objective_ratio": ("gauge", "The URL's SLO, 0 to 1."),
    "health_slo_good_ratio": ("gauge", "Good probes over the SLO window so far, 0 to 1."),
    "health_slo_error_budget_remaining_ratio": (
        "gauge",
        "Share of the window's error budget left; negative when overspent.",
    ),
    "health_check_ok": ("gauge", "1 when the check passes its critical threshold."),
    "health_check_measured": ("gauge", "0 when the check could not measure (UNKNOWN)."),
    "health_check_last_run_timestamp_seconds": ("gauge", "When health_check.py last ran."),
}


def prometheus_text(results: list[Result], now: float) -> str:
    """Measurements in Prometheus text format, base units, one HELP/TYPE per family."""
    samples: dict[str, list[str]] = {name: [] for name in FAMILIES}
    for result in results:
        for name, labels, value in result.metrics:
            samples[name].append(f"{name}{format_labels(labels)} {float(value)!r}")
        check = format_labels({"check": result.key})
        known = result.status != UNKNOWN
        samples["health_check_measured"].append(f"health_check_measured{check} {float(known)!r}")
        if known:  # no verdict on what could not be measured
            ok = float(result.status != CRITICAL)
            samples["health_check_ok"].append(f"health_check_ok{check} {ok!r}")
    samples["health_check_last_run_timestamp_seconds"].append(
        f"health_check_last_run_timestamp_seconds {float(now)!r}"
    )
    lines = []
    for name, values in samples.items():
        kind, text = FAMILIES[name]
        if values:
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", *values]
    return "\n".join(lines) + "\n"


def format_labels(labels: dict[str, str]) -> str:
    """{path="/"}, with the escapes the text format defines for label values."""
    if not labels:
        return ""
    escaped = (f'{k}="{escape_label_value(v)}"' for k, v in labels.items())
    return "{" + ",".join(escaped) + "}"


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# -- pure functions: the SLO ---------------------------------------------------------------


def new_series() -> dict:
    """One URL's SLI: one-minute buckets [minute, minutes covered, good ones] for the
    short windows, hourly ones for the SLO window, and totals of probes that only grow
    (Prometheus counters)."""
    return {"start": None, "minutes": [], "hours": [], "probes": 0, "good": 0}


def covered_by(series: dict, minute: int) -> int:
    """The minutes a probe in `minute` stands for: since the last probe, at most
    MOST_COVERED; the first probe stands for its own minute."""
    minutes = series["minutes"]
    return min(minute - minutes[-1][0], MOST_COVERED) if minutes else 1


def record(series: dict, now: float, good: bool, window: float) -> bool:
    """Count one probe for the minutes it covers; False when this minute already has
    one (another mode's run)."""
    minute, hour = int(now // 60), int(now // 3600)
    minutes, hours = series["minutes"], series["hours"]
    if minutes and minutes[-1][0] >= minute:
        return False
    covered = covered_by(series, minute)
    fine = covered if good else 0
    series["start"] = series["start"] if series["start"] is not None else minute * 60
    minutes.append([minute, covered, fine])
    if hours and hours[-1][0] == hour:
        hours[-1][1] += covered
        hours[-1][2] += fine
    else:
        hours.append([hour, covered, fine])
    series["probes"] += 1
    series["good"] += int(good)
    del minutes[: sum(1 for m in minutes if m[0] <= minute - MINUTES_KEPT)]
    first_hour = hour - int(window // 3600) + 1
    del hours[: sum(1 for h in hours if h[0] < first_hour)]
    return True


def burn_rate(series: dict, now: float, seconds: int, slo: float) -> float:
    """Bad share of the minutes probed in the last `seconds` (a probe counts for the
    minutes it covers), over the share the SLO allows."""
    first = int(now // 60) - seconds // 60 + 1
    probed = good = 0
    for minute, count, fine in series["minutes"]:
        if minute >= first:
            probed, good = probed + count, good + fine
    return (probed - good) / probed / (1 - slo) if probed else 0.0


@dataclass(frozen=True)
class Budget:
    url: str
    slo: float
    window: float  # seconds
    covered: int  # minutes of the window since the first probe
    probed: int  # minutes the probes stand for
    good: int  # of them, minutes of good probes
    burn: dict[str, float]

    @property
    def ratio(self) -> float:
        return self.good / self.probed if self.probed else 1.0

    @property
    def missing(self) -> int:
        """Minutes no probe stands for: the host or the check was down."""
        return max(self.covered - self.probed, 0)

    @property
    def total(self) -> float:
        """The budget in minutes: the time covered x (1 - SLO)."""
        return self.covered * (1 - self.slo)

    @property
    def spent(self) -> float:
        """Minutes spent: each bad probe spends the minutes it stands for."""
        return float(self.probed - self.good)

    @property
    def left(self) -> float:
        return self.total - self.spent

    @property
    def left_ratio(self) -> float:
        return self.left / self.total if self.total else 1.0

    def burning(self) -> str:
        """'fast', 'slow' or '': the SRE Workbook's multiwindow rule, fast first.

        Before a rule's long window has filled, its rates are over the probes
        recorded, so an outage right after installing mails at once. But once a
        faster rule's window has filled, a slower rule waits for its own: an hour of
        history says nothing about six, and over the probes recorded the slow rule
        would call the 4th bad minute after one good hour a burn (the fast rule
        rightly waits for the 9th: 2% of a 30-day budget in an hour)."""
        days = self.window / 86400
        faster_filled = False
        for name, (long, short, share) in {"fast": FAST_BURN, "slow": SLOW_BURN}.items():
            filled = self.covered * 60 >= BURN_WINDOWS[long]
            limit = burn_limit(share, days, long)
            judged = filled or not faster_filled
            if judged and self.burn[long] > limit and self.burn[short] > limit:
                return name
            faster_filled = faster_filled or filled
        return ""


def burn_limit(share: float, days: float, window: str) -> float:
    """14.4 for 2% of 30 days in 1 h, 6 for 5% in 6 h."""
    return share * days * 86400 / BURN_WINDOWS[window]


def budget(url: str, series: dict, now: float, slo: float, window: float) -> Budget:
    """The figures over the SLO window, or over the time covered before a full window."""
    minute, hour = int(now // 60), int(now // 3600)
    first_hour = hour - int(window // 3600) + 1
    start = series["start"]
    first_minute = max(first_hour * 60, int(start // 60)) if start is not None else minute + 1
    probed = good = 0
    for bucket, count, fine in series["hours"]:
        if bucket >= first_hour:
            probed, good = probed + count, good + fine
    burn = {name: burn_rate(series, now, seconds, slo) for name, seconds in BURN_WINDOWS.items()}
    return Budget(url, slo, window, minute - first_minute + 1, probed, good, burn)


def duration(minutes: float) -> str:
    if minutes < 120:
        return f"{fmt(round(minutes))} min"
    if minutes < 2 * 1440:
        return f"{fmt(round(minutes / 60, 1))} h"
    return f"{fmt(round(minutes / 1440, 1))} days"


def minutes(value: float) -> str:
    """43.2, but 0.01 (not 0.0) for the budget of a minute at 99%."""
    return f"{value:.1f}" if abs(value) >= 1 else f"{value:.2f}"


def budget_lines(figures: Budget) -> list[str]:
    """The report and the SLO mail's facts; before a full window, what its budget means."""
    window = duration(figures.window / 60)
    filled = figures.covered * 60 >= figures.window
    covered = "" if filled else f" ({duration(figures.covered)} so far)"
    rates = ", ".join(f"{name} {value:.1f}" for name, value in figures.burn.items())
    days = figures.window / 86400
    fast, slow = (burn_limit(share, days, long) for long, _, share in (FAST_BURN, SLOW_BURN))
    lines = [
        f"{figures.url}  SLO {fmt(figures.slo * 100)}% over {window}{covered}",
        f"  good ratio    {figures.ratio:.3%} ({figures.good} of {figures.probed} min probed;"
        f" {figures.missing} min not probed)",
        f"  error budget  {minutes(figures.total)} min; spent {figures.spent:.1f} min;"
        f" left {minutes(figures.left)} min ({figures.left_ratio:.1%})",
        f"  burn rates    {rates} (alert: 1h and 5m over {fmt(round(fast, 2))},"
        f" 6h and 30m over {fmt(round(slow, 2))})",
    ]
    if not filled:
        lines.append(
            f"  so far        the budget grows with the time covered: {duration(figures.covered)}"
            f" x {fmt(round((1 - figures.slo) * 100, 3))}% = {minutes(figures.total)} min, and"
            f" each bad probe spends the minutes it stands for, so a short history can sink far"
            f" below 0%; it settles as the {window} fill"
        )
    return lines


def evaluate_slo(figures: Budget, series: dict, warning: Range, probe: Probe, shown: str) -> Result:
    """A URL with an SLO: this minute's probe first (why it failed), then the budget;
    the burn rates make it CRITICAL, not one bad minute."""
    label, slo = figures.url, f"{fmt(figures.slo * 100)}%"
    burning = figures.burning()
    left = figures.left_ratio * 100
    status = CRITICAL if burning else WARNING if warning.alerts(left) else OK
    over = duration(figures.covered) + (" so far" if figures.covered * 60 < figures.window else "")
    last = "" if probe.good else f": {probe.reason()},"
    summary = (
        f"{label}{last} SLO {slo}: {figures.ratio:.2%} good over {over},"
        f" {left:.0f}% of its budget left"
    )
    if burning:
        long = FAST_BURN[0] if burning == "fast" else SLOW_BURN[0]
        summary += f", burning {figures.burn[long]:.1f}x its budget over {long}"
    labels = {"url": label}
    measured = f"Measured: {shown}: {probe.reason()} (this run's probe)"
    return Result(
        key=f"url:{label}",
        status=status,
        summary=summary,
        problem=f"{shown} is burning its error budget too fast (SLO {slo})",
        recovery=f"{shown} is no longer burning its error budget too fast (SLO {slo})",
        detail="\n".join([measured, *budget_lines(figures)]),
        named=not probe.good,
        perf=[
            probe.perf(),
            perf(f"slo_good {label}", f"{figures.ratio * 100:.3f}%", "", "", "0", "100"),
            perf(f"slo_budget_left {label}", f"{left:.1f}%", warning.perf(), "", "", "100"),
        ],
        metrics=[
            *probe.metrics(),
            ("health_url_probes_total", labels, float(series["probes"])),
            ("health_url_good_probes_total", labels, float(series["good"])),
            ("health_slo_objective_ratio", labels, figures.slo),
            ("health_slo_good_ratio", labels, figures.ratio),
            ("health_slo_error_budget_remaining_ratio", labels, figures.left_ratio),
        ],
    )


# -- pure functions: alerting ---------------------------------------------------------------


@dataclass(frozen=True)
class Mail:
    key: str
    subject: str
    body: str
    recovery: bool


def mail_body(first: str, result: Result, now: float) -> str:
    """The lab's sentence first, then which host, what against which threshold, when."""
    when = datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{first}\n\nHost: {socket.gethostname()}\n{result.detail}\nWhen: {when}\n"


def plan_mails(
    results: list[Result], checks: dict, now: float, remind: float, every_run: bool
) -> tuple[list[Mail], dict]:
    """The mails to send and the checks' state to keep if they all go out.

    checks maps a check's key to {"since": t, "last_mailed": t or None, "recovery":
    the recovery subject of the last alert}: a recovery answers what was mailed, a
    disk that could not be measured 'can be measured again'."""
    mails: list[Mail] = []
    kept: dict = {}
    for result in results:
        previous = checks.get(result.key)
        # A check that cannot measure mails once too (cron has no other way to say
        # so), and is no recovery of the problem it had.
        if result.status in (CRITICAL, UNKNOWN):
            entry = dict(previous or {"since": now, "last_mailed": None})
            last = entry["last_mailed"]
            if every_run or last is None or now - last >= remind:
                body = mail_body(ALERT_BODY, result, now)
                mails.append(Mail(result.key, f"Error - {result.problem}", body, False))
                entry["last_mailed"], entry["recovery"] = now, result.recovery
            kept[result.key] = entry
        elif previous and previous["last_mailed"] is not None:
            body = mail_body(RECOVERY_BODY, result, now)
            subject = f"Recovered - {previous.get('recovery') or result.recovery}"
            mails.append(Mail(result.key, subject, body, True))
    return mails, kept


def unsent(kept: dict, old: dict, failed: list[Mail]) -> dict:
    """The checks' state when `failed` mails did not go out: they will be tried again."""
    checks = dict(kept)
    for mail in failed:
        if mail.recovery:
            checks[mail.key] = old[mail.key]
        else:
            before = old.get(mail.key, {})
            checks[mail.key] = {
                **checks[mail.key],
                "last_mailed": before.get("last_mailed"),
                "recovery": before.get("recovery"),
            }
    return checks


# -- the state file ----------------------------------------------------------------------------


def is_time(value: object) -> bool:
    """A finite time from the epoch to LATEST (JSON may hold NaN, Infinity, 1e300)."""
    return type(value) in (int, float) and 0 <= value <= LATEST


def is_count(value: object, most: int = MAX_COUNT) -> bool:
    return type(value) is int and 0 <= value <= most


def valid_checks(checks: object) -> dict:
    """The checks part of a state, or ValueError when any entry has a wrong type or a
    time that is no time (a NaN or far-future last_mailed would silence the alert)."""
    if not isinstance(checks, dict):
        raise ValueError("checks is not a mapping")
    for key, entry in checks.items():
        if not (isinstance(entry, dict) and is_time(entry.get("since"))):
            raise ValueError(f"check {key!r} has no time it started failing")
        last = entry.get("last_mailed")
        if not (last is None or is_time(last)):
            raise ValueError(f"check {key!r}: last_mailed {last!r}")
        if not isinstance(entry.get("recovery") or "", str):
            raise ValueError(f"check {key!r}: recovery {entry['recovery']!r}")
    return checks


def valid_bucket(bucket: object, latest: float, most: int) -> bool:
    """[time, minutes probed, good minutes], with 0 <= good <= probed <= most."""
    return (
        isinstance(bucket, list)
        and len(bucket) == 3
        and is_count(bucket[0], int(latest))
        and is_count(bucket[1], most)
        and is_count(bucket[2], bucket[1])
    )


def valid_slo(slo: object) -> dict:
    if not isinstance(slo, dict):
        raise ValueError("slo is not a mapping")
    for url, series in slo.items():
        if not isinstance(series, dict):
            raise ValueError(f"the series of {url} is not a mapping")
        minutes, hours = series["minutes"], series["hours"]
        if not (
            isinstance(minutes, list)
            and isinstance(hours, list)
            and all(valid_bucket(b, LATEST / 60, MOST_COVERED) for b in minutes)
            and all(valid_bucket(b, LATEST / 3600, 60 + MOST_COVERED) for b in hours)
        ):
            raise ValueError(
                f"the probes of {url} are not [time, minutes probed, good minutes] buckets"
            )
        if not (is_count(series["probes"]) and is_count(series["good"], series["probes"])):
            raise ValueError(f"the totals of {url} are not whole numbers of probes")
        if not (series["start"] is None or is_time(series["start"])):
            raise ValueError(f"the start of {url} is not a time")
        if not (series.get("slo") is None or 0.5 <= series["slo"] < 1):
            raise ValueError(f"the SLO of {url} is not a fraction from 0.5 to 1")
    return slo


def settle(state: dict, now: float) -> list[str]:
    """Make the state fit a clock that went back (or a HEALTH_NOW before the last
    run): probes after `now` are dropped, so that new ones are counted again, and
    mailing times after it become `now`, so reminders keep their pace. What changed."""
    changed = []
    for key, entry in state["checks"].items():
        for name in ("since", "last_mailed"):
            if entry.get(name) is not None and entry[name] > now:
                entry[name] = now
                changed.append(f"{key} {name}")
    for url, series in state["slo"].items():
        for name, size in (("minutes", 60), ("hours", 3600)):
            kept = sorted(b for b in series[name] if b[0] <= now // size)
            if kept != series[name]:
                series[name] = kept
                changed.append(f"{url} {name}")
        if series["start"] is not None and series["start"] > now:
            series["start"] = now // 60 * 60
            changed.append(f"{url} start")
    return changed


def parse_state(text: str) -> dict:
    """The state, checked; version 1 (before the SLO) keeps what it had mailed, and
    version 2's buckets of probes are buckets of minutes (cron probed once a minute)."""
    document = json.loads(text)
    if not isinstance(document, dict) or document.get("version") not in (1, 2, STATE_VERSION):
        raise ValueError(f"not a version {STATE_VERSION} state")
    if document["version"] == 1:
        document = {"checks": document["checks"], "slo": {}, "saved": 0.0}
    return {
        "checks": relabel_checks(valid_checks(document["checks"])),
        "slo": relabel(valid_slo(document["slo"])),
        "saved": float(document["saved"]) if is_time(document["saved"]) else 0.0,
    }


def relabel(slo: dict) -> dict:
    """Series as 2.0.0 kept them, under the whole URL (with its query string, a token
    perhaps), under their label instead: the token is gone at the next save."""
    return {(url_label(key) if "://" in key else key): series for key, series in slo.items()}


def relabel_checks(checks: dict) -> dict:
    """'url:URL' and 'slo:URL' of 2.0.0 become the URL's one check, 'url:LABEL'."""
    kept: dict = {}
    for key, entry in checks.items():
        kind, _, rest = key.partition(":")
        if kind in ("url", "slo") and "://" in rest:
            key = f"url:{url_label(rest)}"
        kept.setdefault(key, entry)
    return kept


def empty_state() -> dict:
    return {"checks": {}, "slo": {}, "saved": 0.0}


class StateFile:
    """The state as one object, after nagiosplugin's Cookie: `with` takes the
    exclusive lock (waiting a bounded time) and loads; a corrupt or wrongly typed
    file is reset with a warning; commit() writes atomically with fsync.

    When the state cannot be saved (read-only folder, full disk), the lock file's
    time remembers the last mailing instead: it changes no data blocks, so it
    works on a full disk, and keeps alerts to one round per --remind."""

    def __init__(self, path: Path, wait: float):
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self.wait = wait
        self.handle: IO[str] | None = None
        self.data = empty_state()
        self.notes: list[str] = []  # warnings: logged, or with --nagios on the status line

    def __enter__(self) -> StateFile:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Non-blocking: opening a FIFO for writing would wait for a reader forever.
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC
            fd = os.open(self.lock_path, flags, 0o644)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise OSError(errno.EEXIST, "not a regular file")
            self.handle = os.fdopen(fd, "a")
        except OSError as error:
            raise Unknown(
                f"cannot use the lock file {self.lock_path}: {error.strerror} (set --state)"
            ) from None
        self.acquire()
        self.data = self.load()
        return self

    def acquire(self) -> None:
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    self.handle.close()
                    raise Unknown(
                        f"another health_check.py run holds {self.lock_path}"
                        f" (waited {fmt(self.wait)} s)"
                    ) from None
                time.sleep(0.05)

    def load(self) -> dict:
        try:
            return parse_state(read_capped(self.path, STATE_LIMIT).decode("utf-8"))
        except FileNotFoundError:
            return empty_state()
        except (OSError, UnicodeError, ValueError, KeyError, TypeError, RecursionError) as error:
            reason = getattr(error, "strerror", None) or error
            self.notes.append(f"state file {self.path} is unusable ({reason}); starting afresh")
            return empty_state()

    def commit(self, now: float) -> None:
        """Save the state; OSError when it cannot be."""
        self.data["saved"] = now
        document = {"version": STATE_VERSION, **self.data}
        write_atomically(self.path, json.dumps(document, separators=(",", ":")))
        if self.unsaved_mailing() is not None:
            os.utime(self.handle.fileno())  # saved again: the mark is over

    def unsaved_mailing(self) -> float | None:
        """When mail last went out while the state could not be saved."""
        times = os.fstat(self.handle.fileno())
        return times.st_mtime if times.st_atime == 0 else None

    def mark_unsaved_mailing(self, now: float) -> None:
        """An access time of 0 marks the lock file; nothing else sets it, and nothing
        reads the file, so the mark stays until a save clears it."""
        os.utime(self.handle.fileno(), (0, now))

    def __exit__(self, *exc: object) -> None:
        self.handle.close()  # closing drops the lock


# -- measuring ------------------------------------------------------------------------------------


class Background:
    """A call in a daemon thread: a call that hangs cannot hold the run or its exit."""

    def __init__(self, function: Callable, *args: object):
        self.value: object = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.started = time.monotonic()
        threading.Thread(target=self.run, args=(function, args), daemon=True).start()

    def run(self, function: Callable, args: tuple) -> None:
        try:
            self.value = function(*args)
        except Exception as error:  # handed to the waiting thread by result()
            self.error = error
        finally:
            self.done.set()

    def result(self, timeout: float) -> object:
        """The call's value (its exception raised here), or None when not done in time.
        Waits in SIGNAL_CHECK steps: a stop that lands as the wait begins is acted on."""
        end = time.monotonic() + max(timeout, 0)
        while not self.done.wait(min(SIGNAL_CHECK, max(end - time.monotonic(), 0))):
            if time.monotonic() >= end:
                return None
        if self.error is not None:
            raise self.error
        return self.value


class Deadline:
    """The run's budget (-t): each stage waits for what is left of it."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds - RESERVE

    def left(self) -> float:
        return max(self.end - time.monotonic(), 0.0)

    def wait(self, background: Background, stage: str, limit: float = math.inf) -> object:
        """The value of a stage; Unknown naming it when the run's time is up first."""
        allowed = min(limit, self.left())
        value = background.result(allowed)
        if not background.done.is_set() and allowed < limit:
            raise Unknown(self.expired(stage))
        return value

    def expired(self, stage: str) -> str:
        return f"timed out after {fmt(self.seconds)} s while {stage} (-t/--timeout)"


def resolve(host: str) -> str | None:
    """The IPv4 address of host, None when it does not resolve."""
    try:
        return socket.gethostbyname(host)
    except (OSError, UnicodeError):
        return None


def http_only_opener():  # -> urllib.request.OpenerDirector, imported in the probe's thread
    """An opener that follows redirects to http(s) only: urllib would follow one to
    ftp://, reaching whatever internal server the page names."""
    import urllib.request

    class HttpOnly(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, request, answer, code, message, headers, new_url):
            if urllib.parse.urlsplit(new_url).scheme not in ("http", "https"):
                return None  # urllib then raises HTTPError with the redirect's code
            return super().redirect_request(request, answer, code, message, headers, new_url)

    return urllib.request.build_opener(HttpOnly)


def why(error: BaseException) -> str:
    """Why a probe got no page, in a few stable words (never the URL, which a
    library's message may hold with its query string)."""
    import http.client

    reason = getattr(error, "reason", error)  # URLError wraps the socket's error
    if isinstance(reason, ConnectionRefusedError):
        return "refused"
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(error, http.client.IncompleteRead):
        return "short page (the connection closed before the whole page came)"
    if isinstance(reason, OSError) and reason.strerror:
        return f"no answer ({reason.strerror})"
    if isinstance(reason, OSError) and isinstance(getattr(reason, "reason", None), str):
        return f"no answer ({reason.reason})"  # ssl errors: CERTIFICATE_VERIFY_FAILED
    return f"bad answer ({type(reason).__name__})"


def fetch(target: Target, timeout: float) -> Probe:
    """Ask for the page and read all of it (up to MAX_BODY), timing the whole.
    Credentials in the URL go as HTTP basic authentication, never into the Probe."""
    import base64  # imported here, in the probe's thread, while the CPU is sampled
    import http.client
    import urllib.error
    import urllib.request

    parts = urllib.parse.urlsplit(target.url)
    # As a browser sends it: a space or other unsafe character percent-encoded.
    path, query = (urllib.parse.quote(text, safe=URL_SAFE) for text in (parts.path, parts.query))
    netloc = parts.netloc.rpartition("@")[2]
    address = parts._replace(netloc=netloc, path=path, query=query, fragment="").geturl()
    start = time.monotonic()
    try:
        request = urllib.request.Request(address)
    except ValueError as error:  # its message holds the URL, query string and all
        return Probe(target.label, None, 0.0, why(error), timeout)
    if parts.username is not None:
        login = (
            f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        )
        # Unredirected: a redirect to another host must not carry the password there.
        credentials = base64.b64encode(login.encode()).decode()
        request.add_unredirected_header("Authorization", "Basic " + credentials)
    try:
        with http_only_opener().open(request, timeout=timeout) as answer:
            received, error = 0, ""
            while chunk := answer.read(65536):
                received += len(chunk)
                if received > MAX_BODY:
                    error = f"page over {MAX_BODY // MB} MB, not read whole"
                    break
                if time.monotonic() - start > timeout:  # a page that trickles
                    error = f"timed out (page not whole after {fmt(timeout)} s)"
                    break
            missing = getattr(answer, "length", None)  # what Content-Length promised more
            if not error and missing:
                error = f"short page ({received} of {received + missing} bytes)"
            return Probe(target.label, answer.status, time.monotonic() - start, error, timeout)
    except urllib.error.HTTPError as error:
        return Probe(target.label, error.code, time.monotonic() - start, "", timeout)
    except (OSError, ValueError, http.client.HTTPException) as error:
        return Probe(target.label, None, time.monotonic() - start, why(error), timeout)


CGROUP_ERRORS = (OSError, ValueError, IndexError, ArithmeticError)


class UsageUnreadable(Exception):
    """A cgroup limit is set but what the cgroup uses cannot be read: measured against
    the host instead, the check would pass a container about to be killed."""


def cgroup_root() -> Path:
    """A folder standing for / when reading cgroups: HEALTH_CGROUP_ROOT, for tests only."""
    return Path(os.environ.get("HEALTH_CGROUP_ROOT") or "/")


@dataclass(frozen=True)
class Cgroup:
    """This process's cgroup for one controller: its folder, the hierarchy's mount
    (limits set on a parent count too) and its name in /proc/self/cgroup."""

    version: int
    folder: Path
    mount: Path
    name: str

    def ancestors(self) -> list[Path]:
        folders = [self.folder]
        while folders[-1] != self.mount and self.mount in folders[-1].parents:
            folders.append(folders[-1].parent)
        return folders

    def limits(self, name: str, parse: Callable[[str], float | None]) -> list[float]:
        found = [parse((f / name).read_text()) for f in self.ancestors() if (f / name).exists()]
        return [value for value in found if value is not None]


def own_cgroups(root: Path) -> dict[str, Cgroup]:
    """Controller name -> this process's cgroup, from /proc/self/cgroup: v1 lines
    `4:memory:/path` (hierarchy mounted at /sys/fs/cgroup/<controllers>), v2's
    `0::/path` (mounted at /sys/fs/cgroup). A v1 controller wins in a hybrid setup. A
    path missing under the mount (a container seeing its own cgroup as the root)
    is the mount itself."""
    mount = root / "sys" / "fs" / "cgroup"
    found: dict[str, Cgroup] = {}
    unified = None
    for line in (root / "proc" / "self" / "cgroup").read_text().splitlines():
        _, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if controllers:
            for name in controllers.split(","):
                base = next((b for b in (mount / controllers, mount / name) if b.is_dir()), None)
                if base is not None:
                    folder = base / path.lstrip("/")
                    found.setdefault(
                        name, Cgroup(1, folder if folder.is_dir() else base, base, path)
                    )
        elif (mount / "cgroup.controllers").is_file():
            folder = mount / path.lstrip("/")
            unified = Cgroup(2, folder if folder.is_dir() else mount, mount, path)
    if unified is not None:
        for name in (mount / "cgroup.controllers").read_text().split():
            found.setdefault(name, unified)
    return found


# Where a cgroup limit is this far up, it is "no limit" however spelled: v1 writes
# 2**63 - 1 rounded down to its page size (9223372036854771712 with 4 KiB pages).
NO_LIMIT = 2**62


def no_limit(text: str) -> bool:
    """'max' (v2), '-1' or any value under 0, or one beyond NO_LIMIT (v1)."""
    value = text.strip()
    return value == "max" or int(value) < 0 or int(value) >= NO_LIMIT


def byte_limit(text: str) -> float | None:
    """memory.max or memory.limit_in_bytes as bytes; None for no limit."""
    return None if no_limit(text) else float(int(text))


def stat_value(path: Path, key: str) -> int:
    for line in path.read_text().splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    raise ValueError(f"no {key} in {path.name}")


@dataclass(frozen=True)
class Memory:
    available: int
    scope: str  # 'on the host' or 'in cgroup v1 /x (limit 256MB)'
    limit: int | None


def cgroup_memory(cgroups: dict[str, Cgroup], host: Any) -> Memory | None:
    """The cgroup's limit less what it uses (page cache it may drop not counted, as
    the kernel's own working set), when it has a limit below the host's memory."""
    group = cgroups.get("memory")
    if group is None:
        return None
    v2 = group.version == 2
    limit_file, usage_file = (
        ("memory.max", "memory.current")
        if v2
        else (
            "memory.limit_in_bytes",
            "memory.usage_in_bytes",
        )
    )
    limits = group.limits(limit_file, byte_limit)
    if not limits or min(limits) >= host.total:
        return None
    limit = int(min(limits))
    scope = f"in cgroup v{group.version} {group.name} (limit {megabytes(limit)})"
    try:
        used = int((group.folder / usage_file).read_text())
        used -= stat_value(
            group.folder / "memory.stat", "inactive_file" if v2 else "total_inactive_file"
        )
    except CGROUP_ERRORS:
        raise UsageUnreadable(
            f"the limit is set {scope}, but {usage_file} or memory.stat cannot be read"
        ) from None
    available = max(min(limit - max(used, 0), host.available), 0)
    return Memory(available, scope, limit)


def available_memory() -> Memory:
    """Memory left to this process: its cgroup's when limited, else the host's."""
    host = psutil.virtual_memory()
    try:
        limited = cgroup_memory(own_cgroups(cgroup_root()), host)
    except CGROUP_ERRORS:  # no cgroup files, not ours to read, or garbage: the host's
        limited = None
    return limited or Memory(host.available, "on the host", None)


def cpu_quota(text: str) -> float | None:
    """cpu.max 'QUOTA PERIOD' (v2; a lone 'max' too) as CPUs; None for no limit, and
    for a quota or period of 0, which the kernel never writes."""
    quota, _, period = text.strip().partition(" ")
    if no_limit(quota) or int(quota) == 0:
        return None
    period = period.split()[0] if period.strip() else "100000"  # the kernel's default
    return None if no_limit(period) or int(period) == 0 else int(quota) / int(period)


def cgroup_cpus(cgroups: dict[str, Cgroup]) -> tuple[float, Callable[[], float], str] | None:
    """(CPUs the cgroup may use, a reader of its CPU seconds so far, its name)."""
    group = cgroups.get("cpu")
    if group is None:
        return None
    if group.version == 2:
        quotas = group.limits("cpu.max", cpu_quota)
        stat = group.folder / "cpu.stat"

        def used() -> float:
            return stat_value(stat, "usage_usec") / 1e6
    else:
        period = (group.folder / "cpu.cfs_period_us").read_text().strip()
        quotas = group.limits("cpu.cfs_quota_us", lambda text: cpu_quota(f"{text} {period}"))
        accounted = cgroups.get("cpuacct", group)
        if accounted.name != group.name:  # its use is not counted on its own: the host's
            return None
        usage = accounted.folder / "cpuacct.usage"

        def used() -> float:
            return int(usage.read_text()) / 1e9

    if not quotas:
        return None
    return min(quotas), used, f"cgroup v{group.version} {group.name}"


@dataclass(frozen=True)
class Cpu:
    percent: float
    scope: str  # 'the host' or 'cgroup v2 /x (0.5 CPUs)'


def cpu_percent() -> Cpu:
    """CPU use over CPU_INTERVAL: of the cgroup's quota when it has one below the
    host's CPUs, else of the host."""
    try:
        limited = cgroup_cpus(own_cgroups(cgroup_root()))
    except CGROUP_ERRORS:
        limited = None
    if limited is None or limited[0] >= (psutil.cpu_count() or 1):
        return Cpu(psutil.cpu_percent(interval=CPU_INTERVAL), "the host")
    cpus, used, name = limited
    try:
        first, start = used(), time.monotonic()
        time.sleep(CPU_INTERVAL)
        spent, elapsed = used() - first, time.monotonic() - start
    except CGROUP_ERRORS:
        raise UsageUnreadable(
            f"the limit is set in {name}, but its CPU usage cannot be read"
        ) from None
    percent = min(max(100 * spent / (elapsed * cpus), 0.0), 100.0) if elapsed > 0 else 0.0
    return Cpu(percent, f"{name} ({fmt(round(cpus, 3))} CPUs)")


@dataclass(frozen=True)
class Pending:
    """Measurements under way, each in its own thread: one that fails or hangs (a
    hung mount) leaves the others to be reported."""

    cpu: Background
    disks: list[tuple[str, Background]]
    memory: Background
    resolved: Background
    fetched: list[tuple[Target, Background]]


def start_measuring(args: argparse.Namespace) -> Pending:
    """Every check at once in daemon threads: getaddrinfo has no timeout of its own,
    a hung mount hangs statvfs, and a trickling page outlasts urlopen's timeout.
    Started before the state is loaded, so the CPU sample hides the rest."""
    return Pending(
        Background(cpu_percent),
        [(path, Background(psutil.disk_usage, path)) for path in args.disk_path],
        Background(available_memory),
        Background(resolve, args.resolve_host),
        [(target, Background(fetch, target, args.url_timeout)) for target in args.url],
    )


def measured(background: Background, deadline: Deadline) -> tuple[Any, str]:
    """(value, '') or (None, why it could not be measured): an error, or no answer
    within MEASURE_WAIT from its start (or the run's end, if sooner)."""
    limit = background.started + CPU_INTERVAL + MEASURE_WAIT - time.monotonic()
    try:
        value = background.result(min(limit, deadline.left()))
    except Exception as error:  # whatever it was, it is this check's alone
        return None, getattr(error, "strerror", None) or str(error) or type(error).__name__
    if not background.done.is_set():
        return None, f"no answer within {fmt(time.monotonic() - background.started)} s"
    return value, ""


def local_results(limits: Limits, pending: Pending, deadline: Deadline) -> list:
    """CPU, each disk and memory, each evaluated on its own."""
    cpu, why = measured(pending.cpu, deadline)
    results = [
        unmeasured("cpu", "CPU usage", why, "cpu")
        if why
        else evaluate(cpu_metric(cpu.percent, limits, cpu.scope))
    ]
    for path, background in pending.disks:
        usage, why = measured(background, deadline)
        if why:
            name = "disk_free" if path == "/" else f"disk_free {path}"
            results.append(unmeasured(f"disk:{path}", f"Disk space of {path}", why, name))
        else:
            results.append(evaluate(disk_metric(path, usage.free, usage.total, limits)))
    memory, why = measured(pending.memory, deadline)
    if why:
        results.append(unmeasured("memory", "Available memory", why, "mem_available"))
    else:
        metric = memory_metric(memory.available, limits, memory.scope, memory.limit)
        results.append(evaluate(metric))
    return results


def measure(
    args: argparse.Namespace, pending: Pending, deadline: Deadline
) -> tuple[list[Result], list[Probe]]:
    """The results of the checks, waiting for each within the run's budget."""
    results = local_results(args.limits, pending, deadline)
    address = deadline.wait(pending.resolved, f"resolving {args.resolve_host}", RESOLVE_TIMEOUT)
    results.append(evaluate_resolution(args.resolve_host, args.resolve_address, address))
    probes = []
    for target, background in pending.fetched:
        # The probe's own limit runs from its start (beside the CPU sample), not from now.
        limit = background.started + args.url_timeout + 0.5 - time.monotonic()
        probe = deadline.wait(background, f"probing {target.label}", limit)
        late = f"timed out (no whole answer within {fmt(args.url_timeout)} s)"
        timeout = args.url_timeout
        probes.append(probe or Probe(target.label, None, timeout, late, timeout))
    return results, probes


# -- mailing -------------------------------------------------------------------------------------


def send_all(emails, mails: list[Mail], args: argparse.Namespace, sent: list[Mail]) -> None:
    """Send each mail, appending it to `sent` as soon as it is out."""
    for mail in mails:
        # A path or host name may hold a line break: one line, or the alert never goes.
        subject = " ".join(mail.subject.split())
        message = emails.generate_email(args.sender, args.recipient, subject, mail.body)
        emails.send_email(message, {**os.environ, "SMTP_TIMEOUT": str(args.smtp_timeout)})
        sent.append(mail)


def send_mails(
    mails: list[Mail], args: argparse.Namespace, deadline: Deadline
) -> tuple[list[Mail], list[str]]:
    """Send in a daemon thread under the run's deadline: a server that trickles a byte
    every few seconds beats every socket timeout, not this. The mails known to be
    sent, and the failure in words (the others are tried again next run)."""
    import emails  # checked at start; loaded only when mailing

    sent: list[Mail] = []
    args.smtp_timeout = round(max(min(args.smtp_timeout, deadline.left()), 0.1), 1)
    sender = Background(send_all, emails, mails, args, sent)
    try:
        sender.result(deadline.left())
    except (emails.EmailError, ValueError) as error:
        failed = mails[len(sent)]
        return list(sent), [f"could not mail {failed.subject!r}: {error}; trying again next run"]
    if not sender.done.is_set():
        host = os.environ.get("SMTP_HOST") or "localhost"
        late = deadline.expired(f"sending mail through {host}")
        return list(sent), [f"{late}; trying again next run"]
    return list(sent), []


# -- one run --------------------------------------------------------------------------------------


def slo_of(args: argparse.Namespace, own: float | bool | None) -> float | None:
    return args.slo if own is True else own


def track_slos(args: argparse.Namespace, state: dict, probes: list[Probe], now: float) -> list:
    """Each URL's result: its probe alone, or recorded in its series (keyed by label:
    no credentials or query in the state) against its SLO."""
    results = []
    window = args.slo_window * 86400
    for probe, target in zip(probes, args.url, strict=True):
        slo = slo_of(args, target.slo)
        if slo is None:
            results.append(evaluate_url(probe, target.public))
            continue
        series = state["slo"].setdefault(probe.label, new_series())
        series["slo"] = slo
        record(series, now, probe.good, window)
        figures = budget(probe.label, series, now, slo, window)
        results.append(evaluate_slo(figures, series, args.budget_warning, probe, target.public))
    return results


def alert(
    args: argparse.Namespace, store: StateFile, results: list[Result], now: float, deadline
) -> tuple[bool, list[str]]:
    """Mail what needs mailing and update the checks' state: (any mail sent, problems)."""
    old = store.data["checks"]
    mails, kept = plan_mails(results, old, now, args.remind * 60, args.every_run)
    unsaved = store.unsaved_mailing()
    if unsaved is not None and now - unsaved < args.remind * 60:
        for mail in mails:  # a run whose state was lost mailed these at `unsaved`
            if not mail.recovery:
                kept[mail.key]["last_mailed"] = unsaved
        mails = [m for m in mails if m.recovery]
    sent, problems = send_mails(mails, args, deadline) if mails else ([], [])
    failed = [m for m in mails if m not in sent]
    store.data["checks"] = unsent(kept, old, failed) if failed else kept
    held = [r for r in results if r.key in kept and r.key not in {m.key for m in mails}]
    say_mailing(sent, held, args.recipient)
    return bool(sent), problems


def say_mailing(sent: list[Mail], held: list[Result], recipients: list[str]) -> None:
    """-v: what went out, and which alert is held back by --remind (a learner trying
    the check by hand sees no second mail and is told why)."""
    for mail in sent:
        log.debug("mailed %r to %s", mail.subject, ", ".join(recipients))
    for result in held:
        log.debug(
            "not mailed again: 'Error - %s' already went out; a reminder after --remind"
            " minutes, or --every-run",
            result.problem,
        )


def save(store: StateFile, now: float, mailed: bool) -> list[str]:
    try:
        store.commit(now)
    except OSError as error:
        if mailed:
            store.mark_unsaved_mailing(now)
        return [
            f"cannot save the state file {store.path}: {error.strerror or error};"
            " alerts go out at most once per --remind until it can (set --state)"
        ]
    return []


def write_textfile(args: argparse.Namespace, results: list[Result], now: float) -> list[str]:
    try:
        write_atomically(args.textfile, prometheus_text(results, now))
    except OSError as error:
        return [f"cannot write {args.textfile}: {error.strerror or error}"]
    return []


def check(
    args: argparse.Namespace, store: StateFile, now: float, deadline: Deadline, pending: Pending
) -> int:
    results, probes = measure(args, pending, deadline)
    results += track_slos(args, store.data, probes, now)
    problems = write_textfile(args, results, now) if args.textfile else []
    mailed = False
    if not args.no_email:
        mailed, trouble = alert(args, store, results, now, deadline)
        problems += trouble
    if probes or not args.no_email:
        problems += save(store, now, mailed)
    # Icinga 2 puts stderr before stdout, so a warning logged there would become the short
    # output: with --nagios the status line carries it.
    line = status_line(results, problems, store.notes if args.nagios else ())
    if args.nagios or problems:
        print(line)
    else:
        log.debug("%s", line)
    return UNKNOWN if problems else overall(results)


def slo_report(args: argparse.Namespace, state: dict, now: float) -> int:
    given = {target.label: target.slo for target in args.url}
    labels = dict.fromkeys([*given, *state["slo"]])
    if not labels:
        print("no URL has an SLO yet: give --url, and run from cron to record probes")
    for label in labels:
        own = given.get(label, state["slo"].get(label, {}).get("slo", True))
        slo = slo_of(args, own) or args.slo or 0.99
        series = state["slo"].get(label) or new_series()
        print("\n".join(budget_lines(budget(label, series, now, slo, args.slo_window * 86400))))
    return OK


# -- command line -------------------------------------------------------------------------------


class FlagsWin(argparse.Action):
    """'append' whose first flag replaces the list its variable gave (argparse's own
    would add --disk-path /b to HEALTH_DISK_PATHS=/a)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        items = getattr(namespace, self.dest, None)
        items = [] if items is None or items is self.default else items
        setattr(namespace, self.dest, [*items, values])


class Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **keywords: Any):
        super().__init__(*args, **keywords)
        self.register("action", "append", FlagsWin)

    def error(self, message: str):
        """A bad option or variable is the one UNKNOWN line (status 3) like any other
        way the check cannot run: an engine shows the line, not a usage on stderr. A
        quoted value is echoed capped, and so is the whole message."""
        raise Unknown(f"usage: {capped(quotes_capped(message), 6 * SHOWN)} (see --help)")


PERCENT_RANGE = range_type(percent_value, plain_is_minimum=False)
FREE_RANGE = range_type(percent_value, plain_is_minimum=True)
SIZE_RANGE = range_type(size_value, plain_is_minimum=True)


# --- begin shared block: cli (from blocks/cli.py; make blocks) ---
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
UNSET = object()  # the default of an option not given on the command line
STOPPING = shared("STOPPING", threading.Event())  # the first stop signal: no new request, no retry


def number(low: float, high: float, *, whole: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = int(text) if whole else float(text)
        except ValueError:
            kind = "a whole number" if whole else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"{text!r} is not from {low:g} to {high:g}")
        return value

    parse.__name__ = "whole number" if whole else "number"
    return parse


def from_env(parser: argparse.ArgumentParser, name: str, parse: Callable, default: object):
    text = os.environ.get(name, "")
    if not text.strip():
        return default
    try:
        return parse(text)
    except (argparse.ArgumentTypeError, ValueError) as error:
        parser.error(f"environment variable {name}: {error}")


@dataclass(frozen=True)
class Option:
    flags: str
    help: str
    env: str = ""
    default: Any = None
    type: Callable[[str], Any] | None = None
    metavar: str | None = None
    action: str | None = None
    shown: str | None = None
    nargs: str | None = None
    split: str | None = None

    def default_text(self) -> str:
        if self.shown is not None:
            return self.shown
        if self.default is None or self.action == "store_true" or callable(self.default):
            return ""
        return f"{self.default:g}" if isinstance(self.default, float) else str(self.default)

    def add_to(self, parser: argparse.ArgumentParser) -> argparse.Action:
        shown, names = self.default_text(), self.flags.split()
        extra = [f"default {shown}"] if shown else []
        help = " ".join([self.help, *(f"({text})" for text in extra)])
        help += f" [{self.env}]" if self.env else ""
        keywords: dict[str, Any] = {"help": help.replace("%", "%%")}
        for name in ("type", "metavar", "action", "nargs"):
            if getattr(self, name) is not None:
                keywords[name] = getattr(self, name)
        if self.action == "version":
            keywords["version"] = f"%(prog)s {__version__}"
        else:
            keywords["default"] = None if self.action == "append" else UNSET
        action = parser.add_argument(*names, **keywords)
        action.option = self  # type: ignore[attr-defined]
        return action

    def initial(self, parser: argparse.ArgumentParser) -> Any:
        value = self.from_variable_or_default(parser)
        if isinstance(value, str) and self.type is not None and value is self.default:
            return self.type(value)
        return value

    def from_variable_or_default(self, parser: argparse.ArgumentParser) -> Any:
        if callable(self.default):
            try:
                return self.default()
            except (argparse.ArgumentTypeError, ValueError) as error:
                parser.error(f"environment variable {self.env}: {error}")
        if not self.env or self.action in ("store_true", "version"):
            return self.default
        if self.action == "append":
            parse = self.type or str

            def several(text: str) -> list:
                return [parse(item) for item in text.split(self.split) if item.strip()]

            return from_env(parser, self.env, several, self.default)
        return from_env(parser, self.env, self.type or str, self.default)


STANDARD_OPTIONS = (
    Option("-q --quiet", "print only errors", action="store_true"),
    Option("-v --verbose", "print each step (never library internals)", action="store_true"),
    Option("-V --version", "show the version and exit", action="version"),
)


def build_parser(
    doc: str | None,
    options: Sequence[Option],
    parser_class: type[argparse.ArgumentParser] = argparse.ArgumentParser,
    epilog: str | None = None,
) -> argparse.ArgumentParser:
    class OptionParser(parser_class):  # type: ignore[valid-type, misc]
        def parse_known_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def]
            known, rest = super().parse_known_args(args, namespace)
            if missing_packages():  # only now: --help and -V work without the packages
                self.exit(2, f"{missing_packages()[0]}\n")
            self.not_given = set()
            for action in self._actions:
                option, value = getattr(action, "option", None), getattr(known, action.dest, None)
                if value is UNSET or (value is None and option and option.action == "append"):
                    self.not_given.add(action.dest)
                    setattr(known, action.dest, option.initial(self))
            return known, rest

    parser = OptionParser(
        description=doc, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for option in [*options, *STANDARD_OPTIONS]:
        option.add_to(parser)
    return parser


WORKING_ON = threading.local()  # the file this thread works on, named in its warnings


class WarningsToLog:
    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()

    def __call__(self, message, category, filename, lineno, file=None, line=None) -> None:
        about, text = getattr(WORKING_ON, "about", ""), " ".join(str(message).split())
        if (about, text) in self.seen:
            return
        self.seen.add((about, text))
        developers = issubclass(category, (DeprecationWarning, PendingDeprecationWarning))
        level = logging.DEBUG if developers else logging.WARNING
        logging.getLogger("py.warnings").log(level, "%s", f"{about}: {text}" if about else text)


SHOWN_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(32), *range(127, 160)] if c not in (9, 10)}
SHOWN_CONTROLS |= {c: f"\\u{c:04x}" for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]}
SHOWN_CONTROLS |= {0x2028: "\\u2028", 0x2029: "\\u2029"}


class PrintableFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).encode("utf-8", "surrogateescape")
        return text.decode("utf-8", "backslashreplace").translate(SHOWN_CONTROLS)


def configure_logging(quiet: bool, verbose: bool) -> None:
    import warnings  # here: only this function of the block needs it

    level = logging.ERROR if quiet else logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PrintableFormatter("%(levelname)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    for library in ("PIL", "urllib3", "requests", "reportlab", "asyncio", "mail.log", "django"):
        logging.getLogger(library).setLevel(max(level, logging.WARNING))
    warnings.filterwarnings("always", module=r"PIL\.", append=True)
    warnings.showwarning = WarningsToLog()


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP as KeyboardInterrupt: what finishes outputs after
    Ctrl-C runs for them too."""


Interrupted = shared("Interrupted", Interrupted)  # type: ignore[misc]
HELD = shared("HELD", {"depth": 0, "pending": ""})


def raise_interrupted(signum: int, frame: object) -> None:
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda *_: None)
    STOPPING.set()
    name = signal.Signals(signum).name
    if HELD["depth"]:
        HELD["pending"] = name
        return
    raise Interrupted(name)


SIGNAL_CHECK = 0.2


def say_error(text: str) -> None:
    if logging.getLogger().handlers:
        logging.getLogger().error("%s", text)
    else:
        print(f"ERROR {text}", file=sys.stderr)


def guarded(
    work: Callable[[], int],
    say: Callable[[str], object] = say_error,
    failed: int = 2,
    interrupted: int = 130,
) -> int:
    in_main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS} if in_main else {}
    STOPPING.clear()
    for sig, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(sig, raise_interrupted)
    try:
        return work()
    except KeyboardInterrupt as stop:
        name = (str(stop).split() or [""])[-1]
        say(f"interrupted by {name}" if name in ("SIGTERM", "SIGHUP") else "interrupted")
        return interrupted
    except BrokenPipeError:  # `--dry-run | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a process ended by SIGPIPE
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        say(f"unexpected {type(error).__name__}" + (f": {first}" if first else ""))
        return failed
    finally:
        early = shared("early stop", None)
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_IGN if early and handler is early else handler)


# --- end shared block: cli ---
# --- begin shared block: files (from blocks/files.py; make blocks) ---
def write_atomically(path: Path, data: bytes | str, *, mode: int = 0o644) -> None:
    path = Path(path)
    try:
        kind = os.lstat(path).st_mode
    except FileNotFoundError:
        kind = stat.S_IFREG
    if not (stat.S_ISREG(kind) or stat.S_ISLNK(kind)):
        raise OSError(errno.EEXIST, "not a regular file, which it would replace", str(path))
    content = data.encode("utf-8", "backslashreplace") if isinstance(data, str) else data
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_capped(path: Path, limit: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise OSError(errno.EISDIR, "a folder, not a regular file", str(path))
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        if info.st_size > limit:
            raise OSError(
                errno.EFBIG, f"{info.st_size} bytes, over the limit of {limit}", str(path)
            )
        with os.fdopen(os.dup(fd), "rb") as file:
            content = file.read(limit + 1)
    finally:
        os.close(fd)
    if len(content) > limit:
        raise OSError(errno.EFBIG, f"grew over the limit of {limit} bytes while read", str(path))
    return content


# --- end shared block: files ---


BUDGET_RANGE = range_type(number(-1e6, 100), plain_is_minimum=True)
# -w/-c METRIC=RANGE: (critical flag, warning flag, range type, lowest, highest value).
METRICS = {
    "cpu": ("--cpu", "--cpu-warning", PERCENT_RANGE, 0, 100),
    "disk": ("--disk", "--disk-warning", FREE_RANGE, 0, 100),
    "memory": ("--memory", "--memory-warning", SIZE_RANGE, 0, math.inf),
    "budget": ("", "--budget-warning", BUDGET_RANGE, -1e6, 100),
}


def path_type(text: str) -> Path:
    """A --state or --textfile path: empty would be the working folder, never meant."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the path is empty: leave the option out instead")
    return Path(text)


def thresholds(critical: bool) -> Callable[[str], dict[str, Range]]:
    """The type of -w/-c: 'cpu=80,disk=20,memory=500MB', each RANGE as its own flag's."""
    names = [name for name, row in METRICS.items() if row[0] or not critical]

    def parse(text: str) -> dict[str, Range]:
        found: dict[str, Range] = {}
        if not text.strip():  # Nagios' $ARG1$ left empty: no thresholds given
            return found
        for item in text.split(","):
            name, equals, limit = item.strip().partition("=")
            if not equals or name not in names:
                raise argparse.ArgumentTypeError(
                    f"{item.strip()!r} is not METRIC=RANGE; metrics: {', '.join(names)}"
                    f" (as in {'-c cpu=90,disk=10' if critical else '-w cpu=70,disk=30'})"
                )
            if name in found:
                raise argparse.ArgumentTypeError(f"{name} is given twice in {text!r}")
            found[name] = METRICS[name][2](limit)
        return found

    parse.__name__ = "METRIC=RANGE list"
    return parse


OPTIONS = [
    Option(
        "-c --critical",
        "CRITICAL thresholds as METRIC=RANGE,...: cpu, disk, memory (-c cpu=90,disk=10,"
        "memory=200MB is --cpu 90 --disk 10 --memory 200MB); repeatable",
        type=thresholds(critical=True),
        metavar="METRIC=RANGE,...",
        action="append",
    ),
    Option(
        "-w --warning",
        "WARNING thresholds as METRIC=RANGE,...: cpu, disk, memory, budget (-w cpu=70,disk=30,"
        "memory=1GB is --cpu-warning 70 --disk-warning 30 --memory-warning 1GB); repeatable",
        type=thresholds(critical=False),
        metavar="METRIC=RANGE,...",
        action="append",
    ),
    Option(
        "--cpu",
        "CRITICAL over this CPU % (or outside RANGE)",
        "HEALTH_CPU",
        Range(0, 80),
        PERCENT_RANGE,
        "PERCENT",
        shown="80",
    ),
    Option(
        "--disk",
        "CRITICAL under this free disk % (or outside RANGE)",
        "HEALTH_DISK",
        Range(20, math.inf),
        FREE_RANGE,
        "PERCENT",
        shown="20",
    ),
    Option(
        "--memory",
        "CRITICAL under this available memory (or outside RANGE); 500MB, 1.5GB,"
        " a bare whole number is MB",
        "HEALTH_MEMORY",
        Range(500 * MB, math.inf),
        SIZE_RANGE,
        "SIZE",
        shown="500MB",
    ),
    Option(
        "--cpu-warning",
        "WARNING range for CPU %",
        "HEALTH_CPU_WARNING",
        None,
        PERCENT_RANGE,
        "RANGE",
    ),
    Option(
        "--disk-warning",
        "WARNING range for free disk %",
        "HEALTH_DISK_WARNING",
        None,
        FREE_RANGE,
        "RANGE",
    ),
    Option(
        "--memory-warning",
        "WARNING range for available memory",
        "HEALTH_MEMORY_WARNING",
        None,
        SIZE_RANGE,
        "RANGE",
    ),
    Option(
        "--disk-path",
        "mount to check, repeatable; the variable's are colon-separated",
        "HEALTH_DISK_PATHS",
        None,
        metavar="PATH",
        action="append",
        shown="/",
        split=":",
    ),
    Option(
        "--url",
        "page to probe against its SLO, any URL a browser takes (a space as %20), then its"
        " own settings as words: slo=99.9 (or slo=off: alert on every bad probe),"
        " label=NAME (default host[:port]/path); repeatable; the variable holds the same"
        " words space-separated, as in 'http://a/?page=2&x=1 slo=99.9 http://b/'",
        "HEALTH_URLS",
        None,
        metavar=("URL", "slo=PERCENT|label=NAME"),  # type: ignore[arg-type]
        action="append",
        nargs="+",
    ),
    Option(
        "--url-timeout",
        "a probe is good when the whole page came with 200 within this",
        "HEALTH_URL_TIMEOUT",
        10.0,
        number(0.1, 300),
        "SECONDS",
    ),
    Option(
        "--slo",
        "share of good probes each --url must reach, 50 to 99.999, or off",
        "HEALTH_SLO",
        0.99,
        slo_type,
        "PERCENT",
        shown="99%",
    ),
    Option(
        "--slo-window", "the SLO's rolling window", "HEALTH_SLO_WINDOW", 30.0, number(1, 90), "DAYS"
    ),
    Option(
        "--budget-warning",
        "WARNING when the % of error budget left is outside this",
        "HEALTH_BUDGET_WARNING",
        Range(25, math.inf),
        BUDGET_RANGE,
        "RANGE",
        shown="25:",
    ),
    Option("--slo-report", "print every URL's SLO budget and exit 0", action="store_true"),
    Option(
        "--resolve-host", "host name to resolve", "HEALTH_RESOLVE_HOST", "localhost", metavar="HOST"
    ),
    Option(
        "--resolve-address",
        "address it must resolve to",
        "HEALTH_RESOLVE_ADDRESS",
        "127.0.0.1",
        metavar="ADDRESS",
    ),
    Option(
        "--state",
        "what was mailed when, and the probes",
        "HEALTH_STATE",
        None,
        path_type,
        "FILE",
        shown="~/.cache/health_check/state.json",
    ),
    Option(
        "--remind",
        "minutes between reminders while a check fails",
        "HEALTH_REMIND",
        60.0,
        number(1, 43200),
        "MINUTES",
    ),
    Option("--every-run", "mail on every failing run, like the lab", action="store_true"),
    Option(
        "--recipient",
        "To address, repeatable; the variable's are separated by spaces or commas",
        "HEALTH_RECIPIENTS",
        lambda: None,  # read by default_recipients(), which names the variable
        metavar="ADDRESS",
        action="append",
        shown="$USER@example.com",
    ),
    Option(
        "--sender", "From address", "HEALTH_SENDER", lambda: None, metavar="ADDRESS", shown=SENDER
    ),
    Option(
        "-t --timeout",
        "the whole run's budget, above --url-timeout; a stage still running then is UNKNOWN",
        "HEALTH_TIMEOUT",
        15.0,
        number(2, 3600),
        "SECONDS",
    ),
    Option("--nagios", "print a Monitoring Plugins status line", action="store_true"),
    Option(
        "--textfile",
        "write Prometheus text for node_exporter here",
        "HEALTH_TEXTFILE",
        None,
        path_type,
        "FILE",
    ),
    Option("--no-email", "measure and report only; send no mail", action="store_true"),
]


def apply_thresholds(parser: Parser, args: argparse.Namespace) -> None:
    """-c/-w onto the flags they stand for; then every WARNING must come before its
    CRITICAL (a warning past it would never show)."""
    for given, critical in ((args.critical, True), (args.warning, False)):
        short = "-c" if critical else "-w"
        seen: set[str] = set()
        for name, limit in ((n, r) for found in given or [] for n, r in found.items()):
            flag = METRICS[name][0 if critical else 1]
            dest = flag.removeprefix("--").replace("-", "_")
            if name in seen:  # as in one -c cpu=90,cpu=95: which one was meant?
                parser.error(f"{short}: {name} is given twice")
            if dest not in parser.not_given:
                parser.error(f"{short} {name}=... and {flag} both given")
            seen.add(name)
            setattr(args, dest, limit)
    for name, (_, warning_flag, _, low, high) in METRICS.items():
        warning = getattr(args, warning_flag.removeprefix("--").replace("-", "_"))
        critical = getattr(args, name, None)
        if (
            warning is not None
            and critical is not None
            and not covers(warning, critical, low, high)
        ):
            parser.error(
                f"the {name} WARNING range {warning.perf()} is past the CRITICAL"
                f" {critical.perf()}: every critical value must be a warning too"
            )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser(__doc__, OPTIONS, parser_class=Parser)
    args = parser.parse_args(argv)
    args.now = from_env(parser, "HEALTH_NOW", number(0, 1e11), None)
    listed = os.environ.get("HEALTH_DISK_PATHS", "")
    if listed.strip() and not args.disk_path:
        parser.error(f"environment variable HEALTH_DISK_PATHS: {listed!r} names no path")
    args.disk_path = args.disk_path or ["/"]
    if not all(args.disk_path):
        parser.error("argument --disk-path: a path is empty")
    words = [w for given in args.url or [] for w in (given if isinstance(given, list) else [given])]
    try:
        args.url = targets(words)
    except argparse.ArgumentTypeError as error:
        from_flags = "url" not in parser.not_given
        parser.error(
            f"{'argument --url' if from_flags else 'environment variable HEALTH_URLS'}: {error}"
        )
    if args.url and args.url_timeout >= args.timeout:
        parser.error("--url-timeout must be below -t/--timeout, which bounds the whole run")
    if not args.no_email:
        args.smtp_timeout = from_env(parser, "SMTP_TIMEOUT", number(0.1, 3600), 10.0)
    apply_thresholds(parser, args)
    args.limits = Limits(
        args.cpu, args.disk, args.memory, args.cpu_warning, args.disk_warning, args.memory_warning
    )
    return args


def default_state() -> Path:
    home = os.path.expanduser("~")
    if home == "~" or not home:
        raise Unknown(
            f"uid {os.getuid()} has no home folder (no HOME, no passwd entry):"
            " set --state or HEALTH_STATE"
        )
    return Path(home) / ".cache" / "health_check" / "state.json"


def default_recipients() -> list[str]:
    listed = (os.environ.get("HEALTH_RECIPIENTS") or "").replace(",", " ").split()
    user = os.environ.get("USER") or os.environ.get("LOGNAME")
    if not listed and not user:
        import pwd

        try:
            user = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:
            raise Unknown(
                f"uid {os.getuid()} has no login name (no USER, no passwd entry):"
                " set --recipient or HEALTH_RECIPIENTS"
            ) from None
    return listed or [f"{user}@example.com"]


def check_mail_settings(args: argparse.Namespace) -> None:
    """Recipients, sender and SMTP_* checked at start, naming the flag or variable:
    found only at the first alert, a bad one would cost that alert."""
    import emails

    variable = "environment variable "
    recipients_from = "--recipient" if args.recipient else variable + "HEALTH_RECIPIENTS"
    sender_from = "--sender" if args.sender else variable + "HEALTH_SENDER"
    listed = args.recipient or default_recipients()
    args.sender = args.sender or os.environ.get("HEALTH_SENDER") or SENDER
    checks = [
        (recipients_from, lambda: [a for text in listed for a in emails.addresses(text)]),
        (sender_from, lambda: emails.checked_address("sender", args.sender)),
        ("", lambda: emails.settings_from(os.environ)),
    ]
    for source, check in checks:
        try:
            value = check()
        except ValueError as error:
            raise Unknown(f"{source}: {error}" if source else str(error)) from None
        if source == recipients_from:
            args.recipient = value


def missing_parts(args: argparse.Namespace) -> None:
    """Copied alone, say at once what is missing, not at the first alert."""
    if psutil is None:
        raise Unknown(f"psutil is not installed for {sys.executable}: {install_hint(PSUTIL_PIN)}")
    if not (args.no_email or args.slo_report):
        try:
            import emails  # noqa: F401 - only to know it is there
        except ImportError:
            raise Unknown(
                "emails.py is not beside health_check.py: copy it there, or run with --no-email"
            ) from None


def unknown(text: str) -> None:
    """The one line; a quoted value in it capped: a variable of 100,000 digits is no
    status line."""
    print(f"HEALTH UNKNOWN - {plain(quotes_capped(text))}")


def guard(work: Callable[[], int]) -> int:
    """nagiosplugin's guard: any way out but a result is one UNKNOWN line and status 3."""

    def checked() -> int:
        try:
            return work()
        except Unknown as error:
            unknown(str(error))
            return UNKNOWN

    return guarded(checked, unknown, failed=UNKNOWN, interrupted=UNKNOWN)


def main(argv: list[str] | None = None, clock: Callable[[], float] = time.time) -> int:
    """The lab's step 5, one run: every way out is a status line and 0-3 (guard)."""
    return guard(lambda: check_health(argv, clock))


def check_health(argv: list[str] | None, clock: Callable[[], float]) -> int:
    """Measure every check at once, judge each, mail what changed, print the line."""
    args = parse_args(argv)
    configure_logging(args.quiet, args.verbose)
    deadline = Deadline(args.timeout)
    path = state_and_settings(args)
    pending = None if args.slo_report else start_measuring(args)
    with StateFile(path, min(LOCK_WAIT, deadline.left())) as store:
        now = clock() if args.now is None else args.now
        fit_the_clock(store, now)
        if not args.nagios or pending is None:
            for note in store.notes:  # else on the status line: an engine shows stderr first
                log.warning("%s", note)
        if pending is None:
            return slo_report(args, store.data, now)
        return check(args, store, now, deadline, pending)


def state_and_settings(args: argparse.Namespace) -> Path:
    """The state file's path, after psutil and emails.py are found; then the mail
    settings: all checked before anything is measured."""
    missing_parts(args)
    path = args.state or default_state()
    if not (args.no_email or args.slo_report):
        check_mail_settings(args)
    return path


def fit_the_clock(store: StateFile, now: float) -> None:
    """A state from after `now` (the clock went back) fitted to it, with a note."""
    changed = settle(store.data, now)
    if changed:
        store.notes.append(
            f"state file {store.path} holds times after now (the clock went back):"
            f" {', '.join(changed)} adjusted"
        )


if __name__ == "__main__":
    sys.exit(main())
