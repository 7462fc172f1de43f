"""Process and disk faults on a real devnet: a full or read-only reports filesystem, SIGTERM
mid-write, kill -9 and restart, the UTC day across a restart, a corrupt risk state file.

Every test runs ``aether run`` as a real process against one busy ``aether devnet``
(module-scoped, 50 victim swaps a second, 1 s blocks: ~20 bundles a second, so a
dump is being written at almost any moment) and checks the guarantee of its fault:

* reports filesystem full / read-only (a real tmpfs, mounted for the test; needs
  root, skipped otherwise): risk HALTs with reason ``reports_dir_writable``
  (``aether_risk_halted{gate=...}`` and the dumps' decisions), no partial file,
  and every bundle built is dumped once the filesystem recovers; stopping while
  it is still full logs every dump given up (``aether_channel_dropped_total``);
* SIGTERM at several moments: exit 0, every dump complete JSON, no ``.tmp``
  leftovers, one dump per built bundle;
* kill -9 and restart: the daily P&L, its HALT latch and the revert streak
  come back from the state file (the restarted run rejects for ``daily_pnl``);
* the UTC day across a restart: yesterday's loss HALT is released, a state
  file from "tomorrow" (the wall clock went back) keeps it;
* a corrupt state file: exit 2 naming the file, which is left untouched.

The clock inside one process (monotonic windows, midnight, wall-clock jumps)
is covered on the trio clock by ``tests/risk/test_risk_state.py``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from aether.actors import HaltRequest, RiskActor
from aether.config import ETHER, RiskLimits
from aether.metrics import Metrics
from aether.risk import RiskEngine, RiskStore

from ._harness import (
    AETHER,
    AetherRun,
    Devnet,
    assert_run_ok,
    devnet_process,
    inspect_run,
    metric,
    record_figures,
    risk_rejected,
    run_env,
    start_run,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
LIMIT = RiskLimits().daily_loss_limit_wei


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    with devnet_process(tmp_path_factory.mktemp("process-faults"), block_time=1.0, tx_rate=50.0, seed=5) as d:
        yield d


# --------------------------------------------------------------------------- helpers


async def _until(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Bounded poll of an external process's observable state (the only polling in the suite)."""
    with trio.move_on_after(timeout):
        while True:
            got = check()
            if got:
                return got
            await trio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def _until_metrics(run: AetherRun, what: str, pred: Callable[[Samples], bool], timeout: float = 20.0) -> Samples:
    with trio.move_on_after(timeout):
        while True:
            if run.proc.poll() is not None:
                raise AssertionError(f"aether run exited ({run.proc.returncode}) waiting for {what}:\n"
                                     f"{run.stderr()[-3000:]}")
            m = await run.metrics()
            if pred(m):
                return m
            await trio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}:\n{run.stderr()[-3000:]}")


def _dump_count(run_dir: Path) -> int:
    return sum(1 for _ in (run_dir / "bundles").glob("*.json"))


def _built(m: Samples) -> int:
    return int(metric(m, "aether_bundles_built_total"))


def _written(m: Samples) -> int:
    return int(metric(m, "aether_shadow_dumps_written_total"))


