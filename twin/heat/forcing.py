"""Meteorological forcing of the heat model: one reference station's weather as a time series.

A `Forcing` holds air temperature, humidity, wind, global radiation and pressure at ascending UTC
times, with its provenance in words (``source``) and, where known, its station. It comes from an
EPW (EnergyPlus weather) file, from a CSV file, or from `synthetic_heat_wave` — a made-up three-day
heat wave under clear skies, not observed data. `Forcing.at` interpolates linearly in time (wind
direction through its u/v components, so 350 and 10 degrees meet at north, not at south).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from twin.errors import DataError

VARIABLES = (
    "t_air_c", "rh_percent", "wind_speed", "wind_from_deg", "global_radiation", "pressure_hpa",
)  # fmt: skip
# Plausible bounds of each variable (inclusive); a value outside is a data error.
BOUNDS = {
    "t_air_c": (-60.0, 60.0),
    "rh_percent": (0.0, 100.0),
    "wind_speed": (0.0, 75.0),
    "wind_from_deg": (0.0, 360.0),
    "global_radiation": (0.0, 1500.0),
    "pressure_hpa": (500.0, 1100.0),
}
UNITS = {
    "t_air_c": "degC",
    "rh_percent": "%",
    "wind_speed": "m/s",
    "wind_from_deg": "degree",
    "global_radiation": "W m-2",
    "pressure_hpa": "hPa",
}
STANDARD_PRESSURE_HPA = 1013.25  # a CSV without pressure: the standard atmosphere at sea level
CSV_COLUMNS = ("time",) + VARIABLES
LOCAL_ZONE = "Europe/Berlin"
LAT, LON = 51.33, 6.56  # Krefeld


@dataclass(frozen=True)
class Forcing:
    """Weather at ascending UTC times (unix seconds, float64); units as in `UNITS`.

    ``source`` says where the numbers come from, e.g. ``"EPW file x.epw"`` or
    ``"synthetic heat wave (...)"``; ``station`` is a dict (id, name, x, y, height, ...) or None."""

    times: np.ndarray
    t_air_c: np.ndarray
    rh_percent: np.ndarray
    wind_speed: np.ndarray
    wind_from_deg: np.ndarray
    global_radiation: np.ndarray
    pressure_hpa: np.ndarray
    source: str
    station: dict[str, Any] | None = field(default=None)

    def __post_init__(self) -> None:
        times = np.array(self.times, dtype=np.float64).reshape(-1)
        if times.size == 0:
            raise DataError(f"{self.source}: forcing has no time steps")
        if not np.all(np.isfinite(times)):
            raise DataError(f"{self.source}: forcing times must be finite")
        if times.size > 1 and not np.all(np.diff(times) > 0):
            i = int(np.flatnonzero(np.diff(times) <= 0)[0]) + 1
            raise DataError(
                f"{self.source}: forcing times must ascend; step {i} ({_iso(times[i])}) is not "
                f"after step {i - 1} ({_iso(times[i - 1])})"
            )
        object.__setattr__(self, "times", times)
        for name in VARIABLES:
            a = np.array(getattr(self, name), dtype=np.float64).reshape(-1)
            if a.size != times.size:
                raise DataError(
                    f"{self.source}: forcing '{name}' has {a.size} values for {times.size} times"
                )
            lo, hi = BOUNDS[name]
            bad = np.flatnonzero(~np.isfinite(a) | (a < lo) | (a > hi))
            if bad.size:
                i = int(bad[0])
                raise DataError(
                    f"{self.source}: forcing '{name}' at {_iso(times[i])} is {float(a[i])!r}; expected "
                    f"{lo:g}..{hi:g} {UNITS[name]}"
                )
            object.__setattr__(self, name, a)

    @property
    def start(self) -> float:
        """First time (UTC unix s)."""
        return float(self.times[0])

    @property
    def end(self) -> float:
        """Last time (UTC unix s)."""
        return float(self.times[-1])

    def sample(self, t: float | np.ndarray) -> dict[str, np.ndarray]:
        """Every variable at times ``t`` (array), linear in time; wind direction through u/v."""
        t = np.asarray(t, dtype=np.float64)
        outside = (t < self.times[0]) | (t > self.times[-1]) | ~np.isfinite(t)
        if np.any(outside):
            bad = float(np.asarray(t)[outside].flat[0])
            raise DataError(
                f"{self.source}: no forcing at {_iso(bad)}; it covers {_iso(self.start)} to "
                f"{_iso(self.end)}"
            )
        out = {
            name: np.interp(t, self.times, getattr(self, name))
            for name in VARIABLES
            if name != "wind_from_deg"
        }
        out["wind_from_deg"] = _interp_direction(t, self.times, self.wind_from_deg, self.wind_speed)
        return out

    def at(self, t: float) -> dict[str, float]:
        """Every variable at time ``t`` (UTC unix s) as floats (see `sample`)."""
        return {k: float(v) for k, v in self.sample(np.float64(t)).items()}

    def window(self, start: float, end: float) -> Forcing:
        """The part of the forcing a run from ``start`` to ``end`` needs (the samples bracketing
        it); an error naming the missing stretch if the forcing does not cover it."""
        if not end >= start:
            raise DataError(f"{self.source}: run window ends ({_iso(end)}) before it starts")
        missing = []
        if start < self.start:
            missing.append(f"{_iso(start)} to {_iso(self.start)}")
        if end > self.end:
            missing.append(f"{_iso(self.end)} to {_iso(end)}")
        if missing:
            raise DataError(
                f"{self.source}: forcing covers {_iso(self.start)} to {_iso(self.end)}, the run "
                f"needs {_iso(start)} to {_iso(end)}; missing {' and '.join(missing)}"
            )
        i0 = max(0, int(np.searchsorted(self.times, start, side="right")) - 1)
        i1 = min(self.times.size, int(np.searchsorted(self.times, end, side="left")) + 1)
        parts = {name: getattr(self, name)[i0:i1] for name in ("times",) + VARIABLES}
        return Forcing(**parts, source=self.source, station=self.station)


def _interp_direction(
    t: np.ndarray, times: np.ndarray, direction: np.ndarray, speed: np.ndarray
) -> np.ndarray:
    """Wind-from direction (deg) at ``t``: u/v components interpolated, then back to an angle.

    Speed-weighted components, so a calm sample's direction counts for nothing; where the
    interpolated vector vanishes (two calms, or opposite winds of equal speed) unit vectors, and
    failing those the nearer sample's direction."""
    rad = np.radians(direction)
    sx, cx = np.sin(rad), np.cos(rad)
    u = np.interp(t, times, speed * sx)
    v = np.interp(t, times, speed * cx)
    small = np.hypot(u, v) < 1e-9
    if np.any(small):
        u = np.where(small, np.interp(t, times, sx), u)
        v = np.where(small, np.interp(t, times, cx), v)
        small = np.hypot(u, v) < 1e-9
        if np.any(small):
            j = np.clip(np.searchsorted(times, t), 1, max(1, times.size - 1))
            i = np.clip(j - 1, 0, times.size - 1)
            j = np.clip(j, 0, times.size - 1)
            near = np.where(np.abs(t - times[i]) <= np.abs(times[j] - t), i, j)
            u = np.where(small, sx[near], u)
            v = np.where(small, cx[near], v)
    return np.degrees(np.arctan2(u, v)) % 360.0


