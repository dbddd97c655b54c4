"""Run control: the items in the outbox table that steer sync runs rather than hold records
(docs/ARCHITECTURE.md, "Outbound flow").

- a lease ``lease#<name>`` (owner, until): one sync run per kind at a time, taken with a conditional write;
- a ban ``ban#<scope>`` (until, reason): the platform rate-limited the app or one API, stop sending until then;
- a pause ``pause#<name>`` (``Pause``): the seller session was refused; stays until cleared;
- an operator pause ``pause#operator#<name>`` (``OperatorPause``): an operator stopped the flow; stays until resumed;
- a counter ``count#<name>#<yyyy-mm-dd>``: records of a kind synced that day (UTC), kept as long as the records
  themselves (``OUTBOX_RETENTION_DAYS``), so their sum over that window counts the synced records still stored.

Every time here is epoch milliseconds. These items have no ``record_id``, so the record store never reads them
as records, and no ``due_kind``, so they never enter the due index.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..dynamo import (
    MAX_BATCH_GET_KEYS,
    chunks,
    describe_error,
    error_code,
    from_item,
    storage_errors,
    to_item,
    truncate_utf8,
)
from ..errors import StorageError
from .table import OutboxTable

__all__ = ["Ban", "Lease", "OperatorPause", "Pause", "RunControl"]

_MAX_REASON_BYTES = 2 * 1024
_TIDY_AFTER_S = 86_400  # leases and bans carry a TTL this long after they end, so the table tidies itself


@dataclass(frozen=True)
class Pause:
    """A flow stopped because the platform refused the seller session: why, which key it refused (a short
    fingerprint, never the key) and since when (epoch ms)."""

    reason: str
    fingerprint: str
    since_ms: int


@dataclass(frozen=True)
class OperatorPause:
    """A flow an operator stopped (``set_operator_pause``): why, and since when (epoch ms)."""

    reason: str
    since_ms: int


@dataclass(frozen=True)
class Ban:
    """A stored rate-limit ban that is still running: until when (epoch ms) and the platform's reason."""

    until_ms: int
    reason: str


@dataclass(frozen=True)
class Lease:
    """A lease held now: by which run (an opaque id) and until when (epoch ms)."""

    owner: str
    until_ms: int


