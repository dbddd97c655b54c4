"""``events tail`` on the local stack: the events its event log group holds on moto, read with
``bridge_local.event_log.read_events`` (the same reader ``python -m bridge_local events tail`` uses)."""

from __future__ import annotations

import os
from typing import Any

from .errors import CliError, NotReachable

__all__ = ["LocalEvents", "default_endpoint"]


def default_endpoint() -> str:
    """The local stack's moto server: ``http://127.0.0.1:$DYNAMODB_PORT`` (8000)."""
    return f"http://127.0.0.1:{os.environ.get('DYNAMODB_PORT') or '8000'}"


class LocalEvents:
    """The latest events of the local event log, then the ones written after them (``newer``)."""

    def __init__(self, endpoint: str | None = None) -> None:
        self.endpoint = endpoint or default_endpoint()
        self._token: str | None = None

    def _read(self) -> list[dict[str, Any]]:
        from botocore.exceptions import BotoCoreError, ClientError

        from bridge_local.event_log import EventLogError, read_events

        try:
            events, self._token = read_events(self.endpoint, self._token)
        except EventLogError as exc:
            raise CliError(str(exc)) from None
        except BotoCoreError:
            raise NotReachable(
                f"the local stack is not running (no event log at {self.endpoint}): start it with `make run`"
            ) from None
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise CliError(f"reading the local event log: {error.get('Code')}: {error.get('Message')}") from None
        return events

    def latest(self, limit: int) -> list[dict[str, Any]]:
        return self._read()[-limit:]

    def newer(self) -> list[dict[str, Any]]:
        return self._read()
