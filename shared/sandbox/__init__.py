"""Parsing untrusted files in confined, limited, warm worker processes (see ``pool.py``)."""

from shared.sandbox.pool import Limits, Parsed, ParserPool, close_pools, parser_pool

__all__ = ["Limits", "Parsed", "ParserPool", "close_pools", "parser_pool"]
