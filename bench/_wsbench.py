"""Over loopback WebSocket: the bare client baseline, the Subscriber, the whole pipeline, and the soak.

The feeder (:mod:`bench._feeder`) runs in its own process and plays the node's
WebSocket side: pending transactions as fast as they are read (or paced), and
heads. The pipeline is the production one, built by
``supervisors._tree.build_pipeline`` and run by the production ``Supervisor``:
the heads and intake actors with their own subscriptions, the prefilter inline in
intake, strategy simulating every victim it lets through (``eth_simulateV1``
answered from a table by the in-memory node, at most ``SIM_BUDGET_PER_S`` a
second, as in production), sizing on the ``PoolBook`` the in-memory node fills,
validate (disabled: the simulation round trip on anvil is reported on its own),
build and risk (with its state persisted as in production). Drops are read from
the intake's statistics and the ``aether_channel_dropped`` metric.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import attrs
import orjson
import trio
from eth_account import Account
from prometheus_client import CollectorRegistry
from trio_websocket import open_websocket_url

from aether.chain import PENDING, Frame, RpcClient, Subscriber
from aether.config import Settings
from aether.dumps import RunDir
from aether.metrics import Metrics
from aether.risk import RiskEngine
from supervisors import ActorSpec, Supervisor
from supervisors._tree import Runtime, build_pipeline

from ._feeder import write_frames
from aether.strategy import ScreenSkip

from ._gen import CHAIN_ID, Market, SimTable
from ._inproc import BENCH_KEY


@contextlib.contextmanager
def feeder(frames: list[bytes], *, count: int, rate: float = 0.0, head: dict[str, str] | None = None,
           head_every: float = 1.0) -> Iterator[str]:
    """Start the feeder process; yields its ws:// URL; stops it (by its pid) on exit.

    ``head`` is the first head a ``newHeads`` subscription gets; one more follows
    every ``head_every`` seconds.
    """
    with tempfile.TemporaryDirectory(prefix="aether-bench-") as tmp:
        ff = Path(tmp) / "frames.bin"
        write_frames(ff, frames)
        port_file = Path(tmp) / "port"
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench._feeder", str(ff), "--port-file", str(port_file), "--count", str(count),
             "--rate", str(rate), "--head", orjson.dumps(head or {}).decode(), "--head-every", str(head_every)],
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

    class Count:  # a FrameSink
        def take_frame(self, frame: Frame) -> None:
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


#: The pipeline's counts, in the order a frame meets them, with what each one means.
COUNTS = {
    "screened_out": "screened out by the prefilter",
    "screened_in": "let through as victims",
    "duplicates": "skipped as re-announced",
    "rate_limited": "skipped over the simulation budget",
    "simulated": "simulated",
    "bundles": "bundles built",
    "passed": "passed every gate",
}


class _VerdictCounter:
    """The end of the line in the bench: counts verdicts where shadow mode would dump them."""

    def __init__(self, inbox: trio.MemoryReceiveChannel[Any]) -> None:
        self.inbox = inbox
        self.verdicts = 0
        self.passed = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for v in self.inbox:
            self.verdicts += 1
            self.passed += v.passed


class Pipeline:
    """The production pipeline, built by ``supervisors._tree.build_pipeline`` and run by its Supervisor.

    Heads and pending transactions both come from the feeder (two subscriptions,
    as from a node); the node's JSON-RPC side is the generated market in memory
    (pool reserves, the account state, pairs' tokens) and ``sims``, the victims'
    simulations from a table (their exact post-states). Validation and block arbitrage are off
    (the simulation round trip is reported on its own), and so is settlement
    (``bench/_settlement.py`` measures it on and off): the in-flight actor hands
    verdicts on as in production, against a generated market that has no blocks to
    settle against. The risk state is persisted to a temporary file as in
    production. The end of the line counts verdicts instead of dumping them.
    """

    def __init__(self, market: Market, url: str, state_dir: Path, sims: SimTable | None = None) -> None:
        self.market = market
        self.sims = sims or SimTable()
        self.metrics = Metrics(CollectorRegistry())
        settings = Settings(
            shadow=True, mempool_tracking=True, ws_url=url, chain=market.chain,
            state_file=state_dir / "risk-state.json", validate=False, block_arb=False,
        )
        run_dir = RunDir(state_dir, shadow=True)
        run_dir.create()
        rt = Runtime(settings=settings, metrics=self.metrics, rpc=cast(RpcClient, market.rpc(self.sims)), chain_id=CHAIN_ID,
                     signer=Account.from_key(BENCH_KEY), run_dir=run_dir)
        p = build_pipeline(rt, tail_wants_ticks=False, settle=False)
        self.actors: dict[str, Any] = {}
        self.sink = _VerdictCounter(p.verdicts)
        self.specs = [attrs.evolve(spec, factory=self._keeping(spec.name, spec.factory)) for spec in p.specs]
        self.specs.append(ActorSpec("verdicts", lambda: self.sink, outputs=[p.feedback]))
        self.supervisor = Supervisor(self.metrics)

    def _keeping(self, name: str, factory: Callable[[], Any]) -> Callable[[], Any]:
        """The spec's own factory, remembering the actor it builds (the bench reads their statistics)."""

        def build() -> Any:
            self.actors[name] = actor = factory()
            return actor

        return build

    async def start(self, nursery: trio.Nursery) -> None:
        await nursery.start(self.supervisor.run, self.specs)

    @property
    def verdicts(self) -> int:
        return self.sink.verdicts

    @property
    def engine(self) -> RiskEngine:
        return cast(RiskEngine, self.actors["risk"].engine)

    @property
    def heads(self) -> int:
        return int(self.actors["heads"].statistics().processed)

    def seen(self) -> int:
        return int(self.actors["intake"].seen)

    def dropped(self) -> int:
        m = self.metrics
        return int(self.actors["intake"].statistics().dropped
                   + m.value("aether_channel_dropped_total", channel="ws_pending")
                   + m.value("aether_channel_dropped_total", channel="victims"))

    def counts(self) -> dict[str, int]:
        """Where the frames went: screened out (by reason), let through, rate-limited, simulated, built, passed."""
        m = self.metrics
        skipped = {r.value: int(m.value("aether_mempool_screen_skipped_total", reason=r.value)) for r in ScreenSkip}
        limited = skipped.pop(ScreenSkip.SIM_BUDGET.value)
        return {
            "screened_out": sum(skipped.values()),
            "screened_in": int(self.actors["intake"].statistics().processed),
            "duplicates": int(self.actors["intake"].duplicates),
            "rate_limited": limited,
            "simulated": self.actors["strategy"].simulator.statistics().simulated,
            "bundles": int(self.actors["build"].statistics().processed),
            "verdicts": self.sink.verdicts,
            "passed": self.sink.passed,
        }

    def idle(self) -> bool:
        return all(self.actors[a].statistics().queued == 0 for a in ("strategy", "build", "risk"))


async def pipeline_run(market: Market, url: str, count: int, sims: SimTable | None = None) -> dict[str, Any]:
    """Frames through the whole pipeline: rate from the first frame to the last one screened."""
    with tempfile.TemporaryDirectory(prefix="aether-bench-") as tmp:
        p = Pipeline(market, url, Path(tmp), sims)
        async with trio.open_nursery() as nursery:
            await p.start(nursery)
            while p.seen() == 0:
                await trio.sleep(0.001)
            t0, c0 = time.perf_counter(), time.process_time()
            first = p.seen()
            while p.seen() < count:
                await trio.sleep(0.02)
            while not p.idle():
                await trio.sleep(0.001)
            rates = _rates(count - first, t0, c0)
            nursery.cancel_scope.cancel()
    return {
        **rates,
        "frames": count,
        "dropped": p.dropped(),
        "heads": p.heads,
        **p.counts(),
    }


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def soak_run(market: Market, url: str, duration_s: float, *, rate: float, sample_s: float = 5.0,
                   warmup_s: float = 30.0, progress: Any = None, sims: SimTable | None = None) -> dict[str, Any]:
    """``rate`` frames/s for ``duration_s`` (heads as the feeder sends them); RSS sampled every
    ``sample_s`` after a warm-up, the risk state's per-block sets at every new head."""
    tmp = tempfile.TemporaryDirectory(prefix="aether-bench-")
    p = Pipeline(market, url, Path(tmp.name), sims)
    samples: list[tuple[float, float]] = []
    max_state: dict[str, int] = {"risk_inflight_blocks": 0, "risk_dedup_blocks": 0}
    async with trio.open_nursery() as nursery:
        await p.start(nursery)
        t0 = time.monotonic()
        heads_seen = p.heads
        next_sample = t0 + warmup_s
        while (now := time.monotonic()) - t0 < duration_s:
            await trio.sleep(0.25)
            if p.heads != heads_seen:
                heads_seen = p.heads
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
    tmp.cleanup()
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
        "bundles": p.actors["build"].statistics().processed,
        "duplicates": p.actors["intake"].duplicates,
        "heads": p.heads,
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
