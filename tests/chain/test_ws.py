"""WebSocket subscriptions.

Three kinds of node, each where it is the point:

- real anvil over loopback, for what a real node sends (full objects, hashes,
  heads) and a real cut through a TCP proxy;
- trio-websocket's server on in-memory streams (the subscriber's ``transport``
  seam), in virtual time (autojump clock), for timing and failure behaviour:
  backoff, idle pings, stalls, refusals, the size cap, garbage;
- trio-websocket's server on real loopback TCP and TLS, for the default transport
  (a heads stream, a burst in one TCP write, certificate checks).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import random
import re
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest
import trio
import trio.testing
from eth_account import Account
from eth_utils import to_checksum_address
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket, wrap_server_stream
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage

from aether.chain import (
    HEADS,
    PENDING,
    Frame,
    RpcClient,
    Subscriber,
    SubscriptionKind,
    decode_pending_tx,
    head_from_rpc,
    keccak256,
    open_rpc,
)
from aether.chain._ws import MAX_MESSAGE_SIZE
from aether.devnet import run_anvil
from aether.metrics import Metrics

# anvil's well-known dev accounts 0..2 (public test keys, devnet only)
DEV_KEYS = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
]
CHAIN_ID = 31337
FAIL_AFTER = 15


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def victim_txs(n: int) -> list[Any]:
    """n signed transfers/calls cycling through types 0, 1, 2 and three senders."""
    out = []
    nonces = [0, 0, 0]
    for i in range(n):
        k = i % 3
        acct = Account.from_key(DEV_KEYS[k])
        tx: dict[str, Any] = {"nonce": nonces[k], "gas": 60_000, "to": to_checksum_address(f"0x{i + 1:040x}"),
                              "value": 10**15 + i, "data": bytes([i % 256]) * (i % 7), "chainId": CHAIN_ID}
        nonces[k] += 1
        t = i % 3
        if t == 0:
            tx["gasPrice"] = 3 * 10**9
        elif t == 1:
            tx.update(type=1, gasPrice=3 * 10**9,
                      accessList=[{"address": "0x" + "22" * 20, "storageKeys": ["0x" + f"{i:064x}"]}])
        else:
            tx.update(type=2, maxFeePerGas=4 * 10**9, maxPriorityFeePerGas=10**9 + i, accessList=[])
        out.append(acct.sign_transaction(tx))
    return out


async def send_raw(rpc: RpcClient, signed: Any) -> None:
    await rpc.call("eth_sendRawTransaction", ["0x" + bytes(signed.raw_transaction).hex()])


async def receive(recv: trio.MemoryReceiveChannel[Frame], n: int, within: float = FAIL_AFTER) -> list[Frame]:
    with trio.fail_after(within):
        return [await recv.receive() for _ in range(n)]


# --------------------------------------------------------------------------- loopback TCP proxy


class Proxy:
    """A loopback TCP proxy whose live connections can be cut or stalled."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.accepted = 0
        self._scopes: set[trio.CancelScope] = set()
        self._stalls: set[trio.Event] = set()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    def cut(self) -> None:
        """Drop every live connection (both sides see the socket close)."""
        for scope in list(self._scopes):
            scope.cancel()

    def stall(self) -> None:
        """Stop forwarding on every live connection without closing it (a half-dead peer)."""
        for ev in list(self._stalls):
            ev.set()

    async def _handle(self, client: trio.SocketStream) -> None:
        self.accepted += 1
        stalled = trio.Event()
        async with client, await trio.open_tcp_stream("127.0.0.1", self.upstream_port) as upstream:
            with trio.CancelScope() as scope:
                self._scopes.add(scope)
                self._stalls.add(stalled)
                try:
                    async with trio.open_nursery() as nursery:
                        for src, dst in ((client, upstream), (upstream, client)):
                            nursery.start_soon(self._pump, src, dst, stalled, nursery.cancel_scope)
                finally:
                    self._scopes.discard(scope)
                    self._stalls.discard(stalled)

    @staticmethod
    async def _pump(src: trio.SocketStream, dst: trio.SocketStream, stalled: trio.Event,
                    done: trio.CancelScope) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            async for chunk in src:
                if stalled.is_set():
                    await trio.sleep_forever()
                await dst.send_all(chunk)
        done.cancel()


Handler = Callable[[WebSocketConnection, list[Any]], Awaitable[None]]


def note(result: object, sub: str = "0xsub") -> str:
    return orjson.dumps({"jsonrpc": "2.0", "method": "eth_subscription",
                         "params": {"subscription": sub, "result": result}}).decode()


# --------------------------------------------------------------------------- against anvil


