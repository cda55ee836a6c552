"""Shared by the sensor tests: poison messages of each kind the validation must quarantine, a good
simulated stream with poison lines at seeded positions, and the rows a store holds
(services run through sensor_service.Service)."""

from __future__ import annotations

import contextlib
import json
import math
import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

# The shipped pack's parking layer, for catalogues built from loose files in the sensor tests.
KREFELD_PARKING = (
    Path(__file__).resolve().parents[1] / "data" / "krefeld" / "sensors" / "parking.csv"
)

# Each kind of poison and the quarantine reason it must get.
POISON = {
    "nan": "not_a_number",  # a decoded value NaN
    "infinity": "not_a_number",  # Infinity or -Infinity
    "1e400": "overflow",  # a decoded value beyond the float range (read as infinity)
    "long_field": "overflow",  # a decoded value as a 400-digit integer
    "long_rssi": "overflow",  # the gateway's rssi as a 400-digit integer
    "deep": "too_deep",  # a field nested 100 000 deep
    "not_utf8": "invalid_json",  # bytes that are not UTF-8
}
DEEP = 100_000


def _parts(msg: dict) -> tuple[dict, str, str, list]:
    """Where a message of either server holds the binary payload, the decoded one and rx metadata."""
    if "end_device_ids" in msg:
        up = msg["uplink_message"]
        return up, "frm_payload", "decoded_payload", up["rx_metadata"]
    return msg, "data", "object", msg["rxInfo"]


def poison(kind: str, good: bytes, i: int = 0) -> bytes:
    """A parking sensor's uplink ``good`` (with a decoded payload) made poison of ``kind``; ``i``
    picks the field and the sign."""
    msg = json.loads(good)
    holder, raw_key, decoded_key, meta = _parts(msg)
    decoded = holder[decoded_key]
    field = ("status", "battery")[i % 2]
    sign = -1 if i % 4 >= 2 else 1
    marker = "@poison@"
    text = ""
    if kind != "long_rssi":
        holder.pop(raw_key, None)  # the values now come from the decoded payload alone
    if kind == "nan":
        decoded[field] = math.nan
    elif kind == "infinity":
        decoded[field] = sign * math.inf
    elif kind == "1e400":
        decoded[field] = marker
        text = ("-" if sign < 0 else "") + "1e400"
    elif kind == "long_field":
        decoded[field] = sign * (10**399 + i)
    elif kind == "long_rssi":
        meta[0]["rssi"] = -(10**399 + i)
    elif kind == "deep":
        holder["extra"] = marker
        text = "[" * DEEP + str(i) + "]" * DEEP
    elif kind != "not_utf8":
        raise ValueError(f"unknown poison {kind!r}")
    body = json.dumps(msg, separators=(",", ":")).encode()  # NaN, Infinity as Python writes them
    if text:
        body = body.replace(json.dumps(marker).encode(), text.encode())
    if kind == "not_utf8":
        key = b'"device_id":"' if b'"device_id":"' in body else b'"deviceName":"'
        body = body.replace(key, key + b"\xff\xfe\xc3", 1)
    return body


def poisoned_stream(
    good: list[tuple[str, bytes]],
    spare: list[tuple[str, bytes]],
    per_kind: int = 20,
    seed: int = 10,
) -> tuple[list[tuple[str, bytes]], dict[bytes, str]]:
    """``good`` (topic, body) messages with ``per_kind`` poison messages of each kind, made from
    ``spare`` parking messages, at seeded positions; and the reason expected for each poison."""
    rng = random.Random(seed)
    parking = [(t, b) for t, b in spare if b'"status"' in b]
    n = per_kind * len(POISON)
    if len(parking) < n:
        raise ValueError(f"need {n} spare parking messages, got {len(parking)}")
    bad = []
    for k, kind in enumerate(POISON):
        for i in range(per_kind):
            topic, body = parking[k * per_kind + i]
            bad.append((topic, poison(kind, body, i), POISON[kind]))
    out = list(good)
    for pos, item in zip(sorted(rng.sample(range(len(good) + n), n)), bad, strict=True):
        out.insert(pos, item[:2])
    return out, {body: reason for _, body, reason in bad}


def write_lines(path: Path, messages: list[tuple[str, bytes]]) -> Path:
    """A JSONL file of the messages' bodies."""
    path.write_bytes(b"".join(body + b"\n" for _, body in messages))
    return path


def store_rows(path: Path) -> dict[str, object]:
    """What a store holds, for comparing stores: uplinks and readings (sorted), the quarantine
    (raw body -> reason, detail) and the number of distinct raw messages."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as c:
        return {
            "uplinks": sorted(c.execute("SELECT dev_eui, f_cnt, time, f_port, rssi, snr, flags "
                                        "FROM uplinks")),
            "readings": sorted(c.execute("SELECT device_id, quantity, time, value, flags "
                                         "FROM readings")),
            "quarantine": {bytes(b): (r, d) for b, r, d in c.execute(
                "SELECT r.body, q.reason, q.detail FROM quarantine q "
                "JOIN raw_messages r ON r.sha = q.sha")},
            "raw": c.execute("SELECT COUNT(*) FROM raw_messages").fetchone()[0],
        }  # fmt: skip


def message_counts(path: Path) -> tuple[int, int]:
    """Messages received (redeliveries included) and distinct ones in a store that a service may
    still be writing; (0, 0) before it exists."""
    if not path.exists():
        return 0, 0
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as c:
        try:
            got = c.execute("SELECT SUM(receipts), COUNT(*) FROM raw_messages").fetchone()
        except sqlite3.OperationalError:  # the schema is not written yet
            return 0, 0
    return got[0] or 0, got[1]


def wait_until(check: Callable[[], bool], timeout: float, every: float = 0.1) -> bool:
    """Poll ``check`` until it is true or ``timeout`` seconds have passed; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every)
    return check()
