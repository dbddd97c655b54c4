"""Cold start of each Lambda handler, as built by `make build`, against a bare handler.

    .venv/bin/python -m bench.cold_start [--runs 9] [--build-dir .aws-sam/build] [--build] [--tracing on|off|both]
                                         [--only CASE] [--importtime CASE [--importtime-runs 5]] [--json PATH]

Every sample is a fresh Python 3.13 process (the runtime's minor version) that does what a Lambda cold start
does after the runtime has booted: put the function's code, the layer and the runtime's SDK on ``sys.path``
in Lambda's order, import the handler module and invoke it once with a sample event and a fake context. The
time from the first import to the end of that first invocation is measured inside the process.

- The layer and the function code are the built artifacts (``.aws-sam/build``; built with `make build` when
  missing or with ``--build``). Lambda's ``/opt`` and ``/var/task`` are read-only, so the child processes
  never write ``.pyc`` files (``PYTHONDONTWRITEBYTECODE``): what the build did not precompile is compiled on
  every cold start, as in Lambda.
- The runtime's own boto3/botocore are emulated by a precompiled ``pip install --target`` of the versions
  pinned in layers/shared/requirements.txt (or requirements-dev.txt), kept in ``.aws-sam/bench/``.
- Nothing leaves the machine: the first Qimen case is a wrongly signed call (answered before any storage), the
  intake case a 404 for an unknown kind (answered before any storage), the sync case a run of
  ``SyncWriteoffsFunction`` against a loopback stub that answers every DynamoDB request with ``{}`` (nothing
  due); every other AWS endpoint points at a closed loopback port and secrets come from the environment.
- The second Qimen case is what a deployed callback's first call usually is: seed 003's order, signed now with
  the local secret, the secret read from Secrets Manager (the loopback stub answers ``GetSecretValue``), the
  order's model validated and its transaction written (the stub accepts it). A wrongly signed call is answered
  before the model or the secret is needed, so it alone would reward deferring what every real order pays.
- The bare handler imports boto3 and creates a DynamoDB client at import time, and answers ``{}``.
- The n-th of the runs imports and invokes from n/runs of a 16 KB frame-stack chunk deeper (``DEPTH_SPAN``): in
  CPython 3.13 a hot loop on a chunk boundary runs several times slower, and where the boundaries fall in Lambda
  depends on the runtime's own depth. Every handler runs at the same depths.

Prints the median (and min/max) of import and first invocation per handler, the ratio to the bare handler,
and the command. ``--importtime CASE`` prints the costliest imports of one case instead (python -X
importtime, aggregated by top-level package and listed by module). Absolute times are this machine's, not
Lambda's (an arm64 function with 512 MB has about a third of a vCPU); the ratios are what carry over.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from collections import defaultdict
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
LAYER_ID = "SharedLayer"
RESULT_MARK = "COLD-START-RESULT "  # the child's line with its figures

# Runs in the fresh interpreter (python3.13 -S -c CHILD spec.json). Only the standard library before t0.
CHILD = r"""
import json, sys, time
spec = json.load(open(sys.argv[1], encoding="utf-8"))
event = spec["event"]
class Context:
    function_name = spec["function_name"]
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:ap-southeast-1:123456789012:function:" + spec["function_name"]
    memory_limit_in_mb = 512
    aws_request_id = "00000000-0000-4000-8000-000000000000"
    log_group_name = "/aws/lambda/" + spec["function_name"]
    log_stream_name = "2026/01/01/[$LATEST]0"
    _deadline = time.monotonic() + spec["timeout_s"]
    def get_remaining_time_in_millis(self):
        return int((self._deadline - time.monotonic()) * 1000)
