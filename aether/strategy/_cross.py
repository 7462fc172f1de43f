"""Cross-venue cycle sizing: WETH -> token on venue A, token -> WETH on venue B.

Any pair of venues: a Uniswap V2 pair (:class:`V2Leg`) or one V3 pool at one
fee tier (:class:`V3Leg`), so V2/V2, V2/V3, V3/V2 and V3/V3 across fee tiers.
Pure: no I/O, integer only; the legs carry the state they quote.

How the optimum is found:

1. **Locate** on the real-valued curves. Each leg is piecewise constant
   product: a V2 pair is one piece; a V3 pool is one piece per range between
   consecutive step boundaries (initialised ticks, bitmap words), each with
   virtual reserves ``L/sqrtP`` and ``L*sqrtP`` and the fee on input. A
   swap's output is concave in its input (the marginal rate is the pool's
   price net of fee, and the price only worsens as the swap proceeds, also
   across ticks), so the cycle's profit ``B(A(a)) - a`` is concave and its
   first stationary point is the global maximum. Starting at ``a = 0`` the
   walk takes the current piece of each leg, solves the two-pool optimum in
   closed form (``a* = (sqrt(KD) - D) / E``, the V2 formula on virtual
   reserves), and stops if ``a*`` stays inside both pieces; otherwise it
   moves to the nearer boundary (of A in input space, of B in middle-amount
   space) and repeats. At most one iteration per boundary.
2. **Refine** on the exact integer curves: a pattern search (steps doubling
   out from the located point, halving back) on the exact profit
   ``B_int(A_int(a)) - a``, evaluated with the contracts' own rounding
   (:func:`aether.dex.get_amount_out`, :class:`aether.dex._v3curve.V3Curve`).

Proven or bounded: V2/V2 cycles are sized by :func:`aether.dex.best_round_trip`,
whose refinement proves optimality (``exact``). With a V3 leg the located point
is the real optimum and the integer profit never exceeds the real curve
(every rounding in both contracts favours the pool), so the integer optimum
lies where the real curve is within the rounding noise of its top; the pattern
search finds a local maximum of the integer curve there, but rounding makes the
integer curve only nearly concave, so it is not proven to be the global integer
optimum: such sizings are flagged ``exact=False`` (the shortfall is a few wei;
``tests/strategy/test_cross.py`` measures it against brute force).
"""

from __future__ import annotations

import enum
from math import isqrt
from typing import Protocol

import attrs

from ..dex._math import UINT112_MAX, _min_input_for, best_round_trip, get_amount_out
from ..dex._v3curve import V3Curve
from ..dex._v3pool import V3PoolState, V3Refusal

__all__ = ["CrossRefusal", "CycleSizing", "Leg", "V2Leg", "V3Leg", "size_cycle"]

_BPS = 10_000
_PIPS = 1_000_000
#: Exact profit evaluations the integer refinement may spend.
REFINE_BUDGET = 24


class CrossRefusal(enum.StrEnum):
    """Why a cycle has no sizing. Counted by the caller; never a number."""

    NO_GAP = "no_gap"  # the venues' prices, net of fees, leave no profit
    LEG_REFUSED = "leg_refused"  # a V3 leg cannot be quoted (see the leg's V3Refusal)
    OUT_OF_RANGE = "out_of_range"  # the optimum lies past a leg's fetched ticks
    NO_CAPITAL = "no_capital"  # cap <= 0


class Leg(Protocol):
    """One swap of a cycle, exact-input, in one direction."""

    venue: str

    @property
    def gain(self) -> tuple[int, int]:
        """The fee: (numerator, denominator) of the input the pool keeps working with."""
        ...

    def out(self, amount_in: int) -> int | None:
        """Exactly what the contract pays for ``amount_in`` (None: it would revert / no quote)."""
        ...

    def min_input_for(self, amount_out: int) -> int | None:
        """The smallest input whose exact output is at least ``amount_out`` (None: none)."""
        ...

    def reserves_at(self, amount_in: int) -> tuple[int, int, int | None] | None:
        """Virtual (reserve_in, reserve_out, end of the piece or None) after ``amount_in``."""
        ...


