"""Exact Uniswap V2 integer math, and the optimal round-trip input.

Everything here is pure integer arithmetic that reproduces, wei for wei, what
``UniswapV2Library`` and ``UniswapV2Pair`` compute on chain. A condition under
which the contracts revert (zero amount, empty pool, a SafeMath overflow, a
reserve past ``uint112``) returns ``None`` instead of raising: callers turn it
into a counted rejection.

The fee is given in basis points; ``fee_bps=30`` gives exactly the results of
the library's ``997/1000`` (both numerator and denominator carry the same
factor 10, so every floor is the same).
"""

from __future__ import annotations

from collections.abc import Callable
from math import isqrt

import attrs

__all__ = [
    "UINT112_MAX",
    "UINT256_MAX",
    "RoundTrip",
    "REFINE_BUDGET",
    "best_round_trip",
    "best_round_trip_input",
    "get_amount_in",
    "get_amount_out",
    "round_trip_profit",
]

UINT256_MAX = 2**256 - 1
UINT112_MAX = 2**112 - 1
_BPS = 10_000

#: How many exact evaluations the integer refinement may spend. Enough to be
#: exact on small pools (the property test checks that against brute force);
#: on deep pools the profit curve is flat near its top and the refinement
#: stops here, within a couple of wei of the optimum (see ``RoundTrip.exact``).
REFINE_BUDGET = 256


def get_amount_out(amount_in: int, reserve_in: int, reserve_out: int, fee_bps: int = 30) -> int | None:
    """``UniswapV2Library.getAmountOut``, or None where it would revert.

    Reverts mirrored: ``amount_in == 0`` (INSUFFICIENT_INPUT_AMOUNT), an empty
    reserve (INSUFFICIENT_LIQUIDITY), and any SafeMath overflow of the
    ``uint256`` intermediate products.
    """
    if amount_in <= 0 or reserve_in <= 0 or reserve_out <= 0:
        return None
    if amount_in > UINT256_MAX or reserve_in > UINT256_MAX or reserve_out > UINT256_MAX:
        return None
    g = _BPS - fee_bps
    with_fee = amount_in * g
    numerator = with_fee * reserve_out
    denominator = reserve_in * _BPS + with_fee
    # The library computes with 997/1000; our scaled products are 10x larger, so
    # check overflow on the library's own (unscaled) products when fee_bps is a
    # multiple of 10, which it is for every Uniswap-V2 fork we know.
    scale = 10 if fee_bps % 10 == 0 else 1
    if (
        with_fee // scale > UINT256_MAX
        or numerator // scale > UINT256_MAX
        or denominator // scale > UINT256_MAX
    ):
        return None
    return numerator // denominator


def get_amount_in(amount_out: int, reserve_in: int, reserve_out: int, fee_bps: int = 30) -> int | None:
    """``UniswapV2Library.getAmountIn``, or None where it would revert.

    Note the library's ``+ 1``: it may ask for one wei more than the smallest
    input that yields ``amount_out``. Router02's exact-output swaps use this
    value, so we must too.
    """
    if amount_out <= 0 or reserve_in <= 0 or reserve_out <= 0:
        return None
    if amount_out >= reserve_out:  # SafeMath sub underflow, or division by zero
        return None
    if amount_out > UINT256_MAX or reserve_in > UINT256_MAX or reserve_out > UINT256_MAX:
        return None
    g = _BPS - fee_bps
    scale = 10 if fee_bps % 10 == 0 else 1
    numerator = reserve_in * amount_out * _BPS
    denominator = (reserve_out - amount_out) * g
    if numerator // scale > UINT256_MAX or denominator // scale > UINT256_MAX:
        return None
    result = numerator // denominator + 1
    if result > UINT256_MAX:
        return None
    return result


