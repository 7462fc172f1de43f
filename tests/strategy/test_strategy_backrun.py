"""Backrun and block-arb sizing against an in-memory node (httpx.MockTransport): named rejections."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from aether.chain import RpcClient
from aether.config import ChainConfig, DexConfig, TokenConfig
from aether.dex import (
    UINT112_MAX,
    PoolBook,
    encode_swap,
    get_amount_out,
    pair_address,
    round_trip_profit,
)
from aether.messages import Candidate, Head, PendingTx
from aether.metrics import CANDIDATE_REJECT_REASONS
from aether.strategy import DEADLINE_S, BackrunStrategy, BlockArbStrategy, Rejection

ETHER = 10**18
WETH = "0x" + "0e" * 20
TKN = "0x" + "7a" * 20
OTHER = "0x" + "5b" * 20
UNKNOWN = "0x" + "99" * 20
SEARCHER = "0x" + "5e" * 20
ICH = "0x" + "11" * 32
UNI = DexConfig("uniswap", "0x" + "a1" * 20, "0x" + "f1" * 20, ICH)
SUSHI = DexConfig("sushiswap", "0x" + "a2" * 20, "0x" + "f2" * 20, ICH)
CHAIN = ChainConfig(WETH, (UNI, SUSHI), (TokenConfig(TKN, "TKN"), TokenConfig(OTHER, "OTH")))
HEAD = Head(number=100, hash="0x" + "00" * 32, parent_hash="0x" + "00" * 32, timestamp=1_000_000, base_fee=10**9,
            gas_used=0, gas_limit=30_000_000, seen_at=5.0)


class FakeNode:
    """Answers getReserves from a dict: pair -> (r0, r1); unknown addresses have no code."""

    def __init__(self) -> None:
        self.reserves: dict[str, tuple[int, int]] = {}
        self.fail = False
        self.requests = 0

    def set_pool(self, dex: DexConfig, a: str, ra: int, b: str, rb: int) -> str:
        pair = pair_address(dex.factory, dex.init_code_hash, a, b)
        self.reserves[pair] = (ra, rb) if int(a, 16) < int(b, 16) else (rb, ra)
        return pair

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.fail:
            return httpx.Response(502)
        body = orjson.loads(request.content)

        def one(req: dict[str, Any]) -> dict[str, Any]:
            to = req["params"][0]["to"]
            r = self.reserves.get(to)
            result = "0x" if r is None else "0x" + (r[0].to_bytes(32, "big") + r[1].to_bytes(32, "big") + bytes(32)).hex()
            return {"jsonrpc": "2.0", "id": req["id"], "result": result}

        out = [one(r) for r in body] if isinstance(body, list) else one(body)
        return httpx.Response(200, content=orjson.dumps(out))


@pytest.fixture
def node() -> Iterator[FakeNode]:
    n = FakeNode()
    n.set_pool(UNI, WETH, 100 * ETHER, TKN, 200_000 * ETHER)
    n.set_pool(SUSHI, WETH, 100 * ETHER, TKN, 200_000 * ETHER)
    yield n


def _tx(data: bytes, *, to: str = UNI.router, value: int = 0) -> PendingTx:
    return PendingTx(hash=b"\x01" * 32, raw=b"", type=2, chain_id=1, nonce=0, sender="0x" + "cc" * 20, to=to,
                     value=value, input=data, gas=300_000, seen_at=4.5, first_seen_ns=123)


def _swap(fn: str, a_in: int, a_out: int, path: list[str], deadline: int = HEAD.timestamp + 60) -> tuple[bytes, int]:
    return encode_swap(fn, amount_in=a_in, amount_out=a_out, path=path, to="0x" + "cc" * 20, deadline=deadline)


async def _on(node: FakeNode, tx: PendingTx, inventory: int = 50 * ETHER) -> tuple[Candidate | Rejection, PoolBook]:
    rpc = RpcClient("http://node.test", transport=httpx.MockTransport(node.handler))
    try:
        book = PoolBook(rpc, CHAIN)
        s = BackrunStrategy(CHAIN, book, searcher=SEARCHER)
        return await s.on_victim(tx, HEAD, inventory_wei=inventory), book
    finally:
        await rpc.aclose()


async def test_a_victim_buy_yields_the_exact_optimal_candidate_and_leaves_the_book_alone(
    node: FakeNode,
) -> None:
    data, value = _swap("swapExactETHForTokens", 5 * ETHER, 1, [WETH, TKN])
    result, book = await _on(node, _tx(data, value=value))
    assert isinstance(result, Candidate), result
    # the victim bought TKN on uniswap: buy it back cheap on sushiswap, sell it dear on uniswap
    assert [h.dex for h in result.route] == ["sushiswap", "uniswap"]
    uni_pair = pair_address(UNI.factory, ICH, WETH, TKN)
    assert book.reserves(uni_pair) == node.reserves[uni_pair]  # the victim went into a copy only
    out = get_amount_out(5 * ETHER, 100 * ETHER, 200_000 * ETHER)
    assert out is not None
    r = round_trip_profit(result.amount_in, 100 * ETHER, 200_000 * ETHER, 200_000 * ETHER - out, 105 * ETHER)
    assert r == (result.route[0].amount_out, result.amount_out, result.expected_gross_profit_wei)
    assert result.expected_gross_profit_wei > 0 and result.gas_estimate > 0
    assert (result.seen_at, result.target_block, result.head_number) == (4.5, 101, 100)
    assert result.victim is not None and result.victim_hash_hex == "0x" + "01" * 32
    # the calls: exact amountOutMin, searcher as recipient, deadline = head + 120
    from aether.dex import decode_swap

    legs = [decode_swap(c.data) for c in result.calls]
    assert [c.to for c in result.calls] == [SUSHI.router, UNI.router]
    assert legs[0].path == (WETH, TKN) and legs[1].path == (TKN, WETH)
    assert (legs[0].amount_in, legs[0].amount_out) == (result.amount_in, result.route[0].amount_out)
    assert (legs[1].amount_in, legs[1].amount_out) == (result.route[0].amount_out, result.amount_out)
    assert {leg.to for leg in legs} == {SEARCHER} and {leg.deadline for leg in legs} == {HEAD.timestamp + DEADLINE_S}


async def test_inventory_caps_the_input(node: FakeNode) -> None:
    data, value = _swap("swapExactETHForTokens", 5 * ETHER, 1, [WETH, TKN])
    result, _ = await _on(node, _tx(data, value=value), inventory=10**15)
    assert isinstance(result, Candidate) and result.amount_in <= 10**15
    result, _ = await _on(node, _tx(data, value=value), inventory=0)
    assert result == Rejection("no_inventory")


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: _tx(b"\xde\xad\xbe\xef" + bytes(64)), "not_swap"),
        (lambda: _tx(b""), "not_swap"),
        (lambda: _tx(_swap("swapExactETHForTokens", ETHER, 1, [WETH, TKN])[0][:-7], value=ETHER), "bad_calldata"),
        (lambda: _tx(bytes.fromhex("b6f9de95") + _swap("swapExactETHForTokens", ETHER, 1, [WETH, TKN])[0][4:]),
         "fee_on_transfer"),
        (lambda: _tx(_swap("swapExactETHForTokens", ETHER, 1, [WETH, TKN])[0], to="0x" + "ee" * 20, value=ETHER),
         "not_router"),
        (lambda: _tx(_swap("swapExactETHForTokens", ETHER, 1, [WETH, UNKNOWN])[0], value=ETHER), "unknown_token"),
        (lambda: _tx(_swap("swapExactTokensForTokens", ETHER, 1, [TKN, OTHER])[0]), "no_weth_leg"),
        (lambda: _tx(_swap("swapExactETHForTokens", ETHER, 1, [WETH, TKN], HEAD.timestamp)[0], value=ETHER),
         "victim_expired"),
        # its own slippage limit would make it revert
        (lambda: _tx(_swap("swapExactETHForTokens", ETHER, 10**30, [WETH, TKN])[0], value=ETHER), "victim_reverts"),
        (lambda: _tx(_swap("swapETHForExactTokens", ETHER, 10_000 * ETHER, [WETH, TKN])[0], value=ETHER),
         "victim_reverts"),
        (lambda: _tx(_swap("swapExactTokensForETH", ETHER, 1, [TKN, TKN])[0]), "victim_reverts"),
        (lambda: _tx(_swap("swapExactETHForTokens", ETHER, 1, [TKN, WETH])[0], value=ETHER), "victim_reverts"),
        # huge values near 2**256 and past uint112
        (lambda: _tx(_swap("swapExactTokensForETH", 2**256 - 1, 1, [TKN, WETH])[0]), "overflow"),
        (lambda: _tx(_swap("swapExactTokensForETH", UINT112_MAX, 1, [TKN, WETH])[0]), "overflow"),
        (lambda: _tx(_swap("swapTokensForExactETH", 2**256 - 1, 2**256 - 1, [TKN, WETH])[0]), "overflow"),
        # a tiny victim leaves no gap worth the two fees
        (lambda: _tx(_swap("swapExactETHForTokens", 10**12, 1, [WETH, TKN])[0], value=10**12), "unprofitable"),
    ],
)
async def test_bad_input_is_a_named_rejection(node: FakeNode, make: Any, reason: str) -> None:
    result, _ = await _on(node, make())
    assert isinstance(result, Rejection), result
    assert result.reason == reason, result
    assert result.reason in CANDIDATE_REJECT_REASONS


async def test_missing_pools_zero_reserves_and_a_dead_node(node: FakeNode) -> None:
    data, value = _swap("swapExactETHForTokens", 5 * ETHER, 1, [WETH, OTHER])
    result, book = await _on(node, _tx(data, value=value))
    assert result == Rejection("unknown_pair", result.detail if isinstance(result, Rejection) else "")
    assert book.is_absent(pair_address(UNI.factory, ICH, WETH, OTHER))
    node.set_pool(UNI, WETH, 10 * ETHER, OTHER, 10 * ETHER)
    result, _ = await _on(node, _tx(data, value=value))
    assert isinstance(result, Rejection) and result.reason == "no_counter_pool"
    node.set_pool(SUSHI, WETH, 0, OTHER, 0)
    result, _ = await _on(node, _tx(data, value=value))
    assert isinstance(result, Rejection) and result.reason == "no_counter_pool"  # empty counter pool is no pool
    node.set_pool(UNI, WETH, 0, OTHER, 0)
    result, _ = await _on(node, _tx(data, value=value))
    assert isinstance(result, Rejection) and result.reason == "zero_reserves"
    node.fail = True
    result, _ = await _on(node, _tx(data, value=value))
    assert isinstance(result, Rejection) and result.reason == "reserves_unavailable"


async def test_statistics_count_every_outcome(node: FakeNode) -> None:
    rpc = RpcClient("http://node.test", transport=httpx.MockTransport(node.handler))
    try:
        s = BackrunStrategy(CHAIN, PoolBook(rpc, CHAIN), searcher=SEARCHER)
        good, value = _swap("swapExactETHForTokens", 5 * ETHER, 1, [WETH, TKN])
        await s.on_victim(_tx(good, value=value), HEAD, inventory_wei=ETHER)
        await s.on_victim(_tx(b"junk"), HEAD, inventory_wei=ETHER)
        await s.on_victim(_tx(b"junk"), HEAD, inventory_wei=ETHER)
    finally:
        await rpc.aclose()
    st = s.statistics()
    assert (st.seen, st.candidates, st.rejected) == (3, 1, (("not_swap", 2),))


async def test_block_arb_finds_a_standing_gap_and_respects_its_minimum(node: FakeNode) -> None:
    node.set_pool(SUSHI, WETH, 100 * ETHER, TKN, 190_000 * ETHER)  # TKN dearer on sushiswap
    rpc = RpcClient("http://node.test", transport=httpx.MockTransport(node.handler))
    try:
        book = PoolBook(rpc, CHAIN)
        arb = BlockArbStrategy(CHAIN, book, searcher=SEARCHER)
        found = await arb.on_head(HEAD, inventory_wei=50 * ETHER)
        assert len(found) == 1 and isinstance(found[0], Candidate)
        c = found[0]
        assert c.source == "block_arb" and c.victim is None and c.seen_at == HEAD.seen_at
        assert [h.dex for h in c.route] == ["uniswap", "sushiswap"]
        high = BlockArbStrategy(CHAIN, book, searcher=SEARCHER, min_gross_wei=c.expected_gross_profit_wei)
        assert await high.on_head(HEAD, inventory_wei=50 * ETHER) == []
        assert await arb.on_head(HEAD, inventory_wei=0) == [Rejection("no_inventory")]
        # the refresh in between (one request) keeps it current: prices equal again -> nothing
        node.set_pool(SUSHI, WETH, 100 * ETHER, TKN, 200_000 * ETHER)
        n = node.requests
        await book.refresh(HEAD.number + 1)
        assert node.requests == n + 1
        assert await arb.on_head(HEAD, inventory_wei=50 * ETHER) == []
    finally:
        await rpc.aclose()
