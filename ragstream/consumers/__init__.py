"""Stage workers: the runner and one module per stage."""

from __future__ import annotations

import importlib

from ragstream import topology
from ragstream.consumers.base import Stage


def stage_class(name: str) -> type[Stage]:
    """The stage called ``name``, as its spec in the topology names it (imported lazily)."""
    spec = topology.STAGES.get(name)
    if spec is None:
        raise ValueError(f"unknown stage {name!r}; one of {', '.join(topology.STAGE_NAMES)}")
    module, _, attribute = spec.implementation.partition(":")
    found = getattr(importlib.import_module(module), attribute)
    if not (isinstance(found, type) and issubclass(found, Stage)):
        raise TypeError(f"{spec.implementation} is not a Stage")
    if found.name != name:
        raise TypeError(f"{spec.implementation} is the {found.name!r} stage, not {name!r}")
    return found
