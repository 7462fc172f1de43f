"""The risk latch: the engine's HALT/PAUSE state, readable by the last actor right before a send.

A verdict passes risk, then waits in the channel to the end of the line (the
in-flight actor, the dump, the submitter's concurrency limit). If a HALT
latches meanwhile (a ``daily_pnl`` loss arriving from the inclusion tracker),
that verdict must not go out: the submit actor reads this latch synchronously
right before each ``eth_sendBundle`` and sends nothing unless it is ACTIVE.

The supervision tree owns it (it outlives risk restarts): the engine writes it
at every change of its state (:meth:`RiskEngine._publish`), and the halts that
come from outside the gates (an unwritable dump or record) are the tree's own
set, shared with the risk actor. Before the engine has written it once, it is
HALTED: fail closed.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import trio

from ..messages import RiskState

__all__ = ["LATCH_UNPUBLISHED", "RiskLatch"]

#: The reason while no engine has written the latch yet.
LATCH_UNPUBLISHED = "risk_unpublished"


@attrs.define
class RiskLatch:
    """Risk's state for the submitter (see the module docstring).

    Args:
        external: halts from outside the gates; the tree's set, mutated in place by the risk actor.
    """

    external: set[str] = attrs.field(factory=set)
    halts: tuple[str, ...] = (LATCH_UNPUBLISHED,)
    paused_until: float | None = None
    clock: Callable[[], float] = trio.current_time

    def publish(self, *, halts: tuple[str, ...], paused_until: float | None, clock: Callable[[], float]) -> None:
        """The engine's state now (its halt reasons, including a failed save, and its pause)."""
        self.halts = halts
        self.paused_until = paused_until
        self.clock = clock

    def status(self) -> RiskState:
        """HALTED while any halt is on, PAUSED until the pause ends, else ACTIVE."""
        if self.halts or self.external:
            return RiskState.HALTED
        if self.paused_until is not None and self.clock() < self.paused_until:
            return RiskState.PAUSED
        return RiskState.ACTIVE

    def reasons(self) -> tuple[str, ...]:
        return (*self.halts, *sorted(self.external))
