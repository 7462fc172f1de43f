"""The hand-written WebSocket client (``aether.chain._wsconn``) against wsproto's server side.

wsproto is the reference here: every byte the client reads is produced by a
wsproto server connection, and every byte the client writes is parsed by it. The
transport is a trio in-memory stream pair, fed in random chunk sizes, so a
frame split anywhere (inside its header, its length, its payload) is exercised.
"""

from __future__ import annotations

import contextlib
import functools
import random
import shutil
import ssl
import subprocess
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)

from aether._errors import BadNodeData, NodeTimeout, NodeUnreachable
from aether.chain._wsconn import (
    CLOSE_PROTOCOL_ERROR,
    CLOSE_TOO_BIG,
    WsConnection,
    _handshake,
    accept_token,
    check_ws_url,
    client_frame,
    mask_payload,
    open_ws,
)

WHERE = "ws://test"


class Server:
    """A wsproto server on one end of a memory stream; what it sends can be cut into chunks."""

    def __init__(self, stream: trio.abc.Stream, rng: random.Random) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.SERVER)
        self.rng = rng
        self.events: list[Any] = []

    async def send_raw(self, data: bytes) -> None:
        i = 0
        while i < len(data):
            n = self.rng.randint(1, 3000)
            await self.stream.send_all(data[i : i + n])
            i += n

    async def accept(self, **accept: Any) -> None:
        while True:
            self.ws.receive_data(await self.stream.receive_some(65536))
            for event in self.ws.events():
                if isinstance(event, Request):
                    await self.send_raw(self.ws.send(AcceptConnection(**accept)))
                    return

    async def read_until(self, done: Any) -> list[Any]:
        """Parse what the client sent until ``done(events)`` holds (a few seconds at most)."""
        with trio.fail_after(10):
            while not done(self.events):
                data = await self.stream.receive_some(65536)
                if not data:
                    break
                self.ws.receive_data(data)
                self.events.extend(self.ws.events())
        return self.events

    async def closes(self) -> list[int]:
        events = await self.read_until(lambda es: any(isinstance(e, CloseConnection) for e in es))
        return [e.code for e in events if isinstance(e, CloseConnection)]


def _messages(events: list[Any]) -> list[str | bytes]:
    """Whole messages out of wsproto's events (it hands data over as it arrives, in pieces)."""
    out: list[str | bytes] = []
    part: list[Any] = []
    for e in events:
        if isinstance(e, TextMessage | BytesMessage):
            part.append(e.data)
            if e.message_finished:
                out.append(("" if isinstance(e, TextMessage) else b"").join(part))
                part = []
    return out


async def connected(rng: random.Random, **accept: Any) -> tuple[WsConnection, Server]:
    client_end, server_end = trio.testing.memory_stream_pair()
    server = Server(server_end, rng)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: server.accept(**accept))
        buffered = await _handshake(client_end, "test", "/", WHERE)
    return WsConnection(client_end, buffered, where=WHERE, max_message_size=1 << 20), server


