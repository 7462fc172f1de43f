"""The in-flight actor: the per-target-block ledger between risk and the end of the line.

Shadow and live share it. Every verdict from risk goes straight on to the end
of the line (the sink or the submit actor), unchanged and first: this actor
never delays the hot path. A verdict that passed every gate is also admitted
to the ledger under its target block; once that block is known (the head is
at ``target + confirmations``) a worker task, off the hot path, settles all
the block's bundles at once with a :class:`~aether.settlement.Settler` and
appends one line per bundle to ``<run dir>/settlements.jsonl`` (flushed and
fsynced per line, file mode 0600, in a worker thread), counting
``aether_bundle_settlements_total{source,outcome}``, and adds the outcome to
the bundle's dump (its ``settlement`` field).

Exactly one outcome per bundle, never lost:

- The ledger (:class:`InFlightLedger`) belongs to the supervision tree, not to
  the actor: a panic and restart finds every pending bundle still there, the
  verdict that was being handed on when it died, and the rows that were being
  written (written again by the new actor).
- A bundle leaves ``pending`` (synchronously) right before its line is
  written, and its ``arb_id`` is remembered until long after its block, so an
  aliased or duplicated verdict is settled once (counted as ``duplicates``).
- A block the node cannot settle (missing, reorged between calls, node errors,
  a settler bug) is retried at every head and, :data:`GIVE_UP_AFTER` blocks
  past its target, settled as ``unknown`` with the last reason.
- On a graceful stop, bundles whose block is not settled yet end as
  ``unknown`` (``stopped``); so does a bundle that would overflow the ledger
  (``ledger_full``): the ledger is bounded.

A line that cannot be written asks risk to HALT (reason
``settlements_writable``), like the dumps and ``inclusions.jsonl``: evidence we
cannot keep is evidence we do not have. The row stays first in the ledger's
queue and is written (then counted in the metric, exactly once) at the next
write or the next head; when a write succeeds again the halt is lifted. The
queue is bounded (``max_writing``): beyond it the oldest row is dropped,
logged by its ``arb_id`` and counted in
``aether_channel_dropped_total{channel="settlements"}`` (never in the
settlements metric); so are rows still unwritten when the actor stops. In live mode the inclusion result of
submitted bundles still reaches risk from the submit actor (real P&L,
reverts); a counterfactual moves no money, so settlements are evidence, not
P&L.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import attrs
import orjson
import trio

from ..dumps import RunDir
from ..messages import ActorStatistics, Bundle, HaltReason, Tick, Verdict
from ..metrics import Metrics
from ..settlement import GIVE_UP_AFTER, Retry, Settlement, SettlementOutcome, unknown
from ._risk import HaltRequest, ask_risk

__all__ = ["AppendOnlyFile", "InFlightActor", "InFlightLedger", "InFlightStatistics", "SettlementFile", "SettlerLike"]

#: How long a stopped in-flight actor may take to hand on the verdicts it holds.
HAND_ON_TIMEOUT_S = 2.0

log = logging.getLogger("aether.actors.inflight")

_RECORD_HALT = HaltReason.SETTLEMENTS_WRITABLE
_LOST_CHANNEL = "settlements"


class SettlerLike(Protocol):
    async def settle(self, target: int, bundles: Sequence[Bundle]) -> list[Settlement] | Retry: ...


@attrs.define
class InFlightLedger:
    """What must survive a restart of the actor (the tree owns it)."""

    pending: dict[int, dict[str, Bundle]] = attrs.field(factory=dict)  # target block -> arb_id -> bundle
    settled: dict[str, int] = attrs.field(factory=dict)  # arb_id -> target block, pruned
    writing: list[tuple[Settlement, int | None]] = attrs.field(factory=list)  # rows not yet on disk
    handoff: Verdict | None = None  # received from risk, not yet handed on
    retry_reason: dict[int, str] = attrs.field(factory=dict)
    head: int = -1
    pruned_below: int = 0

    @property
    def size(self) -> int:
        return sum(len(v) for v in self.pending.values())


@attrs.frozen
class InFlightStatistics:
    pending: int
    admitted: int
    settled: int
    duplicates: int
    late: int
    retries: int
    errors: int
    record_errors: int
    annotated: int = 0
    not_annotated: int = 0
    unwritten: int = 0  # rows waiting for a writable disk
    lost: int = 0  # rows dropped at the bound or unwritten at the stop


class AppendOnlyFile:
    """An append-only JSONL record (``settlements.jsonl``, ``inclusions.jsonl``): 0600, fsynced per line.

    One class for both files, so both keep the same durability promise. Opened
    on the first line (a run that records nothing leaves no empty file).
    :meth:`append` blocks on the disk: callers run it in a worker thread (or
    inline in clock-driven tests), count an ``OSError`` and decide what to
    retry (the in-flight actor keeps a bounded queue; the submit actor asks
    risk to HALT).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def append(self, line: bytes) -> None:
        """Worker thread: append one line, flush and fsync."""
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        view = memoryview(line)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        os.fsync(self._fd)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


