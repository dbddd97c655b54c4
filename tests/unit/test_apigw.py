"""The local HTTP API adapter builds and reads the same shapes API Gateway does; sample events stay signed."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path

import pytest

from bridge_local import events
from bridge_local.apigw import http_api_event, lambda_context, match_route, response_to_http
from bridge_local.template import Route
from taobao_bridge.signing import verify_qimen_signature

SHARED_SEED_003 = sorted((Path(__file__).resolve().parents[3] / "shared" / "seeds").glob("003_*.txt"))


def _event(**overrides: object) -> dict:
    arguments: dict = {
        "method": "POST",
        "path": "/qimen",
        "raw_query": "",
        "headers": {},
        "body": b"",
        "route_key": "POST /qimen",
    }
    arguments.update(overrides)
    return http_api_event(**arguments)


# ----------------------------------------------------------------------------------------------------- event
def test_event_has_the_payload_2_0_shape() -> None:
    moment = datetime(2026, 3, 5, 7, 8, 9, 123000, tzinfo=UTC)
    event = _event(
        raw_query="a=1",
        headers={"Host": "abc123.execute-api.ap-southeast-1.amazonaws.com", "User-Agent": "curl/8"},
        body=b"{}",
        request_id="req-1",
        now=moment,
        source_ip="198.51.100.7",
    )
    assert list(event) == [
        "version",
        "routeKey",
        "rawPath",
        "rawQueryString",
        "headers",
        "queryStringParameters",
        "requestContext",
        "body",
        "isBase64Encoded",
    ]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /qimen"
    assert event["rawPath"] == "/qimen"
    assert event["requestContext"] == {
        "accountId": "123456789012",
        "apiId": "local",
        "domainName": "abc123.execute-api.ap-southeast-1.amazonaws.com",
        "domainPrefix": "abc123",
        "http": {
            "method": "POST",
            "path": "/qimen",
            "protocol": "HTTP/1.1",
            "sourceIp": "198.51.100.7",
            "userAgent": "curl/8",
        },
        "requestId": "req-1",
        "routeKey": "POST /qimen",
        "stage": "$default",
        "time": "05/Mar/2026:07:08:09 +0000",
        "timeEpoch": 1772694489123,
    }


def test_raw_query_is_kept_exactly_and_parameters_are_decoded() -> None:
    raw = "timestamp=2026-11-23+10%3A00%3A00&b=%E6%B4%97&b=2&empty=&sign=AB%2B"
    event = _event(raw_query=raw)
    assert event["rawQueryString"] == raw
    assert event["queryStringParameters"] == {
        "timestamp": "2026-11-23 10:00:00",
        "b": "洗,2",
        "empty": "",
        "sign": "AB+",
    }


def test_empty_parts_are_left_out() -> None:
    event = _event(method="get")
    assert "queryStringParameters" not in event
    assert "pathParameters" not in event
    assert "cookies" not in event
    assert "body" not in event
    assert event["isBase64Encoded"] is False
    assert event["requestContext"]["http"]["method"] == "GET"
    assert event["requestContext"]["domainName"] == "localhost"


def test_headers_are_lower_cased_and_repeats_joined() -> None:
    message = Message()
    message["Content-Type"] = "application/json"
    message["X-Forwarded-For"] = "203.0.113.1"
    message["x-forwarded-for"] = "203.0.113.2"
    event = _event(headers=message)
    assert event["headers"] == {"content-type": "application/json", "x-forwarded-for": "203.0.113.1,203.0.113.2"}

    pairs = [("Accept", "a/b"), ("ACCEPT", "c/d")]
    assert _event(headers=pairs)["headers"] == {"accept": "a/b,c/d"}


def test_cookies_move_out_of_the_headers() -> None:
    event = _event(headers=[("Cookie", "a=1; b=2"), ("cookie", "c=3"), ("Accept", "*/*")])
    assert event["cookies"] == ["a=1", "b=2", "c=3"]
    assert event["headers"] == {"accept": "*/*"}


def test_path_parameters_are_passed_through() -> None:
    event = _event(path="/records/writeoff", route_key="POST /records/{flow}", path_parameters={"flow": "writeoff"})
    assert event["pathParameters"] == {"flow": "writeoff"}


@pytest.mark.parametrize(
    ("content_type", "body", "is_text"),
    [
        ("application/json;charset=utf-8", '{"名":1}'.encode(), True),
        ("application/problem+json", b"{}", True),
        ("text/plain; charset=utf-8", "到店".encode(), True),
        ("application/x-www-form-urlencoded", b"a=1&b=2", True),
        (None, b"plain", True),
        (None, b"\xff\xfe\x00", False),
        ("application/octet-stream", b"abc", False),
        ("image/png", b"\x89PNG", False),
        ("application/json", b"\xc3\x28", False),
    ],
)
def test_body_is_text_or_base64(content_type: str | None, body: bytes, is_text: bool) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    event = _event(headers=headers, body=body)
    assert event["isBase64Encoded"] is (not is_text)
    if is_text:
        assert event["body"] == body.decode("utf-8")
    else:
        assert base64.b64decode(event["body"]) == body


# --------------------------------------------------------------------------------------------------- context
def test_lambda_context_counts_down() -> None:
    context = lambda_context("QimenCallbackFunction", timeout_s=6, memory_mb=512)
    assert context.function_name == "QimenCallbackFunction"
    assert context.memory_limit_in_mb == 512
    assert context.invoked_function_arn.endswith(":function:QimenCallbackFunction")
    assert context.aws_request_id != lambda_context("x", 1).aws_request_id
    first = context.get_remaining_time_in_millis()
    assert 5000 < first <= 6000
    time.sleep(0.02)
    assert context.get_remaining_time_in_millis() < first
    assert lambda_context("x", timeout_s=0).get_remaining_time_in_millis() == 0


# ---------------------------------------------------------------------------------------------------- routes
def _route(method: str, path: str) -> Route:
    return Route(method=method, path=path, function_id=f"{method} {path}", code_uri="f/", handler="app.h", auth="NONE")


ROUTES = [
    _route("POST", "/qimen"),
    _route("POST", "/records/{flow}"),
    _route("GET", "/records/{flow}/{record_id}"),
    _route("GET", "/records/writeoff/{record_id}"),
    _route("ANY", "/files/{proxy+}"),
    _route("GET", "/files/{proxy+}"),
]


def test_match_route_exact_path() -> None:
    matched = match_route(ROUTES, "post", "/qimen")
    assert matched is not None
    assert matched[0].path == "/qimen"
    assert matched[1] == {}


def test_match_route_with_parameters() -> None:
    matched = match_route(ROUTES, "POST", "/records/risk")
    assert matched is not None
    assert (matched[0].path, matched[1]) == ("/records/{flow}", {"flow": "risk"})

    matched = match_route(ROUTES, "GET", "/records/risk/r%201")
    assert matched is not None
    assert matched[1] == {"flow": "risk", "record_id": "r 1"}


def test_match_route_prefers_literal_segments_and_named_methods() -> None:
    matched = match_route(ROUTES, "GET", "/records/writeoff/42")
    assert matched is not None
    assert (matched[0].path, matched[1]) == ("/records/writeoff/{record_id}", {"record_id": "42"})

    matched = match_route(ROUTES, "GET", "/files/a/b.txt")
    assert matched is not None
    assert (matched[0].method, matched[1]) == ("GET", {"proxy": "a/b.txt"})
    matched = match_route(ROUTES, "DELETE", "/files/a")
    assert matched is not None
    assert matched[0].method == "ANY"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/qimen"), ("POST", "/qimen/x"), ("POST", "/records"), ("GET", "/files"), ("GET", "/files/")],
)
def test_match_route_misses(method: str, path: str) -> None:
    assert match_route(ROUTES, method, path) is None


def test_default_route_catches_the_rest() -> None:
    routes = [*ROUTES, _route("ANY", "$default")]
    matched = match_route(routes, "GET", "/nowhere")
    assert matched is not None
    assert matched[0].path == "$default"
    assert match_route(routes, "POST", "/qimen")[0].path == "/qimen"  # type: ignore[index]


# -------------------------------------------------------------------------------------------------- response
def test_proxy_response_is_read_like_api_gateway() -> None:
    status, headers, body = response_to_http(
        {
            "statusCode": 200,
            "headers": {"Content-Type": "application/json;charset=utf-8"},
            "multiValueHeaders": {"X-Trace": ["a", "b"]},
            "cookies": ["s=1; HttpOnly", "t=2"],
            "body": '{"success":"true","biz_result":"success"}',
            "isBase64Encoded": False,
        }
    )
    assert status == 200
    assert headers == {
        "content-type": "application/json;charset=utf-8",
        "x-trace": "a,b",
        "set-cookie": "s=1; HttpOnly\nt=2",
    }
    assert body == b'{"success":"true","biz_result":"success"}'


def test_base64_proxy_response_is_decoded() -> None:
    assert response_to_http(
        {"statusCode": 201, "body": base64.b64encode(b"\x00\x01").decode(), "isBase64Encoded": True}
    ) == (
        201,
        {},
        b"\x00\x01",
    )
    assert response_to_http({"statusCode": 204}) == (204, {}, b"")


@pytest.mark.parametrize(
    "result",
    [
        {"success": "false", "biz_error_code": "sign-check-failure"},
        ["a", 1],
        "洗车",
        None,
    ],
)
def test_bare_result_becomes_json(result: object) -> None:
    status, headers, body = response_to_http(result)
    assert status == 200
    assert headers == {"content-type": "application/json"}
    assert json.loads(body) == result
    if result == "洗车":
        assert body == '"洗车"'.encode()


@pytest.mark.parametrize(
    "result",
    [{"statusCode": "abc"}, {"statusCode": 200, "body": {"not": "a string"}}, {"statusCode": 1000}],
)
def test_malformed_proxy_response_is_a_500(result: dict) -> None:
    assert response_to_http(result)[0] == 500


# ---------------------------------------------------------------------------------------------------- events
EVENTS_DIR = events.EVENTS_DIR


def _load(name: str) -> dict:
    return json.loads((EVENTS_DIR / name).read_text(encoding="utf-8"))


def test_committed_qimen_event_is_signed_and_carries_the_seed_body(seed_003_body: bytes) -> None:
    event = _load("qimen_fulfillment_create.json")
    assert event["isBase64Encoded"] is False
    ok, remote, local = verify_qimen_signature(
        event["rawQueryString"], event["body"].encode(), "local-qimen-app-secret"
    )
    assert ok, (remote, local)
    assert event["body"].encode("utf-8") == seed_003_body == events.QIMEN_FULFILLMENT_CREATE_EXAMPLE
    assert event["rawQueryString"].startswith(
        "method=qimen.taobao.life.fulfillment.create&app_key=23456789&target_app_key=34567890&sign_method=md5"
        "&timestamp=2026-11-23+10%3A00%3A00&format=json&v=2.0&customerId=c1716172200000&sign="
    )
    assert event["routeKey"] == "POST /qimen"


@pytest.mark.skipif(not SHARED_SEED_003, reason="the shared seed documents are not next to this checkout")
def test_sample_body_is_the_line_after_the_request_example_heading() -> None:
    lines = SHARED_SEED_003[0].read_text(encoding="utf-8").splitlines()
    heading = next(index for index, line in enumerate(lines) if line.strip() == "请求示例")
    example = next(line for line in lines[heading + 1 :] if line.strip()).strip()
    assert events.QIMEN_FULFILLMENT_CREATE_EXAMPLE == example.encode("utf-8")


def test_committed_negative_events_fail_where_they_should() -> None:
    bad = _load("qimen_bad_signature.json")
    good = _load("qimen_fulfillment_create.json")
    assert bad["body"] == good["body"]
    assert bad["rawQueryString"] != good["rawQueryString"]
    assert bad["rawQueryString"][:-1] == good["rawQueryString"][:-1]
    assert not verify_qimen_signature(bad["rawQueryString"], bad["body"].encode(), "local-qimen-app-secret")[0]

    malformed = _load("qimen_malformed_json.json")
    body = malformed["body"].encode()
    assert verify_qimen_signature(malformed["rawQueryString"], body, "local-qimen-app-secret")[0]
    assert good["body"].encode().startswith(body)
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)


def test_regenerating_the_events_gives_identical_files(tmp_path: Path) -> None:
    assert events.main(["--out", str(tmp_path)]) == 0
    generated = sorted(path.name for path in tmp_path.iterdir())
    committed = sorted(path.name for path in EVENTS_DIR.glob("*.json"))
    assert generated == committed
    for name in generated:
        assert (tmp_path / name).read_bytes() == (EVENTS_DIR / name).read_bytes(), (
            f"events/{name} drifted: run python -m bridge_local.events"
        )


def test_fresh_events_are_signed_now_and_kept_out_of_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit):
        events.main(["--timestamp", "now"])
    monkeypatch.setenv("STAGE_QIMEN_SECRET", "stage-secret")
    assert events.main(["--timestamp", "now", "--secret-env", "STAGE_QIMEN_SECRET", "--out", str(tmp_path)]) == 0
    event = json.loads((tmp_path / "qimen_fulfillment_create.json").read_text(encoding="utf-8"))
    assert event["queryStringParameters"]["timestamp"] != events.FIXED_TIMESTAMP
    assert verify_qimen_signature(event["rawQueryString"], event["body"].encode(), "stage-secret")[0]
