"""EIP-1559 fee arithmetic and block headers from the node.

Our backrun lands in the *next* block, so its ``maxFeePerGas`` and the
profit check need that block's base fee, which is fully determined by the
parent: :func:`next_base_fee` is the consensus formula in exact integers (no
float ever touches wei).
"""

from __future__ import annotations

from typing import Any

from .._errors import DecodeError
from ..messages import Head
from ._tx import _HASH_RE, _qty, _short

__all__ = ["BASE_FEE_MAX_CHANGE_DENOMINATOR", "ELASTICITY_MULTIPLIER", "head_from_rpc", "next_base_fee"]

ELASTICITY_MULTIPLIER = 2
BASE_FEE_MAX_CHANGE_DENOMINATOR = 8


def next_base_fee(parent_base_fee: int, parent_gas_used: int, parent_gas_limit: int) -> int:
    """The base fee of the block after ``parent``, per EIP-1559.

    The base fee moves by at most 1/8 per block toward keeping blocks half
    full; when the parent was above target it rises by at least 1 wei.

    Raises:
        ValueError: a negative input, a gas limit below 2 (no target), or
            gas used above the limit.
    """
    if parent_base_fee < 0 or parent_gas_used < 0:
        raise ValueError("base fee and gas used must be non-negative")
    if parent_gas_limit < ELASTICITY_MULTIPLIER:
        raise ValueError(f"gas limit {parent_gas_limit} is below {ELASTICITY_MULTIPLIER}")
    if parent_gas_used > parent_gas_limit:
        raise ValueError(f"gas used {parent_gas_used} exceeds the gas limit {parent_gas_limit}")
    target = parent_gas_limit // ELASTICITY_MULTIPLIER
    if parent_gas_used == target:
        return parent_base_fee
    if parent_gas_used > target:
        delta = parent_base_fee * (parent_gas_used - target) // target // BASE_FEE_MAX_CHANGE_DENOMINATOR
        return parent_base_fee + max(delta, 1)
    delta = parent_base_fee * (target - parent_gas_used) // target // BASE_FEE_MAX_CHANGE_DENOMINATOR
    return parent_base_fee - delta


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