#: ``settlements.jsonl`` (the name the tree and tests know it by).
SettlementFile = AppendOnlyFile


class InFlightActor:
    """See the module docstring.

    Args:
        ledger: the tree-owned ledger (survives restarts).
        settler: judges one target block's bundles against the chain.
        records: where settlement lines go.
        metrics: the process's metrics.
        inbox: verdicts from risk.
        out: verdicts to the end of the line (every one, unchanged).
        ticks: heads (to know which target blocks are known).
        feedback: risk's feedback channel (HALT while lines cannot be written).
        confirmations: settle block N once the head is at N + this.
        give_up_after: blocks past the target after which a block the node
            cannot settle ends as ``unknown``.
        max_pending: bound of the ledger; beyond it a bundle is settled at
            once as ``unknown`` (``ledger_full``).
        max_writing: bound of the rows waiting for a writable disk; beyond it
            the oldest is dropped and counted (``settlements`` channel).
        threaded: write lines in a worker thread (False in clock-driven tests).
        dumps: the run directory whose dumps get a ``settlement`` field.
        final_pass_s: at a graceful stop, time allowed to settle blocks already mined.
        settle_delay_s: wait this long after a head before settling (off the head's rush).
        enabled: False skips the counterfactual (every bundle is ``unknown``,
            ``settlement_off``); for measuring what settlement costs.
    """

    def __init__(
        self,
        *,
        ledger: InFlightLedger,
        settler: SettlerLike,
        records: AppendOnlyFile,
        metrics: Metrics,
        inbox: trio.MemoryReceiveChannel[Verdict],
        out: trio.MemorySendChannel[Verdict],
        ticks: trio.MemoryReceiveChannel[Tick],
        feedback: trio.MemorySendChannel[HaltRequest] | None = None,
        confirmations: int = 0,
        give_up_after: int = GIVE_UP_AFTER,
        max_pending: int = 4096,
        max_writing: int = 10_000,
        enabled: bool = True,
        on_settled: Callable[[Settlement], None] | None = None,
        threaded: bool = True,
        dumps: RunDir | None = None,
        final_pass_s: float = 5.0,
        settle_delay_s: float = 0.0,
    ) -> None:
        self.ledger = ledger
        self._settler = settler
        self._records = records
        self._metrics = metrics
        self._inbox = inbox
        self._out = out
        self._ticks = ticks
        self._feedback = feedback
        self._confirmations = confirmations
        self._give_up = give_up_after
        self._max_pending = max_pending
        self._max_writing = max_writing
        self._lost = 0
        metrics.dropped.labels(_LOST_CHANNEL)
        self._enabled = enabled
        self._on_settled = on_settled
        self._threaded = threaded
        self._dumps = dumps
        self._final_pass_s = final_pass_s
        self._delay_s = settle_delay_s
        self._annotated = 0
        self._annotate_failed = 0
        self._wake = trio.Event()
        self._admitted = 0
        self._settled = 0
        self._duplicates = 0
        self._late = 0
        self._retries = 0
        self._errors = 0
        self._record_errors = 0
        self._halted = False

    def statistics(self) -> InFlightStatistics:
        return InFlightStatistics(
            pending=self.ledger.size,
            admitted=self._admitted,
            settled=self._settled,
            duplicates=self._duplicates,
            late=self._late,
            retries=self._retries,
            errors=self._errors,
            record_errors=self._record_errors,
            annotated=self._annotated,
            not_annotated=self._annotate_failed,
            unwritten=len(self.ledger.writing),
            lost=self._lost,
        )

    def actor_statistics(self) -> ActorStatistics:
        return ActorStatistics(queued=self.ledger.size + len(self.ledger.writing), processed=self._settled,
                               dropped=self._lost)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            # What a dead predecessor left half done comes first.
            await self._write_rows([])
            if self.ledger.handoff is not None:
                await self._out.send(self.ledger.handoff)
                self.ledger.handoff = None
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._tick_loop)
                nursery.start_soon(self._worker)
                task_status.started()
                async for verdict in self._inbox:
                    self.ledger.handoff = verdict
                    if verdict.passed:
                        await self._admit(verdict.bundle)
                    await self._out.send(verdict)
                    self.ledger.handoff = None
                nursery.cancel_scope.cancel()
            # End of input (a graceful stop): one last pass over every block already mined
            # (confirmed or not, within a few seconds), then what is still pending will never
            # be settled by us.
            with trio.move_on_after(self._final_pass_s):
                for target in sorted(t for t in self.ledger.pending if t <= self.ledger.head):
                    await self._settle_block(target, final=True)
            await self._stop_pending("stopped")
            self._account_unwritten()
        except BaseException as exc:
            if _only_cancelled(exc):  # a hard stop, not a panic: account for what is pending
                # First hand on what risk already gave us (the fast stop cancels actor by actor, and
                # the end of the line accounts for every verdict it receives); bounded.
                with trio.CancelScope(shield=True) as scope:
                    scope.deadline = trio.current_time() + HAND_ON_TIMEOUT_S
                    await self._hand_on_held()
                with trio.CancelScope(shield=True):
                    await self._stop_pending("stopped")
                self._account_unwritten()
            raise  # a panic keeps the queued rows in the ledger for the restarted actor
        finally:
            self._records.close()

    async def _hand_on_held(self) -> None:
        """Stopped: the verdict in hand and every one still queued go on to the end of the line.

        A passed one taken from the inbox is admitted first, so the stop settles it as
        ``unknown`` (``stopped``) with the rest of the ledger. The one in hand was admitted
        already (the main loop admits before it hands on, with no checkpoint in between):
        admitting it again would count a late one twice.
        """
        held = 0
        try:
            while True:
                verdict = self.ledger.handoff
                if verdict is None:
                    verdict = self._inbox.receive_nowait()
                    self.ledger.handoff = verdict
                    if verdict.passed:
                        await self._admit(verdict.bundle)  # counts a duplicate as the main loop would
                await self._out.send(verdict)
                self.ledger.handoff = None
                held += 1
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            pass  # nothing more is held
        except (trio.Cancelled, trio.BrokenResourceError):
            log.error("stopped before a verdict could be handed on (the end of the line is gone)")
        if held:
            log.info("stopped: handed on %d verdicts still held", held)

    async def _admit(self, bundle: Bundle) -> None:
        led = self.ledger
        target = bundle.target_block
        if bundle.arb_id in led.settled or bundle.arb_id in led.pending.get(target, {}):
            self._duplicates += 1
            log.warning("bundle %s admitted twice; settled once", bundle.arb_id)
            return
        if target < led.pruned_below:
            self._late += 1
            log.error("bundle %s for block %d arrived after that block was pruned; not settled", bundle.arb_id,
                      target)
            return
        self._admitted += 1
        if led.size >= self._max_pending:
            led.settled[bundle.arb_id] = target
            await self._write_rows([(unknown(bundle, "ledger_full"), None)])
            return
        led.pending.setdefault(target, {})[bundle.arb_id] = bundle
        self._wake.set()

    async def _tick_loop(self) -> None:
        async for tick in self._ticks:
            if tick.head.number > self.ledger.head:
                self.ledger.head = tick.head.number
            self._wake.set()

    async def _worker(self) -> None:
        while True:
            await self._wake.wait()
            # A head is the hot path's busiest moment (stale bundles cut, nonces and reserves
            # reset, new victims): settle a little later, in the quiet part of the slot.
            await trio.sleep(self._delay_s)
            self._wake = trio.Event()
            led = self.ledger
            if led.writing:  # rows an unwritable disk left queued: try again at this head
                await self._write_rows([])
            for target in sorted(t for t in led.pending if t + self._confirmations <= led.head):
                await self._settle_block(target)
            self._prune()

    async def _settle_block(self, target: int, *, final: bool = False) -> None:
        led = self.ledger
        bundles = list(led.pending.get(target, {}).values())
        if not bundles:
            led.pending.pop(target, None)
            return
        if not self._enabled:
            result: list[Settlement] | Retry = [unknown(b, "settlement_off") for b in bundles]
        else:
            try:
                result = await self._settler.settle(target, bundles)
            except Exception as exc:  # noqa: BLE001 - a settler bug must not stop the ledger
                self._errors += 1
                log.error("settlement of block %d raised %s", target, type(exc).__name__)
                result = Retry(f"error: {type(exc).__name__}")
        if isinstance(result, Retry):
            self._retries += 1
            led.retry_reason[target] = result.reason
            if led.head - target < self._give_up or final:
                return  # a last pass leaves it to _stop_pending
            result = [unknown(b, f"gave up: {result.reason}") for b in bundles]
        by_id = {s.bundle.arb_id: s for s in result}
        # One row per bundle asked about, whatever the settler returned.
        rows = [(by_id.get(b.arb_id) or unknown(b, "settler gave no outcome"), led.head) for b in bundles]
        for b in bundles:
            led.settled[b.arb_id] = target
        led.pending.pop(target, None)
        led.retry_reason.pop(target, None)
        await self._write_rows(rows)

    async def _write_rows(self, rows: Sequence[tuple[Settlement, int | None]]) -> None:
        """Queue ``rows`` in the ledger, then write queued rows in order (shielded: a row is never half done).

        A row that cannot be written stays first in the queue (risk is asked to HALT) and
        the rest wait behind it until the next write or head; a row is counted once written.
        """
        led = self.ledger
        led.writing.extend(rows)
        while len(led.writing) > self._max_writing:
            lost, _at = led.writing.pop(0)
            self._count_lost([lost], "settlement queue full while the disk is unwritable")
        with trio.CancelScope(shield=True):
            while led.writing:
                settlement, at = led.writing[0]
                line = orjson.dumps(settlement.record(settled_at_head=at)) + b"\n"
                try:
                    if self._threaded:  # a slow disk never stalls the event loop
                        await trio.to_thread.run_sync(self._records.append, line)
                    else:  # tests on the autojump clock: no thread to wait for
                        self._records.append(line)
                except OSError as exc:
                    self._record_errors += 1
                    self._metrics.settlement_record_errors.inc()
                    log.error("cannot append to %s: %s; %d row(s) kept for the next try; asking risk to HALT",
                              self._records.path.name, exc.strerror or type(exc).__name__, len(led.writing))
                    if not self._halted:
                        self._halted = ask_risk(self._feedback, HaltRequest(_RECORD_HALT, True))
                    return
                led.writing.pop(0)
                if self._halted:
                    self._halted = not ask_risk(self._feedback, HaltRequest(_RECORD_HALT, False))
                await self._annotate(settlement)
                self._count(settlement)

    def _count_lost(self, rows: Sequence[Settlement], why: str) -> None:
        self._lost += len(rows)
        self._metrics.dropped.labels(_LOST_CHANNEL).inc(len(rows))
        ids = [s.bundle.arb_id for s in rows]
        log.error("%d settlement row(s) not written (%s): %s%s", len(ids), why, ", ".join(ids[:50]),
                  ", ..." if len(ids) > 50 else "")

    def _account_unwritten(self) -> None:
        """At a stop: rows the disk never took are lost, loudly and counted."""
        led = self.ledger
        if led.writing:
            self._count_lost([s for s, _at in led.writing], "disk still unwritable at the stop")
            led.writing.clear()

    async def _annotate(self, s: Settlement) -> None:
        """The dump's outcome: its ``settlement`` field (best effort; the line above is the record)."""
        if self._dumps is None:
            return
        r = s.record()
        doc = {k: r[k] for k in ("outcome", "reason", "target_block", "victim_status", "counterfactual_net_wei",
                                 "error_wei", "realised_profit_wei", "winner_tx_hashes", "deviation")}
        try:
            if self._threaded:
                done = await trio.to_thread.run_sync(self._dumps.annotate_settlement, s.bundle.arb_id, doc)
            else:
                done = self._dumps.annotate_settlement(s.bundle.arb_id, doc)
        except OSError as exc:
            self._annotate_failed += 1
            log.warning("dump of %s not annotated: %s", s.bundle.arb_id, exc.strerror or type(exc).__name__)
            return
        if done:
            self._annotated += 1
        else:
            self._annotate_failed += 1

    def _count(self, s: Settlement) -> None:
        self._settled += 1
        self._metrics.settlements.labels(s.bundle.source, str(s.outcome)).inc()
        if s.outcome is SettlementOutcome.UNKNOWN:
            log.info("bundle %s: unknown (%s)", s.bundle.arb_id, s.reason)
        if self._on_settled is not None:
            self._on_settled(s)

    def _prune(self) -> None:
        """Forget settled ids well past their block (bounded state)."""
        led = self.ledger
        horizon = led.head - 4 * self._give_up
        if horizon <= led.pruned_below:
            return
        led.settled = {k: t for k, t in led.settled.items() if t >= horizon}
        led.pruned_below = horizon

    async def _stop_pending(self, reason: str) -> None:
        led = self.ledger
        rows: list[tuple[Settlement, int | None]] = []
        for target in sorted(led.pending):
            for b in led.pending[target].values():
                led.settled[b.arb_id] = target
                rows.append((unknown(b, reason), led.head))
        led.pending.clear()
        await self._write_rows(rows)


def _only_cancelled(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_cancelled(e) for e in exc.exceptions)
    return isinstance(exc, trio.Cancelled)
