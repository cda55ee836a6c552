"""`twin serve`'s file server over real sockets: types, HEAD, 304, ranges, gzip, every traversal
form refused, 405, loopback only, a burst of concurrent clients, and the real command ended by
SIGINT."""

from __future__ import annotations

import gzip
import http.client
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from twin.viewer.server import FileServer, serve

TWIN = Path(sys.executable).parent / "twin"
SECRET = b"TOP-SECRET-" + os.urandom(16).hex().encode()


@pytest.fixture
def site(tmp_path: Path) -> dict[str, bytes | Path]:
    """A tiles folder (tileset.json, a .glb, a .b3dm, a symlink out), a viewer folder, a secret."""
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_bytes(SECRET)
    tiles = tmp_path / "tiles"
    (tiles / "content").mkdir(parents=True)
    rng = random.Random(7)
    tileset = ('{"asset": {"version": "1.1"}, "root": {"children": [' +
               ", ".join(f'{{"uri": "content/{i}.glb"}}' for i in range(300)) + "]}}")  # fmt: skip
    (tiles / "tileset.json").write_text(tileset, encoding="utf-8")
    glb = b"glTF" + bytes(rng.randrange(256) for _ in range(50_000))
    (tiles / "content" / "0.glb").write_bytes(glb)
    (tiles / "content" / "0.b3dm").write_bytes(b"b3dm" + glb[:3000])
    (tiles / "content" / "t.ktx2").write_bytes(b"\xabKTX 20\xbb" + glb[:100])
    (tiles / "link").symlink_to(secret)
    (tiles / "outdir").symlink_to(tmp_path / "etc", target_is_directory=True)
    (tiles / ".hidden").write_bytes(SECRET)
    viewer = tmp_path / "viewer"
    viewer.mkdir()
    (viewer / "index.html").write_text("<!doctype html><title>twin</title>" * 20, "utf-8")
    (viewer / "app.js").write_text("console.log('twin');\n" * 100, "utf-8")
    return {"tiles": tiles, "viewer": viewer, "glb": glb, "tileset": tileset.encode()}


@pytest.fixture
def server(site):
    srv = serve({"tiles": site["tiles"], "viewer": site["viewer"]})
    try:
        yield srv
    finally:
        srv.close()


def request(srv: FileServer, path: str, method: str = "GET", headers: dict | None = None,
            body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    """One raw request (the path sent as it is, not normalised) -> (status, headers, body)."""
    host, port = srv.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("path", "ctype"),
    [
        ("/tiles/tileset.json", "application/json"),
        ("/tiles/content/0.glb", "model/gltf-binary"),
        ("/tiles/content/0.b3dm", "application/octet-stream"),
        ("/tiles/content/t.ktx2", "image/ktx2"),
        ("/viewer/app.js", "text/javascript; charset=utf-8"),
        ("/viewer/index.html", "text/html; charset=utf-8"),
    ],
)
def test_files_come_with_their_type_and_bytes(server, site, path: str, ctype: str):
    status, headers, body = request(server, path)
    assert status == 200
    assert headers["content-type"] == ctype
    assert (
        body
        == (site["tiles"] if path.startswith("/tiles") else site["viewer"])
        .joinpath(*path.split("/")[2:])
        .read_bytes()
    )
    assert int(headers["content-length"]) == len(body)


def test_head_sends_the_headers_and_no_body(server, site):
    status, headers, body = request(server, "/tiles/content/0.glb", "HEAD")
    assert status == 200 and body == b""
    assert int(headers["content-length"]) == len(site["glb"])
    assert headers["etag"] and headers["last-modified"]


def test_root_redirects_to_the_viewer_and_folders_are_not_listed(server, site):
    status, headers, _ = request(server, "/")
    assert status == 302 and headers["location"] == "/viewer/index.html"
    assert request(server, "/tiles/content/")[0] == 404
    assert request(server, "/tiles/")[0] == 404
    status, _, body = request(server, "/viewer/")  # the viewer root serves its index.html
    assert status == 200 and body == (site["viewer"] / "index.html").read_bytes()
    assert request(server, "/nothing/x")[0] == 404


