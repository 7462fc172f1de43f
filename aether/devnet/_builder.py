"""A local block builder for the devnet: ``eth_sendBundle`` / ``eth_callBundle`` over HTTP.

It speaks the public builders' JSON-RPC dialect, verifies ``X-Flashbots-Signature``
like Flashbots does, holds bundles per target block and, when the devnet's
miner is about to mine that block, includes each bundle atomically and in
order, or drops it whole.

How inclusion works on anvil. A real builder puts a winning bundle at the top
of its block, ahead of public mempool transactions, so ``[victim, backrun]``
runs on the parent block's state: the state the searcher sized it on. anvil
has no bundle primitive, so the builder rebuilds that order with what it has.
The miner holds a lock that stops victim traffic and calls
:meth:`LocalBuilder.before_mine`. For each bundle held for that block, in
arrival order:

1. One batch looks up every bundle transaction (``eth_getTransactionByHash``)
   and each sender's pending nonce. A transaction already mined means the
   bundle is stale; one already pending (the victim, normally) must be ready
   and come before the ones not yet sent, which must continue their sender's
   nonce sequence exactly.
2. The ready pool in mining order is read from the ``pending`` block. Every
   transaction in it that is not one of the bundles already placed is taken
   out (``anvil_dropTransaction``; raw bytes kept from
   ``eth_getRawTransactionByHash``), so the pool holds only the top of the
   block. The victim's sender's lower nonces, if pending, go first (the victim
   cannot run without them, on a real chain as here).
3. ``eth_simulateV1`` on ``pending`` (now: parent plus the bundles placed so
   far) runs those prerequisites, the victim and our transactions. A bundle
   transaction that fails or reverts drops the bundle whole. So does one whose
   result (status, return data, gas) differs from what the bundle alone does
   on the parent block (an earlier bundle or a prerequisite touched its pools):
   the searcher sized it for the top of the block, and this builder includes it
   only where it behaves as sized (counted as ``conflicts``). A real builder
   may include it anyway, with a realised profit the searcher did not predict.
4. They go in with ``eth_sendRawTransaction`` in that order (the node runs
   ``--order fifo``). If the node refuses one midway, the ones already sent
   are taken back, so a bundle never lands in part.
5. Whatever was taken out is put back in its original order (one batch; anvil
   answers a batch in order, checked), behind the bundle. A transaction the
   node refuses on the way back is counted as ``lost``.

Every request is recorded to ``record_path`` as one JSON line (raw bytes in
base64) before it is handled, so tests can prove exactly what reached a
builder (and, in shadow mode, that nothing did).
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import attrs
import h11
import orjson
import rlp
import trio
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_hash.auto import keccak

from .._errors import NodeError
from ..chain import RpcClient

__all__ = ["BuilderStatistics", "LocalBuilder"]

log = logging.getLogger(__name__)

_HEADER = b"x-flashbots-signature"
_MAX_BODY = 4 * 1024 * 1024


@attrs.frozen
class BuilderStatistics:
    requests: int
    bytes_received: int
    bad_requests: int
    bad_signatures: int
    bundles_received: int
    call_bundles: int
    held: int
    included: int
    dropped: int
    expired: int
    lost: int = 0
    conflicts: int = 0


@attrs.frozen
class _Tx:
    raw: bytes
    hash: bytes
    sender: str
    nonce: int
    call: dict[str, Any]


@attrs.frozen
class _Held:
    bundle_hash: str
    block: int
    txs: tuple[_Tx, ...]
    signer: str


def _int(b: bytes) -> int:
    return int.from_bytes(b, "big")


def _decode_tx(raw: bytes) -> _Tx:
    """Decode a signed type 0/1/2 transaction enough to simulate and order it."""
    if not raw:
        raise ValueError("empty transaction")
    if raw[0] >= 0xC0:
        f = rlp.decode(raw)
        nonce, gas_price, gas, to, value, data = f[0], f[1], f[2], f[3], f[4], f[5]
        fees = {"gasPrice": hex(_int(gas_price))}
    elif raw[0] == 1:
        f = rlp.decode(raw[1:])
        nonce, gas_price, gas, to, value, data = f[1], f[2], f[3], f[4], f[5], f[6]
        fees = {"gasPrice": hex(_int(gas_price))}
    elif raw[0] == 2:
        f = rlp.decode(raw[1:])
        nonce, prio, max_fee, gas, to, value, data = f[1], f[2], f[3], f[4], f[5], f[6], f[7]
        fees = {"maxFeePerGas": hex(_int(max_fee)), "maxPriorityFeePerGas": hex(_int(prio))}
    else:
        raise ValueError(f"unsupported transaction type {raw[0]}")
    sender = Account.recover_transaction(raw)
    call: dict[str, Any] = {
        "from": sender,
        "nonce": hex(_int(nonce)),
        "gas": hex(_int(gas)),
        "value": hex(_int(value)),
        "input": "0x" + bytes(data).hex(),
        **fees,
    }
    if to:
        call["to"] = "0x" + bytes(to).hex()
    return _Tx(raw=raw, hash=keccak(raw), sender=sender.lower(), nonce=_int(nonce), call=call)


def _bid(held: _Held) -> int:
    """What a bundle offers the builder: priority fee (or legacy gas price) times gas limit, summed."""
    total = 0
    for t in held.txs:
        fee = t.call.get("maxPriorityFeePerGas") or t.call.get("gasPrice") or "0x0"
        total += int(fee, 16) * int(t.call["gas"], 16)
    return total


def _effect(call: dict[str, Any]) -> tuple[Any, Any, Any]:
    """What a simulated call did, as far as a bundle's sender can tell."""
    return call.get("status"), call.get("returnData"), call.get("gasUsed")


