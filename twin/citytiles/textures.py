"""Procedural textures of the textured city: facade and roof atlases by building use, and orthophoto-like
ground images drawn from land cover, streets and footprints.

Everything is deterministic: the same seed gives the same pixels. Ground noise is fixed in world metres, so
neighbouring ground tiles join without seams, every level of detail shows the same pattern, and a tile
drawn twice looks the same.
"""

from __future__ import annotations

import functools
import hashlib
import io
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import rasterio
import shapely
from PIL import Image
from rasterio.features import rasterize
from rasterio.transform import Affine

from twin.city.boulevards import PRODUCT as BOULEVARDS
from twin.city.boulevards import read_boulevard_product, street_cores
from twin.city.buildings import read_buildings
from twin.errors import DataError

# --- building uses --------------------------------------------------------------------------------

USES = ("residential", "commercial", "industrial", "port")
_USE_WORDS = (  # first match wins; anything else counts as residential
    ("port", ("port", "harbour", "harbor", "hafen", "warehouse", "logistic", "lager", "dock")),
    ("industrial", ("industr", "factory", "fabrik", "gewerbe", "manufactur", "plant", "werk")),
    (
        "commercial",
        ("commerc", "retail", "shop", "office", "büro", "buero", "handel", "mixed", "public",
         "civic", "school", "church", "hotel", "hospital", "station", "kirche", "service"),
    ),
)  # fmt: skip

STOREY_M = 3.0  # storey height the facade texture draws; walls fit a whole number of storeys
BAY_M = 3.5  # window bay width; walls fit a whole number of bays
BAND_STOREYS = 4  # storeys in one atlas band: the ground floor and three upper storeys
ATLAS_BAYS = 8  # bays across the facade atlas (its width wraps, so walls repeat it sideways)