class RunControl(OutboxTable):
    """Leases, bans and pauses in the outbox table. Thread-compatible; the client is shared."""

    # ------------------------------------------------------------------------------------------------ leases
    def acquire_lease(self, name: str, owner: str, *, until_ms: int, now_ms: int) -> bool:
        """Take (or extend, or take over an expired) lease ``name`` for ``owner`` until ``until_ms``.
        False when another owner holds it."""
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=to_item(
                    {
                        "pk": f"lease#{name}",
                        "owner": owner,
                        "until": until_ms,
                        "expires_at": until_ms // 1000 + _TIDY_AFTER_S,
                    }
                ),
                ConditionExpression="attribute_not_exists(pk) OR #until < :now OR #owner = :owner",
                ExpressionAttributeNames={"#until": "until", "#owner": "owner"},
                ExpressionAttributeValues=to_item({":now": now_ms, ":owner": owner}),
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise StorageError(f"acquiring lease {name} (PutItem) failed: {describe_error(exc)}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"acquiring lease {name} (PutItem) failed: {exc}") from exc
        return True

    def release_lease(self, name: str, owner: str) -> None:
        """Give lease ``name`` up if ``owner`` still holds it; someone else's lease is left alone."""
        try:
            self.client.delete_item(
                TableName=self.table_name,
                Key=to_item({"pk": f"lease#{name}"}),
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues=to_item({":owner": owner}),
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return
            raise StorageError(f"releasing lease {name} (DeleteItem) failed: {describe_error(exc)}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"releasing lease {name} (DeleteItem) failed: {exc}") from exc

    # -------------------------------------------------------------------------------------------------- bans
    def ban_until(self, scope: str) -> int | None:
        """When the platform's ban on ``scope`` ends (epoch ms), or None if there is none now."""
        item = self._get(f"ban#{scope}", f"reading ban {scope} (GetItem)")
        if item is None:
            return None
        until = item.get("until")
        now_ms = int(self.clock().timestamp() * 1000)
        return until if isinstance(until, int) and until > now_ms else None

    def set_ban(self, scope: str, *, until_ms: int, reason: str) -> None:
        """Record a ban on ``scope`` until ``until_ms``. Never shortens a longer ban stored meanwhile."""
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=to_item({"pk": f"ban#{scope}"}),
                UpdateExpression="SET #until = :until, reason = :reason, expires_at = :expires",
                ConditionExpression="attribute_not_exists(pk) OR #until < :until",
                ExpressionAttributeNames={"#until": "until"},
                ExpressionAttributeValues=to_item(
                    {
                        ":until": until_ms,
                        ":reason": truncate_utf8(reason, _MAX_REASON_BYTES),
                        ":expires": until_ms // 1000 + _TIDY_AFTER_S,
                    }
                ),
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return  # a longer ban is already stored
            raise StorageError(f"setting ban {scope} (UpdateItem) failed: {describe_error(exc)}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"setting ban {scope} (UpdateItem) failed: {exc}") from exc

    def lift_ban(self, scope: str) -> bool:
        """Remove the stored ban on ``scope`` (an operator decision: the next run calls the platform again and
        a platform still banning us stores a new one). True if there was one."""
        with storage_errors(f"lifting ban {scope} (DeleteItem)"):
            answer = self.client.delete_item(
                TableName=self.table_name, Key=to_item({"pk": f"ban#{scope}"}), ReturnValues="ALL_OLD"
            )
        return bool(answer.get("Attributes"))

    # ------------------------------------------------------------------------------------------------ pauses
    def pause(self, name: str) -> Pause | None:
        """Pause ``name``, or None when not paused."""
        item = self._get(f"pause#{name}", f"reading pause {name} (GetItem)")
        if item is None:
            return None
        return Pause(
            reason=str(item.get("reason") or ""),
            fingerprint=str(item.get("fingerprint") or ""),
            since_ms=_epoch_ms(item.get("since")),
        )

    def set_pause(self, name: str, *, reason: str, fingerprint: str) -> None:
        """Pause ``name`` (since now). Stays until ``clear_pause``: pauses do not expire."""
        with storage_errors(f"setting pause {name} (PutItem)"):
            self.client.put_item(
                TableName=self.table_name,
                Item=to_item(
                    {
                        "pk": f"pause#{name}",
                        "reason": truncate_utf8(reason, _MAX_REASON_BYTES),
                        "fingerprint": fingerprint,
                        "since": int(self.clock().timestamp() * 1000),
                    }
                ),
            )

    def clear_pause(self, name: str) -> bool:
        """Lift pause ``name``; the next run probes the session again. True if there was one."""
        with storage_errors(f"clearing pause {name} (DeleteItem)"):
            answer = self.client.delete_item(
                TableName=self.table_name, Key=to_item({"pk": f"pause#{name}"}), ReturnValues="ALL_OLD"
            )
        return bool(answer.get("Attributes"))

    def ban(self, scope: str) -> Ban | None:
        """The ban on ``scope`` with its reason, or None if there is none now."""
        item = self._get(f"ban#{scope}", f"reading ban {scope} (GetItem)")
        until = None if item is None else item.get("until")
        if item is None or not isinstance(until, int) or until <= self._now_ms():
            return None
        return Ban(until_ms=until, reason=str(item.get("reason") or ""))

    def lease(self, name: str) -> Lease | None:
        """Who holds lease ``name`` now, or None (never taken, released or expired)."""
        item = self._get(f"lease#{name}", f"reading lease {name} (GetItem)")
        until = None if item is None else item.get("until")
        if item is None or not isinstance(until, int) or until < self._now_ms():
            return None
        return Lease(owner=str(item.get("owner") or ""), until_ms=until)

    # --------------------------------------------------------------------------------------- operator pauses
    def operator_pause(self, name: str) -> OperatorPause | None:
        """The operator's pause of flow ``name``, or None. Separate from the session pause: nothing but an
        operator sets or lifts it."""
        key = _operator_pause_key(name)
        item = self._get(key, f"reading operator pause {name} (GetItem)")
        if item is None:
            return None
        return OperatorPause(reason=str(item.get("reason") or ""), since_ms=_epoch_ms(item.get("since")))

    def set_operator_pause(self, name: str, *, reason: str) -> None:
        """Stop flow ``name`` until ``clear_operator_pause``; pausing again keeps the first ``since``."""
        with storage_errors(f"setting operator pause {name} (UpdateItem)"):
            self.client.update_item(
                TableName=self.table_name,
                Key=to_item({"pk": _operator_pause_key(name)}),
                UpdateExpression="SET reason = :reason, since = if_not_exists(since, :now)",
                ExpressionAttributeValues=to_item(
                    {":reason": truncate_utf8(reason, _MAX_REASON_BYTES), ":now": self._now_ms()}
                ),
            )

    def clear_operator_pause(self, name: str) -> bool:
        """Resume flow ``name``. True if it was paused."""
        with storage_errors(f"clearing operator pause {name} (DeleteItem)"):
            answer = self.client.delete_item(
                TableName=self.table_name, Key=to_item({"pk": _operator_pause_key(name)}), ReturnValues="ALL_OLD"
            )
        return bool(answer.get("Attributes"))

    # ---------------------------------------------------------------------------------------------- counters
    def add_synced(self, name: str, count: int, *, keep_days: int) -> None:
        """Count ``count`` records of ``name`` synced now: one ``ADD`` to today's counter, which expires
        ``keep_days`` (the records' retention) after the day ends. Not idempotent: a settle repeated after a
        storage failure counts its records again, so the counts are an operator's estimate, never a ledger."""
        if count <= 0:
            return
        now = self.clock().astimezone(UTC)
        day_end = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
        with storage_errors(f"counting synced {name} records (UpdateItem)"):
            self.client.update_item(
                TableName=self.table_name,
                Key=to_item({"pk": _counter_key(name, now)}),
                UpdateExpression="ADD synced :count SET expires_at = :expires",
                ExpressionAttributeValues=to_item(
                    {":count": count, ":expires": int((day_end + timedelta(days=keep_days)).timestamp())}
                ),
            )

    def synced_counts(self, names: list[str], *, days: int) -> dict[str, int]:
        """Records of each of ``names`` synced in the last ``days`` days and today: one ``BatchGetItem`` per 100
        day counters."""
        today = self.clock().astimezone(UTC)
        keys = {_counter_key(name, today - timedelta(days=back)): name for name in names for back in range(days + 1)}
        totals = dict.fromkeys(names, 0)
        for chunk in chunks(list(keys), MAX_BATCH_GET_KEYS):
            for item in self.get_items(chunk, "reading synced counters (BatchGetItem)").values():
                values = from_item(item)
                totals[keys[values["pk"]]] += int(values.get("synced") or 0)
        return totals

    def _now_ms(self) -> int:
        return int(self.clock().timestamp() * 1000)

    def _get(self, pk: str, operation: str) -> dict[str, Any] | None:
        with storage_errors(operation):
            found = self.client.get_item(TableName=self.table_name, Key=to_item({"pk": pk}), ConsistentRead=True)
        item = found.get("Item")
        return from_item(dict(item)) if item else None


def _operator_pause_key(name: str) -> str:
    # Under pause#, so the sync functions (allowed to read pause#*) see it without another grant.
    return "pause#operator#" + name


def _counter_key(name: str, moment: datetime) -> str:
    return f"count#{name}#{moment:%Y-%m-%d}"


def _epoch_ms(value: Any) -> int:
    """A stored moment (epoch ms, or ISO 8601 text written by hand) as epoch ms; unreadable counts as long ago,
    so a damaged pause is probed again rather than kept forever."""
    if isinstance(value, int | float):
        return int(value)
    try:
        return int(datetime.fromisoformat(str(value)).timestamp() * 1000)
    except ValueError:
        return 0
