"""V3 pool state without a node: CREATE2, reads from a scripted node, Swap events, refusals, the bound.

The scripted node answers ``eth_call`` by selector the way a V3 pool does
(ABI words), so each malformed answer can be tried one at a time. The reads
against a real pool are in ``test_v3_devnet.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import pytest
from eth_abi import encode as abi_encode
from eth_utils import keccak

from aether._errors import BadNodeData, RpcError
from aether.dex._v3math import get_sqrt_ratio_at_tick
from aether.dex._v3pool import (
    SWAP_EVENT_TOPIC,
    V3PoolBook,
    V3PoolKey,
    V3Refusal,
    fetch_pool_state,
    quote,
    v3_pool_address,
)

POOL = "0x" + "ab" * 20
KEY = V3PoolKey(POOL, "v3", "0x" + "11" * 20, "0x" + "22" * 20, 3000)


def _sel(sig: str) -> str:
    return "0x" + keccak(text=sig)[:4].hex()


class ScriptedPool:
    """Answers a V3 pool's view calls from a dict of ticks; every answer can be overridden."""

    def __init__(self, tick: int, liquidity: int, nets: dict[int, int], spacing: int = 60) -> None:
        self.price = get_sqrt_ratio_at_tick(tick) + 7
        self.tick = tick
        self.liquidity = liquidity
        self.nets = nets
        self.spacing = spacing
        self.unlocked = 1
        self.override: dict[str, Any] = {}
        self.calls: list[tuple[str, str]] = []

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        return [self._answer(m, p) for m, p in calls]

    def _answer(self, method: str, params: Sequence[Any]) -> Any:
        if method == "eth_blockNumber":
            return "0x10"
        data: str = params[0]["data"]
        sel, arg = data[:10], data[10:]
        self.calls.append((sel, params[1]))
        if sel in self.override:
            return self.override[sel]
        if sel == _sel("slot0()"):
            return "0x" + abi_encode(
                ["uint160", "int24", "uint16", "uint16", "uint16", "uint8", "bool"],
                [self.price, self.tick, 0, 1, 1, 0, bool(self.unlocked)],
            ).hex()
        if sel == _sel("liquidity()"):
            return "0x" + abi_encode(["uint128"], [self.liquidity]).hex()
        if sel == _sel("tickBitmap(int16)"):
            word = int.from_bytes(bytes.fromhex(arg), "big", signed=True)
            bits = 0
            for t in self.nets:
                c = t // self.spacing
                if c >> 8 == word:
                    bits |= 1 << (c & 0xFF)
            return "0x" + abi_encode(["uint256"], [bits]).hex()
        if sel == _sel("ticks(int24)"):
            t = int.from_bytes(bytes.fromhex(arg), "big", signed=True)
            net = self.nets.get(t)
            return "0x" + abi_encode(
                ["uint128", "int128", "uint256", "uint256", "int56", "uint160", "uint32", "bool"],
                [abs(net or 0), net or 0, 0, 0, 0, 0, 0, net is not None],
            ).hex()
        raise AssertionError(f"unexpected call {sel}")


def test_pool_address_is_mainnet_create2() -> None:
    # Uniswap V3 USDC/WETH 0.05% on mainnet.
    got = v3_pool_address(
        "0x1f98431c8ad98523631ae4a59f267346ea31f984",
        "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2",
        "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48",
        500,
        "0xe34f199b19b2b4f47f68442619d555527d244f78a3297ea89325f843f87b8b54",
    )
    assert got == "0x88e6a0c2ddd26feeb64f039a2c41296fcb3f5640"


async def test_fetch_reads_one_block_and_the_words_around_the_price() -> None:
    node = ScriptedPool(120, 10**20, {-600: 10**20, 600: -(10**20), 60 * 256 * 5: 5})
    state = await fetch_pool_state(node, KEY, word_radius=2)
    assert (state.tick, state.liquidity, state.block) == (120, 10**20, 16)
    assert state.ticks.liquidity_net == {-600: 10**20, 600: -(10**20)}  # the far tick is outside the words read
    assert (state.ticks.word_lo, state.ticks.word_hi) == (-2, 2)
    assert {tag for _, tag in node.calls} == {"0x10"}  # every read at the same block
    assert state.refusal() is None
    assert quote(state, True, 10**15).result is not None
    # a swap that runs out of the words read is refused, never quoted on empty ticks
    assert quote(state, True, 10**30).refusal is V3Refusal.TICKS_NOT_LOADED


@pytest.mark.parametrize(
    ("selector", "answer", "match"),
    [
        ("slot0()", "0x1234", "bytes"),
        ("slot0()", "nothex", "not hex"),
        ("slot0()", RpcError("eth_call", -32000, "execution reverted"), "refused"),
        ("liquidity()", "0x" + "ff" * 32, "out of range"),
        ("tickBitmap(int16)", None, "not hex"),
    ],
)
async def test_fetch_fails_closed_on_malformed_answers(selector: str, answer: Any, match: str) -> None:
    node = ScriptedPool(0, 10**20, {-600: 10**20, 600: -(10**20)})
    node.override[_sel(selector)] = answer
    with pytest.raises(BadNodeData, match=match):
        await fetch_pool_state(node, KEY, block=5)


