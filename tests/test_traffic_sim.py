"""The SUMO runner: same results as plain `sumo`, libsumo and TraCI agree, clear errors, one libsumo
simulation per process, stall detection, counts checked against SUMO's own outputs."""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from twin.errors import ConfigError
from twin.traffic.controllers import Controller, build_controllers
from twin.traffic.sim import RunResult, Simulation, SimulationError, sumo_binary

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BOLOGNA = SHARED_DATA / "sumo-scenarios" / "bologna-acosta"

GRID_ROUTES = """<routes>
  <vType id="car" vClass="passenger" sigma="0.5"/>
  <vType id="bus" vClass="bus" length="12"/>
  <flow id="we" type="car" from="A1B1" to="B1C1" begin="0" end="400" period="7"/>
  <flow id="ew" type="car" from="C1B1" to="B1A1" begin="1" end="400" period="9"/>
  <flow id="ns" type="car" from="B2B1" to="B1B0" begin="2" end="400" period="8"/>
  <flow id="sn" type="car" from="B0B1" to="B1B2" begin="3" end="400" period="11"/>
  <flow id="diag" type="car" from="A0B0" to="C2B2" begin="4" end="400" period="13"/>
  <flow id="bus" type="bus" from="A1B1" to="B1C1" begin="5" end="400" period="45"/>
  <flow id="busn" type="bus" from="B2B1" to="B1B0" begin="25" end="400" period="50"/>
</routes>"""


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3 x 3 grid (200 m blocks) with a signal in the middle, cars with random driver imperfection
    (sigma 0.5) and two bus lines; returns the folder holding net.xml and routes.xml."""
    folder = tmp_path_factory.mktemp("grid")
    cmd = [sumo_binary("netgenerate"), "--grid", "--grid.number", "3", "--grid.length", "200"]
    cmd += ["--default.lanenumber", "1", "--tls.set", "B1", "--no-turnarounds", "-o", "net.xml"]
    subprocess.run(cmd, cwd=folder, check=True, capture_output=True)
    (folder / "routes.xml").write_text(GRID_ROUTES, encoding="utf-8")
    return folder


def _args(folder: Path, out: Path, end: int = 500, seed: int = 42) -> list[str]:
    return [
        "-n", str(folder / "net.xml"), "-r", str(folder / "routes.xml"),
        "--seed", str(seed), "--end", str(end), "--tripinfo-output", str(out),
    ]  # fmt: skip


def _body(xml_file: Path) -> str:
    """A SUMO output without its header (which echoes the options and the program name)."""
    text = xml_file.read_text(encoding="utf-8")
    start = text.index("<tripinfos")
    return text[start:]


def _plain_sumo(args: list[str]) -> None:
    subprocess.run([sumo_binary("sumo"), *args, "--no-step-log"], check=True, capture_output=True)


def test_controllers_off_gives_the_tripinfo_of_plain_sumo(grid: Path, tmp_path: Path) -> None:
    _plain_sumo(_args(grid, tmp_path / "plain.xml"))
    with Simulation(_args(grid, tmp_path / "lib.xml")) as sim:
        result = sim.run(500)
    assert isinstance(result, RunResult)
    body = _body(tmp_path / "plain.xml")
    assert body.count("<tripinfo ") > 100
    assert _body(tmp_path / "lib.xml") == body  # bit for bit


def test_traci_and_libsumo_agree_with_controllers_on(grid: Path, tmp_path: Path) -> None:
    spec = [
        {"type": "transit_priority", "detection_distance_m": 150},
        {"type": "safety_monitor"},
        {"type": "virtual_barrier", "zone_edges": ["B1B0", "B0B1"], "compliance": 0.5},
    ]
    logs = {}
    for backend in ("libsumo", "traci"):
        out = tmp_path / backend
        controllers = build_controllers(spec, net_file=grid / "net.xml")
        with Simulation(_args(grid, tmp_path / f"{backend}.xml"), backend=backend) as sim:
            result = sim.run(500, controllers)
        for c in controllers:
            c.write_outputs(out)
        logs[backend] = (result, sorted(p.name for p in out.iterdir()))
        assert result.controller_results["transit_priority.requests"][0] > 0
        assert result.controller_results["virtual_barrier.violations"][0] > 0
    (lib, lib_files), (tra, tra_files) = logs["libsumo"], logs["traci"]
    assert _body(tmp_path / "libsumo.xml") == _body(tmp_path / "traci.xml")
    assert lib.controller_results == tra.controller_results
    assert (lib.steps, lib.vehicle_steps, lib.end_time) == (
        tra.steps,
        tra.vehicle_steps,
        tra.end_time,
    )
    assert lib_files == tra_files
    for name in lib_files:
        assert (tmp_path / "libsumo" / name).read_bytes() == (
            tmp_path / "traci" / name
        ).read_bytes()


def test_counts_match_sumo_outputs_and_progress_is_reported(grid: Path, tmp_path: Path) -> None:
    fcd = tmp_path / "fcd.xml"
    seen: list[float] = []
    with Simulation([*_args(grid, tmp_path / "t.xml", end=300), "--fcd-output", str(fcd)]) as sim:
        first = sim.run(120, progress=seen.append)
        assert sim.time == 120.0
        second = sim.run(300, progress=seen.append)
    # SUMO's FCD lists every vehicle once per step: the sum is the number of vehicle-steps
    per_step = [len(ts.findall("vehicle")) for ts in ET.parse(fcd).getroot().iter("timestep")]
    assert first.steps == 120 and second.steps == 180
    assert first.vehicle_steps + second.vehicle_steps == sum(per_step)
    assert second.end_time == 300.0
    assert seen and seen == sorted(seen) and seen[-1] == 300.0


def test_run_ends_when_no_vehicle_is_left(tmp_path: Path, grid: Path) -> None:
    routes = tmp_path / "one.xml"
    routes.write_text('<routes><trip id="t" from="A1B1" to="B1C1" depart="0"/></routes>')
    args = ["-n", str(grid / "net.xml"), "-r", str(routes), "--end", "1000"]
    with Simulation(args) as sim:
        result = sim.run(1000)
    assert 20 < result.end_time < 200  # two 200 m edges, then nothing is left to simulate


def test_broken_configs_give_a_clear_simulation_error(tmp_path: Path, grid: Path) -> None:
    cfg = tmp_path / "bad.sumocfg"
    cfg.write_text(
        '<configuration><input><net-file value="missing.net.xml"/></input></configuration>'
    )
    for backend in ("libsumo", "traci"):
        with pytest.raises(SimulationError, match=r"could not start.*missing\.net\.xml"):
            Simulation(["-c", str(cfg)], backend=backend)
    with pytest.raises(SimulationError, match="could not start"):
        Simulation(["--no-such-option", "1"])
    with pytest.raises(ConfigError, match="backend"):
        Simulation(["-c", str(cfg)], backend="matsim")
    # a failed start leaves libsumo free for the next simulation
    with Simulation(_args(grid, tmp_path / "ok.xml", end=10)) as ok:
        assert ok.run(10).steps == 10


def test_one_libsumo_simulation_per_process(grid: Path, tmp_path: Path) -> None:
    first = Simulation(_args(grid, tmp_path / "a.xml"))
    try:
        with pytest.raises(SimulationError, match="one simulation per process"):
            Simulation(_args(grid, tmp_path / "b.xml"))
        # TraCI runs SUMO in its own process: allowed next to libsumo
        with Simulation(_args(grid, tmp_path / "c.xml", end=50), backend="traci") as other:
            assert other.run(50).steps == 50
        assert first.run(50).steps == 50
    finally:
        first.close()
    with Simulation(_args(grid, tmp_path / "d.xml", end=50)) as again:
        assert again.run(50).steps == 50


class _Slow(Controller):
    """From t=5 s every step pauses: sleeps, or (busy) spins in Python, as a stuck controller would;
    `completed` counts the pauses that ran to their end (a watchdog cuts a busy one short)."""

    name = "slow"

    def __init__(self, pause: float, busy: bool = False) -> None:
        self.pause, self.busy = pause, busy
        self.completed = 0

    def attach(self, sim: Simulation) -> None:
        pass

    def step(self, sim: Simulation, t: float) -> None:
        if t >= 5:
            end = time.perf_counter() + self.pause
            while self.busy and time.perf_counter() < end:
                pass  # a controller stuck in a loop
            if not self.busy:
                time.sleep(self.pause)
            self.completed += 1

    def results(self) -> dict[str, tuple[float, str]]:
        return {}


class _Broken(Controller):
    name = "broken"

    def attach(self, sim: Simulation) -> None:
        pass

    def step(self, sim: Simulation, t: float) -> None:
        if t == 3:
            sim.conn.trafficlight.setPhase("B1", 99)  # no such phase: SUMO refuses

    def results(self) -> dict[str, tuple[float, str]]:
        return {}


def test_stalls_and_errors_end_the_run_cleanly(grid: Path, tmp_path: Path) -> None:
    sim = Simulation(_args(grid, tmp_path / "s.xml"))
    slow = _Slow(3.0)
    with pytest.raises(
        SimulationError, match=r"stalled: no progress for 1 s of wall time at t=5 s"
    ):
        sim.run(100, [slow], stall_timeout_s=1.0)
    assert sim.closed
    # with TraCI the watchdog stops the SUMO process
    sim = Simulation(_args(grid, tmp_path / "s5.xml"), backend="traci")
    process = sim.conn._process
    with pytest.raises(SimulationError, match="stalled"):
        sim.run(100, [_Slow(3.0)], stall_timeout_s=1.0)
    assert sim.closed and process.poll() is not None


def _busy_step_is_cut_short(grid: Path, out: Path) -> tuple[_Slow, str]:
    """A controller spinning for 2 minutes in one step, under a 1 s stall timeout: the watchdog
    must cut the spin short; returns the controller and the error message."""
    sim = Simulation(_args(grid, out))
    busy = _Slow(120.0, busy=True)
    try:
        with pytest.raises(SimulationError, match=r"stalled: no progress for 1 s") as info:
            sim.run(100, [busy], stall_timeout_s=1.0)
    finally:
        sim.close()
    assert sim.closed
    return busy, str(info.value)


def test_watchdog_interrupts_a_busy_step_with_sigint_ignored(grid: Path, tmp_path: Path) -> None:
    """A process started in the background (`cmd &`) or under nohup ignores SIGINT: the watchdog
    does not go through it."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        busy, message = _busy_step_is_cut_short(grid, tmp_path / "s.xml")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert busy.completed == 0 and "at t=5 s" in message


