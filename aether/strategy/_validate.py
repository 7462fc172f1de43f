"""Exact validation of a candidate with ``eth_simulateV1`` before it goes on.

One simulated block on top of the candidate's head (the state its sizing read; a
candidate whose head is no longer the chain's is stale anyway) holds, in order: the victim (as a
call with its own sender, nonce, gas and fee fields), WETH ``balanceOf``
the searcher, our backrun calls from the searcher, and ``balanceOf`` again.
The prediction must hold to the wei: each backrun call's returned
``uint[] amounts`` (a V3 leg's ``exactInputSingle``: its ``amountOut``) equals the route's amounts, and the searcher's WETH delta
equals the expected gross profit. The block's base fee is overridden to zero
and ``validation`` is off, so neither fees nor balances for gas can make a call
fail there: only the swaps themselves are judged.

Because ``validation`` is off, nonces are not checked either: the victim's sender's
next nonce is asked for in the same batch, and a victim that is not exactly next
(an earlier transaction of the sender still pending, or its nonce already used) is
a counted rejection, ``victim_nonce_ahead`` or ``victim_nonce_used``.
"""

from __future__ import annotations

import time
from typing import Any

import attrs

from .._errors import DecodeError, NodeError
from ..config import DexKind
from ..dex import decode_amounts
from ..messages import Candidate, Hop
from ..quantity import hex_quantity
from ._backrun import Rejection
from ._poststate import victim_call

__all__ = ["Validator", "ValidatorStatistics"]

_BALANCE_OF = bytes.fromhex("70a08231")

#: Gas limit of each of our calls inside the simulation (generous; the real
#: limit is set by the bundle builder from ``simulated_gas``).
SIM_GAS = 1_000_000


@attrs.frozen
class ValidatorStatistics:
    """Validation counters and round-trip latency (wall clock, seconds)."""

    enabled: bool
    validated: int
    mismatches: int
    failures: int
    skipped: int
    total_s: float
    max_s: float
    last_s: float

    @property
    def mean_s(self) -> float:
        n = self.validated + self.mismatches + self.failures
        return self.total_s / n if n else 0.0


def _q(v: int) -> str:
    return hex(v)


def _victim_call(c: Candidate) -> dict[str, Any]:
    assert c.victim is not None
    return victim_call(c.victim)


def _nonce_gap(c: Candidate, reply: Any) -> Rejection | None:
    """A victim that cannot be the next transaction of its sender is not backrun.

    Nonce ahead: an earlier transaction of the sender is still pending, so the victim can
    only land behind it, on state the sizing never saw (and a bundle ``[victim, backrun]``
    alone is invalid). Nonce used: the victim is mined or was replaced. The simulation
    runs without nonce validation, so it would not notice either.
    """
    v = c.victim
    assert v is not None
    try:
        next_nonce = hex_quantity(reply)
    except (TypeError, ValueError):
        return Rejection("validation_failed", "bad eth_getTransactionCount answer")
    if v.nonce > next_nonce:
        return Rejection("victim_nonce_ahead", f"victim nonce {v.nonce}, the sender's next is {next_nonce}")
    if v.nonce < next_nonce:
        return Rejection("victim_nonce_used", f"victim nonce {v.nonce}, the sender's next is {next_nonce}")
    return None


def _amounts(hop: Hop | None, ret: bytes) -> tuple[int, ...]:
    """What a call says it swapped: Router02's ``uint[] amounts``, or SwapRouter's ``amountOut``.

    ``exactInputSingle`` returns only the output; its input is the call's own
    ``amountIn`` (the pool takes all of it, or the WETH delta check fails), so the
    pair compared is (the hop's input, the returned output).
    """
    if hop is not None and hop.kind == DexKind.V3:
        if len(ret) != 32:
            raise DecodeError(f"exactInputSingle returned {len(ret)} bytes, expected 32", "validation_failed")
        return hop.amount_in, int.from_bytes(ret, "big")
    return decode_amounts(ret)


