"""Key performance indicators of a traffic run, read from SUMO's own outputs.

Per run (one variant, one seed): trip delays per mode and per line, person delay weighted by occupancy,
stops per vehicle, schedule adherence, transit delay at the treated junctions, gate queues and throughput,
emissions (HBEFA via SUMO's emissions device), zone entries and their detection; and per variant against
the baseline of the same seed: through traffic removed and detour lengths. Rows are long form:
(variant, seed, kpi, value, unit), as written to `kpis.csv`.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from twin.errors import DataError

KPI_COLUMNS = ("variant", "seed", "kpi", "value", "unit")

# Output files of a run folder (one variant, one seed).
TRIPINFO = "tripinfo.xml"
STOPINFO = "stopinfo.xml"
VEHROUTES = "vehroutes.xml"
FCD = "fcd.xml.gz"
EDGEDATA = "edgedata.xml"
TRANSIT_EDGEDATA = "edgedata.transit.xml"
BIKE_EDGEDATA = "edgedata.bike.xml"
GATES_E2 = "gates.e2.xml"
SUMMARY = "summary.xml"
STATISTICS = "statistics.xml"
INSTRUMENTS = "instruments.add.xml"
VTYPES_JSON = "vtypes.json"
TRIPS_CSV = "trips.csv"
SERIES_JSON = "series.json"
JUNCTIONS_CSV = "junctions.csv"
# Modes measured per treated junction (each with its own edge data output, edgedata.mode.<mode>.xml),
# and the columns of a run's junctions.csv.
JUNCTION_MODES = ("bus", "tram", "car", "truck", "bike")
JUNCTION_COLUMNS = ("junction", "mode", "passages", "delay", "stops", "co2", "occupancy")
MODE_PERIOD_S = 60.0  # intervals of the per-mode edge data (those after the warm-up are counted)
# Per-mode stops on the signals' approaches: lane-area detectors over each approach lane the mode may
# use, counting a halt as SUMO's tripinfo waitingCount does (speed below 0.1 m/s, from its first step).
STOPS_E2 = "stops.e2.xml"
_MODE_VCLASS = {
    "bus": "bus",
    "tram": "tram",
    "car": "passenger",
    "truck": "truck",
    "bike": "bicycle",
}

# vClass -> KPI category of a vehicle
_CATEGORY = {
    "passenger": "car",
    "private": "car",
    "evehicle": "car",
    "taxi": "taxi",
    "delivery": "delivery",
    "truck": "truck",
    "trailer": "truck",
    "bus": "bus",
    "coach": "bus",
    "tram": "tram",
    "rail_urban": "tram",
    "bicycle": "bike",
}
ROAD_MOTOR = ("car", "taxi", "delivery", "truck", "bus")


@dataclass
class KpiContext:
    """What the KPI computation needs to know beyond the SUMO outputs."""

    duration_s: float  # the measured period (after the warm-up)
    occupancy: dict[str, float]
    from_s: float = 0.0  # SUMO time where measuring starts (begin + warm-up)
    punctual_window_s: tuple[float, float] = (60.0, 180.0)
    treated_edges: list[str] = field(default_factory=list)  # approaches of the treated junctions
    bike_treated_edges: list[str] = field(default_factory=list)  # of bike priority / green wave
    zone_edges: list[str] = field(default_factory=list)
    permit_classes: list[str] = field(default_factory=list)
    gates: list[dict[str, Any]] = field(default_factory=list)  # {name, edge, pos}
    has_trucks: bool = False
    net_file: Path | None = None  # net of the treated junctions (else: the run.sumocfg's)


@dataclass
class Trip:
    """One vehicle's trip as SUMO reported it (unfinished trips have arrival -1)."""

    id: str
    vtype: str
    category: str
    depart: float
    arrival: float
    duration: float
    route_length: float
    time_loss: float
    waiting_count: int
    stop_time: float
    co2_mg: float
    nox_mg: float

    @property
    def finished(self) -> bool:
        """Whether the vehicle arrived within the simulated time."""
        return self.arrival >= 0


