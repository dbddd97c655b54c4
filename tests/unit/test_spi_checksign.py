"""Qimen calls are verified as the official verifier, the Java SDK's ``SpiUtils.checkSign``, verifies them.

The vectors are made by :class:`OfficialSpiUtils` below: a straight port of ``checkSign``, ``getHeaderMap``,
``getQueryMap``, ``getFormMap``, ``sign``, ``getParamStrFromMap`` and ``WebUtils.getResponseCharset`` (as described
in docs/PROTOCOL.md §3), written here without the package's signing code. Each rule then goes through the real
dispatcher with the fulfillment.create handler over an in-memory store.
"""

from __future__ import annotations

import codecs
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taobao_bridge.jsonutil import dumps
from taobao_bridge.models.fulfillment import METHOD, FulfillmentCreateRequest
from taobao_bridge.qimen import SIGN_CHECK_FAILURE, DispatchResult, QimenDispatcher
from tests.unit.test_qimen_outcomes import MemoryStore, import_fulfillment_service

SECRET = "abcdefabcdefabcdefabcdefabcdef12"
NOW = datetime(2026, 11, 23, 2, 0, 0, tzinfo=UTC)  # 10:00:00 UTC+8
TIMESTAMP = "2026-11-23 10:00:00"
SIGN_CHECK_FAILURE_TEXT = '{"biz_error_msg":"Illegal request","success":"false","biz_error_code":"sign-check-failure"}'


# ================================================================================ the port (reference only)
class IllegalArgumentError(ValueError):
    """java.lang.IllegalArgumentException, as URLDecoder throws it."""


def java_is_whitespace(ch: str) -> bool:
    """Character.isWhitespace."""
    import unicodedata

    if ch in "\t\n\u000b\f\r\u001c\u001d\u001e\u001f":
        return True
    return unicodedata.category(ch) in ("Zs", "Zl", "Zp") and ch not in "\u00a0\u2007\u202f"


def top_is_empty(value: str | None) -> bool:
    """com.taobao.api.internal.util.StringUtils.isEmpty: null, empty or only whitespace."""
    return value is None or all(java_is_whitespace(ch) for ch in value)


def java_split(text: str, separator: str, limit: int = 0) -> list[str]:
    """String.split with a one-character literal separator (limit 0: trailing empty strings removed)."""
    parts: list[str] = []
    start = 0
    while True:
        if limit > 0 and len(parts) == limit - 1:
            parts.append(text[start:])
            break
        index = text.find(separator, start)
        if index < 0:
            parts.append(text[start:])
            break
        parts.append(text[start:index])
        start = index + len(separator)
    if len(parts) == 1:  # no match: the string itself
        return parts
    if limit == 0:
        while parts and parts[-1] == "":
            parts.pop()
    return parts


def java_charset(name: str) -> str:
    """Charset.forName -> the Python codec."""
    return codecs.lookup(name).name


def url_decode(text: str, charset: str) -> str:
    """java.net.URLDecoder.decode(String, String): '+' is a space; each run of %XX becomes bytes decoded alone."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "+":
            out.append(" ")
            i += 1
        elif ch == "%":
            raw = bytearray()
            while i < len(text) and text[i] == "%":
                if i + 3 > len(text):
                    raise IllegalArgumentError("URLDecoder: Incomplete trailing escape (%) pattern")
                digits = text[i + 1 : i + 3]
                if any(d not in "0123456789abcdefABCDEF" for d in digits):
                    raise IllegalArgumentError("URLDecoder: Illegal hex characters in escape (%) pattern")
                raw.append(int(digits, 16))
                i += 3
            out.append(bytes(raw).decode(java_charset(charset), "replace"))
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def servlet_decode(raw: bytes, charset: str) -> str:
    """Tomcat's Parameters: %XX and literal bytes become one byte string, decoded as a whole in the charset."""
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i : i + 1] == b"+":
            out += b" "
            i += 1
        elif raw[i : i + 1] == b"%":
            digits = raw[i + 1 : i + 3]
            if len(digits) < 2 or any(d not in b"0123456789abcdefABCDEF" for d in digits):
                raise IllegalArgumentError("malformed escape in a parameter")
            out.append(int(digits, 16))
            i += 3
        else:
            out += raw[i : i + 1]
            i += 1
    return bytes(out).decode(java_charset(charset), "replace")


