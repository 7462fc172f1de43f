"""Why a would_have_won bundle's counterfactual differs from its prediction: each mechanism on anvil.

The 30-minute shadow run at c31df08 had 2 of 277 would_have_won bundles off the
prediction with nothing reported as moving the pools before the victim. These
tests build each mechanism that produces that on a real chain and check the
settlement now names it (an outcome or a measured ``deviation``):

- the victim reverts in block N because a swap before it moved one of ITS pools
  that is not on our route (a reverted victim has no logs, so its pools were
  unknown and the mover went unseen);
- the victim reverts in block N on its own (here: its deadline passed at block
  N's timestamp), nothing before it;
- a transaction before the victim changes only our gas: dust of the middle
  token sent to the searcher (our balance slot is no longer zero: SSTORE cost
  and refund change), our gross exact.
"""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi import decode, encode
from eth_utils import to_checksum_address

from aether.bundle import NonceTracker
from aether.chain import RpcClient
from aether.messages import Bundle, PendingTx
from aether.settlement import Deviation, SettlementOutcome, VictimStatus

from test_builder import DEPLOYER, E18, MAX, SEARCHER, VICTIM, World, artifact, build, call_data, head, mine, send
from test_settlement import settle_one, staged, world_with_competitor

O = SettlementOutcome


async def _token_and_pair(rpc: RpcClient, world: World) -> tuple[str, str]:
    """Token X and an X/WETH pair on DEX A (not on our route), the victim funded with X."""
    d = DEPLOYER.address
    [r] = await mine(rpc, [await send(rpc, d, None, artifact("ERC20") + encode(["uint256"], [10**30]))])
    x = r["contractAddress"].lower()
    factory = "0x" + (await rpc.call("eth_call", [{"to": world.router_a, "data": "0x" + call_data(
        "factory()", [], []).hex()}, "latest"]))[-40:]
    await mine(rpc, [await send(rpc, d, factory, call_data("createPair(address,address)", ["address", "address"],
                                                           [x, world.weth]))])
    pair = "0x" + (await rpc.call("eth_call", [{"to": factory, "data": "0x" + call_data(
        "getPair(address,address)", ["address", "address"], [x, world.weth]).hex()}, "latest"]))[-40:]
    transfer = "transfer(address,uint256)"
    approve = "approve(address,uint256)"
    hs = [await send(rpc, d, world.weth, call_data(transfer, ["address", "uint256"], [pair, 50 * E18])),
          await send(rpc, d, x, call_data(transfer, ["address", "uint256"], [pair, 50_000 * E18]))]
    await mine(rpc, hs)
    hs = [await send(rpc, d, pair, call_data("mint(address)", ["address"], [d])),
          await send(rpc, d, x, call_data(transfer, ["address", "uint256"], [VICTIM.address, 100_000 * E18])),
          await send(rpc, VICTIM.address, x, call_data(approve, ["address", "uint256"], [world.router_a, MAX])),
          await send(rpc, d, x, call_data(approve, ["address", "uint256"], [world.router_a, MAX]))]
    await mine(rpc, hs)
    return x, pair.lower()


async def _exact_out_victim(rpc: RpcClient, world: World, x: str, tkn_out: int, deadline: int) -> PendingTx:
    """The victim buys exactly ``tkn_out`` TKN with X through X/WETH then WETH/TKN on DEX A, max in = quote."""
    path = [x, world.weth, world.tkn]
    quote = decode(["uint256[]"], bytes.fromhex((await rpc.call("eth_call", [{"to": world.router_a, "data": "0x" + call_data(
        "getAmountsIn(uint256,address[])", ["uint256", "address[]"], [tkn_out, path]).hex()}, "pending"]))[2:]))[0]
    data = call_data("swapTokensForExactTokens(uint256,uint256,address[],address,uint256)",
                     ["uint256", "uint256", "address[]", "address", "uint256"],
                     [tkn_out, quote[0], path, VICTIM.address, deadline])
    h = await head(rpc)
    nonce = int(await rpc.call("eth_getTransactionCount", [VICTIM.address, "latest"]), 16)
    tx = {"type": 2, "chainId": world.chain_id, "nonce": nonce, "to": to_checksum_address(world.router_a), "value": 0,
          "data": data, "gas": 400_000, "maxFeePerGas": 4 * h.base_fee + 10**9, "maxPriorityFeePerGas": 10**9}
    signed = VICTIM.sign_transaction(tx)
    raw = bytes(signed.raw_transaction)
    await rpc.call("eth_sendRawTransaction", ["0x" + raw.hex()])
    return PendingTx(hash=bytes(signed.hash), raw=raw, type=2, chain_id=world.chain_id, nonce=nonce,
                     sender=VICTIM.address.lower(), to=world.router_a, value=0, input=data, gas=400_000,
                     max_fee_per_gas=tx["maxFeePerGas"], max_priority_fee_per_gas=10**9)


async def _behind(rpc: RpcClient, world: World, victim: PendingTx) -> Bundle:
    h = await head(rpc)
    return await build(world, await world.backrun(victim, h), h, NonceTracker())


