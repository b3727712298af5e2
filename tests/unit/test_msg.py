"""Outlook .msg: real messages from Apache POI and Tika (tests/unit/data/msg/README.md),
and, for what those do not hold, compound files written here by a minimal writer."""

from __future__ import annotations

import struct
from email.message import EmailMessage
from pathlib import Path
from typing import Union

import pytest

from ragstream.errors import CorruptDocument, UnsupportedDocument
from ragstream.parsing import parse_bytes, parse_document, sniff_content_type
from ragstream.parsing.msg import MAX_DEPTH, MAX_PARTS, MAX_RTF_BYTES, decompress_rtf
from ragstream.parsing.sniff import EML, MSG

SAMPLES = Path(__file__).parent / "data" / "msg"
TIKA = "apache-tika__testMSG.msg"
CYRILLIC = "apache-poi__cyrillic_message.msg"
ATTACHMENTS = "apache-poi__attachment_msg_pdf.msg"


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def flat(text: str) -> str:
    return " ".join(text.split())


# A compound file (MS-CFB, version 3): storages are dicts, streams bytes.
Tree = dict[str, Union[bytes, "Tree"]]
_END, _FREE, _FAT_SECTOR, _NONE = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD, 0xFFFFFFFF
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def compound_file(root: Tree) -> bytes:
    """The smallest writer olefile reads: streams under 4 KiB in the mini stream, the
    others in sectors of their own, each storage's entries as a balanced tree."""
    entries: list[dict[str, object]] = []

    def balanced(ids: list[int]) -> int:
        if not ids:
            return _NONE
        middle = len(ids) // 2
        entries[ids[middle]]["left"] = balanced(ids[:middle])
        entries[ids[middle]]["right"] = balanced(ids[middle + 1 :])
        return ids[middle]

    def add(name: str, node: bytes | Tree) -> int:
        index = len(entries)
        entries.append({"name": name, "node": node, "left": _NONE, "right": _NONE})
        entries[index]["child"] = (
            balanced([add(k, v) for k, v in node.items()]) if isinstance(node, dict) else _NONE
        )
        return index

    add("Root Entry", root)
    sectors: list[bytes] = []
    fat: list[int] = []

    def put(blob: bytes) -> int:
        if not blob:
            return _END
        start, count = len(sectors), -(-len(blob) // 512)
        sectors.extend(blob[i * 512 : (i + 1) * 512].ljust(512, b"\0") for i in range(count))
        fat.extend([*range(start + 1, start + count), _END])
        return start

    mini, minifat = bytearray(), []
    for entry in entries:
        data = entry["node"]
        if isinstance(data, bytes) and 0 < len(data) < 4096:
            entry["start"], count = len(minifat), -(-len(data) // 64)
            minifat.extend([*range(len(minifat) + 1, len(minifat) + count), _END])
            mini += data.ljust(count * 64, b"\0")
    minifat_sectors = -(-len(minifat) // 128)
    padded = minifat + [_FREE] * (minifat_sectors * 128 - len(minifat))
    minifat_start = put(struct.pack(f"<{len(padded)}I", *padded))
    entries[0]["start"], entries[0]["size"] = put(bytes(mini)), len(mini)
    for entry in entries:
        data = entry["node"]
        if isinstance(data, bytes):
            entry["size"] = len(data)
            if len(data) >= 4096:
                entry["start"] = put(data)
            elif not data:
                entry["start"] = _END
    directory = b"".join(_directory_entry(i, entry) for i, entry in enumerate(entries))
    directory_start = put(directory.ljust(-(-len(directory) // 512) * 512, b"\0"))
    fat_sectors = -(-len(sectors) // 127)  # each FAT sector maps itself too
    fat_start = len(sectors)
    fat += [_FAT_SECTOR] * fat_sectors
    fat += [_FREE] * (fat_sectors * 128 - len(fat))
    sectors.extend(struct.pack("<128I", *fat[i * 128 : (i + 1) * 128]) for i in range(fat_sectors))
    header = struct.pack(
        "<8s16sHHHHH6sIIIIIIIII",
        _OLE_MAGIC,
        bytes(16),
        0x3E,
        3,
        0xFFFE,
        9,
        6,
        bytes(6),
        0,
        fat_sectors,
        directory_start,
        0,
        4096,
        minifat_start,
        minifat_sectors,
        _END,
        0,
    )
    difat = [*range(fat_start, fat_start + fat_sectors)] + [_FREE] * (109 - fat_sectors)
    return header + struct.pack("<109I", *difat) + b"".join(sectors)


def _directory_entry(index: int, entry: dict[str, object]) -> bytes:
    name = str(entry["name"]).encode("utf-16-le") + b"\0\0"
    node = entry["node"]
    kind = 5 if index == 0 else 1 if isinstance(node, dict) else 2
    start, size = entry.get("start", 0), entry.get("size", 0)
    return struct.pack(
        "<64sHBBIII16sIQQIQ",
        name,
        len(name),
        kind,
        1,
        entry["left"],
        entry["right"],
        entry["child"],
        bytes(16),
        0,
        0,
        0,
        start,
        size,
    )


def message(subject: str, *, embedded: bool = False, attachments: tuple[Tree, ...] = ()) -> Tree:
    """A message's storage: the fixed-length properties (none here) after a header of 32
    bytes, or 24 in an attached message, and the subject."""
    tree: Tree = {
        "__properties_version1.0": bytes(24 if embedded else 32),
        "__substg1.0_0037001F": subject.encode("utf-16-le"),
    }
    for number, attachment in enumerate(attachments):
        tree[f"__attach_version1.0_#{number:08X}"] = attachment
    return tree


def attached_message(inner: Tree) -> Tree:
    return {"__properties_version1.0": bytes(8), "__substg1.0_3701000D": inner}


def attached_file(name: str, data: bytes) -> Tree:
    return {
        "__properties_version1.0": bytes(8),
        "__substg1.0_3707001F": name.encode("utf-16-le"),
        "__substg1.0_37010102": data,
    }


def nested(levels: int) -> bytes:
    """A message with a message attached, ``levels`` deep."""
    inner = message(f"Level {levels}", embedded=True)
    for level in range(levels - 1, 0, -1):
        inner = message(f"Level {level}", embedded=True, attachments=(attached_message(inner),))
    return compound_file(message("Top", attachments=(attached_message(inner),)))


# The real messages


def test_message_headers_and_body() -> None:
    data = sample(TIKA)
    assert sniff_content_type(data, None) == MSG
    doc = parse_bytes(data, TIKA)
    assert (doc.content_type, doc.parser) == (MSG, "msg")
    assert doc.parser_version.startswith("olefile/")
    assert doc.blocks[0].kind == "heading" and doc.blocks[0].text == "MIME registry use cases"
    assert doc.metadata == {"title": "MIME registry use cases"}
    assert doc.blocks[1].text.split("\n") == [
        "From: Jukka Zitting <jukka.zitting@gmail.com>",
        "To: tika-dev@lucene.apache.org",
        "Date: Thu, 29 Jan 2009 19:16:40 +0000",
    ]
    assert doc.blocks[2].text == "Hi,"
    assert (
        "As discussed, I've been working on making the type detection code more modular "
        "and extensible." in flat(doc.text)
    )
    assert doc.blocks[-1].text == "Jukka Zitting"
    assert all(b.heading_path == ("MIME registry use cases",) for b in doc.blocks[1:])


def test_8_bit_strings_are_read_in_the_message_code_page() -> None:
    doc = parse_bytes(sample(CYRILLIC))
    subject = 'Автоматический ответ подсистемы обмена данными ФГУП "Почта России".'
    assert doc.blocks[0].text == subject
    assert "To: Свиридов Дмитрий Владимирович" in doc.blocks[1].text
    assert "From: no-reply@niips.ru" in doc.blocks[1].text
    assert "Сообщение сгенерировано автоматически, не следует отвечать на него." in doc.text


def test_attached_message_and_pdf_are_parsed_under_their_headings() -> None:
    doc = parse_bytes(sample(ATTACHMENTS))
    assert doc.blocks[0].text == "test email"
    assert "Test email with 1 msg attachment, 1 pdf" in doc.text
    headings = [(b.text, b.level) for b in doc.blocks if b.kind == "heading"]
    assert headings == [
        ("test email", 1),
        ("Attachment: Test Attachment", 2),
        ("Test Attachment", 3),
        ("Attachment: smbprn.00009008.KdcPjl.pdf", 2),
        ("Nick Booth", 5),  # the PDF's own heading, moved below the attachment's
    ]
    blah = next(b for b in doc.blocks if b.text == "Blah blah blah")
    assert blah.heading_path == ("test email", "Attachment: Test Attachment", "Test Attachment")
    inner_header = next(b for b in doc.blocks if b.heading_path == blah.heading_path)
    assert inner_header.text.split("\n") == [
        "From: Nick Booth",
        "To: Nick Booth",
        "Date: Thu, 17 Jun 2010 23:52:19 +0000",  # two minutes before the message's own
    ]
    pdf_heading = "Attachment: smbprn.00009008.KdcPjl.pdf"
    pdf = [b for b in doc.blocks if b.heading_path[1:2] == (pdf_heading,)]
    assert pdf and pdf[0].page == 1
    assert "From: Nick Booth Sent: Friday, 18 June 2010 9:52 AM" in flat(
        "\n".join(b.text for b in pdf)
    )


def test_parsed_inside_the_confined_sandbox() -> None:
    data = sample(CYRILLIC)
    document = parse_document(data, filename="reply.msg", timeout_s=60, memory_mb=512)
    assert document.parser == "msg"
    assert document.text == parse_bytes(data).text


def test_a_message_attached_to_an_email_is_parsed() -> None:
    email = EmailMessage()
    email["Subject"] = "Fwd: use cases"
    email["From"] = "ana@example.com"
    email["To"] = "bo@example.com"
    email.set_content("See the message below.\n")
    email.add_attachment(
        sample(TIKA), maintype="application", subtype="vnd.ms-outlook", filename="fwd.msg"
    )
    data = email.as_bytes()
    assert sniff_content_type(data, None) == EML
    doc = parse_bytes(data)
    headings = [b.text for b in doc.blocks if b.kind == "heading"]
    assert headings == ["Fwd: use cases", "Attachment: fwd.msg", "MIME registry use cases"]
    assert "From: Jukka Zitting <jukka.zitting@gmail.com>" in doc.text


def test_rtf_body_is_read_when_there_is_no_plain_one() -> None:
    """Outlook may keep only the compressed RTF rendering: with the plain body's stream
    renamed away, the text comes from the RTF one, decompressed."""
    plain = "__substg1.0_1000001E".encode("utf-16-le")
    data = sample(TIKA)
    assert data.count(plain) == 1
    doc = parse_bytes(data.replace(plain, "__substg1.0_7000001E".encode("utf-16-le")))
    assert "making the type detection code more modular and extensible" in flat(doc.text)
    assert "rtf1" not in doc.text and "Courier" not in doc.text


# Messages written here


def test_html_body_when_there_is_no_plain_one() -> None:
    html = b"<html><head><meta charset=windows-1252></head><body><p>Caf\xe9 at noon</p></body>"
    tree = message("Lunch")
    tree["__substg1.0_10130102"] = html
    assert parse_bytes(compound_file(tree)).text == "Lunch\n\nCaf\u00e9 at noon"
    # Stored as UTF-16 text, the HTML's own charset no longer applies.
    tree = message("Lunch")
    tree["__substg1.0_1013001F"] = html.decode("cp1252").encode("utf-16-le")
    assert parse_bytes(compound_file(tree)).text == "Lunch\n\nCaf\u00e9 at noon"


def test_uncompressed_rtf_body_and_the_rtf_size_cap() -> None:
    rtf = rb"{\rtf1\ansi Minutes of the meeting.\par}"
    tree = message("Minutes")
    header = struct.pack("<IIII", len(rtf) + 12, len(rtf), 0x414C454D, 0)  # "MELA": stored as is
    tree["__substg1.0_10090102"] = header + rtf
    assert parse_bytes(compound_file(tree)).text == "Minutes\n\nMinutes of the meeting."
    bomb = struct.pack("<IIII", 12, MAX_RTF_BYTES + 1, 0x75465A4C, 0)  # "LZFu", 64 MiB + 1
    with pytest.raises(CorruptDocument, match="RTF body is larger than 64 MiB"):
        decompress_rtf(bomb)


def test_an_attachment_we_cannot_read_does_not_spoil_the_message() -> None:
    tree = message(
        "Files",
        attachments=(
            attached_file("tool.exe", b"MZ\x90\x00" + bytes(600)),
            attached_file("broken.pdf", b"%PDF-1.7\n1 0 obj garbage"),
            attached_file("notes.txt", b"The notes say hello."),
        ),
    )
    doc = parse_bytes(compound_file(tree))
    texts = [b.text for b in doc.blocks]
    assert texts == ["Files", "Attachment: notes.txt", "The notes say hello."]


def test_attached_messages_are_nested_at_most_the_email_depth() -> None:
    doc = parse_bytes(nested(MAX_DEPTH))
    assert [b.text for b in doc.blocks if not b.text.startswith("Attachment")] == [
        "Top",
        "Level 1",
        "Level 2",
        "Level 3",
    ]
    too_deep = f"MSG attachments are nested deeper than {MAX_DEPTH}"
    with pytest.raises(CorruptDocument, match=too_deep):
        parse_bytes(nested(MAX_DEPTH + 1))


def test_too_many_attachments() -> None:
    empty = {"__properties_version1.0": bytes(8)}
    data = compound_file(message("Many", attachments=(empty,) * (MAX_PARTS + 1)))
    with pytest.raises(CorruptDocument, match=f"MSG has more than {MAX_PARTS} attachments"):
        parse_bytes(data)


# Hostile and broken files


def test_truncated_message_is_corrupt() -> None:
    data = sample(ATTACHMENTS)
    with pytest.raises(CorruptDocument, match=r"^MSG is corrupt or truncated: "):
        parse_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptDocument, match=r"^MSG is corrupt or truncated: "):
        parse_document(data[: len(data) // 2], filename=None, timeout_s=60, memory_mb=512)


def test_stream_larger_than_the_file_is_refused_before_it_is_read() -> None:
    """A directory entry may claim any size; one past what the file holds is not read."""
    data = bytearray(sample(TIKA))
    at = data.index("__substg1.0_1000001E".encode("utf-16-le"))
    assert at % 128 == 0  # the name opens its 128-byte directory entry
    struct.pack_into("<Q", data, at + 0x78, 2**31)
    with pytest.raises(CorruptDocument, match="its streams add up to more than the file"):
        parse_bytes(bytes(data))


def test_header_sector_counts_are_held_to_the_file_size() -> None:
    data = bytearray(sample(TIKA))
    struct.pack_into("<I", data, 0x40, 0xFFFFFFF0)  # mini FAT sectors
    with pytest.raises(CorruptDocument, match="its mini FAT has more sectors than the file"):
        parse_bytes(bytes(data))


def test_an_unknown_compound_file_is_still_refused() -> None:
    data = compound_file({"Contents": b"another program's data"})
    with pytest.raises(UnsupportedDocument, match="no Word, Excel, PowerPoint or Outlook document"):
        parse_bytes(data)
