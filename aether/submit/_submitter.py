"""Live submission: one signed ``eth_sendBundle`` fanned out to every builder.

Only the live supervision tree imports this module. Each builder gets its own
POST in its own task with its own deadline (the earlier of ``timeout_s`` and
the caller's ``deadline``, which is the end of the target block's slot), so a
slow or broken builder never delays another. There are no retries: a bundle
is only worth anything before its target block.

Builder answers are outside input: every answer maps to one bounded outcome
(``ok``, ``rpc_error``, ``http_error``, ``timeout``, ``unreachable``,
``bad_json``, ``too_large``), counted per builder label. An answer is read
from the stream and abandoned (connection closed) as soon as it passes
:data:`MAX_RESPONSE_BYTES` or announces a longer length, like the node client's
``AETHER_RPC_MAX_RESPONSE_BYTES``: a hostile or broken builder cannot make us
buffer an endless body. Builder URLs may carry API keys, so
only the configured label is ever logged or used as a metric label.
"""

from __future__ import annotations

import itertools
import logging
import math
from typing import Any

import attrs
import httpx
import orjson
import trio
from eth_account.signers.local import LocalAccount

from .._errors import ShadowViolation
from ..config import BuilderEndpoint
from ..messages import Bundle
from ..metrics import Metrics
from ._flashbots import HEADER, flashbots_signature

__all__ = ["MAX_RESPONSE_BYTES", "OUTCOMES", "Submitter", "SubmitterStatistics", "send_bundle_body"]

log = logging.getLogger(__name__)

