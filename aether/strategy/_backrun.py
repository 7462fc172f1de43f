"""Backrun sizing: apply a pending victim to a copy of the book, then size the round trip.

Phase 1 trades from the searcher's WETH inventory with two plain Router02 calls
(no contract): ``swapExactTokensForTokens`` WETH -> X on the DEX where X is
cheap, then X -> WETH on the DEX where it is dear. Each call's
``amountOutMin`` is the exact predicted output: the bundle is atomic, so if
anything differs by one wei it reverts and the bundle is dropped rather than
trading at a worse price.

Uniswap V3 pools are venues too (:meth:`BackrunStrategy.on_post_state`): a
victim that moves a V2 pair or a V3 pool is backrun against every other venue
of the same token (V2 pairs of the other DEXes, V3 pools at the other fee
tiers), V2/V2 as before and every mixed or V3/V3 cycle sized by
:func:`aether.strategy._cross.size_cycle`. A V3 leg is a plain call of the
configured SwapRouter's ``exactInputSingle`` whose ``amountOutMinimum`` is the
predicted output, so it too reverts on any deviation.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import attrs
import trio

from .._errors import DecodeError, NodeError
from ..config import ChainConfig, DexConfig, DexKind
from ..dex import (
    UINT112_MAX,
    BookView,
    PoolBook,
    RoundTrip,
    SwapCall,
    best_round_trip,
    decode_swap,
    encode_swap_exact_tokens_for_tokens,
    get_amount_in,
    get_amount_out,
)
from ..dex._v3pool import V3PoolBook, V3PoolKey, V3PoolState, V3Refusal
from ..messages import Call, Candidate, Head, Hop, PendingTx, Source
from ._cross import CrossRefusal, CycleSizing, Leg, V2Leg, V3Leg, size_cycle

if TYPE_CHECKING:
    from ._poststate import PostState

__all__ = [
    "DEADLINE_S",
    "GAS_PER_SWAP",
    "GAS_PER_V3_SWAP",
    "BackrunStrategy",
    "Rejection",
    "V3Reject",
    "StrategyStatistics",
    "build_round_trip",
    "size_best_round_trip",
]

#: Seconds after the head's timestamp that our calls' ``deadline`` allows: the
#: bundle targets the next block only, so this is just slack for slow blocks.
DEADLINE_S = 120

#: Gas of one single-hop ``swapExactTokensForTokens`` through Router02, used
#: for the signed gas limit (x1.2) when validation is off. Typical on the
#: devnet: 104,565 for the first leg (WETH in), 82,606 for the second. The worst
#: case is a pair whose price accumulators are still zero (no swap yet in a
#: later block than its creation): ``_update`` then writes two slots from zero,
#: and the first leg used 149,486 gas (replay harness, 1,229 candidates). The
#: old 120,000 (limit 144,000) ran those out of gas; 150,000 (limit 180,000)
#: covers the worst case with the builder's margin.
GAS_PER_SWAP = 150_000

#: Gas of one ``exactInputSingle`` through the V3 SwapRouter, for the signed gas
#: limit when validation is off: a swap inside one range costs about 110,000
#: (first swap of a block into a fresh oracle slot more), and each initialised
#: tick crossed adds roughly 25,000-50,000; 300,000 covers several crossings.
GAS_PER_V3_SWAP = 300_000

_EXACT_INPUT_SINGLE = bytes.fromhex("414bf389")  # exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))

#: Tokens whose V3 pool keys a strategy keeps (forgotten all at once past it; recomputed on use).
_V3_KEYS_CACHED = 4096


class V3Reject(enum.StrEnum):
    """Why a victim's moved V3 pool gave no candidate (``aether_candidate_rejected_total`` reasons)."""

    NOT_IN_BOOK = "v3_not_in_book"  # the head's book does not hold the pool (not tracked yet, or unreadable)
    TICKS_NOT_LOADED = "v3_ticks_not_loaded"  # the post-swap price left the fetched ticks
    ZERO_LIQUIDITY = "v3_zero_liquidity"  # no active liquidity after the victim
    TICK_MISMATCH = "v3_tick_mismatch"  # the event's tick does not belong to its price
    OUT_OF_RANGE = "v3_out_of_range"  # the optimum lies past a leg's fetched ticks or the contract's limits