sys.path[:] = spec["path_before"] + [p for p in sys.path if p] + spec["path_after"]
import importlib
def cold_start():
    c0, t0 = time.process_time(), time.perf_counter()
    module = importlib.import_module(spec["module"])
    handler = getattr(module, spec["attr"])
    t1 = time.perf_counter()
    answer = handler(event, Context())
    t2, c2 = time.perf_counter(), time.process_time()
    return answer, {"import_ms": (t1 - t0) * 1000, "invoke_ms": (t2 - t1) * 1000, "cpu_ms": (c2 - c0) * 1000}
def at_depth(frames):
    return at_depth(frames - 1) if frames else cold_start()
answer, figures = at_depth(spec["depth"])
print("COLD-START-RESULT " + json.dumps({**figures,
      "answer": json.dumps(answer, default=str, ensure_ascii=False)[:400],
      "botocore": sys.modules["botocore"].__file__ if "botocore" in sys.modules else None,
      "boto3": sys.modules["boto3"].__file__ if "boto3" in sys.modules else None}), flush=True)
"""

BARE_APP = """import boto3

client = boto3.client("dynamodb")


def lambda_handler(event, context):
    return {}
"""


@dataclass(frozen=True)
class Case:
    name: str
    function_id: str | None  # None: the bare handler
    handler: str
    event: dict[str, Any]
    expect: str  # a piece of the answer that shows the invocation did what it should
    timeout_s: int = 10
    tracing: str = "on"  # the X-Ray SDK through Powertools' Tracer (POWERTOOLS_TRACE_DISABLED=false)
    secret: bool = False  # the platform secrets from Secrets Manager (the stub), as deployed; else the environment
    build: Path | None = None  # the build directory (None: the bare handler, which has no build)


@dataclass
class Samples:
    import_ms: list[float] = field(default_factory=list)
    invoke_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    notes: set[str] = field(default_factory=set)

    @property
    def total_ms(self) -> list[float]:
        return [a + b for a, b in zip(self.import_ms, self.invoke_ms, strict=True)]


DEPTH_SPAN = 137
"""About one 16 KB chunk of CPython's frame stack in frames of the child's ``at_depth``. CPython 3.13 keeps
frames in 16 KB chunks and frees a chunk as soon as the frame at its start returns: a hot loop of small calls
that happens to sit on a chunk boundary maps and unmaps a chunk at every call. Compiling urllib3's URL regexes on
a boundary took 44 ms instead of 5 in one of our handlers (strace: 4,800 munmap calls of 16 KB); one frame
deeper, it did not. Where the boundaries fall in Lambda depends on the runtime's own call depth, which this
emulation does not have: so the n-th run of every handler starts n/runs of a chunk deeper, the same depths for
every handler, and the median is over the depths rather than over the one that happens to be ours."""


def depth_of(run: int, runs: int) -> int:
    return run * DEPTH_SPAN // runs


# ------------------------------------------------------------------------------------------- environment
def find_python313(explicit: str | None) -> str:
    candidates = [explicit] if explicit else []
    candidates += [shutil.which("python3.13") or ""]
    candidates += sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.13*/bin/python3.13"))
    for candidate in candidates:
        if not candidate:
            continue
        try:
            out = subprocess.run(  # noqa: S603 - a local interpreter chosen by the user or found on PATH
                [candidate, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True
            ).stdout
        except OSError:
            continue
        if out.strip() == "(3, 13)":
            return candidate
    raise SystemExit("no Python 3.13 found: pass --python, or put python3.13 on PATH (pyenv: 3.13.0)")


def pinned(name: str) -> str | None:
    for path in (ROOT / "layers/shared/requirements.txt", ROOT / "requirements-dev.txt"):
        for line in path.read_text(encoding="utf-8").splitlines():
            match = re.match(rf"^{re.escape(name)}==([\w.]+)", line.strip())
            if match:
                return match.group(1)
    return None


def runtime_sdk(python: str, boto3_version: str, cache: Path) -> Path:
    """A precompiled boto3 (with its botocore) standing in for the one the Lambda runtime ships."""
    target = cache / f"runtime-sdk-boto3-{boto3_version}"
    if (target / "boto3").is_dir():
        return target
    print(f"installing boto3=={boto3_version} for Python 3.13 into {target} (once) ...", file=sys.stderr)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(  # noqa: S603
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", str(tmp),
         f"boto3=={boto3_version}"],
        check=True,
    )  # fmt: skip
    subprocess.run([python, "-m", "compileall", "-q", "-j", "0", str(tmp)], check=True)  # noqa: S603
    tmp.rename(target)
    return target


def native_shim(python: str, layer: Path, cache: Path) -> Path | None:
    """The layer is built for arm64, and its compiled extensions (pydantic-core, wrapt) cannot load on another
    machine: the same distributions in the same versions, built for this one, go ahead of the layer on
    sys.path, precompiled exactly when the layer is."""
    if platform.machine() == "aarch64" or not any("aarch64" in p.name for p in layer.rglob("*.so")):
        return None
    wanted = []
    for info in sorted(layer.glob("*.dist-info")):
        record = info / "RECORD"
        if record.is_file() and ".so," in record.read_text(encoding="utf-8"):
            name, version = info.name.removesuffix(".dist-info").rsplit("-", 1)
            wanted.append(f"{name}=={version}")
    compiled = any(layer.rglob("*.cpython-313.pyc"))
    target = cache / ("native-" + "-".join(w.replace("==", "-") for w in wanted) + ("-pyc" if compiled else ""))
    if target.is_dir():
        return target
    print(f"installing host builds of {', '.join(wanted)} into {target} (once) ...", file=sys.stderr)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(  # noqa: S603
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "--no-compile",
         "--only-binary=:all:", "--target", str(tmp), *wanted],
        check=True,
    )  # fmt: skip
    if compiled:
        compile_all = [python, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash", str(tmp)]
        subprocess.run(compile_all, check=True)  # noqa: S603
    tmp.rename(target)
    return target


BENCH_SECRET_ID = "taobao-bridge/bench"  # noqa: S105 - a name; the values below are the local stack's
BENCH_SECRETS = {
    "qimen_app_secret": "local-qimen-app-secret",
    "top_app_key": "12345678",
    "top_app_secret": "local-top-app-secret",
    "top_session_key": "local-top-session-key",
}


class _StubDynamoDB(BaseHTTPRequestHandler):
    """Answers every DynamoDB request with an empty result: no item, nothing due, every write accepted; and
    Secrets Manager's ``GetSecretValue`` with the local secrets."""

    requests: int = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        body = b"{}"
        if self.headers.get("x-amz-target", "").startswith("secretsmanager."):
            arn = f"arn:aws:secretsmanager:ap-southeast-1:123456789012:secret:{BENCH_SECRET_ID}-AbCdEf"
            secret = {"ARN": arn, "Name": BENCH_SECRET_ID, "SecretString": json.dumps(BENCH_SECRETS)}
            body = json.dumps({**secret, "VersionId": "00000000-0000-4000-8000-000000000001"}).encode()
        else:
            type(self).requests += 1
        self.send_response(200)
        self.send_header("content-type", "application/x-amz-json-1.1")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


