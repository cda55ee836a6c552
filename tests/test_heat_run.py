"""`twin heat run` and `twin heat check` as a user runs them, on a window of the Krefeld build: the
run folder (status, rasters, maps, energy balance, hot spots, stations, report), the variants'
differences, readings from a simulated stream and an outage of every station."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
from test_heat_model import write_scenario

from twin.cli import main

REPO = Path(__file__).resolve().parents[1]


def _png_colours(path: Path) -> int:
    from PIL import Image

    with Image.open(path) as im:
        return len(im.convert("RGB").getcolors(maxcolors=1 << 24))


@pytest.fixture(scope="module")
def heat_run(krefeld_build, tmp_path_factory):
    """One run of the test window: baseline and the Ostwall greening, 14:00 to 23:00 local, the
    stations' readings from a stream simulated to follow the forcing."""
    folder = tmp_path_factory.mktemp("heat-run")
    path = write_scenario(folder, start="2026-07-22T12:00:00Z", end="9h", readings="simulated")
    rc = main(["heat", "run", str(path), "--variant", "greening-ostwall",
               "--runs-dir", str(folder / "runs")])  # fmt: skip
    assert rc == 0
    (run,) = [p for p in (folder / "runs" / "heat-test").iterdir() if not p.name.startswith(".")]
    return run


def test_run_folder_holds_every_output(heat_run: Path):
    status = json.loads((heat_run / "status.json").read_text())
    assert status["state"] == "finished" and status["kind"] == "heat"
    assert status["variants"] == ["baseline", "greening-ostwall"]
    for variant in ("baseline", "greening-ostwall"):
        out = heat_run / variant
        for name in ("t_air_max", "t_surface_max", "tmrt_max", "utci_max", "tropical_nights"):
            with rasterio.open(out / f"{name}.tif") as src:
                assert src.crs.to_epsg() == 25832 and src.res == (10.0, 10.0)
                assert np.isfinite(src.read(1, masked=True).compressed()).any()
            assert _png_colours(out / f"{name}.png") > 50, f"{variant}/{name}.png looks blank"
        with (out / "energy_balance.csv").open() as f:
            rows = list(csv.DictReader(f))
        assert list(rows[0]) == ["time", "net_radiation", "sensible", "latent", "storage",
                                 "ground", "anthropogenic", "residual"]  # fmt: skip
        assert len(rows) == 54 and max(abs(float(r["residual"])) for r in rows) < 1e-6
        with (out / "hotspots.csv").open() as f:
            spots = list(csv.DictReader(f))
        assert spots and all(s["street"] for s in spots)
    assert (heat_run / "report.html").is_file() and (heat_run / "forcing.csv").is_file()
    html = (heat_run / "report.html").read_text()
    assert "synthetic" in html and "leave-one-out" in html
    m = status["metrics"]["variants"]["baseline"]
    assert m["t_air_max_c"] > 33.0 and m["max_closure_residual_w_m2"] < 1e-6


