"""The mail catcher is a real SMTP server: plain, STARTTLS, TLS and AUTH."""

from __future__ import annotations

import base64
import smtplib
import ssl
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import pytest
from helper import mails

ROOT = Path(__file__).resolve().parent.parent


def hello(subject: str = "Hello") -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.com", "b@example.com", subject
    message.set_content("Body text.\n")
    return message


def trusting(catcher) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=catcher.cert_path)


def test_plain_smtp_message_is_written_as_eml(mail_catcher):
    with smtplib.SMTP(mail_catcher.host, mail_catcher.port, timeout=30) as smtp:
        smtp.send_message(hello("Plain"))
    [message] = mails(mail_catcher)
    assert message["Subject"] == "Plain"
    assert message.get_content() == "Body text.\n"


def test_starttls_with_the_written_certificate(catcher_factory):
    catcher = catcher_factory(tls="starttls")
    with smtplib.SMTP(catcher.host, catcher.port, timeout=30) as smtp:
        smtp.starttls(context=trusting(catcher))
        smtp.send_message(hello("Secret"))
    assert [m["Subject"] for m in mails(catcher)] == ["Secret"]


def test_starttls_is_required_when_offered(catcher_factory):
    catcher = catcher_factory(tls="starttls")
    with (
        smtplib.SMTP(catcher.host, catcher.port, timeout=30) as smtp,
        pytest.raises(smtplib.SMTPException),
    ):
        smtp.send_message(hello())
    assert mails(catcher) == []


def test_implicit_tls(catcher_factory):
    catcher = catcher_factory(tls="ssl")
    with smtplib.SMTP_SSL(
        catcher.host, catcher.port, timeout=30, context=trusting(catcher)
    ) as smtp:
        smtp.send_message(hello("Wrapped"))
    assert [m["Subject"] for m in mails(catcher)] == ["Wrapped"]


def test_certificate_is_not_trusted_by_default(catcher_factory):
    catcher = catcher_factory(tls="ssl")
    with pytest.raises(ssl.SSLCertVerificationError):
        smtplib.SMTP_SSL(
            catcher.host, catcher.port, timeout=30, context=ssl.create_default_context()
        )


def test_auth_accepted_with_the_right_password(catcher_factory):
    catcher = catcher_factory(tls="starttls", user="alice", password="pw")
    with smtplib.SMTP(catcher.host, catcher.port, timeout=30) as smtp:
        smtp.starttls(context=trusting(catcher))
        smtp.login("alice", "pw")
        smtp.send_message(hello("Authed"))
    assert [m["Subject"] for m in mails(catcher)] == ["Authed"]


def test_auth_refused_with_a_wrong_password(catcher_factory):
    catcher = catcher_factory(tls="starttls", user="alice", password="pw")
    with smtplib.SMTP(catcher.host, catcher.port, timeout=30) as smtp:
        smtp.starttls(context=trusting(catcher))
        with pytest.raises(smtplib.SMTPAuthenticationError):
            smtp.login("alice", "wrong")


def test_auth_required_before_mail(catcher_factory):
    catcher = catcher_factory(user="alice", password="pw")
    with (
        smtplib.SMTP(catcher.host, catcher.port, timeout=30) as smtp,
        pytest.raises(smtplib.SMTPException),
    ):
        smtp.send_message(hello())
    assert mails(catcher) == []


def test_command_line_prints_its_port_and_stops_on_sigterm(tmp_path):
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "sandbox" / "mailcatcher.py"), "--maildir", str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        port = int(line.split()[0].rsplit(":", 1)[1])
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            smtp.send_message(hello("Via CLI"))
    finally:
        process.terminate()
    assert process.wait(timeout=10) == 0
    assert len(list(tmp_path.glob("*.eml"))) == 1


def test_a_message_over_max_size_is_refused_with_552_as_postfix_does(catcher_factory):
    catcher = catcher_factory(max_size=500)
    big = hello("Big")
    big.set_content("x" * 2000)
    with smtplib.SMTP(catcher.host, catcher.port, timeout=30) as smtp:
        with pytest.raises(smtplib.SMTPSenderRefused) as caught:
            smtp.send_message(big)
        smtp.send_message(hello("Small"))
    assert caught.value.smtp_code == 552
    assert [m["Subject"] for m in mails(catcher)] == ["Small"]


def test_auth_with_a_utf8_password(catcher_factory):
    catcher = catcher_factory(tls="ssl", user="zoë", password="пароль")
    with smtplib.SMTP_SSL(
        catcher.host, catcher.port, timeout=30, context=trusting(catcher)
    ) as smtp:
        smtp.ehlo()
        credentials = base64.b64encode("\0zoë\0пароль".encode()).decode()
        assert smtp.docmd("AUTH", f"PLAIN {credentials}")[0] == 235
