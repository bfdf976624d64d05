#!/usr/bin/env python3
"""Copy each shared block from its home into every script that carries it.

The scripts are standalone (a person copies one to another server), so code
that several of them need is copied into each, between fences:

    # --- begin shared block: NAME (from blocks/NAME.py; make blocks) ---
    ...
    # --- end shared block: NAME ---

People edit blocks/NAME.py (the part below its `# --- block ---` marker); this
command rewrites every fenced copy from it. A script carries the blocks whose
fences it has, and of each block only the top-level statements (functions,
classes, constants) it uses: those its own code names, those a carried
statement names, and those another script takes from it (`from emails import
guarded`), with their own needs. A statement that defines no name is always
carried.

--relocate also moves every fence but the prologue's (`early stop`, the first
code of a script) after the script's own code: just before the first statement
that needs a block's names when the module is loaded (the OPTIONS rows), else
before `if __name__ == "__main__":`. So a reader meets the script's own code
first. Run it again after merging: it is idempotent.

Usage:
    python tools/sync_blocks.py             # rewrite the copies
    python tools/sync_blocks.py --relocate  # and move the fences after the script's code
    python tools/sync_blocks.py --check     # exit 1 and name every copy that differs

Example:
    $ python tools/sync_blocks.py --check
    run.py: block http differs from blocks/http.py: run make blocks
"""

from __future__ import annotations

import argparse
import ast
import io
import re
import sys
import tokenize
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
HOMES = ROOT / "blocks"
MARKER = "# --- block ---\n"
COMMAND = "make blocks"
PINNED = {"early stop"}  # the prologue: stays where it is, before the imports
# Comments a tool reads: a copy keeps them where every other comment goes.
TOOL_COMMENTS = ("# fmt:", "# noqa", "# type:", "# pragma")
FENCE = re.compile(
    r"^# --- begin shared block: (?P<name>[a-z ]+) \(.*?\) ---\n(?P<body>.*?)"
    r"^# --- end shared block: (?P=name) ---$",
    re.MULTILINE | re.DOTALL,
)


class Part(NamedTuple):
    """One top-level statement of a block, with the comments above it."""

    text: str
    defines: frozenset[str]
    uses: frozenset[str]
    blanks: int  # blank lines after it in the home
    definition: bool  # a def or class: two blank lines around it


def home_of(name: str) -> Path:
    return HOMES / (name.replace(" ", "_") + ".py")


def body_of(name: str) -> str:
    """The block's whole text as the scripts would carry it: its home below the marker."""
    text = home_of(name).read_text(encoding="utf-8")
    _, marker, body = text.partition(MARKER)
    if not marker:
        raise SystemExit(f"{home_of(name)}: no {MARKER.strip()!r} line")
    return body.strip("\n") + "\n"


def names_used(node: ast.AST) -> set[str]:
    return {child.id for child in ast.walk(node) if isinstance(child, ast.Name)}


def names_loaded(node: ast.AST) -> set[str]:
    """The names node reads (an enum member's `FAILED = "failed"` reads no FAILED)."""
    return {c.id for c in ast.walk(node) if isinstance(c, ast.Name) and isinstance(c.ctx, ast.Load)}


def names_defined(node: ast.stmt) -> set[str]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {node.name}
    targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
    return {name for target in targets if target for name in names_used(target)}


