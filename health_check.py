#!/usr/bin/env python3
"""Check CPU, disk, memory and name resolution; alert by email without flooding.

Run from cron every minute. A healthy run prints nothing and exits 0. For
each failing check one email goes out (subjects as the lab's), then a
reminder every --remind minutes while it keeps failing, and one `Recovered`
mail when it clears; a small state file remembers what was mailed. The same
measurements can feed a monitoring engine: --nagios prints a Monitoring
Plugins status line with performance data, --textfile writes Prometheus text
for node_exporter's textfile collector. With --no-email only psutil is
needed, so a single copied health_check.py works as a plugin.

Usage:
    ./health_check.py [--cpu 80] [--disk 20] [--memory 500MB] [--disk-path /]
                      [--url URL] [--remind 60] [--every-run] [--state FILE]
                      [--nagios] [--textfile FILE] [--no-email]

Example:
    $ ./health_check.py --nagios --no-email
    HEALTH OK - CPU 0%; disk / 31% free; memory 23735 MB available; localhost resolves
    | cpu=0%;;80;0;100 disk_free=31%;;20:;0;100 mem_available=24888967168B;;524288000:;0
    localhost=1;;1:;0;1
    (one line, folded here)
    $ crontab -l
    * * * * * /opt/fruit/.venv/bin/python /opt/fruit/health_check.py

Exit status (Monitoring Plugins): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (a
check could not run, a bad option, another run holds the lock, or an alert
could not be mailed; it is tried again on the next run).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import getpass
import json
import logging
import math
import os
import re
import socket
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATUS_WORDS = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
MB = 1024**2
UNITS = {"B": 1, "KB": 1024, "MB": MB, "GB": 1024**3, "TB": 1024**4}
SENDER = "automation@example.com"
ALERT_BODY = "Please check your system and resolve the issue as soon as possible."
RECOVERY_BODY = "The problem reported earlier has cleared. No action is needed."
CPU_INTERVAL = 1.0  # seconds; psutil's first call without an interval always says 0.0
URL_TIMEOUT = 10.0  # the store page's service level: 200 within 10 seconds
RESOLVE_TIMEOUT = 3.0
RUN_BUDGET = 14.0  # every run ends within 15 seconds, even when DNS or SMTP hang
STATE_VERSION = 1

log = logging.getLogger("health_check")


@dataclass(frozen=True)
class Thresholds:
    cpu: float = 80.0
    disk: float = 20.0
    memory: int = 500 * MB
    cpu_warning: float | None = None
    disk_warning: float | None = None
    memory_warning: int | None = None


@dataclass
class Result:
    """One check's outcome: `problem` is the lab's subject text, `perf` its perfdata."""

    key: str
    status: int
    summary: str
    problem: str
    recovery: str
    perf: str
    metrics: list[tuple[str, dict[str, str], float]] = field(default_factory=list)


# -- pure functions: values -----------------------------------------------------


def parse_size(text: str) -> int:
    """'500MB' -> bytes (1 MB = 1024**2); a bare number is in MB."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?B)?\s*", text.upper())
    if not match:
        raise argparse.ArgumentTypeError(f"expected a size like 500MB, got {text!r}")
    number, unit = float(match.group(1)), match.group(2) or "MB"
    return int(number * UNITS[unit])


def parse_percent(text: str) -> float:
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        value = math.nan
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"expected a percentage from 0 to 100, got {text!r}")
    return value


def number(value: float) -> str:
    """80.0 -> '80', 12.5 -> '12.5', never an exponent."""
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


def megabytes(size: int) -> str:
    return f"{number(round(size / MB, 1))}MB"


def label(text: str) -> str:
    """A perfdata label, quoted when it needs to be (guidelines: no ' or =)."""
    clean = text.replace("'", "").replace("=", "_")
    return f"'{clean}'" if " " in clean else clean


def perf(name: str, value: str, warn: str, crit: str, low: str, high: str = "") -> str:
    return f"{label(name)}={value};{warn};{crit};{low};{high}".rstrip(";")


