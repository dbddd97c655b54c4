"""TOP request signing (outbound) and Qimen signature verification (inbound), per docs/PROTOCOL.md.

Pure functions of (parameters, body, secret): no clock, no I/O. Nothing here returns or logs the sign a request
should have carried: only whether it carried it.
"""

from __future__ import annotations

import codecs
import hashlib
import hmac
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, NamedTuple
from urllib.parse import unquote_to_bytes

from .privacy import Shape, loggable

__all__ = [
    "CHARSETS",
    "SYSTEM_PARAMETERS",
    "QimenVerdict",
    "SignMethod",
    "SpiRequest",
    "SpiRequestError",
    "canonical_text",
    "digest",
    "parse_spi_request",
    "qimen_sign",
    "sign_top_request",
    "spi_sign",
    "spi_signature_matches",
    "top_sign_params",
    "verify_qimen_signature",
]


class SignMethod(StrEnum):
    MD5 = "md5"
    HMAC = "hmac"
    HMAC_SHA256 = "hmac-sha256"


def canonical_text(params: Iterable[tuple[str, str]]) -> str:
    """key+value for each pair in code-point order of the keys, no separators."""
    return "".join(key + value for key, value in sorted(params, key=lambda pair: pair[0]))


def digest(text: str | bytes, secret: str, method: SignMethod | str) -> str:
    """Upper-case hex digest of ``text`` with ``secret`` under one of the three TOP sign methods."""
    method = SignMethod(method)
    data = text.encode("utf-8") if isinstance(text, str) else text
    key = secret.encode("utf-8")
    if method is SignMethod.MD5:
        # The platform mandates MD5 for this sign method; we only compute what it defines.
        return hashlib.md5(key + data + key).hexdigest().upper()  # noqa: S324
    if method is SignMethod.HMAC:
        return hmac.new(key, data, hashlib.md5).hexdigest().upper()
    return hmac.new(key, data, hashlib.sha256).hexdigest().upper()


def top_sign_params(params: Mapping[str, str | None]) -> dict[str, str]:
    """The parameters that are both sent and signed: ``sign`` dropped, and None/empty/blank values dropped.

    Sending an unsigned empty value is the classic ``25 Invalid signature``, so empty values go nowhere.
    """
    return {k: v for k, v in params.items() if k != "sign" and v is not None and v.strip() != ""}


def sign_top_request(params: Mapping[str, str | None], secret: str, method: SignMethod | str) -> str:
    """The ``sign`` of an outbound TOP call over every non-empty parameter except ``sign``."""
    return digest(canonical_text(top_sign_params(params).items()), secret, method)


# ------------------------------------------------------------------------------------------- inbound Qimen
# The official verifier is the Java SDK's SpiUtils.checkSign (docs/PROTOCOL.md §3). What follows reproduces its
# parsing where that decides which bytes are signed, and refuses what it would resolve by position.

SYSTEM_PARAMETERS: Final = frozenset({"method", "timestamp", "sign", "app_key", "sign_method"})
"""Parameters that say who calls what, and when: each must appear exactly once, wherever it travels."""

CHARSETS: Final = {"utf-8": "UTF-8", "gbk": "GBK", "gb18030": "GB18030", "gb2312": "GB2312", "iso8859-1": "ISO-8859-1"}
"""Charsets a call may declare (Python codec name -> the name we print). All are ASCII-compatible and stateless,
so the secret and parameter names encode the same everywhere; UTF-16/32 are not (Java writes a big-endian BOM
where Python writes a little-endian one), so no verifier port agrees on them byte for byte."""
_CHARSET_ALIASES: Final = {"ascii": "utf-8"}  # US-ASCII text is UTF-8 text

_FORM = "application/x-www-form-urlencoded"
_BODY_TYPES: Final = ("application/json", "application/xml", "text/plain", "text/xml")
_PARAMETER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ESCAPES = re.compile(r"(?:%[0-9A-Fa-f]{2})+")
# Character.isWhitespace: what the SDK's StringUtils.isEmpty treats as blank (no-break spaces are not).
_JAVA_SPACE = frozenset("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f")
_NO_BREAK = frozenset("\u00a0\u2007\u202f")


