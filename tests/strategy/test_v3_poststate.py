"""V3 pools in a simulated victim's logs, against an in-memory node: trust, shapes, caps, fail closed.

The node (httpx.MockTransport, from ``test_victim_sim``) also answers ``fee()``.
A V3 ``Swap`` is used only when its emitter derives by CREATE2 from the
configured V3 factory for the token0/token1/fee it reports; anything else that
emits the topic is ignored and counted, a tracked pool's malformed ``Swap``
makes the answer untrustworthy, and a pool that also mints or burns is dropped.
"""

from __future__ import annotations

from typing import Any

import httpx

from aether.chain import RpcClient
from aether.config import ChainConfig, DexConfig, DexKind
from aether.dex import PoolBook, TickTable, V3PoolBook, V3PoolKey, V3PoolState, v3_pool_address
from aether.dex._v3math import get_sqrt_ratio_at_tick
from aether.dex._v3pool import BURN_EVENT_TOPIC, MINT_EVENT_TOPIC, SWAP_EVENT_TOPIC
from aether.metrics import CANDIDATE_REJECT_REASONS
from aether.strategy import BackrunStrategy, PostState, Rejection, SimFailure, V2Reserves, VictimSimulator
from aether.strategy._poststate import MAX_SYNC_EMITTERS, V3Slot
from test_strategy_backrun import CHAIN, ETHER, HEAD, SEARCHER, TKN, WETH
from test_victim_sim import PAIR, SimNode, _tx, _word, sync_log

V3 = DexConfig("uniswap_v3", "0x" + "a3" * 20, "0x" + "f3" * 20, "0x" + "22" * 32, fee_bps=0, kind=DexKind.V3,
               fee_tiers=(500, 3000))
CHAIN3 = ChainConfig(WETH, (*CHAIN.dexes, V3), CHAIN.tokens)
T0, T1 = sorted([WETH, TKN])
POOL = v3_pool_address(V3.factory, T0, T1, 500, V3.init_code_hash)
POOL_3000 = v3_pool_address(V3.factory, T0, T1, 3000, V3.init_code_hash)
UNLISTED_TIER = v3_pool_address(V3.factory, T0, T1, 100, V3.init_code_hash)  # a real pool, tier not configured
CLONE = "0x" + "77" * 20  # reports the real tokens and fee; not CREATE2(factory, ...)
_FEE = "0xddca3f43"


def swap_log(address: str, price: int, liquidity: int, tick: int, *, topics: int = 3, size: int = 160) -> dict[str, Any]:
    data = (_word(5) + _word(2**256 - 7) + _word(price) + _word(liquidity) + _word(tick % 2**256))
    return {"address": address, "topics": [SWAP_EVENT_TOPIC, *(["0x" + "00" * 32] * (topics - 1))],
            "data": "0x" + data[: 2 * size]}


class V3Node(SimNode):
    def __init__(self) -> None:
        super().__init__()
        self.fees = {POOL: 500, POOL_3000: 3000, CLONE: 500, UNLISTED_TIER: 100}
        for a in self.fees:
            self.tokens[a] = (T0, T1)
        self.fee_error = False

    def one(self, req: dict[str, Any]) -> dict[str, Any]:
        if req["method"] == "eth_call" and req["params"][0]["data"] == _FEE:
            self.calls.append("eth_call")
            fee = self.fees.get(req["params"][0]["to"])
            if self.fee_error:
                return {"jsonrpc": "2.0", "id": req["id"], "error": {"code": -32000, "message": "header not found"}}
            if fee is None:
                return {"jsonrpc": "2.0", "id": req["id"], "error": {"code": 3, "message": "execution reverted"}}
            return {"jsonrpc": "2.0", "id": req["id"], "result": "0x" + _word(fee)}
        return super().one(req)


async def _simulate(node: V3Node, v3book: V3PoolBook | None = None) -> tuple[Any, VictimSimulator, list[int], V3PoolBook]:
    rpc = RpcClient("http://node.test", transport=httpx.MockTransport(node.handler), timeout=60)
    try:
        book = PoolBook(rpc, CHAIN3)
        v3book = v3book or V3PoolBook(rpc)
        untrusted: list[int] = []
        sim = VictimSimulator(rpc, book, timeout_s=1.0, on_untrusted=untrusted.append, v3book=v3book)
        return await sim.simulate(_tx(), HEAD), sim, untrusted, v3book
    finally:
        await rpc.aclose()


P = get_sqrt_ratio_at_tick(-201_000) + 12345


