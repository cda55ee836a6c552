"""Synthetic uplink streams for every catalogue sensor, reproducible from a seed.

Ground water: a steady head per well with a slow trend, the Rhine's stage wave (damped and delayed
with distance from the river), drawdown by the waterworks' pumps on a daily schedule, and noise.
Climate: seasonal and diurnal air temperature with a small urban heat island, humidity that falls as
it warms, regional rain and cloud, sun-driven radiation, gusty wind. Parking: bays that fill towards
midday. Streams have gaps (lost radio frames), a few late deliveries and, unless ``clean``, the odd
malformed message of each kind the validation quarantines.

Readings are generated first (per device, from the seed and the DevEUI), then written in either
network-server format, so one seed gives the same readings in both.

A given weather series (``simulate(..., weather=...)``) replaces the climate stations' own
synthetic weather: each station then reads that series' air temperature plus its urban heat-island
offset (the reference station, a DWD row, none), its humidity at the same vapour pressure, its
radiation and wind, each with sensor noise. The streams stay synthetic either way.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from twin.errors import DataError
from twin.sensors.devices import Catalogue, Device
from twin.sensors.profiles import Layout, Profiles
from twin.sensors.uplink import render_chirpstack, render_tts, topic_for

INTERVALS_S = {"wells": 900.0, "stations": 300.0, "parking": 120.0}
MALFORMED = (
    "invalid_json",
    "schema",
    "bad_base64",
    "truncated",
    "unknown_device",
    "out_of_range",
    "clock_skew",
    "duplicate",
)
MALFORMED_RATE = 0.01
GAP_RATE = 0.02
LATE_RATE = 0.003
# Standard deviations of the sensor noise on a given weather series (weather=...): air
# temperature K, humidity %, radiation W m-2, wind m/s and degrees.
STATION_NOISE = {
    "air_temperature": 0.1,
    "relative_humidity": 1.5,
    "global_radiation": 5.0,
    "wind_speed": 0.3,
    "wind_direction": 8.0,
}

# Synthetic stand-ins for the Rhine (a north-south line east of the centre, near Uerdingen) and
# for waterworks wells; positions in EPSG:25832.
RHINE_X = 338600.0
PUMPS = ((333200.0, 5692500.0), (336800.0, 5688200.0), (329200.0, 5685800.0))
CENTRE = (330400.0, 5689500.0)
LAT, LON = 51.33, 6.56


@dataclass(frozen=True)
class SimUplink:
    """One simulated uplink before it is written in a server's format."""

    device: Device
    f_cnt: int
    f_port: int
    time: float
    fields: dict[str, float]
    payload: bytes
    rssi: float
    snr: float
    layout: Layout
    fault: str = ""


def _rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(key.encode())])


def _solar_elevation(t: np.ndarray) -> np.ndarray:
    """Sun elevation (radians) at Krefeld: a textbook declination/hour-angle approximation."""
    day = (t / 86400.0) % 365.25
    decl = math.radians(23.44) * np.sin(2 * np.pi * (day - 80.0) / 365.25)
    hours = (t % 86400.0) / 3600.0 + LON / 15.0
    ha = np.radians(15.0 * (hours - 12.0))
    lat = math.radians(LAT)
    return np.arcsin(np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(ha))


