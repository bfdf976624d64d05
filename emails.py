#!/usr/bin/env python3
"""Build and send email (helper module for report_email.py and health_check.py).

The lab's step 4 mails its PDF with generate_email and send_email, as the
lab's emails.py does; step 5's alerts go the same way.

  generate_email(sender, recipient, subject, body, attachment_path=None)
      an email.message.EmailMessage; recipient may be a list. Every address
      must be one address, plain (alice@example.com) or with a display name
      (`"Doe, John" <j@example.com>`), and no header value may hold a line
      break: ValueError otherwise.
  addresses(text)
      the addresses of a list as mail software reads it: commas or
      semicolons between entries, a comma inside a quoted display name kept;
      a group (`team: a@x.com;`) is refused, and a bad entry named.
  send_email(message)
      sends it through SMTP configured from the environment, or saves it as
      an .eml file when SMTP_SAVE_DIR is set. Failures raise EmailError with
      what the server said (code and text) or what to set; a mail that
      reached some recipients but not others raises PartlyDelivered, which
      says who got it. Credentials never appear in any message.

Environment (defaults: the lab's local mail server, no login):
  SMTP_HOST (localhost), SMTP_PORT (25, 587 or 465 by SMTP_SECURITY),
  SMTP_SECURITY (none | starttls | ssl), SMTP_USER, SMTP_PASSWORD or
  SMTP_PASSWORD_FILE (UTF-8; any characters), SMTP_TIMEOUT (10 seconds: the
  longest wait for any one answer but the mail's end's), SMTP_DEADLINE (120 seconds: the whole
  send, from connecting to the last answer, however slowly the server
  trickles), SMTP_CA_FILE (a private CA for TLS), SMTP_SAVE_DIR (write .eml
  files there instead of sending).

Usage:
    import emails
    message = emails.generate_email("a@example.com", "b@example.com", "Hi", "Body")
    emails.send_email(message)

    ./emails.py [--sender ADDR] RECIPIENT ...   # a test message with these settings

Example:
    $ ./emails.py ops@example.com
    INFO sent to ops@example.com
    $ SMTP_PORT=2525 ./emails.py ops@example.com
    ERROR cannot reach SMTP server localhost:2525: connection refused (set SMTP_HOST)

Exit status: 0 sent (or saved), 1 not sent (or not to every recipient),
2 usage or configuration error (a bad address or SMTP_* value).
"""

from __future__ import annotations


# --- begin shared block: early stop (from blocks/early_stop.py; make blocks) ---
def shared(name: str, value: object) -> object:
    import sys

    state = sys.modules.setdefault("fruit_catalog_shared", type(sys)("shared"))
    return vars(state).setdefault(name, value)


def stop_early(line: str = "ERROR {}", status: int = 130, fd: int = 2) -> None:
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
    return shared("missing", [])  # type: ignore[return-value]


if __name__ == "__main__":
    stop_early(*globals().get("EARLY_STOP", ()))


# --- end shared block: early stop ---

import argparse
import base64
import contextlib
import errno
import getpass
import ipaddress
import logging
import math
import mimetypes
import os
import re
import signal
import smtplib
import socket
import ssl
import stat
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, make_msgid
from pathlib import Path
from typing import Any

__version__ = "2.0.0"

EXIT_OK, EXIT_NOT_SENT, EXIT_USAGE = 0, 1, 2
SECURITY_PORTS = {"none": 25, "starttls": 587, "ssl": 465}
DEFAULT_TIMEOUT = 10.0
DEFAULT_DEADLINE = 120.0
# One plain address: no display name, no list separators, no control characters, a
# dotted or single-label domain.
ADDRESS = re.compile(
    r"[^@\s<>()\[\],;:\"\\\x00-\x1f\x7f]+"
    r"@[^\W_](?:[\w-]*[^\W_])?(?:\.[^\W_](?:[\w-]*[^\W_])?)*"
)
# `Display Name <address>`, the name bare or quoted (a comma inside quotes belongs to it).
NAME_ADDR = re.compile(r'(?P<name>"(?:[^"\\]|\\.)*"|[^"<>]*?)\s*<(?P<addr>[^<>]*)>')
# A list's tokens: quoted strings, comments and angle addresses whole, the rest by character
# runs, so that only a comma, semicolon or colon outside them stands alone.
LIST_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"?|\((?:[^()\\]|\\.)*\)?|<[^<>]*>?|[^",;:<(]+|.', re.S)
# What a header must not hold: every character str.splitlines() breaks at (the email
# package refuses them all when it folds) and the other C0 controls but the tab.
UNQUOTED_SPECIALS = re.compile(r"[,;:]")  # in a display name, only between quotes
HEADER_BREAKS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
PASSWORD_FILE_LIMIT = 64 * 1024  # a password file holds one line
# AUTH mechanisms that carry the password as given, so UTF-8 works (RFC 4616, 4954).
UTF8_MECHANISMS = ("PLAIN", "LOGIN")

