"""Victim simulation against an in-memory node: every way it must fail closed, and the screening.

The node (httpx.MockTransport) answers ``eth_simulateV1`` with whatever the test
scripts, ``eth_getTransactionCount``, ``token0()``/``token1()`` and ``getReserves``.
Each failure mode yields a named rejection and no post-state, never an exception;
logs from contracts that only mimic ``Sync`` are ignored and counted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
import trio
import trio.testing

from aether.actors import IntakeActor, StrategyActor
from aether.chain import Frame, RpcClient
from aether.dex import PoolBook, pair_address
from aether.dex._logs import SYNC_TOPIC
from aether.strategy._poststate import MAX_SYNC_EMITTERS
from aether.messages import PendingTx, Tick
from aether.metrics import CANDIDATE_REJECT_REASONS, Metrics
from aether.strategy import PostState, Prefilter, Rejection, ScreenSkip, SimBudget, SimFailure, V2Reserves, VictimSimulator
from test_codec import _signed_obj
from test_strategy_backrun import CHAIN, ETHER, HEAD, SEARCHER, SUSHI, TKN, UNI, WETH

PAIR = pair_address(UNI.factory, UNI.init_code_hash, WETH, TKN)
SUSHI_PAIR = pair_address(SUSHI.factory, SUSHI.init_code_hash, WETH, TKN)
MIMIC = "0x" + "66" * 20
T0, T1 = sorted([WETH, TKN])
SENDER = "0x" + "cc" * 20


def _word(v: int) -> str:
    return v.to_bytes(32, "big").hex()


def sync_log(address: str, r0: int, r1: int, *, topics: list[str] | None = None, data: str | None = None) -> dict[str, Any]:
    return {"address": address, "topics": topics if topics is not None else [SYNC_TOPIC],
            "data": data if data is not None else "0x" + _word(r0) + _word(r1)}


class SimNode:
    """A scripted node. ``sim`` is the ``eth_simulateV1`` answer (result or {"error": ...})."""

    def __init__(self) -> None:
        self.sim: Any = None
        self.sim_error: dict[str, Any] | None = None
        self.nonce = 0
        self.delay = 0.0
        # the real pairs, and a mimic that even reports the real tokens
        self.tokens: dict[str, Any] = {PAIR: (T0, T1), SUSHI_PAIR: (T0, T1), MIMIC: (T0, T1)}
        self.reserves = {PAIR: (100 * ETHER, 200_000 * ETHER), SUSHI_PAIR: (100 * ETHER, 190_000 * ETHER)}
        self.calls: list[str] = []
        self.status = 200
        self.latest = HEAD.number

    def ok_sim(self, logs: list[Any], status: str = "0x1") -> None:
        self.sim = [{"number": hex(HEAD.number + 1), "calls": [{"status": status, "logs": logs, "gasUsed": "0x1",
                                                                 "returnData": "0x"}]}]

    async def handler(self, request: httpx.Request) -> httpx.Response:
        if self.delay:
            await trio.sleep(self.delay)
        if self.status != 200:
            return httpx.Response(self.status)
        body = orjson.loads(request.content)
        return httpx.Response(200, content=orjson.dumps([self.one(r) for r in body] if isinstance(body, list)
                                                        else self.one(body)))

    def one(self, req: dict[str, Any]) -> dict[str, Any]:
        m, p, rid = req["method"], req["params"], req["id"]
        self.calls.append(m)
        if m == "eth_simulateV1":
            if self.sim_error is not None:
                return {"jsonrpc": "2.0", "id": rid, "error": self.sim_error}
            return {"jsonrpc": "2.0", "id": rid, "result": self.sim}
        if m == "eth_getTransactionCount":
            return {"jsonrpc": "2.0", "id": rid, "result": hex(self.nonce)}
        if m == "eth_blockNumber":
            return {"jsonrpc": "2.0", "id": rid, "result": hex(self.latest)}
        if m == "eth_call":
            to, data = p[0]["to"], p[0]["data"]
            if data in ("0x0dfe1681", "0xd21220a7"):
                toks = self.tokens.get(to)
                if toks is None:
                    return {"jsonrpc": "2.0", "id": rid, "error": {"code": 3, "message": "execution reverted"}}
                t = toks[0] if data == "0x0dfe1681" else toks[1]
                return {"jsonrpc": "2.0", "id": rid, "result": t if not t.startswith("0x") or len(t) != 42
                        else "0x" + "00" * 12 + t[2:]}
            r = self.reserves.get(to)
            res = "0x" if r is None else "0x" + _word(r[0]) + _word(r[1]) + _word(0)
            return {"jsonrpc": "2.0", "id": rid, "result": res}
        return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": "no such method"}}


def _tx(to: str | None = "0x" + "ab" * 20, nonce: int = 0, h: int = 1) -> PendingTx:
    return PendingTx(hash=h.to_bytes(32, "big"), raw=b"", type=2, chain_id=1, nonce=nonce, sender=SENDER, to=to,
                     value=0, input=b"\x12\x34\x56\x78", gas=300_000, max_fee_per_gas=10**10,
                     max_priority_fee_per_gas=10**9, seen_at=4.5, first_seen_ns=1)


async def _simulate(node: SimNode, tx: PendingTx | None = None, *, timeout_s: float = 1.0
                    ) -> tuple[PostState | Rejection, VictimSimulator, list[int]]:
    rpc = RpcClient("http://node.test", transport=httpx.MockTransport(node.handler), timeout=60)
    try:
        book = PoolBook(rpc, CHAIN)
        untrusted: list[int] = []
        sim = VictimSimulator(rpc, book, timeout_s=timeout_s, on_untrusted=untrusted.append)
        return await sim.simulate(tx or _tx(), HEAD), sim, untrusted
    finally:
        await rpc.aclose()


# --------------------------------------------------------------------------- the good path


async def test_last_sync_of_each_tracked_pair_is_its_post_state_in_first_moved_order() -> None:
    node = SimNode()
    node.ok_sim([sync_log(SUSHI_PAIR, 1, 2), sync_log(PAIR.upper().replace("0X", "0x"), 3, 4),  # aliased spelling
                 {"address": WETH, "topics": ["0x" + "ab" * 32], "data": "0x"},  # some other event
                 sync_log(SUSHI_PAIR, 5, 6)])  # duplicated: the later one wins
    post, sim, untrusted = await _simulate(node)
    assert isinstance(post, PostState), post
    assert post.pools == (V2Reserves(SUSHI_PAIR, 5, 6), V2Reserves(PAIR, 3, 4))
    assert post.block == HEAD.number and untrusted == []
    # tracked pairs derive by CREATE2 from the tokens the pair reports: asked once, then cached
    assert node.calls.count("eth_call") == 4
    node.calls.clear()
    post2, _, _ = await _simulate(node)
    assert post2 == post


async def test_simulation_runs_on_the_head_one_second_later_with_the_victims_own_fields() -> None:
    params = VictimSimulator.simulate_params(_tx(nonce=7), HEAD)
    block = params[0]["blockStateCalls"][0]
    assert params[1] == hex(HEAD.number)
    assert block["blockOverrides"] == {"baseFeePerGas": "0x0", "time": hex(HEAD.timestamp + 1)}
    (call,) = block["calls"]
    assert (call["from"], call["nonce"], call["gas"], call["maxFeePerGas"]) == (SENDER, "0x7", hex(300_000), hex(10**10))
    assert params[0]["validation"] is False


# --------------------------------------------------------------------------- fail closed


def _malformed_answers() -> list[tuple[str, Callable[[SimNode], None]]]:
    return [
        ("not a list", lambda n: setattr(n, "sim", {"calls": []})),
        ("two blocks", lambda n: setattr(n, "sim", [{"calls": []}, {"calls": []}])),
        ("no calls", lambda n: setattr(n, "sim", [{}])),
        ("two calls", lambda n: setattr(n, "sim", [{"calls": [{"status": "0x1", "logs": []}] * 2}])),
        ("no status", lambda n: setattr(n, "sim", [{"calls": [{"logs": []}]}])),
        ("status not hex", lambda n: setattr(n, "sim", [{"calls": [{"status": "yes", "logs": []}]}])),
        ("logs not a list", lambda n: n.ok_sim("nope")),  # type: ignore[arg-type]
        ("log not an object", lambda n: n.ok_sim([7])),
        ("short address", lambda n: n.ok_sim([sync_log("0x1234", 1, 2)])),
        ("topic not a word", lambda n: n.ok_sim([sync_log(PAIR, 1, 2, topics=["0x1c41"])])),
        ("five topics", lambda n: n.ok_sim([sync_log(PAIR, 1, 2, topics=[SYNC_TOPIC] * 5)])),
        ("odd data", lambda n: n.ok_sim([sync_log(PAIR, 1, 2, data="0x123")])),
        ("tracked pair, extra topic", lambda n: n.ok_sim([sync_log(PAIR, 1, 2, topics=[SYNC_TOPIC, "0x" + "00" * 32])])),
        ("tracked pair, one word", lambda n: n.ok_sim([sync_log(PAIR, 1, 2, data="0x" + _word(1))])),
        ("tracked pair, past uint112", lambda n: n.ok_sim([sync_log(PAIR, 2**112, 2)])),
        ("too many logs", lambda n: n.ok_sim([sync_log(PAIR, 1, 2)] * 5000)),
    ]


@pytest.mark.parametrize(("case", "script"), _malformed_answers(), ids=[c for c, _ in _malformed_answers()])
async def test_a_malformed_answer_fails_the_victim_closed(case: str, script: Callable[[SimNode], None]) -> None:
    node = SimNode()
    script(node)
    result, sim, _ = await _simulate(node)
    assert isinstance(result, Rejection) and result.reason == SimFailure.SIM_MALFORMED, (case, result)
    assert sim.statistics().failed == (("sim_malformed", 1),)


async def test_node_errors_and_timeouts_fail_the_victim_closed(autojump_clock: trio.testing.MockClock) -> None:
    node = SimNode()
    node.sim_error = {"code": -32601, "message": "the method eth_simulateV1 does not exist"}
    result, _, _ = await _simulate(node)
    assert isinstance(result, Rejection) and result.reason == "sim_error"

    node = SimNode()
    node.status = 502
    result, _, _ = await _simulate(node)
    assert isinstance(result, Rejection) and result.reason == "sim_error"

    node = SimNode()
    node.ok_sim([sync_log(PAIR, 1, 2)])
    node.delay = 30.0  # a node that hangs: the simulator's own deadline cuts it at 1 s
    t0 = trio.current_time()
    result, _, _ = await _simulate(node, timeout_s=1.0)
    assert isinstance(result, Rejection) and result.reason == "sim_timeout"
    assert trio.current_time() - t0 == pytest.approx(1.0)


async def test_a_reverting_victim_and_a_nonce_gap_give_no_post_state() -> None:
    node = SimNode()
    node.ok_sim([], status="0x0")
    result, _, _ = await _simulate(node)
    assert isinstance(result, Rejection) and result.reason == "victim_reverts"
    node = SimNode()
    node.ok_sim([sync_log(PAIR, 1, 2)])
    node.nonce = 3
    result, _, _ = await _simulate(node, _tx(nonce=4))
    assert isinstance(result, Rejection) and result.reason == "victim_nonce_ahead"
    result, _, _ = await _simulate(node, _tx(nonce=2))
    assert isinstance(result, Rejection) and result.reason == "victim_nonce_used"


@pytest.mark.parametrize("tokens", [(T0, T1), None, ("0x" + "ff" * 32, T1), (T1, T1)],
                         ids=["reports real tokens", "reverts", "garbage word", "identical tokens"])
async def test_sync_from_a_mimic_is_ignored_and_counted(tokens: tuple[str, str] | None) -> None:
    node = SimNode()
    if tokens is None:
        del node.tokens[MIMIC]
    else:
        node.tokens[MIMIC] = tokens
    node.ok_sim([sync_log(MIMIC, 1, 2), sync_log(PAIR, 3, 4), sync_log(MIMIC, 5, 6, topics=[SYNC_TOPIC, "0x" + "00" * 32])])
    post, sim, untrusted = await _simulate(node)
    assert isinstance(post, PostState), post
    assert post.pools == (V2Reserves(PAIR, 3, 4),)  # the real one, untouched by the lies around it
    assert untrusted == [2] and sim.statistics().untrusted_logs == 2

    node.ok_sim([sync_log(MIMIC, 1, 2)])
    alone, _, untrusted = await _simulate(node)
    assert isinstance(alone, Rejection) and alone.reason == "no_pool_moved" and untrusted == [1]


async def test_a_node_that_has_moved_past_the_head_makes_the_victim_stale() -> None:
    node = SimNode()
    node.ok_sim([sync_log(PAIR, 1, 2)])
    node.latest = HEAD.number + 1  # our tick is late: a bundle for HEAD + 1 would target a mined block
    result, _, _ = await _simulate(node)
    assert isinstance(result, Rejection) and result.reason == "stale_head"


async def test_no_sync_at_all_is_no_pool_moved() -> None:
    node = SimNode()
    node.ok_sim([])
    result, _, _ = await _simulate(node)
    assert isinstance(result, Rejection) and result.reason == "no_pool_moved"


def test_every_simulation_failure_is_a_counted_candidate_reject_reason() -> None:
    assert set(SimFailure) <= set(CANDIDATE_REJECT_REASONS)
    m = Metrics()
    for r in SimFailure:
        assert m.value("aether_candidate_rejected_total", source="mempool_backrun", reason=r) == 0
    assert {s for s in ScreenSkip} == {"contract_creation", "plain_transfer", "no_pool_hint", "sim_budget"}
    assert "aether_mempool_screen_skipped_total" in m.exposition().decode()


# --------------------------------------------------------------------------- screening


def test_prefilter_decides_on_the_json_alone() -> None:
    pf = Prefilter(CHAIN, routers=["0x" + "AB" * 20])
    other = "0x" + "77" * 20
    assert pf.screen({"to": None, "input": "0x1234"}) == (False, ScreenSkip.CONTRACT_CREATION)
    assert pf.screen({"input": "0x1234"}) == (False, ScreenSkip.CONTRACT_CREATION)
    assert pf.screen({"to": other, "input": "0x"}) == (False, ScreenSkip.PLAIN_TRANSFER)
    assert pf.screen({"to": other}) == (False, ScreenSkip.PLAIN_TRANSFER)
    assert pf.screen({"to": UNI.router.upper().replace("0X", "0x"), "input": "0x12"}) == (True, "router")
    assert pf.screen({"to": "0x" + "ab" * 20, "input": "0x12"}) == (True, "router")
    assert pf.screen({"to": other, "input": "0x12345678"}) == (False, ScreenSkip.NO_POOL_HINT)
    # a tracked token anywhere in the calldata, in any case
    data = "0x12345678" + "00" * 12 + TKN[2:].upper()
    assert pf.screen({"to": other, "data": data}) == (True, "token")
    # only the first 8 KiB are scanned: a flood of huge calldata costs a bounded scan each
    from aether.strategy._screen import HINT_SCAN_CHARS

    far = "0x" + "00" * (HINT_SCAN_CHARS // 2) + TKN[2:]
    assert pf.screen({"to": other, "input": far}) == (False, ScreenSkip.NO_POOL_HINT)
    # a contract learned from a simulation (or a tracked pair called directly)
    pf.learn([other.upper().replace("0X", "0x"), None])
    assert pf.screen({"to": other, "input": "0x12345678"}) == (True, "learned")


def test_prefilter_learned_set_is_bounded_oldest_first() -> None:
    pf = Prefilter(CHAIN, learned_max=3)
    addrs = ["0x" + f"{i:040x}" for i in range(5)]
    pf.learn(addrs[:3])
    pf.learn([addrs[0]])  # used again: the newest
    pf.learn(addrs[3:])
    assert pf.learned == 3
    assert [pf.knows(a) for a in addrs] == [True, False, False, True, True]


def test_sim_budget_is_a_token_bucket() -> None:
    b = SimBudget(10, burst=2)
    assert [b.take(0.0) for _ in range(3)] == [True, True, False]
    assert b.take(0.05) is False  # half a token
    assert b.take(0.1) is True
    assert [b.take(100.0) for _ in range(3)] == [True, True, False]  # never more than the burst
    with pytest.raises(ValueError, match="rate_per_s must be > 0"):
        SimBudget(0)


def test_intake_with_a_prefilter_counts_every_skip_and_pass() -> None:
    m = Metrics()
    send, recv = trio.open_memory_channel[PendingTx](8)
    intake = IntakeActor(ws_url="ws://127.0.0.1:1", rpc=None, chain_id=1, routers=set(), metrics=m,  # type: ignore[arg-type]
                         out=send, prefilter=Prefilter(CHAIN))
    signed = _signed_obj()  # calls 0xabab..ab: not a router; its calldata names no tracked token
    plain = dict(signed, input="0x")
    creation = dict(signed, to=None)
    for obj in (signed, plain, creation):
        assert intake.screen(Frame(obj, 0.0, 0)) is None
    assert m.value("aether_mempool_screen_skipped_total", reason="no_pool_hint") == 1
    assert m.value("aether_mempool_screen_skipped_total", reason="plain_transfer") == 1
    assert m.value("aether_mempool_screen_skipped_total", reason="contract_creation") == 1
    pf = Prefilter(CHAIN)
    pf.learn([signed["to"]])
    intake = IntakeActor(ws_url="ws://127.0.0.1:1", rpc=None, chain_id=1, routers=set(), metrics=m,  # type: ignore[arg-type]
                         out=send, prefilter=pf)
    tx = intake.screen(Frame(signed, 0.0, 0))
    assert tx is not None and recv.receive_nowait() == tx
    assert m.value("aether_mempool_screen_passed_total", hint="learned") == 1


# --------------------------------------------------------------------------- the actor


async def _run_actor(node: SimNode, msgs: list[Any], **kw: Any) -> tuple[StrategyActor, Metrics, list[Any]]:
    rpc = RpcClient("http://node.test", transport=httpx.MockTransport(node.handler), timeout=60)
    m = Metrics()
    inbox_tx, inbox = trio.open_memory_channel[Any](len(msgs) + 1)
    out, out_rx = trio.open_memory_channel[Any](len(msgs) * 2 + 1)
    actor = StrategyActor(rpc=rpc, chain=CHAIN, searcher=SEARCHER, metrics=m, inbox=inbox, out=out,
                          block_arb=False, simulate_victims=True, **kw)
    for msg in msgs:
        inbox_tx.send_nowait(msg)
    inbox_tx.close()
    try:
        await actor.run()
    finally:
        await rpc.aclose()
    return actor, m, [out_rx.receive_nowait() for _ in range(out_rx.statistics().current_buffer_used)]


def _tick() -> Tick:
    return Tick(HEAD, HEAD.base_fee, 10 * ETHER, 50 * ETHER, 0)


async def test_actor_bounds_concurrency_and_budget_and_counts_failures(autojump_clock: trio.testing.MockClock) -> None:
    node = SimNode()
    node.ok_sim([sync_log(PAIR, 110 * ETHER, 181_840 * ETHER)])  # a victim bought TKN on uniswap
    node.delay = 0.01
    victims = [_tx(h=i + 1) for i in range(40)]
    actor, m, out = await _run_actor(node, [_tick(), *victims], sim_concurrency=4, sim_budget_per_s=1000)
    stats = actor.simulator.statistics() if actor.simulator else None
    assert stats is not None and stats.max_in_flight == 4  # never more than the bound; the inbox waits
    assert stats.simulated == 40 and len(out) == 40 and all(c.victim in victims for c in out)
    assert {c.route[0].pair for c in out} == {SUSHI_PAIR}  # buy where TKN is now cheap, sell on the moved pair

    node.delay = 0.0  # no time passes: the budget's burst is all there is
    actor, m, out = await _run_actor(node, [_tick(), *victims], sim_concurrency=4, sim_budget_per_s=30)
    stats = actor.simulator.statistics() if actor.simulator else None
    assert stats is not None and stats.simulated == 30 and len(out) == 30
    assert m.value("aether_mempool_screen_skipped_total", reason="sim_budget") == 10

    node.sim_error = {"code": -32000, "message": "boom"}
    actor, m, out = await _run_actor(node, [_tick(), _tx()])
    assert out == [] and m.value("aether_candidate_rejected_total", source="mempool_backrun", reason="sim_error") == 1


async def test_actor_rejects_a_post_state_of_a_head_that_is_gone(autojump_clock: trio.testing.MockClock) -> None:
    import attrs

    node = SimNode()
    node.ok_sim([sync_log(PAIR, 110 * ETHER, 181_840 * ETHER)])
    node.delay = 0.4  # the next head arrives while the victim is being simulated (two requests fit the 1 s deadline)
    nxt = attrs.evolve(_tick(), head=attrs.evolve(HEAD, number=HEAD.number + 1))
    actor, m, out = await _run_actor(node, [_tick(), _tx(), nxt])
    assert out == []
    assert m.value("aether_candidate_rejected_total", source="mempool_backrun", reason="stale_head") == 1


async def test_actor_rejects_a_post_state_of_a_reorged_head(autojump_clock: trio.testing.MockClock) -> None:
    import attrs

    node = SimNode()
    node.ok_sim([sync_log(PAIR, 110 * ETHER, 181_840 * ETHER)])
    node.delay = 0.4
    reorg = attrs.evolve(_tick(), head=attrs.evolve(HEAD, hash="0x" + "ee" * 32))  # same number, new hash
    actor, m, out = await _run_actor(node, [_tick(), _tx(), reorg])
    assert out == []
    assert m.value("aether_candidate_rejected_total", source="mempool_backrun", reason="stale_head") == 1


async def test_a_victim_with_thousands_of_sync_emitters_costs_no_lookups() -> None:
    """Found by review: 4,096 fake Sync emitters made one victim cost 8,192 eth_calls."""
    node = SimNode()
    node.ok_sim([sync_log("0x" + f"{i + 1:040x}", 1, 2) for i in range(MAX_SYNC_EMITTERS + 1)])
    result, _, _ = await _simulate(node)
    assert isinstance(result, Rejection) and result.reason == SimFailure.TOO_MANY_POOLS
    assert node.calls.count("eth_call") == 0


async def test_the_cap_itself_is_still_looked_up() -> None:
    node = SimNode()
    node.ok_sim([sync_log("0x" + f"{i + 1:040x}", 1, 2) for i in range(MAX_SYNC_EMITTERS)])
    result, _, _ = await _simulate(node)
    assert isinstance(result, Rejection) and result.reason == SimFailure.NO_POOL_MOVED  # all untrusted
    assert node.calls.count("eth_call") == 2 * MAX_SYNC_EMITTERS


class _SlowTrustNode(SimNode):
    async def handler(self, request: httpx.Request) -> httpx.Response:
        if b"eth_call" in request.content:
            await trio.sleep(30.0)  # slow on the token0/token1 batch only
        return await super().handler(request)


async def test_the_trust_lookup_runs_under_the_simulation_deadline(autojump_clock: trio.testing.MockClock) -> None:
    """Found by review: the look-up after the simulation held the slot for the RPC client's timeout."""
    node = _SlowTrustNode()
    node.ok_sim([sync_log("0x" + "77" * 20, 1, 2)])
    t0 = trio.current_time()
    result, _, _ = await _simulate(node, timeout_s=1.0)
    assert trio.current_time() - t0 <= 1.0 + 1e-6
    assert isinstance(result, Rejection) and result.reason == SimFailure.SIM_TIMEOUT


