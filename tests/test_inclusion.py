"""Inclusion tracking: the live path end to end on anvil, realised profit equal to predicted to the wei."""

from __future__ import annotations

import logging
from pathlib import Path

from typing import Any

import attrs
import httpx
import orjson
import pytest

from aether.bundle import NonceTracker
from aether.chain import RpcClient
from aether.inclusion import GIVE_UP_AFTER, InclusionTracker
from aether.messages import Bundle, Head
from aether.metrics import Metrics

from test_builder import AUTH, DEV, SEARCHER, VICTIM, anvil, build, deploy_world, head, live_stack
from test_bundle import HEAD, builder, candidate


@pytest.mark.devnet
async def test_landed_bundle_realises_exactly_the_prediction(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with anvil() as rpc:
        world = await deploy_world(rpc)
        async with live_stack(rpc, tmp_path / "b.jsonl") as (local, sub, metrics):
            nonces = NonceTracker()
            tracker = InclusionTracker(rpc, searcher=SEARCHER.address, weth=world.weth, metrics=metrics)
            h = await head(rpc)
            victim = await world.victim(nonce=int(await rpc.call("eth_getTransactionCount",
                                                                  [VICTIM.address, "latest"]), 16))
            bundle = await build(world, await world.backrun(victim, h), h, nonces)
            assert await sub.submit(bundle) == {"local": "ok"}
            tracker.track(bundle)
            assert await tracker.on_head(h) == []  # target not reached yet
            await local.before_mine(bundle.target_block)
            await rpc.call("evm_mine")
            assert await tracker.on_head(await head(rpc)) == []  # block N is judged once confirmed (N + 1)
            assert tracker.statistics().tracked == 1
            await rpc.call("evm_mine")
            [outcome] = await tracker.on_head(await head(rpc))
            assert outcome.included and not outcome.reverted
            assert outcome.realised_profit_wei == bundle.expected_net_profit_wei == outcome.predicted_profit_wei
            assert outcome.delta_wei == 0 and outcome.realised_profit_wei > 0
            assert outcome.predicted_gross_wei > outcome.realised_profit_wei  # gas and tip came out of it
            assert metrics.value("aether_bundles_included_total", source="mempool_backrun") == 1
            assert metrics.value("aether_realised_profit_wei", source="mempool_backrun") == float(
                bundle.expected_net_profit_wei)
            assert tracker.statistics().tracked == 0

            # A bundle that is never put in a block: not included.
            h2 = await head(rpc)
            missed = await build(world, await world.backrun(None, h2), h2, nonces)
            await sub.submit(missed)
            tracker.track(missed)
            await rpc.call("evm_mine")  # the builder was not asked: it misses its block
            await rpc.call("evm_mine")  # its confirmation
            [o2] = await tracker.on_head(await head(rpc))
            assert not o2.unknown
            assert not o2.included and not o2.reverted and o2.realised_profit_wei == 0
            assert metrics.value("aether_bundles_not_included_total", source="block_arb") == 1

            # A bundle whose last tx reverts on chain (sent around the builder): reverted and included.
            h3 = await head(rpc)
            c3 = await world.backrun(None, h3, amount_in=10**18, min_out_last=10**30)
            rev = await build(world, attrs.evolve(c3, validated=True), h3, nonces)
            tracker.track(rev)
            for raw in rev.envelope:
                await rpc.call("eth_sendRawTransaction", ["0x" + raw.hex()])
            await rpc.call("evm_mine")
            await rpc.call("evm_mine")
            [o3] = await tracker.on_head(await head(rpc))
            assert o3.included and o3.reverted
            assert o3.realised_profit_wei < 0  # gas spent, nothing earned
            assert metrics.value("aether_bundles_reverted_total", source="block_arb") == 1
    # No key material in anything printed.
    text = caplog.text + metrics.exposition().decode() + (tmp_path / "b.jsonl").read_text()
    for key in DEV + [AUTH.key.hex()]:
        assert key.removeprefix("0x") not in text


def _hash(n: int) -> str:
    return "0x" + f"{n:064x}"


def _head(n: int, *, hash_: str | None = None) -> Head:
    return Head(n, hash_ or _hash(n), _hash(n - 1), 0, 1, 0, 2)


class LaggingNode:
    """A fake node (httpx MockTransport) whose RPC backend may lag the head the WS announced.

    ``indexed``: our receipts exist (landed in the target block and reverted);
    ``block``: what ``eth_getBlockByNumber`` answers for the target (None: not there yet).
    """

    GAS_USED, PRICE = 150_000, 30 * 10**9

    def __init__(self, target: int) -> None:
        self.target = target
        self.indexed = False
        self.block: dict[str, str] | None = None
        self.calls: list[str] = []
        self.rpc = RpcClient("http://node.test", transport=httpx.MockTransport(self._handle))

    def _reply(self, req: dict[str, Any]) -> dict[str, Any]:
        m, rid = req["method"], req["id"]
        self.calls.append(m)
        result: Any
        if m == "eth_getTransactionReceipt":
            result = None if not self.indexed else {
                "blockNumber": hex(self.target), "blockHash": _hash(self.target), "status": "0x0",
                "gasUsed": hex(self.GAS_USED), "effectiveGasPrice": hex(self.PRICE), "transactionIndex": "0x0",
                "logs": [], "transactionHash": req["params"][0]}
        elif m == "eth_getBlockByNumber":
            assert req["params"] == [hex(self.target), False]
            result = self.block
        elif m == "eth_getBalance":  # the gas of our two transactions left the account in block N
            result = hex(0 if req["params"][1] == hex(self.target) else 2 * self.GAS_USED * self.PRICE)
        elif m == "eth_call":  # WETH balanceOf: unchanged
            result = "0x0"
        elif m == "eth_getLogs":
            result = []
        else:
            return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": m}}
        return {"jsonrpc": "2.0", "id": rid, "result": result}

    def _handle(self, request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        out = [self._reply(r) for r in body] if isinstance(body, list) else self._reply(body)
        return httpx.Response(200, content=orjson.dumps(out))


def _tracked() -> tuple[InclusionTracker, LaggingNode, Metrics, Bundle]:
    b = builder().build(candidate(victim=None), HEAD, now_ns=0)
    node = LaggingNode(b.target_block)
    m = Metrics()
    t = InclusionTracker(node.rpc, searcher=SEARCHER.address, weth="0x" + "11" * 20, metrics=m)
    t.track(b)
    return t, node, m, b


async def test_a_receipt_the_node_has_not_indexed_is_asked_again_not_a_miss() -> None:
    t, node, m, b = _tracked()
    n = b.target_block
    assert await t.on_head(_head(n)) == [] and node.calls == []  # not confirmed yet: nothing asked
    # Head N + 1 from the WS, but the RPC backend is a block behind: no receipt, no block N.
    assert await t.on_head(_head(n + 1)) == []
    assert "eth_getBlockByNumber" in node.calls and t.statistics().tracked == 1
    assert m.value("aether_bundles_not_included_total", source="block_arb") == 0
    node.indexed, node.block = True, {"number": hex(n), "hash": _hash(n)}  # it catches up: landed, reverted
    [o] = await t.on_head(_head(n + 2))
    assert o.included and o.reverted and not o.unknown
    assert o.realised_profit_wei == -LaggingNode.GAS_USED * LaggingNode.PRICE * len(b.our_tx_hashes)
    assert m.value("aether_bundles_reverted_total", source="block_arb") == 1
    assert t.statistics().tracked == 0 and t.statistics().not_included == 0
    assert t.statistics().unattributed_wei == 0  # the balances agree with the receipts
    await node.rpc.aclose()


async def test_a_miss_needs_the_node_to_hold_our_block_n() -> None:
    t, node, m, b = _tracked()
    n = b.target_block
    node.block = {"number": hex(n), "hash": "0x" + "ee" * 32}  # a block N, but not the one the heads named
    assert await t.on_head(_head(n + 1)) == [] and t.statistics().tracked == 1
    node.block = {"number": hex(n), "hash": _hash(n)}  # the node has our block N and no receipt: a miss
    [o] = await t.on_head(_head(n + 2))
    assert not o.included and not o.reverted and not o.unknown and o.realised_profit_wei == 0
    assert m.value("aether_bundles_not_included_total", source="block_arb") == 1
    assert o.record()["included"] is False and o.record()["unknown"] is False
    await node.rpc.aclose()


async def test_a_bundle_never_judged_ends_unknown_never_a_miss(caplog: pytest.LogCaptureFixture) -> None:
    t, node, m, b = _tracked()
    n = b.target_block
    for h in range(n + 1, n + GIVE_UP_AFTER):
        assert await t.on_head(_head(h)) == []
    [o] = await t.on_head(_head(n + GIVE_UP_AFTER))
    assert o.unknown and o.reason == "receipts_not_indexed" and not o.included and not o.reverted
    assert o.record()["unknown"] is True and o.record()["included"] is False
    assert m.value("aether_inclusion_unknown_total", source="block_arb") == 1
    assert m.value("aether_bundles_not_included_total", source="block_arb") == 0
    assert t.statistics().abandoned == 1 and t.statistics().tracked == 0
    assert b.arb_id in caplog.text and "unknown" in caplog.text
    await node.rpc.aclose()


async def test_node_failure_is_not_an_outcome() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, content=b"")

    rpc = RpcClient("http://node.invalid", transport=httpx.MockTransport(handler))
    m = Metrics()
    t = InclusionTracker(rpc, searcher=SEARCHER.address, weth="0x" + "11" * 20, metrics=m)
    b = builder().build(candidate(victim=None), HEAD, now_ns=0)
    t.track(b)
    assert await t.on_head(Head(102, "0x", "0x", 0, 1, 0, 2)) == []
    assert t.statistics().node_errors == 1 and t.statistics().tracked == 1
    [o] = await t.on_head(Head(101 + 16, "0x", "0x", 0, 1, 0, 2))
    assert o.unknown and o.reason is not None and o.reason.startswith("node_error: ")
    assert t.statistics().abandoned == 1 and t.statistics().tracked == 0
    assert m.value("aether_bundles_not_included_total", source="block_arb") == 0
    assert m.value("aether_inclusion_unknown_total", source="block_arb") == 1


async def test_submit_actor_records_an_unknown_outcome_and_risk_pauses_without_pnl(tmp_path: Path) -> None:
    import trio
    import trio.testing

    from aether.dumps import RunDir
    from aether.inclusion import Outcome
    from aether.messages import Tick, Verdict
    from aether.risk import RiskLatch
    from aether.submit import SubmitActor

    from factories import make_bundle

    missed, lost = make_bundle(target_block=101), make_bundle(target_block=101, net=7)
    outcomes = [Outcome(missed, included=False, reverted=False, realised_profit_wei=0, predicted_profit_wei=1),
                Outcome(lost, included=False, reverted=False, realised_profit_wei=0, predicted_profit_wei=7,
                        unknown=True, reason="receipts_not_indexed")]

    class Tracker:
        async def on_head(self, head: Head) -> list[Outcome]:
            return outcomes

    run_dir = RunDir(tmp_path / "reports", shadow=False)
    run_dir.create()
    v_tx, v_rx = trio.open_memory_channel[Verdict](4)
    t_tx, t_rx = trio.open_memory_channel[Tick](4)
    f_tx, f_rx = trio.open_memory_channel[Any](4)
    actor = SubmitActor(submitter=None, tracker=Tracker(), run_dir=run_dir, metrics=Metrics(), inbox=v_rx,
                        ticks=t_rx, feedback=f_tx, deadline_s=1.0, latch=RiskLatch())
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        await t_tx.send(Tick(_head(103), 1, 1, 1, 0))
        with trio.fail_after(5):
            assert await f_rx.receive() is outcomes[0]  # the miss feeds risk ...
            assert await f_rx.receive() is outcomes[1]  # ... so does the unknown (fail closed)
        await v_tx.aclose()
    # What risk does with them: the unknown moves no money, but PAUSEs (we do not keep sending blind).
    from aether.config import RiskLimits
    from aether.messages import RiskState
    from aether.risk import RiskEngine

    engine = RiskEngine(RiskLimits(pause_s=60), clock=lambda: 0.0)
    engine.on_tick(Tick(_head(103), 1, 10**18, 0, 0))
    for o in outcomes:
        engine.on_outcome(o.bundle.source, included=o.included, reverted=o.reverted,
                          realised_pnl_wei=o.realised_profit_wei, unknown=o.unknown)
    snap = engine.state
    assert snap.status == RiskState.PAUSED and snap.paused_until == 60.0
    assert snap.daily_pnl_wei == 0 and snap.revert_times == ()
    lines = [orjson.loads(x) for x in actor.inclusions_path.read_bytes().splitlines()]
    assert [(x["arb_id"], x["included"], x["unknown"]) for x in lines] == [
        (missed.arb_id, False, False), (lost.arb_id, False, True)]
