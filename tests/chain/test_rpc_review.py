"""Review probes of the RPC hot-path changes (deadline scope, header cache, batch ids)."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
import trio

from aether._errors import NodeErrorKind
from aether.chain import RpcClient


async def _hang(request: httpx.Request) -> httpx.Response:
    await trio.sleep_forever()
    raise AssertionError  # pragma: no cover


async def test_an_outside_cancel_is_never_a_node_timeout_or_too_slow(autojump_clock: trio.abc.Clock) -> None:
    kinds: list[NodeErrorKind] = []
    rpc = RpcClient("http://node.test", timeout=2.0, on_error=kinds.append, transport=httpx.MockTransport(_hang))
    # a real cancel, before either deadline
    with trio.CancelScope() as outer:
        async with trio.open_nursery() as n:
            n.start_soon(rpc.batch, [("eth_blockNumber", [])])
            await trio.sleep(0.1)
            outer.cancel()
    assert outer.cancelled_caught
    # a caller's scope expiring together with the deadline handed to batch, and with the client's
    for d in (0.5, 2.0):
        t0 = trio.current_time()
        with trio.move_on_at(t0 + d) as outer:
            await rpc.batch([("eth_blockNumber", [])], deadline=t0 + d)
        assert outer.cancelled_caught
        with trio.move_on_at(t0 + d + 10) as outer:
            with trio.move_on_at(trio.current_time() + 2.0) as own:
                await rpc.call("eth_blockNumber")
        assert own.cancelled_caught and not outer.cancelled_caught
    assert kinds == [] and rpc.statistics().timeouts == 0
    await rpc.aclose()


async def test_a_node_timeout_from_httpx_is_counted_once() -> None:
    kinds: list[NodeErrorKind] = []

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    from aether._errors import NodeTimeout
    rpc = RpcClient("http://node.test", on_error=kinds.append, transport=httpx.MockTransport(handler))
    with pytest.raises(NodeTimeout):
        await rpc.batch([("a", []), ("b", [])], deadline=trio.current_time() + 100)
    assert kinds == [NodeErrorKind.TIMEOUT] and rpc.statistics().timeouts == 1


async def test_ids_never_reused_across_concurrent_batches_and_calls(autojump_clock: trio.abc.Clock) -> None:
    in_flight: set[Any] = set()
    seen: list[Any] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        items = body if isinstance(body, list) else [body]
        ids = [it["id"] for it in items]
        assert not (set(ids) & in_flight), ids
        in_flight.update(ids)
        seen.extend(ids)
        await trio.sleep(0.01 * (len(seen) % 7))
        in_flight.difference_update(ids)
        reply = [{"jsonrpc": "2.0", "id": i, "result": "0x1"} for i in ids]
        return httpx.Response(200, content=orjson.dumps(reply if isinstance(body, list) else reply[0]))

    rpc = RpcClient("http://node.test", transport=httpx.MockTransport(handler))
    async with trio.open_nursery() as n:
        for k in range(60):
            if k % 3:
                n.start_soon(rpc.batch, [("m", [])] * (k % 5 + 1))
            else:
                n.start_soon(rpc.call, "m")
    assert len(seen) == len(set(seen))


async def test_a_transport_mutating_headers_does_not_poison_later_requests() -> None:
    got: list[list[tuple[bytes, bytes]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        got.append(list(request.headers.raw))
        request.headers["Content-Length"] = "1"
        request.headers["X-Evil"] = "1"
        del request.headers["Host"]
        body = orjson.loads(request.content)
        return httpx.Response(200, content=orjson.dumps({"jsonrpc": "2.0", "id": body["id"], "result": "0x1"}))

    rpc = RpcClient("http://node.test", transport=httpx.MockTransport(handler))
    await rpc.call("m")
    await rpc.call("m")
    assert got[0] == got[1]
