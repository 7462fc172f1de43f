"""Settlement off the hot path: frame-to-bundle latency with settlement on and off, in one run.

    python -m bench._settlement [--reps N] [--block-txs N]

The candidate path is the bench's own (``_inproc.Rig``: parse, screen, size,
sign, gate), and every verdict then goes through the real
:class:`~aether.actors._inflight.InFlightActor` to the end of the line; the
latency is taken from the frame's arrival to the verdict leaving the in-flight
actor; frames arrive at ``--rate`` per second (open loop: a frame that waits
for a busy event loop counts the wait) or back to back (``--rate 0``, the
worst case: any CPU settlement takes is taken from the next frame). Every
``--frames-per-head`` swap frames the head moves, and with settlement on
the actor's worker settles the previous block with the real
:class:`~aether.settlement.Settler` against an in-process node whose every
block holds ``--block-txs`` transactions with their receipts (JSON bytes parsed
per answer, and a checkpoint per round trip, as over a socket). With
settlement off the same actor runs with ``enabled=False``. The two
configurations alternate within each repetition, so their ratio is taken
under the same machine load; the figure is the median over repetitions.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import orjson
import trio

from aether.actors._inflight import InFlightActor, InFlightLedger, SettlementFile
from aether.messages import Tick, Verdict
from aether.settlement import Settler

from ._gen import make_market, make_stream
from ._inproc import Rig, median, pct


class BlockNode:
    """Answers the settler's reads with a block of ``n`` transactions (JSON parsed per answer)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.calls = 0
        self._cache: dict[int, tuple[bytes, bytes, bytes]] = {}

    def _block(self, number: int) -> tuple[bytes, bytes, bytes]:
        if number not in self._cache:
            h = lambda k: "0x%064x" % (number * 10_000 + k)  # noqa: E731 - a tiny local naming rule
            txs = [{"hash": h(i), "from": "0x" + "77" * 20, "to": "0x" + "88" * 20, "nonce": hex(i), "gas": "0x5208",
                    "value": "0x0", "input": "0x", "maxFeePerGas": "0x1", "maxPriorityFeePerGas": "0x1"}
                   for i in range(self.n)]
            receipts = [{"transactionHash": h(i), "blockHash": h(9999), "from": "0x" + "77" * 20, "gasUsed": "0x5208",
                         "effectiveGasPrice": "0x1", "logs": [{"address": "0x" + "99" * 20, "topics": ["0x" + "00" * 32],
                                                              "data": "0x"}]} for i in range(self.n)]
            block = {"number": hex(number), "hash": h(9999), "parentHash": h(9998), "timestamp": hex(number),
                     "baseFeePerGas": "0x1", "miner": "0x" + "00" * 20, "transactions": txs}
            parent = {"number": hex(number - 1), "hash": h(9998)}
            self._cache = {number: (orjson.dumps(block), orjson.dumps(parent), orjson.dumps(receipts))}
        return self._cache[number]

    async def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        self.calls += len(calls)
        await trio.lowlevel.checkpoint()  # a round trip yields to the event loop
        out: list[Any] = []
        for method, params in calls:
            if method == "eth_getBlockByNumber":
                n = int(params[0], 16)
                block, parent, _ = self._block(n if params[1] else n + 1)
                out.append(orjson.loads(block if params[1] else parent))
            elif method == "eth_getBlockReceipts":
                out.append(orjson.loads(self._block(int(params[0], 16))[2]))
            elif method == "eth_getTransactionByHash":
                out.append(None)
            else:
                out.append("0x0")
        return out


