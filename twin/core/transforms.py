"""Link transforms of the coupler that know no domain: values matched by point id.

A transform maps a source output's values to a target input's (``Coupler.link(..., transform)``);
these are the ones every coupled run may name (``by_id``), and the merging of a feed's per-device
gaps into outages that reports list.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["by_id", "outages"]


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
