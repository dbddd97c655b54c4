"""``submit`` (records to the intake API, in chunks) and ``send-qimen`` (a signed fulfillment order)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from taobao_bridge.intake import MAX_RECORDS_PER_REQUEST
from taobao_bridge.jsonutil import dumps, loads_strict

from .api import OpsApi, api_error, parse_retry_after
from .errors import CliError, NotReachable
from .output import emit, emit_json, progress

__all__ = ["Submission", "read_input", "send_qimen", "submit"]

STORED = ("accepted", "duplicate", "replaced")  # statuses of records the outbox holds as sent
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
ATTEMPTS = 5  # per chunk; accepting is idempotent, so sending a chunk again is always safe
PROJECT_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_ORDER = PROJECT_ROOT / "events" / "qimen_fulfillment_create.json"


@dataclass
class Submission:
    """What happened to the records of one ``submit``; ``problems`` index into all records read."""

    kind: str
    total: int
    statuses: Counter[str] = field(default_factory=Counter)
    problems: list[dict[str, Any]] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    stopped_at: int | None = None  # the first record of the chunk the submission stopped at
    error: str | None = None

    @property
    def unanswered(self) -> int:
        """Records without a status of their own: in a refused chunk, or never sent."""
        return self.total - sum(self.statuses.values())

    @property
    def ok(self) -> bool:
        return sum(self.statuses[s] for s in STORED) == self.total

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "total": self.total,
            "statuses": dict(self.statuses),
            "problems": self.problems,
            "conflicts": self.conflicts,
            "unanswered": self.unanswered,
            "stopped_at": self.stopped_at,
            "error": self.error,
        }

    def lines(self) -> list[str]:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(self.statuses.items())) or "nothing stored"
        out = [f"{self.total} {self.kind}: {counts}"]
        if self.unanswered:
            out[0] += f", {self.unanswered} not stored (stopped at record {self.stopped_at})"
        out += [f"  record {p.get('index')} field {p.get('field')}: {p.get('rule')}" for p in self.problems[:50]]
        if len(self.problems) > 50:
            out.append(f"  … and {len(self.problems) - 50} more problems")
        out += [f"  conflict: {rid} was received before with other content (it is not dead)" for rid in self.conflicts]
        return out

    def failure(self) -> str:
        """The one error line for a submission that did not store everything."""
        if self.error:
            return self.error
        unstored = self.total - sum(self.statuses[s] for s in STORED)
        return f"{unstored} of {self.total} records not stored (see the summary above)"


def submit(args: argparse.Namespace, api: OpsApi) -> int:
    spec = args.kind
    records = read_input(args.file, spec)
    if not records:
        raise CliError(f"{args.file} holds no records")
    chunk_size = min(args.chunk_size, MAX_RECORDS_PER_REQUEST)
    result = Submission(spec.path, len(records))
    with progress(len(records), spec.path, enabled=not args.json) as bar:
        for start in range(0, len(records), chunk_size):
            chunk = records[start : start + chunk_size]
            if not _send_chunk(api, spec.path, chunk, start, result):
                result.stopped_at = start
                break
            bar.update(len(chunk))
    if args.json:
        emit_json(result.to_dict())
    else:
        emit("\n".join(result.lines()))
    if result.ok:
        return 0
    print(f"error: {result.failure()}", file=sys.stderr, flush=True)
    return 1


def _send_chunk(api: OpsApi, path: str, chunk: list[dict[str, Any]], start: int, result: Submission) -> bool:
    """POST one chunk, retrying what may succeed later; False when the submission must stop here."""
    where = f"records {start}..{start + len(chunk) - 1}"
    content = dumps(chunk).encode("utf-8")
    response = None
    for attempt in range(ATTEMPTS):
        try:
            response = api.intake(path, content)
        except NotReachable as exc:
            if attempt == ATTEMPTS - 1:
                result.error = f"{where}: {exc}; sending the file again is safe"
                return False
            time.sleep(0.5 * 2**attempt)
            continue
        if response.status_code not in _RETRY_STATUSES or attempt == ATTEMPTS - 1:
            break
        time.sleep(parse_retry_after(response.headers.get("retry-after"), default=0.5 * 2**attempt))
    assert response is not None
    body = _json_or_none(response)
    answered = body.get("records") if isinstance(body, dict) else None
    if response.status_code in (200, 202, 409) and isinstance(answered, list):
        for record in answered:
            status = str(record.get("status"))
            result.statuses[status] += 1
            if status == "conflict":
                result.conflicts.append(str(record.get("id")))
        return True
    if response.status_code == 400 and isinstance(body, dict) and body.get("error") == "invalid_records":
        result.problems += [{**p, "index": start + int(p.get("index", 0))} for p in body.get("problems", [])]
        result.error = f"{where}: {body.get('problem_count', len(result.problems))} problems; nothing of them stored"
        return False
    if isinstance(answered, list):  # a 503 after the retries: each record's status says what is stored
        for record in answered:
            result.statuses[str(record.get("status"))] += 1
    result.error = f"{where}: {api_error(response)}"
    return False


def read_input(name: str, spec: Any) -> list[dict[str, Any]]:
    """Records from ``.jsonl``/``.csv`` (as ``bridge_local intake`` reads them), ``.json`` (an object or a
    list), or ``-``: JSON lines (or one JSON list) from stdin."""
    from bridge_local.intake_client import ReadError, read_records

    try:
        if name == "-":
            return _parse_json_text(sys.stdin.read(), "stdin", whole=False)
        if name.lower().endswith(".json"):
            return _parse_json_text(Path(name).read_text(encoding="utf-8"), name, whole=True)
        return read_records(name, spec.kind)
    except ReadError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot read {name}: {exc.strerror or exc}") from None


def _parse_json_text(text: str, where: str, *, whole: bool) -> list[dict[str, Any]]:
    """One JSON document (an object or a list of them) when ``whole`` or the text starts with ``[``; else JSON
    lines."""
    documents = [(1, text)] if whole or text.lstrip().startswith("[") else list(enumerate(text.splitlines(), 1))
    records: list[dict[str, Any]] = []
    for number, line in documents:
        if not line.strip():
            continue
        try:
            value = loads_strict(line)
        except ValueError as exc:
            raise CliError(f"{where}:{number}: not valid JSON: {exc}") from None
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(item, dict) for item in items):
            raise CliError(f"{where}:{number}: expected JSON objects (one per line, or a list of them)")
        records += items
    return records


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


# ------------------------------------------------------------------------------------------------- send-qimen
def send_qimen(args: argparse.Namespace, api: OpsApi) -> int:
    from bridge_local.qimen_client import QimenCaller, new_order_no

    from .target import local_qimen_secret

    source = Path(args.file) if args.file else SAMPLE_ORDER
    payload = _load_payload(source)
    if args.new_order_no:
        info = payload.setdefault("fulfillment_info", {})
        if not isinstance(info, dict):
            raise CliError(f"{source}: fulfillment_info is not an object")
        info["fulfillment_order_no"] = new_order_no()
    target = api.target
    secret = args.secret or (target.stack.qimen_secret() if target.stack is not None else local_qimen_secret())
    url = target.qimen_url
    with httpx.Client(timeout=args.timeout) as client:
        try:
            response = QimenCaller(url, secret, client=client).send(dumps(payload).encode("utf-8"), method=args.method)
        except httpx.ConnectError:
            if target.local:
                message = f"the local stack is not running at {target.base_url}: start it with `make run`"
                raise NotReachable(message) from None
            raise NotReachable(f"cannot connect to {url}") from None
        except httpx.HTTPError as exc:
            raise NotReachable(f"POST {url} failed: {' '.join(str(exc).split())}") from None
    answer = _json_or_none(response)
    inner = answer.get("response", answer) if isinstance(answer, dict) else None
    if not isinstance(inner, dict):
        raise CliError(f"POST {url} answered HTTP {response.status_code} with a body that is not a Qimen answer")
    order_no = (payload.get("fulfillment_info") or {}).get("fulfillment_order_no")
    if args.json:
        emit_json({"fulfillment_order_no": order_no, "http_status": response.status_code, "answer": inner})
    if inner.get("biz_result") == "success":
        if not args.json:
            emit(f"fulfillment order {order_no}: success, partner_order_id {inner.get('partner_order_id')}")
        return 0
    code, message = inner.get("biz_error_code") or "fail", inner.get("biz_error_msg") or ""
    raise CliError(f"Qimen answer for {order_no}: {code}: {message}")


def _load_payload(path: Path) -> dict[str, Any]:
    """A payload file, or an API Gateway event file (its body is used)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "rawQueryString" in data and "body" in data:
            data = json.loads(data["body"])
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise CliError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CliError(f"{path}: expected a JSON object (a Qimen payload)")
    return data