# One thing the server does: a whole message, a fragmented one (with pings between the
# fragments, as the RFC allows), or a ping on its own.
_text = st.text(max_size=300) | st.text(min_size=200, max_size=70_000).filter(lambda s: len(s.encode()) > 125)
_step = st.one_of(
    st.tuples(st.just("text"), _text),
    st.tuples(st.just("binary"), st.binary(max_size=70_000)),
    st.tuples(st.just("fragments"), st.lists(st.text(max_size=200), min_size=2, max_size=5)),
    st.tuples(st.just("ping"), st.binary(max_size=125)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(_step, min_size=1, max_size=12), seed=st.integers(0, 2**32 - 1))
def test_every_message_wsproto_sends_arrives_whole_and_every_ping_is_answered(steps: list[Any], seed: int) -> None:
    async def main() -> None:
        rng = random.Random(seed)
        client, server = await connected(rng)
        expected: list[bytes] = []
        pings: list[bytes] = []
        for kind, value in steps:
            if kind == "text":
                await server.send_raw(server.ws.send(TextMessage(value)))
                expected.append(value.encode())
            elif kind == "binary":
                await server.send_raw(server.ws.send(BytesMessage(value)))
                expected.append(value)
            elif kind == "fragments":
                for i, part in enumerate(value):
                    await server.send_raw(server.ws.send(TextMessage(part, message_finished=i == len(value) - 1)))
                    if i == 0:
                        await server.send_raw(server.ws.send(Ping(b"mid")))
                        pings.append(b"mid")
                expected.append("".join(value).encode())
            else:
                await server.send_raw(server.ws.send(Ping(value)))
                pings.append(value)
        await server.send_raw(server.ws.send(Pong(b"")))  # ends the stream of things to read
        got: list[bytes] = []
        while (message := await client.get_message()) is not None:
            got.append(bytes(message))
        assert got == expected
        assert client.pings_received == len(pings) and client.pongs_received == 1
        # The client's own messages reach the server as sent, after its pongs: masked frames
        # wsproto accepts, each with its ping's payload.
        await client.send_message("é" * 300)
        await client.send_message(b"\x00\xff" * 40_000)
        events = await server.read_until(lambda es: len(_messages(es)) == 2)
        assert _messages(events) == ["é" * 300, b"\x00\xff" * 40_000]
        assert [e.payload for e in events if isinstance(e, Pong)] == pings

    trio.run(main)


def test_masking_and_the_accept_token_follow_the_rfc_examples() -> None:
    # RFC 6455 section 1.3 (the accept token) and 5.7 (a masked "Hello").
    assert accept_token(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert client_frame(0x1, b"Hello", key=bytes.fromhex("37fa213d")) == bytes.fromhex("818537fa213d7f9f4d5158")
    data = bytes(range(256)) * 3
    assert mask_payload(mask_payload(data, b"abcd"), b"abcd") == data
    assert mask_payload(b"", b"abcd") == b""


def _frame(b0: int, payload: bytes, *, masked: bool = False) -> bytes:
    n = len(payload)
    head = bytes((b0, (0x80 if masked else 0) | n)) if n < 126 else bytes((b0, 126)) + n.to_bytes(2, "big")
    return head + (b"\x00\x00\x00\x00" if masked else b"") + payload


@pytest.mark.parametrize(
    ("raw", "code", "message"),
    [
        (_frame(0x81, b"{}", masked=True), CLOSE_PROTOCOL_ERROR, "masked"),
        (_frame(0xC1, b"{}"), CLOSE_PROTOCOL_ERROR, "RSV"),
        (_frame(0x83, b"{}"), CLOSE_PROTOCOL_ERROR, "reserved opcode 0x3"),
        (_frame(0x80, b"{}"), CLOSE_PROTOCOL_ERROR, "continuation frame outside"),
        (_frame(0x09, b"x"), CLOSE_PROTOCOL_ERROR, "fragmented or oversized control"),
        (_frame(0x89, b"x" * 126), CLOSE_PROTOCOL_ERROR, "fragmented or oversized control"),
        (_frame(0x01, b"a") + _frame(0x81, b"b"), CLOSE_PROTOCOL_ERROR, "new message began inside"),
        (_frame(0x88, b"\x03"), CLOSE_PROTOCOL_ERROR, "1-byte payload"),
        (bytes((0x81, 127)) + (2**40).to_bytes(8, "big"), CLOSE_TOO_BIG, "over the 1048576-byte limit"),
        (_frame(0x01, b"a" * 60_000) + _frame(0x00, b"a" * 60_000) * 17 + _frame(0x80, b""), CLOSE_TOO_BIG, "over the 1048576-byte limit"),
    ],
)
async def test_a_protocol_error_is_closed_with_its_code_and_raised_as_bad_node_data(
    raw: bytes, code: int, message: str
) -> None:
    client, server = await connected(random.Random(1))
    await server.send_raw(raw)
    with pytest.raises(BadNodeData, match=message):
        while True:
            await client.get_message()
    assert await server.closes() == [code]
    with pytest.raises(NodeUnreachable, match="is closed"):
        await client.get_message()


async def test_a_close_from_the_server_is_echoed_and_raised_with_its_code() -> None:
    client, server = await connected(random.Random(2))
    await server.send_raw(server.ws.send(TextMessage("last")))
    await server.send_raw(server.ws.send(CloseConnection(code=1001, reason="bye")))
    assert await client.get_message() == b"last"
    with pytest.raises(NodeUnreachable, match=r"closed \(code 1001 GOING_AWAY\)"):
        await client.get_message()
    assert await server.closes() == [1001]


async def test_a_peer_that_just_goes_away_is_unreachable_without_a_close_frame() -> None:
    client, server = await connected(random.Random(3))
    await server.send_raw(server.ws.send(TextMessage("x" * 50))[:30])  # cut inside a frame
    await server.stream.aclose()
    with pytest.raises(NodeUnreachable, match=r"closed \(no close frame\)"):
        await client.get_message()


async def _answer_handshake(
    stream: trio.abc.Stream, answer: Any, *, close: bool = False, requests: list[bytes] | None = None
) -> None:
    """Read the client's upgrade request (into ``requests``) and write ``answer(wsproto server)`` at once."""
    server = WSConnection(ConnectionType.SERVER)
    request = await stream.receive_some(65536)
    if requests is not None:
        requests.append(request)
    server.receive_data(request)
    for event in server.events():
        if isinstance(event, Request):
            data = answer(server)
            if data:
                await stream.send_all(data)
            if close:
                await stream.aclose()


async def test_frames_that_came_with_the_handshake_answer_are_not_lost() -> None:
    client_end, server_end = trio.testing.memory_stream_pair()

    def accept_and_two_frames(ws: WSConnection) -> bytes:
        return ws.send(AcceptConnection()) + ws.send(TextMessage("a")) + ws.send(TextMessage("b"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(_answer_handshake, server_end, accept_and_two_frames)
        buffered = await _handshake(client_end, "test", "/", WHERE)
    client = WsConnection(client_end, buffered, where=WHERE, max_message_size=1024)
    assert [await client.get_message(), await client.get_message()] == [b"a", b"b"]


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (lambda ws: ws.send(RejectConnection(status_code=503)), "rejected the websocket handshake with HTTP 503"),
        (lambda ws: ws.send(AcceptConnection()).replace(b"Sec-WebSocket-Accept: ", b"Sec-WebSocket-Accept: x"),
         "wrong Sec-WebSocket-Accept"),
        (lambda ws: ws.send(AcceptConnection(subprotocol=None, extra_headers=[(b"Sec-WebSocket-Protocol", b"x")])),
         "not offered"),
        (lambda ws: b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n", "no 'Upgrade: websocket'"),
        (lambda ws: b"garbage\r\n\r\n", "bad HTTP answer"),
        (lambda ws: b"", "closed the connection during the websocket handshake"),
    ],
)
async def test_a_bad_handshake_answer_is_a_clear_unreachable(answer: Any, message: str) -> None:
    client_end, server_end = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(functools.partial(_answer_handshake, server_end, answer, close=True))
        with pytest.raises(NodeUnreachable, match=message):
            await _handshake(client_end, "test", "/", WHERE)


async def test_open_ws_times_out_on_a_server_that_never_answers_the_handshake(autojump_clock: Any) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    accepted: list[trio.SocketStream] = []

    async def hold(stream: trio.SocketStream) -> None:
        accepted.append(stream)
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, hold, listeners)
        with pytest.raises(NodeTimeout, match="timed out"):
            async with open_ws(f"ws://127.0.0.1:{port}/key/secret", where=f"ws://127.0.0.1:{port}",
                               connect_timeout=0.2):
                pass
        nursery.cancel_scope.cancel()


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


async def _tls_node(key: str, cert: str, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """A wss:// server that accepts the handshake and echoes each text message back."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)

    async def handler(stream: trio.SSLStream[trio.SocketStream]) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while data := await stream.receive_some(65536):
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, Request):
                        await stream.send_all(ws.send(AcceptConnection()))
                    elif isinstance(event, TextMessage):
                        await stream.send_all(ws.send(TextMessage("echo:" + event.data)))

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_ssl_over_tcp, handler, 0, ctx)
        task_status.started(listeners[0].transport_listener.socket.getsockname()[1])


async def test_wss_verifies_the_server_certificate_and_carries_messages(tls_cert: tuple[str, str]) -> None:
    key, cert = tls_cert
    async with trio.open_nursery() as nursery:
        port = await nursery.start(_tls_node, key, cert)
        url = f"wss://127.0.0.1:{port}/v3/secret-key"
        trusting = ssl.create_default_context(cafile=cert)
        async with open_ws(url, where=f"wss://127.0.0.1:{port}", connect_timeout=10, ssl_context=trusting) as ws:
            await ws.send_message('{"id":1}')
            assert await ws.get_message() == b'echo:{"id":1}'
        # The same server without its certificate in the trust store: refused, clearly, key not shown.
        with pytest.raises(NodeUnreachable, match="TLS with wss://127.0.0.1:[0-9]+ failed: .*certificate") as err:
            async with open_ws(url, where=f"wss://127.0.0.1:{port}", connect_timeout=10):
                pass
        assert "secret-key" not in str(err.value)
        nursery.cancel_scope.cancel()


async def test_a_peer_that_goes_away_has_its_transport_closed() -> None:
    client, server = await connected(random.Random(4))
    await server.stream.aclose()
    with pytest.raises(NodeUnreachable, match="no close frame"):
        await client.get_message()
    # The client's end is closed too (not left to the garbage collector).
    with pytest.raises(trio.ClosedResourceError):
        await client._stream.send_all(b"x")
    await client.aclose()  # and closing again is harmless


async def test_a_long_frame_read_in_small_pieces_is_joined_once() -> None:
    """TLS hands data over in records of at most 16 KiB: a 4 MiB message used to be re-copied at
    every piece (quadratic). Counted as the reads that found the frame still incomplete and
    the joins of the buffer: one join for the whole frame."""
    client, server = await connected(random.Random(5))
    client._max = 8 * 1024 * 1024
    payload = bytes(range(256)) * (4 * 4096)  # 4 MiB
    frame = bytes((0x82, 127)) + len(payload).to_bytes(8, "big") + payload
    fills: list[int] = []
    real_fill = client._fill

    async def counting_fill(need: int) -> None:
        fills.append(need)
        await real_fill(need)

    client._fill = counting_fill  # type: ignore[method-assign]

    async def send_in_records() -> None:
        for i in range(0, len(frame), 16384):
            await server.stream.send_all(frame[i : i + 16384])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_in_records)
        message = await client.get_message()
    assert message == payload
    # One call for the header, one that reads every remaining record before it joins.
    assert len(fills) <= 3, fills
    assert fills[-1] == len(frame), fills


@pytest.mark.parametrize("code", [999, 1005, 1006, 1015, 2999, 5000])
async def test_a_close_code_that_may_not_be_sent_is_a_protocol_error(code: int) -> None:
    client, server = await connected(random.Random(6))
    await server.send_raw(bytes((0x88, 2)) + code.to_bytes(2, "big"))
    with pytest.raises(BadNodeData, match=f"code {code}"):
        await client.get_message()
    assert await server.closes() == [CLOSE_PROTOCOL_ERROR]


async def test_a_control_frame_declaring_a_long_payload_is_refused_before_it_is_buffered() -> None:
    client, server = await connected(random.Random(7))
    await server.send_raw(bytes((0x89, 126)) + (60_000).to_bytes(2, "big") + b"x" * 10)  # a "ping" of 60 kB
    with pytest.raises(BadNodeData, match="oversized control frame"):
        await client.get_message()


async def test_the_host_header_brackets_an_ipv6_literal_with_or_without_a_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for url, port, expected in (("ws://[::1]/key", 80, b"Host: [::1]\r\n"),
                                ("ws://[::1]:8546/key", 8546, b"Host: [::1]:8546\r\n")):
        client_end, server_end = trio.testing.memory_stream_pair()
        dialled: list[tuple[str, int]] = []
        requests: list[bytes] = []

        async def connect(host: str, port: int, *, _stream: Any = client_end) -> Any:
            dialled.append((host, port))
            return _stream

        monkeypatch.setattr(trio, "open_tcp_stream", connect)  # no IPv6 loopback needed
        async with trio.open_nursery() as nursery:
            nursery.start_soon(functools.partial(_answer_handshake, server_end, lambda ws: b"", close=True,
                                                 requests=requests))
            with pytest.raises(NodeUnreachable, match="closed the connection during the websocket handshake"):
                async with open_ws(url, where="ws://[::1]", connect_timeout=5):
                    pass
        assert dialled == [("::1", port)]
        assert expected in requests[0], requests


@pytest.mark.parametrize(
    ("url", "why"),
    [("ws://node:99999/SECRET", "port"), ("ws://node/SECRET KEY", "spaces"), ("wss://node/SECRETé", "non-ASCII"),
     ("http://node/SECRET", "ws:// or wss://")],
)
def test_a_url_that_cannot_be_dialled_is_a_value_error_without_its_path(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as info:
        check_ws_url(url)
    assert "SECRET" not in str(info.value)
