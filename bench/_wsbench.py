"""Over loopback WebSocket: the bare client baseline, the whole pipeline, and the soak.

The feeder (:mod:`bench._feeder`) runs in its own process. The pipeline is the
real ``IntakeActor`` (with its own ``Subscriber``), ``StrategyActor`` (its
``PoolBook`` reads the generated market through an in-memory node),
``ValidatorActor`` (disabled: the simulation round trip is reported on its own),
``BuilderActor`` and ``RiskActor``, wired with the production queue sizes of
``supervisors/_tree.py``. Ticks are injected as a heads actor would send them.
Drops are read from the actors' statistics and the ``aether_channel_dropped``
metric.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import trio
from eth_account import Account
from prometheus_client import CollectorRegistry
from trio_websocket import open_websocket_url

from aether.actors import BuilderActor, IntakeActor, RiskActor, StrategyActor, ValidatorActor
from aether.bundle import BundleBuilder, NonceTracker
from aether.chain import PENDING, Frame, Subscriber
from aether.config import RiskLimits
from aether.metrics import Metrics
from aether.risk import RiskEngine

from ._feeder import write_frames
from ._gen import CHAIN_ID, Market
from ._inproc import BENCH_KEY

VICTIM_QUEUE = 1024  # supervisors/_tree.py
QUEUE = 256


@contextlib.contextmanager
def feeder(frames: list[bytes], *, count: int, rate: float = 0.0) -> Iterator[str]:
    """Start the feeder process; yields its ws:// URL; stops it (by its pid) on exit."""
    with tempfile.TemporaryDirectory(prefix="aether-bench-") as tmp:
        ff = Path(tmp) / "frames.bin"
        write_frames(ff, frames)
        port_file = Path(tmp) / "port"
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench._feeder", str(ff), "--port-file", str(port_file), "--count", str(count),
             "--rate", str(rate)],
            cwd=Path(__file__).resolve().parent.parent,
        )
        try:
            deadline = time.monotonic() + 30
            while not port_file.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("feeder did not start")
                time.sleep(0.02)
            yield f"ws://127.0.0.1:{port_file.read_text()}"
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def bare_client(url: str, count: int) -> dict[str, float]:
    """A bare trio-websocket client that only receives and parses: frames per second (wall and CPU)."""
    async with open_websocket_url(url, message_queue_size=256, max_message_size=4 * 1024 * 1024) as ws:
        await ws.send_message(orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe",
                                            "params": ["newPendingTransactions", True]}).decode())
        orjson.loads(await ws.get_message())
        orjson.loads(await ws.get_message())
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(count - 1):
            orjson.loads(await ws.get_message())
        return _rates(count - 1, t0, c0)


def _rates(frames: int, t0: float, c0: float) -> dict[str, float]:
    """Frames per wall second and per CPU second of this process (the machine is shared:
    under load the wall rate shows our share of it, the CPU rate what a frame costs)."""
    return {"rate": frames / (time.perf_counter() - t0), "cpu_rate": frames / max(1e-9, time.process_time() - c0)}


async def subscriber_client(url: str, count: int) -> dict[str, float]:
    """The same frames through aether's ``Subscriber`` into a sink that only counts: frames per second.

    What the subscription costs on top of the bare client: its frame checks, the
    ``Frame`` stamps and the sink call, with the receive buffer and queue it sets.
    """
    seen = 0
    t0 = c0 = 0.0
    done = trio.Event()

    class Count:
        def send_nowait(self, frame: Frame) -> None:
            nonlocal seen, t0, c0
            seen += 1
            if seen == 1:
                t0, c0 = time.perf_counter(), time.process_time()
            elif seen == count:
                done.set()

    sub = Subscriber(url, PENDING, connect_timeout=10.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sub.run, Count())
        await done.wait()
        rates = _rates(count - 1, t0, c0)
        nursery.cancel_scope.cancel()
    return rates


