"""Well readings into the ground-water model through the sensor feed and the coupler.

A small scenario on the test pack (12 x 20 cells of 50 m, hourly steps, a few hours) reads uplinks
of its two loggers (GWM-1 at 330200/5689200, GWM-2 at 330800/5689400, 632 m apart) from a JSONL file
written here with the project's uplink renderer and payload layout, so each test chooses the heads.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio

from twin.app.readings import sensor_feed
from twin.groundwater import GroundwaterModel
from twin.groundwater.run import run_scenario, simulate
from twin.groundwater.scenario import build_setup, load_scenario
from twin.sensors.profiles import load_profiles
from twin.sensors.uplink import render_tts

START = datetime(2024, 3, 1, tzinfo=UTC).timestamp()
WELLS = {"GWM-1": ("0011223344556677", 35.9, 330200.0, 5689200.0),
         "GWM-2": ("0011223344556678", 37.1, 330800.0, 5689400.0)}  # fmt: skip
LAYOUT = load_profiles().for_catalogue("wells").layout(1)

SCENARIO = """
[scenario]
name = "mini-readings"
pack = "{pack}"
build_dir = "{build}"
start = "2024-03-01T00:00:00Z"
end = "2024-03-01T{hours:02d}:00:00Z"
time_step_hours = 1

[grid]
cell = 50.0

[aquifer]
k = 1.0e-3
bottom = 5.0
sy = 0.18

[recharge]
precipitation_mm_per_year = 780.0
open_fraction = 0.3

[edges]
west = 31.0

[readings]
source = "jsonl"
path = "uplinks.jsonl"
simulated = true
withhold_fraction = 0.0
max_age_hours = 3.0
gap_hours = 1.0

[assimilation]
length_m = 100.0
"""


def write_scenario(folder: Path, pack: Path, hours: int = 8) -> Path:
    path = folder / "scenario.toml"
    path.write_text(SCENARIO.format(pack=pack.as_posix(), build=(folder / "build").as_posix(),
                                    hours=hours), encoding="utf-8")  # fmt: skip
    (folder / "uplinks.jsonl").touch()  # written by each test once it knows the model's heads
    return path


def uplink(well: str, minutes: float, head: float, f_cnt: int) -> str:
    """One TTS uplink of a logger (port 1: level below the reference point) at START + minutes."""
    eui, reference, _, _ = WELLS[well]
    payload = LAYOUT.pack({"level_below_reference": reference - head, "water_temperature": 11.0,
                           "battery": 3.5})  # fmt: skip
    msg = render_tts(dev_eui=eui, device_id=well.lower(), f_cnt=f_cnt, f_port=1,
                     time=START + 60.0 * minutes, payload=payload, decoded=None)  # fmt: skip
    return json.dumps(msg)


def stream(heads: dict[str, float], hours: int, skip=lambda well, minutes: False) -> list[tuple]:
    """(well, minutes, head) every 15 minutes for each well, in time order, minus ``skip``."""
    rows = []
    for minutes in range(0, 60 * hours + 1, 15):
        rows += [(w, minutes, h) for w, h in heads.items() if not skip(w, minutes)]
    return rows


def write_uplinks(path: Path, rows: list[tuple]) -> None:
    counters = {w: 100 for w in WELLS}
    lines = []
    for well, minutes, head in rows:
        counters[well] += 1
        lines.append(uplink(well, minutes, head, counters[well]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def steady_heads(scenario: Path, pack: Path) -> dict[str, float]:
    """The model's own heads at the two wells at the start (steady state)."""
    gw = GroundwaterModel()
    gw.initialize({"scenario": scenario, "pack": pack})
    ids = [str(w) for w in gw.wells["id"]]
    return dict(zip(ids, gw.get_value("head_at_wells").tolist(), strict=True))


def head_end(folder: Path) -> np.ndarray:
    with rasterio.open(folder / "head_end.tif") as src:
        return src.read(1).astype(float)


def distance_from(well: str, shape: tuple[int, int]) -> np.ndarray:
    """Distance (m) of each north-up cell centre of the 50 m grid from a well."""
    _, _, x, y = WELLS[well]
    rows, cols = np.indices(shape)
    xc = 330000.0 + (cols + 0.5) * 50.0
    yc = 5689600.0 - (rows + 0.5) * 50.0
    return np.hypot(xc - x, yc - y)


