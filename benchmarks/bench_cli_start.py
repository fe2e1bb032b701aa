"""How long people wait before ncrefs answers: help, usage errors, imports.

Runs each command in a fresh process several times and prints the median and the worst
wall time. Target: help and usage errors well under a second (the CLI imports xarray,
virtualizarr and the Azure SDKs only once the command line is known to be good).

    .venv/bin/python -m benchmarks.bench_cli_start [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NCREFS = str(Path(sys.executable).parent / "ncrefs")
PYTHON = sys.executable

COMMANDS = {
    "ncrefs --help": [NCREFS, "--help"],
    "ncrefs virtualize --help": [NCREFS, "virtualize", "--help"],
    "ncrefs --version": [NCREFS, "--version"],
    "ncrefs (usage error)": [NCREFS, "virtualize"],
    "ncrefs backfill --workers 0": [NCREFS, "backfill", "--workers", "0"],
    "python -m ncrefs --help": [PYTHON, "-m", "ncrefs", "--help"],
    "import ncrefs": [PYTHON, "-c", "import ncrefs"],
    "import function_app": [PYTHON, "-c", "import function_app"],
}


def time_once(command: list[str], cwd: str) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, capture_output=True, check=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    print(f"{'command':32} {'median s':>9} {'worst s':>8}")
    with tempfile.TemporaryDirectory() as empty:  # no local.settings.json, as a user's folder
        for name, command in COMMANDS.items():
            cwd = str(ROOT) if name == "import function_app" else empty
            time_once(command, cwd)  # warm the OS file cache: the first start after install is slower
            times = [time_once(command, cwd) for _ in range(runs)]
            print(f"{name:32} {statistics.median(times):9.2f} {max(times):8.2f}")


if __name__ == "__main__":
    main()
