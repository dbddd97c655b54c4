"""The local stack: moto's DynamoDB server, tables from template.yaml, the TOP sandbox, and an HTTP server
that turns each request into the API Gateway (HTTP API v2) event Lambda would receive and calls the same
handler. Used by ``make run`` and by the integration tests.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3

from taobao_bridge.settings import ENV, LOCAL_DEFAULTS

from . import apigw
from .template import create_local_tables, http_routes, load_handler, load_template, scheduled_functions

__all__ = ["PROJECT_ROOT", "LocalStack", "StackConfig"]

log = logging.getLogger("bridge_local")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's own payload limit

# Environment that makes the package behave as it does in Lambda, minus AWS: fake credentials so boto3
# signs requests (moto accepts any), a region, and Powertools without X-Ray.
LOCAL_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    ENV.BRIDGE_ENV: "local",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_SERVICE_NAME": "taobao-bridge",
    "POWERTOOLS_METRICS_NAMESPACE": "TaobaoBridge",
}


@dataclass
class StackConfig:
    """What the local stack listens on and talks to. ``from_env`` reads the documented variables."""

    port: int = 3000
    dynamodb_port: int = 8000
    sandbox_port: int = 3001
    host: str = "127.0.0.1"
    top_gateway_url: str | None = None  # set: use that gateway and start no sandbox
    sync_interval_s: float = 10.0
    run_schedules: bool = True
    template_path: Path = PROJECT_ROOT / "template.yaml"
    overrides: dict[str, str] = field(default_factory=dict)  # environment for the functions

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StackConfig:
        env = os.environ if environ is None else environ
        overrides = {
            name: env[name]
            for name in (ENV.QIMEN_APP_SECRET, ENV.TOP_APP_KEY, ENV.TOP_APP_SECRET, ENV.TOP_SESSION_KEY)
            if env.get(name)
        }
        return cls(
            port=int(env.get("PORT", "3000")),
            dynamodb_port=int(env.get("DYNAMODB_PORT", "8000")),
            sandbox_port=int(env.get("TOP_SANDBOX_PORT", "3001")),
            top_gateway_url=env.get(ENV.TOP_GATEWAY_URL) or None,
            sync_interval_s=float(env.get("SYNC_INTERVAL", "10")),
            overrides=overrides,
        )


class LocalStack:
    """Start with ``start()`` or ``with LocalStack(config) as stack:``; ``url`` is the HTTP API's base URL."""

    def __init__(self, config: StackConfig | None = None) -> None:
        self.config = config or StackConfig()
        self.template = load_template(self.config.template_path)
        self.routes = http_routes(self.template)
        self.schedules = scheduled_functions(self.template)
        self.environment: dict[str, str] = {}
        self.created_tables: list[str] = []
        self.dynamodb_endpoint = ""
        self.sandbox: Any = None
        self._moto: Any = None
        self._http: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._saved_environ: dict[str, str | None] = {}

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> LocalStack:
        try:
            self._start_dynamodb()
            self._start_sandbox()
            self._apply_environment()
            self.created_tables = create_local_tables(self.dynamodb_client(), self.template)
            self._start_http()
            if self.config.run_schedules and self.schedules:
                self._start_schedules()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        if self.sandbox is not None:
            self.sandbox.stop()
            self.sandbox = None
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        for name, value in self._saved_environ.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_environ.clear()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._http is not None, "stack not started"
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def top_gateway_url(self) -> str:
        return self.environment[ENV.TOP_GATEWAY_URL]

    def dynamodb_client(self) -> Any:
        return boto3.client(
            "dynamodb",
            endpoint_url=self.dynamodb_endpoint,
            region_name=LOCAL_ENVIRONMENT["AWS_REGION"],
            aws_access_key_id="local",
            aws_secret_access_key="local",  # noqa: S106 - moto accepts anything
        )

    # ----------------------------------------------------------------- parts
    def _start_dynamodb(self) -> None:
        from moto.server import ThreadedMotoServer

        from . import moto_fixes

        moto_fixes.apply()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per DynamoDB request otherwise
        self._moto = ThreadedMotoServer(ip_address=self.config.host, port=self.config.dynamodb_port, verbose=False)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.dynamodb_endpoint = f"http://{host}:{port}"

    def _start_sandbox(self) -> None:
        if self.config.top_gateway_url:
            return
        from .top_sandbox import TopSandbox

        values = {**LOCAL_DEFAULTS, **self.config.overrides}
        self.sandbox = TopSandbox(
            app_key=values[ENV.TOP_APP_KEY],
            app_secret=values[ENV.TOP_APP_SECRET],
            session_key=values[ENV.TOP_SESSION_KEY],
            port=self.config.sandbox_port,
        ).start()

    def _apply_environment(self) -> None:
        env: dict[str, str] = dict(LOCAL_ENVIRONMENT)
        # The functions' environment as the template declares it (table names resolve to local tables).
        for route in self.routes:
            env.update(route.environment)
        for schedule in self.schedules:
            env.update(schedule.environment)
        env[ENV.BRIDGE_ENV] = "local"
        env.pop(ENV.BRIDGE_SECRET_ID, None)  # secrets come from overrides or the local defaults
        env["AWS_ENDPOINT_URL_DYNAMODB"] = self.dynamodb_endpoint
        env[ENV.TOP_GATEWAY_URL] = self.config.top_gateway_url or self.sandbox.url
        env.update(self.config.overrides)
        self.environment = env
        for name, value in env.items():
            self._saved_environ.setdefault(name, os.environ.get(name))
            os.environ[name] = value
        # Containers created before the endpoint was known would talk to AWS: forget them.
        from taobao_bridge import dynamo

        dynamo._clients.clear()

    def _start_http(self) -> None:
        stack = self

        class Handler(_ApiHandler):
            pass

        Handler.stack = stack
        self._http = _ApiServer((self.config.host, self.config.port), Handler)
        self._http.daemon_threads = True
        self._spawn("http", self._http.serve_forever)

    def _start_schedules(self) -> None:
        # One thread runs the schedules one after another: in Lambda each function has its own process, here
        # they share Powertools' logger and metrics state, which concurrent runs would mix up.
        self._spawn("schedules", self._run_schedules)

    def _run_schedules(self) -> None:
        while not self._stopping.wait(self.config.sync_interval_s):
            for schedule in self.schedules:
                if self._stopping.is_set():
                    return
                self.run_schedule_once(schedule)

    def run_schedule_once(self, schedule: Any) -> Any:
        """Invoke one scheduled function as EventBridge Scheduler would; returns its result (None if it raised)."""
        handler = load_handler(PROJECT_ROOT, schedule.code_uri, schedule.handler)
        event = {
            "version": "0",
            "id": f"local-{time.time_ns()}",
            "detail-type": "Scheduled Event",
            "source": "aws.scheduler",
            "account": "123456789012",
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "region": LOCAL_ENVIRONMENT["AWS_REGION"],
            "resources": [f"local:{schedule.function_id}"],
            "detail": {},
        }
        context = apigw.lambda_context(schedule.function_id, schedule.timeout_s, schedule.memory_mb)
        try:
            result = handler(event, context)
        except Exception:
            log.exception("%s failed", schedule.function_id)
            return None
        log.info("%s ran: %s", schedule.function_id, json.dumps(result, default=str)[:300])
        return result

    def _spawn(self, name: str, target: Any) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # ----------------------------------------------------------------- requests
    def invoke_http(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, dict, bytes]:
        """What API Gateway + Lambda would answer for one HTTP request."""
        parts = urlsplit(target)
        found = apigw.match_route(self.routes, method, parts.path)
        if found is None:
            return 404, {"content-type": "application/json"}, b'{"message":"Not Found"}'
        route, path_parameters = found
        event = apigw.http_api_event(
            method=method,
            path=parts.path,
            raw_query=parts.query,
            headers=headers,
            body=body,
            route_key=route.route_key,
            path_parameters=path_parameters or None,
        )
        handler = load_handler(PROJECT_ROOT, route.code_uri, route.handler)
        try:
            result = handler(event, apigw.lambda_context(route.function_id, route.timeout_s, route.memory_mb))
        except Exception:
            log.exception("%s raised", route.function_id)
            return 500, {"content-type": "application/json"}, b'{"message":"Internal Server Error"}'
        status, out_headers, out_body = apigw.response_to_http(result)
        return status, out_headers, out_body


class _ApiServer(ThreadingHTTPServer):
    # The default backlog of 5 resets connections when the platform retries in a burst.
    request_queue_size = 128
    daemon_threads = True


class _ApiHandler(BaseHTTPRequestHandler):
    stack: LocalStack
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # keep-alive stalls without it (about 20 req/s instead of hundreds)

    def _serve(self) -> None:
        started = time.perf_counter()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._reply(413, {"content-type": "application/json"}, b'{"message":"Request Entity Too Large"}')
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        # Pairs, not a dict: the event builder joins repeated headers and splits cookies as API Gateway does.
        headers = list(self.headers.items())
        status, out_headers, out_body = self.stack.invoke_http(self.command, self.path, headers, body)
        self._reply(status, out_headers, out_body)
        log.debug("%s %s -> %s in %.1f ms", self.command, self.path, status, (time.perf_counter() - started) * 1000)

    def _reply(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() == "set-cookie":
                for cookie in value.split("\n"):
                    self.send_header(name, cookie)
            elif name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)
