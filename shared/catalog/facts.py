"""What a reference says about its file, for a STAC item: footprint, time range, datacube fields.

Everything comes from the reference itself: its metadata and the coordinate values it holds
inline (dimension coordinates up to 64 KiB always are), so describing a file usually costs no
read of the source. A coordinate whose chunks are byte ranges is read through ``fetch`` (a few
ranges, at most ``MAX_FETCH_BYTES`` in all), or left out.

Nothing is guessed: a file without recognisable latitude/longitude coordinates (1-D, or the 2-D
ones CF asks projected grids to carry) has no footprint; coordinates that are all NaN, out of range
or absurd are left out with a note; times that cannot be decoded are not used. Attributes may be
hostile: only strings are taken, cut to ``MAX_TEXT``; at most ``MAX_VARIABLES`` variables and
``MAX_DIMENSIONS`` dimensions are described.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

log = logging.getLogger("ncrefs.catalog")

MAX_TEXT = 256  # characters of any attribute text copied into an item
MAX_WKT = 8192  # characters of a grid mapping's WKT (a longer one is left out, never cut)
MAX_VARIABLES = 256
MAX_DIMENSIONS = 64
MAX_COORDINATE_VALUES = 25_000_000  # values of one coordinate array looked at (2-D lat/lon included)
MAX_FETCH_BYTES = 64 * 2**20  # bytes of coordinate chunks read from a source when not inline
# Cell bounds only refine an extent the coordinate already gives: read when in at most this many pieces
# (a CMIP6 time_bnds chunked per step is 365 reads; its time coordinate is in the reference).
MAX_BOUNDS_PIECES = 32

LON_UNITS = {"degrees_east", "degree_east", "degree_e", "degrees_e", "degreee", "degreese"}
LAT_UNITS = {"degrees_north", "degree_north", "degree_n", "degrees_n", "degreen", "degreesn"}
DEGREES = {"degrees", "degree", "deg"}
LENGTH_UNITS = {"m", "metre", "meter", "metres", "meters", "km", "kilometre", "kilometer", "kilometres", "kilometers"}
VERTICAL_UNITS = {"pa", "hpa", "mbar", "millibar", "bar", "dbar", "decibar", "atm", "level", "layer", "sigma_level"}

# Many [url, offset, length] at once (concurrently) -> each one's bytes, or None when it may not be read (no access).
Fetch = Callable[[list[list]], "list[bytes | None]"]


@dataclass
class Facts:
    bbox: list[float] | None = None
    geometry: dict | None = None
    start: datetime | None = None
    end: datetime | None = None
    time_from: str | None = None  # "coordinate", "attributes" (ACDD time_coverage_*), else None
    dimensions: dict[str, dict] = field(default_factory=dict)
    variables: dict[str, dict] = field(default_factory=dict)
    title: str | None = None
    notes: list[str] = field(default_factory=list)  # what was left out, and why


# -- the reference as a small in-memory Zarr store ------------------------------------------------
class References:
    """A reference's keys: ``get(key)`` is JSON text, inline bytes, a ``[url, offset, length]`` list or None."""

    def __init__(self, get: Callable[[str], Any], keys: Callable[[], list[str]]):
        self.get = get
        self.keys = keys

    @classmethod
    def from_dict(cls, refs: dict) -> References:
        table = refs.get("refs", refs)
        return cls(table.get, lambda: list(table))

    @classmethod
    def from_reference(cls, reference) -> References:
        """A ``shared.chunkrefs.Reference`` (its keys: the metadata and copied chunks; every chunk by ``get``)."""
        return cls(reference.get, lambda: list(reference.entries))


def _as_bytes(value) -> bytes | None:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return base64.b64decode(value[7:]) if value.startswith("base64:") else value.encode()
    return None


def _root_arrays(refs: References) -> dict[str, tuple[dict, dict]]:
    """Root-group arrays: name -> (.zarray, .zattrs)."""
    arrays = {}
    for key in refs.keys():
        if key.endswith("/.zarray") and key.count("/") == 1:
            name = key[: -len("/.zarray")]
            try:
                zarray = json.loads(_as_bytes(refs.get(key)) or b"{}")
                zattrs = json.loads(_as_bytes(refs.get(f"{name}/.zattrs")) or b"{}")
            except ValueError:
                continue
            if isinstance(zarray, dict) and isinstance(zattrs, dict):
                arrays[name] = (zarray, zattrs)
    return arrays


