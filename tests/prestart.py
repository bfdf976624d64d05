"""Starts the scripts under test from a pre-warmed interpreter (tests/zygote.py).

A Python start that imports requests or reportlab costs 0.2 to 0.5 s of CPU, and the
suite starts the scripts hundreds of times. While installed (conftest.py does, unless
FRUIT_TESTS_REAL_START=1), subprocess.Popen, and so subprocess.run, starts a script of
SCRIPTS (or one of LAB_TOOLS; or the stand-in store, from a zygote of its own) as a
fork of this worker's zygote, which has the libraries imported already: a real process
with its own pid (signals reach it), the test's argv, environment, folder and standard
streams, and its exit status as the interpreter would give it.

Whatever needs a real start gets one, with no change to the test: an interpreter with
options (`-X importtime`, `-S`, `-c`), another Python (a copied script's own venv, or
`python3` found elsewhere on PATH), PYTHON*, LC_* or LANG set otherwise than for the
zygote, a preexec_fn, another user or group, fds passed on, signals ignored in this
process (they would be inherited), and every program that is not one of the scripts.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

SWITCH = "FRUIT_TESTS_REAL_START"
SCRIPTS = {
    *("changeImage.py", "supplier_image_upload.py", "run.py", "report_email.py"),
    *("reports.py", "emails.py", "health_check.py"),
}
ZYGOTE = Path(__file__).resolve().parent / "zygote.py"
# The stand-in store (sandbox/store.py, started about 60 times a run) has a zygote of
# its own, with Django's settings-free parts imported.
STORE = ZYGOTE.parent.parent / "sandbox" / "store.py"
# The lab's reference steps (the learner's side of the lab box's tests) import what the
# scripts import, and the lab box and its checker little more: they start from the
# scripts' zygote (the store a box starts is the box's own, a real start).
LAB_IMPL = ZYGOTE.parent / "lab_impls" / "lab_impl.py"
LAB_TOOLS = {str(LAB_IMPL), *(str(STORE.parent / name) for name in ("lab.py", "lab_check.py"))}
PYTHON_BIN = os.path.dirname(sys.executable)
PYTHON_NAMES = {"python", "python3", f"python3.{sys.version_info[1]}"}
SHEBANG = b"#!/usr/bin/env python3\n"
RECORD = struct.Struct("!cq")
# Variables read when an interpreter starts, or by libraries as they are imported.
START_VARIABLES = ("PYTHON", "LC_", "LANG", "RL_", "PILLOW_")
# Those a run may set otherwise than this process (its zygote is then started with them:
# a few per worker); any other difference (PYTHONPATH, PYTHONHOME...) is a real start.
OWN_ZYGOTE = ("PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PYTHONIOENCODING", "PYTHONUTF8")
OWN_ZYGOTE_PREFIXES = ("LC_", "LANG")
MOST_ZYGOTES = 5  # a few environments of the scripts, and the store


def start_variables(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(START_VARIABLES)}


class Zygote:
    """The zygote of this process: started at its first run, ended with this process."""

    def __init__(self, env: dict[str, str], kind: str) -> None:
        self.env = {k: v for k, v in env.items() if not k.startswith("COVERAGE_")}
        self.kind = kind
        self.lock = threading.Lock()
        self.control: socket.socket | None = None
        self.process: subprocess.Popen | None = None

    def ensure(self) -> socket.socket:
        with self.lock:
            if self.control is None:
                ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                given = json.dumps(sorted(self.env))  # the rest Python sets (C.UTF-8)
                self.process = ORIGINAL_POPEN(
                    [sys.executable, str(ZYGOTE), str(theirs.fileno()), given, self.kind],
                    pass_fds=[theirs.fileno()],
                    env=self.env,
                    cwd="/",
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                )
                theirs.close()
                self.control = ours
            return self.control

    def launch(self, request: dict, stdio: dict[int, int]) -> Channel:
        control = self.ensure()
        ours, theirs = socket.socketpair()
        try:
            request["stdio"] = list(stdio)
            message = json.dumps(request).encode()
            socket.send_fds(control, [message], [theirs.fileno(), *stdio.values()])
        finally:
            theirs.close()
        channel = Channel(ours)
        channel.pid = channel.read(b"P")
        return channel

    def stop(self) -> None:
        with self.lock:
            if self.control is not None:
                self.control.close()
                self.process.wait(timeout=30)
                self.control = None


class Channel:
    """One run's line to its leader in the zygote: its pid, then its wait status."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.pid = sock, 0

    def read(self, kind: bytes) -> int:
        data = b""
        while len(data) < RECORD.size:
            part = self.sock.recv(RECORD.size - len(data))
            if not part:
                raise ChildProcessError(f"the zygote's leader of pid {self.pid} is gone")
            data += part
        got, value = RECORD.unpack(data)
        assert got == kind, (got, kind)
        return value

    def ready(self, timeout: float | None) -> bool:
        return bool(select.select([self.sock], [], [], timeout)[0])

    def status(self) -> int:
        """The wait status (blocks until the run has ended)."""
        try:
            return self.read(b"S")
        finally:
            self.sock.close()


