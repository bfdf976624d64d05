#!/usr/bin/env python3
"""Build and send email (helper module for report_email.py and health_check.py).

  generate_email(sender, recipient, subject, body, attachment_path=None)
      an email.message.EmailMessage; recipient may be a list; a CR or LF in
      any header value is refused with ValueError.
  send_email(message)
      sends it through SMTP configured from the environment, or saves it as
      an .eml file when SMTP_SAVE_DIR is set. Failures raise EmailError with
      a message a person can act on. Credentials are never logged.

Environment (defaults: the lab's local mail server, no login):
  SMTP_HOST (localhost), SMTP_PORT (25, 587 or 465 by SMTP_SECURITY),
  SMTP_SECURITY (none | starttls | ssl), SMTP_USER, SMTP_PASSWORD or
  SMTP_PASSWORD_FILE, SMTP_TIMEOUT (10 seconds), SMTP_CA_FILE (a private CA
  for TLS), SMTP_SAVE_DIR (write .eml files there instead of sending).

Usage:
    import emails
    message = emails.generate_email("a@example.com", "b@example.com", "Hi", "Body")
    emails.send_email(message)

    ./emails.py you@example.com     # send a test message with these settings

Example:
    $ SMTP_HOST=mail.example.com ./emails.py ops@example.com
    ERROR cannot reach SMTP server mail.example.com:25: connection refused (set SMTP_HOST)
"""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import logging
import mimetypes
import os
import smtplib
import socket
import ssl
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

SECURITY_PORTS = {"none": 25, "starttls": 587, "ssl": 465}
DEFAULT_TIMEOUT = 10.0


class EmailError(Exception):
    """Mail could not be sent; the message says why and what to set."""


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str
    user: str
    password: str
    timeout: float
    ca_file: str
    save_dir: str

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


# -- building -------------------------------------------------------------------


def header_value(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError(f"{name} must not contain a line break: {value!r}")
    return value


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
    message["From"] = header_value("sender", sender)
    message["To"] = ", ".join(header_value("recipient", r) for r in recipients)
    message["Subject"] = header_value("subject", subject)
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
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


def settings_from(environ: Mapping[str, str]) -> SmtpSettings:
    """SMTP settings from environment variables; ValueError names a bad one."""
    security = environ.get("SMTP_SECURITY", "none").strip().lower() or "none"
    if security not in SECURITY_PORTS:
        raise ValueError(f"SMTP_SECURITY must be none, starttls or ssl, not {security!r}")
    try:
        port = int(environ.get("SMTP_PORT") or SECURITY_PORTS[security])
        timeout = float(environ.get("SMTP_TIMEOUT") or DEFAULT_TIMEOUT)
    except ValueError:
        raise ValueError("SMTP_PORT and SMTP_TIMEOUT must be numbers") from None
    password = environ.get("SMTP_PASSWORD", "")
    password_file = environ.get("SMTP_PASSWORD_FILE", "")
    if password_file:
        try:
            password = Path(password_file).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise ValueError(f"cannot read SMTP_PASSWORD_FILE {password_file}: {error}") from None
    return SmtpSettings(
        host=environ.get("SMTP_HOST") or "localhost",
        port=port,
        security=security,
        user=environ.get("SMTP_USER", ""),
        password=password,
        timeout=timeout,
        ca_file=environ.get("SMTP_CA_FILE", ""),
        save_dir=environ.get("SMTP_SAVE_DIR", ""),
    )


# -- sending --------------------------------------------------------------------


def tls_context(settings: SmtpSettings) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=settings.ca_file or None)
    except (OSError, ssl.SSLError) as error:
        raise EmailError(f"cannot load SMTP_CA_FILE {settings.ca_file}: {error}") from None


def connect(settings: SmtpSettings) -> smtplib.SMTP:
    if settings.security == "ssl":
        return smtplib.SMTP_SSL(
            settings.host, settings.port, timeout=settings.timeout, context=tls_context(settings)
        )
    smtp = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
    if settings.security == "starttls":
        smtp.ehlo()
        if not smtp.has_extn("starttls"):
            smtp.close()
            raise EmailError(f"SMTP server {settings.address} does not offer STARTTLS")
        smtp.starttls(context=tls_context(settings))
    return smtp


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def deliver(message: EmailMessage, settings: SmtpSettings) -> None:
    if settings.user and settings.security == "none" and not is_loopback(settings.host):
        raise EmailError(
            f"refusing to send the SMTP password for {settings.user} unencrypted to"
            f" {settings.address}; set SMTP_SECURITY=starttls or ssl"
        )
    with connect(settings) as smtp:
        if settings.user:
            smtp.login(settings.user, settings.password)
        refused = smtp.send_message(message)
    if refused:
        raise EmailError("recipient refused: " + ", ".join(sorted(refused)))


def explain(error: Exception, settings: SmtpSettings) -> str:
    """A message a person can act on; never includes the password."""
    where = settings.address
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
        return f"SMTP login refused for user {settings.user}"
    if isinstance(error, smtplib.SMTPNotSupportedError) and settings.user:
        return f"SMTP server {where} does not offer login (AUTH); unset SMTP_USER or use TLS"
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return "recipient refused: " + ", ".join(sorted(error.recipients))
    if isinstance(error, smtplib.SMTPSenderRefused):
        return f"sender refused: {error.sender}"
    if isinstance(error, smtplib.SMTPResponseException):
        text = error.smtp_error.decode(errors="replace") if error.smtp_error else ""
        return f"SMTP server {where} answered {error.smtp_code} {text}".rstrip()
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return f"SMTP server {where} closed the connection (check SMTP_SECURITY and SMTP_PORT)"
    return f"sending mail through {where} failed: {error}"


def save_eml(message: EmailMessage, folder: str) -> Path:
    """Write the message as <time>-<id>.eml, atomically."""
    directory = Path(folder)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.eml"
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".", suffix=".tmp")
    with os.fdopen(fd, "wb") as stream:
        stream.write(message.as_bytes())
    os.chmod(temporary, 0o644)
    os.replace(temporary, target)
    return target


def send_email(message: EmailMessage, environ: Mapping[str, str] | None = None) -> Path | None:
    """Send through SMTP as the environment says; the .eml path when saved instead."""
    try:
        settings = settings_from(os.environ if environ is None else environ)
    except ValueError as error:
        raise EmailError(str(error)) from None
    if settings.save_dir:
        return save_eml(message, settings.save_dir)
    try:
        deliver(message, settings)
    except EmailError:
        raise
    except (OSError, smtplib.SMTPException) as error:
        raise EmailError(explain(error, settings)) from None
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Send a test message with the SMTP_* settings of this environment."
    )
    parser.add_argument("recipient", nargs="+")
    parser.add_argument("--sender", default="automation@example.com")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    body = f"Test message from emails.py, sent by {getpass.getuser()}.\n"
    message = generate_email(args.sender, args.recipient, "Test message", body)
    try:
        saved = send_email(message)
    except EmailError as error:
        logging.error("%s", error)
        return 1
    logging.info("saved %s" if saved else "sent to %s", saved or ", ".join(args.recipient))
    return 0


if __name__ == "__main__":
    sys.exit(main())
