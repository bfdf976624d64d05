"""Bad input to report_email.py, reports.py and emails.py, as a table.

Each row: an id, the script and its arguments, the environment, the record (or
other files) it finds, the exit status expected, a fragment of the message,
and what must not change. Every case runs as a subprocess under a timeout (the
hang guard) with a mail catcher listening; none may print a traceback, send a
mail, or leave a PDF or a mailed log behind."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import reportlab

ROOT = Path(__file__).resolve().parent.parent
APPLE = {
    "file": "001.txt",
    "name": "Apple",
    "weight": 500,
    "image_name": "001.jpeg",
    "image_path": None,
    "id": 7,
    "outcome": "imported",
    "reason": "",
}


def record(products: object = None, **top: object) -> str:
    """A record's JSON text: version 1 with Apple unless told otherwise."""
    import json

    document = {"version": 1, "products": [APPLE] if products is None else products, **top}
    return json.dumps(document)


def apple(**changes: object) -> list[dict]:
    entry = {key: value for key, value in {**APPLE, **changes}.items() if value is not ...}
    return [entry]


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    record: str | bytes | None = None  # text of imported.json; None: no record file
    status: int = 2
    message: str = ""
    script: str = "report_email.py"
    setup: str = ""  # a name from SETUPS


def mailed_log_is_a_folder(folder: Path) -> None:
    (folder / "imported.mailed.jsonl").mkdir()


def pdf_is_a_folder(folder: Path) -> None:
    (folder / "out.pdf").mkdir()


def fifo(name: str) -> Callable[[Path], None]:
    return lambda folder: os.mkfifo(folder / name)


def link_to(name: str, target: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).symlink_to(target)


def sized(name: str, size: int) -> Callable[[Path], None]:
    """A file of `size` bytes, sparse: no disk spent on a huge one."""

    def make(folder: Path) -> None:
        with open(folder / name, "wb") as file:
            file.truncate(size)

    return make


SETUPS = {
    "mailed-log-folder": mailed_log_is_a_folder,
    "pdf-folder": pdf_is_a_folder,
    "record-fifo": fifo("imported.json"),
    "record-devzero": link_to("imported.json", "/dev/zero"),
    "mailed-log-fifo": fifo("imported.mailed.jsonl"),
    "mailed-log-devzero": link_to("imported.mailed.jsonl", "/dev/zero"),
    "password-fifo": fifo("password"),
    "password-large": sized("password", 65_537),
    "record-huge": sized("imported.json", (256 << 20) + 1),
    "pdf-fifo": fifo("out.pdf"),
}
DEEP = '{"version": 1, "products": ' + "[" * 100_000 + "]" * 100_000 + "}"

