"""Tell NetCDF4/HDF5 from NetCDF3 by a file's first bytes, before any parser runs."""

from __future__ import annotations

from enum import StrEnum

from shared.errors import CorruptFile, NotNetCDF

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# NetCDF3: classic, 64-bit offset, and CDF5 (64-bit data).
NETCDF3_SIGNATURES = {b"CDF\x01": "classic", b"CDF\x02": "64-bit offset", b"CDF\x05": "CDF5"}
# An HDF5 superblock sits at 0 or after a user block of 512, 1024, 2048 ... bytes.
MAX_USER_BLOCK = 1 << 20
SNIFF_BYTES = 8


class FileFormat(StrEnum):
    HDF5 = "hdf5"
    NETCDF3 = "netcdf3"


def hdf5_signature_offsets(size: int):
    """Offsets where an HDF5 superblock may start, in the order to try them."""
    offset = 0
    while offset + len(HDF5_SIGNATURE) <= size and offset <= MAX_USER_BLOCK:
        yield offset
        offset = 512 if offset == 0 else offset * 2


def sniff(read_at, size: int, name: str) -> FileFormat:
    """Choose the parser from the file's signature; ``read_at(offset, length) -> bytes``."""
    if size == 0:
        raise NotNetCDF(f"{name} is empty (0 bytes).", hint="Upload the file's contents; an empty blob is not a NetCDF file.")
    head = read_at(0, min(size, SNIFF_BYTES))
    if head[:4] in NETCDF3_SIGNATURES:
        if size < 32:
            raise CorruptFile(f"{name} starts like a NetCDF3 file but is only {size} bytes long.")
        return FileFormat.NETCDF3
    for offset in hdf5_signature_offsets(size):
        block = head if offset == 0 else read_at(offset, len(HDF5_SIGNATURE))
        if block[: len(HDF5_SIGNATURE)] == HDF5_SIGNATURE:
            return FileFormat.HDF5
    if HDF5_SIGNATURE.startswith(head[: min(len(head), len(HDF5_SIGNATURE))]) and size < len(HDF5_SIGNATURE):
        raise CorruptFile(f"{name} starts like an HDF5 file but is only {size} bytes long.")
    raise NotNetCDF(
        f"{name} is not a NetCDF or HDF5 file (it starts with {head[:8]!r}).",
        hint="Only NetCDF3 (CDF\\x01/\\x02/\\x05) and NetCDF4/HDF5 files can be referenced; check the upload.",
    )
