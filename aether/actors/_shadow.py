"""The shadow sink: the end of the line in shadow mode. It has no network at all.

Every verdict is written to its forensic JSON file through a
:class:`~aether.actors._dumping.DumpWriter` (atomic, in order, HALT while the
reports directory is unwritable, nothing lost silently: lost dumps are counted
in ``aether_channel_dropped_total{channel="shadow_dumps"}``). Verdicts that
passed every gate are counted in
``aether_executor_bundles_shadow_blocked_total{source}``: they would have been
sent.
"""

from __future__ import annotations


import trio

from ..dumps import RunDir
from ..messages import ActorStatistics, Verdict
from ..metrics import Metrics
from ._dumping import DumpWriter
from ._risk import HaltRequest

__all__ = ["ShadowSink"]

#: ``aether_channel_dropped_total{channel}`` label for verdicts whose dump was given up.
_LOST_CHANNEL = "shadow_dumps"


class ShadowSink:
    def __init__(
        self,
        *,
        run_dir: RunDir,
        metrics: Metrics,
        inbox: trio.MemoryReceiveChannel[Verdict],
        halt: trio.MemorySendChannel[HaltRequest] | None = None,
        backlog_max: int = 10_000,
        threaded: bool = True,
    ) -> None:
        self._metrics = metrics
        self._inbox = inbox
        self._writer = DumpWriter(run_dir, metrics, halt, lost_channel=_LOST_CHANNEL, backlog_max=backlog_max,
                                  threaded=threaded)
        self.blocked = 0

    def statistics(self) -> ActorStatistics:
        w = self._writer
        return ActorStatistics(queued=w.backlog, processed=w.written, dropped=w.lost, rejected=w.failed)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            async for verdict in self._inbox:
                self._count(verdict)
                await self._writer.write(verdict, _outcome(verdict))
        except trio.Cancelled:
            # A hard stop past the drain deadline: what is queued still gets its dump.
            await self._writer.drain(self._inbox, self._count_and_name)
            raise
        await self._writer.close()

    def _count(self, verdict: Verdict) -> None:
        if verdict.passed:
            # Shadow gate: this bundle passed every gate and is not sent. Ever.
            self.blocked += 1
            self._metrics.shadow_blocked.labels(verdict.bundle.source).inc()

    def _count_and_name(self, verdict: Verdict) -> str:
        self._count(verdict)
        return _outcome(verdict)


def _outcome(verdict: Verdict) -> str:
    return "shadow_blocked" if verdict.passed else "rejected"
