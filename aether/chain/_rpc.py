"""JSON-RPC over HTTP (httpx on trio), with batching and typed errors.

httpx's exceptions are mapped at one point (:meth:`RpcClient._exchange`) into
:mod:`aether._errors`; callers never see an httpx type.

Every request is bounded twice, because a node (or whatever answers at its URL)
may be hostile or broken: a *total* deadline around the whole request (trio's
``fail_after``; httpx's own timeouts are per read, so a node trickling one byte
per second would otherwise hold a request forever), and a *size cap* on the
answer, read incrementally from the stream so that a 200 MB body costs at most
the cap in memory. A breach raises a :class:`~aether._errors.NodeError` (callers
fail closed) and is counted in :meth:`RpcClient.statistics` and reported to the
``on_error`` callback: the chain layer does not import the metrics.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, cast

import attrs
import httpx
import orjson
import trio

from .._errors import BadNodeData, NodeErrorKind, NodeTimeout, NodeUnreachable, ResponseTooLarge, RpcError
from .._urls import display_url

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "RpcClient", "RpcStatistics", "open_rpc"]

#: Default cap on one JSON-RPC answer (``AETHER_RPC_MAX_RESPONSE_BYTES``): a mainnet block
#: with full transactions is a few MB of JSON; 16 MiB leaves room and bounds memory.
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024

#: Called once per failed request with why it failed (the metrics layer counts it).
ErrorHook = Callable[[NodeErrorKind], None]


@attrs.frozen
class RpcStatistics:
    requests: int
    calls: int
    rpc_errors: int
    transport_errors: int
    timeouts: int
    bad_data: int
    too_large: int = 0


class RpcClient:
    """A JSON-RPC client for one node endpoint.

    Args:
        url: ``http(s)://`` endpoint of the node.
        timeout: seconds for the whole of each request (connect, send, every byte of
            the answer); also httpx's per-operation timeout.
        max_response_bytes: longest answer accepted; reading stops there.
        on_error: called with the kind of every failed request (timeout,
            unreachable, bad data, too large); must not raise.
        transport: an httpx transport; tests pass ``httpx.MockTransport``.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 2.0,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        on_error: ErrorHook | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not timeout > 0 or max_response_bytes < 1:
            raise ValueError("RpcClient needs timeout > 0 and max_response_bytes >= 1")
        self.url = url
        self._where = display_url(url)  # what messages may show: the path may hold an API key
        self._deadline = timeout
        self._max_bytes = max_response_bytes
        self._on_error = on_error
        # httpx's transport (its connection pool, HTTP/1.1 over h11, TLS), called directly with a
        # request built once per call: the client layer above it (URL merging, cookie jar, auth
        # and redirect hooks) cost about 3x the transport itself per call, measured in
        # ``bench`` (see docs/performance.md), and none of it applies to JSON-RPC POSTs. What
        # the client layer did that does apply is done here: credentials in the URL become a
        # Basic ``Authorization`` header (httpx would do the same), and the timeout rides in
        # the request's extensions. The node is dialled directly: *_PROXY environment
        # variables are not consulted (a proxy on the hot path is latency the operator did
        # not ask for; put the node's address in AETHER_RPC_URL).
        self._transport: httpx.AsyncBaseTransport = transport or httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16), retries=0
        )
        self._url = httpx.URL(url)
        headers = [
            (b"Content-Type", b"application/json"),
            # identity: the cap counts the bytes we hold; a compressed answer could expand past it in one chunk
            (b"Accept-Encoding", b"identity"),
        ]
        if self._url.username or self._url.password:
            cred = f"{self._url.username}:{self._url.password}".encode()
            headers.append((b"Authorization", b"Basic " + base64.b64encode(cred)))
            self._url = self._url.copy_with(username=None, password=None)
        self._headers = headers
        # What ``httpx.Request(content=body)`` would send, built once: ``Host`` first (httpx's
        # ``_prepare``), then ours; each request adds its ``Content-Length`` (a JSON body is
        # never empty). Building a request from a stream and these skips httpx's per-request
        # content encoding and header normalisation (~9 us -> ~2 us on the 2-core bench
        # machine); tests/chain/test_rpc.py holds the request equal to httpx's own.
        self._request_headers = httpx.Headers(
            ([(b"Host", self._url.netloc)] if self._url.host else []) + headers
        )
        self._headers_by_length: dict[int, httpx.Headers] = {}
        self._timeout_ext = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
        self._ids = itertools.count(1)
        self._requests = 0
        self._calls = 0
        self._rpc_errors = 0
        self._transport_errors = 0
        self._timeouts = 0
        self._bad_data = 0
        self._too_large = 0

    def statistics(self) -> RpcStatistics:
        return RpcStatistics(
            requests=self._requests,
            calls=self._calls,
            rpc_errors=self._rpc_errors,
            transport_errors=self._transport_errors,
            timeouts=self._timeouts,
            bad_data=self._bad_data,
            too_large=self._too_large,
        )

    def _failed(self, kind: NodeErrorKind) -> None:
        if kind is NodeErrorKind.TIMEOUT:
            self._timeouts += 1
        elif kind is NodeErrorKind.UNREACHABLE:
            self._transport_errors += 1
        elif kind is NodeErrorKind.TOO_LARGE:
            self._too_large += 1
        else:
            self._bad_data += 1
        if self._on_error is not None:
            self._on_error(kind)

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def _post(self, payload: object, deadline: float | None = None) -> Any:
        body = orjson.dumps(payload)
        self._requests += 1
        own = trio.current_time() + self._deadline
        # One cancel scope for both deadlines (a scope costs ~5 us): the caller's, when it comes
        # first, is the caller's to report (trio.TooSlowError, nothing counted against the
        # node), as when the caller's own scope around this call expired.
        limit = own if deadline is None or deadline >= own else deadline
        try:
            with trio.CancelScope(deadline=limit) as scope:
                status, content = await self._exchange(body)
        except trio.TooSlowError:
            self._failed(NodeErrorKind.TIMEOUT)
            raise NodeTimeout(
                f"node at {self._where} did not answer in full within {self._deadline:g}s"
            ) from None
        except NodeTimeout:
            self._failed(NodeErrorKind.TIMEOUT)
            raise
        except NodeUnreachable:
            self._failed(NodeErrorKind.UNREACHABLE)
            raise
        except ResponseTooLarge:
            self._failed(NodeErrorKind.TOO_LARGE)
            raise
        if scope.cancelled_caught:
            if limit < own:
                raise trio.TooSlowError
            self._failed(NodeErrorKind.TIMEOUT)
            raise NodeTimeout(
                f"node at {self._where} did not answer in full within {self._deadline:g}s"
            ) from None
        if status != 200 and not content:
            self._failed(NodeErrorKind.BAD_DATA)
            raise BadNodeData(f"node at {self._where} answered HTTP {status} with no body")
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            self._failed(NodeErrorKind.BAD_DATA)
            raise BadNodeData(f"node at {self._where} answered HTTP {status} with non-JSON") from exc

    async def _exchange(self, body: bytes) -> tuple[int, bytes]:
        """POST ``body``; the status and at most ``max_response_bytes`` of the answer.

        The answer is read chunk by chunk from the stream and the request is
        abandoned (connection closed) the moment it passes the cap, whether the
        node declared its length or not.
        """
        # The headers of a body of this length, made once (httpx.Request copies them, so the
        # cached object is never changed by a request or a transport).
        headers = self._headers_by_length.get(len(body))
        if headers is None:
            headers = httpx.Headers(self._request_headers)
            headers["Content-Length"] = str(len(body))
            if len(self._headers_by_length) >= 1024:
                self._headers_by_length.clear()
            self._headers_by_length[len(body)] = headers
        request = httpx.Request("POST", self._url, headers=headers, stream=httpx.ByteStream(body),
                                extensions={"timeout": self._timeout_ext})
        request.read()  # as httpx.Request(content=...) does: the body is in memory already
        # httpx's errors become ours here, inline (a generator-based context manager costs ~1.5 us a request).
        try:
            resp = await self._transport.handle_async_request(request)
            try:
                declared = resp.headers.get("content-length", "")
                if declared.isascii() and declared.isdigit() and len(declared) < 20 and int(declared) > self._max_bytes:
                    raise ResponseTooLarge(
                        f"node at {self._where} announced {int(declared)} bytes (cap {self._max_bytes}); not read"
                    )
                chunks: list[bytes] = []
                size = 0
                # The raw bytes, never decoded: we asked for identity, so a node that compresses
                # anyway sends what is not JSON (BadNodeData). Decoding would inflate a small
                # gzip into a huge chunk before the cap is checked, and a garbled one would
                # raise httpx's DecodingError, which is no TransportError.
                # (The stream itself, as ``aiter_raw`` reads it, but also when a test's transport
                # has already buffered the body.)
                async for chunk in cast(httpx.AsyncByteStream, resp.stream):
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > self._max_bytes:
                        raise ResponseTooLarge(
                            f"node at {self._where} answered more than {self._max_bytes} bytes; stopped reading"
                        )
                # One copy at the end (none for an answer in one chunk), not one per chunk.
                return resp.status_code, b"".join(chunks)
            finally:
                # Back to the pool when read to the end; a connection abandoned mid-answer is closed.
                await resp.aclose()
        except httpx.TimeoutException as exc:
            raise NodeTimeout(f"node at {self._where} did not answer in time") from exc
        except httpx.TransportError as exc:
            raise NodeUnreachable(f"node at {self._where} is unreachable: {type(exc).__name__}") from exc

    def _result(self, method: str, reply: Any) -> Any:
        if not isinstance(reply, dict):
            self._failed(NodeErrorKind.BAD_DATA)
            raise BadNodeData(f"{method}: reply is not a JSON object")
        err = reply.get("error")
        if err is not None:
            self._rpc_errors += 1
            if isinstance(err, dict):
                code = err.get("code")
                return RpcError(
                    method,
                    code if isinstance(code, int) else -1,
                    str(err.get("message", "")),
                    err.get("data"),
                )
            return RpcError(method, -1, str(err))
        if "result" not in reply:
            self._failed(NodeErrorKind.BAD_DATA)
            raise BadNodeData(f"{method}: reply has neither result nor error")
        return reply["result"]

    async def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        """Call one method and return its ``result``.

        Raises:
            RpcError: the node returned an error object.
            NodeTimeout, NodeUnreachable, BadNodeData: transport or shape failures.
        """
        self._calls += 1
        reply = await self._post({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)})
        result = self._result(method, reply)
        if isinstance(result, RpcError):
            raise result
        return result

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]], *, deadline: float | None = None) -> list[Any]:
        """Send several calls in one HTTP request.

        Args:
            deadline: the caller's own deadline (trio clock), if any. When it comes before
                the client's, the request is given up there and ``trio.TooSlowError`` is
                raised: the caller's time ran out, the node is not blamed (no timeout is
                counted). The same as the caller's ``trio.move_on_at(deadline)`` around the
                call, in one cancel scope instead of two.

        Returns:
            One entry per call, in order: the result, or an :class:`RpcError`
            instance (returned, not raised) for a call the node refused.

        Raises:
            NodeTimeout, NodeUnreachable, BadNodeData: the whole batch failed.
            trio.TooSlowError: ``deadline`` passed first.
        """
        if not calls:
            return []
        self._calls += len(calls)
        n = len(calls)
        first = next(self._ids)
        ids = range(first, first + n)
        self._ids = itertools.count(first + n)  # the counter goes on past the ids used here
        payload = [
            {"jsonrpc": "2.0", "id": i, "method": m, "params": list(p)} for i, (m, p) in zip(ids, calls, strict=True)
        ]
        reply = await self._post(payload, deadline)
        if not isinstance(reply, list):
            # Some nodes answer a whole batch with one error object.
            single = self._result("batch", reply)
            if isinstance(single, RpcError):
                return [single for _ in calls]
            self._failed(NodeErrorKind.BAD_DATA)
            raise BadNodeData("batch: reply is not a JSON array")
        if len(reply) == n:
            # The usual answer: one reply per call, in the order asked. Then reply k is the
            # one whose id is ids[k] (a match by ==, as the lookup below is), and no other.
            for item, i in zip(reply, ids):
                if not isinstance(item, dict) or item.get("id") != i:
                    break
            else:
                return [self._result(m, item) for (m, _), item in zip(calls, reply)]
        by_id: dict[object, Any] = {}
        for item in reply:
            # An array or object id (unhashable) cannot be one of ours: left out, so its call
            # is "no reply" (BadNodeData) rather than a TypeError.
            if isinstance(item, dict) and not isinstance(item.get("id"), (list, dict)):
                by_id[item.get("id")] = item
        out: list[Any] = []
        for i, (method, _) in zip(ids, calls, strict=True):
            item = by_id.get(i)
            if item is None:
                self._failed(NodeErrorKind.BAD_DATA)
                raise BadNodeData(f"batch: no reply for {method} (id {i})")
            out.append(self._result(method, item))
        return out


@contextlib.asynccontextmanager
async def open_rpc(
    url: str,
    *,
    timeout: float = 2.0,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    on_error: ErrorHook | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[RpcClient]:
    """An :class:`RpcClient` that is closed when the block exits."""
    client = RpcClient(url, timeout=timeout, max_response_bytes=max_response_bytes, on_error=on_error,
                       transport=transport)
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()
