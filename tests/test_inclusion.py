"""Inclusion tracking: the live path end to end on anvil, realised profit equal to predicted to the wei."""

from __future__ import annotations

import logging
from pathlib import Path

import attrs
import pytest

from aether.bundle import NonceTracker
from aether.inclusion import InclusionTracker

from test_builder import AUTH, DEV, SEARCHER, VICTIM, anvil, build, deploy_world, head, live_stack


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
            [o2] = await tracker.on_head(await head(rpc))
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
            [o3] = await tracker.on_head(await head(rpc))
            assert o3.included and o3.reverted
            assert o3.realised_profit_wei < 0  # gas spent, nothing earned
            assert metrics.value("aether_bundles_reverted_total", source="block_arb") == 1
    # No key material in anything printed.
    text = caplog.text + metrics.exposition().decode() + (tmp_path / "b.jsonl").read_text()
    for key in DEV + [AUTH.key.hex()]:
        assert key.removeprefix("0x") not in text


async def test_node_failure_is_not_an_outcome() -> None:
    import httpx

    from aether.chain import RpcClient
    from aether.messages import Head
    from aether.metrics import Metrics

    from test_bundle import HEAD, builder, candidate

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, content=b"")

    rpc = RpcClient("http://node.invalid", transport=httpx.MockTransport(handler))
    m = Metrics()
    t = InclusionTracker(rpc, searcher=SEARCHER.address, weth="0x" + "11" * 20, metrics=m)
    b = builder().build(candidate(victim=None), HEAD, now_ns=0)
    t.track(b)
    assert await t.on_head(Head(101, "0x", "0x", 0, 1, 0, 2)) == []
    assert t.statistics().node_errors == 1 and t.statistics().tracked == 1
    assert await t.on_head(Head(101 + 16, "0x", "0x", 0, 1, 0, 2)) == []
    assert t.statistics().abandoned == 1 and t.statistics().tracked == 0
    assert m.value("aether_bundles_not_included_total", source="block_arb") == 0
