"""Virtual barrier: a no-entry zone with camera gates, permits, compliance and a violation log.

Closing a road "except for permitted vehicles" has been unreliable in SUMO since 2017
(eclipse-sumo/sumo #3633, #17426) and nothing in SUMO logs violations, so the zone stays open in the
network and this controller enforces and records it:

* Permits. A vehicle's permit class is its vehicle parameter ``permit`` (name configurable), else
  its vType's parameter, else its vClass; it may enter when that class is in ``permit_classes``.
* Compliance. At departure, a share ``compliance`` of the drivers without permit whose route
  crosses the zone avoid it: their own copy of the zone edges' travel time is set prohibitively high
  (``vehicle.setAdaptedTraveltime``, which only that vehicle's router sees) and they are rerouted
  (``rerouteTraveltime``). Other traffic, the zone's permissions and the vClass-dependent driving
  behaviour stay untouched, which changing permissions or vClasses would not guarantee. Drivers
  whose destination lies in the zone, or who have no other way, cannot comply; they are counted.
  The draw per vehicle is a hash of (seed, vehicle id): independent of order and backend.
* Cameras. Each camera gate is a SUMO induction loop (E1) written to an additional file by
  :meth:`VirtualBarrier.detector_file` before SUMO starts: one on the junction-internal lane of every
  connection from outside onto a gate edge (the zone edge entered; on the gate lane itself where the
  net has no internal lanes), and with ``exit_cameras`` one on every connection from the zone to the
  outside. ``field_of_view`` is the number of vehicle lanes of a gate a camera covers, counted from
  the right ("all": every lane); ``gates`` names the gate edges (or single lanes) that get cameras.
  A vehicle passing a loop is read with probability ``read_rate`` (a hash of seed, camera, vehicle
  and time: independent of order and backend). The violation log holds what the cameras read: an
  entry camera's read of a vehicle without permit is a violation; an exit camera's read is one only
  when no entry camera read that vehicle since its last exit read.
* Actual entries, for comparison. The zone plus every edge within ``watch_distance_m`` upstream of a
  gate (more than a vehicle can drive in one step) is watched every step (``Simulation.watch``);
  every driver without permit seen there is tracked, reading its route index, route id and road
  every step until it leaves the region: an entry is every route step from a non-zone edge onto a
  zone edge, so crossings within one step are caught, as are teleports over the zone and route
  changes made by others. Without camera detectors loaded these entries are the log (a warning says
  so).
* Audit. When the run writes SUMO's ``--vehroute-output``, :meth:`VirtualBarrier.audit` (also run by
  :meth:`write_outputs`) compares the camera log with the entries in SUMO's own final routes:
  detection completeness against that ground truth, and false detections.
"""

from __future__ import annotations

import csv
import logging
import random
import xml.etree.ElementTree as ET
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import quoteattr

from traci import constants as tc

from twin.errors import ConfigError
from twin.traffic.controllers.base import (
    Controller,
    Param,
    boolean,
    id_list,
    integer,
    number,
    text,
)

if TYPE_CHECKING:
    from twin.traffic.sim import Simulation

__all__ = ["Violation", "VirtualBarrier"]

log = logging.getLogger(__name__)

_TRACK_VARS = (tc.VAR_ROAD_ID, tc.VAR_ROUTE_INDEX, tc.VAR_ROUTE_ID)
_PROHIBITIVE_S = 1.0e7  # travel time given to zone edges in a complying driver's own router
_CAMERA_POS_M = 0.1  # where a camera's loop lies on its lane
_VEHICLE_CLASSES = ("passenger", "delivery", "taxi", "truck", "bus", "emergency")
_FIELD_OF_VIEW = Param(
    lambda v: v == "all" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1),
    "'all' or an integer >= 1 (lanes covered, from the right)",
    "all",
)


def _drivable(lane: Any) -> bool:
    """Whether a sumolib lane carries motor vehicles (not a sidewalk or a bike lane)."""
    return any(lane.allows(c) for c in _VEHICLE_CLASSES)


