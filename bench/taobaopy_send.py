"""The community SDK ``taobaopy`` sending writeoffs one per call, each followed by one DynamoDB ``UpdateItem``:
``.venv-bench-taobaopy/bin/python bench/taobaopy_send.py SPEC OUT``.

Runs in its own virtual environment (taobaopy needs ``requests`` and ``six``; nothing of the project is imported).
taobaopy stamps ``timestamp`` with ``datetime.now()``, the host's local time, while the gateway wants UTC+8: the
parent runs it once with the host's zone (to show the refusal) and then with ``TZ=Asia/Shanghai``.

SPEC (JSON): ``records`` (writeoff payloads), ``domain`` (``http://host:port``; taobaopy adds ``/router/rest``),
``app_key``, ``app_secret``, ``method``, ``param``, ``table``. OUT: records, seconds, failures.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    import boto3
    from taobaopy.taobao import TaoBaoAPIClient, TaoBaoAPIError

    client = TaoBaoAPIClient(spec["app_key"], spec["app_secret"], domain=spec["domain"], retry_count=1)
    head, _, tail = spec["method"].partition(".")
    call = getattr(client, head + "__" + tail.replace(".", "_"))  # taobaopy's naming: tmall__car_local_...
    dynamodb = boto3.client("dynamodb")
    failures: list[str] = []
    started = time.perf_counter()
    for payload in spec["records"]:
        text = json.dumps([payload], ensure_ascii=False, separators=(",", ":"))
        try:
            answer = call(**{spec["param"]: text})
        except TaoBaoAPIError as exc:
            failures.append(f"{exc.code} {exc.sub_code}: {exc.sub_msg or exc.msg}"[:300])
            continue
        key = f"writeoff#{payload['tb_biz_order_id']}-{payload['service_detail_id']}-b{payload['verify_batch_no']}"
        dynamodb.update_item(
            TableName=spec["table"],
            Key={"pk": {"S": key}},
            UpdateExpression="SET sent_at = :now, answer = :answer",
            ExpressionAttributeValues={
                ":now": {"N": str(time.time_ns())},
                ":answer": {"S": json.dumps(answer, ensure_ascii=False)[:2000]},
            },
        )
    seconds = time.perf_counter() - started
    result = {"records": len(spec["records"]), "seconds": seconds, "failures": failures}
    Path(argv[1]).write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
