from __future__ import annotations

import json

from taobao_bridge.privacy import MASK, PERSONAL_FIELDS, mask_personal_data
from tests.conftest import FIXTURES


def test_seed_003_personal_fields_are_erased_and_the_rest_kept() -> None:
    data = json.loads((FIXTURES / "seed_003_request.json").read_text(encoding="utf-8"))
    masked = mask_personal_data(data)
    text = json.dumps(masked, ensure_ascii=False)
    for personal in ("123456678901", "张先生", "410881xxxxxxxxxxxxxx", "13911112222", "李先生", "xxxx街道"):
        assert personal not in text
    assert masked["user_info"][0]["mobile"] == MASK
    assert masked["fulfillment_info"]["fulfillment_order_no"] == "1234567890123456789"
    assert masked["fulfillment_info"]["address_info"][0]["district_list"][0]["district_name"] == "杭州市"
    assert data["user_info"][0]["mobile"] == "123456678901", "the input must not be changed"


def test_every_personal_field_at_any_depth() -> None:
    nested = {"a": [{"b": {name: "x" for name in PERSONAL_FIELDS}}], "keep": 1, "name": None}
    masked = mask_personal_data(nested)
    assert set(masked["a"][0]["b"].values()) == {MASK}
    assert masked["keep"] == 1 and masked["name"] is None
