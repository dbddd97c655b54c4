"""``status``, ``flows pause|resume|clear-session-pause`` and ``bans lift``."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from .api import OpsApi
from .output import Column, age, brief, respond, table

__all__ = ["clear_session_pause", "lift_ban", "pause", "render_status", "resume", "status"]

_KIND_ORDER = ("writeoff", "risk", "external_order")


def status(args: argparse.Namespace, api: OpsApi) -> int:
    answer = api.status()
    respond(args.json, answer, lambda: render_status(answer))
    return 0


def render_status(answer: Mapping[str, Any]) -> str:
    """The counts as a table, then one line per pause, ban and lease in force."""
    kinds: Mapping[str, Any] = answer.get("kinds") or {}
    names = [k for k in _KIND_ORDER if k in kinds] + sorted(k for k in kinds if k not in _KIND_ORDER)
    rows = [{"kind": name, **(kinds[name] or {})} for name in names]
    columns: list[Column] = [
        ("kind", lambda r: r["kind"]),
        ("due", lambda r: r.get("due")),
        ("due now", lambda r: r.get("due_now")),
        ("dead", lambda r: r.get("dead")),
        ("unconfirmed", lambda r: r.get("unconfirmed")),
        ("synced", lambda r: r.get("synced")),
        ("oldest due", lambda r: age(r.get("oldest_due_age_s"))),
        ("flow", flow_state),
    ]
    lines = [table(rows, columns)]
    for row in rows:
        for label, key in (
            ("paused by operator", "operator_pause"),
            ("session paused", "session_pause"),
            ("banned", "ban"),
            ("leased", "lease"),
        ):
            if row.get(key):
                lines.append(f"{row['kind']}: {label}: {describe(row[key])}")
    app_ban = answer.get("app_ban")
    lines.append(f"app: banned: {describe(app_ban)}" if app_ban else "app: no ban")
    return "\n".join(lines)


def flow_state(row: Mapping[str, Any]) -> str:
    """What stops the kind's runs now, most binding first; ``running`` when a run holds the lease."""
    if row.get("operator_pause"):
        return "paused"
    if row.get("ban"):
        return "banned"
    if row.get("session_pause"):
        return "session paused"
    if row.get("lease"):
        return "running"
    return "ok"


def describe(value: Any) -> str:
    """A pause, ban or lease object in one line: its times and reason first, then anything else."""
    if not isinstance(value, Mapping):
        return brief(value, 160)
    order = ("until", "since", "expires_at", "owner", "reason")
    first = [f"{key} {value[key]}" for key in order if value.get(key) not in (None, "")]
    rest = [f"{key} {brief(v, 60)}" for key, v in value.items() if key not in order and v not in (None, "")]
    return ", ".join(first + rest) or "yes"


def pause(args: argparse.Namespace, api: OpsApi) -> int:
    answer = api.pause(args.kind, args.reason)
    _say(args, answer, f"{args.kind}: paused; its scheduled runs send nothing until `flows resume {args.kind}`")
    return 0


def resume(args: argparse.Namespace, api: OpsApi) -> int:
    answer = api.resume(args.kind)
    resumed = answer.get("resumed")
    _say(args, answer, f"{args.kind}: resumed" if resumed else f"{args.kind}: was not paused by an operator")
    return 0


def clear_session_pause(args: argparse.Namespace, api: OpsApi) -> int:
    answer = api.clear_session_pause(args.kind)
    cleared = answer.get("cleared")
    text = (
        f"{args.kind}: session pause cleared; the next run probes the session key"
        if cleared
        else f"{args.kind}: was not session-paused"
    )
    _say(args, answer, text)
    return 0


def lift_ban(args: argparse.Namespace, api: OpsApi) -> int:
    answer = api.lift_ban(args.scope)
    lifted = answer.get("lifted")
    _say(args, answer, f"ban on {args.scope} lifted" if lifted else f"no ban on {args.scope}")
    return 0


def _say(args: argparse.Namespace, answer: Mapping[str, Any], text: str) -> None:
    respond(args.json, answer, text)
