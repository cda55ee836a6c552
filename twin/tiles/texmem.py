"""GPU memory of a glTF's textures, as a web viewer (three.js GLTFLoader + KTX2Loader, CesiumJS) holds
them: width x height x bytes per texel of the GPU format, summed over the mip chain.

Assumptions (stated by `twin tiles info` with the figures):
- KTX2 (KHR_texture_basisu) is transcoded, not decoded: ETC1S to ETC1/ETC2 RGB (a tablet or phone)
  or BC7 (a desktop GPU, the format three.js's KTX2Loader picks there; BC1 where only S3TC is
  offered would be half), UASTC to ASTC 4x4 (tablet) or BC7 (desktop); ETC1S with alpha to ETC2 RGBA
  or BC7. ETC1/BC1: 8 bytes per 4x4 block (0.5 byte/texel); ETC2 RGBA, ASTC 4x4, BC7: 16 (1 byte).
  Its mip levels are those stored in the file.
- A viewer that reads KTX2 uploads the KTX2 image alone, not the texture's PNG/JPEG fallback.
- PNG/JPEG is uploaded as RGBA8 (4 bytes/texel); the viewer generates the mip chain when the
  texture's sampler asks for mipmap filtering (or names no filter: three.js then mipmaps too).
- An image used by several textures of one glTF is uploaded once; each tile is counted (the total
  is the whole tileset loaded at once, an upper bound: a viewer holds only the tiles it draws).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twin.errors import DataError
from twin.tiles.ktx2 import Ktx2Header, read_header

PROFILES = ("tablet", "desktop")
MIPMAP_FILTERS = {9984, 9985, 9986, 9987}
BLOCK_BYTES = {  # bytes per 4x4 block, by (codec, alpha) and profile
    ("etc1s", False): {"tablet": 8, "desktop": 16},  # ETC1 / BC7
    ("etc1s", True): {"tablet": 16, "desktop": 16},  # ETC2 RGBA / BC7
    ("uastc", False): {"tablet": 16, "desktop": 16},  # ASTC 4x4 / BC7
    ("uastc", True): {"tablet": 16, "desktop": 16},
}
GPU_FORMAT = {
    ("etc1s", False): {"tablet": "ETC1", "desktop": "BC7"},
    ("etc1s", True): {"tablet": "ETC2 RGBA", "desktop": "BC7"},
    ("uastc", False): {"tablet": "ASTC 4x4", "desktop": "BC7"},
    ("uastc", True): {"tablet": "ASTC 4x4", "desktop": "BC7"},
}
ASSUMPTIONS = (
    "KTX2 transcoded: ETC1S -> ETC1 0.5 B/texel (tablet) or BC7 1 B/texel (desktop), "
    "UASTC -> ASTC 4x4 / BC7 1 B/texel, mip levels as stored; PNG/JPEG as RGBA8 4 B/texel with the "
    "mip chain the viewer generates for mipmap samplers; a KTX2 texture's fallback is not loaded; "
    "every tile counted (all loaded at once)"
)


def block_chain_bytes(w: int, h: int, levels: int, block: int) -> int:
    """Bytes of a block-compressed (4x4 texel blocks) texture with `levels` mip levels."""
    total = 0
    for i in range(levels):
        lw, lh = max(1, w >> i), max(1, h >> i)
        total += ((lw + 3) // 4) * ((lh + 3) // 4) * block
    return total


def rgba8_chain_bytes(w: int, h: int, mipmaps: bool) -> int:
    """Bytes of an RGBA8 texture, with its full mip chain down to 1x1 if `mipmaps`."""
    total, i = 0, 0
    while True:
        lw, lh = max(1, w >> i), max(1, h >> i)
        total += lw * lh * 4
        if not mipmaps or (lw == 1 and lh == 1):
            return total
        i += 1


@dataclass
class GpuTexture:
    """One texture as a viewer uploads it, and what it would take as PNG/JPEG (RGBA8)."""

    format: str  # what is uploaded: "ktx2-etc1s", "ktx2-uastc", "png", "jpeg", ...
    width: int
    height: int
    levels: int
    bytes: dict[str, int]  # GPU bytes by profile ("tablet", "desktop")
    rgba8_bytes: int  # the same texture as RGBA8 with a viewer-generated mip chain
    gpu_format: dict[str, str]
    fallback: str | None = None  # format of the PNG/JPEG fallback a KTX2 texture carries
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (`tiles info`'s texture_list entries)."""
        d = {
            "format": self.format,
            "width": self.width,
            "height": self.height,
            "levels": self.levels,
            "gpu_bytes": dict(self.bytes),
            "gpu_format": dict(self.gpu_format),
            "rgba8_bytes": self.rgba8_bytes,
        }
        if self.fallback:
            d["fallback"] = self.fallback
        if self.note:
            d["note"] = self.note
        return d