log = logging.getLogger("emails")


class EmailError(Exception):
    """Mail could not be sent; the message says why and what to set. permanent:
    the server refused it for good (a 5xx answer), so the same mail sent again
    is refused again."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


class PartlyDelivered(EmailError):
    """The server took the mail for some recipients and refused others (for
    good when every refusal was a 5xx answer)."""

    def __init__(self, delivered: list[str], refused: dict[str, str], *, permanent: bool):
        self.delivered, self.refused = delivered, refused
        said = "; ".join(f"{address}: {answer}" for address, answer in refused.items())
        message = f"sent to {', '.join(delivered)} but refused for {said}"
        super().__init__(message, permanent=permanent)


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str
    user: str
    password: str
    timeout: float
    deadline: float
    ca_file: str
    save_dir: str

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


# -- building -------------------------------------------------------------------


def header_value(name: str, value: str) -> str:
    """value, or ValueError when it holds a line break or another control character
    (a header injection: `Hi\\r\\nBcc: x@y`, or U+2028 which the email package folds)."""
    if HEADER_BREAKS.search(value):
        raise ValueError(f"{name} must not contain a line break or control character: {value!r}")
    return value


def mailbox(name: str, value: str) -> Address:
    """One address, plain (alice@example.com) or with a display name as mail software
    writes it (`John Doe <j@example.com>`, `"Doe, John" <j@example.com>`); ValueError
    naming the field otherwise."""
    header_value(name, value)
    text = value.strip()
    angle = NAME_ADDR.fullmatch(text)
    spec = angle.group("addr").strip() if angle else text
    if not ADDRESS.fullmatch(spec):
        raise ValueError(f"{name} {value!r} is not one email address (like alice@example.com)")
    raw = angle.group("name") if angle else ""
    if not raw.startswith('"') and UNQUOTED_SPECIALS.search(raw):
        # 'Ops, Team <o@x.com>' is two addresses to mail software, 'A: B <a@x.com>' a group
        raise ValueError(
            f"{name} {value!r} is not one email address; a display name with a comma,"
            ' semicolon or colon needs quotes: "Doe, John" <j@example.com>'
        )
    display = display_name(name, getaddresses([text])[0][0]) if raw else ""
    local, _, domain = spec.rpartition("@")
    return Address(display_name=display, username=local, domain=domain)


def display_name(name: str, text: str) -> str:
    """The display name as readers show it: an encoded word (=?utf-8?q?Doe=2C_J?=)
    decoded, so that the header quotes or encodes what it says (a comma in it would
    else be read as two addresses); ValueError when it is unreadable or says a
    line break."""
    try:
        decoded = str(make_header(decode_header(text)))
    except (HeaderParseError, LookupError, UnicodeDecodeError, ValueError):
        raise ValueError(f"{name} display name {text!r} is not readable") from None
    if "=?" in decoded:
        raise ValueError(f"{name} display name {text!r} is encoded twice")
    return header_value(name, decoded)


def checked_address(name: str, value: str) -> str:
    """One address (a display name allowed), as the header will show it; ValueError
    naming the field otherwise."""
    return str(mailbox(name, value))


def list_entries(text: str, name: str) -> list[str]:
    """The entries of a list, split at commas and semicolons outside quotes, angle
    brackets and comments; ValueError for a group (`team: a@x.com, b@x.com;`)."""
    entries, current = [], ""
    for token in LIST_TOKENS.findall(text):
        if token == ":":
            raise ValueError(
                f"{name} list {text!r} is a group (NAME: addresses;), which is not mailed:"
                " list its addresses instead"
            )
        if token in ",;":
            entries.append(current)
            current = ""
        else:
            current += token
    return [entry.strip() for entry in [*entries, current] if entry.strip()]


def addresses(text: str, name: str = "recipient") -> list[str]:
    """The addresses of a list separated by commas or semicolons, each checked, as the
    header will show them (display names kept, quoted where needed)."""
    header_value(name, text)
    listed = list_entries(text, name)
    if not listed:
        raise ValueError(f"{name} list {text!r} holds no address")
    found = []
    for entry in listed:
        try:
            found.append(checked_address(name, entry))
        except ValueError as error:
            if "@" in entry or len(listed) == 1:
                raise
            hint = 'a display name with a comma needs quotes: "Doe, John" <j@example.com>'
            raise ValueError(f"{error}; {hint}") from None
    return found


def generate_email(
    sender: str,
    recipient: str | Sequence[str],
    subject: str,
    body: str,
    attachment_path: str | os.PathLike | None = None,
) -> EmailMessage:
    """An EmailMessage with an optional attachment, its type guessed from the name."""
    recipients = [recipient] if isinstance(recipient, str) else list(recipient)
    message = EmailMessage()
    message["From"] = mailbox("sender", sender)
    message["To"] = [mailbox("recipient", r) for r in recipients]
    message["Subject"] = header_value("subject", subject)
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=message["From"].addresses[0].domain or None)
    message.set_content(body)
    if attachment_path is not None:
        path = Path(attachment_path)
        kind, _ = mimetypes.guess_type(path.name)
        maintype, subtype = (kind or "application/octet-stream").split("/", 1)
        message.add_attachment(
            path.read_bytes(), maintype=maintype, subtype=subtype, filename=path.name
        )
    return message


# -- settings -------------------------------------------------------------------


def setting(environ: Mapping[str, str], name: str, parse: Callable, default: float) -> float:
    """A numeric SMTP_* value checked by the cli block's number(); ValueError names it."""
    text = environ.get(name, "")
    if not text.strip():
        return default
    try:
        return parse(text)
    except argparse.ArgumentTypeError as error:
        raise ValueError(f"environment variable {name}: {error}") from None


