"""The platform models: field types, the seeds' required flags, list limits and examples."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from taobao_bridge import models
from taobao_bridge.clock import PLATFORM_TZ
from taobao_bridge.models import external_order, fulfillment, risk, writeoff
from taobao_bridge.models.common import InboundModel, Int64, OutboundModel, PlatformDateTime
from taobao_bridge.wire import to_top_params


class Stamped(OutboundModel):
    at: PlatformDateTime


class Counted(OutboundModel):
    n: Int64


class Received(InboundModel):
    n: Int64 | None = None
    text: str | None = None


def only_error(exc: pytest.ExceptionInfo[ValidationError]) -> dict[str, Any]:
    errors = exc.value.errors()
    assert len(errors) == 1, errors
    return dict(errors[0])


# --- PlatformDateTime --------------------------------------------------------------------------------------------


def test_platform_datetime_reads_text_as_utc_plus_8() -> None:
    at = Stamped.model_validate({"at": "2020-11-11 12:00:00"}).at
    assert at == datetime(2020, 11, 11, 4, 0, tzinfo=UTC)
    assert at.utcoffset() == timedelta(hours=8)


def test_platform_datetime_converts_aware_datetimes_and_dumps_text_in_both_modes() -> None:
    stamped = Stamped(at=datetime(2020, 11, 11, 4, 0, 0, 999_999, tzinfo=UTC))
    assert stamped.model_dump() == {"at": "2020-11-11 12:00:00"}
    assert stamped.model_dump(mode="json") == {"at": "2020-11-11 12:00:00"}
    assert stamped.model_dump_json() == '{"at":"2020-11-11 12:00:00"}'
    # Whole seconds: the model holds exactly what will be sent.
    assert stamped.at == datetime(2020, 11, 11, 12, 0, tzinfo=PLATFORM_TZ)


def test_platform_datetime_refuses_naive_datetimes() -> None:
    with pytest.raises(ValidationError) as exc:
        Stamped(at=datetime(2020, 11, 11, 12, 0))
    error = only_error(exc)
    assert error["loc"] == ("at",)
    assert "naive" in error["msg"] and "yyyy-MM-dd HH:mm:ss" in error["msg"]


@pytest.mark.parametrize(
    "text",
    [
        "2020-11-11T12:00:00",
        "2020-11-11 12:00:00+08:00",
        "2020-11-11 12:00",
        "2020-1-1 1:2:3",
        " 2020-11-11 12:00:00",
        "2020-11-11 12:00:00 ",
        "2020-02-30 12:00:00",
        "2020-11-11 24:00:00",
        "１２３４-11-11 12:00:00",
        "",
    ],
)
def test_platform_datetime_refuses_other_text_naming_the_format(text: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Stamped.model_validate({"at": text})
    error = only_error(exc)
    assert error["loc"] == ("at",)
    assert "yyyy-MM-dd HH:mm:ss" in error["msg"]


@pytest.mark.parametrize("value", [1605067200, 1605067200.0, None, b"2020-11-11 12:00:00"])
def test_platform_datetime_refuses_other_types(value: object) -> None:
    with pytest.raises(ValidationError, match="yyyy-MM-dd HH:mm:ss"):
        Stamped.model_validate({"at": value})


@given(
    moment=st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30)).map(
        lambda moment: moment.replace(microsecond=0)
    ),
    offset_minutes=st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59),
)
def test_platform_datetime_round_trips_every_aware_instant(moment: datetime, offset_minutes: int) -> None:
    aware = moment.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    for mode in ("python", "json"):
        text = Stamped(at=aware).model_dump(mode=mode)["at"]
        assert isinstance(text, str)
        assert Stamped.model_validate({"at": text}).at == aware
    assert Stamped.model_validate_json(Stamped(at=aware).model_dump_json()).at == aware


# --- Int64 -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0), (3882527336184474047, 3882527336184474047), ("3882527336184474047", 3882527336184474047), ("007", 7)],
)
def test_int64_accepts_integers_and_digit_text(value: object, expected: int) -> None:
    assert Counted.model_validate({"n": value}).n == expected


def test_int64_keeps_nineteen_digits_from_json_numbers() -> None:
    assert Counted.model_validate_json('{"n":9223372036854775807}').n == 2**63 - 1
    assert Counted.model_validate_json('{"n":"3882527336184474047"}').n == 3882527336184474047


@pytest.mark.parametrize(
    "value",
    [1.5, 2.0, True, False, -1, 2**63, "2.0", "-1", " 12", "1e3", "１２", "", None, "9223372036854775808"],
)
def test_int64_refuses_floats_bools_and_out_of_range(value: object) -> None:
    with pytest.raises(ValidationError) as exc:
        Counted.model_validate({"n": value})
    assert only_error(exc)["loc"] == ("n",)


@pytest.mark.parametrize("text", ['{"n":1.5}', '{"n":1.0}', '{"n":true}', '{"n":9223372036854775808}', '{"n":-3}'])
def test_int64_refuses_bad_json_numbers(text: str) -> None:
    with pytest.raises(ValidationError):
        Counted.model_validate_json(text)


def test_inbound_models_keep_numbers_in_string_fields_exact_and_ignore_unknown_fields() -> None:
    received = Received.model_validate_json('{"n":"12","text":3882527336184474047,"added_later":{"x":1}}')
    assert received == Received(n=12, text="3882527336184474047")


def test_outbound_models_refuse_unknown_fields() -> None:
    with pytest.raises(ValidationError) as exc:
        Counted(n=1, m=2)  # type: ignore[call-arg]
    error = only_error(exc)
    assert error["loc"] == ("m",) and error["type"] == "extra_forbidden"


def test_models_package_exports_its_modules() -> None:
    for name in models.__all__:
        assert hasattr(models, name), name
    for module in (models.common, writeoff, risk, external_order, fulfillment):
        for name in module.__all__:
            assert hasattr(module, name), (module.__name__, name)


# --- writeoff (seed 000) -----------------------------------------------------------------------------------------


def writeoff_item(**changes: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "biz_type": 2,
        "verify_time": "2020-11-11 12:00:00",
        "tb_store_id": 2343432,
        "service_status": 2,
        "service_id": 1111,
        "service_detail_id": 111223,
        "tb_biz_order_id": 353454543,
    }
    item.update(changes)
    return {k: v for k, v in item.items() if v is not None}


def test_writeoff_constants() -> None:
    assert writeoff.METHOD == "tmall.car.local.service.order.writeoff.sync"
    assert writeoff.MAX_BATCH == 999


def test_writeoff_fields_follow_the_seed_table_order() -> None:
    assert list(writeoff.LocalOrderWriteOffDto.model_fields) == [
        "biz_type", "service_sku_name", "service_store_id", "apply_refund_num", "verify_time", "tb_store_id",
        "port_no", "refund_success_num", "service_status", "service_id", "verify_num", "service_sku_id",
        "category_id", "user_name", "sale_num", "appoint_store_id", "maintain_id", "left_num", "verify_batch_no",
        "tb_store_name", "third_sub_goods_order", "used_num", "service_detail_id", "tb_biz_order_id",
    ]  # fmt: skip
    required = {name for name, field in writeoff.LocalOrderWriteOffDto.model_fields.items() if field.is_required()}
    assert required == {
        "biz_type", "verify_time", "tb_store_id", "service_status", "service_id", "service_detail_id",
        "tb_biz_order_id",
    }  # fmt: skip


def test_writeoff_missing_required_field_is_named_with_its_path() -> None:
    items = [writeoff_item() for _ in range(5)]
    del items[3]["tb_store_id"]
    with pytest.raises(ValidationError) as exc:
        writeoff.WriteoffSyncRequest.model_validate({"local_order_write_off_d_t_o_list": items})
    error = only_error(exc)
    assert error["loc"] == ("local_order_write_off_d_t_o_list", 3, "tb_store_id")
    assert error["type"] == "missing"


def test_writeoff_batch_limit_is_999() -> None:
    request = writeoff.WriteoffSyncRequest.model_validate({"local_order_write_off_d_t_o_list": [writeoff_item()] * 999})
    assert len(request.local_order_write_off_d_t_o_list) == 999


def test_writeoff_batch_of_1000_is_refused() -> None:
    with pytest.raises(ValidationError) as exc:
        writeoff.WriteoffSyncRequest.model_validate({"local_order_write_off_d_t_o_list": [writeoff_item()] * 1000})
    error = only_error(exc)
    assert error["loc"] == ("local_order_write_off_d_t_o_list",) and error["type"] == "too_long"


def test_writeoff_empty_batch_is_refused() -> None:
    with pytest.raises(ValidationError) as exc:
        writeoff.WriteoffSyncRequest.model_validate({"local_order_write_off_d_t_o_list": []})
    assert only_error(exc)["type"] == "too_short"


@pytest.mark.parametrize(
    ("field", "value"), [("biz_type", 1), ("biz_type", 4), ("service_status", 0), ("service_status", 4)]
)
def test_writeoff_codes_outside_the_seed_lists_are_refused(field: str, value: int) -> None:
    with pytest.raises(ValidationError) as exc:
        writeoff.LocalOrderWriteOffDto.model_validate(writeoff_item(**{field: value}))
    error = only_error(exc)
    assert error["loc"] == (field,) and "expected one of" in error["msg"]


@pytest.mark.parametrize(("field", "value"), [("biz_type", 3), ("service_status", 1), ("service_status", 3)])
def test_writeoff_codes_in_the_seed_lists_are_accepted(field: str, value: int) -> None:
    assert getattr(writeoff.LocalOrderWriteOffDto.model_validate(writeoff_item(**{field: value})), field) == value


def test_writeoff_bad_date_format_is_refused_with_its_path() -> None:
    with pytest.raises(ValidationError) as exc:
        writeoff.WriteoffSyncRequest.model_validate(
            {"local_order_write_off_d_t_o_list": [writeoff_item(verify_time="2020/11/11 12:00")]}
        )
    error = only_error(exc)
    assert error["loc"] == ("local_order_write_off_d_t_o_list", 0, "verify_time")
    assert "yyyy-MM-dd HH:mm:ss" in error["msg"]


def test_writeoff_unknown_field_is_refused_and_named() -> None:
    with pytest.raises(ValidationError) as exc:
        writeoff.WriteoffSyncRequest.model_validate(
            {"local_order_write_off_d_t_o_list": [writeoff_item(tb_store_idd=1)]}
        )
    error = only_error(exc)
    assert error["loc"] == ("local_order_write_off_d_t_o_list", 0, "tb_store_idd")
    assert error["type"] == "extra_forbidden"


def test_writeoff_number_fields_refuse_floats_and_bools() -> None:
    for value in (353454543.0, True):
        with pytest.raises(ValidationError) as exc:
            writeoff.LocalOrderWriteOffDto.model_validate(writeoff_item(tb_biz_order_id=value))
        assert only_error(exc)["loc"] == ("tb_biz_order_id",)


def test_writeoff_seed_response_example_parses() -> None:
    body = {
        "tmall_car_local_service_order_writeoff_sync_response": {
            "result": {
                "data": 1234,
                "success": False,
                "error_code": "isv.invalid-parameter",
                "error_msg": "参数错误",
                "piggyback": "",
            },
            "request_id": "abc",
        }
    }
    response = writeoff.WriteoffSyncResponse.model_validate_json(
        json.dumps(body["tmall_car_local_service_order_writeoff_sync_response"], ensure_ascii=False)
    )
    assert response.result == writeoff.WriteoffSyncResult(
        data=1234, success=False, error_code="isv.invalid-parameter", error_msg="参数错误", piggyback=""
    )
    assert response.request_id == "abc"


@pytest.mark.parametrize(("data", "expected"), [("true", True), ("1234", 1234), ('"m-1"', "m-1")])
def test_writeoff_result_data_may_be_boolean_number_or_text(data: str, expected: object) -> None:
    result = writeoff.WriteoffSyncResult.model_validate_json(f'{{"data":{data},"error_code":15}}')
    assert result.data == expected and type(result.data) is type(expected)
    assert result.error_code == "15"


# --- risk (seed 001) ---------------------------------------------------------------------------------------------


def risk_item(**changes: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "install_type": 0,
        "buyer_phone": "13012345678",
        "tc_order_id": 3882527336184474047,
        "tc_sub_order_id": 3882527336184474048,
        "buyer_name": "王五",
    }
    item.update(changes)
    return item


def test_risk_constants_and_field_order() -> None:
    assert risk.METHOD == "taobao.aliauto.risk.info.tmall.yc.service.sync"
    assert risk.MAX_BATCH == 100
    assert risk.NEEDS_SESSION is True
    assert list(risk.RiskInfoSyncDTO.model_fields) == [
        "service_code", "install_type", "buyer_phone", "tc_order_id", "tc_sub_order_id", "car_license_num",
        "service_use_time", "buyer_name", "work_order_submit_time",
    ]  # fmt: skip


def test_risk_nineteen_digit_ids_round_trip_exactly() -> None:
    dto = risk.RiskInfoSyncDTO.model_validate(risk_item())
    assert dto.tc_order_id == 3882527336184474047
    again = risk.RiskInfoSyncDTO.model_validate_json(dto.model_dump_json())
    assert again.tc_order_id == 3882527336184474047 and again.tc_sub_order_id == 3882527336184474048
    wire = to_top_params(risk.RiskSyncRequest(risk_info_sync_request=risk.RiskInfoSyncRequest(contents=[dto])))
    assert json.loads(wire["risk_info_sync_request"])["contents"][0]["tc_order_id"] == 3882527336184474047


def test_risk_batch_of_101_is_refused() -> None:
    assert len(risk.RiskInfoSyncRequest.model_validate({"contents": [risk_item()] * 100}).contents) == 100
    with pytest.raises(ValidationError) as exc:
        risk.RiskSyncRequest.model_validate({"risk_info_sync_request": {"contents": [risk_item()] * 101}})
    error = only_error(exc)
    assert error["loc"] == ("risk_info_sync_request", "contents") and error["type"] == "too_long"


@pytest.mark.parametrize("field", ["install_type", "buyer_phone", "tc_order_id", "tc_sub_order_id", "buyer_name"])
def test_risk_required_fields(field: str) -> None:
    item = risk_item()
    del item[field]
    with pytest.raises(ValidationError) as exc:
        risk.RiskInfoSyncRequest.model_validate({"contents": [risk_item(), item]})
    assert only_error(exc)["loc"] == ("contents", 1, field)


def test_risk_request_object_is_required() -> None:
    with pytest.raises(ValidationError) as exc:
        risk.RiskSyncRequest.model_validate({})
    assert only_error(exc)["loc"] == ("risk_info_sync_request",)


@pytest.mark.parametrize("value", [2, -1, True])
def test_risk_install_type_is_0_or_1(value: object) -> None:
    with pytest.raises(ValidationError) as exc:
        risk.RiskInfoSyncDTO.model_validate(risk_item(install_type=value))
    assert only_error(exc)["loc"] == ("install_type",)


def test_risk_optional_dates_and_response() -> None:
    dto = risk.RiskInfoSyncDTO.model_validate(risk_item(service_use_time="2000-01-01 00:00:00"))
    assert dto.service_use_time == datetime(2000, 1, 1, tzinfo=PLATFORM_TZ)
    assert dto.work_order_submit_time is None
    with pytest.raises(ValidationError) as exc:
        risk.RiskInfoSyncDTO.model_validate(risk_item(work_order_submit_time=datetime(2000, 1, 1)))
    assert only_error(exc)["loc"] == ("work_order_submit_time",)
    assert risk.RiskSyncResponse.model_validate_json('{"request_id":"r1"}').request_id == "r1"
    assert risk.RiskSyncResponse.model_validate_json("{}").request_id is None


# --- external order (seed 002) -----------------------------------------------------------------------------------


def test_external_order_method_keeps_the_platform_spelling() -> None:
    assert external_order.METHOD == "tmall.aliauto.trade.external.order.sycn"


def test_external_order_field_order_follows_the_java_example() -> None:
    assert list(external_order.SyncSingleOrderReq.model_fields) == [
        "buyer_info", "hide", "order_info", "source", "item_info", "seller_info", "pay_order_info",
        "idempotent_id", "ext_info",
    ]  # fmt: skip
    assert list(external_order.OrderInfo.model_fields) == [
        "biz_type", "pay_time", "out_order_id", "end_time", "gmt_create", "total_fee",
    ]  # fmt: skip
    assert list(external_order.PayOrderInfo.model_fields) == ["channel", "pay_order_id"]


def test_external_order_response_example_parses_with_exact_order_id() -> None:
    text = (
        '{"result":{"data":{"order_id":4356787654345678},"success":true,'
        '"msg_info":"卖家信息不存在","msg_code":"SELLER_NOT_EXIST"},"request_id":"r1"}'
    )
    response = external_order.ExternalOrderSyncResponse.model_validate_json(text)
    assert response.result is not None and response.result.data is not None
    assert response.result.data.order_id == 4356787654345678
    assert response.result.success is True
    assert response.result.msg_code == "SELLER_NOT_EXIST" and response.result.msg_info == "卖家信息不存在"
    assert response.request_id == "r1"


@pytest.mark.parametrize("order_id", ["3882527336184474047", '"3882527336184474047"'])
def test_external_order_nineteen_digit_order_id_stays_exact(order_id: str) -> None:
    response = external_order.ExternalOrderSyncResponse.model_validate_json(
        f'{{"result":{{"data":{{"order_id":{order_id}}},"success":true}}}}'
    )
    assert response.result is not None and response.result.data is not None
    assert response.result.data.order_id == 3882527336184474047


def test_external_order_refusal_response_parses() -> None:
    response = external_order.ExternalOrderSyncResponse.model_validate_json(
        '{"result":{"success":false,"msg_code":"SELLER_NOT_EXIST","msg_info":"卖家信息不存在"}}'
    )
    assert response.result == external_order.AliAutoResult(
        success=False, msg_code="SELLER_NOT_EXIST", msg_info="卖家信息不存在"
    )


@pytest.mark.parametrize("idempotent_id", [None, "", "   "])
def test_external_order_idempotent_id_is_required_and_not_blank(idempotent_id: str | None) -> None:
    order: dict[str, Any] = {"source": "YC_STORE"}
    if idempotent_id is not None:
        order["idempotent_id"] = idempotent_id
    with pytest.raises(ValidationError) as exc:
        external_order.ExternalOrderSyncRequest.model_validate({"sync_single_order_req": order})
    assert only_error(exc)["loc"] == ("sync_single_order_req", "idempotent_id")


def test_external_order_request_needs_the_order() -> None:
    with pytest.raises(ValidationError) as exc:
        external_order.ExternalOrderSyncRequest.model_validate({})
    assert only_error(exc)["loc"] == ("sync_single_order_req",)


def test_external_order_unknown_nested_field_is_refused_and_named() -> None:
    with pytest.raises(ValidationError) as exc:
        external_order.ExternalOrderSyncRequest.model_validate(
            {"sync_single_order_req": {"idempotent_id": "x", "buyer_info": {"user_name": "张三"}}}
        )
    error = only_error(exc)
    assert error["loc"] == ("sync_single_order_req", "buyer_info", "user_name")
    assert error["type"] == "extra_forbidden"


# --- fulfillment (seed 003) --------------------------------------------------------------------------------------

# Seed 003's request example, verbatim.
FULFILLMENT_REQUEST_EXAMPLE = """{"item_info":{"category_name":"洗衣","item_id":"123456789012","partner_item_id":"12415","item_name":"任意洗3件","service_mode":"TO_SHOP"},"shop_info":{"store_id":"123456789","shop_id":"12345678901234567890123456789012"},"user_info":[{"credentials":{"credential_type":"idCard","credential_no":"410881xxxxxxxxxxxxxx"},"mobile":"123456678901","name":"张先生","ext_info":"{\\"key\\":\\"value\\"}"}],"fulfillment_info":{"address_info":[{"address_detail":"xxxx街道xxx小区xx栋","contact_name":"李先生","district_list":[{"district_name":"杭州市","district_id":"330100"}],"contact_phone":"13911112222","type":"DEFAULT"}],"time_option":{"start":"2022-07-10 12:00","end":"2022-07-10 13:00","type":"DAY_TIME"},"quantity":1,"memo":"test","fulfillment_order_no":"1234567890123456789"},"trade_info":{"real_amount":100,"quantity":2,"total_amount":100,"tp_order_no":"1234567891234567890","tp_sub_order_no":"1234567891234567890"}}"""  # noqa: E501

# Seed 003's response example, verbatim.
FULFILLMENT_RESPONSE_EXAMPLE = """{
    "success":true,
    "biz_result":"fail",
    "biz_error_code":"NO_INVENTORY",
    "biz_error_msg":"商品库存不足,请看看其他商品",
    "partner_order_id":"1232480"
}"""


def fulfillment_payload(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(FULFILLMENT_REQUEST_EXAMPLE)
    payload.update(changes)
    return payload


def test_fulfillment_seed_request_example_parses() -> None:
    request = fulfillment.FulfillmentCreateRequest.model_validate_json(FULFILLMENT_REQUEST_EXAMPLE)
    assert request.trade_info == fulfillment.TradeInfo(
        quantity=2,
        real_amount=100,
        total_amount=100,
        tp_sub_order_no="1234567891234567890",
        tp_order_no="1234567891234567890",
    )
    assert request.item_info.service_mode == "TO_SHOP" and request.item_info.item_id == "123456789012"
    assert request.shop_info.store_id == "123456789"
    [user] = request.user_info
    assert user.name == "张先生" and user.ext_info == '{"key":"value"}'
    assert user.credentials == fulfillment.Credentials(credential_no="410881xxxxxxxxxxxxxx", credential_type="idCard")
    info = request.fulfillment_info
    assert info.fulfillment_order_no == "1234567890123456789"
    assert info.quantity == 1 and info.memo == "test"
    assert info.time_option == fulfillment.TimeOption(start="2022-07-10 12:00", end="2022-07-10 13:00", type="DAY_TIME")
    assert info.address_info is not None
    [address] = info.address_info
    assert address.type == "DEFAULT" and address.district_list == [
        fulfillment.DistrictInfo(district_name="杭州市", district_id="330100")
    ]


def test_fulfillment_seed_response_example_parses() -> None:
    response = fulfillment.FulfillmentCreateResponse.model_validate_json(FULFILLMENT_RESPONSE_EXAMPLE)
    assert response == fulfillment.FulfillmentCreateResponse(
        success=True,
        biz_result="fail",
        biz_error_code="NO_INVENTORY",
        biz_error_msg="商品库存不足,请看看其他商品",
        partner_order_id="1232480",
    )
    assert json.loads(response.model_dump_json(exclude_none=True)) == json.loads(FULFILLMENT_RESPONSE_EXAMPLE)


def test_fulfillment_response_is_ours_and_refuses_unknown_fields() -> None:
    with pytest.raises(ValidationError) as exc:
        fulfillment.FulfillmentCreateResponse.model_validate({"success": True, "biz_result": "ok"})
    assert only_error(exc)["loc"] == ("biz_result",)
    with pytest.raises(ValidationError) as exc:
        fulfillment.FulfillmentCreateResponse.model_validate({"success": True, "biz_result": "success", "x": 1})
    assert only_error(exc)["type"] == "extra_forbidden"


def test_fulfillment_method_and_nesting() -> None:
    assert fulfillment.METHOD == "qimen.taobao.life.fulfillment.create"
    assert list(fulfillment.FulfillmentInfo.model_fields) == [
        "address_info", "time_option", "memo", "quantity", "fulfillment_order_no",
    ]  # fmt: skip
    assert list(fulfillment.TradeInfo.model_fields) == [
        "quantity", "real_amount", "total_amount", "tp_sub_order_no", "tp_order_no",
    ]  # fmt: skip


def test_fulfillment_ignores_unknown_fields_and_keeps_numeric_ids_exact() -> None:
    payload = fulfillment_payload(new_platform_field={"a": 1})
    payload["trade_info"]["tp_order_no"] = 1234567891234567891  # a String field sent as a JSON number
    request = fulfillment.FulfillmentCreateRequest.model_validate_json(json.dumps(payload))
    assert request.trade_info.tp_order_no == "1234567891234567891"


def test_fulfillment_quantity_defaults_to_1_and_must_be_positive() -> None:
    payload = fulfillment_payload()
    del payload["fulfillment_info"]["quantity"]
    assert fulfillment.FulfillmentCreateRequest.model_validate(payload).fulfillment_info.quantity == 1
    payload["fulfillment_info"]["quantity"] = 0
    with pytest.raises(ValidationError) as exc:
        fulfillment.FulfillmentCreateRequest.model_validate(payload)
    assert only_error(exc)["loc"] == ("fulfillment_info", "quantity")


@pytest.mark.parametrize(("field", "value"), [("real_amount", -1), ("total_amount", 1.5), ("quantity", True)])
def test_fulfillment_amounts_are_non_negative_integers(field: str, value: object) -> None:
    payload = fulfillment_payload()
    payload["trade_info"][field] = value
    with pytest.raises(ValidationError) as exc:
        fulfillment.FulfillmentCreateRequest.model_validate(payload)
    assert only_error(exc)["loc"] == ("trade_info", field)


@pytest.mark.parametrize(
    "path",
    [
        ("trade_info",),
        ("item_info",),
        ("shop_info",),
        ("user_info",),
        ("fulfillment_info",),
        ("trade_info", "tp_order_no"),
        ("item_info", "item_id"),
        ("shop_info", "store_id"),
        ("user_info", 0, "mobile"),
        ("user_info", 0, "name"),
        ("fulfillment_info", "time_option"),
        ("fulfillment_info", "fulfillment_order_no"),
        ("fulfillment_info", "time_option", "start"),
        ("fulfillment_info", "time_option", "type"),
    ],
)
def test_fulfillment_missing_required_field_is_named(path: tuple[str | int, ...]) -> None:
    payload = fulfillment_payload()
    parent: Any = payload
    for step in path[:-1]:
        parent = parent[step]
    del parent[path[-1]]
    with pytest.raises(ValidationError) as exc:
        fulfillment.FulfillmentCreateRequest.model_validate(payload)
    error = only_error(exc)
    assert error["loc"] == path and error["type"] == "missing"


def test_fulfillment_service_mode_must_be_known() -> None:
    payload = fulfillment_payload()
    payload["item_info"]["service_mode"] = "TO_MARS"
    with pytest.raises(ValidationError) as exc:
        fulfillment.FulfillmentCreateRequest.model_validate(payload)
    assert only_error(exc)["loc"] == ("item_info", "service_mode")


def test_fulfillment_address_type_must_be_known() -> None:
    payload = fulfillment_payload()
    payload["fulfillment_info"]["address_info"][0]["type"] = "OTHER"
    with pytest.raises(ValidationError) as exc:
        fulfillment.FulfillmentCreateRequest.model_validate(payload)
    assert only_error(exc)["loc"] == ("fulfillment_info", "address_info", 0, "type")


@pytest.mark.parametrize(
    ("time_option", "bad_field"),
    [
        ({"type": "DAY_TIME", "start": "2022-07-10", "end": "2022-07-10 13:00"}, "start"),
        ({"type": "DAY_TIME", "start": "2022-07-10 12:00", "end": "2022-07-10 13:00:00"}, "end"),
        ({"type": "DAY", "start": "2022-07-10 12:00"}, "start"),
        ({"type": "DAY", "start": "2022-07-10", "end": "2022-7-11"}, "end"),
        ({"type": "DAY", "start": "2022-02-30"}, "start"),
        ({"type": "DAY_TIME", "start": "2022-07-10 25:00"}, "start"),
    ],
)
def test_fulfillment_time_option_must_match_its_type(time_option: dict[str, str], bad_field: str) -> None:
    payload = fulfillment_payload()
    payload["fulfillment_info"]["time_option"] = time_option
    with pytest.raises(ValidationError) as exc:
        fulfillment.FulfillmentCreateRequest.model_validate(payload)
    error = only_error(exc)
    assert error["loc"] == ("fulfillment_info", "time_option", bad_field)
    assert bad_field in error["msg"] and time_option["type"] in error["msg"]


@pytest.mark.parametrize(
    "time_option",
    [{"type": "DAY", "start": "2022-07-10"}, {"type": "DAY", "start": "2022-07-10", "end": "2022-07-11"}],
)
def test_fulfillment_day_time_options_are_accepted(time_option: dict[str, str]) -> None:
    payload = fulfillment_payload()
    payload["fulfillment_info"]["time_option"] = time_option
    assert fulfillment.FulfillmentCreateRequest.model_validate(payload).fulfillment_info.time_option.type == "DAY"


def test_fulfillment_user_list_limits() -> None:
    payload = fulfillment_payload()
    payload["user_info"] = payload["user_info"] * 999
    assert len(fulfillment.FulfillmentCreateRequest.model_validate(payload).user_info) == 999
    users: list[Any]
    for users in (payload["user_info"] * 2, []):
        with pytest.raises(ValidationError) as exc:
            fulfillment.FulfillmentCreateRequest.model_validate(fulfillment_payload(user_info=users))
        assert only_error(exc)["loc"] == ("user_info",)


def test_fulfillment_order_number_must_not_be_empty() -> None:
    payload = fulfillment_payload()
    payload["fulfillment_info"]["fulfillment_order_no"] = ""
    with pytest.raises(ValidationError) as exc:
        fulfillment.FulfillmentCreateRequest.model_validate(payload)
    assert only_error(exc)["loc"] == ("fulfillment_info", "fulfillment_order_no")
