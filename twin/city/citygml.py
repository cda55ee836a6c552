"""Streaming reader of CityGML 1.0 / 2.0 building models (LoD2): footprints, attributes and the
triangulated surfaces of every bldg:Building, one tile after the other in bounded memory.

A city's LoD2 model is hundreds of 1 km tiles of tens of MB (Geobasis NRW:
`LoD2_32_EEE_NNNN_1_NW.gml`), so each file is parsed with lxml's iterparse one
`core:cityObjectMember` at a time and every member is cleared once read. Each bldg:Building becomes
one row, its bldg:BuildingParts merged into it: its polygons come from the boundary surfaces
(Wall/Roof/Ground/Closure/... with their semantics) and from lod2Solid / lod2MultiSurface
(`xlink:href="#id"` resolved inside the building; polygons there without semantics are "other"
unless a semantic surface names them). Each planar polygon is projected onto its Newell-normal plane
and triangulated there by GEOS (shapely.constrained_delaunay_triangles, holes kept, batched over
many polygons), the triangles mapped back to the polygon's own 3D vertices, so its area is kept;
GEOS refuses invalid (self-intersecting) rings, and those go to earcut (mapbox_earcut) instead.

A malformed building is reported ("<file>: building <gml_id>: <problem>") and left out, the rest of
the tile kept; a truncated or unparseable file keeps the buildings read before the error.
"""

from __future__ import annotations

import gzip
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mapbox_earcut
import numpy as np
import shapely
from lxml import etree

from twin.city.buildings import SURFACE_KINDS
from twin.city.pack import source_files
from twin.errors import DataError
from twin.progress import Progress, as_progress

GML = "http://www.opengis.net/gml"
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
GML_ID = f"{{{GML}}}id"
_VERSIONS = ("1.0", "2.0")
_CORE = tuple(f"http://www.opengis.net/citygml/{v}" for v in _VERSIONS)
_BLDG = tuple(f"http://www.opengis.net/citygml/building/{v}" for v in _VERSIONS)
_GEN = tuple(f"http://www.opengis.net/citygml/generics/{v}" for v in _VERSIONS)

_MEMBERS = tuple(f"{{{ns}}}cityObjectMember" for ns in _CORE)
_ENVELOPE = f"{{{GML}}}Envelope"
_BUILDINGS = frozenset(f"{{{ns}}}Building" for ns in _BLDG)
_PARTS = frozenset(f"{{{ns}}}BuildingPart" for ns in _BLDG)
_POLYGONS = frozenset(f"{{{GML}}}{n}" for n in ("Polygon", "Triangle", "Rectangle"))
_EXTERIOR = frozenset(f"{{{GML}}}{n}" for n in ("exterior", "outerBoundaryIs"))
_INTERIOR = frozenset(f"{{{GML}}}{n}" for n in ("interior", "innerBoundaryIs"))
_POSLIST, _POS, _COORDS = (f"{{{GML}}}{n}" for n in ("posList", "pos", "coordinates"))
_SEMANTIC = {"WallSurface": "wall", "RoofSurface": "roof", "GroundSurface": "ground"}
_OTHER_SURFACES = ("ClosureSurface", "OuterCeilingSurface", "OuterFloorSurface",
                   "InteriorWallSurface", "CeilingSurface", "FloorSurface")  # fmt: skip
_KIND_OF = {
    f"{{{ns}}}{name}": SURFACE_KINDS[_SEMANTIC.get(name, "other")]
    for ns in _BLDG
    for name in (*_SEMANTIC, *_OTHER_SURFACES)
}
WALL, ROOF, GROUND, OTHER = (SURFACE_KINDS[k] for k in ("wall", "roof", "ground", "other"))
N_KINDS = max(SURFACE_KINDS.values()) + 1
_LOD2 = frozenset(f"{{{ns}}}lod2{n}" for ns in _BLDG for n in ("Solid", "MultiSurface", "Geometry"))
_HREF_HOLDERS = tuple(f"{{{GML}}}{n}" for n in ("surfaceMember", "baseSurface", "solidMember"))
_BATCH = 2000  # buildings triangulated together (GEOS calls are vectorised over a batch)

