"""The ingest servers stay up and go down cleanly: startup errors end the command with one line;
slow clients, bad framing and connections over the limit are refused or timed out while valid
posts are still answered; 200 concurrent posts are all stored once; SIGTERM ends every process of
the service and leaves the store with everything that was acknowledged."""

from __future__ import annotations

import http.client
import json
import select
import signal
import socket
import sqlite3
import struct
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sensor_service import TWIN, Service, alive, children, clean_env

from twin.sensors.broker import free_port
from twin.sensors.devices import load_catalogue
from twin.sensors.ingest import Ingestor
from twin.sensors.profiles import load_profiles
from twin.sensors.store import SQLiteStore
from twin.sensors.synthetic import write_synthetic_catalogue
from twin.sensors.uplink import render_chirpstack
from twin.sensors.webhook import WebhookServer

TOKEN = "s3cret-token"
T0 = 1717200000.0
AUTH = f"Authorization: Bearer {TOKEN}\r\n"


# -- in-process webhook ----------------------------------------------------------------------------


@pytest.fixture
def webhook(tmp_path: Path):
    """Start a webhook with short timeouts; yields a function making one with other options."""
    wells, stations = write_synthetic_catalogue(tmp_path / "cat", n_wells=2, n_stations=1)
    catalogue = load_catalogue(wells, stations, None)
    store = SQLiteStore(tmp_path / "s.sqlite")
    ingestor = Ingestor(store, catalogue, load_profiles(), now=lambda: T0).start()
    servers: list[WebhookServer] = []

    def make(**options) -> WebhookServer:
        options = {"max_body": 4096, "read_timeout": 1.0, "idle_timeout": 1.0, **options}
        servers.append(WebhookServer(ingestor, TOKEN, **options).start())
        return servers[-1]

    make.store, make.ingestor, make.wells = store, ingestor, catalogue.of_kind("wells")
    yield make
    for srv in servers:
        srv.stop()
    ingestor.close()
    store.close()


def uplink(well, f_cnt: int, t: float = T0 - 30) -> bytes:
    return json.dumps(render_chirpstack(dev_eui=well.dev_eui, device_id=well.id, f_cnt=f_cnt,
                                        f_port=1, time=t, payload=bytes.fromhex("16C104540DCC"),
                                        decoded=None)).encode()  # fmt: skip


def post(url_or_srv, body: bytes, timeout: float = 60.0) -> tuple[int, dict]:
    """POST one message with the token; the status and the JSON reply."""
    if isinstance(url_or_srv, WebhookServer):
        host, port = url_or_srv.server_address[:2]
    else:
        host, port = url_or_srv
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("POST", "/uplink", body=body, headers={"Authorization": f"Bearer {TOKEN}"})
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"{}")
    finally:
        conn.close()


def connect(srv: WebhookServer) -> socket.socket:
    s = socket.create_connection(srv.server_address[:2], timeout=60)
    s.settimeout(60)
    return s


def read_all(s: socket.socket) -> bytes:
    """What the server sends until it closes the connection (a reset counts as closed)."""
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def status_of(reply: bytes) -> int | None:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else None


