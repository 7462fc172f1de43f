"""The Python V3 math and pool state held equal to the real V3 contracts on anvil.

One anvil for the module (V2 devnet + :func:`deploy_v3`). The property test
creates a fresh pool per example (random fee tier, price and positions, minted
with exact liquidity through ``V3Probe``), then compares several swaps per
example against the pool's own ``swap`` run by ``eth_call`` through
``V3Probe.probe`` (deltas, price, tick and liquidity after), and rolls the
chain back. QuoterV2 is compared on the seeded pools.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import attrs
import pytest
import trio
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from aether.chain import RpcClient, open_rpc
from aether.devnet import AnvilProcess, DevnetInfo, deploy, mine_until_included
from aether.devnet._deploy import _deployer_account, _searcher_account, _Signer, selector
from aether.devnet._v3 import V3DevnetInfo, deploy_v3, load_v3_artifact, v3_pool_init_code_hash
from aether.dex._v3math import (
    MAX_SQRT_RATIO,
    MIN_SQRT_RATIO,
    TickTable,
    V3MathError,
    get_sqrt_ratio_at_tick,
    get_tick_at_sqrt_ratio,
    liquidity_net_from_positions,
    swap,
    tick_spacing,
)
from aether.dex._v3pool import SWAP_EVENT_TOPIC, V3PoolKey, V3Refusal, fetch_pool_state, quote, v3_pool_address
from aether.strategy._cross import CycleSizing, V2Leg, V3Leg, size_cycle

pytestmark = pytest.mark.devnet
T = TypeVar("T")


class V3Net:
    def __init__(self, url: str, info: DevnetInfo, v3: V3DevnetInfo) -> None:
        self.url = url
        self.info = info
        self.v3 = v3

    def run(self, fn: Callable[[RpcClient], Awaitable[T]]) -> T:
        async def main() -> T:
            async with open_rpc(self.url, timeout=30.0) as rpc:
                return await fn(rpc)

        return trio.run(main)


@pytest.fixture(scope="module")
def v3net() -> Iterator[V3Net]:
    node = AnvilProcess()
    node.start()
    try:

        async def _deploy(rpc: RpcClient) -> V3Net:
            info = await deploy(rpc, Path(tempfile.mkdtemp()), ws_url=node.ws_url, n_victims=2)
            return V3Net(node.rpc_url, info, await deploy_v3(rpc, info))

        async def main() -> V3Net:
            async with open_rpc(node.rpc_url, timeout=30.0) as rpc:
                return await _deploy(rpc)

        yield trio.run(main)
    finally:
        node.stop()


# --------------------------------------------------------------------------- helpers


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


async def probe(
    rpc: RpcClient, probe_addr: str, pool: str, zero_for_one: bool, amount: int, limit: int
) -> tuple[int, int, int, int, int] | None:
    """The pool's own swap result by eth_call (None when the pool reverts)."""
    data = selector("probe(address,bool,int256,uint160)") + abi_encode(
        ["address", "bool", "int256", "uint160"], [pool, zero_for_one, amount, limit]
    )
    results = await rpc.batch([("eth_call", [{"to": probe_addr, "data": _hex(data)}, "latest"])])
    r = results[0]
    if not isinstance(r, str):
        return None
    a0, a1, p, t, liq = abi_decode(["int256", "int256", "uint160", "int24", "uint128"], bytes.fromhex(r[2:]))
    return a0, a1, p, t, liq


def python_swap(
    price: int, tick: int, liquidity: int, fee: int, table: TickTable, zero_for_one: bool, amount: int, limit: int
) -> tuple[int, int, int, int, int] | None:
    try:
        r = swap(
            sqrt_price_x96=price,
            tick=tick,
            liquidity=liquidity,
            fee=fee,
            ticks=table,
            zero_for_one=zero_for_one,
            amount_specified=amount,
            sqrt_price_limit_x96=limit,
        )
    except V3MathError:
        return None
    return r.amount0, r.amount1, r.sqrt_price_x96, r.tick, r.liquidity


# --------------------------------------------------------------------------- deployment


