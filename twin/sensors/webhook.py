"""HTTP webhook endpoint for network-server integrations (TTS webhooks, ChirpStack HTTP integration).

POST a message to any path. The request needs the token in ``Authorization: Bearer TOKEN`` or
``X-API-Key: TOKEN`` (401 otherwise) and a Content-Length within the limit (411/413 otherwise).
The answer comes after the message is committed: 200 with the outcome as JSON (a quarantined
message is also answered 200: it is kept, and a retry would not change it); 503 if the store failed,
so the server retries. Binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from twin.sensors.ingest import Ingestor
from twin.sensors.validate import Outcome

DEFAULT_MAX_BODY = 64 * 1024  # an uplink message is a few kB; 64 kB leaves room for metadata


class _Handler(BaseHTTPRequestHandler):
    server: WebhookServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # keep the console for live counts
        return None

    def _reply(self, code: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if code >= 400:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if not self._authorized():
            return
        self._reply(200, {"counters": self.server.ingestor.counters.__dict__})

    def do_POST(self) -> None:
        if not self._authorized():
            return
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.isdigit():
            self._reply(411, {"error": "Content-Length required"})
            return
        length = int(length_text)
        if length > self.server.max_body:
            self._reply(413, {"error": f"body over {self.server.max_body} bytes"})
            return
        body = self.rfile.read(length)
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

    def _authorized(self) -> bool:
        given = self.headers.get("X-API-Key") or ""
        auth = self.headers.get("Authorization") or ""
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if given and hmac.compare_digest(given.encode(), self.server.token.encode()):
            return True
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Bearer realm="twin-sensors"')
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        return False


class WebhookServer(ThreadingHTTPServer):
    """The webhook endpoint; ``start()`` serves in a thread, ``stop()`` shuts it down."""

    daemon_threads = True

    def __init__(
        self,
        ingestor: Ingestor,
        token: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_body: int = DEFAULT_MAX_BODY,
        commit_timeout: float = 30.0,
    ) -> None:
        if not token:
            raise ValueError("webhook token must not be empty")
        super().__init__((host, port), _Handler)
        self.ingestor = ingestor
        self.token = token
        self.max_body = int(max_body)
        self.commit_timeout = commit_timeout
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL the server listens on."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def start(self) -> WebhookServer:
        """Serve requests in a background thread."""
        self._thread = threading.Thread(
            target=self.serve_forever, args=(0.05,), name="sensor-webhook", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(5)