def test_root_redirect_keeps_the_query_string(server):
    query = "scene=/scenes/nordwall/nordwall.glb&scene=%2Fscenes%2Fb.glb&vehicles=/scenes/v.json"
    status, headers, _ = request(server, "/?" + query)
    assert status == 302 and headers["location"] == "/viewer/index.html?" + query
    status, headers, _ = request(server, "/?")  # an empty query adds no '?'
    assert status == 302 and headers["location"] == "/viewer/index.html"


def test_etag_revalidates_with_304(server):
    _, headers, _ = request(server, "/tiles/content/0.glb")
    status, again, body = request(
        server, "/tiles/content/0.glb", headers={"If-None-Match": headers["etag"]}
    )
    assert status == 304 and body == b""
    assert again["etag"] == headers["etag"]
    status, _, body = request(server, "/tiles/content/0.glb", headers={"If-None-Match": '"other"'})
    assert status == 200 and body


@pytest.mark.parametrize(("spec", "first", "last"),
                         [("bytes=100-199", 100, 199), ("bytes=49990-", 49990, 50003),
                          ("bytes=-10", 49994, 50003), ("bytes=0-999999", 0, 50003)])  # fmt: skip
def test_a_range_gets_206_and_exactly_those_bytes(server, site, spec: str, first: int, last: int):
    glb = site["glb"]
    assert len(glb) == 50004
    status, headers, body = request(server, "/tiles/content/0.glb", headers={"Range": spec})
    assert status == 206
    assert body == glb[first : last + 1]
    assert headers["content-range"] == f"bytes {first}-{last}/{len(glb)}"


@pytest.mark.parametrize("spec", ["bytes=50004-", "bytes=90000-90010", "bytes=-0"])
def test_an_unsatisfiable_range_gets_416(server, site, spec: str):
    status, headers, body = request(server, "/tiles/content/0.glb", headers={"Range": spec})
    assert status == 416
    assert headers["content-range"] == f"bytes */{len(site['glb'])}"
    assert site["glb"][:4] not in body


def test_gzip_for_text_only_and_never_with_a_range(server, site):
    status, headers, body = request(server, "/tiles/tileset.json",
                                    headers={"Accept-Encoding": "gzip, br"})  # fmt: skip
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert headers["vary"] == "Accept-Encoding"
    assert len(body) < len(site["tileset"])
    assert gzip.decompress(body) == site["tileset"]
    status, headers, body = request(server, "/tiles/content/0.glb",
                                    headers={"Accept-Encoding": "gzip"})  # fmt: skip
    assert status == 200 and "content-encoding" not in headers and body == site["glb"]
    status, headers, body = request(server, "/tiles/tileset.json",
                                    headers={"Accept-Encoding": "gzip", "Range": "bytes=0-9"})  # fmt: skip
    assert status == 206 and "content-encoding" not in headers and body == site["tileset"][:10]
    status, headers, body = request(server, "/tiles/tileset.json",
                                    headers={"Accept-Encoding": "gzip;q=0"})  # fmt: skip
    assert "content-encoding" not in headers and body == site["tileset"]


@pytest.mark.parametrize(
    "path",
    [
        "/tiles/../secret",
        "/tiles/%2e%2e/secret",
        "/tiles/%2E%2E/secret",
        "/tiles/%2e%2e%2fsecret",
        "/tiles/..%2fsecret",
        "/tiles/..%5csecret",
        "/tiles/..\\secret",
        "/tiles/content/../../secret",
        "/tiles/./../secret",
        "//etc/passwd",
        "/tiles//etc/passwd",
        "/tiles/%2fetc/passwd",
        "/tiles/link",
        "/tiles/outdir/passwd",
        "/tiles/.hidden",
        "/tiles/tileset.json%00.png",
        "/tiles/%ff%fe",
        "/../secret",
        "/%2e%2e/secret",
    ],
)
def test_no_path_leaves_the_root(server, path: str):
    for method in ("GET", "HEAD"):
        status, _, body = request(server, path, method)
        assert status in (400, 403, 404), (path, status)
        assert SECRET not in body


