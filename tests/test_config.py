"""Config loading and validation: every bad file gives one message naming the file, key and expectation."""

from __future__ import annotations

from pathlib import Path

import pytest

from twin.city.pack import load_pack
from twin.config import Field, load_toml, numbers, validate
from twin.errors import ConfigError

SCHEMA = {
    "name": Field(str),
    "steps": Field(int, required=False, default=10),
    "dt": Field(float),
    "mode": Field(str, choices=("fast", "exact")),
    "box": Field(list, check=numbers(4)),
    "inner": Field(schema={"flag": Field(bool)}),
}


def test_valid_config_fills_defaults_and_promotes_ints():
    out = validate(
        {"name": "a", "dt": 2, "mode": "fast", "box": [0, 0, 1, 1], "inner": {"flag": True}},
        SCHEMA,
        file="s.toml",
    )
    assert out["steps"] == 10
    assert out["dt"] == 2.0 and isinstance(out["dt"], float)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"dt": 1, "mode": "fast", "box": [0, 0, 1, 1], "inner": {"flag": True}}, "missing key 'name'"),
        ({"name": 3, "dt": 1, "mode": "fast", "box": [0, 0, 1, 1], "inner": {"flag": True}},
         "'name' must be a string, got 3"),
        ({"name": "a", "dt": "x", "mode": "fast", "box": [0, 0, 1, 1], "inner": {"flag": True}},
         "'dt' must be a number"),
        ({"name": "a", "dt": True, "mode": "fast", "box": [0, 0, 1, 1], "inner": {"flag": True}},
         "'dt' must be a number, got True"),
        ({"name": "a", "dt": 1, "mode": "slow", "box": [0, 0, 1, 1], "inner": {"flag": True}},
         "'mode' must be one of 'fast', 'exact'"),
        ({"name": "a", "dt": 1, "mode": "fast", "box": [0, 0, 1], "inner": {"flag": True}},
         "'box' must be an array of 4 finite numbers"),
        ({"name": "a", "dt": 1, "mode": "fast", "box": [0, 0, float("inf"), 1],
          "inner": {"flag": True}}, "'box' must be an array of 4 finite numbers"),
        ({"name": "a", "dt": float("inf"), "mode": "fast", "box": [0, 0, 1, 1],
          "inner": {"flag": True}}, "'dt' must be a finite number, got inf"),
        ({"name": "a", "dt": float("nan"), "mode": "fast", "box": [0, 0, 1, 1],
          "inner": {"flag": True}}, "'dt' must be a finite number, got nan"),
        ({"name": "a", "dt": 10**400, "mode": "fast", "box": [0, 0, 1, 1],
          "inner": {"flag": True}}, "'dt' must be a finite number, got 1000"),
        ({"name": "a", "dt": 1, "mode": "fast", "box": [0, 0, 1, 1], "inner": {"flag": 1}},
         "'inner.flag' must be true or false"),
        ({"name": "a", "dt": 1, "mode": "fast", "box": [0, 0, 1, 1], "inner": {"flag": True},
          "stpes": 3}, "unknown key 'stpes' (did you mean 'steps'?)"),
    ],
)  # fmt: skip
def test_bad_values_name_file_key_and_expectation(data, needle):
    with pytest.raises(ConfigError) as exc:
        validate(data, SCHEMA, file="scenario.toml")
    msg = str(exc.value)
    assert msg.startswith("scenario.toml: ")
    assert needle in msg
    assert "\n" not in msg


def test_broken_toml_gives_one_line_with_file_and_position(tmp_path: Path):
    bad = tmp_path / "broken.toml"
    bad.write_text('[pack]\nname = "krefeld\nextent = [1, 2]\n', encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_toml(bad)
    msg = str(exc.value)
    assert str(bad) in msg and "not valid TOML" in msg and "line 2" in msg


def test_missing_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="file not found"):
        load_toml(tmp_path / "nope.toml")


def test_pack_loads_and_resolves_layers(mini_pack: Path):
    pack = load_pack(mini_pack)
    assert pack.name == "mini"
    assert pack.shape == (60, 100)
    assert pack.area_km2 == pytest.approx(0.6)
    assert pack.layers["terrain"].path == mini_pack.parent / "terrain.tif"
    assert pack.layers["buildings"].options["height_field"] == "height"
    assert {c["code"] for c in pack.layers["landcover"].options["classes"]} == {1, 2, 5}


def test_pack_errors_name_the_key(mini_pack: Path):
    text = mini_pack.read_text(encoding="utf-8")
    mini_pack.write_text(
        text.replace('status = "synthetic"', 'status = "made up"', 1), encoding="utf-8"
    )
    with pytest.raises(ConfigError, match=r"'layers.streets.status' must be one of 'official'"):
        load_pack(mini_pack)
    mini_pack.write_text(
        text.replace('path = "terrain.tif"', 'path = "dgm1.vrt"'), encoding="utf-8"
    )
    with pytest.raises(ConfigError, match=r"'layers.terrain.path': file not found: .*dgm1.vrt"):
        load_pack(mini_pack)
    mini_pack.write_text(
        text.replace(
            "extent = [330000.0, 5689000.0, 331000.0, 5689600.0]", "extent = [1, 2, 0, 3]"
        ),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="max > min"):
        load_pack(mini_pack)
