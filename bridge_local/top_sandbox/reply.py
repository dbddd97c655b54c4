"""What goes back on the wire for /router/rest: the ``Reply``, the success and error documents, and their JSON
or XML rendering (``format=xml`` is the documented default; ``simplify=true`` drops the wrapper key); also the
broken bodies of the bad-body faults (not JSON, truncated)."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape as xml_escape

from taobao_bridge.jsonutil import dumps

from .errors import TopError

JSON_CONTENT_TYPE = "application/json;charset=UTF-8"
_REQUEST_ID_ALPHABET = string.ascii_lowercase + string.digits

BAD_GATEWAY_HTML = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>"
    b"\r\n<hr><center>Tengine (top-sandbox)</center>\r\n</body>\r\n</html>\r\n"
)
# What a proxy or web firewall in front of the gateway may send with HTTP 200 ("system busy, try again later").
NOT_JSON_HTML = (
    "<!DOCTYPE html>\r\n<html><head><title>系统繁忙</title></head>\r\n"
    "<body><p>系统繁忙，请稍后再试 (top-sandbox)</p></body></html>\r\n"
).encode()


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str
    delay_s: float = 0.0
    compressible: bool = True


def new_request_id() -> str:
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


def render(document: dict[str, Any], fmt: str) -> tuple[bytes, str]:
    """A response document (one root key) as JSON or, for ``format=xml`` (the documented default), XML."""
    if fmt == "xml":
        ((root, value),) = document.items()
        text = '<?xml version="1.0" encoding="utf-8" ?>' + _xml_value(root, value)
        return text.encode("utf-8"), "text/xml;charset=UTF-8"
    return dumps(document).encode("utf-8"), JSON_CONTENT_TYPE


def error_reply(error: TopError, fmt: str, request_id: str | None) -> Reply:
    body: dict[str, Any] = {"code": error.code, "msg": error.msg}
    if error.sub_code:
        body["sub_code"] = error.sub_code
    if error.sub_msg:
        body["sub_msg"] = error.sub_msg
    body["request_id"] = request_id
    data, content_type = render({"error_response": body}, fmt)
    return Reply(200, data, content_type)


def success_reply(key: str, body: Any, request_id: str | None, fmt: str, simplify: bool) -> Reply:
    """``body`` plus request_id under the API's response key; simplified: bare in JSON, under ``response`` in XML
    (an XML document needs one root). An odd ``body`` that is not an object (a list, a string) goes as it is:
    there is no place for request_id in it."""
    inner = dict(body, request_id=request_id) if isinstance(body, dict) else body
    document = {"response": inner} if simplify and fmt == "xml" else {key: inner}
    if simplify and fmt == "json":
        return Reply(200, dumps(inner).encode("utf-8"), JSON_CONTENT_TYPE)
    data, content_type = render(document, fmt)
    return Reply(200, data, content_type)


def not_json_reply() -> Reply:
    """HTTP 200 with an HTML page instead of the JSON document."""
    return Reply(200, NOT_JSON_HTML, "text/html;charset=UTF-8")


def truncated(reply: Reply) -> Reply:
    """``reply`` with its body cut in half (the connection dropped mid-answer); same status and type."""
    return Reply(
        reply.status, reply.body[: len(reply.body) // 2], reply.content_type, reply.delay_s, compressible=False
    )
