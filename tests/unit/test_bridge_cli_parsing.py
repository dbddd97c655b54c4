"""``taobao-bridge`` without a stack: the argument tree, what it prints, one error line per failure, and SigV4
signatures checked against AWS's published test vector and an independent verifier of the request httpx sends."""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

import botocore.auth
import httpx
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from bridge_cli import cli
from bridge_cli.api import api_error, parse_retry_after
from bridge_cli.cmd_ops import render_status
from bridge_cli.cmd_orders import event_line, render_orders
from bridge_cli.cmd_records import render_records
from bridge_cli.cmd_submit import Submission
from bridge_cli.output import age, key_values, table
from bridge_cli.sigv4 import SigV4, canonical_query, sign_request

CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens there


def parse(*argv: str) -> argparse.Namespace:
    args = cli.build_parser().parse_args(list(argv))
    cli.check(args)
    return args


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------------------------------------ parsing
@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("writeoffs", "writeoffs"),
        ("writeoff", "writeoffs"),
        ("risk-records", "risk-records"),
        ("risk", "risk-records"),
        ("risk_record", "risk-records"),
        ("external-orders", "external-orders"),
        ("external_order", "external-orders"),
        ("External-Order", "external-orders"),
    ],
)
def test_a_kind_is_its_path_or_its_name(text: str, path: str) -> None:
    assert cli.kind_spec(text).path == path


def test_scopes_and_flow_kinds_are_named_as_the_api_names_them() -> None:
    assert cli.scope_name("app") == "app"
    assert cli.scope_name("external-orders") == "external_order"
    assert parse("flows", "pause", "risk-records", "--reason", "r").kind == "risk"
    with pytest.raises(argparse.ArgumentTypeError, match="unknown scope 'everything'"):
        cli.scope_name("everything")


def test_global_options_go_before_or_after_the_command() -> None:
    before = parse("--json", "--url", "http://h:1", "records", "list", "writeoffs", "--state", "dead")
    after = parse("records", "list", "writeoffs", "--state", "dead", "--json", "--url", "http://h:1")
    for args in (before, after):
        assert args.json is True and args.url == "http://h:1" and args.kind.path == "writeoffs"
    plain = parse("status")
    assert plain.json is False and plain.url is None and plain.timeout == 30.0


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["records", "list", "parcels", "--state", "dead"], "unknown kind 'parcels'"),
        (["records", "list", "writeoffs"], "--state"),
        (["records", "list", "writeoffs", "--state", "synced"], "invalid choice: 'synced'"),
        (["records", "list", "writeoffs", "--state", "dead", "--limit", "1001"], "must be 1..1000"),
        (["records", "retry", "writeoffs"], "give record IDs or --state"),
        (["records", "retry", "writeoffs", "a", "--state", "dead"], "give record IDs or --state"),
        (["records", "retry", "writeoffs", "a", "--dry-run"], "--dry-run and --limit go with --state"),
        (["orders", "list", "--all", "--follow"], "not allowed with argument"),
        (["bans", "lift", "everything"], "unknown scope"),
        (["flows", "pause", "writeoff"], "--reason"),
        (["records"], "ACTION"),
        ([], "COMMAND"),
        (["status", "--url", "ftp://example.com"], "--url must be an http(s) base URL"),
        (["status", "--url", CLOSED, "--stack", "s"], "give one"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(argv: list[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(argv, capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and words in err and err.count("\n") == 1, err


def test_stack_down_is_one_line_naming_make_run(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["status", "--url", CLOSED], capsys)
    assert code == 1 and out == ""
    assert err == f"error: the local stack is not running at {CLOSED}: start it with `make run`\n"


def test_a_stack_without_a_region_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    code, _, err = run(["status", "--stack", "taobao-bridge-dev"], capsys)
    assert code == 2 and err.startswith("error: --stack needs a region") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["submit", "writeoffs", "no-such-file.jsonl"], "no-such-file.jsonl"),
        (["submit", "writeoffs", "records.txt"], "expected a .jsonl or .csv file"),
        (["send-qimen", "no-such-file.json"], "cannot read no-such-file.json"),
    ],
)
def test_unreadable_files_are_one_line_before_any_request(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "records.txt").write_text("{}", encoding="utf-8")
    code, _, err = run([*argv, "--url", CLOSED], capsys)
    assert code == 1 and err.startswith("error: ") and words in err and err.count("\n") == 1, err


def test_bad_json_on_stdin_is_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO('{"a": 1}\n{bad\n'))
    code, _, err = run(["submit", "writeoffs", "-", "--url", CLOSED], capsys)
    assert code == 1 and err.startswith("error: stdin:2: not valid JSON") and err.count("\n") == 1