def _iso(t: float) -> str:
    """A UTC time as ISO 8601 (seconds, or microseconds if it has a fraction), with 'Z'."""
    if not math.isfinite(t):
        return repr(t)
    dt = datetime.fromtimestamp(float(t), UTC)
    spec = "seconds" if float(t).is_integer() else "microseconds"
    return dt.isoformat(timespec=spec).replace("+00:00", "Z")


# -- files -------------------------------------------------------------------------------------------


def read_forcing(path: str | Path, *, year: int | None = None) -> Forcing:
    """A forcing file by its suffix: ``.epw`` (EnergyPlus weather) or ``.csv`` (see
    `write_forcing_csv`). ``year`` puts a typical-year EPW file's rows (whose year field names
    the source year of each month) into one calendar year."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".epw", ".csv"):
        raise DataError(f"{path}: forcing file must end in .epw or .csv, not {path.suffix!r}")
    try:
        text = path.read_text(encoding="utf-8-sig", errors="strict")
    except UnicodeDecodeError:
        text = path.read_text(encoding="latin-1")  # older EPW files carry Latin-1 place names
    except OSError as exc:
        raise DataError(f"{path}: cannot read forcing file: {exc.strerror or exc}") from None
    if suffix == ".epw":
        return _read_epw(path, text, year)
    if year is not None:
        raise DataError(f"{path}: 'year' applies to EPW files only")
    return _read_csv(path, text)


# EPW data row fields (0-based) and the codes that mark a missing value
# (EnergyPlus Auxiliary Programs, "Weather Converter Program", data dictionary of the EPW format).
EPW_FIELDS = {  # variable: (field index, name in the format, missing-value code)
    "t_air_c": (6, "dry bulb temperature", 99.9),
    "rh_percent": (8, "relative humidity", 999.0),
    "pressure_pa": (9, "atmospheric station pressure", 999999.0),
    "global_radiation": (13, "global horizontal radiation", 9999.0),
    "wind_from_deg": (20, "wind direction", 999.0),
    "wind_speed": (21, "wind speed", 999.0),
}
EPW_MIN_FIELDS = 22


def _read_epw(path: Path, text: str, year: int | None) -> Forcing:
    """An EPW file: 8 header lines, then hourly (or sub-hourly) rows in local standard time.

    The row stamped hour h holds the state at the end of hour h (h = 1..24) and the radiation
    summed over that hour (Wh m-2 = mean W m-2); radiation is placed at the stamp as the mean of
    the hours either side (the interval centred there)."""
    lines = text.splitlines()
    if len(lines) < 9:
        raise DataError(
            f"{path}: EPW file has {len(lines)} lines; expected 8 header lines and data"
        )
    loc = next(csv.reader([lines[0]]))
    if not loc or loc[0].strip().upper() != "LOCATION" or len(loc) < 10:
        raise DataError(
            f"{path}: line 1: expected the EPW LOCATION header (LOCATION,city,state,country,source,"
            f"WMO,latitude,longitude,time zone,elevation)"
        )
    header = {}
    for key, i in (("latitude", 6), ("longitude", 7), ("time zone", 8), ("elevation", 9)):
        try:
            header[key] = float(loc[i])
        except ValueError:
            raise DataError(
                f"{path}: line 1, field {i + 1} ({key}): expected a number, got {loc[i].strip()!r}"
            ) from None
    tz = header["time zone"]
    if not -12.0 <= tz <= 14.0:
        raise DataError(f"{path}: line 1, field 9 (time zone): expected -12..14 hours, got {tz:g}")
    per_hour = 1
    periods = next(csv.reader([lines[7]]))
    if not periods or periods[0].strip().upper() != "DATA PERIODS":
        raise DataError(f"{path}: line 8: expected the EPW DATA PERIODS header")
    if len(periods) > 2:
        try:
            per_hour = int(periods[2])
        except ValueError:
            raise DataError(
                f"{path}: line 8, field 3 (records per hour): expected an integer, got "
                f"{periods[2].strip()!r}"
            ) from None
        if per_hour < 1 or 60 % per_hour:
            raise DataError(
                f"{path}: line 8, field 3 (records per hour): expected a divisor of 60, got "
                f"{per_hour}"
            )
    times: list[float] = []
    cols: dict[str, list[float]] = {k: [] for k in EPW_FIELDS}
    for n, line in enumerate(lines[8:], start=9):
        if not line.strip():
            continue
        row = line.split(",")
        if len(row) < EPW_MIN_FIELDS:
            raise DataError(
                f"{path}: line {n}: expected an EPW data row of at least {EPW_MIN_FIELDS} "
                f"comma-separated fields, got {len(row)}"
            )
        stamp = []
        for i, what in enumerate(("year", "month", "day", "hour", "minute")):
            try:
                stamp.append(int(float(row[i])))
            except ValueError:
                raise DataError(
                    f"{path}: line {n}, field {i + 1} ({what}): expected an integer, got "
                    f"{row[i].strip()!r}"
                ) from None
        y, mo, d, h, mi = stamp
        if year is not None:
            y = year
        if not 1 <= h <= 24:
            raise DataError(f"{path}: line {n}, field 4 (hour): expected 1..24, got {h}")
        try:
            day = datetime(y, mo, d, tzinfo=UTC)
        except ValueError as exc:
            raise DataError(f"{path}: line {n}, fields 1-3 (date): {exc} ({y}-{mo}-{d})") from None
        if per_hour == 1:
            local_end = day + timedelta(hours=h)
        else:
            if not 0 < mi <= 60:
                raise DataError(f"{path}: line {n}, field 5 (minute): expected 1..60, got {mi}")
            local_end = day + timedelta(hours=h - 1, minutes=mi)
        t = local_end.timestamp() - tz * 3600.0
        if times and t <= times[-1]:
            hint = "" if year is not None else "; a typical-year file: read it with year=..."
            raise DataError(
                f"{path}: line {n}: time {_iso(t)} (UTC) is not after the previous row's "
                f"({_iso(times[-1])}){hint}"
            )
        times.append(t)
        for key, (i, name, missing) in EPW_FIELDS.items():
            raw = row[i].strip()
            try:
                val = float(raw)
            except ValueError:
                raise DataError(
                    f"{path}: line {n}, field {i + 1} ({name}): expected a number, got {raw!r}"
                ) from None
            if val >= missing or not math.isfinite(val):
                raise DataError(
                    f"{path}: line {n}, field {i + 1} ({name}): missing value ({raw}); the "
                    f"forcing needs every hour"
                )
            var = "pressure_hpa" if key == "pressure_pa" else key
            scale = 0.01 if key == "pressure_pa" else 1.0
            lo, hi = BOUNDS[var]
            if not lo <= val * scale <= hi:
                raise DataError(
                    f"{path}: line {n}, field {i + 1} ({name}): expected {lo / scale:g}.."
                    f"{hi / scale:g}, got {raw}"
                )
            cols[key].append(val)
    if not times:
        raise DataError(f"{path}: EPW file has no data rows after its 8 header lines")
    t_arr = np.array(times)
    ghi = np.array(cols["global_radiation"])
    step = 3600.0 / per_hour
    centred = ghi.copy()
    follows = np.abs(np.diff(t_arr) - step) < 1.0  # the next row is the next interval
    centred[:-1] = np.where(follows, 0.5 * (ghi[:-1] + ghi[1:]), ghi[:-1])
    x = y = float("nan")
    try:
        from twin.geo import wgs84_to_utm

        ux, uy = wgs84_to_utm(header["longitude"], header["latitude"])
        x, y = float(np.asarray(ux).reshape(-1)[0]), float(np.asarray(uy).reshape(-1)[0])
    except DataError:
        pass  # a position outside the projection's domain: no x/y
    station = {
        "id": loc[5].strip(),
        "name": loc[1].strip(),
        "x": x,
        "y": y,
        "height": header["elevation"],
        "lat": header["latitude"],
        "lon": header["longitude"],
        "time_zone_h": tz,
    }
    return Forcing(
        times=t_arr,
        t_air_c=np.array(cols["t_air_c"]),
        rh_percent=np.array(cols["rh_percent"]),
        wind_speed=np.array(cols["wind_speed"]),
        wind_from_deg=np.array(cols["wind_from_deg"]) % 360.0,
        global_radiation=centred,
        pressure_hpa=np.array(cols["pressure_pa"]) / 100.0,
        source=f"EPW file {path.name}",
        station=station,
    )


def _read_csv(path: Path, text: str) -> Forcing:
    """A forcing CSV: optional '# source: ...' / '# station: {json}' lines, a header, rows."""
    lines = text.splitlines()
    meta_source = ""
    station = None
    n = 0
    while n < len(lines) and (lines[n].startswith("#") or not lines[n].strip()):
        body = lines[n].lstrip("#").strip()
        if body.startswith("source:"):
            meta_source = body[len("source:") :].strip()
        elif body.startswith("station:"):
            try:
                station = json.loads(body[len("station:") :])
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{path}: line {n + 1}: '# station:' expects a JSON object: {exc.msg}"
                ) from None
            if not isinstance(station, dict):
                raise DataError(f"{path}: line {n + 1}: '# station:' expects a JSON object")
        n += 1
    if n >= len(lines):
        raise DataError(f"{path}: forcing CSV has no header line ({', '.join(CSV_COLUMNS)})")
    header = [h.strip() for h in next(csv.reader([lines[n]]))]
    required = [c for c in CSV_COLUMNS if c != "pressure_hpa"]
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(
            f"{path}: line {n + 1}: forcing CSV header lacks column(s) {', '.join(missing)}; "
            f"expected {', '.join(CSV_COLUMNS)} (pressure_hpa optional)"
        )
    index = {c: header.index(c) for c in CSV_COLUMNS if c in header}
    times: list[float] = []
    cols: dict[str, list[float]] = {c: [] for c in VARIABLES if c in index}
    for ln, line in enumerate(lines[n + 1 :], start=n + 2):
        if not line.strip() or line.startswith("#"):
            continue
        row = next(csv.reader([line]))
        if len(row) < len(header):
            raise DataError(
                f"{path}: line {ln}: expected {len(header)} fields ({', '.join(header)}), got "
                f"{len(row)}"
            )
        raw = row[index["time"]].strip()
        try:
            dt = datetime.fromisoformat(raw)
        except ValueError:
            dt = None
        if dt is None or dt.tzinfo is None:
            raise DataError(
                f"{path}: line {ln}, column 'time': expected an ISO 8601 time with zone (e.g. "
                f"2026-07-01T12:00:00Z), got {raw!r}"
            )
        t = dt.timestamp()
        if times and t <= times[-1]:
            raise DataError(
                f"{path}: line {ln}, column 'time': {raw} is not after the previous row's "
                f"({_iso(times[-1])}); rows must ascend in time"
            )
        times.append(t)
        for c in cols:
            val_raw = row[index[c]].strip()
            try:
                val = float(val_raw)
            except ValueError:
                val = float("nan")
            lo, hi = BOUNDS[c]
            if not (math.isfinite(val) and lo <= val <= hi):
                raise DataError(
                    f"{path}: line {ln}, column '{c}': expected a number {lo:g}..{hi:g} "
                    f"{UNITS[c]}, got {val_raw!r}"
                )
            cols[c].append(val)
    if not times:
        raise DataError(f"{path}: forcing CSV has no data rows")
    arrays = {c: np.array(v) for c, v in cols.items()}
    if "pressure_hpa" not in arrays:
        arrays["pressure_hpa"] = np.full(len(times), STANDARD_PRESSURE_HPA)
    source = f"CSV file {path.name}" + (f" ({meta_source})" if meta_source else "")
    arrays["wind_from_deg"] = arrays["wind_from_deg"] % 360.0
    return Forcing(times=np.array(times), **arrays, source=source, station=station)


def write_forcing_csv(forcing: Forcing, path: str | Path) -> Path:
    """Write ``forcing`` as a CSV `read_forcing` reads back exactly: '# source:' and
    '# station:' comment lines, a header (`CSV_COLUMNS`), one row per time (UTC, ISO 8601)."""
    path = Path(path)
    buf = io.StringIO()
    buf.write(f"# source: {forcing.source}\n")
    if forcing.station is not None:
        buf.write(f"# station: {json.dumps(forcing.station, ensure_ascii=False)}\n")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for i, t in enumerate(forcing.times):
        w.writerow([_iso(float(t))] + [repr(float(getattr(forcing, c)[i])) for c in VARIABLES])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    tmp.replace(path)
    return path


def reference_station(stations_csv: str | Path, station_id: str = "DWD-05064") -> dict[str, Any]:
    """The row ``station_id`` of a climate-station catalogue as a station dict (id, name, x, y,
    height = ground elevation + sensor height)."""
    path = Path(stations_csv)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise DataError(f"{path}: cannot read the station catalogue: {exc.strerror}") from None
    for n, row in enumerate(rows, start=2):
        if (row.get("id") or "").strip() == station_id:
            try:
                x, y = float(row["x"]), float(row["y"])
                height = float(row["elevation_m"]) + float(row["sensor_height_m"])
            except (KeyError, TypeError, ValueError):
                raise DataError(
                    f"{path}: line {n}: station {station_id} needs numbers in x, y, elevation_m "
                    f"and sensor_height_m"
                ) from None
            return {"id": station_id, "name": row.get("name", "").strip(), "x": x, "y": y,
                    "height": height}  # fmt: skip
    raise DataError(f"{path}: no station with id {station_id}")


# -- the reference station's readings in a sensor store --------------------------------------------

# forcing variable -> the quantity a climate station's readings carry in the sensor store
STORE_QUANTITIES = {
    "t_air_c": "air_temperature",
    "rh_percent": "relative_humidity",
    "global_radiation": "global_radiation",
    "wind_speed": "wind_speed",
    "wind_from_deg": "wind_direction",
}


# (store path, station id, quantity, start, end) -> the station's reading times and values there
StationReader = Callable[[Path, str, str, float, float], tuple[np.ndarray, np.ndarray]]


def forcing_from_store(read: StationReader, path: Path, station: dict[str, Any], start: float,
                       end: float, *, step_s: float = 600.0,
                       max_gap_s: float = 3600.0) -> Forcing:  # fmt: skip
    """The reference station's own readings in the sensor store at ``path`` (read with ``read``,
    which the caller that wires the domains gives: ``twin.app.readings.station_readings``) as the
    forcing from ``start`` to ``end`` (UTC unix s): each quantity's readings averaged in bins of
    ``step_s`` centred on the forcing's times (wind direction as the mean of unit vectors),
    pressure the standard atmosphere. An empty stretch of up to ``max_gap_s`` is bridged linearly
    in time (held at the window's ends); a longer one, or a quantity the station does not report,
    is an error naming the store, the station, the quantity and the stretch."""
    times = start + step_s * np.arange(int(np.ceil((end - start) / step_s - 1e-9)) + 1)
    sid = station["id"]
    values: dict[str, np.ndarray] = {}
    for name, quantity in STORE_QUANTITIES.items():
        t, v = read(path, sid, quantity, times[0] - step_s / 2, times[-1] + step_s / 2)
        t, v = np.asarray(t, dtype=np.float64), np.asarray(v, dtype=np.float64)
        ok = np.isfinite(v) & np.isfinite(t)
        t, v = t[ok], v[ok]
        where = f"{path}: station {sid}: '{quantity}'"
        if t.size == 0:
            raise DataError(f"{where}: no readings from {_iso(times[0])} to {_iso(times[-1])}; "
                            "forcing from a station needs its air temperature, humidity, global "
                            "radiation, wind speed and wind direction")  # fmt: skip
        k = np.clip(np.rint((t - times[0]) / step_s).astype(np.int64), 0, times.size - 1)
        n = np.maximum(np.bincount(k, minlength=times.size).astype(np.float64), 1.0)
        filled = np.bincount(k, minlength=times.size) > 0
        if name == "wind_from_deg":  # angles averaged and bridged as unit vectors
            rad = np.radians(v)
            east, north = (_bridge(times, np.bincount(k, c, times.size) / n, filled, max_gap_s,
                                   where)
                           for c in (np.sin(rad), np.cos(rad)))  # fmt: skip
            values[name] = np.degrees(np.arctan2(east, north)) % 360.0
        else:
            values[name] = _bridge(times, np.bincount(k, v, times.size) / n, filled, max_gap_s,
                                   where)  # fmt: skip
    source = f"readings of station {sid} in sensor store {Path(path).name}"
    return Forcing(times=times, **values,
                   pressure_hpa=np.full(times.size, STANDARD_PRESSURE_HPA),
                   source=source, station=station)  # fmt: skip


def _bridge(times: np.ndarray, binned: np.ndarray, filled: np.ndarray, max_gap_s: float,
            where: str) -> np.ndarray:  # fmt: skip
    """``binned`` with its empty bins filled linearly in time between the filled ones (held at the
    ends), or an error naming the first stretch longer than ``max_gap_s``."""
    have = np.flatnonzero(filled)
    edges = np.concatenate(([times[0]], times[have], [times[-1]]))
    longest = np.diff(edges)
    if np.any(longest > max_gap_s):
        i = int(np.argmax(longest > max_gap_s))
        raise DataError(f"{where}: no readings from {_iso(edges[i])} to {_iso(edges[i + 1])}, "
                        f"longer than the {max_gap_s:g} s a gap may be bridged "
                        "('forcing.max_gap_s')")  # fmt: skip
    return np.interp(times, times[have], binned[have])


# -- synthetic heat wave ---------------------------------------------------------------------------


def _altitude(t_unix: float | np.ndarray, lat_deg: float, lon_deg: float) -> np.ndarray:
    """Geometric sun altitude (deg) at UTC unix times, from `twin.heat.sun`."""
    from twin.heat.sun import solar_position

    return np.asarray(solar_position(np.asarray(t_unix, dtype=np.float64), lat_deg, lon_deg)[0])


def clear_sky_ghi(altitude_deg: float | np.ndarray) -> np.ndarray:
    """Clear-sky global horizontal radiation (W m-2) of Haurwitz (1945) in the form of Reno, Hansen
    and Stein (Sandia report SAND2012-2389): 1098 sin(h) exp(-0.059 / sin(h)) for the sun above
    the horizon, else 0."""
    s = np.sin(np.radians(np.asarray(altitude_deg, dtype=np.float64)))
    safe = np.where(s > 0, s, 1.0)
    return np.where(s > 0, 1098.0 * s * np.exp(-0.059 / safe), 0.0)


def _sunrise(day: date, lat: float, lon: float, zone: ZoneInfo) -> float:
    """UTC time of the (geometric) sunrise on a local calendar day, to about a second."""
    t0 = datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()
    grid = t0 + np.arange(0.0, 14 * 3600.0, 60.0)
    alt = _altitude(grid, lat, lon)
    up = np.flatnonzero((alt[:-1] <= 0) & (alt[1:] > 0))
    if up.size == 0:
        raise DataError(f"synthetic heat wave: no sunrise on {day} at latitude {lat:g}")
    i = int(up[0])
    return float(grid[i] + 60.0 * (-alt[i]) / (alt[i + 1] - alt[i]))


def synthetic_heat_wave(
    start_utc: float | str,
    days: int = 3,
    t_max_c: Sequence[float] = (32.0, 35.0, 37.0),
    t_min_c: Sequence[float] = (18.0, 20.0, 21.0),
    *,
    rh_percent: tuple[float, float] = (30.0, 75.0),
    wind_speed: tuple[float, float] = (1.0, 3.0),
    wind_from_deg: float = 100.0,
    pressure_hpa: float = 1015.0,
    step_s: float = 600.0,
    before_s: float = 0.0,
    peak_hour: float = 15.0,
    lat: float = LAT,
    lon: float = LON,
    zone: str = LOCAL_ZONE,
    station: dict[str, Any] | None = None,
) -> Forcing:
    """A made-up heat wave of ``days`` local calendar days from ``start_utc`` under clear skies.

    Air temperature: day k's minimum ``t_min_c[k]`` at sunrise and maximum ``t_max_c[k]`` at
    ``peak_hour`` local time, joined by half-cosine segments (rise sunrise -> peak, fall peak ->
    next sunrise); before the first sunrise it falls from a peak of t_max_c[0] the day before,
    after the last peak towards t_min_c[-1] at the next sunrise. Humidity and wind follow the same
    0..1 curve: humidity from rh_percent[1] at the minimum to rh_percent[0] at the maximum, wind
    from wind_speed[0] to wind_speed[1]; wind direction and pressure are constant. Global radiation
    is Haurwitz's clear-sky model (`clear_sky_ghi`) at the sun's altitude (`twin.heat.sun`).
    Samples every ``step_s`` seconds from ``start_utc`` to ``days`` x 24 h later, and
    ``before_s`` seconds more before it (e.g. for a sensor stream that starts earlier; the days
    still count from ``start_utc``'s local date)."""
    if isinstance(start_utc, str):
        try:
            dt = datetime.fromisoformat(start_utc)
        except ValueError:
            dt = None
        if dt is None or dt.tzinfo is None:
            raise DataError(f"synthetic heat wave: start {start_utc!r} is not ISO 8601 with zone")
        start = dt.timestamp()
    else:
        start = float(start_utc)
    if days < 1:
        raise DataError(f"synthetic heat wave: days must be at least 1, got {days}")
    if len(t_max_c) < days or len(t_min_c) < days:
        raise DataError(
            f"synthetic heat wave: {days} days need {days} daily maxima and minima, got "
            f"{len(t_max_c)} and {len(t_min_c)}"
        )
    if not step_s > 0:
        raise DataError(f"synthetic heat wave: step_s must be positive, got {step_s}")
    if not 0.0 <= before_s <= 86400.0:
        raise DataError(f"synthetic heat wave: before_s must be 0..86400 s, got {before_s}")
    tz = ZoneInfo(zone)
    first = datetime.fromtimestamp(start, tz).date()
    knots_t: list[float] = []
    knots_v: list[float] = []
    for k in range(-1, days + 1):
        day = first + timedelta(days=k)
        peak = datetime(day.year, day.month, day.day, tzinfo=tz) + timedelta(hours=peak_hour)
        rise = _sunrise(day, lat, lon, tz)
        kk = min(max(k, 0), days - 1)
        if k >= 0:
            knots_t.append(rise)
            knots_v.append(float(t_min_c[min(k, days - 1)]))
        if k < days:
            knots_t.append(peak.timestamp())
            knots_v.append(float(t_max_c[kk]))
    kt, kv = np.array(knots_t), np.array(knots_v)
    lead = math.ceil(before_s / step_s - 1e-9) * step_s
    times = start + np.arange(-lead, days * 86400.0 + 0.5 * step_s, step_s)
    j = np.clip(np.searchsorted(kt, times, side="right"), 1, kt.size - 1)
    a, b = kt[j - 1], kt[j]
    w = 0.5 * (1.0 - np.cos(np.pi * np.clip((times - a) / (b - a), 0.0, 1.0)))
    t_air = kv[j - 1] + (kv[j] - kv[j - 1]) * w
    rising = kv[j] > kv[j - 1]
    warm = np.where(rising, w, 1.0 - w)  # 0 at a minimum, 1 at a maximum
    rh = rh_percent[1] - (rh_percent[1] - rh_percent[0]) * warm
    wind = wind_speed[0] + (wind_speed[1] - wind_speed[0]) * warm
    ghi = clear_sky_ghi(_altitude(times, lat, lon))
    n = times.size
    source = (
        f"synthetic heat wave ({days} days from {_iso(start)}, daily maxima "
        f"{'/'.join(f'{v:g}' for v in t_max_c[:days])} degC at {peak_hour:g}:00 {zone}, minima "
        f"{'/'.join(f'{v:g}' for v in t_min_c[:days])} degC at sunrise, Haurwitz clear-sky "
        f"radiation at {lat:g} N {lon:g} E; made-up numbers, not observed weather)"
    )
    return Forcing(
        times=times,
        t_air_c=t_air,
        rh_percent=rh,
        wind_speed=wind,
        wind_from_deg=np.full(n, float(wind_from_deg) % 360.0),
        global_radiation=ghi,
        pressure_hpa=np.full(n, float(pressure_hpa)),
        source=source,
        station=station,
    )
