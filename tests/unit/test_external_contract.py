"""The edges of the public upload contract, without services: which URLs the allow-list
lets through, and how S3 event notifications are read."""

from __future__ import annotations

import pytest

from ragstream import notifications
from ragstream.blobstore import allowed_url, s3_failure
from ragstream.schemas.events import DocumentUploaded, utc_now
from ragstream.settings import Settings

ALLOW = Settings(external_url_allowlist="https://docs.example.com/public/, http://127.0.0.1:8080/")


@pytest.mark.parametrize(
    ("uri", "allowed"),
    [
        ("https://docs.example.com/public/a.pdf", True),
        ("https://docs.example.com/public/sub/b%20c.pdf", True),
        ("http://127.0.0.1:8080/anything", True),
        ("https://docs.example.com/private/a.pdf", False),
        ("https://docs.example.com/public/../private/a.pdf", False),
        ("https://docs.example.com/public/%2e%2e/private/a.pdf", False),
        ("https://docs.example.com.evil.net/public/a.pdf", False),
        ("https://docs.example.com@evil.net/public/a.pdf", False),
        ("https://user:pw@docs.example.com/public/a.pdf", False),
        ("http://docs.example.com/public/a.pdf", False),  # another scheme
        ("http://127.0.0.1:8081/anything", False),  # another port
        ("http://127.0.0.1/anything", False),
        ("https://docs.example.com:notaport/public/a.pdf", False),
    ],
)
def test_the_allow_list_compares_scheme_host_port_and_path(uri: str, allowed: bool) -> None:
    assert allowed_url(uri, ALLOW) is allowed


def test_an_empty_allow_list_allows_nothing() -> None:
    assert not allowed_url("https://docs.example.com/public/a.pdf", Settings())


def test_an_event_from_another_service_has_both_ids_null_and_names_a_whole_document() -> None:
    base = {"tenant": "t", "blob_uri": "s3://b/k", "blob_sha256": None, "size_bytes": None}
    event = DocumentUploaded(document_id=None, job_id=None, uploaded_at=utc_now(), **base)
    assert event.external
    with pytest.raises(ValueError, match="both set"):
        DocumentUploaded(document_id=None, job_id="x", uploaded_at=utc_now(), **base)
    with pytest.raises(ValueError, match="whole document"):
        DocumentUploaded(document_id=None, job_id=None, uploaded_at=utc_now(), part_index=0, **base)


def _record(name: str, key: str, **extra: object) -> dict[str, object]:
    return {
        "eventName": name,
        "eventTime": "2026-12-06T10:15:30.123Z",
        "s3": {"bucket": {"name": "docs"}, "object": {"key": key, **extra}},
    }


def test_notification_records_become_uploads_and_removals() -> None:
    read = notifications.read(
        {
            "Records": [
                _record("ObjectCreated:Put", "a+b/c%C3%A9.pdf", size=12, sequencer="01"),
                _record("ObjectCreated:CompleteMultipartUpload", "big.pdf", size=-1),
                _record("ObjectRemoved:DeleteMarkerCreated", "old.md"),
                _record("ObjectRestore:Completed", "cold.md"),
            ]
        }
    )
    first, second = read.created
    assert first.uri == "s3://docs/a b/cé.pdf" and first.size == 12
    assert first.at.isoformat() == "2026-12-06T10:15:30.123000+00:00"
    assert second.size is None  # not a size: the object's own is used
    assert [r.uri for r in read.removed] == ["s3://docs/old.md"]
    assert read.ignored == 1

    def put(sequencer: str) -> str:
        record = _record("ObjectCreated:Put", "a+b/c%C3%A9.pdf", size=12, sequencer=sequencer)
        return notifications.read({"Records": [record]}).created[0].event_id

    assert put("01") == first.event_id  # a redelivery is the same event
    assert put("02") != first.event_id


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ([], "not a JSON object"),
        ({"Message": "{}"}, 'no "Records"'),
        ({"Records": ["x"]}, "Records[0] is not an object"),
        ({"Records": [{"eventName": "ObjectCreated:Put"}]}, 'no "eventName" or "s3"'),
        ({"Records": [_record("ObjectCreated:Put", "")]}, "s3.object.key is missing"),
    ],
)
def test_what_is_not_a_notification_is_refused_with_the_reason(
    payload: object, reason: str
) -> None:
    with pytest.raises(notifications.BadNotification) as raised:
        notifications.read(payload)
    assert reason in raised.value.message


def test_the_test_event_is_ignored() -> None:
    assert notifications.read({"Service": "Amazon S3", "Event": "s3:TestEvent"}).ignored == 1


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("NoSuchKey", 404, "absent"),
        ("404", 404, "absent"),  # HEAD answers carry the status as the code
        ("", 404, "absent"),
        ("NoSuchBucket", 404, "refused"),  # the whole bucket: not one object's absence
        ("AccessDenied", 403, "refused"),
        ("InvalidRequest", 400, "refused"),
        ("SlowDown", 503, "unavailable"),
        ("InternalError", 500, "unavailable"),
        ("TooManyRequests", 429, "unavailable"),
        ("", 0, "unavailable"),  # no answer worth the name: retried
    ],
)
def test_s3_errors_are_classified_in_one_place(code: str, status: int, kind: str) -> None:
    from botocore.exceptions import ClientError

    error = ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "GetObject",
    )
    found, reason = s3_failure(error)
    assert found == kind
    assert (code or str(status)) in reason
