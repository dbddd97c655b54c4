"""Settings from the environment and Secrets Manager.

Every environment variable name is a constant here. An explicit environment variable beats the secret;
the secret (JSON, fetched through Powertools parameters and cached) beats the local defaults, which apply
only when ``BRIDGE_ENV=local`` so a misconfigured deployment fails loudly instead of signing with a
well-known key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigurationError
from .signing import SignMethod

__all__ = [
    "ENV",
    "LOCAL_DEFAULTS",
    "SECRET_KEYS",
    "SecretUnavailable",
    "Settings",
    "load_settings",
    "metrics_namespace",
]


class ENV:
    """Names of the environment variables the package reads."""

    BRIDGE_ENV = "BRIDGE_ENV"  # "local" on a laptop, "aws" in Lambda
    BRIDGE_SECRET_ID = "BRIDGE_SECRET_ID"  # Secrets Manager id/ARN of the JSON secret
    SECRET_MAX_AGE_S = "BRIDGE_SECRET_MAX_AGE_S"
    QIMEN_APP_SECRET = "QIMEN_APP_SECRET"
    TOP_APP_KEY = "TOP_APP_KEY"
    TOP_APP_SECRET = "TOP_APP_SECRET"
    TOP_SESSION_KEY = "TOP_SESSION_KEY"
    TOP_GATEWAY_URL = "TOP_GATEWAY_URL"
    TOP_SIGN_METHOD = "TOP_SIGN_METHOD"
    FULFILLMENT_TABLE = "FULFILLMENT_TABLE"
    INVENTORY_TABLE = "INVENTORY_TABLE"
    QIMEN_TIMESTAMP_WINDOW_S = "QIMEN_TIMESTAMP_WINDOW_S"
    QIMEN_MAX_BODY_BYTES = "QIMEN_MAX_BODY_BYTES"
    ORDER_RETENTION_DAYS = "ORDER_RETENTION_DAYS"
    OUTBOX_TABLE = "OUTBOX_TABLE"
    OUTBOX_RETENTION_DAYS = "OUTBOX_RETENTION_DAYS"  # how long settled records keep their outcome
    SYNC_MAX_ATTEMPTS = "SYNC_MAX_ATTEMPTS"  # transient failures before a record is settled dead
    SYNC_RETRY_BASE_S = "SYNC_RETRY_BASE_S"  # first retry delay of a record; doubles per attempt
    SYNC_DEADLINE_MARGIN_S = "SYNC_DEADLINE_MARGIN_S"  # no new TOP call with less Lambda time left
    SYNC_EXTERNAL_CONCURRENCY = "SYNC_EXTERNAL_CONCURRENCY"  # external orders in flight at once
    SYNC_SESSION_RECHECK_S = "SYNC_SESSION_RECHECK_S"  # a paused risk flow probes the same session again
    TOP_TIMEOUT_S = "TOP_TIMEOUT_S"  # one TOP call attempt; doubled for records whose last send timed out


DEFAULT_METRICS_NAMESPACE = "TaobaoBridge"


class SecretUnavailable(ConfigurationError):
    """Raised when the Secrets Manager secret cannot be read or is not a JSON object, so callers can tell an
    outage of the secret from a setting that is wrong. Its message names the secret, never a value."""


def metrics_namespace() -> str:
    """The CloudWatch namespace for package-level Powertools Metrics: POWERTOOLS_METRICS_NAMESPACE when set
    (the template sets it), else the default. Package modules pass it explicitly because they may be imported
    before the environment is complete (tests, the local stack), and Powertools reads it only at creation."""
    return os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_METRICS_NAMESPACE


# Keys of the JSON object in the Secrets Manager secret, by the environment variable they stand for.
SECRET_KEYS = {
    ENV.QIMEN_APP_SECRET: "qimen_app_secret",
    ENV.TOP_APP_KEY: "top_app_key",
    ENV.TOP_APP_SECRET: "top_app_secret",
    ENV.TOP_SESSION_KEY: "top_session_key",
}

PRODUCTION_GATEWAY = "https://eco.taobao.com/router/rest"

# Used only with BRIDGE_ENV=local: the local stack, its TOP sandbox and the sample events share them.
LOCAL_DEFAULTS: Mapping[str, str] = {
    ENV.QIMEN_APP_SECRET: "local-qimen-app-secret",
    ENV.TOP_APP_KEY: "12345678",
    ENV.TOP_APP_SECRET: "local-top-app-secret",
    ENV.TOP_SESSION_KEY: "local-top-session-key",
    ENV.TOP_GATEWAY_URL: "http://127.0.0.1:3001/router/rest",
    ENV.FULFILLMENT_TABLE: "FulfillmentOrdersTable",
    ENV.INVENTORY_TABLE: "InventoryTable",
    ENV.OUTBOX_TABLE: "OutboxTable",
}


@dataclass(frozen=True)
class Settings:
    """Everything the functions need, resolved once per container (secrets re-read after their max age)."""

    is_local: bool
    qimen_app_secret: str
    top_app_key: str
    top_app_secret: str
    top_session_key: str
    top_gateway_url: str
    top_sign_method: SignMethod
    fulfillment_table: str
    inventory_table: str
    qimen_timestamp_window_s: int = 600
    qimen_max_body_bytes: int = 256 * 1024
    order_retention_days: int = 180
    outbox_table: str = ""
    outbox_retention_days: int = 30
    sync_max_attempts: int = 8
    sync_retry_base_s: int = 30
    sync_deadline_margin_s: int = 15
    sync_external_concurrency: int = 16
    sync_session_recheck_s: int = 3600
    top_timeout_s: int = 10

    def require(self, field: str) -> str:
        """The value of a string setting, or ``ConfigurationError`` naming where it comes from."""
        found = getattr(self, field)
        if not found:
            env_name = field.upper()
            where = f" or key {SECRET_KEYS[env_name]!r} of the secret" if env_name in SECRET_KEYS else ""
            raise ConfigurationError(f"setting {env_name}{where} is missing")
        return str(found)

    def __repr__(self) -> str:  # secrets never reach a log line through repr()
        return (
            f"Settings(is_local={self.is_local}, top_app_key={self.top_app_key!r}, "
            f"top_gateway_url={self.top_gateway_url!r}, fulfillment_table={self.fulfillment_table!r}, "
            f"inventory_table={self.inventory_table!r})"
        )


def _int(environ: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigurationError(f"{name} must be >= {minimum}, got {value}")
    return value


_providers: dict[str, Any] = {}


def _secrets_provider() -> Any:
    """One Powertools secrets provider per container (it holds the cache), with a client whose timeouts fit the
    Qimen callback's budget: botocore's defaults (60 s, retried) would outlast the function and answer a 5xx."""
    provider = _providers.get("secrets")
    if provider is None:
        import boto3
        from aws_lambda_powertools.utilities import parameters
        from botocore.config import Config

        config = Config(connect_timeout=1, read_timeout=2, retries={"mode": "standard", "total_max_attempts": 2})
        # A client of boto3's default session, which the DynamoDB clients use too: left to itself Powertools
        # opens a session of its own, and loading the endpoint rules and service index twice costs a cold
        # start about 40 ms.
        client = boto3.client("secretsmanager", config=config)
        provider = _providers["secrets"] = parameters.SecretsProvider(boto3_client=client)
    return provider


def _secret_values(environ: Mapping[str, str]) -> dict[str, Any]:
    secret_id = environ.get(ENV.BRIDGE_SECRET_ID, "").strip()
    if not secret_id:
        return {}
    from aws_lambda_powertools.utilities import parameters  # imported here: only deployed stacks need it

    max_age = _int(environ, ENV.SECRET_MAX_AGE_S, 300)
    try:
        value = _secrets_provider().get(secret_id, transform="json", max_age=max_age)
    except parameters.exceptions.GetParameterError as exc:
        raise SecretUnavailable(f"cannot read secret {secret_id!r}: {exc}") from exc
    except parameters.exceptions.TransformParameterError:
        # Not chained: the transform error may quote the secret's text.
        raise SecretUnavailable(f"cannot read secret {secret_id!r}: it is not JSON") from None
    if not isinstance(value, dict):
        raise SecretUnavailable(f"secret {secret_id!r} must hold a JSON object")
    return value


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Resolve settings: environment variable, then the secret, then (local only) the documented defaults."""
    env = os.environ if environ is None else environ
    is_local = env.get(ENV.BRIDGE_ENV, "").strip().lower() == "local"
    secret = _secret_values(env)

    def value(name: str) -> str:
        # Missing values stay empty here: each function checks what it needs with Settings.require().
        found = env.get(name, "").strip()
        if not found and name in SECRET_KEYS:
            found = str(secret.get(SECRET_KEYS[name]) or "").strip()
        if not found and is_local:
            found = LOCAL_DEFAULTS.get(name, "")
        return found

    sign_method_text = env.get(ENV.TOP_SIGN_METHOD, "").strip() or SignMethod.HMAC_SHA256.value
    try:
        sign_method = SignMethod(sign_method_text)
    except ValueError:
        allowed = ", ".join(m.value for m in SignMethod)
        raise ConfigurationError(f"{ENV.TOP_SIGN_METHOD} must be one of {allowed}, got {sign_method_text!r}") from None

    return Settings(
        is_local=is_local,
        qimen_app_secret=value(ENV.QIMEN_APP_SECRET),
        top_app_key=value(ENV.TOP_APP_KEY),
        top_app_secret=value(ENV.TOP_APP_SECRET),
        top_session_key=value(ENV.TOP_SESSION_KEY),
        top_gateway_url=value(ENV.TOP_GATEWAY_URL) or PRODUCTION_GATEWAY,
        top_sign_method=sign_method,
        fulfillment_table=value(ENV.FULFILLMENT_TABLE),
        inventory_table=value(ENV.INVENTORY_TABLE),
        qimen_timestamp_window_s=_int(env, ENV.QIMEN_TIMESTAMP_WINDOW_S, 600),
        qimen_max_body_bytes=_int(env, ENV.QIMEN_MAX_BODY_BYTES, 256 * 1024, minimum=1),
        order_retention_days=_int(env, ENV.ORDER_RETENTION_DAYS, 180, minimum=1),
        outbox_table=value(ENV.OUTBOX_TABLE),
        outbox_retention_days=_int(env, ENV.OUTBOX_RETENTION_DAYS, 30, minimum=1),
        sync_max_attempts=_int(env, ENV.SYNC_MAX_ATTEMPTS, 8, minimum=1),
        sync_retry_base_s=_int(env, ENV.SYNC_RETRY_BASE_S, 30, minimum=1),
        sync_deadline_margin_s=_int(env, ENV.SYNC_DEADLINE_MARGIN_S, 15, minimum=1),
        sync_external_concurrency=_int(env, ENV.SYNC_EXTERNAL_CONCURRENCY, 16, minimum=1),
        sync_session_recheck_s=_int(env, ENV.SYNC_SESSION_RECHECK_S, 3600, minimum=1),
        top_timeout_s=_int(env, ENV.TOP_TIMEOUT_S, 10, minimum=1),
    )
