"""Read ``template.yaml`` for the local stack: tables, HTTP routes, schedules and handlers.

The template is the one source of truth. Local DynamoDB tables are created from its
``AWS::DynamoDB::Table`` resources (named after their logical ids), and local routes and schedules come
from its ``AWS::Serverless::Function`` events, so the local stack cannot drift from what is deployed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

__all__ = [
    "PROJECT_ROOT",
    "TEMPLATE_PATH",
    "Route",
    "ScheduledFunction",
    "create_local_tables",
    "dynamodb_tables",
    "http_routes",
    "load_function_instance",
    "load_handler",
    "load_template",
    "parse_rate",
    "scheduled_functions",
    "ttl_settings",
]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = PROJECT_ROOT / "template.yaml"

TABLE_TYPE = "AWS::DynamoDB::Table"
FUNCTION_TYPE = "AWS::Serverless::Function"

# Lambda's own defaults, used when neither the function nor Globals set a value.
_DEFAULT_TIMEOUT_S = 3
_DEFAULT_MEMORY_MB = 128


# --------------------------------------------------------------------------------------------- YAML loading
class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that understands CloudFormation short-form tags and keeps dates as text."""


# CloudFormation reads ``2010-09-09`` as a string; PyYAML would make it a date.
_CfnLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

_SHORT_FORM_TAGS = (
    "Ref",
    "Condition",
    "Sub",
    "GetAtt",
    "If",
    "Equals",
    "Not",
    "And",
    "Or",
    "Join",
    "Select",
    "Split",
    "FindInMap",
    "Base64",
    "ImportValue",
    "GetAZs",
    "Cidr",
    "Transform",
    "Length",
    "ToJsonString",
)


