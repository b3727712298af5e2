"""The Standard Webhooks signature scheme (https://www.standardwebhooks.com).

``webhook-signature`` holds one or more ``v1,<base64 HMAC-SHA256>`` entries,
separated by spaces, computed over ``<webhook-id>.<webhook-timestamp>.<body>``
with the shared secret. A secret written ``whsec_<base64>`` is the base64 of
the key; any other secret is used as its UTF-8 bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
_PREFIX = "whsec_"


class WebhookRejected(Exception):
    """The request is not a valid signed webhook; ``status`` is the HTTP answer."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class VerifiedWebhook:
    id: str
    timestamp: int


def secret_key(secret: str) -> bytes:
    if secret.startswith(_PREFIX):
        try:
            return base64.b64decode(secret[len(_PREFIX) :], validate=True)
        except binascii.Error:
            raise ValueError("webhook secret 'whsec_...' is not valid base64") from None
    return secret.encode()


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one message."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: int,
    now: float | None = None,
) -> VerifiedWebhook:
    """Check the headers against ``body``; raise :class:`WebhookRejected` unless all hold.

    Missing or malformed headers answer 400; a timestamp outside the tolerance
    or no matching signature answers 401. Signatures are compared in constant time.
    """
    webhook_id = headers.get(ID_HEADER)
    raw_timestamp = headers.get(TIMESTAMP_HEADER)
    signatures = headers.get(SIGNATURE_HEADER)
    if not webhook_id or not raw_timestamp or not signatures:
        raise WebhookRejected("missing webhook-id, webhook-timestamp or webhook-signature", 400)
    if len(webhook_id) > 256:
        raise WebhookRejected("webhook-id is longer than 256 characters", 400)
    try:
        timestamp = int(raw_timestamp)
    except ValueError:
        raise WebhookRejected("webhook-timestamp is not an integer", 400) from None
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_s:
        raise WebhookRejected("webhook-timestamp is outside the tolerance", 401)
    expected = sign(secret, webhook_id, timestamp, body).encode()
    matched = False
    for candidate in signatures.split():
        # Compare every entry, so the time taken does not say which one matched.
        matched |= hmac.compare_digest(candidate.encode(), expected)
    if not matched:
        raise WebhookRejected("no valid signature", 401)
    return VerifiedWebhook(webhook_id, timestamp)
