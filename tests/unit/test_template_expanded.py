"""template.yaml as CloudFormation receives it: expanded by the SAM translator (as `sam deploy` has AWS do), then
checked for what a deployment must keep: least privilege per function, route authorization, no Lambda retries of
scheduled runs, no reserved concurrency by default, a keys-only due index, retained data, log retention, alarms
on exactly the metrics the code emits (names collected from the handlers and the sync run report, not copied
here), alarm delivery that prod cannot forget, the merchants' invoke policy.

Every check is a function of the expanded template; ``test_each_check_catches_what_it_guards`` breaks the
template in one way per check and expects that check to fail, so a check that stopped looking would show.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import functools
import importlib.util
import json
import re
import sys
import tomllib
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from samtranslator.translator.transform import transform

from bridge_local.template import PROJECT_ROOT, TEMPLATE_PATH, load_template, parse_rate
from taobao_bridge.fulfillment_store import RECEIVED_INDEX
from taobao_bridge.kinds import KINDS, Kind
from taobao_bridge.outbox.operations import ATTENTION_INDEX
from taobao_bridge.outbox.store import DUE_INDEX
from taobao_bridge.sync.report import RunReport, RunStatus

PACKAGE = PROJECT_ROOT / "layers" / "shared" / "taobao_bridge"
FUNCTION_TYPE = "AWS::Lambda::Function"
ALARM_TYPE = "AWS::CloudWatch::Alarm"
PSEUDO = {"AWS::Region": "ap-southeast-1", "AWS::AccountId": "123456789012", "AWS::Partition": "aws"}

QIMEN = "QimenCallbackFunction"
INTAKE = "IntakeFunction"
SYNC = ("SyncWriteoffsFunction", "SyncRiskFunction", "SyncExternalOrdersFunction")
OPERATIONS = "OperationsFunction"
ORDERS = "FulfillmentOrdersFunction"
ORDER_EVENTS = "FulfillmentEventsFunction"
FUNCTIONS = (QIMEN, INTAKE, *SYNC, OPERATIONS, ORDERS, ORDER_EVENTS)

# What each function's code path sends to DynamoDB, as IAM actions on (table | table/index/name). Transactions
# are authorized item action by item action (PutItem/UpdateItem), never as "TransactWriteItems".
#   qimen_callback: FulfillmentStore.create -> TransactWriteItems(Put order, Update inventory item)
#   intake: OutboxStore.accept (a conditional PutItem per record; GetItem, BatchGetItem read-backs), OutboxStore.get
#   sync: OutboxStore.due (Query due-index, BatchGetItem), settle (BatchWriteItem); RunControl (Get/Put/Update/
#         DeleteItem of leases, bans, pauses; UpdateItem of the synced counters)
#   operations: RecordOperations (Query both indexes, BatchGetItem, UpdateItem of records); RunControl (GetItem,
#         BatchGetItem of counters, UpdateItem and DeleteItem of bans and pauses)
INTENDED_DYNAMODB = {
    QIMEN: {("dynamodb:PutItem", "FulfillmentOrdersTable"), ("dynamodb:UpdateItem", "InventoryTable")},
    INTAKE: {(f"dynamodb:{a}", "OutboxTable") for a in ("PutItem", "GetItem", "BatchGetItem")},
    **{
        function_id: {("dynamodb:Query", f"OutboxTable/index/{DUE_INDEX}")}
        | {
            (f"dynamodb:{a}", "OutboxTable")
            for a in ("BatchGetItem", "BatchWriteItem", "GetItem", "PutItem", "UpdateItem", "DeleteItem")
        }
        for function_id in SYNC
    },
    OPERATIONS: {("dynamodb:Query", f"OutboxTable/index/{index}") for index in (DUE_INDEX, ATTENTION_INDEX)}
    | {(f"dynamodb:{a}", "OutboxTable") for a in ("BatchGetItem", "UpdateItem", "GetItem", "DeleteItem")},
    # fulfillment_orders: FulfillmentStore.get (GetItem) and received_on (Query received-index); never a write
    ORDERS: {
        ("dynamodb:GetItem", "FulfillmentOrdersTable"),
        ("dynamodb:Query", f"FulfillmentOrdersTable/index/{RECEIVED_INDEX}"),
    },
    # fulfillment_events: Lambda reads the orders table's stream for it (its own role: SAM's would read every
    # stream of the account); never the table
    ORDER_EVENTS: {
        (f"dynamodb:{a}", "FulfillmentOrdersTable/stream/*")
        for a in ("DescribeStream", "GetRecords", "GetShardIterator", "ListStreams")
    },
}
# The operators' routes (OperationsFunction); OperatorPolicy allows exactly these.
OPERATOR_ROUTES = {
    ("GET", "/v1/{kind}"),
    ("POST", "/v1/{kind}/retry"),
    ("POST", "/v1/{kind}/{id}/retry"),
    ("GET", "/v1/ops/status"),
    ("POST", "/v1/ops/bans/{scope}/lift"),
    ("POST", "/v1/ops/flows/{kind}/pause"),
    ("POST", "/v1/ops/flows/{kind}/resume"),
    ("POST", "/v1/ops/flows/{kind}/clear-session-pause"),
}
# Platform credentials: the Qimen secret (callback) and the TOP keys (sync). Intake signs nothing.
READS_SECRET = {QIMEN, *SYNC}
# The boto3 DynamoDB client methods the package may call; a new one needs its IAM action granted above.
KNOWN_CLIENT_CALLS = {
    "transact_write_items",
    "get_item",
    "put_item",
    "update_item",
    "delete_item",
    "query",
    "batch_get_item",
    "batch_write_item",
}
# Metrics that must have an alarm (namespace TaobaoBridge), and AWS metrics every function must have one on.
MUST_ALARM = {
    "RecordsDead",
    "RecordsUnconfirmed",
    "TopSessionExpired",
    "TopRateLimited",
    "TopDailyQuotaExceeded",
    "SyncStorageFailed",
    "QimenSystemError",
}
FUNCTION_ALARMS = {"Errors", "Throttles"}


# ------------------------------------------------------------------------------------------------ expansion
class _ManagedPolicies:
    """The translator's IAM lookup (ListPolicies), answered offline with the policies SAM attaches itself."""

    def load(self) -> dict[str, str]:
        return {
            "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
            "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
            "AWSXRayDaemonWriteAccess": "arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess",
        }


