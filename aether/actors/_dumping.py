"""Writing forensic dumps from an end-of-line actor, without ever losing one silently.

Both ends of the line (the shadow sink and the live submit actor) write one
dump per verdict through a :class:`DumpWriter`. Writes run in a worker thread
inside a shielded cancel scope, so a graceful stop never leaves a dump half
done (and the atomic rename means a hard kill leaves none partial either).

When a write fails (directory gone, read-only, disk full) the writer asks risk
to HALT, keeps the verdict in a bounded backlog and retries the backlog, in
order, before the next verdict; when writes succeed again the halt is lifted.
A verdict that does not fit in the backlog, or is still in it when the run
stops, is counted in ``aether_channel_dropped_total{channel=<lost_channel>}``
and logged as lost by its arb id.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from typing import Any

import trio

from ..dumps import RunDir
from ..messages import HaltReason, Verdict
from ..metrics import Metrics
from ._risk import HaltRequest, ask_risk

__all__ = ["HALT_REASON", "DumpWriter"]

log = logging.getLogger("aether.actors.dumps")

HALT_REASON = HaltReason.REPORTS_DIR_WRITABLE


class DumpWriter:
    """Ordered, backlogged, halt-raising dump writing for one run directory."""

    def __init__(
        self,
        run_dir: RunDir,
        metrics: Metrics,
        halt: trio.MemorySendChannel[HaltRequest] | None,
        *,
        lost_channel: str,
        backlog_max: int = 10_000,
        threaded: bool = True,
    ) -> None:
        self._run_dir = run_dir
        self._metrics = metrics
        self._halt = halt
        self._lost_channel = lost_channel
        self._backlog: collections.deque[list[Any]] = collections.deque()  # [verdict, outcome]
        self._backlog_max = backlog_max
        self._threaded = threaded
        self.halted = False
        self.written = 0
        self.failed = 0
        self.lost = 0
        metrics.dropped.labels(lost_channel)

    @property
    def backlog(self) -> int:
        return len(self._backlog)

    async def write(self, verdict: Verdict, outcome: str) -> bool:
        """Queue ``verdict``'s dump and flush the backlog; True when it is on disk now."""
        entry = [verdict, outcome]
        self._backlog.append(entry)
        if len(self._backlog) > self._backlog_max:
            lost, _ = self._backlog.popleft()
            self._count_lost(1)
            log.error("dump backlog full: bundle %s lost", lost.bundle.arb_id)
        await self.flush()
        return not any(e is entry for e in self._backlog)

    def relabel(self, verdict: Verdict, outcome: str) -> None:
        """Change the outcome of a verdict still waiting in the backlog (e.g. not sent after all)."""
        for entry in self._backlog:
            if entry[0] is verdict:
                entry[1] = outcome

    async def flush(self) -> None:
        with trio.CancelScope(shield=True):
            while self._backlog:
                verdict, outcome = self._backlog[0]
                try:
                    if self._threaded:
                        await trio.to_thread.run_sync(lambda: self._run_dir.write_bundle(verdict, outcome=outcome))
                    else:  # tests: inline, so trio.testing.wait_all_tasks_blocked() orders it
                        self._run_dir.write_bundle(verdict, outcome=outcome)
                except OSError as exc:
                    self.failed += 1
                    self._metrics.dump_errors.inc()
                    if not self.halted:
                        log.error("cannot write dumps to %s (%s): asking risk to HALT", self._run_dir.bundles,
                                  exc.strerror or type(exc).__name__)
                        # Only a request risk received counts; otherwise the next failure asks again.
                        self.halted = self._send_halt(True)
                    return
                self._backlog.popleft()
                self.written += 1
                self._metrics.dumps_written.labels(verdict.bundle.source).inc()
                if self.halted:
                    log.warning("dumps writable again; lifting the halt")
                    self.halted = not self._send_halt(False)

    async def drain(self, inbox: trio.MemoryReceiveChannel[Verdict], outcome: Callable[[Verdict], str]) -> int:
        """Cancelled mid-run: write what is still queued in ``inbox`` (shielded), then :meth:`close`.

        ``outcome(verdict)`` names each one. Returns how many were taken from the channel.
        """
        n = 0
        with trio.CancelScope(shield=True):
            while True:
                try:
                    verdict = inbox.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError, trio.BrokenResourceError):
                    break
                n += 1
                self._backlog.append([verdict, outcome(verdict)])
            await self.close()
        if n:
            log.warning("stopped while %d verdicts were queued: dumped (or counted lost) before exit", n)
        return n

    async def close(self) -> None:
        """At the end of input: a last flush, then account loudly for whatever is still unwritten."""
        await self.flush()
        if self._backlog:
            n = len(self._backlog)
            self._count_lost(n)
            ids = [e[0].bundle.arb_id for e in self._backlog]
            log.error("stopping with %d bundle dumps not written (reports directory still unwritable): %s%s", n,
                      ", ".join(ids[:50]), ", ..." if n > 50 else "")
            self._backlog.clear()

    def _count_lost(self, n: int) -> None:
        self.lost += n
        self._metrics.dropped.labels(self._lost_channel).inc(n)

    def _send_halt(self, active: bool) -> bool:
        return ask_risk(self._halt, HaltRequest(HALT_REASON, active))
