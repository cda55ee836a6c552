"""The data pack: `pack.toml` names every source layer of a city, its format and provenance.

Swapping the authored Krefeld layers for official data means editing this file only: each layer points to a
file in a standard format (OSM XML, any GDAL raster, any OGR vector, CSV).
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twin.config import Field, load_toml, numbers, positive, validate
from twin.errors import ConfigError

STATUSES = ("official", "approximate", "synthetic")
# File names a folder or glob of CityGML tiles contributes (a file named on its own may have any).
CITYGML_SUFFIXES = (".gml", ".xml", ".gml.gz")

_COMMON = {
    "path": Field(
        str, doc="file of the layer, relative to pack.toml (citygml: or a folder or glob)"
    ),
    "format": Field(str),
    "status": Field(str, choices=STATUSES),
    "licence": Field(str),
    "source": Field(str),
}

_CLASS = {
    "code": Field(int, check=lambda v: None if 1 <= v <= 255 else "a code from 1 to 255"),
    "name": Field(str),
    "sealed": Field(float, check=lambda v: None if 0 <= v <= 1 else "a fraction from 0 to 1"),
}

_LAYERS: dict[str, dict[str, Field]] = {
    "streets": {
        **_COMMON,
        "format": Field(str, choices=("osm",)),
        # Terminal gates: OSM barrier=gate nodes inside an area with this tag (key=value) ...
        "gate_area_tag": Field(str, required=False, default="industrial=port"),
        # ... or, if set, the nodes with this tag (key=value), wherever they are.
        "gate_tag": Field(str, required=False),
    },
    "terrain": {**_COMMON, "format": Field(str, choices=("raster",))},
    "landcover": {
        **_COMMON,
        "format": Field(str, choices=("raster", "vector")),
        "classes": Field(items=_CLASS),
        "class_field": Field(str, required=False, doc="vector only: field holding the class"),
        "class_map": Field(dict, required=False, doc="vector only: field value -> class code"),
    },
    "blocks": {**_COMMON, "format": Field(str, choices=("vector",))},
    "buildings": {
        **_COMMON,
        "format": Field(str, choices=("vector", "citygml")),
        "id_field": Field(str, required=False, default="id"),
        "height_field": Field(str, required=False, default="height"),
        "use_field": Field(str, required=False, default="use"),
        "procedural_seed": Field(int, required=False),
    },
    "wells": {**_COMMON, "format": Field(str, choices=("csv",))},
    "climate_stations": {**_COMMON, "format": Field(str, choices=("csv",))},
    "parking": {**_COMMON, "format": Field(str, choices=("csv",))},
    "trees": {
        **_COMMON,
        "format": Field(str, choices=("csv",)),
        "id_field": Field(str, required=False, default="id"),
        "species_field": Field(str, required=False, default="species"),
        "height_field": Field(str, required=False, default="height"),  # m
        "crown_field": Field(str, required=False, default="crown_diameter"),  # m
        "x_field": Field(str, required=False, default="x"),  # EPSG:25832 m
        "y_field": Field(str, required=False, default="y"),
    },
    "boulevards": {**_COMMON, "format": Field(str, choices=("toml",))},
    "surface": {
        **_COMMON,
        "format": Field(str, choices=("3dtiles",)),
        # tiles are refined while their geometric error exceeds this (m); default the cell size
        "max_error": Field(float, required=False, check=lambda v: None if v >= 0 else ">= 0"),
    },
}
# A pack without these simply has no parking sensors, no trees or no boulevard cross-sections; blocks
# are only what procedural footprints are generated from, so a pack with official buildings needs none;
# a surface (a 3D Tiles mesh of the city) replaces the footprints' heights by the mesh's.
_OPTIONAL_LAYERS = ("parking", "trees", "boulevards", "blocks", "surface")

# Texture formats of the tileset the build writes ([pack] tile_textures): KTX2 (Basis Universal
# ETC1S, or UASTC) with a JPEG/PNG fallback, KTX2 alone, or JPEG/PNG alone
TILE_TEXTURES = ("ktx2", "ktx2-uastc", "ktx2-only", "jpeg", "png")

_SCHEMA = {
    "pack": Field(
        schema={
            "name": Field(str),
            "title": Field(str, required=False, default=""),
            "crs": Field(str, choices=("EPSG:25832",)),
            "extent": Field(list, check=numbers(4), doc="[xmin, ymin, xmax, ymax] in metres"),
            "resolution": Field(float, check=positive, doc="cell size of raster products in m"),
            "tile_textures": Field(
                str,
                required=False,
                default="ktx2",
                choices=TILE_TEXTURES,
                doc="texture format of the built 3D Tiles city",
            ),
        }
    ),
    "layers": Field(
        schema={
            name: Field(schema=spec, required=name not in _OPTIONAL_LAYERS)
            for name, spec in _LAYERS.items()
        }
    ),
}


@dataclass(frozen=True)
class Layer:
    """One source layer: its resolved file, format, provenance and layer-specific options."""

    name: str
    path: Path
    format: str
    status: str
    licence: str
    source: str
    options: dict[str, Any] = field(default_factory=dict)

    def files(self) -> list[Path]:
        """The files the layer reads: its path, or for CityGML the tiles in its folder or glob."""
        return source_files(self.path, self.format)


def source_files(path: Path, fmt: str) -> list[Path]:
    """The files a layer path stands for, sorted: the file itself; for the citygml format also
    every *.gml, *.xml, *.gml.gz in a folder (not its sub-folders) or matching a glob pattern; for
    3dtiles every file in the tileset's folder (its contents change the surface as its JSON does).
    Empty when there is none."""
    if fmt == "raster" and path.suffix.lower() == ".vrt" and path.is_file():
        return [path, *_vrt_sources(path)]
    if fmt == "3dtiles" and path.exists():  # the tileset's folder: its JSON and every content
        folder = path if path.is_dir() else path.parent
        return sorted(p for p in folder.rglob("*") if p.is_file())
    if fmt != "citygml" or path.is_file():
        return [path] if path.exists() else []
    if path.is_dir():
        candidates = [p for p in path.iterdir() if p.is_file()]
    elif any(c in str(path) for c in "*?["):
        candidates = [Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file()]
    else:
        return []
    return sorted(p for p in candidates if p.name.lower().endswith(CITYGML_SUFFIXES))


def _vrt_sources(vrt: Path) -> list[Path]:
    """The existing files a GDAL VRT reads (its SourceFilename elements), so that a changed tile of a
    terrain mosaic rebuilds what depends on it although the .vrt itself is unchanged."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(vrt).getroot()
    except (ET.ParseError, OSError):
        return []  # GDAL reports an unreadable VRT when the step opens it
    found = set()
    for el in root.iter("SourceFilename"):
        name = (el.text or "").strip()
        file = vrt.parent / name if el.get("relativeToVRT") == "1" else Path(name)
        if file.is_file():
            found.add(file)
    return sorted(found)


