from __future__ import annotations

import pytest

from taobao_bridge.errors import ConfigurationError
from taobao_bridge.settings import ENV, LOCAL_DEFAULTS, load_settings


def test_local_defaults_apply_only_when_local() -> None:
    local = load_settings({ENV.BRIDGE_ENV: "local"})
    assert local.qimen_app_secret == LOCAL_DEFAULTS[ENV.QIMEN_APP_SECRET]
    deployed = load_settings({ENV.BRIDGE_ENV: "aws"})
    assert deployed.qimen_app_secret == ""
    with pytest.raises(ConfigurationError, match="QIMEN_APP_SECRET or key 'qimen_app_secret' of the secret"):
        deployed.require("qimen_app_secret")


def test_environment_beats_defaults_and_numbers_are_checked() -> None:
    s = load_settings({ENV.BRIDGE_ENV: "local", ENV.QIMEN_APP_SECRET: "mine", ENV.QIMEN_TIMESTAMP_WINDOW_S: "60"})
    assert (s.qimen_app_secret, s.qimen_timestamp_window_s) == ("mine", 60)
    with pytest.raises(ConfigurationError, match="QIMEN_TIMESTAMP_WINDOW_S must be a whole number"):
        load_settings({ENV.QIMEN_TIMESTAMP_WINDOW_S: "5m"})
    with pytest.raises(ConfigurationError, match="TOP_SIGN_METHOD must be one of"):
        load_settings({ENV.TOP_SIGN_METHOD: "sha1"})


def test_repr_never_shows_secrets() -> None:
    s = load_settings({ENV.BRIDGE_ENV: "local", ENV.TOP_APP_SECRET: "very-secret", ENV.QIMEN_APP_SECRET: "q-secret"})
    assert "very-secret" not in repr(s) and "q-secret" not in repr(s)


def test_secret_from_secrets_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    import boto3
    from moto import mock_aws

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_SECRETSMANAGER", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    with mock_aws():
        boto3.client("secretsmanager").create_secret(
            Name="taobao-bridge/test",
            SecretString=json.dumps({"qimen_app_secret": "from-sm", "top_app_key": "k1", "top_app_secret": "s1"}),
        )
        s = load_settings({ENV.BRIDGE_SECRET_ID: "taobao-bridge/test", ENV.TOP_APP_KEY: "env-wins"})
        assert (s.qimen_app_secret, s.top_app_key, s.top_app_secret) == ("from-sm", "env-wins", "s1")
        with pytest.raises(ConfigurationError, match="cannot read secret 'missing'"):
            load_settings({ENV.BRIDGE_SECRET_ID: "missing", ENV.SECRET_MAX_AGE_S: "0"})