# -- pure functions: evaluations --------------------------------------------------


def over(value: float, critical: float, warning: float | None) -> int:
    if value > critical:
        return CRITICAL
    return WARNING if warning is not None and value > warning else OK


def under(value: float, critical: float, warning: float | None) -> int:
    if value < critical:
        return CRITICAL
    return WARNING if warning is not None and value < warning else OK


def evaluate_cpu(percent: float, limits: Thresholds) -> Result:
    status = over(percent, limits.cpu, limits.cpu_warning)
    shown = number(round(percent))
    warn = "" if limits.cpu_warning is None else number(limits.cpu_warning)
    bound = {
        OK: "",
        WARNING: f" over {warn}% (warning)",
        CRITICAL: f" over {number(limits.cpu)}%",
    }[status]
    return Result(
        key="cpu",
        status=status,
        summary=f"CPU {shown}%{bound}",
        problem=f"CPU usage is over {number(limits.cpu)}%",
        recovery=f"CPU usage is back at or under {number(limits.cpu)}%",
        perf=perf("cpu", f"{shown}%", warn, number(limits.cpu), "0", "100"),
        metrics=[("health_cpu_usage_ratio", {}, percent / 100)],
    )


def evaluate_disk(path: str, free: int, total: int, limits: Thresholds) -> Result:
    percent = 100.0 * free / total if total else 0.0
    status = under(percent, limits.disk, limits.disk_warning)
    where = "" if path == "/" else f" on {path}"
    warn = "" if limits.disk_warning is None else f"{number(limits.disk_warning)}:"
    name = "disk_free" if path == "/" else f"disk_free {path}"
    shown = number(round(percent))
    limit = number(limits.disk) if status == CRITICAL else number(limits.disk_warning or 0)
    bound = "" if status == OK else f" under {limit}%" + (" (warning)" if status == WARNING else "")
    return Result(
        key=f"disk:{path}",
        status=status,
        summary=f"disk {path} {shown}% free{bound}",
        problem=f"Available disk space is less than {number(limits.disk)}%{where}",
        recovery=f"Available disk space is back at or above {number(limits.disk)}%{where}",
        perf=perf(name, f"{shown}%", warn, f"{number(limits.disk)}:", "0", "100"),
        metrics=[("health_disk_free_ratio", {"path": path}, percent / 100)],
    )


def evaluate_memory(available: int, limits: Thresholds) -> Result:
    status = under(available, limits.memory, limits.memory_warning)
    warn = "" if limits.memory_warning is None else f"{limits.memory_warning}:"
    limit = limits.memory if status == CRITICAL else limits.memory_warning or 0
    bound = "" if status == OK else f" under {megabytes(limit)}"
    bound += " (warning)" if status == WARNING else ""
    return Result(
        key="memory",
        status=status,
        summary=f"memory {available // MB} MB available{bound}",
        problem=f"Available memory is less than {megabytes(limits.memory)}",
        recovery=f"Available memory is back at or above {megabytes(limits.memory)}",
        perf=perf("mem_available", f"{available}B", warn, f"{limits.memory}:", "0"),
        metrics=[("health_memory_available_bytes", {}, float(available))],
    )


def evaluate_resolution(host: str, expected: str, resolved: str | None) -> Result:
    good = resolved == expected
    seen = resolved or "nothing"
    return Result(
        key="localhost" if host == "localhost" else f"resolve:{host}",
        status=OK if good else CRITICAL,
        summary=f"{host} resolves" if good else f"{host} resolves to {seen}, not {expected}",
        problem=f"{host} cannot be resolved to {expected}",
        recovery=f"{host} resolves to {expected} again",
        perf=perf(
            "localhost" if host == "localhost" else f"resolve {host}",
            str(int(good)),
            "",
            "1:",
            "0",
            "1",
        ),
        metrics=[("health_name_resolves", {"host": host, "expected": expected}, float(good))],
    )


