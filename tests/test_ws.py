"""WebSocket subscriptions: real anvil, a cuttable loopback proxy, and loopback fake nodes."""

from __future__ import annotations

import contextlib
import functools
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest
import trio
import trio.testing
from eth_account import Account
from eth_utils import to_checksum_address
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

from aether.chain import (
    HEADS,
    PENDING,
    Frame,
    RpcClient,
    Subscriber,
    decode_pending_tx,
    head_from_rpc,
    keccak256,
    open_rpc,
)
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


async def receive(recv: trio.MemoryReceiveChannel[Frame], n: int) -> list[Frame]:
    with trio.fail_after(FAIL_AFTER):
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


# --------------------------------------------------------------------------- loopback fake node

Handler = Callable[[WebSocketConnection, list[Any]], Awaitable[None]]


@contextlib.asynccontextmanager
async def fake_node(on_subscribed: Handler, *, refuse_full: bool = False, port: int = 0) -> AsyncIterator[int]:
    """A WebSocket server that answers ``eth_subscribe`` with id ``0xsub`` and then runs ``on_subscribed``."""

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        with contextlib.suppress(ConnectionClosed):
            while True:
                req = orjson.loads(await ws.get_message())
                if refuse_full and len(req["params"]) > 1:
                    await ws.send_message(orjson.dumps(
                        {"jsonrpc": "2.0", "id": req["id"], "error": {"code": -32602, "message": "invalid params"}}
                    ).decode())
                    continue
                await ws.send_message(orjson.dumps({"jsonrpc": "2.0", "id": req["id"], "result": "0xsub"}).decode())
                await on_subscribed(ws, req["params"])
                await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(functools.partial(serve_websocket, handler, "127.0.0.1", port, None))
        yield server.port
        nursery.cancel_scope.cancel()


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


# --------------------------------------------------------------------------- loopback fake nodes


async def test_garbage_frames_are_counted_and_skipped() -> None:
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
    async with fake_node(spew) as port, trio.open_nursery() as nursery:
        sub = Subscriber(f"ws://127.0.0.1:{port}", PENDING, metrics=metrics)
        send, recv = trio.open_memory_channel[Frame](10)
        await nursery.start(sub.run, send)
        frames = await receive(recv, 2)
        nursery.cancel_scope.cancel()
    assert [f.obj for f in frames] == [good1, good2]
    stats = sub.statistics()
    assert (stats.frames, stats.bad_frames, stats.reconnects) == (2, 8, 0)
    assert metrics.value("aether_mempool_intake_rejected_total", reason="bad_frame") == 8


async def test_refused_full_param_falls_back_to_hashes_and_fetch_failures_are_counted() -> None:
    hashes = ["0x" + f"{i:064x}" for i in range(1, 6)]
    subscribed_with: list[list[Any]] = []

    async def announce(ws: WebSocketConnection, params: list[Any]) -> None:
        subscribed_with.append(params)
        for h in hashes:
            await ws.send_message(note(h))

    def node(request: httpx.Request) -> httpx.Response:
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
    async with fake_node(announce, refuse_full=True) as port, trio.open_nursery() as nursery:
        rpc = RpcClient("http://fetch.invalid", transport=httpx.MockTransport(node))
        sub = Subscriber(f"ws://127.0.0.1:{port}", PENDING, rpc=rpc, metrics=metrics, max_fetch_concurrency=1)
        send, recv = trio.open_memory_channel[Frame](10)
        await nursery.start(sub.run, send)
        frames = await receive(recv, 2)  # hashes 1 and 5; with one worker they come in order
        nursery.cancel_scope.cancel()
    assert subscribed_with == [[PENDING]]
    assert [f.obj["hash"] for f in frames] == [hashes[0], hashes[4]]
    stats = sub.statistics()
    assert (stats.frames, stats.fetched, stats.fetch_failed, stats.reconnects) == (5, 2, 3, 0)
    assert metrics.value("aether_mempool_intake_rejected_total", reason="fetch_failed") == 3


