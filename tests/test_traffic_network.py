"""The Krefeld SUMO network built from the pack's OSM: signals, lanes, stops, gates and reachability."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from twin.city.build import run_build
from twin.city.osm import read_osm
from twin.city.pack import load_pack
from twin.traffic.install import sumo_binary, sumo_tool
from twin.traffic.network import (
    FACTS_FILE,
    NET_FILE,
    NETWORK_STEP,
    PTSTOPS_FILE,
    NetworkFacts,
    check_signals,
    network_step,
    read_net,
    run_tool,
)

REPO = Path(__file__).resolve().parents[1]
PACK = REPO / "data" / "krefeld" / "pack.toml"

pytestmark = pytest.mark.skipif(
    not PACK.exists(), reason="the Krefeld data pack is not in data/krefeld"
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The network build step run on the Krefeld pack into a fresh build folder."""
    build = tmp_path_factory.mktemp("build")
    results = run_build(load_pack(PACK), [network_step()], build)
    assert [r.status for r in results] == ["built"]
    return build


@pytest.fixture(scope="module")
def net(built: Path):
    return read_net(built / NET_FILE, withPrograms=True)


@pytest.fixture(scope="module")
def facts(built: Path) -> NetworkFacts:
    return NetworkFacts.from_json(built / FACTS_FILE)


@pytest.fixture(scope="module")
def osm():
    return read_osm(load_pack(PACK).layers["streets"].path)


def test_step_writes_products_and_is_cached(built: Path) -> None:
    for name in (NET_FILE, PTSTOPS_FILE, FACTS_FILE, "krefeld.ptlines.xml"):
        assert (built / name).is_file(), name
    again = run_build(load_pack(PACK), [network_step()], built)
    assert [(r.name, r.status) for r in again] == [(NETWORK_STEP, "cached")]


def test_net_is_in_epsg25832(net, osm) -> None:
    """Junction coordinates equal the OSM nodes projected to EPSG:25832 (no offset), within 1 cm."""
    from twin.geo import wgs84_to_utm

    junction_ids = {n.getID() for n in net.getNodes()}
    checked = 0
    for nid, (lon, lat) in osm.nodes.items():
        if str(nid) in junction_ids:
            node = net.getNode(str(nid))
            if node.getType() == "internal" or "cluster" in node.getID():
                continue
            x, y = wgs84_to_utm(lon, lat)
            # joined junctions move to the cluster centre; plain ones keep the OSM position
            if (
                abs(node.getCoord()[0] - float(x)) < 0.01
                and abs(node.getCoord()[1] - float(y)) < 0.01
            ):
                checked += 1
    assert checked >= 20


def test_signal_programs_are_valid(built: Path, net, facts: NetworkFacts) -> None:
    assert facts.counts["signals"] >= 10
    assert facts.signal_problems == []
    # SUMO's own tls check (tools/tls/tls_check.py) agrees: every phase covers every controlled link
    out = run_tool(
        [sys.executable, str(sumo_tool("tls/tls_check.py")), str(built / NET_FILE)],
        what="tls_check",
    )
    assert "Error" not in out
    assert out.count("Checking tls") == facts.counts["signals"]


def test_signal_check_finds_green_green_conflicts(built: Path, net, tmp_path: Path) -> None:
    """An all-green program on a real junction must be reported (the check can fail)."""
    tls = sorted(net.getTrafficLights(), key=lambda t: -len(t.getLinks()))[0]
    n = max(tls.getLinks()) + 1
    bad = tmp_path / "bad.tll.xml"
    bad.write_text(
        f'<tlLogics><tlLogic id="{tls.getID()}" type="static" programID="0" offset="0">'
        f'<phase duration="30" state="{"G" * n}"/><phase duration="3" state="{"y" * n}"/>'
        "</tlLogic></tlLogics>",
        encoding="utf-8",
    )
    out = tmp_path / "bad.net.xml.gz"
    subprocess.run(
        [str(sumo_binary("netconvert")), "-s", str(built / NET_FILE), "--tllogic-files", str(bad),
         "-o", str(out), "--no-warnings"],
        check=True, capture_output=True,
    )  # fmt: skip
    problems = check_signals(out)
    assert any(f"signal '{tls.getID()}'" in p and "conflict" in p for p in problems)
    assert any("Unsafe green phase" in p for p in problems)  # SUMO's own load-time check


