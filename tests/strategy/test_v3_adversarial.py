"""Adversarial review of the V3 victim path (issue 16): inputs that should yield no wrong prediction.

Each test is a victim shaped to make the strategy trade against a pool state that
is not the one the bundle will meet: a V3 pool the victim changed (its liquidity
minted or burned, or a ``Swap`` whose post-state is refused) must never stand in
as a counter venue at the head's, pre-victim, state.
"""

from __future__ import annotations

import math
from typing import Any

import httpx

from aether.chain import RpcClient
from aether.dex import PoolBook, TickTable, V3PoolBook, V3PoolKey, V3PoolState
from aether.dex._v3math import get_sqrt_ratio_at_tick
from aether.dex._v3pool import BURN_EVENT_TOPIC, MINT_EVENT_TOPIC
from aether.messages import Candidate
from aether.strategy import BackrunStrategy, PostState, VictimSimulator
from test_strategy_backrun import ETHER, HEAD, SEARCHER
from test_v3_poststate import CHAIN3, POOL, POOL_3000, T0, T1, V3, V3Node, swap_log
from test_victim_sim import _tx

#: WETH sorts first (token0): a V3 price is TKN per WETH, like the V2 pairs' 2,000.
assert T0 < T1
TICK_2000 = int(math.log(2000) / math.log(1.0001))
TICK_2300 = int(math.log(2300) / math.log(1.0001))