CASES = [
    # -- the record
    Case("no-record", message="no import record at {dir}/imported.json: run run.py first"),
    Case("record-not-json", record="{not json", message="is unreadable"),
    Case("record-not-utf8", record=b"\xff\xfe{}", message="is unreadable"),
    Case("record-is-a-list", record="[]", message="is not a JSON object: run run.py again"),
    Case("products-not-a-list", record=record("none"), message="has no product list"),
    Case("no-products", record=record([]), message="holds no products: nothing to report"),
    Case("version-4", record=record(version=4), message="has version 4; this report_email.py"),
    Case("version-text", record=record(version="2"), message="has version '2'"),
    Case("version-list", record=record(version=[2]), message="has version [2]"),
    Case("product-not-object", record=record(["Apple"]), message="product 1 is str"),
    Case("name-null", record=record(apple(name=None)), message="(001.txt): 'name' is null"),
    Case("no-outcome", record=record(apple(outcome=...)), message="(001.txt) has no 'outcome'"),
    Case("no-file", record=record(apple(file=...)), message="product 1 has no 'file'"),
    Case("weight-text", record=record(apple(weight="500")), message="'weight' is str"),
    Case("weight-bool", record=record(apple(weight=True)), message="'weight' is bool"),
    Case("image-path-number", record=record(apple(image_path=3)), message="'image_path' is int"),
    Case("store-values-list", record=record(apple(store_values=[])), message="'store_values'"),
    Case("problem-number", record=record(apple(problem=3), version=3), message="'problem' is int"),
    Case("details-list", record=record(apple(details=[]), version=3), message="'details' is list"),
    Case("unknown-outcome", record=record(apple(outcome="done")), message="unknown outcome 'done'"),
    Case(
        "uncertain-in-version-1",
        record=record(apple(outcome="uncertain")),
        message="unknown outcome 'uncertain' for a version 1 record",
    ),
    Case(
        "imported-without-weight",
        record=record(apple(weight=None)),
        message="imported without a name and a weight",
    ),
    Case("record-is-a-folder", args=("--record", "{dir}"), message="is a folder"),
    # -- options and environment
    Case("pdf-is-a-folder", args=("--pdf", "{dir}"), record=record(), message="is a folder"),
    Case(
        "pdf-cannot-be-written",
        args=("--pdf", "/dev/null/out.pdf"),
        record=record(),
        message="cannot write the PDF /dev/null/out.pdf",
    ),
    Case(
        "recipient-a-group",
        args=("--recipient", "team: a@x.com, b@x.com;"),
        record=record(),
        message="--recipient: recipient list 'team: a@x.com, b@x.com;' is a group",
    ),
    Case(
        "recipients-unquoted-comma",
        env={"REPORT_RECIPIENTS": "Doe, John <j@x.com>"},
        record=record(),
        message="environment variable REPORT_RECIPIENTS: recipient 'Doe' is not one email"
        " address (like alice@example.com); a display name with a comma needs quotes",
    ),
    Case(
        "recipients-with-a-space",
        env={"REPORT_RECIPIENTS": "a b@x.com"},
        record=record(),
        message="recipient 'a b@x.com' is not one email address",
    ),
    Case(
        "recipients-empty", args=("--recipient", ";"), record=record(), message="holds no address"
    ),
    Case("sender-bad", args=("--sender", "me"), record=record(), message="sender 'me' is not one"),
    Case(
        "sender-unquoted-comma",
        args=("--sender", "Ops, Team <ops@example.com>"),
        record=record(),
        message="--sender: sender 'Ops, Team <ops@example.com>' is not one email address;"
        " a display name with a comma, semicolon or colon needs quotes",
    ),
    Case(
        "subject-line-break",
        args=("--subject", "Hi\nBcc: x@example.com"),
        record=record(),
        message="subject must not contain a line break",
    ),
    Case(
        "smtp-port-text",
        env={"SMTP_PORT": "abc"},
        record=record(),
        message="environment variable SMTP_PORT: 'abc' is not a whole number",
    ),
    Case(
        "smtp-timeout-negative",
        env={"SMTP_TIMEOUT": "-1"},
        record=record(),
        message="environment variable SMTP_TIMEOUT: '-1' is not from 0.1 to 3600",
    ),
    Case(
        "smtp-timeout-nan",
        env={"SMTP_TIMEOUT": "nan"},
        record=record(),
        message="environment variable SMTP_TIMEOUT: 'nan'",
    ),
    Case(
        "smtp-deadline-inf",
        env={"SMTP_DEADLINE": "inf"},
        record=record(),
        message="environment variable SMTP_DEADLINE: 'inf'",
    ),
    Case(
        "smtp-security-unknown",
        env={"SMTP_SECURITY": "tls"},
        record=record(),
        message="environment variable SMTP_SECURITY: must be none, starttls or ssl",
    ),
    Case(
        "password-file-missing",
        env={"SMTP_PASSWORD_FILE": "{dir}/nonexistent/pw"},
        record=record(),
        message="cannot read SMTP_PASSWORD_FILE {dir}/nonexistent/pw: No such file or directory",
    ),
    Case(
        "max-mail-size-nan",
        args=("--max-mail-size", "nan"),
        record=record(),
        message="argument --max-mail-size: 'nan' is not from 0.1 to 1000",
    ),
    Case(
        "max-mail-size-env-zero",
        env={"REPORT_MAX_MAIL_MB": "0"},
        record=record(),
        message="environment variable REPORT_MAX_MAIL_MB: '0' is not from 0.1 to 1000",
    ),
    Case(
        "store-name-is-a-url",
        args=("--store-name", "http://10.0.0.5:8000/"),
        record=record(),
        message="argument --store-name: 'http://10.0.0.5:8000/' is a URL, not the store's",
    ),
    Case("unknown-option", args=("--bogus",), record=record(), message="unrecognized arguments"),
    Case(
        "mailed-log-unwritable",
        record=record(),
        setup="mailed-log-folder",
        message="cannot write the mailed log {dir}/imported.mailed.jsonl: Is a directory",
    ),
    # -- hostile places and values (a FIFO waits for a writer forever, /dev/zero never ends)
    Case(
        "file-name-with-escapes",
        record=record(apple(file="a\x1b[31m\nERROR fake.txt", name=None)),
        message="product 1 (a\\x1b[31m\\nERROR fake.txt): 'name' is null",
    ),
    Case(
        "record-too-large",
        setup="record-huge",
        message="imported.json is 268435457 bytes, over the limit of 268435456: run run.py again",
    ),
    Case("record-fifo", setup="record-fifo", message="imported.json is not a regular file"),
    Case("record-devzero", setup="record-devzero", message="imported.json is not a regular file"),
    Case("record-nested-deep", record=DEEP, message="is unreadable (nested too deeply)"),
    Case(
        "weight-huge",
        record=record(apple(weight=10**4000)),
        message="'weight' is not from 0 to 2,147,483,647 lbs",
    ),
    Case(
        "weight-over-the-store-max",
        record=record(apple(weight=2**31)),
        message="'weight' is not from 0 to 2,147,483,647 lbs",
    ),
    Case("weight-negative", record=record(apple(weight=-5)), message="'weight' is not from 0"),
    Case(
        "mailed-log-fifo",
        record=record(),
        setup="mailed-log-fifo",
        message="the mailed log {dir}/imported.mailed.jsonl is not a regular file; nothing sent",
    ),
    Case(
        "mailed-log-devzero",
        record=record(),
        setup="mailed-log-devzero",
        message="imported.mailed.jsonl is not a regular file",
    ),
    Case(
        "password-file-fifo",
        env={"SMTP_PASSWORD_FILE": "{dir}/password"},
        record=record(),
        setup="password-fifo",
        message="cannot read SMTP_PASSWORD_FILE {dir}/password: not a regular file",
    ),
    Case(
        "password-file-too-large",
        env={"SMTP_PASSWORD_FILE": "{dir}/password"},
        record=record(),
        setup="password-large",
        message="SMTP_PASSWORD_FILE {dir}/password: 65537 bytes, over the limit of 65536",
    ),
    Case(
        "password-file-devzero",
        env={"SMTP_PASSWORD_FILE": "/dev/zero"},
        record=record(),
        message="cannot read SMTP_PASSWORD_FILE /dev/zero: not a regular file",
    ),
    Case(
        "password-file-folder",
        env={"SMTP_PASSWORD_FILE": "{dir}"},
        record=record(),
        message="cannot read SMTP_PASSWORD_FILE {dir}: a folder, not a regular file",
    ),
    Case(
        "pdf-fifo",
        args=("--pdf", "{dir}/out.pdf"),
        record=record(),
        setup="pdf-fifo",
        message="argument --pdf: {dir}/out.pdf is a FIFO, not a file a PDF may replace",
    ),
    Case(
        "pdf-device",
        args=("--pdf", "/dev/null"),
        record=record(),
        message="argument --pdf: /dev/null is a device, not a file a PDF may replace",
    ),
    Case(
        "pdf-env-folder",
        env={"REPORT_PDF": "{dir}"},
        record=record(),
        message="environment variable REPORT_PDF: {dir} is a folder",
    ),
    Case(
        "sender-env",
        env={"REPORT_SENDER": "me"},
        record=record(),
        message="environment variable REPORT_SENDER: sender 'me' is not one",
    ),
    Case(
        "subject-env-line-separator",
        env={"REPORT_SUBJECT": "Hi\u2028Bcc: x@example.com"},
        record=record(),
        message="environment variable REPORT_SUBJECT: subject must not contain a line break",
    ),
    Case(
        "subject-next-line",
        args=("--subject", "Hi\x85Bcc: x@example.com"),
        record=record(),
        message="--subject: subject must not contain a line break",
    ),
    Case(
        "store-name-env-url",
        env={"STORE_NAME": "http://10.0.0.5:8000/"},
        record=record(),
        message="environment variable STORE_NAME: 'http://10.0.0.5:8000/' is a URL",
    ),
    Case(
        "recipients-env-bad",
        env={"REPORT_RECIPIENTS": "a@x.com;b c@y.com"},
        record=record(),
        message="environment variable REPORT_RECIPIENTS: recipient 'b c@y.com' is not one",
    ),
    Case(
        "recipient-control-character",
        args=("--recipient", "a\x1bb@x.com"),
        record=record(),
        message="recipient must not contain a line break or control character",
    ),
    Case(
        "recipient-crlf-injection",
        args=("--recipient", "a@x.com\r\nBcc: evil@y.com"),
        record=record(),
        message="recipient must not contain a line break",
    ),
    Case(
        "smtp-host-empty-label",
        env={"SMTP_HOST": "mail..example.com"},
        record=record(),
        message="environment variable SMTP_HOST: 'mail..example.com' is not a host name",
    ),
    Case(
        "smtp-host-long-label",
        env={"SMTP_HOST": "a" * 64 + ".example.com"},
        record=record(),
        message="environment variable SMTP_HOST:",
    ),
    Case(
        "smtp-host-space",
        env={"SMTP_HOST": "mail example.com"},
        record=record(),
        message="is not a host name",
    ),
    Case(
        "reports-pdf-fifo",
        script="reports.py",
        args=("{dir}/out.pdf",),
        setup="pdf-fifo",
        message="out.pdf is a FIFO, not a file a PDF may replace",
    ),
    Case(
        "emails-password-devzero",
        script="emails.py",
        args=("a@x.com",),
        env={"SMTP_PASSWORD_FILE": "/dev/zero"},
        message="cannot read SMTP_PASSWORD_FILE /dev/zero: not a regular file",
    ),
    Case(
        "emails-ca-file-fifo",
        script="emails.py",
        args=("a@x.com",),
        env={"SMTP_SECURITY": "starttls", "SMTP_CA_FILE": "{dir}/password"},
        setup="password-fifo",
        message="environment variable SMTP_CA_FILE: {dir}/password is not a regular file",
    ),
    Case(
        "ca-file-missing",
        env={"SMTP_SECURITY": "ssl", "SMTP_CA_FILE": "{dir}/ca.pem"},
        record=record(),
        message="environment variable SMTP_CA_FILE: {dir}/ca.pem: No such file or directory",
    ),
    Case(
        "emails-smtp-host-bad",
        script="emails.py",
        args=("a@x.com",),
        env={"SMTP_HOST": "-..-"},
        message="environment variable SMTP_HOST",
    ),
    Case("subject-empty", args=("--subject", " "), record=record(), message="the subject is"),
    Case(
        "pdf-folder-is-a-file",
        args=("--pdf", "{dir}/imported.json/out.pdf"),
        record=record(),
        message="cannot write the PDF {dir}/imported.json/out.pdf: {dir}/imported.json is a file",
    ),
    Case(
        "save-dir-is-a-file",
        args=("--save-dir", "{dir}/imported.json"),
        record=record(),
        message="argument --save-dir: {dir}/imported.json: not a folder",
    ),
    # -- the helper modules' command lines
    Case("reports-pdf-is-a-folder", script="reports.py", args=("{dir}",), message="is a folder"),
    Case("reports-unknown-option", script="reports.py", args=("--pdf",), message="unrecognized"),
    Case("emails-no-recipient", script="emails.py", message="the following arguments are required"),
    Case(
        "emails-bad-recipient",
        script="emails.py",
        args=("a@x.com;oops",),
        message="recipient 'oops' is not one email address",
    ),
    Case(
        "emails-port-text",
        script="emails.py",
        args=("a@x.com",),
        env={"SMTP_PORT": "25x"},
        message="environment variable SMTP_PORT: '25x' is not a whole number",
    ),
]


