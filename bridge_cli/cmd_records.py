"""``records list|show|retry``: outbox records by state, one record, and replay of dead or unconfirmed ones."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from typing import Any

from .api import OpsApi
from .errors import ApiError, CliError
from .output import Column, brief, emit, emit_json, key_values, progress, table

__all__ = ["list_records", "reason_of", "render_records", "retry", "show"]

MAX_PAGE = 1000  # the most records one retry request moves
SETTLED = frozenset({"synced", "dead", "unconfirmed"})
RECORD_COLUMNS: list[Column] = [
    ("id", lambda r: r.get("id")),
    ("state", lambda r: r.get("state")),
    ("attempts", lambda r: r.get("attempts")),
    ("next try / settled", lambda r: r.get("next_attempt_at") if r.get("state") == "due" else r.get("settled_at")),
    ("reason", lambda r: brief(reason_of(r), 100)),
]


def reason_of(record: Mapping[str, Any]) -> Any:
    """Why the record is where it is: the dead reason, else the last error."""
    return record.get("dead_reason") or record.get("last_error")


def render_records(records: list[dict[str, Any]], page: Mapping[str, Any]) -> str:
    lines = [table(records, RECORD_COLUMNS, empty="(no records)")]
    if page.get("next"):
        lines.append(f"next: {page['next']}")
    if page.get("has_more"):
        lines.append("more: yes (records list … --after NEXT, or --all)")
    return "\n".join(lines)


def list_records(args: argparse.Namespace, api: OpsApi) -> int:
    path = args.kind.path
    if not args.all:
        page = api.records(path, args.state, after=args.after, limit=args.limit)
        if args.json:
            emit_json(page)
        else:
            emit(render_records(page.get("records") or [], page))
        return 0
    records: list[dict[str, Any]] = []
    cursor, page = args.after, {}
    with progress(_count(api, args), f"{path} {args.state}", enabled=not args.json) as bar:
        while True:
            page = api.records(path, args.state, after=cursor, limit=args.limit)
            found = page.get("records") or []
            records += found
            bar.update(len(found))
            cursor = page.get("next")
            if not page.get("has_more") or not cursor:
                break
    whole = {"kind": path, "state": args.state, "records": records, "next": cursor, "has_more": False}
    if args.json:
        emit_json(whole)
    else:
        emit(render_records(records, {}))
    return 0


def show(args: argparse.Namespace, api: OpsApi) -> int:
    path, record_id = args.kind.path, args.record_id
    record = api.record(path, record_id)
    if args.wait:
        deadline = time.monotonic() + args.wait_timeout
        while record.get("state") != args.wait:
            if record.get("state") in SETTLED:
                raise CliError(
                    f"{path} {record_id} is {record.get('state')}, not {args.wait}: {brief(reason_of(record), 200)}"
                )
            if time.monotonic() >= deadline:
                raise CliError(
                    f"{path} {record_id} is still {record.get('state')} after {args.wait_timeout:g} s "
                    f"(waiting for {args.wait}; is the sync running? taobao-bridge status)"
                )
            time.sleep(1.0)
            record = api.record(path, record_id)
    if args.json:
        emit_json(record)
    else:
        emit(key_values(record.items()))
    return 0


def retry(args: argparse.Namespace, api: OpsApi) -> int:
    if args.state:
        return _retry_by_state(args, api)
    path = args.kind.path
    results: list[dict[str, Any]] = []
    failed = 0
    with progress(len(args.record_ids), f"retry {path}", enabled=not args.json and len(args.record_ids) > 1) as bar:
        for record_id in args.record_ids:
            try:
                answer = api.retry(path, record_id)
            except ApiError as exc:
                failed += 1
                results.append({"id": record_id, "status": "error", "error": exc.code, "message": exc.message})
                if not args.json:
                    _error_line(f"{record_id}: {_retry_refusal(exc)}")
            else:
                results.append(answer)
                if not args.json:
                    emit(f"{record_id}: {answer.get('status', 'retried')}, now {answer.get('state', 'due')}")
            bar.update(1)
    if args.json:
        emit_json({"kind": path, "results": results, "retried": len(results) - failed, "failed": failed})
    if failed:
        if args.json:
            _error_line(f"{failed} of {len(args.record_ids)} records not retried")
        return 1
    return 0


def _retry_refusal(exc: ApiError) -> str:
    if exc.code == "not_retryable" and isinstance(exc.body, Mapping) and exc.body.get("state"):
        return f"not retried: it is {exc.body['state']} (only dead or unconfirmed records are)"
    return str(exc)


def _retry_by_state(args: argparse.Namespace, api: OpsApi) -> int:
    path = args.kind.path
    if args.dry_run:
        preview = api.retry_by_state(path, args.state, dry_run=True, limit=args.limit)
        if args.json:
            emit_json(preview)
        else:
            more = " (and more)" if preview.get("has_more") else ""
            emit(f"{preview.get('matched', 0)}{more} {args.state} {path} would be made due again (dry run)")
            for record_id in preview.get("ids") or []:
                emit(f"  {record_id}")
        return 0
    retried: list[str] = []
    answer: dict[str, Any] = {}
    with progress(args.limit or _count(api, args), f"retry {path}", enabled=not args.json) as bar:
        while True:
            room = None if args.limit is None else min(args.limit - len(retried), MAX_PAGE)
            answer = api.retry_by_state(path, args.state, dry_run=False, limit=room)
            ids = answer.get("ids") or []
            retried += ids
            bar.update(int(answer.get("retried", len(ids))))
            # Stop when nothing moved too: records dying again as fast as they are retried must not loop forever.
            full = args.limit is not None and len(retried) >= args.limit
            if not answer.get("has_more") or not answer.get("retried") or full:
                break
    if args.json:
        emit_json(
            {
                "state": args.state,
                "dry_run": False,
                "retried": len(retried),
                "ids": retried,
                "has_more": bool(answer.get("has_more")),
            }
        )
    else:
        emit(f"{len(retried)} {args.state} {path} made due again; the next sync run sends them")
    return 0


def _count(api: OpsApi, args: argparse.Namespace) -> int | None:
    """How many records are in the state now (for the progress bar), when the status route can say."""
    if not sys.stderr.isatty() or args.json:
        return None
    try:
        counts = api.status().get("kinds", {}).get(args.kind.kind.value, {})
    except CliError:
        return None
    value = counts.get(args.state) if isinstance(counts, Mapping) else None
    return value if isinstance(value, int) else None


def _error_line(text: str) -> None:
    print(f"error: {' '.join(text.split())}", file=sys.stderr, flush=True)
