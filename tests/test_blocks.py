"""The homes of the shared blocks `files`, `deadline`, `early stop`, `lock`'s machine
locks and `cli`'s sleep, tested where people edit them (blocks/): the scripts carry
generated copies, which tests/test_scripts.py keeps identical."""

from __future__ import annotations

import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest

BLOCKS = Path(__file__).resolve().parent.parent / "blocks"
HANG_GUARD = 60  # seconds: how long a test waits for what should come at once
sys.path.insert(0, str(BLOCKS))

from cli import PrintableFormatter, guarded  # noqa: E402
from deadline import Deadline, watch_socket  # noqa: E402
from files import read_capped, write_atomically  # noqa: E402
from lock import (  # noqa: E402
    STOPPING,
    DeliveryBusy,
    hold_machine_lock,
    private_folder,
)


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.endswith(".tmp"))


@pytest.mark.parametrize(
    "data, mode, expected",
    [
        ("fruit\n", 0o644, b"fruit\n"),
        ("pêche\n", 0o600, "pêche\n".encode()),
        (b"\x00\xff", 0o640, b"\x00\xff"),
    ],
    ids=["text", "text-private", "bytes"],
)
def test_write_atomically_writes_whole_with_the_mode(tmp_path, data, mode, expected):
    target = tmp_path / "state.json"
    target.write_bytes(b"the old content, longer than the new")
    write_atomically(target, data, mode=mode)
    assert target.read_bytes() == expected
    assert target.stat().st_mode & 0o777 == mode
    assert leftovers(tmp_path) == []


def test_write_atomically_replaces_a_link_not_its_target(tmp_path):
    (tmp_path / "elsewhere").write_text("keep")
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    write_atomically(tmp_path / "link", "new")
    assert (tmp_path / "elsewhere").read_text() == "keep"
    assert (tmp_path / "link").read_text() == "new"
    assert not (tmp_path / "link").is_symlink()


@pytest.mark.parametrize("kind", ["folder", "fifo", "device"])
def test_write_atomically_refuses_what_the_rename_would_replace(tmp_path, kind):
    if kind == "folder":
        target = tmp_path / "folder"
        target.mkdir()
    elif kind == "fifo":
        target = tmp_path / "fifo"
        os.mkfifo(target)
    else:
        target = Path("/dev/null")
    with pytest.raises(OSError, match="not a regular file, which it would replace"):
        write_atomically(target, "x")
    assert target.exists() and not target.is_file()
    assert leftovers(tmp_path) == []


def test_write_atomically_needs_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_atomically(tmp_path / "missing" / "state.json", "x")


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    """A write over the file size limit (a full disk's kind of failure), in a child
    process so that the limit binds nobody else."""
    target = tmp_path / "state.json"
    target.write_text("old")
    program = (
        "import resource, signal, sys\n"
        f"sys.path.insert(0, {str(BLOCKS)!r})\n"
        "from files import write_atomically\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))\n"
        "try:\n"
        f"    write_atomically(__import__('pathlib').Path({str(target)!r}), 'x' * 1000)\n"
        "except OSError as error:\n"
        "    print(error.errno)\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert done.stdout.strip() == "27"  # EFBIG
    assert target.read_text() == "old"
    assert leftovers(tmp_path) == []


def test_read_capped_reads_a_file_up_to_the_limit(tmp_path):
    path = tmp_path / "record.json"
    path.write_bytes(b"x" * 10)
    assert read_capped(path, 10) == b"x" * 10


@pytest.mark.parametrize(
    "kind, message",
    [
        ("large", "11 bytes, over the limit of 10"),
        ("folder", "a folder"),
        ("fifo", "not a regular file"),
        ("device", "not a regular file"),
    ],
)
def test_read_capped_refuses_at_once(tmp_path, kind, message):
    path = tmp_path / kind
    if kind == "large":
        path.write_bytes(b"x" * 11)
    elif kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)  # no writer: a blocking open would wait for ever
    else:
        path.symlink_to("/dev/zero")
    with pytest.raises(OSError, match=message):
        read_capped(path, 10)


def test_read_capped_of_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_capped(tmp_path / "missing", 10)


# A fresh interpreter runs the block as a script's first code does, then stops itself.
EARLY_STOP_RUN = """from __future__ import annotations
import os, sys
before = set(sys.modules)
exec(open(sys.argv[1], encoding="utf-8").read().split("# --- block ---")[1])
print(sorted(set(sys.modules) - before - {"fruit_catalog_shared"}), flush=True)  # state
os.kill(os.getpid(), 15)
"""


