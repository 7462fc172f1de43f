"""Uniswap V3 swap math, integer only, mirroring v3-core 1.0.1 to the wei.

Every function here follows the Solidity in ``@uniswap/v3-core/contracts``
(``TickMath``, ``FullMath``, ``SqrtPriceMath``, ``SwapMath``, ``TickBitmap``)
and ``UniswapV3Pool.swap``, step by step, because a V3 quote is only right
when it rounds where the contract rounds: the pool stops a swap step at every
initialised tick *and* at every tick-bitmap word boundary, and each step
rounds on its own. A quote that walked straight from tick to tick would be
off by a few wei per skipped word boundary, which is enough to make a
"to the wei" prediction wrong.

Where the contract reverts (a ``require``, a checked cast, an overflow) this
module raises :class:`V3MathError`; callers that size trades treat that as
"no quote", never as zero. Where the contract's behaviour depends on ticks
the caller has not fetched, :class:`TicksNotLoaded` is raised: a stale or
partial snapshot never yields a quote computed as if the missing ticks were
empty.

Why Python ints and no floats: Python's integers are arbitrary precision, so
``a * b // d`` *is* ``FullMath.mulDiv`` (512-bit intermediate); the uint256
bound on the result is checked explicitly where the contract would revert.
"""

from __future__ import annotations

import bisect
import enum
import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import NamedTuple

import attrs

from .._errors import AetherError

__all__ = [
    "FEE_TIERS",
    "MAX_SQRT_RATIO",
    "MAX_TICK",
    "MIN_SQRT_RATIO",
    "MIN_TICK",
    "Q96",
    "FeeTier",
    "SwapResult",
    "TickTable",
    "TicksNotLoaded",
    "V3MathError",
    "compute_swap_step",
    "get_amount0_delta",
    "get_amount1_delta",
    "get_next_sqrt_price_from_input",
    "get_next_sqrt_price_from_output",
    "get_sqrt_ratio_at_tick",
    "get_tick_at_sqrt_ratio",
    "liquidity_net_from_positions",
    "mul_div",
    "mul_div_rounding_up",
    "swap",
    "tick_spacing",
]

MIN_TICK = -887272
MAX_TICK = 887272
MIN_SQRT_RATIO = 4295128739
MAX_SQRT_RATIO = 1461446703485210103287273052203988822378723970342
Q96 = 1 << 96
UINT128_MAX = (1 << 128) - 1
UINT160_MAX = (1 << 160) - 1
UINT256_MAX = (1 << 256) - 1
INT256_MAX = (1 << 255) - 1
INT256_MIN = -(1 << 255)
_FEE_DENOM = 1_000_000
_TICKS_PER_LOG = 2 / math.log(1.0001)  # ticks per natural log of the sqrt price


class FeeTier(enum.IntEnum):
    """The four fee tiers of the canonical factory, in pips (hundredths of a bp)."""

    LOWEST = 100
    LOW = 500
    MEDIUM = 3000
    HIGH = 10000


# fee (pips) -> tick spacing, as UniswapV3Factory enables them (100 is enabled by the owner).
FEE_TIERS: Mapping[int, int] = {FeeTier.LOWEST: 1, FeeTier.LOW: 10, FeeTier.MEDIUM: 60, FeeTier.HIGH: 200}


def tick_spacing(fee: int) -> int:
    """The tick spacing of fee tier ``fee`` (pips).

    Raises:
        ValueError: ``fee`` is not one of 100, 500, 3000, 10000.
    """
    try:
        return FEE_TIERS[fee]
    except KeyError:
        raise ValueError(f"unknown V3 fee tier {fee!r}; expected one of {sorted(FEE_TIERS)}") from None


class V3MathError(AetherError, ArithmeticError):
    """The V3 contract would revert on these inputs (a ``require`` or an overflow).

    The caller asked for something the real pool refuses; the quote does not exist.
    """


class TicksNotLoaded(V3MathError):
    """The swap would read a tick-bitmap word that the snapshot does not hold.

    The snapshot (the caller's fetch) is too narrow for this swap; quoting on
    would treat unknown ticks as empty and could be wrong, so there is no quote.
    """


# --------------------------------------------------------------------------- FullMath


def mul_div(a: int, b: int, denominator: int) -> int:
    """``FullMath.mulDiv``: floor(a*b/denominator) with a 512-bit intermediate.

    Raises:
        V3MathError: ``denominator`` is 0 or the result exceeds uint256.
    """
    if denominator <= 0:
        raise V3MathError("mulDiv: zero denominator")
    r = a * b // denominator
    if r > UINT256_MAX:
        raise V3MathError("mulDiv: result overflows uint256")
    return r


