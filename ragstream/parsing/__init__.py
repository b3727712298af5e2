"""Parsing: document bytes in, :class:`~ragstream.documents.ParsedDocument` out.

Pure work with no Kafka and no SQL. Untrusted input goes through
:func:`parse_document`, which runs :func:`parse_bytes` in a subprocess with a
wall-clock and a memory limit.

The names are resolved on first use: the sandbox child starts by importing
this package, and every millisecond of its start-up is paid per document.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ragstream.parsing.core import parse_bytes
    from ragstream.parsing.sandbox import parse_document
    from ragstream.parsing.sniff import sniff_content_type

__all__ = ["parse_bytes", "parse_document", "sniff_content_type"]

_HOMES = {
    "parse_bytes": "ragstream.parsing.core",
    "parse_document": "ragstream.parsing.sandbox",
    "sniff_content_type": "ragstream.parsing.sniff",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value
    return value
