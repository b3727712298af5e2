"""``ragstream sync``'s plan: what is new, possibly changed, unchanged and gone, from listings."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr

from ragstream.blobstore import parse_s3_uri, s3_client
from ragstream.errors import RagstreamError
from ragstream.settings import Settings
from ragstream.sync import DirectorySource, Found, Known, plan


def _known(key: str, size: int, stamp: str) -> Known:
    return Known(key, size, stamp, "0" * 64, uuid.uuid4(), f"file:///src/{key}")


def test_plan_sorts_objects_into_new_check_unchanged_and_gone() -> None:
    found = {
        "a.md": Found("a.md", 10, "1"),  # as recorded
        "b.md": Found("b.md", 11, "2"),  # size changed
        "c.md": Found("c.md", 12, "9"),  # only the mtime changed
        "new.md": Found("new.md", 5, "1"),
    }
    known = {
        "a.md": _known("a.md", 10, "1"),
        "b.md": _known("b.md", 10, "2"),
        "c.md": _known("c.md", 12, "3"),
        "gone.md": _known("gone.md", 1, "1"),
    }
    out = plan(found, known)
    assert [f.key for f in out.new] == ["new.md"]
    assert [(f.key, k.key) for f, k in out.check] == [("b.md", "b.md"), ("c.md", "c.md")]
    assert [k.key for k in out.unchanged] == ["a.md"]
    assert [k.key for k in out.gone] == ["gone.md"]


def test_a_rename_is_one_new_and_one_gone() -> None:
    out = plan({"new.md": Found("new.md", 3, "5")}, {"old.md": _known("old.md", 3, "5")})
    assert [f.key for f in out.new] == ["new.md"] and [k.key for k in out.gone] == ["old.md"]
    assert not out.check and not out.unchanged


def test_directory_listing_skips_hidden_files_and_keys_by_relative_path(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / ".git").mkdir()
    (tmp_path / "sub" / "x.md").write_text("x")
    (tmp_path / ".git" / "config").write_text("y")
    (tmp_path / ".hidden.md").write_text("z")
    (tmp_path / "top.txt").write_text("top")
    source = DirectorySource(tmp_path)
    listed = source.list()
    assert sorted(listed) == ["sub/x.md", "top.txt"]
    assert listed["top.txt"].size == 3
    assert source.external_id("sub/x.md") == f"{tmp_path.resolve().as_uri()}/sub/x.md"


def test_a_source_that_is_not_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RagstreamError, match="not a directory"):
        DirectorySource(tmp_path / "missing")


def test_s3_uris_split_into_bucket_and_key() -> None:
    assert parse_s3_uri("s3://bucket/a/b.md") == ("bucket", "a/b.md")
    assert parse_s3_uri("s3://bucket") == ("bucket", "")
    for bad in ("https://x/y", "s3:///key"):
        with pytest.raises(ValueError):
            parse_s3_uri(bad)


@pytest.mark.parametrize("style", ["path", "virtual"])
def test_the_s3_client_takes_endpoint_credentials_and_addressing_from_the_settings(
    style: str,
) -> None:
    settings = Settings(
        s3_endpoint_url="http://s3.example.test:9",
        s3_access_key_id="AKID",
        s3_secret_access_key=SecretStr("secret"),
        s3_addressing_style=style,
    )
    client = s3_client(settings)
    assert client.meta.endpoint_url == "http://s3.example.test:9"
    assert client.meta.config.s3["addressing_style"] == style
    assert client._request_signer._credentials.access_key == "AKID"
    url = client.generate_presigned_url("get_object", Params={"Bucket": "bkt", "Key": "k"})
    expected = (
        "http://bkt.s3.example.test:9/k" if style == "virtual" else "http://s3.example.test:9/bkt/k"
    )
    assert url.startswith(expected), url