def _chunk_keys(name: str, zarray: dict) -> list[str]:
    shape, chunks = zarray.get("shape") or [], zarray.get("chunks") or []
    separator = zarray.get("dimension_separator") or "."
    if not shape:
        return [f"{name}/0"]
    counts = [max(1, math.ceil(s / c)) if c else 1 for s, c in zip(shape, chunks)]
    if math.prod(counts) > 100_000:
        return []
    return [f"{name}/" + separator.join(map(str, index)) for index in np.ndindex(*counts)]


def open_root(refs: References, wanted: set[str], fetch: Fetch | None, notes: list[str], bounds: frozenset[str] = frozenset()):
    """The reference's root group as an xarray Dataset (CF-decoded, times not) whose ``wanted`` arrays
    have their values in memory; the others are placeholders of their shape and must not be looked at.
    ``bounds`` (cell bounds) are not read from the source in more than ``MAX_BOUNDS_PIECES`` pieces.

    Built directly (zarr's metadata rules, numcodecs' codecs, xarray's CF decoding), not through
    ``xr.open_dataset(engine="zarr")``: a few coordinate arrays do not need zarr's async store, which
    cost more than everything else a file's item takes (benchmarks/bench_backfill.py)."""
    import xarray as xr
    from xarray.conventions import decode_cf_variables

    budget = MAX_FETCH_BYTES
    chunks: dict[str, bytes] = {}  # wanted arrays' chunk key -> stored bytes
    ranges: dict[str, list[tuple[str, list]]] = {}  # wanted array -> its chunks that are byte ranges of the source
    arrays = _root_arrays(refs)
    for name, (zarray, _) in arrays.items():
        if name not in wanted:
            continue
        for key in _chunk_keys(name, zarray):
            value = refs.get(key)
            if isinstance(value, (list, tuple)):
                length = int(value[2]) if len(value) > 2 else budget + 1
                if fetch is None or length > budget:
                    notes.append(f"{name}: its values are not in the reference and were not read")
                    wanted.discard(name)
                    ranges.pop(name, None)
                    break
                budget -= length
                ranges.setdefault(name, []).append((key, list(value)))
            elif (data := _as_bytes(value)) is not None:
                chunks[key] = data
    for name in [n for n in ranges if n in bounds and len(ranges[n]) > MAX_BOUNDS_PIECES]:
        notes.append(f"{name}: cell bounds in {len(ranges.pop(name)):,} pieces of the source, not read; "
                     "the extent comes from its coordinate")
        wanted.discard(name)
    pieces = [piece for name in ranges for piece in ranges[name]]
    fetched = dict(zip((key for key, _ in pieces), fetch([ref for _, ref in pieces]))) if pieces else {}
    for name, pieces_of_name in ranges.items():  # all at once, concurrently
        if any(fetched[key] is None for key, _ in pieces_of_name):
            notes.append(f"{name}: its values are not in the reference and were not read")
            wanted.discard(name)
            continue
        chunks.update((key, fetched[key]) for key, _ in pieces_of_name)
    root = json.loads(_as_bytes(refs.get(".zattrs")) or b"{}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # odd files (repeated dimension names, ...) warn; notes say what matters
        variables = {name: _variable(name, zarray, zattrs, chunks if name in wanted else None)
                     for name, (zarray, zattrs) in arrays.items()}
        # xr.decode_cf's steps, without the pandas index it builds per dimension coordinate (never used here)
        decoded, attrs, coordinates = decode_cf_variables(variables, root if isinstance(root, dict) else {},
                                                          decode_times=False, decode_timedelta=False)
        coordinates = {n for n, v in decoded.items() if n in coordinates or v.dims == (n,)}
        return xr.Dataset({n: v for n, v in decoded.items() if n not in coordinates}, attrs=attrs,
                          coords=xr.Coordinates({n: decoded[n] for n in coordinates}, indexes={}))


def _variable(name: str, zarray: dict, zattrs: dict, chunks: dict[str, bytes] | None):
    """One array as an xarray Variable, as xarray's zarr backend gives it: its dimensions from
    ``_ARRAY_DIMENSIONS``, zarr's fill value as ``_FillValue``. ``chunks``: its values are wanted
    (chunks missing there read as the fill value); None: a placeholder of its shape (no memory)."""
    import xarray as xr
    from zarr.core.metadata.v2 import ArrayV2Metadata

    metadata = ArrayV2Metadata.from_dict({**zarray, "attributes": {}})
    dtype = metadata.dtype.to_native_dtype()
    attrs = {k: v for k, v in zattrs.items() if k != "_ARRAY_DIMENSIONS"}
    if metadata.fill_value is not None:
        attrs["_FillValue"] = metadata.fill_value
    dims = zattrs.get("_ARRAY_DIMENSIONS", [])
    empty = metadata.fill_value if metadata.fill_value is not None else np.zeros((), dtype)[()]
    if chunks is None:
        return xr.Variable(dims, np.broadcast_to(np.asarray(empty, dtype), metadata.shape), attrs)
    values = np.full(metadata.shape, empty, dtype)
    shape = tuple(metadata.chunks)
    for key in _chunk_keys(name, zarray):
        data = chunks.get(key)
        if data is None:
            continue
        if metadata.compressor is not None:
            data = metadata.compressor.decode(data)
        for codec in reversed(metadata.filters or ()):
            data = codec.decode(data)
        chunk = np.frombuffer(memoryview(data).cast("B"), dtype)
        if chunk.size != math.prod(shape):
            raise ValueError(f"{key}: {chunk.size} values where its chunk holds {math.prod(shape)}")
        index = [int(i) for i in key[len(name) + 1:].split(zarray.get("dimension_separator") or ".")] if shape else []
        region = tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(index, shape, metadata.shape))
        values[region] = chunk.reshape(shape, order=metadata.order)[tuple(slice(0, r.stop - r.start) for r in region)]
    return xr.Variable(dims, values, attrs)


