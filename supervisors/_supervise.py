"""One-for-one supervision of trio actors, with an OTP-style restart intensity.

Every actor runs in one nursery. An exception escaping an actor is a *panic*:
logged with its traceback, counted in ``aether_actor_panics_total{actor}``, and
the actor is rebuilt from its factory (fresh state; what must survive lives in
a store the factory reloads) and restarted. More than ``max_restarts`` panics
of one actor within ``window_s`` means something is persistently wrong: the
supervisor gives up, the whole tree is cancelled and the process exits
non-zero so the OS supervisor (systemd, launchd) restarts it from scratch.

Channels outlive restarts: the supervisor, not the actor, owns each actor's
output send channels and closes them only when the actor *finishes* (its input
ended, or it is a source that was asked to stop). That is what makes a
graceful stop drain the pipeline from its sources to its sink: stop the
sources, and each downstream actor sees end-of-input in turn, finishes what it
holds (in-progress dumps complete) and returns.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

import attrs
import trio

from aether._errors import AetherError
from aether.metrics import Metrics

__all__ = ["Actor", "ActorSpec", "RestartPolicy", "Supervisor", "SupervisorGaveUp"]

log = logging.getLogger("aether.supervisor")


class Actor(Protocol):
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None: ...


class Closeable(Protocol):
    """An actor's output the supervisor closes when the actor finishes (a send channel of any type)."""

    def close(self) -> None: ...


class SupervisorGaveUp(AetherError):
    """An actor panicked more often than its restart intensity allows."""


@attrs.frozen
class RestartPolicy:
    """OTP's restart intensity: at most ``max_restarts`` within ``window_s`` seconds."""

    max_restarts: int = 5
    window_s: float = 60.0
    backoff_s: float = 0.2


@attrs.frozen
class ActorSpec:
    """How to build and wire one actor.

    Args:
        name: bounded label for metrics and the trio task name (``actor:<name>``).
        factory: builds a fresh actor; called again after each panic.
        outputs: send channels the supervisor closes when the actor finishes.
        source: a source of the pipeline; a graceful stop cancels sources first.
        policy: restart intensity for this actor.
    """

    name: str
    factory: Callable[[], Actor]
    outputs: Sequence[Closeable] = ()
    source: bool = False
    policy: RestartPolicy = RestartPolicy()


@attrs.define
class _Running:
    spec: ActorSpec
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    stopping: bool = False
    done: trio.Event = attrs.field(factory=trio.Event)
    restarts: int = 0


class Supervisor:
    """Runs a list of actors one-for-one; see the module docstring."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._running: list[_Running] = []

    def statistics(self) -> dict[str, int]:
        """Restarts so far, by actor."""
        return {r.spec.name: r.restarts for r in self._running}

    async def run(self, specs: Sequence[ActorSpec], *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start every actor in order (each ``started`` before the next) and run until all finish.

        Raises:
            SupervisorGaveUp: an actor exceeded its restart intensity.
        """
        async with trio.open_nursery() as nursery:
            for spec in specs:
                running = _Running(spec)
                self._running.append(running)
                await nursery.start(self._supervise, running, name=f"actor:{spec.name}")
            task_status.started()

    async def stop(self, *, drain_timeout_s: float = 15.0) -> None:
        """Graceful stop: cancel the sources, let the rest drain, then cancel stragglers."""
        for r in self._running:
            if r.spec.source:
                r.stopping = True
                r.scope.cancel()
        with trio.move_on_after(drain_timeout_s):
            for r in self._running:
                if not r.spec.source:
                    await r.done.wait()
        # Past the deadline: cancel stragglers in pipeline order, upstream first, giving each
        # downstream actor a moment to take what the cancelled one already handed on. The
        # ends of the line account for whatever is still queued when they are cancelled.
        for r in self._running:
            if not r.done.is_set():
                r.stopping = True
                r.scope.cancel()
                with trio.move_on_after(1.0):
                    await r.done.wait()

    async def _supervise(self, running: _Running, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        spec = running.spec
        panics: collections.deque[float] = collections.deque()
        started = False
        try:
            while True:
                try:
                    actor = spec.factory()  # a factory that fails (e.g. an unreadable store) is a panic too
                    with running.scope:
                        async with trio.open_nursery() as inner:
                            await inner.start(actor.run)
                            if not started:
                                started = True
                                task_status.started()
                    return  # finished: input ended, or a stop was asked for
                except Exception as exc:  # a panic; Cancelled is a BaseException and passes
                    if running.stopping:
                        return
                    now = trio.current_time()
                    panics.append(now)
                    while panics and panics[0] < now - spec.policy.window_s:
                        panics.popleft()
                    self.metrics.panics.labels(spec.name).inc()
                    log.error("actor %s panicked (%d in %.0fs)", spec.name, len(panics), spec.policy.window_s,
                              exc_info=exc)
                    if len(panics) > spec.policy.max_restarts:
                        raise SupervisorGaveUp(
                            f"actor {spec.name} panicked {len(panics)} times within {spec.policy.window_s:.0f}s"
                        ) from exc
                    running.restarts += 1
                    running.scope = trio.CancelScope()
                    await trio.sleep(spec.policy.backoff_s)
        finally:
            for ch in spec.outputs:
                ch.close()
            running.done.set()