class _PlainBatch:
    """An rpc with a plain ``batch(calls)``: the simulator puts its own deadline around the call."""

    def __init__(self, rpc: RpcClient) -> None:
        self.rpc = rpc

    async def batch(self, calls: Any) -> list[Any]:
        return await self.rpc.batch(calls)


@pytest.mark.parametrize("scenario", ["tracked", "mimic", "hang", "slow_trust", "client_timeout_first"])
async def test_the_deadline_in_the_clients_scope_decides_as_the_simulators_own_scope(
    scenario: str, autojump_clock: trio.testing.MockClock
) -> None:
    """With an RpcClient the victim's deadline rides in the client's cancel scope (one scope,
    not two); with any other rpc the simulator's own scope is around the call. Both give the
    same results, statistics, node calls and timing, twice in a row (the second victim's
    trust from the cache), and a deadline of ours is never counted as the node's timeout."""
    outcomes = []
    for plain in (False, True):
        node = _SlowTrustNode() if scenario == "slow_trust" else SimNode()
        node.ok_sim([sync_log(MIMIC if scenario == "mimic" else PAIR, 1, 2),
                     sync_log("0x" + "77" * 20, 3, 4) if scenario == "slow_trust" else sync_log(SUSHI_PAIR, 5, 6)])
        if scenario in ("hang", "client_timeout_first"):
            node.delay = 30.0
        client_timeout = 0.5 if scenario == "client_timeout_first" else 60
        rpc = RpcClient("http://node.test", transport=httpx.MockTransport(node.handler), timeout=client_timeout)
        sim = VictimSimulator(_PlainBatch(rpc) if plain else rpc, PoolBook(rpc, CHAIN), timeout_s=1.0)
        assert sim._rpc_takes_deadline is (not plain)
        seen = []
        for h in (1, 2):
            t0 = trio.current_time()
            result = await sim.simulate(_tx(h=h), HEAD)
            seen.append((result, trio.current_time() - t0))
        outcomes.append((seen, sim.statistics(), rpc.statistics(), node.calls))
        await rpc.aclose()
    assert outcomes[0] == outcomes[1]
    (first, _), _ = outcomes[0][0]
    if scenario == "tracked":
        assert isinstance(first, PostState)
    elif scenario == "hang":
        assert first == Rejection(SimFailure.SIM_TIMEOUT.value, "no answer in 1.0 s")
        assert outcomes[0][2].timeouts == 0  # ours, not the node's
    elif scenario == "client_timeout_first":
        assert isinstance(first, Rejection) and "within 0.5s" in first.detail
        assert outcomes[0][2].timeouts == 2
