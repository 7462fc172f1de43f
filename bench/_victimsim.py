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
from aether.dex._logs import SYNC_TOPIC
from aether.messages import PendingTx
from aether.metrics import Metrics
from aether.strategy import PostState, Prefilter, VictimSimulator

from ._gen import CHAIN_ID, SUB_ID, Market, Stream, make_market, make_stream
from ._inproc import Rig, median, pct


class _TableNode:
    """``eth_simulateV1`` and ``eth_getTransactionCount`` answered from a table; times itself."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], Any] = {}
        self.seconds = 0.0

    def handler(self, request: httpx.Request) -> httpx.Response:
        t0 = time.perf_counter()
        body = orjson.loads(request.content)
        out = []
        nonce = "0x0"
        for req in body:
            if req["method"] == "eth_simulateV1":
                call = req["params"][0]["blockStateCalls"][0]["calls"][0]
                nonce = call["nonce"]
                out.append({"jsonrpc": "2.0", "id": req["id"], "result": self.answers[(call["from"], nonce)]})
            else:
                out.append({"jsonrpc": "2.0", "id": req["id"], "result": nonce})
        resp = httpx.Response(200, content=orjson.dumps(out))
        self.seconds += time.perf_counter() - t0
        return resp


def _sim_answer(post: PostState | None) -> Any:
    logs = [] if post is None else [
        {"address": p.pair, "topics": [SYNC_TOPIC], "data": "0x" + p.reserve0.to_bytes(32, "big").hex()
         + p.reserve1.to_bytes(32, "big").hex()} for p in post.pools]
    return [{"number": "0x1", "calls": [{"status": "0x1" if post is not None else "0x0", "logs": logs,
                                          "gasUsed": "0x1", "returnData": "0x"}]}]


async def own_share(market: Market, stream: Stream, reps: int) -> dict[str, Any]:
    """Frame -> gated bundle through the simulation path, node time subtracted; the calldata path beside it."""
    rig = Rig(market)
    await rig.start()
    node = _TableNode()
    rpc = RpcClient("http://node.bench", transport=httpx.MockTransport(node.handler))
    metrics = Metrics(CollectorRegistry())
    send, recv = trio.open_memory_channel[PendingTx](1 << 20)
    intake = IntakeActor(ws_url="ws://127.0.0.1:1", rpc=None, chain_id=CHAIN_ID,  # type: ignore[arg-type]
                         routers=set(), metrics=metrics, out=send, prefilter=Prefilter(market.chain))
    sim = VictimSimulator(rpc, rig.book)
    swaps = [stream.frames[i] for i in stream.swaps]
    # The node's table: each swap's exact post-state (or a revert), from the calldata path.
    for f in swaps:
        tx = rig.screen(f)
        if tx is None:
            continue
        post = await rig.strategy.post_state_from_calldata(tx, rig.head)
        node.answers[(tx.sender, hex(tx.nonce))] = _sim_answer(post if isinstance(post, PostState) else None)

    async def sim_path(message: bytes) -> tuple[Any, float]:
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
    finally:
        await rpc.aclose()
    return {
        "bundles_per_pass": len(own_passes[0]),
        "own_p50_us": median([pct(p, 0.50) for p in own_passes]),
        "own_p99_us": median([pct(p, 0.99) for p in own_passes]),
        "table_node_p50_us": median([pct(p, 0.50) for p in node_passes]),
        "calldata_p50_us": median([pct(p, 0.50) for p in calldata_passes]),
        "calldata_p99_us": median([pct(p, 0.99) for p in calldata_passes]),
        "passes": len(own_passes),
    }


async def load_300(duration_s: float = 60.0) -> dict[str, Any]:
    """The devnet at 300 pending tx/s, half transfers: what aether drops and how many sims overlap."""
    from aether.devnet._coverage import measure
    from aether.devnet._universal import RouteKind

    run = await measure(duration_s=duration_s, tx_rate=300.0, block_time=2.0, verify=False,
                        mix={k: 1.0 for k in RouteKind}, transfer_share=0.5)
    return {"sent": sum(run.sent.values()), "rate": sum(run.sent.values()) / duration_s, **run.pipeline,
            "latency": run.latency}


def main(argv: list[str]) -> int:
    reps = 5
    market = make_market(seed=1)
    stream = make_stream(market, 20_000, seed=2)
    r = trio.run(own_share, market, stream, reps)
    print(f"own share, frame -> gated bundle via simulation (node time subtracted): p50 {r['own_p50_us']:.0f} us, "
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
