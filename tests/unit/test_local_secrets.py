"""bridge_local.local_secrets: the secrets file beats the environment the stack started with, which beats the
local defaults; a change applies to the next invocation, a broken file changes nothing."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge_local.__main__ import main as cli
from bridge_local.local_secrets import SecretsFileError, SecretsWatcher, read_secrets, write_secret
from taobao_bridge.settings import load_settings

NAMES = ("QIMEN_APP_SECRET", "TOP_APP_KEY", "TOP_APP_SECRET", "TOP_SESSION_KEY")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    before = {name: os.environ.get(name) for name in NAMES}
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BRIDGE_ENV", "local")
    monkeypatch.delenv("BRIDGE_SECRET_ID", raising=False)
    yield
    # The watcher writes os.environ itself, as the stack needs: put back what the tests after this one expect.
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def test_the_file_beats_the_start_environment_and_changes_apply_on_the_next_call(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    changes: list[dict[str, str]] = []
    watcher = SecretsWatcher(path, {"TOP_APP_KEY": "from-env"}, on_change=changes.append)
    assert watcher.apply() is True  # the first look: the start environment
    assert (load_settings().top_app_key, load_settings().top_session_key) == ("from-env", "local-top-session-key")

    write_secret(path, "top_session_key", "rotated")
    write_secret(path, "top_app_key", "from-file")
    assert watcher.apply() is True
    assert (load_settings().top_app_key, load_settings().top_session_key) == ("from-file", "rotated")
    assert watcher.apply() is False  # unchanged file: one stat, nothing else
    assert changes[-1] == {"TOP_APP_KEY": "from-file", "TOP_SESSION_KEY": "rotated"}

    write_secret(path, "top_app_key", None)
    write_secret(path, "top_session_key", None)
    watcher.apply()
    assert (load_settings().top_app_key, load_settings().top_session_key) == ("from-env", "local-top-session-key")
    assert "TOP_SESSION_KEY" not in os.environ


def test_a_broken_file_keeps_the_secrets_in_effect(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "secrets.json"
    write_secret(path, "qimen_app_secret", "good")
    watcher = SecretsWatcher(path, {})
    watcher.apply()
    path.write_text('{"qimen_app_secret": "half', encoding="utf-8")
    with caplog.at_level(logging.ERROR, logger="bridge_local"):
        assert watcher.apply() is False
        assert watcher.apply() is False
    assert load_settings().qimen_app_secret == "good"
    assert len([r for r in caplog.records if "ignoring" in r.getMessage()]) == 1  # said once, not per call
    assert "good" not in caplog.text


def test_unknown_keys_and_non_strings_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"top_session": "x"}), encoding="utf-8")
    with pytest.raises(SecretsFileError, match="unknown keys top_session"):
        read_secrets(path)
    path.write_text(json.dumps({"top_session_key": 5}), encoding="utf-8")
    with pytest.raises(SecretsFileError, match="must be strings"):
        read_secrets(path)
    with pytest.raises(SecretsFileError, match="unknown key"):
        write_secret(path, "session", "x")


def test_the_cli_writes_the_file_for_its_owner_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["secrets", "set", "top_session_key", "NEW-SESSION-KEY", "--local-dir", str(tmp_path)]) == 0
    path = tmp_path / "secrets.json"
    assert json.loads(path.read_text()) == {"top_session_key": "NEW-SESSION-KEY"}
    assert path.stat().st_mode & 0o777 == 0o600
    assert cli(["secrets", "show", "--local-dir", str(tmp_path)]) == 0
    shown = capsys.readouterr().out
    assert "NEW-SESSION-KEY" not in shown and "top_session_key   NE…EY" in shown
    assert cli(["secrets", "unset", "top_session_key", "--local-dir", str(tmp_path)]) == 0
    assert json.loads(path.read_text()) == {}
