"""Overlap inside one sync run: while a batch is at the platform, the next batch is read and the previous one
settled (docs/ARCHITECTURE.md, "Outbound flow"). Orchestration only, over callables the runner hands in; no I/O
of its own.

The rules it keeps:

- **held records**: a record is held from the moment it is read until its settlement is written. A read made
  meanwhile is told what is held and never returns it, so a batch read ahead holds no record of the batch at the
  platform nor of the batch still being settled (both are still due in the outbox until then).
- **one settle at a time, in order**: batch N is settled only after batch N-1's settle ended.
- **everything sent is settled before ``run`` returns**, whatever stopped the run: a stop raised by the send
  (a ban, an expired session, the deadline, a bug) is raised after the settlements decided so far are written.
- **a settle that failed stops the run**, once the batch then at the platform is back and settled too; its
  failure is the one raised (it names the settle), and only records never settled stay due.
- **a read that failed stops the run** the same way: nothing is sent after it.

The runner decides what a batch is (up to the API's limit, or a round of single-record calls), when it is too
late to start one (``check_time`` raises), and retries a failing settle inside its time reserve before raising.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from ..outbox.records import OutboxRecord, Settlement

__all__ = ["BatchPipeline"]

Read = Callable[[Collection[OutboxRecord]], list[OutboxRecord]]  # due records, none of the held ones
Send = Callable[[list[OutboxRecord], list[Settlement]], None]  # appends what it decided; may raise to stop
Settle = Callable[[list[Settlement]], None]  # raises when the settle failed for good
CheckTime = Callable[[], None]  # raises when no batch may start any more


@dataclass
class _Settling:
    future: Future[None]
    settlements: list[Settlement]


@dataclass
class BatchPipeline:
    read: Read
    send: Send
    settle: Settle
    check_time: CheckTime
    _held: dict[str, OutboxRecord] = field(default_factory=dict, init=False)

    def run(self) -> None:
        """Read, send and settle batches until a read comes back empty or something stops the run."""
        settle_failure: BaseException | None = None
        stop: BaseException | None = None
        settling: _Settling | None = None
        # Two threads: the read ahead and the settle of the batch before; the send stays on the caller's thread.
        pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sync-pipeline")
        try:
            batch = self.read(())
            while batch:
                try:
                    self.check_time()
                except Exception as exc:
                    stop = exc
                    break
                self._held.update((record.record_id, record) for record in batch)
                ahead = pool.submit(self.read, list(self._held.values()))
                settlements: list[Settlement] = []
                try:
                    self.send(batch, settlements)
                except BaseException as exc:  # settled first, raised below
                    stop = exc
                if settling is not None:
                    failed = self._finish(settling)
                    settle_failure = settle_failure or failed
                settling = _Settling(pool.submit(self.settle, settlements), settlements) if settlements else None
                batch = []
                if stop is None and settle_failure is None:
                    try:
                        self.check_time()  # no next batch: its read is not waited for
                        batch = ahead.result()
                    except Exception as exc:
                        stop = exc
            if settling is not None:
                failed = self._finish(settling)
                settle_failure = settle_failure or failed
        finally:
            # A read ahead that is no longer wanted only reads: it is left to finish on its own rather than keep
            # the run past its time. Every settle was waited for above.
            pool.shutdown(wait=False, cancel_futures=True)
        if settle_failure is not None:
            raise settle_failure
        if stop is not None:
            raise stop

    def _finish(self, settling: _Settling) -> BaseException | None:
        """Wait for a settle; once it is written its records are no longer held (they may be read again when
        due again, after a retry's backoff). A failed settle keeps them held: the run stops anyway."""
        failure = settling.future.exception()
        if failure is None:
            for settlement in settling.settlements:
                self._held.pop(settlement.record.record_id, None)
        return failure
