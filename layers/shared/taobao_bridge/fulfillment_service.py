"""``qimen.taobao.life.fulfillment.create``: validate the verified body, store the order once, answer."""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ValidationError

from .clock import PLATFORM_TZ, Clock, system_clock
from .errors import StorageError
from .fulfillment_store import Conflict, Created, FulfillmentStore, NewOrder, NoInventory, Replayed
from .jsonutil import dumps, loads_strict
from .models.fulfillment import METHOD, FulfillmentCreateRequest
from .privacy import mask_personal_data
from .qimen import (
    QimenAnswerCode,
    QimenCall,
    QimenDispatcher,
    QimenRejection,
    answer,
    describe_validation_error,
    parse_json_object,
)
from .settings import metrics_namespace

__all__ = ["FulfillmentCreate", "register_fulfillment_create"]

logger = Logger(child=True)
metrics = Metrics(namespace=metrics_namespace())


def payload_fingerprint(request: FulfillmentCreateRequest) -> str:
    """SHA-256 of the validated payload in a canonical form, so a replay re-serialised by the caller with
    other whitespace or key order still counts as the same payload."""
    canonical = json.dumps(request.model_dump(mode="json", exclude_none=True), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def new_partner_order_id(clock: Clock) -> str:
    """Our fulfillment order id: platform-time prefix (sortable, readable in support calls) + 6 random digits."""
    return clock().astimezone(PLATFORM_TZ).strftime("%Y%m%d%H%M%S") + f"{secrets.randbelow(10**6):06d}"


class FulfillmentCreate:
    """The handler for one Qimen method, with its store and clock."""

    def __init__(self, store: FulfillmentStore, clock: Clock = system_clock) -> None:
        self.store = store
        self.clock = clock

    def __call__(self, call: QimenCall) -> dict[str, Any]:
        data = parse_json_object(call.body)
        try:
            request = FulfillmentCreateRequest.model_validate(data)
        except ValidationError as exc:
            logger.info("fulfillment order invalid", extra={"order": mask_personal_data(data)})
            raise QimenRejection(QimenAnswerCode.INVALID_PARAMETER, describe_validation_error(exc)) from None

        order_no = request.fulfillment_info.fulfillment_order_no
        logger.set_correlation_id(order_no)
        logger.info("fulfillment order received", extra={"order": mask_personal_data(data)})

        partner_order_id = new_partner_order_id(self.clock)
        first_answer = answer(partner_order_id=partner_order_id)
        order = NewOrder(
            fulfillment_order_no=order_no,
            payload_sha256=payload_fingerprint(request),
            payload_json=call.body.decode("utf-8"),
            partner_order_id=partner_order_id,
            answer_json=dumps(first_answer),
            store_id=request.shop_info.store_id,
            item_id=request.item_info.item_id,
            quantity=request.fulfillment_info.quantity,
            received_at=self.clock(),
        )
        try:
            outcome = self.store.create(order)
        except StorageError:
            logger.exception("fulfillment order not stored")
            metrics.add_metric(name="FulfillmentStorageFailed", unit=MetricUnit.Count, value=1)
            return answer(
                code=QimenAnswerCode.SYSTEM_ERROR,
                message="the order could not be stored; nothing was written, please retry",
            )

        if isinstance(outcome, Created):
            logger.info("fulfillment order created", extra={"partner_order_id": outcome.partner_order_id})
            metrics.add_metric(name="FulfillmentOrderCreated", unit=MetricUnit.Count, value=1)
            return first_answer
        if isinstance(outcome, Replayed):
            logger.info("fulfillment order replayed: answering as the first time")
            metrics.add_metric(name="FulfillmentOrderReplayed", unit=MetricUnit.Count, value=1)
            replayed: dict[str, Any] = loads_strict(outcome.answer_json)
            return replayed
        if isinstance(outcome, Conflict):
            logger.warning("fulfillment order number reused with a different payload")
            metrics.add_metric(name="FulfillmentOrderConflict", unit=MetricUnit.Count, value=1)
            raise QimenRejection(
                QimenAnswerCode.ORDER_CONFLICT,
                f"fulfillment_info.fulfillment_order_no {order_no!r} was already received at "
                f"{outcome.first_received_at} with a different payload",
            )
        if isinstance(outcome, NoInventory):
            metrics.add_metric(name="FulfillmentNoInventory", unit=MetricUnit.Count, value=1)
            raise QimenRejection(
                QimenAnswerCode.NO_INVENTORY,
                f"商品库存不足: store {order.store_id} item {order.item_id} has {max(outcome.available, 0)} left, "
                f"{order.quantity} requested",
            )
        raise AssertionError(f"unhandled outcome {outcome!r}")


def register_fulfillment_create(
    dispatcher: QimenDispatcher, store: FulfillmentStore, clock: Clock = system_clock
) -> None:
    dispatcher.register(METHOD, FulfillmentCreate(store, clock))
