"""The script a merchant would write instead of the bridge: ``python -m bench.naive SPEC OUT``.

One record per TOP call, sequential; after each call, one DynamoDB ``UpdateItem`` noting the record as sent, with
the platform's answer. It signs with the project's signing code (``taobao_bridge.signing``, MD5 as the official
SDK's default) and builds the API parameter with the project's wire code, so the calls are the ones the bridge
makes, one record at a time. One pooled HTTP connection (a script that opened one per call would be slower still).

SPEC (JSON): ``kind``, ``records``, ``gateway_url``, ``app_key``, ``app_secret``, ``session``, ``table``.
DynamoDB is reached through the environment (``AWS_ENDPOINT_URL_DYNAMODB``). OUT: records, seconds, failures.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    import boto3
    import httpx

    from taobao_bridge.clock import format_platform_time, system_clock
    from taobao_bridge.kinds import KINDS, Kind
    from taobao_bridge.signing import sign_top_request

    kind = KINDS[Kind(spec["kind"])]
    dynamodb = boto3.client("dynamodb")
    http = httpx.Client(timeout=10.0)
    failures: list[str] = []
    started = time.perf_counter()
    for payload in spec["records"]:
        api = kind.api.params([payload])
        system = {
            "method": kind.method,
            "app_key": spec["app_key"],
            "timestamp": format_platform_time(system_clock()),
            "v": "2.0",
            "format": "json",
            "sign_method": "md5",
        }
        if kind.needs_session:
            system["session"] = spec["session"]
        system["sign"] = sign_top_request({**system, **api}, spec["app_secret"], "md5")
        response = http.post(
            spec["gateway_url"],
            params=system,
            content=urlencode(api).encode("ascii"),
            headers={"Content-Type": "application/x-www-form-urlencoded;charset=UTF-8"},
        )
        answer: dict[str, Any] = response.json()
        if "error_response" in answer:
            failures.append(json.dumps(answer["error_response"], ensure_ascii=False)[:300])
            continue
        dynamodb.update_item(
            TableName=spec["table"],
            Key={"pk": {"S": f"{kind.kind.value}#{kind.record_id(payload)}"}},
            UpdateExpression="SET sent_at = :now, answer = :answer",
            ExpressionAttributeValues={":now": {"N": str(time.time_ns())}, ":answer": {"S": response.text[:2000]}},
        )
    seconds = time.perf_counter() - started
    result = {"records": len(spec["records"]), "seconds": seconds, "failures": failures}
    Path(argv[1]).write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