@pytest.mark.devnet
async def test_full_pending_objects_from_anvil_reencode_to_their_hash() -> None:
    """Every victim (types 0/1/2, three senders) arrives as a full object whose re-encoding hashes right."""
    signed = victim_txs(30)
    metrics = Metrics()
    async with run_anvil(chain_id=CHAIN_ID) as node, open_rpc(node.rpc_url) as rpc, trio.open_nursery() as nursery:
        sub = Subscriber(node.ws_url, PENDING, rpc=rpc, metrics=metrics)
        send, recv = trio.open_memory_channel[Frame](100)
        await nursery.start(sub.run, send)
        for s in signed:
            await send_raw(rpc, s)
        frames = await receive(recv, len(signed))
        nursery.cancel_scope.cancel()
    decoded = [decode_pending_tx(f.obj, seen_at=f.seen_at, first_seen_ns=f.first_seen_ns, chain_id=CHAIN_ID)
               for f in frames]
    by_hash = {d.hash: d for d in decoded}
    assert len(by_hash) == len(signed)
    for s in signed:
        d = by_hash[bytes(s.hash)]
        assert d.raw == bytes(s.raw_transaction)
    assert sorted(d.type for d in decoded) == sorted(i % 3 for i in range(30))
    assert all(f.first_seen_ns > 0 for f in frames)
    stats = sub.statistics()
    assert (stats.frames, stats.fetched, stats.bad_frames, stats.reconnects, stats.dropped) == (30, 0, 0, 0, 0)


@pytest.mark.devnet
async def test_hash_only_subscription_fetches_objects() -> None:
    """Subscribed without ``true``, anvil sends hashes; each is fetched with eth_getTransactionByHash."""
    signed = victim_txs(9)
    async with run_anvil(chain_id=CHAIN_ID) as node, open_rpc(node.rpc_url) as rpc, trio.open_nursery() as nursery:
        sub = Subscriber(node.ws_url, PENDING, rpc=rpc, full_txs=False, max_fetch_concurrency=4)
        send, recv = trio.open_memory_channel[Frame](100)
        await nursery.start(sub.run, send)
        for s in signed:
            await send_raw(rpc, s)
        frames = await receive(recv, len(signed))
        nursery.cancel_scope.cancel()
    got = {decode_pending_tx(f.obj, chain_id=CHAIN_ID).raw for f in frames}
    assert got == {bytes(s.raw_transaction) for s in signed}
    stats = sub.statistics()
    assert (stats.frames, stats.fetched, stats.fetch_failed) == (9, 9, 0)
    assert rpc.statistics().calls >= 9


@pytest.mark.devnet
async def test_cut_connection_reconnects_and_the_stream_resumes() -> None:
    signed = victim_txs(6)
    metrics = Metrics()
    async with run_anvil(chain_id=CHAIN_ID) as node, open_rpc(node.rpc_url) as rpc, trio.open_nursery() as nursery:
        proxy = Proxy(node.port)
        await nursery.start(proxy.serve)
        sub = Subscriber(f"ws://127.0.0.1:{proxy.port}", PENDING, rpc=rpc, metrics=metrics,
                         backoff_initial=0.01, backoff_max=0.05)
        send, recv = trio.open_memory_channel[Frame](100)
        await nursery.start(sub.run, send)
        for s in signed[:3]:
            await send_raw(rpc, s)
        before = await receive(recv, 3)

        proxy.cut()
        with trio.fail_after(FAIL_AFTER):
            await sub.wait_subscribed(2)
        for s in signed[3:]:
            await send_raw(rpc, s)
        after = await receive(recv, 3)
        nursery.cancel_scope.cancel()
    assert [f.obj["hash"] for f in before] == ["0x" + bytes(s.hash).hex() for s in signed[:3]]
    assert [f.obj["hash"] for f in after] == ["0x" + bytes(s.hash).hex() for s in signed[3:]]
    stats = sub.statistics()
    assert stats.reconnects == 1
    assert stats.subscriptions == 2
    assert proxy.accepted == 2
    assert metrics.value("aether_ws_reconnects_total", stream=PENDING) == 1


@pytest.mark.devnet
async def test_new_heads_from_anvil_decode_to_heads() -> None:
    async with run_anvil(chain_id=CHAIN_ID) as node, open_rpc(node.rpc_url) as rpc, trio.open_nursery() as nursery:
        sub = Subscriber(node.ws_url, HEADS)
        send, recv = trio.open_memory_channel[Frame](0)  # heads block on send: no drops
        await nursery.start(sub.run, send)
        await rpc.call("anvil_mine", ["0x3"])
        frames = await receive(recv, 3)
        nursery.cancel_scope.cancel()
    heads = [head_from_rpc(f.obj, seen_at=f.seen_at) for f in frames]
    assert [h.number for h in heads] == [1, 2, 3]
    assert heads[1].parent_hash == heads[0].hash
    assert all(h.base_fee > 0 for h in heads)


