"""Write the sample events in ``events/``: ``python -m bridge_local.events [--timestamp now --out DIR]``.

The committed events are reproducible: a fixed platform timestamp, fixed request ids and the local Qimen
secret, so regenerating them gives byte-identical files (a unit test checks it). Events for a deployed
stage are produced with ``--timestamp now`` (and ``--secret-env`` naming a variable that holds the stage's
Qimen secret) into another folder, never over the committed ones.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from bridge_local.apigw import http_api_event
from bridge_local.template import PROJECT_ROOT
from taobao_bridge.clock import format_platform_time, parse_platform_time, system_clock
from taobao_bridge.signing import qimen_sign

__all__ = [
    "EVENTS_DIR",
    "FIXED_TIMESTAMP",
    "LOCAL_QIMEN_SECRET",
    "QIMEN_FULFILLMENT_CREATE_EXAMPLE",
    "build_events",
    "main",
    "qimen_event",
    "qimen_raw_query",
    "render",
    "write_events",
]

EVENTS_DIR = PROJECT_ROOT / "events"
LOCAL_QIMEN_SECRET = "local-qimen-app-secret"  # noqa: S105 - the local stack's published test secret
"""The Qimen secret of the local stack; sample events are signed with it. Not a real secret."""
FIXED_TIMESTAMP = "2026-11-23 10:00:00"
"""Platform time (UTC+8) of the committed events; a deployed stage refuses it as too old."""

QIMEN_METHOD = "qimen.taobao.life.fulfillment.create"
QIMEN_ROUTE_KEY = "POST /qimen"

# Seed 003's request example (the line after 请求示例), byte for byte: the body Qimen signs is these bytes.
QIMEN_FULFILLMENT_CREATE_EXAMPLE = (
    r'{"item_info":{"category_name":"洗衣","item_id":"123456789012","partner_item_id":"12415",'
    r'"item_name":"任意洗3件","service_mode":"TO_SHOP"},"shop_info":{"store_id":"123456789",'
    r'"shop_id":"12345678901234567890123456789012"},"user_info":[{"credentials":{"credential_type":"idCard'
    r'","credential_no":"410881xxxxxxxxxxxxxx"},"mobile":"123456678901","name":"张先生","ext_info":"{\"key\":'
    r'\"value\"}"}],"fulfillment_info":{"address_info":[{"address_detail":"xxxx街道xxx小区xx栋",'
    r'"contact_name":"李先生","district_list":[{"district_name":"杭州市","district_id":"330100"}],'
    r'"contact_phone":"13911112222","type":"DEFAULT"}],"time_option":{"start":"2022-07-10 12:00",'
    r'"end":"2022-07-10 13:00","type":"DAY_TIME"},"quantity":1,"memo":"test","fulfillment_order_no":"12345'
    r'67890123456789"},"trade_info":{"real_amount":100,"quantity":2,"total_amount":100,'
    r'"tp_order_no":"1234567891234567890","tp_sub_order_no":"1234567891234567890"}}'
).encode()


def qimen_raw_query(body: bytes, *, timestamp: str, secret: str) -> str:
    """The query string of a Qimen call, in the order the gateway sends it, ending with its ``sign``."""
    unsigned = (
        f"method={QIMEN_METHOD}&app_key=23456789&target_app_key=34567890&sign_method=md5"
        f"&timestamp={quote_plus(timestamp)}&format=json&v=2.0&customerId=c1716172200000"
    )
    return f"{unsigned}&sign={qimen_sign(unsigned, body, secret)}"


def _tamper(raw_query: str) -> str:
    """The same query with the last character of ``sign`` changed (it is the last parameter)."""
    last = raw_query[-1]
    return raw_query[:-1] + ("0" if last != "0" else "1")


def _truncated(body: bytes) -> bytes:
    """About half of ``body``, cut at an ASCII byte so that it stays valid UTF-8 (a text body)."""
    cut = len(body) // 2
    while body[cut] >= 0x80:
        cut += 1
    return body[:cut]


def qimen_event(body: bytes, *, raw_query: str, moment: datetime, name: str) -> dict[str, Any]:
    """An HTTP API event of a Qimen call to ``POST /qimen`` with this body and query."""
    return http_api_event(
        method="POST",
        path="/qimen",
        raw_query=raw_query,
        headers={
            "Content-Type": "application/json;charset=utf-8",
            "Content-Length": str(len(body)),
            "Host": "localhost",
            "User-Agent": "taobao-bridge-sample-event",
        },
        body=body,
        route_key=QIMEN_ROUTE_KEY,
        # Stable ids keep the committed files reproducible.
        request_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"taobao-bridge/events/{name}")),
        now=moment,
    )


def build_events(*, timestamp: str = FIXED_TIMESTAMP, secret: str = LOCAL_QIMEN_SECRET) -> dict[str, dict[str, Any]]:
    """File name -> event, for every sample scenario."""
    moment = parse_platform_time(timestamp)
    body = QIMEN_FULFILLMENT_CREATE_EXAMPLE
    signed = qimen_raw_query(body, timestamp=timestamp, secret=secret)
    truncated = _truncated(body)
    return {
        "qimen_fulfillment_create.json": qimen_event(
            body, raw_query=signed, moment=moment, name="qimen_fulfillment_create"
        ),
        "qimen_bad_signature.json": qimen_event(
            body, raw_query=_tamper(signed), moment=moment, name="qimen_bad_signature"
        ),
        "qimen_malformed_json.json": qimen_event(
            truncated,
            raw_query=qimen_raw_query(truncated, timestamp=timestamp, secret=secret),
            moment=moment,
            name="qimen_malformed_json",
        ),
        "intake_writeoffs.json": intake_event(
            "POST", "/v1/writeoffs", "POST /v1/writeoffs", [SEED_WRITEOFF], moment=moment, name="intake_writeoffs"
        ),
        "intake_risk_records.json": intake_event(
            "POST", "/v1/risk-records", "POST /v1/risk-records", [SEED_RISK], moment=moment, name="intake_risk"
        ),
        "intake_external_orders.json": intake_event(
            "POST",
            "/v1/external-orders",
            "POST /v1/external-orders",
            SEED_EXTERNAL_ORDER,
            moment=moment,
            name="intake_external_orders",
        ),
        "intake_get_record.json": intake_event(
            "GET",
            "/v1/writeoffs/353454543-111223-b54fdfds343",
            "GET /v1/{kind}/{id}",
            None,
            moment=moment,
            name="intake_get_record",
            path_parameters={"kind": "writeoffs", "id": "353454543-111223-b54fdfds343"},
        ),
        "sync_scheduled.json": scheduled_event(moment),
    }


# The seeds' Java request examples as intake bodies (seed 000, 001, 002), one record each.
SEED_WRITEOFF = {
    "biz_type": 2,
    "service_sku_name": "洗车",
    "service_store_id": "21212",
    "apply_refund_num": 0,
    "verify_time": "2020-11-11 12:00:00",
    "tb_store_id": 2343432,
    "port_no": "8888",
    "refund_success_num": 0,
    "service_status": 2,
    "service_id": 1111,
    "verify_num": 1,
    "service_sku_id": "12",
    "category_id": 1111,
    "user_name": "测试",
    "sale_num": 2,
    "appoint_store_id": 21212,
    "maintain_id": 23232,
    "left_num": 1,
    "verify_batch_no": "54fdfds343",
    "tb_store_name": "天猫养车",
    "third_sub_goods_order": "rwerewf43433",
    "used_num": 1,
    "service_detail_id": 111223,
    "tb_biz_order_id": 353454543,
}
SEED_RISK = {
    "service_code": "123,456,789",
    "install_type": 0,
    "buyer_phone": "13012345678",
    "tc_order_id": 3882527336184474047,
    "tc_sub_order_id": 3882527336184474048,
    "car_license_num": "浙AA12345",
    "service_use_time": "2000-01-01 00:00:00",
    "buyer_name": "王五",
    "work_order_submit_time": "2000-01-01 00:00:00",
}
SEED_EXTERNAL_ORDER = {
    "buyer_info": {"user_nick": "张三", "user_phone": "13912340000", "user_id": 23432},
    "hide": True,
    "order_info": {
        "biz_type": 200,
        "pay_time": "2022-05-01 12:30:50",
        "out_order_id": "ABC123432",
        "end_time": "2022-05-01 12:30:50",
        "gmt_create": "2022-05-01 12:30:50",
        "total_fee": 10000,
    },
    "source": "YC_STORE",
    "item_info": {
        "item_id": 1000,
        "item_title": "一个商品",
        "root_cat": 123432,
        "item_price": 10000,
        "category_id": 123243,
        "buy_amount": 2,
    },
    "seller_info": {"user_nick": "李四", "user_phone": "13912341111", "user_id": 4567823},
    "pay_order_info": {"channel": "alipay", "pay_order_id": "2024091167897678768"},
    "idempotent_id": "YC_STORE-45678765",
    "ext_info": "自定义json字符",
}
# What API Gateway puts in requestContext.authorizer for an IAM-authorised (SigV4) caller.
_IAM_CALLER = {
    "iam": {
        "accessKey": "AKIAEXAMPLE",
        "accountId": "123456789012",
        "callerId": "AIDAEXAMPLE",
        "principalOrgId": None,
        "userArn": "arn:aws:iam::123456789012:user/merchant-system",
        "userId": "AIDAEXAMPLE",
    }
}


def intake_event(
    method: str, path: str, route_key: str, body: Any, *, moment: datetime, name: str, path_parameters: Any = None
) -> dict[str, Any]:
    """An HTTP API event of a merchant system's IAM-signed intake call."""
    raw = b"" if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
    headers = {"Host": "localhost", "User-Agent": "taobao-bridge-sample-event"}
    if raw:
        headers |= {"Content-Type": "application/json", "Content-Length": str(len(raw))}
    return http_api_event(
        method=method,
        path=path,
        raw_query="",
        headers=headers,
        body=raw,
        route_key=route_key,
        path_parameters=path_parameters,
        request_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"taobao-bridge/events/{name}")),
        now=moment,
        authorizer=_IAM_CALLER,
    )


