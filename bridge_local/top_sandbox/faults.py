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


@dataclass
class Faults:
    """Injected failures; all off by default. ``*_next`` counters are consumed one per call that passed the
    signature check and reached that fault (a bad-signature call never consumes one)."""

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
    refuse_style: str = "error_response"  # or "result" (business refusal in a success envelope)
    session_expired: bool = False  # code 27 invalid-sessionkey for APIs that need a session

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
    if name == "refuse_style":
        if value not in REFUSE_STYLES:
            raise ValueError(f"fault refuse_style must be one of {', '.join(REFUSE_STYLES)}")
        return value
    raise ValueError(f"fault {name} cannot be set")  # pragma: no cover - every field is handled above


def load_faults_file(path: str) -> Faults:
    """The faults in a JSON file (``--faults`` / ``TOP_SANDBOX_FAULTS``); ``OSError`` or ``ValueError``."""
    with open(path, encoding="utf-8") as handle:
        return Faults.from_dict(json.load(handle))
