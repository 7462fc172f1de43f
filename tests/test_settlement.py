"""Counterfactual settlement on a real anvil: every outcome, built from real blocks.

Each scenario starts from one snapshot: a victim in the pool and our bundle sized
behind it (exactly as the live path sizes it), then block N is mined with
whatever the scenario puts in it, and the settler judges the bundle against it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from eth_utils import to_checksum_address

from aether.bundle import NonceTracker
from aether.chain import RpcClient
from aether.messages import Bundle, PendingTx
from aether.settlement import PRECEDENCE, Deviation, Retry, SettlementOutcome, Settler, VictimStatus

from test_builder import AUTH, DEPLOYER, E18, MAX, SEARCHER, VICTIM, World, anvil, build, call_data, deploy_world, head, send

O = SettlementOutcome


@contextlib.asynccontextmanager
async def world_with_competitor() -> AsyncIterator[tuple[RpcClient, World]]:
    """The two-DEX world, plus a competitor (AUTH) holding TKN and WETH with approvals."""
    async with anvil() as rpc:
        world = await deploy_world(rpc)
        c = AUTH.address
        hs = [await send(rpc, DEPLOYER.address, world.tkn,
                         call_data("transfer(address,uint256)", ["address", "uint256"], [c, 10_000 * E18])),
              await send(rpc, c, world.weth, bytes.fromhex("d0e30db0"), 50 * E18)]
        for token in (world.weth, world.tkn):
            for router in (world.router_a, world.router_b):
                hs.append(await send(rpc, c, token, call_data("approve(address,uint256)", ["address", "uint256"],
                                                              [router, MAX])))
        await rpc.call("evm_mine")
        yield rpc, world


async def staged(rpc: RpcClient, world: World) -> tuple[PendingTx, Bundle]:
    """A victim in the pool and our bundle sized behind it at the current head."""
    h = await head(rpc)
    nonce = int(await rpc.call("eth_getTransactionCount", [VICTIM.address, "latest"]), 16)
    victim = await world.victim(nonce=nonce)
    bundle = await build(world, await world.backrun(victim, h), h, NonceTracker())
    return victim, bundle


async def competitor_sells(rpc: RpcClient, world: World, tkn: int = 900 * E18, tip: int = 5 * 10**9) -> str:
    """The competitor sells TKN for WETH on DEX A (closing the victim's gap), paying ``tip`` per gas."""
    data = world.swap(world.router_a, tkn, [world.tkn, world.weth], AUTH.address)
    h = await head(rpc)
    return await rpc.call("eth_sendTransaction", [{
        "from": AUTH.address, "to": to_checksum_address(world.router_a), "data": "0x" + data.hex(),
        "gas": hex(300_000), "maxFeePerGas": hex(4 * h.base_fee + tip), "maxPriorityFeePerGas": hex(tip)}])


async def settle_one(rpc: RpcClient, world: World, bundle: Bundle) -> Any:
    settler = Settler(rpc, searcher=SEARCHER.address, weth=world.weth)
    got = await settler.settle(bundle.target_block, [bundle])
    assert not isinstance(got, Retry), got
    # bounded: one read batch, one simulate/look-up batch, and a baseline batch only when needed
    assert settler.batches <= 3
    [s] = got
    return s


@pytest.mark.devnet
async def test_every_outcome_on_anvil() -> None:
    async with world_with_competitor() as (rpc, world):

        async def reset() -> None:
            # Scenarios follow each other on one chain (no evm_revert: anvil does not roll back its
            # next base fee, and block N would then price gas differently from the header formula).
            await rpc.call("anvil_dropAllTransactions", [])

        # would_have_won: the victim alone in block N; the counterfactual is the prediction to the wei.
        victim, b = await staged(rpc, world)
        await rpc.call("evm_mine")
        s = await settle_one(rpc, world, b)
        assert s.outcome is O.WOULD_HAVE_WON, s
        assert s.counterfactual_gross_wei == b.expected_gross_profit_wei > 0
        assert s.counterfactual_net_wei == b.expected_net_profit_wei and s.error_wei == 0
        assert s.counterfactual_gas == b.gas_used
        assert s.victim_status is VictimStatus.IN_BLOCK and s.victim_index == 0
        assert s.record()["winner_tx_hashes"] == [] and s.record()["error_wei"] == "0"
        await reset()

        # lost_to_competitor: a competitor's backrun right after the victim, named with what it paid.
        victim, b = await staged(rpc, world)
        comp = await competitor_sells(rpc, world, tip=7 * 10**9)
        await rpc.call("evm_mine")
        s = await settle_one(rpc, world, b)
        assert s.outcome is O.LOST_TO_COMPETITOR, s
        [w] = s.winners
        assert w.tx_hash == comp.lower() and w.sender == AUTH.address.lower() and w.tx_index == 1
        receipt = await rpc.call("eth_getTransactionReceipt", [comp])
        assert w.priority_fee_wei == 7 * 10**9
        assert w.coinbase_payment_wei == 7 * 10**9 * int(receipt["gasUsed"], 16)
        assert w.gross_wei is not None and w.gross_wei > 0  # it took WETH out of the gap
        assert w.earned_wei == w.gross_wei - int(receipt["gasUsed"], 16) * int(receipt["effectiveGasPrice"], 16)
        assert w.tip_share_bps == w.coinbase_payment_wei * 10_000 // w.gross_wei == s.winner_tip_share_bps
        assert s.counterfactual_net_wei == b.expected_net_profit_wei  # we would have been right behind the victim
        assert s.record()["winner_tx_hashes"] == [comp.lower()]
        await reset()

        # state_moved_before_victim: the competitor's swap lands before the victim; our profit changes.
        victim, b = await staged(rpc, world)
        await rpc.call("anvil_dropTransaction", [victim.hash_hex])
        front = await competitor_sells(rpc, world, tkn=300 * E18)
        await rpc.call("eth_sendRawTransaction", ["0x" + victim.raw.hex()])
        await rpc.call("evm_mine")
        blk = await rpc.call("eth_getBlockByNumber", [hex(b.target_block), False])
        assert blk["transactions"] == [front, victim.hash_hex]
        s = await settle_one(rpc, world, b)
        assert s.outcome is O.STATE_MOVED_BEFORE_VICTIM, s
        assert s.moved_by == (front.lower(),) and s.victim_index == 1
        assert s.error_wei is not None and s.error_wei != 0  # how much our profit changes, to the wei
        await reset()

        # included (live): victim then our transactions in block N; realised == counterfactual == predicted.
        victim, b = await staged(rpc, world)
        for raw in b.envelope[1:]:
            await rpc.call("eth_sendRawTransaction", ["0x" + raw.hex()])
        await rpc.call("evm_mine")
        s = await settle_one(rpc, world, b)
        assert s.outcome is O.INCLUDED, s
        assert s.realised_profit_wei == s.counterfactual_net_wei == b.expected_net_profit_wei
        await reset()

        # included wins over lost: ours landed, then the competitor moved the pools.
        victim, b = await staged(rpc, world)
        for raw in b.envelope[1:]:
            await rpc.call("eth_sendRawTransaction", ["0x" + raw.hex()])
        await competitor_sells(rpc, world)
        await rpc.call("evm_mine")
        assert (await settle_one(rpc, world, b)).outcome is O.INCLUDED
        await reset()

        # victim_not_included: dropped (gone from the node, its nonce unused).
        victim, b = await staged(rpc, world)
        await rpc.call("anvil_dropTransaction", [victim.hash_hex])
        await competitor_sells(rpc, world)  # a pool move too: the victim's absence comes first
        await rpc.call("evm_mine")
        s = await settle_one(rpc, world, b)
        assert (s.outcome, s.victim_status) == (O.VICTIM_NOT_INCLUDED, VictimStatus.DROPPED), s
        assert s.counterfactual_net_wei is None
        await reset()

        # victim_not_included: it lands one block later.
        victim, b = await staged(rpc, world)
        await rpc.call("anvil_dropTransaction", [victim.hash_hex])
        await rpc.call("evm_mine")
        await rpc.call("eth_sendRawTransaction", ["0x" + victim.raw.hex()])
        await rpc.call("evm_mine")
        s = await settle_one(rpc, world, b)
        assert (s.outcome, s.victim_status, s.victim_block) == (
            O.VICTIM_NOT_INCLUDED, VictimStatus.LATER_BLOCK, b.target_block + 1), s
        await reset()

        # victim_not_included: replaced by the same nonce (a higher-paying transaction of its sender).
        victim, b = await staged(rpc, world)
        repl = await rpc.call("eth_sendTransaction", [{
            "from": VICTIM.address, "to": VICTIM.address, "value": "0x1", "nonce": hex(victim.nonce),
            "gas": hex(21_000), "maxFeePerGas": hex(10**12), "maxPriorityFeePerGas": hex(10**11)}])
        await rpc.call("evm_mine")
        blk = await rpc.call("eth_getBlockByNumber", [hex(b.target_block), False])
        assert blk["transactions"] == [repl]
        s = await settle_one(rpc, world, b)
        assert (s.outcome, s.victim_status) == (O.VICTIM_NOT_INCLUDED, VictimStatus.REPLACED), s
        assert repl.lower() in s.reason
        await reset()

        # block-driven source (no victim): at the top of block N, lost when anything moved our pools in it.
        h = await head(rpc)
        arb = await build(world, await world.backrun(None, h), h, NonceTracker())
        await rpc.call("evm_mine")
        s = await settle_one(rpc, world, arb)
        assert s.outcome is O.WOULD_HAVE_WON and s.error_wei == 0 and s.victim_status is VictimStatus.NONE
        await reset()
        h = await head(rpc)
        arb = await build(world, await world.backrun(None, h), h, NonceTracker())
        comp = await competitor_sells(rpc, world, tkn=100 * E18)
        await rpc.call("evm_mine")
        s = await settle_one(rpc, world, arb)
        assert s.outcome is O.LOST_TO_COMPETITOR and s.winners[0].tx_hash == comp.lower()


@pytest.mark.devnet
async def test_reorged_target_block_is_judged_on_the_canonical_chain() -> None:
    async with world_with_competitor() as (rpc, world):
        victim, b = await staged(rpc, world)
        await rpc.call("evm_mine")
        first = await settle_one(rpc, world, b)
        assert first.outcome is O.WOULD_HAVE_WON
        # A one-block reorg replaces block N with one that holds only the competitor's swap.
        data = world.swap(world.router_a, 900 * E18, [world.tkn, world.weth], AUTH.address)
        await rpc.call("anvil_reorg", [1, [[{"from": AUTH.address, "to": world.router_a, "input": "0x" + data.hex(),
                                              "gas": hex(300_000)}, 0]]])
        blk = await rpc.call("eth_getBlockByNumber", [hex(b.target_block), False])
        assert victim.hash_hex not in blk["transactions"]
        again = await settle_one(rpc, world, b)
        assert again.outcome is O.VICTIM_NOT_INCLUDED and again.block_hash == blk["hash"]
        assert again.block_hash != first.block_hash


def _fake_node(answers: dict[str, Any]) -> RpcClient:
    """A node that answers each method from ``answers`` (an Exception class: that HTTP failure)."""
    import orjson

    def handler(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        reqs = body if isinstance(body, list) else [body]
        out = []
        for r in reqs:
            a = answers.get(r["method"])
            if a == 502:
                return httpx.Response(502, content=b"")
            if a == "rpc_error":
                out.append({"jsonrpc": "2.0", "id": r["id"], "error": {"code": -32000, "message": "busy"}})
                continue
            out.append({"jsonrpc": "2.0", "id": r["id"], "result": a(r["params"]) if callable(a) else a})
        return httpx.Response(200, json=out if isinstance(body, list) else out[0])

    return RpcClient("http://node.invalid", transport=httpx.MockTransport(handler))


async def test_node_trouble_is_a_retry_never_an_outcome() -> None:
    from factories import make_bundle

    b = make_bundle(target_block=101)
    parent = {"hash": "0x" + "01" * 32, "number": hex(100)}
    block = {"hash": "0x" + "02" * 32, "parentHash": "0x" + "03" * 32, "number": hex(101), "timestamp": "0x10",
             "baseFeePerGas": "0x1", "miner": "0x" + "00" * 20, "transactions": []}
    cases = [
        ({"eth_getBlockByNumber": 502}, "node_error"),
        ({"eth_getBlockByNumber": None, "eth_getBlockReceipts": []}, "block_missing"),
        # Block N's parent is not the block N-1 the node gave in the same batch: a reorg under us.
        ({"eth_getBlockByNumber": lambda p: block if p[0] == hex(101) else parent, "eth_getBlockReceipts": []},
         "reorg_between_calls"),
        ({"eth_getBlockByNumber": lambda p: {**block, "parentHash": parent["hash"]} if p[0] == hex(101) else parent,
          "eth_getBlockReceipts": [{"blockHash": "0x" + "09" * 32}]}, "reorg_between_calls"),
        ({"eth_getBlockByNumber": "garbage", "eth_getBlockReceipts": 7}, "bad_node_answer"),
        # The block is fine, the victim look-up fails: a retry, never "dropped".
        ({"eth_getBlockByNumber": lambda p: {**block, "parentHash": parent["hash"]} if p[0] == hex(101) else parent,
          "eth_getBlockReceipts": [], "eth_getTransactionByHash": "rpc_error", "eth_getTransactionCount": "0x0"},
         "node_error"),
    ]
    for answers, reason in cases:
        got = await Settler(_fake_node(answers), searcher=SEARCHER.address, weth="0x" + "ee" * 20).settle(101, [b])
        assert isinstance(got, Retry) and got.reason.startswith(reason), (reason, got)
    # Hundreds of transactions are fine; more than the cap is not replayed.
    many = {**block, "parentHash": parent["hash"], "transactions": [{"hash": "0x%064x" % i} for i in range(5)]}
    got = await Settler(_fake_node({"eth_getBlockByNumber": lambda p: many if p[0] == hex(101) else parent,
                                    "eth_getBlockReceipts": []}),
                        searcher=SEARCHER.address, weth="0x" + "ee" * 20, max_block_txs=4).settle(101, [b])
    assert got == Retry("block_too_large")


def test_precedence_is_the_architecture_order() -> None:
    assert [str(o) for o in PRECEDENCE] == ["included", "victim_not_included", "state_moved_before_victim",
                                           "lost_to_competitor", "would_have_won"]


@pytest.mark.devnet
async def test_a_block_of_hundreds_of_transactions_is_replayed_exactly() -> None:
    async with world_with_competitor() as (rpc, world):
        victim, b = await staged(rpc, world)
        await rpc.call("anvil_dropTransaction", [victim.hash_hex])
        n0 = int(await rpc.call("eth_getTransactionCount", [DEPLOYER.address, "pending"]), 16)
        sends = [("eth_sendTransaction", [{"from": DEPLOYER.address, "to": "0x%040x" % (0x1000 + i), "value": "0x1",
                                            "gas": hex(21_000), "nonce": hex(n0 + i)}]) for i in range(300)]
        hashes = await rpc.batch(sends)
        assert all(isinstance(h, str) for h in hashes), [h for h in hashes if not isinstance(h, str)][:2]
        await rpc.call("eth_sendRawTransaction", ["0x" + victim.raw.hex()])
        await rpc.call("evm_mine")
        blk = await rpc.call("eth_getBlockByNumber", [hex(b.target_block), False])
        assert len(blk["transactions"]) == 301 and blk["transactions"][-1] == victim.hash_hex
        settler = Settler(rpc, searcher=SEARCHER.address, weth=world.weth)
        [s] = await settler.settle(b.target_block, [b])  # type: ignore[misc]
        assert s.outcome is O.WOULD_HAVE_WON and s.victim_index == 300
        assert s.counterfactual_net_wei == b.expected_net_profit_wei
        assert s.deviation is Deviation.NONE and s.baseline_gross_wei is None  # exact: no baseline needed
        assert (settler.batches, settler.node_calls) == (2, 4)  # bounded, whatever the block's size