_V3_REFUSAL_REASON = {
    V3Refusal.UNREADABLE: V3Reject.NOT_IN_BOOK,
    V3Refusal.NOT_INITIALIZED: V3Reject.ZERO_LIQUIDITY,
    V3Refusal.ZERO_LIQUIDITY: V3Reject.ZERO_LIQUIDITY,
    V3Refusal.TICK_MISMATCH: V3Reject.TICK_MISMATCH,
    V3Refusal.TICKS_NOT_LOADED: V3Reject.TICKS_NOT_LOADED,
    V3Refusal.OVERFLOW: V3Reject.OUT_OF_RANGE,
}


@attrs.frozen
class Rejection:
    """Why an input produced no candidate: ``reason`` is one of
    :data:`aether.metrics.CANDIDATE_REJECT_REASONS`; ``detail`` is for logs only."""

    reason: str
    detail: str = ""


@attrs.frozen
class StrategyStatistics:
    """Counters of a strategy: candidates found and rejections by reason."""

    seen: int
    candidates: int
    rejected: tuple[tuple[str, int], ...]
    #: Cycles with a V3 leg sized without a proof of optimality (``CycleSizing.exact`` False).
    inexact_sizings: int = 0


class _Counts:
    def __init__(self) -> None:
        self.seen = 0
        self.candidates = 0
        self.rejected: Counter[str] = Counter()
        self.inexact = 0

    def note(self, result: Candidate | Rejection) -> Candidate | Rejection:
        if isinstance(result, Rejection):
            self.rejected[result.reason] += 1
        else:
            self.candidates += 1
        return result

    def snapshot(self) -> StrategyStatistics:
        return StrategyStatistics(self.seen, self.candidates, tuple(sorted(self.rejected.items())), self.inexact)


@attrs.frozen
class _Sized:
    buy: DexConfig
    sell: DexConfig
    buy_pair: str
    sell_pair: str
    token: str
    rt: RoundTrip


def size_best_round_trip(
    view: BookView,
    chain: ChainConfig,
    token: str,
    dexes: Sequence[tuple[DexConfig, str]],
    *,
    cap: int,
    must_touch: str | None = None,
) -> _Sized | None:
    """The best WETH -> ``token`` -> WETH trip over every ordered pair of ``dexes``.

    Args:
        dexes: ``(dex, pair)`` where ``pair`` is that DEX's WETH/``token`` pair.
        cap: the most WETH to put in (the searcher's inventory).
        must_touch: if set, only trips with a leg through this pair.
    """
    return _best_trip(_trip_legs(view, chain.weth, token, dexes), token, cap, must_touch)


#: One venue of :func:`_best_trip`: the DEX, its pair, and the pair's reserves oriented for
#: WETH in (``(weth, token)``) and for the token in (``(token, weth)``); None where unknown.
_TripLeg = tuple[DexConfig, str, "tuple[int, int] | None", "tuple[int, int] | None"]


def _trip_legs(view: BookView, weth: str, token: str, dexes: Iterable[tuple[DexConfig, str]]) -> list[_TripLeg]:
    """The venues of :func:`_best_trip`: each pair's reserves oriented both ways, once."""
    return [(d, p, view.oriented(p, weth), view.oriented(p, token)) for d, p in dexes]