@pytest.mark.devnet
async def test_devnet_victim_swaps_arrive_whole_and_every_one_reencodes_to_its_hash(chain: Any) -> None:
    """The devnet's own victim traffic (Router02 swaps, types 0/1/2): 100% verify."""
    from aether.devnet import VictimTraffic

    async with open_rpc(chain.rpc_url) as rpc, trio.open_nursery() as nursery:
        sub = Subscriber(chain.ws_url, PENDING, rpc=rpc)
        send, recv = trio.open_memory_channel[Frame](200)
        await nursery.start(sub.run, send)
        traffic = VictimTraffic(rpc, chain, seed=1234)
        sent = [await traffic.send_tx() for _ in range(24)]
        frames = await receive(recv, len(sent))
        nursery.cancel_scope.cancel()
    decoded = [decode_pending_tx(f.obj, chain_id=chain.chain_id) for f in frames]  # raises on any failure
    assert {d.hash for d in decoded} == {s.hash for s in sent}
    assert all(keccak256(d.raw) == d.hash for d in decoded)
    assert {d.type for d in decoded} == {s.tx_type for s in sent} == {0, 1, 2}
    assert sub.statistics().fetched == 0



# --------------------------------------------------------------------------- in-memory node (virtual time)


class Line(trio.abc.Stream):
    """The client's end of an in-memory connection, which a test can stall (a half-dead peer).

    Stalled, nothing more arrives and whatever is sent vanishes, with the connection
    still open: what a peer behind a dead NAT entry looks like.
    """

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.stalled = False
        self.sent = bytearray()  # every byte the client wrote, for the handshake's checks

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if not self.stalled:
            self.sent += data
            await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self.stalled:
            await trio.sleep_forever()
        data = await self.inner.receive_some(max_bytes)
        if self.stalled:
            await trio.sleep_forever()
        return data

    async def aclose(self) -> None:
        await self.inner.aclose()