def start_stub() -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StubDynamoDB)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


# --------------------------------------------------------------------------------------------- template
def load_built_template(build_dir: Path) -> dict[str, Any]:
    for path in (str(ROOT / "layers/shared"), str(ROOT)):
        if path not in sys.path:
            sys.path.insert(0, path)
    from bridge_local.template import load_template

    return load_template(build_dir / "template.yaml")


def _resolve(value: Any, template: dict[str, Any]) -> str | None:
    """An environment value as the deployed stack would see it, near enough: table names are their logical
    ids (as on the local stack), parameters their defaults, anything only AWS knows is left out."""
    if isinstance(value, str | int | float | bool):
        return str(value)
    if isinstance(value, dict) and set(value) == {"Ref"}:
        name = value["Ref"]
        parameter = template.get("Parameters", {}).get(name)
        if parameter is not None:
            return str(parameter.get("Default", ""))
        if name in template.get("Resources", {}):
            return name
    return None


def function_env(template: dict[str, Any], function_id: str) -> dict[str, str]:
    variables: dict[str, Any] = {}
    globals_env = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    variables.update(globals_env)
    properties = template["Resources"][function_id]["Properties"]
    variables.update(properties.get("Environment", {}).get("Variables", {}))
    resolved = {name: _resolve(value, template) for name, value in variables.items()}
    return {name: value for name, value in resolved.items() if value is not None}


