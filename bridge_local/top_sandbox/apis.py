"""The three outbound APIs as data: one ``ApiSpec`` per method in ``APIS``.

An entry says everything the gateway needs to answer that API: the top-level parameter, how its records sit in
that parameter (``Layout``), the record schema and batch limit, whether a session is needed, which field
identifies a record (refuse faults match on it), how an accepted batch is stored and answered, how a refused
batch is answered in each refuse style, the fields of its business error, and which odd answer shapes
(``ODD_ANSWERS``) the ``odd_answer_next`` fault cycles through for it. The gateway looks the method up here and
never branches on its name.
The parameters and envelopes follow the seed documents (see ``docs/PROTOCOL.md``).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeAlias

from taobao_bridge.jsonutil import dumps

from .errors import TopError, invalid
from .faults import ODD_SHAPES, REFUSE_STYLES
from .schema import BOOLEAN, DATE, LONG_MAX, NUMBER, OBJECT, STRING, Field, object_problem

WRITEOFF_METHOD = "tmall.car.local.service.order.writeoff.sync"
RISK_METHOD = "taobao.aliauto.risk.info.tmall.yc.service.sync"
EXTERNAL_ORDER_METHOD = "tmall.aliauto.trade.external.order.sycn"  # "sycn": the platform's spelling


def response_key(method: str) -> str:
    """The success wrapper key: dots as underscores, the leading ``taobao.`` dropped (as TOP does)."""
    return method.removeprefix("taobao.").replace(".", "_") + "_response"


def order_id_for(idempotent_id: str) -> int:
    """The platform order id the sandbox gives an idempotent id: deterministic, 16 to 19 digits, fits a Java
    ``long`` and is usually above 2**53 (so a client that goes through floats loses digits)."""
    low = 10**15
    value = int.from_bytes(hashlib.sha256(idempotent_id.encode("utf-8")).digest()[:8], "big")
    return low + value % (LONG_MAX - low + 1)


# --------------------------------------------------------------------------------------------------------------
# Record schemas (from the seed documents)
# --------------------------------------------------------------------------------------------------------------


def _n(required: bool = False) -> Field:
    return Field(NUMBER, required)


def _s(required: bool = False) -> Field:
    return Field(STRING, required)


def _d(required: bool = False) -> Field:
    return Field(DATE, required)


WRITEOFF_FIELDS: dict[str, Field] = {
    "biz_type": _n(True),
    "service_sku_name": _s(),
    "service_store_id": _s(),
    "apply_refund_num": _n(),
    "verify_time": _d(True),
    "tb_store_id": _n(True),
    "port_no": _s(),
    "refund_success_num": _n(),
    "service_status": _n(True),
    "service_id": _n(True),
    "verify_num": _n(),
    "service_sku_id": _s(),
    "category_id": _n(),
    "user_name": _s(),
    "sale_num": _n(),
    "appoint_store_id": _n(),
    "maintain_id": _n(),
    "left_num": _n(),
    "verify_batch_no": _s(),
    "tb_store_name": _s(),
    "third_sub_goods_order": _s(),
    "used_num": _n(),
    "service_detail_id": _n(True),
    "tb_biz_order_id": _n(True),
}

RISK_FIELDS: dict[str, Field] = {
    "service_code": _s(),
    "install_type": _n(True),
    "buyer_phone": _s(True),
    "tc_order_id": _n(True),
    "tc_sub_order_id": _n(True),
    "car_license_num": _s(),
    "service_use_time": _d(),
    "buyer_name": _s(True),
    "work_order_submit_time": _d(),
}

_USER_INFO = {"user_nick": _s(), "user_phone": _s(), "user_id": _n()}

# Nesting follows the seed's Java example: idempotent_id, hide, source, ext_info and pay_order_info are fields of
# SyncSingleOrderReq itself, whatever the flattened table suggests.
EXTERNAL_ORDER_FIELDS: dict[str, Field] = {
    "buyer_info": Field(OBJECT, children=_USER_INFO),
    "hide": Field(BOOLEAN),
    "order_info": Field(
        OBJECT,
        children={
            "biz_type": _n(),
            "pay_time": _d(),
            "out_order_id": _s(),
            "end_time": _d(),
            "gmt_create": _d(),
            "total_fee": _n(),
        },
    ),
    "source": _s(),
    "item_info": Field(
        OBJECT,
        children={
            "item_id": _n(),
            "item_title": _s(),
            "root_cat": _n(),
            "item_price": _n(),
            "category_id": _n(),
            "buy_amount": _n(),
        },
    ),
    "seller_info": Field(OBJECT, children=_USER_INFO),
    "pay_order_info": Field(OBJECT, children={"channel": _s(), "pay_order_id": _s()}),
    "idempotent_id": _s(True),
    "ext_info": _s(),
}


# --------------------------------------------------------------------------------------------------------------
# Layouts: where the records sit in the decoded API parameter
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    # Lenient: used to record every call, even one that will be refused, so it never raises.
    count: Callable[[Any], int]
    # Strict: the records and where they are (for messages), or TopError 41 naming the problem.
    unwrap: Callable[[str, Any], tuple[list[Any], str]]


def _unwrap_list(param: str, payload: Any) -> tuple[list[Any], str]:
    if not isinstance(payload, list):
        raise invalid(f"parameter {param} must be a JSON list")
    return payload, param


def _unwrap_contents(param: str, payload: Any) -> tuple[list[Any], str]:
    problem = None
    if not isinstance(payload, dict):
        problem = f"parameter {param} must be a JSON object"
    elif set(payload) - {"contents"}:
        problem = f"parameter {param}: unknown field {sorted(set(payload) - {'contents'})[0]}"
    elif payload.get("contents") is None:
        problem = f"parameter {param}: field contents is required (missing or null)"
    elif not isinstance(payload["contents"], list):
        problem = f"parameter {param}: field contents must be a JSON list"
    if problem:
        raise invalid(problem)
    return payload["contents"], f"{param}.contents"


def _unwrap_single(param: str, payload: Any) -> tuple[list[Any], str]:
    if not isinstance(payload, dict):
        raise invalid(f"parameter {param} must be a JSON object")
    return [payload], param


def _count_contents(payload: Any) -> int:
    contents = payload.get("contents") if isinstance(payload, dict) else None
    return len(contents) if isinstance(contents, list) else 0


LIST_OF_RECORDS = Layout(lambda payload: len(payload) if isinstance(payload, list) else 0, _unwrap_list)
CONTENTS_LIST = Layout(_count_contents, _unwrap_contents)  # {"contents": [record, ...]}
SINGLE_RECORD = Layout(lambda payload: 1 if isinstance(payload, dict) else 0, _unwrap_single)


# --------------------------------------------------------------------------------------------------------------
# Answers: acceptance and refusal
# --------------------------------------------------------------------------------------------------------------

# (validated records, this method's accepted records, idempotent ids seen so far) -> success body. It stores what
# it accepts; the gateway adds request_id and the envelope.
Accept: TypeAlias = Callable[[list[dict[str, Any]], list[dict[str, Any]], set[str]], dict[str, Any]]


class ResultRefusal(NamedTuple):
    """A business refusal inside a success envelope (refuse_style "result")."""

    outcome: str  # what the recorded call shows instead of "ok"
    body: dict[str, Any]


# A refusal builder gets the joined per-record messages; a TopError is answered as an error_response.
Refusal: TypeAlias = TopError | ResultRefusal


def _accept_writeoff(records: list[dict[str, Any]], accepted: list[dict[str, Any]], seen: set[str]) -> dict[str, Any]:
    accepted.extend(copy.deepcopy(records))
    return {"result": {"success": True, "data": True}}


def _accept_risk(records: list[dict[str, Any]], accepted: list[dict[str, Any]], seen: set[str]) -> dict[str, Any]:
    accepted.extend(copy.deepcopy(records))
    return {}  # this API's success answer carries nothing but request_id


def _accept_external_order(
    records: list[dict[str, Any]], accepted: list[dict[str, Any]], seen: set[str]
) -> dict[str, Any]:
    # A repeated idempotent id is accepted again (as the platform does) but marked, so tests can see the retry.
    (payload,) = records
    idempotent_id = payload["idempotent_id"]
    order_id = order_id_for(idempotent_id)
    entry = dict(payload, _order_id=order_id)
    if idempotent_id in seen:
        entry["_duplicate"] = True
    seen.add(idempotent_id)
    accepted.append(entry)
    return {"result": {"success": True, "data": {"order_id": order_id}}}


def _refuse_as_error(message: str) -> Refusal:
    return TopError(15, "Remote service error", "isv.invalid-parameter", message)


class BusinessError(NamedTuple):
    """The fields of a business refusal inside a success envelope, and the code the sandbox puts there."""

    code_field: str
    message_field: str
    code: str

    def fields(self, message: str) -> dict[str, Any]:
        return {self.code_field: self.code, self.message_field: message}


WRITEOFF_ERROR = BusinessError("error_code", "error_msg", "isv.invalid-parameter")
EXTERNAL_ORDER_ERROR = BusinessError("msg_code", "msg_info", "INVALID_PARAM")


def _refuse_in_result(error: BusinessError) -> Callable[[str], Refusal]:
    def refuse(message: str) -> Refusal:
        return ResultRefusal(error.code, {"result": {"success": False, **error.fields(message)}})

    return refuse


# --------------------------------------------------------------------------------------------------------------
# Odd answers: success envelopes whose inner object is not shaped like the seeds (docs/PROTOCOL.md §2)
# --------------------------------------------------------------------------------------------------------------


# An odd answer is built from (the API, the answer it would normally give — {} when nothing was accepted, a
# message); it returns the inner object to send, which may be a list or a string.
OddBuilder: TypeAlias = Callable[["ApiSpec", dict[str, Any], str], Any]


class OddAnswer(NamedTuple):
    processed: bool  # the records are accepted before this answer goes out
    build: OddBuilder


_SOME_ORDER_ID = 1234567890123456789  # for APIs whose normal answer carries none


def _result_of(body: Mapping[str, Any]) -> dict[str, Any]:
    result = body.get("result")
    return dict(result) if isinstance(result, dict) else {"success": True}


def _order_id_in(body: Mapping[str, Any]) -> int:
    data = _result_of(body).get("data")
    order_id = data.get("order_id") if isinstance(data, dict) else None
    return order_id if isinstance(order_id, int) else _SOME_ORDER_ID


def _with_order_id(body: Mapping[str, Any], value: Any) -> dict[str, Any]:
    result = _result_of(body)
    data = result.get("data")
    return {**body, "result": {**result, "data": {**(data if isinstance(data, dict) else {}), "order_id": value}}}


ODD_ANSWERS: dict[str, OddAnswer] = {
    "data_object": OddAnswer(
        True, lambda spec, body, msg: {**body, "result": {**_result_of(body), "data": {"id": 1234, "accepted": True}}}
    ),
    "no_result": OddAnswer(
        True, lambda spec, body, msg: {"data": _result_of(body).get("data", True), "piggyback": "sandbox"}
    ),
    "result_string": OddAnswer(True, lambda spec, body, msg: {"result": dumps(_result_of(body))}),
    "empty": OddAnswer(True, lambda spec, body, msg: {}),
    "list": OddAnswer(True, lambda spec, body, msg: [body]),
    "success_text_true": OddAnswer(
        True, lambda spec, body, msg: {**body, "result": {**_result_of(body), "success": "true"}}
    ),
    "order_id_text": OddAnswer(True, lambda spec, body, msg: _with_order_id(body, "abc")),
    "order_id_float": OddAnswer(True, lambda spec, body, msg: _with_order_id(body, float(_order_id_in(body)))),
    "order_id_negative": OddAnswer(True, lambda spec, body, msg: _with_order_id(body, -_order_id_in(body))),
    "order_id_object": OddAnswer(True, lambda spec, body, msg: _with_order_id(body, {"id": _order_id_in(body)})),
    "success_text_false": OddAnswer(
        False, lambda spec, body, msg: {"result": {"success": "false", **spec.business_error.fields(msg)}}
    ),
    "refusal_top_level": OddAnswer(
        False, lambda spec, body, msg: {"success": False, **spec.business_error.fields(msg)}
    ),
}
# A shape added to Faults without a builder here would otherwise fail only at call time.
if set(ODD_ANSWERS) != set(ODD_SHAPES):  # pragma: no cover - a programming error caught at import
    raise ValueError(f"ODD_ANSWERS must cover exactly {', '.join(ODD_SHAPES)}")

_ODD_FOR_ALL = ("no_result", "result_string", "list", "success_text_true", "success_text_false", "refusal_top_level")


# --------------------------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiSpec:
    method: str
    param: str  # the top-level API parameter
    layout: Layout
    fields: Mapping[str, Field]  # the schema of one record
    batch_limit: int  # records per call, 1..batch_limit
    record_key: str  # the field that identifies a record (refuse faults match on it)
    needs_session: bool
    accept: Accept
    refusals: Mapping[str, Callable[[str], Refusal]]  # refuse_style -> builder
    business_error: BusinessError  # how a refusal inside a success envelope names its code and message
    odd_shapes: tuple[str, ...]  # the shapes odd_answer_next cycles through for this API, in this order
    response_key: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "response_key", response_key(self.method))
        # A refuse style added to Faults without a builder here would otherwise fail only at call time.
        if set(self.refusals) != set(REFUSE_STYLES):
            raise ValueError(f"{self.method}: refusals must cover exactly {', '.join(REFUSE_STYLES)}")
        if not self.odd_shapes or not set(self.odd_shapes) <= set(ODD_SHAPES):
            raise ValueError(f"{self.method}: odd_shapes must be some of {', '.join(ODD_SHAPES)}")

    def count_records(self, payload: Any) -> int:
        return self.layout.count(payload)

    def validated_records(self, payload: Any) -> list[dict[str, Any]]:
        """The records of a decoded API parameter, or ``TopError`` 41 naming the first problem."""
        records, where = self.layout.unwrap(self.param, payload)
        if not 1 <= len(records) <= self.batch_limit:
            raise invalid(f"{where}: list length {len(records)} is outside the limit 1..{self.batch_limit}")
        for index, record in enumerate(records):
            problem = object_problem(record, self.fields)
            if problem:
                raise invalid(f"record {index}: {problem} ({where})")
        return records

    def records_in(self, payload: Any) -> list[Any]:
        """The records of a decoded API parameter as sent, unchecked; empty when they cannot be found."""
        try:
            return self.layout.unwrap(self.param, payload)[0]
        except TopError:
            return []


APIS: dict[str, ApiSpec] = {
    spec.method: spec
    for spec in (
        ApiSpec(
            method=WRITEOFF_METHOD,
            param="local_order_write_off_d_t_o_list",
            layout=LIST_OF_RECORDS,
            fields=WRITEOFF_FIELDS,
            batch_limit=999,
            record_key="tb_biz_order_id",
            needs_session=False,
            accept=_accept_writeoff,
            refusals={"error_response": _refuse_as_error, "result": _refuse_in_result(WRITEOFF_ERROR)},
            business_error=WRITEOFF_ERROR,
            odd_shapes=("data_object", "empty", *_ODD_FOR_ALL),
        ),
        ApiSpec(
            method=RISK_METHOD,
            param="risk_info_sync_request",
            layout=CONTENTS_LIST,
            fields=RISK_FIELDS,
            batch_limit=100,
            record_key="tc_sub_order_id",
            needs_session=True,
            accept=_accept_risk,
            # This API has no business result envelope: a "result" refusal is still an error_response.
            refusals={"error_response": _refuse_as_error, "result": _refuse_as_error},
            business_error=WRITEOFF_ERROR,  # undocumented for this API: the writeoff API's fields
            odd_shapes=_ODD_FOR_ALL,  # its normal answer is already "empty"
        ),
        ApiSpec(
            method=EXTERNAL_ORDER_METHOD,
            param="sync_single_order_req",
            layout=SINGLE_RECORD,
            fields=EXTERNAL_ORDER_FIELDS,
            batch_limit=1,
            record_key="idempotent_id",
            needs_session=False,
            accept=_accept_external_order,
            refusals={"error_response": _refuse_as_error, "result": _refuse_in_result(EXTERNAL_ORDER_ERROR)},
            business_error=EXTERNAL_ORDER_ERROR,
            odd_shapes=(
                "order_id_text",
                "order_id_float",
                "order_id_negative",
                "order_id_object",
                "empty",
                *_ODD_FOR_ALL,
            ),
        ),
    )
}
