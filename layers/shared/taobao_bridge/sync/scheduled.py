"""Assembly of a scheduled sync run from the deployment's settings: the production outbox, run control and TOP
client behind the runner's ports."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

from aws_lambda_powertools import Logger

from ..errors import StorageError
from ..kinds import Kind
from ..outbox import OutboxRecord, OutboxStore, RunControl, Settlement, Synced
from ..settings import Settings, load_settings
from ..top_client import TopClient
from .config import SyncConfig
from .report import RunReport
from .runner import SyncRunner

__all__ = ["CountingOutbox", "build_runner", "run_scheduled"]

logger = Logger(child=True)


class CountingOutbox:
    """The store behind the runner's ``SyncOutbox`` port, counting synced records for the operators' status
    (``RunControl.add_synced``: one ``UpdateItem`` per settle call, never one per record). A count that cannot be
    written is logged and lost rather than failing a settle that was written; a settle repeated after a storage
    failure may count its records twice. Everything else is the store's."""

    def __init__(self, store: OutboxStore, control: RunControl) -> None:
        self.store = store
        self.control = control

    def due(self, kind: Kind, *, now_ms: int, limit: int, held: Collection[OutboxRecord] = ()) -> list[OutboxRecord]:
        return self.store.due(kind, now_ms=now_ms, limit=limit, held=held)

    def settle(self, settlements: Sequence[Settlement]) -> None:
        self.store.settle(settlements)
        synced: dict[Kind, int] = {}
        for settlement in settlements:
            if isinstance(settlement, Synced):
                synced[settlement.record.kind] = synced.get(settlement.record.kind, 0) + 1
        for kind, count in synced.items():
            try:
                self.control.add_synced(kind.value, count, keep_days=self.store.retention_days)
            except StorageError as exc:
                logger.warning("synced count not written", extra={"kind": kind.value, "error": str(exc)})

    def __getattr__(self, name: str) -> Any:  # what else the store offers the runner
        return getattr(self.store, name)


def build_runner(kind: Kind, settings: Settings) -> SyncRunner:
    """The runner for ``kind`` with the deployment's table, platform credentials and sync settings."""
    control = RunControl.from_settings(settings)
    return SyncRunner(
        kind,
        CountingOutbox(OutboxStore.from_settings(settings), control),
        control,
        TopClient.from_settings(settings),
        session_key=settings.top_session_key,
        config=SyncConfig.from_settings(settings),
    )


def run_scheduled(kind: Kind, remaining_ms: Callable[[], int], settings: Settings | None = None) -> RunReport:
    """What each scheduled function does: one run for ``kind`` with the deployment's settings."""
    return build_runner(kind, settings or load_settings()).run(remaining_ms)
