"""Transit demand: lines by ref from the net's route relations (a short scenario run), the fallback
line table on a net without relations, and the errors for a misspelt stop or line."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from test_traffic_network import small_osm

from twin.city.build import run_build
from twin.city.pack import load_pack
from twin.errors import ConfigError
from twin.traffic import demand
from twin.traffic.demand import build_demand, read_lines, read_stops
from twin.traffic.kpis import read_kpis_csv
from twin.traffic.network import (
    FACTS_FILE,
    NET_FILE,
    PTLINES_FILE,
    PTSTOPS_FILE,
    NetworkFacts,
    build_network,
    network_step,
    read_net,
)
from twin.traffic.runs import execute, plan_run
from twin.traffic.scenario import check_scenario, load_scenario, net_index

REPO = Path(__file__).resolve().parents[1]
PACK = REPO / "data" / "krefeld" / "pack.toml"

BY_REF = """
[scenario]
title = "Lines by ref"
start = 2026-03-10T06:30:00Z
duration = "00:20"
seeds = [3]

[demand.transit]
lines = [{ ref = "041", headway_min = 4.0 }, { ref = "051" }]
"""


@pytest.fixture(scope="module")
def krefeld(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Krefeld net (with the pack's route relations), built into a fresh folder."""
    if not PACK.exists():
        pytest.skip("the Krefeld data pack is not in data/krefeld")
    build = tmp_path_factory.mktemp("build")
    run_build(load_pack(PACK), [network_step()], build)
    return build


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The net of a small hand-written OSM without route relations (platforms only)."""
    folder = tmp_path_factory.mktemp("small")
    build_network(small_osm(folder / "small.osm"), folder, strict=False)
    return folder


def _transit(folder: Path, spec: dict, out: Path):
    return build_demand(
        {"transit": {"headway_min": 10.0, "stop_duration_s": 20.0, **spec}}, seed=1,
        net_file=folder / NET_FILE, facts=NetworkFacts.from_json(folder / FACTS_FILE),
        stops_file=folder / PTSTOPS_FILE, begin=0.0, end=1800.0, hour_of=lambda t: 8,
        emission_model="HBEFA4", out_dir=out,
    )  # fmt: skip


def _scenario(tmp_path: Path, text: str):
    path = tmp_path / "lines.toml"
    path.write_text(text, encoding="utf-8")
    return load_scenario(path)


def _index(folder: Path):
    stops = {k: [s["id"] for s in v] for k, v in read_stops(folder / PTSTOPS_FILE).items()}
    return net_index(
        read_net(folder / NET_FILE), stops=stops, lines=read_lines(folder / PTLINES_FILE)
    )


def test_a_scenario_naming_lines_by_ref_runs(krefeld: Path, tmp_path: Path) -> None:
    """Lines named by ref run with their stops from the net: the timetable's stops exist on lanes
    the line's mode may use, and the transit KPIs per line come out of a short run."""
    sc = _scenario(tmp_path, BY_REF)
    check_scenario(sc, _index(krefeld))
    sc.warmup_s = 0.0
    plan = plan_run(sc, runs_root=tmp_path / "runs", products=krefeld, seeds=1, end_s=1200.0)
    run_dir = execute(plan)
    (folder,) = (run_dir / "demand").glob("seed-3-*")
    routes = ET.parse(folder / "transit.rou.xml").getroot()
    flows = {f.get("id"): f for f in routes.iter("flow")}
    assert sorted(flows) == ["bus_051:0", "bus_051:1", "tram_041:0", "tram_041:1"]
    assert flows["tram_041:0"].get("period") == "240"  # the scenario's headway
    assert flows["bus_051:0"].get("period") == "600"  # the relation's interval (10 min)
    net = read_net(krefeld / NET_FILE)
    lanes = {s["id"]: s["lane"] for v in read_stops(krefeld / PTSTOPS_FILE).values() for s in v}
    for route in routes.iter("route"):
        mode = route.get("id").split("_")[0]
        stops = [s.get("busStop") for s in route.iter("stop")]
        assert len(stops) >= 2 and all(s.get("until") for s in route.iter("stop"))
        assert all(net.getLane(lanes[s]).allows(mode) for s in stops), route.get("id")
    kpis = {k for _, _, k, _, _ in read_kpis_csv(run_dir / "kpis.csv")}
    for k in ("punctuality_line_041", "punctuality_line_051", "person_delay_mean"):
        assert k in kpis, k
    assert not any(k.endswith(("_054", "_076")) for k in kpis)  # only the lines named


