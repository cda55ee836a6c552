"""numba's on-disk cache keys a compiled kernel by its module, function name and bytecode, not by
its compile options: two dispatchers of one function (a parallel and a serial one, say) share one
cache entry, and whichever compiles first is loaded for both. The threaded energy-balance kernel
ran on one thread for that reason. Every cached kernel of the package must have a file of its own.
"""

from __future__ import annotations

import importlib
from collections import defaultdict
from pathlib import Path

from numba.core.registry import CPUDispatcher

TWIN = Path(__file__).resolve().parents[1] / "twin"


def _kernel_modules() -> list[str]:
    names = []
    for path in sorted(TWIN.rglob("*.py")):
        text = path.read_text("utf-8")
        if "cache=True" in text and "numba" in text:
            parts = path.relative_to(TWIN.parent).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_every_cached_kernel_has_a_cache_file_of_its_own() -> None:
    modules = _kernel_modules()
    assert len(modules) >= 5  # heat, groundwater, tiles, ... (the scan finds them)
    paths: dict[str, set[str]] = defaultdict(set)
    for name in modules:
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            cache = getattr(value, "_cache", None)
            if isinstance(value, CPUDispatcher) and hasattr(cache, "_cache_file"):
                paths[cache._cache_file._index_path].add(f"{name}.{attr}")
    assert sum(len(v) for v in paths.values()) >= 20
    shared = {p: sorted(v) for p, v in paths.items() if len(v) > 1}
    assert not shared, f"dispatchers sharing one numba cache entry: {shared}"


def test_a_shared_entry_would_be_seen() -> None:
    """The check above finds two dispatchers of one function (the case it guards against)."""
    from numba import njit

    from twin.heat import energy

    twice = njit(cache=True)(energy._balance_kernel.py_func)
    assert (
        twice._cache._cache_file._index_path
        == energy._balance_kernel._cache._cache_file._index_path
    )
    own = energy._balance_serial._cache._cache_file._index_path
    assert own != energy._balance_kernel._cache._cache_file._index_path
