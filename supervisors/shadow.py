"""The shadow supervision tree: the shared pipeline ending in the shadow sink.

This module must never import ``aether.submit`` (directly or through anything
it imports): in shadow mode the code that can send a bundle is not even loaded.
A test runs a shadow tree in a fresh interpreter and checks ``sys.modules``.
"""

from __future__ import annotations

from aether.actors import ShadowSink

from ._supervise import ActorSpec
from ._tree import Runtime, build_pipeline

__all__ = ["build_shadow_tree"]


def build_shadow_tree(rt: Runtime) -> list[ActorSpec]:
    if not rt.settings.shadow:
        raise ValueError("build_shadow_tree needs settings.shadow == True")
    p = build_pipeline(rt, tail_wants_ticks=False)
    halt = p.feedback
    p.specs.append(
        ActorSpec(
            "shadow_sink",
            lambda: ShadowSink(run_dir=rt.run_dir, metrics=rt.metrics, inbox=p.verdicts, halt=halt),
            outputs=[halt],
        )
    )
    return p.specs