async def test_a_create2_pool_swap_is_its_post_state_and_the_pool_is_tracked_from_then_on() -> None:
    node = V3Node()
    node.ok_sim([swap_log(POOL, P, 10**18, -201_000), sync_log(PAIR, 3, 4), swap_log(POOL, P + 1, 10**18, -201_000)])
    post, sim, untrusted, v3book = await _simulate(node)
    assert isinstance(post, PostState), post
    # first-moved order, last event wins
    assert [type(p) for p in post.pools] == [V3Slot, V2Reserves]
    assert post.v3()[POOL].sqrt_price_x96 == P + 1 and post.v3()[POOL].tick == -201_000
    assert untrusted == []
    assert v3book.key(POOL) == V3PoolKey(POOL, V3.name, T0, T1, 500)
    # a pool the book tracks needs no call
    node.calls.clear()
    node.ok_sim([swap_log(POOL, P, 10**18, -201_000)])
    post2, *_ = await _simulate(node, v3book)
    assert isinstance(post2, PostState) and "eth_call" not in node.calls


async def test_a_clone_reporting_the_real_tokens_and_fee_and_a_pool_at_an_unlisted_tier_are_ignored() -> None:
    node = V3Node()
    node.ok_sim([swap_log(CLONE, P, 10**18, -201_000), swap_log(UNLISTED_TIER, P, 10**18, -201_000),
                 swap_log("0x" + "88" * 20, P, 10**18, -201_000)])  # no code: token0() reverts
    got, sim, untrusted, v3book = await _simulate(node)
    assert isinstance(got, Rejection) and got.reason == SimFailure.NO_POOL_MOVED, got
    assert untrusted == [3] and sim.statistics().untrusted_logs == 3
    assert v3book.key(CLONE) is None and v3book.key(UNLISTED_TIER) is None


async def test_a_tracked_pools_malformed_swap_fails_closed_a_mimics_is_ignored() -> None:
    for bad in (dict(topics=1), dict(size=128), dict(topics=4)):
        node = V3Node()
        node.ok_sim([swap_log(POOL, P, 10**18, -201_000, **bad)])
        got, *_ = await _simulate(node)
        assert isinstance(got, Rejection) and got.reason == SimFailure.SIM_MALFORMED, (bad, got)
    node = V3Node()
    node.ok_sim([swap_log(CLONE, P, 10**18, -201_000, size=96), swap_log(POOL, P, 10**18, -201_000)])
    got, _, untrusted, _ = await _simulate(node)
    assert isinstance(got, PostState) and list(got.v3()) == [POOL] and untrusted == [1]
    # a value out of its Solidity type (price past uint160) from the tracked pool
    node = V3Node()
    node.ok_sim([swap_log(POOL, 2**160, 10**18, -201_000)])
    got, *_ = await _simulate(node)
    assert isinstance(got, Rejection) and got.reason == SimFailure.SIM_MALFORMED


async def test_a_pool_whose_liquidity_the_victim_also_changes_is_dropped() -> None:
    for topic in (MINT_EVENT_TOPIC, BURN_EVENT_TOPIC):
        node = V3Node()
        node.ok_sim([swap_log(POOL, P, 10**18, -201_000), {"address": POOL, "topics": [topic], "data": "0x"}])
        got, sim, _, _ = await _simulate(node)
        assert got == Rejection(SimFailure.POOL_LIQUIDITY_CHANGED.value, "1 V3 pools"), got
        assert got.reason in CANDIDATE_REJECT_REASONS and sim.statistics().liquidity_changed == 1
    node = V3Node()
    node.ok_sim([swap_log(POOL, P, 10**18, -201_000), sync_log(PAIR, 3, 4),
                 {"address": POOL, "topics": [MINT_EVENT_TOPIC], "data": "0x"},
                 {"address": CLONE, "topics": [BURN_EVENT_TOPIC], "data": "0x"}])  # an untrusted Burn changes nothing
    got, *_ = await _simulate(node)
    assert isinstance(got, PostState) and got.pools == (V2Reserves(PAIR, 3, 4),)


async def test_the_emitter_cap_counts_v2_and_v3_emitters_together() -> None:
    node = V3Node()
    half = MAX_SYNC_EMITTERS // 2
    node.ok_sim([sync_log("0x" + f"{i:040x}", 1, 2) for i in range(1, half + 1)]
                + [swap_log("0x" + f"{i:040x}", P, 1, -201_000) for i in range(1000, 1000 + half + 1)])
    got, *_ = await _simulate(node)
    assert isinstance(got, Rejection) and got.reason == SimFailure.TOO_MANY_POOLS, got
    assert "eth_call" not in node.calls  # refused before any trust look-up


async def test_a_node_failing_fee_leaves_the_pool_untrusted_now_and_asks_again_later() -> None:
    node = V3Node()
    node.fee_error = True
    node.ok_sim([swap_log(POOL, P, 10**18, -201_000)])
    got, sim, untrusted, v3book = await _simulate(node)
    assert isinstance(got, Rejection) and got.reason == SimFailure.NO_POOL_MOVED and untrusted == [1]
    node.fee_error = False
    node.calls.clear()
    again, *_ = await _simulate(node, v3book)
    assert isinstance(again, PostState) and node.calls.count("eth_call") == 3


