"""The command's errors. ``cli.main`` prints each as one ``error: …`` line on stderr and exits non-zero."""

from __future__ import annotations

from typing import Any

__all__ = ["ApiError", "CliError", "NotReachable", "UsageError"]


class CliError(Exception):
    """Raised for every expected failure; ``str()`` is the one line printed, ``exit_code`` the status."""

    exit_code = 1


class UsageError(CliError):
    """Raised when the arguments cannot work together (argparse's own errors take the same path)."""

    exit_code = 2


class NotReachable(CliError):
    """Raised when no HTTP answer came back: connection refused, DNS, timeout."""


class ApiError(CliError):
    """Raised when the API answered an error status. ``code`` is the API's ``error`` field (or ``http_<status>``
    when the answer has none, e.g. API Gateway's own 403/404), ``body`` the decoded answer when it is JSON."""

    def __init__(self, status: int, code: str, message: str, body: Any = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.body = body
        super().__init__(f"HTTP {status} {code}: {message}" if message else f"HTTP {status} {code}")
