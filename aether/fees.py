"""EIP-1559 fee arithmetic: pure integers, no I/O, no imports from the rest of aether.

Our backrun lands in the *next* block, so its ``maxFeePerGas`` and the profit
check need that block's base fee, which is fully determined by the parent:
:func:`next_base_fee` is the consensus formula in exact integers (no float ever
touches wei). Risk, the bundle builder and the chain layer all use this one.
"""

from __future__ import annotations

__all__ = ["BASE_FEE_MAX_CHANGE_DENOMINATOR", "ELASTICITY_MULTIPLIER", "next_base_fee"]

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