def wait_for(check, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def still_answers(make, srv: WebhookServer, f_cnt: int) -> None:
    """A valid post after the misbehaviour is stored, once."""
    code, reply = post(srv, uplink(make.wells[0], f_cnt))
    assert (code, reply["status"]) == (200, "stored")


def test_a_silent_connection_is_closed_after_the_idle_timeout(webhook):
    srv = webhook()
    with connect(srv) as s:
        assert read_all(s) == b""  # closed by the server, without a reply
    assert wait_for(lambda: srv.connections == 0)
    still_answers(webhook, srv, 1)


def test_half_a_header_is_timed_out(webhook):
    srv = webhook()
    with connect(srv) as s:
        s.sendall(b"POST /uplink HTTP/1.1\r\nHost: x\r\nContent-Le")
        assert read_all(s) == b""
    assert webhook.ingestor.counters.received == 0
    still_answers(webhook, srv, 1)


def test_a_trickling_client_is_cut_off_at_the_read_deadline(webhook):
    """One byte every 0.2 s keeps each recv short; the request's deadline still ends it."""
    srv = webhook()
    head = b"POST /uplink HTTP/1.1\r\n" + AUTH.encode() + b"X-Pad: " + b"a" * 1000
    closed = False
    deadline = time.monotonic() + 120  # 5 bytes a second: the head would take over 200 s
    with connect(srv) as s:
        for byte in head:
            try:
                s.send(bytes([byte]))
            except OSError:
                closed = True
                break
            if select.select([s], [], [], 0.2)[0]:
                closed = read_all(s) == b""  # closed, no reply
                break
            if time.monotonic() > deadline:
                break
    assert closed
    assert wait_for(lambda: srv.connections == 0)
    still_answers(webhook, srv, 1)


def test_a_slow_body_gets_408_and_is_not_stored(webhook):
    srv = webhook()
    body = uplink(webhook.wells[0], 1)
    with connect(srv) as s:
        s.sendall(f"POST /u HTTP/1.1\r\n{AUTH}Content-Length: {len(body)}\r\n\r\n".encode())
        s.sendall(body[:10])
        assert status_of(read_all(s)) == 408
    assert webhook.store.status()["messages"] == 0
    still_answers(webhook, srv, 1)


BAD_FRAMING = {
    "non-ASCII digits": ("Content-Length: \u0663\u0664\r\n".encode(), b"{}", 400),
    "superscript digit": (b"Content-Length: \xb2\r\n", b"{}", 400),  # str.isdigit says yes
    "5000 digits": (b"Content-Length: " + b"1" * 5000 + b"\r\n", b"{}", 413),
    "sign": (b"Content-Length: +2\r\n", b"{}", 400),
    "list": (b"Content-Length: 2, 2\r\n", b"{}", 400),
    "two different": (b"Content-Length: 2\r\nContent-Length: 3\r\n", b"{}", 400),
    "two equal": (b"Content-Length: 2\r\nContent-Length: 2\r\n", b"{}", 400),
    "none": (b"", b"{}", 411),
    "chunked and length": (
        b"Transfer-Encoding: chunked\r\nContent-Length: 7\r\n", b"2\r\n{}\r\n0\r\n\r\n", 400),
    "other coding": (b"Transfer-Encoding: gzip\r\n", b"{}", 400),
    "bad chunk size": (b"Transfer-Encoding: chunked\r\n", b"zz\r\n{}\r\n0\r\n\r\n", 400),
    "chunk longer than its size": (
        b"Transfer-Encoding: chunked\r\n", b"1\r\n{}\r\n0\r\n\r\n", 400),
    "chunks over the limit": (
        b"Transfer-Encoding: chunked\r\n", b"1000\r\n" + b"x" * 4096 + b"\r\n" + b"1\r\nx\r\n", 413),
    "chunked, truncated": (b"Transfer-Encoding: chunked\r\n", b"10\r\n{}", 400),
    "body truncated": (b"Content-Length: 500\r\n", b"{}", 400),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_FRAMING)
def test_bad_framing_is_refused_and_never_stored(webhook, case, capfd):
    headers, body, expected = BAD_FRAMING[case]
    srv = webhook()
    with connect(srv) as s:
        s.sendall(b"POST /uplink HTTP/1.1\r\nHost: x\r\n" + AUTH.encode() + headers + b"\r\n")
        s.sendall(body)
        s.shutdown(socket.SHUT_WR)  # what did not come by now never comes
        assert status_of(read_all(s)) == expected
    assert webhook.store.status()["messages"] == 0
    assert webhook.ingestor.counters.received == 0
    still_answers(webhook, srv, 1)
    assert "Traceback" not in capfd.readouterr().err


def test_a_truncated_head_is_not_taken_for_a_request(webhook):
    srv = webhook()
    with connect(srv) as s:
        s.sendall(b"POST /uplink HTTP/1.1\r\n" + AUTH.encode() + b"Content-Length: 0\r\n")
        s.shutdown(socket.SHUT_WR)
        assert status_of(read_all(s)) == 400
    assert webhook.ingestor.counters.received == 0


def test_clients_that_vanish_leave_no_traceback_and_no_duplicate(webhook, capfd):
    srv = webhook()
    body = uplink(webhook.wells[0], 1)
    for _ in range(3):  # half a body, then gone (the reply meets a closed socket)
        s = connect(srv)
        s.sendall(f"POST /u HTTP/1.1\r\n{AUTH}Content-Length: {len(body)}\r\n\r\n".encode())
        s.sendall(body[: len(body) // 2])
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # with linger 0: a reset
    assert wait_for(lambda: srv.connections == 0)
    still_answers(webhook, srv, 1)  # stored, not a duplicate of a half message
    s = webhook.store.status()
    assert (s["messages"], s["duplicates"]) == (1, 0)
    assert "Traceback" not in capfd.readouterr().err


def test_a_chunked_body_is_decoded(webhook):
    srv = webhook()
    body = uplink(webhook.wells[0], 1)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 50]), body[i:i + 50])
                      for i in range(0, len(body), 50))  # fmt: skip
    with connect(srv) as s:
        s.sendall(b"POST /uplink HTTP/1.1\r\n" + AUTH.encode() + b"Transfer-Encoding: chunked"
                  b"\r\nConnection: close\r\n\r\n" + chunks + b"0;ext=1\r\nX-Trailer: a\r\n\r\n")  # fmt: skip
        reply = read_all(s)
    assert status_of(reply) == 200 and b'"stored"' in reply
    with sqlite3.connect(webhook.store.path) as c:
        assert c.execute("SELECT body FROM raw_messages").fetchall() == [(body,)]


def test_connections_over_the_limit_are_refused_at_once(webhook):
    srv = webhook(max_connections=4, idle_timeout=60.0)
    held = [connect(srv) for _ in range(4)]
    try:
        assert wait_for(lambda: srv.connections == 4)
        with connect(srv) as extra:
            reply = read_all(extra)
        assert status_of(reply) == 503 and srv.refused == 1
    finally:
        for s in held:
            s.close()
    assert wait_for(lambda: srv.connections == 0)
    still_answers(webhook, srv, 1)