@attrs.define
class V2Leg:
    """A Uniswap V2 pair: ``reserve_in`` of the token paid, ``reserve_out`` of the token received."""

    reserve_in: int
    reserve_out: int
    fee_bps: int = 30
    venue: str = "v2"

    @property
    def gain(self) -> tuple[int, int]:
        return (_BPS - self.fee_bps, _BPS)

    def out(self, amount_in: int) -> int | None:
        if self.reserve_in + amount_in > UINT112_MAX:
            return None
        return get_amount_out(amount_in, self.reserve_in, self.reserve_out, self.fee_bps)

    def min_input_for(self, amount_out: int) -> int | None:
        a = _min_input_for(amount_out, self.reserve_in, self.reserve_out, _BPS - self.fee_bps)
        if a is None or self.reserve_in + a > UINT112_MAX:
            return None
        return a

    def reserves_at(self, amount_in: int) -> tuple[int, int, int | None] | None:
        if amount_in == 0:
            return self.reserve_in, self.reserve_out, None
        got = self.out(amount_in)
        if got is None or got >= self.reserve_out:
            return None
        # The V2 fee stays in the pool: the whole input joins the reserve.
        return self.reserve_in + amount_in, self.reserve_out - got, None


class V3Leg:
    """One V3 pool, swapped from ``token_in``; built once per pool state (the curve is precomputed)."""

    def __init__(self, state: V3PoolState, token_in: str, venue: str = "v3") -> None:
        if token_in not in (state.key.token0, state.key.token1):
            raise ValueError(f"token {token_in} is not in pool {state.key.address}")
        self.curve = V3Curve(state, token_in == state.key.token0)
        self.venue = venue
        self.gain = (_PIPS - state.key.fee, _PIPS)

    @property
    def refusal(self) -> V3Refusal | None:
        return self.curve.refusal

    def out(self, amount_in: int) -> int | None:
        return self.curve.out(amount_in)

    def min_input_for(self, amount_out: int) -> int | None:
        return self.curve.min_input_for(amount_out)

    def reserves_at(self, amount_in: int) -> tuple[int, int, int | None] | None:
        return self.curve.reserves_at(amount_in)


@attrs.frozen
class CycleSizing:
    """The sized cycle, or the reason there is none (``refusal`` set, amounts 0).

    ``exact`` is True only when optimality is proven (V2/V2); ``evaluations``
    counts exact profit evaluations, ``pieces`` the boundaries the locate step crossed.
    """

    amount_in: int
    amount_mid: int
    amount_out: int
    profit: int
    exact: bool
    refusal: CrossRefusal | None = None
    evaluations: int = 0
    pieces: int = 0


def _none(reason: CrossRefusal) -> CycleSizing:
    return CycleSizing(0, 0, 0, 0, False, reason)


