"""Planned routes: freight corridors between US hubs, polylines, and the route a mission is planned to drive.

The console has no road network (it runs offline, with no routing service).
What it knows is a small table of interstate corridors, each a polyline
through the city centres and interchanges the highway passes (WGS 84). A
mission's planned route is the stretch of a corridor between the points
nearest its shipment's origin and destination, when both lie within
``CORRIDOR_SNAP_KM`` of the same corridor and the stretch runs the right way;
otherwise it is the great-circle line from origin to destination, cut into
short segments. The route says which it is (``basis``), so a straight line is
never passed off as a road. See docs/decisions/0020-live-map-routes-and-eta.md.

The fleet simulator drives the same polylines, so a simulated truck stays on
the line the map draws.
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass
from functools import lru_cache

from missions.models import haversine_km

LatLon = tuple[float, float]

# How far a shipment's origin or destination may lie from a corridor for the corridor to be its route.
CORRIDOR_SNAP_KM = 60.0
# A corridor stretch must cover at least this share of the straight origin-destination distance.
CORRIDOR_MIN_COVER = 0.5
# Great-circle routes are cut into segments no longer than this (distances along a route use a flat
# projection per segment, which is accurate to well under 1 % over this length at US latitudes).
GREAT_CIRCLE_STEP_KM = 50.0
# Points closer than this to the previous one are dropped from a planned route.
MIN_STEP_KM = 0.5
COORDINATE_DECIMALS = 5  # about 1 m
GREAT_CIRCLE_BASIS = "great circle (no known corridor)"

# A point this close to the segments around a hint is taken to be on them (no search of the whole line).
ON_LINE_KM = 2.0
EARTH_RADIUS_KM = 6371.0  # the sphere of missions.models.haversine_km
KM_PER_DEG_LAT = 110.574
KM_PER_DEG_LON_EQUATOR = 111.320


@dataclass(frozen=True)
class Corridor:
    """An interstate corridor: its name, the highways it follows and its waypoints in driving order."""

    name: str
    highways: str
    points: tuple[LatLon, ...]


# Waypoints along the corridors (city centres and interchanges the route passes), WGS 84.
CORRIDORS: tuple[Corridor, ...] = (
    Corridor(
        "I-45 Dallas-Houston",
        "I-45",
        (
            (32.7767, -96.7970),
            (32.5774, -96.6986),
            (32.3293, -96.6253),
            (32.0954, -96.4689),
            (31.7246, -96.1653),
            (31.4638, -96.0580),
            (30.9496, -95.9116),
            (30.7235, -95.5508),
            (30.3119, -95.4561),
            (30.1658, -95.4613),
            (29.9480, -95.4160),
            (29.7604, -95.3698),
        ),
    ),
    Corridor(
        "I-20/I-10 Fort Worth-El Paso",
        "I-20",
        (
            (32.7555, -97.3308),
            (32.7593, -97.7973),
            (32.4065, -98.8176),
            (32.4487, -99.7331),
            (32.4710, -100.4059),
            (32.2504, -101.4787),
            (31.9973, -102.0779),
            (31.8457, -102.3676),
            (31.5943, -102.8927),
            (31.4229, -103.4932),
            (31.0399, -104.8307),
            (31.1746, -105.3572),
            (31.5537, -106.1094),
            (31.7619, -106.4850),
        ),
    ),
    Corridor(
        "I-10 Phoenix-Tucson",
        "I-10",
        (
            (33.4484, -112.0740),
            (33.3062, -111.8413),
            (33.0581, -111.6887),
            (32.8795, -111.7574),
            (32.7559, -111.5548),
            (32.5089, -111.3242),
            (32.4367, -111.2254),
            (32.2226, -110.9747),
        ),
    ),
    Corridor(
        "I-75/I-16 Atlanta-Savannah",
        "I-16",
        (
            (33.7490, -84.3880),
            (33.4473, -84.1469),
            (33.2946, -84.0413),
            (33.0343, -83.9382),
            (32.8407, -83.6324),
            (32.5404, -82.9038),
            (32.3971, -82.0601),
            (32.2435, -81.6006),
            (32.1155, -81.2471),
            (32.0809, -81.0912),
        ),
    ),
    Corridor(
        "I-35 San Antonio-Laredo",
        "I-35",
        (
            (29.4241, -98.4936),
            (29.2330, -98.7964),
            (28.8922, -99.0950),
            (28.6675, -99.1706),
            (28.4369, -99.2350),
            (28.0405, -99.3564),
            (27.5306, -99.4803),
        ),
    ),
    Corridor(
        # The playbook's example lane: I-55 to St. Louis, I-44 to Oklahoma City, I-40 to Barstow, I-15 and I-10.
        "I-55/I-44/I-40/I-15 Chicago-Los Angeles",
        "I-55/I-44/I-40/I-15",
        (
            (41.8781, -87.6298),  # Chicago
            (41.5250, -88.0817),  # Joliet
            (40.4842, -88.9937),  # Bloomington
            (39.7817, -89.6501),  # Springfield, IL
            (38.6270, -90.1994),  # St. Louis
            (37.9514, -91.7713),  # Rolla
            (37.2090, -93.2923),  # Springfield, MO
            (37.0842, -94.5133),  # Joplin
            (36.1540, -95.9928),  # Tulsa
            (35.4676, -97.5164),  # Oklahoma City
            (35.2220, -101.8313),  # Amarillo
            (35.1717, -103.7250),  # Tucumcari
            (35.0844, -106.6504),  # Albuquerque
            (35.5281, -108.7426),  # Gallup
            (35.1983, -111.6513),  # Flagstaff
            (35.1894, -114.0530),  # Kingman
            (34.8481, -114.6141),  # Needles
            (34.8958, -117.0173),  # Barstow
            (34.5362, -117.2928),  # Victorville
            (34.1083, -117.2898),  # San Bernardino
            (34.0522, -118.2437),  # Los Angeles
        ),
    ),
    Corridor(
        "I-20 Dallas-Atlanta",
        "I-20",
        (
            (32.7767, -96.7970),  # Dallas
            (32.7360, -96.2753),  # Terrell
            (32.5157, -95.4094),  # Lindale (Tyler)
            (32.5007, -94.7405),  # Longview
            (32.5252, -93.7502),  # Shreveport
            (32.5232, -92.6379),  # Ruston
            (32.5093, -92.1193),  # Monroe
            (32.3526, -90.8779),  # Vicksburg
            (32.2988, -90.1848),  # Jackson
            (32.3643, -88.7037),  # Meridian
            (33.2098, -87.5692),  # Tuscaloosa
            (33.5186, -86.8104),  # Birmingham
            (33.6598, -85.8316),  # Anniston
            (33.7490, -84.3880),  # Atlanta
        ),
    ),
    Corridor(
        "I-10 El Paso-Phoenix",
        "I-10",
        (
            (31.7619, -106.4850),  # El Paso
            (32.3199, -106.7637),  # Las Cruces
            (32.2687, -107.7586),  # Deming
            (32.3503, -108.7087),  # Lordsburg
            (32.2529, -109.8320),  # Willcox
            (31.9679, -110.2945),  # Benson
            (32.2226, -110.9747),  # Tucson
            (32.8795, -111.7574),  # Casa Grande
            (33.4484, -112.0740),  # Phoenix
        ),
    ),
    Corridor(
        "I-35 Laredo-Dallas",
        "I-35",
        (
            (27.5306, -99.4803),  # Laredo
            (28.4369, -99.2350),  # Cotulla
            (28.8922, -99.0950),  # Pearsall
            (29.4241, -98.4936),  # San Antonio
            (29.7030, -98.1245),  # New Braunfels
            (29.8833, -97.9414),  # San Marcos
            (30.2672, -97.7431),  # Austin
            (30.6333, -97.6770),  # Georgetown
            (31.0982, -97.3428),  # Temple
            (31.5493, -97.1467),  # Waco
            (32.0110, -97.1300),  # Hillsboro
            (32.7767, -96.7970),  # Dallas
        ),
    ),
    Corridor(
        "I-10 Houston-San Antonio",
        "I-10",
        (
            (29.7604, -95.3698),  # Houston
            (29.7858, -95.8245),  # Katy
            (29.7066, -96.5397),  # Columbus
            (29.6819, -96.9039),  # Schulenburg
            (29.5688, -97.9647),  # Seguin
            (29.4241, -98.4936),  # San Antonio
        ),
    ),
)


@dataclass(frozen=True)
class Located:
    """Where a point lies relative to a polyline: the distance along it, the distance off it, the segment."""

    along_km: float
    offset_km: float
    segment: int


class Polyline:
    """Points in order with their cumulative great-circle distances: interpolation and projection onto it.

    Projection works per segment in a flat (equirectangular) frame around the segment's start; the
    frames are computed once, since the live map projects every position report of every truck.
    """

    __slots__ = ("_frames", "cum_km", "length_km", "points")

    def __init__(self, points: list[LatLon] | tuple[LatLon, ...]) -> None:
        if len(points) < 2:
            raise ValueError("a polyline needs at least two points")
        self.points = [(float(lat), float(lon)) for lat, lon in points]
        self.cum_km = [0.0]
        # Per segment: start lat, start lon, km per degree of longitude there, end (x, y) in km, 1/|end|^2.
        self._frames: list[tuple[float, float, float, float, float, float]] = []
        # The great-circle distance of each segment as haversine_km computes it, inlined: the live map
        # builds a polyline for every truck it tracks.
        radians, sin, cos, asin, sqrt = math.radians, math.sin, math.cos, math.asin, math.sqrt
        total = 0.0
        for (a_lat, a_lon), (b_lat, b_lon) in itertools.pairwise(self.points):
            p1, p2 = radians(a_lat), radians(b_lat)
            cos_p1 = cos(p1)
            h = sin((p2 - p1) / 2) ** 2 + cos_p1 * cos(p2) * sin(radians(b_lon - a_lon) / 2) ** 2
            total += 2 * EARTH_RADIUS_KM * asin(sqrt(h))
            self.cum_km.append(total)
            kx = KM_PER_DEG_LON_EQUATOR * cos_p1
            bx, by = (b_lon - a_lon) * kx, (b_lat - a_lat) * KM_PER_DEG_LAT
            seg2 = bx * bx + by * by
            self._frames.append((a_lat, a_lon, kx, bx, by, 1.0 / seg2 if seg2 else 0.0))
        self.length_km = total

    def at(self, km: float) -> LatLon:
        """The point ``km`` from the start (clamped to the ends), interpolated within its segment."""
        km = min(max(km, 0.0), self.length_km)
        i = min(max(bisect.bisect_right(self.cum_km, km) - 1, 0), len(self.points) - 2)
        seg = self.cum_km[i + 1] - self.cum_km[i] or 1e-9
        f = (km - self.cum_km[i]) / seg
        (lat1, lon1), (lat2, lon2) = self.points[i], self.points[i + 1]
        return lat1 + (lat2 - lat1) * f, lon1 + (lon2 - lon1) * f

    def locate(self, lat: float, lon: float, *, hint: int | None = None) -> Located:
        """The nearest point of the line to (lat, lon).

        ``hint``: the segment found last time for the same moving vehicle. Trucks move a few hundred
        metres between reports, so the segments around it are searched first, and the whole line only
        when the point is not on them (within ``ON_LINE_KM``).
        """
        last = len(self._frames) - 1
        if hint is not None and 0 <= hint <= last:
            first, end = max(0, hint - 1), min(last, hint + 2)
            found, t = self._best(first, end, lat, lon)
            # Clamped to the window's first or last vertex, the nearest point may lie beyond the window.
            clamped = (found.segment == first and t == 0.0 and first > 0) or (
                found.segment == end and t == 1.0 and end < last
            )
            if found.offset_km <= ON_LINE_KM and not clamped:
                return found
        return self._best(0, last, lat, lon)[0]

    def _best(self, first: int, last: int, lat: float, lon: float) -> tuple[Located, float]:
        frames, cum = self._frames, self.cum_km
        best_i, best_t, best_d2 = first, 0.0, math.inf
        for i in range(first, last + 1):
            a_lat, a_lon, kx, bx, by, inv_seg2 = frames[i]
            px, py = (lon - a_lon) * kx, (lat - a_lat) * KM_PER_DEG_LAT
            t = (px * bx + py * by) * inv_seg2
            t = 0.0 if t < 0.0 else (1.0 if t > 1.0 else t)
            dx, dy = px - t * bx, py - t * by
            d2 = dx * dx + dy * dy
            if d2 < best_d2:
                best_i, best_t, best_d2 = i, t, d2
        along = cum[best_i] + best_t * (cum[best_i + 1] - cum[best_i])
        return Located(along_km=along, offset_km=math.sqrt(best_d2), segment=best_i), best_t


@dataclass(frozen=True)
class PlannedRoute:
    """The polyline a mission is planned to drive, its length and what it is based on."""

    points: tuple[LatLon, ...]
    km: float
    basis: str

    @property
    def is_corridor(self) -> bool:
        return self.basis != GREAT_CIRCLE_BASIS


_CORRIDOR_LINES: tuple[tuple[Corridor, Polyline, Polyline], ...] = tuple(
    (c, Polyline(c.points), Polyline(tuple(reversed(c.points)))) for c in CORRIDORS
)


def corridor_polylines() -> dict[str, Polyline]:
    """Every corridor's polyline in its listed direction, by name."""
    return {corridor.name: forward for corridor, forward, _ in _CORRIDOR_LINES}