class Validator:
    """Simulates ``[victim, backrun calls]`` and confirms the prediction to the wei.

    Args:
        rpc: an :class:`aether.chain.RpcClient`.
        searcher: the account our calls come from.
        weth: the WETH address (the profit currency); by default the first
            hop's input token of each candidate, which is WETH by construction.
        enabled: False turns validation into a pass-through (counted as skipped),
            for measuring what it costs; ``Settings.validate`` drives it.
    """

    def __init__(self, rpc: Any, *, searcher: str, weth: str | None = None, enabled: bool = True) -> None:
        self._rpc = rpc
        self.searcher = searcher.lower()
        self.weth = None if weth is None else weth.lower()
        self.enabled = enabled
        self._validated = 0
        self._mismatches = 0
        self._failures = 0
        self._skipped = 0
        self._total = 0.0
        self._max = 0.0
        self._last = 0.0

    def statistics(self) -> ValidatorStatistics:
        return ValidatorStatistics(
            self.enabled,
            self._validated,
            self._mismatches,
            self._failures,
            self._skipped,
            self._total,
            self._max,
            self._last,
        )

    def _balance_call(self, weth: str) -> dict[str, Any]:
        data = _BALANCE_OF + bytes(12) + bytes.fromhex(self.searcher[2:])
        return {"from": self.searcher, "to": weth, "input": "0x" + data.hex(), "gas": _q(100_000)}

    def simulate_params(self, c: Candidate) -> list[Any]:
        """The ``eth_simulateV1`` params for ``c`` (public for tests and tools)."""
        weth = self.weth or c.route[0].token_in
        calls: list[dict[str, Any]] = []
        if c.victim is not None:
            calls.append(_victim_call(c))
        calls.append(self._balance_call(weth))
        for call in c.calls:
            calls.append(
                {
                    "from": self.searcher,
                    "to": call.to,
                    "value": _q(call.value),
                    "input": "0x" + call.data.hex(),
                    "gas": _q(SIM_GAS),
                }
            )
        calls.append(self._balance_call(weth))
        overrides = {"baseFeePerGas": "0x0"}
        if c.head_timestamp:
            # anvil's default time is the parent's own: a pair touched in the head
            # block would then skip its accumulator writes (10,416 gas too little).
            overrides["time"] = _q(c.head_timestamp + 1)
        return [
            {
                "blockStateCalls": [{"blockOverrides": overrides, "calls": calls}],
                "validation": False,
                "traceTransfers": False,
                "returnFullTransactions": False,
            },
            hex(c.head_number),  # the state the sizing used, not whatever "latest" is by now
        ]

    async def validate(self, candidate: Candidate) -> Candidate | Rejection:
        """Confirm ``candidate`` on the node; never raises on node trouble.

        Returns:
            The candidate with ``validated=True`` and ``simulated_gas`` (gas of
            each backrun call), or ``Rejection("validation_mismatch")`` when an
            amount or the WETH delta differs by even one wei,
            ``Rejection("victim_nonce_ahead" | "victim_nonce_used")`` when the
            victim is not its sender's next transaction, or
            ``Rejection("validation_failed")`` on a revert or a node error.
        """
        if not self.enabled:
            self._skipped += 1
            return candidate
        t0 = time.perf_counter()
        try:
            result = await self._validate(candidate)
        finally:
            dt = time.perf_counter() - t0
            self._total += dt
            self._last = dt
            self._max = max(self._max, dt)
        if isinstance(result, Rejection):
            if result.reason == "validation_mismatch":
                self._mismatches += 1
            else:
                self._failures += 1
        else:
            self._validated += 1
        return result

    async def _validate(self, c: Candidate) -> Candidate | Rejection:
        calls: list[tuple[str, list[Any]]] = [("eth_simulateV1", self.simulate_params(c))]
        if c.victim is not None:
            # Same request, same block: the sender's next nonce at the simulated state.
            calls.append(("eth_getTransactionCount", [c.victim.sender, hex(c.head_number)]))
        try:
            replies = await self._rpc.batch(calls)
        except NodeError as exc:
            return Rejection("validation_failed", f"{type(exc).__name__}: {str(exc)[:200]}")
        for (method, _), reply in zip(calls, replies, strict=True):
            if isinstance(reply, NodeError):
                return Rejection("validation_failed", f"{method}: {str(reply)[:200]}")
        if c.victim is not None:
            gap = _nonce_gap(c, replies[1])
            if gap is not None:
                return gap
        try:
            return self._judge(c, replies[0])
        except Exception as exc:  # any shape the node may send: a counted rejection, never a panic
            return Rejection("validation_failed", f"bad simulate answer: {type(exc).__name__}")

    def _judge(self, c: Candidate, blocks: Any) -> Candidate | Rejection:
        results = blocks[0]["calls"]
        off = 1 if c.victim is not None else 0
        n = len(c.calls)
        if len(results) != off + n + 2:
            return Rejection("validation_failed", f"{len(results)} call results")
        for i, r in enumerate(results):
            if hex_quantity(r.get("status", "0x0")) != 1:
                what = "victim" if i < off else f"call {i - off}"
                err = r.get("error") or {}
                msg = err.get("message", "") if isinstance(err, dict) else str(err)
                return Rejection("validation_failed", f"{what} reverted: {msg[:200]}")
        before = hex_quantity(results[off]["returnData"])
        after = hex_quantity(results[off + n + 1]["returnData"])
        gas: list[int] = []
        for k in range(n):
            r = results[off + 1 + k]
            gas.append(hex_quantity(r["gasUsed"]))
            hop = c.route[k] if k < len(c.route) else None
            try:
                amounts = _amounts(hop, bytes.fromhex(r["returnData"][2:]))
            except DecodeError as exc:
                return Rejection("validation_failed", f"call {k}: {exc}")
            if hop is not None:
                if amounts != (hop.amount_in, hop.amount_out):
                    return Rejection(
                        "validation_mismatch",
                        f"call {k}: simulated {list(amounts)}, predicted {[hop.amount_in, hop.amount_out]}",
                    )
        delta = after - before
        if delta != c.expected_gross_profit_wei:
            return Rejection(
                "validation_mismatch", f"WETH delta {delta}, predicted {c.expected_gross_profit_wei}"
            )
        return attrs.evolve(c, validated=True, simulated_gas=tuple(gas))
