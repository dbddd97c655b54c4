"""Where the command's requests go: the local stack (default), a base URL (``--url``), or a deployed stage
(``--stack NAME``: its CloudFormation outputs, requests signed with the caller's AWS credentials)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from .errors import CliError, UsageError
from .sigv4 import SigV4

__all__ = [
    "API_URL_OUTPUT",
    "EVENTS_LOG_GROUP_OUTPUT",
    "QIMEN_URL_OUTPUT",
    "SECRET_OUTPUT",
    "DeployedStack",
    "Target",
    "default_local_url",
    "local_qimen_secret",
    "resolve_target",
]

# Output names of template.yaml (Outputs).
API_URL_OUTPUT = "HttpApiUrl"
QIMEN_URL_OUTPUT = "QimenEndpoint"
SECRET_OUTPUT = "BridgeSecretArn"  # noqa: S105 - an output name, not a secret
EVENTS_LOG_GROUP_OUTPUT = "FulfillmentEventLogGroupName"
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def default_local_url(environ: dict[str, str] | None = None) -> str:
    """The local stack of ``make run``: ``http://127.0.0.1:$PORT`` (3000 unless PORT says otherwise)."""
    env = os.environ if environ is None else environ
    return f"http://127.0.0.1:{env.get('PORT') or '3000'}"


@dataclass
class DeployedStack:
    """A deployed stage: its outputs, read once, and a boto3 session in its region."""

    name: str
    region: str
    outputs: dict[str, str]
    session: Any = field(repr=False)

    def output(self, key: str) -> str:
        value = self.outputs.get(key)
        if not value:
            raise CliError(
                f"stack {self.name} has no output {key} (deployed from an older template? run make deploy-dev)"
            )
        return value

    def client(self, service: str) -> Any:
        from botocore.config import Config

        config = Config(connect_timeout=5, read_timeout=20, retries={"mode": "standard", "total_max_attempts": 3})
        return self.session.client(service, region_name=self.region, config=config)

    def qimen_secret(self) -> str:
        """``qimen_app_secret`` from the stack's Secrets Manager secret (output ``BridgeSecretArn``)."""
        arn = self.output(SECRET_OUTPUT)
        answer = aws_call(lambda: self.client("secretsmanager").get_secret_value(SecretId=arn), f"reading {arn}")
        try:
            values = json.loads(answer.get("SecretString") or "")
        except ValueError:
            values = None
        secret = values.get("qimen_app_secret") if isinstance(values, dict) else None
        if not isinstance(secret, str) or not secret:
            raise CliError(f"the secret {arn} has no qimen_app_secret (docs/OPERATIONS.md, 'Fill the secret')")
        return secret


@dataclass
class Target:
    """The base URL of the HTTP API, how to sign requests to it, and what to say when it cannot be reached."""

    base_url: str
    local: bool = False  # a loopback URL: "not running" means `make run` was not started
    auth: httpx.Auth | None = None
    stack: DeployedStack | None = None

    @property
    def qimen_url(self) -> str:
        if self.stack is not None:
            return self.stack.output(QIMEN_URL_OUTPUT)
        return f"{self.base_url}/qimen"

    def describe(self) -> str:
        if self.stack is not None:
            return f"stack {self.stack.name} ({self.stack.region})"
        return ("the local stack at " if self.local else "") + self.base_url

    def client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(timeout=timeout, auth=self.auth, headers={"user-agent": "taobao-bridge-cli"})


def resolve_target(
    *, url: str | None = None, stack: str | None = None, region: str | None = None, sign: bool = False
) -> Target:
    """The target the global options name. ``sign`` signs requests to ``--url`` too (region from ``--region``
    or the execute-api host name)."""
    if url and stack:
        raise UsageError("--url and --stack name two targets: give one")
    if stack:
        deployed = describe_stack(stack, region)
        session = deployed.session
        return Target(
            deployed.output(API_URL_OUTPUT).rstrip("/"),
            auth=SigV4(_credentials_of(session), deployed.region),
            stack=deployed,
        )
    base = (url or default_local_url()).rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--url must be an http(s) base URL such as http://127.0.0.1:3000, got {base!r}")
    auth = None
    if sign:
        import boto3

        signing_region = region or _region_of_host(parts.hostname) or boto3.Session().region_name
        if not signing_region:
            raise UsageError("--sign needs a region: pass --region (or use an execute-api URL)")
        auth = SigV4(_credentials_of(boto3.Session(region_name=signing_region)), signing_region)
    return Target(base, local=parts.hostname in _LOCAL_HOSTS, auth=auth)


def describe_stack(name: str, region: str | None) -> DeployedStack:
    """The stack's outputs, with the caller's credentials; one-line errors for the usual failures."""
    import boto3

    session = boto3.Session(region_name=region) if region else boto3.Session()
    if not session.region_name:
        raise UsageError("--stack needs a region: pass --region or set AWS_REGION")
    cloudformation = DeployedStack(name, session.region_name, {}, session).client("cloudformation")
    answer = aws_call(lambda: cloudformation.describe_stacks(StackName=name), f"reading stack {name}")
    stacks = answer.get("Stacks") or []
    if not stacks:
        raise CliError(f"stack {name} not found in {session.region_name}")
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in stacks[0].get("Outputs") or []}
    return DeployedStack(name, session.region_name, outputs, session)


def aws_call(call: Any, doing: str) -> Any:
    """``call()``, with botocore's failures turned into one line that names what was being done."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError
    from botocore.parsers import ResponseParserError

    try:
        return call()
    except ResponseParserError:  # not a BotoCoreError: an HTML error page from a proxy or a broken endpoint
        raise CliError(f"{doing}: the answer was not an AWS answer (an endpoint or proxy in the way?)") from None
    except NoCredentialsError:
        raise CliError(f"{doing}: no AWS credentials (aws configure, AWS_PROFILE or AWS_ACCESS_KEY_ID)") from None
    except NoRegionError:
        raise UsageError(f"{doing}: no AWS region: pass --region or set AWS_REGION") from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise CliError(f"{doing}: {error.get('Code', 'error')}: {_one_line(error.get('Message', ''))}") from None
    except BotoCoreError as exc:
        raise CliError(f"{doing}: {_one_line(str(exc))}") from None


def local_qimen_secret() -> str:
    """The Qimen secret the local stack checks: ``.local/secrets.json``, else QIMEN_APP_SECRET, else the local
    default (the order ``make run`` applies them in)."""
    from taobao_bridge.settings import ENV, LOCAL_DEFAULTS

    try:
        from bridge_local.local_secrets import SECRETS_FILE, SecretsFileError, read_secrets

        from_file = read_secrets(SECRETS_FILE).get("qimen_app_secret")
    except (ImportError, SecretsFileError, OSError):
        from_file = None
    return from_file or os.environ.get(ENV.QIMEN_APP_SECRET) or LOCAL_DEFAULTS[ENV.QIMEN_APP_SECRET]


def _credentials_of(session: Any) -> Any:
    credentials = session.get_credentials()
    if credentials is None:
        raise CliError("no AWS credentials to sign with (aws configure, AWS_PROFILE or AWS_ACCESS_KEY_ID)")
    return lambda: credentials


def _region_of_host(host: str) -> str | None:
    # <api-id>.execute-api.<region>.amazonaws.com
    labels = host.split(".")
    if len(labels) >= 4 and labels[1] == "execute-api":
        return labels[2]
    return None


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]
