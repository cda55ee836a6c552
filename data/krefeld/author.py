"""Author the Krefeld data pack: every source file of `data/krefeld/` from the definitions below.

Run `python data/krefeld/author.py` from the repository root. The official city data (OSM extract,
LoD2, DGM1, ALKIS, sensor registers) is not part of the pack; this script writes stand-ins in the
official formats from stated facts and a fixed seed, so that a user swaps in real data by editing
`pack.toml` only. Which layer is official, approximate or synthetic, and why, is documented in
`data/README.md`.

The definitions are compact tables in WGS84 (lat, lon): named street nodes and ways with their OSM
tags, area outlines (water, port, squares, parks, districts, industrial estates), dike crest lines,
block-use hints, how each district is built up and climate station positions. Everything else is
derived from them deterministically: the districts' local street grids, city blocks (zones and built
districts less street space), building footprints (`twin.city.procedural`), terrain, land cover, the
tree register and the well network. The boulevards' cross-sections (`boulevards.toml`, written by
hand) give the Wälle's street space and tree rows. Running the script twice writes byte-identical
files.
"""

from __future__ import annotations

import csv
import io
import json
import math
import zlib
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
import rasterio
import shapely
from pyproj import Transformer
from rasterio.features import rasterize
from rasterio.transform import from_origin
from scipy.ndimage import gaussian_filter
from shapely.geometry import LineString, Point, Polygon
from shapely.geometry.polygon import orient

from twin.city.boulevards import band_offsets, oriented, read_boulevards
from twin.city.procedural import default_form, generate_footprints

SEED = 2026  # the one seed of the pack (pack.toml: layers.buildings.procedural_seed)
CRS = "EPSG:25832"
EXTENT = (328000.0, 5687000.0, 340000.0, 5694000.0)  # xmin, ymin, xmax, ymax (m)
TERRAIN_CELL_M = 25.0
LANDCOVER_CELL_M = 10.0
TERRAIN_NODATA = -9999.0
OSM_TIMESTAMP = "2026-01-01T00:00:00Z"
# The boulevards' cross-sections are written by hand (pack layer `boulevards`); their total widths are
# the street space the blocks leave those streets, and their tree_row bands hold the tree rows.
BOULEVARDS = read_boulevards(Path(__file__).resolve().parent / "boulevards.toml")

# Land-cover classes: (code, name, sealed fraction). The same table is in pack.toml.
CLASSES = [
    (1, "building", 1.0),
    (2, "road", 0.95),
    (3, "railway", 0.4),
    (4, "plaza", 0.9),
    (5, "urban_yard", 0.7),
    (6, "residential_garden", 0.35),
    (7, "industrial_yard", 0.85),
    (8, "suburban_residential", 0.45),
    (9, "park", 0.05),
    (10, "forest", 0.0),
    (11, "farmland", 0.0),
    (12, "floodplain_meadow", 0.0),
    (13, "water", 0.0),
]
CODE = {name: code for code, name, _ in CLASSES}

# fmt: off
# The definition tables are kept compact (several coordinates a line); the formatter leaves them.

# Named points: key -> (lat, lon, OSM node tags). Ways name their nodes by key, so every crossing
# (and each corner of the Wälle ring) is one shared node, as in OSM.
NODES: dict[str, tuple[float, float, dict[str, str]]] = {
    "Westwall/Südwall": (51.3257391, 6.5605135, {"highway": "traffic_signals"}),
    "Westwall/Dreikönigenstraße": (51.3275986, 6.5599952, {"highway": "traffic_signals"}),
    "Westwall/Marktstraße": (51.3294581, 6.5594769, {"highway": "traffic_signals"}),
    "Westwall/Petersstraße": (51.331052, 6.5590326, {"highway": "traffic_signals"}),
    "Westwall/Rheinstraße": (51.3324245, 6.5586499, {"highway": "traffic_signals"}),
    "Westwall/St.-Anton-Straße": (51.3346825, 6.5580204, {"highway": "traffic_signals"}),
    "Westwall/Nordwall": (51.3363649, 6.5575513, {"highway": "traffic_signals"}),
    "Hochstraße/Südwall": (51.326002, 6.5629161, {"highway": "traffic_signals"}),
    "Hochstraße/Dreikönigenstraße": (51.3278615, 6.5623979, {}),
    "Hochstraße/Marktstraße": (51.329721, 6.5618797, {}),
    "Hochstraße/Petersstraße": (51.3313149, 6.5614354, {}),
    "Hochstraße/Rheinstraße": (51.3326874, 6.5610529, {}),
    "Hochstraße/Neue Linner Straße": (51.3337942, 6.5607444, {}),
    "Hochstraße/St.-Anton-Straße": (51.3349453, 6.5604235, {}),
    "Hochstraße/Nordwall": (51.3366278, 6.5599544, {"highway": "traffic_signals"}),
    "Königstraße/Südwall": (51.3264193, 6.5667321, {"highway": "traffic_signals"}),
    "Königstraße/Dreikönigenstraße": (51.3282634, 6.5660727, {}),
    "Königstraße/Marktstraße": (51.3301044, 6.565385, {}),
    "Königstraße/Petersstraße": (51.3316395, 6.5644038, {}),
    "Königstraße/Rheinstraße": (51.3329579, 6.5635265, {}),
    "Königstraße/Neue Linner Straße": (51.3340385, 6.5629778, {}),
    "Königstraße/St.-Anton-Straße": (51.3351695, 6.5624732, {}),
    "Königstraße/Nordwall": (51.3368365, 6.5618629, {"highway": "traffic_signals"}),
    "Friedrichstraße/Südwall": (51.3265507, 6.5679334, {"highway": "traffic_signals"}),
    "Friedrichstraße/Dreikönigenstraße": (51.3284102, 6.5674154, {}),
    "Friedrichstraße/Marktstraße": (51.3302697, 6.5668974, {}),
    "Friedrichstraße/Petersstraße": (51.3318636, 6.5664533, {}),
    "Friedrichstraße/Rheinstraße": (51.3332362, 6.5660709, {}),
    "Friedrichstraße/Neue Linner Straße": (51.334343, 6.5657625, {}),
    "Friedrichstraße/St.-Anton-Straße": (51.3354942, 6.5654417, {}),
    "Friedrichstraße/Nordwall": (51.3371766, 6.5649729, {"highway": "traffic_signals"}),
    "Ostwall/Südwall": (51.3266835, 6.5691489, {"highway": "traffic_signals"}),
    "Ostwall/Dreikönigenstraße": (51.3285431, 6.568631, {"highway": "traffic_signals"}),
    "Ostwall/Marktstraße": (51.3304026, 6.568113, {"highway": "traffic_signals"}),
    "Ostwall/Petersstraße": (51.3319965, 6.567669, {"highway": "traffic_signals"}),
    "Ostwall/Rheinstraße": (51.3333691, 6.5672866, {"highway": "traffic_signals"}),
    "Ostwall/Neue Linner Straße": (51.3344759, 6.5669782, {"highway": "traffic_signals"}),
    "Ostwall/St.-Anton-Straße": (51.3356271, 6.5666574, {"highway": "traffic_signals"}),
    "Ostwall/Nordwall": (51.3373095, 6.5661886, {"highway": "traffic_signals"}),
    "Am Hauptbahnhof mid": (51.3267502, 6.5704265, {}),
    "Am Hauptbahnhof/Hansastraße": (51.3270394, 6.5728219, {"highway": "traffic_signals"}),
    "Hansastraße/Uerdinger Straße": (51.340266, 6.5779095, {"highway": "traffic_signals"}),
    "Hansastraße mid": (51.3297866, 6.5724938, {}),
    "rail west edge": (51.3216831, 6.5315224, {}),
    "Krefeld Hbf": (
        51.3258328, 6.5694445,
        {
            "railway": "station", "public_transport": "station", "name": "Krefeld Hbf",
        },
    ),
    "rail junction east of Hbf": (51.326835, 6.5786175, {}),
    "rail NE 1": (51.3292137, 6.5871056, {}),
    "rail NE 2": (51.3353775, 6.6025753, {}),
    "rail NE 3": (51.3443511, 6.6236476, {}),
    "rail NE 4": (51.3518577, 6.6390581, {}),
    "Krefeld-Uerdingen station": (
        51.3566631, 6.6454473,
        {
            "railway": "station", "public_transport": "station", "name": "Krefeld-Uerdingen",
        },
    ),
    "rail N 1": (51.3627978, 6.6463967, {}),
    "rail north edge": (51.3735891, 6.6463461, {}),
    "rail SE 1": (51.3233298, 6.5852615, {}),
    "rail south edge": (51.3095669, 6.5938766, {}),
    "Uerdinger Straße 1": (51.3446636, 6.5949103, {}),
    "Uerdinger Straße 2": (51.350045, 6.6161718, {}),
    "Uerdinger Straße 3": (51.3542865, 6.6346242, {}),
    "Uerdinger Straße 4": (51.3560018, 6.6438724, {}),
    "Uerdinger Straße/Bahnhofstraße": (51.356532, 6.6456407, {"highway": "traffic_signals"}),
    "Bahnhofstraße/Oberstraße": (51.3563694, 6.6487373, {}),
    "rail bridge south": (51.3561415, 6.6447536, {}),
    "rail bridge north": (51.3565559, 6.6453048, {}),
    "Oberstraße north": (51.3583489, 6.6487796, {}),
    "Oberstraße/Am Zollhof": (51.3567754, 6.6488027, {}),
    "Oberstraße/Bruchstraße": (51.3552942, 6.648936, {}),
    "Oberstraße/Am Marktplatz": (51.3539929, 6.6490745, {}),
    "Oberstraße/Mühlenstraße": (51.3524249, 6.6493702, {}),
    "Am Zollhof mid": (51.3566828, 6.6500141, {}),
    "Am Zollhof/Niederstraße": (51.3566908, 6.6513064, {}),
    "Am Zollhof east": (51.3566689, 6.6524567, {}),
    "Niederstraße north": (51.3583964, 6.6511473, {}),
    "Niederstraße/Bruchstraße": (51.3553446, 6.6514471, {}),
    "Niederstraße/Am Marktplatz": (51.3540882, 6.6515832, {}),
    "Niederstraße/Mühlenstraße": (51.3525637, 6.6518048, {}),
    "B 288 south edge": (51.3098607, 6.6082109, {}),
    "B 288 1": (51.3216133, 6.6111877, {"highway": "traffic_signals"}),
    "B 288 2": (51.3316274, 6.6171275, {}),
    "B 288 3": (51.3399752, 6.6296176, {}),
    "B 288 4": (51.344757, 6.6437313, {}),
    "B 288/Oberstraße": (51.3466024, 6.65053, {"highway": "traffic_signals"}),
    "B 288/Hafenstraße": (51.3460779, 6.6558037, {"highway": "traffic_signals"}),
    "bridge west": (51.3482134, 6.6584386, {}),
    "bridge east": (51.3516124, 6.665672, {}),
    "B 288 east 1": (51.355777, 6.6776392, {}),
    "B 288 east edge": (51.3585045, 6.7019212, {}),
    "Hafenstraße 1": (51.3453769, 6.6570432, {}),
    "Hafenstraße 2": (51.3445132, 6.6581536, {}),
    "Hafenstraße 3": (51.3425128, 6.6606164, {}),
    "Hafenstraße 4": (51.340466, 6.6629741, {}),
    "Hafenstraße 5": (51.3383135, 6.6653294, {}),
    "Hafenstraße 6": (51.3361134, 6.6676457, {}),
    "Hafenstraße 7": (51.333831, 6.670065, {}),
    "Hafenstraße 8": (51.3315652, 6.6725074, {}),
    "Hafenstraße 9": (51.329313, 6.6749684, {}),
    "Hafenstraße 10": (51.327072, 6.6774445, {}),
    "Hafenstraße 11": (51.3248404, 6.679933, {}),
    "Hafenstraße 12": (51.3226232, 6.6824256, {}),
    "Hafenstraße 13": (51.3204061, 6.6849354, {}),
    "Hafenstraße 14": (51.3202798, 6.6861358, {}),
    "Hafenstraße 15": (51.3206862, 6.6877876, {}),
    "Hafenstraße 16": (51.3213853, 6.6891063, {}),
    "Hafenstraße 17": (51.3220433, 6.6895912, {}),
    "Rheinuferstraße 1": (51.3239105, 6.6878263, {}),
    "Rheinuferstraße 2": (51.3261199, 6.6853365, {}),
    "Rheinuferstraße 3": (51.3283334, 6.6828615, {}),
    "Rheinuferstraße 4": (51.3305564, 6.6803975, {}),
    "Rheinuferstraße 5": (51.3327879, 6.6779496, {}),
    "Rheinuferstraße 6": (51.3350298, 6.6755214, {}),
    "Rheinuferstraße 7": (51.3372843, 6.6731175, {}),
    "Rheinuferstraße 8": (51.3395394, 6.6707505, {}),
    "Rheinuferstraße 9": (51.3417423, 6.6683745, {}),
    "Rheinuferstraße 10": (51.3439062, 6.6659282, {}),
    "Rheinuferstraße 11": (51.3449698, 6.6646731, {}),
    "Tor 1 Schwerlastkai": (
        51.3250471, 6.6804026,
        {
            "barrier": "gate", "name": "Tor 1 Schwerlastkai", "access": "private",
        },
    ),
    "Tor 1 Schwerlastkai quay": (51.3256154, 6.6816941, {}),
    "Tor 2 Massengutumschlag": (
        51.3317671, 6.6729823,
        {
            "barrier": "gate", "name": "Tor 2 Massengutumschlag", "access": "private",
        },
    ),
    "Tor 2 Massengutumschlag quay": (51.3323224, 6.6742883, {}),
    "Tor 3 Containerterminal": (
        51.3385144, 6.6658055,
        {
            "barrier": "gate", "name": "Tor 3 Containerterminal", "access": "private",
        },
    ),
    "Tor 3 Containerterminal quay": (51.3390669, 6.6671147, {}),
    "Tor 4 Mole Süd": (
        51.3303521, 6.6799251,
        {
            "barrier": "gate", "name": "Tor 4 Mole Süd", "access": "private",
        },
    ),
    "Tor 4 Mole Süd quay": (51.3299436, 6.6789804, {}),
    "Tor 5 Mole Nord": (
        51.3393415, 6.6702713,
        {
            "barrier": "gate", "name": "Tor 5 Mole Nord", "access": "private",
        },
    ),
    "Tor 5 Mole Nord quay": (51.3389455, 6.6693129, {}),
    "Lagerhausstraße west end": (51.325214, 6.6731806, {}),
    "Silostraße west end": (51.3343259, 6.6633049, {}),
    "Kaistraße west end": (51.3386041, 6.6587132, {}),
    "Kopfkai quay": (51.3225056, 6.6862501, {}),
    # the port's second road access, from its south end west to the B 288 (synthetic alignment)
    "Hafenzufahrt Süd 1": (51.3212, 6.625, {}),
    "Hafenzufahrt Süd 2": (51.3208, 6.642, {}),
    "Hafenzufahrt Süd 3": (51.3203, 6.66, {}),
    "Hafenzufahrt Süd 4": (51.3195, 6.678, {}),
}

