"""What each outbound TOP API module declares about itself (``API``): method, batch limit, session need, the
top-level parameter a batch travels in, and how to read the business verdict of an accepted call.

``OutboundApi.params`` is the one function that turns stored record payloads into the API parameters that are
signed and sent: the sync runner sends through it and the wire tests check it against the seeds' examples.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from ..wire import to_top_params

__all__ = ["OutboundApi", "Verdict", "read_flag", "read_id", "read_text"]


@dataclass(frozen=True)
class Verdict:
    """What an accepted call's business result says: refused (with the platform's code and message), taken, or
    not readable (``unreadable`` says why: the call was applied or not, nobody can tell from this answer), and
    the platform's order id where the API gives one."""

    refusal: str | None = None
    platform_order_id: int | None = None
    unreadable: str | None = None


def read_flag(value: Any) -> bool | None:
    """A platform boolean as JSON ``true``/``false`` or the text ``"true"``/``"false"``; None for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def read_id(value: Any) -> int | None:
    """A platform id (Java ``Long``) as a JSON integer or decimal text; None for anything else (floats, negatives,
    objects), so an odd id never stops a run."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value < 2**63 else None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        number = int(value)
        return number if number < 2**63 else None
    return None


def read_text(value: Any, limit: int = 200) -> str:
    """Any answer field as short text for a reason or a log line."""
    text = value if isinstance(value, str) else "" if value is None else repr(value)
    return text[:limit]


@dataclass(frozen=True)
class OutboundApi:
    method: str
    max_batch: int  # records per call
    needs_session: bool  # the seller's session key goes with every call
    param: str  # the top-level API parameter that carries the batch
    record: type[BaseModel]  # one record, as merchants hand it in
    request: type[BaseModel]  # the API parameters; validates the batch (list limits included)
    wrap: Callable[[list[dict[str, Any]]], Any]  # how a batch of record payloads sits in ``param``
    verdict: Callable[[Mapping[str, Any]], Verdict]  # the business result of an accepted call; never raises
    idempotent: bool = False  # the platform dedupes a repeated call (a key in the record): re-sending is safe
    # A taken record's answer carries the platform's id for it (``Verdict.platform_order_id``), which merchants need
    # to refer to it: an answer that takes the record without a readable id does not settle it synced.
    answers_order_id: bool = False

    def params(self, payloads: Sequence[Mapping[str, Any]]) -> dict[str, str]:
        """The wire parameters (name -> text) for one batch of record payloads (JSON-mode dicts).

        The batch is validated against the request model first, so nothing the model refuses is ever sent;
        raises ``pydantic.ValidationError`` naming the record index and field.
        """
        request = self.request.model_validate({self.param: self.wrap([dict(p) for p in payloads])})
        return to_top_params(request)
