"""The application context: what a worker, the API and the LlamaParse poller share.

One per process: the settings, the database engine and the event codec. Stages
receive it with every batch; the API makes one at start-up and hands it to the
poller and the webhook.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from ragstream.schemas.codec import Codec
from ragstream.settings import Settings


@dataclass
class StageContext:
    settings: Settings
    engine: Engine
    codec: Codec

    def topic(self, name: str) -> str:
        """``name`` with the deployment's topic prefix."""
        return self.settings.topic(name)