def _best_trip(legs: Sequence[_TripLeg], token: str, cap: int, must_touch: str | None) -> _Sized | None:
    """:func:`size_best_round_trip` on reserves already oriented (each pair's looked up once)."""
    best: _Sized | None = None
    for buy, buy_pair, ra, _ in legs:
        if ra is None or min(ra) == 0:
            continue
        for sell, sell_pair, _, rb in legs:
            if sell_pair == buy_pair:
                continue
            if must_touch is not None and must_touch not in (buy_pair, sell_pair):
                continue
            if rb is None or min(rb) == 0:
                continue
            rt = best_round_trip(ra[0], ra[1], rb[0], rb[1], buy.fee_bps, sell.fee_bps, cap)
            if rt.profit > 0 and (best is None or rt.profit > best.rt.profit):
                best = _Sized(buy, sell, buy_pair, sell_pair, token, rt)
    return best


def build_round_trip(
    sized: _Sized,
    chain: ChainConfig,
    *,
    source: Source,
    head: Head,
    victim: PendingTx | None,
    searcher: str,
    gas_per_swap: int,
) -> Candidate:
    """Turn a sized trip into a :class:`Candidate` with its two Router02 calls.

    Each call's deadline is ``head.timestamp + DEADLINE_S`` (120 s) and its
    ``amountOutMin`` the exact predicted output of that call.
    """
    weth, x, rt = chain.weth, sized.token, sized.rt
    deadline = head.timestamp + DEADLINE_S
    route = (
        Hop(sized.buy.name, sized.buy.router, sized.buy_pair, weth, x, rt.amount_in, rt.amount_mid),
        Hop(sized.sell.name, sized.sell.router, sized.sell_pair, x, weth, rt.amount_mid, rt.amount_out),
    )
    calls = (
        Call(
            to=sized.buy.router,
            data=encode_swap_exact_tokens_for_tokens(rt.amount_in, rt.amount_mid, [weth, x], searcher, deadline),
        ),
        Call(
            to=sized.sell.router,
            data=encode_swap_exact_tokens_for_tokens(rt.amount_mid, rt.amount_out, [x, weth], searcher, deadline),
        ),
    )
    # Positional up to calls, in Candidate's field order (keywords cost ~0.4 us more): source,
    # target block, head number, victim, route, amounts in/out, gross, gas, seen_at, found_at, calls.
    return Candidate(
        source, head.number + 1, head.number, victim, route, rt.amount_in, rt.amount_out,
        rt.amount_out - rt.amount_in, gas_per_swap * len(calls),
        victim.seen_at if victim is not None else head.seen_at, trio.current_time(), calls,
        head_timestamp=head.timestamp,
    )


@attrs.frozen
class _Venue:
    """One place to trade WETH/``token``: a V2 pair (``reserves``, sorted order) or a V3 pool (``state``)."""

    kind: DexKind
    dex: DexConfig
    pool: str
    token0: str
    fee: int = 0
    reserves: tuple[int, int] | None = None
    state: V3PoolState | None = None


@attrs.frozen
class _Cycle:
    """A cycle with at least one V3 leg: WETH -> ``token`` on ``buy``, back on ``sell``."""

    buy: _Venue
    sell: _Venue
    token: str
    sizing: CycleSizing

    @property
    def profit(self) -> int:
        return self.sizing.profit


class _Legs:
    """The legs of one victim's venues, built once each (a V3 leg precomputes its curve)."""

    def __init__(self) -> None:
        self._legs: dict[tuple[str, str], Leg] = {}

    def leg(self, v: _Venue, token_in: str) -> Leg:
        got = self._legs.get((v.pool, token_in))
        if got is not None:
            return got
        leg: Leg
        if v.kind == DexKind.V3:
            assert v.state is not None
            leg = V3Leg(v.state, token_in, venue=f"{v.dex.name}:{v.fee}")
        else:
            assert v.reserves is not None
            r0, r1 = v.reserves
            r_in, r_out = (r0, r1) if token_in == v.token0 else (r1, r0)
            leg = V2Leg(r_in, r_out, v.dex.fee_bps, venue=v.dex.name)
        self._legs[(v.pool, token_in)] = leg
        return leg


