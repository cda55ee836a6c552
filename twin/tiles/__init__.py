"""3D Tiles: read tilesets (1.0/1.1, explicit and implicit), select tiles, build meshes, summarise.

Main entry points: `open_tileset`, `select_by_camera` / `select_by_region`, `tile_meshes`,
`tileset_info` / `format_info`.
"""

from twin.tiles.content import Content, Geometry, ParseContext, parse_content
from twin.tiles.info import format_info, tileset_info
from twin.tiles.mesh import content_meshes, tile_meshes, to_pyvista, to_scene
from twin.tiles.tileset import ContentRef, Tile, Tileset, open_tileset
from twin.tiles.traverse import (
    Camera,
    Selection,
    camera_from_lonlat,
    select_by_camera,
    select_by_region,
)

__all__ = [
    "Camera",
    "Content",
    "ContentRef",
    "Geometry",
    "ParseContext",
    "Selection",
    "Tile",
    "Tileset",
    "camera_from_lonlat",
    "content_meshes",
    "format_info",
    "open_tileset",
    "parse_content",
    "select_by_camera",
    "select_by_region",
    "tile_meshes",
    "tileset_info",
    "to_pyvista",
    "to_scene",
]
