"""The risk engine on trio's autojump clock with a controllable wall clock.

HALT latching and release, PAUSE expiry to the instant, dedup, in-flight reset
on a new head, the UTC day roll, wall-clock jumps, fail-closed evaluation, and
one counter sample per rejection.
"""

from __future__ import annotations

import datetime as dt

import attrs
import pytest
import trio

from aether.config import ETHER, GWEI, RiskLimits
from aether.messages import GATES, RISK_ERROR, Tick
from aether.metrics import Metrics
from aether.risk import RiskEngine
from factories import Wall, make_bundle, make_head

LIMITS = RiskLimits()


def rejected(m: Metrics) -> dict[str, float]:
    return {r: m.value("aether_mempool_risk_rejected_total", reason=r) for r in (*GATES, RISK_ERROR)}


def state_gauge(m: Metrics) -> str:
    on = [s for s in ("active", "paused", "halted") if m.value("aether_risk_state", state=s) == 1]
    assert len(on) == 1, on
    return on[0]


def engine(wall: Wall | None = None, limits: RiskLimits = LIMITS, *, head: bool = True) -> tuple[RiskEngine, Metrics]:
    m = Metrics()
    e = RiskEngine(limits, metrics=m, wall_clock=wall or Wall())
    if head:
        e.on_head(make_head(100), ETHER)
    return e, m


async def test_every_reason_exists_at_zero_and_fresh_engine_is_halted_until_a_head() -> None:
    e, m = engine(head=False)
    for reason in (*GATES, RISK_ERROR):
        assert m.registry.get_sample_value("aether_mempool_risk_rejected_total", {"reason": reason}) == 0.0
    # No balance seen yet: fail closed.
    assert e.state.status == "halted" and e.state.halt_reasons == ("eth_balance",)
    assert state_gauge(m) == "halted"
    v = e.evaluate(make_bundle())
    assert (v.passed, v.reason) == (False, "eth_balance")
    e.on_head(make_head(100), ETHER)
    assert e.state.status == "active" and state_gauge(m) == "active"
    assert m.value("aether_risk_halted", gate="eth_balance") == 0


async def test_clean_bundle_passes_with_every_decision_in_order(autojump_clock: trio.testing.MockClock) -> None:
    e, m = engine()
    v = e.evaluate(make_bundle())
    assert v.passed and v.reason is None
    assert [d.gate for d in v.decisions] == list(GATES)
    assert all(d.passed for d in v.decisions)
    values = {d.gate: d.value for d in v.decisions}
    assert values == {
        "gas_price": str(30 * GWEI), "eth_balance": str(ETHER), "daily_pnl": "0", "consecutive_reverts": "0",
        "min_profit": str(10**16), "max_tip_share": "8000", "victim_freshness": "0", "max_in_flight": "0",
        "dedup": "0",
    }
    assert sum(rejected(m).values()) == 0


async def test_each_rejection_counts_exactly_one_sample_with_first_failing_gate() -> None:
    e, m = engine()
    before = rejected(m)
    # Fails min_profit *and* victim_freshness: counted once, under the first.
    v = e.evaluate(make_bundle(net=1, seen_at=trio.current_time() - 10))
    assert v.reason == "min_profit"
    assert [d.gate for d in v.decisions if not d.passed] == ["min_profit", "victim_freshness"]
    after = rejected(m)
    assert {k: after[k] - before[k] for k in after if after[k] != before[k]} == {"min_profit": 1}
    assert e.statistics().rejected_for("min_profit") == 1 and e.statistics().evaluated == 1


@pytest.mark.parametrize(("delta", "halted"), [(-1, True), (0, False), (1, False)])
async def test_balance_gate_threshold(delta: int, halted: bool) -> None:
    e, _ = engine()
    e.on_head(make_head(101), LIMITS.min_balance_wei + delta)
    assert (e.state.status == "halted") is halted
    assert (e.evaluate(make_bundle(target_block=102)).reason == "eth_balance") is halted