def expand(template: dict[str, Any]) -> dict[str, Any]:
    """What CloudFormation gets: local code folders replaced by S3 locations (as `sam package` does), then the
    SAM transform."""
    document = copy.deepcopy(template)
    for resource in document["Resources"].values():
        properties = resource.get("Properties") or {}
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str):
                properties[key] = f"s3://artifacts/{properties[key].strip('/')}.zip"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_DEFAULT_REGION", PSEUDO["AWS::Region"])
        return transform(document, dict(PSEUDO), _ManagedPolicies())


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return load_template(TEMPLATE_PATH)


@pytest.fixture(scope="module")
def expanded(raw: dict[str, Any]) -> dict[str, Any]:
    return expand(raw)


def resources(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {key: value for key, value in template["Resources"].items() if value["Type"] == type_}


def ref_name(value: Any) -> str:
    """``{"Ref": X}``, ``{"Fn::GetAtt": [X, "Arn"]}`` and ``{"Fn::Sub": "${X.Arn}/rest"}`` as ``X`` / ``X/rest``."""
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return str(value["Fn::GetAtt"][0])
    if isinstance(value, dict) and "Fn::Sub" in value and isinstance(value["Fn::Sub"], str):
        return re.sub(r"\$\{(\w+)\.Arn\}", r"\1", value["Fn::Sub"])
    if isinstance(value, dict) and "Fn::Sub" in value:  # ["${name}", {"name": <ref>}], as SAM policy templates
        text, variables = value["Fn::Sub"]
        match = re.fullmatch(r"\$\{(\w+)\}", text)
        if match and match.group(1) in variables:
            return ref_name(variables[match.group(1)])
    return json.dumps(value, sort_keys=True)


def parameter_default(template: dict[str, Any], value: Any) -> Any:
    if isinstance(value, dict) and "Ref" in value:
        return template["Parameters"][value["Ref"]]["Default"]
    return value


def walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


def role_statements(template: dict[str, Any], function_id: str) -> list[dict[str, Any]]:
    role_id = ref_name(template["Resources"][function_id]["Properties"]["Role"])
    role = template["Resources"][role_id]["Properties"]
    statements = [s for policy in role.get("Policies", []) for s in policy["PolicyDocument"]["Statement"]]
    return [{**s, "Action": [s["Action"]] if isinstance(s["Action"], str) else s["Action"]} for s in statements]


def grants(template: dict[str, Any], function_id: str, service: str) -> set[tuple[str, str]]:
    found = set()
    for statement in role_statements(template, function_id):
        assert statement["Effect"] == "Allow"
        resources_ = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for action in statement["Action"]:
            if action.startswith(f"{service}:"):
                found |= {(action, ref_name(resource)) for resource in resources_}
    return found


# ------------------------------------------------------------------------------------ what the code emits
def _load_app(folder: Path) -> ModuleType:
    name = f"_expanded_template_{folder.name}_app"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, folder / "app.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _strings(item)


@cache
def emitted_metrics() -> frozenset[str]:
    """Every metric name the handlers can emit: their metric tables (module-level names with METRIC in them,
    imported), the literal names they pass to ``add_metric``, and every name ``RunReport.metric_values`` yields
    for a run that did everything once, in every final status."""
    names: set[str] = set()
    for folder in sorted((PROJECT_ROOT / "functions").iterdir()):
        if not (folder / "app.py").is_file():
            continue
        module = _load_app(folder)
        for attribute, value in vars(module).items():
            if "METRIC" in attribute.upper() and isinstance(value, dict | list | tuple):
                names |= set(_strings(value))
        for node in ast.walk(source_tree(folder / "app.py")):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_metric":
                for keyword in node.keywords:
                    if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                        names.add(str(keyword.value.value))
    return frozenset(names | run_report_metrics())


@cache
def run_report_metrics() -> frozenset[str]:
    """Every name ``RunReport.metric_values`` yields for a run that did everything once, in every final status."""
    names: set[str] = set()
    for status in RunStatus:
        report = RunReport(kind=Kind.WRITEOFF.value, status=status)
        for field in dataclasses.fields(report):
            value = getattr(report, field.name)
            if isinstance(value, int) and not isinstance(value, bool):
                setattr(report, field.name, 1)
            elif isinstance(value, list):
                setattr(report, field.name, [1])
        names |= {name for name, _, _ in report.metric_values()}
    return frozenset(names)


def qimen_callback_metrics() -> frozenset[str]:
    """Every name in the Qimen callback's outcome table."""
    return frozenset(_strings(_load_app(PROJECT_ROOT / "functions" / "qimen_callback").METRICS))


def handler_dimension_calls() -> list[str]:
    """Calls in the handlers that would add a metric dimension (alarms match dimensions exactly)."""
    calls = []
    for app in sorted((PROJECT_ROOT / "functions").glob("*/app.py")):
        for node in ast.walk(source_tree(app)):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in {
                "add_dimension",
                "set_default_dimensions",
            }:
                calls.append(f"{app.parent.name}: line {node.lineno}")
    return calls


def control_key_prefixes() -> set[str]:
    """The run control's item keys (``lease#…``, ``ban#…``, ``pause#…``), read from outbox/control.py."""
    source = (PACKAGE / "outbox" / "control.py").read_text(encoding="utf-8")
    return set(re.findall(r'f"([a-z_]+)#\{', source))


def sync_kinds() -> dict[str, Kind]:
    """Sync entry point (``writeoffs``) -> its record kind, from ``name = _handler_for(Kind.X)`` in the handler."""
    tree = source_tree(PROJECT_ROOT / "functions" / "sync" / "app.py")
    kinds = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and node.value.args:
            argument = node.value.args[0]
            if isinstance(argument, ast.Attribute) and getattr(argument.value, "id", "") == "Kind":
                kinds[node.targets[0].id] = Kind[argument.attr]  # type: ignore[attr-defined]
    return kinds


def package_client_calls() -> dict[str, set[str]]:
    """DynamoDB client method -> modules that call it (``self.client.x(`` / ``client.x(``)."""
    calls: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(source_tree(path)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                owner = node.func.value
                owner_name = getattr(owner, "attr", None) or getattr(owner, "id", None)
                if owner_name in {"client", "_client", "dynamodb"}:
                    calls.setdefault(node.func.attr, set()).add(str(path.relative_to(PACKAGE)))
    return calls


@functools.cache
def source_tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


# Parsed now, while collecting: CPython 3.11 can fail an ast.parse that runs while another thread of the process
# parses too ("AST constructor recursion depth mismatch"), and the local stack's threads run during the tests.
for _source in [*PACKAGE.rglob("*.py"), *(PROJECT_ROOT / "functions").glob("*/app.py")]:
    source_tree(_source)


# ---------------------------------------------------------------------------------------------------- checks
def check_dynamodb_actions(t: dict[str, Any]) -> None:
    for function_id in FUNCTIONS:
        assert grants(t, function_id, "dynamodb") == INTENDED_DYNAMODB[function_id], function_id
    for statement in walk(t["Resources"]):
        if isinstance(statement, dict) and "Action" in statement and "Effect" in statement:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert not [a for a in actions if a.endswith(":*") or a == "*"], statement
            assert "dynamodb:Scan" not in actions, statement


# What SAM attaches to every function's role it makes (logs; X-Ray segments, as Tracing is Active). Its other
# managed policies (e.g. AWSLambdaDynamoDBExecutionRole for a stream event) allow their actions on every resource.
ALLOWED_MANAGED_POLICIES = {"service-role/AWSLambdaBasicExecutionRole", "AWSXrayWriteOnlyAccess"}


def check_managed_policies(t: dict[str, Any]) -> None:
    for function_id in FUNCTIONS:
        role_id = ref_name(t["Resources"][function_id]["Properties"]["Role"])
        arns = t["Resources"][role_id]["Properties"].get("ManagedPolicyArns", [])
        # "arn:aws:iam::aws:policy/<name>" from SAM, {"Fn::Sub": "arn:${AWS::Partition}:…"} from the template
        names = {str(a if isinstance(a, str) else a.get("Fn::Sub")).rpartition(":policy/")[2] for a in arns}
        assert names <= ALLOWED_MANAGED_POLICIES, (function_id, names)
        for statement in role_statements(t, function_id):
            resources_ = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            assert "*" not in resources_, (function_id, statement)


def check_no_scan(t: dict[str, Any]) -> None:
    assert "dynamodb:Scan" not in json.dumps(t)
    assert "scan" not in package_client_calls()


def check_leading_keys(t: dict[str, Any]) -> None:
    records = {f"{kind.value}#*" for kind in Kind}
    control = {f"{prefix}#*" for prefix in control_key_prefixes()}
    assert control == {"lease#*", "ban#*", "pause#*", "count#*"}, control

    def leading_keys(function_id: str, action: str) -> set[str]:
        (statement,) = [s for s in role_statements(t, function_id) if action in s["Action"]]
        return set(statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"])

    def item_grants(function_id: str) -> set[tuple[str, str]]:  # (action, leading key) of every item statement
        return {
            (action, key)
            for s in role_statements(t, function_id)
            if "Condition" in s
            for action in s["Action"]
            for key in s["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
        }

    # Operators: records read and retried; leases, bans and pauses read; counters read; bans and pauses changed.
    operations = {(a, key) for a in ("dynamodb:BatchGetItem", "dynamodb:UpdateItem") for key in records}
    operations |= {("dynamodb:GetItem", key) for key in ("lease#*", "ban#*", "pause#*")}
    operations |= {("dynamodb:BatchGetItem", "count#*")}
    operations |= {(a, key) for a in ("dynamodb:UpdateItem", "dynamodb:DeleteItem") for key in ("ban#*", "pause#*")}
    assert item_grants(OPERATIONS) == operations

    for action in ("dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:BatchGetItem"):
        assert leading_keys(INTAKE, action) == records, action  # never the sync's control items
    kinds = sync_kinds()
    for function_id in SYNC:
        kind = kinds[t["Resources"][function_id]["Properties"]["Handler"].rpartition(".")[2]]
        for action in ("dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"):
            assert leading_keys(function_id, action) == {f"{kind.value}#*"}, (function_id, action)
        for action in ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"):
            assert leading_keys(function_id, action) == control, (function_id, action)


def check_secret_access(t: dict[str, Any]) -> None:
    for function_id in FUNCTIONS:
        expected = {("secretsmanager:GetSecretValue", "BridgeSecret")} if function_id in READS_SECRET else set()
        assert grants(t, function_id, "secretsmanager") == expected, function_id


def _routes(t: dict[str, Any]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    (api,) = resources(t, "AWS::ApiGatewayV2::Api").values()
    body = api["Properties"]["Body"]
    assert body["components"]["securitySchemes"]["AWS_IAM"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    return {
        (method.upper(), path): operation.get("security", [])
        for path, operations in body["paths"].items()
        for method, operation in operations.items()
    }


def check_route_authorization(t: dict[str, Any]) -> None:
    routes = _routes(t)
    assert set(routes) == {
        ("POST", "/qimen"),
        ("POST", "/v1/writeoffs"),
        ("POST", "/v1/risk-records"),
        ("POST", "/v1/external-orders"),
        ("GET", "/v1/{kind}/{id}"),
        ("GET", "/v1/fulfillment-orders"),
        ("GET", "/v1/fulfillment-orders/{fulfillment_order_no}"),
        *OPERATOR_ROUTES,
    }
    for (method, path), security in routes.items():
        if path.startswith("/v1/"):
            assert security == [{"AWS_IAM": []}], (method, path)
        else:  # the Qimen gateway cannot sign with IAM: the handler checks its signature
            assert security == [{"NONE": []}], (method, path)


def _invoke_resources(t: dict[str, Any], function_id: str) -> set[str]:
    """What a policy allowing exactly ``function_id``'s routes lists: one resource per route, ``{kind}`` as each
    kind's path (``/v1/*`` would reach other functions' routes: ``*`` spans slashes), other parameters as ``*``."""
    (api,) = resources(t, "AWS::ApiGatewayV2::Api").values()
    prefix = "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${HttpApi}/*/"
    found = set()
    for path, operations in api["Properties"]["Body"]["paths"].items():
        for method, operation in operations.items():
            if f"${{{function_id}.Arn}}" in json.dumps(operation["x-amazon-apigateway-integration"]["uri"]):
                paths = [path.replace("/v1/{kind}", f"/v1/{spec.path}") for spec in KINDS.values()]
                for concrete in paths if path.startswith("/v1/{kind}") else [path]:
                    found.add(prefix + method.upper() + re.sub(r"\{[^}]+\}", "*", concrete))
    return found


def _policy_resources(t: dict[str, Any], policy_id: str) -> set[str]:
    (statement,) = t["Resources"][policy_id]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "execute-api:Invoke"
    return {resource["Fn::Sub"] for resource in statement["Resource"]}


def check_merchant_policy(t: dict[str, Any]) -> None:
    assert _policy_resources(t, "MerchantIntakePolicy") == _invoke_resources(t, INTAKE)
    assert not any("/ops/" in resource for resource in _policy_resources(t, "MerchantIntakePolicy"))
    assert t["Outputs"]["MerchantIntakePolicyArn"]["Value"] == {"Ref": "MerchantIntakePolicy"}


def check_operator_policy(t: dict[str, Any]) -> None:
    assert _policy_resources(t, "OperatorPolicy") == _invoke_resources(t, OPERATIONS)
    assert t["Outputs"]["OperatorPolicyArn"]["Value"] == {"Ref": "OperatorPolicy"}


def schedule_period_s(t: dict[str, Any], function_id: str) -> int:
    (schedule,) = [
        s["Properties"]
        for s in resources(t, "AWS::Scheduler::Schedule").values()
        if ref_name(s["Properties"]["Target"]["Arn"]) == function_id
    ]
    period = parse_rate(str(parameter_default(t, schedule["ScheduleExpression"])))
    assert period is not None
    return period


def check_scheduled_runs_are_not_retried(t: dict[str, Any]) -> None:
    configs = {
        ref_name(c["Properties"]["FunctionName"]): c for c in resources(t, "AWS::Lambda::EventInvokeConfig").values()
    }
    for function_id in SYNC:
        period = schedule_period_s(t, function_id)
        assert function_id in configs, f"{function_id}: no EventInvokeConfig, so Lambda retries a failed run twice"
        config = configs[function_id]["Properties"]
        assert config["MaximumRetryAttempts"] == 0, function_id
        # 60 s is Lambda's minimum and EventBridge Scheduler's shortest rate: a throttled run is dropped by the
        # time the next one is due, never queued behind it.
        assert 60 <= config["MaximumEventAgeInSeconds"] <= period, function_id
        timeout = int(parameter_default(t, t["Resources"][function_id]["Properties"]["Timeout"]))
        assert timeout < period, f"{function_id}: a run must end before the next one starts"
    for schedule in resources(t, "AWS::Scheduler::Schedule").values():
        target = schedule["Properties"]["Target"]
        assert target["RetryPolicy"]["MaximumRetryAttempts"] == 0
        assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] <= schedule_period_s(t, ref_name(target["Arn"]))
        assert "Arn" in target["DeadLetterConfig"]


def reserved_concurrency(t: dict[str, Any], **overrides: str) -> dict[str, str]:
    """Function -> ``ReservedConcurrentExecutions`` as CloudFormation resolves it with the parameters' defaults
    (or ``overrides``); functions without one (absent, or ``AWS::NoValue``) are left out."""
    parameters = {name: str(p.get("Default", "")) for name, p in t["Parameters"].items()} | overrides

    def resolve(value: Any) -> Any:
        if isinstance(value, dict) and "Fn::If" in value:
            condition, if_true, if_false = value["Fn::If"]
            return resolve(if_true if _evaluate(t["Conditions"][condition], parameters) else if_false)
        if value == {"Ref": "AWS::NoValue"}:
            return None
        if isinstance(value, dict) and "Ref" in value:
            return parameters[value["Ref"]]
        return value

    found = {}
    for function_id, function in resources(t, FUNCTION_TYPE).items():
        value = resolve(function["Properties"].get("ReservedConcurrentExecutions"))
        if value is not None:
            found[function_id] = str(value)
    return found


def check_no_reserved_concurrency(t: dict[str, Any]) -> None:
    # A new account (concurrency quota 10) refuses any reservation: none by default; SyncReservedConcurrency
    # reserves for the three sync functions, and only for them, where the quota allows.
    assert reserved_concurrency(t) == {}
    assert reserved_concurrency(t, SyncReservedConcurrency="0") == {}
    assert reserved_concurrency(t, SyncReservedConcurrency="1") == dict.fromkeys(SYNC, "1")
    parameter = t["Parameters"]["SyncReservedConcurrency"]
    assert (parameter["Type"], str(parameter["Default"]), parameter["MinValue"]) == ("Number", "0", 0)


def check_due_index_keys_only(t: dict[str, Any]) -> None:
    table = t["Resources"]["OutboxTable"]["Properties"]
    indexes = {index["IndexName"]: index for index in table["GlobalSecondaryIndexes"]}
    assert set(indexes) == {DUE_INDEX, ATTENTION_INDEX}
    for index in indexes.values():  # both are read for keys, then the records by key
        assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}, index["IndexName"]


def check_data_is_retained(t: dict[str, Any]) -> None:
    kept = {**resources(t, "AWS::DynamoDB::Table"), **resources(t, "AWS::SecretsManager::Secret")}
    assert {"FulfillmentOrdersTable", "InventoryTable", "OutboxTable", "BridgeSecret"} <= set(kept)
    for logical_id, resource in kept.items():
        assert resource.get("DeletionPolicy") == "Retain", logical_id
        assert resource.get("UpdateReplacePolicy") == "Retain", logical_id


def check_log_retention(t: dict[str, Any]) -> None:
    groups = resources(t, "AWS::Logs::LogGroup")
    for logical_id, group in groups.items():
        assert group["Properties"].get("RetentionInDays") == {"Ref": "LogRetentionDays"}, logical_id
    named = {json.dumps(g["Properties"]["LogGroupName"], sort_keys=True) for g in groups.values()}
    for function_id in resources(t, FUNCTION_TYPE):
        assert json.dumps({"Fn::Sub": f"/aws/lambda/${{{function_id}}}"}) in named, function_id


def _alarm_metrics(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    properties = alarm["Properties"]
    if "MetricName" in properties:
        return [properties]
    return [m["MetricStat"]["Metric"] for m in properties.get("Metrics", []) if "MetricStat" in m]


def check_alarms_watch_emitted_metrics(t: dict[str, Any]) -> None:
    env = t["Resources"][QIMEN]["Properties"]["Environment"]["Variables"]
    namespace, service = env["POWERTOOLS_METRICS_NAMESPACE"], env["POWERTOOLS_SERVICE_NAME"]
    functions, queues = resources(t, FUNCTION_TYPE), resources(t, "AWS::SQS::Queue")
    emitted = emitted_metrics()
    assert handler_dimension_calls() == []  # Powertools' only dimension is service=POWERTOOLS_SERVICE_NAME
    for alarm_id, alarm in resources(t, ALARM_TYPE).items():
        assert {"Ref": "AlarmTopic"} in alarm["Properties"]["AlarmActions"], alarm_id
        metrics = _alarm_metrics(alarm)
        assert metrics, alarm_id
        for metric in metrics:
            dimensions = metric.get("Dimensions", [])
            if metric["Namespace"] == namespace:
                assert metric["MetricName"] in emitted, f"{alarm_id}: no handler emits {metric['MetricName']}"
                assert dimensions == [{"Name": "service", "Value": service}], alarm_id
            elif metric["Namespace"] == "AWS/Lambda":
                assert [d["Name"] for d in dimensions] == ["FunctionName"], alarm_id
                assert ref_name(dimensions[0]["Value"]) in functions, alarm_id
            elif metric["Namespace"] == "AWS/SQS":
                assert [d["Name"] for d in dimensions] == ["QueueName"], alarm_id
                assert dimensions[0]["Value"] == {"Fn::GetAtt": [ref_name(dimensions[0]["Value"]), "QueueName"]}
                assert ref_name(dimensions[0]["Value"]) in queues, alarm_id
            else:
                raise AssertionError(f"{alarm_id}: unexpected namespace {metric['Namespace']}")


def check_required_alarms(t: dict[str, Any]) -> None:
    env = t["Resources"][QIMEN]["Properties"]["Environment"]["Variables"]
    watched = {
        (m["Namespace"], m["MetricName"], ref_name(m["Dimensions"][0]["Value"]) if m.get("Dimensions") else "")
        for alarm in resources(t, ALARM_TYPE).values()
        for m in _alarm_metrics(alarm)
    }
    custom = {name for namespace, name, _ in watched if namespace == env["POWERTOOLS_METRICS_NAMESPACE"]}
    assert custom >= MUST_ALARM, MUST_ALARM - custom
    for function_id in resources(t, FUNCTION_TYPE):
        for metric in FUNCTION_ALARMS:
            assert ("AWS/Lambda", metric, function_id) in watched, (function_id, metric)
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "SyncScheduleDLQ") in watched


def _evaluate(condition: Any, parameters: dict[str, str]) -> Any:
    """Enough of CloudFormation's rule functions for the rules here."""
    if isinstance(condition, dict):
        ((name, argument),) = condition.items()
        if name == "Ref":
            return parameters[argument]
        values = [_evaluate(a, parameters) for a in argument]
        if name == "Fn::Equals":
            return str(values[0]) == str(values[1])
        if name == "Fn::Not":
            return not values[0]
        if name == "Fn::And":
            return all(values)
        if name == "Fn::Or":
            return any(values)
        raise AssertionError(f"rule function {name} not understood")
    return condition


def deploy_refused(t: dict[str, Any], **overrides: str) -> list[str]:
    """The messages CloudFormation would stop a deploy with: parameter constraints, then the rules."""
    parameters = {name: str(p.get("Default", "")) for name, p in t["Parameters"].items()} | overrides
    problems = []
    for name, value in overrides.items():
        pattern = t["Parameters"][name].get("AllowedPattern")
        if pattern and not re.fullmatch(pattern, value):
            problems.append(t["Parameters"][name]["ConstraintDescription"])
    for rule in t.get("Rules", {}).values():
        if _evaluate(rule.get("RuleCondition", True), parameters):
            problems += [a["AssertDescription"] for a in rule["Assertions"] if not _evaluate(a["Assert"], parameters)]
    return problems


def check_alarm_delivery(t: dict[str, Any]) -> None:
    assert deploy_refused(t, Stage="prod", AlarmEmail="")
    assert any("AlarmEmail" in problem for problem in deploy_refused(t, Stage="prod", AlarmEmail=""))
    prod = tomllib.loads((PROJECT_ROOT / "samconfig.toml").read_text(encoding="utf-8"))["prod"]["deploy"]
    placeholder = dict(o.split("=", 1) for o in prod["parameters"]["parameter_overrides"].split())
    assert placeholder["Stage"] == "prod"
    assert any("samconfig.toml" in problem for problem in deploy_refused(t, **placeholder))
    assert deploy_refused(t, Stage="prod", AlarmEmail="oncall@example.com") == []
    assert deploy_refused(t, Stage="dev", AlarmEmail="") == []
    (subscription,) = resources(t, "AWS::SNS::Subscription").values()
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}
    assert subscription["Properties"]["TopicArn"] == {"Ref": "AlarmTopic"}


def _dashboard_body(t: dict[str, Any]) -> str:
    (dashboard,) = resources(t, "AWS::CloudWatch::Dashboard").values()
    assert dashboard["Properties"]["DashboardName"] == {"Fn::Sub": "taobao-bridge-${Stage}-${AWS::Region}"}
    return str(dashboard["Properties"]["DashboardBody"]["Fn::Sub"])


def dashboard_metrics(t: dict[str, Any]) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(namespace, metric name, dimensions) of every metric line of the dashboard's metric widgets."""
    found = []
    for widget in json.loads(_dashboard_body(t))["widgets"]:  # the ${...} of Fn::Sub sit inside JSON strings
        for line in widget["properties"].get("metrics", []):
            fields = [f for f in line if not isinstance(f, dict)]  # the last item may be the line's options
            assert fields[0] != "..." and len(fields) % 2 == 0, line  # spelled out, no shorthand
            found.append((fields[0], fields[1], list(zip(fields[2::2], fields[3::2], strict=True))))
    return found


def check_dashboard(t: dict[str, Any]) -> None:
    env = t["Resources"][QIMEN]["Properties"]["Environment"]["Variables"]
    namespace, service = env["POWERTOOLS_METRICS_NAMESPACE"], env["POWERTOOLS_SERVICE_NAME"]
    functions, queues = resources(t, FUNCTION_TYPE), resources(t, "AWS::SQS::Queue")
    emitted, body = emitted_metrics(), _dashboard_body(t)
    for name in re.findall(r"\$\{([^}]+)\}", body):
        assert name in PSEUDO or name.split(".")[0] in t["Resources"], f"dashboard refers to unknown {name}"
    custom, lambda_metrics, queue_metrics = set(), set(), set()
    for metric_namespace, name, dimensions in dashboard_metrics(t):
        if metric_namespace == namespace:
            assert name in emitted, f"dashboard: no handler emits {name}"
            assert dimensions == [("service", service)], (name, dimensions)
            custom.add(name)
        elif metric_namespace == "AWS/Lambda":
            ((dimension, value),) = dimensions
            assert dimension == "FunctionName" and value.removeprefix("${").removesuffix("}") in functions, value
            lambda_metrics.add((name, value.removeprefix("${").removesuffix("}")))
        elif metric_namespace == "AWS/SQS":
            ((dimension, value),) = dimensions
            queue = re.fullmatch(r"\$\{(\w+)\.QueueName\}", value)
            assert dimension == "QueueName" and queue and queue.group(1) in queues, value
            queue_metrics.add((name, queue.group(1)))
        else:
            raise AssertionError(f"dashboard: unexpected namespace {metric_namespace}")
    # What it must show: every record outcome, TOP call, ban and session metric of a sync run, every Qimen
    # answer, the schedules' DLQ depth, and errors, throttles and duration of every function.
    required = run_report_metrics() | qimen_callback_metrics()
    assert custom >= required, required - custom
    assert ("ApproximateNumberOfMessagesVisible", "SyncScheduleDLQ") in queue_metrics
    for function_id in functions:
        for name in ("Errors", "Throttles", "Duration"):
            assert (name, function_id) in lambda_metrics, (function_id, name)
    # Records per kind: the sync runs' summaries, as the runner logs them.
    (query,) = [w["properties"]["query"] for w in json.loads(body)["widgets"] if w["type"] == "log"]
    sources = {m.group(1) for m in re.finditer(r"SOURCE '\$\{(\w+)\}'", query)}
    sync_groups = {
        group_id
        for group_id, group in resources(t, "AWS::Logs::LogGroup").items()
        if group["Properties"]["LogGroupName"] in [{"Fn::Sub": f"/aws/lambda/${{{f}}}"} for f in SYNC]
    }
    assert sources == sync_groups and len(sources) == len(SYNC), sources
    (message,) = re.findall(r"filter message = '([^']+)'", query)
    runner = (PACKAGE / "sync" / "runner.py").read_text(encoding="utf-8")
    assert re.search(rf'logger\.info\("{re.escape(message)}", extra=\{{"report": report\.as_dict\(\)\}}\)', runner)
    fields = set(re.findall(r"report\.(\w+)", query))
    summary = RunReport(kind=Kind.WRITEOFF.value).as_dict()
    assert "kind" in fields and fields <= set(summary), fields - set(summary)
    url = t["Outputs"].get("DashboardUrl", {}).get("Value", {})
    assert "#dashboards/dashboard/${Dashboard}" in url.get("Fn::Sub", ""), url


def check_tracing(t: dict[str, Any]) -> None:
    for function_id, function in resources(t, FUNCTION_TYPE).items():
        properties = function["Properties"]
        assert properties["TracingConfig"] == {"Mode": "Active"}, function_id
        disabled = properties["Environment"]["Variables"]["POWERTOOLS_TRACE_DISABLED"]
        assert disabled == {"Fn::If": ["XRaySdkTracingDisabled", "true", "false"]}, function_id
    assert t["Conditions"]["XRaySdkTracingDisabled"] == {"Fn::Equals": [{"Ref": "XRaySdkTracing"}, "disabled"]}


def check_layer(t: dict[str, Any]) -> None:
    (layer,) = resources(t, "AWS::Lambda::LayerVersion").values()
    assert layer.get("DeletionPolicy") == "Delete"  # RetentionPolicy: Delete; old versions are not kept
    runtimes = {f["Properties"]["Runtime"] for f in resources(t, FUNCTION_TYPE).values()}
    assert set(layer["Properties"]["CompatibleRuntimes"]) == runtimes == {"python3.13"}


CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    name.removeprefix("check_"): function for name, function in globals().items() if name.startswith("check_")
}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_expanded_template(expanded: dict[str, Any], name: str) -> None:
    CHECKS[name](expanded)


# ------------------------------------------------------------------------- each check fails when it should
def _intake_statement(t: dict[str, Any]) -> dict[str, Any]:
    return t["Resources"][INTAKE]["Properties"]["Policies"][0]["Statement"][0]


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(t: dict[str, Any]) -> None:
        target = t
        for key in path[:-1]:
            target = target[key]
        if value is KeyError:
            del target[path[-1]]
        else:
            target[path[-1]] = value

    return mutate


def _in_dashboard(old: str, new: str) -> Callable[[dict[str, Any]], None]:
    def mutate(t: dict[str, Any]) -> None:
        body = t["Resources"]["Dashboard"]["Properties"]["DashboardBody"]
        assert old in body["Fn::Sub"], old
        body["Fn::Sub"] = body["Fn::Sub"].replace(old, new)

    return mutate


def _events_statement_resource(index: int, resource: str) -> Callable[[dict[str, Any]], None]:
    """Set the ``Resource`` of statement ``index`` of FulfillmentEventsRole's policy."""
    statement = ["Resources", "FulfillmentEventsRole", "Properties", "Policies", 0, "PolicyDocument", "Statement"]
    return _set([*statement, index, "Resource"], resource)


BREAKAGES: list[tuple[str, str, Callable[[dict[str, Any]], None]]] = [
    ("intake may scan", "dynamodb_actions", lambda t: _intake_statement(t)["Action"].append("dynamodb:Scan")),
    ("intake may scan", "no_scan", lambda t: _intake_statement(t)["Action"].append("dynamodb:Scan")),
    (
        "sync back on the SAM CRUD template",
        "dynamodb_actions",
        _set(
            ["Resources", "SyncRiskFunction", "Properties", "Policies"],
            [{"DynamoDBCrudPolicy": {"TableName": {"Ref": "OutboxTable"}}}],
        ),
    ),
    (
        "intake may touch leases",
        "leading_keys",
        lambda t: _intake_statement(t)["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"].append("*"),
    ),
    (
        "intake reads the secret",
        "secret_access",
        lambda t: t["Resources"][INTAKE]["Properties"]["Policies"].append(
            {"AWSSecretsManagerGetSecretValuePolicy": {"SecretArn": {"Ref": "BridgeSecret"}}}
        ),
    ),
    (
        "an intake route left open",
        "route_authorization",
        _set(
            ["Resources", INTAKE, "Properties", "Events", "PostWriteoffs", "Properties", "Auth", "Authorizer"], "NONE"
        ),
    ),
    (
        "merchants may invoke /qimen",
        "merchant_policy",
        lambda t: t["Resources"]["MerchantIntakePolicy"]["Properties"]["PolicyDocument"]["Statement"][0][
            "Resource"
        ].append(
            {"Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${HttpApi}/*/POST/qimen"}
        ),
    ),
    (
        "merchants may read the operators' status",
        "merchant_policy",
        lambda t: t["Resources"]["MerchantIntakePolicy"]["Properties"]["PolicyDocument"]["Statement"][0][
            "Resource"
        ].append(
            {"Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${HttpApi}/*/GET/v1/*/*"}
        ),
    ),
    (
        "operators may invoke every route",
        "operator_policy",
        _set(
            ["Resources", "OperatorPolicy", "Properties", "PolicyDocument", "Statement", 0, "Resource"],
            [{"Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${HttpApi}/*/*"}],
        ),
    ),
    (
        "operators may delete records",
        "leading_keys",
        lambda t: t["Resources"][OPERATIONS]["Properties"]["Policies"][0]["Statement"][4]["Condition"][
            "ForAllValues:StringLike"
        ]["dynamodb:LeadingKeys"].append("writeoff#*"),
    ),
    (
        "whole items in the attention index",
        "due_index_keys_only",
        _set(
            ["Resources", "OutboxTable", "Properties", "GlobalSecondaryIndexes", 1, "Projection"],
            {"ProjectionType": "ALL"},
        ),
    ),
    (
        "Lambda retries runs",
        "scheduled_runs_are_not_retried",
        _set(["Resources", "SyncRiskFunction", "Properties", "EventInvokeConfig"], KeyError),
    ),
    (
        "throttled runs kept 6 h",
        "scheduled_runs_are_not_retried",
        _set(["Resources", "SyncRiskFunction", "Properties", "EventInvokeConfig", "MaximumEventAgeInSeconds"], 21600),
    ),
    (
        "runs longer than the period",
        "scheduled_runs_are_not_retried",
        _set(["Parameters", "SyncTimeoutSeconds", "Default"], 120),
    ),
    (
        "reserved concurrency",
        "no_reserved_concurrency",
        _set(["Resources", "SyncRiskFunction", "Properties", "ReservedConcurrentExecutions"], 1),
    ),
    (
        "a reservation by default",
        "no_reserved_concurrency",
        _set(["Parameters", "SyncReservedConcurrency", "Default"], 1),
    ),
    (
        "the parameter misses a sync function",
        "no_reserved_concurrency",
        _set(["Resources", "SyncRiskFunction", "Properties", "ReservedConcurrentExecutions"], KeyError),
    ),
    (
        "the parameter reserves for intake",
        "no_reserved_concurrency",
        _set(
            ["Resources", INTAKE, "Properties", "ReservedConcurrentExecutions"],
            {"Fn::If": ["HasSyncReservedConcurrency", {"Ref": "SyncReservedConcurrency"}, {"Ref": "AWS::NoValue"}]},
        ),
    ),
    (
        "whole items in the due index",
        "due_index_keys_only",
        _set(
            ["Resources", "OutboxTable", "Properties", "GlobalSecondaryIndexes", 0, "Projection"],
            {"ProjectionType": "ALL"},
        ),
    ),
    (
        "secret deleted with the stack",
        "data_is_retained",
        _set(["Resources", "BridgeSecret", "DeletionPolicy"], KeyError),
    ),
    (
        "logs kept forever",
        "log_retention",
        _set(["Resources", "SyncRiskLogGroup", "Properties", "RetentionInDays"], KeyError),
    ),
    (
        "alarm on a metric nobody emits",
        "alarms_watch_emitted_metrics",
        _set(["Resources", "RecordsDeadAlarm", "Properties", "MetricName"], "RecordDead"),
    ),
    (
        "alarm with a dimension the code does not add",
        "alarms_watch_emitted_metrics",
        lambda t: t["Resources"]["TopRateLimitedAlarm"]["Properties"]["Dimensions"].append(
            {"Name": "kind", "Value": "risk"}
        ),
    ),
    ("ban alarm removed", "required_alarms", lambda t: t["Resources"].pop("TopDailyQuotaExceededAlarm")),
    ("throttles of intake not alarmed", "required_alarms", lambda t: t["Resources"].pop("IntakeThrottlesAlarm")),
    ("prod without alarm e-mail", "alarm_delivery", lambda t: t.pop("Rules")),
    ("any text as alarm e-mail", "alarm_delivery", _set(["Parameters", "AlarmEmail", "AllowedPattern"], KeyError)),
    (
        "SDK tracing not switchable",
        "tracing",
        _set(["Globals", "Function", "Environment", "Variables", "POWERTOOLS_TRACE_DISABLED"], "false"),
    ),
    ("old layer versions kept", "layer", _set(["Resources", "SharedLayer", "Properties", "RetentionPolicy"], "Retain")),
    ("dashboard shows a metric nobody emits", "dashboard", _in_dashboard('"RecordsDead"', '"RecordDead"')),
    (
        "dashboard metric with a dimension the code does not add",
        "dashboard",
        _in_dashboard(
            '"RecordsDead", "service", "taobao-bridge"', '"RecordsDead", "service", "taobao-bridge", "kind", "risk"'
        ),
    ),
    ("dashboard misses a Qimen answer", "dashboard", _in_dashboard('"QimenSystemError"', '"RecordsSent"')),
    ("dashboard misses a function", "dashboard", _in_dashboard("${SyncRiskFunction}", "${SyncWriteoffsFunction}")),
    ("dashboard misses the schedules' DLQ", "dashboard", _in_dashboard("SyncScheduleDLQ.", "FulfillmentEventsDLQ.")),
    ("per-kind query on a field runs do not log", "dashboard", _in_dashboard("report.dead", "report.deaths")),
    ("per-kind query on a message nobody logs", "dashboard", _in_dashboard("'sync run finished'", "'sync run done'")),
    ("no dashboard URL", "dashboard", _set(["Outputs", "DashboardUrl"], KeyError)),
    (
        "events function back on SAM's role (every stream of the account)",
        "managed_policies",
        _set(["Resources", ORDER_EVENTS, "Properties", "Role"], KeyError),
    ),
    ("events function reads every stream", "dynamodb_actions", _events_statement_resource(0, "*")),
    ("a wildcard resource", "managed_policies", _events_statement_resource(1, "*")),
]


@pytest.mark.parametrize(("breakage", "check", "mutate"), BREAKAGES, ids=[f"{c}: {b}" for b, c, _ in BREAKAGES])
def test_each_check_catches_what_it_guards(
    raw: dict[str, Any], breakage: str, check: str, mutate: Callable[[dict[str, Any]], None]
) -> None:
    broken = copy.deepcopy(raw)
    mutate(broken)
    with pytest.raises(AssertionError):
        CHECKS[check](expand(broken))


def test_every_check_has_a_breakage() -> None:
    assert {check for _, check, _ in BREAKAGES} == set(CHECKS)


# ---------------------------------------------------------------------------- the code behind the grants
def test_the_package_calls_only_dynamodb_operations_that_are_granted() -> None:
    """A new kind of DynamoDB call in the package needs its IAM action in template.yaml (and here)."""
    calls = package_client_calls()
    dynamodb_like = {name for name in calls if name in KNOWN_CLIENT_CALLS or name.endswith(("_item", "_items"))}
    dynamodb_like |= {name for name in calls if name in {"query", "scan", "execute_statement"}}
    assert dynamodb_like <= KNOWN_CLIENT_CALLS, {name: calls[name] for name in dynamodb_like - KNOWN_CLIENT_CALLS}


def test_emitted_metric_names_are_collected_from_the_code() -> None:
    names = emitted_metrics()
    # Sanity of the collection itself: one name from each source.
    assert {"QimenSignatureRejected", "RecordsAccepted", "RecordsDead", "SyncStorageFailed"} <= names


# -------------------------------------------------------------------------------------- build and deploy
def _requirements(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([\w.]+)", line.strip())
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def test_layer_ships_one_aws_sdk_pinned_as_a_pair() -> None:
    layer = _requirements(PROJECT_ROOT / "layers" / "shared" / "requirements.txt")
    # The X-Ray SDK (tracer extra) brings botocore: never without the boto3 that goes with it.
    assert "boto3" in layer and "botocore" in layer
    assert layer["boto3"].split(".")[:2] == layer["botocore"].split(".")[:2]
    dev = _requirements(PROJECT_ROOT / "requirements-dev.txt")
    assert dev.get("boto3", layer["boto3"]) == layer["boto3"]  # the tests run the SDK the layer ships


def test_build_and_deploy_are_pinned_precompiled_and_idempotent() -> None:
    makefile = (PROJECT_ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^SAM_CLI_VERSION := \d+\.\d+\.\d+$", makefile, re.M)
    assert "aws-sam-cli==$(SAM_CLI_VERSION)" in makefile
    assert re.search(r"-m compileall .*--invalidation-mode unchecked-hash", makefile)
    assert "PYTHON313 ?= python3.13" in makefile
    for target in ("deploy-dev", "deploy-prod"):
        (recipe,) = re.findall(rf"^{target}:.*\n\t(.*)$", makefile, re.M)
        assert "--no-fail-on-empty-changeset" in recipe, target
    config = tomllib.loads((PROJECT_ROOT / "samconfig.toml").read_text(encoding="utf-8"))
    for env in ("default", "dev", "prod"):
        assert config[env]["deploy"]["parameters"]["fail_on_empty_changeset"] is False, env


def test_template_limits_allow_what_the_readme_says() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    window = load_template(TEMPLATE_PATH)["Parameters"]["QimenTimestampWindowSeconds"]
    (row,) = [line for line in readme.splitlines() if line.startswith("| `QIMEN_TIMESTAMP_WINDOW_S`")]
    if "`0` switches the check off" in row:
        assert window["MinValue"] == 0
    assert window["MinValue"] <= int(window["Default"]) <= window["MaxValue"]


def test_readme_parameter_table_agrees_with_the_template() -> None:
    """README, Deploy: one row per template parameter; every default and limit it states is the template's."""
    parameters = load_template(TEMPLATE_PATH)["Parameters"]
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    rows = {}
    for line in readme.splitlines():
        match = re.match(r"^\| `(\w+)` \| (.*?) \| (.*?) \| .* \|$", line)
        if match and match.group(1) in parameters:
            rows[match.group(1)] = (match.group(2).strip(), match.group(3).strip())
    assert set(rows) == set(parameters)
    for name, (default, allowed) in rows.items():
        parameter = parameters[name]
        literal = re.fullmatch(r"`([^`]*)`", default)
        if literal or default == "empty":
            assert (literal.group(1) if literal else "") == str(parameter.get("Default", "")), name
        limits = re.match(r"^(\d+)–(\d+)", allowed)
        if limits:
            assert (parameter["MinValue"], parameter["MaxValue"]) == tuple(map(int, limits.groups())), name
        minimum = re.match(r"^≥ (\d+)", allowed)
        if minimum:
            assert parameter["MinValue"] == int(minimum.group(1)) and "MaxValue" not in parameter, name
        if "AllowedValues" in parameter and len(parameter["AllowedValues"]) < 5:
            assert re.findall(r"`([^`]*)`", allowed) == [str(v) for v in parameter["AllowedValues"]], name