def _min_input_for(x: int, r_in: int, r_out: int, g: int) -> int | None:
    """The smallest input ``a`` with ``getAmountOut(a) >= x`` (None if none)."""
    if x <= 0:
        return 0
    if x >= r_out:
        return None
    num = _BPS * r_in * x
    den = g * (r_out - x)
    return -(-num // den)


def _out(a: int, r_in: int, r_out: int, g: int) -> int:
    if a <= 0:
        return 0
    return (a * g * r_out) // (r_in * _BPS + a * g)


def round_trip_profit(
    amount_in: int, r_weth_a: int, r_x_a: int, r_x_b: int, r_weth_b: int, fee_a: int = 30, fee_b: int = 30
) -> tuple[int, int, int] | None:
    """Exact (mid, out, profit) of WETH -> X on pool A then X -> WETH on pool B.

    Returns None when either swap would revert on chain (a zero output, or a
    reserve pushed past ``uint112``).
    """
    mid = get_amount_out(amount_in, r_weth_a, r_x_a, fee_a)
    if not mid or r_weth_a + amount_in > UINT112_MAX:
        return None
    out = get_amount_out(mid, r_x_b, r_weth_b, fee_b)
    if not out or r_x_b + mid > UINT112_MAX:
        return None
    return mid, out, out - amount_in


@attrs.frozen
class RoundTrip:
    """The best integer input of a round trip and what it yields.

    ``exact`` is True when the refinement proved no other integer input in
    ``[1, cap]`` does better; False only when the refinement budget ran out on
    a very flat profit curve (deep pools), where the shortfall is a few wei.
    """

    amount_in: int
    amount_mid: int
    amount_out: int
    profit: int
    exact: bool = True


_NONE = RoundTrip(0, 0, 0, 0, True)


def best_round_trip_input(
    r_weth_a: int,
    r_x_a: int,
    r_x_b: int,
    r_weth_b: int,
    fee_a: int = 30,
    fee_b: int = 30,
    cap: int = UINT112_MAX,
) -> tuple[int, int]:
    """The integer WETH input in ``[1, cap]`` that maximises the round-trip profit.

    Buy X with WETH on pool A (reserves ``r_weth_a``, ``r_x_a``), sell it for
    WETH on pool B (``r_x_b``, ``r_weth_b``). Returns ``(amount_in, profit)``,
    or ``(0, 0)`` when no input is profitable.
    """
    rt = best_round_trip(r_weth_a, r_x_a, r_x_b, r_weth_b, fee_a, fee_b, cap)
    return rt.amount_in, rt.profit


def best_round_trip(
    r_weth_a: int,
    r_x_a: int,
    r_x_b: int,
    r_weth_b: int,
    fee_a: int = 30,
    fee_b: int = 30,
    cap: int = UINT112_MAX,
    budget: int = REFINE_BUDGET,
) -> RoundTrip:
    """:func:`best_round_trip_input` with the details (mid amount, output, exactness).

    Method. Composed, the two constant-product swaps are ``w(a) = K a / (D + E a)``,
    whose profit ``w(a) - a`` is concave with its top at
    ``a* = (sqrt(K D) - D) / E`` (closed form, ``isqrt``). The on-chain integer
    profit ``p`` never exceeds that real-valued curve, so an integer search
    that walks outward from ``a*`` can stop in a direction as soon as the curve
    there is no higher than the best integer profit found: nothing further out
    can beat it. The walk runs over whichever of the input (WETH) or the middle
    amount (X) is coarser, because the best input is always the smallest input
    that buys a given middle amount.
    """
    if min(r_weth_a, r_x_a, r_x_b, r_weth_b) <= 0 or cap <= 0:
        return _NONE
    if max(r_weth_a, r_x_a, r_x_b, r_weth_b) > UINT112_MAX:
        return _NONE
    if not (0 <= fee_a < _BPS and 0 <= fee_b < _BPS):
        return _NONE
    cap = min(cap, UINT112_MAX - r_weth_a)
    if cap <= 0:
        return _NONE
    g1 = _BPS - fee_a
    g2 = _BPS - fee_b
    # w(a) = K a / (D + E a) with integers scaled by 1e8.
    k = g1 * g2 * r_x_a * r_weth_b
    d = r_weth_a * r_x_b * _BPS * _BPS
    e = g1 * (r_x_b * _BPS + g2 * r_x_a)
    if k <= d:  # marginal return at a=0 is <= 1: no profitable input exists
        return _NONE
    a_star = (isqrt(k * d) - d) // e
    a0 = max(1, min(a_star, cap))
    x0 = _out(a0, r_weth_a, r_x_a, g1)
    if x0 <= a0:
        return _refine_x(r_weth_a, r_x_a, r_x_b, r_weth_b, g1, g2, cap, a0, budget)
    return _refine_a(r_weth_a, r_x_a, r_x_b, r_weth_b, g1, g2, k, d, e, cap, a0, budget)


def _eval(a: int, wa: int, xa: int, xb: int, wb: int, g1: int, g2: int) -> tuple[int, int, int] | None:
    x = _out(a, wa, xa, g1)
    if x <= 0:
        return None
    w = _out(x, xb, wb, g2)
    if w <= 0 or xb + x > UINT112_MAX:
        return None
    return x, w, w - a


class _Search:
    """Best-so-far of the integer refinement, and the budget it has spent."""

    def __init__(self, wa: int, xa: int, xb: int, wb: int, g1: int, g2: int, cap: int, budget: int) -> None:
        self.args = (wa, xa, xb, wb, g1, g2)
        self.cap = cap
        self.budget = budget
        self.spent = 0
        self.best = _NONE

    def consider_input(self, a: int) -> None:
        self.spent += 1
        if a < 1 or a > self.cap:
            return
        r = _eval(a, *self.args)
        if r is None:
            return
        b = self.best
        if r[2] > b.profit or (r[2] == b.profit and b.amount_in and a < b.amount_in):
            self.best = RoundTrip(a, r[0], r[1], r[2], True)

    def walk(
        self,
        start_lo: int,
        start_hi: int,
        lo_min: int,
        hi_max: int,
        bound_le: Callable[[int, int], bool],
        consider: Callable[[int], None],
    ) -> bool:
        """Walk down from ``start_lo`` and up from ``start_hi`` until the bound stops both.

        Both starts lie on their side of the bound's maximum, so the bound only
        falls as the walk goes on: once it is no higher than the best profit in
        hand, nothing further out in that direction can beat it. Returns False
        when the budget ran out first.
        """
        lo, hi = start_lo, start_hi
        down, up = lo >= lo_min, hi <= hi_max
        while down or up:
            if self.spent >= self.budget:
                return False
            if down:
                if lo < lo_min or bound_le(lo, self.best.profit):
                    down = False
                else:
                    consider(lo)
                    lo -= 1
            if up:
                if hi > hi_max or bound_le(hi, self.best.profit):
                    up = False
                else:
                    consider(hi)
                    hi += 1
        return True

    def result(self, exact: bool) -> RoundTrip:
        if self.best.profit <= 0:
            return _NONE
        b = self.best
        # attrs.evolve, written out (it costs ~2.5 us; this is on every deep-pool sizing)
        return b if exact else RoundTrip(b.amount_in, b.amount_mid, b.amount_out, b.profit, False)


def _refine_a(
    wa: int, xa: int, xb: int, wb: int, g1: int, g2: int, k: int, d: int, e: int, cap: int, a0: int, budget: int
) -> RoundTrip:
    """Walk integer inputs outward around ``a0``; bound ``F(a) = K a / (D + E a) - a``.

    The real maximiser lies in ``[a0, a0 + 2)`` (``isqrt`` and the floor lose
    less than one each), so the inputs ``a0 - 1 .. a0 + 2`` are tried outright
    and the walks start outside them, where ``F`` is monotone.
    """
    # The neighbourhood a0 - 1 .. a0 + 2, as _Search.consider_input would try it, without the
    # search object (it, four method calls and a RoundTrip per improvement cost ~2 us, on every
    # sizing); each input through the one _eval. Held equal to the _Search version by
    # tests/dex/test_dex_math.py.
    bi = bx = bw = bp = 0  # the best input, its mid amount, output and profit (none yet: 0)
    for a in range(a0 - 1, a0 + 3):
        if a < 1 or a > cap:
            continue
        r = _eval(a, wa, xa, xb, wb, g1, g2)
        if r is None:
            continue
        x, w, p = r
        if p > bp or (p == bp and bi and a < bi):
            bi, bx, bw, bp = a, x, w, p

    def bound_le(a: int, best: int) -> bool:
        # K a / (D + E a) - a <= best  <=>  K a <= (best + a)(D + E a)
        return k * a <= (best + a) * (d + e * a)

    # The upward walk stops at the first input whose bound F is no higher than
    # the best integer profit in hand. Past the real top F falls at most by
    # K D E t^2 / (D + E a0)^3 over a distance t (|F''|/2 is largest at a0), so
    # if F(a0) - best exceeds that for t = budget + 3, F is still above best
    # where the budget runs out: the walk is hopeless (a deep pool's flat top).
    # Then skip it and return the best of the neighbourhood, flagged inexact
    # (within a couple of wei of the optimum), as the exhausted walk would have
    # been too, without spending the whole budget on the hot path.
    t = budget + 3
    near = d + e * a0
    # F(a0) - best = gap_num / near, exactly (a rational; often a fraction of a wei)
    gap_num = k * a0 - (a0 + bp) * near
    if a0 + t <= cap and gap_num > 0 and gap_num * near * near > k * d * e * t * t:
        return RoundTrip(bi, bx, bw, bp, False) if bp > 0 else _NONE  # _Search.result(False)
    s = _Search(wa, xa, xb, wb, g1, g2, cap, budget)
    s.spent = 4  # the four inputs tried above
    if bp > 0:
        s.best = RoundTrip(bi, bx, bw, bp, True)
    exact = s.walk(a0 - 2, a0 + 3, 1, cap, bound_le, s.consider_input)
    return s.result(exact)


def _refine_x(wa: int, xa: int, xb: int, wb: int, g1: int, g2: int, cap: int, a0: int, budget: int) -> RoundTrip:
    """Walk middle amounts ``x`` outward; the best input for an ``x`` is its smallest.

    Every integer input ``a`` buys some ``x``, and the smallest input buying
    that ``x`` does at least as well, so searching ``x`` covers every input.
    Bound: ``P(x) = out_B(x) - minIn_A(x) <= U(x) = g(x) - h(x)`` with the
    real-valued ``g(x) = g2 x Wb / (Xb 1e4 + g2 x)`` and
    ``h(x) = 1e4 Wa x / (g1 (Xa - x))``; ``U`` is concave, and its maximiser
    lies within three units above the ``x`` that ``a0`` buys (used when an
    input wei buys at most about one unit of X).
    """
    s = _Search(wa, xa, xb, wb, g1, g2, cap, budget)
    x_cap = min(_out(cap, wa, xa, g1), xa - 1)
    if x_cap <= 0:
        return _NONE

    def consider_x(x: int) -> None:
        a = _min_input_for(x, wa, xa, g1)
        if a is None:
            s.spent += 1
            return
        s.consider_input(a)

    def bound_le(x: int, best: int) -> bool:
        # g(x) - h(x) <= best with g = gn/gd, h = hn/hd (gd, hd > 0)
        gn, gd = g2 * x * wb, xb * _BPS + g2 * x
        hn, hd = _BPS * wa * x, g1 * (xa - x)
        return gn * hd - hn * gd <= best * gd * hd

    x0 = _out(a0, wa, xa, g1)
    for x in range(max(1, x0 - 1), min(x0 + 4, x_cap + 1)):
        consider_x(x)
    exact = s.walk(x0 - 2, x0 + 4, 1, x_cap, bound_le, consider_x)
    return s.result(exact)
