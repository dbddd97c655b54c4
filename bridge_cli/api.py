"""One method per route of the operations contract (docs/OPERATIONS.md; the routes of ``template.yaml``).

Every failure leaves as a ``CliError``: an answer with an error status as ``ApiError`` (the API's ``error`` code
and ``message``), no answer at all as ``NotReachable`` saying what to do.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from .errors import ApiError, CliError, NotReachable
from .target import Target

__all__ = ["OpsApi", "parse_retry_after"]


class OpsApi:
    """The HTTP API of one target. ``http`` defaults to the target's own client (signed for a stack)."""

    def __init__(self, target: Target, http: httpx.Client | None = None) -> None:
        self.target = target
        self.http = http or target.client()

    def close(self) -> None:
        self.http.close()

    # ------------------------------------------------------------------------------------------- orders
    def order(self, order_no: str, *, include_personal: bool = False) -> dict[str, Any]:
        params = {"include": "personal"} if include_personal else None
        return self.get_json(f"/v1/fulfillment-orders/{_segment(order_no)}", params=params)

    def orders(self, *, after: str | None = None, limit: int | None = None) -> dict[str, Any]:
        return self.get_json("/v1/fulfillment-orders", params=_params(after=after, limit=limit))

    # ------------------------------------------------------------------------------------------ records
    def records(self, path: str, state: str, *, after: str | None = None, limit: int | None = None) -> dict[str, Any]:
        return self.get_json(f"/v1/{path}", params=_params(state=state, after=after, limit=limit))

    def record(self, path: str, record_id: str) -> dict[str, Any]:
        return self.get_json(f"/v1/{path}/{_segment(record_id)}")

    def retry(self, path: str, record_id: str) -> dict[str, Any]:
        return self.send_json("POST", f"/v1/{path}/{_segment(record_id)}/retry")

    def retry_by_state(self, path: str, state: str, *, dry_run: bool, limit: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"state": state, "dry_run": dry_run}
        if limit is not None:
            body["limit"] = limit
        return self.send_json("POST", f"/v1/{path}/retry", body)

    def intake(self, path: str, content: bytes) -> httpx.Response:
        """POST records to the intake route; the raw answer (``submit`` reads every status itself)."""
        return self._send("POST", f"/v1/{path}", content=content)

    # --------------------------------------------------------------------------------------- operations
    def status(self) -> dict[str, Any]:
        return self.get_json("/v1/ops/status")

    def pause(self, kind: str, reason: str) -> dict[str, Any]:
        return self.send_json("POST", f"/v1/ops/flows/{kind}/pause", {"reason": reason})

    def resume(self, kind: str) -> dict[str, Any]:
        return self.send_json("POST", f"/v1/ops/flows/{kind}/resume")

    def clear_session_pause(self, kind: str) -> dict[str, Any]:
        return self.send_json("POST", f"/v1/ops/flows/{kind}/clear-session-pause")

    def lift_ban(self, scope: str) -> dict[str, Any]:
        return self.send_json("POST", f"/v1/ops/bans/{scope}/lift")

    # ------------------------------------------------------------------------------------------ plumbing
    def get_json(self, path: str, *, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        return _object_of(self._checked(self._send("GET", path, params=params)))

    def send_json(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        from taobao_bridge.jsonutil import dumps

        content = dumps(body).encode("utf-8") if body is not None else b"{}"
        return _object_of(self._checked(self._send(method, path, content=content)))

    def _send(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None, content: bytes | None = None
    ) -> httpx.Response:
        url = self.target.base_url + path
        headers = {"content-type": "application/json;charset=utf-8"} if content is not None else None
        try:
            return self.http.request(method, url, params=params, content=content, headers=headers)
        except httpx.ConnectError:
            raise NotReachable(self._not_running()) from None
        except httpx.TimeoutException:
            raise NotReachable(f"{self.target.describe()} did not answer {method} {path} in time") from None
        except httpx.HTTPError as exc:
            raise NotReachable(f"{method} {path} to {self.target.describe()} failed: {_one_line(exc)}") from None

    def _not_running(self) -> str:
        if self.target.local:
            return f"the local stack is not running at {self.target.base_url}: start it with `make run`"
        return f"cannot connect to {self.target.describe()}"

    def _checked(self, response: httpx.Response) -> Any:
        if response.is_success:
            try:
                return response.json()
            except ValueError:
                raise CliError(
                    f"{response.request.method} {response.request.url.path} answered {response.status_code} "
                    "with a body that is not JSON"
                ) from None
        raise api_error(response)


def api_error(response: httpx.Response) -> ApiError:
    """The error an answer carries: the API's ``{"error", "message"}``, or API Gateway's ``{"message"}``."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        message = body.get("message")
        if not isinstance(message, str):
            message = _details(body)
        return ApiError(response.status_code, body["error"], _one_line(message), body)
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        text = body["message"]
        if response.status_code == 404 and text == "Not Found":
            text = f"no route {response.request.method} {response.request.url.path} (an older stack?)"
        return ApiError(response.status_code, f"http_{response.status_code}", _one_line(text), body)
    return ApiError(response.status_code, f"http_{response.status_code}", _one_line(response.text[:200]), body)


def parse_retry_after(value: str | None, default: float = 1.0, cap: float = 30.0) -> float:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), within 0..cap."""
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return default
    return min(max(seconds, 0.0), cap)


def _details(body: dict[str, Any]) -> str:
    """A message for an error answer without one, from its other fields (``limit``, ``problem_count``…)."""
    return ", ".join(f"{k}={v}" for k, v in body.items() if k != "error" and isinstance(v, str | int | float))


def _object_of(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise CliError(f"expected a JSON object in the answer, got {type(body).__name__}")
    return body


def _params(**values: Any) -> dict[str, str]:
    return {name: str(value) for name, value in values.items() if value is not None}


def _segment(value: str) -> str:
    return quote(value, safe="")


def _one_line(value: object) -> str:
    return " ".join(str(value).split())[:300]
