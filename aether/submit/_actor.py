"""The submit actor: the end of the line in live mode, and inclusion tracking.

Every verdict is dumped (``live_mempool_<ts>/bundles``) exactly as in shadow
mode. A verdict that passed every gate is sent to every builder unless its
target block has already been reached or its candidate was never validated
(never send what was not simulated). After each head the inclusion tracker
reports what landed; outcomes go back to risk (daily P&L, revert streak).
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from ..actors import HaltRequest
from ..dumps import RunDir
from ..messages import ActorStatistics, Tick, Verdict
from ..metrics import Metrics

__all__ = ["SubmitActor"]

log = logging.getLogger("aether.actors.submit")


class SubmitActor:
    def __init__(
        self,
        *,
        submitter: Any,
        tracker: Any,
        run_dir: RunDir,
        metrics: Metrics,
        inbox: trio.MemoryReceiveChannel[Verdict],
        ticks: trio.MemoryReceiveChannel[Tick],
        feedback: trio.MemorySendChannel[Any],
        deadline_s: float,
        max_concurrent: int = 8,
    ) -> None:
        self._submitter = submitter
        self._tracker = tracker
        self._run_dir = run_dir
        self._metrics = metrics
        self._inbox = inbox
        self._ticks = ticks
        self._feedback = feedback
        self._deadline_s = deadline_s
        self._limit = trio.CapacityLimiter(max_concurrent)
        self._head = -1
        self._sent = 0
        self._skipped = 0
        self._dump_failed = 0

    def statistics(self) -> ActorStatistics:
        return ActorStatistics(processed=self._sent, rejected=self._skipped, dropped=self._dump_failed)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._tick_loop)
            task_status.started()
            async for verdict in self._inbox:
                outcome = self._decide(verdict)
                await self._dump(verdict, outcome)
                if outcome == "submitted":
                    await self._limit.acquire_on_behalf_of(verdict.bundle.arb_id)
                    nursery.start_soon(self._submit, verdict)
            nursery.cancel_scope.cancel()

    def _decide(self, verdict: Verdict) -> str:
        if not verdict.passed:
            return "rejected"
        bundle = verdict.bundle
        if not bundle.candidate.validated:
            log.error("refusing to submit %s: its candidate was never simulated", bundle.arb_id)
            return "not_validated"
        if self._head >= bundle.target_block:
            return "stale"
        return "submitted"

    async def _dump(self, verdict: Verdict, outcome: str) -> None:
        with trio.CancelScope(shield=True):
            try:
                await trio.to_thread.run_sync(lambda: self._run_dir.write_bundle(verdict, outcome=outcome))
            except OSError as exc:
                self._dump_failed += 1
                self._metrics.dump_errors.inc()
                log.error("cannot write dump %s: %s; asking risk to HALT", verdict.bundle.arb_id,
                          exc.strerror or type(exc).__name__)
                try:
                    self._feedback.send_nowait(HaltRequest("reports_dir_writable", True))
                except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                    pass

    async def _submit(self, verdict: Verdict) -> None:
        bundle = verdict.bundle
        try:
            deadline = trio.current_time() + self._deadline_s
            await self._submitter.submit(bundle, deadline=deadline)
            self._sent += 1
            self._tracker.track(bundle)
        finally:
            self._limit.release_on_behalf_of(bundle.arb_id)

    async def _tick_loop(self) -> None:
        async for tick in self._ticks:
            self._head = tick.head.number
            try:
                outcomes = await self._tracker.on_head(tick.head)
            except Exception as exc:  # the node may fail us; retried at the next head
                log.warning("inclusion check at head %d failed: %s", tick.head.number, type(exc).__name__)
                continue
            for outcome in outcomes:
                try:
                    self._feedback.send_nowait(outcome)
                except trio.WouldBlock:
                    await self._feedback.send(outcome)
