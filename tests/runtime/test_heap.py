"""The collector settings a Medic process runs with once started."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from medic.runtime import heap


@pytest.fixture
def settled() -> Iterator[None]:
    thresholds = gc.get_threshold()
    heap.settle()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


class Node:
    other: object = None


@pytest.mark.usefixtures("settled")
def test_start_up_is_frozen_and_collections_are_rare() -> None:
    assert gc.get_freeze_count() > 10_000  # modules, classes, what start-up built
    assert gc.get_threshold() == heap.THRESHOLDS


@pytest.mark.usefixtures("settled")
def test_cyclic_garbage_made_later_is_still_collected_without_asking() -> None:
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    kept = [[] for _ in range(2 * heap.THRESHOLDS[0])]  # allocations past the threshold
    assert gone() is None
    assert len(kept) == 2 * heap.THRESHOLDS[0]
