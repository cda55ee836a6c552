"""The benchmarks' shared table and floors check (benchmarks/common.py) and benchmarks/floors.toml."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load_common():
    spec = importlib.util.spec_from_file_location("bench_common", BENCHMARKS / "common.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


common = _load_common()
Row = common.Row


def test_every_floor_keeps_a_margin_below_what_was_measured() -> None:
    """Each floor records what was measured and why, and sits well below the lowest measurement."""
    doc = tomllib.loads((BENCHMARKS / "floors.toml").read_text(encoding="utf-8"))
    floors = common.load_floors()
    assert len(floors) == sum(len(m) for m in doc.values()) > 0
    for bench, measures in doc.items():
        for measure, entry in measures.items():
            assert entry["why"], (bench, measure)
            lowest = min(entry["measured"])
            assert 0 < entry["floor"] <= 0.6 * lowest, (bench, measure, entry)


def test_status_of_rows_against_floors() -> None:
    floors = {("b", "fast"): 2.0, ("b", "slow"): 2.0}
    ok = Row("b", "fast", "x/s", 30.0, 10.0, "the anchor")
    below = Row("b", "slow", "x/s", 10.0, 10.0, "the anchor")
    skip = common.skipped("b", "gone", "the anchor", "no anchor here")
    wrong = Row("b", "fast", "x/s", 30.0, 10.0, "the anchor", failed="2 messages lost")
    nothing = Row("b", "fast", "x/s", 30.0, 0.0, "the anchor")
    unfloored = Row("b", "new", "x/s", 1.0, 10.0, "the anchor")
    assert ok.ratio == 3.0 and common.status(ok, floors) == ("ok", False)
    assert common.status(below, floors) == ("BELOW FLOOR", True)
    assert common.status(skip, floors) == ("skipped: no anchor here", False)
    assert common.status(wrong, floors) == ("FAILED: 2 messages lost", True)
    assert common.status(nothing, floors)[1] is True
    assert common.status(unfloored, floors) == ("no floor", False)
    lines = common.problems([ok, below, skip, wrong, unfloored], floors)
    assert len(lines) == 2
    assert lines[0].startswith("b/slow: BELOW FLOOR (ratio 1.00 < floor 2")
    assert "the anchor" in lines[0] and "2 messages lost" in lines[1]


def test_table_names_each_anchor_and_why_a_row_was_skipped() -> None:
    rows = [
        Row("tiles", "read", "MB/s", 150.0, 7.5, "py3dtiles"),
        common.skipped("sensors", "ingest", "a bare MQTT subscriber", "Mosquitto not installed"),
    ]
    text = common.table(rows, {("tiles", "read"): 5.0})
    read = next(line for line in text.splitlines() if line.startswith("tiles"))
    assert read.split()[:4] == ["tiles", "read", "150", "7.5"]
    assert "20.00" in read and read.rstrip().endswith("py3dtiles") and " ok " in read
    ingest = next(line for line in text.splitlines() if line.startswith("sensors"))
    assert "skipped: Mosquitto not installed" in ingest and "a bare MQTT subscriber" in ingest


def test_rows_survive_the_trip_through_json(tmp_path: Path) -> None:
    rows = [Row("g", "steady", "M cells/s", 2.5, 0.2, "SciPy"), common.skipped("g", "t", "S", "w")]
    common.save_rows(rows, tmp_path / "rows.json")
    assert common.read_rows(tmp_path / "rows.json") == rows
    out = common.to_json(rows, {("g", "steady"): 20.0})
    assert out[0]["ratio"] == pytest.approx(12.5) and out[0]["fails"] is True
    json.dumps(out)


def test_malformed_floors_name_the_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "floors.toml"
    bad.write_text('[tiles.read]\nfloor = "fast"\n', encoding="utf-8")
    with pytest.raises(common.FloorsError, match=r"floors.toml: \[tiles.read\] floor: expected"):
        common.load_floors(bad)


def test_runner_refuses_an_unknown_benchmark() -> None:
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "run.py"), "--only", "nope"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "invalid choice: 'nope'" in proc.stderr
