"""RpcClient: httpx errors mapped at the edge, batches in order, and a real anvil."""

from __future__ import annotations

import functools
import socket
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
import trio

from aether._errors import BadNodeData, NodeError, NodeTimeout, NodeUnreachable, RpcError
from aether.chain import RpcClient, open_rpc
from aether.devnet import run_anvil



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mock(handler: Callable[[Any], Any]) -> RpcClient:
    """A client whose node is ``handler(request_json) -> reply_json`` (or raises an httpx error)."""

    def transport(request: httpx.Request) -> httpx.Response:
        reply = handler(orjson.loads(request.content))
        if isinstance(reply, httpx.Response):
            return reply
        return httpx.Response(200, content=orjson.dumps(reply))

    return RpcClient("http://node.test", transport=httpx.MockTransport(transport))


def ok(req: dict[str, Any], result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": req["id"], "result": result}


# --------------------------------------------------------------------------- call


async def test_call_returns_the_result_and_sends_a_jsonrpc_request() -> None:
    seen: list[Any] = []

    def node(req: Any) -> Any:
        seen.append(req)
        return ok(req, "0x7a69")

    rpc = mock(node)
    assert await rpc.call("eth_chainId") == "0x7a69"
    assert await rpc.call("eth_getBalance", ["0x" + "00" * 20, "latest"]) == "0x7a69"
    assert [r["method"] for r in seen] == ["eth_chainId", "eth_getBalance"]
    assert seen[1]["params"] == ["0x" + "00" * 20, "latest"]
    assert seen[0]["jsonrpc"] == "2.0" and seen[0]["id"] != seen[1]["id"]
    assert rpc.statistics().requests == 2


async def test_timeout_is_node_timeout() -> None:
    def node(req: Any) -> Any:
        raise httpx.ReadTimeout("slow")

    rpc = mock(node)
    with pytest.raises(NodeTimeout, match="did not answer in time") as info:
        await rpc.call("eth_blockNumber")
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)
    assert rpc.statistics().timeouts == 1


async def test_refused_is_node_unreachable() -> None:
    def node(req: Any) -> Any:
        raise httpx.ConnectError("connection refused")

    rpc = mock(node)
    with pytest.raises(NodeUnreachable, match="unreachable: ConnectError") as info:
        await rpc.call("eth_blockNumber")
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert rpc.statistics().transport_errors == 1


@pytest.mark.parametrize(
    ("response", "match"),
    [
        (httpx.Response(200, content=b"<html>bad gateway</html>"), "non-JSON"),
        (httpx.Response(502, content=b""), "HTTP 502 with no body"),
        (httpx.Response(200, content=b"[1, 2]"), "not a JSON object"),
        (httpx.Response(200, content=b'{"jsonrpc": "2.0", "id": 1}'), "neither result nor error"),
    ],
)
async def test_bad_answers_are_bad_node_data(response: httpx.Response, match: str) -> None:
    rpc = mock(lambda req: response)
    with pytest.raises(BadNodeData, match=match):
        await rpc.call("eth_blockNumber")
    assert rpc.statistics().bad_data == 1


async def test_error_object_is_rpc_error_with_code_message_and_data() -> None:
    def node(req: Any) -> Any:
        return {"jsonrpc": "2.0", "id": req["id"],
                "error": {"code": 3, "message": "execution reverted", "data": "0x08c379a0"}}

    rpc = mock(node)
    with pytest.raises(RpcError) as info:
        await rpc.call("eth_call", [{}, "latest"])
    err = info.value
    assert (err.method, err.code, err.message, err.data) == ("eth_call", 3, "execution reverted", "0x08c379a0")
    assert str(err) == "eth_call: error 3: execution reverted"
    assert rpc.statistics().rpc_errors == 1


async def test_error_that_is_not_an_object_is_still_rpc_error() -> None:
    rpc = mock(lambda req: {"jsonrpc": "2.0", "id": req["id"], "error": "rate limited"})
    with pytest.raises(RpcError) as info:
        await rpc.call("eth_blockNumber")
    assert (info.value.code, info.value.message) == (-1, "rate limited")