def _recover_signer(header: bytes | None, body: bytes) -> str | None:
    """Flashbots' check: ``address:sig``, EIP-191 over the text 0x+keccak(body) hex."""
    if not header:
        return None
    try:
        address, sep, sig = header.decode("ascii").strip().partition(":")
        if not sep:
            return None
        msg = encode_defunct(text="0x" + keccak(body).hex())
        got = Account.recover_message(msg, signature=bytes.fromhex(sig.removeprefix("0x")))
    except Exception:  # noqa: BLE001 - malformed header of any kind is just "bad"
        return None
    return got if got.lower() == address.lower() else None


class _RpcFailure(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class LocalBuilder:
    """The devnet's block builder.

    Args:
        rpc: the devnet node.
        record_path: JSON-lines file; every request received is appended.
        host: bind address (loopback only by default).
        port: 0 picks a free port.
    """

    def __init__(self, rpc: RpcClient, *, record_path: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self._rpc = rpc
        self._record_path = record_path
        self._host = host
        self._port = port
        self.url: str | None = None
        self._held: dict[int, list[_Held]] = {}
        self._requests = 0
        self._bytes = 0
        self._bad_requests = 0
        self._bad_sigs = 0
        self._bundles = 0
        self._call_bundles = 0
        self._included = 0
        self._dropped = 0
        self._expired = 0
        self._lost = 0
        self._conflicts = 0
        self._record: IO[bytes] | None = None

    def statistics(self) -> BuilderStatistics:
        return BuilderStatistics(
            requests=self._requests,
            bytes_received=self._bytes,
            bad_requests=self._bad_requests,
            bad_signatures=self._bad_sigs,
            bundles_received=self._bundles,
            call_bundles=self._call_bundles,
            held=sum(len(v) for v in self._held.values()),
            included=self._included,
            dropped=self._dropped,
            expired=self._expired,
            lost=self._lost,
            conflicts=self._conflicts,
        )

    # ------------------------------------------------------------------ HTTP

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled; ``task_status.started(url)`` once bound."""
        self._record_path.parent.mkdir(parents=True, exist_ok=True)
        listeners = await trio.open_tcp_listeners(self._port, host=self._host)
        port = listeners[0].socket.getsockname()[1]
        self.url = f"http://{self._host}:{port}"
        with open(self._record_path, "ab") as record:  # noqa: ASYNC230 - tiny appends on a dev tool
            self._record = record
            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(trio.serve_listeners, self._handle, listeners)
                    task_status.started(self.url)
            finally:
                self._record = None

    def _write_record(self, raw: bytes, method: str, target: str, headers: Sequence[tuple[bytes, bytes]], body: bytes) -> None:
        if self._record is None:
            return
        line = orjson.dumps(
            {
                "ts_ns": time.time_ns(),
                "method": method,
                "target": target,
                "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in headers],
                "body_b64": base64.b64encode(body).decode(),
                "raw_b64": base64.b64encode(raw).decode(),
            }
        )
        self._record.write(line + b"\n")
        self._record.flush()

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
        try:
            while True:
                raw = bytearray()
                body = bytearray()
                request: h11.Request | None = None
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        data = await stream.receive_some(65536)
                        self._bytes += len(data)
                        raw += data
                        conn.receive_data(data)
                        continue
                    if isinstance(event, h11.Request):
                        request = event
                    elif isinstance(event, h11.Data):
                        body += event.data
                        if len(body) > _MAX_BODY:
                            raise h11.RemoteProtocolError("body too large")
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                        if raw:
                            self._write_record(bytes(raw), "", "", (), bytes(body))
                        return
                assert request is not None
                self._requests += 1
                self._write_record(
                    bytes(raw), request.method.decode(), request.target.decode("latin-1"), request.headers, bytes(body)
                )
                status, reply = await self._dispatch(request, bytes(body))
                payload = orjson.dumps(reply)
                await stream.send_all(
                    conn.send(
                        h11.Response(
                            status_code=status,
                            headers=[("content-type", "application/json"), ("content-length", str(len(payload)))],
                        )
                    )
                    or b""
                )
                await stream.send_all(conn.send(h11.Data(data=payload)) or b"")
                await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except h11.RemoteProtocolError:
            self._bad_requests += 1
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                try:
                    await stream.send_all(
                        conn.send(h11.Response(status_code=400, headers=[("content-length", "0")])) or b""
                    )
                    await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
                except (h11.LocalProtocolError, trio.BrokenResourceError):
                    pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async def _dispatch(self, request: h11.Request, body: bytes) -> tuple[int, Any]:
        if request.method != b"POST":
            self._bad_requests += 1
            return 405, {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "POST only"}}
        try:
            msg = orjson.loads(body)
        except orjson.JSONDecodeError:
            self._bad_requests += 1
            return 200, {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}}
        if not isinstance(msg, dict):
            self._bad_requests += 1
            return 200, {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "expected one request object"}}
        rid = msg.get("id")
        header = dict(request.headers).get(_HEADER)
        signer = _recover_signer(header, body)
        if signer is None:
            self._bad_sigs += 1
            what = "missing X-Flashbots-Signature header" if not header else "error in signature check"
            return 200, {"jsonrpc": "2.0", "id": rid, "error": {"code": -32600, "message": what}}
        method = msg.get("method")
        params = msg.get("params")
        try:
            if not isinstance(params, list) or len(params) != 1 or not isinstance(params[0], dict):
                raise _RpcFailure(-32602, "expected params [{txs, blockNumber}]")
            if method == "eth_sendBundle":
                result = self._send_bundle(params[0], signer)
            elif method == "eth_callBundle":
                result = await self._call_bundle(params[0])
            else:
                raise _RpcFailure(-32601, f"method {str(method)[:64]!r} not supported")
        except _RpcFailure as exc:
            self._bad_requests += 1
            return 200, {"jsonrpc": "2.0", "id": rid, "error": {"code": exc.code, "message": exc.message}}
        return 200, {"jsonrpc": "2.0", "id": rid, "result": result}

    @staticmethod
    def _parse_bundle(p: dict[str, Any]) -> tuple[int, tuple[_Tx, ...]]:
        txs, block = p.get("txs"), p.get("blockNumber")
        if not isinstance(txs, list) or not txs or not all(isinstance(t, str) for t in txs):
            raise _RpcFailure(-32602, "txs must be a non-empty list of hex strings")
        if not isinstance(block, str) or not block.startswith("0x"):
            raise _RpcFailure(-32602, "blockNumber must be a hex quantity")
        try:
            number = int(block, 16)
            decoded = tuple(_decode_tx(bytes.fromhex(t.removeprefix("0x"))) for t in txs)
        except Exception as exc:  # noqa: BLE001 - outside input
            raise _RpcFailure(-32602, f"bad transaction or block: {type(exc).__name__}") from None
        return number, decoded

    def _send_bundle(self, p: dict[str, Any], signer: str) -> dict[str, str]:
        number, txs = self._parse_bundle(p)
        bundle_hash = "0x" + keccak(b"".join(t.hash for t in txs)).hex()
        self._held.setdefault(number, []).append(_Held(bundle_hash, number, txs, signer))
        self._bundles += 1
        return {"bundleHash": bundle_hash}

    async def _call_bundle(self, p: dict[str, Any]) -> dict[str, Any]:
        number, txs = self._parse_bundle(p)
        self._call_bundles += 1
        state = p.get("stateBlockNumber", "latest")
        if not isinstance(state, str):
            raise _RpcFailure(-32602, "stateBlockNumber must be a tag or hex quantity")
        timestamp = p.get("timestamp")
        if timestamp is not None and (not isinstance(timestamp, int) or isinstance(timestamp, bool) or timestamp < 0):
            raise _RpcFailure(-32602, "timestamp must be a non-negative integer")
        try:
            # One parent for both the timestamp and the state (a block may land in between).
            parent = await self._rpc.call("eth_getBlockByNumber", [state, False])
            state = parent["number"]
            if timestamp is None:
                # As the relays do: the simulated block comes after its parent, never at the
                # parent's own second (anvil's default, under which a pair touched in the parent
                # skips its price-accumulator writes and the gas comes out short).
                timestamp = int(parent["timestamp"], 16) + 1
            overrides = {"time": hex(timestamp)}
            sim = await self._rpc.call(
                "eth_simulateV1",
                [{"blockStateCalls": [{"blockOverrides": overrides, "calls": [t.call for t in txs]}],
                  "validation": False}, state],
            )
            calls = sim[0]["calls"]
        except (NodeError, KeyError, IndexError, TypeError, ValueError) as exc:
            raise _RpcFailure(-32000, f"simulation failed: {type(exc).__name__}") from None
        results = []
        total = 0
        for t, c in zip(txs, calls, strict=False):
            gas = int(c.get("gasUsed", "0x0"), 16)
            total += gas
            r: dict[str, Any] = {"txHash": "0x" + t.hash.hex(), "gasUsed": gas, "fromAddress": t.sender}
            if c.get("status") != "0x1":
                r["error"] = "execution reverted"
                r["revert"] = c.get("returnData", "0x")
            else:
                r["value"] = c.get("returnData", "0x")
            results.append(r)
        return {
            "bundleHash": "0x" + keccak(b"".join(t.hash for t in txs)).hex(),
            "results": results,
            "totalGasUsed": total,
            "stateBlockNumber": number - 1,
        }

    # ------------------------------------------------------------------ inclusion

    async def before_mine(self, target_block: int) -> None:
        """Put every bundle held for ``target_block`` at the top of the block, or drop it.

        Called by the devnet miner right before it mines ``target_block``,
        while victim traffic is stopped. Bundles for earlier blocks expire.
        """
        for block in [b for b in self._held if b < target_block]:
            self._expired += len(self._held.pop(block))
        placed: set[str] = set()
        # Like a real builder, try the best-paying bundles first (stable: ties keep arrival order).
        # aether's bundles of one block share their nonces, so the first that fits wins the block.
        for held in sorted(self._held.pop(target_block, []), key=_bid, reverse=True):
            try:
                ok = await self._include(held, placed)
            except NodeError as exc:
                log.warning("bundle %s dropped: node error %s", held.bundle_hash, type(exc).__name__)
                ok = False
            if ok:
                self._included += 1
            else:
                self._dropped += 1

    async def _include(self, held: _Held, placed: set[str]) -> bool:
        """Place one bundle right after the bundles already placed (``placed``, updated)."""
        senders = sorted({t.sender for t in held.txs})
        lookups = await self._rpc.batch(
            [("eth_getTransactionByHash", ["0x" + t.hash.hex()]) for t in held.txs]
            + [("eth_getTransactionCount", [s, "pending"]) for s in senders]
        )
        if any(isinstance(x, Exception) for x in lookups):
            return False
        found, counts = lookups[: len(held.txs)], lookups[len(held.txs) :]
        next_nonce = {s: int(c, 16) for s, c in zip(senders, counts, strict=True)}
        in_pool: list[_Tx] = []
        to_send: list[_Tx] = []
        for t, f in zip(held.txs, found, strict=True):
            if f is not None:
                if f.get("blockNumber") is not None:
                    log.info("bundle %s dropped: a transaction is already mined", held.bundle_hash)
                    return False
                if to_send:
                    # A pending tx after one of ours would land before it: order broken.
                    return False
                in_pool.append(t)
                continue
            if t.nonce != next_nonce[t.sender]:
                log.info("bundle %s dropped: nonce gap for %s", held.bundle_hash, t.sender)
                return False
            next_nonce[t.sender] += 1
            to_send.append(t)
        if not to_send:
            return True  # everything is already pending (nothing of ours to place)

        # The ready pool in mining order, minus what earlier bundles put on top.
        block = await self._rpc.call("eth_getBlockByNumber", ["pending", True])
        try:
            pool = [(str(x["hash"]).lower(), str(x["from"]).lower(), int(x["nonce"], 16))
                    for x in block["transactions"]]
            # Both simulations below run at the block's own second: left to anvil, one would run
            # at the parent's and the other at the wall clock's, and a pair touched in the parent
            # would differ in gas by its price-accumulator writes (a false conflict).
            overrides = {"time": hex(int(block["timestamp"], 16))}
        except (KeyError, TypeError, ValueError):
            log.info("bundle %s dropped: the node's pending block is malformed", held.bundle_hash)
            return False
        rest = [x for x in pool if x[0] not in placed]
        bundle_hashes = {"0x" + t.hash.hex() for t in in_pool}
        if not bundle_hashes <= {x[0] for x in rest}:
            log.info("bundle %s dropped: its pending transaction is not ready", held.bundle_hash)
            return False
        # What must run before the bundle's pending txs: their senders' lower nonces.
        first: dict[str, int] = {}
        for t in in_pool:
            first[t.sender] = min(first.get(t.sender, t.nonce), t.nonce)
        prereq = [x for x in rest if x[0] not in bundle_hashes and x[1] in first and x[2] < first[x[1]]]
        raws: dict[str, str] = {}
        if rest:
            got = await self._rpc.batch([("eth_getRawTransactionByHash", [x[0]]) for x in rest])
            for x, r in zip(rest, got, strict=True):
                if not isinstance(r, str):
                    return False
                raws[x[0]] = r
        try:
            pre_txs = [_decode_tx(bytes.fromhex(raws[x[0]].removeprefix("0x"))) for x in prereq]
        except Exception:  # noqa: BLE001 - the node gave us something we cannot decode
            return False
        top = [*pre_txs, *in_pool]

        await self._drop([x[0] for x in reversed(rest)])
        sent: list[str] = []
        ok = False
        try:
            sim = await self._rpc.call(
                "eth_simulateV1",
                [{"blockStateCalls": [{"blockOverrides": overrides, "calls": [t.call for t in (*top, *to_send)]}],
                  "validation": False}, "pending"],
            )
            try:
                statuses = [c.get("status") for c in sim[0]["calls"]]
            except (KeyError, IndexError, TypeError, AttributeError):
                return False
            if len(statuses) != len(top) + len(to_send) or any(s != "0x1" for s in statuses[len(pre_txs):]):
                log.info("bundle %s dropped: a transaction would revert", held.bundle_hash)
                return False
            if placed or pre_txs:
                # Below other transactions: it must do exactly what it does at the top.
                alone = await self._rpc.call(
                    "eth_simulateV1",
                    [{"blockStateCalls": [{"blockOverrides": overrides,
                                           "calls": [t.call for t in (*in_pool, *to_send)]}],
                      "validation": False}, "latest"],
                )
                try:
                    here = [_effect(c) for c in sim[0]["calls"][len(pre_txs):]]
                    there = [_effect(c) for c in alone[0]["calls"]]
                except (KeyError, IndexError, TypeError, AttributeError):
                    return False
                if here != there:
                    self._conflicts += 1
                    log.info("bundle %s dropped: its result depends on what runs before it", held.bundle_hash)
                    return False
            for t in (*top, *to_send):
                h = "0x" + t.hash.hex()
                await self._rpc.call("eth_sendRawTransaction", ["0x" + t.raw.hex()])
                sent.append(h)
            ok = True
            placed.update(sent)
            return True
        finally:
            if not ok:
                await self._drop(list(reversed(sent)))
                sent = []
            back = [x[0] for x in rest if x[0] not in set(sent)]
            await self._resend([raws[h] for h in back])

    async def _drop(self, hashes: Sequence[str]) -> None:
        if not hashes:
            return
        res = await self._rpc.batch([("anvil_dropTransaction", [h]) for h in hashes])
        for h, r in zip(hashes, res, strict=True):
            if isinstance(r, Exception):
                log.warning("could not take %s out of the pool", h)

    async def _resend(self, raws: Sequence[str]) -> None:
        """Put transactions back into the pool in the given order (a batch runs in order on anvil)."""
        if not raws:
            return
        res = await self._rpc.batch([("eth_sendRawTransaction", [r]) for r in raws])
        lost = sum(isinstance(r, Exception) for r in res)
        if lost:
            self._lost += lost
            log.warning("%d pool transaction(s) could not be put back after a bundle", lost)
