"""A pre-warmed start for the scripts under test (tests/prestart.py is its other half).

Started once per test worker as `python tests/zygote.py FD VARIABLES KIND`, it imports the
libraries the scripts import (KIND "scripts"; never the project's own modules: a script
imports emails.py or reports.py from beside it, as a copy of it alone would), or the
parts of Django that need no settings (KIND "store", for sandbox/store.py: its settings
come from each store's variables), then waits on the socket FD. Each request
(the argv, environment, folder and standard streams of one run) forks a leader, which
forks the run's process and sends back its pid, then its wait status once it has ended.

The run's process is set up as a new interpreter would be before it ran the script:
argv, sys.path[0], __main__, fresh standard streams over fds 0, 1 and 2 (every other fd
closed), the environment, the folder, the umask, signal dispositions as Python sets them
(SIGINT raises KeyboardInterrupt, SIGPIPE and SIGXFSZ ignored, the rest default) and
none blocked; and it ends as the interpreter does: SystemExit's code, or the traceback
and 1, then the non-daemon threads joined, atexit, the streams flushed.
"""

import atexit
import contextlib
import gc
import io
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
import warnings

# The libraries the scripts import, in about the order they do (a module missing here
# is imported by the run itself, as usual).
SCRIPTS_PRELOAD = [
    *("argparse", "codecs", "contextlib", "ctypes", "datetime", "errno", "fcntl"),
    *("functools", "glob", "hashlib", "http.client", "io", "json", "logging", "math"),
    *("mmap", "re", "shlex", "stat", "tempfile", "uuid", "collections"),
    *("concurrent.futures", "concurrent.futures.thread", "dataclasses", "enum", "pathlib"),
    *("typing", "urllib.parse", "base64", "getpass", "ipaddress", "mimetypes", "smtplib"),
    *("ssl", "email.errors", "email.header", "email.headerregistry", "email.message"),
    *("email.utils", "email.policy", "email.mime.application", "email.mime.multipart"),
    *("itertools", "pwd", "urllib.request", "urllib.error", "xml.sax.saxutils"),
    *("PIL.Image", "PIL.ImageCms", "PIL.ImageColor", "PIL.PngImagePlugin"),
    *("PIL.TiffImagePlugin", "requests", "urllib3", "requests.adapters", "urllib3.util"),
    "psutil",
    *("reportlab.rl_config", "reportlab.graphics.charts.legends"),
    *("reportlab.graphics.charts.piecharts", "reportlab.graphics.shapes"),
    *("reportlab.lib.colors", "reportlab.lib.pagesizes", "reportlab.lib.styles"),
    *("reportlab.lib.units", "reportlab.pdfbase.pdfmetrics", "reportlab.pdfbase.cidfonts"),
    *("reportlab.pdfbase.ttfonts", "reportlab.pdfgen.canvas", "reportlab.platypus"),
]
# What the stand-in store imports before Django reads its settings (DRF and storeapp
# read them as they are imported: each store imports those itself).
STORE_PRELOAD = [
    *("argparse", "dataclasses", "inspect", "logging.config", "shutil", "sqlite3"),
    *("django.conf", "django.urls", "django.http", "django.utils.log", "django.apps"),
    *("django.core.servers.basehttp", "django.core.handlers.wsgi", "django.core.wsgi"),
    *("django.core.mail", "django.core.serializers.json", "django.core.validators"),
    *("django.core.files.storage", "django.db.models", "django.db.migrations"),
    *("django.db.backends.sqlite3.base", "django.db.backends.sqlite3.schema"),
    *("django.db.backends.sqlite3.introspection", "django.middleware.common"),
    *("django.template.defaultfilters", "django.views.generic", "django.utils.translation"),
]
PRELOADS = {"scripts": SCRIPTS_PRELOAD, "store": STORE_PRELOAD}
# Signals Python itself sets to be ignored at start.
IGNORED_AT_START = {signal.SIGPIPE, signal.SIGXFSZ}
RECORD = struct.Struct("!cq")  # b"P" and the pid, b"S" and the wait status
# -u or PYTHONUNBUFFERED, as this interpreter was started (the runs are started alike).
UNBUFFERED = sys.stdout is not None and sys.stdout.write_through


def preload(kind: str) -> None:
    import importlib

    for name in PRELOADS[kind]:
        with contextlib.suppress(Exception):  # the run meets the same error itself
            importlib.import_module(name)


def stdio(fd: int, write: bool, model: io.TextIOWrapper | None) -> io.TextIOWrapper | None:
    """sys.stdin, sys.stdout or sys.stderr as a new interpreter makes it over fd
    (Python/pylifecycle.c, create_stdio)."""
    try:
        os.fstat(fd)
    except OSError:
        return None
    buffered = not UNBUFFERED
    buffering = -1 if buffered or not write else 0
    stream = io.open(fd, "wb" if write else "rb", buffering=buffering, closefd=False)  # noqa: SIM115, UP020
    raw = stream.raw if buffering else stream
    raw.name = ("<stdin>", "<stdout>", "<stderr>")[fd]
    text = io.TextIOWrapper(
        stream,
        encoding=model.encoding if model else None,
        errors=model.errors if model else ("backslashreplace" if fd == 2 else "strict"),
        newline="\n",
        line_buffering=buffered and (raw.isatty() or fd == 2),
        write_through=not buffered,
    )
    text.mode = "w" if write else "r"
    return text


