"""Network-edge faults on a real devnet: the node's WebSocket and RPC, and the builders.

Each test starts ``aether run`` as a real process against one ``aether devnet``
(module-scoped), puts a loopback fault proxy (``_proxy.py``) on one edge, injects
the fault while the run is live, and then checks what must hold:

* the process keeps running and exits 0 at the end of its ``--duration``;
* every built bundle is accounted for and no dump is partial (``assert_run_ok``);
* in shadow, the devnet's recording builder receives 0 bytes;
* plus the guarantee of the fault itself (reconnect within a second and no
  duplicate bundle; fail closed while the RPC misbehaves; per-builder outcomes,
  no retry, the good builder unaffected).

A bundle is a *duplicate* when it passed every gate (shadow_blocked, submitted,
stale or not_validated) for the same ``(target_block, victim_tx_hash)`` as another
bundle that passed: the node may re-announce a pending transaction after a
reconnect, the pipeline may even build it again, but risk's dedup gate must reject
the twin, so at most one of them is ever sent (or would have been, in shadow).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from factories import make_bundle

from aether.chain import HEADS, Frame, Subscriber
from aether.dumps import RunDir
from aether.messages import GATES, RiskDecision, Verdict

from ._harness import (
    Devnet,
    assert_run_ok,
    devnet_process,
    inspect_run,
    metric,
    record_figures,
    run_env,
    start_run,
)
from ._proxy import HttpFaultProxy, TcpProxy

devnet_test = pytest.mark.devnet


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    with devnet_process(tmp_path_factory.mktemp("faults-devnet"), block_time=1.0, tx_rate=25.0, seed=11) as d:
        yield d


def _dumps(run_dir: Path) -> list[dict]:
    return [json.loads(p.read_bytes()) for p in sorted((run_dir / "bundles").glob("*.json"))]


def _wall(iso: str) -> float:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()



# How long after a block is visible on the WebSocket feed a request for it may still arrive (the
# submitter's own notice of the head plus one in-flight send); a queued or retried send is seconds late.
_HEAD_NOTICE_S = 0.25


async def _watch_heads(ws_url: str, seen: dict[int, float], *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Record when each block number was first seen on ``ws_url`` (``time.monotonic``, the proxy's clock)."""
    sub = Subscriber(ws_url, HEADS, clock=time.monotonic)
    send, receive = trio.open_memory_channel[Frame](64)
    async with trio.open_nursery() as nursery:
        await nursery.start(sub.run, send)
        task_status.started()
        async for frame in receive:
            seen.setdefault(int(frame.obj["number"], 16), frame.seen_at)

@devnet_test
async def test_ws_drops_reconnect_within_a_second_and_never_duplicate_a_bundle(devnet: Devnet, tmp_path: Path) -> None:
    await _ws_drops(devnet, tmp_path, cuts=4, duration=10, name="ws_drop")


@devnet_test
@pytest.mark.soak
async def test_soak_ws_drops(devnet: Devnet, tmp_path: Path) -> None:
    """The same guarantees over a long run with many cuts (``pytest -m soak tests/faults``)."""
    await _ws_drops(devnet, tmp_path, cuts=120, duration=150, name="ws_drop_soak")


