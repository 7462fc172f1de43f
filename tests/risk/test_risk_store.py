"""The risk state file: atomic 0600 writes, strict reads, and restarts that keep the limits.

A "restart" is a new engine on the same file with a *different* monotonic base
(a new process) and a wall clock that moved on, as after a crash and an OS
supervisor restart.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from aether._errors import ConfigError, RiskError
from aether.config import ETHER, RiskLimits
from aether.messages import RISK_ERROR
from aether.metrics import Metrics
from aether.risk import RiskEngine, RiskStore
from factories import T0, Wall, make_bundle, make_head

LIMITS = RiskLimits()


async def sleep_both(wall: Wall, seconds: float) -> None:
    """Let time pass on both clocks, as in real life."""
    await trio.sleep(seconds)
    wall.jump(seconds)


def restarted(path: Path, wall: Wall, *, offset: float = 5000.0, metrics: Metrics | None = None) -> RiskEngine:
    """A new engine on the same file, as a new process: another monotonic base."""
    clock: Callable[[], float] = lambda: trio.current_time() + offset  # noqa: E731
    return RiskEngine(LIMITS, store=RiskStore(path), metrics=metrics, clock=clock, wall_clock=wall)


# --------------------------------------------------------------------------- the file


async def test_save_is_atomic_0600_in_a_0700_dir_and_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "state" / "risk.json"
    store = RiskStore(path)
    assert store.load() is None
    store.save({"version": 1, "x": "1"})
    store.save({"version": 1, "x": "2"})
    assert store.load() == {"version": 1, "x": "2"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert os.listdir(path.parent) == ["risk.json"]  # no temporary left behind
    assert store.statistics().saves == 2


@pytest.mark.parametrize("content", [b'{"version": 1, "utc', b"\xff\xfe", b"[1, 2]", b""])
async def test_corrupt_file_refuses_to_start(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "risk.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="risk state file .*risk.json.*corrupt"):
        RiskStore(path).load()
    with pytest.raises(ConfigError, match="risk.json"):
        RiskEngine(LIMITS, store=RiskStore(path), wall_clock=Wall())


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("version", 2),
        ("daily_pnl_wei", 1.5),
        ("daily_pnl_wei", "-1e18"),
        ("utc_day", "yesterday"),
        ("halts", {"nonsense": "1"}),
        ("revert_times", ["soon"]),
        ("paused_until", "later"),
        ("inflight", {"abc": 1}),
        ("dedup", {"101": "0xab"}),
        # str.isdigit() is true for these, int() refuses them (a traceback, found by review)
        ("inflight", {"\u00b2": 1}),
        ("dedup", {"\u0661\u0662": ["0xab"]}),
        ("inflight", {"9" * 5000: 1}),  # past int()'s 4300-digit limit
        ("inflight", {" 12": 1}),
    ],
)
async def test_ill_typed_field_refuses_to_start(tmp_path: Path, field: str, bad: Any) -> None:
    path = tmp_path / "risk.json"
    e = RiskEngine(LIMITS, store=RiskStore(path), wall_clock=Wall())
    e.on_outcome("mempool_backrun", True, False, -1)
    doc = json.loads(path.read_text())
    doc[field] = bad
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=rf"risk state file .*risk.json.*corrupt.*{field.split('_')[0]}"):
        RiskEngine(LIMITS, store=RiskStore(path), wall_clock=Wall())


async def test_write_failure_raises_and_halts_until_a_save_succeeds(tmp_path: Path) -> None:
    d = tmp_path / "state"
    path = d / "risk.json"
    m = Metrics()
    e = RiskEngine(LIMITS, store=RiskStore(path), metrics=m, wall_clock=Wall())
    e.on_head(make_head(100), ETHER)
    assert e.state.status == "active"
    os.rename(d, tmp_path / "moved")
    d.write_bytes(b"")  # the directory is now a file: every write fails
    with pytest.raises(RiskError, match="cannot write risk state file"):
        e.on_outcome("mempool_backrun", True, False, -1)
    s = e.state
    assert s.status == "halted" and s.store_failed and s.daily_pnl_wei == -1
    assert m.value("aether_risk_halted", gate=RISK_ERROR) == 1
    assert m.value("aether_risk_state", state="halted") == 1
    v = e.evaluate(make_bundle())
    assert (v.passed, v.reason) == (False, RISK_ERROR)
    assert e.statistics().save_failures == 1
    d.unlink()
    e.on_head(make_head(101), ETHER)  # the next save works again
    assert e.state.status == "active" and m.value("aether_risk_halted", gate=RISK_ERROR) == 0
    assert json.loads(path.read_text())["daily_pnl_wei"] == "-1"


async def test_unchanged_state_is_not_rewritten(tmp_path: Path) -> None:
    store = RiskStore(tmp_path / "risk.json")
    e = RiskEngine(LIMITS, store=store, wall_clock=Wall())
    e.on_head(make_head(100), ETHER)
    e.on_head(make_head(100), ETHER)
    assert store.statistics().saves == 1
    e.on_head(make_head(101), ETHER)  # last_head moved
    assert store.statistics().saves == 2


# --------------------------------------------------------------------------- restarts


async def test_restart_restores_pnl_reverts_and_dedup(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    path = tmp_path / "risk.json"
    wall = Wall()
    e1 = RiskEngine(LIMITS, store=RiskStore(path), wall_clock=wall)
    e1.on_head(make_head(100), ETHER)
    for h in (b"\x11" * 32, b"\x12" * 32):
        v = e1.evaluate(make_bundle(victim_hash=h))
        assert v.passed and e1.commit(v)
    e1.on_outcome("mempool_backrun", True, True, -2 * 10**17)
    await sleep_both(wall, 100)
    e1.on_outcome("mempool_backrun", True, True, -10**17)
    doc = json.loads(path.read_text())
    assert doc["revert_times"] == [T0.timestamp(), T0.timestamp() + 100]
    assert doc["dedup"] == {"101": ["0x" + "11" * 32, "0x" + "12" * 32]} and doc["inflight"] == {"101": 2}
    del e1  # the process dies

    await sleep_both(wall, 50)
    e2 = restarted(path, wall)
    now2 = trio.current_time() + 5000
    s = e2.state
    assert s.daily_pnl_wei == -3 * 10**17 and s.utc_day == "2026-03-01"
    assert s.revert_times == (now2 - 150, now2 - 50)
    assert s.inflight == ((101, 2),) and len(s.dedup_keys) == 2
    assert s.halt_reasons == ("eth_balance",)  # balance unknown until the first head
    e2.on_head(make_head(100), ETHER)
    assert e2.evaluate(make_bundle(victim_hash=b"\x11" * 32, seen_at=trio.current_time() + 5000)).reason == "dedup"
    assert e2.evaluate(make_bundle(target_block=102, seen_at=trio.current_time() + 5000)).passed
    # The window survived: a third revert 150 s after the first pauses.
    e2.on_outcome("mempool_backrun", True, True, 0)
    assert e2.state.status == "paused" and e2.state.paused_until == now2 + LIMITS.pause_s


async def test_restart_drops_reverts_that_aged_out_meanwhile(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "risk.json"
    wall = Wall()
    e1 = RiskEngine(LIMITS, store=RiskStore(path), wall_clock=wall)
    e1.on_outcome("mempool_backrun", True, True, 0)
    e1.on_outcome("mempool_backrun", True, True, 0)
    await sleep_both(wall, 601)
    e2 = restarted(path, wall)
    assert e2.state.revert_times == ()
    e2.on_outcome("mempool_backrun", True, True, 0)
    assert e2.state.status != "paused"


async def test_restart_keeps_the_daily_loss_halt_until_the_day_rolls(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "risk.json"
    wall = Wall(dt.datetime(2026, 3, 1, 23, 59, 0, tzinfo=dt.UTC))
    e1 = RiskEngine(LIMITS, store=RiskStore(path), wall_clock=wall)
    e1.on_outcome("mempool_backrun", True, False, -LIMITS.daily_loss_limit_wei - 1)
    await sleep_both(wall, 30)
    m = Metrics()
    e2 = restarted(path, wall, metrics=m)
    e2.on_head(make_head(100), ETHER)
    assert e2.state.halt_reasons == ("daily_pnl",) and e2.evaluate(make_bundle()).reason == "daily_pnl"
    assert m.value("aether_risk_halted", gate="daily_pnl") == 1
    await sleep_both(wall, 30)  # 2026-03-02 00:00:00
    e3 = restarted(path, wall, offset=9000.0)
    e3.on_head(make_head(100), ETHER)
    s = e3.state
    assert (s.status, s.daily_pnl_wei, s.utc_day) == ("active", 0, "2026-03-02")


async def test_restart_keeps_balance_and_gas_latches(tmp_path: Path) -> None:
    path = tmp_path / "risk.json"
    e1 = RiskEngine(LIMITS, store=RiskStore(path), wall_clock=Wall())
    e1.on_head(make_head(100), LIMITS.min_balance_wei - 1, next_base_fee_wei=LIMITS.max_gas_price_wei + 1)
    e2 = restarted(path, Wall())
    assert e2.state.halt_values == (
        ("gas_price", str(LIMITS.max_gas_price_wei + 1)),
        ("eth_balance", str(LIMITS.min_balance_wei - 1)),
    )
    e2.on_head(make_head(101), LIMITS.min_balance_wei)
    assert e2.state.status == "active"


async def test_restart_keeps_the_pause_and_never_extends_it(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "risk.json"
    wall = Wall()
    e1 = RiskEngine(LIMITS, store=RiskStore(path), wall_clock=wall)
    for _ in range(3):
        e1.on_outcome("mempool_backrun", True, True, 0)
    await sleep_both(wall, 200)
    e2 = restarted(path, wall)
    now2 = trio.current_time() + 5000
    assert e2.state.paused_until == now2 + LIMITS.pause_s - 200
    e2.on_head(make_head(100), ETHER)
    assert e2.state.status == "paused"
    # The wall clock went back an hour before the next restart: the saved
    # pause-until now looks 4000 s away; it is capped at pause_s.
    wall.jump(-3600)
    e3 = restarted(path, wall, offset=7000.0)
    assert e3.state.paused_until == trio.current_time() + 7000 + LIMITS.pause_s