def docstrings(tree: ast.AST) -> set[int]:
    """The lines of every string statement in a body that has other statements too
    (a function's or class's docstring, a constant's note); a body that is only a
    docstring keeps it, as Python needs a statement there."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, ast.Module) or not isinstance(body, list):
            continue
        strings = [s for s in body if isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)]
        strings = [s for s in strings if isinstance(s.value.value, str)]
        if len(strings) < len(body):
            lines.update(n for s in strings for n in range(s.lineno, s.end_lineno + 1))
    return lines


def opens(line: str) -> bool:
    return line.rstrip().endswith(":")


def compact(text: str) -> str:
    """text, one statement of a home, as its copies carry it: without docstrings and
    comment lines (the home, which the fence names, keeps them for its reader) and the
    blank lines their going leaves. A copy is generated to be run, not edited."""
    dropped, in_strings = docstrings(ast.parse(text)), set()
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.STRING:
            in_strings.update(range(token.start[0] + 1, token.end[0] + 1))
        alone = not token.line[: token.start[1]].strip()
        if token.type == tokenize.COMMENT and alone and not token.string.startswith(TOOL_COMMENTS):
            dropped.add(token.start[0])
    kept: list[str] = []
    for number, line in enumerate(text.split("\n"), 1):
        blank = not line.strip() and number not in in_strings
        if number in dropped or (blank and (not kept or not kept[-1].strip() or opens(kept[-1]))):
            continue
        kept.append(line)
    return "\n".join(kept)


def parts_of(name: str) -> list[Part]:
    body = body_of(name)
    lines = body.split("\n")
    nodes = ast.parse(body).body
    starts = []
    for node in nodes:
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        while first > 1 and lines[first - 2].startswith("#"):
            first -= 1
        starts.append(first)
    parts = []
    for index, node in enumerate(nodes):
        end = starts[index + 1] - 1 if index + 1 < len(nodes) else len(lines)
        chunk = "\n".join(lines[starts[index] - 1 : end])
        text = chunk.rstrip("\n")
        definition = isinstance(node, ast.FunctionDef | ast.ClassDef)
        blanks = chunk.count("\n") - text.count("\n")
        text = compact(text)
        parts.append(
            Part(
                text,
                frozenset(names_defined(node)),
                frozenset(names_used(node)),
                blanks,
                definition,
            )
        )
    return parts


def rendered(parts: list[Part], kept: set[int]) -> str:
    """The kept parts in the home's order; spaced as in the home where neighbours there,
    else as ruff format spaces them."""
    order = sorted(kept)
    out = []
    for position, index in enumerate(order):
        out.append(parts[index].text + "\n")
        if position + 1 < len(order):
            following = order[position + 1]
            if following == index + 1:
                blanks = parts[index].blanks
            else:
                blanks = 2 if parts[index].definition or parts[following].definition else 1
            out.append("\n" * blanks)
    # Two blank lines before the end fence, as ruff format leaves them in a script.
    return "".join(out).strip("\n") + "\n\n\n"


def fence(name: str, body: str) -> str:
    home = home_of(name).relative_to(ROOT)
    return (
        f"# --- begin shared block: {name} (from {home}; {COMMAND}) ---\n"
        f"{body}# --- end shared block: {name} ---"
    )


def scripts() -> list[Path]:
    return sorted(ROOT.glob("*.py"))


def exports(script: Path, texts: dict[Path, str]) -> set[str]:
    """The names other scripts take from this one (`from emails import x`, `emails.x`)."""
    module, names = script.stem, set()
    for other, text in texts.items():
        if other == script:
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and node.module == module:
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                names |= {node.attr} if node.value.id == module else set()
    return names


def generated(text: str, wanted: set[str] = frozenset()) -> str:
    """text with every fenced block replaced by the parts of its home the script needs
    (its own code's names and `wanted`, with their needs)."""
    carried = list(dict.fromkeys(match["name"] for match in FENCE.finditer(text)))
    parts = {name: parts_of(name) for name in carried}
    where: dict[str, list[tuple[str, int]]] = {}
    for name in carried:
        for index, part in enumerate(parts[name]):
            for defined in part.defines:
                where.setdefault(defined, []).append((name, index))
    own = names_used(ast.parse(FENCE.sub("", text))) | wanted
    todo = [key for n in own for key in where.get(n, [])]
    todo += [(name, i) for name in carried for i, p in enumerate(parts[name]) if not p.defines]
    kept: set[tuple[str, int]] = set()
    while todo:
        key = todo.pop()
        if key not in kept:
            kept.add(key)
            todo += [found for n in parts[key[0]][key[1]].uses for found in where.get(n, [])]

    def copy(match: re.Match) -> str:
        name = match["name"]
        return fence(name, rendered(parts[name], {i for block, i in kept if block == name}))

    return FENCE.sub(copy, text)


def loaded_names(node: ast.stmt) -> set[str]:
    """The names a top-level statement evaluates when the module is loaded (not those
    inside function bodies): values, base classes, decorators, defaults."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        evaluated = [*node.decorator_list, *node.args.defaults, *node.args.kw_defaults]
        return set().union(*(names_loaded(e) for e in evaluated if e is not None))
    if isinstance(node, ast.ClassDef):
        found = set().union(set(), *(names_loaded(e) for e in [*node.bases, *node.decorator_list]))
        return found.union(*(loaded_names(statement) for statement in node.body))
    if isinstance(node, ast.Import | ast.ImportFrom):
        return set()
    return names_loaded(node)


def relocated(text: str) -> str:
    """text with the fences but the prologue's moved, in their order, before the first
    statement of the script's own code that needs their names when loaded."""
    moving = [m for m in FENCE.finditer(text) if m["name"] not in PINNED]
    if not moving:
        return text
    defined = set().union(*(names_defined(n) for m in moving for n in ast.parse(m["body"]).body))
    rest = text
    for match in reversed(moving):
        rest = rest[: match.start()] + rest[match.end() :].lstrip("\n")
    rest = re.sub(r"\n{4,}", "\n\n\n", rest)
    lines = rest.split("\n")
    pinned = [range(rest.count("\n", 0, m.start()), rest.count("\n", 0, m.end()) + 1)
              for m in FENCE.finditer(rest)]  # fmt: skip
    body = ast.parse(rest).body
    for node in body:
        if any(node.lineno in span for span in pinned):
            continue
        # The entry point is the last statement: an earlier `if __name__` (changeImage's
        # gc.disable() before its imports) is start-up, not the place for the copies.
        main = node is body[-1] and isinstance(node, ast.If) and "__name__" in names_used(node.test)
        if main or loaded_names(node) & defined:
            first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            while first > 1 and lines[first - 2].startswith("#"):
                first -= 1
            break
    else:
        first = len(lines) + 1
    head = "\n".join(lines[: first - 1]).rstrip("\n")
    tail = "\n".join(lines[first - 1 :]).lstrip("\n")
    fences = "\n".join(match[0] for match in moving)
    return f"{head}\n\n\n{fences}\n\n\n{tail}" if tail else f"{head}\n\n\n{fences}\n"


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


def regenerated() -> dict[Path, tuple[str, str]]:
    """Each readable script: (its text, its text with every copy generated)."""
    texts = {script: script.read_text(encoding="utf-8") for script in scripts()}
    return {
        script: (text, generated(text, exports(script, texts)))
        for script, text in texts.items()
        if not broken(script)
    }


def stale() -> list[str]:
    """One line per script whose copy of a block differs from its home, or whose
    fences cannot be read."""
    problems = []
    for script in scripts():
        problems += broken(script)
    for script, (text, new) in regenerated().items():
        mine, theirs = FENCE.finditer(text), FENCE.finditer(new)
        for match, expected in zip(mine, theirs, strict=True):
            if match[0] != expected[0]:
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
    parser.add_argument(
        "--relocate", action="store_true", help="also move the fences after the script's code"
    )
    args = parser.parse_args(argv)
    if args.check:
        problems = stale()
        print("\n".join(problems) or "every copy is generated from its home")
        return 1 if problems else 0
    problems = [problem for script in scripts() for problem in broken(script)]
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    for script, (text, new) in regenerated().items():
        new = relocated(new) if args.relocate else new
        if new != text:
            script.write_text(new, encoding="utf-8")
            print(f"rewrote {script.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
