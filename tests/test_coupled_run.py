"""`twin run SCENARIO.toml`: a coupled run's folder, resume from a checkpoint, outages, SIGINT, readings
outside the window, and `--list-variables` without SUMO. Sensors -> ground water on the mini pack;
traffic on a 3 x 3 SUMO grid (a SUMO config) where a test needs it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from gw_scenario import write_gw_scenario

from twin.app import run as coupled
from twin.runs import read_status

TWIN = Path(sys.executable).parent / "twin"

COUPLED = """
[scenario]
name = "{name}"
start = "2024-03-01T00:00:00Z"
end = "{end}"

[models.sensors]
{sensors}

[models.groundwater]
scenario = "gw.toml"
{traffic}
[[exchange]]
from = "sensors.groundwater_head"
to = "groundwater.observed_head"
transform = "by_id"
[[exchange]]
from = "sensors.groundwater_head_weight"
to = "groundwater.observation_weight"
transform = "by_id"
"""

GRID_ROUTES = """<routes>
  <vType id="car" vClass="passenger" sigma="0.5"/>
  <flow id="we" type="car" from="A1B1" to="B1C1" begin="0" end="3000" period="6"/>
  <flow id="ns" type="car" from="B2B1" to="B1B0" begin="1" end="3000" period="8"/>
</routes>"""


def _grid_sumocfg(folder: Path) -> Path:
    from twin.traffic.install import sumo_binary

    folder.mkdir(parents=True, exist_ok=True)
    cmd = [str(sumo_binary("netgenerate")), "--grid", "--grid.number", "3", "--grid.length",
           "200", "--default.lanenumber", "1", "--tls.set", "B1", "--no-turnarounds",
           "-o", "net.xml"]  # fmt: skip
    subprocess.run(cmd, cwd=folder, check=True, capture_output=True, timeout=120)
    (folder / "routes.xml").write_text(GRID_ROUTES, encoding="utf-8")
    cfg = folder / "run.sumocfg"
    cfg.write_text('<configuration><input><net-file value="net.xml"/><route-files '
                   'value="routes.xml"/></input></configuration>', encoding="utf-8")  # fmt: skip
    return cfg


def scenario(tmp: Path, pack: Path, *, name: str = "mini-coupled", end: str = "4h",
             sensors: str = "simulate = { seed = 3 }", traffic: bool = False) -> Path:  # fmt: skip
    """A coupled scenario on the mini pack (and a SUMO grid with ``traffic``)."""
    # the shared ground-water scenario, every logger read (the feed's readings replace its own)
    write_gw_scenario(tmp, pack, name="mini-gw", end="2024-03-02T00:00:00Z", step_hours=1,
                      file="gw.toml", **{"withhold_fraction = 0.5": "withhold_fraction = 0.0",
                                         "[output]": "[assimilation]\nsigma_background_m = 2.0"
                                                     "\n\n[output]"})  # fmt: skip
    block = ""
    if traffic:
        cfg = _grid_sumocfg(tmp / "grid")
        block = (f'\n[models.traffic]\nscenario = "{cfg}"\nseed = 1\nwindow = "00:20"\n'
                 'warmup = "00:02"\n')  # fmt: skip
    path = tmp / f"{name}.toml"
    path.write_text(COUPLED.format(name=name, end=end, sensors=sensors, traffic=block), "utf-8")
    return path


def _standalone_traffic(cfg: Path, runs_root: Path) -> Path:
    """The traffic part of ``scenario(traffic=True)`` run alone: seed 1, 2 min warm-up, 18 min."""
    from twin.traffic.runs import execute, plan_run
    from twin.traffic.scenario import sumocfg_scenario

    sc = sumocfg_scenario(cfg, junctions=None, duration_s=None, seeds=[1])
    sc.warmup_s = 120.0
    plan = plan_run(sc, runs_root=runs_root, products=None, variants=["baseline"], end_s=1080.0)
    return execute(plan)


def _options(tmp: Path, pack: Path, **kw) -> coupled.Options:
    return coupled.Options(pack=str(pack), build_dir=str(tmp / "build"), **kw)


def _stream(tmp: Path, pack: Path, *, start: str, minutes: float, name: str = "up.jsonl") -> Path:
    """A clean simulated uplink stream of the mini pack's wells, as `twin sensors simulate` writes."""
    out = tmp / name
    cmd = [str(TWIN), "sensors", "simulate", "--out", str(out), "--minutes", str(minutes),
           "--start", start, "--seed", "5", "--clean", "--pack", str(pack), "--no-parking"]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    return out


@contextlib.contextmanager
def crashing_groundwater(after_s: float) -> Iterator[None]:
    """The ground-water model raises 'simulated crash' at its first step from ``after_s`` on."""
    from twin.groundwater.coupling import GroundwaterModel

    original = GroundwaterModel._step

    def failing(self, dt):
        if self.current_time >= after_s:
            raise RuntimeError("simulated crash")
        original(self, dt)

    GroundwaterModel._step = failing
    try:
        yield
    finally:
        GroundwaterModel._step = original


