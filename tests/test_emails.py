"""emails.py: real mail through the mail catcher, and errors a person can act on."""

from __future__ import annotations

import base64
import os
import resource
import signal
import socket
import subprocess
from collections.abc import Callable
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from helper import mails

import emails

ROOT = Path(__file__).resolve().parent.parent


def environment(catcher, **extra: str) -> dict[str, str]:
    return {"SMTP_HOST": catcher.host, "SMTP_PORT": str(catcher.port), **extra}


def hello(attachment=None):
    return emails.generate_email(
        "automation@example.com", "alice@example.com", "Hello", "Body text.", attachment
    )


def test_message_has_the_lab_headers_and_body():
    message = hello()
    assert message["From"] == "automation@example.com"
    assert message["To"] == "alice@example.com"
    assert message["Subject"] == "Hello"
    assert message.get_content().strip() == "Body text."
    assert not message.is_multipart()


def test_several_recipients():
    message = emails.generate_email("a@example.com", ["b@example.com", "c@example.com"], "S", "B")
    assert message["To"] == "b@example.com, c@example.com"


@pytest.mark.parametrize(
    "filename, content_type",
    [("report.pdf", "application/pdf"), ("data.weird-ext", "application/octet-stream")],
)
def test_attachment_type_is_guessed_from_the_name(tmp_path, filename, content_type):
    path = tmp_path / filename
    path.write_bytes(b"%PDF-1.4 bytes")
    [part] = list(hello(path).iter_attachments())
    assert part.get_content_type() == content_type
    assert part.get_filename() == filename
    assert part.get_content() == b"%PDF-1.4 bytes"


@pytest.mark.parametrize("field", ["sender", "recipient", "subject"])
@pytest.mark.parametrize("line_break", ["\n", "\r", "\r\n"])
def test_line_breaks_in_headers_are_refused(field, line_break):
    values = {"sender": "a@example.com", "recipient": "b@example.com", "subject": "S"}
    values[field] += f"{line_break}Bcc: victim@example.com"
    with pytest.raises(ValueError, match=field):
        emails.generate_email(values["sender"], values["recipient"], values["subject"], "B")


def test_plain_smtp_delivers_with_the_attachment_intact(mail_catcher, tmp_path):
    pdf = tmp_path / "processed.pdf"
    pdf.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 40)
    assert emails.send_email(hello(pdf), environment(mail_catcher)) is None
    [message] = mails(mail_catcher)
    assert (message["From"], message["To"], message["Subject"]) == (
        "automation@example.com",
        "alice@example.com",
        "Hello",
    )
    [part] = list(message.iter_attachments())
    assert part.get_content() == pdf.read_bytes()


def test_starttls_verified_through_the_ca_file(catcher_factory):
    catcher = catcher_factory(tls="starttls")
    env = environment(catcher, SMTP_SECURITY="starttls", SMTP_CA_FILE=str(catcher.cert_path))
    emails.send_email(hello(), env)
    assert len(mails(catcher)) == 1


def test_implicit_tls_verified_through_the_ca_file(catcher_factory):
    catcher = catcher_factory(tls="ssl")
    env = environment(catcher, SMTP_SECURITY="ssl", SMTP_CA_FILE=str(catcher.cert_path))
    emails.send_email(hello(), env)
    assert len(mails(catcher)) == 1


def test_untrusted_certificate_is_refused_with_advice(catcher_factory):
    catcher = catcher_factory(tls="starttls")
    with pytest.raises(emails.EmailError, match=r"not trusted.*set SMTP_CA_FILE"):
        emails.send_email(hello(), environment(catcher, SMTP_SECURITY="starttls"))
    assert mails(catcher) == []


def test_auth_accepted_with_password_file(catcher_factory, tmp_path):
    catcher = catcher_factory(tls="starttls", user="alice", password="pa55 word")
    secret = tmp_path / "password"
    secret.write_text("pa55 word\n")
    env = environment(
        catcher,
        SMTP_SECURITY="starttls",
        SMTP_CA_FILE=str(catcher.cert_path),
        SMTP_USER="alice",
        SMTP_PASSWORD_FILE=str(secret),
    )
    emails.send_email(hello(), env)
    assert len(mails(catcher)) == 1


def test_auth_refused_names_the_user_not_the_password(catcher_factory):
    catcher = catcher_factory(tls="ssl", user="alice", password="right")
    env = environment(
        catcher,
        SMTP_SECURITY="ssl",
        SMTP_CA_FILE=str(catcher.cert_path),
        SMTP_USER="alice",
        SMTP_PASSWORD="wrong-s3cret",
    )
    with pytest.raises(emails.EmailError) as caught:
        emails.send_email(hello(), env)
    assert str(caught.value) == (
        "SMTP login refused for user alice: 535 5.7.8 Authentication credentials invalid"
    )
    assert "wrong-s3cret" not in repr(caught.value)