# ------------------------------------------------------------------------------------------------ cases
def cases() -> list[Case]:
    qimen = json.loads((EVENTS / "qimen_bad_signature.json").read_text(encoding="utf-8"))
    intake = json.loads((EVENTS / "intake_get_record.json").read_text(encoding="utf-8"))
    unknown = "/v1/no-such-kind/353454543-111223-54fdfds343"
    intake = {**intake, "rawPath": unknown, "pathParameters": {"kind": "no-such-kind", "id": "353454543"}}
    intake["requestContext"] = {
        **intake["requestContext"],
        "http": {**intake["requestContext"]["http"], "path": unknown},
    }
    scheduled = json.loads((EVENTS / "sync_scheduled.json").read_text(encoding="utf-8"))
    from bridge_local.events import build_events  # the committed events' builder, signing with the local secret
    from taobao_bridge.clock import format_platform_time, system_clock

    now = format_platform_time(system_clock())
    order = build_events(timestamp=now)["qimen_fulfillment_create.json"]
    return [
        Case("bare (boto3 + DynamoDB client)", None, "app.lambda_handler", {}, "{}"),
        Case("qimen_callback (bad signature)", "QimenCallbackFunction", "", qimen, "sign-check-failure", 6),
        Case(
            "qimen_callback (order; secret read)",
            "QimenCallbackFunction",
            "",
            order,
            r"\"success\":true",
            6,
            secret=True,
        ),
        Case("intake (404 unknown kind)", "IntakeFunction", "", intake, '"statusCode": 404', 25),
        Case("sync writeoffs (nothing due)", "SyncWriteoffsFunction", "", scheduled, '"status": "done"', 120),
    ]


def _label(build: Path) -> str:
    return str(build.relative_to(ROOT)) if build.is_relative_to(ROOT) else str(build)


def _interleave(first: list[Case], second: list[Case]) -> list[Case]:
    return [case for pair in zip(first, second, strict=True) for case in pair]


def lambda_env(base: dict[str, str], function_name: str, task_root: Path, sdk: Path) -> dict[str, str]:
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "SYSTEMROOT") if key in os.environ}
    env.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
            "LAMBDA_TASK_ROOT": str(task_root),
            "LAMBDA_RUNTIME_DIR": str(sdk),
            "AWS_REGION": "ap-southeast-1",
            "AWS_DEFAULT_REGION": "ap-southeast-1",
            "AWS_ACCESS_KEY_ID": "ASIABENCHCOLDSTART00",
            "AWS_SECRET_ACCESS_KEY": "bench-cold-start-not-a-secret",
            "AWS_SESSION_TOKEN": "bench",
            "AWS_EC2_METADATA_DISABLED": "true",
            # Any AWS call not explicitly stubbed fails at once on a closed loopback port.
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
            # X-Ray: a sampled trace, segments sent over UDP to a loopback port nobody listens on.
            "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
            "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
            "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONHASHSEED": "0",
            "TZ": "UTC",
        }
    )
    env.update(base)
    return env


