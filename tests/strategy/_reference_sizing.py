"""The sizing of a post-state as it was before the latency work (commit 2318010), verbatim.

``BackrunStrategy._on_post_state`` now keeps per-process caches (the V2 DEXes, each
token's V3 pool keys), skips the mixed-venue sizing when a token has no V3 venue, and
reads each counter pair's reserves once. ``test_sizing_equality`` holds it equal to
this, candidate for candidate, over seeded random post-states. Not used by aether.
"""

# ruff: noqa
from __future__ import annotations

from aether.config import DexKind
from aether.fees import next_base_fee
from aether.messages import Candidate, Head, PendingTx
from aether.strategy._backrun import (
    BackrunStrategy, CrossRefusal, Rejection, V3Reject, _V3_REFUSAL_REASON, _Cycle, _Legs, _Sized, _Venue,
    _profit, build_cycle, build_round_trip, cycle_gas, size_best_round_trip, size_cross,
)
from aether.dex._v3pool import V3PoolState
from aether.strategy._poststate import PostState, v2_dexes, v3_keys


async def reference_on_post_state(
    self: BackrunStrategy, tx: PendingTx, head: Head, post: PostState, inventory_wei: int
) -> list[Candidate] | Rejection:

    weth = self.chain.weth
    moved_state = post.v2()
    moved: dict[str, list[str]] = {}  # X -> the moved WETH/X pairs
    for pair in moved_state:
        info = self.book.info(pair)
        if info is None or weth not in (info.token0, info.token1):
            continue
        x = info.other(weth)
        if self.chain.tokens and x not in self._known_tokens:
            continue
        moved.setdefault(x, []).append(pair)
    # The V3 pools moved: the head's book state moved to the victim's last Swap.
    moved_v3: dict[str, dict[str, V3PoolState]] = {}  # X -> pool -> post-victim state
    v3_refused: list[V3Reject] = []
    for pool, slot in post.v3().items():
        key = self.v3book.key(pool) if self.v3book is not None else None
        if key is None or weth not in (key.token0, key.token1) or pool in post.v3_unheld:
            continue
        x = key.token1 if key.token0 == weth else key.token0
        if self.chain.tokens and x not in self._known_tokens:
            continue
        assert self.v3book is not None
        state = self.v3book.get(pool)
        if state is None or state.block != post.block:
            v3_refused.append(V3Reject.NOT_IN_BOOK)
            continue
        after = state.after_swap_event(slot.data, block=post.block)
        bad = after.refusal()
        if bad is not None:
            v3_refused.append(_V3_REFUSAL_REASON[bad])
            continue
        moved_v3.setdefault(x, {})[pool] = after
    if not moved and not moved_v3:
        return Rejection(v3_refused[0].value) if v3_refused else Rejection("no_weth_leg")
    # A V3 pool the victim moved is never a venue at the head's (pre-victim) state:
    # either its post-victim state from moved_v3, or nothing.
    # Nor one it changed whose post-victim state the post-state does not hold (liquidity
    # minted or burned; an emitter whose trust could not be established).
    unusable_v3 = (set(post.v3()) | post.v3_unheld) - {p for pools in moved_v3.values() for p in pools}
    if inventory_wei <= 0:
        return Rejection("no_inventory")
    dexes = v2_dexes(self.chain)
    tokens = list(dict.fromkeys([*moved, *moved_v3]))
    counters = {x: [(d, self.book.pair_for(d, weth, x)) for d in dexes] for x in tokens}
    await self.book.ensure([*moved_state, *(p for lst in counters.values() for _, p in lst)])
    view = self.book.view()
    for pair, (r0, r1) in moved_state.items():
        view.set_reserves(pair, r0, r1)
    found: list[_Sized | _Cycle] = []
    any_counter = False
    out_of_range = False  # a cycle's optimum lay past a leg's fetched ticks (said, not "unprofitable")
    legs = _Legs()
    base_fee = next_base_fee(head.base_fee, head.gas_used, head.gas_limit)

    def gas_cost(c: _Sized | _Cycle) -> int:
        """Wei of gas the bundle of ``c`` budgets at the target block's base fee."""
        if isinstance(c, _Sized):  # a V2 round trip: two Router02 calls (build_round_trip)
            return 2 * self.gas_per_swap * base_fee
        return cycle_gas(c, gas_per_swap=self.gas_per_swap, gas_per_v3_swap=self.gas_per_v3_swap) * base_fee

    for x in tokens:
        pairs = moved.get(x, [])
        present = [(d, p) for d, p in counters[x] if min(view.reserves(p) or (0,)) > 0]
        venues = [_Venue(DexKind.V2, d, p, min(weth, x), reserves=view.reserves(p)) for d, p in present]
        if self.v3book is not None:
            for key in v3_keys(self.chain, x):
                st = moved_v3.get(x, {}).get(key.address)
                if st is None and key.address in unusable_v3:
                    continue  # the victim changed it and we hold no post-victim state: none is right
                if st is None:
                    got = self.v3book.get(key.address)
                    st = got if got is not None and got.block == post.block else None
                if st is not None and st.refusal() is None:
                    venues.append(_Venue(DexKind.V3, self.book.dex(key.dex), key.address, key.token0,
                                         fee=key.fee, state=st))
        if len(venues) < 2:
            continue
        any_counter = True
        best: _Sized | _Cycle | None = None
        if len(present) >= 2:
            for pair in pairs:
                sized = size_best_round_trip(view, self.chain, x, present, cap=inventory_wei, must_touch=pair)
                if sized is not None and (best is None or sized.rt.profit > _profit(best)):
                    best = sized
        cycle, refusals = size_cross(venues, weth, x, cap=inventory_wei,
                                     moved={*pairs, *moved_v3.get(x, {})}, legs=legs, gas_cost=gas_cost)
        if CrossRefusal.OUT_OF_RANGE in refusals:
            out_of_range = True
        # V2/V2 against a cycle with a V3 leg: by what is left after gas at the target
        # base fee (a V3 leg budgets twice a V2 leg's gas), never by gross alone.
        if cycle is not None and (best is None or _profit(cycle) - gas_cost(cycle) > _profit(best) - gas_cost(best)):
            best = cycle
        if best is not None:
            found.append(best)
    if not any_counter:
        return Rejection(v3_refused[0].value) if v3_refused else Rejection("no_counter_pool")
    if not found:
        return Rejection(V3Reject.OUT_OF_RANGE.value if out_of_range else "unprofitable")
    found.sort(key=_profit, reverse=True)
    out: list[Candidate] = []
    for s in found:
        if isinstance(s, _Cycle):
            if not s.sizing.exact:
                self._counts.inexact += 1
            out.append(build_cycle(s, self.chain, source=self.source, head=head, victim=tx,
                                   searcher=self.searcher, gas_per_swap=self.gas_per_swap,
                                   gas_per_v3_swap=self.gas_per_v3_swap))
        else:
            out.append(build_round_trip(s, self.chain, source=self.source, head=head, victim=tx,
                                        searcher=self.searcher, gas_per_swap=self.gas_per_swap))
    return out
