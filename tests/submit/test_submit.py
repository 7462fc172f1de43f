"""Submitter: Flashbots signatures, shadow refusal, and fan-out that one bad builder cannot block."""

from __future__ import annotations

import base64
import functools
import json
import logging
from pathlib import Path

import httpx
import orjson
import pytest
import trio
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_hash.auto import keccak

from aether._errors import ShadowViolation
from aether.chain import RpcClient
from aether.config import BuilderEndpoint
from aether.devnet._builder import LocalBuilder
from aether.metrics import Metrics
from aether.submit import HEADER, Submitter, flashbots_signature, recover_flashbots_signer

from test_bundle import HEAD, SIGNER_KEY, builder, candidate, victim_tx

AUTH_KEY = "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6"  # anvil dev key #3
AUTH = Account.from_key(AUTH_KEY)


async def test_flashbots_signature_round_trip_and_scheme() -> None:
    body = b'{"jsonrpc":"2.0","id":1,"method":"eth_sendBundle","params":[]}'
    header = flashbots_signature(AUTH, body)
    address, _, sig = header.partition(":")
    assert address == AUTH.address and sig.startswith("0x") and len(sig) == 2 + 130
    assert recover_flashbots_signer(header, body) == AUTH.address
    # The scheme, spelled out independently: EIP-191 over the text "0x" + hex(keccak(body)).
    text = "0x" + keccak(body).hex()
    assert Account.recover_message(encode_defunct(text=text), signature=bytes.fromhex(sig[2:])) == AUTH.address
    # Negative: the variant without "0x" (or over raw hash bytes) does not verify.
    no_prefix = Account.recover_message(encode_defunct(text=keccak(body).hex()), signature=bytes.fromhex(sig[2:]))
    assert no_prefix != AUTH.address
    raw_bytes = Account.recover_message(encode_defunct(primitive=keccak(body)), signature=bytes.fromhex(sig[2:]))
    assert raw_bytes != AUTH.address
    # Tampered body, wrong claimed address, garbage.
    assert recover_flashbots_signer(header, body + b" ") is None
    other = Account.from_key(SIGNER_KEY).address
    assert recover_flashbots_signer(f"{other}:{sig}", body) is None
    assert recover_flashbots_signer("garbage", body) is None
    assert recover_flashbots_signer(None, body) is None


async def test_submitter_refuses_shadow() -> None:
    with pytest.raises(ShadowViolation):
        Submitter((), AUTH, shadow=True, metrics=Metrics(), timeout_s=1.0)


async def test_outcome_classification_with_mock_transport() -> None:
    answers = {
        "ok": httpx.Response(200, json={"jsonrpc": "2.0", "id": 1, "result": {"bundleHash": "0x00"}}),
        "rpcerr": httpx.Response(200, json={"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": "no"}}),
        "http": httpx.Response(503, text="busy"),
        "badjson": httpx.Response(200, content=b"<html>"),
        "shape": httpx.Response(200, json=[1, 2]),
    }
    bodies: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        assert recover_flashbots_signer(request.headers[HEADER], request.content) == AUTH.address
        name = request.url.host.split(".")[0]
        if name == "down":
            raise httpx.ConnectError("refused")
        return answers[name]

    names = [*answers, "down"]
    eps = tuple(BuilderEndpoint(n, f"https://{n}.example/secret-api-key-123") for n in names)
    m = Metrics(builders=names)
    s = Submitter(eps, AUTH, shadow=False, metrics=m, timeout_s=1.0, transport=httpx.MockTransport(handler))
    b = builder().build(candidate(victim=victim_tx()), HEAD, now_ns=0)
    out = await s.submit(b)
    await s.aclose()
    assert out == {"ok": "ok", "rpcerr": "rpc_error", "http": "http_error", "badjson": "bad_json",
                   "shape": "bad_json", "down": "unreachable"}
    assert len(set(bodies)) == 1  # the same signed bytes to everyone
    sent = orjson.loads(bodies[0])
    assert sent["method"] == "eth_sendBundle"
    assert sent["params"] == [{"txs": ["0x" + r.hex() for r in b.envelope], "blockNumber": hex(b.target_block)}]
    assert m.value("aether_executor_bundles_submitted_total", source="mempool_backrun") == 1
    assert m.value("aether_builder_requests_total", builder="down", outcome="unreachable") == 1
    assert b"secret-api-key" not in m.exposition()


