"""ncrefs core: kerchunk references for NetCDF/HDF5 blobs, reading only their headers.

Nothing in this package imports ``azure.functions``: the Functions app, the CLI and the
tests all drive the same pipeline.
"""

__version__ = "0.1.0"
