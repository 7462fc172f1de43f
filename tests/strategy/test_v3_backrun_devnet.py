"""V3 in the victim path, end to end on anvil: real victims, real V3 pools, predictions to the wei.

One anvil for the module: the V2 devnet plus the real Uniswap V3 core and
periphery (``deploy_v3``: factory, SwapRouter, pools at two fee tiers per
token with several concentrated positions). Each test sends a real victim
(through the V3 SwapRouter, or through Router02 on a V2 pair), simulates it
with :class:`VictimSimulator` on the head, sizes the backrun from the
simulated post-state, passes it through the :class:`Validator`, then sends
victim + our calls on the chain and checks the realised WETH profit equals
the prediction to the wei. Which venue pairs are possible is chosen by the
configured DEXes (one V2 DEX and one V3 tier: only V2/V3 or V3/V2; only the
V3 DEX: only V3/V3). Then the fail-closed inputs: a contract that emits the
V3 ``Swap`` signature, a pool the book does not hold, a post-swap tick past
the fetched ticks, zero liquidity.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import attrs
import pytest
import trio

from aether._errors import RpcError
from aether.actors import StrategyActor
from aether.chain import RpcClient, open_rpc
from aether.chain._tx import decode_pending_tx
from aether.config import ChainConfig, DexConfig, DexKind
from aether.devnet import AnvilProcess, DevnetInfo, deploy
from aether.devnet._deploy import victim_account
from aether.devnet._v3 import V3_DEX_NAME, V3DevnetInfo, deploy_v3
from aether.dex import PoolBook, V3PoolBook, encode_swap
from aether.dex._v3math import get_sqrt_ratio_at_tick
from aether.dex._v3pool import SWAP_EVENT_TOPIC
from aether.messages import Candidate, PendingTx, Tick, venue_pair
from aether.metrics import CANDIDATE_REJECT_REASONS, Metrics
from aether.strategy import BackrunStrategy, PostState, Rejection, Validator, VictimSimulator
from aether.strategy._backrun import encode_exact_input_single
from aether.strategy._poststate import V3Slot, v3_keys
from test_strategy_devnet import _head, _replay, _send, _weth

pytestmark = pytest.mark.devnet
T = TypeVar("T")
ETHER = 10**18


@attrs.frozen
class Net:
    url: str
    info: DevnetInfo
    v3: V3DevnetInfo

    # DevnetInfo's surface that test_strategy_devnet._replay uses
    @property
    def searcher_key_file(self) -> Path:
        return self.info.searcher_key_file

    @property
    def weth(self) -> str:
        return self.info.weth

    @property
    def searcher_address(self) -> str:
        return self.info.searcher_address

    @property
    def chain_id(self) -> int:
        return self.info.chain_id

    def v3_dex(self, tiers: tuple[int, ...] | None = None) -> DexConfig:
        return DexConfig(name=V3_DEX_NAME, router=self.v3.router, factory=self.v3.factory,
                         init_code_hash=self.v3.init_code_hash, fee_bps=0, kind=DexKind.V3,
                         fee_tiers=tiers if tiers is not None else self.v3.fee_tiers)

    def chain(self, v2: tuple[str, ...], tiers: tuple[int, ...] | None = None, *, v3: bool = True) -> ChainConfig:
        base = self.info.chain_config
        dexes = tuple(d for d in base.dexes if d.name in v2) + ((self.v3_dex(tiers),) if v3 else ())
        return ChainConfig(weth=base.weth, dexes=dexes, tokens=base.tokens)

    def run(self, fn: Callable[[RpcClient], Awaitable[T]]) -> T:
        async def main() -> T:
            async with open_rpc(self.url, timeout=30.0) as rpc:
                snap = await rpc.call("evm_snapshot", [])
                try:
                    return await fn(rpc)
                finally:
                    with trio.CancelScope(shield=True):
                        await rpc.call("anvil_dropAllTransactions", [])
                        assert await rpc.call("evm_revert", [snap])

        return trio.run(main)


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    node = AnvilProcess()
    node.start()
    try:

        async def main() -> Net:
            async with open_rpc(node.rpc_url, timeout=30.0) as rpc:
                info = await deploy(rpc, Path(tempfile.mkdtemp()), ws_url=node.ws_url, n_victims=4)
                return Net(node.rpc_url, info, await deploy_v3(rpc, info))

        yield trio.run(main)
    finally:
        node.stop()


# --------------------------------------------------------------------------- helpers


async def _pending(rpc: Any, vhash: str) -> PendingTx:
    return decode_pending_tx(await rpc.call("eth_getTransactionByHash", [vhash]))


async def _v3_victim(rpc: Any, net: Net, symbol: str, fee: int, eth_in: int, index: int = 0) -> PendingTx:
    """A victim buying ``symbol`` with ETH through the V3 SwapRouter (WETH in by msg.value)."""
    head = await _head(rpc)
    victim = victim_account(net.info.seed, index)
    data = encode_exact_input_single(net.weth, net.info.token(symbol).address, fee, victim.address.lower(),
                                     head.timestamp + 600, eth_in, 0)
    vhash = await _send(rpc, victim, net.chain_id, net.v3.router, data, value=eth_in)
    return await _pending(rpc, vhash)


async def _v2_victim(rpc: Any, net: Net, symbol: str, eth_in: int, index: int = 1) -> PendingTx:
    """A victim buying ``symbol`` with ETH through Router02 on the ``uniswap`` V2 pair."""
    head = await _head(rpc)
    victim = victim_account(net.info.seed, index)
    data, value = encode_swap("swapExactETHForTokens", amount_in=eth_in, amount_out=1,
                              path=[net.weth, net.info.token(symbol).address], to=victim.address.lower(),
                              deadline=head.timestamp + 600)
    vhash = await _send(rpc, victim, net.chain_id, net.info.dex("uniswap").router, data, value=value)
    return await _pending(rpc, vhash)


@attrs.define
class Setup:
    book: PoolBook
    v3book: V3PoolBook
    strategy: BackrunStrategy
    sim: VictimSimulator
    untrusted: list[int]


async def _setup(rpc: Any, net: Net, chain: ChainConfig, *, track_v3: bool = True) -> Setup:
    head = await _head(rpc)
    book = PoolBook(rpc, chain)
    await book.refresh(head.number)
    v3book = V3PoolBook(rpc)
    if track_v3:
        v3book.track([k for t in chain.tokens for k in v3_keys(chain, t.address)])
    failed = await v3book.refresh_tracked(head.number)
    untrusted: list[int] = []
    sim = VictimSimulator(rpc, book, timeout_s=10, on_untrusted=untrusted.append, v3book=v3book)
    strategy = BackrunStrategy(chain, book, searcher=net.searcher_address, v3book=v3book)
    # Only pools the devnet did not create fail (no code): every seeded pool is in the book.
    assert set(failed).isdisjoint(k.address for k in net.v3.pools)
    return Setup(book, v3book, strategy, sim, untrusted)


async def _candidates(rpc: Any, s: Setup, tx: PendingTx) -> tuple[PostState, list[Candidate]]:
    head = await _head(rpc)
    post = await s.sim.simulate(tx, head)
    assert isinstance(post, PostState), post
    inventory = await _weth(rpc, s.strategy.chain.weth, s.strategy.searcher)
    got = await s.strategy.on_post_state(tx, head, post, inventory_wei=inventory)
    assert isinstance(got, list), got
    return post, got


async def _validated_and_realised(rpc: Any, net: Net, cand: Candidate) -> int:
    checked = await Validator(rpc, searcher=net.searcher_address).validate(cand)
    assert isinstance(checked, Candidate) and checked.validated, checked
    assert cand.victim is not None
    snap = await rpc.call("evm_snapshot", [])
    with contextlib.suppress(RpcError):  # an earlier replay's revert dropped it from the pool
        await rpc.call("eth_sendRawTransaction", ["0x" + cand.victim.raw.hex()])
    try:
        realised = await _replay(rpc, net, cand, victim_hash=cand.victim.hash_hex)
    finally:
        await rpc.call("evm_revert", [snap])
    assert realised == cand.expected_gross_profit_wei
    return realised


# --------------------------------------------------------------------------- cycles to the wei


def test_v3_victim_through_swaprouter_opens_a_v2_v3_gap_realised_to_the_wei(net: Net) -> None:
    usdc_500 = net.v3.pool(net.weth, net.info.token("USDC").address, 500)
    assert usdc_500 is not None

    async def body(rpc: RpcClient) -> None:
        # One V2 DEX and one V3 tier: every cycle through the moved pool is V2/V3 or V3/V2.
        s = await _setup(rpc, net, net.chain(("uniswap",), (500,)))
        tx = await _v3_victim(rpc, net, "USDC", 500, 30 * ETHER)
        post, cands = await _candidates(rpc, s, tx)
        assert [type(p) for p in post.pools] == [V3Slot] and post.pools[0].pool == usdc_500.address
        assert s.untrusted == []
        assert len(cands) == 1
        c = cands[0]
        assert venue_pair(c.route) in ("v2/v3", "v3/v2")
        assert usdc_500.address in {h.pair for h in c.route}
        v3hop = next(h for h in c.route if h.kind == DexKind.V3)
        assert v3hop.fee == 500 and v3hop.router == net.v3.router and v3hop.dex == V3_DEX_NAME
        assert c.expected_gross_profit_wei > 0
        await _validated_and_realised(rpc, net, c)

    net.run(body)


def test_v3_victim_opens_a_v3_v3_gap_across_fee_tiers_realised_to_the_wei(net: Net) -> None:
    async def body(rpc: RpcClient) -> None:
        s = await _setup(rpc, net, net.chain((), (500, 3000)))
        tx = await _v3_victim(rpc, net, "USDC", 500, 30 * ETHER, index=2)
        _, cands = await _candidates(rpc, s, tx)
        assert len(cands) == 1
        c = cands[0]
        assert venue_pair(c.route) == "v3/v3" and sorted(h.fee for h in c.route) == [500, 3000]
        assert all(call.to == net.v3.router for call in c.calls)
        await _validated_and_realised(rpc, net, c)

    net.run(body)


def test_v2_victim_through_router02_opens_a_v2_v3_gap_realised_to_the_wei(net: Net) -> None:
    link = net.info.token("LINK").address

    async def body(rpc: RpcClient) -> None:
        s = await _setup(rpc, net, net.chain(("uniswap",)))
        tx = await _v2_victim(rpc, net, "LINK", 15 * ETHER)
        post, cands = await _candidates(rpc, s, tx)
        moved = net.info.pair("uniswap", net.weth, link).address
        assert list(post.v2()) == [moved] and post.v3() == {}
        assert len(cands) == 1
        c = cands[0]
        assert venue_pair(c.route) in ("v2/v3", "v3/v2") and moved in {h.pair for h in c.route}
        await _validated_and_realised(rpc, net, c)

    net.run(body)


def test_the_strategy_actor_refreshes_the_v3_book_per_head_and_backruns_a_v3_victim(net: Net) -> None:
    async def body(rpc: RpcClient) -> None:
        chain = net.chain(("uniswap", "sushiswap"))
        tx = await _v3_victim(rpc, net, "UNI", 500, 20 * ETHER, index=3)
        head = await _head(rpc)
        m = Metrics()
        inbox_tx, inbox = trio.open_memory_channel[Any](8)
        out, out_rx = trio.open_memory_channel[Any](8)
        actor = StrategyActor(rpc=rpc, chain=chain, searcher=net.searcher_address, metrics=m, inbox=inbox, out=out,
                              block_arb=False, simulate_victims=True, sim_concurrency=2)
        inventory = await _weth(rpc, net.weth, net.searcher_address)
        await inbox_tx.send(Tick(head, head.base_fee, 10 * ETHER, inventory, 0))
        await inbox_tx.send(tx)
        await inbox_tx.aclose()
        with trio.fail_after(60):
            await actor.run()
        assert actor.v3book is not None and actor.v3book.block == head.number
        uni_pools = {k.address for k in net.v3.pools if net.info.token("UNI").address in (k.token0, k.token1)}
        assert uni_pools <= {a for a in uni_pools if actor.v3book.get(a) is not None}
        got = [out_rx.receive_nowait() for _ in range(out_rx.statistics().current_buffer_used)]
        assert len(got) == 1 and got[0].victim == tx, got
        assert "v3" in venue_pair(got[0].route)
        await _validated_and_realised(rpc, net, got[0])

    net.run(body)


# --------------------------------------------------------------------------- fail closed


def _emitter_code() -> str:
    """Runtime code that emits one log with the V3 ``Swap`` topic (two zero indexed topics, 160 zero bytes)."""
    topic = SWAP_EVENT_TOPIC[2:]
    # PUSH1 0 PUSH1 0 PUSH32 topic PUSH1 0xa0 PUSH1 0 LOG3 STOP
    return "0x" + "6000" + "6000" + "7f" + topic + "60a0" + "6000" + "a3" + "00"


def test_a_v3_swap_mimic_is_ignored_and_counted(net: Net) -> None:
    async def body(rpc: RpcClient) -> None:
        mimic = "0x" + "5a" * 20
        await rpc.call("anvil_setCode", [mimic, _emitter_code()])
        s = await _setup(rpc, net, net.chain(("uniswap",)))
        head = await _head(rpc)
        victim = victim_account(net.info.seed, 0)
        tx = await _pending(rpc, await _send(rpc, victim, net.chain_id, mimic, b"\x01"))
        got = await s.sim.simulate(tx, head)
        assert isinstance(got, Rejection) and got.reason == "no_pool_moved", got
        assert s.untrusted == [1] and s.sim.statistics().untrusted_logs == 1
        assert s.v3book.key(mimic) is None

    net.run(body)


def test_a_pool_missing_from_the_book_gives_no_candidate_and_is_tracked_from_then_on(net: Net) -> None:
    usdc_500 = net.v3.pool(net.weth, net.info.token("USDC").address, 500)
    assert usdc_500 is not None

    async def body(rpc: RpcClient) -> None:
        s = await _setup(rpc, net, net.chain(("uniswap",), (500,)), track_v3=False)
        tx = await _v3_victim(rpc, net, "USDC", 500, 30 * ETHER)
        head = await _head(rpc)
        post = await s.sim.simulate(tx, head)
        assert isinstance(post, PostState) and list(post.v3()) == [usdc_500.address], post  # trusted by CREATE2
        got = await s.strategy.on_post_state(tx, head, post, inventory_wei=100 * ETHER)
        assert got == Rejection("v3_not_in_book") and got.reason in CANDIDATE_REJECT_REASONS
        assert s.v3book.key(usdc_500.address) == usdc_500  # registered: read from the next head on
        await s.v3book.refresh_tracked(head.number)
        again = await s.strategy.on_post_state(tx, head, post, inventory_wei=100 * ETHER)
        assert isinstance(again, list) and len(again) == 1

    net.run(body)


def test_a_post_swap_tick_past_the_fetched_ticks_or_zero_liquidity_gives_no_candidate(net: Net) -> None:
    usdc_500 = net.v3.pool(net.weth, net.info.token("USDC").address, 500)
    assert usdc_500 is not None

    async def body(rpc: RpcClient) -> None:
        s = await _setup(rpc, net, net.chain(("uniswap",), (500,)))
        tx = await _v3_victim(rpc, net, "USDC", 500, 30 * ETHER)
        head = await _head(rpc)
        post = await s.sim.simulate(tx, head)
        assert isinstance(post, PostState)
        slot = post.pools[0]
        assert isinstance(slot, V3Slot)
        state = s.v3book.get(usdc_500.address)
        assert state is not None

        def forged(tick: int, liquidity: int) -> PostState:
            price = get_sqrt_ratio_at_tick(tick)
            data = bytearray(slot.data)
            data[64:96] = price.to_bytes(32, "big")
            data[96:128] = liquidity.to_bytes(32, "big")
            data[128:160] = tick.to_bytes(32, "big", signed=True)
            return PostState(post.victim_hash, post.block, (V3Slot(slot.pool, price, liquidity, tick, bytes(data)),))

        far = state.tick + 40 * 256 * usdc_500.spacing  # forty bitmap words away: never fetched
        got = await s.strategy.on_post_state(tx, head, forged(far, slot.liquidity), inventory_wei=100 * ETHER)
        assert got == Rejection("v3_ticks_not_loaded"), got
        got = await s.strategy.on_post_state(tx, head, forged(slot.tick, 0), inventory_wei=100 * ETHER)
        assert got == Rejection("v3_zero_liquidity"), got
        # The genuine post-state does give a candidate: the refusals above are the forgeries'.
        real = await s.strategy.on_post_state(tx, head, post, inventory_wei=100 * ETHER)
        assert isinstance(real, list) and len(real) == 1

    net.run(body)


# --------------------------------------------------------------------------- the candidate replay by venue pair


def test_the_replay_harness_covers_v3_and_mixed_candidates_exact_by_venue_pair(net: Net) -> None:
    from aether.devnet import ReplayHarness, replay_main

    async def body(rpc: RpcClient) -> None:
        harness = ReplayHarness(rpc, net.info, seed=5, txs_per_block=4, validate=True, simulate=True, v3=net.v3,
                                v3_victims_per_block=4)
        report = await harness.run(duration_s=120.0, max_blocks=4)
        s = report.summary
        print("\n" + report.table())
        by_vp = s["by_venue_pair"]
        assert sum(by_vp[vp]["replayed"] for vp in ("v2/v3", "v3/v2", "v3/v3")) >= 1, by_vp
        assert s["exact"] == s["replayed"] and report.ok, s["first_mismatches"]
        for vp, row in by_vp.items():
            assert row["exact"] == row["replayed"] and row["not_exact"] == 0, (vp, row)
        assert s["validator"]["passed"] == s["replayed"]
        assert s["v3"]["own_victims_sent"] == 16 and s["v3"]["pool_reads_failed"] == 0
        assert {r["venue_pair"] for r in report.records} <= set(by_vp)

    net.run(body)
    # the CLI refuses V3 without simulation, and V3 victims without V3
    assert replay_main(["--duration", "5", "--v3", "--detect", "calldata"]) == 2
    assert replay_main(["--duration", "5", "--v3-victims-per-block", "2"]) == 2
