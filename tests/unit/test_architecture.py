"""The rules of docs/ARCHITECTURE.md ("Who may import whom"), checked on the source: a rule that is only written
down drifts."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "layers" / "shared" / "taobao_bridge"
MAX_MODULE_LINES = 450

# Modules that hold no I/O: they may not import the AWS SDK or the HTTP client.
PURE = [
    "clock.py",
    "jsonutil.py",
    "errors.py",
    "signing.py",
    "wire.py",
    "privacy.py",
    "top_errors.py",
    "kinds.py",
    "models/*.py",
    "outbox/records.py",
    "sync/ports.py",
    "sync/runner.py",
]
IO_LIBRARIES = ("boto3", "botocore", "httpx")


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports, relative imports resolved within the package."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parts = ["taobao_bridge", *path.relative_to(PACKAGE).with_suffix("").parts]
    package = parts[:-1]  # the package a relative import starts from (for __init__ too)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_no_package_module_is_over_the_size_limit() -> None:
    sizes = {str(p.relative_to(PACKAGE)): len(p.read_text(encoding="utf-8").splitlines()) for p in modules()}
    assert {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_the_package_emits_no_metrics() -> None:
    # Handlers emit metrics from what the package returns (RunReport, Qimen dispatch outcomes).
    offenders = []
    for path in modules():
        source = path.read_text(encoding="utf-8")
        names = imported(path)
        if "add_metric" in source or any(n.startswith("aws_lambda_powertools.metrics") for n in names):
            offenders.append(str(path.relative_to(PACKAGE)))
        if "aws_lambda_powertools.Metrics" in names:
            offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []


def test_the_package_never_imports_handlers_local_tooling_or_tests() -> None:
    offenders = {
        str(p.relative_to(PACKAGE)): sorted(
            n for n in imported(p) if n.split(".")[0] in {"functions", "bridge_local", "tests"}
        )
        for p in modules()
    }
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize("pattern", PURE)
def test_pure_modules_do_no_io(pattern: str) -> None:
    paths = sorted(PACKAGE.glob(pattern))
    assert paths, f"no module matches {pattern}"
    for path in paths:
        io = sorted(n for n in imported(path) if n.split(".")[0] in IO_LIBRARIES)
        assert io == [], f"{path.relative_to(PACKAGE)} imports {io}"


def test_the_sync_runner_talks_to_its_ports_not_to_the_production_classes() -> None:
    names = imported(PACKAGE / "sync" / "runner.py")
    concrete = {"taobao_bridge.outbox.store", "taobao_bridge.outbox.control", "taobao_bridge.top_client"}
    assert sorted(n for n in names if any(n == c or n.startswith(c + ".") for c in concrete)) == []
    assert "taobao_bridge.outbox.OutboxStore" not in names and "taobao_bridge.outbox.RunControl" not in names


def test_lower_rooms_never_import_higher_ones() -> None:
    # storage and the TOP client sit below the flows that use them
    lower = ["dynamo.py", "outbox/*.py", "fulfillment_store.py", "top_client.py", "settings.py", *PURE]
    higher = ("taobao_bridge.sync", "taobao_bridge.intake", "taobao_bridge.qimen", "taobao_bridge.callback")
    for pattern in lower:
        for path in PACKAGE.glob(pattern):
            if path.relative_to(PACKAGE).parts[0] == "sync":
                continue  # the sync room's own modules
            upward = sorted(n for n in imported(path) if n.startswith(higher))
            assert upward == [], f"{path.relative_to(PACKAGE)} imports {upward}"