class MemoryNode:
    """A node's WebSocket side (trio-websocket's server) on in-memory streams.

    ``open_stream`` is the subscriber's transport: each call is one connection
    attempt, served here in the test's nursery. It answers ``eth_subscribe`` with id
    ``0xsub`` and then runs ``on_subscribed(ws, params)``; ``refuse`` makes it fail
    attempts first (an ``int`` answers that HTTP status, ``"refused"`` raises
    ``ConnectionRefusedError`` from the dial itself).
    """

    def __init__(self, nursery: trio.Nursery, on_subscribed: Handler, *, refuse_full: bool = False) -> None:
        self._nursery = nursery
        self._on_subscribed = on_subscribed
        self._refuse_full = refuse_full
        self.refuse: list[int | str] = []
        self.attempts: list[float] = []  # trio.current_time() of each dial
        self.lines: list[Line] = []
        self.server_sides: list[WebSocketConnection] = []
        self._server_streams: list[trio.abc.Stream] = []

    async def open_stream(self) -> trio.abc.Stream:
        self.attempts.append(trio.current_time())
        refusal = self.refuse.pop(0) if self.refuse else None
        if refusal == "refused":
            raise ConnectionRefusedError(111, "Connection refused")
        client, server = trio.testing.memory_stream_pair()
        self._server_streams.append(server)
        if isinstance(refusal, int):
            self._nursery.start_soon(self._reject, server, refusal)
        else:
            self._nursery.start_soon(self._serve, server)
        line = Line(client)
        self.lines.append(line)
        return line

    def cut(self) -> None:
        """Close every live connection from the node's side without a close frame (the client sees EOF)."""
        for stream in self._server_streams:
            self._nursery.start_soon(trio.aclose_forcefully, stream)
        self._server_streams.clear()

    @staticmethod
    async def _reject(stream: trio.abc.Stream, status: int) -> None:
        async with stream:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.receive_some()
                await stream.send_all(f"HTTP/1.1 {status} Nope\r\ncontent-length: 0\r\n\r\n".encode())

    async def _serve(self, stream: trio.abc.Stream) -> None:
        async with trio.open_nursery() as nursery:
            with contextlib.suppress(ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
                request = await wrap_server_stream(nursery, stream)
                ws = await request.accept()
                self.server_sides.append(ws)
                await _answer(ws, self._on_subscribed, self._refuse_full)
            nursery.cancel_scope.cancel()


async def _answer(ws: WebSocketConnection, on_subscribed: Handler, refuse_full: bool) -> None:
    """The node's half of ``eth_subscribe``, then ``on_subscribed``, then stay open."""
    while True:
        req = orjson.loads(await ws.get_message())
        if refuse_full and len(req["params"]) > 1:
            await ws.send_message(orjson.dumps(
                {"jsonrpc": "2.0", "id": req["id"], "error": {"code": -32602, "message": "invalid params"}}
            ).decode())
            continue
        await ws.send_message(orjson.dumps({"jsonrpc": "2.0", "id": req["id"], "result": "0xsub"}).decode())
        await on_subscribed(ws, req["params"])
        await ws.get_message()  # until the client goes (ConnectionClosed)


def memory_sub(node: MemoryNode, kind: SubscriptionKind, url: str = "ws://node.test:8546/v3/SECRET",
               **kwargs: Any) -> Subscriber:
    return Subscriber(url, kind, transport=node.open_stream, **kwargs)


async def test_garbage_frames_are_counted_and_skipped(autojump_clock: Any) -> None:
    good1 = {"hash": "0x" + "01" * 32}
    good2 = {"hash": "0x" + "02" * 32}

    async def spew(ws: WebSocketConnection, params: list[Any]) -> None:
        for message in [
            note(good1),
            "this is not json",
            b"\xff\xfe\x00binary",
            "[1, 2, 3]",
            '{"jsonrpc":"2.0","method":"eth_subscription"}',
            note({"x": 1}, sub="0xother"),
            note(42),
            note("0x1234"),  # not a 32-byte hash
            '{"jsonrpc":"2.0","method":"eth_unsubscribe","params":{"subscription":"0xsub","result":{}}}',
            note(good2),
        ]:
            await ws.send_message(message)

    metrics = Metrics()
    async with trio.open_nursery() as nursery:
        node = MemoryNode(nursery, spew)
        sub = memory_sub(node, PENDING, metrics=metrics)
        send, recv = trio.open_memory_channel[Frame](10)
        await nursery.start(sub.run, send)
        frames = await receive(recv, 2)
        nursery.cancel_scope.cancel()
    assert [f.obj for f in frames] == [good1, good2]
    stats = sub.statistics()
    assert (stats.frames, stats.bad_frames, stats.reconnects) == (2, 8, 0)
    assert metrics.value("aether_mempool_intake_rejected_total", reason="bad_frame") == 8


async def test_the_handshake_carries_the_path_and_a_bracketed_ipv6_host(autojump_clock: Any) -> None:
    async def nothing(ws: WebSocketConnection, params: list[Any]) -> None:
        pass

    for url, host in (("ws://[::1]/v3/KEY?x=1", b"[::1]"), ("ws://[::1]:8546/v3/KEY?x=1", b"[::1]:8546"),
                      ("ws://node.test/", b"node.test")):
        async with trio.open_nursery() as nursery:
            node = MemoryNode(nursery, nothing)
            sub = memory_sub(node, HEADS, url=url)
            send, _recv = trio.open_memory_channel[Frame](1)
            await nursery.start(sub.run, send)
            nursery.cancel_scope.cancel()
        (line,) = node.lines
        path = b"/" if url.endswith("/") else b"/v3/KEY?x=1"
        assert line.sent.startswith(b"GET " + path + b" HTTP/1.1\r\n"), bytes(line.sent)
        assert b"\r\nHost: " + host + b"\r\n" in line.sent, bytes(line.sent)


async def test_refused_full_param_falls_back_to_hashes_and_fetch_failures_are_counted(autojump_clock: Any) -> None:
    hashes = ["0x" + f"{i:064x}" for i in range(1, 6)]
    subscribed_with: list[list[Any]] = []

    async def announce(ws: WebSocketConnection, params: list[Any]) -> None:
        subscribed_with.append(params)
        for h in hashes:
            await ws.send_message(note(h))

    def rpc_node(request: httpx.Request) -> httpx.Response:
        req = orjson.loads(request.content)
        n = int(req["params"][0], 16)
        if n == 2:
            return httpx.Response(200, content=orjson.dumps({"jsonrpc": "2.0", "id": req["id"], "result": None}))
        if n == 3:
            err = {"code": -32000, "message": "boom"}
            return httpx.Response(200, content=orjson.dumps({"jsonrpc": "2.0", "id": req["id"], "error": err}))
        if n == 4:
            raise httpx.ConnectError("refused")
        return httpx.Response(200, content=orjson.dumps(
            {"jsonrpc": "2.0", "id": req["id"], "result": {"hash": req["params"][0]}}))

    metrics = Metrics()
    async with trio.open_nursery() as nursery:
        node = MemoryNode(nursery, announce, refuse_full=True)
        rpc = RpcClient("http://fetch.invalid", transport=httpx.MockTransport(rpc_node))
        sub = memory_sub(node, PENDING, rpc=rpc, metrics=metrics, max_fetch_concurrency=1)
        send, recv = trio.open_memory_channel[Frame](10)
        await nursery.start(sub.run, send)
        frames = await receive(recv, 2)  # hashes 1 and 5; with one worker they come in order
        with trio.fail_after(FAIL_AFTER):
            while sub.statistics().fetch_failed < 3:
                await trio.sleep(0.001)
        nursery.cancel_scope.cancel()
    assert subscribed_with == [[PENDING]]
    assert [f.obj["hash"] for f in frames] == [hashes[0], hashes[4]]
    stats = sub.statistics()
    assert (stats.frames, stats.fetched, stats.fetch_failed, stats.reconnects) == (5, 2, 3, 0)
    assert metrics.value("aether_mempool_intake_rejected_total", reason="fetch_failed") == 3


async def test_full_channel_drops_pending_and_counts(autojump_clock: Any) -> None:
    connections = 0

    async def burst_then_hang_up(ws: WebSocketConnection, params: list[Any]) -> None:
        nonlocal connections
        connections += 1
        if connections == 1:
            for i in range(11):
                await ws.send_message(note({"i": i}))
            # Closing makes the subscriber reconnect only after it has consumed all 11
            # frames: its second subscription is the signal that they were all handled.
            await ws.aclose()

    metrics = Metrics()
    async with trio.open_nursery() as nursery:
        node = MemoryNode(nursery, burst_then_hang_up)
        sub = memory_sub(node, PENDING, metrics=metrics, backoff_initial=0.01)
        send, recv = trio.open_memory_channel[Frame](3)
        await nursery.start(sub.run, send)
        with trio.fail_after(FAIL_AFTER):
            await sub.wait_subscribed(2)
        got = [recv.receive_nowait().obj["i"] for _ in range(3)]
        nursery.cancel_scope.cancel()
    assert got == [0, 1, 2]
    stats = sub.statistics()
    assert (stats.frames, stats.dropped, stats.reconnects) == (11, 8, 1)
    assert metrics.value("aether_channel_dropped_total", channel="ws_pending") == 8


async def test_a_message_over_the_size_cap_is_refused_with_1009_and_the_stream_resumes(autojump_clock: Any) -> None:
    connections = 0

    async def huge_then_small(ws: WebSocketConnection, params: list[Any]) -> None:
        nonlocal connections
        connections += 1
        if connections == 1:
            await ws.send_message(note({"pad": "x" * MAX_MESSAGE_SIZE}))
        await ws.send_message(note({"n": connections}))

    async with trio.open_nursery() as nursery:
        node = MemoryNode(nursery, huge_then_small)
        sub = memory_sub(node, PENDING, backoff_initial=0.01)
        send, recv = trio.open_memory_channel[Frame](10)
        await nursery.start(sub.run, send)
        frames = await receive(recv, 1)
        nursery.cancel_scope.cancel()
    assert frames[0].obj == {"n": 2}  # the first connection's small frame never counted: it was closed
    closed = node.server_sides[0].closed
    assert closed is not None and closed.code == 1009
    stats = sub.statistics()
    assert (stats.frames, stats.reconnects, stats.subscriptions) == (1, 1, 2)


async def test_a_cut_connection_is_reconnected_and_counted(autojump_clock: Any) -> None:
    async def one(ws: WebSocketConnection, params: list[Any]) -> None:
        await ws.send_message(note({"n": len(params)}))

    metrics = Metrics()
    async with trio.open_nursery() as nursery:
        node = MemoryNode(nursery, one)
        sub = memory_sub(node, PENDING, metrics=metrics, backoff_initial=0.5, backoff_max=0.5)
        send, recv = trio.open_memory_channel[Frame](10)
        await nursery.start(sub.run, send)
        await receive(recv, 1)
        cut_at = trio.current_time()
        node.cut()
        with trio.fail_after(FAIL_AFTER):
            await sub.wait_subscribed(2)
        await receive(recv, 1)
        nursery.cancel_scope.cancel()
    # The second dial waited for the backoff (jitter in [d/2, d]), no longer.
    assert 0.25 <= node.attempts[1] - cut_at <= 0.5 + 1e-9
    assert sub.statistics().reconnects == 1
    assert metrics.value("aether_ws_reconnects_total", stream=PENDING) == 1


async def test_backoff_doubles_with_jitter_caps_and_starts_over_after_a_frame(autojump_clock: Any) -> None:
    """Refused dials: each wait in [cap/2, cap], caps doubling to backoff_max; a connection
    that delivers a frame starts the sequence over from backoff_initial."""
    async def one(ws: WebSocketConnection, params: list[Any]) -> None:
        await ws.send_message(note({"n": 1}))
        await ws.aclose()  # then drop

    metrics = Metrics()
    async with trio.open_nursery() as nursery:
        node = MemoryNode(nursery, one)
        node.refuse = ["refused"] * 6 + [503, "ok", "refused"]
        sub = memory_sub(node, PENDING, metrics=metrics, backoff_initial=0.1, backoff_max=1.0,
                         rng=random.Random(7))
        send, recv = trio.open_memory_channel[Frame](10)
        await nursery.start(sub.run, send)
        await receive(recv, 1)
        with trio.fail_after(FAIL_AFTER):
            while len(node.attempts) < 10:
                await trio.sleep(0.001)
        nursery.cancel_scope.cancel()
    waits = [b - a for a, b in itertools.pairwise(node.attempts)]
    caps = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]  # the refused dials and the 503
    for wait, cap in zip(waits[:7], caps, strict=True):
        assert cap / 2 <= wait <= cap + 1e-9, (waits, caps)
    # Attempt 8 subscribed and got its frame: the wait after its drop is the short one again,
    # and the next refusal doubles from there.
    assert 0.05 <= waits[7] <= 0.1 + 1e-9, waits
    assert 0.1 <= waits[8] <= 0.2 + 1e-9, waits
    stats = sub.statistics()
    assert stats.reconnects >= 9
    assert metrics.value("aether_ws_reconnects_total", stream=PENDING) == stats.reconnects


