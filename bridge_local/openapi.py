"""The OpenAPI 3.1 description of the HTTP API, built from the same pydantic models the functions validate
with, so the document and the code cannot drift. The local stack serves it at ``GET /openapi.json``;
``python -m bridge_local.openapi > openapi.json`` prints it.

Powertools can generate a description from typed routes, but the intake and Qimen routes read their raw bodies
(the Qimen signature covers the exact bytes; intake takes one record or a list), so the bodies are described
here from the models and the answers from the shapes the handlers build (README "Intake", "The Qimen callback").
"""

from __future__ import annotations

import json
import sys
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from taobao_bridge.intake import MAX_RECORDS_PER_REQUEST
from taobao_bridge.kinds import KINDS
from taobao_bridge.models.fulfillment import METHOD as QIMEN_METHOD
from taobao_bridge.models.fulfillment import FulfillmentCreateRequest
from taobao_bridge.outbox import AcceptStatus, RecordState

__all__ = ["INTAKE_ERRORS", "QIMEN_CODES", "build"]

# Every ``error`` an intake answer can carry, by HTTP status.
INTAKE_ERRORS: dict[int, list[str]] = {
    400: ["invalid_records", "invalid_json"],
    404: ["not_found"],
    409: ["conflict"],
    413: ["too_many_records", "record_too_large"],
    503: ["storage_unavailable"],
}
# Every ``biz_error_code`` of a Qimen answer (qimen.QimenAnswerCode plus the exact sign-failure answer).
QIMEN_CODES = [
    "sign-check-failure",
    "INVALID_TIMESTAMP",
    "UNKNOWN_METHOD",
    "BODY_TOO_LARGE",
    "INVALID_JSON",
    "INVALID_PARAMETER",
    "ORDER_CONFLICT",
    "NO_INVENTORY",
    "SYSTEM_ERROR",
]


def build() -> dict[str, Any]:
    """The OpenAPI document (a JSON-able dict)."""
    mode: Literal["validation"] = "validation"
    models: list[tuple[type[BaseModel], Literal["validation"]]] = [(spec.dto, mode) for spec in KINDS.values()]
    models.append((FulfillmentCreateRequest, mode))
    names, top = models_json_schema(models, ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    schemas.update(_answer_schemas())
    paths: dict[str, Any] = {"/qimen": _qimen_path(names[(FulfillmentCreateRequest, "validation")]["$ref"])}
    for spec in KINDS.values():
        record = names[(spec.dto, "validation")]["$ref"]
        paths[f"/v1/{spec.path}"] = {**_submit_path(spec.path, record), **_list_path(spec.path)}
        paths[f"/v1/{spec.path}/{{id}}"] = _show_path(spec.path)
        paths[f"/v1/{spec.path}/{{id}}/retry"] = _retry_one_path(spec.path)
        paths[f"/v1/{spec.path}/retry"] = _retry_bulk_path(spec.path)
    paths.update(_fulfillment_order_paths())
    paths.update(_ops_paths())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "taobao-bridge HTTP API",
            "version": "1",
            "description": (
                "The Qimen callback; intake of merchant records, fulfillment orders for store systems and the "
                "operators' routes (IAM-signed in AWS; docs/OPERATIONS.md)."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"sigv4": {"type": "apiKey", "name": "Authorization", "in": "header"}},
        },
    }


