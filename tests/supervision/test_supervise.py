"""The one-for-one supervisor: panics counted and restarted, intensity, graceful drain."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from aether.metrics import Metrics
from supervisors import ActorSpec, RestartPolicy, Supervisor, SupervisorGaveUp


class Flaky:
    """Panics ``fail_times`` times (counted across instances), then serves its input."""

    def __init__(self, state: dict[str, int], inbox: trio.MemoryReceiveChannel[int], seen: list[int]) -> None:
        self.state = state
        self.inbox = inbox
        self.seen = seen

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        if self.state["fails_left"] > 0:
            self.state["fails_left"] -= 1
            raise RuntimeError("boom")
        async for item in self.inbox:
            self.seen.append(item)


class Source:
    def __init__(self, out: trio.MemorySendChannel[int]) -> None:
        self.out = out

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        for i in range(1000):
            await self.out.send(i)
        await trio.sleep_forever()


async def test_panics_are_counted_and_the_actor_restarted(autojump_clock: trio.abc.Clock) -> None:
    metrics = Metrics()
    send, recv = trio.open_memory_channel[int](10)
    seen: list[int] = []
    state = {"fails_left": 2}
    sup = Supervisor(metrics)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run, [ActorSpec("flaky", lambda: Flaky(state, recv, seen))])
        async with send:
            await send.send(7)
            await send.send(8)
    assert seen == [7, 8]
    assert metrics.value("aether_actor_panics_total", actor="flaky") == 2
    assert sup.statistics() == {"flaky": 2}


async def test_restart_intensity_exceeded_gives_up(autojump_clock: trio.abc.Clock) -> None:
    metrics = Metrics()
    _, recv = trio.open_memory_channel[int](1)
    state = {"fails_left": 10**6}
    sup = Supervisor(metrics)
    policy = RestartPolicy(max_restarts=3, window_s=60.0, backoff_s=0.1)
    with pytest.RaisesGroup(pytest.RaisesExc(SupervisorGaveUp, match="panicked 4 times within 60s"), flatten_subgroups=True):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sup.run, [ActorSpec("doomed", lambda: Flaky(state, recv, []), policy=policy)])
    assert metrics.value("aether_actor_panics_total", actor="doomed") == 4


async def test_panics_spread_out_beyond_the_window_are_tolerated(autojump_clock: trio.abc.Clock) -> None:
    metrics = Metrics()
    _, recv = trio.open_memory_channel[int](1)
    state = {"fails_left": 6}
    sup = Supervisor(metrics)
    # backoff 31 s: never more than 2 panics within any 60 s window
    policy = RestartPolicy(max_restarts=2, window_s=60.0, backoff_s=31.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run, [ActorSpec("slow-flaky", lambda: Flaky(state, recv, []), policy=policy)])
        await trio.sleep(600)
        nursery.cancel_scope.cancel()
    assert metrics.value("aether_actor_panics_total", actor="slow-flaky") == 6


async def test_graceful_stop_drains_from_source_to_sink(autojump_clock: trio.abc.Clock) -> None:
    metrics = Metrics()
    send, recv = trio.open_memory_channel[int](5)
    src_out = send.clone()
    send.close()
    seen: list[int] = []
    sup = Supervisor(metrics)
    specs = [
        ActorSpec("source", lambda: Source(src_out), outputs=[src_out], source=True),
        ActorSpec("sink", lambda: Flaky({"fails_left": 0}, recv, seen)),
    ]
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run, specs)
        await trio.testing.wait_all_tasks_blocked()
        buffered = recv.statistics().current_buffer_used
        await sup.stop()
    # everything the source sent before the stop reached the sink, in order
    assert seen == list(range(len(seen)))
    assert len(seen) >= buffered
    assert recv.statistics().current_buffer_used == 0
