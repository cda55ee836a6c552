"""The local read-only file server of `twin serve`: named folders ("roots") at `/<root>/<path>`.

It is the stdlib `http.server` (a `ThreadingHTTPServer`): a read-only server of a few folders needs
GET and HEAD, a handful of headers (ETag, Range, gzip) and strict path checks, all of which fit in
one module, so no web framework and no extra dependency. `/` redirects to `/viewer/index.html`
(keeping the query string).

What it guarantees:
- no path leaves its root: a request path is split into segments before it is decoded; a segment
  that decodes to '', '.', '..', a name starting with '.', or holds '/', '\\' or NUL is refused,
  and the file found must resolve (symlinks followed) inside the root; directories are not listed;
- GET and HEAD only (405 otherwise); ETag and Last-Modified with 304; one byte range
  (`bytes=a-b`, `a-`, `-n`) answered 206, an unsatisfiable one 416; gzip for text-like types when
  the client accepts it (never with a range);
- at most `max_connections` connections at once (one more is answered 503 with Retry-After, not
  queued), each in a daemon thread with a socket timeout, so a silent client cannot hold it.
"""

from __future__ import annotations

import contextlib
import email.utils
import gzip
import mimetypes
import os
import re
import socket
import sys
import threading
import traceback
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from twin.errors import ConfigError

DEFAULT_MAX_CONNECTIONS = 64  # served at once; each holds one thread
DEFAULT_TIMEOUT = 15.0  # seconds a connection may be silent (waiting for a request or a send)
BACKLOG = 256  # connections the kernel queues until they are accepted
GZIP_MAX_BYTES = 64 * 1024 * 1024  # larger text files go out as they are (compressed in memory)
CHUNK = 1024 * 1024
ROOT_NAME = re.compile(r"[A-Za-z0-9_-]+")

_TEXT = "; charset=utf-8"
MIME_TYPES = {
    ".json": "application/json",
    ".geojson": "application/geo+json",
    ".map": "application/json",
    ".glb": "model/gltf-binary",
    ".gltf": "model/gltf+json",
    ".b3dm": "application/octet-stream",
    ".i3dm": "application/octet-stream",
    ".pnts": "application/octet-stream",
    ".cmpt": "application/octet-stream",
    ".subtree": "application/octet-stream",
    ".bin": "application/octet-stream",
    ".usdz": "model/vnd.usdz+zip",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".ktx2": "image/ktx2",
    ".ico": "image/x-icon",
    ".svg": "image/svg+xml",
    ".js": "text/javascript" + _TEXT,
    ".mjs": "text/javascript" + _TEXT,
    ".css": "text/css" + _TEXT,
    ".html": "text/html" + _TEXT,
    ".htm": "text/html" + _TEXT,
    ".txt": "text/plain" + _TEXT,
    ".xml": "application/xml",
    ".wasm": "application/wasm",
}
# Types worth compressing: text-like ones. Binary tiles, images and archives are left as they are.
COMPRESSIBLE = {
    "application/json",
    "application/geo+json",
    "model/gltf+json",
    "image/svg+xml",
    "application/xml",
    "text/javascript",
    "text/css",
    "text/html",
    "text/plain",
}
ALLOW = "GET, HEAD"


def mime_type(path: Path) -> str:
    """The Content-Type of a file, from its suffix (application/octet-stream when unknown)."""
    suffix = path.suffix.lower()
    if suffix in MIME_TYPES:
        return MIME_TYPES[suffix]
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def compressible(content_type: str) -> bool:
    """Whether a type is text-like, so gzip pays."""
    return content_type.split(";")[0].strip() in COMPRESSIBLE


def parse_range(header: str, size: int) -> tuple[int, int] | None | bool:
    """The inclusive (first, last) byte of one `bytes=` range of a file of `size` bytes; None
    when the header is not one well-formed byte range (it is then ignored); False when it is one
    but cannot be satisfied (416)."""
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not m or not (m[1] or m[2]):
        return None
    if not m[1]:  # suffix: the last n bytes
        n = int(m[2])
        if n == 0 or size == 0:
            return False
        return max(0, size - n), size - 1
    first = int(m[1])
    last = int(m[2]) if m[2] else None
    if last is not None and last < first:
        return None  # syntactically invalid: ignore the header (RFC 9110 14.1.1)
    if first >= size:
        return False
    return first, size - 1 if last is None else min(last, size - 1)


