"""Readings for the models: the sensor feed a ground-water or heat run reads a store or a replayed
file through (the models never import the sensors domain; this layer wires them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from twin.core import Model
from twin.errors import DataError


def sensor_feed(setup: Any) -> tuple[Model, Any]:
    """A fresh sensor feed and the device catalogue of the set-up's pack (wells, stations, parking)."""
    from twin.sensors.devices import pack_catalogue
    from twin.sensors.feed import SensorFeed

    return SensorFeed(), pack_catalogue(setup.pack)


def station_feed(setup: Any, folder: Path) -> tuple[Model, dict[str, Any], str] | None:
    """The climate stations' air temperatures for a heat run: a sensor feed on the scenario's
    readings (``[readings] source``) and their provenance in the words of the data; None without.

    ``simulated``: a stream made by the sensor simulator over the run's window (from one hour
    before its start), its stations following the run's forcing plus their own urban offsets and
    noise, with the simulator's faults; written to ``folder/uplinks.jsonl`` and replayed through
    the sensor ingest into ``folder/sensors.sqlite``. ``jsonl``: that for a given file; ``store``:
    an existing sensor store, read as it is."""
    from twin.sensors.devices import Catalogue
    from twin.sensors.feed import SensorFeed
    from twin.sensors.profiles import DEFAULT_PROFILES, load_profiles
    from twin.sensors.simulate import simulate, stream

    sc = setup.scenario
    rd = sc.config["readings"]
    if rd["source"] == "none":
        return None
    folder.mkdir(parents=True, exist_ok=True)
    catalogue = Catalogue(pack_stations(setup))
    config: dict[str, Any] = {"quantities": ["air_temperature"], "time_step": rd["time_step_s"],
                              "max_age_s": rd["max_age_s"], "gap_s": rd["gap_s"]}  # fmt: skip
    if rd["source"] == "store":
        path = sc.resolve(rd["path"])
        config["store"] = path
        return SensorFeed(), config, f"sensor store {path}"
    if rd["source"] == "jsonl":
        path = sc.resolve(rd["path"])
        words = f"replayed uplink file {path} (origin not stated)"
    else:
        path = folder / "uplinks.jsonl"
        lead = 3600.0
        start = max(setup.clock.start.timestamp() - lead, setup.forcing.start)
        end = setup.clock.start.timestamp() + (setup.clock.duration or 0.0)
        minutes = (end - start) / 60.0
        events = simulate(catalogue, load_profiles(DEFAULT_PROFILES), start=start, minutes=minutes,
                          seed=rd["seed"], weather=setup.forcing)  # fmt: skip
        tmp = path.with_name(path.name + ".part")
        with tmp.open("wb") as f:
            for _, _, body in stream(events, "tts"):
                f.write(body + b"\n")
        tmp.replace(path)
        words = (f"replayed uplink file {path.name} (simulated stream: twin sensors simulate, "
                 f"seed {rd['seed']}, stations following the run's forcing; not the stations' "
                 "readings)")  # fmt: skip
    config.update(replay=path, store=folder / "sensors.sqlite", catalogue=catalogue)
    return SensorFeed(), config, words


def station_readings(path: Path, station_id: str, quantity: str, start: float,
                     end: float) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """One station's readings of ``quantity`` with ``start <= time < end`` in the sensor store at
    ``path``, opened read-only (a heat forcing from the reference station's own readings)."""
    from twin.sensors.store import SQLiteStore

    if not Path(path).is_file():
        raise DataError(f"{path}: no sensor store there")
    with SQLiteStore(path, readonly=True) as store:
        rows = store.window(quantity, start, end, [station_id])
    return (np.array([r.time for r in rows], dtype=np.float64),
            np.array([r.value for r in rows], dtype=np.float64))  # fmt: skip


def pack_stations(setup: Any) -> list[Any]:
    """The climate stations of the set-up's pack as sensor devices."""
    from twin.sensors.devices import pack_catalogue

    return pack_catalogue(setup.pack, parking=False).of_kind("stations")
