"""The sizing of a post-state is what it was before the latency work, candidate for candidate.

``BackrunStrategy.on_post_state`` against the verbatim pre-optimisation code
(``_reference_sizing``) over seeded random post-states: V2 pairs of two DEXes and V3
pools at two fee tiers for two tokens, moved or not, refused or not, with and without
a V3 book, several inventories and base fees. The candidates (every field, calldata
included), the rejections and the strategy's counters must all be equal.
"""

from __future__ import annotations

import random
from collections import Counter
from collections import Counter
from typing import Any

import attrs
import httpx

from _reference_sizing import reference_on_post_state
from aether.chain import RpcClient
from aether.dex import PoolBook, V3PoolBook, pair_address
from aether.dex._v3math import get_sqrt_ratio_at_tick
from aether.strategy import BackrunStrategy, PostState, V2Reserves
from aether.strategy._poststate import V3Slot
from test_strategy_backrun import ETHER, HEAD, OTHER, SEARCHER, SUSHI, TKN, UNI, WETH, FakeNode
from test_v3_adversarial import TICK_2000, _state
from test_v3_poststate import CHAIN3, POOL, POOL_3000
from test_victim_sim import _tx


def _slot(address: str, tick: int, liquidity: int = 10**22) -> V3Slot:
    price = get_sqrt_ratio_at_tick(tick) + 1
    words = [5, 2**256 - 7, price, liquidity, tick % 2**256]
    return V3Slot(address, price, liquidity, tick, b"".join(w.to_bytes(32, "big") for w in words))