def evaluate_url(url: str, status_code: int | None, seconds: float, error: str) -> Result:
    good = status_code == 200 and seconds <= URL_TIMEOUT
    seen = error or f"HTTP {status_code} in {seconds:.2f} s"
    return Result(
        key=f"url:{url}",
        status=OK if good else CRITICAL,
        summary=f"{url} answered in {seconds:.2f} s" if good else f"{url}: {seen}",
        problem=f"{url} did not answer 200 within {number(URL_TIMEOUT)} seconds",
        recovery=f"{url} answers 200 within {number(URL_TIMEOUT)} seconds again",
        perf=perf(f"url {url}", f"{seconds:.3f}s", "", number(URL_TIMEOUT), "0"),
        metrics=[
            ("health_url_up", {"url": url}, float(good)),
            ("health_url_response_seconds", {"url": url}, seconds),
        ],
    )


def overall(results: list[Result]) -> int:
    return max((r.status for r in results), default=OK)


def nagios_line(results: list[Result]) -> str:
    status = overall(results)
    shown = [r for r in results if r.status == status] if status else results
    text = "; ".join(r.summary for r in shown)
    return f"HEALTH {STATUS_WORDS[status]} - {text} | " + " ".join(r.perf for r in results)


def prometheus_text(results: list[Result], now: float) -> str:
    """Measurements in Prometheus text format, base units, one HELP/TYPE per family."""
    helps = {
        "health_cpu_usage_ratio": "CPU usage over one second, 0 to 1.",
        "health_disk_free_ratio": "Available disk space as a fraction of the disk, 0 to 1.",
        "health_memory_available_bytes": "Memory available to new processes, in bytes.",
        "health_name_resolves": "1 when the host resolves to the expected address.",
        "health_url_up": "1 when the URL answered 200 within the time limit.",
        "health_url_response_seconds": "Time the URL took to answer, in seconds.",
        "health_check_ok": "1 when the check passes its critical threshold.",
        "health_check_last_run_timestamp_seconds": "When health_check.py last ran.",
    }
    samples: dict[str, list[str]] = {name: [] for name in helps}
    for result in results:
        for name, labels, value in result.metrics:
            samples[name].append(f"{name}{format_labels(labels)} {value!r}")
        ok = float(result.status != CRITICAL)
        samples["health_check_ok"].append(
            f"health_check_ok{format_labels({'check': result.key})} {ok!r}"
        )
    samples["health_check_last_run_timestamp_seconds"].append(
        f"health_check_last_run_timestamp_seconds {now!r}"
    )
    lines = []
    for name, values in samples.items():
        if values:
            lines += [f"# HELP {name} {helps[name]}", f"# TYPE {name} gauge", *values]
    return "\n".join(lines) + "\n"


def format_labels(labels: dict[str, str]) -> str:
    """{path="/"}, with the escapes the text format defines for label values."""
    if not labels:
        return ""
    escaped = (f'{k}="{escape_label_value(v)}"' for k, v in labels.items())
    return "{" + ",".join(escaped) + "}"


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# -- pure functions: alerting -----------------------------------------------------


@dataclass(frozen=True)
class Mail:
    key: str
    subject: str
    body: str
    recovery: bool


def plan_mails(
    results: list[Result], state: dict, now: float, remind: float, every_run: bool
) -> tuple[list[Mail], dict]:
    """The mails to send and the state to keep if they all go out.

    state maps a check's key to {"since": t, "last_mailed": t or None}."""
    mails: list[Mail] = []
    new_state: dict = {}
    for result in results:
        previous = state.get(result.key)
        if result.status == CRITICAL:
            entry = dict(previous or {"since": now, "last_mailed": None})
            last = entry.get("last_mailed")
            if every_run or last is None or now - last >= remind:
                mails.append(Mail(result.key, f"Error - {result.problem}", ALERT_BODY, False))
                entry["last_mailed"] = now
            new_state[result.key] = entry
        elif previous and previous.get("last_mailed") is not None:
            subject = f"Recovered - {result.recovery}"
            mails.append(Mail(result.key, subject, RECOVERY_BODY, True))
    return mails, new_state


