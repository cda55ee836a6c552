"""The sensor feed: a `twin.core` model that offers the stored readings to the other models.

At each coupler time t it offers, per quantity, the latest reading of every device that measures it
(at or before t, not older than ``max_age_s``) on a point grid of the devices' positions, with a
quality-flag array and the age of each reading. A device without a reading in that window gives
NaN with the MISSING flag, so a ground-water or heat model can assimilate what is there and skip
the rest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from twin.core import ClockError, Grid, Model, ModelError, Variable, parse_utc
from twin.sensors.profiles import DEFAULT_PROFILES, load_profiles
from twin.sensors.store import DEFAULT_STORE, SQLiteStore, Store

MISSING = 8  # quality flag: no reading within max_age_s (value is NaN); 1, 2, 4 as in validate


class SensorFeed(Model):
    """Readings per quantity at coupler times, from a sensor :class:`Store`.

    Config keys: ``store`` (path, default build/sensors.sqlite; or pass a Store to the
    constructor), ``profiles`` (profiles TOML), ``quantities`` (default: all the devices in the
    store measure), ``time_step`` (s, default 300), ``max_age_s`` (default 10800), and ``start``
    (ISO 8601 UTC, only when the model runs without a coupler clock).

    Outputs per quantity ``q``: ``q`` (its units), ``q_quality`` (flags, '1') and ``q_age``
    (seconds since the reading, 's'), each on the point grid of the devices measuring ``q``.
    """

    def __init__(self, store: Store | None = None, name: str | None = None) -> None:
        super().__init__(name)
        self._store = store
        self._own_store = False

    def _initialize(self, config: Mapping[str, Any]) -> None:
        known = {"store", "profiles", "quantities", "time_step", "max_age_s", "start"}
        unknown = set(config) - known
        if unknown:
            raise ModelError(
                f"sensor feed config: unknown key(s) {', '.join(sorted(unknown))}; "
                f"expected {', '.join(sorted(known))}"
            )
        if self._store is None:
            self._store = SQLiteStore(config.get("store", DEFAULT_STORE), readonly=True)
            self._own_store = True
        profiles = load_profiles(config.get("profiles", DEFAULT_PROFILES))
        self.time_step = float(config.get("time_step", 300.0))
        self.max_age_s = float(config.get("max_age_s", 3 * 3600.0))
        self._start = None
        if "start" in config:
            self._start = parse_utc(config["start"], field="sensor feed config 'start'").timestamp()
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
        outputs = []
        for q, ds in self._devices.items():
            grid = Grid.points(np.array([[d.x, d.y] for d in ds]))
            units = profiles.quantities[q].units
            outputs += [
                Variable(q, units, grid),
                Variable(f"{q}_quality", "1", grid),
                Variable(f"{q}_age", "s", grid),
            ]
        self.outputs = tuple(outputs)
        self._values: dict[str, np.ndarray] = {}
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
        at = self.epoch_seconds(t)
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

    def _update_until(self, t: float) -> None:
        self._refresh(t)

    def _get_value(self, name: str) -> np.ndarray:
        return self._values[name]

    def device_ids(self, quantity: str) -> list[str]:
        """The catalogue ids of the points of ``quantity``'s grid, in grid order."""
        return [d.id for d in self._devices[quantity]]

    def _finalize(self) -> None:
        if self._own_store and self._store is not None:
            self._store.close()