def test_refused_recipient_is_named_with_what_the_server_said(catcher_factory):
    catcher = catcher_factory(refuse=("bob@example.com",))
    message = emails.generate_email("a@example.com", "bob@example.com", "S", "B")
    with pytest.raises(emails.EmailError) as caught:
        emails.send_email(message, environment(catcher))
    assert str(caught.value) == (
        f"SMTP server {catcher.host}:{catcher.port} refused every recipient:"
        " bob@example.com: 550 5.1.1 No such user here"
    )


@pytest.mark.parametrize(
    "refuse, defer, max_size, permanent",
    [
        (("alice@example.com",), (), 0, True),
        ((), ("alice@example.com",), 0, False),
        ((), (), 2000, True),
    ],
    ids=["550 no such user", "450 greylisted", "552 too large"],
)
def test_a_refusal_for_good_is_told_from_one_for_now(
    catcher_factory, tmp_path, refuse, defer, max_size, permanent
):
    catcher = catcher_factory(refuse=refuse, defer=defer, max_size=max_size)
    attachment = tmp_path / "big.pdf"
    attachment.write_bytes(b"%PDF" + bytes(5000))
    with pytest.raises(emails.EmailError) as caught:
        emails.send_email(hello(attachment), environment(catcher))
    assert caught.value.permanent is permanent
    assert mails(catcher) == []


def test_one_refused_recipient_of_two_says_who_got_it(catcher_factory):
    catcher = catcher_factory(refuse=("bob@example.com",))
    message = emails.generate_email("a@example.com", ["bob@example.com", "c@example.com"], "S", "B")
    with pytest.raises(emails.PartlyDelivered) as caught:
        emails.send_email(message, environment(catcher))
    assert caught.value.delivered == ["c@example.com"]
    assert caught.value.refused == {"bob@example.com": "550 5.1.1 No such user here"}
    assert caught.value.permanent  # a 550: sent again, refused again
    assert [m["To"] for m in mails(catcher)] == ["bob@example.com, c@example.com"]


def test_a_message_over_the_size_limit_says_what_the_server_said(catcher_factory, tmp_path):
    catcher = catcher_factory(max_size=2000)
    attachment = tmp_path / "big.pdf"
    attachment.write_bytes(b"%PDF" + bytes(5000))
    with pytest.raises(emails.EmailError) as caught:
        emails.send_email(hello(attachment), environment(catcher))
    assert str(caught.value) == (
        f"SMTP server {catcher.host}:{catcher.port} refused the mail from"
        " automation@example.com: 552 Error: message size exceeds fixed maximum message size"
    )
    assert mails(catcher) == []


def test_server_down_says_what_to_set(dead_port):
    port = dead_port
    env = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port)}
    with pytest.raises(emails.EmailError) as caught:
        emails.send_email(hello(), env)
    assert str(caught.value) == (
        f"cannot reach SMTP server 127.0.0.1:{port}: connection refused (set SMTP_HOST)"
    )


def test_a_server_that_never_answers_times_out_naming_the_host():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        env = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "SMTP_TIMEOUT": "0.3"}
        with pytest.raises(emails.EmailError) as caught:
            emails.send_email(hello(), env)
    assert str(caught.value) == (
        f"SMTP server 127.0.0.1:{port} did not answer within 0.3 s (SMTP_TIMEOUT)"
    )


def test_save_dir_writes_a_parseable_eml_instead_of_sending(tmp_path):
    path = emails.send_email(hello(), {"SMTP_SAVE_DIR": str(tmp_path / "out")})
    assert path.parent == tmp_path / "out" and path.suffix == ".eml"
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert message["Subject"] == "Hello"
    assert [p.name for p in (tmp_path / "out").iterdir()] == [path.name]


