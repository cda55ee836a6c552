"""The sensor feed: a `twin.core` model that offers the stored readings to the other models.

At each coupler time t it offers, per quantity, the latest reading of every device that measures it
(at or before t, not older than ``max_age_s``) on a point grid of the devices' positions, with a
quality-flag array, the age of each reading and an assimilation weight. A device without a reading
in that window gives NaN with the MISSING flag and weight 0, so a ground-water or heat model can
assimilate what is there and skip the rest.

Replay: with ``replay`` (a JSONL file of uplinks, one message per line, in delivery order) the feed
fills its own ``store`` with the sensor ingest while the run goes on: a message is taken in when the
run's clock passes its arrival, the latest reception time of the messages up to it in the file, so
a message delivered after later ones (a backlog) arrives late, as it did, and is used from then on.
A reception time the validator rejects as clock skew on its own (a server clock days ahead of its
gateways') moves no arrival: that message is taken in with the one before it (and quarantined
by the ingest), and the messages after it arrive at their own times.

Gaps: a device that has reported in the run and then has no reading fresher than ``gap_s`` at the
feed's times is in a gap until a fresh reading is there again; :meth:`SensorFeed.gaps` lists them.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from twin.core import ClockError, Grid, Model, ModelError, VariableSpec, bind, format_utc, parse_utc
from twin.sensors.profiles import DEFAULT_PROFILES, load_profiles
from twin.sensors.store import DEFAULT_STORE, SQLiteStore, Store

MISSING = 8  # quality flag: no reading within max_age_s (value is NaN); 1, 2, 4 as in validate

# What a reading's quality flags are worth to an assimilation: the feed's declared conversion from
# flags to weights, so that no model takes a flag for a weight. No reading: 0. A reading that came
# late (1), out of order (2) or from the server's decoded payload (4) measured the same water level
# as any other: 1.
FLAG_WEIGHTS = {MISSING: 0.0}

# CSDMS-style standard names of the profiles' quantities (what the coupler compares).
STANDARD_NAMES = {
    "groundwater_head": "groundwater__hydraulic_head",
    "water_temperature": "groundwater__temperature",
    "battery_voltage": "sensor_battery__voltage",
    "air_temperature": "atmosphere_air__temperature",
    "relative_humidity": "atmosphere_air__relative_humidity",
    "precipitation": "atmosphere_water__precipitation_leq_depth",
    "global_radiation": "land_surface__incoming_shortwave_irradiance",
    "wind_speed": "atmosphere_air_flow__speed",
    "wind_direction": "atmosphere_air_flow__from_direction",
    "occupied": "parking_bay__occupancy",
}


def assimilation_weight(flags: np.ndarray) -> np.ndarray:
    """The weight (0 to 1) of readings with these quality flags (see FLAG_WEIGHTS)."""
    flags = np.asarray(flags).astype(int)
    weight = np.ones(flags.shape)
    for bit, value in FLAG_WEIGHTS.items():
        weight = np.where(flags & bit, np.minimum(weight, value), weight)
    return weight


def _standard_name(quantity: str) -> str:
    return STANDARD_NAMES.get(quantity, f"sensor__{quantity}")


class SensorFeed(Model):
    """Readings per quantity at coupler times, from a sensor :class:`Store`.

    Config keys: ``store`` (path, default build/sensors.sqlite; or pass a Store to the
    constructor), ``profiles`` (profiles TOML), ``quantities`` (default: all the devices in the
    store measure), ``time_step`` (s, default 300), ``max_age_s`` (default 10800), ``gap_s``
    (default 3600), ``start`` (ISO 8601 UTC, only when the model runs without a coupler clock),
    and for a replay ``replay`` (a JSONL file) with ``catalogue`` (a :class:`Catalogue` of the
    devices it may hold); ``store`` is then the run's own store, written by the ingest.

    Outputs per quantity ``q``: ``q`` (its units), ``q_quality`` (flags, '1'), ``q_age``
    (seconds since the reading, 's') and ``q_weight`` (assimilation weight by FLAG_WEIGHTS, '1'),
    each on the point grid of the devices measuring ``q``.
    """

    def __init__(self, store: Store | None = None, name: str | None = None) -> None:
        super().__init__(name)
        self._store = store
        self._own_store = False

    @classmethod
    def declared_outputs(cls, config: Mapping[str, Any] | None = None) -> tuple[VariableSpec, ...]:
        """Four outputs per quantity of the profiles file (those no device measures are left out)."""
        profiles = load_profiles((config or {}).get("profiles", DEFAULT_PROFILES))
        specs = []
        for q, quantity in profiles.quantities.items():
            specs += [
                VariableSpec(q, quantity.units, _standard_name(q), "points",
                             quantity.description, optional=True),
                VariableSpec(f"{q}_quality", "1", "observation__quality_flag", "points",
                             "quality flags of the reading (8 = none)", optional=True),
                VariableSpec(f"{q}_age", "s", "observation__age", "points",
                             "seconds since the reading", optional=True),
                VariableSpec(f"{q}_weight", "1", "observation__assimilation_weight", "points",
                             "assimilation weight of the reading, from its flags", optional=True),
            ]  # fmt: skip
        return tuple(specs)

    def _initialize(self, config: Mapping[str, Any]) -> None:
        known = {"store", "profiles", "quantities", "time_step", "max_age_s", "gap_s", "start",
                 "replay", "catalogue"}  # fmt: skip
        unknown = set(config) - known
        if unknown:
            raise ModelError(
                f"sensor feed config: unknown key(s) {', '.join(sorted(unknown))}; "
                f"expected {', '.join(sorted(known))}"
            )
        self.seconds = 0.0  # time spent ingesting and querying
        profiles = load_profiles(config.get("profiles", DEFAULT_PROFILES))
        self.time_step = float(config.get("time_step", 300.0))
        self.max_age_s = float(config.get("max_age_s", 3 * 3600.0))
        self.gap_s = float(config.get("gap_s", 3600.0))
        self._start = None
        if "start" in config:
            self._start = parse_utc(config["start"], field="sensor feed config 'start'").timestamp()
        self._replay: _Replay | None = None
        if "replay" in config:
            if "catalogue" not in config:
                raise ModelError("sensor feed config 'replay': give the 'catalogue' it may hold")
            path = Path(config.get("store", DEFAULT_STORE))
            self._store = SQLiteStore(path)
            self._own_store = True
            self._replay = _Replay(Path(config["replay"]), self._store, config["catalogue"],
                                   profiles)  # fmt: skip
        elif self._store is None:
            self._store = SQLiteStore(config.get("store", DEFAULT_STORE), readonly=True)
            self._own_store = True
        devices = self._store.devices()
        measures: dict[str, list] = {}
        for d in devices:
            try:
                profile = profiles.for_catalogue(d.kind)
            except Exception:
                continue
            names = {o.quantity for layout in profile.ports.values() for o in layout.outputs}
            for q in sorted(names):
                measures.setdefault(q, []).append(d)
        wanted = list(config.get("quantities", sorted(measures)))
        missing = [q for q in wanted if q not in measures]
        if missing:
            have = ", ".join(sorted(measures)) or "none"
            raise ModelError(
                f"sensor feed config 'quantities': no device in the store measures "
                f"{', '.join(missing)}; measured are: {have}"
            )
        self._devices: dict[str, list] = {q: measures[q] for q in wanted}
        self._index = {q: {d.id: i for i, d in enumerate(ds)} for q, ds in self._devices.items()}
        grids = {}
        for q, ds in self._devices.items():
            grid = Grid.points(np.array([[d.x, d.y] for d in ds]))
            grids.update({q: grid, f"{q}_quality": grid, f"{q}_age": grid, f"{q}_weight": grid})
        self.outputs = bind(self.declared_outputs(config), grids)
        self._values: dict[str, np.ndarray] = {}
        self._last_seen = {q: np.full(len(ds), np.nan) for q, ds in self._devices.items()}
        self._gap_since = {q: np.full(len(ds), np.nan) for q, ds in self._devices.items()}
        self._gaps: list[dict[str, Any]] = []
        self._refresh(0.0)

    def epoch_seconds(self, t: float) -> float:
        """Model time ``t`` as seconds since 1970-01-01 UTC."""
        if self.clock is not None:
            return self.clock.to_datetime(t).timestamp()
        if self._start is None:
            raise ClockError(
                f"model {self.name!r}: no clock; add it to a Coupler or give config 'start'"
            )
        return self._start + t

    def _refresh(self, t: float) -> None:
        t0 = time.perf_counter()
        at = self.epoch_seconds(t)
        if self._replay is not None:
            self._replay.take_until(at)
        for q, ds in self._devices.items():
            n = len(ds)
            values = np.full(n, np.nan)
            quality = np.full(n, float(MISSING))
            age = np.full(n, np.nan)
            index = self._index[q]
            for r in self._store.latest(q, at=at, max_age=self.max_age_s):
                i = index.get(r.device_id)
                if i is not None and math.isfinite(r.value):
                    values[i], quality[i], age[i] = r.value, float(r.flags), at - r.time
            self._values[q] = values
            self._values[f"{q}_quality"] = quality
            self._values[f"{q}_age"] = age
            self._values[f"{q}_weight"] = assimilation_weight(quality)
            self._track_gaps(q, at, age)
        self.seconds += time.perf_counter() - t0

    def _track_gaps(self, q: str, at: float, age: np.ndarray) -> None:
        """Open a gap where a device that reported has nothing fresher than gap_s; close it when a
        fresh reading is there again."""
        fresh = np.isfinite(age) & (age <= self.gap_s)
        seen, since = self._last_seen[q], self._gap_since[q]
        reading_time = at - np.where(np.isfinite(age), age, 0.0)
        ids = self.device_ids(q)
        for i in np.flatnonzero(fresh & np.isfinite(since)):
            self._gaps.append({"quantity": q, "well": ids[i], "start": since[i], "end": at})
            since[i] = np.nan
        opened = ~fresh & np.isfinite(seen) & ~np.isfinite(since)
        since[opened] = seen[opened]  # from the device's last reading before it fell silent
        has = np.isfinite(age)
        seen[has] = np.fmax(seen[has], reading_time[has])

    def gaps(self, quantity: str | None = None) -> list[dict[str, Any]]:
        """Gaps so far: {quantity, well, start, end} with ISO UTC times (end None: still open).

        ``start`` is the time of the device's last reading before the gap, ``end`` the feed time
        at which a reading fresher than ``gap_s`` was there again."""
        out = list(self._gaps)
        for q, since in self._gap_since.items():
            ids = self.device_ids(q)
            out += [{"quantity": q, "well": ids[i], "start": since[i], "end": None}
                    for i in np.flatnonzero(np.isfinite(since))]  # fmt: skip
        iso = lambda s: None if s is None else format_utc(_utc(s))  # noqa: E731
        return [{**g, "start": iso(g["start"]), "end": iso(g["end"])} for g in out
                if quantity is None or g["quantity"] == quantity]  # fmt: skip

    def silent(self, quantity: str) -> list[str]:
        """The devices of ``quantity`` that gave no reading at all so far."""
        ids = self.device_ids(quantity)
        return [ids[i] for i in np.flatnonzero(~np.isfinite(self._last_seen[quantity]))]

    def replay_counts(self) -> dict[str, int]:
        """For a replay: messages in the file, taken in so far, and what the ingest made of them."""
        return {} if self._replay is None else self._replay.counts()

    def replay_times(self) -> np.ndarray:
        """For a replay: the reception time of each message of the file (epoch seconds, NaN where
        none is readable), to count those outside a window; empty without a replay."""
        return np.zeros(0) if self._replay is None else self._replay.times.copy()

    def _update_until(self, t: float) -> None:
        self._refresh(t)

    def _save_state(self) -> Mapping[str, Any]:
        """The readings offered now, the gap bookkeeping and how far a replay has read."""
        state: dict[str, Any] = {f"value/{k}": v for k, v in self._values.items()}
        for q in self._devices:
            state[f"seen/{q}"], state[f"since/{q}"] = self._last_seen[q], self._gap_since[q]
        gaps = self._gaps
        state["gaps_quantity"] = np.array([g["quantity"] for g in gaps], dtype=str)
        state["gaps_well"] = np.array([g["well"] for g in gaps], dtype=str)
        state["gaps_time"] = np.array([[g["start"], g["end"]] for g in gaps], dtype=float)
        if self._replay is not None:
            state["replay_next"] = self._replay.next
        return {k.replace("/", ":"): v for k, v in state.items()}

    def _load_state(self, state: Mapping[str, Any]) -> None:
        state = {k.replace(":", "/"): v for k, v in state.items()}
        self._values = {k[6:]: np.array(v) for k, v in state.items() if k.startswith("value/")}
        for q in self._devices:
            self._last_seen[q] = np.array(state[f"seen/{q}"], dtype=float)
            self._gap_since[q] = np.array(state[f"since/{q}"], dtype=float)
        times = np.asarray(state["gaps_time"], dtype=float).reshape(-1, 2)
        self._gaps = [{"quantity": str(q), "well": str(w), "start": float(a), "end": float(b)}
                      for q, w, (a, b) in zip(state["gaps_quantity"], state["gaps_well"], times,
                                              strict=True)]  # fmt: skip
        if self._replay is not None:
            self._replay.resume(int(state["replay_next"]))

    def _get_value(self, name: str) -> np.ndarray:
        return self._values[name]

    def device_ids(self, quantity: str) -> list[str]:
        """The catalogue ids of the points of ``quantity``'s grid, in grid order."""
        return [d.id for d in self._devices[quantity]]

    def _finalize(self) -> None:
        if self._own_store and self._store is not None:
            self._store.close()


