"""The pool book against bad node data: counted, never stored, never raised."""

from __future__ import annotations

import httpx
import orjson

from aether.chain import RpcClient
from aether.config import ChainConfig, DexConfig
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
