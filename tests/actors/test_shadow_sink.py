"""The shadow sink and the forensic dumps: every field, atomic, nothing lost, HALT when unwritable."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import attrs
import trio
import trio.testing

from aether.actors import HaltRequest, ShadowSink
from aether.dumps import RunDir, bundle_document, write_json_atomic
from aether.messages import GATES, RiskDecision, Verdict
from aether.metrics import Metrics
from factories import make_bundle
from faults._harness import SEED_FIELDS



def verdict(arb_id: str, *, passed: bool, source_victim: bool = True) -> Verdict:
    b = make_bundle(victim_hash=b"\x11" * 32 if source_victim else None, seen_at=0.0)
    b = attrs.evolve(b, arb_id=arb_id)
    decisions = tuple(RiskDecision(g, passed or g != "min_profit", "1") for g in GATES)
    return Verdict(b, decisions, passed, None if passed else "min_profit")


async def test_document_has_every_seed_field_with_seed_types() -> None:
    doc = bundle_document(verdict("a1", passed=True), mode="shadow", outcome="shadow_blocked")
    assert SEED_FIELDS <= doc.keys()
    assert doc["source"] == "mempool_backrun" and doc["victim_tx_hash"] == "0x" + "11" * 32
    for money in ("expected_gross_profit_wei", "expected_net_profit_wei", "base_fee_wei", "priority_fee_wei",
                  "flashloan_amount"):
        assert isinstance(doc[money], str) and int(doc[money]) >= 0
    assert isinstance(doc["target_block"], int) and isinstance(doc["gas_used"], int)
    assert isinstance(doc["tip_share_bps"], int)
    assert all(e.startswith("0x") for e in doc["envelope"])
    assert [d["gate"] for d in doc["risk_decisions"]] == list(GATES)
    assert doc["flashloan_provider"] == "none"
    block = bundle_document(verdict("a2", passed=True, source_victim=False), mode="shadow", outcome="x")
    assert block["source"] == "block_arb" and block["victim_tx_hash"] is None


async def test_atomic_write_leaves_no_temporary_and_uses_0600(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    write_json_atomic(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


async def test_sink_dumps_every_verdict_and_counts_only_passed_as_shadow_blocked(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "reports", shadow=True, stamp="20260101T000000Z")
    run.create()
    assert stat.S_IMODE(run.path.stat().st_mode) == 0o700
    metrics = Metrics()
    send, recv = trio.open_memory_channel[Verdict](10)
    sink = ShadowSink(run_dir=run, metrics=metrics, inbox=recv)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.run)
        async with send:
            await send.send(verdict("p1", passed=True))
            await send.send(verdict("r1", passed=False))
            await send.send(verdict("p2", passed=True, source_victim=False))
    files = sorted(p.name for p in run.bundles.iterdir())
    assert files == ["p1.json", "p2.json", "r1.json"]
    assert run.path.name == "shadow_mempool_20260101T000000Z"
    assert json.loads((run.bundles / "r1.json").read_text())["outcome"] == "rejected"
    assert json.loads((run.bundles / "p1.json").read_text())["outcome"] == "shadow_blocked"
    assert metrics.value("aether_executor_bundles_shadow_blocked_total", source="mempool_backrun") == 1
    assert metrics.value("aether_executor_bundles_shadow_blocked_total", source="block_arb") == 1
    assert metrics.value("aether_executor_bundles_submitted_total", source="mempool_backrun") == 0


async def test_unwritable_dir_halts_keeps_everything_and_recovers(tmp_path: Path) -> None:
    run = RunDir(tmp_path, shadow=True, stamp="20260101T000000Z")
    run.create()
    metrics = Metrics()
    send, recv = trio.open_memory_channel[Verdict](10)
    halt_tx, halt_rx = trio.open_memory_channel[HaltRequest](10)
    sink = ShadowSink(run_dir=run, metrics=metrics, inbox=recv, halt=halt_tx, threaded=False)
    # Make the bundles directory unusable even for root: replace it with a file.
    os.rmdir(run.bundles)
    run.bundles.write_text("not a directory")
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.run)
        await send.send(verdict("a", passed=True))
        await trio.testing.wait_all_tasks_blocked()
        assert halt_rx.receive_nowait() == HaltRequest("reports_dir_writable", True)
        await send.send(verdict("b", passed=False))
        await trio.testing.wait_all_tasks_blocked()
        assert sink.statistics().queued == 2 and sink.statistics().dropped == 0
        assert metrics.value("aether_shadow_dump_errors_total") == 2
        # The operator fixes the disk; the next verdict flushes the backlog in order.
        run.bundles.unlink()
        run.bundles.mkdir(mode=0o700)
        await send.send(verdict("c", passed=True))
        await trio.testing.wait_all_tasks_blocked()
        assert halt_rx.receive_nowait() == HaltRequest("reports_dir_writable", False)
        await send.aclose()
    assert sorted(p.name for p in run.bundles.iterdir()) == ["a.json", "b.json", "c.json"]
    assert sink.statistics().queued == 0


async def test_a_hard_cancel_still_dumps_every_queued_verdict(tmp_path: Path) -> None:
    run = RunDir(tmp_path, shadow=True, stamp="20260101T000000Z")
    run.create()
    metrics = Metrics()
    send, recv = trio.open_memory_channel[Verdict](10)
    for i in range(5):
        send.send_nowait(verdict(f"q{i}", passed=i % 2 == 0))
    sink = ShadowSink(run_dir=run, metrics=metrics, inbox=recv, threaded=False)
    with trio.CancelScope() as scope:
        scope.cancel()  # cancelled before it could take a single verdict the normal way
        await sink.run()
    assert sorted(p.name for p in run.bundles.iterdir()) == [f"q{i}.json" for i in range(5)]
    assert metrics.value("aether_executor_bundles_shadow_blocked_total", source="mempool_backrun") == 3
    assert sink.statistics().dropped == 0