async def test_fetch_refuses_a_locked_pool_and_a_bitmap_that_lies() -> None:
    node = ScriptedPool(0, 10**20, {-600: 10**20, 600: -(10**20)})
    node.unlocked = 0
    with pytest.raises(BadNodeData, match="locked"):
        await fetch_pool_state(node, KEY, block=5)
    node = ScriptedPool(0, 10**20, {-600: 10**20, 600: -(10**20)})
    node.override[_sel("ticks(int24)")] = "0x" + abi_encode(
        ["uint128", "int128", "uint256", "uint256", "int56", "uint160", "uint32", "bool"], [0, 0, 0, 0, 0, 0, 0, False]
    ).hex()
    with pytest.raises(BadNodeData, match="initialised"):
        await fetch_pool_state(node, KEY, block=5)
    with pytest.raises(ValueError, match="word_radius"):
        await fetch_pool_state(node, KEY, block=5, word_radius=17)


async def test_state_refusals() -> None:
    node = ScriptedPool(0, 10**20, {-600: 10**20, 600: -(10**20)})
    state = await fetch_pool_state(node, KEY, block=5)
    assert attrs.evolve(state, liquidity=0).refusal() is V3Refusal.ZERO_LIQUIDITY
    assert quote(attrs.evolve(state, liquidity=0), True, 10**15).refusal is V3Refusal.ZERO_LIQUIDITY
    assert attrs.evolve(state, sqrt_price_x96=0).refusal() is V3Refusal.NOT_INITIALIZED
    assert attrs.evolve(state, tick=1).refusal() is V3Refusal.TICK_MISMATCH
    # on a boundary both the tick and the one below are the pool's own conventions
    on = attrs.evolve(state, sqrt_price_x96=get_sqrt_ratio_at_tick(0), tick=0)
    assert on.refusal() is None and attrs.evolve(on, tick=-1).refusal() is None
    assert attrs.evolve(on, tick=-2).refusal() is V3Refusal.TICK_MISMATCH
    # overflow-sized amounts: no quote
    assert quote(state, True, 2**255).refusal is V3Refusal.OVERFLOW
    assert quote(state, False, 0).refusal is V3Refusal.OVERFLOW


async def test_swap_event_moves_the_state_and_malformed_events_are_rejected() -> None:
    node = ScriptedPool(0, 10**20, {-600: 10**20, 600: -(10**20)})
    state = await fetch_pool_state(node, KEY, block=5)
    r = quote(state, True, 10**17).result
    assert r is not None
    data = abi_encode(["int256", "int256", "uint160", "uint128", "int24"], [r.amount0, r.amount1, r.sqrt_price_x96, r.liquidity, r.tick])
    after = state.after_swap_event("0x" + data.hex(), block=6)
    assert (after.sqrt_price_x96, after.tick, after.liquidity, after.block) == (r.sqrt_price_x96, r.tick, r.liquidity, 6)
    assert after.ticks is state.ticks
    assert SWAP_EVENT_TOPIC == "0xc42079f94a6350d7e6235f29174924f928cc2ac818eb64fed8004e115fbcca67"
    with pytest.raises(BadNodeData, match="128 bytes"):
        state.after_swap_event(data[:128])
    bad_tick = data[:128] + (1 << 30).to_bytes(32, "big")
    with pytest.raises(BadNodeData, match="out of range"):
        state.after_swap_event(bad_tick)
    # an event whose tick disagrees with its price is taken, then refused at quote time
    lying = abi_encode(["int256", "int256", "uint160", "uint128", "int24"], [1, -1, r.sqrt_price_x96, r.liquidity, r.tick + 50])
    assert quote(state.after_swap_event(lying), True, 10).refusal is V3Refusal.TICK_MISMATCH


async def test_book_is_bounded_and_drops_pools_it_cannot_read() -> None:
    node = ScriptedPool(0, 10**20, {-600: 10**20, 600: -(10**20)})
    book = V3PoolBook(node, max_pools=2)
    keys = [attrs.evolve(KEY, address="0x" + f"{i:040x}") for i in range(3)]
    assert await book.refresh(keys, 7) == {}
    assert book.statistics().tracked == 2 and book.statistics().evicted == 1
    assert book.get(keys[0].address) is None and book.get(keys[2].address) is not None
    node.override[_sel("slot0()")] = "0x00"
    failed = await book.refresh([keys[2]], 8)
    assert failed == {keys[2].address: V3Refusal.UNREADABLE}
    assert book.get(keys[2].address) is None  # not kept stale
    assert book.statistics().fetch_errors == 1
    with pytest.raises(ValueError, match="max_pools"):
        V3PoolBook(node, max_pools=0)


@pytest.mark.parametrize("delta", [-2, -1, 0, 1, 2])
async def test_tick_consistency_matches_get_tick_at_sqrt_ratio(delta: int) -> None:
    from aether.dex._v3math import get_tick_at_sqrt_ratio

    node = ScriptedPool(0, 10**20, {-600: 10**20, 600: -(10**20)})
    state = await fetch_pool_state(node, KEY, block=5)
    for price in (get_sqrt_ratio_at_tick(37) - 1, get_sqrt_ratio_at_tick(37), get_sqrt_ratio_at_tick(37) + 1):
        expected = get_tick_at_sqrt_ratio(price)
        on_boundary = get_sqrt_ratio_at_tick(expected) == price
        s = attrs.evolve(state, sqrt_price_x96=price, tick=expected + delta)
        ok = delta == 0 or (delta == -1 and on_boundary)
        assert (s.refusal() is None) == ok, (price, delta)
