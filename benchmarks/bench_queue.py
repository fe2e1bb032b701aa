"""Fan-out backfill throughput: files per second through the queue path, with 1, 2 and 4 workers.

Writes ``--files`` small daily NetCDF4 files (tests/samples.daily) per run to Azurite (blob and queue
services), both behind proxies that add ``--latency-ms`` to every request (benchmarks/counting_proxy.py),
puts one message per file on the queue with ``shared.fanout.enqueue`` (what ``ncrefs backfill --queue``
does), and drains the queue with W worker processes. Each worker stands for one Functions instance as
host.json and Bicep configure it: it takes ``batchSize + newBatchThreshold`` messages at a time (3), runs
``shared.fanout.reference_queued`` (the queue function's core: the blob trigger's unit of work, with the
reference, its STAC item and the dataset look-up) on each, deletes the message, and parses in
``PARSE_WORKERS`` (2) parser processes, warmed before the clock starts.

It prints files per second per run, requests per file (blob and queue, counted at the proxies), and the
modelled time for 500,000 files on N instances (the model is printed with it).

    .venv/bin/python -m benchmarks.bench_queue [--files 160] [--latency-ms 10] [--workers 1,2,4]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Azure Storage scalability targets (standard general-purpose v2 account; learn.microsoft.com,
# "Scalability and performance targets for standard storage accounts" and "... for Queue Storage").
ACCOUNT_REQUESTS_PER_S = 20_000
QUEUE_MESSAGES_PER_S = 2_000
ARCHIVE_FILES = 500_000


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (Linux /proc), 0 for one that is gone."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def worker(connection: str, queue: str, ready, go, results) -> None:
    """One 'instance': warm parsers, then take messages until the queue is empty."""
    sys.path.insert(0, str(ROOT))
    import logging

    logging.disable(logging.ERROR)  # the bad-file log lines are not the point here
    from shared.fanout import queue_client, reference_queued
    from shared.sandbox import parser_pool
    from shared.settings import Settings
    from shared.storage import Storage

    host = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]
    at_once = host["batchSize"] + host["newBatchThreshold"]
    settings = Settings(connection_string=connection, reference_queue=queue, parse_workers=2)
    storage = Storage(settings)
    parser_pool(settings, size=settings.parse_workers)
    client = queue_client(settings, storage)
    mine = [os.getpid(), *children(os.getpid())]  # this process and its parser processes
    ready.set()
    go.wait()
    cpu_before = cpu_seconds(mine)
    done = 0
    outcomes: dict[str, int] = {}

    def one(message) -> str:
        outcome = reference_queued(message.content, message.dequeue_count, settings, storage)
        client.delete_message(message)
        return outcome.action

    with ThreadPoolExecutor(at_once) as pool:
        while batch := list(client.receive_messages(max_messages=at_once, visibility_timeout=300)):
            for action in pool.map(one, batch):
                done += 1
                outcomes[action] = outcomes.get(action, 0) + 1
    results.put({"pid": os.getpid(), "files": done, "outcomes": outcomes, "end": time.time(),
                 "cpu_s": cpu_seconds(mine) - cpu_before})


def run(connection: str, queue: str, workers: int) -> tuple[float, int, float]:
    context = multiprocessing.get_context("spawn")
    ready = [context.Event() for _ in range(workers)]
    go, results = context.Event(), context.Queue()
    processes = [context.Process(target=worker, args=(connection, queue, r, go, results)) for r in ready]
    for process in processes:
        process.start()
    for event in ready:
        if not event.wait(120):
            raise SystemExit("a worker did not start")
    started = time.time()
    go.set()
    reports = [results.get(timeout=1800) for _ in processes]
    for process in processes:
        process.join()
    return max(r["end"] for r in reports) - started, sum(r["files"] for r in reports), sum(r["cpu_s"] for r in reports)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=160)
    parser.add_argument("--latency-ms", type=float, default=10)
    parser.add_argument("--workers", default="1,2,4")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]

    from azure.storage.blob import BlobServiceClient

    from benchmarks.counting_proxy import CountingProxy, fetch_counts
    from scripts.azurite import start_azurite
    from shared.fanout import enqueue
    from shared.settings import Settings
    from tests import samples

    azurite = start_azurite(queue=True)
    try:
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        for container in ("raw-netcdf", "refs"):
            service.create_container(container)
        with tempfile.TemporaryDirectory() as tmp:
            made = [samples.daily(Path(tmp), day) for day in range(10)]
            for run_index in range(len(counts)):  # one copy per run, so no run finds another's work done
                for i in range(args.files):
                    name = f"run{run_index}/y{i % 10}/tas_{i:05d}.nc"
                    service.get_blob_client("raw-netcdf", name).upload_blob(made[i % 10].read_bytes())
            size = made[0].stat().st_size
        latency = args.latency_ms / 1000
        blob_proxy = CountingProxy(azurite.port, "raw-netcdf", latency_s=latency).start()
        queue_proxy = CountingProxy(azurite.queue.port, "-", latency_s=latency).start()
        connection = (azurite.connection_string.replace(f":{azurite.port}/", f":{blob_proxy.port}/")
                      .replace(f":{azurite.queue.port}/", f":{queue_proxy.port}/"))
        print(f"{args.files} files of {size:,} bytes per run; Azurite (blob and queue) behind {args.latency_ms:g} ms per "
              f"request; {os.cpu_count()} CPUs here, load average {os.getloadavg()[0]:.1f}")
        print("each worker process = one instance: 3 messages at a time (host.json batchSize 2 + newBatchThreshold 1), "
              "2 parser processes")
        print(f"{'workers':>7} {'files':>6} {'wall s':>7} {'files/s':>8} {'per worker':>10} {'blob req/file':>13} "
              f"{'queue req/file':>14} {'app CPU s/file':>14} {'Azurite CPU s/file':>18} {'enqueue/s':>9}")
        rows, enqueue_rates, cpu_per_file, app_cpu_per_file = [], [], [], []
        for run_index, workers in enumerate(counts):
            queue = f"bench-{run_index}-{workers}"
            settings = Settings(connection_string=connection, reference_queue=queue)
            queued_at = time.perf_counter()
            summary = enqueue(settings, prefix=f"run{run_index}/")
            enqueue_rate = summary.queued / (time.perf_counter() - queued_at)
            enqueue_rates.append(enqueue_rate)
            blob_before, queue_before = fetch_counts(blob_proxy.port), fetch_counts(queue_proxy.port)
            emulator = [azurite.process.pid, azurite.queue.process.pid]
            emulator_before = cpu_seconds(emulator)
            wall, files, app_cpu = run(connection, queue, workers)
            emulator_cpu = cpu_seconds(emulator) - emulator_before
            blob_after, queue_after = fetch_counts(blob_proxy.port), fetch_counts(queue_proxy.port)
            total = lambda a, b: sum(getattr(a, k) - getattr(b, k) for k in ("gets", "heads", "other"))  # noqa: E731
            blob_requests, queue_requests = total(blob_after, blob_before), total(queue_after, queue_before)
            rate = files / wall
            rows.append((workers, rate, (blob_requests + queue_requests) / files))
            cpu_per_file.append((app_cpu + emulator_cpu) / files)
            app_cpu_per_file.append(app_cpu / files)
            print(f"{workers:>7} {files:>6} {wall:>7.1f} {rate:>8.1f} {rate / workers:>10.1f} {blob_requests / files:>13.1f} "
                  f"{queue_requests / files:>14.1f} {app_cpu / files:>14.3f} {emulator_cpu / files:>18.3f} {enqueue_rate:>9.0f}")
        per_instance = rows[0][1] / rows[0][0]
        cores = os.cpu_count() or 1
        print(f"\nCPU here: {min(cpu_per_file):.3f} s per file (app and its parsers + Azurite); the workers, their parsers, "
              f"Azurite and the proxies share {cores} CPUs with whatever else runs (load average now "
              f"{os.getloadavg()[0]:.1f}), so more workers add CPU demand, not CPU: the rows above cannot show the "
              "platform's scaling, where each instance has its own.")
        from shared.fanout import _send_all, ensure_queue, queue_client
        from shared.storage import Storage

        sender_settings = Settings(connection_string=connection, reference_queue="bench-send")
        sender = queue_client(sender_settings, Storage(sender_settings), connections=32)
        ensure_queue(sender)
        sends = 2000
        sent_at = time.perf_counter()
        _send_all(sender, ['{"container": "raw-netcdf", "name": "x.nc", "etag": "0x1"}'] * sends)
        send_rate = sends / (time.perf_counter() - sent_at)
        print(f"sending alone (backfill --queue, 32 in flight): {sends} messages at {send_rate:,.0f}/s")
        per_file = max(r[2] for r in rows)  # blob and queue requests: both count against the account
        account_cap = ACCOUNT_REQUESTS_PER_S / per_file
        cap = min(account_cap, QUEUE_MESSAGES_PER_S)
        print()
        print(f"model: files/s on N instances = min(N x {per_instance:.1f} (one worker's rate, measured above), "
              f"{ACCOUNT_REQUESTS_PER_S:,} requests/s per storage account / {per_file:.1f} requests per file = "
              f"{account_cap:,.0f}, {QUEUE_MESSAGES_PER_S:,} messages/s per queue)")
        print("       It assumes an instance does what one worker process does here (2 parsers; small files, so each "
              "file costs its round trips, not its bytes),")
        print("       that the data account serves nothing else, and leaves out cold starts and the scale-out ramp. "
              f"Enqueueing {ARCHIVE_FILES:,} messages from one machine")
        print(f"       takes ~{ARCHIVE_FILES / send_rate / 60:.0f} min at the measured sending rate (plus the plan's listings); "
              "the instances start on the first messages meanwhile.")
        host = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]
        at_once = host["batchSize"] + host["newBatchThreshold"]
        cpu_rate, latency_rate = 1 / app_cpu_per_file[0], at_once / (per_file * latency)
        cpu_bound = min(cpu_rate, latency_rate)
        print(f"       Second column: an instance with a vCPU of its own: min(1 / {app_cpu_per_file[0]:.3f} app CPU s per file "
              f"= {cpu_rate:.1f}, {at_once} messages at a time / ({per_file:.1f} requests per file x {args.latency_ms:g} ms, "
              f"all in sequence) = {latency_rate:.1f}) = {cpu_bound:.1f} files/s per instance.")
        print(f"{'instances':>9} {'files/s':>8} {'500,000 files':>14} {'| 1 vCPU':>9} {'files/s':>8} {'500,000 files':>14}  "
              "bound by (measured)")

        def shown(rate: float) -> str:
            hours = ARCHIVE_FILES / rate / 3600
            return f"{hours:.1f} h" if hours >= 1 else f"{hours * 60:.0f} min"

        for instances in (1, 10, 40, 100, 200, 500, 1000):
            measured, cpu = min(instances * per_instance, cap), min(instances * cpu_bound, cap)
            bound = "instances" if instances * per_instance < cap else (
                "storage account requests" if account_cap < QUEUE_MESSAGES_PER_S else "queue messages")
            print(f"{instances:>9} {measured:>8.0f} {shown(measured):>14} {'|':>9} {cpu:>8.0f} {shown(cpu):>14}  {bound}")
    finally:
        azurite.cleanup()


if __name__ == "__main__":
    main()