# Street and rail ways: (node keys in drawing order, OSM tags). Forward = drawing order.
WAYS: list[tuple[list[str], dict[str, str]]] = [
    (
        [
            "Westwall/Südwall", "Westwall/Dreikönigenstraße", "Westwall/Marktstraße",
            "Westwall/Petersstraße", "Westwall/Rheinstraße", "Westwall/St.-Anton-Straße",
            "Westwall/Nordwall",
        ],
        {
            "name": "Westwall", "highway": "primary", "lanes": "4", "lanes:forward": "2",
            "lanes:backward": "2", "maxspeed": "50", "sidewalk": "both", "cycleway:both": "lane",
        },
    ),
    (
        [
            "Ostwall/Südwall", "Ostwall/Dreikönigenstraße", "Ostwall/Marktstraße",
            "Ostwall/Petersstraße", "Ostwall/Rheinstraße", "Ostwall/Neue Linner Straße",
            "Ostwall/St.-Anton-Straße", "Ostwall/Nordwall",
        ],
        {
            "name": "Ostwall", "highway": "primary", "lanes": "6", "lanes:forward": "3",
            "lanes:backward": "3", "lanes:psv": "2", "lanes:psv:forward": "1",
            "lanes:psv:backward": "1", "busway:both": "lane", "railway": "tram", "maxspeed": "50",
            "sidewalk": "both",
        },
    ),
    (
        [
            "Westwall/Südwall", "Hochstraße/Südwall", "Königstraße/Südwall",
            "Friedrichstraße/Südwall", "Ostwall/Südwall",
        ],
        {
            "name": "Südwall", "highway": "primary", "lanes": "4", "lanes:forward": "2",
            "lanes:backward": "2", "maxspeed": "50", "sidewalk": "both", "cycleway:both": "lane",
        },
    ),
    (
        [
            "Westwall/Nordwall", "Hochstraße/Nordwall", "Königstraße/Nordwall",
            "Friedrichstraße/Nordwall", "Ostwall/Nordwall",
        ],
        {
            "name": "Nordwall", "highway": "primary", "lanes": "4", "lanes:forward": "2",
            "lanes:backward": "2", "maxspeed": "50", "sidewalk": "both",
            "bus:lanes:forward": "yes|designated", "bus:lanes:backward": "yes|designated",
            "cycleway:both": "lane",
        },
    ),
    (
        [
            "Königstraße/Südwall", "Königstraße/Dreikönigenstraße", "Königstraße/Marktstraße",
            "Königstraße/Petersstraße", "Königstraße/Rheinstraße", "Königstraße/Neue Linner Straße",
            "Königstraße/St.-Anton-Straße", "Königstraße/Nordwall",
        ],
        {
            "name": "Königstraße", "highway": "pedestrian",
        },
    ),
    (
        [
            "Hochstraße/Südwall", "Hochstraße/Dreikönigenstraße", "Hochstraße/Marktstraße",
        ],
        {
            "name": "Hochstraße", "highway": "residential", "oneway": "yes", "maxspeed": "30",
            "sidewalk": "both", "oneway:bicycle": "no",
        },
    ),
    (
        [
            "Hochstraße/Marktstraße", "Hochstraße/Petersstraße", "Hochstraße/Rheinstraße",
            "Hochstraße/Neue Linner Straße", "Hochstraße/St.-Anton-Straße",
        ],
        {
            "name": "Hochstraße", "highway": "pedestrian",
        },
    ),
    (
        [
            "Hochstraße/St.-Anton-Straße", "Hochstraße/Nordwall",
        ],
        {
            "name": "Hochstraße", "highway": "residential", "maxspeed": "30", "sidewalk": "both",
        },
    ),
    (
        [
            "Friedrichstraße/Südwall", "Friedrichstraße/Dreikönigenstraße",
            "Friedrichstraße/Marktstraße", "Friedrichstraße/Petersstraße",
            "Friedrichstraße/Rheinstraße", "Friedrichstraße/Neue Linner Straße",
            "Friedrichstraße/St.-Anton-Straße", "Friedrichstraße/Nordwall",
        ],
        {
            "name": "Friedrichstraße", "highway": "tertiary", "lanes": "2", "maxspeed": "30",
            "sidewalk": "both", "cycleway:both": "lane",
        },
    ),
    (
        [
            "Westwall/Dreikönigenstraße", "Hochstraße/Dreikönigenstraße",
            "Königstraße/Dreikönigenstraße", "Friedrichstraße/Dreikönigenstraße",
            "Ostwall/Dreikönigenstraße",
        ],
        {
            "name": "Dreikönigenstraße", "highway": "tertiary", "lanes": "2", "maxspeed": "30",
            "sidewalk": "both",
        },
    ),
    (
        [
            "Westwall/Marktstraße", "Hochstraße/Marktstraße", "Königstraße/Marktstraße",
            "Friedrichstraße/Marktstraße", "Ostwall/Marktstraße",
        ],
        {
            "name": "Marktstraße", "highway": "residential", "oneway": "yes", "maxspeed": "30",
            "sidewalk": "both",
        },
    ),
    (
        [
            "Westwall/Petersstraße", "Hochstraße/Petersstraße", "Königstraße/Petersstraße",
            "Friedrichstraße/Petersstraße", "Ostwall/Petersstraße",
        ],
        {
            "name": "Petersstraße", "highway": "tertiary", "lanes": "2", "maxspeed": "30",
            "sidewalk": "both", "cycleway:right": "lane",
        },
    ),
    (
        [
            "Westwall/Rheinstraße", "Hochstraße/Rheinstraße", "Königstraße/Rheinstraße",
            "Friedrichstraße/Rheinstraße", "Ostwall/Rheinstraße",
        ],
        {
            "name": "Rheinstraße", "highway": "secondary", "lanes": "4", "lanes:forward": "2",
            "lanes:backward": "2", "lanes:psv": "2", "busway:both": "lane", "railway": "tram",
            "maxspeed": "30", "sidewalk": "both",
        },
    ),
    (
        [
            "Ostwall/Neue Linner Straße", "Friedrichstraße/Neue Linner Straße",
            "Königstraße/Neue Linner Straße", "Hochstraße/Neue Linner Straße",
        ],
        {
            "name": "Neue Linner Straße", "highway": "residential", "oneway": "yes",
            "maxspeed": "30", "sidewalk": "both",
        },
    ),
    (
        [
            "Westwall/St.-Anton-Straße", "Hochstraße/St.-Anton-Straße",
            "Königstraße/St.-Anton-Straße", "Friedrichstraße/St.-Anton-Straße",
            "Ostwall/St.-Anton-Straße",
        ],
        {
            "name": "St.-Anton-Straße", "highway": "secondary", "lanes": "4", "lanes:forward": "2",
            "lanes:backward": "2", "cycleway:both": "lane",
            "turn:lanes:forward": "left|through;right", "turn:lanes:backward": "left|through;right",
            "maxspeed": "50", "sidewalk": "both",
        },
    ),
    (
        [
            "Ostwall/Südwall", "Am Hauptbahnhof mid", "Am Hauptbahnhof/Hansastraße",
        ],
        {
            "name": "Am Hauptbahnhof", "highway": "tertiary", "lanes": "2", "maxspeed": "30",
            "sidewalk": "both", "busway:right": "lane",
        },
    ),
    (
        [
            "Am Hauptbahnhof/Hansastraße", "Hansastraße mid", "Hansastraße/Uerdinger Straße",
        ],
        {
            "name": "Hansastraße", "highway": "secondary", "lanes": "4", "lanes:forward": "2",
            "lanes:backward": "2", "maxspeed": "50", "sidewalk": "both", "cycleway:right": "track",
        },
    ),
    (
        [
            "rail west edge", "Krefeld Hbf", "rail junction east of Hbf",
        ],
        {
            "railway": "rail", "usage": "main", "electrified": "contact_line", "voltage": "15000",
            "frequency": "16.7", "gauge": "1435", "maxspeed": "120",
        },
    ),
    (
        [
            "rail junction east of Hbf", "rail NE 1", "rail NE 2", "rail NE 3", "rail NE 4",
            "rail bridge south",
        ],
        {
            "railway": "rail", "usage": "main", "electrified": "contact_line", "voltage": "15000",
            "frequency": "16.7", "gauge": "1435", "maxspeed": "120",
        },
    ),
    (
        [
            "rail bridge south", "rail bridge north",
        ],
        {
            "railway": "rail", "usage": "main", "electrified": "contact_line", "voltage": "15000",
            "frequency": "16.7", "gauge": "1435", "maxspeed": "120", "bridge": "yes", "layer": "1",
        },
    ),
    (
        [
            "rail bridge north", "Krefeld-Uerdingen station", "rail N 1", "rail north edge",
        ],
        {
            "railway": "rail", "usage": "main", "electrified": "contact_line", "voltage": "15000",
            "frequency": "16.7", "gauge": "1435", "maxspeed": "120",
        },
    ),
    (
        [
            "rail junction east of Hbf", "rail SE 1", "rail south edge",
        ],
        {
            "railway": "rail", "usage": "main", "electrified": "contact_line", "voltage": "15000",
            "frequency": "16.7", "gauge": "1435", "maxspeed": "120",
        },
    ),
    (
        [
            "Ostwall/Nordwall", "Hansastraße/Uerdinger Straße",
        ],
        {
            "name": "Uerdinger Straße", "highway": "secondary", "lanes": "4", "lanes:forward": "2",
            "lanes:backward": "2", "turn:lanes:backward": "left|through;right",
            "cycleway:both": "lane", "maxspeed": "50", "sidewalk": "both",
        },
    ),
    (
        [
            "Hansastraße/Uerdinger Straße", "Uerdinger Straße 1", "Uerdinger Straße 2",
            "Uerdinger Straße 3", "Uerdinger Straße 4", "Uerdinger Straße/Bahnhofstraße",
        ],
        {
            "name": "Uerdinger Straße", "highway": "secondary", "lanes": "2", "maxspeed": "50",
            "sidewalk": "both", "cycleway:both": "lane",
        },
    ),
    (
        [
            "Uerdinger Straße/Bahnhofstraße", "Bahnhofstraße/Oberstraße",
        ],
        {
            "name": "Bahnhofstraße", "highway": "tertiary", "lanes": "2", "maxspeed": "30",
            "sidewalk": "both",
        },
    ),
    (
        [
            "Oberstraße north", "Oberstraße/Am Zollhof", "Bahnhofstraße/Oberstraße",
            "Oberstraße/Bruchstraße", "Oberstraße/Am Marktplatz", "Oberstraße/Mühlenstraße",
        ],
        {
            "name": "Oberstraße", "highway": "tertiary", "lanes": "2", "maxspeed": "30",
            "sidewalk": "both",
        },
    ),
    (
        [
            "Oberstraße/Am Zollhof", "Am Zollhof mid", "Am Zollhof/Niederstraße", "Am Zollhof east",
        ],
        {
            "name": "Am Zollhof", "highway": "residential", "maxspeed": "30", "sidewalk": "both",
        },
    ),
    (
        [
            "Niederstraße north", "Am Zollhof/Niederstraße", "Niederstraße/Bruchstraße",
            "Niederstraße/Am Marktplatz", "Niederstraße/Mühlenstraße",
        ],
        {
            "name": "Niederstraße", "highway": "residential", "maxspeed": "30", "sidewalk": "both",
        },
    ),
    (
        [
            "Oberstraße/Bruchstraße", "Niederstraße/Bruchstraße",
        ],
        {
            "name": "Bruchstraße", "highway": "residential", "oneway": "yes", "maxspeed": "30",
            "sidewalk": "both",
        },
    ),
    (
        [
            "Oberstraße/Am Marktplatz", "Niederstraße/Am Marktplatz",
        ],
        {
            "name": "Am Marktplatz", "highway": "residential", "maxspeed": "20", "sidewalk": "both",
        },
    ),
    (
        [
            "Oberstraße/Mühlenstraße", "Niederstraße/Mühlenstraße",
        ],
        {
            "name": "Mühlenstraße", "highway": "residential", "maxspeed": "30", "sidewalk": "both",
        },
    ),
    (
        [
            "Oberstraße/Mühlenstraße", "B 288/Oberstraße",
        ],
        {
            "name": "Oberstraße", "highway": "tertiary", "lanes": "2", "maxspeed": "50",
            "sidewalk": "right",
        },
    ),
    (
        [
            "B 288 south edge", "B 288 1", "B 288 2", "B 288 3", "B 288 4", "B 288/Oberstraße",
            "B 288/Hafenstraße", "bridge west",
        ],
        {
            "highway": "trunk", "ref": "B 288", "lanes": "4", "lanes:forward": "2",
            "lanes:backward": "2", "maxspeed": "70",
        },
    ),
    (
        [
            "bridge west", "bridge east",
        ],
        {
            "highway": "trunk", "ref": "B 288", "lanes": "4", "lanes:forward": "2",
            "lanes:backward": "2", "maxspeed": "70", "bridge": "yes", "layer": "1",
            "name": "Krefeld-Uerdinger Brücke", "bridge:name": "Krefeld-Uerdinger Brücke",
        },
    ),
    (
        [
            "bridge east", "B 288 east 1", "B 288 east edge",
        ],
        {
            "highway": "trunk", "ref": "B 288", "lanes": "4", "lanes:forward": "2",
            "lanes:backward": "2", "maxspeed": "70",
        },
    ),
    (
        [
            "B 288/Hafenstraße", "Hafenstraße 1", "Hafenstraße 2", "Hafenstraße 3", "Hafenstraße 4",
            "Hafenstraße 5", "Hafenstraße 6", "Hafenstraße 7", "Hafenstraße 8", "Hafenstraße 9",
            "Hafenstraße 10", "Hafenstraße 11", "Hafenstraße 12", "Hafenstraße 13",
            "Hafenstraße 14", "Hafenstraße 15", "Hafenstraße 16", "Hafenstraße 17",
        ],
        {
            "name": "Hafenstraße", "highway": "secondary", "lanes": "2", "maxspeed": "50",
            "sidewalk": "right", "hgv": "designated",
        },
    ),
    (
        [
            "Hafenstraße 17", "Rheinuferstraße 1", "Rheinuferstraße 2", "Rheinuferstraße 3",
            "Rheinuferstraße 4", "Rheinuferstraße 5", "Rheinuferstraße 6", "Rheinuferstraße 7",
            "Rheinuferstraße 8", "Rheinuferstraße 9", "Rheinuferstraße 10", "Rheinuferstraße 11",
        ],
        {
            "name": "Rheinuferstraße", "highway": "tertiary", "lanes": "2", "maxspeed": "30",
            "hgv": "designated",
        },
    ),
    (
        [
            "Hafenstraße 11", "Tor 1 Schwerlastkai", "Tor 1 Schwerlastkai quay",
        ],
        {
            "name": "Zufahrt Schwerlastkai", "highway": "service", "service": "driveway",
            "maxspeed": "20",
        },
    ),
    (
        [
            "Hafenstraße 8", "Tor 2 Massengutumschlag", "Tor 2 Massengutumschlag quay",
        ],
        {
            "name": "Zufahrt Massengutumschlag", "highway": "service", "service": "driveway",
            "maxspeed": "20",
        },
    ),
    (
        [
            "Hafenstraße 5", "Tor 3 Containerterminal", "Tor 3 Containerterminal quay",
        ],
        {
            "name": "Zufahrt Containerterminal", "highway": "service", "service": "driveway",
            "maxspeed": "20",
        },
    ),
    (
        [
            "Rheinuferstraße 4", "Tor 4 Mole Süd", "Tor 4 Mole Süd quay",
        ],
        {
            "name": "Zufahrt Mole Süd", "highway": "service", "service": "driveway",
            "maxspeed": "20",
        },
    ),
    (
        [
            "Rheinuferstraße 8", "Tor 5 Mole Nord", "Tor 5 Mole Nord quay",
        ],
        {
            "name": "Zufahrt Mole Nord", "highway": "service", "service": "driveway",
            "maxspeed": "20",
        },
    ),
    (
        [
            "Hafenstraße 10", "Lagerhausstraße west end",
        ],
        {
            "name": "Lagerhausstraße", "highway": "unclassified", "maxspeed": "30",
        },
    ),
    (
        [
            "Hafenstraße 6", "Silostraße west end",
        ],
        {
            "name": "Silostraße", "highway": "unclassified", "maxspeed": "30",
        },
    ),
    (
        [
            "Hafenstraße 4", "Kaistraße west end",
        ],
        {
            "name": "Kaistraße", "highway": "unclassified", "maxspeed": "30",
        },
    ),
    (
        [
            "Hafenstraße 15", "Kopfkai quay",
        ],
        {
            "name": "Kopfkai", "highway": "service", "service": "driveway", "maxspeed": "20",
        },
    ),
    # A second way into the port, off the truck route network: shorter to the southern gates than
    # B 288 + Hafenstraße, through a built-up stretch at 50 km/h. Free routing sends lorries here.
    (
        [
            "B 288 1", "Hafenzufahrt Süd 1", "Hafenzufahrt Süd 2",
        ],
        {
            "name": "Hafenzufahrt Süd", "highway": "secondary", "lanes": "2", "maxspeed": "70",
        },
    ),
    (
        [
            "Hafenzufahrt Süd 2", "Hafenzufahrt Süd 3", "Hafenzufahrt Süd 4", "Hafenstraße 13",
        ],
        {
            "name": "Hafenzufahrt Süd", "highway": "secondary", "lanes": "2", "maxspeed": "50",
            "sidewalk": "both",
        },
    ),
]

