"""Command line of the local stack. ``python -m bridge_local --help``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from botocore.exceptions import BotoCoreError, ClientError

from taobao_bridge.errors import BridgeError
from taobao_bridge.settings import ENV, LOCAL_DEFAULTS, SECRET_KEYS

SECRET_NAMES = sorted(SECRET_KEYS.values())


def _secret() -> str:
    """The Qimen secret the local stack checks: .local/secrets.json, else QIMEN_APP_SECRET, else the default."""
    from .local_secrets import SECRETS_FILE, SecretsFileError, read_secrets

    try:
        from_file = read_secrets(SECRETS_FILE).get("qimen_app_secret")
    except (SecretsFileError, OSError):
        from_file = None
    return from_file or os.environ.get(ENV.QIMEN_APP_SECRET) or LOCAL_DEFAULTS[ENV.QIMEN_APP_SECRET]


def _default_url() -> str:
    return f"http://127.0.0.1:{os.environ.get('PORT', '3000')}/qimen"


def cmd_run(args: argparse.Namespace) -> int:
    from .stack import PROJECT_ROOT, LocalStack, StackConfig

    started = time.perf_counter()
    config = StackConfig.from_env(fresh=args.fresh)
    if args.local_dir:
        config.state_file = Path(args.local_dir) / "dynamodb.json"
        config.secrets_file = Path(args.local_dir) / "secrets.json"
    stack = LocalStack(config).start()
    stopping = {"flag": False}

    def stop(signum: int, _frame: Any) -> None:
        stopping["flag"] = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    sample = os.path.relpath(PROJECT_ROOT / "events" / "qimen_fulfillment_create.json")
    gateway = stack.top_gateway_url + ("" if stack.sandbox else "  (TOP_GATEWAY_URL)")
    routes = ", ".join(f"{r.method} {r.path}" for r in stack.routes)
    tables = ", ".join(sorted(stack.created_tables))
    schedules = ", ".join(s.function_id for s in stack.schedules) or "none"
    if stack.schedules:
        schedules += f" every {config.sync_interval_s:g} s (SYNC_INTERVAL)"
    saved = os.path.relpath(config.state_file) if config.state_file else "nowhere (in memory)"
    state = "".join(f"\n                  {line}" for line in stack.state_lines)
    secrets = os.path.relpath(config.secrets_file) if config.secrets_file else "-"
    print(
        f"""
taobao-bridge local stack ready in {time.perf_counter() - started:.1f} s
  HTTP API        {stack.url}   routes: {routes}
  DynamoDB (moto) {stack.dynamodb_endpoint}   tables: {tables}
  saved tables    {saved} (start empty: make run FRESH=1){state}
  secrets         {secrets}, re-read before each invocation (python -m bridge_local secrets set KEY VALUE)
  TOP gateway     {gateway}
  schedules       {schedules}

Send the signed seed 003 call (again = a replay with the same partner_order_id), then look around:
  .venv/bin/taobao-bridge send-qimen {sample}
  .venv/bin/taobao-bridge status        (the operator command: docs/OPERATIONS.md)
Ctrl-C stops everything.""",
        flush=True,
    )
    while not stopping["flag"]:
        time.sleep(0.2)
    print("stopping", flush=True)
    stack.stop()
    return 0


def cmd_secrets(args: argparse.Namespace) -> int:
    from .local_secrets import ENV_BY_KEY, SECRETS_FILE, SecretsFileError, mask, read_secrets, write_secret

    path = Path(args.local_dir) / "secrets.json" if args.local_dir else SECRETS_FILE
    shown = os.path.relpath(path)
    try:
        if args.action == "show":
            values = read_secrets(path)
            for key, env_name in sorted(ENV_BY_KEY.items()):
                if key in values:
                    print(f"{key:<17} {mask(values[key]):<8} from {shown}")
                elif os.environ.get(env_name):
                    print(f"{key:<17} {mask(os.environ[env_name]):<8} from {env_name} (if make run started with it)")
                else:
                    print(f"{key:<17} {mask(LOCAL_DEFAULTS[env_name]):<8} local default")
            return 0
        if args.action == "set":
            if args.value is None:
                print("error: secrets set KEY VALUE (VALUE - reads it from stdin)", file=sys.stderr)
                return 2
            value = sys.stdin.readline().rstrip("\n") if args.value == "-" else args.value
            if not value:
                print("error: empty value (use unset to remove a key)", file=sys.stderr)
                return 2
            write_secret(path, args.key, value)
        else:
            write_secret(path, args.key, None)
    except SecretsFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    done = "set" if args.action == "set" else "removed"
    print(f"{args.key} {done} in {shown}; a running local stack uses it from its next invocation")
    return 0


def _load_payload(path: Path) -> bytes:
    """A payload file, or an API Gateway event file (its body is used)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and "rawQueryString" in data and "body" in data:
        data = json.loads(data["body"])
    from taobao_bridge.jsonutil import dumps

    return dumps(data).encode("utf-8")


