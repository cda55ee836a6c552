"""Per-junction KPIs of the treated signals: on a small built signalised crossing, each mode's delay
per passage against the same delay computed from SUMO's vehicle routes (time on each approach edge
minus its free-flow time), its stops against SUMO's trip halts (every halt is at the signal), its CO2
against SUMO's per-step emission output summed on the approaches, and the person values against the
occupancy-weighted means of those.
"""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from twin.traffic import kpis as K
from twin.traffic.network import read_net
from twin.traffic.sim import Simulation, sumo_binary

# A crossing with a signal at C; each approach (wc from the west, nc from the north) has an edge before
# it, so a vehicle enters the approach when it leaves that edge (no internal lanes).
NODES = """<nodes>
  <node id="W0" x="-600" y="0"/> <node id="W" x="-300" y="0"/> <node id="E" x="300" y="0"/>
  <node id="N0" x="0" y="600"/> <node id="N" x="0" y="300"/> <node id="S" x="0" y="-300"/>
  <node id="C" x="0" y="0" type="traffic_light"/>
</nodes>"""
EDGES = """<edges>
  <edge id="w0w" from="W0" to="W" speed="13.89"/> <edge id="wc" from="W" to="C" speed="13.89"/>
  <edge id="ce" from="C" to="E" speed="13.89"/> <edge id="n0n" from="N0" to="N" speed="13.89"/>
  <edge id="nc" from="N" to="C" speed="13.89"/> <edge id="cs" from="C" to="S" speed="13.89"/>
</edges>"""
# Vehicle types of the twin's demand (ids as in twin.traffic.demand.VTYPES), deterministic drivers, each
# 0.2 m long: SUMO's edge data count a vehicle until its back has left the edge, the exit times of its
# route are its front's, so the two agree to within a step only where vehicles are short.
VTYPES = {
    "car": 'vClass="passenger" maxSpeed="50"',
    "truck": 'vClass="truck" maxSpeed="25"',
    "bus": 'vClass="bus" maxSpeed="20"',
    "bike": 'vClass="bicycle" maxSpeed="5.5"',
}
OCCUPANCY = {"car": 1.3, "truck": 1.0, "bus": 30.0, "bike": 1.0}
MODES = ("car", "truck", "bus", "bike")


def _routes() -> str:
    lines = ["<routes>"]
    for vid, attrs in VTYPES.items():
        lines.append(
            f'  <vType id="{vid}" {attrs} length="0.2" sigma="0" speedFactor="1" speedDev="0"/>'
        )
    lines += ['  <route id="we" edges="w0w wc ce"/>', '  <route id="ns" edges="n0n nc cs"/>']
    vehicles = []
    for i in range(40):
        mode = MODES[i % len(MODES)]
        for route in ("we", "ns"):
            vehicles.append((i * 9.0 + (4.0 if route == "ns" else 0.0), f"{mode}_{route}{i:02d}",
                             mode, route))  # fmt: skip
    for depart, vid, mode, route in sorted(vehicles):
        lines.append(f'  <vehicle id="{vid}" type="{mode}" route="{route}" depart="{depart:.1f}"/>')
    lines.append("</routes>")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def crossing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of the crossing (SUMO's outputs and the instruments' edge data in one folder)."""
    folder = tmp_path_factory.mktemp("crossing")
    for name, text in (("n.nod.xml", NODES), ("n.edg.xml", EDGES), ("r.rou.xml", _routes())):
        (folder / name).write_text(text, encoding="utf-8")
    subprocess.run([sumo_binary("netconvert"), "-n", "n.nod.xml", "-e", "n.edg.xml", "-o", "net.xml",
                    "--no-internal-links"], cwd=folder, check=True, capture_output=True)  # fmt: skip
    net = folder / "net.xml"
    add = K.instruments(folder / K.INSTRUMENTS, transit_vtypes=["bus"], gates=[], net=read_net(net))
    args = ["-n", str(net), "-r", str(folder / "r.rou.xml"), "-a", str(add),
            "--vehroute-output", str(folder / K.VEHROUTES), "--vehroute-output.exit-times",
            "--tripinfo-output", str(folder / K.TRIPINFO), "--step-length", "0.1",
            "--device.emissions.probability", "1", "--emission-output", str(folder / "emis.xml"),
            ]  # fmt: skip
    with Simulation(args) as sim:
        sim.run(1200)
    return folder


def _delays_from_routes(
    folder: Path, net_file: Path, approaches: set[str], from_s: float = 0.0
) -> dict[str, list[float]]:
    """Mode -> time loss of each passage of an approach edge left at `from_s` or later: the vehicle's
    time on the edge (from the exit times of its route) minus the edge's length at its top speed."""
    net = read_net(net_file)
    top = {vid: float(a.split('maxSpeed="')[1].split('"')[0]) for vid, a in VTYPES.items()}
    out: dict[str, list[float]] = {}
    for veh in ET.parse(folder / K.VEHROUTES).getroot().iter("vehicle"):
        route = veh.find("route")
        edges = route.get("edges").split()
        exits = [float(x) for x in route.get("exitTimes").split()]
        for i, edge in enumerate(edges):
            if edge in approaches and i > 0 and exits[i] >= from_s:
                e = net.getEdge(edge)
                free = e.getLength() / min(e.getSpeed(), top[veh.get("type")])
                out.setdefault(veh.get("type"), []).append(exits[i] - exits[i - 1] - free)
    return out