def _weather(seed: int, start: float, end: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Regional rain rate (mm/h) and cloud cover (0..1) on a 5-minute grid shared by all stations."""
    rng = _rng(seed, "weather")
    grid = np.arange(start - 600.0, end + 900.0, 300.0)
    raining = np.zeros(grid.size, dtype=bool)
    cloud = np.empty(grid.size)
    state, c = rng.random() < 0.2, rng.uniform(0.2, 0.8)
    for i in range(grid.size):
        if rng.random() < (0.08 if state else 0.02):
            state = not state
        c = min(1.0, max(0.0, c + rng.normal(0, 0.05) + (0.05 if state else -0.01)))
        raining[i], cloud[i] = state, c
    rate = np.where(raining, rng.gamma(1.5, 0.8, grid.size), 0.0)
    return grid, rate, cloud


def _well_fields(d: Device, times: np.ndarray, rng: np.random.Generator, port: int, profile,
                 base: float | None = None):  # fmt: skip
    a = d.attrs
    depth0 = rng.uniform(
        2.5, 8.0
    )  # drawn always, so a given base leaves the other draws as they are
    head0 = a["ground_elevation_m"] - depth0 if base is None else base
    days = (times - times[0]) / 86400.0
    dist_river = abs(d.x - RHINE_X)
    lag = dist_river / 1000.0 * 3600.0 * 6.0  # the stage wave travels ~1 km per 6 h
    river = 0.9 * math.exp(-dist_river / 2500.0) * np.sin(2 * np.pi * (times - lag) / (6 * 86400))
    hour = ((times % 86400.0) / 3600.0)[:, None]
    pumping = np.zeros(times.size)
    for px, py in PUMPS:
        r = max(math.hypot(d.x - px, d.y - py), 50.0)
        if r < 3000.0:
            # Thiem-like drawdown, log-decaying with distance; pumps run 05:00-22:00 UTC, and the
            # aquifer follows with a lag of about an hour (a smooth ramp instead of a step)
            on = 1.0 / (1.0 + np.exp(-(hour[:, 0] - 5.5) * 2.0)) - 1.0 / (
                1.0 + np.exp(-(hour[:, 0] - 22.5) * 2.0)
            )
            pumping += 0.6 * math.log(3000.0 / r) / math.log(3000.0 / 50.0) * on
    head = head0 - 0.002 * days + river - pumping + rng.normal(0, 0.003, times.size)
    temp = rng.uniform(10.5, 12.5) + rng.normal(0, 0.02, times.size)
    battery = rng.uniform(3.45, 3.65) - 0.0005 * days + rng.normal(0, 0.004, times.size)
    out = []
    for h, tw, b in zip(head, temp, battery, strict=True):
        if port == 1:
            f = {"level_below_reference": a["reference_height_m"] - h}
        else:
            c = profile.constants
            probe = a["reference_height_m"] - (a["well_depth_m"] - c["probe_above_bottom_m"])
            f = {"pressure": max(0.0, (h - probe) * c["water_density_kg_m3"] * c["gravity_m_s2"])}
        f.update(water_temperature=tw, battery=b)
        out.append(f)
    return out


def _station_payloads(flags: int, temp, rh, rain, battery, rad, speed, direction) -> list[dict]:
    """A climate station's payload fields per time; radiation and wind where its flags say so."""
    out = []
    for i in range(len(temp)):
        f = {
            "flags": float(flags),
            "air_temperature": temp[i],
            "relative_humidity": rh[i],
            "precipitation": rain[i],
            "battery": battery[i],
        }
        if flags & 1:
            f["global_radiation"] = rad[i]
        if flags & 2:
            f["wind_speed"], f["wind_direction"] = speed[i], direction[i]
        out.append(f)
    return out


def _station_fields(d: Device, times, rng, weather, index: int):
    grid, rate, cloud = weather
    doy = (times / 86400.0) % 365.25
    mean = 10.5 - 8.0 * np.cos(2 * np.pi * (doy - 20.0) / 365.25)
    hour = (times % 86400.0) / 3600.0
    uhi = _uhi(d)
    cl = np.interp(times, grid, cloud)
    amp = 5.0 * (1.0 - 0.6 * cl)
    temp = mean + amp * np.cos(2 * np.pi * (hour - 15.0) / 24.0) + uhi
    temp += np.cumsum(rng.normal(0, 0.05, times.size)) * 0.2 + rng.normal(0, 0.08, times.size)
    rh = np.clip(78.0 - 3.0 * (temp - mean) + 15.0 * cl + rng.normal(0, 1.5, times.size), 15, 100)
    dt = np.diff(times, prepend=times[0] - INTERVALS_S["stations"])
    rain = np.interp(times, grid, rate) * dt / 3600.0 * rng.uniform(0.7, 1.3, times.size)
    elev = _solar_elevation(times)
    rad = 1050.0 * np.clip(np.sin(elev), 0, None) ** 1.2 * (1.0 - 0.75 * cl**3)
    rad = np.clip(rad + rng.normal(0, 5.0, times.size), 0.0, None)
    speed = np.abs(
        3.0 + np.cumsum(rng.normal(0, 0.3, times.size)) * 0.3 + rng.normal(0, 0.8, times.size)
    )
    direction = (240.0 + np.cumsum(rng.normal(0, 4.0, times.size))) % 360.0
    battery = rng.uniform(3.5, 3.7) + rng.normal(0, 0.004, times.size)
    flags = (1 if index % 3 == 0 else 0) | (2 if index % 2 == 0 else 0)
    return _station_payloads(flags, temp, rh, rain, battery, rad, speed, direction)


WEATHER_KEYS = ("t_air_c", "rh_percent", "global_radiation", "wind_speed", "wind_from_deg")


def _uhi(d: Device) -> float:
    """A station's urban heat-island offset (K): largest at the centre, fading over ~2 km."""
    return 1.8 * math.exp(-math.hypot(d.x - CENTRE[0], d.y - CENTRE[1]) / 2000.0)


def is_reference_station(d: Device) -> bool:
    """Whether a climate station is an official reference (a DWD row): it reads the regional
    weather itself, with no urban offset."""
    return d.id.upper().startswith("DWD-") or d.status == "official"


def weather_series(weather: Any) -> dict[str, np.ndarray]:
    """A weather series as float arrays: a mapping with "time" (or "times", UTC s, ascending) and
    `WEATHER_KEYS` (optional "precipitation_mm_h"), or an object with those attributes."""

    def get(key: str) -> Any:
        if isinstance(weather, Mapping):
            return weather.get(key)
        return getattr(weather, key, None)

    out: dict[str, np.ndarray] = {}
    time = get("time")
    if time is None:
        time = get("times")
    if time is None:
        raise DataError("simulate: the weather series has no 'time' (or 'times')")
    out["time"] = np.asarray(time, dtype=np.float64).reshape(-1)
    if out["time"].size < 1 or np.any(np.diff(out["time"]) <= 0):
        raise DataError("simulate: the weather series' times must be non-empty and ascending")
    for key in WEATHER_KEYS + ("precipitation_mm_h",):
        value = get(key)
        if value is None:
            if key == "precipitation_mm_h":
                continue
            raise DataError(f"simulate: the weather series lacks '{key}'")
        a = np.asarray(value, dtype=np.float64).reshape(-1)
        if a.size != out["time"].size or not np.all(np.isfinite(a)):
            raise DataError(
                f"simulate: the weather series' '{key}' must hold {out['time'].size} finite "
                f"values, got {a.size}"
            )
        out[key] = a
    return out


def _interp_weather(series: dict[str, np.ndarray], times: np.ndarray) -> dict[str, np.ndarray]:
    """The series at ``times``, linear in time; wind direction through u/v components."""
    t = series["time"]
    if times.size and (times[0] < t[0] or times[-1] > t[-1]):
        raise DataError(
            f"simulate: the weather series covers {_iso(t[0])} to {_iso(t[-1])}, the stream "
            f"needs {_iso(times[0])} to {_iso(times[-1])}"
        )
    out = {k: np.interp(times, t, v) for k, v in series.items() if k != "time"}
    rad = np.radians(series["wind_from_deg"])
    weight = series["wind_speed"] + 1e-6  # a calm's direction (nearly) counts for nothing
    u = np.interp(times, t, weight * np.sin(rad))
    v = np.interp(times, t, weight * np.cos(rad))
    out["wind_from_deg"] = np.degrees(np.arctan2(u, v)) % 360.0
    return out


def _iso(t: float) -> str:
    return datetime.fromtimestamp(round(float(t)), UTC).isoformat().replace("+00:00", "Z")


def _saturation_hpa(t_c: np.ndarray) -> np.ndarray:
    """Saturation vapour pressure over water (hPa), Magnus form (Alduchov and Eskridge 1996)."""
    return 6.1094 * np.exp(17.625 * t_c / (t_c + 243.04))


def _station_fields_from(d: Device, times, rng, series, index: int):
    """A station's readings following a given weather series (see the module notes)."""
    w = _interp_weather(series, times)
    reference = is_reference_station(d)
    offset = 0.0 if reference else _uhi(d)
    temp = w["t_air_c"] + offset + rng.normal(0, STATION_NOISE["air_temperature"], times.size)
    # the same vapour pressure in air warmer by the offset: a lower relative humidity
    rh = w["rh_percent"] * _saturation_hpa(w["t_air_c"]) / _saturation_hpa(w["t_air_c"] + offset)
    rh = np.clip(rh + rng.normal(0, STATION_NOISE["relative_humidity"], times.size), 1.0, 100.0)
    dt = np.diff(times, prepend=times[0] - INTERVALS_S["stations"])
    rain = w.get("precipitation_mm_h", np.zeros(times.size)) * dt / 3600.0
    rad = np.clip(
        w["global_radiation"] + rng.normal(0, STATION_NOISE["global_radiation"], times.size),
        0.0, None,
    )  # fmt: skip
    speed = np.abs(w["wind_speed"] + rng.normal(0, STATION_NOISE["wind_speed"], times.size))
    direction = w["wind_from_deg"] + rng.normal(0, STATION_NOISE["wind_direction"], times.size)
    direction %= 360.0
    battery = rng.uniform(3.5, 3.7) + rng.normal(0, 0.004, times.size)
    flags = 3 if reference else (1 if index % 3 == 0 else 0) | (2 if index % 2 == 0 else 0)
    return _station_payloads(flags, temp, rh, rain, battery, rad, speed, direction)


def _parking_fields(times, rng):
    hour = (times % 86400.0) / 3600.0
    p_busy = 0.25 + 0.6 * np.exp(-(((hour - 13.0) / 4.0) ** 2))
    state = rng.random() < p_busy[0]
    battery = rng.uniform(3.5, 3.65)
    out = []
    for p in p_busy:
        # a two-state Markov chain whose stationary share of "occupied" is p
        if state and rng.random() < 0.15 * (1 - p):
            state = False
        elif not state and rng.random() < 0.15 * p:
            state = True
        out.append({"status": float(state), "battery": battery + rng.normal(0, 0.003)})
    return out


def simulate(
    catalogue: Catalogue,
    profiles: Profiles,
    *,
    start: float,
    minutes: float,
    seed: int = 0,
    clean: bool = False,
    interval_scale: float = 1.0,
    base_heads: Mapping[str, float] | None = None,
    weather: Any = None,
) -> list[SimUplink]:
    """All uplinks of all catalogue devices from ``start`` (UTC seconds) for ``minutes``, in the
    order a network server would deliver them.

    ``base_heads`` (well id -> m a.s.l.) sets a logger's mean head, e.g. a ground-water model's
    steady state, so that a twin experiment's stream and model start from one aquifer; without
    it each well's water table lies a random 2.5-8 m below its ground.

    ``weather`` (a mapping of arrays or an object with attributes: time or times, t_air_c,
    rh_percent, global_radiation, wind_speed, wind_from_deg, optional precipitation_mm_h) makes
    the climate stations follow that series: air temperature = the series' + the station's urban
    offset (none at a reference station) + noise of `STATION_NOISE`; it must cover the window.
    Without it the stations' weather is the seed's own (and the stream as before)."""
    end = start + minutes * 60.0
    series = None if weather is None else weather_series(weather)
    weather = _weather(seed, start, end)
    events: list[SimUplink] = []
    station_index = 0
    for d in catalogue:
        rng = _rng(seed, d.dev_eui)
        profile = profiles.for_catalogue(d.kind)
        step = INTERVALS_S[d.kind] * interval_scale
        first = start + rng.uniform(0, step)
        times = np.arange(first, end, step)
        f_cnt0 = int(rng.integers(0, 5000))
        port = 1
        if d.kind == "wells":
            port = 2 if rng.random() < 0.2 else 1
        if times.size == 0:
            continue
        if d.kind == "wells":
            base = None if base_heads is None else base_heads.get(d.id)
            fields = _well_fields(d, times, rng, port, profile, base)
        elif d.kind == "stations":
            if series is None:
                fields = _station_fields(d, times, rng, weather, station_index)
            else:
                fields = _station_fields_from(d, times, rng, series, station_index)
            station_index += 1
        else:
            fields = _parking_fields(times, rng)
        layout = profile.layout(port)
        lost = rng.random(times.size) < GAP_RATE
        rssi = rng.uniform(-118, -70)
        for i, t in enumerate(times):
            if lost[i]:
                continue  # the frame counter still advanced: a gap, as in a lost radio frame
            payload = layout.pack(fields[i])
            values = layout.unpack(payload)  # exactly what a decoder will read
            events.append(
                SimUplink(d, f_cnt0 + i, port, round(float(t), 3), values, payload,
                          round(rssi + rng.normal(0, 2), 1), round(float(rng.normal(5, 3)), 1),
                          layout)
            )  # fmt: skip
    events.sort(key=lambda e: (e.time, e.device.dev_eui))
    rng = _rng(seed, "delivery")
    n = len(events)
    # a few deliveries held back by a backlog: they arrive some frames later, out of order
    late = np.flatnonzero(rng.random(n) < LATE_RATE)
    for i in late[::-1]:
        j = min(n - 1, i + int(rng.integers(5, 50)))
        events.insert(j, events.pop(i))
    if not clean:
        faulty = np.flatnonzero(rng.random(n) < MALFORMED_RATE)
        kinds = rng.integers(0, len(MALFORMED), faulty.size)
        extra = []
        for i, k in zip(faulty, kinds, strict=True):
            fault = MALFORMED[k]
            if fault == "duplicate":  # the same frame once more, via another gateway a bit later
                extra.append((i, replace(events[i], time=events[i].time + 0.5, rssi=-119.0)))
            else:
                events[i] = replace(events[i], fault=fault)
        for i, e in sorted(extra, key=lambda x: -x[0]):
            events.insert(min(len(events), i + 3), replace(e, fault="duplicate"))
    return events


def _encode(e: SimUplink, fmt: str, payload_mode: str) -> dict[str, Any]:
    payload: bytes | None = e.payload
    decoded: dict[str, Any] | None = dict(e.fields)
    dev_eui = e.device.dev_eui
    t = e.time
    gateway_time = None
    if e.fault == "truncated":
        payload = payload[:-1]
        decoded.popitem()
    elif e.fault == "out_of_range":  # a battery reading no cell gives
        decoded = dict(e.fields, battery=9.0)
        payload = e.layout.pack(decoded)
    elif e.fault == "unknown_device":
        dev_eui = "FFFF" + dev_eui[4:]
    elif e.fault == "clock_skew":  # a server clock two days ahead of its gateways'
        gateway_time = t - 0.05
        t += 2 * 86400.0
    if payload_mode == "decoded":
        payload = None
    elif payload_mode == "binary":
        decoded = None
    render = render_tts if fmt == "tts" else render_chirpstack
    msg = render(dev_eui=dev_eui, device_id=e.device.id.lower(), f_cnt=e.f_cnt, f_port=e.f_port,
                 time=t, payload=payload, decoded=decoded, rssi=e.rssi, snr=e.snr,
                 gateway_time=gateway_time)  # fmt: skip
    if e.fault == "bad_base64":
        if fmt == "tts":
            msg["uplink_message"]["frm_payload"] = "not*base64!"
        else:
            msg["data"] = "not*base64!"
    elif e.fault == "schema":
        if fmt == "tts":
            del msg["end_device_ids"]["dev_eui"]
        else:
            del msg["deviceInfo"]["devEui"]
    return msg


def render(e: SimUplink, fmt: str = "tts", payload_mode: str = "both") -> tuple[str, bytes]:
    """The MQTT topic and the message body of one simulated uplink in format 'tts' or 'chirpstack'.

    ``payload_mode``: 'binary' (base64 payload only), 'decoded' (decoded fields only) or 'both'."""
    body = json.dumps(_encode(e, fmt, payload_mode), separators=(",", ":")).encode()
    if e.fault == "invalid_json":
        body = body[: len(body) // 2]
    return topic_for(fmt, e.device.dev_eui, e.device.id.lower()), body


def stream(
    events: list[SimUplink], fmt: str = "tts", payload_mode: str = "both"
) -> Iterator[tuple[float, str, bytes]]:
    """``(time, topic, body)`` for each event, in delivery order."""
    for e in events:
        topic, body = render(e, fmt, payload_mode)
        yield e.time, topic, body
