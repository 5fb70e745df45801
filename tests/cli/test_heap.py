"""``freeze_startup_heap`` (cli/_common.py), which ``relaybus worker`` and ``relaybus gateway`` call once they
serve: the startup heap leaves the cyclic collector's passes, which still run for what comes after."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from relaybus.cli._common import freeze_startup_heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


@pytest.mark.usefixtures("restored_gc")
def test_what_is_alive_is_frozen_the_young_threshold_raised_and_later_cycles_still_collected() -> None:
    frozen = freeze_startup_heap()
    assert frozen > 1000  # this test process's modules, at least
    assert gc.get_freeze_count() == frozen
    assert gc.get_threshold()[0] == 10_000
    assert gc.isenabled()
    later = Node()
    gone = weakref.ref(later)
    del later
    gc.collect()
    assert gone() is None