def _json(schema_ref: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": schema_ref}}}}


def _error(status: int) -> dict[str, Any]:
    return _json(f"#/components/schemas/Error{status}", f"error: {', '.join(INTAKE_ERRORS[status])}")


def _submit_path(path: str, record_ref: str) -> dict[str, Any]:
    body = {
        "oneOf": [
            {"$ref": record_ref},
            {"type": "array", "items": {"$ref": record_ref}, "minItems": 1, "maxItems": MAX_RECORDS_PER_REQUEST},
        ]
    }
    return {
        "post": {
            "operationId": f"submit_{path.replace('-', '_')}",
            "security": [{"sigv4": []}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {
                "202": _json("#/components/schemas/Accepted", "every record is stored"),
                **{str(status): _error(status) for status in (400, 404, 409, 413, 503)},
            },
        }
    }


def _show_path(path: str) -> dict[str, Any]:
    return {
        "get": {
            "operationId": f"show_{path.replace('-', '_')}",
            "security": [{"sigv4": []}],
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": _json("#/components/schemas/Record", "the record's sync state"), "404": _error(404)},
        }
    }


def _query(name: str, description: str, schema: dict[str, Any], *, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


def _in_path(name: str, description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": {"type": "string"}}


_PAGE = [
    _query("after", "the `next` of the previous page; none: from the start", {"type": "string"}),
    _query("limit", "1 to 1000 (default 100)", {"type": "integer", "minimum": 1, "maximum": 1000}),
]


def _operation(operation_id: str, description: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    errors = {str(status): _json("#/components/schemas/OpsError", text) for status, text in _OPS_ERRORS.items()}
    chosen = {code: errors[code] for code in extra.pop("errors", ())}
    return {
        "operationId": operation_id,
        "description": description,
        "security": [{"sigv4": []}],
        **extra,
        "responses": {**responses, **chosen},
    }


_OPS_ERRORS = {
    400: "a parameter breaks its rule (`parameter` names it)",
    404: "no such kind, scope, record or order",
    409: "the record is not in a state this allows (`state` says which)",
    503: "storage unavailable; repeating the request is safe",
}


def _list_path(path: str) -> dict[str, Any]:
    state = {"enum": ["due", "dead", "unconfirmed"]}
    return {
        "get": _operation(
            f"list_{path.replace('-', '_')}",
            "Records in a state, oldest first, with a cursor (README, Operating records).",
            {"200": _json("#/components/schemas/RecordPage", "a page of records")},
            parameters=[_query("state", "the records' state", state, required=True), *_PAGE],
            errors=("400", "404", "503"),
        )
    }


def _retry_one_path(path: str) -> dict[str, Any]:
    return {
        "post": _operation(
            f"retry_one_{path.replace('-', '_')}",
            "One dead or unconfirmed record due again now.",
            {"200": _json("#/components/schemas/OpsAnswer", "`status` retried, `state` due")},
            parameters=[_in_path("id")],
            errors=("404", "409", "503"),
        )
    }


def _retry_bulk_path(path: str) -> dict[str, Any]:
    body = {
        "type": "object",
        "required": ["state"],
        "properties": {
            "state": {"enum": ["dead", "unconfirmed"]},
            "dry_run": {"type": "boolean"},
            "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
        },
    }
    return {
        "post": _operation(
            f"retry_bulk_{path.replace('-', '_')}",
            "A state's oldest records due again, or with `dry_run` only which.",
            {"200": _json("#/components/schemas/OpsAnswer", "`matched`, `retried`, `ids`, `has_more`")},
            requestBody={"required": True, "content": {"application/json": {"schema": body}}},
            errors=("400", "404", "503"),
        )
    }


def _fulfillment_order_paths() -> dict[str, Any]:
    include = _query("include", "`personal`: the personal fields too", {"enum": ["personal"]})
    return {
        "/v1/fulfillment-orders": {
            "get": _operation(
                "list_fulfillment_orders",
                "Orders in the order received, with a cursor (README, Fulfillment orders).",
                {"200": _json("#/components/schemas/OpsAnswer", "`orders`, `next` (always), `has_more`")},
                parameters=[*_PAGE, include],
                errors=("400", "503"),
            )
        },
        "/v1/fulfillment-orders/{fulfillment_order_no}": {
            "get": _operation(
                "show_fulfillment_order",
                "One stored order, its `partner_order_id`, state and receipt time.",
                {"200": _json("#/components/schemas/OpsAnswer", "the order")},
                parameters=[_in_path("fulfillment_order_no"), include],
                errors=("400", "404", "503"),
            )
        },
    }


def _ops_paths() -> dict[str, Any]:
    answer = {"200": _json("#/components/schemas/OpsAnswer", "what was done")}
    kind = _in_path("kind", "writeoff, risk or external_order")
    flows = {
        action: {
            "post": _operation(
                f"flow_{action.replace('-', '_')}",
                f"{action} a flow (README, Operating records)",
                answer,
                parameters=[kind],
                errors=("400", "404", "503"),
            )
        }
        for action in ("pause", "resume", "clear-session-pause")
    }
    return {
        "/v1/ops/status": {
            "get": _operation("status", "Per flow: counts by state, oldest due, pauses, bans, lease.", answer)
        },
        "/v1/ops/bans/{scope}/lift": {
            "post": _operation(
                "lift_ban",
                "Lift a stored ban.",
                answer,
                parameters=[_in_path("scope", "app, writeoff, risk or external_order")],
                errors=("404", "503"),
            )
        },
        **{f"/v1/ops/flows/{{kind}}/{action}": item for action, item in flows.items()},
    }


def _qimen_path(request_ref: str) -> dict[str, Any]:
    query = ["method", "app_key", "timestamp", "sign", "sign_method", "v", "format"]
    return {
        "post": {
            "operationId": "qimen",
            "description": f"Signed Qimen calls; `method` is {QIMEN_METHOD}. Always HTTP 200.",
            "parameters": [
                {
                    "name": name,
                    "in": "query",
                    "required": name in ("method", "timestamp", "sign"),
                    "schema": {"type": "string"},
                }
                for name in query
            ],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": request_ref}}}},
            "responses": {"200": _json("#/components/schemas/QimenAnswer", "the answer (success or a failure code)")},
        }
    }


def _answer_schemas() -> dict[str, Any]:
    statuses = [status.value for status in AcceptStatus]
    states = [state.value for state in RecordState]
    record_status = {
        "type": "object",
        "required": ["id", "status", "state"],
        "properties": {
            "id": {"type": "string"},
            "status": {"enum": statuses},
            "state": {"enum": [*states, None]},
        },
    }
    schemas: dict[str, Any] = {
        "Accepted": {
            "type": "object",
            "required": ["records"],
            "properties": {"records": {"type": "array", "items": record_status}},
        },
        "Record": {
            "type": "object",
            "required": ["kind", "id", "state", "attempts"],
            "properties": {
                "kind": {"type": "string"},
                "id": {"type": "string"},
                "state": {"enum": states},
                "attempts": {"type": "integer"},
                "unknown_outcomes": {"type": "integer"},
                "platform_order_id": {"type": ["string", "null"], "description": "text: a 19-digit id"},
            },
        },
        "RecordPage": {
            "type": "object",
            "required": ["records", "next", "has_more"],
            "properties": {
                "kind": {"type": "string"},
                "state": {"type": "string"},
                "records": {"type": "array", "items": {"$ref": "#/components/schemas/Record"}},
                "next": {"type": ["string", "null"]},
                "has_more": {"type": "boolean"},
            },
        },
        "OpsAnswer": {"type": "object", "description": "README, Operating records / Fulfillment orders"},
        "OpsError": {
            "type": "object",
            "required": ["error", "message"],
            "properties": {"error": {"type": "string"}, "message": {"type": "string"}, "parameter": {"type": "string"}},
        },
        "QimenAnswer": {
            "type": "object",
            "required": ["success"],
            "properties": {
                "success": {"type": ["boolean", "string"]},
                "biz_result": {"enum": ["success", "fail"]},
                "biz_error_code": {"enum": QIMEN_CODES},
                "biz_error_msg": {"type": "string"},
                "partner_order_id": {"type": "string"},
            },
        },
    }
    for status, errors in INTAKE_ERRORS.items():
        schemas[f"Error{status}"] = {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {"enum": errors},
                "message": {"type": "string"},
                "records": {"type": "array", "items": record_status},
            },
        }
    return schemas


if __name__ == "__main__":
    json.dump(build(), sys.stdout, ensure_ascii=False, indent=2)
    print()
