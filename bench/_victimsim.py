"""Victim detection by simulation: aether's own share of frame -> gated bundle, and a 300 tx/s load run.

``python -m bench._victimsim`` (or ``python -m bench --victim-sim``) prints both.

1. **Own share, in-process.** The path ``aether run`` takes for every victim now:
   the subscriber's frame parser, ``IntakeActor.screen`` with the
   :class:`~aether.strategy.Prefilter`, :meth:`VictimSimulator.simulate` through the
   real :class:`~aether.chain.RpcClient` (httpx, orjson) to a node that answers from a
   table (``httpx.MockTransport``; the handler's own time is measured and
   subtracted as the node's), :meth:`BackrunStrategy.on_post_state`,
   ``BundleBuilder.build`` and ``RiskEngine.evaluate``. The node's answers are the
   generated market's exact post-states (``post_state_from_calldata`` on the same
   frames, turned into ``Sync`` logs). Beside it, in the same pass, the calldata
   path (``on_victim``) the bench measured before.
2. **300 tx/s on the devnet.** ``scripts/coverage.py``'s harness (real anvil, real
   pipeline) at 300 pending transactions a second, half of them plain transfers:
   pending seen, victims dropped, the most simulations in flight, budget skips.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import httpx
import orjson
import trio
from prometheus_client import CollectorRegistry

from aether.actors import IntakeActor
from aether.chain import Frame, RpcClient
from aether.messages import PendingTx
from aether.metrics import Metrics
from aether.strategy import PostState, Prefilter, VictimSimulator

from ._gen import CHAIN_ID, SUB_ID, Market, SimTable, Stream, make_market, make_stream, sim_answer
from ._inproc import Rig, median, pct


class _TableNode:
    """The :class:`~bench._gen.SimTable` behind an HTTP handler (``httpx.MockTransport``); times itself."""

    def __init__(self, table: SimTable) -> None:
        self.table = table
        self.seconds = 0.0

    def handler(self, request: httpx.Request) -> httpx.Response:
        t0 = time.perf_counter()
        body = orjson.loads(request.content)
        answers = self.table.answer([(req["method"], req["params"]) for req in body])
        if answers is None:
            raise AssertionError(f"the table node only simulates: {[req['method'] for req in body]}")
        out = [{"jsonrpc": "2.0", "id": req["id"], "result": a} for req, a in zip(body, answers, strict=True)]
        resp = httpx.Response(200, content=orjson.dumps(out))
        self.seconds += time.perf_counter() - t0
        return resp


async def sim_table(market: Market, frames: list[bytes]) -> SimTable:
    """The node's simulation table for ``frames``: each screened swap's exact post-state (or a revert),
    from the calldata path on the market's head (the market's reserves do not move between heads)."""
    rig = Rig(market)
    await rig.start()
    table = SimTable()
    for f in frames:
        tx = rig.screen(f)
        if tx is None:
            continue
        post = await rig.strategy.post_state_from_calldata(tx, rig.head)
        table.answers[(tx.sender, hex(tx.nonce))] = sim_answer(post if isinstance(post, PostState) else None)
    return table


async def own_share(market: Market, stream: Stream, reps: int) -> dict[str, Any]:
    """Frame -> gated bundle through the simulation path, node time subtracted; the calldata path beside it."""
    rig = Rig(market)
    await rig.start()
    swaps = [stream.frames[i] for i in stream.swaps]
    node = _TableNode(await sim_table(market, swaps))
    rpc = RpcClient("http://node.bench", transport=httpx.MockTransport(node.handler))
    metrics = Metrics(CollectorRegistry())
    send, recv = trio.open_memory_channel[PendingTx](1 << 20)
    prefilter = Prefilter(market.chain)

    def new_intake() -> IntakeActor:  # one a pass: intake skips a hash it has seen
        return IntakeActor(ws_url="ws://127.0.0.1:1", rpc=None, chain_id=CHAIN_ID,  # type: ignore[arg-type]
                           routers=set(), metrics=metrics, out=send, prefilter=prefilter)

    intake = new_intake()
    sim = VictimSimulator(rpc, rig.book)

    async def sim_path(message: bytes) -> tuple[Any, float]:
        nonlocal intake
        before = node.seconds
        parsed = rig.sub._parse(message, SUB_ID)
        tx = intake.screen(Frame(parsed, trio.current_time(), time.time_ns()))  # type: ignore[arg-type]
        if tx is None:
            return None, 0.0
        recv.receive_nowait()
        post = await sim.simulate(tx, rig.head)
        if not isinstance(post, PostState):
            return post, node.seconds - before
        found = await rig.strategy.on_post_state(tx, rig.head, post, inventory_wei=rig.tick.weth_balance_wei or 0)
        if not isinstance(found, list):
            return found, node.seconds - before
        bundle = rig.builder.build(found[0], rig.head, now_ns=time.time_ns())
        verdict = rig.risk.evaluate(bundle)
        if verdict.passed:
            rig.risk.commit(verdict)
        return verdict, node.seconds - before

    own_passes: list[list[float]] = []
    node_passes: list[list[float]] = []
    calldata_passes: list[list[float]] = []
    try:
        for rep in range(reps + 1):
            own: list[float] = []
            nodes: list[float] = []
            cd: list[float] = []
            intake = new_intake()
            rig.new_pass()
            for f in swaps:
                t0 = time.perf_counter()
                out, node_s = await sim_path(f)
                dt = time.perf_counter() - t0
                if out is not None and hasattr(out, "bundle"):
                    own.append((dt - node_s) * 1e6)
                    nodes.append(node_s * 1e6)
                t0 = time.perf_counter()
                out2 = await rig.candidate_path(f)
                dt2 = time.perf_counter() - t0
                if out2 is not None and hasattr(out2, "bundle"):
                    cd.append(dt2 * 1e6)
                    rig.after_verdict()
            if rep > 0:
                own_passes.append(own)
                node_passes.append(nodes)
                calldata_passes.append(cd)
        # The floor of the simulation's own share: one batch of the same three calls through
        # RpcClient (httpx) to a handler that answers constants; the handler's time subtracted.
        rig.new_pass()
        tx0 = rig.screen(swaps[0])
        assert tx0 is not None
        calls = [("eth_simulateV1", VictimSimulator.simulate_params(tx0, rig.head)),
                 ("eth_getTransactionCount", [tx0.sender, "0x1"]), ("eth_blockNumber", [])]
        floor_node = _TableNode(await sim_table(market, swaps[:1]))
        floor_rpc = RpcClient("http://node.bench", transport=httpx.MockTransport(floor_node.handler))
        floor: list[float] = []
        try:
            for _ in range(len(swaps)):
                before = floor_node.seconds
                t0 = time.perf_counter()
                await floor_rpc.batch(calls)
                floor.append((time.perf_counter() - t0 - (floor_node.seconds - before)) * 1e6)
        finally:
            await floor_rpc.aclose()
    finally:
        await rpc.aclose()
    return {
        "rpc_floor_p50_us": pct(floor, 0.50),
        "rpc_floor_p99_us": pct(floor, 0.99),
        "bundles_per_pass": len(own_passes[0]),
        "own_p50_us": median([pct(p, 0.50) for p in own_passes]),
        "own_p99_us": median([pct(p, 0.99) for p in own_passes]),
        "table_node_p50_us": median([pct(p, 0.50) for p in node_passes]),
        "calldata_p50_us": median([pct(p, 0.50) for p in calldata_passes]),
        "calldata_p99_us": median([pct(p, 0.99) for p in calldata_passes]),
        "passes": len(own_passes),
    }


def _blast_feeder(rate: float, duration_s: float, n_accounts: int = 600) -> Any:
    """A feeder for the load run: pre-signed transactions sent at ``rate`` a second, half of them
    plain transfers, half Router02 ``swapExactETHForTokens`` of 0.01 ETH (no minimum out, so any
    order is valid) on either DEX, from ``n_accounts`` fresh accounts funded with ``anvil_setBalance``."""
    import random

    from eth_account import Account
    from eth_utils import keccak, to_checksum_address

    from aether.dex import encode_swap

    signed: list[str] = []

    async def prepare(rpc: RpcClient, info: Any) -> None:
        rng = random.Random(3)
        accounts = [Account.from_key(keccak(f"aether-load:{i}".encode())) for i in range(n_accounts)]
        await rpc.batch([("anvil_setBalance", [a.address, hex(10**24)]) for a in accounts])
        block = await rpc.call("eth_getBlockByNumber", ["latest", False])
        deadline = int(block["timestamp"], 16) + 3600
        n = int(rate * (duration_s + 5))

        def sign_all() -> list[str]:
            raws = []
            for i in range(n):
                a = accounts[i % n_accounts]
                tx: dict[str, Any] = {"type": 2, "chainId": info.chain_id, "nonce": i // n_accounts,
                                      "maxFeePerGas": 100 * 10**9, "maxPriorityFeePerGas": 10**9}
                if i % 2:
                    tx.update(to=to_checksum_address(accounts[(i + 1) % n_accounts].address), value=1, gas=21_000,
                              data=b"")
                else:
                    dex = rng.choice(info.dexes)
                    tok = rng.choice(info.tokens).address
                    data, value = encode_swap("swapExactETHForTokens", amount_in=10**16, amount_out=1,
                                              path=[info.weth, tok], to=a.address.lower(), deadline=deadline)
                    tx.update(to=to_checksum_address(dex.router), value=value, gas=250_000, data=data)
                raws.append("0x" + a.sign_transaction(tx).raw_transaction.hex())
            return raws

        signed.extend(await trio.to_thread.run_sync(sign_all))

    async def feed(rpc: RpcClient, info: Any, stop: trio.Event) -> None:
        raws = signed
        step = 0.05
        per = max(1, int(rate * step))
        i = 0
        next_at = trio.current_time()
        while not stop.is_set() and i < len(raws):
            await rpc.batch([("eth_sendRawTransaction", [r]) for r in raws[i : i + per]])
            i += per
            next_at += step
            await trio.sleep_until(next_at)

    feed.prepare = prepare  # type: ignore[attr-defined]
    return feed


async def load_300(duration_s: float = 60.0) -> dict[str, Any]:
    """The devnet at 300 pending tx/s, half transfers: what aether drops and how many sims overlap."""
    from aether.devnet._coverage import measure

    run = await measure(duration_s=duration_s, block_time=1.0, verify=False, feeder=_blast_feeder(300.0, duration_s))
    return {"rate_seen": run.pipeline["pending_seen"] / duration_s, **run.pipeline, "latency": run.latency}


def main(argv: list[str]) -> int:
    reps = 5
    market = make_market(seed=1)
    stream = make_stream(market, 20_000, seed=2)
    r = trio.run(own_share, market, stream, reps)
    print(f"own share, frame -> gated bundle via simulation (node time subtracted): p50 {r['own_p50_us']:.0f} us, "
          f"(RpcClient floor p50 {r['rpc_floor_p50_us']:.0f} us) "
          f"p99 {r['own_p99_us']:.0f} us over {r['bundles_per_pass']} bundles/pass, median of {r['passes']} passes; "
          f"calldata path p50 {r['calldata_p50_us']:.0f} us, p99 {r['calldata_p99_us']:.0f} us; "
          f"table node p50 {r['table_node_p50_us']:.0f} us")
    if "--no-devnet" not in argv:
        duration = 60.0
        for a in argv:
            if a.startswith("--load-seconds="):
                duration = float(a.split("=", 1)[1])
        load = trio.run(load_300, duration)
        print(f"300 tx/s load: {load}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