def exit_status(code: object) -> int:
    """The status the interpreter exits with for SystemExit(code)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    with contextlib.suppress(Exception):  # as the interpreter, which says nothing more
        print(code, file=sys.stderr)
    return 1


def run(request: dict, fds: list[int], models: tuple, filters: list, code) -> None:
    """In the run's process: become the interpreter that runs the script, then exit."""
    status = 1
    try:
        if request["new_session"]:
            os.setsid()
        elif request["process_group"] >= 0:
            os.setpgid(0, request["process_group"])
        given = dict(zip(request["stdio"], fds, strict=True))
        for target in (0, 1, 2):
            if target in given:
                os.dup2(given[target], target)
            else:
                with contextlib.suppress(OSError):
                    os.close(target)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        os.chdir(request["cwd"])
        os.umask(request["umask"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ.update(SET_AT_START)
        time.tzset()
        import tempfile

        tempfile.tempdir = None
        if "logging" in sys.modules:
            sys.modules["logging"]._startTime = time.time()
        for sig in signal.valid_signals():
            if sig in (signal.SIGKILL, signal.SIGSTOP):
                continue
            handler = signal.SIG_IGN if sig in IGNORED_AT_START else signal.SIG_DFL
            with contextlib.suppress(OSError, ValueError):
                signal.signal(sig, handler)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.set_wakeup_fd(-1)
        warnings.filters[:] = filters
        warnings.onceregistry.clear()
        warnings._filters_mutated()
        sys.stdin, sys.stdout, sys.stderr = (
            stdio(fd, fd > 0, model) for fd, model in zip((0, 1, 2), models, strict=True)
        )
        sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr
        script = request["script"]
        sys.argv = request["argv"]
        sys.orig_argv = request["orig_argv"]
        sys.executable = request["executable"]
        sys.path[0] = os.path.dirname(os.path.realpath(script))
        sys.modules.pop("__main__", None)
        main = type(sys)("__main__")
        from importlib.machinery import SourceFileLoader

        main.__file__, main.__cached__ = script, None
        main.__loader__ = SourceFileLoader("__main__", script)
        main.__builtins__ = __builtins__
        sys.modules["__main__"] = main
        if "COVERAGE_PROCESS_START" in os.environ or "COVERAGE_PROCESS_CONFIG" in os.environ:
            import coverage  # as the coverage .pth file would at a real start

            coverage.process_startup(slug="pth")
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
    except BaseException as error:  # nothing of the script has run yet
        os.write(2, f"tests/zygote.py: cannot start the run: {error!r}\n".encode())
        os._exit(127)
    interrupted = False
    try:
        if code is None:
            with open(script, "rb") as source:
                code = compile(source.read(), script, "exec", dont_inherit=True)
        exec(code, main.__dict__)
        status = 0
    except SystemExit as stop:
        status = exit_status(stop.code)
    except BaseException as error:  # the interpreter's own handling
        interrupted = isinstance(error, KeyboardInterrupt)
        error.__traceback__ = error.__traceback__.tb_next  # from the script's first frame
        sys.excepthook(type(error), error, error.__traceback__)
        status = 1
    status = finalize(status)
    if interrupted:  # an uncaught KeyboardInterrupt ends the interpreter by SIGINT
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(status)


def finalize(status: int) -> int:
    """What Py_FinalizeEx does that a script can see: threads joined, atexit, flush."""
    try:
        threading._shutdown()
    except BaseException as error:  # "Exception ignored", as the interpreter
        import traceback

        print(f"Exception ignored in: {threading!r}", file=sys.stderr)
        traceback.print_exception(error)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            status = 120
    return status


def lead(channel: socket.socket, request: dict, fds: list[int], models, filters, code) -> None:
    """In the leader: start the run's process, send its pid, then its wait status."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    pid = os.fork()
    if pid == 0:
        run(request, fds, models, filters, code)
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    for fd in fds:
        os.close(fd)
    channel.sendall(RECORD.pack(b"P", pid))
    _, status = os.waitpid(pid, 0)
    channel.sendall(RECORD.pack(b"S", status))


def compiled(path: str, cache: dict):
    """The script's code, compiled once for its path and content (or None: the run tries
    itself, and says what is wrong as the interpreter would)."""
    import hashlib

    try:
        with open(path, "rb") as source:
            data = source.read()
        key = path, hashlib.sha256(data).digest()
        if key not in cache:
            cache[key] = compile(data, path, "exec", dont_inherit=True)
        return cache[key]
    except Exception:
        return None


def reap() -> None:
    """Wait for the leaders that have ended (so their runs' CPU time is counted up the
    tree, as a test's own children's is)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def serve(control: socket.socket) -> None:
    codes: dict = {}
    models = (sys.stdin, sys.stdout, sys.stderr)
    filters = list(warnings.filters)
    gc.freeze()  # the preloaded objects stay shared with the runs, not copied
    while True:
        reap()
        message, fds, _, _ = socket.recv_fds(control, 1 << 20, 8)
        if not message:
            reap()
            return  # the test worker is gone
        request = json.loads(message)
        code = compiled(request["script"], codes)
        if os.fork() == 0:
            try:
                control.close()
                channel = socket.socket(fileno=fds[0])
                lead(channel, request, fds[1:], models, filters, code)
            finally:
                os._exit(0)
        for fd in fds:
            os.close(fd)


# What the interpreter added to its environment as it started (LC_CTYPE=C.UTF-8 where the
# locale was C): a run started with the same variables gets the same.
SET_AT_START = {
    k: v for k, v in os.environ.items() if len(sys.argv) > 2 and k not in json.loads(sys.argv[2])
}

if __name__ == "__main__":
    preload(sys.argv[3] if len(sys.argv) > 3 else "scripts")
    serve(socket.socket(fileno=int(sys.argv[1])))
