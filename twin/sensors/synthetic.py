"""Small synthetic well and climate-station catalogues, for tests and demos without the data pack."""

from __future__ import annotations

from pathlib import Path

import numpy as np

WELL_HEADER = (
    "id,dev_eui,name,x,y,ground_elevation_m,reference_height_m,well_depth_m,screen_top_m,"
    "screen_bottom_m,aquifer,status"
)
STATION_HEADER = "id,dev_eui,name,x,y,elevation_m,sensor_height_m,kind,status"


def write_synthetic_catalogue(
    folder: str | Path, n_wells: int = 10, n_stations: int = 3, seed: int = 1
) -> tuple[Path, Path]:
    """Write ``wells.csv`` and ``climate_stations.csv`` (catalogue columns, EPSG:25832 positions
    in and around Krefeld) into ``folder``; return their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = [WELL_HEADER]
    for i in range(n_wells):
        x, y = 326000 + rng.uniform(0, 12000), 5684000 + rng.uniform(0, 11000)
        ground = 30.0 + rng.uniform(0, 10)
        depth = rng.uniform(15, 30)
        lines.append(
            f"GWM-{i:03d},0011223344{i:06X},Test well {i},{x:.1f},{y:.1f},{ground:.2f},"
            f"{ground + 0.5:.2f},{depth:.1f},{depth - 8:.1f},{depth - 1:.1f},upper,synthetic"
        )
    wells = folder / "wells.csv"
    wells.write_text("\n".join(lines) + "\n", encoding="utf-8")
    lines = [STATION_HEADER]
    for i in range(n_stations):
        x, y = 328000 + rng.uniform(0, 5000), 5687000 + rng.uniform(0, 5000)
        lines.append(
            f"KS-{i:02d},A011223344{i:06X},Test station {i},{x:.1f},{y:.1f},"
            f"{33 + rng.uniform(0, 5):.1f},2.0,lorawan,synthetic"
        )
    stations = folder / "climate_stations.csv"
    stations.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return wells, stations