async def _ws_drops(devnet: Devnet, tmp_path: Path, *, cuts: int, duration: int, name: str) -> None:
    proxy = TcpProxy.for_url(devnet.env["AETHER_WS_URL"], replay=12)
    before = devnet.record_size()
    rng = random.Random(20261124)
    latencies: list[float] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.serve)
        env = run_env(devnet.env, tmp_path / "reports", AETHER_WS_URL=proxy.url("ws"))
        run = await start_run(env, duration=duration, log_dir=tmp_path / "log")
        try:
            await run.wait_for_file("run.json")
            with trio.fail_after(10):  # both subscriptions (heads, pending) are up and flowing
                while proxy.open_connections < 2 or proxy.relayed_notifications < 20:
                    await trio.sleep(0.05)
            for _ in range(cuts):
                await trio.sleep(rng.uniform(0.4, 1.2))  # a random moment: the fault schedule, not a wait
                accepted = proxy.accepted
                assert proxy.cut_all() >= 2
                cut_at = proxy.cut_times[-1]
                with trio.move_on_after(5):
                    while proxy.accepted < accepted + 2 or proxy.open_connections < 2:
                        await trio.sleep(0.01)
                new = proxy.accept_times[accepted:accepted + 2]
                latencies.append(max(new) - cut_at if len(new) == 2 else float("inf"))
            flowing = proxy.relayed_notifications
            with trio.fail_after(5):  # resubscribed: notifications flow again after the last cut
                while proxy.relayed_notifications < flowing + 10:
                    await trio.sleep(0.05)
            code = await run.wait(timeout=duration + 30)
        finally:
            await run.aclose()
            nursery.cancel_scope.cancel()

    assert code == 0, run.stderr()[-3000:]
    check = inspect_run(run.run_dir())
    after = devnet.record_size()
    summary = check.summary or {}
    reconnects = summary.get("ws_reconnects", {})
    dumps = _dumps(check.run_dir)
    dedup_rejected = sum(1 for d in dumps if d["rejected_reason"] == "dedup")
    record_figures(
        name, injected=cuts, survived=cuts if code == 0 else 0, built=check.built, accounted=check.accounted,
        partial_dumps=len(check.partial_dumps), shadow_builder_bytes=after - before,
        max_reconnect_s=round(max(latencies), 3), reconnects=reconnects, replayed=proxy.replayed,
        dedup_rejected=dedup_rejected, duplicates=len(check.duplicates),
    )
    assert max(latencies) < 1.0, f"reconnect latencies {latencies}"
    assert reconnects.get("newHeads", 0) >= cuts and reconnects.get("newPendingTransactions", 0) >= cuts
    assert proxy.replayed > 0, "the replay never reached a pending stream: the duplicate check proved nothing"
    assert check.built > 0
    assert_run_ok(check, record_before=before, record_after=after)  # includes: no duplicates among passed bundles


@devnet_test
async def test_rpc_errors_garbage_and_timeouts_fail_closed_then_the_run_recovers(
    devnet: Devnet, tmp_path: Path
) -> None:
    proxy = HttpFaultProxy(upstream=devnet.env["AETHER_RPC_URL"])
    before = devnet.record_size()
    windows: list[tuple[str, float, float]] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.serve)
        env = run_env(devnet.env, tmp_path / "reports", AETHER_RPC_URL=proxy.url, AETHER_RPC_TIMEOUT_MS="400")
        run = await start_run(env, duration=13, log_dir=tmp_path / "log")
        try:
            await run.wait_for_file("run.json")
            await trio.sleep(2.0)  # a healthy stretch first (the schedule of the fault)
            for faults, seconds in ((["rpc_error", "garbage", "wrong_shape", "status_500"], 2.5), ("hang", 2.0),
                                    ("reset", 1.0)):
                proxy.set(faults)
                start = time.time()
                await trio.sleep(seconds)
                proxy.set("pass")
                windows.append((str(faults), start, time.time()))
            mid = await run.metrics()
            code = await run.wait(timeout=40)
        finally:
            await run.aclose()
            nursery.cancel_scope.cancel()

    assert code == 0, run.stderr()[-3000:]
    check = inspect_run(run.run_dir())
    after = devnet.record_size()
    dumps = _dumps(check.run_dir)
    fault_start, fault_end = windows[0][1], windows[-1][2]
    # A bundle evaluated just before the fault began may finish on old data: grace of one RPC timeout + slack.
    grace = 0.4 + 0.6
    passed_in_fault = [d["arb_id"] for d in dumps
                       if d["outcome"] != "rejected" and fault_start + grace <= _wall(d["built_at"]) <= fault_end]
    passed_after = [d for d in dumps if d["outcome"] != "rejected" and _wall(d["built_at"]) > fault_end]
    injected = sum(n for f, n in proxy.counts.items() if f != "pass")
    summary = check.summary or {}
    counted = {src: s["candidate_rejected"] for src, s in summary.get("sources", {}).items()}
    fault_counted = sum(counted.get("mempool_backrun", {}).get(r, 0)
                        for r in ("no_inventory", "reserves_unavailable", "validation_failed"))
    record_figures(
        "rpc_faults", injected=injected, survived=injected if code == 0 else 0, built=check.built,
        accounted=check.accounted, partial_dumps=len(check.partial_dumps), shadow_builder_bytes=after - before,
        faults=dict(proxy.counts), passed_during_fault=len(passed_in_fault), passed_after_recovery=len(passed_after),
        counted_rejections=counted.get("mempool_backrun", {}), risk_rejected=summary.get("risk_rejected"),
        intake_fetch_failed=metric(mid, "aether_mempool_intake_rejected_total", reason="fetch_failed"),
    )
    assert injected >= 10 and proxy.counts["hang"] >= 1 and proxy.counts["reset"] >= 1
    assert not passed_in_fault, f"bundles passed the gates while the RPC was failing: {passed_in_fault}"
    # Unknown balances (the per-head batch failed) and failed reads are counted rejections, not silence.
    assert fault_counted > 0, f"the RPC failures were not counted as rejections: {counted}"
    assert passed_after, "the run did not recover: nothing passed after the RPC came back"
    assert_run_ok(check, record_before=before, record_after=after)