def expand(text: str, folder: Path) -> str:
    return text.replace("{dir}", str(folder))


def contents(folder: Path) -> dict[str, bytes | None]:
    """Every file under the folder with its bytes (None for a folder, FIFO or link)."""
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() and not p.is_symlink() else None
        for p in sorted(folder.rglob("*"))
    }


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(case: Case, tmp_path: Path, mail_catcher):
    folder = tmp_path / "delivery"
    folder.mkdir()
    if case.record is not None:
        data = case.record if isinstance(case.record, bytes) else case.record.encode()
        (folder / "imported.json").write_bytes(data)
    if case.setup:
        SETUPS[case.setup](folder)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "USER": "alice",
        "SUPPLIER_DATA": str(folder),
        "REPORT_PDF": str(tmp_path / "out" / "processed.pdf"),
        "SMTP_HOST": mail_catcher.host,
        "SMTP_PORT": str(mail_catcher.port),
        **{name: expand(value, folder) for name, value in case.env.items()},
    }
    before = contents(tmp_path)
    result = subprocess.run(
        [ROOT / case.script, *(expand(arg, folder) for arg in case.args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == case.status, result.stderr
    assert expand(case.message, folder) in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    said = [line for line in result.stderr.splitlines() if not line.startswith(("usage:", " "))]
    assert len(said) == 1, result.stderr  # one line, after argparse's usage if any
    assert mail_catcher.messages() == []
    after = {k: v for k, v in contents(tmp_path).items() if not k.startswith("catcher")}
    assert after == {k: v for k, v in before.items() if not k.startswith("catcher")}


def test_a_uid_without_login_name_or_home_is_told_what_to_set(tmp_path, stranger):
    """Run as a uid with no passwd entry and no HOME, USER or LOGNAME: one usage line."""
    packages = Path(reportlab.__file__).parent.parent
    uid, python = stranger(ROOT / "report_email.py", packages / "reportlab" / "__init__.py")
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(packages)}
    result = subprocess.run(
        [python, ROOT / "report_email.py"],
        env=env,
        user=uid,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert f"uid {uid} has no login name (no USER, no passwd entry)" in result.stderr
    assert "Traceback" not in result.stderr
