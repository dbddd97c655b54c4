"""The Qimen callback reads the HTTP API event itself (no Powertools router): the answers keep the shape and the
routing Powertools' HTTP API resolver gave them, and anything but POST /qimen is a counted SYSTEM_ERROR."""

from __future__ import annotations

import copy
import json
from types import ModuleType

import pytest

from bridge_local.apigw import lambda_context
from tests.unit.test_qimen_callback_metrics import EVENTS, handler_module, invoke, store  # noqa: F401 - fixtures
from tests.unit.test_qimen_outcomes import MemoryStore

SIGN_CHECK_FAILURE = '{"biz_error_msg":"Illegal request","success":"false","biz_error_code":"sign-check-failure"}'
UNEXPECTED = ["QimenUnexpectedError", "QimenSystemError", "QimenCallRejected"]


def bad_signature(method: str = "POST", path: str = "/qimen", stage: str = "$default") -> dict:
    event = json.loads((EVENTS / "qimen_bad_signature.json").read_text(encoding="utf-8"))
    event = copy.deepcopy(event)
    event["rawPath"] = path
    event["requestContext"]["http"]["method"] = method
    event["requestContext"]["stage"] = stage
    return event


def test_the_answer_has_the_resolvers_shape(
    handler_module: ModuleType,  # noqa: F811
    store: MemoryStore,  # noqa: F811
) -> None:
    handler_module.metrics.clear_metrics()
    result = handler_module.lambda_handler(bad_signature(), lambda_context("QimenCallbackFunction", 6))
    assert result == {
        "statusCode": 200,
        "body": SIGN_CHECK_FAILURE,
        "isBase64Encoded": False,
        "headers": {"Content-Type": "application/json;charset=utf-8"},
        "cookies": [],
    }


@pytest.mark.parametrize(
    ("method", "path", "stage"),
    [("post", "/qimen", "$default"), ("POST", "/prod/qimen", "prod")],
)
def test_post_qimen_is_served(
    handler_module: ModuleType,  # noqa: F811
    store: MemoryStore,  # noqa: F811
    capsys: pytest.CaptureFixture,
    method: str,
    path: str,
    stage: str,
) -> None:
    answer, names = invoke(handler_module, capsys, bad_signature(method, path, stage))
    assert answer["biz_error_code"] == "sign-check-failure" and names == ["QimenSignatureRejected"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/qimen"), ("HEAD", "/qimen"), ("OPTIONS", "/qimen"), ("POST", "/qimen/"), ("POST", "/other")],
)
def test_anything_else_is_a_counted_system_error(
    handler_module: ModuleType,  # noqa: F811
    store: MemoryStore,  # noqa: F811
    capsys: pytest.CaptureFixture,
    method: str,
    path: str,
) -> None:
    answer, names = invoke(handler_module, capsys, bad_signature(method, path))
    assert answer == {
        "success": False,
        "biz_result": "fail",
        "biz_error_code": "SYSTEM_ERROR",
        "biz_error_msg": "internal error; retrying is safe",
    }
    assert names == UNEXPECTED
