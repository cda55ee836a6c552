"""The ingest's worker process: the same outcomes and rows as the in-process writer, callbacks only
after the commit and in submission order, nothing acknowledged by a worker that died; and the parts
made faster for it (whole-payload decoding, the uplink-key query, field checks)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import signal
import sqlite3
import struct
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from twin.errors import ConfigError, DataError
from twin.sensors.broker import LocalBroker
from twin.sensors.devices import load_catalogue
from twin.sensors.ingest import Ingestor
from twin.sensors.mqtt import MqttIngest, MqttPublisher, Receipt
from twin.sensors.profiles import load_profiles
from twin.sensors.store import _SCHEMA, SQLiteStore, _known_uplinks_query
from twin.sensors.synthetic import write_synthetic_catalogue
from twin.sensors.uplink import MessageRejected, parse_uplink, render_chirpstack, render_tts
from twin.sensors.validate import LATE, OUT_OF_ORDER

PROFILES = load_profiles()
REPO = Path(__file__).resolve().parents[1]
GOOD = bytes.fromhex("16C104540DCC")  # level 5.825 m, 11.08 degC, 3.532 V


@pytest.fixture
def catalogue(tmp_path: Path):
    wells, stations = write_synthetic_catalogue(tmp_path / "cat", n_wells=3, n_stations=1)
    return load_catalogue(wells, stations, None)


def _tts(well, f_cnt: int, t: float, payload: bytes = GOOD, **kw) -> bytes:
    msg = render_tts(dev_eui=kw.pop("dev_eui", well.dev_eui), device_id=well.id, f_cnt=f_cnt,
                     f_port=1, time=t, payload=payload, decoded=None, **kw)  # fmt: skip
    return json.dumps(msg).encode()


def _mixed_stream(catalogue) -> list[bytes]:
    """Good uplinks of both servers and every kind of trouble, timed against the real clock."""
    a, b = catalogue.of_kind("wells")[:2]
    now = time.time()
    bodies = [_tts(a, n, now - 600 + n) for n in range(1, 21)]
    bodies.append(json.dumps(render_chirpstack(dev_eui=b.dev_eui, device_id=b.id, f_cnt=5,
                                               f_port=1, time=now - 300, payload=GOOD,
                                               decoded=None)).encode())  # fmt: skip
    bodies += [
        bodies[2],  # an identical redelivery
        _tts(a, 4, now - 596, rssi=-117.0),  # the same frame with other bytes
        _tts(b, 3, now - 400),  # below the highest stored frame counter: out of order
        _tts(b, 6, now - 2 * 3600),  # received two hours ago: late
        b"{not json",
        _tts(a, 30, now - 60, dev_eui="DEADBEEFDEADBEEF"),
        _tts(a, 31, now - 60, payload=GOOD[:-1]),
    ]
    return bodies


def _rows(path: Path) -> dict[str, list]:
    """The store's content without arrival times and row ids."""
    conn = sqlite3.connect(path)
    try:
        return {
            "uplinks": conn.execute(
                "SELECT dev_eui, f_cnt, time, f_port, rssi, flags FROM uplinks ORDER BY 1, 2"
            ).fetchall(),
            "readings": conn.execute(
                "SELECT device_id, quantity, time, value, flags FROM readings ORDER BY 1, 2, 3"
            ).fetchall(),
            "raw": conn.execute(
                "SELECT sha, status, receipts FROM raw_messages ORDER BY sha"
            ).fetchall(),
            "quarantine": conn.execute(
                "SELECT sha, reason FROM quarantine ORDER BY sha, reason"
            ).fetchall(),
        }
    finally:
        conn.close()


def _submit_all(ingestor: Ingestor, bodies: list[bytes], timeout: float = 30.0) -> list:
    got: list = []
    done = threading.Event()

    def keep(i):
        def callback(outcome):
            got.append((i, outcome))
            if len(got) == len(bodies):
                done.set()

        return callback

    for i, body in enumerate(bodies):
        ingestor.submit(body, "test", keep(i))
    assert done.wait(timeout), f"{len(got)} of {len(bodies)} callbacks"
    return got


def test_auto_picks_the_worker_process_for_an_sqlite_store_on_the_system_clock(
    tmp_path: Path, catalogue
):
    with SQLiteStore(tmp_path / "s.sqlite") as store:
        assert Ingestor(store, catalogue, PROFILES).worker == "process"
        assert Ingestor(store, catalogue, PROFILES, now=time.time).worker == "thread"

        class Wrapped:  # any other Store: the worker process could not open it
            def __getattr__(self, name):
                return getattr(store, name)

        assert Ingestor(Wrapped(), catalogue, PROFILES).worker == "thread"
        with pytest.raises(ConfigError, match="needs an SQLiteStore"):
            Ingestor(Wrapped(), catalogue, PROFILES, worker="process")
        with pytest.raises(ConfigError, match="expected one of auto, process, thread"):
            Ingestor(store, catalogue, PROFILES, worker="threads")
        clocked = Ingestor(store, catalogue, PROFILES, now=lambda: 0.0, worker="process")
        with pytest.raises(ConfigError, match="cannot start the ingest worker process"):
            clocked.start()  # a lambda cannot be sent to another process
        assert clocked.worker_pid is None