# --------------------------------------------------------------------------- batch


async def test_batch_keeps_call_order_when_the_node_answers_out_of_order() -> None:
    def node(reqs: Any) -> Any:
        out = []
        for r in reqs:
            if r["method"] == "bad":
                out.append({"jsonrpc": "2.0", "id": r["id"], "error": {"code": -32601, "message": "no such method"}})
            else:
                out.append(ok(r, r["params"][0]))
        return list(reversed(out))

    rpc = mock(node)
    results = await rpc.batch([("echo", ["a"]), ("bad", []), ("echo", ["c"])])
    assert results[0] == "a"
    assert isinstance(results[1], RpcError) and results[1].code == -32601 and results[1].method == "bad"
    assert results[2] == "c"
    assert rpc.statistics().requests == 1
    assert rpc.statistics().calls == 3


async def test_batch_ids_do_not_collide_with_later_calls() -> None:
    ids: list[int] = []

    def node(req: Any) -> Any:
        reqs = req if isinstance(req, list) else [req]
        ids.extend(r["id"] for r in reqs)
        replies = [ok(r, 1) for r in reqs]
        return replies if isinstance(req, list) else replies[0]

    rpc = mock(node)
    await rpc.batch([("a", []), ("b", []), ("c", [])])
    await rpc.call("d")
    await rpc.batch([("e", []), ("f", [])])
    assert len(ids) == len(set(ids)) == 6


async def test_empty_batch_sends_nothing() -> None:
    def node(req: Any) -> Any:
        raise AssertionError("no request expected")

    rpc = mock(node)
    assert await rpc.batch([]) == []
    assert rpc.statistics().requests == 0


async def test_batch_answered_with_one_error_object_fails_every_call() -> None:
    rpc = mock(lambda req: {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "batch too large"}})
    results = await rpc.batch([("a", []), ("b", [])])
    assert all(isinstance(r, RpcError) and r.code == -32600 for r in results)


async def test_batch_missing_a_reply_is_bad_node_data() -> None:
    rpc = mock(lambda reqs: [ok(reqs[0], 1)])
    with pytest.raises(BadNodeData, match=r"no reply for b"):
        await rpc.batch([("a", []), ("b", [])])


async def test_batch_reply_that_is_not_a_list_is_bad_node_data() -> None:
    rpc = mock(lambda reqs: ok(reqs[0], 1))
    with pytest.raises(BadNodeData, match="not a JSON array"):
        await rpc.batch([("a", []), ("b", [])])


async def test_batch_transport_errors_are_mapped() -> None:
    def node(req: Any) -> Any:
        raise httpx.ConnectTimeout("slow connect")

    with pytest.raises(NodeTimeout):
        await mock(node).batch([("a", [])])


# --------------------------------------------------------------------------- real sockets


async def test_real_refused_port_is_node_unreachable_and_the_message_hides_the_api_key() -> None:
    port = free_port()
    async with open_rpc(f"https://user:PASSWORD@127.0.0.1:{port}/v3/SECRETKEY?k=QUERYKEY", timeout=1.0) as rpc:
        with pytest.raises(NodeUnreachable) as info:
            await rpc.call("eth_chainId")
    message = str(info.value)
    assert f"https://127.0.0.1:{port}" in message
    assert not any(s in message for s in ("SECRETKEY", "QUERYKEY", "PASSWORD", "user"))


async def test_real_silent_server_is_node_timeout() -> None:
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, silent, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        async with open_rpc(f"http://127.0.0.1:{port}", timeout=0.2) as rpc:
            with pytest.raises(NodeTimeout):
                await rpc.call("eth_chainId")
        nursery.cancel_scope.cancel()


