"""Read an HDF5 version-1 B-tree a level at a time, ahead of h5py.

h5py (libhdf5) walks a chunk index depth first, one node after the other: a 1 GB NetCDF4
file with 42 index leaves costs 42 round trips in a row. Each internal node lists the
addresses of all its children, so once a node is read every child can be fetched at once:
a whole tree then costs one round trip per level. This only decides what to fetch early;
h5py still parses every node itself, and every byte still comes through the same reader
(pinned to one version of the blob), so a wrong guess costs a few bytes, never wrong data.

Node layout (HDF5 file format spec, "Version 1 B-trees"): "TREE", type (0 group, 1 chunk),
level, entries used (u16), left and right sibling addresses, then keys and child addresses
interleaved; 2K+1 keys and 2K children per node. libhdf5 reads a node whole, so the length
of the read that returned "TREE" is the node size every node of that tree shares.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

SIGNATURE = b"TREE"
ADDRESS = 8  # sizeof(offsets): 8 in every NetCDF4 file (libhdf5's default)
HEADER = 4 + 1 + 1 + 2 + 2 * ADDRESS
# libhdf5's default chunk-index K (2K children per node); files may set another, which is still found when unambiguous.
DEFAULT_K = 32
GROUP_KEY = 8  # a group node's key: an offset into the local heap (sizeof(lengths))
# A chunk node's key: chunk size (u32), filter mask (u32), one u64 offset per dimension + 1.
MAX_DIMENSIONS = 32
UNDEFINED = (1 << 64) - 1
# One walk reads ahead at most this many bytes of index nodes (the reader caches 64 MB).
READ_AHEAD_BYTES = 16 << 20


def child_addresses(node: bytes, file_size: int) -> tuple[int, list[int]] | None:
    """The level and the child addresses of an internal node, or None when ``node`` is not
    one (a leaf, another structure, an unexpected size or anything that does not add up)."""
    if len(node) < HEADER or node[:4] != SIGNATURE:
        return None
    kind, level, used = node[4], node[5], struct.unpack_from("<H", node, 6)[0]
    if level == 0 or kind not in (0, 1) or used == 0:
        return None
    key = _key_size(kind, node, used)
    if key is None:
        return None
    stride = key + ADDRESS
    children = [struct.unpack_from("<Q", node, HEADER + key + i * stride)[0] for i in range(used)]
    if any(c == UNDEFINED or c + HEADER > file_size for c in children):
        return None
    return level, children


def _key_size(kind: int, node: bytes, used: int) -> int | None:
    """The key size that makes ``node`` a whole node of 2K children holding ``used`` entries,
    if exactly one does (a chunk key but the last also ends with a zero: the offset into the element)."""
    candidates = [GROUP_KEY] if kind == 0 else [8 + 8 * d for d in range(2, MAX_DIMENSIONS + 2)]
    fitting = []
    for key in candidates:
        # len(node) = HEADER + (2K + 1) * key + 2K * ADDRESS
        rest = len(node) - HEADER - key
        if rest <= 0 or rest % (key + ADDRESS) or (rest // (key + ADDRESS)) % 2 or used > rest // (key + ADDRESS):
            continue
        stride = key + ADDRESS
        if kind == 1 and any(struct.unpack_from("<Q", node, HEADER + i * stride + key - 8)[0] for i in range(used)):
            continue
        fitting.append((key, rest // (key + ADDRESS)))
    usual = [key for key, children in fitting if children == 2 * DEFAULT_K]
    if len(usual) == 1:  # several sizes can add up; libhdf5's default K (nearly every file) breaks the tie
        return usual[0]
    return fitting[0][0] if len(fitting) == 1 else None


class ReadAhead:
    """Called with every read h5py makes; fetches the rest of a B-tree breadth first.

    ``prefetch(ranges)`` fetches many ranges at once (``RangeReader.prefetch_ranges``);
    ``read(offset, length)`` reads one, from what was fetched. A walk fetches at most ``budget``
    bytes of nodes: nodes whose children did not fit stay pending, in the order h5py will reach
    them, and are expanded (with the pending nodes after them) when it does.
    """

    def __init__(self, prefetch: Callable[[list[tuple[int, int]]], None], read: Callable[[int, int], bytes],
                 file_size: int, budget: int = READ_AHEAD_BYTES):
        self._prefetch = prefetch
        self._read = read
        self._size = file_size
        self._budget = budget
        self._expanded: set[int] = set()  # nodes whose children were fetched (a looping tree stops here)
        self._fetched: set[int] = set()
        self._pending: dict[int, bytes] = {}  # internal nodes read, children not fetched yet
        self._walking = False  # its own reads come back through the reader: not a new walk

    def __call__(self, offset: int, data: bytes) -> None:
        if self._walking or offset in self._expanded or data[:4] != SIGNATURE:
            return
        self._walking = True
        self._fetched.add(offset)  # read already
        try:
            pending = list(self._pending.items())
            at = next((i for i, (address, _) in enumerate(pending) if address == offset), None)
            self._walk([(offset, data)] + (pending[at + 1 :] if at is not None else []), len(data))
        finally:
            self._walking = False

    def _walk(self, frontier: list[tuple[int, bytes]], node_size: int) -> None:
        budget = self._budget
        while frontier:
            wanted: list[int] = []
            for address, node in frontier:
                parsed = child_addresses(node, self._size)
                children = [c for c in parsed[1] if c not in self._fetched] if parsed else []
                if wanted and (len(wanted) + len(children)) * node_size > budget:
                    self._pending.setdefault(address, node)  # expanded when the parser gets here
                    continue
                self._expanded.add(address)
                self._pending.pop(address, None)
                wanted += children
            wanted = list(dict.fromkeys(wanted))
            if not wanted:
                return
            budget -= len(wanted) * node_size
            self._fetched.update(wanted)
            self._prefetch([(c, min(c + node_size, self._size)) for c in wanted])
            frontier = [(c, self._read(c, node_size)) for c in wanted]
