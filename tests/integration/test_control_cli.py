"""``python -m bridge_local control``: bans and pauses an operator can see and lift, on the local stack."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import pytest

from bridge_local import control_cli
from taobao_bridge.outbox import RunControl

pytestmark = pytest.mark.integration


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    control_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["control", *argv])
    return int(args.func(args))


def test_show_lift_a_ban_and_clear_a_pause(stack: Any, capsys: pytest.CaptureFixture[str]) -> None:
    endpoint = ("--endpoint", stack.dynamodb_endpoint)
    control = RunControl("OutboxTable", client=stack.dynamodb_client())
    now_ms = int(time.time() * 1000)
    control.set_ban("app", until_ms=now_ms + 3_600_000, reason="accesscontrol.limited-by-app-access-count")
    control.set_pause("risk", reason="27 invalid-sessionkey", fingerprint="f")

    assert cli("show", *endpoint) == 0
    shown = json.loads(capsys.readouterr().out)
    assert set(shown["bans_until"]) == {"app"} and shown["pauses"]["risk"]["reason"] == "27 invalid-sessionkey"

    assert cli("lift-ban", "app", *endpoint) == 0
    assert "ban on app lifted" in capsys.readouterr().out
    assert control.ban_until("app") is None
    assert cli("clear-pause", "risk", *endpoint) == 0
    assert control.pause("risk") is None
    assert cli("clear-pause", "risk", *endpoint) == 0
    assert "was not paused" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("lift-ban", "everything"), "unknown scope 'everything'"),
        (("lift-ban",), "needs a scope"),
        (("show", "--aws"), "--aws needs --table"),
        (("show", "--endpoint", "http://127.0.0.1:9"), "failed"),
    ],
)
def test_every_error_is_one_line_and_exit_1(
    stack: Any, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    if "--endpoint" not in argv and "--aws" not in argv:
        argv = (*argv, "--endpoint", stack.dynamodb_endpoint)
    assert cli(*argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