def _construct_short_form(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = tag_suffix
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:  # pragma: no cover - PyYAML has no other node kinds
        raise yaml.constructor.ConstructorError(None, None, f"unexpected node for !{name}", node.start_mark)
    if name in ("Ref", "Condition"):
        return {name: value}
    if name == "GetAtt" and isinstance(value, str):
        # The short form writes ``!GetAtt Resource.Attribute``; the long form is a two-item list.
        resource, _, attribute = value.partition(".")
        value = [resource, attribute]
    return {f"Fn::{name}": value}


for _tag in _SHORT_FORM_TAGS:
    _CfnLoader.add_constructor(
        f"!{_tag}",
        lambda loader, node, _name=_tag: _construct_short_form(loader, _name, node),
    )


def load_template(path: str | Path = TEMPLATE_PATH) -> dict[str, Any]:
    """Parse a CloudFormation/SAM template; short-form tags become their long-form dicts (``{"Ref": "X"}``)."""
    with open(path, encoding="utf-8") as handle:
        document = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(document, dict):
        raise ValueError(f"{path}: not a CloudFormation template")
    return document


# ------------------------------------------------------------------------------------------------ resolving
class _Unresolvable(Exception):
    """Raised when a value depends on something only CloudFormation knows (another resource's ARN...)."""


_PSEUDO_PARAMETERS = {
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "taobao-bridge-local",
}
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


def _resources(template: Mapping[str, Any], resource_type: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for logical_id, resource in (template.get("Resources") or {}).items():
        if isinstance(resource, dict) and resource.get("Type") == resource_type:
            yield logical_id, resource


def _resolve(value: Any, template: Mapping[str, Any]) -> Any:
    """Resolve what the local stack can know: parameter defaults, table names (= logical ids), pseudo
    parameters, and ``Fn::Sub`` over those. Anything else raises ``_Unresolvable``."""
    if isinstance(value, dict) and len(value) == 1:
        ((key, argument),) = value.items()
        if key == "Ref":
            return _resolve_name(str(argument), template)
        if key == "Fn::Sub":
            if isinstance(argument, list):
                text, variables = argument[0], dict(argument[1]) if len(argument) > 1 else {}
            else:
                text, variables = argument, {}

            def substitute(match: re.Match[str]) -> str:
                name = match.group(1)
                if name in variables:
                    return str(_resolve(variables[name], template))
                return _resolve_name(name, template)

            return _SUB_VARIABLE.sub(substitute, str(text)).replace("${!", "${")
        if key.startswith("Fn::") or key == "Condition":
            raise _Unresolvable(key)
    if isinstance(value, dict):
        return {k: _resolve(v, template) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, template) for v in value]
    return value


def _resolve_name(name: str, template: Mapping[str, Any]) -> str:
    parameters = template.get("Parameters") or {}
    if name in parameters:
        if "Default" not in parameters[name]:
            raise _Unresolvable(name)
        return _as_text(parameters[name]["Default"])
    resource = (template.get("Resources") or {}).get(name)
    if isinstance(resource, dict) and resource.get("Type") == TABLE_TYPE:
        return name
    if isinstance(resource, dict) and resource.get("Type") == "AWS::Events::EventBus":
        # Ref of a bus is its name; the local stack creates it under the same name (bridge_local.event_log).
        return str(_resolve((resource.get("Properties") or {}).get("Name", name), template))
    if name in _PSEUDO_PARAMETERS:
        return _PSEUDO_PARAMETERS[name]
    raise _Unresolvable(name)


def _as_text(value: Any) -> str:
    # CloudFormation turns YAML booleans into "true"/"false" when a string is expected.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# ---------------------------------------------------------------------------------------------------- tables
# The only table properties the local stack uses; the rest (SSE keys, tags, Kinesis streams...) may refer to
# things that exist only in AWS and are never resolved.
_LOCAL_TABLE_PROPERTIES = (
    "KeySchema",
    "AttributeDefinitions",
    "BillingMode",
    "ProvisionedThroughput",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "StreamSpecification",
    "TimeToLiveSpecification",
)


def _table_properties(logical_id: str, resource: Mapping[str, Any], template: Mapping[str, Any]) -> dict[str, Any]:
    properties = resource.get("Properties") or {}
    try:
        return {name: _resolve(properties[name], template) for name in _LOCAL_TABLE_PROPERTIES if name in properties}
    except _Unresolvable as exc:
        raise ValueError(f"table {logical_id}: cannot resolve {exc} locally; use literal key schemas") from None


def _index(definition: Mapping[str, Any], *, with_throughput: bool) -> dict[str, Any]:
    index = {key: definition[key] for key in ("IndexName", "KeySchema", "Projection") if key in definition}
    if with_throughput and "ProvisionedThroughput" in definition:
        index["ProvisionedThroughput"] = definition["ProvisionedThroughput"]
    return index


def dynamodb_tables(template: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``create_table`` keyword arguments for every ``AWS::DynamoDB::Table``, named after its logical id.

    Key schema, attribute definitions, billing mode, throughput, indexes (with their projections) and
    streams are copied; SSE, point-in-time recovery, TTL, tags and the like are not ``create_table``
    arguments (TTL: see ``ttl_settings``) and mean nothing locally.
    """
    tables = []
    for logical_id, resource in _resources(template, TABLE_TYPE):
        properties = _table_properties(logical_id, resource, template)
        kwargs: dict[str, Any] = {
            "TableName": logical_id,
            "KeySchema": properties["KeySchema"],
            "AttributeDefinitions": properties["AttributeDefinitions"],
            "BillingMode": properties.get("BillingMode", "PROVISIONED"),
        }
        if "ProvisionedThroughput" in properties:
            kwargs["ProvisionedThroughput"] = properties["ProvisionedThroughput"]
        if properties.get("GlobalSecondaryIndexes"):
            kwargs["GlobalSecondaryIndexes"] = [
                _index(gsi, with_throughput=True) for gsi in properties["GlobalSecondaryIndexes"]
            ]
        if properties.get("LocalSecondaryIndexes"):
            kwargs["LocalSecondaryIndexes"] = [
                _index(lsi, with_throughput=False) for lsi in properties["LocalSecondaryIndexes"]
            ]
        stream = properties.get("StreamSpecification")
        if stream and stream.get("StreamViewType"):
            # CloudFormation enables a stream by naming its view type; the API wants both fields.
            kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
        tables.append(kwargs)
    return tables


def ttl_settings(template: Mapping[str, Any]) -> dict[str, str]:
    """Table name -> TTL attribute, for every table whose ``TimeToLiveSpecification`` is enabled."""
    settings = {}
    for logical_id, resource in _resources(template, TABLE_TYPE):
        spec = _table_properties(logical_id, resource, template).get("TimeToLiveSpecification") or {}
        if spec.get("Enabled") in (True, "true", "True") and spec.get("AttributeName"):
            settings[logical_id] = str(spec["AttributeName"])
    return settings


def create_local_tables(dynamodb_client: Any, template: Mapping[str, Any]) -> list[str]:
    """Create the template's tables that do not exist yet and apply their TTL settings.

    Idempotent: existing tables are left as they are (their TTL is still switched on if it is off).
    Returns the names of all the template's tables, created now or before.
    """
    existing: set[str] = set()
    for page in dynamodb_client.get_paginator("list_tables").paginate():
        existing.update(page.get("TableNames", []))
    names = []
    for kwargs in dynamodb_tables(template):
        if kwargs["TableName"] not in existing:
            dynamodb_client.create_table(**kwargs)
            dynamodb_client.get_waiter("table_exists").wait(
                TableName=kwargs["TableName"], WaiterConfig={"Delay": 1, "MaxAttempts": 30}
            )
        names.append(kwargs["TableName"])
    for table_name, attribute in ttl_settings(template).items():
        current = dynamodb_client.describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
        if current.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
            continue
        dynamodb_client.update_time_to_live(
            TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute}
        )
    return names


# ------------------------------------------------------------------------------------------------- functions
@dataclass
class Route:
    """One HTTP API route of one function, as API Gateway would dispatch it."""

    method: str
    """Upper case; ``ANY`` matches every method."""
    path: str
    """As in the template: ``/qimen``, ``/orders/{id}``, ``/{proxy+}``; ``$default`` for the catch-all route."""
    function_id: str
    code_uri: str
    handler: str
    auth: str
    """``NONE`` or ``AWS_IAM`` (other authorizers keep their name; the local stack does not emulate them)."""
    environment: dict[str, str] = field(default_factory=dict)
    timeout_s: int = _DEFAULT_TIMEOUT_S
    memory_mb: int = _DEFAULT_MEMORY_MB
    reserved_concurrency: int | None = None
    """``ReservedConcurrentExecutions``: the most instances of the function that run at once (None: no limit)."""

    @property
    def route_key(self) -> str:
        """``POST /qimen`` as in the event's ``routeKey``; ``$default`` for the catch-all route."""
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"


@dataclass
class ScheduledFunction:
    """One schedule of one function. ``rate_seconds`` is None for ``cron(...)``/``at(...)`` expressions."""

    function_id: str
    code_uri: str
    handler: str
    rate_seconds: int | None
    environment: dict[str, str] = field(default_factory=dict)
    expression: str = ""
    enabled: bool = True
    timeout_s: int = _DEFAULT_TIMEOUT_S
    memory_mb: int = _DEFAULT_MEMORY_MB
    reserved_concurrency: int | None = None


def _globals(template: Mapping[str, Any], section: str) -> dict[str, Any]:
    return dict((template.get("Globals") or {}).get(section) or {})


def _function_setting(template: Mapping[str, Any], properties: Mapping[str, Any], name: str, default: Any) -> Any:
    if name in properties:
        return properties[name]
    return _globals(template, "Function").get(name, default)


def _int_setting(
    template: Mapping[str, Any], logical_id: str, properties: Mapping[str, Any], name: str, default: int
) -> int:
    try:
        return int(_resolve(_function_setting(template, properties, name, default), template))
    except (_Unresolvable, TypeError, ValueError):
        raise ValueError(f"function {logical_id}: {name} is not a number the local stack can resolve") from None


def _reserved_concurrency(template: Mapping[str, Any], properties: Mapping[str, Any]) -> int | None:
    """``ReservedConcurrentExecutions`` as a number, or None (no limit) when it is absent, 0, or not known
    locally: the template sets it through a condition (``!If`` on ``SyncReservedConcurrency``, default none)."""
    try:
        value = int(_resolve(properties.get("ReservedConcurrentExecutions"), template) or 0)
    except (_Unresolvable, TypeError, ValueError):
        return None
    return value if value > 0 else None


def _environment(template: Mapping[str, Any], properties: Mapping[str, Any]) -> dict[str, str]:
    """Globals merged with the function's own variables, resolved for the local stack.

    Values the local stack cannot know (``!Ref BridgeSecret``, ARNs) are dropped: it provides those itself.
    """
    merged: dict[str, Any] = {}
    merged.update((_globals(template, "Function").get("Environment") or {}).get("Variables") or {})
    merged.update((properties.get("Environment") or {}).get("Variables") or {})
    environment = {}
    for name, value in merged.items():
        try:
            resolved = _resolve(value, template)
        except _Unresolvable:
            continue
        if isinstance(resolved, (dict, list)):
            continue
        environment[name] = _as_text(resolved)
    return environment


def _functions(template: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(logical id, merged function settings, events) of every SAM function."""
    for logical_id, resource in _resources(template, FUNCTION_TYPE):
        properties = resource.get("Properties") or {}
        settings = {
            "function_id": logical_id,
            "code_uri": str(_function_setting(template, properties, "CodeUri", "")),
            "handler": str(_function_setting(template, properties, "Handler", "")),
            "environment": _environment(template, properties),
            "timeout_s": _int_setting(template, logical_id, properties, "Timeout", _DEFAULT_TIMEOUT_S),
            "memory_mb": _int_setting(template, logical_id, properties, "MemorySize", _DEFAULT_MEMORY_MB),
            "reserved_concurrency": _reserved_concurrency(template, properties),
        }
        yield logical_id, settings, dict(properties.get("Events") or {})


def _route_auth(template: Mapping[str, Any], event_properties: Mapping[str, Any]) -> str:
    authorizer = (event_properties.get("Auth") or {}).get("Authorizer")
    if authorizer is None:
        # No authorizer on the route: the API's default authorizer, if any, applies.
        api_auth: Mapping[str, Any] = _globals(template, "HttpApi").get("Auth") or {}
        api_id = event_properties.get("ApiId")
        if isinstance(api_id, dict) and "Ref" in api_id:
            api = (template.get("Resources") or {}).get(api_id["Ref"]) or {}
            api_auth = (api.get("Properties") or {}).get("Auth") or api_auth
        authorizer = api_auth.get("DefaultAuthorizer", "NONE")
    return str(authorizer)


def http_routes(template: Mapping[str, Any]) -> list[Route]:
    """Every ``HttpApi`` event of every function, with its handler, auth and local environment."""
    routes = []
    for _, settings, events in _functions(template):
        for event in events.values():
            if not isinstance(event, dict) or event.get("Type") != "HttpApi":
                continue
            properties = event.get("Properties") or {}
            path = properties.get("Path")
            method = str(properties.get("Method") or "ANY").upper()
            if method == "X-AMAZON-APIGATEWAY-ANY-METHOD":
                method = "ANY"
            routes.append(
                Route(
                    method=method,
                    path=str(path) if path else "$default",
                    auth=_route_auth(template, properties),
                    **settings,
                )
            )
    return routes


_RATE = re.compile(r"^rate\(\s*(\d+)\s+(second|minute|hour|day)s?\s*\)$")
_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def parse_rate(expression: str) -> int | None:
    """Seconds between runs of ``rate(N unit[s])``; None for ``cron(...)`` and ``at(...)``.

    Raises ``ValueError`` for anything else, so that a typo does not silently stop a schedule.
    """
    text = expression.strip()
    match = _RATE.match(text)
    if match:
        return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if text.startswith(("cron(", "at(")) and text.endswith(")"):
        return None
    raise ValueError(f"unsupported schedule expression {expression!r}: expected rate(N minutes), cron(...) or at(...)")


def scheduled_functions(template: Mapping[str, Any]) -> list[ScheduledFunction]:
    """Every ``Schedule`` / ``ScheduleV2`` event of every function; rates resolved from parameter defaults."""
    schedules = []
    for logical_id, settings, events in _functions(template):
        for name, event in events.items():
            if not isinstance(event, dict) or event.get("Type") not in ("Schedule", "ScheduleV2"):
                continue
            properties = event.get("Properties") or {}
            key = "Schedule" if event["Type"] == "Schedule" else "ScheduleExpression"
            try:
                expression = str(_resolve(properties.get(key, ""), template))
            except _Unresolvable as exc:
                raise ValueError(f"{logical_id}/{name}: cannot resolve {exc} in the schedule expression") from None
            if event["Type"] == "Schedule":
                enabled = (
                    properties.get("Enabled", True) not in (False, "false") and properties.get("State") != "DISABLED"
                )
            else:
                enabled = properties.get("State", "ENABLED") != "DISABLED"
            schedules.append(
                ScheduledFunction(
                    rate_seconds=parse_rate(expression), expression=expression, enabled=enabled, **settings
                )
            )
    return schedules


# -------------------------------------------------------------------------------------------------- handlers
_handler_cache: dict[tuple[str, str, str], Callable[..., Any]] = {}


def _handler_source(project_root: str | Path, code_uri: str, handler: str) -> tuple[Path, str, str]:
    """(the handler's file, its module path, the attribute) for ``code_uri`` and ``module.function``."""
    module_path, _, attribute = handler.rpartition(".")
    if not module_path or not attribute:
        raise ValueError(f"handler {handler!r}: expected 'module.function'")
    source = Path(project_root).resolve() / code_uri / (module_path.replace(".", "/") + ".py")
    if not source.is_file():
        raise FileNotFoundError(f"handler {handler!r}: {source} does not exist")
    return source, module_path, attribute


def _module_name(source: Path, code_uri: str, module_path: str, suffix: str = "") -> str:
    # Unique per file: two functions' app.py (or two project roots in tests) never share a module.
    slug = re.sub(r"\W", "_", f"{code_uri.strip('/')}__{module_path}")
    digest = hashlib.sha1(str(source).encode(), usedforsecurity=False).hexdigest()[:8]
    return f"_bridge_function_{slug}_{digest}" + re.sub(r"\W", "_", suffix)


def _execute_module(
    source: Path, module_name: str, handler: str, attribute: str
) -> tuple[ModuleType, Callable[..., Any]]:
    spec = importlib.util.spec_from_file_location(module_name, source)
    if spec is None or spec.loader is None:  # pragma: no cover - only for non-.py files
        raise ImportError(f"cannot import {source}")
    module = importlib.util.module_from_spec(spec)
    # Registered before execution, as a normal import would, so dataclasses and pydantic can find it.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    function = getattr(module, attribute, None)
    if not callable(function):
        raise AttributeError(f"handler {handler!r}: {source} has no callable {attribute!r}")
    return module, function


def load_handler(project_root: str | Path, code_uri: str, handler: str) -> Callable[..., Any]:
    """Import ``<code_uri>/<module>.py`` under a module name unique to that folder and return the handler.

    Every function folder has its own ``app.py``; importing them by file path under distinct names keeps
    them apart in ``sys.modules``. Cached per (project root, code_uri, handler): one "container" each. The
    local stack itself does not use this one: it loads an instance per concurrent invocation
    (``load_function_instance``).
    """
    key = (str(Path(project_root).resolve()), code_uri, handler)
    if key in _handler_cache:
        return _handler_cache[key]
    source, module_path, attribute = _handler_source(project_root, code_uri, handler)
    _, function = _execute_module(source, _module_name(source, code_uri, module_path), handler, attribute)
    _handler_cache[key] = function
    return function


def load_function_instance(
    project_root: str | Path, code_uri: str, handler: str, instance: str
) -> tuple[ModuleType, Callable[..., Any]]:
    """A fresh copy of the handler's module, as a new Lambda execution environment would import it: its
    module-level state (the Powertools resolver and its current event, caches) belongs to this copy alone.

    ``instance`` names the copy (``QimenCallbackFunction-2``); loading the same name again replaces it. What the
    module imports is shared: ``taobao_bridge`` keeps no per-invocation state at module level; Powertools does,
    which ``bridge_local.functions`` deals with.
    """
    source, module_path, attribute = _handler_source(project_root, code_uri, handler)
    return _execute_module(source, _module_name(source, code_uri, module_path, f"__{instance}"), handler, attribute)
