"""The gateway without a socket: ``Gateway.handle`` answers one /router/rest call from its parameters.

In the real gateway's order: system parameters and signature (``check_system``; a call failing here never
consumes a fault), HTTP 502 fault, bans and daily quota, timeout fault, session, API parameter and records
(through the ``APIS`` table), service faults, refusals, then the answer faults (a bad body, an odd shape) and
acceptance. Every call is recorded as a ``RecordedCall`` (with the faults it met, whether its records were
accepted, and the caller's ``X-Sandbox-Tag``); accepted records are kept per method for inspection.
"""

from __future__ import annotations

import copy
import dataclasses
import hmac
import json
import logging
import math
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from taobao_bridge.clock import PLATFORM_TZ, format_platform_time, parse_platform_time, system_clock
from taobao_bridge.signing import SignMethod, canonical_text, digest

from .apis import APIS, ODD_ANSWERS, ApiSpec
from .errors import TopError
from .faults import Faults
from .reply import BAD_GATEWAY_HTML, Reply, error_reply, new_request_id, not_json_reply, success_reply, truncated
from .schema import TIMESTAMP_RE, decode_param

# The package's name, not this module's: one logger for the whole sandbox, as before it was a package.
logger = logging.getLogger("bridge_local.top_sandbox")

TIMESTAMP_SKEW = timedelta(minutes=10)
_VERSION_RE = re.compile(r"\d+(\.\d+)*", re.ASCII)


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
    processed: bool = False  # its records were accepted (whatever the answer said, or whether it arrived)
    # Faults this call met that leave its caller unsure of the outcome or show in the answer: "timeout",
    # "not_json", "truncated", "odd_answer:<shape>".
    faults: list[str] = dataclasses.field(default_factory=list)
    tag: str | None = None  # the X-Sandbox-Tag request header: lets a test tell its workers' calls apart

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["received_at"] = self.received_at.isoformat()
        return data

    def sent_records(self) -> list[Any]:
        """The records of the call's API parameter as sent (accepted or not); empty when unreadable."""
        spec = APIS.get(self.method)
        return spec.records_in(self.api_payload) if spec is not None and self.api_payload is not None else []


def check_system(params: Mapping[str, str], now: datetime, *, app_key: str, app_secret: str) -> None:
    """System parameters and signature, in the gateway's order; raises ``TopError``."""
    method = params.get("method", "")
    if not method:
        raise TopError(21, "Missing Method", "isv.missing-parameter:method", "parameter method is missing")
    sent_key = params.get("app_key", "")
    if not sent_key:
        raise TopError(28, "Missing App Key", "isv.missing-parameter:app_key", "parameter app_key is missing")
    if not hmac.compare_digest(sent_key.encode("utf-8"), app_key.encode("utf-8")):
        raise TopError(29, "Invalid App Key", "isv.appkey-not-exists", f"app key {sent_key} does not exist")
    sign = params.get("sign", "")
    if not sign:
        raise TopError(24, "Missing Signature", "isv.missing-parameter:sign", "parameter sign is missing")
    sign_method = params.get("sign_method") or SignMethod.MD5.value
    if sign_method not in {m.value for m in SignMethod}:
        raise TopError(25, "Invalid signature", "isv.invalid-signature", f"unsupported sign_method {sign_method!r}")
    timestamp = params.get("timestamp", "")
    if not timestamp:
        raise TopError(30, "Missing Timestamp", "isv.missing-parameter:timestamp", "parameter timestamp is missing")
    if not TIMESTAMP_RE.fullmatch(timestamp):
        raise TopError(
            31,
            "Invalid timestamp",
            "isv.invalid-parameter:timestamp",
            "timestamp must be 'yyyy-MM-dd HH:mm:ss' (UTC+8)",
        )
    try:
        sent = parse_platform_time(timestamp)
    except ValueError:
        raise TopError(
            31, "Invalid timestamp", "isv.invalid-parameter:timestamp", f"timestamp {timestamp!r} is not a date"
        ) from None
    if abs(sent - now) > TIMESTAMP_SKEW:
        raise TopError(
            31,
            "Invalid timestamp",
            "isv.timestamp-limit-error",
            f"timestamp {timestamp} is more than 10 minutes away from {format_platform_time(now)} (UTC+8)",
        )
    version = params.get("v", "")
    if not version:
        raise TopError(32, "Missing Version", "isv.missing-parameter:v", "parameter v is missing")
    if version != "2.0":
        if _VERSION_RE.fullmatch(version):
            raise TopError(34, "Unsupported Version", "isv.unsupported-version", f"v={version}: use 2.0")
        raise TopError(33, "Invalid Version", "isv.invalid-parameter:v", f"v={version!r}: use 2.0")
    fmt = params.get("format")
    if fmt is not None and fmt.lower() not in ("json", "xml"):
        raise TopError(23, "Invalid Format", "isv.invalid-parameter:format", f"format {fmt!r}: use json or xml")
    signed = [(k, v) for k, v in params.items() if k != "sign"]  # EMPTY VALUES KEPT, like the real gateway
    expected = digest(canonical_text(signed), app_secret, sign_method)
    if not hmac.compare_digest(sign.upper().encode("utf-8", "replace"), expected.encode("ascii")):
        keys = ",".join(sorted(k for k, _ in signed))
        empty = sorted(k for k, v in signed if not v.strip())
        hint = f"; empty values sent (and therefore signed): {','.join(empty)}" if empty else ""
        raise TopError(
            25,
            "Invalid signature",
            "isv.invalid-signature",
            f"signature mismatch ({sign_method}, over {keys}){hint}",
        )
    if method not in APIS:
        raise TopError(22, "Invalid Method", "isv.method-not-exist", f"method {method} does not exist")


