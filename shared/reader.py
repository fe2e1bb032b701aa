"""A file-like reader over one version of a blob that reads as little, and as rarely, as it can.

Parsers (h5py through virtualizarr, the NetCDF3 header parser) ask for many small pieces of
a file. Each ranged GET against blob storage costs ~10 ms however small it is, and each
megabyte another ~10 ms, so neither tiny fixed blocks (many requests) nor large ones
(many bytes) serve every file. This reader:

- fetches a gap with one GET of at least ``block_size`` bytes, starting where the parser asked;
- grows the next GET fourfold while the parser keeps reading forward near what it read last
  (a header, or an index interleaved with small chunks), and falls back to ``block_size``
  after a jump (an index node of a file with big chunks);
- fetches a file of at most ~1 MB (what one request's latency is worth) in one GET, and any
  file in one GET when the caller's plan says that is cheaper (:meth:`prefetch_all`);
- fetches the rest of a file (up to ``WHOLE_FILE_MAX``) once the requests it has made cost as
  much as that would: a header spread through a small file (thousands of groups) then costs
  at most about twice the best plan, whatever its layout;
- keeps what it fetched, up to ``cache_limit`` bytes, so a parser that opens the file again
  (virtualizarr opens it once per group) reads nothing twice.

Every GET carries the blob's ETag (``If-Match``), so all bytes come from one version.
"""

from __future__ import annotations

import bisect
import io
import threading
from collections.abc import Callable
from dataclasses import dataclass

# The cost model used to plan reads (and printed by the benchmark): a request's latency in
# seconds and the bandwidth in bytes per second of Azure Blob Storage seen from a nearby VM.
REQUEST_LATENCY_S = 0.010
BANDWIDTH_BPS = 100e6
GROWTH = 4
MAX_BLOCK = 16 << 20
# The bytes one request's latency is worth: a file this small is fetched whole at once.
SMALL_FILE = int(REQUEST_LATENCY_S * BANDWIDTH_BPS)
# The first GET of a blob: most NetCDF headers fit, and its response tells size and ETag.
FIRST_READ = 256 << 10
# Never fetch a whole file larger than this in one go (memory).
WHOLE_FILE_MAX = 32 << 20
# The block size of a reader opened only to fetch known ranges (which set their own sizes).
READ_BLOCK_SIZE = 4096
# Ranges asked for in one prefetch_ranges call to fetch_many, and how many of them its server
# (shared/sandbox/pool.py, with fetch_concurrently) fetches at once.
MANY_PER_CALL = 1024
READS_IN_FLIGHT = 32


# Ranges to fetch closer than this share one GET: a request's latency is worth ~1 MB, or ~32 KB
# when 32 requests are in flight at once.
COALESCE_GAP = 256 << 10
COALESCE_GAP_CONCURRENT = 32 << 10


def _coalesced(ranges: list[tuple[int, int]], gap: int) -> list[tuple[int, int]]:
    """Sorted ranges merged where they are closer than ``gap`` (up to ``MAX_BLOCK`` a GET): an index
    interleaved with small chunks is then read in a few large GETs, not a GET per node."""
    merged: list[list[int]] = []
    for start, end in ranges:
        if merged and start - merged[-1][1] <= gap and end - merged[-1][0] <= MAX_BLOCK:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


@dataclass
class ReadStats:
    requests: int = 0
    bytes_read: int = 0

    def modelled_cloud_seconds(self) -> float:
        return self.requests * REQUEST_LATENCY_S + self.bytes_read / BANDWIDTH_BPS


