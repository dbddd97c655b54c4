"""Sync invocations in worker processes (``chaos.worker``), as Lambda runs them: a pool of warm containers, each
invocation with a deadline, killed with SIGKILL when it overruns it (``killed_at_deadline``) or when it reports
that the platform accepted a call and it was told to die there (``killed_after_call``). A killed container is
replaced by a cold one. ``Invocation`` keeps what the harness learnt about each run.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .plan import InvocationPlan, Variant

__all__ = ["Invocation", "WorkerPool"]

ROOT = Path(__file__).resolve().parent.parent
_GRACE_S = 0.25  # the pipe's latency: a run that answers this late still finished inside its own deadline
_READY_TIMEOUT_S = 60.0


@dataclass
class Invocation:
    """One sync run and its fate."""

    tag: str
    kind: str
    variant: str
    timeout_s: float
    started: float = 0.0  # time.time()
    ended: float = 0.0
    outcome: str = ""  # returned | raised | killed_after_call | killed_at_deadline | worker_lost
    result: dict[str, Any] | None = None  # the handler's answer (the run report) when it returned
    error: str | None = None
    error_type: str | None = None
    dynamo_faults: list[str] = field(default_factory=list)
    unanswered: list[int] = field(default_factory=list)  # its TOP requests (by number) it never read an answer to

    @property
    def status(self) -> str:
        """The run report's status when the handler returned, else the outcome."""
        return str(self.result.get("status")) if self.result else self.outcome

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, [], "")}


class _Worker:
    """One container: a ``chaos.worker`` process and a thread reading its messages into a queue."""

    def __init__(self, env: dict[str, str], log: IO[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "chaos.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            cwd=ROOT,
            text=True,
            bufsize=1,
        )
        self.messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.ready = False
        threading.Thread(target=self._read, name=f"chaos-worker-{self.process.pid}", daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                self.messages.put(json.loads(line))
            except ValueError:
                continue
        self.messages.put(None)  # the process is gone

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self) -> bool:
        while not self.ready:
            try:
                message = self.messages.get(timeout=_READY_TIMEOUT_S)
            except queue.Empty:
                return False
            if message is None:
                return False
            self.ready = message.get("event") == "ready"
        return True

    def kill(self) -> None:
        if self.alive:
            self.process.kill()  # SIGKILL: no finally blocks run, the lease is not released
        self.process.wait()

    def invoke(self, plan: InvocationPlan, tag: str, env: dict[str, str]) -> Invocation:
        run = Invocation(tag, plan.kind.value, plan.variant.value, plan.timeout_s)
        if not self.wait_ready():
            run.outcome = "worker_lost"
            self.kill()
            return run
        command = {
            "tag": tag,
            "kind": plan.kind.value,
            "timeout_s": plan.timeout_s,
            "dynamo": plan.dynamo.to_dict(),
            "kill_after_call": plan.variant is Variant.KILL_AFTER_CALL,
            "env": env,
        }
        assert self.process.stdin is not None
        run.started = time.time()
        deadline = time.monotonic() + plan.timeout_s + _GRACE_S
        try:
            self.process.stdin.write(json.dumps(command) + "\n")
            self.process.stdin.flush()
        except OSError:
            run.outcome = "worker_lost"
        while not run.outcome:
            try:
                message = self.messages.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()  # Lambda ends the invocation at its timeout, wherever the code is
                run.outcome = "killed_at_deadline"
                break
            if message is None:
                run.outcome = "worker_lost"
            elif message.get("event") == "called":
                self.kill()
                run.outcome = "killed_after_call"
            elif message.get("event") == "done":
                run.result = message.get("result")
                run.error, run.error_type = message.get("error"), message.get("error_type")
                run.dynamo_faults = list(message.get("dynamo_faults", []))
                run.unanswered = list(message.get("unanswered", []))
                run.outcome = "raised" if run.error else "returned"
        run.ended = time.time()
        return run


class WorkerPool:
    """``size`` warm workers; ``run`` invokes a round's plans at once, one worker each."""

    def __init__(self, size: int, env: dict[str, str], log_path: Path) -> None:
        self._env = env
        self._log = open(log_path, "a", encoding="utf-8")
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: list[_Worker] = []
        self._lock = threading.Lock()
        self._count = 0
        self._started_once = False
        self.cold_starts = 0
        for _ in range(size):
            self._idle.put(self._spawn())

    def _spawn(self) -> _Worker:
        worker = _Worker(self._env, self._log)
        with self._lock:
            self._all.append(worker)
            self.cold_starts += 1
        return worker

    def _invoke(self, plan: InvocationPlan, tag: str, env: dict[str, str]) -> Invocation:
        worker = self._idle.get()
        try:
            run = worker.invoke(plan, tag, env)
        finally:
            self._idle.put(worker if worker.alive else self._spawn())
        with self._lock:
            self._started_once = self._started_once or worker.ready
            if not worker.ready and not self._started_once:
                # Not a fault the harness injected: the functions cannot even be imported. Say so, loudly.
                raise RuntimeError(f"sync workers exit before they are ready; see the log {self._log.name}")
        return run

    def run(self, plans: list[InvocationPlan], prefix: str, env: dict[str, str]) -> list[Invocation]:
        """Invoke every plan at once (as far as there are workers); returns when all have ended."""
        with self._lock:
            tags = [f"{prefix}-{self._count + n}" for n in range(len(plans))]
            self._count += len(plans)
        with ThreadPoolExecutor(max_workers=max(1, len(plans))) as pool:
            return list(pool.map(lambda pair: self._invoke(pair[0], pair[1], env), zip(plans, tags, strict=True)))

    def close(self) -> None:
        """End every worker: idle ones hold nothing worth a clean exit, so a short grace, then SIGKILL."""
        for worker in self._all:
            if worker.alive and worker.process.stdin is not None:
                try:
                    worker.process.stdin.close()  # a worker leaves its loop at end of input
                except OSError:
                    pass
        deadline = time.monotonic() + 0.3
        for worker in self._all:
            try:
                worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.kill()
        self._log.close()


def worker_environment(base: dict[str, str], overrides: dict[str, str]) -> dict[str, str]:
    """The workers' environment: the stack's (tables, endpoints, gateway), the sync settings of the run, and the
    package and the checkout on the import path as the Lambda layer would put them."""
    path = os.pathsep.join([str(ROOT / "layers" / "shared"), str(ROOT)])
    return {**base, **overrides, "PYTHONPATH": path}
