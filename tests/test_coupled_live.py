"""`twin run` with live readings: a coupled sensors -> ground-water scenario on the mini pack that
ingests from a local MQTT broker (Mosquitto where installed, else amqtt) while it runs.

A simulated stream of the pack's loggers (`twin sensors simulate`) is published with the project's
publisher. The run's ingest uses a persistent session named in the URL (``?client_id=``); the test
opens that session on the broker first, so the broker keeps every message for the run whenever it
is published (as it does for an ingest that is away), and no test depends on who starts first.
Every test checks in a ``finally`` that no thread and no child process it started is left.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sensor_service import alive, children
from test_coupled_run import TWIN, _heads, _options, _stream, crashing_groundwater, scenario
from test_groundwater_readings import distance_from

from twin.app import run as coupled
from twin.errors import ConfigError, DataError
from twin.runs import read_status
from twin.sensors.broker import LocalBroker, free_port, mosquitto_path
from twin.sensors.mqtt import make_client, parse_mqtt_url
from twin.sensors.replay import paced, read_jsonl, send
from twin.sensors.store import SQLiteStore
from twin.sensors.uplink import DEFAULT_TOPICS, message_time

CLIENT = "twin-test-live"

FREE = """
[scenario]
name = "mini-free"
start = "2024-03-01T00:00:00Z"
end = "{end}"