async def test_balance_gate_threshold_and_release() -> None:
    e, m = engine()
    e.on_head(make_head(101), LIMITS.min_balance_wei + 1)
    assert e.state.status == "active"
    e.on_head(make_head(102), LIMITS.min_balance_wei)
    assert e.state.status == "active"
    e.on_head(make_head(103), LIMITS.min_balance_wei - 1)
    s = e.state
    assert s.status == "halted" and s.halt_values == (("eth_balance", str(LIMITS.min_balance_wei - 1)),)
    assert state_gauge(m) == "halted" and m.value("aether_risk_halted", gate="eth_balance") == 1
    v = e.evaluate(make_bundle(target_block=104))
    assert v.reason == "eth_balance" and rejected(m)["eth_balance"] == 1
    # A failed balance fetch keeps it latched (fail closed).
    e.on_head(make_head(104), None)
    assert e.state.halt_values == (("eth_balance", "unknown"),)
    e.on_head(make_head(105), LIMITS.min_balance_wei)
    assert e.state.status == "active" and state_gauge(m) == "active"
    assert m.value("aether_risk_halted", gate="eth_balance") == 0
    assert e.evaluate(make_bundle(target_block=106)).passed


async def test_gas_price_halt_while_next_base_fee_above_limit() -> None:
    e, m = engine()
    limit = LIMITS.max_gas_price_wei
    e.on_head(make_head(101), ETHER, next_base_fee_wei=limit)
    assert e.state.status == "active"
    e.on_head(make_head(102), ETHER, next_base_fee_wei=limit + 1)
    assert e.state.halt_reasons == ("gas_price",) and state_gauge(m) == "halted"
    assert m.value("aether_risk_halted", gate="gas_price") == 1
    assert e.evaluate(make_bundle(target_block=103)).reason == "gas_price"
    # Computed by EIP-1559 from the head when not given: a full block at the limit
    # raises the next base fee above it.
    e.on_tick(Tick(make_head(103), limit - 1, ETHER, 0, 1))
    assert e.state.status == "active"
    full = attrs.evolve(make_head(104, base_fee=limit), gas_used=30_000_000)
    e.on_head(full, ETHER)
    assert e.state.halt_values == (("gas_price", str(limit + limit // 8)),)
    e.on_head(make_head(105, base_fee=limit), ETHER)
    assert e.state.status == "active" and m.value("aether_risk_halted", gate="gas_price") == 0


async def test_per_bundle_gas_price_rejects_without_halting() -> None:
    e, m = engine()
    v = e.evaluate(make_bundle(base_fee=LIMITS.max_gas_price_wei + 1))
    assert v.reason == "gas_price" and v.decisions[0].value == str(LIMITS.max_gas_price_wei + 1)
    assert e.state.status == "active"
    assert e.evaluate(make_bundle(base_fee=LIMITS.max_gas_price_wei)).passed
    # Our own bid (priority fee) far above the limit does not matter: it is not the market's price.
    assert e.evaluate(make_bundle(base_fee=LIMITS.max_gas_price_wei, priority=10_000 * GWEI)).passed


async def test_daily_pnl_latches_until_the_utc_day_rolls() -> None:
    wall = Wall(dt.datetime(2026, 3, 1, 23, 0, 0, tzinfo=dt.UTC))
    e, m = engine(wall)
    limit = LIMITS.daily_loss_limit_wei
    e.on_outcome("mempool_backrun", True, False, -limit)
    assert e.state.status == "active" and e.state.daily_pnl_wei == -limit  # exactly -limit passes
    e.on_outcome("mempool_backrun", True, False, -1)
    assert e.state.halt_values == (("daily_pnl", str(-limit - 1)),)
    assert state_gauge(m) == "halted" and m.value("aether_risk_halted", gate="daily_pnl") == 1
    # A profit the same day does not release it.
    e.on_outcome("block_arb", True, False, 10 * ETHER)
    assert e.state.status == "halted" and e.state.daily_pnl_wei == 10 * ETHER - limit - 1
    assert e.evaluate(make_bundle()).reason == "daily_pnl"
    wall.now = dt.datetime(2026, 3, 1, 23, 59, 59, tzinfo=dt.UTC)
    assert e.evaluate(make_bundle()).reason == "daily_pnl"
    wall.now = dt.datetime(2026, 3, 2, 0, 0, 0, tzinfo=dt.UTC)
    s = e.state
    assert (s.status, s.daily_pnl_wei, s.utc_day) == ("active", 0, "2026-03-02")
    assert state_gauge(m) == "active" and m.value("aether_risk_halted", gate="daily_pnl") == 0
    assert e.evaluate(make_bundle()).passed


async def test_wall_clock_back_across_midnight_keeps_the_day_and_its_losses() -> None:
    wall = Wall(dt.datetime(2026, 3, 2, 0, 0, 5, tzinfo=dt.UTC))
    e, _ = engine(wall)
    e.on_outcome("mempool_backrun", True, False, -LIMITS.daily_loss_limit_wei - 1)
    wall.jump(-60)  # back to 2026-03-01 23:59:05
    e.on_outcome("mempool_backrun", True, False, -1)
    s = e.state
    assert (s.utc_day, s.daily_pnl_wei, s.status) == ("2026-03-02", -LIMITS.daily_loss_limit_wei - 2, "halted")


async def test_three_reverts_pause_and_expiry_is_exact(autojump_clock: trio.testing.MockClock) -> None:
    e, m = engine()
    t0 = trio.current_time()
    e.on_outcome("mempool_backrun", True, True, -10**14)
    await trio.sleep(300)
    e.on_outcome("mempool_backrun", True, True, -10**14)
    assert e.state.status == "active"
    await trio.sleep(300)  # the third lands exactly at the window's edge: still inside
    e.on_outcome("mempool_backrun", True, True, -10**14)
    s = e.state
    assert s.status == "paused" and s.paused_until == t0 + 600 + LIMITS.pause_s
    assert state_gauge(m) == "paused"
    v = e.evaluate(make_bundle())
    assert v.reason == "consecutive_reverts" and v.decisions[3].value == "3"
    await trio.sleep_until(t0 + 600 + LIMITS.pause_s - 0.001)
    assert e.state.status == "paused"
    await trio.sleep_until(t0 + 600 + LIMITS.pause_s)
    assert e.state.status == "active" and state_gauge(m) == "active"
    assert e.evaluate(make_bundle()).passed


@pytest.mark.parametrize(("gap", "paused"), [(599, True), (600, True), (601, False)])
async def test_revert_window_one_second_either_side(autojump_clock: trio.testing.MockClock, gap: int, paused: bool) -> None:
    e, _ = engine()
    e.on_outcome("mempool_backrun", True, True, 0)
    await trio.sleep(1)
    e.on_outcome("mempool_backrun", True, True, 0)
    await trio.sleep(gap - 1)
    e.on_outcome("mempool_backrun", True, True, 0)
    assert (e.state.status == "paused") is paused


async def test_landed_bundle_resets_streak_but_a_miss_does_not(autojump_clock: trio.testing.MockClock) -> None:
    e, _ = engine()
    e.on_outcome("mempool_backrun", True, True, 0)
    e.on_outcome("mempool_backrun", True, True, 0)
    e.on_outcome("mempool_backrun", True, False, 10**15)  # landed fine: streak over
    e.on_outcome("mempool_backrun", True, True, 0)
    e.on_outcome("mempool_backrun", False, False, 0)  # missed the block: no effect
    e.on_outcome("mempool_backrun", True, True, 0)
    assert e.state.status == "active" and len(e.state.revert_times) == 2
    e.on_outcome("mempool_backrun", True, True, 0)
    assert e.state.status == "paused"


async def test_wall_clock_jumps_do_not_move_the_revert_window(autojump_clock: trio.testing.MockClock) -> None:
    for jump in (-3600, +3600):
        wall = Wall()
        e, _ = engine(wall)
        e.on_outcome("mempool_backrun", True, True, 0)
        e.on_outcome("mempool_backrun", True, True, 0)
        wall.jump(jump)
        await trio.sleep(601)
        e.on_outcome("mempool_backrun", True, True, 0)
        assert e.state.status == "active", jump  # 601 s of monotonic time: the first two expired
        e.on_outcome("mempool_backrun", True, True, 0)
        wall.jump(-jump)
        e.on_outcome("mempool_backrun", True, True, 0)
        t = trio.current_time()
        assert e.state.paused_until == t + LIMITS.pause_s, jump
        wall.jump(10 * 3600)
        await trio.sleep(LIMITS.pause_s - 1)
        assert e.state.status == "paused", jump


async def test_dedup_and_in_flight_reset_on_new_head() -> None:
    e, m = engine(limits=attrs.evolve(LIMITS, max_inflight=2))
    v1 = e.evaluate(make_bundle(target_block=101))
    assert v1.passed and e.commit(v1)
    twin = e.evaluate(make_bundle(target_block=101))
    assert (twin.reason, twin.decisions[-1].value) == ("dedup", "1")
    assert e.evaluate(make_bundle(target_block=102)).passed  # same victim, next block
    v2 = e.evaluate(make_bundle(target_block=101, victim_hash=b"\x12" * 32))
    assert v2.passed and v2.decisions[7].value == "1" and e.commit(v2)
    v3 = e.evaluate(make_bundle(target_block=101, victim_hash=b"\x13" * 32))
    assert (v3.reason, v3.decisions[7].value) == ("max_in_flight", "2")
    assert e.state.inflight == ((101, 2),)
    # A twin committed after its sibling changes nothing.
    assert e.commit(v1) is False and e.state.inflight == ((101, 2),)
    arb = e.evaluate(make_bundle(target_block=102, victim_hash=None))
    assert arb.passed and e.commit(arb)
    assert e.evaluate(make_bundle(target_block=102, victim_hash=None)).reason == "block_arb_dedup"
    assert m.value("aether_block_arb_risk_rejected_total", reason="block_arb_dedup") == 1

    e.on_head(make_head(101), ETHER)
    s = e.state
    assert s.inflight == ((102, 1),) and s.dedup_keys == frozenset({(102, "block_arb:0x" + "aa" * 20)})
    assert e.evaluate(make_bundle(target_block=102, victim_hash=b"\x13" * 32)).passed
    assert rejected(m)["dedup"] == 1 and rejected(m)["max_in_flight"] == 1
    assert e.statistics().committed == 3


async def test_commit_refuses_a_rejected_verdict() -> None:
    e, _ = engine()
    v = e.evaluate(make_bundle(net=0))
    with pytest.raises(ValueError, match="passed every gate"):
        e.commit(v)


async def test_victim_freshness_on_the_trio_clock(autojump_clock: trio.testing.MockClock) -> None:
    e, _ = engine()
    b = make_bundle()
    await trio.sleep(0.5)
    v = e.evaluate(b)
    assert v.passed and v.decisions[6].value == "500"
    await trio.sleep(0.001)
    v = e.evaluate(b)
    assert (v.reason, v.decisions[6].value) == ("victim_freshness", "501")


async def test_a_raising_gate_fails_closed_with_risk_error() -> None:
    e, m = engine()
    # A block_arb bundle with an empty route: dedup cannot build its key.
    v = e.evaluate(make_bundle(victim_hash=None, route=()))
    assert not v.passed and v.reason == RISK_ERROR
    assert v.decisions[-1].gate == "block_arb_dedup" and v.decisions[-1].value == "error: IndexError"
    assert all(d.passed for d in v.decisions[:-1])
    # Counted once, on the block-driven source's counter; the seed's mempool counter stays at 0.
    assert rejected(m) == {**{g: 0.0 for g in GATES}, RISK_ERROR: 0.0}
    assert m.value("aether_block_arb_risk_rejected_total", reason=RISK_ERROR) == 1


async def test_a_failing_clock_fails_closed_on_every_gate() -> None:
    wall = Wall()
    e, m = engine(wall)
    wall.now = None  # type: ignore[assignment]  # the wall clock breaks
    v = e.evaluate(make_bundle())
    assert not v.passed and v.reason == RISK_ERROR
    assert [d.gate for d in v.decisions] == list(GATES)
    assert all(not d.passed and d.value == "error: AttributeError" for d in v.decisions)
    assert rejected(m)[RISK_ERROR] == 1


async def test_outcome_rejects_non_integer_money() -> None:
    e, _ = engine()
    with pytest.raises(TypeError, match="int wei"):
        e.on_outcome("mempool_backrun", True, False, 1.5)  # type: ignore[arg-type]
    assert e.state.daily_pnl_wei == 0


async def test_the_snapshot_carries_each_field_of_the_engine(autojump_clock: trio.testing.MockClock) -> None:
    """Every field of the snapshot, from an engine whose fields all differ: a wrong order in the
    snapshot's construction would put one in another's place."""
    e, _ = engine()
    e.on_head(make_head(100, base_fee=31 * GWEI), 2 * ETHER, next_base_fee_wei=32 * GWEI)
    v = e.evaluate(make_bundle(target_block=101))
    assert v.passed and e.commit(v)
    e.on_outcome("mempool_backrun", included=True, reverted=True, realised_pnl_wei=-7)
    snap = e.state
    assert snap.status == "active" and snap.paused_until is None
    assert snap.halt_reasons == () and snap.halt_values == ()
    assert snap.daily_pnl_wei == -7 and snap.utc_day == Wall()().date().isoformat()
    assert snap.revert_times == (trio.current_time(),)
    assert snap.inflight == ((101, 1),) and snap.dedup_keys == frozenset({(101, "0x" + "11" * 32)})
    assert (snap.eth_balance_wei, snap.next_base_fee_wei, snap.last_head, snap.store_failed) == (
        2 * ETHER, 32 * GWEI, 100, False)
    e.on_head(make_head(101), None)  # the balance unknown: a halt latch, with its value
    assert e.state.halt_reasons == ("eth_balance",) and e.state.halt_values == (("eth_balance", "unknown"),)
    assert e.state.status == "halted" and e.state.eth_balance_wei is None
