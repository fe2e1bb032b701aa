"""Zarr v3 names for the imagecodecs filters that HDF5 plugins write (lz4, bzip2, lzf).

virtualizarr maps these HDF5 filters to numcodecs codecs from imagecodecs (``imagecodecs_lz4h5``
...) and builds Zarr v3 metadata on the way to a kerchunk reference, so zarr-python must know
them by their v3 name. Readers of the reference (Zarr v2) find them through numcodecs' own
entry points, installed with imagecodecs-numcodecs.
"""

from __future__ import annotations

from zarr.codecs.numcodecs._codecs import _NumcodecsBytesBytesCodec  # the base zarr's own numcodecs wrappers use
from zarr.registry import register_codec

IMAGECODECS_FILTERS = ("imagecodecs_lz4h5", "imagecodecs_bz2", "imagecodecs_lzf")


def register() -> None:
    for name in IMAGECODECS_FILTERS:
        wrapper = type(name.title().replace("_", ""), (_NumcodecsBytesBytesCodec,), {}, codec_name=name)
        register_codec(f"numcodecs.{name}", wrapper)


register()
