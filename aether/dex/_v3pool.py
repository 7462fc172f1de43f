"""Uniswap V3 pool state: slot0, liquidity and the initialised ticks near the price.

A V3 quote needs more than two reserves: the current price and tick, the
active liquidity, and every initialised tick the swap may cross (with its
``liquidityNet``). :func:`fetch_pool_state` reads them at one block, in three
batched round trips (the block number; slot0, liquidity and the tick-bitmap
words around the price; ``ticks()`` of every set bit), and returns an immutable
:class:`V3PoolState` whose :class:`~aether.dex._v3math.TickTable` remembers
which bitmap words it holds. A swap that would walk past those words is
*no quote* (:class:`~aether.dex._v3math.TicksNotLoaded`), never a quote
computed as if the unknown ticks were empty.

A victim's simulated ``Swap`` event carries the pool's price, liquidity and
tick after the swap; :meth:`V3PoolState.after_swap_event` applies it without
a round trip (the initialised ticks do not change in a swap).

Pool addresses come from CREATE2 locally (:func:`v3_pool_address`), from the
factory, the pool init-code hash and the fee tier, never from the node.

Fail closed: every way a state can be unusable has a :class:`V3Refusal`
reason, and :func:`quote` returns it instead of a number: the strategy counts
the reason and makes no candidate.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, Protocol

import attrs
from eth_utils import keccak

from .._errors import BadNodeData, RpcError
from ..quantity import hex_quantity
from ._v3math import (
    MAX_SQRT_RATIO,
    MAX_TICK,
    MIN_SQRT_RATIO,
    MIN_TICK,
    UINT128_MAX,
    SwapResult,
    TickTable,
    TicksNotLoaded,
    V3MathError,
    get_sqrt_ratio_at_tick,
    swap,
    tick_spacing,
)

__all__ = [
    "SWAP_EVENT_TOPIC",
    "V3PoolBook",
    "V3PoolKey",
    "V3PoolState",
    "V3Quote",
    "V3Refusal",
    "fetch_pool_state",
    "fetch_pool_states",
    "quote",
    "v3_pool_address",
]

#: keccak("Swap(address,address,int256,int256,uint160,uint128,int24)")
SWAP_EVENT_TOPIC = "0x" + keccak(text="Swap(address,address,int256,int256,uint160,uint128,int24)").hex()
_SLOT0 = "0x3850c7bd"
_LIQUIDITY = "0x" + keccak(text="liquidity()")[:4].hex()
_TICK_BITMAP = keccak(text="tickBitmap(int16)")[:4]
_TICKS = keccak(text="ticks(int24)")[:4]
#: keccak("Mint(address,address,int24,int24,uint128,uint256,uint256)"): a pool's ticks changed.
MINT_EVENT_TOPIC = "0x" + keccak(text="Mint(address,address,int24,int24,uint128,uint256,uint256)").hex()
#: keccak("Burn(address,int24,int24,uint128,uint256,uint256)"): a pool's ticks changed.
BURN_EVENT_TOPIC = "0x" + keccak(text="Burn(address,int24,int24,uint128,uint256,uint256)").hex()
#: Bitmap words read on each side of the current one (5 words: 1,280 tick spacings).
DEFAULT_WORD_RADIUS = 2
_MAX_WORD_RADIUS = 16


class V3Refusal(enum.StrEnum):
    """Why a V3 pool gives no quote. Every one is counted, none is a number."""

    UNREADABLE = "unreadable"  # the node refused or garbled a read, or the pool was locked (mid-call state)
    NOT_INITIALIZED = "not_initialized"  # slot0 price is 0: the pool was never initialised
    ZERO_LIQUIDITY = "zero_liquidity"  # no active liquidity at the current price
    TICK_MISMATCH = "tick_mismatch"  # the tick does not belong to the price (corrupt state/event)
    TICKS_NOT_LOADED = "ticks_not_loaded"  # the swap leaves the fetched tick range
    OVERFLOW = "overflow"  # the contract would revert (overflow-sized amount, price limit)


def v3_pool_address(factory: str, token_a: str, token_b: str, fee: int, init_code_hash: str) -> str:
    """The pool address ``PoolAddress.computeAddress`` gives (lowercase 0x-hex, order-independent)."""
    t0, t1 = sorted((token_a.lower(), token_b.lower()))
    salt = keccak(bytes(12) + bytes.fromhex(t0[2:]) + bytes(12) + bytes.fromhex(t1[2:]) + fee.to_bytes(32, "big"))
    digest = keccak(b"\xff" + bytes.fromhex(factory[2:]) + salt + bytes.fromhex(init_code_hash[2:]))
    return "0x" + digest[12:].hex()


@attrs.frozen
class V3PoolKey:
    """What a V3 pool address stands for: its DEX, sorted tokens and fee tier."""

    address: str
    dex: str
    token0: str
    token1: str
    fee: int

    @property
    def spacing(self) -> int:
        return tick_spacing(self.fee)


@attrs.frozen
class V3PoolState:
    """One pool as of one block: enough to quote any swap that stays in ``ticks``."""

    key: V3PoolKey
    sqrt_price_x96: int
    tick: int
    liquidity: int
    ticks: TickTable
    block: int | None = None

    def refusal(self) -> V3Refusal | None:
        """Why this state cannot be quoted at all, or None.

        A price exactly on a tick boundary is legitimate and quoted exactly,
        because the pool itself keeps ``tick`` (from slot0 or a Swap event) and
        does not recompute it: after a zero-for-one swap that stops on tick
        ``t``'s price the pool's tick is ``t - 1``. Any other disagreement
        between tick and price is a corrupt state.
        """
        if self.sqrt_price_x96 == 0:
            return V3Refusal.NOT_INITIALIZED
        if not MIN_SQRT_RATIO <= self.sqrt_price_x96 < MAX_SQRT_RATIO:
            return V3Refusal.TICK_MISMATCH
        # tick == getTickAtSqrtRatio(price), or price sits exactly on tick + 1's boundary;
        # checked with two (cached) getSqrtRatioAtTick calls instead of the logarithm.
        if not MIN_TICK <= self.tick < MAX_TICK:
            return V3Refusal.TICK_MISMATCH
        if not get_sqrt_ratio_at_tick(self.tick) <= self.sqrt_price_x96 <= get_sqrt_ratio_at_tick(self.tick + 1):
            return V3Refusal.TICK_MISMATCH
        if self.liquidity == 0:
            return V3Refusal.ZERO_LIQUIDITY
        if not self.ticks.covers(self.tick):
            return V3Refusal.TICKS_NOT_LOADED
        return None

    def after_swap_event(self, data: bytes | str, *, block: int | None = None) -> V3PoolState:
        """The state after a ``Swap`` event of this pool (its non-indexed data).

        ``data`` is ``amount0, amount1, sqrtPriceX96, liquidity, tick`` (5 words).

        Raises:
            BadNodeData: the data is not 5 words, or a value is out of its type's range.
        """
        raw = bytes.fromhex(data[2:]) if isinstance(data, str) else data
        if len(raw) != 160:
            raise BadNodeData(f"V3 Swap event data is {len(raw)} bytes, expected 160")
        price = int.from_bytes(raw[64:96], "big")
        liquidity = int.from_bytes(raw[96:128], "big")
        tick = int.from_bytes(raw[128:160], "big", signed=True)
        if price >> 160 or liquidity > UINT128_MAX or not -(1 << 23) <= tick < (1 << 23):
            raise BadNodeData("V3 Swap event: a value is out of range for its Solidity type")
        return attrs.evolve(self, sqrt_price_x96=price, liquidity=liquidity, tick=tick, block=block)


@attrs.frozen
class V3Quote:
    """A quote, or the reason there is none (``result`` is None exactly when ``refusal`` is set)."""

    result: SwapResult | None
    refusal: V3Refusal | None = None

    @property
    def amount_out(self) -> int:
        """Tokens out of the pool (positive); 0 when refused."""
        if self.result is None:
            return 0
        return -min(self.result.amount0, self.result.amount1)


def quote(
    state: V3PoolState, zero_for_one: bool, amount_specified: int, sqrt_price_limit_x96: int | None = None
) -> V3Quote:
    """Quote a swap on ``state``; a refusal instead of a number whenever in doubt."""
    bad = state.refusal()
    if bad is not None:
        return V3Quote(None, bad)
    try:
        r = swap(
            sqrt_price_x96=state.sqrt_price_x96,
            tick=state.tick,
            liquidity=state.liquidity,
            fee=state.key.fee,
            ticks=state.ticks,
            zero_for_one=zero_for_one,
            amount_specified=amount_specified,
            sqrt_price_limit_x96=sqrt_price_limit_x96,
        )
    except TicksNotLoaded:
        return V3Quote(None, V3Refusal.TICKS_NOT_LOADED)
    except V3MathError:
        return V3Quote(None, V3Refusal.OVERFLOW)
    return V3Quote(r)


# --------------------------------------------------------------------------- reading from the node


class _Batcher(Protocol):
    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]: ...


def _word(result: Any, what: str) -> bytes:
    if isinstance(result, RpcError):
        raise BadNodeData(f"V3 pool read {what}: the node refused it: {result.message}") from result
    if not isinstance(result, str) or not result.startswith("0x"):
        raise BadNodeData(f"V3 pool read {what}: not hex data")
    try:
        raw = bytes.fromhex(result[2:])
    except ValueError as exc:
        raise BadNodeData(f"V3 pool read {what}: not hex data") from exc
    if len(raw) < 32:
        raise BadNodeData(f"V3 pool read {what}: {len(raw)} bytes, expected at least 32")
    return raw


def _eth_call(to: str, data: bytes | str, tag: str) -> tuple[str, list[Any]]:
    return ("eth_call", [{"to": to, "data": data if isinstance(data, str) else "0x" + data.hex()}, tag])


async def fetch_pool_state(
    rpc: _Batcher, key: V3PoolKey, *, block: int | None = None, word_radius: int = DEFAULT_WORD_RADIUS
) -> V3PoolState:
    """Read ``key``'s pool at one block: slot0, liquidity, bitmap words, initialised ticks.

    Args:
        block: the block to read at; None reads the current head (asked first,
            so that every read is at that same block).
        word_radius: bitmap words read on each side of the current one.

    Raises:
        BadNodeData: a read was refused or malformed, the pool is locked,
            or a tick the bitmap marks initialised is not initialised.
        ValueError: ``word_radius`` is out of 0..16.
    """
    if not 0 <= word_radius <= _MAX_WORD_RADIUS:
        raise ValueError(f"word_radius must be in 0..{_MAX_WORD_RADIUS}, not {word_radius}")
    if block is None:
        (head,) = await rpc.batch([("eth_blockNumber", [])])
        if isinstance(head, RpcError) or not isinstance(head, str):
            raise BadNodeData("V3 pool read: eth_blockNumber failed")
        block = hex_quantity(head)
    tag = hex(block)
    first = await rpc.batch([_eth_call(key.address, _SLOT0, tag), _eth_call(key.address, _LIQUIDITY, tag)])
    slot0 = _word(first[0], "slot0")
    if len(slot0) < 224:
        raise BadNodeData(f"V3 pool read slot0: {len(slot0)} bytes, expected 224")
    price = int.from_bytes(slot0[0:32], "big")
    tick = int.from_bytes(slot0[32:64], "big", signed=True)
    unlocked = int.from_bytes(slot0[192:224], "big")
    liquidity = int.from_bytes(_word(first[1], "liquidity")[:32], "big")
    if price >> 160 or liquidity > UINT128_MAX or not -(1 << 23) <= tick < (1 << 23):
        raise BadNodeData("V3 pool read: slot0/liquidity out of range for their types")
    if unlocked != 1:
        raise BadNodeData(f"V3 pool {key.address} is locked at block {block}")
    spacing = key.spacing
    centre = (tick // spacing) >> 8
    words = list(range(max(centre - word_radius, -(1 << 15)), min(centre + word_radius, (1 << 15) - 1) + 1))
    bitmaps = await rpc.batch(
        [_eth_call(key.address, _TICK_BITMAP + w.to_bytes(32, "big", signed=True), tag) for w in words]
    )
    initialised: list[int] = []
    for w, result in zip(words, bitmaps, strict=True):
        bits = int.from_bytes(_word(result, f"tickBitmap({w})")[:32], "big")
        while bits:
            low = bits & -bits
            initialised.append(((w << 8) + low.bit_length() - 1) * spacing)
            bits ^= low
    net: dict[int, int] = {}
    if initialised:
        infos = await rpc.batch(
            [_eth_call(key.address, _TICKS + t.to_bytes(32, "big", signed=True), tag) for t in initialised]
        )
        for t, result in zip(initialised, infos, strict=True):
            raw = _word(result, f"ticks({t})")
            if len(raw) < 256 or int.from_bytes(raw[224:256], "big") != 1:
                raise BadNodeData(f"V3 pool read ticks({t}): the bitmap says initialised, the tick says not")
            net[t] = int.from_bytes(raw[32:64], "big", signed=True)
    table = TickTable.build(spacing, net, words[0], words[-1])
    return V3PoolState(key, price, tick, liquidity, table, block)


async def fetch_pool_states(
    rpc: _Batcher, keys: Sequence[V3PoolKey], *, block: int, word_radius: int = DEFAULT_WORD_RADIUS
) -> dict[str, V3PoolState | V3Refusal]:
    """Read every pool of ``keys`` at ``block`` in three batched round trips, whatever their number.

    The same reads as :func:`fetch_pool_state` (slot0 and liquidity; the bitmap
    words around each price; ``ticks()`` of every set bit), one batch per stage
    for all pools together, so a head's refresh costs three round trips rather
    than three per pool. A pool whose reads fail (no code: never created; a
    refused or garbled answer; locked; a bitmap bit whose tick is not
    initialised) maps to :attr:`V3Refusal.UNREADABLE` and the others are unaffected.

    Raises:
        ValueError: ``word_radius`` is out of 0..16.
        NodeError: a whole batch failed (from the client).
    """
    if not 0 <= word_radius <= _MAX_WORD_RADIUS:
        raise ValueError(f"word_radius must be in 0..{_MAX_WORD_RADIUS}, not {word_radius}")
    tag = hex(block)
    out: dict[str, V3PoolState | V3Refusal] = {}
    keys = list({k.address: k for k in keys}.values())
    if not keys:
        return out
    first = await rpc.batch(
        [c for k in keys for c in (_eth_call(k.address, _SLOT0, tag), _eth_call(k.address, _LIQUIDITY, tag))]
    )
    heads: list[tuple[V3PoolKey, int, int, int, list[int]]] = []
    for i, key in enumerate(keys):
        try:
            slot0 = _word(first[2 * i], "slot0")
            if len(slot0) < 224:
                raise BadNodeData("slot0 too short")
            price = int.from_bytes(slot0[0:32], "big")
            tick = int.from_bytes(slot0[32:64], "big", signed=True)
            unlocked = int.from_bytes(slot0[192:224], "big")
            liquidity = int.from_bytes(_word(first[2 * i + 1], "liquidity")[:32], "big")
            if price >> 160 or liquidity > UINT128_MAX or not -(1 << 23) <= tick < (1 << 23) or unlocked != 1:
                raise BadNodeData("slot0/liquidity out of range, or locked")
        except BadNodeData:
            out[key.address] = V3Refusal.UNREADABLE
            continue
        centre = (tick // key.spacing) >> 8
        words = list(range(max(centre - word_radius, -(1 << 15)), min(centre + word_radius, (1 << 15) - 1) + 1))
        heads.append((key, price, tick, liquidity, words))
    bitmaps = await rpc.batch(
        [_eth_call(k.address, _TICK_BITMAP + w.to_bytes(32, "big", signed=True), tag) for k, *_, ws in heads for w in ws]
    ) if heads else []
    pos = 0
    wanted: list[tuple[V3PoolKey, int, int, int, list[int], list[int]]] = []
    for key, price, tick, liquidity, words in heads:
        initialised: list[int] = []
        try:
            for w, result in zip(words, bitmaps[pos: pos + len(words)], strict=True):
                bits = int.from_bytes(_word(result, f"tickBitmap({w})")[:32], "big")
                while bits:
                    low = bits & -bits
                    initialised.append(((w << 8) + low.bit_length() - 1) * key.spacing)
                    bits ^= low
        except BadNodeData:
            out[key.address] = V3Refusal.UNREADABLE
            continue
        finally:
            pos += len(words)
        wanted.append((key, price, tick, liquidity, words, initialised))
    calls = [_eth_call(k.address, _TICKS + t.to_bytes(32, "big", signed=True), tag) for k, *_, ts in wanted for t in ts]
    infos = await rpc.batch(calls) if calls else []
    pos = 0
    for key, price, tick, liquidity, words, initialised in wanted:
        net: dict[int, int] = {}
        try:
            for t, result in zip(initialised, infos[pos: pos + len(initialised)], strict=True):
                raw = _word(result, f"ticks({t})")
                if len(raw) < 256 or int.from_bytes(raw[224:256], "big") != 1:
                    raise BadNodeData(f"ticks({t}) not initialised")
                net[t] = int.from_bytes(raw[32:64], "big", signed=True)
        except BadNodeData:
            out[key.address] = V3Refusal.UNREADABLE
            continue
        finally:
            pos += len(initialised)
        table = TickTable.build(key.spacing, net, words[0], words[-1])
        out[key.address] = V3PoolState(key, price, tick, liquidity, table, block)
    return out


# --------------------------------------------------------------------------- the book


@attrs.frozen
class V3BookStatistics:
    """A snapshot of the V3 book's counters."""

    tracked: int
    fetches: int
    fetch_errors: int
    evicted: int