def test_the_early_stop_imports_nothing_before_it_is_in_place():
    """A stop while the prologue still imports (`signal` imports enum: 10 ms and more on
    a busy machine) was a traceback or a silent death: it uses only what the
    interpreter loaded at start."""
    done = subprocess.run(
        [sys.executable, "-c", EARLY_STOP_RUN, str(BLOCKS / "early_stop.py")],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL),
    )
    assert done.stdout == "[]\n", done.stdout
    assert (done.returncode, done.stderr) == (130, "ERROR interrupted by SIGTERM\n")


@pytest.fixture
def silent_server():
    """A loopback server that accepts and never says a word; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()
    for connection in accepted:
        connection.close()


def test_a_deadline_cuts_a_wait_the_socket_timeout_would_not(silent_server):
    sock = socket.create_connection(("127.0.0.1", silent_server), timeout=120)
    with sock, Deadline(0.2) as deadline:
        deadline.watch(sock)
        try:
            answer = sock.recv(1)
        except OSError:
            answer = None
    assert deadline.expired
    assert answer in (b"", None)


def test_a_deadline_cuts_a_tls_handshake_through_the_wrap(silent_server):
    """The socket is watched before the wrap, which detaches it from its object: the
    deadline still reaches it by its descriptor."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    sock = socket.create_connection(("127.0.0.1", silent_server), timeout=120)
    with Deadline(0.2) as deadline:
        deadline.watch(sock)
        with pytest.raises(OSError):
            context.wrap_socket(sock, server_hostname="localhost")
    assert deadline.expired
    sock.close()


def test_a_deadline_leaves_alone_the_file_that_took_the_number_of_its_socket():
    watched, _ = socket.socketpair()
    number = watched.fileno()
    deadline = Deadline(60)
    deadline.watch(watched)
    watched.close()
    reused, theirs = socket.socketpair()
    if reused.fileno() != number:
        os.dup2(reused.fileno(), number)
        reused.close()
        reused = socket.socket(fileno=number)
    deadline.expire()
    reused.sendall(b"still open")
    assert theirs.recv(64) == b"still open"
    reused.close()
    theirs.close()


def test_watching_after_the_deadline_passed_fails_at_once():
    left, right = socket.socketpair()
    deadline = Deadline(60)
    deadline.expire()
    with pytest.raises(TimeoutError, match="no whole answer within 60 s"):
        deadline.watch(left)
    left.close()
    right.close()


def test_watch_socket_reaches_the_deadline_entered_last_in_this_thread():
    left, right = socket.socketpair()
    assert Deadline.current() is None
    watch_socket(left)  # no deadline: nothing to do
    with Deadline(60) as outer:
        with Deadline(60) as inner:
            watch_socket(left)
            assert Deadline.current() is inner
            assert inner.fd == left.fileno() and outer.fd == -1
        assert Deadline.current() is outer
    assert Deadline.current() is None
    assert 0 < outer.left() <= 60
    left.close()
    right.close()


# -- lock: the machine locks of every run of this user ---------------------------------


def plant(kind: str, folder: Path) -> None:
    """What another user (or an accident) left where the lock folder goes."""
    if kind == "link":
        (folder.parent / "elsewhere").mkdir()
        folder.symlink_to(folder.parent / "elsewhere")
    elif kind == "file":
        folder.write_text("x")
    elif kind == "open to others":
        folder.mkdir()
        folder.chmod(0o777)
    elif kind == "another user's":
        if os.getuid() != 0:
            pytest.skip("giving a folder to another user needs root")
        folder.mkdir(0o700)
        os.chown(folder, 65534, 65534)


@pytest.mark.parametrize(
    "kind, message",
    [
        ("link", "a link"),
        ("file", "not a folder"),
        ("open to others", r"writable by other users \(mode 777\)"),
        ("another user's", "owned by uid 65534, not by this user"),
    ],
)
def test_a_lock_folder_others_could_touch_is_refused(tmp_path, monkeypatch, kind, message):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    plant(kind, tmp_path / "fruit-catalog")
    with pytest.raises(OSError, match=message) as refused:
        private_folder()
    assert refused.value.filename == str(tmp_path / "fruit-catalog")


def test_the_lock_folder_is_made_private_in_the_runtime_folder_else_the_temporary_one(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    (tmp_path / "run").mkdir()
    assert private_folder() == tmp_path / "run" / "fruit-catalog"
    assert (tmp_path / "run" / "fruit-catalog").stat().st_mode & 0o777 == 0o700
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    folder = private_folder()
    assert folder == tmp_path / f"fruit-catalog-{os.getuid()}"
    assert folder.stat().st_mode & 0o777 == 0o700
    assert private_folder() == folder  # found the second time
    if os.getuid() == 0:  # `su` keeps the XDG_RUNTIME_DIR of the user it came from
        (tmp_path / "theirs").mkdir(0o700)
        os.chown(tmp_path / "theirs", 65534, 65534)
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "theirs"))
        assert private_folder() == folder


