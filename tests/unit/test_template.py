"""template.yaml is linted clean, and the local stack reads its tables, routes and schedules from it."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from bridge_local.template import (
    PROJECT_ROOT,
    TEMPLATE_PATH,
    create_local_tables,
    dynamodb_tables,
    http_routes,
    load_handler,
    load_template,
    parse_rate,
    scheduled_functions,
    ttl_settings,
)

_CFN_LINT = "import sys; from cfnlint.runner.cli import main; sys.exit(main())"


def _cfn_lint(template: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _CFN_LINT, str(template), "-a", "cfn_lint_serverless.rules"],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE_PATH)


# ------------------------------------------------------------------------------------------------- cfn-lint
def test_cfn_lint_with_serverless_rules_reports_nothing() -> None:
    result = _cfn_lint(TEMPLATE_PATH)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_serverless_rules_are_active(tmp_path: Path) -> None:
    """A clean lint means something only if the serverless rules ran: break one and see it reported."""
    broken = TEMPLATE_PATH.read_text(encoding="utf-8").replace("    Tracing: Active\n", "", 1)
    (tmp_path / "template.yaml").write_text(broken, encoding="utf-8")
    result = _cfn_lint(tmp_path / "template.yaml")
    assert "WS1000" in result.stdout, result.stdout + result.stderr


# ----------------------------------------------------------------------------------------------------- YAML
def test_short_form_tags_become_long_form(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        'AWSTemplateFormatVersion: "2010-09-09"\n'
        "Date: 2010-09-09\n"
        "Values:\n"
        "  - !Ref Stage\n"
        "  - !GetAtt Table.Arn\n"
        "  - !Sub [ '${A}-x', { A: !Ref Stage } ]\n"
        "  - !If [IsProd, !Join ['', [a, b]], !Ref AWS::NoValue]\n"
        "  - !Condition IsProd\n"
        "  - !Select [0, !GetAZs '']\n"
        "  - !FindInMap [M, K, V]\n"
        "  - !Base64 text\n",
        encoding="utf-8",
    )
    document = load_template(path)
    assert document["Date"] == "2010-09-09"
    assert document["Values"] == [
        {"Ref": "Stage"},
        {"Fn::GetAtt": ["Table", "Arn"]},
        {"Fn::Sub": ["${A}-x", {"A": {"Ref": "Stage"}}]},
        {"Fn::If": ["IsProd", {"Fn::Join": ["", ["a", "b"]]}, {"Ref": "AWS::NoValue"}]},
        {"Condition": "IsProd"},
        {"Fn::Select": [0, {"Fn::GetAZs": ""}]},
        {"Fn::FindInMap": ["M", "K", "V"]},
        {"Fn::Base64": "text"},
    ]


# --------------------------------------------------------------------------------------------------- tables
@pytest.fixture(scope="module")
def dynamodb() -> Iterator[Any]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield boto3.client(
            "dynamodb",
            endpoint_url=f"http://{host}:{port}",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
    finally:
        server.stop()


def test_every_template_table_becomes_a_moto_table_over_http(dynamodb: Any, template: dict[str, Any]) -> None:
    declared = {
        logical_id: resource["Properties"]
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::DynamoDB::Table"
    }
    assert {"FulfillmentOrdersTable", "InventoryTable"} <= set(declared)

    names = create_local_tables(dynamodb, template)

    assert sorted(names) == sorted(declared)
    for name, properties in declared.items():
        table = dynamodb.describe_table(TableName=name)["Table"]
        assert table["KeySchema"] == properties["KeySchema"]
        assert sorted(table["AttributeDefinitions"], key=str) == sorted(properties["AttributeDefinitions"], key=str)
        assert table["BillingModeSummary"]["BillingMode"] == properties["BillingMode"]
    ttl = dynamodb.describe_time_to_live(TableName="FulfillmentOrdersTable")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}


def test_create_local_tables_is_idempotent(dynamodb: Any, template: dict[str, Any]) -> None:
    first = create_local_tables(dynamodb, template)
    dynamodb.put_item(TableName="InventoryTable", Item={"store_id": {"S": "ST001"}, "item_id": {"S": "I1"}})
    second = create_local_tables(dynamodb, template)
    assert first == second
    # Its item is still there (moto's state is per process: other tests may have stored items too).
    key = {"store_id": {"S": "ST001"}, "item_id": {"S": "I1"}}
    assert "Item" in dynamodb.get_item(TableName="InventoryTable", Key=key)


def test_template_tables_have_their_keys_and_ttl(template: dict[str, Any]) -> None:
    tables = {table["TableName"]: table for table in dynamodb_tables(template)}
    assert tables["FulfillmentOrdersTable"]["KeySchema"] == [
        {"AttributeName": "fulfillment_order_no", "KeyType": "HASH"}
    ]
    assert tables["InventoryTable"]["KeySchema"] == [
        {"AttributeName": "store_id", "KeyType": "HASH"},
        {"AttributeName": "item_id", "KeyType": "RANGE"},
    ]
    assert ttl_settings(template) == {"FulfillmentOrdersTable": "expires_at", "OutboxTable": "expires_at"}
    # Deployment-only properties are not create_table arguments.
    for table in tables.values():
        assert not {"SSESpecification", "PointInTimeRecoverySpecification", "TimeToLiveSpecification"} & set(table)


_INDEXED_TABLE = {
    "Parameters": {"Stage": {"Type": "String", "Default": "dev"}},
    "Resources": {
        # Not "OutboxTable": the module's server already holds the real one, created from template.yaml.
        "IndexedTable": {
            "Type": "AWS::DynamoDB::Table",
            "Properties": {
                "TableName": {"Fn::Sub": "outbox-${Stage}"},
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                    {"AttributeName": "due_at", "AttributeType": "N"},
                ],
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                "GlobalSecondaryIndexes": [
                    {
                        "IndexName": "due",
                        "KeySchema": [{"AttributeName": "due_at", "KeyType": "HASH"}],
                        "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["flow"]},
                        "ContributorInsightsSpecification": {"Enabled": True},
                    }
                ],
                "LocalSecondaryIndexes": [
                    {
                        "IndexName": "by_due",
                        "KeySchema": [
                            {"AttributeName": "pk", "KeyType": "HASH"},
                            {"AttributeName": "due_at", "KeyType": "RANGE"},
                        ],
                        "Projection": {"ProjectionType": "KEYS_ONLY"},
                    }
                ],
                "StreamSpecification": {"StreamViewType": "NEW_IMAGE"},
                # Only AWS knows these: they are dropped, never resolved.
                "SSESpecification": {"SSEEnabled": True, "KMSMasterKeyId": {"Fn::GetAtt": ["Key", "Arn"]}},
                "Tags": [{"Key": "stage", "Value": {"Fn::If": ["IsProd", "prod", "dev"]}}],
            },
        }
    },
}


def test_indexes_and_streams_are_copied_faithfully(dynamodb: Any) -> None:
    (table,) = dynamodb_tables(_INDEXED_TABLE)
    assert table["TableName"] == "IndexedTable"
    assert table["GlobalSecondaryIndexes"] == [
        {
            "IndexName": "due",
            "KeySchema": [{"AttributeName": "due_at", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["flow"]},
        }
    ]
    assert table["LocalSecondaryIndexes"][0]["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    assert not {"SSESpecification", "Tags"} & set(table)

    create_local_tables(dynamodb, _INDEXED_TABLE)
    described = dynamodb.describe_table(TableName="IndexedTable")["Table"]
    assert described["GlobalSecondaryIndexes"][0]["Projection"]["NonKeyAttributes"] == ["flow"]


# --------------------------------------------------------------------------------------------------- routes
def test_http_routes_find_the_qimen_callback(template: dict[str, Any]) -> None:
    routes = http_routes(template)
    (qimen,) = [route for route in routes if (route.method, route.path) == ("POST", "/qimen")]
    assert qimen.function_id == "QimenCallbackFunction"
    assert qimen.code_uri == "functions/qimen_callback/"
    assert qimen.handler == "app.lambda_handler"
    assert qimen.auth == "NONE"
    assert qimen.route_key == "POST /qimen"
    assert qimen.timeout_s == 6
    assert qimen.memory_mb == 512
    assert qimen.environment["FULFILLMENT_TABLE"] == "FulfillmentOrdersTable"
    assert qimen.environment["INVENTORY_TABLE"] == "InventoryTable"
    assert qimen.environment["QIMEN_TIMESTAMP_WINDOW_S"] == "600"
    assert qimen.environment["POWERTOOLS_SERVICE_NAME"] == "taobao-bridge"
    # A secret ARN exists only in AWS: the local stack provides its secrets itself.
    assert "BRIDGE_SECRET_ID" not in qimen.environment


def test_every_http_route_points_at_an_existing_handler(template: dict[str, Any]) -> None:
    routes = http_routes(template)
    if not (PROJECT_ROOT / "functions" / "qimen_callback" / "app.py").is_file():
        pytest.skip("functions/qimen_callback/app.py is not written yet")
    for route in routes:
        module, _, attribute = route.handler.rpartition(".")
        source = PROJECT_ROOT / route.code_uri / (module.replace(".", "/") + ".py")
        assert source.is_file(), f"{route.route_key}: {source} is missing"
        # Read, not imported: importing would run the handler module's start-up code.
        tree = ast.parse(source.read_text(encoding="utf-8"))
        defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}
        defined |= {
            target.id
            for node in tree.body
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        assert attribute in defined, f"{route.route_key}: {source} defines no {attribute}"


def test_route_auth_comes_from_the_event_or_the_api_default() -> None:
    template = {
        "Resources": {
            "Api": {"Type": "AWS::Serverless::HttpApi", "Properties": {"Auth": {"DefaultAuthorizer": "AWS_IAM"}}},
            "Fn": {
                "Type": "AWS::Serverless::Function",
                "Properties": {
                    "CodeUri": "functions/intake/",
                    "Handler": "app.lambda_handler",
                    "Events": {
                        "Post": {
                            "Type": "HttpApi",
                            "Properties": {"ApiId": {"Ref": "Api"}, "Method": "post", "Path": "/records/{flow}"},
                        },
                        "Open": {
                            "Type": "HttpApi",
                            "Properties": {
                                "ApiId": {"Ref": "Api"},
                                "Method": "get",
                                "Path": "/health",
                                "Auth": {"Authorizer": "NONE"},
                            },
                        },
                    },
                },
            },
        }
    }
    auth = {route.path: (route.method, route.auth) for route in http_routes(template)}
    assert auth == {"/records/{flow}": ("POST", "AWS_IAM"), "/health": ("GET", "NONE")}


# ------------------------------------------------------------------------------------------------ schedules
_SCHEDULED = """
Parameters:
  SyncRate:
    Type: String
    Default: rate(5 minutes)
  Minutes:
    Type: Number
    Default: 2