# ------------------------------------------------------------------------------------------------------ output
def test_a_table_aligns_its_columns_and_marks_missing_values() -> None:
    rows = [{"a": "x", "b": None}, {"a": "longer", "b": True}]
    text = table(rows, [("a", lambda r: r["a"]), ("b", lambda r: r["b"])])
    assert text.splitlines() == ["a       b", "x       -", "longer  yes"]
    assert table([], [("a", lambda r: r["a"])]) == "(none)"


def test_key_values_align_and_ages_read_well() -> None:
    assert key_values([("id", "w1"), ("state", "dead")]) == "id:    w1\nstate: dead"
    assert [age(None), age(42), age(300), age(9000), age(400000)] == ["-", "42 s", "5 min", "2.5 h", "4.6 d"]


STATUS = {
    "kinds": {
        "risk": {"due": 0, "due_now": 0, "dead": 0, "unconfirmed": 0, "synced": 5, "oldest_due_age_s": None,
                 "session_pause": {"reason": "27 invalid-sessionkey", "since": "2026-11-23T02:00:00Z"},
                 "operator_pause": None, "ban": None, "lease": None},
        "writeoff": {"due": 3, "due_now": 1, "dead": 2, "unconfirmed": 0, "synced": 25, "oldest_due_age_s": 90.4,
                     "session_pause": None, "operator_pause": {"reason": "store migration"}, "ban": None,
                     "lease": None},
    },
    "app_ban": {"until": "2026-11-24T16:00:00Z", "reason": "accesscontrol.limited-by-app-access-count"},
}  # fmt: skip


def test_status_is_a_table_per_kind_then_what_holds_each_flow() -> None:
    lines = render_status(STATUS).splitlines()
    assert lines[0].split() == ["kind", "due", "due", "now", "dead", "unconfirmed", "synced", "oldest", "due", "flow"]
    assert lines[1].split() == ["writeoff", "3", "1", "2", "0", "25", "90", "s", "paused"]  # writeoff first
    assert lines[2].split()[0] == "risk" and lines[2].endswith("session paused")
    assert "writeoff: paused by operator: reason store migration" in lines
    assert "risk: session paused: since 2026-11-23T02:00:00Z, reason 27 invalid-sessionkey" in lines
    assert lines[-1] == "app: banned: until 2026-11-24T16:00:00Z, reason accesscontrol.limited-by-app-access-count"


def test_orders_print_with_the_cursor_to_poll_from() -> None:
    order = {"received_at": "2026-11-23T02:00:00Z", "fulfillment_order_no": "123", "partner_order_id": "p1",
             "state": "CREATED", "store_id": "s", "item_id": "i", "quantity": 1}  # fmt: skip
    text = render_orders([order], {"next": "CUR", "has_more": True})
    assert "123" in text.splitlines()[1] and "p1" in text.splitlines()[1]
    assert "next: CUR" in text and "--after CUR" in text
    assert render_orders([], {"next": "CUR", "has_more": False}).splitlines() == ["(no orders)", "next: CUR"]