def settings_from(environ: Mapping[str, str]) -> SmtpSettings:
    """SMTP settings from environment variables; ValueError names a bad one."""
    security = environ.get("SMTP_SECURITY", "none").strip().lower() or "none"
    if security not in SECURITY_PORTS:
        raise ValueError(
            f"environment variable SMTP_SECURITY: must be none, starttls or ssl, not {security!r}"
        )
    port = setting(environ, "SMTP_PORT", number(1, 65535, whole=True), SECURITY_PORTS[security])
    timeout = setting(environ, "SMTP_TIMEOUT", number(0.1, 3600), DEFAULT_TIMEOUT)
    deadline = setting(environ, "SMTP_DEADLINE", number(0.1, 86400), DEFAULT_DEADLINE)
    password = environ.get("SMTP_PASSWORD", "")
    password_file = environ.get("SMTP_PASSWORD_FILE", "")
    if password_file:
        password = read_password(password_file)
    return SmtpSettings(
        host=checked_host(environ.get("SMTP_HOST") or "localhost"),
        port=int(port),
        security=security,
        user=environ.get("SMTP_USER", ""),
        password=password,
        timeout=timeout,
        deadline=deadline,
        ca_file=checked_ca_file(environ.get("SMTP_CA_FILE", "")),
        save_dir=environ.get("SMTP_SAVE_DIR", ""),
    )


def read_password(name: str) -> str:
    """The password in file `name`, read without following it into a FIFO (which would
    wait for a writer forever) or a device such as /dev/zero (which never ends)."""
    try:
        data = read_capped(Path(name), PASSWORD_FILE_LIMIT)
        return data.decode("utf-8").strip()
    except OSError as error:
        why = error.strerror or error
    except UnicodeDecodeError:
        why = "not UTF-8 text"
    raise ValueError(f"cannot read SMTP_PASSWORD_FILE {name}: {why}")