Globals:
  Function:
    Handler: app.lambda_handler
    Timeout: 60
    Environment:
      Variables:
        POWERTOOLS_SERVICE_NAME: taobao-bridge
Resources:
  OutboxTable:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
  WriteoffSyncFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/writeoff_sync/
      Environment:
        Variables:
          OUTBOX_TABLE: !Ref OutboxTable
          DLQ_URL: !GetAtt Dlq.QueueUrl
      Events:
        Every:
          Type: ScheduleV2
          Properties:
            ScheduleExpression: !Ref SyncRate
            ScheduleExpressionTimezone: Asia/Shanghai
  RiskSyncFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/risk_sync/
      Events:
        Fast:
          Type: Schedule
          Properties:
            Schedule: !Sub rate(${Minutes} minutes)
        Nightly:
          Type: ScheduleV2
          Properties:
            ScheduleExpression: cron(0 2 * * ? *)
            State: DISABLED
        Api:
          Type: HttpApi
          Properties: {Method: get, Path: /risk}
"""


def test_scheduled_functions_parse_rates_and_resolve_parameters(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(_SCHEDULED, encoding="utf-8")
    schedules = {(s.function_id, s.expression): s for s in scheduled_functions(load_template(path))}

    writeoff = schedules[("WriteoffSyncFunction", "rate(5 minutes)")]
    assert writeoff.rate_seconds == 300
    assert writeoff.code_uri == "functions/writeoff_sync/"
    assert writeoff.handler == "app.lambda_handler"
    assert writeoff.timeout_s == 60
    assert writeoff.environment == {"POWERTOOLS_SERVICE_NAME": "taobao-bridge", "OUTBOX_TABLE": "OutboxTable"}

    assert schedules[("RiskSyncFunction", "rate(2 minutes)")].rate_seconds == 120
    nightly = schedules[("RiskSyncFunction", "cron(0 2 * * ? *)")]
    assert nightly.rate_seconds is None
    assert nightly.enabled is False
    assert len(schedules) == 3


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(1 minute)", 60),
        ("rate(10 minutes)", 600),
        ("rate(30 seconds)", 30),
        ("rate(1 second)", 1),
        ("rate(2 hours)", 7200),
        ("rate(1 hour)", 3600),
        ("cron(0/5 * * * ? *)", None),
    ],
)
def test_parse_rate(expression: str, seconds: int | None) -> None:
    assert parse_rate(expression) == seconds


def test_parse_rate_refuses_what_it_does_not_know() -> None:
    with pytest.raises(ValueError, match="unsupported schedule expression"):
        parse_rate("rate(five minutes)")


# ------------------------------------------------------------------------------------------------- handlers
def test_load_handler_keeps_same_named_modules_apart(tmp_path: Path) -> None:
    for name in ("one", "two"):
        folder = tmp_path / "functions" / name
        folder.mkdir(parents=True)
        (folder / "app.py").write_text(f"def lambda_handler(event, context):\n    return {name!r}\n", encoding="utf-8")

    one = load_handler(tmp_path, "functions/one/", "app.lambda_handler")
    two = load_handler(tmp_path, "functions/two/", "app.lambda_handler")

    assert one({}, None) == "one"
    assert two({}, None) == "two"
    assert load_handler(tmp_path, "functions/one/", "app.lambda_handler") is one
    assert one.__module__ != two.__module__


def test_load_handler_names_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "app.py").write_text("x = 1\n", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match=r"main\.py"):
        load_handler(tmp_path, "fn/", "main.handler")
    with pytest.raises(AttributeError, match="lambda_handler"):
        load_handler(tmp_path, "fn/", "app.lambda_handler")


# ------------------------------------------------------------------------------------- outbox and intake
def test_outbox_table_has_its_sparse_due_index_and_ttl(dynamodb: Any, template: dict[str, Any]) -> None:
    tables = {table["TableName"]: table for table in dynamodb_tables(template)}
    outbox = tables["OutboxTable"]
    assert outbox["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert outbox["BillingMode"] == "PAY_PER_REQUEST"
    assert outbox["GlobalSecondaryIndexes"] == [
        {
            "IndexName": "due-index",
            "KeySchema": [
                {"AttributeName": "due_kind", "KeyType": "HASH"},
                {"AttributeName": "due_at", "KeyType": "RANGE"},
            ],
            # Keys only: OutboxStore.due reads the keys and re-reads the records (tests/unit/test_template_expanded.py).
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        },
        {
            # Sparse too: only dead and unconfirmed records carry its keys (outbox.operations lists and counts them).
            "IndexName": "attention-index",
            "KeySchema": [
                {"AttributeName": "attention_key", "KeyType": "HASH"},
                {"AttributeName": "attention_at", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        },
    ]
    types = {d["AttributeName"]: d["AttributeType"] for d in outbox["AttributeDefinitions"]}
    assert types == {"pk": "S", "due_kind": "S", "due_at": "N", "attention_key": "S", "attention_at": "N"}
    resource = template["Resources"]["OutboxTable"]
    assert resource["DeletionPolicy"] == resource["UpdateReplacePolicy"] == "Retain"
    assert resource["Properties"]["SSESpecification"] == {"SSEEnabled": True}
    assert resource["Properties"]["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}

    create_local_tables(dynamodb, template)
    described = dynamodb.describe_table(TableName="OutboxTable")["Table"]
    assert described["GlobalSecondaryIndexes"][0]["IndexName"] == "due-index"
    ttl = dynamodb.describe_time_to_live(TableName="OutboxTable")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}


def test_intake_routes_are_iam_authorized_and_point_at_the_outbox(template: dict[str, Any]) -> None:
    routes = {(r.method, r.path): r for r in http_routes(template) if r.function_id == "IntakeFunction"}
    assert set(routes) == {
        ("POST", "/v1/writeoffs"),
        ("POST", "/v1/risk-records"),
        ("POST", "/v1/external-orders"),
        ("GET", "/v1/{kind}/{id}"),
    }
    for route in routes.values():
        assert route.auth == "AWS_IAM"
        assert route.code_uri == "functions/intake/"
        assert route.environment["OUTBOX_TABLE"] == "OutboxTable"
        assert route.environment["OUTBOX_RETENTION_DAYS"] == "30"
    api_auth = template["Resources"]["HttpApi"]["Properties"]["Auth"]
    assert api_auth == {"EnableIamAuthorizer": True, "DefaultAuthorizer": "AWS_IAM"}
    (qimen,) = [r for r in http_routes(template) if r.path == "/qimen"]
    assert qimen.auth == "NONE"  # the Qimen gateway cannot sign with IAM: it opts out of the default
    # Explicit statements, never a SAM CRUD template (which grants Scan and DeleteItem): the exact actions are
    # checked on the expanded template (tests/unit/test_template_expanded.py).
    (policy,) = template["Resources"]["IntakeFunction"]["Properties"]["Policies"]
    assert {statement["Resource"]["Fn::GetAtt"][0] for statement in policy["Statement"]} == {"OutboxTable"}


# One code folder, one entry point per function.
SYNC_FUNCTIONS = {
    "SyncWriteoffsFunction": "app.writeoffs",
    "SyncRiskFunction": "app.risk",
    "SyncExternalOrdersFunction": "app.external_orders",
}


def test_sync_functions_run_every_minute_with_their_settings(template: dict[str, Any]) -> None:
    schedules = {s.function_id: s for s in scheduled_functions(template)}
    assert set(schedules) == set(SYNC_FUNCTIONS)
    for function_id, handler in SYNC_FUNCTIONS.items():
        schedule = schedules[function_id]
        assert schedule.rate_seconds == 60
        assert schedule.enabled
        assert schedule.code_uri == "functions/sync/"
        assert schedule.handler == handler
        assert schedule.timeout_s == 55  # below the 60 s period: a run ends before the next starts
        assert schedule.environment["OUTBOX_TABLE"] == "OutboxTable"
        assert schedule.environment["TOP_GATEWAY_URL"] == "https://eco.taobao.com/router/rest"
        assert schedule.environment["SYNC_MAX_ATTEMPTS"] == "8"

        properties = template["Resources"][function_id]["Properties"]
        # New accounts (concurrency quota 10) refuse any reserved concurrency; the lease keeps runs apart. Only
        # SyncReservedConcurrency (default 0: none) reserves some; the local stack reads that as no limit.
        assert properties["ReservedConcurrentExecutions"] == {
            "Fn::If": ["HasSyncReservedConcurrency", {"Ref": "SyncReservedConcurrency"}, {"Ref": "AWS::NoValue"}]
        }
        assert schedule.reserved_concurrency is None
        assert properties["EventInvokeConfig"] == {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60}
        event = properties["Events"]["Every"]
        assert event["Type"] == "ScheduleV2"
        assert event["Properties"]["RetryPolicy"] == {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60}
        assert event["Properties"]["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["SyncScheduleDLQ", "Arn"]}}
        assert not any("DynamoDBCrudPolicy" in policy for policy in properties["Policies"])
        log_group = template["Resources"][function_id.replace("Function", "LogGroup")]["Properties"]
        assert log_group["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/${{{function_id}}}"}
        alarm = template["Resources"][function_id.replace("Function", "ErrorsAlarm")]["Properties"]
        assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function_id}}]


def test_every_function_handler_imports_and_is_callable(template: dict[str, Any]) -> None:
    functions = {(r.code_uri, r.handler) for r in http_routes(template)}
    functions |= {(s.code_uri, s.handler) for s in scheduled_functions(template)}
    # qimen callback, intake, fulfillment orders, operations (one handler each for its routes), three sync entry points
    assert len(functions) == 7
    for code_uri, handler in functions:
        assert callable(load_handler(PROJECT_ROOT, code_uri, handler)), f"{code_uri} {handler}"


@pytest.mark.parametrize(
    ("alarm", "metric"),
    [
        ("SessionExpiredAlarm", "TopSessionExpired"),
        ("RecordsDeadAlarm", "RecordsDead"),
        ("RecordsUnconfirmedAlarm", "RecordsUnconfirmed"),
        ("SyncStorageFailedAlarm", "SyncStorageFailed"),
    ],
)
def test_custom_metric_alarms_watch_the_powertools_namespace(template: dict[str, Any], alarm: str, metric: str) -> None:
    properties = template["Resources"][alarm]["Properties"]
    assert properties["Namespace"] == "TaobaoBridge"
    assert properties["MetricName"] == metric
    assert properties["Dimensions"] == [{"Name": "service", "Value": "taobao-bridge"}]
    assert properties["Statistic"] == "Sum"
    assert (properties["Threshold"], properties["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
