"""The part of the supervision tree that shadow and live share.

Shadow and live differ only in the last actor of the line (nautilus' habit:
one code path, only the edge changes). This module wires everything up to and
including risk and hands the verdict channel to whoever builds the end.

Every edge is a bounded memory channel of one declared message type (the
annotations in :func:`build_pipeline`); channel sizes are the overload policy
(invariant 5):

    node ─pending frames (screened inline, no channel)─▶ intake
                                                           │ PendingTx (1024; dropped when full, counted)
    heads ─Tick─┬─────────────────────────────────────▶ strategy
                │                                          │ Candidate (256, back-pressure)
                │                                          ▼
                │                                       validate
                │                                          │ Candidate
                │                                          ▼
                ├──────────────── Tick ───────────────▶  build
                │                                          │ Bundle
                │                                          ▼
                ├──────────────── Tick ───────────────▶  risk ◀──── Feedback ─────────────┐
                │                                          │ Verdict                      │
                │                                          ▼                              │
                ├──────────────── Tick ───────────────▶ inflight ── HaltRequest ──────────┤
                │                               settlements.jsonl  │ Verdict              │
                │                                                  ▼                      │
                └─ Tick (live only: Pipeline.ticks) ─────▶ end of line ─ HaltRequest ─────┘
                                                    (shadow: ShadowSink; live: SubmitActor,
                                                     which also sends inclusion Outcomes)

Heads feed build, risk, inflight and the tail before the strategy: a strategy
inbox full of victims must not delay nonce resets, HALT latches or pruning.

``inflight`` hands every verdict on first and settles the bundles that passed
against their target block in a task of its own (off the hot path). Its
ledger belongs to the tree, so a restart of the actor loses no pending
settlement.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import trio

from aether.actors import (
    BuilderActor,
    HeadsActor,
    InFlightActor,
    InFlightLedger,
    IntakeActor,
    RiskActor,
    SettlementFile,
    StrategyActor,
    ValidatorActor,
)
from aether.chain import RpcClient
from aether.config import Settings
from aether.dumps import RunDir
from aether.messages import Bundle, Candidate, PendingTx, Tick, Verdict
from aether.metrics import Metrics

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from aether.actors import Feedback
    from aether.risk import RiskLatch

from ._supervise import ActorSpec, RestartPolicy

__all__ = ["Pipeline", "Runtime", "build_pipeline"]

VICTIM_QUEUE = 1024
QUEUE = 256
#: Settle block N once the head is at N + this (a one-block reorg cannot change a settled outcome).
SETTLE_CONFIRMATIONS = 1
#: ... and this long after that head, when the hot path is not busy with it.
SETTLE_DELAY_S = 0.3


@attrs.frozen
class Runtime:
    """What the trees are built from: settings plus the live handles made at start-up."""

    settings: Settings
    metrics: Metrics
    rpc: RpcClient
    chain_id: int
    signer: LocalAccount  # never logged
    run_dir: RunDir


@attrs.define
class Pipeline:
    """The shared actors plus the open ends the mode-specific tail plugs into."""

    specs: list[ActorSpec]
    verdicts: trio.MemoryReceiveChannel[Verdict]
    feedback: trio.MemorySendChannel[Feedback]
    ticks: trio.MemoryReceiveChannel[Tick] | None
    #: Risk's HALT/PAUSE state, read by the live submit actor right before each send.
    latch: RiskLatch | None = None




def build_pipeline(rt: Runtime, *, tail_wants_ticks: bool, settle: bool = True) -> Pipeline:
    """Build every actor up to risk. The caller appends the end of the line."""
    from aether.bundle import BundleBuilder, NonceTracker
    from aether.risk import RiskEngine, RiskLatch, RiskStore
    from aether.settlement import Settler

    s = rt.settings
    searcher = rt.signer.address.lower()
    # Every edge carries one declared message type (the diagram above names them).
    strategy_tx, strategy_rx = trio.open_memory_channel[Tick | PendingTx](VICTIM_QUEUE)
    validate_tx, validate_rx = trio.open_memory_channel[Candidate](QUEUE)
    build_tx, build_rx = trio.open_memory_channel[Tick | Candidate](QUEUE)
    risk_tx, risk_rx = trio.open_memory_channel[Tick | Bundle](QUEUE)
    verdict_tx, verdict_rx = trio.open_memory_channel[Verdict](QUEUE)
    tail_verdict_tx, tail_verdict_rx = trio.open_memory_channel[Verdict](QUEUE)
    inflight_ticks_tx, inflight_ticks_rx = trio.open_memory_channel[Tick](QUEUE)
    feedback_tx, feedback_rx = trio.open_memory_channel["Feedback"](QUEUE)
    tail_tx, tail_rx = trio.open_memory_channel[Tick](QUEUE) if tail_wants_ticks else (None, None)

    # The tail and in-flight first (channels of ticks only, so a send there does not wait
    # behind candidates or bundles): the submitter must learn a mined block before anything
    # else, or it sends bundles for a target that is already history. Then build and risk,
    # and the strategy last: an inbox full of victims must not delay the heads that reset
    # nonces, latch HALTs and prune in-flight state.
    heads_outs: list[trio.MemorySendChannel[Tick]] = []
    if tail_tx is not None:
        heads_outs.append(tail_tx.clone())
    heads_outs += [inflight_ticks_tx, build_tx.clone(), risk_tx.clone(), strategy_tx.clone()]
    intake_out = strategy_tx.clone()
    validate_out = build_tx.clone()
    builder_out = risk_tx.clone()
    for original in (strategy_tx, build_tx, risk_tx, tail_tx):
        if original is not None:
            original.close()

    nonces = NonceTracker()
    builder = BundleBuilder(rt.signer, rt.chain_id, tip_share_bps=s.tip_share_bps, nonces=nonces)
    store = RiskStore(s.state_file)
    external_halts: set[str] = set()  # halts from the tail; must survive a risk restart
    latch = RiskLatch(external=external_halts)  # the engine writes it; the submitter reads it

    specs: list[ActorSpec] = [
        ActorSpec(
            "heads",
            lambda: HeadsActor(ws_url=s.ws_url, rpc=rt.rpc, searcher=searcher, weth=s.chain.weth, metrics=rt.metrics,
                               outs=heads_outs),
            outputs=heads_outs,
            source=True,
        ),
    ]
    # Victims are screened by the prefilter and simulated, whatever contract they call;
    # the strategy teaches the prefilter which contracts touch pools.
    from aether.strategy import Prefilter

    prefilter = Prefilter(s.chain)
    if s.mempool_tracking:
        routers = {d.router for d in s.chain.dexes}
        specs.append(
            ActorSpec(
                "intake",
                lambda: IntakeActor(ws_url=s.ws_url, rpc=rt.rpc, chain_id=rt.chain_id, routers=routers,
                                    metrics=rt.metrics, out=intake_out, prefilter=prefilter),
                outputs=[intake_out],
                source=True,
            )
        )
    else:
        intake_out.close()
    specs += [
        ActorSpec(
            "strategy",
            lambda: StrategyActor(rpc=rt.rpc, chain=s.chain, searcher=searcher, metrics=rt.metrics, inbox=strategy_rx,
                                  out=validate_tx, block_arb=s.block_arb, simulate_victims=True,
                                  prefilter=prefilter),
            outputs=[validate_tx],
        ),
        ActorSpec(
            "validate",
            lambda: ValidatorActor(rpc=rt.rpc, searcher=searcher, metrics=rt.metrics, inbox=validate_rx,
                                   out=validate_out, enabled=s.validate),
            outputs=[validate_out],
        ),
        ActorSpec(
            "build",
            lambda: BuilderActor(builder=builder, nonces=nonces, metrics=rt.metrics, inbox=build_rx, out=builder_out),
            outputs=[builder_out],
        ),
        ActorSpec(
            "risk",
            # A fresh engine reloads the persisted state: a panic cannot reset a loss limit.
            lambda: RiskActor(engine=RiskEngine(s.risk, store=store, metrics=rt.metrics, latch=latch), metrics=rt.metrics,
                              inbox=risk_rx, feedback=feedback_rx, out=verdict_tx, halts=external_halts),
            outputs=[verdict_tx],
            policy=RestartPolicy(max_restarts=3, window_s=60.0),
        ),
    ]
    ledger = InFlightLedger()  # outlives the actor: a restart loses no pending settlement
    inflight_halt = feedback_tx.clone()
    specs.append(
        ActorSpec(
            "inflight",
            lambda: InFlightActor(
                ledger=ledger,
                settler=Settler(rt.rpc, searcher=searcher, weth=s.chain.weth),
                records=SettlementFile(rt.run_dir.path / "settlements.jsonl"),
                metrics=rt.metrics, inbox=verdict_rx, out=tail_verdict_tx, ticks=inflight_ticks_rx,
                feedback=inflight_halt, confirmations=SETTLE_CONFIRMATIONS, enabled=settle, dumps=rt.run_dir,
                settle_delay_s=SETTLE_DELAY_S,
            ),
            outputs=[tail_verdict_tx, inflight_halt],
        )
    )
    return Pipeline(specs=specs, verdicts=tail_verdict_rx, feedback=feedback_tx, ticks=tail_rx, latch=latch)
