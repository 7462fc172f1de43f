"""The exact-in swap's inlined fast path held equal to the step-by-step transcription of the pool.

``swap`` runs an exact input on its own loop (every call of a step inlined,
each step's constants cached on the tick table) and sends an exact output to
``_swap_general`` (``computeSwapStep`` per step, as ``UniswapV3Pool.swap``
reads). The general path is the reference; the equality with the deployed
pool on anvil is in ``test_v3_devnet.py``. Here both paths run on random
pools (fee tier, positions, price, extreme liquidities and amounts, price
limits, the snapshot's covered words) and must return the same result or
raise the same error, on a fresh table and again on the same table (a
warm cache must not change an answer).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aether.dex._v3math import (
    MAX_SQRT_RATIO,
    MAX_TICK,
    MIN_SQRT_RATIO,
    MIN_TICK,
    UINT128_MAX,
    SwapResult,
    TickTable,
    TicksNotLoaded,
    V3MathError,
    _swap_general,
    get_sqrt_ratio_at_tick,
    liquidity_net_from_positions,
    swap,
    tick_spacing,
)


def _both(pool: dict[str, object], zero_for_one: bool, amount: int, limit: int) -> tuple[object, object]:
    def run(fn: object) -> object:
        try:
            return fn(**pool, zero_for_one=zero_for_one, amount_specified=amount, sqrt_price_limit_x96=limit)  # type: ignore[operator]
        except TicksNotLoaded as exc:
            return ("TicksNotLoaded", str(exc))
        except V3MathError as exc:
            return ("V3MathError", str(exc))

    return run(swap), run(_swap_general)


@st.composite
def pools(draw: st.DrawFn) -> tuple[dict[str, object], int]:
    fee = draw(st.sampled_from([100, 500, 3000, 10000]))
    spacing = tick_spacing(fee)
    centre = draw(st.integers(-200_000, 200_000)) // spacing * spacing
    n = draw(st.integers(1, 8))
    positions = []
    for _ in range(n):
        lo = centre + draw(st.integers(-400, 399)) * spacing
        width = draw(st.integers(1, 300)) * spacing
        liq = draw(st.one_of(st.integers(1, 10**6), st.integers(10**15, 10**25), st.just(UINT128_MAX // 16)))
        positions.append((max(lo, MIN_TICK // spacing * spacing + spacing), min(lo + width, MAX_TICK // spacing * spacing), liq))
    positions = [(lo, hi, liq) for lo, hi, liq in positions if lo < hi]
    net = liquidity_net_from_positions(positions)
    # the price: on a tick, just beside one, or anywhere in between
    tick = centre + draw(st.integers(-500, 500)) * spacing // 7
    sqrt_p = get_sqrt_ratio_at_tick(tick) + draw(st.sampled_from([0, 0, 1, -1, 12345, 10**20]))
    sqrt_p = min(max(sqrt_p, MIN_SQRT_RATIO + 2), MAX_SQRT_RATIO - 2)
    from aether.dex._v3math import get_tick_at_sqrt_ratio

    tick = get_tick_at_sqrt_ratio(sqrt_p)
    liq = sum(l for lo, hi, l in positions if lo <= tick < hi)
    w = (tick // spacing) >> 8
    words = draw(st.integers(0, 3))
    table = TickTable.build(spacing, {t: v for t, v in net.items() if w - words <= (t // spacing) >> 8 <= w + words},
                            w - words, w + words)
    pool = {"sqrt_price_x96": sqrt_p, "tick": tick, "liquidity": liq, "fee": fee, "ticks": table}
    return pool, spacing


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pools(),
    st.booleans(),
    st.one_of(st.integers(1, 10**6), st.integers(1, 10**22), st.integers(10**22, 10**32), st.just(2**255 - 1)),
    st.integers(0, 3),
)
def test_fast_exact_in_equals_the_general_path(pool_spacing: tuple[dict[str, object], int], zero_for_one: bool,
                                               amount: int, limit_kind: int) -> None:
    pool, _ = pool_spacing
    p = int(pool["sqrt_price_x96"])  # type: ignore[call-overload]
    if limit_kind == 0:
        limit = MIN_SQRT_RATIO + 1 if zero_for_one else MAX_SQRT_RATIO - 1
    elif limit_kind == 1:  # close: the swap stops at its limit
        limit = p - p // 1000 if zero_for_one else p + p // 1000
    elif limit_kind == 2:  # one wei away
        limit = p - 1 if zero_for_one else p + 1
    else:
        limit = p * 9 // 10 if zero_for_one else min(p * 11 // 10, MAX_SQRT_RATIO - 1)
    if not (MIN_SQRT_RATIO < limit < MAX_SQRT_RATIO) or (limit >= p if zero_for_one else limit <= p):
        return
    fast, general = _both(pool, zero_for_one, amount, limit)
    assert fast == general
    again, _ = _both(pool, zero_for_one, amount, limit)  # the same table, its boundary cache now warm
    assert again == general
    if isinstance(general, SwapResult):
        got = swap(**pool, zero_for_one=zero_for_one, amount_specified=amount, sqrt_price_limit_x96=limit)  # type: ignore[arg-type]
        assert got == general


def test_the_cache_is_bounded_and_outside_equality() -> None:
    """The boundary cache never makes two equal snapshots unequal, and stays bounded."""
    from aether.dex import _v3math

    net = liquidity_net_from_positions([(-6000, 6000, 10**20)])
    a, b = TickTable.build(60, net, -2, 1), TickTable.build(60, net, -2, 1)
    pool = {"sqrt_price_x96": get_sqrt_ratio_at_tick(0), "tick": 0, "liquidity": 10**20, "fee": 3000}
    swap(**pool, ticks=a, zero_for_one=True, amount_specified=10**18)
    assert a._next_cache and not b._next_cache and a == b
    for t in range(-600, 600):
        swap(sqrt_price_x96=get_sqrt_ratio_at_tick(t), tick=t, liquidity=10**20, fee=3000, ticks=a, zero_for_one=bool(t & 1),
             amount_specified=10**6)
    assert len(a._next_cache) <= _v3math._NEXT_CACHE_MAX


def test_a_stale_snapshot_is_no_quote_on_the_fast_path() -> None:
    net = liquidity_net_from_positions([(-600, 600, 10**20)])
    table = TickTable.build(60, net, -1, 0)
    pool = {"sqrt_price_x96": get_sqrt_ratio_at_tick(0), "tick": 0, "liquidity": 10**20, "fee": 3000, "ticks": table}
    with pytest.raises(TicksNotLoaded):
        swap(**pool, zero_for_one=False, amount_specified=10**30)  # type: ignore[arg-type]
    with pytest.raises(TicksNotLoaded):
        swap(**pool, zero_for_one=True, amount_specified=10**30)  # type: ignore[arg-type]