# -- describing --------------------------------------------------------------------------------
def describe(refs: References, *, fetch: Fetch | None = None) -> Facts:
    """The facts of a reference's root group (never raises for odd content: leaves it out with a note)."""
    facts = Facts()
    arrays = _root_arrays(refs)
    if len(arrays) > 10 * MAX_VARIABLES:
        facts.notes.append(f"{len(arrays)} variables: only the first {MAX_VARIABLES} are described")
    roles = _roles(arrays)
    wanted = {name for name, role in roles.items() if role in ("lon", "lat", "x", "y", "time", "bounds", "z", "dim")}
    wanted = {n for n in wanted if _size(arrays[n][0]) <= MAX_COORDINATE_VALUES}
    try:
        ds = open_root(refs, wanted, fetch, facts.notes, frozenset(n for n in wanted if roles[n] == "bounds"))
    except Exception as error:  # noqa: BLE001 - a reference zarr cannot open: describe nothing rather than fail
        facts.notes.append(f"the reference could not be opened as Zarr: {type(error).__name__}")
        return facts
    facts.title = _text(ds.attrs.get("title"))
    _footprint(ds, roles, wanted, facts)
    _time(ds, roles, wanted, facts)
    _cube(ds, roles, wanted, facts)
    return facts


def _size(zarray: dict) -> int:
    try:
        return math.prod(int(s) for s in zarray.get("shape") or [])
    except (TypeError, ValueError):
        return MAX_COORDINATE_VALUES + 1


def _text(value, limit: int = MAX_TEXT) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str) or not value.strip():
        return None
    value = "".join(ch for ch in value if ch.isprintable() or ch in "\n\t").strip()
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _units(attrs: dict) -> str:
    return (_text(attrs.get("units")) or "").strip().lower().replace(" ", "_")


