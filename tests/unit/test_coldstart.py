"""taobao_bridge.coldstart: every function's module imports with the cyclic collector off, freezes what it built and
turns the collector back on. Checked on the source (the order of statements) and by importing each module in a
fresh interpreter (the collector's state afterwards)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import pytest

from bridge_local.template import PROJECT_ROOT, load_template

TEMPLATE = load_template()
CODE_DIRS = sorted(
    {
        str(resource["Properties"]["CodeUri"]).rstrip("/")
        for resource in TEMPLATE["Resources"].values()
        if resource["Type"] == "AWS::Serverless::Function"
    }
)


def _statements(code_dir: str) -> list[ast.stmt]:
    tree = ast.parse((PROJECT_ROOT / code_dir / "app.py").read_text(encoding="utf-8"))
    body = tree.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    return [s for s in body if not (isinstance(s, ast.ImportFrom) and s.module == "__future__")]


def test_every_function_module_is_found() -> None:
    assert len(CODE_DIRS) >= 6, CODE_DIRS


@pytest.mark.parametrize("code_dir", CODE_DIRS)
def test_the_collector_is_off_before_the_first_import(code_dir: str) -> None:
    first, second = (ast.unparse(s) for s in _statements(code_dir)[:2])
    assert (first, second) == ("import gc", "gc.disable()"), f"{code_dir}/app.py starts with {first!r}, {second!r}"


@pytest.mark.parametrize("code_dir", CODE_DIRS)
def test_imports_done_is_the_last_statement(code_dir: str) -> None:
    last = ast.unparse(_statements(code_dir)[-1])
    assert last == "imports_done()", f"{code_dir}/app.py ends with {last!r}"


CHILD = """
import gc, importlib, json, sys
sys.path[:0] = sys.argv[1:]
module = importlib.import_module("app")
print(json.dumps({"enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}))
"""


@pytest.mark.parametrize("code_dir", CODE_DIRS)
def test_after_the_import_the_collector_is_on_and_the_imports_are_frozen(code_dir: str) -> None:
    env = {**os.environ, "POWERTOOLS_TRACE_DISABLED": "true", "AWS_DEFAULT_REGION": "ap-southeast-1"}
    paths = [str(PROJECT_ROOT / code_dir), str(PROJECT_ROOT / "layers" / "shared")]
    done = subprocess.run([sys.executable, "-c", CHILD, *paths], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    state = json.loads(done.stdout.strip().splitlines()[-1])
    assert state["enabled"] is True
    # Thousands of objects (Powertools, botocore, pydantic) exist after any function's imports.
    assert state["frozen"] > 10_000, state