# Stand-alone nodes: (lat, lon, tags): bus platforms beside the road, landmarks.
POIS: list[tuple[float, float, dict[str, str]]] = [
    (51.334058, 6.5590685, {"amenity": "townhall", "name": "Rathaus Krefeld"}),
    (51.3303015, 6.5596787, {"tourism": "museum", "name": "Kaiser Wilhelm Museum"}),
    (51.3344795, 6.5643406, {"amenity": "theatre", "name": "Theater Krefeld"}),
    (
        51.3271145, 6.5693347,
        {
            "highway": "bus_stop", "public_transport": "platform", "bus": "yes",
            "name": "Krefeld Hbf/Ostwall", "shelter": "yes",
        },
    ),
    (
        51.3335343, 6.5675464,
        {
            "highway": "bus_stop", "public_transport": "platform", "bus": "yes",
            "name": "Ostwall/Rheinstraße", "shelter": "yes",
        },
    ),
    (
        51.3329262, 6.5621516,
        {
            "highway": "bus_stop", "public_transport": "platform", "bus": "yes",
            "name": "Rheinstraße", "shelter": "yes",
        },
    ),
    (
        51.3349052, 6.5658972,
        {
            "highway": "bus_stop", "public_transport": "platform", "bus": "yes",
            "name": "Theaterplatz", "shelter": "yes",
        },
    ),
    (
        51.3343149, 6.5584142,
        {
            "highway": "bus_stop", "public_transport": "platform", "bus": "yes", "name": "Rathaus",
            "shelter": "yes",
        },
    ),
    (
        51.3260612, 6.5647929,
        {
            "highway": "bus_stop", "public_transport": "platform", "bus": "yes", "name": "Südwall",
            "shelter": "yes",
        },
    ),
    (
        51.3355022, 6.564347,
        {
            "highway": "bus_stop", "public_transport": "platform", "bus": "yes",
            "name": "St.-Anton-Straße", "shelter": "yes",
        },
    ),
    (
        51.3270023, 6.5712301,
        {
            "highway": "bus_stop", "public_transport": "platform", "bus": "yes",
            "name": "Hauptbahnhof", "shelter": "yes",
        },
    ),
    (
        51.3447955, 6.5947598,
        {
            "highway": "bus_stop", "public_transport": "platform", "bus": "yes",
            "name": "Stadtwald", "shelter": "yes",
        },
    ),
    (
        51.3501797, 6.6161648,
        {
            "highway": "bus_stop", "public_transport": "platform", "bus": "yes",
            "name": "Bockum Uerdinger Straße", "shelter": "yes",
        },
    ),
    (
        51.3565957, 6.6465711,
        {
            "highway": "bus_stop", "public_transport": "platform", "bus": "yes",
            "name": "Uerdingen Bahnhof", "shelter": "yes",
        },
    ),
    (
        51.3541233, 6.6488524,
        {
            "highway": "bus_stop", "public_transport": "platform", "bus": "yes",
            "name": "Uerdingen Markt", "shelter": "yes",
        },
    ),
    (
        51.3360246, 6.6674299,
        {
            "highway": "bus_stop", "public_transport": "platform", "bus": "yes",
            "name": "Rheinhafen", "shelter": "yes",
        },
    ),
    (
        51.3437444, 6.6587953,
        {
            "highway": "bus_stop", "public_transport": "platform", "bus": "yes",
            "name": "Hafenstraße Nord", "shelter": "yes",
        },
    ),
]

# Areas (closed ways): (OSM tags, outline as (lat, lon) vertices, not repeating the first).
AREAS: list[tuple[dict[str, str], list[tuple[float, float]]]] = [
    (
        {"place": "square", "name": "Theaterplatz", "surface": "paving_stones"},
        [
            (51.3345307, 6.5633067), (51.3347858, 6.5656391), (51.3354942, 6.5654417),
            (51.3352391, 6.5631093),
        ],
    ),
    (
        {"place": "square", "name": "Von-der-Leyen-Platz", "surface": "paving_stones"},
        [
            (51.3336354, 6.558458), (51.3337668, 6.5596595), (51.3343424, 6.5594991),
            (51.3342109, 6.5582975),
        ],
    ),
    (
        {"place": "square", "name": "Joseph-Beuys-Platz", "surface": "paving_stones"},
        [
            (51.3299606, 6.5594824), (51.3300766, 6.5605425), (51.3306964, 6.5603697),
            (51.3305805, 6.5593097),
        ],
    ),
    (
        # the forecourt of the Hauptbahnhof between the Südwall/Am Hauptbahnhof and the tracks
        # (outline chosen: from the railway to the street, 200 m west and 250 m east of the station)
        {"place": "square", "name": "Bahnhofsvorplatz", "surface": "paving_stones"},
        [(51.3256, 6.5665), (51.32639, 6.5665), (51.327, 6.5725), (51.32622, 6.5725)],
    ),
    (
        {"place": "square", "name": "Marktplatz", "surface": "paving_stones"},
        [
            (51.3539986, 6.6493615), (51.3540526, 6.6511541), (51.3548432, 6.6511137),
            (51.3548072, 6.6493201),
        ],
    ),
    (
        {"natural": "water", "water": "river", "name": "Rhein"},
        [
            (51.3117624, 6.7021409), (51.3117838, 6.7042571), (51.3159202, 6.7040505),
            (51.3236374, 6.695177), (51.3307683, 6.687148), (51.3362615, 6.6811199),
            (51.3422398, 6.6747771), (51.3450898, 6.6716413), (51.3471412, 6.6692495),
            (51.350558, 6.6649692), (51.3524567, 6.6627327), (51.3549575, 6.6601131),
            (51.3555891, 6.659534), (51.3564945, 6.6588695), (51.3570871, 6.658542),
            (51.3579633, 6.6582151), (51.3585425, 6.6581024), (51.3594123, 6.6580875),
            (51.3602888, 6.6582582), (51.3608821, 6.6584812), (51.3621079, 6.6592086),
            (51.3630647, 6.6600156), (51.3637201, 6.6606845), (51.3663851, 6.6639873),
            (51.36878, 6.6666127), (51.3709385, 6.6687005), (51.3740907, 6.6714402),
            (51.3739655, 6.6651507), (51.3715934, 6.6629816), (51.369686, 6.6610347),
            (51.3680136, 6.6591153), (51.3660808, 6.6566681), (51.3652063, 6.6557146),
            (51.3639363, 6.6545598), (51.362707, 6.6536994), (51.3617699, 6.6532123),
            (51.3608883, 6.6528865), (51.3600047, 6.6526884), (51.3591224, 6.6526158),
            (51.3582418, 6.6526675), (51.3573664, 6.652843), (51.3564992, 6.6531403),
            (51.3552817, 6.6537692), (51.3544388, 6.6543523), (51.3535583, 6.655094),
            (51.3508772, 6.657841), (51.3488894, 6.6601411), (51.3455395, 6.6643441),
            (51.3431151, 6.6671909), (51.3403348, 6.6702502), (51.3336037, 6.6774091),
            (51.3279658, 6.6836208), (51.3207096, 6.6918152),
        ],
    ),
    (
        {"natural": "water", "water": "basin", "harbour": "yes", "name": "Hafenbecken Rheinhafen Krefeld"},
        [
            (51.3313921, 6.6752143), (51.3272942, 6.6797324), (51.3221199, 6.6855434),
            (51.3227956, 6.6870651), (51.3274102, 6.6818777), (51.3320521, 6.6767537),
            (51.3350496, 6.6735118), (51.3395573, 6.6687491), (51.3413642, 6.6667859),
            (51.342439, 6.6655807), (51.3438635, 6.6639314), (51.3456933, 6.6617005),
            (51.3457804, 6.6616265), (51.3460912, 6.6615472), (51.3466181, 6.6615478),
            (51.347606, 6.6617318), (51.3476444, 6.6616827), (51.3476543, 6.6616702),
            (51.3480587, 6.6611615), (51.3480689, 6.6611488), (51.34847, 6.6606521),
            (51.3484806, 6.6606391), (51.3488784, 6.6601543), (51.3488894, 6.6601411),
            (51.3490531, 6.6599448), (51.3490036, 6.6599692), (51.3488232, 6.6600048),
            (51.3485878, 6.6600163), (51.3483312, 6.6599893), (51.3467187, 6.6596882),
            (51.3460394, 6.6596824), (51.3457136, 6.6597427), (51.3453978, 6.6598549),
            (51.3450559, 6.6601324), (51.3431697, 6.6624299), (51.3417603, 6.6640619),
            (51.3406969, 6.6652542), (51.3389087, 6.6671972), (51.3343988, 6.6719623),
        ],
    ),
    (
        {"landuse": "industrial", "industrial": "port", "name": "Rheinhafen Krefeld", "harbour": "yes"},
        [
            (51.3217814, 6.6904879), (51.327298, 6.684262), (51.3321141, 6.6789293),
            (51.3358497, 6.6748842), (51.3403427, 6.6701379), (51.3425436, 6.6677297),
            (51.3436163, 6.6665122), (51.3450451, 6.6648342), (51.3464248, 6.663136),
            (51.347836, 6.6613321), (51.3436417, 6.6528307), (51.3422009, 6.6546724),
            (51.340991, 6.6561616), (51.3400009, 6.6573307), (51.3386659, 6.6588545),
            (51.3365553, 6.6611641), (51.3320819, 6.6658903), (51.3282847, 6.6700028),
            (51.3234105, 6.6754005), (51.3178481, 6.681679),
        ],
    ),
    (
        {"leisure": "park", "name": "Stadtgarten"},
        [
            (51.3367985, 6.5585958), (51.337417, 6.5642504), (51.3390551, 6.5637938),
            (51.3384366, 6.558139),
        ],
    ),
    (
        {"leisure": "park", "name": "Schönwasserpark"},
        [
            (51.3537262, 6.6202897), (51.3539299, 6.6303335), (51.3579728, 6.6301248),
            (51.3577691, 6.6200801),
        ],
    ),
    (
        {"leisure": "park", "name": "Greiffenhorstpark"},
        [
            (51.3315706, 6.6365116), (51.3317585, 6.6458337), (51.3362507, 6.6456035),
            (51.3360628, 6.6362805),
        ],
    ),
    (
        {"landuse": "forest", "name": "Stadtwald"},
        [
            (51.3442477, 6.5834437), (51.3496604, 6.6061383), (51.3574766, 6.6057307),
            (51.3570641, 6.5856419), (51.3515552, 6.5801865),
        ],
    ),
    (
        {"landuse": "residential", "name": "Stadtmitte"},
        [
            (51.33033, 6.5429425), (51.3213638, 6.5638872), (51.3259069, 6.5636464),
            (51.325562, 6.5605628), (51.3256284, 6.5602874), (51.3363514, 6.5572651),
            (51.3364682, 6.5573165), (51.336542, 6.5575019), (51.3371488, 6.5630502),
            (51.3408332, 6.5628547), (51.3420703, 6.5593),
        ],
    ),
    (
        {"landuse": "residential", "name": "Stadtmitte"},
        [
            (51.3225656, 6.5708873), (51.3350694, 6.5794099), (51.3408332, 6.5628547),
            (51.3371488, 6.5630502), (51.3374866, 6.5661393), (51.3374203, 6.5664147),
            (51.3267144, 6.5694316), (51.3265419, 6.5693256), (51.3259069, 6.5636464),
            (51.3213638, 6.5638872), (51.320811, 6.5651781),
        ],
    ),
    (
        {"landuse": "residential", "name": "Kempener Feld"},
        [
            (51.3420703, 6.5593), (51.3501184, 6.5583353), (51.3566156, 6.5296443),
            (51.3290545, 6.5311264), (51.33033, 6.5429425),
        ],
    ),
    (
        {"landuse": "residential", "name": "Inrath"},
        [
            (51.3501184, 6.5583353), (51.3601126, 6.5760617), (51.3721544, 6.5760086),
            (51.3717113, 6.554696), (51.3621854, 6.5293445), (51.3566156, 6.5296443),
        ],
    ),
    (
        {"landuse": "residential", "name": "Cracau"},
        [
            (51.3501184, 6.5583353), (51.3420703, 6.5593), (51.3350694, 6.5794099),
            (51.3369998, 6.5894013), (51.3447801, 6.5986877), (51.3473684, 6.5990839),
            (51.3477276, 6.5984353), (51.3441637, 6.5834948), (51.3441857, 6.5833398),
            (51.3515587, 6.5800431), (51.355669, 6.5840913), (51.3601126, 6.5760617),
        ],
    ),
    (
        {"landuse": "residential", "name": "Bockum"},
        [
            (51.3727128, 6.6031394), (51.3721544, 6.5760086), (51.3601126, 6.5760617),
            (51.355669, 6.5840913), (51.3571115, 6.5855199), (51.3571532, 6.5856231),
            (51.3575572, 6.6057942), (51.3574795, 6.6058742), (51.3504311, 6.6062417),
            (51.354318, 6.6153288), (51.3573942, 6.6163887),
        ],
    ),
    (
        {"landuse": "residential", "name": "Verberg"},
        [
            (51.3727128, 6.6031394), (51.3573942, 6.6163887), (51.3711051, 6.6430334),
            (51.37342, 6.6379486),
        ],
    ),
    (
        {"landuse": "residential", "name": "Oppum"},
        [
            (51.3325931, 6.6213532), (51.3447801, 6.5986877), (51.3369998, 6.5894013),
            (51.3129055, 6.607394), (51.3099419, 6.6121888), (51.3099484, 6.6125113),
            (51.3211995, 6.6227715),
        ],
    ),
    (
        {"landuse": "residential", "name": "Südbezirk"},
        [
            (51.320811, 6.5651781), (51.33033, 6.5429425), (51.3290545, 6.5311264),
            (51.3082836, 6.5322418), (51.3088883, 6.5610878),
        ],
    ),
    (
        {"landuse": "residential", "name": "Fischeln"},
        [
            (51.3225656, 6.5708873), (51.320811, 6.5651781), (51.3088883, 6.5610878),
            (51.3099419, 6.6121888), (51.3129055, 6.607394),
        ],
    ),
    (
        {"landuse": "residential", "name": "Dießem"},
        [
            (51.3369998, 6.5894013), (51.3350694, 6.5794099), (51.3225656, 6.5708873),
            (51.3129055, 6.607394),
        ],
    ),
    (
        {"landuse": "residential", "name": "Gartenstadt"},
        [
            (51.3485291, 6.6017964), (51.3473684, 6.5990839), (51.3447801, 6.5986877),
            (51.3325931, 6.6213532), (51.3452409, 6.640282), (51.354318, 6.6153288),
            (51.3504311, 6.6062417), (51.3496548, 6.6062815), (51.349584, 6.6062139),
        ],
    ),
    (
        {"landuse": "residential", "name": "Linn"},
        [
            (51.3452409, 6.640282), (51.3325931, 6.6213532), (51.3211995, 6.6227715),
            (51.3218613, 6.6233752), (51.3258609, 6.6432649), (51.342798, 6.6533576),
            (51.3434947, 6.6524697), (51.3436193, 6.6524016), (51.3437492, 6.6524359),
            (51.3438535, 6.6525643), (51.3452007, 6.6552946), (51.34592, 6.6559517),
        ],
    ),
    (
        {"landuse": "residential", "name": "Uerdingen"},
        [
            (51.354318, 6.6153288), (51.3452409, 6.640282), (51.34592, 6.6559517),
            (51.3474655, 6.6573638), (51.3496637, 6.6548205), (51.3519477, 6.6524802),
            (51.3518369, 6.6469587), (51.351864, 6.6467977), (51.3519589, 6.6466775),
            (51.3586218, 6.646336), (51.3587104, 6.6464241), (51.3587534, 6.646576),
            (51.3588038, 6.6490427), (51.3603169, 6.6491337), (51.3613948, 6.6493893),
            (51.3622764, 6.649715), (51.3636088, 6.6504114), (51.3648381, 6.6512718),
            (51.3655852, 6.6519285), (51.3673908, 6.6511898), (51.3711051, 6.6430334),
            (51.3573942, 6.6163887),
        ],
    ),
]