def get_response_charset(ctype: str | None) -> str:
    """WebUtils.getResponseCharset."""
    charset = "UTF-8"
    if not top_is_empty(ctype):
        assert ctype is not None
        for param in ctype.split(";"):
            param = param.strip()
            if param.startswith("charset"):
                pair = java_split(param, "=", 2)
                if len(pair) == 2 and not top_is_empty(pair[1]):
                    charset = pair[1].strip()
                break
    return charset


@dataclass
class ServletRequest:
    """What checkSign reads of an HttpServletRequest."""

    query_string: str
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json;charset=utf-8"
    body: bytes = b""

    def get_header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None

    def parameter_pairs(self) -> list[tuple[str, str]]:
        """getParameterMap's entries in order: the query's, then (form requests) the body's."""
        charset = get_response_charset(self.content_type)
        sources = [self.query_string.encode(java_charset(charset), "replace")]
        if self.content_type.startswith("application/x-www-form-urlencoded"):
            sources.append(self.body)
        pairs = []
        for source in sources:
            for chunk in source.split(b"&"):
                name, _, value = chunk.partition(b"=")
                if name:
                    pairs.append((servlet_decode(name, charset), servlet_decode(value, charset)))
        return pairs

    def get_parameter(self, name: str) -> str | None:
        return next((v for k, v in self.parameter_pairs() if k == name), None)


class OfficialSpiUtils:
    """SpiUtils, method by method."""

    @staticmethod
    def check_sign(request: ServletRequest, secret: str) -> tuple[bool, str, str | None]:
        """(valid, localSign, remoteSign)."""
        ctype = request.content_type
        charset = get_response_charset(ctype)
        if not (
            ctype.startswith("application/json")
            or ctype.startswith("text/xml")
            or ctype.startswith("text/plain")
            or ctype.startswith("application/xml; charset=utf-8")
        ):
            if not ctype.startswith("application/x-www-form-urlencoded"):
                raise RuntimeError("Unspported SPI request")
            return OfficialSpiUtils.check_sign_internal(request, None, None, secret, charset)
        body = request.body.decode(java_charset(charset), "replace")  # WebUtils.getStreamAsString
        return OfficialSpiUtils.check_sign_internal(request, None, body, secret, charset)

    @staticmethod
    def check_sign_internal(
        request: ServletRequest, form: dict[str, str] | None, body: str | None, secret: str, charset: str
    ) -> tuple[bool, str, str | None]:
        params: dict[str, str] = {}
        params.update(OfficialSpiUtils.get_header_map(request, charset))
        query_map = OfficialSpiUtils.get_query_map(request, charset)
        params.update(query_map)
        if form is None and body is None:
            params.update(OfficialSpiUtils.get_form_map(request, query_map))
        elif form is not None:
            params.update(form)
        remote_sign = query_map.get("sign")
        local_sign = OfficialSpiUtils.sign(params, body, secret, charset)
        return local_sign == remote_sign, local_sign, remote_sign

    @staticmethod
    def get_header_map(request: ServletRequest, charset: str) -> dict[str, str]:
        header_map: dict[str, str] = {}
        sign_list = request.get_header("top-sign-list")
        if not top_is_empty(sign_list):
            assert sign_list is not None
            for key in java_split(sign_list, ","):
                value = request.get_header(key)
                header_map[key] = "" if top_is_empty(value) else url_decode(value or "", charset)
        return header_map

    @staticmethod
    def get_query_map(request: ServletRequest, charset: str) -> dict[str, str]:
        query_map: dict[str, str] = {}
        for param in java_split(request.query_string, "&"):
            kv = java_split(param, "=")
            if len(kv) == 2:
                query_map[url_decode(kv[0], charset)] = url_decode(kv[1], charset)
            elif len(kv) == 1:
                query_map[url_decode(kv[0], charset)] = ""
        return query_map

    @staticmethod
    def get_form_map(request: ServletRequest, query_map: Mapping[str, str]) -> dict[str, str]:
        form_map: dict[str, str] = {}
        for key in dict.fromkeys(k for k, _ in request.parameter_pairs()):
            if key not in query_map:
                value = request.get_parameter(key)
                form_map[key] = "" if top_is_empty(value) else (value or "")
        return form_map

    @staticmethod
    def param_str(params: Mapping[str, str]) -> str:
        keys = sorted(params, key=lambda k: k.encode("utf-16-be", "surrogatepass"))  # Arrays.sort on String
        return "".join(name + params[name] for name in keys if name != "sign")

    @staticmethod
    def sign(params: Mapping[str, str], body: str | None, secret: str, charset: str) -> str:
        text = secret + OfficialSpiUtils.param_str(params) + (body if body is not None else "") + secret
        return hashlib.md5(text.encode(java_charset(charset), "replace")).hexdigest().upper()  # noqa: S324


