"""A local TOP gateway (``/router/rest``) for tests and the local stack, over real HTTP.

It behaves like the real gateway described in ``shared/protocol.md``: strict system-parameter and signature
checks (the signature is recomputed over EVERY received parameter except ``sign``, empty values included, so a
client that sends an unsigned empty value gets ``25 Invalid signature`` exactly as in production), session
checks, per-API parameter checks written independently from the project's models (from the seed documents), the
success envelopes of the three outbound APIs, and fault injection (bans, daily quota, ``isp.*`` errors, HTTP 502,
timeouts with or without processing, slow answers, refused records, expired session).

Standard library only. Development tool: nothing here is deployed.

Usage::

    with TopSandbox(app_key="k", app_secret="s", session_key="x") as sandbox:
        ...  # point the client at sandbox.url
        sandbox.set_faults(isp_error_next=2)
        assert sandbox.accepted_records("tmall.car.local.service.order.writeoff.sync")

Command line: ``python -m bridge_local.top_sandbox --port 3001 --app-key K --app-secret S --session-key X``
(defaults from ``TOP_APP_KEY``, ``TOP_APP_SECRET``, ``TOP_SESSION_KEY`` or else the local stack's defaults, and
``TOP_SANDBOX_PORT``; initial faults from the JSON file named by ``TOP_SANDBOX_FAULTS`` or ``--faults``).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gzip
import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import signal
import string
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit
from xml.sax.saxutils import escape as xml_escape

from taobao_bridge.clock import PLATFORM_TZ, format_platform_time, parse_platform_time, system_clock
from taobao_bridge.jsonutil import dumps, loads_strict
from taobao_bridge.signing import SignMethod, canonical_text, digest

__all__ = [
    "EXTERNAL_ORDER_METHOD",
    "RISK_METHOD",
    "WRITEOFF_METHOD",
    "Faults",
    "RecordedCall",
    "TopSandbox",
    "main",
    "order_id_for",
    "response_key",
]

logger = logging.getLogger("bridge_local.top_sandbox")

WRITEOFF_METHOD = "tmall.car.local.service.order.writeoff.sync"
RISK_METHOD = "taobao.aliauto.risk.info.tmall.yc.service.sync"
EXTERNAL_ORDER_METHOD = "tmall.aliauto.trade.external.order.sycn"  # "sycn": the platform's spelling

ROUTER_PATH = "/router/rest"
TIMESTAMP_SKEW = timedelta(minutes=10)
REFUSE_STYLES = ("error_response", "result")
_TIMESTAMP_RE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", re.ASCII)
_VERSION_RE = re.compile(r"\d+(\.\d+)*", re.ASCII)
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_REQUEST_ID_ALPHABET = string.ascii_lowercase + string.digits


# --------------------------------------------------------------------------------------------------------------
# Faults and recorded calls
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Faults:
    """Injected failures; all off by default. ``*_next`` counters are consumed one per call that passed the
    signature check and reached that fault (a bad-signature call never consumes one)."""

    rate_limit_next: int = 0  # the next K calls each trigger a ban of ban_seconds (code 7)
    ban_seconds: int = 0
    daily_quota_exceeded: bool = False  # code 7 accesscontrol.limited-by-app-access-count until midnight UTC+8
    isp_error_next: int = 0  # code 15 isp.remote-service-error, not processed
    service_unavailable_next: int = 0  # code 10 isp.service-unavailable, not processed
    http_500_next: int = 0  # HTTP 502 with an HTML body, not processed
    timeout_next: int = 0  # sleep timeout_sleep_s before answering
    timeout_sleep_s: float = 5.0
    timeout_processes: bool = True  # processed (records accepted) before the sleep: the "unknown outcome" case
    slow_ms: int = 0  # every /router/rest answer delayed by this much
    refuse: dict[str, list[Any]] = field(default_factory=dict)  # method -> record-key values refused
    refuse_style: str = "error_response"  # or "result" (business refusal in a success envelope)
    session_expired: bool = False  # code 27 invalid-sessionkey for APIs that need a session

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Faults:
        """Validated construction from JSON-like data; raises ``ValueError`` naming the bad key."""
        if not isinstance(data, Mapping):
            raise ValueError("faults must be a JSON object")
        faults = cls()
        faults.update(**dict(data))
        return faults

    def update(self, **changes: Any) -> None:
        """Validate every change first, then apply them all (no half-applied update)."""
        checked = {name: _check_fault_value(name, value) for name, value in changes.items()}
        for name, value in checked.items():
            setattr(self, name, value)


_FAULT_FIELDS = {f.name: f for f in dataclasses.fields(Faults)}


def _check_fault_value(name: str, value: Any) -> Any:
    if name not in _FAULT_FIELDS:
        raise ValueError(f"unknown fault {name!r}; known: {', '.join(sorted(_FAULT_FIELDS))}")
    default = getattr(Faults(), name)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"fault {name} must be a boolean")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"fault {name} must be a non-negative integer")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"fault {name} must be a non-negative number")
        return float(value)
    if name == "refuse":
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, (list, tuple)) for k, v in value.items()
        ):
            raise ValueError("fault refuse must map a method name to a list of record-key values")
        return {k: list(v) for k, v in value.items()}
    if name == "refuse_style":
        if value not in REFUSE_STYLES:
            raise ValueError(f"fault refuse_style must be one of {', '.join(REFUSE_STYLES)}")
        return value
    raise ValueError(f"fault {name} cannot be set")  # pragma: no cover - every field is handled above


@dataclass
class RecordedCall:
    """One call received at /router/rest, accepted or not."""

    method: str  # "" when the call had no method parameter
    params: dict[str, str]  # everything received (query and body merged)
    api_payload: Any  # decoded JSON of the API parameter, or None
    outcome: str  # "ok", str(error code), a business error code for result-style refusals, or "http_502"
    records: int  # records in the call (0 when the API parameter could not be decoded)
    received_at: datetime
    session: str | None
    sign_method: str
    request_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["received_at"] = self.received_at.isoformat()
        return data


def response_key(method: str) -> str:
    """The success wrapper key: dots as underscores, the leading ``taobao.`` dropped (as TOP does)."""
    return method.removeprefix("taobao.").replace(".", "_") + "_response"


def order_id_for(idempotent_id: str) -> int:
    """The platform order id the sandbox gives an idempotent id: deterministic, 16 to 19 digits, fits a Java
    ``long`` and is usually above 2**53 (so a client that goes through floats loses digits)."""
    low = 10**15
    value = int.from_bytes(hashlib.sha256(idempotent_id.encode("utf-8")).digest()[:8], "big")
    return low + value % (_LONG_MAX - low + 1)


# --------------------------------------------------------------------------------------------------------------
# API parameter schemas (from the seed documents, written independently of the project's models)
# --------------------------------------------------------------------------------------------------------------

_NUMBER, _STRING, _DATE, _BOOLEAN, _OBJECT = "Number", "String", "Date", "Boolean", "Object"


@dataclass(frozen=True)
class _Field:
    kind: str
    required: bool = False
    children: Mapping[str, _Field] | None = None


def _n(required: bool = False) -> _Field:
    return _Field(_NUMBER, required)


def _s(required: bool = False) -> _Field:
    return _Field(_STRING, required)


def _d(required: bool = False) -> _Field:
    return _Field(_DATE, required)


WRITEOFF_FIELDS: dict[str, _Field] = {
    "biz_type": _n(True),
    "service_sku_name": _s(),
    "service_store_id": _s(),
    "apply_refund_num": _n(),
    "verify_time": _d(True),
    "tb_store_id": _n(True),
    "port_no": _s(),
    "refund_success_num": _n(),
    "service_status": _n(True),
    "service_id": _n(True),
    "verify_num": _n(),
    "service_sku_id": _s(),
    "category_id": _n(),
    "user_name": _s(),
    "sale_num": _n(),
    "appoint_store_id": _n(),
    "maintain_id": _n(),
    "left_num": _n(),
    "verify_batch_no": _s(),
    "tb_store_name": _s(),
    "third_sub_goods_order": _s(),
    "used_num": _n(),
    "service_detail_id": _n(True),
    "tb_biz_order_id": _n(True),
}

RISK_FIELDS: dict[str, _Field] = {
    "service_code": _s(),
    "install_type": _n(True),
    "buyer_phone": _s(True),
    "tc_order_id": _n(True),
    "tc_sub_order_id": _n(True),
    "car_license_num": _s(),
    "service_use_time": _d(),
    "buyer_name": _s(True),
    "work_order_submit_time": _d(),
}

_USER_INFO = {"user_nick": _s(), "user_phone": _s(), "user_id": _n()}

# Nesting follows the seed's Java example: idempotent_id, hide, source, ext_info and pay_order_info are fields of
# SyncSingleOrderReq itself, whatever the flattened table suggests.
EXTERNAL_ORDER_FIELDS: dict[str, _Field] = {
    "buyer_info": _Field(_OBJECT, children=_USER_INFO),
    "hide": _Field(_BOOLEAN),
    "order_info": _Field(
        _OBJECT,
        children={
            "biz_type": _n(),
            "pay_time": _d(),
            "out_order_id": _s(),
            "end_time": _d(),
            "gmt_create": _d(),
            "total_fee": _n(),
        },
    ),
    "source": _s(),
    "item_info": _Field(
        _OBJECT,
        children={
            "item_id": _n(),
            "item_title": _s(),
            "root_cat": _n(),
            "item_price": _n(),
            "category_id": _n(),
            "buy_amount": _n(),
        },
    ),
    "seller_info": _Field(_OBJECT, children=_USER_INFO),
    "pay_order_info": _Field(_OBJECT, children={"channel": _s(), "pay_order_id": _s()}),
    "idempotent_id": _s(True),
    "ext_info": _s(),
}


@dataclass(frozen=True)
class _ApiSpec:
    param: str  # the top-level API parameter
    record_key: str  # the field that identifies a record (refuse faults match on it)
    needs_session: bool


API_SPECS: dict[str, _ApiSpec] = {
    WRITEOFF_METHOD: _ApiSpec("local_order_write_off_d_t_o_list", "tb_biz_order_id", False),
    RISK_METHOD: _ApiSpec("risk_info_sync_request", "tc_sub_order_id", True),
    EXTERNAL_ORDER_METHOD: _ApiSpec("sync_single_order_req", "idempotent_id", False),
}
WRITEOFF_MAX = 999
RISK_MAX = 100


class _TopError(Exception):
    def __init__(self, code: int, msg: str, sub_code: str | None = None, sub_msg: str | None = None) -> None:
        super().__init__(f"{code} {msg} {sub_code} {sub_msg}")
        self.code = code
        self.msg = msg
        self.sub_code = sub_code
        self.sub_msg = sub_msg


def _missing(name: str) -> _TopError:
    return _TopError(40, "Missing required arguments", f"isv.missing-parameter:{name}", f"missing parameter {name}")


def _invalid(sub_msg: str) -> _TopError:
    return _TopError(41, "Invalid arguments", "isv.invalid-parameter", sub_msg)


def _value_problem(value: Any, spec: _Field, path: str) -> str | None:
    """What is wrong with one non-null value, or None."""
    if spec.kind == _NUMBER:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"field {path} must be a JSON integer (Number), got {json.dumps(value, ensure_ascii=False)}"
        if not _LONG_MIN <= value <= _LONG_MAX:
            return f"field {path} is out of the 64-bit integer range"
        return None
    if spec.kind == _STRING:
        if not isinstance(value, str):
            return f"field {path} must be a JSON string, got {json.dumps(value, ensure_ascii=False)}"
        if spec.required and not value.strip():
            return f"field {path} is required and must not be blank"
        return None
    if spec.kind == _BOOLEAN:
        return None if isinstance(value, bool) else f"field {path} must be a JSON boolean"
    if spec.kind == _DATE:
        if not isinstance(value, str) or not _TIMESTAMP_RE.fullmatch(value):
            return f"field {path} must be a Date 'yyyy-MM-dd HH:mm:ss', got {json.dumps(value, ensure_ascii=False)}"
        try:
            parse_platform_time(value)
        except ValueError:
            return f"field {path} is not a valid date: {value!r}"
        return None
    assert spec.children is not None
    return _object_problem(value, spec.children, path + ".")


def _object_problem(obj: Any, schema: Mapping[str, _Field], prefix: str = "") -> str | None:
    """The first problem of one record (unknown field, missing/null required field, wrong type), or None."""
    if not isinstance(obj, dict):
        return f"{prefix or 'record'} must be a JSON object"
    for key in obj:
        if key not in schema:
            # The real gateway would silently drop it; an unknown field here is almost always a nesting or naming
            # mistake in the client (e.g. order_info.source instead of source), so the sandbox refuses it.
            return f"field {prefix}{key} is not a field of this API"
    for key, spec in schema.items():
        value = obj.get(key)
        if value is None:
            if spec.required:
                return f"field {prefix}{key} is required (missing or null)"
            continue
        problem = _value_problem(value, spec, f"{prefix}{key}")
        if problem:
            return problem
    return None


def _decode_param(params: Mapping[str, str], name: str) -> Any:
    text = params.get(name)
    if text is None or not text.strip():
        raise _missing(name)
    try:
        return loads_strict(text)
    except ValueError as exc:  # JSONDecodeError and DuplicateKeyError
        raise _invalid(f"parameter {name} is not a valid JSON text: {exc}") from None


def _count_records(method: str, payload: Any) -> int:
    if method == WRITEOFF_METHOD:
        return len(payload) if isinstance(payload, list) else 0
    if method == RISK_METHOD:
        contents = payload.get("contents") if isinstance(payload, dict) else None
        return len(contents) if isinstance(contents, list) else 0
    return 1 if isinstance(payload, dict) else 0


def _validated_records(method: str, payload: Any) -> list[dict[str, Any]]:
    """The records of a decoded API parameter, or ``_TopError`` 41 naming the first problem."""
    spec = API_SPECS[method]
    if method == WRITEOFF_METHOD:
        if not isinstance(payload, list):
            raise _invalid(f"parameter {spec.param} must be a JSON list")
        records, schema, limit = payload, WRITEOFF_FIELDS, WRITEOFF_MAX
        where = spec.param
    elif method == RISK_METHOD:
        problem = None
        if not isinstance(payload, dict):
            problem = f"parameter {spec.param} must be a JSON object"
        elif set(payload) - {"contents"}:
            problem = f"parameter {spec.param}: unknown field {sorted(set(payload) - {'contents'})[0]}"
        elif payload.get("contents") is None:
            problem = f"parameter {spec.param}: field contents is required (missing or null)"
        elif not isinstance(payload["contents"], list):
            problem = f"parameter {spec.param}: field contents must be a JSON list"
        if problem:
            raise _invalid(problem)
        records, schema, limit = payload["contents"], RISK_FIELDS, RISK_MAX
        where = f"{spec.param}.contents"
    else:
        if not isinstance(payload, dict):
            raise _invalid(f"parameter {spec.param} must be a JSON object")
        records, schema, limit, where = [payload], EXTERNAL_ORDER_FIELDS, 1, spec.param
    if not 1 <= len(records) <= limit:
        raise _invalid(f"{where}: list length {len(records)} is outside the limit 1..{limit}")
    for index, record in enumerate(records):
        problem = _object_problem(record, schema)
        if problem:
            raise _invalid(f"record {index}: {problem} ({where})")
    return records


# --------------------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------------------


def _new_request_id() -> str:
    return "".join(secrets.choice(_REQUEST_ID_ALPHABET) for _ in range(13))


def _xml_value(tag: str, value: Any) -> str:
    if isinstance(value, dict):
        inner = "".join(_xml_value(k, v) for k, v in value.items())
    elif isinstance(value, list):
        return "".join(_xml_value(tag, item) for item in value)
    elif isinstance(value, bool):
        inner = "true" if value else "false"
    elif value is None:
        inner = ""
    else:
        inner = xml_escape(str(value))
    return f"<{tag}>{inner}</{tag}>"


def _render(document: dict[str, Any], fmt: str) -> tuple[bytes, str]:
    """A response document (one root key) as JSON or, for ``format=xml`` (the documented default), XML."""
    if fmt == "xml":
        ((root, value),) = document.items()
        text = '<?xml version="1.0" encoding="utf-8" ?>' + _xml_value(root, value)
        return text.encode("utf-8"), "text/xml;charset=UTF-8"
    return dumps(document).encode("utf-8"), "application/json;charset=UTF-8"


_BAD_GATEWAY_HTML = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>"
    b"\r\n<hr><center>Tengine (top-sandbox)</center>\r\n</body>\r\n</html>\r\n"
)


@dataclass
class _Reply:
    status: int
    body: bytes
    content_type: str
    delay_s: float = 0.0
    compressible: bool = True


# --------------------------------------------------------------------------------------------------------------
# The sandbox
# --------------------------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    sandbox: TopSandbox


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "top-sandbox"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline(65537).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, reply: _Reply) -> None:
        body = reply.body
        headers = {"Content-Type": reply.content_type}
        if reply.compressible and "gzip" in self.headers.get("Accept-Encoding", "").lower():
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        try:
            self.send_response(reply.status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            # The client gave up (e.g. its read timeout during a timeout fault): nothing left to answer.
            self.close_connection = True

    def _json(self, status: int, value: Any) -> None:
        self._send(_Reply(status, dumps(value).encode("utf-8"), "application/json;charset=UTF-8", compressible=False))

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            self._json(400, {"error": "unreadable request body"})
            return
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        query = parts.query
        sandbox = self.server.sandbox
        try:
            if path == ROUTER_PATH and self.command in ("POST", "GET"):
                params = dict(parse_qsl(query, keep_blank_values=True, encoding="utf-8", errors="replace"))
                content_type = self.headers.get("Content-Type", "").lower()
                if body and (not content_type or content_type.startswith("application/x-www-form-urlencoded")):
                    text = body.decode("utf-8", errors="replace")
                    params.update(parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="replace"))
                reply = sandbox._handle_router(params)
                if reply.delay_s > 0:
                    sandbox._stopping.wait(reply.delay_s)
                self._send(reply)
            else:
                self._admin(path, parse_qs(query), body, sandbox)
        except Exception:  # pragma: no cover - a sandbox bug must not kill the connection silently
            logger.exception("top sandbox: internal error on %s %s", self.command, path)
            self._json(500, {"error": "sandbox internal error"})

    def _admin(self, path: str, query: dict[str, list[str]], body: bytes, sandbox: TopSandbox) -> None:
        method_filter = query["method"][0] if query.get("method") else None
        if path == "/healthz" and self.command in ("GET", "HEAD"):
            self._json(200, {"status": "ok"})
        elif path == "/_sandbox/calls" and self.command == "GET":
            self._json(200, [call.to_dict() for call in sandbox.calls(method_filter)])
        elif path == "/_sandbox/calls" and self.command == "DELETE":
            sandbox.clear()
            self._json(200, {"cleared": True})
        elif path == "/_sandbox/records" and self.command == "GET":
            if method_filter:
                self._json(200, sandbox.accepted_records(method_filter))
            else:
                self._json(200, {m: sandbox.accepted_records(m) for m in API_SPECS})
        elif path == "/_sandbox/faults" and self.command == "GET":
            self._json(200, sandbox.faults_snapshot().to_dict())
        elif path == "/_sandbox/faults" and self.command in ("POST", "PUT", "PATCH"):
            try:
                data = json.loads(body or b"{}")
                if self.command == "PATCH":
                    if not isinstance(data, dict):
                        raise ValueError("faults must be a JSON object")
                    sandbox.set_faults(**data)
                else:
                    sandbox.replace_faults(Faults.from_dict(data))
            except (ValueError, TypeError) as exc:
                self._json(400, {"error": str(exc)})
                return
            self._json(200, sandbox.faults_snapshot().to_dict())
        else:
            self._json(404, {"error": "not found", "path": path, "method": self.command})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch


class TopSandbox:
    """A local TOP gateway on 127.0.0.1. ``start()`` serves in a daemon thread; ``url`` is the router URL."""

    def __init__(
        self,
        *,
        app_key: str,
        app_secret: str,
        session_key: str,
        port: int = 0,
        faults: Faults | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.app_key = app_key
        self._app_secret = app_secret
        self.session_key = session_key
        self._requested_port = port
        self.faults = faults if faults is not None else Faults()
        self._clock = clock or system_clock
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._calls: list[RecordedCall] = []
        self._accepted: dict[str, list[dict[str, Any]]] = {}
        self._seen_idempotent: set[str] = set()
        self._ban_until: datetime | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:  # never shows the secret
        return f"TopSandbox(app_key={self.app_key!r}, url={self._url_or_none()!r})"

    # lifecycle --------------------------------------------------------------------------------------------------

    def start(self) -> TopSandbox:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server(("127.0.0.1", self._requested_port), _Handler)
        server.sandbox = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="top-sandbox", daemon=True
        )
        self._thread.start()
        logger.info("TOP sandbox listening on %s (app_key=%s)", self.url, self.app_key)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes handlers sleeping in a timeout/slow fault
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        logger.info("TOP sandbox stopped")

    def __enter__(self) -> TopSandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("TopSandbox is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.base_url + ROUTER_PATH

    def _url_or_none(self) -> str | None:
        return self.url if self._server is not None else None

    # faults -----------------------------------------------------------------------------------------------------

    def set_faults(self, **changes: Any) -> None:
        """Change some faults (validated; ``ValueError`` on an unknown name or a bad value). An active ban stays."""
        with self._lock:
            self.faults.update(**changes)

    def replace_faults(self, faults: Faults) -> None:
        """Replace all faults and lift any active ban."""
        with self._lock:
            self.faults = faults
            self._ban_until = None

    def reset(self) -> None:
        """All faults off and any active ban lifted."""
        self.replace_faults(Faults())

    def faults_snapshot(self) -> Faults:
        with self._lock:
            return copy.deepcopy(self.faults)

    # inspection -------------------------------------------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[RecordedCall]:
        with self._lock:
            return [c for c in self._calls if method is None or c.method == method]

    def accepted_records(self, method: str) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._accepted.get(method, []))

    def clear(self) -> None:
        """Forget recorded calls, accepted records and the idempotent ids seen (faults are kept)."""
        with self._lock:
            self._calls.clear()
            self._accepted.clear()
            self._seen_idempotent.clear()

    # request handling -------------------------------------------------------------------------------------------

    def _handle_router(self, params: dict[str, str]) -> _Reply:
        now = self._clock()
        method = params.get("method", "")
        call = RecordedCall(
            method=method,
            params=dict(params),
            api_payload=None,
            outcome="",
            records=0,
            received_at=now,
            session=params.get("session"),
            sign_method=params.get("sign_method") or SignMethod.MD5.value,
            request_id=_new_request_id(),
        )
        spec = API_SPECS.get(method)
        if spec is not None and spec.param in params:
            try:
                call.api_payload = json.loads(params[spec.param])
                call.records = _count_records(method, call.api_payload)
            except ValueError:
                pass
        fmt = (params.get("format") or "xml").lower()
        if fmt not in ("json", "xml"):
            fmt = "json"
        simplify = (params.get("simplify") or "").lower() == "true"

        try:
            self._check_system(params, now)
        except _TopError as error:
            call.outcome = str(error.code)
            return self._finish(call, self._error_reply(error, fmt, call.request_id))

        with self._lock:
            faults = self.faults
            slow_s = faults.slow_ms / 1000.0
            if faults.http_500_next > 0:
                faults.http_500_next -= 1
                call.outcome = "http_502"
                reply = _Reply(502, _BAD_GATEWAY_HTML, "text/html", slow_s, compressible=False)
                return self._finish(call, reply)
            timeout_s = 0.0
            try:
                self._check_access(now)
                if faults.timeout_next > 0:
                    faults.timeout_next -= 1
                    timeout_s = faults.timeout_sleep_s
                    if not faults.timeout_processes:
                        raise _TopError(
                            15,
                            "Remote service error",
                            "isp.remote-service-timeout",
                            "sandbox: timed out, not processed",
                        )
                reply = self._process(call, params, fmt, simplify)
            except _TopError as error:
                call.outcome = str(error.code)
                reply = self._error_reply(error, fmt, call.request_id)
            # A timeout fault delays whatever the answer is (processed first when timeout_processes).
            reply.delay_s = timeout_s + slow_s
            return self._finish(call, reply)

    def _finish(self, call: RecordedCall, reply: _Reply) -> _Reply:
        if not call.outcome:
            call.outcome = "ok"
        with self._lock:
            self._calls.append(call)
        logger.info(
            "TOP call method=%s records=%d outcome=%s request_id=%s",
            call.method or "-",
            call.records,
            call.outcome,
            call.request_id,
        )
        return reply

    def _error_reply(self, error: _TopError, fmt: str, request_id: str | None) -> _Reply:
        body: dict[str, Any] = {"code": error.code, "msg": error.msg}
        if error.sub_code:
            body["sub_code"] = error.sub_code
        if error.sub_msg:
            body["sub_msg"] = error.sub_msg
        body["request_id"] = request_id
        data, content_type = _render({"error_response": body}, fmt)
        return _Reply(200, data, content_type)

    def _check_system(self, params: Mapping[str, str], now: datetime) -> None:
        """System parameters and signature, in the gateway's order; raises ``_TopError``."""
        method = params.get("method", "")
        if not method:
            raise _TopError(21, "Missing Method", "isv.missing-parameter:method", "parameter method is missing")
        app_key = params.get("app_key", "")
        if not app_key:
            raise _TopError(28, "Missing App Key", "isv.missing-parameter:app_key", "parameter app_key is missing")
        if not hmac.compare_digest(app_key.encode("utf-8"), self.app_key.encode("utf-8")):
            raise _TopError(29, "Invalid App Key", "isv.appkey-not-exists", f"app key {app_key} does not exist")
        sign = params.get("sign", "")
        if not sign:
            raise _TopError(24, "Missing Signature", "isv.missing-parameter:sign", "parameter sign is missing")
        sign_method = params.get("sign_method") or SignMethod.MD5.value
        if sign_method not in {m.value for m in SignMethod}:
            raise _TopError(
                25, "Invalid signature", "isv.invalid-signature", f"unsupported sign_method {sign_method!r}"
            )
        timestamp = params.get("timestamp", "")
        if not timestamp:
            raise _TopError(
                30, "Missing Timestamp", "isv.missing-parameter:timestamp", "parameter timestamp is missing"
            )
        if not _TIMESTAMP_RE.fullmatch(timestamp):
            raise _TopError(
                31,
                "Invalid timestamp",
                "isv.invalid-parameter:timestamp",
                "timestamp must be 'yyyy-MM-dd HH:mm:ss' (UTC+8)",
            )
        try:
            sent = parse_platform_time(timestamp)
        except ValueError:
            raise _TopError(
                31, "Invalid timestamp", "isv.invalid-parameter:timestamp", f"timestamp {timestamp!r} is not a date"
            ) from None
        if abs(sent - now) > TIMESTAMP_SKEW:
            raise _TopError(
                31,
                "Invalid timestamp",
                "isv.timestamp-limit-error",
                f"timestamp {timestamp} is more than 10 minutes away from {format_platform_time(now)} (UTC+8)",
            )
        version = params.get("v", "")
        if not version:
            raise _TopError(32, "Missing Version", "isv.missing-parameter:v", "parameter v is missing")
        if version != "2.0":
            if _VERSION_RE.fullmatch(version):
                raise _TopError(34, "Unsupported Version", "isv.unsupported-version", f"v={version}: use 2.0")
            raise _TopError(33, "Invalid Version", "isv.invalid-parameter:v", f"v={version!r}: use 2.0")
        fmt = params.get("format")
        if fmt is not None and fmt.lower() not in ("json", "xml"):
            raise _TopError(23, "Invalid Format", "isv.invalid-parameter:format", f"format {fmt!r}: use json or xml")
        signed = [(k, v) for k, v in params.items() if k != "sign"]  # EMPTY VALUES KEPT, like the real gateway
        expected = digest(canonical_text(signed), self._app_secret, sign_method)
        if not hmac.compare_digest(sign.upper().encode("utf-8", "replace"), expected.encode("ascii")):
            keys = ",".join(sorted(k for k, _ in signed))
            empty = sorted(k for k, v in signed if not v.strip())
            hint = f"; empty values sent (and therefore signed): {','.join(empty)}" if empty else ""
            raise _TopError(
                25,
                "Invalid signature",
                "isv.invalid-signature",
                f"signature mismatch ({sign_method}, over {keys}){hint}",
            )
        if method not in API_SPECS:
            raise _TopError(22, "Invalid Method", "isv.method-not-exist", f"method {method} does not exist")

    def _check_access(self, now: datetime) -> None:
        """Bans and the daily quota (gateway level, before the API). Caller holds the lock."""
        faults = self.faults
        if self._ban_until is not None and now >= self._ban_until:
            self._ban_until = None
        if self._ban_until is None and faults.rate_limit_next > 0:
            faults.rate_limit_next -= 1
            if faults.ban_seconds > 0:
                self._ban_until = now + timedelta(seconds=faults.ban_seconds)
            else:
                raise _TopError(7, "App Call Limited", "accesscontrol.limited-by-api-access-count", "App call limited")
        if self._ban_until is not None:
            remaining = math.ceil((self._ban_until - now).total_seconds())
            raise _TopError(
                7,
                "App Call Limited",
                "accesscontrol.limited-by-api-access-count",
                f"This ban will last for {remaining} more seconds",
            )
        if faults.daily_quota_exceeded:
            local = now.astimezone(PLATFORM_TZ)
            midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), tzinfo=PLATFORM_TZ)
            remaining = math.ceil((midnight - local).total_seconds())
            raise _TopError(
                7,
                "App Call Limited",
                "accesscontrol.limited-by-app-access-count",
                f"This ban will last for {remaining} more seconds",
            )

    def _process(self, call: RecordedCall, params: Mapping[str, str], fmt: str, simplify: bool) -> _Reply:
        """Session, API parameters, service faults, refusals, acceptance. Caller holds the lock."""
        method = call.method
        spec = API_SPECS[method]
        faults = self.faults
        if spec.needs_session:
            session = params.get("session", "")
            if not session:
                raise _TopError(26, "Missing session", "isv.missing-parameter:session", "this API needs a session")
            valid = hmac.compare_digest(session.encode("utf-8"), self.session_key.encode("utf-8"))
            if not valid or faults.session_expired:
                raise _TopError(27, "Invalid session", "invalid-sessionkey", "session key is invalid or expired")

        payload = _decode_param(params, spec.param)
        records = _validated_records(method, payload)

        if faults.isp_error_next > 0:
            faults.isp_error_next -= 1
            raise _TopError(15, "Remote service error", "isp.remote-service-error", "sandbox: injected isp error")
        if faults.service_unavailable_next > 0:
            faults.service_unavailable_next -= 1
            raise _TopError(10, "Service currently unavailable", "isp.service-unavailable", "sandbox: unavailable")

        refused_values = {str(v) for v in faults.refuse.get(method, [])}
        refused = [
            f"record {i} ({spec.record_key}={r.get(spec.record_key)}): refused by sandbox"
            for i, r in enumerate(records)
            if str(r.get(spec.record_key)) in refused_values
        ]
        if refused:
            message = "; ".join(refused)
            if faults.refuse_style == "result" and method == WRITEOFF_METHOD:
                call.outcome = "isv.invalid-parameter"
                result = {"success": False, "error_code": "isv.invalid-parameter", "error_msg": message}
                return self._success(method, {"result": result}, call, fmt, simplify)
            if faults.refuse_style == "result" and method == EXTERNAL_ORDER_METHOD:
                call.outcome = "INVALID_PARAM"
                result = {"success": False, "msg_code": "INVALID_PARAM", "msg_info": message}
                return self._success(method, {"result": result}, call, fmt, simplify)
            raise _TopError(15, "Remote service error", "isv.invalid-parameter", message)

        accepted = self._accepted.setdefault(method, [])
        if method == EXTERNAL_ORDER_METHOD:
            idempotent_id = payload["idempotent_id"]
            order_id = order_id_for(idempotent_id)
            entry = dict(payload, _order_id=order_id)
            if idempotent_id in self._seen_idempotent:
                entry["_duplicate"] = True
            self._seen_idempotent.add(idempotent_id)
            accepted.append(entry)
            body: dict[str, Any] = {"result": {"success": True, "data": {"order_id": order_id}}}
        else:
            accepted.extend(copy.deepcopy(records))
            body = {"result": {"success": True, "data": True}} if method == WRITEOFF_METHOD else {}
        call.outcome = "ok"
        return self._success(method, body, call, fmt, simplify)

    def _success(self, method: str, body: dict[str, Any], call: RecordedCall, fmt: str, simplify: bool) -> _Reply:
        inner = dict(body, request_id=call.request_id)
        document = {"response": inner} if simplify and fmt == "xml" else {response_key(method): inner}
        if simplify and fmt == "json":
            return _Reply(200, dumps(inner).encode("utf-8"), "application/json;charset=UTF-8")
        data, content_type = _render(document, fmt)
        return _Reply(200, data, content_type)