@pytest.mark.devnet
async def test_anvil_call_and_batch() -> None:
    async with run_anvil() as node, open_rpc(node.rpc_url) as rpc:
        assert await rpc.call("eth_chainId") == hex(31337)
        chain_id, block, bad, balance = await rpc.batch(
            [
                ("eth_chainId", []),
                ("eth_blockNumber", []),
                ("eth_getBalance", ["not-an-address", "latest"]),
                ("eth_getBalance", ["0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "latest"]),
            ]
        )
        with pytest.raises(RpcError) as info:
            await rpc.call("no_such_method")
    assert (chain_id, block) == ("0x7a69", "0x0")
    assert isinstance(bad, RpcError) and bad.method == "eth_getBalance"
    assert int(balance, 16) == 10_000 * 10**18
    assert info.value.code == -32601


# --------------------------------------------------------------------------- bounds (issue 12)

from aether._errors import NodeErrorKind, ResponseTooLarge  # noqa: E402


class _Endless(httpx.AsyncByteStream):
    """A response body that never ends; counts the chunks the client pulled."""

    def __init__(self, chunk: bytes) -> None:
        self.chunk = chunk
        self.pulled = 0

    async def __aiter__(self) -> Any:
        while True:
            self.pulled += 1
            yield self.chunk


async def test_an_endless_body_is_read_only_up_to_the_cap() -> None:
    body = _Endless(b" " * 4096)
    kinds: list[NodeErrorKind] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=body)

    rpc = RpcClient("http://node.test", max_response_bytes=64 * 1024, on_error=kinds.append,
                    transport=httpx.MockTransport(handler))
    with pytest.raises(ResponseTooLarge, match="more than 65536 bytes"):
        await rpc.call("eth_getBlockByNumber", ["latest", True])
    # 16 chunks fill the cap exactly; the 17th passes it and reading stops there
    assert body.pulled == 17
    assert kinds == [NodeErrorKind.TOO_LARGE] and rpc.statistics().too_large == 1
    await rpc.aclose()


async def test_a_declared_length_over_the_cap_is_refused_before_reading(autojump_clock: trio.abc.Clock) -> None:
    body = _Endless(b" " * 4096)

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=body, headers={"content-length": str(200 * 1024 * 1024)})

    rpc = RpcClient("http://node.test", max_response_bytes=1024 * 1024, transport=httpx.MockTransport(handler))
    with pytest.raises(ResponseTooLarge, match="announced 209715200 bytes"):
        await rpc.call("eth_chainId")
    assert body.pulled == 0
    await rpc.aclose()


async def test_the_deadline_covers_the_whole_answer_not_each_read(autojump_clock: trio.abc.Clock) -> None:
    """A node that sends one byte a second never trips a per-read timeout; the total deadline does."""

    class Trickle(httpx.AsyncByteStream):
        async def __aiter__(self) -> Any:
            for b in b'{"jsonrpc":"2.0","id":1,"result":"0x1"}':
                await trio.sleep(1.0)
                yield bytes([b])

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Trickle())

    kinds: list[NodeErrorKind] = []
    rpc = RpcClient("http://node.test", timeout=2.5, on_error=kinds.append, transport=httpx.MockTransport(handler))
    t0 = trio.current_time()
    with pytest.raises(NodeTimeout, match="did not answer in full within 2.5s"):
        await rpc.call("eth_chainId")
    assert trio.current_time() - t0 == pytest.approx(2.5)
    assert kinds == [NodeErrorKind.TIMEOUT] and rpc.statistics().timeouts == 1
    await rpc.aclose()


async def test_a_hanging_node_is_a_timeout_at_the_deadline(autojump_clock: trio.abc.Clock) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await trio.sleep_forever()
        raise AssertionError  # pragma: no cover

    rpc = RpcClient("http://node.test", timeout=2.0, transport=httpx.MockTransport(handler))
    t0 = trio.current_time()
    with pytest.raises(NodeTimeout):
        await rpc.batch([("eth_blockNumber", []), ("eth_chainId", [])])
    assert trio.current_time() - t0 == pytest.approx(2.0)
    await rpc.aclose()


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="timeout > 0 and max_response_bytes >= 1"):
        RpcClient("http://node.test", timeout=0)
    with pytest.raises(ValueError, match="timeout > 0 and max_response_bytes >= 1"):
        RpcClient("http://node.test", max_response_bytes=0)


