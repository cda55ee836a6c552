"""A station scene as USDZ for iOS AR Quick Look, with usd-core: the same meshes, materials, textures
and vehicle animations as the GLB.

A y-up stage in metres with one default prim `/<scene>`; `Geom/<node>` meshes (points, triangles,
normals, st) bound to `Materials/<material>` UsdPreviewSurface networks (UsdUVTexture fed by a
UsdPrimvarReader_float2 of st); vehicles animated by time samples of xformOp:translate/orient at
TIME_CODES_PER_SECOND; the geo-anchor, sources and runs in the root layer's customLayerData. The
package is made by UsdUtils.CreateNewUsdzPackage from one usdc layer and PNG textures, so
nothing refers outside it. `arkit_errors` checks a package against AR Quick Look's rules.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
from pxr import Gf, Sdf, Tf, Usd, UsdGeom, UsdShade, UsdUtils, Vt

from twin.errors import DataError
from twin.scenes import budget as budgets
from twin.scenes.export_glb import png_bytes, vertex_normals
from twin.scenes.scene import ExportInfo, Material, Scene, enu_quat_to_yup, enu_to_yup, validate

TIME_CODES_PER_SECOND = 30.0


def _identifier(name: str, taken: set[str]) -> str:
    """A valid, unique prim name for `name`."""
    base = Tf.MakeValidIdentifier(name or "_")
    out, k = base, 1
    while out in taken:
        k += 1
        out = f"{base}_{k}"
    taken.add(out)
    return out


def _material(
    stage: Usd.Stage, path: Sdf.Path, m: Material, texture: str | None
) -> UsdShade.Material:
    """A UsdPreviewSurface material; `texture` the package-relative PNG for the base colour."""
    mat = UsdShade.Material.Define(stage, path)
    surf = UsdShade.Shader.Define(stage, path.AppendChild("PreviewSurface"))
    surf.CreateIdAttr("UsdPreviewSurface")
    rgb = Gf.Vec3f(*(float(c) for c in m.base_color[:3]))
    surf.CreateInput("metallic", Sdf.ValueTypeNames.Float).Set(float(m.metallic))
    surf.CreateInput("roughness", Sdf.ValueTypeNames.Float).Set(float(m.roughness))
    if m.base_color[3] < 1.0:
        surf.CreateInput("opacity", Sdf.ValueTypeNames.Float).Set(float(m.base_color[3]))
    diffuse = surf.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f)
    if texture is None:
        diffuse.Set(rgb)
    else:
        reader = UsdShade.Shader.Define(stage, path.AppendChild("StReader"))
        reader.CreateIdAttr("UsdPrimvarReader_float2")
        reader.CreateInput("varname", Sdf.ValueTypeNames.String).Set("st")
        reader.CreateOutput("result", Sdf.ValueTypeNames.Float2)
        tex = UsdShade.Shader.Define(stage, path.AppendChild("BaseColorTexture"))
        tex.CreateIdAttr("UsdUVTexture")
        tex.CreateInput("file", Sdf.ValueTypeNames.Asset).Set(Sdf.AssetPath(texture))
        tex.CreateInput("st", Sdf.ValueTypeNames.Float2).ConnectToSource(
            reader.ConnectableAPI(), "result"
        )
        tex.CreateInput("wrapS", Sdf.ValueTypeNames.Token).Set("repeat")
        tex.CreateInput("wrapT", Sdf.ValueTypeNames.Token).Set("repeat")
        tex.CreateInput("sourceColorSpace", Sdf.ValueTypeNames.Token).Set("sRGB")
        if tuple(m.base_color) != (1.0, 1.0, 1.0, 1.0):
            tex.CreateInput("scale", Sdf.ValueTypeNames.Float4).Set(
                Gf.Vec4f(*(float(c) for c in m.base_color))
            )
        tex.CreateOutput("rgb", Sdf.ValueTypeNames.Float3)
        diffuse.ConnectToSource(tex.ConnectableAPI(), "rgb")
    surf.CreateOutput("surface", Sdf.ValueTypeNames.Token)
    mat.CreateSurfaceOutput().ConnectToSource(surf.ConnectableAPI(), "surface")
    return mat


def _stage(scene: Scene, layer_path: Path, folder: Path) -> list[dict]:
    """Author the scene's stage into `layer_path` (textures beside it); returns the texture list."""
    stage = Usd.Stage.CreateNew(str(layer_path))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    root_name = _identifier(scene.name, set())
    root = UsdGeom.Xform.Define(stage, Sdf.Path.absoluteRootPath.AppendChild(root_name))
    Usd.ModelAPI(root.GetPrim()).SetKind("component")
    stage.SetDefaultPrim(root.GetPrim())
    geom_path = root.GetPath().AppendChild("Geom")
    UsdGeom.Scope.Define(stage, geom_path)
    mats_path = root.GetPath().AppendChild("Materials")
    UsdGeom.Scope.Define(stage, mats_path)

    materials, textures, taken = {}, [], set()
    (folder / "textures").mkdir(exist_ok=True)
    for m in scene.materials():
        name = _identifier(m.name, taken)
        rel = None
        if m.texture is not None:
            rel = f"{name}.png"
            (folder / rel).write_bytes(png_bytes(m.texture))
            h, w = m.texture.shape[:2]
            textures.append({"material": m.name, "width": int(w), "height": int(h)})
        materials[m.name] = _material(stage, mats_path.AppendChild(name), m, rel)

    tracks = {t.node: t for t in scene.animations}
    times = [float(t) for tr in scene.animations for t in tr.times]
    taken = set()
    for n in scene.nodes:
        mesh = UsdGeom.Mesh.Define(stage, geom_path.AppendChild(_identifier(n.name, taken)))
        pts = enu_to_yup(n.vertices)
        mesh.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(pts.astype(np.float32)))
        mesh.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(np.full(len(n.faces), 3, np.int32)))
        mesh.CreateFaceVertexIndicesAttr(
            Vt.IntArray.FromNumpy(np.asarray(n.faces, dtype=np.int32).reshape(-1))
        )
        mesh.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)
        normals = enu_to_yup(vertex_normals(n.vertices, n.faces)).astype(np.float32)
        mesh.CreateNormalsAttr(Vt.Vec3fArray.FromNumpy(normals))
        mesh.SetNormalsInterpolation(UsdGeom.Tokens.vertex)
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        mesh.CreateExtentAttr(Vt.Vec3fArray([Gf.Vec3f(*lo), Gf.Vec3f(*hi)]))
        if n.uv is not None:
            st = UsdGeom.PrimvarsAPI(mesh).CreatePrimvar(
                "st", Sdf.ValueTypeNames.TexCoord2fArray, UsdGeom.Tokens.vertex
            )
            st.Set(Vt.Vec2fArray.FromNumpy(np.asarray(n.uv, dtype=np.float32)))
        mesh.GetPrim().SetCustomDataByKey("kind", n.kind)
        UsdShade.MaterialBindingAPI.Apply(mesh.GetPrim()).Bind(materials[n.material.name])
        if n.name in tracks:
            t = tracks[n.name]
            translate = mesh.AddTranslateOp(UsdGeom.XformOp.PrecisionDouble)
            orient = mesh.AddOrientOp(UsdGeom.XformOp.PrecisionFloat)
            trans, rot = enu_to_yup(t.translations), enu_quat_to_yup(t.rotations)
            for k, time in enumerate(np.asarray(t.times, dtype=np.float64)):
                code = Usd.TimeCode(time * TIME_CODES_PER_SECOND)
                translate.Set(Gf.Vec3d(*trans[k]), code)
                x, y, z, w = (float(v) for v in rot[k])
                orient.Set(Gf.Quatf(w, x, y, z).GetNormalized(), code)
    if times:
        stage.SetTimeCodesPerSecond(TIME_CODES_PER_SECOND)
        stage.SetFramesPerSecond(TIME_CODES_PER_SECOND)
        stage.SetStartTimeCode(min(times) * TIME_CODES_PER_SECOND)
        stage.SetEndTimeCode(max(times) * TIME_CODES_PER_SECOND)
    layer = stage.GetRootLayer()
    layer.customLayerData = {
        "geo_anchor": scene.anchor.as_dict(),
        "sources": Vt.StringArray(list(scene.sources)),
        "runs": Vt.StringArray(list(scene.runs)),
    }
    layer.Save()
    return textures