async def test_never_sends_an_unvalidated_bundle() -> None:
    calls: list[object] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, json={"result": {}})

    import attrs

    b = builder().build(attrs.evolve(candidate(victim=None), validated=False), HEAD, now_ns=0)
    m = Metrics(builders=["a"])
    s = Submitter((BuilderEndpoint("a", "http://a.example"),), AUTH, shadow=False, metrics=m, timeout_s=1.0,
                  transport=httpx.MockTransport(handler))
    assert await s.submit(b) == {}
    await s.aclose()
    assert calls == [] and s.statistics().refused_unvalidated == 1
    assert m.value("aether_executor_bundles_submitted_total", source="block_arb") == 0


async def _silent(stream: trio.SocketStream) -> None:
    try:
        await stream.receive_some(65536)
        await trio.sleep_forever()
    except trio.BrokenResourceError:
        pass


async def _five_hundred(stream: trio.SocketStream) -> None:
    try:
        while await stream.receive_some(65536):
            await stream.send_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 5\r\n\r\noops!")
    except trio.BrokenResourceError:
        pass


async def _serve(nursery: trio.Nursery, handler) -> str:  # noqa: ANN001
    listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    return f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"


async def test_fan_out_one_slow_one_500_one_good(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    record = tmp_path / "good.jsonl"
    timeout = 0.4
    m = Metrics(builders=["slow", "broken", "good"])
    async with trio.open_nursery() as nursery:
        slow = await _serve(nursery, _silent)
        broken = await _serve(nursery, _five_hundred)
        local = LocalBuilder(RpcClient("http://127.0.0.1:9"), record_path=record)
        good = await nursery.start(local.serve)
        eps = (BuilderEndpoint("slow", slow + "/k/s3cr3t"), BuilderEndpoint("broken", broken),
               BuilderEndpoint("good", good))
        async with Submitter(eps, AUTH, shadow=False, metrics=m, timeout_s=timeout) as s:
            bundles = [builder(nonce=n).build(candidate(victim=victim_tx(), gross=10**16 + n), HEAD, now_ns=0)
                       for n in range(3)]
            for b in bundles:
                t0 = trio.current_time()
                out = await s.submit(b, deadline=t0 + 5)
                elapsed = trio.current_time() - t0
                assert out == {"slow": "timeout", "broken": "http_error", "good": "ok"}
                assert elapsed < timeout + 0.3  # the slow one never holds the others up past its own timeout
            # A deadline earlier than the timeout wins.
            t0 = trio.current_time()
            out = await s.submit(bundles[0], deadline=t0 + 0.1)
            assert out["slow"] == "timeout" and trio.current_time() - t0 < 0.35
        nursery.cancel_scope.cancel()
    stats = local.statistics()
    assert stats.bundles_received == 4 and stats.bad_signatures == 0
    lines = [json.loads(x) for x in record.read_text().splitlines()]
    got = [orjson.loads(base64.b64decode(x["body_b64"]))["params"][0]["txs"] for x in lines]
    assert got[:3] == [["0x" + r.hex() for r in b.envelope] for b in bundles]
    for x in lines:
        body = base64.b64decode(x["body_b64"])
        assert base64.b64decode(x["raw_b64"]).endswith(body)
        sig = dict((k.lower(), v) for k, v in x["headers"])[HEADER.lower()]
        assert recover_flashbots_signer(sig, body) == AUTH.address
    for name, outcome, n in (("slow", "timeout", 4), ("broken", "http_error", 4), ("good", "ok", 4)):
        assert m.value("aether_builder_requests_total", builder=name, outcome=outcome) == n
    assert m.value("aether_executor_bundles_submitted_total", source="mempool_backrun") == 4
    # No key material, no URL secrets anywhere we print.
    text = caplog.text + m.exposition().decode() + record.read_text()
    for secret in (AUTH_KEY[2:], SIGNER_KEY[2:], "s3cr3t"):
        assert secret not in text
