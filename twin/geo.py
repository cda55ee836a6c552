"""Coordinate conversions in one place: ETRS89 / UTM 32N (EPSG:25832) <-> WGS84 <-> ECEF, local ENU.

Planar data in the twin is EPSG:25832 with DHHN2016 normal heights; 3D Tiles need ECEF, and game
engines and AR need a small local frame (float32 jitters at ECEF magnitudes), hence `LocalFrame`.
ETRS89 and WGS84 are taken as one datum (they differ by under a metre), as PROJ does between them.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from numpy.typing import ArrayLike
from pyproj import Transformer

from twin.errors import DataError

CRS_PLANAR = "EPSG:25832"  # ETRS89 / UTM zone 32N, metres
CRS_GEOGRAPHIC = "EPSG:4326"  # WGS84 lon/lat degrees (always lon, lat order in this API)
CRS_ECEF = "EPSG:4978"  # WGS84 geocentric, metres
_CRS_GEOGRAPHIC_3D = "EPSG:4979"  # WGS84 lon/lat + ellipsoidal height, the 3D partner of 4326

# Height of the quasigeoid above the GRS80/WGS84 ellipsoid in Krefeld (height anomaly zeta):
#     h_ellipsoid = H_DHHN2016 + GEOID_HEIGHT_M
# The official model is the German Combined Quasigeoid GCG2016 (BKG; grid de_bkg_gcg2016.tif on the
# PROJ CDN), which cannot be fetched here, so one constant stands in for it. It is interpolated
# between two public geodetic reference points that bracket Krefeld and state both heights:
#   - Mönchengladbach-Rheydt, Marktplatz (51.16765 N, 6.44543 E, about 20 km SW): h = 101.7 m,
#     H = 56.37 m NHN -> zeta = 45.33 m (moenchengladbach.de, "GPS-Referenzpunkt");
#   - Mülheim an der Ruhr, Platz der Deutschen Einheit (51.42351 N, 6.87615 E, about 24 km NE):
#     h = 83.6 m, H = 38.1 m NHN -> zeta = 45.5 m (muelheim-ruhr.de, "Geodätischer Referenzpunkt").
# Krefeld Hbf lies 44 % of the way from the first to the second: 45.33 + 0.44 * 0.17 = 45.4 m.
# Expected error: about 0.1 m absolute (both sources round h to 0.1 m); the slope between the two
# points is about 4 mm/km, i.e. a few cm across the 15 km of the city. Users with the GCG2016 grid
# should convert heights with it (PROJ: EPSG:25832+7837 -> EPSG:4979) instead of this constant.
GEOID_HEIGHT_M: float = 45.4


@cache
def _transformer(src: str, dst: str) -> Transformer:
    """Cached pyproj transformer (building one costs milliseconds), lon/lat order throughout."""
    return Transformer.from_crs(src, dst, always_xy=True)


def _as_arrays(**named: ArrayLike) -> list[np.ndarray]:
    """Named inputs as broadcast float64 arrays; a clear DataError names the one that is not numeric."""
    arrays = []
    for name, value in named.items():
        try:
            arrays.append(np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise DataError(f"twin.geo: argument {name!r} must be numeric, got {value!r}") from exc
    try:
        return [np.array(a) for a in np.broadcast_arrays(*arrays)]
    except ValueError as exc:
        shapes = ", ".join(f"{n}{a.shape}" for n, a in zip(named, arrays, strict=True))
        raise DataError(f"twin.geo: argument shapes do not broadcast: {shapes}") from exc


def _xyz(name: str, value: ArrayLike) -> np.ndarray:
    """An array of points whose last axis has length 3 ((3,) or (N, 3))."""
    (arr,) = _as_arrays(**{name: value})
    if arr.ndim == 0 or arr.shape[-1] != 3:
        raise DataError(f"twin.geo: {name!r} must have shape (N, 3) or (3,), got {arr.shape}")
    return arr


def wgs84_to_utm(lon: ArrayLike, lat: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """WGS84 lon/lat (degrees) to EPSG:25832 easting/northing (m)."""
    lon, lat = _as_arrays(lon=lon, lat=lat)
    x, y = _transformer(CRS_GEOGRAPHIC, CRS_PLANAR).transform(lon, lat)
    return np.asarray(x), np.asarray(y)


def to_utm(x: ArrayLike, y: ArrayLike, crs: str) -> tuple[np.ndarray, np.ndarray]:
    """Points in any projected or geographic CRS (EPSG code, WKT or PROJ string) to EPSG:25832."""
    x, y = _as_arrays(x=x, y=y)
    try:
        tr = _transformer(crs, CRS_PLANAR)
    except Exception as exc:  # pyproj's CRSError and friends
        raise DataError(f"twin.geo: {crs!r} is not a coordinate reference system: {exc}") from exc
    ux, uy = tr.transform(x, y)
    return np.asarray(ux), np.asarray(uy)


def utm_to_wgs84(x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """EPSG:25832 easting/northing (m) to WGS84 lon/lat (degrees)."""
    x, y = _as_arrays(x=x, y=y)
    lon, lat = _transformer(CRS_PLANAR, CRS_GEOGRAPHIC).transform(x, y)
    return np.asarray(lon), np.asarray(lat)


def wgs84_to_ecef(
    lon: ArrayLike, lat: ArrayLike, h: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """WGS84 lon/lat (degrees) and ellipsoidal height h (m) to ECEF X, Y, Z (m)."""
    lon, lat, h = _as_arrays(lon=lon, lat=lat, h=h)
    X, Y, Z = _transformer(_CRS_GEOGRAPHIC_3D, CRS_ECEF).transform(lon, lat, h)
    return np.asarray(X), np.asarray(Y), np.asarray(Z)


def ecef_to_wgs84(
    X: ArrayLike, Y: ArrayLike, Z: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ECEF X, Y, Z (m) to WGS84 lon/lat (degrees) and ellipsoidal height (m)."""
    X, Y, Z = _as_arrays(X=X, Y=Y, Z=Z)
    lon, lat, h = _transformer(CRS_ECEF, _CRS_GEOGRAPHIC_3D).transform(X, Y, Z)
    return np.asarray(lon), np.asarray(lat), np.asarray(h)


