"""What goes back on the wire for /router/rest: the ``Reply``, the success and error documents, and their JSON
or XML rendering (``format=xml`` is the documented default; ``simplify=true`` drops the wrapper key)."""

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


def success_reply(key: str, body: dict[str, Any], request_id: str | None, fmt: str, simplify: bool) -> Reply:
    """``body`` plus request_id under the API's response key; simplified: bare in JSON, under ``response`` in XML
    (an XML document needs one root)."""
    inner = dict(body, request_id=request_id)
    document = {"response": inner} if simplify and fmt == "xml" else {key: inner}
    if simplify and fmt == "json":
        return Reply(200, dumps(inner).encode("utf-8"), JSON_CONTENT_TYPE)
    data, content_type = render(document, fmt)
    return Reply(200, data, content_type)