def _roles(arrays: dict[str, tuple[dict, dict]]) -> dict[str, str]:
    """name -> lon / lat / x / y / time / z / bounds / grid_mapping / dim (other dimension coordinate) / data."""
    roles: dict[str, str] = {}
    bounds_of: dict[str, str] = {}
    for name, (zarray, attrs) in arrays.items():
        dims = attrs.get("_ARRAY_DIMENSIONS") or []
        units, standard = _units(attrs), (_text(attrs.get("standard_name")) or "").lower()
        axis = (_text(attrs.get("axis")) or "").upper()
        numeric = str(zarray.get("dtype", "")).lstrip("<>|=")[:1] in ("f", "i", "u")
        if not numeric:
            roles[name] = "data"
            continue
        lowered = name.lower()
        if standard == "longitude" or units in LON_UNITS or (lowered in ("lon", "longitude", "nav_lon") and units in DEGREES | {""}):
            roles[name] = "lon"
        elif standard == "latitude" or units in LAT_UNITS or (lowered in ("lat", "latitude", "nav_lat") and units in DEGREES | {""}):
            roles[name] = "lat"
        elif standard == "projection_x_coordinate" or (axis == "X" and units in LENGTH_UNITS):
            roles[name] = "x"
        elif standard == "projection_y_coordinate" or (axis == "Y" and units in LENGTH_UNITS):
            roles[name] = "y"
        elif " since " in units.replace("_", " ") and (dims == [name] or standard == "time" or axis == "T"):
            roles[name] = "time"
        elif dims == [name] and (axis == "Z" or "positive" in attrs or units in VERTICAL_UNITS):
            roles[name] = "z"
        elif dims == [name]:
            roles[name] = "dim"
        else:
            roles[name] = "data"
        bounds = _text(attrs.get("bounds"))
        if bounds and bounds in arrays:
            bounds_of[bounds] = name
        mapping = _text(attrs.get("grid_mapping"))
        if mapping:
            first = mapping.split(":")[0].split()[0] if mapping.split(":")[0].split() else ""
            if first in arrays:
                roles.setdefault(first, "grid_mapping")
    for bounds, owner in bounds_of.items():
        roles[bounds] = "bounds" if roles.get(owner) in ("lon", "lat", "x", "y", "time") else roles.get(bounds, "data")
    for name, (zarray, attrs) in arrays.items():
        if name in roles and roles[name] == "data" and not (attrs.get("_ARRAY_DIMENSIONS") or zarray.get("shape")):
            if any(k in attrs for k in ("grid_mapping_name", "crs_wkt", "spatial_ref")):
                roles[name] = "grid_mapping"
    return roles


def _values(ds, name: str) -> np.ndarray | None:
    """A coordinate's finite values as float64 (NaN/inf and masked values dropped)."""
    try:
        values = np.asarray(ds[name].values, dtype="float64").ravel()
    except (TypeError, ValueError, KeyError):
        return None
    values = values[np.isfinite(values)]
    return values if values.size else None


def _first(roles: dict[str, str], role: str, ds) -> str | None:
    """The variable playing ``role``: a dimension coordinate first, then an auxiliary one."""
    names = [n for n, r in roles.items() if r == role and n in ds.variables]
    names.sort(key=lambda n: (ds[n].dims != (n,), ds[n].ndim, n))
    return names[0] if names else None


def _bounds_values(ds, name: str, roles: dict[str, str], wanted: set[str]) -> np.ndarray | None:
    bounds = _text(ds[name].attrs.get("bounds"))
    if bounds and roles.get(bounds) == "bounds" and bounds in wanted:
        return _values(ds, bounds)
    return None


def _half_step(values: np.ndarray, ds, name: str) -> float:
    """Half a cell of a 1-D coordinate (the cell around each centre), 0 for a single value or 2-D."""
    if ds[name].ndim != 1 or values.size < 2:
        return 0.0
    steps = np.abs(np.diff(np.unique(values)))
    return float(np.median(steps)) / 2 if steps.size else 0.0


def _footprint(ds, roles: dict[str, str], wanted: set[str], facts: Facts) -> None:
    lon, lat = _first(roles, "lon", ds), _first(roles, "lat", ds)
    if lon and lat and lon in wanted and lat in wanted:
        lons, lats = _values(ds, lon), _values(ds, lat)
        if lons is None or lats is None:
            facts.notes.append("no footprint: the latitude/longitude values are all missing or not finite")
            return
        if lats.min() < -90 - 1e-6 or lats.max() > 90 + 1e-6 or lons.min() < -360 or lons.max() > 720:
            facts.notes.append("no footprint: latitude/longitude values out of range")
            return
        lon_bounds, lat_bounds = _bounds_values(ds, lon, roles, wanted), _bounds_values(ds, lat, roles, wanted)
        lon_pad = 0.0 if lon_bounds is not None else _half_step(lons, ds, lon)
        lat_pad = 0.0 if lat_bounds is not None else _half_step(lats, ds, lat)
        lons = lon_bounds if lon_bounds is not None else lons
        lats = lat_bounds if lat_bounds is not None else lats
        south = max(-90.0, float(lats.min()) - lat_pad)
        north = min(90.0, float(lats.max()) + lat_pad)
        west, east = _longitude_span(lons, lon_pad)
        _set_box(facts, west, south, east, north)
        return
    x, y = _first(roles, "x", ds), _first(roles, "y", ds)
    if x and y:
        _projected(ds, x, y, facts)
        return
    if lon or lat or x or y:
        facts.notes.append("no footprint: only one horizontal coordinate was found, or its values are not available")


