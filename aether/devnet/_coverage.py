"""Coverage and latency of victim detection, measured on the embedded devnet.

One run: a fresh anvil with the real Uniswap V2 DEXes, the real Universal Router
and MultiSwap; victim traffic over a route mix, each transaction's ground truth
(its route kind, the tracked pools it moves, whether it is meant to revert) kept
as it is sent; and aether's real pipeline (``supervisors._tree.build_pipeline``:
heads, intake with the prefilter, strategy simulating victims, validation, build,
risk) reading the node over WebSocket and HTTP as ``aether run`` does.

Coverage, per route kind, is the share of pool-moving victims for which aether
produced the correct post-state: the same pools, in order, as the ground truth,
and for each the reserves that an independent read gives (the victim simulated
again with ``getReserves`` calls after it in the same simulated block: the pairs'
storage, not their logs). Failing victims are scored apart: correct when aether
gave them no post-state.

Latency, per verdict: notification received (the frame's arrival) to the gated
bundle, split into the node's time (the victim simulation, the counter pools'
reserves fetch, the validation round trip) and aether's own share (the rest).

The pipeline is instrumented by wrapping ``VictimSimulator.simulate``,
``PoolBook.fetch`` (the node half of ``ensure``) and ``Validator.validate`` in this process only, to record what
they return and how long the node took; nothing in the pipeline changes.
"""

from __future__ import annotations

import contextlib
import io
import json
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import trio

from .._errors import NodeError
from ..chain import RpcClient, open_rpc
from ..messages import PendingTx
from ..strategy import PostState, Rejection, V2Reserves, Validator, VictimSimulator
from ..strategy._poststate import victim_call
from ._anvil import run_anvil
from ._deploy import DevnetInfo, deploy
from ._run import _miner
from ._traffic import VictimTraffic
from ._universal import ALL_ROUTE_KINDS, AnyRouteKind, RouteKind, deploy_route_contracts
from ._v3 import deploy_v3_into

__all__ = ["CoverageRun", "measure", "render_markdown"]

_GET_RESERVES = "0x0902f1ac"
_SLOT0 = "0x3850c7bd"
_LIQUIDITY = "0x1a686502"


@attrs.define
class _Record:
    """What the instrumented pipeline did, keyed by victim hash (hex)."""

    post: dict[str, PostState] = attrs.field(factory=dict)
    rejected: dict[str, str] = attrs.field(factory=dict)
    sim_s: dict[str, float] = attrs.field(factory=dict)
    ensure_s: dict[str, float] = attrs.field(factory=dict)
    validate_s: dict[str, float] = attrs.field(factory=dict)
    txs: dict[str, PendingTx] = attrs.field(factory=dict)
    verified: dict[str, str] = attrs.field(factory=dict)
    latencies: list[tuple[float, float]] = attrs.field(factory=list)  # (total, node)
    in_flight: int = 0
    max_in_flight: int = 0


@attrs.frozen
class CoverageRun:
    """The measured figures of one run (everything JSON-friendly)."""

    duration_s: float
    tx_rate: float
    block_time: float
    mix: dict[str, float]
    sent: dict[str, int]
    rows: dict[str, dict[str, Any]]
    failing: dict[str, dict[str, int]]
    latency: dict[str, float]
    pipeline: dict[str, Any]


