"""The validator's batch (simulation + the victim sender's nonce) against node answers of every shape.

The happy paths and the nonce rejections on real state are in ``test_strategy_devnet.py``
(anvil); here an in-memory node (httpx.MockTransport) answers what a real one rarely does.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from factories import make_bundle

from aether.chain import open_rpc
from aether.strategy import Rejection, Validator

CANDIDATE = make_bundle().candidate  # its victim has nonce 7


def _node(answer: Any) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        calls = orjson.loads(request.content)
        assert [c["method"] for c in calls] == ["eth_simulateV1", "eth_getTransactionCount"]
        # Both at the candidate's head: the nonce is read at the state that is simulated.
        assert calls[0]["params"][1] == calls[1]["params"][1] == hex(CANDIDATE.head_number)
        assert calls[1]["params"][0] == CANDIDATE.victim.sender  # type: ignore[union-attr]
        body = answer(calls)
        return httpx.Response(200, content=orjson.dumps(body))

    return open_rpc("http://node.test", transport=httpx.MockTransport(handler))


def _ok(result: Any, call: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": call["id"], "result": result}


def _err(call: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": call["id"], "error": {"code": -32000, "message": "header not found"}}


@pytest.mark.parametrize(
    ("answer", "reason", "detail"),
    [
        (lambda c: [_ok([], c[0]), _ok("0x6", c[1])], "victim_nonce_ahead", "victim nonce 7, the sender's next is 6"),
        (lambda c: [_ok([], c[0]), _ok("0x9", c[1])], "victim_nonce_used", "victim nonce 7, the sender's next is 9"),
        (lambda c: [_ok([{"calls": []}], c[0]), _ok("0x7", c[1])], "validation_failed", "0 call results"),
        (lambda c: [_ok("junk", c[0]), _ok("0x7", c[1])], "validation_failed", "bad simulate answer"),
        (lambda c: [_ok([], c[0]), _ok("not hex", c[1])], "validation_failed", "bad eth_getTransactionCount answer"),
        (lambda c: [_ok([], c[0]), _ok(None, c[1])], "validation_failed", "bad eth_getTransactionCount answer"),
        (lambda c: [_ok([], c[0]), _err(c[1])], "validation_failed", "header not found"),
        (lambda c: [_err(c[0]), _ok("0x7", c[1])], "validation_failed", "eth_simulateV1"),
        (lambda c: {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "batch refused"}},
         "validation_failed", "batch refused"),
        (lambda c: [_ok("0x7", c[1])], "validation_failed", "no reply for eth_simulateV1"),
    ],
)
async def test_every_odd_answer_is_a_named_rejection(answer: Any, reason: str, detail: str) -> None:
    async with _node(answer) as rpc:
        r = await Validator(rpc, searcher="0x" + "aa" * 20).validate(CANDIDATE)
    assert isinstance(r, Rejection) and r.reason == reason and detail in r.detail, r
