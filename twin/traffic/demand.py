"""Traffic demand of a scenario variant, written as SUMO route files.

Parts (each optional): background cars with a daily profile (SUMO's randomTrips.py), cyclists (randomTrips),
bus and tram lines with stops and timetables (the net's lines from the OSM route relations, or a fallback
line table on the net's stop names; SUMO's ptlines2flows.py; the timetables are synthetic: a fixed
headway per line and running times from a free-flow run), port lorries between the Rheinhafen
gates and the federal-road connections with gate check-in and optional slot booking, and trips through a
restricted zone carrying a permit class. All randomness derives from one seed through NumPy's SeedSequence,
so a seed gives the same files byte for byte, and variants that share a part share it exactly.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
import shutil
import sys
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np

from twin.errors import ConfigError, DataError
from twin.traffic.install import sumo_binary, sumo_tool
from twin.traffic.network import (
    PTLINES_FILE,
    ZONE_TYPE,
    NetworkError,
    NetworkFacts,
    read_net,
    run_tool,
)

PERMIT_PARAM = "permit"  # vehicle parameter holding the access permit class ("none" for none)
DEMAND_VERSION = 1  # bump when generated files change for the same inputs

# Vehicle types: id -> (vClass, category for KPIs, emission class per model, extra attributes).
# Emission classes: HBEFA 4.2 subsegments (SUMO's HBEFA4 model) and the HBEFA 3.1 equivalents.
VTYPES: dict[str, dict[str, Any]] = {
    "car": {
        "vClass": "passenger",
        "HBEFA4": "HBEFA4/PC_petrol_Euro-6ab",
        "HBEFA3": "HBEFA3/PC_G_EU6",
        "attrs": 'speedDev="0.1" color="0.8,0.8,0.8"',
    },
    "taxi": {
        "vClass": "taxi",
        "HBEFA4": "HBEFA4/PC_diesel_Euro-6ab",
        "HBEFA3": "HBEFA3/PC_D_EU6",
        "attrs": 'speedDev="0.1" color="1,0.85,0"',
    },
    "delivery": {
        "vClass": "delivery",
        "HBEFA4": "HBEFA4/LCV_diesel_N1-III_Euro-6ab",
        "HBEFA3": "HBEFA3/LDV_D_EU6",
        "attrs": 'speedDev="0.1" color="0.3,0.5,1"',
    },
    "truck": {
        "vClass": "truck",
        "HBEFA4": "HBEFA4/TT_AT_gt34-40t_Euro-VI_A-C",
        "HBEFA3": "HBEFA3/HDV_D_EU6",
        "attrs": 'length="16.5" maxSpeed="25" speedDev="0.05" color="0.6,0.3,0.1"',
    },
    "bus": {
        "vClass": "bus",
        "HBEFA4": "HBEFA4/UBus_Std_gt15-18t_Euro-VI_A-C",
        "HBEFA3": "HBEFA3/Bus",
        "attrs": 'speedDev="0" color="0.9,0.1,0.1"',
    },
    "tram": {
        "vClass": "tram",
        "HBEFA4": "Zero",
        "HBEFA3": "Zero",
        "attrs": 'speedDev="0" color="0.95,0.6,0"',
    },
    "bike": {
        "vClass": "bicycle",
        "HBEFA4": "Zero",
        "HBEFA3": "Zero",
        "attrs": 'speedDev="0.15" color="0.1,0.7,0.1"',
    },
}

# Modes of OSM route relations the twin runs, as its vehicle types (other lines, e.g. trains, are not
# simulated: the twin has no vehicle type for them).
TRANSIT_MODES = {"bus": "bus", "trolleybus": "bus", "minibus": "bus", "tram": "tram"}

# Fallback lines for a net without route relations: synthetic SWK-like lines on the pack's stop names
# (line numbers after SWK's scheme; routes and headways are ours, not the published timetable). The
# Krefeld pack's OSM carries the same lines as route relations, which a net built from it provides.
DEFAULT_LINES: list[dict[str, Any]] = [
    {
        "ref": "041",
        "mode": "tram",
        "name": "Tram 041 Rheinstraße - Hauptbahnhof",
        "stops": ["Rheinstraße", "Krefeld Hbf/Ostwall"],
        "headway_min": 10.0,
        "both_directions": True,
    },
    {
        "ref": "044",
        "mode": "tram",
        "name": "Tram 044 Hauptbahnhof - Ostwall",
        "stops": ["Krefeld Hbf/Ostwall", "Ostwall/Rheinstraße"],
        "headway_min": 10.0,
        "both_directions": True,
    },
    {
        "ref": "051",
        "mode": "bus",
        "name": "Bus 051 Hauptbahnhof - Theaterplatz - Rathaus",
        "stops": [
            "Hauptbahnhof",
            "Krefeld Hbf/Ostwall",
            "Ostwall/Rheinstraße",
            "Theaterplatz",
            "Rathaus",
        ],
        "headway_min": 10.0,
        "both_directions": True,
    },
    {
        "ref": "054",
        "mode": "bus",
        "name": "Bus 054 Hauptbahnhof - Südwall - Rathaus",
        "stops": ["Hauptbahnhof", "Südwall", "Rathaus", "St.-Anton-Straße"],
        "headway_min": 15.0,
        "both_directions": True,
    },
    {
        "ref": "076",
        "mode": "bus",
        "name": "Bus 076 Hauptbahnhof - Uerdingen - Rheinhafen",
        "stops": [
            "Hauptbahnhof",
            "Stadtwald",
            "Bockum Uerdinger Straße",
            "Uerdingen Bahnhof",
            "Rheinhafen",
        ],
        "headway_min": 20.0,
        "both_directions": True,
    },
]


@dataclass
class Demand:
    """The generated files of one (variant demand, seed) and what they contain."""

    folder: Path
    route_files: list[Path]
    additional_files: list[Path]
    meta: dict[str, Any] = field(default_factory=dict)


def demand_key(spec: dict[str, Any], seed: int, begin: float, end: float, hours: list[int]) -> str:
    """A short hash of everything a demand depends on (to share it between variants and runs)."""
    payload = {
        "v": DEMAND_VERSION,
        "spec": spec,
        "seed": seed,
        "begin": begin,
        "end": end,
        "h": hours,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]


def _seeds(seed: int, n: int) -> list[int]:
    return [int(s.generate_state(1)[0] % 2**31) for s in np.random.SeedSequence(seed).spawn(n)]


def write_vtypes(path: Path, emission_model: str) -> Path:
    """The vehicle types of the twin with the emission classes of `emission_model`."""
    lines = ["<additional>"]
    for vid, t in VTYPES.items():
        lines.append(
            f'    <vType id="{vid}" vClass="{t["vClass"]}" emissionClass="{t[emission_model]}" {t["attrs"]}/>'
        )
    lines.append("</additional>")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _slices(
    begin: float, end: float, hour_of: Callable[[float], int], profile: list[float], per_hour: float
) -> list[float]:
    """Hourly rates for equal slices (<= 15 min) of [begin, end), from a local-hour profile."""
    n = max(1, math.ceil((end - begin) / 900.0))
    width = (end - begin) / n
    return [per_hour * profile[hour_of(begin + (i + 0.5) * width)] for i in range(n)]


def _random_trips(
    net_file: Path,
    out: Path,
    vtypes: Path,
    *,
    seed: int,
    begin: float,
    end: float,
    rates: list[float],
    vclass: str,
    vtype: str,
    prefix: str,
    fringe_factor: float,
    min_distance: float,
    max_distance: float | None,
    type_weights: Path,
    work: Path,
) -> int:
    """Trips from SUMO's randomTrips.py (validated by duarouter); returns how many were written."""
    if sum(rates) <= 0:
        out.write_text("<routes/>\n", encoding="utf-8")
        return 0
    # randomTrips needs a positive rate per interval; an (almost) empty hour gets a negligible rate
    rates = [max(r, 1e-3) for r in rates]
    args = [
        sys.executable, str(sumo_tool("randomTrips.py")),
        "-n", str(net_file), "-o", str(out), "-a", str(vtypes),
        "--seed", str(seed), "-b", f"{begin:.0f}", "-e", f"{end:.0f}",
        "--insertion-rate", *[f"{r:.3f}" for r in rates],
        "--binomial", "4",
        "--vclass", vclass, "--prefix", prefix,
        "--trip-attributes", f'type="{vtype}" departLane="best" departSpeed="max"',
        "--fringe-factor", f"{fringe_factor:g}",
        "--min-distance", f"{min_distance:g}",
        "--edge-type-file", str(type_weights),
        "--remove-loops", "--validate", "--threads", "1",
    ]  # fmt: skip
    if max_distance:
        args += ["--max-distance", f"{max_distance:g}"]
    # a folder of its own: randomTrips writes its validated routes (routes.rou.xml) into the working
    # folder, and the car and bike runs go side by side
    cwd = work / prefix
    cwd.mkdir(parents=True, exist_ok=True)
    run_tool(args, what=f"randomTrips.py ({prefix})", cwd=cwd)
    return out.read_text(encoding="utf-8").count("<trip ")


