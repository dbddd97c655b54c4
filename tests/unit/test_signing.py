"""Signing: every vector of docs/PROTOCOL.md, plus properties of the canonical text."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taobao_bridge.jsonutil import dumps
from taobao_bridge.signing import (
    SignMethod,
    canonical_text,
    digest,
    qimen_sign,
    sign_top_request,
    top_sign_params,
    verify_qimen_signature,
)

OFFICIAL = {
    "method": "taobao.item.seller.get",
    "app_key": "12345678",
    "session": "test",
    "timestamp": "2016-01-01 12:00:00",
    "format": "json",
    "v": "2.0",
    "fields": "num_iid,title,nick,price,num",
    "num_iid": "11223344",
}


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("md5", "66987CB115214E59E6EC978214934FB8"),
        ("hmac", "D56D7858309C31B6251083A874D48273"),
        ("hmac-sha256", "04DB15AD0774D5CFCE2C837DE43E3FCEA9011ED74F3038FB6AB5F3C4CEA119E8"),
    ],
)
def test_official_document_vectors(method: str, expected: str) -> None:
    assert sign_top_request({**OFFICIAL, "sign_method": method}, "helloworld", method) == expected


def test_writeoff_vector_with_compact_json_and_chinese_kept() -> None:
    records = [
        {
            "biz_type": 2,
            "service_sku_name": "洗车",
            "verify_time": "2020-11-11 12:00:00",
            "tb_store_id": 2343432,
            "service_status": 2,
            "service_id": 1111,
            "service_detail_id": 111223,
            "tb_biz_order_id": 353454543,
        }
    ]
    params = {
        "method": "tmall.car.local.service.order.writeoff.sync",
        "app_key": "12345678",
        "timestamp": "2024-05-20 10:30:00",
        "format": "json",
        "v": "2.0",
        "sign_method": "hmac-sha256",
        "local_order_write_off_d_t_o_list": dumps(records),
    }
    assert sign_top_request(params, "0123456789abcdef0123456789abcdef", SignMethod.HMAC_SHA256) == (
        "DF0A2A5B26844480ABAC349A7C401D346505F43E9203B8027428A33FF2E14228"
    )


QIMEN_SECRET = "abcdefabcdefabcdefabcdefabcdef12"
QIMEN_QUERY = (
    "method=qimen.taobao.life.fulfillment.create&app_key=23456789&target_app_key=34567890&sign_method=md5"
    "&timestamp=2024-05-20+10%3A30%3A00&format=json&v=2.0&customerId=c1716172200000"
)
QIMEN_BODY = (
    '{"fulfillment_order_no":"FO202405200001","biz_order_id":"4012345678901234567","store_id":"ST001",'
    '"item_list":[{"sku_id":"SKU1","quantity":1}],"remark":"到店核销"}'
).encode()
QIMEN_SIGN = "2A7B1F0E3C9B71CE0527086BD94D184D"


def test_qimen_vector() -> None:
    assert qimen_sign(QIMEN_QUERY, QIMEN_BODY, QIMEN_SECRET) == QIMEN_SIGN
    verdict = verify_qimen_signature(f"{QIMEN_QUERY}&sign={QIMEN_SIGN}", QIMEN_BODY, QIMEN_SECRET)
    assert verdict == (True, QIMEN_SIGN, "")


def test_a_failed_verification_never_hands_out_the_expected_sign() -> None:
    # Whoever logs a verdict must not be able to log an oracle: the correct sign is nowhere in it.
    verdict = verify_qimen_signature(f"{QIMEN_QUERY}&sign=0123", QIMEN_BODY, QIMEN_SECRET)
    assert not verdict.ok
    assert QIMEN_SIGN not in repr(verdict) and QIMEN_SIGN.lower() not in repr(verdict).lower()
    assert verdict == (False, "0123", "sign missing or wrong")


def test_qimen_lower_case_remote_sign_is_accepted() -> None:
    assert verify_qimen_signature(f"{QIMEN_QUERY}&sign={QIMEN_SIGN.lower()}", QIMEN_BODY, QIMEN_SECRET)[0]


def test_qimen_pretty_printed_body_is_rejected() -> None:
    import json

    pretty = json.dumps(json.loads(QIMEN_BODY), ensure_ascii=False, indent=2).encode()
    assert not verify_qimen_signature(f"{QIMEN_QUERY}&sign={QIMEN_SIGN}", pretty, QIMEN_SECRET)[0]


def test_qimen_sign_in_any_position_and_missing_sign() -> None:
    assert verify_qimen_signature(f"sign={QIMEN_SIGN}&{QIMEN_QUERY}", QIMEN_BODY, QIMEN_SECRET)[0]
    assert not verify_qimen_signature(QIMEN_QUERY, QIMEN_BODY, QIMEN_SECRET)[0]
    assert not verify_qimen_signature(f"{QIMEN_QUERY}&sign=", QIMEN_BODY, QIMEN_SECRET)[0]


def test_qimen_sign_method_is_part_of_the_text_but_md5_is_always_accepted() -> None:
    # The official verifier never reads sign_method: an MD5 sign verifies whatever it says, even an unknown method.
    for method in ("sha1", "hmac", "hmac-sha256"):
        query = QIMEN_QUERY.replace("sign_method=md5", f"sign_method={method}")
        assert not verify_qimen_signature(f"{query}&sign={QIMEN_SIGN}", QIMEN_BODY, QIMEN_SECRET).ok
        md5 = digest(canonical_qimen_text(query) + QIMEN_BODY, QIMEN_SECRET, SignMethod.MD5)
        assert verify_qimen_signature(f"{query}&sign={md5}", QIMEN_BODY, QIMEN_SECRET).ok


def test_qimen_hmac_methods_use_the_outbound_digest() -> None:
    for method in ("hmac", "hmac-sha256"):
        query = QIMEN_QUERY.replace("sign_method=md5", f"sign_method={method}")
        sign = qimen_sign(query, QIMEN_BODY, QIMEN_SECRET)
        assert sign != QIMEN_SIGN
        assert sign == digest(canonical_qimen_text(query) + QIMEN_BODY, QIMEN_SECRET, method)
        assert verify_qimen_signature(f"{query}&sign={sign}", QIMEN_BODY, QIMEN_SECRET).ok
        # Named HMAC only: under sign_method=md5 an HMAC sign is just wrong.
        other = digest(canonical_qimen_text(QIMEN_QUERY) + QIMEN_BODY, QIMEN_SECRET, method)
        assert not verify_qimen_signature(f"{QIMEN_QUERY}&sign={other}", QIMEN_BODY, QIMEN_SECRET).ok


def canonical_qimen_text(query: str) -> bytes:
    """The parameter text for a plain query of these tests: decoded pairs in key order, key+value."""
    from urllib.parse import parse_qsl

    return canonical_text(parse_qsl(query, keep_blank_values=True)).encode()


def test_qimen_headers_named_in_top_sign_list_are_signed() -> None:
    headers = {"Top-Sign-List": "x-a", "X-A": "1"}
    sign = qimen_sign(QIMEN_QUERY, QIMEN_BODY, QIMEN_SECRET, headers)
    assert sign != QIMEN_SIGN
    assert verify_qimen_signature(f"{QIMEN_QUERY}&sign={sign}", QIMEN_BODY, QIMEN_SECRET, headers)[0]
    assert not verify_qimen_signature(f"{QIMEN_QUERY}&sign={sign}", QIMEN_BODY, QIMEN_SECRET, {**headers, "X-A": "2"})[
        0
    ]


# ---------------------------------------------------------------------------------------- properties
keys = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="&=+%#"), min_size=1)
values = st.text(min_size=0, max_size=20)
# sign and sign_method have their own tests; generated parameters stay clear of them.
plain_keys = keys.filter(lambda k: k not in ("sign", "sign_method"))
params_strategy = st.dictionaries(plain_keys, values, max_size=8)


@given(params_strategy, st.sampled_from(list(SignMethod)), st.randoms())
def test_outbound_sign_ignores_parameter_order(params: dict[str, str], method: SignMethod, rnd) -> None:  # type: ignore[no-untyped-def]
    items = list(params.items())
    rnd.shuffle(items)
    assert sign_top_request(dict(items), "s3cret", method) == sign_top_request(params, "s3cret", method)


@given(params_strategy, st.text(min_size=1, max_size=40))
def test_outbound_sign_excludes_sign(params: dict[str, str], sign: str) -> None:
    assert sign_top_request({**params, "sign": sign}, "k", "md5") == sign_top_request(params, "k", "md5")


@given(params_strategy, plain_keys, st.sampled_from(["", " ", "\t", None]))
def test_outbound_sign_drops_empty_values(params: dict[str, str], key: str, empty: str | None) -> None:
    params.pop(key, None)
    assert sign_top_request({**params, key: empty}, "k", "hmac") == sign_top_request(params, "k", "hmac")
    assert key not in top_sign_params({**params, key: empty})


@given(params_strategy, plain_keys)
def test_inbound_verification_keeps_empty_values(params: dict[str, str], key: str) -> None:
    params.pop(key, None)
    without = urlencode(params)
    with_empty = urlencode({**params, key: ""})
    body = b"{}"
    assert qimen_sign(without, body, "k") != qimen_sign(with_empty, body, "k")


@given(params_strategy, st.randoms())
def test_inbound_sign_ignores_parameter_order(params: dict[str, str], rnd) -> None:  # type: ignore[no-untyped-def]
    items = list(params.items())
    rnd.shuffle(items)
    assert qimen_sign(urlencode(items), b"x", "k") == qimen_sign(urlencode(params), b"x", "k")


def test_canonical_text_is_code_point_order() -> None:
    assert canonical_text([("b", "2"), ("B", "1"), ("a", "3")]) == "B1a3b2"
