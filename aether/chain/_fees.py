"""Block headers from the node; the fee formula itself is the pure :mod:`aether.fees`."""

from __future__ import annotations

from typing import Any

from .._errors import DecodeError
from ..fees import BASE_FEE_MAX_CHANGE_DENOMINATOR, ELASTICITY_MULTIPLIER, next_base_fee
from ..messages import Head
from ._tx import _HASH_RE, _qty, _short

__all__ = ["BASE_FEE_MAX_CHANGE_DENOMINATOR", "ELASTICITY_MULTIPLIER", "head_from_rpc", "next_base_fee"]


def head_from_rpc(obj: Any, *, seen_at: float = 0.0) -> Head:
    """Build a :class:`Head` from a ``newHeads`` notification or ``eth_getBlockByNumber``.

    Raises:
        DecodeError: ``bad_fields`` when the object is not a post-London header
            (missing or ill-typed field, no ``baseFeePerGas``).
    """
    if obj.__class__ is not dict:
        raise DecodeError(f"head: expected an object, got {_short(obj)}", "bad_fields")
    for key in ("hash", "parentHash"):
        value = obj.get(key)
        if value.__class__ is not str or not _HASH_RE.match(value):
            raise DecodeError(f"{key}: expected a 32-byte hex hash, got {_short(value)}", "bad_fields")
    gas_used = _qty(obj, "gasUsed", 2**64)
    gas_limit = _qty(obj, "gasLimit", 2**64)
    if gas_used > gas_limit:
        raise DecodeError("gasUsed: above gasLimit", "bad_fields")
    if gas_limit < ELASTICITY_MULTIPLIER:
        raise DecodeError(f"gasLimit: {gas_limit} is below {ELASTICITY_MULTIPLIER}", "bad_fields")
    return Head(
        number=_qty(obj, "number", 2**64),
        hash=obj["hash"].lower(),
        parent_hash=obj["parentHash"].lower(),
        timestamp=_qty(obj, "timestamp", 2**64),
        base_fee=_qty(obj, "baseFeePerGas"),
        gas_used=gas_used,
        gas_limit=gas_limit,
        seen_at=seen_at,
    )
