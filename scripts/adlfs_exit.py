"""Kept for the demo and tests: the finalizer fix lives in the core (``shared/opener.py``)."""

from shared.opener import detach_loopless_adlfs_finalizers

__all__ = ["detach_loopless_adlfs_finalizers"]