def test_worker_process_stores_what_the_thread_stores(tmp_path: Path, catalogue):
    bodies = _mixed_stream(catalogue)
    results = {}
    for worker in ("thread", "process"):
        path = tmp_path / f"{worker}.sqlite"
        with SQLiteStore(path) as store:
            ingestor = Ingestor(store, catalogue, PROFILES, worker=worker).start()
            try:
                got = _submit_all(ingestor, bodies)
            finally:
                ingestor.close()
        assert [i for i, _ in got] == list(range(len(bodies)))  # callbacks in submission order
        results[worker] = ([(o.status, o.reason) for _, o in got], _rows(path))
    outcomes, rows = results["process"]
    assert results["thread"] == results["process"]
    assert outcomes[20:] == [("stored", ""), ("duplicate", "duplicate"),
                             ("quarantined", "duplicate"), ("stored", ""), ("stored", ""),
                             ("quarantined", "invalid_json"), ("quarantined", "unknown_device"),
                             ("quarantined", "decode")]  # fmt: skip
    flags = {(dev, fcnt): f for dev, fcnt, _, _, _, f in rows["uplinks"]}
    b = catalogue.of_kind("wells")[1]
    assert flags[(b.dev_eui, 3)] == OUT_OF_ORDER and flags[(b.dev_eui, 6)] == LATE
    assert len(rows["uplinks"]) == 23 and len(rows["readings"]) == 23 * 3


def test_callbacks_run_after_the_commit(tmp_path: Path, catalogue):
    """Each callback (an MQTT acknowledgement) finds its message in the store, seen from another
    connection: committed, not merely written."""
    path = tmp_path / "s.sqlite"
    bodies = _mixed_stream(catalogue)
    seen: list[bool] = []
    done = threading.Event()
    with SQLiteStore(path) as store:
        ingestor = Ingestor(store, catalogue, PROFILES, worker="process").start()
        try:

            def check(body):
                def callback(outcome):
                    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                    sha = hashlib.sha256(body).digest()
                    row = conn.execute("SELECT 1 FROM raw_messages WHERE sha = ?", (sha,))
                    seen.append(row.fetchone() is not None)
                    conn.close()
                    if len(seen) == len(bodies):
                        done.set()

                return callback

            for body in bodies:
                ingestor.submit(body, "test", check(body))
            assert done.wait(30)
        finally:
            ingestor.close()
    assert seen == [True] * len(bodies)