def _type_weights(net: Any, path: Path) -> Path:
    """randomTrips edge-type factors: nobody starts or ends in pedestrian zones or port driveways."""
    types = sorted({e.getType() for e in net.getEdges() if e.getType()})
    zero = [t for t in types if ZONE_TYPE in t.split("|") or "highway.service" in t.split("|")]
    path.write_text("".join(f"{t} 0\n" for t in zero), encoding="utf-8")
    return path


# -- public transport -----------------------------------------------------------------------------------


def read_stops(path: Path) -> dict[str, list[dict[str, str]]]:
    """Public-transport stops of a ptstops file: name -> [{id, lane, edge}]."""
    import sumolib

    stops: dict[str, list[dict[str, str]]] = {}
    try:
        for s in sumolib.xml.parse(str(path), ["busStop", "trainStop"]):
            name = s.getAttributeSecure("attr_name", None) or s.id
            edge = s.lane.rsplit("_", 1)[0]
            stops.setdefault(name, []).append({"id": s.id, "lane": s.lane, "edge": edge})
    except Exception as exc:
        raise DataError(f"{path}: not a readable stops file: {exc}") from None
    return stops


def read_lines(path: Path) -> list[dict[str, Any]]:
    """Lines of a ptlines file (netconvert's --ptline-output from OSM route relations), one per
    direction: {id, ref, name, type (the OSM route), mode (TRANSIT_MODES, None if not run), period_s
    (None where the relation gives no interval), stops (stop ids in order)}. No file: no lines."""
    import sumolib

    if not Path(path).exists():
        return []
    lines = []
    try:
        for ln in sumolib.xml.parse(str(path), "ptLine"):
            period = ln.getAttributeSecure("period", None)
            lines.append(
                {
                    "id": ln.id,
                    "ref": ln.getAttributeSecure("line", None) or ln.id,
                    "name": ln.getAttributeSecure("attr_name", None) or "",
                    "type": ln.type,
                    "mode": TRANSIT_MODES.get(ln.type),
                    "period_s": float(period) if period else None,
                    "stops": [b.id for b in (ln.busStop or [])],
                }
            )
    except Exception as exc:  # sumolib raises plain exceptions for broken XML
        raise DataError(f"{path}: not a readable ptlines file: {exc}") from None
    return lines


