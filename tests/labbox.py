"""A lab box for tests: sandbox/lab.py in a child process on free ports, a small
delivery, the lab's steps run with env.sh's variables, and the checker's verdict."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAB = ROOT / "sandbox" / "lab.py"
CHECK = ROOT / "sandbox" / "lab_check.py"
IMPL = Path(__file__).resolve().parent / "lab_impls" / "lab_impl.py"
SMALL = ["--count", "3", "--size", "900x600"]
FREE_PORTS = ["--store-port", "0", "--smtp-port", "0", "--inbox-port", "0"]
STEP_LINE = re.compile(r"^(PASS|FAIL) (\d) [^:]+: (.*)$")


class LabBox:
    """start() waits for 'ready' (bounded); stop() is Ctrl-C, then a kill after 15 s."""

    def __init__(self, root: Path, argv: list[str] | None = None, env: dict | None = None):
        self.root = root
        self.argv = argv or [sys.executable, str(LAB), "--dir", str(root), *FREE_PORTS, *SMALL]
        self.env = env
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.process: subprocess.Popen | None = None

    def start(self, seconds: float = 90) -> LabBox:
        self.process = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
            start_new_session=True,  # Ctrl-C goes to the whole group, as in a terminal
        )
        threading.Thread(target=self.read, daemon=True).start()
        self.ready.wait(seconds)
        assert self.ready.is_set(), f"the lab did not get ready: {self.lines}"
        return self

    def read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if "ready; Ctrl-C" in line:
                self.ready.set()

    def stop(self) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> LabBox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def variables(self) -> dict[str, str]:
        found = {}
        for line in (self.root / "env.sh").read_text().splitlines():
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").partition("=")
                found[name] = shlex.split(value)[0]
        return found

    @property
    def home(self) -> Path:
        return self.root / "home"

    def run(self, argv: list[str], **env: str) -> subprocess.CompletedProcess:
        """A step as a learner runs it: in the box's home, with env.sh sourced."""
        return subprocess.run(
            argv,
            env={**os.environ, **self.variables, **env},
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    def learners_steps(self, fault: str = "") -> None:
        """tests/lab_impls/lab_impl.py's four steps, wrong in `fault`; each must exit 0."""
        for step in ("convert", "upload", "post", "report"):
            done = self.run([sys.executable, str(IMPL), step], LAB_FAULT=fault)
            assert done.returncode == 0, f"{step}: {done.stderr}"

    def schedule(self, command: str) -> None:
        with (self.root / "crontab").open("a") as crontab:
            crontab.write(f"* * * * * {command}\n")

    def check(self) -> tuple[int, dict[int, tuple[str, str]], str]:
        """The checker's exit status, {step: (PASS|FAIL, reason)} and its whole output."""
        done = subprocess.run(
            [sys.executable, str(CHECK), "--dir", str(self.root), "--no-system-crontab"],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        steps = {}
        for line in done.stdout.splitlines():
            if match := STEP_LINE.match(line):
                steps[int(match[2])] = (match[1], match[3])
        return done.returncode, steps, done.stdout + done.stderr
