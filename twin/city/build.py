"""Incremental build of the data products: each step declares its sources and products and is re-run only
when what it depends on changed.

A source counts as changed when its content or its modification time changes (as with make, `touch` forces a
rebuild of what depends on it); a step counts as changed when its code version or its part of pack.toml
changes. Products are written under a temporary name and moved into place only when the whole step
succeeded, so an interrupted or failed build never leaves half-written products or a manifest that lies.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from twin.city.pack import DataPack, Layer
from twin.errors import TwinError
from twin.progress import Progress, as_progress

MANIFEST = "manifest.json"
LOCK = ".lock"  # held (flock) while a build runs in the folder


class BuildError(TwinError):
    """A build step failed; its previous products (if any) are untouched."""


@dataclass(frozen=True)
class Step:
    """One build step: reads source layers and earlier products, writes its own products."""

    name: str
    run: Callable[[StepContext], None]
    outputs: tuple[str, ...]
    sources: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    version: int = 1
    doc: str = ""
    settings: tuple[str, ...] = ()  # `[pack]` settings the step reads (part of its cache key)


@dataclass
class StepContext:
    """What a running step sees: the pack, where to write, where earlier products are."""

    pack: DataPack
    build_dir: Path
    partial_dir: Path
    progress: Callable[[str], None]

    def out(self, name: str) -> Path:
        """Path to write product `name` to (a file or a folder; a temporary place until the step
        succeeds)."""
        return self.partial_dir / name

    def product(self, name: str) -> Path:
        """Path of a product built by an earlier step."""
        return self.build_dir / name

    def source(self, layer: str) -> Path:
        """Path of a source layer's file."""
        return self.pack.layers[layer].path


