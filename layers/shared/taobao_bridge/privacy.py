"""Personal data out of logs: phone numbers, names, ID numbers and addresses are erased before logging.

Not Powertools DataMasking: its ``erase`` parses each JSONPath with jsonpath_ng, which rebuilds its parser
tables on every parse (measured: ~23 ms per field, ~300 ms per Qimen call on this machine), too slow for a
callback that must answer within seconds. The rule here is simpler anyway: erase these keys wherever they are.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MASK", "PERSONAL_FIELDS", "mask_personal_data"]

MASK = "*****"

# Field names, wherever they appear, across the four seed APIs. Erased whole: a partial mask that keeps
# some digits leaks on inputs of an unexpected length.
PERSONAL_FIELDS = frozenset(
    {
        "mobile",
        "name",
        "credential_no",
        "contact_phone",
        "contact_name",
        "address_detail",
        "ext_info",
        "memo",
        "buyer_phone",
        "buyer_name",
        "car_license_num",
        "user_phone",
        "user_nick",
        "user_name",
    }
)


def mask_personal_data(data: Any) -> Any:
    """A copy of ``data`` (dicts and lists) with every personal field's value replaced by ``*****``."""
    if isinstance(data, dict):
        return {k: (MASK if k in PERSONAL_FIELDS and v is not None else mask_personal_data(v)) for k, v in data.items()}
    if isinstance(data, list):
        return [mask_personal_data(v) for v in data]
    return data
