"""The main job on Azurite, end to end, as a new user would run it.

1. start Azurite on a free loopback port;
2. write sample NetCDF files (NetCDF4 with groups and CF time, NetCDF3) into ``raw-netcdf``;
3. run ``ncrefs backfill``: every file gets its reference in ``refs``, reading headers only;
4. open one reference with xarray through adlfs, print it, and check it against the original.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr
from azure.storage.blob import BlobServiceClient

import ncrefs as ncrefs_api
from scripts.azurite import start_azurite
from shared.cli import main as ncrefs
from tests import samples

SAMPLES = {
    "climate/2050/tas_daily.nc": samples.nc4_chunked_cf_time,
    "climate/2050/noise_large_chunks.nc": samples.nc4_large_chunks,
    "stations/features.nc": samples.nc4_features,
    "forecast/groups.nc": samples.nc4_groups,
    "legacy/classic.nc": samples.nc3_classic,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="leave Azurite running and print its connection string")
    args = parser.parse_args(argv)

    azurite = start_azurite()
    print(f"Azurite listening on 127.0.0.1:{azurite.port} (data in {azurite.location})")
    os.environ["DATA_STORAGE"] = azurite.connection_string
    try:
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        service.create_container("raw-netcdf")
        with tempfile.TemporaryDirectory() as tmp:
            originals = {}
            for name, make in SAMPLES.items():
                folder = Path(tmp) / name.replace("/", "_")
                folder.mkdir()
                path = make(folder)
                with open(path, "rb") as handle:
                    service.get_blob_client("raw-netcdf", name).upload_blob(handle, overwrite=True)
                originals[name] = path
                print(f"uploaded raw-netcdf/{name} ({path.stat().st_size:,} bytes)")

            print("\n$ ncrefs backfill")
            code = ncrefs(["backfill", "--workers", "2"])
            print("\n$ ncrefs scan raw-netcdf/climate/2050/noise_large_chunks.nc")
            ncrefs(["scan", "raw-netcdf/climate/2050/noise_large_chunks.nc"])

            print("\nreferences in refs:")
            for blob in service.get_container_client("refs").list_blobs():
                print(f"  refs/{blob.name} ({blob.size:,} bytes)")

            print("\nOpening refs/climate/2050/tas_daily.json with xarray through adlfs:")
            dataset = ncrefs_api.open_dataset("abfs://refs/climate/2050/tas_daily.json",
                                              connection_string=azurite.connection_string)
            print(dataset)
            with xr.open_dataset(originals["climate/2050/tas_daily.nc"]) as original:
                xr.testing.assert_identical(dataset.load(), original.load())
            print(f"\nEvery value read through the reference equals the original file "
                  f"(mean tas {float(np.nanmean(dataset.tas)):.2f} K).")
        if args.keep:
            print(f"\nAzurite keeps running (pid {azurite.process.pid}, data in {azurite.location}). To use it:\n"
                  f"  export DATA_STORAGE='{azurite.connection_string}'\n"
                  f"To stop it and remove its data:\n"
                  f"  kill {azurite.process.pid} && rm -rf '{azurite.location}'")
            azurite.process = None  # hand it over to the user
        return code
    finally:
        if not args.keep:
            azurite.cleanup()


if __name__ == "__main__":
    sys.exit(main())  # ncrefs detaches adlfs' loopless finalizers at exit itself
