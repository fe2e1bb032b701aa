"""Frames between ncrefs and its parser processes: a kind byte, an 8-byte length, a payload.

``J`` frames carry JSON (requests, results, errors), ``B`` frames raw bytes (file ranges).
JSON, never pickle, comes back from a parser: a process that parsed a hostile file is not
trusted to send objects that run code when loaded.
"""

from __future__ import annotations

import os
import select
import time

import ujson

JSON, BYTES = b"J", b"B"
_HEADER = 9


def encode(kind: bytes, payload: bytes) -> bytes:
    return kind + len(payload).to_bytes(8, "big") + payload


def encode_json(value) -> bytes:
    return encode(JSON, ujson.dumps(value, escape_forward_slashes=False).encode())


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class FrameReader:
    """Reads frames from a file descriptor, with a deadline and a size cap."""

    def __init__(self, fd: int, max_frame: int):
        self.fd = fd
        self.max_frame = max_frame
        self._buffer = bytearray()

    def read(self, deadline: float | None = None) -> tuple[bytes, bytes]:
        """The next frame; TimeoutError past ``deadline`` (monotonic), EOFError when the peer is gone."""
        header = self._take(_HEADER, deadline)
        length = int.from_bytes(header[1:], "big")
        if header[:1] not in (JSON, BYTES) or length > self.max_frame:
            raise ValueError(f"malformed frame ({header[:1]!r}, {length} bytes)")
        return bytes(header[:1]), self._take(length, deadline)

    def _take(self, n: int, deadline: float | None) -> bytes:
        while len(self._buffer) < n:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([self.fd], [], [], remaining)[0]:
                    raise TimeoutError
            chunk = os.read(self.fd, max(1 << 16, n - len(self._buffer)))
            if not chunk:
                raise EOFError
            self._buffer += chunk
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data
