"""Victims seen by simulation on the real devnet, whatever contract they call.

Each route kind end to end on anvil: a Router02 call (whose post-state must equal
the calldata fast path's, pair by pair, to the wei), a direct multi-pair call from
our own MultiSwap contract across both DEXes (every gap it opens becomes a
candidate), a failing direct call, and a contract that mimics the ``Sync`` event.
Every candidate is validated and replayed on the chain to the wei.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
import trio
from eth_abi import encode as abi_encode

from aether._errors import RpcError
from aether.actors import StrategyActor
from aether.chain import open_rpc
from aether.chain._tx import decode_pending_tx
from aether.devnet._deploy import contract_address, load_artifact, victim_account
from aether.dex import PoolBook, encode_swap, get_amount_out
from aether.messages import Candidate, PendingTx, Tick
from aether.metrics import Metrics
from aether.strategy import BackrunStrategy, PostState, Rejection, V2Reserves, Validator, VictimSimulator
from test_strategy_devnet import _head, _replay, _send, _victim_swaps, _weth

pytestmark = pytest.mark.devnet

ETHER = 10**18


def _selector(sig: str) -> bytes:
    from eth_utils import keccak

    return keccak(text=sig)[:4]


SWAP_SEL = _selector("swap(address,uint256,address[],uint256[],bool[],address)")
RELAY_SEL = _selector("relay(address,bytes,uint112,uint112)")


async def _deploy(rpc: Any, devnet: Any, name: str, args: bytes, index: int = 7) -> str:
    account = victim_account(devnet.seed, index)
    nonce = int(await rpc.call("eth_getTransactionCount", [account.address, "pending"]), 16)
    _, code = load_artifact(name)
    signed = account.sign_transaction({"type": 2, "chainId": devnet.chain_id, "nonce": nonce, "data": code + args,
                                       "gas": 2_000_000, "maxFeePerGas": 200 * 10**9, "maxPriorityFeePerGas": 10**9})
    await rpc.call("eth_sendRawTransaction", ["0x" + signed.raw_transaction.hex()])
    await rpc.call("evm_mine", [])
    address = contract_address(account.address.lower(), nonce)
    assert await rpc.call("eth_getCode", [address, "latest"]) not in ("0x", None)
    return address


async def _reserves(rpc: Any, pair: str) -> tuple[int, int]:
    r = await rpc.call("eth_call", [{"to": pair, "data": "0x0902f1ac"}, "latest"])
    return int(r[2:66], 16), int(r[66:130], 16)


async def _multiswap_call(rpc: Any, devnet: Any, hops: list[tuple[str, str, str]], amount_in: int, to: str,
                          *, bump_last: int = 0) -> bytes:
    """Calldata for MultiSwap.swap along ``hops`` = [(dex, token_in, token_out)], ETH (WETH) in."""
    pairs, outs, z41 = [], [], []
    amount = amount_in
    for dex, t_in, t_out in hops:
        p = devnet.pair(dex, t_in, t_out)
        r0, r1 = await _reserves(rpc, p.address)
        zero_for_one = t_in == p.token0
        r_in, r_out = (r0, r1) if zero_for_one else (r1, r0)
        amount = get_amount_out(amount, r_in, r_out, 30)
        pairs.append(p.address)
        outs.append(amount)
        z41.append(zero_for_one)
    outs[-1] += bump_last
    return SWAP_SEL + abi_encode(["address", "uint256", "address[]", "uint256[]", "bool[]", "address"],
                                 [hops[0][1], amount_in, pairs, outs, z41, to])


async def _pending(rpc: Any, vhash: str) -> PendingTx:
    return decode_pending_tx(await rpc.call("eth_getTransactionByHash", [vhash]))


async def _setup(rpc: Any, devnet: Any) -> tuple[PoolBook, BackrunStrategy, VictimSimulator, list[int]]:
    cfg = devnet.chain_config
    book = PoolBook(rpc, cfg)
    head = await _head(rpc)
    await book.refresh(head.number)
    untrusted: list[int] = []
    sim = VictimSimulator(rpc, book, timeout_s=10, on_untrusted=untrusted.append)
    return book, BackrunStrategy(cfg, book, searcher=devnet.searcher_address), sim, untrusted


async def _validated_and_realised(rpc: Any, devnet: Any, cand: Candidate, vhash: str) -> None:
    checked = await Validator(rpc, searcher=devnet.searcher_address).validate(cand)
    assert isinstance(checked, Candidate) and checked.validated, checked
    snap = await rpc.call("evm_snapshot", [])
    assert cand.victim is not None
    with contextlib.suppress(RpcError):  # an earlier replay's revert dropped it from the pool
        await rpc.call("eth_sendRawTransaction", ["0x" + cand.victim.raw.hex()])
    try:
        assert await _replay(rpc, devnet, cand, victim_hash=vhash) == cand.expected_gross_profit_wei
    finally:
        await rpc.call("evm_revert", [snap])


@pytest.mark.parametrize("function", ["swapExactETHForTokens", "swapTokensForExactETH", "swapExactTokensForTokens"])
async def test_router02_post_state_from_simulation_equals_the_calldata_fast_path(devnet: Any, chain: Any,
                                                                                 function: str) -> None:
    path, a_in, a_out = _victim_swaps(devnet)[function]
    async with open_rpc(devnet.rpc_url, timeout=10) as rpc:
        head = await _head(rpc)
        victim = victim_account(devnet.seed, 1)
        data, value = encode_swap(function, amount_in=a_in, amount_out=a_out, path=path, to=victim.address.lower(),
                                  deadline=head.timestamp + 600)
        vhash = await _send(rpc, victim, devnet.chain_id, devnet.dex("uniswap").router, data, value=value)
        tx = await _pending(rpc, vhash)
        book, strategy, sim, untrusted = await _setup(rpc, devnet)
        simulated = await sim.simulate(tx, head)
        decoded = await strategy.post_state_from_calldata(tx, head)
        assert isinstance(simulated, PostState) and isinstance(decoded, PostState), (simulated, decoded)
        assert simulated == decoded  # same pairs, same order, same reserves to the wei
        assert len(simulated.pools) == len(path) - 1 and untrusted == []

        inventory = await _weth(rpc, devnet.weth, devnet.searcher_address)
        cands = await strategy.on_post_state(tx, head, simulated, inventory_wei=inventory)
        legacy = await strategy.on_victim(tx, head, inventory_wei=inventory)
        assert isinstance(cands, list) and isinstance(legacy, Candidate), (cands, legacy)
        best = cands[0]
        assert (best.route, best.calls) == (legacy.route, legacy.calls)
        await _validated_and_realised(rpc, devnet, best, vhash)


async def test_direct_multi_pair_victim_across_both_dexes_yields_every_gap_it_opens(devnet: Any, chain: Any) -> None:
    W, link, uni_t = devnet.weth, devnet.token("LINK").address, devnet.token("UNI").address
    async with open_rpc(devnet.rpc_url, timeout=10) as rpc:
        ms = await _deploy(rpc, devnet, "MultiSwap", abi_encode(["address"], [W]))
        head = await _head(rpc)
        victim = victim_account(devnet.seed, 2)
        # WETH -> LINK on uniswap, LINK -> UNI on uniswap, UNI -> WETH on sushiswap: three pools, two WETH legs.
        hops = [("uniswap", W, link), ("uniswap", link, uni_t), ("sushiswap", uni_t, W)]
        data = await _multiswap_call(rpc, devnet, hops, 30 * ETHER, victim.address.lower())
        vhash = await _send(rpc, victim, devnet.chain_id, ms, data, value=30 * ETHER)
        tx = await _pending(rpc, vhash)
        book, strategy, sim, untrusted = await _setup(rpc, devnet)
        post = await sim.simulate(tx, head)
        assert isinstance(post, PostState), post
        moved = [p.pair for p in post.pools]
        assert moved == [devnet.pair(d, a, b).address for d, a, b in hops]
        # The post-state is the chain's: mine the victim and read the pairs back.
        snap = await rpc.call("evm_snapshot", [])
        await rpc.call("evm_mine", [])
        assert [V2Reserves(p, *await _reserves(rpc, p)) for p in moved] == list(post.pools)
        await rpc.call("evm_revert", [snap])
        await rpc.call("eth_sendRawTransaction", ["0x" + tx.raw.hex()])

        inventory = await _weth(rpc, devnet.weth, devnet.searcher_address)
        cands = await strategy.on_post_state(tx, head, post, inventory_wei=inventory)
        assert isinstance(cands, list), cands
        tokens = {c.route[0].token_out for c in cands}
        assert tokens == {link, uni_t}, cands  # one candidate per gap
        for c in cands:
            assert {h.dex for h in c.route} == {"uniswap", "sushiswap"}
            await _validated_and_realised(rpc, devnet, c, vhash)


async def test_failing_direct_victim_and_a_sync_mimic_fail_closed(devnet: Any, chain: Any) -> None:
    W, link = devnet.weth, devnet.token("LINK").address
    async with open_rpc(devnet.rpc_url, timeout=10) as rpc:
        ms = await _deploy(rpc, devnet, "MultiSwap", abi_encode(["address"], [W]))
        # A mimic that even reports real tokens: its address is still not CREATE2(factory, tokens).
        mimic = await _deploy(rpc, devnet, "SyncMimic", abi_encode(["address", "address"], sorted([W, link])))
        head = await _head(rpc)
        book, strategy, sim, untrusted = await _setup(rpc, devnet)
        victim = victim_account(devnet.seed, 3)

        # One wei more out than the pair can give: UniswapV2: K, the victim reverts.
        bad = await _multiswap_call(rpc, devnet, [("uniswap", W, link)], 10 * ETHER, victim.address.lower(), bump_last=1)
        h1 = await _send(rpc, victim, devnet.chain_id, ms, bad, value=10 * ETHER)
        result = await sim.simulate(await _pending(rpc, h1), head)
        assert isinstance(result, Rejection) and result.reason == "victim_reverts", result

        # The mimic lies (reserves 1 and 2), then forwards a real swap: only the real pair is used.
        good = await _multiswap_call(rpc, devnet, [("uniswap", W, link)], 10 * ETHER, victim.address.lower())
        relay = RELAY_SEL + abi_encode(["address", "bytes", "uint112", "uint112"], [ms, good, 1, 2])
        h2 = await _send(rpc, victim_account(devnet.seed, 4), devnet.chain_id, mimic, relay, value=10 * ETHER)
        post = await sim.simulate(await _pending(rpc, h2), head)
        assert isinstance(post, PostState), post
        assert [p.pair for p in post.pools] == [devnet.pair("uniswap", W, link).address]
        assert mimic not in [p.pair for p in post.pools] and untrusted == [1]
        assert sim.statistics().untrusted_logs == 1

        # The mimic alone: nothing tracked moved.
        lie = RELAY_SEL + abi_encode(["address", "bytes", "uint112", "uint112"], [victim.address, b"", 5, 6])
        h3 = await _send(rpc, victim_account(devnet.seed, 5), devnet.chain_id, mimic, lie)
        alone = await sim.simulate(await _pending(rpc, h3), head)
        assert isinstance(alone, Rejection) and alone.reason == "no_pool_moved", alone
        assert untrusted == [1, 1]
        assert book.info(mimic) is None


async def test_strategy_actor_simulates_victims_end_to_end(devnet: Any, chain: Any) -> None:
    W, link = devnet.weth, devnet.token("LINK").address
    async with open_rpc(devnet.rpc_url, timeout=10) as rpc:
        ms = await _deploy(rpc, devnet, "MultiSwap", abi_encode(["address"], [W]))
        head = await _head(rpc)
        victim = victim_account(devnet.seed, 6)
        data = await _multiswap_call(rpc, devnet, [("uniswap", W, link)], 25 * ETHER, victim.address.lower())
        direct = await _pending(rpc, await _send(rpc, victim, devnet.chain_id, ms, data, value=25 * ETHER))
        m = Metrics()
        inbox_tx, inbox = trio.open_memory_channel[Any](8)
        out, out_rx = trio.open_memory_channel[Any](8)
        actor = StrategyActor(rpc=rpc, chain=devnet.chain_config, searcher=devnet.searcher_address, metrics=m,
                              inbox=inbox, out=out, block_arb=False, simulate_victims=True, sim_concurrency=2)
        inventory = await _weth(rpc, W, devnet.searcher_address)
        await inbox_tx.send(Tick(head, head.base_fee, 10 * ETHER, inventory, 0))
        await inbox_tx.send(direct)
        await inbox_tx.aclose()
        with trio.fail_after(30):
            await actor.run()
        got = [out_rx.receive_nowait() for _ in range(out_rx.statistics().current_buffer_used)]
        assert len(got) == 1 and got[0].victim == direct, got
        stats = actor.simulator.statistics() if actor.simulator else None
        assert stats is not None and stats.post_states == 1 and stats.max_in_flight == 1
        await _validated_and_realised(rpc, devnet, got[0], direct.hash_hex)


# --------------------------------------------------------------------------- the Universal Router


async def test_universal_router_victims_of_every_shape_are_seen_and_backrun_to_the_wei(devnet: Any, chain: Any) -> None:
    from aether.devnet._universal import (
        ADDRESS_THIS, MSG_SENDER, deploy_route_contracts, encode_execute, unwrap_weth, v2_swap_exact_in,
        v2_swap_exact_out, wrap_eth,
    )

    W, link, dai, usdc = (devnet.weth, devnet.token("LINK").address, devnet.token("DAI").address,
                          devnet.token("USDC").address)
    async with open_rpc(devnet.rpc_url, timeout=30) as rpc:
        routes = await deploy_route_contracts(rpc, devnet)
        head = await _head(rpc)
        d = head.timestamp + 600
        shapes = {
            # ETH in, exact in: WRAP_ETH then the swap paid by the router
            "eth_exact_in": ([wrap_eth(ADDRESS_THIS, 30 * ETHER), v2_swap_exact_in(MSG_SENDER, 30 * ETHER, 1, [W, link], False)],
                             30 * ETHER, [(W, link)]),
            # ETH in, exact out, the change unwrapped back
            "eth_exact_out": ([wrap_eth(ADDRESS_THIS, 40 * ETHER), v2_swap_exact_out(MSG_SENDER, 3000 * ETHER, 40 * ETHER, [W, link], False),
                               unwrap_weth(MSG_SENDER, 0)], 40 * ETHER, [(W, link)]),
            # token in through Permit2, ETH out
            "token_exact_in_eth_out": ([v2_swap_exact_in(ADDRESS_THIS, 5000 * ETHER, 1, [link, W], True), unwrap_weth(MSG_SENDER, 1)],
                                       0, [(link, W)]),
            # multi-hop, exact out, token to token: two WETH pairs moved
            "token_multihop_exact_out": ([v2_swap_exact_out(MSG_SENDER, 50_000 * 10**6, 10**24, [dai, W, usdc], True)],
                                         0, [(dai, W), (W, usdc)]),
        }
        inventory = await _weth(rpc, W, devnet.searcher_address)
        for i, (name, (commands, value, hops)) in enumerate(shapes.items()):
            snap = await rpc.call("evm_snapshot", [])
            try:
                victim = victim_account(devnet.seed, 10 + i)
                vhash = await _send(rpc, victim, devnet.chain_id, routes.universal_router, encode_execute(commands, d), value=value)
                tx = await _pending(rpc, vhash)
                book, strategy, sim, untrusted = await _setup(rpc, devnet)
                post = await sim.simulate(tx, head)
                assert isinstance(post, PostState), (name, post)
                assert [p.pair for p in post.pools] == [devnet.pair("uniswap", a, b).address for a, b in hops], name
                cands = await strategy.on_post_state(tx, head, post, inventory_wei=inventory)
                assert isinstance(cands, list) and cands, (name, cands)
                await _validated_and_realised(rpc, devnet, cands[0], vhash)
            finally:
                await rpc.call("anvil_dropAllTransactions", [])
                await rpc.call("evm_revert", [snap])


async def test_mixed_traffic_ground_truth_matches_what_the_chain_does(devnet: Any, chain: Any) -> None:
    import io
    import json

    from aether.devnet._traffic import VictimTraffic, parse_mix
    from aether.devnet._universal import RouteKind, deploy_route_contracts
    from aether.dex._logs import SYNC_TOPIC

    async with open_rpc(devnet.rpc_url, timeout=30) as rpc:
        routes = await deploy_route_contracts(rpc, devnet)
        truth = io.StringIO()
        traffic = VictimTraffic(rpc, devnet, seed=5, routes=routes, ground_truth=truth,
                                mix=parse_mix("router02=1,universal_router=1,direct_multi_pair=1"))
        book, strategy, sim, untrusted = await _setup(rpc, devnet)
        sent, seen = [], {}
        # One victim a block, so each is its sender's next transaction on the head it is simulated on.
        for _ in range(90):
            head = await _head(rpc)
            await book.refresh(head.number)
            s = await traffic.send_tx()
            sent.append(s)
            if s.kind != "transfer":
                seen["0x" + s.hash.hex()] = await sim.simulate(await _pending(rpc, "0x" + s.hash.hex()), head)
            await rpc.call("evm_mine", [])
        kinds = {s.route_kind for s in sent}
        assert kinds == {"transfer", *RouteKind}, kinds
        lines = [json.loads(x) for x in truth.getvalue().splitlines()]
        assert [x["hash"] for x in lines] == ["0x" + s.hash.hex() for s in sent]
        receipts = {x["hash"]: await rpc.call("eth_getTransactionReceipt", [x["hash"]]) for x in lines}
        for x in lines:
            r = receipts[x["hash"]]
            assert r is not None, x
            if x["route_kind"] == "transfer":
                continue
            assert (r["status"] == "0x0") == x["expect_revert"], x
            moved = list(dict.fromkeys(log["address"] for log in r["logs"] if log["topics"][:1] == [SYNC_TOPIC]))
            assert moved == ([] if x["expect_revert"] else x["pools"]), x
            got = seen[x["hash"]]
            if x["expect_revert"]:
                assert isinstance(got, Rejection) and got.reason == "victim_reverts", (x, got)
            else:
                assert isinstance(got, PostState) and [p.pair for p in got.pools] == x["pools"], (x, got)
        by_route = dict(traffic.statistics().by_route)
        assert sum(by_route.values()) == 90 and untrusted == []
