"""``python -m bridge_local control``: see and lift what steers the sync runs (bans, session pauses, leases),
on the local stack by default or on a deployed stage (``--aws --table <OutboxTableName output>``, with the
caller's AWS credentials and region).

    python -m bridge_local control show
    python -m bridge_local control lift-ban app            # the daily quota, or: writeoff | risk | external_order
    python -m bridge_local control clear-pause risk        # the next run probes the session key again
    python -m bridge_local control show --aws --table taobao-bridge-prod-OutboxTable-ABC123

Every error is one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from typing import Any

from taobao_bridge.errors import StorageError
from taobao_bridge.kinds import Kind
from taobao_bridge.outbox import RunControl
from taobao_bridge.settings import ENV, LOCAL_DEFAULTS
from taobao_bridge.sync import APP_BAN_SCOPE

__all__ = ["add_parser"]

SCOPES = [APP_BAN_SCOPE, *(kind.value for kind in Kind)]


def add_parser(sub: Any) -> None:
    """Add the ``control`` command to the CLI's subparsers."""
    parser = sub.add_parser("control", help="show or lift sync bans, session pauses and leases")
    parser.add_argument("action", choices=["show", "lift-ban", "clear-pause"])
    parser.add_argument("scope", nargs="?", help=f"for lift-ban: {', '.join(SCOPES)}; for clear-pause: a kind")
    parser.add_argument("--aws", action="store_true", help="a deployed stage (AWS credentials and region)")
    parser.add_argument("--table", help="the outbox table (default: the local stack's; with --aws: required)")
    parser.add_argument(
        "--endpoint",
        default=f"http://127.0.0.1:{os.environ.get('DYNAMODB_PORT', '8000')}",
        help="the local DynamoDB endpoint (ignored with --aws)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        control = _control(args)
        if args.action == "show":
            print(json.dumps(show(control), ensure_ascii=False, indent=2))
            return 0
        if args.scope is None:
            raise ValueError(f"{args.action} needs a scope: {', '.join(SCOPES)}")
        if args.action == "lift-ban":
            _check(args.scope, SCOPES)
            lifted = control.lift_ban(args.scope)
            print(f"ban on {args.scope} lifted" if lifted else f"no ban on {args.scope}")
        else:
            _check(args.scope, [kind.value for kind in Kind])
            cleared = control.clear_pause(args.scope)
            print(f"pause of {args.scope} cleared" if cleared else f"{args.scope} was not paused")
        return 0
    except (StorageError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def show(control: RunControl) -> dict[str, Any]:
    """The bans, pauses and leases in force now."""
    bans = {scope: _iso(until) for scope in SCOPES if (until := control.ban_until(scope)) is not None}
    pauses = {}
    for kind in Kind:
        pause = control.pause(kind.value)
        if pause is not None:
            pauses[kind.value] = {"reason": pause.reason, "since": _iso(pause.since_ms)}
    return {"bans_until": bans, "pauses": pauses}


def _control(args: argparse.Namespace) -> RunControl:
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "total_max_attempts": 3})
    if args.aws:
        if not args.table:
            raise ValueError("--aws needs --table (the stack output OutboxTableName)")
        return RunControl(args.table, client=boto3.client("dynamodb", config=config))
    client = boto3.client(
        "dynamodb",
        endpoint_url=args.endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106 - moto accepts anything
        config=config,
    )
    return RunControl(args.table or LOCAL_DEFAULTS[ENV.OUTBOX_TABLE], client=client)


def _check(scope: str, allowed: list[str]) -> None:
    if scope not in allowed:
        raise ValueError(f"unknown scope {scope!r}; one of {', '.join(allowed)}")


def _iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