class RangeReader(io.RawIOBase):
    """``fetch(start, end) -> bytes`` reads ``[start, end)`` of a file of ``size`` bytes."""

    def __init__(
        self,
        fetch: Callable[[int, int], bytes],
        size: int,
        *,
        block_size: int = 4096,
        cache_limit: int = 64 << 20,
        name: str = "",
        fetch_many: Callable[[list[tuple[int, int]]], list[bytes]] | None = None,
    ) -> None:
        super().__init__()
        self._fetch = fetch
        # Many ranges at once, fetched concurrently by whoever serves them (the parser's parent).
        self._fetch_many = fetch_many
        self.size = size
        self.name = name
        self.stats = ReadStats()
        self._stats_lock = threading.Lock()
        self.info = None  # the source's SourceInfo, set by whoever opens the reader
        self._base_block = block_size
        self._next_block = block_size
        self._cache_limit = cache_limit
        self._starts: list[int] = []  # sorted starts of cached segments
        self._segments: dict[int, bytes] = {}
        self._cached_bytes = 0
        self._last_end = -1
        self._pos = 0
        # Told of every read (offset, bytes) so it can fetch what the parser will want next (shared/btree.py).
        self.read_ahead: Callable[[int, bytes], None] | None = None
        self._riders: list[tuple[int, int]] = []  # see add_riders

    # -- io.RawIOBase -------------------------------------------------------------------
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, size: int = -1) -> bytes:
        end = self.size if size is None or size < 0 else min(self.size, self._pos + size)
        data = self.read_at(self._pos, end - self._pos) if end > self._pos else b""
        self._pos += len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return self.read(-1)

    # -- ranged access ---------------------------------------------------------------------
    def read_at(self, offset: int, length: int) -> bytes:
        """Bytes ``[offset, offset+length)`` (fewer only past the end of the file)."""
        end = min(self.size, offset + length)
        if end <= offset:
            return b""
        for gap_start, gap_end in self._gaps(offset, end):
            self._fill(gap_start, gap_end, keep=(offset, end))
        data = self._assemble(offset, end)
        if self.read_ahead is not None:
            self.read_ahead(offset, data)
        return data

    def add_fetched(self, start: int, data: bytes) -> None:
        """Take bytes the caller fetched itself (one GET) into the cache and the counts."""
        self.stats.requests += 1
        self.stats.bytes_read += len(data)
        self.seed(start, data)

    def seed(self, start: int, data: bytes) -> None:
        """Take bytes someone else already fetched (and counted) into the cache."""
        if data:
            self._store(start, data, keep=(start, start + len(data)))
            self._last_end = start + len(data)

    def fetch_counted(self, start: int, end: int) -> bytes:
        """One GET of ``[start, end)``, counted, not cached: for a parser process's reads."""
        return self._get(start, end)

    def fetch_concurrently(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        """Each range in one GET, counted, not cached, at most ``READS_IN_FLIGHT`` at once (for a
        parser process's batched reads, and the catalog's coordinate reads)."""
        if len(ranges) == 1:
            return [self.fetch_counted(*ranges[0])]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(READS_IN_FLIGHT, len(ranges)), thread_name_prefix="ncrefs-read") as pool:
            return list(pool.map(lambda r: self.fetch_counted(*r), ranges))

    @property
    def concurrent(self) -> bool:
        """Whether many ranges can be fetched at once (so a separate GET costs a fraction of a round trip)."""
        return self._fetch_many is not None

    def add_riders(self, ranges: list[tuple[int, int]]) -> None:
        """Ranges the parser will read later (small coordinates it copies): fetched with the next batch
        (``prefetch_ranges``, e.g. a chunk index's next level) rather than in a round trip of their own."""
        self._riders += ranges

    def prefetch_ranges(self, ranges: list[tuple[int, int]]) -> None:
        """Fetch the missing parts of many known ranges at once (concurrently when ``fetch_many`` is
        given): pieces the parser will read next, whose places it already knows (a NetCDF3 record
        variable's values, one per record), and the riders waiting for a batch."""
        ranges, self._riders = [*ranges, *self._riders], []
        wanted = _coalesced(sorted(gap for start, end in ranges for gap in self._gaps(start, min(end, self.size)) if gap[0] < gap[1]),
                            COALESCE_GAP_CONCURRENT if self._fetch_many else COALESCE_GAP)
        if not wanted:
            return
        first, last = min(s for s, _ in wanted), max(e for _, e in wanted)
        waves = -(-len(wanted) // (READS_IN_FLIGHT if self._fetch_many else 1))
        if last - first <= WHOLE_FILE_MAX and REQUEST_LATENCY_S + (last - first) / BANDWIDTH_BPS <= waves * REQUEST_LATENCY_S:
            self._store(first, self._get(first, last), keep=(first, last))  # one GET of the span is cheaper
            return
        if self._fetch_many is None:
            for start, end in wanted:
                self._store(start, self._get(start, end), keep=(start, end))
            return
        for at in range(0, len(wanted), MANY_PER_CALL):
            batch = wanted[at : at + MANY_PER_CALL]
            for (start, end), data in zip(batch, self._fetch_many(batch)):
                self._store(start, self._counted(start, end, bytes(data)), keep=(start, end))

    def prefetch_all(self) -> None:
        """Fetch every byte not yet cached in one GET (from the first missing byte to the last;
        the few cached bytes between are cheaper to fetch again than a request per gap)."""
        gaps = self._gaps(0, self.size)
        if not gaps:
            return
        start, end = gaps[0][0], gaps[-1][1]
        self._store(start, self._get(start, end), keep=(start, end))

    def _fill(self, start: int, end: int, keep: tuple[int, int]) -> None:
        if self._rest_is_cheaper():
            self.prefetch_all()
            return
        # Forward and near the last GET: a sequential pass, so read further ahead next time.
        if 0 <= start - self._last_end <= self._next_block:
            self._next_block = min(self._next_block * GROWTH, MAX_BLOCK)
        else:
            self._next_block = self._base_block
        fetch_end = max(end, start + self._next_block)
        if self.size - fetch_end < self._base_block or self.size <= SMALL_FILE:
            fetch_end = self.size  # no sliver left for another GET; a small file in one
        next_cached = bisect.bisect_right(self._starts, start)
        if next_cached < len(self._starts):
            fetch_end = max(end, min(fetch_end, self._starts[next_cached]))
        fetch_end = min(fetch_end, self.size)
        self._store(start, self._get(start, fetch_end), keep=keep)
        self._last_end = fetch_end

    def _rest_is_cheaper(self) -> bool:
        """Whether the requests made so far already cost what one GET of everything missing would."""
        if self.size > WHOLE_FILE_MAX or self._cached_bytes + self.size > self._cache_limit:
            return False
        missing = self.size - self._cached_bytes
        return self.stats.requests * REQUEST_LATENCY_S >= REQUEST_LATENCY_S + missing / BANDWIDTH_BPS

    def _get(self, start: int, end: int) -> bytes:
        return self._counted(start, end, bytes(self._fetch(start, end)))

    def _counted(self, start: int, end: int, data: bytes) -> bytes:
        """One GET's answer for ``[start, end)``: counted, and refused if short."""
        with self._stats_lock:  # fetch_counted may run on several threads at once
            self.stats.requests += 1
            self.stats.bytes_read += len(data)
        if len(data) != end - start:
            raise EOFError(f"{self.name}: asked for bytes {start}-{end}, got {len(data)}")
        return data

    def _gaps(self, start: int, end: int) -> list[tuple[int, int]]:
        gaps = []
        cursor = start
        index = max(0, bisect.bisect_right(self._starts, start) - 1)
        while cursor < end and index < len(self._starts):
            seg_start = self._starts[index]
            seg_end = seg_start + len(self._segments[seg_start])
            if seg_end <= cursor:
                index += 1
                continue
            if seg_start >= end:
                break
            if seg_start > cursor:
                gaps.append((cursor, seg_start))
            cursor = max(cursor, seg_end)
            index += 1
        if cursor < end:
            gaps.append((cursor, end))
        return gaps

    def _store(self, start: int, data: bytes, keep: tuple[int, int]) -> None:
        """Cache the parts of a segment not cached yet (segments never overlap), evicting the ones
        farthest behind (parsers mostly move forward) but never one that the read in progress
        (``keep``) still needs."""
        pieces = self._gaps(start, start + len(data))
        if pieces != [(start, start + len(data))]:
            view = memoryview(data)
            for piece_start, piece_end in pieces:
                self._store(piece_start, bytes(view[piece_start - start : piece_end - start]), keep)
            return
        index = 0
        while self._cached_bytes + len(data) > self._cache_limit and index < len(self._starts):
            victim = self._starts[index]
            if victim < keep[1] and victim + len(self._segments[victim]) > keep[0]:
                index += 1
                continue
            del self._starts[index]
            self._cached_bytes -= len(self._segments.pop(victim))
        bisect.insort(self._starts, start)
        self._segments[start] = data
        self._cached_bytes += len(data)

    def _assemble(self, start: int, end: int) -> bytes:
        parts = []
        cursor = start
        index = max(0, bisect.bisect_right(self._starts, start) - 1)
        while cursor < end:
            seg_start = self._starts[index]
            data = self._segments[seg_start]
            if seg_start + len(data) > cursor:
                parts.append(data[cursor - seg_start : min(end, seg_start + len(data)) - seg_start])
                cursor = min(end, seg_start + len(data))
            index += 1
        return b"".join(parts)
