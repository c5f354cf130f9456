"""A loopback redirect listener, like the one msal and azure-identity open for the sign-in."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import pytest


@dataclass
class Arrival:
    method: str
    path: str
    fields: dict[str, str]


@dataclass
class Loopback:
    server: HTTPServer
    arrivals: queue.Queue[Arrival] = field(default_factory=queue.Queue)
    thread: threading.Thread | None = None

    @property
    def redirect_uri(self) -> str:
        return f"http://localhost:{self.server.server_port}"

    def serve(self) -> None:
        """Start answering (the socket already listens from construction on)."""
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def wait(self, timeout: float = 10.0) -> Arrival:
        return self.arrivals.get(timeout=timeout)


def _handler(arrivals: queue.Queue[Arrival]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = 5  # browsers open idle preconnections; don't wait on them forever

        def _record(self, body: str) -> None:
            parts = urlsplit(self.path)
            fields = dict(parse_qsl(parts.query)) | dict(parse_qsl(body))
            if parts.path != "/favicon.ico":
                arrivals.put(Arrival(self.command, parts.path, fields))
            page = b"<html><body><h1>Signed in</h1>You can close this window.</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def do_GET(self) -> None:  # noqa: N802
            self._record("")

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            self._record(self.rfile.read(length).decode())

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    return Handler


@pytest.fixture
def loopback_socket() -> Iterator[Loopback]:
    """A listening loopback socket that does not answer until ``.serve()``."""
    arrivals: queue.Queue[Arrival] = queue.Queue()
    # Threaded: an idle browser preconnection must not block the next request or shutdown().
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(arrivals))
    server.daemon_threads = True
    server.block_on_close = False
    listener = Loopback(server, arrivals)
    try:
        yield listener
    finally:
        if listener.thread is not None:
            server.shutdown()
        server.server_close()


@pytest.fixture
def loopback(loopback_socket: Loopback) -> Loopback:
    """A loopback listener that records what arrives at the app's redirect URI."""
    loopback_socket.serve()
    return loopback_socket