def _inverse(y: int, r_in: int, r_out: int, g: int, big_g: int) -> int | None:
    """Smallest real-model input giving output ``y`` on a constant-product piece (ceil)."""
    if y >= r_out:
        return None
    return -(-(y * r_in * big_g) // (g * (r_out - y)))


def _locate(a_leg: Leg, b_leg: Leg, cap: int) -> tuple[int, int] | None:
    """The real-curve optimum (an integer input), or None when no input profits. Also the pieces crossed."""
    g1, big_g1 = a_leg.gain
    g2, big_g2 = b_leg.gain
    a = 0
    x = 0
    pieces = 0
    for _ in range(2 * 96 + 4):
        ra = a_leg.reserves_at(a)
        rb = b_leg.reserves_at(x)
        if ra is None or rb is None:
            return None if a == 0 else (a, pieces)
        in1, out1, end_a = ra
        in2, out2, end_b = rb
        k = g1 * g2 * out1 * out2
        d = big_g1 * big_g2 * in1 * in2
        e = g1 * (big_g2 * in2 + g2 * out1)
        if k <= d:
            return None if a == 0 else (a, pieces)
        t = (isqrt(k * d) - d) // e
        # how far this pair of pieces reaches, in input space
        t_lim = cap - a
        if end_a is not None:
            t_lim = min(t_lim, end_a - a)
        if end_b is not None:
            t_b = _inverse(end_b - x, in1, out1, g1, big_g1)
            if t_b is not None:
                t_lim = min(t_lim, t_b)
        if t < t_lim or t_lim <= 0:
            return max(1, min(a + max(t, 0), cap)), pieces
        a += t_lim
        mid = a_leg.out(a)
        if mid is None:
            return a, pieces  # the refinement will find what the exact curves allow
        x = mid
        pieces += 1
    return a, pieces


def size_cycle(a_leg: Leg, b_leg: Leg, *, cap: int = UINT112_MAX, budget: int = REFINE_BUDGET) -> CycleSizing:
    """Size WETH -> token on ``a_leg``, token -> WETH on ``b_leg``, within ``cap`` WETH.

    Returns the best integer input found with its exact mid amount, output and
    profit (see the module docstring for how and how exactly), or a refusal.
    """
    if cap <= 0:
        return _none(CrossRefusal.NO_CAPITAL)
    for leg in (a_leg, b_leg):
        if isinstance(leg, V3Leg) and leg.refusal is not None:
            return _none(CrossRefusal.LEG_REFUSED)
    if isinstance(a_leg, V2Leg) and isinstance(b_leg, V2Leg):
        rt = best_round_trip(
            a_leg.reserve_in, a_leg.reserve_out, b_leg.reserve_in, b_leg.reserve_out, a_leg.fee_bps, b_leg.fee_bps, cap
        )
        if rt.profit <= 0:
            return _none(CrossRefusal.NO_GAP)
        return CycleSizing(rt.amount_in, rt.amount_mid, rt.amount_out, rt.profit, rt.exact)

    located = _locate(a_leg, b_leg, cap)
    if located is None:
        return _none(CrossRefusal.NO_GAP)
    a0, pieces = located
    evaluations = 0
    cache: dict[int, tuple[int, int, int] | None] = {}

    mid0 = a_leg.out(a0)
    if mid0 is None:
        return attrs.evolve(_none(CrossRefusal.OUT_OF_RANGE), pieces=pieces)
    # Search over the coarser of the input and the middle amount: when a token unit
    # is worth many wei, the best input is the smallest that buys a given mid amount.
    by_mid = mid0 < a0

    def point(v: int) -> tuple[int, int, int] | None:
        """(amount_in, mid, out) of search point ``v`` (an input, or a mid amount)."""
        nonlocal evaluations
        if v in cache:
            return cache[v]
        evaluations += 1
        got: tuple[int, int, int] | None = None
        mid: int | None
        if by_mid:
            a = a_leg.min_input_for(v) if v > 0 else None
            mid = v
        else:
            a = v
            mid = a_leg.out(v) if v > 0 else None
        if a is not None and mid and 1 <= a <= cap:
            out = b_leg.out(mid)
            if out is not None:
                got = (a, mid, out)
        cache[v] = got
        return got

    def value(v: int) -> int | None:
        r = point(v)
        return None if r is None else r[2] - r[0]

    best = mid0 if by_mid else a0
    best_v = value(best)
    if best_v is None:
        return attrs.evolve(_none(CrossRefusal.OUT_OF_RANGE), evaluations=evaluations, pieces=pieces)
    # Pattern search: the step doubles while it improves and halves when it does not.
    step = 1
    while step >= 1 and evaluations < budget:
        moved = False
        for cand in (best + step, best - step):
            v = value(cand)
            if v is not None and v > best_v:
                best, best_v, moved = cand, v, True
                break
        step = step * 2 if moved else step // 2
    if best_v <= 0:
        return attrs.evolve(_none(CrossRefusal.NO_GAP), evaluations=evaluations, pieces=pieces)
    r = point(best)
    assert r is not None  # best_v came from it
    return CycleSizing(r[0], r[1], r[2], best_v, False, None, evaluations, pieces)