# ALKIS Gebäudefunktion (31001_xxxx, AdV code list) -> the twin's building use, first match wins.
ALKIS_USES = (
    (1100, 1199, "mixed"),  # gemischt genutzte Gebäude mit Wohnen
    (1000, 1999, "residential"),  # Wohngebäude, Wohnheime, Wochenend- und Gartenhäuser
    (2300, 2399, "mixed"),  # Handel, Dienstleistung, Gewerbe oder Industrie mit Wohnen
    (2440, 2449, "port"),  # Schiffsverkehr: Werft, Dock, Schleuse, Bootshaus
    (2000, 2099, "commercial"),  # Handel, Büro, Bank, Hotel, Gaststätte, Freizeit
    (2400, 2499, "commercial"),  # Verkehr: Bahnhof, Busbahnhof, Parkhaus, Garage
    (2100, 2999, "industrial"),  # Produktion, Werkstatt, Lager, Versorgung, Landwirtschaft
    (3000, 3999, "civic"),  # öffentliche Zwecke: Verwaltung, Schule, Kultur, Kirche, Sport
)
# Other ALKIS object types stored as bldg:Building: 51002_xxxx (Bauwerk oder Anlage für Industrie
# und Gewerbe: silo, tank, chimney) is industrial; anything else (51009 canopies and walls, 53001
# bridges, 9998/9999 unknown, no function) gets DEFAULT_USE.
DEFAULT_USE = "residential"


def function_use(function: str) -> str:
    """The twin's building use of a bldg:function code (ALKIS_USES; DEFAULT_USE when unknown)."""
    prefix, _, code = function.strip().rpartition("_")
    if prefix == "51002":
        return "industrial"
    if prefix not in ("31001", "") or not code.isdigit():
        return DEFAULT_USE
    n = int(code)
    return next((use for lo, hi, use in ALKIS_USES if lo <= n <= hi), DEFAULT_USE)


def srs_accepted(srs: str, crs: str = "EPSG:25832") -> bool:
    """Whether a CityGML srsName is the pack CRS EPSG:25832 (ETRS89 / UTM 32N, any height
    system): `EPSG:25832`, `urn:ogc:def:crs:EPSG::25832`, compound forms with 25832, and AdV's
    `urn:adv:crs:ETRS89_UTM32*...`."""
    if crs != "EPSG:25832":
        raise DataError(f"CityGML: CRS {crs}; the reader supports EPSG:25832 only")
    s = srs.strip().lower()
    if re.search(r"etrs89_utm32(?![0-9a-z])", s):
        return True
    return "epsg" in s and re.search(r"(?<![0-9])25832(?![0-9])", s) is not None


@dataclass
class LoD2Buildings:
    """Buildings of CityGML tiles: per-building columns (row i = building i) and a triangle soup.

    Strings are "" and numbers NaN where a file gives none. `areas[i, k]` is the Newell area (m²)
    of building i's polygons of SURFACE_KINDS value k; the triangles of that building and kind add
    up to it. xyz/tris/building/kind are the columns of building_surfaces.npz (see
    twin.city.buildings)."""

    id: np.ndarray  # gml:id of the bldg:Building
    function: np.ndarray  # bldg:function code, e.g. "31001_2463"
    use: np.ndarray  # one of twin.city.procedural.USES, from the function (function_use)
    roof_type: np.ndarray  # bldg:roofType code, e.g. "3100"
    measured_height: np.ndarray  # bldg:measuredHeight, m
    storeys: np.ndarray  # bldg:storeysAboveGround
    attributes: np.ndarray  # gen:*Attribute as JSON text {"name": value}
    footprint: np.ndarray  # shapely Polygon / MultiPolygon (x, y)
    base: np.ndarray  # lowest z of the ground surface (else of all surfaces), m
    top: np.ndarray  # highest z, m
    source: np.ndarray  # file name the building was read from
    areas: np.ndarray  # (n, N_KINDS) polygon areas by kind, m²
    xyz: np.ndarray  # (v, 3) float64
    tris: np.ndarray  # (t, 3) int64 into xyz
    building: np.ndarray  # (t,) int64 row
    kind: np.ndarray  # (t,) uint8 SURFACE_KINDS value
    problems: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.id)

    @property
    def height(self) -> np.ndarray:
        """top - base, m."""
        return self.top - self.base

    def surfaces(self) -> dict[str, np.ndarray]:
        """The triangle soup as the arrays of building_surfaces.npz."""
        return {"xyz": self.xyz, "tris": self.tris, "building": self.building, "kind": self.kind}

    def table(self) -> dict[str, Any]:
        """The columns of buildings.gpkg: geometry, id, height (above ground), use, base, area and
        the LoD2 columns (function, roof_type, measured_height, storeys, attributes, source)."""
        return {
            "geometry": self.footprint,
            "id": self.id,
            "height": self.height,
            "use": self.use,
            "base": self.base,
            "area": shapely.area(self.footprint),
            "function": self.function,
            "roof_type": self.roof_type,
            "measured_height": self.measured_height,
            "storeys": self.storeys,
            "attributes": self.attributes,
            "source": self.source,
        }


class _Bad(Exception):
    """A building that cannot be read; the message says why."""


