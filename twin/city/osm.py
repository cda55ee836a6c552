"""A small streaming reader for OSM XML: the nodes and ways a city build needs, with their tags."""

from __future__ import annotations

import gzip
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from twin.errors import DataError


@dataclass
class OsmData:
    """Nodes (id -> lon, lat, tags) and ways (id -> node ids, tags) of an OSM file."""

    nodes: dict[int, tuple[float, float]] = field(default_factory=dict)
    node_tags: dict[int, dict[str, str]] = field(default_factory=dict)
    ways: dict[int, tuple[list[int], dict[str, str]]] = field(default_factory=dict)

    def way_lonlat(self, way_id: int) -> np.ndarray:
        """(n, 2) lon/lat of a way's nodes."""
        refs, _ = self.ways[way_id]
        return np.array([self.nodes[r] for r in refs], dtype=float)


def read_osm(path: Path) -> OsmData:
    """Parse an OSM XML file (.osm, .osm.xml, optionally gzip-compressed) into nodes and ways.

    Streams with iterparse so a city extract of tens of MB stays cheap; relations are not needed here.
    """
    data = OsmData()
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            for _, el in ET.iterparse(f, events=("end",)):
                if el.tag == "node":
                    nid = int(el.get("id"))
                    data.nodes[nid] = (float(el.get("lon")), float(el.get("lat")))
                    tags = {t.get("k"): t.get("v") for t in el.iter("tag")}
                    if tags:
                        data.node_tags[nid] = tags
                    el.clear()
                elif el.tag == "way":
                    refs = [int(nd.get("ref")) for nd in el.iter("nd")]
                    tags = {t.get("k"): t.get("v") for t in el.iter("tag")}
                    data.ways[int(el.get("id"))] = (refs, tags)
                    el.clear()
    except (ET.ParseError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable OSM XML file: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: a node or way lacks a valid id/lat/lon/ref: {exc}") from None
    for wid, (refs, _) in data.ways.items():
        missing = [r for r in refs if r not in data.nodes]
        if missing:
            raise DataError(f"{path}: way {wid} refers to missing node {missing[0]}")
    return data
