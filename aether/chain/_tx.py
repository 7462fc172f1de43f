"""Pending-transaction codec: node JSON -> :class:`~aether.messages.PendingTx`.

The victim's signed bytes go into our bundle as ``envelope[0]``, so the decoder
does not trust the node's field soup: it re-encodes the signed envelope from the
fields (legacy, EIP-2930, EIP-1559) and only builds a ``PendingTx`` when
``keccak(raw) == hash``. The hash check binds every field, including ``v``/``r``/
``s``, so the sender is taken from ``from`` instead of being recovered (recovery
costs an elliptic-curve operation per transaction; intake sees thousands per
second).

Every failure is a :class:`~aether._errors.DecodeError` with a bounded
``reason`` (a metric label value): ``bad_fields``, ``unsupported_type``,
``wrong_chain`` or ``hash_mismatch``. Callers count it; nothing else escapes.

The hex helpers here are strict on purpose: Python's ``int(s, 16)`` accepts
whitespace, underscores and a missing prefix, and ``bytes.fromhex`` skips
spaces. A node that sends such things is sending garbage.
"""

from __future__ import annotations

import binascii
import re
from typing import Any

from .._errors import DecodeError
from ..messages import PendingTx
from ..quantity import hex_quantity

try:
    # safe-pysha3's C keccak: about 1.5 us a hash against pycryptodome's 6-9 us
    # (mostly the latter's ctypes wrapper); intake pays one per victim, a bundle three.
    from sha3 import keccak_256 as _keccak_256
except ImportError:  # pragma: no cover - the dependency is declared; this keeps a bare venv working
    from Crypto.Hash import keccak as _keccak_mod

    def _keccak_256(data: bytes) -> Any:
        return _keccak_mod.new(digest_bits=256, data=data)

__all__ = [
    "SUPPORTED_TX_TYPES",
    "decode_pending_tx",
    "encode_1559_parts",
    "encode_signed_1559",
    "encode_signed_tx",
    "keccak256",
    "rlp_encode",
]

#: Typed envelopes this codec can re-encode (0 = legacy).
SUPPORTED_TX_TYPES: tuple[int, ...] = (0, 1, 2)

# "0x" then 1..64 hex digits. Leading zeros are tolerated (the hash check binds
# the value, not its spelling); whitespace, signs, underscores are not.
_ADDR_RE = re.compile(r"0x[0-9a-fA-F]{40}\Z")
_HASH_RE = re.compile(r"0x[0-9a-fA-F]{64}\Z")

_U64 = 2**64
_U256 = 2**256
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def keccak256(data: bytes) -> bytes:
    """Keccak-256 (Ethereum's, not NIST SHA3) of ``data``."""
    return _keccak_256(data).digest()


# --------------------------------------------------------------------------- RLP
#
# A hand-written RLP encoder for the few shapes a transaction has (byte strings
# and nested lists of them). pyrlp's generic ``encode_raw`` checks every item
# against the ``collections.abc`` ABCs and was ~40 % of decode_pending_tx's time;
# this one is held byte-identical to pyrlp by tests/chain/test_hotpath_equality.py.


def _rlp_len(n: int, short: int) -> bytes:
    if n < 56:
        return bytes((short + n,))
    ln = n.to_bytes((n.bit_length() + 7) >> 3, "big")
    return bytes((short + 55 + len(ln),)) + ln


_SHORT_STR = [bytes((0x80 + n,)) for n in range(56)]


def _rlp_item(item: bytes | list[Any] | tuple[Any, ...]) -> bytes:
    if item.__class__ is bytes:
        return _rlp_bytes(item)
    if item.__class__ is list or item.__class__ is tuple:
        payload = b"".join([_rlp_item(x) for x in item])
        return _rlp_list_header(len(payload)) + payload
    if isinstance(item, (bytes, bytearray, memoryview)):
        return _rlp_bytes(bytes(item))
    raise TypeError(f"RLP: cannot encode {type(item).__name__}")