# --------------------------------------------------------------------------- the transport, over a real socket

import contextlib  # noqa: E402
from collections.abc import AsyncIterator  # noqa: E402

import h11  # noqa: E402


class _H11Node:
    """A loopback JSON-RPC node speaking HTTP/1.1 through h11; records every request and connection."""

    def __init__(self, *, body_for: Callable[[bytes], bytes] | None = None) -> None:
        self.requests: list[tuple[bytes, bytes, dict[bytes, bytes], bytes]] = []  # method, target, headers, body
        self.connections = 0
        self.body_for = body_for or (lambda body: orjson.dumps({"jsonrpc": "2.0", "id": orjson.loads(body)["id"],
                                                                "result": "0x1"}))

    async def handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        conn = h11.Connection(h11.SERVER)
        while True:
            request: h11.Request | None = None
            body = b""
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    try:
                        data = await stream.receive_some(65536)
                    except trio.BrokenResourceError:  # the client reset a connection it abandoned
                        return
                    if not data:
                        return
                    conn.receive_data(data)
                elif isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    body += bytes(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    return
            assert request is not None
            self.requests.append((request.method, request.target, dict(request.headers), body))
            answer = self.body_for(body)
            try:
                await stream.send_all(conn.send(h11.Response(status_code=200, headers=[
                    ("content-type", "application/json"), ("content-length", str(len(answer)))])) or b"")
                await stream.send_all(conn.send(h11.Data(data=answer)) or b"")
                await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
            except trio.BrokenResourceError:
                return
            conn.start_next_cycle()


@contextlib.asynccontextmanager
async def serving(node: _H11Node) -> AsyncIterator[int]:
    """``node`` on a loopback port for the block; yields the port."""
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, node.handle, 0, host="127.0.0.1"))
        yield listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


async def test_credentials_in_the_url_become_basic_auth_and_the_path_and_query_are_kept() -> None:
    node = _H11Node()
    async with serving(node) as port:
        async with open_rpc(f"http://alice:s3cr%40t@127.0.0.1:{port}/v3/KEY?x=1") as rpc:
            assert await rpc.call("eth_chainId") == "0x1"
    ((method, target, headers, body),) = node.requests
    assert (method, target) == (b"POST", b"/v3/KEY?x=1")
    import base64

    assert headers[b"authorization"] == b"Basic " + base64.b64encode(b"alice:s3cr@t")
    assert headers[b"host"] == f"127.0.0.1:{port}".encode()
    assert headers[b"content-type"] == b"application/json" and headers[b"accept-encoding"] == b"identity"
    assert orjson.loads(body)["method"] == "eth_chainId"


async def test_no_credentials_no_authorization_header() -> None:
    node = _H11Node()
    async with serving(node) as port:
        async with open_rpc(f"http://127.0.0.1:{port}") as rpc:
            await rpc.call("eth_chainId")
    assert b"authorization" not in node.requests[0][2]


async def test_calls_share_one_kept_alive_connection_and_an_abandoned_answer_costs_only_its_own() -> None:
    """Read to the end, a connection goes back to the pool; an answer abandoned at the cap is closed,
    and the next call dials a fresh connection and gets its answer."""
    def body_for(body: bytes) -> bytes:
        req = orjson.loads(body)
        result = "0x" + "ab" * 40_000 if req["method"] == "big" else "0x1"
        return orjson.dumps({"jsonrpc": "2.0", "id": req["id"], "result": result})

    node = _H11Node(body_for=body_for)
    async with serving(node) as port:
        async with open_rpc(f"http://127.0.0.1:{port}", max_response_bytes=10_000) as rpc:
            for _ in range(20):
                assert await rpc.call("eth_chainId") == "0x1"
            assert node.connections == 1
            with pytest.raises(ResponseTooLarge):
                await rpc.call("big")
            assert await rpc.call("eth_chainId") == "0x1"
            assert node.connections == 2
            assert rpc.statistics().too_large == 1


