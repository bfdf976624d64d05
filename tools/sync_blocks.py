#!/usr/bin/env python3
"""Copy each shared block from its home into every script that carries it.

The scripts are standalone (a person copies one to another server), so code
that several of them need is copied into each, between fences:

    # --- begin shared block: NAME (from blocks/NAME.py; make blocks) ---
    ...
    # --- end shared block: NAME ---

People edit blocks/NAME.py (the part below its `# --- block ---` marker); this
command rewrites every fenced copy from it. A script carries the blocks whose
fences it has.

Usage:
    python tools/sync_blocks.py          # rewrite the copies
    python tools/sync_blocks.py --check  # exit 1 and name every copy that differs

Example:
    $ python tools/sync_blocks.py --check
    run.py: block http differs from blocks/http.py: run make blocks
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOMES = ROOT / "blocks"
MARKER = "# --- block ---\n"
COMMAND = "make blocks"
FENCE = re.compile(
    r"^# --- begin shared block: (?P<name>[a-z ]+) \(.*?\) ---\n(?P<body>.*?)"
    r"^# --- end shared block: (?P=name) ---$",
    re.MULTILINE | re.DOTALL,
)


def home_of(name: str) -> Path:
    return HOMES / (name.replace(" ", "_") + ".py")


def body_of(name: str) -> str:
    """The block's text as the scripts carry it: its home below the marker."""
    text = home_of(name).read_text(encoding="utf-8")
    _, marker, body = text.partition(MARKER)
    if not marker:
        raise SystemExit(f"{home_of(name)}: no {MARKER.strip()!r} line")
    # Two blank lines before the end fence, as ruff format leaves them in a script.
    return body.strip("\n") + "\n\n\n"


def fence(name: str, body: str) -> str:
    home = home_of(name).relative_to(ROOT)
    return (
        f"# --- begin shared block: {name} (from {home}; {COMMAND}) ---\n"
        f"{body}# --- end shared block: {name} ---"
    )


def generated(text: str) -> str:
    """text with every fenced block replaced by its home's."""
    return FENCE.sub(lambda match: fence(match["name"], body_of(match["name"])), text)


def scripts() -> list[Path]:
    return sorted(ROOT.glob("*.py"))


def broken(script: Path) -> list[str]:
    """What keeps a script's fences from being read or rewritten safely."""
    text = script.read_bytes().decode("utf-8")
    found = FENCE.findall(text)
    begins = len(re.findall(r"^# --- begin shared block:", text, re.MULTILINE))
    ends = len(re.findall(r"^# --- end shared block:", text, re.MULTILINE))
    problems = [f"{script.name}: uses CRLF line ends; the blocks are LF"] if "\r" in text else []
    if begins != len(found) or ends != len(found):
        problems.append(f"{script.name}: a begin or end fence has no partner (or extra spaces)")
    for name, _ in found:
        if not home_of(name).is_file():
            problems.append(f"{script.name}: block {name} has no home {home_of(name).name}")
    return problems


def stale() -> list[str]:
    """One line per script whose copy of a block differs from its home, or whose
    fences cannot be read."""
    problems = []
    for script in scripts():
        if broken(script):
            problems += broken(script)
            continue
        text = script.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            if match[0] != fence(match["name"], body_of(match["name"])):
                problems.append(
                    f"{script.name}: block {match['name']} differs from"
                    f" {home_of(match['name']).relative_to(ROOT)}: run {COMMAND}"
                )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale()
        print("\n".join(problems) or "every copy is generated from its home")
        return 1 if problems else 0
    problems = [problem for script in scripts() for problem in broken(script)]
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    for script in scripts():
        text = script.read_text(encoding="utf-8")
        new = generated(text)
        if new != text:
            script.write_text(new, encoding="utf-8")
            print(f"rewrote {script.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
