"""deploy/: each artifact checked by its engine's own tool (promtool, icinga2, nagios4,
systemd-analyze, hadolint, a container engine). A tool that is not installed skips its
test with the reason; .ci/run installs them where it can."""

from __future__ import annotations

import fcntl
import functools
import grp
import hashlib
import json
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "health_check.rules.yml"
RULE_TESTS = sorted((DEPLOY / "prometheus").glob("*.test.yml"))
ICINGA = DEPLOY / "icinga2" / "fruit_health.conf"
NAGIOS = DEPLOY / "nagios" / "fruit_health.cfg"
SERVICE = DEPLOY / "systemd" / "fruit-health-check.service"
UNITS = [SERVICE, DEPLOY / "systemd" / "fruit-health-check.timer"]
DOCKERFILE = DEPLOY / "container" / "Dockerfile"
INSTALLED_AT = "/opt/fruit-catalog"  # where the artifacts expect the scripts and venv
TOOL_TIMEOUT = 120  # seconds; every tool here answers in a few
BUILD_TIMEOUT = 900  # a first build downloads the base's Debian fonts package
ALERTS = [
    "HealthSLOFastBurn",
    "HealthSLOSlowBurn",
    "HealthSLOBudgetBurn",
    "HealthCheckFailing",
    "HealthCheckNotMeasured",
    "HealthCheckNotRunning",
]


def tool(name: str, install: str) -> str:
    """The tool's path, or skip the test saying how to install it."""
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not path:
        pytest.skip(f"{name} is not installed ({install})")
    return path


def run(*argv: str | Path, **options) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=TOOL_TIMEOUT, **options
    )


def installed_here(text: str, quote: Callable[[str], str] = str) -> str:
    """An artifact's text with this checkout and this venv where it expects /opt."""
    text = text.replace(f"{INSTALLED_AT}/.venv/bin/python", quote(sys.executable))
    return text.replace(f"{INSTALLED_AT}/", quote(f"{ROOT}/"))


@functools.cache
def help_options() -> frozenset[str]:
    result = run(sys.executable, ROOT / "health_check.py", "--help")
    assert result.returncode == 0, result.stderr
    return frozenset(re.findall(r"(?<![\w-])-(?:-[a-z][a-z-]*|[a-zA-Z](?![\w-]))", result.stdout))


# -- Prometheus ---------------------------------------------------------------------------------


