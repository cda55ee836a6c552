"""The sensor store: raw messages, readings, quarantine and the device catalogue.

`Store` is the interface (a Protocol) the ingest, the feed and the CLI use, so a server database can
be plugged in; `SQLiteStore` is the embedded default (WAL journal, multi-row inserts, one
transaction per batch). Times are float seconds since 1970-01-01 UTC.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from twin.errors import DataError
from twin.sensors.devices import Device
from twin.sensors.validate import Batch

DEFAULT_STORE = Path("build") / "sensors.sqlite"
SCHEMA_VERSION = "1"
_CHUNK = 500  # keys per IN (...) query, well below SQLite's variable limit
# A batch dirties pages all over the sha index and at the end of every device's range in the
# per-device indexes; each commit appends those pages to the WAL and a checkpoint copies them back.
# A checkpoint every 8000 pages (32 MiB) instead of SQLite's 1000 copies a page rewritten by several
# commits once, which took a sixth off the cost of a write into a store of 300 000 uplinks; the
# 64 MiB cache (default 2 MiB) keeps the indexes' hot pages, so inserts do not read them again.
_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA cache_size=-65536",
    "PRAGMA wal_autocheckpoint=8000",
)


@dataclass(frozen=True)
class Reading:
    """One stored reading of one quantity at one device."""

    device_id: str
    dev_eui: str
    quantity: str
    time: float
    value: float
    flags: int


@dataclass(frozen=True)
class QuarantineEntry:
    """A message that could not become readings, with the reason and the raw message as received."""

    reason: str
    detail: str
    at: float
    source: str
    body: bytes


@runtime_checkable
class Store(Protocol):
    """What the ingest, the feed and the CLI need from a store of sensor data."""

    def register_devices(self, devices: Iterable[Device]) -> None:
        """Insert or update catalogue devices."""

    def devices(self) -> list[Device]:
        """The registered devices."""

    def known_hashes(self, shas: list[bytes]) -> set[bytes]:
        """Which of these raw-message hashes are stored already."""

    def known_uplinks(self, keys: list[tuple[str, int]]) -> set[tuple[str, int]]:
        """Which of these (DevEUI, frame counter) pairs are stored already."""

    def last_frame_counters(self) -> dict[str, int]:
        """The highest stored frame counter per DevEUI."""

    def write_batch(self, batch: Batch) -> None:
        """Write a validated batch atomically."""

    def latest(
        self, quantity: str, at: float | None = None, max_age: float | None = None
    ) -> list[Reading]:
        """The latest reading of ``quantity`` per device at or before ``at``."""

    def window(
        self, quantity: str, start: float, end: float, device_ids: Sequence[str] | None = None
    ) -> list[Reading]:
        """All readings of ``quantity`` with ``start <= time < end``, by device then time."""

    def quarantine(self, reason: str | None = None, limit: int = 100) -> list[QuarantineEntry]:
        """Quarantined messages, newest first."""

    def status(self) -> dict:
        """Counts: messages, readings, quarantined (per reason), duplicates, devices."""

    def close(self) -> None:
        """Release the store."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS raw_messages(
    id INTEGER PRIMARY KEY, sha BLOB NOT NULL UNIQUE, first_seen REAL NOT NULL,
    source TEXT NOT NULL, format TEXT, dev_eui TEXT, f_cnt INTEGER, body BLOB NOT NULL,
    status TEXT NOT NULL, receipts INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS uplinks(
    dev_eui TEXT NOT NULL, f_cnt INTEGER NOT NULL, time REAL NOT NULL, f_port INTEGER NOT NULL,
    rssi REAL, snr REAL, sha BLOB NOT NULL, flags INTEGER NOT NULL,
    PRIMARY KEY(dev_eui, f_cnt)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS readings(
    id INTEGER PRIMARY KEY, dev_eui TEXT NOT NULL, device_id TEXT NOT NULL,
    quantity TEXT NOT NULL, time REAL NOT NULL, value REAL NOT NULL, flags INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS readings_by_device ON readings(quantity, device_id, time);
CREATE INDEX IF NOT EXISTS readings_by_time ON readings(quantity, time);
CREATE TABLE IF NOT EXISTS quarantine(
    id INTEGER PRIMARY KEY, sha BLOB NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL,
    at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS quarantine_by_reason ON quarantine(reason);
CREATE TABLE IF NOT EXISTS devices(
    dev_eui TEXT PRIMARY KEY, id TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL,
    x REAL NOT NULL, y REAL NOT NULL, z REAL, status TEXT NOT NULL, attrs TEXT NOT NULL);
"""


def _known_uplinks_query(n: int) -> str:
    """SQL selecting which of ``n`` (DevEUI, frame counter) pairs are in ``uplinks``.

    A join, not ``(dev_eui, f_cnt) IN (VALUES ...)``: SQLite answers that row-value IN with a scan
    of the whole table, once per batch, which grows with the store; the join searches the primary
    key once per pair."""
    return (
        f"WITH k(dev, fcnt) AS (VALUES {','.join(['(?,?)'] * n)}) "
        "SELECT u.dev_eui, u.f_cnt FROM k JOIN uplinks u ON u.dev_eui = k.dev AND u.f_cnt = k.fcnt"
    )


def _reading_key(row: tuple) -> tuple:
    return row[2], row[1], row[3]  # quantity, device id, time: the order of readings_by_device


class SQLiteStore:
    """The embedded store: one SQLite file in WAL mode, safe to read while another process writes.

    One connection, shared by threads under a lock; writes come in batches (one transaction each).
    ``synchronous=NORMAL`` in WAL mode keeps a committed batch across a crash of the process; only a
    power loss can take back the last commits (SQLite docs, "WAL mode").
    """

    def __init__(self, path: str | Path = DEFAULT_STORE, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            if readonly:
                if not self.path.exists():
                    raise DataError(
                        f"{self.path}: no sensor store here (run `twin sensors ingest`)"
                    )
                uri = f"file:{self.path.resolve()}?mode=ro"
                self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0)
                for pragma in _PRAGMAS:
                    self._conn.execute(pragma)
                self._conn.executescript(_SCHEMA)
                self._conn.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
                )
                self._conn.commit()
            version = self._conn.execute(
                "SELECT value FROM meta WHERE key='schema_version'"
            ).fetchone()
        except sqlite3.DatabaseError as exc:
            raise DataError(f"{self.path}: not a usable sensor store: {exc}") from None
        if version is None or version[0] != SCHEMA_VERSION:
            raise DataError(
                f"{self.path}: sensor store schema version {version and version[0]!r}, "
                f"expected {SCHEMA_VERSION!r}"
            )

    # -- catalogue -----------------------------------------------------------------------------

    def register_devices(self, devices: Iterable[Device]) -> None:
        """Insert or update catalogue devices (by DevEUI)."""
        rows = [
            (d.dev_eui, d.id, d.name, d.kind, d.x, d.y, None if math.isnan(d.z) else d.z, d.status,
             json.dumps(dict(d.attrs), sort_keys=True))
            for d in devices
        ]  # fmt: skip
        with self._lock, self._conn:
            self._conn.executemany(
                "INSERT OR REPLACE INTO devices VALUES (?,?,?,?,?,?,?,?,?)", rows
            )

    def devices(self) -> list[Device]:
        """The registered devices, wells first, then stations, then parking, each by id."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM devices ORDER BY CASE kind WHEN 'wells' THEN 0 WHEN 'stations' "
                "THEN 1 ELSE 2 END, id"
            ).fetchall()
        return [
            Device(r[0], r[1], r[2], r[3], r[4], r[5], math.nan if r[6] is None else r[6], r[7],
                   json.loads(r[8]))
            for r in rows
        ]  # fmt: skip

    # -- what the validator asks -------------------------------------------------------------

    def known_hashes(self, shas: list[bytes]) -> set[bytes]:
        """Which of these raw-message hashes are stored already."""
        found: set[bytes] = set()
        with self._lock:
            for i in range(0, len(shas), _CHUNK):
                part = shas[i : i + _CHUNK]
                q = f"SELECT sha FROM raw_messages WHERE sha IN ({','.join('?' * len(part))})"
                found.update(r[0] for r in self._conn.execute(q, part))
        return found

    def known_uplinks(self, keys: list[tuple[str, int]]) -> set[tuple[str, int]]:
        """Which of these (DevEUI, frame counter) pairs are stored already."""
        found: set[tuple[str, int]] = set()
        with self._lock:
            for i in range(0, len(keys), _CHUNK):
                part = keys[i : i + _CHUNK]
                q = _known_uplinks_query(len(part))
                found.update(
                    (r[0], r[1]) for r in self._conn.execute(q, [x for k in part for x in k])
                )
        return found

    def last_frame_counters(self) -> dict[str, int]:
        """The highest stored frame counter per DevEUI."""
        with self._lock:
            rows = self._conn.execute("SELECT dev_eui, MAX(f_cnt) FROM uplinks GROUP BY dev_eui")
            return {r[0]: r[1] for r in rows}

    def write_batch(self, batch: Batch) -> None:
        """Write a validated batch in one transaction (all of it, or nothing).

        Prepared statements run once per row (``executemany``: a fifth less CPU than multi-row
        VALUES statements, which SQLite compiles again for every batch's last, shorter chunk);
        readings go in index order (quantity, device, time), so consecutive inserts touch the same
        index pages."""
        readings = sorted(batch.readings, key=_reading_key)
        with self._lock, self._conn:
            c = self._conn
            c.executemany(
                "INSERT OR IGNORE INTO raw_messages(sha, first_seen, source, format, dev_eui, "
                "f_cnt, body, status) VALUES (?,?,?,?,?,?,?,?)",
                batch.raw,
            )
            if batch.bumps:
                c.executemany(
                    "UPDATE raw_messages SET receipts = receipts + 1 WHERE sha = ?",
                    [(s,) for s in batch.bumps],
                )
            c.executemany("INSERT OR IGNORE INTO uplinks VALUES (?,?,?,?,?,?,?,?)", batch.uplinks)
            c.executemany("INSERT INTO readings(dev_eui, device_id, quantity, time, value, flags) "
                          "VALUES (?,?,?,?,?,?)", readings)  # fmt: skip
            c.executemany(
                "INSERT INTO quarantine(sha, reason, detail, at) VALUES (?,?,?,?)", batch.quarantine
            )

    # -- queries -------------------------------------------------------------------------------

    def latest(
        self, quantity: str, at: float | None = None, max_age: float | None = None
    ) -> list[Reading]:
        """The latest reading of ``quantity`` per device at or before ``at`` (default: any time),
        not older than ``max_age`` seconds before ``at`` when given."""
        hi = math.inf if at is None else float(at)
        lo = -math.inf if max_age is None or at is None else hi - float(max_age)
        # SQLite returns the other columns from the row that holds MAX(time) ("bare columns").
        q = (
            "SELECT device_id, dev_eui, quantity, MAX(time), value, flags FROM readings "
            "WHERE quantity = ? AND time <= ? AND time >= ? GROUP BY device_id ORDER BY device_id"
        )
        with self._lock:
            rows = self._conn.execute(q, (quantity, hi, lo)).fetchall()
        return [Reading(*r) for r in rows]

    def window(
        self, quantity: str, start: float, end: float, device_ids: Sequence[str] | None = None
    ) -> list[Reading]:
        """All readings of ``quantity`` with ``start <= time < end``, by device then time."""
        q = (
            "SELECT device_id, dev_eui, quantity, time, value, flags FROM readings "
            "WHERE quantity = ? AND time >= ? AND time < ?"
        )
        args: list = [quantity, float(start), float(end)]
        if device_ids is not None:
            q += f" AND device_id IN ({','.join('?' * len(device_ids))})"
            args += list(device_ids)
        with self._lock:
            rows = self._conn.execute(q + " ORDER BY device_id, time", args).fetchall()
        return [Reading(*r) for r in rows]

    def resample(
        self, quantity: str, start: float, end: float, step: float, how: str = "mean"
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Readings of ``quantity`` aggregated in bins of ``step`` seconds from ``start``: per device,
        the bin start times and the bin values (NaN where a bin has no reading).

        ``how`` is 'mean', 'min', 'max', 'last' or 'count'."""
        aggregate = {"mean": "AVG(value)", "min": "MIN(value)", "max": "MAX(value)",
                     "count": "COUNT(*)", "last": "value"}  # fmt: skip
        if how not in aggregate:
            raise DataError(f"resample how: expected one of {', '.join(aggregate)}, got {how!r}")
        if not step > 0 or not end > start:
            raise DataError(
                f"resample: expected step > 0 and end > start, got {step}, {start}..{end}"
            )
        nbins = int(math.ceil((end - start) / step))
        extra = ", MAX(time)" if how == "last" else ""
        q = (
            f"SELECT device_id, CAST((time - ?) / ? AS INTEGER) AS bin, {aggregate[how]}{extra} "
            "FROM readings WHERE quantity = ? AND time >= ? AND time < ? "
            "GROUP BY device_id, bin ORDER BY device_id, bin"
        )
        with self._lock:
            rows = self._conn.execute(q, (start, step, quantity, start, end)).fetchall()
        times = start + step * np.arange(nbins)
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for dev, b, v, *_ in rows:
            if dev not in out:
                out[dev] = (times.copy(), np.full(nbins, 0.0 if how == "count" else np.nan))
            out[dev][1][b] = v
        return out

    def quarantine(self, reason: str | None = None, limit: int = 100) -> list[QuarantineEntry]:
        """Quarantined messages (newest first) with the raw message as received."""
        q = (
            "SELECT q.reason, q.detail, q.at, r.source, r.body FROM quarantine q "
            "JOIN raw_messages r ON r.sha = q.sha"
        )
        args: list = []
        if reason is not None:
            q += " WHERE q.reason = ?"
            args.append(reason)
        q += " ORDER BY q.id DESC LIMIT ?"
        args.append(int(limit))
        with self._lock:
            rows = self._conn.execute(q, args).fetchall()
        return [QuarantineEntry(r[0], r[1], r[2], r[3], bytes(r[4])) for r in rows]

    def raw_messages(self) -> Iterator[tuple[float, str, bytes]]:
        """Every distinct raw message as received: (first seen, source, body), in arrival order."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT first_seen, source, body FROM raw_messages ORDER BY id"
            ).fetchall()
        for r in rows:
            yield r[0], r[1], bytes(r[2])

    def quantities(self) -> list[str]:
        """The quantities that have readings."""
        with self._lock:
            return [r[0] for r in self._conn.execute("SELECT DISTINCT quantity FROM readings")]

    def status(self) -> dict:
        """Counts: messages (all received, redeliveries included), readings, quarantined with a
        per-reason map, duplicates, devices (that sent an accepted uplink) and catalogue devices."""
        with self._lock:
            c = self._conn
            messages, distinct = c.execute(
                "SELECT COALESCE(SUM(receipts), 0), COUNT(*) FROM raw_messages"
            ).fetchone()
            reasons = dict(c.execute("SELECT reason, COUNT(*) FROM quarantine GROUP BY reason"))
            readings = c.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
            uplinks = c.execute("SELECT COUNT(*) FROM uplinks").fetchone()[0]
            devices = c.execute("SELECT COUNT(DISTINCT dev_eui) FROM uplinks").fetchone()[0]
            catalogue = c.execute("SELECT COUNT(*) FROM devices").fetchone()[0]
            span = c.execute("SELECT MIN(time), MAX(time) FROM uplinks").fetchone()
        return {
            "store": str(self.path),
            "messages": int(messages),
            "distinct_messages": int(distinct),
            "uplinks": int(uplinks),
            "readings": int(readings),
            "quarantined": int(sum(reasons.values())),
            "quarantine_reasons": {k: int(v) for k, v in sorted(reasons.items())},
            "duplicates": int(messages - distinct + reasons.get("duplicate", 0)),
            "devices": int(devices),
            "catalogue_devices": int(catalogue),
            "first_time": span[0],
            "last_time": span[1],
        }

    def close(self) -> None:
        """Close the connection (a later call does nothing)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None  # type: ignore[assignment]

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
