"""The validation actor: simulate [victim, backrun] on the node before building.

A few workers share one input channel so a slow simulation does not hold up
the next candidate. With validation switched off (shadow measurements of its
cost only; live mode refuses to start that way) candidates pass through
unvalidated and the dump says so.
"""

from __future__ import annotations

import logging
import time

import trio

from .._errors import NodeError
from ..chain import RpcClient
from ..messages import ActorStatistics, Candidate
from ..metrics import Metrics

__all__ = ["ValidatorActor"]

log = logging.getLogger("aether.actors.validate")


class ValidatorActor:
    def __init__(
        self,
        *,
        rpc: RpcClient,
        searcher: str,
        metrics: Metrics,
        inbox: trio.MemoryReceiveChannel[Candidate],
        out: trio.MemorySendChannel[Candidate],
        enabled: bool = True,
        workers: int = 4,
    ) -> None:
        from ..strategy import Validator

        self._validator = Validator(rpc, searcher=searcher)
        self._metrics = metrics
        self._inbox = inbox
        self._out = out
        self._enabled = enabled
        self._workers = workers
        self._processed = 0
        self._rejected = 0

    def statistics(self) -> ActorStatistics:
        return ActorStatistics(queued=self._inbox.statistics().current_buffer_used, processed=self._processed,
                               rejected=self._rejected)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for i in range(self._workers):
                nursery.start_soon(self._work, name=f"validate-worker-{i}")
            task_status.started()

    async def _work(self) -> None:
        async for candidate in self._inbox:
            if not self._enabled:
                await self._out.send(candidate)
                continue
            t0 = time.perf_counter()
            try:
                result = await self._validator.validate(candidate)
            except NodeError as exc:
                log.debug("validation failed at the node: %s", exc)
                self._rejected += 1
                self._metrics.candidate_rejected.labels(candidate.source, "validation_failed").inc()
                continue
            finally:
                self._metrics.validation_seconds.observe(time.perf_counter() - t0)
            if isinstance(result, Candidate):
                self._processed += 1
                await self._out.send(result)
            else:
                self._rejected += 1
                self._metrics.candidate_rejected.labels(candidate.source, result.reason).inc()