class _RedactUrls(logging.Filter):
    """httpx logs every request's full URL at INFO; builder URLs may carry API keys."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) for a in record.args):
            record.args = tuple(
                f"{a.scheme}://{a.host}" + (f":{a.port}" if a.port else "") if isinstance(a, httpx.URL) else a
                for a in record.args
            )
        return True


_httpx_log = logging.getLogger("httpx")
if not any(isinstance(f, _RedactUrls) for f in _httpx_log.filters):
    _httpx_log.addFilter(_RedactUrls())

#: ``cancelled``: the run stopped while the request was in flight (it may or may not have arrived).
#: ``too_large``: the answer passed :data:`MAX_RESPONSE_BYTES`; reading stopped there.
OUTCOMES: tuple[str, ...] = ("ok", "rpc_error", "http_error", "timeout", "unreachable", "bad_json", "cancelled",
                             "too_large")
#: Longest builder answer read. An ``eth_sendBundle`` reply is about 100 bytes (a bundle
#: hash); 64 KiB leaves room for any error text a builder sends.
MAX_RESPONSE_BYTES = 64 * 1024


@attrs.frozen
class SubmitterStatistics:
    bundles_sent: int
    refused_unvalidated: int
    outcomes: dict[str, dict[str, int]]


def send_bundle_body(bundle: Bundle, request_id: int) -> bytes:
    """The exact JSON-RPC body of ``eth_sendBundle`` for ``bundle``."""
    return orjson.dumps(
        {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "eth_sendBundle",
            "params": [{"txs": ["0x" + raw.hex() for raw in bundle.envelope], "blockNumber": hex(bundle.target_block)}],
        }
    )


async def _read_capped(resp: httpx.Response, cap: int) -> bytes | None:
    """The body, or None as soon as it is longer than ``cap`` (declared or streamed)."""
    declared = resp.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and len(declared) < 20 and int(declared) > cap:
        return None
    buf = bytearray()
    async for chunk in resp.aiter_bytes():
        buf += chunk
        if len(buf) > cap:
            return None
    return bytes(buf)


def _classify(status: int, content: bytes) -> str:
    if status != 200:
        return "http_error"
    try:
        reply: Any = orjson.loads(content)
    except orjson.JSONDecodeError:
        return "bad_json"
    if not isinstance(reply, dict):
        return "bad_json"
    if reply.get("error") is not None:
        return "rpc_error"
    if "result" in reply:
        return "ok"
    return "bad_json"


class Submitter:
    """Sends bundles to every configured builder concurrently (live mode only).

    Args:
        builders: the endpoints from ``AETHER_BUILDER_URLS``.
        auth: the ``X-Flashbots-Signature`` key (``AETHER_FLASHBOTS_AUTH_KEY_FILE``),
            never the searcher key.
        shadow: must be False; True raises :class:`ShadowViolation`.
        metrics: the process's metrics.
        timeout_s: each builder's own budget per request.
        transport: an httpx transport, for tests.
        max_response_bytes: longest builder answer read (:data:`MAX_RESPONSE_BYTES`).

    Raises:
        ShadowViolation: ``shadow`` is True. The shadow tree never builds one.
    """

    def __init__(
        self,
        builders: tuple[BuilderEndpoint, ...],
        auth: LocalAccount,
        *,
        shadow: bool,
        metrics: Metrics,
        timeout_s: float,
        transport: httpx.AsyncBaseTransport | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        if shadow is not False:
            raise ShadowViolation("Submitter constructed while shadow mode is on; refusing")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        if max_response_bytes < 1:
            raise ValueError("max_response_bytes must be >= 1")
        self._max_bytes = max_response_bytes
        self._builders = builders
        self._auth = auth
        self._metrics = metrics
        self._timeout_s = timeout_s
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(timeout_s),
            headers={"content-type": "application/json"},
            limits=httpx.Limits(max_connections=4 * max(1, len(builders)), max_keepalive_connections=len(builders) or 1),
            follow_redirects=False,
        )
        self._ids = itertools.count(1)
        self._sent = 0
        self._refused = 0
        self._outcomes: dict[str, dict[str, int]] = {b.name: dict.fromkeys(OUTCOMES, 0) for b in builders}
        for b in builders:
            for o in OUTCOMES:
                metrics.builder_requests.labels(b.name, o)

    def __repr__(self) -> str:
        return f"<Submitter builders={[b.name for b in self._builders]}>"

    def statistics(self) -> SubmitterStatistics:
        return SubmitterStatistics(
            bundles_sent=self._sent,
            refused_unvalidated=self._refused,
            outcomes={k: dict(v) for k, v in self._outcomes.items()},
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> Submitter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        with trio.CancelScope(shield=True):
            await self.aclose()

    async def submit(self, bundle: Bundle, *, deadline: float = math.inf) -> dict[str, str]:
        """Send ``bundle`` to every builder at once; return builder label -> outcome.

        Args:
            bundle: a bundle whose candidate passed simulation.
            deadline: trio clock time after which no request may still be
                running (the target block's end). Each builder's own timeout
                applies inside it.

        Returns:
            One outcome per builder; empty when the bundle was refused because
            its simulation did not pass (counted in ``statistics()``).
        """
        if not bundle.candidate.validated:
            self._refused += 1
            log.warning("bundle %s not sent: its simulation did not pass", bundle.arb_id)
            return {}
        body = send_bundle_body(bundle, next(self._ids))
        headers = {HEADER: flashbots_signature(self._auth, body)}
        outcomes: dict[str, str] = {}
        self._sent += 1
        self._metrics.submitted.labels(bundle.source).inc()
        async with trio.open_nursery() as nursery:
            for b in self._builders:
                nursery.start_soon(self._one, b, body, headers, deadline, outcomes, bundle.arb_id)
        return outcomes

    async def _one(
        self,
        builder: BuilderEndpoint,
        body: bytes,
        headers: dict[str, str],
        deadline: float,
        out: dict[str, str],
        arb_id: str,
    ) -> None:
        outcome: str | None = None
        try:
            with trio.move_on_at(min(trio.current_time() + self._timeout_s, deadline)):
                try:
                    async with self._client.stream("POST", builder.url, content=body, headers=headers) as resp:
                        content = await _read_capped(resp, self._max_bytes)
                        # Leaving the block early closes the connection: the rest is never read.
                        outcome = "too_large" if content is None else _classify(resp.status_code, content)
                except httpx.TimeoutException:
                    outcome = "timeout"
                except httpx.TransportError:
                    outcome = "unreachable"
                except httpx.HTTPError:
                    outcome = "unreachable"
            if outcome is None:
                outcome = "timeout"
        finally:
            # Every request gets exactly one counted outcome, even when the run stops mid-flight.
            if outcome is None:
                outcome = "cancelled"
            out[builder.name] = outcome
            self._outcomes[builder.name][outcome] += 1
            self._metrics.builder_requests.labels(builder.name, outcome).inc()
            if outcome != "ok":
                log.info("builder %s: %s for bundle %s", builder.name, outcome, arb_id)
