"""Traffic scenarios end to end: short windows of each Krefeld scenario and of SUMO's Bologna scenario.

Each run checks its outputs (kpis.csv columns, report.html, PNGs, FCD, status.json) and what the
scenario is about, against SUMO's own outputs parsed here independently: transit priority lowers bus
delay at the treated junctions, the barrier logs exactly the vehicles without permit that entered.
"""

from __future__ import annotations

import copy
import csv
import gzip
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from progress_recording import Recording

from twin.city.build import run_build
from twin.city.pack import load_pack
from twin.cli import main
from twin.errors import ConfigError, TwinError
from twin.progress import PREFIX
from twin.runs import read_status
from twin.traffic.demand import build_demand
from twin.traffic.kpis import KPI_COLUMNS, read_kpis_csv
from twin.traffic.network import FACTS_FILE, NET_FILE, PTSTOPS_FILE, NetworkFacts, network_step
from twin.traffic.runs import RunError, execute, plan_run, without_missing_files
from twin.traffic.scenario import load_scenario, parse_hhmm, sumocfg_scenario

REPO = Path(__file__).resolve().parents[1]
PACK = REPO / "data" / "krefeld" / "pack.toml"
SIMULATIONS = REPO / "simulations"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BOLOGNA = SHARED / "sumo-scenarios" / "bologna-acosta"
COLOGNE = SHARED / "sumo-scenarios" / "port-cologne"

needs_pack = pytest.mark.skipif(
    not PACK.exists(), reason="the Krefeld data pack is not in data/krefeld"
)