def _iter(path: Path, tag: str) -> Iterator[ET.Element]:
    """Elements `tag` of a (possibly large) SUMO XML output, streamed."""
    if not path.exists():
        return
    try:
        for _, el in ET.iterparse(path, events=("end",)):
            if el.tag == tag:
                yield el
                el.clear()
    except ET.ParseError as exc:
        raise DataError(f"{path}: SUMO output is not complete XML: {exc}") from None


def categories(vtypes_file: Path) -> dict[str, str]:
    """vType id -> KPI category, from the vtypes.json a run writes (vType -> vClass)."""
    try:
        data = json.loads(vtypes_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{vtypes_file}: cannot read vehicle types: {exc}") from None
    return {vid: _CATEGORY.get(info.get("vClass", ""), "other") for vid, info in data.items()}


def read_trips(folder: Path, from_s: float = -math.inf) -> list[Trip]:
    """Trips of a run from tripinfo.xml (finished and unfinished) that departed at `from_s` or later."""
    cats = categories(folder / VTYPES_JSON)
    trips = []
    for el in _iter(folder / TRIPINFO, "tripinfo"):
        if float(el.get("depart")) < from_s:
            continue
        em = el.find("emissions")
        vtype = el.get("vType", "")
        trips.append(
            Trip(
                id=el.get("id"),
                vtype=vtype,
                category=cats.get(vtype, "other"),
                depart=float(el.get("depart")),
                arrival=float(el.get("arrival", -1)),
                duration=float(el.get("duration", 0)),
                route_length=float(el.get("routeLength", 0)),
                time_loss=float(el.get("timeLoss", 0)),
                waiting_count=int(el.get("waitingCount", 0)),
                stop_time=float(el.get("stopTime", 0)),
                co2_mg=float(em.get("CO2_abs", 0)) if em is not None else 0.0,
                nox_mg=float(em.get("NOx_abs", 0)) if em is not None else 0.0,
            )
        )
    return trips


def write_trips_csv(trips: list[Trip], path: Path) -> None:
    """Per-vehicle table of a run (for users and for comparisons between variants)."""
    cols = ["id", "vtype", "category", "depart", "arrival", "duration", "route_length", "time_loss",
            "waiting_count", "stop_time", "co2_mg", "nox_mg"]  # fmt: skip
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for t in trips:
            w.writerow([getattr(t, c) for c in cols])


@dataclass
class ZoneEntry:
    """A vehicle whose driven route entered the restricted zone, and its permit."""

    id: str
    permit: str
    first_edge: str
    time: float


def zone_entries(folder: Path, zone_edges: Iterable[str]) -> list[ZoneEntry]:
    """Vehicles that entered a zone edge, from SUMO's vehicle routes with exit times.

    An edge counts as entered when the vehicle left the edge before it (exit time >= 0), or when it is
    the edge the vehicle departed on. A vehicle's permit is its `permit` parameter, else its vClass.
    """
    zone = set(zone_edges)
    vclass: dict[str, str] = {}
    with contextlib.suppress(OSError, ValueError):
        data = json.loads((folder / VTYPES_JSON).read_text(encoding="utf-8"))
        vclass = {k: v.get("vClass", "") for k, v in data.items()}
    found = []
    for veh in _iter(folder / VEHROUTES, "vehicle"):
        route = veh.find("route")
        if route is None:
            dist = veh.find("routeDistribution")
            route = dist.findall("route")[-1] if dist is not None else None
        if route is None:
            continue
        edges = route.get("edges", "").split()
        exits = [float(x) for x in route.get("exitTimes", "").split()]
        permit = vclass.get(veh.get("type", ""), "none")
        for p in veh.findall("param"):
            if p.get("key") == "permit":
                permit = p.get("value")
        depart = float(veh.get("depart", 0))
        for i, edge in enumerate(edges):
            entered = i == 0 or (i - 1 < len(exits) and exits[i - 1] >= 0)
            if not entered:
                break
            if edge in zone:
                found.append(ZoneEntry(veh.get("id"), permit, edge, exits[i - 1] if i else depart))
                break
    return found


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def run_kpis(folder: Path, ctx: KpiContext) -> list[tuple[str, float, str]]:
    """The KPIs of one run folder as (kpi, value, unit)."""
    trips = read_trips(folder, ctx.from_s)
    write_trips_csv(trips, folder / TRIPS_CSV)
    rows: list[tuple[str, float, str]] = []
    hours = ctx.duration_s / 3600.0
    rows.append(("vehicles_inserted", float(len(trips)), "veh"))
    rows.append(("trips_completed", float(sum(t.finished for t in trips)), "veh"))
    rows.append(("vehicles_running_at_end", float(sum(not t.finished for t in trips)), "veh"))
    by_cat: dict[str, list[Trip]] = {}
    for t in trips:
        by_cat.setdefault(t.category, []).append(t)
    for cat in ("car", "taxi", "delivery", "truck", "bus", "tram", "bike"):
        group = by_cat.get(cat, [])
        if not group:
            continue
        rows.append((f"delay_mean_{cat}", _mean([t.time_loss for t in group]), "s/veh"))
        rows.append((f"time_loss_total_{cat}", sum(t.time_loss for t in group) / 3600.0, "veh*h"))
        rows.append(
            (f"stops_per_vehicle_{cat}", _mean([float(t.waiting_count) for t in group]), "1/veh")
        )
    road = [t for t in trips if t.category in (*ROAD_MOTOR, "bike")]
    rows.append(("stops_per_vehicle", _mean([float(t.waiting_count) for t in road]), "1/veh"))
    persons = [
        (ctx.occupancy.get(t.category, 1.0), t.time_loss) for t in trips if t.category != "other"
    ]
    if persons:
        total_p = sum(p for p, _ in persons)
        rows.append(("person_delay_mean", sum(p * d for p, d in persons) / total_p, "s/person"))
    rows.append(("co2_total", sum(t.co2_mg for t in trips) / 1e6, "kg"))
    rows.append(("nox_total", sum(t.nox_mg for t in trips) / 1e3, "g"))
    rows.extend(_statistics(folder))
    rows.extend(_transit(folder, ctx, trips))
    if ctx.treated_edges:
        rows.extend(_junction_delay(folder / TRANSIT_EDGEDATA, ctx.treated_edges, "transit"))
    if ctx.bike_treated_edges:
        rows.extend(_junction_delay(folder / BIKE_EDGEDATA, ctx.bike_treated_edges, "bike"))
    if ctx.treated_edges or ctx.bike_treated_edges:
        write_junctions_csv(junction_rows(folder, ctx), folder / JUNCTIONS_CSV)
    if ctx.has_trucks:
        rows.extend(_freight(folder, ctx, trips, hours))
    if ctx.zone_edges:
        entries = [e for e in zone_entries(folder, ctx.zone_edges) if e.time >= ctx.from_s]
        permitted = set(ctx.permit_classes)
        non = [e for e in entries if e.permit not in permitted]
        rows.append(("zone_entries_nonpermitted", float(len(non)), "veh"))
        rows.append(("zone_entries_permitted", float(len(entries) - len(non)), "veh"))
        rows.append(("zone_entries_nonpermitted_per_hour", len(non) / hours, "veh/h"))
        logged = violation_log(folder, ctx.from_s)
        if logged is not None:
            actual = {e.id for e in non}
            rows.append(("violations_logged", float(len(logged)), "veh"))
            rows.append(("violations_detected", float(len(actual & logged)), "veh"))
            rows.append(("violations_per_hour", len(logged) / hours, "veh/h"))
            complete = 100.0 * len(actual & logged) / len(actual) if actual else 100.0
            rows.append(("detection_completeness", complete, "%"))
            rows.append(("false_detections", float(len(logged - actual)), "veh"))
    return rows


def violation_log(folder: Path, from_s: float = -math.inf) -> set[str] | None:
    """Vehicles in the virtual barrier's violation logs of a run after `from_s` (None: no barrier).

    A log time is the end of the step the entry was made in; SUMO's routes stamp it with the step's
    start, so a row at `from_s` itself belongs to the step before."""
    files = sorted((folder / "controllers").glob("violations*.csv"))
    if not files:
        return None
    found = set()
    for f in files:
        with f.open(encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if float(row["time_s"]) > from_s:
                    found.add(row["vehicle_id"])
    return found


def _statistics(folder: Path) -> list[tuple[str, float, str]]:
    for el in _iter(folder / STATISTICS, "teleports"):
        return [("teleports", float(el.get("total", 0)), "veh")]
    return []


def _transit(folder: Path, ctx: KpiContext, trips: list[Trip]) -> list[tuple[str, float, str]]:
    """Schedule adherence per line (stop departures against the timetable) and delay per line."""
    early, late = ctx.punctual_window_s
    per_line: dict[str, list[float]] = {}
    for el in _iter(folder / STOPINFO, "stopinfo"):
        if el.get("delay") is None or float(el.get("started", 0)) < ctx.from_s:
            continue  # a stop without timetable (e.g. a gate check-in), or in the warm-up
        per_line.setdefault(_line_of(el.get("id")), []).append(float(el.get("delay")))
    rows: list[tuple[str, float, str]] = []
    if not per_line:
        return rows
    everything = [d for ds in per_line.values() for d in ds]
    rows.append(("schedule_delay_mean", _mean(everything), "s"))
    rows.append(
        ("punctuality", 100.0 * _mean([float(-early <= d <= late) for d in everything]), "%")
    )
    delays: dict[str, list[float]] = {}
    for t in trips:
        if t.category in ("bus", "tram"):
            delays.setdefault(_line_of(t.id), []).append(t.time_loss)
    for line in sorted(per_line):
        ds = per_line[line]
        rows.append((f"schedule_delay_mean_line_{line}", _mean(ds), "s"))
        rows.append(
            (
                f"punctuality_line_{line}",
                100.0 * _mean([float(-early <= d <= late) for d in ds]),
                "%",
            )
        )
        if line in delays:
            rows.append((f"delay_mean_line_{line}", _mean(delays[line]), "s/veh"))
    return rows


def _line_of(vehicle_id: str) -> str:
    """Line of a transit vehicle id ('bus_051-1:0.3' -> '051'; others: the id before its last '.')."""
    base = vehicle_id.split(".")[0]
    base = base.split(":")[0]
    if "_" in base:
        base = base.split("_", 1)[1]
    return base.split("-")[0] if base[:1].isdigit() else base


def _junction_delay(edgedata: Path, edges: list[str], prefix: str) -> list[tuple[str, float, str]]:
    """Time loss of one group (transit, bike) on the approaches of the treated junctions, per passage."""
    treated = set(edges)
    loss, passages = 0.0, 0.0
    for el in _iter(edgedata, "edge"):
        if el.get("id") in treated:
            loss += float(el.get("timeLoss", 0))
            passages += float(el.get("left", 0))
    if passages == 0:
        return [(f"{prefix}_passages_treated", 0.0, "veh")]
    return [
        (f"{prefix}_delay_treated_junctions", loss / passages, "s/passage"),
        (f"{prefix}_passages_treated", passages, "veh"),
    ]


def mode_edgedata(mode: str, kind: str = "traffic") -> str:
    """File name of the edge data of one mode, traffic or emissions (see :func:`instruments`)."""
    return f"edgedata.mode.{mode}.xml" if kind == "traffic" else f"edgedata.mode.{mode}.{kind}.xml"


def _net_of(folder: Path, ctx: KpiContext) -> Path | None:
    """The net of a run: the context's, else the net-file of the run folder's saved configuration."""
    if ctx.net_file is not None:
        return ctx.net_file
    for el in _iter(folder / "run.sumocfg", "net-file"):
        return (folder / el.get("value", "")).resolve()
    return None


def junction_approaches(net: Any, edges: Iterable[str]) -> dict[str, list[str]]:
    """Signal id -> all its approach edges (every mode), for the signals that any of `edges` feeds
    (the treated junctions)."""
    wanted = set(edges)
    out: dict[str, set[str]] = {}
    for tls in net.getTrafficLights():
        incoming = {
            ln.getEdge().getID()
            for ln, _, _ in tls.getConnections()
            if not ln.getEdge().getFunction()
        }
        if incoming & wanted:
            out[tls.getID()] = incoming
    return {j: sorted(e) for j, e in sorted(out.items())}


def _edge_sums(edgedata: Path, from_s: float, attrs: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Edge -> the attributes `attrs` summed over the intervals of an edge data file that begin at
    `from_s` or later."""
    sums: dict[str, np.ndarray] = {}
    for interval in _iter(edgedata, "interval"):
        if float(interval.get("begin", 0)) < from_s - 1e-6:
            continue
        for el in interval.iter("edge"):
            acc = sums.setdefault(el.get("id"), np.zeros(len(attrs)))
            acc += [float(el.get(a, 0)) for a in attrs]
    return sums


def _stop_sums(folder: Path, from_s: float) -> dict[str, dict[str, float]]:
    """Mode -> approach edge -> halts started on its lanes (the stop detectors of :func:`instruments`)
    in the intervals that begin at `from_s` or later."""
    out: dict[str, dict[str, float]] = {}
    for el in _iter(folder / STOPS_E2, "interval"):
        if float(el.get("begin", 0)) < from_s - 1e-6:
            continue
        _, mode, lane = el.get("id", "").split("_", 2)
        edge = lane.rsplit("_", 1)[0]
        per = out.setdefault(mode, {})
        per[edge] = per.get(edge, 0.0) + float(el.get("startedHalts", 0))
    return out


JunctionRow = tuple[str, str, float, float, float, float, float]


def junction_rows(folder: Path, ctx: KpiContext) -> list[JunctionRow]:
    """Per treated signal: (junction, mode, passages, delay s, stops, CO2 g — each per passage —,
    occupancy) for each mode with passages on its approaches after the warm-up, and mode 'person':
    the same per person passage, each mode weighted with the scenario's occupancy. A treated signal
    is one that a treated (transit or bike) approach edge feeds; all its approaches count."""
    from twin.traffic.network import read_net

    net_file = _net_of(folder, ctx)
    if net_file is None:
        return []
    approaches = junction_approaches(
        read_net(net_file), [*ctx.treated_edges, *ctx.bike_treated_edges]
    )
    traffic = {m: _edge_sums(folder / mode_edgedata(m), ctx.from_s, ("timeLoss", "left"))
               for m in JUNCTION_MODES}  # fmt: skip
    co2 = {m: _edge_sums(folder / mode_edgedata(m, "emissions"), ctx.from_s, ("CO2_abs",))
           for m in JUNCTION_MODES}  # fmt: skip
    stops = _stop_sums(folder, ctx.from_s)
    rows: list[JunctionRow] = []
    for junction, edges in approaches.items():
        person = np.zeros(4)  # time loss, passages, stops, CO2 g; each weighted with the occupancy
        for mode in JUNCTION_MODES:
            loss, passages = sum((traffic[mode].get(e, np.zeros(2)) for e in edges), np.zeros(2))
            if passages == 0:
                continue
            n_stops = sum(stops.get(mode, {}).get(e, 0.0) for e in edges)
            grams = sum(float(co2[mode].get(e, np.zeros(1))[0]) for e in edges) / 1000.0
            occ = ctx.occupancy.get(mode, 1.0)
            rows.append((junction, mode, float(passages), float(loss / passages),
                         float(n_stops / passages), float(grams / passages), occ))  # fmt: skip
            person += occ * np.array([loss, passages, n_stops, grams])
        if person[1]:
            loss, passages, n_stops, grams = person
            rows.append((junction, "person", float(passages), float(loss / passages),
                         float(n_stops / passages), float(grams / passages), math.nan))  # fmt: skip
    return rows


def write_junctions_csv(rows: Iterable[JunctionRow], path: Path) -> None:
    """Per-junction table of a run (columns JUNCTION_COLUMNS; delay s, stops and CO2 g per passage;
    for mode 'person' per person passage), written under a temporary name first."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(JUNCTION_COLUMNS)
        for junction, mode, passages, delay, n_stops, grams, occ in rows:
            w.writerow([junction, mode, *(f"{v:.6g}" for v in (passages, delay, n_stops, grams)),
                        "" if math.isnan(occ) else f"{occ:g}"])  # fmt: skip
    tmp.replace(path)


def read_junctions_csv(path: Path) -> list[JunctionRow]:
    """Rows of a run's junctions.csv (an empty occupancy reads as NaN)."""
    with path.open(encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != JUNCTION_COLUMNS:
            raise DataError(f"{path}: expected columns {', '.join(JUNCTION_COLUMNS)}")
        try:
            return [
                (r["junction"], r["mode"], *(float(r[c]) for c in JUNCTION_COLUMNS[2:6]),
                 float(r["occupancy"]) if r["occupancy"] else math.nan)
                for r in reader
            ]  # fmt: skip
        except ValueError as exc:
            raise DataError(f"{path}: a value is not a number: {exc}") from None


def _freight(
    folder: Path, ctx: KpiContext, trips: list[Trip], hours: float
) -> list[tuple[str, float, str]]:
    trucks = [t for t in trips if t.category == "truck"]
    done = [t for t in trucks if t.finished]
    rows = [
        ("truck_trips_completed", float(len(done)), "veh"),
        ("truck_travel_time_mean", _mean([t.duration - t.stop_time for t in done]), "s"),
        ("co2_truck", sum(t.co2_mg for t in trucks) / 1e6, "kg"),
        ("nox_truck", sum(t.nox_mg for t in trucks) / 1e3, "g"),
    ]
    others = [t for t in trips if t.category in ("car", "taxi", "delivery", "bus")]
    rows.append(("delay_mean_other_traffic", _mean([t.time_loss for t in others]), "s/veh"))
    rows.append(
        ("time_loss_total_other_traffic", sum(t.time_loss for t in others) / 3600.0, "veh*h")
    )
    checkins = [c for c in gate_checkins(folder) if c[1] >= ctx.from_s]
    rows.append(("gate_checkins", float(len(checkins)), "veh"))
    rows.append(("gate_throughput", len(checkins) / hours, "veh/h"))
    queues = gate_queues(folder, ctx.from_s)
    means = [m for per in queues.values() for m, _ in per.values()]
    peak = max((p for per in queues.values() for _, p in per.values()), default=0.0)
    if means:
        rows.append(("gate_queue_mean", _mean(means), "veh"))
        rows.append(("gate_queue_max", peak, "veh"))
    from twin.traffic.gates import gate_rows

    rows.extend(gate_rows(folder, ctx.gates, queues, ctx.from_s))
    return rows


def gate_checkins(folder: Path) -> list[tuple[str, float]]:
    """(vehicle, end time) of every finished gate check-in (stops with actType gate:<id>)."""
    out = []
    for el in _iter(folder / STOPINFO, "stopinfo"):
        if (el.get("actType") or "").startswith("gate:"):
            out.append((el.get("id"), float(el.get("ended", -1))))
    return out


def time_series(folder: Path, ctx: KpiContext, *, bin_s: float = 900.0) -> dict[str, Any]:
    """Series for plots: running vehicles and mean speed (summary), gate queue and check-ins per bin."""
    series: dict[str, Any] = {"bin_s": bin_s}
    t, running, halting = [], [], []
    for el in _iter(folder / SUMMARY, "step"):
        time = float(el.get("time")) - ctx.from_s
        if time >= 0 and int(time) % 60 == 0:
            t.append(time)
            running.append(int(el.get("running", 0)))
            halting.append(int(el.get("halting", 0)))
    series["summary"] = {"t": t, "running": running, "halting": halting}
    if ctx.has_trucks:
        q: dict[float, float] = {}
        for per in gate_queues(folder, ctx.from_s).values():
            for begin, (mean, _) in per.items():
                q[begin - ctx.from_s] = q.get(begin - ctx.from_s, 0.0) + mean
        series["gate_queue"] = {"t": sorted(q), "veh": [q[k] for k in sorted(q)]}
        n_bins = max(1, math.ceil(ctx.duration_s / bin_s))
        counts = [0] * n_bins
        for _, end in gate_checkins(folder):
            end -= ctx.from_s
            if 0 <= end < n_bins * bin_s:
                counts[int(end // bin_s)] += 1
        series["gate_checkins"] = {"t": [i * bin_s for i in range(n_bins)], "veh": counts}
    return series


# -- comparisons with the baseline of the same seed -----------------------------------------------------


def read_trips_csv(path: Path) -> dict[str, dict[str, float]]:
    """id -> {route_length, duration, ...} from a run's trips.csv."""
    out = {}
    with path.open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            out[row["id"]] = {
                "route_length": float(row["route_length"]),
                "duration": float(row["duration"]),
                "arrival": float(row["arrival"]),
                "stop_time": float(row["stop_time"]),
            }
    return out


def versus_baseline(base: Path, variant: Path, ctx: KpiContext) -> list[tuple[str, float, str]]:
    """KPIs of a variant that need the baseline run of the same seed (same demand, same vehicles)."""
    rows: list[tuple[str, float, str]] = []
    if not ctx.zone_edges:
        return rows
    permitted = set(ctx.permit_classes)
    before = {
        e.id
        for e in zone_entries(base, ctx.zone_edges)
        if e.permit not in permitted and e.time >= ctx.from_s
    }
    after = {
        e.id
        for e in zone_entries(variant, ctx.zone_edges)
        if e.permit not in permitted and e.time >= ctx.from_s
    }
    if before:
        rows.append(("through_traffic_removed", 100.0 * len(before - after) / len(before), "%"))
    b, v = read_trips_csv(base / TRIPS_CSV), read_trips_csv(variant / TRIPS_CSV)
    detours, extra_time = [], []
    for vid in before - after:
        if vid in b and vid in v and b[vid]["arrival"] >= 0 and v[vid]["arrival"] >= 0:
            detours.append(v[vid]["route_length"] - b[vid]["route_length"])
            extra_time.append(
                (v[vid]["duration"] - v[vid]["stop_time"])
                - (b[vid]["duration"] - b[vid]["stop_time"])
            )
    if detours:
        rows.append(("detour_length_mean", _mean(detours), "m"))
        rows.append(("detour_time_mean", _mean(extra_time), "s"))
        rows.append(("detour_vehicles", float(len(detours)), "veh"))
    return rows


# -- kpis.csv -----------------------------------------------------------------------------------------


def write_kpis_csv(rows: Iterable[tuple[str, int, str, float, str]], path: Path) -> None:
    """Long-form KPI table (variant, seed, kpi, value, unit), written under a temporary name first."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(KPI_COLUMNS)
        for variant, seed, kpi, value, unit in rows:
            w.writerow([variant, seed, kpi, "" if math.isnan(value) else f"{value:.6g}", unit])
    tmp.replace(path)


def read_kpis_csv(path: Path) -> list[tuple[str, int, str, float, str]]:
    """Rows of a kpis.csv (empty values read as NaN)."""
    rows = []
    with path.open(encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != KPI_COLUMNS:
            raise DataError(f"{path}: expected columns {', '.join(KPI_COLUMNS)}")
        for r in reader:
            value = float(r["value"]) if r["value"] else math.nan
            rows.append((r["variant"], int(r["seed"]), r["kpi"], value, r["unit"]))
    return rows


def instruments(
    path: Path,
    *,
    transit_vtypes: list[str],
    gates: list[dict[str, Any]],
    net: Any,
    bike_vtypes: list[str] | None = None,
    mode_vtypes: dict[str, list[str]] | None = None,
) -> Path:
    """Additional file with the run's measuring devices: edge data (all, transit, bikes, and one per
    mode of JUNCTION_MODES, traffic and emissions, for the per-junction delays and CO2), per-mode
    stop detectors and gate queue detectors.

    The per-mode edge data and stop detectors cover the approach edges of every signal, per minute
    (one lane-area detector per approach lane and mode that may use it). `mode_vtypes` names
    the vehicle types of each mode (default: the twin's own demand types by their vClass).

    Each gate gets lane-area detectors over its approach: the gate edge up to the check-in position,
    and the last 150 m of every lane feeding it (so a queue spilling back onto the road is counted),
    and an instant induction loop where each approach lane begins (for the wait per lorry, see
    :mod:`twin.traffic.gates`).
    """
    from twin.traffic.gates import approach_loops, write_approach_info

    approach: dict[str, dict[str, Any]] = {}
    lines = ["<additional>"]
    lines.append(f'    <edgeData id="all" file="{EDGEDATA}" excludeEmpty="true"/>')
    if transit_vtypes:
        lines.append(
            f'    <edgeData id="transit" file="{TRANSIT_EDGEDATA}" vTypes="{" ".join(transit_vtypes)}" '
            'excludeEmpty="true"/>'
        )
    if bike_vtypes:
        lines.append(
            f'    <edgeData id="bike" file="{BIKE_EDGEDATA}" vTypes="{" ".join(bike_vtypes)}" '
            'excludeEmpty="true"/>'
        )
    signal_edges = _signal_approaches(net)
    approaches = " ".join(signal_edges)
    for mode, vtypes in sorted((mode_vtypes or _own_mode_vtypes()).items()):
        if approaches and vtypes and mode in JUNCTION_MODES:
            types = " ".join(vtypes)
            for kind in ("traffic", "emissions"):
                lines.append(
                    f'    <edgeData id="mode_{mode}_{kind}" type="{kind}" '
                    f'file="{mode_edgedata(mode, kind)}" vTypes="{types}" '
                    f'period="{MODE_PERIOD_S:g}" edges="{approaches}" excludeEmpty="true"/>'
                )
            for edge in signal_edges:
                for lane in net.getEdge(edge).getLanes():
                    if lane.allows(_MODE_VCLASS[mode]):
                        lines.append(
                            f'    <laneAreaDetector id="stops_{mode}_{lane.getID()}" '
                            f'lane="{lane.getID()}" pos="0" endPos="{lane.getLength():.2f}" '
                            f'vTypes="{types}" period="{MODE_PERIOD_S:g}" file="{STOPS_E2}" '
                            'timeThreshold="0" speedThreshold="0.1" friendlyPos="true"/>'
                        )
    for g in gates:
        edge = net.getEdge(g["edge"])
        lane = next(ln for ln in edge.getLanes() if ln.allows("truck"))
        parts = [(lane.getID(), 0.0, max(1.0, min(float(g["pos"]), lane.getLength())))]
        feeders = sorted(
            {
                ln.getID(): ln for ln in lane.getIncoming() if not ln.getEdge().getFunction()
            }.values(),
            key=lambda ln: ln.getID(),
        )
        for up in feeders:
            parts.append((up.getID(), max(0.0, up.getLength() - 150.0), up.getLength()))
        for k, (lane_id, start, end) in enumerate(parts):
            lines.append(
                f'    <laneAreaDetector id="gate_{g["id"]}_{k}" lane="{lane_id}" pos="{start:.2f}" '
                f'endPos="{end:.2f}" period="60" file="{GATES_E2}" friendlyPos="true"/>'
            )
        loops, info = approach_loops(net, str(g["id"]), parts)
        lines.extend(loops)
        approach.update(info)
    if approach:
        write_approach_info(path.parent, approach)
    lines.append("</additional>")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _signal_approaches(net: Any) -> list[str]:
    """Approach edges (not internal) of every signal of the net."""
    return sorted(
        {
            ln.getEdge().getID()
            for tls in net.getTrafficLights()
            for ln, _, _ in tls.getConnections()
            if not ln.getEdge().getFunction()
        }
    )


def mode_vtypes_of(vclasses: dict[str, str]) -> dict[str, list[str]]:
    """Mode (KPI category) -> vehicle types, from vType -> vClass (e.g. an existing SUMO config's)."""
    out: dict[str, list[str]] = {}
    for vid, vclass in sorted(vclasses.items()):
        out.setdefault(_CATEGORY.get(vclass, "other"), []).append(vid)
    return out


def _own_mode_vtypes() -> dict[str, list[str]]:
    """Mode -> the twin demand's vehicle types of that mode."""
    from twin.traffic.demand import VTYPES

    return mode_vtypes_of({vid: t["vClass"] for vid, t in VTYPES.items()})


def gate_queues(folder: Path, from_s: float) -> dict[str, dict[float, tuple[float, float]]]:
    """Gate -> interval begin -> (mean, max) lorries and queued vehicles at its approach detectors.

    Per minute, the detectors of one gate (gate edge, feeding lanes) are summed: the mean of each
    detector's per-step maximum jam, and the sum of their maxima.
    """
    out: dict[str, dict[float, tuple[float, float]]] = {}
    for el in _iter(folder / GATES_E2, "interval"):
        begin = float(el.get("begin"))
        if begin < from_s:
            continue
        gate = el.get("id", "").removeprefix("gate_").rsplit("_", 1)[0]
        mean, peak = out.setdefault(gate, {}).get(begin, (0.0, 0.0))
        out[gate][begin] = (
            mean + float(el.get("meanMaxJamLengthInVehicles", 0)),
            peak + float(el.get("maxJamLengthInVehicles", 0)),
        )
    return out