def _longitude_span(lons: np.ndarray, pad: float) -> tuple[float, float]:
    """West and east edges in -180..180 covering every longitude: global when the gaps leave
    nothing out; west > east when the span crosses the antimeridian (as GeoJSON bboxes say)."""
    circle = np.unique(np.mod(lons, 360.0))
    if circle.size == 1:
        start, covered = float(circle[0]), 0.0
    else:
        gaps = np.diff(np.concatenate([circle, [circle[0] + 360.0]]))
        largest = int(np.argmax(gaps))
        start = float(circle[(largest + 1) % circle.size])
        covered = 360.0 - float(gaps[largest])
    length = covered + 2 * pad
    if length >= 360.0 - 1e-6:
        return -180.0, 180.0
    west = ((start - pad + 180.0) % 360.0) - 180.0
    east = west + length
    return round(west, 10), round(east - 360.0 if east > 180.0 else east, 10)


def _set_box(facts: Facts, west: float, south: float, east: float, north: float) -> None:
    if not all(math.isfinite(v) for v in (west, south, east, north)) or south > north:
        facts.notes.append("no footprint: the coordinates give no finite box")
        return
    facts.bbox = [west, south, east, north]

    def ring(w: float, e: float) -> list[list[float]]:
        return [[w, south], [e, south], [e, north], [w, north], [w, south]]

    if west <= east:
        facts.geometry = {"type": "Polygon", "coordinates": [ring(west, east)]}
    else:  # across the antimeridian: two parts, as RFC 7946 asks
        facts.geometry = {"type": "MultiPolygon", "coordinates": [[ring(west, 180.0)], [ring(-180.0, east)]]}


def grid_wkt(ds, names: list[str]) -> str | None:
    """The WKT (``crs_wkt`` or ``spatial_ref``) of the grid mapping the data variables name, if it gives one."""
    for name in names:
        mapping = _text(ds[name].attrs.get("grid_mapping")) if name in ds.variables else None
        words = mapping.split(":")[0].split() if mapping else []
        if words and words[0] in ds.variables:
            for key in ("crs_wkt", "spatial_ref"):
                text = _text(ds[words[0]].attrs.get(key), MAX_WKT)
                if text and not text.endswith("…"):
                    return text
    return None


def _projected(ds, x: str, y: str, facts: Facts) -> None:
    # Projecting x/y needs pyproj, which the app does not ship (tests/test_packaging.py keeps it out):
    # CF asks projected files to carry latitude/longitude too, and those give the footprint.
    facts.notes.append("no footprint: projected x/y without latitude/longitude coordinates "
                       f"(grid mapping {'given' if grid_wkt(ds, list(ds.data_vars)) else 'not given'})")


def _time(ds, roles: dict[str, str], wanted: set[str], facts: Facts) -> None:
    name = _first(roles, "time", ds)
    if name and name in wanted:
        times = decoded_times(ds, name, roles, wanted)
        if times:
            facts.start, facts.end, facts.time_from = min(times), max(times), "coordinate"
            return
        facts.notes.append(f"{name}: its times could not be decoded")
    start = _parse_time(ds.attrs.get("time_coverage_start"))
    end = _parse_time(ds.attrs.get("time_coverage_end"))
    if start and end and start <= end:
        facts.start, facts.end, facts.time_from = start, end, "attributes"


def decoded_times(ds, name: str, roles: dict[str, str], wanted: set[str]) -> list[datetime]:
    """The decoded values of a time coordinate (and its bounds) as UTC datetimes; [] if undecodable."""
    from xarray.conventions import decode_cf_variables

    names = [name]
    bounds = _text(ds[name].attrs.get("bounds"))
    if bounds and bounds in wanted and roles.get(bounds) == "bounds":
        names.append(bounds)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            decoded, _, _ = decode_cf_variables({n: ds[n].variable for n in names}, {}, decode_times=True,
                                                decode_timedelta=False)
            values = np.concatenate([np.asarray(decoded[n].values).ravel() for n in names])
    except Exception:  # noqa: BLE001 - odd units, calendars without cftime, overflow: no times rather than wrong ones
        return []
    return [t for t in (_as_datetime(v) for v in values) if t is not None]