async def one_pass(rig: Rig, frames: list[bytes], *, settle: bool, node: BlockNode, tmp: Path,
                   rate: float | None, frames_per_head: int) -> list[float]:
    """Latencies (us) of one pass: back to back when ``rate`` is None, else frames arriving at ``rate``/s.

    Open loop: each frame has an arrival time, and its latency runs from that time (a frame
    that waited for the event loop, busy settling, counts that wait).
    """
    v_tx, v_rx = trio.open_memory_channel[Verdict](256)
    o_tx, o_rx = trio.open_memory_channel[Verdict](256)
    t_tx, t_rx = trio.open_memory_channel[Tick](256)
    actor = InFlightActor(ledger=InFlightLedger(), settler=Settler(node, searcher=rig.account.address,  # type: ignore[arg-type]
                                                                 weth=rig.market.chain.weth),
                          records=SettlementFile(tmp / f"settlements-{settle}.jsonl"), metrics=rig.metrics,
                          inbox=v_rx, out=o_tx, ticks=t_rx, enabled=settle, confirmations=0)
    lat: list[float] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        start = trio.current_time()
        for i, f in enumerate(frames):
            if rate is None:
                arrival = trio.current_time()
            else:
                arrival = start + i / rate
                await trio.sleep_until(arrival)
            out = await rig.candidate_path(f)
            if out is not None and hasattr(out, "bundle"):
                await v_tx.send(out)
                await o_rx.receive()
                lat.append((trio.current_time() - arrival) * 1e6)
            if (i + 1) % frames_per_head == 0:
                rig.new_head(rig.head.number + 1)
                await t_tx.send(rig.tick)  # the previous head's bundles are now due
        v_tx.close()
        t_tx.close()
    return lat


async def measure(reps: int, block_txs: int, rate: float | None, frames_per_head: int) -> dict[str, Any]:
    market = make_market()
    stream = make_stream(market, 20_000)
    frames = [stream.frames[i] for i in stream.swaps]
    node = BlockNode(block_txs)
    on_p50, off_p50, on_p99, off_p99 = [], [], [], []
    n = 0
    with tempfile.TemporaryDirectory() as d:
        for rep in range(reps + 1):
            for settle in (False, True) if rep % 2 else (True, False):
                rig = Rig(market)
                await rig.start()
                calls = node.calls
                lat = await one_pass(rig, frames, settle=settle, node=node, tmp=Path(d), rate=rate,
                                     frames_per_head=frames_per_head)
                n = len(lat)
                if rep == 0:
                    continue  # warm-up
                (on_p50 if settle else off_p50).append(pct(lat, 0.5))
                (on_p99 if settle else off_p99).append(pct(lat, 0.99))
                if settle:
                    per_pass_calls = node.calls - calls
    return {"verdicts_per_pass": n, "block_txs": block_txs, "reps": reps, "rate": rate,
            "frames_per_head": frames_per_head, "heads_per_pass": len(frames) // frames_per_head,
            "on_p50_us": median(on_p50), "off_p50_us": median(off_p50),
            "on_p99_us": median(on_p99), "off_p99_us": median(off_p99),
            "ratio_p50": median([a / b for a, b in zip(on_p50, off_p50, strict=True)]),
            "ratio_p99": median([a / b for a, b in zip(on_p99, off_p99, strict=True)]),
            "node_calls_per_pass": per_pass_calls}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench._settlement")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--block-txs", type=int, default=300)
    p.add_argument("--rate", type=float, default=200.0, help="swap frames per second (0: back to back)")
    p.add_argument("--frames-per-head", type=int, default=100, help="swap frames between heads")
    args = p.parse_args()
    r = trio.run(measure, args.reps, args.block_txs, args.rate or None, args.frames_per_head)
    mode = f"{r['rate']:g} swap frames/s" if r["rate"] else "back to back"
    print(f"frame -> verdict out of the in-flight actor ({mode}, a head every {r['frames_per_head']} frames, "
          f"{r['heads_per_pass']} heads and {r['verdicts_per_pass']} verdicts a pass, {r['reps']} reps, "
          f"blocks of {r['block_txs']} txs):")
    print(f"  settlement off: p50 {r['off_p50_us']:.0f} us, p99 {r['off_p99_us']:.0f} us")
    print(f"  settlement on:  p50 {r['on_p50_us']:.0f} us, p99 {r['on_p99_us']:.0f} us")
    print(f"  ratio on/off (median of per-rep ratios): p50 {r['ratio_p50']:.2f}, p99 {r['ratio_p99']:.2f}; "
          f"settler node calls a pass {r['node_calls_per_pass']}")


if __name__ == "__main__":
    main()
