"""Pair addresses by CREATE2, computed locally (no RPC).

``UniswapV2Factory.createPair`` deploys each pair with
``CREATE2(salt = keccak(token0 ++ token1))``, so its address is
``keccak(0xff ++ factory ++ salt ++ init_code_hash)[12:]`` with the tokens
sorted by address. Each DEX fork has its own factory and init-code hash
(configured in ``AETHER_CONFIG``).
"""

from __future__ import annotations

from functools import lru_cache

from eth_utils import keccak

__all__ = ["pair_address", "sort_tokens"]


def sort_tokens(a: str, b: str) -> tuple[str, str]:
    """``UniswapV2Library.sortTokens`` on lowercase ``0x`` addresses.

    Raises:
        ValueError: identical tokens (the library reverts on them).
    """
    a, b = a.lower(), b.lower()
    if a == b:
        raise ValueError(f"identical tokens {a}")
    return (a, b) if int(a, 16) < int(b, 16) else (b, a)


@lru_cache(maxsize=65536)
def pair_address(factory: str, init_code_hash: str, a: str, b: str) -> str:
    """The pair of tokens ``a``/``b`` (any order) under ``factory``, lowercase hex.

    Raises:
        ValueError: identical tokens or malformed hex.
    """
    t0, t1 = sort_tokens(a, b)
    salt = keccak(bytes.fromhex(t0[2:]) + bytes.fromhex(t1[2:]))
    digest = keccak(b"\xff" + bytes.fromhex(factory.lower()[2:]) + salt + bytes.fromhex(init_code_hash.lower()[2:]))
    return "0x" + digest[12:].hex()