def _utc(seconds: float):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(float(seconds), UTC)


class _Replay:
    """A JSONL file of uplinks taken into a store by the sensor ingest as the run's clock passes
    each message's arrival (see the module's docstring)."""

    def __init__(self, path: Path, store: SQLiteStore, catalogue: Any, profiles: Any) -> None:
        from twin.sensors.ingest import Ingestor
        from twin.sensors.replay import read_jsonl

        self.path = path
        self._source = f"file:{path.name}"
        self._lines = list(read_jsonl(path))
        self._next = 0
        self._wall = -math.inf
        self._ingest = Ingestor(store, catalogue, profiles, now=lambda: self._wall,
                                worker="thread")  # fmt: skip
        self.times, self.arrival = self._arrivals()

    def _arrivals(self) -> tuple[np.ndarray, np.ndarray]:
        """Each message's reception time (NaN: none readable) and its arrival: the latest
        reception time up to it in the file that is no clock error (see :meth:`_skewed`)."""
        from twin.sensors.uplink import message_time

        times = np.full(len(self._lines), np.nan)
        arrival, latest = np.empty(len(self._lines)), -math.inf
        skew = self._ingest.validator.max_clock_skew_s
        for i, line in enumerate(self._lines):
            try:
                t = message_time(json.loads(line))
            except (ValueError, TypeError, AttributeError):
                t = None
            if t is not None and math.isfinite(t):
                times[i] = t
                if t > latest and not (t > latest + skew and self._skewed(line, t)):
                    latest = t
            arrival[i] = latest
        self._wall = -math.inf
        return times, arrival

    def _skewed(self, line: bytes, t: float) -> bool:
        """Whether the validator rejects the message as clock skew even when it arrives at its
        own reception time ``t``: its server and gateway times disagree, or its clock was never
        set. Such a message is quarantined whenever it arrives, so its time says nothing."""
        from twin.sensors.uplink import MessageRejected

        self._wall = t
        verdict = self._ingest.validator.prepare(line, self._source).result
        return isinstance(verdict, MessageRejected) and verdict.reason == "clock_skew"

    @property
    def next(self) -> int:
        """How many messages of the file have been taken in."""
        return self._next

    def resume(self, taken: int) -> None:
        """Continue a replay that had taken in ``taken`` messages (those already in the store are
        recognised by the ingest as duplicates)."""
        if taken > self._next:
            self._wall = float(self.arrival[taken - 1])
            self._ingest.ingest(self._lines[self._next : taken], source=self._source)
        self._next = taken

    def take_until(self, at: float) -> None:
        """Ingest the messages that have arrived by ``at`` (epoch seconds), stamped as received
        then."""
        end = int(np.searchsorted(self.arrival, at, side="right"))
        if end > self._next:
            self._wall = at
            self._ingest.ingest(self._lines[self._next : end], source=self._source)
            self._next = end

    def counts(self) -> dict[str, int]:
        """Messages in the file and taken in, with the ingest's outcome counts."""
        c = self._ingest.counters
        return {"messages": len(self._lines), "taken_in": self._next, "stored": c.stored,
                "readings": c.readings, "duplicates": c.duplicates,
                "quarantined": c.quarantined}  # fmt: skip