class V3PoolBook:
    """The V3 pools in use, each as of its last read; at most ``max_pools`` kept.

    Bounded like the V2 pool book: the pool used least recently is forgotten
    first. A pool whose read fails is dropped (not kept stale): the next quote
    on it is refused as unreadable until a read succeeds.

    The pools to read on every head are registered with :meth:`track` (their
    keys come from CREATE2, never from the node) and read by
    :meth:`refresh_tracked` in three batched round trips for all of them;
    at most ``max_pools`` are tracked, the least recently registered go first.
    """

    def __init__(self, rpc: _Batcher, *, max_pools: int = 256, word_radius: int = DEFAULT_WORD_RADIUS) -> None:
        if max_pools < 1:
            raise ValueError(f"max_pools must be >= 1, not {max_pools}")
        self._rpc = rpc
        self.max_pools = max_pools
        self.word_radius = word_radius
        self._states: dict[str, V3PoolState] = {}
        self._tracked: dict[str, V3PoolKey] = {}
        self._block: int | None = None
        self._fetches = 0
        self._errors = 0
        self._evicted = 0

    def statistics(self) -> V3BookStatistics:
        return V3BookStatistics(len(self._states), self._fetches, self._errors, self._evicted)

    @property
    def block(self) -> int | None:
        """The block of the last :meth:`refresh_tracked` (None before the first)."""
        return self._block

    def get(self, address: str) -> V3PoolState | None:
        """The pool's state, marking it used; None when it is not tracked."""
        state = self._states.pop(address, None)
        if state is not None:
            self._states[address] = state
        return state

    def key(self, address: str) -> V3PoolKey | None:
        """The key of a tracked pool (derived by CREATE2 when it was registered), or None."""
        return self._tracked.get(address)

    def track(self, keys: Sequence[V3PoolKey]) -> None:
        """Read these pools on every head from now on (the oldest registrations go past ``max_pools``)."""
        for k in keys:
            self._tracked.pop(k.address, None)
            self._tracked[k.address] = k
        while len(self._tracked) > self.max_pools:
            del self._tracked[next(iter(self._tracked))]

    async def refresh_tracked(self, block: int) -> dict[str, V3Refusal]:
        """Read every tracked pool at ``block`` (three batched round trips); returns those that failed.

        Afterwards the book holds exactly the pools read at ``block``: a state
        of an earlier block is never quoted as if it were this head's.

        Raises:
            NodeError: a whole batch failed; the book is then emptied (fail closed).
        """
        self._fetches += 1
        try:
            got = await fetch_pool_states(self._rpc, list(self._tracked.values()), block=block,
                                          word_radius=self.word_radius)
        except BaseException:
            self._states.clear()
            self._block = None
            raise
        failed: dict[str, V3Refusal] = {}
        states: dict[str, V3PoolState] = {}
        for address, r in got.items():
            if isinstance(r, V3PoolState):
                states[address] = r
            else:
                failed[address] = r
        self._errors += len(failed)
        self._states = states
        self._block = block
        return failed

    async def refresh(self, keys: Sequence[V3PoolKey], block: int) -> dict[str, V3Refusal]:
        """Read ``keys`` at ``block``; returns the pools that could not be read.

        Pools are read one after another (each is three batched round trips):
        the per-head cost grows with the pools in use, which ``max_pools`` bounds.
        """
        failed: dict[str, V3Refusal] = {}
        for key in keys:
            self._fetches += 1
            try:
                state = await fetch_pool_state(self._rpc, key, block=block, word_radius=self.word_radius)
            except BadNodeData:
                self._errors += 1
                self._states.pop(key.address, None)
                failed[key.address] = V3Refusal.UNREADABLE
                continue
            self.put(state)
        return failed

    def put(self, state: V3PoolState) -> None:
        """Track ``state`` (replacing the pool's previous one), evicting the least used beyond the bound."""
        self._states.pop(state.key.address, None)
        self._states[state.key.address] = state
        while len(self._states) > self.max_pools:
            oldest = next(iter(self._states))
            del self._states[oldest]
            self._evicted += 1
