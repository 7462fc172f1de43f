"""The in-flight actor: hands every verdict on first, settles each passed bundle exactly once.

The settler here is a stand-in that answers from a script (the real one is tested on
anvil in tests/test_settlement.py); everything else is the real actor, the real
file and, for the restart case, the real supervisor. Time is trio's autojump clock.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import orjson
import trio
import trio.testing

from aether.actors import HaltRequest
from aether.actors._inflight import InFlightActor, InFlightLedger, SettlementFile
from aether.dumps import RunDir
from aether.messages import Bundle, Head, RiskDecision, Tick, Verdict
from aether.metrics import Metrics
from aether.settlement import GIVE_UP_AFTER, Retry, Settlement, SettlementOutcome
from supervisors import ActorSpec, RestartPolicy, Supervisor

from factories import make_bundle

O = SettlementOutcome


class ScriptedSettler:
    """Answers ``settle`` from ``script[target]`` (a list consumed in order; the last answer repeats)."""

    def __init__(self, script: dict[int, list[Any]] | None = None) -> None:
        self.script = script or {}
        self.calls: list[tuple[int, tuple[str, ...]]] = []

    async def settle(self, target: int, bundles: Sequence[Bundle]) -> list[Settlement] | Retry:
        self.calls.append((target, tuple(b.arb_id for b in bundles)))
        answers = self.script.get(target, [O.WOULD_HAVE_WON])
        a = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(a, Exception):
            raise a
        if isinstance(a, Retry):
            return a
        return [Settlement(bundle=b, outcome=a, counterfactual_net_wei=b.expected_net_profit_wei) for b in bundles]


def bundle(arb_id: str, target: int) -> Bundle:
    return attrs.evolve(make_bundle(target_block=target), arb_id=arb_id)


def verdict(b: Bundle, passed: bool = True) -> Verdict:
    return Verdict(b, (RiskDecision("min_profit", passed, "x"),), passed, None if passed else "min_profit")


def tick(n: int) -> Tick:
    return Tick(Head(n, f"0x{n:064x}", f"0x{n - 1:064x}", n, 1, 0, 2), 1, 1, 1, 0)


@attrs.define
class Rig:
    actor: InFlightActor
    verdicts: trio.MemorySendChannel[Verdict]
    ticks: trio.MemorySendChannel[Tick]
    out: trio.MemoryReceiveChannel[Verdict]
    feedback: trio.MemoryReceiveChannel[Any]
    metrics: Metrics
    path: Path

    def rows(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [orjson.loads(x) for x in self.path.read_bytes().splitlines()]


def rig(tmp_path: Path, settler: Any, **kw: Any) -> Rig:
    metrics = Metrics()
    v_tx, v_rx = trio.open_memory_channel[Verdict](64)
    o_tx, o_rx = trio.open_memory_channel[Verdict](64)
    t_tx, t_rx = trio.open_memory_channel[Tick](64)
    f_tx, f_rx = trio.open_memory_channel[Any](64)
    path = tmp_path / "settlements.jsonl"
    actor = InFlightActor(ledger=kw.pop("ledger", InFlightLedger()), settler=settler, records=SettlementFile(path),
                          metrics=metrics, inbox=v_rx, out=o_tx, ticks=t_rx, feedback=f_tx, threaded=False, **kw)
    return Rig(actor, v_tx, t_tx, o_rx, f_rx, metrics, path)


async def test_hands_every_verdict_on_and_settles_passed_bundles_once(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    settler = ScriptedSettler({101: [O.LOST_TO_COMPETITOR]})
    dumps = RunDir(tmp_path / "reports", shadow=True)
    dumps.create()
    r = rig(tmp_path, settler, confirmations=1, dumps=dumps)
    a, b, rejected = bundle("a", 101), bundle("b", 101), bundle("r", 101)
    dumps.write_bundle(verdict(a, passed=False), outcome="rejected")  # an earlier rejected twin
    dumps.write_bundle(verdict(a), outcome="shadow_blocked")  # b's dump is not written (yet)
    async with trio.open_nursery() as nursery:
        await nursery.start(r.actor.run)
        for v in (verdict(a), verdict(rejected, passed=False), verdict(b), verdict(a)):  # a arrives twice
            await r.verdicts.send(v)
            assert (await r.out.receive()).bundle.arb_id == v.bundle.arb_id  # handed on at once, in order
        await r.ticks.send(tick(101))
        await trio.testing.wait_all_tasks_blocked()
        assert settler.calls == [] and r.rows() == []  # block 101 is not confirmed yet
        await r.ticks.send(tick(102))
        await trio.testing.wait_all_tasks_blocked()
        assert settler.calls == [(101, ("a", "b"))]  # one call for the whole block; the rejected one is not ours
        await r.ticks.send(tick(103))
        await r.verdicts.send(verdict(a))  # a late alias of a settled bundle: never a second outcome
        await r.out.receive()
        await trio.testing.wait_all_tasks_blocked()
        r.verdicts.close()
    rows = r.rows()
    assert [(x["arb_id"], x["outcome"], x["target_block"], x["settled_at_head"]) for x in rows] == [
        ("a", "lost_to_competitor", 101, 102), ("b", "lost_to_competitor", 101, 102)]
    st = r.actor.statistics()
    assert (st.admitted, st.settled, st.duplicates, st.pending) == (2, 2, 2, 0)
    assert r.metrics.value("aether_bundle_settlements_total", source="mempool_backrun",
                           outcome="lost_to_competitor") == 2
    assert os.stat(r.path).st_mode & 0o777 == 0o600
    # The dump's outcome: the passed twin of a carries its settlement; the rejected one does not.
    assert orjson.loads(dumps.bundle_path("a-2").read_bytes())["settlement"]["outcome"] == "lost_to_competitor"
    assert "settlement" not in orjson.loads(dumps.bundle_path("a").read_bytes())
    assert (st.annotated, st.not_annotated) == (1, 1)


async def test_node_trouble_is_retried_then_unknown_with_its_reason(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    settler = ScriptedSettler({101: [Retry("block_missing"), RuntimeError("settler bug"), Retry("node_error: x")],
                               102: [O.WOULD_HAVE_WON]})
    r = rig(tmp_path, settler)
    async with trio.open_nursery() as nursery:
        await nursery.start(r.actor.run)
        await r.verdicts.send(verdict(bundle("a", 101)))
        await r.verdicts.send(verdict(bundle("b", 102)))
        for v in range(2):
            await r.out.receive()
        for n in range(101, 101 + GIVE_UP_AFTER + 1):
            await r.ticks.send(tick(n))
            await trio.testing.wait_all_tasks_blocked()
            if n < 101 + GIVE_UP_AFTER:
                assert [x["arb_id"] for x in r.rows()] == ([] if n == 101 else ["b"])  # 102 is not held up by 101
        r.verdicts.close()
    rows = {x["arb_id"]: x for x in r.rows()}
    assert len(r.rows()) == 2
    assert rows["a"]["outcome"] == "unknown" and rows["a"]["reason"] == "gave up: node_error: x"
    assert rows["b"]["outcome"] == "would_have_won"
    st = r.actor.statistics()
    assert st.errors == 1 and st.retries == GIVE_UP_AFTER + 1


async def test_stop_settles_pending_as_unknown_and_the_ledger_is_bounded(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    r = rig(tmp_path, ScriptedSettler(), max_pending=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(r.actor.run)
        for i in range(3):
            await r.verdicts.send(verdict(bundle(f"x{i}", 200)))
            await r.out.receive()
        r.verdicts.close()
    rows = {x["arb_id"]: (x["outcome"], x["reason"]) for x in r.rows()}
    assert rows == {"x2": ("unknown", "ledger_full"), "x0": ("unknown", "stopped"), "x1": ("unknown", "stopped")}


def _broken_disk(r: Rig) -> dict[str, bool]:
    """Make ``r``'s settlements file fail with ENOSPC while the returned flag is on."""
    real = r.actor._records.append
    broken = {"on": True}

    def append(line: bytes) -> None:
        if broken["on"]:
            raise OSError(28, "No space left on device")
        real(line)

    r.actor._records.append = append  # type: ignore[method-assign]
    return broken