def unsent(state_if_sent: dict, old_state: dict, failed: list[Mail]) -> dict:
    """The state when `failed` mails did not go out: they will be tried again."""
    state = dict(state_if_sent)
    for mail in failed:
        if mail.recovery:
            state[mail.key] = old_state[mail.key]
        else:
            state[mail.key] = {
                **state[mail.key],
                "last_mailed": old_state.get(mail.key, {}).get("last_mailed"),
            }
    return state


# -- measuring ----------------------------------------------------------------------


class Background:
    """A call in a daemon thread: a call that hangs cannot hold the run or its exit."""

    def __init__(self, function: Callable, *args: object):
        self.value: object = None
        self.done = threading.Event()
        threading.Thread(target=self.run, args=(function, args), daemon=True).start()

    def run(self, function: Callable, args: tuple) -> None:
        try:
            self.value = function(*args)
        finally:
            self.done.set()

    def result(self, timeout: float) -> object:
        """The call's value, or None when it did not finish in time."""
        return self.value if self.done.wait(timeout) else None


def resolve(host: str) -> str | None:
    """The IPv4 address of host, None when it does not resolve."""
    try:
        return socket.gethostbyname(host)
    except OSError:
        return None


def fetch(url: str) -> tuple[int | None, float, str]:
    start = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=URL_TIMEOUT) as answer:
            answer.read(1)
            return answer.status, time.monotonic() - start, ""
    except urllib.error.HTTPError as error:
        return error.code, time.monotonic() - start, ""
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        return None, time.monotonic() - start, f"no answer ({reason})"


def measure(args: argparse.Namespace, limits: Thresholds) -> list[Result]:
    """Every check; CPU is sampled while DNS and URLs are asked in the background.

    getaddrinfo has no timeout of its own, and urlopen's covers the socket but
    not the name lookup, so both run in daemon threads that are abandoned when
    they hang."""
    resolved = Background(resolve, args.resolve_host)
    fetched = [(url, Background(fetch, url)) for url in args.url]
    started = time.monotonic()
    results = [evaluate_cpu(psutil.cpu_percent(interval=CPU_INTERVAL), limits)]
    for path in args.disk_path:
        usage = psutil.disk_usage(path)
        results.append(evaluate_disk(path, usage.free, usage.total, limits))
    results.append(evaluate_memory(psutil.virtual_memory().available, limits))
    address = resolved.result(RESOLVE_TIMEOUT - (time.monotonic() - started))
    results.append(evaluate_resolution(args.resolve_host, args.resolve_address, address))
    for url, background in fetched:
        wait = URL_TIMEOUT + 1 - (time.monotonic() - started)
        outcome = background.result(max(wait, 0)) or (None, URL_TIMEOUT, "no answer in time")
        results.append(evaluate_url(url, *outcome))
    return results


# -- files ------------------------------------------------------------------------


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_state(path: Path) -> dict:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        checks = document["checks"]
        if not isinstance(checks, dict) or not all(isinstance(v, dict) for v in checks.values()):
            raise ValueError("checks is not a mapping")
        return checks
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as error:
        log.warning("state file %s is unreadable (%s); starting afresh", path, error)
        return {}


def save_state(path: Path, checks: dict) -> None:
    write_atomically(path, json.dumps({"version": STATE_VERSION, "checks": checks}, indent=1))


class LockUnavailable(Exception):
    """The lock file cannot be created or opened."""


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[bool]:
    """Yields False when another run holds the lock."""
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = lock_path.open("a")
    except OSError as error:
        raise LockUnavailable(
            f"cannot use the lock file {lock_path}: {error} (set --state)"
        ) from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


# -- mailing ----------------------------------------------------------------------