async def test_full_channel_drops_pending_and_counts() -> None:
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
    async with fake_node(burst_then_hang_up) as port, trio.open_nursery() as nursery:
        sub = Subscriber(f"ws://127.0.0.1:{port}", PENDING, metrics=metrics, backoff_initial=0.01)
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


async def test_stalled_peer_is_detected_by_ping_and_reconnected() -> None:
    async def one_then_quiet(ws: WebSocketConnection, params: list[Any]) -> None:
        await ws.send_message(note({"n": 1}))

    async with fake_node(one_then_quiet) as port, trio.open_nursery() as nursery:
        proxy = Proxy(port)
        await nursery.start(proxy.serve)
        sub = Subscriber(f"ws://127.0.0.1:{proxy.port}", PENDING, idle_timeout=0.1, ping_timeout=0.1,
                         backoff_initial=0.01, backoff_max=0.02)
        send, recv = trio.open_memory_channel[Frame](10)
        await nursery.start(sub.run, send)
        await receive(recv, 1)
        proxy.stall()
        with trio.fail_after(FAIL_AFTER):
            await sub.wait_subscribed(2)
        await receive(recv, 1)  # the new connection's first frame
        nursery.cancel_scope.cancel()
    assert sub.statistics().reconnects == 1


async def test_quiet_but_alive_peer_is_not_reconnected() -> None:
    async def quiet_then_one(ws: WebSocketConnection, params: list[Any]) -> None:
        await trio.sleep(0.35)  # a quiet mempool: several idle periods with no frame
        await ws.send_message(note({"n": 1}))

    async with fake_node(quiet_then_one) as port, trio.open_nursery() as nursery:
        sub = Subscriber(f"ws://127.0.0.1:{port}", PENDING, idle_timeout=0.1, ping_timeout=0.5)
        send, recv = trio.open_memory_channel[Frame](10)
        await nursery.start(sub.run, send)
        await receive(recv, 1)
        nursery.cancel_scope.cancel()
    assert sub.statistics().reconnects == 0