async def test_unwritable_settlements_ask_risk_to_halt_and_are_written_once_the_disk_recovers(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    dumps = RunDir(tmp_path / "reports", shadow=True)
    dumps.create()
    r = rig(tmp_path, ScriptedSettler(), dumps=dumps)
    broken = _broken_disk(r)
    a = bundle("a", 101)
    dumps.write_bundle(verdict(a), outcome="shadow_blocked")
    settled = {"source": a.source, "outcome": "would_have_won"}
    async with trio.open_nursery() as nursery:
        await nursery.start(r.actor.run)
        await r.verdicts.send(verdict(a))
        await r.out.receive()
        await r.ticks.send(tick(101))
        await trio.testing.wait_all_tasks_blocked()
        assert r.feedback.receive_nowait() == HaltRequest("settlements_writable", True)
        # The row is kept, not counted: neither on disk nor in the metric yet.
        assert r.rows() == [] and r.actor.statistics().unwritten == 1
        assert r.metrics.value("aether_bundle_settlements_total", **settled) == 0
        await r.ticks.send(tick(102))  # still broken at the next head: tried again, kept again
        await trio.testing.wait_all_tasks_blocked()
        assert r.rows() == [] and r.metrics.value("aether_settlement_record_errors_total") == 2
        broken["on"] = False  # the disk recovers: the next head writes it, with no new row to carry it
        await r.ticks.send(tick(103))
        await trio.testing.wait_all_tasks_blocked()
        assert r.feedback.receive_nowait() == HaltRequest("settlements_writable", False)
        assert [x["arb_id"] for x in r.rows()] == ["a"]
        await r.verdicts.send(verdict(bundle("b", 104)))
        await r.out.receive()
        await r.ticks.send(tick(105))
        await trio.testing.wait_all_tasks_blocked()
        r.verdicts.close()
    assert [x["arb_id"] for x in r.rows()] == ["a", "b"]  # each once, in order
    assert r.metrics.value("aether_bundle_settlements_total", **settled) == 2
    assert r.actor.statistics().settled == 2 and r.actor.statistics().lost == 0
    assert "settlement" in orjson.loads(dumps.bundle_path("a").read_bytes())


async def test_settlement_rows_beyond_the_bound_or_unwritten_at_the_stop_are_counted_lost(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    r = rig(tmp_path, ScriptedSettler(), max_writing=2)
    _broken_disk(r)  # never recovers
    async with trio.open_nursery() as nursery:
        await nursery.start(r.actor.run)
        for i in range(3):
            await r.verdicts.send(verdict(bundle(f"x{i}", 101)))
            await r.out.receive()
        await r.ticks.send(tick(101))
        await trio.testing.wait_all_tasks_blocked()
        assert r.actor.statistics().unwritten == 2 and r.actor.statistics().lost == 1  # the oldest, x0
        r.verdicts.close()
    assert r.rows() == [] and r.actor.statistics().unwritten == 0 and r.actor.statistics().lost == 3
    assert r.metrics.value("aether_channel_dropped_total", channel="settlements") == 3
    assert r.metrics.value("aether_bundle_settlements_total", source=bundle("x", 1).source,
                           outcome="would_have_won") == 0


async def test_a_panic_and_restart_loses_no_pending_settlement(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    """Under the real supervisor: the writer dies mid-row, the actor is rebuilt, nothing is lost or doubled."""
    metrics = Metrics()
    ledger = InFlightLedger()
    settler = ScriptedSettler()
    v_tx, v_rx = trio.open_memory_channel[Verdict](64)
    o_tx, o_rx = trio.open_memory_channel[Verdict](64)
    t_tx, t_rx = trio.open_memory_channel[Tick](64)
    path = tmp_path / "settlements.jsonl"
    faults = {"left": 1}

    class FlakyFile(SettlementFile):
        def append(self, line: bytes) -> None:
            if faults["left"] and b'"b"' in line:
                faults["left"] -= 1
                raise RuntimeError("disk driver bug")  # not an OSError: the actor panics
            super().append(line)

    built: list[InFlightActor] = []

    def factory() -> InFlightActor:
        built.append(InFlightActor(ledger=ledger, settler=settler, records=FlakyFile(path), metrics=metrics,
                                   inbox=v_rx, out=o_tx, ticks=t_rx, threaded=False))
        return built[-1]

    sup = Supervisor(metrics)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run, [ActorSpec("inflight", factory, outputs=[o_tx],
                                                policy=RestartPolicy(max_restarts=3, backoff_s=0.2))])
        for name, target in (("a", 101), ("b", 101), ("c", 102)):
            await v_tx.send(verdict(bundle(name, target)))
            await o_rx.receive()
        await t_tx.send(tick(101))  # settles a (written) and b (the writer dies)
        await trio.sleep(1)
        assert metrics.value("aether_actor_panics_total", actor="inflight") == 1 and len(built) == 2
        await t_tx.send(tick(102))
        await v_tx.send(verdict(bundle("d", 103)))  # the hot path runs again after the restart
        assert (await o_rx.receive()).bundle.arb_id == "d"
        await trio.sleep(1)
        v_tx.close()
        t_tx.close()
    rows = [orjson.loads(x) for x in path.read_bytes().splitlines()]
    assert [(x["arb_id"], x["outcome"]) for x in rows] == [
        ("a", "would_have_won"), ("b", "would_have_won"), ("c", "would_have_won"), ("d", "unknown")]
    assert rows[-1]["reason"] == "stopped"
    assert settler.calls == [(101, ("a", "b")), (102, ("c",))]  # block 101 was not settled twice
    assert sum(metrics.value("aether_bundle_settlements_total", source="mempool_backrun", outcome=o)
               for o in O) == 4


async def test_a_graceful_stop_settles_mined_blocks_before_giving_up_on_the_rest(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    settler = ScriptedSettler({102: [Retry("block_missing")]})
    r = rig(tmp_path, settler, confirmations=1)
    async with trio.open_nursery() as nursery:
        await nursery.start(r.actor.run)
        for name, target in (("mined", 101), ("flaky", 102), ("future", 103)):
            await r.verdicts.send(verdict(bundle(name, target)))
            await r.out.receive()
        await r.ticks.send(tick(102))  # 101 is confirmed; 102 is mined but not confirmed; 103 is not mined
        await trio.testing.wait_all_tasks_blocked()
        r.verdicts.close()
    rows = {x["arb_id"]: (x["outcome"], x["reason"]) for x in r.rows()}
    assert rows == {"mined": ("would_have_won", ""), "flaky": ("unknown", "stopped"), "future": ("unknown", "stopped")}
    assert settler.calls == [(101, ("mined",)), (102, ("flaky",))]  # the last pass tried 102 once


async def test_settlement_waits_out_the_heads_rush(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    r = rig(tmp_path, ScriptedSettler(), settle_delay_s=2.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(r.actor.run)
        await r.verdicts.send(verdict(bundle("a", 101)))
        await r.out.receive()
        await r.ticks.send(tick(101))
        await trio.sleep(1.9)
        assert r.rows() == []  # the head's own work goes first
        await trio.sleep(0.2)
        assert [x["arb_id"] for x in r.rows()] == ["a"]
        r.verdicts.close()


async def read_what_a_stop_hands_on(rx: trio.MemoryReceiveChannel[Verdict]) -> list[str]:
    """The end of the line, shielded (its caller is cancelled), drains what a stopped actor hands it."""
    got: list[str] = []

    async def read() -> None:
        async with rx:
            async for v in rx:
                got.append(v.bundle.arb_id)

    with trio.CancelScope(shield=True):
        async with trio.open_nursery() as reader:
            reader.start_soon(read)
            await trio.testing.wait_all_tasks_blocked()
            reader.cancel_scope.cancel()
    return got


async def test_a_cancelled_actor_hands_on_every_verdict_it_holds(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    """The fast stop cancels actor by actor: what risk already handed us still reaches the end of the
    line (the verdict in hand while the end of the line is full, and the queued ones), and the passed
    ones are settled as stopped."""
    r = rig(tmp_path, ScriptedSettler())
    small_tx, small_rx = trio.open_memory_channel[Verdict](1)
    r.actor._out = small_tx  # the end of the line holds one verdict and is not reading
    held = [verdict(bundle("a", 300)), verdict(bundle("b", 300), passed=False), verdict(bundle("c", 300))]
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(r.actor.run)
            for v in held:
                await r.verdicts.send(v)
            await trio.testing.wait_all_tasks_blocked()  # "a" passed on, "b" in hand, "c" queued
            scope.cancel()
            got = await read_what_a_stop_hands_on(small_rx)
    assert got == ["a", "b", "c"]
    rows = {x["arb_id"]: (x["outcome"], x["reason"]) for x in r.rows()}
    assert rows == {"a": ("unknown", "stopped"), "c": ("unknown", "stopped")}


async def test_a_cancelled_actor_counts_a_held_verdict_once(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    """Review: the verdict in hand at a stop was admitted already (the main loop admits before it
    hands on); the hand-on admitted it again when it was neither pending nor settled, i.e. a late
    one, so ``late`` counted it twice (and logged it twice). A duplicate still queued is counted
    as a duplicate, as the main loop would."""
    r = rig(tmp_path, ScriptedSettler())
    r.actor.ledger.pruned_below = 200  # block 100 is long gone: "late" is late
    small_tx, small_rx = trio.open_memory_channel[Verdict](1)
    r.actor._out = small_tx  # the end of the line holds one verdict and is not reading
    held = [verdict(bundle("a", 300)), verdict(bundle("late", 100)), verdict(bundle("a", 300))]
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(r.actor.run)
            for v in held:
                await r.verdicts.send(v)
            await trio.testing.wait_all_tasks_blocked()  # "a" passed on, "late" in hand, "a" again queued
            assert r.actor.statistics().late == 1
            scope.cancel()
            got = await read_what_a_stop_hands_on(small_rx)
    assert got == ["a", "late", "a"]
    stats = r.actor.statistics()
    assert (stats.late, stats.duplicates, stats.admitted) == (1, 1, 1)