HOLDER = """import sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from lock import hold_machine_lock
held = hold_machine_lock(Path(sys.argv[2]), 0)
print("held", flush=True)
time.sleep(60)
"""


def test_a_machine_lock_held_by_another_process_is_waited_for_then_named(tmp_path):
    path = tmp_path / "picture.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(BLOCKS), str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(DeliveryBusy, match=f"^another run on this machine holds {path}$"):
            hold_machine_lock(path, 0.3)
    finally:
        holder.kill()
        holder.wait()
    hold_machine_lock(path, 0).close()  # the kernel let go of it with its process


def test_a_stop_signal_ends_the_wait_for_a_machine_lock_at_once(tmp_path):
    path = tmp_path / "picture.lock"
    held = hold_machine_lock(path, 0)
    STOPPING.set()
    said: list[Exception] = []

    def wait_a_day() -> None:
        try:
            hold_machine_lock(path, 86400)
        except Exception as error:
            said.append(error)

    waiting = threading.Thread(target=wait_a_day, daemon=True)
    try:
        # Allowed a day, the wait can only end within the hang guard through the stop.
        waiting.start()
        waiting.join(HANG_GUARD)
        assert not waiting.is_alive(), "the stop did not end the wait"
        assert len(said) == 1 and isinstance(said[0], DeliveryBusy), said
    finally:
        STOPPING.clear()
        held.close()


ASLEEP = """import signal, sys, threading
sys.path.insert(0, sys.argv[1])
import cli
signal.signal(signal.SIGTERM, cli.raise_interrupted)
stop_here = lambda: signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
threading.Timer(0.5, stop_here).start()
try:
    cli.sleep_in_steps(600)
except KeyboardInterrupt as stop:
    print("stopped by", stop)
"""


def test_a_stop_on_another_thread_ends_a_long_sleep():
    # The signal's C part runs on the timer's thread and does not wake the main one: a
    # plain time.sleep(600) would outlast the hang guard.
    done = subprocess.run(
        [sys.executable, "-c", ASLEEP, str(BLOCKS)],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "stopped by SIGTERM\n", "")


# id, what the work raises, the line said, the status
GUARD_CASES = [
    ("SIGTERM", KeyboardInterrupt("SIGTERM"), "interrupted by SIGTERM", 130),
    ("Ctrl-C", KeyboardInterrupt(), "interrupted", 130),
    (
        "SIGHUP-annotated-by-a-library",
        KeyboardInterrupt("identity=[ImageReader@0x7f0f] SIGHUP"),
        "interrupted by SIGHUP",
        130,
    ),
    ("unexpected", ValueError("bad\nsecond line"), "unexpected ValueError: bad", 2),
]


@pytest.mark.parametrize(
    "raised, line, status", [pytest.param(*c[1:], id=c[0]) for c in GUARD_CASES]
)
def test_the_guard_says_one_line_and_the_status(raised, line, status):
    said = []

    def work() -> int:
        raise raised

    assert guarded(work, said.append) == status
    assert said == [line]


def test_a_closed_pipe_ends_the_run_quietly_as_sigpipe_would(tmp_path):
    """`--dry-run | head -1`: no 'unexpected BrokenPipeError', the status of SIGPIPE."""
    program = tmp_path / "lister.py"
    program.write_text(
        f"import sys\nsys.path.insert(0, {str(BLOCKS)!r})\nfrom cli import guarded\n\n"
        "def work():\n    for n in range(100000):\n        print('POST', n)\n    return 0\n\n"
        "sys.exit(guarded(work))\n"
    )
    shell = f"{sys.executable} {program} | head -1"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True)
    assert (done.returncode, done.stdout, done.stderr) == (141, "POST 0\n", "")


@pytest.mark.parametrize(
    "message, shown",
    [
        ("ESC \x1b[2J and BEL \x07", "ESC \\x1b[2J and BEL \\x07"),
        ("C1 \x9b and DEL \x7f", "C1 \\x9b and DEL \\x7f"),
        ("a bidi override \u202e here", "a bidi override \\u202e here"),
        ("a path not UTF-8 /tmp/u\udcfe/x", "a path not UTF-8 /tmp/u\\xfe/x"),
        ("tab\tand line\nstay", "tab\tand line\nstay"),
    ],
)
def test_log_lines_show_what_would_drive_a_terminal(message, shown):
    record = logging.LogRecord("run", logging.ERROR, __file__, 1, "%s", (message,), None)
    assert PrintableFormatter("%(message)s").format(record) == shown