def _rounded(point: LatLon) -> LatLon:
    return round(point[0], COORDINATE_DECIMALS), round(point[1], COORDINATE_DECIMALS)


def _thinned(points: list[LatLon]) -> list[LatLon]:
    """Rounded, without points closer than MIN_STEP_KM to the one before (the last point always kept)."""
    out = [_rounded(points[0])]
    for point in points[1:]:
        p = _rounded(point)
        if haversine_km(*out[-1], *p) >= MIN_STEP_KM:
            out.append(p)
        elif point is points[-1] and len(out) > 1:
            out[-1] = p  # the destination itself, not a point just before it
    if len(out) == 1:
        out.append(_rounded(points[-1]))
    return out


def great_circle_points(origin: LatLon, destination: LatLon, *, step_km: float = GREAT_CIRCLE_STEP_KM) -> list[LatLon]:
    """Points along the great circle from origin to destination, at most ``step_km`` apart, ends included."""
    distance = haversine_km(*origin, *destination)
    steps = max(1, math.ceil(distance / step_km))
    if distance < 1e-6:
        return [origin, destination]
    lat1, lon1, lat2, lon2 = map(math.radians, (*origin, *destination))
    delta = distance / 6371.0
    out = []
    for k in range(steps + 1):
        f = k / steps
        a = math.sin((1 - f) * delta) / math.sin(delta)
        b = math.sin(f * delta) / math.sin(delta)
        x = a * math.cos(lat1) * math.cos(lon1) + b * math.cos(lat2) * math.cos(lon2)
        y = a * math.cos(lat1) * math.sin(lon1) + b * math.cos(lat2) * math.sin(lon2)
        z = a * math.sin(lat1) + b * math.sin(lat2)
        out.append((math.degrees(math.atan2(z, math.hypot(x, y))), math.degrees(math.atan2(y, x))))
    out[0], out[-1] = origin, destination
    return out