def checked_ca_file(name: str) -> str:
    """SMTP_CA_FILE when it is a regular file: OpenSSL would wait on a FIFO forever."""
    if not name:
        return name
    try:
        regular = stat.S_ISREG(os.stat(name).st_mode)
    except OSError as error:
        raise ValueError(f"environment variable SMTP_CA_FILE: {name}: {error.strerror}") from None
    if not regular:
        raise ValueError(f"environment variable SMTP_CA_FILE: {name} is not a regular file")
    return name


def checked_host(host: str) -> str:
    """SMTP_HOST as a name the resolver can take, or ValueError naming the variable
    (an empty label or one over 63 characters fails deep in the IDNA codec)."""
    try:
        if not host or any(c.isspace() for c in host):
            raise UnicodeError("spaces")
        host.encode("idna")
    except UnicodeError:
        raise ValueError(f"environment variable SMTP_HOST: {host!r} is not a host name") from None
    return host


# -- sending --------------------------------------------------------------------


class DeadlineSMTP(smtplib.SMTP):
    """smtplib.SMTP whose socket a Deadline watches; implicit TLS when given a context."""

    def __init__(self, settings: SmtpSettings, deadline: Deadline, context: ssl.SSLContext | None):
        self.deadline, self.implicit_tls = deadline, context
        super().__init__(settings.host, settings.port, timeout=settings.timeout)

    def data(self, msg):  # type: ignore[no-untyped-def]
        # The answer to a mail's end may take a server minutes (RFC 5321 allows it 10):
        # given up on at SMTP_TIMEOUT, a mail the server then took would go out again.
        self.sock.settimeout(max(self.timeout, self.deadline.left()))
        return super().data(msg)

    def _get_socket(self, host, port, timeout):
        sock = super()._get_socket(host, port, timeout)
        self.deadline.watch(sock)
        if self.implicit_tls is None:
            return sock
        return self.implicit_tls.wrap_socket(sock, server_hostname=host)


class Utf8(str):
    """A str that smtplib's auth() encodes as UTF-8 where it would insist on ASCII."""

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return str.encode(self, "utf-8", errors)


def login(smtp: smtplib.SMTP, user: str, password: str) -> None:
    """AUTH PLAIN or LOGIN with the credentials as UTF-8 (smtplib's login() would
    encode them as ASCII and fail on the first other character, quoting it)."""
    smtp.ehlo_or_helo_if_needed()
    if not smtp.has_extn("auth"):
        raise smtplib.SMTPNotSupportedError("no AUTH")
    offered = smtp.esmtp_features["auth"].upper().split()
    usable = [mechanism for mechanism in UTF8_MECHANISMS if mechanism in offered]
    if not usable:
        if user.isascii() and password.isascii():
            smtp.login(user, password)
            return
        raise EmailError(
            f"SMTP server offers AUTH {' '.join(offered)} only, none of which carries"
            " a password with non-ASCII characters; it needs PLAIN or LOGIN"
        )
    smtp.user, smtp.password = user, password
    method = getattr(smtp, f"auth_{usable[0].lower()}")
    smtp.auth(usable[0], lambda challenge=None: Utf8(method(challenge)))


