"""The fulfillment order events, visible locally: the template's event bus, its rule and its log group created on
moto, and a reader of that log group.

In AWS, ``FulfillmentEventLogRule`` copies every ``FulfillmentOrderReceived`` event from the bus to the log group
``FulfillmentEventLogGroup`` (``aws logs tail <FulfillmentEventLogGroupName output> --follow``). Locally the stack
creates the same three things on moto from template.yaml (:func:`create_local_event_bus`), and moto's EventBridge
delivers each ``PutEvents`` entry matching the rule to moto's CloudWatch Logs, so the events take the same path.

:func:`read_events` reads them back (locally, or from AWS with ``endpoint=None``); ``python -m bridge_local events
tail [--follow]`` prints them, one JSON event per line.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from .template import TEMPLATE_PATH, _resolve, _Unresolvable, load_template

__all__ = ["EventLogError", "LocalEventBus", "add_parser", "create_local_event_bus", "local_event_bus", "read_events"]

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
_MAX_PAGES = 20  # filter_log_events pages per read; the token lets the next read go on


class EventLogError(ValueError):
    """Raised when the event log cannot be read (no such log group, a token this module did not write)."""


@dataclass(frozen=True)
class LocalEventBus:
    """The template's bus and the log group its rule copies events to, with names resolved as locally."""

    bus_name: str
    rule_name: str
    event_pattern: dict[str, Any]
    log_group: str