def mul_div_rounding_up(a: int, b: int, denominator: int) -> int:
    """``FullMath.mulDivRoundingUp``: ceil(a*b/denominator).

    Raises:
        V3MathError: ``denominator`` is 0 or the result exceeds uint256.
    """
    if denominator <= 0:
        raise V3MathError("mulDivRoundingUp: zero denominator")
    r = -(-(a * b) // denominator)
    if r > UINT256_MAX:
        raise V3MathError("mulDivRoundingUp: result overflows uint256")
    return r


def _div_rounding_up(x: int, y: int) -> int:
    # UnsafeMath.divRoundingUp: y == 0 yields 0 in the EVM (no revert); callers never pass 0.
    return -(-x // y) if y else 0


# --------------------------------------------------------------------------- TickMath

_TICK_FACTORS = (
    (0x2, 0xFFF97272373D413259A46990580E213A),
    (0x4, 0xFFF2E50F5F656932EF12357CF3C7FDCC),
    (0x8, 0xFFE5CACA7E10E4E61C3624EAA0941CD0),
    (0x10, 0xFFCB9843D60F6159C9DB58835C926644),
    (0x20, 0xFF973B41FA98C081472E6896DFB254C0),
    (0x40, 0xFF2EA16466C96A3843EC78B326B52861),
    (0x80, 0xFE5DEE046A99A2A811C461F1969C3053),
    (0x100, 0xFCBE86C7900A88AEDCFFC83B479AA3A4),
    (0x200, 0xF987A7253AC413176F2B074CF7815E54),
    (0x400, 0xF3392B0822B70005940C7A398E4B70F3),
    (0x800, 0xE7159475A2C29B7443B29C7FA6E889D9),
    (0x1000, 0xD097F3BDFD2022B8845AD8F792AA5825),
    (0x2000, 0xA9F746462D870FDF8A65DC1F90E061E5),
    (0x4000, 0x70D869A156D2A1B890BB3DF62BAF32F7),
    (0x8000, 0x31BE135F97D08FD981231505542FCFA6),
    (0x10000, 0x9AA508B5B7A84E1C677DE54F3E99BC9),
    (0x20000, 0x5D6AF8DEDB81196699C329225EE604),
    (0x40000, 0x2216E584F5FA1EA926041BEDFE98),
    (0x80000, 0x48A170391F7DC42444E8FA2),
)


@lru_cache(maxsize=65536)
def get_sqrt_ratio_at_tick(tick: int) -> int:
    """``TickMath.getSqrtRatioAtTick``: sqrt(1.0001^tick) as a Q64.96, rounded up.

    Cached: a swap evaluates it at every step boundary, and the boundaries of a
    pool repeat from quote to quote.

    Raises:
        V3MathError: ``|tick|`` > MAX_TICK (the contract's ``require(.., 'T')``).
    """
    abs_tick = -tick if tick < 0 else tick
    if abs_tick > MAX_TICK:
        raise V3MathError(f"getSqrtRatioAtTick: tick {tick} out of range")
    ratio = 0xFFFCB933BD6FAD37AA2D162D1A594001 if abs_tick & 0x1 else 0x100000000000000000000000000000000
    for bit, factor in _TICK_FACTORS:
        if abs_tick & bit:
            ratio = (ratio * factor) >> 128
    if tick > 0:
        ratio = UINT256_MAX // ratio
    return (ratio >> 32) + (1 if ratio & 0xFFFFFFFF else 0)


def get_tick_at_sqrt_ratio(sqrt_price_x96: int) -> int:
    """``TickMath.getTickAtSqrtRatio``: the greatest tick whose ratio is <= the price.

    The contract's result is defined exactly (its log2 approximation is only
    a way to bracket it, then checked against ``getSqrtRatioAtTick``). Here a
    float logarithm brackets it and the integer ``getSqrtRatioAtTick`` decides,
    so the answer is the same integer (a test holds it equal to the bit-exact
    port, :func:`get_tick_at_sqrt_ratio_reference`); the float only says
    where to look, never what the answer is.

    Raises:
        V3MathError: the price is outside [MIN_SQRT_RATIO, MAX_SQRT_RATIO).
    """
    if not (MIN_SQRT_RATIO <= sqrt_price_x96 < MAX_SQRT_RATIO):
        raise V3MathError(f"getTickAtSqrtRatio: price {sqrt_price_x96} out of range")
    t = math.floor(math.log(sqrt_price_x96 / Q96) * _TICKS_PER_LOG)
    t = min(max(t, MIN_TICK), MAX_TICK - 1)
    while get_sqrt_ratio_at_tick(t) > sqrt_price_x96:
        t -= 1
    while t < MAX_TICK - 1 and get_sqrt_ratio_at_tick(t + 1) <= sqrt_price_x96:
        t += 1
    return t


def get_tick_at_sqrt_ratio_reference(sqrt_price_x96: int) -> int:
    """``TickMath.getTickAtSqrtRatio`` bit for bit: the greatest tick whose ratio is <= the price.

    The reference :func:`get_tick_at_sqrt_ratio` is tested against (it is ~5x slower).

    The contract's log2 is a fixed-point approximation followed by a check
    against ``getSqrtRatioAtTick``; the result is defined as the exact floor,
    which this computes by the same bracket-and-check (the Solidity's two
    candidate ticks ``tickLow``/``tickHi``), with the log taken to the same
    14 fractional bits.

    Raises:
        V3MathError: the price is outside [MIN_SQRT_RATIO, MAX_SQRT_RATIO).
    """
    if not (MIN_SQRT_RATIO <= sqrt_price_x96 < MAX_SQRT_RATIO):
        raise V3MathError(f"getTickAtSqrtRatio: price {sqrt_price_x96} out of range")
    ratio = sqrt_price_x96 << 32
    msb = ratio.bit_length() - 1
    r = ratio >> (msb - 127) if msb >= 128 else ratio << (127 - msb)
    log_2 = (msb - 128) << 64
    for shift in range(63, 49, -1):
        r = (r * r) >> 127
        f = r >> 128
        log_2 |= f << shift
        r >>= f
    log_sqrt10001 = log_2 * 255738958999603826347141
    tick_low = (log_sqrt10001 - 3402992956809132418596140100660247210) >> 128
    tick_hi = (log_sqrt10001 + 291339464771989622907027621153398088495) >> 128
    if tick_low == tick_hi:
        return tick_low
    return tick_hi if get_sqrt_ratio_at_tick(tick_hi) <= sqrt_price_x96 else tick_low


# --------------------------------------------------------------------------- SqrtPriceMath


def _next_sqrt_from_amount0_rounding_up(sqrt_p: int, liquidity: int, amount: int, add: bool) -> int:
    if amount == 0:
        return sqrt_p
    numerator1 = liquidity << 96
    product = amount * sqrt_p
    if add:
        if product <= UINT256_MAX:  # the contract's overflow check on amount * sqrtP
            denominator = numerator1 + product
            if denominator <= UINT256_MAX:
                return mul_div_rounding_up(numerator1, sqrt_p, denominator) & UINT160_MAX
        d = numerator1 // sqrt_p + amount
        if d > UINT256_MAX:
            raise V3MathError("getNextSqrtPriceFromAmount0RoundingUp: overflow")
        return _div_rounding_up(numerator1, d) & UINT160_MAX
    if product > UINT256_MAX or numerator1 <= product:
        raise V3MathError("getNextSqrtPriceFromAmount0RoundingUp: output exceeds reserves")
    out = mul_div_rounding_up(numerator1, sqrt_p, numerator1 - product)
    if out > UINT160_MAX:
        raise V3MathError("getNextSqrtPriceFromAmount0RoundingUp: uint160 overflow")
    return out


def _next_sqrt_from_amount1_rounding_down(sqrt_p: int, liquidity: int, amount: int, add: bool) -> int:
    if add:
        quotient = (amount << 96) // liquidity if amount <= UINT160_MAX else mul_div(amount, Q96, liquidity)
        out = sqrt_p + quotient
        if out > UINT160_MAX:
            raise V3MathError("getNextSqrtPriceFromAmount1RoundingDown: uint160 overflow")
        return out
    if amount <= UINT160_MAX:
        quotient = _div_rounding_up(amount << 96, liquidity)
    else:
        quotient = mul_div_rounding_up(amount, Q96, liquidity)
    if sqrt_p <= quotient:
        raise V3MathError("getNextSqrtPriceFromAmount1RoundingDown: output exceeds reserves")
    return sqrt_p - quotient


def get_next_sqrt_price_from_input(sqrt_p: int, liquidity: int, amount_in: int, zero_for_one: bool) -> int:
    """``SqrtPriceMath.getNextSqrtPriceFromInput`` (rounds so the pool never gives too much).

    Raises:
        V3MathError: zero price or liquidity, or an overflow the contract reverts on.
    """
    if sqrt_p <= 0 or liquidity <= 0:
        raise V3MathError("getNextSqrtPriceFromInput: zero price or liquidity")
    if zero_for_one:
        return _next_sqrt_from_amount0_rounding_up(sqrt_p, liquidity, amount_in, True)
    return _next_sqrt_from_amount1_rounding_down(sqrt_p, liquidity, amount_in, True)


def get_next_sqrt_price_from_output(sqrt_p: int, liquidity: int, amount_out: int, zero_for_one: bool) -> int:
    """``SqrtPriceMath.getNextSqrtPriceFromOutput``.

    Raises:
        V3MathError: zero price or liquidity, or the output exceeds what the range holds.
    """
    if sqrt_p <= 0 or liquidity <= 0:
        raise V3MathError("getNextSqrtPriceFromOutput: zero price or liquidity")
    if zero_for_one:
        return _next_sqrt_from_amount1_rounding_down(sqrt_p, liquidity, amount_out, False)
    return _next_sqrt_from_amount0_rounding_up(sqrt_p, liquidity, amount_out, False)


def get_amount0_delta(sqrt_a: int, sqrt_b: int, liquidity: int, round_up: bool) -> int:
    """``SqrtPriceMath.getAmount0Delta`` (unsigned): token0 between two prices.

    Raises:
        V3MathError: the lower price is 0.
    """
    if sqrt_a > sqrt_b:
        sqrt_a, sqrt_b = sqrt_b, sqrt_a
    if sqrt_a <= 0:
        raise V3MathError("getAmount0Delta: zero price")
    numerator1 = liquidity << 96
    numerator2 = sqrt_b - sqrt_a
    if round_up:
        return _div_rounding_up(mul_div_rounding_up(numerator1, numerator2, sqrt_b), sqrt_a)
    return mul_div(numerator1, numerator2, sqrt_b) // sqrt_a


def get_amount1_delta(sqrt_a: int, sqrt_b: int, liquidity: int, round_up: bool) -> int:
    """``SqrtPriceMath.getAmount1Delta`` (unsigned): token1 between two prices."""
    if sqrt_a > sqrt_b:
        sqrt_a, sqrt_b = sqrt_b, sqrt_a
    if round_up:
        return mul_div_rounding_up(liquidity, sqrt_b - sqrt_a, Q96)
    return mul_div(liquidity, sqrt_b - sqrt_a, Q96)


# --------------------------------------------------------------------------- SwapMath


def compute_swap_step(
    sqrt_current: int, sqrt_target: int, liquidity: int, amount_remaining: int, fee_pips: int
) -> tuple[int, int, int, int]:
    """``SwapMath.computeSwapStep``: one step of a swap within one liquidity range.

    Args:
        amount_remaining: > 0 exact input left, < 0 exact output left (int256).

    Returns:
        ``(sqrt_next, amount_in, amount_out, fee_amount)``.
    """
    zero_for_one = sqrt_current >= sqrt_target
    exact_in = amount_remaining >= 0
    amount_in = amount_out = 0
    if exact_in:
        less_fee = mul_div(amount_remaining, _FEE_DENOM - fee_pips, _FEE_DENOM)
        if zero_for_one:
            amount_in = get_amount0_delta(sqrt_target, sqrt_current, liquidity, True)
        else:
            amount_in = get_amount1_delta(sqrt_current, sqrt_target, liquidity, True)
        if less_fee >= amount_in:
            sqrt_next = sqrt_target
        else:
            sqrt_next = get_next_sqrt_price_from_input(sqrt_current, liquidity, less_fee, zero_for_one)
    else:
        if zero_for_one:
            amount_out = get_amount1_delta(sqrt_target, sqrt_current, liquidity, False)
        else:
            amount_out = get_amount0_delta(sqrt_current, sqrt_target, liquidity, False)
        if -amount_remaining >= amount_out:
            sqrt_next = sqrt_target
        else:
            sqrt_next = get_next_sqrt_price_from_output(sqrt_current, liquidity, -amount_remaining, zero_for_one)
    at_max = sqrt_target == sqrt_next
    if zero_for_one:
        if not (at_max and exact_in):
            amount_in = get_amount0_delta(sqrt_next, sqrt_current, liquidity, True)
        if not (at_max and not exact_in):
            amount_out = get_amount1_delta(sqrt_next, sqrt_current, liquidity, False)
    else:
        if not (at_max and exact_in):
            amount_in = get_amount1_delta(sqrt_current, sqrt_next, liquidity, True)
        if not (at_max and not exact_in):
            amount_out = get_amount0_delta(sqrt_current, sqrt_next, liquidity, False)
    if not exact_in and amount_out > -amount_remaining:
        amount_out = -amount_remaining
    if exact_in and sqrt_next != sqrt_target:
        fee_amount = amount_remaining - amount_in
    else:
        fee_amount = mul_div_rounding_up(amount_in, fee_pips, _FEE_DENOM - fee_pips)
    return sqrt_next, amount_in, amount_out, fee_amount


# --------------------------------------------------------------------------- ticks


@attrs.frozen
class TickTable:
    """The initialised ticks a snapshot knows, and which bitmap words it covers.

    ``ticks`` holds every initialised tick (sorted) whose bitmap word lies in
    ``[word_lo, word_hi]``; outside that range nothing is known, and a swap
    that needs it raises :class:`TicksNotLoaded`. ``liquidity_net[t]`` is
    ``ticks(t).liquidityNet`` (int128).
    """

    spacing: int
    ticks: tuple[int, ...]
    liquidity_net: Mapping[int, int]
    word_lo: int
    word_hi: int
    #: ``(price, liquidity, tick, lte) -> (next tick, initialized, its sqrt ratio, input to reach it)``,
    #: filled by the exact-in swap: a sizing quotes the same state thousands of times, and every
    #: quote starts with the same step. A function of the key and the frozen fields above, so it
    #: never goes stale; bounded (cleared at :data:`_NEXT_CACHE_MAX` entries); outside equality.
    _next_cache: dict[tuple[int, int, int, bool], tuple[int, bool, int, int]] = attrs.field(
        init=False, factory=dict, eq=False, repr=False
    )

    @classmethod
    def build(cls, spacing: int, liquidity_net: Mapping[int, int], word_lo: int, word_hi: int) -> TickTable:
        """A table from ``{tick: liquidityNet}`` covering words ``word_lo..word_hi``.

        Raises:
            ValueError: a tick is not on the spacing, or lies outside the covered words.
        """
        for t in liquidity_net:
            if t % spacing:
                raise ValueError(f"tick {t} is not a multiple of the spacing {spacing}")
            w = (t // spacing) >> 8
            if not word_lo <= w <= word_hi:
                raise ValueError(f"tick {t} lies in word {w}, outside the covered words {word_lo}..{word_hi}")
        return cls(spacing, tuple(sorted(liquidity_net)), dict(liquidity_net), word_lo, word_hi)

    def covers(self, tick: int) -> bool:
        """Whether the word holding ``tick`` (compressed) is in this snapshot."""
        return self.word_lo <= ((tick // self.spacing) >> 8) <= self.word_hi

    def next_initialized_tick_within_one_word(self, tick: int, lte: bool) -> tuple[int, bool]:
        """``TickBitmap.nextInitializedTickWithinOneWord``, on the snapshot.

        Raises:
            TicksNotLoaded: the word it would read is not in the snapshot.
        """
        spacing = self.spacing
        compressed = tick // spacing  # floor division == the contract's "round towards -inf"
        if lte:
            word = compressed >> 8
            if not self.word_lo <= word <= self.word_hi:
                raise TicksNotLoaded(f"tick bitmap word {word} is not in the snapshot")
            bit = compressed & 0xFF
            # greatest initialised tick t with (word << 8) <= t/spacing <= compressed
            i = bisect.bisect_right(self.ticks, compressed * spacing) - 1
            if i >= 0 and self.ticks[i] >= (word << 8) * spacing:
                return self.ticks[i], True
            return (compressed - bit) * spacing, False
        c1 = compressed + 1
        word = c1 >> 8
        if not self.word_lo <= word <= self.word_hi:
            raise TicksNotLoaded(f"tick bitmap word {word} is not in the snapshot")
        bit = c1 & 0xFF
        i = bisect.bisect_left(self.ticks, c1 * spacing)
        if i < len(self.ticks) and self.ticks[i] <= ((word << 8) + 255) * spacing:
            return self.ticks[i], True
        return (c1 + 255 - bit) * spacing, False


# --------------------------------------------------------------------------- swap


class SwapResult(NamedTuple):
    """What ``UniswapV3Pool.swap`` would return and leave behind.

    ``amount0``/``amount1`` are the pool's deltas (positive: the pool receives).
    A NamedTuple rather than a frozen attrs class: one is built per quote, and
    the frozen ``__init__`` cost a sixth of a no-cross quote.
    """

    amount0: int
    amount1: int
    sqrt_price_x96: int
    tick: int
    liquidity: int
    ticks_crossed: int  # initialised ticks crossed (liquidityNet applied); QuoterV2's count is an estimate
    steps: int


def swap(
    *,
    sqrt_price_x96: int,
    tick: int,
    liquidity: int,
    fee: int,
    ticks: TickTable,
    zero_for_one: bool,
    amount_specified: int,
    sqrt_price_limit_x96: int | None = None,
) -> SwapResult:
    """``UniswapV3Pool.swap`` on a snapshot, without fees-growth/oracle bookkeeping.

    Args:
        amount_specified: > 0 exact input, < 0 exact output (int256).
        sqrt_price_limit_x96: the contract's limit; ``None`` means the widest
            legal one (MIN_SQRT_RATIO + 1 / MAX_SQRT_RATIO - 1), as routers pass.

    Raises:
        V3MathError: the pool would revert (zero amount, bad limit, overflow).
        TicksNotLoaded: the swap runs past the snapshot's ticks.
    """
    if amount_specified == 0:
        raise V3MathError("swap: amount is zero ('AS')")
    if not INT256_MIN <= amount_specified <= INT256_MAX:
        raise V3MathError("swap: amount overflows int256")
    if sqrt_price_limit_x96 is None:
        sqrt_price_limit_x96 = MIN_SQRT_RATIO + 1 if zero_for_one else MAX_SQRT_RATIO - 1
    if zero_for_one:
        if not (MIN_SQRT_RATIO < sqrt_price_limit_x96 < sqrt_price_x96):
            raise V3MathError("swap: price limit ('SPL')")
    elif not (sqrt_price_x96 < sqrt_price_limit_x96 < MAX_SQRT_RATIO):
        raise V3MathError("swap: price limit ('SPL')")
    if amount_specified < 0:
        return _swap_general(sqrt_price_x96, tick, liquidity, fee, ticks, zero_for_one, amount_specified,
                             sqrt_price_limit_x96)
    # Exact input: _swap_general's loop with every call of a step inlined (the quote a
    # sizing evaluates thousands of times). Only the work whose result is kept is done (a
    # step that stops short of its target leaves nothing remaining, its fee is the rest);
    # getAmount0/1Delta, getNextSqrtPriceFromInput and getTickAtSqrtRatio are written out on
    # locals. Every bound the contract checks is still checked where it can be reached: with
    # a uint128 liquidity and uint160 prices none of the inlined products leaves uint256 (so
    # mulDiv cannot revert), and the one input-dependent overflow (amount * sqrtP in the
    # amount0 price step) falls back to get_next_sqrt_price_from_input.
    # tests/dex/test_v3math_fastpath.py holds it equal to _swap_general on random pools.
    remaining = amount_specified
    calculated = 0
    price = sqrt_price_x96
    cur_tick = tick
    liq = liquidity
    crossed = 0
    steps = 0
    cache = ticks._next_cache
    fee_keep = _FEE_DENOM - fee
    while remaining != 0 and price != sqrt_price_limit_x96:
        steps += 1
        # The step's constants, cached per table: the next boundary (TickBitmap's
        # nextInitializedTickWithinOneWord on the snapshot), its price, and the input
        # that reaches it. Every quote of one state starts with the same step, and the
        # steps of a swap that reaches its boundaries repeat from quote to quote.
        key = (price, liq, cur_tick, zero_for_one)
        hit = cache.get(key)
        if hit is None:
            hit = _step_constants(ticks, price, liq, cur_tick, zero_for_one)
            if len(cache) >= _NEXT_CACHE_MAX:
                cache.clear()
            cache[key] = hit
        tick_next, initialized, sqrt_next, to_target = hit
        less_fee = remaining * fee_keep // _FEE_DENOM
        if zero_for_one:
            if sqrt_next < sqrt_price_limit_x96:  # the limit comes first: the input to reach it
                target = sqrt_price_limit_x96
                to_target = get_amount0_delta(target, price, liq, True)
            else:
                target = sqrt_next
            if less_fee >= to_target:
                nxt = target
                remaining -= to_target + -(-(to_target * fee) // fee_keep)
            else:
                # getNextSqrtPriceFromAmount0RoundingUp(price, liq, less_fee, add)
                numerator1 = liq << 96
                product = less_fee * price
                if less_fee and product <= UINT256_MAX and numerator1 + product <= UINT256_MAX:
                    nxt = -(-(numerator1 * price) // (numerator1 + product)) & UINT160_MAX
                else:
                    nxt = get_next_sqrt_price_from_input(price, liq, less_fee, True)
                remaining = 0
            calculated -= (liq * (price - nxt)) >> 96  # getAmount1Delta(nxt, price, liq, roundDown)
        else:
            if sqrt_next > sqrt_price_limit_x96:
                target = sqrt_price_limit_x96
                to_target = -((-(liq * (target - price))) >> 96)  # getAmount1Delta(price, target, liq, roundUp)
            else:
                target = sqrt_next
            if less_fee >= to_target:
                nxt = target
                remaining -= to_target + -(-(to_target * fee) // fee_keep)
            else:
                # getNextSqrtPriceFromAmount1RoundingDown(price, liq, less_fee, add)
                if less_fee <= UINT160_MAX and liq > 0:
                    nxt = price + (less_fee << 96) // liq
                    if nxt > UINT160_MAX:
                        raise V3MathError("getNextSqrtPriceFromAmount1RoundingDown: uint160 overflow")
                else:
                    nxt = get_next_sqrt_price_from_input(price, liq, less_fee, False)
                remaining = 0
            calculated -= ((liq << 96) * (nxt - price) // nxt) // price  # getAmount0Delta(price, nxt, roundDown)
        if calculated < INT256_MIN:
            raise V3MathError("swap: amount overflows int256")
        if nxt == sqrt_next:
            if initialized:
                net = ticks.liquidity_net[tick_next]
                liq += -net if zero_for_one else net
                if not 0 <= liq <= UINT128_MAX:
                    raise V3MathError("swap: liquidity out of uint128 ('LS'/'LA')")
                crossed += 1
            cur_tick = tick_next - 1 if zero_for_one else tick_next
        elif nxt != price:
            # getTickAtSqrtRatio(nxt), inlined: nxt lies between two legal prices. The float
            # only brackets the answer; the integer getSqrtRatioAtTick decides it.
            t = math.floor((math.log(float(nxt)) - _LOG_Q96) * _TICKS_PER_LOG)
            if t < MIN_TICK:
                t = MIN_TICK
            elif t > MAX_TICK - 1:
                t = MAX_TICK - 1
            if get_sqrt_ratio_at_tick(t) > nxt:
                t -= 1
                while get_sqrt_ratio_at_tick(t) > nxt:
                    t -= 1
            else:
                while t < MAX_TICK - 1 and get_sqrt_ratio_at_tick(t + 1) <= nxt:
                    t += 1
            cur_tick = t
        price = nxt
    if zero_for_one:
        return _new_result(SwapResult, (amount_specified - remaining, calculated, price, cur_tick, liq, crossed, steps))
    return _new_result(SwapResult, (calculated, amount_specified - remaining, price, cur_tick, liq, crossed, steps))




def _swap_general(
    sqrt_price_x96: int,
    tick: int,
    liquidity: int,
    fee: int,
    ticks: TickTable,
    zero_for_one: bool,
    amount_specified: int,
    sqrt_price_limit_x96: int,
) -> SwapResult:
    """The swap loop step by step through :func:`compute_swap_step`, as the contract runs it.

    Exact output always comes here; exact input goes to :func:`_swap_exact_in`, and
    ``tests/test_v3math.py`` holds the two equal on random pools (this one is the
    plain transcription of ``UniswapV3Pool.swap``, the other its inlined twin).
    Arguments are already checked by :func:`swap`.
    """
    exact_input = amount_specified > 0
    remaining = amount_specified
    calculated = 0
    price = sqrt_price_x96
    cur_tick = tick
    liq = liquidity
    crossed = 0
    steps = 0
    while remaining != 0 and price != sqrt_price_limit_x96:
        steps += 1
        start = price
        tick_next, initialized = ticks.next_initialized_tick_within_one_word(cur_tick, zero_for_one)
        if tick_next < MIN_TICK:
            tick_next = MIN_TICK
        elif tick_next > MAX_TICK:
            tick_next = MAX_TICK
        sqrt_next = get_sqrt_ratio_at_tick(tick_next)
        if zero_for_one:
            target = sqrt_price_limit_x96 if sqrt_next < sqrt_price_limit_x96 else sqrt_next
        else:
            target = sqrt_price_limit_x96 if sqrt_next > sqrt_price_limit_x96 else sqrt_next
        price, amount_in, amount_out, fee_amount = compute_swap_step(price, target, liq, remaining, fee)
        if exact_input:
            remaining -= amount_in + fee_amount
            calculated -= amount_out
        else:
            remaining += amount_out
            calculated += amount_in + fee_amount
        if not INT256_MIN <= calculated <= INT256_MAX:
            raise V3MathError("swap: amount overflows int256")
        if price == sqrt_next:
            if initialized:
                net = ticks.liquidity_net[tick_next]
                liq += -net if zero_for_one else net
                if not 0 <= liq <= UINT128_MAX:
                    raise V3MathError("swap: liquidity out of uint128 ('LS'/'LA')")
                crossed += 1
            cur_tick = tick_next - 1 if zero_for_one else tick_next
        elif price != start:
            cur_tick = get_tick_at_sqrt_ratio(price)
    if zero_for_one == exact_input:
        amount0, amount1 = amount_specified - remaining, calculated
    else:
        amount0, amount1 = calculated, amount_specified - remaining
    return SwapResult(amount0, amount1, price, cur_tick, liq, crossed, steps)


_NEXT_CACHE_MAX = 256  # entries per table: a few sizings of one state; ~60 kB at most
_LOG_Q96 = math.log(Q96)


def _step_constants(ticks: TickTable, price: int, liq: int, tick: int, lte: bool) -> tuple[int, bool, int, int]:
    """One swap step's constants from ``price``/``liq``/``tick``: the next boundary (tick,
    initialized, sqrt ratio, clamped to the tick range) and the input (rounded up,
    before the fee) that moves the price to it (``getAmount0/1Delta``).

    :meth:`TickTable.next_initialized_tick_within_one_word` and the amount deltas,
    inlined (a cold quote pays for this once per step).

    Raises:
        TicksNotLoaded: the bitmap word it would read is not in the snapshot.
    """
    spacing = ticks.spacing
    tick_list = ticks.ticks
    compressed = tick // spacing
    if lte:
        word = compressed >> 8
        if not ticks.word_lo <= word <= ticks.word_hi:
            raise TicksNotLoaded(f"tick bitmap word {word} is not in the snapshot")
        i = bisect.bisect_right(tick_list, compressed * spacing) - 1
        if i >= 0 and tick_list[i] >= (word << 8) * spacing:
            tick_next, initialized = tick_list[i], True
        else:
            tick_next, initialized = (compressed - (compressed & 0xFF)) * spacing, False
        if tick_next < MIN_TICK:
            tick_next = MIN_TICK
        sqrt_next = get_sqrt_ratio_at_tick(tick_next)
        # getAmount0Delta(sqrt_next, price, liq, roundUp); liq<<96 * (price - sqrt_next) / price <= liq<<96: no overflow
        return tick_next, initialized, sqrt_next, -(-(-(-((liq << 96) * (price - sqrt_next)) // price)) // sqrt_next)
    c1 = compressed + 1
    word = c1 >> 8
    if not ticks.word_lo <= word <= ticks.word_hi:
        raise TicksNotLoaded(f"tick bitmap word {word} is not in the snapshot")
    i = bisect.bisect_left(tick_list, c1 * spacing)
    if i < len(tick_list) and tick_list[i] <= ((word << 8) + 255) * spacing:
        tick_next, initialized = tick_list[i], True
    else:
        tick_next, initialized = (c1 + 255 - (c1 & 0xFF)) * spacing, False
    if tick_next > MAX_TICK:
        tick_next = MAX_TICK
    sqrt_next = get_sqrt_ratio_at_tick(tick_next)
    return tick_next, initialized, sqrt_next, -((-(liq * (sqrt_next - price))) >> 96)  # getAmount1Delta(.., roundUp)


_new_result = tuple.__new__


def liquidity_net_from_positions(positions: Sequence[tuple[int, int, int]]) -> dict[int, int]:
    """``{tick: liquidityNet}`` of positions ``(tick_lower, tick_upper, liquidity)``.

    A tick whose nets cancel stays in the map with 0: the pool keeps it
    initialised (its liquidityGross is not 0), so a swap still stops there.
    """
    net: dict[int, int] = {}
    for lo, hi, liq in positions:
        net[lo] = net.get(lo, 0) + liq
        net[hi] = net.get(hi, 0) - liq
    return net
