"""The risk actor writes the engine's state off the event loop, and nothing passes before it is on disk.

A save is an fsync of the state file and of its directory: milliseconds on a
cloud disk, during which a synchronous write stalls every task of the process
(intake, strategy, the heads). The actor writes in a worker thread instead; these
tests hold that write open (a store whose ``_write`` waits on a ``threading.Event``)
to show the three things that must stay true: the rest of the process runs
meanwhile, the passed verdict waits for its commit to be saved, and a save that
fails refuses the verdict and halts risk until a save succeeds.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import trio
import trio.testing

from aether.actors import RiskActor
from aether.actors._risk import FINISH_TIMEOUT_S
from aether.config import ETHER, RiskLimits
from aether.messages import RISK_ERROR, Bundle, Tick, Verdict
from aether.metrics import Metrics
from aether.risk import RiskEngine, RiskStore
from factories import Wall, make_bundle, make_head


class GatedStore(RiskStore):
    """A real store whose writes wait until the test opens the gate (or fail, when told to)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail = False
        self.threads: set[str] = set()
        self.writes: list[bytes] = []

    def _write(self, data: bytes) -> None:
        self.writes.append(data)
        self.threads.add(threading.current_thread().name)
        self.entered.set()
        assert self.gate.wait(10), "the test never opened the gate"
        if self.fail:
            raise OSError(28, "No space left on device")
        super()._write(data)


def tick(n: int) -> Tick:
    return Tick(make_head(n), 30 * 10**9, ETHER, ETHER, 0)


async def send_with_its_save_held(store: GatedStore, inbox: trio.MemorySendChannel[Tick | Bundle],
                                  bundle: Bundle) -> None:
    """Send ``bundle`` with the next write held open; return once that write has started in its thread."""
    store.entered.clear()
    store.gate.clear()
    await inbox.send(bundle)
    assert await trio.to_thread.run_sync(store.entered.wait, 10)


class Engine(RiskEngine):
    """The real engine, telling the test when the actor has reported a save's result to it."""

    reported: trio.Event

    def saved(self, fingerprint: object) -> None:
        super().saved(fingerprint)
        self.reported.set()

    def save_failed(self) -> None:
        super().save_failed()
        self.reported.set()


async def settle(store: GatedStore, engine: RiskEngine) -> None:
    """Until the write under way has ended and the actor has reported its result to the engine."""
    assert isinstance(engine, Engine)
    await engine.reported.wait()
    engine.reported = trio.Event()
    await trio.testing.wait_all_tasks_blocked()


def rig(tmp_path: Path) -> tuple[RiskActor, GatedStore, Metrics, Any, Any]:
    store = GatedStore(tmp_path / "risk.json")
    m = Metrics()
    engine = Engine(RiskLimits(), store=store, metrics=m, wall_clock=Wall())
    engine.reported = trio.Event()
    inbox_tx, inbox_rx = trio.open_memory_channel[Tick | Bundle](8)
    out_tx, out_rx = trio.open_memory_channel[Verdict](8)
    return RiskActor(engine=engine, metrics=m, inbox=inbox_rx, feedback=None, out=out_tx), store, m, inbox_tx, out_rx


async def test_a_passed_verdict_waits_for_its_save_and_the_loop_runs_meanwhile(tmp_path: Path) -> None:
    actor, store, m, inbox, out = rig(tmp_path)
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        await inbox.send(tick(100))
        await settle(store, actor.engine)
        await send_with_its_save_held(store, inbox, make_bundle(target_block=101))
        # The save is under way and has not finished: the verdict is held back...
        for _ in range(50):  # ...while other tasks keep running on the event loop
            await trio.lowlevel.checkpoint()
        assert out.statistics().current_buffer_used == 0
        on_disk = json.loads(store.path.read_text())
        assert on_disk["inflight"] == {}  # the commit is not on disk yet
        store.gate.set()
        verdict = await out.receive()
        assert verdict.passed
        assert json.loads(store.path.read_text())["inflight"] == {"101": 1}
        nursery.cancel_scope.cancel()
    assert "MainThread" not in store.threads  # every write ran in a worker thread


