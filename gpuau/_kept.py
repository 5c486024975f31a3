"""Values derived from a model object once and kept exactly as long as it lives.

The stages derive arrays from their models on first use (device copies, per-scale weights, index maps) and reuse them
on every frame. Cached in a table keyed by the model, they outlived it: an Analyzer built and dropped per job left
its models' ~80 MB behind each time. :func:`kept_with` keys them by the model's identity and drops them with it.
"""
from __future__ import annotations

import weakref
from typing import Callable, Hashable, TypeVar

T = TypeVar("T")

_KEPT: dict = {}  # id(owner) -> {key: value}, emptied by a finalizer of the owner


def kept_with(owner: object, key: Hashable, make: Callable[[], T]) -> T:
    """``make()``, computed once per ``owner`` and ``key`` and kept while ``owner`` lives.

    ``owner`` is told apart by identity (it need not be hashable, as frozen dataclasses of arrays are not) and must
    accept weak references; ``key`` names the value among the owner's (callers start it with their function); the
    value must not refer to ``owner`` (it would keep it alive). Threads may race to make a value: each gets one, and
    one is kept."""
    values = _KEPT.get(id(owner))
    if values is None:
        weakref.finalize(owner, _KEPT.pop, id(owner), None)  # first: an owner without weak references raises here
        values = _KEPT[id(owner)] = {}
    try:
        return values[key]
    except KeyError:
        return values.setdefault(key, make())
