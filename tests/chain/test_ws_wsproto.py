"""The subscription's WebSocket client (trio-websocket over the read budget) at its edges.

The node here is wsproto's *server* connection behind an in-memory ``trio.abc.Stream``
(the subscriber's ``transport`` seam): what the subscriber writes is fed to it, and
what it answers is queued as *reads*, one item per ``receive_some`` (cut to the size
asked), so a test decides exactly where a read ends: a frame split at every byte, a
burst of 10,000 frames in one read, a handshake answer that is garbage or stops half
way. Every byte on both sides is wsproto's; time is virtual (autojump clock).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)

from aether.chain import PENDING, Frame, Subscriber
from aether.chain import _ws
from aether.chain._ws import MAX_MESSAGE_SIZE, READ_BUDGET, RECEIVE_BUFFER_SIZE

URL = "ws://node.test:8546/v3/SECRET"
FAIL_AFTER = 30


def note(result: object) -> str:
    return orjson.dumps({"jsonrpc": "2.0", "method": "eth_subscription",
                         "params": {"subscription": "0xsub", "result": result}}).decode()


class NodeSide(trio.abc.Stream):
    """One connection as the subscriber's transport sees it; the node's wsproto server behind it."""

    def __init__(self, node: ScriptedNode, index: int) -> None:
        self.node = node
        self.index = index
        self.ws = WSConnection(ConnectionType.SERVER)
        self.received: list[Event] = []  # what the subscriber sent, as the node parsed it
        self.bytes_read = 0  # what the subscriber has read so far
        self.read_at_close: int | None = None  # ... when its Close came
        self.closed = False
        self._send, self._reads = trio.open_memory_channel[bytes](math.inf)
        self._rest = b""
        self._eof = False

    def push(self, data: bytes) -> None:
        """Queue ``data`` as one read (``b""``: the end of the stream)."""
        self._send.send_nowait(data)

    def frame(self, event: Event) -> bytes:
        return self.ws.send(event)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.closed:
            raise trio.ClosedResourceError
        await trio.lowlevel.checkpoint()
        self.ws.receive_data(bytes(data))
        events = list(self.ws.events())
        if any(isinstance(e, Ping) for e in events) and self.node.reset_on_ping(self):
            self.closed = True  # the connection was reset: this write fails, and so does every read
            self._send.send_nowait(b"")
            raise trio.BrokenResourceError("connection reset")
        for event in events:
            self.received.append(event)
            if isinstance(event, Request):
                answer = self.node.handshake
                if answer is None:
                    self.push(self.ws.send(AcceptConnection()))
                else:
                    for chunk in answer(self):
                        self.push(chunk)
            elif isinstance(event, TextMessage):
                req = orjson.loads(event.data)
                if req.get("method") == "eth_subscribe" and self.node.refuse_subscribe(self):
                    error = {"code": -32601, "message": "no subscriptions here"}
                    self.push(self.ws.send(TextMessage(orjson.dumps(
                        {"jsonrpc": "2.0", "id": req["id"], "error": error}).decode())))
                elif req.get("method") == "eth_subscribe":
                    reply = {"jsonrpc": "2.0", "id": req["id"], "result": "0xsub"}
                    self.push(self.ws.send(TextMessage(orjson.dumps(reply).decode())))
                    self.node.on_subscribed(self)
            elif isinstance(event, Ping):
                self.push(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                self.read_at_close = self.bytes_read
                for chunk in self.node.on_close(self):
                    self.push(chunk)
                if self.ws.state is ConnectionState.REMOTE_CLOSING:
                    self.push(self.ws.send(event.response()))
                self.push(b"")

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self.closed:
            raise trio.ClosedResourceError
        if self._eof:
            await trio.lowlevel.checkpoint()
            return b""
        if self._rest:
            data = self._rest
            await trio.lowlevel.checkpoint()
        else:
            data = await self._reads.receive()
        if not data:
            self._eof = True
            return b""
        cut = len(data) if max_bytes is None else max_bytes
        chunk, self._rest = data[:cut], data[cut:]
        self.bytes_read += len(chunk)
        return chunk

    async def aclose(self) -> None:
        self.closed = True
        await trio.lowlevel.checkpoint()


class ScriptedNode:
    """The transport: each dial is a new :class:`NodeSide`; ``on_subscribed`` scripts what follows."""

    def __init__(
        self,
        on_subscribed: Callable[[NodeSide], None] = lambda side: None,
        handshake: Callable[[NodeSide], list[bytes]] | None = None,
        on_close: Callable[[NodeSide], list[bytes]] = lambda side: [],
        refuse_subscribe: Callable[[NodeSide], bool] = lambda side: False,
        reset_on_ping: Callable[[NodeSide], bool] = lambda side: False,
    ) -> None:
        self.reset_on_ping = reset_on_ping
        self.refuse_subscribe = refuse_subscribe
        self.on_subscribed = on_subscribed
        self.handshake = handshake
        self.on_close = on_close  # reads queued when the subscriber's Close comes, before the answer
        self.sides: list[NodeSide] = []
        self.dialled: list[float] = []

    async def open_stream(self) -> trio.abc.Stream:
        self.dialled.append(trio.current_time())
        side = NodeSide(self, len(self.sides))
        self.sides.append(side)
        return side


async def frames_of(node: ScriptedNode, n: int, **kwargs: Any) -> tuple[list[Frame], Subscriber]:
    """Run a pending subscription over ``node`` until ``n`` frames came through; then stop it."""
    sub = Subscriber(URL, PENDING, transport=node.open_stream, **kwargs)
    send, recv = trio.open_memory_channel[Frame](math.inf)
    got: list[Frame] = []
    with trio.fail_after(FAIL_AFTER):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sub.run, send)
            while len(got) < n:
                got.append(await recv.receive())
            nursery.cancel_scope.cancel()
    return got, sub


# --------------------------------------------------------------------------- reads and frames


async def test_frames_split_across_two_reads_at_every_byte_boundary(autojump_clock: Any) -> None:
    """Two frames (a 7-bit and a 16-bit length) in two reads, cut at every byte: both arrive whole."""
    small, large = {"n": 1}, {"pad": "y" * 200}
    for cut in range(1, 400):
        def script(side: NodeSide, cut: int = cut) -> None:
            data = side.frame(TextMessage(note(small))) + side.frame(TextMessage(note(large)))
            assert cut < len(data)
            side.push(data[:cut])
            side.push(data[cut:])

        node = ScriptedNode(script)
        got, sub = await frames_of(node, 2)
        assert [f.obj for f in got] == [small, large], cut
        assert (sub.statistics().bad_frames, sub.statistics().reconnects) == (0, 0)


async def test_fragments_with_a_ping_between_them_are_reassembled_and_the_ping_answered(
    autojump_clock: Any,
) -> None:
    text = note({"n": 1, "pad": "z" * 50})
    binary = note({"n": 2}).encode()

    def script(side: NodeSide) -> None:
        side.push(side.frame(TextMessage(text[:20], message_finished=False)))
        side.push(side.frame(Ping(b"are you there")))
        side.push(side.frame(TextMessage(text[20:40], message_finished=False))
                  + side.frame(TextMessage(text[40:], message_finished=True)))
        # A binary message in three fragments, all in one read.
        side.push(side.frame(BytesMessage(binary[:5], message_finished=False))
                  + side.frame(BytesMessage(binary[5:9], message_finished=False))
                  + side.frame(BytesMessage(binary[9:], message_finished=True)))

    node = ScriptedNode(script)
    got, sub = await frames_of(node, 2)
    assert [f.obj for f in got] == [{"n": 1, "pad": "z" * 50}, {"n": 2}]
    pongs = [e for e in node.sides[0].received if isinstance(e, Pong)]
    assert [p.payload for p in pongs] == [b"are you there"]
    assert sub.statistics().bad_frames == 0


async def test_a_message_over_the_cap_is_refused_with_1009_before_it_is_read_whole(autojump_clock: Any) -> None:
    """One text frame that announces 64 MiB: the subscriber closes with 1009 once the cap is
    passed, having read about the cap (not the frame), and the next connection delivers."""
    def script(side: NodeSide) -> None:
        if side.index == 0:
            # A frame header written by hand, so the test need not build 64 MiB: FIN + text,
            # 64-bit length, unmasked (a server frame).
            side.push(b"\x81\x7f" + (64 * 1024 * 1024).to_bytes(8, "big"))
            for _ in range(6):
                side.push(b"x" * (1024 * 1024))
        else:
            side.push(side.frame(TextMessage(note({"n": 2}))))

    node = ScriptedNode(script)
    got, sub = await frames_of(node, 1, backoff_initial=0.01)
    assert [f.obj for f in got] == [{"n": 2}]
    first = node.sides[0]
    closes = [e for e in first.received if isinstance(e, CloseConnection)]
    assert [c.code for c in closes] == [1009]
    assert first.read_at_close is not None
    assert MAX_MESSAGE_SIZE < first.read_at_close <= MAX_MESSAGE_SIZE + RECEIVE_BUFFER_SIZE + 1024  # + the handshake
    assert first.closed
    stats = sub.statistics()
    assert (stats.frames, stats.reconnects, stats.subscriptions) == (1, 1, 2)


async def test_fragments_that_add_up_past_the_cap_are_refused_with_1009(autojump_clock: Any) -> None:
    piece = "q" * (1024 * 1024)

    def script(side: NodeSide) -> None:
        if side.index == 0:
            for _ in range(5):
                side.push(side.frame(TextMessage(piece, message_finished=False)))
            side.push(side.frame(TextMessage("}", message_finished=True)))
        side.push(side.frame(TextMessage(note({"n": side.index}))))

    node = ScriptedNode(script)
    got, sub = await frames_of(node, 1, backoff_initial=0.01)
    assert [f.obj for f in got] == [{"n": 1}]  # the first connection's small frame never counted
    closes = [e for e in node.sides[0].received if isinstance(e, CloseConnection)]
    assert [c.code for c in closes] == [1009]


# --------------------------------------------------------------------------- the opening handshake


@pytest.mark.parametrize(
    ("answer", "logged"),
    [
        (lambda side: [b"SSH-2.0-OpenSSH_9.6\r\n\r\n"],
         "websocket to ws://node.test:8546 failed: the node broke the websocket protocol"),
        (lambda side: [side.ws.send(RejectConnection(status_code=403))],
         "ws://node.test:8546 rejected the websocket handshake with HTTP 403"),
        (lambda side: [b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n", b""],
         "websocket handshake with ws://node.test:8546 failed: the connection closed"),
        (lambda side: [b""], "websocket handshake with ws://node.test:8546 failed: the connection closed"),
        # A 101 without the headers that prove the node read our key.
        (lambda side: [b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"],
         "websocket to ws://node.test:8546 failed: the node broke the websocket protocol"),
        # A subprotocol we never asked for, named by the node: its words stay out of the log.
        (lambda side: [side.ws.send(AcceptConnection())
                       .replace(b"\r\n\r\n", b"\r\nsec-websocket-protocol: EVIL-LOG-TEXT\r\n\r\n", 1)],
         "websocket to ws://node.test:8546 failed: the node broke the websocket protocol"),
    ],
    ids=["garbage", "403", "closed-mid-answer", "closed-at-once", "101-without-accept", "unasked-subprotocol"],
)
async def test_a_bad_upgrade_answer_is_a_clear_error_and_a_quick_retry(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture,
    answer: Callable[[NodeSide], list[bytes]], logged: str,
) -> None:
    """Not a hang until ``connect_timeout``: the second dial follows within the backoff."""
    caplog.set_level(logging.WARNING)
    calls = 0

    def handshake(side: NodeSide) -> list[bytes]:
        nonlocal calls
        calls += 1
        return answer(side) if calls == 1 else [side.ws.send(AcceptConnection())]

    node = ScriptedNode(lambda side: side.push(side.frame(TextMessage(note({"n": 1})))), handshake)
    got, sub = await frames_of(node, 1, backoff_initial=0.01, connect_timeout=5.0)
    assert [f.obj for f in got] == [{"n": 1}]
    assert node.dialled[1] - node.dialled[0] < 0.1
    assert logged in caplog.text
    assert "SECRET" not in caplog.text and "EVIL" not in caplog.text
    assert node.sides[0].closed
    assert sub.statistics().reconnects == 1


async def test_a_node_that_never_answers_the_upgrade_times_out(autojump_clock: Any,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    def handshake(side: NodeSide) -> list[bytes]:
        nonlocal calls
        calls += 1
        return [] if calls == 1 else [side.ws.send(AcceptConnection())]

    node = ScriptedNode(lambda side: side.push(side.frame(TextMessage(note({"n": 1})))), handshake)
    await frames_of(node, 1, backoff_initial=0.01, connect_timeout=2.0)
    assert 2.0 <= node.dialled[1] - node.dialled[0] < 2.1
    assert "websocket handshake with ws://node.test:8546 timed out" in caplog.text
    assert node.sides[0].closed


async def test_frames_in_the_same_read_as_the_upgrade_answer_are_kept(autojump_clock: Any) -> None:
    def handshake(side: NodeSide) -> list[bytes]:
        return [side.ws.send(AcceptConnection()) + side.ws.send(Ping(b"early"))]

    node = ScriptedNode(lambda side: side.push(side.frame(TextMessage(note({"n": 1})))), handshake)
    got, _ = await frames_of(node, 1)
    assert [f.obj for f in got] == [{"n": 1}]
    assert [e.payload for e in node.sides[0].received if isinstance(e, Pong)] == [b"early"]


# --------------------------------------------------------------------------- closing


async def test_the_peers_close_is_answered_and_the_stream_resumes(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def script(side: NodeSide) -> None:
        side.push(side.frame(TextMessage(note({"n": side.index}))))
        if side.index == 0:
            side.push(side.frame(CloseConnection(code=1001, reason="going away")))

    node = ScriptedNode(script)
    got, sub = await frames_of(node, 2, backoff_initial=0.01)
    assert [f.obj for f in got] == [{"n": 0}, {"n": 1}]
    first = node.sides[0]
    assert [e.code for e in first.received if isinstance(e, CloseConnection)] == [1001]  # our answer echoes it
    assert first.ws.state is ConnectionState.CLOSED  # the close handshake completed
    assert first.closed
    assert "websocket to ws://node.test:8546 closed: GOING_AWAY (1001)" in caplog.text
    assert sub.statistics().reconnects == 1


async def test_a_frame_wsproto_refuses_closes_with_its_code(autojump_clock: Any,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """A masked frame from the server side is a protocol error: a drop logged as 1002 (trio-websocket
    does not tell the peer; the stream is closed all the same), and a reconnect."""
    def script(side: NodeSide) -> None:
        if side.index == 0:
            side.push(b"\x81\x82" + b"\x01\x02\x03\x04" + bytes([ord("{") ^ 1, ord("}") ^ 2]))
        else:
            side.push(side.frame(TextMessage(note({"n": 1}))))

    node = ScriptedNode(script)
    got, sub = await frames_of(node, 1, backoff_initial=0.01)
    assert [f.obj for f in got] == [{"n": 1}]
    assert "closed: PROTOCOL_ERROR (1002)" in caplog.text
    assert sub.statistics().reconnects == 1
    assert node.sides[0].closed


async def test_the_end_of_the_stream_is_a_drop_without_a_close_frame(autojump_clock: Any,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    def script(side: NodeSide) -> None:
        side.push(side.frame(TextMessage(note({"n": side.index}))))
        if side.index == 0:
            side.push(b"")

    node = ScriptedNode(script)
    got, _ = await frames_of(node, 2, backoff_initial=0.01)
    assert [f.obj for f in got] == [{"n": 0}, {"n": 1}]
    # RFC 6455 7.1.5: a connection closed without a Close frame is reported as 1006.
    assert "websocket to ws://node.test:8546 closed: ABNORMAL_CLOSURE (1006)" in caplog.text
    assert node.sides[0].closed


async def test_cancelled_run_closes_the_stream_without_waiting_for_the_peer(autojump_clock: Any) -> None:
    node = ScriptedNode(lambda side: side.push(side.frame(TextMessage(note({"n": 1})))))
    sub = Subscriber(URL, PENDING, transport=node.open_stream)
    send, recv = trio.open_memory_channel[Frame](10)
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        await nursery.start(sub.run, send)
        await recv.receive()
        nursery.cancel_scope.cancel()
    assert trio.current_time() == start  # no close handshake wait under cancellation
    assert node.sides[0].closed


# --------------------------------------------------------------------------- bursts and scheduling


async def test_a_burst_of_10000_frames_in_one_write_leaves_the_consumer_its_turns(autojump_clock: Any) -> None:
    """The starvation case: 10,000 frames written at once (a few reads of 256 KiB), a
    consumer behind a 4-slot channel. Reading each frame is a checkpoint, so the consumer
    keeps up: none dropped, all in order."""
    n = 10_000

    def script(side: NodeSide) -> None:
        side.push(b"".join(side.frame(TextMessage(note({"i": i, "pad": "p" * 64}))) for i in range(n)))

    node = ScriptedNode(script)
    sub = Subscriber(URL, PENDING, transport=node.open_stream)
    send, recv = trio.open_memory_channel[Frame](4)
    got: list[int] = []
    with trio.fail_after(FAIL_AFTER):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sub.run, send)
            async for frame in recv:
                got.append(frame.obj["i"])
                if len(got) == n:
                    break
            nursery.cancel_scope.cancel()
    assert got == list(range(n))
    assert sub.statistics().dropped == 0
    assert node.sides[0].bytes_read > 2 * RECEIVE_BUFFER_SIZE  # it did come in big reads


async def test_cancellation_mid_burst_stops_the_pump_at_the_next_frame(autojump_clock: Any) -> None:
    n = 10_000
    taken = 0

    def script(side: NodeSide) -> None:
        side.push(b"".join(side.frame(TextMessage(note({"i": i}))) for i in range(n)))

    with trio.CancelScope() as scope:

        class Sink:  # a FrameSink that cancels the run half-way through the burst
            def take_frame(self, frame: Frame) -> None:
                nonlocal taken
                taken += 1
                if frame.obj["i"] == 100:
                    scope.cancel()

        node = ScriptedNode(script)
        sub = Subscriber(URL, PENDING, transport=node.open_stream)
        await sub.run(Sink())
    assert scope.cancelled_caught
    assert taken == 101
    assert node.sides[0].closed


async def test_cancellation_mid_burst_of_malformed_frames_is_prompt(autojump_clock: Any) -> None:
    """Frames nobody wants: reading each one is a checkpoint, so the cancellation lands at the next."""
    n = 10_000
    seen = 0

    with trio.CancelScope() as scope:

        class Counter:
            def inc(self, amount: float = 1) -> None:
                nonlocal seen
                seen += 1
                if seen == 100:
                    scope.cancel()

        class Family:
            def labels(self, *labelvalues: str) -> Counter:
                return Counter()

        class Metrics:
            ws_reconnects = dropped = intake_rejected = Family()

        def script(side: NodeSide) -> None:
            side.push(b"".join(side.frame(TextMessage("not json")) for _ in range(n)))

        node = ScriptedNode(script)
        sub = Subscriber(URL, PENDING, transport=node.open_stream, metrics=Metrics())
        await sub.run(trio.open_memory_channel[Frame](1)[0])
    assert scope.cancelled_caught
    assert sub.statistics().bad_frames == 100


# --------------------------------------------------------------------------- adversarial review


async def test_a_flood_of_empty_fragments_is_cut_at_the_read_budget(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A hostile node opens a text message and sends empty continuation frames (2 bytes each on
    the wire) without end. trio-websocket keeps a list slot for each and adds 0 to its size cap,
    so memory would grow without bound: the read budget ends the connection once the node has
    sent that much without a message, and the next connection delivers. (A smaller budget here,
    so the test need not parse millions of frames; the bound is the same code.)"""
    monkeypatch.setattr(_ws, "READ_BUDGET", 200_000)
    empty_continuations = b"\x00\x00" * 100_000  # opcode 0 (continuation), FIN clear, length 0

    def script(side: NodeSide) -> None:
        if side.index == 0:
            side.push(side.frame(TextMessage("{", message_finished=False)))
            for _ in range(10):  # 2 MB in all, ten times the budget
                side.push(empty_continuations)
            side.push(b"")
        else:
            side.push(side.frame(TextMessage(note({"n": 2}))))

    node = ScriptedNode(script)
    got, sub = await frames_of(node, 1, backoff_initial=0.01)
    assert [f.obj for f in got] == [{"n": 2}]
    first = node.sides[0]
    assert first.closed
    assert 200_000 < first.bytes_read <= 200_000 + RECEIVE_BUFFER_SIZE + 1024  # + the handshake and reply
    assert "bytes without a complete message (at most 200,000)" in caplog.text
    assert sub.statistics().reconnects == 1


