"""HTTP webhook endpoint for network-server integrations (TTS webhooks, ChirpStack HTTP integration).

POST a message to any path. The request needs the token in ``Authorization: Bearer TOKEN`` or
``X-API-Key: TOKEN`` (401 otherwise) and a body framed by exactly one ``Content-Length`` of ASCII
digits or by ``Transfer-Encoding: chunked`` (400/411 otherwise, 413 over the limit). The answer
comes after the message is committed: 200 with the outcome as JSON (a quarantined message is also
answered 200: it is kept, and a retry would not change it); 503 if the store failed, so the server
retries. A body that does not arrive whole is neither stored nor counted. Binds 127.0.0.1 unless
told otherwise.

A connection may wait ``idle_timeout`` seconds for its next request, and a request must arrive
whole (head and body) within ``read_timeout`` seconds of its first byte; both bound what a slow or
silent client can hold. At most ``max_connections`` are served at once: one more is answered 503
at once and closed, not queued behind the others.
"""

from __future__ import annotations

import contextlib
import hmac
import io
import json
import math
import os
import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from twin.errors import ConfigError
from twin.sensors.ingest import Ingestor
from twin.sensors.validate import Outcome

DEFAULT_MAX_BODY = 64 * 1024  # an uplink message is a few kB; 64 kB leaves room for metadata
DEFAULT_READ_TIMEOUT = 10.0  # seconds from a request's first byte until its body is read
DEFAULT_IDLE_TIMEOUT = 15.0  # seconds a connection may wait for its (next) request
DEFAULT_MAX_CONNECTIONS = 256  # served at once; each holds one thread
BACKLOG = 1024  # connections the kernel queues before accept (capped by net.core.somaxconn)
_MAX_DIGITS = 18  # a Content-Length longer than this is over any body limit
_MAX_LINE = 4096  # a chunk-size line or a trailer line
_MAX_TRAILERS = 100
_BUSY = json.dumps({"error": "too many connections; retry"}).encode()
_BUSY_REPLY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    b"Connection: close\r\nContent-Length: " + str(len(_BUSY)).encode() + b"\r\n\r\n" + _BUSY
)


