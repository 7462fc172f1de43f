"""Uniswap on our side: V2 Router02 calldata, exact pair math, CREATE2 pairs, the pool book; V3 exact math and pool state."""

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
from ._v3curve import V3Curve
from ._v3math import FEE_TIERS, FeeTier, SwapResult, TickTable, TicksNotLoaded, V3MathError, tick_spacing
from ._v3pool import (
    SWAP_EVENT_TOPIC,
    V3PoolBook,
    V3PoolKey,
    V3PoolState,
    V3Quote,
    V3Refusal,
    fetch_pool_state,
    v3_pool_address,
)
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
    "FEE_TIERS",
    "SWAP_EVENT_TOPIC",
    "SWAP_FUNCTIONS",
    "UINT112_MAX",
    "UINT256_MAX",
    "BookStatistics",
    "BookView",
    "FeeTier",
    "PairInfo",
    "PoolBook",
    "RoundTrip",
    "SwapCall",
    "SwapResult",
    "TickTable",
    "TicksNotLoaded",
    "V3Curve",
    "V3MathError",
    "V3PoolBook",
    "V3PoolKey",
    "V3PoolState",
    "V3Quote",
    "V3Refusal",
    "best_round_trip",
    "best_round_trip_input",
    "decode_amounts",
    "decode_swap",
    "decode_swap_eth_abi",
    "encode_swap",
    "encode_swap_exact_tokens_for_tokens",
    "fetch_pool_state",
    "get_amount_in",
    "get_amount_out",
    "pair_address",
    "round_trip_profit",
    "sort_tokens",
    "tick_spacing",
    "v3_pool_address",
]
