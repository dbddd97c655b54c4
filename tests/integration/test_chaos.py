"""The chaos suite at CI size (chaos/, docs/RELIABILITY.md): one harness run per fault class, each in its own
process (``python -m chaos`` starts its own local stack on free ports), and the outbound guarantees asserted on
what it found: nothing lost, nothing stuck, no re-delivery unless the sender could not know the outcome, refused
records dead, odd answers never sent again.

Each case fails if its guarantee breaks. On the code before the reliability fixes, four did (the symptoms are in
docs/RELIABILITY.md, "What the suite found"): odd answers blocked writeoffs (stuck) and re-sent the records
answered oddly and the orders beside them; a failed settle write re-sent a batch the platform had accepted.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ("platform", "dynamodb", "kills", "odd")
# Small: 300 records, 6 chaos rounds of 2.5 s Lambdas; a DynamoDB fault rate high enough to reach the settle
# writes of so few records.
CI_ARGS = ["--records", "300", "--seed", "1", "--rounds", "6", "--lambda-timeout", "2.5", "--workers", "3"]
CI_ARGS += ["--dynamo-rate", "0.1", "--clean-rounds", "12"]


def _run_class(fault_class: str, out: Path) -> None:
    report = out / f"{fault_class}.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "shared"), str(ROOT)])}
    command = [sys.executable, "-m", "chaos", *CI_ARGS, "--faults", fault_class]
    command += ["--json", str(report), "--log", str(out / f"{fault_class}.log")]
    finished = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if not report.exists():
        raise AssertionError(f"chaos run for {fault_class} did not finish:\n{finished.stdout}\n{finished.stderr}")


@pytest.fixture
def findings(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The findings of the run for the fault class in ``request.param``: one run per class per test session.

    Under pytest-xdist the tests of one class may land on both workers: the run is shared through the session's
    common temp directory, under a file lock, so the second worker reads what the first one found.
    """
    fault_class: str = request.param
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the workers' directories sit side by side in the session's
    out = shared / "chaos"
    out.mkdir(exist_ok=True)
    with open(out / f"{fault_class}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / f"{fault_class}.json").exists():
            _run_class(fault_class, out)
    found: dict[str, Any] = json.loads((out / f"{fault_class}.json").read_text(encoding="utf-8"))
    return found


def _cases(classes: tuple[str, ...] = CLASSES) -> list[Any]:
    return [pytest.param(fault_class, id=fault_class) for fault_class in classes]


def _total(found: dict[str, Any]) -> dict[str, Any]:
    total: dict[str, Any] = found["figures"]["total"]
    return total


@pytest.mark.parametrize("findings", _cases(), indirect=True)
def test_nothing_is_lost(findings: dict[str, Any]) -> None:
    """Every record the intake acknowledged is stored in a known state, and none is synced unless the platform
    accepted it."""
    total = _total(findings)
    assert (total["not_stored"], total["no_state"], total["phantom"]) == (0, 0, 0), findings["report"]
    assert total["lost"] == 0


@pytest.mark.parametrize("findings", _cases(), indirect=True)
def test_nothing_is_stuck(findings: dict[str, Any]) -> None:
    """Once the faults are off, every record reaches a final state: nothing is still due."""
    assert _total(findings)["stuck"] == 0, findings["report"]


@pytest.mark.parametrize("findings", _cases(), indirect=True)
def test_records_are_sent_again_only_when_the_outcome_was_unknown(findings: dict[str, Any]) -> None:
    """A record the platform accepted is sent again only after a call whose outcome its sender could not know
    (timeout after processing, odd or unreadable answer, worker killed after the call or at its deadline)."""
    assert _total(findings)["unexplained"] == 0, findings["report"]


@pytest.mark.parametrize("findings", _cases(("platform",)), indirect=True)
def test_refused_records_end_dead(findings: dict[str, Any]) -> None:
    total = _total(findings)
    assert total["refused"] > 0, "the platform class refuses some records"
    assert total["refused_not_dead"] == 0, findings["report"]


@pytest.mark.parametrize("findings", _cases(("odd",)), indirect=True)
def test_records_answered_in_an_odd_shape_are_not_sent_again(findings: dict[str, Any]) -> None:
    """docs/PROTOCOL.md §2: an answer in an unexpected shape was still applied; never re-send it blindly. An
    external order whose answer shows no readable order id is not synced without it."""
    total = _total(findings)
    assert total["odd_records"] > 0, "the odd class answers some calls in odd shapes"
    assert total["odd_resent"] == 0, findings["report"]
    assert total["wrong_order_id"] == 0, findings["report"]


@pytest.mark.parametrize("findings", _cases(), indirect=True)
def test_the_faults_met_work(findings: dict[str, Any], request: pytest.FixtureRequest) -> None:
    """A run proves something only if its class's faults met work (calls, requests, workers): a harness change
    that stops them from reaching anything fails here rather than passing quietly."""
    fault_class = request.node.callspec.params["findings"]
    assert findings["injected"][fault_class] > 0, findings["report"]
