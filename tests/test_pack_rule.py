"""The one pack rule: every command takes its data pack from `--pack`, else `$TWIN_PACK`, else
`data/krefeld/pack.toml` in the working directory, and uses that pack's layers and build."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from conftest import write_mini_pack

from twin.app.pack import DEFAULT_PACK, PACK_ENV, pack_path, resolve_pack
from twin.cli import build_parser, main
from twin.errors import ConfigError

GW_SCENARIO = """
[scenario]
name = "pack-rule"
pack = "no-such-pack/pack.toml"      # the command's pack rule decides, not this key
build_dir = "no-such-build"
start = "2024-03-01T00:00:00Z"
end = "2024-03-03T00:00:00Z"
time_step_hours = 24

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
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A working directory holding the mini pack where the default pack goes, its products
    built once, and a broken pack to point $TWIN_PACK at when --pack must win."""
    from twin.app.steps import build_products

    root = tmp_path_factory.mktemp("world")
    pack = write_mini_pack(root / DEFAULT_PACK.parent)
    build, _ = build_products(resolve_pack(pack), root / "build")
    broken = root / "broken" / "pack.toml"
    broken.parent.mkdir()
    broken.write_text("[pack]\nname = 'broken'\n", encoding="utf-8")
    scenario = root / "gw.toml"
    scenario.write_text(GW_SCENARIO, encoding="utf-8")
    return {"root": root, "pack": pack, "build": root / "build", "broken": broken, "gw": scenario}


MODES = ("flag", "env", "default")


@pytest.fixture(params=MODES)
def rule(request, world, monkeypatch) -> list[str]:
    """Point the rule at the mini pack one way; return the `--pack` options to add (if any).

    flag: --pack given and $TWIN_PACK set to a broken pack (the flag wins); env: $TWIN_PACK only;
    default: neither, run in the folder holding data/krefeld/pack.toml."""
    monkeypatch.delenv(PACK_ENV, raising=False)
    if request.param == "flag":
        monkeypatch.setenv(PACK_ENV, str(world["broken"]))
        return ["--pack", str(world["pack"])]
    if request.param == "env":
        monkeypatch.setenv(PACK_ENV, str(world["pack"]))
        monkeypatch.chdir(world["broken"].parent)  # no default pack here
        return []
    monkeypatch.chdir(world["root"])
    return []


def test_precedence_flag_then_env_then_default(world, tmp_path: Path, monkeypatch):
    other = write_mini_pack(tmp_path / "other")
    monkeypatch.chdir(world["root"])
    monkeypatch.delenv(PACK_ENV, raising=False)
    assert pack_path(None) == world["root"] / DEFAULT_PACK  # relative to the working directory
    assert resolve_pack(None).file.resolve() == world["pack"].resolve()
    monkeypatch.setenv(PACK_ENV, str(other))
    assert pack_path(None) == other
    assert pack_path(world["pack"]) == world["pack"]
    assert pack_path(world["pack"].parent) == world["pack"]  # a pack's folder names its pack.toml


def test_no_pack_anywhere_is_one_line_saying_what_to_do(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(PACK_ENV, raising=False)
    with pytest.raises(ConfigError) as exc:
        pack_path(None)
    text = str(exc.value)
    assert "\n" not in text and str(DEFAULT_PACK) in text
    assert "--pack" in text and PACK_ENV in text
    monkeypatch.setenv(PACK_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=r"\$TWIN_PACK: no data pack at"):
        pack_path(None)
    with pytest.raises(ConfigError, match="--pack: no data pack at"):
        pack_path(tmp_path / "nowhere")


def test_data_info(world, rule, capsys):
    assert main(["data", "info", "--json", "--build-dir", str(world["build"]), *rule]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["pack"] == "mini"


def test_demo_data_only(world, rule, capsys):
    assert main(["demo", "--data-only", "--build-dir", str(world["build"]), *rule]) == 0
    out = capsys.readouterr().out
    assert "Buildings       6 " in out and "2 ground-water wells, 1 climate stations" in out


def test_sensors_simulate_and_ingest_use_the_packs_devices(world, rule, tmp_path, capsys):
    uplinks, store = tmp_path / "up.jsonl", tmp_path / "s.sqlite"
    assert main(["sensors", "simulate", "--out", str(uplinks), "--minutes", "30",
                 "--seed", "1", *rule]) == 0  # fmt: skip
    assert "from 3 sensors" in capsys.readouterr().out  # the mini pack: 2 wells, 1 station
    euis = {json.loads(line)["end_device_ids"]["dev_eui"].upper()
            for line in uplinks.read_text(encoding="utf-8").splitlines()}  # fmt: skip
    assert euis == {"0011223344556677", "0011223344556678", "A011223344556677"}
    assert main(["sensors", "ingest", "--file", str(uplinks), "--store", str(store), *rule]) == 0
    capsys.readouterr()
    assert main(["sensors", "status", "--store", str(store), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["catalogue_devices"] == 3 and status["devices"] == 3
    assert status["readings"] > 0


def test_groundwater_check(world, rule, capsys):
    argv = ["groundwater", "check", str(world["gw"]), "--build-dir", str(world["build"]), *rule]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "12 x 20 cells of 50 m" in out  # the mini pack's 1 km x 600 m extent


def test_traffic_network_and_scene_tileset(world, rule):
    from twin.scenes.commands import resolve_tileset
    from twin.traffic.commands import network_products
    from twin.traffic.network import NET_FILE

    args = argparse.Namespace(
        pack=rule[1] if rule else None, build_dir=world["build"], tileset=None
    )
    products = network_products(args)
    assert products == world["build"] / "mini" and (products / NET_FILE).is_file()
    tileset = resolve_tileset(args, "tiles/tileset.json")
    assert tileset == world["build"] / "mini" / "tiles" / "tileset.json" and tileset.is_file()


def test_groundwater_build_dir_defaults_to_build(world, monkeypatch):
    monkeypatch.delenv(PACK_ENV, raising=False)
    args = build_parser("groundwater").parse_args(["groundwater", "check", "x.toml"])
    assert args.build_dir == Path("build") and args.pack is None


def test_every_demo_step_gets_the_demo_pack(world):
    from twin.app.demo import demo_commands

    pack, demo, runs = world["pack"], world["root"] / "demo", world["root"] / "runs"
    steps = demo_commands(pack, world["build"], demo, runs)
    with_pack = 0
    for _, argv in steps:
        args = build_parser(argv[0]).parse_args(argv)
        if hasattr(args, "pack"):
            assert args.pack == pack, argv
            with_pack += 1
        if hasattr(args, "build_dir"):
            assert args.build_dir == world["build"], argv
    assert with_pack == len(steps) - 1  # all but `sensors status`, which reads only its store