def _heads(run: Path) -> np.ndarray:
    with rasterio.open(run / "groundwater" / "head_end.tif") as src:
        return src.read(1)


def test_coupled_run_writes_one_folder_with_a_subfolder_per_model(tmp_path: Path, mini_pack: Path):
    path = scenario(tmp_path, mini_pack, traffic=True)
    run = coupled.run(path, options=_options(tmp_path, mini_pack), runs_dir=tmp_path / "runs")
    status = read_status(run)
    assert status["kind"] == "coupled" and status["state"] == "finished"
    assert run.parent == tmp_path / "runs" / "mini-coupled" and not run.name.startswith(".")
    # the stand-alone runs' files, in folders named after the models
    for name in ("head_end.tif", "depth_to_water_end.tif", "budget.csv", "report.html"):
        assert (run / "groundwater" / name).is_file(), name
    assert (run / "traffic" / "kpis.csv").is_file() and (run / "traffic" / "report.html").is_file()
    seed = run / "traffic" / "baseline" / "seed-1"
    assert (seed / "tripinfo.xml").is_file() and (seed / "DONE").is_file()
    assert read_status(run / "traffic")["state"] == "finished"
    assert (run / "sensors" / "sensors.sqlite").is_file()
    used = [ln.split(",")[1] for ln in (run / "groundwater" / "assimilation.csv").read_text()
            .splitlines()[1:]]  # fmt: skip
    assert used and all(int(n) == 2 for n in used[1:])  # both loggers' readings reached the model
    assert status["metrics"]["traffic"]["simulations"] == 1
    # the same simulation as `twin traffic run` of that seed over that window writes
    standalone = _standalone_traffic(tmp_path / "grid" / "run.sumocfg", tmp_path / "alone")
    assert (run / "traffic" / "kpis.csv").read_text() == (standalone / "kpis.csv").read_text()
    alone = standalone / "baseline" / "seed-1"
    assert {p.name for p in seed.iterdir()} == {p.name for p in alone.iterdir()}
    for name in ("series.json", "vtypes.json", "trips.csv"):
        assert (seed / name).read_text() == (alone / name).read_text(), name
    # the report links the parts and names the readings as what they are
    report = (run / "report.html").read_text(encoding="utf-8")
    assert 'href="groundwater/report.html"' in report and 'href="traffic/report.html"' in report
    assert "simulated stream" in report and "loggers' readings" not in report
    assert "simulated stream" in status["readings"]["source"]


def test_resume_from_a_checkpoint_equals_the_uninterrupted_run(tmp_path: Path, mini_pack: Path):
    """Tolerance: none. Every model here is deterministic, so heads, budgets and hydrographs of the
    resumed run are bit for bit those of the uninterrupted one."""
    stream = _stream(tmp_path, mini_pack, start="2024-02-29T23:00:00Z", minutes=360)
    path = scenario(tmp_path, mini_pack, end="4h", sensors=f'replay = "{stream}"', traffic=True)
    whole = coupled.run(path, options=_options(tmp_path, mini_pack, checkpoint_every="1h"),
                        runs_dir=tmp_path / "whole")  # fmt: skip
    # the same run, failing after its second checkpoint (a model that raises at 2.5 h)
    with crashing_groundwater(after_s=2 * 3600.0), pytest.raises(RuntimeError, match="crash"):
        coupled.run(path, options=_options(tmp_path, mini_pack, checkpoint_every="1h"),
                    runs_dir=tmp_path / "cut")  # fmt: skip
    (failed,) = (tmp_path / "cut" / "mini-coupled").iterdir()
    assert failed.name.endswith(".failed") and read_status(failed)["state"] == "failed"
    assert coupled.last_checkpoint(failed).name == "20240301T020000Z.npz"
    resumed = coupled.resume(failed)
    status = read_status(resumed)
    assert status["state"] == "finished" and status["resumed_from"] == "20240301T020000Z.npz"
    assert not resumed.name.startswith(".") and "." not in resumed.name
    assert np.array_equal(_heads(whole), _heads(resumed), equal_nan=True)
    assert "2024-03-01T03:00:00Z,2," in (whole / "groundwater" / "assimilation.csv").read_text()
    for name in ("groundwater/budget.csv", "groundwater/hydrographs.csv",
                 "groundwater/assimilation.csv", "traffic/kpis.csv"):  # fmt: skip
        assert (whole / name).read_text() == (resumed / name).read_text(), name
    assert read_status(whole)["gaps"] == status["gaps"]


