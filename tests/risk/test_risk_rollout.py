"""Rollout correctness of the gates: the gas gate judges the market, and each source has its own gates.

Bundles here are built by the real :class:`~aether.bundle.BundleBuilder` (the
tip-share arithmetic is the product's, not the test's), and limits come from
:meth:`Settings.from_env` with the runbook's Stage B variables, so a test fails
if either the fee math or the configuration drifts from what an operator runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
from eth_abi import encode
from eth_account import Account

from aether.bundle import BundleBuilder, NonceTracker
from aether.config import ETHER, GWEI, RiskLimits, Settings
from aether.messages import BLOCK_ARB_GATES, GATES, RISK_ERROR, Bundle, Call, Candidate, Head, Hop, PendingTx
from aether.metrics import RISK_HALT_REASONS, Metrics
from aether.risk import RiskEngine, RiskStore
from factories import Wall

SIGNER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # anvil dev key #1
VICTIM_KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"  # anvil dev key #2
WETH = "0x" + "ee" * 20
TKN = "0x" + "dd" * 20
ROUTER_A, ROUTER_B = "0x" + "01" * 20, "0x" + "02" * 20
SWAP = bytes.fromhex("38ed1739")

#: The runbook's Stage B variables, parsed the way `aether run` parses them.
STAGE_B = Settings.from_env({"AETHER_MEMPOOL_MIN_PROFIT_WEI": "5e16"}).risk


def head(number: int = 100, base_fee: int = 30 * GWEI) -> Head:
    # gas_used = half the limit: the next base fee equals this one (EIP-1559 target).
    return Head(number=number, hash="0x" + "11" * 32, parent_hash="0x" + "22" * 32, timestamp=1_700_000_000,
                base_fee=base_fee, gas_used=15_000_000, gas_limit=30_000_000)


def victim(nonce: int = 7) -> PendingTx:
    acct = Account.from_key(VICTIM_KEY)
    signed = acct.sign_transaction({"type": 2, "chainId": 31337, "nonce": nonce, "to": acct.address, "value": 1,
                                    "data": b"", "gas": 21000, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9})
    return PendingTx(hash=bytes(signed.hash), raw=bytes(signed.raw_transaction), type=2, chain_id=31337, nonce=nonce,
                     sender=acct.address.lower(), to=acct.address.lower(), value=1, input=b"", gas=21000)


def build(gross: int, *, h: Head | None = None, with_victim: bool = True, pair: str = "0x" + "aa" * 20,
          nonce: int = 7, tip_bps: int = 8000) -> Bundle:
    """A signed two-hop bundle with ``gross`` wei of gross profit and 230k gas, at the default tip share."""
    h = h or head()
    signer = Account.from_key(SIGNER_KEY)
    calls = tuple(Call(r, SWAP + encode(["uint256", "uint256", "address[]", "address", "uint256"],
                                        [10**18, 0, [WETH, TKN], signer.address, 2**32])) for r in (ROUTER_A, ROUTER_B))
    route = (Hop("uniswap", ROUTER_A, pair, WETH, TKN, 10**18, 2000 * 10**18),
             Hop("sushiswap", ROUTER_B, "0x" + "bb" * 20, TKN, WETH, 2000 * 10**18, 10**18 + gross))
    v = victim(nonce) if with_victim else None
    cand = Candidate(source="mempool_backrun" if v else "block_arb", target_block=h.number + 1, head_number=h.number,
                     victim=v, route=route, amount_in=10**18, amount_out=10**18 + gross,
                     expected_gross_profit_wei=gross, gas_estimate=230_000, seen_at=0.0, found_at=0.0, calls=calls,
                     validated=True, simulated_gas=(120_000, 110_000))
    nonces = NonceTracker()
    nonces.reset(5)
    return BundleBuilder(signer, 31337, tip_share_bps=tip_bps, nonces=nonces).build(cand, h, now_ns=1_778_865_600 * 10**9)


def engine(limits: RiskLimits = STAGE_B, *, next_base_fee: int | None = None) -> tuple[RiskEngine, Metrics]:
    m = Metrics()
    e = RiskEngine(limits, metrics=m, wall_clock=Wall(), clock=lambda: 0.0)
    e.on_head(head(), ETHER, next_base_fee_wei=next_base_fee)
    return e, m


def test_stage_b_settings_are_what_the_runbook_says() -> None:
    assert STAGE_B.min_profit_wei == 5 * 10**16
    assert STAGE_B.block_arb_min_profit_wei == 10**15
    assert Settings.from_env({}).tip_share_bps == 8000
    assert STAGE_B.max_gas_price_wei == 300 * GWEI


@pytest.mark.parametrize("gross", [3 * 10**17, 11 * 10**17, 39 * 10**17])
def test_deep_pool_backrun_passes_every_gate_at_stage_b(gross: int) -> None:
    """0.3 to 3.9 ETH gross at the default 80% tip share: every gate passes, the gas gate on the base fee."""
    b = build(gross)
    assert b.tip_share_bps in (7999, 8000)
    # Our own bid alone is above 300 gwei: judging base + priority would refuse every one of these.
    assert b.gas_price_wei > STAGE_B.max_gas_price_wei
    assert b.expected_net_profit_wei >= STAGE_B.min_profit_wei
    e, m = engine()
    v = e.evaluate(b)
    assert v.passed and v.reason is None, v.decisions
    assert [d.gate for d in v.decisions] == list(GATES) and all(d.passed for d in v.decisions)
    assert all(type(d.gate) is str for d in v.decisions)  # plain str: JSON object keys in summaries and reports
    gas = v.decisions[0]
    assert (gas.gate, gas.value) == ("gas_price", str(b.base_fee_wei)) and b.base_fee_wei == 30 * GWEI
    assert e.commit(v)
    assert sum(m.value("aether_mempool_risk_rejected_total", reason=r) for r in (*GATES, RISK_ERROR)) == 0


@pytest.mark.parametrize(("delta", "halted"), [(-1, False), (0, False), (1, True)])
def test_base_fee_above_the_limit_halts_deep_bundles_one_unit_either_side(delta: int, halted: bool) -> None:
    limit = STAGE_B.max_gas_price_wei
    e, m = engine(next_base_fee=limit + delta)
    assert (e.state.status == "halted") is halted
    assert m.value("aether_risk_halted", gate="gas_price") == (1 if halted else 0)
    assert m.value("aether_risk_state", state="halted") == (1 if halted else 0)
    # The bundle for that block carries the same base fee (its head is the one risk saw).
    b = build(39 * 10**17, h=head(base_fee=limit + delta))
    assert b.base_fee_wei == limit + delta
    v = e.evaluate(b)
    assert v.passed is not halted
    assert v.decisions[0].gate == "gas_price" and v.decisions[0].value == str(limit + delta)
    if halted:
        assert v.reason == "gas_price"
        assert m.value("aether_mempool_risk_rejected_total", reason="gas_price") == 1
        assert e.state.halt_values == (("gas_price", str(limit + 1)),)


def test_gas_halt_lifts_when_the_market_calms() -> None:
    limit = STAGE_B.max_gas_price_wei
    e, m = engine(next_base_fee=limit + 1)
    assert e.evaluate(build(10**18)).reason == "gas_price"
    e.on_head(head(101), ETHER, next_base_fee_wei=limit)
    assert e.state.status == "active" and m.value("aether_risk_halted", gate="gas_price") == 0
    assert e.evaluate(build(10**18, h=head(101))).passed


def test_stage_b_minimum_does_not_throttle_the_block_driven_path() -> None:
    # A small block arb (nets ~3e15 at 30 gwei): below the mempool's Stage B 5e16, above its own 1e15.
    arb = build(5 * 10**16, with_victim=False)
    assert 10**15 <= arb.expected_net_profit_wei < STAGE_B.min_profit_wei
    e, m = engine()
    v = e.evaluate(arb)
    assert v.passed, v.decisions
    assert [d.gate for d in v.decisions] == list(BLOCK_ARB_GATES)
    assert all(type(d.gate) is str for d in v.decisions)
    assert e.commit(v)
    # The same mempool bundle is refused by the mempool's own floor, counted on the seed's counter only.
    mv = e.evaluate(build(5 * 10**16))
    assert mv.reason == "min_profit"
    assert m.value("aether_mempool_risk_rejected_total", reason="min_profit") == 1
    assert m.value("aether_block_arb_risk_rejected_total", reason="block_arb_min_profit") == 0


@pytest.mark.parametrize(("delta", "passed"), [(-1, False), (0, True), (1, True)])
def test_block_arb_floor_is_its_own_variable_one_unit_either_side(delta: int, passed: bool) -> None:
    arb = build(5 * 10**16, with_victim=False)
    floor = arb.expected_net_profit_wei - delta
    limits = Settings.from_env({"AETHER_MEMPOOL_MIN_PROFIT_WEI": "5e16",
                                "AETHER_BLOCK_ARB_MIN_PROFIT_WEI": str(floor)}).risk
    e, m = engine(limits)
    v = e.evaluate(arb)
    assert v.passed is passed
    assert v.decisions[4].gate == "block_arb_min_profit" and v.decisions[4].value == str(arb.expected_net_profit_wei)
    assert m.value("aether_block_arb_risk_rejected_total", reason="block_arb_min_profit") == (0 if passed else 1)
    assert m.value("aether_mempool_risk_rejected_total", reason="min_profit") == 0


def test_block_arb_dedup_stops_chasing_the_same_gap_in_one_block() -> None:
    e, m = engine()
    first = e.evaluate(build(10**17, with_victim=False))
    assert first.passed and e.commit(first)
    again = e.evaluate(build(10**17, with_victim=False))
    assert again.reason == "block_arb_dedup" and again.decisions[-1].value == "1"
    # The twin that slipped in before the first was committed is still caught at commit.
    assert e.commit(first) is False
    # Another gap (first pair differs) in the same block is a different opportunity.
    assert e.evaluate(build(10**17, with_victim=False, pair="0x" + "ab" * 20)).passed
    assert m.value("aether_block_arb_risk_rejected_total", reason="block_arb_dedup") == 1
    assert m.value("aether_mempool_risk_rejected_total", reason="dedup") == 0


def test_in_flight_budgets_do_not_leak_between_sources() -> None:
    limits = attrs.evolve(STAGE_B, max_inflight=2)
    e, _ = engine(limits)
    # Three block arbs committed for block 101 do not fill the mempool's budget of two.
    for i in range(3):
        v = e.evaluate(build(10**17, with_victim=False, pair=f"0x{i + 1:040x}"))
        assert v.passed and e.commit(v)
    for nonce in (7, 8):
        v = e.evaluate(build(10**18, nonce=nonce))
        assert v.passed and e.commit(v), v.decisions
    full = e.evaluate(build(10**18, nonce=9))
    assert (full.reason, full.decisions[7].value) == ("max_in_flight", "2")
    # ... and a full mempool budget does not stop a block arb.
    assert e.evaluate(build(10**17, with_victim=False, pair="0x" + "cd" * 20)).passed


def test_a_source_without_gates_fails_closed() -> None:
    e, m = engine()
    b = build(10**18)
    b = attrs.evolve(b, source="sandwich", candidate=attrs.evolve(b.candidate, source="sandwich"))  # type: ignore[arg-type]
    v = e.evaluate(b)
    assert not v.passed and v.reason == RISK_ERROR and v.decisions[0].value == "unknown source 'sandwich'"
    assert m.value("aether_mempool_risk_rejected_total", reason=RISK_ERROR) == 1


def _relabel(b: Bundle, source: str, *, candidate_too: bool = True) -> Bundle:
    cand = attrs.evolve(b.candidate, source=source) if candidate_too else b.candidate
    return attrs.evolve(b, source=source, candidate=cand)  # type: ignore[arg-type]


@pytest.mark.parametrize(("bundle", "needle"), [
    # A small backrun relabelled block_arb would dodge the Stage B minimum and the victim gates.
    (lambda: _relabel(build(5 * 10**16), "block_arb"), "block_arb bundle with a victim"),
    (lambda: _relabel(build(5 * 10**16, with_victim=False), "mempool_backrun"), "mempool_backrun bundle without"),
    (lambda: _relabel(build(5 * 10**16), "block_arb", candidate_too=False), "but candidate says"),
])
def test_a_bundle_whose_label_contradicts_its_content_fails_closed(bundle: Any, needle: str) -> None:
    e, m = engine()
    v = e.evaluate(bundle())
    assert not v.passed and v.reason == RISK_ERROR and needle in v.decisions[0].value
    assert [d.gate for d in v.decisions] == [RISK_ERROR]


def test_every_block_arb_series_exists_at_start() -> None:
    m = Metrics()
    for reason in (*BLOCK_ARB_GATES, RISK_ERROR):
        assert m.registry.get_sample_value("aether_block_arb_risk_rejected_total", {"reason": reason}) == 0.0
    # The seed's counter carries only the mempool gates' reasons.
    assert m.registry.get_sample_value("aether_mempool_risk_rejected_total", {"reason": "block_arb_dedup"}) is None


def halts(m: Metrics) -> dict[str, float]:
    return {g: m.value("aether_risk_halts_total", gate=g) for g in RISK_HALT_REASONS if
            m.value("aether_risk_halts_total", gate=g)}


def test_halt_episodes_are_counted_once_each_and_not_the_start_up_wait() -> None:
    m = Metrics()
    e = RiskEngine(STAGE_B, metrics=m, wall_clock=Wall(), clock=lambda: 0.0)
    assert e.state.status == "halted" and halts(m) == {}  # waiting for the first head is no breach
    limit = STAGE_B.max_gas_price_wei
    e.on_head(head(100), ETHER, next_base_fee_wei=limit)
    assert halts(m) == {}
    e.on_head(head(101), ETHER, next_base_fee_wei=limit + 1)
    e.on_head(head(102), ETHER, next_base_fee_wei=limit + 2)  # the same episode
    assert halts(m) == {"gas_price": 1}
    e.on_head(head(103), ETHER, next_base_fee_wei=limit)
    e.on_head(head(104), ETHER, next_base_fee_wei=limit + 1)  # a second episode
    assert halts(m) == {"gas_price": 2}
    e.on_outcome("mempool_backrun", True, False, -STAGE_B.daily_loss_limit_wei - 1)
    assert halts(m) == {"gas_price": 2, "daily_pnl": 1}


@pytest.mark.parametrize("balance", [None, STAGE_B.min_balance_wei - 1])
def test_a_first_head_that_keeps_the_balance_latch_is_a_halt(balance: int | None) -> None:
    m = Metrics()
    e = RiskEngine(STAGE_B, metrics=m, wall_clock=Wall(), clock=lambda: 0.0)
    e.on_head(head(100), balance)
    assert e.state.halt_reasons == ("eth_balance",)
    assert halts(m) == {"eth_balance": 1}


def test_a_halt_restored_from_the_state_file_counts_for_this_run(tmp_path: Path) -> None:
    store = RiskStore(tmp_path / "risk-state.json")
    first = RiskEngine(STAGE_B, store=store, metrics=Metrics(), wall_clock=Wall(), clock=lambda: 0.0)
    first.on_head(head(100), STAGE_B.min_balance_wei - 1, next_base_fee_wei=STAGE_B.max_gas_price_wei + 1)
    first.on_outcome("mempool_backrun", True, False, -STAGE_B.daily_loss_limit_wei - 1)
    m = Metrics()
    again = RiskEngine(STAGE_B, store=store, metrics=m, wall_clock=Wall(), clock=lambda: 0.0)
    assert again.state.halt_reasons == ("gas_price", "eth_balance", "daily_pnl")
    # The day's loss is real now; the gas and balance latches wait for a head to decide them.
    assert halts(m) == {"daily_pnl": 1}
    again.on_head(head(101), ETHER, next_base_fee_wei=STAGE_B.max_gas_price_wei + 1)
    assert halts(m) == {"daily_pnl": 1, "gas_price": 1}


async def test_an_external_halt_is_counted_once_per_episode() -> None:
    from typing import Any

    import trio
    import trio.testing

    from aether.actors import HaltRequest, RiskActor

    m = Metrics()
    engine_ = RiskEngine(STAGE_B, metrics=m, wall_clock=Wall())
    engine_.on_head(head(100), ETHER)
    _, inbox = trio.open_memory_channel[Any](1)
    feedback_tx, feedback_rx = trio.open_memory_channel[Any](8)
    out, _ = trio.open_memory_channel[Any](1)
    actor = RiskActor(engine=engine_, metrics=m, inbox=inbox, feedback=feedback_rx, out=out)
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        for active in (True, True, False, True):  # asked twice, lifted, asked again: two episodes
            feedback_tx.send_nowait(HaltRequest("reports_dir_writable", active))
            await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert halts(m) == {"reports_dir_writable": 2}


@pytest.mark.parametrize(("with_victim", "gate"), [(True, "dedup"), (False, "block_arb_dedup")])
def test_a_twin_delayed_past_its_target_block_is_refused(with_victim: bool, gate: str) -> None:
    """Records of a block are forgotten once a head reaches it; a late twin must not pass then."""
    e, m = engine()
    first = e.evaluate(build(10**18, with_victim=with_victim))
    assert first.passed and e.commit(first)
    e.on_head(head(101), ETHER)  # block 101 is here: its dedup records are pruned
    assert e.state.dedup_keys == frozenset()
    twin = e.evaluate(build(10**18, with_victim=with_victim))  # built from head 100, target 101, arriving late
    assert twin.reason == gate and twin.decisions[-1].value == "stale"
    # One block ahead is fresh again.
    assert e.evaluate(build(10**18, with_victim=with_victim, h=head(101))).passed


def test_every_rejection_counts_once_on_its_sources_series_also_the_second_time() -> None:
    """The engine keeps each (source, reason) series once looked up: repeated rejections of
    both sources and several reasons still count one each, on the right counter only."""
    e, m = engine()
    for _ in range(3):
        assert e.evaluate(build(5 * 10**16)).reason == "min_profit"  # mempool, below Stage B
        assert e.evaluate(build(1, with_victim=False)).reason == "block_arb_min_profit"
    first = e.evaluate(build(10**17, with_victim=False))
    assert first.passed and e.commit(first)
    for _ in range(2):
        assert e.evaluate(build(10**17, with_victim=False)).reason == "block_arb_dedup"
    assert m.value("aether_mempool_risk_rejected_total", reason="min_profit") == 3
    assert m.value("aether_block_arb_risk_rejected_total", reason="block_arb_min_profit") == 3
    assert m.value("aether_block_arb_risk_rejected_total", reason="block_arb_dedup") == 2
    assert m.value("aether_mempool_risk_rejected_total", reason="dedup") == 0
    assert m.value("aether_block_arb_risk_rejected_total", reason="min_profit") == 0
