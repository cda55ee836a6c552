"""Benchmark the sensor ingest: MQTT -> validation -> SQLite, against a bare subscriber.

Usage: .venv/bin/python benchmarks/bench_sensors.py [--messages N] [--broker auto|mosquitto|amqtt]

A publisher process sends N simulated TTS uplinks (QoS 1) as fast as it can to a local broker on
127.0.0.1 (Mosquitto where installed). In the same run:
1. a bare paho subscriber (QoS 1, acknowledging on receipt, counting only) takes the stream: the
   broker's raw delivery rate, the anchor;
2. the twin's ingest (persistent session, acknowledgement after commit, decoding, validation,
   batched SQLite writes) takes the same stream into a fresh store.
Prints both rates (messages/s, first receipt to last message done), the ingest's loss (must be 0),
its p50/p99 latency from publish to committed, and the ratio ingest / bare.
Goal: over 5 000 messages/s on 2 cores and at least half the bare subscriber's rate.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from twin.sensors.broker import LocalBroker  # noqa: E402
from twin.sensors.devices import DEFAULT_PARKING, load_catalogue  # noqa: E402
from twin.sensors.ingest import Ingestor  # noqa: E402
from twin.sensors.mqtt import MqttIngest  # noqa: E402
from twin.sensors.profiles import load_profiles  # noqa: E402
from twin.sensors.simulate import simulate, stream  # noqa: E402
from twin.sensors.store import SQLiteStore  # noqa: E402
from twin.sensors.synthetic import write_synthetic_catalogue  # noqa: E402


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def raw_publisher(url: str, src: Path, out: Path, rate: float) -> int:
    """Publish every "topic\\tbody" line of ``src`` with QoS 1 over a plain socket, at ``rate``
    messages/s (0: as fast as the broker takes them), at most 1000 unacknowledged; save the wall
    time each message was written.

    Written here rather than with paho because paho wakes its network thread for every publish,
    which caps a Python publisher near the rates we want to measure: the benchmark would time the
    publisher instead of the broker and the ingest. MQTT 3.1.1 CONNECT/PUBLISH/PUBACK framing only.
    """
    import socket

    items = [line.rstrip(b"\n").split(b"\t", 1) for line in src.open("rb")]
    host, port = "127.0.0.1", int(url.rsplit(":", 1)[1])
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    cid = b"bench-raw-publisher"
    var = b"\x00\x04MQTT\x04\x02\x00\x3c"  # MQTT 3.1.1, clean session, keep-alive 60 s
    body = var + len(cid).to_bytes(2, "big") + cid
    sock.sendall(b"\x10" + _varint(len(body)) + body)
    if sock.recv(4)[:1] != b"\x20":
        return 1
    acked = 0
    window = threading.Semaphore(1000)
    stop = threading.Event()

    def reader() -> None:
        nonlocal acked
        buf = b""
        while not stop.is_set():
            chunk = sock.recv(65536)
            if not chunk:
                return
            buf += chunk
            n = len(buf) // 4 * 4  # a PUBACK is 4 bytes: 0x40 0x02 id id
            for _ in range(n // 4):
                acked += 1
                window.release()
            buf = buf[n:]

    threading.Thread(target=reader, daemon=True).start()
    stamps = np.empty(len(items))
    t0 = time.time()
    chunk: list[bytes] = []
    for i, (topic, payload) in enumerate(items):
        window.acquire()
        vh = len(topic).to_bytes(2, "big") + topic + ((i % 65535) + 1).to_bytes(2, "big")
        chunk.append(b"\x32" + _varint(len(vh) + len(payload)) + vh + payload)
        if rate > 0:
            wait = t0 + i / rate - time.time()
            if wait > 0:
                time.sleep(wait)
        if len(chunk) >= (1 if rate > 0 else 50) or i == len(items) - 1:
            now = time.time()
            sock.sendall(b"".join(chunk))
            stamps[i - len(chunk) + 1 : i + 1] = now
            chunk = []
    deadline = time.monotonic() + 120
    while acked < len(items) and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    sock.sendall(b"\xe0\x00")  # DISCONNECT
    sock.close()
    np.save(out, stamps)
    return 0 if acked == len(items) else 1


def publish(url: str, src: Path, out: Path, rate: float = 0.0) -> subprocess.Popen:
    """Start the publisher in its own process, as a network server would be."""
    return subprocess.Popen([sys.executable, __file__, "--publish", url, str(src), str(out),
                             str(rate)], cwd=REPO)  # fmt: skip


def bare_rate(url: str, src: Path, work: Path, n: int) -> float:
    """Messages/s a bare subscriber receives (first to last receipt)."""
    got: list[float] = []
    done = threading.Event()
    ready = threading.Event()

    def on_connect(c, userdata, flags, reason_code, properties):
        c.subscribe([("v3/+/devices/+/up", 1), ("application/+/device/+/event/up", 1)])

    def on_subscribe(c, userdata, mid, reason_codes, properties):
        ready.set()

    def on_message(c, userdata, msg):
        got.append(time.monotonic())
        if len(got) >= n:
            done.set()

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare", clean_session=True)
    c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
    c.connect("127.0.0.1", int(url.rsplit(":", 1)[1]))
    c.loop_start()
    ready.wait(10)
    pub = publish(url, src, work / "bare.npy")
    done.wait(300)
    pub.wait(60)
    c.disconnect()
    c.loop_stop()
    if len(got) < n:
        print(f"  bare subscriber got {len(got)} of {n}")
    return (len(got) - 1) / (got[-1] - got[0])


def ingest_run(
    url: str, src: Path, work: Path, n: int, catalogue, profiles, rate: float = 0.0, tag: str = "a"
) -> dict:
    """Rate, loss and publish-to-commit latency of the twin's ingest."""
    store = SQLiteStore(work / f"bench-{tag}.sqlite")
    commits: list[tuple[float, list]] = []
    offset = time.time() - time.monotonic()  # paho stamps receipts with time.monotonic()

    def on_commit(t: float, outcomes, tags) -> None:
        commits.append((t, tags))

    ingestor = Ingestor(store, catalogue, profiles, on_commit=on_commit).start()
    source = MqttIngest(url, ingestor, client_id=f"bench-ingest-{tag}").start()
    source.wait_connected(10)
    pub = publish(url, src, work / f"ingest-{tag}.npy", rate)
    deadline = time.monotonic() + 300
    while ingestor.counters.received < n and time.monotonic() < deadline:
        time.sleep(0.01)
    t_end = time.time()
    pub.wait(60)
    ingestor.close()
    source.stop()
    status = store.status()
    store.close()
    stamps = np.load(work / f"ingest-{tag}.npy")
    first_rx = offset + min(m.timestamp for _, tags in commits for m in tags[:1])
    index = {body: i for i, body in enumerate(_bodies(src))}
    lat = []
    last_commit = 0.0
    for t, tags in commits:
        last_commit = max(last_commit, t)
        for m in tags:
            i = index.get(m.payload)
            if i is not None:
                lat.append(t - stamps[i])
    span = last_commit - first_rx
    lat_ms = np.array(lat) * 1000.0
    return {
        "rate": (status["uplinks"] - 1) / span if span > 0 else float("nan"),
        "lost": n - status["uplinks"],
        "quarantined": status["quarantined"],
        "p50_ms": float(np.percentile(lat_ms, 50)),
        "p99_ms": float(np.percentile(lat_ms, 99)),
        "batches": len(commits),
        "done_at": t_end,
    }


