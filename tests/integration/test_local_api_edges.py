"""The local HTTP API answers odd methods, paths and headers as API Gateway would: JSON 404s, no 501 HTML
pages, no hung connections."""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"])
def test_a_method_with_no_route_is_a_json_404(stack: Any, method: str) -> None:
    response = httpx.request(method, f"{stack.url}/qimen", timeout=5)
    assert response.status_code == 404
    if method != "HEAD":
        assert response.json() == {"message": "Not Found"}


@pytest.mark.parametrize("path", ["//qimen", "/qimen/", "/v1//writeoffs", "/V1/writeoffs"])
def test_paths_are_matched_exactly(stack: Any, path: str) -> None:
    response = httpx.post(f"{stack.url}{path}", content=b"{}", timeout=5)
    assert response.status_code == 404 and response.json() == {"message": "Not Found"}


@pytest.mark.parametrize("length", ["-1", "abc", "1.5"])
def test_a_bad_content_length_is_answered_not_hung(stack: Any, length: str) -> None:
    url = urlsplit(stack.url)
    with socket.create_connection((url.hostname, url.port), timeout=5) as conn:
        request = f"POST /v1/writeoffs HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n"
        conn.sendall(request.encode("ascii"))
        received = b""
        while chunk := conn.recv(4096):  # the server answers and closes: read to the end
            received += chunk
        answer = received.decode("latin-1")
    assert answer.startswith("HTTP/1.1 400") and '{"message":"Bad Request"}' in answer
