"""The `tiles` build step: the textured city as a 3D Tiles 1.1 tileset in build/<pack>/tiles/."""

from __future__ import annotations

from twin.city.build import Step, StepContext
from twin.citytiles.writer import TilesetOptions, write_tileset_from_build

TILES_DIR = "tiles"
TILESET = f"{TILES_DIR}/tileset.json"
STEP_VERSION = 10  # bump when the tileset the step writes changes


def build_tileset(ctx: StepContext, options: TilesetOptions | None = None) -> None:
    """Write the tileset folder; the build moves it into place as a whole when the step succeeded."""
    report = write_tileset_from_build(
        ctx.pack, ctx.build_dir, ctx.out(TILES_DIR), options or TilesetOptions(), ctx.progress
    )
    ctx.progress(f"tiles: {report.summary()}")


def tiles_step() -> Step:
    """The build step writing the textured 3D Tiles city (registered in `twin.app.steps`)."""
    return Step(
        "tiles",
        build_tileset,
        outputs=(TILES_DIR,),
        sources=("landcover",),  # for its class table (names -> ground colours), not its file
        after=("terrain", "landcover", "streets", "buildings", "trees"),
        version=STEP_VERSION,
        doc="textured city as 3D Tiles 1.1 (terrain, buildings, trees; GLB, quadtree LOD)",
    )