def _mipmapped(gltf: dict, texture: dict) -> bool:
    samplers = gltf.get("samplers") or []
    s = texture.get("sampler")
    if not isinstance(s, int) or not 0 <= s < len(samplers) or not isinstance(samplers[s], dict):
        return True  # the default sampler: three.js mipmaps
    f = samplers[s].get("minFilter")
    return f is None or f in MIPMAP_FILTERS


def gpu_textures(model: Any) -> list[GpuTexture]:
    """The textures of a parsed glTF (twin.tiles.gltf.GltfModel) as a KTX2-capable viewer holds them,
    each (core source, KHR_texture_basisu source) pair once."""
    gltf = model.json
    images = model.images
    seen: dict[tuple[Any, Any], GpuTexture] = {}
    for t in gltf.get("textures") or []:
        if not isinstance(t, dict):
            continue
        core = t.get("source")
        ext = ((t.get("extensions") or {}).get("KHR_texture_basisu") or {}).get("source")
        core = core if isinstance(core, int) and 0 <= core < len(images) else None
        ext = ext if isinstance(ext, int) and 0 <= ext < len(images) else None
        if core is None and ext is None:
            continue
        key = (core, ext)
        mip = _mipmapped(gltf, t)
        if key in seen:
            continue
        seen[key] = _texture(images, core, ext, mip)
    return list(seen.values())


def _texture(images: list, core: int | None, ext: int | None, mip: bool) -> GpuTexture:
    fallback = images[core] if core is not None else None
    img = images[ext] if ext is not None else fallback
    w, h = img.width or 0, img.height or 0
    if not img.ktx2:
        rgba = rgba8_chain_bytes(w, h, mip) if w and h else 0
        levels = len(bin(max(w, h, 1))) - 2 if mip else 1
        return GpuTexture(
            img.format, w, h, levels, dict.fromkeys(PROFILES, rgba), rgba,
            dict.fromkeys(PROFILES, "RGBA8"),
        )  # fmt: skip
    note = None
    try:
        hd = read_header(img.data())
    except DataError as exc:
        hd = Ktx2Header(w, h, 1, 0, "other", False)
        note = str(exc)
    w, h = hd.width, hd.height
    fb = fallback.format if fallback is not None else None
    rgba = rgba8_chain_bytes(w, h, mip)
    if hd.codec == "other":  # not Basis Universal: assume a 1 byte/texel block format
        note = note or "KTX2 without Basis Universal data: counted at 1 byte/texel"
        b = block_chain_bytes(w, h, hd.levels, 16)
        return GpuTexture(
            "ktx2", w, h, hd.levels, dict.fromkeys(PROFILES, b), rgba,
            dict.fromkeys(PROFILES, "unknown"), fb, note,
        )  # fmt: skip
    k = (hd.codec, hd.alpha)
    return GpuTexture(
        f"ktx2-{hd.codec}",
        w,
        h,
        hd.levels,
        {p: block_chain_bytes(w, h, hd.levels, BLOCK_BYTES[k][p]) for p in PROFILES},
        rgba,
        dict(GPU_FORMAT[k]),
        fb,
        note,
    )