def size_cross(
    venues: Sequence[_Venue], weth: str, token: str, *, cap: int, moved: set[str], legs: _Legs | None = None,
    gas_cost: Callable[[_Cycle], int] | None = None,
) -> tuple[_Cycle | None, list[CrossRefusal]]:
    """The best WETH -> ``token`` -> WETH cycle over ordered venue pairs with a V3 leg touching ``moved``.

    V2/V2 pairs are left to :func:`size_best_round_trip` (unchanged figures).
    Cycles are compared by gross profit less ``gas_cost(cycle)`` (wei of gas at the target
    base fee; none given: by gross): a V3/V3 cycle budgets more gas than a V2/V3 one, and
    a searcher keeps what is left after gas, not the gross.
    Returns the best cycle (or None) and the refusals met on the way (for the
    rejection reason when no cycle profits).
    """
    cost = gas_cost or (lambda _c: 0)
    legs = legs or _Legs()
    best: _Cycle | None = None
    refusals: list[CrossRefusal] = []
    for buy in venues:
        for sell in venues:
            if buy.pool == sell.pool or DexKind.V3 not in (buy.kind, sell.kind):
                continue
            if buy.pool not in moved and sell.pool not in moved:
                continue
            sized = size_cycle(legs.leg(buy, weth), legs.leg(sell, token), cap=cap)
            if sized.refusal is not None:
                refusals.append(sized.refusal)
                continue
            if sized.profit <= 0:
                continue
            cycle = _Cycle(buy, sell, token, sized)
            if best is None or cycle.profit - cost(cycle) > best.profit - cost(best):
                best = cycle
    return best, refusals


def encode_exact_input_single(
    token_in: str, token_out: str, fee: int, recipient: str, deadline: int, amount_in: int, amount_out_minimum: int
) -> bytes:
    """SwapRouter ``exactInputSingle`` calldata, no price limit (``sqrtPriceLimitX96`` 0)."""
    words = [int(token_in, 16), int(token_out, 16), fee, int(recipient, 16), deadline, amount_in, amount_out_minimum, 0]
    return _EXACT_INPUT_SINGLE + b"".join(w.to_bytes(32, "big") for w in words)


def _leg_call(v: _Venue, token_in: str, token_out: str, amount_in: int, amount_out: int, searcher: str,
              deadline: int) -> tuple[Hop, Call]:
    hop = Hop(v.dex.name, v.dex.router, v.pool, token_in, token_out, amount_in, amount_out, v.kind, v.fee)
    if v.kind == DexKind.V3:
        data = encode_exact_input_single(token_in, token_out, v.fee, searcher, deadline, amount_in, amount_out)
    else:
        data = encode_swap_exact_tokens_for_tokens(amount_in, amount_out, [token_in, token_out], searcher, deadline)
    return hop, Call(to=v.dex.router, data=data)


def cycle_gas(cycle: _Cycle, *, gas_per_swap: int = GAS_PER_SWAP, gas_per_v3_swap: int = GAS_PER_V3_SWAP) -> int:
    """The gas a cycle's two calls budget: one per leg, a V3 leg's at ``gas_per_v3_swap``."""
    return sum(gas_per_v3_swap if v.kind == DexKind.V3 else gas_per_swap for v in (cycle.buy, cycle.sell))