@dataclass(frozen=True)
class DataPack:
    """A validated data pack: the city's extent and grid, and its layers."""

    file: Path
    name: str
    title: str
    crs: str
    extent: tuple[float, float, float, float]
    resolution: float
    layers: dict[str, Layer]
    tile_textures: str = "ktx2"

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the raster products' grid."""
        xmin, ymin, xmax, ymax = self.extent
        return round((ymax - ymin) / self.resolution), round((xmax - xmin) / self.resolution)

    @property
    def area_km2(self) -> float:
        """Area of the extent in square kilometres."""
        xmin, ymin, xmax, ymax = self.extent
        return (xmax - xmin) * (ymax - ymin) / 1e6

    def config_of(self, *names: str, settings: tuple[str, ...] = ()) -> dict[str, Any]:
        """The parts of the pack a build step depends on (for cache keys): the grid, the named
        layers' formats and options, and the named `[pack]` settings."""
        out: dict[str, Any] = {
            "crs": self.crs,
            "extent": self.extent,
            "resolution": self.resolution,
        }
        out.update({s: getattr(self, s) for s in settings})
        for n in names:
            if n not in self.layers:
                out[n] = None  # an optional layer the pack does not have
                continue
            layer = self.layers[n]
            out[n] = {"format": layer.format, "options": layer.options}
        return out


def load_pack(path: str | Path) -> DataPack:
    """Load and validate `pack.toml`; every layer's file must exist."""
    path = Path(path)
    if path.is_dir():
        path = path / "pack.toml"
    cfg = validate(load_toml(path), _SCHEMA, file=path)
    p = cfg["pack"]
    xmin, ymin, xmax, ymax = (float(v) for v in p["extent"])
    if xmax <= xmin or ymax <= ymin:
        raise ConfigError(f"{path}: 'pack.extent' must be [xmin, ymin, xmax, ymax] with max > min")
    layers = {}
    for name, spec in cfg["layers"].items():
        if spec is None:  # an optional layer the pack does not have
            continue
        file = Path(spec["path"]).expanduser()
        if not file.is_absolute():
            file = path.parent / file
        if spec["format"] == "citygml":
            if not source_files(file, "citygml"):
                raise ConfigError(
                    f"{path}: 'layers.{name}.path': no CityGML file at {file}; expected a file, "
                    f"a folder or a glob with *{', *'.join(CITYGML_SUFFIXES)} files"
                )
        elif not file.exists():
            raise ConfigError(f"{path}: 'layers.{name}.path': file not found: {file}")
        options = {k: v for k, v in spec.items() if k not in _COMMON and v is not None}
        layers[name] = Layer(
            name=name,
            path=file,
            format=spec["format"],
            status=spec["status"],
            licence=spec["licence"],
            source=spec["source"],
            options=options,
        )
    lc = layers["landcover"]
    if lc.format == "vector" and not {"class_field", "class_map"} <= lc.options.keys():
        raise ConfigError(
            f"{path}: 'layers.landcover': a vector land cover needs 'class_field' and 'class_map'"
        )
    return DataPack(
        file=path,
        name=p["name"],
        title=p["title"],
        crs=p["crs"],
        extent=(xmin, ymin, xmax, ymax),
        resolution=p["resolution"],
        layers=layers,
        tile_textures=p["tile_textures"],
    )
