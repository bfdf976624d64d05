#!/usr/bin/env python3
"""Web inbox: the mails a mail catcher kept, readable in a browser (as Mailpit's).

Serves the .eml files of --maildir on loopback: a list of messages (newest
first, with From, To, subject and attachments), one page per message (its
headers, body and attachments), and each attachment as sent, with its own
content type, so the report's PDF opens in the browser. It only reads the
folder; names that are not a kept message are 404.

Usage:
    python sandbox/inbox.py --maildir /tmp/mail [--port 8025]

Example:
    $ python sandbox/inbox.py --maildir /tmp/mail --port 0
    http://127.0.0.1:40233/ maildir=/tmp/mail
"""

from __future__ import annotations

import argparse
import datetime
import html
import re
import signal
import sys
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote

MESSAGE_NAME = re.compile(r"^[\w.-]+\.eml$")
STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:60em}"
    "table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;"
    "padding:.4em;text-align:left}pre{white-space:pre-wrap;background:#f6f6f6;padding:1em}"
)


def page(title: str, body: str) -> bytes:
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body>{body}</body></html>"
    ).encode()


def attachments(message: EmailMessage) -> list[EmailMessage]:
    return list(message.iter_attachments())


def body_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    return part.get_content() if part is not None else ""


def attachment_link(name: str, index: int, part: EmailMessage) -> str:
    filename = part.get_filename() or f"attachment-{index}"
    href = f"/m/{quote(name)}/{index}/{quote(filename, safe='')}"
    size = len(part.get_payload(decode=True) or b"")
    return (
        f"<li><a href='{html.escape(href)}' target='_blank'>{html.escape(filename)}</a>"
        f" ({html.escape(part.get_content_type())}, {size} bytes)</li>"
    )


def received(maildir: Path, name: str, message: EmailMessage) -> str:
    """The Date header, else when the catcher kept it (smtplib sends none by itself)."""
    if message["Date"] is not None:
        return str(message["Date"])
    when = datetime.datetime.fromtimestamp((maildir / name).stat().st_mtime)
    return when.strftime("%a, %d %b %Y %H:%M:%S (received)")


def list_page(maildir: Path, messages: list[tuple[str, EmailMessage]]) -> bytes:
    rows = "".join(
        f"<tr class='message'><td>{html.escape(received(maildir, name, m))}</td>"
        f"<td>{html.escape(str(m['From'] or ''))}</td><td>{html.escape(str(m['To'] or ''))}</td>"
        f"<td><a href='/m/{quote(name)}'>{html.escape(str(m['Subject'] or '(no subject)'))}</a>"
        f"</td><td>{len(attachments(m))}</td></tr>"
        for name, m in reversed(messages)
    )
    return page(
        "Inbox",
        f"<h1>Inbox</h1><p>{len(messages)} message{'s' * (len(messages) != 1)} in"
        f" {html.escape(str(maildir))}"
        " (reload to see new ones)</p><table><tr><th>Date</th><th>From</th><th>To</th>"
        f"<th>Subject</th><th>Attachments</th></tr>{rows}</table>",
    )


def message_page(name: str, message: EmailMessage) -> bytes:
    headers = "".join(
        f"<tr><th>{field}</th><td class='{field.lower()}'>"
        f"{html.escape(str(message[field] or ''))}</td></tr>"
        for field in ("From", "To", "Cc", "Date", "Subject")
        if message[field] is not None
    )
    links = "".join(attachment_link(name, i, p) for i, p in enumerate(attachments(message)))
    return page(
        str(message["Subject"] or name),
        f"<p><a href='/'>Inbox</a></p><table>{headers}</table>"
        f"<pre class='body'>{html.escape(body_text(message))}</pre>"
        f"<h2>Attachments</h2><ul class='attachments'>{links or '<li>none</li>'}</ul>",
    )


class InboxHandler(BaseHTTPRequestHandler):
    """GET /, /m/NAME, /m/NAME/INDEX/FILENAME; nothing else."""

    server: InboxServer

    def do_GET(self) -> None:
        parts = [unquote(p) for p in self.path.split("?")[0].strip("/").split("/") if p]
        maildir = self.server.maildir
        if not parts:
            named = [(p.name, read(p)) for p in sorted(maildir.glob("*.eml"))]
            return self.send(list_page(maildir, named), "text/html; charset=utf-8")
        if parts[0] != "m" or len(parts) not in (2, 4) or not MESSAGE_NAME.match(parts[1]):
            return self.send_error(HTTPStatus.NOT_FOUND)
        path = maildir / parts[1]
        if not path.is_file():
            return self.send_error(HTTPStatus.NOT_FOUND)
        message = read(path)
        if len(parts) == 2:
            return self.send(message_page(parts[1], message), "text/html; charset=utf-8")
        found = attachments(message)
        if not parts[2].isdigit() or int(parts[2]) >= len(found):
            return self.send_error(HTTPStatus.NOT_FOUND)
        part = found[int(parts[2])]
        self.send(part.get_payload(decode=True) or b"", part.get_content_type(), inline=True)

    def send(self, data: bytes, content_type: str, inline: bool = False) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Content-Type-Options", "nosniff")
        if inline:
            self.send_header("Content-Disposition", "inline")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the lab's terminal is for the lab's own lines."""


def read(path: Path) -> EmailMessage:
    return message_from_bytes(path.read_bytes(), policy=policy.default)


class InboxServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, maildir: Path, host: str = "127.0.0.1", port: int = 0):
        self.maildir = Path(maildir)
        super().__init__((host, port), InboxHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def start(self) -> InboxServer:
        """Serve in a daemon thread; stop with shutdown() and server_close()."""
        threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--maildir", type=Path, default=Path("mail"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025, help="0 picks a free port")
    args = parser.parse_args(argv)
    server = InboxServer(args.maildir, args.host, args.port)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"{server.url} maildir={args.maildir}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
