"""The strategy actor: owns the pool book and both opportunity sources.

Input is one channel carrying :class:`Tick` (from heads) and :class:`PendingTx`
(from intake). On a tick the book is refreshed (one batched call for every
tracked pair) and the block-driven source looks for gaps; on a victim the
backrun source sizes a backrun against a copy of the book. Candidates go on to
validation; every opportunity that produced none is counted with its reason.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from .._errors import NodeError
from ..config import ChainConfig
from ..chain import RpcClient
from ..messages import ActorStatistics, Candidate, PendingTx, Tick
from ..metrics import Metrics

__all__ = ["StrategyActor"]

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
    ) -> None:
        from ..dex import PoolBook
        from ..strategy import BackrunStrategy, BlockArbStrategy

        self._inbox = inbox
        self._out = out
        self._metrics = metrics
        self._book = PoolBook(rpc, chain)
        self._backrun = BackrunStrategy(chain, self._book, searcher=searcher)
        self._block_arb = BlockArbStrategy(chain, self._book, searcher=searcher) if block_arb else None
        self._tick: Tick | None = None
        self._processed = 0
        self._rejected = 0

    def statistics(self) -> ActorStatistics:
        return ActorStatistics(queued=self._inbox.statistics().current_buffer_used, processed=self._processed,
                               rejected=self._rejected)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for msg in self._inbox:
            if isinstance(msg, Tick):
                await self._on_tick(msg)
            else:
                await self._on_victim(msg)

    def _reject(self, source: str, reason: str) -> None:
        self._rejected += 1
        self._metrics.candidate_rejected.labels(source, reason).inc()

    async def _emit(self, result: Any, source: str) -> None:
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
            self._reject("block_arb", "reserves_unavailable")
            return
        self._tick = tick
        if self._block_arb is None:
            return
        for result in await self._block_arb.on_head(tick.head, inventory_wei=self._inventory()):
            await self._emit(result, "block_arb")

    async def _on_victim(self, tx: PendingTx) -> None:
        tick = self._tick
        if tick is None:  # no head yet, or the last refresh failed
            self._reject("mempool_backrun", "reserves_unavailable")
            return
        try:
            result = await self._backrun.on_victim(tx, tick.head, inventory_wei=self._inventory())
        except NodeError as exc:
            log.debug("reserves for victim unavailable: %s", exc)
            self._reject("mempool_backrun", "reserves_unavailable")
            return
        await self._emit(result, "mempool_backrun")
