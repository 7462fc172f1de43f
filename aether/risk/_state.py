"""The risk engine: ACTIVE / PAUSED(until) / HALTED(reasons), fed by heads and outcomes.

The engine owns the mutable risk state and nothing else; the risk actor calls
it (it does no I/O of its own except saving to its :class:`RiskStore`). Gates
are the pure functions of :mod:`._gates`: :meth:`RiskEngine.evaluate` takes one
snapshot and one ``now`` and runs every gate against them.

State and what moves it:

- **HALT latches**, one per gate that can halt, each with the value that set it:
  ``gas_price`` while the next block's base fee alone is above the limit (set and
  released by heads); ``eth_balance`` while the searcher balance is below the
  minimum *or unknown* (set and released by heads; set at start-up until the
  first head says otherwise); ``daily_pnl`` when the UTC day's realised P&L goes
  below ``-daily_loss_limit_wei``, released only when the UTC day rolls.
- **PAUSE**: ``max_reverts`` reverts within ``revert_window_s`` (trio clock,
  monotonic, so a wall-clock jump cannot stretch or shrink it) pause for
  ``pause_s``. A landed, non-reverted bundle resets the streak.
- **In flight and dedup** per target block, added by :meth:`RiskEngine.commit`
  and dropped once a head reaches that block.

Clocks: ``clock`` (trio's, monotonic seconds) for every window; ``wall_clock``
only to know the UTC day and to store times in the file, where monotonic
readings mean nothing to the next process. A wall clock that moves *back*
across midnight does not roll the day back (that would forget today's losses).

Fail closed: an exception inside a gate fails that gate (``"error: <Type>"``)
and the bundle, reason ``risk_error``; anything else failing in
:meth:`RiskEngine.evaluate` rejects the bundle the same way; a failed save
marks the engine HALTED (reason ``risk_error``) until a later save succeeds.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Callable
from typing import Any

import attrs
import trio

from .._errors import ConfigError, RiskError
from ..config import RiskLimits
from ..messages import GATES, HALT_GATES, RISK_ERROR, Bundle, Head, RiskDecision, Tick, Verdict
from ..metrics import Metrics
from ._gates import ACTIVE, GATE_FUNCTIONS_BY_SOURCE, HALTED, PAUSED, RiskSnapshot, dedup_key
from ._latch import RiskLatch
from ._store import RiskStore

__all__ = ["HALT_GATES", "STATE_VERSION", "RiskEngine", "RiskStatistics"]

#: Version of the state file's shape; a file of another version is refused.
STATE_VERSION = 1

#: The gates that can latch a HALT.

_INT_RE = re.compile(r"^-?[0-9]+$")


def _utc_now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


@attrs.frozen
class RiskStatistics:
    """Counters of one engine (trio's ``statistics()`` habit)."""

    status: str
    evaluated: int
    passed: int
    rejected: tuple[tuple[str, int], ...]
    committed: int
    heads: int
    outcomes: int
    saves: int
    save_failures: int

    def rejected_for(self, reason: str) -> int:
        return dict(self.rejected).get(reason, 0)


class _Corrupt(Exception):
    """A field of the state file is missing or ill-typed (mapped to ConfigError)."""


class RiskEngine:
    """Evaluates bundles against every gate and keeps the risk state.

    Args:
        limits: the thresholds (``Settings.risk``).
        store: where the state survives restarts; loaded here, saved on every
            change that matters. None keeps the state in memory only (tests).
        metrics: updated on every rejection and state change.
        clock: monotonic seconds (trio's clock); windows and pause use it.
        wall_clock: an aware ``datetime`` now; only for the UTC day and the file.

    Raises:
        ConfigError: the store's file exists but is corrupt (fail closed: a
            loss limit is never silently reset).
    """

    def __init__(
        self,
        limits: RiskLimits,
        *,
        store: RiskStore | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = trio.current_time,
        wall_clock: Callable[[], _dt.datetime] = _utc_now,
        latch: RiskLatch | None = None,
    ) -> None:
        self.limits = limits
        #: Written at every state change; the submitter reads it right before each send.
        self.latch = latch
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._wall = wall_clock

        self._halts: dict[str, str] = {"eth_balance": "unknown"}
        self._paused_until: float | None = None
        self._revert_times: list[float] = []
        self._day: _dt.date = self._today()
        self._pnl = 0
        self._inflight: dict[int, int] = {}
        self._dedup: dict[int, set[str]] = {}
        self._balance: int | None = None
        self._next_base_fee: int | None = None
        self._last_head: int | None = None
        self._store_failed = False
        self._deferred = False  # saves are the owner's (defer_saves): _persist only marks them due

        self._evaluated = 0
        self._passed = 0
        self._rejected: dict[str, int] = {}
        self._committed = 0
        self._heads = 0
        self._outcomes = 0
        self._saved_fingerprint: object = None
        self._published: object = None
        self._halts_counted: set[str] = set()  # latches already counted in aether_risk_halts_total
        self._rejected_series: dict[tuple[str, str], Any] = {}  # (source, reason) -> its labelled counter

        if store is not None:
            doc = store.load()
            if doc is not None:
                try:
                    self._restore(doc)
                except _Corrupt as exc:
                    raise ConfigError(
                        f"risk state file {str(store.path)!r}: corrupt, {exc}; refusing to start from zero "
                        "(inspect it, or move it aside to accept losing the saved risk state)"
                    ) from None
                self._saved_fingerprint = self._fingerprint()
        self._roll_day()
        if metrics is not None:
            metrics.risk_halt_reason.labels(RISK_ERROR)
        self._publish()

    # ------------------------------------------------------------------ reading

    @property
    def state(self) -> RiskSnapshot:
        """A frozen snapshot now (after a UTC day roll, if one is due)."""
        self._roll_day()
        self._publish()
        return self._snapshot(self._clock())

    def _status(self, now: float) -> str:
        if self._halts or self._store_failed:
            return HALTED
        if self._paused_until is not None and now < self._paused_until:
            return PAUSED
        return ACTIVE

    def _snapshot(self, now: float) -> RiskSnapshot:
        halts = self._halts
        reasons = tuple([g for g in GATES if g in halts]) if halts else ()
        # Positional, in RiskSnapshot's field order (keywords cost ~0.4 us more, every evaluate).
        return RiskSnapshot(
            self._status(now),
            self._paused_until,
            reasons,
            tuple([(g, halts[g]) for g in reasons]),
            self._pnl,
            self._day.isoformat(),
            tuple(self._revert_times),
            tuple(sorted(self._inflight.items())),
            frozenset([(b, k) for b, keys in self._dedup.items() for k in keys]),
            self._balance,
            self._next_base_fee,
            self._last_head,
            self._store_failed,
        )

    def statistics(self) -> RiskStatistics:
        st = self._store.statistics() if self._store is not None else None
        return RiskStatistics(
            status=self._status(self._clock()),
            evaluated=self._evaluated,
            passed=self._passed,
            rejected=tuple(sorted(self._rejected.items())),
            committed=self._committed,
            heads=self._heads,
            outcomes=self._outcomes,
            saves=0 if st is None else st.saves,
            save_failures=0 if st is None else st.save_failures,
        )

    # ------------------------------------------------------------------ gating

    def evaluate(self, bundle: Bundle) -> Verdict:
        """Run every gate on ``bundle``; never raises.

        Every gate of the bundle's source runs (the dump shows all of them), in
        the order of :data:`~aether.messages.GATES_BY_SOURCE`. The bundle
        passes only when every gate passes and the engine is ACTIVE.
        ``reason`` is the first failing gate, or ``risk_error`` when any gate
        raised, the state could not be read, or the source has no gate table
        (fail closed). A rejection increments the source's counter
        (``aether_mempool_risk_rejected_total{reason}`` or
        ``aether_block_arb_risk_rejected_total{reason}``) exactly once.
        Nothing is recorded for a passed bundle until :meth:`commit`.
        """
        self._evaluated += 1
        table = GATE_FUNCTIONS_BY_SOURCE.get(bundle.source)
        problem = _source_problem(bundle)
        if table is None or problem is not None:
            # A bundle whose label does not match its content (a backrun labelled
            # block_arb would skip the mempool gates): judged by nothing, refused.
            return self._verdict(bundle, (RiskDecision(RISK_ERROR, False, problem or "unknown source"),), RISK_ERROR)
        try:
            now = self._clock()
            self._roll_day()
            self._publish(now)  # the status at the same instant the snapshot and the gates use
            snap = self._snapshot(now)
        except Exception as exc:
            decisions = tuple(RiskDecision(g, False, f"error: {type(exc).__name__}") for g, _ in table)
            return self._verdict(bundle, decisions, RISK_ERROR)

        decisions_list: list[RiskDecision] = []
        errored = False
        failed: str | None = None  # the first gate that failed
        limits = self.limits
        for name, gate in table:
            try:
                decision = gate(bundle, snap, limits, now)
                if decision.gate != name or decision.passed is not True and decision.passed is not False:
                    raise TypeError(f"gate {name} answered {decision!r}")
            except Exception as exc:
                decision = RiskDecision(name, False, f"error: {type(exc).__name__}")
                errored = True
            if failed is None and not decision.passed:
                failed = name
            decisions_list.append(decision)
        decisions = tuple(decisions_list)
        reason: str | None
        if errored:
            reason = RISK_ERROR
        else:
            reason = failed
            if reason is None and snap.status != ACTIVE:
                # Not reachable through the gates (each state has its gate), except
                # a failed save: still nothing passes.
                reason = RISK_ERROR
        return self._verdict(bundle, decisions, reason)

    def _verdict(self, bundle: Bundle, decisions: tuple[RiskDecision, ...], reason: str | None) -> Verdict:
        if reason is None:
            self._passed += 1
            return Verdict(bundle, decisions, True, None)
        self._rejected[reason] = self._rejected.get(reason, 0) + 1
        if self._metrics is not None:
            # The labelled series, looked up once per (source, reason): labels() costs ~0.7 us a
            # bundle, and nothing removes a series, so the child is the same object every time.
            series = self._rejected_series.get((bundle.source, reason))
            if series is None:
                series = self._rejected_series[(bundle.source, reason)] = (
                    self._metrics.rejected_counter(bundle.source).labels(reason))
            series.inc()
        return Verdict(bundle, decisions, False, reason)

    def commit(self, verdict: Verdict) -> bool:
        """Record a published bundle: its dedup key and one more in flight for its block.

        Call it when a passed bundle goes out (live: submitted; shadow: would
        have been), before evaluating the next bundle, so a twin cannot slip
        through between the two. Saved to the store before returning (after
        :meth:`defer_saves`, by the owner before the verdict goes out).

        Returns:
            False when the same (target block, key) was already committed (a
            twin evaluated before the first was committed); nothing changes then.

        Raises:
            ValueError: the verdict did not pass.
            RiskError: the state could not be saved (the engine is HALTED now).
        """
        if not verdict.passed:
            raise ValueError("commit() takes a verdict that passed every gate")
        bundle = verdict.bundle
        block = bundle.target_block
        key = dedup_key(bundle)
        keys = self._dedup.setdefault(block, set())
        if key in keys:
            return False
        keys.add(key)
        self._inflight[block] = self._inflight.get(block, 0) + 1
        self._committed += 1
        self._persist()
        return True

    # ------------------------------------------------------------------ inputs

    def on_tick(self, tick: Tick) -> None:
        """:meth:`on_head` with the head, balance and next base fee of a :class:`Tick`."""
        self.on_head(tick.head, tick.eth_balance_wei, next_base_fee_wei=tick.next_base_fee)

    def on_head(self, head: Head, eth_balance_wei: int | None, *, next_base_fee_wei: int | None = None) -> None:
        """A new head: re-check the HALT latches it decides, prune passed blocks, save.

        Args:
            head: the new head.
            eth_balance_wei: the searcher's ETH balance at ``head``; None when
                the fetch failed, which latches the balance HALT (fail closed).
            next_base_fee_wei: the base fee of block ``head.number + 1``;
                computed from ``head`` by EIP-1559 when not given.

        Raises:
            RiskError: the state could not be saved (the engine is HALTED now).
        """
        self._heads += 1
        self._roll_day()
        nbf = next_base_fee_wei
        if nbf is None:
            try:
                nbf = head.next_base_fee
            except ValueError:
                nbf = None
        self._next_base_fee = nbf
        if nbf is None or nbf > self.limits.max_gas_price_wei:
            self._halts["gas_price"] = "unknown" if nbf is None else str(nbf)
        else:
            self._halts.pop("gas_price", None)

        bal = eth_balance_wei
        self._balance = bal
        if bal is None or bal < self.limits.min_balance_wei:
            self._halts["eth_balance"] = "unknown" if bal is None else str(bal)
        else:
            self._halts.pop("eth_balance", None)

        self._last_head = head.number
        for block in [b for b in self._inflight if b <= head.number]:
            del self._inflight[block]
        for block in [b for b in self._dedup if b <= head.number]:
            del self._dedup[block]
        self._persist()

    def on_outcome(self, source: str, included: bool, reverted: bool, realised_pnl_wei: int,
                   unknown: bool = False) -> None:
        """The fate of one published bundle: daily P&L and the revert streak.

        ``realised_pnl_wei`` counts for the current UTC day (negative for a loss,
        e.g. the gas of a reverted transaction). Below ``-daily_loss_limit_wei``
        the P&L HALT latches until the UTC day rolls. A revert joins the streak
        (reverts older than the window drop out); ``max_reverts`` of them PAUSE
        until ``now + pause_s`` (extending a running pause). A landed,
        non-reverted bundle resets the streak; a miss (not included) leaves it.

        ``unknown``: the node never let the tracker judge a bundle we sent (it
        may have landed, reverted, cost gas): no known money moved, so the P&L
        and the streak are left alone, but risk PAUSEs for ``pause_s`` (fail
        closed: do not keep sending while the chain cannot tell us what our
        bundles did).

        Raises:
            TypeError: ``realised_pnl_wei`` is not an int (money is integer wei).
            RiskError: the state could not be saved (the engine is HALTED now).
        """
        if type(realised_pnl_wei) is not int:
            raise TypeError(f"realised_pnl_wei must be int wei, got {type(realised_pnl_wei).__name__}")
        self._outcomes += 1
        now = self._clock()
        self._roll_day()
        if unknown:
            until = now + self.limits.pause_s
            if self._paused_until is None or until > self._paused_until:
                self._paused_until = until
            self._persist()
            return
        self._pnl += realised_pnl_wei
        if self._pnl < -self.limits.daily_loss_limit_wei:
            self._halts["daily_pnl"] = str(self._pnl)
        if reverted:
            self._revert_times.append(now)
            self._prune_reverts(now)
            if len(self._revert_times) >= self.limits.max_reverts:
                until = now + self.limits.pause_s
                if self._paused_until is None or until > self._paused_until:
                    self._paused_until = until
        elif included:
            self._revert_times.clear()
        self._persist()

    # ------------------------------------------------------------------ internals

    def _today(self) -> _dt.date:
        return self._wall().astimezone(_dt.UTC).date()

    def _roll_day(self) -> None:
        """Start a new P&L day when the UTC date moved *forward*; backward is ignored."""
        today = self._today()
        if today > self._day:
            self._day = today
            self._pnl = 0
            self._halts.pop("daily_pnl", None)

    def _prune_reverts(self, now: float) -> None:
        window = self.limits.revert_window_s
        self._revert_times = [t for t in self._revert_times if now - t <= window]

    def _count_halts(self) -> None:
        """Count each HALT episode once in ``aether_risk_halts_total{gate}``.

        An episode starts when a latch goes on and ends when it is released.
        Before the first head, the head-decided latches (``eth_balance``:
        "unknown" until a head; ``gas_price`` and ``eth_balance`` carried over
        in the state file) are a wait for data, not a breach, and are not
        counted; if the first head leaves one on, it is. A ``daily_pnl`` latch
        restored from the file is counted at once: the day's loss is real and
        the process is halted during this run.
        """
        assert self._metrics is not None
        if not self._halts and not self._store_failed and not self._halts_counted:
            return  # no latch on, none counted as on: nothing starts or ends (the usual evaluate)
        on = set(self._halts)
        if self._store_failed:
            on.add(RISK_ERROR)
        if self._heads == 0:
            on -= {"eth_balance", "gas_price"}
        for gate in sorted(on - self._halts_counted):
            self._metrics.risk_halts.labels(gate).inc()
        self._halts_counted = on

    def _publish(self, now: float | None = None) -> None:
        """Publish the state to the latch and the metrics; ``now``: the caller's clock reading, if it has one."""
        if self.latch is not None:
            self.latch.publish(halts=(*sorted(self._halts), *((RISK_ERROR,) if self._store_failed else ())),
                               paused_until=self._paused_until, clock=self._clock)
        if self._metrics is None:
            return
        self._count_halts()
        status = self._status(self._clock() if now is None else now)
        current = (status, tuple(sorted(self._halts)), self._store_failed)
        if current == self._published:
            return
        self._published = current
        self._metrics.set_risk_state(status)
        for gate in GATES:
            self._metrics.risk_halt_reason.labels(gate).set(1 if gate in self._halts else 0)
        self._metrics.risk_halt_reason.labels(RISK_ERROR).set(1 if self._store_failed else 0)

    def _fingerprint(self) -> object:
        return (
            self._day,
            self._pnl,
            tuple(sorted(self._halts.items())),
            tuple(self._revert_times),
            self._paused_until,
            self._last_head,
            tuple(sorted(self._inflight.items())),
            tuple(sorted((b, tuple(sorted(k))) for b, k in self._dedup.items())),
        )

    def _persist(self) -> None:
        """Save when something changed (or the last save failed); publish metrics.

        With :meth:`defer_saves` the save is left to the owner (:meth:`save_due`):
        this only publishes.

        Raises:
            RiskError: the save failed; the engine stays HALTED until one succeeds.
        """
        try:
            if self._store is None or self._deferred:
                return
            due = self.save_due()
            if due is None:
                return
            doc, fp = due
            try:
                self._store.save(doc)
            except RiskError:
                self._store_failed = True
                raise
            except Exception as exc:  # noqa: BLE001 - anything else is a failed save too
                self._store_failed = True
                raise RiskError(f"cannot save risk state: {type(exc).__name__}") from exc
            self._store_failed = False
            self._saved_fingerprint = fp
        finally:
            self._publish()

    # ------------------------------------------------------------------ saving by the owner

    def defer_saves(self) -> None:
        """Leave every save to the owner, who writes the state off the event loop.

        The risk actor calls this: a save is an fsync of the file and of its
        directory (milliseconds on a cloud disk), which would otherwise stall every
        task of the process while it runs. After this, a change only marks the
        state as due; the owner takes it with :meth:`save_due`, writes it with
        :attr:`store` (in a worker thread), and reports :meth:`saved` or
        :meth:`save_failed`. The owner must not let a passed verdict out before its
        commit is saved (the actor awaits the save first), so "saved before it goes
        out" still holds; only the event loop no longer waits on the disk.
        """
        self._deferred = True

    @property
    def store(self) -> RiskStore | None:
        return self._store

    def save_due(self) -> tuple[dict[str, Any], object] | None:
        """The document to write and its fingerprint, or None when the file is current."""
        if self._store is None:
            return None
        fp = self._fingerprint()
        if fp == self._saved_fingerprint and not self._store_failed:
            return None
        return self._to_doc(), fp

    def saved(self, fingerprint: object) -> None:
        """The document of ``fingerprint`` (from :meth:`save_due`) is on disk."""
        self._store_failed = False
        self._saved_fingerprint = fingerprint
        self._publish()

    def save_failed(self) -> None:
        """The last save failed: HALTED (``risk_error``) until one succeeds."""
        self._store_failed = True
        self._publish()

    def _to_doc(self) -> dict[str, Any]:
        now = self._clock()
        wall = self._wall().timestamp()

        def to_wall(t: float) -> float:
            return round(wall - (now - t), 6)

        return {
            "version": STATE_VERSION,
            "saved_at": round(wall, 6),
            "utc_day": self._day.isoformat(),
            "daily_pnl_wei": str(self._pnl),
            "halts": dict(sorted(self._halts.items())),
            "revert_times": [to_wall(t) for t in self._revert_times],
            "paused_until": None if self._paused_until is None else to_wall(self._paused_until),
            "last_head": self._last_head,
            "inflight": {str(b): n for b, n in sorted(self._inflight.items())},
            "dedup": {str(b): sorted(keys) for b, keys in sorted(self._dedup.items())},
        }

    def _restore(self, doc: dict[str, Any]) -> None:
        """Load a saved state; wall times become monotonic times relative to now.

        A time saved "in the future" (the wall clock went back between runs)
        counts as now; a pause never restores longer than ``pause_s``.
        """
        if doc.get("version") != STATE_VERSION:
            raise _Corrupt(f"version {doc.get('version')!r}, expected {STATE_VERSION}")
        now = self._clock()
        wall = self._wall().timestamp()

        day_raw = doc.get("utc_day")
        try:
            day = _dt.date.fromisoformat(day_raw) if isinstance(day_raw, str) else None
        except ValueError:
            day = None
        if day is None:
            raise _Corrupt(f"utc_day {day_raw!r} is not an ISO date")
        pnl_raw = doc.get("daily_pnl_wei")
        if not isinstance(pnl_raw, str) or not _INT_RE.match(pnl_raw):
            raise _Corrupt(f"daily_pnl_wei {pnl_raw!r} is not a decimal integer string")

        halts_raw = doc.get("halts")
        if not isinstance(halts_raw, dict) or not all(
            k in HALT_GATES and isinstance(v, str) for k, v in halts_raw.items()
        ):
            raise _Corrupt(f"halts {halts_raw!r}: expected {{gate: value}} with gates among {HALT_GATES}")

        reverts_raw = doc.get("revert_times")
        if not isinstance(reverts_raw, list) or not all(_is_time(t) for t in reverts_raw):
            raise _Corrupt("revert_times: expected a list of epoch seconds")
        paused_raw = doc.get("paused_until")
        if paused_raw is not None and not _is_time(paused_raw):
            raise _Corrupt("paused_until: expected epoch seconds or null")
        last_head = doc.get("last_head")
        if last_head is not None and (type(last_head) is not int or last_head < 0):
            raise _Corrupt("last_head: expected a block number or null")

        inflight_raw = doc.get("inflight")
        if not isinstance(inflight_raw, dict) or not all(
            _is_block_key(k) and type(v) is int and v >= 0 for k, v in inflight_raw.items()
        ):
            raise _Corrupt("inflight: expected {block: count}")
        dedup_raw = doc.get("dedup")
        if not isinstance(dedup_raw, dict) or not all(
            _is_block_key(k) and isinstance(v, list) and all(isinstance(x, str) for x in v)
            for k, v in dedup_raw.items()
        ):
            raise _Corrupt("dedup: expected {block: [key, ...]}")

        def to_mono(t: float) -> float:
            return now - max(0.0, wall - t)

        self._day = day
        self._pnl = int(pnl_raw)
        self._halts = dict(halts_raw)
        self._halts.setdefault("eth_balance", "unknown")  # unknown until the first head says otherwise
        self._revert_times = sorted(to_mono(t) for t in reverts_raw)
        self._prune_reverts(now)
        if paused_raw is not None and paused_raw - wall > 0:
            self._paused_until = now + min(paused_raw - wall, float(self.limits.pause_s))
        self._last_head = last_head
        self._inflight = {int(k): v for k, v in inflight_raw.items() if v > 0}
        self._dedup = {int(k): set(v) for k, v in dedup_raw.items() if v}


_BLOCK_KEY = re.compile(r"[0-9]{1,20}")


def _is_block_key(key: object) -> bool:
    """A block number as the state file writes it: ASCII digits, bounded length.

    ``str.isdigit`` is not enough: it is true for ``"²"`` and Arabic-Indic digits,
    which ``int()`` then refuses (a traceback at start-up instead of exit 2).
    """
    return isinstance(key, str) and _BLOCK_KEY.fullmatch(key) is not None


def _source_problem(bundle: Bundle) -> str | None:
    """Why ``bundle.source`` cannot be trusted to pick its gates, or None.

    The gate table is chosen by source, so the label must agree with the
    content: a backrun has a victim, a block-driven arb has none, and the
    bundle and its candidate say the same.
    """
    try:
        cand = bundle.candidate
        if cand.source != bundle.source:
            return f"source {bundle.source!r} but candidate says {cand.source!r}"
        if bundle.source == "mempool_backrun" and cand.victim is None:
            return "mempool_backrun bundle without a victim"
        if bundle.source == "block_arb" and cand.victim is not None:
            return "block_arb bundle with a victim"
        if bundle.source not in GATE_FUNCTIONS_BY_SOURCE:
            return f"unknown source {bundle.source!r}"
    except Exception as exc:  # noqa: BLE001 - a malformed bundle fails closed
        return f"error: {type(exc).__name__}"
    return None


def _is_time(value: object) -> bool:
    return type(value) in (int, float) and math.isfinite(value)  # type: ignore[arg-type]
