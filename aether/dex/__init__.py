"""Uniswap V2 on our side: Router02 calldata, exact pair math, CREATE2 pairs, the pool book."""

from ._book import BookStatistics, BookView, PairInfo, PoolBook
from ._math import (
    UINT112_MAX,
    UINT256_MAX,
    RoundTrip,
    best_round_trip,
    best_round_trip_input,
    get_amount_in,
    get_amount_out,
    round_trip_profit,
)
from ._pairs import pair_address, sort_tokens
from ._router import (
    FEE_ON_TRANSFER_SELECTORS,
    SWAP_FUNCTIONS,
    SwapCall,
    decode_amounts,
    decode_swap,
    decode_swap_eth_abi,
    encode_swap,
    encode_swap_exact_tokens_for_tokens,
)

__all__ = [
    "FEE_ON_TRANSFER_SELECTORS",
    "SWAP_FUNCTIONS",
    "UINT112_MAX",
    "UINT256_MAX",
    "BookStatistics",
    "BookView",
    "PairInfo",
    "PoolBook",
    "RoundTrip",
    "SwapCall",
    "best_round_trip",
    "best_round_trip_input",
    "decode_amounts",
    "decode_swap",
    "decode_swap_eth_abi",
    "encode_swap",
    "encode_swap_exact_tokens_for_tokens",
    "get_amount_in",
    "get_amount_out",
    "pair_address",
    "round_trip_profit",
    "sort_tokens",
]