class SpiRequestError(ValueError):
    """A Qimen request that cannot be checked. ``unverifiable``: the official verifier fails on it as well (a
    malformed percent-escape), so it is a bad signature; otherwise it is refused as a bad parameter. The message
    may quote the caller's header; ``log_detail`` quotes nothing."""

    def __init__(self, message: str, *, unverifiable: bool, log_detail: str = "") -> None:
        self.unverifiable = unverifiable
        self.log_detail = log_detail or message
        super().__init__(message)


@dataclass(frozen=True)
class SpiRequest:
    """One inbound call parsed the way the official verifier parses it.

    ``signed`` is what the sign covers besides the body (header values named in ``top-sign-list``, then query
    parameters, then form fields, later sources winning as in the SDK); ``params`` holds the query and form
    parameters, the only values the dispatcher may use; ``form_fields`` names the form body's fields in order.
    ``ambiguity`` says why the call must be refused although it might verify (a repeated system parameter, a
    field sent twice), or is None."""

    media_type: str
    charset: str
    is_form: bool
    signed: Mapping[str, str]
    params: Mapping[str, str]
    form_fields: tuple[str, ...]
    remote_sign: str
    body: bytes
    ambiguity: str | None = None

    @property
    def charset_name(self) -> str:
        return CHARSETS[self.charset]

    def log_facts(self) -> dict[str, Any]:
        """What may be logged about this request before (or after) its sign is checked: parameter names that look
        like names, values only where they have the shape they should (privacy.loggable), never a computed sign."""
        names = [name for name in sorted(self.signed, key=_java_order) if _PARAMETER_NAME.fullmatch(name)]
        facts: dict[str, Any] = loggable(
            {"method": self.params.get("method", ""), "sign_method": self.params.get("sign_method", "")}
            | {"remote_sign": self.remote_sign, "content_type": self.media_type},
            {"method": Shape.ID, "sign_method": Shape.ID, "remote_sign": Shape.ID, "content_type": Shape.MEDIA},
        )
        others = len(self.signed) - len(names)
        return facts | {
            "parameters": names + ([f"<{others} other names>"] if others else []),
            "charset": self.charset_name,
        }


def _java_blank(text: str) -> bool:
    return all(
        ch in _JAVA_SPACE or (unicodedata.category(ch) in ("Zs", "Zl", "Zp") and ch not in _NO_BREAK) for ch in text
    )


def _java_split(text: str, separator: str) -> list[str]:
    """String.split: trailing empty strings are dropped when the separator occurs at all."""
    parts = text.split(separator)
    if len(parts) > 1:
        while parts and parts[-1] == "":
            parts.pop()
    return parts


def _java_order(key: str) -> bytes:
    # Arrays.sort on Strings compares UTF-16 code units, not code points.
    return key.encode("utf-16-be", "surrogatepass")


def _url_decode(text: str, charset: str, where: str, *, strict: bool = True) -> str:
    """URLDecoder.decode: '+' is a space, each run of %XX is bytes decoded on its own in ``charset`` (literal
    characters around it stay as they are); a malformed escape is an error (with ``strict``)."""
    if strict and _BAD_ESCAPE.search(text):
        raise SpiRequestError(f"malformed percent-escape in the {where}", unverifiable=True)
    return _ESCAPES.sub(
        lambda run: bytes.fromhex(run.group().replace("%", "")).decode(charset, "replace"), text.replace("+", " ")
    )


def _content_type(headers: Mapping[str, str]) -> tuple[str, str]:
    """(media type, codec) from Content-Type; UTF-8 when no charset is declared (WebUtils.getResponseCharset)."""
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "") or ""
    media_type, *parameters = (part.strip() for part in content_type.split(";"))
    declared = ""
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            declared = value.strip().strip('"').strip()
            break
    if not declared:
        return media_type.lower(), "utf-8"
    try:
        codec = codecs.lookup(declared).name
    except LookupError:
        codec = ""
    codec = _CHARSET_ALIASES.get(codec, codec)
    if codec not in CHARSETS:
        allowed = ", ".join([*CHARSETS.values(), "US-ASCII"])
        raise SpiRequestError(
            f"Content-Type: charset {declared[:40]!r} is not supported; use one of {allowed}",
            unverifiable=False,
            log_detail="unsupported charset",
        )
    return media_type.lower(), codec