def test_a_worker_that_dies_acknowledges_nothing(tmp_path: Path, catalogue):
    path = tmp_path / "s.sqlite"
    a = catalogue.of_kind("wells")[0]
    bodies = [_tts(a, n, time.time() - 60 + n) for n in range(5)]
    called: list = []
    with SQLiteStore(path) as store:
        ingestor = Ingestor(store, catalogue, PROFILES, worker="process").start()
        blocker = sqlite3.connect(path, timeout=0)
        blocker.execute("BEGIN IMMEDIATE")  # the worker's write now waits for this lock
        try:
            for body in bodies:
                ingestor.submit(body, "test", called.append)
            time.sleep(1.0)
            assert called == []  # written maybe, committed not: nothing acknowledged
            os.kill(ingestor.worker_pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while ingestor.error is None and time.monotonic() < deadline:
                time.sleep(0.02)
            assert isinstance(ingestor.error, DataError)
            with pytest.raises(DataError, match="sensor ingest stopped"):
                ingestor.submit(bodies[0], "test", called.append)
        finally:
            blocker.rollback()
            blocker.close()
            started = time.monotonic()
            ingestor.close()
        assert time.monotonic() - started < 10
        assert called == [] and store.status()["messages"] == 0


def test_worker_ignores_interrupts_and_ingest_goes_through_it(tmp_path: Path, catalogue):
    """Ctrl-C reaches the whole process group; the worker leaves it to the parent, which still
    writes what is queued. A synchronous ingest while the worker runs goes through it, and the
    in-process writer afterwards knows the frame counters it stored."""
    a = catalogue.of_kind("wells")[0]
    now = time.time()
    with SQLiteStore(tmp_path / "s.sqlite") as store:
        ingestor = Ingestor(store, catalogue, PROFILES, worker="process").start()
        try:
            os.kill(ingestor.worker_pid, signal.SIGINT)
            time.sleep(0.3)
            out = ingestor.ingest([_tts(a, n, now - 60 + n) for n in range(10, 15)])
            assert [o.status for o in out] == ["stored"] * 5
            assert ingestor.counters.stored == 5
        finally:
            ingestor.close()
        assert ingestor.worker_pid is None
        late = ingestor.ingest([_tts(a, 3, now - 30)])  # now in this process
        assert [o.status for o in late] == ["stored"]
        flags = store._conn.execute(
            "SELECT flags FROM uplinks WHERE dev_eui = ? AND f_cnt = 3", (a.dev_eui,)
        ).fetchone()[0]
        assert flags == OUT_OF_ORDER


def test_a_worker_that_cannot_start_is_an_error_not_a_hang(tmp_path: Path):
    """A program without a ``__main__`` guard fails again in the worker, which spawn starts by
    importing it; start() must say so, also with a catalogue larger than a pipe's buffer."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        textwrap.dedent(f"""
        import os, sys
        from pathlib import Path
        if os.environ.get("TWIN_TEST_WORKER_CHILD"):
            raise SystemExit("this program has no __main__ guard")
        os.environ["TWIN_TEST_WORKER_CHILD"] = "1"
        sys.path.insert(0, {str(REPO)!r})
        from twin.errors import DataError
        from twin.sensors.devices import load_catalogue
        from twin.sensors.ingest import Ingestor
        from twin.sensors.profiles import load_profiles
        from twin.sensors.store import SQLiteStore
        from twin.sensors.synthetic import write_synthetic_catalogue
        folder = Path({str(tmp_path)!r})
        wells, stations = write_synthetic_catalogue(folder / "cat", n_wells=600, n_stations=40)
        store = SQLiteStore(folder / "s.sqlite")
        ingestor = Ingestor(store, load_catalogue(wells, stations, None), load_profiles())
        try:
            ingestor.start()
        except DataError as exc:
            print("DataError:", exc)
        """)
    )
    env = {k: v for k, v in os.environ.items() if k != "TWIN_TEST_WORKER_CHILD"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, env=env, cwd=tmp_path)  # fmt: skip
    assert "the ingest worker process did not start" in done.stdout, done.stderr[-2000:]


def test_an_interrupt_while_the_worker_starts_leaves_no_worker(
    tmp_path: Path, catalogue, monkeypatch
):
    """Ctrl-C (or the run layer's SIGTERM) between the worker's start and its hand-over must not
    leave it waiting on the pipe: multiprocessing would then wait for it at exit, for ever."""
    import multiprocessing

    started = []
    handshake = Ingestor._handshake

    def interrupted(self, proc, ours, path):
        handshake(self, proc, ours, path)  # the worker is up and waiting for work
        started.append(proc)
        raise KeyboardInterrupt

    monkeypatch.setattr(Ingestor, "_handshake", interrupted)
    with SQLiteStore(tmp_path / "s.sqlite") as store:
        ingestor = Ingestor(store, catalogue, PROFILES, worker="process")
        with pytest.raises(KeyboardInterrupt):
            ingestor.start()
        (proc,) = started
        assert not proc.is_alive() and proc not in multiprocessing.active_children()
        ingestor.close()  # nothing left to close: returns at once


@pytest.mark.parametrize("worker", ["process", "thread"])
def test_mqtt_stream_through_either_writer(tmp_path: Path, catalogue, worker):
    """Over a real broker: every message stored once, and ``on_commit`` gets per message a
    Receipt with the body as published."""
    a, b = catalogue.of_kind("wells")[:2]
    now = time.time()
    items = [(f"v3/krefeld-twin@ttn/devices/{w.id}/up", _tts(w, n, now - 600 + n))
             for n in range(60) for w in (a, b)]  # fmt: skip
    receipts: list = []
    with LocalBroker("auto", workdir=tmp_path / "broker") as broker:
        store = SQLiteStore(tmp_path / "s.sqlite")
        ingestor = Ingestor(
            store, catalogue, PROFILES, worker=worker,
            on_commit=lambda t, outcomes, tags: receipts.extend(tags),
        ).start()  # fmt: skip
        source = MqttIngest(broker.url, ingestor, client_id=f"ingest-{worker}").start()
        try:
            assert source.wait_connected(10)
            with MqttPublisher(broker.url) as pub:
                for topic, body in items:
                    pub.publish(topic, body)
                assert pub.wait(30)
            deadline = time.monotonic() + 30
            while ingestor.counters.received < len(items) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            ingestor.close()
            source.stop()
        assert store.status()["uplinks"] == len(items)
        store.close()
    assert all(isinstance(r, Receipt) for r in receipts)
    assert sorted(r.payload for r in receipts) == sorted(body for _, body in items)


# -- the faster parts -------------------------------------------------------------------------


def test_known_uplinks_searches_the_primary_key(tmp_path: Path):
    conn = sqlite3.connect(":memory:")
    conn.executescript(_SCHEMA)
    plan = " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + _known_uplinks_query(3),
                                                 ["A", 1, "B", 2, "C", 3]))  # fmt: skip
    assert "USING PRIMARY KEY" in plan and "SCAN u" not in plan, plan
    with SQLiteStore(tmp_path / "s.sqlite") as store:
        rng = np.random.default_rng(4)
        stored = {(f"{d:016X}", int(f)) for d in range(5) for f in rng.choice(100, 30, False)}
        store._conn.executemany(
            "INSERT INTO uplinks VALUES (?, ?, 0, 1, NULL, NULL, x'00', 0)", sorted(stored)
        )
        asked = [(f"{d:016X}", f) for d in range(7) for f in range(0, 100, 3)]  # > one chunk
        assert store.known_uplinks(asked) == stored & set(asked)


def _random_payload(layout, rng) -> tuple[bytes, dict[str, float]]:
    """Random bytes for each field the layout sends (flagged fields only where the flag bits
    written so far say so), with the field values read back with int.from_bytes: an independent
    reading of the profile's layout."""
    payload = b""
    values: dict[str, float] = {}
    for f in layout.fields:
        if f.flag is not None and not (int(values[f.flag[0]]) >> f.flag[1]) & 1:
            continue
        chunk = bytes(rng.integers(0, 256, struct.calcsize(">" + f.code), dtype=np.uint8))
        raw = int.from_bytes(chunk, "big", signed=f.code.islower())
        values[f.name] = raw * f.scale + f.offset
        payload += chunk
    return payload, values


def test_payload_decoding_matches_a_field_by_field_reference():
    rng = np.random.default_rng(11)
    checked = 0
    for profile in PROFILES.profiles.values():
        for layout in profile.ports.values():
            for _ in range(50):
                payload, expected = _random_payload(layout, rng)
                assert layout.unpack(payload) == pytest.approx(expected, rel=0, abs=1e-12)
                checked += 1
            if all(f.flag is None for f in layout.fields):
                # the one-call path must still reject a wrong length with the field-wise message
                n = sum(struct.calcsize(">" + f.code) for f in layout.fields)
                with pytest.raises(DataError, match=f"payload has {n + 1} bytes, layout uses {n}"):
                    layout.unpack(bytes(n + 1))
                with pytest.raises(DataError, match="ends before field"):
                    layout.unpack(bytes(n - 1))
    assert checked >= 200


def test_profiles_pickle_after_use():
    """The worker process gets the profiles pickled, after this process has decoded with them
    (which caches formats on the layouts)."""
    layout = PROFILES.profiles["groundwater-logger"].layout(1)
    before = layout.unpack(GOOD)
    copy = pickle.loads(pickle.dumps(PROFILES))
    assert copy.profiles["groundwater-logger"].layout(1).unpack(GOOD) == before


def test_schema_errors_name_the_field():
    base = render_tts(dev_eui="0011223344000001", device_id="x", f_cnt=1, f_port=1,
                      time=1717200000.0, payload=GOOD, decoded=None)  # fmt: skip

    def rejected(msg) -> str:
        with pytest.raises(MessageRejected) as info:
            parse_uplink(msg)
        assert info.value.reason == "schema"
        return info.value.detail

    msg = json.loads(json.dumps(base))
    msg["end_device_ids"]["dev_eui"] = 17
    assert rejected(msg) == "field 'end_device_ids.dev_eui' must be str, got 17"
    msg = json.loads(json.dumps(base))
    msg["uplink_message"] = []
    assert rejected(msg) == "field 'uplink_message' must be dict, got []"
    msg = json.loads(json.dumps(base))
    msg["end_device_ids"] = "0011223344000001"
    assert rejected(msg) == "field 'end_device_ids.dev_eui' is missing"
    msg = json.loads(json.dumps(base))
    del msg["uplink_message"]["received_at"]  # the top-level reception time stands in
    assert parse_uplink(msg).time == pytest.approx(1717200000.0, abs=1e-6)
    del msg["received_at"]
    assert rejected(msg) == "field 'received_at' is missing"
    cs = render_chirpstack(dev_eui="0011223344000001", device_id="x", f_cnt=1, f_port=1,
                           time=1717200000.0, payload=GOOD, decoded=None)  # fmt: skip
    cs["time"] = None
    assert rejected(cs) == "field 'time' must be str, got None"