def test_readings_are_merged_and_their_errors_reported(heat_run: Path):
    status = json.loads((heat_run / "status.json").read_text())
    st = status["metrics"]["variants"]["baseline"]["stations"]
    rd = status["metrics"]["variants"]["baseline"]["readings"]
    assert "simulated stream" in rd["provenance"] and rd["steps_with_readings"] > 40
    assert st["readings_used"] > 100
    # the merge fits the readings: after it the model is closer than before, and the stations
    # predict each other to better than the spread of the stream's urban offsets (~1.8 K)
    assert st["rmse_after_k"] < st["rmse_before_k"]
    assert st["rmse_leave_one_out_k"] < 1.5
    with (heat_run / "baseline" / "stations.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 2 and {"rmse_leave_one_out_k", "rmse_before_k"} <= set(rows[0])


def test_greening_difference_maps(heat_run: Path):
    with rasterio.open(heat_run / "greening-ostwall" / "diff_t_surface_max.tif") as src:
        d = src.read(1)
    assert np.nanmin(d) < -2.0
    # warmer nowhere: at most 0.05 K (round-off of the air layer) in 99.9 % of the cells, and
    # at most 0.5 K in any (the storage heat's hysteresis after a passing crown shadow on a roof
    # beside the new trees: OHM's dQ*/dt term, as in SUEWS)
    assert np.nanmax(d) <= 0.5 and np.mean(d <= 0.05) >= 0.999
    status = json.loads((heat_run / "status.json").read_text())
    diff = status["metrics"]["differences"]["greening-ostwall"]["t_surface_max"]
    assert diff["mean_where_changed_k"] < -1.0
    assert _png_colours(heat_run / "greening-ostwall" / "diff_t_surface_max.png") > 20


def test_an_outage_of_every_station_is_flagged_and_the_run_finishes(krefeld_build, tmp_path):
    """An uplink file with no station message for two hours: the run finishes on its forcing, the
    outage is listed, and the steps without readings are counted."""
    from twin.app.readings import pack_stations
    from twin.city.pack import load_pack
    from twin.heat.forcing import synthetic_heat_wave
    from twin.sensors.devices import Catalogue
    from twin.sensors.profiles import DEFAULT_PROFILES, load_profiles
    from twin.sensors.simulate import simulate, stream

    start = "2026-07-22T12:00:00Z"
    forcing = synthetic_heat_wave(start, days=1, before_s=3600.0)
    from twin.core import parse_utc

    t0 = parse_utc(start).timestamp()

    pack = SimpleNamespace(pack=load_pack(REPO / "data" / "krefeld" / "pack.toml"))
    events = simulate(Catalogue(pack_stations(pack)), load_profiles(DEFAULT_PROFILES),
                      start=t0 - 1800.0, minutes=5 * 60, seed=3, clean=True,
                      weather=forcing)  # fmt: skip
    kept = [e for e in events if not (t0 + 3600.0 <= e.time < t0 + 3 * 3600.0)]
    uplinks = tmp_path / "uplinks.jsonl"
    with uplinks.open("wb") as f:
        for _, _, body in stream(kept, "tts"):
            f.write(body + b"\n")
    path = write_scenario(tmp_path, start=start, end="4h", readings="jsonl",
                          extra=f'path = "{uplinks}"\ngap_s = 1800.0')  # fmt: skip
    assert main(["heat", "run", str(path), "--variant", "baseline",
                 "--runs-dir", str(tmp_path / "runs")]) == 0  # fmt: skip
    (run,) = [p for p in (tmp_path / "runs" / "heat-test").iterdir() if not p.name.startswith(".")]
    status = json.loads((run / "status.json").read_text())
    rd = status["metrics"]["variants"]["baseline"]["readings"]
    assert status["state"] == "finished"
    assert rd["gaps"], "the two silent hours are an outage"
    assert rd["steps_without_readings"] >= 6 and rd["steps_with_readings"] >= 6
    assert "origin not stated" in rd["provenance"]


def test_check_accepts_the_shipped_scenario_and_refuses_a_typo(krefeld_build, tmp_path, capsys):
    assert main(["heat", "check", str(REPO / "simulations" / "heat-wave.toml")]) == 0
    assert "is valid" in capsys.readouterr().out
    path = write_scenario(tmp_path)
    text = path.read_text().replace('streets = ["Ostwall"]', 'streets = ["Ostwal"]')
    path.write_text(text)
    assert main(["heat", "check", str(path), "--variant", "greening-ostwall"]) == 1
    err = capsys.readouterr().err
    assert (
        "Ostwal" in err and "did you mean 'Ostwall'" in err and len(err.strip().splitlines()) == 1
    )


def test_coupled_heat_takes_traffic_heat_and_the_water_table(krefeld_build, tmp_path):
    """`twin run simulations/krefeld-heat-coupled.toml`, 15 minutes: the heat model gets the
    vehicles' waste heat on street cells and the ground-water model's depth to water on its grid."""
    rc = main(["run", str(REPO / "simulations" / "krefeld-heat-coupled.toml"), "--end", "15m",
               "--runs-dir", str(tmp_path / "runs")])  # fmt: skip
    assert rc == 0
    (run,) = [p for p in (tmp_path / "runs" / "krefeld-heat-coupled").iterdir()
              if not p.name.startswith(".")]  # fmt: skip
    status = json.loads((run / "status.json").read_text())
    heat = status["metrics"]["heat"]
    assert heat["inputs_from_coupler"] == {"traffic_heat_flux": True, "depth_to_water": True}
    assert heat["traffic_heat_max_w_m2"] > 10.0  # a vehicle on a 10 m cell
    depth = heat["depth_to_water_m"]
    assert 0.0 < depth["min"] < depth["max"] < 30.0 and depth["max"] - depth["min"] > 0.5
    assert heat["max_closure_residual_w_m2"] < 1e-6
    assert (run / "heat" / "t_air_max.tif").is_file() and (run / "report.html").is_file()
    assert "Heat" in (run / "report.html").read_text()


def test_a_run_forced_by_the_reference_stations_own_readings(krefeld_build, tmp_path):
    """`[forcing] store`: the forcing is the DWD row's readings in a sensor store (here a simulated
    stream following a made-up wave), the same store gives the stations' readings, and the run
    folder's forcing and report say where the weather came from."""
    from test_heat_forcing import _station_store

    from twin.heat.forcing import read_forcing, synthetic_heat_wave

    wave = synthetic_heat_wave("2026-07-22T10:00:00Z", days=1)
    store = _station_store(tmp_path, wave, 4.0)
    start = "2026-07-22T11:00:00Z"
    extra = f'path = "{store}"\n[forcing]\nstore = "{store}"'
    path = write_scenario(tmp_path, start=start, end="1h", readings="store", extra=extra)
    assert main(["heat", "run", str(path), "--variant", "baseline",
                 "--runs-dir", str(tmp_path / "runs")]) == 0  # fmt: skip
    (run,) = [p for p in (tmp_path / "runs" / "heat-test").iterdir() if not p.name.startswith(".")]
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished"
    words = "readings of station DWD-05064 in sensor store stations.sqlite"
    assert status["forcing"] == words
    assert words in (run / "report.html").read_text(encoding="utf-8")
    used = read_forcing(run / "forcing.csv")
    want = wave.sample(used.times)
    assert np.abs(used.t_air_c - want["t_air_c"]).max() < 0.5
    rd = status["metrics"]["variants"]["baseline"]["readings"]
    assert rd["steps_with_readings"] >= 6
    # a scenario naming both a file and a store is refused before anything runs
    both = path.read_text().replace("[forcing]\n", '[forcing]\nfile = "weather.csv"\n')
    path.write_text(both)
    assert main(["heat", "check", str(path)]) == 1
