"""Candidate -> signed bundle: nonces, EIP-1559 fees, the builder's tip, signatures.

Pure CPU, no I/O: the hot path between a validated candidate and the risk gates.
The builder is paid through the priority fee, so the tip is chosen as
``tip_share_bps`` of the gross profit spread over the simulated gas:

    priority = (gross * tip_share_bps // 10000) // gas_used
    net      = gross - gas_used * (base_fee + priority)

``gas_used`` is the gas the simulation measured (what the chain will charge);
the signed gas *limit* carries a safety margin on top and never enters the
money math. Everything is integer wei.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import attrs
import coincurve
from eth_account.signers.local import LocalAccount

from .chain import keccak256 as keccak
from .chain._tx import encode_1559_parts, encode_signed_1559
from .messages import Bundle, Candidate, Head

__all__ = ["BundleBuilder", "Eip1559Signer", "NonceStatistics", "NonceTracker", "arb_id"]

#: Signed gas limit = simulated gas * 12 // 10 (+20 %): the simulation already
#: ran on the post-victim state, the margin covers small state drift.
_GAS_LIMIT_NUM, _GAS_LIMIT_DEN = 12, 10


@attrs.frozen
class NonceStatistics:
    pending: int
    reserved: int


@attrs.define
class NonceTracker:
    """The searcher's next nonce: the node's pending nonce, taken at every head.

    Every bundle targets the block after the current head, and every bundle
    for that block starts at the same pending nonce: bundles of one block are
    *alternatives*. A builder can land at most one of them (they spend the same
    WETH inventory, each sized as if it were alone), and any one of them can
    land on its own: a bundle that is dropped or never sent strands nothing.
    (Chaining nonces across a block's bundles was measured on the devnet: 442
    of 751 live bundles then failed on a nonce gap left by an earlier one.) At
    the next head the node's pending nonce shows what landed, so shadow mode,
    where nothing ever lands, never drifts either.
    """

    _pending: int = 0
    _reserved: int = 0

    def reset(self, pending_nonce: int) -> None:
        """Take the node's pending nonce at a new head."""
        if pending_nonce < 0:
            raise ValueError("pending_nonce must be >= 0")
        self._pending = pending_nonce

    def reserve(self, n: int) -> list[int]:
        """The ``n`` consecutive nonces of one bundle, from the pending nonce."""
        if n < 1:
            raise ValueError("reserve needs n >= 1")
        self._reserved += 1
        return list(range(self._pending, self._pending + n))

    def statistics(self) -> NonceStatistics:
        return NonceStatistics(pending=self._pending, reserved=self._reserved)


def arb_id(target_block: int, victim_hash: str | None, route: Sequence[object]) -> str:
    """A short id, unique and stable for (target block, victim, route and amounts)."""
    parts = [str(target_block), victim_hash or ""]
    for hop in route:
        parts.append(f"{hop.pair}:{hop.token_in}:{hop.amount_in}:{hop.amount_out}")  # type: ignore[attr-defined]
    return keccak("|".join(parts).encode()).hex()[:16]


#: The last whole second formatted by :func:`_iso_utc`, and its text (bundles come many a second).
_ISO_SECOND: tuple[int, str] = (-1, "")


def _iso_utc(now_ns: int) -> str:
    global _ISO_SECOND
    secs, rem = divmod(now_ns, 1_000_000_000)
    last = _ISO_SECOND  # one read: (second, text) always belong together
    if last[0] != secs:
        last = _ISO_SECOND = (secs, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)))
    return last[1] + f".{rem // 1_000_000:03d}Z"


class Eip1559Signer:
    """Signs EIP-1559 transactions (empty access list) with libsecp256k1 through coincurve.

    Why not ``LocalAccount.sign_transaction``: it validates and formats a dict
    through eth-utils' formatter chains, builds a pyrlp serializable, and hashes
    with pycryptodome; it cost about 1 ms per transaction on the 2-core bench
    machine, two per bundle, against a 200 us frame-to-bundle budget. This does
    the same three steps directly (RLP of the fields, keccak, a recoverable
    RFC 6979 signature, low ``s``, which is what eth-keys' coincurve backend
    produces too). ``tests/chain/test_hotpath_equality.py`` holds the signed bytes and
    hash identical to eth-account's over thousands of random transactions.

    The key is held by coincurve's ``PrivateKey`` in memory only; nothing here
    formats it into a message.
    """

    __slots__ = ("_key",)

    def __init__(self, account: LocalAccount) -> None:
        self._key = coincurve.PrivateKey(bytes(account.key))

    def __repr__(self) -> str:
        return "<Eip1559Signer>"

    def sign(
        self,
        *,
        chain_id: int,
        nonce: int,
        max_priority_fee_per_gas: int,
        max_fee_per_gas: int,
        gas: int,
        to: bytes,
        value: int,
        data: bytes,
    ) -> tuple[bytes, bytes]:
        """Returns ``(raw, hash)``: the signed envelope and its transaction hash.

        Raises:
            ValueError: a field out of range (negative, ``to`` not 20 bytes, a
                max fee below the priority fee).
        """
        return self._sign(chain_id, nonce, max_priority_fee_per_gas, max_fee_per_gas, gas, to, value, data)

    def _sign(self, chain_id: int, nonce: int, max_priority_fee_per_gas: int, max_fee_per_gas: int, gas: int,
              to: bytes, value: int, data: bytes) -> tuple[bytes, bytes]:
        """:meth:`sign`, its fields by position in the transaction's own order (the builder's hot
        path: eight keywords matched by name cost ~0.25 us a call, twice a transaction)."""
        if len(to) != 20:
            raise ValueError("to must be 20 bytes")
        if min(chain_id, nonce, max_priority_fee_per_gas, max_fee_per_gas, gas, value) < 0:
            raise ValueError("transaction fields must be >= 0")
        if max_fee_per_gas < max_priority_fee_per_gas:
            raise ValueError("maxFeePerGas is below maxPriorityFeePerGas")
        payload, fields = encode_1559_parts(
            chain_id, nonce, max_priority_fee_per_gas, max_fee_per_gas, gas, to, value, data
        )
        sig = self._key.sign_recoverable(keccak(payload), hasher=None)
        raw = encode_signed_1559(fields, sig[64], sig[0:32], sig[32:64])
        return raw, keccak(raw)