def test_one_wells_readings_change_the_heads_near_it_and_not_far_away(
    tmp_path: Path, mini_pack: Path
):
    scenario = write_scenario(tmp_path, mini_pack, hours=4)
    h0 = steady_heads(scenario, mini_pack)
    ends = []
    for shift in (0.0, 0.4):
        heads = {"GWM-1": h0["GWM-1"] + shift, "GWM-2": h0["GWM-2"]}
        write_uplinks(tmp_path / "uplinks.jsonl", stream(heads, 4))
        ends.append(head_end(run_scenario(scenario, runs_dir=tmp_path / "runs", sensor_feed=sensor_feed,
                                          pack=mini_pack).folder))  # fmt: skip
    change = np.abs(ends[1] - ends[0])
    r = distance_from("GWM-1", change.shape)
    near, far = change[r <= 75.0], change[r >= 500.0]
    assert near.size and far.size
    # OI length 100 m: the cells next to the shifted well follow most of its 0.4 m (0.38 measured)
    assert near.min() >= 0.2
    # 500 m and more away (GWM-2 at 632 m among them) the analysis adds nothing and the flow has
    # spread less than 2.5 % of the shift in 4 h (0.006 m measured at 500 m, 0.002 at 600 m)
    assert far.max() <= 0.01


def test_a_stopped_feed_leaves_the_heads_to_the_free_model(tmp_path: Path, mini_pack: Path):
    """Readings only in the first two hours: from the last analysis that used one, the heads
    are exactly the model's own steps from that analysed state (no later increment)."""
    scenario = write_scenario(tmp_path, mini_pack, hours=8)
    h0 = steady_heads(scenario, mini_pack)
    heads = {w: h + 0.3 for w, h in h0.items()}
    write_uplinks(tmp_path / "uplinks.jsonl", stream(heads, 2))
    setup = build_setup(load_scenario(scenario), pack=mini_pack)
    folder = tmp_path / "run"
    folder.mkdir()
    result = simulate(setup, folder, sensor_feed=sensor_feed)
    used = [row[1] for row in result["metrics"]]
    assert used[:3] == [2, 2, 2]  # 00:00, 01:00, 02:00
    assert used[6:] == [0, 0, 0]  # 06:00 on: the last readings (02:00) are older than 3 h
    last = max(k for k, n in enumerate(used) if n)
    series, times = result["series"]["assimilated"], result["times"]
    assert not np.allclose(series[last], series[last - 1])  # the analyses moved the heads
    model, h = setup.model, series[last].copy()
    for k in range(last + 1, len(times)):
        setup.apply(model, times[k])
        h = model.step(h, times[k] - times[k - 1], time=times[k])
    assert np.array_equal(h, result["h_end"], equal_nan=True)
    assert np.nanmax(np.abs(result["h_end"] - result["h_free_end"])) > 0.01  # not the free run


def test_an_outage_is_flagged_and_the_run_finishes(tmp_path: Path, mini_pack: Path):
    scenario = write_scenario(tmp_path, mini_pack, hours=6)
    h0 = steady_heads(scenario, mini_pack)
    silent = lambda well, minutes: well == "GWM-1" and 120 <= minutes < 240  # noqa: E731
    write_uplinks(tmp_path / "uplinks.jsonl", stream(h0, 6, skip=silent))
    result = run_scenario(
        scenario, runs_dir=tmp_path / "runs", sensor_feed=sensor_feed, pack=mini_pack
    )
    status = json.loads((result.folder / "status.json").read_text())
    assert status["state"] == "finished" and status["end"] == "2024-03-01T06:00:00Z"
    info = status["readings"]
    # the last reading before came at 01:45; at the feed's 04:00 a fresh one was there again
    assert info["outages"] == [{"start": "2024-03-01T01:45:00Z", "end": "2024-03-01T04:00:00Z",
                                "wells": ["GWM-1"]}]  # fmt: skip
    assert info["gaps"][0]["well"] == "GWM-1"
    report = (result.folder / "report.html").read_text(encoding="utf-8")
    assert "Outages (no reading fresher than 1 h): 1" in report
    assert "2024-03-01T01:45:00Z to 2024-03-01T04:00:00Z: 1 well(s): GWM-1" in report


