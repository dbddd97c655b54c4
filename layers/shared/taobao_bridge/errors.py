"""One exception tree, shaped by what the caller must do. ``str()`` of any of these never holds a secret."""

from __future__ import annotations

__all__ = [
    "BridgeError",
    "ConfigurationError",
    "StorageError",
    "TopClockError",
    "TopError",
    "TopPermanentError",
    "TopRateLimited",
    "TopSessionExpired",
    "TopTransientError",
    "TopTransportError",
    "UnknownOutcome",
    "UnreadableAnswer",
]


class BridgeError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigurationError(BridgeError):
    """Raised when a setting or secret is missing or malformed; fix the deployment, retrying will not help."""


class StorageError(BridgeError):
    """Raised when DynamoDB cannot be reached or refuses a request for a reason other than our own conditions.
    The operation is safe to retry. ``maybe_applied``: a write may have taken effect before the failure (a
    timeout after sending, a 5xx); False when DynamoDB refused it or it never left."""

    def __init__(self, message: str, *, maybe_applied: bool = True) -> None:
        self.maybe_applied = maybe_applied
        super().__init__(message)


class TopTransportError(BridgeError):
    """Raised when a TOP call got no usable answer: timeout, connection error, HTTP status other than 200,
    or a body that is not JSON."""


class UnknownOutcome(TopTransportError):
    """Raised when a write call timed out after it was sent: the platform may or may not have applied it,
    so it must be retried with the same business keys."""


class UnreadableAnswer(UnknownOutcome):
    """Raised when the gateway answered HTTP 200 with something that is not a TOP answer (not JSON, not an
    object, a repeated key): the call may well have been applied. Never retried by the client; ``answer`` keeps
    the start of what came back, so an operator can judge."""

    def __init__(self, message: str, answer: str) -> None:
        self.answer = answer
        super().__init__(message)


class TopError(BridgeError):
    """Raised when TOP answered with an ``error_response`` (or a business refusal); carries its fields."""

    def __init__(
        self,
        code: int | str | None,
        msg: str | None = None,
        sub_code: str | None = None,
        sub_msg: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.code = code
        self.msg = msg
        self.sub_code = sub_code
        self.sub_msg = sub_msg
        self.request_id = request_id
        super().__init__(self._describe())

    def _describe(self) -> str:
        parts = [f"code={self.code}", f"msg={self.msg!r}"]
        if self.sub_code:
            parts.append(f"sub_code={self.sub_code}")
        if self.sub_msg:
            parts.append(f"sub_msg={self.sub_msg!r}")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        return f"{type(self).__name__}(" + ", ".join(parts) + ")"


class TopTransientError(TopError):
    """Raised for platform-side failures (``isp.*``, code 10, service unavailable): retry with backoff."""


class TopRateLimited(TopError):
    """Raised when the platform rate-limits the app; ``retry_after_s`` is how long to stop sending."""

    def __init__(self, *args: object, retry_after_s: float, daily_quota: bool = False, **kwargs: object) -> None:
        self.retry_after_s = retry_after_s
        self.daily_quota = daily_quota
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]


class TopSessionExpired(TopError):
    """Raised when the session key is missing, invalid or expired: do not retry; pause and alert."""


class TopClockError(TopError):
    """Raised when the platform refuses the timestamp (codes 30/31, replay): re-sign with a fresh time once."""


class TopPermanentError(TopError):
    """Raised for caller errors (``isv.*`` and the permanent codes): retrying unchanged cannot succeed."""
