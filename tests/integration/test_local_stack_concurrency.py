"""The local stack under concurrent callers keeps every promise it answers, as Lambda + DynamoDB would.

200 distinct signed Qimen orders, replays of some of them and intake posts (new writeoffs, and the same
writeoffs posted twice at once) go through 12 client threads at the same time. Afterwards every order that was
answered success is stored once under the ``partner_order_id`` it was answered with, every replay of an order got
that same id, the inventory counter of the test's store and item equals the orders stored for it, every record
answered accepted or duplicate is in the outbox (and was accepted exactly once), and no caller saw
``SYSTEM_ERROR``, a 5xx or a 503.

This fails when moto is not serialized (``bridge_local.moto_fixes``: a cancelled transaction's rollback and
concurrent writers erase acknowledged writes) and when one loaded handler module serves two requests at once
(``bridge_local.functions``: the Powertools resolver keeps the current event at module level).
"""

from __future__ import annotations

import gc
import json
import random
import sys
import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import httpx
import pytest

from bridge_local.qimen_client import signed_query
from taobao_bridge.fulfillment_store import FulfillmentStore
from taobao_bridge.jsonutil import dumps
from taobao_bridge.kinds import KINDS, Kind
from taobao_bridge.outbox import OutboxStore
from taobao_bridge.settings import ENV, LOCAL_DEFAULTS
from tests.conftest import with_order_no

pytestmark = pytest.mark.integration

SECRET = LOCAL_DEFAULTS[ENV.QIMEN_APP_SECRET]
ORDERS = 200
REPLAYED_ORDERS = 30  # each sent 3 more times, interleaved with everything else
REPLAYS_EACH = 3
WRITEOFF_BATCHES = 30  # each posted twice at once (new + duplicate), plus 30 batches posted once
WRITEOFFS_PER_BATCH = 10
CLIENT_THREADS = 12
CAPACITY = 1_000_000


def _writeoff(order_id: int, detail: int) -> dict[str, Any]:
    return {
        "biz_type": 2,
        "verify_time": "2026-03-01 12:00:00",
        "tb_store_id": 2343432,
        "service_status": 2,
        "service_id": 1111,
        "service_detail_id": detail,
        "tb_biz_order_id": order_id,
        "verify_batch_no": "C1",
    }