# --------------------------------------------------------------------------- adversarial review: encoded answers


class _Body(httpx.AsyncByteStream):
    """A body as the wire brings it (not pre-read and decoded by ``httpx.Response(content=...)``)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> Any:
        for i in range(0, len(self.data), 65536):
            yield self.data[i:i + 65536]


async def test_a_garbled_compressed_answer_is_bad_node_data_not_an_httpx_error() -> None:
    """We ask for ``identity``; a node that answers ``Content-Encoding: gzip`` with garbage anyway
    must give a counted NodeError, never httpx's DecodingError (not a TransportError, so it slipped
    past the mapping and escaped the client as an httpx type)."""
    kinds: list[NodeErrorKind] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=_Body(b"this is not gzip at all"), headers={"content-encoding": "gzip"})

    rpc = RpcClient("http://node.test", on_error=kinds.append, transport=httpx.MockTransport(handler))
    with pytest.raises(BadNodeData):
        await rpc.call("eth_chainId")
    assert kinds == [NodeErrorKind.BAD_DATA] and rpc.statistics().bad_data == 1
    await rpc.aclose()


async def test_a_compressed_answer_is_not_inflated_past_the_cap() -> None:
    """A hostile node ignores ``Accept-Encoding: identity`` and sends a 50 KB gzip of 50 MB: the cap
    counts the bytes we hold, so the answer must not be inflated in memory (one decoded chunk of
    50 MB before the cap is checked)."""
    import gzip
    import tracemalloc

    bomb = gzip.compress(b"0" * (50 * 1024 * 1024), compresslevel=9)
    cap = 256 * 1024
    assert len(bomb) < cap

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=_Body(bomb), headers={"content-encoding": "gzip"})

    rpc = RpcClient("http://node.test", max_response_bytes=cap, transport=httpx.MockTransport(handler))
    tracemalloc.start()
    try:
        with pytest.raises(NodeError):
            await rpc.call("eth_chainId")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * cap, f"peak {peak} bytes for a {cap}-byte cap"
    await rpc.aclose()


@pytest.mark.parametrize("bad_id", [[1], {"id": 1}], ids=["list", "object"])
async def test_a_batch_reply_with_an_unhashable_id_is_bad_node_data(bad_id: Any) -> None:
    """A JSON array or object as a reply's id cannot key the by-id table: it used to raise a bare
    TypeError out of ``batch`` (a traceback, not a counted NodeError)."""
    kinds: list[NodeErrorKind] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=orjson.dumps([{"jsonrpc": "2.0", "id": bad_id, "result": "0x1"}]))

    rpc = RpcClient("http://node.test", on_error=kinds.append, transport=httpx.MockTransport(handler))
    with pytest.raises(BadNodeData, match="no reply for eth_chainId"):
        await rpc.batch([("eth_chainId", [])])
    assert kinds == [NodeErrorKind.BAD_DATA]
    await rpc.aclose()


# --------------------------------------------------------------------------- node text in logs


async def test_a_huge_multi_line_error_message_is_shown_bounded_on_one_line_and_kept_whole() -> None:
    """What logs show of a node's error text is one line and bounded (a hostile node can send
    megabytes, with newlines that would forge log lines); callers still match on the whole text."""
    from aether._errors import NODE_TEXT_SHOWN

    huge = "execution reverted\n2026-11-27 ERROR aether.run: forged line\n" + "x" * 1_000_000

    def node(req: Any) -> Any:
        return {"jsonrpc": "2.0", "id": req["id"], "error": {"code": 3, "message": huge}}

    rpc = mock(node)
    with pytest.raises(RpcError) as info:
        await rpc.call("eth_call", [{}, "latest"])
    shown = str(info.value)
    assert "\n" not in shown and len(shown) <= NODE_TEXT_SHOWN + 60
    assert shown.startswith("eth_call: error 3: execution reverted 2026-11-27 ERROR")
    assert shown.endswith(f"... ({len(huge)} chars)")
    assert info.value.message == huge  # whole, for callers that match on it


def test_node_text_leaves_short_text_alone_and_cuts_long_text_once() -> None:
    from aether._errors import node_text

    assert node_text("invalid params") == "invalid params"
    assert node_text("a\r\nb\tc") == "a b c"
    assert node_text("y" * 300) == "y" * 300
    assert node_text("y" * 301) == "y" * 300 + "... (301 chars)"
    assert node_text("z" * 10, limit=4) == "zzzz... (10 chars)"


# --------------------------------------------------------------------------- the request as httpx builds it


@pytest.mark.parametrize("url", ["http://node.test", "http://alice:s3cr%40t@127.0.0.1:8545/v3/KEY?x=1",
                                 "https://node.test:8443/path", "https://NODE.test/"])
async def test_the_request_is_the_one_httpx_builds_from_the_body(url: str) -> None:
    """The client builds its request from a stream and headers made once (the hot path);
    what it sends is what ``httpx.Request(content=body)`` would: method, URL, headers in
    order, body, extensions."""
    sent: list[httpx.Request] = []

    def transport(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        body = orjson.loads(request.content)
        reply = [ok(r, "0x1") for r in body] if isinstance(body, list) else ok(body, "0x1")
        return httpx.Response(200, content=orjson.dumps(reply))

    def meddling(request: httpx.Request) -> httpx.Response:
        request.headers["X-Meddled"] = "1"  # a transport that changes the request: the next one is unaffected
        return transport(request)

    rpc = RpcClient(url, timeout=3.0, transport=httpx.MockTransport(meddling))
    await rpc.call("eth_chainId")
    await rpc.batch([("eth_blockNumber", []), ("eth_getBalance", ["0x" + "ab" * 20, "latest"])])
    await rpc.batch([("eth_call", [{"to": "0x" + "cd" * 20, "data": "0x" + "ef" * 3000}, "latest"])])
    await rpc.call("eth_chainId")  # a body of a length seen before: its headers were kept
    await rpc.aclose()
    parsed = httpx.URL(url)
    headers = [(b"Content-Type", b"application/json"), (b"Accept-Encoding", b"identity")]
    if parsed.username or parsed.password:
        import base64

        cred = f"{parsed.username}:{parsed.password}".encode()
        headers.append((b"Authorization", b"Basic " + base64.b64encode(cred)))
        parsed = parsed.copy_with(username=None, password=None)
    assert len(sent) == 4 and len(sent[0].content) == len(sent[3].content)
    for got in sent:
        assert [k for k, _ in got.headers.raw].count(b"X-Meddled") == 1  # its own, none carried over
        del got.headers["X-Meddled"]
        want = httpx.Request("POST", parsed, headers=headers, content=got.content,
                             extensions={"timeout": {"connect": 3.0, "read": 3.0, "write": 3.0, "pool": 3.0}})
        assert (got.method, got.url, got.headers.raw, got.content, got.extensions) == (
            want.method, want.url, want.headers.raw, want.content, want.extensions)
        assert b"".join(got.stream) == got.content  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the caller's deadline


async def test_a_callers_earlier_deadline_is_the_callers_not_a_node_timeout(autojump_clock: trio.abc.Clock) -> None:
    """``batch(deadline=...)``: the caller's deadline rides in the client's own cancel scope.
    When it comes first the caller gets ``trio.TooSlowError`` there and the node is not
    blamed; when the client's comes first it is the node's timeout, counted, as without one."""
    async def handler(request: httpx.Request) -> httpx.Response:
        await trio.sleep_forever()
        raise AssertionError  # pragma: no cover

    kinds: list[NodeErrorKind] = []
    rpc = RpcClient("http://node.test", timeout=2.0, on_error=kinds.append, transport=httpx.MockTransport(handler))
    t0 = trio.current_time()
    with pytest.raises(trio.TooSlowError):
        await rpc.batch([("eth_blockNumber", [])], deadline=t0 + 0.5)
    assert trio.current_time() - t0 == pytest.approx(0.5)
    assert kinds == [] and rpc.statistics().timeouts == 0

    t0 = trio.current_time()
    with pytest.raises(NodeTimeout, match="did not answer in full within 2s"):
        await rpc.batch([("eth_blockNumber", [])], deadline=t0 + 5.0)
    assert trio.current_time() - t0 == pytest.approx(2.0)
    assert kinds == [NodeErrorKind.TIMEOUT] and rpc.statistics().timeouts == 1

    t0 = trio.current_time()
    with pytest.raises(trio.TooSlowError):  # already past: given up at the first checkpoint
        await rpc.batch([("eth_blockNumber", [])], deadline=t0 - 1.0)
    assert trio.current_time() == t0 and rpc.statistics().timeouts == 1
    await rpc.aclose()


async def test_batch_replies_are_matched_to_calls_as_by_id_lookup_over_random_answers() -> None:
    """The in-order fast path of ``batch`` gives what the by-id lookup gives, over seeded
    random answers: in order, shuffled, duplicated, dropped, extra, ids spelled 1.0 / True /
    "1", errors among results, and non-object items."""
    import random

    rng = random.Random(2026)

    def reference(ids: list[int], methods: list[str], reply: list[Any]) -> list[Any]:
        by_id = {item.get("id"): item for item in reply
                 if isinstance(item, dict) and not isinstance(item.get("id"), (list, dict))}
        out = []
        for i, m in zip(ids, methods):
            item = by_id.get(i)
            if item is None:
                raise BadNodeData(f"batch: no reply for {m} (id {i})")
            err = item.get("error")
            if err is not None:
                out.append(("error", m, err.get("code"), err.get("message")))
            elif "result" not in item:
                raise BadNodeData(f"{m}: reply has neither result nor error")
            else:
                out.append(item["result"])
        return out

    def normal(got: list[Any]) -> list[Any]:
        return [("error", r.method, r.code, r.message) if isinstance(r, RpcError) else r for r in got]

    in_order = 0
    for _ in range(1500):
        n = rng.randrange(1, 5)
        script: list[Any] = []

        def node(body: Any) -> Any:
            items: list[Any] = []
            for req in body:
                kind = rng.random()
                rid: Any = req["id"]
                if kind < 0.03:
                    rid = rng.choice((float(rid), str(rid), [rid], rid + 1000))
                if kind < 0.08:
                    items.append({"jsonrpc": "2.0", "id": rid, "error": {"code": 3, "message": "reverted"}})
                elif kind < 0.1:
                    items.append({"jsonrpc": "2.0", "id": rid})
                else:
                    items.append({"jsonrpc": "2.0", "id": rid, "result": hex(rng.getrandbits(16))})
            roll = rng.random()
            if roll < 0.15:
                rng.shuffle(items)
            elif roll < 0.2 and items:
                items.append(dict(rng.choice(items), result="0xdup"))
            elif roll < 0.25 and items:
                items.pop(rng.randrange(len(items)))
            elif roll < 0.28:
                items.insert(0, rng.choice((7, "x", None, {"id": True, "result": "0xtrue"})))
            script.append(items)
            return items

        rpc = mock(node)
        calls = [(f"m{k}", []) for k in range(n)]
        try:
            got: Any = normal(await rpc.batch(calls))
        except BadNodeData as exc:
            got = ("raised", str(exc))
        ids = list(range(1, n + 1))  # a fresh client numbers from 1
        try:
            want: Any = reference(ids, [m for m, _ in calls], script[0])
        except BadNodeData as exc:
            want = ("raised", str(exc))
        assert got == want, (script[0], ids)
        in_order += all(isinstance(r, dict) and r.get("id") == i for r, i in zip(script[0], ids)) and len(script[0]) == n
        await rpc.aclose()
    assert in_order > 500  # the fast path's case was met often, and so were the others