def _corridor_stretch(origin: LatLon, destination: LatLon) -> tuple[Corridor, list[LatLon]] | None:
    """The corridor stretch that best serves origin -> destination, as points from origin to destination."""
    direct = haversine_km(*origin, *destination)
    best: tuple[float, Corridor, list[LatLon]] | None = None
    for corridor, forward, backward in _CORRIDOR_LINES:
        for line in (forward, backward):
            start, end = line.locate(*origin), line.locate(*destination)
            if start.offset_km > CORRIDOR_SNAP_KM or end.offset_km > CORRIDOR_SNAP_KM:
                continue
            covered = end.along_km - start.along_km
            if covered <= 0 or covered < CORRIDOR_MIN_COVER * direct:
                continue
            cost = start.offset_km + end.offset_km
            if best is not None and cost >= best[0]:
                continue
            inner = [p for p, km in zip(line.points, line.cum_km, strict=True) if start.along_km < km < end.along_km]
            points = [origin, line.at(start.along_km), *inner, line.at(end.along_km), destination]
            best = (cost, corridor, points)
    return None if best is None else (best[1], best[2])


@lru_cache(maxsize=4096)
def route_plan(origin: LatLon, destination: LatLon) -> PlannedRoute:
    """The planned route from origin to destination: a corridor stretch when one fits, else the great circle."""
    found = _corridor_stretch(origin, destination)
    if found is not None:
        corridor, points = found
        basis = f"corridor {corridor.name}"
    else:
        points, basis = great_circle_points(origin, destination), GREAT_CIRCLE_BASIS
    thinned = _thinned(points)
    return PlannedRoute(points=tuple(thinned), km=round(Polyline(thinned).length_km, 1), basis=basis)
