"""The local stack: moto's DynamoDB server, tables from template.yaml, the TOP sandbox, and an HTTP server
that turns each request into the API Gateway (HTTP API v2) event Lambda would receive and calls the same
handler. Used by ``make run`` and by the integration tests. The same moto server holds the template's event bus,
rule and event log group (``event_log``), and the template's DynamoDB stream event sources are emulated on it
(``stream_mapping``): ``python -m bridge_local events tail`` shows the events.

Concurrency is Lambda's and DynamoDB's: requests are served on threads, each function runs one invocation at a
time per instance in a pool of independently loaded instances (``functions.FunctionPool``; HTTP routes and
schedules alike), and moto answers one DynamoDB request at a time (``moto_fixes``). With ``state_file`` the
tables are saved and loaded again at the next start (``persistence``); with ``secrets_file`` the secrets are
re-read before each invocation (``local_secrets``). Both are off unless set, as in the tests.
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
from .functions import DEFAULT_MAX_INSTANCES, FunctionPool
from .stream_mapping import StreamPoller, StreamSource, stream_sources
from .template import Route, ScheduledFunction, create_local_tables, http_routes, load_template, scheduled_functions

__all__ = ["LOCAL_DIR", "PROJECT_ROOT", "LocalStack", "StackConfig"]

log = logging.getLogger("bridge_local")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOCAL_DIR = PROJECT_ROOT / ".local"  # git-ignored: the saved tables and the local secrets of `make run`
OPENAPI_PATH = "/openapi.json"  # the OpenAPI description of the routes (bridge_local/openapi.py)
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
    max_instances: int = DEFAULT_MAX_INSTANCES  # per function without ReservedConcurrentExecutions
    state_file: Path | None = None  # None: the tables live in memory only; `make run`: .local/dynamodb.json
    state_save_interval_s: float = 5.0
    fresh: bool = False  # with state_file: start with empty tables (the old file is kept as .bak)
    secrets_file: Path | None = None  # None: secrets from overrides and defaults; `make run`: .local/secrets.json
    run_streams: bool = True  # emulate the template's DynamoDB stream event sources (bridge_local.stream_mapping)
    stream_poll_interval_s: float = 0.2

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, fresh: bool = False) -> StackConfig:
        """The configuration of ``make run``: the documented variables, tables saved under ``.local/``."""
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
            state_file=LOCAL_DIR / "dynamodb.json",
            fresh=fresh,
            secrets_file=LOCAL_DIR / "secrets.json",
        )


class LocalStack:
    """Start with ``start()`` or ``with LocalStack(config) as stack:``; ``url`` is the HTTP API's base URL."""

    def __init__(self, config: StackConfig | None = None) -> None:
        self.config = config or StackConfig()
        self.template = load_template(self.config.template_path)
        self.routes = http_routes(self.template)
        self.schedules = scheduled_functions(self.template)
        self.streams = stream_sources(self.template)
        self.pools = self._function_pools()
        self.environment: dict[str, str] = {}
        self.created_tables: list[str] = []
        self.state_lines: list[str] = []  # what loading the saved tables did, for the start banner
        self.dynamodb_endpoint = ""  # moto serves every AWS service the stack uses on this one endpoint
        self.event_bus: Any = None  # event_log.LocalEventBus: where FulfillmentOrderReceived events are logged
        self.stream_poller: StreamPoller | None = None
        self.sandbox: Any = None
        self._moto: Any = None
        self._http: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._saved_environ: dict[str, str | None] = {}
        self._state: Any = None  # persistence.StateKeeper
        self._secrets: Any = None  # local_secrets.SecretsWatcher
        self._in_flight = 0  # invocations running now; stop() lets them finish before the final save
        self._settled = threading.Condition()

    def _function_pools(self) -> dict[str, FunctionPool]:
        # One pool per function (IntakeFunction has several routes), sized by its reserved concurrency.
        pools: dict[str, FunctionPool] = {}
        functions: list[Route | ScheduledFunction | StreamSource] = [*self.routes, *self.schedules, *self.streams]
        for function in functions:
            if function.function_id not in pools:
                pools[function.function_id] = FunctionPool(
                    function.function_id,
                    function.code_uri,
                    function.handler,
                    PROJECT_ROOT,
                    max_instances=function.reserved_concurrency or self.config.max_instances,
                )
        return pools

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> LocalStack:
        try:
            self._start_dynamodb()
            self._watch_secrets()
            self._start_sandbox()
            self._apply_environment()
            self.created_tables = create_local_tables(self.dynamodb_client(), self.template)
            self._restore_state()
            self._start_events()
            self._start_http()
            if self.config.run_schedules and self.schedules:
                self._start_schedules()
            if self._state is not None:
                self._state.start()
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
        with self._settled:  # requests already accepted finish (their threads are daemons nobody joins)
            self._settled.wait_for(lambda: self._in_flight == 0, timeout=30)
        if self._state is not None:
            self._state.stop()  # after the last request: the final save is the state the callers were told
            self._state = None
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
        # Clients made while this stack ran talk to its (stopped) moto: let the next user make its own.
        from taobao_bridge import dynamo

        dynamo._clients.clear()

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

    def _restore_state(self) -> None:
        if self.config.state_file is None:
            return
        from .persistence import StateKeeper

        self._state = StateKeeper(self.config.state_file, self.template, self.config.state_save_interval_s)
        self.state_lines = self._state.restore(fresh=self.config.fresh)
        for line in self.state_lines:
            log.debug("local tables: %s", line)

    def _watch_secrets(self) -> None:
        if self.config.secrets_file is None:
            return
        from .local_secrets import ENV_BY_KEY, SecretsWatcher

        for name in ENV_BY_KEY.values():  # stop() puts the environment back as it was
            self._saved_environ.setdefault(name, os.environ.get(name))
        base = {name: value for name, value in self.config.overrides.items() if name in ENV_BY_KEY.values()}
        self._secrets = SecretsWatcher(self.config.secrets_file, base, on_change=self._secrets_changed)
        self._secrets.apply()

    def _secrets_changed(self, values: dict[str, str]) -> None:
        if self.sandbox is None:
            return
        # The sandbox checks calls against the key, secret and session it was started with; telling it about
        # new ones is its API's business (see the README). Without that API, say what the calls will meet.
        update = getattr(self.sandbox, "set_credentials", None)
        if callable(update):
            credentials = {**LOCAL_DEFAULTS, **values}
            update(
                app_key=credentials[ENV.TOP_APP_KEY],
                app_secret=credentials[ENV.TOP_APP_SECRET],
                session_key=credentials[ENV.TOP_SESSION_KEY],
            )
        else:
            log.warning(
                "the TOP sandbox still expects the app key, app secret and session key it started with; "
                "restart `make run` (the tables are kept) for it to take the new ones"
            )

    def _secret_values(self) -> dict[str, str]:
        """The four secret settings the functions get now: local defaults, overrides, the secrets file."""
        values = {**LOCAL_DEFAULTS, **self.config.overrides}
        if self._secrets is not None:
            values.update(self._secrets.effective)
        return values

    def _start_sandbox(self) -> None:
        if self.config.top_gateway_url:
            return
        from .top_sandbox import TopSandbox

        values = self._secret_values()
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
        for stream in self.streams:
            env.update(stream.environment)
        env[ENV.BRIDGE_ENV] = "local"
        env.pop(ENV.BRIDGE_SECRET_ID, None)  # secrets come from overrides or the local defaults
        env["AWS_ENDPOINT_URL_DYNAMODB"] = self.dynamodb_endpoint
        env["AWS_ENDPOINT_URL_EVENTBRIDGE"] = self.dynamodb_endpoint  # boto3 names it after the service id
        env[ENV.TOP_GATEWAY_URL] = self.config.top_gateway_url or self.sandbox.url
        env.update(self.config.overrides)
        if self._secrets is not None:
            env.update(self._secrets.effective)  # the watcher owns these from now on
        self.environment = env
        for name, value in env.items():
            self._saved_environ.setdefault(name, os.environ.get(name))
            os.environ[name] = value
        # Containers created before the endpoint was known would talk to AWS: forget them.
        from taobao_bridge import dynamo

        dynamo._clients.clear()

    def _start_events(self) -> None:
        """The event bus, rule and log group of the template on moto, and the stream event sources, positioned at
        the streams' end: what restoring the saved tables wrote is not new."""
        from .event_log import create_local_event_bus

        self.event_bus = create_local_event_bus(self.dynamodb_endpoint, self.template)
        if not (self.config.run_streams and self.streams):
            return
        streams = boto3.client(
            "dynamodbstreams",
            endpoint_url=self.dynamodb_endpoint,
            region_name=LOCAL_ENVIRONMENT["AWS_REGION"],
            aws_access_key_id="local",
            aws_secret_access_key="local",  # noqa: S106 - moto accepts anything
        )
        poller = StreamPoller(
            self.streams, self.dynamodb_client(), streams, self._invoke, interval_s=self.config.stream_poll_interval_s
        )
        poller.start_at_end()
        self.stream_poller = poller
        self._spawn("streams", lambda: poller.run(self._stopping))

    def _start_http(self) -> None:
        stack = self

        class Handler(_ApiHandler):
            pass

        Handler.stack = stack
        self._http = _ApiServer((self.config.host, self.config.port), Handler)
        self._http.daemon_threads = True
        self._spawn("http", self._http.serve_forever)

    def _start_schedules(self) -> None:
        # One thread per schedule, as EventBridge Scheduler invokes each function on its own. A run started by
        # hand (run_schedule_once) may overlap a scheduled one, as in AWS: the outbox lease keeps them apart.
        for schedule in self.schedules:
            if schedule.enabled:
                self._spawn(f"schedule-{schedule.function_id}", lambda schedule=schedule: self._run_schedule(schedule))

    def _run_schedule(self, schedule: Any) -> None:
        while not self._stopping.wait(self.config.sync_interval_s):
            self.run_schedule_once(schedule)

    def _invoke(self, function_id: str, event: dict[str, Any], timeout_s: float, memory_mb: int) -> Any:
        """One invocation of a function, on one of its instances, with the secrets as they are now."""
        with self._settled:
            self._in_flight += 1
        try:
            if self._secrets is not None:
                self._secrets.apply()
            return self.pools[function_id].invoke(
                event, lambda: apigw.lambda_context(function_id, timeout_s, memory_mb)
            )
        finally:
            with self._settled:
                self._in_flight -= 1
                self._settled.notify_all()

    def run_schedule_once(self, schedule: Any) -> Any:
        """Invoke one scheduled function as EventBridge Scheduler would; returns its result (None if it raised)."""
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
        try:
            result = self._invoke(schedule.function_id, event, schedule.timeout_s, schedule.memory_mb)
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
        if method == "GET" and parts.path == OPENAPI_PATH:  # the local stack's own: API Gateway has no such route
            from .openapi import build

            return 200, {"content-type": "application/json"}, json.dumps(build(), ensure_ascii=False).encode("utf-8")
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
        try:
            result = self._invoke(route.function_id, event, route.timeout_s, route.memory_mb)
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
        declared = (self.headers.get("Content-Length") or "0").strip()
        if not declared.isdigit():  # "-1" or "abc": waiting for such a body would hang the connection
            self._reply(400, {"content-type": "application/json"}, b'{"message":"Bad Request"}')
            self.close_connection = True
            return
        length = int(declared)
        if length > MAX_BODY_BYTES:
            self._reply(413, {"content-type": "application/json"}, b'{"message":"Request Entity Too Large"}')
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        # Pairs, not a dict: the event builder joins repeated headers and splits cookies as API Gateway does.
        headers = list(self.headers.items())
        # The target as sent: http.server folds a leading "//" into "/", and API Gateway does not.
        parts = self.requestline.split(" ")
        target = parts[1] if len(parts) == 3 else self.path
        status, out_headers, out_body = self.stack.invoke_http(self.command, target, headers, body)
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
        if self.command != "HEAD":  # a HEAD answer has the headers of the body it does not send
            self.wfile.write(body)

    # Every method goes through the routes, as API Gateway does: one with no route is a JSON 404, not a 501 page.
    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)
