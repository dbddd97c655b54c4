"""Operations on the outbound flow, as the operators' routes serve them (functions/operations, README "Operating
records"): records listed by state, made due again one by one or in bulk, every flow's status (counts per state,
pauses, bans, leases), bans lifted, flows paused and resumed. Request checking lives here, so the handler is wiring.

Every rejection is ``InvalidParameter`` naming the parameter and the rule; unknown kinds, scopes and records are
``intake.NotFound``; a record in a state that cannot be retried is ``outbox.NotRetryable``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .errors import BridgeError
from .intake import NotFound, public_view, spec_for_path
from .jsonutil import JSONRefused, loads_strict
from .kinds import KINDS, Kind
from .outbox import (
    InvalidCursor,
    OutboxRecord,
    RecordOperations,
    RecordState,
    RunControl,
)
from .outbox.operations import LISTABLE_STATES, MAX_PAGE

__all__ = [
    "APP_SCOPE",
    "BAN_SCOPES",
    "DEFAULT_PAGE",
    "InvalidParameter",
    "Operations",
    "operator_view",
]

APP_SCOPE = "app"  # the app-wide ban the daily quota stores (sync.APP_BAN_SCOPE)
BAN_SCOPES = (APP_SCOPE, *(kind.value for kind in Kind))
DEFAULT_PAGE = 100
_RETRYABLE = (RecordState.DEAD, RecordState.UNCONFIRMED)
_MAX_REASON_CHARS = 500


class InvalidParameter(BridgeError):
    """Raised when a query parameter or body field breaks a rule; ``parameter`` names it."""

    def __init__(self, parameter: str, rule: str) -> None:
        self.parameter = parameter
        self.rule = rule
        super().__init__(f"{parameter}: {rule}")


def operator_view(record: OutboxRecord) -> dict[str, Any]:
    """``intake.public_view`` (never the payload) plus what an operator needs to decide: the platform's last answer
    (for unconfirmed records, what nobody could read) and how often the record was replayed."""
    answer: Any = record.platform_answer
    if answer is not None:
        try:
            answer = json.loads(answer)
        except ValueError:
            pass  # kept as text: an answer that was not JSON, or was cut at its size limit
    return {**public_view(record), "platform_answer": answer, "replays": record.replays}


def _iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _state(value: Any, allowed: tuple[RecordState, ...], parameter: str = "state") -> RecordState:
    names = [state.value for state in allowed]
    if not isinstance(value, str) or value not in names:
        raise InvalidParameter(parameter, f"one of {', '.join(names)}")
    return RecordState(value)


def _limit(value: Any, default: int, *, text: bool) -> int:
    """``limit`` from a query string (``text``: digits) or a JSON body (a whole number)."""
    if value is None:
        return default
    number = value
    if text:
        number = int(value) if value.isascii() and value.isdigit() and len(value) <= 6 else None
    if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= MAX_PAGE:
        raise InvalidParameter("limit", f"a whole number from 1 to {MAX_PAGE}")
    return number


def _flow(name: str) -> Kind:
    try:
        return Kind(name)
    except ValueError:
        known = ", ".join(kind.value for kind in Kind)
        raise NotFound(f"no such flow: {name!r} (known: {known})") from None


def _options(body: bytes | str | None, allowed: set[str]) -> dict[str, Any]:
    """A JSON object body (empty: no options); a key outside ``allowed`` is refused, naming it."""
    if not body:
        return {}
    try:
        options = loads_strict(body)
    except (JSONRefused, ValueError) as exc:
        raise InvalidParameter("body", f"a JSON object ({exc})") from None
    if not isinstance(options, dict):
        raise InvalidParameter("body", "a JSON object")
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise InvalidParameter(unknown[0], f"not a known field (known: {', '.join(sorted(allowed))})")
    return options


class Operations:
    """What the operators' routes do, over the outbox table."""

    def __init__(self, records: RecordOperations, control: RunControl, *, retention_days: int) -> None:
        self.records = records
        self.control = control
        self.retention_days = retention_days

    @classmethod
    def from_settings(cls, settings: Any) -> Operations:
        """Operations on ``OUTBOX_TABLE``; synced counts over ``OUTBOX_RETENTION_DAYS``."""
        return cls(
            RecordOperations.from_settings(settings),
            RunControl.from_settings(settings),
            retention_days=settings.outbox_retention_days,
        )

    # ---------------------------------------------------------------------------------------------- records
    def list_records(self, segment: str, query: Mapping[str, str] | None) -> dict[str, Any]:
        """``GET /v1/{kind}?state=&after=&limit=``: a page of records in a state, oldest first."""
        spec = spec_for_path(segment)
        query = dict(query or {})
        unknown = sorted(set(query) - {"state", "after", "limit"})
        if unknown:
            raise InvalidParameter(unknown[0], "not a known parameter (known: state, after, limit)")
        state = _state(query.get("state"), LISTABLE_STATES)
        limit = _limit(query.get("limit"), DEFAULT_PAGE, text=True)
        try:
            page = self.records.list(spec.kind, state, after=query.get("after"), limit=limit)
        except InvalidCursor as exc:
            raise InvalidParameter("after", f"{exc}; pass back the 'next' of the previous page") from None
        return {
            "kind": spec.path,
            "state": state.value,
            "records": [operator_view(record) for record in page.records],
            "next": page.next,
            "has_more": page.has_more,
        }

    def retry_record(self, segment: str, record_id: str) -> dict[str, Any]:
        """``POST /v1/{kind}/{id}/retry``: one dead or unconfirmed record due again now."""
        spec = spec_for_path(segment)
        record = self.records.retry(spec.kind, record_id)
        if record is None:
            raise NotFound(f"no {spec.path} record with id {record_id!r}")
        return {"id": record.record_id, "status": "retried", "state": record.state.value}

    def retry_records(self, segment: str, body: bytes | str | None) -> dict[str, Any]:
        """``POST /v1/{kind}/retry`` with ``{"state", "dry_run", "limit"}``: a state's records due again."""
        spec = spec_for_path(segment)
        options = _options(body, {"state", "dry_run", "limit"})
        state = _state(options.get("state"), _RETRYABLE)
        dry_run = options.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise InvalidParameter("dry_run", "true or false")
        limit = _limit(options.get("limit"), MAX_PAGE, text=False)
        done = self.records.retry_state(spec.kind, state, limit=limit, dry_run=dry_run)
        return {
            "state": state.value,
            "dry_run": dry_run,
            "matched": done.matched,
            "retried": done.retried,
            "ids": done.ids,
            "has_more": done.has_more,
        }

    # ----------------------------------------------------------------------------------------------- status
    def status(self) -> dict[str, Any]:
        """``GET /v1/ops/status``: per flow, records per state (index counts and the synced counters), the
        oldest due record's age, pauses, ban and lease; and the app-wide ban. No Scan."""
        now_ms = int(self.records.clock().timestamp() * 1000)
        synced = self.control.synced_counts([kind.value for kind in Kind], days=self.retention_days)
        kinds: dict[str, Any] = {}
        for kind in KINDS:
            counts = self.records.counts(kind)
            oldest = counts.oldest_due_at
            session = self.control.pause(kind.value)
            operator = self.control.operator_pause(kind.value)
            lease = self.control.lease(kind.value)
            kinds[kind.value] = {
                "due": counts.due,
                "due_now": counts.due_now,
                "dead": counts.dead,
                "unconfirmed": counts.unconfirmed,
                "synced": synced[kind.value],
                "oldest_due_age_s": None if oldest is None else max(0.0, (now_ms - oldest) / 1000),
                "session_pause": None
                if session is None
                else {"reason": session.reason, "fingerprint": session.fingerprint, "since": _iso(session.since_ms)},
                "operator_pause": None
                if operator is None
                else {"reason": operator.reason, "since": _iso(operator.since_ms)},
                "ban": self._ban(kind.value),
                "lease": None if lease is None else {"owner": lease.owner, "until": _iso(lease.until_ms)},
            }
        return {"kinds": kinds, "app_ban": self._ban(APP_SCOPE)}

    def _ban(self, scope: str) -> dict[str, Any] | None:
        ban = self.control.ban(scope)
        return None if ban is None else {"until": _iso(ban.until_ms), "reason": ban.reason}

    # ------------------------------------------------------------------------------------ bans and pauses
    def lift_ban(self, scope: str) -> dict[str, Any]:
        """``POST /v1/ops/bans/{scope}/lift``: the next run calls the platform again (and stores a new ban if the
        platform still refuses)."""
        if scope not in BAN_SCOPES:
            raise NotFound(f"no such ban scope: {scope!r} (known: {', '.join(BAN_SCOPES)})")
        return {"scope": scope, "lifted": self.control.lift_ban(scope)}

    def pause_flow(self, name: str, body: bytes | str | None) -> dict[str, Any]:
        """``POST /v1/ops/flows/{kind}/pause`` with ``{"reason"}``: its runs end at once until resumed."""
        kind = _flow(name)
        reason = _options(body, {"reason"}).get("reason")
        if not isinstance(reason, str) or not reason.strip() or len(reason) > _MAX_REASON_CHARS:
            raise InvalidParameter("reason", f"a non-empty text of at most {_MAX_REASON_CHARS} characters")
        self.control.set_operator_pause(kind.value, reason=reason.strip())
        return {"kind": kind.value, "paused": True}

    def resume_flow(self, name: str) -> dict[str, Any]:
        """``POST /v1/ops/flows/{kind}/resume``: lifts the operator's pause (not a session pause)."""
        kind = _flow(name)
        return {"kind": kind.value, "resumed": self.control.clear_operator_pause(kind.value)}

    def clear_session_pause(self, name: str) -> dict[str, Any]:
        """``POST /v1/ops/flows/{kind}/clear-session-pause``: the next run probes the seller session again."""
        kind = _flow(name)
        return {"kind": kind.value, "cleared": self.control.clear_pause(kind.value)}