ZYGOTES: dict[tuple, Zygote] = {}
ZYGOTES_LOCK = threading.Lock()
ORIGINAL_POPEN = subprocess.Popen
ENVIRONMENT: dict[str, str] = {}


def zygote(env: dict[str, str], kind: str) -> Zygote | None:
    """The zygote of this process for a run of kind ("scripts" or "store") with env
    (None: it needs a real start)."""
    base = ENVIRONMENT or dict(os.environ)
    ours, theirs = start_variables(base), start_variables(env)
    for name in ours.keys() | theirs.keys():
        if ours.get(name) != theirs.get(name) and not (
            name in OWN_ZYGOTE or name.startswith(OWN_ZYGOTE_PREFIXES)
        ):
            return None
    key = os.getpid(), kind, tuple(sorted(theirs.items()))  # a fork of this process: its own
    with ZYGOTES_LOCK:
        if key not in ZYGOTES:
            if sum(k[0] == key[0] for k in ZYGOTES) >= MOST_ZYGOTES:
                return None
            others = {k: v for k, v in base.items() if not k.startswith(START_VARIABLES)}
            ZYGOTES[key] = Zygote(others | theirs, kind)
        return ZYGOTES[key]


def text(value: object) -> str:
    return os.fsdecode(value) if isinstance(value, (bytes, os.PathLike)) else str(value)


def plan(args, executable, cwd, env, start_new_session, process_group) -> dict | None:
    """The zygote's request for this start, or None where it needs a real start."""
    if isinstance(args, (str, bytes, os.PathLike)):
        args = [args]
    args = [text(a) for a in args]
    env = dict(os.environ) if env is None else {text(k): text(v) for k, v in env.items()}
    cwd = os.getcwd() if cwd is None else text(cwd)
    if executable is not None and text(executable) != args[0]:
        return None
    if not args or not os.path.isdir(cwd):
        return None
    first = os.path.join(cwd, args[0])
    if os.path.basename(args[0]) in PYTHON_NAMES and os.path.dirname(first) == PYTHON_BIN:
        if len(args) < 2 or args[1].startswith("-"):
            return None  # options, -c, -m: a real interpreter
        script, argv, python = args[1], args[1:], first
        orig_argv = args
    elif "/" in args[0]:
        script, argv = args[0], args
        python = shutil.which("python3", path=env.get("PATH", os.defpath))
        if python != os.path.join(PYTHON_BIN, "python3"):
            return None  # another python3 on the script's PATH
        try:
            with open(first, "rb") as source:
                if source.readline() != SHEBANG or not os.access(first, os.X_OK):
                    return None
        except OSError:
            return None
        orig_argv = ["python3", *args]
    else:
        return None
    path = os.path.join(cwd, script)  # as the interpreter makes __file__: not normalised
    real = os.path.realpath(path)
    if os.path.basename(path) in SCRIPTS or real in LAB_TOOLS:
        kind = "scripts"
    elif real == str(STORE):
        kind = "store"
    else:
        return None
    if not os.path.isfile(path) or zygote(env, kind) is None:
        return None
    return {
        "script": path,
        "argv": argv,
        "orig_argv": orig_argv,
        "executable": python,
        "cwd": cwd,
        "env": env,
        "umask": current_umask(),
        "new_session": bool(start_new_session),
        "process_group": process_group,
        "kind": kind,
    }


UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    with UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def signals_inherited() -> bool:
    """Whether this process ignores a signal a new interpreter would inherit ignored."""
    for sig in signal.valid_signals():
        if sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            if signal.getsignal(sig) == signal.SIG_IGN:
                return True
        except ValueError:
            continue
    return False


class Popen(subprocess.Popen):
    """subprocess.Popen that starts a script of SCRIPTS from the zygote where it can."""

    _channel: Channel | None = None

    @property
    def prestarted(self) -> bool:
        """Whether this process was forked from the zygote (False: a real start)."""
        return self._channel is not None

    def _execute_child(
        self, args, executable, preexec_fn, close_fds, pass_fds, cwd, env, startupinfo,
        creationflags, shell, p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite,
        restore_signals, gid, gids, uid, umask, start_new_session, process_group,
    ):  # fmt: skip
        request = None
        if not (
            os.environ.get(SWITCH) == "1"
            or shell
            or preexec_fn is not None
            or not close_fds
            or pass_fds
            or not restore_signals
            or (gid, gids, uid) != (None, None, None)
            or umask >= 0
            or signals_inherited()
        ):
            request = plan(args, executable, cwd, env, start_new_session, process_group)
        if request is None:
            return super()._execute_child(
                args, executable, preexec_fn, close_fds, pass_fds, cwd, env, startupinfo,
                creationflags, shell, p2cread, p2cwrite, c2pread, c2pwrite, errread,
                errwrite, restore_signals, gid, gids, uid, umask, start_new_session,
                process_group,
            )  # fmt: skip
        stdio = {}
        for target, fd in enumerate((p2cread, c2pwrite, errwrite)):
            fd = target if fd == -1 else fd
            try:
                os.fstat(fd)
            except OSError:
                continue  # closed here: closed in the run too
            stdio[target] = fd
        try:
            self._channel = zygote(request["env"], request["kind"]).launch(request, stdio)
            self.pid = self._channel.pid
            self._child_created = True
        finally:
            self._close_pipe_fds(p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite)

    def _settle(self, block: bool) -> None:
        """Take the run's status if it has come (waiting for it if block)."""
        if self._channel.ready(None if block else 0):
            try:
                status = self._channel.status()
            except ChildProcessError:
                status = 255 << 8  # the zygote died under it: nothing more can be known
            self._handle_exitstatus(status)

    def _internal_poll(self, _deadstate=None, **_ignored):
        if self._channel is None:
            return super()._internal_poll(_deadstate=_deadstate)
        if self.returncode is None and self._waitpid_lock.acquire(False):
            try:
                if self.returncode is None:
                    self._settle(block=False)
            finally:
                self._waitpid_lock.release()
        return self.returncode

    def _wait(self, timeout):
        if self._channel is None:
            return super()._wait(timeout)
        end = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            remaining = None if end is None else end - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise subprocess.TimeoutExpired(self.args, timeout)
            if not self._channel.ready(remaining):
                continue
            with self._waitpid_lock:
                if self.returncode is None:
                    self._settle(block=True)
        return self.returncode


def install(environment: dict[str, str]) -> None:
    """Route this process's starts of the scripts through the zygote (see module doc)."""
    ENVIRONMENT.update(environment)
    subprocess.Popen = Popen


def uninstall() -> None:
    subprocess.Popen = ORIGINAL_POPEN
    for zygote_ in ZYGOTES.values():
        zygote_.stop()
