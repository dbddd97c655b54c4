"""Injected failures: the ``Faults`` dataclass, the checks on every value set, and loading a faults file.

Nothing here knows about HTTP or the APIs: the gateway reads and consumes these values under its lock.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

REFUSE_STYLES = ("error_response", "result")

# Success answers in a shape the seeds do not show (docs/PROTOCOL.md §2, "Answers may not look like the seeds").
# Each is built from the answer the API would normally give (``apis.ODD_ANSWERS``); all but the two refusals are
# sent AFTER the records were accepted, as a real platform would have applied the call.
ODD_SHAPES = (
    "data_object",  # result.data is an object (the writeoff seed types it Boolean)
    "no_result",  # no result; top-level data and piggyback, like tmall.car.local.service.order.refund.sync
    "result_string",  # result is the JSON text of the usual result, inside a string
    "empty",  # the inner object holds nothing but request_id
    "list",  # the inner object is a JSON list holding the usual answer
    "success_text_true",  # result.success is the text "true"
    "order_id_text",  # result.data.order_id is the text "abc"
    "order_id_float",  # result.data.order_id is a floating-point number (the id rounded through a double)
    "order_id_negative",  # result.data.order_id is negative
    "order_id_object",  # result.data.order_id is an object holding the id
    "success_text_false",  # refusal, not processed: result.success is the text "false", with the error code
    "refusal_top_level",  # refusal, not processed: success false and the error code at the top, no result
)


@dataclass
class Faults:
    """Injected failures; all off by default. ``*_next`` counters are consumed one per call that passed the
    signature check and reached that fault (a bad-signature call never consumes one).

    The answer faults act where a call would be accepted (after session, parameter, service faults and
    refusals): ``not_json_next`` and ``truncated_next`` send a broken body (records accepted first unless
    ``bad_body_processes`` is off); ``odd_answer`` and ``odd_answer_next`` send a success envelope whose inner
    object has a shape from ``ODD_SHAPES`` (records accepted first, except for the two refusal shapes). The
    recorded call says which fault it met (``RecordedCall.faults``) and whether it was ``processed``."""

    rate_limit_next: int = 0  # the next K calls each trigger a ban of ban_seconds (code 7)
    ban_seconds: int = 0
    daily_quota_exceeded: bool = False  # code 7 accesscontrol.limited-by-app-access-count until midnight UTC+8
    isp_error_next: int = 0  # code 15 isp.remote-service-error, not processed
    service_unavailable_next: int = 0  # code 10 isp.service-unavailable, not processed
    http_500_next: int = 0  # HTTP 502 with an HTML body, not processed
    timeout_next: int = 0  # sleep timeout_sleep_s before answering
    timeout_sleep_s: float = 5.0
    timeout_processes: bool = True  # processed (records accepted) before the sleep: the "unknown outcome" case
    slow_ms: int = 0  # every /router/rest answer delayed by this much
    refuse: dict[str, list[Any]] = field(default_factory=dict)  # method -> record-key values refused
    # method -> {field: values}: a record whose top-level field holds one of the values is refused, as the platform
    # refuses a record for its content (e.g. a store that is not the seller's); a corrected record passes.
    refuse_where: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    refuse_style: str = "error_response"  # or "result" (business refusal in a success envelope)
    session_expired: bool = False  # code 27 invalid-sessionkey for APIs that need a session
    # Answers of calls that reach acceptance (after refusals): a bad body wins over an odd shape.
    odd_answer: dict[str, str] = field(default_factory=dict)  # method -> shape (ODD_SHAPES) for every such call
    odd_answer_next: int = 0  # the next K such calls (other methods) get odd shapes, each API's own in turn
    not_json_next: int = 0  # HTTP 200 whose body is not JSON (an HTML error page)
    truncated_next: int = 0  # HTTP 200 with the success document cut short
    bad_body_processes: bool = True  # records accepted before a not-JSON or truncated body is sent

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Faults:
        """Validated construction from JSON-like data; raises ``ValueError`` naming the bad key."""
        if not isinstance(data, Mapping):
            raise ValueError("faults must be a JSON object")
        faults = cls()
        faults.update(**dict(data))
        return faults

    def update(self, **changes: Any) -> None:
        """Validate every change first, then apply them all (no half-applied update)."""
        checked = {name: _check_fault_value(name, value) for name, value in changes.items()}
        for name, value in checked.items():
            setattr(self, name, value)


_FAULT_FIELDS = {f.name: f for f in dataclasses.fields(Faults)}


def _check_fault_value(name: str, value: Any) -> Any:
    if name not in _FAULT_FIELDS:
        raise ValueError(f"unknown fault {name!r}; known: {', '.join(sorted(_FAULT_FIELDS))}")
    default = getattr(Faults(), name)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"fault {name} must be a boolean")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"fault {name} must be a non-negative integer")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"fault {name} must be a non-negative number")
        return float(value)
    if name == "refuse":
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, (list, tuple)) for k, v in value.items()
        ):
            raise ValueError("fault refuse must map a method name to a list of record-key values")
        return {k: list(v) for k, v in value.items()}
    if name == "refuse_where":
        if not isinstance(value, Mapping) or not all(
            isinstance(method, str)
            and isinstance(rule, Mapping)
            and all(isinstance(key, str) and isinstance(values, (list, tuple)) for key, values in rule.items())
            for method, rule in value.items()
        ):
            raise ValueError("fault refuse_where must map a method name to {field: [values]}")
        return {method: {key: list(values) for key, values in rule.items()} for method, rule in value.items()}
    if name == "odd_answer":
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) and v in ODD_SHAPES for k, v in value.items()
        ):
            raise ValueError(f"fault odd_answer must map a method name to one of {', '.join(ODD_SHAPES)}")
        return dict(value)
    if name == "refuse_style":
        if value not in REFUSE_STYLES:
            raise ValueError(f"fault refuse_style must be one of {', '.join(REFUSE_STYLES)}")
        return value
    raise ValueError(f"fault {name} cannot be set")  # pragma: no cover - every field is handled above


def load_faults_file(path: str) -> Faults:
    """The faults in a JSON file (``--faults`` / ``TOP_SANDBOX_FAULTS``); ``OSError`` or ``ValueError``."""
    with open(path, encoding="utf-8") as handle:
        return Faults.from_dict(json.load(handle))