def _resources(template: Mapping[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    found = {}
    for logical_id, resource in (template.get("Resources") or {}).items():
        if isinstance(resource, dict) and resource.get("Type") == type_:
            found[logical_id] = resource
    return found


def local_event_bus(template: Mapping[str, Any]) -> LocalEventBus | None:
    """The first rule that sends a bus's events to a log group of the template, or None if there is none."""
    buses = _resources(template, "AWS::Events::EventBus")
    groups = _resources(template, "AWS::Logs::LogGroup")
    for rule_id, rule in _resources(template, "AWS::Events::Rule").items():
        properties = rule.get("Properties") or {}
        bus_ref = properties.get("EventBusName")
        bus_id = bus_ref.get("Ref") if isinstance(bus_ref, dict) else None
        if bus_id not in buses:
            continue
        for target in properties.get("Targets") or []:
            arn = target.get("Arn")
            group_id = arn["Fn::GetAtt"][0] if isinstance(arn, dict) and "Fn::GetAtt" in arn else None
            if group_id not in groups:
                continue
            try:
                bus_name = str(_resolve(buses[bus_id]["Properties"]["Name"], template))
                group = str(_resolve(groups[group_id]["Properties"]["LogGroupName"], template))
            except (_Unresolvable, KeyError):
                raise ValueError(f"{rule_id}: its bus name or log group name cannot be resolved locally") from None
            return LocalEventBus(bus_name, rule_id, dict(properties.get("EventPattern") or {}), group)
    return None


def _client(service: str, endpoint: str | None) -> Any:
    if endpoint is None:  # AWS: the caller's credentials and region
        return boto3.client(service)
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106 - moto accepts anything
    )


def create_local_event_bus(endpoint: str, template: Mapping[str, Any]) -> LocalEventBus | None:
    """Create the template's bus, log group and rule (with the log group as target) on moto at ``endpoint``."""
    bus = local_event_bus(template)
    if bus is None:
        return None
    events, logs = _client("events", endpoint), _client("logs", endpoint)
    try:
        events.create_event_bus(Name=bus.bus_name)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceAlreadyExistsException":
            raise
    try:
        logs.create_log_group(logGroupName=bus.log_group)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceAlreadyExistsException":
            raise
    events.put_rule(Name=bus.rule_name, EventBusName=bus.bus_name, EventPattern=json.dumps(bus.event_pattern))
    target = f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:{bus.log_group}"
    events.put_targets(Rule=bus.rule_name, EventBusName=bus.bus_name, Targets=[{"Id": "EventLog", "Arn": target}])
    return bus


def default_log_group() -> str:
    bus = local_event_bus(load_template(TEMPLATE_PATH))
    if bus is None:
        raise EventLogError("template.yaml has no event rule with a log group target")
    return bus.log_group


def _decode_token(token: str | None) -> tuple[int, set[str]]:
    if not token:
        return 0, set()
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return int(data["t"]), {str(seen) for seen in data["seen"]}
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise EventLogError("after_token: not a token read_events returned") from None


def _encode_token(millis: int, seen: set[str]) -> str:
    text = json.dumps({"t": millis, "seen": sorted(seen)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def read_events(
    endpoint: str | None, after_token: str | None = None, *, log_group: str | None = None
) -> tuple[list[dict[str, Any]], str]:
    """The events logged after ``after_token`` (None: from the first), oldest first, and the token to pass next.

    ``endpoint``: the local stack's moto (``http://127.0.0.1:8000`` for ``make run``), or None for AWS (the
    caller's credentials; pass ``log_group`` = the stack's ``FulfillmentEventLogGroupName`` output). Each event is
    the EventBridge event as delivered (``id``, ``source``, ``detail-type``, ``time``, ``detail``...). A tail, not
    a ledger: an event CloudWatch ingests late with an older timestamp than the token's can be skipped. Raises
    ``EventLogError`` (no such log group, bad token), ``BotoCoreError`` (unreachable) or ``ClientError``."""
    group = log_group or default_log_group()
    since, seen = _decode_token(after_token)
    logs = _client("logs", endpoint)
    request: dict[str, Any] = {"logGroupName": group, "startTime": since}
    found: list[tuple[float, str, dict[str, Any]]] = []
    for _ in range(_MAX_PAGES):
        try:
            page = logs.filter_log_events(**request)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                where = endpoint or "AWS"
                raise EventLogError(f"log group {group} not found at {where}: is the stack running?") from None
            raise
        for entry in page.get("events", []):
            identity = f"{entry.get('logStreamName')}/{entry.get('eventId')}"
            millis = int(entry["timestamp"])
            if millis < since or (millis == since and identity in seen):
                continue
            try:
                event = json.loads(entry["message"])
            except ValueError:
                event = {"unreadable": entry["message"][:200]}
            found.append((entry["timestamp"], identity, event))
        if not page.get("nextToken"):
            break
        request["nextToken"] = page["nextToken"]
    found.sort(key=lambda item: (item[0], item[1]))
    for timestamp, identity, _ in found:
        millis = int(timestamp)
        if millis > since:
            since, seen = millis, set()
        seen.add(identity)
    return [event for _, _, event in found], _encode_token(since, seen)


# ------------------------------------------------------------------------------------------------------- CLI
def _tail(args: argparse.Namespace) -> int:
    token: str | None = None
    try:
        while True:
            events, token = read_events(args.endpoint, token, log_group=args.log_group)
            for event in events:
                print(json.dumps(event, ensure_ascii=False, separators=(",", ":")), flush=True)
            if not args.follow:
                return 0
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
    except BotoCoreError as exc:
        raise EventLogError(f"{exc} (is the local stack running? make run)") from None


def add_parser(sub: Any) -> None:
    """``events tail [--follow] [--endpoint URL] [--log-group NAME]`` under ``python -m bridge_local``."""
    events = sub.add_parser("events", help="fulfillment order events (FulfillmentOrderReceived) of the local stack")
    actions = events.add_subparsers(dest="events_command", required=True)
    tail = actions.add_parser("tail", help="print the events logged so far, one JSON per line (--follow: keep on)")
    tail.add_argument("--follow", "-f", action="store_true", help="keep printing new events until Ctrl-C")
    tail.add_argument(
        "--endpoint",
        default=f"http://127.0.0.1:{os.environ.get('DYNAMODB_PORT', '8000')}",
        help="the local stack's moto server (default: 127.0.0.1:$DYNAMODB_PORT, 8000)",
    )
    tail.add_argument("--log-group", help="default: the event log group of template.yaml, as named locally")
    tail.add_argument("--interval", type=float, default=1.0, help="seconds between reads with --follow")
    tail.set_defaults(func=_tail)