@contextlib.contextmanager
def _instrument(rec: _Record, on_post: Callable[[PendingTx, Any], None]) -> Any:
    """Wrap the three node-facing calls of the pipeline to record results and node time."""
    from ..dex import PoolBook

    # The book's node half (fetch, which ensure calls): its time is the node's, the bookkeeping aether's.
    sim0, fetch0, val0 = VictimSimulator.simulate, PoolBook.fetch, Validator.validate
    current: dict[str, str] = {}

    async def simulate(self: VictimSimulator, tx: PendingTx, head: Any) -> PostState | Rejection:
        t0 = time.perf_counter()
        rec.in_flight += 1
        rec.max_in_flight = max(rec.max_in_flight, rec.in_flight)
        try:
            result = await sim0(self, tx, head)
        finally:
            rec.in_flight -= 1
        h = tx.hash_hex
        rec.sim_s[h] = time.perf_counter() - t0
        rec.txs[h] = tx
        if isinstance(result, PostState):
            rec.post[h] = result
            on_post(tx, head)
        else:
            rec.rejected[h] = result.reason
        return result

    async def fetch(self: PoolBook, missing: list[str]) -> None:
        t0 = time.perf_counter()
        try:
            await fetch0(self, missing)
        finally:
            h = current.get("victim")
            if h is not None:
                rec.ensure_s[h] = rec.ensure_s.get(h, 0.0) + time.perf_counter() - t0

    async def validate(self: Validator, cand: Any) -> Any:
        t0 = time.perf_counter()
        result = await val0(self, cand)
        if cand.victim is not None:
            rec.validate_s[cand.victim.hash_hex] = time.perf_counter() - t0
        return result

    from ..strategy import _backrun

    post0 = _backrun.BackrunStrategy.on_post_state

    async def on_post_state(self: Any, tx: PendingTx, head: Any, post: PostState, *, inventory_wei: int) -> Any:
        current["victim"] = tx.hash_hex
        try:
            return await post0(self, tx, head, post, inventory_wei=inventory_wei)
        finally:
            current.pop("victim", None)

    VictimSimulator.simulate = simulate  # type: ignore[method-assign]
    PoolBook.fetch = fetch  # type: ignore[method-assign]
    Validator.validate = validate  # type: ignore[method-assign, assignment]
    _backrun.BackrunStrategy.on_post_state = on_post_state  # type: ignore[method-assign]
    try:
        yield
    finally:
        VictimSimulator.simulate = sim0  # type: ignore[method-assign]
        PoolBook.fetch = fetch0  # type: ignore[method-assign]
        Validator.validate = val0  # type: ignore[method-assign]
        _backrun.BackrunStrategy.on_post_state = post0  # type: ignore[method-assign]


async def _verify(rpc: RpcClient, tx: PendingTx, post: PostState, head_ts: int) -> str:
    """The victim again on ``post.block``, then each moved pool's state, in one simulated block.

    A V2 pair is read by ``getReserves``; a V3 pool by ``slot0`` and ``liquidity``
    (its entry's ``sqrt_price_x96``, ``tick`` and ``liquidity`` must all match).

    Returns ``"ok"`` or why the post-state was not confirmed (a node error is retried once).
    """
    calls = [victim_call(tx)]
    for p in post.pools:
        addr = p.address
        if isinstance(p, V2Reserves):
            calls.append({"to": addr, "input": _GET_RESERVES, "gas": "0x30000"})
        else:
            calls += [{"to": addr, "input": _SLOT0, "gas": "0x30000"}, {"to": addr, "input": _LIQUIDITY, "gas": "0x30000"}]
    params = [{"blockStateCalls": [{"blockOverrides": {"baseFeePerGas": "0x0", "time": hex(head_ts + 1)},
                                    "calls": calls}], "validation": False}, hex(post.block)]
    for attempt in range(2):
        try:
            blocks = await rpc.call("eth_simulateV1", params)
            results = blocks[0]["calls"]
            if int(results[0]["status"], 16) != 1:
                return "victim_reverted_on_recheck"
            i = 1
            for p in post.pools:
                data = results[i]["returnData"]
                if isinstance(p, V2Reserves):
                    i += 1
                    if (int(data[2:66], 16), int(data[66:130], 16)) != (p.reserve0, p.reserve1):
                        return "reserves_differ"
                    continue
                liq_data = results[i + 1]["returnData"]
                i += 2
                want = (p.sqrt_price_x96, p.tick, p.liquidity)
                tick = int(data[66:130], 16)
                tick = tick - (1 << 256) if tick >= 1 << 255 else tick  # int24, sign-extended in its word
                if (int(data[2:66], 16), tick, int(liq_data[2:66], 16)) != want:
                    return "v3_state_differs"
            return "ok"
        except NodeError as exc:
            if attempt:
                return f"node_error:{type(exc).__name__}"
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            return f"bad_answer:{type(exc).__name__}"
    return "unreachable"


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