def _state(fee: int, tick: int, *, block: int = HEAD.number) -> V3PoolState:
    """A pool of ``fee`` at ``tick`` with deep liquidity over +-4,000 ticks, read at ``block``."""
    spacing = {500: 10, 3000: 60}[fee]
    address = POOL if fee == 500 else POOL_3000
    lo, hi = (tick - 4000) // 60 * 60, (tick + 4000) // 60 * 60
    word = (tick // spacing) >> 8
    table = TickTable.build(spacing, {lo: 10**22, hi: -(10**22)}, word - 2, word + 2)
    return V3PoolState(V3PoolKey(address, V3.name, T0, T1, fee), get_sqrt_ratio_at_tick(tick) + 1, tick, 10**22,
                       table, block)


def _slot_log(address: str, tick: int, *, tick_in_event: int | None = None) -> dict[str, Any]:
    return swap_log(address, get_sqrt_ratio_at_tick(tick) + 1, 10**22, tick if tick_in_event is None else tick_in_event)


async def _run(logs: list[dict[str, Any]]) -> tuple[Any, list[Candidate] | Any]:
    """Simulate a victim emitting ``logs`` (through the real VictimSimulator) and size its post-state."""
    node = V3Node()
    node.reserves = {}  # no V2 pair: every cycle is V3/V3
    node.ok_sim(logs)
    rpc = RpcClient("http://node.test", transport=httpx.MockTransport(node.handler), timeout=60)
    try:
        book = PoolBook(rpc, CHAIN3)
        v3book = V3PoolBook(rpc)
        v3book.track([_state(500, TICK_2000).key, _state(3000, TICK_2000).key])
        v3book.put(_state(500, TICK_2000))
        v3book.put(_state(3000, TICK_2000))
        sim = VictimSimulator(rpc, book, timeout_s=1.0, v3book=v3book)
        post = await sim.simulate(_tx(), HEAD)
        assert isinstance(post, PostState), post
        strategy = BackrunStrategy(CHAIN3, book, searcher=SEARCHER, v3book=v3book)
        return post, await strategy.on_post_state(_tx(), HEAD, post, inventory_wei=100 * ETHER)
    finally:
        await rpc.aclose()


def _pools(got: Any) -> set[str]:
    return {h.pair for c in got for h in c.route} if isinstance(got, list) else set()


async def test_the_control_a_moved_pool_is_backrun_against_the_other_tier() -> None:
    # the victim pushes the 500 pool to ~2,300 TKN/WETH; the 3000 pool still at ~2,000: a real gap
    _, got = await _run([_slot_log(POOL, TICK_2300)])
    assert isinstance(got, list) and _pools(got) == {POOL, POOL_3000}, got


async def test_a_counter_pool_the_victim_minted_or_burned_in_is_not_a_venue_at_the_heads_state() -> None:
    # The victim also adds (or removes) liquidity in the 3000 pool without swapping there: its
    # ticks and active liquidity after the victim are not the head's, so the head's state would
    # predict the second leg wrongly. No candidate may trade through it.
    for topic in (MINT_EVENT_TOPIC, BURN_EVENT_TOPIC):
        post, got = await _run([_slot_log(POOL, TICK_2300), {"address": POOL_3000, "topics": [topic], "data": "0x"}])
        assert POOL_3000 not in _pools(got), (topic, got)


async def test_a_pool_the_victim_swapped_and_minted_in_is_not_a_venue_at_the_heads_state() -> None:
    # The 3000 pool is dropped from the post-state (its Swap cannot say where its new ticks are);
    # the strategy must not fall back to its pre-victim head state either.
    post, got = await _run([_slot_log(POOL, TICK_2300), _slot_log(POOL_3000, TICK_2000 + 50),
                            {"address": POOL_3000, "topics": [MINT_EVENT_TOPIC], "data": "0x"}])
    assert list(post.v3()) == [POOL]
    assert POOL_3000 not in _pools(got), got


async def test_a_pool_whose_swap_the_strategy_refuses_is_not_a_venue_at_the_heads_state() -> None:
    # The victim moves the 3000 pool too, but its post-state is refused (the event's tick does not
    # belong to its price; or the price left the fetched ticks): the pool moved, so its head
    # state is wrong as well. Only the moved 500 pool's own trades may remain: none here.
    for log in (_slot_log(POOL_3000, TICK_2000 + 50, tick_in_event=TICK_2000 + 400),
                _slot_log(POOL_3000, TICK_2000 + 40_000)):
        post, got = await _run([_slot_log(POOL, TICK_2300), log])
        assert set(post.v3()) == {POOL, POOL_3000}
        assert POOL_3000 not in _pools(got), (log, got)


async def test_a_book_pool_whose_swap_goes_untrusted_is_not_a_venue_at_the_heads_state() -> None:
    # The book read the 500 pool at this head, then its registration was pushed out (max_pools:
    # a victim registered another CREATE2 pool) and its trust look-up now fails at the node: its
    # Swap is ignored as untrusted. The victim still moved it: its head state is wrong too.
    node = V3Node()
    node.reserves = {}
    node.fee_error = True
    node.ok_sim([_slot_log(POOL_3000, TICK_2300), _slot_log(POOL, TICK_2000 + 100)])
    rpc = RpcClient("http://node.test", transport=httpx.MockTransport(node.handler), timeout=60)
    try:
        book = PoolBook(rpc, CHAIN3)
        v3book = V3PoolBook(rpc, max_pools=2)
        v3book.track([_state(500, TICK_2000).key, _state(3000, TICK_2000).key])
        v3book.put(_state(500, TICK_2000))
        v3book.put(_state(3000, TICK_2000))
        v3book.track([V3PoolKey("0x" + "99" * 20, V3.name, T0, T1, 100)])  # evicts the 500 pool's registration
        assert v3book.key(POOL) is None and v3book.get(POOL) is not None
        sim = VictimSimulator(rpc, book, timeout_s=1.0, v3book=v3book)
        post = await sim.simulate(_tx(), HEAD)
        assert isinstance(post, PostState) and list(post.v3()) == [POOL_3000], post
        strategy = BackrunStrategy(CHAIN3, book, searcher=SEARCHER, v3book=v3book)
        got = await strategy.on_post_state(_tx(), HEAD, post, inventory_wei=100 * ETHER)
        assert POOL not in _pools(got), got
    finally:
        await rpc.aclose()


def test_arb_ids_of_the_same_trade_through_two_fee_tiers_are_not_aliased() -> None:
    # Same victim, block, tokens and amounts; only the V3 pool (fee tier) differs: the forensic
    # dumps must not overwrite each other (arb_id names the file) nor the in-flight ledger merge them.
    from aether.bundle import arb_id
    from aether.config import DexKind
    from aether.messages import Hop

    def route(pool: str, fee: int) -> tuple[Hop, ...]:
        return (Hop(V3.name, V3.router, pool, T0, T1, 10**18, 2000 * 10**18, DexKind.V3, fee),
                Hop(V3.name, V3.router, POOL_3000 if pool == POOL else POOL, T1, T0, 2000 * 10**18, 10**18 + 1,
                    DexKind.V3, 3000 if fee == 500 else 500))

    a = arb_id(101, "0x" + "ab" * 32, route(POOL, 500))
    b = arb_id(101, "0x" + "ab" * 32, route(POOL_3000, 3000))
    assert a != b


def test_cycles_are_compared_by_what_is_left_after_gas_not_by_gross() -> None:
    """A cycle's gas budget depends on its legs (a V3 leg budgets twice a V2 leg): the higher
    gross must not win when its extra gas costs more than its extra gross."""
    from aether.config import DexKind
    from aether.strategy._backrun import _Venue, size_cross

    moved = _state(500, TICK_2300)  # the victim pushed the 5-bp pool up to 2,300
    v2 = _Venue(DexKind.V2, CHAIN3.dexes[0], "0x" + "77" * 20, T0, reserves=(10**21, 2 * 10**24))  # 2,000
    venues = [v2, _Venue(DexKind.V3, V3, POOL, T0, fee=500, state=moved),
              _Venue(DexKind.V3, V3, POOL_3000, T0, fee=3000, state=_state(3000, TICK_2000))]
    by_gross, _ = size_cross(venues, T0, T1, cap=10**24, moved={POOL})
    v3v3, _ = size_cross(venues[1:], T0, T1, cap=10**24, moved={POOL})
    assert by_gross is not None and v3v3 is not None
    assert DexKind.V2 in (by_gross.buy.kind, by_gross.sell.kind) and by_gross.profit > v3v3.profit > 0
    gap = by_gross.profit - v3v3.profit
    for extra, wins_v2 in ((gap + 1, False), (gap, None), (gap - 1, True)):
        def cost(c: Any, extra: int = extra) -> int:
            return extra if DexKind.V2 in (c.buy.kind, c.sell.kind) else 0

        best, _ = size_cross(venues, T0, T1, cap=10**24, moved={POOL}, gas_cost=cost)
        assert best is not None
        if wins_v2 is None:  # a tie keeps the first found: either is right
            continue
        assert (DexKind.V2 in (best.buy.kind, best.sell.kind)) is wins_v2, (extra, gap)


async def test_a_cycle_whose_optimum_lies_past_the_fetched_ticks_is_counted_as_such(monkeypatch: Any) -> None:
    # The control above gives a candidate; when sizing says the optimum lies past a leg's
    # fetched ticks, the rejection must say so (v3_out_of_range), not "unprofitable".
    from aether.strategy import _backrun
    from aether.strategy._cross import CrossRefusal

    real = _backrun.size_cross

    def beyond(*args: Any, **kwargs: Any) -> Any:
        _cycle, refusals = real(*args, **kwargs)
        return None, [*refusals, CrossRefusal.OUT_OF_RANGE]

    monkeypatch.setattr(_backrun, "size_cross", beyond)
    _, got = await _run([_slot_log(POOL, TICK_2300)])
    assert not isinstance(got, list) and got.reason == "v3_out_of_range", got

    def no_gap(*args: Any, **kwargs: Any) -> Any:
        return None, [CrossRefusal.NO_GAP]

    monkeypatch.setattr(_backrun, "size_cross", no_gap)
    _, got = await _run([_slot_log(POOL, TICK_2300)])
    assert not isinstance(got, list) and got.reason == "unprofitable", got