def _option_path(args: list[str], option: str) -> Path | None:
    """The value of a SUMO file option in a command line (``--opt value`` or ``--opt=value``)."""
    for i, a in enumerate(args):
        if a == option and i + 1 < len(args):
            return Path(args[i + 1])
        if a.startswith(option + "="):
            return Path(a.split("=", 1)[1])
    return None


@dataclass(frozen=True)
class Violation:
    """One entry into the zone by a vehicle without permit."""

    time: float
    gate: str
    vehicle: str
    vehicle_type: str
    vclass: str
    permit: str
    # "camera": inside the zone at the end of the step it was logged in (a per-step snapshot of the
    # zone would have seen it too); "route": crossed within that step (only the loop saw it)
    detected_by: str
    camera: str = ""  # the induction loop that read it ("": an actual entry from the route)
    camera_role: str = ""  # "entry" or "exit"


@dataclass
class _Tracker:
    route: tuple[str, ...]
    route_id: str
    index: int


@dataclass(frozen=True)
class _Info:
    permitted: bool
    vtype: str
    vclass: str
    permit: str


class VirtualBarrier(Controller):
    """No-entry zone with camera gates, permit classes, a compliance share and a violation log."""

    kind = "virtual_barrier"
    params = {
        "name": text(default="virtual_barrier"),
        "zone_edges": id_list(),
        "gates": id_list("auto", default="auto"),
        "permit_classes": id_list(default=["emergency", "bus", "delivery", "resident"]),
        "permit_param": text(default="permit"),
        "compliance": number(0.0, 1.0, default=0.8),
        "seed": integer(default=0),
        "watch_distance_m": number(1.0, default=None),
        "reroute": boolean(default=True),
        "read_rate": number(0.0, 1.0, default=1.0),
        "field_of_view": _FIELD_OF_VIEW,
        "exit_cameras": boolean(default=False),
    }

    def __init__(
        self,
        *,
        zone_edges: list[str],
        name: str = "virtual_barrier",
        gates: str | list[str] = "auto",
        permit_classes: list[str] | tuple[str, ...] = ("emergency", "bus", "delivery", "resident"),
        permit_param: str = "permit",
        compliance: float = 0.8,
        seed: int = 0,
        watch_distance_m: float | None = None,
        reroute: bool = True,
        read_rate: float = 1.0,
        field_of_view: str | int = "all",
        exit_cameras: bool = False,
    ) -> None:
        if not zone_edges:
            raise ConfigError(f"{name}: zone_edges must name at least one edge")
        self.name = name
        self.zone = frozenset(zone_edges)
        self.gates_spec = gates
        self.permit_classes = frozenset(permit_classes)
        self.permit_param = permit_param
        self.compliance = float(compliance)
        self.seed = int(seed)
        self.watch_distance_m = watch_distance_m
        self.reroute = reroute
        self.read_rate = float(read_rate)
        self.field_of_view = field_of_view
        self.exit_cameras = exit_cameras
        self.violations: list[Violation] = []  # what the cameras read (the actual ones without)
        self.entries: list[Violation] = []  # actual entries, from the vehicles' routes
        self.cameras: dict[str, tuple[str, str]] = {}  # loop id -> (role, zone edge)
        self._on_loop: dict[str, tuple[str, ...]] = {}
        self._open: set[str] = set()  # read at an entry, not yet read leaving
        self.reroutes: list[tuple[float, str, float, float]] = []  # time, vehicle, old m, new m
        self.gates: frozenset[str] = frozenset()
        self._zone_all: frozenset[str] = frozenset()  # zone edges plus internal edges inside it
        self._watched: tuple[str, ...] = ()
        self._region: frozenset[str] = frozenset()
        self._info: dict[str, _Info] = {}
        self._type_permit: dict[str, str] = {}
        self._trackers: dict[str, _Tracker] = {}
        self._length: dict[str, float] = {}
        self._present: set[str] = set()
        self._in_zone: set[str] = set()
        self._permitted_ids: set[str] = set()
        self._vehroute_file: Path | None = None
        self._detectors = False
        self._counts = dict.fromkeys(
            (
                "candidates",
                "through",
                "complying",
                "rerouted",
                "no_alternative",
                "departed_inside",
                "passages",
                "reads",
            ),
            0,
        )
        self._conn: Any = None
        self._t0 = 0.0
        self._t = 0.0

    # -- network structure ----------------------------------------------------------------------
    def _links(self, lane: str) -> list[tuple[str, str]]:
        """(successor lane, via internal lane) of one lane."""
        return [(str(item[0]), str(item[4])) for item in self._conn.lane.getLinks(lane)]

    def _lanes(self, edge: str) -> list[str]:
        return [f"{edge}_{i}" for i in range(self._conn.edge.getLaneNumber(edge))]

    def _edge_of(self, lane: str) -> str:
        return lane.rsplit("_", 1)[0]

    def _edge_length(self, edge: str) -> float:
        v = self._length.get(edge)
        if v is None:
            v = self._length[edge] = float(self._conn.lane.getLength(f"{edge}_0"))
        return v

    def _route_length(self, edges: tuple[str, ...] | list[str]) -> float:
        return sum(self._edge_length(e) for e in edges)

    def _incoming(self, edge: str) -> list[str]:
        """Normal edges with a connection onto ``edge``."""
        conn = self._conn
        out = []
        for f in conn.junction.getIncomingEdges(conn.edge.getFromJunction(edge)):
            if f.startswith(":"):
                continue
            if any(
                self._edge_of(succ) == edge
                for lane in self._lanes(f)
                for succ, _ in self._links(lane)
            ):
                out.append(f)
        return out

    def _internal_between(self, edges: set[str]) -> set[str]:
        """Junction-internal edges on connections from one of ``edges`` to another."""
        out: set[str] = set()
        for e in edges:
            for lane in self._lanes(e):
                for succ, via in self._links(lane):
                    if self._edge_of(succ) not in edges:
                        continue
                    hops = 0
                    while via.startswith(":") and hops < 8:  # internal lanes may be chained
                        out.add(self._edge_of(via))
                        nxt = self._links(via)
                        via = (nxt[0][1] or nxt[0][0]) if nxt else ""
                        hops += 1
        return out

    # -- cameras ----------------------------------------------------------------------------------
    def _seen_lanes(self, edge: Any, named: dict[str, set[str] | None] | None) -> set[str]:
        """Lanes of a zone edge its cameras see: vehicle lanes within the field of view (from the
        right), and of those the lanes named in ``gates`` (all when the edge itself is named)."""
        lanes = [ln for ln in edge.getLanes() if any(ln.allows(c) for c in _VEHICLE_CLASSES)]
        if self.field_of_view != "all":
            lanes = lanes[: int(self.field_of_view)]
        ids = {ln.getID() for ln in lanes}
        if named is not None:
            if edge.getID() not in named:
                return set()
            chosen = named[edge.getID()]
            if chosen is not None:
                ids &= chosen
        return ids

    def camera_sites(self, net: Any) -> list[tuple[str, str, str, float]]:
        """(role, zone edge, lane, position) of every camera's loop, from a sumolib net.

        Entry cameras lie on the internal lane of each connection from outside onto a seen lane of
        a gate edge (on that lane's start without internal lanes); exit cameras, with
        ``exit_cameras``, on each connection from a seen zone lane to the outside (else its end).
        """
        edges = {e.getID(): e for e in net.getEdges()}
        missing = sorted(self.zone - set(edges))
        if missing:
            raise ConfigError(f"{self.name}: zone_edges: edge {missing[0]!r} is not in the network")
        named: dict[str, set[str] | None] | None = None
        if self.gates_spec != "auto":
            named = {}
            for g in self.gates_spec:
                edge = g if g in edges else g.rsplit("_", 1)[0]
                lanes = {ln.getID() for ln in edges[edge].getLanes()} if edge in edges else set()
                if edge not in self.zone or (edge != g and g not in lanes):
                    raise ConfigError(
                        f"{self.name}: gates: {g!r} is not a zone edge or a lane of a zone edge"
                    )
                if edge == g or named.get(edge, set()) is None:
                    named[edge] = None
                else:
                    named.setdefault(edge, set()).add(g)  # type: ignore[union-attr]
        sites: dict[str, tuple[str, str, str, float]] = {}
        for eid in sorted(self.zone):
            edge = edges[eid]
            entry_lanes = self._seen_lanes(edge, named)
            for src, conns in sorted(edge.getIncoming().items(), key=lambda kv: kv[0].getID()):
                if src.getID() in self.zone:
                    continue
                for c in conns:
                    to = c.getToLane().getID()
                    if to in entry_lanes and c.getFromLane().getID() and _drivable(c.getFromLane()):
                        lane = c.getViaLaneID() or to
                        sites.setdefault(lane, ("entry", eid, lane, _CAMERA_POS_M))
            if not self.exit_cameras:
                continue
            exit_lanes = self._seen_lanes(edge, None)
            for dst, conns in sorted(edge.getOutgoing().items(), key=lambda kv: kv[0].getID()):
                if dst.getID() in self.zone:
                    continue
                for c in conns:
                    frm = c.getFromLane().getID()
                    if frm in exit_lanes and _drivable(c.getToLane()):
                        via = c.getViaLaneID()
                        lane, pos = (via, _CAMERA_POS_M) if via else (frm, -_CAMERA_POS_M)
                        sites.setdefault(lane, ("exit", eid, lane, pos))
        return sorted(sites.values(), key=lambda s: (s[0] != "entry", s[1], s[2]))

    def detector_file(self, path: Path, net_file: Path) -> Path:
        """Write the cameras as SUMO induction loops to an additional file (give it to SUMO with
        ``-a``); their hourly counts go to ``cameras.e1.xml`` beside it. Returns ``path``."""
        from twin.traffic.network import read_net

        path = Path(path)
        suffix = "" if self.name == self.kind else f"_{self.name}"
        out = f"cameras{suffix}.e1.xml"
        self.cameras = {}
        lines = ["<additional>"]
        sites = self.camera_sites(read_net(net_file))
        for k, (role, edge, lane, pos) in enumerate(sites):
            loop = f"cam.{self.name}.{role}{k}"
            self.cameras[loop] = (role, edge)
            lines.append(
                f'    <inductionLoop id={quoteattr(loop)} lane={quoteattr(lane)} pos="{pos:g}" '
                f'period="3600" file="{out}" friendlyPos="true"/>'
            )
        lines.append("</additional>")
        if not sites:
            log.warning("%s: no camera gate covers an entry of the zone", self.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self._detectors = True
        return path

    def attach(self, sim: Simulation) -> None:
        """Validate the zone, find its gates and the watched region, start watching it and the
        cameras."""
        conn = sim.conn
        self._conn = conn
        self._t0 = self._t = sim.time
        self._vehroute_file = _option_path(sim.sumo_args, "--vehroute-output")
        known = set(conn.edge.getIDList())
        missing = sorted(self.zone - known)
        if missing:
            raise ConfigError(f"{self.name}: zone_edges: edge {missing[0]!r} is not in the network")
        entries: dict[str, list[str]] = {}
        for e in sorted(self.zone):
            outside = [f for f in self._incoming(e) if f not in self.zone]
            if outside:
                entries[e] = outside
        if self.gates_spec == "auto":
            self.gates = frozenset(entries)
        else:
            gates = set()
            for g in self.gates_spec:
                edge = g if g in known else self._edge_of(g)
                if edge not in self.zone or (edge != g and g not in self._lanes(edge)):
                    raise ConfigError(
                        f"{self.name}: gates: {g!r} is not a zone edge or a lane of a zone edge"
                    )
                gates.add(edge)
            self.gates = frozenset(gates)
            ungated = sorted(set(entries) - self.gates)
            if ungated:
                log.warning(
                    "%s: zone entries without a camera gate: %s (no camera sees entries there)",
                    self.name,
                    ", ".join(ungated),
                )
        if not entries:
            log.warning("%s: the zone has no entry from outside", self.name)
        # watched region: the zone plus everything within reach of one step upstream of its entries
        dt = sim.step_length
        speeds = [conn.lane.getMaxSpeed(f"{f}_0") for fs in entries.values() for f in fs] or [14.0]
        reach = self.watch_distance_m
        if reach is None:
            reach = max(50.0, 2.0 * 1.3 * max(speeds) * dt + 10.0)
        region = set(self.zone)
        queue = deque((f, reach) for fs in entries.values() for f in fs)
        best: dict[str, float] = {}
        while queue:
            edge, left = queue.popleft()
            if edge in self.zone or best.get(edge, -1.0) >= left:
                continue
            best[edge] = left
            region.add(edge)
            rest = left - self._edge_length(edge)
            if rest > 0:
                queue.extend((f, rest) for f in self._incoming(edge))
        inner = self._internal_between(set(self.zone))
        self._zone_all = frozenset(self.zone | inner)
        watched = region | self._internal_between(region)
        self._region = frozenset(watched)
        self._watched = tuple(sorted(watched))
        for e in self._watched:
            sim.watch("edge", e, (tc.LAST_STEP_VEHICLE_ID_LIST,))
        self._ids_on = sim.reader("edge", tc.LAST_STEP_VEHICLE_ID_LIST)
        if self._detectors:
            loaded = set(conn.inductionloop.getIDList())
            missing = sorted(set(self.cameras) - loaded)
            if missing:
                raise ConfigError(
                    f"{self.name}: camera loop {missing[0]!r} is not loaded: give SUMO the file "
                    "written by detector_file() with -a"
                )
            for loop in self.cameras:
                sim.watch("inductionloop", loop, (tc.LAST_STEP_VEHICLE_ID_LIST,))
            self._loop_ids = sim.reader("inductionloop", tc.LAST_STEP_VEHICLE_ID_LIST)
        else:
            log.warning(
                "%s: no camera detectors loaded: the violation log holds the actual entries "
                "from the vehicles' routes",
                self.name,
            )
            self.violations = self.entries
        self._road = sim.reader("vehicle", tc.VAR_ROAD_ID)
        self._route_index = sim.reader("vehicle", tc.VAR_ROUTE_INDEX)
        self._route_id = sim.reader("vehicle", tc.VAR_ROUTE_ID)
        sim.watch_simulation(
            tc.VAR_DEPARTED_VEHICLES_IDS,
            tc.VAR_ARRIVED_VEHICLES_IDS,
            tc.VAR_TELEPORT_STARTING_VEHICLES_IDS,
        )
        # vehicles already in the region: tracked from where they are, nothing logged for that
        for e in self._watched:
            for vid in conn.edge.getLastStepVehicleIDs(e):
                self._present.add(vid)
                if not self._classify(sim, vid).permitted:
                    self._track(sim, vid)

    # -- per vehicle ----------------------------------------------------------------------------
    def _classify(self, sim: Simulation, vid: str) -> _Info:
        info = self._info.get(vid)
        if info is None:
            conn = self._conn
            vtype = conn.vehicle.getTypeID(vid)
            vclass = sim.vehicle_class(vid)
            permit = conn.vehicle.getParameter(vid, self.permit_param)
            if not permit:
                permit = self._type_permit.get(vtype)
                if permit is None:
                    permit = conn.vehicletype.getParameter(vtype, self.permit_param)
                    self._type_permit[vtype] = permit
            permitted = vclass in self.permit_classes or (permit in self.permit_classes)
            info = _Info(permitted, vtype, vclass, permit or vclass)
            self._info[vid] = info
            if permitted:
                self._permitted_ids.add(vid)
        return info

    def _track(self, sim: Simulation, vid: str) -> _Tracker:
        tr = self._trackers.get(vid)
        if tr is None:
            conn = self._conn
            tr = _Tracker(
                tuple(conn.vehicle.getRoute(vid)),
                conn.vehicle.getRouteID(vid),
                int(conn.vehicle.getRouteIndex(vid)),
            )
            self._trackers[vid] = tr
            sim.watch("vehicle", vid, _TRACK_VARS)
        return tr

    def _untrack(self, sim: Simulation, vid: str) -> None:
        if self._trackers.pop(vid, None) is not None:
            sim.unwatch("vehicle", vid, _TRACK_VARS)

    def _advance(self, vid: str, tr: _Tracker, index: int, t: float) -> None:
        """Log an entry for every step of the route from a non-zone edge onto a zone edge."""
        route, zone = tr.route, self.zone
        stop = min(index, len(route) - 1)
        for k in range(max(tr.index + 1, 1), stop + 1):
            if route[k] in zone and route[k - 1] not in zone:
                self._violation(vid, route[k], t)
        tr.index = max(tr.index, stop)

    def _violation(self, vid: str, gate: str, t: float) -> None:
        info = self._info[vid]
        seen = "camera" if vid in self._in_zone else "route"
        self.entries.append(Violation(t, gate, vid, info.vtype, info.vclass, info.permit, seen))

    def _on_departure(self, sim: Simulation, vid: str) -> None:
        info = self._classify(sim, vid)
        if info.permitted:
            return
        conn = self._conn
        route = tuple(conn.vehicle.getRoute(vid))
        index = int(conn.vehicle.getRouteIndex(vid))
        ahead = route[index:]
        if not any(e in self.zone for e in ahead):
            return
        if ahead[0] in self.zone:
            self._counts["departed_inside"] += 1
            return
        self._counts["candidates"] += 1
        through = ahead[-1] not in self.zone
        if through:
            self._counts["through"] += 1
        if not self.reroute or self.compliance <= 0.0:
            return
        if random.Random(f"{self.seed}:{vid}").random() >= self.compliance:
            return  # this driver ignores the barrier
        self._counts["complying"] += 1
        if not through:
            self._counts["no_alternative"] += 1
            return
        for e in self.zone:
            conn.vehicle.setAdaptedTraveltime(vid, e, _PROHIBITIVE_S)
        conn.vehicle.rerouteTraveltime(vid, False)
        new = tuple(conn.vehicle.getRoute(vid))
        new_index = int(conn.vehicle.getRouteIndex(vid))
        if any(e in self.zone for e in new[new_index:]):
            self._counts["no_alternative"] += 1
            conn.vehicle.setRoute(vid, list(ahead))  # no way around: keep the driver's own route
            return
        self._counts["rerouted"] += 1
        self.reroutes.append(
            (self._t, vid, self._route_length(ahead), self._route_length(new[new_index:]))
        )

    # -- stepping -------------------------------------------------------------------------------
    def step(self, sim: Simulation, t: float) -> None:
        """Arrivals, departures (compliance), who is in the region, route progress of trackees."""
        self._t = t
        # drivers that arrived in this step drove their route to its end
        arrived = sim.sim_value(tc.VAR_ARRIVED_VEHICLES_IDS) or ()
        for vid in arrived:
            tr = self._trackers.pop(vid, None)
            if tr is not None:
                self._advance(vid, tr, len(tr.route) - 1, t)
        departed = sim.sim_value(tc.VAR_DEPARTED_VEHICLES_IDS) or ()
        for vid in departed:
            self._on_departure(sim, vid)
        for vid in sim.sim_value(tc.VAR_TELEPORT_STARTING_VEHICLES_IDS) or ():
            if vid not in self._trackers and not self._classify(sim, vid).permitted:
                self._track(sim, vid)  # a teleport may jump over the zone
        # who is in the watched region and in the zone now
        present: set[str] = set()
        in_zone: set[str] = set()
        zone_all = self._zone_all
        ids_on = self._ids_on
        for e in self._watched:
            ids = ids_on(e)
            if ids:
                present.update(ids)
                if e in zone_all:
                    in_zone.update(ids)
        self._in_zone = in_zone
        departed_set = set(departed)
        for vid in present - self._present:
            if vid in self._trackers or self._classify(sim, vid).permitted:
                continue
            tr = self._track(sim, vid)
            if vid in in_zone and vid not in departed_set:
                # first seen inside without being seen upstream: log the entry it must have made
                k = tr.index
                while k > 0 and tr.route[k - 1] in self.zone:
                    k -= 1
                if k > 0 and tr.route[k] in self.zone:
                    self._violation(vid, tr.route[k], t)
        self._present = present
        # route progress of tracked drivers without permit
        for vid, tr in list(self._trackers.items()):
            index = self._route_index(vid)
            if index is None:
                continue  # no results yet (TraCI subscription made this step)
            route_id = self._route_id(vid)
            if route_id != tr.route_id:
                self._new_route(vid, tr, route_id)
            self._advance(vid, tr, int(index), t)
            road = self._road(vid)
            if road and vid not in present and road not in self._region:
                self._untrack(sim, vid)
        if self.cameras:
            self._read_cameras(sim, t)
        for vid in arrived:
            self._info.pop(vid, None)
            self._open.discard(vid)

    def _read_cameras(self, sim: Simulation, t: float) -> None:
        """Every vehicle newly on a camera's loop passes it; one without permit is read with
        probability ``read_rate`` and logged (see the module notes)."""
        read = self._loop_ids
        on_loop = self._on_loop
        for loop, (role, gate) in self.cameras.items():
            ids = read(loop) or ()
            before = on_loop.get(loop, ())
            if ids == before:
                continue
            on_loop[loop] = ids
            for vid in ids:
                if vid in before:
                    continue
                info = self._classify(sim, vid)
                if info.permitted:
                    continue
                self._counts["passages"] += 1
                if self.read_rate < 1.0:
                    draw = random.Random(f"{self.seed}:{loop}:{vid}:{t:g}").random()
                    if draw >= self.read_rate:
                        continue  # the plate was not read
                self._counts["reads"] += 1
                if role == "exit":
                    if vid in self._open:
                        self._open.discard(vid)
                        continue  # leaving after a read entry: the same violation
                else:
                    self._open.add(vid)
                seen = "camera" if vid in self._in_zone else "route"
                self.violations.append(
                    Violation(t, gate, vid, info.vtype, info.vclass, info.permit, seen, loop, role)
                )

    def _new_route(self, vid: str, tr: _Tracker, route_id: str) -> None:
        """Follow a route change: keep the position, judged on the new route from here on."""
        here = tr.route[min(tr.index, len(tr.route) - 1)]
        new = tuple(self._conn.vehicle.getRoute(vid))
        try:
            pos = new.index(here)
        except ValueError:
            pos = 0
        tr.route, tr.route_id, tr.index = new, route_id, pos

    # -- outputs --------------------------------------------------------------------------------
    def results(self) -> dict[str, tuple[float, str]]:
        """Violations (count, per hour, vehicles), compliance and detour KPIs."""
        hours = max(self._t - self._t0, 0.0) / 3600.0
        n = len(self.violations)
        camera = sum(1 for v in self.violations if v.detected_by == "camera")
        detours = [new - old for _, _, old, new in self.reroutes]
        c = self._counts
        return {
            self._kpi("violations"): (float(n), "1"),
            self._kpi("violations_per_hour"): (n / hours if hours > 0 else 0.0, "1/h"),
            self._kpi("violating_vehicles"): (
                float(len({v.vehicle for v in self.violations})),
                "1",
            ),
            self._kpi("share_seen_by_step_snapshot"): (camera / n if n else 1.0, "1"),
            self._kpi("entries_actual"): (float(len(self.entries)), "1"),
            self._kpi("cameras"): (float(len(self.cameras)), "1"),
            self._kpi("camera_passages"): (float(c["passages"]), "1"),
            self._kpi("camera_reads"): (float(c["reads"]), "1"),
            self._kpi("unpermitted_zone_trips"): (float(c["candidates"]), "1"),
            self._kpi("unpermitted_through_trips"): (float(c["through"]), "1"),
            self._kpi("complying_drivers"): (float(c["complying"]), "1"),
            self._kpi("through_traffic_removed"): (float(c["rerouted"]), "1"),
            self._kpi("could_not_comply"): (float(c["no_alternative"]), "1"),
            self._kpi("mean_detour"): (sum(detours) / len(detours) if detours else 0.0, "m"),
            self._kpi("total_detour"): (sum(detours) / 1000.0, "km"),
        }

    def audit(self, vehroute_file: Path) -> dict[str, tuple[float, str]]:
        """Check the violation log against the zone entries in SUMO's vehicle routes.

        Ground truth: every step from a non-zone edge onto a zone edge in the final (driven) route
        of each vehicle without permit in ``vehroute_file`` (vehicles that had not arrived are not
        in that file and are left out on both sides).
        """
        truth: Counter[str] = Counter()
        listed: set[str] = set()
        zone = self.zone
        for _, el in ET.iterparse(vehroute_file, events=("end",)):
            if el.tag != "vehicle":
                continue
            vid = el.get("id", "")
            listed.add(vid)
            dist = el.find("routeDistribution")
            routes = (dist if dist is not None else el).findall("route")
            if routes and vid not in self._permitted_ids:
                edges = routes[-1].get("edges", "").split()
                n = sum(
                    1 for k in range(1, len(edges)) if edges[k] in zone and edges[k - 1] not in zone
                )
                if n:
                    truth[vid] = n
            el.clear()
        logged = Counter(v.vehicle for v in self.violations if v.vehicle in listed)
        total = sum(truth.values())
        found = sum(min(n, logged[v]) for v, n in truth.items())
        false = sum(max(0, n - truth.get(v, 0)) for v, n in logged.items())
        return {
            self._kpi("entries_in_vehroutes"): (float(total), "1"),
            self._kpi("detection_completeness"): (found / total if total else 1.0, "1"),
            self._kpi("false_detections"): (float(false), "1"),
        }

    def write_outputs(self, folder: Path) -> None:
        """violations.csv (what the cameras read), zone_entries.csv (the actual entries),
        reroutes.csv and, with a vehroute output, barrier_audit.csv."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        suffix = "" if self.name == self.kind else f"_{self.name}"
        with (folder / f"violations{suffix}.csv").open("w", newline="", encoding="utf-8") as fh:
            wr = csv.writer(fh)
            wr.writerow(
                ["time_s", "gate", "vehicle_id", "vehicle_type", "vclass", "permit", "detected_by",
                 "camera", "camera_role"]
            )  # fmt: skip
            for v in self.violations:
                wr.writerow([f"{v.time:g}", v.gate, v.vehicle, v.vehicle_type, v.vclass, v.permit,
                             v.detected_by, v.camera, v.camera_role])  # fmt: skip
        with (folder / f"zone_entries{suffix}.csv").open("w", newline="", encoding="utf-8") as fh:
            wr = csv.writer(fh)
            wr.writerow(["time_s", "gate", "vehicle_id", "vehicle_type", "vclass", "permit"])
            for v in self.entries:
                wr.writerow([f"{v.time:g}", v.gate, v.vehicle, v.vehicle_type, v.vclass, v.permit])
        vehroutes = self._vehroute_file
        if vehroutes is not None and vehroutes.is_file():
            try:
                audit = self.audit(vehroutes)
            except ET.ParseError as exc:  # e.g. the run was cut short
                log.warning("%s: cannot audit against %s: %s", self.name, vehroutes, exc)
            else:
                with (folder / f"barrier_audit{suffix}.csv").open(
                    "w", newline="", encoding="utf-8"
                ) as fh:
                    wr = csv.writer(fh)
                    wr.writerow(["kpi", "value", "unit"])
                    for key, (value, unit) in audit.items():
                        wr.writerow([key, f"{value:g}", unit])
        with (folder / f"reroutes{suffix}.csv").open("w", newline="", encoding="utf-8") as fh:
            wr = csv.writer(fh)
            wr.writerow(
                ["time_s", "vehicle_id", "route_length_m", "new_route_length_m", "detour_m"]
            )
            for t, vid, old, new in self.reroutes:
                wr.writerow([f"{t:g}", vid, f"{old:.1f}", f"{new:.1f}", f"{new - old:.1f}"])
