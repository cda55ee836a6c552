"""Nothing lost, ever: 1 000 good simulated uplinks with 20 poison messages of each kind (NaN,
Infinity and 1e400 decoded values of a parking sensor, a decoded field and an rssi of 400 digits,
nesting 100 000 deep, bytes that are not UTF-8) at seeded positions, from a file, over the webhook
and over MQTT: every good one stored, every poison one quarantined with its reason and its bytes,
nothing else changed, a second delivery only duplicates, and the service still answering. And a
batch the store refuses takes no good message with it."""

from __future__ import annotations

import base64
import http.client
import json
import random
import sqlite3
import subprocess
from pathlib import Path

import pytest
from sensor_helpers import (
    KREFELD_PARKING,
    POISON,
    message_counts,
    poisoned_stream,
    store_rows,
    wait_until,
    write_lines,
)
from sensor_service import TWIN, Service, clean_env

from twin.sensors.broker import LocalBroker, free_port
from twin.sensors.devices import load_catalogue
from twin.sensors.ingest import Ingestor
from twin.sensors.mqtt import MqttPublisher
from twin.sensors.profiles import load_profiles
from twin.sensors.simulate import simulate, stream
from twin.sensors.store import SQLiteStore
from twin.sensors.synthetic import write_synthetic_catalogue
from twin.sensors.validate import REASONS

PROFILES = load_profiles()
START = 1717221600.0  # 2024-06-01T06:00:00Z
GOOD = 1000
TOKEN = "poison-test-token"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """The catalogue, 1 000 good messages (in a clean file and a reference store), the stream
    with poison, the reason of each poison message and a few good messages kept back."""
    root = tmp_path_factory.mktemp("poison")
    wells, stations = write_synthetic_catalogue(root / "cat", n_wells=15, n_stations=3)
    cat = ["--wells", str(wells), "--stations", str(stations)]
    catalogue = load_catalogue(wells, stations, KREFELD_PARKING)
    events = simulate(catalogue, PROFILES, start=START, minutes=80, seed=5, clean=True)
    items = [(topic, body) for _, topic, body in stream(events, "tts")]
    assert len(items) > GOOD + 200
    good, spare = items[:GOOD], items[GOOD:]
    messages, expected = poisoned_stream(good, spare[10:])
    assert len(expected) == 20 * len(POISON) and all(r in REASONS for r in expected.values())
    clean = write_lines(root / "clean.jsonl", good)
    ref = root / "ref.sqlite"
    r = subprocess.run([str(TWIN), "sensors", "ingest", "--file", str(clean), "--store", str(ref),
                        *cat], capture_output=True, text=True, env=clean_env(), timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    reference = store_rows(ref)
    assert len(reference["uplinks"]) == GOOD and not reference["quarantine"]
    return {"cat": cat, "catalogue": catalogue, "messages": messages, "expected": expected,
            "reference": reference, "fresh": spare[:10], "good": good}  # fmt: skip


def assert_ingested(store: Path, data: dict, fresh: bytes | None = None) -> dict:
    """The store holds the 1 000 good messages exactly as the clean reference (and the ``fresh``
    message sent after them), and each poison message in quarantine with its reason; returns its
    rows."""
    rows = store_rows(store)
    ref = data["reference"]
    if fresh is not None:
        up = json.loads(fresh)["end_device_ids"]
        dev, device = up["dev_eui"], up["device_id"].upper()
        extra = [u for u in rows["uplinks"] if u not in set(ref["uplinks"])]
        assert len(extra) == 1 and extra[0][0] == dev
        rows["uplinks"].remove(extra[0])
        t = extra[0][2]
        rows["readings"] = [r for r in rows["readings"] if (r[0], r[2]) != (device, t)]
        rows["raw"] -= 1
    assert rows["uplinks"] == ref["uplinks"]
    assert rows["readings"] == ref["readings"]
    got = {body: reason for body, (reason, _) in rows["quarantine"].items()}
    assert got == data["expected"]  # every poison message, its bytes as sent, its reason
    assert all(detail for _, detail in rows["quarantine"].values())
    assert rows["raw"] == GOOD + len(data["expected"])
    return rows


def ingest_file(path: Path, store: Path, cat: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(TWIN), "sensors", "ingest", "--file", str(path), "--store",
                           str(store), *cat], capture_output=True, text=True, env=clean_env(),
                          timeout=300)  # fmt: skip


def test_poison_lines_in_a_file(tmp_path: Path, data):
    path = write_lines(tmp_path / "poisoned.jsonl", data["messages"])
    store = tmp_path / "s.sqlite"
    n = len(data["messages"])
    r = ingest_file(path, store, data["cat"])
    assert r.returncode == 0, r.stderr
    assert f"{n} received, {GOOD} stored" in r.stdout
    assert f"{n - GOOD} quarantined" in r.stdout
    rows = assert_ingested(store, data)
    r = ingest_file(path, store, data["cat"])  # again: only duplicates
    assert r.returncode == 0, r.stderr
    assert f"{n} received, 0 stored (0 readings), {n} duplicates, 0 quarantined" in r.stdout
    assert store_rows(store) == rows
    listed = subprocess.run([str(TWIN), "sensors", "quarantine", "--store", str(store), "--json",
                             "--limit", "100000"], capture_output=True, text=True, env=clean_env(),
                            timeout=300)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    shown = [json.loads(line) for line in listed.stdout.splitlines()]
    bodies = {e["body"].encode() if "body" in e else base64.b64decode(e["body_base64"])
              for e in shown}  # fmt: skip
    assert bodies == set(data["expected"])  # the listing gives every poison message's exact bytes


