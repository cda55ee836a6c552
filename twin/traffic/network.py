"""The city's SUMO road network: netconvert from the pack's OSM streets, public-transport stops and
lines (netconvert's ptstops and ptlines from the OSM route relations), the terminal gates (tagged
nodes or barrier=gate nodes inside the port area, see `find_gates`) and the external road
connections, and checks that demand can rely on.

`network_step()` is the build step (`twin data build`) that writes the net and a facts file
(`krefeld.netfacts.json`: gates, connections, lane counts, signal checks) that demand and scenarios read.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import re
import subprocess
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np
import shapely

from twin.city.build import BuildError, Step, StepContext
from twin.city.osm import OsmData, read_osm
from twin.errors import ConfigError, DataError, TwinError
from twin.geo import wgs84_to_utm
from twin.traffic.install import sumo_binary, sumo_env, sumo_home

NET_FILE = "krefeld.net.xml.gz"
PTSTOPS_FILE = "krefeld.ptstops.xml"
PTLINES_FILE = "krefeld.ptlines.xml"
FACTS_FILE = "krefeld.netfacts.json"
NETWORK_STEP = "traffic_network"

# Road classes whose ends at the network border count as external connections (motorway, federal
# roads and the main roads into the city), and the distance from the border within which a dead end
# is taken as such a connection.
CONNECTION_TYPES = (
    "highway.motorway",
    "highway.motorway_link",
    "highway.trunk",
    "highway.trunk_link",
    "highway.primary",
    "highway.primary_link",
)
BORDER_M = 250.0

# Pedestrian zones are physically drivable (delivery, residents, violators): the legal restriction is
# enforced by camera gates (the virtual barrier), not by the net, because SUMO's own "closed except for
# permitted vehicles" is unreliable (eclipse-sumo/sumo #3633, #17426). Drivers are observed well above
# walking pace in such zones; 15 km/h is the physical speed used here.
ZONE_TYPE = "highway.pedestrian"
ZONE_SPEED_MS = 15.0 / 3.6
# Port and service roads carry lorries: SUMO's OSM type map limits highway=service to delivery vans.
SERVICE_SPEED_MS = 30.0 / 3.6

# A gate on the fence of its area (the area's outline crosses the road beside the gate node) counts
# as inside within this distance.
GATE_FENCE_M = 5.0

_ROAD_CLASSES = "passenger taxi delivery truck trailer bus coach emergency motorcycle moped"


class NetworkError(TwinError):
    """The road network could not be built, or it fails a check that demand relies on."""


# -- SUMO tools --------------------------------------------------------------------------------------


def run_tool(args: list[str], *, what: str, cwd: Path | None = None, timeout: float = 600) -> str:
    """Run a SUMO program or tool; a failure raises NetworkError quoting the tool's own last lines."""
    env = sumo_env()
    try:
        proc = subprocess.run(
            args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise NetworkError(f"{what}: did not finish within {timeout:.0f} s") from None
    except OSError as exc:
        raise NetworkError(f"{what}: cannot start {args[0]}: {exc}") from None
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        tail = " | ".join(lines[-4:]) or f"exit code {proc.returncode}"
        raise NetworkError(f"{what} failed: {tail}")
    return proc.stderr + proc.stdout


# -- netconvert ---------------------------------------------------------------------------------------


def _type_overrides(path: Path) -> Path:
    """An edge-type file that makes pedestrian zones and service roads drivable (see ZONE_SPEED_MS)."""
    path.write_text(
        '<types xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xsi:noNamespaceSchemaLocation="http://sumo.dlr.de/xsd/types_file.xsd">\n'
        f'    <type id="{ZONE_TYPE}" numLanes="1" speed="{ZONE_SPEED_MS:.2f}" priority="1" '
        f'oneway="false" width="4" allow="pedestrian bicycle {_ROAD_CLASSES}"/>\n'
        f'    <type id="highway.service" numLanes="1" speed="{SERVICE_SPEED_MS:.2f}" priority="1" '
        f'oneway="false" allow="pedestrian bicycle {_ROAD_CLASSES}"/>\n'
        "</types>\n",
        encoding="utf-8",
    )
    return path


def netconvert_args(osm: Path, net: Path, stops: Path, lines: Path, types: Path) -> list[str]:
    """The netconvert command line for a city net from OSM (EPSG:25832 coordinates, no offset)."""
    typemap = sumo_home() / "data" / "typemap"
    type_files = [
        typemap / "osmNetconvert.typ.xml",
        typemap
        / "osmNetconvertUrbanDe.typ.xml",  # German urban speed defaults where maxspeed is absent
        typemap / "osmNetconvertBicycle.typ.xml",  # bike lane widths and permissions
        types,
    ]
    return [
        str(sumo_binary("netconvert")),
        "--osm-files", str(osm),
        "--type-files", ",".join(str(t) for t in type_files),
        # planar coordinates are EPSG:25832 as everywhere in the twin (FCD is then usable as is)
        "--proj", "EPSG:25832",
        "--offset.disable-normalization",
        "--osm.lane-access", "--osm.bike-access", "--osm.sidewalks", "--osm.crossings",
        "--osm.turn-lanes", "--osm.all-attributes",
        "--osm.extra-attributes", "ref,hgv,maxweight,access,motor_vehicle,barrier,busway",
        "--output.street-names", "--output.original-names",
        "--geometry.remove.keep-ptstops",
        "--junctions.join",
        "--roundabouts.guess", "--ramps.guess",
        "--tls.guess-signals", "--tls.discard-simple", "--tls.join",
        # actuated programs (gap-based extension between min/max durations) on every signal
        "--tls.default-type", "actuated",
        "--tls.min-dur", "5", "--tls.max-dur", "60",
        "--ptstop-output", str(stops),
        "--ptline-output", str(lines),
        "--ptline-clean-up",
        "--railway.topology.repair",
        "--no-turnarounds.except-deadend",
        "--output-file", str(net),
        "--no-warnings",
        "--log", str(net.parent / "netconvert.log"),
    ]  # fmt: skip


# -- facts: gates, external connections, lanes ---------------------------------------------------------


@dataclass
class Gate:
    """A terminal gate (see `find_gates`) mapped onto the net: where trucks check in and where they go."""

    id: str
    name: str
    x: float
    y: float
    inbound_edge: str
    inbound_pos: float
    outbound_edge: str | None
    terminal_edges: list[str] = field(default_factory=list)


@dataclass
class Connection:
    """A road leaving the network at its border (motorway, federal or main road)."""

    id: str
    name: str
    ref: str
    road_class: str
    entry_edges: list[str] = field(default_factory=list)
    exit_edges: list[str] = field(default_factory=list)


@dataclass
class NetworkFacts:
    """What the scenarios need to know about a built net, written next to it as JSON."""

    net_file: str
    gates: list[Gate] = field(default_factory=list)
    connections: list[Connection] = field(default_factory=list)
    zone_edges: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    signal_problems: list[str] = field(default_factory=list)
    reachability_problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # not fatal: e.g. a cut-off border road

    def to_json(self, path: Path) -> None:
        """Write the facts as JSON."""
        path.write_text(json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n", "utf-8")

    @classmethod
    def from_json(cls, path: Path) -> NetworkFacts:
        """Read facts written by `to_json`."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            data["gates"] = [Gate(**g) for g in data.get("gates", [])]
            data["connections"] = [Connection(**c) for c in data.get("connections", [])]
            return cls(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise DataError(f"{path}: not a readable network facts file: {exc}") from None


def read_net(path: Path, **options: Any) -> Any:
    """Load a SUMO net with sumolib; a broken file gives a DataError naming it.

    The last few nets read are kept (keyed by the file's size and modification time and the
    options): sumolib takes about a second for the city's net, and one run reads it for its
    demand, its controllers and its KPIs. Callers only read the net."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise DataError(f"{path}: not a readable SUMO network: {exc.strerror}") from None
    try:
        return _read_net(str(p.resolve()), st.st_size, st.st_mtime_ns,
                         tuple(sorted(options.items())))  # fmt: skip
    except Exception as exc:  # sumolib raises plain exceptions for broken XML
        raise DataError(f"{path}: not a readable SUMO network: {exc}") from None


@functools.lru_cache(maxsize=4)
def _read_net(path: str, size: int, mtime_ns: int, options: tuple[tuple[str, Any], ...]) -> Any:
    import sumolib

    return sumolib.net.readNet(path, **dict(options))


def _allows(edge: Any, vclass: str) -> bool:
    return edge.allows(vclass) and edge.getFunction() == ""


def downstream_edges(
    start: Iterable[Any], vclass: str, *, blocked: set[str], limit: int = 100000
) -> set[str]:
    """Ids of the edges reachable from `start` (included) for `vclass`, never entering `blocked`."""
    seen = {e.getID() for e in start}
    queue = deque(start)
    while queue and len(seen) < limit:
        edge = queue.popleft()
        for nxt, conns in edge.getOutgoing().items():
            nid = nxt.getID()
            if nid in seen or nid in blocked or not _allows(nxt, vclass):
                continue
            if not any(c.allows(vclass) for c in conns):
                continue
            seen.add(nid)
            queue.append(nxt)
    return seen


def upstream_edges(
    start: Iterable[Any], vclass: str, *, blocked: set[str] = frozenset()
) -> set[str]:
    """Ids of the edges from which `start` can be reached for `vclass`."""
    seen = {e.getID() for e in start}
    queue = deque(start)
    while queue:
        edge = queue.popleft()
        for prev, conns in edge.getIncoming().items():
            pid = prev.getID()
            if pid in seen or pid in blocked or not _allows(prev, vclass):
                continue
            if not any(c.allows(vclass) for c in conns):
                continue
            seen.add(pid)
            queue.append(prev)
    return seen


def _edge_lines(net: Any, edges: list[Any]) -> np.ndarray:
    return np.array([shapely.linestrings(e.getShape()) for e in edges], dtype=object)


def find_connections(net: Any, *, border_m: float = BORDER_M) -> list[Connection]:
    """Dead ends of main roads near the border of the net: where through and freight traffic enters."""
    xmin, ymin, xmax, ymax = net.getBoundary()
    found: dict[str, Connection] = {}
    for node in net.getNodes():
        x, y = node.getCoord()[:2]
        if min(x - xmin, xmax - x, y - ymin, ymax - y) > border_m:
            continue
        inc = [e for e in node.getIncoming() if _allows(e, "truck")]
        out = [e for e in node.getOutgoing() if _allows(e, "truck")]
        neighbours = {e.getFromNode().getID() for e in inc} | {e.getToNode().getID() for e in out}
        if not (inc or out) or len(neighbours) != 1:
            continue  # not a dead end
        edges = inc + out
        if not any(set(e.getType().split("|")) & set(CONNECTION_TYPES) for e in edges):
            continue
        main = max(edges, key=lambda e: e.getPriority())
        found[node.getID()] = Connection(
            id=node.getID(),
            name=main.getName(),
            ref=main.getParam("ref", ""),
            road_class=main.getType().split("|")[-1].removeprefix("highway."),
            entry_edges=sorted(e.getID() for e in out),
            exit_edges=sorted(e.getID() for e in inc),
        )
    return [found[k] for k in sorted(found)]


def parse_tag(text: str, *, what: str) -> tuple[str, str | None]:
    """An OSM tag selector, 'key=value' or 'key=*' (any value), as (key, value or None)."""
    key, eq, value = str(text).partition("=")
    if not eq or not key.strip() or not value.strip():
        raise ConfigError(f"{what}: expected an OSM tag as key=value or key=*, got {text!r}")
    value = value.strip()
    return key.strip(), None if value == "*" else value


def _matches(tags: dict[str, str], selector: tuple[str, str | None]) -> bool:
    key, value = selector
    return key in tags and (value is None or tags[key] == value)


def read_relations(path: Path) -> list[tuple[dict[str, str], list[tuple[str, int, str]]]]:
    """The relations of an OSM XML file: (tags, [(member type, ref, role)]).

    `twin.city.osm.read_osm` reads nodes and ways only; the gate areas may be multipolygons.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    out = []
    try:
        with opener(path, "rb") as f:
            for _, el in ET.iterparse(f, events=("end",)):
                if el.tag == "relation":
                    tags = {t.get("k"): t.get("v") for t in el.iter("tag")}
                    members = [
                        (m.get("type"), int(m.get("ref")), m.get("role") or "")
                        for m in el.iter("member")
                    ]
                    out.append((tags, members))
                    el.clear()
                elif el.tag in ("node", "way"):
                    el.clear()
    except (ET.ParseError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable OSM XML file: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: a relation member lacks a valid ref: {exc}") from None
    return out


def _way_xy(osm: OsmData, refs: list[int]) -> np.ndarray:
    lonlat = np.array([osm.nodes[r] for r in refs], dtype=float)
    return np.column_stack(wgs84_to_utm(lonlat[:, 0], lonlat[:, 1]))


def gate_areas(osm: OsmData, osm_file: Path, selector: tuple[str, str | None]) -> Any:
    """The union (EPSG:25832) of the closed ways and multipolygon relations tagged `selector`."""
    polygons = []
    for refs, tags in osm.ways.values():
        if len(refs) >= 4 and refs[0] == refs[-1] and _matches(tags, selector):
            polygons.append(shapely.Polygon(_way_xy(osm, refs)))
    for tags, members in read_relations(osm_file):
        if tags.get("type") not in ("multipolygon", "boundary") or not _matches(tags, selector):
            continue
        rings = {"outer": [], "inner": []}
        for kind, ref, role in members:
            if kind == "way" and ref in osm.ways:
                rings["inner" if role == "inner" else "outer"].append(
                    shapely.LineString(_way_xy(osm, osm.ways[ref][0]))
                )
        outer = shapely.union_all(list(shapely.polygonize(rings["outer"]).geoms))
        inner = shapely.union_all(list(shapely.polygonize(rings["inner"]).geoms))
        polygons.append(shapely.difference(outer, inner))
    return shapely.union_all([shapely.make_valid(p) for p in polygons])


def find_gates(
    net: Any,
    osm_file: Path,
    connections: list[Connection],
    *,
    gate_area_tag: str = "industrial=port",
    gate_tag: str | None = None,
) -> list[Gate]:
    """Terminal gates on truck roads, mapped onto the net, with their terminal side.

    A gate is an OSM node with `gate_tag` (key=value or key=*) where that is set, else a
    barrier=gate node inside (or on the fence of) an area tagged `gate_area_tag` (a closed way or a
    multipolygon, e.g. the port's landuse area); a gate elsewhere (a farm gate) is not a terminal.
    """
    osm = read_osm(osm_file)
    if gate_tag:
        selector = parse_tag(gate_tag, what="streets layer 'gate_tag'")
        gates = [(n, t) for n, t in osm.node_tags.items() if _matches(t, selector)]
    else:
        area = gate_areas(
            osm, osm_file, parse_tag(gate_area_tag, what="streets layer 'gate_area_tag'")
        )
        gates = []
        for nid, tags in osm.node_tags.items():
            if tags.get("barrier") != "gate":
                continue
            x, y = (float(v) for v in wgs84_to_utm(*osm.nodes[nid]))
            if shapely.dwithin(area, shapely.Point(x, y), GATE_FENCE_M):
                gates.append((nid, tags))
    if not gates:
        return []
    edges = [e for e in net.getEdges() if _allows(e, "truck")]
    if not edges:
        return []
    lines = _edge_lines(net, edges)
    tree = shapely.STRtree(lines)
    external = {e for c in connections for e in (*c.entry_edges, *c.exit_edges)}
    result = []
    for nid, tags in sorted(gates):
        lon, lat = osm.nodes[nid]
        x, y = (float(v) for v in wgs84_to_utm(lon, lat))
        point = shapely.Point(x, y)
        near = [int(i) for i in tree.query(point, predicate="dwithin", distance=5.0)]
        if not near:
            continue  # a gate on a footpath or a field: no truck road passes it
        near.sort(key=lambda i: shapely.distance(lines[i], point))
        candidates = [edges[i] for i in near if shapely.distance(lines[i], point) < 5.0]
        best = None
        for edge in candidates:
            beyond = downstream_edges([edge], "truck", blocked={c.getID() for c in candidates})
            if beyond & external:
                continue  # this direction leads back out: it is the outbound side
            if best is None or len(beyond) < len(best[1]):
                best = (edge, beyond)
        if (
            best is None
        ):  # a gate on a through road: both sides lead out; treat the first as inbound
            best = (candidates[0], {candidates[0].getID()})
        inbound, beyond = best
        outbound = next(
            (c for c in candidates if c is not inbound and c.getToNode() == inbound.getFromNode()),
            None,
        )
        pos = float(shapely.line_locate_point(shapely.linestrings(inbound.getShape()), point))
        pos = min(max(pos, 1.0), inbound.getLength() - 1.0)
        terminal = sorted(
            e
            for e in beyond - {inbound.getID()}
            if net.getEdge(e).getLength() >= 20.0 and _allows(net.getEdge(e), "truck")
        )
        result.append(
            Gate(
                id=str(nid),
                name=tags.get("name", f"gate {nid}"),
                x=x,
                y=y,
                inbound_edge=inbound.getID(),
                inbound_pos=round(pos, 2),
                outbound_edge=outbound.getID() if outbound else None,
                terminal_edges=terminal or [inbound.getID()],
            )
        )
    return result


def _slug(text: str) -> str:
    return re.sub(r"[^\w]+", "_", text).strip("_") or "stop"


def platform_stops(net: Any, osm_file: Path, *, radius_m: float = 40.0) -> list[dict[str, Any]]:
    """Bus/tram stops from OSM platform nodes beside the road (when no route relations give stops).

    A platform (highway=bus_stop, public_transport=platform, railway=tram_stop) yields a stop on the
    nearest street for each direction and mode (bus, tram) whose lanes the mode may use, 20 m long
    (40 m for trams), centred on the platform's projection.
    """
    osm = read_osm(osm_file)
    edges = [
        e for e in net.getEdges() if not e.getFunction() and (e.allows("bus") or e.allows("tram"))
    ]
    if not edges:
        return []
    lines = _edge_lines(net, edges)
    tree = shapely.STRtree(lines)
    stops = []
    for nid, tags in sorted(osm.node_tags.items()):
        if not (
            tags.get("highway") == "bus_stop"
            or tags.get("public_transport") == "platform"
            or tags.get("railway") == "tram_stop"
        ):
            continue
        name = tags.get("name", f"stop {nid}")
        x, y = (float(v) for v in wgs84_to_utm(*osm.nodes[nid]))
        point = shapely.Point(x, y)
        near = sorted(
            (float(shapely.distance(lines[i], point)), int(i))
            for i in tree.query(point, predicate="dwithin", distance=radius_m)
        )
        if not near:
            continue
        street = edges[near[0][1]]
        pair = {street.getFromNode().getID(), street.getToNode().getID()}
        for _, i in near:
            edge = edges[i]
            if {edge.getFromNode().getID(), edge.getToNode().getID()} != pair:
                continue
            for mode, length in (("bus", 20.0), ("tram", 40.0)):
                lane = next((ln for ln in edge.getLanes() if ln.allows(mode)), None)
                if lane is None:
                    continue
                shape = shapely.linestrings(lane.getShape())
                pos = float(shapely.line_locate_point(shape, point))
                end = min(max(pos + length / 2, length), lane.getLength())
                stops.append(
                    {
                        "id": f"{_slug(name)}_{mode}_{edge.getID()}",
                        "name": name,
                        "lane": lane.getID(),
                        "startPos": round(max(0.0, end - length), 2),
                        "endPos": round(end, 2),
                        "mode": mode,
                    }
                )
    return stops


def write_stops(path: Path, netconvert_stops: Path, extra: list[dict[str, Any]]) -> int:
    """The pt stops file: netconvert's stops plus platform stops of names netconvert did not place."""
    text = netconvert_stops.read_text(encoding="utf-8") if netconvert_stops.exists() else ""
    body = re.findall(
        r"<(?:busStop|trainStop)\b.*?(?:/>|</(?:busStop|trainStop)>)", text, flags=re.S
    )
    names = set(re.findall(r'name="([^"]*)"', "".join(body)))
    out = [
        '<additional xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xsi:noNamespaceSchemaLocation="http://sumo.dlr.de/xsd/additional_file.xsd">'
    ]
    out += [f"    {b}" for b in body]
    added = 0
    for s in extra:
        if s["name"] in names:
            continue
        tag = "trainStop" if s["mode"] == "tram" else "busStop"
        out.append(
            f"    <{tag} id={quoteattr(s['id'])} name={quoteattr(s['name'])} lane={quoteattr(s['lane'])} "
            f'startPos="{s["startPos"]:.2f}" endPos="{s["endPos"]:.2f}" friendlyPos="true"/>'
        )
        added += 1
    out.append("</additional>")
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return len(body) + added


def lane_counts(net: Any) -> dict[str, int]:
    """Numbers of edges, signals and special lanes (bus, bike, sidewalk, tram) in the net."""
    counts = {"edges": 0, "bus_lanes": 0, "bike_lanes": 0, "sidewalks": 0, "tram_edges": 0}
    for edge in net.getEdges():
        if edge.getFunction():
            continue
        counts["edges"] += 1
        for lane in edge.getLanes():
            perms = lane.getPermissions()
            if "bus" in perms and "passenger" not in perms:
                counts["bus_lanes"] += 1  # bus lanes, also those open to bikes and taxis
            elif perms == {"bicycle"}:
                counts["bike_lanes"] += 1
            elif perms == {"pedestrian"}:
                counts["sidewalks"] += 1
        if edge.allows("tram"):
            counts["tram_edges"] += 1
    counts["signals"] = len(net.getTrafficLights())
    return counts


# -- checks -------------------------------------------------------------------------------------------


def check_signals(net_file: Path) -> list[str]:
    """Problems of the signal programs: state length vs. controlled links, 'G'-'G' conflicts.

    Two links both 'G' (priority green) in one phase must not be foes in the junction's right-of-way
    matrix that netconvert wrote (SUMO's own conflict definition); SUMO's load-time check ("unsafe
    green phase") is also run.
    """
    net = read_net(net_file, withPrograms=True, withPedestrianConnections=True)
    problems = []
    for tls in net.getTrafficLights():
        links = tls.getLinks()  # tls link index -> [(in lane, out lane, connection)]
        n_links = max(links) + 1 if links else 0
        junction_links: dict[int, list[tuple[Any, int]]] = {}
        for index, items in links.items():
            for in_lane, out_lane, _ in items:
                conn = in_lane.getConnection(out_lane)
                if conn is None:
                    continue
                node = conn.getJunction()
                junction_links.setdefault(index, []).append((node, node.getLinkIndex(conn)))
        for prog_id, program in tls.getPrograms().items():
            for p, phase in enumerate(program.getPhases()):
                where = f"signal '{tls.getID()}' program '{prog_id}' phase {p}"
                if len(phase.state) != n_links:
                    problems.append(
                        f"{where}: {len(phase.state)} signal states for {n_links} controlled links"
                    )
                    continue
                green = [i for i, s in enumerate(phase.state) if s == "G"]
                for a_pos, a in enumerate(green):
                    for b in green[a_pos + 1 :]:
                        if _links_conflict(junction_links.get(a, []), junction_links.get(b, [])):
                            problems.append(f"{where}: links {a} and {b} are both 'G' but conflict")
    problems.extend(_sumo_signal_warnings(net_file))
    return problems


def _links_conflict(a: list[tuple[Any, int]], b: list[tuple[Any, int]]) -> bool:
    for node_a, ia in a:
        for node_b, ib in b:
            same = node_a is node_b and ia >= 0 and ib >= 0 and ia in node_a._foes
            if same and node_a.areFoes(ia, ib):
                return True
    return False


def _sumo_signal_warnings(net_file: Path) -> list[str]:
    """SUMO's own check on loading the net: lanes targeted by several 'G' links."""
    out = run_tool(
        [str(sumo_binary("sumo")), "-n", str(net_file), "--end", "1", "--no-step-log"],
        what=f"sumo loading {net_file.name}",
    )
    return [ln.strip() for ln in out.splitlines() if "Unsafe green phase" in ln]


def check_reachability(net: Any, facts: NetworkFacts) -> list[str]:
    """Problems for freight: every gate reachable by lorry from every connection and back out."""
    problems = []
    for gate in facts.gates:
        inbound = net.getEdge(gate.inbound_edge)
        reach_gate = upstream_edges([inbound], "truck")
        from_terminal = downstream_edges(
            [net.getEdge(e) for e in gate.terminal_edges], "truck", blocked=set()
        )
        for conn in facts.connections:
            if conn.entry_edges and not reach_gate & set(conn.entry_edges):
                problems.append(
                    f"gate '{gate.name}' cannot be reached from connection {conn.ref or conn.id}"
                )
            if conn.exit_edges and not from_terminal & set(conn.exit_edges):
                problems.append(
                    f"connection {conn.ref or conn.id} cannot be reached from gate '{gate.name}'"
                )
    return problems


def connection_warnings(net: Any, facts: NetworkFacts) -> list[str]:
    """Pairs of external connections that cars cannot drive between (e.g. a road cut at the border)."""
    warnings = []
    for conn in facts.connections:
        for edge in conn.entry_edges:
            reach = downstream_edges([net.getEdge(edge)], "passenger", blocked=set())
            for other in facts.connections:
                if other is not conn and other.exit_edges and not reach & set(other.exit_edges):
                    warnings.append(
                        f"connection {other.ref or other.name or other.id} ({other.id}) cannot be "
                        f"reached from connection {conn.ref or conn.name or conn.id} ({conn.id})"
                    )
    return warnings


# -- build --------------------------------------------------------------------------------------------


def build_network(
    osm: Path,
    out_dir: Path,
    *,
    progress: Callable[[str], None] = lambda msg: None,
    strict: bool = True,
    gate_area_tag: str = "industrial=port",
    gate_tag: str | None = None,
) -> NetworkFacts:
    """Build the net, pt stops/lines and facts from an OSM file into `out_dir`; check them.

    Gates are found by `gate_tag` or `gate_area_tag` (see `find_gates`). With `strict`, a signal
    program problem or an unreachable gate raises NetworkError.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    net_file = out_dir / NET_FILE
    types = _type_overrides(out_dir / "krefeld.types.xml")
    progress("netconvert: OSM -> SUMO net")
    args = netconvert_args(osm, net_file, out_dir / PTSTOPS_FILE, out_dir / PTLINES_FILE, types)
    run_tool(args, what=f"netconvert of {osm}")
    types.unlink(missing_ok=True)
    (out_dir / "netconvert.log").unlink(missing_ok=True)
    if not (out_dir / PTLINES_FILE).exists():
        (out_dir / PTLINES_FILE).write_text("<ptLines/>\n", encoding="utf-8")
    progress("checking the net")
    net = read_net(net_file)
    raw_stops = out_dir / "netconvert.ptstops.xml"
    if (out_dir / PTSTOPS_FILE).exists():
        os.replace(out_dir / PTSTOPS_FILE, raw_stops)
    n_stops = write_stops(out_dir / PTSTOPS_FILE, raw_stops, platform_stops(net, osm))
    raw_stops.unlink(missing_ok=True)
    connections = find_connections(net)
    facts = NetworkFacts(
        net_file=NET_FILE,
        connections=connections,
        gates=find_gates(net, osm, connections, gate_area_tag=gate_area_tag, gate_tag=gate_tag),
        zone_edges=sorted(
            e.getID() for e in net.getEdges() if e.getType().split("|")[-1] == ZONE_TYPE
        ),
        counts={**lane_counts(net), "pt_stops": n_stops},
    )
    facts.signal_problems = check_signals(net_file)
    facts.reachability_problems = check_reachability(net, facts)
    facts.warnings = connection_warnings(net, facts)
    facts.to_json(out_dir / FACTS_FILE)
    if strict and (facts.signal_problems or facts.reachability_problems):
        first = (facts.signal_problems + facts.reachability_problems)[0]
        n = len(facts.signal_problems) + len(facts.reachability_problems)
        raise NetworkError(f"{osm}: the SUMO net fails {n} check(s), first: {first}")
    return facts


def _build_step(ctx: StepContext) -> None:
    options = ctx.pack.layers["streets"].options
    for key in ("gate_area_tag", "gate_tag"):  # refused here with the pack file and field
        if options.get(key):
            parse_tag(options[key], what=f"{ctx.pack.file}: 'layers.streets.{key}'")
    try:
        build_network(
            ctx.source("streets"),
            ctx.partial_dir,
            progress=ctx.progress,
            gate_area_tag=options.get("gate_area_tag", "industrial=port"),
            gate_tag=options.get("gate_tag"),
        )
    except NetworkError as exc:
        raise BuildError(f"build step '{NETWORK_STEP}': {exc}") from None


def network_step() -> Step:
    """The build step writing the SUMO net, pt stops and lines, and the network facts."""
    return Step(
        NETWORK_STEP,
        _build_step,
        outputs=(NET_FILE, PTSTOPS_FILE, PTLINES_FILE, FACTS_FILE),
        sources=("streets",),
        version=3,
        doc="SUMO road network (netconvert) with pt stops/lines, gates and connections",
    )
