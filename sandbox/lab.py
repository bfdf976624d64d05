#!/usr/bin/env python3
"""The lab in a box: the store, a mail server with a web inbox, and a delivery.

Everything the lab's VM gives, on this machine, inside one folder (LAB_DIR,
default lab/ in the checkout), in the foreground until Ctrl-C:

    the store          catalog page, /fruits/, /upload/, /media/ (sandbox/store.py)
    SMTP + web inbox   every mail caught and shown with its attachments
    the delivery       LAB_DIR/home/supplier-data (the lab's TIFFs, descriptions,
                       LICENSE and README)

It writes LAB_DIR/env.sh (`. lab/env.sh`: HOME, CATALOG_URL, SMTP_HOST,
SMTP_PORT, REPORT_PDF, ...) and LAB_DIR/crontab, the box's schedule: its
every-minute lines run each minute as cron runs them (output in
LAB_DIR/cron.log), and sandbox/lab_check.py grades it. All servers listen
on 127.0.0.1 only; nothing outside LAB_DIR is written (not your home, not
your crontab). Started again on the same folder it resumes (the store's
products, the mails and the delivery are kept, and so are the ports);
--fresh starts over. A box already running on the folder (LAB_DIR/lab.lock
is locked while one runs) stops it before it touches anything; a port in use
stops it with the port's name and number.

Usage:
    python sandbox/lab.py [--dir lab] [--fresh] [--store-port 8000]
                          [--smtp-port 1025] [--inbox-port 8025]

Example (make lab in a fresh checkout):
    $ python sandbox/lab.py --dir lab
    lab: making the lab's delivery in /work/wt/lab/lab/home/supplier-data (10 products)
    lab: the store      http://127.0.0.1:8000/
    lab: the inbox      http://127.0.0.1:8025/
    lab: SMTP           127.0.0.1:1025
    lab: then           . /work/wt/lab/lab/env.sh   (then the lab's steps; make lab-check)
    lab: ready; Ctrl-C stops it
    ^Clab: stopped; make lab resumes, make lab FRESH=1 starts over

Exit status: 0 after Ctrl-C (or SIGTERM), 2 when it cannot start (a box
already running on the folder, a port in use, a folder it did not make), with
one line saying why.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from inbox import InboxServer
from mailcatcher import MailCatcher
from make_delivery import make_delivery, parse_size

SANDBOX = Path(__file__).resolve().parent
CHECKOUT = SANDBOX.parent
MARKER = ".fruit-catalog-lab"
DEFAULT_PORTS = {"store": 8000, "smtp": 1025, "inbox": 8025}
LAB_PDF = "/tmp/processed.pdf"  # the lab's path; the box keeps its own in LAB_DIR/tmp
CRONTAB_TEMPLATE = """\
# The lab box's schedule, in crontab(5) format. While make lab runs, each line that
# runs every minute (* * * * * COMMAND) runs each minute as cron runs it (sh -c, in the
# box's HOME, with env.sh's variables and the NAME=value lines here; its output goes to
# cron.log beside this file). make lab-check reads it too (and, read-only, `crontab -l`).
# Add the health check, every minute, as in the lab, with full paths: here ~ is the box's
# home ({home}) and the system python3 has no psutil.
# For this checkout's health_check.py:
# * * * * * {python} {script}
# For a script of your own: the same python (or another with psutil) and its own full path.
"""
EVERY_MINUTE = {"*", "*/1", "0-59", "0-59/1"}
REAP_EVERY = 1.0  # seconds: a finished cron job is reaped within this, not at the next minute
CRON_LINE = re.compile(r"^(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(.+)$")
CRON_VARIABLE = re.compile(r"^([A-Za-z_]\w*)\s*=\s*(.*)$")


class LabError(Exception):
    """Why the lab cannot start, in one line for the learner."""


@dataclass
class Box:
    """The lab's folder and what lives in it."""

    root: Path

    home = property(lambda self: self.root / "home")
    delivery = property(lambda self: self.home / "supplier-data")
    store = property(lambda self: self.root / "store")
    post_log = property(lambda self: self.store / "posts.jsonl")
    maildir = property(lambda self: self.root / "mail")
    tmp = property(lambda self: self.root / "tmp")
    pdf = property(lambda self: self.tmp / Path(LAB_PDF).name)
    crontab = property(lambda self: self.root / "crontab")
    lock = property(lambda self: self.root / "lab.lock")
    env_file = property(lambda self: self.root / "env.sh")
    settings = property(lambda self: self.root / "lab.json")
    log = property(lambda self: self.root / "store.log")
    cron_log = property(lambda self: self.root / "cron.log")