def write_usdz(scene: Scene, path: Path, budget: budgets.Budget = budgets.MOBILE_AR) -> ExportInfo:
    """Write the scene as an AR Quick Look USDZ (atomically) after checking it against the budget;
    raises DataError naming what is over, or what usd-core refused."""
    path = Path(path)
    validate(scene)
    budgets.check(scene, budget)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.usdz")
    try:
        with tempfile.TemporaryDirectory(prefix="usdz-") as work:
            folder = Path(work)
            layer = folder / "scene.usdc"
            textures = _stage(scene, layer, folder)
            # one usdc layer and its PNGs as they are: the ARKit variant would flatten the layer again
            ok = UsdUtils.CreateNewUsdzPackage(Sdf.AssetPath(str(layer)), str(tmp))
            if not ok or not tmp.exists():
                raise DataError(f"{path.name}: usd-core could not package the scene as USDZ")
        budgets.check_file(tmp, budget)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportInfo(
        path=str(path),
        format="usdz",
        bytes=path.stat().st_size,
        triangles=scene.triangles,
        vertices=sum(len(n.vertices) for n in scene.nodes),
        textures=textures,
    )


def arkit_errors(path: Path) -> list[str]:
    """Errors AR Quick Look would have with a USDZ: usd-core's ``ComplianceChecker`` with its ARKit
    rules (one usdc root layer, a default prim, ARKit's prim types and shaders, package files)."""
    with warnings.catch_warnings():  # deprecated for the validation framework, still the ARKit one
        warnings.simplefilter("ignore", DeprecationWarning)
        checker = UsdUtils.ComplianceChecker(arkit=True, skipARKitRootLayerCheck=False,
                                             rootPackageOnly=False)  # fmt: skip
    checker.CheckCompliance(str(Path(path)))
    return [str(e) for e in checker.GetErrors() + checker.GetFailedChecks()]