# Crest lines of the Rhine flood dikes, (lat, lon) vertices; used by the synthetic terrain.
DIKES: list[list[tuple[float, float]]] = [
    [
        (51.3117037, 6.6997235), (51.3192483, 6.6910151), (51.3190422, 6.6893243),
        (51.3169249, 6.6821142), (51.3221155, 6.6762381), (51.327352, 6.6704167),
        (51.3384858, 6.6584425), (51.3408028, 6.6557591), (51.343447, 6.6524361),
        (51.3469873, 6.65583), (51.3492807, 6.6582091), (51.3499455, 6.658451),
        (51.3518734, 6.6563415), (51.3535297, 6.6547076), (51.3549318, 6.6536097),
        (51.3564288, 6.652799), (51.3570269, 6.65258), (51.3580827, 6.6523321),
        (51.3592361, 6.65226), (51.3603005, 6.6523815), (51.3608305, 6.6525072),
        (51.3619484, 6.6529211), (51.3631351, 6.6526955), (51.3643512, 6.6526475),
        (51.3653261, 6.6534799), (51.3666914, 6.6548947), (51.3688862, 6.6576484),
        (51.3705776, 6.6595679), (51.3723527, 6.6613642), (51.3739098, 6.6628063),
    ],
    [
        (51.3197748, 6.7038436), (51.3268696, 6.6957334), (51.3330907, 6.6887661),
        (51.3375013, 6.6839392), (51.3434865, 6.6775894), (51.3461484, 6.6746648),
        (51.3484104, 6.6720356), (51.3519807, 6.6675692), (51.3540258, 6.6651855),
        (51.3563258, 6.6628194), (51.3571489, 6.662166), (51.3577044, 6.6618445),
        (51.3586566, 6.6615471), (51.3596024, 6.661575), (51.3605447, 6.6619209),
        (51.3613797, 6.6624738), (51.3619332, 6.6629518), (51.3627552, 6.6638143),
        (51.3651812, 6.6668504), (51.3675889, 6.6694867), (51.370509, 6.6722741),
        (51.3741604, 6.6754005),
    ],
]

# Outline of the Uerdingen old-town block zone, (lat, lon) vertices.
UERDINGEN_ZONE: list[tuple[float, float]] = [
    (51.3520166, 6.6469495), (51.3521433, 6.6532626), (51.3566268, 6.6526025),
    (51.358676, 6.6516358), (51.3585752, 6.6466133),
]

# LoRaWAN climate stations: (name, lat, lon, sensor height above ground in m).
CLIMATE_STATIONS: list[tuple[str, float, float, float]] = [
    ("Theaterplatz", 51.334764, 6.5641885, 3.0),
    ("Von-der-Leyen-Platz", 51.3339263, 6.5590324, 3.0),
    ("Joseph-Beuys-Platz", 51.3302438, 6.5599861, 3.0),
    ("Königstraße Süd", 51.3278454, 6.5664222, 3.0),
    ("Königstraße Nord", 51.3359897, 6.5624631, 3.0),
    ("Rheinstraße", 51.3328666, 6.5614399, 3.0),
    ("Ostwall Nord", 51.3355648, 6.5669224, 3.0),
    ("Westwall Süd", 51.327925, 6.5596421, 3.0),
    ("Südwall", 51.325858, 6.5631018, 3.0),
    ("Hauptbahnhof", 51.3267367, 6.5713041, 3.0),
    ("Hansastraße", 51.3299868, 6.5726565, 3.0),
    ("Stadtgarten", 51.337949, 6.5611886, 2.0),
    ("Stadtwald", 51.3518509, 6.5945338, 2.0),
    ("Cracau", 51.3487116, 6.5731554, 3.0),
    ("Kempener Feld", 51.34458, 6.5475246, 3.0),
    ("Bockum", 51.3601424, 6.6041551, 3.0),
    ("Oppum", 51.3303186, 6.5970969, 3.0),
    ("Südbezirk", 51.3168204, 6.5533116, 3.0),
    ("Linn", 51.337367, 6.6340597, 3.0),
    ("Greiffenhorstpark", 51.333918, 6.6414159, 2.0),
    ("Schönwasserpark", 51.3558945, 6.6252047, 2.0),
    ("Uerdingen Markt", 51.3545086, 6.6501254, 3.0),
    ("Uerdingen Bahnhof", 51.3568681, 6.6467008, 3.0),
    ("Uerdingen Rheinufer", 51.3558789, 6.6528287, 2.0),
    ("Rheinhafen Nord", 51.343634, 6.6607069, 3.0),
    ("Rheinhafen Mitte", 51.3342308, 6.6710192, 3.0),
    ("Rheinhafen Süd", 51.3237779, 6.6825294, 3.0),
    ("Mole", 51.3340297, 6.6757338, 3.0),
    ("Rheinaue Süd", 51.3155942, 6.6964532, 2.0),
    ("Feld West", 51.36593, 6.5363265, 2.0),
    ("Feld Südost", 51.3171642, 6.6580626, 2.0),
    ("Feld Ostufer", 51.3439314, 6.6925984, 2.0),
]

# Block use overrides: the block containing (lat, lon) gets this use and storey range.
USE_POINTS: list[tuple[float, float, str, int, int, str]] = [
    (51.3341663, 6.560058, "civic", 2, 4, "Rathaus"),
    (51.3308482, 6.559672, "civic", 2, 3, "Kaiser Wilhelm Museum"),
    (51.3344176, 6.5643579, "civic", 3, 5, "Theater"),
    (51.3533786, 6.6475978, "residential", 2, 3, "Uerdingen west of Oberstraße"),
    (51.3578708, 6.6473676, "residential", 2, 3, "Uerdingen north-west"),
    (51.3239103, 6.6778199, "industrial", 1, 3, "port west 1"),
    (51.3306564, 6.6703704, "industrial", 1, 3, "port west 2"),
    (51.3374093, 6.6631872, "industrial", 1, 3, "port west 3"),
    (51.3428466, 6.6569646, "industrial", 1, 3, "port west 4"),
]

# How each residential district (AREAS, landuse=residential) is built up: (kind, share, turn, core).
# kind: "centre" (Gründerzeit perimeter blocks of 3-5 storeys), "inner" (perimeter blocks near the
# Wälle, terraced and detached houses further out), "suburb" (terraced and detached houses of 1-3
# storeys round a core of mixed blocks), "villa" (detached houses on large lots). share: the part of
# the district's land (less parks, forest, water and the other zones) that is built, inside a wavy
# outline round the core; the rest stays open (suburban_residential in the land cover). core: the
# old village centre (lat, lon), chosen plausibly inside the district; None for the districts that
# grew out of the centre, whose core lies halfway from their land's centroid to the Wälle. turn: the
# local street grid's turn against the Wälle ring in degrees; grids with turn 0 are one grid with the
# ring's, so their streets run on across district borders.
DISTRICT_PLAN: dict[str, tuple[str, float, float, tuple[float, float] | None]] = {
    "Stadtmitte": ("centre", 1.0, 0.0, None),
    "Kempener Feld": ("inner", 0.24, 0.0, None),
    "Südbezirk": ("inner", 0.26, 0.0, None),
    "Cracau": ("inner", 0.24, 0.0, None),
    "Dießem": ("inner", 0.25, 0.0, None),
    "Inrath": ("suburb", 0.12, 20.0, (51.358, 6.555)),
    "Bockum": ("villa", 0.3, 25.0, (51.362, 6.595)),
    "Verberg": ("villa", 0.25, 40.0, (51.365, 6.62)),
    "Oppum": ("suburb", 0.16, -15.0, (51.328, 6.609)),
    "Fischeln": ("suburb", 0.22, 5.0, None),
    "Gartenstadt": ("suburb", 0.16, 30.0, (51.342, 6.615)),
    "Linn": ("suburb", 0.17, 35.0, (51.334, 6.633)),
    "Uerdingen": ("suburb", 0.17, 45.0, (51.354, 6.64)),
}

# Industrial estates (synthetic outlines, names descriptive): (name, outline as (lat, lon) vertices).
INDUSTRIAL_AREAS: list[tuple[str, list[tuple[float, float]]]] = [
    (
        "Industriegebiet Uerdingen-Nord",
        [(51.3595, 6.629), (51.3595, 6.6455), (51.369, 6.6455), (51.369, 6.64)],
    ),
    (
        "Gewerbegebiet Fischeln-Ost",
        [(51.3102, 6.5965), (51.3102, 6.607), (51.3127, 6.6065), (51.315, 6.5965)],
    ),
    (
        "Gewerbegebiet Dießem",
        [(51.3242, 6.5875), (51.3238, 6.598), (51.3275, 6.5958), (51.3282, 6.588)],
    ),
]
AREAS += [
    ({"landuse": "industrial", "name": name, "note": "synthetic outline"}, pts)
    for name, pts in INDUSTRIAL_AREAS
]
# fmt: on

# ======================================================================================== derived data
# Everything below derives the pack's files from the tables above.

_TO_UTM = Transformer.from_crs("EPSG:4326", CRS, always_xy=True)
_TO_WGS = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)

# Street space (carriageway, cycle lanes, parking, sidewalks) of each highway class, in metres.
# The Wälle are boulevards with a central promenade, hence the wide primary class.
STREET_SPACE_M = {
    "trunk": 24.0,
    "primary": 30.0,
    "secondary": 18.0,
    "tertiary": 14.0,
    "unclassified": 10.0,
    "residential": 11.0,
    "pedestrian": 14.0,
    "service": 7.0,
}
TRAM_EXTRA_M = 6.0  # a double tram track in the street adds about this much
RAIL_CORRIDOR_M = 12.0  # double-track main line incl. ballast shoulders

# Block zones: where blocks are cut from, with the default use and storey range of their blocks.
ZONE_DEFAULTS = {
    "Innenstadt": ("mixed", 3, 5),
    "Uerdingen": ("mixed", 2, 4),
    "Rheinhafen": ("port", 1, 3),
}
COMMERCIAL_STREET = "Königstraße"  # inner-city blocks along the shopping street are commercial
COMMERCIAL_STOREYS = (3, 6)
MIN_BLOCK_M2 = {"Innenstadt": 400.0, "Uerdingen": 400.0, "Rheinhafen": 2500.0}

BLOCK_LANDUSE = {
    "residential": {"landuse": "residential"},
    "mixed": {"landuse": "residential", "residential": "urban"},
    "commercial": {"landuse": "retail"},
    "civic": {"landuse": "civic_admin"},
    "industrial": {"landuse": "industrial"},
    "port": {"landuse": "industrial", "industrial": "port"},
}
BLOCK_CLASS = {
    "residential": "residential_garden",
    "mixed": "urban_yard",
    "commercial": "urban_yard",
    "civic": "urban_yard",
    "industrial": "industrial_yard",
    "port": "industrial_yard",
}

# Synthetic terrain (m DHHN2016): Lower Rhine terrace plain sloping down to the Rhine flood plain.
TERRACE_M = 39.0  # city centre level (stated: about 38-40 m)
FLOODPLAIN_M = 30.0
DIKE_CREST_M = 33.0
DIKE_CREST_HALF_WIDTH_M = 8.0  # crest with its berms, so that a 25 m grid resolves the dike
DIKE_SLOPE = 3.0  # horizontal : vertical of the dike flanks
PORT_YARD_M = 32.0  # quays and yards are built up above the flood plain
OLD_TOWN_M = 31.5  # Uerdingen old town sits on a slight rise at the river
RAISED_ZONE_TAPER = 60.0  # raised yards and the old town blend into the plain at 1:60
RIVER_LEVEL_SOUTH_M = 29.0  # mean water level where the Rhine enters the extent
RIVER_LEVEL_NORTH_M = 28.2  # and where it leaves it


def lonlat_to_utm(lonlat: np.ndarray) -> np.ndarray:
    """(n, 2) lon/lat degrees -> (n, 2) EPSG:25832 metres."""
    a = np.asarray(lonlat, dtype=float).reshape(-1, 2)
    # lists, not arrays: pyproj takes arrays of one element as (deprecated) scalars
    x, y = _TO_UTM.transform(list(a[:, 0]), list(a[:, 1]))
    return np.column_stack([x, y])


def latlon_to_utm(latlon: list[tuple[float, float]]) -> np.ndarray:
    """(lat, lon) pairs as written in the tables -> (n, 2) EPSG:25832 metres."""
    a = np.asarray(latlon, dtype=float).reshape(-1, 2)
    return lonlat_to_utm(a[:, ::-1])


def utm_to_lonlat(xy: np.ndarray) -> list[list[float]]:
    """(n, 2) EPSG:25832 metres -> [[lon, lat], ...] rounded to 7 decimals (about 1 cm), per RFC 7946."""
    a = np.asarray(xy, dtype=float).reshape(-1, 2)
    lon, lat = _TO_WGS.transform(list(a[:, 0]), list(a[:, 1]))
    return [[round(float(u), 7), round(float(v), 7)] for u, v in zip(lon, lat, strict=True)]


def polygons(geom) -> list[Polygon]:
    """The polygons of any geometry (Polygon, MultiPolygon, collection), empty ones dropped."""
    return [g for g in getattr(geom, "geoms", [geom]) if isinstance(g, Polygon) and not g.is_empty]


def street_space_m(tags: dict[str, str]) -> float:
    """Width of the street space a highway way stands for (m): a boulevard's cross-section in
    boulevards.toml (the Wälle, the Rheinstraße), else its class's (and a tram's) width."""
    section = BOULEVARDS.get(tags.get("name", ""))
    if section is not None:
        return section.width
    width = STREET_SPACE_M[tags["highway"]]
    if tags.get("railway") == "tram":
        width += TRAM_EXTRA_M
    return width


class PackGeometry:
    """The definitions projected to EPSG:25832 as shapely geometry, shared by every writer."""

    def __init__(self) -> None:
        self.nodes = dict(NODES)  # the tables' nodes, then the local streets' (add_local_streets)
        self.node_xy = {
            k: tuple(latlon_to_utm([(lat, lon)])[0]) for k, (lat, lon, _) in NODES.items()
        }
        self.way_keys = [(list(keys), tags) for keys, tags in WAYS]  # WAYS first, in their order
        self.between: dict[tuple[str, str], list[str]] = {}  # local junctions between table nodes
        self.ways = [(LineString([self.node_xy[k] for k in keys]), tags) for keys, tags in WAYS]
        self.areas = [(Polygon(latlon_to_utm(pts)), tags) for tags, pts in AREAS]
        self.river = self._area(water="river")
        self.basin = self._area(water="basin")
        self.harbour = self._area(industrial="port")
        self.water = shapely.union_all([self.river, self.basin])
        self.squares = [p for p, t in self.areas if t.get("place") == "square"]
        self.parks = [p for p, t in self.areas if t.get("leisure") == "park"]
        self.forests = [p for p, t in self.areas if t.get("landuse") == "forest"]
        self.districts = [
            (p, t["name"]) for p, t in self.areas if t.get("landuse") == "residential"
        ]
        self.dikes = [LineString(latlon_to_utm(d)) for d in DIKES]
        corners = ("Westwall/Südwall", "Ostwall/Südwall", "Ostwall/Nordwall", "Westwall/Nordwall")
        self.ring = Polygon([self.node_xy[k] for k in corners])
        self.uerdingen = Polygon(latlon_to_utm(UERDINGEN_ZONE)).difference(self.river.buffer(40.0))
        self.zones = {
            "Innenstadt": self.ring,
            "Uerdingen": self.uerdingen,
            "Rheinhafen": self.harbour,
        }
        self.estates = [
            (p, t["name"])
            for p, t in self.areas
            if t.get("landuse") == "industrial" and not t.get("industrial")
        ]
        self.built, self.cores = built_areas(self)
        self._street_space = None
        add_local_streets(self)

    def expand(self, keys: list[str]) -> list[str]:
        """Node keys of a way of WAYS (or a piece of one) with the local streets' junctions on it."""
        out = keys[:1]
        for a, b in zip(keys[:-1], keys[1:], strict=True):
            out += [*self.between.get((a, b), ()), b]
        return out

    def _area(self, **match: str) -> Polygon:
        for poly, tags in self.areas:
            if all(tags.get(k) == v for k, v in match.items()):
                return poly
        raise KeyError(f"no area with tags {match}")

    def street_space(self):
        """Union of all streets buffered by their street space, and of the rail corridors.

        Round ends keep a turning space at dead ends; mitre joins keep block corners square.
        """
        if self._street_space is not None:
            return self._street_space
        parts = []
        for line, tags in self.ways:
            if "highway" in tags:
                w = street_space_m(tags)
            elif tags.get("railway") == "rail":
                w = RAIL_CORRIDOR_M
            else:
                continue
            parts.append(line.buffer(w / 2.0, cap_style="round", join_style="mitre"))
        self._street_space = shapely.union_all(parts)
        return self._street_space


