"""The `twin` command as users start it: help for every sub-command, one-line errors, a real build."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from twin.app.steps import build_steps

REPO = Path(__file__).resolve().parents[1]

TWIN = Path(sys.executable).parent / "twin"
COMMANDS = [
    "data",
    "tiles",
    "traffic",
    "groundwater",
    "heat",
    "sensors",
    "scene",
    "serve",
    "run",
    "demo",
]


def twin(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TWIN_DEBUG"}
    return subprocess.run(
        [str(TWIN), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command: str):
    r = twin(command, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: twin {command}")


def test_top_level_help_lists_all_subcommands():
    r = twin("--help")
    assert r.returncode == 0
    for c in COMMANDS:
        assert c in r.stdout


def test_broken_pack_is_one_clear_line(tmp_path: Path):
    bad = tmp_path / "pack.toml"
    bad.write_text("[pack\nname = 1\n", encoding="utf-8")
    r = twin("data", "build", "--pack", str(bad), "--build-dir", str(tmp_path / "b"))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert (
        lines[0].startswith("twin: error: ")
        and str(bad) in lines[0]
        and "not valid TOML" in lines[0]
    )
    assert "Traceback" not in r.stderr


def test_data_build_then_demo(mini_pack: Path, tmp_path: Path):
    b = tmp_path / "b"
    r = twin("data", "build", "--pack", str(mini_pack), "--build-dir", str(b))
    assert r.returncode == 0, r.stderr
    n = len(build_steps())
    assert f"{n} built, 0 up to date" in r.stdout
    r = twin("data", "build", "--pack", str(mini_pack), "--build-dir", str(b))
    assert f"0 built, {n} up to date" in r.stdout
    r = twin("demo", "--data-only", "--pack", str(mini_pack), "--build-dir", str(b))
    assert r.returncode == 0, r.stderr
    assert "Buildings       6 " in r.stdout
    assert "2 ground-water wells, 1 climate stations" in r.stdout
    assert "Streets         2 ways, 1.0 km" in r.stdout


def test_tiles_info_json_has_the_keys_other_tools_rely_on():
    sample = REPO.parent / "shared" / "data" / "3dtiles-samples" / "TilesetOfTilesetsWithError"
    if not sample.exists():
        pytest.skip(f"shared reference data not found at {sample}")
    r = twin("tiles", "info", str(sample), "--json")
    assert r.returncode == 1 and "error severity" in r.stderr  # the sample has a broken tile
    info = json.loads(r.stdout)
    assert info["errors"] and all(e in info["problems"] for e in info["errors"])
    lenient = twin("tiles", "info", str(sample), "--json", "--lenient")
    assert lenient.returncode == 0, lenient.stderr
    assert json.loads(lenient.stdout) == info
    for key in (
        "tiles",
        "depth",
        "contents",
        "triangles",
        "points",
        "textures",
        "features",
        "region",
    ):
        assert key in info
    assert info["tiles"] == 7 and info["contents"] == {"b3dm": 5, "json": 2}
    west, south, east, north, low, high = info["region"]  # degrees, then metres
    assert -75.62 < west < east < -75.60 and 40.04 < south < north < 40.045
    assert low < high


def test_tiles_info_on_a_broken_tileset_is_one_line(tmp_path: Path):
    (tmp_path / "tileset.json").write_text(
        '{"asset": {"version": "1.1"}, "root": ', encoding="utf-8"
    )
    r = twin("tiles", "info", str(tmp_path))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "tileset.json" in lines[0], r.stderr
