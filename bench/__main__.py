"""The benchmark suite (issue 11): ``make bench`` = ``.venv/bin/python -m bench``.

Prints one table and writes docs/BENCHMARKS.md (date, machine, versions, the command, every figure with its unit,
the issue's targets met or missed and by how much):

1. the Qimen callback: in-process CPU path, with storage, end to end, cold init (``bench.callback``);
2. sync throughput through a TOP gateway that adds ``--latency-ms`` to every answer: the project against a naive
   one-per-call script and the community SDK taobaopy, in the same run (``bench.sync``);
3. cost per record: DynamoDB request units from moto's actual requests, TOP calls, Lambda GB-seconds, dollars
   (``bench.cost``);
4. scale: time and peak memory of the draining process, and where one kind tops out in AWS (``bench.ceiling``).

Everything the functions print (their logs and metrics) goes to a log file named at the end; progress lines go
to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import IO

from .children import ROOT
from .cost import PRICES
from .report import Row, render_console, render_markdown

DOC = ROOT / "docs" / "BENCHMARKS.md"
PACKAGES = ("boto3", "botocore", "moto", "pydantic", "aws-lambda-powertools", "httpx")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--latency-ms", type=int, default=50, help="delay the TOP gateway adds to every answer")
    parser.add_argument("--writeoffs", type=int, default=10_000)
    parser.add_argument("--risk", type=int, default=1_000)
    parser.add_argument("--external", type=int, default=200)
    parser.add_argument("--naive-records", type=int, default=300, help="records per kind the naive script sends")
    parser.add_argument("--taobaopy-records", type=int, default=300)
    parser.add_argument("--scale-100k", action="store_true", help="also drain 100,000 writeoffs (about 5 minutes)")
    parser.add_argument("--qimen-calls", type=int, default=5_000, help="in-process CPU path calls")
    parser.add_argument("--storage-calls", type=int, default=1_000)
    parser.add_argument("--e2e-calls", type=int, default=1_000, help="end-to-end new orders (and as many replays)")
    parser.add_argument("--cold-runs", type=int, default=7, help="fresh processes per handler (at least 7)")
    parser.add_argument("--top-calls-per-day", type=float, default=1_000_000, help="the app's TOP quota (assumed)")
    parser.add_argument("--shards", type=int, default=10, help="shards of the sharded design in the ceiling")
    parser.add_argument("--only", choices=["callback", "sync"], help="one part only (for development)")
    parser.add_argument("--out", type=Path, default=DOC, help="where to write the report (default docs/BENCHMARKS.md)")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    return parser


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> str:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GB RAM"
    except OSError:
        pass
    return "RAM unknown"


def _versions() -> str:
    found = []
    for name in PACKAGES:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def _command(argv: list[str]) -> str:
    return " ".join([".venv/bin/python -m bench", *argv])


def _make(argv: list[str]) -> str:
    return f"`make bench BENCH_ARGS='{' '.join(argv)}'`" if argv else "`make bench`"


def _document(rows: list[Row], argv: list[str], started: datetime, elapsed_s: float, notes: list[str]) -> str:
    machine = f"{os.cpu_count()} CPUs ({_cpu_model()}), {_memory_gb()}, {platform.system()} {platform.release()}"
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`bench/__main__.py`); every figure below is from the run described here. Issue 11",
        "asks for them; the targets are the issue's.",
        "",
        f"- date: {started.strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {machine}",
        f"- Python {platform.python_version()}; {_versions()}",
        f"- command: `{_command(argv)}` ({_make(argv)}); {elapsed_s / 60:.1f} minutes",
        "- local stack: moto's DynamoDB over HTTP, the TOP sandbox over HTTP; times are this machine's and moto's, far",
        "  slower than DynamoDB; counts (requests, units, calls) carry over to AWS",
        *[f"- prices: {line}" for line in PRICES.lines()],
        "",
        render_markdown(rows),
        "",
        "## Notes",
        "",
        *[f"- {note}" for note in notes],
        "",
    ]
    return "\n".join(lines)


NOTES = [
    "Throughput: the project's figure is the drain (records synced ÷ the scheduled runs' wall time), with the records"
    " already accepted; the naive script and taobaopy send records they hold in memory, so accepting is not counted"
    " against them either. They send fewer records than the project (the flags say how many): their rate is"
    " steady from the first call, one call and one UpdateItem per record.",
    "taobaopy stamps `timestamp` with the host's local time and the gateway wants UTC+8: on a UTC host every call is"
    " refused (the row quotes the answer); its figure is taken with TZ=Asia/Shanghai forced for its process.",
    "Request units: moto's answers are priced by `bench.cost.CapacityLedger` as on-demand DynamoDB bills them:"
    " writes per 1 KB rounded up per item (the larger of before and after), transactional ×2, one more per due-index"
    " entry added or removed (KEYS_ONLY: keys + 100 bytes); reads per 4 KB, strongly consistent 1×, eventually"
    " consistent (index queries) ½, BatchGetItem per item. `UpdateItem` is billed at the item's known size plus what"
    " it sets (an upper bound).",
    "Lambda: GB-seconds are this machine's durations × the template's MemorySize; an arm64 function of 512 MB has"
    " about a third of a vCPU, so in AWS the CPU part is slower and the waiting part faster.",
    "The ceiling rows are arithmetic, not a simulation; the TOP quota is an assumption (`--top-calls-per-day`): the"
    " platform sets it per app.",
    "Where the writeoff drain would be with DynamoDB as a network service, a model rather than a measurement"
    " (`.venv/bin/python -m bench.aws_model [--in-flight N]`, not part of `make bench`): the real runner over"
    " in-memory ports that wait 10 ms per Query page, 12 ms per BatchGetItem, 10 ms per BatchWriteItem and 50 ms per"
    " TOP call drained 10,000 writeoffs at 1,584 records/s with the code before the pipeline, about 2,260 with the"
    " pipeline and requests one at a time (`--in-flight 1`), and about 7,600-7,800 with 4 batch requests in flight as"
    " the store sends them; a naive sender under the same waits does 1 ÷ (50 + 10 ms) = 16.7 records/s, so about 135×"
    " and 460×. On moto, which answers one request at a time and spends CPU on each, the overlap cannot show.",
]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    # Powertools loggers take their service name when first made, and the package's child loggers can only log keys
    # under a parent of the same name: the functions run as the template's service, and so must the package's
    # modules this process imports itself (none is imported before this line).
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "taobao-bridge")
    if args.cold_runs < 7:
        _parser().error("--cold-runs: at least 7 fresh processes per handler")
    started_at, started = datetime.now(UTC), time.perf_counter()
    table_out: IO[str] = os.fdopen(os.dup(1), "w", encoding="utf-8")
    log_fd, log_name = tempfile.mkstemp(prefix="bench-", suffix=".log")
    log = os.fdopen(log_fd, "a", encoding="utf-8", buffering=1)
    sys.stdout.flush()
    os.dup2(log.fileno(), 1)  # what the functions print (logs, metrics) goes to the log, not into the table

    def say(line: str) -> None:
        print(f"bench [{time.perf_counter() - started:5.0f} s] {line}", file=sys.stderr, flush=True)

    rows: list[Row] = []
    if args.only in (None, "callback"):
        from .callback import measure_callback

        rows += measure_callback(
            cpu_calls=args.qimen_calls,
            storage_calls=args.storage_calls,
            e2e_calls=args.e2e_calls,
            cold_runs=args.cold_runs,
            log=log,
            say=say,
        )
    if args.only in (None, "sync"):
        from .figures import sync_rows
        from .sync import BenchError, SyncOptions, run_sync

        options = SyncOptions(
            latency_ms=args.latency_ms,
            writeoffs=args.writeoffs,
            risk=args.risk,
            external=args.external,
            naive_records=args.naive_records,
            taobaopy_records=args.taobaopy_records,
            scale_records=100_000 if args.scale_100k else 0,
        )
        try:
            runs = run_sync(options, log, say)
        except BenchError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 1
        rows += sync_rows(runs, top_calls_per_day=args.top_calls_per_day, shards=args.shards)
    elapsed = time.perf_counter() - started
    table_out.write(render_console(rows) + "\n")
    table_out.write(f"\n{elapsed / 60:.1f} minutes; command: {_command(argv)}; function logs: {log_name}\n")
    if not args.no_write:
        args.out.write_text(_document(rows, argv, started_at, elapsed, NOTES), encoding="utf-8")
        table_out.write(f"written: {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}\n")
    table_out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
