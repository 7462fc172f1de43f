"""A hostile builder cannot make the live submitter buffer an endless answer.

The builder double is the faults suite's hostile HTTP server on 127.0.0.1: for
``eth_sendBundle`` it streams a 200 MB body (with no length, or announcing it).
The submitter stops reading at its cap, counts ``too_large`` for that builder,
and the good builder beside it is answered ``ok`` as usual.
"""

from __future__ import annotations

import attrs
import httpx
import pytest
import trio
from eth_account import Account

from aether.config import BuilderEndpoint
from aether.metrics import Metrics
from aether.submit import MAX_RESPONSE_BYTES, Submitter

from factories import make_bundle
from faults._hostile import HUGE_BYTES, Mode, hostile_rpc

AUTH = Account.from_key("0x" + "42" * 32)


def _bundle():  # type: ignore[no-untyped-def]
    b = make_bundle()
    return attrs.evolve(b, candidate=attrs.evolve(b.candidate, validated=True))


@pytest.mark.parametrize("mode", [Mode.HUGE, Mode.HUGE_DECLARED])
async def test_an_endless_builder_answer_is_cut_at_the_cap_and_counted(mode: Mode) -> None:
    metrics = Metrics(builders=["hostile", "good"])

    def good(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": 1, "result": {"bundleHash": "0x00"}})

    with hostile_rpc(Mode.OK, eth_sendBundle=mode) as node:
        # One client for both: the good builder is a MockTransport mounted on its own URL.
        async with Submitter((BuilderEndpoint("hostile", node.url), BuilderEndpoint("good", "http://good.invalid/")),
                             AUTH, shadow=False, metrics=metrics, timeout_s=20.0,
                             transport=_Router(node.url, httpx.MockTransport(good))) as sub:
            with trio.fail_after(20):
                outcomes = await sub.submit(_bundle())
        sent = node.bytes_sent
    assert outcomes == {"hostile": "too_large", "good": "ok"}
    assert node.requests == 1  # no retry
    assert sent < HUGE_BYTES // 10  # we hung up long before the end (the server stops when its write fails)
    assert sub.statistics().outcomes["hostile"]["too_large"] == 1
    assert metrics.builder_requests.labels("hostile", "too_large")._value.get() == 1


async def test_an_answer_at_the_cap_is_read_and_one_byte_more_is_not() -> None:
    for size, expected in ((MAX_RESPONSE_BYTES, "ok"), (MAX_RESPONSE_BYTES + 1, "too_large")):
        reply = b'{"jsonrpc":"2.0","id":1,"result":{}}'
        body = reply + b" " * (size - len(reply))

        def builder(request: httpx.Request, body: bytes = body) -> httpx.Response:
            return httpx.Response(200, stream=httpx.ByteStream(body))  # no declared length: streamed

        async with Submitter((BuilderEndpoint("b", "http://b.invalid/"),), AUTH, shadow=False, metrics=Metrics(),
                             timeout_s=5.0, transport=httpx.MockTransport(builder)) as sub:
            assert await sub.submit(_bundle()) == {"b": expected}, size


class _Router(httpx.AsyncBaseTransport):
    """Real HTTP to the hostile server, the mock for the rest."""

    def __init__(self, real_url: str, other: httpx.AsyncBaseTransport) -> None:
        self._real = httpx.AsyncHTTPTransport()
        self._url = httpx.URL(real_url)
        self._other = other

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == self._url.host and request.url.port == self._url.port:
            return await self._real.handle_async_request(request)
        return await self._other.handle_async_request(request)

    async def aclose(self) -> None:
        await self._real.aclose()
