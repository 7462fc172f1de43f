"""The pool book against bad node data: counted, never stored, never raised."""

from __future__ import annotations

import httpx
import orjson

from aether.chain import RpcClient
from aether.config import ChainConfig, DexConfig, TokenConfig
from aether.dex import UINT112_MAX, PoolBook, pair_address

WETH = "0x" + "0e" * 20
DEX = DexConfig("uniswap", "0x" + "a1" * 20, "0x" + "f1" * 20, "0x" + "11" * 32)
CHAIN = ChainConfig(WETH, (DEX,))


def _word(v: int) -> str:
    return v.to_bytes(32, "big").hex()


async def test_bad_reserves_are_counted_not_stored_and_reverts_are_absent() -> None:
    toks = ["0x" + f"{i:02x}" * 20 for i in range(1, 6)]
    pairs = [pair_address(DEX.factory, DEX.init_code_hash, WETH, t) for t in toks]
    answers = {
        pairs[0]: {"result": "0x" + _word(10) + _word(20) + _word(0)},  # fine
        pairs[1]: {"result": "0x" + _word(UINT112_MAX + 1) + _word(1) + _word(0)},  # past uint112
        pairs[2]: {"result": "0x1234"},  # too short
        pairs[3]: {"error": {"code": 3, "message": "execution reverted"}},  # reverts: absent
        pairs[4]: {"error": {"code": -32000, "message": "header not found"}},  # node trouble: retry later
    }
    seen_tags: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        out = []
        for req in body:
            seen_tags.append(req["params"][1])
            out.append({"jsonrpc": "2.0", "id": req["id"], **answers[req["params"][0]["to"]]})
        return httpx.Response(200, content=orjson.dumps(out))

    rpc = RpcClient("http://node.test", transport=httpx.MockTransport(handler))
    try:
        book = PoolBook(rpc, CHAIN)
        assert [book.pair_for("uniswap", t, WETH) for t in toks] == pairs  # either token order
        await book.ensure(pairs)
        assert book.reserves(pairs[0]) == (10, 20)
        assert [book.reserves(p) for p in pairs[1:]] == [None] * 4
        assert book.is_absent(pairs[3]) and not book.is_absent(pairs[4])
        st = book.statistics()
        assert (st.tracked, st.absent, st.fetch_errors, st.block) == (1, 1, 3, None)
        assert set(seen_tags) == {"latest"}
        await book.refresh(77)
        await book.ensure(pairs)  # after a refresh, new pairs are read at the book's block
        assert seen_tags[-1] == hex(77) and book.block == 77
        assert book.tracked()[pairs[0]].dex == "uniswap"
    finally:
        await rpc.aclose()


async def test_without_a_token_list_the_book_keeps_the_most_recently_used_pairs_only() -> None:
    toks = ["0x" + f"{i:02x}" * 20 for i in range(0x20, 0x47)]  # 39 tokens, none of them WETH
    batches: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        batches.append(len(body))
        out = []
        for req in body:
            if req["method"] != "eth_call":
                out.append({"jsonrpc": "2.0", "id": req["id"], "result": "0x1"})
            elif int(req["params"][0]["to"], 16) % 5 == 0:  # about one pair in five was never created
                out.append({"jsonrpc": "2.0", "id": req["id"], "result": "0x"})
            else:
                out.append({"jsonrpc": "2.0", "id": req["id"], "result": "0x" + _word(10) + _word(20) + _word(0)})
        return httpx.Response(200, content=orjson.dumps(out))

    rpc = RpcClient("http://node.test", transport=httpx.MockTransport(handler))
    try:
        listed = PoolBook(rpc, ChainConfig(WETH, (DEX,), tokens=(TokenConfig(toks[0], "T", 18),)))
        assert listed.max_pairs is None  # a token list bounds the universe already
        book = PoolBook(rpc, CHAIN, max_pairs=4)
        pairs = [book.pair_for("uniswap", WETH, t) for t in toks]
        live = [p for p in pairs if int(p, 16) % 5 != 0]
        for t in toks[:-1]:  # as the strategies do: pair_for, then ensure
            await book.ensure([book.pair_for("uniswap", t, WETH)])
            await book.ensure([book.pair_for("uniswap", toks[pairs.index(live[0])], WETH)])  # in constant use
        assert len(book.tracked()) == 4 and live[0] in book.tracked()
        # The other three are the most recently used ones.
        assert set(book.tracked()) == {live[0], *[p for p in pairs[:-1] if p in live][-3:]}
        assert book.statistics().evicted == len([p for p in pairs[:-1] if p in live]) - 4
        # An evicted pair is fetched again when it is needed again (callers get addresses from pair_for,
        # which registers the metadata again); the refresh batch stays at the cap.
        assert live[1] not in book.tracked()
        await book.ensure([book.pair_for("uniswap", toks[pairs.index(live[1])], WETH)])
        assert live[1] in book.tracked() and len(book.tracked()) == 4
        await book.refresh(9, [("eth_blockNumber", [])])
        assert batches[-1] == 4 + 1
        # Absent pairs are remembered, but not without bound.
        assert book.statistics().absent <= 4 * 4
    finally:
        await rpc.aclose()
