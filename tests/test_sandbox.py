"""The parser processes: confined, without credentials, replaced when a file kills one."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

from shared.sandbox import parser_pool
from shared.sandbox.confine import readable_roots

ROOT = Path(__file__).resolve().parents[1]


def run_confined(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter right after it confines itself as a parser process does."""
    script = "from shared.sandbox.confine import confine\nassert confine() is None, confine()\n" + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_a_confined_parser_cannot_read_local_files_or_connect(azurite, tmp_path):
    secret = tmp_path / "local.settings.json"
    secret.write_text('{"Values": {"DATA_STORAGE": "AccountKey=secret"}}')
    done = run_confined(f"""
        import socket
        for path in ["/etc/passwd", "/proc/self/environ", {str(secret)!r}, {str(ROOT / 'local.settings.sample.json')!r}]:
            try:
                open(path).read()
            except PermissionError:
                continue
            raise SystemExit("read " + path)
        try:
            socket.create_connection(("127.0.0.1", {azurite.port}), timeout=5)
        except PermissionError:
            pass
        else:
            raise SystemExit("connected to storage")
        import json, decimal, numcodecs.zstd  # code it has not imported yet still loads
        print("confined")
    """)
    assert done.returncode == 0 and done.stdout.strip() == "confined", done.stderr


def test_what_a_parser_may_read_holds_no_app_folder():
    roots = readable_roots()
    assert ROOT not in roots and Path("/proc") not in roots and Path("/etc") not in roots
    assert all(ROOT not in root.parents or ".venv" in root.parts or root.name == "shared" for root in roots)


def test_parser_processes_hold_no_credentials(settings, azurite):
    pool = parser_pool(settings)
    worker = pool._acquire()
    try:
        environment = Path(f"/proc/{worker.proc.pid}/environ").read_bytes()
    finally:
        pool._release(worker, reusable=True)
    assert b"AccountKey" not in environment and b"DATA_STORAGE" not in environment
    assert azurite.connection_string.encode() not in environment
    with socket.socket() as s:  # the worker is alive and Azurite too: the check above was real
        s.connect(("127.0.0.1", azurite.port))


def test_a_missed_check_still_cannot_read_outside_the_blob(tmp_path):
    """The second wall alone: HDF5 in a confined parser, asked for external raw storage, cannot open the file."""
    from tests import hostile

    secret = hostile.secret_file(tmp_path)
    path = hostile.external_storage(tmp_path, secret)
    done = run_confined(f"""
        import io, h5py
        data = io.BytesIO({path.read_bytes()!r})
        with h5py.File(data, "r") as f:
            try:
                values = f["leak"][...]
            except OSError as error:
                print("refused:", error)
            else:
                print("read", bytes(values))
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused:") and hostile.SECRET[:8].decode() not in done.stdout
    unconfined = subprocess.run([sys.executable, "-c", f"import h5py; print(bytes(h5py.File({str(path)!r})['leak'][...]))"],
                                capture_output=True, text=True, timeout=60)
    assert hostile.SECRET[:8].decode() in unconfined.stdout, "without the wall the same read leaks: the test is real"


def _acquire_in_thread(pool):
    import threading

    got = {}
    thread = threading.Thread(target=lambda: got.setdefault("worker", pool._acquire()))
    thread.start()
    return thread, got


def test_the_pool_grows_only_when_parses_keep_its_workers_busy(settings):
    """Small files parse in milliseconds: a waiting parse takes the worker that comes free rather than
    starting another (~1 s of CPU, ~150 MB). A parse kept waiting GROW_AFTER_S with none coming free
    (a long parse) starts a second one, up to the pool's size."""
    from shared.sandbox.pool import Limits, ParserPool

    pool = ParserPool(Limits.from_settings(settings), 2)
    try:
        first = pool._acquire()
        thread, got = _acquire_in_thread(pool)
        thread.join(0.05)  # waiting: the only worker is busy
        assert thread.is_alive()
        pool._release(first, reusable=True)  # comes free well within GROW_AFTER_S
        thread.join(30)
        assert got["worker"] is first and pool._running == 1

        thread, got = _acquire_in_thread(pool)  # `first` is held (by got) and stays busy: a second starts
        thread.join(60)
        assert got["worker"] is not first and got["worker"].proc.poll() is None and pool._running == 2
        pool._release(got["worker"], reusable=True)
        pool._release(first, reusable=True)
    finally:
        pool.close()
    assert pool._running == 0


def test_a_warmed_pool_has_a_worker_ready_before_the_first_parse(settings):
    import time

    from shared.sandbox.pool import Limits, ParserPool

    pool = ParserPool(Limits.from_settings(settings), 2)
    try:
        pool.warm()
        pool.warm()  # one is starting: no second
        deadline = time.monotonic() + 60
        while not pool._idle and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(pool._idle) == 1 and pool._running == 1
        worker = pool._acquire()
        assert worker.proc.poll() is None and pool._running == 1
        pool._release(worker, reusable=True)
    finally:
        pool.close()
