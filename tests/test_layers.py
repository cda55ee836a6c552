"""Layers that point one way (the README's "Architecture"): every import in `twin/` is parsed with `ast`
and checked against the allowed directions.

    ground floor (errors, config, geo, runs)  <-  core  <-  data (city, tiles, citytiles, products)
        <-  domains (traffic, groundwater, heat, sensors, scenes, viewer)  <-  app  <-  commands

Commands are `twin/cli.py` and each `twin/<package>/commands.py`: they may use anything but a sibling
domain. No domain imports a sibling domain; `twin.tiles` (generic 3D Tiles) imports nothing of the
city; nothing but commands imports `twin.app`.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

TWIN = Path(__file__).resolve().parents[1] / "twin"
GROUND = {
    "twin",
    "twin.errors",
    "twin.config",
    "twin.geo",
    "twin.runs",
    "twin.report",
    "twin.progress",
}
DATA = ("city", "tiles", "citytiles", "products")
DOMAINS = ("traffic", "groundwater", "heat", "sensors", "scenes", "viewer")
RANK = {"ground": 0, "core": 1, "data": 2, "domain": 3, "app": 4, "commands": 5}
# Inside the data layer: what each package may import of its siblings.
DATA_USES = {"city": set(), "tiles": set(), "products": set(), "citytiles": {"city", "tiles"}}


def _module_name(path: Path) -> str:
    parts = path.relative_to(TWIN.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in the file, also those inside functions."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{a.name}") for a in node.names if base == "twin"]
    return [(line, name) for line, name in found if name == "twin" or name.startswith("twin.")]


def layer_of(module: str) -> tuple[str, str]:
    """(layer, package) of a twin module: the package is e.g. 'traffic' for twin.traffic.sim."""
    parts = module.split(".")
    if module == "twin.cli" or (len(parts) > 2 and parts[-1] == "commands"):
        return "commands", parts[1] if len(parts) > 2 else "cli"
    if module in GROUND or len(parts) < 2:
        return "ground", parts[-1]
    top = parts[1]
    if top == "core":
        return "core", top
    if top in DATA:
        return "data", top
    if top in DOMAINS:
        return "domain", top
    if top == "app":
        return "app", top
    raise AssertionError(f"{module}: a package the layer rules do not know; add it to them")


def violation(importer: str, imported: str) -> str | None:
    """Why `importer` may not import `imported`, or None when the arrow points the right way."""
    (il, ip), (tl, tp) = layer_of(importer), layer_of(imported)
    if tl == "commands" and il != "commands":
        return "only commands import commands"
    if il == "commands":
        if tl in ("domain", "commands") and ip != tp and ip != "cli" and tp in DOMAINS:
            return "a domain's commands use no sibling domain"
        return None
    if RANK[tl] > RANK[il]:
        return f"a {il} module imports the higher {tl} layer"
    if il == tl == "domain" and ip != tp:
        return "a model never imports another model (sibling domain)"
    if il == tl == "data" and ip != tp and tp not in DATA_USES[ip]:
        return f"twin.{ip} may not import twin.{tp}"
    return None


def _all_imports() -> list[tuple[str, int, str]]:
    return [
        (_module_name(f), line, name)
        for f in sorted(TWIN.rglob("*.py"))
        for line, name in _imports(f)
    ]


def test_every_import_points_down_the_layers():
    wrong = []
    for importer, line, imported in _all_imports():
        why = violation(importer, imported)
        if why:
            wrong.append(f"{importer}:{line} imports {imported}: {why}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    ("importer", "imported", "allowed"),
    [
        ("twin.city.steps", "twin.traffic.network", False),  # the data build knows no domain
        ("twin.tiles.writer", "twin.city.textures", False),  # generic tiles: nothing of the city
        ("twin.citytiles.writer", "twin.tiles.write_glb", True),
        ("twin.citytiles.writer", "twin.city.buildings", True),
        ("twin.groundwater.scenario", "twin.sensors.catalogue", False),  # model -> model
        ("twin.scenes.vehicles", "twin.traffic.kpis", False),
        ("twin.scenes.vehicles", "twin.runs", True),  # run outputs through the run layer
        ("twin.traffic.runs", "twin.core.model", True),
        ("twin.core.coupler", "twin.groundwater.model", False),  # core imports no domain
        ("twin.runs", "twin.core.clock", False),
        ("twin.sensors.feed", "twin.app.pack", False),  # nothing below imports app
        ("twin.app.steps", "twin.traffic.network", True),
        ("twin.traffic.commands", "twin.app.pack", True),
        ("twin.traffic.commands", "twin.groundwater.run", False),
        ("twin.app.demo", "twin.cli", False),
    ],
)
def test_the_rules_themselves(importer: str, imported: str, allowed: bool):
    assert (violation(importer, imported) is None) is allowed


def test_relative_and_nested_imports_are_seen(tmp_path: Path, monkeypatch):
    pkg = tmp_path / "twin" / "city"
    pkg.mkdir(parents=True)
    (pkg / "x.py").write_text(
        "from ..traffic import sim\n\ndef f():\n    import twin.sensors.store\n", encoding="utf-8"
    )
    monkeypatch.setattr(sys.modules[__name__], "TWIN", tmp_path / "twin")
    assert [n for _, n in _imports(pkg / "x.py")] == ["twin.traffic", "twin.sensors.store"]


def test_no_code_finds_data_next_to_itself():
    """Data comes from the pack or the working directory, never through `__file__`."""
    users = [str(f.relative_to(TWIN.parent)) for f in TWIN.rglob("*.py")
             if "__file__" in f.read_text(encoding="utf-8")]  # fmt: skip
    assert users == []


@pytest.mark.parametrize("argv", [[], ["data"], ["sensors"], ["scene"], ["traffic"], ["tiles"]])
def test_building_the_parser_loads_no_heavy_module(argv: list[str]):
    """`twin --help`, `twin data …` and the rest parse their options without numba, SUMO or
    pyvista: those load inside the command functions that need them. (`twin groundwater` is not
    listed: its package's `__init__` imports the numba model.)"""
    code = (
        "import sys; from twin.cli import build_parser; "
        f"build_parser({(argv[0] if argv else '')!r}).format_help(); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'numba', 'libsumo', 'traci', 'sumolib', 'pyvista', 'vtk', 'rasterio', 'trimesh'}))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