async def test_stalled_peer_is_detected_by_ping_and_reconnected(autojump_clock: Any) -> None:
    async def one_then_quiet(ws: WebSocketConnection, params: list[Any]) -> None:
        await ws.send_message(note({"n": 1}))

    async with trio.open_nursery() as nursery:
        node = MemoryNode(nursery, one_then_quiet)
        sub = memory_sub(node, PENDING, idle_timeout=10.0, ping_timeout=5.0, backoff_initial=0.01,
                         backoff_max=0.02)
        send, recv = trio.open_memory_channel[Frame](10)
        await nursery.start(sub.run, send)
        await receive(recv, 1)
        stalled_at = trio.current_time()
        node.lines[0].stalled = True
        with trio.fail_after(FAIL_AFTER * 10):
            await sub.wait_subscribed(2)
        detected = trio.current_time() - stalled_at
        await receive(recv, 1)  # the new connection's first frame
        nursery.cancel_scope.cancel()
    # Found dead after one or two idle periods plus the ping timeout; not before, not much after.
    assert 10.0 + 5.0 <= detected <= 2 * 10.0 + 5.0 + 0.1, detected
    assert sub.statistics().reconnects == 1


async def test_quiet_but_alive_peer_is_not_reconnected(autojump_clock: Any) -> None:
    async def quiet_then_one(ws: WebSocketConnection, params: list[Any]) -> None:
        await trio.sleep(35.0)  # a quiet mempool: several idle periods with no frame, pings answered
        await ws.send_message(note({"n": 1}))

    async with trio.open_nursery() as nursery:
        node = MemoryNode(nursery, quiet_then_one)
        sub = memory_sub(node, PENDING, idle_timeout=10.0, ping_timeout=5.0)
        send, recv = trio.open_memory_channel[Frame](10)
        await nursery.start(sub.run, send)
        await receive(recv, 1, within=60.0)
        nursery.cancel_scope.cancel()
    assert sub.statistics().reconnects == 0
    assert len(node.attempts) == 1