def official_text(request: ServletRequest) -> bytes:
    """The bytes the official MD5 wraps in the secret (for the HMAC variants a TOP-style caller might send)."""
    charset = get_response_charset(request.content_type)
    params = OfficialSpiUtils.get_header_map(request, charset)
    query_map = OfficialSpiUtils.get_query_map(request, charset)
    params.update(query_map)
    body: str | None = None
    if request.content_type.startswith("application/x-www-form-urlencoded"):
        params.update(OfficialSpiUtils.get_form_map(request, query_map))
    else:
        body = request.body.decode(java_charset(charset), "replace")
    return (OfficialSpiUtils.param_str(params) + (body or "")).encode(java_charset(charset), "replace")


def signed(request: ServletRequest, secret: str = SECRET, how: str = "md5") -> ServletRequest:
    """``request`` with ``&sign=`` appended: the port's MD5, or an HMAC over the same text. Computed on the final
    query (``sign``'s value is never part of the text, but its pair can change how the query splits)."""
    final = ServletRequest(f"{request.query_string}&sign=0", request.headers, request.content_type, request.body)
    if how == "md5":
        sign = OfficialSpiUtils.check_sign(final, secret)[1]
    else:
        digest = hashlib.md5 if how == "hmac" else hashlib.sha256
        sign = hmac.new(secret.encode(), official_text(final), digest).hexdigest().upper()
    final.query_string = f"{request.query_string}&sign={sign}"
    return final


def system_query(sign_method: str = "md5", timestamp: str = TIMESTAMP, **extra: str) -> str:
    params = {
        "method": METHOD,
        "app_key": "23456789",
        "target_app_key": "34567890",
        "sign_method": sign_method,
        "timestamp": timestamp,
        "format": "json",
        "v": "2.0",
        "customerId": "c1716172200000",
        **extra,
    }
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params.items())


# ======================================================================================= the port itself
def test_the_port_reproduces_the_protocol_vector() -> None:
    query = (
        "method=qimen.taobao.life.fulfillment.create&app_key=23456789&target_app_key=34567890&sign_method=md5"
        "&timestamp=2024-05-20+10%3A30%3A00&format=json&v=2.0&customerId=c1716172200000"
    )
    body = (
        '{"fulfillment_order_no":"FO202405200001","biz_order_id":"4012345678901234567","store_id":"ST001",'
        '"item_list":[{"sku_id":"SKU1","quantity":1}],"remark":"到店核销"}'
    ).encode()
    assert (
        OfficialSpiUtils.check_sign(ServletRequest(query, body=body), SECRET)[1] == "2A7B1F0E3C9B71CE0527086BD94D184D"
    )


def test_the_port_follows_java_string_split() -> None:
    assert java_split("a=b=", "=") == ["a", "b"]
    assert java_split("a==", "=") == ["a"]
    assert java_split("=", "=") == []
    assert java_split("", "=") == [""]
    assert java_split("=b", "=") == ["", "b"]
    assert java_split("a,b,", ",") == ["a", "b"]
    assert java_split("charset=gbk=x", "=", 2) == ["charset", "gbk=x"]


# ========================================================================== through the real dispatcher
@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    module = import_fulfillment_service()
    # No Lambda handler here, so no parent logger to carry a correlation id (as in test_qimen_outcomes).
    monkeypatch.setattr(module.logger, "set_correlation_id", lambda value: None)
    return module


def frozen() -> datetime:
    return NOW