@pytest.fixture(scope="module")
def products(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not PACK.exists():
        pytest.skip("the Krefeld data pack is not in data/krefeld")
    build = tmp_path_factory.mktemp("build")
    run_build(load_pack(PACK), [network_step()], build)
    return build


def _short(name: str, *, warmup_s: float = 300.0):
    """A scenario from simulations/ with a short warm-up (the test windows are minutes long)."""
    sc = load_scenario(SIMULATIONS / f"{name}.toml")
    sc.warmup_s = warmup_s
    return sc


def _run(scenario, products, runs: Path, variants: list[str], end: str, seeds: int = 2) -> Path:
    plan = plan_run(scenario, runs_root=runs, products=products, variants=variants, seeds=seeds,
                    end_s=parse_hhmm(end))  # fmt: skip
    return execute(plan)


def _kpi(run_dir: Path, kpi: str) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for variant, seed, name, value, _ in read_kpis_csv(run_dir / "kpis.csv"):
        if name == kpi:
            out.setdefault(variant, {})[seed] = value
    return out


def _check_outputs(run_dir: Path, variants: list[str], seeds: int) -> None:
    status = read_status(run_dir)
    assert status["state"] == "finished" and status["error"] is None and status["kind"] == "traffic"
    assert not run_dir.name.startswith(".") and "." not in run_dir.name  # a plain <stamp> name
    assert status["metrics"]["simulations"] == len(variants) * seeds
    with (run_dir / "kpis.csv").open(encoding="utf-8") as f:
        reader = csv.reader(f)
        assert tuple(next(reader)) == KPI_COLUMNS
        rows = list(reader)
    assert {r[0] for r in rows} == set(variants)
    assert len({r[1] for r in rows}) == seeds
    assert (run_dir / "report.html").stat().st_size > 1000
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "Emission model" in html
    pngs = sorted(run_dir.glob("*.png"))
    assert pngs and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    for v in variants:
        first = sorted(run_dir.glob(f"{v}/seed-*"))[0]
        with gzip.open(first / "fcd.xml.gz", "rt", encoding="utf-8") as f:
            assert "<timestep" in f.read(20000)
        assert (first / "DONE").exists() and (first / "tripinfo.xml").exists()


# -- the three Krefeld scenarios --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def priority_run(products: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    sc = _short("bus-bike-priority")
    return _run(
        sc, products, tmp_path_factory.mktemp("runs"), ["bus-priority", "bike-priority"], "00:10"
    )


def test_bus_bike_priority_end_to_end(priority_run: Path) -> None:
    _check_outputs(priority_run, ["baseline", "bus-priority", "bike-priority"], 2)
    for variant in ("baseline", "bus-priority"):
        assert (priority_run / variant / "seed-21" / "stopinfo.xml").exists()
    kpis = {k for _, _, k, _, _ in read_kpis_csv(priority_run / "kpis.csv")}
    for k in ("delay_mean_bus", "delay_mean_bike", "delay_mean_car", "person_delay_mean",
              "stops_per_vehicle", "punctuality", "schedule_delay_mean", "co2_total"):  # fmt: skip
        assert k in kpis, k
    assert any(k.startswith("punctuality_line_051") for k in kpis)


def test_bus_priority_lowers_bus_delay_at_treated_junctions(priority_run: Path) -> None:
    """Same seeds (same demand): mean transit delay on the treated approaches falls by >= 10 %."""
    d = _kpi(priority_run, "transit_delay_treated_junctions")
    base, prio = d["baseline"], d["bus-priority"]
    assert set(base) == set(prio) == {21, 22}
    mean_base = sum(base.values()) / 2
    mean_prio = sum(prio.values()) / 2
    assert mean_prio < 0.9 * mean_base, (base, prio)
    passages = _kpi(priority_run, "transit_passages_treated")
    assert min(passages["baseline"].values()) >= 10  # enough buses and trams passed to measure


def test_bike_priority_lowers_bike_delay_at_treated_junctions(priority_run: Path) -> None:
    """Same seeds: cyclists lose less time on the approaches of the bike-priority signals, measured
    by SUMO's edge data for bikes; the KPI equals the sum of their time loss over their passages."""
    d = _kpi(priority_run, "bike_delay_treated_junctions")
    base, prio = d["baseline"], d["bike-priority"]
    assert set(base) == set(prio) == {21, 22}
    assert sum(prio.values()) < 0.9 * sum(base.values()), (base, prio)
    assert min(_kpi(priority_run, "bike_passages_treated")["baseline"].values()) >= 50
    plan = json.loads((priority_run / "plan.json").read_text(encoding="utf-8"))
    treated = set(plan["bike_treated_edges"])
    loss = left = 0.0
    for el in ET.parse(priority_run / "baseline" / "seed-21" / "edgedata.bike.xml").iter("edge"):
        if el.get("id") in treated:
            loss, left = loss + float(el.get("timeLoss")), left + float(el.get("left"))
    assert base[21] == pytest.approx(loss / left, rel=1e-6)


def _trips(path: Path) -> list[dict[str, str]]:
    """tripinfo elements with their attributes, less the list of devices (outputs differ)."""
    out = []
    for el in ET.parse(path).getroot().iter("tripinfo"):
        attrs = dict(el.attrib)
        attrs.pop("devices", None)
        out.append(attrs)
    return out


def test_saved_configuration_replays_the_baseline_with_plain_sumo(
    priority_run: Path, tmp_path: Path
) -> None:
    """`sumo -c run.sumocfg` (the plain binary, no Python) gives the baseline's trips exactly."""
    import subprocess

    from twin.traffic.install import sumo_binary, sumo_env

    folder = priority_run / "baseline" / "seed-21"
    out = tmp_path / "tripinfo.xml"
    cmd = [str(sumo_binary("sumo")), "-c", str(folder / "run.sumocfg"), "--tripinfo-output",
           str(out), "--tripinfo-output.write-unfinished", "--device.emissions.probability", "1",
           "--no-step-log", "--no-warnings"]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, env=sumo_env(), timeout=300)
    replayed, original = _trips(out), _trips(folder / "tripinfo.xml")
    assert len(original) > 50
    assert replayed == original