def child_spec(
    case: Case, template: dict[str, Any] | None, build_dir: Path, bare_dir: Path, sdk: Path, shim: Path | None
) -> dict:
    layer = build_dir / LAYER_ID / "python"
    if case.function_id is None:
        task, handler, before = bare_dir, case.handler, [str(bare_dir)]
        name = "bare"
    else:
        assert template is not None
        properties = template["Resources"][case.function_id]["Properties"]
        task = build_dir / case.function_id
        handler = properties["Handler"]
        before = [str(task), *([str(shim)] if shim else []), str(layer / "lib/python3.13/site-packages"), str(layer)]
        name = case.function_id
    module, _, attr = handler.rpartition(".")
    return {
        "event": case.event,
        "function_name": name,
        "timeout_s": case.timeout_s,
        "module": module,
        "attr": attr,
        "path_before": before,
        "path_after": [str(sdk)],
        "task_root": str(task),
        "depth": 0,  # frames between the child's module level and the import (see DEPTH_SPAN)
    }


def case_env(case: Case, template: dict[str, Any] | None, spec: dict, sdk: Path, stub: str) -> dict:
    base: dict[str, str] = {}
    if case.function_id is not None:
        assert template is not None
        base = function_env(template, case.function_id)
    if case.secret:  # read from Secrets Manager (the stub), as a deployed function does at its first call
        secrets = {"BRIDGE_SECRET_ID": BENCH_SECRET_ID, "AWS_ENDPOINT_URL_SECRETS_MANAGER": stub}
    else:  # an environment variable beats the secret: no Secrets Manager call
        secrets = {"BRIDGE_SECRET_ID": "", **{key.upper(): value for key, value in BENCH_SECRETS.items()}}
    base.update(
        {
            **secrets,
            "TOP_GATEWAY_URL": "http://127.0.0.1:9/router/rest",
            "AWS_ENDPOINT_URL_DYNAMODB": stub,
            "POWERTOOLS_TRACE_DISABLED": "false" if case.tracing == "on" else "true",
        }
    )
    return lambda_env(base, spec["function_name"], Path(spec["task_root"]), sdk)


def run_child(python: str, spec: dict, env: dict[str, str], workdir: Path, extra: list[str] | None = None) -> tuple:
    spec_path = workdir / "spec.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    command = [python, "-S", *(extra or []), "-c", CHILD, str(spec_path)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=workdir, timeout=300)  # noqa: S603
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{spec['function_name']} failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    return json.loads(lines[-1][len(RESULT_MARK) :]), done.stderr


# -------------------------------------------------------------------------------------------- reporting
def layer_facts(build_dir: Path) -> dict[str, Any]:
    layer = build_dir / LAYER_ID / "python"
    if not layer.is_dir():
        return {}
    sources = sum(1 for _ in layer.rglob("*.py"))
    compiled = sum(1 for _ in layer.rglob("*.cpython-313.pyc"))
    size = sum(p.stat().st_size for p in layer.rglob("*") if p.is_file())
    return {
        "size_mb": round(size / 1e6, 1),
        "py_files": sources,
        "pyc_313": compiled,
        "botocore_in_layer": (layer / "botocore").is_dir(),
        "boto3_in_layer": (layer / "boto3").is_dir(),
        "aws_xray_sdk_in_layer": (layer / "aws_xray_sdk").is_dir(),
    }


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def print_table(results: dict[str, Samples], bare_name: str) -> dict[str, Any]:
    bare, bare_cpu = median(results[bare_name].total_ms), median(results[bare_name].cpu_ms)
    header = (
        f"{'handler':<62} {'import ms':>9} {'1st call':>9} {'total ms':>9} {'min-max':>11} {'x bare':>7}"
        f" {'CPU ms':>7} {'x bare':>7}"
    )
    print(header)
    print("-" * len(header))
    summary: dict[str, Any] = {}
    for name, samples in results.items():
        total, cpu = median(samples.total_ms), median(samples.cpu_ms)
        spread = f"{min(samples.total_ms):.0f}-{max(samples.total_ms):.0f}"
        print(
            f"{name:<62} {median(samples.import_ms):>9.1f} {median(samples.invoke_ms):>9.1f} {total:>9.1f}"
            f" {spread:>11} {total / bare:>7.2f} {cpu:>7.1f} {cpu / bare_cpu:>7.2f}"
        )
        summary[name] = {
            "import_ms": median(samples.import_ms),
            "invoke_ms": median(samples.invoke_ms),
            "total_ms": total,
            "ratio": total / bare,
            "cpu_ms": cpu,
            "cpu_ratio": cpu / bare_cpu,
            "runs": len(samples.total_ms),
            "notes": sorted(samples.notes),
        }
    return summary


