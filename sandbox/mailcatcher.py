#!/usr/bin/env python3
"""Mail catcher: a real SMTP server on loopback that keeps every message.

Each accepted message is written as one `.eml` file into --maildir, exactly
as received (with Unix line ends), so tests and the demo can read back what
the scripts sent. Optionally it requires AUTH (UTF-8 passwords), refuses
messages over --max-size with 552 as Postfix does, refuses --refuse
recipients (550), defers --defer recipients as greylisting does (450: try
again later), offers STARTTLS, or speaks implicit TLS with a self-signed
certificate it generates and writes to <maildir>/../catcher-cert.pem (or
--cert-out) so clients can trust it through SMTP_CA_FILE.

Usage:
    python sandbox/mailcatcher.py --maildir /tmp/mail
    python sandbox/mailcatcher.py --tls starttls --user alice --password pw
    python sandbox/mailcatcher.py --max-size 10240000 --refuse bob@example.com

Example:
    $ python sandbox/mailcatcher.py --maildir /tmp/mail
    smtp://127.0.0.1:40231 maildir=/tmp/mail
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import itertools
import signal
import socket
import ssl
import sys
import threading
import time
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

TLS_MODES = ("none", "starttls", "ssl")


def make_certificate(cert_path: Path, key_path: Path) -> None:
    """Write a self-signed certificate for localhost and 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


class MaildirHandler:
    """aiosmtpd handler: one .eml file per accepted message."""

    def __init__(
        self,
        maildir: Path,
        refuse: frozenset[str] = frozenset(),
        defer: frozenset[str] = frozenset(),
    ):
        self.maildir = maildir
        self.refuse, self.defer = refuse, defer
        self.counter = itertools.count(1)
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if address.lower() in self.refuse:
            return "550 5.1.1 No such user here"
        if address.lower() in self.defer:
            return "450 4.7.1 Greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        with self.lock:
            number = next(self.counter)
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{number:04d}.eml"
        temporary = self.maildir / f".{name}.tmp"
        # Unix line ends, so the .eml reads back with Python's email parser as sent.
        raw = envelope.original_content or envelope.content
        temporary.write_bytes(raw.replace(b"\r\n", b"\n"))
        temporary.rename(self.maildir / name)
        return "250 Message accepted for delivery"


class PasswordAuthenticator:
    def __init__(self, user: str, password: str):
        self.user, self.password = user, password

    def __call__(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode("utf-8", "replace") == self.user
            and auth_data.password.decode("utf-8", "replace") == self.password
        )
        return AuthResult(success=ok, handled=False)


def free_port(host: str) -> int:
    # aiosmtpd's Controller probes the port it was given, so port 0 cannot
    # be passed through; ask the kernel for a free one first.
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class MailCatcher:
    """Start with `start()`, stop with `stop()`; `messages()` reads them back."""

    def __init__(
        self,
        maildir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: str = "none",
        user: str = "",
        password: str = "",
        cert_out: Path | None = None,
        refuse: tuple[str, ...] = (),
        max_size: int = 0,
        defer: tuple[str, ...] = (),
    ):
        if tls not in TLS_MODES:
            raise ValueError(f"tls must be one of {TLS_MODES}")
        self.maildir = Path(maildir)
        self.maildir.mkdir(parents=True, exist_ok=True)
        self.host, self.port, self.tls = host, port, tls
        self.user, self.password = user, password
        self.refuse = frozenset(address.lower() for address in refuse)
        self.defer = frozenset(address.lower() for address in defer)
        self.max_size = max_size
        self.cert_path = cert_out or self.maildir.parent / "catcher-cert.pem"
        self.controller: Controller | None = None

    def server_context(self) -> ssl.SSLContext:
        key_path = self.cert_path.with_suffix(".key")
        make_certificate(self.cert_path, key_path)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_path, key_path)
        return context

    def start(self) -> MailCatcher:
        context = self.server_context() if self.tls != "none" else None
        options: dict = {}
        if self.max_size:
            # Advertised as SIZE; a larger MAIL FROM is refused with 552, as Postfix does.
            options["data_size_limit"] = self.max_size
        if self.user:
            options["authenticator"] = PasswordAuthenticator(self.user, self.password)
            options["auth_required"] = True
            # With STARTTLS, AUTH only after it. aiosmtpd does not count implicit
            # TLS as TLS, and a plain test server may allow AUTH in the clear.
            options["auth_require_tls"] = self.tls == "starttls"
        if self.tls == "starttls":
            options["tls_context"] = context
            options["require_starttls"] = True
        if self.port == 0:
            self.port = free_port(self.host)
        self.controller = Controller(
            MaildirHandler(self.maildir, self.refuse, self.defer),
            hostname=self.host,
            port=self.port,
            ssl_context=context if self.tls == "ssl" else None,
            server_hostname="localhost",
            **options,
        )
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def messages(self) -> list[Path]:
        return sorted(self.maildir.glob("*.eml"))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--maildir", type=Path, default=Path("mail"))
    parser.add_argument("--tls", choices=TLS_MODES, default="none")
    parser.add_argument("--user", default="", help="require AUTH with this user")
    parser.add_argument("--password", default="", help="the password AUTH accepts")
    parser.add_argument("--cert-out", type=Path, help="where to write the certificate")
    parser.add_argument("--refuse", action="append", default=[], help="recipient to refuse")
    parser.add_argument("--defer", action="append", default=[], help="recipient to defer (450)")
    parser.add_argument(
        "--max-size", type=int, default=0, metavar="BYTES", help="refuse larger messages (552)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    catcher = MailCatcher(
        args.maildir,
        args.host,
        args.port,
        args.tls,
        args.user,
        args.password,
        args.cert_out,
        tuple(args.refuse),
        args.max_size,
        tuple(args.defer),
    ).start()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    extra = f" cert={catcher.cert_path}" if args.tls != "none" else ""
    print(f"smtp://{catcher.host}:{catcher.port} maildir={catcher.maildir}{extra}", flush=True)
    # In steps: a stop that lands just before an endless wait begins would never end it.
    while not stopped.wait(0.5):
        pass
    catcher.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
