"""Every candidate the strategies find, replayed on the devnet, pays exactly its prediction.

A short run of the real harness (``aether.devnet.ReplayHarness``) on the
session devnet: a few blocks of victim traffic, every candidate of both sources
validated and replayed as [victim, backrun] in a real block, then reverted.
The ``chain`` fixture rolls back the blocks the harness mines.
"""

from __future__ import annotations

import json

import attrs
import pytest
import trio

from aether.bundle import BundleBuilder, NonceTracker
from aether.chain import head_from_rpc, open_rpc
from aether.devnet import CandidateReplayer, DevnetInfo, ReplayHarness, replay_main
from aether.keys import load_key_file
from aether.dex import PoolBook
from aether.messages import Candidate
from aether.strategy import BlockArbStrategy

pytestmark = pytest.mark.devnet

BLOCKS = 6


async def test_every_replayed_candidate_realises_its_predicted_gross_to_the_wei(chain: DevnetInfo) -> None:
    async with open_rpc(chain.rpc_url, timeout=30.0) as rpc:
        start = int(await rpc.call("eth_blockNumber", []), 16)
        harness = ReplayHarness(rpc, chain, seed=7, txs_per_block=10, validate=True)
        report = await harness.run(duration_s=60.0, max_blocks=BLOCKS)
        s = report.summary
        print("\n" + report.table())
        # The harness moved the chain one block per step and re-mined every victim batch in full.
        assert int(await rpc.call("eth_blockNumber", []), 16) == start + BLOCKS
        assert s["blocks"] == BLOCKS and s["batch_txs_mined"] == s["victim_txs_sent"] == 10 * BLOCKS
        assert s["batch_short_blocks"] == 0 and await rpc.call("txpool_status", []) == {"pending": "0x0", "queued": "0x0"}
    # Enough candidates from both sources that the check means something.
    assert s["by_source"]["mempool_backrun"]["candidates"] >= 5, s
    assert s["by_source"]["block_arb"]["candidates"] >= 1, s
    assert s["replayed"] == s["candidates"] == len(report.records)
    assert s["exact"] == s["replayed"] and s["not_exact"] == 0, s["first_mismatches"]
    assert all(r["realised_wei"] == r["expected_gross_wei"] > 0 for r in report.records)
    # The validator passes every candidate the chain pays exactly, and rejects only the victims that are
    # not their sender's next transaction (the replay still replays those, under the sizing's premise).
    v = s["validator"]
    assert v["passed_exact"] == v["passed"] and v["passed"] + v["rejected"] == s["replayed"]
    assert v["rejected_by_reason"] == ({"victim_nonce_ahead": s["nonce_ahead"]} if s["nonce_ahead"] else {}), v
    assert s["latency"]["validation"]["n"] == s["replayed"] and s["latency"]["sizing_on_victim"]["n"] == s["router_victims"]
    assert report.ok
    json.loads(report.to_json())  # wei amounts survive as exact integers
    assert json.loads(report.to_json())["summary"]["realised_gross_wei"] == s["realised_gross_wei"]


async def test_without_validation_the_estimated_gas_limit_lands_every_candidate(chain: DevnetInfo) -> None:
    """Validation off: the bundle's gas limit comes from ``GAS_PER_SWAP``, not a simulation.

    The first blocks after deployment are the worst case (pairs whose price
    accumulators are still zero); with the old 120,000 estimate the replays
    here ran out of gas.
    """
    async with open_rpc(chain.rpc_url, timeout=30.0) as rpc:
        harness = ReplayHarness(rpc, chain, seed=1, txs_per_block=10, validate=False)
        report = await harness.run(duration_s=60.0, max_blocks=4)
    s = report.summary
    assert s["replayed"] >= 10 and s["latency"]["validation"]["n"] == 0
    assert s["not_exact"] == 0, s["first_mismatches"]


async def test_a_wrong_prediction_is_reported_not_exact_with_the_difference(chain: DevnetInfo) -> None:
    """The replay can fail: a candidate that claims one wei more than the chain pays is caught."""
    async with open_rpc(chain.rpc_url, timeout=30.0) as rpc:
        # Leave a gap for the block-driven source: one unbackrun victim lands.
        harness = ReplayHarness(rpc, chain, seed=3, txs_per_block=10, validate=False)
        await harness.run(duration_s=30.0, max_blocks=2)
        head = head_from_rpc(await rpc.call("eth_getBlockByNumber", ["latest", False]))
        book = PoolBook(rpc, chain.chain_config)
        await book.refresh(head.number)
        found = await BlockArbStrategy(chain.chain_config, book, searcher=chain.searcher_address).on_head(
            head, inventory_wei=10**18
        )
        cand = next(c for c in found if isinstance(c, Candidate))
        account = load_key_file(chain.searcher_key_file, "AETHER_SIGNER_KEY_FILE")
        replayer = CandidateReplayer(rpc, chain.weth, BundleBuilder(account, chain.chain_id, tip_share_bps=8000,
                                                                    nonces=NonceTracker()))
        nonce = int(await rpc.call("eth_getTransactionCount", [chain.searcher_address, "pending"]), 16)
        wrong = attrs.evolve(cand, expected_gross_profit_wei=cand.expected_gross_profit_wei + 1)
        bad = await replayer.replay(wrong, head, searcher_nonce=nonce)
        good = await replayer.replay(cand, head, searcher_nonce=nonce)
        # Each replay was undone: the chain is still at the head.
        assert int(await rpc.call("eth_blockNumber", []), 16) == head.number
    assert not bad.exact and bad.realised_wei == cand.expected_gross_profit_wei
    assert "off by -1" in bad.detail
    assert good.exact and good.realised_wei == cand.expected_gross_profit_wei


async def test_cli_rejects_bad_arguments_with_exit_2() -> None:
    assert replay_main(["--duration", "0"]) == 2
    assert replay_main(["--duration", "5", "--txs-per-block", "-1"]) == 2
    await trio.lowlevel.checkpoint()


async def test_victims_of_every_route_kind_found_by_simulation_replay_to_the_wei(chain: DevnetInfo) -> None:
    from aether.devnet._universal import RouteKind, deploy_route_contracts

    async with open_rpc(chain.rpc_url, timeout=30.0) as rpc:
        routes = await deploy_route_contracts(rpc, chain)
        harness = ReplayHarness(rpc, chain, seed=11, txs_per_block=12, validate=True, routes=routes,
                                mix={k: 1.0 for k in RouteKind}, simulate=True)
        report = await harness.run(duration_s=90.0, max_blocks=BLOCKS)
    s = report.summary
    print("\n" + report.table())
    for kind in RouteKind:
        row = s["by_route"][kind.value]
        assert row["replayed"] >= 1, (kind, s["by_route"])
        assert row["exact"] == row["replayed"] and row["not_exact"] == 0, s["first_mismatches"]
    assert s["exact"] == s["replayed"] and report.ok
    assert {r["route_kind"] for r in report.records if r["source"] == "mempool_backrun"} == {k.value for k in RouteKind}
    assert s["validator"]["passed"] == s["replayed"]
