"""Link transforms of the coupler that know no domain: values matched by point id, rasters moved
onto another raster grid.

A transform maps a source output's values to a target input's (``Coupler.link(..., transform)``);
these are the ones every coupled run may name (``by_id``, ``regrid``), and the merging of a feed's
per-device gaps into outages that reports list.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["by_id", "outages", "regrid"]


def by_id(source_ids: Sequence[str], target_ids: Sequence[str], fill: float) -> Callable:
    """A link transform from values on the source's points to the target's, matched by point id (well, station).

    A target point the source does not have gets ``fill`` (NaN for a head, 0 for a weight).
    """
    where = {str(s): i for i, s in enumerate(source_ids)}
    index = np.array([where.get(str(t), -1) for t in target_ids], dtype=int)
    known = index >= 0

    def transform(values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=float).ravel()
        out = np.full(index.shape, fill)
        out[known] = values[index[known]]
        return out

    return transform


def outages(gaps: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per-well gaps merged into outages: overlapping gaps become one, with every well affected.

    A gap is ``{"well", "start", "end"}`` with ISO 8601 UTC times (``end`` None: still open at the
    run's end); an outage is ``{"start", "end", "wells"}`` (wells sorted), oldest first.
    """
    far = "9999"
    out: list[dict[str, Any]] = []
    for g in sorted(gaps, key=lambda g: g["start"]):
        end = g["end"] or far
        if out and g["start"] <= (out[-1]["end"] or far):
            last = out[-1]
            last["wells"].add(g["well"])
            if last["end"] is not None and end > last["end"]:
                last["end"] = g["end"]
        else:
            out.append({"start": g["start"], "end": g["end"], "wells": {g["well"]}})
    return [{**o, "wells": sorted(o["wells"])} for o in out]


def regrid(source: Any, target: Any) -> Callable:
    """A link transform from one north-up raster grid to another (``twin.core.Grid``s, same CRS):
    bilinear between the source's cell centres, nearest at its outer half cells, NaN outside it
    (the ground water's 100 m heads onto the heat model's 10 m cells, say)."""
    from scipy.ndimage import map_coordinates

    from twin.core.errors import CouplingError

    if source.kind != "raster" or target.kind != "raster":
        raise CouplingError("transform 'regrid': both ends must be rasters")
    if source.crs != target.crs:
        raise CouplingError(
            f"transform 'regrid': CRS {source.crs} -> {target.crs} is not supported"
        )
    sa, _, sc, _, se, sf = source.transform
    ta, _, tc, _, te, tf = target.transform
    rows, cols = target.shape
    x = tc + (np.arange(cols) + 0.5) * ta
    y = tf + (np.arange(rows) + 0.5) * te
    col = (x - sc) / sa - 0.5
    row = (y - sf) / se - 0.5
    rr, cc = np.meshgrid(row, col, indexing="ij")
    ny, nx = source.shape
    outside = (rr < -0.5) | (rr > ny - 0.5) | (cc < -0.5) | (cc > nx - 0.5)
    coords = np.stack([np.clip(rr, 0, ny - 1), np.clip(cc, 0, nx - 1)])

    def transform(values: np.ndarray) -> np.ndarray:
        out = map_coordinates(np.asarray(values, dtype=float), coords, order=1, mode="nearest")
        out[outside] = np.nan
        return out

    return transform
