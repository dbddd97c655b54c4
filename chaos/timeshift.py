"""What waiting would do, done at once, on the outbox table through the harness's own (fault-free) client.

A chaos run compresses hours into seconds. Three things in the table would otherwise make it wait:
- a lease left by a run that has ended (killed, or its release failed) lives until that run's deadline plus
  the runner's 30 s margin: ``expire_leases`` releases it, and only ever when no run of that kind is alive;
- the daily-quota ban lasts until midnight UTC+8 (the platform's quota resets then; newer versions store at
  most an hour and probe): ``lift_daily_quota`` lifts it, which is what an operator does once the quota was raised;
- a record retried after transient failures waits up to an hour (``retry_cap_s``): ``bring_backoffs_forward``
  makes the records still due now due, touching nothing but ``due_at``.

Each returns how much it changed, so the report can say how far time was bent. Short bans (seconds) are not
touched: the harness waits them out (``wait_for_bans``).
"""

from __future__ import annotations

import time
from typing import Any

from taobao_bridge.dynamo import from_item, to_item
from taobao_bridge.kinds import Kind
from taobao_bridge.outbox import DUE_INDEX, RecordState, RunControl
from taobao_bridge.sync import APP_BAN_SCOPE

__all__ = ["bring_backoffs_forward", "due_counts", "expire_leases", "lift_daily_quota", "wait_for_bans"]

_FAR_FUTURE_MS = 2**62


def _now_ms() -> int:
    return int(time.time() * 1000)


def expire_leases(client: Any, table: str, kinds: list[Kind]) -> int:
    """Release the leases of ``kinds``; the caller knows no run of those kinds is alive."""
    control = RunControl(table, client=client)
    released = 0
    for kind in kinds:
        item = client.get_item(TableName=table, Key=to_item({"pk": f"lease#{kind.value}"}), ConsistentRead=True)
        owner = from_item(item["Item"]).get("owner") if "Item" in item else None
        if owner:
            control.release_lease(kind.value, str(owner))
            released += 1
    return released


def lift_daily_quota(client: Any, table: str) -> bool:
    """Lift the app-wide ban the daily quota left (``APP_BAN_SCOPE``) as an operator would: with
    ``RunControl.lift_ban`` where the package has it, else by deleting the ban item. True if there was one."""
    control = RunControl(table, client=client)
    if control.ban_until(APP_BAN_SCOPE) is None:
        return False
    lift = getattr(control, "lift_ban", None)  # bridge_local/control_cli.py lift-ban, in newer versions
    if callable(lift):
        return bool(lift(APP_BAN_SCOPE))
    client.delete_item(TableName=table, Key=to_item({"pk": f"ban#{APP_BAN_SCOPE}"}))
    return True


def wait_for_bans(client: Any, table: str, limit_s: float = 10.0) -> float:
    """Sleep until the kinds' short bans are over (at most ``limit_s``); returns the seconds slept."""
    control = RunControl(table, client=client)
    ends = [until for until in (control.ban_until(kind.value) for kind in Kind) if until is not None]
    wait_s = min(limit_s, max(0.0, (max(ends, default=0) - _now_ms()) / 1000 + 0.05))
    if wait_s > 0:
        time.sleep(wait_s)
    return wait_s


def _due_keys(client: Any, table: str, kind: Kind, after_ms: int) -> list[tuple[str, int]]:
    """(pk, due_at) of the records of ``kind`` in the due index with ``due_at`` after ``after_ms``."""
    found: list[tuple[str, int]] = []
    request: dict[str, Any] = {
        "TableName": table,
        "IndexName": DUE_INDEX,
        "KeyConditionExpression": "due_kind = :kind AND due_at BETWEEN :after AND :far",
        "ExpressionAttributeValues": to_item({":kind": kind.value, ":after": after_ms, ":far": _FAR_FUTURE_MS}),
        "ProjectionExpression": "pk, due_at",
    }
    while True:
        page = client.query(**request)
        found += [(item["pk"]["S"], int(item["due_at"]["N"])) for item in page.get("Items", [])]
        if "LastEvaluatedKey" not in page:
            return found
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def due_counts(client: Any, table: str) -> dict[Kind, int]:
    """Records of each kind in the due index, due now or later."""
    return {kind: len(_due_keys(client, table, kind, 0)) for kind in Kind}


def bring_backoffs_forward(client: Any, table: str) -> int:
    """Make every record that is due later due now; returns how many moved. Conditional on the record being
    still due at the same ``due_at``, so nothing a run wrote meanwhile is overwritten."""
    now = _now_ms()
    moved = 0
    for kind in Kind:
        for pk, due_at in _due_keys(client, table, kind, now + 1):
            try:
                client.update_item(
                    TableName=table,
                    Key=to_item({"pk": pk}),
                    UpdateExpression="SET due_at = :now",
                    ConditionExpression="#state = :due AND due_at = :old",
                    ExpressionAttributeNames={"#state": "state"},
                    ExpressionAttributeValues=to_item({":now": now, ":due": RecordState.DUE.value, ":old": due_at}),
                )
                moved += 1
            except client.exceptions.ConditionalCheckFailedException:
                continue
    return moved