def limited_file_size(size: int) -> Callable[[], None]:
    """For subprocess: files may grow to `size` bytes; a write past it fails with
    EFBIG (SIGXFSZ ignored), as on a full disk."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    return limit


def test_a_mail_that_cannot_be_saved_whole_leaves_nothing(tmp_path):
    """A write cut short (the file size limit, as a full disk) leaves no part of the
    .eml and no temporary file, and says why."""
    outbox = tmp_path / "out"
    outbox.mkdir()
    done = subprocess.run(
        [ROOT / "emails.py", "ops@example.com"],
        env={**os.environ, "SMTP_SAVE_DIR": str(outbox)},
        preexec_fn=limited_file_size(100),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr == f"ERROR cannot save the mail in {outbox}: File too large\n"
    assert list(outbox.iterdir()) == []


@pytest.mark.parametrize(
    "environ, port",
    [({}, 25), ({"SMTP_SECURITY": "starttls"}, 587), ({"SMTP_SECURITY": "ssl"}, 465)],
)
def test_port_defaults_follow_the_security(environ, port):
    settings = emails.settings_from(environ)
    assert (settings.host, settings.port, settings.timeout) == ("localhost", port, 10.0)


@pytest.mark.parametrize(
    "name, value, fragment",
    [
        ("SMTP_SECURITY", "tls-please", "must be none, starttls or ssl, not 'tls-please'"),
        ("SMTP_PORT", "abc", "'abc' is not a whole number"),
        ("SMTP_PORT", "70000", "'70000' is not from 1 to 65535"),
        ("SMTP_TIMEOUT", "-1", "'-1' is not from 0.1 to 3600"),
        ("SMTP_TIMEOUT", "nan", "'nan' is not from 0.1 to 3600"),
        ("SMTP_DEADLINE", "inf", "'inf' is not from 0.1 to 86400"),
        ("SMTP_DEADLINE", "1e309", "'1e309' is not from 0.1 to 86400"),
    ],
)
def test_bad_settings_name_the_variable(name, value, fragment):
    with pytest.raises(emails.EmailError) as caught:
        emails.send_email(hello(), {name: value})
    assert str(caught.value) == f"environment variable {name}: {fragment}"


# (id, the list as typed, the addresses as the To header shows them, or the error)
ADDRESS_LISTS = [
    ("plain", "a@x.com", ["a@x.com"]),
    ("semicolon", "a@x.com;b@y.com", ["a@x.com", "b@y.com"]),
    ("spaces", " a@x.com , b@y.com; ", ["a@x.com", "b@y.com"]),
    ("single-label-domain", "alice@localhost", ["alice@localhost"]),
    ("non-ascii", "émile@bücher.example", ["émile@bücher.example"]),
    ("display-name", "John Doe <j@example.com>", ["John Doe <j@example.com>"]),
    ("quoted-comma", '"Doe, John" <j@example.com>', ['"Doe, John" <j@example.com>']),
    (
        "quoted-semicolon-and-another",
        '"Doe; J" <j@x.com>, k@x.com',
        ['"Doe; J" <j@x.com>', "k@x.com"],
    ),
    ("angle-only", "<a@x.com>", ["a@x.com"]),
    ("accented-name", "Zoë Ünal <z@x.com>", ["Zoë Ünal <z@x.com>"]),
    (
        "encoded-word-with-a-comma",
        "=?utf-8?q?Evil=2C_Bob?= <eb@example.com>",
        ['"Evil, Bob" <eb@example.com>'],
    ),
    ("encoded-word-non-ascii", "=?utf-8?b?WsO2ZQ==?= <z@x.com>", ["Zöe <z@x.com>"]),
    (
        "encoded-line-break",
        "=?utf-8?q?a=0D=0ABcc=3A_x?= <a@x.com>",
        "recipient must not contain a line break",
    ),
    (
        "encoded-word-unknown-charset",
        "=?bogus?q?a?= <a@x.com>",
        "recipient display name '=?bogus?q?a?=' is not readable",
    ),
    ("encoded-twice", "=?utf-8?q?=3D=3Fx=3F?= <a@x.com>", "recipient display name"),
    ("empty", "", "recipient list '' holds no address"),
    ("separators-only", " ; ", "recipient list ' ; ' holds no address"),
    ("no-domain", "alice", "recipient 'alice' is not one email address (like alice@example.com)"),
    ("nothing-after-at", "a@", "recipient 'a@' is not one email address"),
    ("nothing-before-at", "@x.com", "recipient '@x.com' is not one email address"),
    ("space-in-address", "a b@x.com", "recipient 'a b@x.com' is not one email address"),
    ("name-without-brackets", "Alice a@x.com", "recipient 'Alice a@x.com' is not one"),
    ("unclosed-bracket", "Alice <a@x.com", "recipient 'Alice <a@x.com' is not one"),
    ("two-addresses-one-name", "A <a@x.com> <b@x.com>", "recipient 'A <a@x.com> <b@x.com>'"),
    ("unclosed-quote", '"Doe <j@x.com>', "recipient '\"Doe <j@x.com>' is not one"),
    ("double-dot", "a@x..com", "recipient 'a@x..com' is not one email address"),
    ("hyphen-domain", "a@-x.com", "recipient 'a@-x.com' is not one email address"),
    (
        "unquoted-comma",
        "Doe, John <j@x.com>",
        "recipient 'Doe' is not one email address (like alice@example.com); a display name"
        ' with a comma needs quotes: "Doe, John" <j@example.com>',
    ),
    (
        "group",
        "team: a@x.com, b@x.com;",
        "recipient list 'team: a@x.com, b@x.com;' is a group (NAME: addresses;), which is not"
        " mailed: list its addresses instead",
    ),
    ("line-break", "a@x.com\nBcc: b@x.com", "recipient must not contain a line break"),
]


@pytest.mark.parametrize(
    "text, expected", [case[1:] for case in ADDRESS_LISTS], ids=[case[0] for case in ADDRESS_LISTS]
)
def test_address_lists_are_read_as_mail_software_reads_them(text, expected):
    if isinstance(expected, list):
        assert emails.addresses(text) == expected
    else:
        with pytest.raises(ValueError) as caught:
            emails.addresses(text)
        assert str(caught.value).startswith(expected)


def test_display_names_reach_the_header_and_the_server_gets_the_plain_addresses(
    catcher_factory,
):
    catcher = catcher_factory(refuse=("z@example.com",))
    to = emails.addresses('"Doe, John" <j@example.com>; Zoë <z@example.com>')
    message = emails.generate_email("Fruit Store <shop@example.com>", to, "Hi", "Body")
    with pytest.raises(emails.PartlyDelivered) as caught:
        emails.send_email(message, environment(catcher))
    # The server was asked for the plain addresses, and refused one of them by it.
    assert caught.value.delivered == ["j@example.com"]
    assert list(caught.value.refused) == ["z@example.com"]
    [mail] = mails(catcher)
    assert mail["To"] == '"Doe, John" <j@example.com>, Zoë <z@example.com>'
    assert mail["From"] == "Fruit Store <shop@example.com>"
    assert mail["Message-ID"].endswith("@example.com>")


def test_an_encoded_display_name_is_one_quoted_address_in_the_header(catcher_factory):
    catcher = catcher_factory()
    to = emails.addresses("=?utf-8?q?Evil=2C_Bob?= <eb@example.com>")
    message = emails.generate_email("Fruit Store <shop@example.com>", to, "Hi", "Body")
    emails.send_email(message, environment(catcher))
    [mail] = mails(catcher)
    assert mail["To"] == '"Evil, Bob" <eb@example.com>'
    assert [a.addr_spec for a in mail["To"].addresses] == ["eb@example.com"]


@pytest.mark.parametrize(
    "sender, expected",
    [
        ("Ops Team <ops@example.com>", "Ops Team <ops@example.com>"),
        ('"Ops, Team" <ops@example.com>', '"Ops, Team" <ops@example.com>'),
        ("=?utf-8?q?Ops=2C_Team?= <ops@example.com>", '"Ops, Team" <ops@example.com>'),
        ("Ops, Team <ops@example.com>", "a display name with a comma, semicolon or colon needs"),
        ("Ops; Team <ops@example.com>", "a display name with a comma, semicolon or colon needs"),
    ],
    ids=["plain-name", "quoted-comma", "encoded-comma", "unquoted-comma", "unquoted-semicolon"],
)
def test_a_sender_is_read_like_a_recipient(sender, expected):
    """An unquoted comma is refused in both (never silently dropped from the From)."""
    if "<" in expected:
        assert emails.checked_address("sender", sender) == expected
    else:
        with pytest.raises(ValueError, match=expected):
            emails.checked_address("sender", sender)


def test_generate_email_refuses_a_list_in_one_address():
    with pytest.raises(ValueError, match=r"recipient 'a@x.com;b@y.com' is not one email address"):
        emails.generate_email("s@x.com", "a@x.com;b@y.com", "S", "B")


@pytest.mark.parametrize("where", ["SMTP_PASSWORD", "SMTP_PASSWORD_FILE"])
def test_a_non_ascii_password_logs_in(catcher_factory, tmp_path, where):
    password = "pässwörd-日本-Ω"
    catcher = catcher_factory(tls="ssl", user="jürgen", password=password)
    secret = tmp_path / "password"
    secret.write_text(password + "\n", encoding="utf-8")
    value = str(secret) if where == "SMTP_PASSWORD_FILE" else password
    env = environment(
        catcher, SMTP_SECURITY="ssl", SMTP_CA_FILE=str(catcher.cert_path), SMTP_USER="jürgen"
    )
    emails.send_email(hello(), {**env, where: value})
    assert len(mails(catcher)) == 1


def test_a_wrong_non_ascii_password_is_not_shown(catcher_factory):
    catcher = catcher_factory(tls="ssl", user="alice", password="right")
    env = environment(
        catcher,
        SMTP_SECURITY="ssl",
        SMTP_CA_FILE=str(catcher.cert_path),
        SMTP_USER="alice",
        SMTP_PASSWORD="wröng-ß",
    )
    with pytest.raises(emails.EmailError) as caught:
        emails.send_email(hello(), env)
    for fragment in ("wröng", "ö", "ß", "position"):
        assert fragment not in str(caught.value)


def test_a_trickling_server_is_cut_at_the_deadline(trickling_server):
    port = trickling_server(b"220-still greeting\r\n", interval=0.2)
    env = {
        "PATH": os.environ["PATH"],
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(port),
        "SMTP_TIMEOUT": "1",
        "SMTP_DEADLINE": "2",
    }
    result = subprocess.run(
        [ROOT / "emails.py", "ops@example.com"], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1
    assert result.stderr == (
        f"ERROR SMTP server 127.0.0.1:{port} did not finish within 2 s (SMTP_DEADLINE)\n"
    )


def test_help_shows_examples_and_exit_statuses_and_version():
    result = subprocess.run([ROOT / "emails.py", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "Example:" in result.stdout and "Exit status: 0 sent" in result.stdout
    assert "SMTP_DEADLINE (120 seconds" in result.stdout
    version = subprocess.run([ROOT / "emails.py", "-V"], capture_output=True, text=True)
    assert version.stdout == "emails.py 2.0.0\n"


@pytest.mark.parametrize(
    "args, env, fragment",
    [
        (["a@x.com;"], {}, None),
        (["not-an-address"], {}, "recipient 'not-an-address' is not one email address"),
        (["a@x.com"], {"SMTP_PORT": "abc"}, "environment variable SMTP_PORT: 'abc'"),
        (["a@x.com", "--sender", "me"], {}, "sender 'me' is not one email address"),
    ],
)
def test_command_line_usage_errors_exit_2(args, env, fragment, dead_port):
    environ = {"PATH": os.environ["PATH"], "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(dead_port)}
    result = subprocess.run(
        [ROOT / "emails.py", *args], env={**environ, **env}, capture_output=True, text=True
    )
    if fragment is None:  # a trailing separator is fine: the server is down, exit 1
        assert result.returncode == 1 and "connection refused" in result.stderr
    else:
        assert result.returncode == 2 and fragment in result.stderr
    assert "Traceback" not in result.stderr


def test_command_line_sends_a_test_message(mail_catcher):
    env = {"PATH": os.environ["PATH"], **environment(mail_catcher)}
    result = subprocess.run(
        [ROOT / "emails.py", "ops@example.com"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert mails(mail_catcher)[0]["To"] == "ops@example.com"


def test_a_password_is_never_sent_in_the_clear_off_this_machine():
    env = {"SMTP_HOST": "mail.example.com", "SMTP_USER": "alice", "SMTP_PASSWORD": "pw"}
    with pytest.raises(emails.EmailError) as caught:
        emails.send_email(hello(), env)
    assert str(caught.value) == (
        "refusing to send the SMTP password for alice unencrypted to mail.example.com:25;"
        " set SMTP_SECURITY=starttls or ssl"
    )


def test_auth_in_the_clear_is_allowed_on_loopback(catcher_factory):
    catcher = catcher_factory(user="alice", password="pw")
    emails.send_email(hello(), environment(catcher, SMTP_USER="alice", SMTP_PASSWORD="pw"))
    assert len(mails(catcher)) == 1


# -- hostile pass ---------------------------------------------------------------------------


@pytest.mark.parametrize("password", ["hunter2", "pässwörd"])
def test_a_server_quoting_the_auth_line_shows_nothing_of_the_password(quoting_smtp, password):
    environ = {"SMTP_PORT": str(quoting_smtp), "SMTP_USER": "bob", "SMTP_PASSWORD": password}
    message = emails.generate_email("a@example.com", "b@example.com", "Hi", "Body")
    with pytest.raises(emails.EmailError) as refused:
        emails.send_email(message, environ)
    said = str(refused.value)
    plain = base64.b64encode(f"\0bob\0{password}".encode()).decode()
    assert "535 5.7.8 refused: AUTH PLAIN ***" in said
    assert password not in said and plain not in said


def test_a_server_answer_reaches_the_terminal_without_escape_sequences():
    assert emails.answer(550, b"no \x1b[2J\x07such user\r\n") == "550 no [2J such user"
