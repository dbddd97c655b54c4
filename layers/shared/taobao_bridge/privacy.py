"""Personal data out of logs: phone numbers, names, ID numbers and addresses are erased before logging."""

from __future__ import annotations

import warnings
from typing import Any

from aws_lambda_powertools.utilities.data_masking import DataMasking

__all__ = ["PERSONAL_FIELDS", "mask_personal_data"]

# Field names, wherever they appear, across the four seed APIs. Erased whole: a partial mask that keeps
# some digits leaks on inputs of an unexpected length.
PERSONAL_FIELDS = (
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
)

# Absent fields are the normal case; Powertools warns about each one. A module-level filter rather than
# warnings.catch_warnings(), which is not thread-safe (the local stack serves requests concurrently).
warnings.filterwarnings(
    "ignore",
    message=r"(No matches found for path|Field or expression)",
    category=UserWarning,
    module=r"aws_lambda_powertools\.utilities\.data_masking",
)
_masker = DataMasking(raise_on_missing_field=False)
_PATHS = [f"$..{name}" for name in PERSONAL_FIELDS]


def mask_personal_data(data: Any) -> Any:
    """A copy of ``data`` (dicts and lists) with every personal field replaced by ``*****``."""
    return _masker.erase(data, fields=_PATHS)
