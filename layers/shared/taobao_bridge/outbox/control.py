"""Run control: the items in the outbox table that steer sync runs rather than hold records
(docs/ARCHITECTURE.md, "Outbound flow").

- a lease ``lease#<name>`` (owner, until): one sync run per kind at a time, taken with a conditional write;
- a ban ``ban#<scope>`` (until, reason): the platform rate-limited the app or one API, stop sending until then;
- a pause ``pause#<name>`` (``Pause``): the seller session was refused; stays until cleared.

Every time here is epoch milliseconds. These items have no ``record_id``, so the record store never reads them
as records, and no ``due_kind``, so they never enter the due index.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..clock import Clock, system_clock
from ..dynamo import describe_error, dynamodb_client, error_code, from_item, storage_errors, to_item, truncate_utf8
from ..errors import StorageError

__all__ = ["Pause", "RunControl"]

_MAX_REASON_BYTES = 2 * 1024
_TIDY_AFTER_S = 86_400  # leases and bans carry a TTL this long after they end, so the table tidies itself


@dataclass(frozen=True)
class Pause:
    """A flow stopped because the platform refused the seller session: why, which key it refused (a short
    fingerprint, never the key) and since when (epoch ms)."""

    reason: str
    fingerprint: str
    since_ms: int


class RunControl:
    """Leases, bans and pauses in the outbox table. Thread-compatible; the client is shared."""

    def __init__(self, table_name: str, *, client: Any | None = None, clock: Clock = system_clock) -> None:
        self.table_name = table_name
        self.clock = clock
        self._client = client

    @classmethod
    def from_settings(cls, settings: Any) -> RunControl:
        """Run control in the table named by ``OUTBOX_TABLE``."""
        return cls(settings.require("outbox_table"))

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = dynamodb_client()
        return self._client

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

    def _get(self, pk: str, operation: str) -> dict[str, Any] | None:
        with storage_errors(operation):
            found = self.client.get_item(TableName=self.table_name, Key=to_item({"pk": pk}), ConsistentRead=True)
        item = found.get("Item")
        return from_item(dict(item)) if item else None


def _epoch_ms(value: Any) -> int:
    """A stored moment (epoch ms, or ISO 8601 text written by hand) as epoch ms; unreadable counts as long ago,
    so a damaged pause is probed again rather than kept forever."""
    if isinstance(value, int | float):
        return int(value)
    try:
        return int(datetime.fromisoformat(str(value)).timestamp() * 1000)
    except ValueError:
        return 0