@dataclass
class Callback:
    """The dispatcher as callback.py assembles it, over an in-memory store."""

    service: ModuleType
    store: MemoryStore = field(default_factory=MemoryStore)
    window_s: int | None = None

    def send(self, request: ServletRequest) -> DispatchResult:
        kwargs: dict[str, Any] = {} if self.window_s is None else {"timestamp_window_s": self.window_s}
        dispatcher = QimenDispatcher(SECRET, clock=frozen, **kwargs)
        dispatcher.register(METHOD, FulfillmentCreateRequest, self.service.FulfillmentCreate(self.store, clock=frozen))
        headers = {**request.headers, "content-type": request.content_type}
        return dispatcher.dispatch(request.query_string, headers, request.body)


@pytest.fixture
def callback(service: ModuleType) -> Callback:
    return Callback(service)


def order(seed_003_body: bytes, order_no: str = "1234567890123456789") -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(seed_003_body)
    payload["fulfillment_info"]["fulfillment_order_no"] = order_no
    return payload


def json_call(payload: dict[str, Any], query: str | None = None, **kwargs: Any) -> ServletRequest:
    return ServletRequest(query if query is not None else system_query(), body=dumps(payload).encode(), **kwargs)


def form_call(payload: dict[str, Any], query: str | None = None, charset: str = "utf-8") -> ServletRequest:
    """Each top-level request parameter one form field, objects and lists as JSON text (TOP's convention)."""
    body = "&".join(f"{k}={quote(dumps(v), safe='', encoding=charset)}" for k, v in payload.items())
    return ServletRequest(
        query if query is not None else system_query(),
        content_type=f"application/x-www-form-urlencoded;charset={charset}",
        body=body.encode("ascii"),
    )


def created(result: DispatchResult) -> bool:
    return result.answer.get("biz_result") == "success" and result.outcome.value == "fulfillment_created"


def refused_as_forged(result: DispatchResult) -> bool:
    return dumps(result.answer) == SIGN_CHECK_FAILURE_TEXT and result.answer == SIGN_CHECK_FAILURE


# ---------------------------------------------------------------------------------------------- form calls
def test_a_form_encoded_call_is_accepted_and_its_fields_are_the_payload(
    callback: Callback, seed_003_body: bytes
) -> None:
    payload = order(seed_003_body)
    request = signed(form_call(payload))
    assert OfficialSpiUtils.check_sign(request, SECRET)[0]
    result = callback.send(request)
    assert created(result), result
    stored = callback.store.orders["1234567890123456789"]
    assert json.loads(stored.payload_json) == payload
    assert stored.store_id == "123456789" and stored.quantity == 1


def test_a_form_call_with_the_system_parameters_in_the_form_too(callback: Callback, seed_003_body: bytes) -> None:
    # Everything in the body: the official verifier signs the form fields wherever the system parameters travel.
    payload = order(seed_003_body)
    fields = "&".join(f"{k}={quote(dumps(v), safe='')}" for k, v in payload.items())
    request = ServletRequest(
        "", content_type="application/x-www-form-urlencoded", body=f"{system_query()}&{fields}".encode()
    )
    sign = OfficialSpiUtils.check_sign(request, SECRET)[1]
    request.query_string = f"sign={sign}"
    assert created(callback.send(request))


def test_a_forged_form_field_is_refused(callback: Callback, seed_003_body: bytes) -> None:
    request = signed(form_call(order(seed_003_body)))
    forged = request.body.replace(
        quote('"real_amount":100', safe="").encode(), quote('"real_amount":1', safe="").encode()
    )
    assert forged != request.body
    assert refused_as_forged(callback.send(ServletRequest(request.query_string, {}, request.content_type, forged)))
    assert callback.store.orders == {}


def test_a_reserialised_form_field_is_refused(callback: Callback, seed_003_body: bytes) -> None:
    payload = order(seed_003_body)
    request = signed(form_call(payload))
    pretty = "&".join(f"{k}={quote(json.dumps(v, ensure_ascii=False, indent=1), safe='')}" for k, v in payload.items())
    assert refused_as_forged(
        callback.send(ServletRequest(request.query_string, {}, request.content_type, pretty.encode()))
    )


