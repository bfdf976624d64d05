"""Serving the Django app: Django's threaded WSGI server, with two additions.

- TCP_NODELAY on every accepted socket: headers and body go out in separate
  writes, and without it the body waits for the client's delayed ACK (40 ms)
  on every kept-alive connection.
- The drop fault: when a view's request carries DROP_KEY, the connection is
  closed without writing the answer (the work is already done).
"""

from __future__ import annotations

from django.conf import settings
from django.core.servers import basehttp
from django.core.wsgi import get_wsgi_application
from django.db import connection
from django.urls import get_resolver

from storeapp.middleware import DROP_KEY


class StoreServerHandler(basehttp.ServerHandler):
    """Django's per-request WSGI handler, able to drop the connection."""

    def finish_response(self) -> None:
        if self.environ.get(DROP_KEY):
            self.request_handler.close_connection = True
            self.close()  # releases the response without sending a byte
            return
        super().finish_response()


class StoreRequestHandler(basehttp.WSGIRequestHandler):
    """HTTP/1.1 keep-alive request handler using StoreServerHandler."""

    disable_nagle_algorithm = True  # StreamRequestHandler sets TCP_NODELAY

    def handle_one_request(self) -> None:
        """basehttp's version (a copy of wsgiref's) with our ServerHandler."""
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.requestline = self.request_version = self.command = ""
            self.send_error(414)
            return
        if not self.parse_request():
            return
        handler = StoreServerHandler(self.rfile, self.wfile, self.get_stderr(), self.get_environ())
        handler.request_handler = self
        handler.run(self.server.get_app())


def prepare_storage() -> None:
    """Create the tables (no migrations: startup stays fast) and the media folder."""
    from storeapp.models import Fruit, Upload

    existing = set(connection.introspection.table_names())
    with connection.schema_editor() as editor:
        for model in (Fruit, Upload):
            if model._meta.db_table not in existing:
                editor.create_model(model)
    connection.close()
    (settings.MEDIA_ROOT / "images").mkdir(parents=True, exist_ok=True)


def warm_up() -> None:
    """Import what the first request would: the URLs, views, DRF, serializer.

    Otherwise the first answer after the URL is printed takes a few hundred
    ms, long enough to trip a client's short timeout in the fault tests.
    """
    from storeapp.serializers import FruitSerializer

    get_resolver().resolve("/fruits/")
    _ = FruitSerializer().fields  # built lazily otherwise


def make_server(host: str, port: int) -> basehttp.ThreadedWSGIServer:
    """A bound, not yet serving, threaded server for the configured app."""
    ipv6 = ":" in host
    server = basehttp.ThreadedWSGIServer((host, port), StoreRequestHandler, ipv6=ipv6)
    server.set_app(get_wsgi_application())
    return server


def url_of(server: basehttp.ThreadedWSGIServer) -> str:
    host, port = server.server_address[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"