async def test_a_verdict_whose_commit_cannot_be_saved_is_refused_and_risk_halts(tmp_path: Path) -> None:
    actor, store, m, inbox, out = rig(tmp_path)
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        await inbox.send(tick(100))
        await settle(store, actor.engine)
        store.fail = True
        await inbox.send(make_bundle(target_block=101))
        verdict = await out.receive()
        actor.engine.reported = trio.Event()  # type: ignore[attr-defined]
        assert (verdict.passed, verdict.reason) == (False, RISK_ERROR)
        assert verdict.decisions[-1].value == "commit not saved"
        assert actor.engine.state.status == "halted" and actor.engine.state.store_failed
        assert m.value("aether_risk_halted", gate=RISK_ERROR) == 1
        assert actor.statistics().processed == 0 and actor.statistics().rejected == 1
        # Halted: the next bundle is refused by the gates, without a commit.
        await inbox.send(make_bundle(target_block=101, victim_hash=b"\x22" * 32))
        assert not (await out.receive()).passed
        # The disk is back: the next head's save succeeds and lifts the halt.
        store.fail = False
        await inbox.send(tick(101))
        await settle(store, actor.engine)
        assert actor.engine.state.status == "active"
        assert m.value("aether_risk_halted", gate=RISK_ERROR) == 0
        assert json.loads(store.path.read_text())["last_head"] == 101
        nursery.cancel_scope.cancel()


async def test_an_unchanged_state_is_not_written_again(tmp_path: Path) -> None:
    actor, store, m, inbox, out = rig(tmp_path)
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        await inbox.send(tick(100))
        await settle(store, actor.engine)
        await inbox.send(tick(100))
        await trio.testing.wait_all_tasks_blocked()
        assert store.statistics().saves == 1
        await inbox.send(make_bundle(target_block=101))
        assert (await out.receive()).passed
        assert store.statistics().saves == 2
        nursery.cancel_scope.cancel()


async def test_a_cancelled_actor_gives_every_bundle_it_holds_a_verdict_and_hands_it_on(tmp_path: Path) -> None:
    """The fast stop cancels actor by actor. Cancelled mid-save with more bundles queued, risk still
    hands on a verdict for each (the passed ones saved first), so the end of the line accounts for all."""
    actor, store, m, inbox, out = rig(tmp_path)
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(actor.run)
            await inbox.send(tick(100))
            await settle(store, actor.engine)
            await send_with_its_save_held(store, inbox, make_bundle(target_block=101))  # passes; its save blocks
            await inbox.send(make_bundle(target_block=101, victim_hash=b"\x22" * 32))  # queued: passes too
            await inbox.send(make_bundle(target_block=101, net=1))  # queued: refused (min_profit)
            scope.cancel()
            with trio.CancelScope(shield=True):
                await trio.testing.wait_all_tasks_blocked()
                assert out.statistics().current_buffer_used == 0  # nothing goes out before the save ends
                store.gate.set()
    verdicts = [out.receive_nowait() for _ in range(3)]
    assert [v.passed for v in verdicts] == [True, True, False]
    assert json.loads(store.path.read_text())["inflight"] == {"101": 2}  # both commits on disk
    assert actor.statistics().processed == 2 and actor.statistics().rejected == 1


# --------------------------------------------------------------------------- adversarial review


async def test_a_stop_is_not_held_by_a_save_that_never_ends(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    actor, store, m, inbox, out = rig(tmp_path)
    done = trio.Event()
    scope = trio.CancelScope()

    async def runner() -> None:
        with scope:
            async with trio.open_nursery() as inner:
                await inner.start(actor.run)
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(runner)
        await inbox.send(tick(100))
        await settle(store, actor.engine)
        await send_with_its_save_held(store, inbox, make_bundle(target_block=101))
        scope.cancel()
        # Virtual time: the clock jumps while every task waits (the thread is invisible to it).
        with trio.move_on_after(FINISH_TIMEOUT_S + 1.0):
            await done.wait()
        stopped_in_time = done.is_set()
        writes = len(store.writes)
        store.gate.set()  # let the thread end either way, so the test cleans up
    assert stopped_in_time
    # The bundle in hand still got its verdict, refused: its commit is not known to be on disk.
    verdict = out.receive_nowait()
    assert (verdict.passed, verdict.reason) == (False, RISK_ERROR)
    assert verdict.decisions[-1].value == "commit not saved"
    # And no second write was started beside the hung one (an older state could land last).
    assert writes == 2


async def test_with_the_actor_the_engine_never_writes_nor_raises_on_the_event_loop(tmp_path: Path) -> None:
    """Why the actor's handlers need no ``except RiskError``: it defers every save, so on_tick,
    commit and on_outcome only mark the state due, even on a disk that fails every write."""
    actor, store, _, _, _ = rig(tmp_path)
    store.fail = True
    engine = actor.engine
    engine.on_tick(tick(100))
    verdict = engine.evaluate(make_bundle(target_block=101))
    assert verdict.passed
    assert engine.commit(verdict)
    engine.on_outcome(verdict.bundle.source, included=False, reverted=True, realised_pnl_wei=0)
    assert store.writes == []
    assert engine.save_due() is not None  # due: the actor's _save writes it, off the loop