def test_form_field_that_is_not_json_is_invalid_json(callback: Callback, seed_003_body: bytes) -> None:
    request = form_call(order(seed_003_body))
    start = request.body.index(b"trade_info=") + len(b"trade_info=")
    end = request.body.find(b"&", start) % (len(request.body) + 1)  # the field may be the last one
    request.body = request.body[:start] + quote('{"quantity":', safe="").encode() + request.body[end:]
    result = callback.send(signed(request))
    assert result.answer["biz_error_code"] == "INVALID_JSON"
    assert result.answer["biz_error_msg"].startswith("form field 'trade_info' is not valid JSON")


# ------------------------------------------------------------------------------------- sign_method and MD5
@pytest.mark.parametrize("sign_method", ["md5", "hmac", "hmac-sha256", "HMAC-SHA256", "sha1", ""])
def test_md5_is_accepted_whatever_sign_method_says(callback: Callback, seed_003_body: bytes, sign_method: str) -> None:
    assert created(callback.send(signed(json_call(order(seed_003_body), system_query(sign_method)))))


@pytest.mark.parametrize(("sign_method", "how"), [("hmac", "hmac"), ("hmac-sha256", "hmac-sha256")])
def test_the_hmac_that_sign_method_names_is_accepted(
    callback: Callback, seed_003_body: bytes, sign_method: str, how: str
) -> None:
    assert created(callback.send(signed(json_call(order(seed_003_body), system_query(sign_method)), how=how)))


@pytest.mark.parametrize(("sign_method", "how"), [("md5", "hmac-sha256"), ("hmac", "hmac-sha256"), ("md5", "hmac")])
def test_an_hmac_that_sign_method_does_not_name_is_refused(
    callback: Callback, seed_003_body: bytes, sign_method: str, how: str
) -> None:
    assert refused_as_forged(callback.send(signed(json_call(order(seed_003_body), system_query(sign_method)), how=how)))


def test_forged_and_reserialised_bodies_are_refused(callback: Callback, seed_003_body: bytes) -> None:
    payload = order(seed_003_body)
    request = signed(json_call(payload, system_query("hmac-sha256")))
    pretty = json.dumps(payload, ensure_ascii=False, indent=2).encode()
    forged = request.body.replace(b'"real_amount":100', b'"real_amount":1')
    for body in (pretty, forged):
        assert refused_as_forged(callback.send(ServletRequest(request.query_string, body=body)))
    assert callback.store.orders == {}


def test_a_wrong_secret_is_refused(callback: Callback, seed_003_body: bytes) -> None:
    for how in ("md5", "hmac", "hmac-sha256"):
        request = signed(json_call(order(seed_003_body), system_query(how)), secret="not-the-secret", how=how)
        assert refused_as_forged(callback.send(request))


# -------------------------------------------------------------------------------------------- top-sign-list
def test_headers_named_in_top_sign_list_are_url_decoded(callback: Callback, seed_003_body: bytes) -> None:
    headers = {"top-sign-list": "X-Trace,x-empty,x-absent", "x-trace": "a%2Bb+c%E4%B8%AD", "x-empty": "  "}
    request = signed(json_call(order(seed_003_body), headers=headers))
    assert created(callback.send(request))
    # A sign over the raw (not decoded) header value is what a naive verifier expects: the official one does not.
    raw = ServletRequest(system_query(), {"top-sign-list": "X-Trace"}, body=request.body)
    raw_text = SECRET + OfficialSpiUtils.param_str(
        {**OfficialSpiUtils.get_query_map(raw, "UTF-8"), "X-Trace": "a%2Bb+c%E4%B8%AD"}
    )
    naive = hashlib.md5((raw_text + request.body.decode() + SECRET).encode()).hexdigest().upper()  # noqa: S324
    naive_request = ServletRequest(f"{system_query()}&sign={naive}", {**headers}, body=request.body)
    assert refused_as_forged(Callback(callback.service).send(naive_request))


def test_a_changed_signed_header_is_refused(callback: Callback, seed_003_body: bytes) -> None:
    request = signed(json_call(order(seed_003_body), headers={"top-sign-list": "x-a", "x-a": "1"}))
    request.headers["x-a"] = "2"
    assert refused_as_forged(callback.send(request))


