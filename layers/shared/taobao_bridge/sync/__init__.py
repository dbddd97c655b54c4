"""Outbound sync: a scheduled run sends due outbox records to TOP in batches and settles each one.

- ``runner``: ``SyncRunner``, the decisions (batching, isolation, retry, dead, unconfirmed, ban, pause,
  deadline); ``config``: ``SyncConfig``; ``report``: the ``RunReport`` it returns;
- ``ports``: the interfaces the runner talks to (outbox, run control, TOP caller);
- ``scheduled``: the production assembly the Lambda handlers call.
"""

from __future__ import annotations

from .config import SyncConfig
from .ports import SyncControl, SyncOutbox, TopCaller
from .report import RunReport, RunStatus
from .runner import APP_BAN_SCOPE, DAILY_QUOTA_PROBE_S, SyncRunner, session_fingerprint
from .scheduled import build_runner, run_scheduled

__all__ = [
    "APP_BAN_SCOPE",
    "DAILY_QUOTA_PROBE_S",
    "RunReport",
    "RunStatus",
    "SyncConfig",
    "SyncControl",
    "SyncOutbox",
    "SyncRunner",
    "TopCaller",
    "build_runner",
    "run_scheduled",
    "session_fingerprint",
]
