"""TOP error classification as data (docs/PROTOCOL.md §2): one ordered table from code / sub_code to what the
caller must do, and the retry policy per class.

``RULES`` is read top to bottom and the first matching row wins, so the order IS the precedence:

1. exact sub_codes that name their own action (``invalid-sessionkey``, the clock sub_codes);
2. sub_code families that override any code: ``*-service-unavailable`` (transient), ``accesscontrol.*`` (rate
   limit);
3. codes whose class is an action of its own (rate limit 4–8, transient 10, session 26/27/42/44, clock 30/31):
   they beat the generic ``isp.``/``isv.`` families, so e.g. ``26 isv.missing-parameter:session`` pauses the
   session flow instead of failing every record as "permanent";
4. the generic families: ``isp.*`` (platform side: transient) before ``isv.*`` (our side: permanent), so
   ``15``/``50`` with ``isp.`` retry and with ``isv.`` do not;
5. the permanent codes;
6. decisions where the protocol is silent (each row says why), then the fallback row: anything else is permanent.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType

from .clock import PLATFORM_TZ
from .errors import (
    TopClockError,
    TopError,
    TopPermanentError,
    TopRateLimited,
    TopSessionExpired,
    TopTransientError,
)

__all__ = [
    "DAILY_QUOTA_SUB_CODE",
    "DEFAULT_RATE_LIMIT_S",
    "RETRY_POLICY",
    "RULES",
    "ErrorClass",
    "RetryAction",
    "Rule",
    "ban_seconds",
    "classify",
    "error_for",
    "is_daily_quota",
    "rule_for",
]


class ErrorClass(StrEnum):
    """What kind of failure a TOP call met; decides the action (``RETRY_POLICY``)."""

    TRANSPORT = "transport"  # no usable answer: timeout, connection error, HTTP != 200, body not JSON
    TRANSIENT = "transient"  # the platform failed on its side
    RATE_LIMIT = "rate_limit"  # banned or over quota: stop sending for a while
    CLOCK = "clock"  # timestamp refused: re-sign with a fresh one
    SESSION = "session"  # session key missing/invalid/expired: pause the flow, alert
    PERMANENT = "permanent"  # the request itself is wrong: retrying unchanged cannot succeed


class RetryAction(StrEnum):
    """What the TOP client does with a failed attempt of a given class."""

    BACKOFF = "backoff"  # retry with exponential backoff and full jitter, within attempts/budget/deadline
    ONCE_NOW = "once_now"  # retry once, immediately, with a fresh timestamp and sign
    RAISE = "raise"  # never retried by the client: raise to the caller at once


RETRY_POLICY: Mapping[ErrorClass, RetryAction] = MappingProxyType(
    {
        ErrorClass.TRANSPORT: RetryAction.BACKOFF,
        ErrorClass.TRANSIENT: RetryAction.BACKOFF,
        ErrorClass.CLOCK: RetryAction.ONCE_NOW,
        ErrorClass.RATE_LIMIT: RetryAction.RAISE,
        ErrorClass.SESSION: RetryAction.RAISE,
        ErrorClass.PERMANENT: RetryAction.RAISE,
    }
)

DAILY_QUOTA_SUB_CODE = "accesscontrol.limited-by-app-access-count"
DEFAULT_RATE_LIMIT_S = 60  # when a rate-limit answer says nothing about how long: an assumption, not documented


@dataclass(frozen=True)
class Rule:
    """One row of the table: matches when every condition given holds (an omitted condition matches anything).

    Sub_codes are compared lower-cased and stripped.
    """

    error_class: ErrorClass
    codes: frozenset[int] | None = None
    sub_code: str | None = None  # exact
    sub_prefix: str | None = None
    sub_suffix: str | None = None
    without_sub_code: bool = False
    why: str = ""

    def matches(self, code: int | None, sub_code: str | None) -> bool:
        if self.codes is not None and code not in self.codes:
            return False
        if self.without_sub_code and sub_code:
            return False
        if self.sub_code is not None and sub_code != self.sub_code:
            return False
        if self.sub_prefix is not None and not (sub_code or "").startswith(self.sub_prefix):
            return False
        return self.sub_suffix is None or (sub_code or "").endswith(self.sub_suffix)


def _codes(*items: int | range) -> frozenset[int]:
    found: set[int] = set()
    for item in items:
        found.update(item if isinstance(item, range) else (item,))
    return frozenset(found)


_T, _R, _C, _S, _P = (
    ErrorClass.TRANSIENT,
    ErrorClass.RATE_LIMIT,
    ErrorClass.CLOCK,
    ErrorClass.SESSION,
    ErrorClass.PERMANENT,
)

RULES: tuple[Rule, ...] = (
    # 1. exact sub_codes
    Rule(_S, sub_code="invalid-sessionkey", why="session sub_code, whatever the code"),
    Rule(_C, sub_code="isv.timestamp-limit-error", why="clock sub_code; beats the isv.* family"),
    Rule(_C, sub_code="isv.request-replay-error", why="clock sub_code; beats the isv.* family"),
    # 2. families that override any code
    Rule(_T, sub_suffix="-service-unavailable", why="any *-service-unavailable, even isv.*"),
    Rule(_R, sub_prefix="accesscontrol.", why="bans and quotas"),
    # 3. codes that are an action of their own
    Rule(_R, codes=_codes(range(4, 9)), why="codes 4-8: user/session/partner/app call limits"),
    Rule(_T, codes=_codes(10), why="code 10: service currently unavailable"),
    Rule(_S, codes=_codes(26, 27, 42, 44), why="session codes; beat isv.* (e.g. 26 isv.missing-parameter:session)"),
    Rule(_C, codes=_codes(30, 31), why="timestamp codes; beat isv.* (e.g. 31 isv.invalid-parameter:timestamp)"),
    # 4. generic families: platform side first
    Rule(_T, sub_prefix="isp.", why="platform-side failure, whatever the code (15/50 included)"),
    Rule(_P, sub_prefix="isv.", why="caller-side error, whatever the code (15/50 included)"),
    # 5. permanent codes
    Rule(
        _P,
        codes=_codes(9, range(11, 14), range(21, 26), 28, 29, range(32, 35), 40, 41, 43, range(45, 48), 53),
        why="permanent codes of docs/PROTOCOL.md §2",
    ),
    # 6. protocol silent
    Rule(
        _T,
        codes=_codes(15, 50),
        without_sub_code=True,
        why="DECISION: 'remote service error' with no sub_code says nothing about our request; a retry is cheap "
        "and the caller keeps the record due, whereas a wrong 'permanent' would fail a good record",
    ),
    Rule(
        _P,
        why="DECISION: fallback. Unknown codes, and 15/50 with an API-specific sub_code (a business refusal), are "
        "permanent: the record fails with code and message kept instead of being retried forever. Unknown codes "
        "with an isp. sub_code never get here (row 'isp.' above): they are transient",
    ),
)


def _code_number(code: int | str | None) -> int | None:
    if isinstance(code, bool):
        return None
    if isinstance(code, int):
        return code
    if isinstance(code, str):
        try:
            return int(code.strip())
        except ValueError:
            return None
    return None


def _normal_sub_code(sub_code: str | None) -> str | None:
    if not isinstance(sub_code, str):
        return None
    return sub_code.strip().lower() or None


def rule_for(code: int | str | None, sub_code: str | None) -> Rule:
    """The first row of ``RULES`` matching an ``error_response`` (the last row matches everything)."""
    number, normal = _code_number(code), _normal_sub_code(sub_code)
    return next(rule for rule in RULES if rule.matches(number, normal))


def classify(code: int | str | None, sub_code: str | None) -> ErrorClass:
    """The class of an ``error_response`` (never ``TRANSPORT``: that is for answers that are not one)."""
    return rule_for(code, sub_code).error_class


_BAN_RE = re.compile(r"ban\s+will\s+last\s+for\s+(\d+)\s+more\s+seconds?", re.IGNORECASE | re.ASCII)


def ban_seconds(sub_msg: str | None) -> int | None:
    """N from ``This ban will last for N more seconds``, or None when the text does not say."""
    if not isinstance(sub_msg, str):
        return None
    found = _BAN_RE.search(sub_msg)
    return int(found.group(1)) if found else None


def is_daily_quota(sub_code: str | None) -> bool:
    """Whether the sub_code is the app's daily call quota (wait for the next day in UTC+8, and alert)."""
    return _normal_sub_code(sub_code) == DAILY_QUOTA_SUB_CODE