def test_promtool_check_rules():
    promtool = tool("promtool", "apt-get install prometheus")
    result = run(promtool, "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 19 rules found" in result.stdout


def test_promtool_test_rules():
    promtool = tool("promtool", "apt-get install prometheus")
    result = run(promtool, "test", "rules", *RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS) == 2


def alert_tests() -> list[dict]:
    return [
        case
        for path in RULE_TESTS
        for group in yaml.safe_load(path.read_text())["tests"]
        for case in group.get("alert_rule_test", [])
    ]


def test_the_rules_have_exactly_the_alerts_tested_here():
    groups = yaml.safe_load(RULES.read_text())["groups"]
    alerts = [rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule]
    assert sorted(alerts) == sorted(ALERTS)


@pytest.mark.parametrize("alert", ALERTS)
@pytest.mark.parametrize("firing", [True, False], ids=["firing", "not-firing"])
def test_the_rule_tests_show_each_alert(alert, firing):
    assert any(c["alertname"] == alert and bool(c["exp_alerts"]) == firing for c in alert_tests())


def test_the_rules_read_what_the_textfile_holds(tmp_path, flaky_page):
    """Names and labels as health_check.py writes them today: a rename there breaks here."""
    textfile = tmp_path / "health.prom"
    result = run(
        *(sys.executable, ROOT / "health_check.py", "--no-email", "--textfile", textfile),
        *("--url", flaky_page.url, "--state", tmp_path / "state.json"),
        *("--cpu", "100", "--disk", "0", "--memory", "0"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = textfile.read_text()
    series = dict(re.findall(r"^(health_\w+)(\{[^}]*\})? ", text, re.MULTILINE))
    groups = yaml.safe_load(RULES.read_text())["groups"]
    expressions = "\n".join(rule["expr"] for group in groups for rule in group["rules"])
    used = set(re.findall(r"(?<![\w:])health_\w+", expressions))  # not the recorded url:...
    assert used <= series.keys()
    # The burn rates divide counters by the objective: the same labels on both.
    assert series["health_url_probes_total"] == series["health_slo_objective_ratio"]
    # HealthCheckFailing leaves out the check of a URL with an SLO by turning the
    # objective's url="LABEL" into check="url:LABEL": both must name the URL alike.
    label = flaky_page.url.removeprefix("http://")  # host:port/path
    assert f'health_slo_objective_ratio{{url="{label}"}}' in text
    assert f'health_check_ok{{check="url:{label}"}} 1' in text
    assert f'health_check_measured{{check="url:{label}"}} 1' in text
    if shutil.which("promtool"):
        lint = run("promtool", "check", "metrics", input=text)
        assert lint.returncode == 0, lint.stdout + lint.stderr


def test_the_alerts_fire_on_what_a_failing_run_writes(tmp_path, flaky_page):
    """A real textfile, served for ten minutes in a promtool test: the URL with an SLO is
    left to the burn rates, the one with slo=off alerts, and so does an unmounted disk."""
    promtool = tool("promtool", "apt-get install prometheus")
    flaky_page.status = 500
    textfile = tmp_path / "health.prom"
    result = run(
        *(sys.executable, ROOT / "health_check.py", "--no-email", "--textfile", textfile),
        *("--url", flaky_page.url, flaky_page.url, "slo=off", "label=stock"),
        *("--state", tmp_path / "state.json", "--disk-path", tmp_path / "unmounted"),
        *("--cpu", "100", "--disk", "0", "--memory", "0"),
    )
    assert result.returncode == 2, result.stdout + result.stderr
    samples = re.findall(r"^(health_\w+)(?:\{([^}]*)\})? (\S+)$", textfile.read_text(), re.M)
    series = [
        {
            "series": f'{name}{{instance="shop1:9100",job="node"{"," if labels else ""}{labels}}}',
            "values": f"{value}+0x10",
        }
        for name, labels, value in samples
    ]
    assert "health_check_ok" in (s["series"].split("{")[0] for s in series)
    label = flaky_page.url.removeprefix("http://")
    target = {"severity": "ticket", "instance": "shop1:9100", "job": "node"}
    disk = f"disk:{tmp_path}/unmounted"
    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {
                        "eval_time": "5m",
                        "alertname": "HealthCheckFailing",
                        "exp_alerts": [
                            {
                                "exp_labels": {**target, "check": "url:stock"},
                                "exp_annotations": {
                                    "summary": "health check url:stock fails on shop1:9100"
                                },
                            }
                        ],
                    },
                    {
                        "eval_time": "5m",
                        "alertname": "HealthCheckNotMeasured",
                        "exp_alerts": [
                            {
                                "exp_labels": {**target, "check": disk},
                                "exp_annotations": {
                                    "summary": f"health check {disk} cannot measure on"
                                    " shop1:9100 (UNKNOWN)"
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    }
    assert f'health_check_ok{{check="url:{label}"}} 0' in textfile.read_text()
    (tmp_path / "textfile.test.yml").write_text(yaml.safe_dump(tests))
    checked = run(promtool, "test", "rules", tmp_path / "textfile.test.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


# -- Icinga 2 and Nagios ------------------------------------------------------------------------


def icinga_arguments() -> dict[str, tuple[str, bool]]:
    """-f or --flag: (custom variable, repeat_key), as the CheckCommand has them."""
    blocks = re.findall(r'"(--?[\w-]+)" = \{(.*?)\n    \}', ICINGA.read_text(), re.DOTALL)
    return {
        flag: (re.search(r'value = "\$(\w+)\$"', body)[1], "repeat_key = true" in body)
        for flag, body in blocks
    }


# One value each health_check.py accepts, for every variable the CheckCommand reads: a new
# argument needs a line here, so its value is tried too.
ICINGA_VALUES = {
    "fruit_health_warning": ["cpu=100", "disk=0,memory=0,budget=0:"],
    "fruit_health_critical": "cpu=100,disk=0,memory=0",
    "fruit_health_cpu": "100",
    "fruit_health_cpu_warning": "~:100",
    "fruit_health_disk": "0",
    "fruit_health_disk_warning": "0:",
    "fruit_health_disk_paths": ["/"],
    "fruit_health_memory": "0",
    "fruit_health_memory_warning": "0:",
    "fruit_health_urls": ["{url}", "slo=99.9", "label=shop", "{url}", "slo=off"],
    "fruit_health_url_timeout": "5",
    "fruit_health_slo": "99.9%",
    "fruit_health_slo_window": "7",
    "fruit_health_budget_warning": "0:",
    "fruit_health_resolve_host": "localhost",
    "fruit_health_resolve_address": "127.0.0.1",
    "fruit_health_state": "{state}",
    "fruit_health_timeout": "12",
}


def icinga_config(folder: Path) -> Path:
    """A minimal Icinga 2 configuration: the CheckCommand and a service using every variable."""
    values = "\n".join(
        f"  vars.{name} = {icinga_value(value)}" for name, value in ICINGA_VALUES.items()
    )
    config = folder / "icinga2.conf"
    config.write_text(
        f'include <itl>\ninclude "{ICINGA}"\n'
        'object Host "shop1" {\n  check_command = "dummy"\n  vars.fruit_catalog = true\n}\n'
        'apply Service "fruit-health" {\n  check_command = "fruit_health"\n'
        f"{values}\n  check_timeout = number(vars.fruit_health_timeout) + 5\n"
        "  check_interval = 5m\n  retry_interval = 1m\n"
        "  assign where host.vars.fruit_catalog\n}\n"
    )
    return config


def icinga_value(value: str | list[str]) -> str:
    if isinstance(value, list):
        return "[ " + ", ".join(f'"{v}"' for v in value) + " ]"
    return f'"{value}"'


def test_icinga2_validates_the_check_command(tmp_path):
    icinga2 = tool("icinga2", "apt-get install icinga2-bin")
    cache = tmp_path / "cache"
    cache.mkdir()
    # As root the daemon drops to the nagios user, who cannot write a test's folders.
    user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    result = run(
        *(icinga2, "daemon", "-C", "-c", icinga_config(tmp_path)),
        *("-D", f"Configuration.CacheDir={cache}"),
        *("-D", f"Configuration.RunAsUser={user}", "-D", f"Configuration.RunAsGroup={group}"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Instantiated 1 Service." in result.stdout


def test_the_icinga_arguments_are_all_given_a_value():
    assert {var for var, _ in icinga_arguments().values()} == ICINGA_VALUES.keys()


# A threshold is set by -w/-c or by its own variable, not both (the script refuses that).
SHORT_THRESHOLDS = {"fruit_health_warning", "fruit_health_critical"}
FLAG_THRESHOLDS = {
    f"fruit_health_{metric}{suffix}"
    for metric in ("cpu", "disk", "memory")
    for suffix in ("", "_warning")
} | {"fruit_health_budget_warning"}


def icinga_command_line(values: dict[str, str | list[str]]) -> list[str]:
    """The arguments as Icinga 2 adds them: an array's elements each after the key with
    repeat_key, else the key once before them all; an unset variable adds nothing, nor
    (set_if) an empty one."""
    argv = []
    for flag, (var, repeat) in icinga_arguments().items():
        if values.get(var, "") == "":
            continue
        items = values[var] if isinstance(values[var], list) else [values[var]]
        for index, item in enumerate(items):
            argv += [flag, item] if repeat or index == 0 else [item]
    return argv


@pytest.mark.parametrize("thresholds", ["-w/-c", "flags"])
def test_health_check_accepts_the_icinga_command_line(tmp_path, flaky_page, thresholds):
    """The command line Icinga builds from the CheckCommand: a status line, not a usage error."""
    fill = {"url": flaky_page.url, "state": str(tmp_path / "state.json")}
    left_out = FLAG_THRESHOLDS if thresholds == "-w/-c" else SHORT_THRESHOLDS
    values = {
        var: [v.format(**fill) for v in value] if isinstance(value, list) else value.format(**fill)
        for var, value in ICINGA_VALUES.items()
        if var not in left_out
    }
    argv = [sys.executable, str(ROOT / "health_check.py"), "--nagios", "--no-email"]
    result = run(*argv, *icinga_command_line(values))
    assert (result.returncode, result.stderr) == (0, ""), result.stdout
    assert result.stdout.startswith("HEALTH OK - ")
    label = flaky_page.url.removeprefix("http://")  # host:port/path
    assert re.search(r" cpu=\d+%;(~:)?100;100;0;100 ", result.stdout), result.stdout  # -w, -c
    assert "'slo_good shop'" in result.stdout and f"'url {label}'" in result.stdout
    assert f"'slo_good {label}'" not in result.stdout  # slo=off: probed, no SLO


def test_an_empty_icinga_variable_adds_no_argument():
    """Icinga 2 passes a variable set to "" as an empty argument (--state ''): each
    argument is added only when its variable is not empty."""
    blocks = re.findall(r'"(--?[\w-]+)" = \{(.*?)\n    \}', ICINGA.read_text(), re.DOTALL)
    for flag, body in blocks:
        var = re.search(r'value = "\$(\w+)\$"', body)[1]
        assert f'set_if = {{{{ macro("${var}$") != "" }}}}' in body, flag


def test_the_icinga_check_timeout_follows_the_scripts(tmp_path):
    """The example's check_timeout is the variable's plus a margin, and the command's
    own timeout is above the script's default -t."""
    text = ICINGA.read_text()
    assert "check_timeout = vars.fruit_health_timeout + 5" in text
    assert int(re.search(r"^  timeout = (\d+)$", text, re.MULTILINE)[1]) > 15 + 5


def test_the_icinga_thresholds_are_set_one_way_or_the_other():
    variables = {var for var, _ in icinga_arguments().values()}
    assert variables >= SHORT_THRESHOLDS | FLAG_THRESHOLDS


WEEKDAYS = ("mon", "tues", "wednes", "thurs", "fri", "satur", "sun")


def nagios_config(folder: Path) -> Path:
    """A minimal Nagios configuration: the command and one service using it."""
    objects = folder / "objects.cfg"
    week = "".join(f"    {day}day 00:00-24:00\n" for day in WEEKDAYS)
    objects.write_text(
        f"define timeperiod {{\n    timeperiod_name 24x7\n    alias always\n{week}}}\n"
        "define command {\n    command_name notify-none\n    command_line /bin/true\n}\n"
        "define contact {\n    contact_name ops\n"
        "    host_notification_period 24x7\n    service_notification_period 24x7\n"
        "    host_notification_options n\n    service_notification_options n\n"
        "    host_notification_commands notify-none\n"
        "    service_notification_commands notify-none\n}\n"
        "define host {\n    host_name shop1\n    address 127.0.0.1\n"
        "    max_check_attempts 1\n    check_period 24x7\n    contacts ops\n"
        "    notification_period 24x7\n}\n"
        "define service {\n    host_name shop1\n    service_description fruit-health\n"
        "    check_command check_fruit_health!cpu=70,disk=30,memory=1GB"
        "!cpu=90,disk=10,memory=200MB!--url http://localhost/ slo=99.9\n"
        "    max_check_attempts 3\n    check_interval 10\n    retry_interval 2\n"
        "    check_period 24x7\n    notification_period 24x7\n    contacts ops\n}\n"
    )
    main = folder / "nagios.cfg"
    user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    main.write_text(
        f"cfg_file={NAGIOS}\ncfg_file={objects}\ncheck_result_path={folder}\n"
        f"nagios_user={user}\nnagios_group={group}\n"
        "illegal_macro_output_chars=`~$&|'\"<>\n"
    )
    return main


def test_nagios_validates_the_command(tmp_path):
    nagios = tool("nagios4", "apt-get install nagios4-core")
    result = run(nagios, "-v", nagios_config(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Total Errors:   0" in result.stdout and "Checked 2 commands." in result.stdout


def test_nagios_shows_the_line_as_the_check_printed_it(tmp_path, dead_port):
    """A real Nagios runs the check (and a plugin printing a ';', which it shows as ':'):
    both refused URLs are named, and the line it keeps is the one the check printed."""
    nagios = tool("nagios4", "apt-get install nagios4-core")
    now = "1764115207"
    dead = f"http://127.0.0.1:{dead_port}/"
    check = [
        *("env", f"HEALTH_NOW={now}", sys.executable, ROOT / "health_check.py", "--nagios"),
        *("--no-email", "-c", "cpu=100,disk=0,memory=0", "--url", dead, "label=shop"),
        *("--url", f"{dead}stock", "slo=off", "label=stock"),
    ]
    semicolon = tmp_path / "semicolon.sh"
    semicolon.write_text("#!/bin/sh\necho 'HEALTH CRITICAL - shop: refused; SLO 99%'\nexit 2\n")
    semicolon.chmod(0o755)
    commands = {"health": [*check, "--state", tmp_path / "nagios.json"], "semicolon": [semicolon]}
    objects = nagios_config(tmp_path).with_name("objects.cfg")
    text = re.sub(r"define service \{.*?\}\n", "", objects.read_text(), flags=re.DOTALL)
    for name, argv in commands.items():
        text += (
            f"define command {{\n    command_name {name}\n"
            f"    command_line {shlex.join(str(a) for a in argv)}\n}}\n"
            f"define service {{\n    host_name shop1\n    service_description {name}\n"
            f"    check_command {name}\n    max_check_attempts 1\n    check_interval 10\n"
            "    retry_interval 2\n    check_period 24x7\n    notification_period 24x7\n"
            "    contacts ops\n}\n"
        )
    objects.write_text(text)
    main = tmp_path / "nagios.cfg"
    status = tmp_path / "status.dat"
    main.write_text(
        main.read_text()
        + "".join(
            f"{key}={tmp_path / value}\n"
            for key, value in {
                "status_file": "status.dat",
                "log_file": "nagios.log",
                "lock_file": "nagios.lock",
                "temp_file": "nagios.tmp",
                "state_retention_file": "retention.dat",
            }.items()
        )
        + "status_update_interval=1\nretain_state_information=0\nexecute_host_checks=0\n"
        "enable_notifications=0\nservice_inter_check_delay_method=n\n"
    )
    daemon = subprocess.Popen([nagios, main], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        outputs = wait_for_outputs(status, len(commands))
    finally:
        daemon.terminate()
        daemon.wait(timeout=TOOL_TIMEOUT)
    direct = run(*check, "--state", tmp_path / "direct.json").stdout.partition(" | ")[0]
    assert outputs["health"] == direct.strip()
    assert "shop: refused" in direct and "stock: refused" in direct
    assert outputs["semicolon"] == "HEALTH CRITICAL - shop: refused: SLO 99%"


def wait_for_outputs(status: Path, count: int) -> dict[str, str]:
    """Each service's plugin_output once Nagios has written them all to status.dat."""
    found: dict[str, str] = {}
    deadline = time.monotonic() + TOOL_TIMEOUT
    while len(found) < count and time.monotonic() < deadline:
        time.sleep(0.5)
        text = status.read_text() if status.exists() else ""
        for block in re.findall(r"servicestatus \{(.*?)\}", text, re.DOTALL):
            name = re.search(r"service_description=(.*)", block)[1]
            output = re.search(r"plugin_output=(.*)", block)[1]
            if output:
                found[name] = output
    assert len(found) == count, f"Nagios wrote {found} within {TOOL_TIMEOUT} s"
    return found


def test_health_check_accepts_the_nagios_command_line(tmp_path, flaky_page):
    """$ARGn$ filled in as the example service does, run through the shell as Nagios does."""
    line = re.search(r"^\s*command_line\s+(.*)$", NAGIOS.read_text(), re.MULTILINE)[1]
    url = flaky_page.url
    args = {"$ARG1$": "cpu=~:100,disk=0,memory=0,budget=0:", "$ARG2$": "cpu=100,disk=0,memory=0"}
    args["$ARG3$"] = (
        f"--url {url} slo=99.9 label=shop --url '{url}stock?page=2&x=1' slo=off"
        f" --state {tmp_path / 'state.json'}"
    )
    for macro, value in args.items():
        line = line.replace(macro, value)
    result = run("/bin/sh", "-c", installed_here(line, quote=shlex.quote))
    assert (result.returncode, result.stderr) == (0, ""), result.stdout
    assert result.stdout.startswith("HEALTH OK - ")
    label = url.removeprefix("http://")  # host:port/path
    assert re.search(r" cpu=\d+%;~:100;100;0;100 ", result.stdout), result.stdout  # -w, -c
    assert "'slo_good shop'" in result.stdout and f"'url {label}stock'=" in result.stdout
    assert "page=2" not in result.stdout  # the query string may hold a token


@pytest.mark.parametrize(
    ("warning", "critical"), [("", "cpu=100,disk=0,memory=0"), ("cpu=100,disk=0,memory=0", "")]
)
def test_an_empty_nagios_threshold_argument_means_not_given(tmp_path, warning, critical):
    """check_fruit_health!!cpu=90!...: -w '' is no WARNING threshold, not a usage error."""
    line = re.search(r"^\s*command_line\s+(.*)$", NAGIOS.read_text(), re.MULTILINE)[1]
    values = {"$ARG1$": warning, "$ARG2$": critical, "$ARG3$": f"--state {tmp_path / 's.json'}"}
    for macro, value in values.items():
        line = line.replace(macro, value)
    if not critical:  # the defaults' CRITICAL would fire on a busy test machine
        line += " --cpu 100 --disk 0 --memory 0"
    result = run("/bin/sh", "-c", installed_here(line, quote=shlex.quote))
    assert (result.returncode, result.stderr) == (0, ""), result.stdout
    assert result.stdout.startswith("HEALTH OK - ")


@pytest.mark.parametrize(
    ("artifact", "part"),
    [
        (ICINGA, r"(?s).*"),  # the arguments and the example's
        (NAGIOS, r"(?s).*"),  # the command line and the example's $ARG3$
        (SERVICE, r"(?m)^ExecStart=.*"),  # not the systemctl in its comments
    ],
    ids=lambda value: getattr(value, "name", ""),
)
def test_artifacts_name_only_options_the_health_check_has(artifact, part):
    text = "\n".join(re.findall(part, artifact.read_text()))
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", text))
    assert named, "no option found: the pattern no longer matches the file"
    assert named <= help_options()


def test_the_engines_short_options_are_the_health_checks():
    """-w, -c: the Icinga arguments' keys and the Nagios command line."""
    command_line = re.search(r"^\s*command_line\s+(.*)$", NAGIOS.read_text(), re.MULTILINE)[1]
    for named in (set(icinga_arguments()), set(re.findall(r"(?<!\S)-\w\b", command_line))):
        assert {"-w", "-c"} <= named <= help_options()


# -- systemd ------------------------------------------------------------------------------------


def test_systemd_analyze_verifies_the_units(tmp_path):
    analyze = tool("systemd-analyze", "apt-get install systemd")
    for unit in UNITS:
        (tmp_path / unit.name).write_text(installed_here(unit.read_text()))
    assert INSTALLED_AT not in (tmp_path / SERVICE.name).read_text()
    result = run(analyze, "verify", *(tmp_path / unit.name for unit in UNITS))
    # verify exits 0 on settings it ignores, but names them on stderr.
    assert (result.returncode, result.stderr) == (0, ""), result.stdout


def unit_settings(unit: Path) -> dict[str, str]:
    return dict(re.findall(r"^(\w+)=(.*)$", unit.read_text(), re.MULTILINE))


@pytest.mark.parametrize(
    ("unit", "setting", "value"),
    [
        # One run per start, like a cron job, and WARNING/CRITICAL (mailed) are no failure.
        ("fruit-health-check.service", "Type", "oneshot"),
        ("fruit-health-check.service", "SuccessExitStatus", "1 2"),
        ("fruit-health-check.service", "LogLevelMax", "notice"),
        ("fruit-health-check.timer", "OnCalendar", "minutely"),
        ("fruit-health-check.timer", "Persistent", "true"),
    ],
)
def test_systemd_units_run_the_check_as_cron_does(unit, setting, value):
    assert unit_settings(DEPLOY / "systemd" / unit)[setting] == value


def test_the_service_runs_the_crontab_command():
    readme = (ROOT / "README.md").read_text()
    crontab = re.search(r"^\* \* \* \* \* (\S+ \S+health_check\.py)", readme, re.MULTILINE)[1]
    assert unit_settings(SERVICE)["ExecStart"].startswith(crontab)


# -- container image ----------------------------------------------------------------------------


def test_hadolint_passes_the_dockerfile():
    hadolint = tool("hadolint", "pip install -r requirements-dev.txt")
    result = run(hadolint, DOCKERFILE)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_dockerfile_final_stage_is_slim_and_not_root():
    stages = re.split(r"^FROM ", DOCKERFILE.read_text(), flags=re.MULTILINE)[1:]
    assert [s.split()[0] for s in stages] == ["${BASE}", "${BASE}"]
    final = stages[-1]
    assert re.search(r"^USER [1-9]\d*:[1-9]\d*$", final, re.MULTILINE)
    assert not re.search(r"\b(gcc|build-essential|python3-dev)\b", final)
    assert "COPY --from=build /opt/fruit-catalog/.venv" in final


def test_the_layer_that_installs_packages_leaves_no_package_caches():
    """Removed in a later layer, apt's lists and caches would still be in the image (78 MB
    on a base without docker-clean): the RUN that installs removes them itself."""
    final = re.split(r"^FROM ", DOCKERFILE.read_text(), flags=re.MULTILINE)[-1]
    runs = re.findall(r"^RUN (.*?)(?<!\\)$", final, re.MULTILINE | re.DOTALL)
    [installing] = [r for r in runs if "apt-get install" in r]
    for step in ("apt-get clean", "/var/lib/apt/lists/*", "/var/cache/apt/*"):
        assert step in installing
    assert installing.index("apt-get install") < installing.index("apt-get clean")


class Engine(NamedTuple):
    command: str
    options: list[str]  # for build and run alike
    image: str


# Sandboxed hosts refuse some of the engines' defaults: podman asks for a million open files,
# and crun refuses a hybrid cgroup hierarchy; these limits are low enough anywhere, and
# podman's other runtime, runc, is tried.
LIMITS = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]
TEST_IMAGE = "localhost/fruit-catalog:test"  # and -<digest of its inputs>
KEPT_IMAGES = 5  # of earlier inputs, newest first


def base_candidates() -> list[str]:
    default = re.search(r"^ARG BASE=(\S+)", DOCKERFILE.read_text(), re.MULTILINE)[1]
    given = os.environ.get("CONTAINER_BASE")
    return [given] if given else [default, "localhost/fruit-python-base:bookworm"]


def find_engine() -> tuple[str, list[str], str]:
    """(engine, options, base) that can start a container, or skip saying why not."""
    reasons = []
    for engine in ("podman", "docker"):
        if not shutil.which(engine):
            reasons.append(f"no {engine}")
            continue
        if run(engine, "info").returncode != 0:
            reasons.append(f"{engine} has no daemon it can reach")
            continue
        bases = [b for b in base_candidates() if run(engine, "image", "inspect", b).returncode == 0]
        if not bases:
            reasons.append(f"{engine} has none of {', '.join(base_candidates())} locally")
            continue
        tries = [LIMITS, ["--runtime", "runc", *LIMITS]] if engine == "podman" else [LIMITS]
        for options in tries:
            started = run(engine, "run", "--rm", *options, "--network", "none", bases[0], "true")
            if started.returncode == 0:
                return engine, options, bases[0]
        reasons.append(f"{engine} cannot start a container: {started.stderr.strip()[-200:]}")
    pytest.skip("no container engine with a base image: " + "; ".join(reasons))


def build_inputs(engine: str, options: list[str], base: str) -> str:
    """A digest of everything the image is built from: the engine and its options, the
    base image, the Dockerfile and the build context (.dockerignore keeps the scripts
    and requirements.txt). An image tagged with it was built from these very inputs."""
    digest = hashlib.sha256()
    base_id = run(engine, "image", "inspect", "--format", "{{.Id}}", base).stdout
    context = [*sorted(ROOT.glob("*.py")), ROOT / "requirements.txt", ROOT / ".dockerignore"]
    for part in [engine, *options, base, base_id]:
        digest.update(part.encode() + b"\0")
    for path in [DOCKERFILE, *context]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@pytest.fixture(scope="module")
def container(tmp_path_factory) -> Iterator[Engine]:
    """The image built from the Dockerfile, its pinned wheels served from loopback to the
    build through the pip.conf secret, as an air-gapped build would be. It is tagged with
    the digest of its inputs and built only when no image has that tag: an earlier build
    of the same Dockerfile, context and base stands (test workers and test runs share it;
    a lock keeps two workers from building it at once)."""
    engine, options, base = find_engine()
    image = f"{TEST_IMAGE}-{build_inputs(engine, options, base)}"
    lock_path = tmp_path_factory.getbasetemp().parent / "container-build.lock"
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if run(engine, "image", "inspect", image).returncode != 0:
            build_image(tmp_path_factory.mktemp("container"), engine, options, base, image)
    yield Engine(engine, options, image)


def build_image(folder: Path, engine: str, options: list[str], base: str, image: str) -> None:
    wheels = folder / "wheels"
    version = "import sys; print(*sys.version_info[:2], sep='.')"
    python = run(
        engine, "run", "--rm", *options, "--network", "none", base, "python3", "-c", version
    )
    assert python.returncode == 0, f"{base} runs no python3: {python.stderr}"
    download = run(
        *(sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q"),
        *("--only-binary=:all:", "--python-version", python.stdout.strip()),
        *("-d", wheels, "-r", ROOT / "requirements.txt"),
    )
    if download.returncode != 0:
        pytest.skip(f"the pinned wheels cannot be downloaded: {download.stderr.strip()[-200:]}")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(wheels))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    pip_conf = folder / "pip.conf"
    pip_conf.write_text(
        f"[global]\nno-index = true\nfind-links = http://127.0.0.1:{server.server_port}/\n"
    )
    try:
        # Host network: the wheels are on the host's loopback, and the final stage's
        # apt-get reaches the Debian mirror as the host does.
        build = subprocess.run(
            [
                *(engine, "build", *options, "--network", "host", "--build-arg", f"BASE={base}"),
                *("--secret", f"id=pip.conf,src={pip_conf}", "-f", str(DOCKERFILE)),
                *("-t", image, str(ROOT)),
            ],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert build.returncode == 0, (build.stdout + build.stderr)[-3000:]
    # The images of earlier inputs go but the newest few (other checkouts may be testing
    # theirs); their layers stay in the engine's cache for the next build. One in use
    # cannot be removed, and stays.
    listed = run(engine, "images", "--format", "{{.Repository}}:{{.Tag}}", TEST_IMAGE.split(":")[0])
    earlier = [
        name
        for name in listed.stdout.split()
        if name.startswith(f"{TEST_IMAGE}-") and name != image
    ]
    for name in earlier[KEPT_IMAGES:]:
        run(engine, "image", "rm", name)


def in_container(container: Engine, *argv: str, extra=()) -> subprocess.CompletedProcess:
    options = [*container.options, *extra]
    return run(container.command, "run", "--rm", *options, container.image, *argv)


CONTAINER_SCRIPTS = [
    "changeImage.py",
    "supplier_image_upload.py",
    "run.py",
    "report_email.py",
    "health_check.py",
]
# Each script run by name with --version, as `podman run IMAGE SCRIPT --version` runs it
# (found on the image's PATH, in its environment): one container for all of them.
VERSIONS = """import json, subprocess, sys
done = [subprocess.run([s, "--version"], capture_output=True, text=True) for s in sys.argv[1:]]
print(json.dumps([[d.returncode, d.stdout, d.stderr] for d in done]))
"""


@pytest.fixture(scope="module")
def versions(container) -> dict[str, tuple[int, str, str]]:
    """{script: (status, stdout, stderr)} of `SCRIPT --version` in the image."""
    result = in_container(container, "python3", "-c", VERSIONS, *CONTAINER_SCRIPTS)
    assert result.returncode == 0, result.stderr
    return dict(zip(CONTAINER_SCRIPTS, map(tuple, json.loads(result.stdout)), strict=True))


@pytest.mark.parametrize("script", CONTAINER_SCRIPTS)
def test_container_runs_each_script(versions, script):
    status, stdout, stderr = versions[script]
    assert status == 0, stderr
    assert re.fullmatch(rf"{re.escape(script)} \d+\.\d+\.\d+\n", stdout)


def test_container_health_check_under_its_limits(container):
    limits = ["--memory", "256m", "--cpus", "1", "--pids-limit", "64", "--network", "none"]
    # As the README runs it: a read-only root, the state (and its lock) in a volume, which
    # starts out with the ownership of the image's folder (anonymous here: --rm removes it).
    limits += ["--read-only", "--volume", "/home/fruit/.cache/health_check"]
    result = in_container(
        container,
        *("health_check.py", "--nagios", "--no-email", "--cpu", "100", "--disk", "0"),
        *("--memory", "0"),
        extra=limits,
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stdout
    assert result.stdout.startswith("HEALTH OK - ") and "mem_available=" in result.stdout


def test_container_keeps_no_package_caches(container):
    listed = in_container(container, "sh", "-c", "ls -A /var/lib/apt/lists /var/cache/apt")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == ["/var/cache/apt:", "/var/lib/apt/lists:"]


def test_container_is_not_root_and_holds_no_build_tools(container):
    tools = "gcc cc c++ make /opt/fruit-catalog/.venv/bin/pip"
    probe = f"id -u; for t in {tools}; do command -v $t; done"
    result = in_container(container, "sh", "-c", probe)
    assert result.stdout.split() == ["10001"], result.stdout + result.stderr


def test_container_converts_a_mounted_delivery(container, delivery):
    """As the README runs an import: the delivery mounted, SUPPLIER_DATA pointing at it."""
    for path in [delivery, *delivery.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)  # writable by the image's user
    mount = ["--volume", f"{delivery}:/data", "--env", "SUPPLIER_DATA=/data", "--network", "none"]
    result = in_container(container, "changeImage.py", "-q", extra=mount)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    converted = sorted(p.name for p in (delivery / "images").glob("*.jpeg"))
    assert converted == ["001.jpeg", "002.jpeg", "003.jpeg"]
