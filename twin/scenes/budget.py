"""The mobile AR budget of a station scene, checked at export, and `fit` that brings a scene under it by
mesh decimation (trimesh's quadric decimation, backed by fast-simplification) and texture down-sizing
(Pillow); what cannot be fitted raises DataError naming the quantity, by how much, and the budget.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from PIL import Image
from scipy.spatial import cKDTree

from twin.errors import DataError
from twin.scenes.scene import Material, MeshNode, Scene, validate

# Triangles: AR Quick Look and Scene Viewer keep 60 fps on mid-range phones up to a few hundred
# thousand triangles; Apple's guidance for Quick Look models is about 100k-500k.
MAX_TRIANGLES = 300_000
# Textures: 2048 px on a side is the largest size every mobile GPU samples without down-scaling.
MAX_TEXTURE_SIDE_PX = 2048
# All textures together: 16 Mpx is ~64 MiB of RGBA8 in GPU memory, a safe share on a 3-4 GB phone.
MAX_TEXTURE_PIXELS = 16 * 1024 * 1024
# File size: a download over mobile data the visitor at the station waits for (a few seconds on LTE);
# also well under Scene Viewer's and Quick Look's limits.
MAX_FILE_BYTES = 25 * 1024 * 1024
# Below this many triangles a node is not decimated (boxes and signs keep their shape).
MIN_DECIMATE_TRIANGLES = 64


@dataclass(frozen=True)
class Budget:
    """Limits of one export target; MOBILE_AR is the stations' default."""

    max_triangles: int = MAX_TRIANGLES
    max_texture_side_px: int = MAX_TEXTURE_SIDE_PX
    max_texture_pixels: int = MAX_TEXTURE_PIXELS
    max_file_bytes: int = MAX_FILE_BYTES

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


MOBILE_AR = Budget()


def _over(what: str, value: int, limit: int) -> DataError:
    return DataError(f"{what} is {value:,}, {value - limit:,} over the budget of {limit:,}")


def check(scene: Scene, budget: Budget = MOBILE_AR) -> None:
    """Raise DataError if the scene's triangles or textures exceed the budget."""
    if scene.triangles > budget.max_triangles:
        raise _over(f"scene {scene.name!r}: triangles", scene.triangles, budget.max_triangles)
    total = 0
    for m in scene.materials():
        if m.texture is None:
            continue
        h, w = m.texture.shape[:2]
        if max(h, w) > budget.max_texture_side_px:
            raise _over(
                f"scene {scene.name!r}: texture of material {m.name!r} side (px)",
                max(h, w),
                budget.max_texture_side_px,
            )
        total += h * w
    if total > budget.max_texture_pixels:
        raise _over(f"scene {scene.name!r}: texture pixels", total, budget.max_texture_pixels)


def check_size(name: str, size: int, budget: Budget = MOBILE_AR) -> None:
    """Raise DataError if a file of ``size`` bytes named ``name`` is larger than the budget allows."""
    if size > budget.max_file_bytes:
        raise _over(f"{name}: file size (bytes)", size, budget.max_file_bytes)


def check_file(path: Path, budget: Budget = MOBILE_AR) -> None:
    """Raise DataError if the written file is larger than the budget allows."""
    check_size(Path(path).name, Path(path).stat().st_size, budget)


def _resize(image: np.ndarray, w: int, h: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.LANCZOS))


def _fit_textures(
    scene: Scene, budget: Budget, actions: list[dict[str, Any]]
) -> dict[str, Material]:
    """New materials (by name) whose textures fit the side and the total-pixel bounds."""
    mats = scene.materials()
    sizes = {m.name: m.texture.shape[:2] for m in mats if m.texture is not None}
    target: dict[str, tuple[int, int]] = {}
    for name, (h, w) in sizes.items():
        s = min(1.0, budget.max_texture_side_px / max(h, w))
        target[name] = (max(1, math.floor(h * s)), max(1, math.floor(w * s)))
    total = sum(h * w for h, w in target.values())
    if total > budget.max_texture_pixels:
        s = math.sqrt(budget.max_texture_pixels / total)
        target = {
            n: (max(1, math.floor(h * s)), max(1, math.floor(w * s)))
            for n, (h, w) in target.items()
        }
    out: dict[str, Material] = {}
    for m in mats:
        if m.texture is not None and target[m.name] != sizes[m.name]:
            h, w = target[m.name]
            out[m.name] = dataclasses.replace(m, texture=_resize(m.texture, w, h))
            actions.append(
                {
                    "action": "downsize_texture",
                    "material": m.name,
                    "from_px": [int(sizes[m.name][1]), int(sizes[m.name][0])],
                    "to_px": [int(w), int(h)],
                }
            )
        else:
            out[m.name] = m
    return out


def decimate(node: MeshNode, faces: int) -> MeshNode:
    """The node with about `faces` triangles (quadric decimation); uv carried from the nearest
    original vertex."""
    mesh = trimesh.Trimesh(node.vertices, node.faces, process=False)
    small = mesh.simplify_quadric_decimation(face_count=int(faces))
    v = np.asarray(small.vertices, dtype=np.float64)
    uv = None
    if node.uv is not None:
        _, nearest = cKDTree(node.vertices).query(v)
        uv = np.asarray(node.uv)[nearest]
    return dataclasses.replace(node, vertices=v, faces=np.asarray(small.faces), uv=uv)


def fit(scene: Scene, budget: Budget = MOBILE_AR) -> tuple[Scene, list[dict[str, Any]]]:
    """A scene within the budget and the actions taken (for the manifest).

    Over the triangle budget, non-vehicle nodes of at least MIN_DECIMATE_TRIANGLES are decimated, biggest
    first, each by the same factor; textures too big are down-sized. Raises DataError when still over.
    """
    validate(scene)
    actions: list[dict[str, Any]] = []
    mats = _fit_textures(scene, budget, actions)
    nodes = [dataclasses.replace(n, material=mats[n.material.name]) for n in scene.nodes]
    total = sum(n.triangles for n in nodes)
    if total > budget.max_triangles:
        movable = [
            i
            for i, n in enumerate(nodes)
            if n.kind != "vehicle" and n.triangles >= MIN_DECIMATE_TRIANGLES
        ]
        fixed = total - sum(nodes[i].triangles for i in movable)
        room = budget.max_triangles - fixed
        if room > 0 and movable:
            factor = room / (total - fixed)
            for i in sorted(movable, key=lambda i: -nodes[i].triangles):
                n = nodes[i]
                small = decimate(n, max(4, math.floor(n.triangles * factor)))
                nodes[i] = small
                actions.append(
                    {
                        "action": "decimate",
                        "node": n.name,
                        "from_triangles": n.triangles,
                        "to_triangles": small.triangles,
                    }
                )
                if sum(m.triangles for m in nodes) <= budget.max_triangles:
                    break
    out = dataclasses.replace(scene, nodes=nodes)
    check(out, budget)
    return out, actions