def test_watchdog_interrupts_a_busy_step_in_a_worker_thread(grid: Path, tmp_path: Path) -> None:
    """Sweeps step in Dask worker threads, not the main thread: the watchdog reaches them too."""
    box: dict[str, object] = {}

    def work() -> None:
        try:
            box["result"] = _busy_step_is_cut_short(grid, tmp_path / "s.xml")
        except BaseException as exc:  # reported below, in the test's thread
            box["error"] = exc

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(timeout=300)
    assert not worker.is_alive(), "the busy step was never interrupted"
    assert "error" not in box, box.get("error")
    busy, message = box["result"]
    assert busy.completed == 0 and "at t=5 s" in message


def test_errors_end_the_run_cleanly(grid: Path, tmp_path: Path) -> None:
    # an error inside SUMO names the controller and the time
    sim = Simulation(_args(grid, tmp_path / "s3.xml"))
    with pytest.raises(SimulationError, match=r"controller 'broken' failed at t=3"):
        sim.run(100, [_Broken()])
    assert sim.closed
    with pytest.raises(SimulationError, match="closed"):
        sim.run(200)
    # and libsumo is free again
    with Simulation(_args(grid, tmp_path / "s4.xml", end=20)) as ok:
        assert ok.run(20).steps == 20


@pytest.mark.skipif(not BOLOGNA.is_dir(), reason=f"SUMO scenario data not found at {BOLOGNA}")
def test_bologna_runner_matches_plain_sumo(tmp_path: Path) -> None:
    scenario = tmp_path / "bologna"  # a copy: its detectors write beside their file
    shutil.copytree(BOLOGNA, scenario)

    def args(out: str) -> list[str]:
        return [
            "-c", str(scenario / "run.sumocfg"), "--seed", "3", "--end", "300",
            "--tripinfo-output", str(tmp_path / out), "--log", str(tmp_path / f"{out}.log"),
        ]  # fmt: skip

    _plain_sumo(args("plain.xml"))
    with Simulation(args("lib.xml")) as sim:
        sim.run(300)
    with Simulation(args("traci.xml"), backend="traci") as sim:
        sim.run(300)
    body = _body(tmp_path / "plain.xml")
    assert body.count("<tripinfo ") > 100
    assert _body(tmp_path / "lib.xml") == body
    assert _body(tmp_path / "traci.xml") == body