def _bodies(src: Path) -> list[bytes]:
    return [line.rstrip(b"\n").split(b"\t", 1)[1] for line in src.open("rb")]


def main() -> int:
    if len(sys.argv) == 6 and sys.argv[1] == "--publish":
        return raw_publisher(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), float(sys.argv[5]))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=30000, help="messages per run (default 30000)")
    ap.add_argument("--broker", choices=("auto", "mosquitto", "amqtt"), default="auto")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sensors-") as tmp:
        work = Path(tmp)
        wells, stations = write_synthetic_catalogue(work / "cat", n_wells=420, n_stations=32)
        catalogue = load_catalogue(wells, stations, DEFAULT_PARKING)
        profiles = load_profiles()
        # compress the reporting intervals so that N messages span a few simulated minutes
        events = simulate(catalogue, profiles, start=time.time() - 3600, minutes=60, seed=1,
                          clean=True, interval_scale=0.05)[: args.messages]  # fmt: skip
        src = work / "stream.tsv"
        with src.open("wb") as f:
            for _, topic, body in stream(events, "tts"):
                f.write(topic.encode() + b"\t" + body + b"\n")
        n = len(events)
        with LocalBroker(args.broker, workdir=work / "broker") as broker:
            print(
                f"broker: {broker.kind} on {broker.url}; {n} uplinks of ~{src.stat().st_size // n} B"
            )
            bare = bare_rate(broker.url, src, work, n)
            print(f"bare subscriber (QoS 1, ack on receipt, no work): {bare:10.0f} msg/s")
            r = ingest_run(broker.url, src, work, n, catalogue, profiles)
            print(
                f"twin ingest (ack after commit, SQLite WAL):      {r['rate']:10.0f} msg/s, "
                f"lost {r['lost']}, quarantined {r['quarantined']}, {r['batches']} batches"
            )
            # latency means something below saturation: publish at a steady half of that rate
            paced = max(100.0, round(0.5 * r["rate"], -2))
            p = ingest_run(broker.url, src, work, n, catalogue, profiles, rate=paced, tag="b")
        print(
            f"latency publish -> committed at a steady {paced:.0f} msg/s: p50 {p['p50_ms']:.1f} ms, "
            f"p99 {p['p99_ms']:.1f} ms (lost {p['lost']})"
        )
        print(
            f"  (at full speed the broker queues: p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms)"
        )
        print(
            f"ratio ingest / bare subscriber: {r['rate'] / bare:.2f} (goal >= 0.5; and > 5000 msg/s)"
        )
    return 0 if r["lost"] == 0 and p["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
