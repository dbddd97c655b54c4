"""Command line: ``python -m chaos --records 10000 --seed 1 [--faults platform,dynamodb,kills,odd] [--write-docs]``.

Prints one line per round, then the table and the command that reproduces it. The functions' own logs (and the
workers') go to a log file, named at the end. Exit status 1 when a guarantee failed (lost, stuck, unexplained
re-delivery, a refused record not dead), 0 otherwise.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

from .plan import ChaosConfig, parse_fault_classes
from .render import dump_json, render, write_last_run
from .report import analyse
from .scenario import run_chaos

DOCS = Path(__file__).resolve().parent.parent / "docs" / "RELIABILITY.md"


def _config(argv: list[str] | None) -> tuple[ChaosConfig, argparse.Namespace]:
    defaults = ChaosConfig()
    parser = argparse.ArgumentParser(prog="python -m chaos", description="Prove the outbound guarantees under faults")
    parser.add_argument("--records", type=int, default=defaults.records, help="distinct valid records to post")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--faults", default="all", help="all, none, or some of platform,dynamodb,kills,odd")
    parser.add_argument("--rounds", type=int, default=defaults.rounds, help="chaos rounds (more while posting)")
    parser.add_argument("--clean-rounds", type=int, default=defaults.clean_rounds, help="limit of clean rounds")
    parser.add_argument("--workers", type=int, default=defaults.workers, help="warm worker processes")
    parser.add_argument("--lambda-timeout", type=float, default=defaults.lambda_timeout_s, help="seconds, chaos rounds")
    parser.add_argument("--clean-timeout", type=float, default=defaults.clean_timeout_s, help="seconds, clean rounds")
    parser.add_argument("--top-timeout", type=float, default=defaults.top_timeout_s, help="TOP client timeout (s)")
    parser.add_argument("--dynamo-rate", type=float, default=defaults.dynamo_rate, help="DynamoDB faults per request")
    parser.add_argument("--max-attempts", type=int, default=defaults.max_attempts, help="SYNC_MAX_ATTEMPTS")
    parser.add_argument("--no-fast-forward", action="store_true", help="wait for leases and backoffs to run out")
    parser.add_argument(
        "--overlap-intake", action="store_true", help="post while the sync runs (moto loses writes: see RELIABILITY.md)"
    )
    parser.add_argument("--write-docs", action="store_true", help=f"rewrite the 'Last run' section of {DOCS.name}")
    parser.add_argument("--json", type=Path, help="also write the findings as JSON to this file")
    parser.add_argument("--log", type=Path, help="the functions' and workers' log file (default: a temp file)")
    args = parser.parse_args(argv)
    try:
        faults = parse_fault_classes(args.faults)
    except ValueError as exc:
        parser.error(str(exc))
    if args.records < 3 or args.workers < 1 or not 0 <= args.dynamo_rate <= 1:
        parser.error("--records must be >= 3, --workers >= 1 and --dynamo-rate within 0..1")
    config = ChaosConfig(
        records=args.records,
        seed=args.seed,
        faults=faults,
        rounds=args.rounds,
        clean_rounds=args.clean_rounds,
        workers=args.workers,
        lambda_timeout_s=args.lambda_timeout,
        clean_timeout_s=args.clean_timeout,
        top_timeout_s=args.top_timeout,
        dynamo_rate=args.dynamo_rate,
        max_attempts=args.max_attempts,
        fast_forward=not args.no_fast_forward,
        overlap_intake=args.overlap_intake,
    )
    return config, args


def _quiet(log_path: Path) -> TextIO:
    """Send this process's stdout (the functions' Powertools logs and metrics) and its logging to ``log_path``;
    return a stream on the real stdout for the harness's own lines."""
    real = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    log = open(log_path, "a", encoding="utf-8")
    os.dup2(log.fileno(), 1)
    logging.basicConfig(level=logging.WARNING, stream=log, force=True)
    return real


def main(argv: list[str] | None = None) -> int:
    config, args = _config(argv)
    log_path = args.log or Path(tempfile.gettempdir()) / f"chaos-{config.seed}-{int(time.time())}.log"
    out = _quiet(log_path)

    def progress(line: str) -> None:
        out.write(line + "\n")

    progress(f"chaos: {config.command()}")
    run = run_chaos(config, log_path, progress)
    findings = analyse(run)
    text = render(run, findings)
    out.write("\n" + text + "\n")
    if args.json:
        dump_json(args.json, run, findings)
    if args.write_docs:
        write_last_run(DOCS, text)
        out.write(f"\nwrote the last run into {DOCS}\n")
    out.write(f"logs: {log_path}\n")
    out.flush()
    return 0 if findings.ok else 1


if __name__ == "__main__":
    sys.exit(main())
