"""A station scene as one binary glTF 2.0 file (GLB) for web viewers and Android AR (Scene Viewer).

Built on the project's GLB encoder (twin.tiles.write_glb: its aligned buffer builder, accessor bounds
and GLB container) rather than on trimesh's exporter, because the scene needs what trimesh does not
write: node animations (translation/rotation samplers) and the geo-anchor in `asset.extras`; and the
tiles writer already passes the Khronos validator. One node and mesh per scene node, PBR
metallic-roughness materials, embedded PNG textures. KHR_texture_transform is not needed (uv are
written as they are) and no geometry compression is used: Draco or meshopt would cut the download
but AR Quick Look's converter and some viewers do not read them, and the budget holds without.

Textures whose sides are multiples of 4 are also written as KTX2 (Basis Universal ETC1S, mipmapped,
`KHR_texture_basisu`, as the city tileset's; twin.tiles.ktx2) where the basisu encoder is installed:
a viewer that reads KTX2 (the web viewer, three.js, CesiumJS) holds an eighth of the GPU memory on a
phone, every other one (and Scene Viewer, should it not) the PNG, which stays the texture's source.
The USDZ package keeps PNG alone: USD and AR Quick Look do not read KTX2.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from twin.runs import write_atomic
from twin.scenes import budget as budgets
from twin.scenes.scene import ExportInfo, Scene, enu_quat_to_yup, enu_to_yup, validate
from twin.tiles.ktx2 import encode_ktx2_many, missing_encoder_reason
from twin.tiles.write_glb import (
    ARRAY_BUFFER,
    ELEMENT_ARRAY_BUFFER,
    FLOAT,
    KHR_TEXTURE_BASISU,
    LINEAR,
    LINEAR_MIPMAP_LINEAR,
    REPEAT,
    UNSIGNED_INT,
    UNSIGNED_SHORT,
    _Builder,
    _glb,
)

GENERATOR = "krefeld-twin scene exporter"


def png_bytes(image: np.ndarray) -> bytes:
    """PNG encoding of an (H, W, 3|4) uint8 image."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals; a vertex of only degenerate faces gets +up."""
    v, f = np.asarray(vertices, dtype=np.float64), np.asarray(faces)
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    n = np.zeros_like(v)
    for k in range(3):
        np.add.at(n, f[:, k], fn)
    length = np.linalg.norm(n, axis=1)
    bad = length < 1e-12
    n[bad] = (0.0, 0.0, 1.0)
    length[bad] = 1.0
    return n / length[:, None]


def _unit_float32(n: np.ndarray) -> np.ndarray:
    """Unit vectors renormalised after the cast to float32 (the validator checks the length)."""
    n32 = n.astype(np.float32)
    return (n32 / np.linalg.norm(n32, axis=1, keepdims=True)).astype(np.float32)


def _ktx2_of(scene: Scene, ktx2: bool | None) -> dict[str, bytes]:
    """KTX2 bytes by material name of the scene's textures with sides a multiple of 4 (what
    KHR_texture_basisu asks of them), when `ktx2` (None: when the encoder is installed)."""
    if ktx2 is None:
        ktx2 = missing_encoder_reason() is None
    if not ktx2:
        return {}
    todo = [
        m
        for m in scene.materials()
        if m.texture is not None and m.texture.shape[0] % 4 == 0 and m.texture.shape[1] % 4 == 0
    ]
    names = [f"scene {scene.name!r}: material {m.name!r}" for m in todo]
    out = encode_ktx2_many([np.ascontiguousarray(m.texture) for m in todo], names)
    return {m.name: data for m, data in zip(todo, out, strict=True)}


def _materials(
    scene: Scene, b: _Builder, ktx2: dict[str, bytes]
) -> tuple[dict[str, int], dict[str, Any], list[dict]]:
    """glTF materials (index by name), the JSON of materials/textures/images/samplers, texture list."""
    index: dict[str, int] = {}
    mats, textures, images = [], [], []
    textures_info: list[dict] = []
    for m in scene.materials():
        pbr: dict[str, Any] = {
            "baseColorFactor": [float(c) for c in m.base_color],
            "metallicFactor": float(m.metallic),
            "roughnessFactor": float(m.roughness),
        }
        if m.texture is not None:
            images.append({"bufferView": b.view(png_bytes(m.texture)), "mimeType": "image/png"})
            tex: dict[str, Any] = {"sampler": 0, "source": len(images) - 1}
            if m.name in ktx2:
                images.append({"bufferView": b.view(ktx2[m.name]), "mimeType": "image/ktx2"})
                tex["extensions"] = {KHR_TEXTURE_BASISU: {"source": len(images) - 1}}
            textures.append(tex)
            pbr["baseColorTexture"] = {"index": len(textures) - 1}
            h, w = m.texture.shape[:2]
            info: dict[str, Any] = {"material": m.name, "width": int(w), "height": int(h)}
            info["format"] = "ktx2+png" if m.name in ktx2 else "png"
            textures_info.append(info)
        mat: dict[str, Any] = {"name": m.name, "pbrMetallicRoughness": pbr}
        if m.base_color[3] < 1.0 or (m.texture is not None and m.texture.shape[2] == 4):
            mat["alphaMode"] = "BLEND"
        index[m.name] = len(mats)
        mats.append(mat)
    out: dict[str, Any] = {"materials": mats}
    if textures:
        out["textures"] = textures
        out["images"] = images
        out["samplers"] = [
            {
                "magFilter": LINEAR,
                "minFilter": LINEAR_MIPMAP_LINEAR,
                "wrapS": REPEAT,
                "wrapT": REPEAT,
            }
        ]
    return index, out, textures_info