def rlp_encode(item: bytes | list[Any]) -> bytes:
    """RLP of ``item``: bytes, or a (nested) list/tuple of bytes (pyrlp's ``encode_raw``)."""
    return _rlp_item(item)


#: RLP of the integers 0..127: 0 is the empty string (0x80), the others are their own byte.
_RLP_SMALL = [b"\x80"] + [bytes((n,)) for n in range(1, 0x80)]


def _rlp_uint(n: int) -> bytes:
    """RLP of a non-negative integer: its minimal big-endian bytes (none for 0) as a string, in
    one step (a negative one raises OverflowError)."""
    if 0 <= n < 0x80:
        return _RLP_SMALL[n]
    b = n.to_bytes((n.bit_length() + 7) >> 3, "big")
    k = len(b)
    return (_SHORT_STR[k] if k < 56 else _rlp_len(k, 0x80)) + b


def _rlp_bytes(x: bytes) -> bytes:
    """RLP of a byte string (another bytes-like item goes through :func:`_rlp_item`)."""
    if x.__class__ is not bytes:
        return _rlp_item(x)
    n = len(x)
    if n == 1 and x[0] < 0x80:
        return x
    return (_SHORT_STR[n] if n < 56 else _rlp_len(n, 0x80)) + x


def _rlp_list_header(n: int) -> bytes:
    """The RLP header of a list whose payload is ``n`` bytes."""
    return bytes((0xC0 + n,)) if n < 56 else _rlp_len(n, 0xC0)


# --------------------------------------------------------------------------- strict hex


def _qty(obj: dict[str, Any], key: str, limit: int = _U256) -> int:
    value = obj.get(key)
    try:
        n = hex_quantity(value)
    except (TypeError, ValueError):
        raise DecodeError(f"{key}: expected a hex quantity, got {_short(value)}", "bad_fields") from None
    if n >= limit:
        raise DecodeError(f"{key}: {value} out of range", "bad_fields")
    return n


def _opt_qty(obj: dict[str, Any], key: str, limit: int = _U256) -> int | None:
    return None if obj.get(key) is None else _qty(obj, key, limit)


def _data(obj: dict[str, Any], key: str) -> bytes:
    value = obj.get(key)
    if value.__class__ is not str or value[:2] != "0x":
        raise DecodeError(f"{key}: expected 0x-prefixed hex data, got {_short(value)}", "bad_fields")
    try:
        # unhexlify, unlike bytes.fromhex, rejects whitespace and odd lengths.
        return binascii.unhexlify(value[2:])
    except (binascii.Error, ValueError) as exc:
        raise DecodeError(f"{key}: not hex data", "bad_fields") from exc