def test_an_outage_mid_run_is_flagged_and_the_run_finishes(tmp_path: Path, mini_pack: Path):
    stream = _stream(tmp_path, mini_pack, start="2024-02-29T23:00:00Z", minutes=420)
    lines = stream.read_bytes().splitlines()
    kept = [ln for ln in lines if not (b'"2024-03-01T01:' in ln or b'"2024-03-01T02:' in ln)]
    assert len(kept) < len(lines)
    cut = tmp_path / "outage.jsonl"
    cut.write_bytes(b"\n".join(kept) + b"\n")
    path = scenario(tmp_path, mini_pack, end="5h", sensors="simulate = { seed = 3 }")
    run = coupled.run(path, options=_options(tmp_path, mini_pack, readings=str(cut)),
                      runs_dir=tmp_path / "runs")  # fmt: skip
    status = read_status(run)
    assert status["state"] == "finished"
    assert str(cut) in status["readings"]["source"]  # --readings replaced the simulated stream
    (gap,) = status["gaps"]
    assert gap["quantities"] == ["groundwater_head"] and gap["wells"] == 2
    assert "2024-03-01T00:45" <= gap["start"] < "2024-03-01T01:00"
    assert "2024-03-01T03:00" <= gap["end"] <= "2024-03-01T03:30"
    assert "2024-03-01T01:" not in "".join(g["end"] or "" for g in status["gaps"])
    assert gap["start"][:16] in (run / "report.html").read_text(encoding="utf-8")
    assert (run / "groundwater" / "head_end.tif").is_file()


def test_readings_outside_the_window_are_counted(tmp_path: Path, mini_pack: Path):
    stream = _stream(tmp_path, mini_pack, start="2024-02-29T22:00:00Z", minutes=8 * 60)
    path = scenario(tmp_path, mini_pack, end="3h", sensors=f'replay = "{stream}"')
    run = coupled.run(path, options=_options(tmp_path, mini_pack), runs_dir=tmp_path / "runs")
    readings = read_status(run)["readings"]
    times = [json.loads(ln)["received_at"] for ln in stream.read_text().splitlines()]
    before = sum(t < "2024-03-01T00:00:00" for t in times)
    after = sum(t > "2024-03-01T03:00:00" for t in times)
    assert before > 0 and after > 0
    assert (readings["before_start"], readings["after_end"]) == (before, after)
    assert readings["messages"] == len(times) == before + after + readings["in_window"]
    assert f"{after} after its end" in (run / "report.html").read_text(encoding="utf-8")


def test_sigint_during_a_coupled_run_leaves_it_interrupted(tmp_path: Path, mini_pack: Path):
    path = scenario(tmp_path, mini_pack, end="60d")  # hourly steps for two months: long enough
    runs_dir = tmp_path / "runs"
    cmd = [str(TWIN), "run", str(path), "--runs-dir", str(runs_dir), "--pack", str(mini_pack),
           "--build-dir", str(tmp_path / "build"), "--checkpoint-every", "1h"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            found = list((runs_dir / "mini-coupled").glob(".*.partial/checkpoints/*.npz"))
            if found:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        else:
            pytest.fail("the run made no checkpoint within 240 s")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert b"twin: interrupted" in err and b"Traceback" not in err
    (folder,) = (runs_dir / "mini-coupled").iterdir()
    status = read_status(folder)
    assert status["state"] == "interrupted" and status["error"] == "interrupted (SIGINT)"
    assert folder.name.endswith(".interrupted")
    assert not (folder / "report.html").exists()  # nothing that looks complete


def test_list_variables_starts_no_simulator(tmp_path: Path):
    code = ("import sys; from twin.cli import main; rc = main(['run', '--list-variables']); "
            "print('LOADED', sorted(m for m in sys.modules if m.split('.')[0] in "
            "('libsumo', 'traci', 'sumolib'))); sys.exit(rc)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path, env={**os.environ, "TWIN_PACK": ""})  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "LOADED []" in out.stdout
    text = out.stdout
    for kind, name, units, standard in (
        ("groundwater", "observed_head", "[m]", "groundwater__hydraulic_head"),
        ("sensors", "groundwater_head_weight", "[1]", "observation__assimilation_weight"),
        ("traffic", "vehicles_running", "[1]", "road_vehicle__count"),
    ):
        assert kind in text
        line = next(ln for ln in text.splitlines() if ln.split()[1:2] == [name])
        assert units in line and standard in line


def test_bad_coupled_scenarios_are_one_clear_line(tmp_path: Path, mini_pack: Path):
    path = scenario(tmp_path, mini_pack)
    text = path.read_text()
    path.write_text(text.replace('to = "groundwater.observed_head"', 'to = "heat.air"'))
    out = subprocess.run([str(TWIN), "run", str(path), "--runs-dir", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 1
    assert out.stderr.startswith("twin: error: ") and "'exchange[0].to'" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    path.write_text(text.replace('end = "4h"', 'end = "4 hours"'))
    out = subprocess.run([str(TWIN), "run", str(path), "--runs-dir", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 1 and "'scenario.end'" in out.stderr and "HH:MM" in out.stderr
