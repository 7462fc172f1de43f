"""Live TOCTOU: a verdict that passed risk before a HALT latched is not sent afterwards.

The verdicts wait in the channel to the submit actor (or for a send slot)
while risk's ``daily_pnl`` HALT latches from an inclusion outcome. The submit
actor reads the tree's :class:`~aether.risk.RiskLatch` right before each send:
none of them reaches the builder, each dump says ``risk_latched`` and each is
counted as a risk rejection.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from pathlib import Path
from typing import Any

import attrs
import httpx
import orjson
import trio
import trio.testing
from eth_account import Account

from aether.config import BuilderEndpoint, RiskLimits
from aether.dumps import RunDir
from aether.inclusion import Outcome
from aether.messages import Bundle, Head, RiskState, Tick, Verdict
from aether.metrics import Metrics
from aether.risk import RiskEngine, RiskLatch
from aether.submit import SubmitActor, Submitter
from aether.submit._actor import LATCHED

from factories import make_bundle, make_head

ETHER = 10**18

AUTH = Account.from_key("0x" + "42" * 32)


class NoTracker:
    def track(self, bundle: Bundle) -> None:
        self.tracked = getattr(self, "tracked", 0) + 1

    async def on_head(self, head: Head) -> list[Outcome]:
        return []


def _passed(n: int, target: int = 101) -> Verdict:
    b = make_bundle(target_block=target)
    b = attrs.evolve(b, arb_id=f"arb-{n}", candidate=attrs.evolve(b.candidate, validated=True))
    return Verdict(bundle=b, decisions=(), passed=True)


def _engine(latch: RiskLatch, metrics: Metrics) -> RiskEngine:
    e = RiskEngine(RiskLimits(), metrics=metrics, latch=latch, clock=lambda: 0.0)
    e.on_tick(Tick(make_head(100), 30 * 10**9, ETHER, 0, 1))  # the balance is known: ACTIVE
    assert latch.status() is RiskState.ACTIVE
    return e


def _loss(engine: RiskEngine) -> None:
    engine.on_outcome("mempool_backrun", included=True, reverted=False, realised_pnl_wei=-ETHER)
    assert engine.state.status == RiskState.HALTED


def _dump_outcome(run_dir: RunDir, arb_id: str) -> str:
    return str(orjson.loads(run_dir.bundle_path(arb_id).read_bytes())["outcome"])


async def test_verdicts_queued_when_the_pnl_halt_latches_are_not_sent(tmp_path: Path) -> None:
    metrics = Metrics(builders=["b"])
    latch = RiskLatch()
    engine = _engine(latch, metrics)
    seen: list[bytes] = []

    def builder(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": 1, "result": {"bundleHash": "0x00"}})

    run_dir = RunDir(tmp_path / "reports", shadow=False)
    run_dir.create()
    v_tx, v_rx = trio.open_memory_channel[Verdict](8)
    t_tx, t_rx = trio.open_memory_channel[Tick](1)
    f_tx, _f_rx = trio.open_memory_channel[Any](8)
    for n in range(3):  # passed risk while it was ACTIVE, queued before the submit actor
        v_tx.send_nowait(_passed(n))
    _loss(engine)  # the daily loss limit: HALT latches with the verdicts still queued
    assert latch.status() is RiskState.HALTED and "daily_pnl" in latch.reasons()
    async with Submitter((BuilderEndpoint("b", "http://127.0.0.1:1/"),), AUTH, shadow=False, metrics=metrics,
                         timeout_s=1.0, transport=httpx.MockTransport(builder)) as sub:
        actor = SubmitActor(submitter=sub, tracker=NoTracker(), run_dir=run_dir, metrics=metrics,  # type: ignore[arg-type]
                            inbox=v_rx, ticks=t_rx, feedback=f_tx, deadline_s=1.0, latch=latch)
        await v_tx.aclose()
        await t_tx.aclose()
        await actor.run()
    assert seen == []  # not one byte reached the builder
    assert actor.latched == 3 and actor.statistics().processed == 0
    assert [_dump_outcome(run_dir, f"arb-{n}") for n in range(3)] == [LATCHED] * 3
    assert metrics.risk_rejected.labels(LATCHED)._value.get() == 3
    assert metrics.submitted.labels("mempool_backrun")._value.get() == 0


@contextlib.asynccontextmanager
async def _one_slot_live(tmp_path: Path, metrics: Metrics, latch: RiskLatch) -> AsyncIterator[
        tuple[SubmitActor, RunDir, list[bytes], trio.Event, trio.MemorySendChannel[Verdict],
              trio.MemorySendChannel[Tick]]]:
    """A live submit actor with one send slot, running, and a builder that records each request
    and holds the first until ``release`` is set: yields (actor, run_dir, seen, release, verdicts, ticks)."""
    seen: list[bytes] = []
    release = trio.Event()

    async def builder(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        await release.wait()  # the first send holds the only slot
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": 1, "result": {"bundleHash": "0x00"}})

    run_dir = RunDir(tmp_path / "reports", shadow=False)
    run_dir.create()
    v_tx, v_rx = trio.open_memory_channel[Verdict](8)
    t_tx, t_rx = trio.open_memory_channel[Tick](1)
    f_tx, _f_rx = trio.open_memory_channel[Any](8)
    async with Submitter((BuilderEndpoint("b", "http://127.0.0.1:1/"),), AUTH, shadow=False, metrics=metrics,
                         timeout_s=30.0, transport=httpx.MockTransport(builder)) as sub:
        actor = SubmitActor(submitter=sub, tracker=NoTracker(), run_dir=run_dir, metrics=metrics,  # type: ignore[arg-type]
                            inbox=v_rx, ticks=t_rx, feedback=f_tx, deadline_s=30.0, latch=latch, max_concurrent=1,
                            threaded=False)
        async with trio.open_nursery() as nursery:
            await nursery.start(actor.run)
            yield actor, run_dir, seen, release, v_tx, t_tx


async def test_a_halt_while_a_verdict_waits_for_a_send_slot_stops_it_right_before_the_send(tmp_path: Path) -> None:
    metrics = Metrics(builders=["b"])
    latch = RiskLatch()
    engine = _engine(latch, metrics)
    async with _one_slot_live(tmp_path, metrics, latch) as (actor, run_dir, seen, release, v_tx, t_tx):
        await v_tx.send(_passed(0))
        await v_tx.send(_passed(1))
        await trio.testing.wait_all_tasks_blocked()
        assert len(seen) == 1
        # arb-1 passed, is dumped as submitted and waits for the slot: now the HALT latches.
        assert _dump_outcome(run_dir, "arb-1") == "submitted"
        _loss(engine)
        release.set()
        await v_tx.aclose()
        await t_tx.aclose()
    assert len(seen) == 1  # only arb-0's request ever left
    assert actor.latched == 1 and actor.statistics().processed == 1
    assert _dump_outcome(run_dir, "arb-0") == "submitted"
    assert _dump_outcome(run_dir, "arb-1") == LATCHED  # the dump says what happened
    assert metrics.risk_rejected.labels(LATCHED)._value.get() == 1


def test_an_unwritten_latch_is_halted_and_a_pause_ends_on_the_engines_clock() -> None:
    latch = RiskLatch()
    assert latch.status() is RiskState.HALTED  # fail closed before any engine wrote it
    now = [0.0]
    latch.publish(halts=(), paused_until=10.0, clock=lambda: now[0])
    assert latch.status() is RiskState.PAUSED
    now[0] = 10.0
    assert latch.status() is RiskState.ACTIVE
    latch.external.add("dumps_writable")  # a halt from outside the gates (the tree's shared set)
    assert latch.status() is RiskState.HALTED and latch.reasons() == ("dumps_writable",)


async def test_a_target_mined_while_a_verdict_waits_for_a_send_slot_stops_it_right_before_the_send(
    tmp_path: Path,
) -> None:
    # Same wait as above, but what changes is the chain: the verdict's target block is mined
    # while it waits for the slot. It is not sent; its dump says "stale".
    metrics = Metrics(builders=["b"])
    latch = RiskLatch()
    _engine(latch, metrics)  # risk ACTIVE throughout
    async with _one_slot_live(tmp_path, metrics, latch) as (actor, run_dir, seen, release, v_tx, t_tx):
        await v_tx.send(_passed(0, target=101))
        await v_tx.send(_passed(1, target=101))
        await trio.testing.wait_all_tasks_blocked()
        assert len(seen) == 1 and _dump_outcome(run_dir, "arb-1") == "submitted"
        await t_tx.send(Tick(make_head(number=101), 0, None, None, None))  # block 101 is mined
        await trio.testing.wait_all_tasks_blocked()
        release.set()
        await v_tx.aclose()
        await t_tx.aclose()
    assert len(seen) == 1  # arb-1's request never left
    assert actor.statistics().processed == 1 and actor.latched == 0
    assert _dump_outcome(run_dir, "arb-1") == "stale"