def _did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    if not close:
        return ""
    quoted = [f"'{c}'" for c in close]
    listed = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    return f" (did you mean {listed}?)"


def check_stop_names(
    ref: str, names: list[str], known: list[str] | dict[str, Any], *, where: str
) -> None:
    """Every stop name of line `ref` is a stop of the net (ptstops' names); else a ConfigError
    naming the line, the stop and the nearest known names."""
    known = sorted(known)
    for name in names:
        if name not in known:
            raise ConfigError(
                f"{where}: line {ref}: no stop named '{name}' in the net"
                f"{_did_you_mean(name, known)}; the net has {len(known)} stop names"
            )


def _line_stop_ids(
    net: Any, line: dict[str, Any], names: list[str], stops: dict[str, list[dict[str, str]]]
) -> list[str]:
    """The stop of each name that gives the cheapest route through all of them in order (Viterbi)."""
    vclass = "tram" if line["mode"] == "tram" else "bus"
    options = []
    for name in names:
        cands = [s for s in stops.get(name, []) if net.getLane(s["lane"]).allows(vclass)]
        if not cands:
            raise ConfigError(
                f"line {line['ref']}: stop '{name}' has no platform on a lane a {vclass} may use"
            )
        options.append(cands)
    best = [(0.0, [c["id"]]) for c in options[0]]
    prev = options[0]
    for cands in options[1:]:
        nxt = []
        for c in cands:
            choice = None
            for (cost, path), p in zip(best, prev, strict=True):
                if not math.isfinite(cost):
                    continue
                route, dc = net.getFastestPath(
                    net.getEdge(p["edge"]), net.getEdge(c["edge"]), vClass=vclass
                )
                if route is None:
                    continue
                if choice is None or cost + dc < choice[0]:
                    choice = (cost + dc, [*path, c["id"]])
            nxt.append(choice or (math.inf, []))
        best, prev = nxt, cands
        if not any(math.isfinite(b[0]) for b in best):
            raise ConfigError(
                f"line {line['ref']}: no {vclass} route reaches stop '{cands[0]['id']}' "
                f"({names[options.index(cands)]}) from the stop before it"
            )
    return min(best, key=lambda b: b[0])[1]


def _table_directions(
    net: Any, line: dict[str, Any], stops: dict[str, list[dict[str, str]]], *, where: str
) -> list[dict[str, Any]]:
    """The directions of a line given by stop names (the fallback table or a scenario's own line)."""
    check_stop_names(line["ref"], line["stops"], stops, where=where)
    names = [line["stops"]]
    if line.get("both_directions", True):
        names.append(list(reversed(line["stops"])))
    headway = line.get("headway_min")
    return [
        {
            "ref": line["ref"],
            "mode": line["mode"],
            "name": line.get("name") or line["ref"],
            "period_s": headway * 60.0 if headway else None,
            "stops": _line_stop_ids(net, line, n, stops),
        }
        for n in names
    ]