async def test_a_head_waiting_on_a_full_channel_is_not_taken_for_a_dead_peer(autojump_clock: Any) -> None:
    """Heads block on a full channel; meanwhile nothing is read (not even a pong). The idle
    watch must blame our consumer, not the node: no reconnect, no head lost."""
    async def many_heads(ws: WebSocketConnection, params: list[Any]) -> None:
        # The subscriber reads nothing while a head waits on our consumer, so a ping
        # would go unanswered meanwhile.
        for n in range(1, 301):
            await ws.send_message(note({"number": hex(n)}))

    async with trio.open_nursery() as nursery:
        node = MemoryNode(nursery, many_heads)
        sub = memory_sub(node, HEADS, idle_timeout=1.0, ping_timeout=1.0)
        send, recv = trio.open_memory_channel[Frame](0)
        await nursery.start(sub.run, send)
        await trio.sleep(60.0)  # the consumer looks away for a minute
        frames = await receive(recv, 300, within=60.0)
        nursery.cancel_scope.cancel()
    assert [f.obj["number"] for f in frames] == [hex(n) for n in range(1, 301)]
    assert sub.statistics().reconnects == 0


async def test_node_down_at_start_is_retried_until_it_comes_up(autojump_clock: Any) -> None:
    """First dials refused and handshakes answered 503 (a node behind a proxy, restarting),
    then a working node: run() keeps retrying and has started only once subscribed."""
    async def hello(ws: WebSocketConnection, params: list[Any]) -> None:
        await ws.send_message(note({"n": 1}))

    metrics = Metrics()
    started = trio.Event()

    async def run_sub(sub: Subscriber, send: trio.MemorySendChannel[Frame]) -> None:
        async with trio.open_nursery() as n:
            await n.start(sub.run, send)
            started.set()

    async with trio.open_nursery() as nursery:
        node = MemoryNode(nursery, hello)
        node.refuse = ["refused", 503, 503, "refused"]
        sub = memory_sub(node, PENDING, metrics=metrics, backoff_initial=0.01, backoff_max=0.02)
        send, recv = trio.open_memory_channel[Frame](10)
        nursery.start_soon(run_sub, sub, send)
        with trio.fail_after(FAIL_AFTER):
            while len(node.attempts) < 4:
                await trio.sleep(0.001)
        assert not started.is_set()
        frames = await receive(recv, 1)
        assert started.is_set()
        nursery.cancel_scope.cancel()
    assert frames[0].obj == {"n": 1}
    stats = sub.statistics()
    assert (stats.subscriptions, stats.reconnects) == (1, 4)
    assert metrics.value("aether_ws_reconnects_total", stream=PENDING) == 4