def _as_datetime(value) -> datetime | None:
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            return None
        micro = value.astype("datetime64[us]")
        item = micro.item()
        if not isinstance(item, datetime) or micro.astype("int64") != value.astype("datetime64[us]").astype("int64"):
            return None
        return item.replace(tzinfo=timezone.utc)
    if hasattr(value, "calendar") and hasattr(value, "year"):  # a cftime date
        import calendar as gregorian

        try:
            day = min(value.day, gregorian.monthrange(value.year, value.month)[1])  # 360_day's 30 February
            return datetime(value.year, value.month, day, value.hour, value.minute, value.second, tzinfo=timezone.utc)
        except (ValueError, OverflowError):
            return None
    return None


def _parse_time(text) -> datetime | None:
    text = _text(text, 64)
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


def iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the datacube extension ----------------------------------------------------------------------
def _cube(ds, roles: dict[str, str], wanted: set[str], facts: Facts) -> None:
    crs = grid_wkt(ds, [n for n, r in roles.items() if r == "data"]) if any(r in ("x", "y") for r in roles.values()) else None
    for dim, size in list(ds.sizes.items())[:MAX_DIMENSIONS]:
        if not isinstance(dim, str) or len(dim) > MAX_TEXT:
            continue
        facts.dimensions[dim] = _dimension(ds, dim, int(size), roles, wanted, crs)
    if len(ds.sizes) > MAX_DIMENSIONS:
        facts.notes.append(f"{len(ds.sizes)} dimensions: only the first {MAX_DIMENSIONS} are described")
    count = 0
    for name, variable in ds.variables.items():
        if not isinstance(name, str) or len(name) > MAX_TEXT or (variable.dims == (name,) and name in facts.dimensions):
            continue
        if count >= MAX_VARIABLES:
            facts.notes.append(f"more than {MAX_VARIABLES} variables: the rest are not described")
            break
        count += 1
        entry: dict[str, Any] = {"dimensions": [str(d) for d in variable.dims],
                                 "type": "data" if roles.get(name) == "data" and name in ds.data_vars else "auxiliary"}
        entry["variable_type"] = entry.pop("type")
        description = _text(variable.attrs.get("long_name")) or _text(variable.attrs.get("description")) \
            or _text(variable.attrs.get("standard_name"))
        if description:
            entry["description"] = description
        unit = _text(variable.attrs.get("units"))
        if unit:
            entry["unit"] = unit
        facts.variables[name] = entry


def _dimension(ds, dim: str, size: int, roles: dict[str, str], wanted: set[str], crs) -> dict:
    role = roles.get(dim) if dim in ds.variables and ds[dim].dims == (dim,) else None
    attrs = ds[dim].attrs if role else {}
    description = _text(attrs.get("long_name")) or _text(attrs.get("standard_name"))
    values = _values(ds, dim) if role and dim in wanted else None
    entry: dict[str, Any]
    if role in ("lon", "lat", "x", "y") and values is not None:
        entry = {"type": "spatial", "axis": "x" if role in ("lon", "x") else "y",
                 "extent": [float(values.min()), float(values.max())]}
        step = _step(values, ds[dim].values)
        if step is not None:
            entry["step"] = step
        if role in ("lon", "lat"):
            entry["reference_system"] = 4326
        elif crs is not None:
            entry["reference_system"] = crs  # WKT, as the file's grid mapping states it
    elif role == "time":
        times = decoded_times(ds, dim, roles, {dim}) if dim in wanted else []
        entry = {"type": "temporal", "extent": [iso(min(times)), iso(max(times))] if times else [None, None]}
    elif role == "z" and values is not None:
        entry = {"type": "spatial", "axis": "z", "extent": [float(values.min()), float(values.max())]}
    elif role and values is not None:
        entry = {"type": "other", "extent": [float(values.min()), float(values.max())]}
    elif role:
        entry = {"type": "other", "extent": [None, None]}
    else:
        entry = {"type": "other", "extent": [0, max(0, size - 1)], "step": 1,
                 "description": "no coordinate variable: positions 0 to n-1"}
    unit = _text(attrs.get("units"))
    if unit and entry["type"] != "temporal" and role not in ("lon", "lat"):
        entry["unit"] = unit
    if description and "description" not in entry:
        entry["description"] = description
    return entry


def _step(finite: np.ndarray, raw) -> float | None:
    """The spacing of a regular 1-D coordinate, None if irregular or with missing values."""
    raw = np.asarray(raw, dtype="float64").ravel()
    if raw.size < 2 or raw.size != finite.size:
        return None
    steps = np.diff(raw)
    if np.allclose(steps, steps[0], rtol=1e-6, atol=0):
        return float(steps[0])
    return None