async def _block_txs(rpc: RpcClient, number: int) -> list[str]:
    blk: dict[str, Any] = await rpc.call("eth_getBlockByNumber", [hex(number), False])
    return list(blk["transactions"])


@pytest.mark.devnet
async def test_victim_reverted_by_a_swap_on_its_other_pool_is_state_moved() -> None:
    async with world_with_competitor() as (rpc, world):
        x, pair_xw = await _token_and_pair(rpc, world)
        victim = await _exact_out_victim(rpc, world, x, 2_000 * E18, 2**40)
        b = await _behind(rpc, world, victim)
        assert b.expected_gross_profit_wei > 0
        # A swap on X/WETH (not on our route) lands first: the victim now needs more X than its max.
        await rpc.call("anvil_dropTransaction", [victim.hash_hex])
        mover = await rpc.call("eth_sendTransaction", [{"from": DEPLOYER.address, "to": world.router_a, "gas": hex(300_000),
                                                        "data": "0x" + world.swap(world.router_a, 5_000 * E18,
                                                                                  [x, world.weth], DEPLOYER.address).hex()}])
        await rpc.call("eth_sendRawTransaction", ["0x" + victim.raw.hex()])
        await rpc.call("evm_mine")
        assert await _block_txs(rpc, b.target_block) == [mover, victim.hash_hex]
        receipt = await rpc.call("eth_getTransactionReceipt", [victim.hash_hex])
        assert receipt["status"] == "0x0" and receipt["logs"] == []  # no log names the victim's pools

        s = await settle_one(rpc, world, b)
        assert s.outcome is O.STATE_MOVED_BEFORE_VICTIM, s
        assert s.moved_by == (mover.lower(),) and s.victim_reverted is True
        # The baseline (victim alone on N-1, then ours) is the prediction to the wei; the real block is not.
        assert s.baseline_gross_wei == b.expected_gross_profit_wei and s.baseline_gas == b.gas_used
        assert s.counterfactual_gross_wei != b.expected_gross_profit_wei
        assert s.record()["victim_reverted"] is True


@pytest.mark.devnet
async def test_victim_reverting_on_its_own_says_so() -> None:
    async with world_with_competitor() as (rpc, world):
        x, _pair = await _token_and_pair(rpc, world)
        h = await head(rpc)
        # Valid at the prediction's time (head + 1 s), expired at block N's.
        victim = await _exact_out_victim(rpc, world, x, 2_000 * E18, h.timestamp + 1)
        b = await _behind(rpc, world, victim)
        await rpc.call("evm_mine", [{"timestamp": h.timestamp + 5}])
        assert await _block_txs(rpc, b.target_block) == [victim.hash_hex]

        s = await settle_one(rpc, world, b)
        assert s.victim_reverted is True and s.moved_by == ()
        assert s.outcome in (O.WOULD_HAVE_WON, O.UNKNOWN), s
        if s.counterfactual_net_wei is not None:
            assert s.error_wei != 0
            assert s.deviation is Deviation.VICTIM_REVERTED and "reverts in block N" in s.deviation_detail
        else:
            assert "reverts" in s.reason


@pytest.mark.devnet
async def test_dust_sent_to_the_searcher_before_the_victim_is_gas_at_position() -> None:
    async with world_with_competitor() as (rpc, world):
        victim, b = await staged(rpc, world)
        # 1 wei of TKN to the searcher lands first: no pool moves, our TKN balance slot is warm-nonzero.
        await rpc.call("anvil_dropTransaction", [victim.hash_hex])
        dust = await send(rpc, DEPLOYER.address, world.tkn,
                          call_data("transfer(address,uint256)", ["address", "uint256"], [SEARCHER.address, 1]))
        await rpc.call("eth_sendRawTransaction", ["0x" + victim.raw.hex()])
        await rpc.call("evm_mine")
        assert await _block_txs(rpc, b.target_block) == [dust, victim.hash_hex]

        s = await settle_one(rpc, world, b)
        assert s.outcome is O.WOULD_HAVE_WON, s
        assert s.victim_status is VictimStatus.IN_BLOCK and s.moved_by == () and s.victim_reverted is False
        assert s.counterfactual_gross_wei == s.baseline_gross_wei == b.expected_gross_profit_wei
        assert s.baseline_gas == b.gas_used != s.counterfactual_gas
        assert s.deviation is Deviation.GAS_AT_POSITION
        assert f"{s.counterfactual_gas - b.gas_used:+d}" in s.deviation_detail
        assert s.error_wei == s.counterfactual_net_wei - b.expected_net_profit_wei != 0  # type: ignore[operator]
        assert s.record()["deviation"] == "gas_at_position"


@pytest.mark.devnet
async def test_exact_would_have_won_says_none() -> None:
    async with world_with_competitor() as (rpc, world):
        _victim, b = await staged(rpc, world)
        await rpc.call("evm_mine")
        s = await settle_one(rpc, world, b)
        assert s.outcome is O.WOULD_HAVE_WON and s.error_wei == 0
        assert s.deviation is Deviation.NONE and s.deviation_detail == ""
        assert (s.baseline_gross_wei, s.baseline_gas) == (None, None)  # nothing to attribute: not simulated