def encode_scene(scene: Scene, ktx2: bool | None = None) -> tuple[bytes, list[dict]]:
    """The GLB bytes of a scene and its texture list; `ktx2`: also KTX2 textures (None: when the
    basisu encoder is installed)."""
    validate(scene)
    b = _Builder()
    ktx = _ktx2_of(scene, ktx2)
    mat_index, mat_json, textures_info = _materials(scene, b, ktx)
    meshes, nodes = [], []
    for n in scene.nodes:
        pos = enu_to_yup(n.vertices)
        attrs = {
            "POSITION": b.accessor(pos, "VEC3", FLOAT, ARRAY_BUFFER, bounds=True),
            "NORMAL": b.accessor(
                _unit_float32(enu_to_yup(vertex_normals(n.vertices, n.faces))),
                "VEC3",
                FLOAT,
                ARRAY_BUFFER,
            ),
        }
        if n.uv is not None:
            uv = np.asarray(n.uv, dtype=np.float64).copy()
            uv[:, 1] = 1.0 - uv[:, 1]  # glTF's v runs down from the image's top row
            attrs["TEXCOORD_0"] = b.accessor(uv, "VEC2", FLOAT, ARRAY_BUFFER)
        idx = np.asarray(n.faces).reshape(-1)
        comp = UNSIGNED_SHORT if len(pos) <= 65535 else UNSIGNED_INT
        prim = {
            "attributes": attrs,
            "indices": b.accessor(idx, "SCALAR", comp, ELEMENT_ARRAY_BUFFER),
            "material": mat_index[n.material.name],
            "mode": 4,
        }
        meshes.append({"name": n.name, "primitives": [prim]})
        nodes.append({"name": n.name, "mesh": len(meshes) - 1, "extras": {"kind": n.kind}})
    node_of = {n.name: i for i, n in enumerate(scene.nodes)}
    animations = []
    for t in scene.animations:
        i = node_of[t.node]
        times = b.accessor(
            np.asarray(t.times, dtype=np.float64), "SCALAR", FLOAT, None, bounds=True
        )
        trans = enu_to_yup(t.translations)
        rot = enu_quat_to_yup(t.rotations)
        rot /= np.linalg.norm(rot, axis=1, keepdims=True)
        nodes[i]["translation"] = [float(v) for v in trans[0]]
        nodes[i]["rotation"] = [float(v) for v in rot[0]]
        samplers = [
            {
                "input": times,
                "output": b.accessor(trans, "VEC3", FLOAT, None),
                "interpolation": "LINEAR",
            },
            {
                "input": times,
                "output": b.accessor(rot, "VEC4", FLOAT, None),
                "interpolation": "LINEAR",
            },
        ]
        channels = [
            {"sampler": 0, "target": {"node": i, "path": "translation"}},
            {"sampler": 1, "target": {"node": i, "path": "rotation"}},
        ]
        animations.append({"name": t.node, "samplers": samplers, "channels": channels})
    gltf: dict[str, Any] = {
        "asset": {
            "version": "2.0",
            "generator": GENERATOR,
            "extras": {
                "geo_anchor": scene.anchor.as_dict(),
                "sources": list(scene.sources),
                "runs": list(scene.runs),
            },
        },
        "scene": 0,
        "scenes": [{"name": scene.name, "nodes": list(range(len(nodes)))}],
        "nodes": nodes,
        "meshes": meshes,
        **mat_json,
    }
    if animations:
        gltf["animations"] = animations
    if ktx:
        gltf["extensionsUsed"] = [KHR_TEXTURE_BASISU]  # not required: each has a PNG source
    gltf["accessors"] = b.accessors
    gltf["bufferViews"] = b.views
    blob = b.blob()
    gltf["buffers"] = [{"byteLength": len(blob)}]
    json.dumps(gltf)  # fails here, not half-way through a file, on a value JSON cannot hold
    return _glb(gltf, blob), textures_info


def write_glb(scene: Scene, path: Path, budget: budgets.Budget = budgets.MOBILE_AR) -> ExportInfo:
    """Write the scene as GLB (atomically: a temporary name, then rename) after checking it against
    the budget (triangles, textures, then file size); raises DataError naming what is over."""
    path = Path(path)
    budgets.check(scene, budget)
    data, textures = encode_scene(scene)
    budgets.check_size(path.name, len(data), budget)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)
    return ExportInfo(
        path=str(path),
        format="glb",
        bytes=path.stat().st_size,
        triangles=scene.triangles,
        vertices=sum(len(n.vertices) for n in scene.nodes),
        textures=textures,
    )
