"""The risk gates: pure functions of a bundle, a risk snapshot, the limits and the time.

Each gate answers with a :class:`~aether.messages.RiskDecision` ``{gate, passed,
value}``, the seed's ``risk_decisions`` entry; ``value`` is the measured quantity
as a decimal string (wei, basis points, milliseconds, a count) so the forensic
dump says *why* without re-deriving anything. No gate does I/O, reads a clock or
mutates anything: the engine (:mod:`._state`) takes one :class:`RiskSnapshot`
and one ``now`` and runs every gate against them, which is what makes the
thresholds testable one unit either side.

Where the threshold itself lands (each is documented on its gate):

==========================  ==================================  =====================
gate                        passes when                         value
==========================  ==================================  =====================
``gas_price``               market base fee <= max, no HALT     target block base fee
``eth_balance``             no balance HALT (balance >= min)    last balance wei
``daily_pnl``               no P&L HALT (pnl >= -limit)         today's P&L wei
``consecutive_reverts``     not PAUSED                          reverts in window
``min_profit``              net >= min                          net profit wei
``max_tip_share``           tip bps <= max                      tip share bps
``victim_freshness``        age <= freshness ms                 age ms (ceiling)
``max_in_flight``           in-flight < max (room for one more) mempool in-flight
``dedup``                   key not yet committed               prior commits
``block_arb_min_profit``    net >= block-arb min                net profit wei
``block_arb_dedup``         key not yet committed               prior commits
==========================  ==================================  =====================

Which gates judge a bundle depends on its source
(:data:`aether.messages.GATES_BY_SOURCE`): the first four judge both; the
seed's five mempool gates judge only ``mempool_backrun`` bundles; a
``block_arb`` bundle has its own profit floor and duplicate guard instead, so
the mempool's Stage B minimum never throttles the block-driven path.

The gas gate is a *market* condition: it reads the target block's base fee,
never our own priority fee. Our priority fee is the tip share of gross profit
divided by gas (bounded by ``max_tip_share``), so the bigger the opportunity
the higher our bid; judging the bid would refuse exactly the best backruns.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from ..config import RiskLimits
from ..messages import BLOCK_ARB_GATES, GATES, Bundle, Gate, RiskDecision, RiskState

__all__ = [
    "BLOCK_ARB_GATE_FUNCTIONS",
    "GATE_FUNCTIONS",
    "GATE_FUNCTIONS_BY_SOURCE",
    "RiskSnapshot",
    "block_arb_dedup",
    "block_arb_min_profit",
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

#: Dedup keys of block-driven bundles start with this (backrun keys are victim hashes).
BLOCK_ARB_KEY_PREFIX = "block_arb:"

ACTIVE = RiskState.ACTIVE
PAUSED = RiskState.PAUSED
HALTED = RiskState.HALTED


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
        """Committed bundles of every source for ``target_block`` (0 when none)."""
        for block, count in self.inflight:
            if block == target_block:
                return count
        return 0

    def mempool_inflight_for(self, target_block: int) -> int:
        """Committed *mempool* bundles for ``target_block``: what the seed's in-flight cap counts.

        Every committed bundle has exactly one dedup key, so the count is read
        from the keys: block-driven bundles (``block_arb:`` keys) do not use up
        the mempool's per-block budget.
        """
        if not self.dedup_keys:
            return 0
        return sum(1 for b, k in self.dedup_keys if b == target_block and not k.startswith(BLOCK_ARB_KEY_PREFIX))

    def halted_by(self, gate: str) -> bool:
        return gate in self.halt_reasons

    def paused_at(self, now: float) -> bool:
        """PAUSED while ``now < paused_until``: the cooldown ends exactly at ``paused_until``."""
        return self.paused_until is not None and now < self.paused_until

    def reverts_within(self, now: float, window_s: float) -> int:
        """Reverts of the streak at most ``window_s`` old (the window is inclusive)."""
        if not self.revert_times:
            return 0
        return sum(1 for t in self.revert_times if now - t <= window_s)


GateFn = Callable[[Bundle, RiskSnapshot, RiskLimits, float], RiskDecision]


def gas_price(bundle: Bundle, state: RiskSnapshot, limits: RiskLimits, now: float) -> RiskDecision:
    """The market's gas price (the target block's base fee) at most ``max_gas_price_wei``.

    "Gas price > 300 gwei -> HALT" guards against a gas spike on the chain, so it
    is judged on the network's price, never on the priority fee aether itself
    bids as tip share (that bid grows with the opportunity and is bounded by
    ``max_tip_share``). The value is the base fee judged. The limit itself
    passes (the seed HALTs *above* 300 gwei). A gas HALT from the last head (the
    next base fee above the limit) fails every bundle too.
    """
    market = bundle.base_fee_wei
    return RiskDecision(
        "gas_price", market <= limits.max_gas_price_wei and not state.halted_by("gas_price"), str(market)
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
    count = state.mempool_inflight_for(bundle.target_block)
    return RiskDecision("max_in_flight", count < limits.max_inflight, str(count))


def dedup_key(bundle: Bundle) -> str:
    """What makes two bundles the same opportunity within one target block.

    The victim hash for backruns; for block-driven arbs (no victim) the first
    pair of the route, so the same gap is not chased twice in one block.
    """
    victim = bundle.candidate.victim
    if victim is not None:
        return victim.hash_hex
    return BLOCK_ARB_KEY_PREFIX + bundle.candidate.route[0].pair.lower()


def _already_reached(bundle: Bundle, state: RiskSnapshot) -> bool:
    """The target block was reached by a head risk has seen.

    The engine forgets the (target block, key) records of a block once a head
    reaches it, so for such a target a duplicate guard can no longer vouch that
    no twin went out (a bundle delayed in a queue past its block would pass):
    it fails closed, value ``"stale"``.
    """
    return state.last_head is not None and bundle.target_block <= state.last_head


def dedup(bundle: Bundle, state: RiskSnapshot, limits: RiskLimits, now: float) -> RiskDecision:
    """No bundle with the same (target block, key) was committed yet; value = prior commits.

    A target block already reached fails (``"stale"``): see :func:`_already_reached`.
    """
    if _already_reached(bundle, state):
        return RiskDecision("dedup", False, "stale")
    seen = (bundle.target_block, dedup_key(bundle)) in state.dedup_keys
    return RiskDecision("dedup", not seen, "1" if seen else "0")


def block_arb_min_profit(bundle: Bundle, state: RiskSnapshot, limits: RiskLimits, now: float) -> RiskDecision:
    """Block-driven floor: net profit at least ``block_arb_min_profit_wei`` (the minimum passes).

    Its own variable (``AETHER_BLOCK_ARB_MIN_PROFIT_WEI``): raising the mempool
    minimum for Stage B does not move it.
    """
    net = bundle.expected_net_profit_wei
    return RiskDecision("block_arb_min_profit", net >= limits.block_arb_min_profit_wei, str(net))


def block_arb_dedup(bundle: Bundle, state: RiskSnapshot, limits: RiskLimits, now: float) -> RiskDecision:
    """One block-driven bundle per (target block, first pair of the route); value = prior commits.

    The same gap is seen again on every strategy pass of a head; without this the
    block-driven path would chase it many times per block.
    """
    if _already_reached(bundle, state):
        return RiskDecision("block_arb_dedup", False, "stale")
    seen = (bundle.target_block, dedup_key(bundle)) in state.dedup_keys
    return RiskDecision("block_arb_dedup", not seen, "1" if seen else "0")


def dedup_gate(source: str) -> str:
    """The name of the duplicate guard that judges bundles of ``source``."""
    return Gate.BLOCK_ARB_DEDUP.value if source == "block_arb" else Gate.DEDUP.value


#: Every mempool gate with its function, in :data:`aether.messages.GATES` order.
GATE_FUNCTIONS: tuple[tuple[str, GateFn], ...] = (
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
#: The block-driven source's gates, in :data:`aether.messages.BLOCK_ARB_GATES` order.
BLOCK_ARB_GATE_FUNCTIONS: tuple[tuple[str, GateFn], ...] = (
    ("gas_price", gas_price),
    ("eth_balance", eth_balance),
    ("daily_pnl", daily_pnl),
    ("consecutive_reverts", consecutive_reverts),
    ("block_arb_min_profit", block_arb_min_profit),
    ("block_arb_dedup", block_arb_dedup),
)
#: The gate table of each source; a source missing here is judged by nothing and fails closed.
GATE_FUNCTIONS_BY_SOURCE: dict[str, tuple[tuple[str, GateFn], ...]] = {
    "mempool_backrun": GATE_FUNCTIONS,
    "block_arb": BLOCK_ARB_GATE_FUNCTIONS,
}
if tuple(name for name, _ in GATE_FUNCTIONS) != GATES:  # pragma: no cover - a wiring bug
    raise RuntimeError("aether.risk: GATE_FUNCTIONS out of step with aether.messages.GATES")
if tuple(name for name, _ in BLOCK_ARB_GATE_FUNCTIONS) != BLOCK_ARB_GATES:  # pragma: no cover - a wiring bug
    raise RuntimeError("aether.risk: BLOCK_ARB_GATE_FUNCTIONS out of step with aether.messages.BLOCK_ARB_GATES")
