"""Quiet a known adlfs shutdown error (fsspec/adlfs#495).

adlfs registers ``weakref.finalize`` callbacks that close its client through the file
system's event loop. Asynchronous instances (the ones zarr and fsspec's reference file
system create) have no loop of their own, so at interpreter exit every such callback raises
"RuntimeError: Loop is not running" and prints a traceback after an otherwise clean run.
Their clients die with the process anyway; this detaches just those callbacks.
"""

from __future__ import annotations

import weakref


def detach_loopless_adlfs_finalizers() -> int:
    from fsspec.asyn import sync

    detached = 0
    for finalizer in list(weakref.finalize._registry):  # noqa: SLF001 - no public registry
        info = weakref.finalize._registry.get(finalizer)  # noqa: SLF001
        if info is not None and info.func is sync and info.args and info.args[0] is None:
            finalizer.detach()
            detached += 1
    return detached