def cmd_send_qimen(args: argparse.Namespace) -> int:
    from .qimen_client import QimenCaller, new_order_no

    body = _load_payload(Path(args.file))
    if args.new_order_no:
        payload = json.loads(body)
        payload.setdefault("fulfillment_info", {})["fulfillment_order_no"] = new_order_no()
        from taobao_bridge.jsonutil import dumps

        body = dumps(payload).encode("utf-8")
    response = QimenCaller(args.url, args.secret).send(body, method=args.method)
    print(f"HTTP {response.status_code}", file=sys.stderr)
    print(response.text)
    return 0 if response.status_code == 200 else 1


def cmd_capacity(args: argparse.Namespace) -> int:
    import boto3

    from taobao_bridge.fulfillment_store import FulfillmentStore

    client = boto3.client(
        "dynamodb",
        endpoint_url=args.endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106 - moto accepts anything
    )
    store = FulfillmentStore(LOCAL_DEFAULTS[ENV.FULFILLMENT_TABLE], args.table, client=client)
    if args.available is not None:
        store.set_capacity(args.store, args.item, args.available)
    print(json.dumps(store.get_capacity(args.store, args.item), ensure_ascii=False))
    return 0


def cmd_intake(args: argparse.Namespace) -> int:
    from .intake_client import IntakeClient, ReadError, read_records, resolve_kind

    try:
        spec = resolve_kind(args.kind)
        records = read_records(args.file, spec.kind)
    except (ReadError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not records:
        print(f"error: {args.file} holds no records", file=sys.stderr)
        return 1
    summary = IntakeClient(args.url).submit(spec.kind, records, chunk_size=args.chunk_size)
    print("\n".join(summary.lines()))
    return 0 if summary.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bridge_local", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start the local stack (PORT, TOP_GATEWAY_URL, ... from the environment)")
    run.add_argument("--fresh", action="store_true", help="start with empty tables (the saved ones are kept as .bak)")
    run.add_argument("--local-dir", help="where the tables are saved and secrets.json is read (default: .local)")
    run.set_defaults(func=cmd_run)

    secrets = sub.add_parser("secrets", help="set, unset or show the local stack's secrets (.local/secrets.json)")
    secrets.add_argument("action", choices=("set", "unset", "show"))
    secrets.add_argument("key", nargs="?", choices=SECRET_NAMES, help="a key of the secret")
    secrets.add_argument("value", nargs="?", help="the new value; - reads it from stdin (keeps it out of history)")
    secrets.add_argument("--local-dir", help="the directory of secrets.json (default: .local)")
    secrets.set_defaults(func=cmd_secrets)

    send = sub.add_parser("send-qimen", help="sign a JSON payload (or an events/ file) and POST it as Qimen would")
    send.add_argument("file", help="payload JSON, or an API Gateway event JSON whose body is used")
    send.add_argument("--url", default=_default_url(), help="callback URL (default: the local stack's /qimen)")
    send.add_argument("--secret", default=_secret(), help="Qimen app secret (default: QIMEN_APP_SECRET or local)")
    send.add_argument("--method", default="qimen.taobao.life.fulfillment.create")
    send.add_argument("--new-order-no", action="store_true", help="replace fulfillment_order_no with a fresh one")
    send.set_defaults(func=cmd_send_qimen)

    cap = sub.add_parser("capacity", help="show or set the capacity of a store and item on the local stack")
    cap.add_argument("--store", required=True)
    cap.add_argument("--item", required=True)
    cap.add_argument("--available", type=int, help="set this many left (omit to only show)")
    cap.add_argument("--endpoint", default=f"http://127.0.0.1:{os.environ.get('DYNAMODB_PORT', '8000')}")
    cap.add_argument("--table", default=LOCAL_DEFAULTS[ENV.INVENTORY_TABLE])
    cap.set_defaults(func=cmd_capacity)

    intake = sub.add_parser("intake", help="submit the records of a .jsonl or .csv file to the intake API")
    intake.add_argument("kind", help="writeoffs, risk-records or external-orders")
    intake.add_argument("file", help=".jsonl (one JSON object per line) or .csv (header = field names)")
    intake.add_argument("--url", default=f"http://127.0.0.1:{os.environ.get('PORT', '3000')}", help="API base URL")
    intake.add_argument("--chunk-size", type=int, default=1000, help="records per request (at most 1000)")
    intake.set_defaults(func=cmd_intake)

    from .control_cli import add_parser as add_control_parser

    add_control_parser(sub)

    from .event_log import add_parser as add_events_parser

    add_events_parser(sub)

    args = parser.parse_args(argv)
    if args.command == "secrets" and args.action != "show" and not args.key:
        parser.error(f"secrets {args.action} needs a KEY: {', '.join(SECRET_NAMES)}")
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(name)s %(message)s")
    for chatty in ("botocore", "boto3", "httpx", "urllib3"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        return int(args.func(args))
    except (OSError, ValueError, httpx.HTTPError, BridgeError, BotoCoreError, ClientError) as exc:
        # One clear line and a non-zero exit: an unreachable stack, a missing file or bad JSON is not a crash.
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, httpx.HTTPError):
        try:
            text += f" (calling {exc.request.url.copy_with(query=None)}; is the local stack running?)"
        except RuntimeError:  # an error raised before any request was built
            pass
    return text[:300]


if __name__ == "__main__":
    sys.exit(main())