def test_a_store_that_fails_names_the_file_and_lines(tmp_path: Path, data):
    path = write_lines(tmp_path / "m.jsonl", data["good"][:10])
    store = tmp_path / "s.sqlite"
    SQLiteStore(store).close()
    with sqlite3.connect(store) as c:  # a store that refuses every message
        c.execute("CREATE TRIGGER refuse BEFORE INSERT ON raw_messages "
                  "BEGIN SELECT RAISE(ABORT, 'store refuses'); END")  # fmt: skip
    r = ingest_file(path, store, data["cat"])
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0, r.stderr
    assert "m.jsonl: lines 1-10 not stored" in r.stderr and "store refuses" in r.stderr


def _post(port: int, body: bytes) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", "/uplink", body=body, headers={"Authorization": f"Bearer {TOKEN}"})
        r = conn.getresponse()
        data = r.read()
        return r.status, json.loads(data) if data else {}
    finally:
        conn.close()


def test_poison_over_the_webhook(tmp_path: Path, data):
    store, port = tmp_path / "w.sqlite", free_port()
    args = ["sensors", "ingest", "--http", str(port), "--store", str(store),
            "--max-body", "400000", *data["cat"]]  # fmt: skip
    expected = data["expected"]
    with Service(*args, env=clean_env(TWIN_SENSORS_TOKEN=TOKEN)) as svc:
        svc.wait_line("webhook listening")
        wrong = []
        for _, body in data["messages"]:
            status, reply = _post(port, body)
            want = ("quarantined", expected[body]) if body in expected else ("stored", "")
            if status != 200 or (reply["status"], reply["reason"]) != want:
                wrong.append((status, reply, want))
        assert not wrong, wrong[:5]
        again = random.Random(3).sample(data["messages"], 40)  # sent again: duplicates
        assert {_post(port, body)[1]["status"] for _, body in again} == {"duplicate"}
        assert _post(port, data["fresh"][0][1]) == (200, {"status": "stored", "reason": "",
                                                          "detail": ""})  # fmt: skip
        assert svc.proc.poll() is None  # still up
        assert svc.stop() == 0, svc.lines
    assert_ingested(store, data, fresh=data["fresh"][0][1])


def test_poison_over_mqtt(tmp_path: Path, data):
    store = tmp_path / "m.sqlite"
    n = len(data["messages"])
    with LocalBroker(workdir=tmp_path / "broker") as broker:  # Mosquitto where installed
        args = ["sensors", "ingest", "--mqtt", broker.url, "--store", str(store), *data["cat"]]
        with Service(*args) as svc:
            svc.wait_line("subscribed")
            with MqttPublisher(broker.url, client_id="poison-publisher") as pub:
                for topic, body in data["messages"]:
                    pub.publish(topic, body)
                assert pub.wait(120)
                assert wait_until(lambda: message_counts(store)[1] >= n, 180, every=0.5)
                for topic, body in random.Random(3).sample(data["messages"], 40):
                    pub.publish(topic, body)  # again: duplicates, nothing changes
                topic, body = data["fresh"][0]
                pub.publish(topic, body)  # the service still takes messages
                assert pub.wait(60)

                def all_in() -> bool:
                    received, distinct = message_counts(store)
                    return received >= n + 41 and distinct >= n + 1

                assert wait_until(all_in, 60)
            assert svc.proc.poll() is None  # still up
            assert svc.stop() == 0, svc.lines
    assert_ingested(store, data, fresh=data["fresh"][0][1])


@pytest.mark.parametrize("worker", ["thread", "process"])
def test_a_refused_message_takes_no_good_one_with_it(tmp_path: Path, data, worker):
    """The store (a trigger, as a constraint would) refuses the readings of one device: its
    messages are quarantined as 'internal' with the store's error, all others of the batch are
    stored, and the ingest takes messages afterwards."""
    store = SQLiteStore(tmp_path / "s.sqlite")
    victim = data["good"][5][1]
    dev = json.loads(victim)["end_device_ids"]["device_id"]
    with sqlite3.connect(store.path) as c:
        c.execute(f"CREATE TRIGGER refuse BEFORE INSERT ON readings WHEN NEW.device_id = "
                  f"'{dev.upper()}' BEGIN SELECT RAISE(ABORT, 'device refused'); END")  # fmt: skip
    ingestor = Ingestor(store, data["catalogue"], PROFILES, worker=worker)
    first, later = [b for _, b in data["good"][:300]], [b for _, b in data["good"][300:400]]
    refused = {b for b in first + later if json.loads(b)["end_device_ids"]["device_id"] == dev}
    assert victim in refused and len(refused) < 20
    try:
        ingestor.start()
        outcomes = ingestor.ingest(first) + ingestor.ingest(later)
        assert (ingestor.worker_pid is not None) == (worker == "process")
    finally:
        ingestor.close()
    got = {b: (o.status, o.reason) for b, o in zip(first + later, outcomes, strict=True)}
    assert {b for b, s in got.items() if s == ("quarantined", "internal")} == refused
    assert all(got[b] == ("stored", "") for b in first + later if b not in refused)
    rows = store_rows(store.path)
    store.close()
    assert all("device refused" in rows["quarantine"][b][1] for b in refused)
    assert len(rows["uplinks"]) == 400 - len(refused) and rows["raw"] == 400