# ------------------------------------------------------------------------------- repeated system parameters
@pytest.mark.parametrize("name", ["method", "timestamp", "sign", "app_key", "sign_method"])
def test_a_repeated_system_parameter_is_refused_even_when_the_official_verifier_would_pass(
    callback: Callback, seed_003_body: bytes, name: str
) -> None:
    request = signed(json_call(order(seed_003_body)))
    # The first value is a decoy; getQueryMap keeps the last, so the official check still passes.
    decoy = "qimen.taobao.life.fulfillment.cancel" if name == "method" else "x"
    request.query_string = f"{name}={quote(decoy)}&{request.query_string}"
    if name != "sign":
        request = signed(ServletRequest(request.query_string.rsplit("&sign=", 1)[0], body=request.body))
        assert OfficialSpiUtils.check_sign(request, SECRET)[0]
    result = callback.send(request)
    assert result.answer == {
        "success": False,
        "biz_result": "fail",
        "biz_error_code": "INVALID_PARAMETER",
        "biz_error_msg": f"system parameter {name!r} appears 2 times; send it once",
    }
    assert callback.store.orders == {}


def test_a_system_parameter_in_the_query_and_the_form_is_refused(callback: Callback, seed_003_body: bytes) -> None:
    request = form_call(order(seed_003_body))
    request.body += b"&timestamp=" + quote(TIMESTAMP).encode()
    result = callback.send(signed(request))
    assert result.answer["biz_error_code"] == "INVALID_PARAMETER"
    assert "'timestamp' appears 2 times" in result.answer["biz_error_msg"]


def test_a_form_field_in_the_query_too_is_refused(callback: Callback, seed_003_body: bytes) -> None:
    # The official verifier signs the query's value and ignores the form's: using either would be a guess.
    payload = order(seed_003_body)
    request = form_call(payload, query=system_query(trade_info=dumps(payload["trade_info"])))
    result = callback.send(signed(request))
    assert result.answer["biz_error_code"] == "INVALID_PARAMETER"
    assert "'trade_info' is sent both in the query and in the form" in result.answer["biz_error_msg"]


def test_a_pair_with_a_raw_equals_sign_is_neither_signed_nor_used(callback: Callback, seed_003_body: bytes) -> None:
    # getQueryMap drops "note=a=b"; a sign made without it verifies, and the pair is not read.
    request = signed(json_call(order(seed_003_body), system_query() + "&note=a=b&empty="))
    assert created(callback.send(request))


# --------------------------------------------------------------------------------------------------- charset
def test_a_gbk_body_declared_gbk_is_verified_and_decoded(callback: Callback, seed_003_body: bytes) -> None:
    payload = order(seed_003_body)
    body = dumps(payload).encode("gbk")
    assert body != dumps(payload).encode("utf-8")
    query = system_query() + "&note=" + quote("到店", encoding="gbk")
    request = signed(ServletRequest(query, content_type="application/json; charset=GBK", body=body))
    result = callback.send(request)
    assert created(result), result
    stored = callback.store.orders["1234567890123456789"]
    assert json.loads(stored.payload_json) == payload
    assert stored.payload_json == body.decode("gbk")


def test_a_gbk_form_call(callback: Callback, seed_003_body: bytes) -> None:
    payload = order(seed_003_body)
    result = callback.send(signed(form_call(payload, charset="gbk")))
    assert created(result), result
    assert json.loads(callback.store.orders["1234567890123456789"].payload_json) == payload


def test_gbk_bytes_declared_utf8_are_invalid_json(callback: Callback, seed_003_body: bytes) -> None:
    body = dumps(order(seed_003_body)).encode("gbk")
    result = callback.send(signed(ServletRequest(system_query(), body=body)))
    assert result.answer["biz_error_code"] == "INVALID_JSON"
    assert "not valid UTF-8" in result.answer["biz_error_msg"]


@pytest.mark.parametrize("charset", ["utf-16", "UTF-32", "no-such-charset", "base64"])
def test_an_unsupported_charset_is_refused_with_a_clear_answer(
    callback: Callback, seed_003_body: bytes, charset: str
) -> None:
    request = ServletRequest(
        system_query() + "&sign=0", content_type=f"application/json;charset={charset}", body=seed_003_body
    )
    result = callback.send(request)
    assert result.answer["biz_error_code"] == "INVALID_PARAMETER"
    assert result.answer["biz_error_msg"].startswith(f"Content-Type: charset {charset!r} is not supported")