# --------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------


def _load_faults_file(path: str) -> Faults:
    with open(path, encoding="utf-8") as handle:
        return Faults.from_dict(json.load(handle))


def main(argv: list[str] | None = None) -> int:
    env = os.environ
    parser = argparse.ArgumentParser(prog="python -m bridge_local.top_sandbox", description="Local TOP gateway")
    parser.add_argument("--port", type=int, default=int(env.get("TOP_SANDBOX_PORT") or 3001))
    # The same defaults as the local stack, so `make run` and a standalone sandbox agree out of the box.
    from taobao_bridge.settings import ENV, LOCAL_DEFAULTS

    parser.add_argument("--app-key", default=env.get(ENV.TOP_APP_KEY) or LOCAL_DEFAULTS[ENV.TOP_APP_KEY])
    parser.add_argument("--app-secret", default=env.get(ENV.TOP_APP_SECRET) or LOCAL_DEFAULTS[ENV.TOP_APP_SECRET])
    parser.add_argument("--session-key", default=env.get(ENV.TOP_SESSION_KEY) or LOCAL_DEFAULTS[ENV.TOP_SESSION_KEY])
    parser.add_argument("--faults", default=env.get("TOP_SANDBOX_FAULTS", ""), help="JSON file of initial faults")
    parser.add_argument("--log-level", default=env.get("TOP_SANDBOX_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    if not args.app_key or not args.app_secret:
        parser.error("an app key and an app secret are required (--app-key/--app-secret or TOP_APP_KEY/TOP_APP_SECRET)")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.session_key:
        logger.warning("no session key configured: every call to %s will answer 27 Invalid session", RISK_METHOD)
    try:
        faults = _load_faults_file(args.faults) if args.faults else Faults()
    except (OSError, ValueError) as exc:
        parser.error(f"cannot load faults from {args.faults}: {exc}")

    sandbox = TopSandbox(
        app_key=args.app_key,
        app_secret=args.app_secret,
        session_key=args.session_key,
        port=args.port,
        faults=faults,
    )
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        logger.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    sandbox.start()
    print(sandbox.url, flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