def test_v3_init_code_hash_is_the_periphery_constant() -> None:
    # PoolAddress.POOL_INIT_CODE_HASH of v3-periphery 1.4.4.
    assert v3_pool_init_code_hash() == "0xe34f199b19b2b4f47f68442619d555527d244f78a3297ea89325f843f87b8b54"
    _, router = load_v3_artifact("SwapRouter")
    assert bytes.fromhex(v3_pool_init_code_hash()[2:]) in router


@pytest.mark.skipif(shutil.which("node") is None, reason="node is needed to run solc-js")
def test_committed_probe_artifact_matches_a_fresh_solc_js_compile() -> None:
    contracts = Path(__file__).resolve().parents[2] / "aether" / "devnet" / "contracts"
    fresh = subprocess.run(["node", str(contracts / "compile.js"), "V3Probe.sol", "V3Probe"], capture_output=True, check=True,
                           timeout=120)
    compiled = json.loads(fresh.stdout)
    committed = json.loads((contracts / "V3Probe.json").read_text())
    assert compiled["bytecode"] == committed["bytecode"] and compiled["abi"] == committed["abi"]


def test_seeded_pools_at_create2_addresses_with_ticks_around_the_price(v3net: V3Net) -> None:
    v3 = v3net.v3
    assert set(v3.fee_tiers) == {100, 500, 3000, 10000}

    async def body(rpc: RpcClient) -> None:
        for key in v3.pools:
            assert key.address == v3_pool_address(v3.factory, key.token1, key.token0, key.fee, v3.init_code_hash)
            state = await fetch_pool_state(rpc, key)
            assert state.refusal() is None
            assert len(state.ticks.ticks) >= 4  # several ranges: swaps cross ticks
            assert state.ticks.ticks == tuple(sorted(state.ticks.liquidity_net))
            # the active liquidity equals the sum of liquidityNet below the price (all ranges start in view or wider)

    v3net.run(body)


def test_quoter_v2_agrees_with_python_on_the_seeded_pools(v3net: V3Net) -> None:
    """QuoterV2 (the periphery's own lens) and the Python quote, on every seeded pool, both ways."""
    v3 = v3net.v3
    sig = "quoteExactInputSingle((address,address,uint256,uint24,uint160))"
    sig_out = "quoteExactOutputSingle((address,address,uint256,uint24,uint160))"

    async def body(rpc: RpcClient) -> int:
        compared = crossed_any = refused = 0
        for key in v3.pools:
            state = await fetch_pool_state(rpc, key, word_radius=8)
            for zero_for_one in (True, False):
                tin, tout = (key.token0, key.token1) if zero_for_one else (key.token1, key.token0)
                for amount in (10**6, 10**15, 10**18, 3 * 10**19):
                    q = quote(state, zero_for_one, amount)
                    data = selector(sig) + abi_encode(["(address,address,uint256,uint24,uint160)"], [(tin, tout, amount, key.fee, 0)])
                    (r,) = await rpc.batch([("eth_call", [{"to": v3.quoter, "data": _hex(data)}, "latest"])])
                    assert isinstance(r, str), r
                    out, price_after, crossed, _gas = abi_decode(["uint256", "uint160", "uint32", "uint256"], bytes.fromhex(r[2:]))
                    if q.result is None:
                        # far past the fetched words: refused, never guessed
                        assert q.refusal is V3Refusal.TICKS_NOT_LOADED
                        refused += 1
                        continue
                    assert (q.amount_out, q.result.sqrt_price_x96) == (out, price_after)
                    # QuoterV2's initializedTicksCrossed is PoolTicksCounter's estimate (it buckets
                    # negative ticks by truncating division and counts a tick the price only reached),
                    # so it is not compared; the crossings that matter are in the amounts and price.
                    crossed_any += q.result.ticks_crossed
                    compared += 1
                    # exact output for what exact input gave
                    if out == 0:
                        continue
                    qo = quote(state, zero_for_one, -out)
                    data = selector(sig_out) + abi_encode(["(address,address,uint256,uint24,uint160)"], [(tin, tout, out, key.fee, 0)])
                    (r,) = await rpc.batch([("eth_call", [{"to": v3.quoter, "data": _hex(data)}, "latest"])])
                    assert isinstance(r, str), r
                    amount_in, price_after, crossed, _gas = abi_decode(["uint256", "uint160", "uint32", "uint256"], bytes.fromhex(r[2:]))
                    assert qo.result is not None
                    paid = qo.result.amount0 if zero_for_one else qo.result.amount1
                    assert (paid, qo.result.sqrt_price_x96) == (amount_in, price_after)
        assert crossed_any > 0, "no quote crossed an initialised tick: the seeding lost its ranges"
        assert compared + refused == 8 * 2 * 4
        return compared

    assert v3net.run(body) >= 48