def test_concurrent_orders_replays_and_intake_keep_every_answer(stack: Any, seed_003_body: bytes) -> None:
    rng = random.Random()
    store_id = str(rng.randrange(10**11, 10**12))
    item_id = str(rng.randrange(10**11, 10**12))
    fulfillment = FulfillmentStore("FulfillmentOrdersTable", "InventoryTable", client=stack.dynamodb_client())
    fulfillment.set_capacity(store_id, item_id, CAPACITY)

    base = rng.randrange(10**18, 9 * 10**18 - ORDERS)
    bodies = {
        str(base + n): with_order_no(
            seed_003_body, str(base + n), shop_info={"store_id": store_id}, item_info={"item_id": item_id}
        )
        for n in range(ORDERS)
    }
    first_order = base + 10**17  # writeoff order ids of their own
    batches = [
        [_writeoff(first_order + batch, detail) for detail in range(WRITEOFFS_PER_BATCH)]
        for batch in range(2 * WRITEOFF_BATCHES)
    ]

    qimen_answers: dict[str, list[dict[str, Any]]] = defaultdict(list)
    intake_answers: list[tuple[int, dict[str, Any]]] = []
    failures: list[str] = []
    lock = threading.Lock()
    client = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=CLIENT_THREADS))

    def send_qimen(order_no: str) -> None:
        body = bodies[order_no]
        response = client.post(
            f"{stack.url}/qimen?{signed_query(body, SECRET)}",
            content=body,
            headers={"content-type": "application/json;charset=utf-8"},
        )
        with lock:
            if response.status_code != 200:
                failures.append(f"qimen {order_no}: HTTP {response.status_code} {response.text[:200]}")
                return
            qimen_answers[order_no].append(response.json())

    def send_writeoffs(batch: list[dict[str, Any]]) -> None:
        response = client.post(
            f"{stack.url}/v1/writeoffs",
            content=dumps(batch).encode("utf-8"),
            headers={"content-type": "application/json;charset=utf-8"},
        )
        with lock:
            if response.status_code != 202:
                failures.append(f"intake: HTTP {response.status_code} {response.text[:200]}")
                return
            intake_answers.append((response.status_code, response.json()))

    # Groups of calls that go out back to back, so that they run at the same time on the client threads: an
    # order with its replays, a writeoff batch with its duplicate post.
    replayed = set(rng.sample(sorted(bodies), REPLAYED_ORDERS))
    groups: list[list[Callable[[], None]]] = [
        [partial(send_qimen, order_no)] * (1 + (REPLAYS_EACH if order_no in replayed else 0)) for order_no in bodies
    ]
    for index, batch in enumerate(batches):
        groups.append([partial(send_writeoffs, batch)] * (2 if index < WRITEOFF_BATCHES else 1))
    rng.shuffle(groups)
    calls = [call for group in groups for call in group]
    switch_interval = sys.getswitchinterval()
    # Threads take turns every 0.1 ms instead of 5 ms: an interleaving that would show up once in hours of
    # `make run` shows up in these few seconds.
    sys.setswitchinterval(1e-4)
    try:
        with ThreadPoolExecutor(max_workers=CLIENT_THREADS) as pool:
            for future in [pool.submit(call) for call in calls]:
                future.result()
    finally:
        sys.setswitchinterval(switch_interval)
        client.close()

    assert not failures, failures[:10]

    # --- Qimen: every answer a success, one id per order, stored under that id, counted once in inventory.
    problems = []
    for order_no, answers in qimen_answers.items():
        ids = {answer.get("partner_order_id") for answer in answers}
        if any(answer.get("biz_result") != "success" for answer in answers) or len(ids) != 1:
            problems.append(f"{order_no}: {[json.dumps(a, ensure_ascii=False)[:120] for a in answers]}")
            continue
        stored = fulfillment.get(order_no)
        if stored is None:
            problems.append(f"{order_no}: answered {ids} but not stored")
        elif {stored["partner_order_id"]} != ids:
            problems.append(f"{order_no}: answered {ids}, stored {stored['partner_order_id']}")
    assert len(qimen_answers) == ORDERS
    assert not problems, f"{len(problems)} orders broken, e.g. {problems[:5]}"
    capacity = fulfillment.get_capacity(store_id, item_id)
    assert capacity is not None
    assert (capacity["ordered"], capacity["available"]) == (ORDERS, CAPACITY - ORDERS), capacity

    # --- Intake: every record answered accepted/duplicate is stored; each was accepted exactly once.
    statuses: dict[str, Counter[str]] = defaultdict(Counter)
    for _, answer in intake_answers:
        for record in answer["records"]:
            statuses[record["id"]][record["status"]] += 1
    expected_ids = {KINDS[Kind.WRITEOFF].record_id(record) for batch in batches for record in batch}
    assert set(statuses) == expected_ids
    outbox = OutboxStore("OutboxTable", client=stack.dynamodb_client())
    missing = [record_id for record_id in sorted(statuses) if outbox.get(Kind.WRITEOFF, record_id) is None]
    assert not missing, f"{len(missing)} of {len(statuses)} acknowledged records are not stored, e.g. {missing[:5]}"
    twice = {record_id: dict(seen) for record_id, seen in statuses.items() if seen["accepted"] != 1}
    assert not twice, f"{len(twice)} records not accepted exactly once, e.g. {list(twice.items())[:5]}"


def test_moto_keeps_no_copies_of_items(stack: Any, seed_003_body: bytes) -> None:
    """What moto holds is what is stored: rollback copies, update copies, query results and index projections are
    dropped (moto used to keep every item object it ever made, so memory grew with every request)."""
    from moto.dynamodb.models import dynamodb_backends
    from moto.dynamodb.models.dynamo_type import Item

    client = httpx.Client(timeout=30)
    base = 4 * 10**18 + random.randrange(10**17)
    for n in range(20):
        body = with_order_no(seed_003_body, str(base + n))
        for _ in range(2):  # a new order and its replay (a cancelled transaction)
            client.post(f"{stack.url}/qimen?{signed_query(body, SECRET)}", content=body)
    client.close()
    stored: set[int] = set()
    for regions in list(dynamodb_backends.values()):
        for backend in list(regions.values()):
            for table in list(backend.tables.values()):
                for value in list(table.items.values()):  # an item, or range key -> item
                    stored.update(id(item) for item in (value.values() if isinstance(value, dict) else [value]))
    gc.collect()
    alive = sum(1 for found in gc.get_objects() if type(found) is Item and id(found) not in stored)
    assert alive < 50, f"{alive} moto items alive that no table holds"