@devnet_test
async def test_builders_429_500_hang_reset_are_counted_per_builder_and_the_good_one_gets_every_bundle(
    devnet: Devnet, tmp_path: Path
) -> None:
    limited = HttpFaultProxy(faults=["status_429", "status_500"], head_probe=devnet.env["AETHER_RPC_URL"])
    broken = HttpFaultProxy(faults=["hang", "reset"], head_probe=devnet.env["AETHER_RPC_URL"], hang_s=10.0)
    before = devnet.record_size()
    heads_seen: dict[int, float] = {}  # block number -> time.monotonic() when a WebSocket client first saw it
    async with trio.open_nursery() as nursery:
        await nursery.start(limited.serve)
        await nursery.start(broken.serve)
        await nursery.start(_watch_heads, devnet.env["AETHER_WS_URL"], heads_seen)
        builders = f"local={devnet.builder_url},limited={limited.url},broken={broken.url}"
        env = run_env(devnet.env, tmp_path / "reports", shadow=False, AETHER_BUILDER_URLS=builders,
                      AETHER_BUILDER_TIMEOUT_MS="700")
        run = await start_run(env, duration=9, log_dir=tmp_path / "log")
        try:
            code = await run.wait(timeout=40)
        finally:
            await run.aclose()
            nursery.cancel_scope.cancel()

    assert code == 0, run.stderr()[-3000:]
    check = inspect_run(run.run_dir())
    summary = check.summary or {}
    per_builder = summary.get("builder_requests", {})
    good = [r for r in devnet.record_lines(before) if b'"eth_sendBundle"' in base64.b64decode(r["body_b64"])]
    submitted = check.submitted

    def target_blocks(proxy: HttpFaultProxy) -> Counter[str]:
        return Counter(json.dumps(json.loads(r.body)["params"][0]["txs"]) for r in proxy.log)

    # A bundle sent just before its target block is mined can arrive just after: the submitter learns of a
    # block over the same WebSocket feed as anyone else. Late means it arrived once the target block had
    # been visible for longer than the submitter needs to notice (and stop sending it).
    arrivals = [(r.at, r.head_at_arrival, int(json.loads(r.body)["params"][0]["blockNumber"], 16))
                for p in (limited, broken) for r in p.log]
    same_block = [(head, target) for _, head, target in arrivals if head is not None and head >= target]
    late = [(round(at - heads_seen[target], 3), target) for at, _, target in arrivals
            if target in heads_seen and at - heads_seen[target] > _HEAD_NOTICE_S]
    record_figures(
        "builder_faults", injected=len(limited.log) + len(broken.log),
        survived=len(limited.log) + len(broken.log) if code == 0 else 0, built=check.built,
        accounted=check.accounted, partial_dumps=len(check.partial_dumps), submitted=submitted,
        good_builder_requests=len(good), per_builder=per_builder, late_requests=len(late),
        arrived_as_target_was_mined=len(same_block),
        most_after_target_s=round(max((at - heads_seen[t] for at, _, t in arrivals if t in heads_seen), default=0.0), 3),
    )
    assert submitted >= 1, "nothing was submitted: the test proved nothing"
    assert_run_ok(check)
    # The good builder is unaffected: every submitted bundle reached it and was answered ok.
    assert len(good) == submitted
    assert per_builder["local"]["ok"] == submitted
    # Each bad builder saw each bundle exactly once (no retries), each answer counted under its own label.
    for proxy in (limited, broken):
        assert len(proxy.log) == submitted
        assert max(target_blocks(proxy).values()) == 1
    assert per_builder["limited"]["http_error"] == submitted
    # A request still hanging when the run stopped is counted as cancelled, never lost.
    assert sum(per_builder["broken"].get(o, 0) for o in ("timeout", "unreachable", "cancelled")) == submitted
    assert per_builder["broken"].get("timeout", 0) >= 1 and per_builder["broken"].get("unreachable", 0) >= 1
    assert sum(per_builder["local"].values()) == submitted
    # Never a request once the submitter could know its target block was mined (seconds after it, target).
    assert not late, f"builder requests arrived after their target block was visible: {late}"
    assert all(head <= target for head, target in same_block), same_block


