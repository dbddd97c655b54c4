"""The TOP error table (docs/PROTOCOL.md §2) row by row, the retry policy, ban parsing and each class's error."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from taobao_bridge.clock import PLATFORM_TZ
from taobao_bridge.errors import (
    TopClockError,
    TopError,
    TopPermanentError,
    TopRateLimited,
    TopSessionExpired,
    TopTransientError,
)
from taobao_bridge.top_errors import (
    DEFAULT_RATE_LIMIT_S,
    RETRY_POLICY,
    RULES,
    ErrorClass,
    RetryAction,
    ban_seconds,
    classify,
    error_for,
    is_daily_quota,
    rule_for,
)

T, R, C, S, P = (
    ErrorClass.TRANSIENT,
    ErrorClass.RATE_LIMIT,
    ErrorClass.CLOCK,
    ErrorClass.SESSION,
    ErrorClass.PERMANENT,
)
PERMANENT_CODES = [9, 11, 12, 13, 21, 22, 23, 24, 25, 28, 29, 32, 33, 34, 40, 41, 43, 45, 46, 47, 53]

# (code, sub_code, expected class); together they hit every row of RULES (checked below).
CASES: list[tuple[int | str | None, str | None, ErrorClass]] = [
    # exact sub_codes, whatever the code
    (27, "invalid-sessionkey", S),
    (15, "invalid-sessionkey", S),
    (31, "isv.timestamp-limit-error", C),
    (15, "isv.timestamp-limit-error", C),
    (15, "isv.request-replay-error", C),
    # *-service-unavailable beats isv.* and the permanent codes
    (10, "isp.service-unavailable", T),
    (15, "isv.item-service-unavailable", T),
    (41, "isv.remote-service-unavailable", T),
    # accesscontrol.* whatever the code
    (7, "accesscontrol.limited-by-api-access-count", R),
    (7, "accesscontrol.limited-by-app-access-count", R),
    (15, "accesscontrol.limited-by-user", R),
    (None, "accesscontrol.limited-by-api-access-count", R),
    # codes that are an action of their own, also against the generic families
    *[(code, None, R) for code in (4, 5, 6, 7, 8)],
    (8, "isv.call-limited", R),
    (10, None, T),
    ("10", None, T),
    (10, "isv.whatever", T),
    *[(code, None, S) for code in (26, 27, 42, 44)],
    (26, "isv.missing-parameter:session", S),
    (42, "isv.insufficient-user-permissions", S),
    (30, "isv.missing-parameter:timestamp", C),
    (31, "isv.invalid-parameter:timestamp", C),
    (31, None, C),
    # isp.* is transient, isv.* permanent (15 and 50 included)
    (15, "isp.remote-service-error", T),
    (50, "isp.top-remote-connection-timeout", T),
    (41, "isp.unknown-error", T),
    (999, "isp.something-new", T),
    (15, "isv.invalid-parameter", P),
    (50, "isv.invalid-parameter", P),
    (999, "isv.something-new", P),
    # the permanent codes
    *[(code, None, P) for code in PERMANENT_CODES],
    ("41", None, P),
    # decisions: 15/50 without sub_code transient; everything else permanent
    (15, None, T),
    (50, None, T),
    ("15", "", T),
    (15, "SELLER_NOT_EXIST", P),
    (999, None, P),
    (1, None, P),
    (None, None, P),
    ("not-a-number", None, P),
    # sub_codes are matched case-insensitively, blanks trimmed
    (15, " ISP.Remote-Service-Error ", T),
    (15, "ISV.Invalid-Parameter", P),
]


@pytest.mark.parametrize(("code", "sub_code", "expected"), CASES)
def test_classify(code: int | str | None, sub_code: str | None, expected: ErrorClass) -> None:
    assert classify(code, sub_code) is expected


def test_every_row_of_the_table_is_exercised() -> None:
    hit = {RULES.index(rule_for(code, sub_code)) for code, sub_code, _ in CASES}
    assert hit == set(range(len(RULES)))


def test_rows_say_why_and_the_last_row_matches_everything() -> None:
    assert all(rule.why for rule in RULES)
    fallback = RULES[-1]
    assert fallback.matches(None, None) and fallback.matches(12345, "anything")
    assert fallback.error_class is P


def test_codes_without_sub_code_follow_the_protocol_table() -> None:
    # Written from docs/PROTOCOL.md §2 independently of RULES, for every code 0..100.
    expected = {code: P for code in range(101)}  # listed permanent codes and the fallback
    expected.update({code: R for code in range(4, 9)})
    expected.update({10: T, 15: T, 50: T})
    expected.update({code: S for code in (26, 27, 42, 44)})
    expected.update({30: C, 31: C})
    assert {code: classify(code, None) for code in range(101)} == expected


def test_classify_never_answers_transport() -> None:
    assert all(rule.error_class is not ErrorClass.TRANSPORT for rule in RULES)


def test_retry_policy() -> None:
    assert dict(RETRY_POLICY) == {
        ErrorClass.TRANSPORT: RetryAction.BACKOFF,
        ErrorClass.TRANSIENT: RetryAction.BACKOFF,
        ErrorClass.CLOCK: RetryAction.ONCE_NOW,
        ErrorClass.RATE_LIMIT: RetryAction.RAISE,
        ErrorClass.SESSION: RetryAction.RAISE,
        ErrorClass.PERMANENT: RetryAction.RAISE,
    }
    assert set(RETRY_POLICY) == set(ErrorClass)


@pytest.mark.parametrize(
    ("sub_msg", "expected"),
    [
        ("This ban will last for 37 more seconds", 37),
        ("App call limited. This ban will last for 1 more second.", 1),
        ("this BAN will last for 86399 more seconds", 86399),
        ("This ban will last for 0 more seconds", 0),
        (None, None),
        ("", None),
        ("App call limited", None),
        ("This ban will last for many more seconds", None),
        ("This ban will last for -5 more seconds", None),
        ("This ban will last for 3.5 more seconds", None),
        ("This ban will last for ４２ more seconds", None),  # full-width digits are not a number we trust
    ],
)
def test_ban_seconds(sub_msg: str | None, expected: int | None) -> None:
    assert ban_seconds(sub_msg) == expected


def test_is_daily_quota() -> None:
    assert is_daily_quota("accesscontrol.limited-by-app-access-count")
    assert is_daily_quota(" Accesscontrol.Limited-By-App-Access-Count ")
    assert not is_daily_quota("accesscontrol.limited-by-api-access-count")
    assert not is_daily_quota(None)
    assert not is_daily_quota("")


NOW = datetime(2024, 5, 20, 10, 30, 0, tzinfo=PLATFORM_TZ)


def _error(code: int, sub_code: str | None = None, sub_msg: str | None = None, *, now: datetime = NOW) -> TopError:
    return error_for(code, "a message", sub_code, sub_msg, "req-1", now=now)


def test_error_for_ban_carries_the_stated_seconds() -> None:
    error = _error(7, "accesscontrol.limited-by-api-access-count", "This ban will last for 37 more seconds")
    assert type(error) is TopRateLimited
    assert (error.retry_after_s, error.daily_quota) == (37, False)
    assert (error.code, error.msg, error.sub_code, error.sub_msg, error.request_id) == (
        7,
        "a message",
        "accesscontrol.limited-by-api-access-count",
        "This ban will last for 37 more seconds",
        "req-1",
    )
    assert "code=7" in str(error) and "accesscontrol.limited-by-api-access-count" in str(error)


def test_error_for_rate_limit_without_duration_uses_the_default() -> None:
    error = _error(5)
    assert isinstance(error, TopRateLimited)
    assert (error.retry_after_s, error.daily_quota) == (DEFAULT_RATE_LIMIT_S, False) == (60, False)


def test_error_for_zero_second_ban_still_waits_a_second() -> None:
    error = _error(7, "accesscontrol.x", "This ban will last for 0 more seconds")
    assert isinstance(error, TopRateLimited) and error.retry_after_s == 1


def test_daily_quota_waits_for_midnight_utc8() -> None:
    error = _error(7, "accesscontrol.limited-by-app-access-count")  # 10:30 UTC+8 -> 13.5 h to midnight
    assert isinstance(error, TopRateLimited)
    assert (error.retry_after_s, error.daily_quota) == (13 * 3600 + 1800, True)


def test_daily_quota_midnight_is_utc8_not_utc() -> None:
    # 15:59:00 UTC is 23:59:00 UTC+8: one minute left, whereas UTC midnight would be 8 h 1 min away.
    now = datetime(2024, 5, 20, 15, 59, 0, tzinfo=UTC)
    error = _error(7, "accesscontrol.limited-by-app-access-count", now=now)
    assert isinstance(error, TopRateLimited) and error.retry_after_s == 60
    # 16:00:00.5 UTC is just after midnight UTC+8: nearly a whole day to wait.
    error = _error(7, "accesscontrol.limited-by-app-access-count", now=datetime(2024, 5, 20, 16, 0, 0, 500000, UTC))
    assert isinstance(error, TopRateLimited) and error.retry_after_s == 86400


def test_daily_quota_with_a_stated_ban_uses_the_platform_figure() -> None:
    error = _error(7, "accesscontrol.limited-by-app-access-count", "This ban will last for 1234 more seconds")
    assert isinstance(error, TopRateLimited) and (error.retry_after_s, error.daily_quota) == (1234, True)


@pytest.mark.parametrize(
    ("code", "sub_code", "expected_type"),
    [
        (15, "isp.remote-service-error", TopTransientError),
        (10, None, TopTransientError),
        (31, "isv.timestamp-limit-error", TopClockError),
        (27, "invalid-sessionkey", TopSessionExpired),
        (26, "isv.missing-parameter:session", TopSessionExpired),
        (15, "isv.invalid-parameter", TopPermanentError),
        (41, None, TopPermanentError),
        (999, None, TopPermanentError),
    ],
)
def test_error_for_returns_the_subclass_of_the_class(
    code: int, sub_code: str | None, expected_type: type[TopError]
) -> None:
    error = error_for(code, "msg", sub_code, "detail", "rid", now=NOW)
    assert type(error) is expected_type
    assert (error.code, error.msg, error.sub_code, error.sub_msg, error.request_id) == (
        code,
        "msg",
        sub_code,
        "detail",
        "rid",
    )
