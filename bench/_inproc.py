"""In-process figures: screening throughput, frame-to-gated-bundle latency, its floor.

Everything runs the real pieces on pre-generated frames, no network:
``Subscriber``'s frame parser, ``IntakeActor.screen``, ``BackrunStrategy.on_victim``
against a :class:`~aether.dex.PoolBook` filled from the generated market,
``BundleBuilder.build`` and ``RiskEngine.evaluate`` (+ ``commit``, as the risk
actor does). Each repetition measures the subject and its baseline back to back,
so the ratio is taken under the same machine load.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import orjson
import trio
from eth_account import Account
from prometheus_client import CollectorRegistry

from aether.actors import IntakeActor
from aether.bundle import BundleBuilder, Eip1559Signer, NonceTracker
from aether.chain import Frame, Subscriber
from aether.config import RiskLimits
from aether.dex import PoolBook
from aether.messages import Candidate, Head, PendingTx, Tick
from aether.metrics import Metrics
from aether.risk import RiskEngine
from aether.strategy import BackrunStrategy, Prefilter

from ._gen import CHAIN_ID, SUB_ID, Market, Stream

#: A throwaway searcher key for the bench only (never funded anywhere).
BENCH_KEY = "0x" + "42" * 32
#: Candidates per head before the bench moves to the next block (mainnet sees ~5-20 victims a block).
CANDIDATES_PER_HEAD = 5


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


class Rig:
    """The real actors of the candidate path, wired in-process (no I/O)."""

    def __init__(self, market: Market, metrics: Metrics | None = None, *, prefilter: bool = False) -> None:
        self.market = market
        #: The production screen (``aether run``: victims simulated whatever they call) or the
        #: Router02-only one the calldata path uses.
        self.prefilter = Prefilter(market.chain) if prefilter else None
        self.metrics = metrics or Metrics(CollectorRegistry())
        self.victims_tx, self.victims_rx = trio.open_memory_channel[PendingTx](1 << 20)
        self.sub = Subscriber("ws://127.0.0.1:1", "newPendingTransactions", metrics=self.metrics)
        self.intake = self._intake()
        self.account = Account.from_key(BENCH_KEY)
        self.book = PoolBook(market.rpc(), market.chain)
        self.strategy = BackrunStrategy(market.chain, self.book, searcher=self.account.address)
        self.nonces = NonceTracker()
        self.builder = BundleBuilder(self.account, CHAIN_ID, tip_share_bps=8000, nonces=self.nonces)
        self.risk = RiskEngine(RiskLimits(), metrics=self.metrics)
        self.tick: Tick = market.tick()
        self._since_head = 0

    def _intake(self) -> IntakeActor:
        return IntakeActor(ws_url="ws://127.0.0.1:1", rpc=None, chain_id=CHAIN_ID,  # type: ignore[arg-type]
                           routers={d.router for d in self.market.chain.dexes}, metrics=self.metrics,
                           out=self.victims_tx, prefilter=self.prefilter)

    def new_pass(self) -> None:
        """A fresh intake for another pass over the same frames (intake skips a hash it has seen)."""
        self.intake = self._intake()

    async def start(self) -> None:
        await self.market.fill(self.book)
        self.new_head(self.market.head.number)

    def new_head(self, number: int) -> None:
        self.tick = self.market.tick(number, seen_at=trio.current_time())
        self.risk.on_tick(self.tick)
        self.nonces.reset(0)
        self._since_head = 0

    @property
    def head(self) -> Head:
        return self.tick.head

    def screen(self, message: bytes) -> PendingTx | None:
        """One frame as the subscriber and intake see it: parse, stamp, screen."""
        result = self.sub._parse(message, SUB_ID)  # the Subscriber's own frame parser
        tx = self.intake.screen(Frame(result, trio.current_time(), time.time_ns()))  # type: ignore[arg-type]
        if tx is not None:
            self.victims_rx.receive_nowait()
        return tx

    async def candidate_path(self, message: bytes) -> Any:
        """Frame bytes -> verdict (or the reason there is none). Moves to a new head every few bundles."""
        tx = self.screen(message)
        if tx is None:
            return None
        result = await self.strategy.on_victim(tx, self.head, inventory_wei=self.tick.weth_balance_wei or 0)
        if not isinstance(result, Candidate):
            return result
        bundle = self.builder.build(result, self.head, now_ns=time.time_ns())
        verdict = self.risk.evaluate(bundle)
        if verdict.passed:
            self.risk.commit(verdict)
        self._since_head += 1
        return verdict

    def after_verdict(self) -> None:
        if self._since_head >= CANDIDATES_PER_HEAD:
            self.new_head(self.head.number + 1)


def _rate(fn: Callable[[bytes], Any], frames: list[bytes]) -> float:
    t = time.perf_counter()
    for f in frames:
        fn(f)
    return len(frames) / (time.perf_counter() - t)


async def screening(market: Market, stream: Stream, reps: int, *, prefilter: bool = False) -> dict[str, Any]:
    """Frames in, decisions out (parse + screen) against bare ``orjson.loads``, interleaved.

    ``prefilter``: screen as ``aether run`` does (:class:`~aether.strategy.Prefilter`: routers,
    learned contracts, tracked tokens named in the calldata), not by Router02 ``to`` alone."""
    rig = Rig(market, prefilter=prefilter)
    await rig.start()
    frames = stream.frames
    base, subj, ratios = [], [], []
    for _ in range(reps):
        b = _rate(orjson.loads, frames)
        rig.new_pass()
        s = _rate(rig.screen, frames)
        base.append(b)
        subj.append(s)
        ratios.append(s / b)
    st = rig.intake.statistics()
    return {
        "orjson_rate": statistics.median(base),
        "screen_rate": statistics.median(subj),
        "ratio": statistics.median(ratios),
        "forwarded": st.processed,  # in the last pass (each pass has a fresh intake)
        "rejected": st.rejected,
        "frames": len(frames),
    }


def median(xs: list[float]) -> float:
    """The middle value (the upper one of an even count), as every median in the bench."""
    return pct(xs, 0.50)


async def latency(market: Market, stream: Stream, reps: int, *, what_if_budget: int | None = None) -> dict[str, Any]:
    """Frame received -> bundle signed and gated, per candidate frame; plus the floor."""
    from aether.dex import _math

    saved = _math.best_round_trip.__defaults__
    if what_if_budget is not None:
        d = list(saved or ())
        d[-1] = what_if_budget  # budget is the last default of best_round_trip
        _math.best_round_trip.__defaults__ = tuple(d)
    try:
        rig = Rig(market)
        await rig.start()
        swaps = [stream.frames[i] for i in stream.swaps]
        passes: list[list[float]] = []
        gated: list[bytes] = []
        reasons: dict[str, int] = {}
        # Pass 0 is a warm-up (first calls, allocator growth) and is not timed; each
        # timed pass gives its own p50 and p99, and the figures are their medians.
        for rep in range(reps + 1):
            lat: list[float] = []
            rig.new_pass()
            for f in swaps:
                t0 = time.perf_counter_ns()
                out = await rig.candidate_path(f)
                dt = time.perf_counter_ns() - t0
                if out is None:
                    continue
                if hasattr(out, "bundle"):
                    lat.append(dt / 1000)
                    key = "passed" if out.passed else f"gate:{out.reason}"
                    if rep == 0:
                        gated.append(f)
                    rig.after_verdict()
                else:
                    key = f"no candidate:{out.reason}"
                if rep == 0:
                    reasons[key] = reasons.get(key, 0) + 1
            if rep > 0:
                passes.append(lat)
    finally:
        _math.best_round_trip.__defaults__ = saved
    # Floor: parse + the two signatures alone, on the same frames.
    signer = Eip1559Signer(rig.account)
    to = bytes.fromhex(market.chain.dexes[0].router[2:])
    data = bytes(260)
    floor: list[float] = []
    for _ in range(reps):
        for f in gated:
            t0 = time.perf_counter_ns()
            orjson.loads(f)
            for n in (0, 1):
                signer.sign(chain_id=CHAIN_ID, nonce=n, max_priority_fee_per_gas=2 * 10**9,
                            max_fee_per_gas=30 * 10**9, gas=144_000, to=to, value=0, data=data)
            floor.append((time.perf_counter_ns() - t0) / 1000)
    return {
        "swap_frames": len(swaps),
        "gated": len(passes[0]),
        "p50_us": median([pct(p, 0.50) for p in passes]),
        "p99_us": median([pct(p, 0.99) for p in passes]),
        "passes": len(passes),
        "floor_p50_us": pct(floor, 0.50),
        "floor_p99_us": pct(floor, 0.99),
        "outcomes": reasons,
        "gated_frames": gated,
    }


async def profile_sizing(market: Market, stream: Stream) -> dict[str, float]:
    """How the candidate path's time splits: sizing (dex math) against everything else."""
    import cProfile
    import pstats

    rig = Rig(market)
    await rig.start()
    swaps = [stream.frames[i] for i in stream.swaps]
    prof = cProfile.Profile()
    prof.enable()
    for f in swaps:
        out = await rig.candidate_path(f)
        if out is not None and hasattr(out, "bundle"):
            rig.after_verdict()
    prof.disable()
    st = pstats.Stats(prof)
    total = sum(v[2] for v in st.stats.values())  # type: ignore[attr-defined]

    def cum(name: str) -> float:
        return sum(v[3] for k, v in st.stats.items() if k[2] == name)  # type: ignore[attr-defined]

    return {
        "best_round_trip": cum("best_round_trip"),
        "build": cum("build"),
        "screen": cum("screen"),
        "evaluate": cum("evaluate"),
        "total": total,
    }


