"""The records the benchmark sends: valid writeoffs, risk records and external orders, numbered and distinct."""

from __future__ import annotations

from typing import Any

from taobao_bridge.kinds import Kind

__all__ = ["make_records"]


def _writeoff(n: int, run: int) -> dict[str, Any]:
    return {
        "biz_type": 2,
        "service_sku_name": "洗车",
        "verify_time": "2026-11-23 10:00:00",
        "tb_store_id": 2343432,
        "service_status": 3,
        "service_id": 1111,
        "service_detail_id": 300000 + n,
        "tb_biz_order_id": 7_000_000_000_000_000_000 + run * 1_000_000 + n,
        "verify_batch_no": f"BENCH{run}-{n}",
    }


def _risk(n: int, run: int) -> dict[str, Any]:
    return {
        "install_type": 1,
        "buyer_phone": "13012345678",
        "tc_order_id": 3882527336184474047,
        "tc_sub_order_id": 3_882_527_336_000_000_000 + run * 1_000_000 + n,
        "service_use_time": "2026-11-23 10:00:00",
        "buyer_name": "王五",
    }


def _external_order(n: int, run: int) -> dict[str, Any]:
    return {
        "buyer_info": {"user_nick": "张三", "user_phone": "13912340000", "user_id": 23432},
        "order_info": {"biz_type": 200, "out_order_id": f"BENCH{run}-{n}", "total_fee": 10000},
        "idempotent_id": f"BENCH-{run}-{n:07d}",
    }


_MAKE = {Kind.WRITEOFF: _writeoff, Kind.RISK: _risk, Kind.EXTERNAL_ORDER: _external_order}


def make_records(kind: Kind, count: int, run: int = 0) -> list[dict[str, Any]]:
    """``count`` distinct valid records of ``kind``; another ``run`` number gives other keys."""
    return [_MAKE[kind](n, run) for n in range(count)]
