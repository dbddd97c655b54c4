"""Running the benchmark's child processes and reading their peak memory (``ru_maxrss`` from ``wait4``)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = ["ROOT", "Child", "child_env", "run_child"]

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Child:
    exit_code: int
    # ru_maxrss from wait4: Linux keeps it across execve, so it is at least this process's size at the fork. The
    # drain reports its own peak (sync_worker: VmHWM); this one is only an upper bound.
    maxrss_kb: int
    wall_s: float
    timed_out: bool = False


def child_env(base: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
    """This process's environment (the local stack's endpoints, tables and secrets included), with the package and
    the checkout on the import path as the Lambda layer would put them."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "layers" / "shared"), str(ROOT)])
    env.update(extra)
    return env


def run_child(command: list[str], env: dict[str, str], log: IO[str], timeout_s: float) -> Child:
    """Run ``command`` to its end (killed after ``timeout_s``), its output into ``log``."""
    log.flush()
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=log)  # noqa: S603
    killed = threading.Event()

    def kill() -> None:
        killed.set()
        process.kill()

    timer = threading.Timer(timeout_s, kill)
    timer.start()
    try:
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        timer.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    return Child(process.returncode, usage.ru_maxrss, time.perf_counter() - started, killed.is_set())