def utm_to_ecef(
    x: ArrayLike, y: ArrayLike, H: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EPSG:25832 x, y (m) and DHHN2016 normal height H (m a.s.l.) to ECEF X, Y, Z (m)."""
    x, y, H = _as_arrays(x=x, y=y, H=H)
    lon, lat = utm_to_wgs84(x, y)
    return wgs84_to_ecef(lon, lat, H + GEOID_HEIGHT_M)


def ecef_to_utm(
    X: ArrayLike, Y: ArrayLike, Z: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ECEF X, Y, Z (m) to EPSG:25832 x, y (m) and DHHN2016 normal height H (m a.s.l.)."""
    lon, lat, h = ecef_to_wgs84(X, Y, Z)
    x, y = wgs84_to_utm(lon, lat)
    return x, y, np.asarray(h - GEOID_HEIGHT_M)


class LocalFrame:
    """East-north-up tangent frame at an origin on (or above) the WGS84 ellipsoid.

    Lets exports keep small float32-friendly coordinates and carry the anchor separately.
    """

    def __init__(self, lon: float, lat: float, h: float) -> None:
        """Frame at WGS84 lon/lat (degrees) and ellipsoidal height h (m)."""
        self.lon, self.lat, self.h = float(lon), float(lat), float(h)
        self.origin_ecef = np.array(wgs84_to_ecef(self.lon, self.lat, self.h), dtype=np.float64)
        lam, phi = np.radians(self.lon), np.radians(self.lat)
        sl, cl, sp, cp = np.sin(lam), np.cos(lam), np.sin(phi), np.cos(phi)
        self.rotation = np.array(
            [
                [-sl, cl, 0.0],  # east
                [-sp * cl, -sp * sl, cp],  # north
                [cp * cl, cp * sl, sp],  # up (ellipsoid normal)
            ]
        )

    @classmethod
    def from_utm(cls, x: float, y: float, H: float) -> LocalFrame:
        """Frame at EPSG:25832 x, y (m) and DHHN2016 normal height H (m a.s.l.)."""
        lon, lat = utm_to_wgs84(x, y)
        return cls(float(lon), float(lat), float(H) + GEOID_HEIGHT_M)

    def __repr__(self) -> str:
        return f"LocalFrame(lon={self.lon!r}, lat={self.lat!r}, h={self.h!r})"

    def ecef_to_enu(self, xyz: ArrayLike) -> np.ndarray:
        """ECEF points (N, 3) to local east, north, up (N, 3), metres."""
        return (_xyz("xyz", xyz) - self.origin_ecef) @ self.rotation.T

    def enu_to_ecef(self, enu: ArrayLike) -> np.ndarray:
        """Local east, north, up points (N, 3) to ECEF (N, 3), metres."""
        return _xyz("enu", enu) @ self.rotation + self.origin_ecef

    def utm_to_enu(self, x: ArrayLike, y: ArrayLike, H: ArrayLike) -> np.ndarray:
        """EPSG:25832 x, y and DHHN2016 height H to local east, north, up (N, 3)."""
        return self.ecef_to_enu(np.stack(utm_to_ecef(x, y, H), axis=-1))

    def enu_to_utm(self, enu: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Local east, north, up (N, 3) to EPSG:25832 x, y and DHHN2016 height H."""
        ecef = self.enu_to_ecef(enu)
        return ecef_to_utm(ecef[..., 0], ecef[..., 1], ecef[..., 2])

    def enu_to_ecef_matrix(self) -> np.ndarray:
        """4x4 row-major matrix M with ECEF = M @ [e, n, u, 1]."""
        m = np.eye(4)
        m[:3, :3] = self.rotation.T
        m[:3, 3] = self.origin_ecef
        return m

    def tileset_transform(self) -> list[float]:
        """The ENU->ECEF matrix as 16 floats in column-major order, for a 3D Tiles "transform"."""
        return [float(v) for v in self.enu_to_ecef_matrix().flatten(order="F")]