# ------------------------------------------------------------------------------------------- blocks
def derive_blocks(g: PackGeometry) -> list[dict]:
    """City blocks: each zone less street space, rail, squares and water; tiny slivers dropped.

    A morphological opening (shrink 5 m, grow back) removes strips narrower than 10 m left between
    street buffers, water and the zone edge. Use and storeys come from the zone, the shopping-street
    rule and the USE_POINTS overrides.
    """
    cut = shapely.union_all([g.street_space(), *g.squares, g.water.buffer(5.0)])
    shopping = shapely.union_all([line for line, t in g.ways if t.get("name") == COMMERCIAL_STREET])
    overrides = [
        (Point(latlon_to_utm([(lat, lon)])[0]), use, a, b) for lat, lon, use, a, b, _ in USE_POINTS
    ]
    blocks = []
    for zone, (use0, smin0, smax0) in ZONE_DEFAULTS.items():
        area = g.zones[zone]
        found = []
        for part in polygons(area.difference(cut)):
            opened = part.buffer(-5.0, join_style="mitre").buffer(5.0, join_style="mitre")
            for poly in polygons(opened.intersection(part)):
                if poly.area < MIN_BLOCK_M2[zone]:
                    continue
                if poly.interiors:
                    raise RuntimeError(
                        f"block in {zone} at {poly.centroid} has a hole; widen a square"
                    )
                found.append(orient(poly, 1.0))
        found.sort(key=lambda p: (-round(p.centroid.y), round(p.centroid.x)))
        for poly in found:
            use, smin, smax = use0, smin0, smax0
            if zone == "Innenstadt" and poly.distance(shopping) < 12.0:
                use, (smin, smax) = "commercial", COMMERCIAL_STOREYS
            for pt, u, a, b in overrides:
                if poly.contains(pt):
                    use, smin, smax = u, a, b
            blocks.append(
                {"use": use, "storeys_min": smin, "storeys_max": smax, "district": zone,
                 "geometry": poly}
            )  # fmt: skip
    for i, b in enumerate(blocks, start=1):
        b["id"] = f"B{i:03d}"
        b["form"] = default_form(b["use"], b["storeys_max"])
    return blocks + district_blocks(g, len(blocks) + 1)


# --------------------------------------------------------------------------------- district streets
# The districts' local streets are synthetic: a grid per district (or one grid shared with the Wälle
# ring, whose cross streets it continues), clipped to the district's built part, cut at railways,
# the B 288 and water, and joined at grade to the main streets it crosses.
LOCAL_STREET_TAGS = {"highway": "residential", "maxspeed": "30", "note": "synthetic"}
ESTATE_STREET_TAGS = {"highway": "unclassified", "maxspeed": "50", "note": "synthetic"}
JOINS = ("primary", "secondary", "tertiary", "unclassified", "residential")  # crossed at grade
GRID_M = {  # (street spacing across the grid's a axis, along it), m: block width and length
    "ring": (110.0, 150.0),
    "suburb": (75.0, 160.0),
    "villa": (90.0, 170.0),
    "estate": (200.0, 300.0),
}
SNAP_M = 15.0  # a crossing this close to a node of the main street uses that node
REACH_M = 25.0  # a local street ending this close to a main street is joined to it
MIN_STUB_M = 30.0  # shorter dead ends beyond the last crossing are dropped
MIN_STREET_M = 60.0
CORE_PULL = 0.5  # a district's built core lies this share of the way from its centroid to the Wälle
EDGE_WAVES = (2, 3, 4, 5)  # the built part's outline: a disc whose radius varies by these harmonics