def importtime(python: str, spec: dict, env: dict[str, str], workdir: Path, top: int, runs: int = 1) -> None:
    """The costliest imports of one cold start (python -X importtime), by top-level package and by module: the
    median over ``runs`` fresh processes, since one run on a busy machine is noise."""
    self_by_package: dict[str, list[int]] = defaultdict(list)
    cumulative_by_module: dict[str, list[int]] = defaultdict(list)
    totals, counts = [], []
    for _ in range(runs):
        _, stderr = run_child(python, spec, env, workdir, extra=["-X", "importtime"])
        rows = []
        for line in stderr.splitlines():
            match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
            if match:
                rows.append((int(match.group(1)), int(match.group(2)), match.group(4)))
        by_package: dict[str, int] = defaultdict(int)
        for self_us, _, name in rows:
            by_package[name.split(".")[0]] += self_us
        for name, self_us in by_package.items():
            self_by_package[name].append(self_us)
        for _, cumulative, name in rows:
            cumulative_by_module[name].append(cumulative)
        totals.append(sum(by_package.values()))
        counts.append(len(rows))
    print(
        f"\nimports of {spec['function_name']}: {median(totals) / 1000:.1f} ms in {median(counts):.0f} modules"
        f" (self time, -X importtime, median of {runs} run(s))"
    )
    print(f"{'top-level package':<32} {'self ms':>8}")
    package_medians = {name: median(values) for name, values in self_by_package.items()}
    for name, self_us in sorted(package_medians.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{name:<32} {self_us / 1000:>8.1f}")
    print(f"\n{'module (cumulative, first import)':<60} {'cum ms':>8}")
    module_medians = {name: median(values) for name, values in cumulative_by_module.items()}
    for name, cumulative in sorted(module_medians.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{name:<60} {cumulative / 1000:>8.1f}")


# ------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9, help="fresh processes per handler (median; at least 7)")
    parser.add_argument(
        "--build-dir",
        type=Path,
        action="append",
        help="a `make build` output (default .aws-sam/build); give it twice to compare two builds in one session",
    )
    parser.add_argument("--build", action="store_true", help="run `make build` first")
    parser.add_argument("--python", help="a Python 3.13 interpreter (default: python3.13 on PATH, or pyenv's)")
    parser.add_argument(
        "--tracing", choices=["on", "off", "both"], default="on", help="X-Ray SDK tracing (POWERTOOLS_TRACE_DISABLED)"
    )
    parser.add_argument("--runtime-boto3", default=pinned("boto3"), help="boto3 version the runtime emulation has")
    parser.add_argument(
        "--importtime",
        metavar="CASE",
        help='the costliest imports of the first case named so: qimen, "qimen_callback (order", intake, sync',
    )
    parser.add_argument("--top", type=int, default=25, help="rows of the --importtime lists")
    parser.add_argument("--importtime-runs", type=int, default=5, help="fresh processes for --importtime (median)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--only", action="append", metavar="CASE", help="measure only the cases named so (and the bare handler)"
    )
    args = parser.parse_args(argv)
    if args.runs < 7 and not args.importtime:
        parser.error("--runs: at least 7 fresh processes per handler")

    build_dirs = [d.resolve() for d in (args.build_dir or [ROOT / ".aws-sam" / "build"])]
    if args.build or not (build_dirs[0] / "template.yaml").is_file():
        subprocess.run(["make", "-C", str(ROOT), "build"], check=True)  # noqa: S603, S607
    python = find_python313(args.python)
    if not args.runtime_boto3:
        raise SystemExit("no boto3 pin found: pass --runtime-boto3")
    cache = ROOT / ".aws-sam" / "bench"
    sdk = runtime_sdk(python, args.runtime_boto3, cache)
    shims = {build: native_shim(python, build / LAYER_ID / "python", cache) for build in build_dirs}
    templates = {build: load_built_template(build) for build in build_dirs}
    server, stub = start_stub()
    bare, *handlers = cases()
    if args.only:
        handlers = [c for c in handlers if any(c.name.startswith(prefix) for prefix in args.only)]
    if args.tracing != "on":
        untraced = [replace(c, name=c.name + " [no SDK tracing]", tracing="off") for c in handlers]
        handlers = untraced if args.tracing == "off" else _interleave(handlers, untraced)
    all_cases = [bare]
    for build in build_dirs:
        label = f" @ {_label(build)}" if len(build_dirs) > 1 else ""
        all_cases += [replace(c, name=c.name + label, build=build) for c in handlers]
    try:
        with tempfile.TemporaryDirectory(prefix="cold-start-") as tmp:
            workdir = Path(tmp)
            bare_dir = workdir / "bare"
            bare_dir.mkdir()
            (bare_dir / "app.py").write_text(BARE_APP, encoding="utf-8")
            specs, envs = {}, {}
            for case in all_cases:
                template = templates[case.build] if case.build else None
                shim = shims[case.build] if case.build else None
                specs[case.name] = child_spec(case, template, case.build or bare_dir, bare_dir, sdk, shim)
                envs[case.name] = case_env(case, template, specs[case.name], sdk, stub)

            if args.importtime:
                case = next(c for c in all_cases if c.name.startswith(args.importtime))
                importtime(python, specs[case.name], envs[case.name], workdir, args.top, args.importtime_runs)
                return 0

            results = {case.name: Samples() for case in all_cases}
            for run in range(args.runs):
                for case in all_cases:  # interleaved, so that drifts of the machine hit every case alike
                    before = _StubDynamoDB.requests
                    spec = {**specs[case.name], "depth": depth_of(run, args.runs)}
                    figures, _ = run_child(python, spec, envs[case.name], workdir)
                    if case.expect not in figures["answer"]:
                        raise SystemExit(f"{case.name}: unexpected answer {figures['answer']}")
                    samples = results[case.name]
                    samples.import_ms.append(figures["import_ms"])
                    samples.invoke_ms.append(figures["invoke_ms"])
                    samples.cpu_ms.append(figures["cpu_ms"])
                    samples.notes.add(f"DynamoDB requests to the loopback stub: {_StubDynamoDB.requests - before}")
                    samples.notes.add(f"botocore from {figures['botocore']}")
    finally:
        server.shutdown()

    facts = {_label(build): layer_facts(build) for build in build_dirs}
    print(f"Python {python} | runs per handler: {args.runs} (fresh processes, median) | tracing {args.tracing}")
    for build in build_dirs:
        print(f"build {_label(build)}: layer {json.dumps(facts[_label(build)])}")
        shim = shims[build]
        if shim is not None:
            print(f"  + host builds of the layer's compiled extensions (the layer is arm64): {shim.name}")
    print(f"runtime SDK emulation: boto3=={args.runtime_boto3}, precompiled, after the layer on sys.path")
    print()
    summary = print_table(results, all_cases[0].name)
    for name, samples in results.items():
        for note in sorted(samples.notes):
            print(f"  {name}: {note}")
    print("\ncommand: " + " ".join([".venv/bin/python -m bench.cold_start", *(argv or sys.argv[1:])]))
    if args.json:
        args.json.write_text(
            json.dumps({"layer": facts, "tracing": args.tracing, "cases": summary}, indent=2), encoding="utf-8"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