def transit_lines(
    spec: dict[str, Any],
    net: Any,
    stops: dict[str, list[dict[str, str]]],
    net_lines: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], str, list[str]]:
    """The line directions a transit demand runs, where their lines come from, and notes.

    The lines are the net's (its OSM route relations) when it has bus or tram lines, else the
    fallback table DEFAULT_LINES on the net's stop names. Without `lines` in the spec all of them
    run; else those named by `ref` (a line with its own `stops` is the scenario's own). The headway
    is the scenario's, else the line's (OSM interval), else the spec's `headway_min`.
    """
    default_s = spec.get("headway_min", 10.0) * 60.0
    notes: list[str] = []
    ours = [ln for ln in net_lines if ln["mode"]]
    others = sorted({f"{ln['ref']} ({ln['type']})" for ln in net_lines if not ln["mode"]})
    if others:
        notes.append(f"Lines of the net not simulated (no vehicle type): {', '.join(others)}.")
    catalogue: dict[str, list[dict[str, Any]]] = {}
    if ours:
        source = "the net's route relations"
        for ln in ours:
            catalogue.setdefault(ln["ref"], []).append({**ln, "name": ln["name"] or ln["ref"]})
    else:
        source = "the fallback line table (twin.traffic.demand.DEFAULT_LINES)"
        wanted = {ln["ref"] for ln in spec.get("lines") or [] if not ln.get("stops")}
        for line in DEFAULT_LINES:
            if spec.get("lines") is None or line["ref"] in wanted:
                catalogue[line["ref"]] = _table_directions(net, line, stops, where=source)
    chosen: list[dict[str, Any]] = []
    if spec.get("lines") is None:
        for directions in catalogue.values():
            chosen += [{**d, "explicit": False} for d in directions]
    for i, line in enumerate(spec.get("lines") or []):
        where = f"[demand.transit] lines[{i}]"
        if line.get("stops"):
            directions = _table_directions(net, line, stops, where=where)
        else:
            directions = [
                d
                for d in catalogue.get(line["ref"], [])
                if not line.get("mode") or d["mode"] == line["mode"]
            ]
            if not directions:
                known = sorted(catalogue)
                raise ConfigError(
                    f"{where}: no {line.get('mode') or 'bus or tram'} line '{line['ref']}' in "
                    f"{source}{_did_you_mean(line['ref'], known)}; lines: {', '.join(known)}"
                )
        headway = line.get("headway_min")
        for d in directions:
            chosen.append(
                {**d, "period_s": headway * 60.0 if headway else d["period_s"], "explicit": True}
            )
    for d in chosen:
        d["period_s"] = d["period_s"] or default_s
    return chosen, source, notes


def _flow_line(ref: str) -> str:
    """The line of ptlines2flows' flows for a ptLine's `line` (its own normalisation)."""
    return ref.replace(" ", "_").replace(";", "+").replace(">", "").replace("<", "")


def _transit(
    net: Any,
    net_file: Path,
    stops_file: Path,
    lines_file: Path,
    spec: dict[str, Any],
    *,
    seed: int,
    begin: float,
    end: float,
    out: Path,
    work: Path,
) -> dict[str, Any]:
    """Bus and tram flows with synthetic timetables (`until` per stop) from ptlines2flows.py."""
    stops = read_stops(stops_file)
    chosen, source, notes = transit_lines(spec, net, stops, read_lines(lines_file))
    short = [d for d in chosen if len(d["stops"]) < 2]
    for d in short:
        if d["explicit"]:
            raise NetworkError(f"line {d['ref']} ({d['name']}): fewer than two stops in the net")
    if short:
        refs = sorted({d["ref"] for d in short})
        notes.append(f"Line directions with fewer than two stops in the net: {', '.join(refs)}.")
    chosen = [d for d in chosen if len(d["stops"]) >= 2]
    ptlines = ["<ptLines>"]
    for n, d in enumerate(chosen):
        ptlines.append(
            f'    <ptLine id="{n}" line={quoteattr(d["ref"])} name={quoteattr(d["name"])} '
            f'type="{d["mode"]}" vClass="{d["mode"]}" period="{d["period_s"]:.0f}">'
        )
        ptlines += [f"        <busStop id={quoteattr(i)}/>" for i in d["stops"]]
        ptlines.append("    </ptLine>")
    ptlines.append("</ptLines>")
    chosen_file = work / "transit.ptlines.xml"
    chosen_file.write_text("\n".join(ptlines) + "\n", encoding="utf-8")
    run_tool(
        [
            sys.executable, str(sumo_tool("ptlines2flows.py")),
            "-n", str(net_file), "-l", str(chosen_file), "-s", str(stops_file),
            "-o", str(out), "-t", str(work / "transit.trips.xml"),
            "-i", str(work / "transit.stopinfos.xml"), "-r", str(work / "transit.vehroutes.xml"),
            "-b", f"{begin:.0f}", "-e", f"{end:.0f}", "--seed", str(seed), "--random-begin",
            "--no-vtypes", "-d", f"{spec.get('stop_duration_s', 20.0):g}", "--stop-duration-slack", "10",
            "-T", "120",
        ],
        what="ptlines2flows.py (bus and tram timetables)",
        cwd=work,
    )  # fmt: skip
    text = out.read_text(encoding="utf-8")
    flows = Counter(m.rsplit(":", 1)[0] for m in re.findall(r'<flow [^>]*\bline="([^"]*)"', text))
    wanted = Counter(_flow_line(d["ref"]) for d in chosen)
    failed = {
        d["ref"]: d["explicit"]
        for d in chosen
        if flows[_flow_line(d["ref"])] < wanted[_flow_line(d["ref"])]
    }
    if any(failed.values()):
        raise NetworkError(
            f"no timetable could be built for line(s) {', '.join(r for r, e in failed.items() if e)} "
            "(no route through their stops)"
        )
    if failed:
        notes.append(f"Lines without a route through their stops: {', '.join(sorted(failed))}.")
    return {
        "source": source,
        "lines": sorted({d["ref"] for d in chosen}),
        "directions": len(chosen),
        "flows": text.count("<flow "),
        "notes": notes,
    }


