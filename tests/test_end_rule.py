"""The one `--end` rule: a duration from the scenario's start or an ISO 8601 UTC time, the same for
`twin traffic run/sweep` and `twin groundwater run/check`."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from twin.core.clock import format_utc, parse_end
from twin.core.errors import ClockError
from twin.errors import TwinError

REPO = Path(__file__).resolve().parents[1]
TWIN = Path(sys.executable).parent / "twin"
START = datetime(2024, 6, 1, 6, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "after"),
    [
        ("01:30", timedelta(hours=1, minutes=30)),
        ("00:15", timedelta(minutes=15)),
        ("36:00", timedelta(hours=36)),  # hours may pass 24
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("6h", timedelta(hours=6)),
        ("2d", timedelta(days=2)),
        ("1.5h", timedelta(minutes=90)),
        ("2024-06-01T08:00:00Z", timedelta(hours=1, minutes=30)),
        ("2024-06-01T10:00:00+02:00", timedelta(hours=1, minutes=30)),  # an offset is converted
    ],
)
def test_durations_count_from_the_start_and_times_are_utc(value: str, after: timedelta):
    end = parse_end(value, START)
    assert end == START + after
    assert end.tzinfo is not None and end.utcoffset() == timedelta(0)
    assert parse_end(value, format_utc(START)) == end  # the start as ISO text reads the same


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("00:00", "longer than zero"),
        ("0s", "longer than zero"),
        ("1:60", "expected a duration"),
        ("6x", "expected a duration"),
        ("", "expected a duration"),
        ("2024-06-01T08:00:00", "no time zone"),
        ("2024-06-01T06:30:00Z", "not after the start"),
        ("2024-05-01T00:00:00Z", "not after the start"),
        ("99999999999d", "year 9999"),
    ],
)
def test_a_bad_end_is_one_line_naming_the_option(value: str, words: str):
    with pytest.raises(ClockError) as exc:
        parse_end(value, START, field="--end")
    text = str(exc.value)
    assert isinstance(exc.value, TwinError) and "\n" not in text
    assert text.startswith("--end: ") and words in text


# -- traffic -----------------------------------------------------------------------------------------


def test_traffic_end_in_both_forms_is_seconds_after_the_start():
    from twin.traffic.commands import end_seconds
    from twin.traffic.scenario import load_scenario

    sc = load_scenario(REPO / "simulations" / "bus-bike-priority.toml")
    iso = format_utc(sc.start_utc + timedelta(minutes=20))
    assert end_seconds("00:20", sc) == end_seconds("20m", sc) == end_seconds(iso, sc) == 1200.0
    assert end_seconds(None, sc) is None  # the scenario's own duration
    with pytest.raises(ClockError, match="not after the start"):
        end_seconds(format_utc(sc.start_utc), sc)


def test_traffic_sumocfg_end_sets_the_duration(tmp_path: Path):
    from twin.traffic.commands import _scenario

    cfg = tmp_path / "x" / "run.sumocfg"
    cfg.parent.mkdir()
    cfg.write_text("<configuration/>", encoding="utf-8")
    args = argparse.Namespace(sumocfg=cfg, junctions=None, seeds=1, end="2026-01-01T00:10:00Z")
    scenario, products, end_s = _scenario(args)  # the default start of a SUMO config: 2026-01-01
    assert end_s == 600.0 and scenario.duration_s == 600.0 and products is None


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TWIN_DEBUG", "TWIN_PACK")}
    return {**env, **extra}


def test_traffic_run_cli_takes_an_iso_end(krefeld_build: Path, tmp_path: Path):
    from twin.traffic.scenario import load_scenario

    sc = load_scenario(REPO / "simulations" / "bus-bike-priority.toml")
    end = format_utc(sc.start_utc + timedelta(seconds=60))
    r = subprocess.run(
        [str(TWIN), "traffic", "run", "bus-bike-priority", "--variant", "baseline", "--seeds", "1",
         "--warmup", "00:00", "--end", end, "--runs-dir", str(tmp_path / "runs")],
        capture_output=True, text=True, cwd=REPO, env=_env(), timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "0:01:00 simulated each" in r.stderr  # the plan: one minute after the start


# -- ground water -------------------------------------------------------------------------------------


@pytest.mark.parametrize("end", ["2d", "48:00", "2024-03-03T00:00:00Z"])
def test_groundwater_end_in_both_forms(end: str):
    from twin.groundwater.scenario import load_scenario

    sc = load_scenario(REPO / "simulations" / "groundwater-today.toml")
    clock = sc.clock(end)
    assert format_utc(clock.end) == "2024-03-03T00:00:00Z"
    assert clock.duration == 2 * 86400.0


def test_groundwater_check_cli_takes_a_duration(tmp_path: Path):
    r = subprocess.run(
        [str(TWIN), "groundwater", "check", "simulations/groundwater-today.toml", "--end", "6d"],
        capture_output=True, text=True, cwd=REPO, env=_env(), timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "2024-03-01T00:00:00Z to 2024-03-07T00:00:00Z, 6 steps of 24 h" in r.stdout
    bad = subprocess.run(
        [str(TWIN), "groundwater", "check", "simulations/groundwater-today.toml", "--end", "6y"],
        capture_output=True, text=True, cwd=REPO, env=_env(), timeout=600,
    )  # fmt: skip
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
    assert "--end" in bad.stderr and "Traceback" not in bad.stderr