def _seconds_to_platform_midnight(now: datetime) -> int:
    local = now.astimezone(PLATFORM_TZ)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), tzinfo=PLATFORM_TZ)
    return max(1, math.ceil((midnight - local).total_seconds()))


_ERROR_TYPES: Mapping[ErrorClass, type[TopError]] = MappingProxyType(
    {
        ErrorClass.TRANSIENT: TopTransientError,
        ErrorClass.CLOCK: TopClockError,
        ErrorClass.SESSION: TopSessionExpired,
        ErrorClass.PERMANENT: TopPermanentError,
    }
)


def error_for(
    code: int | str | None,
    msg: str | None,
    sub_code: str | None,
    sub_msg: str | None,
    request_id: str | None,
    *,
    now: datetime,
) -> TopError:
    """The exception for an ``error_response``. For a rate limit, ``retry_after_s`` is the ban the platform
    states, else (daily quota) the seconds to the next midnight UTC+8, else ``DEFAULT_RATE_LIMIT_S``."""
    error_class = classify(code, sub_code)
    if error_class is ErrorClass.RATE_LIMIT:
        daily = is_daily_quota(sub_code)
        stated = ban_seconds(sub_msg)
        if stated is not None:
            retry_after = max(1, stated)  # "0 more seconds" still means: not this very instant
        elif daily:
            retry_after = _seconds_to_platform_midnight(now)
        else:
            retry_after = DEFAULT_RATE_LIMIT_S
        return TopRateLimited(code, msg, sub_code, sub_msg, request_id, retry_after_s=retry_after, daily_quota=daily)
    return _ERROR_TYPES[error_class](code, msg, sub_code, sub_msg, request_id)