async def measure(
    *,
    duration_s: float = 180.0,
    tx_rate: float = 5.0,
    block_time: float = 2.0,
    seed: int = 1,
    mix: Mapping[RouteKind, float] | Mapping[AnyRouteKind, float] | None = None,
    workdir: Path | None = None,
    verify: bool = True,
    transfer_share: float = 0.15,
    feeder: Callable[[RpcClient, DevnetInfo, trio.Event], Awaitable[None]] | None = None,
    v3: bool = False,
) -> CoverageRun:
    """Run the devnet and aether's pipeline for ``duration_s`` and score detection.

    ``feeder`` replaces the victim traffic (load runs: it sends until the event is set;
    no ground truth, so only the pipeline and latency figures mean anything).
    ``v3`` deploys Uniswap V3 too (its ``[[dex]]`` block in the pipeline's config, the
    Universal Router wired to it) so the mix may hold the V3 route kinds; the default
    mix is then every route kind in equal shares.
    """
    from aether.config import Settings
    from aether.dumps import RunDir
    from aether.keys import load_key_file
    from aether.metrics import Metrics
    from supervisors import Supervisor
    from supervisors._supervise import ActorSpec
    from supervisors._tree import Runtime, build_pipeline

    kinds: tuple[AnyRouteKind, ...] = ALL_ROUTE_KINDS if v3 else tuple(RouteKind)
    mix = dict[AnyRouteKind, float](mix.items()) if mix is not None else {k: 1.0 / len(kinds) for k in kinds}
    tmp = tempfile.TemporaryDirectory(prefix="aether-coverage-") if workdir is None else None
    wd = Path(tmp.name) if tmp is not None else workdir
    assert wd is not None
    rec = _Record()
    truth = io.StringIO()
    try:
        async with run_anvil(port=0, log_path=wd / "anvil.log") as node, open_rpc(node.rpc_url, timeout=30) as rpc:
            info: DevnetInfo = await deploy(rpc, wd, seed=seed, ws_url=node.ws_url)
            v3_info = await deploy_v3_into(rpc, info, wd) if v3 else None
            routes = await deploy_route_contracts(
                rpc, info, v3_factory=v3_info.factory if v3_info is not None else None,
                v3_init_code_hash=v3_info.init_code_hash if v3_info is not None else None,
            )
            env = {
                "AETHER_WS_URL": node.ws_url, "AETHER_RPC_URL": node.rpc_url, "AETHER_CONFIG": str(info.config_path),
                "AETHER_SIGNER_KEY_FILE": str(info.searcher_key_file), "MEMPOOL_TRACKING": "1",
                "AETHER_BLOCK_ARB": "0", "AETHER_REPORTS_DIR": str(wd / "reports"), "AETHER_SHADOW": "1",
            }
            settings = Settings.from_env(env)
            signer = load_key_file(settings.signer_key_file, "AETHER_SIGNER_KEY_FILE")  # type: ignore[arg-type]
            run_dir = RunDir(settings.reports_dir, shadow=True)
            run_dir.create()
            metrics = Metrics()
            lock = trio.Lock()
            traffic = VictimTraffic(rpc, info, lock=lock, routes=routes, mix=mix, ground_truth=truth,
                                    fresh_senders=True, transfer_share=transfer_share, v3=v3_info)
            async with open_rpc(node.rpc_url, timeout=settings.rpc_timeout_s) as arpc:
                rt = Runtime(settings=settings, metrics=metrics, rpc=arpc, chain_id=info.chain_id, signer=signer,
                             run_dir=run_dir)
                p = build_pipeline(rt, tail_wants_ticks=False)
                verdicts = p.verdicts

                class _Collector:
                    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
                        task_status.started()
                        async for v in verdicts:
                            c = v.bundle.candidate
                            if c.victim is None:
                                continue
                            h = c.victim.hash_hex
                            total = trio.current_time() - c.seen_at
                            nodet = rec.sim_s.get(h, 0.0) + rec.ensure_s.get(h, 0.0) + rec.validate_s.get(h, 0.0)
                            rec.latencies.append((total, nodet))

                p.specs.append(ActorSpec("collector", _Collector, outputs=[p.feedback]))
                checks_tx, checks_rx = trio.open_memory_channel[tuple[str, int]](100_000)
                head_ts: dict[int, int] = {}
                supervisor = Supervisor(metrics)

                def on_post(tx: PendingTx, head: Any) -> None:
                    head_ts[head.number] = head.timestamp
                    if verify:
                        checks_tx.send_nowait((tx.hash_hex, head.number))

                with _instrument(rec, on_post):

                    async def checker() -> None:
                        async for h, number in checks_rx:
                            rec.verified[h] = await _verify(rpc, rec.txs[h], rec.post[h], head_ts[number])

                    prepare = getattr(feeder, "prepare", None)
                    if prepare is not None:  # e.g. pre-signing a load run's transactions, before any clock
                        await prepare(rpc, info)
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(_miner, rpc, lock, None, block_time, io.StringIO())
                        nursery.start_soon(checker)
                        nursery.start_soon(supervisor.run, p.specs)
                        await trio.sleep(2 * block_time)  # subscriptions up, first head seen
                        stop = trio.Event()
                        if feeder is None:
                            nursery.start_soon(traffic.run, tx_rate, stop)
                        else:
                            nursery.start_soon(feeder, rpc, info, stop)
                        await trio.sleep(duration_s)
                        stop.set()
                        await trio.sleep(2 * block_time + 1)  # the last victims simulated
                        await supervisor.stop()
                        checks_tx.close()
                        with trio.move_on_after(60):
                            while len(rec.verified) < len(rec.post) and verify:
                                await trio.sleep(0.2)
                        nursery.cancel_scope.cancel()
                pipeline = {
                    "screen_skipped": {r: int(metrics.value("aether_mempool_screen_skipped_total", reason=r))
                                       for r in ("contract_creation", "plain_transfer", "no_pool_hint", "sim_budget")},
                    "screen_passed": {h: int(metrics.value("aether_mempool_screen_passed_total", hint=h))
                                      for h in ("router", "learned", "token")},
                    "pending_seen": int(metrics.value("aether_mempool_pending_seen_total")),
                    "victims_dropped": int(metrics.value("aether_channel_dropped_total", channel="victims")),
                    "untrusted_logs": int(metrics.value("aether_victim_untrusted_logs_total")),
                    "candidates": int(metrics.value("aether_candidates_total", source="mempool_backrun")),
                    "bundles_built": int(metrics.value("aether_bundles_built_total", source="mempool_backrun")),
                    "simulations": len(rec.sim_s),
                    "max_simulations_in_flight": rec.max_in_flight,
                }
    finally:
        if tmp is not None:
            tmp.cleanup()
    return _score(truth.getvalue(), rec, duration_s, tx_rate, block_time, mix, pipeline)