def use_index(uses: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Index into USES for each free-text building use (keywords in English or German)."""
    values = np.asarray(uses, dtype=object).astype(str)
    uniq, inverse = np.unique(values, return_inverse=True)
    idx = np.zeros(len(uniq), dtype=np.int64)
    for k, u in enumerate(uniq):
        low = u.lower()
        for name, words in _USE_WORDS:
            if any(w in low for w in words):
                idx[k] = USES.index(name)
                break
    return idx[inverse.reshape(-1)]


def building_tints(
    ids: Sequence[Any] | np.ndarray, use_idx: np.ndarray, seed: int = 0
) -> np.ndarray:
    """(N, 4) uint8 vertex colours tinting each building's textures: plaster, brick and stone shades."""
    palettes = np.array(
        [  # residential: white and cream plaster, ochre, salmon, brick, grey-blue
            [[255, 252, 245], [250, 236, 200], [240, 214, 160], [240, 190, 165], [205, 130, 105],
             [215, 222, 230]],
            # commercial and mixed: white, light grey, sandstone, pale yellow, brick, dark stone
            [[250, 250, 250], [222, 224, 228], [236, 220, 188], [250, 240, 200], [200, 125, 100],
             [175, 170, 165]],
            # industrial: light and mid grey, beige, blue-grey, red-brown brick
            [[235, 235, 232], [205, 208, 212], [230, 220, 196], [190, 205, 220], [190, 120, 100],
             [215, 215, 205]],
            # port halls: sheet-metal greys, blue, green, rust
            [[230, 234, 238], [180, 200, 225], [170, 205, 180], [215, 160, 130], [205, 205, 205],
             [240, 240, 235]],
        ],
        dtype=np.float64,
    )  # fmt: skip
    h = building_hashes(ids, seed)
    pick = (h % np.uint64(palettes.shape[1])).astype(np.int64)
    shade = 0.9 + 0.1 * ((h >> np.uint64(16)) % np.uint64(1000)).astype(np.float64) / 1000.0
    rgb = palettes[np.asarray(use_idx, dtype=np.int64), pick] * shade[:, None]
    out = np.full((len(rgb), 4), 255, dtype=np.uint8)
    out[:, :3] = np.clip(rgb, 0, 255).astype(np.uint8)
    return out


# --- deterministic noise --------------------------------------------------------------------------

_M1, _M2, _M3 = (
    np.uint64(0x9E3779B97F4A7C15),
    np.uint64(0xBF58476D1CE4E5B9),
    np.uint64(0x94D049BB133111EB),
)


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic is intended)."""
    h = (h ^ (h >> np.uint64(30))) * _M2
    h = (h ^ (h >> np.uint64(27))) * _M3
    return h ^ (h >> np.uint64(31))


def _hash_ints(*parts: np.ndarray, seed: int = 0) -> np.ndarray:
    """uint64 hash of integer arrays (broadcast), seeded."""
    with np.errstate(over="ignore"):
        h = np.full(np.broadcast(*parts).shape, np.uint64(seed) * _M1 + np.uint64(1), np.uint64)
        for p in parts:
            h = _mix(h ^ (np.asarray(p).astype(np.int64).view(np.uint64) * _M1))
    return h


def building_hashes(values: Sequence[Any] | np.ndarray, seed: int) -> np.ndarray:
    """Stable uint64 hash of each id, for per-building variation (Python's hash() is salted)."""
    out = np.empty(len(values), dtype=np.uint64)
    for i, v in enumerate(values):  # one digest per building id; ids are short
        out[i] = int.from_bytes(hashlib.blake2b(f"{seed}:{v}".encode(), digest_size=8).digest())
    return out


def _unit(h: np.ndarray) -> np.ndarray:
    """Hash to floats in [0, 1)."""
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def value_noise(x: np.ndarray, y: np.ndarray, cell: float, seed: int) -> np.ndarray:
    """Smooth value noise in [0, 1) on a lattice of `cell` metres, keyed on world coordinates."""
    gx, gy = np.asarray(x) / cell, np.asarray(y) / cell
    ix, iy = np.floor(gx), np.floor(gy)
    fx, fy = gx - ix, gy - iy
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    ix, iy = ix.astype(np.int64), iy.astype(np.int64)
    a = _unit(_hash_ints(ix, iy, seed=seed))
    b = _unit(_hash_ints(ix + 1, iy, seed=seed))
    c = _unit(_hash_ints(ix, iy + 1, seed=seed))
    d = _unit(_hash_ints(ix + 1, iy + 1, seed=seed))
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def fbm(x: np.ndarray, y: np.ndarray, cells: Sequence[float], seed: int) -> np.ndarray:
    """Sum of value-noise octaves (largest cell first, halving weights), centred on 0, about -0.5..0.5."""
    total, weight, norm = 0.0, 1.0, 0.0
    for k, c in enumerate(cells):
        total = total + weight * (value_noise(x, y, c, seed + 7919 * k) - 0.5)
        norm += weight
        weight *= 0.5
    return total / norm


# --- atlases --------------------------------------------------------------------------------------


def png_bytes(image: np.ndarray) -> bytes:
    """PNG encoding of an (H, W, 3) uint8 image; lossless, as a palette PNG when it has at most 256
    colours (the atlases are quantised to that, which makes them a third of the size)."""
    buf = io.BytesIO()
    flat = np.ascontiguousarray(image[..., :3]).reshape(-1, 3)
    packed = (flat[:, 0].astype(np.uint32) << 16) | (flat[:, 1].astype(np.uint32) << 8) | flat[:, 2]
    colours, index = np.unique(packed, return_inverse=True)
    if len(colours) <= 256 and image.shape[-1] == 3:
        pal = np.column_stack([colours >> 16, (colours >> 8) & 255, colours & 255]).astype(np.uint8)
        img = Image.fromarray(index.reshape(image.shape[:2]).astype(np.uint8), mode="P")
        img.putpalette(pal.reshape(-1).tolist())
    else:
        img = Image.fromarray(image)
    img.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def quantize(image: np.ndarray, colours: int = 64) -> np.ndarray:
    """The image reduced to at most `colours` colours (median cut, no dithering; deterministic)."""
    q = Image.fromarray(image).quantize(
        colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
    )
    return np.asarray(q.convert("RGB"))


def jpeg_bytes(image: np.ndarray, quality: int = 85) -> bytes:
    """JPEG encoding of an (H, W, 3) uint8 image (baseline, 4:2:0)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def downsample(image: np.ndarray, factor: int) -> np.ndarray:
    """Box-filter an image down by an integer factor (both sides must divide)."""
    if factor <= 1:
        return image
    acc = np.zeros(
        (image.shape[0] // factor, image.shape[1] // factor, *image.shape[2:]), np.uint32
    )
    for i in range(factor):  # factor**2 strided adds: no float copy of the whole image
        for j in range(factor):
            acc += image[i::factor, j::factor]
    return ((acc + factor * factor // 2) // (factor * factor)).astype(np.uint8)


@dataclass(frozen=True)
class FacadeAtlas:
    """Facade texture atlas: one full-width band per use; the u axis wraps (REPEAT), v is clamped.

    A band holds BAND_STOREYS storeys: the ground floor at its bottom and upper storeys above. Texture
    coordinates follow glTF (v = 0 at the image top).
    """

    image: np.ndarray
    band_rows: int
    pad_rows: int

    def v_of(self, use_idx: np.ndarray, storey_pos: np.ndarray) -> np.ndarray:
        """v for a position measured in storeys from the bottom of a use's band (0..BAND_STOREYS)."""
        h = self.image.shape[0]
        content = self.band_rows - 2 * self.pad_rows
        bottom = (np.asarray(use_idx) + 1) * self.band_rows - self.pad_rows
        return (bottom - np.asarray(storey_pos) / BAND_STOREYS * content) / h


@dataclass(frozen=True)
class RoofAtlas:
    """Roof texture atlas: a 2 x 2 grid of cells, one roof per use, each stretched over one roof."""

    image: np.ndarray
    pad_px: int

    def uv_of(self, use_idx: np.ndarray, s: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Texture coordinates for local roof coordinates s, t in 0..1 (s along the long side)."""
        size = self.image.shape[0]
        cell = size // 2
        use_idx = np.asarray(use_idx)
        c0 = (use_idx % 2) * cell + self.pad_px
        r0 = (use_idx // 2) * cell + self.pad_px
        span = cell - 2 * self.pad_px
        return np.column_stack([(c0 + s * span) / size, (r0 + t * span) / size])


def facade_atlas(seed: int = 0, width: int = 512, band_rows: int = 128) -> FacadeAtlas:
    """Draw the facade atlas: window grids for residential, commercial, industrial and port buildings."""
    if width & (width - 1) or band_rows & (band_rows - 1):
        raise ValueError("facade atlas sizes must be powers of two")
    pad = max(2, band_rows // 32)
    content = band_rows - 2 * pad
    img = np.zeros((band_rows * len(USES), width, 3), dtype=np.float64)
    cols = (np.arange(width) + 0.5) / width * ATLAS_BAYS * BAY_M  # metres along the wall
    for k, use in enumerate(USES):
        rows = np.arange(content)
        z = (content - rows - 0.5) / content * BAND_STOREYS * STOREY_M  # metres above ground
        zz, uu = np.meshgrid(z, cols, indexing="ij")
        band = _draw_facade(use, uu, zz, seed + 101 * k)
        block = np.concatenate([band[:1].repeat(pad, 0), band, band[-1:].repeat(pad, 0)])
        img[k * band_rows : (k + 1) * band_rows] = block
    return FacadeAtlas(quantize(np.clip(img, 0, 255).astype(np.uint8)), band_rows, pad)


def _draw_facade(use: str, u: np.ndarray, z: np.ndarray, seed: int) -> np.ndarray:
    """RGB (0..255 floats) of one band; u, z in metres (along the wall, above ground)."""
    bay = np.floor(u / BAY_M).astype(np.int64)
    storey = np.floor(z / STOREY_M).astype(np.int64)
    bu = u - bay * BAY_M  # position inside the bay
    sz = z - storey * STOREY_M  # position inside the storey
    rnd = _unit(_hash_ints(bay, storey, seed=seed))  # one random number per window
    grain = fbm(u, z, (0.8, 0.2, 0.05), seed)
    wall = np.array([228.0, 222.0, 210.0])
    glass = np.array([62.0, 78.0, 96.0])
    frame = np.array([240.0, 240.0, 236.0])
    img = wall * (1.0 + 0.10 * grain)[..., None]
    upper = storey >= 1
    if use in ("residential", "commercial"):
        w, h, sill = (1.3, 1.55, 0.85) if use == "residential" else (1.9, 1.8, 0.7)
        outer = np.abs(bu - BAY_M / 2) < w / 2 + 0.08
        outer &= (sz > sill - 0.08) & (sz < sill + h + 0.08) & upper
        inner = np.abs(bu - BAY_M / 2) < w / 2
        inner &= (sz > sill) & (sz < sill + h) & upper
        img[outer] = frame
        lit = rnd > 0.85
        reflect = (0.75 + 0.5 * (sz - sill) / h)[..., None]
        pane = np.where(lit[..., None], np.array([230.0, 205.0, 140.0]), glass * reflect)
        img[inner] = pane[inner]
        mullion = inner & (np.abs(bu - BAY_M / 2) < 0.04)
        img[mullion] = frame
        # a thin ledge between storeys
        ledge = (sz < 0.12) & upper
        img[ledge] = wall * 0.8
        ground = storey == 0
        if use == "residential":
            door = ground & (bay % 4 == 1) & (np.abs(bu - BAY_M / 2) < 0.6) & (sz < 2.3)
            win = ground & ~(bay % 4 == 1) & (np.abs(bu - BAY_M / 2) < 0.65)
            win &= (sz > 0.9) & (sz < 2.3)
            img[win] = glass * 0.9
            img[door] = np.array([92.0, 64.0, 44.0])
            plinth = ground & (sz < 0.5)
            img[plinth] = wall * 0.7
        else:
            shop = ground & (np.abs(bu - BAY_M / 2) < 1.55) & (sz > 0.25) & (sz < 2.5)
            img[shop] = np.array([70.0, 96.0, 112.0]) * (0.85 + 0.3 * sz[shop, None] / 2.5)
            sign = ground & (sz >= 2.55) & (sz < 2.9)
            hue = _unit(_hash_ints(bay // 2, seed=seed + 5))[..., None]
            sign_rgb = (
                np.array([180.0, 40.0, 40.0]) * (1 - hue) + np.array([40.0, 80.0, 170.0]) * hue
            )
            img[sign] = sign_rgb[sign]
    elif use == "industrial":
        ribs = 0.9 + 0.1 * np.cos(2 * np.pi * u / 0.35)
        img = np.array([200.0, 204.0, 206.0]) * (ribs * (1.0 + 0.06 * grain))[..., None]
        strip = (z > 4.2) & (z < 5.4) | (z > 9.0) & (z < 10.2)
        img[strip] = glass * 1.1
        gate = (storey == 0) & (bay % 3 == 1) & (np.abs(bu - BAY_M / 2) < 1.4) & (sz < 2.9)
        img[gate] = (
            np.array([150.0, 152.0, 150.0])
            * (0.92 + 0.08 * np.cos(2 * np.pi * z[gate] / 0.3))[:, None]
        )
        plinth = z < 0.6
        img[plinth] = np.array([150.0, 146.0, 140.0])
    else:  # port halls: horizontal trapezoidal sheeting, big gates, a strip of skylights
        ribs = 0.88 + 0.12 * np.cos(2 * np.pi * z / 0.5)
        img = np.array([196.0, 206.0, 214.0]) * (ribs * (1.0 + 0.05 * grain))[..., None]
        gate = (bay % 4 == 1) & (z < 5.0) & (np.abs(bu - BAY_M / 2) < 1.7)
        img[gate] = (
            np.array([210.0, 140.0, 50.0])
            * (0.9 + 0.1 * np.cos(2 * np.pi * z[gate] / 0.4))[:, None]
        )
        strip = (z > 9.6) & (z < 10.8) & (np.abs(bu - BAY_M / 2) < 1.5)
        img[strip] = glass * 1.15
        plinth = z < 0.8
        img[plinth] = np.array([140.0, 140.0, 136.0])
    return img


def roof_atlas(seed: int = 0, size: int = 256) -> RoofAtlas:
    """Draw the roof atlas: tiled pitched look, gravel with plant, ribbed metal, hall with skylights."""
    if size & (size - 1):
        raise ValueError("roof atlas size must be a power of two")
    cell = size // 2
    pad = max(2, cell // 32)
    img = np.zeros((size, size, 3), dtype=np.float64)
    span = cell - 2 * pad
    t, s = np.meshgrid(
        (np.arange(cell) - pad + 0.5) / span, (np.arange(cell) - pad + 0.5) / span, indexing="ij"
    )
    s, t = np.clip(s, 0, 1), np.clip(t, 0, 1)
    for k in range(len(USES)):
        r0, c0 = (k // 2) * cell, (k % 2) * cell
        img[r0 : r0 + cell, c0 : c0 + cell] = _draw_roof(USES[k], s, t, seed + 31 * k)
    return RoofAtlas(quantize(np.clip(img, 0, 255).astype(np.uint8)), pad)


def _draw_roof(use: str, s: np.ndarray, t: np.ndarray, seed: int) -> np.ndarray:
    """RGB (0..255 floats) of one roof cell; s runs along the roof's long side, t across, both 0..1."""
    grain = fbm(s * 40, t * 40, (4.0, 1.0, 0.25), seed)
    edge = np.minimum(np.minimum(s, 1 - s), np.minimum(t, 1 - t))
    if use == "residential":  # a gabled look from above: two lit halves, tile rows, a ridge
        base = np.array([170.0, 82.0, 58.0])
        light = np.where(t < 0.5, 1.0, 0.78)[..., None]
        rows = 0.9 + 0.1 * np.cos(2 * np.pi * t * 22)[..., None]
        img = base * light * rows * (1.0 + 0.12 * grain)[..., None]
        img[np.abs(t - 0.5) < 0.02] = np.array([110.0, 60.0, 45.0])
        img[edge < 0.025] = np.array([120.0, 70.0, 55.0])
        return img
    if use == "commercial":  # gravel, a parapet and roof-top plant
        img = np.array([150.0, 148.0, 144.0]) * (1.0 + 0.18 * grain)[..., None]
        rng = np.random.default_rng(seed)
        for _ in range(3):
            a, b = rng.uniform(0.2, 0.7, 2)
            box = (s > a) & (s < a + 0.12) & (t > b) & (t < b + 0.16)
            img[box] = np.array([196.0, 198.0, 200.0])
        img[edge < 0.04] = np.array([205.0, 200.0, 190.0])
        return img
    if use == "industrial":  # light ribbed metal with skylight bands
        ribs = 0.88 + 0.12 * np.cos(2 * np.pi * t * 30)
        img = np.array([185.0, 190.0, 192.0]) * (ribs * (1.0 + 0.05 * grain))[..., None]
        sky = (np.abs((s * 6) % 1 - 0.5) < 0.08) & (edge > 0.08)
        img[sky] = np.array([120.0, 150.0, 170.0])
        img[edge < 0.02] = np.array([140.0, 140.0, 140.0])
        return img
    ribs = 0.9 + 0.1 * np.cos(2 * np.pi * s * 40)  # port hall: blue-grey sheeting, skylight strips
    img = np.array([140.0, 160.0, 176.0]) * (ribs * (1.0 + 0.05 * grain))[..., None]
    sky = (np.abs((t * 4) % 1 - 0.5) < 0.06) & (edge > 0.05)
    img[sky] = np.array([200.0, 220.0, 230.0])
    img[edge < 0.02] = np.array([110.0, 110.0, 110.0])
    return img


# --- ground ("orthophoto") ------------------------------------------------------------------------

# Land-cover look, by words in the class name (first match wins): the colour of its sealed part and
# of its open part. A class is drawn as a mosaic of both in the share its `sealed` fraction says.
_WATER_LOOK = (58, 92, 118)
_PAVING_LOOK, _CONCRETE_LOOK = (150, 144, 134), (164, 162, 156)
_GRASS_LOOK, _FOREST_LOOK, _MEADOW_LOOK, _FARM_LOOK = (
    (100, 134, 66),
    (58, 88, 48),
    (118, 146, 76),
    (164, 154, 104),
)
_CLASS_LOOKS: tuple[tuple[tuple[str, ...], tuple[int, int, int], tuple[int, int, int]], ...] = (
    (
        ("water", "river", "rhein", "rhine", "basin", "lake", "canal", "wasser"),
        _WATER_LOOK,
        _WATER_LOOK,
    ),
    (("forest", "wood", "tree", "wald"), _PAVING_LOOK, _FOREST_LOOK),
    (("meadow", "floodplain", "wiese"), _PAVING_LOOK, _MEADOW_LOOK),
    (("farm", "agri", "crop", "field", "acker"), _PAVING_LOOK, _FARM_LOOK),
    (("rail", "track", "gleis"), (124, 112, 100), (124, 112, 100)),
    # the carriageways are painted from the street lines; the rest of a road cell is pavement
    (
        ("road", "street", "traffic", "parking", "verkehr", "straße", "strasse"),
        (158, 154, 146),
        _GRASS_LOOK,
    ),
    (("building", "gebäude", "roof"), (128, 124, 120), (128, 124, 120)),
    (("plaza", "square", "platz", "pedestrian"), (176, 168, 154), _GRASS_LOOK),
    (("industr", "commerc", "port", "harbour", "hafen", "gewerbe"), _CONCRETE_LOOK, _GRASS_LOOK),
    (("bare", "sand", "soil", "construction"), (176, 160, 128), (176, 160, 128)),
)
_DEFAULT_LOOK = (_PAVING_LOOK, _GRASS_LOOK)


def class_looks(
    classes: Sequence[dict[str, Any]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per land-cover code (256 entries): sealed colour, open colour, sealed fraction and a farmland
    flag (fields are drawn as parcels of crops), from the pack's class table (names, `sealed`)."""
    sealed_rgb = np.tile(np.array(_PAVING_LOOK, dtype=float), (256, 1))
    open_rgb = np.tile(np.array(_GRASS_LOOK, dtype=float), (256, 1))
    frac = np.full(256, 0.5)
    farm = np.zeros(256)
    for c in classes:
        name = str(c["name"]).lower()
        look = _DEFAULT_LOOK
        for words, sealed_c, open_c in _CLASS_LOOKS:
            if any(w in name for w in words):
                look = (sealed_c, open_c)
                break
        k = int(c["code"])
        sealed_rgb[k] = look[0]
        open_rgb[k] = look[1]
        frac[k] = float(c.get("sealed", 0.5))
        farm[k] = float(look[1] == _FARM_LOOK)
    return sealed_rgb, open_rgb, frac, farm


# street paint: (code, rgb); larger codes are drawn over smaller ones. Boulevard bands (b_*) lie
# between: the side streets' asphalt crosses a boulevard's sidewalks and bike lanes, its carriageways
# and tracks are drawn over the side streets' mouths.
(
    _SIDEWALK, _PAVING, _FOOTWAY, _BALLAST,
    _B_MEDIAN, _B_TREE_ROW, _B_PROMENADE, _B_SIDEWALK, _B_PARKING, _B_BIKE,
    _ASPHALT, _MAJOR, _B_CARRIAGEWAY, _B_TRAM,
    _MARKING, _RAIL, _FOOTPRINT,
) = range(1, 18)  # fmt: skip
BAND_CODES = {
    "median": _B_MEDIAN,  # lawn
    "tree_row": _B_TREE_ROW,  # grass and soil under the trees
    "promenade": _B_PROMENADE,  # light gravel
    "sidewalk": _B_SIDEWALK,  # paving slabs
    "parking": _B_PARKING,  # paved bays
    "bike_path": _B_BIKE,  # red-tinted asphalt, as common in Germany
    "carriageway": _B_CARRIAGEWAY,  # asphalt
    "tram": _B_TRAM,  # track bed: ballast with grass
}
_PAINT = {
    _FOOTPRINT: (108, 102, 98),  # roofs seen from above where a coarse tile leaves buildings out
    _B_MEDIAN: (104, 140, 66),
    _B_TREE_ROW: (92, 122, 58),
    _B_PROMENADE: (204, 192, 164),
    _B_SIDEWALK: (180, 176, 168),
    _B_PARKING: (122, 120, 116),
    _B_BIKE: (156, 84, 74),
    _B_CARRIAGEWAY: (80, 81, 84),
    _B_TRAM: (124, 114, 100),
    _SIDEWALK: (176, 172, 164),
    _PAVING: (186, 176, 160),
    _FOOTWAY: (168, 160, 146),
    _BALLAST: (118, 108, 96),
    _ASPHALT: (86, 87, 90),
    _MAJOR: (76, 77, 80),
    _MARKING: (228, 228, 222),
    _RAIL: (158, 158, 162),  # polished rail heads, lighter than ballast and asphalt
}
# a second colour mixed into some paints in patches of the mosaic noise: (rgb, share)
_PAINT_MIX = {
    _B_TREE_ROW: ((124, 104, 80), 0.35),  # bare soil round the trunks
    _B_TRAM: ((104, 132, 68), 0.3),  # grass between the sleepers
    _B_PROMENADE: ((188, 178, 150), 0.5),  # worn and raked gravel
    _B_MEDIAN: ((118, 150, 74), 0.4),  # mown and unmown lawn
}
ROAD_WIDTH_M = {
    "motorway": 14.0, "trunk": 12.0, "primary": 10.0, "secondary": 9.0, "tertiary": 8.0,
    "residential": 6.5, "unclassified": 6.0, "living_street": 5.0, "service": 4.0, "road": 6.0,
    "pedestrian": 6.0, "footway": 2.5, "path": 2.0, "cycleway": 2.5, "track": 3.0, "steps": 2.0,
    "bridleway": 2.0, "busway": 6.0,
}  # fmt: skip
_MAJOR_ROADS = {"motorway", "trunk", "primary", "secondary", "tertiary"}
_SIDEWALK_ROADS = _MAJOR_ROADS | {"residential", "unclassified", "living_street", "road"}
SIDEWALK_M = 2.5
TRACK_GAUGE_M = 1.435


def street_width(highway: np.ndarray, lanes: np.ndarray) -> np.ndarray:
    """Carriageway width in metres from the highway class and the lanes tag (3.25 m a lane)."""
    hw = np.asarray(highway, dtype=object).astype(str)
    base_kind = np.char.replace(hw.astype(str), "_link", "")
    width = np.array([ROAD_WIDTH_M.get(h, 0.0) for h in base_kind])
    n = np.array([_to_float(v) for v in np.asarray(lanes, dtype=object)])
    by_lanes = np.where(np.isfinite(n) & (n > 0), n * 3.25 + 0.5, 0.0)
    return np.where(width > 0, np.maximum(width, by_lanes), 0.0)


def _to_float(v: Any) -> float:
    try:
        return float(str(v).split(";")[0])
    except ValueError:
        return float("nan")


@dataclass
class GroundPainter:
    """Draws orthophoto-like ground images of any rectangle from land cover, streets and footprints.

    Built once per city (buffers every street to its width, indexes the shapes); `render` then draws
    one tile: land-cover looks interpolated from the grid, world-fixed noise, and the streets, rails
    and footprints rasterised over them.
    """

    landcover: np.ndarray  # (rows, cols) class codes on the pack grid
    grid: tuple[float, float, float]  # (xmin, ymax, cell size) of the land-cover grid
    looks: tuple[np.ndarray, ...]  # class_looks(): sealed colour, open colour, fraction, farmland
    shapes: np.ndarray  # polygons to paint
    codes: np.ndarray  # paint code per polygon
    seed: int = 0
    _tree: shapely.STRtree = field(init=False, repr=False)

    def __post_init__(self) -> None:
        order = np.argsort(self.codes, kind="stable")
        self.shapes, self.codes = self.shapes[order], self.codes[order]
        self._tree = shapely.STRtree(self.shapes)
        sealed_rgb, open_rgb, frac, farm = self.looks
        lc = self.landcover
        # per grid cell: sealed colour, open colour, sealed fraction, farmland; interpolated together
        self._grid = np.ascontiguousarray(
            np.concatenate(
                [sealed_rgb[lc], open_rgb[lc], frac[lc][..., None], farm[lc][..., None]], axis=-1
            ).transpose(2, 0, 1),
            dtype=np.float32,
        )  # (8, rows, cols)
        self._noise = WorldNoise(self.seed)

    @classmethod
    def from_products(
        cls,
        landcover: np.ndarray,
        grid: tuple[float, float, float],
        classes: Sequence[dict[str, Any]],
        streets: dict[str, Any] | None,
        footprints: np.ndarray | None,
        seed: int = 0,
        boulevards: dict[str, Any] | None = None,
        tram_tracks: np.ndarray | None = None,
    ) -> GroundPainter:
        """Prepare the painter from the land-cover grid, streets.gpkg columns and building footprints.

        `boulevards` (boulevards.gpkg band columns: geometry, street, kind, band) and `tram_tracks`
        (track centre lines) draw the streets that have a cross-section band by band instead of as
        buffered centre lines; other streets are kept out of their carriageways and central strips.
        """
        shapes, codes = [], []
        if footprints is not None and len(footprints):
            shapes.append(np.asarray(footprints, dtype=object))
            codes.append(np.full(len(footprints), _FOOTPRINT))
        core = None
        if boulevards is not None and len(boulevards["geometry"]):
            s, c, core = _boulevard_shapes(boulevards, tram_tracks)
            shapes.append(s)
            codes.append(c)
            if streets is not None:
                streets = _without_streets(streets, set(np.asarray(boulevards["street"]).tolist()))
        if streets is not None and len(streets["geometry"]):
            s, c = _street_shapes(streets)
            if core is not None:  # side streets end at a boulevard's kerb lane
                hit = shapely.intersects(s, core)
                s[hit] = shapely.difference(s[hit], core)
            shapes.append(s)
            codes.append(c)
        shapes_a = np.concatenate(shapes) if shapes else np.empty(0, dtype=object)
        codes_a = np.concatenate(codes) if codes else np.empty(0, dtype=np.int64)
        keep = ~shapely.is_empty(shapes_a) if len(shapes_a) else np.zeros(0, bool)
        return cls(landcover, grid, class_looks(classes), shapes_a[keep], codes_a[keep], seed)

    def has_streets(self, bounds: tuple[float, float, float, float]) -> bool:
        """True if a street, path or rail reaches into the rectangle."""
        idx = self._tree.query(shapely.box(*bounds), predicate="intersects")
        return bool((self.codes[idx] != _FOOTPRINT).any())

    def render(
        self, bounds: tuple[float, float, float, float], width: int, height: int
    ) -> np.ndarray:
        """(height, width, 3) uint8 image of the rectangle (xmin, ymin, xmax, ymax), north at the top.

        Every pixel depends on its own centre only, so large images are painted in two bands of
        rows on two threads (NumPy releases the GIL in its array loops): the same bytes, in about
        half the time on two cores (the city's ground textures are most of the tileset build)."""
        x0, y0, x1, y1 = bounds
        px = (x1 - x0) / width
        xs = x0 + (np.arange(width) + 0.5) * px
        ys = y1 - (np.arange(height) + 0.5) * (y1 - y0) / height
        code = self._paint_codes(bounds, width, height, px) if len(self.shapes) else None
        out = np.empty((height, width, 3), dtype=np.uint8)
        bands = [slice(0, height)]
        if width * height >= BAND_PIXELS and height >= 2:
            bands = [slice(0, height // 2), slice(height // 2, height)]

        def paint(rows: slice) -> None:
            self._paint(xs, ys[rows], px, None if code is None else code[rows], out[rows])

        if len(bands) == 1:
            paint(bands[0])
        else:
            for f in [_band_pool().submit(paint, r) for r in bands]:
                f.result()
        return out

    def _paint(self, xs: np.ndarray, ys: np.ndarray, px: float, code: np.ndarray | None,
               out: np.ndarray) -> None:  # fmt: skip
        """Paint the pixels at centres xs (columns) x ys (rows) into ``out`` ((len(ys), len(xs), 3))."""
        g = self._landcover(xs, ys)  # channels first: each one contiguous
        noise = {n: self._noise.sample(n, xs, ys, px) for n in ("patch", "grain", "mosaic")}
        sealed_share = g[6]
        sealed_rgb, open_rgb = g[0:3], g[3:6]
        farm = g[7]
        if farm.max() > 0:  # fields: one crop colour per parcel, furrows along x or y by parcel
            parcel = self._noise.sample("parcel", xs, ys, px)
            idx = np.minimum((parcel * len(_CROPS)).astype(np.int64), len(_CROPS) - 1)
            crop = _CROPS.T[:, idx]  # (3, H, W)
            if px < 1.5:
                along_x = (parcel * 97.0) % 1.0 < 0.5
                u = np.where(along_x, ys[:, None], xs[None, :])
                crop = crop * (1.0 + 0.06 * np.cos(2 * np.pi * u / 3.0)).astype(np.float32)
            open_rgb = open_rgb + (crop - open_rgb) * farm
        # sealed and open ground as a mosaic of patches in the share of the sealed fraction: the
        # threshold runs from -2h to 1 + 2h so that fractions 0 and 1 give pure open / sealed
        h = 1.0 / 12.0
        threshold = sealed_share * (1 + 4 * h) - 2 * h
        w_open = np.clip((noise["mosaic"] - threshold) * (1 / (2 * h)), 0.0, 1.0)
        # where pixels are coarser than the patches, their colour is the mean in the right share
        alpha = float(np.clip(px / 2.0 - 0.25, 0.0, 1.0))
        if alpha > 0:
            w_open = w_open * (1 - alpha) + (1 - sealed_share) * alpha
        rgb = sealed_rgb + (open_rgb - sealed_rgb) * w_open
        shade = 1.0 + 0.10 * noise["patch"] + 0.07 * noise["grain"]
        greenish = (rgb[1] > rgb[0] + 15) & (rgb[1] > rgb[2])
        if greenish.any():
            shade += np.where(greenish, self._noise.sample("canopy", xs, ys, px), 0.0)
        rgb *= shade
        if code is not None:
            mask = code > 0
            if mask.any():
                c = code[mask]
                streak = 1.0 + 0.06 * noise["grain"][mask] + 0.05 * noise["patch"][mask]
                alt = noise["mosaic"][mask] < _MIX_SHARE[c]
                paint = np.where(alt[:, None], _MIX_RGB[c], _PAINT_RGB[c])
                rgb[:, mask] = paint.T * streak
        np.clip(rgb.transpose(1, 2, 0), 0, 255, out=out, casting="unsafe")

    def _landcover(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Bilinear blend of the class looks at pixel centres (cell values sit at cell centres), done
        separably: rows first, on the few grid columns under the tile, then columns.
        Returns (8, H, W): sealed RGB, open RGB, sealed fraction, farmland weight."""
        gx0, gy1, cell = self.grid
        n_rows, n_cols = self.landcover.shape
        r0, r1, tr = _lerp_index((gy1 - ys) / cell - 0.5, n_rows)
        c0, c1, tc = _lerp_index((xs - gx0) / cell - 0.5, n_cols)
        lo, hi = int(c0.min()), int(c1.max()) + 1
        sub = self._grid[:, :, lo:hi]
        rows = sub[:, r0] * (1 - tr)[:, None] + sub[:, r1] * tr[:, None]  # (8, H, cols)
        return rows[:, :, c0 - lo] * (1 - tc) + rows[:, :, c1 - lo] * tc

    def _paint_codes(
        self, bounds: tuple[float, float, float, float], width: int, height: int, px: float
    ) -> np.ndarray:
        """Paint code per pixel: areas where they cover pixel centres, then the thin lines (rails,
        markings) on every pixel they touch, at sizes where they are worth drawing."""
        idx = np.sort(self._tree.query(shapely.box(*bounds)))  # shapes are stored in paint order
        transform = Affine(px, 0.0, bounds[0], 0.0, -(bounds[3] - bounds[1]) / height, bounds[3])
        thin = (self.codes[idx] == _MARKING) | (self.codes[idx] == _RAIL)
        out = np.zeros((height, width), dtype=np.uint8)
        for sel, touched in ((~thin, False), (thin, True)):
            if not sel.any() or (touched and px > 0.75):
                continue
            rasterize(
                zip(self.shapes[idx[sel]], self.codes[idx[sel]].tolist(), strict=True),
                out=out,
                transform=transform,
                all_touched=touched,
            )
        return out


_PAINT_RGB = np.zeros((32, 3), dtype=np.float32)
for _code, _rgb in _PAINT.items():
    _PAINT_RGB[_code] = _rgb
_MIX_RGB = _PAINT_RGB.copy()
_MIX_SHARE = np.zeros(32, dtype=np.float32)
for _code, (_rgb, _share) in _PAINT_MIX.items():
    _MIX_RGB[_code], _MIX_SHARE[_code] = _rgb, _share
BAND_PIXELS = 1 << 16  # images this large are painted in two bands on two threads


@functools.cache
def _band_pool() -> ThreadPoolExecutor:
    """The two threads that paint large ground images, shared by all painters."""
    return ThreadPoolExecutor(max_workers=2, thread_name_prefix="ground-paint")


PARCEL_M = 90.0  # size of field parcels on farmland
# crop colours: stubble, green crop, ripe grain, ploughed soil, young crop, hay
_CROPS = np.array(
    [
        [164, 154, 104],
        [118, 148, 72],
        [188, 172, 112],
        [128, 108, 84],
        [146, 160, 92],
        [176, 160, 96],
    ],
    dtype=np.float32,
)  # fmt: skip


def _lerp_index(f: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Neighbour indices and weight for linear interpolation at fractional positions f (clamped)."""
    f = np.clip(f, 0, n - 1)
    i0 = np.floor(f).astype(np.int64)
    i1 = np.minimum(i0 + 1, n - 1)
    return i0, i1, (f - i0).astype(np.float32)


def _periodic_noise(p: int, cell_px: float, seed: int) -> np.ndarray:
    """Smooth value noise (p x p, values 0..1) on a lattice that wraps around, so the image tiles."""
    g = max(1, round(p / max(cell_px, 1.0)))
    lattice = np.random.default_rng(seed).random((g, g))
    f = np.arange(p) * g / p
    i0 = np.floor(f).astype(np.int64)
    t = f - i0
    t = t * t * (3 - 2 * t)
    i1 = (i0 + 1) % g
    rows = lattice[i0] * (1 - t)[:, None] + lattice[i1] * t[:, None]
    return rows[:, i0] * (1 - t)[None, :] + rows[:, i1] * t[None, :]


# noise channels: (pixel size of the finest image in m, image side in px, octave cells in m, smooth)
_CHANNELS = {
    "patch": (2.0, 1024, (40.0, 12.0), True),  # broad light and dark patches, 2 km period
    "grain": (0.2, 1024, (3.0, 0.8), True),  # fine grain, 205 m period
    "canopy": (1.0, 1024, (9.0, 4.0), True),  # tree crowns on green ground
    "mosaic": (0.5, 2048, (12.0, 5.0, 2.0), True),  # sealed / open patches, uniform 0..1
    "parcel": (PARCEL_M, 128, (), False),  # one value per field parcel, 11.5 km period
}


class WorldNoise:
    """Deterministic noise fields fixed in world metres, tiling with long periods.

    Each channel is one periodic image at its own resolution plus a mip pyramid (box-filtered
    halvings); a sample at pixels of px metres reads the pyramid level nearest that size, so every
    level of detail draws the same pattern, prefiltered instead of aliased.
    Written here rather than taken from a noise library: it must be periodic, mip-mapped and
    sampled on whole tile grids at array speed, which value noise on a lattice makes simple.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._pyramids: dict[str, list[np.ndarray]] = {}

    def _pyramid(self, name: str) -> list[np.ndarray]:
        if name not in self._pyramids:
            res, side, cells, _ = _CHANNELS[name]
            s = self.seed + 1000 * list(_CHANNELS).index(name)
            if name == "parcel":
                base = np.random.default_rng(s).random((side, side)).astype(np.float32)
            else:
                total, weight, norm = np.zeros((side, side)), 1.0, 0.0
                for k, c in enumerate(cells):
                    total += weight * (_periodic_noise(side, c / res, s + 7919 * k) - 0.5)
                    norm += weight
                    weight *= 0.5
                base = total / norm
                if name == "mosaic":  # uniform 0..1, so a threshold at f gives a share f
                    q = np.quantile(
                        base.ravel()[:: max(1, base.size // 200_000)], np.linspace(0, 1, 257)
                    )
                    base = np.interp(base, q, np.linspace(0, 1, 257))
                elif name == "canopy":
                    base = np.clip(base * 1.1, -0.2, 0.2)
                base = base.astype(np.float32)
            levels = [base]
            while levels[-1].shape[0] > 8 and _CHANNELS[name][3]:
                a = levels[-1]
                levels.append(a.reshape(a.shape[0] // 2, 2, a.shape[1] // 2, 2).mean(axis=(1, 3)))
            self._pyramids[name] = levels
        return self._pyramids[name]

    def sample(self, name: str, xs: np.ndarray, ys: np.ndarray, px: float) -> np.ndarray:
        """The channel at the grid of pixel centres xs (columns) x ys (rows), for px-metre pixels."""
        res, _, _, smooth = _CHANNELS[name]
        levels = self._pyramid(name)
        k = int(np.clip(np.floor(np.log2(max(px / res, 1.0))), 0, len(levels) - 1))
        img = levels[k]
        n = img.shape[0]
        step = res * 2**k
        if not smooth:  # parcels: nearest value, stretched into strips twice as long as wide
            ci = np.floor(xs / (2 * step)).astype(np.int64) % n
            ri = np.floor(ys / (step / 2)).astype(np.int64) % n
            return img[np.ix_(ri, ci)]
        # nearest texel of the level whose texels are just finer than the pixels: every octave
        # spans four texels or more, so this is as smooth as bilinear and a quarter of the cost
        ci = np.floor(xs / step).astype(np.int64) % n
        ri = np.floor(ys / step).astype(np.int64) % n
        return img[np.ix_(ri, ci)]


def _street_shapes(streets: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Street, path and rail centre lines buffered to their widths, each with its paint code."""
    lines = np.asarray(streets["geometry"], dtype=object)
    n = len(lines)
    col = {
        k: np.asarray(streets.get(k, np.full(n, "")), dtype=object).astype(str)
        for k in ("highway", "railway", "lanes")
    }
    hw = np.char.replace(col["highway"].astype(str), "_link", "")
    rw = col["railway"]
    width = street_width(col["highway"], col["lanes"])
    out_shapes, out_codes = [], []

    def add(mask: np.ndarray, dist: np.ndarray | float, code: int, cap: str = "round") -> None:
        if not mask.any():
            return
        d = np.broadcast_to(np.asarray(dist, dtype=float), mask.shape)[mask]
        out_shapes.append(shapely.buffer(lines[mask], d, cap_style=cap, join_style="round"))
        out_codes.append(np.full(int(mask.sum()), code))

    roads = width > 0
    add(roads & np.isin(hw, list(_SIDEWALK_ROADS)), width / 2 + SIDEWALK_M, _SIDEWALK)
    add(roads & (hw == "pedestrian"), width / 2, _PAVING)
    add(
        roads & np.isin(hw, ["footway", "path", "cycleway", "steps", "track", "bridleway"]),
        width / 2,
        _FOOTWAY,
    )
    rail = np.isin(rw, ["rail", "light_rail", "narrow_gauge", "subway", "disused", "preserved"])
    tram = rw == "tram"
    add(rail, 2.0, _BALLAST, cap="flat")
    motor = roads & ~np.isin(
        hw, ["pedestrian", "footway", "path", "cycleway", "steps", "track", "bridleway"]
    )
    major = motor & np.isin(hw, list(_MAJOR_ROADS))
    add(motor & ~major, width / 2, _ASPHALT)
    add(major, width / 2, _MAJOR)
    add(major, 0.08, _MARKING, cap="flat")
    tracks = rail | tram
    if tracks.any():
        for side in (-1.0, 1.0):
            off = shapely.offset_curve(lines[tracks], side * TRACK_GAUGE_M / 2)
            out_shapes.append(shapely.buffer(off, 0.08, cap_style="flat"))
            out_codes.append(np.full(int(tracks.sum()), _RAIL))
    if not out_shapes:
        return np.empty(0, dtype=object), np.empty(0, dtype=np.int64)
    return np.concatenate(out_shapes), np.concatenate(out_codes)


def _without_streets(streets: dict[str, Any], names: set[str]) -> dict[str, Any]:
    """The streets columns without the highway ways of the given names (drawn as boulevards)."""
    n = len(streets["geometry"])
    if "name" not in streets:
        return streets
    name = np.asarray(streets["name"], dtype=object).astype(str)
    highway = np.asarray(streets.get("highway", np.full(n, "")), dtype=object).astype(str)
    keep = ~(np.isin(name, list(names)) & (highway != ""))
    return {k: np.asarray(v, dtype=object)[keep] if k != "geometry" else np.asarray(v)[keep]
            for k, v in streets.items()}  # fmt: skip


def _boulevard_shapes(
    bands: dict[str, Any], tram_tracks: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, Any]:
    """Band polygons with their paint codes, rail pairs along the tram tracks, and the boulevards'
    core (each street's bands from its first to its last carriageway or tram band, as one shape)."""
    geom = np.asarray(bands["geometry"], dtype=object)
    kind = np.asarray(bands["kind"], dtype=object).astype(str)
    unknown = sorted(set(kind.tolist()) - BAND_CODES.keys())
    if unknown:
        raise DataError(f"boulevard bands of unknown kind: {', '.join(unknown)}")
    shapes = [geom]
    codes = [np.array([BAND_CODES[k] for k in kind], dtype=np.int64)]
    if tram_tracks is not None and len(tram_tracks):
        lines = np.asarray(tram_tracks, dtype=object)
        for side in (-1.0, 1.0):
            off = shapely.offset_curve(lines, side * TRACK_GAUGE_M / 2)
            shapes.append(shapely.buffer(off, 0.08, cap_style="flat"))
            codes.append(np.full(len(lines), _RAIL))
    core = None
    if "band" in bands:
        parts = list(street_cores(bands).values())
        core = shapely.union_all(parts) if parts else None
    if core is not None:
        shapely.prepare(core)
    return np.concatenate(shapes), np.concatenate(codes), core


def ground_painter_from_build(
    build_dir: str | Path, classes: Sequence[dict[str, Any]], seed: int = 0
) -> GroundPainter:
    """A GroundPainter reading landcover.tif, streets.gpkg, buildings.gpkg and, where the build has
    one, boulevards.gpkg from a build folder."""
    build_dir = Path(build_dir)
    try:
        with rasterio.open(build_dir / "landcover.tif") as src:
            lc = src.read(1)
            t = src.transform
        if t.b != 0 or t.d != 0 or t.e >= 0 or abs(t.a + t.e) > 1e-9 * abs(t.a):
            raise DataError(f"{build_dir / 'landcover.tif'}: grid must be north-up, square cells")
        streets = None
        if (build_dir / "streets.gpkg").exists():
            meta, _, wkb, values = pyogrio.raw.read(build_dir / "streets.gpkg")
            streets = {"geometry": shapely.from_wkb(wkb)}
            streets.update(zip(meta["fields"], values, strict=True))
        b = read_buildings(build_dir / "buildings.gpkg")
    except (OSError, rasterio.errors.RasterioIOError, pyogrio.errors.DataSourceError) as exc:
        raise DataError(f"{build_dir}: cannot read the ground products: {exc}") from None
    bands, tracks = None, None
    if (build_dir / BOULEVARDS).exists():
        bands, tracks = read_boulevard_product(build_dir / BOULEVARDS)
    return GroundPainter.from_products(
        lc, (t.c, t.f, t.a), classes, streets, b["geometry"], seed, bands, tracks
    )
