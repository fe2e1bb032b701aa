"""A parser process: ``python -m shared.sandbox.worker '<limits JSON>'``.

It parses one file at a time and holds no credentials: it asks its parent for every byte
range over its standard input/output (see ``protocol.py``) and answers with the reference
as JSON. It runs under a memory limit and, where the kernel allows, Landlock confinement
(``confine.py``); a crash or a hang ends this process only.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

from shared.sandbox import protocol
from shared.sandbox.confine import confine, limit_resources


class ReadRefused(Exception):
    """The parent did not serve a read (the source changed, a limit): it holds the real error."""


def main() -> None:
    limits = json.loads(sys.argv[1])
    # The protocol gets its own descriptors; stray prints from libraries go to stderr.
    proto_in, proto_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    limit_resources(limits["memory_bytes"])

    from shared.formats import sniff
    from shared.reader import RangeReader
    from shared.virtualize import virtualize

    not_confined = confine()
    frames = protocol.FrameReader(proto_in, max_frame=limits["memory_bytes"])
    protocol.write_all(proto_out, protocol.encode_json({"ready": True, "not_confined": not_confined}))

    def fetch(start: int, end: int) -> bytes:
        protocol.write_all(proto_out, protocol.encode_json({"read": [start, end]}))
        kind, payload = frames.read()
        if kind != protocol.BYTES:
            raise ReadRefused(payload.decode())
        return payload

    def fetch_many(ranges: list[tuple[int, int]]) -> list[bytes]:
        # One request message; the parent fetches them concurrently and answers with one frame each
        # (or, first, a refusal).
        protocol.write_all(proto_out, protocol.encode_json({"read_many": [[s, e] for s, e in ranges]}))
        pieces = []
        for _ in ranges:
            kind, payload = frames.read()
            if kind != protocol.BYTES:
                raise ReadRefused(payload.decode())
            pieces.append(payload)
        return pieces

    # Ready before it is needed: when memory runs out, even building this reply could fail.
    out_of_memory = protocol.encode_json({"recycle": True, "error": {
        "code": "limits_exceeded", "message": f"Parsing the file needed more than PARSE_MEMORY_MB={limits['memory_bytes'] >> 20} MB.",
        "hint": "Raise PARSE_MEMORY_MB if the file is genuine; a damaged header can claim any size.", "variable": None}})

    while True:
        try:
            _, request = frames.read()
            job = json.loads(request)
            _, head = frames.read()
        except EOFError:  # the parent is gone
            return
        fmt = reader = result = failure = None
        try:
            reader = RangeReader(fetch, job["size"], block_size=job["block_size"], name=job["name"], fetch_many=fetch_many)
            reader.seed(0, head)
            fmt = sniff(reader.read_at, job["size"], job["name"])
            if job.get("task") == "read_regions":  # ncrefs verify: stored values of a few regions (read_regions below)
                reply = read_regions(reader, fmt, job)
            else:
                result = virtualize(reader, fmt, job["url"], inline_threshold=job["inline_threshold"],
                                    max_chunks=job["max_chunks"], strict=job["strict"])
                reply = _result_frames(result)
        except ReadRefused:
            reply = protocol.encode_json({"read_refused": True, "recycle": False})
        except BaseException as error:  # noqa: BLE001 - whatever a file makes a parser raise is about the file
            failure = error  # answered below, once this frame's references (the parse's memory) are gone
        reader = result = None
        exhausted = isinstance(failure, MemoryError)
        if failure is not None and not exhausted:
            try:
                reply = _error_frame(failure, fmt)
            except MemoryError:  # so little memory left that even the answer does not fit
                exhausted = True
        failure = None
        protocol.write_all(proto_out, out_of_memory if exhausted else reply)
        if exhausted:
            return  # a fresh process for the next file: this heap may stay fragmented


def _result_frames(result) -> bytes:
    """The reference: its entries and each chunk table's header as JSON, then three raw frames per table."""
    tables = list(result.reference.tables.items())
    message = {"refs": {"version": 1, "refs": result.reference.entries},
               "tables": [{"path": path, **table.header()} for path, table in tables],
               "warnings": result.warnings, "groups": result.groups, "plan": result.plan,
               "skipped_variables": result.skipped_variables, "recycle": False}
    return protocol.encode_json(message) + b"".join(
        protocol.encode(protocol.BYTES, frame) for _, table in tables for frame in table.frames())


def _error_frame(error: BaseException, fmt) -> bytes:
    from shared.errors import NcrefsError
    from shared.virtualize import classify_parse_error

    if not isinstance(error, NcrefsError):
        traceback.print_exception(error, file=sys.stderr)
        error = classify_parse_error(error, fmt) if fmt is not None else _unreadable(error)
    return protocol.encode_json({"recycle": False, "error": {
        "code": error.code, "message": error.message, "hint": error.hint, "variable": error.variable}})


def _unreadable(error: BaseException):
    from shared.errors import CorruptFile

    return CorruptFile(f"The file's first bytes could not be read ({type(error).__name__}: {str(error)[:200]}).")


def read_regions(reader, fmt, job: dict) -> bytes:
    """The ``read_regions`` task (``ncrefs verify``): the stored values of ``job["regions"]``, read with
    h5py (HDF5) or from the NetCDF3 header's offsets through the same reader (``shared/regions.py``)."""
    from shared.regions import read_regions as read

    return protocol.encode_json({"regions": read(reader, fmt, job["regions"]), "recycle": False})


if __name__ == "__main__":
    main()