def parse_spi_request(raw_query: str, headers: Mapping[str, str], body: bytes) -> SpiRequest:
    """Parse a raw call as SpiUtils.checkSign does. Raises :class:`SpiRequestError`."""
    media_type, charset = _content_type(headers)
    is_form = media_type == _FORM
    if not is_form and media_type and not media_type.startswith(_BODY_TYPES) and not media_type.endswith("+json"):
        raise SpiRequestError(
            f"Content-Type {media_type[:60]!r} is not supported; send application/json or {_FORM}",
            unverifiable=False,
            log_detail="unsupported Content-Type",
        )
    # getQueryMap: split on '&' then '='; a pair holding a second raw '=' is dropped, a repeated key keeps its
    # last value. Raw names are counted too, so that no repetition hides behind a dropped pair.
    query: dict[str, str] = {}
    raw_names: list[str] = []
    for segment in _java_split(raw_query, "&"):
        pair = _java_split(segment, "=")
        raw_names.append(_url_decode(segment.partition("=")[0], charset, "query", strict=False))
        if len(pair) == 2:
            query[_url_decode(pair[0], charset, "query")] = _url_decode(pair[1], charset, "query")
        elif len(pair) == 1:
            query[_url_decode(pair[0], charset, "query")] = ""
    lowered = {k.lower(): v for k, v in headers.items()}
    header_values: dict[str, str] = {}
    sign_list = lowered.get("top-sign-list") or ""
    if not _java_blank(sign_list):
        for name in _java_split(sign_list, ","):
            value = lowered.get(name.lower(), "")
            header_values[name] = "" if _java_blank(value) else _url_decode(value, charset, f"header {name[:40]!r}")
    signed: dict[str, str] = {**header_values, **query}
    form_pairs: list[tuple[str, str]] = []
    form: dict[str, str] = {}
    if is_form:
        # getFormMap: the servlet's parameters (the query's first, then the body's), first value of each name,
        # blank values as "", names the query map already holds left out.
        form_pairs = list(_servlet_pairs(body, charset))
        for name, value in [*_servlet_pairs(raw_query.encode(charset, "replace"), charset), *form_pairs]:
            if name not in query and name not in form:
                form[name] = "" if _java_blank(value) else value
        signed.update(form)
    form_fields = tuple(name for name, _ in form_pairs)
    return SpiRequest(
        media_type=media_type,
        charset=charset,
        is_form=is_form,
        signed=signed,
        params={k: v for k, v in signed.items() if k in query or k in form},
        form_fields=form_fields,
        remote_sign=query.get("sign", ""),
        body=body,
        ambiguity=_ambiguity(raw_names, form_fields, header_values, query),
    )


def _servlet_pairs(data: bytes, charset: str) -> Iterator[tuple[str, str]]:
    # As a servlet container parses parameters (Tomcat): %XX and literal bytes together, then the whole value in
    # the request's charset.
    for segment in data.split(b"&"):
        name, _, value = segment.partition(b"=")
        if name:
            if _BAD_ESCAPE.search(segment.decode("latin-1")):
                raise SpiRequestError(
                    "malformed percent-escape in the form", unverifiable=True, log_detail="bad escape"
                )
            yield (
                unquote_to_bytes(name.replace(b"+", b" ")).decode(charset, "replace"),
                unquote_to_bytes(value.replace(b"+", b" ")).decode(charset, "replace"),
            )