def test_200_concurrent_posts_are_all_stored_once(webhook):
    srv = webhook(read_timeout=60.0, idle_timeout=60.0)  # the default limit of 256 connections
    bodies = [uplink(webhook.wells[i % 2], 1 + i // 2) for i in range(200)]
    start = threading.Barrier(200, timeout=120)

    def one(body: bytes) -> tuple[int, str]:
        start.wait()
        code, reply = post(srv, body, timeout=120)
        return code, reply.get("status", "")

    with ThreadPoolExecutor(200) as pool:
        results = list(pool.map(one, bodies, timeout=300))
    assert results == [(200, "stored")] * 200
    s = webhook.store.status()
    assert (s["messages"], s["uplinks"], s["duplicates"]) == (200, 200, 0)


def test_stop_ends_idle_connections_and_works_before_start(webhook, tmp_path):
    srv = webhook(idle_timeout=600.0)
    held = connect(srv)
    try:
        assert wait_for(lambda: srv.connections == 1)
        srv.stop()
        assert srv.connections == 0
        assert read_all(held) == b""
    finally:
        held.close()
    unstarted = WebhookServer(webhook.ingestor, TOKEN)
    unstarted.stop()  # a server that never served (the command failed later) stops at once


# -- the command -----------------------------------------------------------------------------------


@pytest.fixture
def cat(tmp_path: Path) -> list[str]:
    wells, stations = write_synthetic_catalogue(tmp_path / "cat", n_wells=4, n_stations=1)
    return ["--wells", str(wells), "--stations", str(stations), "--no-parking"]


@pytest.fixture
def listening():
    """A port someone listens on and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def startup_cases(port_in_use: int) -> dict[str, tuple[list[str], str]]:
    return {
        "port in use": (["--http", str(port_in_use)], "Address already in use"),
        "port 99999": (["--http", "99999"], "0..65535"),
        "bad broker URL": (["--mqtt", "tcp://127.0.0.1:1883"], "mqtt://host"),
        "broker port 99999": (["--mqtt", "mqtt://127.0.0.1:99999"], "1..65535"),
        "nobody there": (["--mqtt", f"mqtt://127.0.0.1:{free_port()}"], "connection refused"),
        "unknown host": (["--mqtt", "mqtt://no-such-host.invalid"], "unknown host"),
        "silent broker": (
            ["--mqtt", f"mqtt://127.0.0.1:{port_in_use}", "--connect-timeout", "1"],
            "no answer",
        ),  # fmt: skip
    }


@pytest.mark.parametrize("case", list(startup_cases(0)))
def test_startup_errors_end_the_command_with_one_line(tmp_path: Path, cat, listening, case):
    args, expected = startup_cases(listening)[case]
    r = subprocess.run([str(TWIN), "sensors", "ingest", *args, "--store", tmp_path / "s.sqlite",
                        "--token", "t", *cat], capture_output=True, text=True, env=clean_env(),
                       timeout=120)  # fmt: skip
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("twin: error: ") and expected in lines[0], lines


def test_sigterm_ends_every_process_and_keeps_what_was_acknowledged(tmp_path: Path, cat):
    store, port = tmp_path / "w.sqlite", free_port()
    wells = load_catalogue(Path(cat[1]), Path(cat[3]), None).of_kind("wells")
    with Service("sensors", "ingest", "--http", port, "--store", store, "--token", TOKEN,
                 "--read-timeout", "30", *cat) as service:  # fmt: skip
        pid = int(service.wait_line("worker process").rsplit(" ", 1)[1])
        service.wait_line("webhook listening")
        family = set(children(service.proc.pid))
        assert pid in family  # the worker, and multiprocessing's resource tracker
        acked: list[tuple[str, int]] = []
        sent: list[tuple[str, int]] = []
        stop = threading.Event()

        def sender(well) -> None:  # posts until the service goes away
            n = 0
            while not stop.is_set():
                n += 1
                sent.append((well.dev_eui, n))
                try:
                    code, reply = post(("127.0.0.1", port), uplink(well, n, time.time() - 30))
                except (OSError, http.client.HTTPException):
                    return
                if code == 200 and reply["status"] == "stored":
                    acked.append((well.dev_eui, n))

        threads = [threading.Thread(target=sender, args=(w,)) for w in wells]
        for t in threads:
            t.start()
        try:
            assert wait_for(lambda: len(acked) >= 20, timeout=120)
            rc = service.stop(signal.SIGTERM)
        finally:
            stop.set()
            for t in threads:
                t.join(120)
    assert rc == 0, service.lines
    assert not alive(pid)  # the worker has been joined before the command ended
    assert wait_for(lambda: not [p for p in family if alive(p)])
    with sqlite3.connect(store) as c:
        assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = {(d, n) for d, n in c.execute("SELECT dev_eui, f_cnt FROM uplinks")}
    assert set(acked) <= stored <= set(sent)
    assert f"{len(stored)} stored" in service.out