@contextlib.contextmanager
def _small_fs(path: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` mounted at ``path`` for the test (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    path.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _fill(mount: Path) -> int:
    """Fill the filesystem until ENOSPC; returns the bytes written."""
    chunk = b"\0" * 65536
    written = 0
    with open(mount / "filler", "wb", buffering=0) as f:
        while True:
            try:
                written += f.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
            # tmpfs may accept a short write just before it is full
    return written


def _remount(mount: Path, mode: str) -> None:
    for _ in range(50):  # EBUSY while a write is in progress: retry (bounded)
        if subprocess.run(["mount", "-o", f"remount,{mode}", str(mount)], capture_output=True).returncode == 0:
            return
        time.sleep(0.02)
    raise AssertionError(f"cannot remount {mount} {mode}")


def _inject(fault: str, mount: Path) -> None:
    if fault == "disk_full":
        _fill(mount)
    else:
        _remount(mount, "ro")


def _repair(fault: str, mount: Path) -> None:
    if fault == "disk_full":
        (mount / "filler").unlink()
    else:
        _remount(mount, "rw")


def _seed_state(path: Path, *, pnl_wei: int, reverts: int = 0, day_offset: int = 0) -> dict[str, Any]:
    """Write a risk state file the way the engine does, as of ``day_offset`` days from now."""
    wall = dt.datetime.now(dt.UTC) + dt.timedelta(days=day_offset)
    engine = RiskEngine(RiskLimits(), store=RiskStore(path), clock=time.monotonic, wall_clock=lambda: wall)
    engine.on_outcome("mempool_backrun", False, False, pnl_wei)  # a miss: leaves the revert streak alone
    for _ in range(reverts):
        engine.on_outcome("mempool_backrun", True, True, 0)
    return json.loads(path.read_text())


def _halted_for_pnl(m: Samples) -> bool:
    return (risk_rejected(m, reason="daily_pnl") >= 1
            and metric(m, "aether_risk_halted", gate="eth_balance") == 0)


# --------------------------------------------------------------------------- reports filesystem


@pytest.mark.devnet
@pytest.mark.parametrize("fault", ["disk_full", "read_only"])
async def test_reports_fs_fault_halts_with_the_reason_and_every_bundle_is_dumped_after_recovery(
    devnet: Devnet, tmp_path: Path, fault: str
) -> None:
    with _small_fs(tmp_path / "fs", "4m") as mount:
        env = run_env(devnet.env, mount / "reports", AETHER_STATE_FILE=str(tmp_path / "state" / "risk-state.json"))
        before = devnet.record_size()
        run = await start_run(env, duration=None, log_dir=tmp_path / "log")
        try:
            run_dir = (await run.wait_for_file("run.json")).parent
            await _until("5 dumps", lambda: _dump_count(run_dir) >= 5)
            _inject(fault, mount)
            m = await _until_metrics(run, "risk to halt for the reports dir",
                                     lambda m: metric(m, "aether_risk_halted", gate="reports_dir_writable") == 1)
            assert metric(m, "aether_risk_state", state="halted") == 1
            halted_at = m
            # While it is broken: bundles keep being built, risk rejects them (fail closed), nothing is written.
            m = await _until_metrics(run, "bundles rejected during the halt", lambda m: risk_rejected(
                m, reason="risk_error") >= risk_rejected(halted_at, reason="risk_error") + 3)
            assert metric(m, "aether_shadow_dump_errors_total") >= 1
            assert _written(m) < _built(m)
            during = inspect_run(run_dir)
            assert during.partial_dumps == () and during.tmp_leftovers == ()
            assert during.dumps == _written(m)  # on disk exactly what was counted as written
            _repair(fault, mount)
            m = await _until_metrics(run, "the halt to lift and the backlog to flush", lambda m: metric(
                m, "aether_risk_halted", gate="reports_dir_writable") == 0 and _written(m) >= _built(m) - 20
                and _written(m) > during.dumps + 20)
            assert metric(m, "aether_channel_dropped_total", channel="shadow_dumps") == 0
            run.proc.send_signal(signal.SIGTERM)
            code = await run.wait()
        finally:
            await run.aclose()
        after = devnet.record_size()
        assert code == 0, run.stderr()[-3000:]
        check = inspect_run(run_dir)
        assert check.dump_errors >= 1
        # Every other guarantee of a clean run holds: one complete dump per built bundle, all accounted.
        assert_run_ok(attrs.evolve(check, dump_errors=0), record_before=before, record_after=after)
        assert check.tmp_leftovers == ()
        docs = [json.loads(p.read_bytes()) for p in (run_dir / "bundles").glob("*.json")]
        halted_docs = [d for d in docs if any(x["gate"] == "reports_dir_writable" and not x["passed"]
                                              for x in d["risk_decisions"])]
        assert halted_docs and all(d["outcome"] == "rejected" for d in halted_docs)
        err = run.stderr()
        assert "HALT: reports_dir_writable" in err and "halt lifted: reports_dir_writable" in err
        assert "not written" not in err
        record_figures(
            f"reports_{fault}", injected=1, survived=int(code == 0), built=check.built, accounted=check.accounted,
            partial_dumps=len(check.partial_dumps), shadow_builder_bytes=after - before,
            dump_errors=check.dump_errors, halted_rejections=len(halted_docs), lost=0,
        )


@pytest.mark.devnet
async def test_stopping_while_the_reports_fs_is_full_logs_every_dump_given_up(devnet: Devnet, tmp_path: Path) -> None:
    with _small_fs(tmp_path / "fs", "4m") as mount:
        env = run_env(devnet.env, mount / "reports", AETHER_STATE_FILE=str(tmp_path / "state" / "risk-state.json"))
        before = devnet.record_size()
        run = await start_run(env, duration=None, log_dir=tmp_path / "log")
        try:
            run_dir = (await run.wait_for_file("run.json")).parent
            await _until("3 dumps", lambda: _dump_count(run_dir) >= 3)
            _fill(mount)
            m = await _until_metrics(run, "a backlog of 5 bundles", lambda m: metric(
                m, "aether_risk_halted", gate="reports_dir_writable") == 1 and _built(m) >= _written(m) + 5)
            run.proc.send_signal(signal.SIGTERM)
            code = await run.wait()
        finally:
            await run.aclose()
        after = devnet.record_size()
        assert code == 0, run.stderr()[-3000:]
        err = run.stderr()
        [line] = [ln for ln in err.splitlines() if "bundle dumps not written" in ln]
        lost = int(line.split("stopping with ", 1)[1].split()[0])
        check = inspect_run(run_dir)
        # Nothing partial, and every bundle the last scrape saw built is on disk or named as lost.
        assert check.partial_dumps == () and check.tmp_leftovers == ()
        assert check.dumps + lost >= _built(m)
        assert lost >= _built(m) - _written(m)
        assert after == before
        record_figures(
            "reports_full_at_stop", injected=1, survived=int(code == 0), built=check.dumps + lost,
            accounted=check.dumps + lost, partial_dumps=len(check.partial_dumps), shadow_builder_bytes=after - before,
            lost_and_logged=lost,
        )


# --------------------------------------------------------------------------- SIGTERM mid-write


@pytest.mark.devnet
async def test_sigterm_mid_write_leaves_only_complete_dumps_one_per_built_bundle(
    devnet: Devnet, tmp_path: Path
) -> None:
    delays = (0.0, 0.6, 1.5)  # after the first dump appears: different moments of a busy pipeline
    totals = {"built": 0, "accounted": 0, "partial": 0, "survived": 0, "bytes": 0, "drained": 0}
    for i, delay in enumerate(delays):
        env = run_env(devnet.env, tmp_path / f"r{i}", AETHER_STATE_FILE=str(tmp_path / f"state{i}.json"))
        before = devnet.record_size()
        run = await start_run(env, duration=None, log_dir=tmp_path / f"log{i}")
        try:
            run_dir = (await run.wait_for_file("run.json")).parent
            await _until("a first dump", lambda: _dump_count(run_dir) >= 1)
            await trio.sleep(delay)  # picks the moment of the fault; nothing waits on it
            at_signal = _dump_count(run_dir)
            run.proc.send_signal(signal.SIGTERM)
            code = await run.wait()
        finally:
            await run.aclose()
        after = devnet.record_size()
        assert code == 0, run.stderr()[-3000:]
        check = inspect_run(run_dir)
        assert check.tmp_leftovers == (), check.tmp_leftovers
        assert_run_ok(check, record_before=before, record_after=after)
        assert check.summary is not None and check.summary["exit_code"] == 0
        totals["built"] += check.built
        totals["accounted"] += check.accounted
        totals["partial"] += len(check.partial_dumps)
        totals["survived"] += int(code == 0)
        totals["bytes"] += after - before
        totals["drained"] += check.dumps - at_signal
    assert totals["built"] >= 10
    record_figures(
        "sigterm_mid_write", injected=len(delays), survived=totals["survived"], built=totals["built"],
        accounted=totals["accounted"], partial_dumps=totals["partial"], shadow_builder_bytes=totals["bytes"],
        dumped_after_signal=totals["drained"],
    )


@pytest.mark.devnet
@pytest.mark.parametrize("signals", [(signal.SIGHUP,), (signal.SIGHUP, signal.SIGTERM), (signal.SIGTERM, signal.SIGINT)],
                         ids=["sighup", "sighup_then_sigterm", "sigterm_then_sigint"])
async def test_sighup_and_repeated_signals_drain_and_exit_0_with_a_summary(
    devnet: Devnet, tmp_path: Path, signals: tuple[signal.Signals, ...]
) -> None:
    """SIGHUP is a stop like SIGTERM (a closed terminal must not kill a run mid-dump); a second
    signal cuts the drain short, and still every built bundle is dumped or accounted for."""
    env = run_env(devnet.env, tmp_path / "r", AETHER_STATE_FILE=str(tmp_path / "state.json"))
    before = devnet.record_size()
    run = await start_run(env, duration=None, log_dir=tmp_path / "log")
    try:
        run_dir = (await run.wait_for_file("run.json")).parent
        await _until("a first dump", lambda: _dump_count(run_dir) >= 1)
        for sig in signals:
            run.proc.send_signal(sig)
        code = await run.wait()
    finally:
        await run.aclose()
    after = devnet.record_size()
    err = run.stderr()
    assert code == 0, err[-3000:]
    # the kernel delivers two pending signals lowest number first, so either may be "the first"
    assert "Traceback" not in err and ": stopping sources and draining" in err
    assert ("second signal" in err) == (len(signals) > 1)
    check = inspect_run(run_dir)
    assert check.tmp_leftovers == (), check.tmp_leftovers
    assert_run_ok(check, record_before=before, record_after=after)
    assert check.summary is not None and check.summary["exit_code"] == 0 and check.summary["final"] is True
    assert (run_dir / "tasks.json").exists()
    record_figures(f"stop by {'+'.join(s.name for s in signals)} (devnet, mid-run)", exit_code=code,
                   built=check.built, accounted=check.accounted, partial_dumps=len(check.partial_dumps),
                   shadow_builder_bytes=after - before)


# --------------------------------------------------------------------------- kill -9, restart, the UTC day


@pytest.mark.devnet
async def test_kill9_and_restart_keep_the_daily_loss_halt_pnl_and_reverts(devnet: Devnet, tmp_path: Path) -> None:
    state = tmp_path / "state" / "risk-state.json"
    loss = -(LIMIT + 12345)
    seeded = _seed_state(state, pnl_wei=loss, reverts=2)
    assert seeded["halts"]["daily_pnl"] == str(loss) and len(seeded["revert_times"]) == 2
    before = devnet.record_size()
    partial = killed_dumps = 0

    runs = []
    for i in range(2):
        env = run_env(devnet.env, tmp_path / f"r{i}", AETHER_STATE_FILE=str(state))
        run = await start_run(env, duration=None, log_dir=tmp_path / f"log{i}")
        runs.append(run)
        try:
            m = await _until_metrics(run, "rejections for daily_pnl after the first head", _halted_for_pnl)
            assert metric(m, "aether_risk_state", state="halted") == 1
            assert metric(m, "aether_risk_halted", gate="daily_pnl") == 1
            assert metric(m, "aether_executor_bundles_shadow_blocked_total") == 0  # nothing passed
            doc = json.loads(state.read_text())
            assert doc["daily_pnl_wei"] == str(loss) and doc["halts"]["daily_pnl"] == str(loss)
            assert len(doc["revert_times"]) == 2
            if i == 0:
                run.proc.kill()  # SIGKILL: no drain, no final summary
                code = await run.wait()
                assert code == -signal.SIGKILL
                check = inspect_run(run.run_dir())
                # No summary yet (the first periodic one is at 15 s): only the dumps can be checked.
                # A hard kill may leave a hidden .tmp, never a partial *.json.
                assert check.partial_dumps == () and check.dumps >= 0
                killed_dumps = check.dumps
            else:
                run.proc.send_signal(signal.SIGTERM)
                code = await run.wait()
                assert code == 0, run.stderr()[-3000:]
                check = inspect_run(run.run_dir())
                assert_run_ok(check, record_before=before, record_after=devnet.record_size())
                assert check.shadow_blocked == 0 and check.summary is not None
                assert check.summary["risk_rejected"]["daily_pnl"] >= 1
        finally:
            await run.aclose()
        partial += len(check.partial_dumps)
    built, accounted = check.built, check.accounted  # the restarted run's (the killed one has no summary)
    # The killed run's state survived the kill as written: the file still parses and holds the loss.
    final = json.loads(state.read_text())
    assert final["daily_pnl_wei"] == str(loss) and "daily_pnl" in final["halts"]
    record_figures(
        "kill9_restart", injected=1, survived=1, built=built, accounted=accounted, partial_dumps=partial,
        shadow_builder_bytes=devnet.record_size() - before, pnl_restored_wei=final["daily_pnl_wei"],
        killed_run_dumps=killed_dumps,
    )


@pytest.mark.devnet
@pytest.mark.parametrize(("day_offset", "halted"), [(-1, False), (+1, True)])
async def test_restart_across_the_utc_day(devnet: Devnet, tmp_path: Path, day_offset: int, halted: bool) -> None:
    """Yesterday's loss HALT is released by the new UTC day; a file from "tomorrow" (clock went back) keeps it."""
    state = tmp_path / "risk-state.json"
    loss = -(LIMIT + 1)
    seeded = _seed_state(state, pnl_wei=loss, day_offset=day_offset)
    env = run_env(devnet.env, tmp_path / "r", AETHER_STATE_FILE=str(state))
    run = await start_run(env, duration=None, log_dir=tmp_path / "log")
    try:
        m = await _until_metrics(run, "a head and a risk decision", lambda m: metric(
            m, "aether_risk_halted", gate="eth_balance") == 0 and risk_rejected(m)
            + metric(m, "aether_executor_bundles_shadow_blocked_total") >= 3)
        assert metric(m, "aether_risk_halted", gate="daily_pnl") == int(halted)
        assert (risk_rejected(m, reason="daily_pnl") > 0) is halted
        run.proc.send_signal(signal.SIGTERM)
        code = await run.wait()
    finally:
        await run.aclose()
    assert code == 0
    doc = json.loads(state.read_text())
    if halted:
        assert (doc["utc_day"], doc["daily_pnl_wei"]) == (seeded["utc_day"], str(loss))
    else:
        assert doc["utc_day"] == dt.datetime.now(dt.UTC).date().isoformat() and doc["daily_pnl_wei"] == "0"
        assert "daily_pnl" not in doc["halts"]


@pytest.mark.devnet
@pytest.mark.parametrize("content", [b"", b"{", b'{"version": 1, "utc_day": "2026-', b"[]", b'{"version": 99}'])
async def test_corrupt_state_file_exits_2_naming_it_and_leaves_it_alone(
    devnet: Devnet, tmp_path: Path, content: bytes
) -> None:
    state = tmp_path / "risk-state.json"
    state.write_bytes(content)
    env = run_env(devnet.env, tmp_path / "r", AETHER_STATE_FILE=str(state))
    res = await trio.run_process(
        [*AETHER, "run", "--duration", "5"],
        env=env, capture_stdout=True, capture_stderr=True, check=False,
    )
    err = res.stderr.decode()
    assert res.returncode == 2, err
    assert str(state) in err and "risk state file" in err
    assert err.count("\n") == 1  # one line
    assert state.read_bytes() == content
    assert not list((tmp_path / "r").glob("*/bundles/*.json"))


# --------------------------------------------------------------------------- in process


async def test_a_reports_dir_halt_survives_a_risk_actor_restart() -> None:
    """The sink asks for the halt once; a risk panic and rebuild must not forget it (it did)."""
    from factories import make_bundle, make_head  # tests/ is on sys.path (rootdir conftest)

    m = Metrics()
    halts: set[str] = set()  # what supervisors._tree shares between rebuilds

    def build() -> tuple[RiskActor, trio.MemorySendChannel[Any]]:
        engine = RiskEngine(RiskLimits(), metrics=m)
        engine.on_head(make_head(100), ETHER)
        _, inbox = trio.open_memory_channel[Any](1)
        feedback_tx, feedback_rx = trio.open_memory_channel[Any](4)
        out, _ = trio.open_memory_channel[Any](1)
        return RiskActor(engine=engine, metrics=m, inbox=inbox, feedback=feedback_rx, out=out, halts=halts), feedback_tx

    first, feedback = build()
    async with trio.open_nursery() as nursery:
        await nursery.start(first.run)
        feedback.send_nowait(HaltRequest("reports_dir_writable", True))
        await trio.testing.wait_all_tasks_blocked()
        assert m.value("aether_risk_halted", gate="reports_dir_writable") == 1
        assert m.value("aether_risk_state", state="halted") == 1
        nursery.cancel_scope.cancel()
    rebuilt, feedback = build()  # as after a panic: fresh engine (ACTIVE after its head), fresh actor
    v = rebuilt.evaluate(make_bundle())
    assert not v.passed and ("reports_dir_writable", False) in [(d.gate, d.passed) for d in v.decisions]
    async with trio.open_nursery() as nursery:
        await nursery.start(rebuilt.run)
        feedback.send_nowait(HaltRequest("reports_dir_writable", False))
        await trio.testing.wait_all_tasks_blocked()
        assert m.value("aether_risk_halted", gate="reports_dir_writable") == 0
        assert m.value("aether_risk_state", state="active") == 1
        nursery.cancel_scope.cancel()
    assert rebuilt.evaluate(make_bundle()).passed