def test_records_show_the_reason_they_are_where_they_are() -> None:
    record = {"id": "w1", "state": "dead", "attempts": 1, "dead_reason": "isv.invalid-parameter: refused",
              "settled_at": "2026-11-23T02:00:00Z"}  # fmt: skip
    text = render_records([record], {"next": None, "has_more": False})
    assert text.splitlines()[1].split()[:4] == ["w1", "dead", "1", "2026-11-23T02:00:00Z"]
    assert text.splitlines()[1].endswith("isv.invalid-parameter: refused")


def test_an_event_is_one_line_with_its_detail() -> None:
    event = {"time": "2026-11-23T02:00:00Z", "detail-type": "FulfillmentOrderReceived",
             "detail": {"fulfillment_order_no": "123", "quantity": 1}}  # fmt: skip
    line = event_line(event)
    assert line == "2026-11-23T02:00:00Z  FulfillmentOrderReceived  fulfillment_order_no=123 quantity=1"


def test_a_submission_counts_every_status_and_says_where_it_stopped() -> None:
    result = Submission("writeoffs", total=5)
    result.statuses.update({"accepted": 2, "replaced": 1})
    result.problems.append({"index": 3, "field": "tb_store_id", "rule": "Field required"})
    result.stopped_at = 3
    assert not result.ok
    assert result.lines() == [
        "5 writeoffs: 2 accepted, 1 replaced, 2 not stored (stopped at record 3)",
        "  record 3 field tb_store_id: Field required",
    ]
    result.statuses["duplicate"] += 2
    assert result.ok


def _response(status: int, body: Any, method: str = "GET", path: str = "/v1/writeoffs/x") -> httpx.Response:
    request = httpx.Request(method, f"http://h{path}")
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.Response(status, content=content, request=request)


def test_api_errors_carry_the_code_and_message_of_the_answer() -> None:
    error = api_error(_response(404, {"error": "not_found", "message": "no writeoff x"}))
    assert (error.status, error.code, str(error)) == (404, "not_found", "HTTP 404 not_found: no writeoff x")
    gateway = api_error(_response(404, {"message": "Not Found"}, path="/v1/ops/status"))
    assert str(gateway) == "HTTP 404 http_404: no route GET /v1/ops/status (an older stack?)"
    forbidden = api_error(_response(403, {"message": "Forbidden"}))
    assert str(forbidden) == "HTTP 403 http_403: Forbidden"
    too_many = api_error(_response(413, {"error": "too_many_records", "limit": 1000}))
    assert str(too_many) == "HTTP 413 too_many_records: limit=1000"
    html = api_error(_response(502, b"<html>\nbad gateway</html>"))
    assert str(html) == "HTTP 502 http_502: <html> bad gateway</html>"


def test_retry_after_is_read_as_seconds_within_bounds() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(None, default=0.5) == 0.5
    assert parse_retry_after("9999") == 30.0
    assert parse_retry_after("soon", default=1.0) == 1.0


# ------------------------------------------------------------------------------------------------------- SigV4
AKID, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
CLOCK = dt.datetime(2015, 8, 30, 12, 36, 0)


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *args, **kwargs: CLOCK)


