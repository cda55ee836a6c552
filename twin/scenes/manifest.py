"""manifest.json of a station's exported scene: anchor, each file's size, triangles and textures, the
budget and what was done to meet it, the sources and the runs used. Written last and atomically, so a
folder without it (or with a stale one) never looks like a finished export.

A file is named by its path relative to the scene folder (`tiles/tileset.json`); a 3D Tiles entry's
bytes are its whole tileset folder's (tileset.json and contents).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from twin.errors import DataError
from twin.runs import now_utc, write_atomic
from twin.scenes import budget as budgets
from twin.scenes.export_tiles import FORMAT as TILES_FORMAT
from twin.scenes.export_tiles import folder_bytes
from twin.scenes.scene import ExportInfo, Scene

MANIFEST = "manifest.json"


def manifest_dict(
    folder: Path,
    scene: Scene,
    infos: list[ExportInfo],
    actions: list[dict[str, Any]],
    budget: budgets.Budget = budgets.MOBILE_AR,
) -> dict[str, Any]:
    """The manifest's content; each file must exist in `folder` with the size its info states."""
    folder = Path(folder)
    files = []
    for info in infos:
        p = Path(info.path)
        if not p.resolve().is_relative_to(folder.resolve()):
            raise DataError(f"{MANIFEST}: {p.name} is not in the scene folder {folder.name}")
        name = p.resolve().relative_to(folder.resolve()).as_posix()
        if not p.is_file():
            raise DataError(f"{MANIFEST}: {name} was not written")
        size = folder_bytes(p.parent) if info.format == TILES_FORMAT else p.stat().st_size
        if size != info.bytes:
            raise DataError(f"{MANIFEST}: {name} is {size} bytes, its export said {info.bytes}")
        files.append(
            {
                "file": name,
                "format": info.format,
                "bytes": size,
                "triangles": info.triangles,
                "vertices": info.vertices,
                "textures": info.textures,
            }
        )
    return {
        "scene": scene.name,
        "anchor": scene.anchor.as_dict(),
        "files": files,
        "triangles": scene.triangles,
        "nodes": [{"name": n.name, "kind": n.kind, "triangles": n.triangles} for n in scene.nodes],
        "budget": budget.as_dict(),
        "actions": list(actions),
        "sources": list(scene.sources),
        "runs": list(scene.runs),
        "written_utc": now_utc(),
    }


def write_manifest(
    folder: Path,
    scene: Scene,
    infos: list[ExportInfo],
    actions: list[dict[str, Any]],
    budget: budgets.Budget = budgets.MOBILE_AR,
) -> Path:
    """Write <folder>/manifest.json atomically (temporary name, fsync, rename); returns its path."""
    folder = Path(folder)
    data = manifest_dict(folder, scene, infos, actions, budget)
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    path = folder / MANIFEST
    write_atomic(path, text.encode("utf-8"))
    return path
