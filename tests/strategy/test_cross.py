"""Cross-venue cycle sizing and the V3 exact-input curve, without a node.

The curve is held equal to :func:`aether.dex._v3math.swap` (itself held to the
deployed pool in ``test_v3_devnet.py``); the sizing is held to brute force
around its answer, and every refusal is tried on the input that should cause it.
The on-chain check (a sized V2/V3 cycle realises its profit to the wei) is in
``test_v3_devnet.py``.
"""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aether.dex._math import best_round_trip, get_amount_out
from aether.dex._v3curve import V3Curve
from aether.dex._v3math import (
    TickTable,
    get_sqrt_ratio_at_tick,
    liquidity_net_from_positions,
    swap,
    tick_spacing,
)
from aether.dex._v3pool import V3PoolKey, V3PoolState, V3Refusal
from aether.strategy._cross import CrossRefusal, V2Leg, V3Leg, size_cycle

WETH = "0x" + "11" * 20
TOKEN = "0x" + "22" * 20  # sorts after WETH: WETH is token0, price = token per WETH
E18 = 10**18


def make_state(fee: int, tick: int, positions: list[tuple[int, int, int]], *, offset: int = 0, words: int = 8) -> V3PoolState:
    spacing = tick_spacing(fee)
    net = liquidity_net_from_positions(positions)
    liq = sum(l for lo, hi, l in positions if lo <= tick < hi)
    centre = (tick // spacing) >> 8
    table = TickTable.build(spacing, net, centre - words, centre + words)
    key = V3PoolKey("0x" + "33" * 20, "v3", WETH, TOKEN, fee)
    return V3PoolState(key, get_sqrt_ratio_at_tick(tick) + offset, tick, liq, table)


@st.composite
def states(draw: st.DrawFn) -> V3PoolState:
    fee = draw(st.sampled_from((100, 500, 3000, 10000)))
    spacing = tick_spacing(fee)
    tick = draw(st.integers(-90_000, 90_000))
    span = 256 * spacing * 2
    positions = []
    for _ in range(draw(st.integers(1, 6))):
        a = draw(st.integers((tick - span) // spacing, (tick + span) // spacing)) * spacing
        b = a + draw(st.integers(1, 600)) * spacing
        positions.append((a, b, draw(st.integers(10**16, 10**23))))
    positions.append((((tick - span // 2) // spacing) * spacing, ((tick + span // 2) // spacing) * spacing, 10**18))
    gap = get_sqrt_ratio_at_tick(tick + 1) - get_sqrt_ratio_at_tick(tick)
    return make_state(fee, tick, positions, offset=draw(st.integers(0, gap - 1)))


@settings(max_examples=150, deadline=None)
@given(states(), st.booleans(), st.lists(st.integers(0, 25).flatmap(lambda e: st.integers(10**e, 10 ** (e + 1))), min_size=3, max_size=8))
def test_curve_equals_the_swap_loop_and_inverts_minimally(state: V3PoolState, zero_for_one: bool, amounts: list[int]) -> None:
    curve = V3Curve(state, zero_for_one)
    for a in amounts:
        try:
            r = swap(
                sqrt_price_x96=state.sqrt_price_x96,
                tick=state.tick,
                liquidity=state.liquidity,
                fee=state.key.fee,
                ticks=state.ticks,
                zero_for_one=zero_for_one,
                amount_specified=a,
            )
            expected: int | None = -(r.amount1 if zero_for_one else r.amount0)
        except Exception:
            expected = None
        got = curve.out(a)
        if got is None:
            # refused only where the loop runs out of the snapshot (or past MAX_SEGMENTS, more steps)
            assert expected is None or r.steps >= 96
            continue
        assert got == expected
        if got > 0:
            m = curve.min_input_for(got)
            assert m is not None and m <= a
            assert curve.out(m) is not None and curve.out(m) >= got  # type: ignore[operator]
            assert m == 1 or (curve.out(m - 1) or 0) < got


def _v2_for_gap(state: V3PoolState, gap_bps: int, depth_weth: int) -> V2Leg:
    """A V2 token->WETH pair that pays ``gap_bps`` more WETH per token than the V3 price."""
    p = state.sqrt_price_x96
    tokens = depth_weth * p * p // 2**192 * 10_000 // (10_000 + gap_bps)
    return V2Leg(reserve_in=tokens, reserve_out=depth_weth)


def _brute(a_leg: V3Leg, b_leg: V2Leg, centre: int, width: int) -> tuple[int, int]:
    best = (-(10**30), 0)
    for a in range(max(1, centre - width), centre + width):
        mid = a_leg.out(a)
        if not mid:
            continue
        out = b_leg.out(mid)
        if out is not None:
            best = max(best, (out - a, -a))
    return best[0], -best[1]


def test_v3_to_v2_sizing_beats_brute_force_around_it() -> None:
    state = make_state(3000, -80000, [(-90000, -70020, 10**22), (-81000, -79020, 5 * 10**22), (-80400, -79200, 10**23)])
    a_leg, b_leg = V3Leg(state, WETH), _v2_for_gap(state, 200, 300 * E18)
    z = size_cycle(a_leg, b_leg)
    assert z.refusal is None and z.profit > 0 and not z.exact
    # the answer is what the contracts' own rounding gives
    mid = -swap(sqrt_price_x96=state.sqrt_price_x96, tick=state.tick, liquidity=state.liquidity, fee=3000,
                ticks=state.ticks, zero_for_one=True, amount_specified=z.amount_in).amount1
    assert mid == z.amount_mid
    assert get_amount_out(mid, b_leg.reserve_in, b_leg.reserve_out) == z.amount_out
    assert z.profit == z.amount_out - z.amount_in
    # nothing within 20,000 wei of it does better
    best, _ = _brute(a_leg, b_leg, z.amount_in, 20_000)
    assert best <= z.profit


@settings(max_examples=60, deadline=None)
@given(states(), st.integers(5, 400), st.integers(1, 2000))
def test_sizing_is_the_best_of_its_neighbourhood_and_refuses_cleanly(state: V3PoolState, gap_bps: int, depth: int) -> None:
    """Over random pools and gaps: a sizing's profit is exact and no nearby input beats it by more than 2 wei."""
    a_leg, b_leg = V3Leg(state, WETH), _v2_for_gap(state, gap_bps, depth * E18)
    if b_leg.reserve_in == 0:
        return
    z = size_cycle(a_leg, b_leg)
    if z.refusal is not None:
        assert z.refusal in (CrossRefusal.NO_GAP, CrossRefusal.OUT_OF_RANGE)
        return
    assert z.amount_mid == a_leg.out(z.amount_in)
    assert z.amount_out == b_leg.out(z.amount_mid)
    assert z.profit == z.amount_out - z.amount_in > 0
    best, _ = _brute(a_leg, b_leg, z.amount_in, 600)
    assert best - z.profit <= 2


def test_v2_to_v3_and_v3_to_v3_across_fee_tiers() -> None:
    low = make_state(500, -80000, [(-82000, -78000, 10**22), (-80200, -79800, 4 * 10**22)])
    high = make_state(10000, -78800, [(-90000, -70000, 10**22), (-79800, -77800, 3 * 10**22)])
    # price = token per WETH = 1.0001**tick: the 1% pool at the higher tick sells the token cheap
    z = size_cycle(V3Leg(low, WETH), V3Leg(high, TOKEN))
    assert z.refusal is CrossRefusal.NO_GAP  # the wrong direction: buying dear, selling cheap
    z = size_cycle(V3Leg(high, WETH), V3Leg(low, TOKEN))
    assert z.refusal is None and z.profit > 0 and z.pieces >= 1  # the optimum lies past a tick
    mid = V3Curve(high, True).out(z.amount_in)
    assert mid == z.amount_mid and V3Curve(low, False).out(mid) == z.amount_out
    # V2 -> V3: buy the token on a V2 pair priced below the V3 pool
    p = high.sqrt_price_x96
    v2_buy = V2Leg(reserve_in=200 * E18, reserve_out=200 * E18 * p * p // 2**192 * 10_300 // 10_000)
    z = size_cycle(v2_buy, V3Leg(high, TOKEN))
    assert z.refusal is None and z.profit > 0
    assert get_amount_out(z.amount_in, v2_buy.reserve_in, v2_buy.reserve_out) == z.amount_mid


def test_v2_v2_is_delegated_to_the_proven_v2_sizing() -> None:
    z = size_cycle(V2Leg(10**9, 3 * 10**12), V2Leg(29 * 10**11, 10**9))
    rt = best_round_trip(10**9, 3 * 10**12, 29 * 10**11, 10**9)
    assert z.refusal is None and z.exact == rt.exact and z.profit == rt.profit > 0 and z.amount_in == rt.amount_in


def test_refusals() -> None:
    state = make_state(3000, -80000, [(-81000, -79020, 5 * 10**22)])
    v2 = _v2_for_gap(state, 200, 300 * E18)
    assert size_cycle(V3Leg(state, WETH), v2, cap=0).refusal is CrossRefusal.NO_CAPITAL
    # zero active liquidity: the V3 leg cannot be quoted
    empty = attrs.evolve(state, liquidity=0)
    assert V3Leg(empty, WETH).refusal is V3Refusal.ZERO_LIQUIDITY
    assert size_cycle(V3Leg(empty, WETH), v2).refusal is CrossRefusal.LEG_REFUSED
    # a tick that does not belong to the price (a corrupt snapshot or event)
    wrong = attrs.evolve(state, tick=state.tick + 5)
    assert size_cycle(V3Leg(wrong, WETH), v2).refusal is CrossRefusal.LEG_REFUSED
    # no gap
    assert size_cycle(V3Leg(state, WETH), _v2_for_gap(state, -100, 300 * E18)).refusal is CrossRefusal.NO_GAP
    # the optimum lies past the fetched ticks: a narrow snapshot of a huge gap is no sizing
    narrow = make_state(3000, -80000, [(-81000, -79020, 5 * 10**22)], words=0)
    z = size_cycle(V3Leg(narrow, WETH), _v2_for_gap(narrow, 5000, 10**6 * E18))
    assert z.refusal in (CrossRefusal.OUT_OF_RANGE, None)
    if z.refusal is None:  # sized within the snapshot: still exact on what it quotes
        assert z.amount_mid == V3Curve(narrow, True).out(z.amount_in)
    # a token not in the pool
    with pytest.raises(ValueError, match="is not in pool"):
        V3Leg(state, "0x" + "44" * 20)
    # the capital cap binds: never more input than cap
    z = size_cycle(V3Leg(state, WETH), v2, cap=10**15)
    assert z.refusal is None and z.amount_in <= 10**15