# -- port lorries ---------------------------------------------------------------------------------------


def _truck_network_weights(
    net: Any, spec: dict[str, Any], facts: NetworkFacts, path: Path
) -> tuple[Path, int]:
    """Edge travel times for duarouter: edges off the truck route network cost `network_penalty` times more."""
    types = {f"highway.{t}" for t in spec["network_types"]}
    streets = set(spec["network_streets"])
    refs = set(spec["network_refs"])
    gate_edges = {
        e for g in facts.gates for e in (g.inbound_edge, g.outbound_edge, *g.terminal_edges) if e
    }
    lines = ['<meandata>\n    <interval begin="0" end="1e9" id="truck_network">']
    on = 0
    for edge in net.getEdges():
        if edge.getFunction():
            continue
        tt = edge.getLength() / max(edge.getSpeed(), 0.1)
        member = (
            bool(set(edge.getType().split("|")) & types)
            or edge.getName() in streets
            or edge.getParam("ref", "") in refs
            or edge.getID() in gate_edges
        )
        on += member
        factor = 1.0 if member else spec["network_penalty"]
        lines.append(f'        <edge id={quoteattr(edge.getID())} traveltime="{tt * factor:.3f}"/>')
    lines.append("    </interval>\n</meandata>")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, on


def _truck_lane(net: Any, edge_id: str) -> str:
    edge = net.getEdge(edge_id)
    for lane in edge.getLanes():
        if lane.allows("truck"):
            return lane.getID()
    raise NetworkError(f"edge {edge_id} has no lane lorries may use")


