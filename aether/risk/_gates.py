"""The risk gates: pure functions of a bundle, a risk snapshot, the limits and the time.

Each gate answers with a :class:`~aether.messages.RiskDecision` ``{gate, passed,
value}``, the seed's ``risk_decisions`` entry; ``value`` is the measured quantity
as a decimal string (wei, basis points, milliseconds, a count) so the forensic
dump says *why* without re-deriving anything. No gate does I/O, reads a clock or
mutates anything: the engine (:mod:`._state`) takes one :class:`RiskSnapshot`
and one ``now`` and runs every gate against them, which is what makes the
thresholds testable one unit either side.

Where the threshold itself lands (each is documented on its gate):

========================  ==================================  =================
gate                      passes when                         value
========================  ==================================  =================
``gas_price``             price <= max and no gas HALT        bundle gas price
``eth_balance``           no balance HALT (balance >= min)    last balance wei
``daily_pnl``             no P&L HALT (pnl >= -limit)         today's P&L wei
``consecutive_reverts``   not PAUSED                          reverts in window
``min_profit``            net >= min                          net profit wei
``max_tip_share``         tip bps <= max                      tip share bps
``victim_freshness``      age <= freshness ms                 age ms (ceiling)
``max_in_flight``         in-flight < max (room for one more) in-flight count
``dedup``                 key not yet committed               prior commits
========================  ==================================  =================
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from ..config import RiskLimits
from ..messages import GATES, Bundle, RiskDecision

__all__ = [
    "GATE_FUNCTIONS",
    "RiskSnapshot",
    "consecutive_reverts",
    "daily_pnl",
    "dedup",
    "dedup_key",
    "eth_balance",
    "gas_price",
    "max_in_flight",
    "max_tip_share",
    "min_profit",
    "victim_age_ms",
    "victim_freshness",
]

ACTIVE = "active"
PAUSED = "paused"
HALTED = "halted"


@attrs.frozen
class RiskSnapshot:
    """The risk state at one instant, as the gates (and the operator) see it.

    Times are trio clock seconds (monotonic); ``utc_day`` is the ISO date the
    daily P&L belongs to. Collections are tuples so a snapshot can be handed
    around and compared freely.

    Attributes:
        status: ``"active"``, ``"paused"`` or ``"halted"`` (HALT wins over PAUSE).
        paused_until: when the revert cooldown ends (monotonic), None if never paused.
        halt_reasons: the gates whose HALT latch is set, in :data:`GATES` order.
        halt_values: ``(gate, value)`` for each latch: what tripped it.
        daily_pnl_wei: realised P&L of ``utc_day``.
        utc_day: the UTC date the P&L counts for.
        revert_times: monotonic times of the current revert streak, oldest first.
        inflight: ``(target_block, count)`` of committed bundles not yet passed.
        dedup_keys: ``(target_block, key)`` committed for blocks not yet passed.
        eth_balance_wei: the searcher balance at the last head, None before one.
        next_base_fee_wei: the next block's base fee at the last head.
        last_head: number of the last head seen.
        store_failed: the last write of the state file failed (fail closed).
    """

    status: str
    paused_until: float | None
    halt_reasons: tuple[str, ...]
    halt_values: tuple[tuple[str, str], ...]
    daily_pnl_wei: int
    utc_day: str
    revert_times: tuple[float, ...]
    inflight: tuple[tuple[int, int], ...]
    dedup_keys: frozenset[tuple[int, str]]
    eth_balance_wei: int | None = None
    next_base_fee_wei: int | None = None
    last_head: int | None = None
    store_failed: bool = False

    def inflight_for(self, target_block: int) -> int:
        """Committed bundles for ``target_block`` (0 when none)."""
        for block, count in self.inflight:
            if block == target_block:
                return count
        return 0

    def halted_by(self, gate: str) -> bool:
        return gate in self.halt_reasons

    def paused_at(self, now: float) -> bool:
        """PAUSED while ``now < paused_until``: the cooldown ends exactly at ``paused_until``."""
        return self.paused_until is not None and now < self.paused_until

    def reverts_within(self, now: float, window_s: float) -> int:
        """Reverts of the streak at most ``window_s`` old (the window is inclusive)."""
        return sum(1 for t in self.revert_times if now - t <= window_s)


Gate = Callable[[Bundle, RiskSnapshot, RiskLimits, float], RiskDecision]


def gas_price(bundle: Bundle, state: RiskSnapshot, limits: RiskLimits, now: float) -> RiskDecision:
    """Target block base fee plus our priority fee at most ``max_gas_price_wei``.

    The limit itself passes (the seed HALTs *above* 300 gwei). A gas HALT from the
    last head (the next base fee alone above the limit) fails every bundle too.
    """
    price = bundle.gas_price_wei
    return RiskDecision(
        "gas_price", price <= limits.max_gas_price_wei and not state.halted_by("gas_price"), str(price)
    )


def eth_balance(bundle: Bundle, state: RiskSnapshot, limits: RiskLimits, now: float) -> RiskDecision:
    """The searcher's ETH balance at the last head was at least ``min_balance_wei``.

    The latch is set and released by the engine on every head; an unknown balance
    (no head yet, or the fetch failed) is latched too: we cannot pay for gas we
    cannot see.
    """
    bal = state.eth_balance_wei
    ok = not state.halted_by("eth_balance") and bal is not None and bal >= limits.min_balance_wei
    return RiskDecision("eth_balance", ok, "unknown" if bal is None else str(bal))


def daily_pnl(bundle: Bundle, state: RiskSnapshot, limits: RiskLimits, now: float) -> RiskDecision:
    """Today's (UTC) realised P&L not below ``-daily_loss_limit_wei``.

    Exactly ``-limit`` passes. Once below, the latch holds until the UTC day rolls,
    even if a later profit the same day lifts the P&L back above.
    """
    pnl = state.daily_pnl_wei
    ok = not state.halted_by("daily_pnl") and pnl >= -limits.daily_loss_limit_wei
    return RiskDecision("daily_pnl", ok, str(pnl))


def consecutive_reverts(bundle: Bundle, state: RiskSnapshot, limits: RiskLimits, now: float) -> RiskDecision:
    """Not in the cooldown that ``max_reverts`` reverts within the window started."""
    count = state.reverts_within(now, limits.revert_window_s)
    return RiskDecision("consecutive_reverts", not state.paused_at(now), str(count))


def min_profit(bundle: Bundle, state: RiskSnapshot, limits: RiskLimits, now: float) -> RiskDecision:
    """Expected net profit at least ``min_profit_wei`` (the minimum itself passes)."""
    net = bundle.expected_net_profit_wei
    return RiskDecision("min_profit", net >= limits.min_profit_wei, str(net))


def max_tip_share(bundle: Bundle, state: RiskSnapshot, limits: RiskLimits, now: float) -> RiskDecision:
    """Builder tip share of gross profit at most ``max_tip_bps`` (the maximum passes)."""
    bps = bundle.tip_share_bps
    return RiskDecision("max_tip_share", 0 <= bps <= limits.max_tip_bps, str(bps))


def victim_age_ms(seen_at: float, now: float) -> int:
    """Age in whole milliseconds, rounded *up*: 500.001 ms counts as 501.

    Rounding to microseconds first absorbs float noise in clock arithmetic
    (``1.6 - 1.1`` is not exactly 0.5); rounding up then never makes a stale
    victim look fresh.
    """
    age_us = round((now - seen_at) * 1_000_000)
    return -(-age_us // 1000)


def victim_freshness(bundle: Bundle, state: RiskSnapshot, limits: RiskLimits, now: float) -> RiskDecision:
    """The victim was first seen at most ``victim_freshness_ms`` ago (the limit passes).

    Block-driven bundles have no victim: they pass with value ``"n/a"``. A victim
    "seen" in the future (negative age) is bad data and fails.
    """
    victim = bundle.candidate.victim
    if victim is None:
        return RiskDecision("victim_freshness", True, "n/a")
    age = victim_age_ms(victim.seen_at, now)
    return RiskDecision("victim_freshness", 0 <= age <= limits.victim_freshness_ms, str(age))


def max_in_flight(bundle: Bundle, state: RiskSnapshot, limits: RiskLimits, now: float) -> RiskDecision:
    """Fewer than ``max_inflight`` bundles already committed for the target block.

    The value is the count *before* this bundle: with the default 5, counts 0..4
    pass and this bundle becomes the 1st..5th; at 5 the block is full.
    """
    count = state.inflight_for(bundle.target_block)
    return RiskDecision("max_in_flight", count < limits.max_inflight, str(count))


def dedup_key(bundle: Bundle) -> str:
    """What makes two bundles the same opportunity within one target block.

    The victim hash for backruns; for block-driven arbs (no victim) the first
    pair of the route, so the same gap is not chased twice in one block.
    """
    victim = bundle.candidate.victim
    if victim is not None:
        return victim.hash_hex
    return "block_arb:" + bundle.candidate.route[0].pair.lower()


def dedup(bundle: Bundle, state: RiskSnapshot, limits: RiskLimits, now: float) -> RiskDecision:
    """No bundle with the same (target block, key) was committed yet; value = prior commits."""
    seen = (bundle.target_block, dedup_key(bundle)) in state.dedup_keys
    return RiskDecision("dedup", not seen, "1" if seen else "0")


#: Every gate with its function, in :data:`aether.messages.GATES` order.
GATE_FUNCTIONS: tuple[tuple[str, Gate], ...] = (
    ("gas_price", gas_price),
    ("eth_balance", eth_balance),
    ("daily_pnl", daily_pnl),
    ("consecutive_reverts", consecutive_reverts),
    ("min_profit", min_profit),
    ("max_tip_share", max_tip_share),
    ("victim_freshness", victim_freshness),
    ("max_in_flight", max_in_flight),
    ("dedup", dedup),
)
if tuple(name for name, _ in GATE_FUNCTIONS) != GATES:  # pragma: no cover - a wiring bug
    raise RuntimeError("aether.risk: GATE_FUNCTIONS out of step with aether.messages.GATES")