def _score(truth_text: str, rec: _Record, duration_s: float, tx_rate: float, block_time: float,
           mix: Mapping[AnyRouteKind, float], pipeline: dict[str, Any]) -> CoverageRun:
    lines = [json.loads(x) for x in truth_text.splitlines() if x.strip()]
    sent = Counter(x["route_kind"] for x in lines)
    rows: dict[str, dict[str, Any]] = {}
    failing: dict[str, dict[str, int]] = {}
    for kind in ALL_ROUTE_KINDS:
        if kind not in mix and kind.value not in sent:
            continue  # a V3 row only when the run had V3 traffic
        mine = [x for x in lines if x["route_kind"] == kind.value]
        moving = [x for x in mine if not x["expect_revert"] and x["pools"] and not x.get("after_pending")]
        dependent = [x for x in mine if not x["expect_revert"] and x["pools"] and x.get("after_pending")]
        missed: Counter[str] = Counter()
        produced = correct = 0
        for x in moving:
            h = x["hash"]
            post = rec.post.get(h)
            if post is None:
                missed[rec.rejected.get(h, "not_simulated")] += 1
                continue
            produced += 1
            if [p.address for p in post.pools] != x["pools"]:
                missed["wrong_pools"] += 1
            elif rec.verified.get(h) != "ok":
                missed[f"not_verified ({rec.verified.get(h, 'unchecked')})"] += 1
            else:
                correct += 1
        rows[kind.value] = {
            "sent": len(mine), "pool_moving": len(moving), "post_states": produced, "correct": correct,
            "coverage_pct": round(100.0 * correct / len(moving), 2) if moving else None,
            "missed": dict(missed),
            "after_pending": len(dependent),
            "after_pending_post_states": sum(1 for x in dependent if x["hash"] in rec.post),
        }
        bad = [x for x in mine if x["expect_revert"] and not x.get("after_pending")]
        reasons: Counter[str] = Counter()
        for x in bad:
            reasons["post_state (wrong)" if x["hash"] in rec.post else rec.rejected.get(x["hash"], "not_simulated")] += 1
        failing[kind.value] = {"sent": len(bad), **dict(reasons)}
    totals = [t for t, _ in rec.latencies]
    nodes = [n for _, n in rec.latencies]
    own = [t - n for t, n in rec.latencies]
    latency = {
        "bundles": len(rec.latencies),
        "total_p50_ms": _pct(totals, 0.5) * 1e3, "total_p99_ms": _pct(totals, 0.99) * 1e3,
        "node_p50_ms": _pct(nodes, 0.5) * 1e3, "node_p99_ms": _pct(nodes, 0.99) * 1e3,
        "aether_p50_ms": _pct(own, 0.5) * 1e3, "aether_p99_ms": _pct(own, 0.99) * 1e3,
        "sim_p50_ms": _pct(list(rec.sim_s.values()), 0.5) * 1e3,
        "sim_p99_ms": _pct(list(rec.sim_s.values()), 0.99) * 1e3,
        "mean_total_ms": statistics.fmean(totals) * 1e3 if totals else float("nan"),
    }
    return CoverageRun(duration_s, tx_rate, block_time, {k.value: v for k, v in mix.items()}, dict(sent), rows,
                       failing, latency, pipeline)