class Pipeline:
    """The real actors from intake to risk, plus a sink that counts verdicts."""

    def __init__(self, market: Market, url: str) -> None:
        self.market = market
        self.metrics = Metrics(CollectorRegistry())
        m = self.metrics
        strategy_tx, strategy_rx = trio.open_memory_channel[Any](VICTIM_QUEUE)
        validate_tx, validate_rx = trio.open_memory_channel[Any](QUEUE)
        build_tx, build_rx = trio.open_memory_channel[Any](QUEUE)
        risk_tx, risk_rx = trio.open_memory_channel[Any](QUEUE)
        self.verdict_tx, self.verdict_rx = trio.open_memory_channel[Any](QUEUE)
        self.heads_outs = [strategy_tx.clone(), build_tx.clone(), risk_tx.clone()]
        rpc: Any = market.rpc()
        account = Account.from_key(BENCH_KEY)
        searcher = account.address.lower()
        self.nonces = NonceTracker()
        self.engine = RiskEngine(RiskLimits(), metrics=m)
        self.intake = IntakeActor(ws_url=url, rpc=rpc, chain_id=CHAIN_ID,
                                  routers={d.router for d in market.chain.dexes}, metrics=m, out=strategy_tx.clone())
        self.strategy = StrategyActor(rpc=rpc, chain=market.chain, searcher=searcher, metrics=m, inbox=strategy_rx,
                                      out=validate_tx, block_arb=False)
        self.validator = ValidatorActor(rpc=rpc, searcher=searcher, metrics=m, inbox=validate_rx,
                                        out=build_tx.clone(), enabled=False)
        self.builder = BuilderActor(
            builder=BundleBuilder(account, CHAIN_ID, tip_share_bps=8000, nonces=self.nonces),
            nonces=self.nonces, metrics=m, inbox=build_rx, out=risk_tx.clone())
        self.risk = RiskActor(engine=self.engine, metrics=m, inbox=risk_rx, feedback=None, out=self.verdict_tx)
        for ch in (strategy_tx, build_tx, risk_tx):
            ch.close()
        self.verdicts = 0
        self.passed = 0
        self.head_number = market.head.number

    async def head(self) -> None:
        tick = self.market.tick(self.head_number, seen_at=trio.current_time())
        for out in self.heads_outs:
            await out.send(tick)
        self.head_number += 1

    async def _sink(self) -> None:
        async for v in self.verdict_rx:
            self.verdicts += 1
            self.passed += v.passed

    async def start(self, nursery: trio.Nursery) -> None:
        await self.head()
        for actor in (self.strategy, self.validator, self.builder, self.risk):
            await nursery.start(actor.run)
        nursery.start_soon(self._sink)
        await nursery.start(self.intake.run)

    def seen(self) -> int:
        return self.intake.seen

    def dropped(self) -> int:
        m = self.metrics
        return int(self.intake.statistics().dropped + m.value("aether_channel_dropped_total", channel="ws_pending")
                   + m.value("aether_channel_dropped_total", channel="victims"))

    def idle(self) -> bool:
        return all(a.statistics().queued == 0 for a in (self.strategy, self.builder, self.risk))


async def pipeline_run(market: Market, url: str, count: int, *, head_every_s: float = 1.0) -> dict[str, Any]:
    """Frames through the whole pipeline: rate from the first frame to the last one screened."""
    p = Pipeline(market, url)
    async with trio.open_nursery() as nursery:
        await p.start(nursery)
        while p.seen() == 0:
            await trio.sleep(0.001)
        t0, c0 = time.perf_counter(), time.process_time()
        first = p.seen()
        next_head = time.monotonic() + head_every_s
        while p.seen() < count:
            await trio.sleep(0.02)
            if time.monotonic() >= next_head:
                await p.head()
                next_head += head_every_s
        while not p.idle():
            await trio.sleep(0.001)
        rates = _rates(count - first, t0, c0)
        nursery.cancel_scope.cancel()
    return {
        **rates,
        "frames": count,
        "dropped": p.dropped(),
        "victims": p.intake.statistics().processed,
        "bundles": p.builder.statistics().processed,
        "verdicts": p.verdicts,
        "passed": p.passed,
    }


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def soak_run(market: Market, url: str, duration_s: float, *, rate: float, head_every_s: float = 12.0,
                   sample_s: float = 5.0, warmup_s: float = 30.0,
                   progress: Any = None) -> dict[str, Any]:
    """``rate`` frames/s for ``duration_s``; RSS sampled every ``sample_s`` after a warm-up."""
    p = Pipeline(market, url)
    samples: list[tuple[float, float]] = []
    max_state: dict[str, int] = {"risk_inflight_blocks": 0, "risk_dedup_blocks": 0}
    async with trio.open_nursery() as nursery:
        await p.start(nursery)
        t0 = time.monotonic()
        next_head = t0 + head_every_s
        next_sample = t0 + warmup_s
        while (now := time.monotonic()) - t0 < duration_s:
            await trio.sleep(0.25)
            if now >= next_head:
                await p.head()
                next_head += head_every_s
                snap = p.engine.state
                max_state["risk_inflight_blocks"] = max(max_state["risk_inflight_blocks"], len(snap.inflight))
                max_state["risk_dedup_blocks"] = max(max_state["risk_dedup_blocks"],
                                                     len({b for b, _ in snap.dedup_keys}))
            if now >= next_sample:
                samples.append((now - t0, rss_mb()))
                next_sample += sample_s
                if progress is not None:
                    progress(now - t0, samples[-1][1], p.seen())
        seen = p.seen()
        nursery.cancel_scope.cancel()
    growth = samples[-1][1] - samples[0][1] if len(samples) > 1 else 0.0
    slope = _slope(samples) * 60.0  # MB per minute
    return {
        "duration_s": duration_s,
        "frames": seen,
        "rate": seen / duration_s,
        "dropped": p.dropped(),
        "rss_start_mb": samples[0][1] if samples else float("nan"),
        "rss_end_mb": samples[-1][1] if samples else float("nan"),
        "rss_growth_mb": growth,
        "rss_slope_mb_per_min": slope,
        "rss_growth_30min_mb": max(0.0, slope) * 30.0,
        "bundles": p.builder.statistics().processed,
        "heads": p.head_number - market.head.number,
        **max_state,
        "samples": samples,
    }


def _slope(samples: list[tuple[float, float]]) -> float:
    if len(samples) < 2:
        return 0.0
    n = len(samples)
    mx = sum(t for t, _ in samples) / n
    my = sum(v for _, v in samples) / n
    den = sum((t - mx) ** 2 for t, _ in samples)
    return sum((t - mx) * (v - my) for t, v in samples) / den if den else 0.0
