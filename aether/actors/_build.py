"""The bundle-builder actor: candidate in, signed :class:`Bundle` out.

It owns the searcher's signer and the nonce tracker. Input carries ticks (the
head the bundle targets, the node's pending nonce) and validated candidates.
A candidate found at an older head than the current one targets a block that
is already being built on: dropped and counted as ``stale_head``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import trio

from ..messages import ActorStatistics, Bundle, Candidate, Tick
from ..metrics import Metrics

if TYPE_CHECKING:
    from ..bundle import BundleBuilder, NonceTracker

__all__ = ["BuilderActor"]

log = logging.getLogger("aether.actors.build")


class BuilderActor:
    def __init__(
        self,
        *,
        builder: BundleBuilder,
        nonces: NonceTracker,
        metrics: Metrics,
        inbox: trio.MemoryReceiveChannel[Tick | Candidate],
        out: trio.MemorySendChannel[Bundle],
    ) -> None:
        self._builder = builder
        self._nonces = nonces
        self._metrics = metrics
        self._inbox = inbox
        self._out = out
        self._tick: Tick | None = None
        self._processed = 0
        self._rejected = 0

    def statistics(self) -> ActorStatistics:
        return ActorStatistics(queued=self._inbox.statistics().current_buffer_used, processed=self._processed,
                               rejected=self._rejected)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for msg in self._inbox:
            if isinstance(msg, Tick):
                self._tick = msg
                if msg.pending_nonce is not None:
                    self._nonces.reset(msg.pending_nonce)
                continue
            bundle = self.build(msg)
            if bundle is not None:
                await self._out.send(bundle)

    def build(self, candidate: Candidate) -> Bundle | None:
        tick = self._tick
        if tick is None or candidate.target_block != tick.head.number + 1 or tick.pending_nonce is None:
            self._reject(candidate, "stale_head")
            return None
        try:
            bundle = self._builder.build(candidate, tick.head, now_ns=time.time_ns())
        except Exception as exc:  # a bad candidate must not take the builder down
            log.warning("bundle build failed for %s: %s", candidate.source, type(exc).__name__)
            self._reject(candidate, "build_failed")
            return None
        self._processed += 1
        self._metrics.bundles_built.labels(bundle.source).inc()
        self._metrics.predicted_profit.labels(bundle.source).inc(bundle.expected_gross_profit_wei)
        return bundle

    def _reject(self, candidate: Candidate, reason: str) -> None:
        self._rejected += 1
        self._metrics.candidate_rejected.labels(candidate.source, reason).inc()
