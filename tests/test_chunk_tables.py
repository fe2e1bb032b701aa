"""The speed paths keep references exact: the reader's cache, the B-tree read-ahead, chunk tables
from the parser process, and the Parquet writer that writes them a record at a time."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import h5py
import netCDF4
import numpy as np
import pytest
from kerchunk.df import refs_to_dataframe

from shared import btree
from shared.chunkrefs import NO_RANGE, ChunkTable, Reference
from shared.errors import InternalError
from shared.models import ReferenceRequest
from shared.paths import parse_location
from shared.pipeline import generate_reference, parse
from shared.reader import RangeReader
from shared.sandbox import protocol
from shared.sandbox.pool import _checked_result
from shared.writer import parquet_parts
from tests import samples


def file_reader(path: Path, *, concurrent: bool = True) -> tuple[RangeReader, list]:
    """A reader over a local file that logs each GET and each batch of ranges."""
    data = path.read_bytes()
    log: list = []

    def fetch(start, end):
        log.append(("get", start, end))
        return data[start:end]

    def fetch_many(ranges):
        log.append(("many", len(ranges)))
        return [data[s:e] for s, e in ranges]

    return RangeReader(fetch, len(data), block_size=4096, fetch_many=fetch_many if concurrent else None), log


def two_level_index(directory: Path) -> Path:
    """A NetCDF4 file whose chunk index has a root and many leaves spread through the file."""
    path = directory / "two_level.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("time", 3000)
        nc.createDimension("x", 256)
        v = nc.createVariable("v", "f4", ("time", "x"), chunksizes=(1, 256))
        v[:] = np.arange(3000 * 256, dtype="f4").reshape(3000, 256)
    return path


def walk_index(reader: RangeReader) -> list:
    with h5py.File(reader, "r") as f:
        found = []
        f["v"].id.chunk_iter(found.append)
    return found


def test_the_reader_returns_the_files_bytes_whatever_it_cached_before(tmp_path):
    # Spans fetched over cached segments (a batch cheaper as one GET, a whole-file plan) must never
    # shadow bytes: a read is checked against the file after every kind of fetch, in random order.
    data = np.random.default_rng(7).integers(0, 256, 3 << 20, dtype=np.uint8).tobytes()
    rng = np.random.default_rng(8)
    for trial in range(20):
        reader = RangeReader(lambda s, e: data[s:e], len(data), block_size=4096, cache_limit=(1 << 20) * int(rng.integers(1, 8)),
                             fetch_many=(lambda ranges: [data[s:e] for s, e in ranges]) if trial % 2 else None)
        for _ in range(60):
            action = rng.integers(0, 10)
            if action == 0:
                starts = rng.integers(0, len(data) - 100, rng.integers(1, 50))
                reader.prefetch_ranges([(int(s), int(s) + int(rng.integers(1, 5000))) for s in starts])
            elif action == 1 and trial % 5 == 0:
                reader.prefetch_all()
            else:
                start, length = int(rng.integers(0, len(data))), int(rng.integers(1, 200_000))
                assert reader.read_at(start, length) == data[start : start + length]


def test_a_chunk_index_is_fetched_a_level_at_a_time_with_the_same_result(tmp_path):
    path = two_level_index(tmp_path)
    plain, _ = file_reader(path, concurrent=False)
    expected = walk_index(plain)
    reader, log = file_reader(path)
    reader.read_ahead = btree.ReadAhead(reader.prefetch_ranges, reader.read_at, reader.size)
    assert [(i.chunk_offset, i.byte_offset, i.size) for i in walk_index(reader)] == [
        (i.chunk_offset, i.byte_offset, i.size) for i in expected]
    leaves = len(expected) // 64  # at least: a leaf holds at most 2K = 64 chunks
    batches = [entry for entry in log if entry[0] == "many"]
    assert len(batches) == 1 and batches[0][1] >= leaves, log  # every leaf in one batch, none on its own
    assert log[-1] == ("many", batches[0][1])  # and nothing after: the walk needed no other read


def node(kind: int, level: int, children: list[int], *, dims: int = 3, k: int = 32) -> bytes:
    """A version-1 B-tree node as libhdf5 lays it out (keys of zeros)."""
    key = 4 + 4 + 8 * (dims + 1) if kind == 1 else 8
    body = b"".join(b"\0" * key + struct.pack("<Q", c) for c in children) + b"\0" * key
    size = 4 + 4 + 16 + (2 * k + 1) * key + 2 * k * 8
    header = b"TREE" + bytes([kind, level]) + struct.pack("<H", len(children)) + b"\xff" * 16
    return (header + body).ljust(size, b"\0")


def test_b_tree_nodes_that_do_not_add_up_are_not_followed():
    size = 1 << 20
    assert btree.child_addresses(node(1, 1, [4096, 8192]), size) == (1, [4096, 8192])
    assert btree.child_addresses(node(1, 0, [4096]), size) is None  # a leaf's children are chunks
    assert btree.child_addresses(node(1, 1, [size + 10]), size) is None  # outside the file
    assert btree.child_addresses(node(1, 1, [4096])[:-7], size) is None  # a size no node has
    assert btree.child_addresses(node(7, 1, [4096]), size) is None  # no such node type
    assert btree.child_addresses(b"TREE\x01\x01", size) is None
    assert btree.child_addresses(node(0, 1, [4096, 8192], k=16), size) == (1, [4096, 8192])


def test_a_b_tree_that_points_back_at_itself_stops():
    # Every node lists itself and the root as children: the walk must end after one round.
    size = 1 << 20
    looping = node(1, 1, [0, 4096])
    data = bytearray(size)
    data[0 : len(looping)] = looping
    data[4096 : 4096 + len(looping)] = looping
    fetched = []

    def prefetch(ranges):
        fetched.append(ranges)

    ahead = btree.ReadAhead(prefetch, lambda offset, length: bytes(data[offset : offset + length]), size)
    ahead(0, bytes(data[0 : len(looping)]))
    assert fetched == [[(4096, 4096 + len(looping))]]


def test_parquet_is_written_as_kerchunk_writes_it(tmp_path, settings, storage):
    # Same bytes as kerchunk's refs_to_dataframe for every file: tables, copied chunks, never-written
    # chunks filled, scalars, groups, and a variable past one record (100,000 rows).
    files = [samples.nc4_features(tmp_path), samples.nc4_groups(tmp_path), samples.nc4_many_small_chunks(tmp_path),
             samples.nc3_classic(tmp_path), two_level_index(tmp_path)]
    big = tmp_path / "records.nc"
    with netCDF4.Dataset(big, "w", format="NETCDF4") as nc:
        nc.createDimension("n", 120_000)
        nc.createVariable("v", "i1", ("n",), chunksizes=(1,))[:60_000] = 1  # half never written
    files.append(big)
    for path in files:
        source = storage.open_source(parse_location(str(path), what="source", allow_local=True), 4096)
        reference = parse(source, f"abfs://{settings.source_container}/{path.name}", path.name, settings).reference
        refs_to_dataframe(reference.to_kerchunk(), str(tmp_path / "kerchunk" / path.name))
        ours = dict(parquet_parts(reference, tmp_path))
        theirs = {p.relative_to(tmp_path / "kerchunk" / path.name).as_posix(): p.read_bytes()
                  for p in (tmp_path / "kerchunk" / path.name).rglob("*") if p.is_file()}
        assert ours == theirs, path.name


def test_a_file_of_200k_chunks_is_referenced_as_parquet_and_reads_back(tmp_path, settings, storage, upload, open_reference):
    path = tmp_path / "many.nc"
    values = np.arange(200_000, dtype="i2").reshape(500, 400)
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("y", 500)
        nc.createDimension("x", 400)
        nc.createVariable("v", "i2", ("y", "x"), chunksizes=(1, 1))[:] = values
    result = generate_reference(ReferenceRequest(source=f"abfs://{upload(path)}"), settings, storage)
    assert result.format == "parquet" and result.chunk_count == 200_000
    ds = open_reference(result.output)
    # A chunk is a request: read a few rows (in different Parquet records) and scattered points, not all 200,000.
    for rows in (slice(0, 2), slice(249, 251), slice(498, 500)):
        np.testing.assert_array_equal(ds["v"][rows].values, values[rows])
    picks = np.random.default_rng(5).integers(0, 400, (20, 2))
    assert [int(ds["v"][int(y), int(x)]) for y, x in picks] == [int(values[y, x]) for y, x in picks]


def frames_of(table: ChunkTable) -> list[tuple[bytes, bytes]]:
    return [(protocol.BYTES, frame) for frame in table.frames()]


def test_the_parent_refuses_chunk_tables_that_point_outside_the_file():
    url, size = "abfs://raw-netcdf/a.nc", 10_000
    entries = {".zgroup": '{"zarr_format":2}', "v/.zarray": json.dumps({"shape": [4], "chunks": [1]})}

    def table(urls=(url,), offsets=(0, 100, 200, 300), which=(0, 0, 0, NO_RANGE), grid=(4,)):
        return ChunkTable(tuple(grid), list(urls), np.array(which, dtype=np.int32), np.array(offsets, dtype=np.uint64),
                          np.array([10] * len(offsets), dtype=np.uint64))

    def check(t: ChunkTable, frames=None):
        message = {"refs": {"version": 1, "refs": entries}, "tables": [{"path": "v", **t.header()}]}
        return _checked_result(message, frames if frames is not None else frames_of(t), url, size)

    accepted = check(table()).reference
    assert accepted.get("v/1") == [url, 100, 10] and accepted.get("v/3") is None
    for bad in (table(urls=("abfs://raw-netcdf/other.nc",)), table(offsets=(0, 100, 200, size - 5), which=(0, 0, 0, 0)),
                table(which=(0, 1, 0, 0)), table(grid=(2,), offsets=(0, 1), which=(0, 0))):
        with pytest.raises(InternalError):
            check(bad)
    with pytest.raises(InternalError):
        check(table(), frames_of(table())[:2])  # a table without its arrays
    with pytest.raises(InternalError):
        check(table(), [(protocol.BYTES, b"\0" * 3)] * 3)  # arrays that do not fit its grid


def test_a_reference_from_tables_equals_its_kerchunk_dict(tmp_path, settings, storage):
    path = samples.nc4_features(tmp_path)
    source = storage.open_source(parse_location(str(path), what="source", allow_local=True), 4096)
    reference = parse(source, "abfs://raw-netcdf/f.nc", path.name, settings).reference
    expanded = reference.to_kerchunk()["refs"]
    assert set(reference.keys()) == set(expanded)
    assert all(reference.get(key) == value for key, value in expanded.items())
    assert Reference.from_kerchunk({"refs": expanded}).to_kerchunk()["refs"] == expanded


def test_ranges_fetched_together_share_a_get_when_close():
    # Four clusters of 50 pieces 1 KB apart, 30 MB between clusters (too far for one GET of the whole span):
    # four GETs, one per cluster (a request is worth ~32 KB when 32 are in flight), all in one batch.
    size = 100 << 20

    def content(start, end):
        return bytes((i * 7) % 251 for i in range(start, end))

    batches = []

    def fetch_many(ranges):
        batches.append(list(ranges))
        return [content(s, e) for s, e in ranges]

    reader = RangeReader(content, size, fetch_many=fetch_many)
    starts = [cluster * (30 << 20) + i * 1024 for cluster in range(4) for i in range(50)]
    reader.prefetch_ranges([(s, s + 8) for s in starts])
    assert batches == [[(cluster * (30 << 20), cluster * (30 << 20) + 49 * 1024 + 8) for cluster in range(4)]]
    assert all(reader.read_at(s, 8) == content(s, s + 8) for s in starts[::7])
    assert len(batches) == 1  # everything read was fetched already


def test_copied_coordinates_ride_along_with_the_index_reads(tmp_path, monkeypatch):
    """A CF file's time coordinate (unlimited, so chunked) is copied into the reference. Its chunk goes
    out with the chunk index's reads instead of in a round trip after them; the reference is the same."""
    from shared.formats import sniff
    from shared.virtualize import virtualize

    path = tmp_path / "cf.nc"
    with h5py.File(path, "w", libver="earliest") as f:  # ~21 MB: large enough to be read by ranges, not whole
        tas = f.create_dataset("tas", shape=(365, 90, 180), maxshape=(None, 90, 180), chunks=(1, 90, 180), dtype="f4",
                               compression="gzip")
        for start in range(0, 365, 73):  # written in pieces, as models write: index leaves spread through the file
            tas[start:start + 73] = np.random.default_rng(start).random((73, 90, 180), dtype="f4")
        for name, values in (("lat", np.linspace(-89, 89, 90)), ("lon", np.arange(180) * 2.0)):
            f[name] = values
            f[name].make_scale(name)
        time = f.create_dataset("time", data=np.arange(365) + 0.5, maxshape=(None,), chunks=(512,))  # last: far from the header
        time.attrs["units"] = "days since 2000-01-01"
        time.make_scale("time")
        for axis, name in enumerate(("time", "lat", "lon")):
            tas.dims[axis].attach_scale(f[name])

    def referenced(riders: bool):
        reader, log = file_reader(path)
        head = path.read_bytes()[: 64 << 10]
        reader.seed(0, head)
        if not riders:
            monkeypatch.setattr(reader, "add_riders", lambda ranges: None)
        result = virtualize(reader, sniff(reader.read_at, reader.size, "cf.nc"), "abfs://c/cf.nc",
                            inline_threshold=500, max_chunks=10_000, strict=False)
        return result.reference.to_kerchunk(), log

    with_riders, rounds = referenced(True)
    without, rounds_without = referenced(False)
    assert with_riders == without and with_riders["refs"]["time/0"].startswith("base64:")
    assert len(rounds) == len(rounds_without) - 1, (rounds, rounds_without)
