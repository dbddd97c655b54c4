"""Payloads reach logs only through the allow-list: the fields a method declares in clear (if they have the shape
they should), markers for everything else, unknown fields included."""

from __future__ import annotations

import json
from typing import Any

from taobao_bridge.models.fulfillment import LOG_FIELDS
from taobao_bridge.privacy import MAX_LIST_ITEMS, Shape, loggable, marker
from tests.conftest import FIXTURES

PERSONAL = ("123456678901", "张先生", "410881xxxxxxxxxxxxxx", "13911112222", "李先生", "xxxx街道", "杭州市", "330100")


def seed() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / "seed_003_request.json").read_text(encoding="utf-8"))
    return data


def test_seed_003_keeps_what_support_needs_and_nothing_personal() -> None:
    data = seed()
    logged = loggable(data, LOG_FIELDS)
    text = json.dumps(logged, ensure_ascii=False)
    for personal in (*PERSONAL, "test", '{\\"key\\"'):
        assert personal not in text, personal
    assert logged["trade_info"] == data["trade_info"]
    assert logged["item_info"] == data["item_info"]
    assert logged["shop_info"] == data["shop_info"]
    info = logged["fulfillment_info"]
    assert info["fulfillment_order_no"] == "1234567890123456789"
    assert info["time_option"] == data["fulfillment_info"]["time_option"]
    assert (info["quantity"], info["memo"]) == (1, "<4 chars>")
    assert info["address_info"] == [
        {
            "address_detail": "<14 chars>",
            "contact_name": "<3 chars>",
            "district_list": "<list, 1 items>",
            "contact_phone": "<11 chars>",
            "type": "DEFAULT",
        }
    ]
    assert logged["user_info"] == [
        {
            "credentials": {"credential_type": "idCard", "credential_no": "<20 chars>"},
            "mobile": "<12 chars>",
            "name": "<3 chars>",
            "ext_info": "<15 chars>",
        }
    ]
    assert data == seed(), "the input must not be changed"


def test_unknown_fields_are_never_in_clear_at_any_depth() -> None:
    data = seed()
    data["buyer_mobile"] = "13800138000"
    data["trade_info"]["id_card_no"] = "110101199003071234"
    data["item_info"]["receiver"] = {"phone": "13700137000", "address": "北京市朝阳区建国路88号"}
    data["user_info"][0]["email"] = "zhang.san@example.com"
    data["13600136000"] = "a key that is not a name"
    logged = loggable(data, LOG_FIELDS)
    text = json.dumps(logged, ensure_ascii=False)
    for personal in ("13800138000", "110101199003071234", "13700137000", "北京市", "zhang.san", "13600136000"):
        assert personal not in text
    assert logged["buyer_mobile"] == "<11 chars>"
    assert logged["trade_info"]["id_card_no"] == "<18 chars>"
    assert logged["item_info"]["receiver"] == "<object, 2 keys>"
    assert logged["<other fields>"] == 1


def test_allowed_fields_are_logged_only_in_their_shape() -> None:
    spec = {"n": Shape.NUMBER, "id": Shape.ID, "code": Shape.CODE, "t": Shape.TIME, "name": Shape.TEXT}
    fine = {"n": 100, "id": "1234567890123456789", "code": "TO_SHOP", "t": "2022-07-10 12:00", "name": "任意洗3件"}
    assert loggable(fine, spec) == fine
    odd = {
        "n": 13911112222,  # a phone number where a count should be
        "id": "张三 13911112222",
        "code": "13911112222",
        "t": "13911112222",
        "name": "x" * 101,
    }
    assert loggable(odd, spec) == {
        "n": "<number>",
        "id": "<14 chars>",
        "code": "<11 chars>",
        "t": "<11 chars>",
        "name": "<101 chars>",
    }
    # An object where a scalar belongs is masked whole, a scalar where an object belongs too.
    assert loggable({"id": {"phone": "13911112222"}, "o": "13911112222"}, {"id": Shape.ID, "o": {"x": Shape.ID}}) == {
        "id": "<object, 1 keys>",
        "o": "<11 chars>",
    }


def test_long_lists_are_cut_and_counted() -> None:
    users = [{"mobile": f"1390000{i:04d}"} for i in range(12)]
    logged = loggable({"user_info": users}, LOG_FIELDS)["user_info"]
    assert len(logged) == MAX_LIST_ITEMS + 1 and logged[-1] == f"<{12 - MAX_LIST_ITEMS} more>"


def test_markers_hold_type_and_size_only() -> None:
    assert [marker(v) for v in (None, True, 3, 2.5, "abc", {"a": 1}, [1, 2])] == [
        None,
        "<boolean>",
        "<number>",
        "<number>",
        "<3 chars>",
        "<object, 1 keys>",
        "<list, 2 items>",
    ]
