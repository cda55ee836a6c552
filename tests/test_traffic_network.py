"""The Krefeld SUMO network built from the pack's OSM: signals, lanes, stops, lines from the route
relations, gates and reachability; the gate rule (area or tag) on a small hand-written OSM."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from twin.city.build import BuildError, run_build
from twin.city.osm import read_osm
from twin.city.pack import load_pack
from twin.errors import ConfigError
from twin.geo import utm_to_wgs84
from twin.traffic.demand import read_lines, read_stops
from twin.traffic.install import sumo_binary, sumo_tool
from twin.traffic.network import (
    FACTS_FILE,
    NET_FILE,
    NETWORK_STEP,
    PTLINES_FILE,
    PTSTOPS_FILE,
    NetworkFacts,
    build_network,
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


# -- public transport lines from the OSM route relations ----------------------------------------------


def _author():
    """The pack's author script as a module (its tables: what the pack's OSM was written from)."""
    spec = importlib.util.spec_from_file_location("krefeld_author", PACK.parent / "author.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lines_from_the_route_relations_match_the_author(built: Path) -> None:
    """netconvert's ptlines carry every route relation the author wrote: ref, mode, interval and
    the platforms in order, each a stop on a lane the line's mode may use."""
    author = _author()
    lines = read_lines(built / PTLINES_FILE)
    stops = read_stops(built / PTSTOPS_FILE)
    name_of = {s["id"]: name for name, group in stops.items() for s in group}
    lane_of = {s["id"]: s["lane"] for group in stops.values() for s in group}
    net = read_net(built / NET_FILE)
    got = sorted((ln["ref"], ln["mode"], ln["period_s"], [name_of[i] for i in ln["stops"]])
                 for ln in lines)  # fmt: skip
    wanted = sorted((tags["ref"], tags["route"], 60.0 * float(tags["interval"]), platforms)
                    for tags, platforms, _ in author.PT_ROUTES)  # fmt: skip
    assert got == wanted
    assert {ln["ref"] for ln in lines} == {"041", "044", "051", "054", "076"}
    for ln in lines:
        for stop in ln["stops"]:
            assert net.getLane(lane_of[stop]).allows(ln["mode"]), (ln["ref"], stop)
    osm = (PACK.parent / "streets.osm").read_text(encoding="utf-8")
    assert osm.count('<tag k="type" v="route"/>') == len(author.PT_ROUTES)
    assert 'k="note" v="synthetic line' in osm  # the data says that the lines are synthetic


# -- the gate rule on a small hand-written OSM -----------------------------------------------------------

X0, Y0 = 330000.0, 5690000.0  # the small OSM's origin (EPSG:25832)


def small_osm(
    path: Path, *, port: str | None = "way", relations: bool = False, farm_gate_ref: bool = False
) -> Path:
    """A small OSM: a main road (Hauptstraße, primary) from border to border, a port road
    (Hafenweg) south into a port area (`port`: a closed "way", a "multipolygon" or None) with the
    gate Hafentor, a farm road (Feldweg) north with the gate Weidetor outside any port, and bus
    platforms Am Markt and Hafen beside the main road; with `relations` a route relation (bus 7)
    serves both platforms."""
    points = {
        "w": (0, 1000), "markt": (1200, 1000), "feld": (1500, 1000), "hafen": (2000, 1000),
        "e": (3000, 1000), "weide": (1500, 1300), "feld_end": (1500, 1600),
        "tor": (2000, 700), "kai": (2000, 400),
        "p1": (1800, 300), "p2": (2300, 300), "p3": (2300, 800), "p4": (1800, 800),
        "pl_markt": (1200, 1010), "pl_hafen": (2600, 1010),
    }  # fmt: skip
    ids = {k: i + 1 for i, k in enumerate(points)}
    tags = {
        "weide": {"barrier": "gate", "name": "Weidetor", **({"ref:gate": "7"} if farm_gate_ref else {})},
        "tor": {"barrier": "gate", "name": "Hafentor"},
        "pl_markt": {"highway": "bus_stop", "public_transport": "platform", "bus": "yes", "name": "Am Markt"},
        "pl_hafen": {"highway": "bus_stop", "public_transport": "platform", "bus": "yes", "name": "Hafen"},
    }  # fmt: skip
    xy = np.array(list(points.values()), dtype=float) + [X0, Y0]
    lon, lat = utm_to_wgs84(xy[:, 0], xy[:, 1])

    def tag_xml(t: dict[str, str]) -> str:
        return "".join(f'<tag k="{k}" v="{v}"/>' for k, v in t.items())

    out = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6" generator="test">']
    for (key, nid), a, b in zip(ids.items(), lon, lat, strict=True):
        out.append(
            f'  <node id="{nid}" version="1" lat="{b:.8f}" lon="{a:.8f}">{tag_xml(tags.get(key, {}))}</node>'
        )
    ways = [
        (1, ["w", "markt", "feld"], {"highway": "primary", "name": "Hauptstraße", "lanes": "2"}),
        (2, ["feld", "hafen"], {"highway": "primary", "name": "Hauptstraße", "lanes": "2"}),
        (3, ["hafen", "e"], {"highway": "primary", "name": "Hauptstraße", "lanes": "2"}),
        (4, ["feld", "weide", "feld_end"], {"highway": "tertiary", "name": "Feldweg"}),
        (5, ["hafen", "tor", "kai"], {"highway": "service", "name": "Hafenweg", "hgv": "designated"}),
    ]  # fmt: skip
    port_tags = {"landuse": "industrial", "industrial": "port", "name": "Testhafen"}
    if port == "way":
        ways.append((6, ["p1", "p2", "p3", "p4", "p1"], port_tags))
    elif port == "multipolygon":  # the outline in two open ways, the tags on the relation
        ways += [(6, ["p1", "p2", "p3"], {}), (7, ["p3", "p4", "p1"], {})]
    for wid, keys, t in ways:
        nds = "".join(f'<nd ref="{ids[k]}"/>' for k in keys)
        out.append(f'  <way id="{wid}" version="1">{nds}{tag_xml(t)}</way>')
    if port == "multipolygon":
        out.append(
            '  <relation id="20" version="1"><member type="way" ref="6" role="outer"/>'
            '<member type="way" ref="7" role="outer"/>'
            f"{tag_xml({'type': 'multipolygon', **port_tags})}</relation>"
        )
    if relations:
        members = (f'<member type="node" ref="{ids["pl_markt"]}" role="platform"/>'
                   f'<member type="node" ref="{ids["pl_hafen"]}" role="platform"/>'
                   '<member type="way" ref="1"/><member type="way" ref="2"/><member type="way" ref="3"/>')  # fmt: skip
        route = {"type": "route", "route": "bus", "ref": "7", "name": "Bus 7: Am Markt => Hafen"}
        out.append(f'  <relation id="21" version="1">{members}{tag_xml(route)}</relation>')
    out.append("</osm>")
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