async def test_a_dropped_connection_is_logged_without_the_url_path(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def hello(ws: WebSocketConnection, params: list[Any]) -> None:
        await ws.send_message(note({"n": 1}))

    async with trio.open_nursery() as nursery:
        node = MemoryNode(nursery, hello)
        node.refuse = [503, "refused"]
        sub = memory_sub(node, PENDING, url="ws://user:pw@node.test:8546/v3/SECRET?key=SECRET2")
        send, recv = trio.open_memory_channel[Frame](10)
        await nursery.start(sub.run, send)
        nursery.cancel_scope.cancel()
    text = caplog.text
    assert "ws://node.test:8546 rejected the websocket handshake with HTTP 503" in text
    assert "websocket to ws://node.test:8546 failed: ConnectionRefusedError" in text
    assert "SECRET" not in text and "pw" not in text


async def test_heads_that_are_not_objects_are_bad_frames(autojump_clock: Any) -> None:
    async def heads(ws: WebSocketConnection, params: list[Any]) -> None:
        await ws.send_message(note("0x" + "ab" * 32))  # a hash is fine for pending txs, not for heads
        await ws.send_message(note({"number": "0x1"}))

    async with trio.open_nursery() as nursery:
        node = MemoryNode(nursery, heads)
        sub = memory_sub(node, HEADS)
        send, recv = trio.open_memory_channel[Frame](0)
        await nursery.start(sub.run, send)
        frames = await receive(recv, 1)
        nursery.cancel_scope.cancel()
    assert frames[0].obj == {"number": "0x1"}
    assert sub.statistics().bad_frames == 1


async def test_pending_run_returns_when_its_sink_is_closed(autojump_clock: Any) -> None:
    async def two(ws: WebSocketConnection, params: list[Any]) -> None:
        await ws.send_message(note({"n": 1}))
        await trio.sleep(1.0)
        await ws.send_message(note({"n": 2}))

    async with trio.open_nursery() as nursery:
        node = MemoryNode(nursery, two)
        sub = memory_sub(node, PENDING)
        send, recv = trio.open_memory_channel[Frame](10)
        async with trio.open_nursery() as inner:
            await inner.start(sub.run, send)
            assert (await recv.receive()).obj == {"n": 1}
            await recv.aclose()
            # run() must now end on its own (at the next frame): the nursery exits without a cancel
        nursery.cancel_scope.cancel()
    assert sub.statistics().connected is False


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "logs"}, "kind must be 'newHeads' or 'newPendingTransactions', not 'logs'"),
        ({"ws_url": "http://127.0.0.1:1/key123"}, "ws_url must be a ws:// or wss:// URL, not 'http://127.0.0.1:1'"),
        ({"ws_url": "ws://node:99999/key123"}, "ws://node:99999: malformed host or port"),
        ({"ws_url": "ws://node/key123 x"}, "ws://node: spaces or non-ASCII"),
        ({"ws_url": "wss://node/key123é"}, "wss://node: spaces or non-ASCII"),
        ({"ws_url": "wss:///key123"}, "ws_url must be a ws:// or wss:// URL"),
        ({"max_fetch_concurrency": 0}, "max_fetch_concurrency must be >= 1, not 0"),
        ({"fetch_queue": 0}, "fetch_queue must be >= 1, not 0"),
        ({"backoff_initial": 0}, "need 0 < backoff_initial <= backoff_max"),
        ({"backoff_initial": 6.0}, "need 0 < backoff_initial <= backoff_max"),
        ({"idle_timeout": 0}, "idle_timeout must be positive or None, not 0"),
        ({"ping_timeout": -1}, "ping_timeout and connect_timeout must be positive"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"ws_url": "ws://127.0.0.1:1", "kind": PENDING, **kwargs}
    with pytest.raises(ValueError) as info:
        Subscriber(args.pop("ws_url"), args.pop("kind"), **args)
    assert str(info.value).startswith(message)
    assert "key123" not in str(info.value)


def test_kinds_are_the_nodes_own_names() -> None:
    assert [str(k) for k in SubscriptionKind] == ["newHeads", "newPendingTransactions"]
    assert Subscriber("ws://127.0.0.1:1", "newHeads").kind is HEADS


# --------------------------------------------------------------------------- real loopback (TCP, TLS)


