"""Assembly of a scheduled sync run from the deployment's settings: the production outbox, run control and TOP
client behind the runner's ports."""

from __future__ import annotations

from collections.abc import Callable

from ..kinds import Kind
from ..outbox import OutboxStore, RunControl
from ..settings import Settings, load_settings
from ..top_client import TopClient
from .config import SyncConfig
from .report import RunReport
from .runner import SyncRunner

__all__ = ["build_runner", "run_scheduled"]


def build_runner(kind: Kind, settings: Settings) -> SyncRunner:
    """The runner for ``kind`` with the deployment's table, platform credentials and sync settings."""
    return SyncRunner(
        kind,
        OutboxStore.from_settings(settings),
        RunControl.from_settings(settings),
        TopClient.from_settings(settings),
        session_key=settings.top_session_key,
        config=SyncConfig.from_settings(settings),
    )


def run_scheduled(kind: Kind, remaining_ms: Callable[[], int], settings: Settings | None = None) -> RunReport:
    """What each scheduled function does: one run for ``kind`` with the deployment's settings."""
    return build_runner(kind, settings or load_settings()).run(remaining_ms)
