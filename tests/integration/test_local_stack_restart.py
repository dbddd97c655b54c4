"""``make run`` keeps its tables across a restart and takes new secrets without one.

Each stack here is ``python -m bridge_local run`` in its own process (moto's state is per process), on free ports,
with ``--local-dir`` in the test's temporary directory: the project's own ``.local/`` is never read or written.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from bridge_local.qimen_client import new_order_no, signed_query
from bridge_local.stack import PROJECT_ROOT
from taobao_bridge.settings import ENV, LOCAL_DEFAULTS
from tests.conftest import with_order_no

pytestmark = pytest.mark.integration

SECRET = LOCAL_DEFAULTS[ENV.QIMEN_APP_SECRET]
WRITEOFF = {
    "biz_type": 2,
    "verify_time": "2026-03-01 12:00:00",
    "tb_store_id": 2343432,
    "service_status": 2,
    "service_id": 1111,
    "service_detail_id": 111223,
    "tb_biz_order_id": 4_123_456_789_012_345,
    "verify_batch_no": "R1",
}


@contextmanager
def local_stack(local_dir: Path, *extra: str) -> Iterator[str]:
    """``python -m bridge_local run`` on free ports; yields its base URL; stops it with Ctrl-C (SIGINT)."""
    env = {
        **os.environ,
        "PORT": "0",
        "DYNAMODB_PORT": "0",
        "TOP_SANDBOX_PORT": "0",
        "SYNC_INTERVAL": "3600",  # no sync run moves the records while the test looks at them
        "PYTHONUNBUFFERED": "1",
    }
    for name in (ENV.QIMEN_APP_SECRET, ENV.TOP_APP_KEY, ENV.TOP_APP_SECRET, ENV.TOP_SESSION_KEY):
        env.pop(name, None)
    command = [sys.executable, "-m", "bridge_local", "run", "--local-dir", str(local_dir), *extra]
    process = subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        url = None
        deadline = time.monotonic() + 60
        assert process.stdout is not None
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            found = re.search(r"HTTP API\s+(http://\S+)", line)
            url = found.group(1) if found else None
        assert url, f"the stack did not start: {process.poll()}"
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise


def post_qimen(url: str, body: bytes, secret: str = SECRET) -> dict:
    response = httpx.post(
        f"{url}/qimen?{signed_query(body, secret)}",
        content=body,
        headers={"content-type": "application/json;charset=utf-8"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    answer: dict = response.json()
    return answer


def test_tables_survive_a_restart_and_fresh_starts_empty(tmp_path: Path, seed_003_body: bytes) -> None:
    body = with_order_no(seed_003_body, new_order_no())
    with local_stack(tmp_path) as url:
        accepted = httpx.post(f"{url}/v1/writeoffs", json=WRITEOFF, timeout=10)
        assert accepted.status_code == 202, accepted.text
        (record,) = accepted.json()["records"]
        first = post_qimen(url, body)
        assert first["biz_result"] == "success"

    saved = json.loads((tmp_path / "dynamodb.json").read_text(encoding="utf-8"))
    assert saved["tables"]["OutboxTable"]["count"] >= 1

    with local_stack(tmp_path) as url:
        shown = httpx.get(f"{url}/v1/writeoffs/{record['id']}", timeout=10)
        assert shown.status_code == 200, shown.text
        assert shown.json()["state"] == "due"
        assert post_qimen(url, body) == first  # a replay after the restart: the same partner_order_id

    with local_stack(tmp_path, "--fresh") as url:
        assert httpx.get(f"{url}/v1/writeoffs/{record['id']}", timeout=10).status_code == 404
    assert (tmp_path / "dynamodb.json.bak").exists()


def test_a_new_secret_applies_without_a_restart(tmp_path: Path, seed_003_body: bytes) -> None:
    def secrets(*args: str) -> None:
        command = [sys.executable, "-m", "bridge_local", "secrets", *args, "--local-dir", str(tmp_path)]
        subprocess.run(command, cwd=PROJECT_ROOT, check=True, capture_output=True, text=True)

    with local_stack(tmp_path) as url:
        assert post_qimen(url, with_order_no(seed_003_body, new_order_no()))["biz_result"] == "success"

        secrets("set", "qimen_app_secret", "a-rotated-qimen-secret")
        stale = post_qimen(url, with_order_no(seed_003_body, new_order_no()))
        assert stale["biz_error_code"] == "sign-check-failure"
        fresh = post_qimen(url, with_order_no(seed_003_body, new_order_no()), secret="a-rotated-qimen-secret")
        assert fresh["biz_result"] == "success"

        secrets("unset", "qimen_app_secret")  # back to the local default
        assert post_qimen(url, with_order_no(seed_003_body, new_order_no()))["biz_result"] == "success"
    assert oct((tmp_path / "secrets.json").stat().st_mode & 0o777) == "0o600"