def ring_axes(g: PackGeometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Wälle's south-west corner and unit vectors along the Ostwall (a, north) and across (b, east)."""
    o = np.asarray(g.node_xy["Westwall/Südwall"])
    s, n = np.asarray(g.node_xy["Ostwall/Südwall"]), np.asarray(g.node_xy["Ostwall/Nordwall"])
    a = (n - s) / np.hypot(*(n - s))
    return o, a, np.array([a[1], -a[0]])


def _turned(v: np.ndarray, deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def lines_of(geom) -> list[LineString]:
    """The line strings of any geometry, empty ones dropped."""
    parts = shapely.get_parts(
        shapely.line_merge(geom) if geom.geom_type == "MultiLineString" else geom
    )
    return [p for p in parts if isinstance(p, LineString) and not p.is_empty]


def built_areas(g: PackGeometry) -> tuple[dict[str, Polygon], dict[str, Point]]:
    """The built part of each district (DISTRICT_PLAN share of its land round its core) and the core."""
    xmin, ymin, xmax, ymax = EXTENT
    keep_off = shapely.union_all(
        [*g.parks, *g.forests, *g.squares, *(p for p, _ in g.estates), g.water.buffer(20.0),
         g.ring, g.uerdingen.buffer(20.0), g.harbour.buffer(20.0)]
    )  # fmt: skip
    g.keep_off = keep_off
    inner = shapely.box(xmin + 30.0, ymin + 30.0, xmax - 30.0, ymax - 30.0)
    centre = g.ring.centroid
    by_name: dict[str, list[Polygon]] = {}
    for poly, name in g.districts:
        by_name.setdefault(name, []).append(poly)
    built, cores = {}, {}
    for name, polys in by_name.items():
        _, share, _, at = DISTRICT_PLAN[name]
        land = shapely.union_all(polys).intersection(inner).difference(keep_off)
        c = land.centroid
        core = Point(c.x + CORE_PULL * (centre.x - c.x), c.y + CORE_PULL * (centre.y - c.y))
        if at is not None:
            core = Point(latlon_to_utm([at])[0])
        cores[name] = core
        if share >= 1.0:
            built[name] = land
            continue
        # a seeded wavy outline, scaled (bisection) until it holds the share of the land
        rng = np.random.default_rng([SEED, 5, zlib.crc32(name.encode("utf-8"))])
        theta = np.linspace(0.0, 2.0 * math.pi, 181)[:-1]
        wave = 1.0 + sum(
            rng.uniform(0.04, 0.12) * np.cos(k * theta + rng.uniform(0.0, 2.0 * math.pi))
            for k in EDGE_WAVES
        )
        unit = np.column_stack([wave * np.cos(theta), wave * np.sin(theta)])
        centre_xy = np.asarray(core.coords[0])
        lo, hi = 0.0, 8000.0
        for _ in range(40):
            r = 0.5 * (lo + hi)
            inside = land.intersection(Polygon(centre_xy + r * unit)).area
            lo, hi = (r, hi) if inside < share * land.area else (lo, r)
        built[name] = land.intersection(Polygon(centre_xy + hi * unit))
    return built, cores


def ring_grid_area(g: PackGeometry):
    """The built parts of the districts on the ring's grid as one area; the seams between the
    district outlines (a few metres) are closed, so blocks run across district borders."""
    parts = [g.built[n] for n, (_, _, turn, _) in DISTRICT_PLAN.items() if turn == 0.0]
    others = [g.built[n] for n, (_, _, turn, _) in DISTRICT_PLAN.items() if turn != 0.0]
    closed = (
        shapely.union_all(parts).buffer(20.0, join_style="mitre").buffer(-20.0, join_style="mitre")
    )
    return closed.difference(shapely.union_all([g.keep_off, *others]))


def _grid_groups(g: PackGeometry) -> list[dict]:
    """Street grids to lay: the ring grid, one per turned district, one per industrial estate."""
    o, a, b = ring_axes(g)
    ring_area = ring_grid_area(g)
    sb, sa = GRID_M["ring"]
    # across the ring: the Wälle and the streets inside run on; beyond them a regular spacing
    t_in = [float((np.asarray(g.node_xy[f"{k}/Südwall"]) - o) @ b) for k in
            ("Westwall", "Hochstraße", "Königstraße", "Friedrichstraße", "Ostwall")]  # fmt: skip
    s_in = [float((np.asarray(g.node_xy[k]) - o) @ a) for k in NODES if k.startswith("Ostwall/")]
    s_in.sort()
    groups = [
        {
            "region": ring_area, "o": o, "a": a, "b": b, "tags": LOCAL_STREET_TAGS,
            "t": [t_in[0] - k * sb for k in range(1, 40)] + t_in[1:-1]
            + [t_in[-1] + k * sb for k in range(1, 60)],
            "s": [s_in[0] - k * sa for k in range(1, 30)] + s_in[1:-1]
            + [s_in[-1] + k * sa for k in range(1, 30)],
        }
    ]  # fmt: skip
    for name, (kind, _, turn, _) in DISTRICT_PLAN.items():
        if turn == 0.0 or name not in g.built:
            continue
        sb, sa = GRID_M["villa" if kind == "villa" else "suburb"]
        core = np.asarray(g.cores[name].coords[0])
        groups.append(_regular(g.built[name], core, _turned(a, turn), _turned(b, turn), sb, sa))
    for poly, _ in g.estates:
        rect = np.asarray(poly.minimum_rotated_rectangle.exterior.coords)
        edge = max((rect[1] - rect[0], rect[2] - rect[1]), key=lambda e: float(np.hypot(*e)))
        ea = edge / np.hypot(*edge)
        sb, sa = GRID_M["estate"]
        c = np.asarray(poly.centroid.coords[0])
        groups.append(
            {**_regular(poly, c, ea, np.array([ea[1], -ea[0]]), sb, sa), "tags": ESTATE_STREET_TAGS}
        )
    return groups


def _regular(region, o: np.ndarray, a: np.ndarray, b: np.ndarray, sb: float, sa: float) -> dict:
    xy = shapely.get_coordinates(region) - o
    s, t = xy @ a, xy @ b
    return {
        "region": region, "o": o, "a": a, "b": b, "tags": LOCAL_STREET_TAGS,
        "t": [k * sb + sb / 2 for k in range(math.floor(t.min() / sb) - 1, math.ceil(t.max() / sb) + 1)],
        "s": [k * sa + sa / 2 for k in range(math.floor(s.min() / sa) - 1, math.ceil(s.max() / sa) + 1)],
    }  # fmt: skip


def _grid_pieces(group: dict, barrier, mains) -> list[LineString]:
    """The grid's lines clipped to its region, less the barriers; pieces along a main street dropped."""
    region, o, a, b = group["region"], group["o"], group["a"], group["b"]
    xy = shapely.get_coordinates(region) - o
    s_lo, s_hi = float((xy @ a).min()) - 10.0, float((xy @ a).max()) + 10.0
    t_lo, t_hi = float((xy @ b).min()) - 10.0, float((xy @ b).max()) + 10.0
    lines = [LineString([o + t * b + s_lo * a, o + t * b + s_hi * a]) for t in group["t"]]
    lines += [LineString([o + s * a + t_lo * b, o + s * a + t_hi * b]) for s in group["s"]]
    shapely.prepare(region)
    out = []
    for line in lines:
        if not region.intersects(line):
            continue
        for piece in lines_of(line.intersection(region).difference(barrier)):
            if piece.length < MIN_STREET_M:
                continue
            if piece.buffer(20.0).intersection(mains).length > 0.5 * piece.length:
                continue  # it would double a main street
            out.append(piece)
    return out


def add_local_streets(g: PackGeometry) -> None:
    """Lay the district street grids and join them to the main streets (see the section comment).

    Adds the local ways to g.way_keys / g.ways and their nodes to g.nodes / g.node_xy; a crossing
    with a main street becomes a node of that way (an existing node within SNAP_M is reused).
    Pieces not connected to the main streets are dropped.
    """
    barrier_parts = [g.water.buffer(15.0)]
    joinable: list[int] = []
    for i, (line, tags) in enumerate(g.ways):
        if tags.get("railway") == "rail" and "highway" not in tags:
            barrier_parts.append(line.buffer(RAIL_CORRIDOR_M / 2.0 + 8.0))
        elif "highway" in tags and (tags["highway"] not in JOINS or tags.get("bridge") == "yes"):
            barrier_parts.append(line.buffer(street_space_m(tags) / 2.0 + 8.0))
        elif "highway" in tags:
            joinable.append(i)
    barrier = shapely.union_all(barrier_parts)
    mains = shapely.union_all([g.ways[i][0] for i in joinable])
    pieces: list[tuple[LineString, dict[str, str]]] = []
    for group in _grid_groups(g):
        pieces += [(p, group["tags"]) for p in _grid_pieces(group, barrier, mains)]

    new_xy: dict[str, tuple[float, float]] = {}
    inserted: dict[int, list[tuple[float, str]]] = {i: [] for i in joinable}
    syn_key: dict[tuple[int, int], str] = {}

    def new_node(x: float, y: float) -> str:
        key = f"local {len(new_xy) + 1}"
        new_xy[key] = (float(x), float(y))
        return key

    def on_main(i: int, p: Point) -> tuple[str, Point]:
        """The node of main way i at (or next to) point p."""
        line, _ = g.ways[i]
        keys = g.way_keys[i][0]
        d = [math.dist(g.node_xy[k], (p.x, p.y)) for k in keys]
        if min(d) <= SNAP_M:
            k = keys[int(np.argmin(d))]
            return k, Point(g.node_xy[k])
        for _, k in inserted[i]:
            if math.dist(new_xy[k], (p.x, p.y)) <= SNAP_M:
                return k, Point(new_xy[k])
        k = new_node(p.x, p.y)
        inserted[i].append((line.project(p), k))
        return k, p

    tree = shapely.STRtree([g.ways[i][0] for i in joinable])
    ptree = shapely.STRtree([p for p, _ in pieces])
    crossings: list[list[tuple[float, str]]] = [[] for _ in pieces]
    for n, (piece, _) in enumerate(pieces):
        for j in tree.query(piece.buffer(REACH_M)):
            i = joinable[int(j)]
            line = g.ways[i][0]
            hits = [
                q for q in shapely.get_parts(piece.intersection(line)) if q.geom_type == "Point"
            ]
            for end in (Point(piece.coords[0]), Point(piece.coords[-1])):
                if line.distance(end) <= REACH_M and not any(
                    h.distance(end) < REACH_M for h in hits
                ):
                    hits.append(line.interpolate(line.project(end)))
            for h in hits:
                key, at = on_main(i, h)
                crossings[n].append((piece.project(at), key))
        for m in ptree.query(piece):
            m = int(m)
            if m <= n:
                continue
            for h in shapely.get_parts(piece.intersection(pieces[m][0])):
                if h.geom_type != "Point":
                    continue
                cell = (round(h.x * 10), round(h.y * 10))
                if cell not in syn_key:
                    syn_key[cell] = new_node(h.x, h.y)
                crossings[n].append((piece.project(h), syn_key[cell]))
                crossings[m].append((pieces[m][0].project(h), syn_key[cell]))

    # each piece: its crossings in order, dead ends kept where longer than MIN_STUB_M
    ways: list[tuple[list[str], dict[str, str]]] = []
    for (piece, tags), found in zip(pieces, crossings, strict=True):
        found = sorted(set(found))
        keys = [k for _, k in found]
        keys = [k for n, k in enumerate(keys) if n == 0 or k != keys[n - 1]]
        if not found or found[0][0] > MIN_STUB_M:
            keys.insert(0, new_node(*piece.coords[0]))
        if not found or piece.length - found[-1][0] > MIN_STUB_M:
            keys.append(new_node(*piece.coords[-1]))
        if len(keys) >= 2:
            ways.append((keys, tags))
    # what is not connected to the main streets gets a link street to the nearest one
    parent: dict[str, str] = {}

    def root(k: str) -> str:
        while parent.setdefault(k, k) != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for keys, _ in ways:
        for k in keys[1:]:
            parent[root(k)] = root(keys[0])
    main_keys = {k for i in joinable for k in g.way_keys[i][0]}
    linked = {root(k) for k in main_keys | {k for v in inserted.values() for _, k in v}}
    components: dict[str, list[str]] = {}
    for keys, _ in ways:
        for k in keys:
            components.setdefault(root(k), []).append(k)
    for r, members in components.items():
        if r in linked:
            continue
        xy = lambda k: new_xy[k] if k in new_xy else g.node_xy[k]  # noqa: E731
        best = min(dict.fromkeys(members), key=lambda k: mains.distance(Point(xy(k))))
        p = Point(xy(best))
        i = min(joinable, key=lambda i: g.ways[i][0].distance(p))
        line = g.ways[i][0]
        key, _ = on_main(i, line.interpolate(line.project(p)))
        ways.append(([best, key], LOCAL_STREET_TAGS))

    # the crossings become nodes of the main ways, in order along each
    for i, found in inserted.items():
        if not found:
            continue
        keys = g.way_keys[i][0]
        line = g.ways[i][0]
        at = [line.project(Point(g.node_xy[k])) for k in keys]
        merged = sorted([(d, n, k) for n, (d, k) in enumerate(zip(at, keys, strict=True))]
                        + [(d, len(keys) + n, k) for n, (d, k) in enumerate(sorted(found))])  # fmt: skip
        g.way_keys[i] = ([k for _, _, k in merged], g.way_keys[i][1])
        at_table = [n for n, (_, order, _) in enumerate(merged) if order < len(keys)]
        for n0, n1 in zip(at_table[:-1], at_table[1:], strict=True):
            if n1 > n0 + 1:
                between = [k for _, _, k in merged[n0 + 1 : n1]]
                g.between[(merged[n0][2], merged[n1][2])] = between
                g.between[(merged[n1][2], merged[n0][2])] = between[::-1]
    # nodes: rounded to the 7 decimals of the OSM file, positions from the rounded values
    used = {k for keys, _ in ways for k in keys}
    counters: dict[str, int] = {}
    for key, (x, y) in new_xy.items():
        if key not in used:
            continue
        lon, lat = utm_to_lonlat(np.array([[x, y]]))[0]
        g.nodes[key] = (lat, lon, {})
        g.node_xy[key] = tuple(latlon_to_utm([(lat, lon)])[0])
    for keys, tags in ways:
        mid = LineString([g.node_xy[k] for k in keys]).interpolate(0.5, normalized=True)
        name = _place_of(g, mid)
        counters[name] = counters.get(name, 0) + 1
        g.way_keys.append((keys, {**tags, "name": f"{name} Straße {counters[name]}"}))
    g.ways = [(LineString([g.node_xy[k] for k in keys]), tags) for keys, tags in g.way_keys]


def _place_of(g: PackGeometry, p: Point) -> str:
    """The industrial estate or district a point lies in (the nearest district if in none)."""
    for poly, name in g.estates:
        if poly.distance(p) < 1.0:
            return name
    return min(g.districts, key=lambda d: d[0].distance(p))[1]


# ---------------------------------------------------------------------------------- district blocks
MIN_DISTRICT_BLOCK_M2 = 600.0
HBF_COMMERCIAL_M = 300.0  # blocks this close to the Hauptbahnhof are commercial (offices, hotels)
MAIN_STREET = ("primary", "secondary", "tertiary")  # blocks on these get shops below flats
VILLAGE_CENTRE_M = 120.0  # blocks this close to an outer district's core are its mixed centre


def district_blocks(g: PackGeometry, first: int) -> list[dict]:
    """Blocks of the built districts and industrial estates: their built part less street space.

    Use, form and storeys follow the district's kind (DISTRICT_PLAN), the distance to the Wälle and
    to the district's core, and whether the block fronts a main street; the draws between forms use
    a seeded stream in block order.
    """
    cut = shapely.union_all([g.street_space(), *g.squares, g.water.buffer(5.0)])
    fronts = shapely.union_all(
        [line.buffer(street_space_m(t) / 2.0 + 6.0) for line, t in g.ways
         if t.get("highway") in MAIN_STREET and t.get("note") != "synthetic"]
    )  # fmt: skip
    hbf = Point(g.node_xy["Krefeld Hbf"])
    rng = np.random.default_rng([SEED, 4])
    places = [(name, poly) for poly, name in g.estates]
    places += [("", ring_grid_area(g))]  # blocks of the ring grid: district by position, below
    places += [(n, g.built[n]) for n, (_, _, turn, _) in DISTRICT_PLAN.items() if turn != 0.0]
    estates = {name for _, name in g.estates}
    blocks = []
    taken = Polygon()
    for place, area in places:
        # district outlines meet or overlap by slivers: blocks keep a metre apart, so they stay
        # disjoint after the GeoJSON's rounding of their shared edges
        area = area.difference(taken.buffer(1.0, join_style="mitre"))
        taken = taken.union(area)
        found = []
        for part in polygons(area.difference(cut)):
            opened = part.buffer(-5.0, join_style="mitre").buffer(5.0, join_style="mitre")
            for poly in polygons(opened.intersection(part)):
                if poly.area >= MIN_DISTRICT_BLOCK_M2 and not poly.interiors:
                    found.append(orient(poly, 1.0))
        found.sort(key=lambda p: (-round(p.centroid.y), round(p.centroid.x)))
        for poly in found:
            name = place or max(g.built, key=lambda n: g.built[n].intersection(poly).area)
            kind = "estate" if name in estates else DISTRICT_PLAN[name][0]
            use, form, smin, smax = _district_block_use(g, name, kind, poly, fronts, hbf, rng)
            blocks.append(
                {"use": use, "form": form, "storeys_min": smin, "storeys_max": smax,
                 "district": name, "geometry": poly}
            )  # fmt: skip
    for i, b in enumerate(blocks, start=first):
        b["id"] = f"B{i:03d}"
    return blocks


def _district_block_use(g, name, kind, poly, fronts, hbf, rng) -> tuple[str, str, int, int]:
    """(use, form, storeys_min, storeys_max) of one district block."""
    on_main = poly.intersects(fronts)
    draw = rng.random()  # one draw per block, whatever the branch, so edits stay local
    if kind == "estate":
        return "industrial", "halls", 1, 2
    if kind == "centre":
        if poly.distance(hbf) < HBF_COMMERCIAL_M:
            return "commercial", "perimeter", 3, 6
        return ("mixed" if on_main else "residential"), "perimeter", 3, 5
    d_ring = poly.distance(g.ring)
    if kind == "inner":
        if d_ring < 900.0:
            return ("mixed" if on_main else "residential"), "perimeter", 3, 4 + int(on_main)
        if d_ring < 1600.0:
            return ("mixed", "perimeter", 2, 4) if on_main else ("residential", "perimeter", 2, 3)
        return (
            ("residential", "terraced", 2, 3) if draw < 0.35 else ("residential", "detached", 1, 2)
        )
    d_core = poly.distance(g.cores[name])
    if d_core < VILLAGE_CENTRE_M:  # the old village centre: shops below flats
        return "mixed", "perimeter", 2, 3
    if kind == "suburb":
        if d_core < 250.0:
            return ("mixed", "perimeter", 2, 3) if on_main else ("residential", "terraced", 2, 3)
        return (
            ("residential", "terraced", 2, 3) if draw < 0.25 else ("residential", "detached", 1, 2)
        )
    if d_core < 300.0 and on_main:  # villa districts
        return "mixed", "perimeter", 2, 3
    return ("residential", "villa", 2, 3) if draw < 0.6 else ("residential", "detached", 1, 2)


# ------------------------------------------------------------------------------------------ GeoJSON
def polygon_lonlat(poly: Polygon) -> list[list[list[float]]]:
    """RFC 7946 polygon rings (exterior counter-clockwise) in rounded lon/lat."""
    poly = orient(poly, 1.0)
    return [utm_to_lonlat(np.asarray(r.coords)) for r in (poly.exterior, *poly.interiors)]


def feature_collection(features: list[tuple[dict, Polygon]]) -> str:
    """A GeoJSON FeatureCollection of polygons, one feature per line so that diffs stay readable."""
    lines = ['{"type":"FeatureCollection","features":[']
    for i, (props, poly) in enumerate(features):
        geometry = {"type": "Polygon", "coordinates": polygon_lonlat(poly)}
        feature = {"type": "Feature", "properties": props, "geometry": geometry}
        sep = "," if i < len(features) - 1 else ""
        lines.append(json.dumps(feature, ensure_ascii=False, separators=(",", ":")) + sep)
    lines.append("]}")
    return "\n".join(lines) + "\n"


def blocks_geojson(blocks: list[dict]) -> str:
    """blocks.geojson text: id, use, form, storeys_min, storeys_max, district per block."""
    keys = ("id", "use", "form", "storeys_min", "storeys_max", "district")
    return feature_collection([({k: b[k] for k in keys}, b["geometry"]) for b in blocks])


def read_blocks(path: Path) -> list[dict]:
    """Blocks from a blocks.geojson, projected to EPSG:25832 (as generate_footprints takes them)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    blocks = []
    for f in data["features"]:
        rings = [lonlat_to_utm(r) for r in f["geometry"]["coordinates"]]
        poly = Polygon(rings[0], rings[1:])
        if not poly.is_valid:
            poly = max(polygons(shapely.make_valid(poly)), key=lambda p: p.area)
        blocks.append({**f["properties"], "geometry": poly})
    return blocks


def buildings_geojson(footprints: list[dict]) -> str:
    """buildings.geojson text: id, block, use, storeys, height (m), roof per footprint."""
    keys = ("id", "block", "use", "storeys", "height", "roof")
    return feature_collection([({k: f[k] for k in keys}, f["geometry"]) for f in footprints])


# ------------------------------------------------------------------------------------------ OSM XML
def _tag_lines(tags: dict[str, str]) -> list[str]:
    return [f"    <tag k={quoteattr(k)} v={quoteattr(v)}/>" for k, v in tags.items()]


def _node_xml(nid: int, lat: float, lon: float, tags: dict[str, str]) -> list[str]:
    head = f'  <node id="{nid}" version="1" timestamp="{OSM_TIMESTAMP}" lat="{lat:.7f}" lon="{lon:.7f}"'
    if not tags:
        return [head + "/>"]
    return [head + ">", *_tag_lines(tags), "  </node>"]


def _way_xml(wid: int, refs: list[int], tags: dict[str, str]) -> list[str]:
    lines = [f'  <way id="{wid}" version="1" timestamp="{OSM_TIMESTAMP}">']
    lines += [f'    <nd ref="{r}"/>' for r in refs]
    return lines + _tag_lines(tags) + ["  </way>"]


def osm_bounds() -> tuple[float, float, float, float]:
    """(minlat, minlon, maxlat, maxlon) enclosing the extent (edges sampled: they curve in lon/lat)."""
    xmin, ymin, xmax, ymax = EXTENT
    t = np.linspace(0.0, 1.0, 25)
    edge = np.concatenate(
        [
            np.column_stack([xmin + t * (xmax - xmin), np.full_like(t, ymin)]),
            np.column_stack([xmin + t * (xmax - xmin), np.full_like(t, ymax)]),
            np.column_stack([np.full_like(t, xmin), ymin + t * (ymax - ymin)]),
            np.column_stack([np.full_like(t, xmax), ymin + t * (ymax - ymin)]),
        ]
    )
    ll = np.asarray(utm_to_lonlat(edge))
    return ll[:, 1].min(), ll[:, 0].min(), ll[:, 1].max(), ll[:, 0].max()


def streets_osm(g: PackGeometry, blocks_file_blocks: list[dict]) -> str:
    """streets.osm: OSM XML 0.6 with street and rail ways, stand-alone nodes, areas, block landuse.

    The ways of WAYS carry the junctions of the districts' local streets (g.expand); the local
    streets follow them."""
    minlat, minlon, maxlat, maxlon = osm_bounds()
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<osm version="0.6" generator="Krefeld data pack author.py">',
        f'  <bounds minlat="{minlat:.7f}" minlon="{minlon:.7f}"'
        f' maxlat="{maxlat:.7f}" maxlon="{maxlon:.7f}"/>',
    ]
    next_id = iter(range(1, 10**9))
    node_id: dict[str, int] = {}
    for key, (lat, lon, tags) in g.nodes.items():
        node_id[key] = next(next_id)
        out += _node_xml(node_id[key], lat, lon, tags)
    poi_ids: list[int] = []  # for the route relations' platform members
    for lat, lon, tags in [*POIS, *pt_platforms()]:
        poi_ids.append(next(next_id))
        out += _node_xml(poi_ids[-1], lat, lon, tags)
    closed: list[tuple[list[int], dict[str, str]]] = []
    outlines = [(tags, [(lat, lon) for lat, lon in pts]) for tags, pts in AREAS]
    for b in blocks_file_blocks:
        ring = polygon_lonlat(b["geometry"])[0][:-1]
        tags = {**BLOCK_LANDUSE[b["use"]], "ref": b["id"]}
        outlines.append((tags, [(lat, lon) for lon, lat in ring]))
    for tags, pts in outlines:
        refs = []
        for lat, lon in pts:
            refs.append(next(next_id))
            out += _node_xml(refs[-1], lat, lon, {})
        closed.append((refs + refs[:1], tags))
    wid = 0
    pieces = pt_split_ways()  # WAYS split where bus and tram routes turn (public transport)
    way_ids: list[int] = []
    for keys, tags, _, _ in pieces:
        wid += 1
        way_ids.append(wid)
        out += _way_xml(wid, [node_id[k] for k in g.expand(keys)], tags)
    for keys, tags in g.way_keys[len(WAYS) :]:  # the districts' local streets
        wid += 1
        out += _way_xml(wid, [node_id[k] for k in keys], tags)
    for refs, tags in closed:
        wid += 1
        out += _way_xml(wid, refs, tags)
    out += pt_relations_xml(poi_ids, pieces, way_ids)
    out.append("</osm>")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------- public transport
# Synthetic SWK-like bus and tram lines (line numbers after SWK's scheme; routes and intervals are
# invented, not the published network) as OSM public-transport v2 route relations, one per direction
# and a route_master per line, as a real extract has them. Each route: its tags, its platforms in
# order (POIS names) and its path as street nodes (NODES keys) where consecutive keys lie on one way
# of WAYS; the ways so travelled are the relation's way members.
PT_NOTE = "synthetic line of the Krefeld data pack (line number after SWK's scheme; route invented)"
# Tram platforms: the trams stop in the street (railway=tram on the street ways), at a platform
# island between the tracks and the bus platform of the same name (POIS), halfway to the street.
PT_TRAM_PLATFORMS = ["Rheinstraße", "Krefeld Hbf/Ostwall", "Ostwall/Rheinstraße"]
# fmt: off
PT_ROUTES: list[tuple[dict[str, str], list[str], list[str]]] = [
    (
        {"route": "tram", "ref": "041", "name": "Tram 041: Rheinstraße => Krefeld Hbf/Ostwall",
         "from": "Rheinstraße", "to": "Krefeld Hbf/Ostwall", "interval": "10"},
        ["Rheinstraße", "Krefeld Hbf/Ostwall"],
        ["Westwall/Rheinstraße", "Ostwall/Rheinstraße", "Ostwall/Südwall"],
    ),
    (
        {"route": "tram", "ref": "041", "name": "Tram 041: Krefeld Hbf/Ostwall => Rheinstraße",
         "from": "Krefeld Hbf/Ostwall", "to": "Rheinstraße", "interval": "10"},
        ["Krefeld Hbf/Ostwall", "Rheinstraße"],
        ["Ostwall/Südwall", "Ostwall/Rheinstraße", "Westwall/Rheinstraße"],
    ),
    (
        {"route": "tram", "ref": "044", "name": "Tram 044: Krefeld Hbf/Ostwall => Ostwall/Rheinstraße",
         "from": "Krefeld Hbf/Ostwall", "to": "Ostwall/Rheinstraße", "interval": "10"},
        ["Krefeld Hbf/Ostwall", "Ostwall/Rheinstraße"],
        ["Ostwall/Südwall", "Ostwall/Neue Linner Straße"],
    ),
    (
        {"route": "tram", "ref": "044", "name": "Tram 044: Ostwall/Rheinstraße => Krefeld Hbf/Ostwall",
         "from": "Ostwall/Rheinstraße", "to": "Krefeld Hbf/Ostwall", "interval": "10"},
        ["Ostwall/Rheinstraße", "Krefeld Hbf/Ostwall"],
        ["Ostwall/Neue Linner Straße", "Ostwall/Südwall"],
    ),
    (
        {"route": "bus", "ref": "051", "name": "Bus 051: Hauptbahnhof => Rathaus",
         "from": "Hauptbahnhof", "via": "Theaterplatz", "to": "Rathaus", "interval": "10"},
        ["Hauptbahnhof", "Krefeld Hbf/Ostwall", "Ostwall/Rheinstraße", "Theaterplatz", "Rathaus"],
        ["Am Hauptbahnhof/Hansastraße", "Ostwall/Südwall", "Ostwall/Neue Linner Straße",
         "Friedrichstraße/Neue Linner Straße", "Friedrichstraße/St.-Anton-Straße",
         "Westwall/St.-Anton-Straße", "Westwall/Rheinstraße"],
    ),
    (
        {"route": "bus", "ref": "051", "name": "Bus 051: Rathaus => Hauptbahnhof",
         "from": "Rathaus", "via": "Theaterplatz", "to": "Hauptbahnhof", "interval": "10"},
        ["Rathaus", "Theaterplatz", "Ostwall/Rheinstraße", "Krefeld Hbf/Ostwall", "Hauptbahnhof"],
        ["Westwall/Rheinstraße", "Westwall/St.-Anton-Straße", "Friedrichstraße/St.-Anton-Straße",
         "Friedrichstraße/Rheinstraße", "Ostwall/Rheinstraße", "Ostwall/Südwall",
         "Am Hauptbahnhof/Hansastraße"],
    ),
    (
        {"route": "bus", "ref": "054", "name": "Bus 054: Hauptbahnhof => St.-Anton-Straße",
         "from": "Hauptbahnhof", "via": "Südwall", "to": "St.-Anton-Straße", "interval": "15"},
        ["Hauptbahnhof", "Südwall", "Rathaus", "St.-Anton-Straße"],
        ["Am Hauptbahnhof/Hansastraße", "Ostwall/Südwall", "Westwall/Südwall",
         "Westwall/St.-Anton-Straße", "Friedrichstraße/St.-Anton-Straße"],
    ),
    (
        {"route": "bus", "ref": "054", "name": "Bus 054: St.-Anton-Straße => Hauptbahnhof",
         "from": "St.-Anton-Straße", "via": "Südwall", "to": "Hauptbahnhof", "interval": "15"},
        ["St.-Anton-Straße", "Rathaus", "Südwall", "Hauptbahnhof"],
        ["Friedrichstraße/St.-Anton-Straße", "Westwall/St.-Anton-Straße", "Westwall/Südwall",
         "Ostwall/Südwall", "Am Hauptbahnhof/Hansastraße"],
    ),
    (
        {"route": "bus", "ref": "076", "name": "Bus 076: Hauptbahnhof => Rheinhafen",
         "from": "Hauptbahnhof", "via": "Uerdingen Bahnhof", "to": "Rheinhafen", "interval": "20"},
        ["Hauptbahnhof", "Stadtwald", "Bockum Uerdinger Straße", "Uerdingen Bahnhof", "Rheinhafen"],
        ["Ostwall/Südwall", "Am Hauptbahnhof/Hansastraße", "Hansastraße/Uerdinger Straße",
         "Uerdinger Straße/Bahnhofstraße", "Bahnhofstraße/Oberstraße", "Oberstraße/Mühlenstraße",
         "B 288/Oberstraße", "B 288/Hafenstraße", "Hafenstraße 6"],
    ),
    (
        {"route": "bus", "ref": "076", "name": "Bus 076: Rheinhafen => Hauptbahnhof",
         "from": "Rheinhafen", "via": "Uerdingen Bahnhof", "to": "Hauptbahnhof", "interval": "20"},
        ["Rheinhafen", "Uerdingen Bahnhof", "Bockum Uerdinger Straße", "Stadtwald", "Hauptbahnhof"],
        ["Hafenstraße 6", "B 288/Hafenstraße", "B 288/Oberstraße", "Oberstraße/Mühlenstraße",
         "Bahnhofstraße/Oberstraße", "Uerdinger Straße/Bahnhofstraße",
         "Hansastraße/Uerdinger Straße", "Am Hauptbahnhof/Hansastraße", "Ostwall/Südwall"],
    ),
]
# fmt: on


def _path_legs(path: list[str]) -> list[tuple[int, int, int]]:
    """(WAYS index, index of the leg's first node, of its last node) of each leg of a route path."""
    legs = []
    for a, b in zip(path[:-1], path[1:], strict=True):
        way = next((i for i, (keys, _) in enumerate(WAYS) if a in keys and b in keys), None)
        if way is None:
            raise ValueError(f"PT_ROUTES: no way of WAYS runs from '{a}' to '{b}'")
        keys = WAYS[way][0]
        legs.append((way, keys.index(a), keys.index(b)))
    return legs


def pt_split_ways() -> list[tuple[list[str], dict[str, str], int, int]]:
    """WAYS split where a route of PT_ROUTES enters, turns or leaves them, as OSM ways are split
    for route relations: (node keys, tags, WAYS index, index of the first node in that way)."""
    cuts: dict[int, set[int]] = {}
    for _, _, path in PT_ROUTES:
        for way, i, j in _path_legs(path):
            cuts.setdefault(way, set()).update((i, j))
    pieces = []
    for w, (keys, tags) in enumerate(WAYS):
        bounds = sorted({0, len(keys) - 1} | cuts.get(w, set()))
        for i, j in zip(bounds[:-1], bounds[1:], strict=True):
            pieces.append((keys[i : j + 1], tags, w, i))
    return pieces


def pt_platforms() -> list[tuple[float, float, dict[str, str]]]:
    """The tram platforms of PT_TRAM_PLATFORMS as (lat, lon, tags), like POIS."""
    tracks = shapely.union_all(
        [
            LineString(latlon_to_utm([NODES[k][:2] for k in keys]))
            for keys, tags in WAYS
            if tags.get("railway") == "tram"
        ]
    )
    out = []
    for name in PT_TRAM_PLATFORMS:
        lat, lon, _ = next(p for p in POIS if p[2].get("name") == name and "bus" in p[2])
        bus = Point(latlon_to_utm([(lat, lon)])[0])
        foot = tracks.interpolate(tracks.project(bus))  # the tracks' point nearest the bus platform
        island = LineString([bus, foot]).interpolate(0.5, normalized=True)
        ((lon_i, lat_i),) = utm_to_lonlat(np.array([[island.x, island.y]]))
        tags = {"public_transport": "platform", "railway": "platform", "tram": "yes", "name": name}
        out.append((round(lat_i, 7), round(lon_i, 7), tags))
    return out


def pt_relations_xml(
    poi_ids: list[int],
    pieces: list[tuple[list[str], dict[str, str], int, int]],
    way_ids: list[int],
    first_id: int = 1,
) -> list[str]:
    """Route relations (one per direction) and route masters (one per line) of PT_ROUTES, whose
    members are the platforms of their mode (POIS and pt_platforms, written with `poi_ids`) and the
    `pieces` (pt_split_ways, written with `way_ids`) the route travels."""
    platform = {
        (mode, tags["name"]): poi_ids[i]
        for i, (_, _, tags) in enumerate([*POIS, *pt_platforms()])
        for mode in ("bus", "tram")
        if tags.get("public_transport") == "platform" and tags.get(mode) == "yes"
    }
    out: list[str] = []
    rid = first_id
    masters: dict[tuple[str, str], list[int]] = {}
    for tags, platforms, path in PT_ROUTES:
        platforms = [(tags["route"], p) for p in platforms]
        missing = [p for mode, p in platforms if (mode, p) not in platform]
        if missing:
            raise ValueError(f"PT_ROUTES: line {tags['ref']}: no platform named '{missing[0]}'")
        members = []
        for way, i, j in _path_legs(path):
            leg = [
                way_ids[k]
                for k, (keys, _, w, first) in enumerate(pieces)
                if w == way and min(i, j) <= first and first + len(keys) - 1 <= max(i, j)
            ]
            members += leg if i < j else leg[::-1]
        out.append(f'  <relation id="{rid}" version="1" timestamp="{OSM_TIMESTAMP}">')
        out += [f'    <member type="node" ref="{platform[p]}" role="platform"/>' for p in platforms]
        out += [f'    <member type="way" ref="{w}" role=""/>' for w in members]
        out += _tag_lines(
            {"type": "route", **tags, "public_transport:version": "2", "note": PT_NOTE}
        )
        out.append("  </relation>")
        masters.setdefault((tags["route"], tags["ref"]), []).append(rid)
        rid += 1
    for (mode, ref), routes in masters.items():
        out.append(f'  <relation id="{rid}" version="1" timestamp="{OSM_TIMESTAMP}">')
        out += [f'    <member type="relation" ref="{r}" role=""/>' for r in routes]
        name = f"{'Tram' if mode == 'tram' else 'Bus'} {ref}"
        out += _tag_lines(
            {"type": "route_master", "route_master": mode, "ref": ref, "name": name,
             "note": PT_NOTE}
        )  # fmt: skip
        out.append("  </relation>")
        rid += 1
    return out


# -------------------------------------------------------------------------------------------- trees
# A synthetic tree register in the form of a Baumkataster: rows on the tree_row bands of the Wälle's
# cross-sections (boulevards.toml), rows along the main avenues, groves in the parks and the edge of
# the Stadtwald. Species are common German street and park trees; height and crown diameter are drawn
# from ranges chosen as plausible for mature urban trees of each species (not measured).
TREE_SPECIES: dict[str, tuple[tuple[float, float], tuple[float, float], float]] = {
    # species: (height range m, crown diameter range m, spacing in a row m)
    "Tilia cordata": ((12.0, 22.0), (7.0, 12.0), 10.0),
    "Platanus × hispanica": ((18.0, 30.0), (12.0, 20.0), 14.0),
    "Acer platanoides": ((10.0, 18.0), (7.0, 12.0), 9.0),
    "Aesculus hippocastanum": ((12.0, 22.0), (8.0, 14.0), 12.0),
    "Quercus robur": ((15.0, 28.0), (10.0, 18.0), 14.0),
    "Fagus sylvatica": ((18.0, 30.0), (10.0, 16.0), 12.0),
    "Carpinus betulus": ((10.0, 18.0), (6.0, 10.0), 8.0),
    "Acer pseudoplatanus": ((15.0, 25.0), (9.0, 15.0), 12.0),
    "Betula pendula": ((12.0, 22.0), (5.0, 9.0), 7.0),
}
# the species of each boulevard's and avenue's rows (chosen; no register is published for them)
ROW_SPECIES = {
    "Ostwall": "Platanus × hispanica",
    "Westwall": "Tilia cordata",
    "Südwall": "Aesculus hippocastanum",
    "Nordwall": "Tilia cordata",
    "Uerdinger Straße": "Platanus × hispanica",
    "Hansastraße": "Tilia cordata",
    "Am Hauptbahnhof": "Acer platanoides",
    "Friedrichstraße": "Acer platanoides",
    "St.-Anton-Straße": "Tilia cordata",
    "Oberstraße": "Tilia cordata",
}
PARK_SPECIES = ("Quercus robur", "Fagus sylvatica", "Acer pseudoplatanus", "Tilia cordata",
                "Aesculus hippocastanum", "Carpinus betulus", "Betula pendula")  # fmt: skip
FOREST_EDGE_SPECIES = ("Quercus robur", "Fagus sylvatica", "Carpinus betulus", "Betula pendula")
PARK_TREE_GRID_M = 14.0  # candidate sites in parks; about half of them (the groves) get a tree
FOREST_EDGE_ROWS_M = (4.0, 12.0)  # rows this far inside the Stadtwald's outline
CROSSING_CLEAR_M = 4.0  # rows stop this far beyond the street space of a crossing street


def _tree(rng: np.random.Generator, species: str, x: float, y: float, site: str) -> dict:
    (h0, h1), (c0, c1), _ = TREE_SPECIES[species]
    t = rng.random()  # one draw for size: a taller tree has the wider crown
    return {
        "species": species,
        "height": round(h0 + t * (h1 - h0) + rng.uniform(-1.0, 1.0), 1),
        "crown_diameter": round(c0 + t * (c1 - c0) + rng.uniform(-0.5, 0.5), 1),
        "x": round(x, 1),
        "y": round(y, 1),
        "site": site,
    }


def _row(line: LineString, spacing: float, clear, rng) -> list[tuple[float, float]]:
    """Points every `spacing` metres along a line (a little jitter), not inside `clear`."""
    n = int(line.length // spacing)
    out = []
    for k in range(n):
        s = (k + 0.5) * line.length / n + rng.uniform(-0.1, 0.1) * spacing if n else 0.0
        p = line.interpolate(s)
        if not clear.contains(p):
            out.append((p.x, p.y))
    return out


def tree_rows(g: PackGeometry) -> list[dict]:
    """The tree register: rows on boulevards and avenues, park groves, the Stadtwald's edge."""
    rng = np.random.default_rng([SEED, 6])
    trees: list[dict] = []
    keep_off = shapely.union_all([g.water.buffer(3.0), *g.squares])
    for name, species in ROW_SPECIES.items():
        lines = [line for line, t in g.ways if t.get("name") == name and "highway" in t]
        if not lines:
            continue
        others = [
            line.buffer(street_space_m(t) / 2.0 + CROSSING_CLEAR_M)
            for line, t in g.ways
            if "highway" in t and t.get("name") != name and t.get("bridge") != "yes"
        ]
        clear = shapely.union_all([*others, keep_off, g.harbour])
        section = BOULEVARDS.get(name)
        spacing = TREE_SPECIES[species][2]
        for line in shapely.get_parts(shapely.line_merge(shapely.union_all(lines))):
            if section is not None:  # the boulevard's tree_row bands, at their middle
                line = oriented(line, section)
                offsets = [
                    (a + b) / 2.0 for kind, a, b in band_offsets(section) if kind == "tree_row"
                ]
            else:  # an avenue: a row each side, at the kerb of the footway
                tags = next(t for ln, t in g.ways if t.get("name") == name and "highway" in t)
                half = street_space_m(tags) / 2.0 - 1.5
                offsets = [half, -half]
            for d in offsets:
                row = shapely.offset_curve(line, d, join_style="mitre")
                for x, y in _row(row, spacing, clear, rng):
                    trees.append(_tree(rng, species, x, y, f"{name} tree row"))
    grove = rng.uniform(0.0, 2.0 * math.pi, size=(3, 3))
    for poly, tags in g.areas:
        if tags.get("leisure") != "park":
            continue
        inner = poly.buffer(-5.0)
        x0, y0, x1, y1 = inner.bounds
        for x in np.arange(x0, x1, PARK_TREE_GRID_M):
            for y in np.arange(y0, y1, PARK_TREE_GRID_M):
                px = x + rng.uniform(-0.35, 0.35) * PARK_TREE_GRID_M
                py = y + rng.uniform(-0.35, 0.35) * PARK_TREE_GRID_M
                wave = sum(math.sin(px / (90.0 * (k + 1)) + grove[k, 0]) * math.sin(
                    py / (70.0 * (k + 1)) + grove[k, 1]) for k in range(3))  # fmt: skip
                if wave > 0.0 and inner.contains(Point(px, py)):  # groves, with lawns between
                    species = PARK_SPECIES[int(rng.integers(len(PARK_SPECIES)))]
                    trees.append(_tree(rng, species, px, py, tags["name"]))
    for poly in g.forests:
        for depth in FOREST_EDGE_ROWS_M:
            edge = poly.buffer(-depth).exterior
            for x, y in _row(edge, 9.0, keep_off, rng):
                species = FOREST_EDGE_SPECIES[int(rng.integers(len(FOREST_EDGE_SPECIES)))]
                trees.append(_tree(rng, species, x, y, "Stadtwald edge"))
    xmin, ymin, xmax, ymax = EXTENT
    trees = [t for t in trees if xmin < t["x"] < xmax and ymin < t["y"] < ymax]
    return [{"id": f"T{k:05d}", **t, "status": "synthetic"} for k, t in enumerate(trees, start=1)]


# ------------------------------------------------------------------------------------------ rasters
def grid_centres(cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre coordinates (X, Y) of a north-up grid over EXTENT."""
    xmin, ymin, xmax, ymax = EXTENT
    cols, rows = round((xmax - xmin) / cell), round((ymax - ymin) / cell)
    xs = xmin + (np.arange(cols) + 0.5) * cell
    ys = ymax - (np.arange(rows) + 0.5) * cell
    return np.meshgrid(xs, ys)


def river_level(y: np.ndarray | float) -> np.ndarray | float:
    """Mean water level of the Rhine (m), falling linearly from south to north across the extent."""
    f = (np.asarray(y) - EXTENT[1]) / (EXTENT[3] - EXTENT[1])
    return RIVER_LEVEL_SOUTH_M + (RIVER_LEVEL_NORTH_M - RIVER_LEVEL_SOUTH_M) * np.clip(f, 0.0, 1.0)


def terrain_array(g: PackGeometry) -> np.ndarray:
    """Synthetic DGM at TERRAIN_CELL_M: terrace plain to flood plain by distance to the Rhine, dikes, water.

    Heights rise smoothly (smoothstep) from the flood plain near the river to the terrace level about
    6 km away, with a gentle seeded undulation of a few decimetres; port yards and the Uerdingen old
    town are raised (tapering off outside); dikes are trapezoids round their crest lines; water cells
    hold the water level.
    """
    x, y = grid_centres(TERRAIN_CELL_M)
    pts = shapely.points(x.ravel(), y.ravel())
    d = shapely.distance(g.river, pts).reshape(x.shape)
    t = np.clip((d - 300.0) / (6500.0 - 300.0), 0.0, 1.0)
    s = t * t * (3.0 - 2.0 * t)
    z = FLOODPLAIN_M + (TERRACE_M - FLOODPLAIN_M) * s
    rng = np.random.default_rng([SEED, 1])
    noise = gaussian_filter(rng.standard_normal(x.shape), sigma=16.0, mode="reflect")
    z += 0.4 * noise / noise.std() * (0.3 + 0.7 * s)
    for zone, level in ((g.harbour, PORT_YARD_M), (g.uerdingen, OLD_TOWN_M)):
        d_zone = shapely.distance(zone, pts).reshape(x.shape)  # 0 inside
        z = np.maximum(z, level - d_zone / RAISED_ZONE_TAPER)
    d_dike = np.min([shapely.distance(line, pts) for line in g.dikes], axis=0).reshape(x.shape)
    z = np.maximum(z, DIKE_CREST_M - np.maximum(d_dike - DIKE_CREST_HALF_WIDTH_M, 0.0) / DIKE_SLOPE)
    basin_level = float(river_level(max(c[1] for c in g.basin.exterior.coords)))
    z = np.where(shapely.contains_xy(g.basin, x, y), basin_level, z)
    z = np.where(shapely.contains_xy(g.river, x, y), river_level(y), z)
    return np.round(z, 2).astype(np.float32)


def landcover_array(g: PackGeometry, blocks: list[dict], footprints: list[dict]) -> np.ndarray:
    """Land-cover codes at LANDCOVER_CELL_M, burnt in order (later shapes win) over farmland."""
    # Districts grown by 30 m close the seams left round zones and forests; later shapes paint over.
    shapes = [(p.buffer(30.0), CODE["suburban_residential"]) for p, _ in g.districts]
    shapes += [(p, CODE["park"]) for p in g.parks]
    shapes += [(p, CODE["forest"]) for p in g.forests]
    meadow = g.river.buffer(200.0).difference(g.harbour).difference(g.uerdingen)
    shapes += [(meadow, CODE["floodplain_meadow"]), (g.harbour, CODE["industrial_yard"])]
    shapes += [(b["geometry"], CODE[BLOCK_CLASS[b["use"]]]) for b in blocks]
    shapes += [(p, CODE["plaza"]) for p in g.squares]
    shapes += [(g.water, CODE["water"])]
    for line, tags in g.ways:
        if tags.get("railway") == "rail":
            shapes.append((line.buffer(RAIL_CORRIDOR_M / 2.0), CODE["railway"]))
    for line, tags in g.ways:
        if "highway" in tags:
            code = CODE["plaza"] if tags["highway"] == "pedestrian" else CODE["road"]
            shapes.append((line.buffer(street_space_m(tags) / 2.0), code))
    shapes += [(f["geometry"], CODE["building"]) for f in footprints]
    xmin, ymin, xmax, ymax = EXTENT
    shape = (round((ymax - ymin) / LANDCOVER_CELL_M), round((xmax - xmin) / LANDCOVER_CELL_M))
    transform = from_origin(xmin, ymax, LANDCOVER_CELL_M, LANDCOVER_CELL_M)
    return rasterize(
        shapes, out_shape=shape, transform=transform, fill=CODE["farmland"], dtype="uint8"
    )


def write_geotiff(
    path: Path, array: np.ndarray, cell: float, nodata: float, tags: dict[str, str]
) -> None:
    """A deflate-compressed, tiled GeoTIFF in EPSG:25832 over EXTENT."""
    xmin, _, _, ymax = EXTENT
    profile = {
        "driver": "GTiff",
        "height": array.shape[0],
        "width": array.shape[1],
        "count": 1,
        "dtype": array.dtype.name,
        "crs": CRS,
        "transform": from_origin(xmin, ymax, cell, cell),
        "nodata": nodata,
        "compress": "deflate",
        "predictor": 3 if array.dtype.kind == "f" else 2,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)
        dst.update_tags(**tags)


def sample_bilinear(z: np.ndarray, cell: float, x: float, y: float) -> float:
    """Bilinear value of a grid over EXTENT at (x, y), cell centres as nodes."""
    xmin, _, _, ymax = EXTENT
    c = min(max((x - xmin) / cell - 0.5, 0.0), z.shape[1] - 1.0)
    r = min(max((ymax - y) / cell - 0.5, 0.0), z.shape[0] - 1.0)
    c0, r0 = min(int(c), z.shape[1] - 2), min(int(r), z.shape[0] - 2)
    fc, fr = c - c0, r - r0
    top = z[r0, c0] * (1 - fc) + z[r0, c0 + 1] * fc
    bottom = z[r0 + 1, c0] * (1 - fc) + z[r0 + 1, c0 + 1] * fc
    return float(top * (1 - fr) + bottom * fr)


# ------------------------------------------------------------------------------------------ sensors
WELL_SPACING_M = 440.0  # one logger per ~0.19 km2 gives the 400+ loggers the city runs


def _dev_euis(rng: np.random.Generator, n: int, taken: set[str]) -> list[str]:
    """Unique EUI-64s with the locally-administered bit set (they name no real vendor's devices)."""
    out = []
    while len(out) < n:
        b = rng.integers(0, 256, size=8)
        b[0] = (b[0] & 0xFC) | 0x02
        eui = "".join(f"{int(v):02X}" for v in b)
        if eui not in taken:
            taken.add(eui)
            out.append(eui)
    return out


def _place_name(g: PackGeometry, p: Point) -> str:
    for zone, poly in g.zones.items():
        if poly.contains(p):
            return zone
    for poly, name in g.districts:
        if poly.contains(p):
            return name
    return "Außenbereich"


def wells_rows(g: PackGeometry, z: np.ndarray, taken: set[str]) -> list[dict]:
    """Ground-water loggers on a jittered grid over the land of the extent; depths from the aquifers.

    Most wells tap the Quaternary Rhine terrace sands and gravels (screens 3-30 m below
    ground); one in ten reaches the Tertiary sands below (40-70 m).
    """
    rng = np.random.default_rng([SEED, 2])
    xmin, ymin, xmax, ymax = EXTENT
    keep_off = g.water.buffer(30.0)
    nx, ny = math.ceil((xmax - xmin) / WELL_SPACING_M), math.ceil((ymax - ymin) / WELL_SPACING_M)
    sites = []
    for j in range(ny):
        for i in range(nx):
            x = xmin + (i + rng.uniform(0.1, 0.9)) * WELL_SPACING_M
            y = ymin + (j + rng.uniform(0.1, 0.9)) * WELL_SPACING_M
            if x < xmax and y < ymax and not keep_off.contains(Point(x, y)):
                sites.append((x, y))
    euis = _dev_euis(rng, len(sites), taken)
    counts: dict[str, int] = {}
    rows = []
    for k, (x, y) in enumerate(sites, start=1):
        place = _place_name(g, Point(x, y))
        counts[place] = counts.get(place, 0) + 1
        ground = sample_bilinear(z, TERRAIN_CELL_M, x, y)
        deep = rng.random() < 0.1
        depth = rng.uniform(40.0, 70.0) if deep else rng.uniform(8.0, 30.0)
        bottom = depth - rng.uniform(0.5, 1.0)  # a sump below the screen
        top = max(bottom - rng.uniform(2.0, 6.0), 3.0)
        rows.append(
            {
                "id": f"GWM-{k:04d}",
                "dev_eui": euis[k - 1],
                "name": f"GWM {place} {counts[place]}",
                "x": f"{x:.1f}",
                "y": f"{y:.1f}",
                "ground_elevation_m": f"{ground:.2f}",
                "reference_height_m": f"{ground + rng.uniform(0.3, 0.9):.2f}",
                "well_depth_m": f"{depth:.1f}",
                "screen_top_m": f"{top:.1f}",
                "screen_bottom_m": f"{bottom:.1f}",
                "aquifer": "tertiary" if deep else "quaternary",
                "status": "synthetic",
            }
        )
    return rows


DWD_STATION = {
    "id": "DWD-05064",
    "name": "Tönisvorst (DWD 05064)",
    "lat": 51.2897,
    "lon": 6.4437,
    "elevation_m": 37.0,
}


def climate_rows(z: np.ndarray, taken: set[str]) -> list[dict]:
    """The LoRaWAN climate stations of CLIMATE_STATIONS plus the official DWD station 05064."""
    rng = np.random.default_rng([SEED, 3])
    # The DWD station is no LoRaWAN device; its EUI is the key under which the twin feeds its series.
    euis = _dev_euis(rng, len(CLIMATE_STATIONS) + 1, taken)
    rows = []
    for k, (name, lat, lon, height) in enumerate(CLIMATE_STATIONS, start=1):
        x, y = latlon_to_utm([(lat, lon)])[0]
        rows.append(
            {
                "id": f"KLI-{k:03d}",
                "dev_eui": euis[k - 1],
                "name": f"Klimastation {name}",
                "x": f"{x:.1f}",
                "y": f"{y:.1f}",
                "elevation_m": f"{sample_bilinear(z, TERRAIN_CELL_M, x, y):.2f}",
                "sensor_height_m": f"{height:.1f}",
                "kind": "lorawan_climate",
                "status": "synthetic",
            }
        )
    x, y = latlon_to_utm([(DWD_STATION["lat"], DWD_STATION["lon"])])[0]
    rows.append(
        {
            "id": DWD_STATION["id"],
            "dev_eui": euis[-1],
            "name": DWD_STATION["name"],
            "x": f"{x:.1f}",
            "y": f"{y:.1f}",
            "elevation_m": f"{DWD_STATION['elevation_m']:.2f}",
            "sensor_height_m": "2.0",
            "kind": "dwd",
            "status": "official",
        }
    )
    return rows


# LoRaWAN parking-bay sensors: ten bays per street, evenly spaced along its longest stretch, in the
# kerbside lane (a boulevard's parking band where its cross-section has one). DevEUIs are made up.
PARKING_STREETS = ("Ostwall", "Westwall", "Rheinstraße", "Friedrichstraße", "St.-Anton-Straße")
PARKING_PER_STREET = 10
KERB_INSET_M = 2.5  # bay centre inside the street space's edge: sidewalk, kerb, half a parking lane


def _bay_line(street: str, g: PackGeometry) -> LineString:
    """The line the bays of `street` lie on: its longest stretch, offset into the kerbside lane."""
    parts = [
        (line, tags) for line, tags in g.ways if tags.get("name") == street and "highway" in tags
    ]
    if not parts:
        raise KeyError(f"no street named {street!r} in the pack")
    merged = shapely.line_merge(shapely.union_all([line for line, _ in parts]))
    line = max(getattr(merged, "geoms", [merged]), key=lambda x: x.length)
    section = BOULEVARDS.get(street)
    if section is None:
        return line.offset_curve(-(street_space_m(parts[0][1]) / 2 - KERB_INSET_M))
    line = oriented(line, section)
    bands = band_offsets(section)
    parking = [(a, b) for kind, a, b in bands if kind == "parking"]
    if parking:
        return line.offset_curve(sum(parking[0]) / 2)
    right = [b for kind, _, b in bands if kind == "carriageway"][-1]  # the right carriageway's kerb
    return line.offset_curve(right + 1.0)


def parking_rows(g: PackGeometry, footprints: list[dict]) -> list[dict]:
    """sensors/parking.csv: the parking-bay sensors on the streets they are named after."""
    tree = shapely.STRtree([f["geometry"] for f in footprints])
    rows = []
    for street in PARKING_STREETS:
        line = _bay_line(street, g)
        for i in range(PARKING_PER_STREET):
            p = line.interpolate((i + 0.5) / PARKING_PER_STREET, normalized=True)
            if len(tree.query(p, predicate="intersects")):
                raise RuntimeError(f"parking bay {i + 1} of {street} at {p} lies in a building")
            n = len(rows) + 1
            rows.append(
                {
                    "id": f"PK-{n:03d}",
                    "dev_eui": f"0F4E5A{n:010X}",
                    "name": f"{street} bay {i + 1}",
                    "x": round(p.x, 1),
                    "y": round(p.y, 1),
                    "status": "synthetic",
                }
            )
    return rows


def csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------- main
def author(out_dir: Path) -> list[Path]:
    """Write every source file of the pack (except the hand-written pack.toml) into out_dir."""
    out_dir = Path(out_dir)
    (out_dir / "sensors").mkdir(parents=True, exist_ok=True)
    written = []

    def write_text(name: str, text: str) -> None:
        path = out_dir / name
        path.write_text(text, encoding="utf-8", newline="\n")
        written.append(path)

    g = PackGeometry()
    write_text("blocks.geojson", blocks_geojson(derive_blocks(g)))
    # Buildings come from the blocks as written (rounded lon/lat), so anyone can regenerate them.
    blocks = read_blocks(out_dir / "blocks.geojson")
    footprints = generate_footprints(blocks, SEED)
    write_text("buildings.geojson", buildings_geojson(footprints))
    write_text("streets.osm", streets_osm(g, blocks))

    z = terrain_array(g)
    write_geotiff(
        out_dir / "terrain.tif",
        z,
        TERRAIN_CELL_M,
        TERRAIN_NODATA,
        {"STATUS": "synthetic", "UNITS": "m above sea level (DHHN2016)", "SOURCE": "author.py"},
    )
    written.append(out_dir / "terrain.tif")
    lc = landcover_array(g, blocks, footprints)
    classes = ";".join(f"{c}={n}" for c, n, _ in CLASSES)
    write_geotiff(
        out_dir / "landcover.tif",
        lc,
        LANDCOVER_CELL_M,
        0,
        {"STATUS": "synthetic", "CLASSES": classes, "SOURCE": "author.py"},
    )
    written.append(out_dir / "landcover.tif")

    write_text("trees.csv", csv_text(tree_rows(g)))
    taken: set[str] = set()
    write_text("sensors/wells.csv", csv_text(wells_rows(g, z, taken)))
    write_text("sensors/climate_stations.csv", csv_text(climate_rows(z, taken)))
    write_text("sensors/parking.csv", csv_text(parking_rows(g, footprints)))
    return written


if __name__ == "__main__":
    for p in author(Path(__file__).resolve().parent):
        print(p)