def _trucks(
    net: Any,
    net_file: Path,
    facts: NetworkFacts,
    spec: dict[str, Any],
    *,
    seed: int,
    begin: float,
    end: float,
    hour_of: Callable[[float], int],
    vtypes: Path,
    out: Path,
    work: Path,
) -> dict[str, Any]:
    """Lorries between the gates and the external connections, with check-in at the gates.

    Inbound lorries stop at their gate for a check-in (service time drawn per lorry); with slot booking
    each gate has slots of `slot_minutes` for at most `slot_capacity` lorries, and a lorry's departure
    is moved so that it reaches the gate inside the first slot (at or after its wished time) that has
    room, evenly spread within the slot.
    """
    rng = np.random.default_rng(seed)
    gates = [g for g in facts.gates if not spec["gates"] or g.name in spec["gates"]]
    entries = [c for c in facts.connections if c.entry_edges]
    exits = [c for c in facts.connections if c.exit_edges]
    if not gates or not entries or not exits:
        raise NetworkError("lorry demand needs terminal gates and external connections in the net")
    # expected lorries per slice from the local-hour profile (per_day spread by the profile's shape)
    day_total = sum(spec["profile"]) or 1.0
    per_hour_at_1 = spec["per_day"] / day_total
    n_slices = max(1, math.ceil((end - begin) / 900.0))
    width = (end - begin) / n_slices
    trips = []
    for i in range(n_slices):
        t0 = begin + i * width
        rate = per_hour_at_1 * spec["profile"][hour_of(t0 + width / 2)]
        for _ in range(rng.poisson(rate * width / 3600.0)):
            depart = t0 + rng.uniform(0, width)
            inbound = rng.random() < spec["inbound_share"]
            gate = gates[rng.integers(len(gates))]
            conn = (entries if inbound else exits)[rng.integers(len(entries if inbound else exits))]
            service = max(10.0, rng.normal(spec["gate_service_s"], spec["gate_service_sd_s"]))
            vid = f"truck{len(trips):05d}_{'in' if inbound else 'out'}"  # stable under booking
            trips.append({"id": vid, "depart": depart, "inbound": inbound, "gate": gate, "conn": conn,
                          "service": service})  # fmt: skip
    booked = 0
    if spec["slot_booking"]:
        booked = _book_slots(net, trips, spec, begin=begin, end=end)
    trips.sort(key=lambda t: t["depart"])
    lines = ["<routes>"]
    for t in trips:
        gate, conn, vid = t["gate"], t["conn"], t["id"]
        rerouting = (
            '        <param key="has.rerouting.device" value="true"/>\n'
            if spec["routing"] == "free"
            else ""
        )
        if t["inbound"]:
            dest = gate.terminal_edges[-1]
            lines.append(
                f'    <trip id="{vid}" type="truck" depart="{t["depart"]:.2f}" departLane="best" '
                f'from={quoteattr(conn.entry_edges[0])} to={quoteattr(dest)} arrivalPos="max">\n'
                f'        <stop lane={quoteattr(_truck_lane(net, gate.inbound_edge))} endPos="{gate.inbound_pos:.2f}" '
                f'duration="{t["service"]:.1f}" actType="gate:{gate.id}"/>\n'
                f'        <param key="gate" value={quoteattr(gate.name)}/>\n'
                f'        <param key="{PERMIT_PARAM}" value="truck"/>\n{rerouting}    </trip>'
            )
        else:
            origin = gate.outbound_edge or gate.terminal_edges[-1]
            lines.append(
                f'    <trip id="{vid}" type="truck" depart="{t["depart"]:.2f}" departLane="best" '
                f"from={quoteattr(origin)} to={quoteattr(conn.exit_edges[0])}>\n"
                f'        <param key="gate" value={quoteattr(gate.name)}/>\n'
                f'        <param key="{PERMIT_PARAM}" value="truck"/>\n{rerouting}    </trip>'
            )
    lines.append("</routes>")
    trips_file = work / "trucks.trips.xml"
    trips_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    network_edges = 0
    if spec["routing"] == "network":
        weights, network_edges = _truck_network_weights(
            net, spec, facts, work / "truck_network.weights.xml"
        )
        run_tool(
            [
                str(sumo_binary("duarouter")), "-n", str(net_file), "--route-files", str(trips_file),
                "-a", str(vtypes), "--weight-files", str(weights), "--weight-attribute", "traveltime",
                "-o", str(out), "--vtype-output", str(work / "trucks.vtypes.xml"),
                "--seed", str(seed), "--no-step-log", "--no-warnings",
            ],
            what="duarouter (lorries on the truck route network)",
            cwd=work,
        )  # fmt: skip
        (work / out.name.replace(".xml", ".alt.xml")).unlink(missing_ok=True)
        alt = out.with_name(out.name.replace(".rou.xml", ".rou.alt.xml"))
        alt.unlink(missing_ok=True)
    else:
        out.write_text(trips_file.read_text(encoding="utf-8"), encoding="utf-8")
    return {
        "trucks": len(trips),
        "inbound": sum(t["inbound"] for t in trips),
        "slot_booked": booked,
        "routing": spec["routing"],
        "network_edges": network_edges,
    }


def _book_slots(
    net: Any, trips: list[dict[str, Any]], spec: dict[str, Any], *, begin: float, end: float
) -> int:
    """Move inbound departures so that each gate's arrivals fill booked slots (see `_trucks`)."""
    slot = spec["slot_minutes"] * 60.0
    capacity = spec["slot_capacity"] or max(1, int(0.85 * slot / spec["gate_service_s"]))
    used: dict[tuple[str, int], set[int]] = {}
    travel: dict[tuple[str, str], float] = {}
    booked = 0
    for t in sorted((t for t in trips if t["inbound"]), key=lambda t: t["depart"]):
        gate, conn = t["gate"], t["conn"]
        key = (conn.entry_edges[0], gate.inbound_edge)
        if key not in travel:
            _, cost = net.getFastestPath(net.getEdge(key[0]), net.getEdge(key[1]), vClass="truck")
            travel[key] = float(cost) if cost is not None and math.isfinite(cost) else 0.0
        earliest = begin + travel[key]  # a lorry cannot reach the gate before this
        k = int(math.floor((t["depart"] + travel[key] - begin) / slot))  # the slot it wishes
        arrival = None
        while arrival is None:
            taken = used.setdefault((gate.id, k), set())
            for p in range(capacity):  # positions spread evenly over the slot
                at = begin + k * slot + (p + 0.5) * slot / capacity
                if p not in taken and at >= earliest:
                    taken.add(p)
                    arrival = at
                    break
            k += 1
        t["depart"] = arrival - travel[key]
        booked += 1
    return booked


