"""Review probes of the victim hot-path latency work (strategy side)."""

from __future__ import annotations

import httpx

from aether.chain import RpcClient
from aether.devnet._coverage import _instrument, _Record
from aether.dex import PoolBook
from aether.strategy import BackrunStrategy, PostState, V2Reserves
from test_strategy_backrun import ETHER, HEAD, SEARCHER, SUSHI, TKN, UNI, WETH, FakeNode
from test_v3_poststate import CHAIN3
from test_victim_sim import _tx


async def test_the_coverage_instrument_still_times_a_post_states_reserve_fetch() -> None:
    """on_post_state now reads unknown pairs through PoolBook.touch/fetch, not ensure: the
    coverage run's node time of a victim must still include that fetch."""
    node = FakeNode()
    uni = node.set_pool(UNI, WETH, 100 * ETHER, TKN, 200_000 * ETHER)
    node.set_pool(SUSHI, WETH, 100 * ETHER, TKN, 190_000 * ETHER)
    rpc = RpcClient("http://node.test", transport=httpx.MockTransport(node.handler))
    book = PoolBook(rpc, CHAIN3)
    for d in (UNI, SUSHI):
        book.pair_for(d, WETH, TKN)
    strategy = BackrunStrategy(CHAIN3, book, searcher=SEARCHER)
    r = node.reserves[uni]
    post = PostState(b"\x01" * 32, HEAD.number, (V2Reserves(uni, r[0] + ETHER, r[1] - 2_000 * ETHER),), frozenset())
    rec = _Record()
    tx = _tx()
    with _instrument(rec, lambda *_: None):
        await strategy.on_post_state(tx, HEAD, post, inventory_wei=10 * ETHER)
    assert book._fetches == 1  # the two pairs were never read: one trip to the node
    assert tx.hash_hex in rec.ensure_s
    await rpc.aclose()