class _Refused(Exception):
    """A request that is answered with an error status and then the connection closed."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Reader:
    """The connection's input, read against a deadline.

    The socket timeout alone bounds each ``recv``, so a client sending a byte now and then could
    hold a connection for ever; here every read waits at most until ``deadline``. ``peek`` does at
    most one ``recv`` (io.BufferedReader's promise), which is what makes the deadline exact.
    """

    def __init__(self, raw: io.BufferedReader, sock: socket.socket) -> None:
        self.raw, self.sock = raw, sock
        self.deadline = math.inf
        self.last_line = b""

    def peek(self) -> bytes:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request did not arrive in time")
        self.sock.settimeout(left)
        return self.raw.peek(1)

    def readline(self, limit: int = -1) -> bytes:
        out = bytearray()
        while limit < 0 or len(out) < limit:
            chunk = self.peek()
            if not chunk:
                break
            room = len(chunk) if limit < 0 else min(len(chunk), limit - len(out))
            end = chunk.find(b"\n", 0, room)
            out += self.raw.read(room if end < 0 else end + 1)
            if end >= 0:
                break
        self.last_line = bytes(out)
        return self.last_line

    def read(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = self.peek()
            if not chunk:
                break
            out += self.raw.read(min(len(chunk), n - len(out)))
        return bytes(out)

    def close(self) -> None:
        self.raw.close()


class _Handler(BaseHTTPRequestHandler):
    server: WebhookServer
    protocol_version = "HTTP/1.1"
    rfile: _Reader  # type: ignore[assignment]

    def log_message(self, format: str, *args: object) -> None:  # keep the console for live counts
        return None

    def setup(self) -> None:
        super().setup()
        self.rfile = _Reader(self.rfile, self.connection)  # type: ignore[arg-type]

    def handle_one_request(self) -> None:
        """Wait up to the idle timeout for a request, then give it the read timeout to arrive."""
        self.server._mark(self.connection, busy=False)
        self.rfile.deadline = time.monotonic() + self.server.idle_timeout
        try:
            first = self.rfile.peek()
        except OSError:  # timed out, reset, or shut down by stop()
            first = b""
        if not first or self.server.stopping:
            self.close_connection = True
            return
        self.server._mark(self.connection, busy=True)
        self.rfile.deadline = time.monotonic() + self.server.read_timeout
        super().handle_one_request()

    def _reply(self, code: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.connection.settimeout(self.server.read_timeout)  # a client that never reads
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if code >= 400:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:  # the client has gone: nothing to tell it
            self.close_connection = True
        if code >= 400:
            self._linger()

    def _linger(self) -> None:
        """Close gently after a refusal: input left unread would make the close a reset, which
        can destroy the reply before the client has read it. So: end our side, then read what
        the client still sends for a moment (bounded in time and size), and drop it."""
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_WR)
            self.rfile.deadline = time.monotonic() + min(1.0, self.server.read_timeout)
            for _ in range(16):
                if len(self.rfile.read(65536)) < 65536:
                    break

    def do_GET(self) -> None:
        if self.headers.get("Content-Length") or self.headers.get("Transfer-Encoding"):
            self.close_connection = True  # a body we do not read would be taken for a request
        if not self._authorized():
            return
        self._reply(200, {"counters": self.server.ingestor.counters.__dict__})

    def do_POST(self) -> None:
        if not self._authorized():
            return
        try:
            body = self._body()
        except _Refused as exc:
            self._reply(exc.code, {"error": str(exc)})
            return
        except TimeoutError:
            self._reply(408, {"error": f"request body not received within "
                                       f"{self.server.read_timeout:g} s"})  # fmt: skip
            return
        event = parse_qs(urlsplit(self.path).query).get("event", ["up"])[0]
        source = f"http:{self.client_address[0]}"
        if (
            event != "up"
        ):  # ChirpStack posts every event type to one URL, `?event=` tells them apart
            source += f" event={event}"
        done = threading.Event()
        result: list[Outcome] = []

        def callback(outcome: Outcome) -> None:
            result.append(outcome)
            done.set()

        try:
            self.server.ingestor.submit(body, source, callback)
        except Exception as exc:
            self._reply(503, {"error": str(exc)})
            return
        if not done.wait(self.server.commit_timeout):
            self._reply(503, {"error": "store did not commit in time; retry"})
            return
        o = result[0]
        self._reply(200, {"status": o.status, "reason": o.reason, "detail": o.detail})

    # -- framing ---------------------------------------------------------------------------------
    # http.server parses the request line and the headers but leaves the body to the handler and
    # does not check its framing; these checks follow RFC 9112 section 6, where an ambiguous
    # length is what request smuggling and stored garbage come from.

    def _body(self) -> bytes:
        """The request body, whole, or :class:`_Refused` (nothing is stored then)."""
        if self.rfile.last_line not in (b"\r\n", b"\n"):  # http.server takes end of input
            raise _Refused(400, "request head truncated")  # for the end of the head
        lengths = self.headers.get_all("Content-Length") or []
        codings = self.headers.get_all("Transfer-Encoding") or []
        if codings and lengths:
            raise _Refused(400, "Transfer-Encoding and Content-Length together")
        if codings:
            if len(codings) != 1 or codings[0].strip().lower() != "chunked":
                raise _Refused(400, "Transfer-Encoding: only 'chunked' is accepted")
            return self._chunked()
        if not lengths:
            raise _Refused(411, "Content-Length required")
        text = lengths[0].strip()
        if len(lengths) != 1 or not (text.isascii() and text.isdigit()):
            raise _Refused(400, "expected one Content-Length of ASCII digits")
        if len(text) > _MAX_DIGITS or int(text) > self.server.max_body:
            raise _Refused(413, f"body over {self.server.max_body} bytes")
        body = self.rfile.read(int(text))
        if len(body) < int(text):
            raise _Refused(400, f"body truncated: {len(body)} of {text} bytes")
        return body

    def _chunked(self) -> bytes:
        parts, total = [], 0
        while True:
            line = self._line("chunk size")
            size_text = line.split(b";", 1)[0].strip()  # chunk extensions are ignored
            if not size_text or len(size_text) > 8 or size_text.strip(b"0123456789abcdefABCDEF"):
                raise _Refused(400, "malformed chunk size")
            size = int(size_text, 16)
            if size == 0:
                break
            total += size
            if total > self.server.max_body:
                raise _Refused(413, f"body over {self.server.max_body} bytes")
            data = self.rfile.read(size + 2)
            if len(data) < size + 2:
                raise _Refused(400, "chunked body truncated")
            if data[-2:] != b"\r\n":
                raise _Refused(400, "chunk longer than its size")
            parts.append(data[:-2])
        for _ in range(_MAX_TRAILERS):  # trailer fields, read and ignored
            if not self._line("trailer"):
                return b"".join(parts)
        raise _Refused(400, "too many trailer fields")

    def _line(self, what: str) -> bytes:
        line = self.rfile.readline(_MAX_LINE + 1)
        if not line.endswith(b"\n"):
            raise _Refused(400, f"{what} line too long" if len(line) > _MAX_LINE else
                           "chunked body truncated")  # fmt: skip
        return line.rstrip(b"\r\n")

    def _authorized(self) -> bool:
        given = self.headers.get("X-API-Key") or ""
        auth = self.headers.get("Authorization") or ""
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if given and hmac.compare_digest(given.encode(), self.server.token.encode()):
            return True
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Bearer realm="twin-sensors"')
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.flush()
        self._linger()
        return False


class WebhookServer(ThreadingHTTPServer):
    """The webhook endpoint; ``start()`` serves in a thread, ``stop()`` shuts it down.

    One daemon thread per connection, at most ``max_connections`` of them; the listen backlog
    (``BACKLOG``) lets a burst of connections wait for ``accept`` instead of being reset.
    Raises :class:`ConfigError` when it cannot listen (port in use, not a port, unknown host).
    """

    daemon_threads = True
    request_queue_size = BACKLOG

    def __init__(
        self,
        ingestor: Ingestor,
        token: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_body: int = DEFAULT_MAX_BODY,
        commit_timeout: float = 30.0,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        if not token:
            raise ValueError("webhook token must not be empty")
        for name, value in [("read timeout", read_timeout), ("idle timeout", idle_timeout),
                            ("connection limit", max_connections)]:  # fmt: skip
            if not value > 0:
                raise ConfigError(f"webhook {name}: expected a positive number, got {value}")
        if not 0 <= port <= 65535:
            raise ConfigError(f"webhook port {port}: expected 0..65535 (0: any free port)")
        try:
            super().__init__((host, port), _Handler)
        except OSError as exc:
            why = exc.strerror or str(exc)
            raise ConfigError(f"webhook: cannot listen on {host}:{port}: {why}") from None
        self.ingestor = ingestor
        self.token = token
        self.max_body = int(max_body)
        self.commit_timeout = commit_timeout
        self.read_timeout = float(read_timeout)
        self.idle_timeout = float(idle_timeout)
        self.max_connections = int(max_connections)
        self.stopping = False
        self.refused = 0  # connections answered 503 because the limit was reached
        self._conns: dict[socket.socket, bool] = {}  # open connections: busy with a request?
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL the server listens on."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    @property
    def connections(self) -> int:
        """How many connections are open now."""
        with self._changed:
            return len(self._conns)

    def start(self) -> WebhookServer:
        """Serve requests in a background thread."""
        self._thread = threading.Thread(
            target=self.serve_forever, args=(0.05,), name="sensor-webhook", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, close idle connections, give requests in progress ``grace`` seconds to
        be answered (their messages are committed meanwhile), then close the rest."""
        self.stopping = True
        if self._thread is not None:
            self.shutdown()  # waits for serve_forever, so only when it runs
        self.server_close()
        with self._changed:
            for sock, busy in self._conns.items():
                if not busy:  # waiting for a request: wake it up to end
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RD)
            deadline = time.monotonic() + grace
            while self._conns and time.monotonic() < deadline:
                self._changed.wait(max(0.0, deadline - time.monotonic()))
            for sock in self._conns:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    # -- connections -------------------------------------------------------------------------------

    def process_request(self, request, client_address) -> None:  # type: ignore[override]
        """Serve the connection in a thread, or answer 503 at once when the limit is reached."""
        with self._changed:
            full = self.stopping or len(self._conns) >= self.max_connections
            if not full:
                self._conns[request] = False
        if not full:
            super().process_request(request, client_address)
            return
        self.refused += 1
        with contextlib.suppress(OSError):
            request.setblocking(False)  # a reply of 200 bytes fits any send buffer; never wait
            request.send(_BUSY_REPLY)
        self.shutdown_request(request)

    def shutdown_request(self, request) -> None:  # type: ignore[override]
        with self._changed:
            self._conns.pop(request, None)
            self._changed.notify_all()
        super().shutdown_request(request)

    def _mark(self, sock: socket.socket, busy: bool) -> None:
        with self._changed:
            if sock in self._conns:
                self._conns[sock] = busy

    def handle_error(self, request, client_address) -> None:  # type: ignore[override]
        """A client that resets or times out is no error of ours; anything else gets one line
        on stderr (the traceback with TWIN_DEBUG=1) and the service goes on."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return
        if os.environ.get("TWIN_DEBUG"):
            traceback.print_exc()
        print(f"twin: webhook: internal error on a request from {client_address[0]}: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)  # fmt: skip
