"""Parse untrusted files in warm parser processes, under limits (the parent's side).

A file's bytes decide what the HDF5 library does: it can crash (a looping chunk index is a
SIGSEGV), hang, or ask for any amount of memory. So the parsing never runs in the process
that serves requests. Each parse borrows a warm worker (``worker.py``: imports done,
confined, no credentials), serves the byte ranges it asks for through the caller's reader,
and gets the reference back as JSON. A crash, a hang past ``PARSE_TIMEOUT_S`` or a runaway
allocation past ``PARSE_MEMORY_MB`` ends that worker only and becomes a typed error; the
pool starts a fresh one on the next request.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import ujson

from shared.chunkrefs import NO_RANGE, ChunkTable, Reference
from shared.errors import ERROR_TABLE, CorruptFile, InternalError, LimitsExceeded, NcrefsError
from shared.reader import RangeReader
from shared.sandbox import protocol
from shared.settings import Settings

log = logging.getLogger("ncrefs.sandbox")

# Any single read a parser may ask for (the whole-file plan reads at most 32 MB at once).
MAX_SINGLE_READ = 64 << 20
# A parser may ask for many known ranges in one message (reader.prefetch_ranges); they are fetched
# READS_IN_FLIGHT at a time, so one file never has more requests in flight.
MAX_RANGES_PER_MESSAGE = 4096
# A worker is replaced after this many files: a long-lived parser's heap only grows.
JOBS_PER_WORKER = 500
# A parse waits this long with no worker coming free before the pool starts another (up to its size).
GROW_AFTER_S = 0.25
STARTUP_TIMEOUT_S = 60
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds shared/


@dataclass(frozen=True)
class Limits:
    timeout_s: float
    memory_bytes: int
    max_read_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(settings.parse_timeout_s, settings.parse_memory_mb << 20, settings.max_read_mb << 20)


@dataclass
class Parsed:
    reference: Reference
    warnings: list[str]
    groups: list[str]
    plan: str
    skipped_variables: dict[str, str]


class _Worker:
    def __init__(self, limits: Limits):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shared.sandbox.worker", ujson.dumps({"memory_bytes": limits.memory_bytes})],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=_PACKAGE_ROOT, env=_worker_environment(), close_fds=True,
        )
        self.frames = protocol.FrameReader(self.proc.stdout.fileno(), max_frame=limits.memory_bytes)
        self.jobs = 0
        try:
            hello = ujson.loads(self.frames.read(time.monotonic() + STARTUP_TIMEOUT_S)[1])
        except (EOFError, TimeoutError, ValueError) as error:
            self.kill()
            raise InternalError(f"A parser process could not start ({type(error).__name__}); see the log.") from error
        self.not_confined = hello.get("not_confined")

    def send(self, data: bytes) -> None:
        protocol.write_all(self.proc.stdin.fileno(), data)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            stream.close()


def _worker_environment() -> dict[str, str]:
    """What a parser process sees: where Python code is, and nothing else (no connection
    strings, no keys, no identity endpoints)."""
    paths = [p for p in sys.path if p and os.path.isdir(p)]
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join([str(_PACKAGE_ROOT), *paths]),
        "PYTHONDONTWRITEBYTECODE": "1",
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }


class ParserPool:
    """Up to ``size`` warm workers; a parse waits for a free one, and the pool grows when none has
    come free for ``GROW_AFTER_S`` while a parse waits: each worker costs ~1 s of CPU and ~150 MB."""

    def __init__(self, limits: Limits, size: int):
        self.limits = limits
        self.size = size
        self._idle: list[_Worker] = []
        self._running = 0
        self._starting = 0  # workers being started (importing: ~1 s of CPU)
        self._freed_at = 0.0  # when a worker last came free (started, or done with a file)
        self._lock = threading.Condition()
        self._warned = False

    def parse(self, reader: RangeReader, head: bytes, *, url: str, name: str, options: dict) -> Parsed:
        """Parse the file behind ``reader`` (``head``: bytes from offset 0 it already holds)."""
        worker = self._acquire()
        reusable = False
        try:
            outcome, reusable = self._converse(worker, reader, head, {"url": url, "name": name, "size": reader.size, **options})
        finally:
            self._release(worker, reusable)
        if isinstance(outcome, NcrefsError):  # the worker answered: it stays warm for the next file
            raise outcome
        return outcome

    def read_regions(self, reader: RangeReader, head: bytes, *, name: str, regions: list[dict], block_size: int) -> list:
        """The stored values of ``regions`` (``[{"variable", "region"}]``) of the file behind ``reader``, read in
        a parser process (``ncrefs verify``): per region a numpy array, or a string saying why it was not read."""
        worker = self._acquire()
        reusable = False
        try:
            outcome, reusable = self._converse(worker, reader, head, {
                "task": "read_regions", "url": "", "name": name, "size": reader.size, "block_size": block_size,
                "regions": regions})
        finally:
            self._release(worker, reusable)
        if isinstance(outcome, NcrefsError):
            raise outcome
        return outcome

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
            self._running -= len(idle)
        for worker in idle:
            worker.kill()

    # -- one conversation ---------------------------------------------------------------------
    def _converse(self, worker: _Worker, reader: RangeReader, head: bytes, job: dict) -> tuple[Parsed | NcrefsError, bool]:
        """Run one job; a worker that answered (with a reference or an error) may be reused,
        one that timed out, died or misbehaved raises here and is not."""
        deadline = time.monotonic() + self.limits.timeout_s
        worker.jobs += 1
        refused: NcrefsError | None = None
        read_total = 0
        try:
            worker.send(protocol.encode_json(job) + protocol.encode(protocol.BYTES, head))
            while True:
                kind, payload = worker.frames.read(deadline)
                message = ujson.loads(payload) if kind == protocol.JSON else None
                if not isinstance(message, dict):
                    raise InternalError("A parser process sent a malformed message.")
                if "read" not in message and "read_many" not in message:
                    break
                ranges = ([_checked_range(message["read"], reader.size)] if "read" in message
                          else _checked_ranges(message["read_many"], reader.size))
                for start, end in ranges:
                    refused = refused or self._over_budget(end - start, read_total)
                    read_total += end - start
                if refused is None:
                    try:
                        pieces = reader.fetch_concurrently(ranges)
                        worker.send(b"".join(protocol.encode(protocol.BYTES, data) for data in pieces))
                        continue
                    except NcrefsError as error:  # the source changed, storage failed: the real error stays here
                        refused = error
                # Once refused, every later read is too; whatever the parser makes of that, the refusal is the error.
                worker.send(protocol.encode_json({"refused": refused.code}))
        except TimeoutError:
            raise LimitsExceeded(
                f"Parsing the file took longer than PARSE_TIMEOUT_S={self.limits.timeout_s:g} s; it was stopped.",
                hint="Raise PARSE_TIMEOUT_S if the file is genuine (very many variables or groups), or split it.") from None
        except (EOFError, BrokenPipeError, ValueError) as error:
            raise refused or _died(worker, self.limits) from error
        reusable = not message.get("recycle") and worker.jobs < JOBS_PER_WORKER
        tables = message.get("tables") if refused is None and "error" not in message else None
        try:  # a reference's chunk tables follow it, three raw frames each
            frames = [worker.frames.read(deadline) for _ in range(3 * len(tables))] if isinstance(tables, list) else []
        except (TimeoutError, EOFError, ValueError) as error:
            raise _died(worker, self.limits) if isinstance(error, EOFError) else InternalError(
                "A parser process sent a reference without its chunk tables.") from error
        if refused is not None:
            return refused, reusable
        if "error" in message:
            return _rebuild_error(message["error"]), reusable
        if job.get("task") == "read_regions":  # ncrefs verify (read_regions below)
            return _checked_regions(message, job), reusable
        return _checked_result(message, frames, job["url"], reader.size), reusable

    def _over_budget(self, length: int, read_total: int) -> LimitsExceeded | None:
        if length > MAX_SINGLE_READ:
            return LimitsExceeded(f"The parser asked for {length:,} bytes at once (at most {MAX_SINGLE_READ >> 20} MB): "
                                  "a header never needs that much; the file's header is damaged or hostile.")
        if read_total + length > self.limits.max_read_bytes:
            return LimitsExceeded(f"Referencing the file would read more than MAX_READ_MB={self.limits.max_read_bytes >> 20} MB "
                                  "of it; a header rarely needs that much.",
                                  hint="Raise MAX_READ_MB if the file is genuine (its metadata is spread through a large file).")
        return None

    # -- workers ------------------------------------------------------------------------------
    def _acquire(self) -> _Worker:
        with self._lock:
            waiting_since = time.monotonic()
            while True:
                while self._idle:
                    worker = self._idle.pop()
                    if worker.proc.poll() is None:
                        return worker
                    self._running -= 1
                    worker.kill()
                # Another worker only when none has come free for a while (long parses): small files parse
                # in milliseconds and one parser keeps up; a starting worker soon serves the waiters.
                busy_for = time.monotonic() - max(waiting_since, self._freed_at)
                if self._running < self.size and (self._running == 0 or (not self._starting and busy_for >= GROW_AFTER_S)):
                    self._running += 1
                    self._starting += 1
                    break
                if self._running >= self.size or self._starting:
                    self._lock.wait()  # until a worker is released or has started
                else:
                    self._lock.wait(GROW_AFTER_S - busy_for)
        return self._start()

    def _start(self) -> _Worker:
        """A new worker (already counted in ``_running`` and ``_starting``)."""
        try:
            worker = _Worker(self.limits)
        except BaseException:
            with self._lock:
                self._running -= 1
                self._starting -= 1
                self._lock.notify_all()
            raise
        with self._lock:
            self._starting -= 1
            self._freed_at = time.monotonic()
            self._lock.notify_all()  # the waiters count their wait from now
        if worker.not_confined and not self._warned:
            self._warned = True
            log.warning("parser processes are not confined: %s (structural checks still apply)", worker.not_confined)
        return worker

    def warm(self) -> None:
        """Start a worker in the background if none is running (its ~1 s of imports overlaps the caller's work)."""
        with self._lock:
            if self._running or self._idle:
                return
            self._running += 1
            self._starting += 1

        def start() -> None:
            try:
                worker = self._start()
            except BaseException:  # noqa: BLE001 - the first parse starts one and reports why it cannot
                return
            self._release(worker, reusable=True)

        threading.Thread(target=start, name="ncrefs-parser-warm", daemon=True).start()

    def _release(self, worker: _Worker, reusable: bool) -> None:
        if not reusable:
            worker.kill()
        with self._lock:
            if reusable:
                self._idle.append(worker)
            else:
                self._running -= 1
            self._freed_at = time.monotonic()
            self._lock.notify()


def _checked_ranges(value, size: int) -> list[tuple[int, int]]:
    if not isinstance(value, list) or not 0 < len(value) <= MAX_RANGES_PER_MESSAGE:
        raise InternalError("A parser process asked for a malformed list of reads.")
    return [_checked_range(item, size) for item in value]


def _checked_range(value, size: int) -> tuple[int, int]:
    if (not isinstance(value, list) or len(value) != 2 or not all(type(v) is int for v in value)
            or not 0 <= value[0] < value[1] <= size):
        raise InternalError(f"A parser process asked for an impossible range {value!r:.80}.")
    return value[0], value[1]


def _died(worker: _Worker, limits: Limits) -> NcrefsError:
    try:
        code = worker.proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        return InternalError("A parser process stopped answering.")
    if code < 0 and -code == signal.SIGKILL:
        return LimitsExceeded(f"The parser process was killed (SIGKILL), most likely for using more than "
                              f"PARSE_MEMORY_MB={limits.memory_bytes >> 20} MB.",
                              hint="Raise PARSE_MEMORY_MB if the file is genuine; a damaged header can claim any size.")
    if code < 0:
        name = signal.Signals(-code).name
        return CorruptFile(f"The HDF5/NetCDF library crashed ({name}) reading this file's structure: the file is damaged "
                           "or built to crash readers. Nothing was written; the crash ended only a parser process.",
                           hint="Check the file with h5dump -H or ncdump -h and upload a sound copy; if the file is sound, "
                                f"it may need more than PARSE_MEMORY_MB={limits.memory_bytes >> 20} MB.")
    return InternalError(f"A parser process exited unexpectedly (status {code}).")


def _rebuild_error(info) -> NcrefsError:
    classes = {cls.code: cls for cls in _error_classes(NcrefsError)}
    if not isinstance(info, dict) or info.get("code") not in ERROR_TABLE or not isinstance(info.get("message"), str):
        return InternalError("A parser process reported a malformed error.")
    cls = classes.get(info["code"], InternalError)
    hint, variable = info.get("hint"), info.get("variable")
    return cls(info["message"], hint=hint if isinstance(hint, str) else None, variable=variable if isinstance(variable, str) else None)


def _error_classes(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _error_classes(sub)


def _checked_result(message: dict, frames: list[tuple[bytes, bytes]], url: str, size: int) -> Parsed:
    """The reference as a parser sent it, accepted only if every chunk points inside this file."""
    refs = message.get("refs")
    entries = refs.get("refs") if isinstance(refs, dict) else None
    headers = message.get("tables")
    if not isinstance(entries, dict) or not isinstance(headers, list) or len(frames) != 3 * len(headers):
        raise InternalError("A parser process returned no reference.")
    # virtualizarr writes a local file's chunk URLs as plain paths
    own = {url, unquote(urlsplit(url).path)} if url.startswith("file://") else {url}
    for key, value in entries.items():
        if isinstance(value, list):
            if (len(value) != 3 or value[0] not in own or not all(type(v) is int for v in value[1:])
                    or value[1] < 0 or value[2] < 0 or value[1] + value[2] > size):
                raise InternalError(f"A parser process returned a reference outside the file for {key!r:.80}.")
        elif not isinstance(value, str):
            raise InternalError(f"A parser process returned a malformed reference for {key!r:.80}.")
    reference = Reference(entries)
    for at, header in enumerate(headers):
        path = header.get("path") if isinstance(header, dict) else None
        parts = frames[3 * at : 3 * at + 3]
        try:
            if not isinstance(path, str) or any(kind != protocol.BYTES for kind, _ in parts) or path in reference.tables:
                raise ValueError("malformed")
            table = ChunkTable.from_frames(header, [payload for _, payload in parts])
            zarray = json.loads(entries[f"{path}/.zarray"])
            grid = tuple(math.ceil(s / c) if c else 1 for s, c in zip(zarray["shape"], zarray["chunks"]))
        except (ValueError, KeyError, TypeError) as error:
            raise InternalError(f"A parser process returned a malformed chunk table for {path!r:.80}.") from error
        if table.grid != grid or not set(table.urls) <= own or table.max_end() > size or (
                table.which.size and (table.which.min() < NO_RANGE or table.which.max() >= len(table.urls))):
            raise InternalError(f"A parser process returned a reference outside the file for {path!r:.80}.")
        reference.tables[path] = table
    skipped = message.get("skipped_variables") or {}
    return Parsed(reference, [str(w) for w in message.get("warnings", [])], [str(g) for g in message.get("groups", ["/"])],
                  str(message.get("plan", "ranged")), {str(k): str(v) for k, v in dict(skipped).items()})


def _checked_regions(message: dict, job: dict) -> list:
    """A parser's ``read_regions`` answer as numpy arrays (or reasons), accepted only in the shapes asked for."""
    import base64

    import numpy as np

    answers = message.get("regions")
    if not isinstance(answers, list) or len(answers) != len(job["regions"]):
        raise InternalError("A parser process answered a malformed list of regions.")
    arrays: list = []
    for answer, asked in zip(answers, job["regions"]):
        expected = [stop - start for start, stop in asked["region"]]
        if isinstance(answer, dict) and isinstance(answer.get("skipped"), str):
            arrays.append(answer["skipped"][:500])
            continue
        if not isinstance(answer, dict) or answer.get("shape") != expected:
            raise InternalError(f"A parser process answered a region of {asked['variable']!r:.80} in another shape.")
        if "strings" in answer:
            strings = answer["strings"]
            if (not isinstance(strings, list) or not all(isinstance(v, str) for v in strings)
                    or len(strings) != math.prod(expected)):
                raise InternalError("A parser process answered malformed strings.")
            values = np.empty(len(strings), dtype=object)
            values[:] = strings
            arrays.append(values.reshape(expected))
            continue
        try:
            dtype = np.lib.format.descr_to_dtype(answer["descr"])
            data = base64.b64decode(answer["data"], validate=True)
        except (KeyError, TypeError, ValueError) as error:
            raise InternalError(f"A parser process answered a malformed region ({type(error).__name__}).") from None
        if dtype.hasobject or len(data) != dtype.itemsize * math.prod(expected):
            raise InternalError(f"A parser process answered a region of {asked['variable']!r:.80} of the wrong size.")
        arrays.append(np.frombuffer(data, dtype).reshape(expected))
    return arrays


_pools: dict[Limits, ParserPool] = {}
_pools_lock = threading.Lock()


def parser_pool(settings: Settings, size: int | None = None) -> ParserPool:
    """The process-wide pool for these limits (warm workers are shared by every caller);
    ``size`` raises its number of workers (a backfill with more threads)."""
    limits = Limits.from_settings(settings)
    with _pools_lock:
        pool = _pools.get(limits)
        if pool is None:
            pool = _pools[limits] = ParserPool(limits, settings.parse_workers)
        pool.size = max(pool.size, size or 0)
        return pool


@atexit.register
def close_pools() -> None:
    """Stop every warm parser process (at exit; benchmarks call it to count the parsers' memory)."""
    for pool in list(_pools.values()):
        pool.close()