async def test_a_flood_of_pings_is_cut_at_the_read_budget(
    autojump_clock: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pings are answered, but a node that sends nothing else is not read for ever."""
    monkeypatch.setattr(_ws, "READ_BUDGET", 100_000)

    def script(side: NodeSide) -> None:
        if side.index == 0:
            ping = side.frame(Ping(b"p" * 100))
            for _ in range(20):
                side.push(ping * 100)  # ~10 KB a read
        else:
            side.push(side.frame(TextMessage(note({"n": 2}))))

    node = ScriptedNode(script)
    got, sub = await frames_of(node, 1, backoff_initial=0.01)
    assert [f.obj for f in got] == [{"n": 2}]
    assert 100_000 < node.sides[0].bytes_read < 150_000
    assert sub.statistics().reconnects == 1


async def test_the_largest_message_in_four_byte_characters_fits_the_read_budget(autojump_clock: Any) -> None:
    """The budget is not below what a well-behaved node may send: a message of MAX_MESSAGE_SIZE
    characters that are 4 bytes each in UTF-8 (4 MiB on the wire), in 64 fragments, and a
    small message after it, arrive on one connection."""
    body = "\U0001d11e" * (MAX_MESSAGE_SIZE - len(note({"pad": ""})))  # the G clef, 4 bytes in UTF-8
    text = note({"pad": body})  # exactly the cap, in characters
    assert len(text) == MAX_MESSAGE_SIZE and len(text.encode()) > 4 * MAX_MESSAGE_SIZE - 400
    step = len(text) // 64 + 1

    def script(side: NodeSide) -> None:
        pieces = [text[i:i + step] for i in range(0, len(text), step)]
        for j, piece in enumerate(pieces):
            side.push(side.frame(TextMessage(piece, message_finished=j == len(pieces) - 1)))
        side.push(side.frame(TextMessage(note({"n": 2}))))

    node = ScriptedNode(script)
    got, sub = await frames_of(node, 2)
    assert [f.obj for f in got] == [{"pad": body}, {"n": 2}]
    assert sub.statistics().reconnects == 0
    assert READ_BUDGET > node.sides[0].bytes_read > 4 * MAX_MESSAGE_SIZE - 400


def ping_before_the_close_answer(side: NodeSide) -> list[bytes]:
    """A node that sends a ping in answer to our Close, before its own Close (legal: a
    control frame may come at any time). wsproto refuses to pong once we have sent Close.
    (Written by hand: the node's own wsproto will not send a ping after a Close either.)"""
    return [b"\x89\x04late"]  # FIN + ping, unmasked, 4 bytes


async def test_a_ping_during_the_close_after_the_downstream_closed_ends_run_cleanly(autojump_clock: Any) -> None:
    """Every receiver is gone, so the subscriber closes; the node pings before answering the
    Close. ``run`` returns, as it does without the ping (not an ExceptionGroup of the two)."""
    node = ScriptedNode(lambda side: side.push(side.frame(TextMessage(note({"n": 1})))),
                        on_close=ping_before_the_close_answer)
    sub = Subscriber(URL, PENDING, transport=node.open_stream)

    class Sink:
        def take_frame(self, frame: Frame) -> None:
            raise trio.BrokenResourceError

    with trio.fail_after(FAIL_AFTER):
        await sub.run(Sink())
    assert sub.statistics().frames == 1
    assert [e.code for e in node.sides[0].received if isinstance(e, CloseConnection)] == [1000]
    assert node.sides[0].closed


async def test_a_ping_during_the_close_after_a_refused_subscription_is_a_counted_drop(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    """The first connection's node refuses eth_subscribe (both forms) and pings while we
    close: a drop logged with the refusal, and the next connection delivers; ``run`` lives on."""
    node = ScriptedNode(lambda side: side.push(side.frame(TextMessage(note({"n": side.index})))),
                        on_close=ping_before_the_close_answer,
                        refuse_subscribe=lambda side: side.index == 0)
    got, sub = await frames_of(node, 1, backoff_initial=0.01)
    assert [f.obj for f in got] == [{"n": 1}]
    assert "subscription to ws://node.test:8546 dropped" in caplog.text and "-32601" in caplog.text
    assert [e.code for e in node.sides[0].received if isinstance(e, CloseConnection)] == [1000]
    assert node.sides[0].closed
    assert (sub.statistics().reconnects, sub.statistics().subscriptions) == (1, 1)


async def test_the_idle_pings_into_a_reset_connection_are_each_a_counted_drop(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    """A quiet connection that was reset: the idle watch's ping fails to send, which ends the
    pump's read at the same moment. Both failing is one drop (not an ExceptionGroup out of
    ``run``), however the scheduler orders them: 20 connections in a row, then one that delivers."""
    n = 20

    def script(side: NodeSide) -> None:
        if side.index == n:
            side.push(side.frame(TextMessage(note({"n": side.index}))))

    node = ScriptedNode(script, reset_on_ping=lambda side: side.index < n)
    got, sub = await frames_of(node, 1, backoff_initial=0.01, backoff_max=0.01, idle_timeout=0.5)
    assert [f.obj for f in got] == [{"n": n}]
    assert sub.statistics().reconnects == n
    assert all(side.closed for side in node.sides[:n])
    assert caplog.text.count("dropped: websocket to ws://node.test:8546 closed: ABNORMAL_CLOSURE (1006)") == n


async def test_a_connection_reset_before_the_upgrade_request_is_written_is_a_quick_retry(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    """Writing the upgrade request fails (a reset as it is written): trio-websocket's reader
    gives up without closing the stream and leaves its handshake waiting. That is the end of
    the stream too: the next dial follows within the backoff, not after ``connect_timeout``."""
    calls = 0

    def handshake(side: NodeSide) -> list[bytes]:
        nonlocal calls
        calls += 1
        if calls == 1:
            side.closed = True
            raise trio.BrokenResourceError("connection reset")
        return [side.ws.send(AcceptConnection())]

    node = ScriptedNode(lambda side: side.push(side.frame(TextMessage(note({"n": 1})))), handshake)
    got, sub = await frames_of(node, 1, backoff_initial=0.01, connect_timeout=5.0)
    assert [f.obj for f in got] == [{"n": 1}]
    assert node.dialled[1] - node.dialled[0] < 0.1
    assert "websocket handshake with ws://node.test:8546 failed: the connection broke" in caplog.text
    assert sub.statistics().reconnects == 1