def build_cycle(
    cycle: _Cycle,
    chain: ChainConfig,
    *,
    source: Source,
    head: Head,
    victim: PendingTx | None,
    searcher: str,
    gas_per_swap: int = GAS_PER_SWAP,
    gas_per_v3_swap: int = GAS_PER_V3_SWAP,
) -> Candidate:
    """Turn a sized cycle into a :class:`Candidate`: a SwapRouter ``exactInputSingle`` per V3 leg,
    a Router02 ``swapExactTokensForTokens`` per V2 leg, each with the exact predicted output as its minimum."""
    weth, x, z = chain.weth, cycle.token, cycle.sizing
    deadline = head.timestamp + DEADLINE_S
    h1, c1 = _leg_call(cycle.buy, weth, x, z.amount_in, z.amount_mid, searcher, deadline)
    h2, c2 = _leg_call(cycle.sell, x, weth, z.amount_mid, z.amount_out, searcher, deadline)
    gas = cycle_gas(cycle, gas_per_swap=gas_per_swap, gas_per_v3_swap=gas_per_v3_swap)
    return Candidate(
        source=source,
        target_block=head.number + 1,
        head_number=head.number,
        victim=victim,
        route=(h1, h2),
        amount_in=z.amount_in,
        amount_out=z.amount_out,
        expected_gross_profit_wei=z.amount_out - z.amount_in,
        gas_estimate=gas,
        seen_at=victim.seen_at if victim is not None else head.seen_at,
        found_at=trio.current_time(),
        calls=(c1, c2),
        head_timestamp=head.timestamp,
    )


def _apply_victim(view: BookView, swap: SwapCall, pairs: Sequence[str], fee_bps: int) -> Rejection | None:
    """Apply every hop of the victim to ``view``, as Router02 and the pairs would.

    Returns a rejection when the victim would revert on chain: its own
    ``amountOutMin``/``amountInMax`` (or ``msg.value``) not met, an empty
    pool, a zero output, or a reserve pushed past ``uint112``.
    """
    path = swap.path
    n = len(path) - 1
    reserves: list[tuple[int, int]] = []
    for i in range(n):
        r = view.oriented(pairs[i], path[i])
        if r is None:
            return Rejection("unknown_pair", pairs[i])
        if r[0] == 0 or r[1] == 0:
            return Rejection("zero_reserves", pairs[i])
        reserves.append(r)
    amounts = [0] * (n + 1)
    if swap.exact_in:
        amounts[0] = swap.amount_in
        for i in range(n):
            out = get_amount_out(amounts[i], reserves[i][0], reserves[i][1], fee_bps)
            if out is None:
                return Rejection("overflow" if amounts[i] > UINT112_MAX else "victim_reverts", f"hop {i}")
            amounts[i + 1] = out
        if amounts[n] < swap.amount_out:
            return Rejection("victim_reverts", "INSUFFICIENT_OUTPUT_AMOUNT")
    else:
        amounts[n] = swap.amount_out
        for i in range(n - 1, -1, -1):
            a_in = get_amount_in(amounts[i + 1], reserves[i][0], reserves[i][1], fee_bps)
            if a_in is None:
                return Rejection("overflow" if amounts[i + 1] > UINT112_MAX else "victim_reverts", f"hop {i}")
            amounts[i] = a_in
        if amounts[0] > swap.amount_in:
            return Rejection("victim_reverts", "EXCESSIVE_INPUT_AMOUNT")
    for i in range(n):
        # The pair itself: a zero output reverts, and so does a reserve past uint112.
        # Hops through the same pair twice see the reserves the earlier hop left.
        r = view.oriented(pairs[i], path[i])
        assert r is not None
        if amounts[i + 1] <= 0 or amounts[i + 1] >= r[1]:
            return Rejection("victim_reverts", f"hop {i}: output {amounts[i + 1]}")
        if r[0] + amounts[i] > UINT112_MAX:
            return Rejection("overflow", f"hop {i}: reserve past uint112")
        view.apply(pairs[i], path[i], amounts[i], amounts[i + 1])
    return None


