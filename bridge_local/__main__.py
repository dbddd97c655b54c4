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

from taobao_bridge.settings import ENV, LOCAL_DEFAULTS


def _secret() -> str:
    return os.environ.get(ENV.QIMEN_APP_SECRET) or LOCAL_DEFAULTS[ENV.QIMEN_APP_SECRET]


def _default_url() -> str:
    return f"http://127.0.0.1:{os.environ.get('PORT', '3000')}/qimen"


def cmd_run(args: argparse.Namespace) -> int:
    from .stack import PROJECT_ROOT, LocalStack, StackConfig

    started = time.perf_counter()
    config = StackConfig.from_env()
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
    print(
        f"""
taobao-bridge local stack ready in {time.perf_counter() - started:.1f} s
  HTTP API        {stack.url}   routes: {routes}
  DynamoDB (moto) {stack.dynamodb_endpoint}   tables: {tables}
  TOP gateway     {gateway}
  schedules       {schedules}

Send the signed seed 003 call (again = a replay with the same partner_order_id):
  .venv/bin/python -m bridge_local send-qimen {sample}
Ctrl-C stops everything.""",
        flush=True,
    )
    while not stopping["flag"]:
        time.sleep(0.2)
    print("stopping", flush=True)
    stack.stop()
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
    run.set_defaults(func=cmd_run)

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

    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(name)s %(message)s")
    for chatty in ("botocore", "boto3", "httpx", "urllib3"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
