"""``qimen.taobao.life.fulfillment.create``: store a validated order once and say what happened.

The dispatcher (qimen.py) has already verified the call and validated the body as
:class:`~taobao_bridge.models.fulfillment.FulfillmentCreateRequest`; it turns the result returned here into the
answer. What is counted for each :class:`FulfillmentOutcome` is the Lambda handler's business, not this module's.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from enum import StrEnum
from typing import Protocol

from aws_lambda_powertools import Logger

from .clock import PLATFORM_TZ, Clock, system_clock
from .errors import StorageError
from .fulfillment_store import Conflict, Created, CreateOutcome, NewOrder, NoInventory, Replayed, TooLarge
from .jsonutil import dumps
from .models.fulfillment import FulfillmentCreateRequest
from .qimen import (
    Failed,
    Handled,
    HandlerResult,
    QimenAnswerCode,
    QimenCall,
    QimenOutcome,
    QimenRejection,
    StoredAnswer,
)

__all__ = ["FulfillmentCreate", "FulfillmentOutcome", "OrderStore"]

logger = Logger(child=True)


class FulfillmentOutcome(StrEnum):
    """What became of one fulfillment.create call that passed validation."""

    CREATED = "fulfillment_created"
    REPLAYED = "fulfillment_replayed"
    CONFLICT = "fulfillment_conflict"
    NO_INVENTORY = "fulfillment_no_inventory"
    STORAGE_FAILED = "fulfillment_storage_failed"


class OrderStore(Protocol):
    """What the handler needs of :class:`~taobao_bridge.fulfillment_store.FulfillmentStore` (tests use fakes)."""

    def create(self, order: NewOrder) -> CreateOutcome:
        """Store ``order`` and take its inventory atomically, or say why not. Raises ``StorageError``."""
        ...


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

    def __init__(self, store: OrderStore, clock: Clock = system_clock) -> None:
        self.store = store
        self.clock = clock

    def __call__(self, call: QimenCall, request: FulfillmentCreateRequest) -> HandlerResult:
        order_no = request.fulfillment_info.fulfillment_order_no
        logger.set_correlation_id(order_no)
        # By allow-list (models.fulfillment.LOG_FIELDS): names, phones, ID numbers and addresses never reach a log.
        logger.info("fulfillment order received", extra={"order": call.loggable_payload()})

        created = Handled(partner_order_id=new_partner_order_id(self.clock), outcome=FulfillmentOutcome.CREATED)
        order = NewOrder(
            fulfillment_order_no=order_no,
            payload_sha256=payload_fingerprint(request),
            payload_json=call.text,  # decoded from the declared charset; a form call's fields as one JSON object
            partner_order_id=created.partner_order_id,
            # Stored with the order so that a replay is answered byte for byte as the first time.
            answer_json=dumps(created.to_answer()),
            store_id=request.shop_info.store_id,
            item_id=request.item_info.item_id,
            quantity=request.fulfillment_info.quantity,
            received_at=self.clock(),
        )
        try:
            outcome = self.store.create(order)
        except StorageError as exc:
            logger.exception("fulfillment order not stored", extra={"maybe_applied": exc.maybe_applied})
            # After a timeout the write may have landed: a retry is still safe (same number, same payload ->
            # the first answer), but "nothing was written" would not be true.
            message = (
                "the order may or may not have been stored; please retry: a repeated call gets the first answer"
                if exc.maybe_applied
                else "the order could not be stored; nothing was written, please retry"
            )
            return Failed(message=message, outcome=FulfillmentOutcome.STORAGE_FAILED)

        if isinstance(outcome, Created):
            logger.info("fulfillment order created", extra={"partner_order_id": outcome.partner_order_id})
            return created
        if isinstance(outcome, Replayed):
            logger.info("fulfillment order replayed: answering as the first time")
            return StoredAnswer(answer_json=outcome.answer_json, outcome=FulfillmentOutcome.REPLAYED)
        if isinstance(outcome, Conflict):
            logger.warning("fulfillment order number reused with a different payload")
            raise QimenRejection(
                QimenAnswerCode.ORDER_CONFLICT,
                f"fulfillment_info.fulfillment_order_no {order_no!r} was already received at "
                f"{outcome.first_received_at} with a different payload",
                FulfillmentOutcome.CONFLICT,
                log_detail=f"first received at {outcome.first_received_at}",
            )
        if isinstance(outcome, NoInventory):
            left = max(outcome.available, 0)
            raise QimenRejection(
                QimenAnswerCode.NO_INVENTORY,
                f"商品库存不足: store {order.store_id} item {order.item_id} has {left} left, "
                f"{order.quantity} requested",
                FulfillmentOutcome.NO_INVENTORY,
                log_detail=f"store {order.store_id} item {order.item_id}: {left} left, {order.quantity} requested",
            )
        if isinstance(outcome, TooLarge):
            # The model keeps keys far below DynamoDB's limits; this catches what it cannot see (the item's size).
            where = "fulfillment order" if outcome.what == "order" else outcome.what
            code = QimenAnswerCode.BODY_TOO_LARGE if outcome.what == "order" else QimenAnswerCode.INVALID_PARAMETER
            message = f"{where} is {outcome.size} bytes as stored; the limit is {outcome.limit}"
            raise QimenRejection(code, message, QimenOutcome.INVALID, log_detail=message)
        raise AssertionError(f"unhandled outcome {outcome!r}")