[models.groundwater]
scenario = "gw.toml"
"""


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _own_children() -> set[int]:
    """Child processes of the test process, without multiprocessing's resource tracker (started
    once per process by the first spawned worker, shared by all, ending with the process)."""
    out = set()
    for pid in children(os.getpid()):
        if b"resource_tracker" not in _cmdline(pid) and alive(pid):
            out.add(pid)
    return out


# A live run subscribes with a persistent session and takes in what the broker queued for it; the
# embedded amqtt broker (used where Mosquitto is not installed) delivers nothing of that stream to the
# run's session, so these tests need Mosquitto, as `.ci/run` installs it.
needs_mosquitto = pytest.mark.skipif(
    mosquitto_path() is None,
    reason="needs Mosquitto (apt-get install mosquitto): the embedded amqtt broker does not deliver "
    "the stream to a live run's persistent session",
)


@pytest.fixture
def broker():
    """A broker on 127.0.0.1; afterwards no thread and no child process of the test is left."""
    threads, kids = set(threading.enumerate()), _own_children()
    b = LocalBroker().start()
    try:
        yield b
    finally:
        b.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            left = [t for t in threading.enumerate() if t not in threads and t.is_alive()]
            extra = _own_children() - kids
            if not left and not extra:
                break
            time.sleep(0.1)
        assert not left, f"threads left: {[t.name for t in left]}"
        assert not extra, f"child processes left: {sorted(extra)}"


def _open_session(url: str) -> None:
    """Open the run's persistent session (QoS 1 on the uplink topics) and leave it: from now on
    the broker keeps every uplink for the run."""
    u = parse_mqtt_url(url)
    client = make_client(CLIENT, persistent=True, manual_ack=False, url=u)
    subscribed = threading.Event()
    client.on_subscribe = lambda *args: subscribed.set()
    client.connect(u.host, u.port)
    client.loop_start()
    try:
        client.subscribe([(t, 1) for t in DEFAULT_TOPICS])
        assert subscribed.wait(30), "the broker did not answer the subscription"
    finally:
        client.disconnect()
        client.loop_stop()


def _session_present(url: str, client_id: str) -> bool:
    """Whether the broker still keeps a persistent session for ``client_id`` (connecting with
    clean_session=False keeps it as it is)."""
    u = parse_mqtt_url(url)
    client = make_client(client_id, persistent=True, manual_ack=False, url=u)
    flags: list[bool] = []
    client.on_connect = lambda c, d, f, *args: flags.append(bool(f.session_present))
    client.connect(u.host, u.port)
    client.loop_start()
    try:
        deadline = time.monotonic() + 30
        while not flags and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        client.disconnect()
        client.loop_stop()
    assert flags, "the broker did not answer CONNECT"
    return flags[0]


def _publish(url: str, stream: Path, speed: float = 0.0) -> int:
    return send(paced(read_jsonl(stream), speed), mqtt_url=url)["sent"]


def _stored(runs_dir: Path, name: str) -> int:
    """Messages in the run-local store of the run in progress (0 while there is none yet)."""
    for path in runs_dir.glob(f"{name}/.*.partial/sensors/sensors.sqlite"):
        try:
            with SQLiteStore(path, readonly=True) as store:
                return store.status()["messages"]
        except (DataError, sqlite3.Error):
            return 0
    return 0


def _wait_stored(runs_dir: Path, name: str, n: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while _stored(runs_dir, name) < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"the run stored fewer than {n} messages within {timeout:g} s")
        time.sleep(0.1)


def _used(run: Path) -> list[int]:
    """Readings used per analysis (groundwater/assimilation.csv)."""
    rows = (run / "groundwater" / "assimilation.csv").read_text().splitlines()[1:]
    return [int(r.split(",")[1]) for r in rows]


def _live(url: str, **keys: float) -> str:
    lines = [f'source = "{url}?client_id={CLIENT}"']
    lines += [f"{k} = {v!r}" for k, v in keys.items()]
    return "\n".join(lines)


@needs_mosquitto
def test_a_live_stream_feeds_the_run_and_its_clock_follows_it(tmp_path: Path, mini_pack: Path,
                                                              broker: LocalBroker):  # fmt: skip
    stream = _stream(tmp_path, mini_pack, start="2024-02-29T23:00:00Z", minutes=300)  # to 04:00
    lines = stream.read_bytes().splitlines()
    cut = datetime(2024, 3, 1, 1, 30, tzinfo=UTC).timestamp()
    first = [ln for ln in lines if message_time(json.loads(ln)) < cut]
    (tmp_path / "first.jsonl").write_bytes(b"\n".join(first) + b"\n")
    (tmp_path / "rest.jsonl").write_bytes(b"\n".join(lines[len(first) :]) + b"\n")
    _open_session(broker.url)
    runs_dir = tmp_path / "runs"
    sent: list[int] = []
    ahead: list[bool] = []

    def publish() -> None:
        """The stream to 01:30 now; the rest once the run is under way and has had the time to
        run ahead of the readings, if it did not follow them."""
        sent.append(_publish(broker.url, tmp_path / "first.jsonl"))
        checkpoints = runs_dir / "mini-live"
        deadline = time.monotonic() + 120
        while not list(checkpoints.glob("*/checkpoints/20240301T010000Z.npz")):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        time.sleep(2.0)
        ahead.append(bool(list(checkpoints.glob("*/checkpoints/20240301T02*.npz"))))
        sent.append(_publish(broker.url, tmp_path / "rest.jsonl"))

    publisher = threading.Thread(target=publish)
    publisher.start()
    try:
        path = scenario(tmp_path, mini_pack, name="mini-live", end="3h",
                        sensors=_live(broker.url, wait_s=120.0, max_age_s=3600.0))  # fmt: skip
        run = coupled.run(path, options=_options(tmp_path, mini_pack, checkpoint_every="1h"),
                          runs_dir=runs_dir)  # fmt: skip
    finally:
        publisher.join(150)
    assert ahead == [False]  # at 01:30 of readings the run had not reached 02:00
    assert sum(sent) == len(lines) and len(first) < len(lines)
    status = read_status(run)
    assert status["state"] == "finished"
    readings = status["readings"]
    assert readings["kind"] == "live"
    assert readings["source"] == (f"live MQTT stream from {broker.url} (topic "
                                  f"{', '.join(DEFAULT_TOPICS)})")  # fmt: skip
    ingest = readings["ingest"]
    assert ingest["received"] > 0 and ingest["stored"] > 0 and ingest["quarantined"] == 0
    assert ingest["stored"] == ingest["in_window"] + ingest["before_start"] + ingest["after_end"]
    assert ingest["before_start"] > 0 and ingest["in_window"] > 0
    assert status["gaps"] == [] and ingest["steps_without_stream"] == 0
    # every analysis after the first had both loggers' readings: the run never ran ahead of them
    used = _used(run)
    assert len(used) == 4 and all(n == 2 for n in used[1:]), used
    report = (run / "report.html").read_text(encoding="utf-8")
    assert f"live MQTT stream from {broker.url}" in report and "received" in report
    # the same window without readings: the heads near a logger differ
    (tmp_path / "free.toml").write_text(FREE.format(end="3h"), encoding="utf-8")
    free = coupled.run(tmp_path / "free.toml", options=_options(tmp_path, mini_pack),
                       runs_dir=runs_dir)  # fmt: skip
    change = np.abs(_heads(run) - _heads(free))
    near = change[distance_from("GWM-1", change.shape) <= 75.0]
    assert near.size and near.min() > 0.01
    assert _session_present(broker.url, CLIENT)  # named in the URL: the user's, kept


def test_a_finished_run_drops_its_own_session_and_a_silent_stream_is_a_gap(
    tmp_path: Path, mini_pack: Path, broker: LocalBroker
):
    path = scenario(tmp_path, mini_pack, name="mini-quiet", end="30m",
                    sensors=f'source = "{broker.url}"\nwait_s = 0.2')  # fmt: skip
    run = coupled.run(path, options=_options(tmp_path, mini_pack), runs_dir=tmp_path / "runs")
    status = read_status(run)
    assert status["state"] == "finished"
    (gap,) = status["gaps"]  # no reading at all: the whole run, from its start
    assert gap["start"] == "2024-03-01T00:00:00Z" and gap["end"] is None
    assert gap["stream"] == "no newer reading within 0.2 s"
    assert status["readings"]["ingest"]["received"] == 0
    assert not _session_present(broker.url, f"twin-run-mini-quiet-{run.name}")


@needs_mosquitto
def test_a_broker_that_goes_away_mid_run_is_a_flagged_gap_and_the_run_finishes(
    tmp_path: Path, mini_pack: Path, broker: LocalBroker
):
    stream = _stream(tmp_path, mini_pack, start="2024-02-29T23:00:00Z", minutes=150)  # to 01:30
    with stream.open("ab") as f:
        f.write(b'{"not": "an uplink"}\n')  # one message the ingest quarantines
    _open_session(broker.url)
    n = _publish(broker.url, stream)
    runs_dir = tmp_path / "runs"
    failures: list[BaseException] = []

    def stop_when_stored() -> None:  # the broker goes away once the run has the stream's start
        try:
            _wait_stored(runs_dir, "mini-gone", n)
        except BaseException as exc:
            failures.append(exc)
        finally:
            broker.stop()

    stopper = threading.Thread(target=stop_when_stored)
    stopper.start()
    try:
        path = scenario(tmp_path, mini_pack, name="mini-gone", end="4h",
                        sensors=_live(broker.url, wait_s=1.0, max_age_s=3600.0))  # fmt: skip
        run = coupled.run(path, options=_options(tmp_path, mini_pack), runs_dir=runs_dir)
    finally:
        stopper.join(150)
    assert not failures, failures
    status = read_status(run)
    assert status["state"] == "finished"
    ingest = status["readings"]["ingest"]
    assert (ingest["received"], ingest["stored"], ingest["quarantined"]) == (n, n - 1, 1)
    assert ingest["steps_without_stream"] > 0
    stream_gaps = [g for g in status["gaps"] if "stream" in g]
    assert len(stream_gaps) == 1
    (gap,) = stream_gaps
    assert "2024-03-01T01:00" <= gap["start"] <= "2024-03-01T01:30" and gap["end"] is None
    assert gap["quantities"] == ["groundwater_head"] and gap["wells"] == 2
    # the loggers fall silent in the feed too, from their last readings on, open at the end
    devices = [g for g in status["gaps"] if "stream" not in g]
    assert devices and all(g["end"] is None and g["start"] <= "2024-03-01T01:30" for g in devices)
    assert gap["start"][:16] in (run / "report.html").read_text(encoding="utf-8")
    used = _used(run)  # 00:00 .. 04:00: readings while they came, none an hour after the last
    assert used[1] == 2 and used[-1] == 0, used
    assert (run / "groundwater" / "head_end.tif").is_file()


@needs_mosquitto
def test_sigint_while_the_run_waits_for_readings_ends_everything(
    tmp_path: Path, mini_pack: Path, broker: LocalBroker
):
    stream = _stream(tmp_path, mini_pack, start="2024-02-29T23:00:00Z", minutes=60)  # to 00:00
    _open_session(broker.url)
    n = _publish(broker.url, stream)
    path = scenario(tmp_path, mini_pack, name="mini-wait", end="4h",
                    sensors=_live(broker.url, wait_s=600.0))  # fmt: skip
    runs_dir = tmp_path / "runs"
    cmd = [str(TWIN), "run", str(path), "--runs-dir", str(runs_dir), "--pack", str(mini_pack),
           "--build-dir", str(tmp_path / "build")]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    family: list[int] = []
    try:
        _wait_stored(runs_dir, "mini-wait", n)  # then it waits (up to 600 s) for 00:30 and on
        family = children(proc.pid)  # the ingest's worker process among them
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert b"twin: interrupted" in err and b"Traceback" not in err
    assert family
    deadline = time.monotonic() + 30  # the resource tracker ends when it sees the run has gone
    while [pid for pid in family if alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [_cmdline(pid) for pid in family if alive(pid)]
    (folder,) = (runs_dir / "mini-wait").iterdir()
    assert read_status(folder)["state"] == "interrupted"


def test_a_broker_that_cannot_be_reached_is_one_clear_error(tmp_path: Path, mini_pack: Path):
    threads = set(threading.enumerate())
    url = f"mqtt://127.0.0.1:{free_port()}"
    path = scenario(tmp_path, mini_pack, name="mini-nobroker", sensors=_live(url))
    with pytest.raises(ConfigError, match=r"'models\.sensors\.source': MQTT broker .*refused"):
        coupled.run(path, options=_options(tmp_path, mini_pack), runs_dir=tmp_path / "runs")
    (folder,) = (tmp_path / "runs" / "mini-nobroker").iterdir()
    assert read_status(folder)["state"] == "failed"
    assert not [t for t in threading.enumerate() if t not in threads and t.is_alive()]
    bad = scenario(tmp_path, mini_pack, name="mini-badurl", sensors='source = "http://x"')
    with pytest.raises(ConfigError, match=r"'models\.sensors\.source': MQTT URL"):
        coupled.load(bad)


@needs_mosquitto
def test_a_live_run_resumes_from_its_checkpoint_with_its_store(
    tmp_path: Path, mini_pack: Path, broker: LocalBroker
):
    stream = _stream(tmp_path, mini_pack, start="2024-02-29T23:00:00Z", minutes=240)  # to 03:00
    _open_session(broker.url)
    n = _publish(broker.url, stream)
    path = scenario(tmp_path, mini_pack, name="mini-again", end="3h",
                    sensors=_live(broker.url, wait_s=120.0))  # fmt: skip
    with crashing_groundwater(2 * 3600.0), pytest.raises(RuntimeError, match="simulated crash"):
        coupled.run(path, options=_options(tmp_path, mini_pack, checkpoint_every="1h"),
                    runs_dir=tmp_path / "runs")  # fmt: skip
    (failed,) = (tmp_path / "runs" / "mini-again").iterdir()
    assert read_status(failed)["readings"]["ingest"]["stored"] == n
    # resumed: the store has the stream, the broker nothing new; the clock goes on at once
    resumed = coupled.resume(failed)
    status = read_status(resumed)
    assert status["state"] == "finished" and status["resumed_from"] == "20240301T020000Z.npz"
    assert status["gaps"] == [] and status["readings"]["ingest"]["steps_without_stream"] == 0
    assert all(n == 2 for n in _used(resumed)[1:])