def tls_context(settings: SmtpSettings) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=settings.ca_file or None)
    except (OSError, ssl.SSLError) as error:
        raise EmailError(f"cannot load SMTP_CA_FILE {settings.ca_file}: {error}") from None


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def answer(code: int, text: bytes | str) -> str:
    """A server's answer as it said it: '552 5.3.4 Message size exceeds fixed limit'."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    # Shown on a terminal: a server's escape sequences must not reach it.
    shown = "".join(c if c.isprintable() else " " for c in text)
    return f"{code} {' '.join(shown.split())}".strip()


def transfer(smtp: smtplib.SMTP, message: EmailMessage, settings: SmtpSettings) -> None:
    if settings.security == "starttls":
        smtp.ehlo()
        if not smtp.has_extn("starttls"):
            raise EmailError(f"SMTP server {settings.address} does not offer STARTTLS")
        smtp.starttls(context=tls_context(settings))
    if settings.user:
        login(smtp, settings.user, settings.password)
    refused = smtp.send_message(message)
    if refused:
        delivered = [a for a in recipients_of(message) if a not in refused]
        said = {address: answer(*reply) for address, reply in refused.items()}
        permanent = all(code >= 500 for code, _ in refused.values())
        raise PartlyDelivered(delivered, said, permanent=permanent)


def recipients_of(message: EmailMessage) -> list[str]:
    """The plain addresses the mail goes to (as the server's refusals name them)."""
    return [address.addr_spec for address in message["To"].addresses]


def deliver(message: EmailMessage, settings: SmtpSettings) -> None:
    if settings.user and settings.security == "none" and not is_loopback(settings.host):
        raise EmailError(
            f"refusing to send the SMTP password for {settings.user} unencrypted to"
            f" {settings.address}; set SMTP_SECURITY=starttls or ssl"
        )
    context = tls_context(settings) if settings.security == "ssl" else None
    with Deadline(settings.deadline) as deadline:
        try:
            smtp = DeadlineSMTP(settings, deadline, context)
            try:
                transfer(smtp, message, settings)
                # The server took the mail: say goodbye without waiting for its answer
                # (a server slow to answer it, or gone, changes nothing).
                with contextlib.suppress(OSError):
                    smtp.putcmd("quit")
            finally:
                deadline.stop()  # before close: a watched descriptor must not be reused
                smtp.close()
        except (OSError, smtplib.SMTPException, UnicodeError) as error:
            said = explain(error, settings, deadline.expired)
            raise EmailError(redact(said, settings), permanent=refused_for_good(error)) from None


def refused_for_good(error: Exception) -> bool:
    """A 5xx answer (to every recipient): the server refuses the same mail again."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in error.recipients.values())
    return isinstance(error, smtplib.SMTPResponseException) and error.smtp_code >= 500


def redact(text: str, settings: SmtpSettings) -> str:
    """text without the password, as given or as AUTH PLAIN and LOGIN carried it
    (base64): a server may quote the line it refuses."""
    if not settings.password:
        return text
    plain = f"\0{settings.user}\0{settings.password}"
    for secret in (plain, settings.password):
        text = text.replace(base64.b64encode(secret.encode()).decode(), "***")
    return text.replace(settings.password, "***")


def explain(error: Exception, settings: SmtpSettings, expired: bool = False) -> str:
    """A message a person can act on: what the server said, or what to set."""
    where = settings.address
    if expired:
        return f"SMTP server {where} did not finish within {settings.deadline:g} s (SMTP_DEADLINE)"
    if isinstance(error, ConnectionRefusedError):
        return f"cannot reach SMTP server {where}: connection refused (set SMTP_HOST)"
    if isinstance(error, socket.gaierror):
        return f"cannot reach SMTP server {where}: host name not found (set SMTP_HOST)"
    # smtplib turns a read timeout into SMTPServerDisconnected; the cause tells.
    if isinstance(error, TimeoutError) or isinstance(error.__context__, TimeoutError):
        return f"SMTP server {where} did not answer within {settings.timeout:g} s (SMTP_TIMEOUT)"
    if isinstance(error, ssl.SSLCertVerificationError):
        return (
            f"TLS certificate of SMTP server {where} is not trusted: {error.verify_message}"
            " (set SMTP_CA_FILE for a private CA)"
        )
    if isinstance(error, ssl.SSLError):
        return f"TLS with SMTP server {where} failed: {error.reason} (check SMTP_SECURITY)"
    if isinstance(error, smtplib.SMTPAuthenticationError):
        said = answer(error.smtp_code, error.smtp_error)
        return f"SMTP login refused for user {settings.user}: {said}"
    if isinstance(error, smtplib.SMTPNotSupportedError) and settings.user:
        return f"SMTP server {where} does not offer login (AUTH); unset SMTP_USER or use TLS"
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        said = "; ".join(f"{a}: {answer(*reply)}" for a, reply in error.recipients.items())
        return f"SMTP server {where} refused every recipient: {said}"
    if isinstance(error, smtplib.SMTPSenderRefused):
        said = answer(error.smtp_code, error.smtp_error)
        return f"SMTP server {where} refused the mail from {error.sender}: {said}"
    if isinstance(error, smtplib.SMTPResponseException):
        return f"SMTP server {where} refused the mail: {answer(error.smtp_code, error.smtp_error)}"
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return f"SMTP server {where} closed the connection (check SMTP_SECURITY and SMTP_PORT)"
    return f"sending mail through {where} failed: {error}"


def save_eml(message: EmailMessage, folder: str) -> Path:
    """Write the message as <time>-<id>.eml, whole or not at all."""
    directory = Path(folder)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.eml"
    write_atomically(target, message.as_bytes())
    return target


def send_email(message: EmailMessage, environ: Mapping[str, str] | None = None) -> Path | None:
    """Send through SMTP as the environment says; the .eml path when saved instead."""
    try:
        settings = settings_from(os.environ if environ is None else environ)
    except ValueError as error:
        raise EmailError(str(error)) from None
    if settings.save_dir:
        try:
            return save_eml(message, settings.save_dir)
        except FileExistsError:  # from mkdir: a file where the folder should be
            raise EmailError(f"cannot save the mail in {settings.save_dir}: not a folder") from None
        except OSError as error:
            why = error.strerror or error
            raise EmailError(f"cannot save the mail in {settings.save_dir}: {why}") from None
    deliver(message, settings)
    return None


# -- command line ---------------------------------------------------------------


# --- begin shared block: cli (from blocks/cli.py; make blocks) ---
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
UNSET = object()  # the default of an option not given on the command line
STOPPING = shared("STOPPING", threading.Event())  # the first stop signal: no new request, no retry


def number(low: float, high: float, *, whole: bool = False) -> Callable[[str], float]:
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
    text = os.environ.get(name, "")
    if not text.strip():
        return default
    try:
        return parse(text)
    except (argparse.ArgumentTypeError, ValueError) as error:
        parser.error(f"environment variable {name}: {error}")


@dataclass(frozen=True)
class Option:
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
            keywords["default"] = None if self.action == "append" else UNSET
        action = parser.add_argument(*names, **keywords)
        action.option = self  # type: ignore[attr-defined]
        return action

    def initial(self, parser: argparse.ArgumentParser) -> Any:
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
    class OptionParser(parser_class):  # type: ignore[valid-type, misc]
        def parse_known_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def]
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


class WarningsToLog:
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


SHOWN_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(32), *range(127, 160)] if c not in (9, 10)}
SHOWN_CONTROLS |= {c: f"\\u{c:04x}" for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]}
SHOWN_CONTROLS |= {0x2028: "\\u2028", 0x2029: "\\u2029"}


class PrintableFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).encode("utf-8", "surrogateescape")
        return text.decode("utf-8", "backslashreplace").translate(SHOWN_CONTROLS)


def configure_logging(quiet: bool, verbose: bool) -> None:
    import warnings  # here: only this function of the block needs it

    level = logging.ERROR if quiet else logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PrintableFormatter("%(levelname)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    for library in ("PIL", "urllib3", "requests", "reportlab", "asyncio", "mail.log", "django"):
        logging.getLogger(library).setLevel(max(level, logging.WARNING))
    warnings.filterwarnings("always", module=r"PIL\.", append=True)
    warnings.showwarning = WarningsToLog()


def expand_home(text: str) -> Path:
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
    HELD["depth"] += 1
    try:
        yield
    finally:
        HELD["depth"] -= 1
        pending, HELD["pending"] = HELD["pending"], ""
        if pending and not HELD["depth"]:
            raise Interrupted(pending)
        HELD["pending"] = pending


def say_error(text: str) -> None:
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
    in_main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS} if in_main else {}
    STOPPING.clear()
    for sig, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(sig, raise_interrupted)
    try:
        return work()
    except KeyboardInterrupt as stop:
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
        early = shared("early stop", None)
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_IGN if early and handler is early else handler)


# --- end shared block: cli ---
# --- begin shared block: files (from blocks/files.py; make blocks) ---
def write_atomically(path: Path, data: bytes | str, *, mode: int = 0o644) -> None:
    path = Path(path)
    try:
        kind = os.lstat(path).st_mode
    except FileNotFoundError:
        kind = stat.S_IFREG
    if not (stat.S_ISREG(kind) or stat.S_ISLNK(kind)):
        raise OSError(errno.EEXIST, "not a regular file, which it would replace", str(path))
    content = data.encode("utf-8", "backslashreplace") if isinstance(data, str) else data
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_capped(path: Path, limit: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise OSError(errno.EISDIR, "a folder, not a regular file", str(path))
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        if info.st_size > limit:
            raise OSError(
                errno.EFBIG, f"{info.st_size} bytes, over the limit of {limit}", str(path)
            )
        with os.fdopen(os.dup(fd), "rb") as file:
            content = file.read(limit + 1)
    finally:
        os.close(fd)
    if len(content) > limit:
        raise OSError(errno.EFBIG, f"grew over the limit of {limit} bytes while read", str(path))
    return content


# --- end shared block: files ---
# --- begin shared block: deadline (from blocks/deadline.py; make blocks) ---
class Deadline:
    _current = threading.local()

    def __init__(self, seconds: float) -> None:
        self.seconds, self.end = seconds, time.monotonic() + seconds
        self.expired = False
        self.fd, self.identity = -1, (0, 0)
        self.lock = threading.Lock()
        self.timer = threading.Timer(seconds, self.expire)
        self.timer.daemon = True

    @classmethod
    def current(cls) -> Deadline | None:
        return getattr(cls._current, "deadline", None)

    def __enter__(self) -> Deadline:
        self.outer, Deadline._current.deadline = Deadline.current(), self
        self.end = time.monotonic() + self.seconds
        self.timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        Deadline._current.deadline = self.outer

    def left(self) -> float:
        return self.end - time.monotonic()

    def stop(self) -> None:
        with self.lock:
            self.fd = -1
        self.timer.cancel()

    def watch(self, sock: socket.socket) -> None:
        with self.lock:
            if self.expired:
                raise TimeoutError(f"no whole answer within {self.seconds:g} s")
            self.fd = sock.fileno()
            info = os.fstat(self.fd)
            self.identity = (info.st_dev, info.st_ino)

    def expire(self) -> None:
        with self.lock:
            self.expired = True
            if self.fd < 0 or not self.still_watched():
                return
            view = socket.socket(fileno=self.fd)
            try:
                view.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the other side: the blocked call returns anyway
            finally:
                view.detach()

    def still_watched(self) -> bool:
        try:
            info = os.fstat(self.fd)
        except OSError:
            return False
        return (info.st_dev, info.st_ino) == self.identity


# --- end shared block: deadline ---


OPTIONS = [
    Option(
        "recipient",
        "To address(es); 'John Doe <j@example.com>' too, ',' or ';' between several",
        metavar="RECIPIENT",
        nargs="+",
    ),
    Option("--sender", "From address", default="automation@example.com", metavar="ADDR"),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser(__doc__, OPTIONS)
    args = parser.parse_args(argv)
    try:
        args.recipient = [a for text in args.recipient for a in addresses(text)]
        checked_address("sender", args.sender)
        settings_from(os.environ)
    except ValueError as error:
        parser.error(str(error))
    return args


def login_name() -> str:
    """Who runs this, for the test message; a uid without a passwd entry is one too."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def send_test_message(argv: list[str] | None) -> int:
    args = parse_args(argv)
    configure_logging(args.quiet, args.verbose)
    try:
        body = f"Test message from emails.py, sent by {login_name()}.\n"
        message = generate_email(args.sender, args.recipient, "Test message", body)
        saved = send_email(message)
    except EmailError as error:
        log.error("%s", error)
        return EXIT_NOT_SENT
    log.info("saved %s" if saved else "sent to %s", saved or ", ".join(args.recipient))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return guarded(lambda: send_test_message(argv), failed=EXIT_NOT_SENT)


if __name__ == "__main__":
    sys.exit(main())
