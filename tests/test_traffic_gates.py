"""Gate queues and waits measured with SUMO detectors: on a small built gate against SUMO's own trip
waiting times, and slot booking against free arrival on the Rheinhafen scenario (same demand, seeds).
"""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest

from twin.traffic import kpis as K
from twin.traffic.gates import gate_rows, gate_slug, gate_waits
from twin.traffic.network import read_net
from twin.traffic.sim import Simulation, sumo_binary

REPO = Path(__file__).resolve().parents[1]
PACK = REPO / "data" / "krefeld" / "pack.toml"

# A road (ab, 300 m) to a terminal gate (bc: check-in 40 m in), then the terminal (cd).
NODES = """<nodes>
  <node id="A" x="0" y="0"/> <node id="B" x="300" y="0"/> <node id="C" x="360" y="0"/>
  <node id="D" x="500" y="0"/>
</nodes>"""
EDGES = """<edges>
  <edge id="ab" from="A" to="B" speed="13.89"/> <edge id="bc" from="B" to="C" speed="8.33"/>
  <edge id="cd" from="C" to="D" speed="8.33"/>
</edges>"""
GATE = {"id": "g1", "name": "Tor Süd", "edge": "bc", "pos": 40.0}
SERVICE_S = 60.0


def _routes(period: float, n: int = 12) -> str:
    trips = "\n".join(
        f'  <vehicle id="lorry{i:02d}" type="truck" route="r" depart="{i * period:.1f}">\n'
        f'    <stop lane="bc_0" endPos="40" duration="{SERVICE_S:g}" actType="gate:g1"/>\n'
        "  </vehicle>"
        for i in range(n)
    )
    return (
        '<routes>\n  <vType id="truck" vClass="truck" sigma="0"/>\n'
        f'  <route id="r" edges="ab bc cd"/>\n{trips}\n</routes>\n'
    )


def _gate_run(folder: Path, net: Path, period: float) -> SimpleNamespace:
    folder.mkdir()
    (folder / "r.rou.xml").write_text(_routes(period), encoding="utf-8")
    add = K.instruments(folder / K.INSTRUMENTS, transit_vtypes=[], gates=[GATE], net=read_net(net))
    args = ["-n", str(net), "-r", str(folder / "r.rou.xml"), "-a", str(add),
            "--stop-output", str(folder / K.STOPINFO), "--tripinfo-output", str(folder / K.TRIPINFO)]  # fmt: skip
    with Simulation(args) as sim:
        sim.run(3600)
    queues = K.gate_queues(folder, 0.0)
    rows = {k: v for k, v, _ in gate_rows(folder, [GATE], queues, 0.0)}
    waiting = {
        t.get("id"): float(t.get("waitingTime"))
        for t in ET.parse(folder / K.TRIPINFO).getroot().iter("tripinfo")
    }
    return SimpleNamespace(rows=rows, waits=gate_waits(folder, 0.0)["g1"], waiting=waiting)


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    folder = tmp_path_factory.mktemp("gate")
    for name, text in (("n.nod.xml", NODES), ("n.edg.xml", EDGES)):
        (folder / name).write_text(text, encoding="utf-8")
    subprocess.run([sumo_binary("netconvert"), "-n", "n.nod.xml", "-e", "n.edg.xml", "-o", "net.xml"],
                   cwd=folder, check=True, capture_output=True)  # fmt: skip
    net = folder / "net.xml"
    # the same 12 lorries arriving every 20 s (faster than the 60 s check-in) or every 75 s
    return SimpleNamespace(
        bunched=_gate_run(folder / "bunched", net, 20.0),
        spread=_gate_run(folder / "spread", net, 75.0),
    )