def scheduled_event(moment: datetime) -> dict[str, Any]:
    """What EventBridge Scheduler delivers to the sync functions (they read nothing from it)."""
    return {
        "version": "0",
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, "taobao-bridge/events/sync_scheduled")),
        "detail-type": "Scheduled Event",
        "source": "aws.scheduler",
        "account": "123456789012",
        "time": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "ap-southeast-1",
        "resources": ["arn:aws:scheduler:ap-southeast-1:123456789012:schedule/default/taobao-bridge-sync"],
        "detail": {},
    }


def render(event: dict[str, Any]) -> str:
    """The file text of an event: indented JSON, non-ASCII kept, one trailing newline."""
    return json.dumps(event, ensure_ascii=False, indent=2) + "\n"


def write_events(out_dir: Path, events: dict[str, dict[str, Any]]) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, event in events.items():
        path = out_dir / file_name
        path.write_text(render(event), encoding="utf-8", newline="\n")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bridge_local.events", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--timestamp",
        default=FIXED_TIMESTAMP,
        help=f"platform time (UTC+8) to sign with: 'now' or 'yyyy-MM-dd HH:mm:ss' (default {FIXED_TIMESTAMP!r})",
    )
    parser.add_argument("--out", type=Path, help=f"folder to write to (default {EVENTS_DIR})")
    parser.add_argument(
        "--secret-env",
        metavar="VAR",
        help="sign with the Qimen secret held in this environment variable instead of the local one",
    )
    args = parser.parse_args(argv)

    timestamp = format_platform_time(system_clock()) if args.timestamp == "now" else args.timestamp
    try:
        parse_platform_time(timestamp)
    except ValueError as exc:
        parser.error(str(exc))
    secret = LOCAL_QIMEN_SECRET
    if args.secret_env:
        secret = os.environ.get(args.secret_env, "")
        if not secret:
            parser.error(f"environment variable {args.secret_env} is empty or not set")
    reproducible = timestamp == FIXED_TIMESTAMP and secret == LOCAL_QIMEN_SECRET
    if args.out is None and not reproducible:
        # Fresh or really-signed events must not replace the committed ones (nor land in git).
        parser.error("events with another timestamp or secret need --out DIR (outside events/)")
    out_dir = args.out if args.out is not None else EVENTS_DIR

    for path in write_events(out_dir, build_events(timestamp=timestamp, secret=secret)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