def accepts_gzip(header: str) -> bool:
    """Whether an Accept-Encoding header accepts gzip (by name or `*`, with a q above 0)."""
    found: dict[str, float] = {}
    for item in header.split(","):
        name, _, params = item.strip().partition(";")
        q = 1.0
        m = re.search(r"q\s*=\s*([0-9.]+)", params)
        if m:
            with contextlib.suppress(ValueError):
                q = float(m[1])
        found[name.strip().lower()] = q
    if "gzip" in found:
        return found["gzip"] > 0
    return found.get("*", 0.0) > 0


def _etag_tags(header: str) -> list[str]:
    """The entity tags of an If-None-Match header, weak prefixes removed (weak comparison)."""
    tags = []
    for t in header.split(","):
        t = t.strip()
        tags.append(t[2:] if t.startswith("W/") else t)
    return tags


class _Handler(BaseHTTPRequestHandler):
    server: FileServer
    protocol_version = "HTTP/1.1"  # keep-alive: a viewer fetches many tiles per connection
    server_version = "twin-serve"
    sys_version = ""

    def setup(self) -> None:
        self.timeout = self.server.timeout_s  # StreamRequestHandler sets it on the socket
        super().setup()

    # -- methods -------------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._serve(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(body=False)

    def _not_allowed(self) -> None:
        self.close_connection = True  # its body is not read; the connection cannot be reused
        self._reply(405, "method not allowed: only GET and HEAD", {"Allow": ALLOW})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _not_allowed

    # -- answering -----------------------------------------------------------------------------

    def _reply(self, code: int, text: str, headers: Mapping[str, str] | None = None,
               body: bool = True) -> None:  # fmt: skip
        """A short text/plain answer (errors, redirects)."""
        data = (text + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if body and getattr(self, "command", None) != "HEAD":
            self.wfile.write(data)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (bad request line, timeouts), as short text answers."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self._reply(code, message or HTTPStatus(code).phrase)

    def _serve(self, body: bool) -> None:
        found = self.server.locate(self.path)
        if isinstance(found, tuple):  # (status, text[, location])
            code, text, *location = found
            headers = {"Location": location[0]} if location else None
            self._reply(code, text, headers, body)
            return
        try:
            f = open(found, "rb")  # noqa: SIM115 (closed below, after the answer)
        except OSError:
            self._reply(404, "not found", body=body)
            return
        with f:
            self._send_file(f, found, body)

    def _send_file(self, f, path: Path, body: bool) -> None:
        st = os.fstat(f.fileno())
        size = st.st_size
        ctype = mime_type(path)
        etag = f'"{st.st_mtime_ns:x}-{size:x}"'
        gz_etag = etag[:-1] + '-gz"'
        headers = {
            "Content-Type": ctype,
            "Last-Modified": email.utils.formatdate(st.st_mtime, usegmt=True),
            "Accept-Ranges": "bytes",
            "Cache-Control": "no-cache",  # revalidate each time: the tiles may be rebuilt
            "X-Content-Type-Options": "nosniff",
        }
        text_like = compressible(ctype) and size <= GZIP_MAX_BYTES
        if text_like:
            headers["Vary"] = "Accept-Encoding"
        if self._not_modified(etag, gz_etag, st.st_mtime):
            headers["ETag"] = etag
            self._headers(304, headers)
            return
        rng_header = self.headers.get("Range")
        if rng_header is not None and not self._if_range(etag, st.st_mtime):
            rng_header = None
        rng = parse_range(rng_header, size) if rng_header is not None else None
        if rng is False:
            self._reply(416, "range not satisfiable",
                        {"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"}, body)  # fmt: skip
            return
        if isinstance(rng, tuple):
            first, last = rng
            headers["ETag"] = etag
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
            headers["Content-Length"] = str(last - first + 1)
            self._headers(206, headers)
            if body:
                self._copy(f, first, last - first + 1)
            return
        if (text_like and rng_header is None
                and accepts_gzip(self.headers.get("Accept-Encoding", ""))):  # fmt: skip
            data = gzip.compress(f.read(), compresslevel=6, mtime=0)
            headers["ETag"] = gz_etag
            headers["Content-Encoding"] = "gzip"
            headers["Content-Length"] = str(len(data))
            self._headers(200, headers)
            if body:
                self.wfile.write(data)
            return
        headers["ETag"] = etag
        headers["Content-Length"] = str(size)
        self._headers(200, headers)
        if body:
            self._copy(f, 0, size)

    def _headers(self, code: int, headers: Mapping[str, str]) -> None:
        self.send_response(code)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()

    def _copy(self, f, offset: int, count: int) -> None:
        """`count` bytes of `f` from `offset` onto the connection."""
        f.seek(offset)
        while count > 0:
            chunk = f.read(min(CHUNK, count))
            if not chunk:  # the file shrank meanwhile: the length sent is wrong, so close
                self.close_connection = True
                return
            self.wfile.write(chunk)
            count -= len(chunk)

    def _not_modified(self, etag: str, gz_etag: str, mtime: float) -> bool:
        inm = self.headers.get("If-None-Match")
        if inm is not None:
            tags = _etag_tags(inm)
            return "*" in tags or etag in tags or gz_etag in tags
        ims = self.headers.get("If-Modified-Since")
        if ims is not None:
            with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
                since = email.utils.parsedate_to_datetime(ims).timestamp()
                return int(mtime) <= since
        return False

    def _if_range(self, etag: str, mtime: float) -> bool:
        """Whether a Range applies under If-Range (no If-Range: it does)."""
        cond = self.headers.get("If-Range")
        if cond is None:
            return True
        cond = cond.strip()
        if cond.startswith('"') or cond.startswith("W/"):
            return cond == etag  # strong comparison
        with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
            return int(mtime) == int(email.utils.parsedate_to_datetime(cond).timestamp())
        return False

    # -- logging -------------------------------------------------------------------------------

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's signature)
        if self.server.verbose:
            print(f"twin serve: {self.client_address[0]} {format % args}", file=sys.stderr,
                  flush=True)  # fmt: skip


class FileServer(ThreadingHTTPServer):
    """Serves the folders of `roots` (name -> folder) read-only at `/<name>/<path>`.

    `start()` serves in a background thread and `close()` ends it (as used in-process and by
    tests); `twin serve` calls `serve_forever()` in its main thread instead. Raises
    :class:`ConfigError` for a bad root name or folder, or when it cannot listen.
    """

    daemon_threads = True
    request_queue_size = BACKLOG
    allow_reuse_address = True

    def __init__(
        self,
        roots: Mapping[str, Path],
        bind: str = "127.0.0.1",
        port: int = 0,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        timeout: float = DEFAULT_TIMEOUT,
        verbose: bool = False,
        index_roots: tuple[str, ...] = ("viewer",),
    ) -> None:
        self.roots: dict[str, Path] = {}
        for name, folder in roots.items():
            if not ROOT_NAME.fullmatch(name):
                raise ConfigError(f"root name {name!r}: expected letters, digits, '_' or '-'")
            folder = Path(folder)
            if not folder.is_dir():
                raise ConfigError(f"root {name}: {folder} is not a folder")
            self.roots[name] = folder.resolve()
        if not 0 <= port <= 65535:
            raise ConfigError(f"port {port}: expected 0..65535 (0: any free port)")
        if not max_connections > 0 or not timeout > 0:
            raise ConfigError("connection limit and timeout: expected positive numbers")
        self.max_connections = int(max_connections)
        self.timeout_s = float(timeout)
        self.verbose = verbose
        self.index_roots = index_roots
        self.refused = 0  # connections answered 503 because the limit was reached
        self._slots = threading.BoundedSemaphore(self.max_connections)
        self._thread: threading.Thread | None = None
        if ":" in bind:
            self.address_family = socket.AF_INET6
        try:
            super().__init__((bind, port), _Handler)
        except (OSError, OverflowError) as exc:
            why = getattr(exc, "strerror", None) or str(exc)
            raise ConfigError(f"twin serve: cannot listen on {bind}:{port}: {why}") from None

    @property
    def url(self) -> str:
        """The base URL it listens on, e.g. http://127.0.0.1:8000/."""
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}/"

    # -- paths ---------------------------------------------------------------------------------

    def locate(self, target: str) -> Path | tuple:
        """The file a request target names, or the answer instead: (status, text[, location])."""
        if "\x00" in target or "\\" in target:
            return 400, "bad path"
        split = urlsplit(target)
        path = split.path
        if path == "/":  # the viewer, with the query (e.g. ?scene=...) kept
            index = "/viewer/index.html" + (f"?{split.query}" if split.query else "")
            return 302, f"see {index}", index
        if not path.startswith("/") or path.startswith("//"):
            return 404, "not found"
        name, slash, rest = path[1:].partition("/")
        root = self.roots.get(name)
        if root is None:
            return 404, "not found"
        if not slash:
            return 301, f"see /{name}/", f"/{name}/"
        raw = rest.split("/")
        trailing = raw[-1] == ""
        if trailing:
            raw = raw[:-1]
        parts = []
        for seg in raw:
            try:
                part = unquote(seg, errors="strict") if "%" in seg else seg
            except UnicodeDecodeError:
                return 404, "not found"
            if (not part or part.startswith(".") or "/" in part or "\\" in part
                    or "\x00" in part):  # fmt: skip
                return 404, "not found"
            parts.append(part)
        try:
            found = root.joinpath(*parts).resolve(strict=True)
        except (OSError, RuntimeError, UnicodeError, ValueError):
            return 404, "not found"
        if not found.is_relative_to(root):  # a symlink out of the root
            return 403, "forbidden"
        if found.is_dir():
            if name not in self.index_roots:
                return 404, "not found"  # no listings
            if not trailing and parts:
                return 301, "see the folder", f"{path}/"
            found = found / "index.html"
        if not found.is_file():  # also an index.html that is a symlink out of the root
            return 404, "not found"
        if not found.resolve().is_relative_to(root):
            return 403, "forbidden"
        return found

    # -- connections ---------------------------------------------------------------------------

    def process_request(self, request, client_address) -> None:  # type: ignore[override]
        """Serve the connection in a thread, or answer 503 at once when all slots are taken."""
        if self._slots.acquire(blocking=False):
            try:
                super().process_request(request, client_address)
            except BaseException:
                self._slots.release()
                raise
            return
        self.refused += 1
        with contextlib.suppress(OSError):
            request.setblocking(False)  # a reply of 150 bytes fits any send buffer; never wait
            request.send(
                b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n"
                b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\n\r\nbusy\n"
            )
            request.recv(65536)  # the request that came with it: unread, closing would reset
        self.shutdown_request(request)

    def process_request_thread(self, request, client_address) -> None:  # type: ignore[override]
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address) -> None:  # type: ignore[override]
        """A client that resets or times out is no error of ours; anything else gets one line
        on stderr (the traceback with TWIN_DEBUG=1) and the server goes on."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return
        if os.environ.get("TWIN_DEBUG"):
            traceback.print_exc()
        print(f"twin serve: internal error on a request from {client_address[0]}: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)  # fmt: skip

    # -- in-process use ------------------------------------------------------------------------

    def start(self) -> FileServer:
        """Serve in a background (daemon) thread."""
        self._thread = threading.Thread(
            target=self.serve_forever, args=(0.05,), name="twin-serve", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving (when started) and close the listening socket."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join(5)
            self._thread = None
        self.server_close()

    def __enter__(self) -> FileServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(roots: Mapping[str, Path], bind: str = "127.0.0.1", port: int = 0,
          **options) -> FileServer:  # fmt: skip
    """A started :class:`FileServer` of `roots` (name -> folder); `.url` to reach it, `.close()`
    to end it (or use it as a context manager)."""
    return FileServer(roots, bind, port, **options).start()
