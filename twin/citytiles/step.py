"""The `tiles` build step: the textured city as a 3D Tiles 1.1 tileset in build/<pack>/tiles/.

Its textures are KTX2 (Basis Universal ETC1S, with JPEG/PNG fallback) where the basisu encoder is
installed, else JPEG/PNG; $TWIN_TILE_TEXTURES chooses: `ktx2` (the default), `ktx2-uastc`,
`ktx2-only` (no fallback images), `jpeg` or `png` (no KTX2). The format the step will write is part
of its version, so changing the variable or installing the encoder rebuilds the tileset.
"""

from __future__ import annotations

import os
from dataclasses import replace

from twin.city.build import Step, StepContext
from twin.citytiles.writer import TilesetOptions, write_tileset_from_build
from twin.errors import ConfigError
from twin.tiles.ktx2 import missing_encoder_reason

TILES_DIR = "tiles"
TILESET = f"{TILES_DIR}/tileset.json"
STEP_VERSION = 11  # bump when the tileset the step writes changes
TEXTURES_ENV = "TWIN_TILE_TEXTURES"
TEXTURE_CHOICES = {  # value -> TilesetOptions fields (and the step version's last digit)
    "ktx2": ({}, 0),
    "ktx2-uastc": ({"ktx2_codec": "uastc"}, 1),
    "ktx2-only": ({"ktx2_fallback": False}, 2),
    "jpeg": ({"ktx2": False, "ground_format": "jpeg"}, 3),
    "png": ({"ktx2": False, "ground_format": "png"}, 4),
}


def texture_options(base: TilesetOptions | None = None) -> tuple[TilesetOptions, int]:
    """The tileset options with $TWIN_TILE_TEXTURES applied, and a number naming the textures they
    write here (5 when KTX2 is asked for but no encoder is installed)."""
    value = os.environ.get(TEXTURES_ENV, "").strip().lower() or "ktx2"
    if value not in TEXTURE_CHOICES:
        raise ConfigError(
            f"${TEXTURES_ENV}={value!r}: expected one of {', '.join(TEXTURE_CHOICES)}"
        )
    fields, code = TEXTURE_CHOICES[value]
    opts = replace(base or TilesetOptions(), **fields)
    if opts.ktx2 and missing_encoder_reason() is not None:
        code = 5
    return opts, code


def build_tileset(ctx: StepContext, options: TilesetOptions | None = None) -> None:
    """Write the tileset folder; the build moves it into place as a whole when the step succeeded."""
    opts = options or texture_options()[0]
    report = write_tileset_from_build(
        ctx.pack, ctx.build_dir, ctx.out(TILES_DIR), opts, ctx.progress
    )
    ctx.progress(f"tiles: {report.summary()}")


def tiles_step() -> Step:
    """The build step writing the textured 3D Tiles city (registered in `twin.app.steps`)."""
    try:
        _, code = texture_options()
    except ConfigError:
        code = 9  # the step reports the bad value when it runs
    return Step(
        "tiles",
        build_tileset,
        outputs=(TILES_DIR,),
        sources=("landcover",),  # for its class table (names -> ground colours), not its file
        after=("terrain", "landcover", "streets", "buildings", "trees"),
        version=STEP_VERSION * 10 + code,
        doc="textured city as 3D Tiles 1.1 (terrain, buildings, trees; GLB with KTX2 textures, "
        "quadtree LOD)",
    )
