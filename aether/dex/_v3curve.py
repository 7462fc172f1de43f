"""A V3 pool's exact-input curve in one direction: the swap loop, precomputed once per state.

Why: sizing a cycle evaluates the same pool at dozens of inputs. In
``UniswapV3Pool.swap`` every step that *reaches* its target (an initialised
tick, a bitmap word boundary) takes an input and gives an output that do not
depend on how much input is left: ``computeSwapStep`` returns
``getAmount0/1Delta`` to the target and, because the price lands on the
target, the fee is ``mulDivRoundingUp(amountIn, fee, 1e6 - fee)``. So the
cumulative input ``A[i]`` and output ``O[i]`` at each boundary are constants
of the state, and an exact-input swap of ``a`` is ``O[i]`` plus *one* partial
``computeSwapStep`` in the segment with ``A[i] < a < A[i+1]`` (reaching the
target needs ``floor(r(1e6-f)/1e6) >= amountIn``, which is exactly
``r >= amountIn + fee``). :meth:`V3Curve.out` is therefore equal, to the wei,
to :func:`~aether.dex._v3math.swap` (a test holds them equal), at the cost of
one step instead of one per boundary.

The curve also gives the constant-product *virtual reserves* of the segment
at any input (``L/sqrtP`` and ``L*sqrtP``), which the cycle sizing uses to
locate the optimum in closed form.
"""

from __future__ import annotations

import bisect

from ._v3math import (
    MAX_SQRT_RATIO,
    MAX_TICK,
    MIN_SQRT_RATIO,
    MIN_TICK,
    Q96,
    UINT160_MAX,
    UINT256_MAX,
    TicksNotLoaded,
    V3MathError,
    get_amount0_delta,
    get_amount1_delta,
    get_next_sqrt_price_from_input,
    get_sqrt_ratio_at_tick,
    mul_div_rounding_up,
)
from ._v3pool import V3PoolState, V3Refusal

__all__ = ["MAX_SEGMENTS", "V3Curve"]

_FEE_DENOM = 1_000_000
#: Segments precomputed per curve (boundaries: initialised ticks and bitmap words).
MAX_SEGMENTS = 96


