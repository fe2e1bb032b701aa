"""Confine a parser process: memory and file-size limits, and no file or network access
beyond what Python needs to import its own code (Linux Landlock).

This is the second wall. The first (``shared/hdf5.py``) refuses files whose data lives
outside the blob before any data is read; if a check is ever missed, the HDF5 library in a
confined process still cannot open ``/proc/self/environ``, ``local.settings.json`` or any
other file, nor connect anywhere. Landlock needs no privileges (Linux 5.13+); on a kernel
without it the process runs unconfined and says so.
"""

from __future__ import annotations

import ctypes
import os
import resource
import sys
from pathlib import Path

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # the same on every architecture
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38
_O_PATH = getattr(os, "O_PATH", 0o10000000)

# Filesystem rights by ABI version: 1 has 13, 2 adds REFER, 3 TRUNCATE, 5 IOCTL_DEV.
_FS_RIGHTS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1}
_FS_ALL_RIGHTS_LATEST = (1 << 16) - 1
_EXECUTE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 2, 1 << 3
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def limit_resources(memory_bytes: int) -> None:
    """Address space (a runaway allocation fails with MemoryError), no core files, no file writes."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def readable_roots() -> list[Path]:
    """What a confined parser may read: the interpreter, its installed packages and ncrefs's core.

    Not the app's folder (``local.settings.json``), not ``/proc`` (``environ``), not ``/etc``,
    not the temporary directory.
    """
    roots = {Path(sys.base_prefix), Path(sys.prefix), Path(__file__).resolve().parents[1]}
    roots |= {Path(p) for p in sys.path if p and ("site-packages" in p or "dist-packages" in p)}
    roots |= {Path(p) for p in ("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib", "/etc/ld.so.cache")}
    return sorted(r for r in roots if r.exists())


def confine() -> str | None:
    """Apply Landlock to this process; returns None when confined, else why not."""
    libc = ctypes.CDLL(None, use_errno=True)
    abi = libc.syscall(_SYS_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION)
    if abi < 1:
        return f"this kernel has no Landlock ({os.strerror(ctypes.get_errno())})"
    fs_rights = _FS_RIGHTS_BY_ABI.get(abi, _FS_ALL_RIGHTS_LATEST)
    attr = _RulesetAttr(fs_rights, (_NET_BIND_TCP | _NET_CONNECT_TCP) if abi >= 4 else 0)
    ruleset = libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.sizeof(attr), 0)
    if ruleset < 0:
        return f"Landlock refused a ruleset ({os.strerror(ctypes.get_errno())})"
    try:
        for root in readable_roots():
            fd = os.open(root, _O_PATH | os.O_CLOEXEC)
            try:
                rights = _EXECUTE | _READ_FILE | (_READ_DIR if root.is_dir() else 0)
                rule = _PathBeneathAttr(rights, fd)
                if libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0) < 0:
                    return f"Landlock refused a rule for {root} ({os.strerror(ctypes.get_errno())})"
            finally:
                os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return f"no_new_privs could not be set ({os.strerror(ctypes.get_errno())})"
        if libc.syscall(_SYS_RESTRICT_SELF, ruleset, 0) < 0:
            return f"Landlock could not restrict the process ({os.strerror(ctypes.get_errno())})"
    finally:
        os.close(ruleset)
    return None
