"""The suite's pre-warmed start (tests/prestart.py, tests/zygote.py): a script started
from the zygote behaves as one started for real, in what a script or a test can see.
Each probe is a script named like one of the project's (the zygote starts only those,
and the stand-in store from a zygote of its own), started both ways; what it shows must
be the same."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import prestart
import pytest
import requests
from helper import wait_for

# What a started interpreter shows of itself: compared between the two starts.
SELF_PORTRAIT = r"""
import json, os, signal, sys, warnings
import emails  # beside this script, never the project's
mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
print(json.dumps({
    "argv": sys.argv, "orig_argv": sys.orig_argv[1:], "executable": sys.executable,
    "path0": sys.path[0], "file": __file__, "name": __name__, "emails": emails.WHO,
    "cwd": os.getcwd(), "umask": os.umask(0o22), "variable": os.environ.get("PROBE"),
    "stdin": sys.stdin.read(), "fds": sorted(os.listdir("/proc/self/fd")),
    "dispositions": {s.name: str(signal.getsignal(s)) for s in signal.Signals
                     if s not in (signal.SIGKILL, signal.SIGSTOP)},
    "blocked": sorted(s.name for s in mask),
    "streams": [(s.name, s.encoding, s.errors, s.line_buffering, s.mode)
                for s in (sys.stdin, sys.stdout, sys.stderr)],
    "flags": list(sys.flags), "dont_write_bytecode": sys.dont_write_bytecode,
    "same_main": sys.modules["__main__"].__dict__ is globals(),
    "loader": type(__loader__).__name__, "spec": __spec__, "package": __package__,
}))
print("to stderr", file=sys.stderr)
"""


@pytest.fixture(autouse=True)
def zygote_on(monkeypatch) -> None:
    """These tests are of the zygote: it is on for them even where the suite runs with
    FRUIT_TESTS_REAL_START=1 (each test turns it off where it compares)."""
    monkeypatch.delenv(prestart.SWITCH, raising=False)


@pytest.fixture
def probe(tmp_path: Path):
    """probe(code, name="run.py"): a script of that name in its own folder, with an
    emails.py beside it, as `./name` would start it."""
    folder = tmp_path / "probe"
    folder.mkdir()
    (folder / "emails.py").write_text("WHO = 'the emails.py beside the probe'\n")

    def write(code: str, name: str = "run.py") -> Path:
        script = folder / name
        script.write_text("#!/usr/bin/env python3\n" + code, encoding="utf-8")
        script.chmod(0o755)
        return script

    return write


def both(monkeypatch, args: list, **options) -> tuple:
    """The script run from the zygote and run for real: (result, result), each
    (status, stdout, stderr) as text unless options say otherwise."""
    options = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True} | options
    results = []
    for real in ("", "1"):
        monkeypatch.setenv(prestart.SWITCH, real)
        process = subprocess.Popen(args, **options)
        assert process.prestarted is not bool(real), args
        out, err = process.communicate(timeout=60)
        results.append((process.returncode, out, err))
    return tuple(results)


def test_a_probe_sees_the_same_process_either_way(probe, monkeypatch, tmp_path) -> None:
    script = probe(SELF_PORTRAIT)
    work = tmp_path / "work"
    work.mkdir()
    results = []
    for real in ("", "1"):
        monkeypatch.setenv(prestart.SWITCH, real)
        process = subprocess.Popen(
            ["../probe/run.py", "one", "two words"],
            cwd=work,
            env={**os.environ, "PROBE": "here", "FRUIT_TESTS_REAL_START": real},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.prestarted is not bool(real)
        out, err = process.communicate("what came in\n", timeout=60)
        results.append((process.returncode, json.loads(out), err))
    (status, shown, err), (real_status, real_shown, real_err) = results
    assert (status, err) == (real_status, real_err) == (0, "to stderr\n")
    assert shown == real_shown
    assert shown["argv"] == ["../probe/run.py", "one", "two words"]
    assert shown["path0"] == str(script.parent)  # resolved, as Python does
    assert shown["file"] == f"{work}/../probe/run.py"  # joined, not normalised
    assert shown["emails"] == "the emails.py beside the probe"
    assert shown["stdin"] == "what came in\n" and shown["variable"] == "here"
    assert shown["fds"] == ["0", "1", "2", "3"]  # 3: the listing's own
    assert shown["dispositions"]["SIGINT"] == str(signal.default_int_handler)
    assert shown["dispositions"]["SIGPIPE"] == str(signal.SIG_IGN)


def test_exit_statuses_are_the_interpreters(probe, monkeypatch) -> None:
    cases = {
        "import sys; sys.exit(3)": (3, ""),
        "import sys; sys.exit()": (0, ""),
        "import sys; sys.exit(258)": (2, ""),
        "import sys; sys.exit(-1)": (255, ""),
        "raise SystemExit('said and 1')": (1, "said and 1\n"),
        "print('fine')": (0, ""),
    }
    for code, (status, err) in cases.items():
        zygote, real = both(monkeypatch, [probe(code)])
        assert zygote == real
        assert zygote[0] == status and zygote[2] == err, code


def test_an_uncaught_exception_is_its_traceback_and_1(probe, monkeypatch) -> None:
    script = probe("def fail():\n    raise ValueError('no such fruit')\n\nfail()\n")
    zygote, real = both(monkeypatch, [script])
    assert zygote == real
    status, _, err = zygote
    assert status == 1
    assert err.startswith("Traceback (most recent call last):\n")
    assert f'File "{script}", line 5, in <module>' in err
    assert err.endswith("ValueError: no such fruit\n") and "zygote" not in err


def test_threads_finish_then_atexit_then_the_streams_are_flushed(probe, monkeypatch):
    code = (
        "import atexit, sys, threading, time\n"
        "atexit.register(lambda: print('atexit', flush=False))\n"
        "def late():\n    time.sleep(0.3)\n    print('thread done')\n"
        "threading.Thread(target=late).start()\n"
        "print('main done')\n"
        "sys.stdout.write('unflushed')\n"
    )
    zygote, real = both(monkeypatch, [probe(code)])
    assert zygote == real == (0, "main done\nunflushedthread done\natexit\n", "")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_reaches_the_run_as_it_would_a_real_one(probe, monkeypatch, sig) -> None:
    # Short sleeps: a signal landing after Python's last check and before a long sleep
    # begins is acted on only when that sleep ends (a CPython race, zygote or not).
    code = "import time\nprint('ready', flush=True)\nwhile True:\n    time.sleep(0.05)\n"
    script = probe(code)
    results = []
    for real in ("", "1"):
        monkeypatch.setenv(prestart.SWITCH, real)
        process = subprocess.Popen([script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert process.stdout.readline() == b"ready\n"
        process.send_signal(sig)
        _, err = process.communicate(timeout=60)
        results.append((process.returncode, err.decode().splitlines()[-1:]))
    assert results[0] == results[1]
    if sig == signal.SIGINT:  # KeyboardInterrupt's traceback, then killed by SIGINT
        assert results[0] == (-signal.SIGINT, ["KeyboardInterrupt"])
    else:
        assert results[0] == (-sig, [])


def test_wait_with_a_timeout_and_poll(probe, monkeypatch) -> None:
    process = subprocess.Popen([probe("import time\ntime.sleep(1)\n")])
    assert process.prestarted and process.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        process.wait(timeout=0.1)
    started = time.monotonic()
    wait_for(lambda: process.poll() is not None)
    assert process.returncode == 0 and time.monotonic() - started < 30


def test_stderr_into_stdout_and_a_closed_pipe(probe, monkeypatch) -> None:
    code = "import sys\nprint('out', flush=True)\nprint('err', file=sys.stderr)\n"
    zygote, real = both(monkeypatch, [probe(code)], stderr=subprocess.STDOUT, text=False)
    assert zygote == real == (0, b"out\nerr\n", None)
    code = "import sys\nfor n in range(10**6):\n    print('x' * 100)\n"
    script = probe(code)
    statuses = []
    for real in ("", "1"):
        monkeypatch.setenv(prestart.SWITCH, real)
        process = subprocess.Popen([script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        process.stdout.read(10)
        process.stdout.close()
        statuses.append((process.wait(timeout=60), b"BrokenPipeError" in process.stderr.read()))
    assert statuses[0] == statuses[1] == (120, True) or statuses[0] == statuses[1]


@pytest.mark.parametrize(
    "how",
    [
        *("python option", "PYTHONPATH", "PYTHONWARNINGS", "preexec_fn", "another name"),
        *("switch", "user"),
    ],
)
def test_what_needs_a_real_start_gets_one(probe, monkeypatch, how) -> None:
    script = probe("print('started')\n", name="lab.py" if how == "another name" else "run.py")
    args, options = [script], {}
    if how == "python option":
        args = [sys.executable, "-X", "importtime", script]
    elif how in ("PYTHONPATH", "PYTHONWARNINGS"):
        options["env"] = {**os.environ, how: "/elsewhere" if how == "PYTHONPATH" else "default"}
    elif how == "preexec_fn":
        options["preexec_fn"] = lambda: None
    elif how == "switch":
        monkeypatch.setenv(prestart.SWITCH, "1")
    elif how == "user":
        options["user"] = os.getuid()
    process = subprocess.Popen(args, stdout=subprocess.PIPE, **options)
    assert not process.prestarted
    assert process.communicate(timeout=60)[0].endswith(b"started\n")
    assert process.returncode == 0


def test_the_scripts_python_and_as_shebang_are_prestarted(probe) -> None:
    script = probe("import sys\nprint(sys.argv[0])\n")
    python3 = Path(sys.executable).parent / "python3"
    for args in ([script], [sys.executable, script], [python3, script]):
        process = subprocess.Popen(args, stdout=subprocess.PIPE)
        assert process.prestarted, args
        assert process.communicate(timeout=60)[0] == f"{script}\n".encode()


def test_a_bare_environment_is_started_alike(probe, monkeypatch) -> None:
    """No LANG, no PYTHON* variables (as several tests run a script): its own zygote,
    and the same environment, locale, flags and streams as a real start shows."""
    code = (
        "import json, locale, os, sys\n"
        "print(json.dumps([dict(os.environ), list(sys.flags), locale.setlocale(locale.LC_CTYPE),\n"
        "    [(s.encoding, s.errors, s.line_buffering, s.write_through)\n"
        "     for s in (sys.stdin, sys.stdout, sys.stderr)]]))\n"
    )
    env = {"PATH": os.environ["PATH"], "HOME": "/nowhere"}
    zygote, real = both(monkeypatch, [probe(code)], env=env)
    assert zygote == real
    assert zygote[0] == 0 and json.loads(zygote[1])[0]["HOME"] == "/nowhere"


def test_the_stand_in_store_answers_the_same_either_way(monkeypatch, tmp_path) -> None:
    """The store's zygote holds Django's settings-free parts; each store still reads its
    own settings (its folder, token, faults) as it starts."""
    from store import Faults, StoreProcess

    answers = []
    for real in ("", "1"):
        monkeypatch.setenv(prestart.SWITCH, real)
        store = StoreProcess(tmp_path / f"store{real}", token="t", faults=Faults(fail_503_every=4))
        store.start()
        try:
            assert store.process.prestarted is not bool(real)
            said = []
            for body in (
                {"name": "Apple", "weight": 500, "description": "d", "image_name": "a"},
                {"name": "Kiwi", "weight": "heavy"},
                {"name": "Fig", "weight": 1},
            ):
                for token in ("t", "wrong"):
                    answer = requests.post(
                        store.url + "fruits/",
                        json=body,
                        timeout=30,
                        headers={"Authorization": f"Token {token}"},
                    )
                    said.append((answer.status_code, answer.text))
            listed = requests.get(
                store.url + "fruits/", timeout=30, headers={"Authorization": "Token t"}
            )
            said.append((listed.status_code, listed.json()))
            answers.append((said, store.post_count, [f["name"] for f in store.catalog.fruits()]))
        finally:
            store.stop()
    assert answers[0] == answers[1]
    statuses = [status for status, _ in answers[0][0]]
    # Its token and its faults hold: 201, 401 for the wrong token, 400, and every 4th POST 503.
    assert statuses == [201, 401, 400, 503, 201, 401, 200], answers[0][0]
    assert answers[0][1:] == (6, ["Apple", "Fig"])
