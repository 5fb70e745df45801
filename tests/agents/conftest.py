"""Fixtures shared by the worker tests: a MemoryBus and a reply queue that keeps every result it gets."""

from .test_worker import bus, results

__all__ = ["bus", "results"]