class V3Curve:
    """Exact output of an exact-input swap of ``a`` into ``state``, for any ``a`` the snapshot covers.

    ``refusal`` is set (and every :meth:`out` is None) when the state cannot
    be quoted at all. Inputs past the last precomputed boundary (the snapshot's
    ticks, the price limit, or :data:`MAX_SEGMENTS`) are None: no quote.
    """

    def __init__(self, state: V3PoolState, zero_for_one: bool) -> None:
        self.state = state
        self.zero_for_one = zero_for_one
        self.fee = state.key.fee
        self.refusal: V3Refusal | None = state.refusal()
        # boundary i: cumulative gross input and output; segment i runs from boundary i to i+1
        self.a: list[int] = [0]
        self.o: list[int] = [0]
        self.price: list[int] = []  # start price of segment i
        self.target: list[int] = []  # price at its end
        self.liq: list[int] = []
        # the walk's position: built lazily, one segment at a time, as inputs ask for it
        self._done = self.refusal is not None
        self._limit = MIN_SQRT_RATIO + 1 if zero_for_one else MAX_SQRT_RATIO - 1
        self._price, self._tick, self._liq = state.sqrt_price_x96, state.tick, state.liquidity

    def _extend(self) -> bool:
        """Add the next segment; False when the curve can go no further."""
        if self._done or len(self.liq) >= MAX_SEGMENTS:
            self._done = True
            return False
        st = self.state
        zfo = self.zero_for_one
        limit, price, tick, liq, fee = self._limit, self._price, self._tick, self._liq, self.fee
        try:
            tick_next, initialized = st.ticks.next_initialized_tick_within_one_word(tick, zfo)
        except TicksNotLoaded:
            self._done = True
            return False
        tick_next = min(max(tick_next, MIN_TICK), MAX_TICK)
        sqrt_next = get_sqrt_ratio_at_tick(tick_next)
        target = (limit if sqrt_next < limit else sqrt_next) if zfo else (limit if sqrt_next > limit else sqrt_next)
        # The deltas rounded down cannot leave uint256 (uint128 liquidity, uint160 prices): inlined.
        if zfo:
            amount_in = get_amount0_delta(target, price, liq, True)
            amount_out = liq * (price - target) // Q96
        else:
            amount_in = -(-(liq * (target - price)) // Q96)
            amount_out = ((liq << 96) * (target - price) // target) // price
        fee_amount = mul_div_rounding_up(amount_in, fee, _FEE_DENOM - fee)
        self.price.append(price)
        self.target.append(target)
        self.liq.append(liq)
        self.a.append(self.a[-1] + amount_in + fee_amount)
        self.o.append(self.o[-1] + amount_out)
        if target == limit:
            self._done = True
            return True
        if initialized:
            net = st.ticks.liquidity_net[tick_next]
            liq += -net if zfo else net
            if liq < 0:
                self._done = True
                return True
        self._tick = tick_next - 1 if zfo else tick_next
        self._price, self._liq = target, liq
        return True

    def _cover_input(self, a: int) -> bool:
        while a > self.a[-1]:
            if not self._extend():
                return False
        return True

    def _cover_output(self, x: int) -> bool:
        while x > self.o[-1]:
            if not self._extend():
                return False
        return True

    def _segment(self, a: int) -> int:
        return bisect.bisect_right(self.a, a) - 1

    def out(self, a: int) -> int | None:
        """Exactly what ``UniswapV3Pool.swap`` pays out for an exact input ``a`` (None: no quote)."""
        if a <= 0 or self.refusal is not None or not self._cover_input(a):
            return None
        i = self._segment(a)
        if self.a[i] == a:
            return self.o[i]
        price, liq = self.price[i], self.liq[i]
        # The one partial step (it stops short of its target: see the module docstring):
        # getNextSqrtPriceFromInput then the output delta, inlined on the contract's main
        # path (no 256-bit overflow); anything else goes through the general functions.
        less_fee = (a - self.a[i]) * (_FEE_DENOM - self.fee) // _FEE_DENOM
        n1 = liq << 96
        if self.zero_for_one:
            product = less_fee * price
            if less_fee and product <= UINT256_MAX and n1 + product <= UINT256_MAX:
                nxt = -(-(n1 * price) // (n1 + product))
                return self.o[i] + liq * (price - nxt) // Q96
        elif less_fee <= UINT160_MAX:
            nxt = price + (less_fee << 96) // liq
            if nxt <= UINT160_MAX:
                return self.o[i] + n1 * (nxt - price) // nxt // price
        try:
            nxt = get_next_sqrt_price_from_input(price, liq, less_fee, self.zero_for_one)
        except V3MathError:
            return None
        if self.zero_for_one:
            return self.o[i] + get_amount1_delta(nxt, price, liq, False)
        return self.o[i] + get_amount0_delta(price, nxt, liq, False)

    def min_input_for(self, x: int) -> int | None:
        """The smallest exact input whose output is at least ``x`` (None: no quote reaches it).

        Solved in closed form from the contract's own rounding inside the
        segment that holds ``x``, then checked with :meth:`out` (and walked to
        the true minimum by bisection if the check fails).
        """
        if x <= 0:
            return 0
        if self.refusal is not None or not self._cover_output(x):
            return None
        j = bisect.bisect_left(self.o, x) - 1  # o[j] < x <= o[j+1]
        lo, hi = self.a[j], self.a[j + 1]  # out(lo) < x <= out(hi)
        guess = self._guess(j, x - self.o[j])
        if guess is not None and lo < guess <= hi:
            got, below = self.out(guess), self.out(guess - 1) if guess - 1 > lo else self.o[j]
            if got is not None and below is not None and got >= x > below:
                return guess
            if got is not None and got >= x:
                hi = guess
            else:
                lo = guess
        while hi - lo > 1:
            m = (lo + hi) // 2
            got = self.out(m)
            if got is not None and got >= x:
                hi = m
            else:
                lo = m
        return hi

    def _guess(self, j: int, y: int) -> int | None:
        price, liq, fee = self.price[j], self.liq[j], self.fee
        if liq == 0:
            return None
        n1 = liq << 96
        if self.zero_for_one:
            # out = floor(L (P - Pn) / Q96) >= y  <=>  Pn <= P - ceil(y Q96 / L)
            t = price - (-(-(y << 96) // liq))
            if t <= 0:
                return None
            # Pn = ceil(n1 P / (n1 + u P)) <= t  <=>  u >= n1 (P - t) / (t P)
            u = -(-(n1 * (price - t)) // (t * price))
        else:
            # out = floor(floor(n1 (Pn - P) / Pn) / P) >= y  <=>  Pn >= n1 P / (n1 - y P)
            if n1 <= y * price:
                return None
            pn = -(-(n1 * price) // (n1 - y * price))
            # Pn = P + floor(u Q96 / L) >= pn  <=>  u >= ceil((pn - P) L / Q96)
            u = -(-((pn - price) * liq) // Q96)
        # the smallest r with floor(r (1e6 - f) / 1e6) >= u
        return self.a[j] + -(-(u * _FEE_DENOM) // (_FEE_DENOM - fee))

    def reserves_at(self, a: int) -> tuple[int, int, int] | None:
        """Virtual (reserve_in, reserve_out, end of the segment) at input ``a``, or None past the curve.

        At a boundary the reserves are those of the segment that starts there.
        Segments without liquidity have no reserves; the next one with liquidity is used.
        """
        if a < 0 or self.refusal is not None:
            return None
        while a >= self.a[-1]:
            if not self._extend():
                return None
        i = self._segment(a)
        while self.liq[i] == 0:
            i += 1
            while i >= len(self.liq):
                if not self._extend():
                    return None
        liq = self.liq[i]
        if a > self.a[i]:
            less_fee = (a - self.a[i]) * (_FEE_DENOM - self.fee) // _FEE_DENOM
            price = get_next_sqrt_price_from_input(self.price[i], liq, less_fee, self.zero_for_one)
        else:
            price = self.price[i]
        r0, r1 = liq * Q96 // price, liq * price // Q96
        if r0 == 0 or r1 == 0:
            return None
        return (r0, r1, self.a[i + 1]) if self.zero_for_one else (r1, r0, self.a[i + 1])