def render_markdown(run: CoverageRun) -> str:
    """The coverage and latency tables of one run."""
    out = ["| route kind | victims sent | pool-moving | post-states | correct | coverage | missed (reason: n) "
           "| quoted after an earlier pending victim (post-states) |",
           "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    for kind, r in run.rows.items():
        missed = ", ".join(f"{k}: {v}" for k, v in sorted(r["missed"].items())) or "none"
        cov = "n/a" if r["coverage_pct"] is None else f"{r['coverage_pct']:.2f}%"
        out.append(f"| {kind} | {r['sent']} | {r['pool_moving']} | {r['post_states']} | {r['correct']} | {cov} | {missed} "
                   f"| {r['after_pending']} ({r['after_pending_post_states']}) |")
    out += ["", "| route kind | failing victims sent | outcome (reason: n) |", "| --- | ---: | --- |"]
    for kind, f in run.failing.items():
        rest = ", ".join(f"{k}: {v}" for k, v in sorted(f.items()) if k != "sent") or "none"
        out.append(f"| {kind} | {f['sent']} | {rest} |")
    lat = run.latency
    out += ["", "| notification -> gated bundle | p50 | p99 |", "| --- | ---: | ---: |",
            f"| total | {lat['total_p50_ms']:.2f} ms | {lat['total_p99_ms']:.2f} ms |",
            f"| node (victim sim + reserves + validation) | {lat['node_p50_ms']:.2f} ms | {lat['node_p99_ms']:.2f} ms |",
            f"| aether's own share | {lat['aether_p50_ms']:.2f} ms | {lat['aether_p99_ms']:.2f} ms |",
            f"| victim simulation alone | {lat['sim_p50_ms']:.2f} ms | {lat['sim_p99_ms']:.2f} ms |",
            "", f"bundles timed: {lat['bundles']}; pipeline: {json.dumps(run.pipeline, sort_keys=True)}"]
    return "\n".join(out)