# --------------------------------------------------------------------------- the property test

_FEES = (100, 500, 3000, 10000)


@st.composite
def pools(draw: st.DrawFn) -> dict[str, Any]:
    fee = draw(st.sampled_from(_FEES))
    spacing = tick_spacing(fee)
    tick = draw(st.integers(-60_000, 60_000))
    # a price inside the tick, or exactly on its lower boundary
    lo_p, hi_p = get_sqrt_ratio_at_tick(tick), get_sqrt_ratio_at_tick(tick + 1)
    price = draw(st.one_of(st.just(lo_p), st.integers(lo_p, hi_p - 1)))
    width_words = 3 if spacing == 1 else 1
    span = 256 * spacing * width_words
    positions = []
    for _ in range(draw(st.integers(1, 6))):
        a = draw(st.integers((tick - span) // spacing, (tick + span) // spacing)) * spacing
        b = draw(st.integers((tick - span) // spacing, (tick + span) // spacing)) * spacing
        if a == b:
            b = a + spacing
        liq = draw(st.integers(10**15, 10**22))
        positions.append((min(a, b), max(a, b), liq))
    swaps = draw(
        st.lists(
            st.tuples(
                st.booleans(),  # zero_for_one
                st.booleans(),  # exact in
                st.integers(0, 27).flatmap(lambda e: st.integers(10**e, 10 ** (e + 1))),
                st.one_of(st.none(), st.integers(1, 3 * span)),  # a price limit this many ticks away
            ),
            min_size=2,
            max_size=4,
        )
    )
    return {"fee": fee, "price": price, "positions": positions, "swaps": swaps}


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(pools())
def test_python_swap_equals_the_deployed_pool(v3net: V3Net, case: dict[str, Any]) -> None:
    info, v3 = v3net.info, v3net.v3
    token_a, token_b = info.token("DAI").address, info.token("LINK").address
    t0, t1 = sorted((token_a, token_b))
    fee, price, positions = case["fee"], case["price"], case["positions"]
    pool = v3_pool_address(v3.factory, t0, t1, fee, v3.init_code_hash)

    async def body(rpc: RpcClient) -> list[str]:
        snap = await rpc.call("evm_snapshot", [])
        try:
            deployer = _deployer_account(info.seed)
            nonce = int(await rpc.call("eth_getTransactionCount", [deployer.address, "pending"]), 16)
            s = _Signer(deployer, info.chain_id, nonce)
            s.send(
                "create pool",
                v3.position_manager,
                selector("createAndInitializePoolIfNecessary(address,address,uint24,uint160)")
                + abi_encode(["address", "address", "uint24", "uint160"], [t0, t1, fee, price]),
                gas=6_000_000,
            )
            for lo, hi, liq in positions:
                s.send(
                    "mint",
                    v3.probe,
                    selector("mint(address,int24,int24,uint128)") + abi_encode(["address", "int24", "int24", "uint128"], [pool, lo, hi, liq]),
                    gas=1_000_000,
                )
            for raw in s.raws:
                await rpc.call("eth_sendRawTransaction", [raw])
            await mine_until_included(rpc, s.hashes, s.labels)

            key = V3PoolKey(address=pool, dex="uniswap_v3", token0=t0, token1=t1, fee=fee)
            fetched = await fetch_pool_state(rpc, key, word_radius=4)
            # the pool's view of itself equals what we minted
            tick = get_tick_at_sqrt_ratio(price)
            net = liquidity_net_from_positions(positions)
            assert fetched.sqrt_price_x96 == price and fetched.tick == tick
            assert fetched.liquidity == sum(l for lo, hi, l in positions if lo <= tick < hi)
            assert fetched.ticks.liquidity_net == {t: n for t, n in net.items() if fetched.ticks.covers(t)}
            table = TickTable.build(tick_spacing(fee), net, -(1 << 15), (1 << 15) - 1)

            outcomes: list[str] = []
            for zero_for_one, exact_in, amount, limit_ticks in case["swaps"]:
                specified = amount if exact_in else -amount
                if limit_ticks is None:
                    limit = MIN_SQRT_RATIO + 1 if zero_for_one else MAX_SQRT_RATIO - 1
                else:
                    lt = max(min(tick - limit_ticks if zero_for_one else tick + limit_ticks, 887272), -887272)
                    limit = get_sqrt_ratio_at_tick(lt)
                    if zero_for_one and limit >= price or not zero_for_one and limit <= price:
                        limit = price - 1 if zero_for_one else price + 1
                chain_r = await probe(rpc, v3.probe, pool, zero_for_one, specified, limit)
                py_r = python_swap(fetched.sqrt_price_x96, fetched.tick, fetched.liquidity, fee, table, zero_for_one, specified, limit)
                assert py_r == chain_r, (zero_for_one, specified, limit)
                # the fetched (windowed) state quotes the same, or refuses; never differs
                q = quote(fetched, zero_for_one, specified, limit)
                if q.result is not None:
                    r = q.result
                    assert (r.amount0, r.amount1, r.sqrt_price_x96, r.tick, r.liquidity) == chain_r
                    outcomes.append("windowed")
                else:
                    assert q.refusal in (V3Refusal.TICKS_NOT_LOADED, V3Refusal.OVERFLOW, V3Refusal.ZERO_LIQUIDITY)
                    outcomes.append(str(q.refusal))
                if chain_r is None:
                    outcomes.append("both_revert")
                elif chain_r[2] == limit:
                    outcomes.append("hit_limit")
                full = swap_crossings(fetched.sqrt_price_x96, fetched.tick, fetched.liquidity, fee, table, zero_for_one, specified, limit)
                outcomes.append(f"crossed>={min(full, 5)}")
            return outcomes
        finally:
            await rpc.call("evm_revert", [snap])

    for outcome in v3net.run(body):
        event(outcome)


def swap_crossings(*args: Any) -> int:
    price, tick, liquidity, fee, table, zero_for_one, amount, limit = args
    try:
        return swap(
            sqrt_price_x96=price, tick=tick, liquidity=liquidity, fee=fee, ticks=table,
            zero_for_one=zero_for_one, amount_specified=amount, sqrt_price_limit_x96=limit,
        ).ticks_crossed
    except V3MathError:
        return -1


def test_a_price_exactly_on_a_tick_after_a_zero_for_one_swap_quotes_exactly(v3net: V3Net) -> None:
    """After a real swap stops on tick t's price, slot0.tick is t-1; the quote still matches the pool."""
    info, v3 = v3net.info, v3net.v3
    key = v3.pool(info.weth, info.token("LINK").address, 3000)
    assert key is not None

    async def body(rpc: RpcClient) -> None:
        snap = await rpc.call("evm_snapshot", [])
        try:
            state = await fetch_pool_state(rpc, key)
            # a boundary below the price: the highest initialised tick under it
            target_tick = [t for t in state.ticks.ticks if t < state.tick][-1]
            limit = get_sqrt_ratio_at_tick(target_tick)
            deployer = _deployer_account(info.seed)
            params = (key.token0, key.token1, key.fee, deployer.address, 2**32, 10**27, 0, limit)
            nonce = int(await rpc.call("eth_getTransactionCount", [deployer.address, "pending"]), 16)
            s = _Signer(deployer, info.chain_id, nonce)
            s.send(
                "approve SwapRouter",
                key.token0,
                selector("approve(address,uint256)") + abi_encode(["address", "uint256"], [v3.router, 2**256 - 1]),
                gas=100_000,
            )
            s.send(
                "swap zero-for-one to the boundary",
                v3.router,
                selector("exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))")
                + abi_encode(["(address,address,uint24,address,uint256,uint256,uint256,uint160)"], [params]),
                gas=1_000_000,
            )
            for raw in s.raws:
                await rpc.call("eth_sendRawTransaction", [raw])
            receipts = await mine_until_included(rpc, s.hashes, s.labels)
            after = await fetch_pool_state(rpc, key)
            # the pool's Swap event carries the same state as a fresh read
            (log,) = [lg for lg in receipts[1]["logs"] if lg["topics"][0] == SWAP_EVENT_TOPIC and lg["address"].lower() == key.address]
            from_event = state.after_swap_event(log["data"], block=after.block)
            assert from_event == after
            assert after.sqrt_price_x96 == limit
            assert after.tick == target_tick - 1  # the pool's own convention at a boundary
            assert after.refusal() is None
            for zero_for_one in (True, False):
                for amount in (10**12, 10**18, -(10**15)):
                    q = quote(after, zero_for_one, amount)
                    lim = MIN_SQRT_RATIO + 1 if zero_for_one else MAX_SQRT_RATIO - 1
                    chain_r = await probe(rpc, v3.probe, key.address, zero_for_one, amount, lim)
                    assert q.result is not None and chain_r is not None
                    r = q.result
                    assert (r.amount0, r.amount1, r.sqrt_price_x96, r.tick, r.liquidity) == chain_r
            # a state claiming the other tick for that price is corrupt and refused
            wrong = attrs.evolve(after, tick=target_tick - 2)
            assert wrong.refusal() is V3Refusal.TICK_MISMATCH
        finally:
            await rpc.call("evm_revert", [snap])

    v3net.run(body)


# --------------------------------------------------------------------------- cross-venue cycles on chain


def _v2_reserves(raw: str, weth_is_token0: bool) -> tuple[int, int]:
    r0, r1, _ = abi_decode(["uint112", "uint112", "uint32"], bytes.fromhex(raw[2:]))
    return (r0, r1) if weth_is_token0 else (r1, r0)  # (weth, token)


def _swap_calldata(venue: str, v3: V3DevnetInfo, info: DevnetInfo, fee: int, tin: str, tout: str, amount_in: int, min_out: int, to: str) -> tuple[str, bytes]:
    if venue == "v3":
        params = (tin, tout, fee, to, 2**32, amount_in, min_out, 0)
        return v3.router, selector("exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))") + abi_encode(
            ["(address,address,uint24,address,uint256,uint256,uint256,uint160)"], [params]
        )
    return info.dex("uniswap").router, selector("swapExactTokensForTokens(uint256,uint256,address[],address,uint256)") + abi_encode(
        ["uint256", "uint256", "address[]", "address", "uint256"], [amount_in, min_out, [tin, tout], to, 2**32]
    )


def test_sized_cycles_realise_their_predicted_profit_to_the_wei(v3net: V3Net) -> None:
    """V2->V3, V3->V2 and V3->V3 cycles sized on the exact curves, executed as two plain EOA swaps
    through Router02 and SwapRouter in one block: the searcher's WETH grows by the predicted profit, to the wei."""
    info, v3 = v3net.info, v3net.v3
    searcher = _searcher_account(info.seed)

    async def body(rpc: RpcClient) -> dict[str, int]:
        block = int(await rpc.call("eth_blockNumber", []), 16)
        tag = hex(block)
        weth_bal = selector("balanceOf(address)") + abi_encode(["address"], [searcher.address])
        cap = int(await rpc.call("eth_call", [{"to": info.weth, "data": _hex(weth_bal)}, tag]), 16)
        best: dict[str, tuple[int, CycleSizing, tuple[str, int], tuple[str, int], str]] = {}
        for tok in info.tokens:
            pair = info.pair("uniswap", info.weth, tok.address)
            assert pair is not None
            raw = await rpc.call("eth_call", [{"to": pair.address, "data": _hex(selector("getReserves()"))}, tag])
            r_weth, r_tok = _v2_reserves(raw, pair.token0 == info.weth)
            states = [await fetch_pool_state(rpc, k, block=block) for k in v3.pools if tok.address in (k.token0, k.token1)]
            venues_buy: list[tuple[tuple[str, int], Any]] = [(("v2", 0), V2Leg(r_weth, r_tok))]
            venues_sell: list[tuple[tuple[str, int], Any]] = [(("v2", 0), V2Leg(r_tok, r_weth))]
            for s in states:
                venues_buy.append((("v3", s.key.fee), V3Leg(s, info.weth)))
                venues_sell.append((("v3", s.key.fee), V3Leg(s, tok.address)))
            for (va, leg_a) in venues_buy:
                for (vb, leg_b) in venues_sell:
                    if va == vb or (va[0] == vb[0] == "v2"):
                        continue
                    z = size_cycle(leg_a, leg_b, cap=cap)
                    if z.refusal is not None:
                        continue
                    kind = f"{va[0]}->{vb[0]}"
                    if kind not in best or z.profit > best[kind][0]:
                        best[kind] = (z.profit, z, va, vb, tok.address)
        assert {"v2->v3", "v3->v2", "v3->v3"} <= set(best), sorted(best)

        realised: dict[str, int] = {}
        for kind, (_, z, va, vb, tok) in sorted(best.items()):
            snap = await rpc.call("evm_snapshot", [])
            try:
                tok_bal = selector("balanceOf(address)") + abi_encode(["address"], [searcher.address])
                before = await rpc.batch([("eth_call", [{"to": a, "data": _hex(tok_bal)}, "latest"]) for a in (info.weth, tok)])
                nonce = int(await rpc.call("eth_getTransactionCount", [searcher.address, "pending"]), 16)
                s = _Signer(searcher, info.chain_id, nonce)
                to, data = _swap_calldata(va[0], v3, info, va[1], info.weth, tok, z.amount_in, z.amount_mid, searcher.address)
                s.send(f"{kind} leg A", to, data, gas=1_000_000)
                to, data = _swap_calldata(vb[0], v3, info, vb[1], tok, info.weth, z.amount_mid, z.amount_out, searcher.address)
                s.send(f"{kind} leg B", to, data, gas=1_000_000)
                for raw in s.raws:
                    await rpc.call("eth_sendRawTransaction", [raw])
                receipts = await mine_until_included(rpc, s.hashes, s.labels)
                assert receipts[0]["blockNumber"] == receipts[1]["blockNumber"]
                after = await rpc.batch([("eth_call", [{"to": a, "data": _hex(tok_bal)}, "latest"]) for a in (info.weth, tok)])
                weth_delta = int(after[0], 16) - int(before[0], 16)
                assert weth_delta == z.profit, (kind, weth_delta, z)
                assert int(after[1], 16) == int(before[1], 16)  # the token went in and out, to the wei
                realised[kind] = weth_delta
            finally:
                await rpc.call("evm_revert", [snap])
        return realised

    realised = v3net.run(body)
    print(f"\n[v3 cycles] realised profit (wei) = predicted, by venue pair: {realised}")
    assert all(p > 0 for p in realised.values())


def test_devnet_v3_deploys_and_folds_the_v3_config_block_into_the_run_config(v3net: V3Net, tmp_path: Path) -> None:
    """``aether devnet`` deploys V3 by default (``--no-v3`` turns it off) and adds its block to the run's config."""
    import io
    import tomllib

    from aether.config import DexKind, load_chain_config
    from aether.devnet._run import _parser
    from aether.devnet._v3 import deploy_v3_into

    assert _parser().parse_args(["--v3"]).v3 is True and _parser().parse_args([]).v3 is True
    assert _parser().parse_args(["--no-v3"]).v3 is False

    async def body(rpc: RpcClient) -> V3DevnetInfo:
        snap = await rpc.call("evm_snapshot", [])
        try:
            return await deploy_v3_into(rpc, v3net.info, tmp_path, out=(buf := io.StringIO()))
        finally:
            assert "uniswap_v3" in buf.getvalue() and "v3.toml" in buf.getvalue()
            await rpc.call("evm_revert", [snap])

    v3 = v3net.run(body)
    (dex,) = tomllib.loads((tmp_path / "v3.toml").read_text())["dex"]
    assert dex == {
        "name": "uniswap_v3",
        "kind": "v3",
        "router": v3.router,
        "factory": v3.factory,
        "init_code_hash": v3.init_code_hash,
        "fee_tiers": [100, 500, 3000, 10000],
    }
    # the run's config (AETHER_CONFIG) is the V2 config plus the same block, and it loads
    run_cfg = tomllib.loads(v3net.info.config_path.read_text())
    assert [d["name"] for d in run_cfg["dex"]] == ["uniswap", "sushiswap", "uniswap_v3"] and run_cfg["dex"][-1] == dex
    loaded = load_chain_config(v3net.info.config_path)
    assert [d.kind for d in loaded.dexes] == [DexKind.V2, DexKind.V2, DexKind.V3]
    assert loaded.dexes[-1].fee_tiers == (100, 500, 3000, 10000)
