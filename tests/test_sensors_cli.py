"""`twin sensors ...` as a user runs it: simulate (reproducible in both formats), ingest from a file,
a webhook and a broker, replay, status, quarantine and the SensorThings export."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from sensor_service import TWIN, Service, alive, clean_env

from twin.sensors.broker import LocalBroker, free_port
from twin.sensors.synthetic import write_synthetic_catalogue

START = "2024-06-01T06:00:00Z"


def twin(
    *args: str | Path, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run([str(TWIN), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env=clean_env(), timeout=timeout)  # fmt: skip


@pytest.fixture
def cat(tmp_path: Path) -> list[str]:
    wells, stations = write_synthetic_catalogue(tmp_path / "cat", n_wells=15, n_stations=3)
    return ["--wells", str(wells), "--stations", str(stations)]


def readings(store: Path) -> list[tuple]:
    with sqlite3.connect(store) as c:
        return c.execute(
            "SELECT device_id, quantity, time, value FROM readings ORDER BY device_id, quantity, time"
        ).fetchall()


def status(store: Path) -> dict:
    r = twin("sensors", "status", "--store", store, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_simulator_is_reproducible_in_both_formats(tmp_path: Path, cat):
    sim = ["sensors", "simulate", "--minutes", "60", "--start", START, *cat]
    files = {}
    for name, fmt, seed in [
        ("a", "tts", 7),
        ("b", "tts", 7),
        ("c", "chirpstack", 7),
        ("d", "tts", 8),
    ]:
        files[name] = tmp_path / f"{name}.jsonl"
        r = twin(*sim, "--out", files[name], "--format", fmt, "--seed", str(seed), "--clean")
        assert r.returncode == 0, r.stderr
        assert "uplinks" in r.stdout
    assert files["a"].read_bytes() == files["b"].read_bytes()
    first = json.loads(files["c"].read_text().splitlines()[0])
    assert "deviceInfo" in first and "data" in first
    assert files["a"].read_bytes() != files["d"].read_bytes()  # another seed, another stream
    got = {}
    for name in ("a", "c"):
        store = tmp_path / f"{name}.sqlite"
        r = twin("sensors", "ingest", "--file", files[name], "--store", store, *cat)
        assert r.returncode == 0, r.stderr
        got[name] = readings(store)
    assert len(got["a"]) > 300
    assert got["a"] == got["c"]  # same seed, other server format: the same readings


def test_ingest_status_and_quarantine_of_a_noisy_stream(tmp_path: Path, cat):
    stream = tmp_path / "noisy.jsonl"
    r = twin("sensors", "simulate", "--out", stream, "--minutes", "240", "--seed", "1",
             "--start", START, *cat)  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = stream.read_text().splitlines()
    store = tmp_path / "s.sqlite"
    r = twin("sensors", "ingest", "--file", stream, "--store", store, *cat)
    assert r.returncode == 0, r.stderr
    assert f"{len(lines)} received" in r.stdout
    s = status(store)
    for key in (
        "messages",
        "readings",
        "quarantined",
        "quarantine_reasons",
        "duplicates",
        "devices",
    ):
        assert key in s
    assert s["messages"] == len(lines)
    assert s["quarantined"] > 0 and s["quarantined"] == sum(s["quarantine_reasons"].values())
    assert s["messages"] == s["uplinks"] + s["quarantined"]  # nothing dropped
    assert s["devices"] == 15 + 3 + 50
    r = twin("sensors", "quarantine", "--store", store, "--json", "--limit", "1000")
    entries = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(entries) == s["quarantined"]
    assert all(e["body"] in lines for e in entries)
    text = twin("sensors", "status", "--store", store)
    assert text.returncode == 0 and "Quarantined" in text.stdout


def test_webhook_ingest_with_replay(tmp_path: Path, cat):
    stream = tmp_path / "s.jsonl"
    twin("sensors", "simulate", "--out", stream, "--minutes", "30", "--seed", "3", "--clean",
         "--format", "chirpstack", "--no-parking", *cat)  # fmt: skip
    n = len(stream.read_text().splitlines())
    store, port = tmp_path / "w.sqlite", free_port()
    with Service("sensors", "ingest", "--http", port, "--store", store, "--idle-exit", "1",
                 "--no-parking", *cat, env=clean_env(TWIN_SENSORS_TOKEN="tok")) as service:  # fmt: skip
        service.wait_line("webhook listening")
        r = twin("sensors", "replay", stream, "--http", f"http://127.0.0.1:{port}/uplink",
                 "--token", "tok", "--speed", "0")  # fmt: skip
        assert r.returncode == 0, r.stderr
        counts = json.loads(r.stdout)
        assert counts == {"sent": n, "http_200": n}
        rc = service.stop(signal.SIGINT)  # usually --idle-exit has ended it already
    assert rc == 0, service.lines
    assert f"{n} received, {n} stored" in service.out
    assert status(store)["readings"] > 0


def test_mqtt_ingest_with_replay(tmp_path: Path, cat):
    stream = tmp_path / "m.jsonl"
    twin("sensors", "simulate", "--out", stream, "--minutes", "30", "--seed", "4", "--clean",
         "--no-parking", *cat)  # fmt: skip
    n = len(stream.read_text().splitlines())
    store = tmp_path / "m.sqlite"
    with (
        LocalBroker() as broker,
        Service("sensors", "ingest", "--mqtt", broker.url, "--store", store, "--no-parking",
                *cat) as service,
    ):  # fmt: skip
        service.wait_line("subscribed")
        worker = int(service.wait_line("worker process").rsplit(" ", 1)[1])
        r = twin("sensors", "replay", stream, "--mqtt", broker.url, "--speed", "0")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["sent"] == n
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and status(store)["messages"] < n:
            time.sleep(0.2)
        rc = service.stop(signal.SIGTERM)
    assert rc == 0, service.lines
    assert not alive(worker)
    s = status(store)
    assert (s["messages"], s["uplinks"], s["quarantined"]) == (n, n, 0)


def test_frost_export(tmp_path: Path, cat):
    stream, store, out = tmp_path / "f.jsonl", tmp_path / "f.sqlite", tmp_path / "sta.json"
    twin("sensors", "simulate", "--out", stream, "--minutes", "60", "--clean", "--start", START,
         "--no-parking", *cat)  # fmt: skip
    twin("sensors", "ingest", "--file", stream, "--store", store, "--no-parking", *cat)
    r = twin("sensors", "export", "--store", store, "--frost", out)
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert len(doc["Things"]) == 18
    well = next(t for t in doc["Things"] if t["@iot.id"] == "GWM-000")
    lon, lat = well["Locations"][0]["location"]["coordinates"]
    assert 6.4 < lon < 6.8 and 51.2 < lat < 51.5  # Krefeld
    ids = {d["@iot.id"] for d in well["Datastreams"]}
    assert "GWM-000:groundwater_head" in ids
    head = next(d for d in well["Datastreams"] if d["@iot.id"] == "GWM-000:groundwater_head")
    assert head["unitOfMeasurement"]["symbol"] == "m"
    n_obs = sum(len(o["dataArray"]) for o in doc["CreateObservations"])
    assert n_obs == status(store)["readings"]
    assert doc["CreateObservations"][0]["components"] == [
        "phenomenonTime",
        "result",
        "resultQuality",
    ]


def test_user_errors_are_one_line(tmp_path: Path, cat):
    r = twin(
        "sensors",
        "ingest",
        "--file",
        tmp_path / "missing.jsonl",
        "--store",
        tmp_path / "x.sqlite",
        *cat,
    )
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "missing.jsonl" in r.stderr
    r = twin("sensors", "status", "--store", tmp_path / "none.sqlite")
    assert r.returncode == 1 and "no sensor store" in r.stderr
    r = twin("sensors", "ingest", "--file", "a", "--http", "8000", *cat)
    assert r.returncode == 1 and "exactly one" in r.stderr