def send_mails(mails: list[Mail], recipients: list[str], deadline: float) -> list[Mail]:
    """Send each mail; the ones that could not be sent. Stops at the first failure."""
    try:
        import emails  # only when mailing: as a plugin, a copied script needs psutil alone
    except ImportError:
        log.error("emails.py is not beside health_check.py: copy it, or run with --no-email")
        return mails

    for index, mail in enumerate(mails):
        try:
            # SMTP's own timeout, cut to what is left of this run's budget.
            configured = emails.settings_from(os.environ).timeout
            remaining = max(deadline - time.monotonic(), 0.5)
            timeout = round(min(configured, remaining), 1)
            message = emails.generate_email(SENDER, recipients, mail.subject, mail.body)
            emails.send_email(message, {**os.environ, "SMTP_TIMEOUT": str(timeout)})
        except (emails.EmailError, ValueError) as error:
            log.error("could not mail %r: %s; trying again next run", mail.subject, error)
            return mails[index:]
    return []


# -- command line -----------------------------------------------------------------


class Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """Monitoring engines read exit 3 as UNKNOWN: a bad option is not 'unhealthy'."""
        self.print_usage(sys.stderr)
        self.exit(UNKNOWN, f"{self.prog}: error: {message}\n")


def env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add(
        "--cpu",
        type=parse_percent,
        default=env("HEALTH_CPU", "80"),
        help="alert when CPU usage is over this %% (default 80) [HEALTH_CPU]",
    )
    add(
        "--disk",
        type=parse_percent,
        default=env("HEALTH_DISK", "20"),
        help="alert when available disk is under this %% (default 20) [HEALTH_DISK]",
    )
    add(
        "--memory",
        type=parse_size,
        default=env("HEALTH_MEMORY", "500MB"),
        help="alert when available memory is under this (default 500MB) [HEALTH_MEMORY]",
    )
    add(
        "--cpu-warning",
        type=parse_percent,
        default=env("HEALTH_CPU_WARNING", "") or None,
        help="WARNING above this CPU %% [HEALTH_CPU_WARNING]",
    )
    add(
        "--disk-warning",
        type=parse_percent,
        default=env("HEALTH_DISK_WARNING", "") or None,
        help="WARNING below this free disk %% [HEALTH_DISK_WARNING]",
    )
    add(
        "--memory-warning",
        type=parse_size,
        default=env("HEALTH_MEMORY_WARNING", "") or None,
        help="WARNING below this available memory [HEALTH_MEMORY_WARNING]",
    )
    add(
        "--disk-path",
        action="append",
        help="mount to check, repeatable (default /) [HEALTH_DISK_PATHS, colon-separated]",
    )
    add(
        "--url",
        action="append",
        help="must answer 200 within 10 s, repeatable [HEALTH_URLS, space-separated]",
    )
    add(
        "--resolve-host",
        default=env("HEALTH_RESOLVE_HOST", "localhost"),
        help="host name to resolve (default localhost) [HEALTH_RESOLVE_HOST]",
    )
    add(
        "--resolve-address",
        default=env("HEALTH_RESOLVE_ADDRESS", "127.0.0.1"),
        help="address it must resolve to (default 127.0.0.1) [HEALTH_RESOLVE_ADDRESS]",
    )
    add(
        "--state",
        type=Path,
        default=Path(env("HEALTH_STATE", "~/.cache/health_check/state.json")).expanduser(),
        help="what was mailed when (default ~/.cache/health_check/state.json) [HEALTH_STATE]",
    )
    add(
        "--remind",
        type=float,
        default=env("HEALTH_REMIND", "60"),
        help="minutes between reminders while a check fails (default 60) [HEALTH_REMIND]",
    )
    add("--every-run", action="store_true", help="mail on every failing run, like the lab")
    add(
        "--recipient",
        action="append",
        help="To address, repeatable (default <login name>@example.com) [HEALTH_RECIPIENTS]",
    )
    add("--nagios", action="store_true", help="print a Monitoring Plugins status line")
    add(
        "--textfile",
        type=Path,
        default=env("HEALTH_TEXTFILE", "") or None,
        help="write Prometheus text for node_exporter here [HEALTH_TEXTFILE]",
    )
    add("--no-email", action="store_true", help="measure and report only; send no mail")
    add("-v", "--verbose", action="store_true", help="print the status line on stderr")
    args = parser.parse_args(argv)
    args.disk_path = args.disk_path or env("HEALTH_DISK_PATHS", "/").split(":")
    args.url = args.url or env("HEALTH_URLS", "").split()
    recipients = env("HEALTH_RECIPIENTS", "").replace(",", " ").split()
    args.recipient = args.recipient or recipients or [default_recipient()]
    problems = threshold_problems(args)
    if problems:
        parser.error(problems)
    return args