def test_other_methods_get_405(server):
    for method in ("POST", "PUT", "DELETE"):
        status, headers, _ = request(server, "/tiles/tileset.json", method, body=b"x=1")
        assert status == 405 and headers["allow"] == "GET, HEAD"


def test_binds_loopback_by_default(site):
    with FileServer({"tiles": site["tiles"]}) as srv:
        assert srv.server_address[0] == "127.0.0.1"
        assert srv.url.startswith("http://127.0.0.1:")


@pytest.mark.parametrize("verbose", [False, True])
def test_one_log_line_per_request_only_when_verbose(site, capsys, verbose: bool):
    with serve({"tiles": site["tiles"]}, verbose=verbose) as srv:
        request(srv, "/tiles/tileset.json")
        request(srv, "/tiles/missing.json")
    out = capsys.readouterr()
    assert out.out == ""
    lines = out.err.splitlines()
    if verbose:
        assert len(lines) == 2
        assert "/tiles/tileset.json" in lines[0] and " 200 " in lines[0]
        assert "/tiles/missing.json" in lines[1] and " 404 " in lines[1]
    else:
        assert lines == []


def test_many_concurrent_clients_are_answered_200_or_503(site):
    srv = serve({"tiles": site["tiles"]}, max_connections=8)
    expected = {"/tiles/tileset.json": site["tileset"], "/tiles/content/0.glb": site["glb"]}
    results: list[tuple[int, bool]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        try:
            for j in range(10):
                path = list(expected)[(i + j) % 2]
                status, _, body = request(srv, path)
                with lock:
                    results.append((status, status != 200 or body == expected[path]))
        except BaseException as exc:  # collected: a failing client must fail the test
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(64)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)
        assert not any(t.is_alive() for t in threads), "a client hung"
    finally:
        srv.close()
    assert not errors, errors[:3]
    assert len(results) == 640
    assert {s for s, _ in results} <= {200, 503}
    assert all(ok for _, ok in results)
    assert sum(s == 200 for s, _ in results) > 0
    assert sum(s == 503 for s, _ in results) == srv.refused  # the bound, not errors, said 503


def test_silent_clients_are_dropped_after_the_timeout(site):
    """Connections that send nothing hold every slot only until their timeout closes them."""
    srv = serve({"tiles": site["tiles"]}, max_connections=2, timeout=0.5)
    silent = [socket.create_connection(srv.server_address[:2], timeout=10) for _ in range(2)]
    try:
        for s in silent:  # wait until the server has closed both: recv sees end of stream
            s.settimeout(10)
            assert s.recv(1024) == b""
        status, _, body = request(srv, "/tiles/content/0.glb")
        assert status == 200 and body == site["glb"]
    finally:
        for s in silent:
            s.close()
        srv.close()


@pytest.mark.parametrize(("sig", "code", "said"), [(signal.SIGINT, 130, "twin: interrupted"),
                                                   (signal.SIGTERM, 143, "twin: terminated")])  # fmt: skip
def test_the_command_serves_until_a_signal(site, tmp_path: Path, sig, code: int, said: str):
    env = {k: v for k, v in os.environ.items() if k != "TWIN_DEBUG"}
    proc = subprocess.Popen(
        [str(TWIN), "serve", "--port", "0", "--root", f"tiles={site['tiles']}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path, env=env,
    )  # fmt: skip
    try:
        line = proc.stdout.readline().decode()
        assert line.startswith("twin serve: http://127.0.0.1:"), (line, proc.poll())
        assert "tiles=" in line
        url = line.split()[2]
        with urllib.request.urlopen(url + "tiles/content/0.glb", timeout=10) as r:
            assert r.status == 200 and r.read() == site["glb"]
        proc.send_signal(sig)
        assert proc.wait(timeout=10) == code
        assert proc.stderr.read().decode().strip() == said
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()