def test_unknown_line_ref_is_refused_with_a_hint(krefeld: Path, tmp_path: Path) -> None:
    sc = _scenario(tmp_path, BY_REF.replace('ref = "051"', 'ref = "05l"'))
    with pytest.raises(ConfigError, match=r"lines\[1\]\.ref': unknown line '05l' \(did you mean"):
        check_scenario(sc, _index(krefeld))
    with pytest.raises(
        ConfigError, match=r"no bus or tram line '05l' in the net's route relations"
    ):
        _transit(krefeld, {"lines": sc.baseline.demand["transit"]["lines"]}, tmp_path / "d")


def test_line_tables_need_a_mode_and_distinct_refs(tmp_path: Path) -> None:
    own = BY_REF.replace('{ ref = "051" }', '{ ref = "9", stops = ["Rathaus", "Südwall"] }')
    with pytest.raises(
        ConfigError, match=r"'demand\.transit\.lines\[1\]\.mode': a line with its own"
    ):
        _scenario(tmp_path, own)
    twice = BY_REF.replace('{ ref = "051" }', '{ ref = "041" }')
    with pytest.raises(
        ConfigError, match=r"'demand\.transit\.lines\[1\]\.ref': line '041' is named"
    ):
        _scenario(tmp_path, twice)


FALLBACK = [
    {"ref": "7", "mode": "bus", "name": "Bus 7", "stops": ["Am Markt", "Hafen"],
     "headway_min": 15.0, "both_directions": True},
]  # fmt: skip


def test_a_net_without_route_relations_uses_the_fallback_table(
    small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert read_lines(small / PTLINES_FILE) == []
    monkeypatch.setattr(demand, "DEFAULT_LINES", FALLBACK)
    d = _transit(small, {}, tmp_path / "d")
    part = d.meta["parts"]["transit"]
    assert part["source"].startswith("the fallback line table") and part["lines"] == ["7"]
    flows = list(ET.parse(tmp_path / "d" / "transit.rou.xml").getroot().iter("flow"))
    assert sorted(f.get("id") for f in flows) == ["bus_7:0", "bus_7:1"]
    assert {f.get("period") for f in flows} == {"900"}
    assert any("fallback line table" in n for n in d.meta["notes"])
    # a line named by ref alone is taken from the fallback table, at the scenario's headway
    d = _transit(small, {"lines": [{"ref": "7", "headway_min": 5.0}]}, tmp_path / "d2")
    flows = list(ET.parse(tmp_path / "d2" / "transit.rou.xml").getroot().iter("flow"))
    assert {f.get("period") for f in flows} == {"300"} and len(flows) == 2


def test_a_misspelt_fallback_stop_names_the_line_and_the_nearest_stops(
    small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = [{**FALLBACK[0], "stops": ["Am Markt", "Hafne"]}]
    monkeypatch.setattr(demand, "DEFAULT_LINES", bad)
    with pytest.raises(
        ConfigError,
        match=r"fallback line table.*: line 7: no stop named 'Hafne' in the net "
        r"\(did you mean 'Hafen'\?\)",
    ):
        _transit(small, {}, tmp_path / "d")
    sc = _scenario(
        tmp_path,
        BY_REF.replace('lines = [{ ref = "041", headway_min = 4.0 }, { ref = "051" }]', ""),
    )
    with pytest.raises(
        ConfigError, match=r"lines\.toml: 'demand\.transit\.lines': the fallback.*'Hafne'"
    ):
        check_scenario(sc, _index(small))  # refused before SUMO starts, naming the scenario file
