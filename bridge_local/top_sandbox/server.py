"""The gateway over real HTTP on 127.0.0.1: ``TopSandbox`` (a ``Gateway`` with a threaded server) and its
request handler, which serves /router/rest and the admin endpoints (``/healthz``, ``/_sandbox/calls``,
``/_sandbox/records``, ``/_sandbox/faults``)."""

from __future__ import annotations

import gzip
import json
import logging
import sys
import threading
from collections.abc import Callable
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

from taobao_bridge.jsonutil import dumps

from .apis import APIS
from .faults import Faults
from .gateway import Gateway
from .reply import JSON_CONTENT_TYPE, Reply

# The package's name, not this module's: one logger for the whole sandbox, as before it was a package.
logger = logging.getLogger("bridge_local.top_sandbox")

ROUTER_PATH = "/router/rest"
TAG_HEADER = "X-Sandbox-Tag"  # kept on the recorded call: which of a test's workers sent it


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    sandbox: TopSandbox

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away (killed mid-call, or gave up on a timeout fault) is routine for a test gateway:
        # a line in the debug log, not a traceback on stderr.
        if isinstance(sys.exc_info()[1], ConnectionError):
            logger.debug("top sandbox: client %s went away", client_address)
            return
        super().handle_error(request, client_address)


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

    def _send(self, reply: Reply) -> None:
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
        self._send(Reply(status, dumps(value).encode("utf-8"), JSON_CONTENT_TYPE, compressible=False))

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
                reply = sandbox.handle(params, tag=self.headers.get(TAG_HEADER))
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
                self._json(200, {m: sandbox.accepted_records(m) for m in APIS})
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


class TopSandbox(Gateway):
    """A local TOP gateway on 127.0.0.1. ``start()`` serves in a daemon thread; ``url`` is the router URL.

    Faults and inspection (``set_faults``, ``calls``, ``accepted_records``, ...) come from ``Gateway``."""

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
        super().__init__(app_key=app_key, app_secret=app_secret, session_key=session_key, faults=faults, clock=clock)
        self._requested_port = port
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:  # never shows the secret
        return f"TopSandbox(app_key={self.app_key!r}, url={self._url_or_none()!r})"

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