# -- the folder -------------------------------------------------------------


def prepare(box: Box, fresh: bool) -> int:
    """Make the box's folder, or keep it to resume; empty it only when the lab made it.

    Returns the descriptor holding the folder's lock: keep it open while the box runs.
    """
    ours = (box.root / MARKER).is_file()
    if not ours and box.root.exists() and (not box.root.is_dir() or any(box.root.iterdir())):
        raise LabError(
            f"{box.root} exists and was not made by the lab; not touching it."
            " Choose another folder: make lab LAB_DIR=..."
        )
    box.root.mkdir(parents=True, exist_ok=True)
    lock = take_lock(box)
    if fresh and ours:
        for path in box.root.iterdir():
            if path == box.lock:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    for folder in (box.home, box.store, box.maildir, box.tmp):
        folder.mkdir(parents=True, exist_ok=True)
    (box.root / MARKER).write_text("made by sandbox/lab.py; make lab FRESH=1 deletes this folder\n")
    if not box.crontab.exists():
        box.crontab.write_text(crontab_template(box))
    return lock


def take_lock(box: Box) -> int:
    """Lock LAB_DIR/lab.lock for this process (the kernel lets go when it ends), or a
    LabError naming the box that holds it; a box already running is left as it is."""
    lock = os.open(box.lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(lock, 32).decode(errors="replace").strip() or "?"
        os.close(lock)
        raise LabError(
            f"a lab box already runs on {box.root} (pid {holder}): its addresses are in"
            f" {box.env_file}; stop it with Ctrl-C there, or use another LAB_DIR"
        ) from None
    os.ftruncate(lock, 0)
    os.write(lock, f"{os.getpid()}\n".encode())
    return lock


def crontab_template(box: Box) -> str:
    """The box's first crontab: comments only, with this checkout's real paths as the example."""
    return CRONTAB_TEMPLATE.format(
        home=box.home,
        python=shlex.quote(str(CHECKOUT / ".venv" / "bin" / "python")),
        script=shlex.quote(str(CHECKOUT / "health_check.py")),
    )


def choose_ports(box: Box, asked: dict[str, int | None]) -> dict[str, int]:
    """The ports asked for, else those of the last start (env.sh stays right), else defaults."""
    saved = json.loads(box.settings.read_text()) if box.settings.is_file() else {}
    ports = {
        name: asked[name] if asked[name] is not None else saved.get(name, default)
        for name, default in DEFAULT_PORTS.items()
    }
    for name, port in ports.items():
        ports[name] = bind_check(name, port)
    return ports


def bind_check(name: str, port: int) -> int:
    """The port, free on 127.0.0.1 (0: a free one); a port in use is a LabError naming it."""
    with socket.socket() as probe:
        # As the servers bind: a port whose last connections linger in TIME_WAIT is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            flag = {"store": "LAB_STORE_PORT", "smtp": "LAB_SMTP_PORT", "inbox": "LAB_INBOX_PORT"}
            raise LabError(
                f"port {port} on 127.0.0.1 (the {name}) is in use ({error.strerror});"
                f" stop what uses it, or choose another: make lab {flag[name]}=..."
            ) from None
        return probe.getsockname()[1]


def env_lines(box: Box, ports: dict[str, int]) -> str:
    values = {
        "LAB_DIR": str(box.root),
        "HOME": str(box.home),
        "SUPPLIER_DATA": str(box.delivery),
        "CATALOG_URL": f"http://127.0.0.1:{ports['store']}/",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(ports["smtp"]),
        "SMTP_SECURITY": "none",
        "REPORT_PDF": str(box.pdf),
        "TMPDIR": str(box.tmp),
    }
    exports = "".join(f"export {name}={shlex.quote(value)}\n" for name, value in values.items())
    return f"""\
# The lab box in {box.root}: `. {box.env_file}` in each shell where you run the lab's
# scripts (make lab-check reads it too). HOME is the box's home: ~/supplier-data is the
# delivery, and your real home is left alone.
{exports}
# The lab's VM serves the store on port 80 and mail on port 25; the box cannot take
# those ports without changing this machine, so a script of your own reads these
# instead of the lab's fixed addresses, e.g.
#   url = os.environ.get("CATALOG_URL", "http://localhost/") + "fruits/"
#   smtplib.SMTP(os.environ.get("SMTP_HOST", "localhost"), int(os.environ.get("SMTP_PORT", 25)))
#   pdf = os.environ.get("REPORT_PDF", "/tmp/processed.pdf")
# (our scripts read them already). The checker looks for the PDF at REPORT_PDF, then
# at /tmp/processed.pdf.
"""


# -- the schedule -----------------------------------------------------------


def parse_crontab(lines: list[str]) -> tuple[dict[str, str], list[str], list[str]]:
    """(NAME=value variables, the every-minute lines' commands, the other lines)."""
    variables: dict[str, str] = {}
    commands, other = [], []
    for line in (line.strip() for line in lines):
        if not line or line.startswith("#"):
            continue
        if match := CRON_VARIABLE.match(line):
            variables[match[1]] = match[2].strip().strip("'\"")
            continue
        fields = CRON_LINE.match(line)
        if fields and fields[1] in EVERY_MINUTE and all(f == "*" for f in fields.groups()[1:5]):
            commands.append(fields[6])
        else:
            other.append(line)
    return variables, commands, other


def exported(box: Box) -> dict[str, str]:
    """The variables env.sh exports (the box wrote it: `export NAME=quoted`)."""
    found = {}
    for line in box.env_file.read_text().splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            found[name] = shlex.split(value)[0] if value else ""
    return found


def cron_env(box: Box, variables: dict[str, str]) -> dict[str, str]:
    """A scheduled command's environment: env.sh's variables over ours, then the crontab's."""
    return {**os.environ, **exported(box), **variables}


class Cron(threading.Thread):
    """The box's cron: at each minute, every every-minute line of LAB_DIR/crontab.

    A command still running from the minute before is not started again (cron would;
    the box keeps one of each). What it prints goes to LAB_DIR/cron.log.
    """

    def __init__(self, box: Box, stopped: threading.Event, period: float = 60):
        super().__init__(daemon=True)
        self.box, self.stopped, self.period = box, stopped, period
        self.jobs: dict[str, subprocess.Popen] = {}

    def run(self) -> None:
        tick = self.next_tick()
        while not self.stopped.wait(min(REAP_EVERY, max(0.0, tick - time.time()))):
            self.reap()
            if time.time() >= tick:
                self.start_due()
                tick = self.next_tick()

    def next_tick(self) -> float:
        return time.time() + self.period - time.time() % self.period

    def reap(self) -> None:
        """Wait for the jobs that ended, so none lingers as a zombie until the next minute."""
        for command, job in list(self.jobs.items()):
            if job.poll() is not None:
                del self.jobs[command]

    def start_due(self) -> None:
        variables, commands, _ = parse_crontab(self.box.crontab.read_text().splitlines())
        for command in commands:
            if command not in self.jobs:
                self.jobs[command] = self.start_job(command, cron_env(self.box, variables))

    def start_job(self, command: str, env: dict[str, str]) -> subprocess.Popen:
        with self.box.cron_log.open("a") as log:
            log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {command}\n")
            log.flush()
            return subprocess.Popen(
                ["/bin/sh", "-c", command],
                env=env,
                cwd=env.get("HOME", self.box.home),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: stopping the lab stops its children
            )

    def stop(self) -> None:
        self.join(timeout=5)
        for job in self.jobs.values():
            if job.poll() is None:
                os.killpg(job.pid, signal.SIGTERM)
            try:
                job.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(job.pid, signal.SIGKILL)
                job.wait()


# -- the servers ------------------------------------------------------------


def start_store(box: Box, port: int) -> tuple[subprocess.Popen, str]:
    argv = [sys.executable, str(SANDBOX / "store.py"), "--host", "127.0.0.1", "--port", str(port)]
    env = {"STORE_POST_LOG": str(box.post_log), "PATH": "/usr/bin:/bin"}
    with box.log.open("a") as log:
        process = subprocess.Popen(
            [*argv, "--data", str(box.store)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
        )
    url = process.stdout.readline().strip()
    if not url:
        process.wait(timeout=10)
        raise LabError(f"the store did not start (exit {process.returncode}); see {box.log}")
    return process, url


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def serve(box: Box, ports: dict[str, int], stopped: threading.Event, cron_period: float) -> None:
    """Start the three servers and the cron, say where they are, wait for `stopped`, stop."""
    catcher = MailCatcher(box.maildir, "127.0.0.1", ports["smtp"]).start()
    inbox = InboxServer(box.maildir, "127.0.0.1", ports["inbox"]).start()
    cron = Cron(box, stopped, cron_period)
    store = None
    try:
        store, url = start_store(box, ports["store"])
        box.env_file.write_text(env_lines(box, ports))
        box.settings.write_text(json.dumps(ports) + "\n")
        cron.start()
        say(f"the store      {url}")
        say(f"the inbox      {inbox.url}")
        say(f"SMTP           127.0.0.1:{ports['smtp']}")
        say(f"then           . {box.env_file}   (then the lab's steps; make lab-check)")
        say("ready; Ctrl-C stops it")
        while not stopped.wait(0.5):
            if store.poll() is not None:
                raise LabError(f"the store stopped (exit {store.returncode}); see {box.log}")
    finally:
        stopped.set()
        if cron.is_alive():
            cron.stop()
        if store is not None:
            stop_process(store)
        inbox.stop()
        catcher.stop()


def say(line: str) -> None:
    print(f"lab: {line}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", type=Path, default=CHECKOUT / "lab", help="LAB_DIR")
    parser.add_argument("--fresh", action="store_true", help="start over: a new delivery, no data")
    for name, port in DEFAULT_PORTS.items():
        parser.add_argument(f"--{name}-port", type=int, help=f"default {port}; 0 picks a free one")
    parser.add_argument("--count", type=int, default=10, help="products in a new delivery")
    parser.add_argument("--size", type=parse_size, default=(3000, 2000), help="a new TIFF's WxH")
    parser.add_argument("--cron-period", type=float, default=60, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    box = Box(args.dir.resolve())
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    try:
        lock = prepare(box, args.fresh)
        try:
            ports = choose_ports(
                box, {name: getattr(args, f"{name}_port") for name in DEFAULT_PORTS}
            )
            if not box.delivery.is_dir():
                say(f"making the lab's delivery in {box.delivery} ({args.count} products)")
                make_delivery(box.home, args.count, args.size)
            if not stopped.is_set():
                serve(box, ports, stopped, args.cron_period)
        finally:
            os.close(lock)
    except LabError as error:
        print(f"lab: {error}", file=sys.stderr)
        return 2
    say("stopped; make lab resumes, make lab FRESH=1 starts over")
    return 0


if __name__ == "__main__":
    sys.exit(main())