def _state(block: int, tick: int = -201_000) -> V3PoolState:
    key = V3PoolKey(POOL, V3.name, T0, T1, 500)
    table = TickTable.build(10, {-202_000: 10**18, -200_000: -(10**18)}, (tick // 10 >> 8) - 2, (tick // 10 >> 8) + 2)
    return V3PoolState(key, get_sqrt_ratio_at_tick(tick) + 1, tick, 10**18, table, block)


async def test_a_book_state_of_another_block_is_never_used_for_a_moved_pool() -> None:
    node = V3Node()
    rpc = RpcClient("http://node.test", transport=httpx.MockTransport(node.handler), timeout=60)
    try:
        book = PoolBook(rpc, CHAIN3)
        v3book = V3PoolBook(rpc)
        v3book.track([V3PoolKey(POOL, V3.name, T0, T1, 500)])
        v3book.put(_state(HEAD.number - 1))
        strategy = BackrunStrategy(CHAIN3, book, searcher=SEARCHER, v3book=v3book)
        slot = swap_log(POOL, P, 10**18, -201_000)
        data = bytes.fromhex(slot["data"][2:])
        post = PostState(b"\x01" * 32, HEAD.number, (V3Slot(POOL, P, 10**18, -201_000, data),))
        got = await strategy.on_post_state(_tx(), HEAD, post, inventory_wei=10 * ETHER)
        assert got == Rejection("v3_not_in_book"), got
    finally:
        await rpc.aclose()


# --------------------------------------------------------------------------- the per-head V3 book


class _Counting:
    """A ScriptedPool per address; counts round trips; a pool without code answers ``0x``."""

    def __init__(self, pools: dict[str, Any]) -> None:
        self.pools = pools
        self.batches = 0
        self.fail = False

    async def batch(self, calls: Any) -> list[Any]:
        from aether._errors import NodeError

        self.batches += 1
        if self.fail:
            raise NodeError("the node is gone")
        out = []
        for m, p in calls:
            pool = self.pools.get(p[0]["to"])
            out.append("0x" if pool is None else pool._answer(m, p))
        return out


async def test_refresh_tracked_reads_every_pool_in_three_round_trips_and_fails_closed() -> None:
    from aether._errors import NodeError
    from test_v3pool import ScriptedPool

    keys = [V3PoolKey("0x" + f"{i:040x}", V3.name, T0, T1, 3000) for i in range(1, 6)]
    pools = {k.address: ScriptedPool(120 * i, 10**20, {-600: 10**20, 600: -(10**20)}) for i, k in enumerate(keys[:4])}
    pools[keys[3].address].unlocked = 0  # locked mid-call: unreadable, the others unaffected
    node = _Counting(pools)
    book = V3PoolBook(node, max_pools=8)
    book.track(keys)
    failed = await book.refresh_tracked(42)
    assert node.batches == 3  # slot0+liquidity, bitmaps, ticks: for all pools together
    assert set(failed) == {keys[3].address, keys[4].address}  # locked; no code (never created)
    for k in keys[:3]:
        st = book.get(k.address)
        assert st is not None and st.block == 42 and st.refusal() is None
        assert st.ticks.liquidity_net == {-600: 10**20, 600: -(10**20)}
    assert book.block == 42 and book.get(keys[3].address) is None
    # the batched read equals the one-pool read, field for field
    from aether.dex import fetch_pool_state

    assert await fetch_pool_state(node, keys[1], block=42) == book.get(keys[1].address)
    # a whole batch failing empties the book: never last head's state as this head's
    node.fail = True
    try:
        await book.refresh_tracked(43)
    except NodeError:
        pass
    else:
        raise AssertionError("a failed batch must raise")
    assert book.block is None and all(book.get(k.address) is None for k in keys)
    # tracking is bounded: the oldest registrations go first
    small = V3PoolBook(node, max_pools=2)
    small.track(keys[:3])
    assert small.key(keys[0].address) is None and small.key(keys[2].address) == keys[2]


def test_the_dump_names_each_legs_venue_kind_and_fee_tier() -> None:
    from aether.dumps import bundle_document
    from aether.messages import Hop, Verdict, venue_pair
    from factories import make_bundle

    w, t = WETH, TKN
    route = (Hop("uniswap", "0x" + "01" * 20, PAIR, w, t, 10**18, 2000 * 10**6),
             Hop(V3.name, V3.router, POOL, t, w, 2000 * 10**6, 10**18 + 5, DexKind.V3, 500))
    doc = bundle_document(Verdict(make_bundle(route=route), (), True), mode="shadow", outcome="shadow_blocked")
    assert [(h["dex"], h["pair"], h["kind"], h["fee"]) for h in doc["route"]] == [
        ("uniswap", PAIR, "v2", 0), (V3.name, POOL, "v3", 500)]
    assert venue_pair(route) == "v2/v3" and venue_pair(route[::-1]) == "v3/v2"
