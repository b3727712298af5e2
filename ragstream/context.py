"""The application context: what a worker, the API and the LlamaParse poller share.

One per process: the settings, the database engine, the event codec and the
store of uploads. Stages
receive it with every batch; the API makes one at start-up and hands it to the
poller and the webhook.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from ragstream.schemas.codec import Codec
from ragstream.settings import Settings

if TYPE_CHECKING:
    from ragstream.blobstore import BlobStore


@dataclass
class StageContext:
    settings: Settings
    engine: Engine
    codec: Codec

    @cached_property
    def blobs(self) -> BlobStore:
        """Where uploads are kept (``blob_store``)."""
        from ragstream.blobstore import BlobStore

        return BlobStore(self.settings, self.engine)

    def topic(self, name: str) -> str:
        """``name`` with the deployment's topic prefix."""
        return self.settings.topic(name)
