"""Traffic controllers on real SUMO runs: transit priority (Bologna and a built crossing), the
virtual barrier against SUMO's own vehicle routes, the safety monitor and the spec factory."""

from __future__ import annotations

import copy
import csv
import logging
import math
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from twin.errors import ConfigError
from twin.traffic.controllers import (
    BikePriority,
    Controller,
    SafetyMonitor,
    SignalProgram,
    TransitPriority,
    build_controllers,
)
from twin.traffic.sim import Simulation, sumo_binary

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BOLOGNA = SHARED_DATA / "sumo-scenarios" / "bologna-acosta"


def _netconvert(folder: Path, nodes: str, edges: str, connections: str | None = None) -> Path:
    (folder / "n.nod.xml").write_text(nodes, encoding="utf-8")
    (folder / "n.edg.xml").write_text(edges, encoding="utf-8")
    cmd = [sumo_binary("netconvert"), "-n", "n.nod.xml", "-e", "n.edg.xml", "--no-turnarounds"]
    if connections:
        (folder / "n.con.xml").write_text(connections, encoding="utf-8")
        cmd += ["-x", "n.con.xml"]
    cmd += ["-o", "net.xml"]
    subprocess.run(cmd, cwd=folder, check=True, capture_output=True)
    return folder / "net.xml"


# -- a signalised crossing: one-way roads W->E and N->S, straight on only ------------------------
CROSS_NODES = """<nodes>
  <node id="W" x="-400" y="0"/> <node id="E" x="400" y="0"/>
  <node id="N" x="0" y="400"/> <node id="S" x="0" y="-400"/>
  <node id="C" x="0" y="0" type="traffic_light"/>
</nodes>"""
CROSS_EDGES = """<edges>
  <edge id="we" from="W" to="C" speed="13.89"/> <edge id="ce" from="C" to="E" speed="13.89"/>
  <edge id="nc" from="N" to="C" speed="13.89"/> <edge id="cs" from="C" to="S" speed="13.89"/>
</edges>"""
CROSS_CONNECTIONS = """<connections>
  <connection from="we" to="ce"/> <connection from="nc" to="cs"/>
</connections>"""
GREEN_S, AMBER_S, ALL_RED_S, MIN_GREEN_S = 30, 3, 2, 5


