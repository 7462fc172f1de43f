"""The risk actor: every built bundle gets a :class:`Verdict` from every gate.

It owns the :class:`~aether.risk.RiskEngine`, rebuilt from the persisted store
after a panic, and it is the only path from the builder to the end of the line:
while it is down nothing passes. Besides ticks and bundles on its main input it
listens on a feedback channel for inclusion outcomes (live) and for halt
requests from the sink (reports directory unwritable). A tick whose account
state could not be fetched latches the engine's balance HALT (fail closed)
until a good tick.

The engine's state file is written by this actor in a worker thread (an fsync
of the file and its directory must not stall the event loop), one save at a
time; a passed verdict goes out only once its commit is on disk, and one whose
commit cannot be saved is refused (``risk_error``). Cancelled (the fast stop
cancels actor by actor), it still gives every bundle it holds a verdict, saves
once and hands them on, so the end of the line accounts for every bundle built.

A halt asked for from outside the gates lives in a set the supervision tree
owns (``halts``), so a risk panic and restart cannot forget it (the sink asks
only once); while one is set ``aether_risk_state`` says ``halted`` and
``aether_risk_halted{gate=<reason>}`` is 1.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, TypeAlias

import attrs
import trio

from .._errors import RiskError
from ..messages import RISK_ERROR, ActorStatistics, HaltReason, Bundle, RiskDecision, Tick, Verdict
from ..metrics import Metrics
from ..risk import dedup_gate

if TYPE_CHECKING:  # the shadow path never imports aether.inclusion
    from ..inclusion import Outcome
    from ..risk import RiskEngine

__all__ = ["Feedback", "HaltRequest", "RiskActor", "ask_risk"]

log = logging.getLogger("aether.actors.risk")

_REPORTS_HALT = HaltReason.REPORTS_DIR_WRITABLE

#: How long a stopped risk actor may take to hand on the verdicts of the bundles it holds.
FINISH_TIMEOUT_S = 2.0
#: Of which the one save of what it holds may take at most this long (then the passed ones are refused).
FINISH_SAVE_S = 1.0


@attrs.frozen
class HaltRequest:
    """Ask risk to halt (``active=True``) or lift that halt, for a reason outside the gates."""

    reason: str
    active: bool = True


#: What risk's feedback channel carries: halt requests from the end of the line and, in
#: live mode, the inclusion outcome of each submitted bundle.
Feedback: TypeAlias = "HaltRequest | Outcome"


def ask_risk(channel: trio.MemorySendChannel[HaltRequest] | None, request: HaltRequest) -> bool:
    """Hand ``request`` to risk without waiting; True when risk has it (or there is no risk, in tests).

    False means it must be asked again later: callers keep their "halted"
    state unchanged until a request was actually delivered.
    """
    if channel is None:
        return True
    try:
        channel.send_nowait(request)
    except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
        log.error("could not reach risk with %s (%s); will ask again", request.reason,
                  "halt" if request.active else "lift")
        return False
    return True


class RiskActor:
    def __init__(
        self,
        *,
        engine: RiskEngine,
        metrics: Metrics,
        inbox: trio.MemoryReceiveChannel[Tick | Bundle],
        feedback: trio.MemoryReceiveChannel[Feedback] | None,
        out: trio.MemorySendChannel[Verdict],
        halts: set[str] | None = None,
    ) -> None:
        self.engine = engine
        # The engine's saves are ours: written in a worker thread (see _save), so an
        # fsync never stalls the event loop, and awaited before a verdict goes out.
        engine.defer_saves()
        self._save_lock = trio.Lock()
        self._writer_idle = threading.Event()  # no write of ours is running in a worker thread
        self._writer_idle.set()
        self._metrics = metrics
        self._inbox = inbox
        self._feedback = feedback
        self._out = out
        # Shared with the tree (outlives this actor) when given.
        self._external_halts: set[str] = set() if halts is None else halts
        metrics.risk_halt_reason.labels(_REPORTS_HALT)  # the series exists before its first halt
        self._publish_external()
        self._passed = 0
        self._rejected = 0
        self._unsent: Verdict | None = None

    def statistics(self) -> ActorStatistics:
        return ActorStatistics(queued=self._inbox.statistics().current_buffer_used, processed=self._passed,
                               rejected=self._rejected)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            if self._feedback is not None:
                nursery.start_soon(self._feedback_loop)
            task_status.started()
            try:
                async for msg in self._inbox:
                    await self._handle(msg)
            except trio.Cancelled:
                # Stopped (the fast stop cancels actor by actor): every bundle already built
                # still gets its verdict and is handed on, so the end of the line can account
                # for it. Bounded, so that a stop never hangs here.
                with trio.CancelScope(shield=True) as scope:
                    scope.deadline = trio.current_time() + FINISH_TIMEOUT_S
                    await self._finish()
                raise
            nursery.cancel_scope.cancel()

    async def _handle(self, msg: Tick | Bundle) -> None:
        if isinstance(msg, Tick):
            self._on_tick(msg)
            await self._save_logged(f"at head {msg.head.number}")
            self._publish_external()
            return
        # Held until handed on: a stop in between hands it on from _finish.
        self._unsent = verdict = self.evaluate(msg)
        if verdict.passed:
            self._unsent = verdict = await self._durable(verdict)
        self._publish_external()
        await self._out.send(verdict)
        self._unsent = None

    async def _finish(self) -> None:
        """Cancelled: verdicts for the bundle in hand and every one still queued, one save, handed on."""
        held: list[Verdict] = [] if self._unsent is None else [self._unsent]
        self._unsent = None
        while True:
            try:
                msg = self._inbox.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError, trio.BrokenResourceError):
                break
            if isinstance(msg, Tick):
                self._on_tick(msg)
            else:
                held.append(self.evaluate(msg))
        saved: RiskError | None = None
        with trio.move_on_after(FINISH_SAVE_S) as save_scope:
            try:
                await self._save()
            except RiskError as exc:
                saved = exc
        if save_scope.cancelled_caught:
            # A hung disk: what passed is refused (not durable), and the rest still goes on.
            self.engine.save_failed()
            saved = RiskError(f"the risk state was not saved within {FINISH_SAVE_S:g} s")
        self._publish_external()
        sent = 0
        try:
            for verdict in held:
                if verdict.passed and saved is not None:
                    verdict = self._unsaved(verdict, saved)
                await self._out.send(verdict)
                sent += 1
        except (trio.Cancelled, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        if sent < len(held):
            log.error("stopped with %d verdicts that could not be handed on (the end of the line is gone)",
                      len(held) - sent)
        elif held:
            log.info("stopped: handed on the verdicts of %d bundles still held", len(held))

    def _on_tick(self, tick: Tick) -> None:
        if tick.eth_balance_wei is None:
            log.warning("searcher balance unknown at head %d: failing closed", tick.head.number)
        self.engine.on_tick(tick)  # saves are deferred (ours, in _save): this never writes nor raises RiskError

    async def _feedback_loop(self) -> None:
        assert self._feedback is not None
        async for msg in self._feedback:
            if isinstance(msg, HaltRequest):
                if msg.active and msg.reason not in self._external_halts:
                    log.error("HALT: %s", msg.reason)
                    self._external_halts.add(msg.reason)
                    self._metrics.risk_halts.labels(msg.reason).inc()
                    self._publish_external(lifted=None)
                elif not msg.active and msg.reason in self._external_halts:
                    log.warning("halt lifted: %s", msg.reason)
                    self._external_halts.discard(msg.reason)
                    self._publish_external(lifted=msg.reason)
            else:
                self.engine.on_outcome(
                    msg.bundle.source,
                    included=msg.included,
                    reverted=msg.reverted,
                    realised_pnl_wei=msg.realised_profit_wei,
                    unknown=msg.unknown,  # no P&L, but a PAUSE: fail closed
                )
                await self._save_logged("after an outcome")
                self._publish_external()

    async def _save(self) -> None:
        """Write the engine's state if it changed, in a worker thread; one write at a time, newest last.

        A write that does not return (a hung disk) must not hold a stop: the wait for it is
        abandoned on cancellation, and the next save first waits for that write to end
        (abandonably too), so two writes never race to rename (an older state cannot land
        over a newer one).

        Raises:
            RiskError: the write failed; the engine is HALTED (``risk_error``) until one succeeds.
        """
        store = self.engine.store
        if store is None:
            return
        async with self._save_lock:
            if not self._writer_idle.is_set():  # a write abandoned by a cancellation is still going
                await trio.to_thread.run_sync(self._writer_idle.wait, abandon_on_cancel=True)
            # Taken under the lock: a save queued behind another writes the state as it is then.
            due = self.engine.save_due()
            if due is None:
                return
            doc, fingerprint = due
            idle = self._writer_idle
            idle.clear()

            def write() -> None:
                try:
                    store.save(doc)
                finally:
                    idle.set()

            try:
                await trio.to_thread.run_sync(write, abandon_on_cancel=True)
            except RiskError:
                self.engine.save_failed()
                raise
            except Exception as exc:  # noqa: BLE001 - anything else is a failed save too
                self.engine.save_failed()
                raise RiskError(f"cannot save risk state: {type(exc).__name__}") from exc
            self.engine.saved(fingerprint)

    async def _save_logged(self, when: str) -> None:
        try:
            await self._save()
        except RiskError as exc:  # the engine halted itself; nothing passes until it can save again
            log.error("risk state not saved %s: %s", when, exc)

    async def _durable(self, verdict: Verdict) -> Verdict:
        """``verdict`` once its commit is on disk; refused (``risk_error``) when it cannot be saved."""
        try:
            await self._save()
        except RiskError as exc:
            return self._unsaved(verdict, exc)
        return verdict

    def _unsaved(self, verdict: Verdict, exc: RiskError) -> Verdict:
        """A passed verdict whose commit could not be saved: refused, counted under ``risk_error``."""
        bundle = verdict.bundle
        log.error("risk could not save bundle %s: %s; failing closed", bundle.arb_id, exc)
        self._metrics.rejected_counter(bundle.source).labels(RISK_ERROR).inc()
        self._passed -= 1
        self._rejected += 1
        return Verdict(bundle, verdict.decisions + (RiskDecision(RISK_ERROR, False, "commit not saved"),),
                       False, RISK_ERROR)

    def _publish_external(self, lifted: str | None = None) -> None:
        """Show halts from outside the gates in the metrics the engine publishes its own state to."""
        for reason in self._external_halts:
            self._metrics.risk_halt_reason.labels(reason).set(1)
        if lifted is not None:
            self._metrics.risk_halt_reason.labels(lifted).set(0)
        if self._external_halts:
            self._metrics.set_risk_state("halted")
        elif lifted is not None:
            try:
                self._metrics.set_risk_state(self.engine.state.status)
            except Exception:  # noqa: BLE001 - the engine's own publish corrects it at its next change
                self._metrics.set_risk_state("halted")

    def evaluate(self, bundle: Bundle) -> Verdict:
        """One verdict, failing closed when risk cannot be evaluated."""
        try:
            verdict = self.engine.evaluate(bundle)
        except Exception as exc:  # fail closed; the engine itself should never raise
            log.error("risk evaluation raised %s: failing closed", type(exc).__name__)
            verdict = Verdict(bundle, (RiskDecision(RISK_ERROR, False, f"error: {type(exc).__name__}"),), False,
                              RISK_ERROR)
            self._metrics.rejected_counter(bundle.source).labels(RISK_ERROR).inc()
            self._rejected += 1
            return verdict
        extra = [RiskDecision(reason, False, "halted") for reason in sorted(self._external_halts)]
        if extra:
            if verdict.passed:
                # The gates passed but the end of the line cannot keep its
                # record: fail closed, counted once under risk_error.
                self._metrics.rejected_counter(bundle.source).labels(RISK_ERROR).inc()
            verdict = Verdict(bundle, verdict.decisions + tuple(extra), False, verdict.reason or RISK_ERROR)
        if verdict.passed:
            # Deferred saves: commit records and marks the state due; _durable saves it (or
            # refuses the verdict) before it goes out.
            committed = self.engine.commit(verdict)
            if not committed:
                # Its twin was committed in between: the dedup gate's verdict, after the fact.
                gate = dedup_gate(bundle.source)
                self._metrics.rejected_counter(bundle.source).labels(gate).inc()
                self._rejected += 1
                return Verdict(bundle, verdict.decisions + (RiskDecision(gate, False, "committed twin"),),
                               False, gate)
            self._passed += 1
        else:
            self._rejected += 1
        return verdict