@attrs.define
class BundleBuilder:
    """Signs a candidate's calls into a bundle for ``candidate.target_block``.

    Args:
        signer: the searcher account; its key goes to :class:`Eip1559Signer` (coincurve) and nowhere else.
        chain_id: from the node (``eth_chainId``), never assumed.
        tip_share_bps: share of the gross profit paid to the builder, 0..10000.
        nonces: the shared nonce tracker (every bundle of a block starts at the pending nonce).
    """

    signer: LocalAccount = attrs.field(repr=lambda a: f"<account {a.address}>")
    chain_id: int
    tip_share_bps: int = attrs.field(kw_only=True)
    nonces: NonceTracker = attrs.field(kw_only=True)
    _to_bytes: dict[str, bytes] = attrs.field(factory=dict, init=False, repr=False)
    _signer: Eip1559Signer = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.tip_share_bps <= 10000:
            raise ValueError("tip_share_bps must be in 0..10000")
        self._signer = Eip1559Signer(self.signer)

    def _to(self, address: str) -> bytes:
        b = self._to_bytes.get(address)
        if b is None:
            if len(address) != 42 or address[:2] not in ("0x", "0X"):
                raise ValueError("call target is not a 0x-prefixed 20-byte address")
            b = self._to_bytes[address] = bytes.fromhex(address[2:])
        return b

    def build(self, candidate: Candidate, head: Head, *, now_ns: int) -> Bundle:
        """Sign ``candidate.calls`` for the block after ``head``.

        Raises:
            ValueError: the candidate cannot be built (no calls, stale target,
                gas figures that do not match the calls, victim hash mismatch);
                the caller counts it as ``build_failed``.
        """
        calls = candidate.calls
        if not calls:
            raise ValueError("candidate has no calls to sign")
        target = head.number + 1
        if candidate.target_block != target:
            raise ValueError(f"candidate targets block {candidate.target_block}, head is {head.number}")
        victim = candidate.victim
        if victim is not None and keccak(victim.raw) != victim.hash:
            raise ValueError("victim raw transaction does not hash to its hash")
        if candidate.simulated_gas:
            if len(candidate.simulated_gas) != len(calls):
                raise ValueError("simulated_gas does not have one entry per call")
            gas_each = list(candidate.simulated_gas)
        else:
            share, extra = divmod(candidate.gas_estimate, len(calls))
            gas_each = [share + (1 if i < extra else 0) for i in range(len(calls))]
        gas_used = sum(gas_each)
        if gas_used <= 0 or min(gas_each) <= 0:
            raise ValueError("gas figures must be positive")

        gross = candidate.expected_gross_profit_wei
        base_fee = head.next_base_fee  # derived once per head (Head.next_base_fee)
        priority = (gross * self.tip_share_bps // 10000) // gas_used if gross > 0 else 0
        max_fee = 2 * base_fee + priority
        tip = priority * gas_used
        net = gross - gas_used * (base_fee + priority)
        tip_bps = tip * 10000 // gross if gross > 0 else 0

        nonces = self.nonces.reserve(len(calls))
        raws: list[bytes] = []
        hashes: list[bytes] = []
        try:
            for call, gas, nonce in zip(calls, gas_each, nonces, strict=True):
                # chain id, nonce, priority fee, max fee, gas limit, to, value, data
                raw, tx_hash = self._signer._sign(
                    self.chain_id, nonce, priority, max_fee, gas * _GAS_LIMIT_NUM // _GAS_LIMIT_DEN,
                    self._to(call.to), call.value, bytes(call.data),
                )
                raws.append(raw)
                hashes.append(tx_hash)
        except Exception as exc:
            # Only the exception's type: nothing about the key can leak through a message.
            raise ValueError(f"signing failed: {type(exc).__name__}") from None

        envelope = ((victim.raw,) if victim is not None else ()) + tuple(raws)
        # Positional, in Bundle's field order (keywords cost ~0.6 us more for eighteen fields):
        # arb_id, source, candidate, target_block, built_at, envelope, our_tx_hashes, gross, net,
        # tip_share_bps, gas_used, base_fee, priority_fee, max_fee, signer, nonces, flash loan.
        return Bundle(
            arb_id(target, candidate.victim_hash_hex, candidate.route), candidate.source, candidate, target,
            _iso_utc(now_ns), envelope, tuple(hashes), gross, net, tip_bps, gas_used, base_fee, priority, max_fee,
            self.signer.address, tuple(nonces), "none", 0,
        )
