"""`tiles info`: what a tileset holds (tiles, depth, contents by type, triangles, points,
textures, features, region), counted by reading every tile and content, plus problems found.

Triangles and points are counted only from data that was read and bounds-checked; counts that
accessors declare without data are given apart (`declared_triangles`, `declared_points`) with a
warning. Each problem has a severity: an error (something could not be read, was refused or is
inconsistent) or a warning (the tileset is readable but something is off); `errors` lists the
former, and `twin tiles info` exits 1 when there is any.

Textures are counted as a viewer uploads them (a KTX2 texture with its PNG/JPEG fallback once), with
the GPU memory they take (twin.tiles.texmem states how: per GPU format, with mip chains).
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import numpy as np

from twin.errors import DataError
from twin.tiles.bounds import obb_corners
from twin.tiles.texmem import ASSUMPTIONS, PROFILES, gpu_textures
from twin.tiles.tileset import DEFAULT_MAX_TILES, Tileset


def _region(ts: Tileset) -> tuple[list[float], list[float]]:
    """[west, south, east, north] (degrees) and [min, max] ellipsoidal height (m) of all volumes."""
    from twin.geo import ecef_to_wgs84

    ix = ts.index
    n = ix.n
    is_region = ix.vol_kind[:n] == 1
    lons, lats, hs = [], [], []
    if is_region.any():
        r = ix.region[:n][is_region]
        lons += [np.degrees(r[:, 0]), np.degrees(r[:, 2])]
        lats += [np.degrees(r[:, 1]), np.degrees(r[:, 3])]
        hs += [r[:, 4], r[:, 5]]
    others = np.flatnonzero(~is_region)
    if len(others):
        corners = obb_corners(ix.obb_c[others], ix.obb_h[others]).reshape(-1, 3)
        lon, lat, h = ecef_to_wgs84(corners[:, 0], corners[:, 1], corners[:, 2])
        lons.append(lon)
        lats.append(lat)
        hs.append(h)
    lon, lat, h = (np.concatenate(v) for v in (lons, lats, hs))
    return (
        [float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())],
        [float(h.min()), float(h.max())],
    )


class _Problems:
    """Problems found, in order, each an error or a warning."""

    def __init__(self) -> None:
        self.all: list[str] = []
        self.errors: list[str] = []

    def error(self, message: str) -> None:
        self.all.append(message)
        self.errors.append(message)

    def warning(self, message: str) -> None:
        self.all.append(message)


def tileset_info(
    path: str | os.PathLike,
    *,
    read_contents: bool = True,
    strict: bool = False,
    max_tiles: int = DEFAULT_MAX_TILES,
    max_file_bytes: int | None = None,
) -> dict[str, Any]:
    """Summary of a tileset. Every tile is visited (external tilesets and implicit subtrees
    loaded) and, with `read_contents`, every content parsed for its counts. Broken contents or
    external tilesets are listed under `problems` and `errors` (or raise DataError with
    `strict`). `max_file_bytes` replaces the cap on any one file read (see twin.tiles.source)."""
    ts = Tileset(path, max_tiles=max_tiles, max_file_bytes=max_file_bytes)
    found = _Problems()
    for p in ts.problems:
        found.warning(p)
    errors: list[str] | None = None if strict else []
    ts.expand_all(errors)
    for p in errors or []:
        found.error(p)
    ix = ts.index
    n = ix.n
    contents: Counter[str] = Counter()
    totals = Counter()
    texture_list: list[dict] = []
    extensions: set[str] = set()
    for i in range(n):
        if ix.link[i]:
            contents["json"] += 1
            continue
        if ix.n_contents[i] == 0:
            continue
        try:
            refs = ts.content_refs(i)
        except DataError as exc:
            if strict:
                raise
            found.error(str(exc))
            continue
        for ref in refs:
            if not read_contents:
                contents[ref.kind_hint] += 1
                continue
            try:
                c = ts.read_content(ref)
                counts = c.counts
            except DataError as exc:
                if strict:
                    raise
                found.error(str(exc))
                contents[ref.kind_hint] += 1
                continue
            contents[c.kind] += 1
            totals["triangles"] += counts.triangles
            totals["points"] += counts.points
            totals["declared_triangles"] += counts.declared_triangles
            totals["declared_points"] += counts.declared_points
            totals["features"] += c.n_features
            totals["bytes"] += c.byte_length
            for note in counts.notes:
                found.warning(note)
            for leaf in c.leaves():
                if leaf.gltf is not None:
                    extensions.update(leaf.gltf.extensions_used)
                    for e in leaf.gltf.unsupported_required:
                        found.warning(f"{leaf.name}: requires glTF extension {e}, not supported")
                    for tex in gpu_textures(leaf.gltf):
                        texture_list.append({"content": ref.uri, **tex.as_dict()})
                        if tex.note:
                            found.warning(f"{leaf.name}: {tex.note}")
            for img in c.textures:
                if img.error:
                    found.error(f"{c.name}: image {img.index}: {img.error}")
    region: list[float] | None
    heights: list[float] | None
    if float(np.linalg.norm(ix.obb_c[0])) < 1e6:
        region = heights = None
        found.warning(
            f"{ts.name}: the root volume lies near the earth's centre, so the tileset is not "
            "placed on the globe (a viewer's model matrix would place it); no region given"
        )
    else:
        box2d, heights = _region(ts)
        # as a 3D Tiles region: [west, south, east, north] (degrees) then [min, max] height (m)
        region = [*box2d, *heights]
    corners = obb_corners(ix.obb_c[:n], ix.obb_h[:n]).reshape(-1, 3)
    implicit = sorted({ctx.scheme for ctx in ts._implicit})
    return {
        "path": ts.name,
        "version": ts.version,
        "tileset_version": ts.tileset_version,
        "geometric_error": ts.geometric_error,
        "tiles": int(n),
        "depth": int(ix.depth[:n].max()) if n else 0,
        "contents": dict(sorted(contents.items())),
        "external_tilesets": int(ix.link[:n].sum()),
        "implicit": implicit,
        "triangles": int(totals["triangles"]),
        "points": int(totals["points"]),
        "declared_triangles": int(totals["declared_triangles"]),
        "declared_points": int(totals["declared_points"]),
        "textures": len(texture_list),
        "texture_list": texture_list,
        "texture_memory": _texture_memory(texture_list, ts.json),
        "features": int(totals["features"]),
        "content_bytes": int(totals["bytes"]),
        "region": region,
        "heights": heights,
        "box": {"min": corners.min(axis=0).tolist(), "max": corners.max(axis=0).tolist()},
        "height_reference": "WGS84 ellipsoid",
        "refine": {"ADD": int(ix.add[:n].sum()), "REPLACE": int((~ix.add[:n]).sum())},
        "gltf_extensions": sorted(extensions),
        "has_metadata": bool(ts.schema is not None or ts.metadata is not None),
        "problems": found.all,
        "errors": found.errors,
    }


def _texture_memory(textures: list[dict], tileset_json: dict) -> dict[str, Any]:
    """GPU bytes of every texture by viewer profile, the same as PNG/JPEG (RGBA8), and how the
    tileset's writer says it wrote its textures (extras.textures, e.g. why not as KTX2)."""
    out: dict[str, Any] = {p: int(sum(t["gpu_bytes"][p] for t in textures)) for p in PROFILES}
    out["rgba8"] = int(sum(t["rgba8_bytes"] for t in textures))
    out["ktx2_textures"] = sum(t["format"].startswith("ktx2") for t in textures)
    out["assumptions"] = ASSUMPTIONS
    note = (tileset_json.get("extras") or {}).get("textures")
    if isinstance(note, str) and note:
        out["writer"] = note
    return out


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def format_info(info: dict[str, Any]) -> str:
    """A readable multi-line summary of `tileset_info`'s result."""
    contents = ", ".join(f"{k} {v}" for k, v in info["contents"].items()) or "none"
    fmts = Counter(
        f"{t['format']} {t['width']}x{t['height']}"
        + (f" (+{t['fallback']} fallback)" if t.get("fallback") else "")
        for t in info.get("texture_list", [])
    )
    textures = ", ".join(f"{v} x {k}" for k, v in sorted(fmts.items())) if fmts else ""
    lines = [
        f"Tileset        {info['path']}",
        f"Version        3D Tiles {info['version']}"
        + (f" (tileset {info['tileset_version']})" if info.get("tileset_version") else ""),
        f"Tiles          {info['tiles']:,} (depth {info['depth']}, "
        f"{info['external_tilesets']} external tileset links"
        + (f", implicit {'/'.join(info['implicit'])}" if info.get("implicit") else "")
        + ")",
        f"Refinement     ADD {info['refine']['ADD']:,}, REPLACE {info['refine']['REPLACE']:,}",
        f"Contents       {contents}",
        f"Triangles      {info['triangles']:,}" + _declared(info.get("declared_triangles")),
        f"Points         {info['points']:,}" + _declared(info.get("declared_points")),
        f"Textures       {info['textures']:,}" + (f" ({textures})" if textures else ""),
        *_memory_lines(info.get("texture_memory")),
        f"Features       {info['features']:,}",
        f"Content bytes  {info['content_bytes']:,}",
    ]
    if info["region"] is not None:
        w, s, e, n, lo, hi = info["region"]
        lines += [
            f"Region         lon {w:.6f} .. {e:.6f}, lat {s:.6f} .. {n:.6f} (degrees)",
            f"Heights        {lo:.2f} .. {hi:.2f} m above the {info['height_reference']}",
        ]
    else:
        bmin, bmax = info["box"]["min"], info["box"]["max"]
        lines.append(
            "Bounds         not on the globe; local box "
            + " .. ".join("(" + ", ".join(f"{v:.3f}" for v in b) + ")" for b in (bmin, bmax))
        )
    if info.get("gltf_extensions"):
        lines.append(f"glTF ext.      {', '.join(info['gltf_extensions'])}")
    if info["problems"]:
        errors = set(info.get("errors", []))
        lines.append(
            f"Problems       {len(info['problems'])} ({len(info.get('errors', []))} errors)"
        )
        lines += [f"  - {'error' if p in errors else 'warning'}: {p}" for p in info["problems"]]
    else:
        lines.append("Problems       none")
    return "\n".join(lines)


def _memory_lines(mem: dict[str, Any] | None) -> list[str]:
    """The texture memory lines of `format_info`."""
    if not mem:
        return []
    lines = [
        f"Texture GPU    {_mib(mem['tablet'])} on a tablet, {_mib(mem['desktop'])} on a desktop"
        + (f" ({mem['ktx2_textures']:,} KTX2)" if mem["ktx2_textures"] else "")
        + f"; {_mib(mem['rgba8'])} as PNG/JPEG (RGBA8)"
    ]
    if mem.get("writer"):
        lines.append(f"  written as   {mem['writer']}")
    lines.append(f"  assuming     {mem['assumptions']}")
    return lines


def _declared(n: int | None) -> str:
    return f" (and {n:,} declared, not verified)" if n else ""