@dataclass
class _Props:
    """The thematic properties one Building or BuildingPart gives itself."""

    function: str = ""
    roof_type: str = ""
    measured_height: float = math.nan
    storeys: float = math.nan
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Raw:
    """One building as parsed: its properties and its polygons' points, not yet cleaned: all ring
    points (as given, closing points included), points per ring, rings per polygon (exterior
    first), and each polygon's kind and gml:id."""

    id: str
    props: _Props
    xyz: np.ndarray
    ring_len: np.ndarray
    poly_rings: np.ndarray
    kinds: np.ndarray
    pids: list[str]
    file: Path


# --- reading ----------------------------------------------------------------------------------


def read_citygml(
    paths: str | Path | Iterable[str | Path],
    crs: str = "EPSG:25832",
    *,
    extent: tuple[float, float, float, float] | None = None,
    progress: Progress | Callable[[str], None] | None = None,
) -> LoD2Buildings:
    """Read the buildings of CityGML files (a file, a folder of *.gml / *.xml / *.gml.gz, a glob,
    or several of these), keeping those whose footprint intersects `extent` (all without one).

    A file whose envelope srsName is not `crs` is refused (DataError naming file and srsName);
    malformed buildings and truncated files are reported in `problems` (see the module doc). A
    gml:id met a second time is reported and its first building kept. `progress` sees a stage and
    an advance per file.
    """
    files = _files(paths)
    progress = as_progress(progress)
    acc = _Accumulator(extent)
    seen: dict[str, Path] = {}
    for i, f in enumerate(files):
        progress.stage(f"reading {f.name} ({i + 1}/{len(files)})")
        batch: list[_Raw] = []
        for raw in _read_file(f, crs, acc.problems):
            if raw.id in seen:
                acc.problems.append(
                    f"{f}: building {raw.id}: its gml:id was met before (in "
                    f"{seen[raw.id].name}); the first is kept"
                )
                continue
            seen[raw.id] = f
            batch.append(raw)
            if len(batch) >= _BATCH:
                acc.add(batch)
                batch = []
        acc.add(batch)
        progress.advance(i + 1, len(files))
    out = acc.result()
    out.files = files
    return out