@pytest.mark.parametrize(
    ("url", "signature"),
    [
        # aws-sig-v4-test-suite: get-vanilla, get-vanilla-query-order-key-case
        ("https://example.amazonaws.com/", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        (
            "https://example.amazonaws.com/?Param2=value2&Param1=value1",
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        ),
    ],
)
def test_signing_matches_the_aws_test_suite(fixed_clock: None, url: str, signature: str) -> None:
    request = sign_request(httpx.Request("GET", url), Credentials(AKID, SECRET), "us-east-1", "service")
    assert request.headers["X-Amz-Date"] == "20150830T123600Z"
    assert request.headers["Authorization"] == (
        f"AWS4-HMAC-SHA256 Credential={AKID}/20150830/us-east-1/service/aws4_request, "
        f"SignedHeaders=host;x-amz-date, Signature={signature}"
    )


def _sent_through(auth: httpx.Auth, method: str, url: str, **kwargs: Any) -> httpx.Request:
    """The request as httpx hands it to the network, after the auth flow."""
    sent: list[httpx.Request] = []

    def transport(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={})

    with httpx.Client(transport=httpx.MockTransport(transport), auth=auth) as client:
        client.request(method, url, **kwargs)
    return sent[0]


def _verify_as_api_gateway(request: httpx.Request, secret: str, region: str) -> bool:
    """An independent SigV4 check of a received request (no botocore): canonical request from what arrived."""
    auth = request.headers["authorization"]
    fields = dict(part.strip().split("=", 1) for part in auth.removeprefix("AWS4-HMAC-SHA256 ").split(","))
    signed = fields["SignedHeaders"].split(";")
    query = sorted(
        (quote(k, safe="-_.~"), quote(v, safe="-_.~"))
        for k, v in parse_qsl(request.url.query.decode(), keep_blank_values=True)
    )
    # Each path segment encoded twice (all services but S3): the once-encoded form that arrived, encoded again.
    segments = request.url.raw_path.decode().split("?")[0].split("/")
    path = "/".join(quote(quote(unquote(segment), safe="-_.~"), safe="-_.~") for segment in segments)
    canonical = "\n".join(
        [
            request.method,
            path,
            "&".join(f"{k}={v}" for k, v in query),
            "".join(f"{name}:{' '.join(request.headers[name].split())}\n" for name in signed),
            ";".join(signed),
            hashlib.sha256(request.content).hexdigest(),
        ]
    )
    stamp = request.headers["x-amz-date"]
    scope = f"{stamp[:8]}/{region}/execute-api/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = f"AWS4{secret}".encode()
    for part in (stamp[:8], region, "execute-api", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["Signature"])


def test_the_request_httpx_sends_verifies_and_matches_botocores_signature(fixed_clock: None) -> None:
    credentials = Credentials("AKIDTEMP", "secret/key+1", token="session-token")
    auth = SigV4(lambda: credentials, "ap-southeast-1")
    url = "https://abc123.execute-api.ap-southeast-1.amazonaws.com/v1/external-orders/YC%2F1%20x/retry"
    cursor = "eyJ0Ijo+MTIzfQ== a:b/ü"
    body = b'{"state":"dead","dry_run":true}'
    sent = _sent_through(auth, "POST", url, params={"after": cursor, "limit": "5"}, content=body,
                         headers={"content-type": "application/json;charset=utf-8"})  # fmt: skip

    # What was sent is what was signed: the query in canonical form, the cursor unchanged in meaning.
    assert dict(parse_qsl(sent.url.query.decode()))["after"] == cursor
    assert sent.url.query.decode() == canonical_query(sent.url.query)
    assert sent.headers["x-amz-security-token"] == "session-token"
    assert _verify_as_api_gateway(sent, "secret/key+1", "ap-southeast-1")

    # botocore signing the same request on its own gives the same header.
    reference = AWSRequest(
        method="POST", url=str(sent.url), data=body, headers={"content-type": "application/json;charset=utf-8"}
    )
    botocore.auth.SigV4Auth(credentials, "execute-api", "ap-southeast-1").add_auth(reference)
    assert sent.headers["authorization"] == reference.headers["Authorization"]
    assert "host;x-amz-date;x-amz-security-token" in sent.headers["authorization"]


def test_a_tampered_request_does_not_verify(fixed_clock: None) -> None:
    auth = SigV4(lambda: Credentials(AKID, SECRET), "us-east-1")
    sent = _sent_through(auth, "GET", "https://a.execute-api.us-east-1.amazonaws.com/v1/writeoffs?state=dead")
    assert _verify_as_api_gateway(sent, SECRET, "us-east-1")
    sent.url = sent.url.copy_with(query=b"state=due")
    assert not _verify_as_api_gateway(sent, SECRET, "us-east-1")