class BackrunStrategy:
    """Sizes a backrun for each decoded victim swap.

    Args:
        chain: WETH, DEXes, tokens.
        book: the shared pool book (read through views; never mutated here).
        searcher: the account that trades and receives (lowercase hex).
        gas_per_swap: gas estimate of one backrun call.
    """

    source: Source = Source.MEMPOOL_BACKRUN

    def __init__(self, chain: ChainConfig, book: PoolBook, *, searcher: str, gas_per_swap: int = GAS_PER_SWAP,
                 v3book: V3PoolBook | None = None, gas_per_v3_swap: int = GAS_PER_V3_SWAP) -> None:
        self.chain = chain
        self.book = book
        self.v3book = v3book
        self.gas_per_v3_swap = gas_per_v3_swap
        self.searcher = searcher.lower()
        self.gas_per_swap = gas_per_swap
        self._routers = {d.router.lower(): d for d in chain.dexes}
        self._known_tokens = {t.address.lower() for t in chain.tokens} | {chain.weth}
        self._counts = _Counts()
        from ._poststate import v2_dexes  # (a cycle: _poststate imports Rejection from here)

        # Once per process, not per victim: the chain's configuration does not change.
        self._v2_dexes = v2_dexes(chain)
        self._v3_keys: dict[str, list[V3PoolKey]] = {}  # token -> its WETH pools by CREATE2 (bounded)

    def statistics(self) -> StrategyStatistics:
        return self._counts.snapshot()

    async def on_victim(self, tx: PendingTx, head: Head, *, inventory_wei: int) -> Candidate | Rejection:
        """Size the best backrun of ``tx`` for block ``head.number + 1``.

        Never raises on bad input: malformed calldata, unknown selectors or
        tokens, missing pools, node failures and victims that would revert are
        all returned as a :class:`Rejection` with a named reason.
        """
        self._counts.seen += 1
        try:
            result = await self._on_victim(tx, head, inventory_wei)
        except NodeError as exc:
            result = Rejection("reserves_unavailable", type(exc).__name__)
        return self._counts.note(result)

    async def _on_victim(self, tx: PendingTx, head: Head, inventory_wei: int) -> Candidate | Rejection:
        dex = self._routers.get((tx.to or "").lower())
        if dex is None or dex.kind != DexKind.V2:
            return Rejection("not_router")
        try:
            swap = decode_swap(tx.input, tx.value)
        except DecodeError as exc:
            return Rejection(exc.reason, str(exc))
        weth = self.chain.weth
        path = swap.path
        if swap.deadline < head.timestamp + 1:
            return Rejection("victim_expired", f"deadline {swap.deadline}")
        if (swap.eth_in and path[0] != weth) or (swap.eth_out and path[-1] != weth):
            return Rejection("victim_reverts", "INVALID_PATH")
        if any(path[i] == path[i + 1] for i in range(len(path) - 1)):
            return Rejection("victim_reverts", "IDENTICAL_ADDRESSES")
        if self.chain.tokens and any(t not in self._known_tokens for t in path):
            return Rejection("unknown_token")
        if weth not in path:
            return Rejection("no_weth_leg")
        if inventory_wei <= 0:
            return Rejection("no_inventory")
        victim_pairs = [self.book.pair_for(dex, path[i], path[i + 1]) for i in range(len(path) - 1)]
        # The WETH/X pairs the victim moves, and X's WETH pair on every DEX.
        moved: list[tuple[str, str]] = []  # (pair, X)
        for i, pair in enumerate(victim_pairs):
            a, b = path[i], path[i + 1]
            if weth in (a, b):
                moved.append((pair, b if a == weth else a))
        counters: dict[str, list[tuple[DexConfig, str]]] = {}
        for _, x in moved:
            if x not in counters:
                counters[x] = [(d, self.book.pair_for(d, weth, x)) for d in self._v2_dexes]
        await self.book.ensure([*victim_pairs, *(p for lst in counters.values() for _, p in lst)])
        view = self.book.view()
        rejected = _apply_victim(view, swap, victim_pairs, dex.fee_bps)
        if rejected is not None:
            return rejected
        best: _Sized | None = None
        any_counter = False
        for pair, x in moved:
            present = [(d, p) for d, p in counters[x] if min(view.reserves(p) or (0,)) > 0]
            if len(present) < 2:
                continue
            any_counter = True
            sized = size_best_round_trip(view, self.chain, x, present, cap=inventory_wei, must_touch=pair)
            if sized is not None and (best is None or sized.rt.profit > best.rt.profit):
                best = sized
        if not any_counter:
            return Rejection("no_counter_pool")
        if best is None:
            return Rejection("unprofitable")
        return build_round_trip(
            best,
            self.chain,
            source=self.source,
            head=head,
            victim=tx,
            searcher=self.searcher,
            gas_per_swap=self.gas_per_swap,
        )

    # ------------------------------------------------------------------ router-agnostic path

    async def post_state_from_calldata(self, tx: PendingTx, head: Head) -> PostState | Rejection:
        """The Router02 fast path's post-state: the victim's decoded swaps applied to the book.

        Only for direct Router02 calls; it must equal what :class:`VictimSimulator`
        reads from the pairs' ``Sync`` logs for the same victim on the same head
        (tested on anvil), which is what makes the simulation path a drop-in.
        """
        from ._poststate import PostState, V2Reserves

        dex = self._routers.get((tx.to or "").lower())
        if dex is None:
            return Rejection("not_router")
        try:
            swap = decode_swap(tx.input, tx.value)
        except DecodeError as exc:
            return Rejection(exc.reason, str(exc))
        path = swap.path
        if swap.deadline < head.timestamp + 1:
            return Rejection("victim_expired", f"deadline {swap.deadline}")
        if any(path[i] == path[i + 1] for i in range(len(path) - 1)):
            return Rejection("victim_reverts", "IDENTICAL_ADDRESSES")
        pairs = [self.book.pair_for(dex, path[i], path[i + 1]) for i in range(len(path) - 1)]
        await self.book.ensure(pairs)
        view = self.book.view()
        rejected = _apply_victim(view, swap, pairs, dex.fee_bps)
        if rejected is not None:
            return rejected
        changed = view.changed()
        order = list(dict.fromkeys(pairs))
        return PostState(tx.hash, head.number, tuple(V2Reserves(p, *changed[p]) for p in order))

    async def on_post_state(
        self, tx: PendingTx, head: Head, post: PostState, *, inventory_wei: int
    ) -> list[Candidate] | Rejection:
        """Every gap the victim opens, from its post-state (whatever contract it called).

        For each token X whose WETH pair the victim moved, the best WETH -> X -> WETH
        trip through at least one moved pair and a counter pool on another DEX; one
        candidate per X, most profitable first. The candidates of one victim are
        alternatives (the builder lands at most one; see ``NonceTracker``).

        Raises:
            NodeError: the counter pools' reserves could not be read.
        """
        self._counts.seen += 1
        result = await self._on_post_state(tx, head, post, inventory_wei)
        if isinstance(result, Rejection):
            self._counts.note(result)
        else:
            for c in result:
                self._counts.note(c)
        return result

    def _v3_keys_of(self, token: str) -> list[V3PoolKey]:
        """:func:`~aether.strategy._poststate.v3_keys` of ``token``, computed once per token (CREATE2 x fee tiers)."""
        keys = self._v3_keys.get(token)
        if keys is None:
            from ._poststate import v3_keys

            if len(self._v3_keys) >= _V3_KEYS_CACHED:
                self._v3_keys.clear()
            keys = self._v3_keys[token] = v3_keys(self.chain, token)
        return keys

    async def _on_post_state(
        self, tx: PendingTx, head: Head, post: PostState, inventory_wei: int
    ) -> list[Candidate] | Rejection:
        weth = self.chain.weth
        known_tokens = self._known_tokens if self.chain.tokens else None
        book = self.book
        moved_state, post_v3 = post.split()
        moved: dict[str, list[str]] = {}  # X -> the moved WETH/X pairs
        for pair in moved_state:
            info = book.info(pair)
            if info is None or weth not in (info.token0, info.token1):
                continue
            x = info.other(weth)
            if known_tokens is not None and x not in known_tokens:
                continue
            moved.setdefault(x, []).append(pair)
        # The V3 pools moved: the head's book state moved to the victim's last Swap.
        moved_v3: dict[str, dict[str, V3PoolState]] = {}  # X -> pool -> post-victim state
        v3_refused: list[V3Reject] = []
        for pool, slot in post_v3.items():
            key = self.v3book.key(pool) if self.v3book is not None else None
            if key is None or weth not in (key.token0, key.token1) or pool in post.v3_unheld:
                continue
            x = key.token1 if key.token0 == weth else key.token0
            if known_tokens is not None and x not in known_tokens:
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
        unusable_v3 = ((set(post_v3) | post.v3_unheld) - {p for pools in moved_v3.values() for p in pools}
                       if self.v3book is not None else set())  # read only where a V3 book is
        if inventory_wei <= 0:
            return Rejection("no_inventory")
        dexes = self._v2_dexes
        tokens = list(dict.fromkeys([*moved, *moved_v3])) if moved_v3 else list(moved)
        pair_for = book.pair_for
        counters = {x: [(d, pair_for(d, weth, x)) for d in dexes] for x in tokens}
        wanted = [*moved_state]
        for lst in counters.values():
            wanted += [p for _, p in lst]
        await book.ensure(wanted)  # only a pair never read before costs a trip to the node
        view = book.view()
        for pair, (r0, r1) in moved_state.items():
            view.set_reserves(pair, r0, r1)
        found: list[_Sized | _Cycle] = []
        any_counter = False
        out_of_range = False  # a cycle's optimum lay past a leg's fetched ticks (said, not "unprofitable")
        legs: _Legs | None = None  # made at the first token with a V3 venue
        base_fee = head.next_base_fee  # derived once per head (Head.next_base_fee)

        def gas_cost(c: _Sized | _Cycle) -> int:
            """Wei of gas the bundle of ``c`` budgets at the target block's base fee."""
            if isinstance(c, _Sized):  # a V2 round trip: two Router02 calls (build_round_trip)
                return 2 * self.gas_per_swap * base_fee
            return cycle_gas(c, gas_per_swap=self.gas_per_swap, gas_per_v3_swap=self.gas_per_v3_swap) * base_fee

        reserves = view.reserves
        for x in tokens:
            pairs = moved.get(x, [])
            present = []
            for d, p in counters[x]:
                r = reserves(p)
                if r is not None and min(r) > 0:
                    present.append((d, p, r))
            v3_venues: list[_Venue] = []
            if self.v3book is not None:
                for key in self._v3_keys_of(x):
                    st = moved_v3.get(x, {}).get(key.address)
                    if st is None and key.address in unusable_v3:
                        continue  # the victim changed it and we hold no post-victim state: none is right
                    if st is None:
                        got = self.v3book.get(key.address)
                        st = got if got is not None and got.block == post.block else None
                    if st is not None and st.refusal() is None:
                        v3_venues.append(_Venue(DexKind.V3, book.dex(key.dex), key.address, key.token0,
                                                fee=key.fee, state=st))
            if len(present) + len(v3_venues) < 2:
                continue
            any_counter = True
            best: _Sized | _Cycle | None = None
            if len(present) >= 2:
                # size_best_round_trip for each moved pair, the venues oriented once for all of them.
                trip_legs = _trip_legs(view, weth, x, [(d, p) for d, p, _ in present])
                for pair in pairs:
                    sized = _best_trip(trip_legs, x, inventory_wei, pair)
                    if sized is not None and (best is None or sized.rt.profit > _profit(best)):
                        best = sized
            if v3_venues:  # size_cross sizes only cycles with a V3 leg: none without a V3 venue
                token0 = min(weth, x)
                venues = [_Venue(DexKind.V2, d, p, token0, reserves=r) for d, p, r in present] + v3_venues
                if legs is None:
                    legs = _Legs()
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
        if len(found) > 1:
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


def _profit(s: _Sized | _Cycle) -> int:
    return s.rt.profit if isinstance(s, _Sized) else s.profit