def test_kpis_agree_with_sumo_tripinfo(priority_run: Path) -> None:
    """delay_mean_bus equals the mean timeLoss of the buses in SUMO's tripinfo (rel. 1e-6)."""
    folder = priority_run / "baseline" / "seed-21"
    plan = json.loads((priority_run / "plan.json").read_text(encoding="utf-8"))
    warmup = plan["warmup_s"]
    losses = [
        float(el.get("timeLoss"))
        for el in ET.parse(folder / "tripinfo.xml").getroot().iter("tripinfo")
        if el.get("vType") == "bus" and float(el.get("depart")) >= warmup
    ]
    assert losses
    got = _kpi(priority_run, "delay_mean_bus")["baseline"][21]
    assert got == pytest.approx(sum(losses) / len(losses), rel=1e-6)


@pytest.fixture(scope="module")
def barrier_run(products: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    sc = _short("virtual-barrier")
    return _run(sc, products, tmp_path_factory.mktemp("runs"), ["enforced-80"], "00:10")


def _entered_without_permit(folder: Path, zone: set[str], permitted: set[str]) -> set[str]:
    """Vehicles whose driven route (SUMO's vehroutes with exit times) reached a zone edge, no permit."""
    vclass = {k: v["vClass"] for k, v in json.loads((folder / "vtypes.json").read_text()).items()}
    found = set()
    for veh in ET.parse(folder / "vehroutes.xml").getroot().iter("vehicle"):
        route = veh.find("route")
        if route is None:
            route = veh.find("routeDistribution").findall("route")[-1]
        edges = route.get("edges").split()
        exits = [float(x) for x in route.get("exitTimes").split()]
        driven = [e for i, e in enumerate(edges) if i == 0 or exits[i - 1] >= 0]
        params = {p.get("key"): p.get("value") for p in veh.findall("param")}
        permit = params.get("permit", vclass.get(veh.get("type"), ""))
        if set(driven) & zone and permit not in permitted:
            found.add(veh.get("id"))
    return found


def test_virtual_barrier_end_to_end(barrier_run: Path) -> None:
    _check_outputs(barrier_run, ["baseline", "enforced-80"], 2)
    completeness = _kpi(barrier_run, "detection_completeness")
    assert all(v == 100.0 for per in completeness.values() for v in per.values())
    removed = _kpi(barrier_run, "through_traffic_removed")["enforced-80"]
    assert sum(removed.values()) / len(removed) > 30.0  # 80 % comply: most through traffic goes
    assert _kpi(barrier_run, "detour_length_mean")["enforced-80"]


def test_barrier_logs_exactly_the_vehicles_without_permit_that_entered(barrier_run: Path) -> None:
    plan = json.loads((barrier_run / "plan.json").read_text(encoding="utf-8"))
    zone = set(plan["zone_edges"])
    permitted = set(plan["permit_classes"])
    assert zone and permitted == {"delivery", "taxi", "bus", "emergency"}
    for variant in ("baseline", "enforced-80"):
        for folder in sorted((barrier_run / variant).glob("seed-*")):
            with (folder / "controllers" / "violations.csv").open(encoding="utf-8") as f:
                logged = {row["vehicle_id"] for row in csv.DictReader(f)}
            truth = _entered_without_permit(folder, zone, permitted)
            assert logged == truth, (variant, folder.name, logged ^ truth)
            if variant == "baseline":
                assert truth  # through traffic and short cuts exist without enforcement


@pytest.fixture(scope="module")
def freight_run(products: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    sc = _short("rheinhafen-freight")
    return _run(sc, products, tmp_path_factory.mktemp("runs"), ["network-and-slots"], "00:10")


def test_rheinhafen_freight_end_to_end(freight_run: Path) -> None:
    _check_outputs(freight_run, ["baseline", "network-and-slots"], 2)
    kpis = {k: u for _, _, k, _, u in read_kpis_csv(freight_run / "kpis.csv")}
    expected = {"truck_trips_completed": "veh", "truck_travel_time_mean": "s", "gate_queue_mean": "veh",
                "gate_queue_max": "veh", "gate_throughput": "veh/h", "delay_mean_other_traffic": "s/veh",
                "co2_total": "kg", "nox_total": "g", "co2_truck": "kg"}  # fmt: skip
    for k, unit in expected.items():
        assert kpis.get(k) == unit, k
    checkins = _kpi(freight_run, "gate_checkins")
    assert min(checkins["baseline"].values()) > 0
    html = (freight_run / "report.html").read_text(encoding="utf-8")
    assert "HBEFA4" in html and "HBEFA 4.2" in html


def test_truck_route_network_keeps_lorries_off_the_south_access(
    freight_run: Path, products: Path
) -> None:
    """Free routing sends some lorries through the port's south access (off the truck route
    network); with the network no lorry uses it. Counted from SUMO's own vehicle routes."""
    from twin.traffic.network import read_net

    net = read_net(products / NET_FILE)
    south = {e.getID() for e in net.getEdges() if e.getName() == "Hafenzufahrt Süd"}
    assert south
    for variant, expect_use in (("baseline", True), ("network-and-slots", False)):
        users = trucks = 0
        for routes in sorted(freight_run.glob(f"{variant}/seed-*/vehroutes.xml")):
            for veh in ET.parse(routes).getroot().iter("vehicle"):
                if veh.get("type") != "truck":
                    continue
                trucks += 1
                edges = {e for r in veh.iter("route") for e in r.get("edges", "").split()}
                users += bool(edges & south)
        assert trucks > 0, variant
        assert (users > 0) == expect_use, (variant, users, trucks)


def test_slot_booking_spreads_gate_arrivals(products: Path, tmp_path: Path) -> None:
    """With slot booking no gate gets more lorries in a slot than its capacity (independent count)."""
    sc = load_scenario(SIMULATIONS / "rheinhafen-freight.toml")
    spec = copy.deepcopy(sc.variants["slot-booking"].demand)
    spec = {"trucks": spec["trucks"]}
    facts = NetworkFacts.from_json(products / FACTS_FILE)
    d = build_demand(spec, seed=5, net_file=products / NET_FILE, facts=facts,
                     stops_file=products / PTSTOPS_FILE, begin=0.0, end=4 * 3600.0,
                     hour_of=lambda t: 6 + int(t // 3600), emission_model="HBEFA4", out_dir=tmp_path / "d")  # fmt: skip
    assert d.meta["parts"]["trucks"]["slot_booked"] > 0
    from twin.traffic.network import read_net

    net = read_net(products / NET_FILE)
    trucks = spec["trucks"]
    capacity = int(0.85 * trucks["slot_minutes"] * 60 / trucks["gate_service_s"])
    per_slot: dict[tuple[str, int], int] = {}
    for trip in ET.parse(tmp_path / "d" / "trucks.rou.xml").getroot().iter("trip"):
        stop = trip.find("stop")
        if stop is None:
            continue
        _, tt = net.getFastestPath(net.getEdge(trip.get("from")), net.getEdge(stop.get("lane").rsplit("_", 1)[0]),
                                   vClass="truck")  # fmt: skip
        arrival = float(trip.get("depart")) + tt
        key = (stop.get("actType"), int(arrival // (trucks["slot_minutes"] * 60)))
        per_slot[key] = per_slot.get(key, 0) + 1
    assert per_slot and max(per_slot.values()) <= capacity


def test_demand_is_reproducible_bit_for_bit(
    priority_run: Path, products: Path, tmp_path: Path
) -> None:
    """The demand a run used is made again, byte for byte, from its seed; another seed differs."""
    sc = _short("bus-bike-priority")
    plan = json.loads((priority_run / "plan.json").read_text(encoding="utf-8"))
    (used,) = (priority_run / "demand").glob("seed-21-*")
    (other,) = (priority_run / "demand").glob("seed-22-*")
    again = build_demand(
        sc.baseline.demand, seed=21, net_file=products / NET_FILE,
        facts=NetworkFacts.from_json(products / FACTS_FILE), stops_file=products / PTSTOPS_FILE,
        begin=0.0, end=plan["warmup_s"] + plan["end_s"], hour_of=sc.local_hour,
        emission_model="HBEFA4", out_dir=tmp_path / "again",
    )  # fmt: skip
    files = sorted(p.name for p in used.iterdir())
    assert files == sorted(p.name for p in again.folder.iterdir())
    for name in files:
        assert (used / name).read_bytes() == (again.folder / name).read_bytes(), name
    assert (used / "cars.trips.xml").read_bytes() != (other / "cars.trips.xml").read_bytes()
    assert json.loads((used / "demand.json").read_text())["seed"] == 21


# -- errors ---------------------------------------------------------------------------------------------


BAD_KEY = """
[scenario]
title = "bad"
start = 2026-03-10T06:00:00Z
duration = "00:10"
seeds = [1]
[demand.trucks]
per_dya = 100.0
"""


def test_bad_scenario_file_gives_one_clear_error_and_a_failed_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "typo.toml"
    path.write_text(BAD_KEY, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"typo\.toml: unknown key 'demand\.trucks\.per_dya'"):
        load_scenario(path)
    runs = tmp_path / "runs"
    code = main(
        ["traffic", "run", str(path), "--runs-dir", str(runs), "--build-dir", str(tmp_path / "b")]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith("twin: error: ") and "per_dya" in err[-1]
    (run_dir,) = (runs / "typo").iterdir()
    status = read_status(run_dir)
    assert status["state"] == "failed" and "per_dya" in status["error"]
    assert not (run_dir / "kpis.csv").exists()


@needs_pack
def test_unknown_edge_is_refused_before_sumo_starts(products: Path, tmp_path: Path) -> None:
    text = (SIMULATIONS / "virtual-barrier.toml").read_text(encoding="utf-8")
    text = text.replace('zone_streets = ["Königstraße"]\npermit_classes = ["delivery", "taxi", "bus", "emergency"]\ncompliance = 0.8',
                        'zone_edges = ["no_such_edge"]\npermit_classes = ["delivery"]\ncompliance = 0.8')  # fmt: skip
    assert "no_such_edge" in text
    path = tmp_path / "barrier-typo.toml"
    path.write_text(text, encoding="utf-8")
    runs = tmp_path / "runs"
    with pytest.raises(ConfigError, match=r"unknown edge 'no_such_edge'"):
        plan_run(load_scenario(path), runs_root=runs, products=products, seeds=1, end_s=60.0)
    (run_dir,) = (runs / "barrier-typo").iterdir()
    assert read_status(run_dir)["state"] == "failed"
    assert not any(run_dir.glob("*/seed-*"))  # SUMO never started


@needs_pack
@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('corridor_streets = ["Ostwall", "Westwall", "Nordwall", "Südwall", "Rheinstraße"]\ndetection',
         'junctions = ["J_nope"]\ndetection', r"unknown signalised junction 'J_nope'"),
        ('corridor_streets = ["Ostwall", "Westwall", "Nordwall", "Südwall", "Rheinstraße"]\ndetection',
         'corridor_streets = ["Ostwal"]\ndetection', r"unknown signalised street 'Ostwal' \(did you mean 'Ostwall'\?\)"),
        ('max_extension_s = 20.0', 'max_extension = 20.0', r"max_extension"),
        ('type = "safety_monitor"', 'type = "safety_monitr"', r"'variants\.bus-priority\.controllers\[1\]\.type' must be one of"),
    ],
)  # fmt: skip
def test_bad_controller_specs_are_refused(
    products: Path, tmp_path: Path, old: str, new: str, message: str
) -> None:
    text = (SIMULATIONS / "bus-bike-priority.toml").read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "prio.toml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as info:
        plan_run(load_scenario(path), runs_root=tmp_path / "runs", products=products, seeds=1)
    assert "prio.toml" in str(info.value)


def test_failing_sumo_marks_the_run_failed(tmp_path: Path) -> None:
    if not BOLOGNA.exists():
        pytest.skip(f"SUMO scenarios not found at {BOLOGNA}")
    scen = tmp_path / "broken"
    scen.mkdir()
    (scen / "routes.rou.xml").write_text(
        '<routes><vehicle id="v" depart="0"><route edges="no_such_edge"/></vehicle></routes>',
        "utf-8",
    )
    (scen / "run.sumocfg").write_text(
        f'<configuration><input><net-file value="{BOLOGNA / "acosta_buslanes.net.xml"}"/>'
        '<route-files value="routes.rou.xml"/></input></configuration>',
        encoding="utf-8",
    )
    sc = sumocfg_scenario(scen / "run.sumocfg", junctions=None, duration_s=60.0, seeds=[1])
    plan = plan_run(sc, runs_root=tmp_path / "runs", products=None)
    with pytest.raises(RunError, match="no_such_edge"):
        execute(plan)
    status = read_status(plan.run_dir)
    assert status["state"] == "failed" and "no_such_edge" in status["error"]
    assert plan.run_dir.name.endswith(".failed")
    assert not (plan.run_dir / "kpis.csv").exists() and not (plan.run_dir / "report.html").exists()
    assert (plan.folder("baseline", 1) / "FAILED").exists()


# -- any SUMO scenario: Bologna ---------------------------------------------------------------------------


def test_bologna_priority_lowers_bus_delay(tmp_path: Path) -> None:
    """SUMO's Bologna scenario run as given vs. with transit priority on the signals buses pass."""
    if not BOLOGNA.exists():
        pytest.skip(f"SUMO scenarios not found at {BOLOGNA}")
    copy_dir = (
        tmp_path / "bologna"
    )  # a copy, to see that nothing is written into the scenario folder
    shutil.copytree(
        BOLOGNA, copy_dir, ignore=shutil.ignore_patterns("tripinfos.xml", "e1_output.xml")
    )
    before = sorted(p.name for p in copy_dir.iterdir())
    sc = sumocfg_scenario(copy_dir / "run.sumocfg", junctions=None, duration_s=480.0, seeds=[1, 2])
    plan = plan_run(sc, runs_root=tmp_path / "runs", products=None)
    run_dir = execute(plan)
    assert sorted(p.name for p in copy_dir.iterdir()) == before
    _check_outputs(run_dir, ["baseline", "priority"], 2)
    bus = _kpi(run_dir, "delay_mean_bus")
    assert sum(bus["priority"].values()) < sum(bus["baseline"].values())
    treated = _kpi(run_dir, "transit_delay_treated_junctions")
    assert sum(treated["priority"].values()) < sum(treated["baseline"].values())
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "HBEFA2/" in html  # Bologna's own vehicle types state their (older) emission classes


def test_cologne_port_runs_with_trucks_rail_and_ships(tmp_path: Path) -> None:
    """SUMO's Cologne Rhine port (a port like the Rheinhafen): its config as shipped is refused in one
    line (it names a polygon file that is not there); without it, a run counts lorries, trains and
    ships, and the lorry delay equals the mean timeLoss of the lorries in SUMO's tripinfo (rel 1e-9)."""
    cfg = COLOGNE / "osm.sumocfg"
    if not cfg.exists():
        pytest.skip(f"SUMO scenarios not found at {COLOGNE}")
    with pytest.raises(ConfigError, match=r"osm\.poly\.xml, which does not exist"):
        plan_run(sumocfg_scenario(cfg, junctions=None, duration_s=300.0, seeds=[1]),
                 runs_root=tmp_path / "refused", products=None)  # fmt: skip
    usable = without_missing_files(cfg, tmp_path / "port.sumocfg")
    sc = sumocfg_scenario(usable, junctions=None, duration_s=300.0, seeds=[3])
    run_dir = execute(plan_run(sc, runs_root=tmp_path / "runs", products=None))
    _check_outputs(run_dir, ["baseline", "priority"], 1)
    folder = run_dir / "baseline" / "seed-3"
    classes = {t: v["vClass"] for t, v in json.loads((folder / "vtypes.json").read_text()).items()}
    trips = list(ET.parse(folder / "tripinfo.xml").getroot().iter("tripinfo"))
    by_class: dict[str, list[float]] = {}
    for trip in trips:
        by_class.setdefault(classes[trip.get("vType")], []).append(float(trip.get("timeLoss")))
    assert {"truck", "rail", "ship", "passenger"} <= set(by_class)
    trucks = by_class["truck"]
    assert _kpi(run_dir, "delay_mean_truck")["baseline"][3] == pytest.approx(
        sum(trucks) / len(trucks), rel=1e-9
    )
    assert _kpi(run_dir, "vehicles_inserted")["baseline"][3] == len(trips)


# -- the command line and Dask ------------------------------------------------------------------------------


@needs_pack
def test_cli_run_writes_a_run_folder(
    products: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build_dir = tmp_path / "build"  # a copy of the built net: the command finds it up to date
    shutil.copytree(products, build_dir / "krefeld")
    code = main(["traffic", "run", "virtual-barrier", "--variant", "enforced-95", "--seeds", "1",
                 "--warmup", "00:01", "--end", "00:02", "--runs-dir", str(tmp_path / "runs"),
                 "--build-dir", str(build_dir)])  # fmt: skip
    shown = capsys.readouterr()
    assert code == 0, shown.err
    (run_dir,) = (tmp_path / "runs" / "virtual-barrier").iterdir()
    assert read_status(run_dir)["state"] == "finished"
    assert {r[0] for r in read_kpis_csv(run_dir / "kpis.csv")} == {"baseline", "enforced-95"}
    assert "report:" in shown.out
    lines = [ln for ln in shown.err.splitlines() if ln.startswith(PREFIX + "virtual-barrier: ")]
    stages = [ln.split(": ", 1)[1] for ln in lines if " % (" not in ln]
    assert [s.split("/")[0] for s in stages] == ["baseline", "enforced-95"], shown.err
    assert lines[-1].endswith("100 % (360 of 360 s simulated)"), shown.err  # 2 runs of 3 min


@pytest.mark.slow
@needs_pack
def test_sweep_on_a_local_dask_cluster(products: Path, tmp_path: Path) -> None:
    pytest.importorskip("dask.distributed")
    from twin.traffic.runs import sweep

    sc = _short("virtual-barrier", warmup_s=120.0)
    plan = plan_run(sc, runs_root=tmp_path / "runs", products=products, variants=["enforced-80"],
                    seeds=2, end_s=180.0)  # fmt: skip
    rec = Recording()
    run_dir = sweep(plan, workers=2, progress=rec)
    _check_outputs(run_dir, ["baseline", "enforced-80"], 2)
    assert sorted(rec.stages) == sorted(f"{v}/seed-{s} finished" for v in ("baseline", "enforced-80")
                                        for s in plan.seeds)  # fmt: skip
    assert rec.counts == [(k, 4) for k in range(1, 5)]


def test_errors_are_twin_errors() -> None:
    assert issubclass(RunError, TwinError) and issubclass(ConfigError, TwinError)


@needs_pack
def test_traffic_model_adapter_reports_vehicles_and_heat(products: Path, tmp_path: Path) -> None:
    """The coupled-model adapter: vehicles running, and waste heat = fuel burnt x 43 MJ/kg on a raster."""
    from twin.traffic.runs import TrafficModel

    sc = _short("virtual-barrier", warmup_s=0.0)
    plan = plan_run(sc, runs_root=tmp_path / "runs", products=products, seeds=1, end_s=300.0)
    model = TrafficModel("traffic")
    grid = {"shape": (70, 120), "transform": (100.0, 0.0, 328000.0, 0.0, -100.0, 5694000.0)}
    model.initialize({"plan": plan, "variant": "baseline", "seed": 31, "grid": grid})
    try:
        model.update_until(120.0)
        running = float(model.get_value("vehicles_running"))
        heat = model.get_value("traffic_heat_flux")
        conn = model._sim.conn
        fuel_mg_s = sum(conn.vehicle.getFuelConsumption(v) for v in conn.vehicle.getIDList())
    finally:
        model.finalize()
    assert running > 0 and heat.shape == (70, 120)
    # every vehicle lies inside the pack extent: the raster holds all the heat (cells of 1e4 m2)
    assert heat.sum() * 1e4 == pytest.approx(fuel_mg_s * 43.0, rel=1e-9)


def test_cli_lists_the_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["traffic", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("rheinhafen-freight", "bus-bike-priority", "virtual-barrier"):
        assert name in out
