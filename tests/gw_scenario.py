"""The ground-water test scenario on the mini pack (tests/conftest.py), shared by the tests that
run it: a pumping well, the river on the east, synthetic readings."""

from __future__ import annotations

from pathlib import Path

SCENARIO = """
[scenario]
name = "{name}"
title = "A short run on the test pack"
pack = "{pack}"
build_dir = "{build}"
start = "2024-03-01T00:00:00Z"
end = "{end}"
time_step_hours = {step_hours}

[grid]
cell = 50.0

[aquifer]
k = 1.0e-3
k_log10_sd = 0.2
bottom = 5.0
sy = 0.18

[recharge]
precipitation_mm_per_year = 780.0
open_fraction = 0.3

[river]
line = [[330900.0, 5688900.0], [330900.0, 5689700.0]]
width_m = 100.0
bed_leakance_per_day = 0.5
bottom = 22.0
[[river.stage]]
time = "2024-03-01T00:00:00Z"
stage = 29.0
[[river.stage]]
time = "{end}"
stage = 28.0

[edges]
west = 31.0

[pumping]
table = "pumping.csv"

[readings]
source = "synthetic"
withhold_fraction = 0.5

[output]
hydrograph_wells = ["GWM-1", "WW-1"]
"""


def write_gw_scenario(folder: Path, pack: Path, *, name: str = "mini-groundwater",
                      end: str = "2024-06-01T00:00:00Z", step_hours: float = 24,
                      file: str = "scenario.toml", **replace: str) -> Path:  # fmt: skip
    """Write the scenario (and its pumping table) into ``folder``; ``replace`` swaps text in it."""
    text = SCENARIO.format(name=name, pack=pack.as_posix(), build=(folder / "build").as_posix(),
                           end=end, step_hours=f"{step_hours:g}")  # fmt: skip
    for old, new in replace.items():
        text = text.replace(old, new)
    (folder / "pumping.csv").write_text(
        "name,x,y,rate_m3_per_day\nWW-1,330500,5689300,-1500\n", encoding="utf-8"
    )
    path = folder / file
    path.write_text(text, encoding="utf-8")
    return path
