"""The wire text of each outbound API: the seeds' Java request examples and the protocol sign vector
(docs/PROTOCOL.md), through the same path production takes (intake's stored payload, then ``API.params``, which
the sync runner sends), plus ``to_top_params`` rules for every kind of top-level parameter."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taobao_bridge.clock import parse_platform_time as parse_datetime  # Java's StringUtils.parseDateTime
from taobao_bridge.kinds import KINDS, Kind
from taobao_bridge.models import external_order, risk, writeoff
from taobao_bridge.models.api import OutboundApi
from taobao_bridge.models.common import OutboundModel, PlatformDateTime
from taobao_bridge.signing import sign_top_request
from taobao_bridge.wire import to_top_params


def as_sent(kind: Kind, *records: OutboundModel) -> dict[str, str]:
    """The parameters production sends for these records: stored as intake stores them, sent by ``API.params``."""
    spec = KINDS[kind]
    return spec.api.params([spec.payload_of(record) for record in records])


def compact(value: Any) -> str:
    """An oracle independent of jsonutil: what the platform expects, byte for byte."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# --- seed 000: the Java example of tmall.car.local.service.order.writeoff.sync --------------------------------

WRITEOFF_JAVA_EXAMPLE: dict[str, Any] = {
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


def test_writeoff_java_example_on_the_wire() -> None:
    dto = writeoff.LocalOrderWriteOffDto(
        biz_type=2,
        service_sku_name="洗车",
        service_store_id="21212",
        apply_refund_num=0,
        verify_time=parse_datetime("2020-11-11 12:00:00"),
        tb_store_id=2343432,
        port_no="8888",
        refund_success_num=0,
        service_status=2,
        service_id=1111,
        verify_num=1,
        service_sku_id="12",
        category_id=1111,
        user_name="测试",
        sale_num=2,
        appoint_store_id=21212,
        maintain_id=23232,
        left_num=1,
        verify_batch_no="54fdfds343",
        tb_store_name="天猫养车",
        third_sub_goods_order="rwerewf43433",
        used_num=1,
        service_detail_id=111223,
        tb_biz_order_id=353454543,
    )
    params = as_sent(Kind.WRITEOFF, dto)

    assert list(params) == ["local_order_write_off_d_t_o_list"]
    text = params["local_order_write_off_d_t_o_list"]
    assert json.loads(text) == [WRITEOFF_JAVA_EXAMPLE]
    # Same keys in the seed's order, compact, Chinese kept as is (not \u escapes); zeros are values, not nulls.
    assert text == compact([WRITEOFF_JAVA_EXAMPLE])
    assert "洗车" in text and "\\u" not in text
    assert '"apply_refund_num":0' in text


def test_writeoff_verify_time_from_an_aware_datetime_is_platform_time() -> None:
    dto = writeoff.LocalOrderWriteOffDto(
        biz_type=3,
        verify_time=datetime(2020, 11, 11, 4, 0, 0, tzinfo=UTC),
        tb_store_id=1,
        service_status=3,
        service_id=1,
        service_detail_id=1,
        tb_biz_order_id=1,
    )
    text = as_sent(Kind.WRITEOFF, dto)["local_order_write_off_d_t_o_list"]
    assert json.loads(text)[0]["verify_time"] == "2020-11-11 12:00:00"


# --- docs/PROTOCOL.md: the writeoff sign vector -------------------------------------------------------------

VECTOR_SECRET = "0123456789abcdef0123456789abcdef"
VECTOR_LIST = (
    '[{"biz_type":2,"service_sku_name":"洗车","verify_time":"2020-11-11 12:00:00","tb_store_id":2343432,'
    '"service_status":2,"service_id":1111,"service_detail_id":111223,"tb_biz_order_id":353454543}]'
)
VECTOR_SIGN = "DF0A2A5B26844480ABAC349A7C401D346505F43E9203B8027428A33FF2E14228"


def test_protocol_writeoff_vector_signs_as_the_platform_expects() -> None:
    record = writeoff.LocalOrderWriteOffDto(
        biz_type=2,
        service_sku_name="洗车",
        verify_time=parse_datetime("2020-11-11 12:00:00"),
        tb_store_id=2343432,
        service_status=2,
        service_id=1111,
        service_detail_id=111223,
        tb_biz_order_id=353454543,
    )
    system = {
        "method": writeoff.METHOD,
        "app_key": "12345678",
        "timestamp": "2024-05-20 10:30:00",
        "format": "json",
        "v": "2.0",
        "sign_method": "hmac-sha256",
    }
    api = as_sent(Kind.WRITEOFF, record)
    assert api == {"local_order_write_off_d_t_o_list": VECTOR_LIST}
    assert sign_top_request({**system, **api}, VECTOR_SECRET, "hmac-sha256") == VECTOR_SIGN


# --- seed 001: the Java example of taobao.aliauto.risk.info.tmall.yc.service.sync ------------------------------

RISK_JAVA_EXAMPLE: dict[str, Any] = {
    "contents": [
        {
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
    ]
}


def test_risk_java_example_on_the_wire() -> None:
    dto = risk.RiskInfoSyncDTO(
        service_code="123,456,789",
        install_type=0,
        buyer_phone="13012345678",
        tc_order_id=3882527336184474047,
        tc_sub_order_id=3882527336184474048,
        car_license_num="浙AA12345",
        service_use_time=parse_datetime("2000-01-01 00:00:00"),
        buyer_name="王五",
        work_order_submit_time=parse_datetime("2000-01-01 00:00:00"),
    )
    params = as_sent(Kind.RISK, dto)

    assert list(params) == ["risk_info_sync_request"]
    text = params["risk_info_sync_request"]
    assert json.loads(text) == RISK_JAVA_EXAMPLE
    assert text == compact(RISK_JAVA_EXAMPLE)
    assert "浙AA12345" in text and "\\u" not in text
    # The 19-digit ids are JSON integers with every digit: never through a float.
    assert '"tc_order_id":3882527336184474047,' in text


def test_nineteen_digit_id_from_text_reaches_the_wire_exactly() -> None:
    dto = risk.RiskInfoSyncDTO(
        install_type=1,
        buyer_phone="1",
        tc_order_id=int("3882527336184474047"),
        tc_sub_order_id=9223372036854775807,
        buyer_name="x",
    )
    text = as_sent(Kind.RISK, dto)["risk_info_sync_request"]
    content = json.loads(text)["contents"][0]
    assert content["tc_order_id"] == 3882527336184474047
    assert content["tc_sub_order_id"] == 2**63 - 1
    assert "service_use_time" not in content  # optional and unset: omitted, never null
    assert "null" not in text


# --- seed 002: the Java example of the external order sync -----------------------------------------------------

EXTERNAL_ORDER_JAVA_EXAMPLE: dict[str, Any] = {
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


def test_external_order_java_example_on_the_wire() -> None:
    order = external_order.SyncSingleOrderReq(
        buyer_info=external_order.UserInfo(user_nick="张三", user_phone="13912340000", user_id=23432),
        hide=True,
        order_info=external_order.OrderInfo(
            biz_type=200,
            pay_time=parse_datetime("2022-05-01 12:30:50"),
            out_order_id="ABC123432",
            end_time=parse_datetime("2022-05-01 12:30:50"),
            gmt_create=parse_datetime("2022-05-01 12:30:50"),
            total_fee=10000,
        ),
        source="YC_STORE",
        item_info=external_order.ItemInfo(
            item_id=1000, item_title="一个商品", root_cat=123432, item_price=10000, category_id=123243, buy_amount=2
        ),
        seller_info=external_order.UserInfo(user_nick="李四", user_phone="13912341111", user_id=4567823),
        pay_order_info=external_order.PayOrderInfo(channel="alipay", pay_order_id="2024091167897678768"),
        idempotent_id="YC_STORE-45678765",
        ext_info="自定义json字符",
    )
    params = as_sent(Kind.EXTERNAL_ORDER, order)

    assert list(params) == ["sync_single_order_req"]
    text = params["sync_single_order_req"]
    assert json.loads(text) == EXTERNAL_ORDER_JAVA_EXAMPLE
    assert text == compact(EXTERNAL_ORDER_JAVA_EXAMPLE)
    assert '"hide":true' in text
    assert "张三" in text and "\\u" not in text


def test_external_order_minimal_request_sends_only_what_is_set() -> None:
    order = external_order.SyncSingleOrderReq(
        idempotent_id="YC_STORE-1", hide=False, buyer_info=external_order.UserInfo()
    )
    text = as_sent(Kind.EXTERNAL_ORDER, order)["sync_single_order_req"]
    # False is a value (kept); an empty object is kept as {}; unset fields are omitted.
    assert text == '{"buyer_info":{},"hide":false,"idempotent_id":"YC_STORE-1"}'


# --- top-level scalars -------------------------------------------------------------------------------------------


class Nested(OutboundModel):
    name: str | None = None
    count: int | None = None


class ScalarRequest(OutboundModel):
    """A request with every kind of top-level parameter the wire rules name."""

    text: str | None = None
    number: int | None = None
    flag: bool | None = None
    moment: PlatformDateTime | None = None
    nested: Nested | None = None
    numbers: list[int] | None = None


def test_top_level_scalars_as_text() -> None:
    params = to_top_params(
        ScalarRequest(
            text="浙A",
            number=3882527336184474047,
            flag=False,
            moment=datetime(2024, 5, 20, 2, 30, tzinfo=UTC),
            nested=Nested(name="n"),
            numbers=[1, 2],
        )
    )
    assert params == {
        "text": "浙A",
        "number": "3882527336184474047",
        "flag": "false",
        "moment": "2024-05-20 10:30:00",
        "nested": '{"name":"n"}',
        "numbers": "[1,2]",
    }
    assert to_top_params(ScalarRequest(flag=True)) == {"flag": "true"}


def test_none_and_blank_parameters_are_left_out() -> None:
    assert to_top_params(ScalarRequest(text="  ", number=None)) == {}
    assert to_top_params(ScalarRequest(text="")) == {}


def test_top_level_float_has_no_wire_form() -> None:
    class FloatRequest(OutboundModel):
        price: float

    with pytest.raises(TypeError, match="float"):
        to_top_params(FloatRequest(price=1.5))


# --- properties --------------------------------------------------------------------------------------------------

aware_datetimes = st.builds(
    lambda moment, minutes: moment.replace(tzinfo=timezone(timedelta(minutes=minutes))),
    st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30)),
    st.integers(min_value=-23 * 60, max_value=23 * 60),
)

scalar_requests = st.builds(
    ScalarRequest,
    text=st.none() | st.text(max_size=5),
    number=st.none() | st.integers(min_value=-(2**70), max_value=2**70),
    flag=st.none() | st.booleans(),
    moment=st.none() | aware_datetimes,
    nested=st.none() | st.builds(Nested, name=st.none() | st.text(max_size=3), count=st.none() | st.integers()),
    numbers=st.none() | st.lists(st.integers(), max_size=3),
)


@given(scalar_requests)
def test_to_top_params_emits_only_non_blank_text(request: ScalarRequest) -> None:
    params = to_top_params(request)
    assert all(isinstance(value, str) and value.strip() for value in params.values())
    for name in ScalarRequest.model_fields:
        value = getattr(request, name)
        expected_present = value is not None and not (isinstance(value, str) and not value.strip())
        assert (name in params) == expected_present


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


int64s = st.integers(min_value=0, max_value=2**63 - 1)
writeoffs = st.builds(
    writeoff.LocalOrderWriteOffDto,
    biz_type=st.sampled_from(sorted(writeoff.BIZ_TYPE)),
    service_sku_name=optional(st.text(max_size=4)),
    verify_time=aware_datetimes,
    tb_store_id=int64s,
    service_status=st.sampled_from(sorted(writeoff.SERVICE_STATUS)),
    service_id=int64s,
    used_num=optional(int64s),
    service_detail_id=int64s,
    tb_biz_order_id=int64s,
)


@given(st.lists(writeoffs, min_size=1, max_size=4))
def test_writeoff_wire_text_round_trips_without_nulls(dtos: list[writeoff.LocalOrderWriteOffDto]) -> None:
    request = writeoff.WriteoffSyncRequest(local_order_write_off_d_t_o_list=dtos)
    params = as_sent(Kind.WRITEOFF, *dtos)
    assert params == to_top_params(request), "production's path and the request model give one wire text"
    assert list(params) == ["local_order_write_off_d_t_o_list"]
    loaded = json.loads(params["local_order_write_off_d_t_o_list"])
    assert all(None not in item.values() for item in loaded)
    assert writeoff.WriteoffSyncRequest(local_order_write_off_d_t_o_list=loaded) == request


# --- what each API module declares ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("api", "method", "max_batch", "needs_session", "param"),
    [
        (writeoff.API, "tmall.car.local.service.order.writeoff.sync", 999, False, "local_order_write_off_d_t_o_list"),
        (risk.API, "taobao.aliauto.risk.info.tmall.yc.service.sync", 100, True, "risk_info_sync_request"),
        (external_order.API, "tmall.aliauto.trade.external.order.sycn", 1, False, "sync_single_order_req"),
    ],
)
def test_each_api_module_declares_its_wire_shape(
    api: OutboundApi, method: str, max_batch: int, needs_session: bool, param: str
) -> None:
    # Expected values from the seeds (000, 001, 002), written out here rather than read from the modules.
    assert (api.method, api.max_batch, api.needs_session, api.param) == (method, max_batch, needs_session, param)
    assert {spec.api for spec in KINDS.values()} >= {api}


@pytest.mark.parametrize(("kind", "key"), [(Kind.WRITEOFF, "local_order_write_off_d_t_o_list")])
def test_a_batch_over_the_api_limit_is_refused_before_sending(kind: Kind, key: str) -> None:
    spec = KINDS[kind]
    record = writeoff.LocalOrderWriteOffDto(
        biz_type=2,
        verify_time=parse_datetime("2020-11-11 12:00:00"),
        tb_store_id=1,
        service_status=2,
        service_id=1,
        service_detail_id=1,
        tb_biz_order_id=1,
    )
    payload = spec.payload_of(record)
    assert len(json.loads(spec.api.params([payload] * 999)[key])) == 999
    with pytest.raises(ValueError, match=key):
        spec.api.params([payload] * 1000)