async def test_node_down_at_start_is_retried_until_it_comes_up() -> None:
    """First a port that answers 503 to every handshake (a node behind a proxy, restarting),
    then a working node on the same port: run() keeps retrying and starts once subscribed."""
    rejected = 0
    three_attempts = trio.Event()

    async def unavailable(stream: trio.SocketStream) -> None:
        nonlocal rejected
        async with stream:
            with contextlib.suppress(trio.BrokenResourceError):
                await stream.receive_some()
                await stream.send_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
        rejected += 1
        if rejected == 3:
            three_attempts.set()

    async def hello(ws: WebSocketConnection, params: list[Any]) -> None:
        await ws.send_message(note({"n": 1}))

    metrics = Metrics()
    started = trio.Event()

    async def run_sub(sub: Subscriber, send: trio.MemorySendChannel[Frame]) -> None:
        async with trio.open_nursery() as n:
            await n.start(sub.run, send)
            started.set()

    async with trio.open_nursery() as nursery:
        async with trio.open_nursery() as refuser:
            listeners = await refuser.start(functools.partial(trio.serve_tcp, unavailable, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            sub = Subscriber(f"ws://127.0.0.1:{port}", PENDING, metrics=metrics,
                             backoff_initial=0.01, backoff_max=0.02)
            send, recv = trio.open_memory_channel[Frame](10)
            nursery.start_soon(run_sub, sub, send)
            with trio.fail_after(FAIL_AFTER):
                await three_attempts.wait()
            assert not started.is_set()
            refuser.cancel_scope.cancel()
        async with fake_node(hello, port=port):
            frames = await receive(recv, 1)
            assert started.is_set()
            nursery.cancel_scope.cancel()
    assert frames[0].obj == {"n": 1}
    stats = sub.statistics()
    assert stats.subscriptions == 1
    assert stats.reconnects >= 3
    assert metrics.value("aether_ws_reconnects_total", stream=PENDING) == stats.reconnects


async def test_heads_that_are_not_objects_are_bad_frames() -> None:
    async def heads(ws: WebSocketConnection, params: list[Any]) -> None:
        await ws.send_message(note("0x" + "ab" * 32))  # a hash is fine for pending txs, not for heads
        await ws.send_message(note({"number": "0x1"}))

    async with fake_node(heads) as port, trio.open_nursery() as nursery:
        sub = Subscriber(f"ws://127.0.0.1:{port}", HEADS)
        send, recv = trio.open_memory_channel[Frame](0)
        await nursery.start(sub.run, send)
        frames = await receive(recv, 1)
        nursery.cancel_scope.cancel()
    assert frames[0].obj == {"number": "0x1"}
    assert sub.statistics().bad_frames == 1


async def test_run_returns_when_every_receiver_is_closed() -> None:
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


def test_backoff_doubles_with_jitter_and_caps() -> None:
    sub = Subscriber("ws://127.0.0.1:1", HEADS, backoff_initial=0.1, backoff_max=1.0, rng=random.Random(7))
    delays = [sub._next_delay() for _ in range(8)]
    caps = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0]
    for d, cap in zip(delays, caps, strict=True):
        assert cap / 2 <= d <= cap


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "logs"}, "kind must be 'newHeads' or 'newPendingTransactions', not 'logs'"),
        ({"ws_url": "http://127.0.0.1:1/key123"}, "ws_url must be a ws:// or wss:// URL, not 'http://127.0.0.1:1'"),
        ({"max_fetch_concurrency": 0}, "max_fetch_concurrency must be >= 1, not 0"),
        ({"backoff_initial": 0}, "need 0 < backoff_initial <= backoff_max"),
        ({"backoff_initial": 6.0}, "need 0 < backoff_initial <= backoff_max"),
        ({"idle_timeout": 0}, "idle_timeout must be positive or None, not 0"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"ws_url": "ws://127.0.0.1:1", "kind": PENDING, **kwargs}
    with pytest.raises(ValueError) as info:
        Subscriber(args.pop("ws_url"), args.pop("kind"), **args)
    assert str(info.value).startswith(message)
    assert "key123" not in str(info.value)


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


async def _burst_node(frames: int, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """A node that answers ``eth_subscribe`` and then writes ``frames`` notifications in one TCP write."""
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, Request, TextMessage

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


@pytest.mark.parametrize("hands_on", [True, False])
async def test_a_burst_read_in_one_go_gives_the_consumer_a_turn_after_each_forwarded_frame(hands_on: bool) -> None:
    """The connection reads a whole burst at once and the sink screens inline (no task switch per
    frame). A sink that says it handed work on makes the subscription yield, so a small queue
    behind it never overflows; one that says nothing leaves the consumer starved until the
    burst is through (the control: the same burst then overflows)."""
    forwarded: list[int] = []
    queue_tx, queue_rx = trio.open_memory_channel[int](4)
    drops = 0
    last_seen = trio.Event()

    class Sink:
        def send_nowait(self, frame: Frame) -> bool | None:
            nonlocal drops
            if frame.obj["i"] == 199:
                last_seen.set()
            try:
                queue_tx.send_nowait(frame.obj["i"])
            except trio.WouldBlock:
                drops += 1
                return None
            return True if hands_on else None

    async def consume() -> None:
        async for i in queue_rx:
            forwarded.append(i)

    async with trio.open_nursery() as nursery:
        port = await nursery.start(_burst_node, 200)
        nursery.start_soon(consume)
        sub = Subscriber(f"ws://127.0.0.1:{port}", PENDING)
        nursery.start_soon(sub.run, Sink())  # type: ignore[arg-type]
        with trio.fail_after(FAIL_AFTER):
            await last_seen.wait()
            await trio.testing.wait_all_tasks_blocked()  # the consumer drains what is queued
        nursery.cancel_scope.cancel()
    if hands_on:
        assert (forwarded, drops) == (list(range(200)), 0)
    else:
        assert drops > 100, drops  # the consumer ran only once the burst's bytes were all screened
