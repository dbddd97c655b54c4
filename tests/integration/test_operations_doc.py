"""docs/OPERATIONS.md's local walkthrough runs as written: every line of its ```console-local blocks, in order,
exits 0 against a local stack started the way `make run` starts one (its own ports and state directory)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "OPERATIONS.md"
BLOCK = re.compile(r"^```console-local\n(.*?)^```", re.S | re.M)


def walkthrough() -> list[str]:
    """The commands of the local walkthrough: every non-blank, non-comment line of its blocks, in order."""
    lines = [line.strip() for block in BLOCK.findall(DOC.read_text(encoding="utf-8")) for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def local_stack(tmp_path: Path) -> Iterator[dict[str, str]]:
    """`python -m bridge_local run --fresh` in its own process, on free ports, its tables under tmp_path. The
    secrets file of the checkout is copied there, so the command signs with what the stack checks, as with
    `make run`."""
    local = tmp_path / "local"
    local.mkdir()
    checkout_secrets = ROOT / ".local" / "secrets.json"
    if checkout_secrets.exists():
        shutil.copy(checkout_secrets, local / "secrets.json")
    ports = {"PORT": free_port(), "DYNAMODB_PORT": free_port(), "TOP_SANDBOX_PORT": free_port()}
    env = {**os.environ, **{name: str(port) for name, port in ports.items()}, "SYNC_INTERVAL": "2"}
    for name in ("TOP_GATEWAY_URL", "QIMEN_APP_SECRET", "TOP_APP_KEY", "TOP_APP_SECRET", "TOP_SESSION_KEY"):
        env.pop(name, None)
    log = (tmp_path / "stack.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge_local", "run", "--fresh", "--local-dir", str(local)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{ports['PORT']}"
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{url}/openapi.json", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the local stack did not start: {(tmp_path / 'stack.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield {name: str(port) for name, port in ports.items()}
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_the_walkthrough_has_the_steps_the_issue_asks_for() -> None:
    text = "\n".join(walkthrough())
    for step in (
        "send-qimen",
        "orders get",
        "orders list",
        "events tail",
        "submit writeoffs",
        "--wait dead",
        "records list writeoffs --state dead",
        "--wait synced",
    ):
        assert step in text, step


def test_every_walkthrough_command_exits_0(local_stack: dict[str, str]) -> None:
    env = {**os.environ, **local_stack}
    bash = shutil.which("bash") or "/bin/bash"  # the doc's lines are bash: ${VAR:-default}, pipes
    for command in walkthrough():
        result = subprocess.run(
            [bash, "-o", "pipefail", "-c", command],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert result.returncode == 0, f"{command}\nexit {result.returncode}\n{result.stdout}\n{result.stderr}"