def test_an_unsupported_content_type_is_refused(callback: Callback, seed_003_body: bytes) -> None:
    request = ServletRequest(system_query() + "&sign=0", content_type="multipart/form-data", body=seed_003_body)
    with pytest.raises(RuntimeError, match="Unspported SPI request"):
        OfficialSpiUtils.check_sign(request, SECRET)
    assert callback.send(request).answer["biz_error_code"] == "INVALID_PARAMETER"


def test_a_malformed_escape_cannot_be_verified(callback: Callback, seed_003_body: bytes) -> None:
    request = ServletRequest(system_query() + "&note=%zz&sign=0", body=seed_003_body)
    with pytest.raises(IllegalArgumentError):
        OfficialSpiUtils.check_sign(request, SECRET)
    assert refused_as_forged(callback.send(request))


# ------------------------------------------------------------------------------------------ timestamp window
@pytest.mark.parametrize(("offset_s", "accepted"), [(-600, True), (600, True), (-601, False), (601, False)])
def test_the_default_window_is_ten_minutes_both_ways(
    callback: Callback, seed_003_body: bytes, offset_s: int, accepted: bool
) -> None:
    moment = (NOW + timedelta(seconds=offset_s)).astimezone(UTC) + timedelta(hours=8)
    query = system_query(timestamp=moment.strftime("%Y-%m-%d %H:%M:%S"))
    result = callback.send(signed(json_call(order(seed_003_body), query)))
    if accepted:
        assert created(result)
    else:
        assert result.answer["biz_error_code"] == "INVALID_TIMESTAMP"
        assert result.answer["biz_error_msg"].endswith("the allowed window is 600 s")


def test_window_zero_switches_the_check_off(service: ModuleType, seed_003_body: bytes) -> None:
    query = system_query(timestamp="2020-01-01 00:00:00")
    assert created(Callback(service, window_s=0).send(signed(json_call(order(seed_003_body), query))))


def test_settings_default_to_ten_minutes() -> None:
    from taobao_bridge.settings import load_settings

    assert load_settings({}).qimen_timestamp_window_s == 600
    assert QimenDispatcher("s").timestamp_window_s == 600


# ======================================================================= the port and the verifier agree
_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_names = _text.filter(lambda k: k not in ("sign", "method", "timestamp", "app_key", "sign_method") and k != "")


@settings(max_examples=150, deadline=None)
@given(
    extra=st.dictionaries(_names, _text, max_size=5),
    headers=st.dictionaries(st.sampled_from(["x-a", "X-B", "x-c"]), _text, max_size=3),
    raw_extra=st.lists(st.sampled_from(["&", "=", "a=b=c", "+", "%2B", "&&", "k=", "=v"]), max_size=4),
    body=st.one_of(st.binary(max_size=40), _text.map(str.encode)),
    charset=st.sampled_from(["utf-8", "GBK", "gb18030", "ISO-8859-1"]),
    form=st.booleans(),
)
def test_any_call_verifies_exactly_when_the_official_verifier_says_so(
    extra: dict[str, str],
    headers: dict[str, str],
    raw_extra: list[str],
    body: bytes,
    charset: str,
    form: bool,
) -> None:
    from taobao_bridge.signing import verify_qimen_signature

    query = system_query(**extra) + "".join(raw_extra)
    signed_headers = {**headers, "top-sign-list": ",".join(headers)} if headers else {}
    ctype = f"application/x-www-form-urlencoded;charset={charset}" if form else f"text/plain;charset={charset}"
    if form:
        body = b"&".join(quote(k, safe="").encode() + b"=" + quote(v, safe="").encode() for k, v in extra.items())
        query = system_query()
    request = ServletRequest(query, signed_headers, ctype, body)
    try:
        good = signed(request)
    except IllegalArgumentError:
        return  # the official verifier cannot check it either (and the dispatcher answers sign-check-failure)
    all_headers = {**signed_headers, "content-type": ctype}
    verdict = verify_qimen_signature(good.query_string, good.body, SECRET, all_headers)
    assert verdict.ok, verdict.problem
    wrong = ServletRequest(good.query_string[:-1] + ("0" if good.query_string[-1] != "0" else "1"), body=good.body)
    assert not verify_qimen_signature(wrong.query_string, good.body, SECRET, all_headers).ok
