"""`check` means `run` will start: each defective scenario is refused by `twin groundwater check` and
`twin traffic check` with its file and key (one line, exit 1), by the library function they call,
and by the run with the same message; the shipped scenarios pass.

Variants are the shipped files of simulations/ with one key changed, written into tmp_path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from twin.cli import main
from twin.errors import ConfigError
from twin.groundwater import scenario as gw

TWIN = Path(sys.executable).parent / "twin"
REPO = Path(__file__).resolve().parents[1]
SIMULATIONS = REPO / "simulations"
PACK = REPO / "data" / "krefeld" / "pack.toml"

needs_pack = pytest.mark.skipif(
    not PACK.exists(), reason="the Krefeld data pack is not in data/krefeld"
)


def variant(tmp_path: Path, shipped: str, old: str, new: str) -> Path:
    """The shipped scenario with `old` replaced by `new` once, its paths made absolute."""
    text = (SIMULATIONS / shipped).read_text(encoding="utf-8")
    text = text.replace('pack = "../data/krefeld/pack.toml"', f'pack = "{PACK.as_posix()}"')
    text = text.replace('build_dir = "../build"', f'build_dir = "{(REPO / "build").as_posix()}"')
    assert old in text, old
    path = tmp_path / f"variant-{shipped}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    """`twin ARGS` in this process: exit code, the lines on stderr that are not progress, stdout."""
    env_pack = os.environ.pop("TWIN_PACK", None)
    try:
        code = main(list(args))
    finally:
        if env_pack is not None:
            os.environ["TWIN_PACK"] = env_pack
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("  … ")]
    return code, lines, out


def refused(code: int, lines: list[str], path: Path, key: str) -> str:
    """Assert one error line naming the file and the key; return the message after 'twin: error: '."""
    assert code == 1
    errors = [line for line in lines if line.startswith("twin: ")]
    assert len(errors) == 1, lines
    assert not any("Traceback" in line for line in lines)
    message = errors[0]
    assert message.startswith("twin: error: "), message  # not an internal error
    assert str(path) in message and key in message, message
    return message.removeprefix("twin: error: ")


# -- ground water --------------------------------------------------------------------------------

TODAY = "groundwater-today.toml"

# (old, new, key, more words the message must hold); each fails before any data is built
GROUNDWATER_CASES = {
    "cell-inf": ("cell = 100.0 ", "cell = inf ", "'grid.cell'", ["finite number", "inf"]),
    "cell-half-metre": (
        "cell = 100.0 ",
        "cell = 0.5 ",
        "'grid.cell'",
        ["336,000,000 cells", f"{gw.MAX_CELLS:,} cells"],
    ),
    "tiny-time-step": (
        "time_step_hours = 24.0",
        "time_step_hours = 0.001",
        "'scenario.time_step_hours'",
        ["2,208,000 steps", "8,400 cells", "GiB", "limit of 2.0 GiB"],
    ),
    "missing-pack": (
        f'pack = "{PACK.as_posix()}"',
        'pack = "no-such-pack/pack.toml"',
        "'scenario.pack'",
        ["no data pack", "no-such-pack"],
    ),
    "missing-pumping-table": (
        '# table = "waterworks.csv"',
        'table = "waterworks.csv"',
        "'pumping.table'",
        ["file not found", "waterworks.csv"],
    ),
    "unknown-hydrograph-well": (
        '"GWM-0100"]',
        '"GWM-9999"]',
        "'output.hydrograph_wells[3]'",
        ["'GWM-9999'", "neither a logger well"],
    ),
    "well-outside-grid": (
        "x = 336900.0",
        "x = 36900.0",
        "'pumping.wells[0]'",
        ["Wellfield Gellep", "outside the model grid"],
    ),
}


def _gw_variant(tmp_path: Path, case: str) -> tuple[Path, str, list[str]]:
    old, new, key, words = GROUNDWATER_CASES[case]
    return variant(tmp_path, TODAY, old, new), key, words


def _gw_library(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        gw.build_setup(gw.load_scenario(path))
    return str(info.value)


@needs_pack
@pytest.mark.parametrize("case", sorted(GROUNDWATER_CASES))
def test_groundwater_check_refuses_each_defect_with_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    path, key, words = _gw_variant(tmp_path, case)
    if case == "missing-pack":  # commands take their pack by the one pack rule, not from the file
        message = refused(1, [f"twin: error: {_gw_library(path)}"], path, key)
    else:
        message = refused(*cli(capsys, "groundwater", "check", str(path))[:2], path, key)
    for word in words:
        assert word in message, (word, message)
    assert _gw_library(path) == message  # the CLI says what the library function raises


@needs_pack
def test_groundwater_check_refuses_a_base_above_the_terrain(
    krefeld_build: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Needs the terrain: the base of 500 m lies above every cell's ground (28-100 m)."""
    path = variant(tmp_path, TODAY, "bottom = 5.0 ", "bottom = 500.0 ")
    message = refused(*cli(capsys, "groundwater", "check", str(path))[:2], path, "'aquifer.bottom'")
    assert "must lie below the aquifer top" in message and "500.0 m" in message
    assert _gw_library(path) == message