async def test_on_post_state_equals_the_pre_optimisation_sizing_over_random_post_states() -> None:
    rng = random.Random(20261208)
    node = FakeNode()
    pairs = {(d.name, t): node.set_pool(d, WETH, 100 * ETHER, t, 200_000 * ETHER) for d in (UNI, SUSHI) for t in (TKN, OTHER)}
    rpc = RpcClient("http://node.test", transport=httpx.MockTransport(node.handler))
    compared = candidates = 0
    kinds: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    try:
        for case in range(120):
            # the head's reserves: each pair near 2,000 TKN/WETH, some gaps; one pair sometimes empty
            for (dex, t), pair in pairs.items():
                dex_cfg = UNI if dex == UNI.name else SUSHI
                w = rng.randrange(1, 500) * ETHER + rng.getrandbits(60)
                x = w * rng.randrange(1_800, 2_200) + rng.getrandbits(50)
                node.set_pool(dex_cfg, WETH, w, t, 0 if rng.random() < 0.05 else x)
            with_v3 = rng.random() < 0.6
            runs = []
            for fn in ("new", "reference"):
                book = PoolBook(rpc, CHAIN3)
                for d in (UNI, SUSHI):  # as the simulator's trust check does for the pairs it trusts
                    for t in (TKN, OTHER):
                        book.pair_for(d, WETH, t)
                v3book = None
                if with_v3:
                    v3book = V3PoolBook(rpc)
                    runs_rng = random.Random(case)  # the same V3 states for both runs
                    st = [_state(fee, TICK_2000 + runs_rng.randrange(-300, 300)) for fee in (500, 3000)]
                    v3book.track([s.key for s in st])
                    for s in st:
                        v3book.put(s)
                strategy = BackrunStrategy(CHAIN3, book, searcher=SEARCHER, v3book=v3book)
                prng = random.Random(case * 7919)  # the same post-state for both runs
                moved: list[Any] = []
                for (dex, t), pair in pairs.items():
                    if prng.random() < 0.45:
                        r = node.reserves[pair]
                        moved.append(V2Reserves(pair, r[0] + prng.randrange(-(r[0] // 10), r[0] // 10 + 1),
                                                r[1] + prng.randrange(-(r[1] // 10), r[1] // 10 + 1)))
                for pool in (POOL, POOL_3000):
                    if prng.random() < 0.4:
                        moved.append(_slot(pool, TICK_2000 + prng.choice((-2_000, -400, 0, 400, 2_000, 60_000))))
                prng.shuffle(moved)
                unheld = frozenset(p for p in (POOL, POOL_3000) if prng.random() < 0.1)
                post = PostState(b"\x01" * 32, HEAD.number, tuple(moved), unheld)
                head = attrs.evolve(HEAD, base_fee=prng.choice((0, 10**9, 50 * 10**9)))
                other = attrs.evolve(HEAD, base_fee=prng.choice((10**9, 200 * 10**9)), gas_used=29_000_000)
                inventory = prng.choice((0, ETHER, 10 * ETHER, 1_000 * ETHER))
                got_all: list[Any] = []
                for h in (head, other, head):  # one strategy, heads in turn (it keeps the last head's fee)
                    if fn == "new":
                        got = await strategy.on_post_state(_tx(), h, post, inventory_wei=inventory)
                    else:
                        got = await reference_on_post_state(strategy, _tx(), h, post, inventory)
                        for c in got if isinstance(got, list) else [got]:
                            strategy._counts.note(c)
                    if isinstance(got, list):  # found_at is the trio clock when found: not part of the sizing
                        got = [attrs.evolve(c, found_at=0.0) for c in got]
                    got_all.append(got)
                runs.append((got_all, strategy._counts.snapshot()))
            (new_all, new_counts), (ref_all, ref_counts) = runs
            assert new_all == ref_all, (case, new_all, ref_all)
            new = new_all[0]
            assert (new_counts.candidates, new_counts.rejected, new_counts.inexact_sizings) == (
                ref_counts.candidates, ref_counts.rejected, ref_counts.inexact_sizings)
            compared += 1
            candidates += len(new) if isinstance(new, list) else 0
            kinds.update([str(h.kind) for c in new for h in c.route] if isinstance(new, list) else [new.reason])
            kinds.update([str(h.kind) for c in new for h in c.route] if isinstance(new, list) else [new.reason])
    finally:
        await rpc.aclose()
    # the comparison saw real candidates through V2 pairs and V3 pools, and rejections
    assert compared == 120 and candidates > 30 and kinds["v2"] and kinds["v3"] > 30, kinds
    assert {"unprofitable", "no_inventory"} <= kinds.keys(), kinds


async def test_build_round_trip_fills_every_candidate_field() -> None:
    """The candidate of a sized trip, field by field against one written out by keyword."""
    from aether.dex import RoundTrip, encode_swap_exact_tokens_for_tokens
    from aether.messages import Call, Candidate, Hop, Source
    from aether.strategy._backrun import DEADLINE_S, _Sized, build_round_trip

    rt = RoundTrip(3 * ETHER, 6_000 * ETHER, 3 * ETHER + 12345, 12345)
    sized = _Sized(UNI, SUSHI, pairs_of(UNI), pairs_of(SUSHI), TKN, rt)
    head = attrs.evolve(HEAD, seen_at=9.5)
    tx = _tx()
    got = build_round_trip(sized, CHAIN3, source=Source.MEMPOOL_BACKRUN, head=head, victim=tx, searcher=SEARCHER,
                           gas_per_swap=150_000)
    deadline = head.timestamp + DEADLINE_S
    want = Candidate(
        source=Source.MEMPOOL_BACKRUN, target_block=head.number + 1, head_number=head.number, victim=tx,
        route=(Hop(UNI.name, UNI.router, pairs_of(UNI), WETH, TKN, rt.amount_in, rt.amount_mid),
               Hop(SUSHI.name, SUSHI.router, pairs_of(SUSHI), TKN, WETH, rt.amount_mid, rt.amount_out)),
        amount_in=rt.amount_in, amount_out=rt.amount_out, expected_gross_profit_wei=12345, gas_estimate=300_000,
        seen_at=tx.seen_at, found_at=got.found_at,
        calls=(Call(UNI.router, encode_swap_exact_tokens_for_tokens(rt.amount_in, rt.amount_mid, [WETH, TKN], SEARCHER,
                                                                     deadline)),
               Call(SUSHI.router, encode_swap_exact_tokens_for_tokens(rt.amount_mid, rt.amount_out, [TKN, WETH],
                                                                      SEARCHER, deadline))),
        validated=False, simulated_gas=(), head_timestamp=head.timestamp,
    )
    assert got == want


def pairs_of(dex: Any) -> str:
    return pair_address(dex.factory, dex.init_code_hash, WETH, TKN)
