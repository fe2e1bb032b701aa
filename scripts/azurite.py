"""Start the project's Azurite (from node_modules) on a free loopback port, and stop it.

Used by the test fixtures and the demo. Azurite gets its own data folder and is stopped
by its process id; nothing else on the machine is touched. The blob service always runs; the
queue service (``azurite-queue``, for ``ncrefs backfill --queue``) only when asked: ``start_azurite(queue=True)``
runs both (one connection string names both endpoints), ``start_azurite_queue()`` the queue service alone.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AZURITE_BLOB = ROOT / "node_modules" / ".bin" / "azurite-blob"
AZURITE_QUEUE = ROOT / "node_modules" / ".bin" / "azurite-queue"
ACCOUNT = "devstoreaccount1"


def _development_key() -> str:
    """Azurite's fixed, published development key, as the Azure SDK expands UseDevelopmentStorage."""
    from azure.storage.blob import BlobServiceClient

    return BlobServiceClient.from_connection_string("UseDevelopmentStorage=true").credential.account_key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Azurite:
    port: int
    location: Path
    process: subprocess.Popen | None = None
    _owns_location: bool = field(default=False, repr=False)
    # https with --cert/--key (and e.g. --oauth basic) for tests of signing in; plain http otherwise.
    scheme: str = "http"
    extra_args: tuple[str, ...] = ()
    # Which Azurite service this process is: "blob" (azurite-blob) or "queue" (azurite-queue).
    service: str = "blob"
    # A queue service started beside this blob service (start_azurite(queue=True)); stopped with it.
    queue: Azurite | None = None

    @property
    def blob_endpoint(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def queue_endpoint(self) -> str | None:
        if self.service == "queue":
            return f"{self.scheme}://127.0.0.1:{self.port}/{ACCOUNT}"
        return self.queue.queue_endpoint if self.queue else None

    @property
    def connection_string(self) -> str:
        text = f"DefaultEndpointsProtocol={self.scheme};AccountName={ACCOUNT};AccountKey={_development_key()};"
        if self.service == "blob":
            text += f"BlobEndpoint={self.blob_endpoint};"
        if self.queue_endpoint:
            text += f"QueueEndpoint={self.queue_endpoint};"
        return text

    def start(self, timeout: float = 30.0) -> Azurite:
        binary = AZURITE_QUEUE if self.service == "queue" else AZURITE_BLOB
        if not binary.exists():
            raise RuntimeError(f"Azurite is not installed at {binary}: run `npm ci` (scripts/bootstrap does).")
        log = open(self.location / ("azurite.log" if self.service == "blob" else f"azurite-{self.service}.log"), "ab")
        self.process = subprocess.Popen(
            [str(binary), f"--{self.service}Host", "127.0.0.1", f"--{self.service}Port", str(self.port),
             "--location", str(self.location), "--skipApiVersionCheck", "--disableTelemetry", "--silent", *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Azurite exited with {self.process.returncode}; see {self.location / 'azurite.log'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"Azurite did not listen on 127.0.0.1:{self.port} within {timeout} s")

    def stop(self) -> None:
        if self.queue is not None:
            self.queue.stop()
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        if self._owns_location:
            shutil.rmtree(self.location, ignore_errors=True)


def start_azurite(port: int | None = None, location: Path | None = None, *, queue: bool = False) -> Azurite:
    """Azurite's blob service (and with ``queue`` its queue service too, in the same data folder)."""
    owns = location is None
    location = location or Path(tempfile.mkdtemp(prefix="ncrefs-azurite-"))
    location.mkdir(parents=True, exist_ok=True)
    azurite = Azurite(port or free_port(), location, _owns_location=owns).start()
    if queue:
        try:
            azurite.queue = Azurite(free_port(), location, service="queue").start()
        except Exception:
            azurite.cleanup()
            raise
    return azurite


def start_azurite_queue(port: int | None = None, location: Path | None = None) -> Azurite:
    """Azurite's queue service alone (its connection string names only the QueueEndpoint)."""
    owns = location is None
    location = location or Path(tempfile.mkdtemp(prefix="ncrefs-azurite-queue-"))
    location.mkdir(parents=True, exist_ok=True)
    return Azurite(port or free_port(), location, _owns_location=owns, service="queue").start()
