"""The shadow sink: the end of the line in shadow mode. It has no network at all.

Every verdict is written to its forensic JSON file; those that passed every
gate are counted in ``aether_executor_bundles_shadow_blocked_total{source}``:
they would have been sent. Writes run in a worker thread inside a shielded
cancel scope, so a graceful stop never leaves a dump half done (and the atomic
rename means a hard kill leaves none partial either).

When a write fails (directory gone, read-only, disk full) the sink asks risk to
HALT, keeps the verdict in a bounded backlog and retries it before the next
one; when writes succeed again the halt is lifted. Nothing is lost silently: a
verdict that does not fit in the backlog, or is still in it when the run stops,
is counted in ``aether_channel_dropped_total{channel="shadow_dumps"}`` and
logged as lost by its arb id.
"""

from __future__ import annotations

import collections
import logging
from typing import Any

import trio

from ..dumps import RunDir
from ..messages import ActorStatistics, Verdict
from ..metrics import Metrics
from ._risk import HaltRequest

__all__ = ["ShadowSink"]

log = logging.getLogger("aether.actors.shadow")

_HALT_REASON = "reports_dir_writable"
#: ``aether_channel_dropped_total{channel}`` label for verdicts whose dump was given up.
_LOST_CHANNEL = "shadow_dumps"


class ShadowSink:
    def __init__(
        self,
        *,
        run_dir: RunDir,
        metrics: Metrics,
        inbox: trio.MemoryReceiveChannel[Verdict],
        halt: trio.MemorySendChannel[Any] | None = None,
        backlog_max: int = 10_000,
        threaded: bool = True,
    ) -> None:
        self._run_dir = run_dir
        self._metrics = metrics
        self._inbox = inbox
        self._halt = halt
        self._backlog: collections.deque[Verdict] = collections.deque()
        self._backlog_max = backlog_max
        self._halted = False
        self._threaded = threaded
        self._written = 0
        self._failed = 0
        self._lost = 0
        self.blocked = 0
        metrics.dropped.labels(_LOST_CHANNEL)

    def statistics(self) -> ActorStatistics:
        return ActorStatistics(queued=len(self._backlog), processed=self._written, dropped=self._lost,
                               rejected=self._failed)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for verdict in self._inbox:
            if verdict.passed:
                # Shadow gate: this bundle passed every gate and is not sent. Ever.
                self.blocked += 1
                self._metrics.shadow_blocked.labels(verdict.bundle.source).inc()
            self._backlog.append(verdict)
            if len(self._backlog) > self._backlog_max:
                lost = self._backlog.popleft()
                self._count_lost(1)
                log.error("dump backlog full: bundle %s lost", lost.bundle.arb_id)
            await self._flush()
        await self._flush()
        if self._backlog:
            # Stopping while the reports directory is still unwritable: say so, loudly and with the count.
            n = len(self._backlog)
            self._count_lost(n)
            ids = [v.bundle.arb_id for v in self._backlog]
            log.error("stopping with %d bundle dumps not written (reports directory still unwritable): %s%s", n,
                      ", ".join(ids[:50]), ", ..." if n > 50 else "")
            self._backlog.clear()

    def _count_lost(self, n: int) -> None:
        self._lost += n
        self._metrics.dropped.labels(_LOST_CHANNEL).inc(n)

    async def _flush(self) -> None:
        with trio.CancelScope(shield=True):
            while self._backlog:
                verdict = self._backlog[0]
                outcome = "shadow_blocked" if verdict.passed else "rejected"
                try:
                    if self._threaded:
                        await trio.to_thread.run_sync(lambda: self._run_dir.write_bundle(verdict, outcome=outcome))
                    else:  # tests: inline, so trio.testing.wait_all_tasks_blocked() orders it
                        self._run_dir.write_bundle(verdict, outcome=outcome)
                except OSError as exc:
                    self._failed += 1
                    self._metrics.dump_errors.inc()
                    if not self._halted:
                        self._halted = True
                        log.error("cannot write dumps to %s (%s): asking risk to HALT", self._run_dir.bundles,
                                  exc.strerror or type(exc).__name__)
                        await self._send_halt(True)
                    return
                self._backlog.popleft()
                self._written += 1
                self._metrics.dumps_written.labels(verdict.bundle.source).inc()
                if self._halted:
                    self._halted = False
                    log.warning("dumps writable again; lifting the halt")
                    await self._send_halt(False)

    async def _send_halt(self, active: bool) -> None:
        if self._halt is None:
            return
        try:
            self._halt.send_nowait(HaltRequest(_HALT_REASON, active))
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            log.error("could not reach risk with a halt request (%s)", "halt" if active else "lift")