def test_gate_wait_is_the_queueing_sumo_reports(gate: SimpleNamespace) -> None:
    """The wait per lorry (approach loop to check-in, less free driving) is SUMO's own standing time
    of the trip (the gate queue is the only place a lorry stands; the check-in is not counted) plus
    the seconds spent creeping up the queue, a few per place moved up."""
    run = gate.bunched
    assert len(run.waits) == 12
    standing = [run.waiting[f"lorry{i:02d}"] for i in range(12)]
    assert standing[-1] > 300.0  # the queue builds up: the last lorry stands for minutes
    for i, (wait, stood) in enumerate(zip(run.waits, standing, strict=True)):
        assert stood <= wait <= stood + 5.0 + 3.0 * i, (i, wait, stood)
    # service takes 60 s plus pulling up; arrivals every 20 s: each lorry waits ~45 s more
    steps = [b - a for a, b in zip(run.waits, run.waits[1:], strict=False)]
    assert all(40.0 <= d <= 50.0 for d in steps), steps
    assert run.rows["gate_wait_lorries"] == 12.0
    assert run.rows["gate_wait_mean"] == pytest.approx(sum(run.waits) / 12)
    assert run.rows["gate_wait_max"] == max(run.waits)
    assert run.rows["gate_wait_mean_tor_sued"] == run.rows["gate_wait_mean"]
    # a queue of several lorries stands on the approach at its worst
    assert run.rows["gate_queue_max_tor_sued"] >= 5.0
    assert gate_slug("Tor 4 Mole Süd") == "tor_4_mole_sued"


def test_spread_arrivals_shorten_queue_and_wait(gate: SimpleNamespace) -> None:
    """The same lorries arriving spread out (as slots make them) queue less and wait less."""
    b, s = gate.bunched.rows, gate.spread.rows
    assert s["gate_wait_mean"] < 0.2 * b["gate_wait_mean"]
    assert max(gate.spread.waiting.values()) < 5.0 and max(gate.spread.waits) < 10.0
    assert s["gate_queue_max_tor_sued"] < b["gate_queue_max_tor_sued"]
    assert s["gate_queue_mean_tor_sued"] < b["gate_queue_mean_tor_sued"]
    # spread out, the gate holds the lorry in check-in 60 of every 75 s: 0.8 on average
    assert s["gate_queue_max_tor_sued"] == 1.0
    assert s["gate_queue_mean_tor_sued"] == pytest.approx(SERVICE_S / 75.0, abs=0.1)


# -- slot booking on the Rheinhafen scenario ------------------------------------------------------------


@pytest.mark.slow
def test_slot_booking_shortens_the_gate_queues(tmp_path: Path) -> None:
    """rheinhafen-freight, free arrival (baseline) against slot booking on the same seeds and demand,
    06:05-07:05 local time: slots lower the mean and the maximum queue and the mean wait at the gates,
    in every seed."""
    if not PACK.exists():
        pytest.skip("the Krefeld data pack is not in data/krefeld")
    from twin.city.build import run_build
    from twin.city.pack import load_pack
    from twin.traffic.kpis import read_kpis_csv
    from twin.traffic.network import network_step
    from twin.traffic.runs import execute, plan_run
    from twin.traffic.scenario import load_scenario

    products = tmp_path / "build"
    run_build(load_pack(PACK), [network_step()], products)
    sc = load_scenario(REPO / "simulations" / "rheinhafen-freight.toml")
    sc.warmup_s = 300.0
    plan = plan_run(sc, runs_root=tmp_path / "runs", products=products, variants=["slot-booking"],
                    seeds=3, end_s=3600.0)  # fmt: skip
    run = execute(plan)
    kpi: dict[tuple[str, str], dict[int, float]] = {}
    for variant, seed, name, value, _ in read_kpis_csv(run / "kpis.csv"):
        kpi.setdefault((variant, name), {})[seed] = value
    for name in ("gate_queue_mean", "gate_queue_max", "gate_wait_mean"):
        free, slots = kpi[("baseline", name)], kpi[("slot-booking", name)]
        assert set(free) == set(slots) == set(plan.seeds)
        for seed in plan.seeds:
            assert slots[seed] < free[seed], (name, seed, free[seed], slots[seed])
    checkins = kpi[("slot-booking", "gate_checkins")]
    assert min(checkins.values()) > 30  # the gates served lorries in both
