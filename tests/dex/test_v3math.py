"""The V3 math against known vectors (v3-core's own test values) and its own invariants.

Equality with the deployed contracts on anvil is in ``test_v3_devnet.py``;
these tests pin the pieces one by one, so a regression names the function.
"""

from __future__ import annotations

from math import isqrt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aether.dex._v3math import (
    MAX_SQRT_RATIO,
    MAX_TICK,
    MIN_SQRT_RATIO,
    MIN_TICK,
    Q96,
    TickTable,
    TicksNotLoaded,
    V3MathError,
    compute_swap_step,
    get_amount0_delta,
    get_amount1_delta,
    get_next_sqrt_price_from_input,
    get_next_sqrt_price_from_output,
    get_sqrt_ratio_at_tick,
    get_tick_at_sqrt_ratio,
    get_tick_at_sqrt_ratio_reference,
    liquidity_net_from_positions,
    mul_div,
    mul_div_rounding_up,
    swap,
    tick_spacing,
)

E18 = 10**18


def encode_price_sqrt(reserve1: int, reserve0: int) -> int:
    """v3-core's test helper ``encodePriceSqrt``, floor-rounded."""
    return isqrt(reserve1 * 2**192 // reserve0)


def test_tick_math_bounds() -> None:
    assert get_sqrt_ratio_at_tick(MIN_TICK) == MIN_SQRT_RATIO
    assert get_sqrt_ratio_at_tick(MAX_TICK) == MAX_SQRT_RATIO
    assert get_sqrt_ratio_at_tick(0) == Q96
    assert get_tick_at_sqrt_ratio(MIN_SQRT_RATIO) == MIN_TICK
    assert get_tick_at_sqrt_ratio(MAX_SQRT_RATIO - 1) == MAX_TICK - 1
    with pytest.raises(V3MathError):
        get_sqrt_ratio_at_tick(MAX_TICK + 1)
    with pytest.raises(V3MathError):
        get_sqrt_ratio_at_tick(MIN_TICK - 1)
    with pytest.raises(V3MathError):
        get_tick_at_sqrt_ratio(MAX_SQRT_RATIO)
    with pytest.raises(V3MathError):
        get_tick_at_sqrt_ratio(MIN_SQRT_RATIO - 1)


@settings(max_examples=300, deadline=None)
@given(st.integers(MIN_TICK, MAX_TICK - 1))
def test_tick_at_sqrt_ratio_is_the_floor(tick: int) -> None:
    p = get_sqrt_ratio_at_tick(tick)
    assert get_tick_at_sqrt_ratio(p) == tick
    nxt = get_sqrt_ratio_at_tick(tick + 1)
    assert nxt > p
    assert get_tick_at_sqrt_ratio(nxt - 1) == tick


def test_sqrt_price_math_vectors() -> None:
    # Values from v3-core's SqrtPriceMath.spec.ts.
    assert get_next_sqrt_price_from_input(Q96, E18, E18 // 10, False) == 87150978765690771352898345369
    assert get_next_sqrt_price_from_input(Q96, E18, E18 // 10, True) == 72025602285694852357767227579
    assert get_next_sqrt_price_from_output(Q96, E18, E18 // 10, False) == 88031291682515930659493278152
    assert get_next_sqrt_price_from_output(Q96, E18, E18 // 10, True) == 71305346262837903834189555302
    p121 = encode_price_sqrt(121, 100)
    assert get_amount0_delta(Q96, p121, E18, True) == 90909090909090910
    assert get_amount0_delta(Q96, p121, E18, False) == 90909090909090909
    assert get_amount1_delta(Q96, p121, E18, True) == 100000000000000000
    assert get_amount1_delta(Q96, p121, E18, False) == 99999999999999999
    with pytest.raises(V3MathError):
        get_next_sqrt_price_from_input(0, 1, E18 // 10, False)
    with pytest.raises(V3MathError):
        get_next_sqrt_price_from_input(1, 0, E18 // 10, True)
    # Output larger than the virtual reserves: the contract reverts.
    with pytest.raises(V3MathError):
        get_next_sqrt_price_from_output(Q96, 1, 4, False)
    with pytest.raises(V3MathError):
        get_next_sqrt_price_from_output(encode_price_sqrt(1, 1), 10**18, 2**255, True)


def test_compute_swap_step_vectors() -> None:
    # SwapMath.spec.ts: exact amount in that gets capped at price target in one for zero.
    price = encode_price_sqrt(1, 1)
    target = encode_price_sqrt(101, 100)
    nxt, a_in, a_out, fee = compute_swap_step(price, target, 2 * E18, E18, 600)
    assert (a_in, a_out, fee) == (9975124224178055, 9925619580021728, 5988667735148)
    assert nxt == target
    # exact amount out, capped at the target.
    nxt, a_in, a_out, fee = compute_swap_step(price, target, 2 * E18, -E18, 600)
    assert (a_in, a_out, fee, nxt) == (9975124224178055, 9925619580021728, 5988667735148, target)
    # "entire input amount taken as fee": 1 wei in, fee 1, no movement.
    nxt, a_in, a_out, fee = compute_swap_step(2413, 79887613182836312, 1985041575832132834610021537970, 10, 1872)
    assert (a_in, a_out, fee, nxt) == (0, 0, 10, 2413)


def test_full_math_overflow_and_zero() -> None:
    assert mul_div(2**255, 4, 8) == 2**254
    assert mul_div_rounding_up(7, 3, 2) == 11
    with pytest.raises(V3MathError):
        mul_div(2**255, 4, 1)
    with pytest.raises(V3MathError):
        mul_div_rounding_up(1, 1, 0)


def test_tick_spacing_names_the_fee() -> None:
    assert [tick_spacing(f) for f in (100, 500, 3000, 10000)] == [1, 10, 60, 200]
    with pytest.raises(ValueError, match=r"unknown V3 fee tier 30"):
        tick_spacing(30)


def test_tick_table_mirrors_bitmap_word_walks() -> None:
    t = TickTable.build(60, {-120: 5, 600: -5}, -1, 0)
    # Searching down from 0 finds -120 (same word -1? no: compressed -2 is in word -1).
    assert t.next_initialized_tick_within_one_word(0, True) == (0, False)  # word 0 starts at 0
    assert t.next_initialized_tick_within_one_word(-1, True) == (-120, True)
    assert t.next_initialized_tick_within_one_word(-121, True) == (-256 * 60, False)
    assert t.next_initialized_tick_within_one_word(0, False) == (600, True)
    assert t.next_initialized_tick_within_one_word(600, False) == (255 * 60, False)
    with pytest.raises(TicksNotLoaded):
        t.next_initialized_tick_within_one_word(256 * 60, False)
    with pytest.raises(TicksNotLoaded):
        t.next_initialized_tick_within_one_word(-256 * 60 - 1, True)
    with pytest.raises(ValueError, match="not a multiple"):
        TickTable.build(60, {61: 1}, 0, 0)
    with pytest.raises(ValueError, match="outside the covered words"):
        TickTable.build(60, {256 * 60: 1}, 0, 0)


def _pool(positions: list[tuple[int, int, int]], tick: int, spacing: int = 60) -> dict[str, object]:
    net = liquidity_net_from_positions(positions)
    liq = sum(l for lo, hi, l in positions if lo <= tick < hi)
    return {
        "sqrt_price_x96": get_sqrt_ratio_at_tick(tick),
        "tick": tick,
        "liquidity": liq,
        "ticks": TickTable.build(spacing, net, -5, 4),
    }


def test_swap_crosses_ticks_and_stops_at_words() -> None:
    pool = _pool([(-600, 600, 10**20), (-120, 120, 10**21), (-3000, 3000, 10**19)], 0)
    r = swap(**pool, fee=3000, zero_for_one=True, amount_specified=10**19)  # type: ignore[arg-type]
    assert r.amount0 == 10**19 and r.amount1 < 0
    assert r.ticks_crossed >= 1 and r.tick < -120
    # exact output asking for the same amount1 gives back the same input, to the wei or one below
    back = swap(**pool, fee=3000, zero_for_one=True, amount_specified=r.amount1)  # type: ignore[arg-type]
    assert back.amount1 == r.amount1
    assert back.amount0 <= r.amount0
    # a swap too large for the fetched words is no quote, never a wrong one
    with pytest.raises(TicksNotLoaded):
        swap(**pool, fee=3000, zero_for_one=True, amount_specified=10**30)  # type: ignore[arg-type]


def test_swap_stops_at_the_price_limit() -> None:
    pool = _pool([(-600, 600, 10**20)], 0)
    limit = get_sqrt_ratio_at_tick(-300)
    r = swap(**pool, fee=500, zero_for_one=True, amount_specified=10**25, sqrt_price_limit_x96=limit)  # type: ignore[arg-type]
    assert r.sqrt_price_x96 == limit and r.amount0 < 10**25
    with pytest.raises(V3MathError, match="SPL"):
        swap(**pool, fee=500, zero_for_one=True, amount_specified=1, sqrt_price_limit_x96=pool["sqrt_price_x96"])  # type: ignore[arg-type]
    with pytest.raises(V3MathError, match="AS"):
        swap(**pool, fee=500, zero_for_one=False, amount_specified=0)  # type: ignore[arg-type]
    with pytest.raises(V3MathError, match="int256"):
        swap(**pool, fee=500, zero_for_one=False, amount_specified=2**255)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(
    st.integers(-2000, 2000),
    st.integers(1, 10**24),
    st.booleans(),
)
def test_swap_never_pays_more_than_it_takes(tick: int, amount: int, zero_for_one: bool) -> None:
    """Rounding always favours the pool: exact-out of an exact-in's output costs no more input."""
    pool = _pool([(-3000, 3000, 10**21), (-600, 1200, 10**22), (-60, 60, 3 * 10**22)], tick)
    try:
        r = swap(**pool, fee=3000, zero_for_one=zero_for_one, amount_specified=amount)  # type: ignore[arg-type]
    except TicksNotLoaded:
        return
    out = -(r.amount1 if zero_for_one else r.amount0)
    if out <= 0:
        return
    back = swap(**pool, fee=3000, zero_for_one=zero_for_one, amount_specified=-out)  # type: ignore[arg-type]
    paid = back.amount0 if zero_for_one else back.amount1
    assert paid <= amount


@settings(max_examples=400, deadline=None)
@given(st.integers(MIN_SQRT_RATIO, MAX_SQRT_RATIO - 1))
def test_fast_tick_at_sqrt_ratio_equals_the_bit_exact_port(price: int) -> None:
    assert get_tick_at_sqrt_ratio(price) == get_tick_at_sqrt_ratio_reference(price)


@pytest.mark.parametrize("tick", [MIN_TICK, MIN_TICK + 1, -1, 0, 1, MAX_TICK - 1])
def test_fast_tick_at_sqrt_ratio_on_and_beside_boundaries(tick: int) -> None:
    p = get_sqrt_ratio_at_tick(tick)
    for q in (p - 1, p, p + 1):
        if MIN_SQRT_RATIO <= q < MAX_SQRT_RATIO:
            assert get_tick_at_sqrt_ratio(q) == get_tick_at_sqrt_ratio_reference(q)