def threshold_problems(args: argparse.Namespace) -> str:
    if args.cpu_warning is not None and args.cpu_warning >= args.cpu:
        return "--cpu-warning must be below --cpu"
    if args.disk_warning is not None and args.disk_warning <= args.disk:
        return "--disk-warning must be above --disk"
    if args.memory_warning is not None and args.memory_warning <= args.memory:
        return "--memory-warning must be above --memory"
    if args.remind <= 0:
        return "--remind must be a positive number of minutes"
    return ""


def default_recipient() -> str:
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or getpass.getuser()
    return f"{user}@example.com"


def thresholds(args: argparse.Namespace) -> Thresholds:
    return Thresholds(
        args.cpu, args.disk, args.memory, args.cpu_warning, args.disk_warning, args.memory_warning
    )


def alert(args: argparse.Namespace, results: list[Result], now: float, deadline: float) -> bool:
    """Mail what needs mailing and keep the state; False when a mail did not go out."""
    old = load_state(args.state)
    mails, new = plan_mails(results, old, now, args.remind * 60, args.every_run)
    failed = send_mails(mails, args.recipient, deadline) if mails else []
    try:
        save_state(args.state, unsent(new, old, failed) if failed else new)
    except OSError as error:
        log.error("cannot write the state file %s: %s (set --state)", args.state, error)
        return False
    return not failed


def check(args: argparse.Namespace, clock: Callable[[], float]) -> int:
    deadline = time.monotonic() + RUN_BUDGET
    try:
        results = measure(args, thresholds(args))
    except (OSError, psutil.Error) as error:
        if args.nagios:
            print(f"HEALTH UNKNOWN - the check could not run: {error}")
        log.error("the check could not run: %s", error)
        return UNKNOWN
    now = clock()
    if args.nagios:
        print(nagios_line(results))
    elif args.verbose:
        log.info("%s", nagios_line(results))
    written = True
    if args.textfile:
        try:
            write_atomically(args.textfile, prometheus_text(results, now))
        except OSError as error:
            log.error("cannot write %s: %s", args.textfile, error)
            written = False
    mailed = args.no_email or alert(args, results, now, deadline)
    return overall(results) if mailed and written else UNKNOWN


def main(argv: list[str] | None = None, clock: Callable[[], float] = time.time) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(message)s",
        stream=sys.stderr,
    )
    if args.no_email:
        return check(args, clock)
    # The lock guards the state file: only runs that mail need it.
    lock = args.state.with_name(args.state.name + ".lock")
    try:
        return locked_check(args, clock, lock)
    except LockUnavailable as error:
        log.error("%s", error)
        return UNKNOWN


def locked_check(args: argparse.Namespace, clock: Callable[[], float], lock: Path) -> int:
    with exclusive(lock) as mine:
        if not mine:
            message = f"another health_check.py run holds {lock}; exiting"
            if args.nagios:
                print(f"HEALTH UNKNOWN - {message}")
            else:
                log.error("%s", message)
            return UNKNOWN
        return check(args, clock)


if __name__ == "__main__":
    sys.exit(main())
