"""The risk actor: every built bundle gets a :class:`Verdict` from every gate.

It owns the :class:`~aether.risk.RiskEngine`, rebuilt from the persisted store
after a panic, and it is the only path from the builder to the end of the line:
while it is down nothing passes. Besides ticks and bundles on its main input it
listens on a feedback channel for inclusion outcomes (live) and for halt
requests from the sink (reports directory unwritable). A tick whose account
state could not be fetched latches the engine's balance HALT (fail closed)
until a good tick.

A halt asked for from outside the gates lives in a set the supervision tree
owns (``halts``), so a risk panic and restart cannot forget it (the sink asks
only once); while one is set ``aether_risk_state`` says ``halted`` and
``aether_risk_halted{gate=<reason>}`` is 1.
"""

from __future__ import annotations

import logging
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

    def statistics(self) -> ActorStatistics:
        return ActorStatistics(queued=self._inbox.statistics().current_buffer_used, processed=self._passed,
                               rejected=self._rejected)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            if self._feedback is not None:
                nursery.start_soon(self._feedback_loop)
            task_status.started()
            async for msg in self._inbox:
                if isinstance(msg, Tick):
                    self._on_tick(msg)
                    self._publish_external()
                else:
                    verdict = self.evaluate(msg)
                    self._publish_external()
                    await self._out.send(verdict)
            nursery.cancel_scope.cancel()

    def _on_tick(self, tick: Tick) -> None:
        if tick.eth_balance_wei is None:
            log.warning("searcher balance unknown at head %d: failing closed", tick.head.number)
        try:
            self.engine.on_tick(tick)
        except RiskError as exc:  # the engine halted itself; nothing passes until it can save again
            log.error("risk state not saved at head %d: %s", tick.head.number, exc)

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
                try:
                    self.engine.on_outcome(
                        msg.bundle.source,
                        included=msg.included,
                        reverted=msg.reverted,
                        realised_pnl_wei=msg.realised_profit_wei,
                        unknown=msg.unknown,  # no P&L, but a PAUSE: fail closed
                    )
                except RiskError as exc:  # the engine halted itself until it can save again
                    log.error("risk state not saved after an outcome: %s", exc)
                self._publish_external()

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
            try:
                committed = self.engine.commit(verdict)
            except RiskError as exc:
                # Not recorded for dedup/in-flight, so it must not go out.
                log.error("risk could not record bundle %s: %s; failing closed", bundle.arb_id, exc)
                self._metrics.rejected_counter(bundle.source).labels(RISK_ERROR).inc()
                self._rejected += 1
                return Verdict(bundle, verdict.decisions + (RiskDecision(RISK_ERROR, False, "commit failed"),),
                               False, RISK_ERROR)
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
