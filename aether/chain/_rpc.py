"""JSON-RPC over HTTP (httpx on trio), with batching and typed errors.

httpx's exceptions are mapped at one point (:func:`_map_errors`) into
:mod:`aether._errors`; callers never see an httpx type.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import attrs
import httpx
import orjson

from .._errors import BadNodeData, NodeTimeout, NodeUnreachable, RpcError
from .._urls import display_url

__all__ = ["RpcClient", "RpcStatistics", "open_rpc"]


@attrs.frozen
class RpcStatistics:
    requests: int
    calls: int
    rpc_errors: int
    transport_errors: int
    timeouts: int
    bad_data: int


@contextlib.contextmanager
def _map_errors(url: str) -> Iterator[None]:
    try:
        yield
    except httpx.TimeoutException as exc:
        raise NodeTimeout(f"node at {url} did not answer in time") from exc
    except httpx.TransportError as exc:
        raise NodeUnreachable(f"node at {url} is unreachable: {type(exc).__name__}") from exc


class RpcClient:
    """A JSON-RPC client for one node endpoint.

    Args:
        url: ``http(s)://`` endpoint of the node.
        timeout: seconds for each request, connect included.
        transport: an httpx transport; tests pass ``httpx.MockTransport``.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 2.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self._where = display_url(url)  # what messages may show: the path may hold an API key
        self._client = httpx.AsyncClient(
            timeout=timeout,
            transport=transport,
            headers={"content-type": "application/json"},
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
        )
        self._ids = itertools.count(1)
        self._requests = 0
        self._calls = 0
        self._rpc_errors = 0
        self._transport_errors = 0
        self._timeouts = 0
        self._bad_data = 0

    def statistics(self) -> RpcStatistics:
        return RpcStatistics(
            requests=self._requests,
            calls=self._calls,
            rpc_errors=self._rpc_errors,
            transport_errors=self._transport_errors,
            timeouts=self._timeouts,
            bad_data=self._bad_data,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _post(self, payload: object) -> Any:
        body = orjson.dumps(payload)
        self._requests += 1
        try:
            with _map_errors(self._where):
                resp = await self._client.post(self.url, content=body)
        except NodeTimeout:
            self._timeouts += 1
            raise
        except NodeUnreachable:
            self._transport_errors += 1
            raise
        if resp.status_code != 200 and not resp.content:
            self._bad_data += 1
            raise BadNodeData(f"node at {self._where} answered HTTP {resp.status_code} with no body")
        try:
            return orjson.loads(resp.content)
        except orjson.JSONDecodeError as exc:
            self._bad_data += 1
            raise BadNodeData(f"node at {self._where} answered HTTP {resp.status_code} with non-JSON") from exc

    def _result(self, method: str, reply: Any) -> Any:
        if not isinstance(reply, dict):
            self._bad_data += 1
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
            self._bad_data += 1
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

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Send several calls in one HTTP request.

        Returns:
            One entry per call, in order: the result, or an :class:`RpcError`
            instance (returned, not raised) for a call the node refused.

        Raises:
            NodeTimeout, NodeUnreachable, BadNodeData: the whole batch failed.
        """
        if not calls:
            return []
        self._calls += len(calls)
        first = next(self._ids)
        ids = [first + i for i in range(len(calls))]
        # keep the id counter ahead of the ids used here
        for _ in range(len(calls) - 1):
            next(self._ids)
        payload = [
            {"jsonrpc": "2.0", "id": i, "method": m, "params": list(p)} for i, (m, p) in zip(ids, calls, strict=True)
        ]
        reply = await self._post(payload)
        if not isinstance(reply, list):
            # Some nodes answer a whole batch with one error object.
            single = self._result("batch", reply)
            if isinstance(single, RpcError):
                return [single for _ in calls]
            self._bad_data += 1
            raise BadNodeData("batch: reply is not a JSON array")
        by_id: dict[object, Any] = {}
        for item in reply:
            if isinstance(item, dict):
                by_id[item.get("id")] = item
        out: list[Any] = []
        for i, (method, _) in zip(ids, calls, strict=True):
            item = by_id.get(i)
            if item is None:
                self._bad_data += 1
                raise BadNodeData(f"batch: no reply for {method} (id {i})")
            out.append(self._result(method, item))
        return out


@contextlib.asynccontextmanager
async def open_rpc(url: str, *, timeout: float = 2.0, transport: httpx.AsyncBaseTransport | None = None) -> AsyncIterator[RpcClient]:
    """An :class:`RpcClient` that is closed when the block exits."""
    client = RpcClient(url, timeout=timeout, transport=transport)
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()