def _addr(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if value.__class__ is not str or not _ADDR_RE.match(value):
        raise DecodeError(f"{key}: expected a 20-byte hex address, got {_short(value)}", "bad_fields")
    return value.lower()


def _hash32(value: object, key: str) -> bytes:
    if value.__class__ is not str or not _HASH_RE.match(value):
        raise DecodeError(f"{key}: expected a 32-byte hex hash, got {_short(value)}", "bad_fields")
    return bytes.fromhex(value[2:])


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _access_list(obj: dict[str, Any]) -> list[list[Any]]:
    raw = obj.get("accessList")
    if raw is None:
        # Some nodes omit an empty access list; the hash check catches a lie.
        return []
    if raw.__class__ is not list:
        raise DecodeError("accessList: expected a list", "bad_fields")
    out: list[list[Any]] = []
    for entry in raw:
        if entry.__class__ is not dict:
            raise DecodeError("accessList: expected objects", "bad_fields")
        keys = entry.get("storageKeys")
        if keys.__class__ is not list:
            raise DecodeError("accessList.storageKeys: expected a list", "bad_fields")
        out.append(
            [
                bytes.fromhex(_addr(entry, "address")[2:]),
                [_hash32(k, "accessList.storageKeys") for k in keys],
            ]
        )
    return out


# --------------------------------------------------------------------------- codec


def encode_signed_tx(
    tx_type: int,
    *,
    chain_id: int | None,
    nonce: int,
    gas: int,
    to: bytes,
    value: int,
    data: bytes,
    v: int,
    r: int,
    s: int,
    gas_price: int = 0,
    max_fee_per_gas: int = 0,
    max_priority_fee_per_gas: int = 0,
    access_list: list[list[Any]] | None = None,
) -> bytes:
    """The signed network encoding of a transaction (what ``eth_sendRawTransaction`` takes).

    Args:
        tx_type: 0 (legacy), 1 (EIP-2930) or 2 (EIP-1559).
        to: 20 bytes, or ``b""`` for a contract creation.
        v: for legacy, the full ``v`` (27/28 or ``chainId*2+35/36``); for typed
            envelopes, the y parity (0/1).
        access_list: ``[[address_bytes, [key_bytes, ...]], ...]``.
    """
    # Each field's RLP in one step (_rlp_uint, _rlp_bytes), not its big-endian bytes then their RLP: ~1 us
    # of the ~3 us a transaction. Byte-equal to pyrlp (tests/chain/test_hotpath_equality.py).
    u, b = _rlp_uint, _rlp_bytes
    if tx_type == 2:
        al = _rlp_item(access_list) if access_list else b"\xc0"
        payload = b"".join([
            u(chain_id or 0), u(nonce), u(max_priority_fee_per_gas), u(max_fee_per_gas), u(gas),
            b(to), u(value), b(data), al, u(v), u(r), u(s),
        ])
        return b"\x02" + _rlp_list_header(len(payload)) + payload
    if tx_type == 1:
        al = _rlp_item(access_list) if access_list else b"\xc0"
        payload = b"".join([
            u(chain_id or 0), u(nonce), u(gas_price), u(gas), b(to), u(value), b(data), al, u(v), u(r), u(s),
        ])
        return b"\x01" + _rlp_list_header(len(payload)) + payload
    if tx_type == 0:
        payload = b"".join([u(nonce), u(gas_price), u(gas), b(to), u(value), b(data), u(v), u(r), u(s)])
        return _rlp_list_header(len(payload)) + payload
    raise ValueError(f"tx_type {tx_type} is not supported")


def encode_1559_parts(
    chain_id: int,
    nonce: int,
    max_priority_fee_per_gas: int,
    max_fee_per_gas: int,
    gas: int,
    to: bytes,
    value: int,
    data: bytes,
) -> tuple[bytes, bytes]:
    """The EIP-1559 signing payload (``0x02 || rlp([...])`` without ``v, r, s``, an empty access
    list; ``keccak256`` of it is what the signature signs), and the RLP of its nine fields for
    :func:`encode_signed_1559`.

    A signer encodes the fields once: the same bytes open the signing payload and the
    signed envelope (each field was encoded twice before, ~3 us a transaction).

    Returns:
        ``(payload, fields)``: the signing payload, and the encoded fields (its list's payload).
    """
    u, b = _rlp_uint, _rlp_bytes
    fields = b"".join([
        u(chain_id), u(nonce), u(max_priority_fee_per_gas), u(max_fee_per_gas), u(gas), b(to), u(value), b(data),
        b"\xc0",  # the empty access list
    ])
    return b"\x02" + _rlp_list_header(len(fields)) + fields, fields


def encode_signed_1559(fields: bytes, y_parity: int, r: bytes, s: bytes) -> bytes:
    """The signed EIP-1559 envelope from :func:`encode_1559_parts`'s ``fields`` and a signature.

    Args:
        y_parity: 0 or 1.
        r, s: the signature's 32-byte big-endian words (leading zero bytes are dropped here,
            as RLP's integer form requires).
    """
    tail = _rlp_uint(y_parity) + _rlp_bytes(r.lstrip(b"\x00")) + _rlp_bytes(s.lstrip(b"\x00"))
    return b"\x02" + _rlp_list_header(len(fields) + len(tail)) + fields + tail


def decode_pending_tx(
    obj: dict[str, Any],
    *,
    seen_at: float = 0.0,
    first_seen_ns: int = 0,
    chain_id: int | None = None,
) -> PendingTx:
    """Turn a node's transaction object into a verified :class:`PendingTx`.

    Args:
        obj: the JSON object of ``eth_getTransactionByHash`` or a full
            ``newPendingTransactions`` notification.
        seen_at: trio clock time the frame arrived.
        first_seen_ns: wall clock (``time.time_ns()``) the frame arrived.
        chain_id: the chain we are on; a transaction signed for another chain
            is rejected. ``None`` accepts any. Legacy transactions without
            EIP-155 replay protection carry no chain id and are accepted.

    Raises:
        DecodeError: with ``reason`` ``bad_fields`` (missing or ill-typed
            field), ``unsupported_type`` (blob, 7702, unknown),
            ``wrong_chain`` or ``hash_mismatch``.
    """
    if obj.__class__ is not dict:
        raise DecodeError(f"transaction: expected an object, got {type(obj).__name__}", "bad_fields")
    tx_type = 0 if obj.get("type") is None else _qty(obj, "type", 256)
    if tx_type not in SUPPORTED_TX_TYPES:
        raise DecodeError(f"transaction type {tx_type} is not supported", "unsupported_type")

    tx_hash = _hash32(obj.get("hash"), "hash")
    nonce = _qty(obj, "nonce", _U64)
    gas = _qty(obj, "gas", _U64)
    value = _qty(obj, "value")
    data = _data(obj, "input" if "input" in obj else "data")
    to_raw = obj.get("to")
    to = None if to_raw is None else _addr(obj, "to")
    to_bytes = b"" if to is None else bytes.fromhex(to[2:])
    sender = _addr(obj, "from")
    r = _qty(obj, "r")
    s = _qty(obj, "s")
    if not (0 < r < _SECP256K1_N and 0 < s < _SECP256K1_N):
        raise DecodeError("r/s: outside the secp256k1 group order", "bad_fields")

    gas_price: int | None = None
    max_fee: int | None = None
    max_prio: int | None = None
    if tx_type == 0:
        v = _qty(obj, "v")
        if v in (27, 28):
            tx_chain: int | None = None
        elif v >= 35:
            tx_chain = (v - 35) >> 1
        else:
            raise DecodeError(f"v: {v} is neither 27/28 nor EIP-155", "bad_fields")
        claimed = _opt_qty(obj, "chainId")
        if claimed is not None and tx_chain is not None and claimed != tx_chain:
            raise DecodeError("chainId: disagrees with v", "bad_fields")
        gas_price = _qty(obj, "gasPrice")
        access: list[list[Any]] = []
    else:
        tx_chain = _qty(obj, "chainId", _U64)
        v = _qty(obj, "yParity" if obj.get("yParity") is not None else "v")
        if v > 1:
            raise DecodeError(f"yParity: {v} is not 0 or 1", "bad_fields")
        access = _access_list(obj)
        if tx_type == 1:
            gas_price = _qty(obj, "gasPrice")
        else:
            max_fee = _qty(obj, "maxFeePerGas")
            max_prio = _qty(obj, "maxPriorityFeePerGas")

    if chain_id is not None and tx_chain is not None and tx_chain != chain_id:
        raise DecodeError(f"chain id {tx_chain}, expected {chain_id}", "wrong_chain")

    raw = encode_signed_tx(
        tx_type,
        chain_id=tx_chain,
        nonce=nonce,
        gas=gas,
        to=to_bytes,
        value=value,
        data=data,
        v=v,
        r=r,
        s=s,
        gas_price=gas_price or 0,
        max_fee_per_gas=max_fee or 0,
        max_priority_fee_per_gas=max_prio or 0,
        access_list=access,
    )
    if keccak256(raw) != tx_hash:
        raise DecodeError("re-encoded transaction does not hash to its hash", "hash_mismatch")
    # Positional, in PendingTx's field order (keywords cost ~0.5 us more for fifteen fields).
    return PendingTx(
        tx_hash, raw, tx_type, tx_chain, nonce, sender, to, value, data, gas,
        gas_price, max_fee, max_prio, seen_at, first_seen_ns,
    )
