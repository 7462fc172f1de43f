"""The submit actor: the end of the line in live mode, and inclusion tracking.

Every verdict is dumped (``live_mempool_<ts>/bundles``) exactly as in shadow
mode, through the same :class:`~aether.actors.DumpWriter`. A verdict
that passed every gate is sent to every builder unless its target block has
already been reached, its candidate was never validated (never send what was
not simulated), its dump could not be written (never send what we cannot
account for: outcome ``not_recorded``, while risk is asked to HALT), or risk is
no longer ACTIVE: a verdict passes risk, then waits (in the channel, for its
dump, for a send slot) while a HALT may latch, so the tree's
:class:`~aether.risk.RiskLatch` is read when the verdict arrives and again
synchronously right before the send (outcome ``risk_latched``, its dump
relabelled if it was already written, counted in the risk-rejection metric of
its source). After each head the inclusion tracker
reports what landed; outcomes go back to risk (daily P&L, revert streak; an
``unknown`` one, which the node never let the tracker judge, moves no P&L but
PAUSEs risk: we do not keep sending blind), and each one is appended to ``<run dir>/inclusions.jsonl`` (one JSON object a
line, flushed and fsynced before the next, file mode 0600), which the rollout
runbook's Stage C gate reads. Writing happens in a worker thread so a slow
disk never stalls the event loop; a line that cannot be written is counted
and asks risk to HALT, like an unwritable dump.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

import trio

from ..actors import AppendOnlyFile, DumpWriter, Feedback, HaltRequest, ask_risk
from ..dumps import RunDir
from ..dumps import write_json_atomic
from ..messages import ActorStatistics, HaltReason, RiskState, Source, Tick, Verdict
from ..metrics import Metrics
from ..risk import RiskLatch
from ._submitter import Submitter

if TYPE_CHECKING:
    from ..inclusion import InclusionTracker, Outcome

__all__ = ["SubmitActor"]

log = logging.getLogger("aether.actors.submit")

#: The HALT reason while outcomes cannot be recorded (lifted by the next good write).
_RECORD_HALT = HaltReason.INCLUSIONS_WRITABLE
#: Dump outcome and risk-rejection reason of a passed verdict held back because risk
#: HALTED or PAUSED after it passed (it waited in the queue meanwhile).
LATCHED = "risk_latched"


class SubmitActor:
    def __init__(
        self,
        *,
        submitter: Submitter,
        tracker: InclusionTracker,
        run_dir: RunDir,
        metrics: Metrics,
        inbox: trio.MemoryReceiveChannel[Verdict],
        ticks: trio.MemoryReceiveChannel[Tick],
        feedback: trio.MemorySendChannel[Feedback],
        deadline_s: float,
        latch: RiskLatch,
        max_concurrent: int = 8,
        threaded: bool = True,
    ) -> None:
        self._submitter = submitter
        self._latch = latch
        self._latched = 0
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
        self._threaded = threaded  # False: dumps written inline (tests that order on wait_all_tasks_blocked)
        self._writer = DumpWriter(run_dir, metrics, feedback, lost_channel="live_dumps", threaded=threaded)
        self._records = 0
        self._record_failed = 0
        self._inclusions = AppendOnlyFile(run_dir.path / "inclusions.jsonl")
        self._halt_for_records = False

    def statistics(self) -> ActorStatistics:
        return ActorStatistics(processed=self._sent, rejected=self._skipped,
                               dropped=self._writer.lost + self._record_failed)

    @property
    def latched(self) -> int:
        """Passed verdicts not sent because risk was HALTED or PAUSED when their turn came."""
        return self._latched

    def _risk_allows(self, verdict: Verdict, where: str) -> bool:
        """Read the risk latch now (synchronously); False and counted unless ACTIVE (fail closed)."""
        status = self._latch.status()
        if status is RiskState.ACTIVE:
            return True
        self._latched += 1
        bundle = verdict.bundle
        counter = self._metrics.block_arb_risk_rejected if bundle.source == Source.BLOCK_ARB else self._metrics.risk_rejected
        counter.labels(LATCHED).inc()
        log.error("not sending %s (%s): risk is %s (%s)", bundle.arb_id, where, status,
                  ", ".join(self._latch.reasons()) or "paused")
        return False

    @property
    def inclusions_path(self) -> Path:
        return self._inclusions.path

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._tick_loop)
                task_status.started()
                async for verdict in self._inbox:
                    outcome = self._decide(verdict)
                    if outcome == "submitted" and self._writer.halted:
                        outcome = "not_recorded"  # fail closed: never send what we cannot record
                    on_disk = await self._writer.write(verdict, outcome)
                    if outcome == "submitted" and not on_disk:
                        self._writer.relabel(verdict, "not_recorded")
                        outcome = "not_recorded"
                    if outcome == "submitted":
                        await self._limit.acquire_on_behalf_of(verdict.bundle.arb_id)
                        nursery.start_soon(self._submit, verdict)
                    else:
                        self._skipped += 1
                await self._writer.close()
                nursery.cancel_scope.cancel()
        except* trio.Cancelled:
            # A hard stop past the drain deadline: nothing more is sent, but every queued
            # verdict still gets its dump (outcome "stopped") or is counted lost.
            await self._writer.drain(self._inbox, lambda v: "stopped" if v.passed else "rejected")
            raise
        finally:
            self._inclusions.close()

    def _decide(self, verdict: Verdict) -> str:
        if not verdict.passed:
            return "rejected"
        bundle = verdict.bundle
        if not bundle.candidate.validated:
            log.error("refusing to submit %s: its candidate was never simulated", bundle.arb_id)
            return "not_validated"
        if self._head >= bundle.target_block:
            return "stale"
        if not self._risk_allows(verdict, "queued before the latch"):
            return LATCHED
        return "submitted"

    async def _submit(self, verdict: Verdict) -> None:
        bundle = verdict.bundle
        try:
            # The latch may have gone on while the dump was written or a send slot awaited: read
            # it again with no checkpoint between this and the request leaving.
            if not self._risk_allows(verdict, "latched while its dump was written"):
                self._skipped += 1
                await self._relabel_dump(bundle.arb_id, LATCHED)
                return
            if self._head >= bundle.target_block:
                # Its target was mined while the dump was written or a send slot awaited.
                self._skipped += 1
                await self._relabel_dump(bundle.arb_id, "stale")
                return
            deadline = trio.current_time() + self._deadline_s
            await self._submitter.submit(bundle, deadline=deadline)
            self._sent += 1
            self._tracker.track(bundle)
        finally:
            self._limit.release_on_behalf_of(bundle.arb_id)

    async def _relabel_dump(self, arb_id: str, outcome: str) -> None:
        """The dump said ``submitted``, but it was not sent: say what really happened."""

        def relabel() -> None:
            path = self._run_dir.bundle_path(arb_id)
            doc = orjson.loads(path.read_bytes())
            if isinstance(doc, dict) and doc.get("outcome") == "submitted":
                doc["outcome"] = outcome
                write_json_atomic(path, doc)

        with trio.CancelScope(shield=True):
            try:
                if self._threaded:
                    await trio.to_thread.run_sync(relabel)
                else:
                    relabel()
            except (OSError, orjson.JSONDecodeError) as exc:
                log.error("dump of %s still says submitted (not sent): %s", arb_id, type(exc).__name__)

    async def _record(self, outcome: Outcome) -> None:
        line = orjson.dumps(outcome.record()) + b"\n"
        with trio.CancelScope(shield=True):
            try:
                await trio.to_thread.run_sync(self._inclusions.append, line)
            except OSError as exc:
                self._record_failed += 1
                self._metrics.inclusion_record_errors.inc()
                log.error("cannot append to %s: %s; asking risk to HALT", self.inclusions_path.name,
                          exc.strerror or type(exc).__name__)
                if not self._halt_for_records:
                    # Only a request risk received counts; otherwise the next failure asks again.
                    self._halt_for_records = ask_risk(self._feedback, HaltRequest(_RECORD_HALT, True))
                return
        self._records += 1
        self._metrics.inclusion_records.inc()
        if self._halt_for_records:
            self._halt_for_records = not ask_risk(self._feedback, HaltRequest(_RECORD_HALT, False))

    async def _tick_loop(self) -> None:
        """Learn each head at once; judge inclusions in a task of their own.

        The inclusion check asks the node about receipts, which can take a while; the head
        that makes queued bundles stale must not wait behind it.
        """
        send, recv = trio.open_memory_channel[Tick](1024)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._inclusion_loop, recv)
            async with send:
                async for tick in self._ticks:
                    self._head = max(self._head, tick.head.number)
                    await send.send(tick)

    async def _inclusion_loop(self, ticks: trio.MemoryReceiveChannel[Tick]) -> None:
        async for tick in ticks:
            try:
                outcomes = await self._tracker.on_head(tick.head)
            except Exception as exc:  # the node may fail us; retried at the next head
                log.warning("inclusion check at head %d failed: %s", tick.head.number, type(exc).__name__)
                continue
            for outcome in outcomes:
                await self._record(outcome)
                # An unknown one goes to risk too: it moves no P&L, but it PAUSEs (fail closed).
                try:
                    self._feedback.send_nowait(outcome)
                except trio.WouldBlock:
                    await self._feedback.send(outcome)
