"""bridge_local.layer_trim: the layer keeps botocore's data for every service the code calls, and a trimmed botocore
sends each kept service's requests exactly where a whole one does."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path
from typing import Any

import botocore
import botocore.session
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import UnknownServiceError
from botocore.loaders import Loader

from bridge_local.layer_trim import KEPT_SERVICES, TrimError, trim
from bridge_local.template import PROJECT_ROOT

BOTOCORE_DATA = Path(botocore.__file__).parent / "data"
CODE = [PROJECT_ROOT / "layers" / "shared" / "taobao_bridge", PROJECT_ROOT / "functions"]
OTHER_SERVICES = ("s3", "sqs", "lambda", "iam")  # present in a whole botocore, removed by the trim


def clients_created_in(roots: list[Path]) -> dict[str, list[str]]:
    """Every service name given as a literal to ``*.client(...)`` or ``*.create_client(...)``, and where."""
    found: dict[str, list[str]] = {}
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                if node.func.attr not in ("client", "create_client"):
                    continue
                name = (
                    node.args[0]
                    if node.args
                    else next((k.value for k in node.keywords if k.arg == "service_name"), None)
                )
                if isinstance(name, ast.Constant) and isinstance(name.value, str):
                    found.setdefault(name.value, []).append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}")
                elif name is not None:
                    found.setdefault("<not a literal>", []).append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}")
    return found


def test_every_client_the_deployed_code_creates_is_kept() -> None:
    found = clients_created_in(CODE)
    assert {"dynamodb", "secretsmanager", "events"} <= set(found), found  # the scan sees the clients we know of
    missing = {name: where for name, where in found.items() if name not in KEPT_SERVICES}
    assert not missing, f"clients of services the layer's botocore has no data for: {missing}"


@pytest.fixture(scope="module")
def trimmed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A layer folder with a copy of botocore's data (root files, kept services and a few others), trimmed."""
    layer = tmp_path_factory.mktemp("layer")
    data = layer / "botocore" / "data"
    data.mkdir(parents=True)
    for entry in BOTOCORE_DATA.iterdir():
        if entry.is_file():
            shutil.copy2(entry, data / entry.name)
        elif entry.name in KEPT_SERVICES or entry.name in OTHER_SERVICES:
            shutil.copytree(entry, data / entry.name)
    report = trim(layer)
    assert report.services_removed == len(OTHER_SERVICES)
    return data


def test_only_the_kept_services_remain_without_their_examples(trimmed: Path) -> None:
    assert sorted(p.name for p in trimmed.iterdir() if p.is_dir()) == sorted(KEPT_SERVICES)
    assert not list(trimmed.rglob("examples-1.json"))
    assert list(trimmed.glob("dynamodb/*/service-2.json*")), "a kept service lost its API model"
    whole = json.loads((BOTOCORE_DATA / "endpoints.json").read_text(encoding="utf-8"))
    kept = json.loads((trimmed / "endpoints.json").read_text(encoding="utf-8"))
    assert [p["partition"] for p in kept["partitions"]] == [p["partition"] for p in whole["partitions"]]
    for before, after in zip(whole["partitions"], kept["partitions"], strict=True):
        assert after["regions"] == before["regions"]
        assert after["services"] == {k: v for k, v in before["services"].items() if k in KEPT_SERVICES}
    assert "dynamodb" in kept["partitions"][0]["services"]


def test_trimming_again_changes_nothing(trimmed: Path) -> None:
    before = {p: p.read_bytes() for p in trimmed.rglob("*") if p.is_file()}
    report = trim(trimmed.parent.parent)
    assert report.services_removed == 0
    assert {p: p.read_bytes() for p in trimmed.rglob("*") if p.is_file()} == before


def _session(data: Path | None) -> botocore.session.Session:
    session = botocore.session.Session()
    if data is not None:  # only the trimmed folder: no fallback to the installed botocore's whole data
        session.register_component(
            "data_loader", Loader(extra_search_paths=[str(data)], include_default_search_paths=False)
        )
    session.set_credentials("AKIDEXAMPLE", "not-a-secret")
    return session


CALLS: dict[str, tuple[str, dict[str, Any]]] = {
    "dynamodb": ("describe_limits", {}),
    "secretsmanager": ("get_secret_value", {"SecretId": "taobao-bridge/dev"}),
    "events": ("put_events", {"Entries": [{"Source": "s", "DetailType": "d", "Detail": "{}"}]}),
    "xray": ("get_sampling_rules", {}),
    "sts": ("get_caller_identity", {}),
    "sso": ("list_accounts", {"accessToken": "token"}),
    "sso-oidc": ("create_token", {"clientId": "c", "clientSecret": "s", "grantType": "refresh_token"}),
}


def _request(session: botocore.session.Session, service: str, region: str) -> tuple[str, str | None]:
    """Where one request goes and the credential scope it is signed for (SSO's calls are not signed), answered on
    the spot (no network)."""
    client = session.create_client(service, region_name=region)
    seen: list[Any] = []

    def answer(request: Any, **_: Any) -> AWSResponse:
        seen.append(request)
        return AWSResponse(request.url, 200, {}, None)

    client.meta.events.register("before-send", answer)
    operation, params = CALLS[service]
    try:
        getattr(client, operation)(**params)
    except Exception:  # noqa: S110 - an empty answer may not parse; the request was already seen
        pass
    (request,) = seen
    authorization = request.headers.get("Authorization")
    if authorization is None:
        return request.url, None
    scope = authorization.decode().split("Credential=")[1].split(",")[0].split("/", 1)[1]
    return request.url, scope


@pytest.mark.parametrize("service", sorted(KEPT_SERVICES))
@pytest.mark.parametrize("region", ["ap-southeast-1", "cn-north-1", "us-east-1", "us-gov-west-1", "eu-central-1"])
def test_a_trimmed_botocore_sends_where_a_whole_one_does(trimmed: Path, service: str, region: str) -> None:
    assert _request(_session(trimmed), service, region) == _request(_session(None), service, region)


def test_a_service_that_was_trimmed_is_refused_by_name(trimmed: Path) -> None:
    with pytest.raises(UnknownServiceError, match="s3"):
        _session(trimmed).create_client("s3", region_name="ap-southeast-1")


def test_a_folder_without_botocore_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TrimError, match=r"no endpoints\.json"):
        trim(tmp_path)


def test_a_botocore_without_a_kept_service_is_refused(trimmed: Path) -> None:
    with pytest.raises(TrimError, match="no data for kinesis"):
        trim(trimmed.parent.parent, keep={"dynamodb", "kinesis"})
