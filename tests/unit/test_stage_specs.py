"""Each stage's implementation is named by its spec in the topology: no registry to forget."""

from __future__ import annotations

import pytest

from ragstream import topology
from ragstream.consumers import stage_class
from ragstream.consumers.base import Stage


@pytest.mark.parametrize("name", topology.STAGE_NAMES)
def test_every_spec_names_its_stage(name: str) -> None:
    found = stage_class(name)
    assert issubclass(found, Stage) and found.name == name
    spec = topology.STAGES[name]
    assert spec.implementation == f"{found.__module__}:{found.__name__}"


def test_an_unknown_stage_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=", ".join(topology.STAGE_NAMES)):
        stage_class("bogus")
