"""The strategy actor: owns the pool book and both opportunity sources.

Input is one channel carrying :class:`Tick` (from heads) and :class:`PendingTx`
(from intake). On a tick the book is refreshed (one batched call for every
tracked pair) and the block-driven source looks for gaps; on a victim the
backrun source sizes a backrun against a copy of the book. Candidates go on to
validation; every opportunity that produced none is counted with its reason.

With ``simulate_victims`` (what ``aether run`` uses) a victim's effect is not
decoded from its calldata: it is simulated on the head (:class:`VictimSimulator`)
and read from the tracked pairs' ``Sync`` logs, whatever contract it called.
Simulations run concurrently, at most ``sim_concurrency`` at once (the actor waits
for a free slot, so the inbox, bounded, absorbs a burst and intake counts what
overflows it) and at most ``sim_budget_per_s`` a second (beyond it a victim is
skipped and counted). The book has one owner at a time: a lock orders head
refreshes and the sizing that follows each simulation, and a post-state computed
on a head that is no longer the book's is rejected as ``stale_head``.

With a ``kind = "v3"`` DEX configured, a :class:`~aether.dex.V3PoolBook` is
refreshed on every head beside the V2 book (three batched round trips for all
its pools): the WETH pools of the listed tokens (or, without a token list, of
the tokens of the tracked V2 pairs) at every configured fee tier, by CREATE2.
A pool that cannot be read is absent for that head; a failed refresh empties
the V3 book (fail closed) and V2 sizing goes on.
"""

from __future__ import annotations

import logging

import trio

from .._errors import NodeError
from ..config import ChainConfig
from ..chain import RpcClient
from ..dex import V3PoolBook
from ..messages import ActorStatistics, Candidate, PendingTx, Source, Tick
from ..metrics import Metrics
from ..strategy._backrun import Rejection
from ..strategy._poststate import PostState, ScreenSkip, VictimSimulator
from ..strategy._screen import Prefilter, SimBudget

__all__ = ["SIM_BUDGET_PER_S", "SIM_CONCURRENCY", "StrategyActor"]

#: Victim simulations in flight at once (each holds one HTTP connection to the node).
SIM_CONCURRENCY = 16
#: Victim simulations a second (10x mainnet's ~30 pending tx/s, all of them).
SIM_BUDGET_PER_S = 300.0

log = logging.getLogger("aether.actors.strategy")


