"""Shared block `cli`: options declared once, logging, and the one guard.

Every script carries a copy of the part below the marker, between its
`begin/end shared block: cli` fences. Edit it here, then run `make blocks`
(python tools/sync_blocks.py); tests/test_scripts.py fails while a copy differs.
Above the marker: what the copies find in their script (imports, __version__).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from early_stop import missing_packages, shared

__version__ = "home"

# --- block ---
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
UNSET = object()  # the default of an option not given on the command line
# One stop state per process, whichever copy of this block guards the run:
STOPPING = shared("STOPPING", threading.Event())  # the first stop signal: no new request, no retry


def number(low: float, high: float, *, whole: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number from low to high (nan, inf and 1e309 are
    refused). The same check serves a flag and its environment variable."""

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
    """The environment variable NAME checked by parse, or default when unset or
    empty. A bad value is a usage error that names the variable, not a flag."""
    text = os.environ.get(name, "")
    if not text.strip():
        return default
    try:
        return parse(text)
    except (argparse.ArgumentTypeError, ValueError) as error:
        parser.error(f"environment variable {name}: {error}")


@dataclass(frozen=True)
class Option:
    """One option, declared once (flags or a positional's name, variable, default,
    type with its bounds, help): --help shows its default and variable; a test holds
    the rows to the README. A callable default reads its own variables (env is then
    only shown); a set env is parsed by type, a bad one a usage error naming it; an
    "append" option's env holds several values, split on whitespace or `split`."""

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
            # An "append" option starts from None: argparse appends to its default.
            keywords["default"] = None if self.action == "append" else UNSET
        action = parser.add_argument(*names, **keywords)
        action.option = self  # type: ignore[attr-defined]
        return action

    def initial(self, parser: argparse.ArgumentParser) -> Any:
        """The value of an option not given: its variable's, else its default (a
        text default goes through type, as argparse does with one)."""
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


# -q, -v and -V/--version, meaning the same in every script.
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
    """The script's parser: its docstring (usage, examples, exit statuses) as the
    description, then one argument per row, then -q, -v and -V."""

    class OptionParser(parser_class):  # type: ignore[valid-type, misc]
        def parse_known_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def]
            """Then the defaults of the options not given: a variable is read only
            when its flag is absent (the flag wins), never for --help or -V."""
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


class WorkingOn:
    """`with WorkingOn(path):` names path in the warnings this thread raises meanwhile
    (Pillow's 'Corrupt EXIF data' then says which image). Thread-local: images convert
    in threads, and warnings.catch_warnings would change every thread's filters."""

    def __init__(self, about: object) -> None:
        self.about = str(about)

    def __enter__(self) -> None:
        self.outer, WORKING_ON.about = getattr(WORKING_ON, "about", ""), self.about

    def __exit__(self, *exc_info: object) -> None:
        WORKING_ON.about = self.outer


class WarningsToLog:
    """Python's warnings as our own log lines, once per file and message, naming the
    file (WorkingOn) and never the library's path and source line: WARNING, or DEBUG
    for a deprecation (a note for developers). So -q silences them."""

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


# Control characters from a delivery or a server's answer (ESC clears a terminal, sets
# its title) shown as \x1b: a log line is the operator's terminal or cron's mail.
# Bidirectional overrides reorder what follows them; bytes that are not UTF-8 show as \xff.
SHOWN_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(32), *range(127, 160)] if c not in (9, 10)}
SHOWN_CONTROLS |= {c: f"\\u{c:04x}" for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]}
SHOWN_CONTROLS |= {0x2028: "\\u2028", 0x2029: "\\u2029"}


class PrintableFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).encode("utf-8", "surrogateescape")
        return text.decode("utf-8", "backslashreplace").translate(SHOWN_CONTROLS)


def configure_logging(quiet: bool, verbose: bool) -> None:
    """Log to stderr; third-party libraries never go below WARNING, so -v shows this
    script's steps and not, for example, Pillow's TIFF tag dump; their warnings
    become our log lines, so -q silences them."""
    import warnings  # here: only this function of the block needs it

    level = logging.ERROR if quiet else logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PrintableFormatter("%(levelname)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    for library in ("PIL", "urllib3", "requests", "reportlab", "asyncio", "mail.log", "django"):
        logging.getLogger(library).setLevel(max(level, logging.WARNING))
    # Every Pillow warning reaches WarningsToLog, one per file and message (Python's
    # one per source line leaves the 2nd image's unnamed); -W/PYTHONWARNINGS still win.
    warnings.filterwarnings("always", module=r"PIL\.", append=True)
    warnings.showwarning = WarningsToLog()


def expand_home(text: str) -> Path:
    """text with ~ expanded; as it is when this user has no home (no HOME, no passwd
    entry, as under some cron jobs), so what follows names the missing folder."""
    try:
        return Path(text).expanduser()
    except RuntimeError:
        return Path(text)


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP as KeyboardInterrupt: what finishes outputs after
    Ctrl-C runs for them too."""


Interrupted = shared("Interrupted", Interrupted)  # type: ignore[misc]
HELD = shared("HELD", {"depth": 0, "pending": ""})


def raise_interrupted(signum: int, frame: object) -> None:
    """The first stop signal: later ones are ignored (a second SIGTERM must not cut
    the clean-up), threads see STOPPING, and inside signals_held() it waits."""
    # Ignored by a handler that does nothing, not SIG_IGN: Python prints a traceback
    # ("Signal 15 ignored due to race condition") for a signal that came with the first.
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda *_: None)
    STOPPING.set()
    name = signal.Signals(signum).name
    if HELD["depth"]:
        HELD["pending"] = name
        return
    raise Interrupted(name)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """A stop signal arriving inside waits until the block is done (a record
    being written), then interrupts as usual."""
    HELD["depth"] += 1
    try:
        yield
    finally:
        HELD["depth"] -= 1
        pending, HELD["pending"] = HELD["pending"], ""
        if pending and not HELD["depth"]:
            raise Interrupted(pending)
        HELD["pending"] = pending


# How late the main thread may act on a stop signal while it waits for its workers.
SIGNAL_CHECK = 0.2


def result_of(future: Future) -> Any:
    """future.result(), the main thread waking every SIGNAL_CHECK s meanwhile. Python
    runs a signal's handler in the main thread between bytecodes: a stop that lands on a
    worker thread, or just before the main thread starts to wait, would otherwise wait
    for the whole future (a run's every POST)."""
    while not wait([future], timeout=SIGNAL_CHECK).done:
        pass
    return future.result()


def sleep_in_steps(seconds: float) -> None:
    """time.sleep(seconds), waking every SIGNAL_CHECK s: a stop that lands just before a
    long sleep begins would otherwise wait for the whole sleep (a --grace of an hour)."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(left, SIGNAL_CHECK))


def say_error(text: str) -> None:
    """An error line; before logging is configured (arguments being parsed) the
    same line as after."""
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
    """The script's one way out (nagiosplugin's guard): work()'s status; SIGINT,
    SIGTERM or SIGHUP as one line and `interrupted`; any other exception as one
    line and `failed`. Never a traceback. A signal ignored when the script started
    (nohup, `trap '' HUP`) stays ignored."""
    in_main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS} if in_main else {}
    STOPPING.clear()
    for sig, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(sig, raise_interrupted)
    try:
        return work()
    except KeyboardInterrupt as stop:
        # The signal's name is the last word: a library may prefix its own (reportlab).
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
        # A script's run is over: a stop while Python shuts down is ignored (SIG_IGN
        # outlives finalization; the default would kill the finished run, -15).
        early = shared("early stop", None)
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_IGN if early and handler is early else handler)
