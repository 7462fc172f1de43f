"""V3 victim traffic on the devnet: the real SwapRouter and the Universal Router's V3 commands.

One anvil for the module: the V2 devnet, V3 (:func:`deploy_v3`), and the Universal
Router wired to the V3 factory. Victims are sent one a block (so each meets the
state it was quoted on) and every one is held to its receipt: it reverts exactly
when the ground truth says so, and otherwise moves exactly the V3 pools the ground
truth names (their ``Swap`` logs), in order; some cross initialised ticks, and
some leave a V3 pool out of line with a V2 pair or another fee tier by more than
the two legs' fees (a gap worth backrunning).
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from aether.chain import RpcClient, open_rpc
from aether.devnet import AnvilProcess, DevnetInfo, deploy
from aether.devnet._traffic import DEFAULT_MIX_V3, VictimTraffic, parse_mix, parse_route_mix
from aether.devnet._universal import (
    ALL_ROUTE_KINDS,
    RouteContracts,
    RouteKind,
    V3RouteKind,
    deploy_route_contracts,
    encode_v3_path,
    route_kind,
)
from aether.devnet._v3 import V3DevnetInfo, deploy_v3
from aether.dex._v3pool import SWAP_EVENT_TOPIC

WETH_SYNC = "0x1c411e9a96e071241c2f21f7726b17ae89e3cab4c78be50e062b03a9fffbbad1"


class _Net:
    def __init__(self, url: str, info: DevnetInfo, v3: V3DevnetInfo, routes: RouteContracts) -> None:
        self.url, self.info, self.v3, self.routes = url, info, v3, routes


@pytest.fixture(scope="module")
def net() -> Iterator[_Net]:
    node = AnvilProcess()
    node.start()
    try:

        async def main() -> _Net:
            async with open_rpc(node.rpc_url, timeout=30.0) as rpc:
                info = await deploy(rpc, Path(tempfile.mkdtemp()), ws_url=node.ws_url, n_victims=6)
                v3 = await deploy_v3(rpc, info)
                routes = await deploy_route_contracts(rpc, info, v3_factory=v3.factory, v3_init_code_hash=v3.init_code_hash)
                return _Net(node.rpc_url, info, v3, routes)

        yield trio.run(main)
    finally:
        node.stop()


# --------------------------------------------------------------------------- pure parts


def test_v3_path_encoding_is_token_fee_token() -> None:
    a, w, b = "0x" + "aa" * 20, "0x" + "11" * 20, "0x" + "bb" * 20
    assert encode_v3_path([a, w, b], [500, 3000]) == bytes.fromhex("aa" * 20 + "0001f4" + "11" * 20 + "000bb8" + "bb" * 20)
    with pytest.raises(ValueError, match="3 tokens need 2 fees, got 1"):
        encode_v3_path([a, w, b], [500])
    with pytest.raises(ValueError, match="is not a uint24"):
        encode_v3_path([a, b], [2**24])


def test_route_mix_accepts_v3_kinds_only_where_v3_can_be() -> None:
    mix = parse_route_mix("router02=1,v3_swap_router=2,universal_router_v3=1")
    assert mix == {RouteKind.ROUTER02: 0.25, V3RouteKind.SWAP_ROUTER: 0.5, V3RouteKind.UNIVERSAL_ROUTER: 0.25}
    # parse_mix stays the V2-only parser (the replay tool's --route-mix)
    with pytest.raises(ValueError, match="v3_swap_router: no V3 pools here"):
        parse_mix("router02=1,v3_swap_router=1")
    with pytest.raises(ValueError, match="unknown route kind 'v4'"):
        parse_route_mix("v4=1")
    assert route_kind("universal_router_v3") is V3RouteKind.UNIVERSAL_ROUTER
    assert [k.value for k in ALL_ROUTE_KINDS][-2:] == ["v3_swap_router", "universal_router_v3"]
    assert abs(sum(DEFAULT_MIX_V3.values()) - 1.0) < 1e-12


def test_v3_kinds_without_their_contracts_are_refused(net: _Net) -> None:
    async def body(rpc: RpcClient) -> None:
        with pytest.raises(ValueError, match="needs the V3 devnet"):
            VictimTraffic(rpc, net.info, mix={V3RouteKind.SWAP_ROUTER: 1.0})
        unwired = RouteContracts(net.routes.permit2, net.routes.universal_router, net.routes.multiswap)
        with pytest.raises(ValueError, match="wired to the V3 factory"):
            VictimTraffic(rpc, net.info, routes=unwired, v3=net.v3, mix={V3RouteKind.UNIVERSAL_ROUTER: 1.0})
        t = VictimTraffic(rpc, net.info, routes=unwired, v3=net.v3)  # default mix: V2 only, the router cannot trade V3
        with pytest.raises(ValueError, match="not wired to the V3 factory"):
            await t.send_tx("swapExactETHForTokens", route_kind=V3RouteKind.UNIVERSAL_ROUTER)
        with pytest.raises(ValueError, match="trades on uniswap_v3 only"):
            await VictimTraffic(rpc, net.info, v3=net.v3).send_tx("swapExactETHForTokens", dex="uniswap",
                                                                  route_kind="v3_swap_router")

    _run(net, body)


def _run(net: _Net, fn: Any) -> Any:
    async def main() -> Any:
        async with open_rpc(net.url, timeout=30.0) as rpc:
            return await fn(rpc)

    return trio.run(main)


# --------------------------------------------------------------------------- on chain


def _v3_price(sqrt_p: int) -> float:
    return (sqrt_p / 2**96) ** 2


async def _prices(rpc: RpcClient, pools: list[str]) -> list[float]:
    replies = await rpc.batch([("eth_call", [{"to": p, "data": "0x3850c7bd"}, "latest"]) for p in pools])  # slot0()
    return [_v3_price(int(r[2:66], 16)) for r in replies]


def test_v3_victims_do_on_chain_what_the_ground_truth_says(net: _Net) -> None:
    """Both V3 route kinds, every shape: reverts as announced, moves the announced pools, crosses ticks, opens gaps."""

    async def body(rpc: RpcClient) -> None:
        truth = io.StringIO()
        traffic = VictimTraffic(rpc, net.info, seed=11, routes=net.routes, v3=net.v3, ground_truth=truth,
                                mix={V3RouteKind.SWAP_ROUTER: 2.0, V3RouteKind.UNIVERSAL_ROUTER: 1.0},
                                transfer_share=0.0)
        sent = []
        moves: list[float] = []  # bps a victim moved each pool it swapped in
        pools = [k.address for k in net.v3.pools]
        snap = await rpc.call("evm_snapshot", [])
        try:
            for i in range(48):
                revert = True if i % 8 == 7 else None  # some forced, the rest drawn (about 12% revert)
                before = await _prices(rpc, pools)
                sent.append(await traffic.send_tx(revert=revert))
                await rpc.call("evm_mine", [])
                after = await _prices(rpc, pools)
                if not sent[-1].expect_revert:
                    moves += [abs(a / b - 1) * 10_000 for a, b, p in zip(after, before, pools, strict=True)
                              if p in sent[-1].pools]
            lines = [json.loads(x) for x in truth.getvalue().splitlines()]
            assert [x["hash"] for x in lines] == ["0x" + s.hash.hex() for s in sent]
            shapes: set[tuple[str, str, int]] = set()
            for x, s in zip(lines, sent, strict=True):
                r = await rpc.call("eth_getTransactionReceipt", [x["hash"]])
                assert r is not None, x
                assert (r["status"] == "0x0") == x["expect_revert"], (r["gasUsed"], (await rpc.call("eth_getTransactionByHash", [x["hash"]]))["gas"], s.ticks_crossed, s.kind, s.size_wei)
                swapped = list(dict.fromkeys(log["address"] for log in r["logs"] if log["topics"][:1] == [SWAP_EVENT_TOPIC]))
                assert swapped == ([] if x["expect_revert"] else x["pools"]), x
                assert not any(log["topics"][:1] == [WETH_SYNC] for log in r["logs"]), "a V3 victim moved a V2 pair"
                assert x["to"] == (net.v3.router if x["route_kind"] == "v3_swap_router" else net.routes.universal_router)
                if x["route_kind"] == "v3_swap_router" and s.kind == "swapExactETHForTokens":
                    # ETH in through the SwapRouter: a multicall ending in refundETH, as wallets send it
                    data = (await rpc.call("eth_getTransactionByHash", [x["hash"]]))["input"]
                    assert data.startswith("0xac9650d8") and "12210e8a" in data, data[:10]
                shapes.add((x["route_kind"], s.kind, len(s.path)))
            # No victim left ETH in the SwapRouter: it would pay the next WETH-in swap through it.
            assert int(await rpc.call("eth_getBalance", [net.v3.router, "latest"]), 16) == 0
            kinds = {k for k, _, _ in shapes}
            assert kinds == {"v3_swap_router", "universal_router_v3"}
            # exactInputSingle, exactInput (two hops), ETH in and ETH out through both
            for rk in kinds:
                assert {n for k, _, n in shapes if k == rk} == {2, 3}, shapes
                assert {s for k, s, _ in shapes if k == rk} >= {"swapExactETHForTokens", "swapExactTokensForETH",
                                                                "swapExactTokensForTokens"}, shapes
            reverts = sum(s.expect_revert for s in sent)
            assert 6 <= reverts < 20, reverts
            crossed = [s.ticks_crossed for s in sent if not s.expect_revert]
            assert sum(c > 0 for c in crossed) >= len(crossed) // 4, crossed
            # A victim that moves its pool by more than the round trip's fees (5 + 30 bps on the
            # cheapest V3 tier and a V2 pair) leaves a gap worth backrunning.
            assert sum(m > 40 for m in moves) >= len(moves) // 6, sorted(moves)
            print(f"\n[v3 traffic] {len(sent)} victims, {reverts} reverts, crossing ticks: "
                  f"{sum(c > 0 for c in crossed)}/{len(crossed)} (max {max(crossed)}), pool moves > 40 bps: "
                  f"{sum(m > 40 for m in moves)}/{len(moves)}, median move {sorted(moves)[len(moves) // 2]:.1f} bps")
        finally:
            await rpc.call("evm_revert", [snap])

    _run(net, body)


def test_v3_victims_of_one_block_are_quoted_on_the_pending_state(net: _Net) -> None:
    """Several non-reverting victims through the same pool in one block: none reverts (each quoted after the last)."""

    async def body(rpc: RpcClient) -> None:
        truth = io.StringIO()
        traffic = VictimTraffic(rpc, net.info, seed=3, routes=net.routes, v3=net.v3, ground_truth=truth,
                                mix={V3RouteKind.SWAP_ROUTER: 1.0, V3RouteKind.UNIVERSAL_ROUTER: 1.0})
        snap = await rpc.call("evm_snapshot", [])
        try:
            sent = [await traffic.send_tx("swapExactETHForTokens", revert=False) for _ in range(8)]
            await rpc.call("evm_mine", [])
            assert any(s.after_pending for s in sent)
            for s in sent:
                r = await rpc.call("eth_getTransactionReceipt", ["0x" + s.hash.hex()])
                assert r is not None and r["status"] == "0x1", s
        finally:
            await rpc.call("evm_revert", [snap])

    _run(net, body)
