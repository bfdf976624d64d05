"""Shared block `early stop`: the prologue, the first code of every script.

A stop signal can come while a script still imports its libraries (a second or
so for reportlab), before its guard (block `cli`, `guarded`) is in place; and a
script copied to a server without its packages must still answer --help and -V,
then say the pip line to run. This block goes right after the docstring and
`from __future__`, before any import, so it imports only inside its functions.
Edit it here, then run `make blocks` (python tools/sync_blocks.py);
tests/test_scripts.py fails while a copy differs. Above the marker: nothing,
the copies find nothing in their script yet (health_check.py sets EARLY_STOP).
"""

from __future__ import annotations


# --- block ---
def shared(name: str, value: object) -> object:
    """The process's one `name`, set by the first copy of the blocks to ask: a script
    and the helpers it imports share the stop state and the missing packages."""
    import sys

    # type(sys) is the module type: `import types` would be an import in the prologue.
    state = sys.modules.setdefault("fruit_catalog_shared", type(sys)("shared"))
    return vars(state).setdefault(name, value)


def stop_early(line: str = "ERROR {}", status: int = 130, fd: int = 2) -> None:
    """Until the guard takes over, a stop signal is one line on fd and `status`, however
    early; a signal ignored at start (nohup, `trap '' HUP`) stays ignored."""
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
    """One line per package this process could not import: what to pip install."""
    return shared("missing", [])  # type: ignore[return-value]


def install_hint(pins: str) -> str:
    """How to get what is missing: the project's venv beside the script when it has one
    and another Python runs the script (a new shell, the system's python3), else pip."""
    import os
    import sys

    python = os.path.join(os.path.dirname(sys.argv[0]), ".venv", "bin", "python")
    running = os.path.dirname(os.path.abspath(sys.executable))  # not sys.prefix: -S keeps it
    if os.path.isfile(python) and running != os.path.dirname(os.path.abspath(python)):
        return f"run it with {python} (the project's venv), or pip install {pins}"
    return f"pip install {pins}"


class Missing:
    """Stands in for a package that is not installed: module-level code using its names
    still runs, so --help and -V work; the parser then says the pip line, and any call
    (a helper imported by another program) raises ModuleNotFoundError saying it."""

    def __init__(self, error: ImportError, pins: str) -> None:
        import os
        import sys

        script = os.path.basename(sys.argv[0])
        how = install_hint(pins) if script.endswith(".py") else f"pip install {pins}"
        said = f"{error.name} is missing: {how}"
        self.line = f"{script}: {said}" if script.endswith(".py") else said
        missing_packages().append(self.line)

    def __call__(self, *args: object, **kwargs: object) -> Missing:
        raise ModuleNotFoundError(self.line)

    def stand_in(self, *args: object) -> Missing:
        return self

    __getattr__ = __getitem__ = __add__ = __radd__ = __sub__ = __rsub__ = stand_in
    __mul__ = __rmul__ = __truediv__ = __rtruediv__ = __neg__ = stand_in

    def __mro_entries__(self, bases: tuple) -> tuple:
        return ()  # a class based on one of its names is based on object


if __name__ == "__main__":
    stop_early(*globals().get("EARLY_STOP", ()))