@needs_pack
@pytest.mark.parametrize("case", ["cell-half-metre", "tiny-time-step", "unknown-hydrograph-well"])
def test_groundwater_run_refuses_what_check_refuses_with_the_same_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    path, key, _ = _gw_variant(tmp_path, case)
    checked = refused(*cli(capsys, "groundwater", "check", str(path))[:2], path, key)
    code, lines, _ = cli(capsys, "groundwater", "run", str(path), "--runs-dir", str(tmp_path / "r"))
    assert refused(code, lines, path, key) == checked


def test_the_limits_hold_the_numbers_the_run_needs() -> None:
    """The memory estimate grows with cells and steps; the shipped grid stays far below it."""
    assert gw.step_count(92 * 86400.0, 86400.0) == 92
    assert gw.run_bytes(1, gw.step_count(86400.0, 1e-300)) > gw.MAX_RUN_BYTES
    assert gw.step_count(86400.0, 1e-310) == float("inf")  # too many to count, still refused
    assert gw.run_bytes(1, gw.step_count(86400.0, 1e-310)) > gw.MAX_RUN_BYTES
    small = gw.run_bytes(8_400, 92)
    assert small == 8_400 * (gw.BYTES_PER_CELL + gw.BYTES_PER_CELL_STEP * 93)
    assert small < gw.MAX_RUN_BYTES / 50
    assert gw.run_bytes(8_400, 2 * 92) > small and gw.run_bytes(2 * 8_400, 92) == 2 * small