def _gates(tmp_path: Path, osm: Path, **options: str) -> list[str]:
    facts = build_network(osm, tmp_path / "net", strict=False, **options)
    return [g.name for g in facts.gates]


@pytest.mark.parametrize("port", ["way", "multipolygon"])
def test_only_the_gate_inside_the_port_area_is_a_terminal_gate(tmp_path: Path, port: str) -> None:
    """Both gates are barrier=gate on truck roads; the farm gate outside the port is not taken."""
    assert _gates(tmp_path, small_osm(tmp_path / "small.osm", port=port)) == ["Hafentor"]


def test_gate_area_tag_and_gate_tag_select_the_gates(tmp_path: Path) -> None:
    osm = small_osm(tmp_path / "small.osm", farm_gate_ref=True)
    assert _gates(tmp_path, osm, gate_area_tag="landuse=port") == []  # no such area
    assert _gates(tmp_path, osm, gate_area_tag="industrial=*") == ["Hafentor"]
    # a gate tag takes its nodes wherever they are, and only those
    assert _gates(tmp_path, osm, gate_tag="ref:gate=*") == ["Weidetor"]
    assert _gates(tmp_path, osm, gate_tag="ref:gate=7") == ["Weidetor"]
    assert _gates(tmp_path, osm, gate_tag="ref:gate=8") == []
    assert _gates(tmp_path, small_osm(tmp_path / "none.osm", port=None)) == []
    with pytest.raises(ConfigError, match=r"gate_tag.*key=value or key=\*, got 'ref:gate'"):
        _gates(tmp_path, osm, gate_tag="ref:gate")


def test_network_step_takes_the_gate_tag_from_the_pack(tmp_path: Path, mini_pack: Path) -> None:
    """The streets layer's gate_tag reaches the step; a malformed one names pack.toml and the field."""
    small_osm(mini_pack.parent / "streets.osm", farm_gate_ref=True)
    toml = mini_pack.read_text(encoding="utf-8")
    mini_pack.write_text(toml.replace('[layers.streets]\n', '[layers.streets]\ngate_tag = "ref:gate=*"\n'),
                         encoding="utf-8")  # fmt: skip
    build = tmp_path / "build"
    assert [r.status for r in run_build(load_pack(mini_pack), [network_step()], build)] == ["built"]
    assert [g.name for g in NetworkFacts.from_json(build / FACTS_FILE).gates] == ["Weidetor"]
    mini_pack.write_text(toml.replace('[layers.streets]\n', '[layers.streets]\ngate_tag = "ref:gate"\n'),
                         encoding="utf-8")  # fmt: skip
    with pytest.raises((BuildError, ConfigError), match=r"pack\.toml: 'layers\.streets\.gate_tag'"):
        run_build(load_pack(mini_pack), [network_step()], tmp_path / "build2")
