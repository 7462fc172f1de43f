"""The live supervision tree: the shared pipeline ending in the submit actor.

Only this module imports ``aether.submit``. It refuses to build when shadow
mode is on, and so does the submitter itself (two independent locks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aether._errors import ShadowViolation

from ._supervise import ActorSpec
from ._tree import SETTLE_CONFIRMATIONS, Runtime, build_pipeline

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

__all__ = ["build_live_tree"]


def build_live_tree(rt: Runtime, *, auth: LocalAccount) -> list[ActorSpec]:
    if rt.settings.shadow:
        raise ShadowViolation("refusing to build the live tree while AETHER_SHADOW is not 0")
    from aether.inclusion import InclusionTracker
    from aether.submit import SubmitActor, Submitter

    s = rt.settings
    submitter = Submitter(s.builders, auth, shadow=s.shadow, metrics=rt.metrics, timeout_s=s.builder_timeout_s)
    # The same confirmation depth as settlement: block N is judged at head N + 1.
    tracker = InclusionTracker(rt.rpc, searcher=rt.signer.address.lower(), weth=s.chain.weth, metrics=rt.metrics,
                               confirmations=SETTLE_CONFIRMATIONS)
    p = build_pipeline(rt, tail_wants_ticks=True)
    ticks = p.ticks
    assert ticks is not None
    feedback = p.feedback
    latch = p.latch
    assert latch is not None
    p.specs.append(
        ActorSpec(
            "submit",
            lambda: SubmitActor(submitter=submitter, tracker=tracker, run_dir=rt.run_dir, metrics=rt.metrics,
                                inbox=p.verdicts, ticks=ticks, feedback=feedback, deadline_s=s.builder_timeout_s,
                                latch=latch),
            outputs=[feedback],
        )
    )
    return p.specs