def test_junction_delays_match_the_vehicle_routes(crossing: Path) -> None:
    net_file = crossing / "net.xml"
    ctx = K.KpiContext(duration_s=1200.0, occupancy=OCCUPANCY, treated_edges=["wc"],
                       net_file=net_file)  # fmt: skip
    rows = K.junction_rows(crossing, ctx)
    K.write_junctions_csv(rows, crossing / K.JUNCTIONS_CSV)
    got = {(j, m): (n, d) for j, m, n, d, *_ in K.read_junctions_csv(crossing / K.JUNCTIONS_CSV)}
    # the treated edge wc makes C a treated junction: both its approaches count, every mode
    assert {j for j, _ in got} == {"C"}
    assert K.junction_approaches(read_net(net_file), ["wc"]) == {"C": ["nc", "wc"]}
    expected = _delays_from_routes(crossing, net_file, {"wc", "nc"})
    assert set(expected) == set(MODES)
    for mode, losses in expected.items():
        passages, delay = got[("C", mode)]
        assert passages == len(losses)
        # exit times are whole steps (0.1 s); SUMO's edge data place edge boundaries within a step
        assert delay == pytest.approx(sum(losses) / len(losses), abs=0.15), mode
    # the signal delays someone: a test of a junction nobody waits at proves little
    assert max(got[("C", m)][1] for m in MODES) > 5.0
    # the modes add up to SUMO's edge data of all vehicles on the two approaches
    everything = [el for el in ET.parse(crossing / K.EDGEDATA).getroot().iter("edge")
                  if el.get("id") in ("wc", "nc")]  # fmt: skip
    assert sum(got[("C", m)][0] * got[("C", m)][1] for m in MODES) == pytest.approx(
        sum(float(el.get("timeLoss")) for el in everything), rel=1e-3
    )
    weights = {m: OCCUPANCY[m] * len(expected[m]) for m in MODES}
    person = sum(weights[m] * got[("C", m)][1] for m in MODES) / sum(weights.values())
    passages, delay = got[("C", "person")]
    assert delay == pytest.approx(person, rel=1e-4)
    assert passages == pytest.approx(sum(weights.values()), rel=1e-4)


def test_junction_delays_leave_out_the_warm_up(crossing: Path) -> None:
    net_file = crossing / "net.xml"
    ctx = K.KpiContext(duration_s=1020.0, occupancy=OCCUPANCY, treated_edges=["nc"], from_s=180.0,
                       net_file=net_file)  # fmt: skip
    got = {m: (n, d) for _, m, n, d, *_ in K.junction_rows(crossing, ctx)}
    everything = {m: (n, d) for _, m, n, d, *_ in K.junction_rows(crossing, K.KpiContext(
        duration_s=1200.0, occupancy=OCCUPANCY, treated_edges=["nc"], net_file=net_file))}  # fmt: skip
    expected = _delays_from_routes(crossing, net_file, {"wc", "nc"}, from_s=180.0)
    for mode, losses in expected.items():
        passages, delay = got[mode]
        # the passages after the warm-up, and only the time they lost after it
        assert 0 < passages == len(losses) < everything[mode][0]
        assert 0 < passages * delay <= sum(losses) + 0.15 * passages, mode


def _halts_and_co2(folder: Path, approaches: set[str]) -> tuple[dict[str, int], dict[str, float]]:
    """Mode -> halts of its trips (tripinfo waitingCount), and mode -> CO2 (g) emitted on the
    approach edges (SUMO's emission output: mg/s per vehicle and step of 0.1 s)."""
    halts: dict[str, int] = {}
    for trip in ET.parse(folder / K.TRIPINFO).getroot().iter("tripinfo"):
        mode = trip.get("vType")
        halts[mode] = halts.get(mode, 0) + int(trip.get("waitingCount"))
    co2: dict[str, float] = {}
    for _, el in ET.iterparse(folder / "emis.xml"):
        if el.tag == "vehicle" and el.get("lane", "").rsplit("_", 1)[0] in approaches:
            co2[el.get("type")] = co2.get(el.get("type"), 0.0) + float(el.get("CO2")) * 0.1e-3
    return halts, co2


def test_junction_stops_and_co2_match_the_trips(crossing: Path) -> None:
    net_file = crossing / "net.xml"
    ctx = K.KpiContext(duration_s=1200.0, occupancy=OCCUPANCY, treated_edges=["wc"],
                       net_file=net_file)  # fmt: skip
    got = {m: (n, st, g) for _, m, n, _, st, g, _ in K.junction_rows(crossing, ctx)}
    halts, co2 = _halts_and_co2(crossing, {"wc", "nc"})
    # each vehicle crosses C once and can halt nowhere else: its halts are the junction's stops
    assert sum(halts.values()) > 20, "a signal nobody stops at proves little"
    for mode in MODES:
        passages, stops, grams = got[mode]
        assert stops * passages == pytest.approx(halts.get(mode, 0), abs=1), mode
        # edge data and the emission output integrate the same per-step emissions (0.5 %: the
        # step in which a vehicle changes edges may be booked on either)
        assert grams * passages == pytest.approx(co2.get(mode, 0.0), rel=5e-3, abs=1e-3), mode
    assert got["bike"][2] == 0.0 and got["car"][2] > 0.0 and got["truck"][2] > got["car"][2]
    w = {m: OCCUPANCY[m] * got[m][0] for m in MODES}
    passages, stops, grams = got["person"]
    assert stops == pytest.approx(sum(w[m] * got[m][1] for m in MODES) / sum(w.values()), rel=1e-6)
    assert grams == pytest.approx(sum(w[m] * got[m][2] for m in MODES) / sum(w.values()), rel=1e-6)
