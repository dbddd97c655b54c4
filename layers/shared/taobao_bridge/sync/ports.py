"""What the sync runner needs from the world, as typed interfaces: the outbox (due records in, settlements
out), run control (lease, bans, pauses) and a TOP caller. ``OutboxStore``, ``RunControl`` and ``TopClient`` are
the production implementations; tests give the runner in-memory fakes (tests/fakes.py), so every decision the
runner makes is tested without DynamoDB or HTTP."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol

from ..kinds import Kind
from ..outbox.control import OperatorPause, Pause
from ..outbox.records import OutboxRecord, Settlement
from ..top_client import TopResponse

__all__ = ["SyncControl", "SyncOutbox", "TopCaller"]


class SyncOutbox(Protocol):
    """Due records and their settlements (``outbox.OutboxStore``)."""

    def due(self, kind: Kind, *, now_ms: int, limit: int, held: Collection[OutboxRecord] = ()) -> list[OutboxRecord]:
        """Up to ``limit`` records of ``kind`` due at ``now_ms``, oldest first; never a settled one, never one of
        ``held`` (read earlier by this run and not settled yet). A record due before the last held one may be
        left for a later run."""
        ...

    def settle(self, settlements: Sequence[Settlement]) -> None:
        """Write the outcome of each attempt; repeating the same settlements is harmless. Called from one
        thread at a time, possibly while ``due`` runs on another."""
        ...


class SyncControl(Protocol):
    """Leases, bans and pauses (``outbox.RunControl``). Times are epoch milliseconds."""

    def acquire_lease(self, name: str, owner: str, *, until_ms: int, now_ms: int) -> bool: ...

    def release_lease(self, name: str, owner: str) -> None: ...

    def ban_until(self, scope: str) -> int | None: ...

    def set_ban(self, scope: str, *, until_ms: int, reason: str) -> None: ...

    def pause(self, name: str) -> Pause | None: ...

    def set_pause(self, name: str, *, reason: str, fingerprint: str) -> None: ...

    def clear_pause(self, name: str) -> bool: ...

    def operator_pause(self, name: str) -> OperatorPause | None: ...


class TopCaller(Protocol):
    """One TOP API call with the client's own retries (``top_client.TopClient``).

    Returns the accepted answer; raises the ``errors`` tree: ``TopRateLimited``, ``TopSessionExpired``,
    ``TopPermanentError`` and ``UnreadableAnswer`` at once, ``TopError``/``TopTransportError``
    (``UnknownOutcome``) once its retries are spent. Times are ``time.monotonic()`` values: no attempt runs past
    ``deadline``, no retry starts after ``start_by``. ``retry_unknown=False``: never re-send an attempt that may
    have been applied. ``timeout_s``: this call's attempt timeout.
    """

    def call(
        self,
        method: str,
        api_params: Mapping[str, Any],
        *,
        session: str | None = None,
        deadline: float | None = None,
        start_by: float | None = None,
        retry_unknown: bool = True,
        timeout_s: float | None = None,
    ) -> TopResponse: ...
