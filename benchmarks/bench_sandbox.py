"""What parsing in a separate, confined process costs per file.

Every file is parsed in a warm parser process (``shared/sandbox``): the header's bytes go
to it through a pipe and the reference comes back as JSON. This times the same small
files parsed in this process and through a warm worker, and prints the added time per file
(target: under 50 ms), plus the one-off cost of starting a worker.

    .venv/bin/python -m benchmarks.bench_sandbox [--files 40]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from shared.formats import sniff
from shared.reader import FIRST_READ, RangeReader
from shared.sandbox import Limits, ParserPool
from shared.settings import Settings
from shared.virtualize import virtualize
from tests import samples

MAKERS = [samples.nc4_chunked_cf_time, samples.nc4_features, samples.nc4_groups, samples.nc3_classic, samples.nc3_64bit]


def reader_over(data: bytes) -> RangeReader:
    reader = RangeReader(lambda start, end: data[start:end], len(data))
    reader.add_fetched(0, data[:FIRST_READ])
    return reader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=40, help="files to parse each way")
    args = parser.parse_args()
    settings = Settings()
    options = {"block_size": settings.read_block_size, "inline_threshold": settings.inline_threshold,
               "max_chunks": settings.max_chunks}
    with tempfile.TemporaryDirectory() as tmp:
        files = [maker(Path(tmp)).read_bytes() for maker in MAKERS]
    url = "abfs://raw-netcdf/bench.nc"

    pool = ParserPool(Limits.from_settings(settings), size=1)
    started = time.perf_counter()
    pool.parse(reader_over(files[0]), files[0][:FIRST_READ], url=url, name="warm-up", options=options)
    startup = time.perf_counter() - started

    in_process, isolated = [], []
    for i in range(args.files):
        data = files[i % len(files)]
        reader = reader_over(data)
        t = time.perf_counter()
        virtualize(reader, sniff(reader.read_at, len(data), "bench"), url, inline_threshold=settings.inline_threshold,
                   max_chunks=settings.max_chunks)
        in_process.append(time.perf_counter() - t)
        t = time.perf_counter()
        pool.parse(reader_over(data), data[:FIRST_READ], url=url, name="bench", options=options)
        isolated.append(time.perf_counter() - t)
    pool.close()

    added = [b - a for a, b in zip(in_process, isolated)]
    print(f"files: {args.files} small NetCDF3/NetCDF4 files ({', '.join(m.__name__ for m in MAKERS)})")
    print(f"first worker start (imports, confinement) + first parse: {startup * 1000:.0f} ms (once per worker)")
    print(f"parse in this process:      median {statistics.median(in_process) * 1000:6.1f} ms")
    print(f"parse in a parser process:  median {statistics.median(isolated) * 1000:6.1f} ms")
    print(f"added per file:             median {statistics.median(added) * 1000:6.1f} ms, "
          f"max {max(added) * 1000:6.1f} ms (target < 50 ms)")


if __name__ == "__main__":
    main()