@needs_pack
@pytest.mark.parametrize("name", ["groundwater-today", "groundwater-drought"])
def test_shipped_groundwater_scenarios_pass_check(
    krefeld_build: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    code, lines, out = cli(capsys, "groundwater", "check", str(SIMULATIONS / f"{name}.toml"))
    assert code == 0, lines
    assert f"scenario '{name}' is valid" in out and "70 x 120 cells of 100 m" in out
    setup = gw.build_setup(gw.load_scenario(SIMULATIONS / f"{name}.toml"))
    assert setup.memory_bytes < gw.MAX_RUN_BYTES and setup.steps in (92, 153)
    assert [h[0] for h in setup.hydrographs][:4] == ["GWM-0113", "GWM-0195", "GWM-0251", "GWM-0100"]


# -- traffic ------------------------------------------------------------------------------------

PRIORITY = "bus-bike-priority.toml"
WAVE = "'variants.bike-green-wave.controllers[0]'"

# (shipped file, old, new, key, words the message must hold)
TRAFFIC_CASES = {
    "mode-psychic": (
        PRIORITY,
        'mode = "actuated"',
        'mode = "psychic"',
        WAVE,
        ["'mode'", "psychic"],
    ),
    "window-negative": (PRIORITY, "window_s = 15.0", "window_s = -15", WAVE, ["'window_s'", "-15"]),
    "speed-zero": (PRIORITY, "speed_kmh = 18.0", "speed_kmh = 0", WAVE, ["'speed_kmh'", ">= 1"]),
    "compliance-above-one": (
        "virtual-barrier.toml",
        "compliance = 0.8",
        "compliance = 1.5",
        "'variants.enforced-80.controllers[0]'",
        ["'compliance'", "1.5"],
    ),
    "unknown-line": (
        PRIORITY,
        '{ ref = "041", headway_min = 7.5 }',
        '{ ref = "0411", headway_min = 7.5 }',
        "'demand.transit.lines[0].ref'",
        ["unknown line '0411'", "did you mean '041'"],
    ),
    "unknown-gate": (
        "virtual-barrier.toml",
        "compliance = 0.0",
        'compliance = 0.0\ngates = ["no_such_gate"]',
        "'baseline.controllers[0].gates'",
        ["no_such_gate"],
    ),
}


@pytest.fixture(scope="module")
def net_index(krefeld_build: Path):
    """What the built Krefeld net lets a scenario name, as `twin traffic check` reads it."""
    from twin.traffic.scenario import built_net_index

    return built_net_index(krefeld_build)[1]


def _traffic_cli(capsys: pytest.CaptureFixture[str], path: Path) -> tuple[int, list[str], str]:
    return cli(capsys, "traffic", "check", str(path), "--build-dir", str(REPO / "build"))


@needs_pack
@pytest.mark.parametrize("case", sorted(TRAFFIC_CASES))
def test_traffic_check_refuses_each_defect_with_file_and_key(
    net_index, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    from twin.traffic.scenario import check_scenario, load_scenario

    shipped, old, new, key, words = TRAFFIC_CASES[case]
    path = variant(tmp_path, shipped, old, new)
    message = refused(*_traffic_cli(capsys, path)[:2], path, key)
    for word in words:
        assert word in message, (word, message)
    with pytest.raises(ConfigError) as info:
        check_scenario(load_scenario(path), net_index)
    assert str(info.value) == message


@needs_pack
def test_traffic_run_refuses_what_check_refuses_with_the_same_message(
    net_index, krefeld_build: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from twin.traffic.runs import plan_run
    from twin.traffic.scenario import load_scenario

    path = variant(tmp_path, PRIORITY, 'mode = "actuated"', 'mode = "psychic"')
    checked = refused(*_traffic_cli(capsys, path)[:2], path, WAVE)
    with pytest.raises(ConfigError) as info:
        plan_run(load_scenario(path), runs_root=tmp_path / "runs", products=krefeld_build, seeds=1)
    assert str(info.value) == checked


@needs_pack
@pytest.mark.parametrize("name", ["bus-bike-priority", "virtual-barrier", "rheinhafen-freight"])
def test_shipped_traffic_scenarios_pass_check(
    net_index, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    from twin.traffic.scenario import check_scenario, load_scenario

    code, lines, out = _traffic_cli(capsys, SIMULATIONS / f"{name}.toml")
    assert code == 0, lines
    assert "valid; variants: baseline" in out
    resolved = check_scenario(load_scenario(SIMULATIONS / f"{name}.toml"), net_index)
    assert "baseline" in resolved


# -- the real commands, as users start them --------------------------------------------------------


@needs_pack
@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["groundwater", "check", "--pack", str(PACK)], "'grid.cell'"),
        (["traffic", "check", "--pack", str(PACK), "--build-dir", str(REPO / "build")], WAVE),
    ],
)
def test_the_twin_command_prints_one_line_and_exits_1(
    krefeld_build: Path, tmp_path: Path, args: list[str], key: str
) -> None:
    if args[0] == "groundwater":
        path = variant(tmp_path, TODAY, "cell = 100.0 ", "cell = 0.5 ")
    else:
        path = variant(tmp_path, PRIORITY, 'mode = "actuated"', 'mode = "psychic"')
    env = {k: v for k, v in os.environ.items() if k not in ("TWIN_DEBUG", "TWIN_PACK")}
    r = subprocess.run(
        [str(TWIN), *args[:2], str(path), *args[2:]],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )  # fmt: skip
    assert r.returncode == 1
    lines = [line for line in r.stderr.splitlines() if not line.startswith("  … ")]
    assert len(lines) == 1 and lines[0].startswith("twin: error: "), r.stderr
    assert str(path) in lines[0] and key in lines[0]