def _files(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """The CityGML files named (see pack.source_files); DataError when a name matches none."""
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    out: list[Path] = []
    for p in items:
        found = source_files(Path(p), "citygml")
        if not found:
            raise DataError(f"{p}: no CityGML file (*.gml, *.xml, *.gml.gz) there")
        out += [f for f in found if f not in out]
    return out


def _open(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else path.open("rb")


def _read_file(path: Path, crs: str, problems: list[str]) -> Iterator[_Raw]:
    """The buildings of one file, in document order; problems appended as they are met."""
    srs_ok = False
    try:
        with _open(path) as fh:
            parser = etree.iterparse(
                fh, events=("end",), tag=(*_MEMBERS, _ENVELOPE), huge_tree=True,
                remove_comments=True,
            )  # fmt: skip
            for _, el in parser:
                if el.tag == _ENVELOPE:
                    model = el.getparent().getparent() if el.getparent() is not None else None
                    if model is not None and model.getparent() is None and el.get("srsName"):
                        _check_srs(path, el.get("srsName"), crs)  # the CityModel's envelope
                        srs_ok = True
                    continue
                if not srs_ok:  # no CityModel envelope: the first srsName of the first member
                    _check_srs(path, _first_srs(el), crs)
                    srs_ok = True
                for child in el:
                    if child.tag in _BUILDINGS:
                        gid = child.get(GML_ID)
                        try:
                            if not gid:
                                raise _Bad(f"has no gml:id (line {child.sourceline})")
                            yield _parse_building(child, gid, path)
                        except _Bad as exc:
                            problems.append(f"{path}: building {gid or '?'}: {exc}")
                el.clear(keep_tail=True)
                while el.getprevious() is not None:
                    del el.getparent()[0]
    except etree.XMLSyntaxError as exc:
        line = exc.lineno if exc.lineno is not None else "?"
        msg = re.sub(r"(, line \d+)?, column \d+$", "", exc.msg or str(exc))
        problems.append(f"{path}: XML error at line {line}: {msg}; buildings after it are missing")
    except (EOFError, gzip.BadGzipFile) as exc:
        problems.append(f"{path}: cannot decompress: {exc}; buildings after it are missing")
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None


def _first_srs(member: etree._Element) -> str | None:
    for el in member.iter():
        srs = el.get("srsName") if isinstance(el.tag, str) else None
        if srs:
            return srs
    return None


def _check_srs(path: Path, srs: str | None, crs: str) -> None:
    if not srs:
        raise DataError(f"{path}: names no CRS (no srsName on its envelope); expected {crs}")
    if not srs_accepted(srs, crs):
        raise DataError(
            f"{path}: srsName '{srs}' is not {crs} (ETRS89 / UTM zone 32N); "
            "expected e.g. urn:adv:crs:ETRS89_UTM32*DE_DHHN2016_NH*GCG2016 or EPSG:25832"
        )


def _parse_building(b: etree._Element, gid: str, file: Path) -> _Raw:
    """One bldg:Building with its parts: merged properties and its LoD2 polygons."""
    props = _merge(_props(b), [_props(p) for p in b.iter(*_PARTS)])
    polygons = _lod2_polygons(b)
    if not polygons:
        raise _Bad("no LoD2 geometry (no polygon in lod2Solid, lod2MultiSurface or its surfaces)")
    texts: list[str] = []
    ring_count, kinds, pids = [], [], []
    for poly, kind in polygons.items():
        pid = poly.get(GML_ID) or f"at line {poly.sourceline}"
        rings = _ring_texts(poly, pid)
        texts += rings
        ring_count.append(len(rings))
        kinds.append(OTHER if kind is None else kind)
        pids.append(pid)
    tokens = [t.split() for t in texts]
    try:
        values = np.array([v for t in tokens for v in t], dtype=np.float64)
    except ValueError:
        i, bad = next((i, v) for i, t in enumerate(tokens) for v in t if not _is_float(v))
        owner = pids[int(np.searchsorted(np.cumsum(ring_count), i, side="right"))]
        raise _Bad(f"polygon {owner}: coordinate '{bad}' is not a number") from None
    counts = np.array([len(t) for t in tokens])
    if (counts % 3).any() or (counts < 9).any():
        i = int(np.flatnonzero((counts % 3 > 0) | (counts < 9))[0])
        owner = pids[int(np.searchsorted(np.cumsum(ring_count), i, side="right"))]
        if counts[i] % 3:
            raise _Bad(f"polygon {owner}: {counts[i]} coordinate values, not x y z triples")
        raise _Bad(f"polygon {owner} has {counts[i] // 3} points; expected at least 3")
    if not np.isfinite(values).all():
        raise _Bad("a coordinate is not a finite number")
    return _Raw(
        gid, props, values.reshape(-1, 3), counts // 3, np.array(ring_count),
        np.array(kinds, dtype=np.uint8), pids, file,
    )  # fmt: skip


def _lod2_polygons(b: etree._Element) -> dict[etree._Element, int | None]:
    """The building's LoD2 polygons, each once, in document order, with their kinds (None: other).

    A polygon counts when it lies inside LoD2 geometry (bldg:lod2Solid, lod2MultiSurface,
    lod2Geometry of the building, its parts or its surfaces) or an LoD2 xlink:href names it; its
    kind is that of its own boundary surface, else that of a surface whose href names it.
    """
    kinds: dict[etree._Element, int | None] = {}
    hrefs: list[tuple[str, int | None]] = []
    for g in b.iter(*_LOD2):
        kind = _KIND_OF.get(g.getparent().tag)
        if g.get(XLINK_HREF) is not None:
            hrefs.append((g.get(XLINK_HREF), kind))
        for el in g.iter(*_POLYGONS, *_HREF_HOLDERS):
            if el.tag in _POLYGONS:
                if kinds.get(el) is None:
                    kinds[el] = kind
            elif el.get(XLINK_HREF) is not None:
                hrefs.append((el.get(XLINK_HREF), kind))
    if not hrefs:
        return kinds
    ids = {gid: p for p in kinds if (gid := p.get(GML_ID))}
    every: dict[str, etree._Element] | None = None  # all gml:ids, only when an href needs them
    for href, kind in hrefs:
        key = href[1:] if href.startswith("#") else None
        target = ids.get(key) if key else None
        if target is None and key:
            if every is None:
                every = {gid: e for e in b.iter() if (gid := e.get(GML_ID))}
            target = every.get(key)
        if target is None:
            raise _Bad(f"xlink:href '{href}' names no polygon of this building")
        polys = [target] if target.tag in _POLYGONS else list(target.iter(*_POLYGONS))
        if not polys:
            raise _Bad(f"xlink:href '{href}' names a {etree.QName(target).localname}, "
                       "which holds no polygon")  # fmt: skip
        for p in polys:
            if p not in kinds:
                kinds[p] = kind if kind is not None else _own_kind(p, b)
            elif kinds[p] is None:
                kinds[p] = kind
    return kinds


def _own_kind(el: etree._Element, building: etree._Element) -> int | None:
    """The kind of the boundary surface an element lies in (None: none)."""
    for a in el.iterancestors():
        if a is building:
            return None
        if a.tag in _KIND_OF:
            return _KIND_OF[a.tag]
    return None


def _ring_texts(poly: etree._Element, pid: str) -> list[str]:
    """The coordinate texts of a polygon's rings (exterior first) as "x y z x y z ..."."""
    exterior, interiors = None, []
    for child in poly:
        if child.tag in _EXTERIOR:
            exterior = child
        elif child.tag in _INTERIOR:
            interiors.append(child)
    if exterior is None:
        raise _Bad(f"polygon {pid} has no exterior ring")
    out = []
    for r in (exterior, *interiors):
        ring = r[0] if len(r) else None
        if ring is None:
            raise _Bad(f"polygon {pid}: a ring without coordinates")
        pos = ring.find(_POSLIST)
        if pos is not None:
            dim, text = pos.get("srsDimension") or pos.get("dimension"), pos.text or ""
        elif items := ring.findall(_POS):
            dim, text = items[0].get("srsDimension"), " ".join(p.text or "" for p in items)
        elif (coords := ring.find(_COORDS)) is not None:
            dim, text = None, (coords.text or "").replace(",", " ")
        else:
            raise _Bad(f"polygon {pid}: a ring without gml:posList, gml:pos or gml:coordinates")
        dim = dim or _inherited_dim(ring)
        if dim not in (None, "3"):
            raise _Bad(f"polygon {pid}: coordinates with srsDimension {dim}; expected 3 (x y z)")
        out.append(text)
    return out


def _props(el: etree._Element) -> _Props:
    """The direct properties of a Building or BuildingPart (not those of its parts)."""
    p = _Props()
    for child in el:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        ns, _, name = tag[1:].partition("}")
        if ns in _BLDG:
            text = (child.text or "").strip()
            if name == "function" and not p.function:
                p.function = text
            elif name == "roofType":
                p.roof_type = text
            elif name == "measuredHeight":
                p.measured_height = _number(text, "bldg:measuredHeight")
            elif name == "storeysAboveGround":
                p.storeys = _number(text, "bldg:storeysAboveGround")
        elif ns in _GEN and name.endswith("Attribute") and child.get("name"):
            value = next((v.text for v in child if v.tag == f"{{{ns}}}value"), None)
            p.attributes[child.get("name")] = _attribute(name, (value or "").strip())
    return p


def _number(text: str, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise _Bad(f"{what} '{text}' is not a number") from None
    if not math.isfinite(v):
        raise _Bad(f"{what} '{text}' is not a finite number")
    return v


def _attribute(kind: str, text: str) -> Any:
    """A generic attribute's value: int / double as numbers (when they are), the rest as text."""
    try:
        if kind == "intAttribute":
            return int(text)
        if kind == "doubleAttribute":
            v = float(text)
            return v if math.isfinite(v) else text
    except ValueError:
        pass
    return text


def _merge(own: _Props, parts: list[_Props]) -> _Props:
    """A building's own properties; where it gives none, its tallest part's (first on ties).
    Attributes: its own, then each part's not given yet."""
    if not parts:
        return own
    tallest = max(parts, key=lambda p: -math.inf if math.isnan(p.measured_height)
                  else p.measured_height)  # fmt: skip
    out = _Props(
        function=own.function or tallest.function
        or next((p.function for p in parts if p.function), ""),
        roof_type=own.roof_type or tallest.roof_type,
        measured_height=own.measured_height if not math.isnan(own.measured_height)
        else tallest.measured_height,
        storeys=own.storeys if not math.isnan(own.storeys) else tallest.storeys,
        attributes=dict(own.attributes),
    )  # fmt: skip
    for p in parts:
        for k, v in p.attributes.items():
            out.attributes.setdefault(k, v)
    return out


def _inherited_dim(el: etree._Element) -> str | None:
    for a in el.iterancestors():
        d = a.get("srsDimension")
        if d:
            return d
    return None


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# --- triangulation ------------------------------------------------------------------------------


def triangulate(
    polygons: Sequence[Sequence[np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Triangles of planar 3D polygons, each given as rings (exterior first, then holes; (n, 3)
    points, not closed, no point repeated), keeping each polygon's area.

    Returns (xyz, tris, owner, area): all ring points in order, triangles into them (wound as the
    exterior ring), the polygon of each triangle, and each polygon's Newell area (exterior minus
    holes). A polygon of zero area gets no triangles.
    """
    rings = [np.asarray(r, dtype=np.float64).reshape(-1, 3) for poly in polygons for r in poly]
    if not rings:
        empty = np.zeros((0, 3), dtype=np.int64)
        return np.zeros((0, 3)), empty, np.zeros(0, dtype=np.int64), np.zeros(len(polygons))
    xyz = np.concatenate(rings)
    ring_len = np.array([len(r) for r in rings])
    n_rings = np.array([len(poly) for poly in polygons])
    tris, owner, area = triangulate_flat(xyz, ring_len, n_rings)
    return xyz, tris, owner, area


def triangulate_flat(
    xyz: np.ndarray, ring_len: np.ndarray, n_rings: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """triangulate() on polygons given flat: ring points in order, points per ring (each >= 3),
    rings per polygon (each >= 1, exterior first); returns (tris, owner, area)."""
    ring_poly = np.repeat(np.arange(len(n_rings)), n_rings)
    ring_start = np.cumsum(ring_len) - ring_len
    ext = np.zeros(len(ring_len), dtype=bool)
    ext[np.cumsum(n_rings) - n_rings] = True
    vert_poly = np.repeat(ring_poly, ring_len)
    origin = xyz[ring_start[ext]]  # each polygon's first point: small numbers for cross products
    local = xyz - origin[vert_poly]
    nxt = np.arange(len(xyz)) + 1
    nxt[ring_start + ring_len - 1] = ring_start
    newell = np.add.reduceat(np.cross(local, local[nxt]), ring_start, axis=0)
    ring_area = 0.5 * np.linalg.norm(newell, axis=1)
    area = np.bincount(ring_poly, np.where(ext, ring_area, -ring_area), minlength=len(n_rings))
    normal = newell[ext]
    length = np.linalg.norm(normal, axis=1)
    good = length > 0
    normal[good] /= length[good, None]
    normal[~good] = (0.0, 0.0, 1.0)
    # a right-handed (u, v, n) frame per polygon: the exterior ring runs counter-clockwise in (u, v)
    axis = np.eye(3)[np.argmin(np.abs(normal), axis=1)]
    u = np.cross(axis, normal)
    u /= np.linalg.norm(u, axis=1)[:, None]
    v = np.cross(normal, u)
    xu = np.einsum("ij,ij->i", local, u[vert_poly])
    xv = np.einsum("ij,ij->i", local, v[vert_poly])
    xy = np.column_stack([xu, xv]) + 0.0  # no negative zeros: points are matched bit for bit
    tris, owner = _cdt(xy, ring_poly, ring_start, ring_len, n_rings, good)
    if len(tris):  # wind every triangle as its polygon's exterior ring (counter-clockwise in 2D)
        cw = _signed_area2d(xy[tris]) < 0
        tris[cw] = tris[cw][:, ::-1]
    return tris, owner, np.where(good, area, 0.0)


def _cdt(
    xy: np.ndarray,
    ring_poly: np.ndarray,
    ring_start: np.ndarray,
    ring_len: np.ndarray,
    n_rings: np.ndarray,
    good: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Triangles (into xy) and their polygons: GEOS constrained Delaunay for valid polygons,
    earcut for those GEOS refuses or whose triangles do not map back onto the polygon's points."""
    n_poly = len(n_rings)
    first = np.cumsum(n_rings) - n_rings
    polys = _polygons2d(xy, ring_len, n_rings, np.ones(n_poly, dtype=bool))
    todo = np.flatnonzero(good)
    valid = todo[shapely.is_valid(polys[todo])]
    fallback = set(todo.tolist()) - set(valid.tolist())
    try:
        collections = shapely.constrained_delaunay_triangles(polys[valid])
    except shapely.errors.GEOSException:  # one polygon spoils the batch: one by one
        collections = np.empty(len(valid), dtype=object)
        for j, i in enumerate(valid):
            try:
                collections[j] = shapely.constrained_delaunay_triangles(polys[i])
            except shapely.errors.GEOSException:
                collections[j] = shapely.GeometryCollection()
    parts, which = shapely.get_parts(collections, return_index=True)
    owner = valid[which]
    corners = shapely.get_coordinates(parts).reshape(-1, 4, 2)[:, :3]  # closed triangle rings
    vert_poly = np.repeat(ring_poly, ring_len)
    index = _lookup(
        np.column_stack([vert_poly, xy]),
        np.column_stack([np.repeat(owner, 3), corners.reshape(-1, 2)]),
    ).reshape(-1, 3)
    lost = (index < 0).any(axis=1)
    tri_area = np.bincount(owner, np.abs(_signed_area2d(corners)), minlength=n_poly)
    poly_area = np.zeros(n_poly)
    poly_area[valid] = shapely.area(polys[valid])
    short = np.flatnonzero(np.abs(tri_area - poly_area) > 1e-9 + 1e-6 * poly_area)
    fallback |= set(owner[lost].tolist()) | (set(short.tolist()) & set(valid.tolist()))
    keep = ~np.isin(owner, list(fallback))
    tris, owner = [index[keep]], [owner[keep]]
    for i in sorted(fallback):
        start = ring_start[first[i]]
        stop = ring_start[first[i] + n_rings[i] - 1] + ring_len[first[i] + n_rings[i] - 1]
        ends = np.cumsum(ring_len[first[i] : first[i] + n_rings[i]]).astype(np.uint32)
        t = mapbox_earcut.triangulate_float64(xy[start:stop], ends).reshape(-1, 3) + start
        tris.append(t.astype(np.int64))
        owner.append(np.full(len(t), i, dtype=np.int64))
    return np.concatenate(tris).astype(np.int64), np.concatenate(owner).astype(np.int64)


def _signed_area2d(tri: np.ndarray) -> np.ndarray:
    """Signed areas of (n, 3, 2) triangles: positive when counter-clockwise."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1])
                  - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))  # fmt: skip


def _lookup(keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """For each query row, the first row of `keys` equal to it (bit for bit), or -1."""
    if len(queries) == 0:
        return np.zeros(0, dtype=np.int64)
    rows = (
        np.ascontiguousarray(np.concatenate([keys, queries]))
        .view(np.dtype((np.void, 8 * keys.shape[1])))
        .ravel()
    )
    _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    found = first[inverse[len(keys) :]]
    return np.where(found < len(keys), found, -1)


# --- assembling ---------------------------------------------------------------------------------


class _Accumulator:
    """Buildings triangulated batch by batch, kept when inside the extent, joined at the end."""

    def __init__(self, extent: tuple[float, float, float, float] | None) -> None:
        self.box = shapely.box(*extent) if extent is not None else None
        self.rows: list[dict[str, Any]] = []
        self.meshes: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self.areas: list[np.ndarray] = []
        self.n = 0
        self.n_xyz = 0
        self.problems: list[str] = []

    def add(self, batch: list[_Raw]) -> None:
        """Clean, triangulate and keep a batch of parsed buildings."""
        g = _Flat(batch)
        bad = g.bad_rings()
        if len(bad):  # rings with fewer than 3 distinct points: their buildings are left out
            skip = set()
            for r in bad:
                i, poly = g.ring_b[r], g.ring_poly[r]
                if i not in skip:
                    n = max(int(g.distinct[r]), 1)
                    self.problems.append(
                        f"{batch[i].file}: building {batch[i].id}: polygon {g.pids[poly]} has "
                        f"{n} distinct point{'s' if n > 1 else ''}; expected at least 3"
                    )
                    skip.add(i)
            batch = [r for i, r in enumerate(batch) if i not in skip]
            if not batch:
                return
            g = _Flat(batch)
        xyz, ring_len = g.cleaned()
        tris, owner, area = triangulate_flat(xyz, ring_len, g.n_rings)
        n = len(batch)
        vert_poly = np.repeat(g.ring_poly, ring_len)
        vert_b = g.poly_b[vert_poly]
        ground = g.kinds == GROUND
        has_ground = np.bincount(g.poly_b[ground], minlength=n) > 0
        z = xyz[:, 2]
        top = np.full(n, -np.inf)
        np.maximum.at(top, vert_b, z)
        base = np.full(n, np.inf)
        use_z = ground[vert_poly] | ~has_ground[vert_b]
        np.minimum.at(base, vert_b, np.where(use_z, z, np.inf))
        areas = np.zeros((n, N_KINDS))
        np.add.at(areas, (g.poly_b, g.kinds), area)
        foot = _footprints(xyz, ring_len, g.n_rings, g.poly_b, ground | ~has_ground[g.poly_b], n)
        keep = ~shapely.is_empty(foot)
        for i in np.flatnonzero(~keep):
            self.problems.append(
                f"{batch[i].file}: building {batch[i].id}: no footprint (its surfaces cover no "
                "area seen from above)"
            )
        if self.box is not None:
            keep &= shapely.intersects(foot, self.box)
        rows = np.flatnonzero(keep)
        if not len(rows):
            return
        new_row = np.full(n, -1)
        new_row[rows] = self.n + np.arange(len(rows))
        tri_b = g.poly_b[owner]
        tkeep = keep[tri_b]
        vkeep = keep[vert_b]
        new_vert = np.cumsum(vkeep) - 1 + self.n_xyz
        self.meshes.append((
            xyz[vkeep], new_vert[tris[tkeep]], new_row[tri_b[tkeep]], g.kinds[owner[tkeep]],
        ))  # fmt: skip
        for i in rows:
            r = batch[i]
            self.rows.append({
                "id": r.id, "function": r.props.function, "use": function_use(r.props.function),
                "roof_type": r.props.roof_type, "measured_height": r.props.measured_height,
                "storeys": r.props.storeys, "footprint": foot[i], "base": base[i], "top": top[i],
                "source": r.file.name,
                "attributes": json.dumps(r.props.attributes, ensure_ascii=False, sort_keys=True),
            })  # fmt: skip
        self.areas.append(areas[rows])
        self.n += len(rows)
        self.n_xyz += int(vkeep.sum())

    def result(self) -> LoD2Buildings:
        """All kept buildings as one LoD2Buildings."""

        def col(name: str, dtype: Any) -> np.ndarray:
            out = np.empty(len(self.rows), dtype=dtype)
            out[:] = [r[name] for r in self.rows]
            return out

        m = self.meshes
        return LoD2Buildings(
            id=col("id", object), function=col("function", object), use=col("use", object),
            roof_type=col("roof_type", object), measured_height=col("measured_height", float),
            storeys=col("storeys", float), attributes=col("attributes", object),
            footprint=col("footprint", object), base=col("base", float), top=col("top", float),
            source=col("source", object),
            areas=np.concatenate(self.areas) if self.areas else np.zeros((0, N_KINDS)),
            xyz=np.concatenate([x[0] for x in m]) if m else np.zeros((0, 3)),
            tris=np.concatenate([x[1] for x in m]) if m else np.zeros((0, 3), dtype=np.int64),
            building=np.concatenate([x[2] for x in m]) if m else np.zeros(0, dtype=np.int64),
            kind=np.concatenate([x[3] for x in m]) if m else np.zeros(0, dtype=np.uint8),
            problems=self.problems,
        )  # fmt: skip


class _Flat:
    """A batch of parsed buildings as flat arrays (points, rings, polygons, buildings)."""

    def __init__(self, batch: list[_Raw]) -> None:
        self.xyz = np.concatenate([r.xyz for r in batch])
        self.ring_len = np.concatenate([r.ring_len for r in batch])
        self.n_rings = np.concatenate([r.poly_rings for r in batch])
        self.kinds = np.concatenate([r.kinds for r in batch])
        self.pids = [p for r in batch for p in r.pids]
        self.poly_b = np.repeat(np.arange(len(batch)), [len(r.kinds) for r in batch])
        self.ring_poly = np.repeat(np.arange(len(self.n_rings)), self.n_rings)
        self.ring_b = self.poly_b[self.ring_poly]
        start = np.cumsum(self.ring_len) - self.ring_len
        prev = np.arange(len(self.xyz)) - 1
        prev[start] = start + self.ring_len - 1
        # a point equal to the one before it (in its ring, cyclically) is dropped: repeated points
        # and the closing point
        self.keep = np.any(self.xyz != self.xyz[prev], axis=1)
        self.distinct = np.add.reduceat(self.keep.astype(np.int64), start)

    def bad_rings(self) -> np.ndarray:
        """Rings with fewer than 3 distinct points (after dropping repeats, 3 points are 3 distinct
        points)."""
        return np.flatnonzero(self.distinct < 3)

    def cleaned(self) -> tuple[np.ndarray, np.ndarray]:
        """Points without repeats, and points per ring."""
        return self.xyz[self.keep], self.distinct


def _footprints(
    xyz: np.ndarray,
    ring_len: np.ndarray,
    n_rings: np.ndarray,
    poly_b: np.ndarray,
    use: np.ndarray,
    n: int,
) -> np.ndarray:
    """Per building the union of the `use` polygons seen from above (its ground polygons, or all
    where it has none) as Polygon or MultiPolygon; empty where they cover no area."""
    polys = _polygons2d(xyz[:, :2], ring_len, n_rings, use)
    polys = shapely.make_valid(polys)
    b = poly_b[use]
    count = np.bincount(b, minlength=n)
    out = np.array([shapely.Polygon()] * n, dtype=object)
    single = count[b] == 1
    out[b[single]] = polys[single]
    order = np.argsort(b, kind="stable")
    bounds = np.searchsorted(b[order], np.arange(n + 1))
    for i in np.flatnonzero(count > 1):
        out[i] = shapely.union_all(polys[order[bounds[i] : bounds[i + 1]]])
    types = shapely.get_type_id(out)
    for i in np.flatnonzero((types != 3) & (types != 6)):
        out[i] = _polygonal(out[i])
    return out


def _polygons2d(
    xy: np.ndarray, ring_len: np.ndarray, n_rings: np.ndarray, which: np.ndarray
) -> np.ndarray:
    """Shapely polygons of the chosen polygons (mask `which`) from flat 2D rings."""
    ring_poly = np.repeat(np.arange(len(n_rings)), n_rings)
    chosen = which[ring_poly]
    vert = np.repeat(chosen, ring_len)
    rings = shapely.linearrings(
        xy[vert], indices=np.repeat(np.arange(int(chosen.sum())), ring_len[chosen])
    )
    k = n_rings[which]
    first = np.cumsum(k) - k
    out = np.empty(len(k), dtype=object)
    simple = k == 1
    out[simple] = shapely.polygons(rings[first[simple]])
    for i in np.flatnonzero(~simple):
        out[i] = shapely.Polygon(rings[first[i]], rings[first[i] + 1 : first[i] + k[i]])
    return out


def _polygonal(g: shapely.Geometry) -> shapely.Geometry:
    """The polygons of a geometry as a Polygon or MultiPolygon (empty Polygon when it has none)."""
    if g.geom_type in ("Polygon", "MultiPolygon"):
        return g
    parts = [p for p in shapely.get_parts(g) if p.geom_type in ("Polygon", "MultiPolygon")]
    parts = [q for p in parts for q in shapely.get_parts(p)]
    if not parts:
        return shapely.Polygon()
    return parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)
