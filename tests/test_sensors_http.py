"""The HTTP webhook: token required (401), body limit (413), answers after the commit, loopback only."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest

from twin.sensors.devices import load_catalogue
from twin.sensors.ingest import Ingestor
from twin.sensors.profiles import load_profiles
from twin.sensors.store import SQLiteStore
from twin.sensors.synthetic import write_synthetic_catalogue
from twin.sensors.uplink import render_chirpstack
from twin.sensors.webhook import WebhookServer

TOKEN = "s3cret-token"
T0 = 1717200000.0


@pytest.fixture
def server(tmp_path: Path):
    wells, stations = write_synthetic_catalogue(tmp_path / "cat", n_wells=2, n_stations=1)
    catalogue = load_catalogue(wells, stations, None)
    store = SQLiteStore(tmp_path / "s.sqlite")
    ingestor = Ingestor(store, catalogue, load_profiles(), now=lambda: T0).start()
    srv = WebhookServer(ingestor, TOKEN, max_body=4096).start()
    yield srv, store, catalogue.of_kind("wells")[0]
    srv.stop()
    ingestor.close()
    store.close()


def post(srv: WebhookServer, body: bytes, headers: dict[str, str], path: str = "/uplink"):
    host, port = srv.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        return r.status, (json.loads(data) if data else None)
    finally:
        conn.close()


def uplink(well, f_cnt: int = 1) -> bytes:
    return json.dumps(render_chirpstack(dev_eui=well.dev_eui, device_id=well.id, f_cnt=f_cnt,
                                        f_port=1, time=T0 - 30,
                                        payload=bytes.fromhex("16C104540DCC"),
                                        decoded=None)).encode()  # fmt: skip


def test_listens_on_loopback_only(server):
    srv, _, _ = server
    assert srv.server_address[0] == "127.0.0.1"


def test_refuses_requests_without_the_right_token(server):
    srv, store, well = server
    assert post(srv, uplink(well), {})[0] == 401
    assert post(srv, uplink(well), {"Authorization": "Bearer wrong"})[0] == 401
    assert post(srv, uplink(well), {"X-API-Key": "s3cret-toke"})[0] == 401
    assert store.status()["messages"] == 0


def test_refuses_bodies_over_the_limit(server):
    srv, store, well = server
    big = b'{"pad": "' + b"x" * 5000 + b'"}'
    status, reply = post(srv, big, {"Authorization": f"Bearer {TOKEN}"})
    assert status == 413 and "4096" in reply["error"]
    assert store.status()["messages"] == 0


def test_stores_and_reports_outcomes(server):
    srv, store, well = server
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    assert post(srv, uplink(well, 1), auth) == (
        200,
        {"status": "stored", "reason": "", "detail": ""},
    )
    status, reply = post(srv, uplink(well, 1), {"X-API-Key": TOKEN})
    assert status == 200 and reply["status"] == "duplicate"
    status, reply = post(srv, b"{broken", auth)
    assert status == 200 and (reply["status"], reply["reason"]) == ("quarantined", "invalid_json")
    status, reply = post(srv, uplink(well, 2), auth, path="/uplink?event=join")
    assert reply["reason"] == "not_uplink"
    s = store.status()
    assert (s["messages"], s["readings"], s["quarantined"]) == (4, 3, 2)
