"""The `tiles` build step: the textured city as a 3D Tiles 1.1 tileset in build/<pack>/tiles/.

Its textures are KTX2 (Basis Universal ETC1S, with JPEG/PNG fallback) where the basisu encoder is
installed, else JPEG/PNG; the pack's `[pack] tile_textures` chooses: `ktx2` (the default),
`ktx2-uastc`, `ktx2-only` (no fallback images), `jpeg` or `png` (no KTX2). The setting is part of
the step's cache key and a missing encoder part of its version, so changing either rebuilds it.
"""

from __future__ import annotations

from dataclasses import replace

from twin.city.build import Step, StepContext
from twin.citytiles.writer import TilesetOptions, write_tileset_from_build
from twin.tiles.ktx2 import missing_encoder_reason

TILES_DIR = "tiles"
TILESET = f"{TILES_DIR}/tileset.json"
STEP_VERSION = 12  # bump when the tileset the step writes changes
TEXTURE_CHOICES = {  # [pack] tile_textures -> TilesetOptions fields
    "ktx2": {},
    "ktx2-uastc": {"ktx2_codec": "uastc"},
    "ktx2-only": {"ktx2_fallback": False},
    "jpeg": {"ktx2": False, "ground_format": "jpeg"},
    "png": {"ktx2": False, "ground_format": "png"},
}


def texture_options(choice: str) -> TilesetOptions:
    """The tileset options for a `[pack] tile_textures` value (validated by the pack's schema)."""
    return replace(TilesetOptions(), **TEXTURE_CHOICES[choice])


def build_tileset(ctx: StepContext, options: TilesetOptions | None = None) -> None:
    """Write the tileset folder; the build moves it into place as a whole when the step succeeded."""
    opts = options or texture_options(ctx.pack.tile_textures)
    report = write_tileset_from_build(
        ctx.pack, ctx.build_dir, ctx.out(TILES_DIR), opts, ctx.progress
    )
    ctx.progress(f"tiles: {report.summary()}")


def tiles_step() -> Step:
    """The build step writing the textured 3D Tiles city (registered in `twin.app.steps`)."""
    no_encoder = missing_encoder_reason() is not None
    return Step(
        "tiles",
        build_tileset,
        outputs=(TILES_DIR,),
        sources=("landcover",),  # for its class table (names -> ground colours), not its file
        after=("terrain", "landcover", "streets", "buildings", "trees"),
        version=STEP_VERSION * 10 + no_encoder,
        doc="textured city as 3D Tiles 1.1 (terrain, buildings, trees; GLB with KTX2 textures, "
        "quadtree LOD)",
        settings=("tile_textures",),
    )