@pytest.fixture(scope="module")
def cross(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The crossing with our own fixed-time program: WE green 30 s, amber 3, all-red 2; NS alike."""
    folder = tmp_path_factory.mktemp("cross")
    net = _netconvert(folder, CROSS_NODES, CROSS_EDGES, CROSS_CONNECTIONS)
    link = {}
    for c in ET.parse(net).getroot().iter("connection"):
        if c.get("tl") == "C":
            link[c.get("from")] = int(c.get("linkIndex"))
    assert sorted(link.values()) == [0, 1]

    def state(green: str | None, amber: str | None = None) -> str:
        s = ["r", "r"]
        if green:
            s[link[green]] = "G"
        if amber:
            s[link[amber]] = "y"
        return "".join(s)

    phases = [
        (GREEN_S, state("we")),
        (AMBER_S, state(None, "we")),
        (ALL_RED_S, state(None)),
        (GREEN_S, state("nc")),
        (AMBER_S, state(None, "nc")),
        (ALL_RED_S, state(None)),
    ]
    body = "\n".join(f'    <phase duration="{d}" state="{s}"/>' for d, s in phases)
    (folder / "tls.add.xml").write_text(
        f'<additional>\n  <tlLogic id="C" type="static" programID="test" offset="0">\n{body}\n'
        "  </tlLogic>\n</additional>\n",
        encoding="utf-8",
    )
    return SimpleNamespace(folder=folder, net=net, link=link)


def _cross_run(
    cross: SimpleNamespace, name: str, vehicles: str, spec: list[dict], end: float = 200
):
    """Run the crossing with buses (sigma 0: deterministic); return controllers and bus waits."""
    routes = cross.folder / f"{name}.rou.xml"
    routes.write_text(
        '<routes>\n  <vType id="bus" vClass="bus" accel="1.2" decel="4" sigma="0" length="12"/>\n'
        '  <vType id="bike" vClass="bicycle" sigma="0"/>\n'
        '  <route id="WE" edges="we ce"/>\n  <route id="NS" edges="nc cs"/>\n'
        f"{vehicles}\n</routes>\n",
        encoding="utf-8",
    )
    tripinfo = cross.folder / f"{name}.tripinfo.xml"
    controllers = build_controllers(spec, net_file=cross.net)
    args = ["-n", str(cross.net), "-r", str(routes), "-a", str(cross.folder / "tls.add.xml")]
    args += ["--tripinfo-output", str(tripinfo), "--end", str(end), "--seed", "1"]
    with Simulation(args) as sim:
        sim.run(end, controllers)
    waits = {
        t.get("id"): float(t.get("waitingTime"))
        for t in ET.parse(tripinfo).getroot().iter("tripinfo")
    }
    return controllers, waits


def _actions(controllers: list[Controller], kind: type = TransitPriority) -> list[dict]:
    return next(c for c in controllers if isinstance(c, kind)).actions


def _monitor(controllers: list[Controller]) -> SafetyMonitor:
    return next(c for c in controllers if isinstance(c, SafetyMonitor))


# -- signal program analysis (analytical values) ---------------------------------------------------
def _logic(phases: list[tuple], program_id: str = "p") -> SimpleNamespace:
    ph = [
        SimpleNamespace(duration=d, state=s, minDur=lo, maxDur=hi, next=())
        for d, s, lo, hi in phases
    ]
    return SimpleNamespace(programID=program_id, type=0, phases=ph)


def test_program_limits_follow_the_phase_table() -> None:
    # link 0: green 30 s (range 10..50 given), amber 3, all-red 2; link 1: fixed 20 s, amber 4
    logic = _logic(
        [
            (30, "Gr", 10, 50),
            (3, "yr", 3, 3),
            (2, "rr", 2, 2),
            (20, "rG", 20, 20),
            (4, "ry", 4, 4),
            (1, "rr", 1, 1),
        ]
    )
    prog = SignalProgram("J", logic, min_green_s=6, max_extension_s=15)
    assert [p.clearance for p in prog.phases] == [False, True, True, False, True, True]
    assert prog.min_green == {0: 10.0, 1: 6.0}  # the program's range, else min_green_s
    assert prog.phases[0].max_s == 50.0 and prog.phases[3].max_s == 35.0  # maxDur; 20 + 15
    assert prog.min_amber == {0: 3.0, 1: 4.0}
    assert prog.intergreen == {(0, 1): 5.0, (1, 0): 5.0}  # amber + all-red
    # worst case for link 1: request at the start of link 0's green: 10 + 3 + 2
    assert prog.lead_time(1) == 15.0
    assert prog.lead_time(0) == 6.0 + 4.0 + 1.0
    # 12 s into link 0's green (18 s left): natural 18 + 5, shortest (10 - 12 -> 0) + 5
    assert prog.time_to_green(1, 0, 18.0, 12.0, shortest=False) == 23.0
    assert prog.time_to_green(1, 0, 18.0, 12.0, shortest=True) == 5.0
    assert prog.green_left(0, 0, 18.0) == 18.0 and prog.is_last_green(0, 0)


def test_program_intergreen_follows_branches_and_pedestrian_minimum() -> None:
    # phase 0 may go straight to the all-red 2 (next=[1, 2]); link 1 is a pedestrian crossing
    phases = [
        SimpleNamespace(duration=20, state="Gr", minDur=20, maxDur=20, next=(1, 2)),
        SimpleNamespace(duration=3, state="yr", minDur=3, maxDur=3, next=(2,)),
        SimpleNamespace(duration=2, state="rr", minDur=2, maxDur=2, next=(3,)),
        SimpleNamespace(duration=12, state="rG", minDur=12, maxDur=12, next=(0,)),
    ]
    logic = SimpleNamespace(programID="b", type=0, phases=phases)
    prog = SignalProgram("J", logic, min_green_s=4, pedestrian_min_green_s=9, crossing_links=[1])
    assert prog.min_green == {0: 4.0, 1: 9.0}
    assert prog.min_amber[0] == 0.0  # the branch 0 -> 2 shows no amber at all
    assert prog.intergreen[(0, 1)] == 2.0  # shortest branch: all-red only
    assert prog.intergreen[(1, 0)] == 0.0


# -- transit priority on the crossing ------------------------------------------------------------
def test_conflicting_buses_first_come_first_served(cross: SimpleNamespace) -> None:
    # bus B (N->S) asks first while its green runs; bus A (W->E) asks a second later for an early
    # green that would cut B's green: A must wait for B, then get its early green.
    vehicles = (
        '  <vehicle id="busB" type="bus" route="NS" depart="21"/>\n'
        '  <vehicle id="busA" type="bus" route="WE" depart="22"/>'
    )
    # unconditional: both buses are on time, a conditional controller would give neither an early green
    prio = {"type": "transit_priority", "detection_distance_m": 150}
    prio |= {"condition": "always", "one_per_cycle": False}
    spec = [prio, {"type": "safety_monitor"}]
    ctl, waits = _cross_run(cross, "conflict", vehicles, spec)
    _, base = _cross_run(cross, "conflict_base", vehicles, [])
    acts = _actions(ctl)
    first = {a["vehicle"]: a["time_s"] for a in reversed(acts) if a["action"] == "request"}
    assert first["busB"] < first["busA"], "the scenario must make B the first to ask"
    deferred = [a for a in acts if a["action"] == "deferred" and a["vehicle"] == "busA"]
    early = [a for a in acts if a["action"] == "early_green" and a["vehicle"] == "busA"]
    passed_b = next(a["time_s"] for a in acts if a["action"] == "passed" and a["vehicle"] == "busB")
    assert deferred, "A's early green would cut B's green: it must be deferred"
    assert early and early[0]["time_s"] >= passed_b, "A is served only after B has passed"
    assert waits["busB"] == 0.0
    # A waits at most amber + all-red after B passes (B's green had run its minimum): no starvation
    assert waits["busA"] <= AMBER_S + ALL_RED_S + 1
    assert waits["busA"] < base["busA"]
    assert _monitor(ctl).violations == []


def test_green_extension_for_a_late_bus_and_handed_back(cross: SimpleNamespace) -> None:
    vehicles = '  <vehicle id="busA" type="bus" route="WE" depart="3"/>'
    spec = [{"type": "transit_priority", "detection_distance_m": 150}, {"type": "safety_monitor"}]
    ctl, waits = _cross_run(cross, "extend", vehicles, spec)
    _, base = _cross_run(cross, "extend_base", vehicles, [])
    assert base["busA"] > 0, "without priority the bus must meet red (scenario check)"
    acts = _actions(ctl)
    ext = [a for a in acts if a["action"] == "extension"]
    assert ext and waits["busA"] == 0.0
    res = ctl[0].results()
    assert 0 < res["transit_priority.extension_time"][0] <= 20.0  # max_extension_s default
    assert _monitor(ctl).violations == []


@pytest.mark.parametrize("mode", ["extension_only", "precompute"])
def test_detection_shorter_than_min_green_plus_clearance(
    cross: SimpleNamespace, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    # 20 m at 13.89 m/s is 1.4 s of warning; the worst-case time to green is 5 + 3 + 2 = 10 s
    vehicles = '  <vehicle id="busA" type="bus" route="WE" depart="22"/>'
    spec = [
        {
            "type": "transit_priority",
            "detection_distance_m": 20,
            "short_detection": mode,
            "condition": "always",  # the bus is on time: only unconditional priority asks
        },
        {"type": "safety_monitor"},
    ]
    with caplog.at_level(logging.WARNING, logger="twin.traffic.controllers.priority"):
        ctl, waits = _cross_run(cross, f"short_{mode}", vehicles, spec)
    assert "shorter than minimum green plus clearance" in caplog.text
    _, base = _cross_run(cross, f"short_{mode}_base", vehicles, [])
    acts = _actions(ctl)
    short = [a for a in acts if a["action"] == "short_detection"]
    assert {a["link"] for a in short} == {0, 1}
    lead = MIN_GREEN_S + AMBER_S + ALL_RED_S
    if mode == "extension_only":
        assert not [a for a in acts if a["action"] == "early_green"]
        assert waits["busA"] == base["busA"] > 0  # nothing it could do for a bus at red
    else:
        reach = {a["value"] for a in short}
        assert all(r >= lead * 13.89 for r in reach)  # request point moved upstream far enough
        assert [a for a in acts if a["action"] == "early_green"]
        assert waits["busA"] < base["busA"]
    assert _monitor(ctl).violations == []


@pytest.mark.parametrize("min_bikes", [2, 3])
def test_bike_priority_serves_waiting_cyclists(cross: SimpleNamespace, min_bikes: int) -> None:
    # two cyclists reach the WE stop line during the NS green and wait there together
    vehicles = (
        '  <vehicle id="bk1" type="bike" route="WE" depart="40"/>\n'
        '  <vehicle id="bk2" type="bike" route="WE" depart="42"/>'
    )
    spec = [{"type": "bike_priority", "min_bikes": min_bikes}, {"type": "safety_monitor"}]
    ctl, waits = _cross_run(cross, f"bikes{min_bikes}", vehicles, spec, end=400)
    _, base = _cross_run(cross, f"bikes{min_bikes}_base", vehicles, [], end=400)
    assert min(base.values()) > 0, "both must meet red without priority (scenario check)"
    early = [a for a in _actions(ctl, BikePriority) if a["action"] == "early_green"]
    if min_bikes == 2:
        assert early
        assert all(waits[b] < base[b] for b in waits)
    else:  # the call needs three waiting cyclists: nothing happens
        assert not early and waits == base
    assert _monitor(ctl).violations == []


class _Rogue(Controller):
    """Jumps straight from one green to the other, skipping amber and all-red."""

    name = "rogue"

    def attach(self, sim: Simulation) -> None:
        self.done = False

    def step(self, sim: Simulation, t: float) -> None:
        if t == 12 and not self.done:
            sim.conn.trafficlight.setPhase("C", 3)
            self.done = True

    def results(self) -> dict[str, tuple[float, str]]:
        return {}


def test_safety_monitor_catches_a_controller_that_skips_clearance(cross: SimpleNamespace) -> None:
    monitor = SafetyMonitor()
    routes = cross.folder / "cars.rou.xml"
    routes.write_text(
        '<routes><flow id="f" from="we" to="ce" begin="0" end="100" period="10"/></routes>',
        encoding="utf-8",
    )
    args = ["-n", str(cross.net), "-a", str(cross.folder / "tls.add.xml"), "--end", "100"]
    with Simulation([*args, "-r", str(routes)]) as sim:
        sim.run(100, [monitor, _Rogue()])
    kinds = Counter(v.kind for v in monitor.violations)
    # at t=12 WE green (12 s) is cut without amber and NS gets green at once
    assert kinds["no_amber"] == 1 and kinds["intergreen"] == 1
    v = next(v for v in monitor.violations if v.kind == "intergreen")
    assert v.observed_s == 0.0 and v.required_s == AMBER_S + ALL_RED_S
    # the untouched program itself gives no violation
    clean = SafetyMonitor()
    with Simulation([*args, "-r", str(routes)]) as sim:
        sim.run(100, [clean])
    assert clean.violations == []


# -- virtual barrier ------------------------------------------------------------------------------
ZONE_NODES = """<nodes>
  <node id="A" x="0" y="0"/> <node id="B" x="200" y="0"/> <node id="G" x="204" y="0"/>
  <node id="H" x="212" y="0"/> <node id="C" x="400" y="0"/> <node id="D" x="600" y="0"/>
  <node id="U" x="200" y="150"/> <node id="V" x="400" y="150"/>
  <node id="Q" x="204" y="-200"/> <node id="P" x="204" y="-6"/>
</nodes>"""
ZONE_EDGES = """<edges>
  <edge id="ab" from="A" to="B" speed="13.89" priority="3"/>
  <edge id="bg" from="B" to="G" speed="13.89" priority="3"/>
  <edge id="gh" from="G" to="H" speed="13.89" priority="3"/>
  <edge id="hc" from="H" to="C" speed="13.89" priority="3"/>
  <edge id="cd" from="C" to="D" speed="13.89" priority="3"/>
  <edge id="bu" from="B" to="U" speed="13.89"/> <edge id="uv" from="U" to="V" speed="13.89"/>
  <edge id="vc" from="V" to="C" speed="13.89"/>
  <edge id="qp" from="Q" to="P" speed="13.89" priority="1"/>
  <edge id="pg" from="P" to="G" speed="13.89" priority="1"/>
</edges>"""
ZONE = {"bg", "gh", "pg"}  # a few metres long: crossed within one step by most vehicles
PERMITTED_TYPES = {"van", "bus", "res"}  # vClass delivery, vClass bus, vType permit=resident
ZONE_ROUTES = """<routes>
  <vType id="car" vClass="passenger" sigma="0.5"/>
  <vType id="van" vClass="delivery"/>
  <vType id="res" vClass="passenger"><param key="permit" value="resident"/></vType>
  <vType id="bus" vClass="bus"/>
  <route id="through" edges="ab bg gh hc cd"/>
  <route id="bypass" edges="ab bu uv vc cd"/>
  <route id="fromq" edges="qp pg gh hc cd"/>
  <route id="into" edges="ab bg gh"/>
  <route id="outof" edges="gh hc cd"/>
  <flow id="thr" type="car" route="through" begin="0" end="900" period="5"/>
  <flow id="byp" type="car" route="bypass" begin="2" end="900" period="20"/>
  <flow id="q" type="car" route="fromq" begin="3" end="900" period="30"/>
  <flow id="in" type="car" route="into" begin="5" end="900" period="60"/>
  <flow id="out" type="car" route="outof" begin="7" end="900" period="60"/>
  <flow id="van" type="van" route="through" begin="11" end="900" period="40"/>
  <flow id="res" type="res" route="through" begin="13" end="900" period="40"/>
  <flow id="bus" type="bus" route="fromq" begin="17" end="900" period="90"/>
  <vehicle id="emg" type="car" route="through" depart="100">
    <param key="permit" value="emergency"/>
  </vehicle>
</routes>"""


class _Diverter(Controller):
    """Sends bypass drivers into the zone after they departed (a route change by someone else)."""

    name = "diverter"

    def attach(self, sim: Simulation) -> None:
        self.diverted: set[str] = set()

    def step(self, sim: Simulation, t: float) -> None:
        for vid in sim.conn.edge.getLastStepVehicleIDs("ab"):
            if (
                vid.startswith("byp")
                and vid not in self.diverted
                and sim.conn.vehicle.getLanePosition(vid) > 60.0
            ):
                sim.conn.vehicle.setRoute(vid, ["ab", "bg", "gh", "hc", "cd"])
                self.diverted.add(vid)

    def results(self) -> dict[str, tuple[float, str]]:
        return {}


@pytest.fixture(scope="module")
def zone_run(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    folder = tmp_path_factory.mktemp("zone")
    net = _netconvert(folder, ZONE_NODES, ZONE_EDGES)
    (folder / "r.rou.xml").write_text(ZONE_ROUTES, encoding="utf-8")
    spec = [
        {
            "type": "virtual_barrier",
            "zone_edges": sorted(ZONE),
            "permit_classes": ["delivery", "bus", "resident", "emergency"],
            "compliance": 0.5,
            "seed": 11,
        }
    ]
    (barrier,) = build_controllers(spec, net_file=net)
    diverter = _Diverter()
    vehroutes = folder / "vehroutes.xml"
    args = ["-n", str(net), "-r", str(folder / "r.rou.xml"), "--seed", "3", "--end", "3000"]
    args += ["--vehroute-output", str(vehroutes), "--vehroute-output.exit-times"]
    with Simulation(args) as sim:
        result = sim.run(3000, [diverter, barrier])
    barrier.write_outputs(folder / "out")
    return SimpleNamespace(
        folder=folder,
        net=net,
        barrier=barrier,
        result=result,
        vehroutes=vehroutes,
        diverter=diverter,
    )


def _truth_entries(vehroutes: Path) -> tuple[dict[str, list[tuple[str, float, float]]], dict]:
    """From SUMO's vehroute output: per vehicle without permit, its zone entries
    (entry edge, exit time of the edge before, exit time of the entry edge), and final routes."""
    entries: dict[str, list[tuple[str, float, float]]] = defaultdict(list)
    final: dict[str, list[str]] = {}
    for v in ET.parse(vehroutes).getroot().iter("vehicle"):
        vid = v.get("id")
        dist = v.find("routeDistribution")
        route = dist.findall("route")[-1] if dist is not None else v.find("route")
        edges = route.get("edges").split()
        final[vid] = edges
        if v.get("type") in PERMITTED_TYPES or vid == "emg":
            continue
        times = [float(x) for x in route.get("exitTimes").split()]
        for k in range(1, len(edges)):
            if edges[k] in ZONE and edges[k - 1] not in ZONE:
                entries[vid].append((edges[k], times[k - 1], times[k]))
    return entries, final


def test_barrier_logs_exactly_the_unpermitted_entries(zone_run: SimpleNamespace) -> None:
    assert zone_run.result.end_time < 3000  # every vehicle arrived: vehroutes are complete
    truth, _ = _truth_entries(zone_run.vehroutes)
    with (zone_run.folder / "out" / "violations.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    logged: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for r in rows:
        logged[r["vehicle_id"]].append((r["gate"], float(r["time_s"])))
    assert len(truth) > 100
    assert set(logged) == set(truth)  # no missed entry, no false alarm
    for vid, entries in truth.items():
        assert [g for g, _ in logged[vid]] == [e[0] for e in entries], vid
        for (_, t_log), (_, t_before, t_gate) in zip(logged[vid], entries, strict=True):
            # SUMO stamps a move with the start of its step; the log with the step's end (dt = 1)
            assert t_before + 1 <= t_log <= t_gate + 1, vid
    # route changes made after departure by someone else are caught too
    assert zone_run.diverter.diverted and zone_run.diverter.diverted <= set(truth)
    # most crossings take less than one step: a per-step snapshot of the zone misses some
    by = Counter(r["detected_by"] for r in rows)
    assert by["route"] > 0 and by["camera"] > 0
    assert {r["permit"] for r in rows} == {"passenger"}
    # the controller's own audit against the same file agrees
    with (zone_run.folder / "out" / "barrier_audit.csv").open(encoding="utf-8") as fh:
        audit = {r["kpi"]: float(r["value"]) for r in csv.DictReader(fh)}
    assert audit["virtual_barrier.entries_in_vehroutes"] == sum(len(e) for e in truth.values())
    assert audit["virtual_barrier.detection_completeness"] == 1.0
    assert audit["virtual_barrier.false_detections"] == 0.0
    # and it notices a missing entry and a false one
    damaged = copy.copy(zone_run.barrier)
    first = damaged.violations[0]
    assert len(truth[first.vehicle]) == 1
    damaged.violations = [*damaged.violations[1:], replace(first, vehicle="van.0")]  # permitted
    check = damaged.audit(zone_run.vehroutes)
    total = audit["virtual_barrier.entries_in_vehroutes"]
    assert check["virtual_barrier.detection_completeness"][0] == pytest.approx((total - 1) / total)
    assert check["virtual_barrier.false_detections"][0] == 1.0


def test_barrier_compliance_share_and_detours(zone_run: SimpleNamespace) -> None:
    import sumolib

    _, final = _truth_entries(zone_run.vehroutes)
    through = [vid for vid in final if vid.startswith("thr.")]
    avoided = [vid for vid in through if not set(final[vid]) & ZONE]
    share, n, p = len(avoided) / len(through), len(through), 0.5
    assert abs(share - p) <= 3 * math.sqrt(p * (1 - p) / n)  # binomial, 3 sigma
    res = zone_run.barrier.results()
    assert res["virtual_barrier.through_traffic_removed"][0] == len(avoided)
    # drivers heading into the zone, or coming from Q (no way around), cannot comply
    assert all(set(final[v]) & ZONE for v in final if v.startswith(("in.", "q.")))
    net = sumolib.net.readNet(str(zone_run.net))
    length = {e.getID(): e.getLength() for e in net.getEdges()}
    detour = sum(length[e] for e in ("bu", "uv", "vc")) - sum(length[e] for e in ("bg", "gh", "hc"))
    assert res["virtual_barrier.mean_detour"][0] == pytest.approx(detour, abs=0.01)
    hours = (zone_run.result.end_time - 0.0) / 3600
    n_viol = res["virtual_barrier.violations"][0]
    assert res["virtual_barrier.violations_per_hour"][0] == pytest.approx(n_viol / hours)


def test_barrier_gate_and_zone_validation(zone_run: SimpleNamespace) -> None:
    assert zone_run.barrier.gates == {"bg", "pg"}  # the zone edges entered from outside
    with pytest.raises(ConfigError, match="zone_edges"):
        build_controllers(
            [{"type": "virtual_barrier", "zone_edges": ["nope"]}], net_file=zone_run.net
        )
    with pytest.raises(ConfigError, match="gates"):
        build_controllers(
            [{"type": "virtual_barrier", "zone_edges": ["gh"], "gates": ["zz_0"]}],
            net_file=zone_run.net,
        )


# -- the spec factory ---------------------------------------------------------------------------
def test_build_controllers_validates_specs(cross: SimpleNamespace) -> None:
    net = cross.net
    with pytest.raises(ConfigError, match="'type' must be one of"):
        build_controllers([{"type": "ramp_metering"}], net_file=net)
    with pytest.raises(ConfigError, match="unknown key 'max_extension'"):
        build_controllers([{"type": "transit_priority", "max_extension": 5}], net_file=net)
    with pytest.raises(ConfigError, match="'detection_distance_m' must be a number"):
        build_controllers(
            [{"type": "transit_priority", "detection_distance_m": "far"}], net_file=net
        )
    with pytest.raises(ConfigError, match="'compliance' must be a number >= 0 and <= 1"):
        build_controllers(
            [{"type": "virtual_barrier", "zone_edges": ["we"], "compliance": 1.5}], net_file=net
        )
    with pytest.raises(ConfigError, match="missing key 'zone_edges'"):
        build_controllers([{"type": "virtual_barrier"}], net_file=net)
    with pytest.raises(ConfigError, match="signal 'X9'"):
        build_controllers([{"type": "transit_priority", "junctions": ["X9"]}], net_file=net)
    ctl = build_controllers(
        [
            {"type": "transit_priority", "junctions": ["C"], "min_green_s": 7},
            {"type": "transit_priority"},
            {"type": "bike_priority"},
            {"type": "safety_monitor"},
        ],
        net_file=net,
    )
    assert [c.name for c in ctl] == [
        "transit_priority",
        "transit_priority#2",
        "bike_priority",
        "safety_monitor",
    ]
    assert ctl[3].min_green_s == 7.0  # the monitor checks the strictest minimum green promised


# -- Bologna (real signal programs, bus lanes, buses) ----------------------------------------------
def _bologna_bus_time_loss(folder: Path, spec: list[dict]) -> tuple[float, int, list[Controller]]:
    tripinfo = folder / "tripinfo.xml"
    scenario = folder / "bologna"  # a copy: its detectors write beside their file
    shutil.copytree(BOLOGNA, scenario)
    args = ["-c", str(scenario / "run.sumocfg"), "--seed", "5", "--end", "600"]
    args += ["--tripinfo-output", str(tripinfo), "--tripinfo-output.write-unfinished"]
    args += ["--log", str(folder / "sumo.log")]
    controllers = build_controllers(spec, net_file=BOLOGNA / "acosta_buslanes.net.xml")
    with Simulation(args) as sim:
        sim.run(600, controllers)
    loss = [
        float(t.get("timeLoss"))
        for t in ET.parse(tripinfo).getroot().iter("tripinfo")
        if t.get("vType") == "bus"
    ]
    return sum(loss), len(loss), controllers


@pytest.mark.skipif(not BOLOGNA.is_dir(), reason=f"SUMO scenario data not found at {BOLOGNA}")
def test_bologna_priority_lowers_bus_time_loss_safely(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    (tmp_path / "prio").mkdir()
    base_loss, n_base, base_ctl = _bologna_bus_time_loss(
        tmp_path / "base", [{"type": "safety_monitor"}]
    )
    prio_loss, n_prio, prio_ctl = _bologna_bus_time_loss(
        tmp_path / "prio",
        [{"type": "transit_priority", "junctions": "auto"}, {"type": "safety_monitor"}],
    )
    assert n_base == n_prio > 10
    # the same seed and demand: buses lose at least 10 % less time with priority
    assert prio_loss < 0.9 * base_loss
    res = prio_ctl[0].results()
    assert res["transit_priority.signals"][0] == 7  # every signal of the scenario carries buses
    assert res["transit_priority.early_greens_granted"][0] > 0
    assert res["transit_priority.extensions_granted"][0] > 0
    # zero breaches of the UTOPIA programs' minimum green, amber and intergreen, every step
    assert _monitor(base_ctl).violations == []
    assert _monitor(prio_ctl).violations == []
    assert _monitor(prio_ctl).results()["safety_monitor.signals_checked"][0] == 7


@pytest.mark.skipif(not BOLOGNA.is_dir(), reason=f"SUMO scenario data not found at {BOLOGNA}")
def test_junctions_of_traffic_lights_without_libsumo_call(tmp_path: Path) -> None:
    """The TraCI client lacks getControlledJunctions: the junctions read from the links' internal
    lanes must be SUMO's own answer for every traffic light of Bologna."""
    from twin.traffic.controllers.program import _controlled_junctions, traffic_lights_of

    class NoJunctionCall:
        def __init__(self, tl: object) -> None:
            self.getIDList = tl.getIDList
            self.getControlledLinks = tl.getControlledLinks

    net = BOLOGNA / "acosta_buslanes.net.xml"
    with Simulation(["-n", str(net), "--end", "1", "--log", str(tmp_path / "l.log")]) as sim:
        tl = sim.conn.trafficlight
        fallback = SimpleNamespace(trafficlight=NoJunctionCall(tl))
        ids = list(tl.getIDList())
        for tls in ids:
            own = sorted(tl.getControlledJunctions(tls))
            assert sorted(_controlled_junctions(fallback, tls)) == own, tls
        junctions = [j for tls in ids for j in tl.getControlledJunctions(tls)]
        assert traffic_lights_of(fallback, junctions, "t") == traffic_lights_of(
            sim.conn, junctions, "t"
        )
    assert ids
