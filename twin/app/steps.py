"""The build-step registry: every step of `twin data build`, from the packages that own them.

The city's own steps come from `twin.city.steps`; the textured tileset from `twin.citytiles`, the
SUMO net from `twin.traffic`. The data build (`twin.city.build`) runs what it is given and knows none
of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from twin.city.build import Step, StepResult, run_build
from twin.city.pack import DataPack
from twin.city.steps import city_steps
from twin.progress import Progress


def build_steps() -> list[Step]:
    """All build steps of the data products, in one list."""
    from twin.citytiles.step import tiles_step
    from twin.tiles.rasterize import surface_on_grid
    from twin.traffic.network import network_step

    return [*city_steps(surface_on_grid), tiles_step(), network_step()]


def build_products(
    pack: DataPack,
    build_root: Path,
    *,
    only: Iterable[str] | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> tuple[Path, list[StepResult]]:
    """Build (or bring up to date) a pack's products in `build_root/<pack name>`; return that folder
    and what each step did (``progress`` sees a stage per step built and the steps done of all)."""
    build_dir = Path(build_root) / pack.name
    results = run_build(
        pack, build_steps(), build_dir, only=only or None, force=force, progress=progress
    )
    return build_dir, results
