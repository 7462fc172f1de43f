"""Each gate as a pure function: at its threshold and one unit either side.

No engine, no clock: a snapshot and a ``now`` go in, a decision comes out.
Threshold conventions (documented on the gates): a *min* passes at the minimum,
a *max* passes at the maximum, freshness passes at exactly the limit, and the
in-flight cap passes while the count is below it (room for one more).
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from aether.config import ETHER, GWEI, RiskLimits
from aether.messages import BLOCK_ARB_GATES, GATES, RiskDecision
from factories import PAIR_A, PAIR_B, make_bundle
from aether.risk import (
    GATE_FUNCTIONS,
    GATE_FUNCTIONS_BY_SOURCE,
    RiskSnapshot,
    block_arb_dedup,
    block_arb_min_profit,
    consecutive_reverts,
    daily_pnl,
    dedup,
    dedup_key,
    eth_balance,
    gas_price,
    max_in_flight,
    max_tip_share,
    min_profit,
    victim_age_ms,
    victim_freshness,
)

LIMITS = RiskLimits()


def snap(**kw: Any) -> RiskSnapshot:
    base: dict[str, Any] = dict(
        status="active", paused_until=None, halt_reasons=(), halt_values=(), daily_pnl_wei=0,
        utc_day="2026-01-01", revert_times=(), inflight=(), dedup_keys=frozenset(), eth_balance_wei=ETHER,
    )
    base.update(kw)
    return RiskSnapshot(**base)


def test_gate_table_follows_gates_order() -> None:
    assert tuple(name for name, _ in GATE_FUNCTIONS) == GATES


@pytest.mark.parametrize(("net", "passed"), [(10**15 - 1, False), (10**15, True), (10**15 + 1, True)])
def test_min_profit_threshold(net: int, passed: bool) -> None:
    assert min_profit(make_bundle(net=net), snap(), LIMITS, 0.0) == RiskDecision("min_profit", passed, str(net))


def test_min_profit_negative_net_fails_with_sign() -> None:
    assert min_profit(make_bundle(net=-5), snap(), LIMITS, 0.0) == RiskDecision("min_profit", False, "-5")


@pytest.mark.parametrize(("bps", "passed"), [(9499, True), (9500, True), (9501, False), (-1, False)])
def test_max_tip_share_threshold(bps: int, passed: bool) -> None:
    assert max_tip_share(make_bundle(tip_bps=bps), snap(), LIMITS, 0.0) == RiskDecision(
        "max_tip_share", passed, str(bps)
    )


@pytest.mark.parametrize(("delta", "passed"), [(-1, True), (0, True), (1, False)])
def test_gas_price_threshold_is_the_market_base_fee(delta: int, passed: bool) -> None:
    base = 300 * GWEI + delta
    b = make_bundle(base_fee=base, priority=2 * GWEI)
    assert gas_price(b, snap(), LIMITS, 0.0) == RiskDecision("gas_price", passed, str(base))


def test_gas_price_ignores_our_own_tip_share_bid() -> None:
    # A 3.9 ETH backrun bidding 80% as priority fee over 250k gas: ~12,480 gwei of
    # priority fee. The market (base fee 30 gwei) is calm, so the gate passes and
    # records the base fee it judged, not our bid.
    gross = 39 * ETHER // 10
    priority = gross * 8000 // 10000 // 250_000
    b = make_bundle(base_fee=30 * GWEI, priority=priority)
    assert b.gas_price_wei > 40 * LIMITS.max_gas_price_wei
    assert gas_price(b, snap(), LIMITS, 0.0) == RiskDecision("gas_price", True, str(30 * GWEI))
    # ... and a spike in the market still fails however small our bid.
    spike = make_bundle(base_fee=LIMITS.max_gas_price_wei + 1, priority=0)
    assert gas_price(spike, snap(), LIMITS, 0.0) == RiskDecision(
        "gas_price", False, str(LIMITS.max_gas_price_wei + 1)
    )


def test_gas_price_halt_latch_fails_cheap_bundle() -> None:
    s = snap(halt_reasons=("gas_price",), halt_values=(("gas_price", str(301 * GWEI)),))
    d = gas_price(make_bundle(), s, LIMITS, 0.0)
    assert d == RiskDecision("gas_price", False, str(30 * GWEI))


@pytest.mark.parametrize(("age_ms", "passed"), [(499, True), (500, True), (501, False)])
def test_victim_freshness_threshold(age_ms: int, passed: bool) -> None:
    now = 1000.0
    b = make_bundle(seen_at=now - age_ms / 1000)
    assert victim_freshness(b, snap(), LIMITS, now) == RiskDecision("victim_freshness", passed, str(age_ms))


def test_victim_freshness_rounds_up_and_ignores_float_noise() -> None:
    # 500.001 ms is older than 500 ms: it must not round down to a pass.
    d = victim_freshness(make_bundle(seen_at=0.0), snap(), LIMITS, 0.500001)
    assert d == RiskDecision("victim_freshness", False, "501")
    # 1.6 - 1.1 == 0.5000000000000002 in floats: still exactly 500 ms.
    assert victim_age_ms(1.1, 1.6) == 500
    assert victim_freshness(make_bundle(seen_at=1.1), snap(), LIMITS, 1.6).passed


def test_victim_freshness_block_arb_and_future_victim() -> None:
    assert victim_freshness(make_bundle(victim_hash=None), snap(), LIMITS, 99.0) == RiskDecision(
        "victim_freshness", True, "n/a"
    )
    assert victim_freshness(make_bundle(seen_at=10.0), snap(), LIMITS, 9.0) == RiskDecision(
        "victim_freshness", False, "-1000"
    )


def _victim_keys(block: int, n: int) -> set[tuple[int, str]]:
    return {(block, "0x%064x" % i) for i in range(n)}


@pytest.mark.parametrize(("count", "passed"), [(4, True), (5, False), (6, False)])
def test_max_in_flight_threshold(count: int, passed: bool) -> None:
    s = snap(dedup_keys=frozenset(_victim_keys(100, 9) | _victim_keys(101, count)))
    assert max_in_flight(make_bundle(target_block=101), s, LIMITS, 0.0) == RiskDecision(
        "max_in_flight", passed, str(count)
    )
    # Other blocks' counts do not leak into this one.
    assert max_in_flight(make_bundle(target_block=102), s, LIMITS, 0.0) == RiskDecision("max_in_flight", True, "0")


def test_max_in_flight_counts_only_mempool_bundles() -> None:
    # Four backruns and many block-driven bundles committed for block 101: the
    # block-driven ones do not use up the mempool's per-block budget.
    arbs = {(101, f"block_arb:0x{i:040x}") for i in range(20)}
    s = snap(dedup_keys=frozenset(_victim_keys(101, 4) | arbs))
    assert max_in_flight(make_bundle(target_block=101), s, LIMITS, 0.0) == RiskDecision("max_in_flight", True, "4")
    s5 = snap(dedup_keys=frozenset(_victim_keys(101, 5) | arbs))
    assert not max_in_flight(make_bundle(target_block=101), s5, LIMITS, 0.0).passed


def test_dedup_keys_on_block_and_victim_or_first_pair() -> None:
    b = make_bundle(target_block=101)
    assert dedup_key(b) == "0x" + "11" * 32
    s = snap(dedup_keys=frozenset({(101, dedup_key(b))}))
    assert dedup(b, s, LIMITS, 0.0) == RiskDecision("dedup", False, "1")
    assert dedup(make_bundle(target_block=102), s, LIMITS, 0.0) == RiskDecision("dedup", True, "0")
    assert dedup(make_bundle(victim_hash=b"\x12" * 32), s, LIMITS, 0.0).passed

    arb = make_bundle(victim_hash=None)
    assert dedup_key(arb) == "block_arb:" + PAIR_A
    s2 = snap(dedup_keys=frozenset({(101, "block_arb:" + PAIR_A)}))
    assert not dedup(arb, s2, LIMITS, 0.0).passed
    other_route = (attrs.evolve(arb.candidate.route[1], pair=PAIR_B), arb.candidate.route[0])
    assert dedup(make_bundle(victim_hash=None, route=other_route), s2, LIMITS, 0.0).passed


def test_dedup_key_of_empty_route_raises() -> None:
    # The engine turns this into a fail-closed risk_error (tested in test_risk_state).
    with pytest.raises(IndexError):
        dedup_key(make_bundle(victim_hash=None, route=()))


@pytest.mark.parametrize(
    ("balance", "halts", "passed", "value"),
    [
        (ETHER // 10, (), True, str(ETHER // 10)),
        (ETHER // 10 - 1, (), False, str(ETHER // 10 - 1)),
        (ETHER, ("eth_balance",), False, str(ETHER)),
        (None, (), False, "unknown"),
    ],
)
def test_eth_balance(balance: int | None, halts: tuple[str, ...], passed: bool, value: str) -> None:
    s = snap(eth_balance_wei=balance, halt_reasons=halts)
    assert eth_balance(make_bundle(), s, LIMITS, 0.0) == RiskDecision("eth_balance", passed, value)


@pytest.mark.parametrize(
    ("pnl", "halts", "passed"),
    [
        (-(ETHER // 2) + 1, (), True),
        (-(ETHER // 2), (), True),
        (-(ETHER // 2) - 1, (), False),
        (10 * ETHER, ("daily_pnl",), False),  # latched: a later profit does not release it
    ],
)
def test_daily_pnl(pnl: int, halts: tuple[str, ...], passed: bool) -> None:
    s = snap(daily_pnl_wei=pnl, halt_reasons=halts)
    assert daily_pnl(make_bundle(), s, LIMITS, 0.0) == RiskDecision("daily_pnl", passed, str(pnl))


def test_consecutive_reverts_pause_ends_exactly_at_until() -> None:
    s = snap(paused_until=700.0, revert_times=(50.0, 90.0, 100.0))
    assert consecutive_reverts(make_bundle(), s, LIMITS, 699.999) == RiskDecision("consecutive_reverts", False, "1")
    assert consecutive_reverts(make_bundle(), s, LIMITS, 700.0) == RiskDecision("consecutive_reverts", True, "1")
    assert consecutive_reverts(make_bundle(), s, LIMITS, 650.0).value == "3"  # 650 - 50 == 600: inclusive


@pytest.mark.parametrize(("net", "passed"), [(10**15 - 1, False), (10**15, True), (10**15 + 1, True)])
def test_block_arb_min_profit_threshold_is_its_own_variable(net: int, passed: bool) -> None:
    arb = make_bundle(victim_hash=None, net=net)
    assert block_arb_min_profit(arb, snap(), LIMITS, 0.0) == RiskDecision("block_arb_min_profit", passed, str(net))
    # The Stage B mempool minimum does not move the block-driven floor.
    stage_b = attrs.evolve(LIMITS, min_profit_wei=5 * 10**16)
    assert block_arb_min_profit(arb, snap(), stage_b, 0.0).passed is passed
    own = attrs.evolve(LIMITS, block_arb_min_profit_wei=net + 1)
    assert not block_arb_min_profit(arb, snap(), own, 0.0).passed


def test_block_arb_dedup_one_bundle_per_block_and_first_pair() -> None:
    arb = make_bundle(victim_hash=None)
    s = snap(dedup_keys=frozenset({(101, "block_arb:" + PAIR_A)}))
    assert block_arb_dedup(arb, s, LIMITS, 0.0) == RiskDecision("block_arb_dedup", False, "1")
    assert block_arb_dedup(make_bundle(victim_hash=None, target_block=102), s, LIMITS, 0.0).passed
    # A backrun whose victim hash is spelled like the pair is not the block-driven key.
    assert block_arb_dedup(arb, snap(dedup_keys=frozenset({(101, PAIR_A)})), LIMITS, 0.0).passed


def test_gate_tables_by_source() -> None:
    assert tuple(n for n, _ in GATE_FUNCTIONS_BY_SOURCE["mempool_backrun"]) == GATES
    assert tuple(n for n, _ in GATE_FUNCTIONS_BY_SOURCE["block_arb"]) == BLOCK_ARB_GATES
    # The seed's mempool gates never judge a block-driven bundle.
    assert not set(BLOCK_ARB_GATES) & {"min_profit", "max_tip_share", "victim_freshness", "max_in_flight", "dedup"}
    assert BLOCK_ARB_GATES[:4] == GATES[:4] == ("gas_price", "eth_balance", "daily_pnl", "consecutive_reverts")
