"""Exact V2 math and the optimal round-trip input, against brute force."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aether.dex import (
    UINT112_MAX,
    UINT256_MAX,
    best_round_trip,
    best_round_trip_input,
    get_amount_in,
    get_amount_out,
    round_trip_profit,
)


def _lib_out(a: int, r_in: int, r_out: int) -> int:
    # UniswapV2Library.getAmountOut, literally
    with_fee = a * 997
    return (with_fee * r_out) // (r_in * 1000 + with_fee)


def _lib_in(b: int, r_in: int, r_out: int) -> int:
    return (r_in * b * 1000) // ((r_out - b) * 997) + 1


@given(st.integers(1, 2**100), st.integers(1, UINT112_MAX), st.integers(1, UINT112_MAX))
def test_amount_out_is_the_library_997_1000(a: int, r_in: int, r_out: int) -> None:
    assert get_amount_out(a, r_in, r_out) == _lib_out(a, r_in, r_out)


@given(st.integers(1, UINT112_MAX), st.integers(1, UINT112_MAX), st.integers(2, UINT112_MAX))
def test_amount_in_is_the_library_with_its_plus_one(b: int, r_in: int, r_out: int) -> None:
    b = b % (r_out - 1) + 1
    assert get_amount_in(b, r_in, r_out) == _lib_in(b, r_in, r_out)
    # and it really buys at least b
    assert _lib_out(_lib_in(b, r_in, r_out), r_in, r_out) >= b


def test_revert_conditions_are_none_not_exceptions() -> None:
    assert get_amount_out(0, 10, 10) is None
    assert get_amount_out(5, 0, 10) is None
    assert get_amount_out(5, 10, 0) is None
    assert get_amount_out(UINT256_MAX // 997 + 1, 10, 10) is None  # amountIn.mul(997) overflows
    assert get_amount_out(2**200, 10, 2**112) is None  # numerator overflows
    assert get_amount_out(2**255, 1, 1) is None
    assert get_amount_out(-1, 10, 10) is None
    assert get_amount_in(10, 10, 10) is None  # amountOut == reserveOut: division by zero
    assert get_amount_in(11, 10, 10) is None  # SafeMath underflow
    assert get_amount_in(0, 10, 10) is None
    assert get_amount_in(2**255, 2**255, UINT256_MAX) is None
    assert round_trip_profit(1, UINT112_MAX, 10, 10, 10) is None  # reserve past uint112
    assert best_round_trip_input(UINT112_MAX, 10, 10, 10) == (0, 0)
    assert best_round_trip_input(0, 10, 10, 10) == (0, 0)
    assert best_round_trip_input(2**113, 10, 10, 10) == (0, 0)


def _brute(wa: int, xa: int, xb: int, wb: int, fa: int, fb: int, cap: int) -> int:
    best = 0
    for a in range(1, cap + 1):
        r = round_trip_profit(a, wa, xa, xb, wb, fa, fb)
        if r is not None and r[2] > best:
            best = r[2]
    return best


small = st.integers(1, 4000)
fees = st.sampled_from([0, 25, 30, 100, 300])


@settings(max_examples=300, deadline=None)
@given(small, small, small, small, fees, fees, st.integers(1, 3000))
def test_chosen_input_is_never_beaten_by_brute_force(
    wa: int, xa: int, xb: int, wb: int, fa: int, fb: int, cap: int
) -> None:
    rt = best_round_trip(wa, xa, xb, wb, fa, fb, cap)
    assert rt.exact
    assert rt.profit == _brute(wa, xa, xb, wb, fa, fb, cap)
    if rt.profit > 0:
        assert 1 <= rt.amount_in <= cap
        assert round_trip_profit(rt.amount_in, wa, xa, xb, wb, fa, fb) == (rt.amount_mid, rt.amount_out, rt.profit)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 5000), st.integers(1, 10**6), st.integers(1, 10**6), st.integers(1, 5000), st.integers(1, 4000)
)
def test_lopsided_decimals_never_beaten(wa: int, xa: int, xb: int, wb: int, cap: int) -> None:
    # many X units per wei (18-decimals cheap token): the search walks inputs
    rt = best_round_trip(wa, xa, xb, wb, 30, 30, cap)
    assert rt.exact
    assert rt.profit == _brute(wa, xa, xb, wb, 30, 30, cap)


def test_deep_pools_profit_matches_exact_evaluation() -> None:
    # 1000 WETH vs 2M and 1M units: a gap of 2x; the answer evaluates exactly
    rt = best_round_trip(10**21, 2 * 10**24, 10**24, 10**21)
    assert rt.profit > 5 * 10**19
    assert round_trip_profit(rt.amount_in, 10**21, 2 * 10**24, 10**24, 10**21) == (
        rt.amount_mid,
        rt.amount_out,
        rt.profit,
    )
    # neighbours within a wide radius do no better
    for d in (-10**6, -1000, -1, 1, 1000, 10**6):
        r = round_trip_profit(rt.amount_in + d, 10**21, 2 * 10**24, 10**24, 10**21)
        assert r is not None and r[2] <= rt.profit + 2  # flat top: within the documented few wei


def test_cap_binds_and_no_gap_gives_nothing() -> None:
    rt = best_round_trip(10**21, 2 * 10**24, 10**24, 10**21, cap=10**18)
    assert rt.amount_in == 10**18 or rt.amount_in >= 10**18 - 10
    assert best_round_trip_input(10**21, 10**24, 10**24, 10**21) == (0, 0)  # same price: fees eat it


@settings(max_examples=200, deadline=None)
@given(small, small, small, small, st.integers(1, 3000), st.booleans(), st.integers(1, 3000))
def test_after_a_random_victim_the_chosen_input_is_never_beaten(
    w1: int, x1: int, w2: int, x2: int, victim_in: int, victim_buys: bool, cap: int
) -> None:
    # the victim trades on pool 1 (buying X with WETH, or selling X), moving it away from pool 2
    if victim_buys:
        out = get_amount_out(victim_in, w1, x1)
        if not out:
            return
        w1, x1 = w1 + victim_in, x1 - out
    else:
        out = get_amount_out(victim_in, x1, w1)
        if not out:
            return
        w1, x1 = w1 - out, x1 + victim_in
    for wa, xa, xb, wb in ((w1, x1, x2, w2), (w2, x2, x1, w1)):  # both directions
        rt = best_round_trip(wa, xa, xb, wb, 30, 30, cap)
        assert rt.exact
        assert rt.profit == _brute(wa, xa, xb, wb, 30, 30, cap)


def test_best_round_trip_equals_the_pre_optimisation_search_over_random_pools() -> None:
    """``_refine_a`` tries the four inputs around the optimum without the search object; the
    result (input, mid, output, profit, exactness) equals the verbatim earlier code
    (``_reference_math``) over seeded random pools: tiny to uint112-deep, gaps small and
    large, fees, caps and budgets (including budgets below the four tries)."""
    import random

    import _reference_math as ref
    from aether.dex._math import best_round_trip as ours

    rng = random.Random(112)
    kinds: dict[str, int] = {"exact": 0, "inexact": 0, "none": 0}
    for _ in range(20000):
        scale = rng.choice((1, 10**3, 10**18, 10**24, 2**100))
        w_a = rng.randrange(1, 10 * scale + 2)
        x_a = w_a * rng.choice((1, 3, 2000, 10**6)) + rng.randrange(0, scale + 1)
        gap = rng.choice((0.9, 0.99, 0.999, 1.0, 1.001, 1.01, 1.1, 2.0, 10.0))
        x_b = max(1, int(x_a * gap) + rng.randrange(-3, 4))
        w_b = max(1, w_a + rng.randrange(-(w_a // 10) - 1, w_a // 10 + 2))
        pools = [min(v, 2**112 - 1) for v in (w_a, x_a, x_b, w_b)]
        if rng.random() < 0.02:
            pools[rng.randrange(4)] = rng.choice((0, 2**112, 2**112 - 1))
        fees = (rng.choice((0, 5, 25, 30, 30, 30, 100, 9999)), rng.choice((0, 30, 30, 100)))
        cap = rng.choice((1, 10, 10**18, 10**22, 2**112 - 1, rng.randrange(1, 2**64)))
        budget = rng.choice((0, 1, 3, 4, 5, 8, 256, 256))
        got = ours(*pools, *fees, cap, budget)
        assert got == ref.best_round_trip(*pools, *fees, cap, budget), (pools, fees, cap, budget)
        kinds["none" if got.profit == 0 else "exact" if got.exact else "inexact"] += 1
    assert min(kinds.values()) > 300, kinds  # profitable exact, profitable inexact and none all seen