def test_a_late_reading_is_used_when_it_arrives(tmp_path: Path, mini_pack: Path):
    """GWM-1's readings of 02:00-03:45 reach the store only after those of 05:15 (a backlog):
    not there for the analyses at 03:00-05:00, used at 06:00, the first after they arrive."""
    scenario = write_scenario(tmp_path, mini_pack, hours=7)
    h0 = steady_heads(scenario, mini_pack)
    rows = stream(h0, 7, skip=lambda w, m: w == "GWM-1" and m >= 120)
    late = [("GWM-1", m, h0["GWM-1"] + 0.05 * (m - 105) / 15) for m in range(120, 240, 15)]
    cut = max(i for i, r in enumerate(rows) if r[1] <= 315) + 1  # after the messages of 05:15
    write_uplinks(tmp_path / "uplinks.jsonl", rows[:cut] + late + rows[cut:])
    setup = build_setup(load_scenario(scenario), pack=mini_pack)
    folder = tmp_path / "run"
    folder.mkdir()
    result = simulate(setup, folder, sensor_feed=sensor_feed)
    readings, times = result["readings"], result["times"]
    gwm1 = [str(w) for w in readings.ids].index("GWM-1")
    at = {round(t / 3600): k for k, t in enumerate(times)}
    # 04:00: the backlog is not in the store yet (else 03:45's reading would show): 01:45's
    assert readings.values[at[4], gwm1] == pytest.approx(h0["GWM-1"], abs=2e-3)
    assert readings.weights[at[4], gwm1] == 1.0
    assert np.isnan(readings.values[at[5], gwm1]) and readings.weights[at[5], gwm1] == 0.0
    # 06:00: the backlog is in the store; its newest reading (03:45) is 2.25 h old, within 3 h
    assert readings.values[at[6], gwm1] == pytest.approx(late[-1][2], abs=2e-3)
    assert readings.weights[at[6], gwm1] == 1.0
    assert result["source"]["replay"]["taken_in"] == len(rows) + len(late)


def test_the_report_and_status_name_where_the_readings_came_from(tmp_path: Path, mini_pack: Path):
    from twin.sensors.devices import load_catalogue
    from twin.sensors.ingest import Ingestor
    from twin.sensors.store import SQLiteStore

    scenario = write_scenario(tmp_path, mini_pack, hours=2)
    h0 = steady_heads(scenario, mini_pack)
    uplinks = tmp_path / "uplinks.jsonl"
    write_uplinks(uplinks, stream(h0, 2))
    replayed = run_scenario(
        scenario, runs_dir=tmp_path / "runs", sensor_feed=sensor_feed, pack=mini_pack
    ).folder
    store_path = tmp_path / "sensors.sqlite"
    with SQLiteStore(store_path) as store:
        ingest = Ingestor(store, load_catalogue(mini_pack.parent / "wells.csv"), load_profiles(),
                          worker="thread")  # fmt: skip
        ingest.ingest(uplinks.read_text().splitlines())
    text = scenario.read_text().replace('source = "jsonl"', 'source = "store"')
    scenario.write_text(text.replace('path = "uplinks.jsonl"', 'path = "sensors.sqlite"'))
    stored = run_scenario(
        scenario, runs_dir=tmp_path / "runs", sensor_feed=sensor_feed, pack=mini_pack
    ).folder
    for folder, words in ((replayed, f"replayed uplink file {uplinks} (simulated stream)"),
                          (stored, f"sensor store {store_path}")):  # fmt: skip
        status = json.loads((folder / "status.json").read_text())
        assert status["readings"]["provenance"] == words
        assert status["metrics"]["readings"] == words
        report = (folder / "report.html").read_text(encoding="utf-8")
        assert f"Source: {words}." in report and "loggers' readings" not in report
        assert status["metrics"]["assimilation"]["rmse_after_m"] < 0.05  # both readings used
    replay = json.loads((replayed / "status.json").read_text())["readings"]["replay"]
    assert replay["messages"] == replay["taken_in"] == replay["stored"] == 2 * 9


def test_the_readings_option_replays_an_uplink_file_from_the_command_line(
    tmp_path: Path, mini_pack: Path
):
    import subprocess
    import sys

    scenario = write_scenario(tmp_path, mini_pack, hours=2)
    other = tmp_path / "other.jsonl"  # the scenario's own file stays empty
    write_uplinks(other, stream(steady_heads(scenario, mini_pack), 2))
    twin = Path(sys.executable).parent / "twin"
    r = subprocess.run([str(twin), "groundwater", "run", str(scenario), "--readings", str(other),
                        "--pack", str(mini_pack), "--runs-dir", str(tmp_path / "runs")],
                       capture_output=True, text=True, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr
    (folder,) = (tmp_path / "runs" / "mini-readings").iterdir()
    status = json.loads((folder / "status.json").read_text())
    assert status["state"] == "finished"
    assert (
        status["readings"]["provenance"]
        == f"replayed uplink file {other.resolve()} (origin not stated)"
    )
    assert status["readings"]["replay"]["taken_in"] > 0
