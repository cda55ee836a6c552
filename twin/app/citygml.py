"""`twin data citygml`: LoD2 CityGML tiles converted on their own, without a data pack: the
footprints and attributes as buildings.gpkg and the buildings as a 3D Tiles 1.1 tileset."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from twin.city.citygml import read_citygml
from twin.city.vector import write_gpkg
from twin.citytiles.writer import TILESET_JSON, TilesetReport, write_buildings_tileset
from twin.errors import DataError
from twin.progress import Progress, as_progress

GPKG = "buildings.gpkg"
TILES = "tiles"


@dataclass
class Conversion:
    """What a conversion wrote and what it met."""

    folder: Path
    files: int
    buildings: int
    triangles: int
    tileset: TilesetReport
    problems: list[str] = field(default_factory=list)

    @property
    def gpkg(self) -> Path:
        """The footprints and attributes (the columns of a build's buildings.gpkg)."""
        return self.folder / GPKG

    @property
    def tileset_json(self) -> Path:
        """The tileset's root file."""
        return self.folder / TILES / TILESET_JSON


def convert_citygml(
    sources: Sequence[str | Path],
    out_dir: str | Path,
    crs: str = "EPSG:25832",
    progress: Progress | Callable[[str], None] | None = None,
) -> Conversion:
    """Read CityGML tiles (files, folders or globs) and write out_dir/buildings.gpkg and
    out_dir/tiles/ (tileset.json + GLB contents). Malformed buildings are left out and listed in
    `problems`; DataError when no building could be read."""
    progress = as_progress(progress)
    out = Path(out_dir)
    b = read_citygml(sources, crs, progress=progress)
    if len(b) == 0:
        first = f"; the first problem: {b.problems[0]}" if b.problems else ""
        raise DataError(f"{', '.join(map(str, sources))}: no building could be read{first}")
    out.mkdir(parents=True, exist_ok=True)
    table = b.table()
    geoms = table.pop("geometry")
    tmp = out / f".tmp-{GPKG}"
    tmp.unlink(missing_ok=True)
    progress.stage(f"writing {GPKG} ({len(b):,} buildings)")
    write_gpkg(tmp, "buildings", crs, geoms, table)
    os.replace(tmp, out / GPKG)
    progress.stage("writing the 3D Tiles tileset")
    report = write_buildings_tileset(
        {"geometry": geoms, **table}, b.surfaces(), out / TILES, crs, progress=progress.stage
    )
    return Conversion(out, len(b.files), len(b), len(b.tris), report, list(b.problems))
