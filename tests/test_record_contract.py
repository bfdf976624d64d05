"""The record's problem codes (README: Records) hold run.py and report_email.py
together: run.py writes a code, report_email.py's ADVICE words it for the
supplier. Each side's list is checked against the other's, and the README's."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import report_email
import run

ROOT = Path(__file__).resolve().parent.parent
PROBLEM = getattr(run, "Problem", None)
needs_codes = pytest.mark.skipif(
    PROBLEM is None, reason="run.py writes no problem codes yet (its Problem enum: issue 26)"
)
# A row of the README's problem table: | `code` | outcome | whose | details |
README_ROW = re.compile(
    r"^\s*\| `(?P<code>[a-z0-9_]+)` \| (?P<outcome>[a-z ]+) \| (?P<whose>\w+) \|"
)


def defined_codes() -> set[str]:
    return {problem.value for problem in PROBLEM}


def written_codes() -> set[str]:
    """The codes run.py names outside the Problem class: those it can write."""
    tree = ast.parse((ROOT / "run.py").read_text(encoding="utf-8"))
    definition = next(
        node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Problem"
    )
    inside = {id(node) for node in ast.walk(definition)}
    return {
        PROBLEM[node.attr].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "Problem"
        and id(node) not in inside
    }


def readme_rows() -> dict[str, tuple[str, str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    records = text[text.index("## Records") :]
    return {
        match["code"]: (match["outcome"], match["whose"])
        for match in map(README_ROW.match, records.splitlines())
        if match
    }


@needs_codes
def test_every_code_run_py_can_write_has_words_for_the_supplier():
    assert written_codes() - set(report_email.ADVICE) == set()


@needs_codes
def test_the_table_keeps_no_code_run_py_never_writes():
    assert set(report_email.ADVICE) - written_codes() == set()


@needs_codes
def test_every_code_run_py_defines_is_written_somewhere():
    assert defined_codes() - written_codes() == set()


def test_the_readme_lists_each_code_with_its_outcome_and_whose_it_is():
    expected = {code: (row.outcome, row.whose) for code, row in report_email.ADVICE.items()}
    assert readme_rows() == expected


def test_report_email_reads_a_reason_only_to_log_it():
    """No branching on run.py's sentences: `reason` is read in log_reasons alone."""
    tree = ast.parse((ROOT / "report_email.py").read_text(encoding="utf-8"))
    readers = {
        function.name
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef)
        for node in ast.walk(function)
        if isinstance(node, ast.Constant) and node.value == "reason"
    }
    assert readers == {"log_reasons"}
