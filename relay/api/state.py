"""What the API process opens at start-up and its handlers share."""

from __future__ import annotations

from dataclasses import dataclass

from arq.connections import ArqRedis

from config import Settings
from relay.store.store import Store


@dataclass
class AppState:
    settings: Settings
    store: Store
    arq: ArqRedis