def _ambiguity(
    query_names: list[str], form_fields: tuple[str, ...], header_values: Mapping[str, str], query: Mapping[str, str]
) -> str | None:
    # The SDK would pick one value by position; a call that says two things is refused instead.
    for name in sorted(SYSTEM_PARAMETERS):
        count = query_names.count(name) + form_fields.count(name) + (name in header_values and name in query)
        if count > 1:
            return f"system parameter {name!r} appears {count} times; send it once"
    for name in form_fields:
        if form_fields.count(name) > 1:
            return f"form field {name[:40]!r} appears {form_fields.count(name)} times; send it once"
        if name in query_names:
            return f"parameter {name[:40]!r} is sent both in the query and in the form; send it once"
    return None


def _text_variants(request: SpiRequest) -> tuple[bytes, list[bytes]]:
    """(parameter text, body variants) as bytes in the call's charset. The official text decodes the body in its
    charset and encodes it back (lossy for bytes that are not text); the exact bytes received are the other
    variant. They differ only for a body that is not valid text, which is refused after verification anyway."""
    text = "".join(k + v for k, v in sorted(request.signed.items(), key=lambda kv: _java_order(kv[0])) if k != "sign")
    prefix = text.encode(request.charset, "replace")
    if request.is_form:
        return prefix, [b""]
    official = request.body.decode(request.charset, "replace").encode(request.charset, "replace")
    return prefix, [official] if official == request.body else [official, request.body]


def spi_sign(request: SpiRequest, secret: str, method: SignMethod | str = SignMethod.MD5) -> str:
    """The sign a caller computes for ``request`` (the official text) with ``method``."""
    prefix, bodies = _text_variants(request)
    return _spi_digest(prefix + bodies[0], secret, request.charset, SignMethod(method))


def _spi_digest(data: bytes, secret: str, charset: str, method: SignMethod) -> str:
    if method is SignMethod.MD5:
        key = secret.encode(charset, "replace")
        return hashlib.md5(key + data + key).hexdigest().upper()  # noqa: S324 - the platform's algorithm
    return digest(data, secret, method)


def spi_signature_matches(request: SpiRequest, secret: str) -> bool:
    """Whether ``request`` carries a valid sign: MD5 whatever ``sign_method`` says (the official verifier never
    reads it), or the HMAC that ``sign_method`` names. Every candidate needs the secret; comparisons are
    constant-time and nothing computed here leaves this function."""
    remote = request.remote_sign.strip().upper().encode("utf-8", "replace")
    if not remote:
        return False
    methods = [SignMethod.MD5]
    named = request.params.get("sign_method", "").strip().lower()
    if named in (SignMethod.HMAC, SignMethod.HMAC_SHA256):
        methods.append(SignMethod(named))
    prefix, bodies = _text_variants(request)
    ok = False
    for method in methods:
        for body in bodies:
            local = _spi_digest(prefix + body, secret, request.charset, method).encode("ascii")
            ok |= hmac.compare_digest(remote, local)
    return ok


class QimenVerdict(NamedTuple):
    """The outcome of :func:`verify_qimen_signature`. Never the expected sign: that would make any log of a
    failure an oracle for forging that exact request."""

    ok: bool
    remote_sign: str
    problem: str


def qimen_sign(raw_query: str, body: bytes, secret: str, headers: Mapping[str, str] | None = None) -> str:
    """The sign a Qimen caller computes: MD5 unless ``sign_method`` names an HMAC. For clients and tests."""
    request = parse_spi_request(raw_query, headers or {}, body)
    named = request.params.get("sign_method") or SignMethod.MD5.value
    return spi_sign(request, secret, named)


def verify_qimen_signature(
    raw_query: str, body: bytes, secret: str, headers: Mapping[str, str] | None = None
) -> QimenVerdict:
    """Check a raw Qimen call (Content-Type from ``headers``; JSON in UTF-8 without one)."""
    try:
        request = parse_spi_request(raw_query, headers or {}, body)
    except SpiRequestError as exc:
        return QimenVerdict(False, "", str(exc))
    if request.ambiguity:
        return QimenVerdict(False, request.remote_sign, request.ambiguity)
    if not spi_signature_matches(request, secret):
        return QimenVerdict(False, request.remote_sign, "sign missing or wrong")
    return QimenVerdict(True, request.remote_sign, "")