@dataclass(frozen=True)
class StepResult:
    """What happened to one step in a build."""

    name: str
    status: str  # "built" or "cached"
    seconds: float
    outputs: tuple[str, ...]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _file_record(path: Path, known: dict[str, Any] | None) -> dict[str, Any]:
    """Hash, size and mtime of a file; the hash is reused when size and mtime are unchanged.

    A folder (e.g. a tileset) is recorded by a hash over its files' relative paths and contents.
    """
    if path.is_dir():
        h = hashlib.sha256()
        size = 0
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f.relative_to(path).as_posix().encode())
            h.update(_sha256(f).encode())
            size += f.stat().st_size
        return {"sha256": h.hexdigest(), "bytes": size, "mtime_ns": path.stat().st_mtime_ns}
    st = path.stat()
    if known and known.get("bytes") == st.st_size and known.get("mtime_ns") == st.st_mtime_ns:
        return dict(known)
    return {"sha256": _sha256(path), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def _layer_record(layer: Layer, known: dict[str, Any] | None) -> dict[str, Any]:
    """The record of a source layer: that of its file, or, for a layer of several files (CityGML
    tiles from a folder or glob), a hash over exactly those files' names and contents (`files`
    keeps each file's record so an unchanged file is not hashed again)."""
    files = layer.files()
    if not files:
        raise BuildError(f"layer '{layer.name}': no file at {layer.path}")
    if files == [layer.path]:
        return _file_record(layer.path, known)
    root = Path(os.path.commonpath([f.parent for f in files]))
    old = (known or {}).get("files", {})
    each = {f.relative_to(root).as_posix(): f for f in files}
    recs = {name: _file_record(f, old.get(name)) for name, f in each.items()}
    h = hashlib.sha256()
    for name, rec in recs.items():
        h.update(name.encode())
        h.update(rec["sha256"].encode())
    return {
        "sha256": h.hexdigest(),
        "bytes": sum(r["bytes"] for r in recs.values()),
        "mtime_ns": max(r["mtime_ns"] for r in recs.values()),
        "files": recs,
    }


def _key(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _order(steps: Iterable[Step]) -> list[Step]:
    """Steps sorted so that each runs after the steps it reads from."""
    by_name = {s.name: s for s in steps}
    done: list[Step] = []
    seen: set[str] = set()

    def visit(step: Step, stack: tuple[str, ...]) -> None:
        if step.name in seen:
            return
        if step.name in stack:
            raise BuildError(f"build steps depend on each other in a cycle: {' -> '.join(stack)}")
        for dep in step.after:
            if dep not in by_name:
                raise BuildError(f"build step '{step.name}' needs unknown step '{dep}'")
            visit(by_name[dep], (*stack, step.name))
        seen.add(step.name)
        done.append(step)

    for s in by_name.values():
        visit(s, ())
    return done


def read_manifest(build_dir: Path) -> dict[str, Any]:
    """The manifest of a build folder, or an empty one."""
    path = build_dir / MANIFEST
    if not path.exists():
        return {"steps": {}}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {"steps": {}}  # an unreadable manifest only costs a full rebuild


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def run_build(
    pack: DataPack,
    steps: Iterable[Step],
    build_dir: Path,
    *,
    only: Iterable[str] | None = None,
    force: bool = False,
    progress: Progress | Callable[[str], None] | None = None,
) -> list[StepResult]:
    """Run the steps whose inputs changed (or all with `force`); return what each step did.

    `progress` sees a stage per step built (and the steps' own messages) and the steps done of
    all; a plain callable of one message sees the stages only (see :func:`twin.progress.as_progress`).
    """
    progress = as_progress(progress)
    ordered = _order(steps)
    if only is not None:
        wanted = set(only)
        unknown = wanted - {s.name for s in ordered}
        if unknown:
            names = ", ".join(s.name for s in ordered)
            raise BuildError(f"unknown build step(s) {', '.join(sorted(unknown))}; known: {names}")
        ordered = [s for s in ordered if s.name in wanted or _needed_by(s, wanted, ordered)]
    build_dir.mkdir(parents=True, exist_ok=True)
    with _build_lock(build_dir, progress):
        return _run_ordered(pack, ordered, build_dir, force, progress)


@contextlib.contextmanager
def _build_lock(build_dir: Path, progress: Progress) -> Iterator[None]:
    """Hold the build folder's lock: a second build of the same folder (another `twin data build`,
    a test's fixture) waits for the first, then finds its steps up to date, instead of both writing
    the same partial outputs. The lock is the OS's (flock), so a killed build leaves none behind."""
    with (build_dir / LOCK).open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress.stage(f"waiting for another build of {build_dir}")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run_ordered(
    pack: DataPack, ordered: list[Step], build_dir: Path, force: bool, progress: Progress
) -> list[StepResult]:
    """run_build's work, under the build folder's lock."""
    manifest = read_manifest(build_dir)
    old_sources = manifest.get("sources", {})
    sources: dict[str, Any] = {}
    for name in sorted({layer for s in ordered for layer in s.sources}):
        if name not in pack.layers:
            continue  # an optional layer this pack does not have: the step sees it absent
        layer = pack.layers[name]
        rec = _layer_record(layer, old_sources.get(name))
        sources[name] = {"path": str(layer.path), "status": layer.status, **rec}
    manifest["pack"] = {"name": pack.name, "file": str(pack.file), "extent": list(pack.extent)}
    manifest["sources"] = {**old_sources, **sources}
    manifest.setdefault("steps", {})
    results: list[StepResult] = []
    progress.advance(0, len(ordered))
    for step in ordered:
        payload = {
            "step": step.name,
            "version": step.version,
            "config": pack.config_of(*step.sources, settings=step.settings),
            "sources": {
                n: [sources[n]["sha256"], sources[n]["mtime_ns"]] if n in sources else None
                for n in step.sources
            },
            "after": {
                d: {o: r["sha256"] for o, r in manifest["steps"][d]["outputs"].items()}
                for d in step.after
            },
        }
        key = _key(payload)
        record = manifest["steps"].get(step.name)
        fresh = (
            not force
            and record is not None
            and record.get("key") == key
            and all((build_dir / o).exists() for o in step.outputs)
        )
        if fresh:
            results.append(StepResult(step.name, "cached", 0.0, step.outputs))
            progress.advance(len(results), len(ordered))
            continue
        progress.stage(f"building {step.name}")
        t0 = time.perf_counter()
        outputs = _run_step(pack, step, build_dir, progress.stage)
        seconds = time.perf_counter() - t0
        manifest["steps"][step.name] = {
            "key": key,
            "version": step.version,
            "doc": step.doc,
            "sources": list(step.sources),
            "after": list(step.after),
            "outputs": outputs,
            "seconds": round(seconds, 3),
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        _write_json_atomic(build_dir / MANIFEST, manifest)
        results.append(StepResult(step.name, "built", seconds, step.outputs))
        progress.advance(len(results), len(ordered))
    _write_json_atomic(build_dir / MANIFEST, manifest)
    return results


def _needed_by(step: Step, wanted: set[str], ordered: list[Step]) -> bool:
    """True if a wanted step reads (directly or not) from `step`."""
    by_name = {s.name: s for s in ordered}
    stack = list(wanted)
    seen = set()
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        deps = by_name[name].after
        if step.name in deps:
            return True
        stack.extend(deps)
    return False


def _run_step(
    pack: DataPack, step: Step, build_dir: Path, progress: Callable[[str], None]
) -> dict[str, Any]:
    partial = build_dir / ".partial" / step.name
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    ctx = StepContext(pack=pack, build_dir=build_dir, partial_dir=partial, progress=progress)
    try:
        step.run(ctx)
        missing = [o for o in step.outputs if not (partial / o).exists()]
        if missing:
            raise BuildError(f"build step '{step.name}' did not write {', '.join(missing)}")
        outputs = {}
        for o in step.outputs:
            target = build_dir / o
            target.parent.mkdir(parents=True, exist_ok=True)
            _move_into_place(partial / o, target)
            outputs[o] = _file_record(target, None)
        return outputs
    except TwinError:
        raise
    except Exception as exc:
        raise BuildError(f"build step '{step.name}' failed: {type(exc).__name__}: {exc}") from exc
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _move_into_place(new: Path, target: Path) -> None:
    """Replace `target` by `new`: a file atomically; a folder by two renames (old one out, new one in)."""
    if not new.is_dir():
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(new, target)
        return
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)