async def versus_web3(market: Market, frames: list[bytes], reps: int) -> dict[str, Any]:
    """aether's candidate path against the idiomatic web3.py one, frame by frame, interleaved."""
    from ._web3path import Web3Path

    ours_rig, theirs_rig = Rig(market), Rig(market)
    await ours_rig.start()
    await theirs_rig.start()
    web3 = Web3Path(theirs_rig)
    ours: list[float] = []
    theirs: list[float] = []
    ratios: list[float] = []
    for _ in range(reps):
        a: list[float] = []
        w: list[float] = []
        ours_rig.new_pass()
        theirs_rig.new_pass()
        for f in frames:
            t0 = time.perf_counter_ns()
            out = await ours_rig.candidate_path(f)
            t1 = time.perf_counter_ns()
            out_w = await web3.candidate_path(f)
            t2 = time.perf_counter_ns()
            if hasattr(out, "bundle") and hasattr(out_w, "bundle"):
                a.append((t1 - t0) / 1000)
                w.append((t2 - t1) / 1000)
            if hasattr(out, "bundle"):
                ours_rig.after_verdict()
            if hasattr(out_w, "bundle"):
                theirs_rig.after_verdict()
        ours += a
        theirs += w
        if a:
            ratios.append(statistics.median(w) / statistics.median(a))
    return {
        "frames": len(frames),
        "aether_p50_us": statistics.median(ours) if ours else float("nan"),
        "web3_p50_us": statistics.median(theirs) if theirs else float("nan"),
        "ratio": statistics.median(ratios) if ratios else float("nan"),
    }