# -- restricted zone ------------------------------------------------------------------------------------


def zone_routes(net: Any, zone_edges: set[str], rng: np.random.Generator) -> list[str] | None:
    """A random route through the zone: approach, enter, follow the zone streets, leave, go on."""
    entries = []
    for eid in sorted(zone_edges):
        edge = net.getEdge(eid)
        for prev in edge.getIncoming():
            if (
                prev.getID() not in zone_edges
                and prev.allows("passenger")
                and not prev.getFunction()
            ):
                entries.append((prev, edge))
    if not entries:
        return None
    for _ in range(50):
        prev, first = entries[rng.integers(len(entries))]
        path = [first]
        target = int(rng.integers(2, 8))
        while len(path) < target:
            nxt = [
                e for e in path[-1].getOutgoing()
                if e.getID() in zone_edges and e.getToNode() != path[-1].getFromNode() and e not in path
            ]  # fmt: skip
            if not nxt:
                break
            path.append(nxt[rng.integers(len(nxt))])
        exits = [
            e for e in path[-1].getOutgoing()
            if e.getID() not in zone_edges and e.allows("passenger") and e.getToNode() != path[-1].getFromNode()
        ]  # fmt: skip
        if len(path) < 2 or not exits:
            continue
        out = exits[rng.integers(len(exits))]
        before = [
            e for e in prev.getIncoming() if e.allows("passenger") and e.getID() not in zone_edges
        ]
        after = [
            e for e in out.getOutgoing() if e.allows("passenger") and e.getID() not in zone_edges
        ]
        if not before or not after:
            continue
        route = [
            before[rng.integers(len(before))],
            prev,
            *path,
            out,
            after[rng.integers(len(after))],
        ]
        return [e.getID() for e in route]
    return None


def _zone(
    net: Any, spec: dict[str, Any], *, seed: int, begin: float, end: float, out: Path
) -> dict[str, Any]:
    """Through traffic (no permit), deliveries and taxis (permits) driving through the zone streets."""
    rng = np.random.default_rng(seed)
    zone = {
        e.getID()
        for e in net.getEdges()
        if e.getName() in set(spec["streets"]) and not e.getFunction()
    }
    kinds = [
        ("through", "car", "none", spec["through_per_hour"]),
        ("delivery", "delivery", "delivery", spec["delivery_per_hour"]),
        ("taxi", "taxi", "taxi", spec["taxi_per_hour"]),
    ]
    vehicles = []
    for kind, vtype, permit, per_hour in kinds:
        n = rng.poisson(per_hour * (end - begin) / 3600.0)
        for i in range(n):
            route = zone_routes(net, zone, rng)
            if route is None:
                raise NetworkError(
                    f"no route through the zone streets {', '.join(spec['streets'])}"
                )
            depart = float(rng.uniform(begin, end))
            vehicles.append((depart, f"zone_{kind}{i:04d}", vtype, permit, route, kind))
    vehicles.sort()
    lines = ["<routes>"]
    for depart, vid, vtype, permit, route, kind in vehicles:
        lines.append(
            f'    <vehicle id="{vid}" type="{vtype}" depart="{depart:.2f}" departLane="best">'
        )
        lines.append(f'        <route edges="{" ".join(route)}"/>')
        if kind == "delivery":
            mid = [e for e in route if e in zone][0]
            lane = next(ln for ln in net.getEdge(mid).getLanes() if ln.allows("delivery"))
            lines.append(
                f'        <stop lane="{lane.getID()}" endPos="{lane.getLength() * 0.6:.1f}" '
                f'duration="{spec["delivery_stop_s"]:.0f}" actType="delivery"/>'
            )
        lines.append(f'        <param key="{PERMIT_PARAM}" value="{permit}"/>')
        lines.append("    </vehicle>")
    lines.append("</routes>")
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    counts: dict[str, int] = {}
    for v in vehicles:
        counts[v[5]] = counts.get(v[5], 0) + 1
    return {"vehicles": counts, "zone_edges": len(zone)}


# -- all parts ------------------------------------------------------------------------------------------


