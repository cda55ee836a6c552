"""Low-poly tree meshes for the city tileset: a crown on a trunk per tree of the register."""

from __future__ import annotations

import numpy as np

from twin.citytiles.meshes import Mesh

CROWN_SHARE = (0.4, 0.7)  # a crown is as tall as it is wide, within these shares of the height
TRUNK_SIDES = 5
TRUNK_RGB = (104, 82, 62)
CROWN_GREENS = np.array(
    [[70, 112, 50], [56, 96, 46], [94, 126, 58], [64, 106, 72], [102, 120, 54], [50, 84, 42],
     [82, 118, 76], [120, 132, 62]],
    dtype=np.float64,
)  # fmt: skip


def _icosahedron() -> tuple[np.ndarray, np.ndarray]:
    """A unit icosahedron standing on a vertex (top at z = 1, rings of five at z = +-1/sqrt 5 with
    radius 1 at the rings), its 20 triangles facing out."""
    h = 1 / np.sqrt(5)
    k = np.arange(5)
    a1, a2 = np.radians(72.0 * k), np.radians(72.0 * k + 36.0)
    ring_r = 2 * h  # of the unit sphere; scaled to 1 below
    v = np.concatenate(
        [
            [[0.0, 0.0, 1.0]],
            np.column_stack([ring_r * np.cos(a1), ring_r * np.sin(a1), np.full(5, h)]),
            np.column_stack([ring_r * np.cos(a2), ring_r * np.sin(a2), np.full(5, -h)]),
            [[0.0, 0.0, -1.0]],
        ]
    )
    r1, r2, n = 1 + k, 6 + k, (k + 1) % 5
    f = np.concatenate(
        [
            np.column_stack([np.zeros(5, int), r1, 1 + n]),
            np.column_stack([r1, r2, 1 + n]),
            np.column_stack([1 + n, r2, 6 + n]),
            np.column_stack([np.full(5, 11), 6 + n, r2]),
        ]
    )
    c = v[f]
    outward = (np.cross(c[:, 1] - c[:, 0], c[:, 2] - c[:, 0]) * c.mean(axis=1)).sum(axis=1) > 0
    f = np.where(outward[:, None], f, f[:, ::-1])
    v[:, :2] /= ring_r
    return v, f


def tree_colours(species: np.ndarray, ids: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, 4) uint8 crown colours: a green by species (hashed), a few per cent lighter or darker
    per tree."""
    from twin.citytiles.textures import building_hashes

    pick = building_hashes(np.asarray(species, dtype=object).astype(str), seed)
    shade = building_hashes(np.asarray(ids, dtype=object).astype(str), seed + 1)
    f = 0.9 + 0.2 * (shade % np.uint64(1000)).astype(np.float64) / 1000.0
    rgb = CROWN_GREENS[(pick % np.uint64(len(CROWN_GREENS))).astype(np.int64)] * f[:, None]
    out = np.full((len(rgb), 4), 255, dtype=np.uint8)
    out[:, :3] = np.clip(rgb, 0, 255).astype(np.uint8)
    return out


def tree_mesh(
    x: np.ndarray,
    y: np.ndarray,
    base: np.ndarray,
    height: np.ndarray,
    crown_diameter: np.ndarray,
    crown_rgba: np.ndarray,
) -> Mesh:
    """Low-poly trees: a crown (an icosahedron, 20 triangles, as wide as the crown diameter, its top
    at base + height, as tall as it is wide within CROWN_SHARE of the height: narrow tall trees get
    columnar crowns, not lollipops) on a five-sided trunk (10 triangles, from 0.3 m below the ground
    to the crown's middle). Feature = tree row; colours: the crown's given, the trunk brown."""
    n = len(x)
    if n == 0:
        return Mesh.empty()
    unit, faces = _icosahedron()
    radius = np.asarray(crown_diameter, float) / 2
    h = np.asarray(height, float)
    crown_h = np.clip(2 * radius, CROWN_SHARE[0] * h, CROWN_SHARE[1] * h)
    mid = np.asarray(base, float) + h - crown_h / 2
    cx, cy = np.asarray(x, float), np.asarray(y, float)
    crown = np.stack(
        [
            cx[:, None] + radius[:, None] * unit[None, :, 0],
            cy[:, None] + radius[:, None] * unit[None, :, 1],
            mid[:, None] + (crown_h / 2)[:, None] * unit[None, :, 2],
        ],
        axis=2,
    )  # (n, 12, 3)
    a = np.radians(360.0 / TRUNK_SIDES * np.arange(TRUNK_SIDES))
    tr = np.clip(0.06 * radius * 2, 0.1, 0.5)
    ring_x = cx[:, None] + tr[:, None] * np.cos(a)[None]
    ring_y = cy[:, None] + tr[:, None] * np.sin(a)[None]
    z0 = np.repeat((np.asarray(base, float) - 0.3)[:, None], TRUNK_SIDES, axis=1)
    z1 = np.repeat(mid[:, None], TRUNK_SIDES, axis=1)
    trunk = np.concatenate(
        [np.stack([ring_x, ring_y, z0], axis=2), np.stack([ring_x, ring_y, z1], axis=2)], axis=1
    )  # (n, 10, 3): bottom ring, top ring
    k = np.arange(TRUNK_SIDES)
    nk = (k + 1) % TRUNK_SIDES
    trunk_faces = np.concatenate(
        [np.column_stack([k, nk, TRUNK_SIDES + nk]), np.column_stack([k, TRUNK_SIDES + nk,
                                                                      TRUNK_SIDES + k])]
    )  # fmt: skip
    per = len(unit) + 2 * TRUNK_SIDES
    xyz = np.concatenate([crown, trunk], axis=1).reshape(-1, 3)
    local = np.concatenate([faces, trunk_faces + len(unit)])
    tris = (np.arange(n)[:, None, None] * per + local[None]).reshape(-1, 3)
    colour = np.empty((n, per, 4), dtype=np.uint8)
    colour[:, : len(unit)] = np.asarray(crown_rgba, dtype=np.uint8)[:, None]
    colour[:, len(unit) :] = (*TRUNK_RGB, 255)
    feature = np.repeat(np.arange(n), per)
    return Mesh(xyz, tris, np.zeros((len(xyz), 2)), feature, colour.reshape(-1, 4))
