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
from aether.messages import GATES, RiskDecision
from factories import PAIR_A, PAIR_B, make_bundle
from aether.risk import (
    GATE_FUNCTIONS,
    RiskSnapshot,
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
def test_gas_price_threshold_is_base_fee_plus_priority(delta: int, passed: bool) -> None:
    price = 300 * GWEI + delta
    b = make_bundle(base_fee=price - 2 * GWEI, priority=2 * GWEI)
    assert gas_price(b, snap(), LIMITS, 0.0) == RiskDecision("gas_price", passed, str(price))


def test_gas_price_halt_latch_fails_cheap_bundle() -> None:
    s = snap(halt_reasons=("gas_price",), halt_values=(("gas_price", str(301 * GWEI)),))
    d = gas_price(make_bundle(), s, LIMITS, 0.0)
    assert d == RiskDecision("gas_price", False, str(32 * GWEI))


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


@pytest.mark.parametrize(("count", "passed"), [(4, True), (5, False), (6, False)])
def test_max_in_flight_threshold(count: int, passed: bool) -> None:
    s = snap(inflight=((100, 9), (101, count)))
    assert max_in_flight(make_bundle(target_block=101), s, LIMITS, 0.0) == RiskDecision(
        "max_in_flight", passed, str(count)
    )
    # Other blocks' counts do not leak into this one.
    assert max_in_flight(make_bundle(target_block=102), s, LIMITS, 0.0) == RiskDecision("max_in_flight", True, "0")


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