async def test_a_twin_bundle_with_the_same_arb_id_never_overwrites_the_first_dump(tmp_path: Path) -> None:
    """Found by the WS replay above: a re-announced victim rebuilt for the same block has the same
    arb_id; its dump (rejected by dedup) used to replace the first one's (which passed)."""
    run_dir = RunDir(tmp_path, shadow=True, stamp="20260101T000000Z")
    run_dir.create()
    bundle = attrs.evolve(make_bundle(seen_at=0.0), arb_id="twin")
    passed = Verdict(bundle, tuple(RiskDecision(g, True, "0") for g in GATES), True, None)
    twin = Verdict(bundle, tuple(RiskDecision(g, g != "dedup", "1") for g in GATES), False, "dedup")
    first = run_dir.write_bundle(passed, outcome="shadow_blocked")
    second = run_dir.write_bundle(twin, outcome="rejected")
    third = run_dir.write_bundle(twin, outcome="rejected")
    assert len({first, second, third}) == 3
    docs = {p.name: json.loads(p.read_bytes()) for p in (run_dir.path / "bundles").glob("*.json")}
    assert docs["twin.json"]["outcome"] == "shadow_blocked"
    assert docs["twin-2.json"]["rejected_reason"] == "dedup" and "twin-3.json" in docs


async def test_a_builder_request_cut_short_by_the_run_stopping_is_still_counted(tmp_path: Path) -> None:
    """Found by the builder test above: a request in flight when the run stopped got no outcome at all,
    so per-builder counts fell one short of the requests the builder saw."""
    from eth_account import Account

    from aether.config import BuilderEndpoint
    from aether.metrics import Metrics
    from aether.submit import Submitter

    hang = HttpFaultProxy(faults="hang", hang_s=5.0)
    m = Metrics()
    bundle = attrs.evolve(make_bundle(seen_at=0.0), candidate=attrs.evolve(make_bundle(seen_at=0.0).candidate,
                                                                           validated=True))
    async with trio.open_nursery() as nursery:
        await nursery.start(hang.serve)
        async with Submitter((BuilderEndpoint("slow", hang.url),), Account.create(), shadow=False, metrics=m,
                             timeout_s=30.0) as sub:
            async with trio.open_nursery() as inner:
                inner.start_soon(sub.submit, bundle)
                with trio.fail_after(5):
                    while not hang.log:  # the builder has the request: now stop the run
                        await trio.sleep(0.01)
                inner.cancel_scope.cancel()
        nursery.cancel_scope.cancel()
    assert m.value("aether_builder_requests_total", builder="slow", outcome="cancelled") == 1
    assert sub.statistics().outcomes["slow"]["cancelled"] == 1