class Gateway:
    """The TOP gateway's behaviour and state (faults, bans, recorded calls, accepted records); thread-safe."""

    def __init__(
        self,
        *,
        app_key: str,
        app_secret: str,
        session_key: str,
        faults: Faults | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.app_key = app_key
        self._app_secret = app_secret
        self.session_key = session_key
        self.faults = faults if faults is not None else Faults()
        self._clock = clock or system_clock
        self._lock = threading.RLock()
        self._calls: list[RecordedCall] = []
        self._accepted: dict[str, list[dict[str, Any]]] = {}
        self._seen_idempotent: set[str] = set()
        self._ban_until: datetime | None = None
        self._odd_turn: dict[str, int] = {}  # method -> next index into its odd_shapes (odd_answer_next)

    # faults -----------------------------------------------------------------------------------------------------

    def set_faults(self, **changes: Any) -> None:
        """Change some faults (validated; ``ValueError`` on an unknown name or a bad value). An active ban stays."""
        with self._lock:
            self.faults.update(**changes)

    def replace_faults(self, faults: Faults) -> None:
        """Replace all faults, lift any active ban and start the odd shapes' rotation again."""
        with self._lock:
            self.faults = faults
            self._ban_until = None
            self._odd_turn.clear()

    def set_session_key(self, session_key: str) -> None:
        """The seller session the gateway accepts from now on (the seller authorised the app again)."""
        with self._lock:
            self.session_key = session_key

    def set_credentials(
        self, *, app_key: str | None = None, app_secret: str | None = None, session_key: str | None = None
    ) -> None:
        """The app key, secret and seller session the gateway accepts from now on (the local stack calls this when
        its secrets file changes); None keeps a value."""
        with self._lock:
            if app_key:
                self.app_key = app_key
            if app_secret:
                self._app_secret = app_secret
            if session_key:
                self.session_key = session_key

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

    def handle(self, params: Mapping[str, str], *, tag: str | None = None) -> Reply:
        """The answer to one /router/rest call (query and body parameters merged). ``delay_s`` on the reply is
        for the caller to wait before sending it (slow and timeout faults). ``tag`` is kept on the recorded call."""
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
            request_id=new_request_id(),
            tag=tag,
        )
        spec = APIS.get(method)
        if spec is not None and spec.param in params:
            try:
                call.api_payload = json.loads(params[spec.param])
                call.records = spec.count_records(call.api_payload)
            except ValueError:
                pass
        fmt = (params.get("format") or "xml").lower()
        if fmt not in ("json", "xml"):
            fmt = "json"
        simplify = (params.get("simplify") or "").lower() == "true"

        try:
            check_system(params, now, app_key=self.app_key, app_secret=self._app_secret)
        except TopError as error:
            call.outcome = str(error.code)
            return self._finish(call, error_reply(error, fmt, call.request_id))

        with self._lock:
            faults = self.faults
            slow_s = faults.slow_ms / 1000.0
            if faults.http_500_next > 0:
                faults.http_500_next -= 1
                call.outcome = "http_502"
                reply = Reply(502, BAD_GATEWAY_HTML, "text/html", slow_s, compressible=False)
                return self._finish(call, reply)
            timeout_s = 0.0
            try:
                self._check_access(now)
                if faults.timeout_next > 0:
                    faults.timeout_next -= 1
                    timeout_s = faults.timeout_sleep_s
                    call.faults.append("timeout")
                    if not faults.timeout_processes:
                        raise TopError(
                            15,
                            "Remote service error",
                            "isp.remote-service-timeout",
                            "sandbox: timed out, not processed",
                        )
                reply = self._process(APIS[method], call, params, fmt, simplify)
            except TopError as error:
                call.outcome = str(error.code)
                reply = error_reply(error, fmt, call.request_id)
            # A timeout fault delays whatever the answer is (processed first when timeout_processes).
            reply.delay_s = timeout_s + slow_s
            return self._finish(call, reply)

    def _finish(self, call: RecordedCall, reply: Reply) -> Reply:
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
                raise TopError(7, "App Call Limited", "accesscontrol.limited-by-api-access-count", "App call limited")
        if self._ban_until is not None:
            remaining = math.ceil((self._ban_until - now).total_seconds())
            raise TopError(
                7,
                "App Call Limited",
                "accesscontrol.limited-by-api-access-count",
                f"This ban will last for {remaining} more seconds",
            )
        if faults.daily_quota_exceeded:
            local = now.astimezone(PLATFORM_TZ)
            midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), tzinfo=PLATFORM_TZ)
            remaining = math.ceil((midnight - local).total_seconds())
            raise TopError(
                7,
                "App Call Limited",
                "accesscontrol.limited-by-app-access-count",
                f"This ban will last for {remaining} more seconds",
            )

    def _process(self, spec: ApiSpec, call: RecordedCall, params: Mapping[str, str], fmt: str, simplify: bool) -> Reply:
        """Session, API parameters, service faults, refusals, answer faults, acceptance. Caller holds the lock."""
        faults = self.faults
        if spec.needs_session:
            session = params.get("session", "")
            if not session:
                raise TopError(26, "Missing session", "isv.missing-parameter:session", "this API needs a session")
            valid = hmac.compare_digest(session.encode("utf-8"), self.session_key.encode("utf-8"))
            if not valid or faults.session_expired:
                raise TopError(27, "Invalid session", "invalid-sessionkey", "session key is invalid or expired")

        records = spec.validated_records(decode_param(params, spec.param))

        if faults.isp_error_next > 0:
            faults.isp_error_next -= 1
            raise TopError(15, "Remote service error", "isp.remote-service-error", "sandbox: injected isp error")
        if faults.service_unavailable_next > 0:
            faults.service_unavailable_next -= 1
            raise TopError(10, "Service currently unavailable", "isp.service-unavailable", "sandbox: unavailable")

        refused_values = {str(v) for v in faults.refuse.get(spec.method, [])}
        refused = [
            f"record {i} ({spec.record_key}={r.get(spec.record_key)}): refused by sandbox"
            for i, r in enumerate(records)
            if str(r.get(spec.record_key)) in refused_values
        ]
        for key, values in faults.refuse_where.get(spec.method, {}).items():
            unwanted = {str(value) for value in values}
            refused += [
                f"record {i} ({key}={r.get(key)}): refused by sandbox"
                for i, r in enumerate(records)
                if key in r and str(r.get(key)) in unwanted
            ]
        if refused:
            refusal = spec.refusals[faults.refuse_style]("; ".join(refused))
            if isinstance(refusal, TopError):
                raise refusal
            call.outcome = refusal.outcome
            return success_reply(spec.response_key, refusal.body, call.request_id, fmt, simplify)

        bad_body = self._take_bad_body()
        shape = None if bad_body else self._take_odd_shape(spec)
        odd = ODD_ANSWERS[shape] if shape else None
        processed = faults.bad_body_processes if bad_body else odd is None or odd.processed
        body: dict[str, Any] = {}
        if processed:
            body = spec.accept(records, self._accepted.setdefault(spec.method, []), self._seen_idempotent)
            call.processed = True
            call.outcome = "ok"
        if bad_body:
            call.faults.append(bad_body)
            call.outcome = call.outcome or bad_body
            normal = success_reply(spec.response_key, body, call.request_id, fmt, simplify)
            return truncated(normal) if bad_body == "truncated" else not_json_reply()
        if odd is not None:
            call.faults.append(f"odd_answer:{shape}")
            call.outcome = call.outcome or spec.business_error.code
            inner = odd.build(spec, body, "sandbox: refused in an odd shape")
            return success_reply(spec.response_key, inner, call.request_id, fmt, simplify)
        return success_reply(spec.response_key, body, call.request_id, fmt, simplify)

    def _take_bad_body(self) -> str | None:
        """ "not_json" or "truncated" when one of those faults is due (consumed), else None. Caller holds the lock."""
        faults = self.faults
        if faults.not_json_next > 0:
            faults.not_json_next -= 1
            return "not_json"
        if faults.truncated_next > 0:
            faults.truncated_next -= 1
            return "truncated"
        return None

    def _take_odd_shape(self, spec: ApiSpec) -> str | None:
        """The odd shape this call's answer takes, or None: the method's shape in ``odd_answer`` (never consumed),
        else the API's next shape in turn while ``odd_answer_next`` lasts. Caller holds the lock."""
        faults = self.faults
        if spec.method in faults.odd_answer:
            return faults.odd_answer[spec.method]
        if faults.odd_answer_next <= 0:
            return None
        faults.odd_answer_next -= 1
        turn = self._odd_turn.get(spec.method, 0)
        self._odd_turn[spec.method] = turn + 1
        return spec.odd_shapes[turn % len(spec.odd_shapes)]