class StrategyActor:
    def __init__(
        self,
        *,
        rpc: RpcClient,
        chain: ChainConfig,
        searcher: str,
        metrics: Metrics,
        inbox: trio.MemoryReceiveChannel[Tick | PendingTx],
        out: trio.MemorySendChannel[Candidate],
        block_arb: bool = True,
        simulate_victims: bool = False,
        prefilter: Prefilter | None = None,
        sim_concurrency: int = SIM_CONCURRENCY,
        sim_budget_per_s: float = SIM_BUDGET_PER_S,
        sim_timeout_s: float = 1.0,
    ) -> None:
        from ..dex import PoolBook, V3PoolBook
        from ..strategy import BackrunStrategy, BlockArbStrategy
        from ..strategy._poststate import v3_dexes

        self._inbox = inbox
        self._out = out
        self._metrics = metrics
        self._book = PoolBook(rpc, chain)
        self._chain = chain
        self._v3book: V3PoolBook | None = V3PoolBook(rpc) if v3_dexes(chain) else None
        self._backrun = BackrunStrategy(chain, self._book, searcher=searcher, v3book=self._v3book)
        self._block_arb = BlockArbStrategy(chain, self._book, searcher=searcher) if block_arb else None
        self._tick: Tick | None = None
        self._processed = 0
        self._rejected = 0
        self._prefilter = prefilter
        self._sim: VictimSimulator | None = None
        if simulate_victims:
            if sim_concurrency < 1:
                raise ValueError(f"sim_concurrency must be >= 1, not {sim_concurrency}")
            self._sim = VictimSimulator(rpc, self._book, timeout_s=sim_timeout_s,
                                        on_untrusted=lambda n: metrics.untrusted_logs.inc(n), v3book=self._v3book)
        self._slots = trio.CapacityLimiter(max(1, sim_concurrency))
        self._budget = SimBudget(sim_budget_per_s)
        self._book_lock = trio.Lock()

    def statistics(self) -> ActorStatistics:
        return ActorStatistics(queued=self._inbox.statistics().current_buffer_used, processed=self._processed,
                               rejected=self._rejected)

    @property
    def simulator(self) -> VictimSimulator | None:
        return self._sim

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started()
            async for msg in self._inbox:
                if isinstance(msg, Tick):
                    async with self._book_lock:
                        await self._on_tick(msg)
                elif self._sim is None:
                    await self._on_victim(msg)
                else:
                    await self._start_simulation(nursery, msg)

    async def _start_simulation(self, nursery: trio.Nursery, tx: PendingTx) -> None:
        tick = self._tick
        if tick is None:  # no head yet, or the last refresh failed
            self._reject(Source.MEMPOOL_BACKRUN, "reserves_unavailable")
            return
        if not self._budget.take(trio.current_time()):
            self._metrics.screen_skipped.labels(ScreenSkip.SIM_BUDGET).inc()
            return
        token = object()
        await self._slots.acquire_on_behalf_of(token)  # bounded concurrency; the inbox waits
        nursery.start_soon(self._simulate_and_size, tx, tick, token)

    async def _simulate_and_size(self, tx: PendingTx, tick: Tick, token: object) -> None:
        assert self._sim is not None
        try:
            t0 = trio.current_time()
            post = await self._sim.simulate(tx, tick.head)
            self._metrics.victim_sim_seconds.observe(trio.current_time() - t0)
            if isinstance(post, Rejection):
                self._reject(Source.MEMPOOL_BACKRUN, post.reason)
                return
            if self._prefilter is not None:
                self._prefilter.learn([tx.to, *post.v2(), *post.v3()])
            result = await self._size(tx, tick, post)
        finally:
            self._slots.release_on_behalf_of(token)
        if isinstance(result, Rejection):
            self._reject(Source.MEMPOOL_BACKRUN, result.reason)
            return
        for cand in result:
            await self._emit(cand, Source.MEMPOOL_BACKRUN)

    async def _size(self, tx: PendingTx, tick: Tick, post: PostState) -> list[Candidate] | Rejection:
        async with self._book_lock:
            current = self._tick
            # The same number with another hash is a reorg: the simulated state is gone too.
            if current is None or current.head.number != post.block or current.head.hash != tick.head.hash:
                return Rejection("stale_head", f"simulated on {post.block}")
            try:
                return await self._backrun.on_post_state(tx, current.head, post, inventory_wei=self._inventory())
            except NodeError as exc:
                log.debug("reserves for victim unavailable: %s", exc)
                return Rejection("reserves_unavailable")

    def _reject(self, source: Source, reason: str) -> None:
        self._rejected += 1
        self._metrics.candidate_rejected.labels(source, reason).inc()

    async def _emit(self, result: Candidate | Rejection, source: Source) -> None:
        if isinstance(result, Candidate):
            self._processed += 1
            self._metrics.candidates.labels(result.source).inc()
            await self._out.send(result)
        else:
            self._reject(source, result.reason)

    def _inventory(self) -> int:
        t = self._tick
        return 0 if t is None or t.weth_balance_wei is None else t.weth_balance_wei

    async def _on_tick(self, tick: Tick) -> None:
        try:
            await self._book.refresh(hex(tick.head.number))
        except NodeError as exc:
            # Never size against the previous block's reserves as if they were this head's:
            # victims are refused until a refresh succeeds.
            self._tick = None
            log.warning("reserves at head %d unavailable: %s", tick.head.number, exc)
            self._reject(Source.BLOCK_ARB, "reserves_unavailable")
            return
        await self._refresh_v3(tick.head.number)
        self._tick = tick
        if self._prefilter is not None:
            self._prefilter.learn(self._book.tracked())  # a bot calling pair.swap directly names only the pair
        if self._block_arb is None:
            return
        for result in await self._block_arb.on_head(tick.head, inventory_wei=self._inventory()):
            await self._emit(result, Source.BLOCK_ARB)

    @property
    def v3book(self) -> V3PoolBook | None:
        return self._v3book

    async def _refresh_v3(self, block: int) -> None:
        """Read the V3 pools of the tracked tokens at ``block``; on failure the V3 book is empty (fail closed)."""
        from ..strategy._poststate import v3_keys

        v3 = self._v3book
        if v3 is None:
            return
        weth = self._chain.weth
        if self._chain.tokens:
            tokens = [t.address.lower() for t in self._chain.tokens]
        else:
            tokens = [i.other(weth) for i in self._book.tracked().values() if weth in (i.token0, i.token1)]
        v3.track([k for x in dict.fromkeys(tokens) for k in v3_keys(self._chain, x)])
        try:
            await v3.refresh_tracked(block)
        except NodeError as exc:
            log.warning("V3 pools at head %d unavailable: %s", block, exc)

    async def _on_victim(self, tx: PendingTx) -> None:
        tick = self._tick
        if tick is None:  # no head yet, or the last refresh failed
            self._reject(Source.MEMPOOL_BACKRUN, "reserves_unavailable")
            return
        try:
            result = await self._backrun.on_victim(tx, tick.head, inventory_wei=self._inventory())
        except NodeError as exc:
            log.debug("reserves for victim unavailable: %s", exc)
            self._reject(Source.MEMPOOL_BACKRUN, "reserves_unavailable")
            return
        await self._emit(result, Source.MEMPOOL_BACKRUN)
