"""Reading ZIP-packaged documents (OOXML, OpenDocument, EPUB) without trusting them.

A ZIP can declare gigabytes in a few kilobytes, and its XML can expand entities
a billion times or point at ``file:///etc/passwd``. The directory is checked
before anything is inflated, every read is capped by bytes actually produced
(not by what a member declares), and XML is parsed with no DTD, no entity
expansion and no network.
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

from lxml import etree

from ragstream.errors import CorruptDocument

MiB = 1024 * 1024
MAX_MEMBERS = 10_000
MAX_TOTAL_UNCOMPRESSED = 256 * MiB
MAX_MEMBER_BYTES = 64 * MiB
MAX_COMPRESSION_RATIO = 100
# Small members may be very repetitive without being dangerous.
RATIO_CHECK_MIN_SIZE = 1 * MiB
_CHUNK = 64 * 1024


def xml_parser() -> etree.XMLParser:
    """No DTD loading, no entity expansion, no network, no huge-tree mode."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def parse_xml(data: bytes, what: str) -> Any:
    """An XML root element; a document type declaration is refused outright, since
    none of these formats needs one and it is where entity bombs live."""
    if b"<!ENTITY" in data:
        raise CorruptDocument(f"{what}: XML with entity declarations is refused")
    try:
        root = etree.fromstring(data, parser=xml_parser())
    except etree.LxmlError as exc:
        raise CorruptDocument(f"{what}: malformed XML ({exc})") from None
    if root is None:
        raise CorruptDocument(f"{what}: empty XML")
    return root


class SafeZip:
    """A checked archive; :meth:`read` returns at most ``MAX_MEMBER_BYTES`` per member."""

    def __init__(
        self,
        data: bytes,
        kind: str,
        *,
        max_members: int = MAX_MEMBERS,
        max_total: int = MAX_TOTAL_UNCOMPRESSED,
        max_member: int = MAX_MEMBER_BYTES,
        max_ratio: float = MAX_COMPRESSION_RATIO,
        ratio_min_size: int = RATIO_CHECK_MIN_SIZE,
    ) -> None:
        self.kind = kind
        self._max_member = max_member
        self._budget = max_total
        try:
            self._zip = zipfile.ZipFile(io.BytesIO(data))
            members = self._zip.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
            raise CorruptDocument(
                f"{kind} is corrupt or truncated: not a readable ZIP archive"
            ) from None
        if len(members) > max_members:
            raise CorruptDocument(f"{kind} is a zip bomb: {len(members)} archive members")
        total = sum(m.file_size for m in members)
        if total > max_total:
            raise CorruptDocument(
                f"{kind} is a zip bomb: {total / MiB:.0f} MiB uncompressed "
                f"(limit {max_total / MiB:.0f} MiB)"
            )
        for m in members:
            if m.file_size < ratio_min_size:
                continue
            ratio = m.file_size / max(m.compress_size, 1)
            if ratio > max_ratio:
                raise CorruptDocument(
                    f"{kind} is a zip bomb: {m.filename} expands {ratio:.0f}x "
                    f"(limit {max_ratio:.0f}x)"
                )
        self._names = {m.filename for m in members}

    def names(self) -> set[str]:
        return set(self._names)

    def __contains__(self, name: str) -> bool:
        return name in self._names

    def read(self, name: str) -> bytes:
        """Inflate one member, stopping at the cap whatever its header claims."""
        if name not in self._names:
            raise CorruptDocument(f"{self.kind} is corrupt: missing part {name}")
        limit = min(self._max_member, self._budget)
        out = bytearray()
        try:
            with self._zip.open(name) as stream:
                while chunk := stream.read(_CHUNK):
                    out += chunk
                    if len(out) > limit:
                        raise CorruptDocument(
                            f"{self.kind} is a zip bomb: {name} inflates past {limit / MiB:.0f} MiB"
                        )
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError) as exc:
            raise CorruptDocument(f"{self.kind} is corrupt or truncated: {exc}") from None
        self._budget -= len(out)
        return bytes(out)

    def xml(self, name: str) -> Any:
        return parse_xml(self.read(name), f"{self.kind} part {name}")


def local_name(element: Any) -> str:
    tag = element.tag
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1]


def text_of(element: Any) -> str:
    return "".join(t for t in element.itertext() if isinstance(t, str))