def test_wall_junctions_are_signalised(net, osm) -> None:
    """Every OSM traffic_signals node at an intersection of the Wälle is controlled by a signal.

    Signals at a mere bend of the ring (two arms) control no conflict; netconvert drops them
    (--tls.discard-simple), so only nodes with three or more arms are required.
    """
    controlled = set()
    for tls in net.getTrafficLights():
        for in_lane, _, _ in tls.getConnections():
            controlled.add(in_lane.getEdge().getToNode().getID())
    signal_nodes = {
        str(n) for n, t in osm.node_tags.items() if t.get("highway") == "traffic_signals"
    }
    on_walls = set()
    for _, (refs, tags) in osm.ways.items():
        if tags.get("name") in ("Ostwall", "Westwall", "Nordwall", "Südwall"):
            on_walls |= {str(r) for r in refs} & signal_nodes
    assert on_walls, "the pack has signals on the Wälle"
    arms: dict[str, set[int]] = {}
    for _, (refs, tags) in osm.ways.items():
        if "highway" not in tags:
            continue
        for k, r in enumerate(refs):
            arms.setdefault(str(r), set()).update(
                refs[m] for m in (k - 1, k + 1) if 0 <= m < len(refs)
            )
    crossings = {n for n in on_walls if len(arms.get(n, ())) >= 3}
    assert len(crossings) >= 8
    # a joined junction is named cluster_<id>_<id>...; a plain one keeps the OSM node id
    missing = [n for n in crossings if not any(n == c or n in c.split("_") for c in controlled)]
    assert not missing, f"signal nodes without control: {missing}"


def _lanes(net, street: str):
    return [ln for e in net.getEdges() if e.getName() == street for ln in e.getLanes()]


def test_bus_bike_lanes_sidewalks_and_speeds(net, facts: NetworkFacts) -> None:
    assert facts.counts["bus_lanes"] > 0 and facts.counts["bike_lanes"] > 0
    # Nordwall: bus:lanes = yes|designated -> a lane for buses only (OSM tags of the pack)
    assert any(ln.getPermissions() == {"bus"} for ln in _lanes(net, "Nordwall"))
    # Westwall: cycleway:both = lane -> a bicycle-only lane in each direction
    assert sum(ln.getPermissions() == {"bicycle"} for ln in _lanes(net, "Westwall")) >= 2
    # sidewalk = both -> pedestrian-only lanes
    assert any(ln.getPermissions() == {"pedestrian"} for ln in _lanes(net, "Rheinstraße"))
    # maxspeed = 30 on Rheinstraße: 30 km/h = 8.333 m/s (netconvert rounds to 0.01)
    car_lanes = [ln for ln in _lanes(net, "Rheinstraße") if ln.allows("passenger")]
    assert car_lanes and all(abs(ln.getSpeed() - 30 / 3.6) < 0.01 for ln in car_lanes)
    # trams run on Rheinstraße and Ostwall (railway=tram on the street ways)
    assert any(ln.allows("tram") for ln in _lanes(net, "Ostwall"))


def test_pedestrian_zone_is_drivable_but_known(net, facts: NetworkFacts) -> None:
    koenig = [e for e in net.getEdges() if e.getName() == "Königstraße"]
    assert koenig and all(e.getID() in facts.zone_edges for e in koenig)
    assert all(e.allows("passenger") and e.allows("delivery") for e in koenig)


def test_every_platform_has_a_stop(built: Path, osm) -> None:
    platforms = {
        t["name"] for t in osm.node_tags.values() if t.get("public_transport") == "platform"
    }
    names = {el.get("name") for el in ET.parse(built / PTSTOPS_FILE).getroot()}
    assert platforms and platforms <= names


def test_gates_reachable_from_the_federal_road_links(net, facts: NetworkFacts, osm) -> None:
    """Every terminal gate is reachable by lorry from every external connection and back out."""
    gates_in_osm = [t for t in osm.node_tags.values() if t.get("barrier") == "gate"]
    assert len(facts.gates) == len(gates_in_osm) >= 1
    assert facts.connections and any("288" in c.ref for c in facts.connections)
    assert facts.reachability_problems == [] and facts.warnings == []
    for gate in facts.gates:
        for conn in facts.connections:
            for entry in conn.entry_edges:
                route, _ = net.getShortestPath(
                    net.getEdge(entry), net.getEdge(gate.inbound_edge), vClass="truck"
                )
                assert route, f"no lorry route from {entry} to gate {gate.name}"
            for exit_ in conn.exit_edges:
                start = net.getEdge(gate.outbound_edge or gate.terminal_edges[-1])
                route, _ = net.getShortestPath(start, net.getEdge(exit_), vClass="truck")
                assert route, f"no lorry route from gate {gate.name} to {exit_}"
        assert 0 < gate.inbound_pos < net.getEdge(gate.inbound_edge).getLength()