@contextlib.asynccontextmanager
async def fake_node(on_subscribed: Handler, *, port: int = 0,
                    ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    """trio-websocket's server on 127.0.0.1, answering like :class:`MemoryNode`."""

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        with contextlib.suppress(ConnectionClosed):
            await _answer(ws, on_subscribed, False)

    async with trio.open_nursery() as nursery:
        server = await nursery.start(functools.partial(serve_websocket, handler, "127.0.0.1", port, ssl_context))
        yield server.port
        nursery.cancel_scope.cancel()


async def test_heads_over_loopback_and_run_returns_when_every_receiver_is_closed() -> None:
    async def two(ws: WebSocketConnection, params: list[Any]) -> None:
        await ws.send_message(note({"n": 1}))
        await ws.send_message(note({"n": 2}))

    async with fake_node(two) as port:
        sub = Subscriber(f"ws://127.0.0.1:{port}", HEADS)
        send, recv = trio.open_memory_channel[Frame](0)
        async with trio.open_nursery() as nursery:
            await nursery.start(sub.run, send)
            assert (await recv.receive()).obj == {"n": 1}
            await recv.aclose()
            # run() must now end on its own: the nursery exits without a cancel
    assert sub.statistics().connected is False


@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (key, cert), made by the openssl CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl binary to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    key, cert = str(d / "key.pem"), str(d / "cert.pem")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return key, cert


async def test_wss_verifies_the_certificate_and_says_so_in_one_line_without_the_key(
    tls_cert: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    key, cert = tls_cert
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def hello(ws: WebSocketConnection, params: list[Any]) -> None:
        await ws.send_message(note({"n": 1}))

    async with fake_node(hello, ssl_context=server_ctx) as port:
        url = f"wss://127.0.0.1:{port}/v3/secret-key"
        # Trusted (the test's own CA): frames flow.
        async with trio.open_nursery() as nursery:
            sub = Subscriber(url, PENDING, ssl_context=ssl.create_default_context(cafile=cert))
            send, recv = trio.open_memory_channel[Frame](10)
            await nursery.start(sub.run, send)
            assert [f.obj for f in await receive(recv, 1)] == [{"n": 1}]
            nursery.cancel_scope.cancel()
        # The system trust store does not know it: refused at once, clearly, never subscribed.
        async with trio.open_nursery() as nursery:
            sub = Subscriber(url, PENDING, backoff_initial=0.01, backoff_max=0.02)
            nursery.start_soon(sub.run, trio.open_memory_channel[Frame](1)[0])
            with trio.fail_after(FAIL_AFTER):
                while sub.statistics().reconnects < 2:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    assert sub.statistics().subscriptions == 0
    failures = [r.getMessage() for r in caplog.records if "TLS with" in r.getMessage()]
    assert failures, caplog.text
    assert all(re.search(rf"TLS with wss://127.0.0.1:{port} failed: .*certificate", m) for m in failures), failures
    assert all("\n" not in m for m in failures)
    assert "secret-key" not in caplog.text


async def _burst_node(frames: int, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """A node that answers ``eth_subscribe`` and then writes ``frames`` notifications in one TCP write."""

    async def handler(stream: trio.SocketStream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, Request):
                    await stream.send_all(ws.send(AcceptConnection()))
                elif isinstance(event, TextMessage):
                    req = orjson.loads(event.data)
                    reply = ws.send(TextMessage(orjson.dumps({"jsonrpc": "2.0", "id": req["id"], "result": "0xsub"})
                                                .decode()))
                    await stream.send_all(reply + b"".join(ws.send(TextMessage(note({"i": i})))
                                                           for i in range(frames)))

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handler, listeners)
        task_status.started(listeners[0].socket.getsockname()[1])


async def test_a_burst_in_one_tcp_write_gives_the_consumer_a_turn_between_frames() -> None:
    """The pending path over real loopback: 200 frames arrive in one write, the sink screens
    inline and hands victims to a 4-slot queue. The subscription yields after each frame it
    hands on, so the consumer empties the queue between frames: not one is dropped, and
    they stay in order."""
    forwarded: list[int] = []
    queue_tx, queue_rx = trio.open_memory_channel[int](4)
    drops = 0
    last_seen = trio.Event()

    class Sink:  # a FrameSink
        def take_frame(self, frame: Frame) -> None:
            nonlocal drops
            if frame.obj["i"] == 199:
                last_seen.set()
            try:
                queue_tx.send_nowait(frame.obj["i"])
            except trio.WouldBlock:
                drops += 1

    async def consume() -> None:
        async for i in queue_rx:
            forwarded.append(i)

    async with trio.open_nursery() as nursery:
        port = await nursery.start(_burst_node, 200)
        nursery.start_soon(consume)
        sub = Subscriber(f"ws://127.0.0.1:{port}", PENDING)
        nursery.start_soon(sub.run, Sink())
        with trio.fail_after(FAIL_AFTER):
            await last_seen.wait()
            await trio.testing.wait_all_tasks_blocked()  # the consumer drains what is queued
        nursery.cancel_scope.cancel()
    assert (forwarded, drops) == (list(range(200)), 0)
    assert sub.statistics().frames == 200