def build_demand(
    spec: dict[str, Any],
    *,
    seed: int,
    net_file: Path,
    facts: NetworkFacts,
    stops_file: Path,
    begin: float,
    end: float,
    hour_of: Callable[[float], int],
    emission_model: str,
    out_dir: Path,
    lines_file: Path | None = None,
) -> Demand:
    """Write all demand parts of `spec` for one seed into `out_dir`; returns the files and a summary.

    Transit lines come from `lines_file` (default: the ptlines file beside `stops_file`).
    """
    out_dir, net_file, stops_file = out_dir.resolve(), net_file.resolve(), stops_file.resolve()
    lines_file = Path(lines_file) if lines_file else stops_file.with_name(PTLINES_FILE)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / "work"
    work.mkdir(exist_ok=True)
    s_cars, s_bikes, s_transit, s_trucks, s_zone = _seeds(seed, 5)
    net = read_net(net_file)
    model = emission_model if emission_model in ("HBEFA4", "HBEFA3") else "HBEFA4"
    vtypes = write_vtypes(out_dir / "vtypes.add.xml", model)
    weights = _type_weights(net, work / "edge-types.txt")
    routes: list[Path] = []
    meta: dict[str, Any] = {
        "seed": seed,
        "component_seeds": {
            "cars": s_cars,
            "bikes": s_bikes,
            "transit": s_transit,
            "trucks": s_trucks,
            "zone": s_zone,
        },
        "begin_s": begin,
        "end_s": end,
        "emission_model": model,
        "emission_classes": {k: v[model] for k, v in VTYPES.items()},
        "parts": {},
        "notes": [],
    }
    # cars and bikes come from randomTrips.py, a process each that reads the net itself: both run
    # beside each other and beside the transit, truck and zone parts
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="random-trips")
    try:
        random: dict[str, tuple[str, Path, Future[int]]] = {}
        if spec.get("background"):
            b = spec["background"]
            f = out_dir / "cars.trips.xml"
            random["background"] = ("cars", f, pool.submit(
                _random_trips, net_file, f, vtypes, seed=s_cars, begin=begin, end=end,
                rates=_slices(begin, end, hour_of, b["profile"], b["cars_per_hour"]),
                vclass="passenger", vtype="car", prefix="car", fringe_factor=b["fringe_factor"],
                min_distance=b["min_distance_m"], max_distance=None, type_weights=weights,
                work=work))  # fmt: skip
        if spec.get("cyclists"):
            c = spec["cyclists"]
            f = out_dir / "bikes.trips.xml"
            random["cyclists"] = ("bikes", f, pool.submit(
                _random_trips, net_file, f, vtypes, seed=s_bikes, begin=begin, end=end,
                rates=_slices(begin, end, hour_of, c["profile"], c["per_hour"]),
                vclass="bicycle", vtype="bike", prefix="bike", fringe_factor=1.0,
                min_distance=c["min_distance_m"], max_distance=c["max_distance_m"],
                type_weights=weights, work=work))  # fmt: skip
        if spec.get("transit") is not None:
            f = out_dir / "transit.rou.xml"
            meta["parts"]["transit"] = _transit(
                net,
                net_file,
                stops_file,
                lines_file,
                spec["transit"],
                seed=s_transit,
                begin=begin,
                end=end,
                out=f,
                work=work,
            )
            routes.append(f)
            meta["notes"].append(
                f"Bus and tram lines from {meta['parts']['transit']['source']}. Their timetables are "
                "synthetic: a fixed headway per line, running times from a free-flow run of SUMO "
                "(ptlines2flows.py), 20 s dwell plus 10 s slack per stop."
            )
            meta["notes"] += meta["parts"]["transit"].pop("notes")
        if spec.get("trucks") and spec["trucks"]["per_day"] > 0:
            f = out_dir / "trucks.rou.xml"
            meta["parts"]["trucks"] = _trucks(
                net, net_file, facts, spec["trucks"], seed=s_trucks, begin=begin, end=end,
                hour_of=hour_of, vtypes=vtypes, out=f, work=work,
            )  # fmt: skip
            routes.append(f)
        if spec.get("zone"):
            f = out_dir / "zone.rou.xml"
            meta["parts"]["zone"] = _zone(
                net, spec["zone"], seed=s_zone, begin=begin, end=end, out=f
            )
            routes.append(f)
        for part, (what, _, future) in random.items():
            meta["parts"][part] = {what: future.result()}
        routes[:0] = [f for _, f, _ in random.values()]  # in the order they always had
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    shutil.rmtree(work)  # the tools' intermediate files
    for f in routes:
        strip_comments(f)
    (out_dir / "demand.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", "utf-8")
    return Demand(out_dir, routes, [vtypes, stops_file], meta)


def strip_comments(path: Path) -> None:
    """Remove generator comments (which carry dates and paths) so files compare byte for byte."""
    text = path.read_text(encoding="utf-8")
    path.write_text(re.sub(r"<!--.*?-->\s*", "", text, flags=re.S), encoding="utf-8")
